/*
 * store.c - putting a file into this node's directory without ever showing a
 * torn one, and never outside the namespace.
 *
 * A fetched or pushed file is written to an anonymous file (O_TMPFILE) in
 * the namespace directory: nothing a web server could serve, nothing anyone
 * could plant at its name, nothing left behind by a crash.  It becomes
 * visible, complete and verified, in one step: linked at its final name
 * (linkat, which never replaces: a fetch) or linked at a hidden name and
 * renamed over the old copy (a push).  Where O_TMPFILE is not supported the
 * file is made under a random hidden name, exclusively and not followed.
 * An installed file gets mode 0644, whatever the umask of the agent or the
 * writer, and belongs, when root installs it, to the namespace directory's
 * owner; directories made for it get 0755.
 *
 * Nothing is made before the file is complete: the directories on its way
 * are made at commit.  Transfers hold no lock, so a reader never waits for a
 * push in progress; only the short steps that look and then change a name
 * (commit, a sweep's removal, a move) hold a per-path lock in this process,
 * the one process that installs.
 *
 * Every directory is reached by opening it beneath the namespace directory
 * (openat2 RESOLVE_BENEATH), and a missing one is made inside its parent as
 * so opened: no symlink or ".." takes a write outside.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
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
 * that directory's owner: the web server's workers write there too.  True
 * with that owner in *st when what root made must be handed over. */
static bool hand_over(int rootfd, struct stat *st)
{
	int uid = __atomic_load_n(&euid, __ATOMIC_RELAXED);

	if (uid < 0) {
		uid = (int)geteuid();
		__atomic_store_n(&euid, uid, __ATOMIC_RELAXED);
	}
	return uid == 0 && fstat(rootfd, st) == 0 && st->st_uid != 0;
}

