/*
 * route.h - the peer protocol's URL paths (route.c), shared by the HTTP
 * endpoint and the tests.
 */
#ifndef CS_ROUTE_H
#define CS_ROUTE_H

#include "cs.h"

enum cs_route_kind {
	CS_ROUTE_FILES = 1,
	CS_ROUTE_STATS,
	CS_ROUTE_HEALTH,
	CS_ROUTE_INDEX,
	CS_ROUTE_METRICS,       /* "/metrics", where Prometheus looks by default */
	CS_ROUTE_REPAIR,        /* "/v1/repair[/<rate>]" */
};

struct cs_route {
	enum cs_route_kind kind;
	char ns[CS_NAME_MAX];
	const char *rel;        /* CS_ROUTE_FILES: points into the parsed path;
				 * CS_ROUTE_REPAIR: the rate asked for, or NULL */
};

/*
 * Parse a decoded path: "/v1/health", "/v1/stats", "/v1/index", "/metrics",
 * "/v1/repair[/<rate>]" or "/v1/files/<namespace>/<rel>".  -ENOENT for an
 * unknown route, -EINVAL for a files route whose namespace or path is
 * unsafe (cs_path_rel_valid), or a repair route whose rate is not a number.
 */
int cs_route_parse(const char *path, struct cs_route *r);

/* The route a path asks for, as /metrics counts requests: "files", "index",
 * "stats", "health", "metrics", or "other"; never any part of the path. */
const char *cs_route_label(const char *path);

#endif
