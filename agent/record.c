/*
 * record.c - a file's registry record as memcached holds it, and the keys.
 *
 *   "F <id> <version> <size> <mtime_ns> <sha256> <deleted> <h1,h2,...|->"
 *   "N"  (not in the cluster)
 *
 * Decoding refuses anything that is not exactly such a record: memcached is
 * a cache anyone who reaches it can write, and a bad record must be asked
 * of MySQL rather than trusted.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int cs_record_decode(const char *in, size_t len, struct cs_file *f)
{
	char buf[1024], sha[CS_SHA256_HEX + 1], holders[512];
	int deleted, used = 0;

	if (len == 1 && in[0] == 'N')
		return 1;
	if (len == 0 || len >= sizeof buf)
		return -EINVAL;
	memcpy(buf, in, len);
	buf[len] = '\0';
	memset(f, 0, sizeof *f);
	if (sscanf(buf, "F %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNd64 " %64s %d %511s%n",
		   &f->id, &f->version, &f->size, &f->mtime_ns, sha, &deleted,
		   holders, &used) != 7 || (size_t)used != len ||
	    (deleted != 0 && deleted != 1) || cs_unhex(sha, f->sha256, CS_SHA256_LEN) < 0)
		return -EINVAL;
	f->deleted = deleted;
	if (strcmp(holders, "-") == 0)
		return 0;
	for (char *p = holders; *p;) {
		char *end;
		unsigned long id = strtoul(p, &end, 10);

		if (end == p || id == 0 || id > UINT32_MAX ||
		    f->nholders == CS_MAX_HOLDERS || (*end && *end != ','))
			return -EINVAL;
		f->holder[f->nholders++] = (uint32_t)id;
		p = *end ? end + 1 : end;
	}
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
