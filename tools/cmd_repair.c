/*
 * cmd_repair.c - `cs-replicate repair [--rate R|max] [--timeout S]`: have
 * every up agent run a repair pass now (repair.c does the work, peer to
 * peer from a surviving holder), follow their progress, and say what could
 * not be repaired.
 *
 * Safe to run on several nodes at once (each file has one repairer, its
 * first live holder) and to interrupt (every copy is installed whole or not
 * at all; the agents finish the pass they are in).  Exit 0 when every live
 * file has CS_REPLICAS copies that count, 1 with how many have not.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health.h"
#include "nodes.h"
#include "peer.h"
#include "repair.h"
#include "settings.h"
#include "tool.h"

#define CALL_MS 5000

static volatile sig_atomic_t interrupted;

static void on_int(int sig)
{
	(void)sig;
	interrupted = 1;
}

/*
 * The files short of copies, counted exactly when that takes at most
 * CS_STATUS_EXACT_MS, as status does (at millions of files it takes
 * longer: *exact false, and the agents' own reports are what is known).
 * 0, or -errno when the registry cannot be asked at all.
 */
static int short_files(struct cs_health_files *h, bool *exact)
{
	int level = cs_log_level, rc;

	memset(h, 0, sizeof *h);
	*exact = false;
	/* A count stopped at its limit is no error to log. */
	cs_log_level = -1;
	rc = cs_nodes_refresh();
	if (rc == 0 && cs_cfg.status_exact_ms > 0 &&
	    (rc = cs_health_files_within(h, cs_cfg.status_exact_ms)) == 0)
		*exact = true;
	cs_log_level = level;
	return rc == -ETIMEDOUT ? 0 : rc;
}

/* The agents a pass can be asked of: up, not removed, with a URL. */
static int agents(struct cs_node *all)
{
	int n, m = 0;

	cs_nodes_refresh();     /* as the registry has it now */
	n = cs_nodes_all(all, CS_MAX_NODES);

	for (int i = 0; i < n; i++)
		if (cs_node_serves(&all[i]) && all[i].url[0])
			all[m++] = all[i];
	return n < 0 ? n : m;
}

/* Ask each of all[0, n) for a pass at rate; pass[i] (when given) gets the
 * pass all[i] will have finished when done, 0 when it did not take it.
 * How many took it. */
static int kick(const struct cs_node *all, int n, uint64_t rate, uint64_t *pass)
{
	char path[64], out[64];
	int asked = 0;

	if (rate)
		snprintf(path, sizeof path, "/v1/repair/%" PRIu64, rate);
	else
		snprintf(path, sizeof path, "/v1/repair/max");
	for (int i = 0; i < n; i++) {
		unsigned long long k = 0;
		long st = cs_peer_call(all[i].url, "POST", path, out, sizeof out, CALL_MS);
		if (st == 202 && sscanf(out, "pass %llu", &k) == 1)
			asked++;
		else
			fprintf(stderr, "cs-replicate: node %s did not take the repair request (%s)\n",
				all[i].name, st < 0 ? "no answer" : out);
		if (pass)
			pass[i] = k;
	}
	return asked;
}

int cs_repair_kick_all(uint64_t rate)
{
	struct cs_node *all = calloc(CS_MAX_NODES, sizeof *all);
	int n = all ? agents(all) : 0, asked = n > 0 ? kick(all, n, rate, NULL) : 0;

	free(all);
	return asked;
}

static const struct cs_opt opts[] = {
	{ "--rate", "R|max", "bytes per second each agent pushes at most (like 50M); default max",
	  cs_check_rate },
	{ "--timeout", "SECONDS", "stop following after this long (default 0: until done)",
	  cs_check_seconds },
	{ NULL },
};

const struct cs_usage cs_usage_repair = {
	"repair", "", 0, 0,
	"Have every up agent run a repair pass now and follow it: every live file back to\n"
	"CS_REPLICAS copies that count; exit 1 with how many could not be.",
	opts,
};

