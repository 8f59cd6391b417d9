/* test_record.c - the records memcached holds for the registry: they must
 * round-trip exactly, and anything else must be refused rather than trusted. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "record.h"

static struct cs_file sample(int holders)
{
	struct cs_file f = { .id = 42, .version = 7, .size = 123904,
			     .mtime_ns = 1764000000123456789LL, .deleted = false };
	for (int i = 0; i < CS_SHA256_LEN; i++)
		f.sha256[i] = (unsigned char)(i * 7 + 1);
	for (int i = 0; i < holders; i++)
		f.holder[f.nholders++] = 100 + i;
	return f;
}

static void round_trip(void **state)
{
	(void)state;
	char buf[1024];
	int counts[] = { 0, 1, 3, CS_MAX_HOLDERS };

	for (size_t k = 0; k < sizeof counts / sizeof *counts; k++) {
		struct cs_file f = sample(counts[k]), g;
		int n = cs_record_encode(&f, buf, sizeof buf);
		assert_true(n > 0);
		assert_int_equal(cs_record_decode(buf, n, &g), 0);
		assert_int_equal(g.id, 42);
		assert_int_equal(g.version, 7);
		assert_int_equal(g.size, 123904);
		assert_int_equal(g.mtime_ns, 1764000000123456789LL);
		assert_memory_equal(g.sha256, f.sha256, CS_SHA256_LEN);
		assert_false(g.deleted);
		assert_int_equal(g.nholders, counts[k]);
		assert_memory_equal(g.holder, f.holder, counts[k] * sizeof *f.holder);
	}
	/* The extremes of every number. */
	struct cs_file x = sample(2), y;
	x.id = x.version = x.size = UINT64_MAX;
	x.mtime_ns = INT64_MIN;
	x.holder[0] = UINT32_MAX;
	int m = cs_record_encode(&x, buf, sizeof buf);
	assert_int_equal(cs_record_decode(buf, m, &y), 0);
	assert_true(y.id == UINT64_MAX && y.size == UINT64_MAX && y.mtime_ns == INT64_MIN);
	assert_int_equal(y.holder[0], UINT32_MAX);
	x.mtime_ns = INT64_MAX;
	m = cs_record_encode(&x, buf, sizeof buf);
	assert_int_equal(cs_record_decode(buf, m, &y), 0);
	assert_true(y.mtime_ns == INT64_MAX);

	struct cs_file t = sample(0), g;
	t.deleted = true;
	int n = cs_record_encode(&t, buf, sizeof buf);
	assert_int_equal(cs_record_decode(buf, n, &g), 0);
	assert_true(g.deleted);
}

static void absent(void **state)
{
	(void)state;
	char buf[8];
	struct cs_file f;
	int n = cs_record_encode_absent(buf, sizeof buf);

	assert_int_equal(cs_record_decode(buf, n, &f), 1);
}

static void too_small_buffer(void **state)
{
	(void)state;
	char buf[40];
	struct cs_file f = sample(3);

	assert_int_equal(cs_record_encode(&f, buf, sizeof buf), -ENOSPC);
}

static void refuses_garbage(void **state)
{
	(void)state;
	static const char sha[] = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
	char good[256], bad[256];
	struct cs_file f;
	int n0;
	const char *cases[] = {
		"", "X", "N ", "F", "F 1 2 3 4", "F 1 2 3 4 %s 0",
		"F 1 2 3 4 %s 2 -",             /* deleted must be 0 or 1 */
		"F 1 2 3 4 %s 0 1,,2",
		"F 1 2 3 4 %s 0 0",             /* node ids start at 1 */
		"F 1 2 3 4 %s 0 1 trailing",
		"F x 2 3 4 %s 0 -",
		"F 1 2 3 4 %.60s 0 -",          /* short checksum */
		"F 1 2 3 4 %.63sz 0 -",         /* not hex */
		/* Not byte for byte what the encoder writes (sscanf took all of
		 * these; found by tests/fuzz/fuzz_record.c): */
		"F 1 2 3 4 %s 0 100,050",       /* a leading zero */
		"F 01 2 3 4 %s 0 -",
		"F 1 2 3 -0 %s 0 -",
		"F -1 2 3 4 %s 0 -",            /* a sign: 2^64 - 1 */
		"F +1 2 3 4 %s 0 -",
		"F 1 2 3 4 %s 0 -4294967295",   /* node 1, wrapped */
		"F 1 2 3 4 %s 0 +5",
		"F 1 2 3 4 %s 0 5,",            /* a trailing comma */
		"F  1 2 3 4 %s 0 -",            /* two spaces */
		"F1 2 3 4 %s 0 -",              /* none */
		"F 1 2 3 4 %s1 -",              /* the flag run into the checksum */
		"F 1 2 3 4 %s 0-",
		"F 1 2 3 4 %s 0 - ",
		" F 1 2 3 4 %s 0 -",
		"F 1\t2 3 4 %s 0 -",
		"F 1 2 3 4 %s 00 -",
	};

	snprintf(good, sizeof good, "F 1 2 3 4 %s 0 5,6", sha);
	assert_int_equal(cs_record_decode(good, strlen(good), &f), 0);
	assert_int_equal(f.nholders, 2);
	/* a checksum in capitals, and a NUL inside a number */
	for (char *p = strstr(good, "0a0b"); *p; p++)
		*p = *p >= 'a' && *p <= 'f' ? *p - 32 : *p;
	assert_int_equal(cs_record_decode(good, strlen(good), &f), -EINVAL);
	n0 = snprintf(good, sizeof good, "F 1 2 3 4 %s 0 26", sha);
	good[n0 - 1] = '\0';
	assert_int_equal(cs_record_decode(good, n0, &f), -EINVAL);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		snprintf(bad, sizeof bad, cases[i], sha);
		if (cs_record_decode(bad, strlen(bad), &f) != -EINVAL)
			fail_msg("accepted bad record '%s'", bad);
	}
	/* more holders than a record may carry */
	int n = snprintf(bad, sizeof bad, "F 1 2 3 4 %s 0 ", sha);
	for (int i = 1; i <= CS_MAX_HOLDERS + 1; i++)
		n += snprintf(bad + n, sizeof bad - n, "%s%d", i > 1 ? "," : "", i);
	assert_int_equal(cs_record_decode(bad, strlen(bad), &f), -EINVAL);
}

