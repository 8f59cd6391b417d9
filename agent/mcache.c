/*
 * mcache.c - the agent's memcached connections: a pool of servers with
 * consistent hashing, a breaker per server, get and store.
 *
 * The only file that includes libmemcached.  A memcached_st is not safe to
 * share between threads, so the agent keeps a few (CS_DB_CONNECTIONS, like
 * MySQL) and a thread borrows one per call.
 *
 * CS_MEMCACHED names one server or several.  Keys go to them by ketama
 * (libmemcached's weighted ketama continuum, MD5): when one server is
 * lost, only the keys it held are lost, and the others keep theirs.
 * libmemcached's own ejection of dead servers stays off: it would remap
 * the dead server's keys onto the others, and back when it returns, where
 * values written before it died would be served again.  So a dead
 * server's keys are simply misses, and go to MySQL.
 *
 * Every call has a 250 ms timeout.  A failure opens that server's breaker
 * (1 s doubling to 8 s), shared by every handle: until it closes, calls
 * for its keys answer at once (a miss, a write skipped) instead of each
 * handle finding out for itself, so only the calls under way when it died
 * wait for a timeout.  When the breaker's time is up, a probe on a thread
 * of its own tries the server again, so that no call waits on it, and
 * closes the breaker when it answers.  Writes (set, delete) skipped
 * meanwhile are remembered per server, and the probe deletes those keys
 * there before the server is used again: one that was only unreachable
 * still holds values MySQL has changed since.  Past SKIPPED_MAX of them,
 * the server is flushed instead.  What this agent did not see (it
 * restarted meanwhile) is bounded by the seals' expiry (record.c): 5
 * minutes for a file's record.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmemcached/memcached.h>

#include "breaker.h"
#include "db.h"
#include "mcache.h"
#include "record.h"

#define SERVERS_MAX 32
#define WEIGHT_MAX 100
#define SKIPPED_MAX 1024        /* keys remembered per server while it is down */
#define TIMEOUT_MS 250

static struct server {
	char host[256];         /* name or address, or a unix socket's path */
	in_port_t port;         /* 0: a unix socket */
	uint32_t weight;
	char name[300];         /* for the log: host:port */
	/* under mu: */
	struct cs_breaker brk;
	bool probing;           /* one call is trying it again */
	bool overflow;          /* more writes skipped than remembered */
	int nskipped;
	char (*skipped)[CS_KEY_MAX];
} srv[SERVERS_MAX];
static int nsrv;                        /* set once (setup) */

static struct handle {
	memcached_st *mc;
	bool busy;
	unsigned downs;         /* `downs` when its connections were made */
} pool[CS_DB_CONNECTIONS_MAX];
static int pool_n = 4;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
/* Times a server went down (under mu).  A handle's connections older than
 * the last are dropped before it is used: its socket to that server is
 * dead, and would fail once more when the server is back. */
static unsigned downs;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool unusable;                   /* CS_MEMCACHED refused (set once) */

/* ---- the server list ------------------------------------------------ */

static bool number(const char *s, size_t n, unsigned long lo, unsigned long hi,
		   unsigned long *v)
{
	char buf[16];
	uint64_t u;

	if (n == 0 || n >= sizeof buf)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (!cs_parse_u64(buf, &u) || u < lo || u > hi)
		return false;
	*v = (unsigned long)u;
	return true;
}

/* One "host[:port[:weight]]" or "[v6]:port[:weight]" (n bytes at s) into
 * *sv: NULL, or what is wrong with it. */
