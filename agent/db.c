/*
 * db.c - the agent's connections to MySQL/MariaDB.
 *
 * However many host processes miss or write, a node talks to the registry
 * over at most CS_DB_CONNECTIONS connections: a thread checks one out for a
 * statement or a transaction and puts it back.  Connections are made when
 * first needed and again after a server restart.
 *
 * CS_MYSQL may name several servers (a Galera cluster's nodes).  Every
 * agent tries them in the order given, so all normally write to the first
 * and Galera's certification conflicts stay rare.  A server that refuses
 * or does not answer a connection in time, or answers that it is not a
 * working member of its cluster (1047), has a circuit breaker of its own:
 * it is passed over for a while (1 s doubling to 8 s) and the connection
 * is made to the next one at once; while it fails, it is tried again only
 * when no working server is left.  A connection on a later server goes
 * back to an earlier one after REHOME_MS once that one works again (a
 * failing server is probed in the background, never on a caller's time):
 * the agents gather on the first server again.
 *
 * The registry as a whole is down only when every server fails: then
 * every cs_db_get() fails at once for a while (the whole's breaker) instead
 * of waiting for timeouts, so misses answer "unavailable" in microseconds
 * and the journals simply wait.  One line is logged when MySQL becomes
 * unreachable and one when it is back, and, with several servers, one
 * when each goes down or comes back; what was held up meanwhile is the
 * agent's to report (agent.c).
 *
 * Slow is not dead.  A statement that outlives the read timeout (2 s for
 * the agent, CS_ADMIN_TIMEOUT for a command) loses its connection like a
 * dead server would; a fresh connection to the same server then tells the
 * two apart: it answers, so the statement was slow (-ETIMEDOUT, logged
 * every 10 s at most, no breaker; the fresh connection asks the server to
 * stop the statement), or it does not, so the server is failing.  The
 * server's own statement timeout (1969) is slow too.  Every statement that
 * fails, or cannot be sent for want of a connection, is counted for
 * /metrics; a race the caller retries whole (-EBUSY) is not a failure.
 */
#include <errmsg.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "breaker.h"
#include "db.h"
#include "metrics.h"

#define WAIT_MS 2000            /* for a connection to come free */
#define CONNECT_S 1             /* to connect, and for the server's greeting */
#define REHOME_MS 10000         /* a connection on a later server, then back */

struct cs_db {
	MYSQL *m;
	int host;               /* m's server: an index in cs_cfg.mysql.host */
	int64_t made;           /* when m was made (monotonic ms) */
	bool busy;
};

static struct cs_db pool[CS_DB_CONNECTIONS_MAX];
static int pool_n = 4;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t freed = PTHREAD_COND_INITIALIZER;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static struct cs_breaker brk;   /* under mu: every server failing */
static struct cs_breaker hosts[CS_MYSQL_HOSTS_MAX];    /* under mu: each server */
static unsigned io_timeout = 2; /* s, reads and writes; cs_db_set_timeouts */

static void lib_init(void)
{
	mysql_library_init(0, NULL, NULL);
}

void cs_db_init(int connections)
{
	pthread_once(&lib_once, lib_init);
	pool_n = connections < 1 ? 1 :
		 connections > CS_DB_CONNECTIONS_MAX ? CS_DB_CONNECTIONS_MAX : connections;
}

void cs_db_set_timeouts(int read_ms)
{
	io_timeout = read_ms < 1000 ? 1 : (unsigned)((read_ms + 999) / 1000);
}

static int nhosts(void)
{
	return cs_cfg.mysql.nhosts > 0 ? cs_cfg.mysql.nhosts : 1;
}

/* "host:port" of server i, for the log. */
static const char *host_name(int i, char *buf, size_t size)
{
	const struct cs_mysql_host *h = &cs_cfg.mysql.host[i];

	if (h->port)
		snprintf(buf, size, strchr(h->name, ':') ? "[%s]:%u" : "%s:%u", h->name, h->port);
	else
		snprintf(buf, size, "%s", h->name);
	return buf;
}

static void failed(const char *why)
{
	pthread_mutex_lock(&mu);
	if (cs_breaker_fail(&brk, cs_clock_ms()))
		cs_error("MySQL unreachable (%s): misses of files not held here answer EIO, "
			 "writes wait in the journals; retrying every %d s at most",
			 why, CS_BREAKER_MAX_MS / 1000);
	pthread_mutex_unlock(&mu);
}

/* When MySQL last came back after failing (monotonic ms; 0: never failed). */
static int64_t back_at;

