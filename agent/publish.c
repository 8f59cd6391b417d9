/*
 * publish.c - new versions and tombstones in the registry.
 *
 * A batch of written files is registered in one transaction of two round
 * trips whatever its size: lock and read the files' rows (in path-hash
 * order, so two batches lock rows in one order), then write every new
 * version and commit.  READ COMMITTED: locking a path not registered yet
 * takes no gap lock, so two batches adding nearby new paths do not
 * deadlock; the second INSERT of one path gets a duplicate key and the whole
 * is tried again.  Registering a version marks every other node's copy
 * stale; their sweeps remove them.  Committed records are set in memcached.
 * A version replaced by a write from a node that held no copy of it was
 * written elsewhere at about the same time: it is recorded as a conflict,
 * never silently dropped (its holders keep it, stale.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "listing.h"
#include "nodes.h"
#include "publish.h"
#include "registry.h"

#define NEW_VERSION (-1)        /* stmt[i] of an existing path: a new version */
#define SAME_BYTES (-2)         /* ... or the same bytes again: none */

/*
 * One attempt at the publish transaction for v[0..n), taken in order[]
 * (by path hash, so two batches lock rows in one order); -EBUSY when it
 * lost a race.  Two round trips whatever n: lock and read the rows, then
 * write and commit.  Each v[i].f is made from what was read and written,
 * with no third read.
 */
