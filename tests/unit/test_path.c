/* test_path.c - normalisation and prefix matching: which namespace and file
 * a program's path names, including ".." escapes and symlinked prefixes. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cs.h"

static void norm(const char *base, const char *path, const char *want)
{
	char out[CS_PATH_MAX];
	int n = cs_path_normalize(base, path, out, sizeof out);

	if (n < 0 || strcmp(out, want) != 0 || (size_t)n != strlen(want))
		fail_msg("normalize(%s, %s): expected '%s', got %d '%s'", base, path,
			 want, n, n < 0 ? "" : out);
}

static void normalize(void **state)
{
	(void)state;
	norm(NULL, "/srv/img/a.jpg", "/srv/img/a.jpg");
	norm(NULL, "/srv//img///a.jpg", "/srv/img/a.jpg");
	norm(NULL, "/srv/./img/./a.jpg", "/srv/img/a.jpg");
	norm(NULL, "/srv/img/x/../a.jpg", "/srv/img/a.jpg");
	norm(NULL, "/srv/img/../../../../etc/passwd", "/etc/passwd");
	norm(NULL, "/..", "/");
	norm(NULL, "/", "/");
	norm(NULL, "/srv/img/", "/srv/img");
	norm(NULL, "/srv/img/...", "/srv/img/...");
	norm(NULL, "/srv/img/..x", "/srv/img/..x");
	norm("/srv/img", "a/b.png", "/srv/img/a/b.png");
	norm("/srv/img/", "./a.png", "/srv/img/a.png");
	norm("/srv/img/sub", "../a.png", "/srv/img/a.png");
	norm("/srv/img", "../../etc/shadow", "/etc/shadow");
	norm("/", "srv/img/a", "/srv/img/a");
}

static void normalize_errors(void **state)
{
	(void)state;
	char out[16], big[CS_PATH_MAX + 10];

	assert_int_equal(cs_path_normalize(NULL, "rel", out, sizeof out), -EINVAL);
	assert_int_equal(cs_path_normalize("relbase", "rel", out, sizeof out), -EINVAL);
	assert_int_equal(cs_path_normalize(NULL, "/0123456789/abcdef", out, sizeof out),
			 -ENAMETOOLONG);
	memset(big, 'a', sizeof big - 1);
	big[0] = '/';
	big[sizeof big - 1] = '\0';
	char o2[CS_PATH_MAX];
	assert_int_equal(cs_path_normalize(NULL, big, o2, sizeof o2), -ENAMETOOLONG);
}

/* Only the normal form must fit, not the way there: a segment that ".."
 * takes away again (under a cwd near PATH_MAX) is no reason to fail.
 * Found by tests/fuzz/fuzz_path.c. */
static void too_long_only_at_the_end(void **state)
{
	(void)state;
	char out[16], base[CS_PATH_MAX], want[CS_PATH_MAX], abs[CS_PATH_MAX];

	assert_int_equal(cs_path_normalize("/0123456789abcdef", "../a", out, sizeof out), 2);
	assert_string_equal(out, "/a");
	assert_int_equal(cs_path_normalize(NULL, "/x/0123456789abcdef/../../a/b", out,
					   sizeof out), 4);
	assert_string_equal(out, "/a/b");
	assert_int_equal(cs_path_normalize("/0123456789abcdef", "../0123456789abcdef", out,
					   sizeof out), -ENAMETOOLONG);

	/* A cwd of 4080 bytes, and a file just below it reached through "..". */
	memset(base, 'd', 4080);
	base[0] = '/';
	base[4080] = '\0';
	memcpy(want, base, 4080);
	strcpy(want + 4080, "/a.jpg");
	assert_int_equal(cs_path_normalize(base, "0123456789abcdefghij/../a.jpg", abs, sizeof abs),
			 (int)strlen(want));
	assert_string_equal(abs, want);
	assert_int_equal(cs_path_normalize(base, "0123456789abcdefghij/a.jpg", abs, sizeof abs),
			 -ENAMETOOLONG);
}

static struct cs_config cfg;

