/*
 * agent.h - `cs-replicate serve`, the node agent (agent.c): starts every
 * part and runs until told to stop.
 */
#ifndef CS_AGENT_H
#define CS_AGENT_H

/* Set up what every cs-replicate command that reaches the registry needs
 * (connection pools, libcurl). */
void cs_agent_setup(void);
/* The spool directory's agent lock: 0 when taken (held for the process's
 * life), -EBUSY when an agent holds it, another -errno. */
int cs_agent_lock(void);
/* Run the agent with cs_cfg loaded; the exit status. */
int cs_agent_main(void);

#endif
