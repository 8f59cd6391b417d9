/*
 * census.c - the census: one agent counts how well the cluster holds its
 * files, in the background, and publishes the totals in the registry
 * (tables census and census_nodes), so that `cs-replicate status` answers
 * in milliseconds at ten million files and writers rank the nodes to push
 * to without a GROUP BY over every holder record.
 *
 * Counted by the agents rather than kept by triggers or by each write: a
 * write costs nothing more, and no row is a hot counter every writer
 * updates (under Galera each would be a certification conflict).  The
 * walker is the lowest-numbered node that is up and active (the lowest up
 * one that is not removed, when none is active); every agent decides so
 * from its own node table, so when it dies the next takes over within
 * CS_DOWN_AFTER, and two that briefly disagree merely both publish.
 *
 * A walk goes over the file ids in ranges (of about WALK_AIM_MS each),
 * each counted by the same aggregates as the exact count (health.c), and
 * adds them up in memory (a few numbers per node).  It is paced: between ranges it sleeps
 * four times as long as the range took, so a walk keeps at most a fifth of
 * one connection busy; it starts at most every CS_CENSUS_EVERY_MS.  A small
 * registry is walked in milliseconds.  The totals are only as exact as a
 * walk that is not a snapshot: a file written during it may be counted in
 * the state before or after.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "census.h"
#include "db.h"

/* File ids per range: WALK_BATCH at first, halved while a range takes
 * over twice WALK_AIM_MS (a busy server) or is stopped at
 * CS_HEALTH_BATCH_MS (and then done again), doubled while it takes under
 * half, so that no statement runs long whatever the load. */
#define WALK_BATCH 20000
#define WALK_BATCH_MIN 1000
#define WALK_BATCH_MAX 160000
#define WALK_AIM_MS 200
#define WALK_PAUSE 4            /* sleep this many times a range's time after it */
#define WALK_LOST_MAX 5         /* registry unreachable this many times in a row: walk given up */

static pthread_t thread;
static bool started;
static int stopping;            /* atomic */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cv = PTHREAD_COND_INITIALIZER;

/* A walk's totals. */
struct walk {
	struct cs_health_files h;
	struct cs_health_held held[CS_MAX_NODES];
	int nheld;
	uint64_t last_id;               /* the highest file id when it began */
	char began[32];                 /* the server's NOW(3) then */
	int64_t work_ms;
};

/* Sleep ms, or less when the agent stops: false once it does. */
static bool nap(int64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L)
		ts.tv_sec++, ts.tv_nsec -= 1000000000L;
	pthread_mutex_lock(&mu);
	while (!__atomic_load_n(&stopping, __ATOMIC_ACQUIRE) &&
	       pthread_cond_timedwait(&stop_cv, &mu, &ts) == 0)
		;
	pthread_mutex_unlock(&mu);
	return !__atomic_load_n(&stopping, __ATOMIC_ACQUIRE);
}

/* Whether this node is the one to walk. */
static bool walker(void)
{
	struct cs_node *all = calloc(CS_MAX_NODES, sizeof *all);
	uint32_t self = 0, active = 0, serving = 0;
	int n;

	if (!all || cs_nodes_self(&self) < 0 || (n = cs_nodes_all(all, CS_MAX_NODES)) < 0) {
		free(all);
		return false;
	}
	for (int i = 0; i < n; i++) {
		if (cs_node_counts(&all[i]) && (!active || all[i].id < active))
			active = all[i].id;
		if (cs_node_serves(&all[i]) && (!serving || all[i].id < serving))
			serving = all[i].id;
	}
	free(all);
	return self && self == (active ? active : serving);
}

/* The highest file id (of files or of holder records) and the server's
 * time now. */
static int begin(struct walk *w)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	cs_sql_str(&q, "SELECT GREATEST(COALESCE((SELECT MAX(id) FROM files), 0),"
		       " COALESCE((SELECT MAX(file_id) FROM replicas), 0)), NOW(3)");
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc;
	row = mysql_fetch_row(res);
	w->last_id = row ? cs_db_u64(row[0]) : 0;
	snprintf(w->began, sizeof w->began, "%s", row && row[1] ? row[1] : "");
	mysql_free_result(res);
	return w->began[0] ? 0 : -EIO;
}

