/*
 * dirs.c - a directory under a prefix lists the cluster's entries too.
 *
 * A node holds the files it wrote or was asked for; a program listing a
 * directory (ls, find, git, a gallery page's scandir, Apache's index) must
 * see every file the cluster has there, or it acts on a partial tree.  So
 * a stream opened on such a directory (opendir, fdopendir) is remembered,
 * and readdir on it gives first the local entries, as libc reads them, and
 * then the cluster's live entries that were not among them.  The node's
 * agent lists those from the registry, less the names this node's disk
 * holds (agent/listing.c): for a directory whose entries are all here the
 * answer is empty and readdir costs libc's plus one round trip.  Each name
 * comes once all the same (a file may arrive here during the listing): the
 * local names are looked up among the agent's.  A cluster entry is a file
 * (DT_REG) or a directory (DT_DIR); opening or stat'ing it is a miss like
 * any other, which fetches it.
 *
 * The agent is asked once per pass over the stream, at its first readdir,
 * and not at all for a directory the published index says no node ever had
 * (a local scratch directory costs nothing).  When the agent cannot answer,
 * the listing ends after the local entries with EIO, as readdir reports an
 * error: a partial listing is never passed off as whole.
 *
 * Streams not under a prefix cost readdir one load of a counter while none
 * is open that is, and a lookup by pointer while some are.  scandir and glob
 * read with glibc's internal calls: they are done here over these wrappers.
 * telldir/seekdir positions are libc's: a seekdir starts the pass again
 * from that local position, and the cluster's entries follow it again.
 * ftw, nftw and glibc's own fts, and a program calling getdents64 itself,
 * see the local entries only.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cs.h"
#include "preload.h"

#define CS_EXPORT __attribute__((visibility("default")))

/* On LP64 glibc a dirent is a dirent64, and readdir is readdir64. */
_Static_assert(sizeof(struct dirent) == sizeof(struct dirent64) &&
	       offsetof(struct dirent, d_name) == offsetof(struct dirent64, d_name),
	       "struct dirent and dirent64 differ here");

enum phase { ASK, LOCAL, CLUSTER, DONE };

struct listing {
	DIR *dir;
	const struct cs_prefix *p;
	char *rel;                      /* the directory, "" for the top */
	enum phase phase;
	int err;                        /* reported once the entries ran out */
	char *body;                     /* the agent's entries */
	size_t len, at;
	struct name {                   /* ... by hash (open addressing) */
		uint64_t h;             /* 0: a free slot */
		uint32_t at;            /* where in body */
		bool given;
	} *names;
	size_t cap;
	struct dirent64 ent;            /* the last cluster entry given */
};

/* Open streams with a listing, by address: open addressing, under lock. */
static struct listing **table;
static size_t tcap;
static size_t tcount;                   /* read without the lock */
static int lock;

static void take_lock(void)
{
	while (__atomic_test_and_set(&lock, __ATOMIC_ACQUIRE))
		sched_yield();
}

static void drop_lock(void)
{
	__atomic_clear(&lock, __ATOMIC_RELEASE);
}

static size_t slot_of(const DIR *d, size_t cap)
{
	return (size_t)cs_mix64((uintptr_t)d) & (cap - 1);
}

/* Add l (under lock): false when there is no memory for it. */
static bool table_add(struct listing *l)
{
	if ((tcount + 1) * 2 > tcap) {
		size_t cap = tcap ? tcap * 2 : 16;
		struct listing **t = calloc(cap, sizeof *t);
		if (!t)
			return false;
		for (size_t i = 0; i < tcap; i++) {
			if (!table[i])
				continue;
			size_t s = slot_of(table[i]->dir, cap);
			while (t[s])
				s = (s + 1) & (cap - 1);
			t[s] = table[i];
		}
		free(table);
		table = t;
		tcap = cap;
	}
	size_t s = slot_of(l->dir, tcap);
	while (table[s])
		s = (s + 1) & (tcap - 1);
	table[s] = l;
	__atomic_store_n(&tcount, tcount + 1, __ATOMIC_RELEASE);
	return true;
}

