/*
 * tail.c - the agent's write path: following every journal in CS_SPOOL as
 * it grows, running its entries (queue.c decides the order, replicate.c
 * does the work), acknowledging each one done, and removing a journal once
 * all of it is done and its writer is gone.
 *
 * One thread.  inotify says when a journal is published or appended to, so
 * a new entry is read at once and the host pays nothing for it; a scan of
 * the directory every HOUSEKEEP_MS catches what an overflowing event queue
 * dropped.  A journal first seen (at start, or one a process just made) is
 * read whole, and its entries already acknowledged ("K" lines, ours from an
 * earlier run) are skipped.  Acknowledgements are written into the journal
 * they are about, one write per journal per batch.  The done part of a
 * long-lived process's journal is given back to the disk by punching holes
 * (offsets never move).  A journal's writer holds an flock on it for life:
 * when the agent can take the lock and nothing is pending, the journal is
 * finished and removed.  The queue's list changes under a lock, so the
 * cache quota (evict.c) can ask whether a path has an entry still waiting.
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
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "metrics.h"
#include "queue.h"
#include "replicate.h"
#include "tail.h"

#define HOUSEKEEP_MS 2000
#define OWN_MS 200              /* the agent's own journal (holder records) */
#define REPLICATE_NICE 10
#define COMPACT_BYTES (1 << 20)
#define NEW_ABANDONED_S 60      /* a .new journal older than this was abandoned */

struct journal {
	struct journal *next;
	int fd;
	uint64_t off;                   /* read up to here */
	uint64_t punched;               /* disk space given back up to here */
	unsigned long pending;          /* its entries in the queue */
	struct cs_buf acks;             /* "K" lines to write */
	bool cut;                       /* a short write left a line unended */
	char name[256];
};

static struct {
	int spool;                      /* CS_SPOOL, a directory opened to read */
	int ino;                        /* inotify, -1 without */
	struct journal *list;
	struct cs_queue q;
	unsigned long backlog;          /* q.count, for other threads */
	int64_t housekept, own_read;
	bool read_all;                  /* every journal there at start was read */
} T = { .spool = -1, .ino = -1 };

/* Held while q's list changes (this thread) and while another thread
 * looks through it (cs_tail_pending_path). */
static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;

static int stopping;
static pthread_t thread;

static bool journal_name(const char *name)
{
	size_t n = strlen(name);

	return strncmp(name, "j.", 2) == 0 && !(n > 4 && strcmp(name + n - 4, ".new") == 0);
}

/* ---- reading ------------------------------------------------------------ */

struct chunk {
	char *buf;
	size_t len;
	uint64_t base;                  /* file offset of buf[0] */
	char *mem;                      /* what to free (buf or before it) */
};

/* Everything from off to the end of fd: 0 with *c (c->mem malloc'd, or
 * NULL when there is nothing), or -errno with c->base = off all the same. */
static int read_rest(int fd, uint64_t off, struct chunk *c)
{
	struct stat st;

	c->buf = c->mem = NULL;
	c->len = 0;
	c->base = off;
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size <= off)
		return 0;
	size_t want = (size_t)(st.st_size - off);
	if (!(c->buf = c->mem = malloc(want + 1)))
		return -ENOMEM;
	ssize_t n = pread(fd, c->buf, want, (off_t)off);
	if (n < 0) {
		free(c->mem);
		c->buf = c->mem = NULL;
		return -errno;
	}
	c->len = (size_t)n;
	return 0;
}

/*
 * A journal read from its first entry on: 0 with *c as read_rest's, and
 * *data where its data starts (disk space before that was given back), or
 * -errno.  A compacted journal starts with a hole; the first line after it
 * may be cut, and is done (all before the hole's end was): c starts after
 * it.  Only ENXIO says the journal is all hole (or empty); when SEEK_DATA
 * fails otherwise it is read whole, as it may hold entries.
 */
