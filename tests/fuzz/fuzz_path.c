/*
 * fuzz_path.c - cs_path_normalize against a reference written apart from
 * it: the simplest lexical normaliser (join, split on '/', drop "" and ".",
 * let ".." pop a segment, never above the root), with all the room it
 * needs, and only then the length check.  Both must agree on every base,
 * path and buffer size: the same result, or the same error.
 *
 * The contract (cs.h, and tests/unit/test_path.c): path relative without
 * an absolute base, or a buffer under 2 bytes, is -EINVAL; a normal form
 * that does not fit out (with its NUL) is -ENAMETOOLONG; otherwise out
 * holds the normal form: "/" or "/seg/seg" with no empty, "." or ".."
 * segment, and normalising it again changes nothing.  Whatever the path,
 * out is never written past outsz.
 *
 * The normal form then goes to cs_path_match (two prefixes, one with a
 * resolved form): a match lies strictly below the prefix's directory and
 * rel is what follows its '/'.  And the path itself goes to
 * cs_path_rel_valid, checked against a reference of its own.
 *
 * Input: one byte of flags (base NULL; a small buffer), two bytes of buffer
 * size, then base '\0' path.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>

#include "cs.h"
#include "fuzz.h"

static int reference(const char *base, const char *path, char *out, size_t outsz)
{
	if (!path || outsz < 2)
		return -EINVAL;
	if (path[0] != '/' && (!base || base[0] != '/'))
		return -EINVAL;

	size_t cap = strlen(path) + (base ? strlen(base) : 0) + 3;
	char *joined = malloc(cap), *res = malloc(cap);
	size_t *starts = malloc(cap * sizeof *starts);
	size_t rlen = 0, depth = 0;

	if (!joined || !res || !starts)
		abort();
	if (path[0] == '/')
		snprintf(joined, cap, "%s", path);
	else
		snprintf(joined, cap, "%s/%s", base, path);

	for (char *seg = joined, *next; seg; seg = next) {
		char *slash = strchr(seg, '/');
		size_t len = slash ? (size_t)(slash - seg) : strlen(seg);

		next = slash ? slash + 1 : NULL;
		if (len == 0 || (len == 1 && seg[0] == '.'))
			continue;
		if (len == 2 && seg[0] == '.' && seg[1] == '.') {
			if (depth)
				rlen = starts[--depth];
			continue;
		}
		starts[depth++] = rlen;
		res[rlen++] = '/';
		memcpy(res + rlen, seg, len);
		rlen += len;
	}
	if (rlen == 0)
		res[rlen++] = '/';
	res[rlen] = '\0';

	int rc = rlen + 1 > outsz ? -ENAMETOOLONG : (int)rlen;
	if (rc >= 0)
		memcpy(out, res, rlen + 1);
	free(joined);
	free(res);
	free(starts);
	return rc;
}

static bool is_normal(const char *s, size_t n)
{
	if (n == 0 || s[0] != '/')
		return false;
	if (n == 1)
		return true;
	if (s[n - 1] == '/' || strstr(s, "//") || strstr(s, "/./") || strstr(s, "/../"))
		return false;
	/* a last segment "." or ".." */
	const char *last = strrchr(s, '/') + 1;
	return strcmp(last, ".") != 0 && strcmp(last, "..") != 0;
}

/* cs_path_rel_valid's contract, segment by segment. */
static bool reference_rel_valid(const char *rel, size_t len)
{
	if (len == 0 || len >= CS_PATH_MAX || rel[0] == '/')
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)rel[i] < 0x20 || rel[i] == 0x7f)
			return false;
	for (size_t start = 0; start <= len;) {
		const char *slash = memchr(rel + start, '/', len - start);
		size_t end = slash ? (size_t)(slash - rel) : len, seg = end - start;

		if (seg == 0 || seg > NAME_MAX || (seg == 1 && rel[start] == '.') ||
		    (seg == 2 && rel[start] == '.' && rel[start + 1] == '.'))
			return false;
		start = end + 1;
	}
	return true;
}

