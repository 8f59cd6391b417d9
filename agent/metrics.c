/*
 * metrics.c - the agent's counters, gauges and histograms, and their
 * Prometheus text (GET /metrics, http.c).
 *
 * Each is a fixed slot of atomics: counting never locks or allocates, so
 * every thread counts as it goes.  Histograms have fixed buckets in
 * seconds; a bucket's count is cumulative only when rendered, and a
 * histogram's _count is its +Inf bucket as rendered, so the two agree
 * however many observations land while a scrape reads them.  Every label
 * value comes from a fixed table here; they are escaped all the same, so
 * no value can break a line.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"

static const struct {
	const char *name, *help;
} counter_info[CS_C_COUNT] = {
	[CS_C_MISSES] = { "cs_misses_total", "Misses hosts asked this agent to make present." },
	[CS_C_INSTALLS] = { "cs_miss_installed_total", "Misses answered installed." },
	[CS_C_ABSENT] = { "cs_miss_absent_total", "Misses answered absent (ENOENT)." },
	[CS_C_UNAVAILABLE] = { "cs_miss_unavailable_total", "Misses answered unavailable (EIO)." },
	[CS_C_REGISTRY_ERRORS] = { "cs_registry_errors_total",
				   "MySQL statements that failed or could not be sent." },
	[CS_C_PEER_ERRORS] = { "cs_peer_errors_total", "Transfers to or from peers that failed." },
	[CS_C_REPAIR_FILES] = { "cs_repair_copies_total", "Copies repair pushed to other nodes." },
	[CS_C_REPAIR_PROMOTED] = { "cs_repair_promoted_total", "Pulled copies repair made count toward CS_REPLICAS." },
	[CS_C_REPAIR_BYTES] = { "cs_repair_bytes_total", "Bytes repair pushed." },
	[CS_C_REPAIR_FAILED] = { "cs_repair_failed_total", "Files repair could not bring to CS_REPLICAS copies." },
	[CS_C_VERIFY_FILES] = { "cs_verify_files_total", "Copies verify checked." },
	[CS_C_VERIFY_BYTES] = { "cs_verify_bytes_total", "Bytes verify read." },
	[CS_C_VERIFY_MENDED] = { "cs_verify_mended_total", "Bad or missing copies verify fetched again." },
	[CS_C_VERIFY_CHANGED] = { "cs_verify_changed_total", "Copies changed behind the library, reported." },
	[CS_C_VERIFY_REGISTERED] = { "cs_verify_registered_total", "Copies found here but not recorded, registered." },
	[CS_C_EVICTED_FILES] = { "cs_cache_evicted_files_total", "Pulled copies evicted for CS_CACHE_MAX." },
	[CS_C_EVICTED_BYTES] = { "cs_cache_evicted_bytes_total", "Bytes of pulled copies evicted." },
	[CS_C_LISTINGS] = { "cs_listings_total", "Directory listings hosts asked this agent for." },
};

static const struct {
	const char *name, *help;
} gauge_info[CS_G_COUNT] = {
	[CS_G_BACKLOG] = { "cs_journal_backlog", "Journal entries not yet replicated." },
	[CS_G_REPAIR_PENDING] = { "cs_repair_pending_files", "Files this node had to repair at its last scan." },
	[CS_G_REPAIR_PASSES] = { "cs_repair_passes", "Repair passes finished." },
	[CS_G_VERIFY_PASSES] = { "cs_verify_passes", "Verify passes finished." },
	[CS_G_VERIFY_POSITION] = { "cs_verify_pass_checked", "Copies checked in the current verify pass." },
	[CS_G_VERIFY_TOTAL] = { "cs_verify_pass_total", "Copies the current verify pass checks." },
	[CS_G_CACHE_BYTES] = { "cs_held_bytes", "Bytes of the copies this node holds." },
	[CS_G_CACHE_MAX] = { "cs_cache_max_bytes", "CS_CACHE_MAX in bytes (0: no quota)." },
};

#define SECONDS_MAX 1e9                 /* 30 years: what is more is not time */
#define NBUCKETS 14
static const double bounds[NBUCKETS] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
					 0.25, 0.5, 1, 2.5, 5, 10, 30 };
static const struct {
	const char *name, *help;
} hist_info[CS_H_COUNT] = {
	[CS_H_FETCH] = { "cs_fetch_seconds",
			 "Seconds making a missed name present took, whatever the answer "
			 "(once per transfer or lookup; askers that joined one under way "
			 "are not observed)." },
	[CS_H_LAG] = { "cs_replication_lag_seconds",
		       "Seconds from when the agent read a host's write, delete or rename "
		       "in a journal (journal lines carry no time; a new line is read at "
		       "once) to when it was replicated." },
};

static atomic_ullong counters[CS_C_COUNT];
static atomic_llong gauges[CS_G_COUNT];
static struct {
	atomic_ullong bucket[NBUCKETS + 1];     /* the last: +Inf */
	atomic_ullong sum_us;
} hists[CS_H_COUNT];

/* Requests per route, method and status class: a small fixed table. */
#define NROUTES 8
#define NMETHODS 6
static const char *const routes[NROUTES] = { "files", "index", "stats", "health", "metrics",
					     "repair", "other", NULL };
