/*
 * local.h - the agent's unix socket, where this node's host processes ask
 * for missing names (local.c; the protocol is in cs.h).
 */
#ifndef CS_LOCAL_H
#define CS_LOCAL_H

#include <stddef.h>

/* Listen on CS_SPOOL/agent.sock and answer there from a thread of its own.
 * 0 or -errno (said on stderr). */
int cs_local_start(void);
void cs_local_stop(void);

/*
 * One request line, line[0, len) with line[len] == '\0' (its '\n' replaced),
 * parsed in place: its kind (CS_ASK_PRESENT or CS_ASK_LIST) with *ns and
 * *rel pointing into line, to be fetched or listed; -ENOENT for a request
 * naming what the cluster cannot have (a namespace no configuration
 * accepts, a path cs_path_rel_valid refuses; for a listing, rel may also be
 * "", the namespace's top): answered absent; -EINVAL for what is no
 * request (the connection is closed).
 */
int cs_local_parse(char *line, size_t len, const char **ns, const char **rel);

#endif
