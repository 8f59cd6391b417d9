/*
 * registry.c - which files the cluster has and who holds them: memcached in
 * front of MySQL/MariaDB, plus a tiny per-process negative cache.
 *
 * The only file that includes libmemcached or MySQL headers.  MySQL is the
 * truth (sql/schema.sql); memcached holds encoded records of it.  Cache rules,
 * chosen so that a lookup racing a write cannot pin a stale answer:
 *   - readers fill memcached with `add` (never overwrite what a writer put);
 *   - writers `set` the new record, never delete it;
 *   - "not in the cluster" is cached too: for NEG_LOCAL_MS in the process
 *     (repeated 404s cost no round trip) and NEG_MC_TTL seconds in memcached,
 *     where a later create overwrites it at once.
 * Connections are made lazily, once per process, dropped (not closed: the
 * socket is the parent's) after fork, re-made after a server restart.  Every
 * call has a short timeout, and a failure opens a circuit breaker so that
 * while a server is down a miss fails in microseconds instead of waiting.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>



#include "cs.h"
#include "dyn.h"

#define NEG_LOCAL_MS 1000       /* in-process "not in the cluster" */
#define NEG_MC_TTL 5            /* seconds, memcached "not in the cluster" */
#define POS_MC_TTL 300          /* seconds, memcached file records */
#define NODES_LOCAL_MS 2000     /* in-process node table */
#define NODES_MC_TTL 5
#define UP_SECONDS 10           /* a heartbeat younger than this: node is up */
#define BREAKER_MIN_MS 1000
#define BREAKER_MAX_MS 8000
#define MAX_NODES 256
#define COUNTS_LOCAL_MS 10000   /* per-node file counts, for choosing targets */

/* A node records a copy; an older version never overwrites a newer one, and
 * a fresh copy of the current version is no longer stale. */
#define REPLICA_UPSERT                                                         \
	" stale=IF(VALUES(version) >= version, 0, stale),"                     \
	" size=IF(VALUES(version) >= version, VALUES(size), size),"            \
	" mtime_ns=IF(VALUES(version) >= version, VALUES(mtime_ns), mtime_ns),"\
	" version=GREATEST(version, VALUES(version))"

struct breaker {
	int64_t open_until;     /* monotonic ms; calls fail fast before it */
	int64_t backoff;
	bool reported;
};

/*
 * Connections and their breakers.  The host's threads share one set; a
 * thread with a descriptor table of its own (the replicator: a socket it
 * opens does not exist for the host, and the other way round) has its own
 * set, chosen through a thread-local pointer.  The names below stand for the
 * calling thread's set.
 */
struct conn {
	pthread_mutex_t db_lock_, mc_lock_;
	MYSQL *db_;
	bool pending_;          /* a sent statement whose reply is unread */
	memcached_st *mc_;
	struct breaker db_brk_, mc_brk_;
};

static struct conn shared = {
	.db_lock_ = PTHREAD_MUTEX_INITIALIZER, .mc_lock_ = PTHREAD_MUTEX_INITIALIZER,
};
static __thread struct conn *own;

static inline struct conn *conn(void)
{
	return own ? own : &shared;
}

#define db (conn()->db_)
#define db_pending (conn()->pending_)
#define mc (conn()->mc_)
#define db_brk (conn()->db_brk_)
#define mc_brk (conn()->mc_brk_)
#define db_lock (conn()->db_lock_)
#define mc_lock (conn()->mc_lock_)

static pthread_mutex_t neg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t nodes_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static uint32_t self_id;

static struct cs_node node_tab[MAX_NODES];
static int node_n;
static int64_t node_at = -1;

#define NEG_SLOTS 1024
static struct {
	uint64_t h;
	int64_t until;
} neg[NEG_SLOTS];

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- circuit breaker ---------------------------------------------- */

static bool brk_open(struct breaker *b)
{
	return b->open_until && now_ms() < b->open_until;
}

static void brk_fail(struct breaker *b, const char *what, const char *why)
{
	b->backoff = b->backoff ? b->backoff * 2 : BREAKER_MIN_MS;
	if (b->backoff > BREAKER_MAX_MS)
		b->backoff = BREAKER_MAX_MS;
	b->open_until = now_ms() + b->backoff;
	if (!b->reported)
		cs_error("%s unreachable (%s); failing fast, retrying every %d ms at most",
			 what, why, BREAKER_MAX_MS);
	b->reported = true;
}

static void brk_ok(struct breaker *b, const char *what)
{
	if (b->reported)
		cs_warn("%s reachable again", what);
	b->open_until = 0;
	b->backoff = 0;
	b->reported = false;
}

/* ---- keys and records ---------------------------------------------- */

static void path_hash(const char *ns, const char *rel, unsigned char h[CS_SHA256_LEN])
{
	struct cs_sha256 c;

	memset(h, 0, CS_SHA256_LEN);
	if (cs_sha256_init(&c) < 0)
		return;         /* no libcrypto: the registry is refused too (locked_db) */
	cs_sha256_update(&c, ns, strlen(ns) + 1);       /* with its NUL */
	cs_sha256_update(&c, rel, strlen(rel));
	cs_sha256_final(&c, h);
}

/* The negative cache's key: FNV-1a over the same bytes, cheap enough for a
 * flood of 404s.  A 64-bit collision would at worst hide a file for 1 s. */
