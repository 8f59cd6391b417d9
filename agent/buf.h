/*
 * buf.h - a growing byte buffer (buf.c): SQL text, an announcement's body,
 * a request body, a journal's acknowledgements.
 */
#ifndef CS_BUF_H
#define CS_BUF_H

#include <stdbool.h>
#include <stddef.h>

/* Zero-initialised it is empty.  s is NUL-terminated after its len bytes
 * once anything went in.  oom: an allocation failed, so what was put since
 * is missing; nothing more goes in until cs_buf_clear. */
struct cs_buf {
	char *s;
	size_t len, cap;
	bool oom;
};

/* Append n bytes: false when they could not be (oom). */
bool cs_buf_put(struct cs_buf *b, const void *p, size_t n);
/* Empty it for reuse, keeping its memory. */
void cs_buf_clear(struct cs_buf *b);
void cs_buf_free(struct cs_buf *b);

#endif
