/* test_config.c - CS_* parsing: what users type, and the sentence they get
 * back when it is wrong. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cs.h"
#include "settings.h"

static const char *const *env;   /* NULL-terminated name, value pairs */

static const char *fake_getenv(const char *name)
{
	for (const char *const *p = env; p && p[0]; p += 2)
		if (strcmp(p[0], name) == 0)
			return p[1];
	return NULL;
}

static struct cs_config cfg;
static char err[512];

static int parse(const char *const *e, enum cs_role role)
{
	env = e;
	return cs_settings_parse(&cfg, fake_getenv, role, err, sizeof err);
}

#define KEY "0123456789abcdef"      /* the shortest secret allowed */
#define BASE "CS_MYSQL", "mysql://cs:pw@127.0.0.1:3306/cs", "CS_SECRET", KEY

static void unset_prefixes_means_inert(void **state)
{
	(void)state;
	const char *e[] = { BASE, NULL };
	assert_int_equal(parse(e, CS_ROLE_TOOL), -ENOENT);
}

static void full_configuration(void **state)
{
	(void)state;
	const char *e[] = { "CS_PREFIXES", "img=/srv//img/./,css=/srv/css/",
			    "CS_NODE", "web1", "CS_NODE_URL", "http://10.0.0.1:8081/",
			    "CS_LISTEN", "0.0.0.0:8081", "CS_MEMCACHED", "127.0.0.1:11211",
			    "CS_REPLICAS", "3", "CS_ZONE", "rack-a", "CS_LOG", "info",
			    "CS_SPOOL", "/var/spool//cs/", "CS_DB_CONNECTIONS", "2",
			    "CS_ADMIN_TIMEOUT", "300", "CS_LOG_FILE", "/var/log/cs.log", BASE, NULL };
	assert_int_equal(parse(e, CS_ROLE_AGENT), 0);
	assert_int_equal(cfg.nprefix, 2);
	assert_string_equal(cfg.prefix[0].name, "img");
	assert_string_equal(cfg.prefix[0].dir, "/srv/img");
	assert_int_equal(cfg.prefix[0].dirlen, 8);
	assert_string_equal(cfg.prefix[1].dir, "/srv/css");
	assert_string_equal(cfg.node, "web1");
	assert_string_equal(cfg.node_url, "http://10.0.0.1:8081");
	assert_int_equal(cfg.replicas, 3);
	assert_string_equal(cfg.zone, "rack-a");
	assert_int_equal(cfg.log_level, CS_LOG_INFO);
	assert_memory_equal(cfg.secret, KEY, 16);
	assert_int_equal(cfg.secret_len, 16);
	assert_int_equal(cfg.secret_old_len, 0);
	assert_string_equal(cfg.mysql.user, "cs");
	assert_int_equal(cfg.mysql.nhosts, 1);
	assert_int_equal(cfg.mysql.host[0].port, 3306);
	assert_string_equal(cfg.spool, "/var/spool/cs");
	assert_int_equal(cfg.db_connections, 2);
	assert_int_equal(cfg.admin_timeout_ms, 300000);
	assert_string_equal(cfg.log_file, "/var/log/cs.log");
}

static void defaults(void **state)
{
	(void)state;
	const char *e[] = { "CS_PREFIXES", "img=/srv/img", BASE, NULL };
	assert_int_equal(parse(e, CS_ROLE_TOOL), 0);
	assert_int_equal(cfg.replicas, 2);
	assert_int_equal(cfg.log_level, CS_LOG_ERROR);
	assert_true(cfg.node[0] != '\0');       /* hostname */
	assert_string_equal(cfg.zone, "");
	assert_string_equal(cfg.memcached, "");
	assert_int_equal(cfg.db_connections, 4);
	assert_int_equal(cfg.admin_timeout_ms, 60000);
	assert_int_equal(cfg.miss_timeout_ms, CS_MISS_TIMEOUT_MS);
}

static void refuses(const char *var, const char *const *e, enum cs_role role);

/* A host process needs its namespaces and CS_SPOOL, nothing of the
 * registry and no secret; it is told when it holds what it should not. */
