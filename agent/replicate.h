/*
 * replicate.h - making the cluster reflect journal entries (replicate.c).
 */
#ifndef CS_REPLICATE_H
#define CS_REPLICATE_H

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
/* The size of x's file now (0 when there is none): batches are bounded by
 * bytes. */
uint64_t cs_replicate_size(const struct cs_qentry *x);

#endif
