/*
 * replicator.c - turning journal entries into cluster state.
 *
 * For one entry (cs_replicate_entry): a write is checksummed, registered as
 * a new version (registry.c) and pushed to enough other nodes (peer.c) to
 * reach CS_REPLICAS copies; a delete becomes a tombstone and holders are told
 * to drop their copies; a rename registers the new path, asks holders of the
 * old one to rename their copy (no transfer when they have these bytes), and
 * tombstones the old path.  Every step reads the current local state, so
 * replaying an entry is harmless and an entry about a path that has since
 * gone (a temporary name renamed away) does nothing.
 *
 * Who runs entries: a thread in the writing process, started lazily by the
 * first write and never in the constructor, reading its own journal
 * (journal.c) as it grows; and cs-replicate, which finishes the journals of
 * processes that died (cs_replicate_orphans).  The thread blocks every
 * signal, never holds anything a host thread waits for, retries with backoff
 * while the registry or every target is down, and acknowledges an entry only
 * once the registry has committed it and a peer holds the bytes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cs.h"
#include "journal.h"

#define SETTLE_MS 5             /* a closed temp file is usually renamed by then */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define COMPACT_BYTES (1 << 20)
#define ORPHAN_NEW_SECONDS 60   /* a .new journal older than this was abandoned */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- one entry ------------------------------------------------------ */

