/*
 * nodes.h - the cluster's nodes as this agent sees them (nodes.c): its own
 * registration and heartbeat, the node table, and the one place that ranks
 * nodes, for reading from and for pushing to.
 */
#ifndef CS_NODES_H
#define CS_NODES_H

#include "cs.h"
#include "record.h"

struct cs_node {
	uint32_t id;
	char name[CS_NAME_MAX];
	char url[CS_URL_MAX];
	char zone[CS_NAME_MAX];
	bool up;                /* heartbeat seen recently */
};

#define CS_UP_SECONDS 10        /* a heartbeat younger than this: node is up */
#define CS_MAX_NODES 256        /* nodes in the table, at most */

/* This node's id, registering it by name if needed: 0, -EAGAIN when MySQL
 * cannot be used now, or another -errno (-ENOMEM, -EIO, as cs_db_exec). */
int cs_nodes_self(uint32_t *id);
/* Register or refresh this node (name, url, zone) and its heartbeat. */
int cs_nodes_heartbeat(void);
/* The nodes holding f that could serve it to us, best first: not this node,
 * with a URL, up before down, not failing lately, this node's zone first.  How many, or -errno
 * when no node table could be had. */
int cs_nodes_holders(const struct cs_file *f, struct cs_node *out, int max);
/* Nodes to push a new version of f to: up, not this node, not holding it,
 * not failing lately, another CS_ZONE first, then the fewest files.  How
 * many. */
int cs_nodes_targets(const struct cs_file *f, struct cs_node *out, int max);
/* Every other node that is up and has a URL. */
int cs_nodes_peers(struct cs_node *out, int max);
/* A transfer to or from node failed (no answer, or a stall): it is read
 * from last and not pushed to for a while, 1 s doubling with each failure
 * in a row to CS_DEMOTE_MS (a peer that stalls would hold up every batch);
 * a transfer that works ends that. */
#define CS_DEMOTE_MS 30000
/* Whether node id is demoted now. */
bool cs_nodes_is_demoted(uint32_t id);
void cs_nodes_demote(uint32_t id);
void cs_nodes_worked(uint32_t id);
/* A push to node succeeded: count it until the counts are next read, so a
 * burst of writes spreads instead of all going to the emptiest node. */
void cs_nodes_note_copy(uint32_t node);

/* Status listing: per node, how many current files it holds. */
struct cs_node_status {
	struct cs_node node;
	double heartbeat_age;           /* seconds, -1 if never */
	uint64_t files;
};
int cs_nodes_status(struct cs_node_status *st, int *n, uint64_t *files);

#endif
