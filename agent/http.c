/*
 * http.c - the agent's peer endpoint: the HTTP routes other nodes fetch
 * from, push to and announce names to (the write routes are in
 * http_put.c), on libmicrohttpd with a small thread pool; files go out
 * with sendfile(2) from a descriptor.
 *
 * Every request is decided on its headers, before any of its body is read
 * and before any file is touched, in this order:
 *   1. the URL path is percent-decoded strictly (our own unescaper replaces
 *      libmicrohttpd's, which would turn "%00" into a truncated string and
 *      "%2F" into a separator): malformed -> 400;
 *   2. the body's length must be known: chunked -> 411;
 *   3. the signature (sign.c) over method, decoded path, time, body hash,
 *      body length and this node's CS_NODE_URL, made with the cluster's
 *      secret (or, while it is being changed, CS_SECRET_OLD): missing,
 *      forged, stale or meant for another node -> 401 (only /v1/health and
 *      the read-only /metrics are public);
 *   4. the route and path (route.c): ".", "..", "//", control bytes -> 400,
 *      unknown route or namespace -> 404; a body where none belongs -> 400,
 *      too large a one -> 413;
 *   5. the file is opened beneath the namespace directory (store.c), so no
 *      symlink or ".." can lead outside it -> 404.
 * An answer given before the body closes the connection, so a refused body
 * is never read; so does every answer to a request not signed (a 401, the
 * health check, the metrics), so only the cluster keeps connections open.
 * Nothing is logged per request below CS_LOG=info; every answer is counted
 * for /metrics (metrics.c) where it is queued.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "fetch.h"
#include "http.h"
#include "http_guard.h"
#include "http_put.h"
#include "metrics.h"
#include "repair.h"
#include "sign.h"
#include "store.h"

#define POOL_THREADS 4

/* The unescaper's verdict on a path it refused: never a valid path. */
static const char bad_encoding[] = "\x01";

/* The counters /v1/stats reports. */
static struct {
	atomic_ullong requests, files_served, bytes_served, files_received, bytes_received,
		rejected;
} stats;

/* *con_cls of a request answered on its headers, and of a signed one
 * without a body, answered on libmicrohttpd's last call; a PUT's is its
 * upload, a POST /v1/index's its body. */
static char answered, checked;

struct body {
	char tag;               /* 'U': an upload (PUT), 'I': announced names */
	struct cs_upload *up;
	struct cs_buf names;    /* 'I' */
	uint64_t got;           /* bytes of it read so far */
};

/* The request this thread is answering: libmicrohttpd calls on_request in
 * the connection's thread, and every answer is queued from there.  What
 * queue() counts the answer under. */
static __thread struct {
	const char *route, *method;     /* cs_route_label, and as sent */
	uint64_t received;              /* its body's bytes, once all in */
} cur;

static struct MHD_Daemon *daemon_;

/* ---- responses ------------------------------------------------------ */

/*
 * Queue r, an answer of status whose body is size bytes, and let r go.
 * Counted for /metrics here, with atomics only: by bytes sent for a GET (a
 * HEAD sends no body), by bytes received for a request with a body.
 */
static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r,
			     uint64_t size)
{
	enum MHD_Result ret = MHD_queue_response(c, status, r);

	MHD_destroy_response(r);
	if (ret == MHD_YES)
		cs_count_request(cur.route, cur.method, status,
				 strcmp(cur.method, "GET") == 0 ? size : cur.received);
	return ret;
}

/* A text answer; close: end the connection after it.  NULL without memory. */
static struct MHD_Response *text_response(const char *text, bool close)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);

	if (!r)
		return NULL;
	MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
	if (close)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	return r;
}

/* Answer status with text; close: end the connection after it. */
static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *text,
			       bool close)
{
	struct MHD_Response *r = text_response(text, close);

	if (!r)
		return MHD_NO;
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, "Allow", "GET, HEAD, PUT, POST, DELETE");
	if (status >= 400)
		atomic_fetch_add(&stats.rejected, 1);
	return queue(c, status, r, strlen(text));
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *text)
{
	return respond(c, status, text, false);
}

/* An answer to a request not (yet) known to come from the cluster: only a
 * signed request keeps a connection open, so a client without the secret
 * cannot hold one by asking again and again. */
static enum MHD_Result refuse(struct MHD_Connection *c, unsigned status, const char *text)
{
	return respond(c, status, text, true);
}

