/*
 * serve.c - `cs-replicate serve`: the HTTP endpoint other nodes fetch from,
 * and this node's registration and heartbeat in the registry.
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
 * Nothing is logged per request below CS_LOG=info.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "cs.h"
#include "serve.h"

#define HEARTBEAT_SECONDS 2
#define POOL_THREADS 4

/* The unescaper's verdict on a path it refused: never a valid path. */
static const char bad_encoding[] = "\x01";

static struct {
	atomic_ullong requests, files_served, bytes_served, rejected;
} stats;

static volatile sig_atomic_t stopping;

/* ---- responses ------------------------------------------------------ */

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status,
				  const char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, "Allow", "GET, HEAD");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	if (status >= 400)
		atomic_fetch_add(&stats.rejected, 1);
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

/* openat2 beneath dirfd; falls back to a component walk without symlinks. */
static int open_beneath(int dirfd, const char *rel)
{
	struct open_how how = {
		.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
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
		int next = openat(cur, seg, (slash ? O_PATH | O_DIRECTORY : O_RDONLY | O_NOCTTY) |
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
		return reply_text(c, MHD_HTTP_NOT_FOUND, "no such namespace\n");
	dirfd = open(p->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return reply_text(c, MHD_HTTP_NOT_FOUND, "no such file\n");
	fd = open_beneath(dirfd, rt->rel);
	int e = errno;
	close(dirfd);
	if (fd < 0) {
		if (e == EACCES)
			return reply_text(c, MHD_HTTP_FORBIDDEN, "permission denied\n");
		/* ENOENT, and EXDEV/ELOOP for an escape attempt: not found. */
		if (e == ENOENT || e == ENOTDIR || e == EXDEV || e == ELOOP ||
		    e == ENAMETOOLONG)
			return reply_text(c, MHD_HTTP_NOT_FOUND, "no such file\n");
		cs_error("open %s/%s: %s", p->dir, rt->rel, strerror(e));
		return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot open file\n");
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return reply_text(c, MHD_HTTP_NOT_FOUND, "no such file\n");
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
		atomic_fetch_add(&stats.rejected, 1);
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
		atomic_fetch_add(&stats.files_served, 1);
		atomic_fetch_add(&stats.bytes_served, len);
	}
	cs_info("%s /v1/files/%s/%s %u %" PRIu64, method, rt->ns, rt->rel, status, len);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct cs_route rt;
	char body[256];
	int rc;

	(void)cls, (void)version, (void)upload;
	/* libmicrohttpd calls once with the headers, then with body data, then
	 * with none: answering on the first call would make it close the
	 * connection (it cannot know the body is done), and peers reuse
	 * connections.  A body (none is expected yet) is read and dropped. */
	if (*con_cls == NULL) {
		*con_cls = (void *)1;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	atomic_fetch_add(&stats.requests, 1);
	if (strcmp(url, bad_encoding) == 0)
		return reply_text(c, MHD_HTTP_BAD_REQUEST, "bad percent-encoding in path\n");
	rc = cs_route_parse(url, &rt);
	if (rc == 0 && rt.kind == CS_ROUTE_HEALTH)
		return reply_text(c, MHD_HTTP_OK, "ok\n");

	const char *when = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CS-Time");
	const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CS-Signature");
	const char *sha = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CS-SHA256");
	if (!when || !sig)
		return reply_text(c, MHD_HTTP_UNAUTHORIZED,
				  "missing X-CS-Time / X-CS-Signature\n");
	if (cs_sign_verify(cs_cfg.secret, cs_cfg.secret_len, method, url, when,
			   sha ? sha : "-", sig, (long long)time(NULL)) < 0) {
		cs_info("%s %s: bad or stale signature", method, url);
		return reply_text(c, MHD_HTTP_UNAUTHORIZED, "bad or stale signature\n");
	}

	if (rc == -ENOENT)
		return reply_text(c, MHD_HTTP_NOT_FOUND, "no such route\n");
	if (rc < 0)
		return reply_text(c, MHD_HTTP_BAD_REQUEST,
				  "bad path: empty, '.', '..' or '//' segment, or control byte\n");
	if (rt.kind == CS_ROUTE_STATS) {
		snprintf(body, sizeof body,
			 "requests %llu\nfiles_served %llu\nbytes_served %llu\nrejected %llu\n",
			 (unsigned long long)atomic_load(&stats.requests),
			 (unsigned long long)atomic_load(&stats.files_served),
			 (unsigned long long)atomic_load(&stats.bytes_served),
			 (unsigned long long)atomic_load(&stats.rejected));
		return reply_text(c, MHD_HTTP_OK, body);
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	return serve_file(c, method, &rt);
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

/* ---- heartbeat ------------------------------------------------------ */

static void *heartbeat(void *arg)
{
	bool failing = false;

	(void)arg;
	while (!stopping) {
		int rc = cs_registry_heartbeat();
		if (rc < 0 && !failing)
			cs_warn("heartbeat: registry unreachable (%s); still serving",
				strerror(-rc));
		else if (rc == 0 && failing)
			cs_warn("heartbeat: registry reachable again");
		failing = rc < 0;
		for (int i = 0; i < HEARTBEAT_SECONDS * 10 && !stopping; i++)
			usleep(100000);
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
	pthread_t hb;
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

	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			     MHD_USE_ERROR_LOG |
			     (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
			     0, NULL, NULL, on_request, NULL,
			     MHD_OPTION_SOCK_ADDR, ai->ai_addr,
			     MHD_OPTION_THREAD_POOL_SIZE, (unsigned)POOL_THREADS,
			     MHD_OPTION_CONNECTION_TIMEOUT, 30u,
			     MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
			     MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!d) {
		fprintf(stderr, "cs-replicate serve: cannot listen on %s: %s\n",
			cs_cfg.listen, strerror(errno));
		return 1;
	}
	pthread_create(&hb, NULL, heartbeat, NULL);
	fprintf(stderr, "cs-replicate serve: node %s listening on %s (%s)\n",
		cs_cfg.node, cs_cfg.listen, cs_cfg.node_url);

	sigwait(&set, &sig);
	stopping = 1;
	MHD_stop_daemon(d);
	pthread_join(hb, NULL);
	cs_registry_shutdown();
	return 0;
}
