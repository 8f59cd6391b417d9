/*
 * http_guard.c - keeps the peer endpoint answering its peers while clients
 * that are not the cluster hold connections open (slow-loris): who may hold
 * a connection, and for how long.  http.c decides what a request may do;
 * this file only closes connections.
 *
 *   - Limits.  At most CS_GUARD_PER_ADDRESS connections per client address
 *     and a cap in all, well below the process's descriptor limit
 *     (RLIMIT_NOFILE), so the agent's own files, registry and peer
 *     connections never run short.  A connection over either limit makes way
 *     by closing the connection that has waited longest for a request's
 *     headers (from its address, or from any), or is closed itself when none
 *     waits.  A peer sends a request's headers at once, so its connection is
 *     never the one waiting longest: the cluster keeps being served, even
 *     from the address an attack comes from (on loopback, every node's).
 *   - Deadlines.  A request's headers must be in within CS_GUARD_HEADER_S of
 *     the connection's accept or of the end of its previous request, however
 *     they trickle in (libmicrohttpd's own timeout restarts with every byte
 *     received); a peer's connection kept idle that long is closed too, as
 *     a matter of course (only answers to signed requests keep one open).  A body must be in within CS_GUARD_BODY_S plus a second per
 *     CS_GUARD_BODY_RATE bytes of its signed length, so a replayed PUT whose
 *     body trickles holds its path only that long.
 *
 * A connection is closed by shutdown(2) of its socket, which the thread of
 * libmicrohttpd's that owns it then sees as the client going away.  That is
 * safe from any thread: libmicrohttpd calls cs_guard_notify(CLOSED) before
 * it closes the descriptor, and both run under one lock.  The deadlines are
 * kept by a thread of our own that sleeps until the next one.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "cs.h"
#include "http_guard.h"

/* Descriptors kept for the rest of the agent, and the most one connection
 * uses: its socket, and a file it sends or a temporary file and its
 * directory it receives into. */
#define RESERVE_FDS 256
#define FDS_PER_CONNECTION 3
/* Connections shut down by us that libmicrohttpd has not closed yet are
 * still its own: its limit has room for them. */
#define CLOSING_SLACK 64
#define REPORT_S 60

struct conn {
	struct conn *prev, *next;       /* every connection, in accept order */
	int fd;
	unsigned char addr[16];         /* the client's address */
	unsigned char addrlen;
	bool waiting;                   /* for a request's headers: may make way */
	bool kept;                      /* kept open after an answer: to a signed
					 * request, so it waits idle, not trickling */
	bool closing;                   /* shut down by us, not yet closed */
	int64_t since;                  /* ms: waiting since */
	int64_t deadline;               /* ms, 0: none */
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct conn *head, *tail;
	unsigned long open;             /* connections not closing */
	unsigned long cap;
	unsigned long made_way, timed_out, idle;
	int64_t wake;                   /* ms the thread sleeps until */
	bool stop, running;
	pthread_t thread;
} g = { .mu = PTHREAD_MUTEX_INITIALIZER, .wake = INT64_MAX };

static struct conn *of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *i =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return i ? i->socket_context : NULL;
}

static bool same_address(const struct conn *a, const struct conn *b)
{
	return a->addrlen == b->addrlen && memcmp(a->addr, b->addr, a->addrlen) == 0;
}

/* Set e's deadline (ms, 0 for none), waking the thread if it is earlier
 * than the one it sleeps until.  Lock held. */
static void locked_deadline(struct conn *e, int64_t deadline)
{
	e->deadline = deadline;
	if (deadline && deadline < g.wake)
		pthread_cond_signal(&g.cv);
}

static void locked_close(struct conn *e, unsigned long *why)
{
	e->closing = true;
	e->waiting = false;
	e->deadline = 0;
	g.open--;
	(*why)++;
	shutdown(e->fd, SHUT_RDWR);
}

/* The connection waiting longest for a request's headers, from like's
 * address (NULL: from any).  Lock held. */
static struct conn *locked_longest_waiting(const struct conn *like)
{
	struct conn *best = NULL;

	for (struct conn *e = g.head; e; e = e->next)
		if (e->waiting && (!like || same_address(e, like)) &&
		    (!best || e->since < best->since))
			best = e;
	return best;
}

static void admit(struct MHD_Connection *c, void **socket_context)
{
	const union MHD_ConnectionInfo *fd = MHD_get_connection_info(
		c, MHD_CONNECTION_INFO_CONNECTION_FD);
	const union MHD_ConnectionInfo *a = MHD_get_connection_info(
		c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	struct conn *e = calloc(1, sizeof *e), *way = NULL;
	unsigned long from_there = 0;

	if (!e || !fd)
		goto refuse;
	e->fd = fd->connect_fd;
	if (a && a->client_addr->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)a->client_addr;
		memcpy(e->addr, &in->sin_addr, e->addrlen = 4);
	} else if (a && a->client_addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)a->client_addr;
		memcpy(e->addr, &in6->sin6_addr, e->addrlen = 16);
	}
	e->waiting = true;
	e->since = cs_clock_ms();
	*socket_context = e;

	pthread_mutex_lock(&g.mu);
	e->prev = g.tail;
	if (g.tail)
		g.tail->next = e;
	else
		g.head = e;
	g.tail = e;
	g.open++;
	if (g.open > CS_GUARD_PER_ADDRESS)      /* else no address can be over */
		for (struct conn *o = g.head; o; o = o->next)
			from_there += !o->closing && same_address(o, e);
	if (from_there > CS_GUARD_PER_ADDRESS)
		way = locked_longest_waiting(e);
	else if (g.open > g.cap)
		way = locked_longest_waiting(NULL);
	if (way)
		locked_close(way, &g.made_way);
	if (!e->closing)
		locked_deadline(e, e->since + CS_GUARD_HEADER_S * 1000);
	pthread_mutex_unlock(&g.mu);
	return;