static const char *parse_one(const char *s, size_t n, struct server *sv)
{
	const char *end = s + n, *host = s, *p, *colon;
	size_t hl;
	unsigned long port = 11211, weight = 1;

	if (*s == '[') {
		if (!(p = memchr(s, ']', n)))
			return "no closing ']'";
		host = s + 1;
		hl = (size_t)(p - host);
		p++;
		if (p < end && *p != ':')
			return "':' expected after ']'";
	} else {
		int colons = 0;

		for (const char *q = s; q < end; q++)
			colons += *q == ':';
		if (colons > 2 || memmem(s, n, "::", 2))
			return "an IPv6 address goes in brackets: [address]:port";
		p = memchr(s, ':', n);
		if (!p)
			p = end;
		hl = (size_t)(p - s);
	}
	if (hl == 0 || hl >= sizeof sv->host)
		return hl ? "host name too long" : "no host";
	if (p < end) {
		p++;
		colon = memchr(p, ':', (size_t)(end - p));
		if (!number(p, (size_t)((colon ? colon : end) - p), 1, 65535, &port))
			return "the port is not a number from 1 to 65535";
		if (colon && !number(colon + 1, (size_t)(end - colon - 1), 1, WEIGHT_MAX, &weight))
			return "the weight is not a number from 1 to 100";
	}
	memcpy(sv->host, host, hl);
	sv->host[hl] = '\0';
	sv->port = (in_port_t)port;
	sv->weight = (uint32_t)weight;
	snprintf(sv->name, sizeof sv->name, *s == '[' ? "[%s]:%u" : "%s:%u", sv->host,
		 (unsigned)sv->port);
	return NULL;
}

/* CS_MEMCACHED into srv[]: NULL, or what is wrong, the item in bad. */
static const char *parse_list(const char *list, char *bad, size_t badsz)
{
	const char *s = list, *why;

	if (*list == '/') {
		size_t len = strlen(list);

		/* name is the larger of the two */
		if (len >= sizeof srv[0].host)
			return "the socket path is too long";
		memcpy(srv[0].host, list, len + 1);
		memcpy(srv[0].name, list, len + 1);
		srv[0].port = 0;
		srv[0].weight = 1;
		nsrv = 1;
		return NULL;
	}
	for (;;) {
		size_t n;

		while (*s == ' ' || *s == ',')
			s++;
		if (!*s)
			break;
		n = strcspn(s, ", ");
		snprintf(bad, badsz, "%.*s", (int)n, s);
		if (nsrv == SERVERS_MAX)
			return "more than 32 servers";
		if ((why = parse_one(s, n, &srv[nsrv])))
			return why;
		for (int i = 0; i < nsrv; i++)
			if (!strcmp(srv[i].name, srv[nsrv].name))
				return "named twice";
		nsrv++;
		s += n;
	}
	return nsrv ? NULL : "no server";
}

static void setup(void)
{
	char bad[128] = "";
	const char *why;

	if (!cs_cfg.memcached[0])
		return;
	if ((why = parse_list(cs_cfg.memcached, bad, sizeof bad))) {
		cs_error("CS_MEMCACHED: %s%s%s (want host[:port[:weight]],... or a unix socket "
			 "path); going on without memcached", bad[0] ? bad : "", bad[0] ? ": " : "",
			 why);
		nsrv = 0;
		unusable = true;
	}
}

void cs_mc_init(int connections)
{
	pool_n = connections < 1 ? 1 :
		 connections > CS_DB_CONNECTIONS_MAX ? CS_DB_CONNECTIONS_MAX : connections;
	pthread_once(&once, setup);
}

/* The behaviours every handle shares (a one-server one for flushing too). */
static void tune(memcached_st *mc)
{
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, TIMEOUT_MS);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, TIMEOUT_MS);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, TIMEOUT_MS * 1000);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, TIMEOUT_MS * 1000);
	/* The breakers here decide when a server is tried; see call(). */
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_AUTO_EJECT_HOSTS, 0);
}

static memcached_return_t add(memcached_st *mc, const struct server *sv)
{
	return sv->port ? memcached_server_add_with_weight(mc, sv->host, sv->port, sv->weight)
			: memcached_server_add_unix_socket_with_weight(mc, sv->host, sv->weight);
}

