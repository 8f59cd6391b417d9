/*
 * replicate.h - making the cluster reflect journal entries (replicate.c).
 */
#ifndef CS_REPLICATE_H
#define CS_REPLICATE_H

#include "peer.h"
#include "queue.h"

/*
 * Run a batch the queue picked (all writes, all holder records, or one
 * delete or rename): each entry's done is set once the cluster reflects it
 * (registered, and on CS_REPLICAS nodes).  -EAGAIN when the registry could
 * not be reached at all (the queue pauses); 0 otherwise, the entries not
 * done backing off on their own.  When *stop becomes non-zero, pushes under
 * way are dropped within 0.1 s.
 */
int cs_replicate_batch(struct cs_qentry **b, int n, const int *stop);
/*
 * Push each of push[0, np) (push[k] to node target[k]) side by side, and
 * set held[k] when that node's copy is in the registry now: a 200 proves
 * only that something at the target's address said so (an impostor there,
 * the node gone and its port taken, a node table that lies), and a real
 * agent records its copy before it answers (http_put.c).  When MySQL
 * cannot say, none is held (the caller pushes again).  A target that gave
 * no answer is read from and pushed to last for a while, one that holds a
 * copy no longer, and memcached's record of each file that gained a holder
 * is dropped.  Each push[k].rc says how its push went.  The write path and
 * repair (repair.c) push this way.
 */
void cs_replicate_push(struct cs_push *push, const uint32_t *target, bool *held, int np,
		       const int *stop);
/* The size of x's file now (0 when there is none): batches are bounded by
 * bytes. */
uint64_t cs_replicate_size(const struct cs_qentry *x);

#endif
