/*
 * metrics.h - the agent's counters, gauges and histograms (metrics.c),
 * which GET /metrics shows in Prometheus's text format.  Counting is one
 * atomic add: any thread, any time, no lock.
 */
#ifndef CS_METRICS_H
#define CS_METRICS_H

#include <stdint.h>

#include "buf.h"

enum cs_counter {
	CS_C_MISSES,                    /* misses hosts asked this agent about */
	CS_C_INSTALLS,                  /* ... answered installed */
	CS_C_ABSENT,                    /* ... answered absent */
	CS_C_UNAVAILABLE,               /* ... answered unavailable */
	CS_C_REGISTRY_ERRORS,           /* MySQL statements that failed */
	CS_C_PEER_ERRORS,               /* transfers to or from peers that failed */
	CS_C_REPAIR_FILES,              /* copies made by repair (pushed) */
	CS_C_REPAIR_PROMOTED,           /* pulled copies repair made count */
	CS_C_REPAIR_BYTES,              /* bytes repair pushed */
	CS_C_REPAIR_FAILED,             /* files repair could not bring up */
	CS_C_VERIFY_FILES,              /* copies verify checked */
	CS_C_VERIFY_BYTES,              /* ... bytes read to check them */
	CS_C_VERIFY_MENDED,             /* bad or missing copies fetched again */
	CS_C_VERIFY_CHANGED,            /* copies changed behind the library */
	CS_C_VERIFY_REGISTERED,         /* copies found here but not recorded */
	CS_C_EVICTED_FILES,             /* pulled copies evicted for CS_CACHE_MAX */
	CS_C_EVICTED_BYTES,
	CS_C_LISTINGS,                  /* directory listings hosts asked for */
	CS_C_COUNT
};

enum cs_gauge {
	CS_G_BACKLOG,                   /* journal entries not yet replicated */
	CS_G_REPAIR_PENDING,            /* files this node must repair, last scan */
	CS_G_REPAIR_PASSES,             /* repair passes finished */
	CS_G_VERIFY_PASSES,             /* verify passes finished */
	CS_G_VERIFY_POSITION,           /* copies checked in the current pass */
	CS_G_VERIFY_TOTAL,              /* copies the current pass checks */
	CS_G_CACHE_BYTES,               /* bytes of copies held here */
	CS_G_CACHE_MAX,                 /* CS_CACHE_MAX in bytes (0: none) */
	CS_G_COUNT
};

enum cs_histogram {
	CS_H_FETCH,                     /* seconds a miss took, all holders, any answer */
	CS_H_LAG,                       /* seconds from reading a host's entry to done */
	CS_H_COUNT
};

void cs_count(enum cs_counter c, uint64_t n);
void cs_gauge_set(enum cs_gauge g, int64_t v);
void cs_observe(enum cs_histogram h, double seconds);

/* A request the peer endpoint answered (http.c), under its route ("files",
 * "index", "stats", "health", "metrics"; anything else is "other") and
 * method, with the body bytes it moved: sent for a GET, received for a PUT
 * or POST. */
void cs_count_request(const char *route, const char *method, unsigned status, uint64_t bytes);

/* Everything, in Prometheus text format 0.0.4, appended to out. */
void cs_metrics_render(struct cs_buf *out);

#endif