static bool digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * One "bytes=" range against size.  Returns 1 with [*off, *off + *len) for
 * a satisfiable single range, 0 to ignore the header (absent, multiple or
 * malformed: send it all), -1 when unsatisfiable (416).  Each number is
 * digits only: strtoull alone would take a space, a sign ("--5" as the last
 * 2^64 - 5 bytes) or "0x".
 */
int cs_http_parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
	unsigned long long a, b;
	char *end;

	if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
		return 0;
	h += 6;
	if (*h == '-') {                        /* the last b bytes */
		if (!digit(h[1]))
			return 0;
		errno = 0;
		b = strtoull(h + 1, &end, 10);
		if (*end || errno)
			return 0;
		if (b == 0 || size == 0)
			return -1;
		*len = b < size ? b : size;
		*off = size - *len;
		return 1;
	}
	if (!digit(*h))
		return 0;
	errno = 0;
	a = strtoull(h, &end, 10);
	if (*end != '-' || errno)
		return 0;
	if (end[1] == '\0') {
		b = size ? size - 1 : 0;
	} else {
		char *e2;
		if (!digit(end[1]))
			return 0;
		b = strtoull(end + 1, &e2, 10);
		if (*e2 || errno || b < a)
			return 0;
	}
	if (a >= size)
		return -1;
	if (b >= size)
		b = size - 1;
	*off = a;
	*len = b - a + 1;
	return 1;
}

static enum MHD_Result serve_file(struct MHD_Connection *c, const char *method,
				  const struct cs_route *rt)
{
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, rt->ns);
	struct MHD_Response *r;
	struct stat st;
	uint64_t off = 0, len;
	unsigned status = MHD_HTTP_OK;
	char num[32];
	int dirfd, fd;

	if (!p)
		return reply(c, MHD_HTTP_NOT_FOUND, "no such namespace\n");
	dirfd = cs_store_root(p);
	if (dirfd < 0)
		return reply(c, MHD_HTTP_NOT_FOUND, "no such file\n");
	/* O_NONBLOCK: a FIFO planted at the name must not hang this thread. */
	fd = cs_store_open_beneath(dirfd, rt->rel, O_RDONLY | O_NOCTTY | O_NONBLOCK);
	int e = errno;
	if (fd < 0) {
		if (e == EACCES)
			return reply(c, MHD_HTTP_FORBIDDEN, "permission denied\n");
		/* ENOENT, and EXDEV/ELOOP for an escape attempt: not found. */
		if (e == ENOENT || e == ENOTDIR || e == EXDEV || e == ELOOP ||
		    e == ENAMETOOLONG)
			return reply(c, MHD_HTTP_NOT_FOUND, "no such file\n");
		cs_error("open %s/%s: %s", p->dir, rt->rel, strerror(e));
		return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot open file\n");
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return reply(c, MHD_HTTP_NOT_FOUND, "no such file\n");
	}
	/* Another name of this file may be outside the namespace: someone
	 * linked it in.  Served only when the agent's own user owns it (a
	 * host's `ln` of a file in the namespace), which could as well have
	 * copied it in; a file of another user's (root's config, another
	 * site's) never.  Copies the agent installs have one name. */
	if (st.st_nlink > 1 && st.st_uid != geteuid()) {
		close(fd);
		cs_error_every(10, "%s/%s: hard-linked (%lu names); not served to peers", p->dir,
			       rt->rel, (unsigned long)st.st_nlink);
		return reply(c, MHD_HTTP_FORBIDDEN, "hard-linked file not served\n");
	}
	len = st.st_size;
	int range = cs_http_parse_range(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range"),
				      st.st_size, &off, &len);
	if (range < 0) {
		close(fd);
		r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (!r)
			return MHD_NO;
		snprintf(num, sizeof num, "bytes */%" PRIu64, (uint64_t)st.st_size);
		MHD_add_response_header(r, "Content-Range", num);
		atomic_fetch_add(&stats.rejected, 1);
		return queue(c, MHD_HTTP_RANGE_NOT_SATISFIABLE, r, 0);
	}
	/* libmicrohttpd owns fd from here and sends it with sendfile. */
	r = MHD_create_response_from_fd_at_offset64(len, fd, off);
	if (!r) {
		close(fd);
		return MHD_NO;
	}
	if (range > 0) {
		char cr[96];
		snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off,
			 off + len - 1, (uint64_t)st.st_size);
		MHD_add_response_header(r, "Content-Range", cr);
		status = MHD_HTTP_PARTIAL_CONTENT;
	}
	snprintf(num, sizeof num, "%" PRIu64, (uint64_t)st.st_size);
	MHD_add_response_header(r, "X-CS-Size", num);
	MHD_add_response_header(r, "Accept-Ranges", "bytes");
	MHD_add_response_header(r, "Content-Type", "application/octet-stream");
	enum MHD_Result ret = queue(c, status, r, len);
	if (strcmp(method, "GET") == 0) {
		atomic_fetch_add(&stats.files_served, 1);
		atomic_fetch_add(&stats.bytes_served, len);
	}
	cs_info("%s /v1/files/%s/%s %u %" PRIu64, method, rt->ns, rt->rel, status, len);
	return ret;
}

