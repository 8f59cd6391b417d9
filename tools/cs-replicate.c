/*
 * cs-replicate.c - the per-node helper: command line and subcommands.
 *
 * A subcommand is a function and a row in `commands`.  The work itself is in
 * agent/ (the agent, the registry, hashing, the journals); this file parses
 * arguments, loads the CS_* configuration and turns results into exit
 * statuses: 0 done, 1 failed (with the reason on stderr), 2 usage or
 * configuration error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "announce.h"
#include "cs.h"
#include "nodes.h"
#include "registry.h"
#include "settings.h"
#include "sign.h"
#include "tail.h"
#include "tool.h"

static int cmd_serve(int argc, char **argv);
static int cmd_import(int argc, char **argv);
static int cmd_drain(int argc, char **argv);
static int cmd_conflicts(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	enum cs_role role;      /* the agent needs CS_LISTEN and CS_NODE_URL too */
	const char *usage;
} commands[] = {
	{ "serve", cmd_serve, CS_ROLE_AGENT, "serve                 run this node's agent: misses, replication, peer endpoint" },
	{ "import", cmd_import, CS_ROLE_TOOL, "import <namespace>    register the files already in this node's directory" },
	{ "status", cs_cmd_status, CS_ROLE_TOOL, "status [--json]       nodes, their state, how well the cluster holds its files; exit 1 when not healthy" },
	{ "node", cs_cmd_node, CS_ROLE_TOOL, "node drain|undrain|remove NAME [--wait] [--force]   take a node out of the cluster, or back" },
	{ "repair", cs_cmd_repair, CS_ROLE_TOOL, "repair [--rate R|max] every live file back to CS_REPLICAS copies, now; exit 1 with what could not be" },
	{ "conflicts", cmd_conflicts, CS_ROLE_TOOL, "conflicts             versions lost to writes made at the same time on two nodes, and where each is kept" },
	{ "verify", cs_cmd_verify, CS_ROLE_TOOL, "verify [--rate R|max] [--no-mend] [--json]\n"
	  "                        check this node's copies (size, SHA-256) against the registry; mend bad or missing ones, record unrecorded ones" },
	{ "drain", cmd_drain, CS_ROLE_TOOL, "drain [--timeout S]   wait until every journal entry is replicated; exit 0 when none is left" },
	{ "help", cmd_help, CS_ROLE_TOOL, "help                  this list" },
};

#define NCOMMANDS (sizeof commands / sizeof *commands)

static int cmd_help(int argc, char **argv)
{
	(void)argc, (void)argv;
	printf("usage: cs-replicate <command> [args]\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		printf("  %s\n", commands[i].usage);
	printf("\nConfiguration comes from the CS_* environment variables (see README.md).\n");
	return 0;
}

static int cmd_serve(int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: cs-replicate serve\n");
		return 2;
	}
	return cs_agent_main();
}

/* ---- import --------------------------------------------------------- */

#define IMPORT_BATCH 256        /* files announced, then registered, together */

struct hashed {
	char *rel;
	uint64_t size;
	int64_t mtime_ns;
	unsigned char sha[CS_SHA256_LEN];
};

struct import {
	const char *ns;
	unsigned long files, added, conflicts, errors;
	struct hashed batch[IMPORT_BATCH];
	int n;
	struct cs_announce names;
};

/* Announce the batch's names to every node, then register them: no node
 * can then answer 404 for a name the registry has. */
static void import_flush(struct import *im)
{
	cs_announce_send(&im->names, true);
	for (int i = 0; i < im->n; i++) {
		struct hashed *h = &im->batch[i];
		int rc = cs_registry_import(im->ns, h->rel, h->size, h->mtime_ns, h->sha);

		im->files++;
		if (rc == 0) {
			im->added++;
		} else if (rc == -EEXIST) {
			fprintf(stderr, "cs-replicate import: %s: the registry holds different "
					"content for this path; left as it is\n", h->rel);
			im->conflicts++;
		} else {
			fprintf(stderr, "cs-replicate import: %s: %s\n", h->rel,
				rc == -EAGAIN ? "registry unreachable" : strerror(-rc));
			im->errors++;
		}
		free(h->rel);
	}
	im->n = 0;
}

static void import_file(struct import *im, int dirfd, const char *name, const char *rel)
{
	struct hashed *h = &im->batch[im->n];
	struct stat st;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd >= 0 && fstat(fd, &st) == 0 && (!S_ISREG(st.st_mode) || st.st_nlink > 1)) {
		/* A hard link may be another name of a file outside the
		 * namespace; a FIFO or device is no file to serve. */
		fprintf(stderr, "cs-replicate import: %s: %s; not imported\n", rel,
			S_ISREG(st.st_mode) ? "hard-linked (another name may lead outside the "
					      "namespace; copy it instead)" : "not a regular file");
		im->errors++;
		close(fd);
		return;
	}
	if (fd < 0 || fstat(fd, &st) < 0 || cs_sha256_fd(fd, h->sha, &h->size) < 0 ||
	    !(h->rel = strdup(rel))) {
		fprintf(stderr, "cs-replicate import: %s: %s\n", rel, strerror(errno));
		im->errors++;
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	h->mtime_ns = cs_mtime_ns(&st);
	cs_announce_add(&im->names, im->ns, rel);
	if (++im->n == IMPORT_BATCH)
		import_flush(im);
}

