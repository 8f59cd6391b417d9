/*
 * nodes.c - the node table: who is in the cluster, who is up, where to read
 * from and where to push to.
 *
 * The table comes from MySQL (cached here for 2 s and in memcached for 5 s);
 * a node is up while its agent heartbeats (every 2 s, down after
 * CS_DOWN_AFTER without one), and its state is the operator's (active,
 * draining, removed).  Ranking for reads: up before down, not failing
 * lately, active before draining, this node's zone first, then the fastest
 * measured; removed nodes are never asked.  For pushes: up and active only,
 * a zone with fewer copies of the file first (a rack can fail whole), then
 * the node with the fewest files.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "mcache.h"
#include "nodes.h"

#define NODES_LOCAL_MS 2000
#define NODES_FORCE_MS 200      /* an unknown holder reads the table again */
#define NODES_MC_TTL 5
#define COUNTS_LOCAL_MS 10000   /* per-node file counts, for choosing targets */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint32_t self_id;
static struct cs_node tab[CS_MAX_NODES];
static int tab_n;
static int64_t tab_at = -1;
static uint64_t tab_changes;    /* tables read that differed from the one before */
static struct {
	uint32_t id;
	uint64_t files;
} counts[CS_MAX_NODES];
/* Nodes that failed a transfer lately: until when (monotonic ms), and how
 * many times in a row (each doubles the time, from 1 s to CS_DEMOTE_MS). */
static struct {
	uint32_t id;
	int fails;
	int64_t until;
} demoted[16];
static int counts_n;
static int64_t counts_at = -1;
/* Measured speed of peers read from: a moving average of milliseconds per
 * transfer (per MiB for larger ones); 0 while unmeasured. */
static struct {
	uint32_t id;
	double ms;
} speed[CS_MAX_NODES];
static int speed_n;

const char *cs_node_state_name(enum cs_node_state s)
{
	return s == CS_NODE_DRAINING ? "draining" : s == CS_NODE_REMOVED ? "removed" : "active";
}

int cs_node_state_parse(const char *s)
{
	if (!s)
		return -1;
	if (strcmp(s, "active") == 0)
		return CS_NODE_ACTIVE;
	if (strcmp(s, "draining") == 0)
		return CS_NODE_DRAINING;
	if (strcmp(s, "removed") == 0)
		return CS_NODE_REMOVED;
	return -1;
}

bool cs_node_counts(const struct cs_node *n)
{
	return n->up && n->state == CS_NODE_ACTIVE;
}

bool cs_node_serves(const struct cs_node *n)
{
	return n->up && n->state != CS_NODE_REMOVED;
}

/* Register (or refresh) this node; heartbeat also stamps heartbeat_at and
 * the journal backlog. */
static int enrol(bool heartbeat, unsigned long backlog)
{
	struct cs_buf q = { 0 };
	struct cs_db *d;
	int rc;

	cs_sql_str(&q, "INSERT INTO nodes (name, url, zone, heartbeat_at) VALUES (");
	cs_sql_text(&q, cs_cfg.node);
	cs_sql_str(&q, ",");
	cs_sql_text(&q, cs_cfg.node_url);
	cs_sql_str(&q, ",");
	cs_sql_text(&q, cs_cfg.zone);
	cs_sql_str(&q, heartbeat ? ",NOW(3))" : ",NULL)");
	cs_sql_str(&q, " ON DUPLICATE KEY UPDATE id=LAST_INSERT_ID(id)");
	if (heartbeat)
		cs_sql_fmt(&q, ", url=VALUES(url), zone=VALUES(zone), heartbeat_at=NOW(3),"
			       " backlog=%lu", backlog);
	else if (cs_cfg.node_url[0])
		cs_sql_str(&q, ", url=VALUES(url)");
	if (!(d = cs_db_for(&q, &rc)))
		return rc;
	rc = cs_db_exec(d, q.s, q.len, NULL, true);
	if (rc == 0)
		__atomic_store_n(&self_id, (uint32_t)cs_db_insert_id(d), __ATOMIC_RELEASE);
	cs_db_put(d);
	cs_buf_free(&q);
	return rc;
}

int cs_nodes_self(uint32_t *id)
{
	int rc = 0;

	if (!__atomic_load_n(&self_id, __ATOMIC_ACQUIRE))
		rc = enrol(false, 0);
	*id = __atomic_load_n(&self_id, __ATOMIC_ACQUIRE);
	return *id ? 0 : rc ? rc : -EIO;
}

