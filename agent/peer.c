/*
 * peer.c - talk to another node's cs-replicate serve: fetch a file from it,
 * push a new version to it, ask it to rename or drop its copy.
 *
 * The only file that includes curl.  Handles are kept between requests so
 * connections to peers are reused: single requests take one from a pool
 * all threads share, batches use a multi handle of their thread's.  Every
 * request is signed (sign.c), its body's length and the URL of the node it
 * is sent to included, and has connect and stall timeouts and
 * CURLOPT_NOSIGNAL.  A
 * fetched body streams into the caller's temporary file while it is hashed,
 * and is rejected unless size and SHA-256 match the registry's record; a
 * pushed one streams from the caller's fd, and the peer does the checking
 * (against the signed X-CS-SHA256 and the registry).  Announcements of new
 * names go to every peer at once on a multi handle.  Each transfer a peer
 * fails (no answer, a refusal, wrong bytes) is counted for /metrics; a
 * peer that simply lacks a file, or has a newer version, has not failed.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "metrics.h"
#include "peer.h"
#include "sign.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t key;

/* Pushes in flight at once (a batch of new files goes out in parallel). */
#define PUSH_PARALLEL 8
#define PUSH_STALL_S 3

/* A thread's handles for batches (pushes, announcements): the agent's
 * write path runs in one thread, and keeps its connections in these. */
struct handle {
	CURLM *multi;                   /* made on the thread's first batch */
	CURL *pool[PUSH_PARALLEL];      /* its transfers' handles, kept */
};

static void handle_free(void *p)
{
	struct handle *h = p;

	if (h->multi)
		curl_multi_cleanup(h->multi);
	for (int i = 0; i < PUSH_PARALLEL; i++)
		if (h->pool[i])
			curl_easy_cleanup(h->pool[i]);
	free(h);
}

static void init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_key_create(&key, handle_free);
}

void cs_peer_global_init(void)
{
	pthread_once(&once, init);
}

/* The calling thread's handles, made on first use. */
static struct handle *thread_handles(void)
{
	struct handle *h;

	pthread_once(&once, init);
	h = pthread_getspecific(key);
	if (!h) {
		h = calloc(1, sizeof *h);
		if (!h)
			return NULL;
		pthread_setspecific(key, h);
	}
	return h;
}

/*
 * Handles for single requests (fetch, move, delete) come from a pool that
 * every thread shares, not from the thread: the agent runs a thread per
 * host connection, and a short-lived host (cat, a CGI) would otherwise
 * make a new thread, a new handle and a new TCP connection to the peer for
 * each miss.  Taken last in, first out, so the connections kept warm are
 * the ones used.
 */
#define POOLED 64

static struct {
	pthread_mutex_t mu;
	CURL *free[POOLED];
	int n;
} pool = { .mu = PTHREAD_MUTEX_INITIALIZER };

static CURL *get_handle(void)
{
	CURL *c = NULL;

	pthread_once(&once, init);
	pthread_mutex_lock(&pool.mu);
	if (pool.n > 0)
		c = pool.free[--pool.n];
	pthread_mutex_unlock(&pool.mu);
	if (c)
		curl_easy_reset(c);
	else
		c = curl_easy_init();
	return c;
}

static void put_handle(CURL *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&pool.mu);
	if (pool.n < POOLED) {
		pool.free[pool.n++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&pool.mu);
	if (c)
		curl_easy_cleanup(c);
}

/* ---- one signed request ---------------------------------------------- */

struct request {
	CURL *c;
	char *url;
	struct curl_slist *headers;
	bool pooled;            /* c goes back to the pool at the end */
};

