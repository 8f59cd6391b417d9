/*
 * wrap.c - the interposed libc functions, generated from wrap.def.
 *
 * Every wrapper first makes the real call.  Only when that fails with ENOENT
 * does ClusterStorage look at the path: make it absolute, normalise it, match
 * it against the prefixes and, if the cluster has the file, fetch it and make
 * the real call again.  So a local hit, and any call outside the prefixes
 * that succeeds, costs the real call plus a test of its result; nothing is
 * looked up, allocated or locked.  Calls that would create a file without
 * truncating it (O_CREAT without O_TRUNC, fopen "a") are the exception: the
 * cluster's copy is fetched first, or the new file would hide it.  A
 * truncating open never fetches: the cluster's copy would be thrown away.
 *
 * The caller's errno is saved on entry and restored whenever the real call's
 * answer is the one returned.  Calls made by libcs itself (cs_inside), before
 * the constructor, or with the library inert go straight to libc.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cs.h"
#include "preload.h"

#define CS_EXPORT __attribute__((visibility("default")))

volatile int cs_preload_state;

static bool needs_mode(int flags)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

/* Where a relative path starts: the cwd or an *at() directory descriptor. */
static int base_dir(int dirfd, char *buf, size_t size)
{
	if (dirfd == AT_FDCWD)
		return getcwd(buf, size) ? 0 : -errno;
	char link[32];
	snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
	ssize_t n = readlink(link, buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return buf[0] == '/' ? 0 : -ENOENT;
}

const struct cs_prefix *cs_locate(int dirfd, const char *path, char *abs,
				  const char **rel)
{
	char base[CS_PATH_MAX];

	if (!path || !path[0])
		return NULL;
	if (path[0] != '/' && base_dir(dirfd, base, sizeof base) < 0)
		return NULL;
	if (cs_path_normalize(base, path, abs, CS_PATH_MAX) < 0)
		return NULL;
	return cs_path_match(&cs_cfg, abs, rel);
}

/*
 * The real call failed with ENOENT.  Returns 0 when the file is now here and
 * the call should be repeated, else the errno to report.
 */
static int miss(int dirfd, const char *path)
{
	char abs[CS_PATH_MAX];
	const char *rel;
	const struct cs_prefix *p;
	int rc = -ENOENT;

	cs_inside++;
	p = cs_locate(dirfd, path, abs, &rel);
	if (p)
		rc = cs_fetch(p, abs, rel);
	cs_inside--;
	if (rc == 0)
		return 0;
	return rc == -EAGAIN || rc == -ENOMEM ? ENOENT : -rc;
}

/* Before a call that creates without truncating: bring the cluster's copy. */
static void before_create(int dirfd, const char *path)
{
	char abs[CS_PATH_MAX];
	const char *rel;
	const struct cs_prefix *p;

	cs_inside++;
	p = cs_locate(dirfd, path, abs, &rel);
	if (p && real.faccessat(AT_FDCWD, abs, F_OK, AT_SYMLINK_NOFOLLOW) < 0 &&
	    errno == ENOENT)
		cs_fetch(p, abs, rel);
	cs_inside--;
}

#define active cs_active

/* Flags that make an open a write whose end (the last close) is journaled. */
#define WRITE_FLAGS (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND)

/*
 * The one wrapper body.  FAILED is the real call's failure test; the second
 * real call only happens on a miss that brought the file.
 * (Staleness checks for hits, from the write path, hook in after a success.)
 */
#define BODY(ret, name, args, FAILED, dirfd, path, flags, fallback)             \
	if (__builtin_expect(!real.name, 0) &&                                  \
	    (!cs_real_resolve() || !real.name))                                 \
		return fallback;                                                \
	int saved = errno;                                                      \
	if (__builtin_expect(((flags) & (O_CREAT | O_TRUNC)) == O_CREAT, 0) &&  \
	    active()) {                                                         \
		before_create(dirfd, path);                                     \
		errno = saved;                                                  \
	}                                                                       \
	ret r = real.name args;                                                 \
	if (__builtin_expect(FAILED, 0) && errno == ENOENT &&                   \
	    !((flags) & O_TRUNC) && active()) {                                 \
		int e = miss(dirfd, path);                                      \
		errno = saved;                                                  \
		if (e == 0)                                                     \
			r = real.name args;                                     \
		else                                                            \
			errno = e;                                              \
	}                                                                       \
	if (__builtin_expect((flags) & WRITE_FLAGS, 0) && !(FAILED) &&          \
	    ((flags) & O_TMPFILE) != O_TMPFILE && active()) {                   \
		int e = errno;                                                  \
		cs_track_opened(dirfd, path, FD_OF(r));                         \
		errno = e;                                                      \
	}                                                                       \
	return r;

/* The descriptor an open returned: an int, or a FILE's. */
#define FD_OF(r) _Generic((r), FILE *: fileno((FILE *)(uintptr_t)(r)), default: (int)(intptr_t)(r))

#define WRAP_V(ret, name, params, args, dirfd, path, flags, fallback)           \
	CS_EXPORT ret name params                                               \
	{                                                                       \
		mode_t mode = 0;                                                \
		if (needs_mode(flags)) {                                        \
			va_list ap;                                             \
			va_start(ap, flags);                                    \
			mode = va_arg(ap, int);                                 \
			va_end(ap);                                             \
		}                                                               \
		BODY(ret, name, args, r < 0, dirfd, path, flags, fallback)      \
	}
#define WRAP_I(ret, name, params, args, dirfd, path, flags, fallback)           \
	CS_EXPORT ret name params                                               \
	{                                                                       \
		BODY(ret, name, args, r < 0, dirfd, path, flags, fallback)      \
	}
#define WRAP_P(ret, name, params, args, dirfd, path, flags, fallback)           \
	CS_EXPORT ret name params                                               \
	{                                                                       \
		BODY(ret, name, args, r == NULL, dirfd, path, flags, fallback)  \
	}
#define W(kind, ...) WRAP_##kind(__VA_ARGS__)
#include "wrap.def"
#undef W

static void atfork_child(void)
{
	cs_core_atfork_child();
	cs_track_atfork_child();
}

__attribute__((constructor)) static void cs_preload_init(void)
{
	int saved = errno;

	cs_real_resolve();
	if (cs_core_init()) {
		pthread_atfork(NULL, NULL, atfork_child);
		cs_preload_state = 1;
		cs_track_scan();
	} else {
		cs_preload_state = -1;
	}
	errno = saved;
}