/* d's listing (under lock), or NULL; its slot in *at. */
static struct listing *table_find(const DIR *d, size_t *at)
{
	if (!tcap)
		return NULL;
	for (size_t s = slot_of(d, tcap); table[s]; s = (s + 1) & (tcap - 1)) {
		if (table[s]->dir == d) {
			*at = s;
			return table[s];
		}
	}
	return NULL;
}

/* Take slot s out (under lock), moving up what followed it. */
static void table_remove(size_t s)
{
	table[s] = NULL;
	for (size_t i = (s + 1) & (tcap - 1); table[i]; i = (i + 1) & (tcap - 1)) {
		struct listing *l = table[i];
		size_t home = slot_of(l->dir, tcap);
		/* l stays unless its home lies cyclically in (s, i]. */
		if ((i > s && (home <= s || home > i)) || (i < s && home <= s && home > i)) {
			table[s] = l;
			table[i] = NULL;
			s = i;
		}
	}
	__atomic_store_n(&tcount, tcount - 1, __ATOMIC_RELEASE);
}

static struct listing *lookup(const DIR *d)
{
	struct listing *l;
	size_t s;

	if (__atomic_load_n(&tcount, __ATOMIC_ACQUIRE) == 0)
		return NULL;
	take_lock();
	l = table_find(d, &s);
	drop_lock();
	return l;
}

/* ---- the agent's names --------------------------------------------------- */

static uint64_t name_hash(const char *name)
{
	uint64_t h = cs_fnv1a(CS_FNV_SEED, name, strlen(name));

	return h ? h : 1;
}

/* The agent's name with hash h not given yet, or NULL. */
static struct name *lookup_name(struct listing *l, uint64_t h, const char *name)
{
	for (size_t s = h & (l->cap - 1); l->names[s].h; s = (s + 1) & (l->cap - 1)) {
		struct name *n = &l->names[s];
		if (n->h == h && !n->given && strcmp(l->body + n->at + 1, name) == 0)
			return n;
	}
	return NULL;
}

/* Index the agent's names: false when there is no memory for it. */
static bool index_names(struct listing *l)
{
	size_t count = 0, cap = 16;

	for (size_t at = 0; at < l->len; at += strnlen(l->body + at, l->len - at) + 1)
		count++;
	while (cap < count * 2)
		cap *= 2;
	if (!(l->names = calloc(cap, sizeof *l->names)))
		return false;
	l->cap = cap;
	for (size_t at = 0; at < l->len;) {
		const char *name = l->body + at + 1;
		size_t n = strnlen(name, l->len - at - 1);
		uint64_t h = name_hash(name);
		size_t s = h & (cap - 1);

		while (l->names[s].h)
			s = (s + 1) & (cap - 1);
		l->names[s] = (struct name){ h, (uint32_t)at, false };
		at += n + 2;
	}
	return true;
}

static void restart(struct listing *l)
{
	free(l->names);
	free(l->body);
	l->names = NULL;
	l->body = NULL;
	l->cap = l->len = l->at = 0;
	l->phase = ASK;
	l->err = 0;
}

/* ---- the cluster's entries ----------------------------------------------- */

/* A pass begins: ask the agent for the cluster's entries not here. */
static void ask_cluster(struct listing *l)
{
	int rc;

	l->phase = LOCAL;
	if (l->rel[0] && cs_index_lookup(l->p->name, l->rel) == CS_INDEX_ABSENT)
		return;         /* no node ever had it: nothing to add */
	rc = cs_client_list(l->p->name, l->rel, &l->body, &l->len);
	if (rc < 0) {
		l->err = EIO;
		cs_error_every(60, "%s/%s: the cluster's entries cannot be listed now (%s); "
			       "the listing ends with EIO", l->p->name, l->rel,
			       rc == -ECONNREFUSED ? "no agent runs" : "the agent cannot say");
		return;
	}
	if (l->len && l->len <= UINT32_MAX && !index_names(l))
		l->err = ENOMEM;
	if (l->err || !l->names) {
		free(l->body);
		l->body = NULL;
		l->len = 0;
	}
}

