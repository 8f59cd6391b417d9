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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "listing.h"
#include "record.h"

#define SLOTS 1024
#define MAX_AGE_MS 30000
#define MAX_BYTES (32u << 20)   /* kept listings, all together */
#define STAMP_SETTLE_NS 2000000000LL

/* A directory's inode and times, when its names were read. */
struct stamp {
	dev_t dev;
	ino_t ino;
	int64_t mtime_ns, ctime_ns;
};

struct kept {
	struct kept *next;
	uint64_t key, gen;
	char *name;                     /* ns NUL rel */
	size_t namelen;
	struct cs_buf body;             /* the registry's entries */
	struct cs_buf rest;             /* ... less this node's, as at rest_at */
	struct stamp rest_at;
	bool has_rest;
	int64_t at_ms;
	bool filling, changed;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct kept *slot[SLOTS];
static size_t kept_bytes;
static int64_t polled_ms;               /* the index's last complete poll */
static uint64_t generation;             /* of the last kept listing made */

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
	rc = cs_db_query_each(&q, row, out);
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

/* Kept listing gen of (ns, rel), still kept (under mu), or NULL. */
static struct kept **find_gen(const char *ns, const char *rel, uint64_t gen)
{
	size_t nl = strlen(ns), rl = strlen(rel);
	struct kept **pp = find(key_of(ns, nl, rel, rl), ns, nl, rel, rl);

