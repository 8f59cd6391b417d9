/*
 * registry.c - what the cluster has and who holds it, read from memcached
 * in front of MySQL/MariaDB (sql/schema.sql), and the records of this
 * node's copies.
 *
 * MySQL is the truth; memcached holds encoded records of it (record.c).
 * Cache rules, chosen so that a lookup racing a write cannot pin a stale
 * answer:
 *   - readers fill memcached with `add` (never overwrite what a writer put);
 *   - writers `set` the new record (publish.c);
 *   - "not in the cluster" is cached for CS_NEG_MC_TTL seconds, and a later
 *     create overwrites it at once;
 *   - a node whose holders change (a confirmed push or repair, an evicted
 *     copy) deletes the record, and the next reader fills it from MySQL:
 *     setting one read here could put back a version a writer replaced
 *     meanwhile, and only a writer may do that.
 * The holders in a cached record may be out of date (copies made since are
 * recorded in MySQL only); a reader that finds none of them able to serve
 * asks MySQL again (fetch.c).  Statements reach MySQL through the agent's
 * pool (db.c); names and paths go in as hex literals.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "listing.h"
#include "mcache.h"
#include "nodes.h"
#include "registry.h"

/* ---- statements ---------------------------------------------------- */

static void sql_where(struct cs_buf *q, const unsigned char h[CS_SHA256_LEN],
		      const char *ns, const char *rel)
{
	cs_sql_str(q, " WHERE f.path_hash=");
	cs_sql_hex(q, h, CS_SHA256_LEN);
	cs_sql_str(q, " AND f.namespace=");
	cs_sql_text(q, ns);
	cs_sql_str(q, " AND f.path=");
	cs_sql_text(q, rel);
}

void cs_registry_sql_file(struct cs_buf *q, const unsigned char h[CS_SHA256_LEN],
			  const char *ns, const char *rel, bool for_update, uint32_t mine)
{
	cs_sql_str(q, "SELECT f.id, f.version, f.size, f.mtime_ns, f.sha256, f.deleted,"
		      " (SELECT GROUP_CONCAT(r.node_id ORDER BY r.updated_at)"
		      "  FROM replicas r WHERE r.file_id=f.id AND r.version=f.version AND r.stale=0)");
	if (mine)
		cs_sql_fmt(q, ", (SELECT m.version FROM replicas m WHERE m.file_id=f.id AND"
			      " m.node_id=%" PRIu32 ")", mine);
	cs_sql_str(q, " FROM files f");
	sql_where(q, h, ns, rel);
	if (for_update)
		cs_sql_str(q, " FOR UPDATE");
}

int cs_registry_row(MYSQL_RES *res, struct cs_file *f)
{
	MYSQL_ROW row = mysql_fetch_row(res);
	unsigned long *len;

	if (!row)
		return -ENOENT;
	len = mysql_fetch_lengths(res);
	memset(f, 0, sizeof *f);
	f->id = cs_db_u64(row[0]);
	f->version = cs_db_u64(row[1]);
	f->size = cs_db_u64(row[2]);
	f->mtime_ns = row[3] ? strtoll(row[3], NULL, 10) : 0;
	if (!row[4] || len[4] != CS_SHA256_LEN)
		return -EIO;
	memcpy(f->sha256, row[4], CS_SHA256_LEN);
	f->deleted = row[5] && row[5][0] == '1';
	if (mysql_num_fields(res) > 7)
		f->mine = cs_db_u64(row[7]);
	for (char *p = row[6]; p && *p && f->nholders < CS_MAX_HOLDERS;) {
		char *end;
		f->holder[f->nholders++] = (uint32_t)strtoul(p, &end, 10);
		p = *end ? end + 1 : end;
	}
	return 0;
}

void cs_registry_sql_new_file(struct cs_buf *q, const unsigned char h[CS_SHA256_LEN],
			      const char *ns, const char *rel, uint64_t size, int64_t mtime_ns,
			      const unsigned char sha[CS_SHA256_LEN])
{
	cs_sql_str(q, "INSERT INTO files (path_hash, namespace, path, version,"
		      " size, mtime_ns, sha256, deleted) VALUES (");
	cs_sql_hex(q, h, CS_SHA256_LEN);
	cs_sql_str(q, ",");
	cs_sql_text(q, ns);
	cs_sql_str(q, ",");
	cs_sql_text(q, rel);
	cs_sql_fmt(q, ",1,%" PRIu64 ",%" PRId64 ",", size, mtime_ns);
	cs_sql_hex(q, sha, CS_SHA256_LEN);
	cs_sql_str(q, ",0)");
}

/* On a second record of one copy: a newer version never goes back to an
 * older one, and the copy as installed goes with the version it is of.  A
 * copy of the same version stays pinned once it was (a pulled copy that a
 * push or a repair made count keeps counting). */