static int local_path(const struct cs_prefix *p, const char *rel, char *abs)
{
	if ((size_t)snprintf(abs, CS_PATH_MAX, "%s/%s", p->dir, rel) >= CS_PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

static int stopping;            /* the host is exiting: start nothing new */

/*
 * Writes go in batches: every file is hashed, all are registered in one
 * transaction, and the pushes run side by side, so a busy writer's entries
 * share the round trips instead of queueing behind each other's.
 */
struct wjob {
	const struct cs_prefix *p;
	const char *rel;
	int fd;                 /* the file as hashed, pushed from; -1: none */
	dev_t dev;              /* ... and which file that was */
	ino_t ino;
	struct cs_publish pub;  /* pub.f: the registered record */
	struct cs_node *to;     /* where to push, best first */
	int nto, next;          /* how many, and the next one to try */
	int have, acks;         /* copies there were, copies pushed */
	int rc;                 /* 0 done, -EAGAIN to retry */
};

/* Open and hash rel.  w->fd stays -1 when there is no regular file at rel
 * any more (a later entry says what became of it); -EAGAIN when it could
 * not be read. */
static int hash_job(struct wjob *w)
{
	char abs[CS_PATH_MAX];
	struct stat a, b;
	uint64_t size;
	int fd, rc;

	w->fd = -1;
	w->pub.ns = w->p->name;
	w->pub.rel = w->rel;
	if ((rc = local_path(w->p, w->rel, abs)) < 0)
		return 0;
	fd = open(abs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &a) < 0 || !S_ISREG(a.st_mode)) {
		rc = fd < 0 && errno != ENOENT && errno != ELOOP && errno != ENOTDIR ? -errno : 0;
		if (fd >= 0)
			close(fd);
		if (rc < 0) {
			cs_error_every(10, "%s: cannot read to replicate: %s", abs, strerror(-rc));
			return -EAGAIN;
		}
		cs_debug("%s: gone before it was replicated", abs);
		return 0;
	}
	rc = cs_sha256_fd(fd, w->pub.sha256, &size);
	/* Written to again while hashed: its next close brings another entry,
	 * but what is registered must be one state of the file, so hash again. */
	if (rc == 0 && fstat(fd, &b) == 0 &&
	    (b.st_mtim.tv_sec != a.st_mtim.tv_sec || b.st_mtim.tv_nsec != a.st_mtim.tv_nsec ||
	     (uint64_t)b.st_size != size)) {
		a = b;
		rc = cs_sha256_fd(fd, w->pub.sha256, &size);
	}
	if (rc < 0) {
		close(fd);
		return -EAGAIN;
	}
	w->fd = fd;
	w->dev = a.st_dev;
	w->ino = a.st_ino;
	w->pub.size = size;
	w->pub.mtime_ns = cs_mtime_ns(&a);
	return 0;
}

/* Hash every job and register what was read as each file's newest version,
 * all in one transaction.  A job whose file is gone is done (rc 0, fd -1);
 * one whose file could not be read is not (rc -EAGAIN, fd -1) and does not
 * hold the others back.  0, or -EAGAIN for all when the registry did not
 * take them. */
static int publish_jobs(struct wjob *w, int n)
{
	struct cs_publish *v = malloc(n * sizeof *v);
	int m = 0, rc = 0;

	if (!v)
		return -EAGAIN;
	for (int i = 0; i < n; i++) {
		w[i].to = NULL;
		w[i].nto = w[i].next = w[i].acks = w[i].have = 0;
		w[i].rc = hash_job(&w[i]);
		if (w[i].fd >= 0)
			v[m++] = w[i].pub;
	}
	if ((rc = cs_registry_publish_many(v, m)) < 0) {
		cs_debug("registering %d files: %s", m, strerror(-rc));
		free(v);
		return -EAGAIN;
	}
	for (int i = 0, k = 0; i < n; i++)
		if (w[i].fd >= 0)
			w[i].pub.f = v[k++].f;
	free(v);
	/* Another process may have renamed other bytes over the path while we
	 * hashed and registered after it: the registry now names our bytes,
	 * the disk has theirs.  Such a job runs again (and registers what is
	 * there); pushing from our descriptor would spread the wrong bytes. */
	for (int i = 0; i < n; i++) {
		char abs[CS_PATH_MAX];
		struct stat st;

		if (w[i].fd < 0)
			continue;
		if (local_path(w[i].p, w[i].rel, abs) < 0 || lstat(abs, &st) < 0 ||
		    st.st_dev != w[i].dev || st.st_ino != w[i].ino ||
		    (uint64_t)st.st_size != w[i].pub.size ||
		    cs_mtime_ns(&st) != w[i].pub.mtime_ns) {
			cs_debug("%s/%s: changed while it was registered; again", w[i].p->name, w[i].rel);
			close(w[i].fd);
			w[i].fd = -1;
			w[i].rc = -EAGAIN;
		}
	}
	return 0;
}

/*
 * Push each published job's file to other nodes until CS_REPLICAS copies
 * exist (w->have counts copies made by renames the registry has not shown
 * yet).  All jobs' pushes of a round run at once; a failed one is tried on
 * the job's next target in the next round.  A job is done when the count is
 * reached, or when at least one other node holds it and none is left to
 * ask; else its rc is -EAGAIN.
 */
static void spread_jobs(struct wjob *w, int n)
{
	int want = cs_cfg.replicas, cap = 0;
	struct cs_push *push;

	for (int i = 0; i < n; i++) {
		if (w[i].fd < 0)
			continue;
		w[i].have += w[i].pub.f.nholders;
		if (w[i].have >= want || !(w[i].to = malloc(CS_MAX_HOLDERS * sizeof *w[i].to)))
			continue;
		w[i].nto = cs_registry_targets(&w[i].pub.f, w[i].to, CS_MAX_HOLDERS);
		if (w[i].nto < 0)
			w[i].nto = 0;
		/* Counted now, so the next file of the batch goes elsewhere. */
		for (int j = 0; j < w[i].nto && j < want - w[i].have; j++)
			cs_registry_note_copy(w[i].to[j].id);
		cap += w[i].nto;
	}
	int *owner = cap > 0 ? malloc(cap * sizeof *owner) : NULL;
	if (owner && (push = malloc(cap * sizeof *push))) {
		while (!__atomic_load_n(&stopping, __ATOMIC_ACQUIRE)) {
			int np = 0;
			for (int i = 0; i < n; i++) {
				for (int need = want - w[i].have - w[i].acks;
				     need > 0 && w[i].next < w[i].nto; need--) {
					const struct cs_node *t = &w[i].to[w[i].next++];
					owner[np] = i;
					push[np++] = (struct cs_push){ .url = t->url, .ns = w[i].p->name,
								       .rel = w[i].rel, .fd = w[i].fd,
								       .f = &w[i].pub.f };
				}
			}
			if (np == 0)
				break;
			cs_peer_push_many(push, np, &stopping);
			for (int k = 0; k < np; k++) {
				struct wjob *x = &w[owner[k]];
				if (push[k].rc == 0) {
					x->acks++;
				} else if (push[k].rc == -ESTALE) {
					x->acks = want;  /* a newer version exists: its entry spreads it */
					x->next = x->nto;
				}
			}
		}
		free(push);
	}
	free(owner);
	for (int i = 0; i < n; i++) {
		int copies = w[i].have + w[i].acks;

		free(w[i].to);
		w[i].to = NULL;
		if (w[i].fd < 0 || w[i].rc < 0 || copies >= want || copies >= 2)
			continue;
		cs_debug("%s/%s: %d of %d copies; will retry", w[i].p->name, w[i].rel, copies, want);
		w[i].rc = -EAGAIN;
	}
}

static void close_jobs(struct wjob *w, int n)
{
	for (int i = 0; i < n; i++)
		if (w[i].fd >= 0) {
			close(w[i].fd);
			w[i].fd = -1;
		}
}

/* Replicate the writes w[0..n) (distinct paths): each w->rc says how it went. */
static void write_jobs(struct wjob *w, int n)
{
	if (publish_jobs(w, n) < 0) {
		for (int i = 0; i < n; i++)
			w[i].rc = -EAGAIN;
	} else {
		spread_jobs(w, n);
	}
	close_jobs(w, n);
}

/* Tombstone rel unless a file is there again; tell its holders. */
static int unpublish(const struct cs_prefix *p, const char *rel)
{
	struct cs_file prev;
	struct cs_node *nodes;
	uint32_t self = 0;
	int n, rc;

	rc = cs_registry_unpublish(p->name, rel, &prev);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return -EAGAIN;
	nodes = malloc(CS_MAX_HOLDERS * sizeof *nodes);
	if (!nodes)
		return 0;       /* their sweepers will notice */
	cs_registry_self(&self);
	n = cs_registry_holders(&prev, nodes, CS_MAX_HOLDERS);
	for (int i = 0; i < n; i++)
		if (nodes[i].id != self && nodes[i].up && nodes[i].url[0])
			cs_peer_delete(nodes[i].url, p->name, rel);
	free(nodes);
	return 0;
}

static bool exists(const struct cs_prefix *p, const char *rel, mode_t *mode)
{
	char abs[CS_PATH_MAX];
	struct stat st;

	if (local_path(p, rel, abs) < 0 || lstat(abs, &st) < 0)
		return false;
	if (mode)
		*mode = st.st_mode;
	return true;
}

static int write_entry(const struct cs_prefix *p, const char *rel)
{
	struct wjob w = { .p = p, .rel = rel };

	write_jobs(&w, 1);
	return w.rc;
}

static int delete_entry(const struct cs_prefix *p, const char *rel)
{
	mode_t mode;

	if (exists(p, rel, &mode) && S_ISREG(mode))
		return write_entry(p, rel);     /* created again since */
	return unpublish(p, rel);
}

/* One file renamed from -> to within namespace p. */
static int move_one(const struct cs_prefix *p, const char *from, const char *to)
{
	struct wjob w = { .p = p, .rel = to };
	struct cs_file prev;
	struct cs_node *nodes;
	uint32_t self = 0;
	int moved = 0, rc;

	if (publish_jobs(&w, 1) < 0 || w.rc < 0) {
		close_jobs(&w, 1);
		return -EAGAIN;
	}
	if (w.fd < 0)
		return delete_entry(p, from);
	/* Holders of the old name that have these bytes rename their copy. */
	const struct cs_file *fto = &w.pub.f;
	if (cs_registry_lookup_db(p->name, from, &prev) == 0 && !prev.deleted &&
	    prev.size == fto->size && memcmp(prev.sha256, fto->sha256, CS_SHA256_LEN) == 0 &&
	    (nodes = malloc(CS_MAX_HOLDERS * sizeof *nodes))) {
		int n = cs_registry_holders(&prev, nodes, CS_MAX_HOLDERS);
		cs_registry_self(&self);
		for (int i = 0; i < n && fto->nholders + moved < cs_cfg.replicas + 8; i++) {
			bool holds = nodes[i].id == self;
			for (int j = 0; j < fto->nholders; j++)
				holds |= fto->holder[j] == nodes[i].id;
			if (!holds && nodes[i].up && nodes[i].url[0] &&
			    cs_peer_move(nodes[i].url, p->name, from, to, fto) == 0)
				moved++;
		}
		free(nodes);
	}
	if (!exists(p, from, NULL) && (rc = unpublish(p, from)) < 0) {
		close_jobs(&w, 1);
		return rc;
	}
	w.have = moved;
	spread_jobs(&w, 1);
	close_jobs(&w, 1);
	return w.rc;
}

/* A renamed directory: every file below it moved. */
static int move_tree(const struct cs_prefix *p, const char *from, const char *to,
		     int depth)
{
	char abs[CS_PATH_MAX];
	struct dirent *d;
	DIR *dir;
	int rc = 0;

	if (depth > 64 || local_path(p, to, abs) < 0 || !(dir = opendir(abs)))
		return 0;
	while ((d = readdir(dir))) {
		char f2[CS_PATH_MAX], t2[CS_PATH_MAX];
		mode_t mode;

		if (d->d_name[0] == '.' && (!d->d_name[1] || (d->d_name[1] == '.' && !d->d_name[2])))
			continue;
		if (!strncmp(d->d_name, ".cs-", 4) ||
		    (size_t)snprintf(f2, sizeof f2, "%s/%s", from, d->d_name) >= sizeof f2 ||
		    (size_t)snprintf(t2, sizeof t2, "%s/%s", to, d->d_name) >= sizeof t2 ||
		    !exists(p, t2, &mode))
			continue;
		int r = S_ISDIR(mode) ? move_tree(p, f2, t2, depth + 1)
				      : S_ISREG(mode) ? move_one(p, f2, t2) : 0;
		if (r < 0)
			rc = r;
	}
	closedir(dir);
	return rc;
}

static int rename_entry(const struct cs_prefix *p, const char *from, const char *to)
{
	mode_t mode;

	if (!exists(p, to, &mode))
		return delete_entry(p, from);   /* renamed on or removed since */
	if (S_ISDIR(mode))
		return move_tree(p, from, to, 0);
	return S_ISREG(mode) ? move_one(p, from, to) : 0;
}

int cs_replicate_entry(const struct cs_entry *e)
{
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, e->ns);

	if (!p) {
		cs_warn("journal entry for unknown namespace '%s' dropped", e->ns);
		return 0;
	}
	cs_debug("replicating %c %s/%s%s%s", e->op, e->ns, e->rel, e->rel2[0] ? " -> " : "",
		 e->rel2);
	switch (e->op) {
	case CS_OP_WRITE:
		return write_entry(p, e->rel);
	case CS_OP_DELETE:
		return delete_entry(p, e->rel);
	case CS_OP_RENAME:
		return rename_entry(p, e->rel, e->rel2);
	}
	return 0;
}

