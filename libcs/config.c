/*
 * config.c - the CS_* environment variables, parsed once per process.
 *
 * The only file in libcs that reads the environment.  Each role reads what
 * it needs: a host process (the preloaded library) its namespaces, CS_SPOOL
 * and CS_LOG, and nothing secret; cs-replicate also the registry, the secret
 * and the node's address.  The preloaded library calls cs_config_load from
 * its constructor and keeps a copy: nginx rewrites environ for setproctitle
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

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Names travel in URLs, memcached keys and SQL: keep them plain. */
static bool name_ok(const char *s, size_t len)
{
	if (len == 0 || len >= CS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

static bool copy(char *dst, size_t dstsz, const char *src, size_t len)
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
			return fail(err, errlen,
				    "CS_PREFIXES: '%.*s' is not name=/absolute/dir",
				    (int)len, p);
		if (cfg->nprefix == CS_MAX_PREFIXES)
			return fail(err, errlen,
				    "CS_PREFIXES: more than %d prefixes",
				    CS_MAX_PREFIXES);

		struct cs_prefix *px = &cfg->prefix[cfg->nprefix];
		size_t nlen = eq - p, dlen = len - nlen - 1;
		char dir[CS_PATH_MAX];

		if (!name_ok(p, nlen))
			return fail(err, errlen,
				    "CS_PREFIXES: namespace '%.*s' must be 1-%d of A-Z a-z 0-9 . _ -",
				    (int)nlen, p, CS_NAME_MAX - 1);
		if (dlen == 0 || eq[1] != '/' || !copy(dir, sizeof dir, eq + 1, dlen))
			return fail(err, errlen,
				    "CS_PREFIXES: directory of '%.*s' must be an absolute path",
				    (int)nlen, p);
		int n = cs_path_normalize("/", dir, px->dir, sizeof px->dir);
		if (n < 0)
			return fail(err, errlen, "CS_PREFIXES: bad directory '%s'", dir);
		if (n == 1)
			return fail(err, errlen,
				    "CS_PREFIXES: '%.*s' may not be the root directory",
				    (int)nlen, p);
		px->dirlen = n;
		copy(px->name, sizeof px->name, p, nlen);

		/* The same tree reached through a symlinked parent is the same
		 * namespace: remember the resolved form too. */
		char real[PATH_MAX];
		px->real[0] = '\0';
		px->reallen = 0;
		if (realpath(px->dir, real) && strcmp(real, px->dir) != 0 &&
		    copy(px->real, sizeof px->real, real, strlen(real)))
			px->reallen = strlen(real);

		for (int i = 0; i < cfg->nprefix; i++) {
			const struct cs_prefix *o = &cfg->prefix[i];
			size_t m = o->dirlen < px->dirlen ? o->dirlen : px->dirlen;

			if (strcmp(o->name, px->name) == 0)
				return fail(err, errlen,
					    "CS_PREFIXES: namespace '%s' given twice",
					    px->name);
			if (memcmp(o->dir, px->dir, m) == 0 &&
			    (o->dir[m] == '/' || o->dir[m] == '\0') &&
			    (px->dir[m] == '/' || px->dir[m] == '\0'))
				return fail(err, errlen,
					    "CS_PREFIXES: directories of '%s' and '%s' overlap",
					    o->name, px->name);
		}
		cfg->nprefix++;
		p += len;
	}
	if (cfg->nprefix == 0)
		return fail(err, errlen, "CS_PREFIXES: no name=/dir pair given");
	return 0;
}

