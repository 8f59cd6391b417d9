/*
 * sign.c - SHA-256 and the HMAC that authenticates node-to-node HTTP.
 *
 * A request is signed over "METHOD\nPATH\nTIME\nBODY_SHA256\nLENGTH\nTARGET"
 * with the shared CS_SECRET.  TIME bounds replay to CS_SIGN_WINDOW seconds;
 * the body hash (or "-") binds a PUT's content to its signature, LENGTH its
 * Content-Length (so a captured request cannot be replayed with a longer
 * body to trickle), TARGET the node it was meant for (so it cannot be
 * replayed to another).  OpenSSL's libcrypto does the hashing; its SHA-256
 * uses the CPU's SHA extensions.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sign.h"

/* OpenSSL 3 looks an algorithm up on every EVP_sha256() digest unless it
 * is fetched once and kept. */
static EVP_MD *sha256_md;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_init(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* SHA-256 as fetched once, or as looked up each time when that failed. */
static const EVP_MD *md(void)
{
	pthread_once(&md_once, md_init);
	return sha256_md ? sha256_md : EVP_sha256();
}

int cs_sha256_init(struct cs_sha256 *h)
{
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx)
		return -ENOMEM;
	if (!EVP_DigestInit_ex(h->ctx, md(), NULL)) {
		EVP_MD_CTX_free(h->ctx);
		h->ctx = NULL;
		return -EIO;
	}
	return 0;
}

void cs_sha256_update(struct cs_sha256 *h, const void *p, size_t n)
{
	EVP_DigestUpdate(h->ctx, p, n);
}

void cs_sha256_final(struct cs_sha256 *h, unsigned char d[CS_SHA256_LEN])
{
	unsigned int len = CS_SHA256_LEN;

	EVP_DigestFinal_ex(h->ctx, d, &len);
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

void cs_sha256_free(struct cs_sha256 *h)
{
	if (h->ctx)
		EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

void cs_sha256_buf(const void *p, size_t n, unsigned char d[CS_SHA256_LEN])
{
	unsigned int len = CS_SHA256_LEN;

	if (!EVP_Digest(p, n, d, &len, md(), NULL))
		memset(d, 0, CS_SHA256_LEN);
}

int cs_sha256_fd(int fd, unsigned char d[CS_SHA256_LEN], uint64_t *size)
{
	struct cs_sha256 h;
	char buf[65536];
	uint64_t total = 0;
	off_t off = 0;
	int rc = cs_sha256_init(&h);

	if (rc < 0)
		return rc;
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof buf, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			cs_sha256_free(&h);
			return rc;
		}
		if (n == 0)
			break;
		cs_sha256_update(&h, buf, n);
		off += n;
		total += n;
	}
	cs_sha256_final(&h, d);
	if (size)
		*size = total;
	return 0;
}

/* The text s signs into buf[size]: its length, as snprintf's. */
static int message(char *buf, size_t size, const struct cs_signed *s)
{
	return snprintf(buf, size, "%s\n%s\n%lld\n%s\n%" PRIu64 "\n%s", s->method, s->path,
			s->when, s->body_sha, s->length, s->target);
}

int cs_sign(const unsigned char *secret, size_t secret_len, const struct cs_signed *s,
	    char out[CS_SIGN_HEX])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char stackbuf[1024], *msg = stackbuf;
	int n = message(stackbuf, sizeof stackbuf, s);

	memset(out, '0', CS_SIGN_HEX - 1);      /* refused by every peer */
	out[CS_SIGN_HEX - 1] = '\0';
	if (n < 0)
		return -EIO;
	if ((size_t)n >= sizeof stackbuf) {
		if (!(msg = malloc((size_t)n + 1)))
			return -ENOMEM;
		message(msg, (size_t)n + 1, s);
	}
	unsigned char *ok = HMAC(EVP_sha256(), secret, (int)secret_len, (unsigned char *)msg,
				 (size_t)n, mac, &maclen);
	if (msg != stackbuf)
		free(msg);
	if (!ok || maclen != CS_SHA256_LEN)
		return -EIO;
	cs_hex(mac, CS_SHA256_LEN, out);
	return 0;
}

int cs_sign_verify(const unsigned char *secret, size_t secret_len, const struct cs_signed *s,
		   const char *when, const char *sig, long long now)
{
	struct cs_signed at = *s;
	char want[CS_SIGN_HEX], digits[24];
	int64_t t;

	if (!when || !sig || !cs_parse_i64(when, &t) || strlen(sig) != CS_SIGN_HEX - 1)
		return -EACCES;
	/* The time is signed as cs_sign writes it: other digits for the same
	 * number ("01700000000", "-0") are not what was signed. */
	snprintf(digits, sizeof digits, "%lld", (long long)t);
	if (strcmp(when, digits) != 0 || t < now - CS_SIGN_WINDOW || t > now + CS_SIGN_WINDOW)
		return -EACCES;
	at.when = t;
	if (cs_sign(secret, secret_len, &at, want) < 0)
		return -EACCES;
	return CRYPTO_memcmp(want, sig, CS_SIGN_HEX - 1) == 0 ? 0 : -EACCES;
}

int cs_hmac(const unsigned char *secret, size_t secret_len, const void *msg, size_t n,
	    unsigned char mac[CS_SHA256_LEN])
{
	unsigned int len = 0;

	if (!HMAC(md(), secret, (int)secret_len, msg, n, mac, &len) || len != CS_SHA256_LEN) {
		memset(mac, 0, CS_SHA256_LEN);
		return -EIO;
	}
	return 0;
}