static uint64_t neg_key(const char *ns, const char *rel)
{
	uint64_t h = 1469598103934665603ULL;

	for (const char *p = ns;; p++) {
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
		if (!*p)
			break;
	}
	for (const char *p = rel; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h;
}

static void key_of(const unsigned char h[CS_SHA256_LEN], char key[CS_KEY_MAX])
{
	memcpy(key, "cs1:", 4);
	cs_sha256_hex(h, key + 4);
}

void cs_registry_key(const char *ns, const char *rel, char key[CS_KEY_MAX])
{
	unsigned char h[CS_SHA256_LEN];

	path_hash(ns, rel, h);
	key_of(h, key);
}

/* "F <id> <version> <size> <mtime_ns> <sha256> <deleted> <h1,h2,...|->" */
int cs_record_encode(const struct cs_file *f, char *out, size_t outsz)
{
	char sha[CS_SHA256_HEX];
	int n;

	cs_sha256_hex(f->sha256, sha);
	n = snprintf(out, outsz, "F %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRId64 " %s %d ",
		     f->id, f->version, f->size, f->mtime_ns, sha, f->deleted ? 1 : 0);
	if (n < 0 || (size_t)n >= outsz)
		return -ENOSPC;
	if (f->nholders == 0) {
		if ((size_t)n + 2 > outsz)
			return -ENOSPC;
		out[n++] = '-';
	}
	for (int i = 0; i < f->nholders; i++) {
		int m = snprintf(out + n, outsz - n, "%s%" PRIu32, i ? "," : "",
				 f->holder[i]);
		if (m < 0 || (size_t)(n + m) >= outsz)
			return -ENOSPC;
		n += m;
	}
	out[n] = '\0';
	return n;
}

int cs_record_encode_absent(char *out, size_t outsz)
{
	if (outsz < 2)
		return -ENOSPC;
	out[0] = 'N';
	out[1] = '\0';
	return 1;
}

int cs_record_decode(const char *in, size_t len, struct cs_file *f)
{
	char buf[1024], sha[CS_SHA256_HEX + 1], holders[512];
	int deleted, used = 0;

	if (len == 1 && in[0] == 'N')
		return 1;
	if (len == 0 || len >= sizeof buf)
		return -EINVAL;
	memcpy(buf, in, len);
	buf[len] = '\0';
	memset(f, 0, sizeof *f);
	if (sscanf(buf, "F %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNd64 " %64s %d %511s%n",
		   &f->id, &f->version, &f->size, &f->mtime_ns, sha, &deleted,
		   holders, &used) != 7 || (size_t)used != len ||
	    (deleted != 0 && deleted != 1) || cs_sha256_unhex(sha, f->sha256) < 0)
		return -EINVAL;
	f->deleted = deleted;
	if (strcmp(holders, "-") == 0)
		return 0;
	for (char *p = holders; *p;) {
		char *end;
		unsigned long id = strtoul(p, &end, 10);

		if (end == p || id == 0 || id > UINT32_MAX ||
		    f->nholders == CS_MAX_HOLDERS || (*end && *end != ','))
			return -EINVAL;
		f->holder[f->nholders++] = (uint32_t)id;
		p = *end ? end + 1 : end;
	}
	return 0;
}

/* ---- negative cache (per process) ---------------------------------- */

/* trylock: a thread interrupted while holding it must not deadlock itself. */
static bool neg_hit(uint64_t h)
{
	bool hit = false;

	if (pthread_mutex_trylock(&neg_lock) != 0)
		return false;
	if (neg[h % NEG_SLOTS].h == h && now_ms() < neg[h % NEG_SLOTS].until)
		hit = true;
	pthread_mutex_unlock(&neg_lock);
	return hit;
}

static void neg_put(uint64_t h, int64_t until)
{
	if (pthread_mutex_trylock(&neg_lock) != 0)
		return;
	neg[h % NEG_SLOTS].h = h;
	neg[h % NEG_SLOTS].until = until;
	pthread_mutex_unlock(&neg_lock);
}

/* ---- memcached ----------------------------------------------------- */

static memcached_st *locked_mc(void)
{
	if (!cs_cfg.memcached[0] || brk_open(&mc_brk))
		return NULL;
	if (mc)
		return mc;
	if (cs_dyn_crypto() < 0 || cs_dyn_memcached() < 0)
		return NULL;    /* no library, or no path hashes to key it with */
	mc = memcached_create(NULL);
	if (!mc)
		return NULL;
	memcached_return_t rc;
	if (cs_cfg.memcached[0] == '/') {
		rc = memcached_server_add_unix_socket(mc, cs_cfg.memcached);
	} else {
		memcached_server_list_st list = memcached_servers_parse(cs_cfg.memcached);
		rc = list ? memcached_server_push(mc, list) : MEMCACHED_FAILURE;
		memcached_server_list_free(list);
	}
	if (rc != MEMCACHED_SUCCESS) {
		cs_error("CS_MEMCACHED: cannot use '%s'; going on without memcached",
			 cs_cfg.memcached);
		memcached_free(mc);
		mc = NULL;
		cs_cfg.memcached[0] = '\0';
		return NULL;
	}
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, 250);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, 250);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, 250000);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, 250000);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 1);
	return mc;
}

static bool mc_failed(memcached_return_t rc)
{
	return rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND &&
	       rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS &&
	       rc != MEMCACHED_STORED && rc != MEMCACHED_END;
}

static void mc_check(memcached_return_t rc)
{
	if (mc_failed(rc))
		brk_fail(&mc_brk, "memcached", memcached_strerror(mc, rc));
	else
		brk_ok(&mc_brk, "memcached");
}

/* Returns the value (malloc'd) or NULL. */
static char *mc_get(const char *key, size_t *len)
{
	char *v = NULL;
	uint32_t flags;
	memcached_return_t rc;

	pthread_mutex_lock(&mc_lock);
	if (locked_mc()) {
		v = memcached_get(mc, key, strlen(key), len, &flags, &rc);
		mc_check(rc);
	}
	pthread_mutex_unlock(&mc_lock);
	return v;
}

static void mc_store(const char *key, const char *val, size_t len, time_t ttl,
		     bool overwrite)
{
	memcached_return_t rc;

	pthread_mutex_lock(&mc_lock);
	if (locked_mc()) {
		rc = overwrite ? memcached_set(mc, key, strlen(key), val, len, ttl, 0)
			       : memcached_add(mc, key, strlen(key), val, len, ttl, 0);
		mc_check(rc);
	}
	pthread_mutex_unlock(&mc_lock);
}

/* ---- MySQL --------------------------------------------------------- */

static void lib_init(void)
{
	if (cs_dyn_mariadb() == 0)
		mysql_library_init(0, NULL, NULL);
}

void cs_registry_global_init(void)
{
	pthread_once(&lib_once, lib_init);
}

static MYSQL *locked_db(void)
{
	const struct cs_mysql_dsn *d = &cs_cfg.mysql;
	unsigned int timeout = 1, io_timeout = 2;
	my_bool off = 0;

	if (db)
		return db;
	if (cs_dyn_crypto() < 0 || cs_dyn_mariadb() < 0 || brk_open(&db_brk))
		return NULL;
	pthread_once(&lib_once, lib_init);
	db = mysql_init(NULL);
	if (!db)
		return NULL;
	mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
	mysql_options(db, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
	mysql_options(db, MYSQL_OPT_RECONNECT, &off);
	mysql_options(db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	if (!mysql_real_connect(db, d->host, d->user, d->pass[0] ? d->pass : NULL,
				d->database, d->port, d->socket[0] ? d->socket : NULL,
				CLIENT_FOUND_ROWS | CLIENT_MULTI_STATEMENTS)) {
		brk_fail(&db_brk, "MySQL", mysql_error(db));
		mysql_close(db);
		db = NULL;
		return NULL;
	}
	brk_ok(&db_brk, "MySQL");
	return db;
}

/* Read the reply to a statement sent without waiting (add_holder). */
static void locked_settle(void)
{
	if (!db || !db_pending)
		return;
	db_pending = false;
	if (mysql_read_query_result(db) != 0) {
		unsigned int e = mysql_errno(db);
		if (e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST) {
			mysql_close(db);
			db = NULL;
		} else {
			cs_error_every(10, "MySQL: recording a holder: %s", mysql_error(db));
		}
	}
}

/*
 * Run one statement; *res gets its result set when it has one.  With retry,
 * a lost connection is re-made once (the server may have restarted): only
 * for statements that are safe to repeat outside a transaction.  -EAGAIN
 * when MySQL cannot be used, -EBUSY for a lost race (duplicate key,
 * deadlock, lock wait) that the caller should retry whole.
 */
static int locked_exec(const char *sql, size_t len, MYSQL_RES **res, bool retry)
{
	locked_settle();
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!locked_db())
			return -EAGAIN;
		if (mysql_real_query(db, sql, len) == 0) {
			if (res) {
				*res = mysql_store_result(db);
				if (!*res && mysql_field_count(db) != 0)
					goto failed;
			}
			return 0;
		}
failed:;
		unsigned int e = mysql_errno(db);
		if (e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST ||
		    e == CR_CONNECTION_ERROR || e == CR_CONN_HOST_ERROR ||
		    e == 4031 /* ER_CLIENT_INTERACTION_TIMEOUT */) {
			mysql_close(db);
			db = NULL;
			if (attempt == 0 && retry)
				continue;
			brk_fail(&db_brk, "MySQL", "connection lost");
			return -EAGAIN;
		}
		if (e == 1062 || e == 1213 || e == 1205)
			return -EBUSY;
		cs_error_every(10, "MySQL: %s", mysql_error(db));
		return -EIO;
	}
	return -EAGAIN;
}

