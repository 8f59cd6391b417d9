/*
 * census.h - how well the cluster holds its files, counted in the
 * background (census.c) and published in the registry's census tables, for
 * `cs-replicate status` at a size where counting exactly takes too long,
 * and for ranking the nodes to push to.
 */
#ifndef CS_CENSUS_H
#define CS_CENSUS_H

#include "health.h"
#include "nodes.h"

#define CS_CENSUS_EVERY_MS 10000        /* from the start of one walk to the next, at least */

/* The agent's census thread: it walks only while this node is the
 * lowest-numbered one that is up and active. */
int cs_census_start(void);
void cs_census_stop(void);

/* The census as last published. */
struct cs_census {
	struct cs_health_files h;
	int replicas;                   /* the CS_REPLICAS it was counted with */
	uint32_t counted_by;            /* the node whose agent counted */
	char counted_by_name[CS_NAME_MAX];
	double age;                     /* seconds since the walk ended */
	double took;                    /* seconds the walk took, pauses included */
	int64_t work_ms;                /* ... its statements alone */
};
/* *c, and up to max nodes' copies into held (*n of them): 0, -ENOENT when
 * no census has been published yet, or -errno (-EIO also when the census
 * tables are missing: migration 005). */
int cs_census_read(struct cs_census *c, struct cs_health_held *held, int *n, int max);

#endif
