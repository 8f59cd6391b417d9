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
 *      holder record, so the next pass's repairer is another holder.
 * A pass pages through the files by id, a few thousand ids per query, and
 * pushes at CS_REPAIR_RATE (or the rate of a pass an operator asked for).
 * A pass runs every REPAIR_EVERY_MS, or at once when asked.
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

#define REPAIR_EVERY_MS 5000    /* between the starts of two passes */
#define ID_STEP 5000            /* file ids per scanning query */
#define BATCH 16                /* files whose pushes run side by side */
#define TARGETS 8               /* nodes a file may be pushed to, per pass */
#define AFTER_OUTAGE_MS (CS_BREAKER_MAX_MS + 2 * 2000 + 1000)  /* ... plus CS_DOWN_AFTER */

static pthread_t thread;
static bool started;
static int stopping;     /* atomic: set by cs_repair_stop */
static int cut_short;    /* atomic: a pass was asked for, or the stop came */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t kicked = PTHREAD_COND_INITIALIZER;
static struct cs_repair_progress prog;  /* under mu */
static uint64_t kick_rate;              /* under mu: the asked passes' rate */

/* One file short of copies, as a scan found it. */
struct job {
	const struct cs_prefix *p;
	char rel[CS_PATH_MAX];
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

/* The query for the files with ids in (from, to] that this node must
 * repair: short of counting copies, and this node their first live holder.
 * Each holder comes as "id:pinned:eligible" (eligible: up and active). */
static void scan_sql(struct cs_buf *q, uint32_t self, uint64_t from, uint64_t to)
{
	cs_sql_str(q, "SELECT f.id, f.namespace, f.path, f.version, f.size, f.mtime_ns, f.sha256,"
		      " GROUP_CONCAT(r.node_id, ':', r.pinned, ':', ");
	cs_nodes_sql_counts(q, "n");
	cs_sql_str(q, " ORDER BY r.node_id), COALESCE(SUM(r.pinned=1 AND ");
	cs_nodes_sql_counts(q, "n");
	/* The actor: the live holder with the lowest id, an active one before
	 * a draining one (which has its own reads to serve, and would push
	 * every file it holds alone, at one node's CS_REPAIR_RATE). */
	cs_sql_str(q, "), 0) AS counting, MIN(IF(");
	cs_nodes_sql_serves(q, "n");
	cs_sql_fmt(q, ", (n.state='draining') * 4294967296 + r.node_id, NULL)) AS actor"
		      " FROM files f JOIN replicas r ON r.file_id=f.id AND r.version=f.version"
		      " AND r.stale=0 JOIN nodes n ON n.id=r.node_id"
		      " WHERE f.deleted=0 AND f.id > %" PRIu64 " AND f.id <= %" PRIu64
		      " GROUP BY f.id HAVING counting < %d AND actor MOD 4294967296 = %" PRIu32
		      " ORDER BY f.id", from, to, cs_cfg.replicas, self);
}

/* A scanned row into j: false when it is of no use (unknown namespace,
 * bad path, nothing missing after all). */
static bool job_of(MYSQL_ROW row, unsigned long *lens, struct job *j)
{
	char ns[CS_NAME_MAX];
	char *save = NULL, *list;

	memset(j, 0, sizeof *j);
	j->fd = -1;
	if (!row[1] || !row[2] || lens[1] >= sizeof ns || lens[2] >= sizeof j->rel ||
	    !row[6] || lens[6] != CS_SHA256_LEN)
		return false;
	memcpy(ns, row[1], lens[1]);
	ns[lens[1]] = '\0';
	memcpy(j->rel, row[2], lens[2]);
	j->rel[lens[2]] = '\0';
	if (!(j->p = cs_config_namespace(&cs_cfg, ns)) || !cs_path_rel_valid(j->rel, lens[2]))
		return false;
	j->f.id = cs_db_u64(row[0]);
	j->f.version = cs_db_u64(row[3]);
	j->f.size = cs_db_u64(row[4]);
	j->f.mtime_ns = (int64_t)strtoll(row[5] ? row[5] : "0", NULL, 10);
	memcpy(j->f.sha256, row[6], CS_SHA256_LEN);
	j->need = cs_cfg.replicas - (int)cs_db_u64(row[8]);
	if (!(list = row[7] ? strdup(row[7]) : NULL))
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
	return j->need > 0;
}

/* ---- acting -------------------------------------------------------------- */

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
	 * own rate, likely higher) or the agent stops. */
	if (!cs_rate_take(rate, bytes, &cut_short))
		return false;
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

/* ---- a pass ---------------------------------------------------------------- */

struct scan {
	struct job *jobs;               /* grown as rows come: usually few */
	int n, cap;
	uint64_t found;
};

static void on_row(void *arg, MYSQL_ROW row, unsigned long *lens)
{
	struct scan *s = arg;

	if (s->n == s->cap) {
		int cap = s->cap ? 2 * s->cap : 64;
		struct job *more = realloc(s->jobs, (size_t)cap * sizeof *more);
		if (!more)
			return;         /* the next pass finds it again */
		s->jobs = more;
		s->cap = cap;
	}
	if (job_of(row, lens, &s->jobs[s->n])) {
		s->n++;
		s->found++;
	}
}

