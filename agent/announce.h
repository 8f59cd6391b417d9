/*
 * announce.h - telling every node's index about names before they are
 * registered (announce.c), so that no node answers 404 for a name the
 * registry has.
 */
#ifndef CS_ANNOUNCE_H
#define CS_ANNOUNCE_H

#include "buf.h"
#include "cs.h"

struct cs_announce {
	struct cs_buf body;             /* "<ns>\t<encoded rel>\n" per name */
	unsigned long names;
};

/* Add a name this node's index does not know yet (and add it there). */
void cs_announce_add(struct cs_announce *a, const char *ns, const char *rel);
/* Send the names to every other node that is up (and, with self, to this
 * node's agent too: cs-replicate import is not the agent), then empty a.
 * Nodes that do not answer in time learn the names from their poll. */
void cs_announce_send(struct cs_announce *a, bool self);
void cs_announce_free(struct cs_announce *a);

#endif
