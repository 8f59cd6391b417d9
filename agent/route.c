/*
 * route.c - the peer protocol's routes: which /v1/... path names what (and
 * /metrics, which is no peer's but the monitoring's).
 * Paths arrive already decoded strictly (cs_url_decode); what a files route
 * names must still pass cs_path_rel_valid ("." / ".." / "//" and length).
 */
#include <errno.h>
#include <string.h>

#include "route.h"

int cs_route_parse(const char *path, struct cs_route *r)
{
	static const char files[] = "/v1/files/", repair[] = "/v1/repair/";
	static const struct {
		const char *path;
		enum cs_route_kind kind;
	} fixed[] = {
		{ "/v1/health", CS_ROUTE_HEALTH },
		{ "/v1/stats", CS_ROUTE_STATS },
		{ "/v1/index", CS_ROUTE_INDEX },
		{ "/metrics", CS_ROUTE_METRICS },
	};
	const char *ns, *slash;

	memset(r, 0, sizeof *r);
	for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
		if (strcmp(path, fixed[i].path) == 0) {
			r->kind = fixed[i].kind;
			return 0;
		}
	if (strcmp(path, "/v1/repair") == 0 || strncmp(path, repair, sizeof repair - 1) == 0) {
		const char *rate = path[sizeof repair - 2] ? path + sizeof repair - 1 : NULL;
		/* "max", or bytes per second in digits */
		if (rate && strcmp(rate, "max") != 0 &&
		    (!*rate || strspn(rate, "0123456789") != strlen(rate) || strlen(rate) > 19))
			return -EINVAL;
		r->kind = CS_ROUTE_REPAIR;
		r->rel = rate;
		return 0;
	}
	if (strncmp(path, files, sizeof files - 1) != 0)
		return -ENOENT;
	ns = path + sizeof files - 1;
	slash = strchr(ns, '/');
	if (!slash || slash == ns || (size_t)(slash - ns) >= CS_NAME_MAX)
		return -EINVAL;
	memcpy(r->ns, ns, slash - ns);
	r->ns[slash - ns] = '\0';
	r->rel = slash + 1;
	if (!cs_path_rel_valid(r->rel, strlen(r->rel)))
		return -EINVAL;
	r->kind = CS_ROUTE_FILES;
	return 0;
}

const char *cs_route_label(const char *path)
{
	static const char *const fixed[] = { "/v1/index", "/v1/stats", "/v1/health", "/metrics" };

	if (strncmp(path, "/v1/files/", 10) == 0)
		return "files";
	if (strncmp(path, "/v1/repair", 10) == 0 && (!path[10] || path[10] == '/'))
		return "repair";
	for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
		if (strcmp(path, fixed[i]) == 0)
			return strrchr(fixed[i], '/') + 1;
	return "other";
}
