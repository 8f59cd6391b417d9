/*
 * record.c - a file's registry record as memcached holds it, and the keys.
 *
 *   "F <id> <version> <size> <mtime_ns> <sha256> <deleted> <h1,h2,...|->"
 *   "N"  (not in the cluster)
 *
 * Decoding refuses anything that is not exactly such a record, byte for
 * byte as cs_record_encode writes it: memcached is a cache anyone who
 * reaches it can write, and a bad record must be asked of MySQL rather
 * than trusted.  For the same reason every value the agent stores there
 * carries a seal (cs_seal) made with the cluster secret, and a value
 * without the right one is never used.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "record.h"
#include "sign.h"

void cs_path_hash(const char *ns, const char *rel, unsigned char h[CS_SHA256_LEN])
{
	char stack[512], *buf = stack;
	size_t nl = strlen(ns) + 1, rl = strlen(rel);

	if (nl + rl > sizeof stack && !(buf = malloc(nl + rl))) {
		memset(h, 0, CS_SHA256_LEN);
		return;
	}
	memcpy(buf, ns, nl);            /* with its NUL */
	memcpy(buf + nl, rel, rl);
	cs_sha256_buf(buf, nl + rl, h);
	if (buf != stack)
		free(buf);
}

void cs_record_key(const unsigned char h[CS_SHA256_LEN], char key[CS_KEY_MAX])
{
	memcpy(key, "cs1:", 4);
	cs_hex(h, CS_SHA256_LEN, key + 4);
}

int cs_record_encode(const struct cs_file *f, char *out, size_t outsz)
{
	char sha[CS_SHA256_HEX];
	int n;

	cs_hex(f->sha256, CS_SHA256_LEN, sha);
	n = snprintf(out, outsz, "F %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRId64 " %s %d ",
		     f->id, f->version, f->size, f->mtime_ns, sha, f->deleted ? 1 : 0);
	if (n < 0 || (size_t)n >= outsz)
		return -ENOSPC;
	if (f->nholders == 0) {
		if ((size_t)n + 2 > outsz)
			return -ENOSPC;
		out[n++] = '-';
	}
	for (int i = 0; i < f->nholders; i++) {
		int m = snprintf(out + n, outsz - n, "%s%" PRIu32, i ? "," : "", f->holder[i]);
		if (m < 0 || (size_t)(n + m) >= outsz)
			return -ENOSPC;
		n += m;
	}
	out[n] = '\0';
	return n;
}

int cs_record_encode_absent(char *out, size_t outsz)
{
	if (outsz < 2)
		return -ENOSPC;
	out[0] = 'N';
	out[1] = '\0';
	return 1;
}

/*
 * A number in s[0, n) exactly as the encoder writes it (PRIu64, PRId64 with
 * sign): digits, no leading zero, no '+', no "-0".  Into *u, or *i when
 * sign.
 */
static bool number(const char *s, size_t n, bool sign, uint64_t *u, int64_t *i)
{
	char buf[24];
	size_t neg = sign && n && s[0] == '-';

	if (n == neg || n >= sizeof buf || (s[neg] == '0' && (n > neg + 1 || neg)))
		return false;
	for (size_t k = neg; k < n; k++)
		if (s[k] < '0' || s[k] > '9')
			return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return sign ? cs_parse_i64(buf, i) : cs_parse_u64(buf, u);
}

/* The checksum as cs_hex writes it: 64 lowercase hex digits. */
static bool checksum(const char *s, size_t n, unsigned char out[CS_SHA256_LEN])
{
	char hex[CS_SHA256_HEX];

	if (n != CS_SHA256_HEX - 1)
		return false;
	for (size_t k = 0; k < n; k++)
		if (!((s[k] >= '0' && s[k] <= '9') || (s[k] >= 'a' && s[k] <= 'f')))
			return false;
	memcpy(hex, s, n);
	hex[n] = '\0';
	return cs_unhex(hex, out, CS_SHA256_LEN) == 0;
}

/* "-", or node ids from 1 joined by ','. */
static bool holders(const char *s, size_t n, struct cs_file *f)
{
	if (n == 1 && s[0] == '-')
		return true;
	for (const char *p = s, *end = s + n;;) {
		const char *comma = memchr(p, ',', end - p), *e = comma ? comma : end;
		uint64_t id;

		if (!number(p, e - p, false, &id, NULL) || id == 0 || id > UINT32_MAX ||
		    f->nholders == CS_MAX_HOLDERS)
			return false;
		f->holder[f->nholders++] = (uint32_t)id;
		if (!comma)
			return true;
		p = comma + 1;
	}
}

