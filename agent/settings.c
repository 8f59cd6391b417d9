/*
 * settings.c - the CS_* variables only cs-replicate reads: the node's name
 * and address, the registry (CS_MYSQL, CS_MEMCACHED, CS_DB_CONNECTIONS,
 * CS_ADMIN_TIMEOUT), the secret and, while it is being changed, the one
 * before (CS_SECRET_OLD), CS_REPLICAS, CS_ZONE and CS_LOG_FILE.  A host's
 * variables are parsed first, by libcs/config.c; none of this is in
 * libcs.so, so no host process carries the code that reads a secret.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "settings.h"

/* A TCP port: s[0, n) digits only (strtoul alone would take a space, a
 * sign, and wrap "-18446744073709551615" round to 1), from 1 to 65535. */
static bool parse_port(const char *s, size_t n, unsigned *port)
{
	unsigned v = 0;

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*port = v;
	return v >= 1 && v <= 65535;
}

/* One host of CS_MYSQL's list, s[0, n): name, name:port, [IPv6] or
 * [IPv6]:port. */
static int parse_host(const char *s, size_t n, struct cs_mysql_host *h, const char *url,
		      char *err, size_t errlen)
{
	const char *end = s + n, *p;

	if (n == 0)
		return cs_config_fail(err, errlen, "CS_MYSQL: an empty host in '%s'", url);
	if (*s == '[') {
		const char *rb = memchr(s, ']', n);
		if (!rb || rb == s + 1 || !cs_config_copy(h->name, sizeof h->name, s + 1, rb - s - 1))
			return cs_config_fail(err, errlen, "CS_MYSQL: bad [host] in '%s'", url);
		p = rb + 1;
	} else {
		const char *colon = memchr(s, ':', n);
		p = colon ? colon : end;
		if (!cs_config_copy(h->name, sizeof h->name, s, p - s))
			return cs_config_fail(err, errlen, "CS_MYSQL: host too long");
		if (p == s)     /* ":3306" alone, as before lists: the local server */
			strcpy(h->name, "localhost");
	}
	if (p < end && *p == ':') {
		if (!parse_port(p + 1, end - p - 1, &h->port))
			return cs_config_fail(err, errlen, "CS_MYSQL: bad port in '%s'", url);
	} else if (p != end) {
		return cs_config_fail(err, errlen, "CS_MYSQL: cannot parse host in '%s'", url);
	}
	return 0;
}

/* CS_MYSQL's hosts, s[0, n): comma-separated (a comma inside [...] is part
 * of no IPv6 address, but is not taken as a separator either); none at all
 * is localhost. */
static int parse_hosts(const char *s, size_t n, struct cs_mysql_dsn *d, const char *url,
		       char *err, size_t errlen)
{
	const char *end = s + n;
	int rc;

	if (n == 0) {
		strcpy(d->host[0].name, "localhost");
		d->nhosts = 1;
		return 0;
	}
	for (const char *p = s; p <= end;) {
		const char *q = p;
		bool bracket = false;

		while (q < end && (bracket || *q != ',')) {
			bracket = *q == '[' ? true : *q == ']' ? false : bracket;
			q++;
		}
		if (d->nhosts == CS_MYSQL_HOSTS_MAX)
			return cs_config_fail(err, errlen, "CS_MYSQL: more than %d hosts in '%s'",
					      CS_MYSQL_HOSTS_MAX, url);
		if ((rc = parse_host(p, q - p, &d->host[d->nhosts], url, err, errlen)) < 0)
			return rc;
		d->nhosts++;
		p = q + 1;
	}
	return 0;
}

