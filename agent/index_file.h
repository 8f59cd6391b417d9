/*
 * index_file.h - making the index file hosts map (index_file.c; the format
 * and the reader are in cs.h and libcs/index.c).  No registry here: the
 * agent's indexer feeds it, and a test can too.
 */
#ifndef CS_INDEX_FILE_H
#define CS_INDEX_FILE_H

#include "cs.h"

struct cs_index_file {
	struct cs_index_head *head;     /* mapped read-write, shared */
	uint64_t *blocks;
	size_t len;
	char tmp[CS_PATH_MAX];          /* its name until published */
};

/* A new, empty index sized for about `names` names, as a temporary file in
 * dir.  0 or -errno. */
int cs_index_file_create(struct cs_index_file *x, const char *dir, uint64_t names);
/* Add a name and every directory above it (a/b/c: "a/b/c", "a/b", "a").
 * Whether the name was new to x (true too when x is no file to add to). */
bool cs_index_file_add(struct cs_index_file *x, const char *ns, const char *rel);
/* Add the name alone (a caller that knows its directories are in). */
bool cs_index_file_add_name(struct cs_index_file *x, const char *ns, const char *rel);
/* How many names it was sized for before lookups get less exact. */
uint64_t cs_index_file_capacity(const struct cs_index_file *x);
/* The same in two steps, for a caller with many names to add: the block
 * of the name of hashes h (cs_index_hash) fetched into the cache, and its
 * bits set, a few names later (a scan's names land all over the file: each
 * is a cache miss, and the misses overlap this way). */
void cs_index_file_prefetch(const struct cs_index_file *x, const uint64_t h[2]);
bool cs_index_file_add_hash(struct cs_index_file *x, const uint64_t h[2]);
/* Make x, not published yet, the size cs_index_file_create would have
 * made for `names`, if that is smaller: the same names in it, the same
 * answers as if it had been made so.  0 or -errno. */
int cs_index_file_fit(struct cs_index_file *x, uint64_t names);
/* Rename it into place as dir/index.  0 or -errno. */
int cs_index_file_publish(struct cs_index_file *x, const char *dir);
/* Unmap it; superseded: mark it so first, and hosts move to the new one. */
void cs_index_file_close(struct cs_index_file *x, bool superseded);

#endif