static int read_start(int fd, struct chunk *c, uint64_t *data)
{
	off_t d = lseek(fd, 0, SEEK_DATA);
	struct stat st;
	int rc;

	if (d < 0 && errno == ENXIO) {
		*data = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
		return read_rest(fd, *data, c);         /* nothing, unless appended since */
	}
	*data = d < 0 ? 0 : (uint64_t)d;
	if ((rc = read_rest(fd, *data, c)) < 0 || !c->buf || *data == 0)
		return rc;
	char *nl = memchr(c->buf, '\n', c->len);
	size_t skip = nl ? (size_t)(nl - c->buf) + 1 : c->len;
	c->buf += skip;
	c->len -= skip;
	c->base += skip;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Parse the complete lines of c.  Entries go to fn (with arg), unless first
 * is set and a "K" line in c acknowledges them; returns the bytes used (up
 * to the last '\n', or to the start of the line fn refused: it is read
 * again next time).
 */
static size_t parse(const struct chunk *c, bool first, int (*fn)(void *, struct cs_entry *),
		    void *arg)
{
	struct cs_entry *e = malloc(sizeof *e);
	uint64_t *acked = NULL;
	size_t nacked = 0, cap = 0, used = 0;

	if (!e)
		return 0;
	for (int pass = first ? 0 : 1; pass < 2; pass++) {
		size_t pos = 0;
		while (pos < c->len) {
			const char *nl = memchr(c->buf + pos, '\n', c->len - pos);
			if (!nl)
				break;
			size_t n = nl - (c->buf + pos);
			if (pass == 0 && c->buf[pos] != CS_OP_ACK) {
				pos += n + 1;   /* this pass reads the "K" lines only */
				continue;
			}
			int rc = cs_journal_parse(c->buf + pos, n, e);
			if (rc < 0 && pass == 1) {
				cs_warn("journal: unreadable line at offset %" PRIu64 " skipped",
					c->base + pos);
			} else if (rc == 0 && e->op == CS_OP_ACK && pass == 0) {
				if (nacked == cap) {
					size_t ncap = cap ? 2 * cap : 64;
					uint64_t *a = realloc(acked, ncap * sizeof *a);
					if (a) {
						acked = a;
						cap = ncap;
					}
				}
				if (nacked < cap)
					acked[nacked++] = e->off;
			} else if (rc == 0 && e->op != CS_OP_ACK && pass == 1) {
				e->off = c->base + pos;
				if ((!nacked || !bsearch(&e->off, acked, nacked, sizeof *acked, cmp_u64)) &&
				    fn(arg, e) < 0)
					break;
			}
			pos += n + 1;
		}
		used = pos;
		if (pass == 0 && nacked)
			qsort(acked, nacked, sizeof *acked, cmp_u64);
	}
	free(acked);
	free(e);
	return used;
}

static int queued(void *arg, struct cs_entry *e)
{
	struct journal *j = arg;
	int rc;

	pthread_mutex_lock(&qmu);
	rc = cs_queue_add(&T.q, e, j, cs_clock_ms());
	pthread_mutex_unlock(&qmu);

	if (rc == 0)
		j->pending++;
	return rc;
}

/* Queue what was appended to j since it was last read (first: all of it). */
static void read_more(struct journal *j, bool first)
{
	struct chunk c;

	if (first)
		read_start(j->fd, &c, &j->punched);
	else
		read_rest(j->fd, j->off, &c);
	j->off = c.base;
	if (c.buf)
		j->off += parse(&c, first, queued, j);
	free(c.mem);
}

static struct journal *find(const char *name)
{
	for (struct journal *j = T.list; j; j = j->next)
		if (!strcmp(j->name, name))
			return j;
	return NULL;
}

/* A journal seen for the first time: open it and read it whole. */
static struct journal *adopt(const char *name)
{
	struct journal *j;
	int fd;

	if (strlen(name) >= sizeof j->name ||
	    (fd = openat(T.spool, name, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return NULL;
	if (!(j = calloc(1, sizeof *j))) {
		close(fd);
		return NULL;
	}
	j->fd = fd;
	strcpy(j->name, name);
	j->next = T.list;
	T.list = j;
	read_more(j, true);
	return j;
}

static void seen(const char *name)
{
	struct journal *j;

	if (!journal_name(name))
		return;
	if ((j = find(name)))
		read_more(j, false);
	else
		adopt(name);
}

/* Every journal in the directory (those missed by inotify, or all of them
 * when there is no inotify); abandoned ".new" files go. */
static void scan(void)
{
	int fd = openat(T.spool, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		struct stat st;

		if (strncmp(e->d_name, "j.", 2) != 0)
			continue;
		if (n > 4 && strcmp(e->d_name + n - 4, ".new") == 0) {
			/* Its creator died between creating and publishing it. */
			if (fstatat(T.spool, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    time(NULL) - st.st_mtime > NEW_ABANDONED_S)
				unlinkat(T.spool, e->d_name, 0);
			continue;
		}
		seen(e->d_name);
	}
	closedir(d);
}

/* ---- acknowledging and finishing ----------------------------------------- */

static void ack(struct journal *j, uint64_t off)
{
	char line[40];
	int n = snprintf(line, sizeof line, "K\t%" PRIu64 "\n", off);

	/* Not acknowledged when memory is short: it runs again, harmlessly. */
	cs_buf_put(&j->acks, line, (size_t)n);
}

/*
 * End the line a short write cut (a full disk), before anything else goes
 * into j: the writer's next entry would run into it and be lost with it.
 * Ended by a byte no K line holds, so it reads as an unreadable line;
 * a bare '\n' could make "K\t12" of "K\t1234", acknowledging another entry.
 */
static bool end_cut(struct journal *j)
{
	if (j->cut && write(j->fd, "~\n", 2) == 2)
		j->cut = false;
	return !j->cut;
}

static void flush_acks(void)
{
	for (struct journal *j = T.list; j; j = j->next) {
		size_t len = j->acks.len;
		if (!len && !j->cut)
			continue;
		ssize_t w = -1;
		if (end_cut(j) && len)
			w = write(j->fd, j->acks.s, len);
		if (len && w != (ssize_t)len)
			cs_error_every(10, "%s: cannot acknowledge entries: %s", j->name,
				       w < 0 ? strerror(errno) : "short write");
		if (w > 0 && (size_t)w < len && j->acks.s[w - 1] != '\n') {
			j->cut = true;
			end_cut(j);
		}
		cs_buf_clear(&j->acks);
	}
}

/* Give back the disk space of j's done part. */
static void compact(struct journal *j)
{
	uint64_t end = j->off ? (j->off - 1) & ~(uint64_t)4095 : 0;

	if (end <= j->punched || end - j->punched < COMPACT_BYTES)
		return;
	if (fallocate(j->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)j->punched,
		      (off_t)(end - j->punched)) == 0)
		j->punched = end;
}

/* Journals whose writer is gone and which are all done are removed. */
static void finish(void)
{
	for (struct journal **pp = &T.list; *pp;) {
		struct journal *j = *pp;
		struct stat st;

		if (!j->pending)
			read_more(j, false);    /* our own acks, or a last entry */
		if (j->pending) {
			pp = &j->next;
			continue;
		}
		compact(j);
		if (flock(j->fd, LOCK_EX | LOCK_NB) < 0) {
			pp = &j->next;  /* its writer lives */
			continue;
		}
		/* Its writer is gone: a last line it wrote before going? */
		read_more(j, false);
		if (j->pending) {
			pp = &j->next;
			continue;
		}
		/* Nobody ends a line its writer was killed in the middle of
		 * writing: it is no entry, and keeps the journal no longer. */
		if (fstat(j->fd, &st) == 0 && (uint64_t)st.st_size > j->off)
			cs_warn("%s: the last %" PRIu64 " bytes, a line cut short, dropped", j->name,
				(uint64_t)st.st_size - j->off);
		unlinkat(T.spool, j->name, 0);
		cs_debug("finished the journal %s", j->name);
		*pp = j->next;
		close(j->fd);
		cs_buf_free(&j->acks);
		free(j);
	}
}

/* ---- running the queue ----------------------------------------------------- */

/* Run what is ripe; ms until the next try, or -1 when nothing is queued. */
static int run_queue(const int *stop)
{
	struct cs_qentry *b[CS_QUEUE_HOLDS];
	int wait = -1;

	while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
		int64_t began = cs_clock_ms();
		int n = cs_queue_next(&T.q, began, b, CS_QUEUE_HOLDS, cs_replicate_size, &wait);

		if (n == 0)
			break;
		if (cs_replicate_batch(b, n, stop) == -EAGAIN)
			cs_queue_pause(&T.q, cs_clock_ms());
		else
			cs_queue_resume(&T.q);
		int64_t now = cs_clock_ms();
		pthread_mutex_lock(&qmu);
		struct cs_qentry *done = cs_queue_retire(&T.q, b, n, began, now);
		pthread_mutex_unlock(&qmu);
		for (struct cs_qentry *x = done, *y; x; x = y) {
			struct journal *j = x->journal;
			y = x->next;
			/* A host's change, from when it was read: journal
			 * lines carry no time, and inotify has a new line read
			 * at once.  (Holder records are the agent's own.) */
			if (x->op != CS_OP_HELD)
				cs_observe(CS_H_LAG, (now - x->seen) / 1000.0);
			ack(j, x->off);
			j->pending--;
			cs_queue_free(x);
		}
		flush_acks();
	}
	__atomic_store_n(&T.backlog, T.q.count, __ATOMIC_RELEASE);
	cs_gauge_set(CS_G_BACKLOG, (int64_t)T.q.count);
	return wait;
}

/* The agent's own journal (holder records) is read on a timer, not on
 * inotify's word: every record and every acknowledgement it writes there
 * would wake this thread once more. */
static bool own(const char *name)
{
	const char *mine = cs_journal_name();

	return *mine && !strcmp(name, mine);
}

static void housekeep(void)
{
	int64_t now = cs_clock_ms();

	if (now - T.own_read >= OWN_MS) {
		const char *mine = cs_journal_name();
		T.own_read = now;
		if (*mine)
			seen(mine);
	}
	if (now - T.housekept < HOUSEKEEP_MS)
		return;
	T.housekept = now;
	scan();
	finish();
}

/* ---- the thread ---------------------------------------------------------- */

static int open_spool(void)
{
	if (T.spool >= 0)
		return 0;
	cs_queue_init(&T.q);
	T.spool = open(cs_cfg.spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return T.spool < 0 ? -errno : 0;
}

static void events(void)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	while ((n = read(T.ino, buf, sizeof buf)) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			if (ev->mask & IN_Q_OVERFLOW)
				T.housekept = 0;        /* events were lost: scan now */
			else if (ev->len && !own(ev->name))
				seen(ev->name);
			p += sizeof *ev + ev->len;
		}
	}
}

static void *run(void *unused)
{
	int wait = 0;

	(void)unused;
	/* Replication is background work: on a busy node the web server's
	 * workers go first (this thread only; misses and the peer endpoint
	 * keep the agent's priority). */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), REPLICATE_NICE) < 0)
		cs_debug("setpriority: %s", strerror(errno));
	scan();
	__atomic_store_n(&T.read_all, true, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&stopping, __ATOMIC_ACQUIRE)) {
		struct pollfd p = { .fd = T.ino, .events = POLLIN };
		int timeout = wait >= 0 && wait < OWN_MS ? wait : OWN_MS;

		/* With entries queued that ripen within the settle time, none
		 * can run before: sleep through it rather than wake for every
		 * line a busy writer appends meanwhile (inotify keeps the
		 * events, merged).  Otherwise a new line wakes us at once. */
		bool settling = wait > 0 && wait <= CS_QUEUE_SETTLE_MS;
		if (poll(&p, T.ino >= 0 && !settling ? 1 : 0, timeout) >= 0 && T.ino >= 0)
			events();
		wait = run_queue(&stopping);
		housekeep();
	}
	return NULL;
}