/* The totals, in one transaction (census_nodes is small: one row a node). */
static int publish(const struct walk *w, uint32_t self)
{
	struct cs_buf q = { 0 };
	struct cs_db *d;
	int rc;

	cs_sql_fmt(&q, "START TRANSACTION; REPLACE INTO census (id, live, under_replicated,"
		       " no_live_copy, replicas, counted_by, started_at, counted_at, work_ms)"
		       " VALUES (1, %" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %d, %" PRIu32 ", '%s',"
		       " NOW(3), %" PRId64 "); DELETE FROM census_nodes;", w->h.live,
		   w->h.under_replicated, w->h.no_live_copy, cs_cfg.replicas, self, w->began,
		   w->work_ms);
	for (int i = 0; i < w->nheld; i++)
		cs_sql_fmt(&q, "%s(%" PRIu32 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64 ", NOW(3))",
			   i ? "," : " INSERT INTO census_nodes (node_id, files, bytes, pinned,"
				     " counted_at) VALUES ", w->held[i].node, w->held[i].files,
			   w->held[i].bytes, w->held[i].pinned);
	cs_sql_str(&q, w->nheld ? "; COMMIT" : " COMMIT");
	if (!(d = cs_db_for(&q, &rc)))
		return rc;
	if ((rc = cs_db_multi(d, &q, NULL, 0, NULL, 0)) < 0)
		cs_db_rollback(d);
	cs_db_put(d);
	cs_buf_free(&q);
	return rc;
}

/* One walk, published: 0, 1 when it was cut short (the agent stops, or
 * this node is no longer the walker), or -errno. */
static int walk(uint32_t self)
{
	struct walk *w = calloc(1, sizeof *w);
	int64_t t0 = cs_clock_ms(), checked = t0;
	int rc, lost = 0;

	if (!w)
		return -ENOMEM;
	if ((rc = begin(w)) < 0)
		goto out;
	for (uint64_t lo = 1, span = WALK_BATCH; lo <= w->last_id;) {
		int64_t b0 = cs_clock_ms(), took;
		/* The range's counts go in whole or not at all: one stopped at
		 * its limit is done again, half as large. */
		struct cs_health_files h = w->h;
		struct cs_health_held held[CS_MAX_NODES];
		int nheld = w->nheld;

		memcpy(held, w->held, nheld * sizeof *held);
		rc = cs_health_files_in(&h, lo, lo + span, CS_HEALTH_BATCH_MS);
		if (rc == 0)
			rc = cs_health_held_in(held, &nheld, CS_MAX_NODES, lo, lo + span,
					       CS_HEALTH_BATCH_MS);
		took = cs_clock_ms() - b0;
		w->work_ms += took;
		/* The registry gone for a moment (a restart, a failover): the
		 * same range again shortly, rather than a long walk anew. */
		if (rc == -EAGAIN && ++lost <= WALK_LOST_MAX) {
			if (!nap(2000)) {
				rc = 1;
				goto out;
			}
			continue;
		}
		if (rc < 0 && (rc != -ETIMEDOUT || span <= WALK_BATCH_MIN))
			goto out;
		if (rc == 0) {
			lost = 0;
			w->h = h;
			memcpy(w->held, held, nheld * sizeof *held);
			w->nheld = nheld;
			lo += span;
			if (lo > w->last_id)
				break;
		}
		if (!nap(WALK_PAUSE * took)) {
			rc = 1;
			goto out;
		}
		if ((rc < 0 || took > 2 * WALK_AIM_MS) && span > WALK_BATCH_MIN)
			span /= 2;
		else if (took < WALK_AIM_MS / 2 && span < WALK_BATCH_MAX)
			span *= 2;
		/* A long walk: still the walker? (Else another has begun.) */
		if (cs_clock_ms() - checked > CS_CENSUS_EVERY_MS) {
			checked = cs_clock_ms();
			if (!walker()) {
				rc = 1;
				goto out;
			}
		}
	}
	rc = publish(w, self);
	if (rc == 0)
		cs_debug("census: %" PRIu64 " live files, %" PRIu64 " under-replicated, %" PRIu64
			 " with no live copy; %" PRId64 " ms (%" PRId64 " ms of statements)", w->h.live,
			 w->h.under_replicated, w->h.no_live_copy, cs_clock_ms() - t0, w->work_ms);
out:
	free(w);
	return rc;
}

