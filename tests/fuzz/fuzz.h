/*
 * fuzz.h - what the libFuzzer harnesses in tests/fuzz share: taking an
 * input apart into fields, and checking a property.
 *
 * A harness asserts what the parser promises (its header's comment), not
 * only that it does not crash: a property that does not hold prints what
 * was expected and what came instead, then aborts, and libFuzzer keeps the
 * input as a crash- file.  Every field is copied into a heap buffer of its
 * own exact size, so AddressSanitizer sees any read past it.
 */
#ifndef CS_FUZZ_H
#define CS_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond, ...)                                                 \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: property failed: %s\n  ",     \
				__FILE__, __LINE__, #cond);                   \
			fprintf(stderr, __VA_ARGS__);                         \
			fputc('\n', stderr);                                  \
			abort();                                              \
		}                                                             \
	} while (0)

/* The input, consumed from the front. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fuzz_byte(struct fuzz_in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static inline uint64_t fuzz_u64(struct fuzz_in *in)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | fuzz_byte(in);
	return v;
}

/* The bytes up to the next sep (or the end) as a malloc'd NUL-terminated
 * string, its length in *len; NULL when the input is used up. */
static inline char *fuzz_field(struct fuzz_in *in, uint8_t sep, size_t *len)
{
	const uint8_t *end;
	size_t n;
	char *s;

	if (!in->n)
		return NULL;
	end = memchr(in->p, sep, in->n);
	n = end ? (size_t)(end - in->p) : in->n;
	if (!(s = malloc(n + 1)))
		abort();
	memcpy(s, in->p, n);
	s[n] = '\0';
	in->p += n + (end != NULL);
	in->n -= n + (end != NULL);
	if (len)
		*len = n;
	return s;
}

/* The rest of the input as a malloc'd NUL-terminated string. */
static inline char *fuzz_rest(struct fuzz_in *in, size_t *len)
{
	char *s = malloc(in->n + 1);

	if (!s)
		abort();
	memcpy(s, in->p, in->n);
	s[in->n] = '\0';
	if (len)
		*len = in->n;
	in->p += in->n;
	in->n = 0;
	return s;
}

/* A printable rendering of s[0, n) for a failure message (one of four
 * static buffers, so a message may show up to four). */
static inline const char *fuzz_show(const char *s, size_t n)
{
	static char bufs[4][1024];
	static unsigned k;
	char *out = bufs[k++ % 4];
	size_t o = 0;

	for (size_t i = 0; i < n && o + 5 < sizeof bufs[0]; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, sizeof bufs[0] - o, "\\x%02x", c);
	}
	out[o] = '\0';
	return out;
}

#endif
