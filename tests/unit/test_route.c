/* test_route.c - what the agent's peer endpoint accepts as a peer request path:
 * strict decoding and routing, so nothing can name a file outside a
 * namespace; and which part of a file a Range header asks for. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "http.h"
#include "route.h"

static int decode(const char *in, char *out)
{
	strcpy(out, in);
	return cs_url_decode(out);
}

static void decoding(void **state)
{
	(void)state;
	char b[256];

	assert_int_equal(decode("/v1/files/img/a%20b.jpg", b), 21);
	assert_string_equal(b, "/v1/files/img/a b.jpg");
	assert_int_equal(decode("/v1/files/img/caf%C3%A9", b), 19);
	assert_string_equal(b, "/v1/files/img/caf\xc3\xa9");
	assert_true(decode("/v1/files/img/%2e%2e/x", b) > 0);
	assert_string_equal(b, "/v1/files/img/../x");       /* routing refuses it */
	assert_int_equal(decode("/v1/files/img/a%2Fb", b), -EINVAL);
	assert_int_equal(decode("/v1/files/img/a%2fb", b), -EINVAL);
	assert_int_equal(decode("/v1/files/img/a%00b", b), -EINVAL);
	assert_int_equal(decode("/v1/files/img/a%0ab", b), -EINVAL);
	assert_int_equal(decode("/v1/files/img/a%4", b), -EINVAL);
	assert_int_equal(decode("/v1/files/img/a%", b), -EINVAL);
	assert_int_equal(decode("/v1/files/img/a%zz", b), -EINVAL);
	assert_int_equal(decode("/v1/files/img/a\tb", b), -EINVAL);
}

static void route(const char *path, int want, enum cs_route_kind kind,
		  const char *ns, const char *rel)
{
	struct cs_route r;
	int rc = cs_route_parse(path, &r);

	if (rc != want)
		fail_msg("%s: expected %d, got %d", path, want, rc);
	if (rc == 0 && (r.kind != kind || (ns && (strcmp(r.ns, ns) || strcmp(r.rel, rel)))))
		fail_msg("%s: expected %d %s '%s', got %d %s '%s'", path, kind,
			 ns ? ns : "", rel ? rel : "", r.kind, r.ns, r.rel ? r.rel : "");
}

static void routing(void **state)
{
	(void)state;
	route("/v1/health", 0, CS_ROUTE_HEALTH, NULL, NULL);
	route("/v1/stats", 0, CS_ROUTE_STATS, NULL, NULL);
	route("/v1/index", 0, CS_ROUTE_INDEX, NULL, NULL);
	route("/v1/index/x", -ENOENT, 0, NULL, NULL);
	route("/v1/files/img/a.jpg", 0, CS_ROUTE_FILES, "img", "a.jpg");
	route("/v1/files/img/2026/11/a b.jpg", 0, CS_ROUTE_FILES, "img", "2026/11/a b.jpg");
	route("/v1/files/img/../../etc/passwd", -EINVAL, 0, NULL, NULL);
	route("/v1/files/img/a/../../x", -EINVAL, 0, NULL, NULL);
	route("/v1/files/img/./a", -EINVAL, 0, NULL, NULL);
	route("/v1/files/img//a", -EINVAL, 0, NULL, NULL);
	route("/v1/files/img/", -EINVAL, 0, NULL, NULL);
	route("/v1/files/img", -EINVAL, 0, NULL, NULL);
	route("/v1/files//a", -EINVAL, 0, NULL, NULL);
	route("/v1/files/", -EINVAL, 0, NULL, NULL);
	route("/v1/other", -ENOENT, 0, NULL, NULL);
	route("/", -ENOENT, 0, NULL, NULL);
	route("/v1/healthz", -ENOENT, 0, NULL, NULL);
	route("/metrics", 0, CS_ROUTE_METRICS, NULL, NULL);
	route("/metrics/", -ENOENT, 0, NULL, NULL);
	route("/v1/metrics", -ENOENT, 0, NULL, NULL);
}

