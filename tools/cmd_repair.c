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

static void show(uint64_t copies, uint64_t bytes, uint64_t left, uint64_t fixed,
		 double secs)
{
	char b[32], eta[32] = "?";
	double rate = secs > 0 ? bytes / secs : 0;

	if (fixed > 0 && secs > 0) {
		double s = left * secs / fixed;
		snprintf(eta, sizeof eta, "%d:%02d", (int)(s / 60), (int)s % 60);
	}
	fprintf(stderr, "\rrepair: %" PRIu64 " copies made, %s, %.1f MB/s; %" PRIu64
		" files short of copies, ETA %s   ", copies, cs_human_bytes(bytes, b), rate / 1e6,
		left, left ? eta : "0:00");
}

int cs_cmd_repair(int argc, char **argv)
{
	struct cs_node *all = calloc(CS_MAX_NODES, sizeof *all);
	uint64_t *pass = calloc(CS_MAX_NODES, sizeof *pass);
	struct cs_repair_progress *base = calloc(CS_MAX_NODES, sizeof *base);
	struct cs_health_files before, now;
	uint64_t rate = 0, copies = 0, bytes = 0;
	long timeout_s = 0;
	bool tty = isatty(STDERR_FILENO), done = false;
	int64_t start = cs_clock_ms(), looked = 0;
	int n, rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc) {
			i++;
			if (strcmp(argv[i], "max") != 0 && (!cs_parse_size(argv[i], &rate) || !rate)) {
				fprintf(stderr, "cs-replicate repair: --rate wants bytes per second "
						"(like 50M) or max, not '%s'\n", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			char *end;
			timeout_s = strtol(argv[++i], &end, 10);
			if (*end || timeout_s < 0)
				return 2;
		} else {
			fprintf(stderr, "usage: cs-replicate repair [--rate BYTES_PER_S|max] "
					"[--timeout SECONDS]\n");
			return 2;
		}
	}
	if (!all || !pass || !base)
		return 1;
	if ((rc = cs_health_files(&before)) < 0 || (rc = n = agents(all)) < 0) {
		fprintf(stderr, "cs-replicate repair: registry unreachable (%s)\n", strerror(-rc));
		return 1;
	}
	for (int i = 0; i < n; i++) {
		char out[512];
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
		copies = bytes = 0;
		for (int i = 0; i < n; i++) {
			struct cs_repair_progress p;
			char out[512];
			if (!pass[i])
				continue;
			if (cs_peer_call(all[i].url, "GET", "/v1/repair", out, sizeof out, CALL_MS) != 200 ||
			    cs_repair_progress_parse(out, &p) < 0) {
				fprintf(stderr, "\ncs-replicate repair: node %s stopped answering\n",
					all[i].name);
				pass[i] = 0;
				continue;
			}
			copies += p.copies + p.promoted - base[i].copies - base[i].promoted;
			bytes += p.bytes - base[i].bytes;
			done &= p.done >= pass[i];
		}
		if (tty) {
			if (cs_clock_ms() - looked > 2000 && cs_health_files(&now) == 0)
				looked = cs_clock_ms();
			uint64_t fixed = before.under_replicated > now.under_replicated
					 ? before.under_replicated - now.under_replicated : 0;
			show(copies, bytes, now.under_replicated, fixed, (cs_clock_ms() - start) / 1e3);
		}
	}
	if (tty)
		fputc('\n', stderr);
	if ((rc = cs_health_files(&now)) < 0) {
		fprintf(stderr, "cs-replicate repair: registry unreachable (%s)\n", strerror(-rc));
		return 1;
	}
	double secs = (cs_clock_ms() - start) / 1e3;
	char b[32];
	printf("repair: %" PRIu64 " copies made (%s) in %.1f s; %" PRIu64 " of %" PRIu64
	       " live files short of %d copies before, %" PRIu64 " now, %" PRIu64
	       " with no live copy\n", copies, cs_human_bytes(bytes, b), secs,
	       before.under_replicated, before.live, cs_cfg.replicas, now.under_replicated,
	       now.no_live_copy);
	free(all);
	free(pass);
	free(base);
	uint64_t bad = now.under_replicated + now.no_live_copy;
	if (!done)
		fprintf(stderr, "cs-replicate repair: %s before every pass finished; the agents "
				"finish theirs\n", interrupted ? "interrupted" : "timed out");
	if (bad) {
		fprintf(stderr, "cs-replicate repair: %" PRIu64 " files could not be repaired (%" PRIu64
				" have no copy on any up node; for the rest there are not enough up, "
				"active nodes, or their repairer failed: see its log)\n", bad,
			now.no_live_copy);
		return 1;
	}
	return done ? 0 : 1;
}
