/*
 * entrypoints.c - every wrapped libc entry point, one never-seen file each:
 * the call must succeed because the file was fetched from a peer, leave the
 * caller's errno alone, and (for opens) read the peer's bytes.  The calls
 * that make a name (mkdir, mkdirat, creat, rename) make one beside the
 * never-seen file, in the directory only the cluster has: they must
 * succeed, with errno alone, and the file is then read as the others.
 *
 * usage: entrypoints --list            names of the files it will ask for
 *        entrypoints <dir>             run; each file <dir>/ep-<name> must
 *                                      hold "ep-<name>\n" in the cluster
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int __xstat(int ver, const char *path, struct stat *buf);
int __xstat64(int ver, const char *path, struct stat64 *buf);
int __lxstat(int ver, const char *path, struct stat *buf);
int __lxstat64(int ver, const char *path, struct stat64 *buf);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *buf, int fl);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *buf, int fl);
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

enum how { FD, STREAM, STAT_ONLY };

struct result {
	int rc;         /* < 0 failed */
	int fd;
	FILE *f;
};

static const char *dir;
static int dfd;

#define P(name) (snprintf(path, sizeof path, "%s/ep-%s", dir, name), path)
#define R(name) (snprintf(path, sizeof path, "ep-%s", name), path)

static struct result call(const char *name)
{
	static char path[4096];
	struct stat st;
	struct stat64 st64;
	struct statx stx;
	struct result r = { .rc = -1, .fd = -1 };
	FILE *f;

#define FDCALL(expr) (r.fd = (expr), r.rc = r.fd < 0 ? -1 : 0, r)
#define STCALL(expr) (r.rc = (expr), r)
	if (!strcmp(name, "open")) return FDCALL(open(P(name), O_RDONLY));
	if (!strcmp(name, "open64")) return FDCALL(open64(P(name), O_RDONLY));
	if (!strcmp(name, "openat")) return FDCALL(openat(dfd, R(name), O_RDONLY));
	if (!strcmp(name, "openat64")) return FDCALL(openat64(dfd, R(name), O_RDONLY));
	if (!strcmp(name, "__open_2")) return FDCALL(__open_2(P(name), O_RDONLY));
	if (!strcmp(name, "__open64_2")) return FDCALL(__open64_2(P(name), O_RDONLY));
	if (!strcmp(name, "__openat_2")) return FDCALL(__openat_2(AT_FDCWD, P(name), O_RDONLY));
	if (!strcmp(name, "__openat64_2")) return FDCALL(__openat64_2(dfd, R(name), O_RDONLY));
	if (!strcmp(name, "open-append")) return FDCALL(open(P(name), O_RDWR | O_CREAT | O_APPEND, 0644));
	if (!strcmp(name, "fopen")) { f = fopen(P(name), "r"); r.f = f; r.rc = f ? 0 : -1; return r; }
	if (!strcmp(name, "fopen64")) { f = fopen64(P(name), "r"); r.f = f; r.rc = f ? 0 : -1; return r; }
	if (!strcmp(name, "fopen-a+")) { f = fopen(P(name), "a+"); r.f = f; r.rc = f ? 0 : -1; return r; }
	if (!strcmp(name, "freopen")) {
		f = freopen(P(name), "r", tmpfile());
		r.f = f; r.rc = f ? 0 : -1; return r;
	}
	if (!strcmp(name, "freopen64")) {
		f = freopen64(P(name), "r", tmpfile());
		r.f = f; r.rc = f ? 0 : -1; return r;
	}
	if (!strcmp(name, "stat")) return STCALL(stat(P(name), &st));
	if (!strcmp(name, "stat64")) return STCALL(stat64(P(name), &st64));
	if (!strcmp(name, "lstat")) return STCALL(lstat(P(name), &st));
	if (!strcmp(name, "lstat64")) return STCALL(lstat64(P(name), &st64));
	if (!strcmp(name, "fstatat")) return STCALL(fstatat(dfd, R(name), &st, 0));
	if (!strcmp(name, "fstatat64")) return STCALL(fstatat64(AT_FDCWD, P(name), &st64, 0));
	if (!strcmp(name, "statx")) return STCALL(statx(AT_FDCWD, P(name), 0, STATX_SIZE, &stx));
	if (!strcmp(name, "__xstat")) return STCALL(__xstat(1, P(name), &st));
	if (!strcmp(name, "__xstat64")) return STCALL(__xstat64(1, P(name), &st64));
	if (!strcmp(name, "__lxstat")) return STCALL(__lxstat(1, P(name), &st));
	if (!strcmp(name, "__lxstat64")) return STCALL(__lxstat64(1, P(name), &st64));
	if (!strcmp(name, "__fxstatat")) return STCALL(__fxstatat(1, dfd, R(name), &st, 0));
	if (!strcmp(name, "__fxstatat64")) return STCALL(__fxstatat64(1, AT_FDCWD, P(name), &st64, 0));
	if (!strcmp(name, "access")) return STCALL(access(P(name), R_OK));
	if (!strcmp(name, "faccessat")) return STCALL(faccessat(dfd, R(name), R_OK, 0));
	if (!strcmp(name, "euidaccess")) return STCALL(euidaccess(P(name), R_OK));
	if (!strcmp(name, "eaccess")) return STCALL(eaccess(P(name), R_OK));
	/* Making a name in a directory this node lacks (name "<call>/in"). */
#define BESIDE(new) (snprintf(path, sizeof path, "%s/ep-%.*s/%s", dir,         \
			      (int)(strchr(name, '/') - name), name, new), path)