#define REPLICA_UPDATE                                                         \
	" ON DUPLICATE KEY UPDATE"                                             \
	" pinned=IF(VALUES(version) > replicas.version, VALUES(pinned),"       \
	"  IF(VALUES(version) = replicas.version, GREATEST(replicas.pinned, VALUES(pinned)), replicas.pinned))," \
	" stale=IF(VALUES(version) >= replicas.version, VALUES(stale), replicas.stale)," \
	" size=IF(VALUES(version) >= replicas.version, VALUES(size), replicas.size)," \
	" mtime_ns=IF(VALUES(version) >= replicas.version, VALUES(mtime_ns), replicas.mtime_ns)," \
	" version=GREATEST(replicas.version, VALUES(version))"

void cs_registry_sql_replica(struct cs_buf *q, uint64_t file_id, uint32_t node,
			     uint64_t version, uint64_t size, int64_t mtime_ns)
{
	cs_sql_fmt(q, "INSERT INTO replicas (file_id, node_id, version, size, mtime_ns, stale, pinned)"
		      " VALUES (%" PRIu64 ",%" PRIu32 ",%" PRIu64 ",%" PRIu64 ",%" PRId64 ",0,1)",
		   file_id, node, version, size, mtime_ns);
	cs_sql_str(q, REPLICA_UPDATE);
}

int cs_registry_db_file(struct cs_db *d, const unsigned char h[CS_SHA256_LEN], const char *ns,
			const char *rel, struct cs_file *f, bool for_update)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	int rc;

	cs_registry_sql_file(&q, h, ns, rel, for_update, 0);
	rc = cs_db_run(d, &q, &res, !for_update);
	if (rc == 0)
		rc = cs_registry_row(res, f);
	if (res)
		mysql_free_result(res);
	cs_buf_free(&q);
	return rc;
}

void cs_registry_cache(const unsigned char h[CS_SHA256_LEN], const struct cs_file *f,
		       bool overwrite)
{
	char key[CS_KEY_MAX], rec[1024];
	int n = f ? cs_record_encode(f, rec, sizeof rec) : cs_record_encode_absent(rec, sizeof rec);

	if (n < 0)
		return;
	cs_record_key(h, key);
	cs_mc_store(key, rec, n, f ? CS_POS_MC_TTL : CS_NEG_MC_TTL, overwrite);
}

void cs_registry_uncache(const char *ns, const char *rel)
{
	unsigned char h[CS_SHA256_LEN];
	char key[CS_KEY_MAX];

	cs_path_hash(ns, rel, h);
	cs_record_key(h, key);
	cs_mc_delete(key);
}

int cs_registry_confirm(struct cs_held_at *at, int n)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	cs_sql_str(&q, "SELECT file_id, node_id, version FROM replicas WHERE stale=0 AND"
		       " (file_id, node_id) IN (");
	for (int i = 0; i < n; i++) {
		at[i].held = false;
		cs_sql_fmt(&q, "%s(%" PRIu64 ",%" PRIu32 ")", i ? "," : "", at[i].file_id,
			   at[i].node);
	}
	cs_sql_str(&q, ")");
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc == -ENOMEM ? rc : -EAGAIN;
	while (res && (row = mysql_fetch_row(res)))
		for (int i = 0; i < n; i++)
			if (at[i].file_id == cs_db_u64(row[0]) && at[i].node == cs_db_u64(row[1]) &&
			    cs_db_u64(row[2]) >= at[i].version)
				at[i].held = true;
	if (res)
		mysql_free_result(res);
	return 0;
}

/* ---- lookups ------------------------------------------------------- */

static int db_lookup(const unsigned char h[CS_SHA256_LEN], const char *ns, const char *rel,
		     struct cs_file *f)
{
	struct cs_db *d = cs_db_get();
	int rc;

	if (!d)
		return -EAGAIN;
	rc = cs_registry_db_file(d, h, ns, rel, f, false);
	cs_db_put(d);
	return rc;
}

int cs_registry_lookup(const char *ns, const char *rel, struct cs_file *f, bool *cached)
{
	unsigned char h[CS_SHA256_LEN];
	char key[CS_KEY_MAX];
	size_t len;
	int rc;

	*cached = false;
	cs_path_hash(ns, rel, h);
	cs_record_key(h, key);
	char *v = cs_mc_get(key, &len);
	if (v) {
		rc = cs_record_decode(v, len, f);
		free(v);
		if (rc == 1 || (rc == 0 && f->deleted))
			return -ENOENT;
		if (rc == 0) {
			*cached = true;
			return 0;
		}
		cs_warn("memcached: undecodable record at %s; asking MySQL", key);
	}
	rc = db_lookup(h, ns, rel, f);
	if (rc == 0 || rc == -ENOENT)
		cs_registry_cache(h, rc == 0 ? f : NULL, false);
	if (rc == -ENOENT || (rc == 0 && f->deleted))
		return -ENOENT;
	return rc == 0 ? 0 : -EAGAIN;
}

int cs_registry_lookup_db(const char *ns, const char *rel, struct cs_file *f)
{
	unsigned char h[CS_SHA256_LEN];

	cs_path_hash(ns, rel, h);
	return db_lookup(h, ns, rel, f);
}

