/*
 * db.c - the agent's connections to MySQL/MariaDB.
 *
 * However many host processes miss or write, a node talks to the registry
 * over at most CS_DB_CONNECTIONS connections: a thread checks one out for a
 * statement or a transaction and puts it back.  Connections are made when
 * first needed and again after a server restart.  Every call has a short
 * timeout, and a failure opens a circuit breaker: while MySQL is down, every
 * cs_db_get() fails at once for a while (1 s doubling to 8 s) instead of
 * waiting for timeouts, so misses answer "unavailable" in microseconds and
 * the journals simply wait.  One line is logged when MySQL becomes
 * unreachable and one when it is back; what was held up meanwhile is the
 * agent's to report (agent.c).  Every statement that fails, or cannot be
 * sent for want of a connection, is counted for /metrics; a race the
 * caller retries whole (-EBUSY) is not a failure.
 */
#include <errmsg.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "breaker.h"
#include "db.h"
#include "metrics.h"

#define WAIT_MS 2000            /* for a connection to come free */

struct cs_db {
	MYSQL *m;
	bool busy;
};

static struct cs_db pool[CS_DB_CONNECTIONS_MAX];
static int pool_n = 4;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t freed = PTHREAD_COND_INITIALIZER;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static struct cs_breaker brk;   /* under mu */

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

/* Make d's connection; false (and the breaker opened) when it cannot be. */
static bool dial(struct cs_db *d)
{
	const struct cs_mysql_dsn *c = &cs_cfg.mysql;
	unsigned int timeout = 1, io_timeout = 2;
	my_bool off = 0;

	if (!(d->m = mysql_init(NULL)))
		return false;
	mysql_options(d->m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_options(d->m, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
	mysql_options(d->m, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
	mysql_options(d->m, MYSQL_OPT_RECONNECT, &off);
	mysql_options(d->m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	if (!mysql_real_connect(d->m, c->host, c->user, c->pass[0] ? c->pass : NULL,
				c->database, c->port, c->socket[0] ? c->socket : NULL,
				CLIENT_FOUND_ROWS | CLIENT_MULTI_STATEMENTS)) {
		failed(mysql_error(d->m));
		mysql_close(d->m);
		d->m = NULL;
		return false;
	}
	worked();
	return true;
}

struct cs_db *cs_db_get(void)
{
	struct cs_db *d = NULL;
	struct timespec until;

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
	if (d)
		d->busy = true;
	pthread_mutex_unlock(&mu);
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

/* What a failed call means: -EAGAIN (the connection is gone or refused:
 * dropped here), -EBUSY (a race to retry whole) or -EIO (logged). */
static int classify(struct cs_db *d)
{
	unsigned int e = mysql_errno(d->m);

	if (e == 1062 || e == 1213 || e == 1205)
		return -EBUSY;
	cs_count(CS_C_REGISTRY_ERRORS, 1);
	if (e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST || e == CR_CONNECTION_ERROR ||
	    e == CR_CONN_HOST_ERROR || e == 1040 /* ER_CON_COUNT_ERROR */ ||
	    e == 4031 /* ER_CLIENT_INTERACTION_TIMEOUT */ || e == 1053 /* shutdown */) {
		mysql_close(d->m);
		d->m = NULL;
		return -EAGAIN;
	}
	cs_error_every(10, "MySQL: %s", mysql_error(d->m));
	return -EIO;
}

int cs_db_exec(struct cs_db *d, const char *sql, size_t len, MYSQL_RES **res, bool retry)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!d->m && !dial(d)) {
			cs_count(CS_C_REGISTRY_ERRORS, 1);
			return -EAGAIN;
		}
		if (mysql_real_query(d->m, sql, len) == 0) {
			if (!res)
				return 0;
			*res = mysql_store_result(d->m);
			if (*res || mysql_field_count(d->m) == 0)
				return 0;
		}
		int rc = classify(d);
		if (rc != -EAGAIN)
			return rc;
		if (attempt == 0 && retry)
			continue;
		failed("connection lost");
		return -EAGAIN;
	}
	return -EAGAIN;
}

int cs_db_run(struct cs_db *d, const struct cs_buf *q, MYSQL_RES **res, bool retry)
{
	return q->oom ? -ENOMEM : cs_db_exec(d, q->s, q->len, res, retry);
}

int cs_db_multi(struct cs_db *d, const struct cs_buf *q, MYSQL_RES **res, int nres,
		uint64_t *ids, int nids)
{
	int rc = cs_db_run(d, q, NULL, false), status, set = 0, stmt = 0;
	bool lost = false;      /* a result set that could not be read */

	if (rc < 0)
		return rc;
	do {
		MYSQL_RES *r = mysql_store_result(d->m);
		if (!r && mysql_field_count(d->m) != 0)
			lost = true;    /* the later sets would be taken for its */
		if (r && set < nres)
			res[set++] = r;
		else if (r)
			mysql_free_result(r);
		if (stmt < nids)
			ids[stmt] = mysql_insert_id(d->m);
		stmt++;
		status = mysql_next_result(d->m);
	} while (status == 0);
	if (status > 0) {
		rc = classify(d);
		if (rc == -EAGAIN)
			failed("connection lost");
		return rc;
	}
	if (lost) {
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
	if (mysql_real_query(d->m, sql, len) != 0 || !(res = mysql_use_result(d->m)))
		goto failed;
	while ((row = mysql_fetch_row(res)))
		fn(arg, row, mysql_fetch_lengths(res));
	rc = mysql_errno(d->m);
	mysql_free_result(res);
	if (rc == 0)
		return 0;
failed:
	rc = classify(d);
	if (rc == -EAGAIN)
		failed("connection lost");
	return rc;
}

void cs_db_rollback(struct cs_db *d)
{
	if (d->m && mysql_real_query(d->m, "ROLLBACK", 8) != 0) {
		mysql_close(d->m);
		d->m = NULL;
	}
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
