/*
 * sign.c - SHA-256 and the HMAC that authenticates node-to-node HTTP.
 *
 * A request is signed over "METHOD\nPATH\nTIME\nBODY_SHA256" with the shared
 * CS_SECRET.  TIME bounds replay to CS_SIGN_WINDOW seconds; the body hash
 * (or "-") binds a PUT's content to its signature.  OpenSSL's libcrypto does
 * the hashing, loaded at first use (dyn.h); without it nothing hashes and
 * every signature is refused.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cs.h"
#include "dyn.h"

void cs_sha256_hex(const unsigned char d[CS_SHA256_LEN], char out[CS_SHA256_HEX])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < CS_SHA256_LEN; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * CS_SHA256_LEN] = '\0';
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int cs_sha256_unhex(const char *hex, unsigned char d[CS_SHA256_LEN])
{
	for (int i = 0; i < CS_SHA256_LEN; i++) {
		int h = hexval(hex[2 * i]), l = h < 0 ? -1 : hexval(hex[2 * i + 1]);
		if (h < 0 || l < 0)
			return -EINVAL;
		d[i] = (unsigned char)(h << 4 | l);
	}
	return hex[2 * CS_SHA256_LEN] == '\0' ? 0 : -EINVAL;
}

/* OpenSSL 3 looks an algorithm up on every EVP_sha256() digest unless it
 * is fetched once and kept. */
static EVP_MD *sha256_md;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_init(void)
{
	if (cs_dyn_crypto() == 0)
		sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int cs_sha256_init(struct cs_sha256 *h)
{
	h->ctx = NULL;
	if (cs_dyn_crypto() < 0)
		return -EIO;
	pthread_once(&md_once, md_init);
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx)
		return -ENOMEM;
	if (!EVP_DigestInit_ex(h->ctx, sha256_md ? sha256_md : EVP_sha256(), NULL)) {
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

/* The signature into out; 0, or -errno when none could be made. */
static int sign(const unsigned char *secret, size_t secret_len, const char *method,
		const char *path, long long when, const char *body_sha, char out[CS_SIGN_HEX])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char head[64];
	int n;

	if (cs_dyn_crypto() < 0)
		return -EIO;
	n = snprintf(head, sizeof head, "\n%lld\n", when);
	size_t plen = strlen(path), mlen = strlen(method), blen = strlen(body_sha);
	size_t total = mlen + 1 + plen + n + blen;
	char stackbuf[1024], *msg = total <= sizeof stackbuf ? stackbuf : malloc(total);

	if (!msg)
		return -ENOMEM;
	char *w = msg;
	memcpy(w, method, mlen), w += mlen;
	*w++ = '\n';
	memcpy(w, path, plen), w += plen;
	memcpy(w, head, n), w += n;
	memcpy(w, body_sha, blen), w += blen;
	unsigned char *ok = HMAC(EVP_sha256(), secret, (int)secret_len, (unsigned char *)msg,
				 w - msg, mac, &maclen);
	if (msg != stackbuf)
		free(msg);
	if (!ok || maclen != CS_SHA256_LEN)
		return -EIO;
	cs_sha256_hex(mac, out);
	return 0;
}

void cs_sign(const unsigned char *secret, size_t secret_len, const char *method,
	     const char *path, long long when, const char *body_sha,
	     char out[CS_SIGN_HEX])
{
	if (sign(secret, secret_len, method, path, when, body_sha, out) < 0) {
		memset(out, '0', CS_SIGN_HEX - 1);      /* refused by every peer */
		out[CS_SIGN_HEX - 1] = '\0';
	}
}

int cs_sign_verify(const unsigned char *secret, size_t secret_len,
		   const char *method, const char *path, const char *when,
		   const char *body_sha, const char *sig, long long now)
{
	char want[CS_SIGN_HEX];
	char *end;
	long long t;

	if (!when || !sig || !*when)
		return -EACCES;
	errno = 0;
	t = strtoll(when, &end, 10);
	if (*end || errno || t < now - CS_SIGN_WINDOW || t > now + CS_SIGN_WINDOW)
		return -EACCES;
	if (strlen(sig) != CS_SIGN_HEX - 1)
		return -EACCES;
	if (sign(secret, secret_len, method, path, t, body_sha ? body_sha : "-", want) < 0)
		return -EACCES;
	return CRYPTO_memcmp(want, sig, CS_SIGN_HEX - 1) == 0 ? 0 : -EACCES;
}
