/*
 * cs-replicate.c - the per-node agent and admin tool: command line and the
 * small subcommands.
 *
 * A subcommand is a function, a row in `commands` and a struct cs_usage
 * (tool.h) from which its usage line, its --help and its argument parsing
 * all come.  The work itself is in agent/ (the agent, the registry,
 * hashing, the journals); this file parses arguments (before the
 * configuration, so that --help needs none), loads the CS_* configuration
 * and turns results into exit statuses: 0 done, 1 failed (with the reason
 * on stderr), 2 usage or configuration error.  man/cs-replicate.1 documents
 * every command and option here, and tests/integration/test_cli.py checks
 * that the two agree.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "cs.h"
#include "nodes.h"
#include "registry.h"
#include "settings.h"
#include "sign.h"
#include "tail.h"
#include "tool.h"

static int cmd_serve(const struct cs_args *a);
static int cmd_drain(const struct cs_args *a);
static int cmd_conflicts(const struct cs_args *a);
static int cmd_help(const struct cs_args *a);

static const struct cs_opt no_opts[] = { { NULL } };

static const struct cs_usage usage_serve = {
	"serve", "", 0, 0,
	"Run this node's agent: answers the hosts' misses, replicates their writes, serves peers.",
	no_opts,
};

static const struct cs_usage usage_conflicts = {
	"conflicts", "", 0, 0,
	"List the versions lost to writes made at the same time on two nodes, and where each is kept.",
	no_opts,
};

static const struct cs_opt drain_opts[] = {
	{ "--timeout", "SECONDS", "give up after this long (default 60)", cs_check_seconds },
	{ NULL },
};

static const struct cs_usage usage_drain = {
	"drain", "", 0, 0,
	"Wait until every journal entry in CS_SPOOL is replicated (with no agent running,\n"
	"replicate them here); exit 0 when none is left, 1 when some still are.",
	drain_opts,
};

static const struct cs_usage usage_help = {
	"help", "[COMMAND]", 0, 1,
	"List the commands, or say what COMMAND does and takes.",
	no_opts,
};

/* A subcommand: its function, the configuration it needs, and its usage
 * (node has one for each of its own subcommands). */
static const struct command {
	const char *name;
	int (*run)(const struct cs_args *a);
	enum cs_role role;      /* the agent needs CS_LISTEN and CS_NODE_URL too */
	const struct cs_usage *usage;
	int nusage;
} commands[] = {
	{ "serve", cmd_serve, CS_ROLE_AGENT, &usage_serve, 1 },
	{ "import", cs_cmd_import, CS_ROLE_TOOL, &cs_usage_import, 1 },
	{ "status", cs_cmd_status, CS_ROLE_TOOL, &cs_usage_status, 1 },
	{ "node", cs_cmd_node, CS_ROLE_TOOL, cs_usage_node, 3 },
	{ "repair", cs_cmd_repair, CS_ROLE_TOOL, &cs_usage_repair, 1 },
	{ "verify", cs_cmd_verify, CS_ROLE_TOOL, &cs_usage_verify, 1 },
	{ "conflicts", cmd_conflicts, CS_ROLE_TOOL, &usage_conflicts, 1 },
	{ "drain", cmd_drain, CS_ROLE_TOOL, &usage_drain, 1 },
	{ "help", cmd_help, CS_ROLE_TOOL, &usage_help, 1 },
};

#define NCOMMANDS (sizeof commands / sizeof *commands)

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(name, commands[i].name) == 0)
			return &commands[i];
	return NULL;
}

/* What a command does, indented under its usage line. */
static void summary(FILE *f, const struct cs_usage *u)
{
	for (const char *s = u->summary; *s;) {
		int n = (int)strcspn(s, "\n");

		fprintf(f, "      %.*s\n", n, s);
		s += n + (s[n] == '\n');
	}
}

/* Every command's usage and what it does. */
static void overview(FILE *f)
{
	fprintf(f, "usage: cs-replicate COMMAND [ARGS]\n\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		for (int k = 0; k < commands[i].nusage; k++) {
			cs_usage_line(f, &commands[i].usage[k], "  ");
			summary(f, &commands[i].usage[k]);
		}
	fprintf(f, "\n`cs-replicate COMMAND --help` lists a command's options; `man cs-replicate`\n"
		   "tells everything.  Configuration comes from the CS_* environment variables.\n");
}

