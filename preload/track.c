/*
 * track.c - seeing writes end: which descriptors were opened for writing
 * under a prefix, and the calls that close, duplicate, rename or remove them
 * (generated from track.def, one template per kind).
 *
 * A write is journaled when its file description is closed for the last
 * time (close, fclose, dup2 over it, close_range, exit), not at each close
 * of a duplicate: fd_slot maps a descriptor to a slot holding the path and a
 * count of descriptors sharing it.  Renames, unlinks, truncates and links
 * under a prefix are journaled once the real call has succeeded.  The
 * journal is all a host does about a write: this node's agent reads it and
 * replicates, so close() returns at once and an exit never waits.
 *
 * close() runs often and may run in a signal handler: for a descriptor that
 * is not tracked it costs one load; for a tracked one it appends a line to
 * the journal with write(2), async-signal-safe.  Slots come from a static
 * pool claimed with atomics; only past SLOTS open writes at once does a slot
 * come from malloc.  Descriptors inherited across exec (a shell's `> file`)
 * are found by scanning /proc/self/fd in the constructor; descriptors still
 * open at exit are journaled by an atexit handler, and by _exit.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cs.h"
#include "preload.h"

#define CS_EXPORT __attribute__((visibility("default")))
#define TRACK_FDS 65536
#define SLOTS 256

struct slot {
	int refs;               /* descriptors sharing this description */
	int used;               /* claimed (pool slots) */
	bool heap;
	int prefix;             /* index into cs_cfg.prefix */
	char rel[CS_PATH_MAX];
};

static struct slot pool[SLOTS];
/* Above every pool slot ever claimed: what a rename looks through, so that
 * it touches only the pages writes have used (the pool is 1 MiB, and pages
 * of it read once would stay in the host's memory). */
static int pool_top;
static struct slot *fd_slot[TRACK_FDS];
/* Above every descriptor that ever had a slot: what exit and close_range
 * look through (the whole table is 512 KiB of pages never touched). */
static int fd_top;
/* This process as the tracker knows it: a vfork child shares our memory
 * but not our pid, and must not touch what it shares. */
static pid_t track_pid;

/* ---- slots ------------------------------------------------------------ */

