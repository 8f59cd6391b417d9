/*
 * db.h - the agent's MySQL/MariaDB connections (db.c): a small pool shared
 * by every thread, a circuit breaker, one error classifier, and a builder
 * for statements.  The only header that includes the MySQL client's
 * (<mysql.h>, for the result sets and rows its callers read); only db.c
 * includes more of it.
 */
#ifndef CS_DB_H
#define CS_DB_H

#include <mysql.h>

#include "buf.h"
#include "cs.h"

/* One connection, checked out of the pool for a statement or a transaction. */
struct cs_db;

/* CS_DB_CONNECTIONS's largest value: MySQL connections a node keeps at
 * most, and memcached ones likewise (mcache.c). */
#define CS_DB_CONNECTIONS_MAX 64
/* Size the pool (CS_DB_CONNECTIONS); once, before any cs_db_get. */
void cs_db_init(int connections);
/* How long a statement may keep the client waiting for the server's
 * bytes (default 2 s, the agent's): a command sets CS_ADMIN_TIMEOUT's
 * before its first statement, as its scans may take longer. */
void cs_db_set_timeouts(int read_ms);
/*
 * A connection, made if needed, waiting a little for one to come free; NULL
 * when MySQL cannot be used now (the breaker is open after a failure, or
 * every connection stayed busy): the caller answers -EAGAIN.
 */
struct cs_db *cs_db_get(void);
void cs_db_put(struct cs_db *d);

/*
 * Run one statement; *res gets its result set when it has one.  With retry,
 * a lost connection is made again once (the server may have restarted): only
 * for statements that are safe to repeat outside a transaction (on the
 * next server when CS_MYSQL names several and this one fails).  0, -EAGAIN
 * when MySQL cannot be used, -ETIMEDOUT when the statement took too long on
 * a server that still answers (slow, not down: no breaker; not retried),
 * -EBUSY for a lost race (duplicate key, deadlock or a Galera certification
 * failure, lock wait) that the caller should retry whole after
 * cs_db_backoff, -EIO for anything else.
 */
int cs_db_exec(struct cs_db *d, const char *sql, size_t len, MYSQL_RES **res, bool retry);
/* cs_db_exec of q's text, or -ENOMEM when q could not be built. */
int cs_db_run(struct cs_db *d, const struct cs_buf *q, MYSQL_RES **res, bool retry);
/*
 * q's several statements in one round trip (inside a transaction: never
 * sent again on a new connection).  res[i] gets the i-th result set (of
 * nres; the rest are freed), ids[i] the AUTO_INCREMENT value statement i
 * made (of nids).  The server stops at the first failing statement; its
 * error is returned as cs_db_exec would, and the sets already taken are the
 * caller's.  -ENOMEM when q could not be built.
 */
int cs_db_multi(struct cs_db *d, const struct cs_buf *q, MYSQL_RES **res, int nres,
		uint64_t *ids, int nids);
/* A SELECT whose rows go to fn as they arrive, for results too large to
 * hold (the index is built from every file the cluster has).  0 or as
 * cs_db_exec (never retried). */
int cs_db_each(struct cs_db *d, const char *sql, size_t len,
	       void (*fn)(void *arg, MYSQL_ROW row, unsigned long *lens), void *arg);
void cs_db_rollback(struct cs_db *d);
/* Before try number `tries` (1, 2 ...) of a transaction that lost a race
 * (-EBUSY): sleep 10 ms doubling to 200 ms, each a random 50-100 % of
 * that, so that two writers that collided do not collide again in step. */
void cs_db_backoff(int tries);
/* A connection to run q on; NULL with *err set (-ENOMEM when q could not
 * be built, -EAGAIN) and q freed. */
struct cs_db *cs_db_for(struct cs_buf *q, int *err);
/* One statement that is safe to repeat, on a connection of the pool taken
 * and given back: cs_db_exec's answers, or -ENOMEM when q could not be
 * built.  q is freed. */
int cs_db_query(struct cs_buf *q, MYSQL_RES **res);
/* The same for a SELECT whose rows go to fn as they arrive (cs_db_each):
 * 0 or its answers.  q is freed. */
int cs_db_query_each(struct cs_buf *q, void (*fn)(void *arg, MYSQL_ROW row, unsigned long *lens),
		     void *arg);
uint64_t cs_db_insert_id(struct cs_db *d);
/* Rows the last statement on d changed (or deleted). */
uint64_t cs_db_affected(struct cs_db *d);

/* When MySQL last came back after failing (monotonic ms), 0 if it never
 * failed: heartbeats written meanwhile are missing, so until every node has
 * sent one again, "down" cannot be told from "not heard of". */
int64_t cs_db_back_at(void);
/* Whether MySQL is failing, and since when (monotonic ms). */
bool cs_db_down(int64_t *since_ms);
/* Close every connection (the agent is stopping). */
void cs_db_shutdown(void);

/* A column as a number (0 for NULL). */
uint64_t cs_db_u64(const char *s);

/*
 * SQL text, built in a struct cs_buf.  Names and paths always go in as hex
 * literals (X'...'), so nothing needs escaping and no byte of a path can
 * end a string.  q->oom says an allocation failed (the text is then
 * incomplete).
 */
void cs_sql_str(struct cs_buf *q, const char *p);
void cs_sql_fmt(struct cs_buf *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cs_sql_hex(struct cs_buf *q, const void *p, size_t n);
/* A string as a hex literal. */
void cs_sql_text(struct cs_buf *q, const char *s);
void cs_buf_free(struct cs_buf *q);

#endif
