/*
 * leftovers.c - the temporary files an agent killed midway left behind.
 *
 * A fetch or a received push writes a temporary file beside its target
 * (store.c: ".cs-<hash>.tmp", held under an flock) and renames it into place
 * when it is complete, or removes it when it is not.  An agent killed in
 * between (kill -9, a crash, the machine going down) leaves the file.  The
 * next install of the same path on this node takes it over, but a path that
 * is never installed here again keeps it for ever: space lost, and a name
 * every listing of that directory shows.  So at start, before any thread of
 * this run can install a file, each namespace directory is walked once and
 * every such file that nobody holds locked is removed.  The walk reads
 * directory entries only (d_type); a file is opened only when its name is a
 * temporary one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cs.h"
#include "leftovers.h"

#define MAX_DEPTH 64

/* The store's temporary names: ".cs-" ... ".tmp". */
static bool temporary(const char *name)
{
	size_t n = strlen(name);

	return n > 8 && strncmp(name, ".cs-", 4) == 0 && strcmp(name + n - 4, ".tmp") == 0;
}

/* Remove name in dir if it is a regular file no one holds locked. */
static int drop(int dir, const char *name)
{
	struct stat a, b;
	int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	int removed = 0;

	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &a) == 0 && S_ISREG(a.st_mode) &&
	    fstatat(dir, name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_ino == b.st_ino &&
	    a.st_dev == b.st_dev) {
		if (unlinkat(dir, name, 0) == 0)
			removed = 1;
		else
			cs_error_every(10, "cannot remove the leftover %s: %s", name, strerror(errno));
	}
	close(fd);
	return removed;
}

/* Walk the directory open at dir (which this takes): files removed. */
static int walk(int dir, int depth)
{
	DIR *d = fdopendir(dir);
	struct dirent *e;
	int removed = 0;

	if (!d) {
		close(dir);
		return 0;
	}
	while ((e = readdir(d))) {
		const char *name = e->d_name;
		unsigned char type = e->d_type;

		if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2])))
			continue;
		if (type == DT_UNKNOWN) {
			struct stat st;
			if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_LNK;
		}
		if (type == DT_REG && temporary(name)) {
			removed += drop(dirfd(d), name);
		} else if (type == DT_DIR && depth < MAX_DEPTH) {
			int sub = openat(dirfd(d), name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				removed += walk(sub, depth + 1);
		}
	}
	closedir(d);
	return removed;
}

int cs_leftovers_sweep(void)
{
	int64_t start = cs_clock_ms();
	int removed = 0;

	for (int i = 0; i < cs_cfg.nprefix; i++) {
		const struct cs_prefix *p = &cs_cfg.prefix[i];
		int dir = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		int n;

		if (dir < 0)
			continue;
		n = walk(dir, 0);
		if (n > 0)
			cs_warn("%s: removed %d temporary file%s an earlier run left (%lld ms)",
				p->dir, n, n == 1 ? "" : "s", (long long)(cs_clock_ms() - start));
		removed += n;
	}
	return removed;
}
