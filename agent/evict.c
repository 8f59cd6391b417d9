/*
 * evict.c - the cache quota, CS_CACHE_MAX: a node that serves many files
 * it does not have to keep fills its disk with copies pulled on misses;
 * while its copies take more than the quota, the pulled ones go, least
 * recently used first, and the registry stops naming the node as their
 * holder.  A later read of one simply misses and fetches it again.
 *
 * What counts is what the registry records: the bytes of this node's
 * current copies (one SUM per look).  Only copies pulled on a miss
 * (replicas.pinned = 0) are ever evicted; a copy that counts toward
 * CS_REPLICAS (written, pushed or repaired here) stays even when those
 * alone exceed the quota, which is said once in the log.  Nor is a copy
 * evicted that has a journal entry still on its way (tail.c), that changed
 * here since it was installed (size and mtime, as the stale sweep tells a
 * local write), or that a process has open for writing.
 *
 * Least recently used is told by each copy's access time.  The store sets
 * it when it installs a copy (store.c), so a copy just fetched is not
 * first out; after that it moves only as the filesystem moves it: with the
 * usual relatime, at most once a day (a copy is installed with an access
 * time after its mtime), and not at all under noatime.  The order is thus
 * as fine as the filesystem's access times, no finer.  (The change time is
 * no install time: a chmod or a link moves it too.)
 *
 * Each eviction drops the registry's record first, only while it still is
 * a current pulled copy, then removes the file under the store's per-path
 * lock, only while it is the very file looked at (same inode, as
 * installed, not open for writing).  When the file cannot go, the record
 * is put back; a record never claims a copy that was removed.  memcached's
 * record of the file is then deleted, never rewritten (registry.c).  Run by
 * the agent's evictor thread (agent.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "evict.h"
#include "metrics.h"
#include "registry.h"
#include "store.h"
#include "tail.h"

#define BATCH 128               /* oldest copies taken per look through them */

/* A pulled copy that may be evicted, as found on disk. */
struct cand {
	int64_t used;           /* its access time, ns */
	uint64_t file_id, version, size;
	int64_t mtime_ns;       /* as installed */
	dev_t dev;
	ino_t ino;
	char ns[CS_NAME_MAX];
	char rel[CS_PATH_MAX];
};

/* The BATCH least recently used copies seen so far: a max-heap on used,
 * of pointers into pool. */
struct pick {
	struct cand *heap[BATCH];
	int n;
	struct cand pool[BATCH];
};

static bool over_pinned;        /* said that pinned copies alone exceed it */

bool cs_evict_wanted(void)
{
	return cs_cfg.cache_max > 0 || cs_cfg.cache_max_pct > 0;
}

int cs_evict_quota(uint64_t *quota)
{
	dev_t seen[CS_MAX_PREFIXES];
	uint64_t size = 0;
	int nseen = 0;

	if (!cs_cfg.cache_max_pct) {
		*quota = cs_cfg.cache_max;
		return 0;
	}
	/* Each filesystem once, however many namespaces it holds. */
	for (int i = 0; i < cs_cfg.nprefix; i++) {
		struct statvfs v;
		struct stat st;
		bool dup = false;

		if (stat(cs_cfg.prefix[i].dir, &st) < 0 || statvfs(cs_cfg.prefix[i].dir, &v) < 0)
			return -errno;
		for (int j = 0; j < nseen && !dup; j++)
			dup = seen[j] == st.st_dev;
		if (dup)
			continue;
		seen[nseen++] = st.st_dev;
		size += (uint64_t)v.f_blocks * v.f_frsize;
	}
	*quota = size / 100 * (uint64_t)cs_cfg.cache_max_pct;
	return 0;
}

static bool as_installed(const struct stat *st, uint64_t size, int64_t mtime_ns)
{
	return S_ISREG(st->st_mode) && (uint64_t)st->st_size == size &&
	       cs_mtime_ns(st) == mtime_ns;
}

/* ---- choosing ------------------------------------------------------------ */

static void sift_up(struct pick *pk, int i)
{
	while (i > 0) {
		int up = (i - 1) / 2;
		if (pk->heap[up]->used >= pk->heap[i]->used)
			break;
		struct cand *t = pk->heap[up];
		pk->heap[up] = pk->heap[i];
		pk->heap[i] = t;
		i = up;
	}
}

