/*
 * nodes.h - the cluster's nodes as this agent sees them (nodes.c): its own
 * registration and heartbeat, the node table, and the one place that ranks
 * nodes, for reading from and for pushing to.
 */
#ifndef CS_NODES_H
#define CS_NODES_H

#include "buf.h"
#include "cs.h"
#include "record.h"

/* What the operator decided of a node (cs-replicate node drain|remove|
 * undrain); up or down is the heartbeat's, apart from this. */
enum cs_node_state {
	CS_NODE_ACTIVE,         /* takes copies; its copies count */
	CS_NODE_DRAINING,       /* still serves, takes none; its copies go elsewhere */
	CS_NODE_REMOVED,        /* out: neither read from nor pushed to */
};

struct cs_node {
	uint32_t id;
	char name[CS_NAME_MAX];
	char url[CS_URL_MAX];
	char zone[CS_NAME_MAX];
	bool up;                /* heartbeat within CS_DOWN_AFTER */
	enum cs_node_state state;
};

#define CS_MAX_NODES 256        /* nodes in the table, at most */

/* "active", "draining", "removed"; and back (-1 for none of them). */
const char *cs_node_state_name(enum cs_node_state s);
int cs_node_state_parse(const char *s);
/* Whether n's copies count toward CS_REPLICAS: up and active. */
bool cs_node_counts(const struct cs_node *n);
/* Whether n may serve a copy: up and not removed. */
bool cs_node_serves(const struct cs_node *n);

/* This node's id, registering it by name if needed: 0, -EAGAIN when MySQL
 * cannot be used now, or another -errno (-ENOMEM, -EIO, as cs_db_exec). */
int cs_nodes_self(uint32_t *id);
/* Register or refresh this node (name, url, zone), its heartbeat, and its
 * journal entries not yet replicated. */
int cs_nodes_heartbeat(unsigned long backlog);
/* The nodes holding f that could serve it to us, best first: not this node,
 * not removed, with a URL; up before down (a down one is only asked when
 * every up one failed), not failing lately, active before draining, this
 * node's zone first, then the fastest measured.  How many, or -errno when
 * no node table could be had. */
int cs_nodes_holders(const struct cs_file *f, struct cs_node *out, int max);
/* Nodes to push a new version of f to: up and active, not this node, not
 * holding it, not failing lately; a zone with fewer of f's copies first
 * (this node's counted when it holds f), then the fewest files.  How many. */
int cs_nodes_targets(const struct cs_file *f, struct cs_node *out, int max);
/* Every other node that is up, not removed, and has a URL. */
int cs_nodes_peers(struct cs_node *out, int max);
/* The whole node table as this agent has it (at most 2 s old): how many,
 * or -errno. */
int cs_nodes_all(struct cs_node *out, int max);
/* Read the node table from MySQL now (an operator's request acts on what
 * is true now, not on a table up to 7 s old): 0 or -errno. */
int cs_nodes_refresh(void);
/* How many times the node table read here differed from the one before
 * (a node came, went down or up, or changed state), after bringing it up
 * to date if it is older than 2 s: a change is noticed by the number
 * moving. */
uint64_t cs_nodes_changes(void);
/* This node as the table has it: 0, or -ENOENT (not registered yet). */
int cs_nodes_me(struct cs_node *me);
/* Set node name's state (the operator's command): 0, -ENOENT (no such
 * node), -EAGAIN (registry unreachable).  Leaving the node table cached
 * here and in memcached to catch up within seconds. */
int cs_nodes_set_state(const char *name, enum cs_node_state state);
/* A transfer from node id took ms for size bytes: its speed, measured.
 * Holders are ranked by it within equals (a moving average of the time
 * per transfer, a large one counted per MiB). */
void cs_nodes_measured(uint32_t id, int64_t ms, uint64_t size);
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

/* SQL: whether node alias n (a row of nodes) is up, 1 or 0, by this
 * agent's CS_DOWN_AFTER. */
void cs_nodes_sql_up(struct cs_buf *q, const char *n);
/* SQL: cs_node_counts and cs_node_serves of node alias n, 1 or 0 (NULL for
 * the NULL row of an outer join). */
void cs_nodes_sql_counts(struct cs_buf *q, const char *n);
void cs_nodes_sql_serves(struct cs_buf *q, const char *n);

/* Status listing: per node, the current files it holds. */
struct cs_node_status {
	struct cs_node node;
	double heartbeat_age;           /* seconds, -1 if never */
	uint64_t files, bytes;          /* current copies held, and their bytes */
	uint64_t pinned;                /* ... of which count toward CS_REPLICAS */
	uint64_t backlog;               /* journal entries waiting, at its heartbeat */
};
/* Up to *n nodes into st (*n set to how many), by name, read now from the
 * node table (small, whatever the number of files): all but files, bytes
 * and pinned, which are health.c's or the census's to count. */
int cs_nodes_status(struct cs_node_status *st, int *n);

#endif
