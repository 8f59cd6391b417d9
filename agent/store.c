/*
 * store.c - putting a file into this node's directory without ever showing a
 * torn one, and never outside the namespace.
 *
 * A fetched or pushed file is written to a temporary file beside its target
 * and becomes visible only by rename(2) once complete and verified.  The
 * temporary name is derived from the target name (".cs-<hash>.tmp"), and its
 * holder keeps an flock(2) on it: every thread or process installing the
 * same path meets the same file, exactly one of them writes, the others wait
 * and then find the installed file.  flock dies with its holder, so a writer
 * killed midway leaves a temporary file the next one simply takes over.
 *
 * Every directory is reached by opening it beneath the namespace directory
 * (openat2 RESOLVE_BENEATH), and a missing one is made inside its parent as
 * so opened: no symlink or ".." takes a write outside.  When root makes
 * directories and files they are handed to the namespace directory's owner,
 * so the web server's workers can use them.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

#define DIR_FLAGS (O_PATH | O_DIRECTORY | O_CLOEXEC)

int cs_store_open_beneath(int dirfd, const char *rel, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);

	if (fd >= 0 || errno != ENOSYS)
		return (int)fd;

	char buf[CS_PATH_MAX];
	int cur = dup(dirfd);
	snprintf(buf, sizeof buf, "%s", rel);
	for (char *seg = buf, *slash; cur >= 0; seg = slash + 1) {
		slash = strchr(seg, '/');
		if (slash)
			*slash = '\0';
		int next = openat(cur, seg, (slash ? O_PATH | O_DIRECTORY : flags) |
					    O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(cur);
		errno = e;
		cur = next;
		if (!slash)
			break;
	}
	return cur;
}

/* Each namespace directory, opened once (O_PATH): a miss opens nothing it
 * need not.  Its descriptor + 1: 0 until first used. */
static int roots[CS_MAX_PREFIXES];
static int euid = -1;           /* geteuid(), taken by whichever thread first needs it */

int cs_store_root(const struct cs_prefix *p)
{
	int i = (int)(p - cs_cfg.prefix), fd;

	if (i < 0 || i >= CS_MAX_PREFIXES)
		return -EINVAL;
	fd = __atomic_load_n(&roots[i], __ATOMIC_ACQUIRE) - 1;
	if (fd < 0) {
		int none = 0;
		if ((fd = open(p->dir, DIR_FLAGS)) < 0)
			return -errno;
		if (!__atomic_compare_exchange_n(&roots[i], &none, fd + 1, false, __ATOMIC_ACQ_REL,
						 __ATOMIC_ACQUIRE)) {
			close(fd);
			fd = none - 1;
		}
	}
	return fd;
}

/* When root makes something below the namespace directory, it belongs to
 * that directory's owner: the web server's workers write there too. */
