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
 *
 * A run that was interrupted (Ctrl-C, a lost session, a failing registry)
 * kept its place in CS_SPOOL/verify-command.cursor: the next run goes on
 * from there and says so, unless given --from-start.  The agent's own
 * passes keep theirs apart (verify.cursor).
 *
 * On a terminal a progress line follows the pass: the copies checked out of
 * those the registry records here, and the bytes read, as the pass counts
 * them for the agent's /metrics (metrics.c; the same counters in this
 * process), read by a thread of its own.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cs.h"
#include "metrics.h"
#include "settings.h"
#include "tool.h"
#include "verify.h"
#include "walk.h"

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
	struct cs_progress prog;
	volatile int done;              /* the pass is over: the progress thread ends */
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
	cs_progress_print(&o->prog, stdout, "%-10s %s/%s: %s", kinds[kind].word, ns, rel, why);
}

/* The value of metric name in the text m, or 0. */
static uint64_t metric(const char *m, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = m; (p = strstr(p, name)); p += n)
		if ((p == m || p[-1] == '\n') && p[n] == ' ')
			return strtoull(p + n + 1, NULL, 10);
	return 0;
}

/* The progress line, from the pass's counters, until the pass is over. */
static void *follow(void *arg)
{
	struct out *o = arg;
	struct cs_progress *p = &o->prog;
	struct cs_buf m = { 0 };

	while (!o->done) {
		cs_buf_clear(&m);
		cs_metrics_render(&m);
		if (m.s && !m.oom) {
			p->total = metric(m.s, "cs_verify_pass_total");
			p->done = metric(m.s, "cs_verify_pass_checked");
			p->bytes = metric(m.s, "cs_verify_bytes_total");
			if (p->total && p->done > p->total)
				p->total = p->done;
			/* after the recorded copies, the files nobody recorded */
			snprintf(p->tail, sizeof p->tail, "%s",
				 p->total && p->done == p->total ? "looking for unrecorded files" : "");
			cs_progress_show(p, true);
		}
		usleep(250 * 1000);
	}
	cs_buf_free(&m);
	return NULL;
}

static void print_json(const struct out *o, const struct cs_verify_result *r, double secs)
{
	printf("{\"copies\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"seconds\":%.3f,"
	       "\"mb_per_s\":%.2f,\"skipped\":%" PRIu64 ",\"stopped\":%s", r->copies, r->bytes,
	       secs, r->bytes / 1e6 / secs, r->skipped, r->stopped ? "true" : "false");
	printf(",\"resumed_copies\":%" PRIu64, r->resumed ? r->resumed_copies : 0);
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

	cs_summary("verify", r->copies, "copies", r->bytes, secs);
	printf(": %" PRIu64 " mended, %" PRIu64 " registered, %" PRIu64 " changed behind the "
	       "library, %" PRIu64 " not in the registry, %" PRIu64 " errors",
	       n[CS_VERIFY_MENDED], n[CS_VERIFY_REGISTERED], n[CS_VERIFY_CHANGED],
	       n[CS_VERIFY_UNKNOWN], n[CS_VERIFY_ERROR]);
	if (!mend)
		printf(", %" PRIu64 " bad left as they are and %" PRIu64 " not recorded (--no-mend)",
		       n[CS_VERIFY_UNMENDED], n[CS_VERIFY_UNRECORDED]);
	if (r->skipped)
		printf("; %" PRIu64 " left for a later pass (changed in the last minute, being "
		       "written, or a write of theirs not replicated yet)", r->skipped);
	if (r->stopped)
		printf("; stopped early");
	if (r->resumed)
		printf("; went on where an earlier run stopped (%" PRIu64 " copies checked then; "
		       "--from-start checks all)", r->resumed_copies);
	printf("\n");
}

static const struct cs_opt opts[] = {
	{ "--rate", "R|max", "bytes read per second at most (like 8M); default CS_VERIFY_RATE",
	  cs_check_rate },
	{ "--no-mend", NULL, "change nothing: report only", NULL },
	{ "--json", NULL, "one JSON object with the counts and the files", NULL },
	{ "--from-start", NULL, "check every copy, not going on where an interrupted run stopped",
	  NULL },
	{ NULL },
};

const struct cs_usage cs_usage_verify = {
	"verify", "", 0, 0,
	"Check this node's copies against the registry (size, SHA-256): mend bad or missing\n"
	"ones, record unrecorded ones; exit 1 when something is left to look at.",
	opts,
};

int cs_cmd_verify(const struct cs_args *a)
{
	struct cs_verify_opts opts = {
		.rate = cs_args_rate(a, "--rate", cs_cfg.verify_rate),
		.mend = !cs_args_opt(a, "--no-mend"),
		.report = report,
		.cursor = "verify-command",
	};
	struct cs_verify_result r;
	static struct out out;
	pthread_t follower;
	bool following;
	int rc;

	out.json = cs_args_opt(a, "--json") != NULL;
	cs_progress_init(&out.prog, "verify", "copies");
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
	if (cs_args_opt(a, "--from-start")) {
		struct cs_walk w;
		cs_walk_load(opts.cursor, &w);
		cs_walk_save(opts.cursor, &(struct cs_walk){ .lap = w.lap + 1 });
	}
	following = out.prog.tty && pthread_create(&follower, NULL, follow, &out) == 0;
	rc = cs_verify_pass(&opts, &r);
	out.done = 1;
	if (following)
		pthread_join(follower, NULL);
	cs_progress_end(&out.prog);
	if (rc < 0) {
		fprintf(stderr, "cs-replicate verify: %s after %" PRIu64 " copies\n",
			rc == -EAGAIN || rc == -ETIMEDOUT ? cs_registry_state(rc) : strerror(-rc),
			r.copies);
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