int cs_mysql_dsn_parse(const char *url, struct cs_mysql_dsn *d, char *err,
		       size_t errlen)
{
	static const char scheme[] = "mysql://";
	const char *p, *at, *slash, *q;
	int rc;

	memset(d, 0, sizeof *d);
	if (strncmp(url, scheme, sizeof scheme - 1) != 0)
		return cs_config_fail(err, errlen,
				      "CS_MYSQL: '%s' must start with mysql://", url);
	p = url + sizeof scheme - 1;
	slash = strchr(p, '/');
	if (!slash)
		return cs_config_fail(err, errlen, "CS_MYSQL: no /database in '%s'", url);
	at = memchr(p, '@', slash - p);
	if (at) {
		const char *colon = memchr(p, ':', at - p);
		const char *uend = colon ? colon : at;

		if (cs_pct_decode(p, uend - p, d->user, sizeof d->user) < 0 ||
		    (colon && cs_pct_decode(colon + 1, at - colon - 1, d->pass,
					    sizeof d->pass) < 0))
			return cs_config_fail(err, errlen, "CS_MYSQL: bad user or password");
		p = at + 1;
	}
	if ((rc = parse_hosts(p, slash - p, d, url, err, errlen)) < 0)
		return rc;

	q = strchr(slash, '?');
	size_t dblen = q ? (size_t)(q - slash - 1) : strlen(slash + 1);
	if (dblen == 0 || cs_pct_decode(slash + 1, dblen, d->database, sizeof d->database) <= 0)
		return cs_config_fail(err, errlen, "CS_MYSQL: no database name in '%s'", url);
	while (q && *q) {
		const char *k = q + 1, *amp = strchr(k, '&');
		size_t kl = amp ? (size_t)(amp - k) : strlen(k);

		if (kl > 7 && strncmp(k, "socket=", 7) == 0) {
			if (cs_pct_decode(k + 7, kl - 7, d->socket, sizeof d->socket) < 0 ||
			    d->socket[0] != '/')
				return cs_config_fail(err, errlen,
						      "CS_MYSQL: socket= must be an absolute path");
		} else if (kl) {
			return cs_config_fail(err, errlen,
					      "CS_MYSQL: unknown parameter '%.*s' (only socket=)",
					      (int)kl, k);
		}
		q = amp;
	}
	return 0;
}

/* The secret in the file at path (named by the variable var) into
 * out[CS_SECRET_MAX], trailing white space left out: its *len. */
static int read_secret_file(const char *var, const char *path, unsigned char *out,
			    size_t *len, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	ssize_t n;

	if (fd < 0)
		return cs_config_fail(err, errlen, "%s: cannot open '%s': %s", var, path,
				      strerror(errno));
	n = read(fd, out, CS_SECRET_MAX);
	if (n >= 0 && fstat(fd, &st) == 0 && (st.st_mode & 0007))
		cs_warn("%s: '%s' is readable by every user (mode %04o); "
			"whoever reads it can forge any node's requests: chmod 600 it",
			var, path, (unsigned)(st.st_mode & 07777));
	close(fd);
	if (n < 0)
		return cs_config_fail(err, errlen, "%s: cannot read '%s': %s", var, path,
				      strerror(errno));
	if (n == CS_SECRET_MAX)
		return cs_config_fail(err, errlen, "%s: '%s' is longer than %d bytes", var, path,
				      CS_SECRET_MAX - 1);
	while (n > 0 && isspace(out[n - 1]))
		n--;
	*len = (size_t)n;
	return 0;
}

/* The secret in the variable var (CS_SECRET, CS_SECRET_OLD), else in the
 * file var_FILE names, into out[CS_SECRET_MAX]: *len 0 when neither is set
 * or it is empty, else at least CS_SECRET_MIN. */
static int parse_secret(const char *var, cs_getenv_fn get, unsigned char *out, size_t *len,
			char *err, size_t errlen)
{
	char file_var[32];
	const char *v = get(var);
	int rc;

	snprintf(file_var, sizeof file_var, "%s_FILE", var);
	*len = 0;
	if (v && *v) {
		size_t n = strlen(v);
		if (n >= CS_SECRET_MAX)
			return cs_config_fail(err, errlen, "%s: longer than %d bytes", var,
					      CS_SECRET_MAX - 1);
		memcpy(out, v, n);
		*len = n;
	} else if ((v = get(file_var)) && *v &&
		   (rc = read_secret_file(file_var, v, out, len, err, errlen)) < 0) {
		return rc;
	}
	if (*len > 0 && *len < CS_SECRET_MIN)
		return cs_config_fail(err, errlen,
				      "%s / %s: %zu bytes is too short to keep strangers out; "
				      "give at least %d (e.g. openssl rand -hex 32)",
				      var, file_var, *len, CS_SECRET_MIN);
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
		return cs_config_fail(err, errlen, "%s: '%s' is not a number from %d to %d",
				      name, v, lo, hi);
	*out = (int)n;
	return 0;
}