static void host_needs_little(void **state)
{
	(void)state;
	const char *host[] = { "CS_PREFIXES", "img=/srv/img", "CS_SPOOL", "/var/spool/cs",
			       "CS_MISS_TIMEOUT", "2.5", NULL };
	assert_int_equal(parse(host, CS_ROLE_HOST), 0);
	assert_string_equal(cfg.spool, "/var/spool/cs");
	assert_int_equal(cfg.miss_timeout_ms, 2500);
	assert_string_equal(cfg.needless, "");
	assert_int_equal(cfg.secret_len, 0);

	const char *leaky[] = { "CS_PREFIXES", "img=/srv/img", "CS_SPOOL", "/var/spool/cs",
				BASE, NULL };
	assert_int_equal(parse(leaky, CS_ROLE_HOST), 0);
	assert_string_equal(cfg.needless, "CS_SECRET, CS_MYSQL");
	assert_int_equal(cfg.secret_len, 0);            /* read, but not kept */
	assert_string_equal(cfg.mysql.pass, "");

	const char *file[] = { "CS_PREFIXES", "img=/srv/img", "CS_SPOOL", "/s",
			       "CS_SECRET_FILE", "/etc/shadow", NULL };
	assert_int_equal(parse(file, CS_ROLE_HOST), 0);
	assert_string_equal(cfg.needless, "CS_SECRET_FILE");

	const char *no_spool[] = { "CS_PREFIXES", "img=/srv/img", NULL };
	const char *timeout[] = { "CS_PREFIXES", "img=/srv/img", "CS_SPOOL", "/s",
				  "CS_MISS_TIMEOUT", "soon", NULL };
	const char *zero[] = { "CS_PREFIXES", "img=/srv/img", "CS_SPOOL", "/s",
			       "CS_MISS_TIMEOUT", "0", NULL };
	char longer[200];
	memset(longer, 'x', sizeof longer - 1);
	longer[0] = '/';
	longer[sizeof longer - 1] = '\0';
	const char *too_long[] = { "CS_PREFIXES", "img=/srv/img", "CS_SPOOL", longer, NULL };
	refuses("CS_SPOOL", no_spool, CS_ROLE_HOST);
	refuses("CS_MISS_TIMEOUT", timeout, CS_ROLE_HOST);
	refuses("CS_MISS_TIMEOUT", zero, CS_ROLE_HOST);
	refuses("CS_SPOOL", too_long, CS_ROLE_HOST);
}

/* Each bad value is refused with a sentence naming its variable. */
static void refuses(const char *var, const char *const *e, enum cs_role role)
{
	int rc = parse(e, role);
	if (rc != -EINVAL || !strstr(err, var))
		fail_msg("expected -EINVAL naming %s, got %d: '%s'", var, rc, err);
}

static void bad_prefixes(void **state)
{
	(void)state;
	const char *no_eq[] = { "CS_PREFIXES", "img", BASE, NULL };
	const char *rel[] = { "CS_PREFIXES", "img=srv/img", BASE, NULL };
	const char *root[] = { "CS_PREFIXES", "img=/", BASE, NULL };
	const char *root2[] = { "CS_PREFIXES", "img=/srv/..", BASE, NULL };
	const char *dup[] = { "CS_PREFIXES", "img=/a,img=/b", BASE, NULL };
	const char *overlap[] = { "CS_PREFIXES", "a=/srv/x,b=/srv/x/y", BASE, NULL };
	const char *badname[] = { "CS_PREFIXES", "i m g=/srv/x", BASE, NULL };
	const char *empty_dir[] = { "CS_PREFIXES", "img=", BASE, NULL };

	refuses("CS_PREFIXES", no_eq, CS_ROLE_TOOL);
	refuses("CS_PREFIXES", rel, CS_ROLE_TOOL);
	refuses("CS_PREFIXES", root, CS_ROLE_TOOL);
	refuses("CS_PREFIXES", root2, CS_ROLE_TOOL);
	refuses("CS_PREFIXES", dup, CS_ROLE_TOOL);
	refuses("CS_PREFIXES", overlap, CS_ROLE_TOOL);
	refuses("CS_PREFIXES", badname, CS_ROLE_TOOL);
	refuses("CS_PREFIXES", empty_dir, CS_ROLE_TOOL);
}

