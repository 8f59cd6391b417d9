/*
 * cmd_node.c - `cs-replicate node drain|undrain|remove NAME`: the
 * operator's say over a node's part in the cluster.
 *
 *   drain    its copies stop counting toward CS_REPLICAS and it takes no
 *            new ones; the agents' repair makes copies elsewhere while it
 *            goes on serving.  --wait: until no file depends on it.
 *   undrain  back to active (also for a removed node: its copies are then
 *            the cluster's again once `cs-replicate verify` on it has
 *            recorded them).
 *   remove   out of the cluster: neither read from nor pushed to, its
 *            holder records deleted.  Refused while a file would be left
 *            with fewer than CS_REPLICAS counting copies, unless --force.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "health.h"
#include "nodes.h"
#include "tool.h"

static volatile sig_atomic_t interrupted;

static void on_int(int sig)
{
	(void)sig;
	interrupted = 1;
}

static const struct cs_opt drain_opts[] = {
	{ "--wait", NULL, "follow the drain until no file depends on the node", NULL },
	{ "--timeout", "SECONDS", "with --wait: give up after this long (default 0: never)",
	  cs_check_seconds },
	{ NULL },
}, no_opts[] = { { NULL } }, remove_opts[] = {
	{ "--force", NULL, "remove it even if files are left short of copies", NULL },
	{ NULL },
};

const struct cs_usage cs_usage_node[3] = {
	{ "node drain", "NAME", 1, 1,
	  "Stop NAME's copies counting and send it no new ones; repair copies its files\n"
	  "elsewhere while it goes on serving.", drain_opts },
	{ "node undrain", "NAME", 1, 1,
	  "Make NAME active again, after a drain or a removal.", no_opts },
	{ "node remove", "NAME", 1, 1,
	  "Take NAME out of the cluster and delete its holder records; refused while a file\n"
	  "would be left with fewer than CS_REPLICAS copies that count.", remove_opts },
};

/* Node name as the registry has it now (not a node table up to 7 s old:
 * an operator acts on what is there). */
static int find(const char *name, struct cs_node *out)
{
	struct cs_node *all = calloc(CS_MAX_NODES, sizeof *all);
	int n, rc = -ENOENT;

	if (!all)
		return -ENOMEM;
	n = cs_nodes_refresh() < 0 ? -EAGAIN : cs_nodes_all(all, CS_MAX_NODES);
	for (int i = 0; i < n; i++)
		if (strcmp(all[i].name, name) == 0) {
			*out = all[i];
			rc = 0;
			break;
		}
	free(all);
	return n < 0 ? n : rc;
}

static int fail(const char *what, const char *name, int rc)
{
	char why[96];

	if (rc == -ENOENT)
		fprintf(stderr, "cs-replicate node %s: no node named '%s' (cs-replicate status lists them)\n",
			what, name);
	else
		fprintf(stderr, "cs-replicate node %s %s: %s\n", what, name,
			cs_registry_why(rc, why));
	return 1;
}

/* cs_health_dependents, without the error line each batch stopped at its
 * time limit would log (it is done again in halves; a real failure is
 * said by the caller). */
static int dependents(uint32_t node, uint64_t *n)
{
	int level = cs_log_level, rc;

	cs_log_level = -1;
	rc = cs_health_dependents(node, n);
	cs_log_level = level;
	return rc;
}

/* Until node id has no dependent file, or timeout_s passes (0: forever).
 * Each look counts the node's copies again, in batches: at a million
 * copies that takes seconds, and the looks follow each other. */
