/*
 * registry.h - reading the registry (registry.c): a file's record through
 * memcached or straight from MySQL, whether a directory exists, the copies
 * this node holds, and the statements publish.c shares.
 */
#ifndef CS_REGISTRY_H
#define CS_REGISTRY_H

#include "cs.h"
#include "db.h"
#include "record.h"

/* A holder record asked about: file, node and version in; held out. */
struct cs_held_at {
	uint64_t file_id;
	uint32_t node;
	uint64_t version;
	bool held;
};
/* Set each at[i].held: whether the replicas table has a live record of
 * that node holding that version of the file or a later one.  One query;
 * 0 or -EAGAIN (MySQL unreachable). */
int cs_registry_confirm(struct cs_held_at *at, int n);

/*
 * Look (ns, rel) up: memcached, then MySQL (filling memcached).  0 with *f,
 * -ENOENT when not in the cluster (or deleted), -EAGAIN when the registry
 * cannot be reached now.  *cached says whether memcached answered (its
 * holders may be out of date).
 */
int cs_registry_lookup(const char *ns, const char *rel, struct cs_file *f, bool *cached);
/* MySQL's record, bypassing every cache: 0 with *f (which may be a
 * tombstone, f->deleted), -ENOENT when never registered, -EAGAIN. */
int cs_registry_lookup_db(const char *ns, const char *rel, struct cs_file *f);
/* Whether a live file lies below the directory rel: 0 yes, -ENOENT, -EAGAIN. */
int cs_registry_dir(const char *ns, const char *rel);

/* Record that this node holds each copy v[i], as installed (one round trip
 * whatever n): pinned, counting toward CS_REPLICAS (pushed or repaired
 * here), or not (pulled on a miss: a cache CS_CACHE_MAX may evict).  A copy
 * of a version the registry has since moved past is recorded stale, so the
 * sweep removes it.  0 or -EAGAIN. */
int cs_registry_hold(const struct cs_held *v, int n, bool pinned);

/* A copy on this node whose version was superseded (or deleted). */
struct cs_stale {
	uint64_t file_id, version, size;
	int64_t mtime_ns;               /* the copy as it was installed */
	uint64_t conflict;              /* a concurrent write's loser: its record, or 0 */
	char ns[CS_NAME_MAX];
	char rel[CS_PATH_MAX];
};
int cs_registry_stale(struct cs_stale *out, int max);
/* A version lost to a write made at the same time elsewhere. */
struct cs_conflict {
	char ns[CS_NAME_MAX];
	char rel[CS_PATH_MAX];
	uint64_t lost_version, size, winner_version;
	unsigned char sha256[CS_SHA256_LEN];
	char winner[CS_NAME_MAX];       /* the node whose write won */
	char kept_node[CS_NAME_MAX];    /* "" while no holder has kept it yet */
	char kept_path[CS_PATH_MAX + 64];
	char detected[32];              /* "YYYY-MM-DD hh:mm:ss" UTC */
};
/* Each recorded conflict, oldest first, to each(); how many, or -EAGAIN. */
int cs_registry_conflicts(void (*each)(const struct cs_conflict *c, void *arg), void *arg);
/* This node's copy of file_id, when it is of a version lost to a
 * concurrent write: 0 with x's file_id, version, size, mtime_ns and
 * conflict set (not ns, rel); -ENOENT when not; -errno. */
int cs_registry_lost_copy(uint64_t file_id, struct cs_stale *x);
/* This node kept the loser of conflict at path (unless a node did first). */
int cs_registry_kept(uint64_t conflict, const char *path);
/* This node no longer holds the stale copy (file_id, version). */
int cs_registry_drop_copy(uint64_t file_id, uint64_t version);

/* A copy this node holds of a file's current version, as recorded. */
struct cs_copy {
	uint64_t file_id, version, size;        /* the registry's record */
	unsigned char sha256[CS_SHA256_LEN];
	uint64_t held_size;                     /* the copy as it was installed here */
	int64_t held_mtime_ns;
	bool pinned;
	char ns[CS_NAME_MAX];
	char rel[CS_PATH_MAX];
};
/* This node's copies of current versions (live files, records not stale)
 * with a file id above after, in file id order: how many (at most max),
 * or -EAGAIN. */
int cs_registry_copies(uint64_t after, struct cs_copy *out, int max);
/* This node does not hold version of file_id any more (its copy changed
 * here): its record goes, if it still says the copy was installed with
 * size and mtime_ns (a newer record, made meanwhile, stays).  0 or
 * -EAGAIN. */
