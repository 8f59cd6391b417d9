/*
 * fuzz_range.c - the Range header of a peer's GET (cs_http_parse_range),
 * against a reference that reads RFC 9110's grammar for one range and
 * nothing else: "bytes=" then first "-" [last], or "-" suffix, where each
 * number is one or more ASCII digits.
 *
 * The contract (http.h): 1 with [off, off + len) for a satisfiable range,
 * always within the file (len >= 1, off + len <= size, no overflow); -1
 * when it cannot be satisfied (416); 0 to ignore the header and send the
 * whole file: absent, several ranges, or malformed, which includes any
 * sign, space or other byte around the digits and a number past 2^64 - 1.
 *
 * Input: eight bytes of file size (kept small when the first is even, so
 * ranges hit the file), a flag byte (no header at all), then the header.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>

#include "fuzz.h"
#include "http.h"

/* Digits from *p on: false when none, or the value overflows. */
static bool digits(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;

	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (x > (UINT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*p = s;
	*v = x;
	return true;
}

static int reference(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
	uint64_t a, b;

	if (!h || strncmp(h, "bytes=", 6) != 0)
		return 0;
	h += 6;
	if (*h == '-') {
		h++;
		if (!digits(&h, &b) || *h)
			return 0;
		if (b == 0 || size == 0)
			return -1;
		*len = b < size ? b : size;
		*off = size - *len;
		return 1;
	}
	if (!digits(&h, &a) || *h++ != '-')
		return 0;
	if (*h) {
		if (!digits(&h, &b) || *h || b < a)
			return 0;
	} else {
		b = UINT64_MAX;
	}
	if (a >= size)
		return -1;
	if (b >= size)
		b = size - 1;
	*off = a;
	*len = b - a + 1;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint64_t fsize = fuzz_u64(&in);
	bool absent = fuzz_byte(&in) & 1;
	char *h = fuzz_rest(&in, NULL);
	const char *hdr = absent ? NULL : h;
	uint64_t off = 7, len = 7, woff = 7, wlen = 7;

	if (!(fsize >> 56 & 1))
		fsize %= 1024;
	int got = cs_http_parse_range(hdr, fsize, &off, &len);
	int exp = reference(hdr, fsize, &woff, &wlen);

	FUZZ_CHECK(got == exp && (got != 1 || (off == woff && len == wlen)),
		   "'%s' of %" PRIu64 " bytes: reference %d [%" PRIu64 ", +%" PRIu64 "), got %d [%"
		   PRIu64 ", +%" PRIu64 ")", hdr ? fuzz_show(hdr, strlen(hdr)) : "(none)", fsize,
		   exp, woff, wlen, got, off, len);
	if (got == 1)
		FUZZ_CHECK(len >= 1 && off < fsize && len <= fsize - off,
			   "[%" PRIu64 ", +%" PRIu64 ") is not within %" PRIu64 " bytes", off, len,
			   fsize);
	free(h);
	return 0;
}