/* The usage lines of a command with subcommands (node), and for help what
 * each does. */
static void group_usage(FILE *f, const struct command *c, bool summaries)
{
	for (int k = 0; k < c->nusage; k++)
		cs_usage_line(f, &c->usage[k], k ? CS_USAGE_NEXT : CS_USAGE);
	if (!summaries)
		return;
	fputc('\n', f);
	for (int k = 0; k < c->nusage; k++) {
		cs_usage_line(f, &c->usage[k], "  ");
		summary(f, &c->usage[k]);
	}
	fprintf(f, "\n`cs-replicate %s SUBCOMMAND --help` lists its options.\n", c->name);
}

static int cmd_help(const struct cs_args *a)
{
	const struct command *c;

	if (a->narg == 0) {
		overview(stdout);
		return 0;
	}
	if (!(c = find_command(a->arg[0])))
		return cs_usage_error(a->u, "no command '%s'", a->arg[0]);
	if (c->nusage > 1)
		group_usage(stdout, c, true);
	else
		cs_usage_help(c->usage);
	return 0;
}

static int cmd_serve(const struct cs_args *a)
{
	(void)a;
	return cs_agent_main();
}

/* ---- conflicts -------------------------------------------------------- */

static void print_conflict(const struct cs_conflict *c, void *arg)
{
	char sha[CS_SHA256_HEX], path[CS_NAME_MAX + CS_PATH_MAX + 1];
	int *n = arg;

	if ((*n)++ == 0)
		printf("%-19s  %-40s %-8s %-10s %-16s %-18s %s\n", "DETECTED (UTC)", "PATH",
		       "LOST", "SIZE", "SHA-256", "WON BY", "KEPT AT");
	cs_hex(c->sha256, CS_SHA256_LEN, sha);
	snprintf(path, sizeof path, "%s/%s", c->ns, c->rel);
	printf("%-19s  %-40s v%-7" PRIu64 " %-10" PRIu64 " %.16s v%" PRIu64 " on %-10s %s%s%s\n",
	       c->detected, path, c->lost_version, c->size, sha, c->winner_version,
	       c->winner[0] ? c->winner : "?", c->kept_node[0] ? c->kept_node : "not kept yet",
	       c->kept_node[0] ? ":" : "", c->kept_path);
}

static int cmd_conflicts(const struct cs_args *a)
{
	int shown = 0, n;

	(void)a;
	n = cs_registry_conflicts(print_conflict, &shown);
	if (n < 0) {
		fprintf(stderr, "cs-replicate conflicts: registry unreachable\n");
		return 1;
	}
	printf("%d versions lost to concurrent writes\n", n);
	return 0;
}

/* ---- drain ---------------------------------------------------------- */

/* One entry drain is still waiting for, named on stderr (the first ten). */
static int show_pending(void *arg, struct cs_entry *e)
{
	int *shown = arg;

	if ((*shown)++ < 10)
		fprintf(stderr, "  pending: %c %s/%s%s%s\n", e->op, e->ns, e->rel,
			e->op == CS_OP_RENAME ? " -> " : "", e->op == CS_OP_RENAME ? e->rel2 : "");
	return 0;
}

/*
 * With this node's agent running, wait for it to replicate every journal
 * entry; without one, replicate them here (holding the agent lock, so
 * none starts meanwhile).
 */
