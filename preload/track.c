/*
 * track.c - seeing writes end: which descriptors were opened for writing
 * under a prefix, and the calls that close, duplicate, rename or remove them.
 *
 * A write is journaled when its file description is closed for the last
 * time (close, fclose, dup2 over it, exit), not at each close of a
 * duplicate: fd_slot maps a descriptor to a slot holding the path and a
 * count of descriptors sharing it.  Renames, unlinks, truncates and links
 * under a prefix are journaled once the real call has succeeded.  Every
 * journaled entry wakes this process's replicator (replicator.c).
 *
 * close() runs often and may run in a signal handler: for a descriptor that
 * is not tracked it costs one load; for a tracked one it appends a line to
 * the journal with write(2) and wakes the replicator through an eventfd,
 * both async-signal-safe.  Slots come from a static pool claimed with atomics;
 * only past SLOTS open writes at once does a slot come from malloc.
 * Descriptors inherited across exec (a shell's `> file`) are found by
 * scanning /proc/self/fd in the constructor; descriptors still open at exit
 * are journaled by an atexit handler, which also gives the replicator a
 * bounded time to finish.
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
#define EXIT_WAIT_MS 2000

struct slot {
	int refs;               /* descriptors sharing this description */
	int used;               /* claimed (pool slots) */
	bool heap;
	int prefix;             /* index into cs_cfg.prefix */
	char rel[CS_PATH_MAX];
};

static struct slot pool[SLOTS];
static struct slot *fd_slot[TRACK_FDS];
static int exit_registered;
/* This process as the tracker knows it: a vfork child shares our memory
 * but not our pid, and must not touch what it shares. */
static pid_t track_pid;

/* ---- slots ------------------------------------------------------------ */