int cs_registry_dir(const char *ns, const char *rel)
{
	size_t n = strlen(rel);
	char *lo = malloc(n + 2), *hi;
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	int rc;

	if (!lo)
		return -ENOMEM;
	/* Every path below rel sorts in [rel + "/", rel + "0"): '0' follows
	 * '/' (a range the (namespace, path) index answers). */
	memcpy(lo, rel, n);
	memcpy(lo + n, "/", 2);
	hi = strdup(lo);
	if (hi)
		hi[n] = '0';
	cs_sql_str(&q, "SELECT 1 FROM files WHERE namespace=");
	cs_sql_text(&q, ns);
	cs_sql_str(&q, " AND path >= ");
	cs_sql_text(&q, lo);
	cs_sql_str(&q, " AND path < ");
	cs_sql_text(&q, hi ? hi : lo);
	cs_sql_str(&q, " AND deleted=0 LIMIT 1");
	free(lo);
	if (!hi)
		q.oom = true;
	free(hi);
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc == -EAGAIN ? -EAGAIN : -EIO;
	rc = mysql_fetch_row(res) ? 0 : -ENOENT;
	mysql_free_result(res);
	return rc;
}

/* ---- this node's copies -------------------------------------------- */

int cs_registry_hold(const struct cs_held *v, int n, bool pinned)
{
	struct cs_buf q = { 0 };
	uint32_t self;
	int rc;

	if (n <= 0)
		return 0;
	if ((rc = cs_nodes_self(&self)) < 0)
		return rc;
	/* One statement for the batch.  A copy is stale from the start when
	 * the registry has moved past the version installed: the sweep then
	 * removes it. */
	cs_sql_fmt(&q, "INSERT INTO replicas (file_id, node_id, version, size, mtime_ns, stale, pinned)"
		       " SELECT f.id, %" PRIu32 ", c.v, c.s, c.m, (f.version <> c.v OR f.deleted), %d"
		       " FROM (", self, pinned);
	for (int i = 0; i < n; i++) {
		const struct cs_held *h = &v[i];

		cs_sql_fmt(&q, "%sSELECT %" PRIu64 " AS i, %" PRIu64 " AS v, %" PRIu64 " AS s, %"
			       PRId64 " AS m", i ? " UNION ALL " : "", h->file_id, h->version,
			   h->size, h->mtime_ns);
	}
	cs_sql_str(&q, ") c JOIN files f ON f.id=c.i");
	cs_sql_str(&q, REPLICA_UPDATE);
	rc = cs_db_query(&q, NULL);
	return rc == 0 ? 0 : -EAGAIN;
}

int cs_registry_stale(struct cs_stale *out, int max)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	uint32_t self;
	int n = 0, rc;

	if ((rc = cs_nodes_self(&self)) < 0)
		return rc;
	cs_sql_fmt(&q, "SELECT r.file_id, r.version, r.size, r.mtime_ns, f.namespace, f.path,"
		       " c.id FROM replicas r JOIN files f ON f.id=r.file_id"
		       " LEFT JOIN conflicts c ON c.file_id=r.file_id AND c.lost_version=r.version"
		       " WHERE r.node_id=%" PRIu32 " AND r.stale=1 LIMIT %d", self, max);
	rc = cs_db_query(&q, &res);
	while (rc == 0 && (row = mysql_fetch_row(res)) && n < max) {
		unsigned long *l = mysql_fetch_lengths(res);
		struct cs_stale *x = &out[n];

		if (!row[4] || !row[5] || l[4] >= sizeof x->ns || l[5] >= sizeof x->rel)
			continue;
		x->file_id = cs_db_u64(row[0]);
		x->version = cs_db_u64(row[1]);
		x->size = cs_db_u64(row[2]);
		x->mtime_ns = row[3] ? strtoll(row[3], NULL, 10) : 0;
		x->conflict = cs_db_u64(row[6]);
		memcpy(x->ns, row[4], l[4]);
		x->ns[l[4]] = '\0';
		memcpy(x->rel, row[5], l[5]);
		x->rel[l[5]] = '\0';
		n++;
	}
	if (res)
		mysql_free_result(res);
	return rc < 0 ? rc : n;
}

int cs_registry_lost_copy(uint64_t file_id, struct cs_stale *x)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	uint32_t self;
	int rc;

	if ((rc = cs_nodes_self(&self)) < 0)
		return rc;
	cs_sql_fmt(&q, "SELECT c.id, r.version, r.size, r.mtime_ns FROM replicas r JOIN conflicts c"
		       " ON c.file_id=r.file_id AND c.lost_version=r.version"
		       " WHERE r.file_id=%" PRIu64 " AND r.node_id=%" PRIu32, file_id, self);
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc;
	rc = -ENOENT;
	if (res && (row = mysql_fetch_row(res))) {
		x->file_id = file_id;
		x->conflict = cs_db_u64(row[0]);
		x->version = cs_db_u64(row[1]);
		x->size = cs_db_u64(row[2]);
		x->mtime_ns = row[3] ? strtoll(row[3], NULL, 10) : 0;
		rc = 0;
	}
	if (res)
		mysql_free_result(res);
	return rc;
}

