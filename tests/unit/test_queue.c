/* test_queue.c - the order in which journal entries are replicated: which
 * run together, which wait, and what a finished write covers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "queue.h"

static struct cs_queue q;
static int journal;             /* a stand-in for where entries came from */
static uint64_t next_off;

static void add(char op, const char *rel, const char *rel2, int64_t now)
{
	struct cs_entry e = { .op = op, .off = next_off++ };

	snprintf(e.ns, sizeof e.ns, "img");
	snprintf(e.rel, sizeof e.rel, "%s", rel);
	snprintf(e.rel2, sizeof e.rel2, "%s", rel2 ? rel2 : "");
	assert_int_equal(cs_queue_add(&q, &e, &journal, now), 0);
}

static int setup(void **state)
{
	(void)state;
	cs_queue_init(&q);
	next_off = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	while (q.head) {
		struct cs_qentry *x = q.head;
		q.head = x->next;
		cs_queue_free(x);
	}
	return 0;
}

/* The paths of b[0, n), space-separated. */
static const char *names(struct cs_qentry **b, int n)
{
	static char out[1024];
	size_t len = 0;

	out[0] = '\0';
	for (int i = 0; i < n; i++)
		len += snprintf(out + len, sizeof out - len, "%s%s", i ? " " : "", b[i]->rel);
	return out;
}

/* Mark b[0, n) done, retire them, and return how many left the queue. */
static int finish(struct cs_qentry **b, int n, int64_t began, int64_t now)
{
	int left = 0;

	for (int i = 0; i < n; i++)
		b[i]->done = true;
	for (struct cs_qentry *x = cs_queue_retire(&q, b, n, began, now), *y; x; x = y) {
		y = x->next;
		cs_queue_free(x);
		left++;
	}
	return left;
}

static uint64_t no_size(const struct cs_qentry *x)
{
	(void)x;
	return 0;
}

static void settle_then_batch(void **state)
{
	(void)state;
	struct cs_qentry *b[64];
	int wait;

	add(CS_OP_WRITE, "a", NULL, 1000);
	add(CS_OP_WRITE, "b", NULL, 1001);
	/* Too fresh: a temp file is usually renamed within the settle time. */
	assert_int_equal(cs_queue_next(&q, 1002, b, 64, no_size, &wait), 0);
	assert_int_equal(wait, 3);
	int n = cs_queue_next(&q, 1010, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "a b");
	assert_int_equal(finish(b, n, 1010, 1011), 2);
	assert_int_equal(q.count, 0);
	assert_int_equal(cs_queue_next(&q, 1020, b, 64, no_size, &wait), 0);
	assert_int_equal(wait, -1);
}

static void delete_and_rename_run_alone(void **state)
{
	(void)state;
	struct cs_qentry *b[64];
	int wait, n;

	add(CS_OP_WRITE, "a", NULL, 0);
	add(CS_OP_WRITE, "b", NULL, 0);
	add(CS_OP_DELETE, "c", NULL, 0);
	add(CS_OP_WRITE, "d", NULL, 0);
	add(CS_OP_RENAME, "d", "e", 0);
	n = cs_queue_next(&q, 100, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "a b");        /* the delete waits for them */
	finish(b, n, 100, 100);
	n = cs_queue_next(&q, 100, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "c");
	finish(b, n, 100, 100);
	n = cs_queue_next(&q, 100, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "d");
	finish(b, n, 100, 100);
	n = cs_queue_next(&q, 100, b, 64, no_size, &wait);
	assert_int_equal(n, 1);
	assert_int_equal(b[0]->op, CS_OP_RENAME);
}

