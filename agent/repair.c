/*
 * repair.c - bringing every live file back to CS_REPLICAS copies that
 * count (pinned, on up and active nodes).
 *
 * Who acts: for each file short of copies, the live holder (up, not
 * removed) with the lowest node id, an active one before a draining one,
 * so every file has one repairer however many
 * agents scan, without a lock; two agents that momentarily see the node
 * table differently make at worst one copy too many.  The repairer:
 *   1. makes pulled copies on up, active nodes count (pinned = 1): no
 *      transfer at all;
 *   2. pushes its own copy, from disk, to the nodes cs_nodes_targets
 *      ranks first (another zone first), side by side; the receiver checks
 *      the bytes against the registry's SHA-256 before installing (a bad
 *      copy here cannot spread) and records its copy pinned before it
 *      answers; a copy counts once the registry shows it (as a write's
 *      pushes do, replicate.c);
 *   3. when its own copy is gone or not the registry's size, drops its
 *      holder record, so the next lap's repairer is another holder.
 *
 * What is scanned: only the files this node holds (walk.c): its holder
 * records in file id order, WALK_STEP at a time, and for just those files
 * a grouping query that says which are short and whose repairer this node
 * is (ids and sums only, grouped in the server's memory: the names and
 * holder lists, whose GROUP_CONCAT sends the grouping to a table on disk,
 * are read after it for the few it finds, at rest none).  The
 * repairer of a file is one of its holders, so every file with a live
 * holder is still looked at by exactly one node, and a node's scanning
 * costs the registry in proportion to what it holds, not to the registry.
 *
 * When: the walk goes round and round (a lap from the lowest file id to the
 * highest), its place kept in the spool after each batch and every second
 * within one (at a low CS_REPAIR_RATE a batch can take long), so an agent
 * restarted midway goes on where it stopped.  At rest it is paced: after
 * each batch it sleeps REST_FACTOR times as long as the batch's scanning
 * took, and after a lap at least REPAIR_EVERY_MS, so a node's repair keeps
 * at most a tenth of one registry connection busy however much it holds.
 * It goes at full speed, without those sleeps, until it has come round to
 * where it was when something happened that can leave files short: the
 * agent started, the node table changed (a node went down or came up,
 * drained, was removed or added: cs_nodes_changes), or a pass was asked
 * for (cs_repair_kick: `cs-replicate repair`, `node drain`).  A kick never
 * sends the walk back to the start: the files after its place are looked
 * at on the way to the end and those before it on the next lap, so the
 * pass asked for has covered every file as of the kick once the walk is
 * back at that place, and kicks that come faster than a lap cannot keep
 * the files with high ids from ever being looked at.  Pushes go at
 * CS_REPAIR_RATE, or the rate of a pass an operator asked for while that
 * pass runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "breaker.h"
#include "db.h"
#include "metrics.h"
#include "nodes.h"
#include "peer.h"
#include "rate.h"
#include "registry.h"
#include "repair.h"
#include "replicate.h"
#include "store.h"
#include "tail.h"
#include "walk.h"

#define REPAIR_EVERY_MS 5000    /* at rest, between the end of a lap and the next */
#define REST_FACTOR 9           /* at rest, sleep this many times a batch's scan */
#define REST_MIN_MS 10          /* ... and this much more */
#define WALK_STEP 5000          /* holder records per batch */
#define WAIT_MS 500             /* when the registry or this node cannot act */
#define SAVE_MS 1000            /* within a batch, the place is kept this often */
#define BATCH 16                /* files whose pushes run side by side */
#define TARGETS 8               /* nodes a file may be pushed to, per pass */
#define AFTER_OUTAGE_MS (CS_BREAKER_MAX_MS + 2 * 2000 + 1000)  /* ... plus CS_DOWN_AFTER */

static pthread_t thread;
static bool started;
static int stopping;     /* atomic: set by cs_repair_stop */
static int cut_short;    /* atomic: a pass was asked for, or the stop came: a wait
			 * for the rate ends */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t kicked = PTHREAD_COND_INITIALIZER;
static struct cs_repair_progress prog;  /* under mu */
static uint64_t kick_rate;              /* under mu: the asked passes' rate */

