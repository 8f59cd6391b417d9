/*
 * cmd_verify.c - `cs-replicate verify [--rate R|max] [--no-mend] [--json]`:
 * one pass of the agent's verify (agent/verify.c) over this node's copies,
 * run here, beside the agent if one runs (the store's lock is shared).
 *
 * A line for each file mended, registered, changed behind the library, not
 * in the registry or failed, then a summary; or, with --json, one object
 * with the counts and those files.  Exit 0 when every copy was good or was
 * mended or registered, 1 when something is left for the operator (a copy
 * changed behind the library, a file the registry does not have, a copy
 * that could not be mended, an error, or anything --no-mend left), 2 for
 * usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs.h"
#include "settings.h"
#include "tool.h"
#include "verify.h"

/* Each kind's name in --json, and its word at the head of a line. */
static const struct {
	const char *key, *word;
} kinds[CS_VERIFY_KINDS] = {
	[CS_VERIFY_MENDED] = { "mended", "mended" },
	[CS_VERIFY_REGISTERED] = { "registered", "registered" },
	[CS_VERIFY_CHANGED] = { "changed", "changed" },
	[CS_VERIFY_UNKNOWN] = { "not_in_registry", "unknown" },
	[CS_VERIFY_UNMENDED] = { "unmended", "unmended" },
	[CS_VERIFY_UNRECORDED] = { "unrecorded", "unrecorded" },
	[CS_VERIFY_ERROR] = { "errors", "error" },
};

/* The files of one kind, kept for --json. */
struct list {
	char **path, **why;
	size_t n, cap;
};

struct out {
	bool json;
	struct list list[CS_VERIFY_KINDS];
};

static void keep(struct list *l, const char *ns, const char *rel, const char *why)
{
	char path[CS_NAME_MAX + CS_PATH_MAX + 1];

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		char **p = realloc(l->path, cap * sizeof *p), **w;
		if (!p)
			return;
		l->path = p;
		if (!(w = realloc(l->why, cap * sizeof *w)))
			return;
		l->why = w;
		l->cap = cap;
	}
	snprintf(path, sizeof path, "%s/%s", ns, rel);
	if ((l->path[l->n] = strdup(path)) && (l->why[l->n] = strdup(why)))
		l->n++;
	else
		free(l->path[l->n]);
}

static void report(void *arg, enum cs_verify_kind kind, const char *ns, const char *rel,
		   const char *why)
{
	struct out *o = arg;

	if (o->json) {
		keep(&o->list[kind], ns, rel, why);
		return;
	}
	printf("%-10s %s/%s: %s\n", kinds[kind].word, ns, rel, why);
	fflush(stdout);
}

static void print_json(const struct out *o, const struct cs_verify_result *r, double secs)
{
	printf("{\"copies\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"seconds\":%.3f,"
	       "\"mb_per_s\":%.2f,\"skipped\":%" PRIu64 ",\"stopped\":%s", r->copies, r->bytes,
	       secs, r->bytes / 1e6 / secs, r->skipped, r->stopped ? "true" : "false");
	for (int k = 0; k < CS_VERIFY_KINDS; k++)
		printf(",\"%s\":%" PRIu64, kinds[k].key, r->count[k]);
	printf(",\"files\":{");
	for (int k = 0; k < CS_VERIFY_KINDS; k++) {
		const struct list *l = &o->list[k];

		printf("%s\"%s\":[", k ? "," : "", kinds[k].key);
		for (size_t i = 0; i < l->n; i++) {
			printf("%s{\"path\":", i ? "," : "");
			cs_json_str(stdout, l->path[i]);
			printf(",\"why\":");
			cs_json_str(stdout, l->why[i]);
			putchar('}');
		}
		putchar(']');
	}
	printf("}}\n");
}