/* A name (CS_NODE, CS_ZONE) into out[CS_NAME_MAX], if it is one. */
static int parse_name(const char *var, const char *v, char *out, char *err, size_t errlen)
{
	if (!cs_config_name_ok(v, strlen(v)))
		return cs_config_fail(err, errlen, "%s: '%s' must be 1-%d of A-Z a-z 0-9 . _ -",
				      var, v, CS_NAME_MAX - 1);
	strcpy(out, v);
	return 0;
}

/* The node's name, its address, its registry and its secret: the agent's
 * and its commands'. */
/*
 * A size in bytes: digits with an optional K, M, G or T (powers of 1024)
 * and an optional trailing "B" or "iB": "8M", "512k", "1GiB".
 */
bool cs_parse_size(const char *s, uint64_t *v)
{
	static const char units[] = "KMGT";
	char num[32];
	size_t n = strspn(s, "0123456789");
	uint64_t x, mul = 1;
	const char *u;

	if (n == 0 || n >= sizeof num)
		return false;
	memcpy(num, s, n);
	num[n] = '\0';
	if (!cs_parse_u64(num, &x))
		return false;
	s += n;
	if (*s && (u = strchr(units, *s & ~0x20))) {
		for (long k = u - units; k >= 0; k--)
			mul *= 1024;
		s++;
		if (*s == 'i')
			s++;
	}
	if ((*s == 'B' || *s == 'b') && !s[1])
		s++;
	if (*s || (x && mul > UINT64_MAX / x))
		return false;
	*v = x * mul;
	return true;
}

/* A rate in bytes per second: a size, or "max" / "0" for no bound (0), or
 * "off" (*off set; *out keeps dflt, for what still runs by hand). */
static int parse_rate(const char *name, const char *v, uint64_t dflt, uint64_t *out, bool *off,
		      char *err, size_t errlen)
{
	*out = dflt;
	*off = v && strcmp(v, "off") == 0;
	if (!v || !*v || *off)
		return 0;
	if (strcmp(v, "max") == 0) {
		*out = 0;
		return 0;
	}
	if (!cs_parse_size(v, out) || (*out && *out < 4096))
		return cs_config_fail(err, errlen, "%s: '%s' is not a rate in bytes per second "
				      "(like 8M, at least 4K), 'max' or 'off'", name, v);
	return 0;
}

/* CS_DOWN_AFTER, CS_REPAIR_RATE, CS_VERIFY_RATE, CS_VERIFY_EVERY, CS_VERIFY_SETTLE,
 * CS_STATUS_EXACT_MS, CS_CACHE_MAX. */
static int parse_upkeep(struct cs_config *cfg, cs_getenv_fn get, char *err, size_t errlen)
{
	const char *v;
	int rc;

	cfg->down_after_ms = 15000;
	v = get("CS_DOWN_AFTER");
	if (v && *v && !cs_parse_seconds(v, 1, 86400, &cfg->down_after_ms))
		return cs_config_fail(err, errlen, "CS_DOWN_AFTER: '%s' is not a number of "
				      "seconds from 1 to 86400", v);
	/* Off is the background's: `cs-replicate repair` and `verify` still
	 * have a rate. */
	if ((rc = parse_rate("CS_REPAIR_RATE", get("CS_REPAIR_RATE"), 8 << 20, &cfg->repair_rate,
			     &cfg->repair_off, err, errlen)) < 0 ||
	    (rc = parse_rate("CS_VERIFY_RATE", get("CS_VERIFY_RATE"), 4 << 20, &cfg->verify_rate,
			     &cfg->verify_off, err, errlen)) < 0)
		return rc;
	if ((rc = parse_int("CS_VERIFY_EVERY", get("CS_VERIFY_EVERY"), 1, 366 * 86400, 86400,
			    &cfg->verify_every, err, errlen)) < 0 ||
	    (rc = parse_int("CS_VERIFY_SETTLE", get("CS_VERIFY_SETTLE"), 0, 86400, 60,
			    &cfg->verify_settle, err, errlen)) < 0)
		return rc;
	/* Below the client's 2 s read timeout, which would take the server
	 * for dead. */
	if ((rc = parse_int("CS_STATUS_EXACT_MS", get("CS_STATUS_EXACT_MS"), 0, 1500, 1000,
			    &cfg->status_exact_ms, err, errlen)) < 0)
		return rc;
	cfg->cache_max = 0;
	cfg->cache_max_pct = 0;
	v = get("CS_CACHE_MAX");
	if (v && *v) {
		size_t n = strlen(v);
		uint64_t pct;
		if (v[n - 1] == '%') {
			char num[8];
			if (n > sizeof num || (memcpy(num, v, n - 1), num[n - 1] = '\0',
					       !cs_parse_u64(num, &pct)) || pct < 1 || pct > 100)
				return cs_config_fail(err, errlen, "CS_CACHE_MAX: '%s' is not a "
						      "percentage from 1%% to 100%%", v);
			cfg->cache_max_pct = (int)pct;
		} else if (!cs_parse_size(v, &cfg->cache_max) || cfg->cache_max == 0) {
			return cs_config_fail(err, errlen, "CS_CACHE_MAX: '%s' is neither a size "
					      "(like 20G) nor a percentage of the filesystem (like 80%%)", v);
		}
	}
	return 0;
}