/* One file short of copies, as a scan found it. */
struct job {
	const struct cs_prefix *p;
	char *rel;                      /* allocated: a batch holds few bytes per job */
	struct cs_file f;               /* every holder of the version in f.holder */
	int need;                       /* copies still wanted */
	uint32_t promote[CS_MAX_HOLDERS];       /* pulled copies that can count */
	int npromote;
	int fd;
	struct cs_node *to;             /* TARGETS of them, while acting */
	int nto;
};

static void count(uint64_t *field, uint64_t n)
{
	pthread_mutex_lock(&mu);
	*field += n;
	pthread_mutex_unlock(&mu);
}

/* ---- scanning ----------------------------------------------------------- */

/* The HAVING that keeps the files short of counting copies whose
 * repairer is self: the live holder with the lowest id, an active one
 * before a draining one (which has its own reads to serve, and would push
 * every file it holds alone, at one node's CS_REPAIR_RATE).  r is the
 * file's holder records, n their nodes. */
static void short_and_mine(struct cs_buf *q, uint32_t self)
{
	cs_sql_str(q, " HAVING COALESCE(SUM(r.pinned=1 AND ");
	cs_nodes_sql_counts(q, "n");
	cs_sql_fmt(q, "), 0) < %d AND MIN(IF(", cs_cfg.replicas);
	cs_nodes_sql_serves(q, "n");
	cs_sql_fmt(q, ", (n.state='draining') * 4294967296 + r.node_id, NULL)) MOD 4294967296 = %"
		   PRIu32, self);
}

/* Which of the files this node holds with ids in (after, last] (one
 * batch of the walk, walk.c) it must repair: their ids.  Nothing but ids
 * and sums, so the server groups them in memory; at rest it finds none. */
static void filter_sql(struct cs_buf *q, uint32_t self, uint64_t after, uint64_t last)
{
	cs_sql_fmt(q, "SELECT m.file_id FROM replicas m JOIN files f ON f.id=m.file_id"
		      " AND f.version=m.version JOIN replicas r ON r.file_id=f.id"
		      " AND r.version=f.version AND r.stale=0 JOIN nodes n ON n.id=r.node_id"
		      " WHERE m.node_id=%" PRIu32 " AND m.stale=0 AND m.file_id > %" PRIu64
		      " AND m.file_id <= %" PRIu64 " AND f.deleted=0 GROUP BY m.file_id",
		   self, after, last);
	short_and_mine(q, self);
}

/* The files ids[0, n) with what acting on them takes, those still short
 * and this node's to repair.  Each holder comes as "id:pinned:eligible"
 * (eligible: up and active). */
static void scan_sql(struct cs_buf *q, uint32_t self, const uint64_t *ids, int n)
{
	cs_sql_str(q, "SELECT f.id, f.namespace, f.path, f.version, f.size, f.mtime_ns, f.sha256,"
		      " GROUP_CONCAT(r.node_id, ':', r.pinned, ':', ");
	cs_nodes_sql_counts(q, "n");
	cs_sql_str(q, " ORDER BY r.node_id), COALESCE(SUM(r.pinned=1 AND ");
	cs_nodes_sql_counts(q, "n");
	cs_sql_str(q, "), 0) FROM files f JOIN replicas r ON r.file_id=f.id AND r.version=f.version"
		      " AND r.stale=0 JOIN nodes n ON n.id=r.node_id WHERE f.deleted=0 AND f.id IN (");
	for (int i = 0; i < n; i++)
		cs_sql_fmt(q, "%s%" PRIu64, i ? "," : "", ids[i]);
	cs_sql_str(q, ") GROUP BY f.id");
	short_and_mine(q, self);
	cs_sql_str(q, " ORDER BY f.id");
}

/* A scanned row into j: false when it is of no use (unknown namespace,
 * bad path, nothing missing after all). */