static void give_to_owner(int rootfd, int dirfd, const char *name)
{
	int uid = __atomic_load_n(&euid, __ATOMIC_RELAXED);
	struct stat st;

	if (uid < 0) {
		uid = (int)geteuid();
		__atomic_store_n(&euid, uid, __ATOMIC_RELAXED);
	}
	if (uid == 0 && fstat(rootfd, &st) == 0 && st.st_uid != 0 &&
	    fchownat(dirfd, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
		cs_error_every(10, "chown %s: %s", name, strerror(errno));
}

int cs_store_open_parent(int rootfd, const char *rel, bool create, const char **name)
{
	const char *slash = strrchr(rel, '/');
	char dir[CS_PATH_MAX];
	int cur, next;

	*name = slash ? slash + 1 : rel;
	if (!slash)
		return fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
	if ((size_t)(slash - rel) >= sizeof dir) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(dir, rel, slash - rel);
	dir[slash - rel] = '\0';
	cur = cs_store_open_beneath(rootfd, dir, DIR_FLAGS);
	if (cur >= 0 || errno != ENOENT || !create)
		return cur;

	cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
	for (char *seg = dir, *end = dir; cur >= 0; end++) {
		if (*end != '/' && *end != '\0')
			continue;
		char c = *end;
		*end = '\0';
		int made = mkdirat(cur, seg, 0777);
		if (made == 0)
			give_to_owner(rootfd, cur, seg);
		next = made == 0 || errno == EEXIST ?
		       cs_store_open_beneath(rootfd, dir, DIR_FLAGS) : -1;
		int e = errno;
		close(cur);
		errno = e;
		cur = next;
		if (c == '\0')
			break;
		*end = '/';
		seg = end + 1;
	}
	return cur;
}

static int way_out(int e)
{
	return e == EXDEV || e == ELOOP || e == ENOTDIR ? -EXDEV : -e;
}

int cs_store_mkdir(const struct cs_prefix *p, const char *rel)
{
	char path[CS_PATH_MAX];
	const char *name;
	int root = cs_store_root(p), dir, rc = 0;

	if (root < 0)
		return root;
	/* The directory itself is the last segment of "rel/x". */
	if ((size_t)snprintf(path, sizeof path, "%s/x", rel) >= sizeof path)
		return -ENAMETOOLONG;
	dir = cs_store_open_parent(root, path, true, &name);
	if (dir < 0)
		rc = way_out(errno);
	else
		close(dir);
	return rc;
}

static uint64_t name_hash(const char *s)
{
	return cs_fnv1a(CS_FNV_SEED, s, strlen(s));
}

static void pause_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* With the parent open: lock the temporary file (see cs_store_begin). */
static int take(int root, struct cs_install *in, bool replace, int64_t deadline)
{
	struct stat a, b;
	int wait = 1, rc;

	for (;;) {
		/* Usually nobody else wants this file: creating the temporary
		 * file exclusively proves it is ours, with no check to make. */
		int fd = openat(in->dirfd, in->tmpname,
				O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0666);
		bool fresh = fd >= 0;
		if (!fresh && errno == EEXIST)
			fd = openat(in->dirfd, in->tmpname,
				    O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
		if (fd < 0) {
			if (errno == ENOENT)
				continue;       /* renamed away between the two opens */
			return -errno;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			/* Ours only if the name still points at what we locked:
			 * a finished writer renames its file away while locked. */
			if (!fresh &&
			    (fstat(fd, &a) < 0 ||
			     fstatat(in->dirfd, in->tmpname, &b, AT_SYMLINK_NOFOLLOW) < 0 ||
			     a.st_ino != b.st_ino || a.st_dev != b.st_dev)) {
				close(fd);
				continue;
			}
			if (!replace &&
			    faccessat(in->dirfd, in->name, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
				unlinkat(in->dirfd, in->tmpname, 0);
				close(fd);
				return 1;
			}
			/* A dead writer's leftovers: start over. */
			if (!fresh && a.st_size != 0 && ftruncate(fd, 0) < 0) {
				rc = -errno;
				unlinkat(in->dirfd, in->tmpname, 0);
				close(fd);
				return rc;
			}
			give_to_owner(root, in->dirfd, in->tmpname);
			in->fd = fd;
			return 0;
		}
		rc = errno == EWOULDBLOCK ? 0 : -errno;
		close(fd);
		if (rc < 0)
			return rc;
		if (!replace && faccessat(in->dirfd, in->name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
			return 1;
		if (cs_clock_ms() >= deadline)
			return -ETIMEDOUT;
		pause_ms(wait);
		if (wait < 20)
			wait *= 2;
	}
}

int cs_store_begin(const struct cs_prefix *p, const char *rel, bool replace, int wait_ms,
		   struct cs_install *in)
{
	int64_t deadline = cs_clock_ms() + wait_ms;
	const char *name;
	int root, rc;

	in->fd = in->dirfd = -1;
	if (!cs_path_rel_valid(rel, strlen(rel)))
		return -EXDEV;
	if ((root = cs_store_root(p)) < 0)
		return root;
	in->dirfd = cs_store_open_parent(root, rel, true, &name);
	if (in->dirfd < 0)
		return way_out(errno);
	snprintf(in->name, sizeof in->name, "%s", name);
	snprintf(in->tmpname, sizeof in->tmpname, ".cs-%016llx.tmp",
		 (unsigned long long)name_hash(in->name));
	rc = take(root, in, replace, deadline);
	if (rc != 0) {
		close(in->dirfd);
		in->dirfd = -1;
	}
	return rc;
}

int cs_store_commit(struct cs_install *in, int64_t mtime_ns)
{
	struct timespec ts[2] = {
		{ .tv_nsec = UTIME_NOW },
		{ .tv_sec = mtime_ns / 1000000000, .tv_nsec = mtime_ns % 1000000000 },
	};
	int rc = 0;

	if (mtime_ns >= 0 && futimens(in->fd, ts) < 0)
		rc = -errno;
	if (rc == 0 && renameat(in->dirfd, in->tmpname, in->dirfd, in->name) < 0)
		rc = -errno;
	if (rc < 0)
		unlinkat(in->dirfd, in->tmpname, 0);
	close(in->fd);
	close(in->dirfd);
	in->fd = in->dirfd = -1;
	return rc;
}

void cs_store_abort(struct cs_install *in)
{
	if (in->fd >= 0) {
		unlinkat(in->dirfd, in->tmpname, 0);
		close(in->fd);
	}
	if (in->dirfd >= 0)
		close(in->dirfd);
	in->fd = in->dirfd = -1;
}