int cs_tail_start(void)
{
	sigset_t all, old;
	int rc;

	if ((rc = open_spool()) < 0)
		return rc;
	T.ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (T.ino < 0 || inotify_add_watch(T.ino, cs_cfg.spool, IN_MODIFY | IN_MOVED_TO) < 0)
		cs_warn("inotify on %s: %s; looking for new entries every %d ms", cs_cfg.spool,
			strerror(errno), HOUSEKEEP_MS);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&thread, NULL, run, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc == 0 ? 0 : -rc;
}

void cs_tail_stop(void)
{
	__atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
	pthread_join(thread, NULL);
}

unsigned long cs_tail_backlog(void)
{
	return __atomic_load_n(&T.backlog, __ATOMIC_ACQUIRE);
}

bool cs_tail_pending_path(const char *ns, const char *rel)
{
	bool pending;

	/* Before the journals were read, any path may have an entry in them. */
	if (!__atomic_load_n(&T.read_all, __ATOMIC_ACQUIRE))
		return true;
	pthread_mutex_lock(&qmu);
	pending = cs_queue_names(&T.q, ns, rel);
	pthread_mutex_unlock(&qmu);
	return pending;
}

long cs_tail_drain(int timeout_ms)
{
	int64_t deadline = cs_clock_ms() + timeout_ms;
	int never = 0, rc;

	if ((rc = open_spool()) < 0)
		return rc;
	scan();
	while (T.q.count && cs_clock_ms() < deadline) {
		int wait = run_queue(&never);
		if (wait > 0)
			usleep((useconds_t)(wait > 100 ? 100 : wait) * 1000);
		scan();
	}
	finish();
	return (long)T.q.count;
}