int cs_nodes_heartbeat(unsigned long backlog)
{
	return enrol(true, backlog);
}

/* "id up name url zone state\n" per node; url and zone may be "-" for
 * empty, state is its number. */
static int encode(const struct cs_node *n, int count, char *out, size_t outsz)
{
	size_t len = 0;

	for (int i = 0; i < count; i++) {
		int m = snprintf(out + len, outsz - len, "%" PRIu32 " %d %s %s %s %d\n",
				 n[i].id, n[i].up, n[i].name, n[i].url[0] ? n[i].url : "-",
				 n[i].zone[0] ? n[i].zone : "-", (int)n[i].state);
		if (m < 0 || (size_t)m >= outsz - len)
			return -ENOSPC;
		len += m;
	}
	return (int)len;
}

static int decode(char *s, struct cs_node *n, int max)
{
	int count = 0;
	char *save = NULL;

	for (char *line = strtok_r(s, "\n", &save); line && count < max;
	     line = strtok_r(NULL, "\n", &save)) {
		struct cs_node *x = &n[count];
		int up, state;
		if (sscanf(line, "%" SCNu32 " %d %63s %511s %63s %d", &x->id, &up,
			   x->name, x->url, x->zone, &state) != 6 ||
		    state < CS_NODE_ACTIVE || state > CS_NODE_REMOVED)
			return -EINVAL;
		x->up = up;
		x->state = state;
		if (strcmp(x->url, "-") == 0)
			x->url[0] = '\0';
		if (strcmp(x->zone, "-") == 0)
			x->zone[0] = '\0';
		count++;
	}
	return count;
}

/* The columns every node query starts with (NODE_NCOLUMNS of them), and
 * their reading. */
#define NODE_NCOLUMNS 6
void cs_nodes_sql_up(struct cs_buf *q, const char *n)
{
	cs_sql_fmt(q, "COALESCE(%s.heartbeat_at > NOW(3) - INTERVAL %lld MICROSECOND, 0)", n,
		   (long long)cs_cfg.down_after_ms * 1000);
}

void cs_nodes_sql_counts(struct cs_buf *q, const char *n)
{
	cs_sql_fmt(q, "(%s.state='active' AND ", n);
	cs_nodes_sql_up(q, n);
	cs_sql_str(q, ")");
}

void cs_nodes_sql_serves(struct cs_buf *q, const char *n)
{
	cs_sql_fmt(q, "(%s.state<>'removed' AND ", n);
	cs_nodes_sql_up(q, n);
	cs_sql_str(q, ")");
}

static void node_columns(struct cs_buf *q)
{
	cs_sql_str(q, "SELECT n.id, n.name, n.url, n.zone, ");
	cs_nodes_sql_up(q, "n");
	cs_sql_str(q, ", n.state");
}

static void node_row(MYSQL_ROW row, struct cs_node *x)
{
	int state = cs_node_state_parse(row[5]);

	memset(x, 0, sizeof *x);
	x->id = (uint32_t)cs_db_u64(row[0]);
	snprintf(x->name, sizeof x->name, "%s", row[1] ? row[1] : "");
	snprintf(x->url, sizeof x->url, "%s", row[2] ? row[2] : "");
	snprintf(x->zone, sizeof x->zone, "%s", row[3] ? row[3] : "");
	x->up = row[4] && row[4][0] == '1';
	x->state = state < 0 ? CS_NODE_ACTIVE : state;
}

static int from_db(struct cs_node *n, int max)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int count = 0, rc;

	node_columns(&q);
	cs_sql_str(&q, " FROM nodes n ORDER BY n.id");
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc;
	while ((row = mysql_fetch_row(res)) && count < max)
		node_row(row, &n[count++]);
	mysql_free_result(res);
	return count;
}

/* Whether fresh[0, count) differs from tab in what repair acts on: which
 * nodes there are, which are up, their states.  Caller holds mu. */
static bool locked_differs(const struct cs_node *fresh, int count)
{
	if (count != tab_n)
		return true;
	for (int i = 0; i < count; i++)
		if (fresh[i].id != tab[i].id || fresh[i].up != tab[i].up ||
		    fresh[i].state != tab[i].state)
			return true;
	return false;
}

/* Refresh the table if it is older than NODES_LOCAL_MS, or from MySQL
 * itself with force; caller holds mu.  Keeps the old table when neither
 * server answers. */