static bool job_of(MYSQL_ROW row, unsigned long *lens, struct job *j)
{
	char ns[CS_NAME_MAX];
	char *save = NULL, *list;

	memset(j, 0, sizeof *j);
	j->fd = -1;
	if (!row[1] || !row[2] || lens[1] >= sizeof ns || lens[2] >= CS_PATH_MAX ||
	    !row[6] || lens[6] != CS_SHA256_LEN)
		return false;
	memcpy(ns, row[1], lens[1]);
	ns[lens[1]] = '\0';
	if (!(j->p = cs_config_namespace(&cs_cfg, ns)) || !cs_path_rel_valid(row[2], lens[2]))
		return false;
	j->f.id = cs_db_u64(row[0]);
	j->f.version = cs_db_u64(row[3]);
	j->f.size = cs_db_u64(row[4]);
	j->f.mtime_ns = (int64_t)strtoll(row[5] ? row[5] : "0", NULL, 10);
	memcpy(j->f.sha256, row[6], CS_SHA256_LEN);
	j->need = cs_cfg.replicas - (int)cs_db_u64(row[8]);
	if (j->need <= 0 || !(list = row[7] ? strdup(row[7]) : NULL))
		return false;
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		unsigned id, pinned, eligible;
		if (sscanf(t, "%u:%u:%u", &id, &pinned, &eligible) != 3)
			continue;
		cs_file_add_holder(&j->f, id);
		if (!pinned && eligible && j->npromote < CS_MAX_HOLDERS)
			j->promote[j->npromote++] = id;
	}
	free(list);
	return (j->rel = strndup(row[2], lens[2])) != NULL;
}

/* ---- acting -------------------------------------------------------------- */

/* The current pass's bound: the asked one while a pass is asked for. */
static uint64_t current_rate(void)
{
	pthread_mutex_lock(&mu);
	uint64_t r = prog.asked > prog.done ? kick_rate : cs_cfg.repair_rate;
	prog.rate = r;
	pthread_mutex_unlock(&mu);
	return r;
}

/* Make up to j->need of j's pulled copies count: one statement.  A copy
 * evicted meanwhile (its record deleted first, evict.c) is not made to
 * count: only the rows the statement changed are. */
static void promote(struct job *j)
{
	struct cs_buf q = { 0 };
	struct cs_db *d;
	int n = j->npromote < j->need ? j->npromote : j->need, rc;

	if (n <= 0)
		return;
	cs_sql_fmt(&q, "UPDATE replicas SET pinned=1 WHERE file_id=%" PRIu64 " AND version=%" PRIu64
		       " AND stale=0 AND pinned=0 AND node_id IN (", j->f.id, j->f.version);
	for (int i = 0; i < n; i++)
		cs_sql_fmt(&q, "%s%" PRIu32, i ? "," : "", j->promote[i]);
	cs_sql_str(&q, ")");
	if (!(d = cs_db_for(&q, &rc)))
		return;
	if (cs_db_run(d, &q, NULL, false) == 0) {
		int made = (int)cs_db_affected(d);
		j->need -= made;
		cs_count(CS_C_REPAIR_PROMOTED, made);
		count(&prog.promoted, made);
	}
	cs_db_put(d);
	cs_buf_free(&q);
}

/* This node no longer holds j's version as recorded: drop the record. */
static void drop_mine(const struct job *j, uint32_t self)
{
	struct cs_buf q = { 0 };

	cs_error_every(10, "%s/%s: this node is recorded holding version %" PRIu64 " but its copy "
		       "is missing or of another size; record dropped (another holder repairs it)",
		       j->p->name, j->rel, j->f.version);
	cs_sql_fmt(&q, "DELETE FROM replicas WHERE file_id=%" PRIu64 " AND node_id=%" PRIu32
		       " AND version=%" PRIu64, j->f.id, self, j->f.version);
	cs_db_query(&q, NULL);
}

/* Open this node's copy of j to push it; false when it is not the
 * registry's version any more (gone, another size or mtime). */
