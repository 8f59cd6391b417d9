/* test_local.c - the agent's side of the local protocol: which request
 * lines are fetched, answered absent, or end the connection, and that no
 * byte of a request is ignored. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cs.h"
#include "local.h"

/* Parse line[0, len) (a copy, NUL-terminated as the agent has it). */
static int parse(const char *line, size_t len, char *ns, char *rel)
{
	char buf[256];
	const char *n = NULL, *r = NULL;

	memcpy(buf, line, len);
	buf[len] = '\0';
	int rc = cs_local_parse(buf, len, &n, &r);
	ns[0] = rel[0] = '\0';
	if (rc > 0) {
		strcpy(ns, n);
		strcpy(rel, r);
	}
	return rc;
}

#define PARSE(s, ns, rel) parse(s, sizeof s - 1, ns, rel)

static void requests(void **state)
{
	(void)state;
	char ns[256], rel[256];

	assert_int_equal(PARSE("P\timg\ta/b.jpg", ns, rel), CS_ASK_PRESENT);
	assert_string_equal(ns, "img");
	assert_string_equal(rel, "a/b.jpg");
	assert_int_equal(PARSE("P\timg\t2026/caf\xc3\xa9 1.jpg", ns, rel), CS_ASK_PRESENT);
	assert_string_equal(rel, "2026/caf\xc3\xa9 1.jpg");
}

/* A listing names a directory, or "" for the namespace's top, which no
 * miss may name. */
static void listings(void **state)
{
	(void)state;
	char ns[256], rel[256];

	assert_int_equal(PARSE("L\timg\ta/b", ns, rel), CS_ASK_LIST);
	assert_string_equal(rel, "a/b");
	assert_int_equal(PARSE("L\timg\t", ns, rel), CS_ASK_LIST);
	assert_string_equal(ns, "img");
	assert_string_equal(rel, "");
	assert_int_equal(PARSE("L\timg\t../x", ns, rel), -ENOENT);
	assert_int_equal(PARSE("L\timg\ta/", ns, rel), -ENOENT);
	assert_int_equal(PARSE("L\timg\t\0", ns, rel), -ENOENT);
}

/* Names the cluster cannot have are answered absent, at once. */
static void absent(void **state)
{
	(void)state;
	char ns[256], rel[256];

	assert_int_equal(PARSE("P\timg\t../etc/passwd", ns, rel), -ENOENT);
	assert_int_equal(PARSE("P\timg\t/abs", ns, rel), -ENOENT);
	assert_int_equal(PARSE("P\timg\t", ns, rel), -ENOENT);
	assert_int_equal(PARSE("P\timg\ta\tb", ns, rel), -ENOENT);
	assert_int_equal(PARSE("P\t\ta", ns, rel), -ENOENT);
	assert_int_equal(PARSE("P\ti m g\ta", ns, rel), -ENOENT);
	assert_int_equal(PARSE("P\t0123456789012345678901234567890123456789012345678901234567890123\ta",
			       ns, rel), -ENOENT);
}

/* A NUL ended the path early and the agent fetched a.jpg for
 * "a.jpg<NUL>junk" (the rest ignored); found making the parser separable
 * for tests/fuzz/fuzz_local.c, whose property is that no byte is ignored. */
static void every_byte_counts(void **state)
{
	(void)state;
	char ns[256], rel[256];

	assert_int_equal(PARSE("P\timg\ta.jpg\0junk", ns, rel), -ENOENT);
	assert_int_equal(PARSE("P\timg\0junk\ta.jpg", ns, rel), -ENOENT);
	assert_int_equal(PARSE("P\timg\ta.jpg\0", ns, rel), -ENOENT);
}

static void not_requests(void **state)
{
	(void)state;
	char ns[256], rel[256];

	assert_int_equal(PARSE("", ns, rel), -EINVAL);
	assert_int_equal(PARSE("P", ns, rel), -EINVAL);
	assert_int_equal(PARSE("P\t", ns, rel), -EINVAL);
	assert_int_equal(PARSE("P\timg", ns, rel), -EINVAL);
	assert_int_equal(PARSE("G\timg\ta", ns, rel), -EINVAL);
	assert_int_equal(PARSE("P img a", ns, rel), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(requests),
		cmocka_unit_test(listings),
		cmocka_unit_test(absent),
		cmocka_unit_test(every_byte_counts),
		cmocka_unit_test(not_requests),
	};
	return cmocka_run_group_tests_name("local", tests, NULL, NULL);
}