static void keys(void **state)
{
	(void)state;
	char a[CS_KEY_MAX], b[CS_KEY_MAX], c[CS_KEY_MAX];
	unsigned char h[CS_SHA256_LEN];

	cs_path_hash("img", "a/b.jpg", h);
	cs_record_key(h, a);
	/* python3: hashlib.sha256(b"img\0a/b.jpg").hexdigest() */
	assert_string_equal(a, "cs1:95a43b76e5a8d44ec5458663403764ae44f82a7fbaa1589a89e717ac26a8dcbd");
	cs_path_hash("img/a", "b.jpg", h);      /* the namespace boundary counts */
	cs_record_key(h, b);
	cs_path_hash("im", "ga/b.jpg", h);
	cs_record_key(h, c);
	assert_string_not_equal(a, b);
	assert_string_not_equal(a, c);
	assert_true(strlen(a) < 250);           /* memcached's key limit */
}

static void holders(void **state)
{
	(void)state;
	struct cs_file f = sample(3), full = sample(CS_MAX_HOLDERS);

	assert_true(cs_file_holds(&f, 101));
	assert_false(cs_file_holds(&f, 99));
	cs_file_add_holder(&f, 101);                    /* named already */
	assert_int_equal(f.nholders, 3);
	cs_file_add_holder(&f, 7);
	assert_int_equal(f.nholders, 4);
	assert_true(cs_file_holds(&f, 7));
	cs_file_add_holder(&full, 7);                   /* no room */
	assert_int_equal(full.nholders, CS_MAX_HOLDERS);
	assert_false(cs_file_holds(&full, 7));
}

/* A sealed value is used only with the secret, key and time it was made
 * for: a forged, altered, moved or expired one is refused. */
static void seals(void **state)
{
	(void)state;
	static const unsigned char secret[] = "0123456789abcdef-cluster";
	static const unsigned char other[] = "0123456789abcdef-another";
	const char *key = "cs1:00ff", *val = "F 1 2 3 4 abc 0 1,2";
	char out[512], bad[512];
	size_t vlen = 0;
	int n = cs_seal(secret, sizeof secret - 1, key, val, strlen(val), 1000, out, sizeof out);

	assert_true(n > (int)strlen(val));
	assert_int_equal(cs_unseal(secret, sizeof secret - 1, key, out, n, 990, &vlen), 0);
	assert_int_equal(vlen, strlen(val));
	assert_memory_equal(out, val, vlen);
	/* expired, with the grace for clocks that differ a little */
	assert_int_equal(cs_unseal(secret, sizeof secret - 1, key, out, n, 1000 + CS_SEAL_GRACE,
				   &vlen), 0);
	assert_int_equal(cs_unseal(secret, sizeof secret - 1, key, out, n,
				   1001 + CS_SEAL_GRACE, &vlen), -ESTALE);
	/* another secret, another key */
	assert_int_equal(cs_unseal(other, sizeof other - 1, key, out, n, 990, &vlen), -EACCES);
	assert_int_equal(cs_unseal(secret, sizeof secret - 1, "cs1:00fe", out, n, 990, &vlen),
			 -EACCES);
	/* any byte changed: the value, the expiry, the MAC */
	for (int i = 0; i < n; i++) {
		memcpy(bad, out, n);
		bad[i] ^= 1;
		assert_int_not_equal(cs_unseal(secret, sizeof secret - 1, key, bad, n, 990, &vlen),
				     0);
	}
	/* an unsealed record, a truncated one, one with a later expiry */
	assert_int_equal(cs_unseal(secret, sizeof secret - 1, key, val, strlen(val), 990, &vlen),
			 -EACCES);
	assert_int_equal(cs_unseal(secret, sizeof secret - 1, key, out, n - 1, 990, &vlen),
			 -EACCES);
	memcpy(bad, out, n);
	char *tilde = strstr(bad, "\n~1000 ");
	assert_non_null(tilde);
	tilde[2] = '9';
	assert_int_equal(cs_unseal(secret, sizeof secret - 1, key, bad, n, 990, &vlen), -EACCES);
	/* a newline at the very end, where the seal would start: nothing is
	 * read past the value (the fuzzer found that) */
	char *two = malloc(2);          /* exactly: AddressSanitizer sees a byte more */
	assert_non_null(two);
	memcpy(two, "F\n", 2);
	assert_int_equal(cs_unseal(secret, sizeof secret - 1, key, two, 2, 990, &vlen), -EACCES);
	free(two);
	/* no room */
	assert_int_equal(cs_seal(secret, sizeof secret - 1, key, val, strlen(val), 1000, out,
				 strlen(val) + 10), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(absent),
		cmocka_unit_test(too_small_buffer),
		cmocka_unit_test(refuses_garbage),
		cmocka_unit_test(keys),
		cmocka_unit_test(holders),
		cmocka_unit_test(seals),
	};
	return cmocka_run_group_tests_name("registry records", tests, NULL, NULL);
}
