/* test_index.c - the index of names hosts map: a name added is "maybe" at
 * once, with the directories above it; a name never added is "absent"
 * (but for rare false positives, counted); a replaced index is followed;
 * one made too big and fitted answers as one made at the smaller size. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "index_file.h"

static char spool[] = "/tmp/cs-index-XXXXXX";

static int setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(spool));
	snprintf(cs_cfg.spool, sizeof cs_cfg.spool, "%s", spool);
	return 0;
}

static int teardown(void **state)
{
	char path[256];

	(void)state;
	snprintf(path, sizeof path, "%s/index", spool);
	unlink(path);
	rmdir(spool);
	return 0;
}

static void no_index_yet(void **state)
{
	(void)state;
	char path[256];
	FILE *f;

	assert_int_equal(cs_index_lookup("img", "a.jpg"), CS_INDEX_NONE);
	/* Something that is not an index is refused as none (looked for
	 * again at most once a second). */
	snprintf(path, sizeof path, "%s/index", spool);
	assert_non_null(f = fopen(path, "w"));
	for (int i = 0; i < 10000; i++)
		fputs("not an index ", f);
	fclose(f);
	usleep(1100 * 1000);
	assert_int_equal(cs_index_lookup("img", "a.jpg"), CS_INDEX_NONE);
	unlink(path);
	usleep(1100 * 1000);
}

static void names_and_their_directories(void **state)
{
	(void)state;
	struct cs_index_file x;
	char rel[64];
	int wrong = 0;

	assert_int_equal(cs_index_file_create(&x, spool, 1000), 0);
	cs_index_file_add(&x, "img", "2026/11/photo.jpg");
	assert_int_equal(cs_index_file_publish(&x, spool), 0);
	assert_int_equal(cs_index_lookup("img", "2026/11/photo.jpg"), CS_INDEX_MAYBE);
	assert_int_equal(cs_index_lookup("img", "2026/11"), CS_INDEX_MAYBE);
	assert_int_equal(cs_index_lookup("img", "2026"), CS_INDEX_MAYBE);
	assert_int_equal(cs_index_lookup("css", "2026"), CS_INDEX_ABSENT);      /* namespace */
	assert_int_equal(cs_index_lookup("img", "2026/11/photo.jp"), CS_INDEX_ABSENT);
	assert_int_equal(cs_index_lookup("img", "2026/1"), CS_INDEX_ABSENT);

	/* Added while hosts have it mapped: seen at once. */
	cs_index_file_add(&x, "img", "later/one.png");
	assert_int_equal(cs_index_lookup("img", "later/one.png"), CS_INDEX_MAYBE);
	/* Names are counted once, however often they are added (the poll
	 * adds the same ones again): 2026, 2026/11, the photo, later, the png. */
	for (int i = 0; i < 10; i++)
		assert_false(cs_index_file_add(&x, "img", "later/one.png"));
	assert_int_equal(x.head->names, 5);
	/* A name not added before is new, whatever the directories above it. */
	assert_true(cs_index_file_add(&x, "img", "later/two.png"));
	assert_int_equal(x.head->names, 6);

	/* Names never added: "absent", but for a few false positives. */
	for (int i = 0; i < 100000; i++) {
		snprintf(rel, sizeof rel, "absent/%d.jpg", i);
		wrong += cs_index_lookup("img", rel) != CS_INDEX_ABSENT;
	}
	if (wrong > 20)
		fail_msg("%d of 100000 names never added said maybe", wrong);
	print_message("%d of 100000 names never added said maybe\n", wrong);
	cs_index_file_close(&x, true);          /* the next test replaces it */
}

static void replaced_index_is_followed(void **state)
{
	(void)state;
	struct cs_index_file a, b;

	assert_int_equal(cs_index_file_create(&a, spool, 10), 0);
	cs_index_file_add(&a, "img", "old.jpg");
	assert_int_equal(cs_index_file_publish(&a, spool), 0);
	assert_int_equal(cs_index_lookup("img", "old.jpg"), CS_INDEX_MAYBE);
	assert_int_equal(cs_index_lookup("img", "new.jpg"), CS_INDEX_ABSENT);

	/* Built again without the deleted name, bigger. */
	assert_int_equal(cs_index_file_create(&b, spool, 1000000), 0);
	cs_index_file_add(&b, "img", "new.jpg");
	assert_int_equal(cs_index_file_publish(&b, spool), 0);
	cs_index_file_close(&a, true);
	assert_int_equal(cs_index_lookup("img", "new.jpg"), CS_INDEX_MAYBE);
	assert_int_equal(cs_index_lookup("img", "old.jpg"), CS_INDEX_ABSENT);
	assert_true(cs_index_file_capacity(&b) >= 1000000);
	cs_index_file_close(&b, false);
}

/* Whether (ns, rel) is "maybe" in x's blocks, as a host tests it. */
static bool has(const struct cs_index_file *x, const char *ns, const char *rel)
{
	uint64_t h[2];

	cs_index_hash(ns, rel, h);
	return cs_index_test(x->blocks, x->head->nblocks, h);
}

static void fitted_index_answers_the_same(void **state)
{
	(void)state;
	struct cs_index_file big, small;
	char rel[64];
	int wrong = 0, differ = 0;

	/* Room for a million made, 20,000 names added, fitted to them. */
	assert_int_equal(cs_index_file_create(&big, spool, 1000000), 0);
	assert_int_equal(cs_index_file_create(&small, spool, 20000), 0);
	for (int i = 0; i < 20000; i++) {
		snprintf(rel, sizeof rel, "d%d/%d.jpg", i / 100, i);
		cs_index_file_add(&big, "img", rel);
		cs_index_file_add(&small, "img", rel);
	}
	assert_true(big.head->nblocks > small.head->nblocks);
	assert_int_equal(cs_index_file_fit(&big, big.head->names), 0);
	assert_int_equal(big.head->nblocks, small.head->nblocks);
	assert_int_equal(big.len, small.len);
	assert_int_equal(memcmp(big.blocks, small.blocks, small.len - CS_INDEX_HEAD), 0);
	/* Every name added is in, the directories too; few others. */
	for (int i = 0; i < 20000; i++) {
		snprintf(rel, sizeof rel, "d%d/%d.jpg", i / 100, i);
		differ += !has(&big, "img", rel);
	}
	assert_int_equal(differ, 0);
	assert_true(has(&big, "img", "d199"));
	for (int i = 0; i < 100000; i++) {
		snprintf(rel, sizeof rel, "absent/%d.jpg", i);
		wrong += has(&big, "img", rel);
	}
	if (wrong > 100)
		fail_msg("%d of 100000 names never added said maybe", wrong);
	/* The file shrank with it; published, it is what hosts map. */
	assert_int_equal(cs_index_file_publish(&big, spool), 0);
	char path[256];
	struct stat st;
	snprintf(path, sizeof path, "%s/index", spool);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((size_t)st.st_size, big.len);
	/* A published file is never resized under the hosts. */
	assert_int_equal(cs_index_file_fit(&big, 1), -EINVAL);
	cs_index_file_close(&small, false);
	cs_index_file_close(&big, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(no_index_yet),
		cmocka_unit_test(names_and_their_directories),
		cmocka_unit_test(replaced_index_is_followed),
		cmocka_unit_test(fitted_index_answers_the_same),
	};
	return cmocka_run_group_tests_name("index", tests, setup, teardown);
}
