/*
 * verify.c - one pass over this node's copies: are they what the registry
 * says this node holds, and does the registry know every copy that is here?
 *
 * First the copies the replicas table records here (current versions,
 * a page at a time by file id, by the replicas_node index: nothing is
 * held in memory but the page).  With a cursor (verify.h) the pass keeps
 * its place in the spool (walk.c) after each page and every second, and
 * one that was stopped, or failed, is taken up there by the next; the
 * walk of the directories below is started over as a whole.  Each is found beneath its namespace
 * directory (never through a symlink) and compared with its record:
 *   - missing: fetched again from another holder, the way a miss fetches
 *     (fetch.c), installed without replacing anything;
 *   - as installed (size and mtime) but with other bytes than the
 *     registry's (bit rot, tampering that kept the times): a good copy is
 *     fetched and renamed over it, if it is still the file that was read;
 *   - another size or mtime than installed: changed behind the library's
 *     back (written by a process without it).  Reported and left exactly
 *     as it is; this node's record of the version goes, since it does not
 *     hold those bytes (repair makes a copy elsewhere).
 * Then every regular file in the namespace directories that this node has
 * no record of (a copy installed while MySQL was down, whose record was
 * lost): one with the registry's bytes is recorded, as a cache (pinned 0:
 * repair promotes it if it is needed), unless this node was removed; any
 * other is reported (not in the registry, or another version: a write
 * made without the library, `cs-replicate import` registers such files)
 * and never touched.
 *
 * What a host may be doing right now is left alone: a file changed in the
 * last CS_VERIFY_SETTLE seconds (a minute; by its ctime, which no one can
 * set back), one open for writing, and one whose write, delete or rename
 * still waits in a journal (the registry does not show it yet: putting
 * back a file a host just deleted would have its delete entry publish it
 * again).  Such files are judged at the next pass.  What is
 * changed is decided under the store's per-path lock, which the agent and
 * `cs-replicate verify` share, and the registry is asked again just before:
 * a version that moved on meanwhile is the sweep's, not verify's.
 *
 * Reading is bounded by a token bucket (bytes/s), in steps of at most
 * 0.1 s so that a stop is seen at once.  Reports go to the caller, counts
 * to metrics.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fetch.h"
#include "metrics.h"
#include "nodes.h"
#include "registry.h"
#include "sign.h"
#include "store.h"
#include "tail.h"
#include "verify.h"
#include "walk.h"

#define PAGE 1000               /* recorded copies read at once */
#define BATCH 256               /* files found on disk looked up at once */
#define MAX_DEPTH 64
#define BUF_SIZE (128 << 10)
#define STEP_US 100000          /* sleeps are this long at most */
#define SAVE_MS 1000            /* within a page, the place is kept this often */
#define DROPPED_MAX 65536       /* files reported changed that are remembered */

/* ---- the token bucket ------------------------------------------------- */

/* ---- a pass ------------------------------------------------------------- */

struct pass {
	const struct cs_verify_opts *o;
	struct cs_verify_result *r;
	struct cs_bucket bucket;
	uint32_t self;
	bool may_register;              /* not a removed node */
	unsigned char *buf;
	uint64_t *dropped;              /* files whose copy was reported changed: the */
	size_t ndropped, capdropped;    /* walk does not report them again */
	struct cs_walk w;               /* the pass's place (w.done: copies checked) */
	int64_t saved_ms;
};

/* The names journal entries not yet acknowledged are about. */
struct pending {
	char **ns, **rel;
	size_t n, cap;
	bool failed;                    /* some could not be kept: all unknown */
};

static bool stopped(const struct pass *ps)
{
	return ps->o->stop && *ps->o->stop;
}

