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
#define NODE "http://10.0.0.2:8081"
#define T 1700000000LL
/* python3: hmac.new(b"s3cret",
 *     b"GET\n/v1/files/img/a b.jpg\n1700000000\n-\n0\nhttp://10.0.0.2:8081", sha256) */
#define SIG "b3e975c35dc8337ae58e48730deebecfa6a014bc50411fbaf8618143ef167fc6"

static const struct cs_signed get = { .method = "GET", .path = PATH, .when = T,
				      .body_sha = "-", .length = 0, .target = NODE };

static void known_vector(void **state)
{
	(void)state;
	char sig[CS_SIGN_HEX];

	assert_int_equal(cs_sign(SECRET, 6, &get, sig), 0);
	assert_string_equal(sig, SIG);
}

/* cs_sign_verify of SIG against get with one part changed by change(). */
static int verify_changed(void (*change)(struct cs_signed *))
{
	struct cs_signed s = get;

	change(&s);
	return cs_sign_verify(SECRET, 6, &s, "1700000000", SIG, T);
}

static void other_method(struct cs_signed *s) { s->method = "HEAD"; }
static void other_path(struct cs_signed *s) { s->path = "/v1/files/img/b.jpg"; }
static void other_body(struct cs_signed *s) { s->body_sha = "abc"; }
static void longer_body(struct cs_signed *s) { s->length = 17179869184ULL; }
static void other_node(struct cs_signed *s) { s->target = "http://10.0.0.3:8081"; }
static void when_ignored(struct cs_signed *s) { s->when = 42; }

static void verify(void **state)
{
	(void)state;
	char forged[] = SIG;

	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "1700000000", SIG, T), 0);
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "1700000000", SIG, T + 300), 0);
	/* the header's time counts, not s->when */
	assert_int_equal(verify_changed(when_ignored), 0);
	/* stale and future */
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "1700000000", SIG, T + 301), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "1700000000", SIG, T - 301), -EACCES);
	/* anything changed */
	forged[10] = forged[10] == '0' ? '1' : '0';
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "1700000000", forged, T), -EACCES);
	assert_int_equal(verify_changed(other_method), -EACCES);
	assert_int_equal(verify_changed(other_path), -EACCES);
	assert_int_equal(verify_changed(other_body), -EACCES);
	assert_int_equal(verify_changed(longer_body), -EACCES);
	assert_int_equal(verify_changed(other_node), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "1700000001", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify((const unsigned char *)"other", 5, &get, "1700000000", SIG, T), -EACCES);
	/* missing or malformed parts */
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, NULL, SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "1700000000", NULL, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "17e8", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "1700000000", "b3e9", T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "99999999999999999999", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, " 1700000000", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "+1700000000", SIG, T), -EACCES);
	/* Only the digits that were signed: the same number written otherwise
	 * is not (found by tests/fuzz/fuzz_sign.c). */
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "01700000000", SIG, T), -EACCES);
	assert_int_equal(cs_sign_verify(SECRET, 6, &get, "0001700000000", SIG, T), -EACCES);
}

/* A path too long for the stack buffer signs the same way. */
static void long_path(void **state)
{
	(void)state;
	char path[3000], a[CS_SIGN_HEX], b[CS_SIGN_HEX];
	struct cs_signed s = get;

	memset(path, 'x', sizeof path - 1);
	path[sizeof path - 1] = '\0';
	s.path = path;
	assert_int_equal(cs_sign(SECRET, 6, &s, a), 0);
	assert_int_equal(cs_sign_verify(SECRET, 6, &s, "1700000000", a, T), 0);
	path[2000] = 'y';
	assert_int_equal(cs_sign(SECRET, 6, &s, b), 0);
	assert_string_not_equal(a, b);
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
		cmocka_unit_test(long_path),
		cmocka_unit_test(sha256),
	};
	return cmocka_run_group_tests_name("sign", tests, NULL, NULL);
}
