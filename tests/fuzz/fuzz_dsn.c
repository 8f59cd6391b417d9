/*
 * fuzz_dsn.c - CS_MYSQL (cs_mysql_dsn_parse, agent/settings.c):
 * mysql://[user[:pass]@]host[:port][,host[:port]...]/database[?socket=/path],
 * with user, password, database and socket percent-encoded.
 *
 * Properties:
 *   - whatever the string, a DSN the parser accepts has 1 to
 *     CS_MYSQL_HOSTS_MAX hosts, each named, and a database, a socket that
 *     is absolute if any, and, with one host, a port that is the digits
 *     written after the host (1 to 65535) or none;
 *   - any DSN made of the input's bytes (user, password, database and
 *     socket of any bytes but NUL, encoded; a host name or a bracketed
 *     IPv6 address; any port or none; that host once or twice, apart by a
 *     comma) parses back to exactly its parts.
 *
 * Input: the raw DSN; the same bytes also make the parts: a flags byte,
 * two port bytes, then user, password, host, database, socket apart by
 * '\n'.
 */
#include <errno.h>
#include <stdbool.h>

#include "cs.h"
#include "fuzz.h"
#include "settings.h"

static void raw(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	char *url = fuzz_rest(&in, NULL), err[256];
	struct cs_mysql_dsn d;

	int rc = cs_mysql_dsn_parse(url, &d, err, sizeof err);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL, "'%s': %d", fuzz_show(url, strlen(url)), rc);
	if (rc == 0) {
		FUZZ_CHECK(d.nhosts >= 1 && d.nhosts <= CS_MYSQL_HOSTS_MAX && d.database[0] &&
			   (!d.socket[0] || d.socket[0] == '/'),
			   "'%s': %d hosts, database '%s' socket '%s'", fuzz_show(url, strlen(url)),
			   d.nhosts, d.database, d.socket);
		for (int i = 0; i < d.nhosts; i++)
			FUZZ_CHECK(d.host[i].name[0] && d.host[i].port <= 65535,
				   "'%s': host %d '%s' port %u", fuzz_show(url, strlen(url)), i,
				   d.host[i].name, d.host[i].port);
	}
	if (rc == 0 && d.nhosts == 1) {
		/* The port is what follows the host's last ':' up to the '/'. */
		const char *slash = strchr(url + 8, '/'), *colon = NULL;
		for (const char *p = url + 8; p < slash; p++)
			if (*p == ':')
				colon = p;
		unsigned port = d.host[0].port;
		if (port) {
			char want[8];
			int n = snprintf(want, sizeof want, "%u", port);
			size_t len = slash - colon - 1;
			bool digits = colon && len >= (size_t)n;
			for (size_t i = 0; digits && i < len; i++)
				digits = colon[1 + i] >= '0' && colon[1 + i] <= '9';
			FUZZ_CHECK(digits && port <= 65535 && strtoul(colon + 1, NULL, 10) == port,
				   "'%s': port %u", fuzz_show(url, strlen(url)), port);
		}
	}
	free(url);
}

/* Percent-encode every byte that is not unreserved, '/' included. */
static size_t encode(const char *s, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || (*p && strchr("-._~", *p))) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
	return o;
}

static void made(const uint8_t *data, size_t size)
{
	static const char host_chars[] = "abcdefghijklmnopqrstuvwxyz0123456789.-";
	static const char v6_chars[] = "0123456789abcdef:";
	struct fuzz_in in = { data, size };
	uint8_t flags = fuzz_byte(&in);
	unsigned port = fuzz_byte(&in) << 8;
	port |= fuzz_byte(&in);
	char *f[5];
	size_t len[5];

	for (int i = 0; i < 5; i++)
		if (!(f[i] = fuzz_field(&in, '\n', &len[i])) && !(f[i] = calloc(1, 1)))
			abort();
	char *user = f[0], *pass = f[1], *host = f[2], *db = f[3], *sock = f[4];
	struct cs_mysql_dsn want = { 0 }, got;

	/* Parts that fit the struct, and a host (names, or IPv6 in brackets). */
	if (strlen(user) >= sizeof want.user || strlen(pass) >= sizeof want.pass ||
	    strlen(db) >= sizeof want.database || !db[0] || strlen(sock) + 1 >= sizeof want.socket ||
	    !len[2] || len[2] >= sizeof want.host[0].name)
		goto out;
	bool v6 = flags & 1;
	for (size_t i = 0; i < len[2]; i++)
		host[i] = v6 ? v6_chars[(unsigned char)host[i] % (sizeof v6_chars - 1)]
			     : host_chars[(unsigned char)host[i] % (sizeof host_chars - 1)];
	strcpy(want.user, user);
	strcpy(want.pass, pass);
	want.nhosts = flags & 8 ? 2 : 1;
	for (int i = 0; i < want.nhosts; i++) {
		strcpy(want.host[i].name, host);
		want.host[i].port = (flags & 2) && port ? port : 0;
	}
	strcpy(want.database, db);
	if (flags & 4)
		snprintf(want.socket, sizeof want.socket, "/%s", sock);

	size_t cap = 64 + 3 * (strlen(user) + strlen(pass) + strlen(db) + strlen(want.socket)) +
		     2 * (len[2] + 8);
	char *url = malloc(cap), *w = url;
	if (!url)
		abort();
	w += sprintf(w, "mysql://");
	if (user[0] || pass[0]) {
		w += encode(user, w);
		if (pass[0]) {
			*w++ = ':';
			w += encode(pass, w);
		}
		*w++ = '@';
	}
	for (int i = 0; i < want.nhosts; i++) {
		w += sprintf(w, v6 ? "%s[%s]" : "%s%s", i ? "," : "", host);
		if (want.host[i].port)
			w += sprintf(w, ":%u", want.host[i].port);
	}
	*w++ = '/';
	w += encode(db, w);
	if (want.socket[0]) {
		w += sprintf(w, "?socket=");
		w += encode(want.socket, w);
	}
	*w = '\0';

	char err[256];
	int rc = cs_mysql_dsn_parse(url, &got, err, sizeof err);
	bool hosts = rc == 0 && got.nhosts == want.nhosts;
	for (int i = 0; hosts && i < want.nhosts; i++)
		hosts = !strcmp(got.host[i].name, want.host[i].name) &&
			got.host[i].port == want.host[i].port;
	FUZZ_CHECK(rc == 0 && !strcmp(got.user, want.user) && !strcmp(got.pass, want.pass) &&
		   hosts &&
		   !strcmp(got.database, want.database) && !strcmp(got.socket, want.socket),
		   "'%s': %d %s; user '%s' pass '%s' %d hosts, host '%s' port %u db '%s' socket '%s'",
		   fuzz_show(url, strlen(url)), rc, rc ? err : "", fuzz_show(got.user, strlen(got.user)),
		   fuzz_show(got.pass, strlen(got.pass)), got.nhosts, got.host[0].name, got.host[0].port,
		   fuzz_show(got.database, strlen(got.database)), got.socket);
	free(url);
out:
	for (int i = 0; i < 5; i++)
		free(f[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	raw(data, size);
	made(data, size);
	return 0;
}
