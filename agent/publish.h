/*
 * publish.h - writing new versions and tombstones to the registry
 * (publish.c).
 */
#ifndef CS_PUBLISH_H
#define CS_PUBLISH_H

#include "cs.h"
#include "record.h"

/* One file of a batch: what this node has at (ns, rel); f gets the record. */
struct cs_publish {
	const char *ns, *rel;
	uint64_t size;
	int64_t mtime_ns;
	unsigned char sha256[CS_SHA256_LEN];
	struct cs_file f;
	uint64_t lost;          /* out: the version this write replaced unseen, or 0 */
};

/*
 * Register the content this node has at each v[i] as the file's newest
 * version, held by this node, in one transaction of two round trips
 * whatever n: every one is registered, or none.  Versions strictly increase
 * per path, the same bytes again make no new version, and copies of older
 * versions on other nodes become stale.  The paths must differ.  0, -EAGAIN
 * (registry down or a race lost four times: retry later) or another -errno.
 */
int cs_publish_many(struct cs_publish *v, int n);
/* Write a tombstone version.  *prev gets the record it replaced, whose
 * holders still have copies to remove.  -ENOENT when nothing to delete. */
int cs_unpublish(const char *ns, const char *rel, struct cs_file *prev);

#endif
