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

static int usage(void)
{
	fprintf(stderr, "usage: cs-replicate node drain NAME [--wait] [--timeout SECONDS]\n"
			"       cs-replicate node undrain NAME\n"
			"       cs-replicate node remove NAME [--force]\n");
	return 2;
}

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
	if (rc == -ENOENT)
		fprintf(stderr, "cs-replicate node %s: no node named '%s' (cs-replicate status lists them)\n",
			what, name);
	else
		fprintf(stderr, "cs-replicate node %s %s: registry unreachable (%s)\n", what, name,
			strerror(-rc));
	return 1;
}

/* Until node id has no dependent file, or timeout_s passes (0: forever). */
static int wait_drained(const struct cs_node *x, long timeout_s)
{
	bool tty = isatty(STDERR_FILENO);
	int64_t start = cs_clock_ms();
	uint64_t left = 0, first = 0;
	int rc;

	signal(SIGINT, on_int);
	for (;;) {
		if ((rc = cs_health_dependents(x->id, &left)) < 0)
			return fail("drain", x->name, rc);
		if (!first)
			first = left;
		if (tty)
			fprintf(stderr, "\rdraining %s: %" PRIu64 " of %" PRIu64 " files still depend on it  ",
				x->name, left, first);
		if (left == 0 || interrupted ||
		    (timeout_s && cs_clock_ms() - start >= timeout_s * 1000))
			break;
		usleep(500 * 1000);
	}
	if (tty)
		fputc('\n', stderr);
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
	if (cs_health_dependents(x->id, &dep) == 0)
		printf("%s is draining: %" PRIu64 " files it holds are being copied to other nodes "
		       "(at CS_REPAIR_RATE per node); it goes on serving meanwhile\n", x->name, dep);
	return wait ? wait_drained(x, timeout_s) : 0;
}

static int removal(const struct cs_node *x, bool force)
{
	struct cs_buf q = { 0 };
	uint64_t dep = 0;
	int rc;

	if ((rc = cs_health_dependents(x->id, &dep)) < 0)
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

int cs_cmd_node(int argc, char **argv)
{
	bool wait = false, force = false;
	long timeout_s = 0;
	struct cs_node x;
	int rc;

	if (argc < 3)
		return usage();
	for (int i = 3; i < argc; i++) {
		if (strcmp(argv[i], "--wait") == 0 && !strcmp(argv[1], "drain")) {
			wait = true;
		} else if (strcmp(argv[i], "--force") == 0 && !strcmp(argv[1], "remove")) {
			force = true;
		} else if (strcmp(argv[i], "--timeout") == 0 && !strcmp(argv[1], "drain") &&
			   i + 1 < argc) {
			char *end;
			timeout_s = strtol(argv[++i], &end, 10);
			if (*end || timeout_s < 0)
				return usage();
		} else {
			return usage();
		}
	}
	if (strcmp(argv[1], "drain") && strcmp(argv[1], "undrain") && strcmp(argv[1], "remove"))
		return usage();
	if ((rc = find(argv[2], &x)) < 0)
		return fail(argv[1], argv[2], rc);
	if (strcmp(argv[1], "drain") == 0)
		return drain(&x, wait, timeout_s);
	if (strcmp(argv[1], "remove") == 0)
		return removal(&x, force);
	if ((rc = cs_nodes_set_state(x.name, CS_NODE_ACTIVE)) < 0)
		return fail("undrain", x.name, rc);
	printf("%s is active%s\n", x.name, x.state == CS_NODE_REMOVED
	       ? "; run `cs-replicate verify` on it to record the copies it still has" : "");
	return 0;
}
