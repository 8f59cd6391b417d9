/*
 * listing.c - what a directory holds in the cluster, for a host listing it.
 *
 * A host's readdir() gives the directory's local entries and then asks the
 * agent for the cluster's (preload/dirs.c), leaving out those it already
 * gave.  The registry answers with one statement of two indexed lookups
 * (sql/schema.sql): the directory's live files by files_parent, and its
 * subdirectories by dirs_parent, each while a live file lies below it.
 *
 * Listings are kept: a directory of 10,000 names costs MariaDB about as
 * much as listing it from disk, and programs list the same directories
 * over and over (a gallery page per request, git on every command).  What
 * keeps a kept listing true is the index's poll (indexer.c), which reads
 * every row changed in the registry four times a second: each changed path
 * forgets the listings of its directory and of every directory above it.
 * A listing is used only while that poll works, and for MAX_AGE_MS at
 * most, so it lags the registry by one poll.  A listing that was being
 * read from MySQL when a change came is not kept.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "listing.h"
#include "record.h"
#include "tail.h"

#define SLOTS 1024
#define MAX_AGE_MS 30000
#define MAX_BYTES (32u << 20)   /* kept listings, all together */

struct kept {
	struct kept *next;
	uint64_t key;
	char *name;                     /* ns NUL rel */
	size_t namelen;
	struct cs_buf body;
	int64_t at_ms;
	bool filling, changed;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct kept *slot[SLOTS];
static size_t kept_bytes;
static int64_t polled_ms;               /* the index's last complete poll */

/* ---- directories of new paths ------------------------------------------ */

void cs_dirset_add(struct cs_dirset *s, const char *ns, const char *rel)
{
	const char *end = strrchr(rel, '/');

	for (; end && end > rel; end = memrchr(rel, '/', (size_t)(end - rel))) {
		size_t n = (size_t)(end - rel);
		char *path;

		if (s->n == s->cap) {
			int cap = s->cap ? s->cap * 2 : 16;
			struct cs_dir_row *v = realloc(s->v, cap * sizeof *v);
			if (!v) {
				s->oom = true;
				return;
			}
			s->v = v;
			s->cap = cap;
		}
		if (!(path = strndup(rel, n))) {
			s->oom = true;
			return;
		}
		s->v[s->n].ns = ns;
		s->v[s->n].path = path;
		cs_path_hash(ns, path, s->v[s->n].h);
		s->n++;
	}
}

static int by_hash(const void *a, const void *b)
{
	return memcmp(((const struct cs_dir_row *)a)->h, ((const struct cs_dir_row *)b)->h,
		      CS_SHA256_LEN);
}

bool cs_dirset_sql(struct cs_dirset *s, struct cs_buf *q)
{
	const char *sep = "";

	if (s->oom)
		q->oom = true;  /* the caller's statement fails whole: retried */
	if (s->n == 0)
		return false;
	qsort(s->v, s->n, sizeof *s->v, by_hash);
	cs_sql_str(q, "INSERT IGNORE INTO dirs (path_hash, namespace, path) VALUES ");
	for (int i = 0; i < s->n; i++) {
		if (i > 0 && memcmp(s->v[i].h, s->v[i - 1].h, CS_SHA256_LEN) == 0)
			continue;
		cs_sql_str(q, sep);
		cs_sql_str(q, "(");
		cs_sql_hex(q, s->v[i].h, CS_SHA256_LEN);
		cs_sql_str(q, ",");
		cs_sql_text(q, s->v[i].ns);
		cs_sql_str(q, ",");
		cs_sql_text(q, s->v[i].path);
		cs_sql_str(q, ")");
		sep = ",";
	}
	return true;
}

void cs_dirset_free(struct cs_dirset *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->v[i].path);
	free(s->v);
	memset(s, 0, sizeof *s);
}

/* ---- the registry's answer ---------------------------------------------- */