/* n bytes were read (or fetched): counted, and slept for at the rate. */
static void pace(struct pass *ps, uint64_t n)
{
	int64_t wait = cs_bucket_take(&ps->bucket, n, cs_clock_us());

	ps->r->bytes += n;
	cs_count(CS_C_VERIFY_BYTES, n);
	while (wait > 0 && !stopped(ps)) {
		int64_t step = wait < STEP_US ? wait : STEP_US;
		usleep((useconds_t)step);
		wait -= step;
	}
}

static void tell(struct pass *ps, enum cs_verify_kind kind, const char *ns, const char *rel,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void tell(struct pass *ps, enum cs_verify_kind kind, const char *ns, const char *rel,
		 const char *fmt, ...)
{
	static const enum cs_counter counter[CS_VERIFY_KINDS] = {
		[CS_VERIFY_MENDED] = CS_C_VERIFY_MENDED,
		[CS_VERIFY_REGISTERED] = CS_C_VERIFY_REGISTERED,
		[CS_VERIFY_CHANGED] = CS_C_VERIFY_CHANGED,
	};
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	ps->r->count[kind]++;
	if (counter[kind])
		cs_count(counter[kind], 1);
	if (ps->o->report)
		ps->o->report(ps->o->arg, kind, ns, rel, why);
}

/* Changed here in the last CS_VERIFY_SETTLE seconds (by its ctime: the
 * kernel's clock, which nobody sets back, where a fetched copy keeps its
 * writer's mtime), or in the future: what a host may be doing now. */
static bool recent(const struct stat *st)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return now.tv_sec - st->st_ctim.tv_sec < cs_cfg.verify_settle ||
	       st->st_ctim.tv_sec > now.tv_sec;
}

static bool same_state(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       cs_mtime_ns(a) == cs_mtime_ns(b) && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* SHA-256 and size of the file open at fd, read from its start at the
 * pass's rate: 0, -ECANCELED when the pass was stopped, -errno. */
static int hash_fd(struct pass *ps, int fd, unsigned char sha[CS_SHA256_LEN], uint64_t *size)
{
	struct cs_sha256 h;
	off_t off = 0;
	int rc = cs_sha256_init(&h);

	while (rc == 0) {
		ssize_t n = pread(fd, ps->buf, BUF_SIZE, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : 0;
			break;
		}
		cs_sha256_update(&h, ps->buf, (size_t)n);
		off += n;
		pace(ps, (uint64_t)n);
		if (stopped(ps))
			rc = -ECANCELED;
	}
	if (rc < 0) {
		cs_sha256_free(&h);
		return rc;
	}
	cs_sha256_final(&h, sha);
	*size = (uint64_t)off;
	return 0;
}

/* rel in namespace p, opened to read beneath its directory: the descriptor
 * with *st, or -errno (-EXDEV when the way leads out or through a file). */
static int open_file(const struct cs_prefix *p, const char *rel, struct stat *st)
{
	int root = cs_store_root(p), dir, fd, e;
	const char *name;

	if (root < 0)
		return root;
	if ((dir = cs_store_open_parent(root, rel, false, &name)) < 0)
		return errno == EXDEV || errno == ELOOP || errno == ENOTDIR ? -EXDEV : -errno;
	if (fstatat(dir, name, st, AT_SYMLINK_NOFOLLOW) < 0) {
		e = errno;
		close(dir);
		return -e;
	}
	if (!S_ISREG(st->st_mode)) {
		close(dir);
		return -EXDEV;
	}
	fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	e = errno;
	close(dir);
	if (fd < 0)
		return e == ELOOP ? -EXDEV : -e;
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		close(fd);
		return -EXDEV;
	}
	return fd;
}

/* Whether rel in p is still the file st describes (dev, inode, size,
 * mtime, ctime). */
static bool still(const struct cs_prefix *p, const char *rel, const struct stat *st)
{
	struct stat now;
	int fd = open_file(p, rel, &now);

	if (fd < 0)
		return false;
	close(fd);
	return same_state(st, &now);
}

/* ---- what the journals still hold ------------------------------------- */