static int locked_query(const char *sql, size_t len, MYSQL_RES **res)
{
	return locked_exec(sql, len, res, true);
}

/*
 * Several statements in one round trip (inside a transaction: never re-sent
 * on a new connection).  res[i] gets the i-th result set (of nres; the rest
 * are freed), ids[i] the AUTO_INCREMENT value statement i made (of nids).
 * The server stops at the first failing statement; its error is returned
 * as locked_exec would, and the sets already taken are the caller's.
 */
static int locked_multi(const char *sql, size_t len, MYSQL_RES **res, int nres,
			uint64_t *ids, int nids)
{
	int rc = locked_exec(sql, len, NULL, false), status, set = 0, stmt = 0;

	if (rc < 0)
		return rc;
	bool lost = false;      /* a result set that could not be read */
	do {
		MYSQL_RES *r = mysql_store_result(db);
		if (!r && mysql_field_count(db) != 0)
			lost = true;    /* the later sets would be taken for its */
		if (r && set < nres)
			res[set++] = r;
		else if (r)
			mysql_free_result(r);
		if (stmt < nids)
			ids[stmt] = mysql_insert_id(db);
		stmt++;
		status = mysql_next_result(db);
	} while (status == 0);
	if (status > 0) {
		unsigned int e = mysql_errno(db);
		if (e == 1062 || e == 1213 || e == 1205)
			return -EBUSY;
		if (e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST) {
			mysql_close(db);
			db = NULL;
			brk_fail(&db_brk, "MySQL", "connection lost");
			return -EAGAIN;
		}
		cs_error_every(10, "MySQL: %s", mysql_error(db));
		return -EIO;
	}
	if (lost) {
		cs_error_every(10, "MySQL: a result could not be read: %s", mysql_error(db));
		return -EIO;
	}
	return 0;
}

/* SQL text builder: a growing malloc'd buffer; the miss path may allocate. */
struct sql {
	char *s;
	size_t len, cap;
	bool oom;
};

static void sql_put(struct sql *q, const char *p, size_t n)
{
	if (q->oom)
		return;
	if (q->len + n + 1 > q->cap) {
		size_t cap = (q->len + n + 1) * 2;
		char *s = realloc(q->s, cap);
		if (!s) {
			q->oom = true;
			return;
		}
		q->s = s;
		q->cap = cap;
	}
	memcpy(q->s + q->len, p, n);
	q->len += n;
	q->s[q->len] = '\0';
}

static void sql_str(struct sql *q, const char *p)
{
	sql_put(q, p, strlen(p));
}