static void give_to_owner(int rootfd, int dirfd, const char *name)
{
	struct stat st;

	if (hand_over(rootfd, &st) &&
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
		int made = mkdirat(cur, seg, CS_STORE_DIR_MODE);
		if (made == 0) {
			fchmodat(cur, seg, CS_STORE_DIR_MODE, 0);      /* whatever the umask */
			give_to_owner(rootfd, cur, seg);
		}
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

/* ---- per-path locks --------------------------------------------------- */

#define STRIPES 256
static pthread_mutex_t stripes[STRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static void stripes_init(void)
{
	for (int i = 0; i < STRIPES; i++)
		pthread_mutex_init(&stripes[i], NULL);
}

int cs_store_lock(const char *ns, const char *rel)
{
	uint64_t h = cs_fnv1a(cs_fnv1a(CS_FNV_SEED, ns, strlen(ns) + 1), rel, strlen(rel));
	int k = (int)(h % STRIPES);

	pthread_once(&stripes_once, stripes_init);
	pthread_mutex_lock(&stripes[k]);
	return k;
}

void cs_store_unlock(int lock)
{
	pthread_mutex_unlock(&stripes[lock]);
}

/* ---- installing ----------------------------------------------------- */

/* A random hidden name for a file on its way in. */
static void tmp_name(char out[64])
{
	uint64_t r;

	if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
		r = (uint64_t)cs_clock_ms() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)pthread_self();
	snprintf(out, 64, ".cs-%016llx.tmp", (unsigned long long)r);
}

/* A new regular file of ours in dirfd under a random name (*name). */
static int named_tmp(int dirfd, char name[64])
{
	for (int tries = 0; tries < 16; tries++) {
		tmp_name(name);
		int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC |
					     O_NOCTTY, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd < 0 ? -errno : fd;
	}
	return -EEXIST;
}

int cs_store_writing(int fd)
{
	/* A read lease is granted only when nobody has the file open for
	 * writing; it is given back at once (SIGIO, which a writer opening
	 * meanwhile would send, is ignored: agent.c). */
	if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
		fcntl(fd, F_SETLEASE, F_UNLCK);
		return 0;
	}
	return errno == EAGAIN ? 1 : -1;
}

bool cs_store_exists(const struct cs_prefix *p, const char *rel)
{
	int root = cs_store_root(p), dir;
	const char *name;
	bool there;

	if (root < 0 || (dir = cs_store_open_parent(root, rel, false, &name)) < 0)
		return false;
	there = faccessat(dir, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	close(dir);
	return there;
}

int cs_store_begin(const struct cs_prefix *p, const char *rel, struct cs_install *in)
{
	const char *name;
	int root, dir, fd;

	in->fd = in->tmpdir = -1;
	in->tmpname[0] = '\0';
	if (!cs_path_rel_valid(rel, strlen(rel)) || strlen(rel) >= sizeof in->rel)
		return -EXDEV;
	if ((root = cs_store_root(p)) < 0)
		return root;
	in->root = root;
	snprintf(in->rel, sizeof in->rel, "%s", rel);
	/* A way out (a symlink leading outside, a file on the way) is refused
	 * now, before any byte is taken in; a missing directory is made at
	 * commit. */
	dir = cs_store_open_parent(root, rel, false, &name);
	if (dir < 0 && errno != ENOENT)
		return way_out(errno);
	/* The file is made on the target directory's filesystem when that
	 * directory exists (a namespace may have mounts inside), else on the
	 * namespace directory's. */
	int where = dir >= 0 ? dir : root;
	fd = openat(where, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		fd = named_tmp(where, in->tmpname);     /* no O_TMPFILE here */
		if (fd >= 0) {
			in->tmpdir = dir >= 0 ? dir : fcntl(root, F_DUPFD_CLOEXEC, 0);
			dir = -1;
			if (in->tmpdir < 0) {
				unlinkat(where, in->tmpname, 0);
				close(fd);
				fd = -EMFILE;
			}
		}
	} else if (fd < 0) {
		fd = -errno;
	}
	if (dir >= 0)
		close(dir);
	if (fd < 0)
		return fd;
	in->fd = fd;
	return 0;
}

/* Give the file its final mode, owner and mtime. */
static int finish(struct cs_install *in, int64_t mtime_ns)
{
	const struct timespec ts[2] = {
		{ .tv_nsec = UTIME_NOW },
		{ .tv_sec = mtime_ns / 1000000000, .tv_nsec = mtime_ns % 1000000000 },
	};
	struct stat st;

	if (fchmod(in->fd, CS_STORE_FILE_MODE) < 0)
		return -errno;
	if (hand_over(in->root, &st) && fchown(in->fd, st.st_uid, st.st_gid) < 0)
		return -errno;
	if (mtime_ns >= 0 && futimens(in->fd, ts) < 0)
		return -errno;
	return 0;
}

int cs_store_copy(int from, int to)
{
	char buf[65536];
	loff_t off = 0;
	ssize_t n;

	/* copy_file_range refuses some pairs of filesystems (EXDEV since
	 * Linux 5.19 between different kinds): then by hand, from where it
	 * stopped. */
	while ((n = copy_file_range(from, &off, to, NULL, 1 << 30, 0)) > 0)
		;
	if (n < 0 && errno != EXDEV && errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
		return -errno;
	if (n < 0) {
		for (;;) {
			n = pread(from, buf, sizeof buf, off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			if (n == 0)
				break;
			int rc = cs_write_all(to, buf, (size_t)n);
			if (rc < 0)
				return rc;
			off += n;
		}
	}
	return fsync(to) < 0 ? -errno : 0;
}

/* Copy the whole of in->fd to a new named file in dirfd (the target's
 * directory is on another filesystem than the namespace directory). */
static int copy_to(struct cs_install *in, int dirfd, char name[64])
{
	int fd = named_tmp(dirfd, name);

	if (fd < 0)
		return fd;
	int rc = cs_store_copy(in->fd, fd);
	if (rc < 0) {
		unlinkat(dirfd, name, 0);
		close(fd);
		return rc;
	}
	close(in->fd);
	in->fd = fd;
	return 0;
}

/* Link the anonymous file at name in dirfd; -EEXIST when taken. */
static int link_at(int fd, int dirfd, const char *name)
{
	char proc[48];

	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW) == 0)
		return 0;
	if (errno != ENOENT)
		return -errno;
	/* No /proc: root may link a descriptor itself. */
	return linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0 ? 0 : -errno;
}

int cs_store_commit(struct cs_install *in, int64_t mtime_ns, bool replace)
{
	const unsigned flags = replace ? 0 : RENAME_NOREPLACE;
	const char *name;
	char hidden[64];
	int dir = -1, rc;

	if ((rc = finish(in, mtime_ns)) < 0)
		goto out;
	dir = cs_store_open_parent(in->root, in->rel, true, &name);
	if (dir < 0) {
		rc = way_out(errno);
		goto out;
	}
	if (!in->tmpname[0]) {
		/* Anonymous: linked at its name (a fetch, which replaces
		 * nothing), or at a hidden name for as long as the rename over
		 * the old copy takes (a push). */
		if (!replace) {
			rc = link_at(in->fd, dir, name);
		} else {
			for (int tries = 0; tries < 16; tries++) {
				tmp_name(hidden);
				if ((rc = link_at(in->fd, dir, hidden)) != -EEXIST)
					break;
			}
			if (rc == 0 && renameat(dir, hidden, dir, name) < 0) {
				rc = -errno;
				unlinkat(dir, hidden, 0);
			}
		}
		if (rc != -EXDEV)
			goto out;
		/* On another filesystem than where it was made (a mount came
		 * on the way meanwhile): copied there under a hidden name. */
		if ((rc = copy_to(in, dir, hidden)) < 0)
			goto out;
		in->tmpdir = fcntl(dir, F_DUPFD_CLOEXEC, 0);
		snprintf(in->tmpname, sizeof in->tmpname, "%s", hidden);
		if (in->tmpdir < 0) {
			unlinkat(dir, hidden, 0);
			in->tmpname[0] = '\0';
			rc = -EMFILE;
			goto out;
		}
	}
	/* Named: renamed into place. */
	rc = renameat2(in->tmpdir, in->tmpname, dir, name, flags) == 0 ? 0 : -errno;
	if (rc == -EXDEV && (rc = copy_to(in, dir, hidden)) == 0) {
		unlinkat(in->tmpdir, in->tmpname, 0);
		snprintf(in->tmpname, sizeof in->tmpname, "%s", hidden);
		rc = renameat2(dir, hidden, dir, name, flags) == 0 ? 0 : -errno;
		if (rc < 0)
			unlinkat(dir, hidden, 0);
		in->tmpname[0] = '\0';
	}
	if (rc == 0)
		in->tmpname[0] = '\0';
out:
	if (rc == -EEXIST)
		rc = 1;                 /* a fetch found the file there meanwhile */
	cs_store_abort(in);
	if (dir >= 0)
		close(dir);
	return rc;
}

void cs_store_abort(struct cs_install *in)
{
	if (in->tmpname[0] && in->tmpdir >= 0)
		unlinkat(in->tmpdir, in->tmpname, 0);
	if (in->fd >= 0)
		close(in->fd);
	if (in->tmpdir >= 0)
		close(in->tmpdir);
	in->fd = in->tmpdir = -1;
	in->tmpname[0] = '\0';
}