/* The next cluster entry no local one had the name of, or NULL. */
static struct dirent64 *next_cluster(struct listing *l)
{
	while (l->at < l->len) {
		const char *name = l->body + l->at + 1;
		size_t n = strnlen(name, l->len - l->at - 1);
		char type = l->body[l->at];
		struct name *x;

		l->at += n + 2;
		if (n == 0 || n > NAME_MAX || memchr(name, '/', n) ||
		    (name[0] == '.' && (n == 1 || (n == 2 && name[1] == '.'))))
			continue;
		uint64_t h = name_hash(name);
		if (!(x = lookup_name(l, h, name)))
			continue;       /* given already: here, or a file and a directory */
		x->given = true;
		memset(&l->ent, 0, offsetof(struct dirent64, d_name));
		l->ent.d_ino = h;       /* not 0, which some take for a free slot */
		l->ent.d_off = (off64_t)l->at;
		l->ent.d_reclen = sizeof l->ent;
		l->ent.d_type = type == 'd' ? DT_DIR : DT_REG;
		memcpy(l->ent.d_name, name, n + 1);
		return &l->ent;
	}
	l->phase = DONE;
	return NULL;
}

static void forget(DIR *d);

/* readdir on a stream with a listing: errno as it was but for an error. */
static struct dirent64 *next(struct listing *l)
{
	int saved = errno;
	struct dirent64 *e = NULL;
	struct name *x;

	if (l->phase == ASK) {
		ask_cluster(l);
		if (!l->names && !l->err) {
			/* Nothing to add: this pass is libc's alone, at its
			 * cost.  (A rewind then lists what is here.) */
			DIR *d = l->dir;
			forget(d);
			errno = saved;
			return real.readdir64(d);
		}
	}
	if (l->phase == LOCAL) {
		errno = 0;
		if ((e = real.readdir64(l->dir))) {
			if (l->names && (x = lookup_name(l, name_hash(e->d_name), e->d_name)))
				x->given = true;        /* here after all */
			errno = saved;
			return e;
		}
		if (errno)
			return NULL;    /* libc's own error, as it is */
		l->phase = l->names ? CLUSTER : DONE;
	}
	if (l->phase == CLUSTER)
		e = next_cluster(l);
	errno = saved;
	if (!e && l->err) {
		errno = l->err;
		l->err = 0;     /* reported once */
	}
	return e;
}

/* ---- opening and closing --------------------------------------------------- */

DIR *cs_dirs_opened(int dirfd, const char *path, DIR *d)
{
	char abs[CS_PATH_MAX];
	const char *rel;
	const struct cs_prefix *p;
	struct listing *l;
	int saved = errno;

	if (!(p = cs_path_locate_dir(dirfd, path, abs, &rel)))
		goto out;
	if (!(l = calloc(1, sizeof *l)) || !(l->rel = strdup(rel))) {
		free(l);
		goto out;       /* listed as the local directory alone */
	}
	l->dir = d;
	l->p = p;
	take_lock();
	if (!table_add(l)) {
		free(l->rel);
		free(l);
	}
	drop_lock();
out:
	errno = saved;
	return d;
}

/* The stream is going: its listing goes first (its address may be reused). */
static void forget(DIR *d)
{
	struct listing *l;
	size_t s;

	if (__atomic_load_n(&tcount, __ATOMIC_ACQUIRE) == 0)
		return;
	take_lock();
	if ((l = table_find(d, &s)))
		table_remove(s);
	drop_lock();
	if (l) {
		restart(l);
		free(l->rel);
		free(l);
	}
}

void cs_dirs_atfork_child(void)
{
	__atomic_clear(&lock, __ATOMIC_RELEASE);   /* its holder is gone */
}

