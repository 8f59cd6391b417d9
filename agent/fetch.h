/*
 * fetch.h - making a missing name present on this node (fetch.c), one
 * transfer per name however many ask.
 */
#ifndef CS_FETCH_H
#define CS_FETCH_H

#include "cs.h"

/*
 * Make (ns, rel) present, blocking: the outcome as the local protocol's
 * reply byte (cs.h), installed, absent or unavailable.  rel is a valid
 * relative path (cs_path_rel_valid: the caller checked it).  A request for
 * a name already under way waits for that one's outcome.
 */
char cs_fetch_wait(const char *ns, const char *rel);

struct cs_fetch_stats {
	unsigned long asked;            /* requests */
	unsigned long joined;           /* ... that joined one under way */
	unsigned long done;             /* transfers and lookups made */
	unsigned long unavailable;      /* ... answered "unavailable" */
	unsigned long running;          /* transfers and lookups under way */
};
void cs_fetch_stats(struct cs_fetch_stats *out);

#endif