static int add_header(struct request *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int add_header(struct request *r, const char *fmt, ...)
{
	struct curl_slist *l = NULL;
	char *line;
	va_list ap;

	va_start(ap, fmt);
	int n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	l = curl_slist_append(r->headers, line);
	free(line);
	if (!l)
		return -ENOMEM;
	r->headers = l;
	return 0;
}

static size_t discard(char *p, size_t size, size_t nmemb, void *arg)
{
	(void)p, (void)arg;
	return size * nmemb;
}

/*
 * Set handle c (NULL: none could be had) up for `method` on the route path
 * (decoded, as signed; enc: as sent) at base_url, signed over path,
 * body_sha ("-" for no body, NULL for f's SHA-256), the body's length (what
 * the caller will send as Content-Length, 0 for no body) and base_url, the
 * node it is meant for.  With f, the version headers too.  The response
 * body is discarded unless the caller sets a write function.  0 or -errno;
 * the caller runs request_end either way.
 */
static int request_route(struct request *r, CURL *c, const char *method, const char *base_url,
			 const char *path, const char *enc, const char *body_sha,
			 uint64_t length, const struct cs_file *f)
{
	char sig[CS_SIGN_HEX], sha[CS_SHA256_HEX];
	struct cs_signed s = { .method = method, .path = path, .when = (long long)time(NULL),
			       .body_sha = body_sha, .length = length, .target = base_url };
	int rc;

	memset(r, 0, sizeof *r);
	if (f)
		cs_hex(f->sha256, CS_SHA256_LEN, sha);
	if (!(r->c = c))
		return -ENOMEM;
	if (asprintf(&r->url, "%s%s", base_url, enc) < 0) {
		r->url = NULL;
		return -ENOMEM;
	}
	if (!body_sha)
		s.body_sha = sha;
	if ((rc = cs_sign(cs_cfg.secret, cs_cfg.secret_len, &s, sig)) < 0)
		return rc;
	if ((rc = add_header(r, "X-CS-Time: %lld", s.when)) < 0 ||
	    (rc = add_header(r, "X-CS-Signature: %s", sig)) < 0 ||
	    (rc = add_header(r, "X-CS-Node: %s", cs_cfg.node)) < 0)
		return rc;
	if (f && ((rc = add_header(r, "X-CS-SHA256: %s", sha)) < 0 ||
		  (rc = add_header(r, "X-CS-Version: %" PRIu64, f->version)) < 0 ||
		  (rc = add_header(r, "X-CS-Mtime: %" PRId64, f->mtime_ns)) < 0))
		return rc;

	curl_easy_setopt(r->c, CURLOPT_URL, r->url);
	curl_easy_setopt(r->c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->c, CURLOPT_PROTOCOLS_STR, "http,https");
	/* An https:// peer is verified (curl's default, never turned off)
	 * against CS_TLS_CA, or the system's CAs. */
	if (cs_cfg.tls_ca[0])
		curl_easy_setopt(r->c, CURLOPT_CAINFO, cs_cfg.tls_ca);
	curl_easy_setopt(r->c, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
	curl_easy_setopt(r->c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(r->c, CURLOPT_LOW_SPEED_TIME, 10L);
	curl_easy_setopt(r->c, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(r->c, CURLOPT_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(r->c, CURLOPT_WRITEFUNCTION, discard);
	return 0;
}

/* request_route on /v1/files/<ns>/<rel>: a PUT sends f's bytes, every
 * other request none. */
static int request_begin(struct request *r, CURL *c, const char *method,
			 const char *base_url, const char *ns, const char *rel,
			 const char *body_sha, const struct cs_file *f)
{
	char enc[3 * CS_PATH_MAX], *path = NULL, *sent = NULL;
	int rc;

	memset(r, 0, sizeof *r);
	if (cs_url_encode_path(rel, enc, sizeof enc) < 0)
		return -ENAMETOOLONG;
	if (asprintf(&path, "/v1/files/%s/%s", ns, rel) < 0)
		return -ENOMEM;
	if (asprintf(&sent, "/v1/files/%s/%s", ns, enc) < 0) {
		free(path);
		return -ENOMEM;
	}
	rc = request_route(r, c, method, base_url, path, sent, body_sha,
			   f && strcmp(method, "PUT") == 0 ? f->size : 0, f);
	free(path);
	free(sent);
	return rc;
}

/* A transfer of r ended with cc: the HTTP status, or -EIO (logged) when
 * there was none. */
static long request_status(struct request *r, const char *what, CURLcode cc)
{
	long status = 0;

	if (cc != CURLE_OK) {
		cs_warn("%s %s: %s", what, r->url, curl_easy_strerror(cc));
		/* Our own callbacks stop a transfer for their side's reasons
		 * (a file that shrank, a full disk); the rest is the peer's or
		 * the network's doing. */
		if (cc != CURLE_WRITE_ERROR && cc != CURLE_READ_ERROR &&
		    cc != CURLE_ABORTED_BY_CALLBACK)
			cs_count(CS_C_PEER_ERRORS, 1);
		return -EIO;
	}
	curl_easy_getinfo(r->c, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

/* Run the request: the HTTP status, or -EIO (logged) when there was none. */
static long request_perform(struct request *r, const char *what)
{
	curl_easy_setopt(r->c, CURLOPT_HTTPHEADER, r->headers);
	return request_status(r, what, curl_easy_perform(r->c));
}

static void request_end(struct request *r)
{
	if (r->c)       /* the handle outlives us: no pointer into freed memory */
		curl_easy_setopt(r->c, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(r->headers);
	free(r->url);
	if (r->pooled)
		put_handle(r->c);
}

/* request_begin on a handle from the pool, which request_end gives back. */
static int single_begin(struct request *r, const char *method, const char *base_url,
			const char *ns, const char *rel, const char *body_sha,
			const struct cs_file *f)
{
	CURL *c = get_handle();
	int rc = request_begin(r, c, method, base_url, ns, rel, body_sha, f);

	r->c = c;
	r->pooled = true;
	return rc;
}

/* ---- fetch ------------------------------------------------------------ */

/*
 * The body gathers in 256 KiB slots, each written to the file in one call
 * (curl hands it over as each read from the socket brings it, 16 KiB or
 * so, and a system call per piece is a good part of a miss's cost) and
 * then hashed.  A large body is hashed by a thread of its own while the
 * next slots fill: SHA-256 runs at ~1.7 GB/s here, so hashed in line it
 * would hold a 1 GiB fetch up by ~0.6 s.
 */
#define SINK_BYTES (256 * 1024)
#define SINK_SLOTS 4
#define HASH_APART (8 << 20)

struct sink {
	int fd;
	uint64_t got, want;
	struct cs_sha256 sha;
	int err;
	char *slot[SINK_SLOTS];
	size_t len[SINK_SLOTS];
	size_t held;                    /* bytes in slot[cur] */
	int cur;
	/* a large body's hasher: slots are hashed in the order filled */
	bool apart, closing;
	bool busy[SINK_SLOTS];          /* written, waiting to be hashed */
	int next, pending;
	pthread_t hasher;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static void *hash_slots(void *arg)
{
	struct sink *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->pending && !s->closing)
			pthread_cond_wait(&s->cv, &s->mu);
		if (!s->pending)
			break;
		int i = s->next;
		pthread_mutex_unlock(&s->mu);
		cs_sha256_update(&s->sha, s->slot[i], s->len[i]);
		pthread_mutex_lock(&s->mu);
		s->busy[i] = false;
		s->next = (i + 1) % SINK_SLOTS;
		s->pending--;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static int sink_open(struct sink *s, int fd, uint64_t want)
{
	bool big = want >= HASH_APART;

	memset(s, 0, sizeof *s);
	s->fd = fd;
	s->want = want;
	for (int i = 0; i < (big ? SINK_SLOTS : 1); i++)
		if (!(s->slot[i] = malloc(SINK_BYTES)))
			return -ENOMEM;
	if (cs_sha256_init(&s->sha) < 0)
		return -ENOMEM;
	if (big) {
		pthread_mutex_init(&s->mu, NULL);
		pthread_cond_init(&s->cv, NULL);
		s->apart = pthread_create(&s->hasher, NULL, hash_slots, s) == 0;
		if (!s->apart) {                /* hashed in line, then */
			pthread_mutex_destroy(&s->mu);
			pthread_cond_destroy(&s->cv);
		}
	}
	return 0;
}

/* Write the slot being filled, then hash it (or hand it to the hasher and
 * move on to the next free slot). */
static int sink_flush(struct sink *s)
{
	char *p = s->slot[s->cur];
	int rc = cs_write_all(s->fd, p, s->held);

	if (rc < 0)
		return s->err = rc;
	if (!s->apart) {
		cs_sha256_update(&s->sha, p, s->held);
	} else if (s->held) {
		pthread_mutex_lock(&s->mu);
		s->len[s->cur] = s->held;
		s->busy[s->cur] = true;
		s->pending++;
		pthread_cond_broadcast(&s->cv);
		s->cur = (s->cur + 1) % SINK_SLOTS;
		while (s->busy[s->cur])
			pthread_cond_wait(&s->cv, &s->mu);
		pthread_mutex_unlock(&s->mu);
	}
	s->held = 0;
	return 0;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb, done = 0;

	if (s->got + n > s->want) {
		s->err = -EIO;          /* longer than the registry says */
		cs_count(CS_C_PEER_ERRORS, 1);
		return 0;
	}
	s->got += n;
	while (done < n) {
		size_t m = n - done < SINK_BYTES - s->held ? n - done : SINK_BYTES - s->held;
		memcpy(s->slot[s->cur] + s->held, p + done, m);
		s->held += m;
		done += m;
		if (s->held == SINK_BYTES && sink_flush(s) < 0)
			return 0;
	}
	return n;
}

/* The rest written (unless it failed) and hashed; the digest into d. */
static void sink_close(struct sink *s, bool flush, unsigned char d[CS_SHA256_LEN])
{
	if (flush && !s->err)
		sink_flush(s);
	if (s->apart) {
		pthread_mutex_lock(&s->mu);
		s->closing = true;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->hasher, NULL);
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
	}
	if (d && s->sha.ctx)
		cs_sha256_final(&s->sha, d);
	cs_sha256_free(&s->sha);
	for (int i = 0; i < SINK_SLOTS; i++)
		free(s->slot[i]);
}

int cs_peer_fetch(const char *base_url, const char *ns, const char *rel, int fd,
		  const struct cs_file *want, int64_t timeout_ms)
{
	struct request r = { 0 };
	struct sink s;
	unsigned char digest[CS_SHA256_LEN];
	long status = 0;
	int rc;

	if ((rc = sink_open(&s, fd, want->size)) < 0)
		goto out;
	if ((rc = single_begin(&r, "GET", base_url, ns, rel, "-", NULL)) < 0)
		goto out;
	curl_easy_setopt(r.c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(r.c, CURLOPT_WRITEDATA, &s);
	/* A host is waiting: a holder that trickles is left for the next. */
	curl_easy_setopt(r.c, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : 1));
	curl_easy_setopt(r.c, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(timeout_ms > 0 && timeout_ms < 1000 ? timeout_ms : 1000));
	curl_easy_setopt(r.c, CURLOPT_LOW_SPEED_LIMIT,
			 (long)(cs_cfg.fetch_min_rate < LONG_MAX ? cs_cfg.fetch_min_rate : LONG_MAX));
	curl_easy_setopt(r.c, CURLOPT_LOW_SPEED_TIME, 1L);
	status = request_perform(&r, "fetch");
out:
	sink_close(&s, rc == 0 && status == 200, digest);
	if (rc < 0)
		goto end;
	if (s.err) {
		rc = s.err;
		cs_warn("fetch %s: %s", r.url, strerror(-s.err));
	} else if (status != 200) {
		rc = status == 404 ? -ENOENT : status < 0 ? -EHOSTUNREACH : -EIO;
		if (status > 0 && status != 404) {
			cs_warn("fetch %s: HTTP %ld", r.url, status);
			cs_count(CS_C_PEER_ERRORS, 1);
		}
	} else if (s.got != want->size || memcmp(digest, want->sha256, CS_SHA256_LEN) != 0) {
		cs_count(CS_C_PEER_ERRORS, 1);
		cs_error_every(10, "fetch %s: got %" PRIu64 " bytes not matching the registry's "
			       "%" PRIu64 "-byte version %" PRIu64 "; discarded",
			       r.url, s.got, want->size, want->version);
		rc = -EIO;
	}
end:
	request_end(&r);
	return rc;
}

/* ---- push, move, delete ------------------------------------------------ */

struct source {
	int fd;
	uint64_t off, size;
	int err;
};

static size_t on_read(char *p, size_t size, size_t nitems, void *arg)
{
	struct source *s = arg;
	size_t want = size * nitems;

	if (want > s->size - s->off)
		want = s->size - s->off;        /* never more than announced */
	if (want == 0)
		return 0;
	for (;;) {
		ssize_t n = pread(s->fd, p, want, (off_t)s->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {                   /* shrunk under us: not this version */
			s->err = n < 0 ? -errno : -EIO;
			return CURL_READFUNC_ABORT;
		}
		s->off += n;
		return (size_t)n;
	}
}

/* curl rewinds the body to send it again on a new connection, when a kept
 * one turned out to be closed by the peer. */
static int on_seek(void *arg, curl_off_t offset, int origin)
{
	struct source *s = arg;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > s->size)
		return CURL_SEEKFUNC_CANTSEEK;
	s->off = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* Log a push, move or delete that did not simply succeed (the transfer
 * errors are logged by request_perform); returns rc. */
static int note(const struct request *r, const char *what, long status, int rc)
{
	if (status > 0 && rc == -EIO) {
		cs_warn("%s %s: HTTP %ld", what, r->url, status);
		cs_count(CS_C_PEER_ERRORS, 1);
	} else if (status > 0 && rc < 0) {
		cs_info("%s %s: HTTP %ld", what, r->url, status);
	}
	return rc;
}

struct push {
	struct request r;
	struct source src;
	struct cs_push *job;
};

/* Set up p's PUT of job on handle c. */
static int push_begin(struct push *p, CURL *c, struct cs_push *job)
{
	int rc;

	p->job = job;
	p->src = (struct source){ .fd = job->fd, .size = job->f->size };
	curl_easy_reset(c);
	if ((rc = request_begin(&p->r, c, "PUT", job->url, job->ns, job->rel, NULL,
				job->f)) < 0 ||
	    (rc = add_header(&p->r, "Expect:")) < 0)    /* no 100-continue round trip */
		return rc;
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	/* A target that takes nothing for PUSH_STALL_S is given up (and
	 * demoted by the caller): the node's other writes wait for it. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)PUSH_STALL_S);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(c, CURLOPT_READDATA, &p->src);
	curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
	curl_easy_setopt(c, CURLOPT_SEEKDATA, &p->src);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)job->f->size);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, p->r.headers);
	curl_easy_setopt(c, CURLOPT_PRIVATE, p);
	return 0;
}

/* p's transfer ended with cc: its outcome into p->job->rc. */
static void push_end(struct push *p, CURLcode cc)
{
	long status = request_status(&p->r, "push", cc);

	if (p->src.err)
		cs_warn("push %s: reading the file: %s", p->r.url, strerror(-p->src.err));
	p->job->rc = note(&p->r, "push", status,
			  status / 100 == 2 ? 0 : status == 409 ? -ESTALE :
			  status < 0 ? -EHOSTUNREACH : -EIO);
	request_end(&p->r);
}

void cs_peer_push_many(struct cs_push *jobs, int n, const int *stop)
{
	struct handle *h = thread_handles();
	struct push slot[PUSH_PARALLEL];
	int free_slots[PUSH_PARALLEL], nfree = 0, next = 0, active = 0, running;

	for (int i = 0; i < n; i++)
		jobs[i].rc = -EIO;
	if (!h || (!h->multi && !(h->multi = curl_multi_init())))
		return;
	curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)PUSH_PARALLEL);
	for (int i = PUSH_PARALLEL - 1; i >= 0; i--) {
		if (!h->pool[i] && !(h->pool[i] = curl_easy_init()))
			continue;
		free_slots[nfree++] = i;
	}
	while ((next < n || active > 0) && !(stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE))) {
		while (next < n && nfree > 0) {
			int i = free_slots[--nfree];
			struct cs_push *job = &jobs[next++];
			int rc = push_begin(&slot[i], h->pool[i], job);
			if (rc == 0 && curl_multi_add_handle(h->multi, h->pool[i]) == CURLM_OK) {
				active++;
				continue;
			}
			job->rc = rc < 0 ? rc : -EIO;
			request_end(&slot[i].r);
			free_slots[nfree++] = i;
		}
		if (active == 0)
			break;          /* nothing could be started */
		if (curl_multi_perform(h->multi, &running) != CURLM_OK)
			break;
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(h->multi, &left))) {
			char *priv = NULL;
			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
			struct push *p = (struct push *)priv;
			CURLcode cc = m->data.result;
			curl_multi_remove_handle(h->multi, m->easy_handle);
			push_end(p, cc);
			free_slots[nfree++] = (int)(p - slot);
			active--;
		}
		if (active > 0 && (next >= n || nfree == 0))
			curl_multi_poll(h->multi, NULL, 0, stop ? 100 : 1000, NULL);
	}
	/* Told to stop, or the multi interface failed: what still runs is
	 * dropped (its job keeps -EIO), and nothing is left attached. */
	for (int i = 0; i < PUSH_PARALLEL && active > 0; i++) {
		bool idle = false;
		for (int j = 0; j < nfree; j++)
			idle |= free_slots[j] == i;
		if (!idle && h->pool[i]) {
			curl_multi_remove_handle(h->multi, h->pool[i]);
			request_end(&slot[i].r);
		}
	}
}

int cs_peer_push(const char *base_url, const char *ns, const char *rel, int fd,
		 const struct cs_file *f)
{
	struct cs_push job = { .url = base_url, .ns = ns, .rel = rel, .fd = fd, .f = f };

	cs_peer_push_many(&job, 1, NULL);
	return job.rc;
}

int cs_peer_move(const char *base_url, const char *ns, const char *from,
		 const char *to, const struct cs_file *f)
{
	char enc[3 * CS_PATH_MAX], hex[CS_SHA256_HEX], *body_sha = NULL;
	struct request r;
	long status;
	int rc;

	cs_hex(f->sha256, CS_SHA256_LEN, hex);
	if (cs_url_encode_path(from, enc, sizeof enc) < 0)
		return -ENAMETOOLONG;
	/* The signature covers the source path too. */
	if (asprintf(&body_sha, "%s:%s", hex, from) < 0)
		return -ENOMEM;
	if ((rc = single_begin(&r, "POST", base_url, ns, to, body_sha, f)) < 0 ||
	    (rc = add_header(&r, "X-CS-From: %s", enc)) < 0)
		goto out;
	curl_easy_setopt(r.c, CURLOPT_POST, 1L);
	curl_easy_setopt(r.c, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(r.c, CURLOPT_POSTFIELDSIZE, 0L);
	status = request_perform(&r, "move");
	/* 404: no copy of `from`; 409: not the right bytes.  Either way the
	 * caller pushes the file instead. */
	rc = note(&r, "move", status,
		  status == 200 ? 0 : status == 404 || status == 409 ? -ENOENT : -EIO);
out:
	request_end(&r);
	free(body_sha);
	return rc;
}

int cs_peer_delete(const char *base_url, const char *ns, const char *rel)
{
	struct request r;
	long status;
	int rc;

	if ((rc = single_begin(&r, "DELETE", base_url, ns, rel, "-", NULL)) < 0)
		goto out;
	curl_easy_setopt(r.c, CURLOPT_CUSTOMREQUEST, "DELETE");
	status = request_perform(&r, "delete");
	rc = note(&r, "delete", status, status / 100 == 2 || status == 404 ? 0 : -EIO);
out:
	request_end(&r);
	return rc < 0 ? -EIO : 0;
}

/* ---- a small signed call ------------------------------------------------ */

struct text {
	char *out;
	size_t len, size;
};

static size_t keep_text(char *p, size_t size, size_t nmemb, void *arg)
{
	struct text *t = arg;
	size_t n = size * nmemb, room = t->size - 1 - t->len;

	memcpy(t->out + t->len, p, n < room ? n : room);
	t->len += n < room ? n : room;
	t->out[t->len] = '\0';
	return n;
}

long cs_peer_call(const char *base_url, const char *method, const char *path, char *out,
		  size_t outsz, int timeout_ms)
{
	struct text t = { out, 0, outsz };
	struct request r;
	CURL *c = get_handle();
	long status;
	int rc;

	if (outsz)
		out[0] = '\0';
	rc = request_route(&r, c, method, base_url, path, path, "-", 0, NULL);
	r.pooled = true;
	if (rc < 0) {
		request_end(&r);
		return rc;
	}
	if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(r.c, CURLOPT_POST, 1L);
		curl_easy_setopt(r.c, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(r.c, CURLOPT_POSTFIELDSIZE, 0L);
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(r.c, CURLOPT_CUSTOMREQUEST, method);
	}
	curl_easy_setopt(r.c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	if (outsz)
		curl_easy_setopt(r.c, CURLOPT_WRITEFUNCTION, keep_text);
	curl_easy_setopt(r.c, CURLOPT_WRITEDATA, &t);
	status = request_perform(&r, method);
	request_end(&r);        /* the pool resets the handle before its next use */
	return status;
}

/* ---- announcing names ------------------------------------------------- */

int cs_peer_announce(const char *const *urls, int n, const char *body, size_t len,
		     int timeout_ms, bool *ok)
{
	struct handle *h = thread_handles();
	unsigned char digest[CS_SHA256_LEN];
	char sha[CS_SHA256_HEX];
	struct request *r = calloc(n > 0 ? n : 1, sizeof *r);
	int64_t deadline = cs_clock_ms() + timeout_ms;
	int acked = 0, running = 0, sent = 0;

	if (!r || !h || n <= 0 || (!h->multi && !(h->multi = curl_multi_init()))) {
		free(r);
		return 0;
	}
	cs_sha256_buf(body, len, digest);
	cs_hex(digest, CS_SHA256_LEN, sha);
	for (int i = 0; i < n; i++) {
		CURL *c = curl_easy_init();
		ok[i] = false;
		if (request_route(&r[i], c, "POST", urls[i], "/v1/index", "/v1/index", sha, len,
				  NULL) < 0 ||
		    add_header(&r[i], "X-CS-SHA256: %s", sha) < 0 ||
		    add_header(&r[i], "Content-Type: text/plain") < 0 ||
		    add_header(&r[i], "Expect:") < 0) {
			request_end(&r[i]);
			if (c)
				curl_easy_cleanup(c);
			r[i].c = NULL;
			continue;
		}
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, r[i].headers);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
		curl_easy_setopt(c, CURLOPT_PRIVATE, &ok[i]);
		if (curl_multi_add_handle(h->multi, c) != CURLM_OK) {
			request_end(&r[i]);
			curl_easy_cleanup(c);
			r[i].c = NULL;
			continue;
		}
		sent++;
	}
	do {
		CURLMsg *m;
		int left;
		if (curl_multi_perform(h->multi, &running) != CURLM_OK)
			break;
		while ((m = curl_multi_info_read(h->multi, &left))) {
			long status = 0;
			if (m->msg != CURLMSG_DONE)
				continue;
			char *done = NULL;
			if (m->data.result == CURLE_OK &&
			    curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status) ==
				    CURLE_OK && status == 200 &&
			    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &done) == CURLE_OK) {
				*(bool *)done = true;
				acked++;
			}
		}
		if (running > 0)
			curl_multi_poll(h->multi, NULL, 0, 20, NULL);
	} while (running > 0 && cs_clock_ms() < deadline);
	/* Each peer that was asked and did not say ok: refused, unreachable,
	 * or too slow. */
	cs_count(CS_C_PEER_ERRORS, (uint64_t)(sent - acked));
	for (int i = 0; i < n; i++) {
		if (!r[i].c)
			continue;
		curl_multi_remove_handle(h->multi, r[i].c);
		CURL *c = r[i].c;
		request_end(&r[i]);
		curl_easy_cleanup(c);
	}
	free(r);
	return acked;
}
