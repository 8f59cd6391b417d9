/*
 * route.h - the peer protocol's URL paths (route.c), shared by the HTTP
 * endpoint and the tests.
 */
#ifndef CS_ROUTE_H
#define CS_ROUTE_H

#include "cs.h"

enum cs_route_kind { CS_ROUTE_FILES = 1, CS_ROUTE_STATS, CS_ROUTE_HEALTH, CS_ROUTE_INDEX,
		     CS_ROUTE_REPAIR };

struct cs_route {
	enum cs_route_kind kind;
	char ns[CS_NAME_MAX];
	const char *rel;        /* CS_ROUTE_FILES: points into the parsed path;
				 * CS_ROUTE_REPAIR: the rate asked for, or NULL */
};

/*
 * Parse a decoded path: "/v1/health", "/v1/stats", "/v1/index",
 * "/v1/repair[/<rate>]" or "/v1/files/<namespace>/<rel>".  -ENOENT for an unknown route, -EINVAL for
 * a files route whose namespace or path is unsafe (cs_path_rel_valid).
 */
int cs_route_parse(const char *path, struct cs_route *r);

#endif
