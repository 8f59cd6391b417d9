/*
 * announce.c - new names reach every node's index before the registry has
 * them: the writer (the agent replicating a journal, or cs-replicate
 * import) sends them in one signed POST /v1/index to each node that is up,
 * all at once, and registers only afterwards.  A node that does not answer
 * within ANNOUNCE_MS is left alone for a while and learns the names from
 * its poll of the registry (indexer.c), within that poll's period.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "announce.h"
#include "indexer.h"
#include "nodes.h"
#include "peer.h"

#define ANNOUNCE_MS 1000        /* a node answers in about a millisecond */
#define SKIP_MS 30000           /* ... and one that did not is left alone */

/* Nodes an announcement recently failed to reach. */
static struct {
	char url[CS_URL_MAX];
	int64_t until;
} skipped[16];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

void cs_announce_add(struct cs_announce *a, const char *ns, const char *rel)
{
	char enc[3 * CS_PATH_MAX];
	int n;

	if ((n = cs_url_encode_path(rel, enc, sizeof enc)) < 0 || !cs_indexer_add(ns, rel))
		return;
	cs_buf_put(&a->body, ns, strlen(ns));
	cs_buf_put(&a->body, "\t", 1);
	cs_buf_put(&a->body, enc, (size_t)n);
	cs_buf_put(&a->body, "\n", 1);
	a->names++;
}

static size_t slot(const char *url)
{
	return (size_t)(cs_fnv1a(CS_FNV_SEED, url, strlen(url)) %
			(sizeof skipped / sizeof *skipped));
}

void cs_announce_send(struct cs_announce *a, bool self)
{
	struct cs_node *peers = NULL;
	const char **urls = NULL;
	bool *ok = NULL;
	int np, nu = 0;
	int64_t now = cs_clock_ms();

	if (!a->body.len || a->body.oom || !(peers = malloc(CS_MAX_NODES * sizeof *peers)) ||
	    (np = cs_nodes_peers(peers, CS_MAX_NODES)) < 0 ||
	    !(urls = malloc((np + 1) * sizeof *urls)) || !(ok = malloc((np + 1) * sizeof *ok)))
		goto out;
	pthread_mutex_lock(&mu);
	for (int i = 0; i < np; i++) {
		size_t k = slot(peers[i].url);
		if (!(skipped[k].until > now && !strcmp(skipped[k].url, peers[i].url)))
			urls[nu++] = peers[i].url;
	}
	pthread_mutex_unlock(&mu);
	if (self && cs_cfg.node_url[0])
		urls[nu++] = cs_cfg.node_url;
	if (nu == 0)
		goto out;
	int acked = cs_peer_announce(urls, nu, a->body.s, a->body.len, ANNOUNCE_MS, ok);
	if (acked < nu) {
		/* The ones that did not answer are left alone for a while: an
		 * unreachable node would make every batch wait. */
		cs_info("announced %lu new names to %d of %d nodes", a->names, acked, nu);
		pthread_mutex_lock(&mu);
		for (int i = 0; i < nu; i++) {
			if (ok[i])
				continue;
			size_t k = slot(urls[i]);
			snprintf(skipped[k].url, sizeof skipped[k].url, "%s", urls[i]);
			skipped[k].until = now + SKIP_MS;
		}
		pthread_mutex_unlock(&mu);
	}
out:
	free(ok);
	free(urls);
	free(peers);
	cs_buf_clear(&a->body);
	a->names = 0;
}

void cs_announce_free(struct cs_announce *a)
{
	cs_buf_free(&a->body);
	a->names = 0;
}
