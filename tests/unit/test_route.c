/* test_route.c - what the agent's peer endpoint accepts as a peer request path:
 * strict decoding and routing, so nothing can name a file outside a
 * namespace. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

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
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(decoding),
		cmocka_unit_test(routing),
	};
	return cmocka_run_group_tests_name("route", tests, NULL, NULL);
}
