/*
 * escape.c - percent-encoding, the one escaping the cluster uses: paths in
 * peer URLs and journal lines are encoded here and decoded strictly, and
 * the user and password of CS_MYSQL are decoded leniently.
 *
 * Strict decoding refuses what could smuggle a second meaning past the path
 * checks: malformed escapes, an encoded NUL, an encoded '/', control bytes.
 * What it lets through must still pass cs_path_rel_valid.
 */
#include <errno.h>
#include <string.h>

#include "cs.h"

int cs_url_encode_path(const char *rel, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)rel; *p; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			     (*p >= '0' && *p <= '9') || strchr("-._~/", *p);
		if (n + (plain ? 1 : 3) + 1 > outsz)
			return -ENOSPC;
		if (plain) {
			out[n++] = (char)*p;
		} else {
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	if (n + 1 > outsz)
		return -ENOSPC;
	out[n] = '\0';
	return (int)n;
}

/* The byte an escape at s ("%XY") stands for, or -1. */
static int escaped(const char *s)
{
	int h = cs_hexval(s[1]), l = h < 0 ? -1 : cs_hexval(s[2]);

	return h < 0 || l < 0 ? -1 : h * 16 + l;
}

int cs_url_decode(char *s)
{
	char *w = s;

	for (const char *r = s; *r; r++) {
		int c = (unsigned char)*r;

		if (c == '%') {
			if ((c = escaped(r)) < 0 || c == '/')
				return -EINVAL;
			r += 2;
		}
		if (c < 0x20 || c == 0x7f)
			return -EINVAL;
		*w++ = (char)c;
	}
	*w = '\0';
	return (int)(w - s);
}

int cs_pct_decode(const char *s, size_t len, char *out, size_t outsz)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)s[i];

		if (c == '%') {
			if (i + 2 >= len || (c = escaped(s + i)) <= 0)
				return -EINVAL;
			i += 2;
		}
		if (o + 1 >= outsz)
			return -ENOSPC;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}
