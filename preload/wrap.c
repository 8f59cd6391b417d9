/*
 * wrap.c - the interposed libc functions, generated from wrap.def.
 *
 * Every wrapper first makes the real call.  Only when that fails with ENOENT
 * does ClusterStorage look at the path: make it absolute, normalise it and
 * match it against the prefixes; look the name up in the index the agent
 * publishes (a name no node ever had is answered ENOENT right here, with no
 * round trip); and otherwise ask this node's agent over its local socket to
 * make it present, repeating the real call once it has.  So a local hit, and
 * any call outside the prefixes that succeeds, costs the real call plus a
 * test of its result; nothing is looked up, allocated or locked.  Calls that
 * would create a file without truncating it (O_CREAT without O_TRUNC, fopen
 * "a") are the exception: the cluster's copy is fetched first, or the new
 * file would hide it.  A truncating open never fetches: the cluster's copy
 * would be thrown away.  A call that makes a name (O_CREAT, mkdir, the
 * target of a rename or link) and fails with ENOENT asks for its directory:
 * one made on another node is made here, and the call repeated.
 *
 * The answers: the agent installed it (the real call again), the cluster has
 * no such name (ENOENT), or it has the name but cannot deliver it now (EIO,
 * which web servers answer with a 5xx that clients and caches retry: a 404
 * always means the file does not exist).  With no agent running, a name the
 * index knows is EIO and one it does not is ENOENT, at once.
 *
 * The caller's errno is saved on entry and restored whenever the real call's
 * answer is the one returned.  Before the constructor, or with the library
 * inert, calls go straight to libc.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "cs.h"
#include "preload.h"

#define CS_EXPORT __attribute__((visibility("default")))

volatile int cs_preload_state;

static bool needs_mode(int flags)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

/* Ask the agent for a name under p that the real call did not find; the
 * errno to report, or 0 when it is here now. */
static int ask_agent(const struct cs_prefix *p, const char *rel)
{
	enum cs_index_answer known;
	int rc;

	known = cs_index_lookup(p->name, rel);
	if (known == CS_INDEX_ABSENT || !cs_path_rel_valid(rel, strlen(rel)))
		return ENOENT;          /* a name the cluster refuses: it has none */
	rc = cs_client_present(p->name, rel);
	if (rc == 0)
		return 0;
	if (rc == -ENOENT || (rc == -ECONNREFUSED && known == CS_INDEX_NONE))
		return ENOENT;
	return EIO;
}

int cs_name_miss(int dirfd, const char *path)
{
	char abs[CS_PATH_MAX];
	const char *rel;
	const struct cs_prefix *p = cs_path_locate(dirfd, path, abs, &rel);

	return p ? ask_agent(p, rel) : ENOENT;
}

int cs_parent_miss(int dirfd, const char *path)
{
	char abs[CS_PATH_MAX];
	const char *rel, *slash;
	const struct cs_prefix *p = cs_path_locate(dirfd, path, abs, &rel);

	if (!p || !(slash = strrchr(rel, '/')))
		return ENOENT;  /* in the namespace directory itself, which is not made */
	abs[slash - abs] = '\0';       /* rel points into abs: now its directory */
	return ask_agent(p, rel);
}

int cs_absent_miss(int dirfd, const char *path)
{
	char abs[CS_PATH_MAX];
	const char *rel;
	const struct cs_prefix *p = cs_path_locate(dirfd, path, abs, &rel);

	if (p && real.faccessat(AT_FDCWD, abs, F_OK, AT_SYMLINK_NOFOLLOW) < 0 &&
	    errno == ENOENT)
		return ask_agent(p, rel);
	return ENOENT;
}

#define active cs_active

/* Flags that make an open a write whose end (the last close) is journaled. */
#define WRITE_FLAGS (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND)

/* mkdir's, as an open's would say it: creates a name (O_CREAT) and never
 * takes the cluster's copy of it (O_TRUNC); a directory (O_DIRECTORY, as
 * O_TMPFILE's), so no write to track. */
#define MAKES_DIR (O_CREAT | O_TRUNC | O_DIRECTORY)

/*
 * The one wrapper body.  FAILED is the real call's failure test; the second
 * real call only happens on a miss that brought the file.
 */
