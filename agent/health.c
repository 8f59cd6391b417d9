/*
 * health.c - the registry's view of how well the cluster holds its files.
 *
 * Aggregates over the live files' current copies (GROUP BY the file, then
 * summed): over the whole registry for an operator's command, bounded by a
 * time limit where the caller has something else to show (the census,
 * census.c), or over a range of file ids so that a walk can add them up
 * with no statement running long.  Up or down, and so which copies count,
 * is this process's node table's (its reading of the heartbeats by
 * CS_DOWN_AFTER).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "health.h"
#include "nodes.h"

/* A node's copies per statement: DEPENDENTS_BATCH at first, halved when a
 * batch is stopped at CS_HEALTH_BATCH_MS, doubled back after one that
 * took under a fifth of it. */
#define DEPENDENTS_BATCH 10000
#define DEPENDENTS_MIN 250

/*
 * The nodes whose copies count (up and active) and those that serve (up,
 * not removed), from the node table as this process has it (at most 2 s
 * old): the statements test a copy's node_id against these lists rather
 * than join the nodes table, which at millions of copies made MariaDB
 * group through a temporary table and took twice as long.
 */
struct sets {
	uint32_t counts[CS_MAX_NODES], serves[CS_MAX_NODES];
	int ncounts, nserves;
};

static int read_sets(struct sets *s)
{
	struct cs_node *all = calloc(CS_MAX_NODES, sizeof *all);
	int n;

	if (!all)
		return -ENOMEM;
	s->ncounts = s->nserves = 0;
	n = cs_nodes_all(all, CS_MAX_NODES);
	for (int i = 0; i < n; i++) {
		if (cs_node_counts(&all[i]))
			s->counts[s->ncounts++] = all[i].id;
		if (cs_node_serves(&all[i]))
			s->serves[s->nserves++] = all[i].id;
	}
	free(all);
	return n < 0 ? n : 0;
}

/* SQL: whether copy r's node is one of ids (but not except), 1 or 0. */
static void sql_in(struct cs_buf *q, const uint32_t *ids, int n, uint32_t except)
{
	int k = 0;

	for (int i = 0; i < n; i++)
		if (ids[i] != except)
			cs_sql_fmt(q, "%s%" PRIu32, k++ ? "," : "r.node_id IN (", ids[i]);
	cs_sql_str(q, k ? ")" : "0");
}

/* SQL: 1 when copy r counts toward CS_REPLICAS (on a node other than
 * except). */
static void sql_counts(struct cs_buf *q, const struct sets *s, uint32_t except)
{
	cs_sql_str(q, "(r.pinned=1 AND ");
	sql_in(q, s->counts, s->ncounts, except);
	cs_sql_str(q, ")");
}

/* Whether the registry is MariaDB (else MySQL): asked once. */
static bool mariadb(void)
{
	static int known;       /* atomic: 0 not asked yet, 1 MariaDB, 2 MySQL */
	int k = __atomic_load_n(&known, __ATOMIC_ACQUIRE);
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;

	if (k)
		return k == 1;
	cs_sql_str(&q, "SELECT VERSION()");
	if (cs_db_query(&q, &res) < 0)
		return true;    /* the statement will tell */
	row = mysql_fetch_row(res);
	k = row && row[0] && !strstr(row[0], "MariaDB") ? 2 : 1;
	mysql_free_result(res);
	__atomic_store_n(&known, k, __ATOMIC_RELEASE);
	return k == 1;
}

/* SQL: "SELECT " of a statement the server stops after ms (0: no limit),
 * well before the client's read timeout would take it for dead: MariaDB's
 * max_statement_time (ER_STATEMENT_TIMEOUT), or MySQL's
 * MAX_EXECUTION_TIME hint (ER_QUERY_TIMEOUT); either is an error the
 * client does not count as a lost server. */
static void sql_select(struct cs_buf *q, int ms)
{
	if (ms <= 0)
		cs_sql_str(q, "SELECT ");
	else if (mariadb())
		cs_sql_fmt(q, "SET STATEMENT max_statement_time=%d.%03d FOR SELECT ", ms / 1000,
			   ms % 1000);
	else
		cs_sql_fmt(q, "SELECT /*+ MAX_EXECUTION_TIME(%d) */ ", ms);
}