static void sql_fmt(struct sql *q, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void sql_fmt(struct sql *q, const char *fmt, ...)
{
	char buf[1024];        /* every format here is far shorter */
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > 0)
		sql_put(q, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* A quoted, escaped literal; needs the connection for its charset. */
static void locked_sql_lit(struct sql *q, const char *p, size_t n)
{
	char stack[512], *tmp = 2 * n + 1 <= sizeof stack ? stack : malloc(2 * n + 1);

	if (!tmp) {
		q->oom = true;
		return;
	}
	unsigned long m = mysql_real_escape_string(db, tmp, p, n);
	sql_put(q, "'", 1);
	sql_put(q, tmp, m);
	sql_put(q, "'", 1);
	if (tmp != stack)
		free(tmp);
}

static void sql_hex(struct sql *q, const unsigned char *p, size_t n)
{
	char hex[CS_SHA256_HEX];

	sql_put(q, "X'", 2);
	for (size_t i = 0; i < n; i += CS_SHA256_LEN) {
		size_t m = n - i < CS_SHA256_LEN ? n - i : CS_SHA256_LEN;
		unsigned char block[CS_SHA256_LEN] = { 0 };
		memcpy(block, p + i, m);
		cs_sha256_hex(block, hex);
		sql_put(q, hex, 2 * m);
	}
	sql_put(q, "'", 1);
}

/* The statement recording that node holds version of file_id as installed
 * there (size, mtime): a newer record never goes back to an older one. */
static void sql_replica_upsert(struct sql *q, uint64_t file_id, uint32_t node,
			       uint64_t version, uint64_t size, int64_t mtime_ns)
{
	sql_fmt(q, "INSERT INTO replicas (file_id, node_id, version, size, mtime_ns)"
		   " VALUES (%" PRIu64 ",%" PRIu32 ",%" PRIu64 ",%" PRIu64 ",%" PRId64 ")"
		   " ON DUPLICATE KEY UPDATE" REPLICA_UPSERT,
		file_id, node, version, size, mtime_ns);
}

/* f as held by node too (when there is room in the record). */
static void with_holder(struct cs_file *f, uint32_t node)
{
	for (int i = 0; i < f->nholders; i++)
		if (f->holder[i] == node)
			return;
	if (f->nholders < CS_MAX_HOLDERS)
		f->holder[f->nholders++] = node;
}

/* "WHERE" clause naming one file exactly. */
static void locked_sql_where(struct sql *q, const unsigned char h[CS_SHA256_LEN],
			     const char *ns, const char *rel)
{
	sql_str(q, " WHERE f.path_hash=");
	sql_hex(q, h, CS_SHA256_LEN);
	sql_str(q, " AND f.namespace=");
	locked_sql_lit(q, ns, strlen(ns));
	sql_str(q, " AND f.path=");
	locked_sql_lit(q, rel, strlen(rel));
}

static uint64_t u64(const char *s)
{
	return s ? strtoull(s, NULL, 10) : 0;
}

/* Read one files row (id, version, size, mtime, sha, deleted, holders). */
static int row_to_file(MYSQL_RES *res, struct cs_file *f)
{
	MYSQL_ROW row = mysql_fetch_row(res);
	unsigned long *len;

	if (!row)
		return -ENOENT;
	len = mysql_fetch_lengths(res);
	memset(f, 0, sizeof *f);
	f->id = u64(row[0]);
	f->version = u64(row[1]);
	f->size = u64(row[2]);
	f->mtime_ns = row[3] ? strtoll(row[3], NULL, 10) : 0;
	if (!row[4] || len[4] != CS_SHA256_LEN)
		return -EIO;
	memcpy(f->sha256, row[4], CS_SHA256_LEN);
	f->deleted = row[5] && row[5][0] == '1';
	for (char *p = row[6]; p && *p && f->nholders < CS_MAX_HOLDERS;) {
		char *end;
		f->holder[f->nholders++] = (uint32_t)strtoul(p, &end, 10);
		p = *end ? end + 1 : end;
	}
	return 0;
}

/* The registry's current record of one file, from MySQL. */
/* The SELECT of one file's record with its current holders (row_to_file). */
static void locked_sql_file(struct sql *q, const unsigned char h[CS_SHA256_LEN],
			    const char *ns, const char *rel, bool for_update)
{
	sql_str(q, "SELECT f.id, f.version, f.size, f.mtime_ns, f.sha256, f.deleted,"
		   " (SELECT GROUP_CONCAT(r.node_id ORDER BY r.updated_at)"
		   "  FROM replicas r WHERE r.file_id=f.id AND r.version=f.version AND r.stale=0)"
		   " FROM files f");
	locked_sql_where(q, h, ns, rel);
	if (for_update)
		sql_str(q, " FOR UPDATE");
}

/* The INSERT of a path's first version, held by nobody yet. */
static void locked_sql_new_file(struct sql *q, const unsigned char h[CS_SHA256_LEN],
				const char *ns, const char *rel, uint64_t size,
				int64_t mtime_ns, const unsigned char sha[CS_SHA256_LEN])
{
	sql_str(q, "INSERT INTO files (path_hash, namespace, path, version,"
		   " size, mtime_ns, sha256, deleted) VALUES (");
	sql_hex(q, h, CS_SHA256_LEN);
	sql_str(q, ",");
	locked_sql_lit(q, ns, strlen(ns));
	sql_str(q, ",");
	locked_sql_lit(q, rel, strlen(rel));
	sql_fmt(q, ",1,%" PRIu64 ",%" PRId64 ",", size, mtime_ns);
	sql_hex(q, sha, CS_SHA256_LEN);
	sql_str(q, ",0)");
}

static int locked_db_file(const unsigned char h[CS_SHA256_LEN], const char *ns,
			  const char *rel, struct cs_file *f, bool for_update)
{
	struct sql q = { 0 };
	MYSQL_RES *res = NULL;
	int rc;

	if (!locked_db())
		return -EAGAIN;
	locked_sql_file(&q, h, ns, rel, for_update);
	if (q.oom) {
		rc = -ENOMEM;
		goto out;
	}
	rc = locked_exec(q.s, q.len, &res, !for_update);
	if (rc == 0)
		rc = row_to_file(res, f);
out:
	if (res)
		mysql_free_result(res);
	free(q.s);
	return rc;
}

static void mc_put_file(const unsigned char h[CS_SHA256_LEN], const struct cs_file *f,
			bool overwrite)
{
	char key[CS_KEY_MAX], rec[1024];
	int n = f ? cs_record_encode(f, rec, sizeof rec) : cs_record_encode_absent(rec, sizeof rec);

	if (n < 0)
		return;
	key_of(h, key);
	mc_store(key, rec, n, f ? POS_MC_TTL : NEG_MC_TTL, overwrite);
}

int cs_registry_lookup(const char *ns, const char *rel, struct cs_file *f)
{
	unsigned char h[CS_SHA256_LEN];
	char key[CS_KEY_MAX];
	uint64_t nk = neg_key(ns, rel);
	size_t len;
	int rc;

	if (neg_hit(nk))
		return -ENOENT;

	path_hash(ns, rel, h);
	key_of(h, key);
	char *v = mc_get(key, &len);
	if (v) {
		rc = cs_record_decode(v, len, f);
		free(v);
		if (rc == 1 || (rc == 0 && f->deleted)) {
			neg_put(nk, now_ms() + NEG_LOCAL_MS);
			return -ENOENT;
		}
		if (rc == 0)
			return 0;
		cs_warn("memcached: undecodable record at %s; asking MySQL", key);
	}

	pthread_mutex_lock(&db_lock);
	rc = locked_db_file(h, ns, rel, f, false);
	pthread_mutex_unlock(&db_lock);
	if (rc == 0 || rc == -ENOENT)
		mc_put_file(h, rc == 0 ? f : NULL, false);
	if (rc == -ENOENT || (rc == 0 && f->deleted)) {
		neg_put(nk, now_ms() + NEG_LOCAL_MS);
		return -ENOENT;
	}
	return rc == 0 ? 0 : -EAGAIN;
}

/* Register (or refresh) this node; heartbeat also stamps heartbeat_at. */
static int locked_register(bool heartbeat)
{
	struct sql q = { 0 };
	int rc;

	if (!locked_db())
		return -EAGAIN;
	sql_str(&q, "INSERT INTO nodes (name, url, zone, heartbeat_at) VALUES (");
	locked_sql_lit(&q, cs_cfg.node, strlen(cs_cfg.node));
	sql_str(&q, ",");
	locked_sql_lit(&q, cs_cfg.node_url, strlen(cs_cfg.node_url));
	sql_str(&q, ",");
	locked_sql_lit(&q, cs_cfg.zone, strlen(cs_cfg.zone));
	sql_str(&q, heartbeat ? ",NOW(3))" : ",NULL)");
	sql_str(&q, " ON DUPLICATE KEY UPDATE id=LAST_INSERT_ID(id)");
	if (heartbeat)
		sql_str(&q, ", url=VALUES(url), zone=VALUES(zone), heartbeat_at=NOW(3)");
	else if (cs_cfg.node_url[0])
		sql_str(&q, ", url=VALUES(url)");
	rc = q.oom ? -ENOMEM : locked_query(q.s, q.len, NULL);
	if (rc == 0)
		self_id = (uint32_t)mysql_insert_id(db);
	free(q.s);
	return rc;
}

int cs_registry_self(uint32_t *id)
{
	int rc = 0;

	pthread_mutex_lock(&db_lock);
	if (!self_id)
		rc = locked_register(false);
	*id = self_id;
	pthread_mutex_unlock(&db_lock);
	return self_id ? 0 : (rc ? rc : -EIO);
}

int cs_registry_heartbeat(void)
{
	int rc;

	pthread_mutex_lock(&db_lock);
	rc = locked_register(true);
	pthread_mutex_unlock(&db_lock);
	return rc;
}

/*
 * The caller's open() does not wait for this record: the statement is sent
 * and its reply read before the connection's next statement.  Once sent it
 * survives the process, even _exit() right after (MariaDB commits an
 * autocommit statement it has received), and so does the memcached update,
 * sent noreply.  Writers set: the cached record gains this holder.
 */
int cs_registry_add_holder(const char *ns, const char *rel,
			   const struct cs_file *f, uint32_t node)
{
	unsigned char h[CS_SHA256_LEN];
	struct sql q = { 0 };
	int rc = 0;

	sql_replica_upsert(&q, f->id, node, f->version, f->size, f->mtime_ns);
	if (q.oom) {
		free(q.s);
		return -ENOMEM;
	}
	pthread_mutex_lock(&db_lock);
	locked_settle();
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!locked_db()) {
			rc = -EAGAIN;
			break;
		}
		if (mysql_send_query(db, q.s, q.len) == 0) {
			db_pending = true;
			rc = 0;
			break;
		}
		mysql_close(db);        /* the connection was dead: once more */
		db = NULL;
		rc = -EAGAIN;
	}
	pthread_mutex_unlock(&db_lock);
	free(q.s);
	if (rc < 0)
		return rc;

	struct cs_file g = *f;
	with_holder(&g, node);
	char key[CS_KEY_MAX], rec[1024];
	int len = cs_record_encode(&g, rec, sizeof rec);
	path_hash(ns, rel, h);
	key_of(h, key);
	pthread_mutex_lock(&mc_lock);
	if (len > 0 && locked_mc()) {
		memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_NOREPLY, 1);
		mc_check(memcached_set(mc, key, strlen(key), rec, len, POS_MC_TTL, 0));
		memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_NOREPLY, 0);
	}
	pthread_mutex_unlock(&mc_lock);
	return 0;
}

