/*
 * cmd_status.c - `cs-replicate status [--json]`: the nodes, how well the
 * cluster holds its files, and whether that is healthy.
 *
 * Healthy: every node that is not removed is up, every live file has
 * CS_REPLICAS copies that count (pinned, on up active nodes), and none is
 * without a live copy.  Exit 0 healthy, 1 not (the reasons on stderr and in
 * the JSON), or the registry could not be read.
 *
 * The nodes (state, up, heartbeat, backlog) are read now: the node table is
 * small.  The files are counted exactly when that takes less than
 * CS_STATUS_EXACT_MS (a few hundred thousand files); past that, they are
 * the census's (census.c), as of its last walk, and the output says which
 * and how old.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "census.h"
#include "health.h"
#include "nodes.h"
#include "registry.h"
#include "tool.h"

#define MAX_REASONS 8

struct report {
	struct cs_node_status *nodes;
	int n, up;
	struct cs_health_files h;
	int replicas;                   /* the CS_REPLICAS h was counted with */
	bool census;                    /* h and the nodes' files are the census's */
	bool have_census;
	struct cs_census c;
	char why[128];                  /* why the census's and not exact */
	int conflicts;
	char reason[MAX_REASONS][160];
	int nreason;
};

static void count_conflict(const struct cs_conflict *c, void *arg)
{
	(void)c, (void)arg;
}