static int locked_refresh_how(bool force)
{
	static const char key[] = "cs1:nodes";
	struct cs_node *fresh;
	int count = -EAGAIN;
	size_t len;

	if (!force && tab_at >= 0 && cs_clock_ms() - tab_at <= NODES_LOCAL_MS)
		return 0;
	if (!(fresh = calloc(CS_MAX_NODES, sizeof *fresh)))
		return tab_n ? 0 : -ENOMEM;
	char *v = force ? NULL : cs_mc_get(key, &len);
	if (v) {
		char *z = realloc(v, len + 1);
		if (z) {
			z[len] = '\0';
			count = decode(z, fresh, CS_MAX_NODES);
			v = z;
		}
		free(v);
	}
	if (count <= 0) {
		count = from_db(fresh, CS_MAX_NODES);
		if (count > 0) {
			char *buf = malloc(64 * 1024);
			int m = buf ? encode(fresh, count, buf, 64 * 1024) : -1;
			if (m > 0)
				cs_mc_store(key, buf, m, NODES_MC_TTL, true);
			free(buf);
		}
	}
	if (count > 0) {
		if (locked_differs(fresh, count))
			tab_changes++;
		memcpy(tab, fresh, count * sizeof *fresh);
		tab_n = count;
		tab_at = cs_clock_ms();
	}
	free(fresh);
	if (count > 0 || tab_n > 0)
		return 0;       /* a stale table beats none */
	return count < 0 ? count : -ENOENT;
}

static int locked_refresh(void)
{
	return locked_refresh_how(false);
}

static bool same_zone(const struct cs_node *n)
{
	return cs_cfg.zone[0] && strcmp(n->zone, cs_cfg.zone) == 0;
}

void cs_nodes_demote(uint32_t id)
{
	int64_t now = cs_clock_ms(), ms = 1000;
	size_t k = 0;

	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < sizeof demoted / sizeof *demoted; i++) {
		if (demoted[i].id == id) {
			k = i;
			break;
		}
		if (demoted[i].until < demoted[k].until)
			k = i;          /* else the one that ends first */
	}
	if (demoted[k].id != id)
		demoted[k].fails = 0;
	demoted[k].id = id;
	for (int f = demoted[k].fails++; f > 0 && ms < CS_DEMOTE_MS; f--)
		ms *= 2;
	demoted[k].until = now + (ms < CS_DEMOTE_MS ? ms : CS_DEMOTE_MS);
	pthread_mutex_unlock(&mu);
}

void cs_nodes_worked(uint32_t id)
{
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < sizeof demoted / sizeof *demoted; i++)
		if (demoted[i].id == id)
			demoted[i].fails = 0, demoted[i].until = 0;
	pthread_mutex_unlock(&mu);
}

static bool locked_demoted(uint32_t id)
{
	int64_t now = cs_clock_ms();

	for (size_t i = 0; i < sizeof demoted / sizeof *demoted; i++)
		if (demoted[i].id == id && demoted[i].until > now)
			return true;
	return false;
}

bool cs_nodes_is_demoted(uint32_t id)
{
	pthread_mutex_lock(&mu);
	bool d = locked_demoted(id);
	pthread_mutex_unlock(&mu);
	return d;
}

/* Read ranking: lower is better (up, not failing lately, active, this
 * zone). */
static int read_rank(const struct cs_node *n)
{
	return (n->up ? 0 : 8) + (locked_demoted(n->id) ? 4 : 0) +
	       (n->state == CS_NODE_DRAINING ? 2 : 0) + (same_zone(n) ? 0 : 1);
}

/* The measured milliseconds of node id (0: not measured yet). */
static double locked_speed(uint32_t id)
{
	for (int i = 0; i < speed_n; i++)
		if (speed[i].id == id)
			return speed[i].ms;
	return 0;
}

void cs_nodes_measured(uint32_t id, int64_t ms, uint64_t size)
{
	double x = (double)ms;
	int i;

	if (size > (1u << 20))
		x = x * (1u << 20) / (double)size;
	pthread_mutex_lock(&mu);
	for (i = 0; i < speed_n && speed[i].id != id; i++)
		;
	if (i == speed_n && speed_n < CS_MAX_NODES) {
		speed[speed_n].id = id;
		speed[speed_n++].ms = x;
	} else if (i < speed_n) {
		speed[i].ms = 0.8 * speed[i].ms + 0.2 * x;
	}
	pthread_mutex_unlock(&mu);
}

/* Whether a reads before b: rank, then speed (unmeasured counts as
 * fastest, so it gets measured), then as they came. */
static bool reads_before(const struct cs_node *a, const struct cs_node *b)
{
	int ra = read_rank(a), rb = read_rank(b);

	if (ra != rb)
		return ra < rb;
	return locked_speed(a->id) < locked_speed(b->id);
}