static memcached_st *make(void)
{
	memcached_st *mc = memcached_create(NULL);
	memcached_return_t rc = mc ? MEMCACHED_SUCCESS : MEMCACHED_MEMORY_ALLOCATION_FAILURE;

	/* Before the servers, so that the continuum is built once, the same
	 * in every handle. */
	if (mc)
		rc = memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
	for (int i = 0; i < nsrv && rc == MEMCACHED_SUCCESS; i++)
		rc = add(mc, &srv[i]);
	if (rc != MEMCACHED_SUCCESS || memcached_server_count(mc) != (uint32_t)nsrv) {
		cs_error_every(10, "memcached: cannot set up a connection (%s)",
			       mc ? memcached_strerror(mc, rc) : "out of memory");
		memcached_free(mc);
		return NULL;
	}
	tune(mc);
	return mc;
}

/* ---- handles and breakers ------------------------------------------- */

/* A free handle, or NULL (not configured, all busy). */
static struct handle *borrow(void)
{
	struct handle *h = NULL;
	bool stale;

	if (!cs_cfg.memcached[0])
		return NULL;
	pthread_once(&once, setup);
	if (unusable)
		return NULL;
	pthread_mutex_lock(&mu);
	for (int i = 0; i < pool_n && !h; i++)
		if (!pool[i].busy)
			h = &pool[i];
	if (h)
		h->busy = true;
	stale = h && h->mc && h->downs != downs;
	if (h)
		h->downs = downs;
	pthread_mutex_unlock(&mu);
	if (stale)
		memcached_quit(h->mc);
	if (h && !h->mc && !(h->mc = make())) {
		pthread_mutex_lock(&mu);
		h->busy = false;
		pthread_mutex_unlock(&mu);
		return NULL;
	}
	return h;
}

static void give_back(struct handle *h)
{
	pthread_mutex_lock(&mu);
	h->busy = false;
	pthread_mutex_unlock(&mu);
}

/* An answer is a result; anything else says the server cannot be used. */
static bool failure(memcached_return_t rc)
{
	return rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND &&
	       rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS &&
	       rc != MEMCACHED_STORED && rc != MEMCACHED_END;
}

/* Under mu: key's set or delete did not reach sv; delete it there first
 * when it is back. */
static void remember(struct server *sv, const char *key)
{
	if (sv->overflow)
		return;
	for (int i = 0; i < sv->nskipped; i++)
		if (!strcmp(sv->skipped[i], key))
			return;
	if (!sv->skipped && !(sv->skipped = malloc(SKIPPED_MAX * sizeof *sv->skipped))) {
		sv->overflow = true;
		return;
	}
	if (sv->nskipped == SKIPPED_MAX) {
		sv->overflow = true;
		return;
	}
	snprintf(sv->skipped[sv->nskipped++], CS_KEY_MAX, "%s", key);
}

enum gate { GO, SKIP, PROBE };

/* Under mu: may a call use sv now?  PROBE: no, but it is time to try it
 * again (the caller starts the probe). */
static enum gate gate(struct server *sv, int64_t now)
{
	if (!sv->brk.down_since)
		return GO;
	if (sv->probing || cs_breaker_open(&sv->brk, now))
		return SKIP;
	sv->probing = true;
	return PROBE;
}

/* What went wrong, in words (libmemcached names a refused connection to
 * a server it had given up on "disabled until timed retry"). */
static const char *why(memcached_st *mc, memcached_return_t rc)
{
	int e = mc ? memcached_last_error_errno(mc) : ENOMEM;

	if (rc == MEMCACHED_TIMEOUT)
		return "no answer within 250 ms";
	if (e)
		return strerror(e);
	if (rc == MEMCACHED_SERVER_TEMPORARILY_DISABLED || rc == MEMCACHED_SERVER_MARKED_DEAD)
		return "cannot connect";
	return memcached_strerror(mc, rc);
}

/* Under mu: the outcome of a call to sv through mc (a probe's or not). */
static void outcome(struct server *sv, memcached_st *mc, memcached_return_t rc, bool probe)
{
	int64_t now = cs_clock_ms(), down;

	if (probe)
		sv->probing = false;
	else if (sv->brk.down_since)
		return;         /* begun before it went down: the breaker knows */
	if (failure(rc)) {
		if (cs_breaker_fail(&sv->brk, now)) {
			downs++;
			cs_error("memcached %s unreachable (%s): its keys go to MySQL meanwhile",
				 sv->name, why(mc, rc));
		}
		return;
	}
	/* Writes skipped while the probe ran: another probe deletes them
	 * first. */
	if (sv->nskipped || sv->overflow)
		return;
	if ((down = cs_breaker_ok(&sv->brk, now)))
		cs_warn("memcached %s reachable again after %.1f s", sv->name, down / 1000.0);
}

