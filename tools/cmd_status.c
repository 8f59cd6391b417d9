/*
 * cmd_status.c - `cs-replicate status [--json]`: the nodes, how well the
 * cluster holds its files, and whether that is healthy.
 *
 * Healthy: every node that is not removed is up, every live file has
 * CS_REPLICAS copies that count (pinned, on up active nodes), and none is
 * without a live copy.  Exit 0 healthy, 1 not (the reasons on stderr and in
 * the JSON), or the registry could not be read.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "nodes.h"
#include "registry.h"
#include "tool.h"

#define MAX_REASONS 8

struct report {
	struct cs_node_status *nodes;
	int n, up;
	uint64_t files;
	struct cs_health_files h;
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
		add_reason(r, "%" PRIu64 " files have fewer than %d copies that count", r->h.under_replicated,
			   cs_cfg.replicas);
	if (r->h.no_live_copy)
		add_reason(r, "%" PRIu64 " files have no copy on any up node", r->h.no_live_copy);
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
	       ",\"no_live_copy\":%" PRIu64 "},\"conflicts\":%d}\n", r->h.live, r->h.under_replicated,
	       r->h.no_live_copy, r->conflicts);
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
	       r->h.under_replicated, cs_cfg.replicas, r->h.no_live_copy);
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

int cs_cmd_status(const struct cs_args *a)
{
	struct report r = { 0 };
	bool json = cs_args_opt(a, "--json") != NULL;
	int rc, cap = CS_MAX_NODES;

	if (!(r.nodes = calloc(cap, sizeof *r.nodes)))
		return 1;
	r.n = cap;
	if ((rc = cs_nodes_status(r.nodes, &r.n, &r.files)) < 0 ||
	    (rc = cs_health_files(&r.h)) < 0 ||
	    (rc = r.conflicts = cs_registry_conflicts(count_conflict, NULL)) < 0) {
		fprintf(stderr, "cs-replicate status: registry unreachable (%s)\n", strerror(-rc));
		if (json)
			printf("{\"healthy\":false,\"reasons\":[\"registry unreachable\"]}\n");
		free(r.nodes);
		return 1;
	}
	judge(&r);
	if (json)
		print_json(&r);
	else
		print_table(&r);
	for (int i = 0; i < r.nreason; i++)
		fprintf(stderr, "cs-replicate status: %s\n", r.reason[i]);
	free(r.nodes);
	return r.nreason ? 1 : 0;
}