/* ---- reading a journal ----------------------------------------------- */

struct pend {
	struct pend *next;
	uint64_t off;
	int fd;                 /* the journal to acknowledge it in */
	int64_t seen;           /* when it was read (ms) */
	char op;
	bool done;              /* replicated: to be acknowledged */
	char *ns, *rel, *rel2;
};

struct queue {
	struct pend *head, **tail;
	unsigned long count;
};

static void pend_free(struct pend *x)
{
	free(x->ns);
	free(x->rel);
	free(x->rel2);
	free(x);
}

static void queue_add(struct queue *q, const struct cs_entry *e, int fd, int64_t seen)
{
	struct pend *x = calloc(1, sizeof *x);

	if (!x)
		return;
	x->off = e->off;
	x->fd = fd;
	x->seen = seen;
	x->op = e->op;
	x->ns = strdup(e->ns);
	x->rel = strdup(e->rel);
	x->rel2 = strdup(e->rel2);
	if (!x->ns || !x->rel || !x->rel2) {
		pend_free(x);
		return;
	}
	*q->tail = x;
	q->tail = &x->next;
	q->count++;
}

static void to_entry(const struct pend *x, struct cs_entry *e)
{
	e->op = x->op;
	e->off = x->off;
	snprintf(e->ns, sizeof e->ns, "%s", x->ns);
	snprintf(e->rel, sizeof e->rel, "%s", x->rel);
	snprintf(e->rel2, sizeof e->rel2, "%s", x->rel2);
}

