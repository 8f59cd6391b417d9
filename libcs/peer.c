/*
 * peer.c - fetch a file from another node's cs-replicate serve.
 *
 * The only file that includes curl.  One easy handle per thread, kept between
 * fetches so connections to peers are reused; dropped (not cleaned up: its
 * sockets are the parent's) in a forked child.  Every request is signed
 * (sign.c), has connect and stall timeouts and CURLOPT_NOSIGNAL: this runs in
 * someone else's process.  The body streams into the caller's temporary file
 * while it is hashed, and is rejected unless size and SHA-256 match the
 * registry's record.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cs.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static volatile unsigned generation;     /* bumped in a forked child */

struct handle {
	CURL *curl;
	unsigned generation;
};

static void handle_free(void *p)
{
	struct handle *h = p;

	if (h->generation == generation)
		curl_easy_cleanup(h->curl);
	free(h);
}

static void init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_key_create(&key, handle_free);
}

static CURL *get_handle(void)
{
	struct handle *h;

	pthread_once(&once, init);
	h = pthread_getspecific(key);
	if (h && h->generation != generation) {
		free(h);        /* leak the inherited CURL on purpose */
		h = NULL;
	}
	if (!h) {
		h = calloc(1, sizeof *h);
		if (!h)
			return NULL;
		h->curl = curl_easy_init();
		h->generation = generation;
		if (!h->curl) {
			free(h);
			return NULL;
		}
		pthread_setspecific(key, h);
	}
	curl_easy_reset(h->curl);
	return h->curl;
}

void cs_peer_forget(void)
{
	generation++;
}

int cs_url_encode_path(const char *rel, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)rel; *p; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			     (*p >= '0' && *p <= '9') || strchr("-._~/", *p);
		if (n + (plain ? 1 : 3) + 1 > outsz)
			return -ENOSPC;
		if (plain) {
			out[n++] = (char)*p;
		} else {
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = '\0';
	return (int)n;
}

struct sink {
	int fd;
	uint64_t got, want;
	struct cs_sha256 sha;
	int err;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb, done = 0;

	if (s->got + n > s->want) {
		s->err = -EIO;          /* longer than the registry says */
		return 0;
	}
	cs_sha256_update(&s->sha, p, n);
	while (done < n) {
		ssize_t w = write(s->fd, p + done, n - done);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			s->err = -errno;
			return 0;
		}
		done += w;
	}
	s->got += n;
	return n;
}

int cs_peer_fetch(const char *base_url, const char *ns, const char *rel, int fd,
		  const struct cs_file *want)
{
	char enc[3 * CS_PATH_MAX], sig[CS_SIGN_HEX], hdr[3][160];
	char *url = NULL, *path = NULL;
	struct curl_slist *headers = NULL;
	struct sink s = { .fd = fd, .want = want->size };
	unsigned char digest[CS_SHA256_LEN];
	long status = 0;
	int rc;
	CURL *c = get_handle();

	if (!c)
		return -ENOMEM;
	if (cs_url_encode_path(rel, enc, sizeof enc) < 0)
		return -ENAMETOOLONG;
	if (asprintf(&url, "%s/v1/files/%s/%s", base_url, ns, enc) < 0)
		url = NULL;
	if (asprintf(&path, "/v1/files/%s/%s", ns, rel) < 0)
		path = NULL;
	if (!url || !path || cs_sha256_init(&s.sha) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	long long now = (long long)time(NULL);
	cs_sign(cs_cfg.secret, cs_cfg.secret_len, "GET", path, now, "-", sig);
	snprintf(hdr[0], sizeof hdr[0], "X-CS-Time: %lld", now);
	snprintf(hdr[1], sizeof hdr[1], "X-CS-Signature: %s", sig);
	snprintf(hdr[2], sizeof hdr[2], "X-CS-Node: %s", cs_cfg.node);
	for (int i = 0; i < 3; i++) {
		struct curl_slist *l = curl_slist_append(headers, hdr[i]);
		if (!l) {
			rc = -ENOMEM;
			goto out;
		}
		headers = l;
	}

	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 10L);
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);

	CURLcode cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (cc != CURLE_OK) {
		rc = s.err ? s.err : -EIO;
		cs_warn("fetch %s: %s", url, s.err ? strerror(-s.err) : curl_easy_strerror(cc));
		goto out;
	}
	if (status != 200) {
		rc = status == 404 ? -ENOENT : -EIO;
		cs_warn("fetch %s: HTTP %ld", url, status);
		goto out;
	}
	cs_sha256_final(&s.sha, digest);
	if (s.got != want->size || memcmp(digest, want->sha256, CS_SHA256_LEN) != 0) {
		cs_error_every(10, "fetch %s: got %" PRIu64 " bytes not matching the registry's "
			 "%" PRIu64 "-byte version %" PRIu64 "; discarded",
			 url, s.got, want->size, want->version);
		rc = -EIO;
		goto out;
	}
	rc = 0;
out:
	cs_sha256_free(&s.sha);
	curl_slist_free_all(headers);
	free(url);
	free(path);
	return rc;
}