#define MADE(expr) (r.rc = (expr) < 0 ? -1 : 0, r)
	if (!strcmp(name, "mkdir/in")) return MADE(mkdir(BESIDE("made"), 0755));
	if (!strcmp(name, "mkdirat/in")) return MADE(mkdirat(dfd, "ep-mkdirat/made", 0755));
	if (!strcmp(name, "creat/in")) {
		int fd = creat(BESIDE("made"), 0644);
		return MADE(fd < 0 ? -1 : close(fd));
	}
	if (!strcmp(name, "rename/in")) {
		char from[4200];
		snprintf(from, sizeof from, "%s/ep-rename-from", dir);
		int fd = open(from, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || close(fd) < 0)
			return r;
		return MADE(rename(from, BESIDE("made")));
	}
	/* Not a link: EINVAL, once the file is here. */
	if (!strcmp(name, "readlink") || !strcmp(name, "readlinkat")) {
		char b[64];
		ssize_t n = name[8] ? readlinkat(dfd, R(name), b, sizeof b)
				    : readlink(P(name), b, sizeof b);
		if (n < 0 && errno == EINVAL) {
			errno = EXDEV;
			r.rc = 0;
		}
		return r;
	}
	if (!strcmp(name, "relative-cwd")) {
		if (chdir(dir) < 0) return r;
		r = FDCALL(open(R(name), O_RDONLY));
		if (chdir("/") < 0) r.rc = -1;
		return r;
	}
	return r;
}

static const char *const names[] = {
	"open", "open64", "openat", "openat64", "__open_2", "__open64_2",
	"__openat_2", "__openat64_2", "open-append", "fopen", "fopen64",
	"fopen-a+", "freopen", "freopen64", "stat", "stat64", "lstat", "lstat64",
	"fstatat", "fstatat64", "statx", "__xstat", "__xstat64", "__lxstat",
	"__lxstat64", "__fxstatat", "__fxstatat64", "access", "faccessat",
	"euidaccess", "eaccess", "relative-cwd", "mkdir/in", "mkdirat/in", "creat/in",
	"rename/in", "readlink", "readlinkat",
};

int main(int argc, char **argv)
{
	int n = sizeof names / sizeof *names, bad = 0;

	if (argc == 2 && !strcmp(argv[1], "--list")) {
		for (int i = 0; i < n; i++)
			printf("ep-%s\n", names[i]);
		return 0;
	}
	if (argc != 2)
		return 2;
	dir = argv[1];
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (dfd < 0) {
		perror(dir);
		return 2;
	}
	for (int i = 0; i < n; i++) {
		char want[300], got[300] = "", path[4096];
		ssize_t len = -1;

		errno = EXDEV;
		struct result r = call(names[i]);
		int e = errno;
		snprintf(want, sizeof want, "ep-%s\n", names[i]);
		snprintf(path, sizeof path, "%s/ep-%s", dir, names[i]);
		if (r.fd >= 0) {
			len = pread(r.fd, got, sizeof got - 1, 0);
			close(r.fd);
		} else if (r.f) {
			rewind(r.f);
			len = fread(got, 1, sizeof got - 1, r.f);
			fclose(r.f);
		} else if (r.rc == 0) {
			int fd = open(path, O_RDONLY);  /* stat-like: now local? */
			len = fd < 0 ? -1 : pread(fd, got, sizeof got - 1, 0);
			if (fd >= 0)
				close(fd);
		}
		if (len >= 0)
			got[len] = '\0';
		if (r.rc < 0 || e != EXDEV || strcmp(got, want) != 0) {
			printf("not ok %d - %s (rc %d, errno %d, read '%s')\n", i + 1,
			       names[i], r.rc, e, got);
			bad++;
		} else {
			printf("ok %d - %s\n", i + 1, names[i]);
		}
	}
	printf("entrypoints: %d checks, %d failed\n", n, bad);
	return bad != 0;
}