refuse:
	free(e);
	*socket_context = NULL;
	if (fd)
		shutdown(fd->connect_fd, SHUT_RDWR);
}

static void gone(void **socket_context)
{
	struct conn *e = *socket_context;

	if (!e)
		return;
	pthread_mutex_lock(&g.mu);
	if (!e->closing)
		g.open--;
	if (e->prev)
		e->prev->next = e->next;
	else
		g.head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		g.tail = e->prev;
	pthread_mutex_unlock(&g.mu);
	free(e);
	*socket_context = NULL;
}

void cs_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
		     enum MHD_ConnectionNotificationCode code)
{
	(void)cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED)
		admit(c, socket_context);
	else
		gone(socket_context);
}

void cs_guard_request(struct MHD_Connection *c, uint64_t body)
{
	struct conn *e = of(c);

	if (!e)
		return;
	pthread_mutex_lock(&g.mu);
	if (!e->closing) {
		e->waiting = false;
		locked_deadline(e, body ? cs_clock_ms() + (CS_GUARD_BODY_S +
						       (int64_t)(body / CS_GUARD_BODY_RATE)) * 1000
					: 0);
	}
	pthread_mutex_unlock(&g.mu);
}

void cs_guard_idle(struct MHD_Connection *c)
{
	struct conn *e = of(c);

	if (!e)
		return;
	pthread_mutex_lock(&g.mu);
	if (!e->closing) {
		e->waiting = e->kept = true;
		e->since = cs_clock_ms();
		locked_deadline(e, e->since + CS_GUARD_HEADER_S * 1000);
	}
	pthread_mutex_unlock(&g.mu);
}

/* Close what is past its deadline, then sleep until the next one. */
static void *keep_deadlines(void *arg)
{
	unsigned long reported = 0;
	int64_t last_report = 0;

	(void)arg;
	pthread_mutex_lock(&g.mu);
	while (!g.stop) {
		int64_t now = cs_clock_ms(), next = INT64_MAX;

		for (struct conn *e = g.head; e; e = e->next) {
			if (!e->deadline)
				continue;
			if (e->deadline <= now)
				locked_close(e, e->kept && e->waiting ? &g.idle : &g.timed_out);
			else if (e->deadline < next)
				next = e->deadline;
		}
		if (g.made_way + g.timed_out != reported && (!last_report ||
							      now - last_report >= REPORT_S * 1000)) {
			cs_warn("peer endpoint: %lu connections closed so far to keep to the limits, "
				"%lu at a deadline (clients that hold connections without sending a "
				"request)", g.made_way, g.timed_out);
			reported = g.made_way + g.timed_out;
			last_report = now;
		}
		if (g.made_way + g.timed_out != reported && last_report + REPORT_S * 1000 < next)
			next = last_report + REPORT_S * 1000;   /* to report them */
		g.wake = next;
		if (next == INT64_MAX) {
			pthread_cond_wait(&g.cv, &g.mu);
		} else {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			int64_t ms = next > now ? next - now : 1;
			ts.tv_sec += ms / 1000;
			ts.tv_nsec += (ms % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&g.cv, &g.mu, &ts);
		}
	}
	pthread_mutex_unlock(&g.mu);
	return NULL;
}

int cs_guard_start(unsigned *limit)
{
	struct rlimit rl = { 0 };
	pthread_condattr_t ca;
	unsigned long fds;
	int rc;

	getrlimit(RLIMIT_NOFILE, &rl);
	fds = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > ULONG_MAX ? ULONG_MAX
								       : (unsigned long)rl.rlim_cur;
	g.cap = fds > 2 * RESERVE_FDS ? (fds - RESERVE_FDS) / FDS_PER_CONNECTION
				      : fds / (2 * FDS_PER_CONNECTION);
	if (g.cap > CS_GUARD_MAX)
		g.cap = CS_GUARD_MAX;
	*limit = g.cap + CLOSING_SLACK;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g.cv, &ca);
	pthread_condattr_destroy(&ca);
	g.stop = false;
	rc = pthread_create(&g.thread, NULL, keep_deadlines, NULL);
	if (rc) {
		pthread_cond_destroy(&g.cv);
		return -rc;
	}
	g.running = true;
	return 0;
}

void cs_guard_stop(void)
{
	if (!g.running)
		return;
	pthread_mutex_lock(&g.mu);
	g.stop = true;
	pthread_cond_signal(&g.cv);
	pthread_mutex_unlock(&g.mu);
	pthread_join(g.thread, NULL);
	pthread_cond_destroy(&g.cv);
	g.running = false;
}

void cs_guard_stats(struct cs_guard_stats *s)
{
	pthread_mutex_lock(&g.mu);
	*s = (struct cs_guard_stats){ g.open, g.cap, g.made_way, g.timed_out, g.idle };
	pthread_mutex_unlock(&g.mu);
}
