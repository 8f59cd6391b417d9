/*
 * rate.h - a bound on bytes per second for background work (rate.c):
 * repair's pushes, verify's reads.  Not for misses, which go as fast as
 * they can.
 */
#ifndef CS_RATE_H
#define CS_RATE_H

#include <stdbool.h>
#include <stdint.h>

struct cs_rate {
	uint64_t per_second;    /* 0: no bound */
	int64_t start_ms;       /* when the current stretch began */
	uint64_t spent;         /* bytes taken since then */
};

/* Start (or restart, with a new bound) at per_second bytes/s. */
void cs_rate_init(struct cs_rate *r, uint64_t per_second);
/* Take bytes: sleep, in steps of at most 50 ms, until they fit the bound
 * (a burst of one second is allowed); return early, false, when *stop
 * becomes non-zero. */
bool cs_rate_take(struct cs_rate *r, uint64_t bytes, const int *stop);

#endif