/* Depth-first over dirfd; never follows symlinks, skips libcs temp files. */
static int import_dir(struct import *im, int fd, const char *prefix)
{
	DIR *d = fdopendir(fd);
	struct dirent *e;

	if (!d) {
		close(fd);
		return -errno;
	}
	while ((e = readdir(d))) {
		char rel[CS_PATH_MAX];
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    !strncmp(e->d_name, ".cs-", 4))
			continue;
		if (snprintf(rel, sizeof rel, "%s%s%s", prefix, *prefix ? "/" : "",
			     e->d_name) >= (int)sizeof rel ||
		    !cs_path_rel_valid(rel, strlen(rel))) {
			fprintf(stderr, "cs-replicate import: skipping unusable name under '%s'\n",
				prefix);
			im->errors++;
			continue;
		}
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), e->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0 || import_dir(im, sub, rel) < 0) {
				fprintf(stderr, "cs-replicate import: %s: %s\n", rel, strerror(errno));
				im->errors++;
			}
		} else if (S_ISREG(st.st_mode)) {
			import_file(im, dirfd(d), e->d_name, rel);
		}
	}
	closedir(d);
	return 0;
}

static int cmd_import(int argc, char **argv)
{
	static struct import im;
	const struct cs_prefix *p;
	uint32_t self;
	int fd, rc;

	if (argc != 2) {
		fprintf(stderr, "usage: cs-replicate import <namespace>\n");
		return 2;
	}
	p = cs_config_namespace(&cs_cfg, argv[1]);
	if (!p) {
		fprintf(stderr, "cs-replicate import: no namespace '%s' in CS_PREFIXES\n",
			argv[1]);
		return 2;
	}
	if ((rc = cs_nodes_self(&self)) < 0) {
		fprintf(stderr, "cs-replicate import: registry unreachable (%s)\n",
			strerror(-rc));
		return 1;
	}
	im.ns = p->name;
	fd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || import_dir(&im, fd, "") < 0) {
		fprintf(stderr, "cs-replicate import: %s: %s\n", p->dir, strerror(errno));
		return 1;
	}
	import_flush(&im);
	cs_announce_free(&im.names);
	printf("imported %lu files (%lu registered or already matching, %lu conflicting, %lu errors)\n",
	       im.files, im.added, im.conflicts, im.errors);
	return im.conflicts || im.errors ? 1 : 0;
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

static int cmd_conflicts(int argc, char **argv)
{
	int shown = 0, n;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: cs-replicate conflicts\n");
		return 2;
	}
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
static int cmd_drain(int argc, char **argv)
{
	long timeout = 60, pending;
	int live = 0, rc;

	if (argc == 3 && strcmp(argv[1], "--timeout") == 0) {
		char *end;
		timeout = strtol(argv[2], &end, 10);
		if (*end || timeout < 0) {
			fprintf(stderr, "cs-replicate drain: --timeout wants seconds, not '%s'\n", argv[2]);
			return 2;
		}
	} else if (argc != 1) {
		fprintf(stderr, "usage: cs-replicate drain [--timeout SECONDS]\n");
		return 2;
	}
	if (!cs_cfg.spool[0]) {
		printf("CS_SPOOL is unset: nothing is journaled on this node\n");
		return 0;
	}
	if ((rc = cs_agent_lock()) == 0) {
		pending = cs_tail_drain((int)(timeout * 1000));
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

int main(int argc, char **argv)
{
	char err[512];
	const struct command *cmd = NULL;

	if (argc < 2) {
		cmd_help(0, NULL);
		return 2;
	}
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			cmd = &commands[i];
	if (!cmd) {
		fprintf(stderr, "cs-replicate: unknown command '%s' (try: cs-replicate help)\n",
			argv[1]);
		return 2;
	}
	if (cmd->run != cmd_help) {
		int rc = cs_settings_load(&cs_cfg, cmd->role, err, sizeof err);
		if (rc == -ENOENT) {
			fprintf(stderr, "cs-replicate: CS_PREFIXES: unset; nothing to do\n");
			return 2;
		}
		if (rc < 0) {
			fprintf(stderr, "cs-replicate: %s\n", err);
			return 2;
		}
	}
	if (cmd->run == cmd_serve) {
		if (cs_log_setup(cs_cfg.log_file, true, "cs-replicate") < 0) {
			fprintf(stderr, "cs-replicate: CS_LOG_FILE '%s': %s\n", cs_cfg.log_file,
				strerror(errno));
			return 2;
		}
	} else if (cmd->run != cmd_help) {
		cs_agent_setup();
	}
	return cmd->run(argc - 1, argv + 1);
}
