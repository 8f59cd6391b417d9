/* test_upkeep.c - the small pieces of membership and repair that need no
 * servers: sizes and rates as the variables give them, the repair route,
 * repair progress as one agent says it and the command line reads it, the
 * bound on bytes per second, and the long jobs' place kept in the spool. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "rate.h"
#include "repair.h"
#include "route.h"
#include "settings.h"
#include "walk.h"

static void sizes(void **state)
{
	uint64_t v;

	(void)state;
	assert_true(cs_parse_size("0", &v) && v == 0);
	assert_true(cs_parse_size("4096", &v) && v == 4096);
	assert_true(cs_parse_size("8M", &v) && v == 8u << 20);
	assert_true(cs_parse_size("8m", &v) && v == 8u << 20);
	assert_true(cs_parse_size("512KiB", &v) && v == 512u << 10);
	assert_true(cs_parse_size("20G", &v) && v == 20ULL << 30);
	assert_true(cs_parse_size("1T", &v) && v == 1ULL << 40);
	assert_true(cs_parse_size("3B", &v) && v == 3);
	assert_false(cs_parse_size("", &v));
	assert_false(cs_parse_size("M", &v));
	assert_false(cs_parse_size("-1", &v));
	assert_false(cs_parse_size("8 M", &v));
	assert_false(cs_parse_size("8X", &v));
	assert_false(cs_parse_size("8MX", &v));
	assert_false(cs_parse_size("99999999999999999999", &v));
	assert_false(cs_parse_size("20000000T", &v));   /* over 2^64 */
}

static const char *env[16][2];

static const char *get(const char *name)
{
	for (int i = 0; env[i][0]; i++)
		if (strcmp(env[i][0], name) == 0)
			return env[i][1];
	return NULL;
}

/* Parse the agent's variables with extra = value on top of a valid set. */
static int parse_with(const char *extra, const char *value, struct cs_config *cfg, char *err)
{
	static const char *base[][2] = {
		{ "CS_PREFIXES", "img=/tmp" }, { "CS_SPOOL", "/tmp/spool" },
		{ "CS_MYSQL", "mysql://u:p@127.0.0.1:3306/cs" },
		{ "CS_SECRET", "0123456789abcdef0123" }, { "CS_NODE", "n1" },
	};
	size_t n = sizeof base / sizeof *base;

	memset(env, 0, sizeof env);
	memcpy(env, base, sizeof base);
	if (extra) {
		env[n][0] = extra;
		env[n][1] = value;
	}
	memset(cfg, 0, sizeof *cfg);
	return cs_settings_parse(cfg, get, CS_ROLE_TOOL, err, 256);
}

static void upkeep_variables(void **state)
{
	struct cs_config cfg;
	char err[256];

	(void)state;
	assert_int_equal(parse_with(NULL, NULL, &cfg, err), 0);
	assert_int_equal(cfg.down_after_ms, 15000);
	assert_true(cfg.repair_rate == 8u << 20 && cfg.verify_rate == 4u << 20 && !cfg.verify_off);
	assert_true(cfg.cache_max == 0 && cfg.cache_max_pct == 0);
	assert_int_equal(parse_with("CS_DOWN_AFTER", "2.5", &cfg, err), 0);
	assert_int_equal(cfg.down_after_ms, 2500);
	assert_int_equal(parse_with("CS_DOWN_AFTER", "0", &cfg, err), -EINVAL);
	assert_non_null(strstr(err, "CS_DOWN_AFTER"));
	assert_int_equal(parse_with("CS_REPAIR_RATE", "max", &cfg, err), 0);
	assert_true(cfg.repair_rate == 0);
	assert_false(cfg.repair_off);
	assert_int_equal(parse_with("CS_REPAIR_RATE", "off", &cfg, err), 0);
	assert_true(cfg.repair_off);
	assert_int_equal(parse_with("CS_REPAIR_RATE", "50M", &cfg, err), 0);
	assert_true(cfg.repair_rate == 50u << 20);
	assert_int_equal(parse_with("CS_REPAIR_RATE", "100", &cfg, err), -EINVAL);  /* < 4K */
	assert_non_null(strstr(err, "CS_REPAIR_RATE"));
	assert_int_equal(parse_with("CS_VERIFY_RATE", "off", &cfg, err), 0);
	assert_true(cfg.verify_off);
	assert_int_equal(parse_with("CS_CACHE_MAX", "80%", &cfg, err), 0);
	assert_int_equal(cfg.cache_max_pct, 80);
	assert_int_equal(parse_with("CS_CACHE_MAX", "20G", &cfg, err), 0);
	assert_true(cfg.cache_max == 20ULL << 30);
	assert_int_equal(parse_with("CS_CACHE_MAX", "0%", &cfg, err), -EINVAL);
	assert_int_equal(parse_with("CS_CACHE_MAX", "101%", &cfg, err), -EINVAL);
	assert_int_equal(parse_with("CS_CACHE_MAX", "lots", &cfg, err), -EINVAL);
	assert_non_null(strstr(err, "CS_CACHE_MAX"));
}

