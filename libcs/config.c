/*
 * config.c - the CS_* environment variables a host process reads, parsed
 * once per process: its namespaces, CS_SPOOL, CS_LOG and CS_MISS_TIMEOUT,
 * and nothing secret.  cs-replicate reads these too, and then the node's
 * address, the registry and the secret (agent/settings.c, which is not in
 * libcs.so).
 *
 * The only file in libcs that reads the environment.  The preloaded
 * library calls cs_config_load from its constructor and keeps a copy: nginx
 * rewrites environ for setproctitle
 * and hands its workers an almost empty environment, so nothing may be read
 * lazily.  Parsing fills a caller's struct and says in one sentence what is
 * wrong; deciding what to do about it (go inert, exit) is the caller's job.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "cs.h"

struct cs_config cs_cfg;

int cs_config_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

bool cs_config_name_ok(const char *s, size_t len)
{
	if (len == 0 || len >= CS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !(s[i] && strchr("._-", s[i])))
			return false;
	return true;
}

bool cs_config_copy(char *dst, size_t dstsz, const char *src, size_t len)
{
	if (len >= dstsz)
		return false;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return true;
}

static int parse_prefixes(struct cs_config *cfg, const char *v, char *err,
			  size_t errlen)
{
	const char *p = v;

	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);

		if (len == 0) {
			p += 1;
			continue;
		}
		if (!eq)
			return cs_config_fail(err, errlen,
					      "CS_PREFIXES: '%.*s' is not name=/absolute/dir",
					      (int)len, p);
		if (cfg->nprefix == CS_MAX_PREFIXES)
			return cs_config_fail(err, errlen,
					      "CS_PREFIXES: more than %d prefixes",
					      CS_MAX_PREFIXES);

		struct cs_prefix *px = &cfg->prefix[cfg->nprefix];
		size_t nlen = eq - p, dlen = len - nlen - 1;
		char dir[CS_PATH_MAX];

		if (!cs_config_name_ok(p, nlen))
			return cs_config_fail(err, errlen, "CS_PREFIXES: namespace '%.*s' must "
					      "be 1-%d of A-Z a-z 0-9 . _ -",
					      (int)nlen, p, CS_NAME_MAX - 1);
		if (dlen == 0 || eq[1] != '/' || !cs_config_copy(dir, sizeof dir, eq + 1, dlen))
			return cs_config_fail(err, errlen, "CS_PREFIXES: directory of '%.*s' "
					      "must be an absolute path", (int)nlen, p);
		int n = cs_path_normalize("/", dir, px->dir, sizeof px->dir);
		if (n < 0)
			return cs_config_fail(err, errlen, "CS_PREFIXES: bad directory '%s'", dir);
		if (n == 1)
			return cs_config_fail(err, errlen,
					      "CS_PREFIXES: '%.*s' may not be the root directory",
					      (int)nlen, p);
		px->dirlen = n;
		cs_config_copy(px->name, sizeof px->name, p, nlen);

		/* The same tree reached through a symlinked parent is the same
		 * namespace: remember the resolved form too. */
		char real[PATH_MAX];
		px->real[0] = '\0';
		px->reallen = 0;
		if (realpath(px->dir, real) && strcmp(real, px->dir) != 0 &&
		    cs_config_copy(px->real, sizeof px->real, real, strlen(real)))
			px->reallen = strlen(real);

		for (int i = 0; i < cfg->nprefix; i++) {
			const struct cs_prefix *o = &cfg->prefix[i];
			size_t m = o->dirlen < px->dirlen ? o->dirlen : px->dirlen;

			if (strcmp(o->name, px->name) == 0)
				return cs_config_fail(err, errlen,
						      "CS_PREFIXES: namespace '%s' given twice",
						      px->name);
			if (memcmp(o->dir, px->dir, m) == 0 &&
			    (o->dir[m] == '/' || o->dir[m] == '\0') &&
			    (px->dir[m] == '/' || px->dir[m] == '\0'))
				return cs_config_fail(err, errlen, "CS_PREFIXES: directories "
						      "of '%s' and '%s' overlap", o->name, px->name);
		}
		cfg->nprefix++;
		p += len;
	}
	if (cfg->nprefix == 0)
		return cs_config_fail(err, errlen, "CS_PREFIXES: no name=/dir pair given");
	return 0;
}

