/*
 * record.h - what the registry knows of one file, and its encoding as a
 * memcached record (record.c).
 */
#ifndef CS_RECORD_H
#define CS_RECORD_H

#include "cs.h"

struct cs_file {
	uint64_t id;
	uint64_t version;
	uint64_t size;
	int64_t mtime_ns;
	unsigned char sha256[CS_SHA256_LEN];
	bool deleted;
	int nholders;
	uint32_t holder[CS_MAX_HOLDERS];        /* node ids holding version */
	uint64_t mine;          /* publish only: the version of this node's copy, 0: none */
};

/* The registry's key of (ns, rel): SHA-256 of "ns\0rel". */
void cs_path_hash(const char *ns, const char *rel, unsigned char h[CS_SHA256_LEN]);

/* Memcached key of a path hash: "cs1:" + its hex. */
#define CS_KEY_MAX 72
void cs_record_key(const unsigned char h[CS_SHA256_LEN], char key[CS_KEY_MAX]);
/* Encode f; the length or -ENOSPC. */
int cs_record_encode(const struct cs_file *f, char *out, size_t outsz);
/* The record of "not in the cluster". */
int cs_record_encode_absent(char *out, size_t outsz);
/* 0 and *f filled, 1 for the "not in the cluster" record, -EINVAL if bad. */
int cs_record_decode(const char *in, size_t len, struct cs_file *f);

/*
 * The seal on every value the agent puts in memcached, which anyone who can
 * reach it may write: value "\n~" expires " " hmac, the HMAC-SHA256 with the
 * cluster secret over the key, the expiry (Unix seconds) and the value.  A
 * value is used only when its seal is right for its key and it has not
 * expired (CS_SEAL_GRACE seconds of clock difference between nodes allowed),
 * so a record can be neither forged nor moved to another key, and an old
 * one replayed only within its own TTL.
 */
#define CS_SEAL_MAX (2 + 20 + 1 + CS_SHA256_HEX)
#define CS_SEAL_GRACE 30
/* Seal val[0, len) for key into out: its length, or -ENOSPC / -EIO. */
int cs_seal(const unsigned char *secret, size_t secret_len, const char *key, const char *val,
	    size_t len, int64_t expires, char *out, size_t outsz);
/* 0 with *vlen the value's length in in (sealed for key, not expired at
 * now), -EACCES (no seal, wrong seal, another key) or -ESTALE (expired). */
int cs_unseal(const unsigned char *secret, size_t secret_len, const char *key, const char *in,
	      size_t len, int64_t now, size_t *vlen);
/* Whether the record names node as holding f. */
bool cs_file_holds(const struct cs_file *f, uint32_t node);
/* f as held by node too (when there is room in the record). */
void cs_file_add_holder(struct cs_file *f, uint32_t node);

#endif
