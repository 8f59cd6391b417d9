/*
 * repair.h - bringing every live file back to CS_REPLICAS counting copies
 * (repair.c): the agent's continuous repair, and the passes an operator
 * asks for with `cs-replicate repair`.
 */
#ifndef CS_REPAIR_H
#define CS_REPAIR_H

#include <stdbool.h>
#include <stdint.h>

/* Where the agent's repair stands (GET /v1/repair). */
struct cs_repair_progress {
	uint64_t asked;         /* the last pass asked for (cs_repair_kick) */
	uint64_t done;          /* the last pass asked for that has finished */
	bool running;           /* the walk goes at full speed (asked, or a change) */
	uint64_t rate;          /* its bound in bytes/s (0: none) */
	/* since the agent started: */
	uint64_t files;         /* files this node acted on */
	uint64_t copies;        /* copies pushed and confirmed */
	uint64_t promoted;      /* pulled copies made to count */
	uint64_t bytes;         /* bytes pushed */
	uint64_t failed;        /* files a pass could not bring up */
	uint64_t pending;       /* files this node had to act on at its last lap */
	/* the walk over this node's files (repair.c): */
	uint64_t lap;           /* laps finished since its spool file was made */
	uint64_t cursor;        /* the last file id done in this lap */
	uint64_t walked;        /* this node's holder records done in this lap */
	uint64_t held;          /* ... of this many */
	uint64_t lap_ms;        /* how long the last whole lap took (0: none yet) */
	uint64_t lap_scan_ms;   /* ... of it in the registry's statements */
};

/* Start and stop the agent's repair thread: a walk over this node's files,
 * paced at rest, at full speed after a change, pushing at CS_REPAIR_RATE. */
int cs_repair_start(void);
void cs_repair_stop(void);
/* Ask for a pass now at rate bytes/s (0: no bound), the walk under way
 * going on from its place at that rate: the number of the pass that will
 * have covered every file as of now (done once the walk is round). */
uint64_t cs_repair_kick(uint64_t rate);
void cs_repair_progress(struct cs_repair_progress *p);
/* Progress as "key value" lines, and parsed back (the CLI's side):
 * the length written, or -ENOSPC; 0 or -EINVAL. */
int cs_repair_progress_format(const struct cs_repair_progress *p, char *out, size_t outsz);
int cs_repair_progress_parse(const char *s, struct cs_repair_progress *p);

#endif