static bool open_copy(struct job *j, uint32_t self)
{
	int root = cs_store_root(j->p);
	struct stat st;

	j->fd = root < 0 ? -1 : cs_store_open_beneath(root, j->rel,
						      O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (j->fd >= 0 && fstat(j->fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_size == j->f.size && st.st_nlink == 1) {
		if (cs_mtime_ns(&st) == j->f.mtime_ns)
			return true;
		/* The same size, another mtime: written here since, its
		 * journal entry not replicated yet.  Its write spreads it. */
		close(j->fd);
		j->fd = -1;
		return false;
	}
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
	if (errno != EACCES)
		drop_mine(j, self);
	return false;
}

/* Push the jobs' copies to their targets, all at once, and count what the
 * registry confirms; false when the stop came. */
static bool push_jobs(struct job *jobs, int n, struct cs_rate *rate)
{
	struct cs_push push[BATCH * TARGETS];
	uint32_t target[BATCH * TARGETS];
	bool held[BATCH * TARGETS];
	int owner[BATCH * TARGETS];
	uint64_t bytes = 0;
	int np = 0;

	for (int i = 0; i < n; i++) {
		struct job *j = &jobs[i];
		for (int k = 0; k < j->nto && k < j->need && np < BATCH * TARGETS; k++) {
			owner[np] = i;
			target[np] = j->to[k].id;
			push[np++] = (struct cs_push){ .url = j->to[k].url, .ns = j->p->name,
						       .rel = j->rel, .fd = j->fd, .f = &j->f };
			bytes += j->f.size;
		}
	}
	if (np == 0)
		return true;
	/* Waiting for the rate ends early when a pass is asked for (at its
	 * own rate, likely higher: taken up again at that) or the agent
	 * stops. */
	while (!cs_rate_take(rate, bytes, &cut_short)) {
		if (__atomic_load_n(&stopping, __ATOMIC_ACQUIRE))
			return false;
		__atomic_store_n(&cut_short, 0, __ATOMIC_RELEASE);
		cs_rate_init(rate, current_rate());
	}
	cs_replicate_push(push, target, held, np, &stopping);
	for (int k = 0; k < np; k++) {
		struct job *j = &jobs[owner[k]];
		if (!held[k])
			continue;
		j->need--;
		cs_count(CS_C_REPAIR_FILES, 1);
		cs_count(CS_C_REPAIR_BYTES, j->f.size);
		pthread_mutex_lock(&mu);
		prog.copies++;
		prog.bytes += j->f.size;
		pthread_mutex_unlock(&mu);
	}
	return true;
}

/* Act on jobs[0, n): promote, then push what is still missing. */
static bool act(struct job *jobs, int n, uint32_t self, struct cs_rate *rate)
{
	struct cs_node *to = malloc((size_t)n * TARGETS * sizeof *to);
	bool go_on;

	if (!to)
		return true;    /* the next pass */
	for (int i = 0; i < n; i++) {
		struct job *j = &jobs[i];
		j->to = to + (size_t)i * TARGETS;
		j->nto = 0;
		/* Written here and still being replicated: its own entry spreads
		 * it (a version just registered has one copy, the writer's, until
		 * its pushes land), and a repair beside it makes copies too many. */
		if (cs_tail_pending_path(j->p->name, j->rel)) {
			j->need = 0;
			continue;
		}
		promote(j);
		if (j->need > 0 && open_copy(j, self)) {
			j->nto = cs_nodes_targets(&j->f, j->to, TARGETS);
			if (j->nto < 0)
				j->nto = 0;
		}
	}
	go_on = push_jobs(jobs, n, rate);
	for (int i = 0; i < n; i++) {
		struct job *j = &jobs[i];
		if (j->fd >= 0)
			close(j->fd);
		j->fd = -1;
		if (j->need > 0) {
			cs_count(CS_C_REPAIR_FAILED, 1);
			count(&prog.failed, 1);
			cs_debug("%s/%s: %d copies still missing (%d nodes to push to)", j->p->name,
				 j->rel, j->need, j->nto);
		}
	}
	count(&prog.files, n);
	free(to);
	return go_on;
}

/* ---- the walk -------------------------------------------------------------- */

struct scan {
	struct job *jobs;               /* grown as rows come: usually few, WALK_STEP at most */
	int n, cap;
	uint64_t found;                 /* files short of copies here, this lap */
};

static void on_row(void *arg, MYSQL_ROW row, unsigned long *lens)
{
	struct scan *s = arg;

	if (s->n == s->cap) {
		int cap = s->cap ? 2 * s->cap : 64;
		struct job *more = realloc(s->jobs, (size_t)cap * sizeof *more);
		if (!more)
			return;         /* the next lap finds it again */
		s->jobs = more;
		s->cap = cap;
	}
	if (job_of(row, lens, &s->jobs[s->n])) {
		s->n++;
		s->found++;
	}
}

/* A place in the walk: a lap, and the last file id done in it. */
struct place {
	uint64_t lap, after;
};

/* The repair thread's own state. */
struct walker {
	struct cs_walk w;               /* where the walk stands, as kept in the spool */
	uint64_t held;                  /* this node's holder records, counted this lap */
	bool counted;
	struct place fast;              /* full speed until the walk is here */
	struct place owed_at;           /* the pass asked for is done here */
	uint64_t owed;                  /* ... its number, 0: none */
	uint64_t seen_asked, seen_changes;
	int64_t scan_ms;                /* the last batch's scanning */
	int64_t saved_ms;               /* when the place was last kept */
	int64_t lap_start_ms, lap_scan_ms;      /* this lap's start, and its scanning */
	struct scan s;
	uint64_t ids[WALK_STEP];        /* a batch's files this node must repair */
	int nids;
	struct cs_rate rate;
};

static bool reached(const struct walker *k, struct place p)
{
	return k->w.lap > p.lap || (k->w.lap == p.lap && k->w.after >= p.after);
}

/* Once round from here: every file is looked at after this moment. */
static struct place round_from_here(const struct walker *k)
{
	return (struct place){ k->w.lap + 1, k->w.after };
}

/* What happened since the last batch: a pass asked for, the node table
 * changed.  Either sends the walk round at full speed from here. */
static void notice(struct walker *k)
{
	uint64_t asked, changes;

	pthread_mutex_lock(&mu);
	asked = prog.asked;
	pthread_mutex_unlock(&mu);
	if (asked > k->seen_asked) {
		/* A pass asked for acts on the node table as it is now. */
		cs_nodes_refresh();
		k->seen_asked = asked;
		k->seen_changes = cs_nodes_changes();
		k->fast = k->owed_at = round_from_here(k);
		k->owed = asked;
		cs_info("repair: a pass asked for; walking this node's files from file id %" PRIu64
			" round to it", k->w.after);
		return;
	}
	if (cs_cfg.repair_off || (changes = cs_nodes_changes()) == k->seen_changes)
		return;
	k->seen_changes = changes;
	k->fast = round_from_here(k);
	cs_info("repair: the node table changed; walking this node's files from file id %" PRIu64
		" round to it", k->w.after);
}

/* Publish where the walk stands (GET /v1/repair). */
static void show(const struct walker *k)
{
	pthread_mutex_lock(&mu);
	prog.running = !reached(k, k->fast);
	prog.lap = k->w.lap;
	prog.cursor = k->w.after;
	prog.walked = k->w.done;
	prog.held = k->held > k->w.done ? k->held : k->w.done;
	pthread_mutex_unlock(&mu);
}

/* The walk reached the highest file id: the next lap begins. */
static void lap_ends(struct walker *k)
{
	pthread_mutex_lock(&mu);
	prog.pending = k->s.found;
	prog.lap_ms = k->lap_start_ms ? (uint64_t)(cs_clock_ms() - k->lap_start_ms) : 0;
	prog.lap_scan_ms = (uint64_t)k->lap_scan_ms;
	pthread_mutex_unlock(&mu);
	k->lap_start_ms = cs_clock_ms();
	k->lap_scan_ms = 0;
	cs_gauge_set(CS_G_REPAIR_PENDING, (int64_t)k->s.found);
	cs_gauge_set(CS_G_REPAIR_PASSES, (int64_t)k->w.lap + 1);
	if (k->s.found)
		cs_info("repair lap %" PRIu64 ": %" PRIu64 " of this node's %" PRIu64 " files were "
			"short of copies here", k->w.lap, k->s.found, k->w.done);
	k->w.lap++;
	k->w.after = k->w.done = 0;
	k->s.found = 0;
	k->counted = false;
}

enum { ACT = 1, LATER, NOT_OURS };

/* Whether this node can act now: ACT (with *me), LATER, NOT_OURS, or
 * -errno. */
static int may_act(struct cs_node *me)
{
	/* MySQL was unreachable for this agent until lately, and so likely
	 * for the others: their heartbeats of the outage are missing, and
	 * every node would look down.  Repair waits until all have had time to
	 * send one again (each agent's breaker may hold off its first try for
	 * up to 8 s, then a heartbeat is 2 s apart), or it would copy the
	 * whole cluster. */
	int64_t back = cs_db_back_at();
	int rc;

	if (cs_db_down(NULL) || (back && cs_clock_ms() - back < cs_cfg.down_after_ms + AFTER_OUTAGE_MS)) {
		cs_debug("repair waits: the registry was unreachable lately");
		return LATER;
	}
	if ((rc = cs_nodes_me(me)) < 0)
		return rc;
	/* removed: not ours to repair; not up: others act */
	return me->state != CS_NODE_REMOVED && me->up ? ACT : NOT_OURS;
}

static void on_id(void *arg, MYSQL_ROW row, unsigned long *lens)
{
	struct walker *k = arg;

	(void)lens;
	if (row[0] && k->nids < WALK_STEP)
		k->ids[k->nids++] = cs_db_u64(row[0]);
}

/* Keep the walk's place in the spool: after, the last file id done. */
static void keep_place(struct walker *k, uint64_t after)
{
	struct cs_walk w = k->w;

	w.after = after;
	cs_walk_save("repair", &w);
	k->saved_ms = cs_clock_ms();
}

/* One batch of the walk: WALK_STEP of this node's holder records from the
 * walk's place, the files among them this node must repair acted on.  0,
 * 1 when the lap ended, -ECANCELED when the agent stops, -errno when the
 * registry failed it (the walk stays where it was). */
static int batch(struct walker *k, uint32_t self)
{
	struct cs_buf q = { 0 };
	uint64_t last, n, rest;
	int64_t start = cs_clock_ms();
	int rc;

	/* At a lap's start, or going on after a restart (the records before
	 * the place counted again: the place may have been kept midway). */
	if (!k->counted) {
		if ((rc = cs_walk_count(self, k->w.after, &rest)) < 0 ||
		    (k->w.after && (rc = cs_walk_count(self, 0, &k->held)) < 0))
			return rc;
		if (!k->w.after)
			k->held = rest;
		k->w.done = k->held > rest ? k->held - rest : 0;
		k->counted = true;
	}
	if ((rc = cs_walk_next(self, k->w.after, WALK_STEP, &last, &n)) < 0)
		return rc;
	if (n == 0) {
		k->lap_scan_ms += cs_clock_ms() - start;
		lap_ends(k);
		return 1;
	}
	k->s.n = 0;
	k->nids = 0;
	filter_sql(&q, self, k->w.after, last);
	rc = cs_db_query_each(&q, on_id, k);
	if (rc == 0 && k->nids > 0) {
		scan_sql(&q, self, k->ids, k->nids);
		rc = cs_db_query_each(&q, on_row, &k->s);
	}
	k->scan_ms = cs_clock_ms() - start;
	k->lap_scan_ms += k->scan_ms;
	for (int i = 0; rc == 0 && i < k->s.n; i += BATCH) {
		uint64_t r = current_rate();
		if (r != k->rate.per_second)
			cs_rate_init(&k->rate, r);
		int m = k->s.n - i < BATCH ? k->s.n - i : BATCH;
		if (!act(&k->s.jobs[i], m, self, &k->rate))
			rc = -ECANCELED;
		else if (cs_clock_ms() - k->saved_ms >= SAVE_MS)
			keep_place(k, k->s.jobs[i + m - 1].f.id);
	}
	for (int i = 0; i < k->s.n; i++)
		free(k->s.jobs[i].rel);
	if (rc < 0)
		return rc;
	k->w.after = last;
	k->w.done += n;
	return 0;
}

/* Sleep up to ms (-1: until asked), ended early by a pass asked for, the
 * stop, or (each second) a change in the node table. */
static void rest(struct walker *k, int64_t ms)
{
	int64_t until = cs_clock_ms() + ms, looked = cs_clock_ms();

	while (!__atomic_load_n(&stopping, __ATOMIC_ACQUIRE) && (ms < 0 || cs_clock_ms() < until)) {
		struct timespec ts;
		bool asked;

		pthread_mutex_lock(&mu);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L)
			ts.tv_sec++, ts.tv_nsec -= 1000000000L;
		if (prog.asked == k->seen_asked)
			pthread_cond_timedwait(&kicked, &mu, &ts);
		asked = prog.asked > k->seen_asked;
		pthread_mutex_unlock(&mu);
		if (asked)
			return;
		if (!cs_cfg.repair_off && cs_clock_ms() - looked >= 1000) {
			looked = cs_clock_ms();
			if (cs_nodes_changes() != k->seen_changes)
				return;
		}
	}
}

static void *repairer(void *arg)
{
	struct walker *k = arg;
	bool failing = false;

	cs_walk_load("repair", &k->w);
	if (k->w.after)
		cs_info("repair: going on with lap %" PRIu64 " after file id %" PRIu64 " (%" PRIu64
			" of this node's files done before the agent stopped)", k->w.lap, k->w.after,
			k->w.done);
	k->seen_changes = cs_nodes_changes();
	/* What happened while no agent ran here is unknown: once round at
	 * full speed (unless only passes asked for are wanted). */
	k->fast = cs_cfg.repair_off ? (struct place){ 0, 0 } : round_from_here(k);
	while (!__atomic_load_n(&stopping, __ATOMIC_ACQUIRE)) {
		struct cs_node me;
		int64_t wait;

		notice(k);
		show(k);
		int can = may_act(&me), rc = can;
		if (can == ACT)
			rc = batch(k, me.id);           /* 0, 1 at a lap's end, -errno */
		if (rc == -ECANCELED)
			break;
		if (rc < 0 && !failing)
			cs_warn("repair failing (%s); retrying", strerror(-rc));
		else if (rc >= 0 && failing)
			cs_warn("repair working again");
		failing = rc < 0;
		if (can == NOT_OURS)    /* nothing here to walk: what was asked is done */
			k->fast = k->owed_at = (struct place){ k->w.lap, k->w.after };
		if (can == ACT && rc >= 0)
			keep_place(k, k->w.after);
		if (k->owed && reached(k, k->owed_at)) {
			pthread_mutex_lock(&mu);
			if (prog.done < k->owed)
				prog.done = k->owed;
			pthread_mutex_unlock(&mu);
			k->owed = 0;
		}
		show(k);
		if (rc < 0)
			wait = REPAIR_EVERY_MS;
		else if (can != ACT)
			wait = can == LATER ? WAIT_MS : REPAIR_EVERY_MS;
		else if (!reached(k, k->fast))
			wait = 0;
		else if (cs_cfg.repair_off)
			wait = -1;
		else
			wait = rc == 1 ? REPAIR_EVERY_MS : REST_FACTOR * k->scan_ms + REST_MIN_MS;
		if (wait)
			rest(k, wait);
	}
	free(k->s.jobs);
	return NULL;
}

int cs_repair_start(void)
{
	int rc;

	static struct walker walker;

	memset(&walker, 0, sizeof walker);
	__atomic_store_n(&stopping, 0, __ATOMIC_RELEASE);
	if ((rc = pthread_create(&thread, NULL, repairer, &walker)) != 0)
		return -rc;
	started = true;
	return 0;
}

void cs_repair_stop(void)
{
	if (!started)
		return;
	__atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&cut_short, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&mu);
	pthread_cond_broadcast(&kicked);
	pthread_mutex_unlock(&mu);
	pthread_join(thread, NULL);
	started = false;
}