static struct slot *slot_new(void)
{
	for (int i = 0; i < SLOTS; i++) {
		int zero = 0;
		if (!__atomic_load_n(&pool[i].used, __ATOMIC_RELAXED) &&
		    __atomic_compare_exchange_n(&pool[i].used, &zero, 1, false,
						__ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
			pool[i].heap = false;
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

static void journal(enum cs_op op, const char *ns, const char *rel, const char *rel2,
		    bool may_start)
{
	int rc;

	cs_inside++;
	rc = cs_journal_append(op, ns, rel, rel2);
	if (rc == 0)
		cs_replicator_kick(may_start);
	else if (rc == -EINVAL)
		cs_error_every(60, "%s: a name with control bytes cannot be replicated", ns);
	else if (rc == -ENOSYS)
		cs_error_every(3600, "%s/%s changed, but CS_SPOOL is unset: writes stay on this node",
			       ns, rel);
	else
		cs_error_every(10, "%s/%s: cannot journal the write (%s); it will not replicate",
			       ns, rel, strerror(-rc));
	cs_inside--;
}

/* One descriptor of s is gone; the last one ends the write. */
static void slot_put(struct slot *s, bool may_start)
{
	if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	journal(CS_OP_WRITE, cs_cfg.prefix[s->prefix].name, s->rel, NULL, may_start);
	slot_free(s);
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
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
	slot_put(__atomic_exchange_n(&fd_slot[fd2], s, __ATOMIC_ACQ_REL), true);
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
	/* A stale mapping (the fd was closed behind our back, say by
	 * close_range) ends that write now. */
	slot_put(__atomic_exchange_n(&fd_slot[fd], s, __ATOMIC_ACQ_REL), true);
}

/* Run once, by the first write: the replicator and the exit handler. */
static void exit_handler(void);

static void first_write(void)
{
	int zero = 0;

	if (__atomic_load_n(&exit_registered, __ATOMIC_RELAXED) ||
	    !__atomic_compare_exchange_n(&exit_registered, &zero, 1, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		return;
	/* Loaded now, libcrypto is set up without its exit-time cleanup, which
	 * would free its state while the replicator may still hash. */
	cs_dyn_crypto();
	atexit(exit_handler);
}

void cs_track_opened(int dirfd, const char *path, int fd)
{
	char abs[CS_PATH_MAX];
	const char *rel;
	const struct cs_prefix *p;

	if (fd < 0)
		return;
	cs_inside++;
	p = cs_locate(dirfd, path, abs, &rel);
	if (p) {
		first_write();
		track(fd, p, rel);
		/* Its close() may run in a signal handler and must not start
		 * a thread: the open does, and each forked child's again. */
		cs_replicator_start();
	}
	cs_inside--;
}

/* ---- descriptors inherited and left open -------------------------------- */

void cs_track_scan(void)
{
	DIR *d;
	struct dirent *e;

	track_pid = getpid();
	cs_inside++;
	d = opendir("/proc/self/fd");
	while (d && (e = readdir(d))) {
		char link[64], target[CS_PATH_MAX], abs[CS_PATH_MAX];
		const char *rel;
		const struct cs_prefix *p;
		int fd = atoi(e->d_name), fl;

		if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d))
			continue;
		fl = real.fcntl ? real.fcntl(fd, F_GETFL) : -1;
		if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY)
			continue;
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, target, sizeof target - 1);
		if (n <= 0 || target[0] != '/')
			continue;
		target[n] = '\0';
		if ((p = cs_locate(AT_FDCWD, target, abs, &rel))) {
			first_write();
			track(fd, p, rel);
		}
	}
	if (d)
		closedir(d);
	cs_inside--;
}

void cs_track_exit(void)
{
	for (int fd = 0; fd < TRACK_FDS; fd++) {
		struct slot *s = fd_take(fd);
		if (s) {
			__atomic_store_n(&s->refs, 1, __ATOMIC_RELEASE);
			slot_put(s, false);
		}
	}
}

static void exit_handler(void)
{
	int saved = errno;

	if (cs_preload_state > 0 && track_pid == getpid()) {
		cs_track_exit();
		cs_inside++;
		cs_replicator_finish(EXIT_WAIT_MS);
		cs_inside--;
	}
	errno = saved;
}

void cs_track_atfork_child(void)
{
	/* Descriptors and their slots were copied: both processes end their
	 * own copies.  The exit handler is inherited with them. */
	track_pid = getpid();
	cs_journal_forget();
	cs_replicator_forget();
}

/* ---- the wrappers -------------------------------------------------------- */

static void on_path(enum cs_op op, int dirfd, const char *path)
{
	char abs[CS_PATH_MAX];
	const char *rel;
	const struct cs_prefix *p;

	cs_inside++;
	if ((p = cs_locate(dirfd, path, abs, &rel))) {
		first_write();
		journal(op, p->name, rel, NULL, true);
	}
	cs_inside--;
}

/* Open writes of the old name carry on under the new one. */
static void retarget(const struct cs_prefix *p, const char *from, const char *to)
{
	int idx = (int)(p - cs_cfg.prefix);

	for (int i = 0; i < SLOTS; i++)
		if (__atomic_load_n(&pool[i].used, __ATOMIC_ACQUIRE) && pool[i].prefix == idx &&
		    strcmp(pool[i].rel, from) == 0)
			snprintf(pool[i].rel, sizeof pool[i].rel, "%s", to);
}

static void on_rename(int da, const char *a, int db, const char *b, unsigned flags)
{
	char absa[CS_PATH_MAX], absb[CS_PATH_MAX];
	const char *rela, *relb;
	const struct cs_prefix *pa, *pb;

	cs_inside++;
	pa = cs_locate(da, a, absa, &rela);
	pb = cs_locate(db, b, absb, &relb);
	if (pa || pb)
		first_write();
	if (flags & RENAME_EXCHANGE) {
		if (pa)
			journal(CS_OP_WRITE, pa->name, rela, NULL, true);
		if (pb)
			journal(CS_OP_WRITE, pb->name, relb, NULL, true);
	} else if (pa && pa == pb) {
		retarget(pa, rela, relb);
		journal(CS_OP_RENAME, pa->name, rela, relb, true);
	} else {
		if (pa)
			journal(CS_OP_DELETE, pa->name, rela, NULL, true);
		if (pb)
			journal(CS_OP_WRITE, pb->name, relb, NULL, true);
	}
	cs_inside--;
}

/* The host closes a descriptor that may be one of ours (daemons close
 * every descriptor they did not open): stop using that number. */
static inline void ours_closing(int fd)
{
	cs_journal_closing(fd);
	cs_replicator_closing(fd);
}

#define RESOLVE(name, fallback)                                                \
	if (__builtin_expect(!real.name, 0) && (!cs_real_resolve() || !real.name)) \
		return fallback;

/* Descriptors libcs itself opens and closes are never the host's tracked
 * ones, and the replicator's live in a table of their own: its calls must
 * not touch the host's entries (a dup2 onto 0 in the replicator once stole
 * the host's write to fd 3). */
#define OURS() __builtin_expect(cs_inside != 0, 0)

CS_EXPORT int close(int fd)
{
	RESOLVE(close, (int)syscall(SYS_close, fd))
	if (OURS())
		return real.close(fd);
	struct slot *s = fd_take(fd);
	int r;

	ours_closing(fd);
	r = real.close(fd);
	if (__builtin_expect(s != NULL, 0)) {
		int e = errno;
		slot_put(s, false);     /* may be a signal handler: no thread start */
		errno = e;
	}
	return r;
}

CS_EXPORT int fclose(FILE *f)
{
	RESOLVE(fclose, sys_fail_int())
	if (OURS())
		return real.fclose(f);
	struct slot *s = f ? fd_take(fileno(f)) : NULL;
	int r = real.fclose(f);
	if (s) {
		int e = errno;
		slot_put(s, true);
		errno = e;
	}
	return r;
}

CS_EXPORT int dup(int fd)
{
	RESOLVE(dup, (int)syscall(SYS_dup, fd))
	int r = real.dup(fd);
	if (r >= 0 && !OURS()) {
		int e = errno;
		fd_share(fd, r);
		errno = e;
	}
	return r;
}

static int dup_onto(int fd, int fd2, int r)
{
	int e = errno;

	if (OURS())
		return r;
	if (r >= 0 && fd != fd2)
		ours_closing(fd2);
	if (r >= 0 && fd != fd2)
		fd_share(fd, fd2);
	errno = e;
	return r;
}

CS_EXPORT int dup2(int fd, int fd2)
{
	RESOLVE(dup2, (int)syscall(SYS_dup2, fd, fd2))
	return dup_onto(fd, fd2, real.dup2(fd, fd2));
}

CS_EXPORT int dup3(int fd, int fd2, int fl)
{
	RESOLVE(dup3, (int)syscall(SYS_dup3, fd, fd2, fl))
	return dup_onto(fd, fd2, real.dup3(fd, fd2, fl));
}

/* The libraries dyn.c loads at first use would not be found inside the new
 * root (a PHP-FPM pool's `chroot` option): load and set them up now. */
CS_EXPORT int chroot(const char *path)
{
	RESOLVE(chroot, (int)syscall(SYS_chroot, path))
	if (cs_preload_state > 0 && !OURS()) {
		int e = errno;
		cs_inside++;
		cs_dyn_crypto();
		cs_registry_global_init();
		cs_peer_global_init();
		cs_dyn_memcached();
		cs_inside--;
		errno = e;
	}
	return real.chroot(path);
}

/* Leaving without exit handlers: what is still open ends here, and
 * cs-replicate finishes the journal (the replicator gets no time). */
#define EXIT(name)                                                             \
	CS_EXPORT void name(int status)                                        \
	{                                                                      \
		if (cs_preload_state > 0 && track_pid == (pid_t)syscall(SYS_getpid)) \
			cs_track_exit();                                       \
		if (real.name || (cs_real_resolve() && real.name))             \
			real.name(status);                                     \
		syscall(SYS_exit_group, status);                               \
		__builtin_unreachable();                                       \
	}
EXIT(_exit)
EXIT(_Exit)

#define FCNTL(name)                                                            \
	CS_EXPORT int name(int fd, int cmd, ...)                               \
	{                                                                      \
		va_list ap;                                                    \
		va_start(ap, cmd);                                             \
		void *arg = va_arg(ap, void *);                                \
		va_end(ap);                                                    \
		RESOLVE(name, (int)syscall(SYS_fcntl, fd, cmd, arg))           \
		int r = real.name(fd, cmd, arg);                               \
		if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))      \
			dup_onto(fd, r, r);                                    \
		return r;                                                      \
	}
