/*
 * fetch.h - making a missing name present on this node (fetch.c), one
 * transfer per name however many ask.
 */
#ifndef CS_FETCH_H
#define CS_FETCH_H

#include "cs.h"

/* The outcome, as the local protocol's reply byte (cs.h): installed,
 * absent, or unavailable. */
typedef void (*cs_fetch_done)(void *arg, char reply);

/* Make (ns, rel) present; done(arg, reply) is called once, from a pool
 * thread, when it is or cannot be.  Joins a request already under way for
 * the same name.  0 or -ENOMEM. */
int cs_fetch_submit(const char *ns, const char *rel, cs_fetch_done done, void *arg);
/* The work itself, blocking: the reply byte. */
char cs_fetch_present(const char *ns, const char *rel);

struct cs_fetch_stats {
	unsigned long asked;            /* requests */
	unsigned long joined;           /* ... that joined one under way */
	unsigned long done;             /* transfers and lookups made */
	unsigned long unavailable;      /* ... answered "unavailable" */
	unsigned long running;
};
void cs_fetch_stats(struct cs_fetch_stats *out);

#endif