static void siblings_do_not_overlap(void **state)
{
	(void)state;
	const char *e[] = { "CS_PREFIXES", "a=/srv/img,b=/srv/img2", BASE, NULL };
	assert_int_equal(parse(e, CS_ROLE_TOOL), 0);
	assert_int_equal(cfg.nprefix, 2);
}

static void bad_other_variables(void **state)
{
	(void)state;
	const char *no_mysql[] = { "CS_PREFIXES", "img=/x", "CS_SECRET", KEY, NULL };
	const char *short_secret[] = { "CS_PREFIXES", "img=/x", "CS_MYSQL", "mysql://u@h/db",
				       "CS_SECRET", "0123456789abcde", NULL };
	const char *no_secret[] = { "CS_PREFIXES", "img=/x", "CS_MYSQL", "mysql://u@h/db", NULL };
	const char *short_old[] = { "CS_PREFIXES", "img=/x", "CS_SECRET_OLD", "old", BASE, NULL };
	const char *replicas[] = { "CS_PREFIXES", "img=/x", "CS_REPLICAS", "two", BASE, NULL };
	const char *replicas0[] = { "CS_PREFIXES", "img=/x", "CS_REPLICAS", "0", BASE, NULL };
	const char *log[] = { "CS_PREFIXES", "img=/x", "CS_LOG", "loud", BASE, NULL };
	const char *node[] = { "CS_PREFIXES", "img=/x", "CS_NODE", "web 1", BASE, NULL };
	const char *url[] = { "CS_PREFIXES", "img=/x", "CS_NODE_URL", "ftp://x", BASE, NULL };
	const char *listen[] = { "CS_PREFIXES", "img=/x", "CS_NODE_URL", "http://x",
				 "CS_LISTEN", "8081", "CS_SPOOL", "/s", BASE, NULL };
	const char *server[] = { "CS_PREFIXES", "img=/x", "CS_SPOOL", "/s", BASE, NULL };
	const char *conns[] = { "CS_PREFIXES", "img=/x", "CS_DB_CONNECTIONS", "0", BASE, NULL };
	const char *admin[] = { "CS_PREFIXES", "img=/x", "CS_ADMIN_TIMEOUT", "0.5", BASE, NULL };
	const char *logfile[] = { "CS_PREFIXES", "img=/x", "CS_LOG_FILE", "cs.log", BASE, NULL };
	const char *spool[] = { "CS_PREFIXES", "img=/x", "CS_SPOOL", "spool", BASE, NULL };
	const char *sfile[] = { "CS_PREFIXES", "img=/x", "CS_MYSQL", "mysql://u@h/db",
				"CS_SECRET_FILE", "/nonexistent/secret", NULL };
	const char *no_spool_agent[] = { "CS_PREFIXES", "img=/x", "CS_NODE_URL", "http://x",
					 "CS_LISTEN", "h:1", BASE, NULL };

	refuses("CS_MYSQL", no_mysql, CS_ROLE_TOOL);
	refuses("CS_SECRET", no_secret, CS_ROLE_TOOL);
	refuses("at least 16", short_secret, CS_ROLE_TOOL);
	refuses("CS_SECRET_OLD", short_old, CS_ROLE_TOOL);
	refuses("CS_REPLICAS", replicas, CS_ROLE_TOOL);
	refuses("CS_REPLICAS", replicas0, CS_ROLE_TOOL);
	refuses("CS_LOG", log, CS_ROLE_TOOL);
	refuses("CS_NODE", node, CS_ROLE_TOOL);
	refuses("CS_NODE_URL", url, CS_ROLE_TOOL);
	refuses("CS_LISTEN", listen, CS_ROLE_AGENT);
	refuses("CS_NODE_URL", server, CS_ROLE_AGENT);
	refuses("CS_SPOOL", spool, CS_ROLE_TOOL);
	refuses("CS_SECRET_FILE", sfile, CS_ROLE_TOOL);
	refuses("CS_DB_CONNECTIONS", conns, CS_ROLE_TOOL);
	refuses("CS_ADMIN_TIMEOUT", admin, CS_ROLE_TOOL);
	refuses("CS_LOG_FILE", logfile, CS_ROLE_TOOL);
	refuses("CS_SPOOL", no_spool_agent, CS_ROLE_AGENT);

	/* A URL without a host (it became "http:"), a port with a sign or a
	 * space (strtol took them): found by tests/fuzz/fuzz_config.c. */
	const char *no_host[] = { "CS_PREFIXES", "img=/x", "CS_NODE_URL", "http://", BASE, NULL };
	const char *no_host2[] = { "CS_PREFIXES", "img=/x", "CS_NODE_URL", "https:///", BASE, NULL };
	const char *plus[] = { "CS_PREFIXES", "img=/x", "CS_NODE_URL", "http://x", "CS_LISTEN",
			       "h:+8081", "CS_SPOOL", "/s", BASE, NULL };
	const char *space[] = { "CS_PREFIXES", "img=/x", "CS_NODE_URL", "http://x", "CS_LISTEN",
				"h: 8081", "CS_SPOOL", "/s", BASE, NULL };
	refuses("CS_NODE_URL", no_host, CS_ROLE_TOOL);
	refuses("CS_NODE_URL", no_host2, CS_ROLE_TOOL);
	refuses("CS_LISTEN", plus, CS_ROLE_AGENT);
	refuses("CS_LISTEN", space, CS_ROLE_AGENT);
	const char *ok[] = { "CS_PREFIXES", "img=/x", "CS_NODE_URL", "http://x/", "CS_LISTEN",
			     "[::1]:65535", "CS_SPOOL", "/s", BASE, NULL };
	assert_int_equal(parse(ok, CS_ROLE_AGENT), 0);
	assert_string_equal(cfg.node_url, "http://x");
}