static void worked(void)
{
	pthread_mutex_lock(&mu);
	int64_t down = cs_breaker_ok(&brk, cs_clock_ms());
	if (down) {
		cs_warn("MySQL reachable again after %.1f s", down / 1000.0);
		back_at = cs_clock_ms();
	}
	pthread_mutex_unlock(&mu);
}

/* Server i failed to connect or to serve; said once while it fails (with
 * one server, failed() says it for the whole). */
static void host_failed(int i, const char *why)
{
	char name[300];

	pthread_mutex_lock(&mu);
	if (cs_breaker_fail(&hosts[i], cs_clock_ms()) && nhosts() > 1)
		cs_error("MySQL server %s failing (%s); connections go to the next one",
			 host_name(i, name, sizeof name), why);
	pthread_mutex_unlock(&mu);
}

static void host_worked(int i)
{
	char name[300];

	pthread_mutex_lock(&mu);
	int64_t down = cs_breaker_ok(&hosts[i], cs_clock_ms());
	if (down && nhosts() > 1)
		cs_warn("MySQL server %s working again after %.1f s",
			host_name(i, name, sizeof name), down / 1000.0);
	pthread_mutex_unlock(&mu);
}

int64_t cs_db_back_at(void)
{
	pthread_mutex_lock(&mu);
	int64_t t = back_at;
	pthread_mutex_unlock(&mu);
	return t;
}

bool cs_db_down(int64_t *since_ms)
{
	pthread_mutex_lock(&mu);
	int64_t since = brk.down_since;
	pthread_mutex_unlock(&mu);
	if (since_ms)
		*since_ms = since;
	return since != 0;
}

/* A connection to server i, reads timing out after read_s; NULL with why. */
static MYSQL *connect_to(int i, unsigned read_s, char *why, size_t size)
{
	const struct cs_mysql_dsn *c = &cs_cfg.mysql;
	const struct cs_mysql_host *h = &c->host[i];
	unsigned int timeout = CONNECT_S;
	my_bool off = 0;
	MYSQL *m = mysql_init(NULL);

	if (!m) {
		snprintf(why, size, "out of memory");
		return NULL;
	}
	mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &read_s);
	mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &read_s);
	mysql_options(m, MYSQL_OPT_RECONNECT, &off);
	mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	if (!mysql_real_connect(m, h->name, c->user, c->pass[0] ? c->pass : NULL,
				c->database, h->port, c->socket[0] ? c->socket : NULL,
				CLIENT_FOUND_ROWS | CLIENT_MULTI_STATEMENTS))
		goto fail;
	/* A Galera node that is not a synced member of the primary component
	 * takes connections but refuses statements (1047): pass it over now
	 * rather than fail the statement.  No row: no Galera. */
	if (c->nhosts > 1) {
		MYSQL_RES *r;
		MYSQL_ROW row;
		bool ready = true;

		static const char ready_q[] = "SHOW STATUS LIKE 'wsrep_ready'";

		if (mysql_real_query(m, ready_q, sizeof ready_q - 1) != 0 ||
		    !(r = mysql_store_result(m)))
			goto fail;
		if ((row = mysql_fetch_row(r)) && row[1] && strcmp(row[1], "ON") != 0)
			ready = false;
		mysql_free_result(r);
		if (!ready) {
			snprintf(why, size, "not a ready member of its Galera cluster");
			mysql_close(m);
			return NULL;
		}
	}
	return m;
fail:
	snprintf(why, size, "%s", mysql_error(m));
	mysql_close(m);
	return NULL;
}

/* Whether dial may try server i now, in pass 0 (servers that work) or 1
 * (failing ones, and, when every breaker is open, all: the whole's breaker
 * spaced the tries already).  A failing server is claimed for a second,
 * so that one connection at a time waits on it. */
static bool may_try(int i, int pass, bool all, int64_t now)
{
	bool ok, failing;

	pthread_mutex_lock(&mu);
	failing = hosts[i].down_since || cs_breaker_open(&hosts[i], now);
	ok = pass == 0 ? !failing : failing && (all || !cs_breaker_open(&hosts[i], now));
	if (ok && pass == 1)
		hosts[i].open_until = now + CS_BREAKER_MIN_MS;
	pthread_mutex_unlock(&mu);
	return ok;
}

/*
 * Make d's connection, to the first server that works: those known to
 * work first, in order, then failing ones whose breaker lets them be
 * tried (or all, when every breaker is open), so that a caller waits on a
 * dead server's connect timeout only when no other server is left.  False
 * (the whole's breaker opened) when none works.
 */