static void *census(void *arg)
{
	bool failing = false;

	(void)arg;
	do {
		int64_t next = cs_clock_ms() + CS_CENSUS_EVERY_MS;
		uint32_t self = 0;
		int rc = 0;

		if (walker() && cs_nodes_self(&self) == 0)
			rc = walk(self);
		if (rc < 0 && !failing)
			cs_warn("census failing (%s); retrying every %d s", strerror(-rc),
				CS_CENSUS_EVERY_MS / 1000);
		else if (rc == 0 && failing)
			cs_warn("census working again");
		if (rc <= 0)
			failing = rc < 0;
		int64_t left = next - cs_clock_ms();
		if (left > 0 && !nap(left))
			break;
	} while (!__atomic_load_n(&stopping, __ATOMIC_ACQUIRE));
	return NULL;
}

int cs_census_start(void)
{
	int rc;

	__atomic_store_n(&stopping, 0, __ATOMIC_RELEASE);
	if ((rc = pthread_create(&thread, NULL, census, NULL)) != 0)
		return -rc;
	started = true;
	return 0;
}

void cs_census_stop(void)
{
	if (!started)
		return;
	pthread_mutex_lock(&mu);
	__atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&stop_cv);
	pthread_mutex_unlock(&mu);
	pthread_join(thread, NULL);
	started = false;
}

/* ---- reading ------------------------------------------------------------ */

static int read_totals(struct cs_census *c)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	cs_sql_str(&q, "SELECT c.live, c.under_replicated, c.no_live_copy, c.replicas, c.counted_by,"
		       " COALESCE(n.name, ''), TIMESTAMPDIFF(MICROSECOND, c.counted_at, NOW(3)),"
		       " TIMESTAMPDIFF(MICROSECOND, c.started_at, c.counted_at), c.work_ms"
		       " FROM census c LEFT JOIN nodes n ON n.id=c.counted_by WHERE c.id=1");
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc;
	if (!(row = mysql_fetch_row(res))) {
		mysql_free_result(res);
		return -ENOENT;
	}
	memset(c, 0, sizeof *c);
	c->h.live = cs_db_u64(row[0]);
	c->h.under_replicated = cs_db_u64(row[1]);
	c->h.no_live_copy = cs_db_u64(row[2]);
	c->replicas = (int)cs_db_u64(row[3]);
	c->counted_by = (uint32_t)cs_db_u64(row[4]);
	snprintf(c->counted_by_name, sizeof c->counted_by_name, "%s", row[5] ? row[5] : "");
	/* Signed: a server clock set back makes it negative. */
	c->age = row[6] ? strtod(row[6], NULL) / 1e6 : 0;
	c->took = row[7] ? strtod(row[7], NULL) / 1e6 : 0;
	c->work_ms = (int64_t)cs_db_u64(row[8]);
	mysql_free_result(res);
	return 0;
}

int cs_census_read(struct cs_census *c, struct cs_health_held *held, int *n, int max)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	*n = 0;
	if ((rc = read_totals(c)) < 0)
		return rc;
	cs_sql_str(&q, "SELECT node_id, files, bytes, pinned FROM census_nodes ORDER BY node_id");
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc;
	while ((row = mysql_fetch_row(res)) && *n < max) {
		struct cs_health_held *x = &held[(*n)++];
		x->node = (uint32_t)cs_db_u64(row[0]);
		x->files = cs_db_u64(row[1]);
		x->bytes = cs_db_u64(row[2]);
		x->pinned = cs_db_u64(row[3]);
	}
	mysql_free_result(res);
	return 0;
}
