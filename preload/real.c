/*
 * real.c - finding libc's own definitions of the functions we interpose.
 *
 * All pointers are resolved together with dlsym(RTLD_NEXT, ...) from the
 * constructor, or earlier by whichever wrapper runs first (other libraries'
 * constructors open files before ours runs).  dlsym can allocate, and an
 * allocator can open files, so a wrapper re-entered during resolution gets
 * told to use its raw system-call fallback instead of recursing.  The core's
 * table of libc functions (cs_libc) is pointed at the same definitions, so
 * the core never runs one of our wrappers.
 */
#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

struct cs_real real;

static volatile int resolving;

int cs_real_resolve(void)
{
	if (__atomic_exchange_n(&resolving, 1, __ATOMIC_ACQ_REL))
		return 0;
#define RESOLVE(ret, name, params)                                             \
	if (!real.name)                                                       \
		__atomic_store_n(&real.name,                                  \
				 (ret(*) params)dlsym(RTLD_NEXT, #name),      \
				 __ATOMIC_RELEASE);
#define W(kind, ret, name, params, ...) RESOLVE(ret, name, params)
#include "wrap.def"
#undef W
#define T(kind, ret, name, params, ...) RESOLVE(ret, name, params)
#include "track.def"
#undef T
#define D(ret, name, params) RESOLVE(ret, name, params)
#include "dirs.def"
#undef D
#define CORE(ret, name, params)                                                \
	if (real.name)                                                        \
		__atomic_store_n(&cs_libc.name, real.name, __ATOMIC_RELEASE);
	CS_LIBC(CORE)
#undef CORE
	__atomic_store_n(&resolving, 0, __ATOMIC_RELEASE);
	return 1;
}

int sys_open(int dirfd, const char *path, int flags, mode_t mode)
{
	return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

int sys_stat(int dirfd, const char *path, void *buf, int flags)
{
	/* On x86-64 and aarch64 struct stat is the kernel's layout. */
	return (int)syscall(SYS_newfstatat, dirfd, path, buf, flags);
}

int sys_statx(int dirfd, const char *path, int flags, unsigned mask,
	      struct statx *buf)
{
	return (int)syscall(SYS_statx, dirfd, path, flags, mask, buf);
}

int sys_access(int dirfd, const char *path, int amode, int flags)
{
	return (int)syscall(SYS_faccessat2, dirfd, path, amode, flags);
}

int fopen_flags(const char *mode)
{
	int flags = 0;

	if (!mode)
		return 0;
	switch (mode[0]) {
	case 'w':
		flags = O_WRONLY | O_CREAT | O_TRUNC;
		break;
	case 'a':
		flags = O_WRONLY | O_CREAT | O_APPEND;
		break;
	default:
		flags = O_RDONLY;
	}
	for (const char *p = mode + 1; *p && *p != ','; p++) {
		if (*p == '+')
			flags = (flags & ~(O_WRONLY | O_RDONLY)) | O_RDWR;
		else if (*p == 'x')
			flags |= O_EXCL;
		else if (*p == 'e')
			flags |= O_CLOEXEC;
	}
	return flags;
}

FILE *sys_fopen(const char *path, const char *mode)
{
	int fd = sys_open(AT_FDCWD, path, fopen_flags(mode), 0666);
	FILE *f;

	if (fd < 0)
		return NULL;
	f = fdopen(fd, mode);
	if (!f) {
		int e = errno;
		syscall(SYS_close, fd);
		errno = e;
	}
	return f;
}

DIR *sys_opendir(const char *path)
{
	int fd = sys_open(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	DIR *d;

	if (fd < 0)
		return NULL;
	/* libc's own: fdopendir is ours too (dirs.c), and unresolved it
	 * fails as this does. */
	errno = EAGAIN;
	d = real.fdopendir ? real.fdopendir(fd) : NULL;
	if (!d) {
		int e = errno;
		syscall(SYS_close, fd);
		errno = e;
	}
	return d;
}

int sys_fail_int(void)
{
	errno = EAGAIN;
	return -1;
}

FILE *sys_fail_ptr(void)
{
	errno = EAGAIN;
	return NULL;
}