/* *top becomes i + 1 unless it is above already. */
static void raise_top(int *top, int i)
{
	int t = __atomic_load_n(top, __ATOMIC_RELAXED);

	while (i >= t && !__atomic_compare_exchange_n(top, &t, i + 1, true,
						      __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		;
}

static struct slot *slot_new(void)
{
	for (int i = 0; i < SLOTS; i++) {
		int zero = 0;
		if (!__atomic_load_n(&pool[i].used, __ATOMIC_RELAXED) &&
		    __atomic_compare_exchange_n(&pool[i].used, &zero, 1, false,
						__ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
			pool[i].heap = false;
			raise_top(&pool_top, i);
			return &pool[i];
		}
	}
	struct slot *s = malloc(sizeof *s);
	if (s) {
		s->used = 1;
		s->heap = true;
	}
	return s;
}

static void slot_free(struct slot *s)
{
	if (s->heap)
		free(s);
	else
		__atomic_store_n(&s->used, 0, __ATOMIC_RELEASE);
}

/* Append an entry; its result (what failed is logged here). */
static int journal(enum cs_op op, const char *ns, const char *rel, const char *rel2)
{
	int rc = cs_journal_append(op, ns, rel, rel2);

	if (rc == -EINVAL)
		cs_error_every(60, "%s: a name with control bytes cannot be replicated", ns);
	else if (rc == -ENOSYS)
		cs_error_every(3600, "%s/%s changed, but CS_SPOOL is unset: writes stay on this node",
			       ns, rel);
	else if (rc < 0)
		cs_error_every(10, "%s/%s: cannot journal the write in %s (%s); it will not replicate",
			       ns, rel, cs_cfg.spool, strerror(-rc));
	return rc;
}

/* One descriptor of s is gone; the last one ends the write.  -errno when
 * its entry could not be journaled for want of space (a full disk, a
 * quota) or an I/O error: the write would silently stay on this node, so
 * close() says so, as it would for a write NFS could not store. */
static int slot_put(struct slot *s)
{
	int rc;

	if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return 0;
	rc = journal(CS_OP_WRITE, cs_cfg.prefix[s->prefix].name, s->rel, NULL);
	slot_free(s);
	return rc == -ENOSPC || rc == -EDQUOT || rc == -EIO ? rc : 0;
}

static struct slot *fd_take(int fd)
{
	if ((unsigned)fd >= TRACK_FDS || !__atomic_load_n(&fd_slot[fd], __ATOMIC_RELAXED))
		return NULL;
	return __atomic_exchange_n(&fd_slot[fd], NULL, __ATOMIC_ACQ_REL);
}

/* fd2 now shares fd's description. */
static void fd_share(int fd, int fd2)
{
	struct slot *s;

	if ((unsigned)fd >= TRACK_FDS || (unsigned)fd2 >= TRACK_FDS ||
	    !(s = __atomic_load_n(&fd_slot[fd], __ATOMIC_ACQUIRE)))
		return;
	raise_top(&fd_top, fd2);
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
	slot_put(__atomic_exchange_n(&fd_slot[fd2], s, __ATOMIC_ACQ_REL));
}

static void track(int fd, const struct cs_prefix *p, const char *rel)
{
	struct slot *s;

	if ((unsigned)fd >= TRACK_FDS) {
		cs_error_every(60, "descriptor %d too high to track; its writes will not replicate", fd);
		return;
	}
	if (!(s = slot_new()))
		return;
	s->refs = 1;
	s->prefix = (int)(p - cs_cfg.prefix);
	snprintf(s->rel, sizeof s->rel, "%s", rel);
	raise_top(&fd_top, fd);
	/* A stale mapping (the fd was closed behind our back) ends that
	 * write now. */
	slot_put(__atomic_exchange_n(&fd_slot[fd], s, __ATOMIC_ACQ_REL));
}

void cs_track_opened(int dirfd, const char *path, int fd)
{
	char abs[CS_PATH_MAX];
	const char *rel;
	const struct cs_prefix *p;

	if (fd >= 0 && (p = cs_path_locate(dirfd, path, abs, &rel)))
		track(fd, p, rel);
}

/* ---- descriptors inherited and left open -------------------------------- */

/* What is still open at exit ends there: exit() closes inside glibc. */
static void exit_handler(void);

void cs_track_start(void)
{
	DIR *d;
	struct dirent *e;

	track_pid = getpid();
	atexit(exit_handler);
	d = sys_opendir("/proc/self/fd");
	while (d && (e = readdir(d))) {
		char target[CS_PATH_MAX];
		int fd = atoi(e->d_name), fl;

		if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d))
			continue;
		fl = real.fcntl ? real.fcntl(fd, F_GETFL) : -1;
		if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY || cs_fd_path(fd, target, sizeof target) < 0)
			continue;
		cs_track_opened(AT_FDCWD, target, fd);
	}
	if (d)
		closedir(d);
}

/* Every tracked descriptor from first to last ends its write. */
static void end_range(unsigned first, unsigned last)
{
	unsigned top = (unsigned)__atomic_load_n(&fd_top, __ATOMIC_ACQUIRE);

	for (unsigned fd = first; fd <= last && fd < top; fd++) {
		struct slot *s = fd_take((int)fd);
		if (s)
			slot_put(s);
	}
}

static void exit_handler(void)
{
	int saved = errno;

	if (cs_active() && track_pid == getpid())
		end_range(0, ~0U);
	errno = saved;
}

void cs_track_atfork_child(void)
{
	/* Descriptors and their slots were copied: both processes end their
	 * own copies.  The exit handler is inherited with them. */
	track_pid = getpid();
	cs_journal_forget();
}

/* ---- what the wrappers do ------------------------------------------------ */

static void on_path(enum cs_op op, int dirfd, const char *path)
{
	char abs[CS_PATH_MAX];
	const char *rel;
	const struct cs_prefix *p;

	if ((p = cs_path_locate(dirfd, path, abs, &rel)))
		journal(op, p->name, rel, NULL);
}

/* Open writes of the old name carry on under the new one. */
static void retarget(const struct cs_prefix *p, const char *from, const char *to)
{
	int idx = (int)(p - cs_cfg.prefix);

	for (int i = 0, top = __atomic_load_n(&pool_top, __ATOMIC_ACQUIRE); i < top; i++)
		if (__atomic_load_n(&pool[i].used, __ATOMIC_ACQUIRE) && pool[i].prefix == idx &&
		    strcmp(pool[i].rel, from) == 0)
			snprintf(pool[i].rel, sizeof pool[i].rel, "%s", to);
}