/*
 * /metrics: every counter, in Prometheus's text format, to anyone who asks,
 * as the health check is; so it is read-only (GET and HEAD, else 405) and
 * shows counts alone, never a path, a name or a secret.  Rendered into a
 * buffer of its own, with atomic loads only, then sent: a scrape holds up
 * no other request.  The connection closes after it, as for any request
 * not signed.
 */
static enum MHD_Result answer_metrics(struct MHD_Connection *c, const char *method)
{
	struct MHD_Response *r;
	struct cs_buf b = { 0 };

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		if (!(r = text_response("method not allowed: /metrics is read-only\n", true)))
			return MHD_NO;
		MHD_add_response_header(r, "Allow", "GET, HEAD");
		atomic_fetch_add(&stats.rejected, 1);
		return queue(c, MHD_HTTP_METHOD_NOT_ALLOWED, r, 0);
	}
	cs_metrics_render(&b);
	if (b.oom || !b.s) {
		cs_buf_free(&b);
		return refuse(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	}
	/* libmicrohttpd frees b.s with free() once it is sent. */
	if (!(r = MHD_create_response_from_buffer(b.len, b.s, MHD_RESPMEM_MUST_FREE))) {
		cs_buf_free(&b);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	return queue(c, MHD_HTTP_OK, r, b.len);
}

/* Is the signature on s one of the cluster's secrets, the current one or
 * (while it is being changed) the one before? */
static bool signed_by_cluster(struct MHD_Connection *c, const struct cs_signed *s)
{
	const char *when = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CS-Time");
	const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CS-Signature");
	long long now = (long long)time(NULL);

	return cs_sign_verify(cs_cfg.secret, cs_cfg.secret_len, s, when, sig, now) == 0 ||
	       (cs_cfg.secret_old_len &&
		cs_sign_verify(cs_cfg.secret_old, cs_cfg.secret_old_len, s, when, sig, now) == 0);
}

/*
 * Steps 1 to 3 above, for any request, on its headers alone: 0 with *rt and
 * the body's *length (its Content-Length, 0 for none) for a signed request
 * on a known route, or 1 with the answer (a refusal, or the public health
 * check) queued in *ret.
 */
static int check(struct MHD_Connection *c, const char *url, const char *method,
		 struct cs_route *rt, uint64_t *length, enum MHD_Result *ret)
{
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);
	char body_sha[CS_SIGNED_BODY_MAX];
	int rc;

	*ret = MHD_YES;
	*length = 0;
	if (strcmp(url, bad_encoding) == 0) {
		*ret = refuse(c, MHD_HTTP_BAD_REQUEST, "bad percent-encoding in path\n");
		return 1;
	}
	rc = cs_route_parse(url, rt);
	if (rc == 0 && rt->kind == CS_ROUTE_HEALTH) {
		*ret = refuse(c, MHD_HTTP_OK, "ok\n");
		return 1;
	}
	if (rc == 0 && rt->kind == CS_ROUTE_METRICS) {
		*ret = answer_metrics(c, method);
		return 1;
	}
	/* The body's length is signed, so it must be known now. */
	if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
		*ret = refuse(c, MHD_HTTP_LENGTH_REQUIRED,
			      "Content-Length required (no chunked bodies)\n");
		return 1;
	}
	if (cl && !cs_parse_u64(cl, length)) {
		*ret = refuse(c, MHD_HTTP_BAD_REQUEST, "malformed Content-Length\n");
		return 1;
	}
	if (!MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CS-Time") ||
	    !MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CS-Signature")) {
		*ret = refuse(c, MHD_HTTP_UNAUTHORIZED, "missing X-CS-Time / X-CS-Signature\n");
		return 1;
	}
	cs_http_signed_body(c, method, body_sha, sizeof body_sha);
	struct cs_signed s = { .method = method, .path = url, .body_sha = body_sha,
			       .length = *length, .target = cs_cfg.node_url };
	if (!signed_by_cluster(c, &s)) {
		cs_info("%s %s: bad or stale signature", method, url);
		*ret = refuse(c, MHD_HTTP_UNAUTHORIZED, "bad or stale signature\n");
		return 1;
	}
	if (rc == -ENOENT)
		*ret = reply(c, MHD_HTTP_NOT_FOUND, "no such route\n");
	else if (rc < 0)
		*ret = reply(c, MHD_HTTP_BAD_REQUEST,
			     "bad path: empty, '.', '..' or '//' segment, or control byte\n");
	return rc < 0;
}

