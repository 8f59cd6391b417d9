/*
 * serve.c - `cs-replicate serve`: the HTTP endpoint other nodes fetch from
 * and push to, this node's registration and heartbeat in the registry, and
 * the sweeper that removes superseded copies and replicates the journals of
 * dead processes.
 *
 * Built on libmicrohttpd with a small thread pool; files go out with
 * sendfile(2) from an fd.  What may be asked is decided before any file is
 * touched, in this order:
 *   1. the URL path is percent-decoded strictly (our own unescaper replaces
 *      libmicrohttpd's, which would turn "%00" into a truncated string and
 *      "%2F" into a separator): malformed -> 400;
 *   2. the signature (route.c / sign.c) over method, decoded path and time:
 *      missing, forged or stale -> 401 (only /v1/health is public);
 *   3. the route and path: ".", "..", "//", control bytes -> 400, unknown
 *      route or namespace -> 404;
 *   4. the file is opened with openat2(RESOLVE_BENEATH) below the namespace
 *      directory, so no symlink or ".." can lead outside it -> 404.
 * GET and HEAD are answered here; PUT, POST and DELETE in serve_put.c.  A
 * PUT is checked as soon as its headers are in, so a refused body is never
 * read.  Nothing is logged per request below CS_LOG=info.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"
#include "serve_int.h"

#define HEARTBEAT_SECONDS 2
#define SWEEP_MS 250            /* superseded copies go within this */
#define ORPHANS_EVERY 8         /* sweeps: dead processes' journals every 2 s */
#define POOL_THREADS 4

/* The unescaper's verdict on a path it refused: never a valid path. */
static const char bad_encoding[] = "\x01";

struct serve_stats serve_stats;

/* *con_cls of a request whose headers were seen (a PUT's is its upload),
 * and of one already answered on its headers. */
static char seen, answered;

static volatile sig_atomic_t stopping;

/* ---- responses ------------------------------------------------------ */

enum MHD_Result serve_reply(struct MHD_Connection *c, unsigned status,
			    const char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, "Allow", "GET, HEAD, PUT, POST, DELETE");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	if (status >= 400)
		atomic_fetch_add(&serve_stats.rejected, 1);
	return ret;
}

/*
 * One "bytes=" range against size.  Returns 1 with [*off, *off + *len) for
 * a satisfiable single range, 0 to ignore the header (absent, multiple or
 * malformed: send it all), -1 when unsatisfiable (416).
 */
