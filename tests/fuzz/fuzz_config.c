/*
 * fuzz_config.c - the CS_* variables: a host's (cs_config_parse,
 * libcs/config.c) and then cs-replicate's (cs_settings_parse,
 * agent/settings.c), for each role.
 *
 * The contract: 0, -ENOENT when CS_PREFIXES is unset or empty, or -EINVAL
 * with one sentence naming the variable at fault.  What a successful parse
 * fills is usable as it stands, so the properties are those of the values:
 * 1 to CS_MAX_PREFIXES namespaces with distinct valid names and normalised,
 * absolute, non-root, non-overlapping directories; CS_SPOOL absolute,
 * normalised and short enough for the socket; numbers in their ranges;
 * names valid; CS_NODE_URL an http(s) URL with a host and no trailing '/';
 * CS_LISTEN host:port with a port of digits from 1 to 65535; the registry's
 * host and database set.  And cs_settings_parse is cs_config_parse first:
 * the same verdict on a host's variables, the same values.
 *
 * CS_SECRET_FILE is left out: a harness must not read files it is named.
 *
 * Input: a role byte, an error buffer size byte, then the values of the
 * variables below in order, apart by '\n' (missing ones unset).
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/un.h>

#include "cs.h"
#include "db.h"
#include "fuzz.h"
#include "settings.h"

static const char *const names[] = {
	"CS_PREFIXES", "CS_SPOOL", "CS_LOG", "CS_MISS_TIMEOUT", "CS_NODE", "CS_NODE_URL",
	"CS_LISTEN", "CS_MEMCACHED", "CS_MYSQL", "CS_SECRET", "CS_REPLICAS",
	"CS_DB_CONNECTIONS", "CS_ZONE", "CS_LOG_FILE",
};
#define NVARS (sizeof names / sizeof *names)
static char *values[NVARS];

static const char *fake_getenv(const char *name)
{
	for (size_t i = 0; i < NVARS; i++)
		if (strcmp(names[i], name) == 0)
			return values[i];
	return NULL;
}

static bool normal_abs(const char *s)
{
	char again[CS_PATH_MAX];

	return s[0] == '/' && cs_path_normalize(NULL, s, again, sizeof again) >= 0 &&
	       strcmp(again, s) == 0;
}

static void check_host(const struct cs_config *c, enum cs_role role)
{
	FUZZ_CHECK(c->nprefix >= 1 && c->nprefix <= CS_MAX_PREFIXES, "%d prefixes", c->nprefix);
	for (int i = 0; i < c->nprefix; i++) {
		const struct cs_prefix *p = &c->prefix[i];
		FUZZ_CHECK(cs_config_name_ok(p->name, strlen(p->name)), "namespace '%s'",
			   fuzz_show(p->name, strlen(p->name)));
		FUZZ_CHECK(p->dirlen == strlen(p->dir) && p->dirlen > 1 && normal_abs(p->dir),
			   "directory '%s' (%zu)", fuzz_show(p->dir, strlen(p->dir)), p->dirlen);
		FUZZ_CHECK(p->reallen == strlen(p->real), "resolved '%s' (%zu)", p->real,
			   p->reallen);
		for (int j = 0; j < i; j++) {
			const struct cs_prefix *o = &c->prefix[j];
			size_t m = o->dirlen < p->dirlen ? o->dirlen : p->dirlen;
			FUZZ_CHECK(strcmp(o->name, p->name) != 0, "namespace '%s' twice", p->name);
			FUZZ_CHECK(!(memcmp(o->dir, p->dir, m) == 0 &&
				     (o->dir[m] == '/' || !o->dir[m]) &&
				     (p->dir[m] == '/' || !p->dir[m])),
				   "'%s' and '%s' overlap", fuzz_show(o->dir, o->dirlen),
				   fuzz_show(p->dir, p->dirlen));
		}
	}
	size_t most = sizeof ((struct sockaddr_un *)0)->sun_path - 2 - strlen(CS_SOCKET_NAME);
	if (c->spool[0])
		FUZZ_CHECK(normal_abs(c->spool) && strlen(c->spool) <= most, "CS_SPOOL '%s'",
			   fuzz_show(c->spool, strlen(c->spool)));
	else
		FUZZ_CHECK(role == CS_ROLE_TOOL, "no CS_SPOOL for role %d", (int)role);
	FUZZ_CHECK(c->log_level >= CS_LOG_ERROR && c->log_level <= CS_LOG_DEBUG, "log level %d",
		   (int)c->log_level);
	FUZZ_CHECK(c->miss_timeout_ms >= 50 && c->miss_timeout_ms <= 600000, "miss timeout %d",
		   c->miss_timeout_ms);
}

static bool port_ok(const char *s)
{
	unsigned long v = 0;

	if (!*s || strlen(s) > 5)
		return false;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	return v >= 1 && v <= 65535;
}

static void check_cluster(const struct cs_config *c, enum cs_role role)
{
	FUZZ_CHECK(cs_config_name_ok(c->node, strlen(c->node)), "CS_NODE '%s'",
		   fuzz_show(c->node, strlen(c->node)));
	if (c->node_url[0]) {
		const char *rest = !strncmp(c->node_url, "http://", 7)    ? c->node_url + 7 :
				   !strncmp(c->node_url, "https://", 8) ? c->node_url + 8 : NULL;
		size_t n = strlen(c->node_url);
		FUZZ_CHECK(rest && *rest && *rest != '/' && c->node_url[n - 1] != '/',
			   "CS_NODE_URL '%s'", fuzz_show(c->node_url, n));
	} else {
		FUZZ_CHECK(role != CS_ROLE_AGENT, "no CS_NODE_URL for the agent");
	}
	if (c->listen[0]) {
		const char *colon = strrchr(c->listen, ':');
		FUZZ_CHECK(colon && colon > c->listen && port_ok(colon + 1), "CS_LISTEN '%s'",
			   fuzz_show(c->listen, strlen(c->listen)));
	} else {
		FUZZ_CHECK(role != CS_ROLE_AGENT, "no CS_LISTEN for the agent");
	}
	FUZZ_CHECK(c->mysql.nhosts >= 1 && c->mysql.nhosts <= CS_MYSQL_HOSTS_MAX &&
		   c->mysql.host[0].name[0] && c->mysql.database[0] &&
		   c->mysql.host[0].port <= 65535 &&
		   (!c->mysql.socket[0] || c->mysql.socket[0] == '/'),
		   "CS_MYSQL %d hosts, host '%s' port %u database '%s' socket '%s'",
		   c->mysql.nhosts, c->mysql.host[0].name, c->mysql.host[0].port,
		   c->mysql.database, c->mysql.socket);
	FUZZ_CHECK(c->secret_len >= 1 && c->secret_len < CS_SECRET_MAX, "secret of %zu bytes",
		   c->secret_len);
	FUZZ_CHECK(c->replicas >= 1 && c->replicas <= CS_MAX_HOLDERS, "CS_REPLICAS %d",
		   c->replicas);
	FUZZ_CHECK(c->db_connections >= 1 && c->db_connections <= CS_DB_CONNECTIONS_MAX,
		   "CS_DB_CONNECTIONS %d", c->db_connections);
	FUZZ_CHECK(!c->zone[0] || cs_config_name_ok(c->zone, strlen(c->zone)), "CS_ZONE '%s'",
		   fuzz_show(c->zone, strlen(c->zone)));
	FUZZ_CHECK(!c->log_file[0] || c->log_file[0] == '/', "CS_LOG_FILE '%s'",
		   fuzz_show(c->log_file, strlen(c->log_file)));
}

static void check_err(int rc, const char *err, size_t errlen)
{
	FUZZ_CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL, "rc %d", rc);
	FUZZ_CHECK(memchr(err, '\0', errlen), "error not terminated within %zu bytes", errlen);
	if (rc == -EINVAL && errlen > 3)
		FUZZ_CHECK(!strncmp(err, "CS_", 3), "error names no variable: '%s'",
			   fuzz_show(err, strlen(err)));
	if (rc == 0 || rc == -ENOENT)
		FUZZ_CHECK(!err[0], "rc %d with error '%s'", rc, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct cs_config host, all;
	struct fuzz_in in = { data, size };
	enum cs_role role = (enum cs_role)(fuzz_byte(&in) % 3);
	size_t errlen = 1 + (size_t)fuzz_byte(&in) * 2;
	char *err = malloc(errlen), *err2 = malloc(errlen);

	if (!err || !err2)
		abort();
	for (size_t i = 0; i < NVARS; i++)
		values[i] = fuzz_field(&in, '\n', NULL);

	int rc = cs_config_parse(&host, fake_getenv, role, err, errlen);
	check_err(rc, err, errlen);
	if (rc == -ENOENT)
		FUZZ_CHECK(!values[0] || !values[0][0], "-ENOENT with CS_PREFIXES '%s'", values[0]);
	if (rc == 0)
		check_host(&host, role);

	int rc2 = cs_settings_parse(&all, fake_getenv, role, err2, errlen);
	check_err(rc2, err2, errlen);
	if (rc < 0 || role == CS_ROLE_HOST) {
		FUZZ_CHECK(rc2 == rc && !strcmp(err, err2), "host part: %d '%s', then %d '%s'", rc,
			   err, rc2, err2);
	} else {
		FUZZ_CHECK(rc2 == 0 || rc2 == -EINVAL, "host part passed, then %d", rc2);
	}
	if (rc2 == 0) {
		FUZZ_CHECK(host.nprefix == all.nprefix &&
			   !memcmp(host.prefix, all.prefix, sizeof host.prefix) &&
			   !strcmp(host.spool, all.spool) && host.log_level == all.log_level &&
			   host.miss_timeout_ms == all.miss_timeout_ms,
			   "cs_settings_parse read a host's variables otherwise");
		if (role != CS_ROLE_HOST)
			check_cluster(&all, role);
	}
	for (size_t i = 0; i < NVARS; i++) {
		free(values[i]);
		values[i] = NULL;
	}
	free(err);
	free(err2);
	return 0;
}