	return *pp && (*pp)->gen == gen && !(*pp)->filling ? pp : NULL;
}

static void unlink_kept(struct kept **pp)
{
	struct kept *k = *pp;

	*pp = k->next;
	kept_bytes -= k->body.cap + k->rest.cap + k->namelen;
	cs_buf_free(&k->body);
	cs_buf_free(&k->rest);
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

/* A kept listing is used while the polls go on, and for MAX_AGE_MS at
 * most.  A change committed while it was being read is seen by every poll
 * for OVERLAP_S after (indexer.c), the first of which forgets it: kept, it
 * lags the registry by one poll at most, as a fresh one read by an asker
 * a moment earlier would. */
static bool usable(const struct kept *k, int64_t now)
{
	int64_t polled = __atomic_load_n(&polled_ms, __ATOMIC_ACQUIRE);

	return !k->filling && now - k->at_ms < MAX_AGE_MS && now - polled < 1000;
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

/*
 * The registry's entries of (ns, rel) appended to out, kept or read now;
 * *gen: the kept listing they came from (0 when none is kept).
 */
static int registry_entries(const char *ns, const char *rel, struct cs_buf *out, uint64_t *gen)
{
	size_t nl = strlen(ns), rl = strlen(rel);
	uint64_t key = key_of(ns, nl, rel, rl);
	int64_t now = cs_clock_ms();
	struct kept **pp, *k = NULL;
	struct cs_buf body = { 0 };
	int rc;

	*gen = 0;
	pthread_mutex_lock(&mu);
	pp = find(key, ns, nl, rel, rl);
	if (*pp && usable(*pp, now)) {
		cs_buf_put(out, (*pp)->body.s, (*pp)->body.len);
		*gen = (*pp)->gen;
		pthread_mutex_unlock(&mu);
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
		k->gen = ++generation;
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
			*gen = k->gen;
			make_room();
		}
	}
	pthread_mutex_unlock(&mu);
	cs_buf_free(&body);
	return rc < 0 ? rc : out->oom ? -ENOMEM : 0;
}

/* ---- leaving out what the host lists itself --------------------------- */

/* What a directory looked like: unchanged, it holds the same names. */
static void stamp_of(const struct stat *st, struct stamp *s)
{
	s->dev = st->st_dev;
	s->ino = st->st_ino;
	s->mtime_ns = st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
	s->ctime_ns = st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
}

static bool same_stamp(const struct stamp *a, const struct stamp *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->mtime_ns == b->mtime_ns &&
	       a->ctime_ns == b->ctime_ns;
}

/* A name's key in local_names' set: never 0, which marks a free slot. */
static uint64_t name_key(const char *name)
{
	return cs_fnv1a(CS_FNV_SEED, name, strlen(name)) | 1;
}

/* The names in directory fd, hashed into a set (open addressing, 0 free;
 * *cap a power of two).  NULL when it cannot be read. */
static uint64_t *local_names(int fd, size_t *cap)
{
	DIR *d = fdopendir(fd);
	struct dirent *e;
	uint64_t *set = NULL;
	size_t n = 0;

	*cap = 0;
	if (!d) {
		close(fd);
		return NULL;
	}
	while ((e = readdir(d))) {
		uint64_t h = name_key(e->d_name);
		if ((n + 1) * 2 > *cap) {
			size_t c = *cap ? *cap * 2 : 1024;
			uint64_t *t = calloc(c, sizeof *t);
			if (!t) {
				free(set);
				closedir(d);
				return NULL;
			}
			for (size_t i = 0; i < *cap; i++) {
				size_t j = set[i] & (c - 1);
				if (!set[i])
					continue;
				while (t[j])
					j = (j + 1) & (c - 1);
				t[j] = set[i];
			}
			free(set);
			set = t;
			*cap = c;
		}
		size_t j = h & (*cap - 1);
		while (set[j] && set[j] != h)
			j = (j + 1) & (*cap - 1);
		if (!set[j])
			n++;
		set[j] = h;
	}
	closedir(d);
	return set;
}

static bool in_set(const uint64_t *set, size_t cap, const char *name)
{
	uint64_t h = name_key(name);

	for (size_t j = h & (cap - 1); set[j]; j = (j + 1) & (cap - 1))
		if (set[j] == h)
			return true;
	return false;
}

/*
 * Leave out of out[from..) the names the directory holds on this node's
 * disk: the host gives those from its own readdir, so a directory whose
 * entries are all here costs it no more than the round trip.  The
 * remainder is kept with the kept listing gen, for as long as the directory
 * looks the same (inode, mtime and ctime); not when it changed within the
 * last STAMP_SETTLE_NS, which a change in the same clock tick could leave
 * looking the same.  (A name that comes or goes here meanwhile the host's
 * own set of names sorts out: it gives each name once.)
 */
static void drop_local(const struct cs_prefix *p, const char *rel, struct cs_buf *out,
		       size_t from, uint64_t gen)
{
	char path[CS_PATH_MAX];
	struct stamp now_stamp;
	struct kept **pp;
	struct stat st;
	uint64_t *set;
	size_t cap, to = from;
	int fd;

	if ((size_t)snprintf(path, sizeof path, "%s%s%s", p->dir, *rel ? "/" : "", rel) >=
	    sizeof path)
		return;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return;         /* nothing here: every entry is the cluster's */
	}
	stamp_of(&st, &now_stamp);
	pthread_mutex_lock(&mu);
	pp = gen ? find_gen(p->name, rel, gen) : NULL;
	if (pp && (*pp)->has_rest && same_stamp(&(*pp)->rest_at, &now_stamp)) {
		out->len = from;
		cs_buf_put(out, (*pp)->rest.s, (*pp)->rest.len);
		pthread_mutex_unlock(&mu);
		close(fd);
		return;
	}
	pthread_mutex_unlock(&mu);

	if (!(set = local_names(fd, &cap)))
		return;
	for (size_t at = from; at < out->len;) {
		const char *name = out->s + at + 1;
		size_t n = strlen(name) + 2;

		if (!in_set(set, cap, name)) {
			memmove(out->s + to, out->s + at, n);
			to += n;
		}
		at += n;
	}
	out->len = to;
	free(set);

	struct timespec real;
	clock_gettime(CLOCK_REALTIME, &real);
	int64_t settled = real.tv_sec * 1000000000LL + real.tv_nsec - STAMP_SETTLE_NS;
	if (!gen || now_stamp.mtime_ns > settled || now_stamp.ctime_ns > settled)
		return;
	pthread_mutex_lock(&mu);
	if ((pp = find_gen(p->name, rel, gen))) {
		struct kept *k = *pp;
		kept_bytes -= k->rest.cap;
		cs_buf_clear(&k->rest);
		cs_buf_put(&k->rest, out->s + from, out->len - from);
		k->has_rest = !k->rest.oom;
		k->rest_at = now_stamp;
		kept_bytes += k->rest.cap;
		make_room();
	}
	pthread_mutex_unlock(&mu);
}

int cs_listing_get(const char *ns, const char *rel, struct cs_buf *out)
{
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, ns);
	size_t from = out->len;
	uint64_t gen;
	int rc;

	if (!p)
		return 0;
	rc = registry_entries(ns, rel, out, &gen);
	if (rc == 0)
		drop_local(p, rel, out, from, gen);
	return rc < 0 ? rc : out->oom ? -ENOMEM : 0;
}
