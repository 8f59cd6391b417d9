/*
 * indexer.c - keeping this node's published index of names (cs.h) true to
 * the registry, so that hosts answer a name no node ever had with ENOENT
 * and no round trip, and never answer ENOENT for a name the cluster has.
 *
 * Names come in three ways:
 *   - announcements: a writer's agent tells every other agent about new
 *     names before it registers them (replicate.c, POST /v1/index), so no
 *     reader can see a registered name that this node's index lacks;
 *   - this node's own writes, added the same way;
 *   - a poll of the registry every POLL_MS for rows changed since the last
 *     one (with an overlap, as commits land out of timestamp order), which
 *     catches what an announcement missed: the bound on a new name's
 *     visibility when its announcement did not arrive.
 * Deleted names stay in the filter (they cost a round trip to the agent,
 * which answers "absent") until the file is built again from a full scan:
 * at start, when the filter fills past its capacity, or when a quarter of
 * its names are deleted ones.  An index left by a previous run is adopted
 * at start, so hosts keep answering while the first scan runs (in the
 * indexer's thread: a large registry takes a while).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "index_file.h"
#include "indexer.h"
#include "listing.h"

#define POLL_MS 250
#define OVERLAP_S 2             /* commits land up to this late in time order */
#define RETRY_MS 1000
#define STRIPE_MIN 100000       /* file ids: below, one stripe scans fast enough */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct cs_index_file cur, next;  /* under mu; next while building */
static bool building, built;
static uint64_t tombstones;             /* deleted names seen since the build */
static char cursor[32];                 /* newest updated_at seen (DB clock) */

bool cs_indexer_add(const char *ns, const char *rel)
{
	bool fresh;

	pthread_mutex_lock(&mu);
	fresh = cs_index_file_add(&cur, ns, rel);
	if (building)
		cs_index_file_add(&next, ns, rel);
	pthread_mutex_unlock(&mu);
	return fresh;
}