static void row(void *arg, MYSQL_ROW r, unsigned long *len)
{
	struct cs_buf *out = arg;

	if (!r[0] || !r[1] || len[1] == 0 || len[1] > NAME_MAX ||
	    memchr(r[1], '\0', len[1]))
		return;         /* no name a directory could hold */
	cs_buf_put(out, r[0][0] == 'd' ? "d" : "f", 1);
	cs_buf_put(out, r[1], len[1]);
	cs_buf_put(out, "", 1);
}

static int query(const char *ns, const char *rel, struct cs_buf *out)
{
	unsigned char h[CS_SHA256_LEN];
	struct cs_buf q = { 0 };
	struct cs_db *d;
	int rc;

	cs_path_hash(ns, rel, h);
	cs_sql_str(&q, "SELECT 'f', SUBSTRING_INDEX(path, '/', -1) FROM files WHERE parent_hash=");
	cs_sql_hex(&q, h, CS_SHA256_LEN);
	cs_sql_str(&q, " AND namespace=");
	cs_sql_text(&q, ns);
	cs_sql_str(&q, " AND deleted=0 UNION ALL SELECT 'd', SUBSTRING_INDEX(d.path, '/', -1)"
		       " FROM dirs d WHERE d.parent_hash=");
	cs_sql_hex(&q, h, CS_SHA256_LEN);
	cs_sql_str(&q, " AND d.namespace=");
	cs_sql_text(&q, ns);
	/* Listed while a live file lies below it: the range of paths that
	 * start "<dir>/" ('0' follows '/'), as cs_registry_dir asks. */
	cs_sql_str(&q, " AND EXISTS (SELECT 1 FROM files f FORCE INDEX (files_dir)"
		       " WHERE f.namespace=d.namespace AND f.path >= CONCAT(d.path, '/')"
		       " AND f.path < CONCAT(d.path, '0') AND f.deleted=0)");
	if (!(d = cs_db_for(&q, &rc)))
		return rc;
	rc = cs_db_each(d, q.s, q.len, row, out);
	cs_db_put(d);
	cs_buf_free(&q);
	if (rc == 0 && out->oom)
		rc = -ENOMEM;
	return rc < 0 ? (rc == -EAGAIN ? -EAGAIN : -EIO) : 0;
}

/* ---- kept listings -------------------------------------------------------- */

static uint64_t key_of(const char *ns, size_t nl, const char *rel, size_t rl)
{
	return cs_fnv1a(cs_fnv1a(CS_FNV_SEED, ns, nl + 1), rel, rl);
}

/* The kept listing of (ns, rel) (under mu), and where it is linked. */
static struct kept **find(uint64_t key, const char *ns, size_t nl, const char *rel, size_t rl)
{
	struct kept **pp = &slot[key % SLOTS];

	for (; *pp; pp = &(*pp)->next) {
		struct kept *k = *pp;
		if (k->key == key && k->namelen == nl + 1 + rl &&
		    memcmp(k->name, ns, nl + 1) == 0 && memcmp(k->name + nl + 1, rel, rl) == 0)
			break;
	}
	return pp;
}

static void unlink_kept(struct kept **pp)
{
	struct kept *k = *pp;

	*pp = k->next;
	kept_bytes -= k->body.cap + k->namelen;
	cs_buf_free(&k->body);
	free(k->name);
	free(k);
}

/* Make room for more (under mu): past MAX_BYTES, forget what is kept. */
static void make_room(void)
{
	if (kept_bytes <= MAX_BYTES)
		return;
	for (int i = 0; i < SLOTS; i++)
		for (struct kept **pp = &slot[i]; *pp;) {
			if ((*pp)->filling)
				pp = &(*pp)->next;
			else
				unlink_kept(pp);
		}
}

void cs_listing_polled(void)
{
	__atomic_store_n(&polled_ms, cs_clock_ms(), __ATOMIC_RELEASE);
}

/* A kept listing is used once a complete poll followed its reading (a
 * change committed while it was read is then forgotten with it), while
 * the polls go on, and for MAX_AGE_MS at most. */