int cs_cmd_repair(const struct cs_args *a)
{
	struct cs_node *all = calloc(CS_MAX_NODES, sizeof *all);
	uint64_t *pass = calloc(CS_MAX_NODES, sizeof *pass);
	struct cs_repair_progress *base = calloc(CS_MAX_NODES, sizeof *base);
	struct cs_health_files before, now;
	bool exact_before, exact_now = false;
	char why[96];
	uint64_t rate = cs_args_rate(a, "--rate", 0), copies = 0, bytes = 0, failed = 0, found = 0;
	long timeout_s = cs_args_seconds(a, "--timeout", 0);
	bool done = false;
	int64_t start = cs_clock_ms(), looked = 0;
	struct cs_progress prog;
	int n, rc;

	/* Files brought back to CS_REPLICAS copies, of those short before. */
	cs_progress_init(&prog, "repair", "files");
	if (!all || !pass || !base)
		return 1;
	if ((rc = short_files(&before, &exact_before)) < 0 || (rc = n = agents(all)) < 0) {
		fprintf(stderr, "cs-replicate repair: %s\n", cs_registry_why(rc, why));
		return 1;
	}
	for (int i = 0; i < n; i++) {
		char out[1024];
		if (cs_peer_call(all[i].url, "GET", "/v1/repair", out, sizeof out, CALL_MS) == 200)
			cs_repair_progress_parse(out, &base[i]);
	}
	/* The same list the progress is followed on: pass[i] is all[i]'s. */
	if (kick(all, n, rate, pass) == 0) {
		fprintf(stderr, "cs-replicate repair: no agent took the request\n");
		return 1;
	}
	signal(SIGINT, on_int);
	now = before;
	while (!done && !interrupted &&
	       !(timeout_s && cs_clock_ms() - start >= timeout_s * 1000)) {
		usleep(500 * 1000);
		done = true;
		copies = bytes = failed = found = 0;
		for (int i = 0; i < n; i++) {
			struct cs_repair_progress p;
			char out[1024];
			if (!pass[i])
				continue;
			if (cs_peer_call(all[i].url, "GET", "/v1/repair", out, sizeof out, CALL_MS) != 200 ||
			    cs_repair_progress_parse(out, &p) < 0) {
				cs_progress_print(&prog, stderr, "cs-replicate repair: node %s stopped "
						  "answering", all[i].name);
				pass[i] = 0;
				continue;
			}
			copies += p.copies + p.promoted - base[i].copies - base[i].promoted;
			bytes += p.bytes - base[i].bytes;
			failed += p.failed - base[i].failed;
			found += p.pending;
			done &= p.done >= pass[i];
		}
		if (prog.tty) {
			/* a query over every file: not every half second */
			if (exact_before && cs_clock_ms() - looked > 2000 &&
			    short_files(&now, &exact_now) == 0 && exact_now)
				prog.done_ms = looked = cs_clock_ms();
			prog.total = before.under_replicated;
			prog.done = before.under_replicated > now.under_replicated
				    ? before.under_replicated - now.under_replicated : 0;
			prog.bytes = bytes;
			snprintf(prog.tail, sizeof prog.tail, "%" PRIu64 " copies made", copies);
			cs_progress_show(&prog, true);
		}
	}
	cs_progress_end(&prog);
	if ((rc = short_files(&now, &exact_now)) < 0) {
		fprintf(stderr, "cs-replicate repair: %s\n", cs_registry_why(rc, why));
		return 1;
	}
	cs_summary("repair", copies, "copies", bytes, (cs_clock_ms() - start) / 1e3);
	if (exact_before && exact_now)
		printf(": %" PRIu64 " of %" PRIu64 " live files short of %d copies before, %" PRIu64
		       " now, %" PRIu64 " with no live copy\n", before.under_replicated, before.live,
		       cs_cfg.replicas, now.under_replicated, now.no_live_copy);
	else
		/* Too many files to count within the limit: what the passes
		 * themselves found and could not mend (status has the census). */
		printf(": the agents' passes found %" PRIu64 " files short of %d copies and could not "
		       "repair %" PRIu64 " (too many files to count them all within "
		       "CS_STATUS_EXACT_MS; cs-replicate status shows the census)\n", found,
		       cs_cfg.replicas, failed);
	free(all);
	free(pass);
	free(base);
	uint64_t bad = exact_now ? now.under_replicated + now.no_live_copy : failed;
	if (!done)
		fprintf(stderr, "cs-replicate repair: %s before every pass finished; the agents "
				"finish theirs\n", interrupted ? "interrupted" : "timed out");
	if (bad) {
		fprintf(stderr, "cs-replicate repair: %" PRIu64 " files could not be repaired (%" PRIu64
				" have no copy on any up node; for the rest there are not enough up, "
				"active nodes, or their repairer failed: see its log)\n", bad,
			exact_now ? now.no_live_copy : 0);
		return 1;
	}
	return done ? 0 : 1;
}