int cs_mysql_dsn_parse(const char *url, struct cs_mysql_dsn *d, char *err,
		       size_t errlen)
{
	static const char scheme[] = "mysql://";
	const char *p, *at, *slash, *q, *hostend;

	memset(d, 0, sizeof *d);
	if (strncmp(url, scheme, sizeof scheme - 1) != 0)
		return fail(err, errlen,
			    "CS_MYSQL: '%s' must start with mysql://", url);
	p = url + sizeof scheme - 1;
	slash = strchr(p, '/');
	if (!slash)
		return fail(err, errlen, "CS_MYSQL: no /database in '%s'", url);
	at = memchr(p, '@', slash - p);
	if (at) {
		const char *colon = memchr(p, ':', at - p);
		const char *uend = colon ? colon : at;

		if (cs_pct_decode(p, uend - p, d->user, sizeof d->user) < 0 ||
		    (colon && cs_pct_decode(colon + 1, at - colon - 1, d->pass,
					    sizeof d->pass) < 0))
			return fail(err, errlen, "CS_MYSQL: bad user or password");
		p = at + 1;
	}
	hostend = slash;
	if (*p == '[') {
		const char *rb = memchr(p, ']', slash - p);
		if (!rb || !copy(d->host, sizeof d->host, p + 1, rb - p - 1))
			return fail(err, errlen, "CS_MYSQL: bad [host] in '%s'", url);
		p = rb + 1;
	} else {
		const char *colon = memchr(p, ':', slash - p);
		hostend = colon ? colon : slash;
		if (!copy(d->host, sizeof d->host, p, hostend - p))
			return fail(err, errlen, "CS_MYSQL: host too long");
		p = hostend;
	}
	if (*p == ':') {
		char *end;
		unsigned long port = strtoul(p + 1, &end, 10);
		if (end != slash || port == 0 || port > 65535)
			return fail(err, errlen, "CS_MYSQL: bad port in '%s'", url);
		d->port = port;
	} else if (p != slash) {
		return fail(err, errlen, "CS_MYSQL: cannot parse host in '%s'", url);
	}
	if (d->host[0] == '\0')
		strcpy(d->host, "localhost");

	q = strchr(slash, '?');
	size_t dblen = q ? (size_t)(q - slash - 1) : strlen(slash + 1);
	if (dblen == 0 || cs_pct_decode(slash + 1, dblen, d->database, sizeof d->database) <= 0)
		return fail(err, errlen, "CS_MYSQL: no database name in '%s'", url);
	while (q && *q) {
		const char *k = q + 1, *amp = strchr(k, '&');
		size_t kl = amp ? (size_t)(amp - k) : strlen(k);

		if (kl > 7 && strncmp(k, "socket=", 7) == 0) {
			if (cs_pct_decode(k + 7, kl - 7, d->socket, sizeof d->socket) < 0 ||
			    d->socket[0] != '/')
				return fail(err, errlen,
					    "CS_MYSQL: socket= must be an absolute path");
		} else if (kl) {
			return fail(err, errlen,
				    "CS_MYSQL: unknown parameter '%.*s' (only socket=)",
				    (int)kl, k);
		}
		q = amp;
	}
	return 0;
}

static int read_secret_file(struct cs_config *cfg, const char *path, char *err,
			    size_t errlen)
{
	int fd = cs_libc.open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return fail(err, errlen, "CS_SECRET_FILE: cannot open '%s': %s",
			    path, strerror(errno));
	n = read(fd, cfg->secret, sizeof cfg->secret);
	cs_libc.close(fd);
	if (n < 0)
		return fail(err, errlen, "CS_SECRET_FILE: cannot read '%s': %s",
			    path, strerror(errno));
	if ((size_t)n == sizeof cfg->secret)
		return fail(err, errlen, "CS_SECRET_FILE: '%s' is longer than %d bytes",
			    path, CS_SECRET_MAX - 1);
	while (n > 0 && isspace(cfg->secret[n - 1]))
		n--;
	cfg->secret_len = n;
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
		return fail(err, errlen, "CS_LOG: '%s' is not error, warn, info or debug", v);
	cfg->log_level = i;
	return 0;
}

/* A whole number in [lo, hi], or the default when unset. */
static int parse_int(const char *name, const char *v, int lo, int hi, int def, int *out,
		     char *err, size_t errlen)
{
	uint64_t n;

	*out = def;
	if (!v || !*v)
		return 0;
	if (!cs_parse_u64(v, &n) || n < (uint64_t)lo || n > (uint64_t)hi)
		return fail(err, errlen, "%s: '%s' is not a number from %d to %d", name, v, lo, hi);
	*out = (int)n;
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
			return fail(err, errlen, "CS_SPOOL: '%s' must be an absolute path", v);
		/* The agent's socket lives there, and a socket's path is short. */
		if (strlen(cfg->spool) + 1 + strlen(CS_SOCKET_NAME) >=
		    sizeof ((struct sockaddr_un *)0)->sun_path)
			return fail(err, errlen, "CS_SPOOL: '%s' is too long for the agent's socket "
				    "(at most %zu characters)", v,
				    sizeof ((struct sockaddr_un *)0)->sun_path - 2 - strlen(CS_SOCKET_NAME));
	} else if (need_spool) {
		return fail(err, errlen,
			    "CS_SPOOL: unset; give the directory of this node's agent socket and journals");
	}
	if ((rc = parse_log(cfg, get("CS_LOG"), err, errlen)) < 0)
		return rc;
	cfg->miss_timeout_ms = CS_MISS_TIMEOUT_MS;
	v = get("CS_MISS_TIMEOUT");
	if (v && *v) {
		char *end;
		double s = strtod(v, &end);
		if (end == v || *end || !(s >= 0.05 && s <= 600))
			return fail(err, errlen,
				    "CS_MISS_TIMEOUT: '%s' is not a number of seconds from 0.05 to 600", v);
		cfg->miss_timeout_ms = (int)(s * 1000 + 0.5);
	}
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

/* The node's name, its address, its registry and its secret: the agent's
 * and its commands'. */