static void one_write_per_path_and_cover(void **state)
{
	(void)state;
	struct cs_qentry *b[64];
	int wait, n;

	add(CS_OP_WRITE, "a", NULL, 0);
	add(CS_OP_WRITE, "b", NULL, 0);
	add(CS_OP_WRITE, "a", NULL, 0);
	n = cs_queue_next(&q, 100, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "a b");
	/* Read before the batch began: its bytes were hashed with the first. */
	assert_int_equal(finish(b, n, 100, 101), 3);
	assert_int_equal(q.count, 0);

	add(CS_OP_WRITE, "a", NULL, 200);
	n = cs_queue_next(&q, 300, b, 64, no_size, &wait);
	add(CS_OP_WRITE, "a", NULL, 301);       /* written again while it ran */
	assert_int_equal(finish(b, n, 300, 302), 1);
	assert_int_equal(q.count, 1);           /* must run again */
}

static void a_failing_entry_holds_back_its_path_only(void **state)
{
	(void)state;
	struct cs_qentry *b[64];
	int wait, n;

	add(CS_OP_WRITE, "stuck", NULL, 0);
	add(CS_OP_WRITE, "ok1", NULL, 0);
	n = cs_queue_next(&q, 100, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "stuck ok1");
	b[1]->done = true;              /* stuck failed on its own, ok1 landed */
	struct cs_qentry *x = cs_queue_retire(&q, b, 2, 100, 100);
	assert_non_null(x);
	assert_null(x->next);
	cs_queue_free(x);
	assert_int_equal(q.count, 1);

	add(CS_OP_WRITE, "ok2", NULL, 100);
	add(CS_OP_DELETE, "stuck", NULL, 100);
	add(CS_OP_WRITE, "ok3", NULL, 100);
	add(CS_OP_RENAME, "other", "stuck", 100);
	add(CS_OP_WRITE, "ok4", NULL, 100);
	/* While stuck backs off, the rest of the queue goes on, but nothing
	 * about its path. */
	n = cs_queue_next(&q, 150, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "ok2 ok3 ok4");
	finish(b, n, 150, 150);
	assert_int_equal(cs_queue_next(&q, 150, b, 64, no_size, &wait), 0);
	assert_true(wait > 0 && wait <= 100);   /* until stuck's backoff ends */
	n = cs_queue_next(&q, 250, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "stuck");
	/* It fails again: twice as long. */
	cs_queue_retire(&q, b, n, 250, 250);
	assert_int_equal(cs_queue_next(&q, 400, b, 64, no_size, &wait), 0);
	n = cs_queue_next(&q, 451, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "stuck");
	finish(b, n, 451, 451);
	n = cs_queue_next(&q, 451, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "stuck");      /* the delete, in order */
	assert_int_equal(b[0]->op, CS_OP_DELETE);
}

static void a_registry_outage_pauses_everything(void **state)
{
	(void)state;
	struct cs_qentry *b[64];
	int wait, n;

	add(CS_OP_WRITE, "a", NULL, 0);
	n = cs_queue_next(&q, 100, b, 64, no_size, &wait);
	cs_queue_retire(&q, b, n, 100, 100);
	cs_queue_pause(&q, 100);
	add(CS_OP_WRITE, "b", NULL, 100);
	assert_int_equal(cs_queue_next(&q, 150, b, 64, no_size, &wait), 0);
	assert_int_equal(wait, 50);
	cs_queue_pause(&q, 200);                /* still down: 0.2 s */
	assert_int_equal(cs_queue_next(&q, 350, b, 64, no_size, &wait), 0);
	cs_queue_resume(&q);
	n = cs_queue_next(&q, 350, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "a b");
}

/* The agent pauses the queue for an outage before it retires the batch:
 * its entries wait out the pause only, and a failure of their own after it
 * backs off from the start. */