int cs_record_decode(const char *in, size_t len, struct cs_file *f)
{
	enum { KIND, ID, VERSION, SIZE, MTIME, SHA, DELETED, HOLDERS, FIELDS };
	const char *field[FIELDS], *end = in + len, *p = in;
	size_t flen[FIELDS];

	if (len == 1 && in[0] == 'N')
		return 1;
	/* Fields apart by one space each, no more and no fewer. */
	for (int k = 0; k < FIELDS; k++) {
		const char *sp = memchr(p, ' ', end - p);
		if (!sp != (k == FIELDS - 1))
			return -EINVAL;
		field[k] = p;
		flen[k] = (sp ? sp : end) - p;
		p = sp ? sp + 1 : end;
	}
	memset(f, 0, sizeof *f);
	if (flen[KIND] != 1 || field[KIND][0] != 'F' ||
	    !number(field[ID], flen[ID], false, &f->id, NULL) ||
	    !number(field[VERSION], flen[VERSION], false, &f->version, NULL) ||
	    !number(field[SIZE], flen[SIZE], false, &f->size, NULL) ||
	    !number(field[MTIME], flen[MTIME], true, NULL, &f->mtime_ns) ||
	    !checksum(field[SHA], flen[SHA], f->sha256) ||
	    flen[DELETED] != 1 || (field[DELETED][0] != '0' && field[DELETED][0] != '1') ||
	    !holders(field[HOLDERS], flen[HOLDERS], f))
		return -EINVAL;
	f->deleted = field[DELETED][0] == '1';
	return 0;
}

bool cs_file_holds(const struct cs_file *f, uint32_t node)
{
	for (int i = 0; i < f->nholders; i++)
		if (f->holder[i] == node)
			return true;
	return false;
}

void cs_file_add_holder(struct cs_file *f, uint32_t node)
{
	if (!cs_file_holds(f, node) && f->nholders < CS_MAX_HOLDERS)
		f->holder[f->nholders++] = node;
}

/* HMAC over "cs-mc1\n" key "\n" expires "\n" value. */
static int seal_mac(const unsigned char *secret, size_t secret_len, const char *key,
		    const char *val, size_t len, int64_t expires, unsigned char mac[CS_SHA256_LEN])
{
	char head[CS_KEY_MAX + 48], stack[1024], *msg = stack;
	int h = snprintf(head, sizeof head, "cs-mc1\n%s\n%" PRId64 "\n", key, expires);
	int rc;

	if (h < 0 || (size_t)h >= sizeof head)
		return -ENOSPC;
	if (h + len > sizeof stack && !(msg = malloc(h + len)))
		return -ENOMEM;
	memcpy(msg, head, h);
	memcpy(msg + h, val, len);
	rc = cs_hmac(secret, secret_len, msg, h + len, mac);
	if (msg != stack)
		free(msg);
	return rc;
}

int cs_seal(const unsigned char *secret, size_t secret_len, const char *key, const char *val,
	    size_t len, int64_t expires, char *out, size_t outsz)
{
	unsigned char mac[CS_SHA256_LEN];
	char hex[CS_SHA256_HEX];
	int rc = seal_mac(secret, secret_len, key, val, len, expires, mac), n;

	if (rc < 0)
		return rc;
	cs_hex(mac, CS_SHA256_LEN, hex);
	if (len >= outsz)
		return -ENOSPC;
	memmove(out, val, len);
	n = snprintf(out + len, outsz - len, "\n~%" PRId64 " %s", expires, hex);
	if (n < 0 || (size_t)n >= outsz - len)
		return -ENOSPC;
	return (int)(len + n);
}

int cs_unseal(const unsigned char *secret, size_t secret_len, const char *key, const char *in,
	      size_t len, int64_t now, size_t *vlen)
{
	unsigned char want[CS_SHA256_LEN], got[CS_SHA256_LEN];
	const char *nl = NULL, *sp;
	char num[24], hex[CS_SHA256_HEX];
	int64_t expires;

	for (size_t i = len; i > 0; i--)
		if (in[i - 1] == '\n') {
			nl = in + i - 1;
			break;
		}
	/* "\n~" digits " " 64 hex, nothing after. */
	if (!nl || (size_t)(in + len - nl) > CS_SEAL_MAX ||
	    (size_t)(in + len - nl) < 2 + 1 + 1 + CS_SHA256_HEX - 1 || nl[1] != '~')
		return -EACCES;
	sp = in + len - (CS_SHA256_HEX - 1) - 1;
	if (*sp != ' ' || sp - (nl + 2) < 1 || (size_t)(sp - (nl + 2)) >= sizeof num)
		return -EACCES;
	memcpy(num, nl + 2, sp - (nl + 2));
	num[sp - (nl + 2)] = '\0';
	memcpy(hex, sp + 1, CS_SHA256_HEX - 1);
	hex[CS_SHA256_HEX - 1] = '\0';
	if (!cs_parse_i64(num, &expires) || cs_unhex(hex, got, CS_SHA256_LEN) < 0)
		return -EACCES;
	if (seal_mac(secret, secret_len, key, in, nl - in, expires, want) < 0 ||
	    CRYPTO_memcmp(want, got, CS_SHA256_LEN) != 0)
		return -EACCES;
	if (now > expires + CS_SEAL_GRACE)
		return -ESTALE;
	*vlen = nl - in;
	return 0;
}
