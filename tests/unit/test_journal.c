/* test_journal.c - journal lines: what a writer appends is what the
 * agent reads back, whatever the path holds, and damaged or hostile
 * lines are refused rather than replicated. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cs.h"

static void round_trip(enum cs_op op, const char *rel, const char *rel2)
{
	char line[2 * 3 * CS_PATH_MAX + 128];
	struct cs_held h = { 42, 7, 123456, -1764000000123456789LL };
	struct cs_entry e;
	int n = cs_journal_format(op, "img", rel, rel2, &h, line, sizeof line);

	assert_true(n > 0);
	assert_int_equal(line[n - 1], '\n');
	assert_null(memchr(line, '\n', n - 1));         /* one line, always */
	assert_int_equal(cs_journal_parse(line, n - 1, &e), 0);
	assert_int_equal(e.op, op);
	assert_string_equal(e.ns, "img");
	assert_string_equal(e.rel, rel);
	if (op == CS_OP_RENAME)
		assert_string_equal(e.rel2, rel2);
	if (op == CS_OP_HELD)
		assert_memory_equal(&e.held, &h, sizeof h);
}

/* A holder record with the extreme numbers reads back: cs_parse_i64 took
 * every int64 but INT64_MIN, which PRId64 writes (found by fuzzing). */
static void extremes_round_trip(void **state)
{
	(void)state;
	char line[256];
	struct cs_held lo = { 1, 1, 0, INT64_MIN }, hi = { UINT64_MAX, UINT64_MAX, UINT64_MAX,
							  INT64_MAX };
	struct cs_entry e;
	int64_t v;
	int n;

	n = cs_journal_format(CS_OP_HELD, "img", "a", NULL, &lo, line, sizeof line);
	assert_true(n > 0);
	assert_int_equal(cs_journal_parse(line, n - 1, &e), 0);
	assert_memory_equal(&e.held, &lo, sizeof lo);
	n = cs_journal_format(CS_OP_HELD, "img", "a", NULL, &hi, line, sizeof line);
	assert_true(n > 0);
	assert_int_equal(cs_journal_parse(line, n - 1, &e), 0);
	assert_memory_equal(&e.held, &hi, sizeof hi);

	assert_true(cs_parse_i64("-9223372036854775808", &v) && v == INT64_MIN);
	assert_true(cs_parse_i64("9223372036854775807", &v) && v == INT64_MAX);
	assert_true(cs_parse_i64("-0", &v) && v == 0);
	assert_false(cs_parse_i64("-9223372036854775809", &v));
	assert_false(cs_parse_i64("9223372036854775808", &v));
	assert_false(cs_parse_i64("-", &v));
}

static void lines_round_trip(void **state)
{
	(void)state;
	round_trip(CS_OP_WRITE, "a/b/c.jpg", NULL);
	round_trip(CS_OP_DELETE, "with space/and%25 #?.txt", NULL);
	round_trip(CS_OP_RENAME, "tmp/x.part", "final/caf\xc3\xa9.png");
	round_trip(CS_OP_HELD, "fetched/here.jpg", NULL);
}

/* A name the length of a path made of bytes that are escaped: three times
 * PATH_MAX once encoded, and read back all the same (a reader that bounded
 * the encoded field by PATH_MAX dropped such writes; found by fuzzing). */
static void long_escaped_names(void **state)
{
	(void)state;
	static char rel[CS_PATH_MAX], rel2[CS_PATH_MAX], line[3 * CS_PATH_MAX + 128];
	struct cs_entry e;
	size_t n = 0;

	while (n + 241 < sizeof rel) {          /* components of 240 bytes */
		for (int i = 0; i < 120; i++)
			memcpy(rel + n + 2 * i, "\xc3\xa9", 2);
		n += 240;
		rel[n++] = '/';
	}
	memset(rel + n, 'x', sizeof rel - 1 - n);       /* PATH_MAX - 1 bytes in all */
	memcpy(rel2, rel, sizeof rel);
	rel2[n] = 'y';
	round_trip(CS_OP_WRITE, rel, NULL);
	round_trip(CS_OP_RENAME, rel, rel2);
	round_trip(CS_OP_HELD, rel2, NULL);

	/* One byte more decodes past PATH_MAX: refused, not cut short. */
	int m = cs_journal_format(CS_OP_WRITE, "img", rel, NULL, NULL, line, sizeof line);
	assert_true(m > 3 * 3800);
	memcpy(line + m - 1, "z", 2);           /* in place of the '\n' */
	assert_int_equal(cs_journal_parse(line, m, &e), -EINVAL);
}

