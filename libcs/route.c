/*
 * route.c - the peer protocol's URL paths: strict percent-decoding and
 * /v1/... route parsing, shared by cs-replicate serve and the tests.
 *
 * Decoding refuses what could smuggle a second meaning past the path checks:
 * malformed escapes, an encoded NUL, an encoded '/', control bytes.  What is
 * left must still pass cs_path_rel_valid ("." / ".." / "//" and length).
 */
#include <errno.h>
#include <string.h>

#include "cs.h"

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int cs_url_decode(char *s)
{
	char *w = s;

	for (const char *r = s; *r; r++) {
		int c = (unsigned char)*r;

		if (c == '%') {
			int h = hexval(r[1]), l = h < 0 ? -1 : hexval(r[2]);
			if (h < 0 || l < 0)
				return -EINVAL;
			c = h * 16 + l;
			if (c == '/')
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

int cs_route_parse(const char *path, struct cs_route *r)
{
	static const char files[] = "/v1/files/";
	const char *ns, *slash;

	memset(r, 0, sizeof *r);
	if (strcmp(path, "/v1/health") == 0) {
		r->kind = CS_ROUTE_HEALTH;
		return 0;
	}
	if (strcmp(path, "/v1/stats") == 0) {
		r->kind = CS_ROUTE_STATS;
		return 0;
	}
	if (strncmp(path, files, sizeof files - 1) != 0)
		return -ENOENT;
	ns = path + sizeof files - 1;
	slash = strchr(ns, '/');
	if (!slash || slash == ns || (size_t)(slash - ns) >= CS_NAME_MAX)
		return -EINVAL;
	memcpy(r->ns, ns, slash - ns);
	r->ns[slash - ns] = '\0';
	r->rel = slash + 1;
	if (!cs_path_rel_valid(r->rel, strlen(r->rel)))
		return -EINVAL;
	r->kind = CS_ROUTE_FILES;
	return 0;
}