int cs_registry_kept(uint64_t conflict, const char *path)
{
	struct cs_buf q = { 0 };
	uint32_t self;
	int rc;

	if ((rc = cs_nodes_self(&self)) < 0)
		return rc;
	cs_sql_fmt(&q, "UPDATE conflicts SET kept_node=%" PRIu32 ", kept_path=", self);
	cs_sql_text(&q, path);
	cs_sql_fmt(&q, " WHERE id=%" PRIu64 " AND kept_node IS NULL", conflict);
	return cs_db_query(&q, NULL);
}

/* Copy column i of row (lengths l) into out[size] as a string. */
static void column(MYSQL_ROW row, const unsigned long *l, int i, char *out, size_t size)
{
	size_t n = row[i] ? (l[i] < size ? l[i] : size - 1) : 0;

	if (n)
		memcpy(out, row[i], n);
	out[n] = '\0';
}

int cs_registry_conflicts(void (*each)(const struct cs_conflict *c, void *arg), void *arg)
{
	struct cs_buf q = { 0 };
	struct cs_conflict *c = malloc(sizeof *c);
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int n = 0, rc;

	if (!c)
		return -ENOMEM;
	cs_sql_str(&q, "SELECT f.namespace, f.path, c.lost_version, c.size, c.sha256,"
		       " c.winner_version, w.name, k.name, c.kept_path,"
		       " DATE_FORMAT(c.detected_at, '%Y-%m-%d %H:%i:%s')"
		       " FROM conflicts c JOIN files f ON f.id=c.file_id"
		       " LEFT JOIN nodes w ON w.id=c.winner_node LEFT JOIN nodes k ON k.id=c.kept_node"
		       " ORDER BY c.id");
	if ((rc = cs_db_query(&q, &res)) < 0) {
		free(c);
		return rc == -ENOMEM ? rc : -EAGAIN;
	}
	while (res && (row = mysql_fetch_row(res))) {
		unsigned long *l = mysql_fetch_lengths(res);

		column(row, l, 0, c->ns, sizeof c->ns);
		column(row, l, 1, c->rel, sizeof c->rel);
		c->lost_version = cs_db_u64(row[2]);
		c->size = cs_db_u64(row[3]);
		memset(c->sha256, 0, sizeof c->sha256);
		if (row[4] && l[4] == CS_SHA256_LEN)
			memcpy(c->sha256, row[4], CS_SHA256_LEN);
		c->winner_version = cs_db_u64(row[5]);
		column(row, l, 6, c->winner, sizeof c->winner);
		column(row, l, 7, c->kept_node, sizeof c->kept_node);
		column(row, l, 8, c->kept_path, sizeof c->kept_path);
		column(row, l, 9, c->detected, sizeof c->detected);
		each(c, arg);
		n++;
	}
	if (res)
		mysql_free_result(res);
	free(c);
	return n;
}

int cs_registry_drop_copy(uint64_t file_id, uint64_t version)
{
	struct cs_buf q = { 0 };
	uint32_t self;
	int rc;

	if ((rc = cs_nodes_self(&self)) < 0)
		return rc;
	cs_sql_fmt(&q, "DELETE FROM replicas WHERE file_id=%" PRIu64 " AND node_id=%" PRIu32
		       " AND stale=1 AND version=%" PRIu64, file_id, self, version);
	return cs_db_query(&q, NULL);
}

/* This node's current copies: held, of the version the file has now, and
 * the file not deleted.  r is replicas, f files. */
#define CURRENT_COPIES                                                         \
	" FROM replicas r JOIN files f ON f.id=r.file_id AND f.version=r.version" \
	" AND f.deleted=0 WHERE r.node_id=%" PRIu32 " AND r.stale=0"

int cs_registry_copies(uint64_t after, struct cs_copy *out, int max)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	uint32_t self;
	int n = 0, rc;

	if ((rc = cs_nodes_self(&self)) < 0)
		return rc;
	/* By (node_id, stale, file_id): the replicas_node index, a range. */
	cs_sql_fmt(&q, "SELECT f.id, f.version, f.size, f.sha256, r.size, r.mtime_ns, r.pinned,"
		       " f.namespace, f.path" CURRENT_COPIES " AND r.file_id > %" PRIu64
		       " ORDER BY r.file_id LIMIT %d", self, after, max);
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc == -ENOMEM ? rc : -EAGAIN;
	while (res && (row = mysql_fetch_row(res)) && n < max) {
		unsigned long *l = mysql_fetch_lengths(res);
		struct cs_copy *c = &out[n];

		if (!row[3] || l[3] != CS_SHA256_LEN || !row[7] || !row[8] ||
		    l[7] >= sizeof c->ns || l[8] >= sizeof c->rel)
			continue;
		c->file_id = cs_db_u64(row[0]);
		c->version = cs_db_u64(row[1]);
		c->size = cs_db_u64(row[2]);
		memcpy(c->sha256, row[3], CS_SHA256_LEN);
		c->held_size = cs_db_u64(row[4]);
		c->held_mtime_ns = row[5] ? strtoll(row[5], NULL, 10) : 0;
		c->pinned = row[6] && row[6][0] == '1';
		column(row, l, 7, c->ns, sizeof c->ns);
		column(row, l, 8, c->rel, sizeof c->rel);
		n++;
	}
	if (res)
		mysql_free_result(res);
	return n;
}