/* A connection to sv alone (NULL: out of memory). */
static memcached_st *one_server(const struct server *sv)
{
	memcached_st *one = memcached_create(NULL);

	if (!one)
		return NULL;
	tune(one);
	if (add(one, sv) != MEMCACHED_SUCCESS) {
		memcached_free(one);
		return NULL;
	}
	return one;
}

/*
 * Before sv is used again after being down: delete there, through one (a
 * connection to it alone), the keys whose writes it missed, or empty it
 * when there were too many, as its values for them may be older than
 * MySQL.  Those not done are remembered again.
 */
static memcached_return_t mend(memcached_st *one, struct server *sv)
{
	char (*keys)[CS_KEY_MAX];
	int n, done = 0;
	bool all;
	memcached_return_t rc = MEMCACHED_SUCCESS;

	pthread_mutex_lock(&mu);
	keys = sv->skipped;
	n = sv->nskipped;
	all = sv->overflow;
	sv->skipped = NULL;
	sv->nskipped = 0;
	sv->overflow = false;
	pthread_mutex_unlock(&mu);
	if (all)
		rc = memcached_flush(one, 0);
	while (!all && done < n) {
		rc = memcached_delete(one, keys[done], strlen(keys[done]), 0);
		if (failure(rc))
			break;
		done++;
	}
	if (failure(rc)) {
		pthread_mutex_lock(&mu);
		sv->overflow = sv->overflow || all;
		for (int k = done; k < n; k++)
			remember(sv, keys[k]);
		pthread_mutex_unlock(&mu);
	} else if (all) {
		cs_warn("memcached %s: emptied (more than %d keys were written while it was "
			"unreachable)", sv->name, SKIPPED_MAX);
	} else if (n) {
		cs_warn("memcached %s: deleted there %d record(s) written while it was "
			"unreachable", sv->name, n);
	}
	free(keys);
	return rc;
}

/* The probe of a server that is down, on a thread of its own so that no
 * call waits for it: a get of a key nobody writes, then mend(). */
static void *probe(void *p)
{
	struct server *sv = p;
	memcached_st *one = one_server(sv);
	memcached_return_t rc = MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	size_t len;
	uint32_t flags;

	if (one) {
		free(memcached_get(one, "cs1:probe", 9, &len, &flags, &rc));
		if (!failure(rc))
			rc = mend(one, sv);
	}
	pthread_mutex_lock(&mu);
	outcome(sv, one, rc, true);
	pthread_mutex_unlock(&mu);
	memcached_free(one);
	return NULL;
}

static void start_probe(struct server *sv)
{
	pthread_attr_t attr;
	pthread_t t;
	sigset_t all, old;
	int rc;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);       /* signals are the main thread's */
	rc = pthread_create(&t, &attr, probe, sv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc) {
		pthread_mutex_lock(&mu);
		sv->probing = false;
		pthread_mutex_unlock(&mu);
	}
}

enum op { GET, ADD, SET, DELETE };

/* A handle that failed on server i itself is refused it by libmemcached
 * for a while without trying (its own retry timeout, per handle).  The
 * breaker decides: when it lets a call through, the call tries. */
static void try_now(struct handle *h, int i)
{
	memcached_instance_next_retry(memcached_server_instance_by_position(h->mc, i), 0);
}

/*
 * Run op on key's server through h: 0 with *rc its result, or -EAGAIN
 * (the server is down: skipped, remembered when it was a write).
 */
