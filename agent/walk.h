/*
 * walk.h - the long jobs' walk over this node's holder records (walk.c):
 * repair and verify go through the copies the registry records here in
 * file id order, a batch at a time, and keep their place in a small file
 * in the spool so that an agent restarted midway goes on from there.
 */
#ifndef CS_WALK_H
#define CS_WALK_H

#include <stdint.h>

/* Where a walk stands, as kept in CS_SPOOL/<name>.cursor. */
struct cs_walk {
	uint64_t lap;           /* walks begun since the file was made */
	uint64_t after;         /* the last file id done in this one */
	uint64_t done;          /* holder records done in this one */
	uint64_t phase;         /* the walker's own (verify: 1 once on disk) */
};

/* The walk kept under name: 0 with *w (all zero when none was kept, or it
 * cannot be read). */
int cs_walk_load(const char *name, struct cs_walk *w);
/* Keep *w under name, whole or not at all (a new file renamed over the
 * old): 0 or -errno. */
int cs_walk_save(const char *name, const struct cs_walk *w);

/* This node's holder records of current or older versions, not stale
 * (replicas rows by its replicas_node index) with a file id above after:
 * how many, counted a bounded range per statement so that no statement
 * outlives the read timeout at millions of rows.  0 with *n, or -errno. */
int cs_walk_count(uint32_t self, uint64_t after, uint64_t *n);

/* The next batch of at most max such records above after: 0 with *last
 * (the highest file id among them) and *n (how many; 0 at the end). */
int cs_walk_next(uint32_t self, uint64_t after, int max, uint64_t *last, uint64_t *n);

#endif
