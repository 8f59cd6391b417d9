/*
 * stale.c - remove this node's copies of files whose registry version moved
 * on (overwritten, deleted or renamed on another node).
 *
 * A hit never asks the network, so an old copy left in place would be served
 * for ever; removing it turns the next open into a miss that fetches the
 * current version.  The registry lists which copies are stale and what each
 * looked like when it was installed (size, mtime): a copy is removed only
 * while it still looks exactly like that, because anything else is a local
 * write the journal has not published yet, and throwing it away would lose
 * it.  Each removal holds the store's per-path lock (store.c), so a push or
 * fetch committing the new version at the same moment is not removed in its
 * stead, and reaches the copy through directories opened beneath the
 * namespace directory.  A stale copy that lost to a write made at the same
 * time on another node (publish.c) is not removed but kept, out of the web
 * root, in CS_SPOOL/lost/.  Run by the agent (its sweeper thread and DELETE
 * requests).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry.h"
#include "stale.h"
#include "store.h"

#define SWEEP_BATCH 256

/* One sweep at a time: two would race between checking and removing. */
static pthread_mutex_t sweeping = PTHREAD_MUTEX_INITIALIZER;
static struct cs_stale batch[SWEEP_BATCH];     /* under `sweeping` */

static bool as_installed(const struct stat *st, const struct cs_stale *x)
{
	return S_ISREG(st->st_mode) && (uint64_t)st->st_size == x->size &&
	       cs_mtime_ns(st) == x->mtime_ns;
}

/* Make the directories of path (below the spool, which exists). */
static int make_dirs(char *path)
{
	for (char *p = path + strlen(cs_cfg.spool) + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		int rc = mkdir(path, 0750);
		*p = '/';
		if (rc < 0 && errno != EEXIST)
			return -errno;
	}
	return 0;
}

/* Copy the file open at from to a new file at path (another filesystem). */
static int copy_out(int from, const char *path)
{
	int to = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
	int rc;

	if (to < 0)
		return -errno;
	rc = cs_store_copy(from, to);
	close(to);
	if (rc < 0)
		unlink(path);
	return rc;
}

/*
 * x's copy (name in dir) is the loser of two writes made at once: moved out
 * of the web root into CS_SPOOL/lost/<ns>/<rel>~v<version> rather than
 * removed, and recorded where it is kept.
 */
static int keep_lost(const struct cs_stale *x, int dir, const char *name)
{
	char path[CS_PATH_MAX + 64];
	int rc = 0;

	if ((size_t)snprintf(path, sizeof path, "%s/lost/%s/%s~v%llu", cs_cfg.spool, x->ns,
			     x->rel, (unsigned long long)x->version) >= sizeof path)
		return -ENAMETOOLONG;
	if ((rc = make_dirs(path)) < 0)
		return rc;
	if (renameat(dir, name, AT_FDCWD, path) < 0) {
		if (errno != EXDEV)
			return -errno;
		int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		rc = copy_out(fd, path);
		close(fd);
		if (rc < 0 || unlinkat(dir, name, 0) < 0)
			return rc < 0 ? rc : -errno;
	}
	cs_warn("%s/%s: version %llu lost to a write made at the same time elsewhere; kept "
		"as %s", x->ns, x->rel, (unsigned long long)x->version, path);
	if ((rc = cs_registry_kept(x->conflict, path)) < 0)
		cs_error("%s: kept, but not recorded where (%s)", path, strerror(-rc));
	return 0;
}

/* Remove x's copy if it is as installed: 0 when handled (removed or
 * already gone), 1 when it is a local write not registered yet (left, and
 * its record with it), -errno to try again at the next sweep. */
static int sweep_one(const struct cs_stale *x)
{
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, x->ns);
	char abs[CS_PATH_MAX];
	const char *name;
	struct stat st;
	int root, dir, lock, rc = 0;

	if (!p || !cs_path_rel_valid(x->rel, strlen(x->rel)))
		return 0;       /* not a namespace this node serves: nothing here */
	if ((size_t)snprintf(abs, sizeof abs, "%s/%s", p->dir, x->rel) >= sizeof abs)
		return 0;
	if (lstat(abs, &st) < 0)
		return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
	if (!as_installed(&st, x))
		return 1;       /* a local write not registered yet: its base, kept */
	root = cs_store_root(p);
	if (root < 0)
		return root;
	lock = cs_store_lock(p->name, x->rel);
	dir = cs_store_open_parent(root, x->rel, false, &name);
	/* Look again under the lock: a new version may have just landed. */
	if (dir < 0) {
		rc = errno == ENOENT || errno == EXDEV || errno == ELOOP || errno == ENOTDIR ?
		     0 : -errno;  /* gone, or not a way inside the namespace: no copy of ours */
	} else if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && as_installed(&st, x)) {
		if (x->conflict)
			rc = keep_lost(x, dir, name);
		else if (unlinkat(dir, name, 0) == 0)
			cs_info("removed %s/%s (version %llu superseded)", x->ns, x->rel,
				(unsigned long long)x->version);
		else if (errno != ENOENT)
			rc = -errno;
	}
	cs_store_unlock(lock);
	if (dir >= 0)
		close(dir);
	return rc;
}

int cs_stale_keep_lost(const struct cs_prefix *p, const char *rel, uint64_t file_id)
{
	struct cs_stale x;
	const char *name;
	struct stat st;
	int root, dir, rc;

	if ((root = cs_store_root(p)) < 0)
		return root;
	dir = cs_store_open_parent(root, rel, false, &name);
	if (dir < 0)
		return 0;               /* nothing there to keep */
	rc = fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ? -ENOENT :
	     cs_registry_lost_copy(file_id, &x);
	if (rc == 0) {
		snprintf(x.ns, sizeof x.ns, "%s", p->name);
		snprintf(x.rel, sizeof x.rel, "%s", rel);
		if (as_installed(&st, &x))
			rc = keep_lost(&x, dir, name);
	}
	close(dir);
	return rc == -ENOENT ? 0 : rc;
}

int cs_stale_sweep(void)
{
	int n, handled = 0, rc = 0;

	pthread_mutex_lock(&sweeping);
	n = cs_registry_stale(batch, SWEEP_BATCH);
	if (n < 0)
		rc = n;
	for (int i = 0; i < n; i++) {
		int r = sweep_one(&batch[i]);
		if (r < 0) {
			cs_error_every(60, "%s/%s: cannot remove the superseded copy: %s",
				       batch[i].ns, batch[i].rel, strerror(-r));
			continue;
		}
		/* A copy changed here since it was installed is a write on its
		 * way: its record stays, saying which version the write began
		 * from (publish.c tells a concurrent write by it), until the
		 * write is registered over it. */
		if (r == 1)
			continue;
		r = cs_registry_drop_copy(batch[i].file_id, batch[i].version);
		if (r < 0) {
			rc = r;         /* the registry went away: the rest next time */
			break;
		}
		handled++;
	}
	pthread_mutex_unlock(&sweeping);
	return handled > 0 || rc == 0 ? handled : rc;
}