/* ---- nodes --------------------------------------------------------- */

/* "id up name url zone\n" per node; url and zone may be "-" for empty. */
static int nodes_encode(const struct cs_node *n, int count, char *out, size_t outsz)
{
	size_t len = 0;

	for (int i = 0; i < count; i++) {
		int m = snprintf(out + len, outsz - len, "%" PRIu32 " %d %s %s %s\n",
				 n[i].id, n[i].up, n[i].name,
				 n[i].url[0] ? n[i].url : "-",
				 n[i].zone[0] ? n[i].zone : "-");
		if (m < 0 || (size_t)m >= outsz - len)
			return -ENOSPC;
		len += m;
	}
	return (int)len;
}

static int nodes_decode(char *s, struct cs_node *n, int max)
{
	int count = 0;

	for (char *line = strtok(s, "\n"); line && count < max;
	     line = strtok(NULL, "\n")) {
		struct cs_node *x = &n[count];
		int up;
		if (sscanf(line, "%" SCNu32 " %d %63s %511s %63s", &x->id, &up,
			   x->name, x->url, x->zone) != 5)
			return -EINVAL;
		x->up = up;
		if (strcmp(x->url, "-") == 0)
			x->url[0] = '\0';
		if (strcmp(x->zone, "-") == 0)
			x->zone[0] = '\0';
		count++;
	}
	return count;
}

static int locked_db_nodes(struct cs_node *n, int max)
{
	static const char sql[] =
		"SELECT id, name, url, zone, COALESCE(heartbeat_at > NOW(3) - INTERVAL "
		"10 SECOND, 0) FROM nodes ORDER BY id";
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int count = 0;
	int rc = locked_query(sql, sizeof sql - 1, &res);

	if (rc < 0)
		return rc;
	while ((row = mysql_fetch_row(res)) && count < max) {
		struct cs_node *x = &n[count++];
		memset(x, 0, sizeof *x);
		x->id = (uint32_t)u64(row[0]);
		snprintf(x->name, sizeof x->name, "%s", row[1] ? row[1] : "");
		snprintf(x->url, sizeof x->url, "%s", row[2] ? row[2] : "");
		snprintf(x->zone, sizeof x->zone, "%s", row[3] ? row[3] : "");
		x->up = row[4] && row[4][0] == '1';
	}
	mysql_free_result(res);
	return count;
}

/* Refresh node_tab if it is older than NODES_LOCAL_MS; caller holds
 * nodes_lock.  Keeps the old table when neither server answers. */
static int locked_nodes_refresh(void)
{
	static const char key[] = "cs1:nodes";
	struct cs_node *fresh;
	int count = -EAGAIN;
	size_t len;

	if (node_at >= 0 && now_ms() - node_at <= NODES_LOCAL_MS)
		return 0;
	fresh = calloc(MAX_NODES, sizeof *fresh);
	if (!fresh)
		return node_n ? 0 : -ENOMEM;
	char *v = mc_get(key, &len);
	if (v) {
		count = nodes_decode(v, fresh, MAX_NODES);
		free(v);
	}
	if (count <= 0) {
		pthread_mutex_lock(&db_lock);
		count = locked_db_nodes(fresh, MAX_NODES);
		pthread_mutex_unlock(&db_lock);
		if (count > 0) {
			char *buf = malloc(64 * 1024);
			int m = buf ? nodes_encode(fresh, count, buf, 64 * 1024) : -1;
			if (m > 0)
				mc_store(key, buf, m, NODES_MC_TTL, true);
			free(buf);
		}
	}
	if (count > 0) {
		memcpy(node_tab, fresh, count * sizeof *fresh);
		node_n = count;
		node_at = now_ms();
	}
	free(fresh);
	if (count > 0 || node_n > 0)
		return 0;       /* a stale table beats none */
	return count < 0 ? count : -ENOENT;
}

int cs_registry_holders(const struct cs_file *f, struct cs_node *out, int max)
{
	int n = 0, rc;

	pthread_mutex_lock(&nodes_lock);
	rc = locked_nodes_refresh();
	for (int i = 0; rc == 0 && i < f->nholders && n < max; i++)
		for (int j = 0; j < node_n; j++)
			if (node_tab[j].id == f->holder[i]) {
				out[n++] = node_tab[j];
				break;
			}
	pthread_mutex_unlock(&nodes_lock);
	return rc < 0 ? rc : n;
}

/* ---- writes: new versions, tombstones, push targets ----------------- */

int cs_registry_lookup_db(const char *ns, const char *rel, struct cs_file *f)
{
	unsigned char h[CS_SHA256_LEN];
	int rc;

	path_hash(ns, rel, h);
	pthread_mutex_lock(&db_lock);
	rc = locked_db_file(h, ns, rel, f, false);
	pthread_mutex_unlock(&db_lock);
	return rc;
}

