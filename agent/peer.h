/*
 * peer.h - talking to other nodes' agents over signed HTTP (peer.c, the
 * only file that includes curl).
 */
#ifndef CS_PEER_H
#define CS_PEER_H

#include "cs.h"
#include "record.h"

void cs_peer_global_init(void);

/*
 * GET /v1/files/<ns>/<rel> from the node at base_url into fd (positioned at
 * 0, empty), verifying size and SHA-256.  0 or a negative errno: -ENOENT
 * when the peer lacks it, -EHOSTUNREACH when no answer came (refused, timed
 * out, stalled, cut off, or slower than CS_FETCH_MIN_RATE for a second; the
 * whole transfer gets timeout_ms), -EIO for another refusal or a body that does not
 * verify, or the error writing fd.
 */
int cs_peer_fetch(const char *base_url, const char *ns, const char *rel, int fd,
		  const struct cs_file *want, int64_t timeout_ms);
/*
 * PUT the file open at fd (read from offset 0) to the node at base_url as
 * version f->version of (ns, rel); the peer verifies size and SHA-256 against
 * f and the registry, installs it atomically and records itself as holder.
 * 0 when it holds it now, -ESTALE when the registry has moved past f (the
 * peer refused with 409), -EHOSTUNREACH when no answer came (refused,
 * timed out, stalled), -EIO for another refusal.
 */
int cs_peer_push(const char *base_url, const char *ns, const char *rel, int fd,
		 const struct cs_file *f);
/* One push of a batch; rc gets cs_peer_push's result. */
struct cs_push {
	const char *url, *ns, *rel;
	int fd;
	const struct cs_file *f;
	int rc;
};
/* cs_peer_push of every job, several at once on reused connections.  When
 * stop is given and becomes non-zero, transfers still running are dropped
 * within 0.1 s (their jobs fail with -EIO). */
void cs_peer_push_many(struct cs_push *jobs, int n, const int *stop);
/*
 * Ask the node at base_url to rename its copy of `from` to `to` (a rename
 * on the writer's node), which it does only when its copy has exactly the
 * content of version f of `to`.  0 when done, -ENOENT when it has no such
 * copy (push the file instead), -EIO otherwise.
 */
int cs_peer_move(const char *base_url, const char *ns, const char *from,
		 const char *to, const struct cs_file *f);
/* Ask the node at base_url to remove its copy of a deleted (ns, rel) now
 * rather than at its next sweep.  0 or -EIO. */
int cs_peer_delete(const char *base_url, const char *ns, const char *rel);
/*
 * A signed request without a body to the route path (plain ASCII, as
 * signed and sent) at base_url, waiting at most timeout_ms: the HTTP
 * status, with the response's text in out (NUL-terminated, cut to outsz),
 * or a negative errno when no answer came.
 */
long cs_peer_call(const char *base_url, const char *method, const char *path, char *out,
		  size_t outsz, int timeout_ms);
/*
 * Tell the nodes at urls[0, n) that the names in body (lines
 * "<ns>\t<percent-encoded rel>\n") are about to be registered, so their
 * indexes know them before any reader could: POST /v1/index, all at once,
 * waiting at most timeout_ms.  ok[i] says whether urls[i] acknowledged;
 * returns how many did.
 */
int cs_peer_announce(const char *const *urls, int n, const char *body, size_t len,
		     int timeout_ms, bool *ok);

#endif
