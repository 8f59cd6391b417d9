/* test_metrics.c - the agent's /metrics text (metrics.c): every family has
 * its HELP and TYPE before its samples, histogram buckets are cumulative and
 * end in +Inf equal to _count, and values that are no duration are not
 * observed. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "metrics.h"

/* The value of the sample whose line starts with `sample ` in text; -1
 * when there is none. */
static double value(const char *text, const char *sample)
{
	size_t n = strlen(sample);

	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (strncmp(l, sample, n) == 0 && l[n] == ' ')
			return strtod(l + n + 1, NULL);
	return -1;
}

static char *render(struct cs_buf *b)
{
	cs_buf_clear(b);
	cs_metrics_render(b);
	assert_false(b->oom);
	return b->s;
}

static void histograms(void **state)
{
	struct cs_buf b = { 0 };
	(void)state;

	cs_observe(CS_H_FETCH, 0.0005);
	cs_observe(CS_H_FETCH, 0.003);
	cs_observe(CS_H_FETCH, 0.003);
	cs_observe(CS_H_FETCH, 2);
	cs_observe(CS_H_FETCH, 1e12);   /* more than any bound: +Inf only */
	cs_observe(CS_H_FETCH, -1);     /* a clock step back: 0 */
	cs_observe(CS_H_FETCH, NAN);    /* not a duration: not observed */
	char *t = render(&b);
	assert_true(value(t, "cs_fetch_seconds_bucket{le=\"0.001\"}") == 2);
	assert_true(value(t, "cs_fetch_seconds_bucket{le=\"0.0025\"}") == 2);
	assert_true(value(t, "cs_fetch_seconds_bucket{le=\"0.005\"}") == 4);
	assert_true(value(t, "cs_fetch_seconds_bucket{le=\"2.5\"}") == 5);
	assert_true(value(t, "cs_fetch_seconds_bucket{le=\"30\"}") == 5);
	assert_true(value(t, "cs_fetch_seconds_bucket{le=\"+Inf\"}") == 6);
	assert_true(value(t, "cs_fetch_seconds_count") == 6);
	assert_true(fabs(value(t, "cs_fetch_seconds_sum") - (0.0005 + 0.006 + 2 + 1e9)) < 1e-3);
	assert_non_null(strstr(t, "# HELP cs_fetch_seconds "));
	assert_non_null(strstr(t, "# TYPE cs_fetch_seconds histogram\n"));
	assert_true(value(t, "cs_replication_lag_seconds_count") == 0);
	cs_buf_free(&b);
}

static void counters_and_requests(void **state)
{
	struct cs_buf b = { 0 };
	(void)state;

	cs_count(CS_C_MISSES, 3);
	cs_count(CS_C_COUNT, 1);        /* no such counter: ignored */
	cs_gauge_set(CS_G_BACKLOG, 7);
	cs_count_request("files", "GET", 200, 1000);
	cs_count_request("files", "GET", 206, 10);
	cs_count_request("files", "GET", 404, 0);
	cs_count_request("/etc/passwd", "BREW", 999, 5);
	cs_count_request(NULL, NULL, 0, 0);
	char *t = render(&b);
	assert_true(value(t, "cs_misses_total") == 3);
	assert_true(value(t, "cs_journal_backlog") == 7);
	assert_true(value(t, "cs_http_requests_total{route=\"files\",method=\"GET\",code=\"2xx\"}") == 2);
	assert_true(value(t, "cs_http_requests_total{route=\"files\",method=\"GET\",code=\"4xx\"}") == 1);
	assert_true(value(t, "cs_http_bytes_total{route=\"files\",method=\"GET\"}") == 1010);
	/* An unknown route or method is "other", never its own text. */
	assert_true(value(t, "cs_http_requests_total{route=\"other\",method=\"other\",code=\"5xx\"}") == 2);
	assert_null(strstr(t, "passwd"));
	assert_null(strstr(t, "BREW"));
	cs_buf_free(&b);
}

/* Every line a comment or a sample; a family's HELP and TYPE come before
 * its samples, which are all together. */
static void format(void **state)
{
	struct cs_buf b = { 0 };
	char family[128] = "", done[4096] = " ";
	bool typed = false;
	(void)state;

	cs_count_request("metrics", "GET", 200, 1);
	for (char *l = render(&b), *nl; *l; l = nl + 1) {
		assert_non_null(nl = strchr(l, '\n'));
		*nl = '\0';
		char name[128];
		if (sscanf(l, "# HELP %127s ", name) == 1) {
			assert_null(strstr(done, name));        /* never a family twice */
			snprintf(family, sizeof family, "%s", name);
			strcat(done, name);
			strcat(done, " ");
			typed = false;
			continue;
		}
		if (sscanf(l, "# TYPE %127s ", name) == 1) {
			assert_string_equal(name, family);
			typed = true;
			continue;
		}
		assert_true(typed);
		assert_int_equal(strncmp(l, family, strlen(family)), 0);
		const char *rest = l + strlen(family);
		assert_true(*rest == ' ' || *rest == '{' || *rest == '_');
	}
	cs_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(histograms),
		cmocka_unit_test(counters_and_requests),
		cmocka_unit_test(format),
	};
	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