static int parse_cluster(struct cs_config *cfg, cs_getenv_fn get, bool agent, char *err,
			 size_t errlen)
{
	const char *v;
	int rc;

	v = get("CS_NODE");
	if (v && *v) {
		if (!name_ok(v, strlen(v)))
			return fail(err, errlen,
				    "CS_NODE: '%s' must be 1-%d of A-Z a-z 0-9 . _ -",
				    v, CS_NAME_MAX - 1);
		strcpy(cfg->node, v);
	} else {
		char host[256] = "";
		gethostname(host, sizeof host - 1);
		char *dot = strchr(host, '.');
		if (dot)
			*dot = '\0';
		if (!name_ok(host, strlen(host)))
			return fail(err, errlen,
				    "CS_NODE: unset, and hostname '%s' is not a usable node name",
				    host);
		strcpy(cfg->node, host);
	}

	v = get("CS_NODE_URL");
	if (v && *v) {
		size_t len = strlen(v);
		if (strncmp(v, "http://", 7) && strncmp(v, "https://", 8))
			return fail(err, errlen,
				    "CS_NODE_URL: '%s' must start with http:// or https://", v);
		while (len > 0 && v[len - 1] == '/')
			len--;
		if (!copy(cfg->node_url, sizeof cfg->node_url, v, len))
			return fail(err, errlen, "CS_NODE_URL: too long");
	} else if (agent) {
		return fail(err, errlen,
			    "CS_NODE_URL: unset; peers need the URL of this node's cs-replicate serve");
	}

	v = get("CS_LISTEN");
	if (v && *v) {
		const char *colon = strrchr(v, ':');
		char *end;
		long port = colon ? strtol(colon + 1, &end, 10) : 0;
		if (!colon || colon == v || *end || port <= 0 || port > 65535 ||
		    !copy(cfg->listen, sizeof cfg->listen, v, strlen(v)))
			return fail(err, errlen, "CS_LISTEN: '%s' is not host:port", v);
	} else if (agent) {
		return fail(err, errlen, "CS_LISTEN: unset; give host:port to bind");
	}

	v = get("CS_MEMCACHED");
	if (v && *v && !copy(cfg->memcached, sizeof cfg->memcached, v, strlen(v)))
		return fail(err, errlen, "CS_MEMCACHED: too long");

	v = get("CS_MYSQL");
	if (!v || !*v)
		return fail(err, errlen,
			    "CS_MYSQL: unset; give mysql://user:pass@host:port/db");
	if ((rc = cs_mysql_dsn_parse(v, &cfg->mysql, err, errlen)) < 0)
		return rc;

	v = get("CS_SECRET");
	if (v && *v) {
		size_t len = strlen(v);
		if (len >= CS_SECRET_MAX)
			return fail(err, errlen, "CS_SECRET: longer than %d bytes",
				    CS_SECRET_MAX - 1);
		memcpy(cfg->secret, v, len);
		cfg->secret_len = len;
	} else if ((v = get("CS_SECRET_FILE")) && *v) {
		if ((rc = read_secret_file(cfg, v, err, errlen)) < 0)
			return rc;
	}
	if (cfg->secret_len == 0)
		return fail(err, errlen,
			    "CS_SECRET / CS_SECRET_FILE: unset or empty; nodes cannot authenticate each other");

	if ((rc = parse_int("CS_REPLICAS", get("CS_REPLICAS"), 1, CS_MAX_HOLDERS, 2,
			    &cfg->replicas, err, errlen)) < 0 ||
	    (rc = parse_int("CS_DB_CONNECTIONS", get("CS_DB_CONNECTIONS"), 1, 64, 4,
			    &cfg->db_connections, err, errlen)) < 0)
		return rc;

	v = get("CS_ZONE");
	if (v && *v) {
		if (!name_ok(v, strlen(v)))
			return fail(err, errlen,
				    "CS_ZONE: '%s' must be 1-%d of A-Z a-z 0-9 . _ -",
				    v, CS_NAME_MAX - 1);
		strcpy(cfg->zone, v);
	}

	v = get("CS_LOG_FILE");
	if (v && *v && (v[0] != '/' || !copy(cfg->log_file, sizeof cfg->log_file, v, strlen(v))))
		return fail(err, errlen, "CS_LOG_FILE: '%s' must be an absolute path", v);
	return 0;
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
	if (role == CS_ROLE_HOST) {
		note_needless(cfg, get);
		return 0;
	}
	return parse_cluster(cfg, get, role == CS_ROLE_AGENT, err, errlen);
}

static const char *env_get(const char *name)
{
	return getenv(name);
}

int cs_config_load(struct cs_config *cfg, enum cs_role role, char *err,
		   size_t errlen)
{
	int rc = cs_config_parse(cfg, env_get, role, err, errlen);

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