static int attempt(struct cs_db *d, struct cs_publish *v, const int *order, int n,
		   const unsigned char (*h)[CS_SHA256_LEN], uint32_t self)
{
	struct cs_buf q = { 0 };
	struct cs_dirset dirs = { 0 };
	MYSQL_RES **res = calloc(n, sizeof *res);
	uint64_t *made = NULL;
	int *stmt = calloc(n, sizeof *stmt), nstmt = 0, rc = 0;

	if (!res || !stmt) {
		rc = -ENOMEM;
		goto fail;
	}
	/* READ COMMITTED: locking a path not registered yet takes no gap lock,
	 * so two batches adding nearby new paths do not deadlock; the second
	 * INSERT of one path gets a duplicate key and the whole is retried. */
	cs_sql_str(&q, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION");
	for (int k = 0; k < n; k++) {
		int i = order[k];
		cs_sql_str(&q, "; ");
		cs_registry_sql_file(&q, h[i], v[i].ns, v[i].rel, true, self);
	}
	if ((rc = cs_db_multi(d, &q, res, n, NULL, 0)) < 0)
		goto fail;

	q.len = 0;
	for (int k = 0; k < n; k++) {
		int i = order[k];
		struct cs_file *f = &v[i].f;
		uint64_t size = v[i].size;
		int64_t mtime_ns = v[i].mtime_ns;

		v[i].lost = 0;
		rc = res[k] ? cs_registry_row(res[k], f) : -EIO;
		if (rc < 0 && rc != -ENOENT)
			goto fail;
		if (rc == -ENOENT) {
			memset(f, 0, sizeof *f);
			stmt[i] = nstmt;        /* its id: this statement's */
			cs_registry_sql_new_file(&q, h[i], v[i].ns, v[i].rel, size, mtime_ns,
						 v[i].sha256);
			cs_sql_fmt(&q, "; INSERT INTO replicas (file_id, node_id, version, size,"
				    " mtime_ns) VALUES (LAST_INSERT_ID(),%" PRIu32 ",1,%" PRIu64
				    ",%" PRId64 "); ", self, size, mtime_ns);
			nstmt += 2;
			cs_dirset_add(&dirs, v[i].ns, v[i].rel);  /* listed from now on */
			f->version = 1;
			continue;
		}
		stmt[i] = SAME_BYTES;
		if (f->deleted || f->size != size ||
		    memcmp(f->sha256, v[i].sha256, CS_SHA256_LEN) != 0) {
			stmt[i] = NEW_VERSION;
			/* This node's copy, the one its write changed, is of an
			 * older version than the one it replaces: that version
			 * was written elsewhere meanwhile, and this write never
			 * saw it.  It is the loser: recorded, and its holders
			 * keep it (stale.c).  A node with no copy at all wrote
			 * without reading (a truncating overwrite, an upload
			 * again): the last writer wins by intent, no loser. */
			if (!f->deleted && f->mine && f->mine < f->version) {
				cs_sql_fmt(&q, "INSERT IGNORE INTO conflicts (file_id, lost_version,"
					    " size, sha256, winner_version, winner_node) VALUES"
					    " (%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",", f->id,
					f->version, f->size);
				cs_sql_hex(&q, f->sha256, CS_SHA256_LEN);
				cs_sql_fmt(&q, ",%" PRIu64 ",%" PRIu32 "); ", f->version + 1, self);
				nstmt++;
				v[i].lost = f->version;
			}
			f->version++;
			cs_sql_fmt(&q, "UPDATE files SET version=%" PRIu64 ", deleted=0,"
				    " size=%" PRIu64 ", mtime_ns=%" PRId64 ", sha256=",
				f->version, size, mtime_ns);
			cs_sql_hex(&q, v[i].sha256, CS_SHA256_LEN);
			cs_sql_fmt(&q, " WHERE id=%" PRIu64 "; UPDATE replicas SET stale=1"
				    " WHERE file_id=%" PRIu64 " AND node_id<>%" PRIu32 "; ",
				f->id, f->id, self);
			nstmt += 2;
			f->nholders = 0;        /* other copies are of older versions now */
		}
		/* else the same bytes again: no new version */
		cs_registry_sql_replica(&q, f->id, self, f->version, size, mtime_ns);
		cs_sql_str(&q, "; ");
		nstmt++;
	}
	if (cs_dirset_sql(&dirs, &q)) {
		cs_sql_str(&q, "; ");
		nstmt++;
	}
	cs_sql_str(&q, "COMMIT");
	nstmt++;
	if (!(made = calloc(nstmt, sizeof *made))) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = cs_db_multi(d, &q, NULL, 0, made, nstmt)) < 0)
		goto fail;
	/* The records as committed. */
	for (int i = 0; i < n; i++) {
		struct cs_file *f = &v[i].f;

		if (stmt[i] >= 0)
			f->id = made[stmt[i]];
		/* The same bytes again keep the version as registered, its mtime
		 * included: copies elsewhere were installed with that one. */
		if (stmt[i] != SAME_BYTES) {
			f->size = v[i].size;
			f->mtime_ns = v[i].mtime_ns;
			memcpy(f->sha256, v[i].sha256, CS_SHA256_LEN);
			f->deleted = false;
		}
		cs_file_add_holder(f, self);
		if (!f->id)
			rc = -EIO;
	}
	goto out;
fail:
	cs_db_rollback(d);
out:
	for (int k = 0; res && k < n; k++)
		if (res[k])
			mysql_free_result(res[k]);
	free(res);
	free(stmt);
	free(made);
	cs_buf_free(&q);
	cs_dirset_free(&dirs);
	return rc;
}

struct keyed {
	unsigned char h[CS_SHA256_LEN];
	int i;
};

static int by_hash(const void *a, const void *b)
{
	return memcmp(((const struct keyed *)a)->h, ((const struct keyed *)b)->h, CS_SHA256_LEN);
}

