/*
 * store.c - putting a file into this node's directory without ever showing a
 * torn one.
 *
 * A fetched file is written to a temporary file beside its target and becomes
 * visible only by rename(2) once complete and verified.  The temporary name
 * is derived from the target name (".cs-<hash>.tmp"), and its holder keeps an
 * flock(2) on it: every process or thread missing the same path meets the same
 * file, exactly one of them transfers, the others wait and then find the
 * installed file.  flock dies with its process, so a fetcher killed midway
 * leaves a temporary file the next one simply takes over.  Directories and
 * files are created with the caller's umask; when root creates them they are
 * handed to the owner of the namespace directory, so workers that dropped
 * privileges can use them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cs.h"

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static void give_to_owner(int dirfd, const char *name, const struct stat *root)
{
	if (root->st_uid != 0 && geteuid() == 0) {
		int r = fchownat(dirfd, name, root->st_uid, root->st_gid,
				 AT_SYMLINK_NOFOLLOW);
		(void)r;
	}
}

/* mkdir -p of dir (absolute); parents below root are handed to its owner. */
static int make_dirs(const char *root, const char *dir)
{
	char buf[CS_PATH_MAX];
	struct stat rst = { 0 };
	size_t rootlen = strlen(root);

	if (strlen(dir) >= sizeof buf)
		return -ENAMETOOLONG;
	strcpy(buf, dir);
	bool have_root = stat(root, &rst) == 0;
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, 0777) == 0) {
			if (have_root && (size_t)(p - buf) > rootlen)
				give_to_owner(AT_FDCWD, buf, &rst);
			if ((size_t)(p - buf) == rootlen && stat(root, &rst) == 0)
				have_root = true;
		} else if (errno != EEXIST) {
			return -errno;
		}
		*p = c;
		if (c == '\0')
			return 0;
	}
}

static void pause_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int begin(const char *root, const char *abs, struct cs_install *in,
		 int deadline_ms, bool replace)
{
	char dir[CS_PATH_MAX];
	const char *slash = strrchr(abs, '/');
	struct stat rst, a, b;
	int64_t deadline = mono_ms() + deadline_ms;
	int wait = 1, rc;

	in->fd = in->dirfd = -1;
	if (!slash || slash[1] == '\0' || (size_t)(slash - abs) >= sizeof dir)
		return -EINVAL;
	memcpy(dir, abs, slash - abs);
	dir[slash - abs] = '\0';
	in->name = slash + 1;
	snprintf(in->tmpname, sizeof in->tmpname, ".cs-%016llx.tmp",
		 (unsigned long long)fnv1a(in->name));

	in->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (in->dirfd < 0 && errno == ENOENT) {
		if ((rc = make_dirs(root, dir)) < 0)
			return rc;
		in->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	}
	if (in->dirfd < 0)
		return -errno;
	/* Only root hands new files to the directory's owner. */
	if (geteuid() != 0 || stat(root, &rst) < 0)
		memset(&rst, 0, sizeof rst);

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
			rc = -errno;
			goto fail;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			/* Ours only if the name still points at what we locked:
			 * a finished fetcher renames its file away while locked. */
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
				rc = 1;
				goto fail;
			}
			/* A dead fetcher's leftovers: start over. */
			if (!fresh && a.st_size != 0 && ftruncate(fd, 0) < 0) {
				rc = -errno;
				unlinkat(in->dirfd, in->tmpname, 0);
				close(fd);
				goto fail;
			}
			give_to_owner(in->dirfd, in->tmpname, &rst);
			in->fd = fd;
			return 0;
		}
		rc = errno == EWOULDBLOCK ? 0 : -errno;
		close(fd);
		if (rc < 0)
			goto fail;
		if (!replace &&
		    faccessat(in->dirfd, in->name, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
			rc = 1;
			goto fail;
		}
		if (mono_ms() >= deadline) {
			rc = -ETIMEDOUT;
			goto fail;
		}
		pause_ms(wait);
		if (wait < 20)
			wait *= 2;
	}
fail:
	close(in->dirfd);
	in->dirfd = -1;
	return rc;
}

int cs_store_begin(const char *root, const char *abs, struct cs_install *in,
		   int deadline_ms)
{
	return begin(root, abs, in, deadline_ms, false);
}

int cs_store_begin_replace(const char *root, const char *abs,
			   struct cs_install *in, int deadline_ms)
{
	return begin(root, abs, in, deadline_ms, true);
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