/*
 * Parse the complete lines of buf[0, len) read at file offset base: entries
 * go to fn, acknowledged offsets to ack.  Returns the bytes consumed (up to
 * the last '\n').
 */
static size_t parse_lines(const char *buf, size_t len, uint64_t base,
			  void (*fn)(void *arg, struct cs_entry *e), void *arg)
{
	struct cs_entry *e = malloc(sizeof *e);
	size_t pos = 0;

	if (!e)
		return 0;
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		if (!nl)
			break;
		size_t n = nl - (buf + pos);
		int rc = cs_journal_parse(buf + pos, n, e);
		if (rc == 0)
			e->off = base + pos;
		if (rc >= 0)
			fn(arg, e);     /* K lines too: e->op == 'K' */
		else
			cs_warn("journal: unreadable line at offset %" PRIu64 " skipped", base + pos);
		pos += n + 1;
	}
	free(e);
	return pos;
}

/* ---- the thread in a writing process --------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
/* Held by the thread while it runs entries; the exit handler takes it for
 * good, so no entry is running when the host tears down its libraries. */
static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;
static int started;             /* 0 no, 1 starting/running */
static int efd = -1;            /* eventfd that wakes the thread (its number) */
static int kick_fd = -1;        /* the same, in the host's table; -1 once the
				 * host closed it (the thread then polls) */
static unsigned long done;      /* entries finished (acknowledged or dropped) */
static int failing;             /* the last try failed: backing off */
static struct queue q = { NULL, &q.head, 0 };

struct reader {
	int fd;                 /* our own descriptor of the journal */
	uint64_t off;           /* read up to here */
	uint64_t punched;       /* disk space given back up to here */
	int64_t now;
	char name[CS_PATH_MAX];
};

static void take(void *arg, struct cs_entry *e)
{
	struct reader *r = arg;

	if (e->op == 'K')
		return;         /* our own acknowledgements */
	queue_add(&q, e, r->fd, r->now);
}

/* Queue what was appended to the journal since r->off; how many entries. */
static unsigned long read_more(struct reader *r)
{
	unsigned long before = q.count;
	char *buf = r->fd >= 0 ? malloc(1 << 16) : NULL;
	ssize_t n;

	if (!buf)
		return 0;
	r->now = now_ms();
	for (;;) {
		n = pread(r->fd, buf, 1 << 16, r->off);
		if (n <= 0)
			break;
		size_t used = parse_lines(buf, n, r->off, take, r);
		if (used == 0)
			break;          /* a line still being written */
		r->off += used;
	}
	free(buf);
	return q.count - before;
}