int cs_registry_unhold(uint64_t file_id, uint64_t version, uint64_t size, int64_t mtime_ns)
{
	struct cs_buf q = { 0 };
	uint32_t self;
	int rc;

	if ((rc = cs_nodes_self(&self)) < 0)
		return rc;
	cs_sql_fmt(&q, "DELETE FROM replicas WHERE file_id=%" PRIu64 " AND node_id=%" PRIu32
		       " AND version=%" PRIu64 " AND size=%" PRIu64 " AND mtime_ns=%" PRId64,
		   file_id, self, version, size, mtime_ns);
	rc = cs_db_query(&q, NULL);
	return rc == 0 || rc == -ENOMEM ? rc : -EAGAIN;
}

int cs_registry_found(const char *ns, struct cs_found *v, int n)
{
	unsigned char (*h)[CS_SHA256_LEN] = malloc((n > 0 ? n : 1) * sizeof *h);
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	uint32_t self;
	int rc;

	if (!h)
		return -ENOMEM;
	if (n <= 0 || (rc = cs_nodes_self(&self)) < 0) {
		free(h);
		return n <= 0 ? 0 : rc;
	}
	cs_sql_fmt(&q, "SELECT f.path_hash, f.id, f.version, f.size, f.mtime_ns, f.sha256,"
		       " f.deleted, r.version, f.path FROM files f LEFT JOIN replicas r ON"
		       " r.file_id=f.id AND r.node_id=%" PRIu32 " WHERE f.path_hash IN (", self);
	for (int i = 0; i < n; i++) {
		v[i].known = v[i].recorded = false;
		cs_path_hash(ns, v[i].rel, h[i]);
		cs_sql_str(&q, i ? "," : "");
		cs_sql_hex(&q, h[i], CS_SHA256_LEN);
	}
	cs_sql_str(&q, ") AND f.namespace=");
	cs_sql_text(&q, ns);
	if ((rc = cs_db_query(&q, &res)) < 0) {
		free(h);
		return rc == -ENOMEM ? rc : -EAGAIN;
	}
	while (res && (row = mysql_fetch_row(res))) {
		unsigned long *l = mysql_fetch_lengths(res);

		if (!row[0] || l[0] != CS_SHA256_LEN || !row[5] || l[5] != CS_SHA256_LEN || !row[8])
			continue;
		for (int i = 0; i < n; i++) {
			struct cs_found *x = &v[i];

			if (memcmp(h[i], row[0], CS_SHA256_LEN) != 0 || strlen(x->rel) != l[8] ||
			    memcmp(x->rel, row[8], l[8]) != 0)
				continue;
			memset(&x->f, 0, sizeof x->f);
			x->known = true;
			x->f.id = cs_db_u64(row[1]);
			x->f.version = cs_db_u64(row[2]);
			x->f.size = cs_db_u64(row[3]);
			x->f.mtime_ns = row[4] ? strtoll(row[4], NULL, 10) : 0;
			memcpy(x->f.sha256, row[5], CS_SHA256_LEN);
			x->f.deleted = row[6] && row[6][0] == '1';
			x->recorded = row[7] != NULL;
		}
	}
	if (res)
		mysql_free_result(res);
	free(h);
	return 0;
}

/* ---- the cache quota (evict.c) --------------------------------------- */

int cs_registry_usage(uint64_t *total, uint64_t *pinned)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	uint32_t self;
	int rc;

	if ((rc = cs_nodes_self(&self)) < 0)
		return rc;
	cs_sql_fmt(&q, "SELECT COALESCE(SUM(f.size), 0), COALESCE(SUM(IF(r.pinned, f.size, 0)), 0)"
		       CURRENT_COPIES, self);
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc;
	row = mysql_fetch_row(res);
	*total = row ? cs_db_u64(row[0]) : 0;
	*pinned = row ? cs_db_u64(row[1]) : 0;
	mysql_free_result(res);
	return 0;
}

struct each_copy {
	void (*fn)(const struct cs_pulled *c, void *arg);
	void *arg;
};

static void copy_row(void *arg, MYSQL_ROW row, unsigned long *l)
{
	struct each_copy *e = arg;
	struct cs_pulled c;

	/* Column values end in a NUL; one inside a name is no name of ours. */
	if (!row[4] || !row[5] || strlen(row[4]) != l[4] || strlen(row[5]) != l[5] ||
	    l[4] >= CS_NAME_MAX || l[5] >= CS_PATH_MAX)
		return;
	c.file_id = cs_db_u64(row[0]);
	c.version = cs_db_u64(row[1]);
	c.size = cs_db_u64(row[2]);
	c.mtime_ns = row[3] ? strtoll(row[3], NULL, 10) : 0;
	c.ns = row[4];
	c.rel = row[5];
	e->fn(&c, e->arg);
}

