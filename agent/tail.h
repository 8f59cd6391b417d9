/*
 * tail.h - following every journal in CS_SPOOL and replicating what they
 * say (tail.c): the agent's write path.
 */
#ifndef CS_TAIL_H
#define CS_TAIL_H

#include "buf.h"
#include "cs.h"

/* Start the thread that follows the journals (the agent). */
int cs_tail_start(void);
void cs_tail_stop(void);

/*
 * Without an agent (cs-replicate drain when none runs): replicate every
 * journal in CS_SPOOL here until nothing is left or timeout_ms passed.
 * Returns the entries still pending, or -errno when CS_SPOOL cannot be
 * opened.
 */
long cs_tail_drain(int timeout_ms);

/* Entries not yet acknowledged in CS_SPOOL's journals (read only); *live:
 * how many journals belong to running processes.  -errno on failure. */
long cs_tail_pending(int *live);

/* Each entry not yet acknowledged in CS_SPOOL's journals (read only), to
 * fn with arg: a write, delete or rename a host made that the registry may
 * not show yet.  0 or -errno. */
int cs_tail_each_pending(int (*fn)(void *arg, struct cs_entry *e), void *arg);

/* Whether a delete or a rename away of (ns, rel), or of a directory above
 * it, is in a journal here and not acknowledged yet: the registry may still
 * show the name, which a miss must then not fetch back.  Read from the
 * journals themselves (what this thread has not read yet counts too). */
bool cs_tail_gone(const char *ns, const char *rel);
/* The same for the names of directory dir ("" for the top): appended to
 * names, each NUL-terminated.  0 or -errno. */
int cs_tail_gone_in(const char *ns, const char *dir, struct cs_buf *names);

/* What is waiting now (the agent's report while the registry is down). */
unsigned long cs_tail_backlog(void);

/* Whether a journal entry read but not yet replicated names (ns, rel): a
 * write, delete or rename of that file, or a holder record of it, still on
 * its way.  True for every path until the agent has read the journals it
 * found at start.  Any thread (the agent's, once cs_tail_start ran). */
bool cs_tail_pending_path(const char *ns, const char *rel);

#endif