static bool dial(struct cs_db *d)
{
	char why[256] = "no server";
	int n = nhosts();
	int64_t now = cs_clock_ms();
	bool all = true;

	pthread_mutex_lock(&mu);
	for (int i = 0; i < n; i++)
		all &= cs_breaker_open(&hosts[i], now);
	pthread_mutex_unlock(&mu);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < n; i++) {
			if (!may_try(i, pass, all, now))
				continue;
			MYSQL *m = connect_to(i, io_timeout, why, sizeof why);
			if (m) {
				d->m = m;
				d->host = i;
				d->made = cs_clock_ms();
				host_worked(i);
				worked();
				return true;
			}
			host_failed(i, why);
		}
	}
	failed(why);
	return false;
}

static bool probing;             /* under mu: a probe() thread runs */

/* Whether failing server i (arg) takes connections again: learnt off any
 * caller's path, as connecting to a server that does not answer takes the
 * connect timeout. */
static void *probe(void *arg)
{
	int i = (int)(intptr_t)arg;
	char why[256];
	MYSQL *m;

	mysql_thread_init();
	if ((m = connect_to(i, CONNECT_S, why, sizeof why))) {
		mysql_close(m);
		host_worked(i);
	} else {
		host_failed(i, why);
	}
	pthread_mutex_lock(&mu);
	probing = false;
	pthread_mutex_unlock(&mu);
	mysql_thread_end();
	return NULL;
}

/*
 * Whether d's connection should go back to an earlier server: it was made
 * on a later one long enough ago, and an earlier one works.  One that is
 * failing is probed in the background when its breaker lets it be tried;
 * once it answers, the next cs_db_get moves d.
 */
static bool locked_rehome(const struct cs_db *d, int64_t now)
{
	pthread_t t;
	pthread_attr_t a;

	if (!d->m || d->host == 0 || now - d->made < REHOME_MS)
		return false;
	for (int i = 0; i < d->host; i++) {
		if (!hosts[i].down_since)
			return true;
		if (cs_breaker_open(&hosts[i], now) || probing)
			continue;
		hosts[i].open_until = now + CS_BREAKER_MIN_MS;  /* one probe */
		pthread_attr_init(&a);
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		probing = pthread_create(&t, &a, probe, (void *)(intptr_t)i) == 0;
		pthread_attr_destroy(&a);
	}
	return false;
}

struct cs_db *cs_db_get(void)
{
	struct cs_db *d = NULL;
	struct timespec until;
	MYSQL *old = NULL;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&mu);
	for (;;) {
		if (cs_breaker_open(&brk, cs_clock_ms()))
			break;
		for (int i = 0; i < pool_n && !d; i++)
			if (!pool[i].busy)
				d = &pool[i];
		if (d || pthread_cond_timedwait(&freed, &mu, &until) != 0)
			break;
	}
	if (d) {
		d->busy = true;
		if (locked_rehome(d, cs_clock_ms())) {
			old = d->m;
			d->m = NULL;
		}
	}
	pthread_mutex_unlock(&mu);
	if (old)
		mysql_close(old);
	if (d && !d->m && !dial(d)) {
		cs_db_put(d);
		d = NULL;
	}
	if (!d)
		cs_count(CS_C_REGISTRY_ERRORS, 1);
	return d;
}

void cs_db_put(struct cs_db *d)
{
	pthread_mutex_lock(&mu);
	d->busy = false;
	pthread_cond_signal(&freed);
	pthread_mutex_unlock(&mu);
}

static void drop(struct cs_db *d)
{
	mysql_close(d->m);
	d->m = NULL;
}

/*
 * d's statement lost its connection after waiting started_ms (monotonic)
 * on the server: slow or dead?  A statement that lasted the whole read
 * timeout may just be slow: a fresh connection to its server says which.
 * Either way d's connection is dropped (the next use makes another).  It
 * answers: it stops the statement, which the server would otherwise run to
 * its end for nobody; -ETIMEDOUT.  It does not: the server is failing;
 * -EAGAIN, as for a connection lost before the timeout (closed under it:
 * the next connect finds out what that was).
 */
static int lost(struct cs_db *d, int64_t started_ms)
{
	char why[256], name[300], kill[64];
	unsigned long id = mysql_thread_id(d->m);
	int64_t took = cs_clock_ms() - started_ms;
	MYSQL *m;

	drop(d);
	if (took < (int64_t)io_timeout * 1000 - 100)
		return -EAGAIN;         /* closed under it: the next dial finds out */
	if (!(m = connect_to(d->host, CONNECT_S, why, sizeof why))) {
		host_failed(d->host, why);
		return -EAGAIN;
	}
	snprintf(kill, sizeof kill, "KILL QUERY %lu", id);
	mysql_real_query(m, kill, strlen(kill));
	mysql_close(m);
	cs_error_every(10, "MySQL server %s: a statement took over %u s; the server answers, "
		       "so it is slow, not down (%s)", host_name(d->host, name, sizeof name),
		       io_timeout, "the statement was stopped and failed");
	return -ETIMEDOUT;
}