int cs_registry_pulled(void (*fn)(const struct cs_pulled *c, void *arg), void *arg)
{
	struct each_copy e = { fn, arg };
	struct cs_buf q = { 0 };
	uint32_t self;
	int rc;

	if ((rc = cs_nodes_self(&self)) < 0)
		return rc;
	cs_sql_fmt(&q, "SELECT r.file_id, r.version, r.size, r.mtime_ns, f.namespace, f.path"
		       CURRENT_COPIES " AND r.pinned=0", self);
	return cs_db_query_each(&q, copy_row, &e);
}

int cs_registry_evict(uint64_t file_id, uint64_t version)
{
	struct cs_buf q = { 0 };
	struct cs_db *d;
	uint32_t self;
	int rc;

	if ((rc = cs_nodes_self(&self)) < 0)
		return rc;
	/* Only while the copy is still a current pulled one: a push or a
	 * repair that made it count, or a new version that made it stale,
	 * takes it out of the quota's hands.  Not sent again on a lost
	 * connection: a second DELETE of a row the first one removed would
	 * say nothing was, and the copy would stay unrecorded. */
	cs_sql_fmt(&q, "DELETE FROM replicas WHERE file_id=%" PRIu64 " AND node_id=%" PRIu32
		       " AND version=%" PRIu64 " AND pinned=0 AND stale=0", file_id, self, version);
	if (!(d = cs_db_for(&q, &rc)))
		return rc;
	rc = cs_db_run(d, &q, NULL, false);
	if (rc == 0)
		rc = cs_db_affected(d) > 0;
	cs_db_put(d);
	cs_buf_free(&q);
	return rc;
}

/* ---- import ---------------------------------------------------------- */

/*
 * A batch of files this node already has is registered in one transaction
 * of two round trips, as publish.c registers writes: lock and read the
 * batch's rows with one SELECT (READ COMMITTED: a path not registered yet
 * takes no gap lock), then in one go add the new paths' directories, the
 * new paths (one multi-row INSERT), a new version over each tombstone, this
 * node's holder records of them all (one INSERT ... SELECT), read the
 * records back for memcached, and commit.  What import does to a path is
 * what it always did, file by file: a new path is version 1, a tombstone
 * gets the next version, the same content already registered gets this
 * node's holder record of the registered version (as registered: size and
 * mtime included), other content is left alone (-EEXIST).
 */

#define IMPORT_TRIES 4          /* attempts of a batch that loses races */

/* Where v[i] stands in the transaction. */
enum { IMP_NEW = 1, IMP_TOMBSTONE, IMP_SAME };

static void sql_hashes(struct cs_buf *q, const unsigned char (*h)[CS_SHA256_LEN],
		       const int *order, const int *what, int n)
{
	const char *sep = "";

	for (int k = 0; k < n; k++) {
		int i = order[k];
		if (what && !what[i])
			continue;
		cs_sql_str(q, sep);
		cs_sql_hex(q, h[i], CS_SHA256_LEN);
		sep = ",";
	}
}

/* The v[i] a row (path hash in column hc, path in pc) is about, or -1:
 * order[] has the batch by path hash. */
static int row_file(MYSQL_ROW row, unsigned long *l, int hc, int pc,
		    const struct cs_import *v, const unsigned char (*h)[CS_SHA256_LEN],
		    const int *order, int n)
{
	int lo = 0, hi = n;

	if (!row[hc] || l[hc] != CS_SHA256_LEN || !row[pc])
		return -1;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2, i = order[mid];
		int c = memcmp(h[i], row[hc], CS_SHA256_LEN);

		if (c == 0)
			return strlen(v[i].rel) == l[pc] && !memcmp(v[i].rel, row[pc], l[pc]) ? i : -1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Round trip 1: lock and read the rows there are; what[i] says what v[i]
 * will do, f[i] gets its row (id, version, sha256, deleted). */
static int import_read(struct cs_db *d, const char *ns, struct cs_import *v, const int *order,
		       int n, const unsigned char (*h)[CS_SHA256_LEN], int *what, struct cs_file *f)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	cs_sql_str(&q, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION;"
		       " SELECT f.path_hash, f.id, f.version, f.sha256, f.deleted, f.path"
		       " FROM files f WHERE f.path_hash IN (");
	sql_hashes(&q, h, order, NULL, n);
	cs_sql_str(&q, ") AND f.namespace=");
	cs_sql_text(&q, ns);
	cs_sql_str(&q, " FOR UPDATE");
	rc = cs_db_multi(d, &q, &res, 1, NULL, 0);
	cs_buf_free(&q);
	if (rc < 0) {
		if (res)
			mysql_free_result(res);
		return rc;
	}
	for (int i = 0; i < n; i++)
		what[i] = IMP_NEW;
	while (res && (row = mysql_fetch_row(res))) {
		unsigned long *l = mysql_fetch_lengths(res);
		int i = row_file(row, l, 0, 5, v, h, order, n);

		if (i < 0 || !row[3] || l[3] != CS_SHA256_LEN)
			continue;
		memset(&f[i], 0, sizeof f[i]);
		f[i].id = cs_db_u64(row[1]);
		f[i].version = cs_db_u64(row[2]);
		memcpy(f[i].sha256, row[3], CS_SHA256_LEN);
		f[i].deleted = row[4] && row[4][0] == '1';
		if (f[i].deleted) {
			what[i] = IMP_TOMBSTONE;
		} else if (memcmp(f[i].sha256, v[i].sha256, CS_SHA256_LEN) != 0) {
			what[i] = 0;
			v[i].rc = -EEXIST;
		} else {
			what[i] = IMP_SAME;
		}
	}
	if (res)
		mysql_free_result(res);
	return 0;
}

