/*
 * local.h - the agent's unix socket, where this node's host processes ask
 * for missing names (local.c; the protocol is in cs.h).
 */
#ifndef CS_LOCAL_H
#define CS_LOCAL_H

/* Listen on CS_SPOOL/agent.sock and answer there from a thread of its own.
 * 0 or -errno (said on stderr). */
int cs_local_start(void);
void cs_local_stop(void);

#endif