static int note_pending(void *arg, struct cs_entry *e)
{
	struct pending *pd = arg;
	const char *rels[2] = { e->rel, e->rel2 };

	for (int i = 0; i < 2; i++) {
		if (!rels[i][0])
			continue;
		if (pd->n == pd->cap) {
			size_t cap = pd->cap ? 2 * pd->cap : 64;
			char **a = realloc(pd->ns, cap * sizeof *a), **b;
			if (a)
				pd->ns = a;
			if (!a || !(b = realloc(pd->rel, cap * sizeof *b)))
				goto nomem;
			pd->rel = b;
			pd->cap = cap;
		}
		if (!(pd->ns[pd->n] = strdup(e->ns)))
			goto nomem;
		if (!(pd->rel[pd->n] = strdup(rels[i]))) {
			free(pd->ns[pd->n]);
			goto nomem;
		}
		pd->n++;
	}
	return 0;
nomem:
	pd->failed = true;
	return -ENOMEM;
}

static void pending_free(struct pending *pd)
{
	for (size_t i = 0; i < pd->n; i++) {
		free(pd->ns[i]);
		free(pd->rel[i]);
	}
	free(pd->ns);
	free(pd->rel);
	memset(pd, 0, sizeof *pd);
}

/* Whether a pending entry names (ns, rel) or a directory above it. */
static bool touched(const struct pending *pd, const char *ns, const char *rel)
{
	for (size_t i = 0; i < pd->n; i++) {
		size_t n = strlen(pd->rel[i]);

		if (strcmp(pd->ns[i], ns) == 0 && strncmp(pd->rel[i], rel, n) == 0 &&
		    (rel[n] == '\0' || rel[n] == '/'))
			return true;
	}
	return false;
}

/* ---- the recorded copies ----------------------------------------------- */

enum verdict { GOOD, MISSING, CORRUPT, CHANGED, RETIMED, SKIP, FAILED };

/* A copy that needs more than a look: what was found. */
struct cand {
	const struct cs_copy *c;
	const struct cs_prefix *p;
	enum verdict v;
	struct stat st;                 /* CORRUPT: the file as read */
	char why[192];
};

/* Look at c's file: the verdict, x->why and x->st filled for what needs
 * more. */
static enum verdict look(struct pass *ps, const struct cs_copy *c, struct cand *x)
{
	unsigned char sha[CS_SHA256_LEN];
	struct stat st, after;
	uint64_t size;
	int fd = open_file(x->p, c->rel, &st), rc;

	if (fd == -ENOENT) {
		snprintf(x->why, sizeof x->why, "missing");
		return MISSING;
	}
	if (fd == -EXDEV) {
		snprintf(x->why, sizeof x->why, "changed behind the library's back: not a "
			 "regular file any more, or reached through a symlink or a file");
		return CHANGED;
	}
	if (fd < 0) {
		snprintf(x->why, sizeof x->why, "cannot read it: %s", strerror(-fd));
		return FAILED;
	}
	if (recent(&st)) {
		close(fd);
		return SKIP;
	}
	if ((uint64_t)st.st_size != c->held_size) {
		rc = cs_store_writing_now(fd);
		close(fd);
		if (rc == 1)
			return SKIP;
		snprintf(x->why, sizeof x->why, "changed behind the library's back: %" PRIu64
			 " bytes, %" PRIu64 " when installed", (uint64_t)st.st_size, c->held_size);
		return CHANGED;
	}
	rc = hash_fd(ps, fd, sha, &size);
	if (rc == 0 && (fstat(fd, &after) < 0 || !same_state(&st, &after)))
		rc = -EAGAIN;           /* changed while read: a host is at it */
	bool good = rc == 0 && size == c->size && memcmp(sha, c->sha256, CS_SHA256_LEN) == 0;
	if (rc == 0 && !good && cs_store_writing_now(fd) == 1)
		rc = -EAGAIN;
	close(fd);
	if (rc == -ECANCELED || rc == -EAGAIN)
		return SKIP;
	if (rc < 0) {
		snprintf(x->why, sizeof x->why, "cannot read it: %s", strerror(-rc));
		return FAILED;
	}
	x->st = st;
	if (cs_mtime_ns(&st) != c->held_mtime_ns) {
		/* Touched without the library: its time alone is no harm. */
		snprintf(x->why, sizeof x->why, good ? "its mtime was changed behind the "
			 "library's back, its bytes are the registry's" : "changed behind the "
			 "library's back: other bytes and another mtime than installed");
		return good ? RETIMED : CHANGED;
	}
	if (good)
		return GOOD;
	if (size != c->size)
		snprintf(x->why, sizeof x->why, "%" PRIu64 " bytes where the registry has %" PRIu64
			 ", with the size and mtime it was installed with", size, c->size);
	else
		snprintf(x->why, sizeof x->why, "corrupted: its SHA-256 is not the registry's, "
			 "with the size and mtime it was installed with");
	return CORRUPT;
}