static void locked_rollback(void)
{
	if (db && mysql_real_query(db, "ROLLBACK", 8) != 0) {
		mysql_close(db);
		db = NULL;
	}
}

/* Statement n of a transaction: no reconnect-and-repeat halfway through. */
static int locked_tx_stmt(struct sql *q)
{
	if (q->oom)
		return -ENOMEM;
	return locked_exec(q->s, q->len, NULL, false);
}

#define NEW_VERSION (-1)        /* stmt[i] of an existing path: a new version */
#define SAME_BYTES (-2)         /* ... or the same bytes again: none */

/*
 * One attempt at the publish transaction for v[0..n), taken in order[]
 * (by path hash, so two batches lock rows in one order); -EBUSY when it
 * lost a race.  Two round trips whatever n: lock and read the rows, then
 * write and commit.  Each v[i].f is made from what was read and written,
 * with no third read.
 */
static int locked_publish(struct cs_publish *v, const int *order, int n,
			  const unsigned char (*h)[CS_SHA256_LEN], uint32_t self)
{
	struct sql q = { 0 };
	MYSQL_RES **res = calloc(n, sizeof *res);
	uint64_t *made = NULL;
	int *stmt = calloc(n, sizeof *stmt), nstmt = 0, rc = 0;

	if (!res || !stmt) {
		rc = -ENOMEM;
		goto fail;
	}
	if (!locked_db()) {
		rc = -EAGAIN;
		goto fail;
	}
	/* READ COMMITTED: locking a path not registered yet takes no gap lock,
	 * so two batches adding nearby new paths do not deadlock; the second
	 * INSERT of one path gets a duplicate key and the whole is retried. */
	sql_str(&q, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION");
	for (int k = 0; k < n; k++) {
		int i = order[k];
		sql_str(&q, "; ");
		locked_sql_file(&q, h[i], v[i].ns, v[i].rel, true);
	}
	if (q.oom) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = locked_multi(q.s, q.len, res, n, NULL, 0)) < 0)
		goto fail;

	q.len = 0;
	for (int k = 0; k < n; k++) {
		int i = order[k];
		struct cs_file *f = &v[i].f;
		uint64_t size = v[i].size;
		int64_t mtime_ns = v[i].mtime_ns;

		rc = res[k] ? row_to_file(res[k], f) : -EIO;
		if (rc < 0 && rc != -ENOENT)
			goto fail;
		if (rc == -ENOENT) {
			memset(f, 0, sizeof *f);
			stmt[i] = nstmt;        /* its id: this statement's */
			locked_sql_new_file(&q, h[i], v[i].ns, v[i].rel, size, mtime_ns,
					    v[i].sha256);
			sql_fmt(&q, "; INSERT INTO replicas (file_id, node_id, version, size,"
				    " mtime_ns) VALUES (LAST_INSERT_ID(),%" PRIu32 ",1,%" PRIu64
				    ",%" PRId64 "); ", self, size, mtime_ns);
			nstmt += 2;
			f->version = 1;
			continue;
		}
		stmt[i] = SAME_BYTES;
		if (f->deleted || f->size != size ||
		    memcmp(f->sha256, v[i].sha256, CS_SHA256_LEN) != 0) {
			stmt[i] = NEW_VERSION;
			f->version++;
			sql_fmt(&q, "UPDATE files SET version=%" PRIu64 ", deleted=0,"
				    " size=%" PRIu64 ", mtime_ns=%" PRId64 ", sha256=",
				f->version, size, mtime_ns);
			sql_hex(&q, v[i].sha256, CS_SHA256_LEN);
			sql_fmt(&q, " WHERE id=%" PRIu64 "; UPDATE replicas SET stale=1"
				    " WHERE file_id=%" PRIu64 " AND node_id<>%" PRIu32 "; ",
				f->id, f->id, self);
			nstmt += 2;
			f->nholders = 0;        /* other copies are of older versions now */
		}
		/* else the same bytes again: no new version */
		sql_replica_upsert(&q, f->id, self, f->version, size, mtime_ns);
		sql_str(&q, "; ");
		nstmt++;
	}
	sql_str(&q, "COMMIT");
	nstmt++;
	if (q.oom || !(made = calloc(nstmt, sizeof *made))) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = locked_multi(q.s, q.len, NULL, 0, made, nstmt)) < 0)
		goto fail;
	/* The records as committed. */
	for (int i = 0; i < n; i++) {
		struct cs_file *f = &v[i].f;

		if (stmt[i] >= 0)
			f->id = made[stmt[i]];
		/* The same bytes again keep the version as registered, its mtime
		 * included: copies elsewhere were installed with that one. */
		if (stmt[i] != SAME_BYTES) {
			f->size = v[i].size;
			f->mtime_ns = v[i].mtime_ns;
			memcpy(f->sha256, v[i].sha256, CS_SHA256_LEN);
			f->deleted = false;
		}
		with_holder(f, self);
		if (!f->id)
			rc = -EIO;
	}
	goto out;
fail:
	locked_rollback();
out:
	for (int k = 0; res && k < n; k++)
		if (res[k])
			mysql_free_result(res[k]);
	free(res);
	free(stmt);
	free(made);
	free(q.s);
	return rc;
}

struct keyed {
	unsigned char h[CS_SHA256_LEN];
	int i;
};

static int by_hash(const void *a, const void *b)
{
	return memcmp(((const struct keyed *)a)->h, ((const struct keyed *)b)->h, CS_SHA256_LEN);
}

int cs_registry_publish_many(struct cs_publish *v, int n)
{
	unsigned char (*h)[CS_SHA256_LEN] = malloc(n * sizeof *h);
	struct keyed *k = malloc(n * sizeof *k);
	int *order = malloc(n * sizeof *order);
	uint32_t self;
	int rc;

	if (n <= 0 || !h || !k || !order) {
		rc = n <= 0 ? 0 : -ENOMEM;
		goto out;
	}
	if ((rc = cs_registry_self(&self)) < 0)
		goto out;
	for (int i = 0; i < n; i++) {
		path_hash(v[i].ns, v[i].rel, h[i]);
		memcpy(k[i].h, h[i], CS_SHA256_LEN);
		k[i].i = i;
	}
	qsort(k, n, sizeof *k, by_hash);
	for (int i = 0; i < n; i++)
		order[i] = k[i].i;
	pthread_mutex_lock(&db_lock);
	locked_settle();
	for (int attempt = 0; attempt < 4; attempt++) {
		rc = locked_publish(v, order, n, (const unsigned char (*)[CS_SHA256_LEN])h, self);
		if (rc != -EBUSY)
			break;
	}
	pthread_mutex_unlock(&db_lock);
	for (int i = 0; rc == 0 && i < n; i++)
		mc_put_file(h[i], &v[i].f, true);
out:
	free(h);
	free(k);
	free(order);
	return rc == -EBUSY ? -EAGAIN : rc;
}

