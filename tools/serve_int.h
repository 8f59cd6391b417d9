/* serve_int.h - what the parts of `cs-replicate serve` share: serve.c (the
 * daemon, request checks, GET) and serve_put.c (PUT, POST, DELETE). */
#ifndef CS_SERVE_INT_H
#define CS_SERVE_INT_H

#include <stdatomic.h>
#include <stddef.h>

#include <microhttpd.h>

#include "cs.h"

/* The counters /v1/stats reports. */
extern struct serve_stats {
	atomic_ullong requests, files_served, bytes_served, files_received,
		bytes_received, rejected;
} serve_stats;

/* Queue a text/plain answer (statuses >= 400 count as rejected). */
enum MHD_Result serve_reply(struct MHD_Connection *c, unsigned status,
			    const char *text);
/* Open rel below dirfd with flags, refusing any way out of it (openat2
 * RESOLVE_BENEATH, or a walk without symlinks where that is missing). */
int serve_open_beneath(int dirfd, const char *rel, int flags);

/* What a request's signature covers as its body hash: "<X-CS-SHA256>:<decoded
 * X-CS-From>" for a POST (so the source of a move is signed too), else
 * X-CS-SHA256 or "-". */
void serve_signed_body(struct MHD_Connection *c, const char *method, char *out,
		       size_t outsz);
#define SERVE_SIGNED_BODY_MAX (CS_SHA256_HEX + CS_PATH_MAX)

/*
 * PUT, in libmicrohttpd's three steps: serve_put_begin with the headers of a
 * signed request (refuses, or prepares the install and points *state at
 * it), serve_put_data with each piece of the body and once with none at the
 * end (verifies, installs, answers), serve_put_end when the request is over,
 * finished or not (an unfinished install leaves nothing behind).
 */
enum MHD_Result serve_put_begin(struct MHD_Connection *c, const struct cs_route *rt,
				void **state);
enum MHD_Result serve_put_data(struct MHD_Connection *c, void *state,
			       const char *data, size_t *size);
void serve_put_end(void *state);
/* POST: rename this node's copy of X-CS-From to the route's path. */
enum MHD_Result serve_move(struct MHD_Connection *c, const struct cs_route *rt);
/* DELETE: remove the copies the registry superseded, now. */
enum MHD_Result serve_delete(struct MHD_Connection *c);

#endif