/* CS_LOG */
static int parse_log(struct cs_config *cfg, const char *v, char *err, size_t errlen)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	int i;

	cfg->log_level = CS_LOG_ERROR;
	if (!v || !*v)
		return 0;
	for (i = 0; i < 4 && strcmp(v, names[i]) != 0; i++)
		;
	if (i == 4)
		return cs_config_fail(err, errlen,
				      "CS_LOG: '%s' is not error, warn, info or debug", v);
	cfg->log_level = i;
	return 0;
}

/* The variables a host process reads: where its namespaces are, where the
 * agent and the journals are, how long a miss may wait. */
static int parse_host(struct cs_config *cfg, cs_getenv_fn get, bool need_spool, char *err,
		      size_t errlen)
{
	const char *v = get("CS_SPOOL");
	int rc;

	if (v && *v) {
		if (v[0] != '/' || cs_path_normalize("/", v, cfg->spool, sizeof cfg->spool) < 0)
			return cs_config_fail(err, errlen,
					      "CS_SPOOL: '%s' must be an absolute path", v);
		/* The agent's socket lives there, and a socket's path is short. */
		size_t most = sizeof ((struct sockaddr_un *)0)->sun_path - 2 -
			      strlen(CS_SOCKET_NAME);
		if (strlen(cfg->spool) > most)
			return cs_config_fail(err, errlen, "CS_SPOOL: '%s' is too long for the "
					      "agent's socket (at most %zu characters)", v, most);
	} else if (need_spool) {
		return cs_config_fail(err, errlen, "CS_SPOOL: unset; give the directory of this "
				      "node's agent socket and journals");
	}
	if ((rc = parse_log(cfg, get("CS_LOG"), err, errlen)) < 0)
		return rc;
	cfg->miss_timeout_ms = CS_MISS_TIMEOUT_MS;
	v = get("CS_MISS_TIMEOUT");
	if (v && *v && !cs_parse_seconds(v, 0.05, 600, &cfg->miss_timeout_ms))
		return cs_config_fail(err, errlen, "CS_MISS_TIMEOUT: '%s' is not a number "
				      "of seconds from 0.05 to 600", v);
	return 0;
}

/* What a host has no use for and should not hold: a web worker that runs
 * someone's code would hand it over. */
static void note_needless(struct cs_config *cfg, cs_getenv_fn get)
{
	static const char *const names[] = { "CS_SECRET", "CS_SECRET_FILE", "CS_MYSQL" };

	cfg->needless[0] = '\0';
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		const char *v = get(names[i]);
		size_t n = strlen(cfg->needless);
		if (v && *v)
			snprintf(cfg->needless + n, sizeof cfg->needless - n, "%s%s",
				 n ? ", " : "", names[i]);
	}
}

int cs_config_parse(struct cs_config *cfg, cs_getenv_fn get, enum cs_role role,
		    char *err, size_t errlen)
{
	const char *v;
	int rc;

	memset(cfg, 0, sizeof *cfg);
	err[0] = '\0';
	v = get("CS_PREFIXES");
	if (!v || !*v)
		return -ENOENT;
	if ((rc = parse_prefixes(cfg, v, err, errlen)) < 0 ||
	    (rc = parse_host(cfg, get, role != CS_ROLE_TOOL, err, errlen)) < 0)
		return rc;
	if (role == CS_ROLE_HOST)
		note_needless(cfg, get);
	return 0;
}

/* secure_getenv: in a setuid or file-capability process nothing is read
 * from the caller's environment (preload/wrap.c also stays off there). */
const char *cs_config_env(const char *name)
{
	return secure_getenv(name);
}

int cs_config_load(struct cs_config *cfg, enum cs_role role, char *err,
		   size_t errlen)
{
	int rc = cs_config_parse(cfg, cs_config_env, role, err, errlen);

	if (rc == 0)
		cs_log_level = cfg->log_level;
	return rc;
}

const struct cs_prefix *cs_config_namespace(const struct cs_config *cfg,
					    const char *name)
{
	for (int i = 0; i < cfg->nprefix; i++)
		if (strcmp(cfg->prefix[i].name, name) == 0)
			return &cfg->prefix[i];
	return NULL;
}
