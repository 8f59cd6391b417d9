/*
 * fuzz_route.c - the peer endpoint's URL path: strict percent-decoding
 * (cs_url_decode, which replaces libmicrohttpd's, and cs_url_decode_to,
 * which journal lines and headers use) and routing
 * (cs_route_parse), as http.c runs them on every request.
 *
 * Decoding is checked against a reference written apart from it: "%XY"
 * with two hex digits stands for its byte, except an encoded '/'; no byte,
 * encoded or not, may be a control byte or DEL; anything else is -EINVAL.
 * What decodes must survive cs_url_encode_path and decoding again
 * unchanged, and encoding must stay within the buffer it is given.
 *
 * Routing: only the exact fixed paths and "/v1/files/<ns>/<rel>" are
 * routes; a files route's namespace is 1-63 bytes without '/', its rel
 * passes cs_path_rel_valid and is the whole rest of the path, and rel
 * normalised under a directory stays below that directory (nothing a peer
 * sends can name a file outside a namespace).
 *
 * Input: the URL path as it arrives.
 */
#include <errno.h>
#include <stdbool.h>

#include "cs.h"
#include "fuzz.h"
#include "route.h"

static int hexval(char c)
{
	static const char digits[] = "0123456789abcdef0123456789ABCDEF";
	const char *p = c ? strchr(digits, c) : NULL;

	return p ? (int)(p - digits) % 16 : -1;
}

