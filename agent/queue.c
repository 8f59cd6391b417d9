/*
 * queue.c - the order in which journal entries are replicated.
 *
 * Entries from every journal of the node go into one queue in the order
 * they were read.  What may run together: writes of distinct paths (hashed,
 * registered in one transaction, pushed side by side), or holder records,
 * or a delete or a rename alone.  Entries about one path keep their order:
 * an entry that failed on its own (a file its writer cannot read, one no
 * target could take) backs off, and the entries after it that name the same
 * path wait with it, while everything else goes on.  When the registry
 * itself is down, the whole queue pauses instead.  A write that is done
 * also covers the later writes of the same path that were read before it
 * ran: their bytes were on disk when it hashed the file.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

#define LOOK 256                /* entries looked through for one batch */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

void cs_queue_init(struct cs_queue *q)
{
	memset(q, 0, sizeof *q);
	q->tail = &q->head;
}

void cs_queue_free(struct cs_qentry *x)
{
	free(x->ns);
	free(x->rel);
	free(x->rel2);
	free(x);
}

int cs_queue_add(struct cs_queue *q, const struct cs_entry *e, void *journal, int64_t now)
{
	struct cs_qentry *x = calloc(1, sizeof *x);

	if (!x)
		return -ENOMEM;
	x->journal = journal;
	x->off = e->off;
	x->seen = now;
	x->op = e->op;
	x->held = e->held;
	x->ns = strdup(e->ns);
	x->rel = strdup(e->rel);
	x->rel2 = strdup(e->rel2);
	if (!x->ns || !x->rel || !x->rel2) {
		cs_queue_free(x);
		return -ENOMEM;
	}
	*q->tail = x;
	q->tail = &x->next;
	q->count++;
	return 0;
}

static bool same(const char *ns, const char *rel, const struct cs_qentry *y)
{
	return !strcmp(ns, y->ns) && (!strcmp(rel, y->rel) || (y->rel2[0] && !strcmp(rel, y->rel2)));
}

/* Whether x names a path one of held[0, n) names. */
static bool touches(const struct cs_qentry *x, struct cs_qentry *const *held, int n)
{
	for (int i = 0; i < n; i++)
		if (same(x->ns, x->rel, held[i]) || (x->rel2[0] && same(x->ns, x->rel2, held[i])))
			return true;
	return false;
}

/* Writes, holder records, or one of a kind that runs alone. */
static char kind(char op)
{
	return op == CS_OP_WRITE || op == CS_OP_HELD ? op : 'X';
}

int cs_queue_next(struct cs_queue *q, int64_t now, struct cs_qentry **b, int max,
		  uint64_t (*size)(const struct cs_qentry *x), int *wait_ms)
{
	struct cs_qentry *waiting[LOOK];
	uint64_t bytes = 0;
	int n = 0, nwaiting = 0, looked = 0;
	char batch = 0;
	int64_t soonest = -1;

	*wait_ms = -1;
	if (!q->head)
		return 0;
	if (now < q->paused_until) {
		*wait_ms = (int)(q->paused_until - now);
		return 0;
	}
	for (struct cs_qentry *x = q->head; x && n < max && looked < LOOK; x = x->next, looked++) {
		if (now - x->seen < CS_QUEUE_SETTLE_MS) {
			/* Read in order: the ones after are younger still. */
			int64_t at = x->seen + CS_QUEUE_SETTLE_MS;
			if (soonest < 0 || at < soonest)
				soonest = at;
			break;
		}
		if (x->not_before > now || touches(x, waiting, nwaiting)) {
			if (x->not_before > now && (soonest < 0 || x->not_before < soonest))
				soonest = x->not_before;
			waiting[nwaiting++] = x;        /* its paths wait with it */
			continue;
		}
		char k = kind(x->op);
		if (k == 'X') {
			if (n == 0)
				b[n++] = x;
			break;          /* alone, and after the writes before it */
		}
		if (batch && k != batch)
			continue;       /* the other kind goes in the next batch */
		if (k == CS_OP_WRITE) {
			bool dup = false;
			for (int i = 0; i < n && !dup; i++)
				dup = !strcmp(b[i]->rel, x->rel) && !strcmp(b[i]->ns, x->ns);
			if (dup)
				continue;       /* covered when the first is done */
			if (n >= CS_QUEUE_BATCH)
				break;          /* before size(): an lstat */
			uint64_t s = size ? size(x) : 0;
			if (n > 0 && bytes + s > CS_QUEUE_BYTES)
				break;
			bytes += s;
		}
		batch = k;
		b[n++] = x;
	}
	if (n == 0 && soonest >= 0)
		*wait_ms = soonest > now ? (int)(soonest - now) : 0;
	return n;
}

static void unlink_at(struct cs_queue *q, struct cs_qentry **pp)
{
	struct cs_qentry *y = *pp;

	*pp = y->next;
	if (!*pp)
		q->tail = pp;
	q->count--;
	y->next = NULL;
}

struct cs_qentry *cs_queue_retire(struct cs_queue *q, struct cs_qentry **b, int n,
				  int64_t began, int64_t now)
{
	struct cs_qentry *out = NULL, **end = &out;

	for (int i = 0; i < n; i++) {
		struct cs_qentry *x = b[i];

		if (!x->done) {
			/* The whole queue pauses for an outage of the registry
			 * (cs_queue_pause, before this): it is no failure of
			 * the entry's own, to back it off once more for. */
			if (q->paused_until > now)
				continue;
			x->fails++;
			int ms = BACKOFF_MIN_MS;
			for (int f = 1; f < x->fails && ms < BACKOFF_MAX_MS; f++)
				ms *= 2;
			x->not_before = now + (ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms);
			continue;
		}
		/* Find it (the batch came from the first LOOK entries), and the
		 * later writes it covers (none in b: a batch holds one write of
		 * a path). */
		struct cs_qentry **pp = &q->head;
		int looked = 0;
		while (*pp && *pp != x)
			pp = &(*pp)->next;
		if (!*pp)
			continue;
		unlink_at(q, pp);
		*end = x;
		end = &x->next;
		while (x->op == CS_OP_WRITE && *pp && looked++ < LOOK) {
			struct cs_qentry *y = *pp;
			if (y->op == CS_OP_WRITE && y->seen <= began && !y->done &&
			    !strcmp(y->ns, x->ns) && !strcmp(y->rel, x->rel)) {
				unlink_at(q, pp);
				*end = y;
				end = &y->next;
				continue;
			}
			pp = &y->next;
		}
	}
	return out;
}

void cs_queue_pause(struct cs_queue *q, int64_t now)
{
	q->backoff = q->backoff ? q->backoff * 2 : BACKOFF_MIN_MS;
	if (q->backoff > BACKOFF_MAX_MS)
		q->backoff = BACKOFF_MAX_MS;
	q->paused_until = now + q->backoff;
}

void cs_queue_resume(struct cs_queue *q)
{
	q->backoff = 0;
	q->paused_until = 0;
}

bool cs_queue_names(const struct cs_queue *q, const char *ns, const char *rel)
{
	for (const struct cs_qentry *x = q->head; x; x = x->next)
		if (same(ns, rel, x))
			return true;
	return false;
}