/* What /metrics counts a request under: a fixed word, never the path. */
static void labels(void **state)
{
	(void)state;
	assert_string_equal(cs_route_label("/v1/files/img/a.jpg"), "files");
	assert_string_equal(cs_route_label("/v1/files/img/../../x"), "files");
	assert_string_equal(cs_route_label("/v1/index"), "index");
	assert_string_equal(cs_route_label("/v1/stats"), "stats");
	assert_string_equal(cs_route_label("/v1/health"), "health");
	assert_string_equal(cs_route_label("/metrics"), "metrics");
	assert_string_equal(cs_route_label("/metrics/x"), "other");
	assert_string_equal(cs_route_label("/v1/files"), "other");
	assert_string_equal(cs_route_label("/etc/passwd"), "other");
	assert_string_equal(cs_route_label(""), "other");
}

static void range(const char *h, uint64_t size, int want, uint64_t off, uint64_t len)
{
	uint64_t o = 7, l = 7;
	int rc = cs_http_parse_range(h, size, &o, &l);

	if (rc != want || (rc == 1 && (o != off || l != len)))
		fail_msg("%s of %" PRIu64 " bytes: expected %d [%" PRIu64 ", +%" PRIu64 "), got %d"
			 " [%" PRIu64 ", +%" PRIu64 ")", h ? h : "(none)", size, want, off, len, rc,
			 o, l);
}

static void ranges(void **state)
{
	(void)state;
	range("bytes=10-19", 100, 1, 10, 10);
	range("bytes=0-0", 100, 1, 0, 1);
	range("bytes=90-", 100, 1, 90, 10);
	range("bytes=50-500", 100, 1, 50, 50);          /* the end past the file: to its end */
	range("bytes=-5", 100, 1, 95, 5);               /* the last 5 bytes */
	range("bytes=-500", 100, 1, 0, 100);
	/* Unsatisfiable: 416. */
	range("bytes=100-", 100, -1, 0, 0);
	range("bytes=100-200", 100, -1, 0, 0);
	range("bytes=-0", 100, -1, 0, 0);
	range("bytes=0-", 0, -1, 0, 0);
	range("bytes=-1", 0, -1, 0, 0);
	/* Ignored, the whole file sent: absent, multiple, malformed. */
	range(NULL, 100, 0, 0, 0);
	range("bytes=1-2,5-6", 100, 0, 0, 0);
	range("bytes=5-4", 100, 0, 0, 0);
	range("items=0-1", 100, 0, 0, 0);
	range("bytes=", 100, 0, 0, 0);
	range("bytes=-", 100, 0, 0, 0);
	range("bytes=1", 100, 0, 0, 0);
	range("bytes=x-1", 100, 0, 0, 0);
	range("bytes=1-x", 100, 0, 0, 0);
	range("bytes=-5x", 100, 0, 0, 0);
	range("bytes=99999999999999999999999-", 100, 0, 0, 0);
	/* Digits only: no space, sign or "0x" before a number (strtoull would
	 * take them; found by tests/fuzz/fuzz_range.c). */
	range("bytes= 5-9", 100, 0, 0, 0);
	range("bytes=0- 9", 100, 0, 0, 0);
	range("bytes=+5-9", 100, 0, 0, 0);
	range("bytes=5-+9", 100, 0, 0, 0);
	range("bytes=--5", 100, 0, 0, 0);
	range("bytes=- 5", 100, 0, 0, 0);
	range("bytes=-+5", 100, 0, 0, 0);
	range("bytes=5--3", 100, 0, 0, 0);
	range("bytes=0x10-", 100, 0, 0, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(decoding),
		cmocka_unit_test(routing),
		cmocka_unit_test(labels),
		cmocka_unit_test(ranges),
	};
	return cmocka_run_group_tests_name("route", tests, NULL, NULL);
}