/* Verify: how fast, how often, how long a file changed here is left alone;
 * "off" stops only the background, so `cs-replicate verify` keeps a rate. */
static void verify_settings(void **state)
{
	(void)state;
	const char *dflt[] = { "CS_PREFIXES", "img=/x", BASE, NULL };
	assert_int_equal(parse(dflt, CS_ROLE_TOOL), 0);
	assert_int_equal(cfg.verify_every, 86400);
	assert_int_equal(cfg.verify_settle, 60);
	assert_int_equal(cfg.verify_rate, 4 << 20);
	assert_false(cfg.verify_off);

	const char *set[] = { "CS_PREFIXES", "img=/x", "CS_VERIFY_RATE", "off",
			      "CS_VERIFY_EVERY", "2", "CS_VERIFY_SETTLE", "0", BASE, NULL };
	assert_int_equal(parse(set, CS_ROLE_TOOL), 0);
	assert_true(cfg.verify_off);
	assert_int_equal(cfg.verify_rate, 4 << 20);
	assert_int_equal(cfg.verify_every, 2);
	assert_int_equal(cfg.verify_settle, 0);

	const char *max[] = { "CS_PREFIXES", "img=/x", "CS_VERIFY_RATE", "max", BASE, NULL };
	assert_int_equal(parse(max, CS_ROLE_TOOL), 0);
	assert_false(cfg.verify_off);
	assert_int_equal(cfg.verify_rate, 0);

	const char *zero[] = { "CS_PREFIXES", "img=/x", "CS_VERIFY_EVERY", "0", BASE, NULL };
	const char *word[] = { "CS_PREFIXES", "img=/x", "CS_VERIFY_EVERY", "daily", BASE, NULL };
	const char *rate[] = { "CS_PREFIXES", "img=/x", "CS_VERIFY_RATE", "fast", BASE, NULL };
	refuses("CS_VERIFY_EVERY", zero, CS_ROLE_TOOL);
	refuses("CS_VERIFY_EVERY", word, CS_ROLE_TOOL);
	const char *settle[] = { "CS_PREFIXES", "img=/x", "CS_VERIFY_SETTLE", "-1", BASE, NULL };
	refuses("CS_VERIFY_RATE", rate, CS_ROLE_TOOL);
	refuses("CS_VERIFY_SETTLE", settle, CS_ROLE_TOOL);
}