static void sift_down(struct pick *pk, int i)
{
	for (;;) {
		int big = i, l = 2 * i + 1, r = l + 1;
		if (l < pk->n && pk->heap[l]->used > pk->heap[big]->used)
			big = l;
		if (r < pk->n && pk->heap[r]->used > pk->heap[big]->used)
			big = r;
		if (big == i)
			break;
		struct cand *t = pk->heap[big];
		pk->heap[big] = pk->heap[i];
		pk->heap[i] = t;
		i = big;
	}
}

/* A pulled copy the registry lists: kept among the least recently used
 * when it is on disk as installed (anything else is a local write, or no
 * copy at all, and no candidate). */
static void consider(const struct cs_pulled *c, void *arg)
{
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, c->ns);
	struct pick *pk = arg;
	char abs[CS_PATH_MAX];
	struct stat st;
	struct cand *x;

	if (!p || (size_t)snprintf(abs, sizeof abs, "%s/%s", p->dir, c->rel) >= sizeof abs ||
	    lstat(abs, &st) < 0 || !as_installed(&st, c->size, c->mtime_ns))
		return;
	int64_t used = (int64_t)st.st_atim.tv_sec * 1000000000 + st.st_atim.tv_nsec;
	bool full = pk->n == BATCH;
	if (full && used >= pk->heap[0]->used)
		return;
	/* Taken, in a free place or in that of the most recently used. */
	x = full ? pk->heap[0] : (pk->heap[pk->n] = &pk->pool[pk->n]);
	*x = (struct cand){ .used = used, .file_id = c->file_id, .version = c->version,
			    .size = c->size, .mtime_ns = c->mtime_ns, .dev = st.st_dev,
			    .ino = st.st_ino };
	snprintf(x->ns, sizeof x->ns, "%s", c->ns);
	snprintf(x->rel, sizeof x->rel, "%s", c->rel);
	if (full) {
		sift_down(pk, 0);
	} else {
		pk->n++;
		sift_up(pk, pk->n - 1);
	}
}

static int by_use(const void *a, const void *b)
{
	const struct cand *x = *(struct cand *const *)a, *y = *(struct cand *const *)b;

	return x->used < y->used ? -1 : x->used > y->used;
}

/* The least recently used pulled copies, oldest first, in pk->heap[0, n):
 * how many, or -errno. */
static int pick(struct pick *pk)
{
	int rc;

	pk->n = 0;
	if ((rc = cs_registry_pulled(consider, pk)) < 0)
		return rc;
	qsort(pk->heap, pk->n, sizeof pk->heap[0], by_use);
	return pk->n;
}

/* ---- evicting ------------------------------------------------------------ */

/* x's record goes back: its copy stays.  Straight into the registry, else
 * through this agent's journal, which retries it until it sticks. */
static void put_back(const struct cand *x)
{
	struct cs_held h = { x->file_id, x->version, x->size, x->mtime_ns };
	int rc;

	if (cs_registry_hold(&h, 1, false) == 0)
		return;
	if ((rc = cs_journal_append_held(x->ns, x->rel, &h)) < 0)
		cs_error("%s/%s: kept, but its holder record is neither back in the registry nor "
			 "journaled (%s): newer versions will not replace this copy", x->ns, x->rel,
			 strerror(-rc));
}

/*
 * Remove x's copy in namespace p if it is still the file looked at (same
 * inode, as installed) and no process has it open for writing: 0 removed,
 * -ENOENT when there is none any more, 1 when it stays, another -errno.
 */
static int remove_copy(const struct cs_prefix *p, const struct cand *x)
{
	const char *name;
	struct stat st;
	int root, dir, fd, lock, rc = 1;

	if ((root = cs_store_root(p)) < 0)
		return root;
	lock = cs_store_lock(p->name, x->rel);
	dir = cs_store_open_parent(root, x->rel, false, &name);
	if (dir < 0) {
		rc = errno == ENOENT || errno == ENOTDIR || errno == EXDEV || errno == ELOOP ?
		     -ENOENT : -errno;        /* no way to it inside the namespace: no copy */
		goto out;
	}
	fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOENT ? -ENOENT : 1;
		goto out;
	}
	/* A push that installed the same version meanwhile made a new inode;
	 * a writer that opened it since the look has it open now. */
	if (fstat(fd, &st) == 0 && st.st_dev == x->dev && st.st_ino == x->ino &&
	    as_installed(&st, x->size, x->mtime_ns) && cs_store_writing_now(fd) != 1)
		rc = unlinkat(dir, name, 0) == 0 ? 0 : errno == ENOENT ? -ENOENT : -errno;
	close(fd);
