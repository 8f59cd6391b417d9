/*
 * store.h - putting a file or a directory into this node's namespace
 * directory without ever showing a torn file or leaving the namespace
 * (store.c).
 */
#ifndef CS_STORE_H
#define CS_STORE_H

#include <limits.h>

#include "cs.h"

#define CS_STORE_FILE_MODE 0644  /* every installed file, whatever the umask */
#define CS_STORE_DIR_MODE 0755   /* every directory made for one */

struct cs_install {
	int fd;                 /* the new file, not visible yet; -1: none */
	int root;               /* the namespace directory (the store's) */
	int tmpdir;             /* where a named temporary file lives; -1: none */
	char tmpname[64];       /* its name; "" for an anonymous one (O_TMPFILE) */
	char rel[CS_PATH_MAX];  /* the target */
};

/*
 * Start installing rel (a valid relative path) in namespace p: *in gets an
 * empty file to fill, which nobody can see or reach by a name.  Nothing is
 * made on the way to rel yet.  0, -EXDEV (rel is no path inside a
 * namespace), another -errno.
 */
int cs_store_begin(const struct cs_prefix *p, const char *rel, struct cs_install *in);
/*
 * Make in's file visible at its target, with mode CS_STORE_FILE_MODE and
 * mtime_ns, the directories on the way made where missing: over what is
 * there with replace, else only if nothing is (1 when something is: ours is
 * dropped).  The caller holds the path's lock.  0, 1, -EXDEV (the way leads
 * out of the namespace or through a file), another -errno.  *in is released
 * either way.
 */
int cs_store_commit(struct cs_install *in, int64_t mtime_ns, bool replace);
/* Drop in's file (released; nothing of it stays). */
void cs_store_abort(struct cs_install *in);
/* Copy all of the file open at from (from offset 0) to to, and fsync it:
 * 0 or -errno.  Works between any two filesystems. */
int cs_store_copy(int from, int to);
/*
 * Whether a process has the file open at fd (read-only) open for writing
 * now: what is on disk may then be half of what it is writing.  1 yes, 0 no,
 * -1 when the kernel cannot say (neither the file's owner nor CAP_LEASE, or
 * a filesystem without leases).  Replication waits for such a writer; the
 * cache quota leaves such a copy alone.
 */
int cs_store_writing(int fd);
/* Whether anything is at rel in namespace p (not followed). */
bool cs_store_exists(const struct cs_prefix *p, const char *rel);

/* The per-path lock for the steps that look at a name and then change it
 * (commit, a sweep's removal, a move): its token for cs_store_unlock.
 * Held for no transfer, only for such short steps. */
int cs_store_lock(const char *ns, const char *rel);
void cs_store_unlock(int lock);

/* Directory rel of namespace p, made beneath p's directory where missing
 * (owned like it): 0, -EXDEV, or another -errno. */
int cs_store_mkdir(const struct cs_prefix *p, const char *rel);
/* Open rel below dirfd with flags, refusing any way out of it (openat2
 * RESOLVE_BENEATH, or a walk without symlinks where that is missing). */
int cs_store_open_beneath(int dirfd, const char *rel, int flags);
/* The namespace directory p, O_PATH, opened once and kept (the caller
 * does not close it); -errno. */
int cs_store_root(const struct cs_prefix *p);
/* The directory holding rel, opened beneath rootfd; with create, missing
 * directories are made (each inside its parent as opened beneath rootfd).
 * *name gets rel's last segment.  -1 with errno: EXDEV, ELOOP or ENOTDIR
 * when the way leads out or through a file. */
int cs_store_open_parent(int rootfd, const char *rel, bool create, const char **name);

#endif
