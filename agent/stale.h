/*
 * stale.h - removing this node's superseded copies (stale.c).
 */
#ifndef CS_STALE_H
#define CS_STALE_H

/*
 * Remove this node's copies of files whose registry version moved on (an
 * overwrite, a delete or a rename elsewhere), so that the next open misses
 * and fetches the current version; a hit never asks the network.  A copy is
 * removed only while it is exactly as it was installed (size and mtime): a
 * local write not yet registered is left alone.  Returns how many copies
 * were handled, or a negative errno.
 */
int cs_stale_sweep(void);

#endif
