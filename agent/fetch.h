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

struct cs_file;
struct cs_install;
/*
 * Fill in's file (begun by cs_store_begin for rel in namespace p, empty)
 * with f's bytes from the best holder that delivers them, verified, within
 * CS_FETCH_TIMEOUT plus f's size at CS_FETCH_MIN_RATE; in is neither
 * committed nor aborted.  cached: f came from memcached, whose holders may
 * be out of date, so MySQL is asked when they fail (*f is then MySQL's
 * record, perhaps of a newer version).  0, -ETIMEDOUT, -ENOENT (no holder
 * delivered), -EIO, -ENOMEM.
 */
int cs_fetch_into(const struct cs_prefix *p, const char *rel, struct cs_install *in,
		  struct cs_file *f, bool cached);

struct cs_fetch_stats {
	unsigned long asked;            /* requests */
	unsigned long joined;           /* ... that joined one under way */
	unsigned long done;             /* transfers and lookups made */
	unsigned long unavailable;      /* ... answered "unavailable" */
	unsigned long running;          /* transfers and lookups under way */
};
void cs_fetch_stats(struct cs_fetch_stats *out);

#endif
