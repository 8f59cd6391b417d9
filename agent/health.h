/*
 * health.h - how the cluster's files stand (health.c): the numbers
 * `cs-replicate status` reports and `node drain` / `node remove` wait on.
 *
 * Counted exactly over the whole registry, within a time limit (status
 * falls back to the census when the limit is passed), or over a range of
 * file ids (the census's walk adds the ranges up), or in batches of file
 * ids (a node's dependents): no statement runs long at millions of files.
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
/* Per node: the current copies it holds (of files not deleted), their
 * bytes, and how many of its copies are pinned. */
struct cs_health_held {
	uint32_t node;
	uint64_t files, bytes, pinned;
};

/* The most a statement over a range or a batch may take (the server stops
 * it; the caller does the range again in halves): well below the client's
 * 2 s read timeout however loaded the server is. */
#define CS_HEALTH_BATCH_MS 1000

/* The whole registry in one statement (slow at millions of files), given
 * up after ms milliseconds (0: no limit): 0 with *h, -ETIMEDOUT, -EAGAIN
 * (registry unreachable), -EIO.  A statement stopped by its limit is not a
 * dead server. */
int cs_health_files_within(struct cs_health_files *h, int ms);
/* The files with ids in [lo, hi), added to *h: 0, -ETIMEDOUT after ms
 * (0: no limit; nothing added then), or -errno. */
int cs_health_files_in(struct cs_health_files *h, uint64_t lo, uint64_t hi, int ms);
/* Every node's copies, at most max of them into out: how many, -ETIMEDOUT
 * after ms milliseconds (0: no limit), or -errno. */
int cs_health_held_within(struct cs_health_held *out, int max, int ms);
/* The copies of files with ids in [lo, hi), per node, added to out[*n]
 * (at most max nodes): 0, -ETIMEDOUT after ms (nothing added), -errno. */
int cs_health_held_in(struct cs_health_held *out, int *n, int max, uint64_t lo, uint64_t hi,
		      int ms);
/*
 * Files node (by id) holds that would have fewer than CS_REPLICAS counting
 * copies without it: 0 with *n, or -EAGAIN.  A drained node has none left
 * and can be removed without losing anything.  Counted now, in batches of
 * the node's copies, so it is exact (a removal relies on it) and no
 * statement is long: a batch that takes over CS_HEALTH_BATCH_MS is
 * stopped by the server and done again in halves.
 */
int cs_health_dependents(uint32_t node, uint64_t *n);

#endif
