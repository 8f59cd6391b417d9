/*
 * http_put.h - the write routes of the agent's peer endpoint (http_put.c):
 * a pushed version (PUT), a rename of a copy (POST with X-CS-From), dropping
 * superseded copies (DELETE), and names announced by a writer (POST
 * /v1/index).  http.c has checked the path and the signature, and turns
 * each verdict into the response; nothing here answers by itself.
 */
#ifndef CS_HTTP_PUT_H
#define CS_HTTP_PUT_H

#include <microhttpd.h>

#include "route.h"

/* An answer: status 0 to go on, else the status and text to send. */
struct cs_verdict {
	unsigned status;
	const char *text;
};

/* What a request's signature covers as its body hash: "<X-CS-SHA256>:<decoded
 * X-CS-From>" for a POST with X-CS-From (so the source of a move is signed
 * too), else X-CS-SHA256 or "-". */
void cs_http_signed_body(struct MHD_Connection *c, const char *method, char *out,
			 size_t outsz);
#define CS_SIGNED_BODY_MAX (CS_SHA256_HEX + CS_PATH_MAX)

/*
 * PUT, in libmicrohttpd's three steps: begin with the headers of a signed
 * request (refuses, or prepares the install in *up), data with each piece
 * of the body, finish when it is all in (verifies, installs; *bytes gets
 * its size), end when the request is over, finished or not (an unfinished
 * install leaves nothing behind).
 */
struct cs_upload;
struct cs_verdict cs_put_begin(struct MHD_Connection *c, const struct cs_route *rt,
			       struct cs_upload **up);
void cs_put_data(struct cs_upload *up, const char *data, size_t size);
struct cs_verdict cs_put_finish(struct MHD_Connection *c, struct cs_upload *up,
				uint64_t *bytes);
void cs_put_end(struct cs_upload *up);

/* POST with X-CS-From: rename this node's copy of it to the route's path. */
struct cs_verdict cs_move(struct MHD_Connection *c, const struct cs_route *rt);
/* DELETE: remove the copies the registry superseded, now. */
struct cs_verdict cs_delete(void);

#define CS_ANNOUNCE_MAX (1 << 20)       /* bytes of names one POST /v1/index may carry */
/* POST /v1/index: body (len bytes, all of it) lists names a writer is
 * about to register; it must hash to X-CS-SHA256, which was signed. */
struct cs_verdict cs_announced(struct MHD_Connection *c, const char *body, size_t len);

#endif