/* cs_db_query of q, whose statement was limited to ms: a failure once the
 * limit has passed is the limit's (-ETIMEDOUT). */
static int query_within(struct cs_buf *q, MYSQL_RES **res, int ms)
{
	int64_t t0 = cs_clock_ms();
	int rc = cs_db_query(q, res);

	if (rc == -EIO && ms > 0 && cs_clock_ms() - t0 >= ms - ms / 10)
		return -ETIMEDOUT;
	return rc;
}

/* The files of [lo, hi) (hi 0: all of them), within ms. */
static int files(struct cs_health_files *h, int ms, uint64_t lo, uint64_t hi)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	struct sets *s = malloc(sizeof *s);
	int rc = s ? read_sets(s) : -ENOMEM;

	if (rc < 0) {
		free(s);
		return rc;
	}
	sql_select(&q, ms);
	cs_sql_str(&q, "COUNT(*), COALESCE(SUM(c.counting < ");
	cs_sql_fmt(&q, "%d AND c.live > 0), 0), COALESCE(SUM(c.live = 0), 0) FROM"
		       " (SELECT f.id, COALESCE(SUM(", cs_cfg.replicas);
	sql_counts(&q, s, 0);
	cs_sql_str(&q, "), 0) AS counting, COALESCE(SUM(");
	sql_in(&q, s->serves, s->nserves, 0);
	free(s);
	cs_sql_str(&q, "), 0) AS live"
		       " FROM files f LEFT JOIN replicas r ON r.file_id=f.id AND r.version=f.version"
		       " AND r.stale=0 WHERE f.deleted=0");
	if (hi)
		cs_sql_fmt(&q, " AND f.id>=%" PRIu64 " AND f.id<%" PRIu64, lo, hi);
	cs_sql_str(&q, " GROUP BY f.id) c");
	if ((rc = query_within(&q, &res, ms)) < 0)
		return rc;
	row = mysql_fetch_row(res);
	if (row) {
		h->live += cs_db_u64(row[0]);
		h->under_replicated += cs_db_u64(row[1]);
		h->no_live_copy += cs_db_u64(row[2]);
	}
	mysql_free_result(res);
	return 0;
}

int cs_health_files_within(struct cs_health_files *h, int ms)
{
	*h = (struct cs_health_files){ 0 };
	return files(h, ms, 0, 0);
}

int cs_health_files_in(struct cs_health_files *h, uint64_t lo, uint64_t hi, int ms)
{
	return lo < hi ? files(h, ms, lo, hi) : 0;
}

/* The copies of [lo, hi) (hi 0: all of them) per node, added to out[*n],
 * within ms.  A copy of an older version or of a deleted file is in no
 * node's files or bytes, but in its pinned when pinned (status has always
 * counted so). */
static int held(struct cs_health_held *out, int *n, int max, int ms, uint64_t lo, uint64_t hi)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	sql_select(&q, ms);
	cs_sql_str(&q, "r.node_id, COUNT(f.id), COALESCE(SUM(f.size), 0),"
		       " COALESCE(SUM(r.pinned), 0) FROM replicas r LEFT JOIN files f"
		       " ON f.id=r.file_id AND f.version=r.version AND f.deleted=0 WHERE r.stale=0");
	if (hi)
		cs_sql_fmt(&q, " AND r.file_id>=%" PRIu64 " AND r.file_id<%" PRIu64, lo, hi);
	cs_sql_str(&q, " GROUP BY r.node_id");
	if ((rc = query_within(&q, &res, ms)) < 0)
		return rc;
	while ((row = mysql_fetch_row(res))) {
		uint32_t id = (uint32_t)cs_db_u64(row[0]);
		int i;

		for (i = 0; i < *n && out[i].node != id; i++)
			;
		if (i == *n) {
			if (*n == max)
				continue;       /* more nodes than a table holds */
			out[(*n)++] = (struct cs_health_held){ .node = id };
		}
		out[i].files += cs_db_u64(row[1]);
		out[i].bytes += cs_db_u64(row[2]);
		out[i].pinned += cs_db_u64(row[3]);
	}
	mysql_free_result(res);
	return 0;
}