int cs_registry_publish(const char *ns, const char *rel, uint64_t size,
			int64_t mtime_ns, const unsigned char sha[CS_SHA256_LEN],
			struct cs_file *f)
{
	struct cs_publish v = { .ns = ns, .rel = rel, .size = size, .mtime_ns = mtime_ns };
	int rc;

	memcpy(v.sha256, sha, CS_SHA256_LEN);
	rc = cs_registry_publish_many(&v, 1);
	*f = v.f;
	return rc;
}

static int locked_unpublish(const unsigned char h[CS_SHA256_LEN], const char *ns,
			    const char *rel, uint32_t self, struct cs_file *prev)
{
	struct sql q = { 0 };
	int rc;

	if ((rc = locked_query("START TRANSACTION", 17, NULL)) < 0)
		return rc;
	rc = locked_db_file(h, ns, rel, prev, true);
	if (rc == 0 && prev->deleted)
		rc = -ENOENT;
	if (rc < 0)
		goto fail;
	sql_fmt(&q, "UPDATE files SET version=version+1, deleted=1 WHERE id=%" PRIu64,
		prev->id);
	if ((rc = locked_tx_stmt(&q)) < 0)
		goto fail;
	q.len = 0;
	sql_fmt(&q, "UPDATE replicas SET stale=1 WHERE file_id=%" PRIu64
		    " AND node_id<>%" PRIu32, prev->id, self);
	if ((rc = locked_tx_stmt(&q)) < 0)
		goto fail;
	q.len = 0;
	sql_fmt(&q, "DELETE FROM replicas WHERE file_id=%" PRIu64 " AND node_id=%" PRIu32,
		prev->id, self);
	if ((rc = locked_tx_stmt(&q)) < 0)
		goto fail;
	rc = locked_exec("COMMIT", 6, NULL, false);
	if (rc < 0)
		goto fail;
	free(q.s);
	return 0;
fail:
	locked_rollback();
	free(q.s);
	return rc;
}

int cs_registry_unpublish(const char *ns, const char *rel, struct cs_file *prev)
{
	unsigned char h[CS_SHA256_LEN];
	struct cs_file now;
	uint32_t self;
	int rc;

	if ((rc = cs_registry_self(&self)) < 0)
		return rc;
	path_hash(ns, rel, h);
	pthread_mutex_lock(&db_lock);
	for (int attempt = 0; attempt < 4; attempt++) {
		rc = locked_unpublish(h, ns, rel, self, prev);
		if (rc != -EBUSY)
			break;
	}
	int reread = rc == 0 ? locked_db_file(h, ns, rel, &now, false) : -1;
	pthread_mutex_unlock(&db_lock);
	if (reread == 0)
		mc_put_file(h, &now, true);
	return rc == -EBUSY ? -EAGAIN : rc;
}

/* Current files per node, for spreading new copies; refreshed rarely. */
static struct {
	uint32_t id;
	uint64_t files;
} counts[MAX_NODES];
static int counts_n;
static int64_t counts_at = -1;

static uint64_t locked_count_of(uint32_t id)
{
	static const char sql[] =
		"SELECT node_id, COUNT(*) FROM replicas WHERE stale=0 GROUP BY node_id";

	if (counts_at < 0 || now_ms() - counts_at > COUNTS_LOCAL_MS) {
		MYSQL_RES *res = NULL;
		MYSQL_ROW row;

		pthread_mutex_lock(&db_lock);
		if (locked_query(sql, sizeof sql - 1, &res) == 0) {
			counts_n = 0;
			while ((row = mysql_fetch_row(res)) && counts_n < MAX_NODES) {
				counts[counts_n].id = (uint32_t)u64(row[0]);
				counts[counts_n++].files = u64(row[1]);
			}
			mysql_free_result(res);
		}
		pthread_mutex_unlock(&db_lock);
		counts_at = now_ms();
	}
	for (int i = 0; i < counts_n; i++)
		if (counts[i].id == id)
			return counts[i].files;
	return 0;
}

void cs_registry_note_copy(uint32_t node)
{
	pthread_mutex_lock(&nodes_lock);
	for (int i = 0; i < counts_n; i++)
		if (counts[i].id == node) {
			counts[i].files++;
			goto out;
		}
	if (counts_n < MAX_NODES) {
		counts[counts_n].id = node;
		counts[counts_n++].files = 1;
	}
out:
	pthread_mutex_unlock(&nodes_lock);
}

int cs_registry_targets(const struct cs_file *f, struct cs_node *out, int max)
{
	uint64_t files[MAX_NODES];
	uint32_t self = 0;
	int n = 0, rc;

	cs_registry_self(&self);
	pthread_mutex_lock(&nodes_lock);
	rc = locked_nodes_refresh();
	for (int j = 0; rc == 0 && j < node_n && n < max && n < MAX_NODES; j++) {
		const struct cs_node *x = &node_tab[j];
		bool holds = false;

		for (int i = 0; i < f->nholders; i++)
			holds |= f->holder[i] == x->id;
		if (holds || x->id == self || !x->up || !x->url[0])
			continue;
		out[n] = *x;
		files[n++] = locked_count_of(x->id);
	}
	pthread_mutex_unlock(&nodes_lock);
	if (rc < 0)
		return rc;
	/* Another zone first (a rack can fail whole), then the emptiest. */
	for (int i = 1; i < n; i++) {
		struct cs_node x = out[i];
		uint64_t fx = files[i];
		bool zx = cs_cfg.zone[0] && strcmp(x.zone, cs_cfg.zone) == 0;
		int j = i;

		while (j > 0) {
			bool zp = cs_cfg.zone[0] && strcmp(out[j - 1].zone, cs_cfg.zone) == 0;
			if (zp < zx || (zp == zx && files[j - 1] <= fx))
				break;
			out[j] = out[j - 1];
			files[j] = files[j - 1];
			j--;
		}
		out[j] = x;
		files[j] = fx;
	}
	return n;
}

int cs_registry_stale(struct cs_stale *out, int max)
{
	char sql[512];
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	uint32_t self;
	int n = 0, rc;

	if ((rc = cs_registry_self(&self)) < 0)
		return rc;
	int len = snprintf(sql, sizeof sql,
			   "SELECT r.file_id, r.version, r.size, r.mtime_ns, f.namespace, f.path"
			   " FROM replicas r JOIN files f ON f.id=r.file_id"
			   " WHERE r.node_id=%" PRIu32 " AND r.stale=1 LIMIT %d", self, max);
	pthread_mutex_lock(&db_lock);
	rc = locked_query(sql, len, &res);
	while (rc == 0 && (row = mysql_fetch_row(res)) && n < max) {
		unsigned long *l = mysql_fetch_lengths(res);
		struct cs_stale *x = &out[n];

		if (!row[4] || !row[5] || l[4] >= sizeof x->ns || l[5] >= sizeof x->rel)
			continue;
		x->file_id = u64(row[0]);
		x->version = u64(row[1]);
		x->size = u64(row[2]);
		x->mtime_ns = row[3] ? strtoll(row[3], NULL, 10) : 0;
		memcpy(x->ns, row[4], l[4]);
		x->ns[l[4]] = '\0';
		memcpy(x->rel, row[5], l[5]);
		x->rel[l[5]] = '\0';
		n++;
	}
	if (res)
		mysql_free_result(res);
	pthread_mutex_unlock(&db_lock);
	return rc < 0 ? rc : n;
}