/* A secret file's trailing newline is not part of the secret; nor is it
 * counted towards the 16 bytes a secret needs. */
static void secret_file_trailing_newline(void **state)
{
	(void)state;
	char path[] = "/tmp/cs-secret-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "hunter2-hunter2-h\n", 18), 18);
	close(fd);
	const char *e[] = { "CS_PREFIXES", "img=/x", "CS_MYSQL", "mysql://u@h/db",
			    "CS_SECRET_FILE", path, NULL };
	assert_int_equal(parse(e, CS_ROLE_TOOL), 0);
	assert_int_equal(cfg.secret_len, 17);
	assert_memory_equal(cfg.secret, "hunter2-hunter2-h", 17);

	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "fifteen bytes..\n", 16), 16);
	close(fd);
	assert_int_equal(parse(e, CS_ROLE_TOOL), -EINVAL);
	assert_non_null(strstr(err, "CS_SECRET_FILE"));
	unlink(path);
}

/* While the secret changes, the one before (CS_SECRET_OLD, or a file) is
 * kept apart from the one signed with. */
static void old_secret(void **state)
{
	(void)state;
	char path[] = "/tmp/cs-secret-XXXXXX";
	const char *e[] = { "CS_PREFIXES", "img=/x", "CS_SECRET_OLD", "the old one, 16+ bytes",
			    BASE, NULL };
	assert_int_equal(parse(e, CS_ROLE_TOOL), 0);
	assert_memory_equal(cfg.secret, KEY, 16);
	assert_int_equal(cfg.secret_old_len, 22);
	assert_memory_equal(cfg.secret_old, "the old one, 16+ bytes", 22);

	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "old secret in a file\n", 21), 21);
	close(fd);
	const char *f[] = { "CS_PREFIXES", "img=/x", "CS_SECRET_OLD_FILE", path, BASE, NULL };
	assert_int_equal(parse(f, CS_ROLE_TOOL), 0);
	unlink(path);
	assert_int_equal(cfg.secret_old_len, 20);
	assert_memory_equal(cfg.secret_old, "old secret in a file", 20);
}

static void symlinked_prefix_remembers_real_dir(void **state)
{
	(void)state;
	char dir[] = "/tmp/cs-cfg-XXXXXX";
	char real[128], link[128];
	assert_non_null(mkdtemp(dir));
	snprintf(real, sizeof real, "%s/real", dir);
	snprintf(link, sizeof link, "%s/link", dir);
	assert_int_equal(mkdir(real, 0755), 0);
	assert_int_equal(symlink(real, link), 0);
	char pfx[200];
	snprintf(pfx, sizeof pfx, "img=%s", link);
	const char *e[] = { "CS_PREFIXES", pfx, BASE, NULL };
	assert_int_equal(parse(e, CS_ROLE_TOOL), 0);
	assert_string_equal(cfg.prefix[0].dir, link);
	assert_string_equal(cfg.prefix[0].real, real);
	unlink(link);
	rmdir(real);
	rmdir(dir);
}

/* A name is judged on all its bytes: a NUL among them is no '.', '_' or
 * '-' (strchr finds the terminator; found by fuzzing journal lines). */
static void names(void **state)
{
	(void)state;
	assert_true(cs_config_name_ok("img", 3));
	assert_true(cs_config_name_ok("a.b_c-D9", 8));
	assert_false(cs_config_name_ok("", 0));
	assert_false(cs_config_name_ok("i\0g", 3));
	assert_false(cs_config_name_ok("img\0", 4));
	assert_false(cs_config_name_ok("i g", 3));
	assert_false(cs_config_name_ok("i/g", 3));
}