static void on_rename(int da, const char *a, int db, const char *b, unsigned flags)
{
	char absa[CS_PATH_MAX], absb[CS_PATH_MAX];
	const char *rela, *relb;
	const struct cs_prefix *pa = cs_path_locate(da, a, absa, &rela);
	const struct cs_prefix *pb = cs_path_locate(db, b, absb, &relb);

	if (flags & RENAME_EXCHANGE) {
		if (pa)
			journal(CS_OP_WRITE, pa->name, rela, NULL);
		if (pb)
			journal(CS_OP_WRITE, pb->name, relb, NULL);
	} else if (pa && pa == pb) {
		retarget(pa, rela, relb);
		journal(CS_OP_RENAME, pa->name, rela, relb);
	} else {
		if (pa)
			journal(CS_OP_DELETE, pa->name, rela, NULL);
		if (pb)
			journal(CS_OP_WRITE, pb->name, relb, NULL);
	}
}

/*
 * The host closes descriptors (daemons close every one they did not open):
 * the journal's among them is no longer the library's (cs_journal_closing).
 * The agent's connections need no word: each is checked to be still the
 * same socket before it is used.
 */

/* fd2 was replaced by a duplicate of fd (r: the call's result). */
static int dup_onto(int fd, int fd2, int r)
{
	int e = errno;

	if (r >= 0 && fd != fd2) {
		cs_journal_closing(fd2);
		fd_share(fd, fd2);
	}
	errno = e;
	return r;
}

/* The descriptor of a stream being closed, or -1; errno as it was (fileno
 * sets EBADF for a stream without one: fmemopen, open_memstream). */
static int stream_fd(FILE *f)
{
	int e = errno, fd = f ? fileno(f) : -1;

	errno = e;
	return fd;
}

/* ---- the wrappers, from track.def ------------------------------------------ */

#define RESOLVE(name, fallback)                                                \
	if (__builtin_expect(!real.name, 0) && (!cs_real_resolve() || !real.name)) \
		return fallback;

/*
 * A rename, link, unlink or truncate failed with ENOENT.  Step 0: the name
 * it needs (need, relative to needfd), when not here, may be the cluster's:
 * fetched.  Step 1: the name it makes (make) may lie in a directory only
 * another node has: made.  NULL for neither.  0 when the call should be
 * repeated, else the errno to report.
 */
static int bring(int step, int needfd, const char *need, int makefd, const char *make)
{
	if (step == 0)
		return need ? cs_absent_miss(needfd, need) : ENOENT;
	return make ? cs_parent_miss(makefd, make) : ENOENT;
}

/* After the real call (r, errno; the caller's errno in saved): each step
 * that may mend an ENOENT, the call repeated after each that did. */
#define BRING_AND_REPEAT(again, needfd, need, makefd, make)                     \
	for (int step = 0; step < 2 && r < 0 && errno == ENOENT && cs_active(); step++) { \
		int brought = bring(step, needfd, need, makefd, make);         \
		errno = brought ? brought : saved;                             \
		if (brought == 0)                                              \
			again;                                                 \
	}

/* fdexpr: the descriptor being closed (evaluated once, before the call). */
#define TRACK_CLOSE(ret, name, params, args, fallback, fdexpr)                  \
	CS_EXPORT ret name params                                              \
	{                                                                      \
		RESOLVE(name, fallback)                                        \
		int fd_ = (fdexpr);                                            \
		struct slot *s = fd_take(fd_);                                 \
		cs_journal_closing(fd_);                                       \
		ret r = real.name args;                                        \
		if (__builtin_expect(s != NULL, 0)) {                          \
			int e = errno, j = slot_put(s);                        \
			errno = e;                                             \
			if (j < 0 && r == 0) {                                 \
				errno = -j;    /* closed, not journaled */     \
				r = (ret)-1;                                   \
			}                                                      \
		}                                                              \
		return r;                                                      \
	}

