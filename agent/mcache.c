/*
 * mcache.c - the agent's memcached connections.
 *
 * The only file that includes libmemcached.  A memcached_st is not safe to
 * share between threads, so the agent keeps a few (CS_DB_CONNECTIONS, like
 * MySQL) and a thread borrows one per call.  Every call has a 250 ms
 * timeout; a failure opens a breaker (1 s doubling to 8 s) during which
 * calls are misses at once, so a dead memcached costs nothing but the
 * MySQL query it would have saved.
 *
 * memcached has no authentication: whoever reaches it can write any key.
 * So every value goes in sealed with the cluster secret and its expiry
 * (record.c; while the secret is being changed, one sealed with
 * CS_SECRET_OLD is good too), and one whose seal is missing, wrong, made
 * for another key or expired is a miss, said in the log at most every
 * 10 s: the caller asks MySQL, and its answer overwrites the bad value.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmemcached/memcached.h>

#include "breaker.h"
#include "db.h"
#include "mcache.h"
#include "record.h"

static struct handle {
	memcached_st *mc;
	bool busy;
} pool[CS_DB_CONNECTIONS_MAX];
static int pool_n = 4;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct cs_breaker brk;           /* under mu */
static bool unusable;                   /* CS_MEMCACHED refused (atomic) */

void cs_mc_init(int connections)
{
	pool_n = connections < 1 ? 1 :
		 connections > CS_DB_CONNECTIONS_MAX ? CS_DB_CONNECTIONS_MAX : connections;
}

static memcached_st *make(void)
{
	memcached_st *mc = memcached_create(NULL);
	memcached_return_t rc;

	if (!mc)
		return NULL;
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
		__atomic_store_n(&unusable, true, __ATOMIC_RELAXED);
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

/* A handle, or NULL (not configured, breaker open, all busy). */
static struct handle *borrow(void)
{
	struct handle *h = NULL;

	if (!cs_cfg.memcached[0] || __atomic_load_n(&unusable, __ATOMIC_RELAXED))
		return NULL;
	pthread_mutex_lock(&mu);
	if (!cs_breaker_open(&brk, cs_clock_ms()))
		for (int i = 0; i < pool_n && !h; i++)
			if (!pool[i].busy)
				h = &pool[i];
	if (h)
		h->busy = true;
	pthread_mutex_unlock(&mu);
	if (h && !h->mc && !(h->mc = make())) {
		pthread_mutex_lock(&mu);
		h->busy = false;
		pthread_mutex_unlock(&mu);
		return NULL;
	}
	return h;
}

static bool failure(memcached_return_t rc)
{
	return rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND &&
	       rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS &&
	       rc != MEMCACHED_STORED && rc != MEMCACHED_END;
}

static void give_back(struct handle *h, memcached_return_t rc)
{
	pthread_mutex_lock(&mu);
	if (failure(rc)) {
		if (cs_breaker_fail(&brk, cs_clock_ms()))
			cs_error("memcached unreachable (%s); asking MySQL directly meanwhile",
				 memcached_strerror(h->mc, rc));
	} else if (cs_breaker_ok(&brk, cs_clock_ms())) {
		cs_warn("memcached reachable again");
	}
	h->busy = false;
	pthread_mutex_unlock(&mu);
}

char *cs_mc_get(const char *key, size_t *len)
{
	struct handle *h = borrow();
	memcached_return_t rc;
	uint32_t flags;
	char *v;

	if (!h)
		return NULL;
	v = memcached_get(h->mc, key, strlen(key), len, &flags, &rc);
	give_back(h, rc);
	if (!v)
		return NULL;
	size_t vlen;
	int bad = cs_unseal(cs_cfg.secret, cs_cfg.secret_len, key, v, *len,
			    (int64_t)time(NULL), &vlen);
	/* While the secret is being changed, nodes not changed yet still
	 * seal with the one before. */
	if (bad == -EACCES && cs_cfg.secret_old_len)
		bad = cs_unseal(cs_cfg.secret_old, cs_cfg.secret_old_len, key, v, *len,
				(int64_t)time(NULL), &vlen);
	if (bad) {
		if (bad == -EACCES)
			cs_error_every(10, "memcached: the value at %s is not sealed with this "
				       "cluster's secret (planted, or from another cluster); "
				       "not used", key);
		free(v);
		return NULL;
	}
	v[vlen] = '\0';
	*len = vlen;
	return v;
}

void cs_mc_store(const char *key, const char *val, size_t len, time_t ttl, bool overwrite)
{
	char stack[1024 + CS_SEAL_MAX], *sealed = stack;
	struct handle *h;
	memcached_return_t rc;
	int n;

	if (len + CS_SEAL_MAX > sizeof stack && !(sealed = malloc(len + CS_SEAL_MAX)))
		return;
	n = cs_seal(cs_cfg.secret, cs_cfg.secret_len, key, val, len, (int64_t)time(NULL) + ttl,
		    sealed, len + CS_SEAL_MAX);
	if (n < 0 || !(h = borrow())) {
		if (sealed != stack)
			free(sealed);
		return;
	}
	/* A writer's set is not waited for: it goes out before the next
	 * request on this connection, and nothing hangs on its answer. */
	if (overwrite)
		memcached_behavior_set(h->mc, MEMCACHED_BEHAVIOR_NOREPLY, 1);
	rc = overwrite ? memcached_set(h->mc, key, strlen(key), sealed, n, ttl, 0)
		       : memcached_add(h->mc, key, strlen(key), sealed, n, ttl, 0);
	if (sealed != stack)
		free(sealed);
	if (overwrite)
		memcached_behavior_set(h->mc, MEMCACHED_BEHAVIOR_NOREPLY, 0);
	give_back(h, rc);
}

void cs_mc_delete(const char *key)
{
	struct handle *h = borrow();

	if (h)
		give_back(h, memcached_delete(h->mc, key, strlen(key), 0));
}

void cs_mc_shutdown(void)
{
	pthread_mutex_lock(&mu);
	for (int i = 0; i < pool_n; i++)
		if (pool[i].mc && !pool[i].busy) {
			memcached_free(pool[i].mc);
			pool[i].mc = NULL;
		}
	pthread_mutex_unlock(&mu);
}