/* Round trip 2's statements for the batch as import_read found it. */
static void import_sql(struct cs_buf *q, const char *ns, const struct cs_import *v,
		       const int *order, int n, const unsigned char (*h)[CS_SHA256_LEN],
		       const int *what, const struct cs_file *f, uint32_t self)
{
	struct cs_dirset dirs = { 0 };
	const char *sep = "INSERT INTO files (path_hash, namespace, path, version, size,"
			  " mtime_ns, sha256, deleted) VALUES ";
	bool any = false;

	for (int k = 0; k < n; k++)
		if (what[order[k]] == IMP_NEW)
			cs_dirset_add(&dirs, ns, v[order[k]].rel);     /* listed from now on */
	if (cs_dirset_sql(&dirs, q))
		cs_sql_str(q, "; ");
	cs_dirset_free(&dirs);
	for (int k = 0; k < n; k++) {
		int i = order[k];

		any |= what[i] != 0;
		if (what[i] != IMP_NEW)
			continue;
		cs_sql_str(q, sep);
		cs_sql_str(q, "(");
		cs_sql_hex(q, h[i], CS_SHA256_LEN);
		cs_sql_str(q, ",");
		cs_sql_text(q, ns);
		cs_sql_str(q, ",");
		cs_sql_text(q, v[i].rel);
		cs_sql_fmt(q, ",1,%" PRIu64 ",%" PRId64 ",", v[i].size, v[i].mtime_ns);
		cs_sql_hex(q, v[i].sha256, CS_SHA256_LEN);
		cs_sql_str(q, ",0)");
		sep = ",";
	}
	if (*sep == ',')
		cs_sql_str(q, "; ");
	/* Re-created over a tombstone: its next version (the row is locked). */
	for (int i = 0; i < n; i++) {
		if (what[i] != IMP_TOMBSTONE)
			continue;
		cs_sql_fmt(q, "UPDATE files SET version=version+1, deleted=0, size=%" PRIu64
			      ", mtime_ns=%" PRId64 ", sha256=", v[i].size, v[i].mtime_ns);
		cs_sql_hex(q, v[i].sha256, CS_SHA256_LEN);
		cs_sql_fmt(q, " WHERE id=%" PRIu64 "; ", f[i].id);
	}
	if (any) {
		/* This node holds each as registered now: the version, size and
		 * mtime of the row. */
		cs_sql_fmt(q, "INSERT INTO replicas (file_id, node_id, version, size, mtime_ns,"
			      " stale, pinned) SELECT f.id, %" PRIu32 ", f.version, f.size,"
			      " f.mtime_ns, 0, 1 FROM files f WHERE f.path_hash IN (", self);
		sql_hashes(q, h, order, what, n);
		cs_sql_str(q, ")" REPLICA_UPDATE "; ");
		/* The records as they will be committed, for memcached. */
		cs_sql_str(q, "SELECT f.id, f.version, f.size, f.mtime_ns, f.sha256, f.deleted,"
			      " (SELECT GROUP_CONCAT(r.node_id ORDER BY r.updated_at) FROM replicas r"
			      "  WHERE r.file_id=f.id AND r.version=f.version AND r.stale=0),"
			      " f.path_hash, f.path FROM files f WHERE f.path_hash IN (");
		sql_hashes(q, h, order, what, n);
		cs_sql_str(q, "); ");
	}
	cs_sql_str(q, "COMMIT");
}

/* A record row of import_sql's last SELECT into f (holders included). */
static void record_row(MYSQL_ROW row, unsigned long *l, struct cs_file *f)
{
	memset(f, 0, sizeof *f);
	f->id = cs_db_u64(row[0]);
	f->version = cs_db_u64(row[1]);
	f->size = cs_db_u64(row[2]);
	f->mtime_ns = row[3] ? strtoll(row[3], NULL, 10) : 0;
	if (row[4] && l[4] == CS_SHA256_LEN)
		memcpy(f->sha256, row[4], CS_SHA256_LEN);
	f->deleted = row[5] && row[5][0] == '1';
	for (char *p = row[6]; p && *p && f->nholders < CS_MAX_HOLDERS;) {
		char *end;
		f->holder[f->nholders++] = (uint32_t)strtoul(p, &end, 10);
		p = *end ? end + 1 : end;
	}
}

