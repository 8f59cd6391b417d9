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

/* s[0, len) decoded into out: strictly (see the top of this file) for a
 * path, or leniently for a user or password, where any byte but NUL may be
 * escaped.  Its length, -EINVAL or -ENOSPC.  out may be s itself: the
 * decoded form is never longer. */
static int decode(const char *s, size_t len, char *out, size_t outsz, bool strict)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)s[i];

		if (c == '%') {
			if (i + 2 >= len || (c = escaped(s + i)) <= 0 || (strict && c == '/'))
				return -EINVAL;
			i += 2;
		}
		if (strict && (c < 0x20 || c == 0x7f))
			return -EINVAL;
		if (o + 1 >= outsz)
			return -ENOSPC;
		out[o++] = (char)c;
	}
	if (o >= outsz)
		return -ENOSPC;
	out[o] = '\0';
	return (int)o;
}

int cs_url_decode(char *s)
{
	size_t n = strlen(s);

	return decode(s, n, s, n + 1, true);
}

int cs_url_decode_to(const char *s, size_t len, char *out, size_t outsz)
{
	return decode(s, len, out, outsz, true);
}

int cs_pct_decode(const char *s, size_t len, char *out, size_t outsz)
{
	return decode(s, len, out, outsz, false);
}
