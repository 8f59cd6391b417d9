/*
 * breaker.h - the circuit breaker in front of each server the agent uses
 * (MySQL in db.c, memcached in mcache.c): after a failure, calls fail at
 * once for a while (1 s, doubling to 8 s) instead of each waiting for a
 * timeout.  The caller holds whatever lock guards the struct.
 */
#ifndef CS_BREAKER_H
#define CS_BREAKER_H

#include "cs.h"

#define CS_BREAKER_MIN_MS 1000
#define CS_BREAKER_MAX_MS 8000

struct cs_breaker {
	int64_t open_until;     /* monotonic ms; calls fail fast before it */
	int64_t backoff;
	int64_t down_since;     /* 0 while the server works */
};

static inline bool cs_breaker_open(const struct cs_breaker *b, int64_t now)
{
	return b->open_until && now < b->open_until;
}

/* A failure; true when the server was working until now (say so). */
static inline bool cs_breaker_fail(struct cs_breaker *b, int64_t now)
{
	b->backoff = b->backoff ? b->backoff * 2 : CS_BREAKER_MIN_MS;
	if (b->backoff > CS_BREAKER_MAX_MS)
		b->backoff = CS_BREAKER_MAX_MS;
	b->open_until = now + b->backoff;
	if (b->down_since)
		return false;
	b->down_since = now;
	return true;
}

/* A success; the ms it had been failing (0 when it was not: say nothing). */
static inline int64_t cs_breaker_ok(struct cs_breaker *b, int64_t now)
{
	int64_t down = b->down_since ? now - b->down_since : 0;

	b->open_until = b->backoff = b->down_since = 0;
	return down;
}

#endif