int cs_health_held_within(struct cs_health_held *out, int max, int ms)
{
	int n = 0, rc = held(out, &n, max, ms, 0, 0);

	return rc < 0 ? rc : n;
}

int cs_health_held_in(struct cs_health_held *out, int *n, int max, uint64_t lo, uint64_t hi,
		      int ms)
{
	return lo < hi ? held(out, n, max, ms, lo, hi) : 0;
}

/* The next batch of node's current copies after file id `after`: how many
 * (*count) and the last one's file id (*last). */
static int next_batch(uint32_t node, uint64_t after, int limit, uint64_t *count, uint64_t *last)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	/* replicas_node (node_id, stale) holds the key's file_id after its
	 * columns: a range of it, in file id order. */
	sql_select(&q, CS_HEALTH_BATCH_MS);
	cs_sql_fmt(&q, "COUNT(*), COALESCE(MAX(file_id), 0) FROM (SELECT file_id FROM"
		       " replicas WHERE node_id=%" PRIu32 " AND stale=0 AND file_id>%" PRIu64
		       " ORDER BY file_id LIMIT %d) b", node, after, limit);
	if ((rc = query_within(&q, &res, CS_HEALTH_BATCH_MS)) < 0)
		return rc;
	row = mysql_fetch_row(res);
	*count = row ? cs_db_u64(row[0]) : 0;
	*last = row ? cs_db_u64(row[1]) : 0;
	mysql_free_result(res);
	return 0;
}

/* node's dependent files among its copies with file ids in (after, last]. */
static int dependents_in(uint32_t node, const struct sets *s, uint64_t after, uint64_t last,
			 uint64_t *n)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	sql_select(&q, CS_HEALTH_BATCH_MS);
	cs_sql_str(&q, "COUNT(*) FROM (SELECT f.id, COALESCE(SUM(");
	sql_counts(&q, s, node);
	cs_sql_fmt(&q, "), 0) AS others FROM replicas mine JOIN files f ON f.id=mine.file_id"
		       " AND f.version=mine.version AND f.deleted=0"
		       " JOIN replicas r ON r.file_id=f.id AND r.version=f.version AND r.stale=0"
		       " WHERE mine.node_id=%" PRIu32 " AND mine.stale=0", node);
	cs_sql_fmt(&q, " AND mine.file_id>%" PRIu64 " AND mine.file_id<=%" PRIu64
		       " GROUP BY f.id HAVING others < %d) d", after, last, cs_cfg.replicas);
	if ((rc = query_within(&q, &res, CS_HEALTH_BATCH_MS)) < 0)
		return rc;
	row = mysql_fetch_row(res);
	*n += row ? cs_db_u64(row[0]) : 0;
	mysql_free_result(res);
	return 0;
}

int cs_health_dependents(uint32_t node, uint64_t *n)
{
	uint64_t after = 0, count = 0, last = 0, found = 0;
	struct sets *s = malloc(sizeof *s);
	int limit = DEPENDENTS_BATCH, rc = s ? 0 : -ENOMEM;

	*n = 0;
	/* The node table now, not as cached: an operator acts on it. */
	if (rc == 0 && (rc = cs_nodes_refresh()) == 0)
		rc = read_sets(s);
	while (rc == 0) {
		int64_t t0 = cs_clock_ms();

		found = 0;
		rc = next_batch(node, after, limit, &count, &last);
		if (rc == 0 && count)
			rc = dependents_in(node, s, after, last, &found);
		if (rc == -ETIMEDOUT && limit > DEPENDENTS_MIN) {
			limit /= 2;     /* the same copies again, fewer at a time */
			rc = 0;
			continue;
		}
		if (rc < 0 || count < (uint64_t)limit)
			break;
		*n += found;
		after = last;
		if (cs_clock_ms() - t0 < CS_HEALTH_BATCH_MS / 5 && limit < 8 * DEPENDENTS_BATCH)
			limit *= 2;
	}
	if (rc == 0)
		*n += found;
	free(s);
	return rc;
}
