/*
 * mcache.h - the agent's memcached connections (mcache.c): a small pool of
 * handles onto one server or several (keys spread by ketama), a breaker
 * per server, get and store.  Optional: without CS_MEMCACHED every call
 * is a miss and the registry is asked directly; so is every call for a
 * key whose server is down.
 */
#ifndef CS_MCACHE_H
#define CS_MCACHE_H

#include <time.h>

#include "cs.h"

void cs_mc_init(int connections);
/* The value stored at key (malloc'd, *len bytes), or NULL. */
char *cs_mc_get(const char *key, size_t *len);
/* Store val at key for ttl seconds: overwrite, or only add where there is
 * nothing (readers fill the cache with add, writers set). */
void cs_mc_store(const char *key, const char *val, size_t len, time_t ttl, bool overwrite);
/* Drop key (what it said changed in MySQL). */
void cs_mc_delete(const char *key);
void cs_mc_shutdown(void);

#endif