static int parse_cluster(struct cs_config *cfg, cs_getenv_fn get, bool agent, char *err,
			 size_t errlen)
{
	const char *v;
	int rc;

	v = get("CS_NODE");
	if (v && *v) {
		if ((rc = parse_name("CS_NODE", v, cfg->node, err, errlen)) < 0)
			return rc;
	} else {
		char host[256] = "";
		gethostname(host, sizeof host - 1);
		char *dot = strchr(host, '.');
		if (dot)
			*dot = '\0';
		if (!cs_config_name_ok(host, strlen(host)))
			return cs_config_fail(err, errlen,
					      "CS_NODE: unset, and hostname '%s' is not a usable node name",
					      host);
		strcpy(cfg->node, host);
	}

	v = get("CS_NODE_URL");
	if (v && *v) {
		size_t len = strlen(v);
		size_t scheme = !strncmp(v, "http://", 7) ? 7 : !strncmp(v, "https://", 8) ? 8 : 0;
		/* and a host: "http://" less its slashes would be "http:" */
		if (!scheme || !v[scheme] || v[scheme] == '/')
			return cs_config_fail(err, errlen, "CS_NODE_URL: '%s' must be http:// or "
					      "https:// and a host", v);
		while (len > 0 && v[len - 1] == '/')
			len--;
		if (!cs_config_copy(cfg->node_url, sizeof cfg->node_url, v, len))
			return cs_config_fail(err, errlen, "CS_NODE_URL: too long");
	} else if (agent) {
		return cs_config_fail(err, errlen,
				      "CS_NODE_URL: unset; peers need the URL of this node's cs-replicate serve");
	}

	v = get("CS_LISTEN");
	if (v && *v) {
		const char *colon = strrchr(v, ':');
		unsigned port;
		if (!colon || colon == v || !parse_port(colon + 1, strlen(colon + 1), &port) ||
		    !cs_config_copy(cfg->listen, sizeof cfg->listen, v, strlen(v)))
			return cs_config_fail(err, errlen, "CS_LISTEN: '%s' is not host:port", v);
	} else if (agent) {
		return cs_config_fail(err, errlen, "CS_LISTEN: unset; give host:port to bind");
	}

	v = get("CS_MEMCACHED");
	if (v && *v && !cs_config_copy(cfg->memcached, sizeof cfg->memcached, v, strlen(v)))
		return cs_config_fail(err, errlen, "CS_MEMCACHED: too long");

	v = get("CS_MYSQL");
	if (!v || !*v)
		return cs_config_fail(err, errlen,
				      "CS_MYSQL: unset; give mysql://user:pass@host:port/db");
	if ((rc = cs_mysql_dsn_parse(v, &cfg->mysql, err, errlen)) < 0)
		return rc;

	if ((rc = parse_secret("CS_SECRET", get, cfg->secret, &cfg->secret_len, err,
			       errlen)) < 0 ||
	    (rc = parse_secret("CS_SECRET_OLD", get, cfg->secret_old, &cfg->secret_old_len,
			       err, errlen)) < 0)
		return rc;
	if (cfg->secret_len == 0)
		return cs_config_fail(err, errlen,
				      "CS_SECRET / CS_SECRET_FILE: unset or empty; nodes cannot authenticate each other");

	/* A command's statements (status, repair, verify ... over the whole
	 * registry) may take far longer than an agent's lookups: their own
	 * read timeout, so that a slow answer is waited for. */
	cfg->admin_timeout_ms = 60000;
	v = get("CS_ADMIN_TIMEOUT");
	if (v && *v && !cs_parse_seconds(v, 1, 86400, &cfg->admin_timeout_ms))
		return cs_config_fail(err, errlen, "CS_ADMIN_TIMEOUT: '%s' is not a number of "
				      "seconds from 1 to 86400", v);

	if ((rc = parse_int("CS_REPLICAS", get("CS_REPLICAS"), 1, CS_MAX_HOLDERS, 2,
			    &cfg->replicas, err, errlen)) < 0 ||
	    (rc = parse_int("CS_DB_CONNECTIONS", get("CS_DB_CONNECTIONS"), 1,
			    CS_DB_CONNECTIONS_MAX, 4, &cfg->db_connections, err, errlen)) < 0)
		return rc;

	/* A miss may take CS_FETCH_TIMEOUT plus its size at CS_FETCH_MIN_RATE,
	 * from all holders together; a holder slower than the rate for a
	 * second is left for the next.  121 KB: 1.5 + 0.47 s. */
	cfg->fetch_timeout_ms = 1500;
	cfg->fetch_min_rate = 256 * 1024;
	v = get("CS_FETCH_TIMEOUT");
	if (v && *v && !cs_parse_seconds(v, 0.1, 3600, &cfg->fetch_timeout_ms))
		return cs_config_fail(err, errlen, "CS_FETCH_TIMEOUT: '%s' is not a number "
				      "of seconds from 0.1 to 3600", v);
	v = get("CS_FETCH_MIN_RATE");
	if (v && *v && (!cs_parse_u64(v, &cfg->fetch_min_rate) || cfg->fetch_min_rate < 1024 ||
			cfg->fetch_min_rate > (1ULL << 40)))
		return cs_config_fail(err, errlen, "CS_FETCH_MIN_RATE: '%s' is not a number of "
				      "bytes per second from 1024 up", v);

	if ((rc = parse_upkeep(cfg, get, err, errlen)) < 0)
		return rc;

	/* TLS: an https:// node serves with its certificate and key; every
	 * node verifies https peers against CS_TLS_CA (or the system's CAs). */
	static const struct { const char *name; size_t off; } tls[] = {
		{ "CS_TLS_CERT", offsetof(struct cs_config, tls_cert) },
		{ "CS_TLS_KEY", offsetof(struct cs_config, tls_key) },
		{ "CS_TLS_CA", offsetof(struct cs_config, tls_ca) },
	};
	for (size_t i = 0; i < sizeof tls / sizeof *tls; i++) {
		v = get(tls[i].name);
		if (v && *v && (v[0] != '/' ||
				!cs_config_copy((char *)cfg + tls[i].off, CS_PATH_MAX, v, strlen(v))))
			return cs_config_fail(err, errlen, "%s: '%s' is not an absolute path",
					      tls[i].name, v);
	}
	if (agent && !strncmp(cfg->node_url, "https://", 8) && (!cfg->tls_cert[0] || !cfg->tls_key[0]))
		return cs_config_fail(err, errlen, "CS_NODE_URL is https://: give CS_TLS_CERT and "
				      "CS_TLS_KEY, this node's certificate and key (PEM)");
	if (!!cfg->tls_cert[0] != !!cfg->tls_key[0])
		return cs_config_fail(err, errlen, "CS_TLS_CERT and CS_TLS_KEY go together");

	v = get("CS_ZONE");
	if (v && *v && (rc = parse_name("CS_ZONE", v, cfg->zone, err, errlen)) < 0)
		return rc;

	v = get("CS_LOG_FILE");
	if (v && *v && (v[0] != '/' ||
			!cs_config_copy(cfg->log_file, sizeof cfg->log_file, v, strlen(v))))
		return cs_config_fail(err, errlen, "CS_LOG_FILE: '%s' must be an absolute path", v);
	return 0;
}

int cs_settings_parse(struct cs_config *cfg, cs_getenv_fn get, enum cs_role role,
		      char *err, size_t errlen)
{
	int rc = cs_config_parse(cfg, get, role, err, errlen);

	if (rc < 0 || role == CS_ROLE_HOST)
		return rc;
	return parse_cluster(cfg, get, role == CS_ROLE_AGENT, err, errlen);
}

int cs_settings_load(struct cs_config *cfg, enum cs_role role, char *err, size_t errlen)
{
	int rc = cs_settings_parse(cfg, cs_config_env, role, err, errlen);

	if (rc == 0)
		cs_log_level = cfg->log_level;
	return rc;
}
