/*
 * preload.h - shared by the files of the interposition layer: the table of
 * real libc functions (real.c), the open/stat wrappers (wrap.c) and the
 * write tracking (track.c).
 */
#ifndef CS_PRELOAD_H
#define CS_PRELOAD_H

#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cs.h"

/* Gone from glibc's headers since 2.33, still exported and still called. */
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

struct cs_real {
#define W(kind, ret, name, params, ...) ret (*name) params;
#include "wrap.def"
#undef W
#define T(kind, ret, name, params, ...) ret (*name) params;
#include "track.def"
#undef T
#define D(ret, name, params) ret (*name) params;
#include "dirs.def"
#undef D
};

/* Pointers to the next definition of each symbol (libc's); NULL until
 * resolved.  Never call dlsym at a call site: use real.<name>. */
extern struct cs_real real;

/* Resolve every pointer (and point the core's cs_libc at them); false while
 * a resolution is already under way (dlsym re-entered us), when the caller
 * must use its raw fallback. */
int cs_real_resolve(void);

/* Raw system-call versions for that moment. */
int sys_open(int dirfd, const char *path, int flags, mode_t mode);
int sys_stat(int dirfd, const char *path, void *buf, int flags);
int sys_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *buf);
int sys_access(int dirfd, const char *path, int amode, int flags);
FILE *sys_fopen(const char *path, const char *mode);
DIR *sys_opendir(const char *path);      /* libc's opendir, unlisted */
FILE *sys_fail_ptr(void);
int sys_fail_int(void);
int fopen_flags(const char *mode);

/* 0 before the constructor, 1 active, -1 inert (wrap.c). */
extern volatile int cs_preload_state;
static inline bool cs_active(void)
{
	return cs_preload_state > 0;
}

/* A call on the name path (relative to dirfd) failed with ENOENT: 0 when
 * the agent has brought the cluster's copy here and the call should be
 * repeated, else the errno to report (wrap.c). */
int cs_name_miss(int dirfd, const char *path);
/* The same before a call, for a name the call needs or would hide (a create
 * without truncation): fetched only when it is not here; ENOENT when it is
 * here or nowhere (wrap.c). */
int cs_absent_miss(int dirfd, const char *path);
/* A call that makes the name path (relative to dirfd) failed with ENOENT:
 * its directory may be one the cluster has and this node lacks, made on
 * another node.  0 when the agent has made it here and the call should be
 * repeated, else the errno to report (wrap.c). */
int cs_parent_miss(int dirfd, const char *path);

/* Write tracking (track.c). */
void cs_track_opened(int dirfd, const char *path, int fd);
/* In the constructor: the descriptors inherited open for writing under a
 * prefix, and the exit handler that ends what is still open at exit. */
void cs_track_start(void);
void cs_track_atfork_child(void);

/* Directory listings (dirs.c): opendir's result d for path (relative to
 * dirfd), to be merged with the cluster's entries when it is under a
 * prefix; d itself is returned, with errno as it was. */
DIR *cs_dirs_opened(int dirfd, const char *path, DIR *d);
void cs_dirs_atfork_child(void);

#endif