/* Whether c is still this node's copy of the registry's current version:
 * 0 with *f, 1 when the registry moved on (a new version, a delete: the
 * sweep's business), -EAGAIN. */
static int still_current(const struct pass *ps, const struct cs_copy *c, struct cs_file *f)
{
	int rc = cs_registry_lookup_db(c->ns, c->rel, f);

	if (rc == -ENOENT)
		return 1;
	if (rc < 0)
		return -EAGAIN;
	return f->deleted || f->version != c->version || !cs_file_holds(f, ps->self);
}

/* Fetch x's copy again (missing, or corrupted) from another holder. */
static int mend(struct pass *ps, struct cand *x, struct cs_file *f)
{
	const struct cs_copy *c = x->c;
	bool replace = x->v == CORRUPT;
	struct cs_install in;
	int lock, rc;

	if (!ps->o->mend) {
		tell(ps, CS_VERIFY_UNMENDED, c->ns, c->rel, "%s; left as it is (not mending)", x->why);
		return 0;
	}
	if ((rc = cs_store_begin(x->p, c->rel, &in)) < 0) {
		tell(ps, CS_VERIFY_ERROR, c->ns, c->rel, "%s; cannot install a copy here: %s", x->why,
		     rc == -EXDEV ? "the way to it leads out of the namespace or through a file" :
				    strerror(-rc));
		return 0;
	}
	if ((rc = cs_fetch_into(x->p, c->rel, &in, f, false)) < 0) {
		char how[64] = "";

		cs_store_abort(&in);
		if (rc == -ETIMEDOUT)
			snprintf(how, sizeof how, " in time");
		else if (rc != -ENOENT)
			snprintf(how, sizeof how, " (%s)", strerror(-rc));
		tell(ps, CS_VERIFY_ERROR, c->ns, c->rel, "%s; no other node delivered version %"
		     PRIu64 "%s", x->why, c->version, how);
		return 0;
	}
	pace(ps, f->size);
	/* A corrupted copy is replaced only while it is the file that was
	 * read: anything else there now is someone's newer work. */
	lock = cs_store_lock(c->ns, c->rel);
	if (replace && !still(x->p, c->rel, &x->st))
		rc = -ESTALE;
	else
		rc = cs_store_commit(&in, f->mtime_ns, replace);
	cs_store_unlock(lock);
	if (rc == -ESTALE)
		cs_store_abort(&in);
	if (rc == -ESTALE || rc == 1) {
		ps->r->skipped++;       /* changed, or made, meanwhile: next pass */
		return 0;
	}
	if (rc < 0) {
		tell(ps, CS_VERIFY_ERROR, c->ns, c->rel, "%s; cannot install the good copy: %s",
		     x->why, strerror(-rc));
		return 0;
	}
	struct cs_held h = { f->id, f->version, f->size, f->mtime_ns };
	rc = cs_registry_hold(&h, 1, c->pinned);
	tell(ps, CS_VERIFY_MENDED, c->ns, c->rel, "%s; fetched again from another node%s", x->why,
	     rc < 0 ? " (not recorded again yet: registry unreachable)" : "");
	return 0;
}