static void finished(unsigned long k)
{
	pthread_mutex_lock(&mu);
	done += k;
	pthread_cond_broadcast(&idle_cv);
	pthread_mutex_unlock(&mu);
}

static int backoff;             /* ms, doubling while entries fail */
static int64_t retry_at;        /* no entry runs before this (backoff) */

/* Drop y, the entry at *pp, from queue qq. */
static void unlink_at(struct queue *qq, struct pend **pp)
{
	struct pend *y = *pp;

	*pp = y->next;
	if (!*pp)
		qq->tail = pp;
	qq->count--;
}

/* x, at *px in qq, is done: acknowledge it and drop it from the queue, with
 * the later writes of the same path already read: they are covered, their
 * bytes were on disk before their entries were.  (Looked for among the
 * next few only, so a backlog stays linear.)  How many entries that was. */
static unsigned long retire(struct queue *qq, struct pend **px)
{
	struct pend *x = *px;
	unsigned long k = 1;
	int looked = 0;

	cs_journal_ack(x->fd, x->off);
	unlink_at(qq, px);
	for (struct pend **pp = px; x->op == CS_OP_WRITE && *pp && looked < 256; looked++) {
		struct pend *y = *pp;
		if (y->op == CS_OP_WRITE && !strcmp(y->ns, x->ns) && !strcmp(y->rel, x->rel)) {
			cs_journal_ack(y->fd, y->off);
			unlink_at(qq, pp);
			pend_free(y);
			k++;
		} else {
			pp = &y->next;
		}
	}
	pend_free(x);
	return k;
}

#define BATCH_MAX 32
#define BATCH_LOOK 256          /* entries looked through for one batch */
#define BATCH_BYTES (8 << 20)   /* big files go few at a time: the first of
				 * a batch waits for all of them to be hashed */

/* The size of x's file now (0 when there is none). */
static uint64_t size_of(const struct pend *x)
{
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, x->ns);
	char abs[CS_PATH_MAX];
	struct stat st;

	if (!p || local_path(p, x->rel, abs) < 0 || lstat(abs, &st) < 0)
		return 0;
	return (uint64_t)st.st_size;
}

/*
 * The ripe writes at the head of qq, up to the first entry of another kind
 * (which must wait for them) or one not ripe yet: one per path (a later
 * write of a path is covered by the first), BATCH_BYTES at most unless the
 * first alone is more.  Returns how many went to b[]; *wait gets the ms
 * until the head ripens when none did.
 */
static int collect_writes(struct queue *qq, struct pend **b, int64_t now, int *wait)
{
	uint64_t bytes = 0;
	int n = 0, looked = 0;

	for (struct pend *x = qq->head; x && n < BATCH_MAX && looked < BATCH_LOOK;
	     x = x->next, looked++) {
		if (now - x->seen < SETTLE_MS) {
			if (x == qq->head)
				*wait = (int)(SETTLE_MS - (now - x->seen));
			break;
		}
		if (x->op != CS_OP_WRITE)
			break;
		bool dup = false;
		for (int i = 0; i < n && !dup; i++)
			dup = !strcmp(b[i]->rel, x->rel) && !strcmp(b[i]->ns, x->ns);
		if (dup)
			continue;
		bytes += size_of(x);
		if (n > 0 && bytes > BATCH_BYTES)
			break;
		b[n++] = x;
	}
	return n;
}

/* Run the writes b[0..n) as one batch; each done one is marked.  Whether
 * every one was done. */
static bool run_writes(struct pend **b, int n)
{
	struct wjob *w = calloc(n, sizeof *w);
	int m = 0;
	bool all = true;

	if (!w)
		return false;
	for (int i = 0; i < n; i++) {
		const struct cs_prefix *p = cs_config_namespace(&cs_cfg, b[i]->ns);
		if (!p) {
			cs_warn("journal entry for unknown namespace '%s' dropped", b[i]->ns);
			b[i]->done = true;
			continue;
		}
		w[m++] = (struct wjob){ .p = p, .rel = b[i]->rel };
	}
	if (m > 0)
		write_jobs(w, m);
	for (int i = 0, k = 0; i < n; i++) {
		if (b[i]->done)
			continue;
		b[i]->done = w[k++].rc == 0;
		all &= b[i]->done;
	}
	free(w);
	return all;
}

/*
 * Run what is ripe at the head of qq: a batch of writes, or the one entry
 * of another kind there.  What was done is acknowledged and leaves the
 * queue (*k: how many entries, coalesced ones included).  Returns false
 * when something failed (it stays, in order); *wait >= 0 when nothing was
 * ripe (ms until the head is).
 */