static void setup_cfg(void)
{
	memset(&cfg, 0, sizeof cfg);
	cfg.nprefix = 2;
	strcpy(cfg.prefix[0].name, "img");
	strcpy(cfg.prefix[0].dir, "/srv/img");
	cfg.prefix[0].dirlen = 8;
	strcpy(cfg.prefix[0].real, "/data/img");
	cfg.prefix[0].reallen = 9;
	strcpy(cfg.prefix[1].name, "css");
	strcpy(cfg.prefix[1].dir, "/srv/www/css");
	cfg.prefix[1].dirlen = 12;
}

static void match(const char *path, const char *ns, const char *rel)
{
	char abs[CS_PATH_MAX];
	const char *r = NULL;
	const struct cs_prefix *p;

	assert_true(cs_path_normalize("/srv/www", path, abs, sizeof abs) > 0);
	p = cs_path_match(&cfg, abs, &r);
	if (!ns) {
		if (p)
			fail_msg("%s (%s): expected no namespace, got %s '%s'", path,
				 abs, p->name, r);
		return;
	}
	if (!p || strcmp(p->name, ns) != 0 || strcmp(r, rel) != 0)
		fail_msg("%s: expected %s '%s', got %s '%s'", path, ns, rel,
			 p ? p->name : "none", p ? r : "");
}

static void prefix_matching(void **state)
{
	(void)state;
	setup_cfg();
	match("/srv/img/a.jpg", "img", "a.jpg");
	match("/srv/img/2026/11/a.jpg", "img", "2026/11/a.jpg");
	match("/srv//img/./x/../a.jpg", "img", "a.jpg");
	match("css/site.css", "css", "site.css");               /* relative to cwd */
	match("/data/img/a.jpg", "img", "a.jpg");               /* resolved form */
	match("/srv/img", NULL, NULL);                          /* the dir itself */
	match("/srv/img/", NULL, NULL);
	match("/srv/img2/a.jpg", NULL, NULL);                   /* sibling */
	match("/srv/im", NULL, NULL);
	match("/srv/img/../etc/passwd", NULL, NULL);            /* escapes */
	match("/srv/img/../../etc/passwd", NULL, NULL);
	match("/etc/passwd", NULL, NULL);
	match("../img/a.jpg", "img", "a.jpg");                  /* /srv/www/../img */
}

static void rel_valid(void **state)
{
	(void)state;
	char seg[NAME_MAX + 2];

	assert_true(cs_path_rel_valid("a.jpg", 5));
	assert_true(cs_path_rel_valid("a/b/c.png", 9));
	assert_true(cs_path_rel_valid("...", 3));
	assert_true(cs_path_rel_valid(".hidden", 7));
	assert_true(cs_path_rel_valid("caf\xc3\xa9 1.jpg", 11));
	assert_false(cs_path_rel_valid("", 0));
	assert_false(cs_path_rel_valid("/etc/passwd", 11));
	assert_false(cs_path_rel_valid("..", 2));
	assert_false(cs_path_rel_valid("../x", 4));
	assert_false(cs_path_rel_valid("a/../x", 6));
	assert_false(cs_path_rel_valid("a/..", 4));
	assert_false(cs_path_rel_valid("./x", 3));
	assert_false(cs_path_rel_valid("a//b", 4));
	assert_false(cs_path_rel_valid("a/", 2));
	assert_false(cs_path_rel_valid("a\nb", 3));
	assert_false(cs_path_rel_valid("a\0b", 3));
	assert_false(cs_path_rel_valid("a\x7f", 2));
	memset(seg, 'x', sizeof seg);
	assert_true(cs_path_rel_valid(seg, NAME_MAX));
	assert_false(cs_path_rel_valid(seg, NAME_MAX + 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(normalize),
		cmocka_unit_test(normalize_errors),
		cmocka_unit_test(too_long_only_at_the_end),
		cmocka_unit_test(prefix_matching),
		cmocka_unit_test(rel_valid),
	};
	return cmocka_run_group_tests_name("path", tests, NULL, NULL);
}