FCNTL(fcntl)
FCNTL(fcntl64)

CS_EXPORT int rename(const char *a, const char *b)
{
	RESOLVE(rename, (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, 0))
	int r = real.rename(a, b), e = errno;
	if (r == 0 && cs_active())
		on_rename(AT_FDCWD, a, AT_FDCWD, b, 0);
	errno = e;
	return r;
}

CS_EXPORT int renameat(int da, const char *a, int db, const char *b)
{
	RESOLVE(renameat, (int)syscall(SYS_renameat2, da, a, db, b, 0))
	int r = real.renameat(da, a, db, b), e = errno;
	if (r == 0 && cs_active())
		on_rename(da, a, db, b, 0);
	errno = e;
	return r;
}

CS_EXPORT int renameat2(int da, const char *a, int db, const char *b, unsigned fl)
{
	RESOLVE(renameat2, (int)syscall(SYS_renameat2, da, a, db, b, fl))
	int r = real.renameat2(da, a, db, b, fl), e = errno;
	if (r == 0 && cs_active())
		on_rename(da, a, db, b, fl);
	errno = e;
	return r;
}

/* The calls that name one path whose change is journaled after success. */
#define ON_PATH(ret, name, params, args, op, dirfd, path, cond, fallback)      \
	CS_EXPORT ret name params                                              \
	{                                                                      \
		RESOLVE(name, fallback)                                        \
		ret r = real.name args;                                        \
		int e = errno;                                                 \
		if (r == 0 && (cond) && cs_active())                           \
			on_path(op, dirfd, path);                              \
		errno = e;                                                     \
		return r;                                                      \
	}