static bool usable(const struct kept *k, int64_t now)
{
	int64_t polled = __atomic_load_n(&polled_ms, __ATOMIC_ACQUIRE);

	return !k->filling && now - k->at_ms < MAX_AGE_MS && polled >= k->at_ms &&
	       now - polled < 1000;
}

void cs_listing_changed(const char *ns, const char *rel)
{
	size_t nl = strlen(ns), rl = strlen(rel);

	pthread_mutex_lock(&mu);
	for (;;) {
		const char *slash = memrchr(rel, '/', rl);
		rl = slash ? (size_t)(slash - rel) : 0;
		struct kept **pp = find(key_of(ns, nl, rel, rl), ns, nl, rel, rl);
		if (*pp && (*pp)->filling)
			(*pp)->changed = true;
		else if (*pp)
			unlink_kept(pp);
		if (rl == 0)
			break;
	}
	pthread_mutex_unlock(&mu);
}

/* ---- answering ---------------------------------------------------------- */

/* Leave out of out[from..) the names this node's journals have not
 * replicated yet. */
static void drop_pending(const char *ns, const char *rel, struct cs_buf *out, size_t from)
{
	char path[CS_PATH_MAX];
	size_t rl = strlen(rel), to = from;

	if (cs_tail_backlog() == 0 || !cs_tail_started() || rl + 1 >= sizeof path)
		return;
	memcpy(path, rel, rl);
	if (rl)
		path[rl++] = '/';
	for (size_t at = from; at < out->len;) {
		const char *name = out->s + at + 1;
		size_t n = strlen(name) + 2;

		if (rl + n - 2 < sizeof path) {
			memcpy(path + rl, name, n - 1);
			if (cs_tail_pending_path(ns, path)) {
				at += n;
				continue;
			}
		}
		memmove(out->s + to, out->s + at, n);
		to += n;
		at += n;
	}
	out->len = to;
}

int cs_listing_get(const char *ns, const char *rel, struct cs_buf *out)
{
	size_t nl = strlen(ns), rl = strlen(rel), from = out->len;
	uint64_t key = key_of(ns, nl, rel, rl);
	int64_t now = cs_clock_ms();
	struct kept **pp, *k = NULL;
	struct cs_buf body = { 0 };
	int rc;

	pthread_mutex_lock(&mu);
	pp = find(key, ns, nl, rel, rl);
	if (*pp && usable(*pp, now)) {
		cs_buf_put(out, (*pp)->body.s, (*pp)->body.len);
		pthread_mutex_unlock(&mu);
		drop_pending(ns, rel, out, from);
		return out->oom ? -ENOMEM : 0;
	}
	if (*pp && !(*pp)->filling)
		unlink_kept(pp);
	/* Read it to keep, unless another asker is reading it now. */
	if (!*pp && (k = calloc(1, sizeof *k)) && (k->name = malloc(nl + 1 + rl + 1))) {
		memcpy(k->name, ns, nl + 1);
		memcpy(k->name + nl + 1, rel, rl + 1);
		k->namelen = nl + 1 + rl;
		k->key = key;
		k->filling = true;
		k->at_ms = now;
		k->next = slot[key % SLOTS];
		slot[key % SLOTS] = k;
		kept_bytes += k->namelen;
	} else if (k) {
		free(k);
		k = NULL;
	}
	pthread_mutex_unlock(&mu);

	rc = query(ns, rel, &body);
	if (rc == 0)
		cs_buf_put(out, body.s, body.len);

	pthread_mutex_lock(&mu);
	if (k) {
		pp = find(key, ns, nl, rel, rl);        /* k, still linked */
		if (rc < 0 || k->changed || body.oom) {
			unlink_kept(pp);
		} else {
			k->body = body;
			memset(&body, 0, sizeof body);
			k->filling = false;
			kept_bytes += k->body.cap;
			make_room();
		}
	}
	pthread_mutex_unlock(&mu);
	cs_buf_free(&body);
	if (rc < 0)
		return rc;
	drop_pending(ns, rel, out, from);
	return out->oom ? -ENOMEM : 0;
}
