/*
 * firstread.c - the first read of a file only a peer holds, against the
 * least the same job can cost done by hand.
 *
 *   firstread open <dir> <n>
 *       (a host under LD_PRELOAD=libcs.so) open+close <dir>/first/NNN.bin,
 *       n files this node never had: each open asks the node's agent, which
 *       looks the name up, fetches, verifies and installs it.
 *   firstread store <memcached host:port> <peer base URL> <secret> <n> <dir>
 *       by hand, for each file: one memcached get of its registry record
 *       (as the agent keys it), one signed HTTP GET from the peer (libcurl,
 *       connection reused) into a new file in <dir> that is then renamed
 *       into place, as nginx's proxy_store does: no lock, no verification,
 *       no holder record.
 *   firstread one <path>
 *       (under the library) one open() of <path>; prints its milliseconds.
 *
 * Files are read 10 ms apart in open and store: a first read is a latency a
 * user sees, measured here on an otherwise idle cluster rather than in a
 * burst where each fetch competes with the last one's bookkeeping.
 * Prints the median and mean milliseconds per file.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libmemcached/memcached.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void gap(void)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	nanosleep(&ts, NULL);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(double *t, int n)
{
	double sum = 0;

	for (int i = 0; i < n; i++)
		sum += t[i];
	qsort(t, n, sizeof *t, cmp);
	printf("median %.3f mean %.3f\n", t[n / 2], sum / n);
}

static void hex(const unsigned char *d, int n, char *out)
{
	for (int i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* The memcached key of img/<rel>, as the agent makes it (agent/record.c). */
static void record_key(const char *rel, char key[80])
{
	unsigned char h[32];
	unsigned int len = 32;
	EVP_MD_CTX *m = EVP_MD_CTX_new();

	EVP_DigestInit_ex(m, EVP_sha256(), NULL);
	EVP_DigestUpdate(m, "img", 4);
	EVP_DigestUpdate(m, rel, strlen(rel));
	EVP_DigestFinal_ex(m, h, &len);
	EVP_MD_CTX_free(m);
	strcpy(key, "cs1:");
	hex(h, 32, key + 4);
}

static memcached_st *mc_open(const char *servers)
{
	memcached_st *mc = memcached_create(NULL);
	memcached_server_list_st l = memcached_servers_parse(servers);

	memcached_server_push(mc, l);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	return mc;
}

static size_t sink(char *p, size_t s, size_t n, void *arg)
{
	int fd = *(int *)arg;

	if (fd >= 0 && write(fd, p, s * n) != (ssize_t)(s * n))
		return 0;
	return s * n;
}

int main(int argc, char **argv)
{
	char path[4096];

	if (argc == 4 && !strcmp(argv[1], "open")) {
		int n = atoi(argv[3]);
		double *t = calloc(n, sizeof *t);
		for (int i = 0; i < n; i++) {
			snprintf(path, sizeof path, "%s/first/%03d.bin", argv[2], i);
			gap();
			double a = now_ms();
			int fd = open(path, O_RDONLY);
			t[i] = now_ms() - a;
			if (fd < 0) {
				perror(path);
				return 1;
			}
			close(fd);
		}
		report(t, n);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "one")) {
		double a = now_ms();
		int fd = open(argv[2], O_RDONLY);
		double t = now_ms() - a;
		if (fd < 0) {
			perror(argv[2]);
			return 1;
		}
		close(fd);
		printf("ms %.3f\n", t);
		return 0;
	}
	if (argc != 7 || strcmp(argv[1], "store"))
		return 2;
	int n = atoi(argv[5]);
	double *t = calloc(n, sizeof *t);
	memcached_st *mc = mc_open(argv[2]);
	CURL *c = curl_easy_init();

	for (int i = 0; i < n; i++) {
		unsigned char mac[32];
		unsigned int len = 32;
		char key[80], url[8192], rel[64], sig[65], hdr[2][128];
		size_t vlen;
		uint32_t flags;
		memcached_return_t rc;

		snprintf(rel, sizeof rel, "first/%03d.bin", i);
		snprintf(path, sizeof path, "/v1/files/img/%s", rel);
		gap();
		double a = now_ms();
		/* lookup: the registry record, as the agent keys it */
		record_key(rel, key);
		char *v = memcached_get(mc, key, strlen(key), &vlen, &flags, &rc);
		if (!v) {
			fprintf(stderr, "no record for %s\n", rel);
			return 1;
		}
		free(v);
		/* transfer: one signed GET */
		long long when = time(NULL);
		char msg[1200];
		int ml = snprintf(msg, sizeof msg, "GET\n%s\n%lld\n-\n0\n%s", path, when, argv[3]);
		HMAC(EVP_sha256(), argv[4], strlen(argv[4]), (unsigned char *)msg, ml, mac, &len);
		hex(mac, 32, sig);
		snprintf(hdr[0], sizeof hdr[0], "X-CS-Time: %lld", when);
		snprintf(hdr[1], sizeof hdr[1], "X-CS-Signature: %s", sig);
		struct curl_slist *hl = curl_slist_append(curl_slist_append(NULL, hdr[0]), hdr[1]);
		snprintf(url, sizeof url, "%s%s", argv[3], path);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
		char tmp[4096], dst[4096];
		snprintf(tmp, sizeof tmp, "%s/.get-%03d.tmp", argv[6], i);
		snprintf(dst, sizeof dst, "%s/get-%03d.bin", argv[6], i);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			perror(tmp);
			return 1;
		}
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &fd);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		long code = 0;
		if (curl_easy_perform(c) != CURLE_OK ||
		    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK || code != 200) {
			fprintf(stderr, "GET %s failed (HTTP %ld)\n", url, code);
			return 1;
		}
		if (rename(tmp, dst) < 0 || close(fd) < 0) {
			perror(dst);
			return 1;
		}
		t[i] = now_ms() - a;
		curl_slist_free_all(hl);
	}
	report(t, n);
	return 0;
}