/* x's copy has the registry's bytes with another mtime than recorded: its
 * record says how it is now (so the sweep knows it when the version moves
 * on), pinned as it was. */
static int retimed(struct pass *ps, struct cand *x, const struct cs_file *f)
{
	const struct cs_copy *c = x->c;
	struct cs_held h = { f->id, f->version, (uint64_t)x->st.st_size, cs_mtime_ns(&x->st) };
	int rc;

	if (!ps->o->mend) {
		tell(ps, CS_VERIFY_UNRECORDED, c->ns, c->rel, "%s; not recorded as it is now (not "
		     "mending)", x->why);
		return 0;
	}
	if ((rc = cs_registry_hold(&h, 1, c->pinned)) < 0)
		return rc;
	tell(ps, CS_VERIFY_REGISTERED, c->ns, c->rel, "%s; recorded as it is now", x->why);
	return 0;
}

/* A file whose copy was reported changed in this pass. */
static void dropped(struct pass *ps, uint64_t file_id)
{
	if (ps->ndropped == DROPPED_MAX)
		return;         /* so many: the walk may report some again */
	if (ps->ndropped == ps->capdropped) {
		size_t cap = ps->capdropped ? 2 * ps->capdropped : 64;
		uint64_t *a = realloc(ps->dropped, cap * sizeof *a);
		if (!a)
			return;
		ps->dropped = a;
		ps->capdropped = cap;
	}
	ps->dropped[ps->ndropped++] = file_id;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* x's copy was changed here without the library: reported, never touched;
 * its record goes, since this node does not hold that version. */
static int changed(struct pass *ps, struct cand *x)
{
	const struct cs_copy *c = x->c;
	int rc = 0;

	dropped(ps, c->file_id);
	if (ps->o->mend)
		rc = cs_registry_unhold(c->file_id, c->version, c->held_size, c->held_mtime_ns);
	tell(ps, CS_VERIFY_CHANGED, c->ns, c->rel, "%s; left as it is, %s", x->why,
	     !ps->o->mend ? "still recorded as held here (not mending)" :
	     rc < 0 ? "its record not dropped yet (registry unreachable)" :
		      "no longer recorded as held here");
	return rc == -EAGAIN ? rc : 0;
}

/* What more the copies x[0, n) of a page need, now that every one was
 * looked at: the journals are read once for them all, after. */
static int settle(struct pass *ps, struct cand *x, int n)
{
	struct pending pd = { 0 };
	int rc = 0;

	if (n == 0)
		return 0;
	if (cs_tail_each_pending(note_pending, &pd) < 0 || pd.failed || !cs_cfg.spool[0]) {
		/* Unknown what hosts are doing: nothing is judged. */
		cs_error_every(60, "verify: cannot read the journals in '%s'; bad copies are "
			       "left for a later pass", cs_cfg.spool);
		ps->r->skipped += (uint64_t)n;
		pending_free(&pd);
		return 0;
	}
	for (int i = 0; i < n && rc == 0 && !stopped(ps); i++) {
		struct cs_file f;

		if (touched(&pd, x[i].c->ns, x[i].c->rel) ||
		    (rc = still_current(ps, x[i].c, &f)) == 1) {
			ps->r->skipped++;
			rc = 0;
			continue;
		}
		if (rc < 0)
			break;
		rc = x[i].v == CHANGED ? changed(ps, &x[i]) :
		     x[i].v == RETIMED ? retimed(ps, &x[i], &f) : mend(ps, &x[i], &f);
	}
	pending_free(&pd);
	return rc;
}

/* Keep the pass's place: after, the last file id whose copy is done with. */
static void keep(struct pass *ps, uint64_t after)
{
	if (!ps->o->cursor)
		return;
	ps->w.after = after;
	cs_walk_save(ps->o->cursor, &ps->w);
	ps->saved_ms = cs_clock_ms();
}

/* The copies the registry records here, a page at a time from the pass's
 * place; the place kept after each page, and every SAVE_MS within one
 * (short of the copies that still wait to be settled). */
static int recorded_copies(struct pass *ps)
{
	struct cs_copy *page = malloc(PAGE * sizeof *page);
	struct cand *x = malloc(PAGE * sizeof *x);
	uint64_t after = ps->w.after, total = 0;
	int n = 0, rc = 0;

	if (!page || !x) {
		free(page);
		free(x);
		return -ENOMEM;
	}
	/* By the index alone (a few old versions' records too: set right at
	 * the end), never a join over everything held here. */
	if (cs_walk_count(ps->self, 0, &total) == 0)
		cs_gauge_set(CS_G_VERIFY_TOTAL, (int64_t)total);
	cs_gauge_set(CS_G_VERIFY_POSITION, (int64_t)ps->w.done);
	while (!stopped(ps) && (n = cs_registry_copies(after, page, PAGE)) > 0) {
		int nx = 0;

		for (int i = 0; i < n && !stopped(ps); i++) {
			struct cand *c = &x[nx];

			if (nx == 0 && cs_clock_ms() - ps->saved_ms >= SAVE_MS)
				keep(ps, after);
			after = page[i].file_id;
			c->c = &page[i];
			c->p = cs_config_namespace(&cs_cfg, page[i].ns);
			if (!c->p || !cs_path_rel_valid(page[i].rel, strlen(page[i].rel)))
				continue;       /* not a namespace of this node's */
			ps->r->copies++;
			ps->w.done++;
			cs_count(CS_C_VERIFY_FILES, 1);
			cs_gauge_set(CS_G_VERIFY_POSITION, (int64_t)ps->w.done);
			switch ((c->v = look(ps, &page[i], c))) {
			case GOOD:
				break;
			case SKIP:
				ps->r->skipped++;
				break;
			case FAILED:
				tell(ps, CS_VERIFY_ERROR, page[i].ns, page[i].rel, "%s", c->why);
				break;
			default:
				nx++;
			}
		}
		if ((rc = settle(ps, x, nx)) < 0)
			break;
		if (stopped(ps))
			break;          /* the page's place was kept within it */
		keep(ps, after);
		if (n < PAGE)
			break;
	}
	if (n < 0)
		rc = n;
	if (rc == 0 && !stopped(ps)) {
		/* Done with the records: on to the directories. */
		cs_gauge_set(CS_G_VERIFY_TOTAL, (int64_t)ps->w.done);
		ps->w.phase = 1;
		keep(ps, 0);
	}
	free(page);
	free(x);
	return rc;
}

/* ---- files found on disk ------------------------------------------------ */

struct found {
	const struct cs_prefix *p;
	int n;
	struct cs_found v[BATCH];
	struct stat st[BATCH];
};

/* One file found here that this node has no record of. */
static void unrecorded(struct pass *ps, const struct cs_prefix *p, const struct cs_found *v,
		       const struct stat *st)
{
	const struct cs_file *f = &v->f;
	unsigned char sha[CS_SHA256_LEN];
	struct stat now, after;
	uint64_t size;
	int fd, rc;

	if (recent(st)) {
		ps->r->skipped++;
		return;
	}
	if (!v->known || f->deleted) {
		tell(ps, CS_VERIFY_UNKNOWN, p->name, v->rel, "not in the registry: written without "
		     "the library, or its write not replicated yet (cs-replicate import registers "
		     "it); left as it is");
		return;
	}
	if ((uint64_t)st->st_size != f->size) {
		tell(ps, CS_VERIFY_UNKNOWN, p->name, v->rel, "differs from the registry's version %"
		     PRIu64 " (%" PRIu64 " bytes here, %" PRIu64 " registered); left as it is",
		     f->version, (uint64_t)st->st_size, f->size);
		return;
	}
	if ((fd = open_file(p, v->rel, &now)) < 0 || !same_state(st, &now)) {
		if (fd >= 0)
			close(fd);
		ps->r->skipped++;       /* gone or changed since the walk */
		return;
	}
	rc = hash_fd(ps, fd, sha, &size);
	if (rc == 0 && (fstat(fd, &after) < 0 || !same_state(st, &after) ||
			cs_store_writing_now(fd) == 1))
		rc = -EAGAIN;
	close(fd);
	if (rc == -ECANCELED || rc == -EAGAIN) {
		ps->r->skipped++;
		return;
	}
	if (rc < 0) {
		tell(ps, CS_VERIFY_ERROR, p->name, v->rel, "cannot read it: %s", strerror(-rc));
		return;
	}
	if (size != f->size || memcmp(sha, f->sha256, CS_SHA256_LEN) != 0) {
		tell(ps, CS_VERIFY_UNKNOWN, p->name, v->rel, "differs from the registry's version %"
		     PRIu64 " (another SHA-256); left as it is", f->version);
		return;
	}
	if (!ps->may_register) {
		ps->r->skipped++;       /* a removed node holds nothing */
		return;
	}
	if (!ps->o->mend) {
		tell(ps, CS_VERIFY_UNRECORDED, p->name, v->rel, "the registry's version %" PRIu64
		     ", not recorded as held here; not recorded (not mending)", f->version);
		return;
	}
	/* As it is on disk, so the sweep knows it when the version moves on. */
	struct cs_held h = { f->id, f->version, size, cs_mtime_ns(st) };
	if ((rc = cs_registry_hold(&h, 1, false)) < 0)
		tell(ps, CS_VERIFY_ERROR, p->name, v->rel, "the registry's version %" PRIu64
		     ", not recorded as held here; cannot record it now (registry unreachable)",
		     f->version);
	else
		tell(ps, CS_VERIFY_REGISTERED, p->name, v->rel, "the registry's version %" PRIu64
		     ", not recorded as held here; recorded", f->version);
}

static int flush(struct pass *ps, struct found *b)
{
	int rc = b->n ? cs_registry_found(b->p->name, b->v, b->n) : 0;

	for (int i = 0; i < b->n; i++) {
		const struct cs_found *v = &b->v[i];
		bool reported = v->known && ps->ndropped &&
				bsearch(&v->f.id, ps->dropped, ps->ndropped, sizeof *ps->dropped,
					cmp_u64);

		if (rc == 0 && !v->recorded && !reported && !stopped(ps))
			unrecorded(ps, b->p, v, &b->st[i]);
		free((char *)b->v[i].rel);
	}
	b->n = 0;
	return rc;
}

/* Walk the directory open at fd (taken), rel prefix below the namespace. */
static int walk(struct pass *ps, struct found *b, int fd, const char *prefix, int depth)
{
	DIR *d = fdopendir(fd);
	struct dirent *e;
	int rc = 0;

	if (!d) {
		close(fd);
		return 0;
	}
	while (rc == 0 && !stopped(ps) && (e = readdir(d))) {
		char rel[CS_PATH_MAX];
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    !strncmp(e->d_name, ".cs-", 4))
			continue;       /* the store's files on their way in */
		if ((size_t)snprintf(rel, sizeof rel, "%s%s%s", prefix, *prefix ? "/" : "",
				     e->d_name) >= sizeof rel ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode) && depth < MAX_DEPTH) {
			int sub = openat(dirfd(d), e->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				rc = walk(ps, b, sub, rel, depth + 1);
			continue;
		}
		/* Symlinks, devices and hard links (another name may lead
		 * outside the namespace) are nothing the cluster holds. */
		if (!S_ISREG(st.st_mode) || st.st_nlink > 1)
			continue;
		if (!cs_path_rel_valid(rel, strlen(rel))) {
			tell(ps, CS_VERIFY_UNKNOWN, b->p->name, *prefix ? prefix : ".",
			     "holds a file whose name the cluster cannot hold; left as it is");
			continue;
		}
		if (!(b->v[b->n].rel = strdup(rel)))
			continue;
		b->st[b->n++] = st;
		if (b->n == BATCH)
			rc = flush(ps, b);
	}
	closedir(d);
	return rc;
}