#define TRACK_DUP(ret, name, params, args, fallback, fd)                        \
	CS_EXPORT ret name params                                              \
	{                                                                      \
		RESOLVE(name, fallback)                                        \
		ret r = real.name args;                                        \
		return dup_onto(fd, r, r);                                     \
	}

#define TRACK_DUPTO(ret, name, params, args, fallback, fd, fd2)                 \
	CS_EXPORT ret name params                                              \
	{                                                                      \
		RESOLVE(name, fallback)                                        \
		return dup_onto(fd, fd2, real.name args);                      \
	}

#define TRACK_FCNTL(ret, name, params, args, fallback, fd, cmd)                 \
	CS_EXPORT ret name params                                              \
	{                                                                      \
		va_list ap;                                                    \
		va_start(ap, cmd);                                             \
		void *arg = va_arg(ap, void *);                                \
		va_end(ap);                                                    \
		RESOLVE(name, fallback)                                        \
		ret r = real.name args;                                        \
		if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))      \
			dup_onto(fd, r, r);                                    \
		return r;                                                      \
	}

/* closefrom returns nothing: its result is taken as success. */
#define RESULT_int(call) int r = call
#define RESULT_void(call) int r = (call, 0)
#define RETURN_int return r
#define RETURN_void (void)r
#define FALLBACK_int(call) return call
#define FALLBACK_void(call) do { call; return; } while (0)

#define TRACK_RANGE(ret, name, params, args, fallback, first, last, fl)         \
	CS_EXPORT ret name params                                              \
	{                                                                      \
		if (__builtin_expect(!real.name, 0) &&                         \
		    (!cs_real_resolve() || !real.name))                        \
			FALLBACK_##ret(fallback);                              \
		RESULT_##ret(real.name args);                                  \
		if (r == 0 && !((fl) & CLOSE_RANGE_CLOEXEC)) {                 \
			int e = errno;                                         \
			cs_journal_closing_range(first, last);                 \
			end_range(first, last);                                \
			errno = e;                                             \
		}                                                              \
		RETURN_##ret;                                                  \
	}

#define TRACK_RENAME(ret, name, params, args, fallback, da, a, db, b, fl)       \
	CS_EXPORT ret name params                                              \
	{                                                                      \
		RESOLVE(name, fallback)                                        \
		int saved = errno;                                             \
		ret r = real.name args;                                        \
		BRING_AND_REPEAT(r = real.name args, da, a, db, b)             \
		int e = errno;                                                 \
		if (r == 0 && cs_active())                                     \
			on_rename(da, a, db, b, fl);                           \
		errno = e;                                                     \
		return r;                                                      \
	}

#define TRACK_PATH(ret, name, params, args, fallback, op, dirfd, path, cond,    \
		   needfd, need, makefd, make)                                  \
	CS_EXPORT ret name params                                              \
	{                                                                      \
		RESOLVE(name, fallback)                                        \
		int saved = errno;                                             \
		ret r = real.name args;                                        \
		BRING_AND_REPEAT(r = real.name args, needfd, need, makefd, make) \
		int e = errno;                                                 \
		if (r == 0 && (cond) && cs_active())                           \
			on_path(op, dirfd, path);                              \
		errno = e;                                                     \
		return r;                                                      \
	}

#define TRACK_PREPARE(ret, name, params, args, fallback)                        \
	CS_EXPORT ret name params                                              \
	{                                                                      \
		RESOLVE(name, fallback)                                        \
		if (cs_active()) {                                             \
			int e = errno;                                         \
			cs_journal_prepare();                                  \
			cs_index_prepare();                                    \
			cs_client_prepare();                                   \
			errno = e;                                             \
		}                                                              \
		return real.name args;                                         \
	}

/* Leaving without exit handlers: what is still open ends here (a shell's
 * `> file` ends so), then the real call, which does not return. */
#define TRACK_EXIT(ret, name, params, args, fallback)                           \
	CS_EXPORT ret name params                                              \
	{                                                                      \
		if (cs_active() && track_pid == (pid_t)syscall(SYS_getpid))    \
			end_range(0, ~0U);                                     \
		if (real.name || (cs_real_resolve() && real.name))             \
			real.name args;                                        \
		fallback;                                                      \
		__builtin_unreachable();                                       \
	}

#define T(kind, ...) TRACK_##kind(__VA_ARGS__)
#include "track.def"
#undef T