static void add_reason(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_reason(struct report *r, const char *fmt, ...)
{
	va_list ap;

	if (r->nreason == MAX_REASONS)
		return;
	va_start(ap, fmt);
	vsnprintf(r->reason[r->nreason++], sizeof r->reason[0], fmt, ap);
	va_end(ap);
}

static void judge(struct report *r)
{
	for (int i = 0; i < r->n; i++) {
		const struct cs_node *x = &r->nodes[i].node;
		if (x->up)
			r->up++;
		else if (x->state != CS_NODE_REMOVED)
			add_reason(r, "node %s is down (no heartbeat for %s)", x->name,
				   r->nodes[i].heartbeat_age < 0 ? "ever" : "over CS_DOWN_AFTER");
	}
	if (r->h.under_replicated)
		add_reason(r, "%" PRIu64 " files have fewer than %d copies that count%s",
			   r->h.under_replicated, r->replicas, r->census ? " (census)" : "");
	if (r->h.no_live_copy)
		add_reason(r, "%" PRIu64 " files have no copy on any up node%s", r->h.no_live_copy,
			   r->census ? " (census)" : "");
}

static void print_json(const struct report *r)
{
	printf("{\"healthy\":%s,\"reasons\":[", r->nreason ? "false" : "true");
	for (int i = 0; i < r->nreason; i++) {
		if (i)
			putchar(',');
		cs_json_str(stdout, r->reason[i]);
	}
	printf("],\"replicas\":%d,\"down_after\":%.3f,\"nodes\":[", cs_cfg.replicas,
	       cs_cfg.down_after_ms / 1000.0);
	for (int i = 0; i < r->n; i++) {
		const struct cs_node_status *s = &r->nodes[i];
		printf("%s{\"name\":", i ? "," : "");
		cs_json_str(stdout, s->node.name);
		printf(",\"id\":%" PRIu32 ",\"state\":\"%s\",\"up\":%s,\"zone\":", s->node.id,
		       cs_node_state_name(s->node.state), s->node.up ? "true" : "false");
		cs_json_str(stdout, s->node.zone);
		printf(",\"url\":");
		cs_json_str(stdout, s->node.url);
		if (s->heartbeat_age < 0)
			printf(",\"heartbeat_age\":null");
		else
			printf(",\"heartbeat_age\":%.3f", s->heartbeat_age);
		printf(",\"files\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"pinned\":%" PRIu64
		       ",\"backlog\":%" PRIu64 "}", s->files, s->bytes, s->pinned, s->backlog);
	}
	printf("],\"files\":{\"live\":%" PRIu64 ",\"under_replicated\":%" PRIu64
	       ",\"no_live_copy\":%" PRIu64 "},\"conflicts\":%d,\"counted\":\"%s\"", r->h.live,
	       r->h.under_replicated, r->h.no_live_copy, r->conflicts, r->census ? "census" : "exact");
	if (r->have_census) {
		printf(",\"census_age\":%.3f,\"census_by\":", r->c.age);
		cs_json_str(stdout, r->c.counted_by_name);
	} else {
		printf(",\"census_age\":null,\"census_by\":null");
	}
	printf("}\n");
}

static void print_table(const struct report *r)
{
	char bytes[32], age[32];

	printf("%-16s %-9s %-5s %-8s %-10s %9s %10s %9s %8s  %s\n", "NODE", "STATE", "", "ZONE",
	       "HEARTBEAT", "FILES", "BYTES", "COUNTING", "BACKLOG", "URL");
	for (int i = 0; i < r->n; i++) {
		const struct cs_node_status *s = &r->nodes[i];
		if (s->heartbeat_age < 0)
			snprintf(age, sizeof age, "never");
		else
			snprintf(age, sizeof age, "%.1fs ago", s->heartbeat_age);
		printf("%-16s %-9s %-5s %-8s %-10s %9" PRIu64 " %10s %9" PRIu64 " %8" PRIu64 "  %s\n",
		       s->node.name, cs_node_state_name(s->node.state), s->node.up ? "up" : "down",
		       s->node.zone[0] ? s->node.zone : "-", age, s->files,
		       cs_human_bytes(s->bytes, bytes), s->pinned, s->backlog,
		       s->node.url[0] ? s->node.url : "-");
	}
	printf("%d nodes (%d up); %" PRIu64 " live files: %" PRIu64 " with fewer than %d copies "
	       "that count, %" PRIu64 " with no live copy\n", r->n, r->up, r->h.live,
	       r->h.under_replicated, r->replicas, r->h.no_live_copy);
	if (r->census)
		printf("counted %.0f s ago by %s (census; %s)\n", r->c.age > 0 ? r->c.age : 0,
		       r->c.counted_by_name[0] ? r->c.counted_by_name : "a removed node", r->why);
	else
		printf("counted just now (exact)\n");
	printf("%d concurrent-write losers%s\n", r->conflicts,
	       r->conflicts ? " (cs-replicate conflicts)" : "");
	printf("%s\n", r->nreason ? "NOT HEALTHY" : "healthy");
}

static const struct cs_opt opts[] = {
	{ "--json", NULL, "one JSON object instead of the table", NULL },
	{ NULL },
};

const struct cs_usage cs_usage_status = {
	"status", "", 0, 0,
	"Each node, its state and how well the cluster holds its files; exit 0 when\n"
	"healthy, 1 when not (each reason on stderr).",
	opts,
};

/* The copies per node, from the exact count or the census, into the
 * rows read from the node table. */
static void apply(struct report *r, const struct cs_health_held *held, int n)
{
	for (int i = 0; i < r->n; i++)
		for (int j = 0; j < n; j++)
			if (held[j].node == r->nodes[i].node.id) {
				r->nodes[i].files = held[j].files;
				r->nodes[i].bytes = held[j].bytes;
				r->nodes[i].pinned = held[j].pinned;
			}
}

/* The files counted now, both counts within ms in all: 0, -ETIMEDOUT,
 * -EAGAIN (registry unreachable), -EIO. */
static int count_exact(struct report *r, struct cs_health_held *held, int ms)
{
	int64_t t0 = cs_clock_ms();
	int level = cs_log_level, rc;

	/* A count stopped at its limit is no error to log: the census
	 * answers instead.  What does fail is said below, once. */
	cs_log_level = -1;
	/* Which nodes count, as of now (the counts test copies against it). */
	rc = cs_nodes_refresh();
	if (rc == 0)
		rc = cs_health_files_within(&r->h, ms);
	if (rc == 0) {
		int left = ms - (int)(cs_clock_ms() - t0);
		rc = left <= 0 ? -ETIMEDOUT : cs_health_held_within(held, CS_MAX_NODES, left);
	}
	cs_log_level = level;
	if (rc < 0)
		return rc;
	apply(r, held, rc);
	r->replicas = cs_cfg.replicas;
	return 0;
}

/* The counts: exact if they can be had within CS_STATUS_EXACT_MS, else the
 * census's.  0, or 1 with the reason said. */
static int count(struct report *r, struct cs_health_held *held, bool json)
{
	int ms = cs_cfg.status_exact_ms, nheld = 0, rc = 0, crc;

	crc = cs_census_read(&r->c, held, &nheld, CS_MAX_NODES);
	r->have_census = crc == 0;
	if (crc == -EAGAIN)
		goto unreachable;
	if (ms == 0)
		snprintf(r->why, sizeof r->why, "CS_STATUS_EXACT_MS=0");
	else if (r->have_census && r->c.work_ms > ms)
		/* Its walk's statements took that long: an exact count would
		 * too, and only delay the answer. */
		snprintf(r->why, sizeof r->why, "an exact count takes over CS_STATUS_EXACT_MS "
			 "(%d ms): the census's statements took %" PRId64 " ms", ms, r->c.work_ms);
	else if ((rc = count_exact(r, held + nheld, ms)) == 0)
		return 0;
	else if (rc == -EAGAIN)
		goto unreachable;
	else
		snprintf(r->why, sizeof r->why, "%s", rc == -ETIMEDOUT ?
			 "counting exactly took over CS_STATUS_EXACT_MS" : "counting exactly failed");
	if (!r->have_census) {
		fprintf(stderr, "cs-replicate status: no census of the files yet (%s), and %s; "
				"the agents publish one when their first walk of the registry ends "
				"(seconds after they start; minutes at millions of files)\n",
			crc == -ENOENT ? "none published" :
			"is sql/migrations/005-census.sql loaded?", r->why);
		if (json) {
			char reason[192];
			snprintf(reason, sizeof reason, "no census yet, and %s", r->why);
			printf("{\"healthy\":false,\"reasons\":[");
			cs_json_str(stdout, reason);
			printf("]}\n");
		}
		return 1;
	}
	r->census = true;
	r->h = r->c.h;
	r->replicas = r->c.replicas;
	apply(r, held, nheld);
	return 0;
unreachable:
	fprintf(stderr, "cs-replicate status: registry unreachable (%s)\n", strerror(EAGAIN));
	if (json)
		printf("{\"healthy\":false,\"reasons\":[\"registry unreachable\"]}\n");
	return 1;
}

int cs_cmd_status(const struct cs_args *a)
{
	struct report r = { 0 };
	struct cs_health_held *held = NULL;
	bool json = cs_args_opt(a, "--json") != NULL;
	int rc, ret = 1;

	if (!(r.nodes = calloc(CS_MAX_NODES, sizeof *r.nodes)) ||
	    !(held = calloc(2 * CS_MAX_NODES, sizeof *held)))
		goto out;
	r.n = CS_MAX_NODES;
	if ((rc = cs_nodes_status(r.nodes, &r.n)) < 0 ||
	    (rc = r.conflicts = cs_registry_conflicts(count_conflict, NULL)) < 0) {
		char why[96];
		fprintf(stderr, "cs-replicate status: %s\n", cs_registry_why(rc, why));
		if (json)
			printf("{\"healthy\":false,\"reasons\":[\"%s\"]}\n", cs_registry_state(rc));
		goto out;
	}
	if (count(&r, held, json))
		goto out;
	judge(&r);
	if (json)
		print_json(&r);
	else
		print_table(&r);
	for (int i = 0; i < r.nreason; i++)
		fprintf(stderr, "cs-replicate status: %s\n", r.reason[i]);
	ret = r.nreason ? 1 : 0;
out:
	free(held);
	free(r.nodes);
	return ret;
}