#define RESOLVED(name) (real.name || (cs_real_resolve() && real.name))

CS_EXPORT DIR *fdopendir(int fd)
{
	char path[CS_PATH_MAX];
	DIR *d;

	if (!RESOLVED(fdopendir))
		return (DIR *)sys_fail_ptr();
	d = real.fdopendir(fd);
	if (d && cs_active()) {
		int saved = errno;
		if (cs_fd_path(fd, path, sizeof path) > 0)
			cs_dirs_opened(AT_FDCWD, path, d);
		errno = saved;
	}
	return d;
}

CS_EXPORT int closedir(DIR *d)
{
	if (!RESOLVED(closedir))
		return sys_fail_int();
	forget(d);
	return real.closedir(d);
}

/* ---- reading ------------------------------------------------------------- */

static __attribute__((noinline)) struct dirent64 *read_slow(DIR *d)
{
	struct listing *l;

	if (!RESOLVED(readdir64))
		return (struct dirent64 *)sys_fail_ptr();
	if (!(l = lookup(d)))
		return real.readdir64(d);
	return next(l);
}

/* Called for every entry of every directory the host lists: with no
 * listing open, a test of two words and libc's readdir. */
static inline struct dirent64 *read_one(DIR *d)
{
	struct dirent64 *(*fn)(DIR *) = real.readdir64;

	if (__builtin_expect(fn != NULL, 1) &&
	    __builtin_expect(__atomic_load_n(&tcount, __ATOMIC_RELAXED) == 0, 1))
		return fn(d);
	return read_slow(d);
}

CS_EXPORT struct dirent64 *readdir64(DIR *d)
{
	return read_one(d);
}

CS_EXPORT struct dirent *readdir(DIR *d)
{
	return (struct dirent *)read_one(d);
}

CS_EXPORT int readdir64_r(DIR *d, struct dirent64 *e, struct dirent64 **out)
{
	struct listing *l;
	struct dirent64 *got;
	int saved;

	if (!RESOLVED(readdir64_r))
		return EAGAIN;
	if (!(l = lookup(d)))
		return real.readdir64_r(d, e, out);
	saved = errno;
	errno = 0;
	got = next(l);
	if (!got) {
		int rc = errno;
		errno = saved;
		*out = NULL;
		return rc;
	}
	memcpy(e, got, offsetof(struct dirent64, d_name) + strlen(got->d_name) + 1);
	errno = saved;
	*out = e;
	return 0;
}

/* Deprecated, and still called (APR built for it, older programs). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
CS_EXPORT int readdir_r(DIR *d, struct dirent *e, struct dirent **out)
{
	return readdir64_r(d, (struct dirent64 *)e, (struct dirent64 **)out);
}
#pragma GCC diagnostic pop

CS_EXPORT void rewinddir(DIR *d)
{
	struct listing *l;

	if (!RESOLVED(rewinddir))
		return;
	if ((l = lookup(d)))
		restart(l);
	real.rewinddir(d);
}

CS_EXPORT void seekdir(DIR *d, long pos)
{
	struct listing *l;

	if (!RESOLVED(seekdir))
		return;
	if ((l = lookup(d)))
		restart(l);
	real.seekdir(d, pos);
}

/* ---- scandir and glob ---------------------------------------------------- */

typedef int (*select_fn)(const struct dirent64 *);
typedef int (*compare_fn)(const struct dirent64 **, const struct dirent64 **);

