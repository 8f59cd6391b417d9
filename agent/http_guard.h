/*
 * http_guard.h - who may hold a connection to the peer endpoint, and for how
 * long (http_guard.c): per-address and total limits, a deadline for a
 * request's headers and one for its body.  http.c calls these from
 * libmicrohttpd's callbacks.
 */
#ifndef CS_HTTP_GUARD_H
#define CS_HTTP_GUARD_H

#include <stdint.h>

#include <microhttpd.h>

#define CS_GUARD_PER_ADDRESS 128        /* connections one client address may hold */
#define CS_GUARD_MAX 1024               /* connections in all, at most */
#define CS_GUARD_HEADER_S 10            /* a request's headers must be in by then */
#define CS_GUARD_BODY_S 10              /* a body gets this long, */
#define CS_GUARD_BODY_RATE (256 << 10)  /* plus a second per this many bytes */

/* Size the limits from RLIMIT_NOFILE and start the deadline thread: 0 with
 * the connection limit to give libmicrohttpd in *limit, or -errno. */
int cs_guard_start(unsigned *limit);
/* After the daemon stopped (every connection closed): stop the thread. */
void cs_guard_stop(void);

/* MHD_OPTION_NOTIFY_CONNECTION: a connection was accepted (admitted, or
 * closed to keep to the limits) or is gone. */
void cs_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
		     enum MHD_ConnectionNotificationCode code);
/* A request's headers are in; body: the length of the body it will now
 * read (0 for none), which must be in by its deadline. */
void cs_guard_request(struct MHD_Connection *c, uint64_t body);
/* A request is over: the connection waits for the next one's headers. */
void cs_guard_idle(struct MHD_Connection *c);

struct cs_guard_stats {
	unsigned long open;             /* connections now */
	unsigned long cap;              /* and at most */
	unsigned long made_way;         /* closed to keep within the limits */
	unsigned long timed_out;        /* closed at a deadline */
	unsigned long idle;             /* kept after a signed request, closed idle */
};
void cs_guard_stats(struct cs_guard_stats *s);

#endif