static bool step(struct queue *qq, int64_t now, int *wait, unsigned long *k)
{
	struct pend *b[BATCH_MAX];
	struct cs_entry *e;
	int n = collect_writes(qq, b, now, wait);
	bool ok;

	*k = 0;
	if (*wait >= 0)
		return true;
	if (n > 0) {
		ok = run_writes(b, n);
	} else {
		if (!(e = malloc(sizeof *e)))
			return false;
		to_entry(qq->head, e);
		ok = qq->head->done = cs_replicate_entry(e) == 0;
		b[n++] = qq->head;
		free(e);
	}
	int ndone = 0;
	for (int i = 0; i < n; i++)
		ndone += b[i]->done;
	for (struct pend **pp = &qq->head; *pp && ndone > 0;) {
		if ((*pp)->done) {
			*k += retire(qq, pp);
			ndone--;
		} else {
			pp = &(*pp)->next;
		}
	}
	return ok;
}

/* Run the queue's ripe entries in order (writes in batches).  Returns ms
 * until the next try, or -1 when the queue is empty. */
static int run_queue(void)
{
	int64_t now = now_ms();
	int wait = -1;

	/* Woken by a new entry while backing off: the registry or the peers
	 * are no likelier to answer yet. */
	if (q.head && now < retry_at)
		return (int)(retry_at - now);
	while (q.head && !__atomic_load_n(&stopping, __ATOMIC_ACQUIRE)) {
		unsigned long k;
		bool ok = step(&q, now, &wait, &k);

		if (k)
			finished(k);
		if (wait >= 0)
			break;
		if (!ok) {
			__atomic_store_n(&failing, 1, __ATOMIC_RELEASE);
			finished(0);    /* wakes an exit waiting for us: no point now */
			backoff = backoff ? backoff * 2 : BACKOFF_MIN_MS;
			if (backoff > BACKOFF_MAX_MS)
				backoff = BACKOFF_MAX_MS;
			retry_at = now_ms() + backoff;
			wait = backoff;
			break;
		}
		backoff = 0;
		__atomic_store_n(&failing, 0, __ATOMIC_RELEASE);
		now = now_ms();
	}
	return wait;
}

/* Everything read so far is done: give the disk space of that part of
 * the journal back, so a long-lived worker's journal stays small.  Offsets
 * do not move (the file only gets holes), and appends go on meanwhile. */
static void compact(struct reader *r)
{
	uint64_t end = (r->off - 1) & ~(uint64_t)4095;  /* a block below r->off */

	if (end <= r->punched || end - r->punched < COMPACT_BYTES)
		return;
	if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)r->punched,
		      (off_t)(end - r->punched)) == 0)
		r->punched = end;
}

/* Follow this process's journal: the host creates it (and a new one if it
 * closes ours); we open it by name, in our own descriptor table. */
