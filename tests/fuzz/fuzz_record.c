/*
 * fuzz_record.c - a file's record as memcached holds it (agent/record.c).
 * memcached is a cache anyone who reaches it can write, so the decoder
 * must refuse anything that is not exactly a record (record.c's first
 * comment).
 *
 * Two properties, both on every input:
 *   - whatever the bytes, a record decode accepts is one that
 *     cs_record_encode writes, byte for byte (encoding what was decoded
 *     gives the input back); 1 ("not in the cluster") only for "N";
 *   - any record made of the input's bytes (ids, sizes, any mtime, any
 *     checksum, 0 to CS_MAX_HOLDERS holders numbered from 1) is encoded,
 *     within exactly the room it needs and no less, and decodes to itself.
 *
 *   - the seal on values in memcached: no input is taken as sealed with
 *     the cluster secret (forging one is the attack the seal stops); any
 *     value sealed is unsealed to itself, and with any one byte changed
 *     (value, expiry or MAC) it is refused.
 *
 * Input: the raw record; the same bytes also fill the struct, and are the
 * value sealed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>

#include "fuzz.h"
#include "record.h"

static bool same(const struct cs_file *a, const struct cs_file *b)
{
	return a->id == b->id && a->version == b->version && a->size == b->size &&
	       a->mtime_ns == b->mtime_ns && !memcmp(a->sha256, b->sha256, CS_SHA256_LEN) &&
	       a->deleted == b->deleted && a->nholders == b->nholders &&
	       !memcmp(a->holder, b->holder, a->nholders * sizeof *a->holder);
}

static void raw(const uint8_t *data, size_t size)
{
	char *in = malloc(size ? size : 1), out[1024];
	struct cs_file f;

	if (!in)
		abort();
	memcpy(in, data, size);
	int rc = cs_record_decode(in, size, &f);
	FUZZ_CHECK(rc == 0 || rc == 1 || rc == -EINVAL, "'%s': rc %d", fuzz_show(in, size), rc);
	if (rc == 1)
		FUZZ_CHECK(size == 1 && in[0] == 'N', "'%s' taken for 'N'", fuzz_show(in, size));
	if (rc == 0) {
		FUZZ_CHECK(f.nholders >= 0 && f.nholders <= CS_MAX_HOLDERS, "%d holders", f.nholders);
		int n = cs_record_encode(&f, out, sizeof out);
		FUZZ_CHECK(n == (int)size && memcmp(out, in, size) == 0,
			   "accepted '%s', which is not a record: encode writes '%s'",
			   fuzz_show(in, size), n > 0 ? fuzz_show(out, n) : "(nothing)");
	}
	free(in);
}

static void made(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct cs_file f = { 0 }, g;

	f.id = fuzz_u64(&in);
	f.version = fuzz_u64(&in);
	f.size = fuzz_u64(&in);
	f.mtime_ns = (int64_t)fuzz_u64(&in);
	for (int i = 0; i < CS_SHA256_LEN; i++)
		f.sha256[i] = fuzz_byte(&in);
	uint8_t b = fuzz_byte(&in);
	f.deleted = b & 1;
	f.nholders = (b >> 1) % (CS_MAX_HOLDERS + 1);
	for (int i = 0; i < f.nholders; i++) {
		uint32_t h = (uint32_t)fuzz_u64(&in);
		f.holder[i] = h ? h : 1;
	}

	char big[1024];
	int n = cs_record_encode(&f, big, sizeof big);
	FUZZ_CHECK(n > 0 && (size_t)n == strlen(big), "encode: %d", n);

	char *tight = malloc(n + 1), *short_ = malloc(n);
	if (!tight || !short_)
		abort();
	FUZZ_CHECK(cs_record_encode(&f, tight, n + 1) == n && !strcmp(tight, big),
		   "encode into %d bytes differs", n + 1);
	FUZZ_CHECK(cs_record_encode(&f, short_, n) == -ENOSPC, "encode into %d bytes: not -ENOSPC",
		   n);
	int rc = cs_record_decode(tight, n, &g);
	FUZZ_CHECK(rc == 0 && same(&f, &g), "'%s' decodes to %d, not the record encoded",
		   fuzz_show(big, n), rc);
	free(tight);
	free(short_);
}

static const unsigned char secret[] = "fuzz-cluster-secret-0123456789";
static const char key[] = "cs1:00112233";

static void sealed(const uint8_t *data, size_t size)
{
	char *in = malloc(size ? size : 1), *out = malloc(size + CS_SEAL_MAX);
	size_t vlen = 0;

	if (!in || !out)
		abort();
	memcpy(in, data, size);
	FUZZ_CHECK(cs_unseal(secret, sizeof secret - 1, key, in, size, 0, &vlen) != 0,
		   "'%s' taken as sealed", fuzz_show(in, size));
	int n = cs_seal(secret, sizeof secret - 1, key, in, size, 1000, out, size + CS_SEAL_MAX);
	FUZZ_CHECK(n > (int)size, "seal: %d", n);
	FUZZ_CHECK(cs_unseal(secret, sizeof secret - 1, key, out, n, 999, &vlen) == 0 &&
		   vlen == size && memcmp(out, in, size) == 0, "'%s' does not unseal to itself",
		   fuzz_show(out, n));
	size_t at = size ? data[0] % (size_t)n : (size_t)n - 1;
	out[at] ^= (char)(size > 1 ? (data[1] | 1) : 1);
	FUZZ_CHECK(cs_unseal(secret, sizeof secret - 1, key, out, n, 999, &vlen) != 0,
		   "a sealed value changed at byte %zu still unseals", at);
	free(in);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	raw(data, size);
	made(data, size);
	sealed(data, size);
	return 0;
}
