/*
 * health.c - the registry's view of how well the cluster holds its files.
 *
 * Whole-table aggregates (a GROUP BY over the live files' current copies):
 * fine for an operator's command or a wait loop, not for a hot path.  Up
 * or down is this agent's reading of the heartbeats (CS_DOWN_AFTER), the
 * same as its node table's.
 */
#include <errno.h>
#include <inttypes.h>

#include "db.h"
#include "health.h"
#include "nodes.h"

/* SQL: 1 when the copy r on node n counts toward CS_REPLICAS. */
static void sql_counts(struct cs_buf *q)
{
	cs_sql_str(q, "(r.pinned=1 AND ");
	cs_nodes_sql_counts(q, "n");
	cs_sql_str(q, ")");
}

int cs_health_files(struct cs_health_files *h)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	cs_sql_str(&q, "SELECT COUNT(*), COALESCE(SUM(c.counting < ");
	cs_sql_fmt(&q, "%d AND c.live > 0), 0), COALESCE(SUM(c.live = 0), 0) FROM"
		       " (SELECT f.id, COALESCE(SUM(", cs_cfg.replicas);
	sql_counts(&q);
	cs_sql_str(&q, "), 0) AS counting, COALESCE(SUM(");
	cs_nodes_sql_serves(&q, "n");
	cs_sql_str(&q, "), 0) AS live"
		       " FROM files f LEFT JOIN replicas r ON r.file_id=f.id AND r.version=f.version"
		       " AND r.stale=0 LEFT JOIN nodes n ON n.id=r.node_id"
		       " WHERE f.deleted=0 GROUP BY f.id) c");
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc;
	row = mysql_fetch_row(res);
	h->live = row ? cs_db_u64(row[0]) : 0;
	h->under_replicated = row ? cs_db_u64(row[1]) : 0;
	h->no_live_copy = row ? cs_db_u64(row[2]) : 0;
	mysql_free_result(res);
	return 0;
}

int cs_health_dependents(uint32_t node, uint64_t *n)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	cs_sql_fmt(&q, "SELECT COUNT(*) FROM (SELECT f.id, COALESCE(SUM(r.node_id<>%" PRIu32
		       " AND ", node);
	sql_counts(&q);
	cs_sql_fmt(&q, "), 0) AS others FROM replicas mine JOIN files f ON f.id=mine.file_id"
		       " AND f.version=mine.version AND f.deleted=0"
		       " JOIN replicas r ON r.file_id=f.id AND r.version=f.version AND r.stale=0"
		       " JOIN nodes n ON n.id=r.node_id"
		       " WHERE mine.node_id=%" PRIu32 " AND mine.stale=0 GROUP BY f.id"
		       " HAVING others < %d) d", node, cs_cfg.replicas);
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc;
	row = mysql_fetch_row(res);
	*n = row ? cs_db_u64(row[0]) : 0;
	mysql_free_result(res);
	return 0;
}