#define BODY(ret, name, args, FAILED, dirfd, path, flags, fallback)             \
	if (__builtin_expect(!real.name, 0) &&                                  \
	    (!cs_real_resolve() || !real.name))                                 \
		return fallback;                                                \
	int saved = errno;                                                      \
	if (__builtin_expect(((flags) & (O_CREAT | O_TRUNC)) == O_CREAT, 0) &&  \
	    active()) {                                                         \
		cs_absent_miss(dirfd, path); /* the cluster's copy first */    \
		errno = saved;                                                  \
	}                                                                       \
	ret r = real.name args;                                                 \
	if (__builtin_expect(FAILED, 0) && errno == ENOENT && active()) {       \
		int e = (flags) & O_TRUNC ? ENOENT : cs_name_miss(dirfd, path); \
		if (e == ENOENT && ((flags) & O_CREAT))                         \
			e = cs_parent_miss(dirfd, path);                        \
		errno = saved;                                                  \
		if (e == 0)                                                     \
			r = real.name args;                                     \
		else                                                            \
			errno = e;                                              \
	}                                                                       \
	if (__builtin_expect((flags) & WRITE_FLAGS, 0) && !(FAILED) &&          \
	    !((flags) & O_DIRECTORY) && active()) {                             \
		int e = errno;                                                  \
		cs_track_opened(dirfd, path, FD_OF(r));                         \
		errno = e;                                                      \
	}

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
		return r;                                                       \
	}
#define WRAP_I(ret, name, params, args, dirfd, path, flags, fallback)           \
	CS_EXPORT ret name params                                               \
	{                                                                       \
		BODY(ret, name, args, r < 0, dirfd, path, flags, fallback)      \
		return r;                                                       \
	}
#define WRAP_P(ret, name, params, args, dirfd, path, flags, fallback)           \
	CS_EXPORT ret name params                                               \
	{                                                                       \
		BODY(ret, name, args, r == NULL, dirfd, path, flags, fallback)  \
		return r;                                                       \
	}
#define WRAP_D(ret, name, params, args, dirfd, path, flags, fallback)           \
	CS_EXPORT ret name params                                               \
	{                                                                       \
		BODY(ret, name, args, r == NULL, dirfd, path, flags, fallback)  \
		return r && active() ? cs_dirs_opened(dirfd, path, r) : r;      \
	}
#define W(kind, ...) WRAP_##kind(__VA_ARGS__)
#include "wrap.def"
#undef W

static void atfork_child(void)
{
	cs_client_forget();
	cs_index_atfork_child();
	cs_track_atfork_child();
	cs_dirs_atfork_child();
}

/* Load the configuration, before main and before the host can rewrite its
 * environment (nginx does).  A misconfiguration is said once, on one stderr
 * line, and leaves the library inert: the host runs as if nothing were
 * preloaded. */
static bool configure(void)
{
	char err[512];
	int rc;

	/* cs-replicate is the agent: preloaded into it, the library would ask
	 * the agent for what it is asked to serve. */
	if (strcmp(program_invocation_short_name, "cs-replicate") == 0)
		return false;
	/* A setuid, setgid or file-capability program runs on its caller's
	 * environment: from /etc/ld.so.preload, CS_PREFIXES and CS_SPOOL would
	 * be the caller's choice of where a privileged process writes and
	 * which socket it trusts.  Off, silently: such programs are not
	 * hosts. */
	if (getauxval(AT_SECURE))
		return false;
	rc = cs_config_load(&cs_cfg, CS_ROLE_HOST, err, sizeof err);
	if (rc == -ENOENT)
		return false;
	if (rc < 0) {
		cs_error("%s; ClusterStorage is off in this process", err);
		return false;
	}
	if (cs_cfg.needless[0])
		cs_error("%s: a host process does not need %s and should not have %s; "
			 "only cs-replicate does", cs_cfg.needless,
			 strchr(cs_cfg.needless, ',') ? "them" : "it",
			 strchr(cs_cfg.needless, ',') ? "them" : "it");
	return true;
}

__attribute__((constructor)) static void cs_preload_init(void)
{
	int saved = errno;

	cs_real_resolve();
	if (configure()) {
		pthread_atfork(NULL, NULL, atfork_child);
		cs_preload_state = 1;
		cs_track_start();
	} else {
		cs_preload_state = -1;
	}
	errno = saved;
}
