/*
 * tool.c - what the subcommands share: the argument parser every command
 * goes through (so a usage line, --help and the errors all come from one
 * description of the command), the progress line of long work and the head
 * of its summary, output helpers, and the registry's settings for a
 * command (a longer read timeout than the agent's).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cs.h"
#include "db.h"
#include "settings.h"
#include "tool.h"

/* ---- the registry ------------------------------------------------------- */

void cs_tool_db_setup(void)
{
	/* A command's statements may scan the whole registry: they wait
	 * CS_ADMIN_TIMEOUT for it, where the agent's lookups wait 2 s. */
	cs_db_set_timeouts(cs_cfg.admin_timeout_ms);
}

/* ---- arguments ---------------------------------------------------------- */

void cs_usage_line(FILE *f, const struct cs_usage *u, const char *lead)
{
	fprintf(f, "%s%s", lead, u->name);
	if (u->args[0])
		fprintf(f, " %s", u->args);
	for (const struct cs_opt *o = u->opts; o->name; o++) {
		if (o->value)
			fprintf(f, " [%s %s]", o->name, o->value);
		else
			fprintf(f, " [%s]", o->name);
	}
	fputc('\n', f);
}

void cs_usage_help(const struct cs_usage *u)
{
	cs_usage_line(stdout, u, CS_USAGE);
	printf("%s\n", u->summary);
	if (u->opts[0].name)
		printf("\noptions:\n");
	for (const struct cs_opt *o = u->opts; o->name; o++) {
		char head[64];

		snprintf(head, sizeof head, "%s%s%s", o->name, o->value ? " " : "",
			 o->value ? o->value : "");
		printf("  %-20s %s\n", head, o->help);
	}
	printf("\nman cs-replicate tells more.\n");
}

int cs_usage_error(const struct cs_usage *u, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cs-replicate %s: ", u->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cs_usage_line(stderr, u, CS_USAGE);
	return 2;
}

/* The index of option s[0, n) in u->opts, or -1. */
static int find_opt(const struct cs_usage *u, const char *s, size_t n)
{
	for (int i = 0; u->opts[i].name; i++)
		if (strlen(u->opts[i].name) == n && memcmp(u->opts[i].name, s, n) == 0)
			return i;
	return -1;
}

/* One option at argv[*i] (s[0, n) its name, eq its "=VALUE" or NULL). */
static int take_opt(const struct cs_usage *u, int argc, char **argv, int *i, struct cs_args *a)
{
	const char *s = argv[*i], *eq = s[1] == '-' ? strchr(s, '=') : NULL, *v, *why;
	size_t n = eq ? (size_t)(eq - s) : strlen(s);
	int k = find_opt(u, s, n);
	const struct cs_opt *o;

	if (k < 0)
		return cs_usage_error(u, "unknown option '%.*s'", (int)n, s);
	o = &u->opts[k];
	if (!o->value) {
		if (eq)
			return cs_usage_error(u, "%s takes no value", o->name);
		v = "";
	} else if (eq) {
		v = eq + 1;
	} else if (*i + 1 < argc) {
		v = argv[++*i];
	} else {
		return cs_usage_error(u, "%s needs a value (%s)", o->name, o->value);
	}
	if (o->check && (why = o->check(v)))
		return cs_usage_error(u, "%s: '%s' is not %s", o->name, v, why);
	a->val[k] = v;
	return 0;
}

int cs_args_parse(const struct cs_usage *u, int argc, char **argv, struct cs_args *a)
{
	bool opts_done = false;
	int rc;

	memset(a, 0, sizeof *a);
	a->u = u;
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];

		if (!opts_done && (!strcmp(s, "-h") || !strcmp(s, "--help"))) {
			a->help = true;
		} else if (!opts_done && !strcmp(s, "--")) {
			opts_done = true;
		} else if (!opts_done && s[0] == '-' && s[1]) {
			if ((rc = take_opt(u, argc, argv, &i, a)) != 0)
				return rc;
		} else if (a->narg == u->max_args) {
			return cs_usage_error(u, "unexpected argument '%s'", s);
		} else {
			a->arg[a->narg++] = s;
		}
	}
	if (!a->help && a->narg < u->min_args)
		return cs_usage_error(u, "missing %s", u->args);
	return 0;
}

