/*
 * indexer.h - this node's published index of names, kept true to the
 * registry (indexer.c).
 */
#ifndef CS_INDEXER_H
#define CS_INDEXER_H

#include "cs.h"

/* Adopt the index a previous run left, and start the thread that builds
 * one from the registry (going on with the adopted one meanwhile, or while
 * the registry is unreachable) and then polls it. */
int cs_indexer_start(void);
void cs_indexer_stop(void);
/* (ns, rel) and the directories above it are names the cluster has (or is
 * about to have): hosts ask the agent for them from now on.  Whether the
 * name was new to this node's index (if not, no need to announce it). */
bool cs_indexer_add(const char *ns, const char *rel);

#endif