/* ---- counting, read only -------------------------------------------------- */

static int count(void *arg, struct cs_entry *e)
{
	(void)e;
	(*(long *)arg)++;
	return 0;
}

/* Each entry not yet acknowledged in CS_SPOOL's journals to fn; *live as
 * cs_tail_pending's (live may be NULL); hosts: the hosts' journals only,
 * not the agent's own (holder records: no delete or rename, and under a
 * storm of misses a long unacknowledged tail to read for each).  0 or
 * -errno. */
static int each_pending(int (*fn)(void *, struct cs_entry *), void *arg, int *live, bool hosts)
{
	DIR *d = opendir(cs_cfg.spool);
	struct dirent *e;

	if (live)
		*live = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		struct chunk c;
		uint64_t data;
		int fd;

		if (!journal_name(e->d_name) || (hosts && own(e->d_name)) ||
		    (fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
			continue;
		if (live && flock(fd, LOCK_SH | LOCK_NB) < 0)
			(*live)++;
		if (read_start(fd, &c, &data) == 0 && c.buf)
			parse(&c, true, fn, arg);
		free(c.mem);
		close(fd);
	}
	closedir(d);
	return 0;
}

struct gone_path {
	const char *ns, *rel;
	bool gone;
};

static int gone_path(void *arg, struct cs_entry *e)
{
	struct gone_path *g = arg;
	size_t n = strlen(e->rel);

	if ((e->op == CS_OP_DELETE || e->op == CS_OP_RENAME) && strcmp(e->ns, g->ns) == 0 &&
	    strncmp(g->rel, e->rel, n) == 0 && (g->rel[n] == '\0' || g->rel[n] == '/'))
		g->gone = true;
	return 0;
}

bool cs_tail_gone(const char *ns, const char *rel)
{
	struct gone_path g = { ns, rel, false };

	return each_pending(gone_path, &g, NULL, true) == 0 && g.gone;
}

struct gone_in {
	const char *ns, *dir;
	size_t dl;
	struct cs_buf *names;
};

static int gone_in(void *arg, struct cs_entry *e)
{
	struct gone_in *g = arg;
	const char *slash = strrchr(e->rel, '/');
	size_t dl = slash ? (size_t)(slash - e->rel) : 0;
	const char *name = slash ? slash + 1 : e->rel;

	if ((e->op == CS_OP_DELETE || e->op == CS_OP_RENAME) && strcmp(e->ns, g->ns) == 0 &&
	    dl == g->dl && memcmp(e->rel, g->dir, dl) == 0)
		cs_buf_put(g->names, name, strlen(name) + 1);
	return 0;
}

int cs_tail_gone_in(const char *ns, const char *dir, struct cs_buf *names)
{
	struct gone_in g = { ns, dir, strlen(dir), names };

	return each_pending(gone_in, &g, NULL, true);
}

long cs_tail_pending(int *live)
{
	long pending = 0;
	int rc = each_pending(count, &pending, live, false);

	return rc < 0 ? rc : pending;
}

int cs_tail_each_pending(int (*fn)(void *arg, struct cs_entry *e), void *arg)
{
	return each_pending(fn, arg, NULL, false);
}
