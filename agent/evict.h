/*
 * evict.h - the cache quota, CS_CACHE_MAX (evict.c): pulled copies go,
 * least recently used first, while this node holds more than it allows.
 */
#ifndef CS_EVICT_H
#define CS_EVICT_H

#include "cs.h"

/* Whether CS_CACHE_MAX is set (else nothing is ever evicted). */
bool cs_evict_wanted(void);
/* The quota in bytes now: CS_CACHE_MAX, or its percentage of the
 * filesystems holding the namespace directories.  0 or -errno. */
int cs_evict_quota(uint64_t *quota);
/*
 * One look at this node's copies: while they take more than the quota,
 * evict pulled ones, least recently used first (a pass stops early once
 * *stop is set).  A copy that counts toward CS_REPLICAS, one with a journal
 * entry still on its way, one changed here since it was installed and one
 * open for writing are never evicted.  Returns how many copies were
 * evicted, or -errno when the registry could not be asked.
 */
int cs_evict_pass(const volatile int *stop);

#endif