const char *cs_args_opt(const struct cs_args *a, const char *name)
{
	int k = find_opt(a->u, name, strlen(name));

	return k < 0 ? NULL : a->val[k];
}

#define SECONDS_MAX 1000000000ULL       /* 31 years: more is no timeout */

const char *cs_check_seconds(const char *v)
{
	uint64_t n;

	return cs_parse_u64(v, &n) && n <= SECONDS_MAX ? NULL : "a whole number of seconds";
}

const char *cs_check_rate(const char *v)
{
	uint64_t n;

	if (!strcmp(v, "max") || (cs_parse_size(v, &n) && (n == 0 || n >= 4096)))
		return NULL;
	return "a rate in bytes per second (like 50M, at least 4K) or max";
}

long cs_args_seconds(const struct cs_args *a, const char *name, long dflt)
{
	const char *v = cs_args_opt(a, name);
	uint64_t n;

	return v && cs_parse_u64(v, &n) ? (long)n : dflt;
}

uint64_t cs_args_rate(const struct cs_args *a, const char *name, uint64_t dflt)
{
	const char *v = cs_args_opt(a, name);
	uint64_t n;

	if (!v)
		return dflt;
	return strcmp(v, "max") && cs_parse_size(v, &n) ? n : 0;
}

/* ---- progress and summary ------------------------------------------------- */

#define REDRAW_MS 200

void cs_progress_init(struct cs_progress *p, const char *what, const char *unit)
{
	memset(p, 0, sizeof *p);
	p->what = what;
	p->unit = unit;
	p->tty = isatty(STDERR_FILENO);
	p->start_ms = cs_clock_ms();
	pthread_mutex_init(&p->mu, NULL);
}

double cs_progress_secs(const struct cs_progress *p)
{
	return (cs_clock_ms() - p->start_ms) / 1000.0;
}

/* text over the line on the terminal, cut to its width: a line that wraps
 * cannot be drawn over with \r. */
static void locked_draw(struct cs_progress *p, const char *text)
{
	struct winsize ws;
	int cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col : 80;

	snprintf(p->line, sizeof p->line, "%.*s", cols - 1, text);
	fprintf(stderr, "\r%s\033[K", p->line);
	fflush(stderr);
	p->drawn_ms = cs_clock_ms();
}

static void locked_erase(struct cs_progress *p)
{
	if (p->line[0]) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		p->line[0] = '\0';
	}
}