static int found_copies(struct pass *ps)
{
	struct found *b = calloc(1, sizeof *b);
	int rc = 0;

	if (!b)
		return -ENOMEM;
	if (ps->ndropped)
		qsort(ps->dropped, ps->ndropped, sizeof *ps->dropped, cmp_u64);
	for (int i = 0; i < cs_cfg.nprefix && rc == 0 && !stopped(ps); i++) {
		int fd = open(cs_cfg.prefix[i].dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		b->p = &cs_cfg.prefix[i];
		if (fd < 0) {
			tell(ps, CS_VERIFY_ERROR, b->p->name, ".", "cannot read %s: %s", b->p->dir,
			     strerror(errno));
			continue;
		}
		rc = walk(ps, b, fd, "", 0);
		int r = flush(ps, b);
		if (rc == 0)
			rc = r;
	}
	free(b);
	return rc;
}

int cs_verify_pass(const struct cs_verify_opts *o, struct cs_verify_result *r)
{
	static long passes;
	struct pass ps = { .o = o, .r = r };
	int64_t start = cs_clock_ms();
	struct cs_node me;
	int rc;

	memset(r, 0, sizeof *r);
	if (!(ps.buf = malloc(BUF_SIZE)))
		return -ENOMEM;
	cs_bucket_init(&ps.bucket, o->rate, cs_clock_us());
	if ((rc = cs_nodes_self(&ps.self)) < 0 || (rc = cs_nodes_me(&me)) < 0) {
		free(ps.buf);
		return rc == -ENOMEM ? rc : -EAGAIN;
	}
	ps.may_register = me.state != CS_NODE_REMOVED;
	if (o->cursor && cs_walk_load(o->cursor, &ps.w) == 0 && (ps.w.after || ps.w.phase)) {
		r->resumed = true;
		r->resumed_disk = ps.w.phase != 0;
		r->resumed_after = ps.w.after;
		r->resumed_copies = ps.w.done;
		if (ps.w.phase)
			cs_info("verify: going on where the last pass stopped, in the namespace "
				"directories (%" PRIu64 " copies checked before)", ps.w.done);
		else
			cs_info("verify: going on where the last pass stopped, after file id %" PRIu64
				" (%" PRIu64 " copies checked before)", ps.w.after, ps.w.done);
	}
	ps.saved_ms = cs_clock_ms();
	if (ps.w.phase == 0) {
		rc = recorded_copies(&ps);
	} else {
		cs_gauge_set(CS_G_VERIFY_TOTAL, (int64_t)ps.w.done);
		cs_gauge_set(CS_G_VERIFY_POSITION, (int64_t)ps.w.done);
	}
	if (rc == 0 && !stopped(&ps))
		rc = found_copies(&ps);
	free(ps.buf);
	free(ps.dropped);
	r->ms = cs_clock_ms() - start;
	r->stopped = stopped(&ps);
	if (rc == 0 && !r->stopped && o->cursor) {
		/* A whole pass: the next begins at the start. */
		ps.w = (struct cs_walk){ .lap = ps.w.lap + 1 };
		keep(&ps, 0);
	}
	if (rc == 0 && !r->stopped)
		cs_gauge_set(CS_G_VERIFY_PASSES, __atomic_add_fetch(&passes, 1, __ATOMIC_RELAXED));
	return rc == -ENOMEM || rc == 0 ? rc : -EAGAIN;
}
