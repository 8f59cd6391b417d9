/*
 * leftovers.h - removing the temporary files an earlier run of the agent
 * left behind (leftovers.c).
 */
#ifndef CS_LEFTOVERS_H
#define CS_LEFTOVERS_H

/*
 * Walk every namespace directory once and remove the store's temporary
 * files that no one holds locked: what an agent killed in the middle of a
 * fetch or a received push left.  Call it before anything of this run can
 * install a file.  Returns how many were removed.
 */
int cs_leftovers_sweep(void);

#endif