/* m:ss, or h:mm:ss from an hour up. */
static void clock_text(double s, char out[32])
{
	long t = s < 0 ? 0 : s > 1e8 ? 99999999 : (long)(s + 0.5);

	if (t >= 3600)
		snprintf(out, 32, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(out, 32, "%ld:%02ld", t / 60, t % 60);
}

/* The time left from the share done so far: of the count, or of the bytes
 * when that is less (a few large files left take longer than their count
 * says); the count as of at seconds, now secs. */
static void eta(const struct cs_progress *p, double at, double secs, char out[32])
{
	double share = (double)p->done / p->total;

	if (p->bytes_total && (double)p->bytes / p->bytes_total < share) {
		share = (double)p->bytes / p->bytes_total;
		at = secs;
	}
	if (p->done >= p->total)
		snprintf(out, 32, "0:00");
	else if (share <= 0 || at < 1)
		snprintf(out, 32, "?");
	else
		clock_text(at * (1 - share) / share - (secs - at), out);
}

void cs_progress_show(struct cs_progress *p, bool force)
{
	char text[512], b[32], r[32], t[32];
	double secs = cs_progress_secs(p);
	/* a count made a while ago (repair's, a query every 2 s) is a rate
	 * as of then */
	double at = p->done_ms ? (p->done_ms - p->start_ms) / 1000.0 : secs;
	size_t n;

	if (!p->tty)
		return;
	pthread_mutex_lock(&p->mu);
	if (!force && p->drawn_ms && cs_clock_ms() - p->drawn_ms < REDRAW_MS) {
		pthread_mutex_unlock(&p->mu);
		return;
	}
	n = (size_t)snprintf(text, sizeof text, "%s: %" PRIu64, p->what, p->done);
	if (p->total)
		n += snprintf(text + n, sizeof text - n, "/%" PRIu64 " %s (%d%%)", p->total, p->unit,
			      (int)(p->done >= p->total ? 100 : p->done * 100 / p->total));
	else
		n += snprintf(text + n, sizeof text - n, " %s", p->unit);
	if (!p->no_bytes)
		n += snprintf(text + n, sizeof text - n, ", %s", cs_human_bytes(p->bytes, b));
	if (secs >= 1) {
		n += snprintf(text + n, sizeof text - n, ", %.0f %s/s",
			      at > 0 ? p->done / at : 0.0, p->unit);
		if (!p->no_bytes)
			n += snprintf(text + n, sizeof text - n, ", %s/s",
				      cs_human_bytes((uint64_t)(p->bytes / secs), r));
	}
	if (p->total) {
		eta(p, at, secs, t);
		n += snprintf(text + n, sizeof text - n, ", ETA %s", t);
	}
	if (p->tail[0])
		snprintf(text + n, sizeof text - n, "; %s", p->tail);
	locked_draw(p, text);
	pthread_mutex_unlock(&p->mu);
}

void cs_progress_text(struct cs_progress *p, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	if (!p->tty)
		return;
	pthread_mutex_lock(&p->mu);
	if (!p->drawn_ms || cs_clock_ms() - p->drawn_ms >= REDRAW_MS) {
		va_start(ap, fmt);
		vsnprintf(text, sizeof text, fmt, ap);
		va_end(ap);
		locked_draw(p, text);
	}
	pthread_mutex_unlock(&p->mu);
}

void cs_progress_print(struct cs_progress *p, FILE *f, const char *fmt, ...)
{
	char was[sizeof p->line];
	va_list ap;

	pthread_mutex_lock(&p->mu);
	snprintf(was, sizeof was, "%s", p->line);
	locked_erase(p);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fflush(f);
	if (was[0])
		locked_draw(p, was);
	pthread_mutex_unlock(&p->mu);
}

void cs_progress_end(struct cs_progress *p)
{
	pthread_mutex_lock(&p->mu);
	locked_erase(p);
	pthread_mutex_unlock(&p->mu);
}

void cs_summary(const char *what, uint64_t n, const char *unit, uint64_t bytes, double secs)
{
	char b[32], r[32];

	if (secs < 0.001)
		secs = 0.001;
	printf("%s: %" PRIu64 " %s (%s) in %.1f s (%.0f %s/s, %s/s)", what, n, unit,
	       cs_human_bytes(bytes, b), secs, n / secs, unit,
	       cs_human_bytes((uint64_t)(bytes / secs), r));
}

/* ---- output ------------------------------------------------------------ */

/* The length of the valid UTF-8 sequence at s (no overlong form, no
 * surrogate, nothing past U+10FFFF), or 0. */
static int utf8_len(const unsigned char *s)
{
	int n = s[0] < 0xc2 ? 0 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : s[0] < 0xf5 ? 4 : 0;
	unsigned lo = s[0] == 0xe0 ? 0xa0 : s[0] == 0xf0 ? 0x90 : 0x80;
	unsigned hi = s[0] == 0xed ? 0x9f : s[0] == 0xf4 ? 0x8f : 0xbf;

	if (n && (s[1] < lo || s[1] > hi))
		return 0;
	for (int i = 2; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

void cs_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		int n;

		if (*p == '"' || *p == '\\') {
			fprintf(f, "\\%c", *p++);
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\u%04x", *p++);
		} else if (*p < 0x80) {
			fputc(*p++, f);
		} else if ((n = utf8_len(p)) > 0) {
			fwrite(p, 1, (size_t)n, f);
			p += n;
		} else {
			fprintf(f, "\\u%04x", *p++);
		}
	}
	fputc('"', f);
}

const char *cs_registry_state(int rc)
{
	return rc == -ETIMEDOUT ? "registry too slow" : "registry unreachable";
}

const char *cs_registry_why(int rc, char buf[96])
{
	snprintf(buf, 96, "%s (%s)", cs_registry_state(rc), strerror(-rc));
	return buf;
}

const char *cs_human_bytes(uint64_t n, char buf[32])
{
	static const char *const unit[] = { "kB", "MB", "GB", "TB", "PB" };
	double x = (double)n;
	int u = -1;

	if (n < 1000) {
		snprintf(buf, 32, "%" PRIu64 " B", n);
		return buf;
	}
	while (x >= 1000 && u < 4) {
		x /= 1000;
		u++;
	}
	snprintf(buf, 32, "%.1f %s", x, unit[u]);
	return buf;
}