static void an_outage_is_not_the_entries_failure(void **state)
{
	(void)state;
	struct cs_qentry *b[64];
	int wait, n;

	add(CS_OP_WRITE, "a", NULL, 0);
	n = cs_queue_next(&q, 100, b, 64, no_size, &wait);
	cs_queue_pause(&q, 100);                /* the registry is down */
	cs_queue_retire(&q, b, n, 100, 100);
	n = cs_queue_next(&q, 200, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "a");  /* as soon as the pause ends */
	cs_queue_pause(&q, 200);                /* still down: 0.2 s */
	cs_queue_retire(&q, b, n, 200, 200);
	n = cs_queue_next(&q, 400, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "a");
	cs_queue_resume(&q);                    /* back, but a fails on its own */
	cs_queue_retire(&q, b, n, 400, 400);
	assert_int_equal(cs_queue_next(&q, 499, b, 64, no_size, &wait), 0);
	n = cs_queue_next(&q, 500, b, 64, no_size, &wait);
	assert_string_equal(names(b, n), "a");  /* 0.1 s, as for a first failure */
}

static void holder_records_batch_apart_from_writes(void **state)
{
	(void)state;
	struct cs_qentry *b[300];
	int wait, n;

	add(CS_OP_HELD, "h1", NULL, 0);
	add(CS_OP_WRITE, "w1", NULL, 0);
	add(CS_OP_HELD, "h2", NULL, 0);
	add(CS_OP_WRITE, "w2", NULL, 0);
	n = cs_queue_next(&q, 100, b, 300, no_size, &wait);
	assert_string_equal(names(b, n), "h1 h2");
	finish(b, n, 100, 100);
	n = cs_queue_next(&q, 100, b, 300, no_size, &wait);
	assert_string_equal(names(b, n), "w1 w2");
}

static uint64_t three_mib(const struct cs_qentry *x)
{
	(void)x;
	return 3 << 20;
}

static void batches_are_bounded(void **state)
{
	(void)state;
	struct cs_qentry *b[300];
	char rel[16];
	int wait, n;

	for (int i = 0; i < 40; i++) {
		snprintf(rel, sizeof rel, "f%d", i);
		add(CS_OP_WRITE, rel, NULL, 0);
	}
	n = cs_queue_next(&q, 100, b, 300, no_size, &wait);
	assert_int_equal(n, CS_QUEUE_BATCH);
	n = cs_queue_next(&q, 100, b, 300, three_mib, &wait);
	assert_int_equal(n, 2);                 /* 8 MiB at most */
}

static void a_path_is_pending_until_its_entries_leave(void **state)
{
	(void)state;
	struct cs_qentry *b[300];
	int wait, n;

	add(CS_OP_WRITE, "w", NULL, 0);
	add(CS_OP_RENAME, "from", "to", 0);
	add(CS_OP_HELD, "h", NULL, 0);
	assert_true(cs_queue_names(&q, "img", "w"));
	assert_true(cs_queue_names(&q, "img", "from"));
	assert_true(cs_queue_names(&q, "img", "to"));      /* a rename names both */
	assert_true(cs_queue_names(&q, "img", "h"));
	assert_false(cs_queue_names(&q, "img", "other"));
	assert_false(cs_queue_names(&q, "doc", "w"));      /* another namespace */
	n = cs_queue_next(&q, 100, b, 300, no_size, &wait);
	assert_string_equal(names(b, n), "w");
	b[0]->done = false;                                 /* failed: still waiting */
	cs_queue_retire(&q, b, n, 100, 100);
	assert_true(cs_queue_names(&q, "img", "w"));
	finish(b, n, 100, 100);
	assert_false(cs_queue_names(&q, "img", "w"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(settle_then_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(delete_and_rename_run_alone, setup, teardown),
		cmocka_unit_test_setup_teardown(one_write_per_path_and_cover, setup, teardown),
		cmocka_unit_test_setup_teardown(a_failing_entry_holds_back_its_path_only, setup, teardown),
		cmocka_unit_test_setup_teardown(a_registry_outage_pauses_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(an_outage_is_not_the_entries_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(holder_records_batch_apart_from_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(batches_are_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(a_path_is_pending_until_its_entries_leave, setup,
						teardown),
	};
	return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