int cs_registry_unhold(uint64_t file_id, uint64_t version, uint64_t size, int64_t mtime_ns);

/* A file found in this node's directory, and what the registry says of its
 * path. */
struct cs_found {
	const char *rel;        /* in */
	bool known;             /* registered: f is its record (perhaps a tombstone) */
	bool recorded;          /* this node has a record of a copy of it, any version */
	struct cs_file f;       /* id, version, size, mtime_ns, sha256, deleted */
};
/* Look up v[0, n) (paths in namespace ns) in MySQL, in one query: 0, or
 * -EAGAIN. */
int cs_registry_found(const char *ns, struct cs_found *v, int n);

/* ---- the cache quota (evict.c) ---------------------------------------- */

/* The bytes of this node's current copies (held, of the file's current
 * version, the file not deleted), and of those that count toward
 * CS_REPLICAS (pinned).  One query; 0 or -errno. */
int cs_registry_usage(uint64_t *total, uint64_t *pinned);
/* A copy this node pulled, as installed.  ns and rel last only for the
 * call they are passed to. */
struct cs_pulled {
	uint64_t file_id, version, size;
	int64_t mtime_ns;
	const char *ns, *rel;
};
/* Each of this node's current copies pulled on a miss (not pinned), to fn,
 * as the rows arrive.  0 or -errno. */
int cs_registry_pulled(void (*fn)(const struct cs_pulled *c, void *arg), void *arg);
/* Drop this node's record of holding (file_id, version), only while that
 * is a current pulled copy: 1 when it was dropped, 0 when it was no such
 * copy any more (pinned, stale or gone meanwhile), -errno when it is not
 * known whether it was. */
int cs_registry_evict(uint64_t file_id, uint64_t version);

/* A file this node already has, to register (import), and what became of
 * it. */
struct cs_import {
	const char *rel;
	uint64_t size;
	int64_t mtime_ns;
	unsigned char sha256[CS_SHA256_LEN];
	int rc;                 /* out: 0 when it was added or already matched,
				 * -EEXIST when the registry holds other content
				 * (also when another writer registered or deleted
				 * the path meanwhile), or -errno */
};
/*
 * Register v[0, n) (distinct paths in namespace ns), in one transaction
 * of two round trips whatever n.  A batch that loses a race (a duplicate
 * key, a deadlock, Galera's certification) is tried again whole, after a
 * short pause, a few times, then file by file, as is one that the server
 * refuses: one file never fails the others.  Each v[i].rc says what became of it; 0, or the -errno every
 * v[i].rc got (-EAGAIN: the registry unreachable, -ENOMEM).
 */
int cs_registry_import_many(const char *ns, struct cs_import *v, int n);

/* ---- for publish.c --------------------------------------------------- */

#define CS_POS_MC_TTL 300       /* seconds a file's record stays in memcached */
#define CS_NEG_MC_TTL 5         /* ... and "not in the cluster" */
/* Put f (NULL: "not in the cluster") in memcached under path hash h. */
void cs_registry_cache(const unsigned char h[CS_SHA256_LEN], const struct cs_file *f,
		       bool overwrite);
/* Drop (ns, rel)'s record from memcached: its holders changed (copies
 * pushed or repaired), and the next reader takes them from MySQL.  Never
 * overwritten with what this node knows: a newer version may have been
 * cached meanwhile. */
void cs_registry_uncache(const char *ns, const char *rel);
/* The SELECT of one file's record with its current holders (cs_registry_row). */
void cs_registry_sql_file(struct cs_buf *q, const unsigned char h[CS_SHA256_LEN],
			  const char *ns, const char *rel, bool for_update, uint32_t mine);
/* Read one such row: 0, -ENOENT when there is none, -EIO. */
int cs_registry_row(MYSQL_RES *res, struct cs_file *f);
/* The INSERT of a path's first version, held by nobody yet. */
void cs_registry_sql_new_file(struct cs_buf *q, const unsigned char h[CS_SHA256_LEN],
			      const char *ns, const char *rel, uint64_t size, int64_t mtime_ns,
			      const unsigned char sha[CS_SHA256_LEN]);
/* The statement recording that node holds the current version of file_id
 * as installed there (size, mtime): a newer record never goes back to an
 * older one. */
void cs_registry_sql_replica(struct cs_buf *q, uint64_t file_id, uint32_t node,
			     uint64_t version, uint64_t size, int64_t mtime_ns);
/* MySQL's record (d checked out by the caller). */
int cs_registry_db_file(struct cs_db *d, const unsigned char h[CS_SHA256_LEN], const char *ns,
			const char *rel, struct cs_file *f, bool for_update);

#endif
