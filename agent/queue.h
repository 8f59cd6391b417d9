/*
 * queue.h - journal entries waiting to be replicated, and which of them run
 * together (queue.c).  Pure: no registry, no network, no files, so the
 * rules are tested without servers (tests/unit/test_queue.c).
 */
#ifndef CS_QUEUE_H
#define CS_QUEUE_H

#include "cs.h"

#define CS_QUEUE_SETTLE_MS 5            /* a closed temp file is usually renamed by then */
#define CS_QUEUE_BATCH 32               /* writes run together at most */
#define CS_QUEUE_HOLDS 256              /* holder records written together at most */
#define CS_QUEUE_BYTES (8 << 20)        /* big files go few at a time */

struct cs_qentry {
	struct cs_qentry *next;
	void *journal;                  /* where to acknowledge it (the caller's) */
	uint64_t off;                   /* its offset there */
	int64_t seen;                   /* ms when it was read */
	int64_t not_before;             /* ms: backing off after a failure of its own */
	int fails;
	bool done;                      /* set by whoever ran it */
	char op;
	struct cs_held held;
	char *ns, *rel, *rel2;
};

struct cs_queue {
	struct cs_qentry *head, **tail;
	unsigned long count;
	int64_t paused_until;           /* nothing runs before this */
	int backoff;                    /* ms, while the registry fails */
};

void cs_queue_init(struct cs_queue *q);
/* Queue e, read from journal at ms now.  0 or -ENOMEM. */
int cs_queue_add(struct cs_queue *q, const struct cs_entry *e, void *journal, int64_t now);
/*
 * The next entries to run together, into b[0, max): ripe writes of distinct
 * paths (CS_QUEUE_SETTLE_MS old, at most CS_QUEUE_BATCH and CS_QUEUE_BYTES
 * by size(), unless the first alone is more), or holder records, or one
 * delete or rename alone.  An entry backing off after its own failure holds
 * back the later entries of its paths, and nothing else; a delete or rename
 * also waits for the writes before it to leave the batch.  Returns how many;
 * 0 with *wait_ms until one may be ripe (-1: the queue is empty).
 */
int cs_queue_next(struct cs_queue *q, int64_t now, struct cs_qentry **b, int max,
		  uint64_t (*size)(const struct cs_qentry *x), int *wait_ms);
/*
 * b[0, n), which began running at ms began, has run.  Each entry marked
 * done leaves the queue, together with the later writes of its path read
 * before began (their bytes were on disk before it ran: covered); the rest
 * back off on their own (0.1 s doubling to 5 s), unless the queue was paused
 * for this batch (cs_queue_pause first: the pause is all the waiting an
 * outage costs).  The entries that left are returned as a list through
 * ->next, to acknowledge and then free.
 */
struct cs_qentry *cs_queue_retire(struct cs_queue *q, struct cs_qentry **b, int n,
				  int64_t began, int64_t now);
/* The registry is unreachable: nothing runs for a while (0.1 s doubling to
 * 5 s); resume() after a success. */
void cs_queue_pause(struct cs_queue *q, int64_t now);
void cs_queue_resume(struct cs_queue *q);
void cs_queue_free(struct cs_qentry *x);
/* Whether an entry in q names (ns, rel), as its path or a rename's other
 * path: something about that file is not replicated yet. */
bool cs_queue_names(const struct cs_queue *q, const char *ns, const char *rel);

#endif