/*
 * One attempt at the import transaction for v[0, n), taken in order[] (by
 * path hash, so two batches lock rows in one order): each v[i].rc, and
 * f[i] the record registered for those that are 0.  -EBUSY when it lost a
 * race (duplicate key, deadlock, Galera's certification), -EAGAIN, -EIO:
 * then nothing was done.
 */
static int import_attempt(struct cs_db *d, const char *ns, struct cs_import *v,
			  const int *order, int n, const unsigned char (*h)[CS_SHA256_LEN],
			  uint32_t self, struct cs_file *f)
{
	int *what = calloc(n, sizeof *what);
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	if (!what)
		return -ENOMEM;
	for (int i = 0; i < n; i++)
		v[i].rc = 0;
	if ((rc = import_read(d, ns, v, order, n, h, what, f)) < 0)
		goto fail;
	import_sql(&q, ns, v, order, n, h, what, f, self);
	if ((rc = cs_db_multi(d, &q, &res, 1, NULL, 0)) < 0)
		goto fail;
	for (int i = 0; i < n; i++)
		if (what[i])
			v[i].rc = -EIO;         /* until its record is read */
	while (res && (row = mysql_fetch_row(res))) {
		unsigned long *l = mysql_fetch_lengths(res);
		int i = row_file(row, l, 7, 8, v, h, order, n);

		if (i < 0 || !what[i])
			continue;
		record_row(row, l, &f[i]);
		/* Its row was locked since it was read: never another's
		 * content, unless the registry is not what it says. */
		v[i].rc = f[i].deleted || memcmp(f[i].sha256, v[i].sha256, CS_SHA256_LEN) != 0 ?
			  -EEXIST : 0;
	}
	goto out;
fail:
	cs_db_rollback(d);
out:
	if (res)
		mysql_free_result(res);
	cs_buf_free(&q);
	free(what);
	return rc;
}

/* A short, growing, jittered pause before a batch is tried again. */
static void backoff(int tries)
{
	struct timespec ts = { 0, 0 };
	long ms = (5L << tries) + (long)((uint64_t)cs_clock_ms() * 2654435761u % 7);

	ts.tv_nsec = ms * 1000000L;
	nanosleep(&ts, NULL);
}

/* import_attempt until it does not lose a race (IMPORT_TRIES at most). */
static int import_tries(struct cs_db *d, const char *ns, struct cs_import *v,
			const int *order, int n, const unsigned char (*h)[CS_SHA256_LEN],
			uint32_t self, struct cs_file *f)
{
	int rc = -EBUSY;

	for (int tries = 0; tries < IMPORT_TRIES; tries++) {
		if (tries)
			backoff(tries);
		if ((rc = import_attempt(d, ns, v, order, n, h, self, f)) != -EBUSY)
			break;
	}
	return rc;
}

struct keyed {
	unsigned char h[CS_SHA256_LEN];
	int i;
};

static int by_key(const void *a, const void *b)
{
	return memcmp(((const struct keyed *)a)->h, ((const struct keyed *)b)->h, CS_SHA256_LEN);
}

int cs_registry_import_many(const char *ns, struct cs_import *v, int n)
{
	unsigned char (*h)[CS_SHA256_LEN] = malloc((n > 0 ? n : 1) * sizeof *h);
	struct keyed *k = malloc((n > 0 ? n : 1) * sizeof *k);
	int *order = malloc((n > 0 ? n : 1) * sizeof *order);
	struct cs_file *f = calloc(n > 0 ? n : 1, sizeof *f);
	struct cs_db *d = NULL;
	uint32_t self;
	int rc;

	if (!h || !k || !order || !f) {
		rc = -ENOMEM;
		goto out;
	}
	if (n <= 0 || (rc = cs_nodes_self(&self)) < 0) {
		rc = n <= 0 ? 0 : rc;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		cs_path_hash(ns, v[i].rel, h[i]);
		memcpy(k[i].h, h[i], CS_SHA256_LEN);
		k[i].i = i;
	}
	qsort(k, n, sizeof *k, by_key);
	for (int i = 0; i < n; i++)
		order[i] = k[i].i;
	if (!(d = cs_db_get())) {
		rc = -EAGAIN;
		goto out;
	}
	const unsigned char (*hc)[CS_SHA256_LEN] = (const unsigned char (*)[CS_SHA256_LEN])h;
	rc = import_tries(d, ns, v, order, n, hc, self, f);
	if ((rc == -EBUSY || rc == -EIO) && n > 1) {
		/* Still losing races, or the server refused one file: each
		 * alone, so that one file never keeps the others out. */
		rc = 0;
		for (int i = 0; i < n; i++) {
			int one = 0, r = import_tries(d, ns, &v[i], &one, 1, &hc[i], self, &f[i]);
			if (r < 0)
				v[i].rc = r;
		}
	}
	cs_db_put(d);
	for (int i = 0; rc == 0 && i < n; i++)
		if (v[i].rc == 0)
			cs_registry_cache(h[i], &f[i], true);
out:
	for (int i = 0; rc < 0 && i < n; i++)
		v[i].rc = rc;
	free(h);
	free(k);
	free(order);
	free(f);
	return rc;
}