ON_PATH(int, unlink, (const char *a), (a), CS_OP_DELETE, AT_FDCWD, a, 1,
	(int)syscall(SYS_unlinkat, AT_FDCWD, a, 0))
ON_PATH(int, unlinkat, (int da, const char *a, int fl), (da, a, fl), CS_OP_DELETE, da, a,
	!(fl & AT_REMOVEDIR), (int)syscall(SYS_unlinkat, da, a, fl))
ON_PATH(int, remove, (const char *a), (a), CS_OP_DELETE, AT_FDCWD, a, 1,
	(int)syscall(SYS_unlinkat, AT_FDCWD, a, 0))
ON_PATH(int, truncate, (const char *a, off_t len), (a, len), CS_OP_WRITE, AT_FDCWD, a, 1,
	(int)syscall(SYS_truncate, a, len))
ON_PATH(int, truncate64, (const char *a, off64_t len), (a, len), CS_OP_WRITE, AT_FDCWD, a, 1,
	(int)syscall(SYS_truncate, a, len))
ON_PATH(int, link, (const char *a, const char *b), (a, b), CS_OP_WRITE, AT_FDCWD, b, 1,
	(int)syscall(SYS_linkat, AT_FDCWD, a, AT_FDCWD, b, 0))
ON_PATH(int, linkat, (int da, const char *a, int db, const char *b, int fl), (da, a, db, b, fl),
	CS_OP_WRITE, db, b, 1, (int)syscall(SYS_linkat, da, a, db, b, fl))