static enum MHD_Result answer_stats(struct MHD_Connection *c)
{
	struct cs_fetch_stats f;
	struct cs_guard_stats g;
	char body[1024];

	cs_fetch_stats(&f);
	cs_guard_stats(&g);
	snprintf(body, sizeof body,
		 "requests %llu\nfiles_served %llu\nbytes_served %llu\n"
		 "files_received %llu\nbytes_received %llu\nrejected %llu\n"
		 "misses_asked %lu\nmisses_joined %lu\nmisses_done %lu\nmisses_unavailable %lu\n"
		 "misses_running %lu\nconnections %lu\nconnections_max %lu\n"
		 "connections_made_way %lu\nconnections_timed_out %lu\nconnections_idle_closed %lu\n",
		 (unsigned long long)atomic_load(&stats.requests),
		 (unsigned long long)atomic_load(&stats.files_served),
		 (unsigned long long)atomic_load(&stats.bytes_served),
		 (unsigned long long)atomic_load(&stats.files_received),
		 (unsigned long long)atomic_load(&stats.bytes_received),
		 (unsigned long long)atomic_load(&stats.rejected), f.asked, f.joined, f.done,
		 f.unavailable, f.running, g.open, g.cap, g.made_way, g.timed_out,
		 g.idle);
	return reply(c, MHD_HTTP_OK, body);
}

static enum MHD_Result verdict(struct MHD_Connection *c, struct cs_verdict v)
{
	return reply(c, v.status, v.text);
}

/* A body of length bytes is coming, to be in by its deadline: b (tag and
 * upload) becomes the request's *con_cls. */
static enum MHD_Result expect_body(struct MHD_Connection *c, char tag, struct cs_upload *up,
				   uint64_t length, void **con_cls)
{
	struct body *b = calloc(1, sizeof *b);

	if (!b) {
		cs_put_end(up);
		return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	}
	b->tag = tag;
	b->up = up;
	*con_cls = b;
	cs_guard_request(c, length);
	return MHD_YES;
}

/*
 * A signed request on a known route (rt), its headers in: a PUT or a POST
 * /v1/index is made ready for its body, any other request with a body is
 * refused (400) before it is read, and the rest are left for answer().
 */
static enum MHD_Result begin(struct MHD_Connection *c, const char *method,
			     const struct cs_route *rt, uint64_t length, void **con_cls)
{
	struct cs_upload *up;
	struct cs_verdict v;

	if (rt->kind == CS_ROUTE_INDEX && strcmp(method, "POST") == 0) {
		if (length > CS_ANNOUNCE_MAX)
			return reply(c, MHD_HTTP_CONTENT_TOO_LARGE, "too many names at once\n");
		return expect_body(c, 'I', NULL, length, con_cls);
	}
	if (rt->kind == CS_ROUTE_FILES && strcmp(method, "PUT") == 0) {
		v = cs_put_begin(c, rt, &up);
		if (v.status)
			return verdict(c, v);
		return expect_body(c, 'U', up, length, con_cls);
	}
	if (length > 0)
		return reply(c, MHD_HTTP_BAD_REQUEST, "no body expected\n");
	*con_cls = &checked;
	return MHD_YES;
}

/* GET /v1/repair: where this agent's repair stands; POST: a pass now, at
 * the rate in the path (bytes/s, or "max"; none: no bound either). */
