/*
 * rate.c - bytes per second, on average since the stretch began: work that
 * paused (nothing to do) does not bank more than a second's worth.
 */
#include <unistd.h>

#include "cs.h"
#include "rate.h"

void cs_rate_init(struct cs_rate *r, uint64_t per_second)
{
	r->per_second = per_second;
	r->start_ms = cs_clock_ms();
	r->spent = 0;
}

bool cs_rate_take(struct cs_rate *r, uint64_t bytes, const int *stop)
{
	int64_t now = cs_clock_ms();

	if (r->per_second == 0)
		return !(stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE));
	/* Idle for over a second: start a new stretch, one second's burst. */
	if ((uint64_t)(now - r->start_ms) * r->per_second / 1000 > r->spent + r->per_second) {
		r->start_ms = now - 1000;
		r->spent = 0;
	}
	r->spent += bytes;
	for (;;) {
		int64_t due = r->start_ms + (int64_t)(r->spent * 1000 / r->per_second);
		now = cs_clock_ms();
		if (stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE))
			return false;
		if (now >= due - 1000)
			return true;
		int64_t ms = due - 1000 - now;
		usleep((ms < 50 ? ms : 50) * 1000);
	}
}
