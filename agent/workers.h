/*
 * workers.h - a pool of threads for work that blocks (workers.c): a miss
 * waits on the registry and a peer, and hundreds may be under way at once.
 */
#ifndef CS_WORKERS_H
#define CS_WORKERS_H

/* Run fn(arg) on a pool thread: an idle one, a new one while there are
 * fewer than max, else the first to come free.  0 or -ENOMEM. */
int cs_workers_submit(void (*fn)(void *arg), void *arg);
/* Threads now, and jobs waiting for one. */
void cs_workers_count(int *threads, int *queued);

#endif