static struct cs_config cfg;

static void setup(void)
{
	static const char *const dirs[][3] = {
		{ "img", "/srv/img", "/data/img" },
		{ "css", "/srv/www/css", "" },
	};
	for (int i = 0; i < 2; i++) {
		struct cs_prefix *p = &cfg.prefix[i];
		strcpy(p->name, dirs[i][0]);
		strcpy(p->dir, dirs[i][1]);
		p->dirlen = strlen(p->dir);
		strcpy(p->real, dirs[i][2]);
		p->reallen = strlen(p->real);
	}
	cfg.nprefix = 2;
}

static void check_match(const char *abs)
{
	const char *rel = NULL;
	const struct cs_prefix *p = cs_path_match(&cfg, abs, &rel);

	if (!p)
		return;
	size_t dl = strlen(abs) - strlen(rel) - 1;
	bool by_dir = dl == p->dirlen && memcmp(abs, p->dir, dl) == 0;
	bool by_real = p->reallen && dl == p->reallen && memcmp(abs, p->real, dl) == 0;
	FUZZ_CHECK(rel > abs && rel[0] && rel[0] != '/' && rel[-1] == '/' && (by_dir || by_real),
		   "'%s' matched %s with rel '%s'", fuzz_show(abs, strlen(abs)), p->name,
		   fuzz_show(rel, strlen(rel)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t flags = fuzz_byte(&in);
	unsigned sz = fuzz_byte(&in) << 8;
	sz |= fuzz_byte(&in);
	size_t outsz = (flags & 2) ? sz % 80 : CS_PATH_MAX;
	char *base = fuzz_field(&in, '\0', NULL);
	char *path = fuzz_rest(&in, NULL);
	const char *b = (flags & 1) ? NULL : base;
	size_t plen = strlen(path);

	if (!cfg.nprefix)
		setup();
	FUZZ_CHECK(cs_path_rel_valid(path, plen) == reference_rel_valid(path, plen),
		   "rel_valid('%s'): reference %d", fuzz_show(path, plen),
		   reference_rel_valid(path, plen));

	/* Exactly outsz bytes (at least one, so ASan has a buffer to watch). */
	char *out = malloc(outsz ? outsz : 1), *want = malloc(outsz ? outsz : 1);
	if (!out || !want)
		abort();

	int got = cs_path_normalize(b, path, out, outsz);
	int exp = reference(b, path, want, outsz);

	FUZZ_CHECK(got == exp, "base '%s' path '%s' outsz %zu: reference %d '%s', got %d '%s'",
		   b ? fuzz_show(b, strlen(b)) : "(null)", fuzz_show(path, strlen(path)), outsz,
		   exp, exp >= 0 ? fuzz_show(want, strlen(want)) : "",
		   got, got >= 0 ? fuzz_show(out, strlen(out)) : "");
	if (got >= 0) {
		FUZZ_CHECK(strcmp(out, want) == 0, "path '%s': reference '%s', got '%s'",
			   fuzz_show(path, strlen(path)), fuzz_show(want, strlen(want)),
			   fuzz_show(out, strlen(out)));
		FUZZ_CHECK((size_t)got == strlen(out) && is_normal(out, (size_t)got),
			   "not a normal form: %d '%s'", got, fuzz_show(out, strlen(out)));

		/* Idempotent: a normal form is its own normal form, whatever base. */
		char *again = malloc(outsz);
		if (!again)
			abort();
		int n2 = cs_path_normalize("/elsewhere", out, again, outsz);
		FUZZ_CHECK(n2 == got && strcmp(again, out) == 0, "'%s' normalised again: %d '%s'",
			   fuzz_show(out, strlen(out)), n2, n2 >= 0 ? fuzz_show(again, strlen(again)) : "");
		free(again);
		check_match(out);
	}
	free(out);
	free(want);
	free(base);
	free(path);
	return 0;
}