static void repair_route(void **state)
{
	struct cs_route r;

	(void)state;
	assert_int_equal(cs_route_parse("/v1/repair", &r), 0);
	assert_true(r.kind == CS_ROUTE_REPAIR && r.rel == NULL);
	assert_int_equal(cs_route_parse("/v1/repair/max", &r), 0);
	assert_string_equal(r.rel, "max");
	assert_int_equal(cs_route_parse("/v1/repair/8388608", &r), 0);
	assert_string_equal(r.rel, "8388608");
	assert_int_equal(cs_route_parse("/v1/repair/", &r), -EINVAL);
	assert_int_equal(cs_route_parse("/v1/repair/8M", &r), -EINVAL);
	assert_int_equal(cs_route_parse("/v1/repair/-1", &r), -EINVAL);
	assert_int_equal(cs_route_parse("/v1/repair/99999999999999999999", &r), -EINVAL);
	assert_int_equal(cs_route_parse("/v1/repairs", &r), -ENOENT);
	assert_string_equal(cs_route_label("/v1/repair/max"), "repair");
	assert_string_equal(cs_route_label("/v1/repairs"), "other");
}

static void progress_round_trip(void **state)
{
	struct cs_repair_progress p = { .asked = 3, .done = 2, .running = true, .rate = 8388608,
					.files = 10, .copies = 7, .promoted = 2, .bytes = 123456789012ULL,
					.failed = 1, .pending = 4 }, q;
	char buf[512];

	(void)state;
	assert_true(cs_repair_progress_format(&p, buf, sizeof buf) > 0);
	assert_int_equal(cs_repair_progress_parse(buf, &q), 0);
	assert_true(q.asked == p.asked && q.done == p.done && q.running && q.rate == p.rate &&
		    q.files == p.files && q.copies == p.copies && q.promoted == p.promoted &&
		    q.bytes == p.bytes && q.failed == p.failed && q.pending == p.pending);
	/* An unknown line (a newer agent) is skipped, the rest read. */
	assert_int_equal(cs_repair_progress_parse("running 0\nnew_thing 5\ndone 9\n", &q), 0);
	assert_true(q.done == 9 && !q.running);
	assert_int_equal(cs_repair_progress_parse("<html>", &q), -EINVAL);
	assert_int_equal(cs_repair_progress_format(&p, buf, 10), -ENOSPC);
}

static void rate_bound(void **state)
{
	struct cs_rate r;
	int stop = 0;

	(void)state;
	cs_rate_init(&r, 0);            /* no bound: never waits */
	int64_t t = cs_clock_ms();
	assert_true(cs_rate_take(&r, 1ULL << 40, &stop));
	assert_true(cs_clock_ms() - t < 50);
	cs_rate_init(&r, 100 << 20);    /* 100 MiB/s: 1 MiB owed is 10 ms */
	t = cs_clock_ms();
	assert_true(cs_rate_take(&r, 1 << 20, &stop));
	assert_true(cs_clock_ms() - t >= 9 && cs_clock_ms() - t < 500);
	stop = 1;                       /* over the bound: the stop ends the wait */
	t = cs_clock_ms();
	assert_false(cs_rate_take(&r, 1000 << 20, &stop));
	assert_true(cs_clock_ms() - t < 50);
}

/* A walk's place survives a save and a load; a missing or foreign file
 * means the start. */
static void walk_place(void **state)
{
	char dir[] = "/tmp/cs-walk.XXXXXX", path[64];
	struct cs_walk w = { .lap = 3, .after = 123456789012ULL, .done = 77, .phase = 1 }, r;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(cs_cfg.spool, sizeof cs_cfg.spool, "%s", dir);
	assert_int_equal(cs_walk_load("repair", &r), 0);
	assert_true(r.lap == 0 && r.after == 0 && r.done == 0 && r.phase == 0);
	assert_int_equal(cs_walk_save("repair", &w), 0);
	assert_int_equal(cs_walk_load("repair", &r), 0);
	assert_memory_equal(&r, &w, sizeof w);
	snprintf(path, sizeof path, "%s/repair.cursor", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs("garbage\n", f);
	fclose(f);
	assert_int_equal(cs_walk_load("repair", &r), 0);
	assert_true(r.lap == 0 && r.after == 0);
	unlink(path);
	rmdir(dir);
	cs_cfg.spool[0] = '\0';
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sizes),
		cmocka_unit_test(upkeep_variables),
		cmocka_unit_test(repair_route),
		cmocka_unit_test(progress_round_trip),
		cmocka_unit_test(rate_bound),
		cmocka_unit_test(walk_place),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