static enum MHD_Result answer_repair(struct MHD_Connection *c, const char *method,
				     const struct cs_route *rt)
{
	struct cs_repair_progress p;
	char body[512];

	if (strcmp(method, "POST") == 0) {
		uint64_t rate = 0;
		if (rt->rel && strcmp(rt->rel, "max") != 0)
			cs_parse_u64(rt->rel, &rate);
		snprintf(body, sizeof body, "pass %" PRIu64 "\n", cs_repair_kick(rate));
		cs_info("repair pass asked for by %s",
			MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CS-Node") ?: "?");
		return reply(c, MHD_HTTP_ACCEPTED, body);
	}
	if (strcmp(method, "GET") != 0)
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	cs_repair_progress(&p);
	if (cs_repair_progress_format(&p, body, sizeof body) < 0)
		return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot say\n");
	return reply(c, MHD_HTTP_OK, body);
}

/* A signed request without a body, on a known route (rt): its answer. */
static enum MHD_Result answer(struct MHD_Connection *c, const char *method,
			      const struct cs_route *rt)
{
	if (rt->kind == CS_ROUTE_STATS)
		return answer_stats(c);
	if (rt->kind == CS_ROUTE_REPAIR)
		return answer_repair(c, method, rt);
	if (rt->kind != CS_ROUTE_FILES)
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
		return serve_file(c, method, rt);
	if (strcmp(method, "POST") == 0)
		return verdict(c, cs_move(c, rt));
	if (strcmp(method, "DELETE") == 0)
		return verdict(c, cs_delete());
	return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
}

/* More of a body, or (size 0) its end. */
static enum MHD_Result body_data(struct MHD_Connection *c, struct body *b, const char *data,
				 size_t *size)
{
	struct cs_verdict v;

	if (*size) {
		b->got += *size;
		if (b->tag == 'U') {
			cs_put_data(b->up, data, *size);
		} else if (!cs_buf_put(&b->names, data, *size)) {
			return MHD_NO;
		}
		*size = 0;
		return MHD_YES;
	}
	cur.received = b->got;
	if (b->tag == 'I')
		return verdict(c, cs_announced(c, b->names.s ? b->names.s : "", b->names.len));
	if (!b->up)
		return MHD_YES;         /* answered already */
	uint64_t bytes;
	v = cs_put_finish(c, b->up, &bytes);
	cs_put_end(b->up);
	b->up = NULL;
	if (v.status == MHD_HTTP_OK) {
		atomic_fetch_add(&stats.files_received, 1);
		atomic_fetch_add(&stats.bytes_received, bytes);
	}
	return verdict(c, v);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct cs_route rt;
	enum MHD_Result ret;
	uint64_t length;

	(void)cls, (void)version;
	cur.route = cs_route_label(url);
	cur.method = method;
	cur.received = 0;
	/* libmicrohttpd calls once with the headers, then (for a PUT or a
	 * POST /v1/index) with body data, then with none.  Every request is
	 * decided on the first call: refused, or let through to its body or
	 * its answer.  libmicrohttpd 0.9.75 closes the connection after an
	 * answer given on the first call, and reads nothing more, so a refused
	 * body is never read; a signed request without a body is answered on
	 * the last call, which keeps the connection for the next one. */
	if (*con_cls == NULL) {
		atomic_fetch_add(&stats.requests, 1);
		cs_guard_request(c, 0);
		*con_cls = &answered;   /* unless let through */
		if (check(c, url, method, &rt, &length, &ret))
			return ret;
		return begin(c, method, &rt, length, con_cls);
	}
	if (*con_cls == &checked) {
		*con_cls = &answered;
		cs_route_parse(url, &rt);       /* as check() found it */
		return answer(c, method, &rt);
	}
	if (*con_cls != &answered)
		return body_data(c, *con_cls, upload, upload_size);
	*upload_size = 0;               /* answered already: libmicrohttpd drops the rest */
	return MHD_YES;
}

/* A request is over, answered or not: an unfinished upload goes. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct body *b = *con_cls;

	(void)cls, (void)toe;
	cs_guard_idle(c);
	if (b && *con_cls != &answered && *con_cls != &checked) {
		cs_put_end(b->up);
		cs_buf_free(&b->names);
		free(b);
	}
	*con_cls = NULL;
}

/* libmicrohttpd's messages: a line per client that went away midway, for
 * instance, which under a slow-loris attack would be one per connection
 * closed; so they are logged at info. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	(void)cls;
	if (cs_log_level < CS_LOG_INFO)
		return;
	vsnprintf(line, sizeof line, fmt, ap);
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	cs_info("libmicrohttpd: %s", line);
}

static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls, (void)c;
	int n = cs_url_decode(s);

	if (n >= 0)
		return (size_t)n;
	memcpy(s, bad_encoding, sizeof bad_encoding);   /* never longer: s had a '%' */
	return sizeof bad_encoding - 1;
}