static void print_summary(const struct cs_verify_result *r, double secs, bool mend)
{
	const uint64_t *n = r->count;

	printf("verified %" PRIu64 " copies (%.1f MB) in %.1f s (%.1f MB/s): %" PRIu64 " mended, %"
	       PRIu64 " registered, %" PRIu64 " changed behind the library, %" PRIu64
	       " not in the registry, %" PRIu64 " errors", r->copies, r->bytes / 1e6, secs,
	       r->bytes / 1e6 / secs, n[CS_VERIFY_MENDED], n[CS_VERIFY_REGISTERED],
	       n[CS_VERIFY_CHANGED], n[CS_VERIFY_UNKNOWN], n[CS_VERIFY_ERROR]);
	if (!mend)
		printf(", %" PRIu64 " bad left as they are and %" PRIu64 " not recorded (--no-mend)",
		       n[CS_VERIFY_UNMENDED], n[CS_VERIFY_UNRECORDED]);
	if (r->skipped)
		printf("; %" PRIu64 " left for a later pass (changed in the last minute, being "
		       "written, or a write of theirs not replicated yet)", r->skipped);
	if (r->stopped)
		printf("; stopped early");
	printf("\n");
}

/* --rate's value: bytes per second, 0 for no bound; false when malformed. */
static bool parse_rate(const char *s, uint64_t *rate)
{
	if (strcmp(s, "max") == 0 || strcmp(s, "0") == 0) {
		*rate = 0;
		return true;
	}
	return cs_parse_size(s, rate) && *rate >= 4096;
}

int cs_cmd_verify(int argc, char **argv)
{
	static const char usage[] = "usage: cs-replicate verify [--rate R|max] [--no-mend] [--json]\n";
	struct cs_verify_opts opts = { .rate = cs_cfg.verify_rate, .mend = true, .report = report };
	struct cs_verify_result r;
	struct out out = { 0 };
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-mend") == 0) {
			opts.mend = false;
		} else if (strcmp(argv[i], "--json") == 0) {
			out.json = true;
		} else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc) {
			if (!parse_rate(argv[++i], &opts.rate)) {
				fprintf(stderr, "cs-replicate verify: --rate: '%s' is not a rate in "
						"bytes per second (like 8M, at least 4K) or 'max'\n",
					argv[i]);
				return 2;
			}
		} else {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (!cs_cfg.spool[0]) {
		fprintf(stderr, "cs-replicate verify: CS_SPOOL: unset; give this node's spool "
				"directory, where hosts journal what they are writing\n");
		return 2;
	}
	/* Whether a host is writing a file is asked with a lease given back at
	 * once; a writer opening it meanwhile sends SIGIO, which must not end
	 * us.  Peers may close connections under us. */
	signal(SIGIO, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	opts.arg = &out;
	rc = cs_verify_pass(&opts, &r);
	if (rc < 0) {
		fprintf(stderr, "cs-replicate verify: %s after %" PRIu64 " copies\n",
			rc == -EAGAIN ? "registry unreachable" : strerror(-rc), r.copies);
		return 1;
	}
	double secs = r.ms > 0 ? r.ms / 1000.0 : 0.001;
	if (out.json)
		print_json(&out, &r, secs);
	else
		print_summary(&r, secs, opts.mend);
	for (int k = 0; k < CS_VERIFY_KINDS; k++) {
		for (size_t i = 0; i < out.list[k].n; i++) {
			free(out.list[k].path[i]);
			free(out.list[k].why[i]);
		}
		free(out.list[k].path);
		free(out.list[k].why);
	}
	uint64_t left = r.count[CS_VERIFY_CHANGED] + r.count[CS_VERIFY_UNKNOWN] +
			r.count[CS_VERIFY_UNMENDED] + r.count[CS_VERIFY_UNRECORDED] +
			r.count[CS_VERIFY_ERROR];
	if (left) {
		fprintf(stderr, "cs-replicate verify: %" PRIu64 " file%s need%s a look (see above)\n",
			left, left == 1 ? "" : "s", left == 1 ? "s" : "");
		return 1;
	}
	return 0;
}