int serve_parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
	unsigned long long a, b;
	char *end;

	if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
		return 0;
	h += 6;
	if (*h == '-') {                        /* the last b bytes */
		errno = 0;
		b = strtoull(h + 1, &end, 10);
		if (*end || errno || end == h + 1)
			return 0;
		if (b == 0 || size == 0)
			return -1;
		*len = b < size ? b : size;
		*off = size - *len;
		return 1;
	}
	errno = 0;
	a = strtoull(h, &end, 10);
	if (end == h || *end != '-' || errno)
		return 0;
	if (end[1] == '\0') {
		b = size ? size - 1 : 0;
	} else {
		char *e2;
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

int serve_open_beneath(int dirfd, const char *rel, int flags)
{
	struct open_how how = {
		.flags = flags | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);

	if (fd >= 0 || errno != ENOSYS)
		return (int)fd;

	char buf[CS_PATH_MAX];
	int cur = dup(dirfd);
	snprintf(buf, sizeof buf, "%s", rel);
	for (char *seg = buf, *slash; cur >= 0; seg = slash + 1) {
		slash = strchr(seg, '/');
		if (slash)
			*slash = '\0';
		int next = openat(cur, seg, (slash ? O_PATH | O_DIRECTORY : flags) |
					    O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(cur);
		errno = e;
		cur = next;
		if (!slash)
			break;
	}
	return cur;
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
		return serve_reply(c, MHD_HTTP_NOT_FOUND, "no such namespace\n");
	dirfd = open(p->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return serve_reply(c, MHD_HTTP_NOT_FOUND, "no such file\n");
	fd = serve_open_beneath(dirfd, rt->rel, O_RDONLY | O_NOCTTY);
	int e = errno;
	close(dirfd);
	if (fd < 0) {
		if (e == EACCES)
			return serve_reply(c, MHD_HTTP_FORBIDDEN, "permission denied\n");
		/* ENOENT, and EXDEV/ELOOP for an escape attempt: not found. */
		if (e == ENOENT || e == ENOTDIR || e == EXDEV || e == ELOOP ||
		    e == ENAMETOOLONG)
			return serve_reply(c, MHD_HTTP_NOT_FOUND, "no such file\n");
		cs_error("open %s/%s: %s", p->dir, rt->rel, strerror(e));
		return serve_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot open file\n");
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return serve_reply(c, MHD_HTTP_NOT_FOUND, "no such file\n");
	}
	len = st.st_size;
	int range = serve_parse_range(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range"),
				      st.st_size, &off, &len);
	if (range < 0) {
		close(fd);
		r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (!r)
			return MHD_NO;
		snprintf(num, sizeof num, "bytes */%" PRIu64, (uint64_t)st.st_size);
		MHD_add_response_header(r, "Content-Range", num);
		enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_RANGE_NOT_SATISFIABLE, r);
		MHD_destroy_response(r);
		atomic_fetch_add(&serve_stats.rejected, 1);
		return ret;
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
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	if (strcmp(method, "GET") == 0) {
		atomic_fetch_add(&serve_stats.files_served, 1);
		atomic_fetch_add(&serve_stats.bytes_served, len);
	}
	cs_info("%s /v1/files/%s/%s %u %" PRIu64, method, rt->ns, rt->rel, status, len);
	return ret;
}

/*
 * Steps 1 to 3 above, for any request: 0 with *rt for a signed request on a
 * known route, or 1 with the answer (a refusal, or the public health
 * check) queued in *ret.
 */
static int check(struct MHD_Connection *c, const char *url, const char *method,
		 struct cs_route *rt, enum MHD_Result *ret)
{
	char body_sha[SERVE_SIGNED_BODY_MAX];
	int rc;

	*ret = MHD_YES;
	if (strcmp(url, bad_encoding) == 0) {
		*ret = serve_reply(c, MHD_HTTP_BAD_REQUEST, "bad percent-encoding in path\n");
		return 1;
	}
	rc = cs_route_parse(url, rt);
	if (rc == 0 && rt->kind == CS_ROUTE_HEALTH) {
		*ret = serve_reply(c, MHD_HTTP_OK, "ok\n");
		return 1;
	}

	const char *when = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CS-Time");
	const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CS-Signature");
	if (!when || !sig) {
		*ret = serve_reply(c, MHD_HTTP_UNAUTHORIZED,
				   "missing X-CS-Time / X-CS-Signature\n");
		return 1;
	}
	serve_signed_body(c, method, body_sha, sizeof body_sha);
	if (cs_sign_verify(cs_cfg.secret, cs_cfg.secret_len, method, url, when,
			   body_sha, sig, (long long)time(NULL)) < 0) {
		cs_info("%s %s: bad or stale signature", method, url);
		*ret = serve_reply(c, MHD_HTTP_UNAUTHORIZED, "bad or stale signature\n");
		return 1;
	}
	if (rc == -ENOENT)
		*ret = serve_reply(c, MHD_HTTP_NOT_FOUND, "no such route\n");
	else if (rc < 0)
		*ret = serve_reply(c, MHD_HTTP_BAD_REQUEST,
				   "bad path: empty, '.', '..' or '//' segment, or control byte\n");
	return rc < 0;
}

static enum MHD_Result answer_stats(struct MHD_Connection *c)
{
	char body[512];

	snprintf(body, sizeof body,
		 "requests %llu\nfiles_served %llu\nbytes_served %llu\n"
		 "files_received %llu\nbytes_received %llu\nrejected %llu\n",
		 (unsigned long long)atomic_load(&serve_stats.requests),
		 (unsigned long long)atomic_load(&serve_stats.files_served),
		 (unsigned long long)atomic_load(&serve_stats.bytes_served),
		 (unsigned long long)atomic_load(&serve_stats.files_received),
		 (unsigned long long)atomic_load(&serve_stats.bytes_received),
		 (unsigned long long)atomic_load(&serve_stats.rejected));
	return serve_reply(c, MHD_HTTP_OK, body);
}

/* A PUT's headers are in: refuse it now, or get ready for its body. */
static enum MHD_Result put_headers(struct MHD_Connection *c, const char *url,
				   void **con_cls)
{
	struct cs_route rt;
	enum MHD_Result ret;

	*con_cls = &answered;   /* unless the upload begins */
	if (check(c, url, "PUT", &rt, &ret))
		return ret;
	if (rt.kind != CS_ROUTE_FILES)
		return serve_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	return serve_put_begin(c, &rt, con_cls);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct cs_route rt;
	enum MHD_Result ret;

	(void)cls, (void)version;
	/* libmicrohttpd calls once with the headers, then with body data, then
	 * with none.  Only a refused PUT is answered on the first call (which
	 * makes libmicrohttpd close the connection: it cannot know where the
	 * body ends); the rest wait for the last, so connections are reused.
	 * A body where none is expected is read and dropped. */
	if (*con_cls == NULL) {
		atomic_fetch_add(&serve_stats.requests, 1);
		*con_cls = &seen;
		return strcmp(method, "PUT") == 0 ? put_headers(c, url, con_cls) : MHD_YES;
	}
	if (*con_cls != &seen && *con_cls != &answered)
		return serve_put_data(c, *con_cls, upload, upload_size);
	if (*upload_size || *con_cls == &answered) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (check(c, url, method, &rt, &ret))
		return ret;
	if (rt.kind == CS_ROUTE_STATS)
		return answer_stats(c);
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
		return serve_file(c, method, &rt);
	if (strcmp(method, "POST") == 0)
		return serve_move(c, &rt);
	if (strcmp(method, "DELETE") == 0)
		return serve_delete(c);
	return serve_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
}

/* A request is over, answered or not: an unfinished upload goes. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls, (void)c, (void)toe;
	if (*con_cls && *con_cls != &seen && *con_cls != &answered)
		serve_put_end(*con_cls);
	*con_cls = NULL;
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

/* ---- background work: heartbeat, sweeper ------------------------------ */

/* One line when `what` starts failing and one when it works again. */
static void note(bool *failing, int rc, const char *what)
{
	if (rc < 0 && !*failing)
		cs_warn("%s failing (%s); still serving", what, strerror(-rc));
	else if (rc >= 0 && *failing)
		cs_warn("%s working again", what);
	*failing = rc < 0;
}

/* Sleep ms in steps, returning early when the daemon stops. */
static void nap(int ms)
{
	for (; ms > 0 && !stopping; ms -= 100)
		usleep((ms < 100 ? ms : 100) * 1000);
}

static void *heartbeat(void *arg)
{
	bool failing = false;

	(void)arg;
	while (!stopping) {
		note(&failing, cs_registry_heartbeat(), "heartbeat");
		nap(HEARTBEAT_SECONDS * 1000);
	}
	return NULL;
}

/* Superseded copies go within SWEEP_MS of the registry saying so (a hit
 * never asks the network); writes of processes that died before their
 * replicator finished go out within 2 s. */
static void *sweeper(void *arg)
{
	bool sweep_failing = false, orphans_failing = false;
	int live;

	(void)arg;
	for (unsigned i = 0; !stopping; i++) {
		note(&sweep_failing, cs_stale_sweep(), "removing superseded copies");
		if (i % ORPHANS_EVERY == 0)
			note(&orphans_failing, cs_replicate_orphans(false, &live),
			     "replicating dead processes' journals");
		nap(SWEEP_MS);
	}
	return NULL;
}

/* ---- the daemon ------------------------------------------------------ */

int serve_main(void)
{
	char host[CS_URL_MAX], *colon;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	struct MHD_Daemon *d;
	pthread_t hb, sw;
	sigset_t set;
	int sig, rc;

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
		fprintf(stderr, "cs-replicate serve: CS_LISTEN '%s': %s\n", cs_cfg.listen,
			gai_strerror(rc));
		return 2;
	}

	/* Signals are taken by sigwait below; every thread inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* poll(2), not epoll: with epoll (edge-triggered) libmicrohttpd 0.9.75
	 * notices a client that hangs up in the middle of a PUT body only at
	 * the connection timeout, and its half-written temporary file would
	 * hold the path's lock until then.  Peers are few, so poll costs
	 * nothing. */
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
			     MHD_USE_ERROR_LOG |
			     (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
			     0, NULL, NULL, on_request, NULL,
			     MHD_OPTION_SOCK_ADDR, ai->ai_addr,
			     MHD_OPTION_THREAD_POOL_SIZE, (unsigned)POOL_THREADS,
			     MHD_OPTION_CONNECTION_TIMEOUT, 30u,
			     MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
			     MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
			     MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!d) {
		fprintf(stderr, "cs-replicate serve: cannot listen on %s: %s\n",
			cs_cfg.listen, strerror(errno));
		return 1;
	}
	pthread_create(&hb, NULL, heartbeat, NULL);
	pthread_create(&sw, NULL, sweeper, NULL);
	fprintf(stderr, "cs-replicate serve: node %s listening on %s (%s)\n",
		cs_cfg.node, cs_cfg.listen, cs_cfg.node_url);

	sigwait(&set, &sig);
	stopping = 1;
	MHD_stop_daemon(d);
	pthread_join(hb, NULL);
	pthread_join(sw, NULL);
	cs_registry_shutdown();
	return 0;
}