/* This node's certificate and key as libmicrohttpd takes them: PEM in
 * memory, kept while the daemon runs. */
static char *tls_cert, *tls_key;

/* The whole of a PEM file, NUL-terminated; NULL (logged) when unreadable. */
static char *read_pem(const char *what, const char *path, bool secret)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	char *buf = NULL;

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 20)) {
		cs_error("%s '%s': %s", what, path, fd < 0 ? strerror(errno) : "not a PEM file");
		goto out;
	}
	if (secret && (st.st_mode & 0007))
		cs_warn("%s '%s' is readable by every user (mode %04o): chmod 600 it", what, path,
			(unsigned)(st.st_mode & 07777));
	if (!(buf = calloc(1, st.st_size + 1)) || read(fd, buf, st.st_size) != st.st_size) {
		cs_error("%s '%s': cannot read it", what, path);
		free(buf);
		buf = NULL;
	}
out:
	if (fd >= 0)
		close(fd);
	return buf;
}

int cs_http_start(void)
{
	char host[CS_URL_MAX], *colon;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	unsigned limit;
	int rc;

	snprintf(host, sizeof host, "%s", cs_cfg.listen);
	colon = strrchr(host, ':');
	*colon = '\0';
	char *h = host;
	if (h[0] == '[' && colon[-1] == ']') {
		colon[-1] = '\0';
		h++;
	}
	rc = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &ai);
	if (rc != 0) {
		cs_error("CS_LISTEN '%s': %s", cs_cfg.listen, gai_strerror(rc));
		return -EINVAL;
	}
	/* https:// in CS_NODE_URL: peers reach this node over TLS only. */
	bool tls = strncmp(cs_cfg.node_url, "https://", 8) == 0;
	struct MHD_OptionItem tls_opts[] = {
		{ MHD_OPTION_HTTPS_MEM_CERT, 0, NULL },
		{ MHD_OPTION_HTTPS_MEM_KEY, 0, NULL },
		{ MHD_OPTION_END, 0, NULL },
	};
	if (tls) {
		if (!(tls_cert = read_pem("CS_TLS_CERT", cs_cfg.tls_cert, false)) ||
		    !(tls_key = read_pem("CS_TLS_KEY", cs_cfg.tls_key, true))) {
			freeaddrinfo(ai);
			return -EINVAL;
		}
		tls_opts[0].ptr_value = tls_cert;
		tls_opts[1].ptr_value = tls_key;
	} else {
		tls_opts[0].option = MHD_OPTION_END;
	}
	if ((rc = cs_guard_start(&limit)) < 0) {
		cs_error("peer endpoint: cannot start its deadline thread: %s", strerror(-rc));
		freeaddrinfo(ai);
		return rc;
	}
	/* poll(2), not epoll: with epoll (edge-triggered) libmicrohttpd 0.9.75
	 * notices a client that hangs up in the middle of a PUT body only at
	 * the connection timeout, and its half-written temporary file would
	 * hold the path's lock until then.  Peers are few, so poll costs
	 * nothing.  The guard (http_guard.c) admits connections and closes
	 * those that hold one without making requests; libmicrohttpd's own
	 * timeout (restarted by every byte) covers the rest, and its limit is
	 * the guard's with room for connections the guard is closing. */
	daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
				   MHD_USE_ERROR_LOG | (tls ? MHD_USE_TLS : 0) |
				   (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
				   0, NULL, NULL, on_request, NULL,
				   MHD_OPTION_SOCK_ADDR, ai->ai_addr,
				   MHD_OPTION_THREAD_POOL_SIZE, (unsigned)POOL_THREADS,
				   MHD_OPTION_CONNECTION_TIMEOUT, 30u,
				   MHD_OPTION_CONNECTION_LIMIT, limit,
				   MHD_OPTION_NOTIFY_CONNECTION, cs_guard_notify, NULL,
				   MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
				   MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
				   MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				   MHD_OPTION_ARRAY, tls_opts,
				   MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!daemon_) {
		cs_error("cannot listen on %s: %s", cs_cfg.listen, strerror(errno));
		cs_guard_stop();
		return -EADDRINUSE;
	}
	return 0;
}

void cs_http_stop(void)
{
	if (daemon_)
		MHD_stop_daemon(daemon_);
	daemon_ = NULL;
	free(tls_cert);
	free(tls_key);
	tls_cert = tls_key = NULL;
	cs_guard_stop();
}