/* What a failed call (started at started_ms) means: -EAGAIN (the
 * connection is gone or refused: dropped here), -ETIMEDOUT (the statement
 * was too slow), -EBUSY (a race to retry whole) or -EIO (logged). */
static int classify(struct cs_db *d, int64_t started_ms)
{
	unsigned int e = mysql_errno(d->m);
	char name[300];

	/* duplicate key; deadlock, which is also how Galera says a
	 * transaction lost certification to another node's; lock wait */
	if (e == 1062 || e == 1213 || e == 1205)
		return -EBUSY;
	cs_count(CS_C_REGISTRY_ERRORS, 1);
	if (e == 1969) {        /* ER_STATEMENT_TIMEOUT: the server's own limit */
		cs_error_every(10, "MySQL: %s (slow, not down)", mysql_error(d->m));
		return -ETIMEDOUT;
	}
	if (e == CR_SERVER_LOST)
		return lost(d, started_ms);
	if (e == 1047) {        /* ER_UNKNOWN_COM_ERROR: a Galera node not ready */
		host_failed(d->host, mysql_error(d->m));
		drop(d);
		return -EAGAIN;
	}
	if (e == CR_SERVER_GONE_ERROR || e == CR_CONNECTION_ERROR ||
	    e == CR_CONN_HOST_ERROR || e == 1040 /* ER_CON_COUNT_ERROR */ ||
	    e == 4031 /* ER_CLIENT_INTERACTION_TIMEOUT */ || e == 1053 /* shutdown */ ||
	    e == 1927 /* ER_CONNECTION_KILLED */) {
		drop(d);
		return -EAGAIN;
	}
	cs_error_every(10, "MySQL server %s: %s", host_name(d->host, name, sizeof name),
		       mysql_error(d->m));
	return -EIO;
}

/* A statement that is safe to repeat and lost a race other than a
 * duplicate key (which would only come again) is tried this often. */
#define RACE_TRIES 4

int cs_db_exec(struct cs_db *d, const char *sql, size_t len, MYSQL_RES **res, bool retry)
{
	int lost = 0, races = 0, rc;

	for (;;) {
		if (!d->m && !dial(d)) {
			cs_count(CS_C_REGISTRY_ERRORS, 1);
			return -EAGAIN;
		}
		int64_t t0 = cs_clock_ms();
		if (mysql_real_query(d->m, sql, len) == 0) {
			if (!res)
				return 0;
			*res = mysql_store_result(d->m);
			if (*res || mysql_field_count(d->m) == 0)
				return 0;
		}
		rc = classify(d, t0);
		if (!retry)
			return rc;
		if (rc == -EAGAIN && ++lost < 2)
			continue;       /* made again, on the next server if need be */
		if (rc == -EBUSY && mysql_errno(d->m) != 1062 && ++races < RACE_TRIES) {
			cs_db_backoff(races);
			continue;
		}
		return rc;
	}
}

int cs_db_run(struct cs_db *d, const struct cs_buf *q, MYSQL_RES **res, bool retry)
{
	return q->oom ? -ENOMEM : cs_db_exec(d, q->s, q->len, res, retry);
}

int cs_db_multi(struct cs_db *d, const struct cs_buf *q, MYSQL_RES **res, int nres,
		uint64_t *ids, int nids)
{
	int rc = cs_db_run(d, q, NULL, false), status, set = 0, stmt = 0;
	bool unread = false;    /* a result set that could not be read */
	int64_t t0 = cs_clock_ms();

	if (rc < 0)
		return rc;
	do {
		MYSQL_RES *r = mysql_store_result(d->m);
		if (!r && mysql_field_count(d->m) != 0)
			unread = true;  /* the later sets would be taken for its */
		if (r && set < nres)
			res[set++] = r;
		else if (r)
			mysql_free_result(r);
		if (stmt < nids)
			ids[stmt] = mysql_insert_id(d->m);
		stmt++;
		t0 = cs_clock_ms();
		status = mysql_next_result(d->m);
	} while (status == 0);
	if (status > 0)
		return classify(d, t0);
	if (unread) {
		cs_count(CS_C_REGISTRY_ERRORS, 1);
		cs_error_every(10, "MySQL: a result could not be read: %s", mysql_error(d->m));
		return -EIO;
	}
	return 0;
}

