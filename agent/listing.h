/*
 * listing.h - the cluster's entries of a directory, for a host that lists
 * it (listing.c; the host's side is preload/dirs.c, the protocol cs.h).
 */
#ifndef CS_LISTING_H
#define CS_LISTING_H

#include "buf.h"
#include "cs.h"

/*
 * The registry's live entries of directory rel ("" for the namespace's top)
 * of namespace ns, appended to out as the protocol's body: for each, 'f' (a
 * file) or 'd' (a directory) and the name, NUL-terminated, less the names
 * this node's disk holds there (the host lists those itself).  0, or -EAGAIN / -EIO when the
 * registry cannot answer.  A listing is kept for the next asker while the
 * index's poll (indexer.c) says nothing below it changed.
 */
int cs_listing_get(const char *ns, const char *rel, struct cs_buf *out);
/* (ns, rel) changed in the registry: forget the listings that show it
 * (its directory, and each above, whose subdirectories it may change).
 * The index's poll calls it for every changed row it reads, and then
 * cs_listing_polled once the poll is complete: listings are kept only
 * while those polls go on. */
void cs_listing_changed(const char *ns, const char *rel);
void cs_listing_polled(void);

/* The directories above a batch of new paths, to register with them. */
struct cs_dirset {
	struct cs_dir_row {
		unsigned char h[CS_SHA256_LEN];         /* path hash, as files' */
		const char *ns;                         /* the caller's */
		char *path;
	} *v;
	int n, cap;
	bool oom;
};
/* Add every directory above rel ("a/b/c": "a/b" and "a"). */
void cs_dirset_add(struct cs_dirset *s, const char *ns, const char *rel);
/* Append to q one INSERT IGNORE of them all, in path-hash order (so two
 * batches take their locks in one order).  Whether a statement was
 * appended: none when no path had a directory above it. */
bool cs_dirset_sql(struct cs_dirset *s, struct cs_buf *q);
void cs_dirset_free(struct cs_dirset *s);

#endif
