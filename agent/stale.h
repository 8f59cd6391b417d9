/*
 * stale.h - removing this node's superseded copies (stale.c).
 */
#ifndef CS_STALE_H
#define CS_STALE_H

#include "cs.h"

/*
 * Remove this node's copies of files whose registry version moved on (an
 * overwrite, a delete or a rename elsewhere), so that the next open misses
 * and fetches the current version; a hit never asks the network.  A copy is
 * removed only while it is exactly as it was installed (size and mtime): a
 * local write not yet registered is left alone.  Returns how many copies
 * were handled, or a negative errno.
 */
int cs_stale_sweep(void);
/*
 * Before a push replaces this node's copy of rel (file file_id) in
 * namespace p: if that copy is of a version lost to a write made at the
 * same time elsewhere, move it to CS_SPOOL/lost/ (see publish.c).  The
 * caller holds the path's lock.  0, or -errno (then nothing may replace
 * it yet).
 */
int cs_stale_keep_lost(const struct cs_prefix *p, const char *rel, uint64_t file_id);

#endif
