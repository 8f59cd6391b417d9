/*
 * rate.h - a bound on bytes per second for background work (rate.c):
 * verify's reads, repair's pushes.  Not for misses, which go as fast as
 * they can.
 */
#ifndef CS_RATE_H
#define CS_RATE_H

#include <stdbool.h>
#include <stdint.h>

/* The token bucket: tokens are bytes, earned at rate per second, at most a
 * tenth of a second's worth saved up.  Pure arithmetic on the times it is
 * given, so it can be tested without waiting. */
struct cs_bucket {
	uint64_t rate;                  /* bytes per second; 0: no bound */
	int64_t last_us;                /* when tokens was brought up to date */
	double tokens;                  /* bytes that may be read now; below 0: owed */
};
void cs_bucket_init(struct cs_bucket *b, uint64_t rate, int64_t now_us);
/* n bytes were taken at now_us (monotonic): the microseconds to wait before
 * taking more, 0 for none. */
int64_t cs_bucket_take(struct cs_bucket *b, uint64_t n, int64_t now_us);

/* The bucket with the waiting done: for a thread that sends in batches. */
struct cs_rate {
	struct cs_bucket b;
	uint64_t per_second;            /* as given: 0 for no bound */
};
/* Start (or restart, with a new bound) at per_second bytes/s. */
void cs_rate_init(struct cs_rate *r, uint64_t per_second);
/* Take bytes, then sleep, in steps of at most 50 ms, as long as the bound
 * says; false, at once, when *stop becomes non-zero (stop may be NULL). */
bool cs_rate_take(struct cs_rate *r, uint64_t bytes, const int *stop);

#endif
