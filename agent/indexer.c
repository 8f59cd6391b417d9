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

static void scanned(void *arg, MYSQL_ROW row, unsigned long *len)
{
	char ns[CS_NAME_MAX], rel[CS_PATH_MAX];

	(void)arg;
	if (row_name(row, len, ns, rel))
		cs_index_file_add(&next, ns, rel);      /* only this thread adds a scan */
}

/* Build the index again from every live name, publish it, and make it the
 * one names are added to. */
static int build(void)
{
	struct cs_buf q = { 0 };
	struct cs_index_file old, fresh;
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	char start[32];
	uint64_t files;
	struct cs_db *d = cs_db_get();
	int rc = -ENOMEM;

	if (!d)
		return -EAGAIN;
	/* The scan's start (the poll goes on from there) and its size. */
	cs_sql_str(&q, "SELECT NOW(3), COUNT(*) FROM files WHERE deleted=0 AND");
	sql_namespaces(&q);
	if (q.oom || (rc = cs_db_exec(d, q.s, q.len, &res, true)) < 0)
		goto out;
	if ((row = mysql_fetch_row(res))) {
		snprintf(start, sizeof start, "%s", row[0] ? row[0] : "");
		files = cs_db_u64(row[1]);
	} else {
		rc = -EIO;
	}
	mysql_free_result(res);
	if (rc < 0)
		goto out;
	/* Names: every file, and the directories above them (fewer). */
	if ((rc = cs_index_file_create(&fresh, cs_cfg.spool, files + files / 2 + 1024)) < 0) {
		cs_error("cannot make the index in %s: %s", cs_cfg.spool, strerror(-rc));
		goto out;
	}
	pthread_mutex_lock(&mu);
	next = fresh;
	building = true;
	pthread_mutex_unlock(&mu);
	q.len = 0;
	cs_sql_str(&q, "SELECT namespace, path FROM files WHERE deleted=0 AND");
	sql_namespaces(&q);
	rc = q.oom ? -ENOMEM : cs_db_each(d, q.s, q.len, scanned, NULL);
	pthread_mutex_lock(&mu);
	building = false;
	if (rc == 0 && (rc = cs_index_file_publish(&next, cs_cfg.spool)) == 0) {
		old = cur;
		cur = next;
		tombstones = 0;
		snprintf(cursor, sizeof cursor, "%s", start);
		built = true;
	} else {
		old = next;
	}
	memset(&next, 0, sizeof next);
	pthread_mutex_unlock(&mu);
	cs_index_file_close(&old, rc == 0);
	if (rc == 0)
		cs_info("index built: %llu files, %llu names, room for %llu",
			(unsigned long long)files, (unsigned long long)cur.head->names,
			(unsigned long long)cs_index_file_capacity(&cur));
out:
	cs_db_put(d);
	cs_buf_free(&q);
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
	struct cs_db *d;
	int rc;

	pthread_mutex_lock(&mu);
	snprintf(p.since, sizeof p.since, "%s", cursor);
	pthread_mutex_unlock(&mu);
	if (!timestamp_ok(p.since))
		return -EINVAL;
	cs_sql_str(&q, "SELECT namespace, path, deleted, updated_at FROM files WHERE");
	sql_namespaces(&q);
	cs_sql_fmt(&q, " AND updated_at >= '%s' - INTERVAL %d SECOND", p.since, OVERLAP_S);
	if (!(d = cs_db_for(&q, &rc)))
		return rc;
	rc = cs_db_each(d, q.s, q.len, changed, &p);
	cs_db_put(d);
	cs_buf_free(&q);
	if (rc < 0)
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
