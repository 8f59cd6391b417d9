/*
 * fuzz_sign.c - the check every signed peer request passes
 * (cs_sign_verify, agent/sign.c): it must accept the right signature and
 * nothing else.
 *
 * Two properties:
 *   - one request (method, path, X-CS-Time, body hash, body length,
 *     target node) is signed with the cluster's secret; the input replaces
 *     any of those, the signature, the secret and the clock.  Verification succeeds exactly when every
 *     one of them is byte for byte the signed one (the time as its digits
 *     were signed) and the clock is within CS_SIGN_WINDOW of that time;
 *   - any request the input makes (fields without '\n', which the
 *     callers guarantee: HTTP methods and headers hold none, decoded paths
 *     no control byte) is signed and verifies, and stops verifying when
 *     any one byte of its signature changes, or the time is written with
 *     a leading zero.
 *
 * Input: a clock byte, a flags byte, a length, then method, path, time,
 * body hash, signature, secret and target apart by NULs; the same bytes
 * also make the second request.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>

#include "fuzz.h"
#include "sign.h"

#define T0 1700000000LL
static const char secret0[] = "the cluster's secret, 32 bytes..";
static const char method0[] = "PUT", path0[] = "/v1/files/img/2026/a.jpg", when0[] = "1700000000",
		  body0[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		  target0[] = "http://10.0.0.2:8081";
#define LENGTH0 123904ULL
static char sig0[CS_SIGN_HEX];

static bool eq(const char *a, const char *b)
{
	return a && b ? strcmp(a, b) == 0 : a == b;
}

static void mutated(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	int delta = (int8_t)fuzz_byte(&in) * 4;
	uint8_t flags = fuzz_byte(&in);
	uint64_t length = fuzz_u64(&in);
	char *f[7];

	for (int i = 0; i < 7; i++)
		f[i] = fuzz_field(&in, '\0', NULL);
	/* Each field replaces the signed one when its flag is set; an absent
	 * field stands for a missing header (NULL). */
	const char *when = flags & 4 ? f[2] : when0;
	const char *sig = flags & 16 ? f[4] : sig0;
	const char *secret = flags & 32 ? (f[5] ? f[5] : "") : secret0;
	struct cs_signed s = {
		.method = flags & 1 ? (f[0] ? f[0] : "") : method0,
		.path = flags & 2 ? (f[1] ? f[1] : "") : path0,
		.body_sha = flags & 8 ? (f[3] ? f[3] : "") : body0,
		.length = flags & 64 ? length : LENGTH0,
		.target = flags & 128 ? (f[6] ? f[6] : "") : target0,
	};

	int rc = cs_sign_verify((const unsigned char *)secret, strlen(secret), &s, when, sig,
				T0 + delta);
	bool right = eq(s.method, method0) && eq(s.path, path0) && eq(when, when0) &&
		     eq(s.body_sha, body0) && s.length == LENGTH0 && eq(s.target, target0) &&
		     eq(sig, sig0) && eq(secret, secret0) &&
		     delta >= -CS_SIGN_WINDOW && delta <= CS_SIGN_WINDOW;
	FUZZ_CHECK(rc == (right ? 0 : -EACCES),
		   "method '%s' path '%s' time '%s' body '%s' length %" PRIu64 " target '%s' "
		   "sig '%s', clock %+d: got %d",
		   fuzz_show(s.method, strlen(s.method)), fuzz_show(s.path, strlen(s.path)),
		   when ? fuzz_show(when, strlen(when)) : "(none)",
		   fuzz_show(s.body_sha, strlen(s.body_sha)), s.length,
		   fuzz_show(s.target, strlen(s.target)), sig ? sig : "(none)", delta, rc);
	for (int i = 0; i < 7; i++)
		free(f[i]);
}

static void made(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	long long now = (long long)(fuzz_u64(&in) % (1ULL << 40));
	long long when = now + (int8_t)fuzz_byte(&in);
	size_t at = fuzz_byte(&in);
	uint8_t to = fuzz_byte(&in);
	uint64_t length = fuzz_u64(&in);
	char *f[5];

	for (int i = 0; i < 5; i++) {
		f[i] = fuzz_field(&in, '\0', NULL);
		if (!f[i] && !(f[i] = strdup("")))
			abort();
	}
	const char *secret = f[3];
	struct cs_signed s = { .method = f[0], .path = f[1], .when = when, .body_sha = f[2],
			       .length = length, .target = f[4] };
	if (strchr(s.method, '\n') || strchr(s.path, '\n') || strchr(s.body_sha, '\n') ||
	    strchr(s.target, '\n'))
		goto out;

	char sig[CS_SIGN_HEX], ts[32], padded[33];
	FUZZ_CHECK(cs_sign((const unsigned char *)secret, strlen(secret), &s, sig) == 0 &&
		   strlen(sig) == CS_SIGN_HEX - 1, "cs_sign failed");
	snprintf(ts, sizeof ts, "%lld", when);
	snprintf(padded, sizeof padded, "0%lld", when);
	int rc = cs_sign_verify((const unsigned char *)secret, strlen(secret), &s, ts, sig, now);
	FUZZ_CHECK(rc == 0, "method '%s' path '%s' time %s body '%s': its own signature refused",
		   fuzz_show(s.method, strlen(s.method)), fuzz_show(s.path, strlen(s.path)), ts,
		   fuzz_show(s.body_sha, strlen(s.body_sha)));
	FUZZ_CHECK(cs_sign_verify((const unsigned char *)secret, strlen(secret), &s, padded, sig,
				  now) == -EACCES,
		   "time '%s' accepted for %s", padded, ts);
	s.length = length + 1;
	FUZZ_CHECK(cs_sign_verify((const unsigned char *)secret, strlen(secret), &s, ts, sig,
				  now) == -EACCES, "another body length accepted");
	s.length = length;

	/* One byte of the signature changed, to anything else. */
	at %= CS_SIGN_HEX - 1;
	if ((char)to == sig[at] || to == 0)
		to = sig[at] == 'f' ? 'e' : sig[at] + 1;
	sig[at] = (char)to;
	FUZZ_CHECK(cs_sign_verify((const unsigned char *)secret, strlen(secret), &s, ts, sig,
				  now) == -EACCES,
		   "signature with byte %zu changed to 0x%02x accepted", at, to);
out:
	for (int i = 0; i < 5; i++)
		free(f[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct cs_signed s0 = { method0, path0, T0, body0, LENGTH0, target0 };

	if (!sig0[0] && cs_sign((const unsigned char *)secret0, strlen(secret0), &s0, sig0) < 0)
		abort();
	mutated(data, size);
	made(data, size);
	return 0;
}
