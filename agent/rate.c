/*
 * rate.c - bytes per second: a token bucket, and the sleeping for it.
 */
#include <unistd.h>

#include "cs.h"
#include "rate.h"

#define BURST_US 100000         /* the bucket saves up a tenth of a second */

void cs_bucket_init(struct cs_bucket *b, uint64_t rate, int64_t now_us)
{
	b->rate = rate;
	b->last_us = now_us;
	b->tokens = 0;
}

int64_t cs_bucket_take(struct cs_bucket *b, uint64_t n, int64_t now_us)
{
	double cap = (double)b->rate * BURST_US / 1e6;

	if (!b->rate)
		return 0;
	if (now_us > b->last_us)
		b->tokens += (double)(now_us - b->last_us) * (double)b->rate / 1e6;
	b->last_us = now_us > b->last_us ? now_us : b->last_us;
	if (b->tokens > cap)
		b->tokens = cap;
	b->tokens -= (double)n;
	return b->tokens >= 0 ? 0 : (int64_t)(-b->tokens * 1e6 / (double)b->rate) + 1;
}

void cs_rate_init(struct cs_rate *r, uint64_t per_second)
{
	r->per_second = per_second;
	cs_bucket_init(&r->b, per_second, cs_clock_us());
}

static bool stopped(const int *stop)
{
	return stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE);
}

bool cs_rate_take(struct cs_rate *r, uint64_t bytes, const int *stop)
{
	int64_t wait_us = cs_bucket_take(&r->b, bytes, cs_clock_us());
	int64_t until = cs_clock_us() + wait_us;

	while (!stopped(stop)) {
		int64_t left = until - cs_clock_us();
		if (left <= 0)
			return true;
		usleep(left < 50000 ? left : 50000);
	}
	return false;
}