uint64_t cs_repair_kick(uint64_t rate)
{
	uint64_t n;

	pthread_mutex_lock(&mu);
	/* The walk goes on from where it is, at full speed, and round to it:
	 * the files it passed already are looked at again on its next lap. */
	n = ++prog.asked;
	kick_rate = rate;
	__atomic_store_n(&cut_short, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&kicked);
	pthread_mutex_unlock(&mu);
	return n;
}

void cs_repair_progress(struct cs_repair_progress *p)
{
	pthread_mutex_lock(&mu);
	*p = prog;
	pthread_mutex_unlock(&mu);
}

#define FIELDS(X) X(asked) X(done) X(rate) X(files) X(copies) X(promoted) X(bytes) \
		  X(failed) X(pending) X(lap) X(cursor) X(walked) X(held) X(lap_ms) X(lap_scan_ms)

int cs_repair_progress_format(const struct cs_repair_progress *p, char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "running %d\n", p->running);
	size_t len = n > 0 ? (size_t)n : 0;

#define PUT(f)                                                                       \
	if (len < outsz) {                                                           \
		n = snprintf(out + len, outsz - len, #f " %" PRIu64 "\n", p->f);     \
		len += n > 0 ? (size_t)n : 0;                                        \
	}
	FIELDS(PUT)
#undef PUT
	return len < outsz ? (int)len : -ENOSPC;
}

int cs_repair_progress_parse(const char *s, struct cs_repair_progress *p)
{
	char key[32];
	unsigned long long v;
	int used, seen = 0;

	memset(p, 0, sizeof *p);
	while (sscanf(s, "%31s %llu\n%n", key, &v, &used) == 2) {
		s += used;
		seen++;
		if (strcmp(key, "running") == 0)
			p->running = v != 0;
#define GET(f) else if (strcmp(key, #f) == 0) p->f = v;
		FIELDS(GET)
#undef GET
	}
	return seen ? 0 : -EINVAL;
}