static const char *const methods[NMETHODS] = { "GET", "HEAD", "PUT", "POST", "DELETE", "other" };
static struct {
	atomic_ullong requests[5];              /* by status class 1xx..5xx */
	atomic_ullong bytes;
} reqs[NROUTES][NMETHODS];

void cs_count(enum cs_counter c, uint64_t n)
{
	if ((unsigned)c < CS_C_COUNT)
		atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

void cs_gauge_set(enum cs_gauge g, int64_t v)
{
	if ((unsigned)g < CS_G_COUNT)
		atomic_store_explicit(&gauges[g], v, memory_order_relaxed);
}

void cs_observe(enum cs_histogram h, double seconds)
{
	int b = 0;

	/* NaN would compare below every bound, and a huge value overflow the
	 * sum's conversion: neither is a duration. */
	if ((unsigned)h >= CS_H_COUNT || isnan(seconds))
		return;
	if (seconds < 0)
		seconds = 0;
	if (seconds > SECONDS_MAX)
		seconds = SECONDS_MAX;
	while (b < NBUCKETS && seconds > bounds[b])
		b++;
	atomic_fetch_add_explicit(&hists[h].bucket[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&hists[h].sum_us, (unsigned long long)(seconds * 1e6),
				  memory_order_relaxed);
}

void cs_count_request(const char *route, const char *method, unsigned status, uint64_t bytes)
{
	int r = 0, m = 0;

	while (strcmp(routes[r], "other") != 0 && !(route && strcmp(routes[r], route) == 0))
		r++;
	while (m < NMETHODS - 1 && !(method && strcmp(methods[m], method) == 0))
		m++;
	int cls = status >= 100 && status < 600 ? (int)(status / 100) - 1 : 4;
	atomic_fetch_add_explicit(&reqs[r][m].requests[cls], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&reqs[r][m].bytes, bytes, memory_order_relaxed);
}

static void put(struct cs_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct cs_buf *out, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n > 0)
		cs_buf_put(out, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* name="value", the value escaped as the text format wants: \\, \" and \n. */
static void label(struct cs_buf *out, const char *name, const char *value)
{
	put(out, "%s=\"", name);
	for (const char *v = value; *v; v++) {
		const char *esc = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
		if (esc)
			cs_buf_put(out, esc, 2);
		else
			cs_buf_put(out, v, 1);
	}
	cs_buf_put(out, "\"", 1);
}

/* A family's HELP and TYPE lines, which come before its samples. */
static void family(struct cs_buf *out, const char *name, const char *type, const char *help)
{
	put(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(struct cs_buf *out, int h)
{
	const char *name = hist_info[h].name;
	unsigned long long cum = 0;

	family(out, name, "histogram", hist_info[h].help);
	for (int b = 0; b <= NBUCKETS; b++) {
		cum += atomic_load(&hists[h].bucket[b]);
		if (b < NBUCKETS)
			put(out, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[b], cum);
		else
			put(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
	}
	put(out, "%s_sum %.6f\n%s_count %llu\n", name, atomic_load(&hists[h].sum_us) / 1e6, name,
	    cum);
}

/* One sample of a per-route family: name{route,method[,code]} v. */
static void route_sample(struct cs_buf *out, const char *name, int r, int m, int cls,
			 unsigned long long v)
{
	put(out, "%s{", name);
	label(out, "route", routes[r]);
	cs_buf_put(out, ",", 1);
	label(out, "method", methods[m]);
	if (cls >= 0)
		put(out, ",code=\"%dxx\"", cls + 1);
	put(out, "} %llu\n", v);
}

void cs_metrics_render(struct cs_buf *out)
{
	for (int c = 0; c < CS_C_COUNT; c++) {
		family(out, counter_info[c].name, "counter", counter_info[c].help);
		put(out, "%s %llu\n", counter_info[c].name,
		    (unsigned long long)atomic_load(&counters[c]));
	}
	for (int g = 0; g < CS_G_COUNT; g++) {
		family(out, gauge_info[g].name, "gauge", gauge_info[g].help);
		put(out, "%s %lld\n", gauge_info[g].name, (long long)atomic_load(&gauges[g]));
	}
	for (int h = 0; h < CS_H_COUNT; h++)
		histogram(out, h);
	/* Only what happened: a route and method never asked has no line. */
	family(out, "cs_http_requests_total", "counter",
	       "Requests the peer endpoint answered, by route, method and status class.");
	for (int r = 0; routes[r]; r++)
		for (int m = 0; m < NMETHODS; m++)
			for (int k = 0; k < 5; k++) {
				unsigned long long v = atomic_load(&reqs[r][m].requests[k]);
				if (v)
					route_sample(out, "cs_http_requests_total", r, m, k, v);
			}
	family(out, "cs_http_bytes_total", "counter",
	       "Body bytes the peer endpoint moved: sent in answers to GET (a file, the "
	       "stats, these metrics), received in PUT and POST requests.");
	for (int r = 0; routes[r]; r++)
		for (int m = 0; m < NMETHODS; m++) {
			unsigned long long v = atomic_load(&reqs[r][m].bytes);
			if (v)
				route_sample(out, "cs_http_bytes_total", r, m, -1, v);
		}
}