static int cmd_drain(const struct cs_args *a)
{
	long timeout = cs_args_seconds(a, "--timeout", 60), pending;
	int live = 0, rc;

	if (!cs_cfg.spool[0]) {
		printf("CS_SPOOL is unset: nothing is journaled on this node\n");
		return 0;
	}
	if ((rc = cs_agent_lock()) == 0) {
		pending = cs_tail_drain(timeout > INT_MAX / 1000 ? INT_MAX : (int)(timeout * 1000));
		if (pending < 0) {
			fprintf(stderr, "cs-replicate drain: %s: %s\n", cs_cfg.spool,
				strerror((int)-pending));
			return 1;
		}
		if (pending == 0) {
			printf("nothing pending (no agent running: replicated here)\n");
			return 0;
		}
		fprintf(stderr, "cs-replicate drain: %ld entries still pending after %ld s, and no "
				"agent runs on this node; is the registry or every other node down?\n",
			pending, timeout);
		return 1;
	}
	if (rc != -EBUSY) {
		fprintf(stderr, "cs-replicate drain: %s/agent.lock: %s\n", cs_cfg.spool,
			strerror(-rc));
		return 1;
	}
	time_t deadline = time(NULL) + timeout;
	for (;;) {
		pending = cs_tail_pending(&live);
		if (pending < 0) {
			fprintf(stderr, "cs-replicate drain: %s: %s\n", cs_cfg.spool,
				strerror((int)-pending));
			return 1;
		}
		if (pending == 0) {
			printf("nothing pending (%d live writer%s)\n", live, live == 1 ? "" : "s");
			return 0;
		}
		if (time(NULL) >= deadline)
			break;
		usleep(100000);
	}
	fprintf(stderr, "cs-replicate drain: %ld entries still pending after %ld s; is the "
			"registry or every other node down?  (the agent's log says)\n",
		pending, timeout);
	int shown = 0;
	cs_tail_each_pending(show_pending, &shown);
	return 1;
}

/* The usage for node's SUBCOMMAND in argv[0], or NULL after saying why
 * (*rc 0 for help, else 2). */
static const struct cs_usage *pick(const struct command *c, int argc, char **argv, int *rc)
{
	char name[64];

	*rc = 0;
	if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
		group_usage(stdout, c, true);
		return NULL;
	}
	*rc = 2;
	if (argc == 0) {
		fprintf(stderr, "cs-replicate %s: missing SUBCOMMAND\n", c->name);
		group_usage(stderr, c, false);
		return NULL;
	}
	snprintf(name, sizeof name, "%s %s", c->name, argv[0]);
	for (int k = 0; k < c->nusage; k++)
		if (strcmp(c->usage[k].name, name) == 0)
			return &c->usage[k];
	fprintf(stderr, "cs-replicate %s: unknown subcommand '%s'\n", c->name, argv[0]);
	group_usage(stderr, c, false);
	return NULL;
}

int main(int argc, char **argv)
{
	char err[512];
	const struct command *cmd;
	const struct cs_usage *u;
	struct cs_args a;
	int skip = 2, rc;

	if (argc < 2) {
		overview(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		overview(stdout);
		return 0;
	}
	if (!(cmd = find_command(argv[1]))) {
		fprintf(stderr, "cs-replicate: unknown %s '%s'\n",
			argv[1][0] == '-' ? "option" : "command", argv[1]);
		fprintf(stderr, "usage: cs-replicate COMMAND [ARGS]   (cs-replicate help lists them)\n");
		return 2;
	}
	u = cmd->usage;
	if (cmd->nusage > 1) {
		if (!(u = pick(cmd, argc - 2, argv + 2, &rc)))
			return rc;
		skip = 3;
	}
	/* Arguments before configuration: a mistyped option is named as such,
	 * and --help works on a machine with nothing configured. */
	if ((rc = cs_args_parse(u, argc - skip, argv + skip, &a)) != 0)
		return rc;
	if (a.help) {
		cs_usage_help(u);
		return 0;
	}
	if (cmd->run == cmd_help)
		return cmd_help(&a);
	rc = cs_settings_load(&cs_cfg, cmd->role, err, sizeof err);
	if (rc == -ENOENT) {
		fprintf(stderr, "cs-replicate: CS_PREFIXES: unset; nothing to do\n");
		return 2;
	}
	if (rc < 0) {
		fprintf(stderr, "cs-replicate: %s\n", err);
		return 2;
	}
	if (cmd->run == cmd_serve) {
		if (cs_log_setup(cs_cfg.log_file, true, "cs-replicate") < 0) {
			fprintf(stderr, "cs-replicate: CS_LOG_FILE '%s': %s\n", cs_cfg.log_file,
				strerror(errno));
			return 2;
		}
	} else {
		cs_agent_setup();
		cs_tool_db_setup();
	}
	return cmd->run(&a);
}