/* scandirat over these wrappers, for a directory under a prefix. */
static int scan(int dirfd, const char *path, struct dirent64 ***list, select_fn sel,
		compare_fn cmp)
{
	struct dirent64 **v = NULL, *e;
	size_t n = 0, cap = 0;
	int fd, saved = errno, err = 0;
	DIR *d;

	fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (!(d = fdopendir(fd))) {
		err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	for (errno = 0; (e = readdir64(d)); errno = 0) {
		struct dirent64 *copy;
		if (sel && !sel(e))
			continue;
		if (n == cap) {
			size_t c = cap ? cap * 2 : 32;
			struct dirent64 **w = realloc(v, c * sizeof *w);
			if (!w)
				break;
			v = w;
			cap = c;
		}
		if (!(copy = malloc(sizeof *copy)))
			break;
		memcpy(copy, e, offsetof(struct dirent64, d_name) + strlen(e->d_name) + 1);
		v[n++] = copy;
	}
	err = errno;
	closedir(d);
	if (err) {
		while (n)
			free(v[--n]);
		free(v);
		errno = err;
		return -1;
	}
	if (cmp && n > 1)
		qsort(v, n, sizeof *v, (int (*)(const void *, const void *))cmp);
	*list = v;
	errno = saved;
	return (int)n;
}

/* Whether (dirfd, path) is a directory under a prefix. */
static bool under_prefix(int dirfd, const char *path)
{
	char abs[CS_PATH_MAX];
	const char *rel;
	int saved = errno;
	bool yes = cs_active() && cs_path_locate_dir(dirfd, path, abs, &rel);

	errno = saved;
	return yes;
}

CS_EXPORT int scandirat64(int dirfd, const char *path, struct dirent64 ***list,
			  select_fn sel, compare_fn cmp)
{
	if (!RESOLVED(scandirat64))
		return sys_fail_int();
	if (!under_prefix(dirfd, path))
		return real.scandirat64(dirfd, path, list, sel, cmp);
	return scan(dirfd, path, list, sel, cmp);
}

CS_EXPORT int scandirat(int dirfd, const char *path, struct dirent ***list,
			int (*sel)(const struct dirent *),
			int (*cmp)(const struct dirent **, const struct dirent **))
{
	return scandirat64(dirfd, path, (struct dirent64 ***)list, (select_fn)sel, (compare_fn)cmp);
}

CS_EXPORT int scandir64(const char *path, struct dirent64 ***list, select_fn sel,
			compare_fn cmp)
{
	return scandirat64(AT_FDCWD, path, list, sel, cmp);
}

CS_EXPORT int scandir(const char *path, struct dirent ***list,
		      int (*sel)(const struct dirent *),
		      int (*cmp)(const struct dirent **, const struct dirent **))
{
	return scandirat64(AT_FDCWD, path, (struct dirent64 ***)list, (select_fn)sel,
			   (compare_fn)cmp);
}

/* glob reads directories through the functions a caller may give it
 * (GLOB_ALTDIRFUNC): given these wrappers, it lists what readdir lists.  A
 * caller that gives its own keeps them. */
static void *glob_opendir(const char *path)
{
	return opendir(path);
}

static void glob_closedir(void *d)
{
	closedir(d);
}

static void *glob_readdir(void *d)
{
	return readdir64(d);
}

CS_EXPORT int glob64(const char *pattern, int flags, int (*errfn)(const char *, int),
		     glob64_t *g)
{
	int rc;

	if (!RESOLVED(glob64))
		return GLOB_ABORTED;
	if (!cs_active() || (flags & GLOB_ALTDIRFUNC))
		return real.glob64(pattern, flags, errfn, g);
	g->gl_opendir = glob_opendir;
	g->gl_closedir = glob_closedir;
	g->gl_readdir = (struct dirent64 *(*)(void *))glob_readdir;
	g->gl_stat = (int (*)(const char *, struct stat64 *))stat64;
	g->gl_lstat = (int (*)(const char *, struct stat64 *))lstat64;
	rc = real.glob64(pattern, flags | GLOB_ALTDIRFUNC, errfn, g);
	g->gl_flags &= ~GLOB_ALTDIRFUNC;
	return rc;
}

CS_EXPORT int glob(const char *pattern, int flags, int (*errfn)(const char *, int), glob_t *g)
{
	_Static_assert(sizeof(glob_t) == sizeof(glob64_t), "glob_t and glob64_t differ here");
	return glob64(pattern, flags, errfn, (glob64_t *)g);
}
