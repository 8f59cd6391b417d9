/*
 * health.h - how the cluster's files stand (health.c): the numbers
 * `cs-replicate status` reports and `node drain` / `node remove` wait on.
 * Each is one query over the registry.
 */
#ifndef CS_HEALTH_H
#define CS_HEALTH_H

#include "cs.h"

/*
 * A copy counts toward CS_REPLICAS when it is pinned and on an up, active
 * node; it is live when on an up node that is not removed.
 */
struct cs_health_files {
	uint64_t live;                  /* files not deleted */
	uint64_t under_replicated;      /* ... with a live copy but fewer counting than CS_REPLICAS */
	uint64_t no_live_copy;          /* ... with no live copy at all */
};
/* 0 with *h, or -EAGAIN (registry unreachable). */
int cs_health_files(struct cs_health_files *h);
/*
 * Files node (by id) holds that would have fewer than CS_REPLICAS counting
 * copies without it: 0 with *n, or -EAGAIN.  A drained node has none left
 * and can be removed without losing anything.
 */
int cs_health_dependents(uint32_t node, uint64_t *n);

#endif