/* The published index of a previous run, mapped to go on adding to it. */
static void adopt(void)
{
	char path[CS_PATH_MAX + 8];
	struct stat st;
	int fd;

	snprintf(path, sizeof path, "%s/index", cs_cfg.spool);
	if ((fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= CS_INDEX_HEAD) {
		void *p = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		struct cs_index_head *h = p;
		if (p != MAP_FAILED && cs_index_head_ok(h, st.st_size) && !h->superseded) {
			cur.head = h;
			cur.blocks = (uint64_t *)((char *)p + CS_INDEX_HEAD);
			cur.len = st.st_size;
		} else if (p != MAP_FAILED) {
			munmap(p, st.st_size);
		}
	}
	close(fd);
}

/* " AND namespace IN (...)": the namespaces this node serves. */
static void sql_namespaces(struct cs_buf *q)
{
	cs_sql_str(q, " namespace IN (");
	for (int i = 0; i < cs_cfg.nprefix; i++) {
		if (i)
			cs_sql_str(q, ",");
		cs_sql_text(q, cs_cfg.prefix[i].name);
	}
	cs_sql_str(q, ")");
}

/* A row's namespace and path as strings; false for one to skip. */
static bool row_name(MYSQL_ROW row, unsigned long *len, char *ns, char *rel)
{
	if (!row[0] || !row[1] || len[0] >= CS_NAME_MAX || len[1] >= CS_PATH_MAX)
		return false;
	memcpy(ns, row[0], len[0]);
	ns[len[0]] = '\0';
	memcpy(rel, row[1], len[1]);
	rel[len[1]] = '\0';
	return true;
}

/* A stripe of a full scan's state: rows come in id order, mostly a
 * directory's files one after another, so a row whose directory is the
 * previous row's adds its own name only (the directories above it are in):
 * a file four directories down costs one name's hashing and bits, not
 * five. */
#define AHEAD 8                 /* names hashed and prefetched, not yet added */

struct scan {
	uint64_t rows;
	uint64_t ahead[AHEAD][2];       /* rows % AHEAD: the next to add */
	size_t dirlen;                  /* of dir; SIZE_MAX: none yet */
	char ns[CS_NAME_MAX];
	char dir[CS_PATH_MAX];
};

static void scanned(void *arg, MYSQL_ROW row, unsigned long *len)
{
	struct scan *sc = arg;
	char ns[CS_NAME_MAX], rel[CS_PATH_MAX];

	if (!row_name(row, len, ns, rel))
		return;
	const char *slash = strrchr(rel, '/');
	size_t dl = slash ? (size_t)(slash - rel) : 0;
	uint64_t *h = sc->ahead[sc->rows % AHEAD];

	/* The stripes' threads, and announcements under mu, add to next
	 * side by side: every bit is set with an atomic OR.  A name goes in
	 * AHEAD rows after it was hashed, its block prefetched meanwhile. */
	if (sc->rows >= AHEAD)
		cs_index_file_add_hash(&next, h);
	cs_index_hash(ns, rel, h);
	cs_index_file_prefetch(&next, h);
	sc->rows++;
	if (dl == sc->dirlen && memcmp(rel, sc->dir, dl) == 0 && strcmp(ns, sc->ns) == 0)
		return;
	/* A new directory: it and those above it now (few). */
	cs_index_file_add(&next, ns, rel);
	memcpy(sc->dir, rel, dl);
	sc->dirlen = dl;
	memcpy(sc->ns, ns, len[0] + 1);
}

/* How many names a build should make room for, without counting the live
 * files (at 10 M a count is a scan of seconds, as long as the build): the
 * span of file ids, a bound on the files of every namespace, plus the
 * directories ever registered.  The file is fitted to the names it got
 * once the scan is done, so this need not be close, only not short: no
 * less than the index in use had (dirs may lag behind an old registry).
 * Also the scan's start (the poll goes on from there) and the highest id
 * (where the scan's stripes divide). */
static int sizing(struct cs_db *d, char start[32], uint64_t *names, uint64_t ids[2])
{
	static const char q[] =
		"SELECT NOW(3), COALESCE(MIN(id), 0), COALESCE(MAX(id), 0),"
		" (SELECT COUNT(*) FROM dirs) FROM files";
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc = cs_db_exec(d, q, sizeof q - 1, &res, true);

	if (rc < 0)
		return rc;
	if ((row = mysql_fetch_row(res))) {
		snprintf(start, 32, "%s", row[0] ? row[0] : "");
		ids[0] = cs_db_u64(row[1]);
		ids[1] = cs_db_u64(row[2]);
		*names = (ids[1] ? ids[1] - ids[0] + 1 : 0) + cs_db_u64(row[3]);
	} else {
		rc = -EIO;
	}
	mysql_free_result(res);
	pthread_mutex_lock(&mu);
	if (cur.head && *names < cur.head->names + cur.head->names / 4)
		*names = cur.head->names + cur.head->names / 4;
	pthread_mutex_unlock(&mu);
	*names += 1024;
	return rc;
}

/* One stripe of the full scan: the live names of files with ids in
 * (after, upto] (upto 0: no end), over its own connection. */
struct stripe {
	struct cs_db *d;
	uint64_t after, upto;
	int rc;
	pthread_t thread;
	struct scan sc;
};

static void *scan_stripe(void *arg)
{
	struct stripe *st = arg;
	struct cs_buf q = { 0 };

	st->sc.rows = 0;
	st->sc.dirlen = SIZE_MAX;
	/* The primary key's range, in its order (a directory's files one
	 * after another): with the ids bounded the optimizer would rather
	 * take files_namespace and look every row up from there, twice the
	 * server's work when the namespace is most of the registry. */
	cs_sql_fmt(&q, "SELECT namespace, path FROM files FORCE INDEX (PRIMARY) WHERE id > %llu",
		   (unsigned long long)st->after);
	if (st->upto)
		cs_sql_fmt(&q, " AND id <= %llu", (unsigned long long)st->upto);
	cs_sql_str(&q, " AND deleted=0 AND");
	sql_namespaces(&q);
	st->rc = q.oom ? -ENOMEM : cs_db_each(st->d, q.s, q.len, scanned, &st->sc);
	/* The names still on their way in. */
	for (uint64_t i = st->sc.rows > AHEAD ? st->sc.rows - AHEAD : 0; i < st->sc.rows; i++)
		cs_index_file_add_hash(&next, st->sc.ahead[i % AHEAD]);
	cs_buf_free(&q);
	return NULL;
}

/* The full scan into next, in two stripes side by side when the registry
 * is large and the pool has connections to spare (a scan is bound by the
 * server's CPU, one core a statement: two halve it on a second core, and
 * misses keep a connection at least); else in one.  The rows scanned. */
static int scan_all(struct cs_db *d, const uint64_t ids[2], uint64_t *rows)
{
	struct stripe *st = calloc(2, sizeof *st);
	struct cs_db *d2 = NULL;
	int n = 1, rc;

	if (!st)
		return -ENOMEM;
	st[0].d = d;
	if (ids[1] - ids[0] >= STRIPE_MIN && cs_cfg.db_connections >= 3 && (d2 = cs_db_get())) {
		st[0].upto = ids[0] + (ids[1] - ids[0]) / 2;
		st[1].d = d2;
		st[1].after = st[0].upto;
		n = 2;
		if (pthread_create(&st[1].thread, NULL, scan_stripe, &st[1]) != 0)
			n = 1, st[0].upto = 0;
	}
	scan_stripe(&st[0]);
	if (n == 2)
		pthread_join(st[1].thread, NULL);
	if (d2)
		cs_db_put(d2);
	rc = st[0].rc < 0 ? st[0].rc : n == 2 ? st[1].rc : 0;
	*rows = st[0].sc.rows + (n == 2 ? st[1].sc.rows : 0);
	free(st);
	return rc;
}

/* Build the index again from every live name, publish it, and make it the
 * one names are added to. */
static int build(void)
{
	struct cs_index_file old, fresh;
	char start[32];
	uint64_t room = 0, ids[2] = { 0, 0 }, rows = 0, names = 0, capacity = 0, bytes = 0;
	int64_t t0 = cs_clock_ms();
	struct cs_db *d = cs_db_get();
	int rc;

	if (!d)
		return -EAGAIN;
	if ((rc = sizing(d, start, &room, ids)) < 0)
		goto out;
	if ((rc = cs_index_file_create(&fresh, cs_cfg.spool, room)) < 0) {
		cs_error("cannot make the index in %s: %s", cs_cfg.spool, strerror(-rc));
		goto out;
	}
	pthread_mutex_lock(&mu);
	next = fresh;
	building = true;
	pthread_mutex_unlock(&mu);
	rc = scan_all(d, ids, &rows);
	pthread_mutex_lock(&mu);
	building = false;
	if (rc == 0)
		rc = cs_index_file_fit(&next, next.head->names);
	if (rc == 0 && (rc = cs_index_file_publish(&next, cs_cfg.spool)) == 0) {
		old = cur;
		cur = next;
		tombstones = 0;
		snprintf(cursor, sizeof cursor, "%s", start);
		built = true;
		names = cur.head->names;
		capacity = cs_index_file_capacity(&cur);
		bytes = cur.len;
	} else {
		old = next;
	}
	memset(&next, 0, sizeof next);
	pthread_mutex_unlock(&mu);
	cs_index_file_close(&old, rc == 0);
	if (rc == 0)
		cs_info("index built: %llu files, %llu names, room for %llu, %llu bytes, in %.2f s",
			(unsigned long long)rows, (unsigned long long)names,
			(unsigned long long)capacity, (unsigned long long)bytes,
			(cs_clock_ms() - t0) / 1000.0);
out:
	cs_db_put(d);
	return rc;
}

struct polled {
	char since[32];                 /* the cursor before this poll */
	char newest[32];
	unsigned long added, deleted;
};

static void changed(void *arg, MYSQL_ROW row, unsigned long *len)
{
	struct polled *p = arg;
	char ns[CS_NAME_MAX], rel[CS_PATH_MAX];

	if (!row_name(row, len, ns, rel))
		return;
	cs_listing_changed(ns, rel);
	if (row[2] && row[2][0] == '1') {
		/* Counted once: the overlap brings rows back that were seen. */
		if (row[3] && strcmp(row[3], p->since) > 0)
			p->deleted++;
	} else {
		cs_indexer_add(ns, rel);
		p->added++;
	}
	if (row[3] && strlen(row[3]) < sizeof p->newest && strcmp(row[3], p->newest) > 0)
		strcpy(p->newest, row[3]);
}

/* Whether s is a timestamp as MySQL writes one (it goes back into SQL). */
static bool timestamp_ok(const char *s)
{
	return *s && strspn(s, "0123456789-: .") == strlen(s);
}

/* Add the names registered since the last poll. */
static int poll_changes(void)
{
	struct polled p = { "", "", 0, 0 };
	struct cs_buf q = { 0 };
	int rc;

	pthread_mutex_lock(&mu);
	snprintf(p.since, sizeof p.since, "%s", cursor);
	pthread_mutex_unlock(&mu);
	if (!timestamp_ok(p.since))
		return -EINVAL;
	cs_sql_str(&q, "SELECT namespace, path, deleted, updated_at FROM files WHERE");
	sql_namespaces(&q);
	cs_sql_fmt(&q, " AND updated_at >= '%s' - INTERVAL %d SECOND", p.since, OVERLAP_S);
	if ((rc = cs_db_query_each(&q, changed, &p)) < 0)
		return rc;
	cs_listing_polled();
	pthread_mutex_lock(&mu);
	if (p.newest[0] && timestamp_ok(p.newest) && strcmp(p.newest, cursor) > 0) {
		tombstones += p.deleted;
		snprintf(cursor, sizeof cursor, "%s", p.newest);
	}
	uint64_t names = cur.head ? cur.head->names : 0;
	bool again = names > cs_index_file_capacity(&cur) ||
		     (tombstones > 1000 && tombstones > names / 4);
	pthread_mutex_unlock(&mu);
	return again ? 1 : 0;
}

static volatile int stopping;
static pthread_t thread;

static void *run(void *arg)
{
	bool failing = false;

	(void)arg;
	while (!stopping) {
		int rc = built ? poll_changes() : build();

		if (rc == 1)
			rc = build();
		if (rc < 0 && !failing)
			cs_warn("index: %s; hosts keep the last one", strerror(-rc));
		failing = rc < 0;
		for (int ms = built && !failing ? POLL_MS : RETRY_MS; ms > 0 && !stopping; ms -= 50)
			usleep(50 * 1000);
	}
	return NULL;
}

int cs_indexer_start(void)
{
	/* The scan runs in the thread: a large registry takes a while, and
	 * the adopted index answers meanwhile (with none, hosts ask the agent
	 * about every miss, which is slower but right). */
	adopt();
	return pthread_create(&thread, NULL, run, NULL) == 0 ? 0 : -EAGAIN;
}

void cs_indexer_stop(void)
{
	stopping = 1;
	pthread_join(thread, NULL);
	pthread_mutex_lock(&mu);
	cs_index_file_close(&cur, false);
	pthread_mutex_unlock(&mu);
}