int cs_db_each(struct cs_db *d, const char *sql, size_t len,
	       void (*fn)(void *arg, MYSQL_ROW row, unsigned long *lens), void *arg)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	int rc;

	if (!d->m && !dial(d)) {
		cs_count(CS_C_REGISTRY_ERRORS, 1);
		return -EAGAIN;
	}
	/* t0: when the client last waited for the server's next bytes */
	int64_t t0 = cs_clock_ms();
	if (mysql_real_query(d->m, sql, len) != 0 || !(res = mysql_use_result(d->m)))
		return classify(d, t0);
	for (t0 = cs_clock_ms(); (row = mysql_fetch_row(res)); t0 = cs_clock_ms())
		fn(arg, row, mysql_fetch_lengths(res));
	rc = mysql_errno(d->m);
	mysql_free_result(res);         /* before classify may close d's connection */
	return rc == 0 ? 0 : classify(d, t0);
}

void cs_db_rollback(struct cs_db *d)
{
	if (d->m && mysql_real_query(d->m, "ROLLBACK", 8) != 0)
		drop(d);
}

void cs_db_backoff(int tries)
{
	static __thread unsigned seed;
	int ms = 10 << (tries > 1 ? (tries - 1 > 5 ? 5 : tries - 1) : 0);

	if (!seed)
		seed = (unsigned)cs_clock_ms() ^ (unsigned)(uintptr_t)&seed;
	if (ms > 200)
		ms = 200;
	ms = ms / 2 + (int)(rand_r(&seed) % (unsigned)(ms / 2 + 1));
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

struct cs_db *cs_db_for(struct cs_buf *q, int *err)
{
	struct cs_db *d = q->oom ? NULL : cs_db_get();

	if (!d) {
		*err = q->oom ? -ENOMEM : -EAGAIN;
		cs_buf_free(q);
	}
	return d;
}

int cs_db_query(struct cs_buf *q, MYSQL_RES **res)
{
	int rc;
	struct cs_db *d = cs_db_for(q, &rc);

	if (!d)
		return rc;
	rc = cs_db_exec(d, q->s, q->len, res, true);
	cs_db_put(d);
	cs_buf_free(q);
	return rc;
}

int cs_db_query_each(struct cs_buf *q, void (*fn)(void *arg, MYSQL_ROW row, unsigned long *lens),
		     void *arg)
{
	int rc;
	struct cs_db *d = cs_db_for(q, &rc);

	if (!d)
		return rc;
	rc = cs_db_each(d, q->s, q->len, fn, arg);
	cs_db_put(d);
	cs_buf_free(q);
	return rc;
}

uint64_t cs_db_insert_id(struct cs_db *d)
{
	return d->m ? mysql_insert_id(d->m) : 0;
}

uint64_t cs_db_affected(struct cs_db *d)
{
	my_ulonglong n = d->m ? mysql_affected_rows(d->m) : 0;

	return n == (my_ulonglong)-1 ? 0 : n;
}

void cs_db_shutdown(void)
{
	pthread_mutex_lock(&mu);
	for (int i = 0; i < pool_n; i++)
		if (pool[i].m && !pool[i].busy) {
			mysql_close(pool[i].m);
			pool[i].m = NULL;
		}
	pthread_mutex_unlock(&mu);
}

uint64_t cs_db_u64(const char *s)
{
	return s ? strtoull(s, NULL, 10) : 0;
}

/* ---- SQL text ---------------------------------------------------------- */

void cs_sql_str(struct cs_buf *q, const char *p)
{
	cs_buf_put(q, p, strlen(p));
}

void cs_sql_fmt(struct cs_buf *q, const char *fmt, ...)
{
	char buf[1024];        /* every format here is far shorter */
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > 0)
		cs_buf_put(q, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

void cs_sql_hex(struct cs_buf *q, const void *p, size_t n)
{
	char hex[2 * 64 + 1];
	const unsigned char *b = p;

	if (n == 0) {
		cs_buf_put(q, "''", 2);
		return;
	}
	cs_buf_put(q, "X'", 2);
	for (size_t i = 0; i < n; i += 64) {
		size_t m = n - i < 64 ? n - i : 64;
		cs_hex(b + i, m, hex);
		cs_buf_put(q, hex, 2 * m);
	}
	cs_buf_put(q, "'", 1);
}

void cs_sql_text(struct cs_buf *q, const char *s)
{
	cs_sql_hex(q, s, strlen(s));
}