static int call(struct handle *h, enum op op, const char *key,
		memcached_return_t (*fn)(memcached_st *, const char *, void *), void *arg,
		memcached_return_t *rc)
{
	size_t klen = strlen(key);
	int i = nsrv > 1 ? (int)memcached_generate_hash(h->mc, key, klen) : 0;
	struct server *sv;
	enum gate g;
	bool write = op == SET || op == DELETE;

	if (i < 0 || i >= nsrv)
		return -EAGAIN;
	sv = &srv[i];
	pthread_mutex_lock(&mu);
	if ((g = gate(sv, cs_clock_ms())) != GO && write)
		remember(sv, key);
	pthread_mutex_unlock(&mu);
	if (g == PROBE)
		start_probe(sv);
	if (g != GO)
		return -EAGAIN;
	try_now(h, i);
	*rc = fn(h->mc, key, arg);
	/* A connection the server closed (it was restarted while this
	 * handle had no call for it) fails at once, and is closed: one new
	 * one says whether the server is there.  Not after a timeout, which
	 * would be waited for twice. */
	if (failure(*rc) && *rc != MEMCACHED_TIMEOUT) {
		try_now(h, i);
		*rc = fn(h->mc, key, arg);
	}
	pthread_mutex_lock(&mu);
	if (failure(*rc) && write)
		remember(sv, key);
	outcome(sv, h->mc, *rc, false);
	pthread_mutex_unlock(&mu);
	return 0;
}

/* ---- get, store, delete --------------------------------------------- */

struct get_arg {
	char *v;
	size_t len;
};

static memcached_return_t do_get(memcached_st *mc, const char *key, void *p)
{
	struct get_arg *a = p;
	memcached_return_t rc;
	uint32_t flags;

	a->v = memcached_get(mc, key, strlen(key), &a->len, &flags, &rc);
	return rc;
}

/* The sealed value v (len bytes, malloc'd) at key, opened in place; or
 * NULL (freed). */
static char *unsealed(const char *key, char *v, size_t *len)
{
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

char *cs_mc_get(const char *key, size_t *len)
{
	struct handle *h = borrow();
	struct get_arg a = { NULL, 0 };
	memcached_return_t rc;
	int r;

	if (!h)
		return NULL;
	r = call(h, GET, key, do_get, &a, &rc);
	give_back(h);
	if (r < 0 || !a.v) {
		free(a.v);
		return NULL;
	}
	*len = a.len;
	return unsealed(key, a.v, len);
}

struct store_arg {
	const char *val;
	size_t len;
	time_t ttl;
};

static memcached_return_t do_add(memcached_st *mc, const char *key, void *p)
{
	struct store_arg *a = p;

	return memcached_add(mc, key, strlen(key), a->val, a->len, a->ttl, 0);
}

static memcached_return_t do_set(memcached_st *mc, const char *key, void *p)
{
	struct store_arg *a = p;
	memcached_return_t rc;

	/* A writer's set is not waited for: it goes out before the next
	 * request on this connection, and nothing hangs on its answer. */
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_NOREPLY, 1);
	rc = memcached_set(mc, key, strlen(key), a->val, a->len, a->ttl, 0);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_NOREPLY, 0);
	return rc;
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
	if (n >= 0 && (h = borrow())) {
		struct store_arg a = { sealed, (size_t)n, ttl };

		call(h, overwrite ? SET : ADD, key, overwrite ? do_set : do_add, &a, &rc);
		give_back(h);
	}
	if (sealed != stack)
		free(sealed);
}

static memcached_return_t do_delete(memcached_st *mc, const char *key, void *p)
{
	(void)p;
	return memcached_delete(mc, key, strlen(key), 0);
}

void cs_mc_delete(const char *key)
{
	struct handle *h = borrow();
	memcached_return_t rc;

	if (h) {
		call(h, DELETE, key, do_delete, NULL, &rc);
		give_back(h);
	}
}

void cs_mc_shutdown(void)
{
	pthread_mutex_lock(&mu);
	for (int i = 0; i < pool_n; i++)
		if (pool[i].mc && !pool[i].busy) {
			memcached_free(pool[i].mc);
			pool[i].mc = NULL;
		}
	for (int i = 0; i < nsrv; i++) {
		free(srv[i].skipped);
		srv[i].skipped = NULL;
		srv[i].nskipped = 0;
	}
	pthread_mutex_unlock(&mu);
}
