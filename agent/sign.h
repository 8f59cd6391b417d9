/*
 * sign.h - SHA-256 of files and names, and the HMAC that authenticates
 * node-to-node HTTP (sign.c, libcrypto underneath).
 */
#ifndef CS_SIGN_H
#define CS_SIGN_H

#include "cs.h"

#define CS_SIGN_WINDOW 300      /* seconds a signed request stays valid */
#define CS_SIGN_HEX CS_SHA256_HEX

/* What a request's signature covers. */
struct cs_signed {
	const char *method;
	const char *path;       /* decoded */
	long long when;         /* X-CS-Time */
	const char *body_sha;   /* hex SHA-256 of the body, or what stands for it; "-": none */
	uint64_t length;        /* the body's length as sent (Content-Length), 0 for none */
	const char *target;     /* the receiving node's CS_NODE_URL */
};

/*
 * HMAC-SHA256 over "method\npath\ntime\nbody_sha\nlength\ntarget" as
 * lowercase hex into out[CS_SIGN_HEX].  0, or -EIO when none could be made
 * (out is then refused by every peer).
 */
int cs_sign(const unsigned char *secret, size_t secret_len, const struct cs_signed *s,
	    char out[CS_SIGN_HEX]);
/* 0 when sig is s signed with secret at time `when` (the header's text,
 * which s->when is ignored for) and |now - when| <= CS_SIGN_WINDOW;
 * -EACCES otherwise. */
int cs_sign_verify(const unsigned char *secret, size_t secret_len, const struct cs_signed *s,
		   const char *when, const char *sig, long long now);

/* HMAC-SHA256 of msg[0, n) with the secret: 0, or -EIO (mac zeroed). */
int cs_hmac(const unsigned char *secret, size_t secret_len, const void *msg, size_t n,
	    unsigned char mac[CS_SHA256_LEN]);
/* Streaming SHA-256. */
struct cs_sha256 {
	void *ctx;
};
int cs_sha256_init(struct cs_sha256 *h);
void cs_sha256_update(struct cs_sha256 *h, const void *p, size_t n);
void cs_sha256_final(struct cs_sha256 *h, unsigned char d[CS_SHA256_LEN]);
void cs_sha256_free(struct cs_sha256 *h);
/* SHA-256 of a whole open file from offset 0, and its size. */
int cs_sha256_fd(int fd, unsigned char digest[CS_SHA256_LEN], uint64_t *size);
/* SHA-256 of a buffer. */
void cs_sha256_buf(const void *p, size_t n, unsigned char digest[CS_SHA256_LEN]);

#endif
