/*
 * tool.h - what cs-replicate's subcommands share (tool.c): each
 * subcommand's entry point and its usage, the one argument parser, the
 * progress line of long work and its closing summary, and small output
 * helpers.
 */
#ifndef CS_TOOL_H
#define CS_TOOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* ---- arguments ---------------------------------------------------------- */

#define CS_MAX_OPTS 8
#define CS_MAX_ARGS 2

/* One option a command takes. */
struct cs_opt {
	const char *name;               /* "--rate" */
	const char *value;              /* its value's name in usage ("R|max"); NULL: a flag */
	const char *help;               /* one line for --help */
	/* NULL when v will do, else what the value should be ("a whole number
	 * of seconds"), for the error message. */
	const char *(*check)(const char *v);
};

/* A command's (or one of node's) words, arguments and options: the usage
 * line, --help and the parser are all made from it, so they cannot differ. */
struct cs_usage {
	const char *name;               /* "repair", "node drain" */
	const char *args;               /* its arguments in usage: "NAMESPACE", "[COMMAND]", "" */
	int min_args, max_args;
	const char *summary;            /* what it does, for help and --help */
	const struct cs_opt *opts;      /* ends with { NULL } */
};

/* What cs_args_parse found. */
struct cs_args {
	const struct cs_usage *u;
	const char *val[CS_MAX_OPTS];   /* per u->opts[i]: NULL absent, "" a flag given */
	const char *arg[CS_MAX_ARGS];
	int narg;
	bool help;                      /* -h or --help was given */
};

/*
 * argv[0, argc) are the words after the command's name.  Options may come
 * before or after the arguments, as "--opt VALUE" or "--opt=VALUE"; "--"
 * ends them.  -h or --help anywhere asks for help, and then a missing
 * argument is no error; an unknown option, a bad value or an extra argument
 * still is.  0 (with a->help set or not), or 2 after one line on stderr
 * saying what is wrong and the usage line.
 */
int cs_args_parse(const struct cs_usage *u, int argc, char **argv, struct cs_args *a);
/* The value of option name ("" for a flag), or NULL when it was not given. */
const char *cs_args_opt(const struct cs_args *a, const char *name);
/* Option name's value, which its check accepted, as seconds or bytes per
 * second (0: no bound); dflt when it was not given. */
long cs_args_seconds(const struct cs_args *a, const char *name, long dflt);
uint64_t cs_args_rate(const struct cs_args *a, const char *name, uint64_t dflt);
/* Checks for struct cs_opt. */
const char *cs_check_seconds(const char *v);
const char *cs_check_rate(const char *v);

/* lead, then "NAME ARGS [OPTS]", on f: lead "usage: cs-replicate " for the
 * first line of a usage, "       cs-replicate " for the next. */
#define CS_USAGE "usage: cs-replicate "
#define CS_USAGE_NEXT "       cs-replicate "
void cs_usage_line(FILE *f, const struct cs_usage *u, const char *lead);
/* The usage line, the summary and each option's help, on stdout. */
void cs_usage_help(const struct cs_usage *u);
/* "cs-replicate NAME: <fmt>" and the usage line on stderr; returns 2. */
int cs_usage_error(const struct cs_usage *u, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- subcommands ---------------------------------------------------------- */

extern const struct cs_usage cs_usage_import, cs_usage_status, cs_usage_repair, cs_usage_verify;
extern const struct cs_usage cs_usage_node[3];  /* drain, undrain, remove */

int cs_cmd_import(const struct cs_args *a);
int cs_cmd_status(const struct cs_args *a);
int cs_cmd_node(const struct cs_args *a);
int cs_cmd_repair(const struct cs_args *a);
int cs_cmd_verify(const struct cs_args *a);

/* Ask every up agent for a repair pass now at rate bytes/s (0: no bound):
 * how many took it. */
int cs_repair_kick_all(uint64_t rate);

/* ---- progress and summary --------------------------------------------------- */

/*
 * The line long work (import, repair, verify, node drain --wait) keeps
 * redrawn on stderr while it runs, when stderr is a terminal and only then:
 *
 *   import: 41200/100000 files (41%), 102.9 MB, 1370 files/s, 3.4 MB/s, ETA 0:42
 *
 * The caller sets the counts and calls cs_progress_show as often as it
 * likes (it redraws at most 5 times a second).  Lines printed meanwhile go
 * through cs_progress_print, which lifts the progress line out of their
 * way.  cs_progress_end takes it away for the summary (cs_summary).  Safe
 * from two threads (one counting, one reporting).
 */
struct cs_progress {
	const char *what;               /* "import" */
	const char *unit;               /* "files" */
	uint64_t done, total;           /* total 0: not known (no ETA) */
	int64_t done_ms;                /* when done was counted (cs_clock_ms), if not now: 0 */
	uint64_t bytes, bytes_total;    /* bytes_total 0: ETA by count alone */
	bool no_bytes;                  /* the work has no bytes to show */
	char tail[96];                  /* said after the counts, or "" */
	int64_t start_ms;               /* when the work began: init sets it, a caller
					 * that counted first may set it again */
	/* the rest is the module's */
	bool tty;
	int64_t drawn_ms;
	char line[512];                 /* what is on the terminal now, or "" */
	pthread_mutex_t mu;
};

void cs_progress_init(struct cs_progress *p, const char *what, const char *unit);
/* Redraw from the counts, if the last draw is 200 ms old or force. */
void cs_progress_show(struct cs_progress *p, bool force);
/* Draw text instead of the counts (a phase before them: "counting"). */
void cs_progress_text(struct cs_progress *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* One line to f (stdout or stderr) above the progress line. */
void cs_progress_print(struct cs_progress *p, FILE *f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Take the progress line off the terminal for good. */
void cs_progress_end(struct cs_progress *p);
/* Seconds since cs_progress_init. */
double cs_progress_secs(const struct cs_progress *p);

/*
 * The head every summary starts with, on stdout, all three commands alike:
 *   "import: 100000 files (250.0 MB) in 83.2 s (1202 files/s, 3.0 MB/s)"
 * the caller then prints ": " and its details, and the newline.
 */
void cs_summary(const char *what, uint64_t n, const char *unit, uint64_t bytes, double secs);

/* ---- output ------------------------------------------------------------ */

/* s as a JSON string, quotes included.  Paths are bytes: one that is not
 * UTF-8 gets each such byte as the code point of the same number, so the
 * text stays JSON. */
void cs_json_str(FILE *f, const char *s);
/* n bytes for people: "812 B", "1.2 MB" (powers of 1000). */
const char *cs_human_bytes(uint64_t n, char buf[32]);

/* Why a registry call failed: "registry too slow" for a statement that
 * outlived CS_ADMIN_TIMEOUT on a server that still answers, "registry
 * unreachable" otherwise; cs_registry_why adds the error's text, for a
 * command's error line ("registry unreachable (...)"). */
const char *cs_registry_state(int rc);
const char *cs_registry_why(int rc, char buf[96]);

/* The registry's connections as a command wants them (CS_ADMIN_TIMEOUT);
 * before its first statement. */
void cs_tool_db_setup(void);

#endif