static int reference_decode(const char *in, char *out)
{
	size_t o = 0;

	for (size_t i = 0; in[i]; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '%') {
			int h = hexval(in[i + 1]), l = h < 0 ? -1 : hexval(in[i + 2]);
			if (h < 0 || l < 0)
				return -EINVAL;
			c = (unsigned char)(h * 16 + l);
			if (c == '/')
				return -EINVAL;
			i += 2;
		}
		if (c < 0x20 || c == 0x7f)
			return -EINVAL;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

static void check_route(const char *path)
{
	static const struct {
		const char *path;
		enum cs_route_kind kind;
	} fixed[] = {
		{ "/v1/health", CS_ROUTE_HEALTH },
		{ "/v1/stats", CS_ROUTE_STATS },
		{ "/v1/index", CS_ROUTE_INDEX },
		{ "/metrics", CS_ROUTE_METRICS },
		{ "/v1/repair", CS_ROUTE_REPAIR },
	};
	static const char files[] = "/v1/files/", repair[] = "/v1/repair/";
	struct cs_route r;
	int rc = cs_route_parse(path, &r);
	size_t plen = strlen(path);

	FUZZ_CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL, "route '%s': rc %d",
		   fuzz_show(path, plen), rc);
	for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
		if (strcmp(path, fixed[i].path) == 0) {
			FUZZ_CHECK(rc == 0 && r.kind == fixed[i].kind, "'%s': rc %d kind %d",
				   path, rc, (int)r.kind);
			return;
		}
	if (strncmp(path, repair, sizeof repair - 1) == 0) {
		/* A repair pass's rate: "max" or 1 to 19 digits, nothing else. */
		const char *rate = path + sizeof repair - 1;
		size_t n = strlen(rate), digits = strspn(rate, "0123456789");
		bool good = strcmp(rate, "max") == 0 || (n > 0 && n <= 19 && digits == n);
		FUZZ_CHECK(good ? rc == 0 && r.kind == CS_ROUTE_REPAIR && r.rel == rate
				: rc == -EINVAL, "'%s': rc %d for a repair rate", fuzz_show(path, plen), rc);
		return;
	}
	if (strncmp(path, files, sizeof files - 1) != 0) {
		FUZZ_CHECK(rc == -ENOENT, "'%s' is no route, got %d", fuzz_show(path, plen), rc);
		return;
	}
	if (rc < 0) {
		FUZZ_CHECK(rc == -EINVAL, "'%s': a files route refused with %d",
			   fuzz_show(path, plen), rc);
		return;
	}
	size_t nl = strlen(r.ns);
	FUZZ_CHECK(r.kind == CS_ROUTE_FILES && nl > 0 && nl < CS_NAME_MAX && !strchr(r.ns, '/'),
		   "'%s': kind %d ns '%s'", fuzz_show(path, plen), (int)r.kind,
		   fuzz_show(r.ns, nl));
	/* rel is the rest of the path, whole: nothing of it dropped. */
	FUZZ_CHECK(r.rel == path + sizeof files - 1 + nl + 1 &&
		   memcmp(path + sizeof files - 1, r.ns, nl) == 0 && r.rel[-1] == '/',
		   "'%s': ns '%s' rel '%s' are not the path", fuzz_show(path, plen),
		   fuzz_show(r.ns, nl), fuzz_show(r.rel, strlen(r.rel)));
	size_t rl = strlen(r.rel);
	FUZZ_CHECK(cs_path_rel_valid(r.rel, rl), "'%s': rel '%s' is not valid",
		   fuzz_show(path, plen), fuzz_show(r.rel, rl));

	/* Beneath its namespace: normalising changes nothing, no escape. */
	char dir[] = "/srv/ns", *want = malloc(sizeof dir + rl + 1), *got = malloc(CS_PATH_MAX);
	if (!want || !got)
		abort();
	snprintf(want, sizeof dir + rl + 1, "%s/%s", dir, r.rel);
	int n = cs_path_normalize(dir, r.rel, got, CS_PATH_MAX);
	FUZZ_CHECK(n < 0 || strcmp(got, want) == 0, "rel '%s' normalises to '%s' under %s",
		   fuzz_show(r.rel, rl), fuzz_show(got, strlen(got)), dir);
	free(want);
	free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	size_t len;
	char *raw = fuzz_rest(&in, &len);
	char *dec = malloc(len + 1), *want = malloc(len + 1);

	if (!dec || !want)
		abort();
	memcpy(dec, raw, len + 1);
	int got = cs_url_decode(dec), exp = reference_decode(raw, want);

	FUZZ_CHECK(got == exp && (got < 0 || memcmp(dec, want, got + 1) == 0),
		   "decode '%s': reference %d '%s', got %d '%s'", fuzz_show(raw, strlen(raw)), exp,
		   exp >= 0 ? fuzz_show(want, exp) : "", got, got >= 0 ? fuzz_show(dec, got) : "");

	/* The span form (journal lines, headers) decodes alike into exactly the
	 * room it needs, and says -ENOSPC with one byte less. */
	size_t rl = strlen(raw);
	char *span = malloc(rl + 1);
	if (!span)
		abort();
	int sgot = cs_url_decode_to(raw, rl, span, rl + 1);
	FUZZ_CHECK(sgot == exp && (sgot < 0 || memcmp(span, want, sgot + 1) == 0),
		   "decode span '%s': reference %d, got %d", fuzz_show(raw, rl), exp, sgot);
	if (exp >= 0) {
		FUZZ_CHECK(cs_url_decode_to(raw, rl, span, exp + 1) == exp,
			   "decode span '%s' into %d bytes", fuzz_show(raw, rl), exp + 1);
		FUZZ_CHECK(cs_url_decode_to(raw, rl, span, exp) == -ENOSPC,
			   "decode span '%s' into %d bytes did not say -ENOSPC",
			   fuzz_show(raw, rl), exp);
	}
	free(span);

	if (got >= 0) {
		/* Encoded into exactly the room it needs, and one byte less. */
		size_t need = 0;
		for (int i = 0; i < got; i++) {
			unsigned char c = (unsigned char)dec[i];
			bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				     (c >= '0' && c <= '9') || strchr("-._~/", c);
			need += plain ? 1 : 3;
		}
		char *enc = malloc(need + 1), *back = malloc(need + 1);
		if (!enc || !back)
			abort();
		int m = cs_url_encode_path(dec, enc, need + 1);
		FUZZ_CHECK(m == (int)need, "encode '%s': want %zu bytes, got %d",
			   fuzz_show(dec, got), need, m);
		if (need) {
			char *tight = malloc(need);
			if (!tight)
				abort();
			FUZZ_CHECK(cs_url_encode_path(dec, tight, need) == -ENOSPC,
				   "encode '%s' into %zu bytes did not say -ENOSPC",
				   fuzz_show(dec, got), need);
			free(tight);
		}
		memcpy(back, enc, need + 1);
		int b = cs_url_decode(back);
		FUZZ_CHECK(b == got && memcmp(back, dec, got + 1) == 0,
			   "'%s' encoded '%s' decodes to %d '%s'", fuzz_show(dec, got),
			   fuzz_show(enc, need), b, b >= 0 ? fuzz_show(back, b) : "");
		free(enc);
		free(back);
		check_route(dec);
	}
	check_route(raw);
	free(raw);
	free(dec);
	free(want);
	return 0;
}
