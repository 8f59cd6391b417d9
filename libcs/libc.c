/*
 * libc.c - the table through which the core calls the libc functions that
 * libcs.so also wraps (cs.h explains why).  It starts out as libc's own,
 * which is right for cs-replicate and the tests; in libcs.so, where these
 * names would be the library's own wrappers, preload/real.c fills it with
 * the next definitions before the core first runs.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "cs.h"

struct cs_libc cs_libc = {
#define CS_LIBC_INIT(ret, name, params) .name = name,
	CS_LIBC(CS_LIBC_INIT)
#undef CS_LIBC_INIT
};
