/* test_verify.c - the token bucket that bounds verify's reading: over time
 * it lets through its rate and no more, saves up at most a tenth of a
 * second while idle, and "no bound" never waits.  The clock is simulated:
 * a reader that waits what it is told to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "verify.h"

#define MiB (1 << 20)

/* Read total bytes in chunks of chunk at rate, starting at *now_us and
 * waiting as told: the time it took, in microseconds. */
static int64_t read_all(struct cs_bucket *b, uint64_t total, uint64_t chunk, int64_t *now_us)
{
	int64_t start = *now_us;

	for (uint64_t done = 0; done < total; done += chunk)
		*now_us += cs_bucket_take(b, chunk, *now_us);
	return *now_us - start;
}

static void keeps_to_its_rate(void **state)
{
	struct cs_bucket b;
	int64_t now = 1000000;

	(void)state;
	cs_bucket_init(&b, 4 * MiB, now);
	int64_t took = read_all(&b, 40 * MiB, 128 << 10, &now);
	/* 10 s for 40 MiB at 4 MiB/s, give or take the last chunk */
	assert_in_range(took, 9900000, 10050000);

	/* A chunk larger than a second's worth waits as long as it takes. */
	cs_bucket_init(&b, 1 * MiB, now);
	assert_in_range(cs_bucket_take(&b, 3 * MiB, now), 2990000, 3010000);
}

static void idle_time_saves_little(void **state)
{
	struct cs_bucket b;
	int64_t now = 0;

	(void)state;
	cs_bucket_init(&b, 1 * MiB, now);
	now += 60 * 1000000LL;  /* a minute idle: at most 0.1 s is saved up */
	int64_t took = read_all(&b, 10 * MiB, 64 << 10, &now);
	assert_in_range(took, 9800000, 9950000);
}

static void no_bound_never_waits(void **state)
{
	struct cs_bucket b;

	(void)state;
	cs_bucket_init(&b, 0, 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(cs_bucket_take(&b, 1ULL << 30, 0), 0);
}

static void clock_going_back_gives_nothing(void **state)
{
	struct cs_bucket b;

	(void)state;
	cs_bucket_init(&b, 1 * MiB, 5000000);
	int64_t w = cs_bucket_take(&b, MiB / 2, 5000000);
	assert_in_range(w, 490000, 510000);
	/* an earlier time earns no tokens, and owes on */
	assert_in_range(cs_bucket_take(&b, MiB / 2, 4000000), 990000, 1010000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(keeps_to_its_rate),
		cmocka_unit_test(idle_time_saves_little),
		cmocka_unit_test(no_bound_never_waits),
		cmocka_unit_test(clock_going_back_gives_nothing),
	};
	return cmocka_run_group_tests_name("verify", tests, NULL, NULL);
}