static int wait_drained(const struct cs_node *x, long timeout_s)
{
	struct cs_progress p;
	char what[CS_NAME_MAX + 16];
	int64_t start = cs_clock_ms();
	uint64_t left = 0, first = 0;
	int rc;

	/* Its files no longer depending on it, out of those that did. */
	snprintf(what, sizeof what, "drain %s", x->name);
	cs_progress_init(&p, what, "files");
	p.no_bytes = true;
	signal(SIGINT, on_int);
	for (;;) {
		if ((rc = dependents(x->id, &left)) < 0) {
			cs_progress_end(&p);
			return fail("drain", x->name, rc);
		}
		if (!first)
			first = left;
		p.total = first;
		p.done = first > left ? first - left : 0;
		cs_progress_show(&p, true);
		if (left == 0 || interrupted ||
		    (timeout_s && cs_clock_ms() - start >= timeout_s * 1000))
			break;
		usleep(500 * 1000);
	}
	cs_progress_end(&p);
	if (left) {
		fprintf(stderr, "cs-replicate node drain: %s: %" PRIu64 " files still have fewer than %d "
				"copies elsewhere after %.0f s%s; still draining\n", x->name, left,
			cs_cfg.replicas, (cs_clock_ms() - start) / 1000.0,
			interrupted ? " (interrupted)" : "");
		return 1;
	}
	printf("%s is drained: every file it holds has %d copies on other nodes; "
	       "`cs-replicate node remove %s` loses nothing\n", x->name, cs_cfg.replicas, x->name);
	return 0;
}

static int drain(const struct cs_node *x, bool wait, long timeout_s)
{
	uint64_t dep = 0;
	int rc;

	if (x->state == CS_NODE_REMOVED) {
		fprintf(stderr, "cs-replicate node drain: %s is removed; `node undrain` first\n", x->name);
		return 1;
	}
	if ((rc = cs_nodes_set_state(x->name, CS_NODE_DRAINING)) < 0)
		return fail("drain", x->name, rc);
	/* Now, not at the agents' next pass. */
	cs_repair_kick_all(cs_cfg.repair_rate);
	if (dependents(x->id, &dep) == 0)
		printf("%s is draining: %" PRIu64 " files it holds are being copied to other nodes "
		       "(at CS_REPAIR_RATE per node); it goes on serving meanwhile\n", x->name, dep);
	return wait ? wait_drained(x, timeout_s) : 0;
}

static int removal(const struct cs_node *x, bool force)
{
	struct cs_buf q = { 0 };
	uint64_t dep = 0;
	int rc;

	if ((rc = dependents(x->id, &dep)) < 0)
		return fail("remove", x->name, rc);
	if (dep && !force) {
		fprintf(stderr, "cs-replicate node remove: %" PRIu64 " files would be left with fewer "
				"than %d copies that count; `cs-replicate node drain %s --wait` first "
				"(or --force to remove it anyway)\n", dep, cs_cfg.replicas, x->name);
		return 1;
	}
	if ((rc = cs_nodes_set_state(x->name, CS_NODE_REMOVED)) < 0)
		return fail("remove", x->name, rc);
	cs_sql_fmt(&q, "DELETE FROM replicas WHERE node_id=%" PRIu32, x->id);
	if ((rc = cs_db_query(&q, NULL)) < 0)
		return fail("remove", x->name, rc);
	printf("%s removed: it is no longer read from or pushed to, and its holder records are "
	       "gone%s\n", x->name,
	       x->up ? "; its agent still runs: stop it (cs-replicate serve) on that machine" : "");
	if (dep)
		printf("(%" PRIu64 " files had fewer than %d copies elsewhere; repair is making them "
		       "from what is left)\n", dep, cs_cfg.replicas);
	cs_repair_kick_all(cs_cfg.repair_rate);
	return 0;
}

int cs_cmd_node(const struct cs_args *a)
{
	const char *name = a->arg[0];
	struct cs_node x;
	int rc;

	if ((rc = find(name, &x)) < 0)
		return fail(a->u->name + 5, name, rc);
	if (a->u == &cs_usage_node[0])
		return drain(&x, cs_args_opt(a, "--wait") != NULL, cs_args_seconds(a, "--timeout", 0));
	if (a->u == &cs_usage_node[2])
		return removal(&x, cs_args_opt(a, "--force") != NULL);
	if ((rc = cs_nodes_set_state(x.name, CS_NODE_ACTIVE)) < 0)
		return fail("undrain", x.name, rc);
	printf("%s is active%s\n", x.name, x.state == CS_NODE_REMOVED
	       ? "; run `cs-replicate verify` on it to record the copies it still has" : "");
	return 0;
}
