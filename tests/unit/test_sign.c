/* test_sign.c - request signatures and SHA-256: a peer accepts exactly the
 * requests signed with the cluster's secret, recently. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sign.h"

#define SECRET ((const unsigned char *)"s3cret")
#define PATH "/v1/files/img/a b.jpg"
#define T 1700000000LL
/* python3: hmac.new(b"s3cret", b"GET\n/v1/files/img/a b.jpg\n1700000000\n-", sha256) */
#define SIG "835a90b7436f2d5ef96f7229e85e208144a0aa5b0d44281da5f3b776a3ab99f6"

static void known_vector(void **state)
{
	(void)state;
	char sig[CS_SIGN_HEX];

	assert_int_equal(cs_sign(SECRET, 6, "GET", PATH, T, "-", sig), 0);
	assert_string_equal(sig, SIG);
}

static void verify(void **state)
{
	(void)state;
	char forged[] = SIG;

	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "1700000000", "-", SIG, T), 0);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "1700000000", "-", SIG, T + 300), 0);
	/* stale and future */
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "1700000000", "-", SIG, T + 301), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "1700000000", "-", SIG, T - 301), -EACCES);
	/* anything changed */
	forged[10] = forged[10] == '0' ? '1' : '0';
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "1700000000", "-", forged, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "HEAD", PATH, "1700000000", "-", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", "/v1/files/img/b.jpg", "1700000000", "-", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "1700000001", "-", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "1700000000", "abc", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify((const unsigned char *)"other", 5, "GET", PATH, "1700000000", "-", SIG, T), -EACCES);
	/* missing or malformed parts */
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, NULL, "-", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "", "-", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "1700000000", "-", NULL, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "17e8", "-", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "1700000000", "-", "835a", T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "99999999999999999999", "-", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, " 1700000000", "-", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "+1700000000", "-", SIG, T), -EACCES);
	/* Only the digits that were signed: the same number written otherwise
	 * is not (found by tests/fuzz/fuzz_sign.c). */
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "01700000000", "-", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, "GET", PATH, "0001700000000", "-", SIG, T), -EACCES);
}

static void sha256(void **state)
{
	(void)state;
	char path[] = "/tmp/cs-sha-XXXXXX", hex[CS_SHA256_HEX];
	unsigned char d[CS_SHA256_LEN], back[CS_SHA256_LEN];
	uint64_t size = 0;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "abc", 3), 3);
	assert_int_equal(cs_sha256_fd(fd, d, &size), 0);
	close(fd);
	unlink(path);
	cs_hex(d, CS_SHA256_LEN, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(size, 3);
	assert_int_equal(cs_unhex(hex, back, CS_SHA256_LEN), 0);
	assert_memory_equal(d, back, CS_SHA256_LEN);
	assert_int_equal(cs_unhex("ba78", back, CS_SHA256_LEN), -EINVAL);
	hex[5] = 'g';
	assert_int_equal(cs_unhex(hex, back, CS_SHA256_LEN), -EINVAL);
	cs_sha256_buf("abc", 3, back);
	assert_memory_equal(d, back, CS_SHA256_LEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(known_vector),
		cmocka_unit_test(verify),
		cmocka_unit_test(sha256),
	};
	return cmocka_run_group_tests_name("sign", tests, NULL, NULL);
}