/* The current pass's bound: the asked one while a pass is asked for. */
static uint64_t current_rate(void)
{
	pthread_mutex_lock(&mu);
	uint64_t r = prog.asked > prog.done ? kick_rate : cs_cfg.repair_rate;
	prog.rate = r;
	pthread_mutex_unlock(&mu);
	return r;
}

/* One pass over every file: 0, 1 when it was cut short (asked again, or
 * stopping), 2 when it must wait (below), or -errno when the registry
 * failed it. */
static int pass(bool asked)
{
	struct cs_node me;
	struct cs_buf q = { 0 };
	struct cs_rate rate;
	struct scan s = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	uint64_t top, from = 0;
	int rc;

	/* MySQL was unreachable for this agent until lately, and so likely for
	 * the others: their heartbeats of the outage are missing, and every
	 * node would look down.  Repair waits until all have had time to send
	 * one again (each agent's breaker may hold off its first try for up to
	 * 8 s, then a heartbeat is 2 s apart), or it would copy the whole
	 * cluster. */
	int64_t back = cs_db_back_at();
	if ((rc = cs_db_down(NULL)) || (back && cs_clock_ms() - back < cs_cfg.down_after_ms + AFTER_OUTAGE_MS)) {
		cs_debug("repair waits: the registry was unreachable lately");
		return 2;
	}
	/* A pass asked for acts on the node table as it is now. */
	if (asked && (rc = cs_nodes_refresh()) < 0)
		return rc;
	if ((rc = cs_nodes_me(&me)) < 0)
		return rc;
	if (me.state == CS_NODE_REMOVED || !me.up)
		return 0;       /* removed: not ours to repair; not up: others act */
	cs_sql_str(&q, "SELECT COALESCE(MAX(id), 0) FROM files");
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc;
	row = mysql_fetch_row(res);
	top = row ? cs_db_u64(row[0]) : 0;
	mysql_free_result(res);
	__atomic_store_n(&cut_short, 0, __ATOMIC_RELEASE);
	cs_rate_init(&rate, current_rate());
	for (from = 0; from < top && !__atomic_load_n(&stopping, __ATOMIC_ACQUIRE); from += ID_STEP) {
		struct cs_db *d;

		s.n = 0;
		scan_sql(&q, me.id, from, from + ID_STEP);
		if (!(d = cs_db_for(&q, &rc)))
			break;
		rc = cs_db_each(d, q.s, q.len, on_row, &s);
		cs_db_put(d);
		cs_buf_free(&q);
		if (rc < 0)
			break;
		for (int i = 0; i < s.n; i += BATCH) {
			uint64_t r = current_rate();
			if (r != rate.per_second)
				cs_rate_init(&rate, r);
			if (!act(&s.jobs[i], s.n - i < BATCH ? s.n - i : BATCH, me.id, &rate))
				break;
		}
		if (__atomic_load_n(&cut_short, __ATOMIC_ACQUIRE))
			break;
	}
	free(s.jobs);
	pthread_mutex_lock(&mu);
	prog.pending = s.found;
	pthread_mutex_unlock(&mu);
	cs_gauge_set(CS_G_REPAIR_PENDING, (int64_t)s.found);
	if (s.found)
		cs_info("repair pass: %" PRIu64 " files were short of copies here", s.found);
	if (rc < 0)
		return rc;
	return __atomic_load_n(&cut_short, __ATOMIC_ACQUIRE) ? 1 : 0;
}

static void *repairer(void *arg)
{
	uint64_t passes = 0;
	bool failing = false;

	(void)arg;
	while (!__atomic_load_n(&stopping, __ATOMIC_ACQUIRE)) {
		int64_t next = cs_clock_ms() + REPAIR_EVERY_MS;
		uint64_t covers;
		bool asked;

		pthread_mutex_lock(&mu);
		covers = prog.asked;
		asked = covers > prog.done;
		prog.running = true;
		pthread_mutex_unlock(&mu);
		int rc = pass(asked);
		if (rc < 0 && !failing)
			cs_warn("repair failing (%s); retrying", strerror(-rc));
		else if (rc == 0 && failing)
			cs_warn("repair working again");
		failing = rc < 0;
		pthread_mutex_lock(&mu);
		prog.running = false;
		if (rc == 0)
			prog.done = covers;
		if (rc == 2)
			next = cs_clock_ms() + 500;
		cs_gauge_set(CS_G_REPAIR_PASSES, (int64_t)++passes);
		/* Until the next pass is due, or one is asked for (only that
		 * with CS_REPAIR_RATE=off). */
		while (!stopping && (prog.asked == prog.done || rc == 2) &&
		       (cs_clock_ms() < next || cs_cfg.repair_off)) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000000L;
			if (ts.tv_nsec >= 1000000000L)
				ts.tv_sec++, ts.tv_nsec -= 1000000000L;
			pthread_cond_timedwait(&kicked, &mu, &ts);
		}
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

int cs_repair_start(void)
{
	int rc;

	__atomic_store_n(&stopping, 0, __ATOMIC_RELEASE);
	if ((rc = pthread_create(&thread, NULL, repairer, NULL)) != 0)
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
	/* A pass under way has passed files already: the next one covers
	 * everything as of now. */
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
		  X(failed) X(pending)

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