int cs_registry_drop_copy(uint64_t file_id, uint64_t version)
{
	char sql[256];
	uint32_t self;
	int rc;

	if ((rc = cs_registry_self(&self)) < 0)
		return rc;
	int len = snprintf(sql, sizeof sql,
			   "DELETE FROM replicas WHERE file_id=%" PRIu64 " AND node_id=%" PRIu32
			   " AND stale=1 AND version=%" PRIu64, file_id, self, version);
	pthread_mutex_lock(&db_lock);
	rc = locked_query(sql, len, NULL);
	pthread_mutex_unlock(&db_lock);
	return rc;
}

/* ---- import and status (cs-replicate) ------------------------------ */

int cs_registry_import(const char *ns, const char *rel, uint64_t size,
		       int64_t mtime_ns, const unsigned char sha[CS_SHA256_LEN])
{
	unsigned char h[CS_SHA256_LEN];
	struct cs_file f;
	struct sql q = { 0 };
	uint32_t self;
	int rc;

	if ((rc = cs_registry_self(&self)) < 0)
		return rc;
	path_hash(ns, rel, h);
	pthread_mutex_lock(&db_lock);
	rc = locked_db_file(h, ns, rel, &f, false);
	if (rc == 0 && !f.deleted && memcmp(f.sha256, sha, CS_SHA256_LEN) != 0) {
		rc = -EEXIST;
		goto out;
	}
	if (rc == -ENOENT) {
		locked_sql_new_file(&q, h, ns, rel, size, mtime_ns, sha);
	} else if (rc == 0 && f.deleted) {
		/* Re-created over a tombstone: a new version. */
		sql_fmt(&q, "UPDATE files f SET version=version+1, deleted=0,"
			    " size=%" PRIu64 ", mtime_ns=%" PRId64 ", sha256=",
			size, mtime_ns);
		sql_hex(&q, sha, CS_SHA256_LEN);
		sql_fmt(&q, " WHERE f.id=%" PRIu64 " AND f.version=%" PRIu64,
			f.id, f.version);
	} else if (rc < 0) {
		goto out;
	}
	if (q.len) {
		if (q.oom || (rc = locked_query(q.s, q.len, NULL)) < 0) {
			rc = q.oom ? -ENOMEM : rc;
			goto out;
		}
	}
	if ((rc = locked_db_file(h, ns, rel, &f, false)) < 0)
		goto out;
	q.len = 0;
	sql_replica_upsert(&q, f.id, self, f.version, f.size, f.mtime_ns);
	if ((rc = locked_query(q.s, q.len, NULL)) == 0)
		rc = locked_db_file(h, ns, rel, &f, false);
out:
	pthread_mutex_unlock(&db_lock);
	free(q.s);
	if (rc == 0)
		mc_put_file(h, &f, true);
	return rc;
}

int cs_registry_status(struct cs_node_status *st, int *n, uint64_t *files)
{
	static const char nodes_sql[] =
		"SELECT n.id, n.name, n.url, n.zone,"
		" COALESCE(n.heartbeat_at > NOW(3) - INTERVAL 10 SECOND, 0),"
		" COALESCE(TIMESTAMPDIFF(MICROSECOND, n.heartbeat_at, NOW(3)), -1000000),"
		" (SELECT COUNT(*) FROM replicas r JOIN files f ON f.id=r.file_id"
		"   AND f.version=r.version AND f.deleted=0 WHERE r.node_id=n.id)"
		" FROM nodes n ORDER BY n.name";
	static const char files_sql[] = "SELECT COUNT(*) FROM files WHERE deleted=0";
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int count = 0, rc;

	pthread_mutex_lock(&db_lock);
	rc = locked_query(nodes_sql, sizeof nodes_sql - 1, &res);
	if (rc < 0)
		goto out;
	while ((row = mysql_fetch_row(res)) && count < *n) {
		struct cs_node_status *x = &st[count++];
		memset(x, 0, sizeof *x);
		x->node.id = (uint32_t)u64(row[0]);
		snprintf(x->node.name, sizeof x->node.name, "%s", row[1] ? row[1] : "");
		snprintf(x->node.url, sizeof x->node.url, "%s", row[2] ? row[2] : "");
		snprintf(x->node.zone, sizeof x->node.zone, "%s", row[3] ? row[3] : "");
		x->node.up = row[4] && row[4][0] == '1';
		x->heartbeat_age = row[5] ? strtod(row[5], NULL) / 1e6 : -1;
		x->files = u64(row[6]);
	}
	mysql_free_result(res);
	res = NULL;
	*n = count;
	rc = locked_query(files_sql, sizeof files_sql - 1, &res);
	if (rc == 0) {
		row = mysql_fetch_row(res);
		*files = row ? u64(row[0]) : 0;
		mysql_free_result(res);
	}
out:
	pthread_mutex_unlock(&db_lock);
	return rc;
}

/* ---- process lifetime ---------------------------------------------- */

void cs_registry_forget(void)
{
	/* The child shares the parent's sockets: closing them politely would
	 * end the parent's sessions.  Drop the handles; fresh ones come lazily.
	 * (The replicator's set belonged to a thread the child does not have.) */
	pthread_mutex_init(&shared.db_lock_, NULL);
	pthread_mutex_init(&shared.mc_lock_, NULL);
	pthread_mutex_init(&neg_lock, NULL);
	pthread_mutex_init(&nodes_lock, NULL);
	shared.db_ = NULL;
	shared.pending_ = false;
	shared.mc_ = NULL;
	own = NULL;
}

int cs_registry_own_connections(void)
{
	struct conn *c = calloc(1, sizeof *c);

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->db_lock_, NULL);
	pthread_mutex_init(&c->mc_lock_, NULL);
	own = c;
	return 0;
}

void cs_registry_shutdown(void)
{
	pthread_mutex_lock(&db_lock);
	locked_settle();
	if (db)
		mysql_close(db);
	db = NULL;
	pthread_mutex_unlock(&db_lock);
	pthread_mutex_lock(&mc_lock);
	if (mc)
		memcached_free(mc);
	mc = NULL;
	pthread_mutex_unlock(&mc_lock);
}