int cs_publish_many(struct cs_publish *v, int n)
{
	unsigned char (*h)[CS_SHA256_LEN] = malloc(n * sizeof *h);
	struct keyed *k = malloc(n * sizeof *k);
	int *order = malloc(n * sizeof *order);
	struct cs_db *d;
	uint32_t self;
	int rc;

	if (n <= 0 || !h || !k || !order) {
		rc = n <= 0 ? 0 : -ENOMEM;
		goto out;
	}
	if ((rc = cs_nodes_self(&self)) < 0)
		goto out;
	for (int i = 0; i < n; i++) {
		cs_path_hash(v[i].ns, v[i].rel, h[i]);
		memcpy(k[i].h, h[i], CS_SHA256_LEN);
		k[i].i = i;
	}
	qsort(k, n, sizeof *k, by_hash);
	for (int i = 0; i < n; i++)
		order[i] = k[i].i;
	if (!(d = cs_db_get())) {
		rc = -EAGAIN;
		goto out;
	}
	for (int tries = 0; tries < 4; tries++) {
		if (tries)
			cs_db_backoff(tries);
		rc = attempt(d, v, order, n, (const unsigned char (*)[CS_SHA256_LEN])h, self);
		if (rc != -EBUSY)
			break;
	}
	cs_db_put(d);
	for (int i = 0; rc == 0 && i < n; i++) {
		cs_registry_cache(h[i], &v[i].f, true);
		if (v[i].lost)
			cs_warn("%s/%s: version %" PRIu64 ", written elsewhere, was replaced by a "
				"write here that never saw it (two nodes wrote it at once); it is "
				"kept: cs-replicate conflicts", v[i].ns, v[i].rel, v[i].lost);
	}
out:
	free(h);
	free(k);
	free(order);
	return rc == -EBUSY ? -EAGAIN : rc;
}

static int tombstone(struct cs_db *d, const unsigned char h[CS_SHA256_LEN], const char *ns,
		     const char *rel, uint32_t self, struct cs_file *prev)
{
	struct cs_buf q = { 0 };
	int rc;

	if ((rc = cs_db_exec(d, "START TRANSACTION", 17, NULL, false)) < 0)
		return rc;
	rc = cs_registry_db_file(d, h, ns, rel, prev, true);
	if (rc == 0 && prev->deleted)
		rc = -ENOENT;
	if (rc < 0)
		goto fail;
	cs_sql_fmt(&q, "UPDATE files SET version=version+1, deleted=1 WHERE id=%" PRIu64,
		prev->id);
	if ((rc = cs_db_run(d, &q, NULL, false)) < 0)
		goto fail;
	q.len = 0;
	cs_sql_fmt(&q, "UPDATE replicas SET stale=1 WHERE file_id=%" PRIu64
		    " AND node_id<>%" PRIu32, prev->id, self);
	if ((rc = cs_db_run(d, &q, NULL, false)) < 0)
		goto fail;
	q.len = 0;
	cs_sql_fmt(&q, "DELETE FROM replicas WHERE file_id=%" PRIu64 " AND node_id=%" PRIu32,
		prev->id, self);
	if ((rc = cs_db_run(d, &q, NULL, false)) < 0)
		goto fail;
	rc = cs_db_exec(d, "COMMIT", 6, NULL, false);
	if (rc < 0)
		goto fail;
	cs_buf_free(&q);
	return 0;
fail:
	cs_db_rollback(d);
	cs_buf_free(&q);
	return rc;
}

int cs_unpublish(const char *ns, const char *rel, struct cs_file *prev)
{
	unsigned char h[CS_SHA256_LEN];
	struct cs_file now;
	struct cs_db *d;
	uint32_t self;
	int rc, reread = -1;

	if ((rc = cs_nodes_self(&self)) < 0)
		return rc;
	cs_path_hash(ns, rel, h);
	if (!(d = cs_db_get()))
		return -EAGAIN;
	for (int tries = 0; tries < 4; tries++) {
		if (tries)
			cs_db_backoff(tries);
		rc = tombstone(d, h, ns, rel, self, prev);
		if (rc != -EBUSY)
			break;
	}
	if (rc == 0) {
		reread = cs_registry_db_file(d, h, ns, rel, &now, false);
		/* Before the journal's entry is acknowledged: a host here
		 * listing the directory meanwhile must not get the name back
		 * from a listing kept until the next poll of changes. */
		cs_listing_changed(ns, rel);
	}
	cs_db_put(d);
	if (reread == 0)
		cs_registry_cache(h, &now, true);
	return rc == -EBUSY ? -EAGAIN : rc;
}
