/*
 * store.h - putting a file or a directory into this node's namespace
 * directory without ever showing a torn file or leaving the namespace
 * (store.c).
 */
#ifndef CS_STORE_H
#define CS_STORE_H

#include <limits.h>

#include "cs.h"

struct cs_install {
	int fd;                 /* temporary file, locked, empty */
	int dirfd;              /* its directory */
	char tmpname[64];
	char name[NAME_MAX + 1];        /* final name within dirfd */
};

/*
 * Take the right to install rel (a valid relative path) in namespace p: its
 * directory is opened beneath p's directory (made where missing, owned like
 * it), and a temporary file beside the target is locked, so every other
 * thread or process wanting the same path waits.  With replace false,
 * returns 1 when the target appeared meanwhile (nothing to do).  Else 0
 * with *in ready to fill, or -EXDEV (the way leads out of the namespace or
 * through a file), -ETIMEDOUT (busy for wait_ms), another -errno.
 */
int cs_store_begin(const struct cs_prefix *p, const char *rel, bool replace, int wait_ms,
		   struct cs_install *in);
/* Give the file its mtime and rename it into place. */
int cs_store_commit(struct cs_install *in, int64_t mtime_ns);
void cs_store_abort(struct cs_install *in);

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