/* Whether node id is in the table. */
static const struct cs_node *locked_find(uint32_t id)
{
	for (int j = 0; j < tab_n; j++)
		if (tab[j].id == id)
			return &tab[j];
	return NULL;
}

static bool locked_known(uint32_t id)
{
	return locked_find(id) != NULL;
}

int cs_nodes_holders(const struct cs_file *f, struct cs_node *out, int max)
{
	uint32_t self = __atomic_load_n(&self_id, __ATOMIC_ACQUIRE);
	int n = 0, rc;

	pthread_mutex_lock(&mu);
	rc = locked_refresh();
	/* A holder the table does not know joined since it was read: read
	 * it again from MySQL (at most every NODES_FORCE_MS). */
	for (int i = 0; rc == 0 && i < f->nholders; i++)
		if (!locked_known(f->holder[i]) && cs_clock_ms() - tab_at > NODES_FORCE_MS) {
			rc = locked_refresh_how(true);
			break;
		}
	for (int i = 0; rc == 0 && i < f->nholders && n < max; i++)
		for (int j = 0; j < tab_n; j++)
			if (tab[j].id == f->holder[i] && tab[j].id != self && tab[j].url[0] &&
			    tab[j].state != CS_NODE_REMOVED) {
				out[n++] = tab[j];
				break;
			}
	/* Stable: registry order (oldest copy first) among equals. */
	for (int i = 1; i < n; i++) {
		struct cs_node x = out[i];
		int j = i;
		while (j > 0 && reads_before(&x, &out[j - 1])) {
			out[j] = out[j - 1];
			j--;
		}
		out[j] = x;
	}
	pthread_mutex_unlock(&mu);
	return rc < 0 ? rc : n;
}

/* Current files per node (caller holds mu); refreshed rarely, from the
 * census (census.c): counting them here would be a GROUP BY over every
 * holder record.  Until the first census every node has none, and the
 * pushes this node made since the last reading are counted meanwhile. */
static uint64_t locked_count_of(uint32_t id)
{
	if (counts_at < 0 || cs_clock_ms() - counts_at > COUNTS_LOCAL_MS) {
		struct cs_buf q = { 0 };
		MYSQL_RES *res = NULL;
		MYSQL_ROW row;

		cs_sql_str(&q, "SELECT node_id, files FROM census_nodes");
		if (cs_db_query(&q, &res) == 0) {
			counts_n = 0;
			while ((row = mysql_fetch_row(res)) && counts_n < CS_MAX_NODES) {
				counts[counts_n].id = (uint32_t)cs_db_u64(row[0]);
				counts[counts_n++].files = cs_db_u64(row[1]);
			}
			mysql_free_result(res);
		}
		counts_at = cs_clock_ms();
	}
	for (int i = 0; i < counts_n; i++)
		if (counts[i].id == id)
			return counts[i].files;
	return 0;
}

void cs_nodes_note_copy(uint32_t node)
{
	pthread_mutex_lock(&mu);
	for (int i = 0; i < counts_n; i++)
		if (counts[i].id == node) {
			counts[i].files++;
			goto out;
		}
	if (counts_n < CS_MAX_NODES) {
		counts[counts_n].id = node;
		counts[counts_n++].files = 1;
	}
out:
	pthread_mutex_unlock(&mu);
}

/* How many of f's holders (and this node, when self_holds) are in zone. */
static int locked_copies_in_zone(const struct cs_file *f, const char *zone, bool self_holds)
{
	int k = self_holds && strcmp(zone, cs_cfg.zone) == 0;

	for (int i = 0; i < f->nholders; i++)
		for (int j = 0; j < tab_n; j++)
			if (tab[j].id == f->holder[i] && strcmp(tab[j].zone, zone) == 0 &&
			    tab[j].state != CS_NODE_REMOVED)
				k++;
	return k;
}

