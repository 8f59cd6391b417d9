/*
 * buf.c - a growing byte buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"

bool cs_buf_put(struct cs_buf *b, const void *p, size_t n)
{
	if (b->oom)
		return false;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *s = realloc(b->s, cap);
		if (!s) {
			b->oom = true;
			return false;
		}
		b->s = s;
		b->cap = cap;
	}
	if (n)          /* p may be NULL then: an empty buffer's s */
		memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
	return true;
}

void cs_buf_clear(struct cs_buf *b)
{
	b->len = 0;
	b->oom = false;
	if (b->s)
		b->s[0] = '\0';
}

void cs_buf_free(struct cs_buf *b)
{
	free(b->s);
	b->s = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}