static void follow(struct reader *r)
{
	if (__atomic_load_n(&cs_jr.fd, __ATOMIC_ACQUIRE) < 0 || q.head ||
	    strcmp(r->name, cs_jr.name) == 0)
		return;
	if (r->fd >= 0)
		close(r->fd);
	snprintf(r->name, sizeof r->name, "%s", cs_jr.name);
	r->fd = open(r->name, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	r->off = r->punched = 0;
}

/*
 * The host's descriptors are not ours.  A thread sharing the table takes
 * whatever number is free: a shell that closes 1 and then dups onto it
 * would get our MySQL socket as its stdout.  So the thread gets a table of
 * its own and drops its copies of the host's descriptors at once (a copy
 * would keep a socket the host closed open), keeping only stderr for its
 * log and the eventfd that wakes it.
 */
static void isolate(void)
{
	int null;

	if (unshare(CLONE_FILES) < 0) {
		cs_error("replicator: unshare(CLONE_FILES): %s; sharing the host's descriptors",
			 strerror(errno));
		return;
	}
	if (efd > 3)
		syscall(SYS_close_range, 3, efd - 1, 0);
	syscall(SYS_close_range, efd + 1, ~0U, 0);
	if ((null = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		if (null > 2)
			close(null);
	}
	cs_registry_own_connections();
}

/* The thread is blocked on the eventfd and a new entry must wake it.  While
 * entries keep coming it polls every POLL_BUSY_MS instead, so a busy
 * writer's close() does not pay for waking a thread (~5 us here); and while
 * it backs off (registry or peers down) nothing could run earlier anyway,
 * so it sleeps out the backoff unwakeable. */
static int sleeping;
#define POLL_BUSY_MS 2
#define LINGER_MS 1000

static void *thread_main(void *arg)
{
	struct reader r = { .fd = -1 };
	int64_t last_entry = 0;
	int wait = -1;

	(void)arg;
	cs_inside = 1;
	isolate();
	for (;;) {
		struct pollfd pfd = { .fd = efd, .events = POLLIN };
		bool linger = now_ms() - last_entry < LINGER_MS;
		int idle = __atomic_load_n(&kick_fd, __ATOMIC_ACQUIRE) >= 0 ? 10000 : 100;
		int timeout = wait >= 0 ? wait : linger ? POLL_BUSY_MS : idle;
		uint64_t v;

		if (!__atomic_load_n(&failing, __ATOMIC_ACQUIRE) &&
		    (!linger || wait > POLL_BUSY_MS)) {
			/* From here a new entry wakes us; one that came before
			 * is read now.  (A writer that read sleeping == 0 had
			 * appended before we set it: read_more sees its line.) */
			__atomic_store_n(&sleeping, 1, __ATOMIC_SEQ_CST);
			follow(&r);     /* the first close may have just made it */
			if (read_more(&r)) {
				last_entry = now_ms();
				timeout = SETTLE_MS;
			}
		}
		if (poll(&pfd, 1, timeout) > 0) {
			ssize_t n = read(efd, &v, sizeof v);
			(void)n;
		}
		__atomic_store_n(&sleeping, 0, __ATOMIC_SEQ_CST);
		follow(&r);
		if (r.fd < 0)
			continue;
		pthread_mutex_lock(&busy);
		if (read_more(&r))
			last_entry = now_ms();
		wait = run_queue();
		if (!q.head)
			compact(&r);
		pthread_mutex_unlock(&busy);
	}
	return NULL;
}

static void start(void)
{
	pthread_attr_t attr;
	pthread_t th;
	sigset_t all, old;

	efd = kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0) {
		cs_error("replicator: eventfd: %s; writes stay journaled for cs-replicate",
			 strerror(errno));
		return;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, thread_main, NULL) != 0)
		cs_error("replicator: cannot start a thread; writes stay journaled for cs-replicate");
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void cs_replicator_start(void)
{
	int zero = 0;

	if (!__atomic_load_n(&started, __ATOMIC_ACQUIRE) &&
	    __atomic_compare_exchange_n(&started, &zero, 1, false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		/* Not thread-safe, so not in the new thread while the host's
		 * threads run (under ASan this corrupted glibc's locale lock). */
		cs_peer_global_init();
		cs_registry_global_init();
		start();
	}
}

void cs_replicator_kick(bool may_start)
{
	uint64_t one = 1;

	if (may_start)
		cs_replicator_start();
	int fd = __atomic_load_n(&kick_fd, __ATOMIC_ACQUIRE);
	if (fd >= 0 && __atomic_load_n(&sleeping, __ATOMIC_SEQ_CST)) {
		ssize_t n = write(fd, &one, sizeof one);
		(void)n;
	}
}

void cs_replicator_closing(int fd)
{
	int cur = fd;

	if (fd >= 0 && __atomic_load_n(&kick_fd, __ATOMIC_RELAXED) == fd)
		__atomic_compare_exchange_n(&kick_fd, &cur, -1, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

void cs_replicator_finish(int deadline_ms)
{
	struct timespec until;
	unsigned long want = __atomic_load_n(&cs_jr.appended, __ATOMIC_ACQUIRE);

	if (cs_jr.fd < 0 || cs_jr.owner != getpid())
		return;
	/* While the registry or the peers are failing, waiting would only
	 * delay the host's exit: the journal keeps the work either way. */
	if (want > done && !__atomic_load_n(&failing, __ATOMIC_ACQUIRE)) {
		cs_replicator_kick(true);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += deadline_ms / 1000;
		until.tv_nsec += (long)(deadline_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&mu);
		while (done < want && !__atomic_load_n(&failing, __ATOMIC_ACQUIRE) &&
		       pthread_cond_timedwait(&idle_cv, &mu, &until) == 0)
			;
		pthread_mutex_unlock(&mu);
	}
	/* Fence the thread: after this no entry runs in this process. */
	__atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
	if (__atomic_load_n(&started, __ATOMIC_ACQUIRE)) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		if (pthread_mutex_timedlock(&busy, &until) != 0)
			cs_warn("replicator still busy at exit");
	}
	if (done >= __atomic_load_n(&cs_jr.appended, __ATOMIC_ACQUIRE) && !q.head)
		unlink(cs_jr.name);     /* nothing left for anyone */
	else
		cs_warn("exiting with %lu writes not yet replicated; cs-replicate will finish them",
			__atomic_load_n(&cs_jr.appended, __ATOMIC_ACQUIRE) - done);
}

void cs_replicator_forget(void)
{
	/* The child has no replicator thread; the parent's queue is the
	 * parent's.  Leak it rather than touch memory a lock may cover. */
	pthread_mutex_init(&mu, NULL);
	pthread_mutex_init(&busy, NULL);
	pthread_cond_init(&idle_cv, NULL);
	started = 0;
	stopping = 0;
	if (kick_fd >= 0)
		close(kick_fd);
	efd = kick_fd = -1;
	done = 0;
	failing = 0;
	sleeping = 0;
	backoff = 0;
	retry_at = 0;
	q.head = NULL;
	q.tail = &q.head;
	q.count = 0;
}

/* ---- journals of dead processes (cs-replicate) ------------------------ */

struct orphan {
	struct queue todo;
	int fd;                 /* the journal */
	uint64_t *acked;
	size_t nacked, capacked;
};

static void collect(void *arg, struct cs_entry *e)
{
	struct orphan *o = arg;

	if (e->op != 'K') {
		queue_add(&o->todo, e, o->fd, 0);   /* read long ago: ripe */
		return;
	}
	if (o->nacked == o->capacked) {
		size_t cap = o->capacked ? 2 * o->capacked : 64;
		uint64_t *a = realloc(o->acked, cap * sizeof *a);
		if (!a)
			return;
		o->acked = a;
		o->capacked = cap;
	}
	o->acked[o->nacked++] = e->off;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Unacknowledged entries of the journal open at fd, in order; replicated
 * (and acknowledged) when run.  Returns how many remain undone. */
static long journal_pending(int fd, bool run)
{
	struct orphan o = { .todo = { NULL, &o.todo.head, 0 }, .fd = fd };
	struct stat st;
	char *buf = NULL;
	long left = 0;

	/* A compacted journal starts with a hole; the first line after it may
	 * be cut, and is done (everything before the end of the hole was). */
	off_t start = lseek(fd, 0, SEEK_DATA);
	if (start < 0)
		start = errno == ENXIO ? -1 : 0;
	if (fstat(fd, &st) < 0) {
		left = -errno;
		goto out;
	}
	if (start < 0 || start >= st.st_size)
		goto out;       /* holes only: nothing left */
	if (!(buf = malloc(st.st_size - start + 1))) {
		left = -ENOMEM;
		goto out;
	}
	ssize_t n = pread(fd, buf, st.st_size - start, start);
	if (n < 0) {
		left = -errno;
		goto out;
	}
	size_t skip = 0;
	if (start > 0) {
		char *nl = memchr(buf, '\n', n);
		skip = nl ? (size_t)(nl - buf) + 1 : (size_t)n;
	}
	parse_lines(buf + skip, n - skip, start + skip, collect, &o);
	if (o.nacked)
		qsort(o.acked, o.nacked, sizeof *o.acked, cmp_u64);
	for (struct pend **pp = &o.todo.head; *pp;) {
		struct pend *x = *pp;
		if (o.nacked && bsearch(&x->off, o.acked, o.nacked, sizeof *o.acked, cmp_u64)) {
			unlink_at(&o.todo, pp);
			pend_free(x);
		} else {
			pp = &x->next;
		}
	}
	/* In order, writes in batches; at the first failure the rest waits. */
	while (run && o.todo.head) {
		unsigned long k;
		int wait = -1;
		if (!step(&o.todo, now_ms(), &wait, &k))
			break;
	}
	left = (long)o.todo.count;
out:
	while (o.todo.head) {
		struct pend *x = o.todo.head;
		o.todo.head = x->next;
		pend_free(x);
	}
	free(o.acked);
	free(buf);
	return left;
}

int cs_replicate_orphans(bool count_live, int *live)
{
	DIR *d;
	struct dirent *de;
	long pending = 0;
	int nlive = 0;

	if (live)
		*live = 0;
	if (!cs_cfg.spool[0])
		return 0;
	d = opendir(cs_cfg.spool);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		char path[CS_PATH_MAX];
		size_t len = strlen(de->d_name);
		struct stat st;

		if (strncmp(de->d_name, "j.", 2) != 0 ||
		    (size_t)snprintf(path, sizeof path, "%s/%s", cs_cfg.spool, de->d_name) >= sizeof path)
			continue;
		if (len > 4 && strcmp(de->d_name + len - 4, ".new") == 0) {
			/* Its creator died between creating and publishing it. */
			if (lstat(path, &st) == 0 && time(NULL) - st.st_mtime > ORPHAN_NEW_SECONDS)
				unlink(path);
			continue;
		}
		int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			nlive++;        /* its process is alive and replicating it */
			if (count_live) {
				long left = journal_pending(fd, false);
				pending += left > 0 ? left : 0;
			}
			close(fd);
			continue;
		}
		long left = journal_pending(fd, true);
		if (left == 0) {
			unlink(path);
			cs_info("finished the journal %s of a process that died", de->d_name);
		} else if (left > 0) {
			pending += left;
		}
		close(fd);
	}
	closedir(d);
	if (live)
		*live = nlive;
	return (int)(pending > 0x7fffffff ? 0x7fffffff : pending);
}