/* Names the cluster refuses everywhere are refused when journaled, not
 * written as lines no reader would accept. */
static void control_bytes(void **state)
{
	(void)state;
	char line[256];

	assert_int_equal(cs_journal_format(CS_OP_WRITE, "img", "new\nline", NULL, NULL, line,
					   sizeof line), -EINVAL);
	assert_int_equal(cs_journal_format(CS_OP_RENAME, "img", "a", "b\tc", NULL, line,
					   sizeof line), -EINVAL);
	assert_int_equal(cs_journal_format(CS_OP_WRITE, "img", "../x", NULL, NULL, line,
					   sizeof line), -EINVAL);
}

static void acknowledgements(void **state)
{
	(void)state;
	struct cs_entry e;

	assert_int_equal(cs_journal_parse("K\t12345", 7, &e), 0);
	assert_int_equal(e.op, CS_OP_ACK);
	assert_int_equal(e.off, 12345);
	assert_int_equal(cs_journal_parse("K\t12x", 5, &e), -EINVAL);
}

static void refused(void **state)
{
	(void)state;
	struct cs_entry e;
	static const char *const bad[] = {
		"W\timg\t../etc/passwd",        /* escapes the namespace */
		"W\timg\ta/%2e%2e/b",            /* the same, encoded */
		"W\timg\t/abs",                  /* absolute */
		"W\timg\ta%00b",                 /* NUL */
		"W\timg\ta%2Fb",                 /* encoded separator */
		"X\timg\ta",                     /* unknown operation */
		"R\timg\ta",                     /* rename without target */
		"W\timg\ta\textra",              /* trailing field */
		"W\t\ta",                        /* no namespace */
		"W",                             /* cut short */
		"H\timg\ta\t1\t2\t3",           /* holder record without its mtime */
		"H\timg\ta\t1\t2\tx\t4",        /* ... with a size that is no number */
		"K\t-3",                         /* an offset below 0 */
	};

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(cs_journal_parse(bad[i], strlen(bad[i]), &e), -EINVAL);
}

/* What no writer makes is refused, not read as something near it: a NUL
 * ended a field early (the rest ignored), a namespace no configuration
 * accepts, a trailing tab after an acknowledgement.  Found by
 * tests/fuzz/fuzz_journal.c. */
static void refused_bytes(void **state)
{
	(void)state;
	struct cs_entry e;
	static const struct {
		const char *line;
		size_t len;
	} bad[] = {
#define L(s) { s, sizeof s - 1 }
		L("W\timg\0junk\ta.jpg"),       /* read as namespace "img" */
		L("W\tim\0g\ta.jpg"),
		L("W\timg\ta.jpg\0junk"),       /* read as "a.jpg" */
		L("K\t12\0" "3"),                /* read as 12 */
		L("H\timg\ta\t1\t2\t3\t4\0" "5"),
		L("W\ti m g\ta.jpg"),            /* no configuration has it */
		L("W\timg/x\ta.jpg"),
		L("K\t1\t"),
#undef L
	};

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		if (cs_journal_parse(bad[i].line, bad[i].len, &e) != -EINVAL)
			fail_msg("line %zu accepted: op %c ns '%s' rel '%s'", i, e.op, e.ns, e.rel);
	assert_int_equal(cs_journal_parse("W\tim-g_1.x\ta.jpg", 16, &e), 0);
	assert_string_equal(e.ns, "im-g_1.x");
}

static void too_long(void **state)
{
	(void)state;
	char rel[CS_PATH_MAX], line[64];

	for (size_t i = 0; i < sizeof rel - 1; i++)      /* valid: short segments */
		rel[i] = i % 8 == 7 ? '/' : 'a';
	rel[sizeof rel - 2] = 'a';
	rel[sizeof rel - 1] = '\0';
	assert_int_equal(cs_journal_format(CS_OP_WRITE, "img", rel, NULL, NULL, line, sizeof line),
			 -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(lines_round_trip),
		cmocka_unit_test(long_escaped_names),
		cmocka_unit_test(extremes_round_trip),
		cmocka_unit_test(control_bytes),
		cmocka_unit_test(acknowledgements),
		cmocka_unit_test(refused),
		cmocka_unit_test(refused_bytes),
		cmocka_unit_test(too_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
