/*
 * core.c - per-process life of libcs inside a host program: configuration at
 * load, state reset after fork, the "inside libcs" flag.
 *
 * The preload layer calls cs_core_init from its constructor, before main and
 * before the host can rewrite its environment.  A misconfiguration is said
 * once, on one stderr line, and leaves the library inert: the host runs as if
 * nothing were preloaded.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cs.h"

__thread int cs_inside;

bool cs_core_init(void)
{
	char err[512];
	int rc;

	/* cs-replicate links the core itself; preloading it too would make the
	 * daemon fetch what it is asked to serve. */
	if (strcmp(program_invocation_short_name, "cs-replicate") == 0)
		return false;
	cs_inside++;
	rc = cs_config_load(&cs_cfg, false, err, sizeof err);
	cs_inside--;
	if (rc == -ENOENT)
		return false;
	if (rc < 0) {
		cs_log_level = CS_LOG_ERROR;
		cs_error("%s; ClusterStorage is off in this process", err);
		return false;
	}
	return true;
}

void cs_core_atfork_child(void)
{
	cs_registry_forget();
	cs_peer_forget();
}