out:
	cs_store_unlock(lock);
	if (dir >= 0)
		close(dir);
	return rc;
}

/* Evict x: 1 done, 0 left alone, -errno when the registry could not be
 * asked (the pass stops). */
static int evict_one(const struct cand *x)
{
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, x->ns);
	int rc;

	/* A write, delete or rename of it, or its holder record, on its way:
	 * the copy is the base of what the registry is about to hear. */
	if (!p || cs_tail_pending_path(x->ns, x->rel))
		return 0;
	rc = cs_registry_evict(x->file_id, x->version);
	if (rc <= 0) {
		if (rc < 0)
			put_back(x);    /* whether the record went is not known */
		return rc;
	}
	rc = remove_copy(p, x);
	if (rc > 0 || (rc < 0 && rc != -ENOENT)) {
		if (rc < 0)
			cs_error_every(60, "%s/%s: cannot evict: %s", x->ns, x->rel, strerror(-rc));
		put_back(x);
		return 0;
	}
	/* Evicted, or gone already: either way this node holds no copy. */
	cs_registry_uncache(x->ns, x->rel);
	if (rc == -ENOENT)
		return 0;
	cs_count(CS_C_EVICTED_FILES, 1);
	cs_count(CS_C_EVICTED_BYTES, x->size);
	cs_info("evicted %s/%s (%" PRIu64 " bytes, version %" PRIu64 "; over CS_CACHE_MAX)",
		x->ns, x->rel, x->size, x->version);
	return 1;
}

/* Say when the copies that may never go take more than the quota alone,
 * and when they no longer do. */
static void note_pinned(uint64_t pinned, uint64_t quota)
{
	bool over = pinned > quota;

	if (over && !over_pinned)
		cs_warn("the copies that count toward CS_REPLICAS here (written, pushed or "
			"repaired: %" PRIu64 " bytes) exceed CS_CACHE_MAX (%" PRIu64 " bytes) on their "
			"own; they are never evicted, only pulled copies are", pinned, quota);
	else if (!over && over_pinned)
		cs_warn("the copies that count toward CS_REPLICAS here are within CS_CACHE_MAX "
			"again (%" PRIu64 " of %" PRIu64 " bytes)", pinned, quota);
	over_pinned = over;
}

int cs_evict_pass(const volatile int *stop)
{
	uint64_t quota, total, pinned;
	struct pick *pk = NULL;
	int evicted = 0, rc;

	if ((rc = cs_evict_quota(&quota)) < 0) {
		cs_error_every(60, "CS_CACHE_MAX: cannot measure the filesystem: %s", strerror(-rc));
		return rc;
	}
	if ((rc = cs_registry_usage(&total, &pinned)) < 0)
		return rc;
	cs_gauge_set(CS_G_CACHE_MAX, (int64_t)quota);
	cs_gauge_set(CS_G_CACHE_BYTES, (int64_t)total);
	note_pinned(pinned, quota);
	if (total <= quota)
		return 0;
	if (!(pk = malloc(sizeof *pk)))
		return -ENOMEM;
	while (total > quota && !*stop) {
		int n = pick(pk), done = 0;

		if (n < 0) {
			rc = n;
			break;
		}
		for (int i = 0; i < n && total > quota && !*stop; i++) {
			int r = evict_one(pk->heap[i]);
			if (r < 0) {
				rc = r;
				break;
			}
			if (r > 0) {
				total -= pk->heap[i]->size < total ? pk->heap[i]->size : total;
				done++;
			}
		}
		evicted += done;
		/* None of the oldest could go now (being written, changed here,
		 * or still in the journal): the next look tries again. */
		if (rc < 0 || done == 0)
			break;
	}
	free(pk);
	cs_gauge_set(CS_G_CACHE_BYTES, (int64_t)total);
	if (evicted > 0)
		cs_debug("cache: %d pulled copies evicted, %" PRIu64 " of %" PRIu64 " bytes held",
			 evicted, total, quota);
	return evicted > 0 || rc == 0 ? evicted : rc;
}