int cs_nodes_targets(const struct cs_file *f, struct cs_node *out, int max)
{
	uint64_t files[CS_MAX_NODES];
	int zc[CS_MAX_NODES];
	uint32_t self = 0;
	int n = 0, rc;

	cs_nodes_self(&self);
	pthread_mutex_lock(&mu);
	rc = locked_refresh();
	/* This node pushes what it holds (a write, a repair): its zone has a
	 * copy whether or not the record lists it yet. */
	for (int j = 0; rc == 0 && j < tab_n && n < max && n < CS_MAX_NODES; j++) {
		const struct cs_node *x = &tab[j];

		if (cs_file_holds(f, x->id) || x->id == self || !cs_node_counts(x) || !x->url[0] ||
		    locked_demoted(x->id))
			continue;
		out[n] = *x;
		zc[n] = locked_copies_in_zone(f, x->zone, true);
		files[n++] = locked_count_of(x->id);
	}
	pthread_mutex_unlock(&mu);
	if (rc < 0)
		return rc;
	for (int i = 1; i < n; i++) {
		struct cs_node x = out[i];
		uint64_t fx = files[i];
		int zx = zc[i];
		int j = i;

		while (j > 0) {
			int zp = zc[j - 1];
			if (zp < zx || (zp == zx && files[j - 1] <= fx))
				break;
			out[j] = out[j - 1];
			files[j] = files[j - 1];
			zc[j] = zc[j - 1];
			j--;
		}
		out[j] = x;
		files[j] = fx;
		zc[j] = zx;
	}
	return n;
}

int cs_nodes_peers(struct cs_node *out, int max)
{
	uint32_t self = 0;
	int n = 0, rc;

	cs_nodes_self(&self);
	pthread_mutex_lock(&mu);
	rc = locked_refresh();
	for (int j = 0; rc == 0 && j < tab_n && n < max; j++)
		if (tab[j].id != self && cs_node_serves(&tab[j]) && tab[j].url[0])
			out[n++] = tab[j];
	pthread_mutex_unlock(&mu);
	return rc < 0 ? rc : n;
}

int cs_nodes_refresh(void)
{
	pthread_mutex_lock(&mu);
	int rc = locked_refresh_how(true);
	pthread_mutex_unlock(&mu);
	return rc;
}

uint64_t cs_nodes_changes(void)
{
	pthread_mutex_lock(&mu);
	locked_refresh();
	uint64_t n = tab_changes;
	pthread_mutex_unlock(&mu);
	return n;
}

int cs_nodes_all(struct cs_node *out, int max)
{
	int n = 0, rc;

	pthread_mutex_lock(&mu);
	rc = locked_refresh();
	for (int j = 0; rc == 0 && j < tab_n && n < max; j++)
		out[n++] = tab[j];
	pthread_mutex_unlock(&mu);
	return rc < 0 ? rc : n;
}

int cs_nodes_me(struct cs_node *me)
{
	const struct cs_node *x = NULL;
	uint32_t self = 0;
	int rc;

	if ((rc = cs_nodes_self(&self)) < 0)
		return rc;
	pthread_mutex_lock(&mu);
	rc = locked_refresh();
	/* Registered since the table was read: read it again. */
	if (rc == 0 && !locked_known(self))
		rc = locked_refresh_how(true);
	if (rc == 0 && (x = locked_find(self)))
		*me = *x;
	pthread_mutex_unlock(&mu);
	return rc < 0 ? rc : x ? 0 : -ENOENT;
}

int cs_nodes_set_state(const char *name, enum cs_node_state state)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	int rc;

	cs_sql_str(&q, "SELECT id FROM nodes WHERE name=");
	cs_sql_text(&q, name);
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc;
	rc = mysql_fetch_row(res) ? 0 : -ENOENT;
	mysql_free_result(res);
	if (rc < 0)
		return rc;
	cs_sql_fmt(&q, "UPDATE nodes SET state='%s', state_at=NOW(3) WHERE name=",
		   cs_node_state_name(state));
	cs_sql_text(&q, name);
	if ((rc = cs_db_query(&q, NULL)) < 0)
		return rc;
	cs_mc_delete("cs1:nodes");
	return 0;
}

int cs_nodes_status(struct cs_node_status *st, int *n)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int count = 0, rc;

	node_columns(&q);
	cs_sql_str(&q, ", COALESCE(TIMESTAMPDIFF(MICROSECOND, n.heartbeat_at, NOW(3)), -1000000),"
		       " n.backlog FROM nodes n ORDER BY n.name");
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc;
	while ((row = mysql_fetch_row(res)) && count < *n) {
		struct cs_node_status *x = &st[count++];
		memset(x, 0, sizeof *x);
		node_row(row, &x->node);
		x->heartbeat_age = row[NODE_NCOLUMNS] ? strtod(row[NODE_NCOLUMNS], NULL) / 1e6 : -1;
		if (x->heartbeat_age < 0)
			x->heartbeat_age = -1;
		x->backlog = cs_db_u64(row[NODE_NCOLUMNS + 1]);
	}
	mysql_free_result(res);
	*n = count;
	return 0;
}