static void dsn(void **state)
{
	(void)state;
	struct cs_mysql_dsn d;

	assert_int_equal(cs_mysql_dsn_parse("mysql://u:p%40ss@db.example:3307/cs", &d, err, sizeof err), 0);
	assert_string_equal(d.user, "u");
	assert_string_equal(d.pass, "p@ss");
	assert_int_equal(d.nhosts, 1);
	assert_string_equal(d.host[0].name, "db.example");
	assert_int_equal(d.host[0].port, 3307);
	assert_string_equal(d.database, "cs");

	assert_int_equal(cs_mysql_dsn_parse("mysql://root@localhost/cs?socket=/run/my%20sql.sock", &d, err, sizeof err), 0);
	assert_string_equal(d.user, "root");
	assert_string_equal(d.pass, "");
	assert_string_equal(d.host[0].name, "localhost");
	assert_int_equal(d.host[0].port, 0);
	assert_string_equal(d.socket, "/run/my sql.sock");

	assert_int_equal(cs_mysql_dsn_parse("mysql://u@[::1]:3306/cs", &d, err, sizeof err), 0);
	assert_string_equal(d.host[0].name, "::1");
	assert_int_equal(d.host[0].port, 3306);

	/* Several servers (a Galera cluster), in the order connections try them. */
	assert_int_equal(cs_mysql_dsn_parse("mysql://u:p@g1:3306,g2,[fd00::3]:3308,10.0.0.4:4/cs",
					    &d, err, sizeof err), 0);
	assert_int_equal(d.nhosts, 4);
	assert_string_equal(d.host[0].name, "g1");
	assert_int_equal(d.host[0].port, 3306);
	assert_string_equal(d.host[1].name, "g2");
	assert_int_equal(d.host[1].port, 0);
	assert_string_equal(d.host[2].name, "fd00::3");
	assert_int_equal(d.host[2].port, 3308);
	assert_string_equal(d.host[3].name, "10.0.0.4");
	assert_int_equal(d.host[3].port, 4);
	assert_string_equal(d.user, "u");
	assert_string_equal(d.pass, "p");
	assert_string_equal(d.database, "cs");
	/* none named: the local server, as before */
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@/cs", &d, err, sizeof err), 0);
	assert_int_equal(d.nhosts, 1);
	assert_string_equal(d.host[0].name, "localhost");
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@:3307/cs", &d, err, sizeof err), 0);
	assert_string_equal(d.host[0].name, "localhost");
	assert_int_equal(d.host[0].port, 3307);
	/* an empty one in a list, a bad port in any, more than the most */
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@g1,,g2/cs", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@g1,/cs", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@,g1/cs", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@g1,g2:0/cs", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@g1,[::1/cs", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@g1,[]/cs", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@[::1]x,g2/cs", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@a,b,c,d,e,f,g,h/cs", &d, err, sizeof err), 0);
	assert_int_equal(d.nhosts, CS_MYSQL_HOSTS_MAX);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@a,b,c,d,e,f,g,h,i/cs", &d, err, sizeof err),
			 -EINVAL);

	assert_int_equal(cs_mysql_dsn_parse("postgres://u@h/db", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@h", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@h/", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@h:0/db", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@h:99999/db", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@h:33x/db", &d, err, sizeof err), -EINVAL);
	/* digits only: strtoul took these, the last as port 1 */
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@h:+3306/db", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@h: 3306/db", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@h:-18446744073709551615/db", &d, err,
					    sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@h:/db", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u:%zz@h/db", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u:%4@h/db", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@h/db?socket=rel", &d, err, sizeof err), -EINVAL);
	assert_int_equal(cs_mysql_dsn_parse("mysql://u@h/db?ssl=1", &d, err, sizeof err), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unset_prefixes_means_inert),
		cmocka_unit_test(full_configuration),
		cmocka_unit_test(defaults),
		cmocka_unit_test(host_needs_little),
		cmocka_unit_test(bad_prefixes),
		cmocka_unit_test(siblings_do_not_overlap),
		cmocka_unit_test(bad_other_variables),
		cmocka_unit_test(verify_settings),
		cmocka_unit_test(secret_file_trailing_newline),
		cmocka_unit_test(old_secret),
		cmocka_unit_test(symlinked_prefix_remembers_real_dir),
		cmocka_unit_test(names),
		cmocka_unit_test(dsn),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
