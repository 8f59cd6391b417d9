/*
 * fetch.c - the miss path: a path under a prefix is not on this node; if
 * the cluster has it, bring it here before the caller's call is retried.
 *
 * Ties the other modules together: registry lookup, choice of holder, the
 * store's per-path lock and temporary file, the peer transfer, the atomic
 * install, and recording this node as a new holder.  Holders are tried in
 * order of preference (up before down, this node's zone first) until one
 * delivers a verified copy.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cs.h"

#define FETCH_WAIT_MS 30000     /* how long to wait for another fetcher */

static int rank(const struct cs_node *n)
{
	int r = 0;

	if (!n->up)
		r += 2;
	if (cs_cfg.zone[0] == '\0' || strcmp(n->zone, cs_cfg.zone) != 0)
		r += 1;
	return r;
}

/* Sort the holders best first (stable: registry order within a rank),
 * leaving out this node and nodes without a URL; returns how many remain. */
static int choose(struct cs_node *h, int n, uint32_t self)
{
	int kept = 0;

	for (int i = 0; i < n; i++)
		if (h[i].id != self && h[i].url[0])
			h[kept++] = h[i];
	for (int i = 1; i < kept; i++) {
		struct cs_node x = h[i];
		int j = i;
		while (j > 0 && rank(&h[j - 1]) > rank(&x)) {
			h[j] = h[j - 1];
			j--;
		}
		h[j] = x;
	}
	return kept;
}

int cs_fetch(const struct cs_prefix *p, const char *abs, const char *rel)
{
	struct cs_file f;
	struct cs_install in;
	struct cs_node *order = NULL;
	uint32_t self = 0;
	int n, rc;
	const char *root = strncmp(abs, p->dir, p->dirlen) == 0 ? p->dir : p->real;

	if (!cs_path_rel_valid(rel, strlen(rel)))
		return -ENOENT;
	rc = cs_registry_lookup(p->name, rel, &f);
	if (rc < 0)
		return -ENOENT;         /* absent, or the registry is down */

	/* up to CS_MAX_HOLDERS nodes of ~650 bytes: off the caller's stack */
	order = malloc(CS_MAX_HOLDERS * sizeof *order);
	if (!order)
		return -ENOMEM;
	n = cs_registry_holders(&f, order, CS_MAX_HOLDERS);
	cs_registry_self(&self);
	n = n < 0 ? 0 : choose(order, n, self);
	if (n == 0) {
		cs_warn("%s/%s: registered, but no other node holds it", p->name, rel);
		rc = -ENOENT;
		goto out;
	}

	rc = cs_store_begin(root, abs, &in, FETCH_WAIT_MS);
	if (rc == 1) {
		rc = 0;                 /* another process installed it */
		goto out;
	}
	if (rc < 0) {
		cs_error_every(10, "%s: cannot install here: %s", abs, strerror(-rc));
		goto out;
	}
	rc = -ENOENT;
	for (int i = 0; i < n; i++) {
		if (i > 0 && (lseek(in.fd, 0, SEEK_SET) < 0 || ftruncate(in.fd, 0) < 0))
			break;
		if (cs_peer_fetch(order[i].url, p->name, rel, in.fd, &f) == 0) {
			rc = 0;
			break;
		}
	}
	if (rc < 0) {
		cs_error_every(10, "%s/%s: none of %d holders could deliver it", p->name, rel, n);
		cs_store_abort(&in);
		goto out;
	}
	rc = cs_store_commit(&in, f.mtime_ns);
	if (rc < 0) {
		cs_error_every(10, "%s: cannot install: %s", abs, strerror(-rc));
		goto out;
	}
	cs_info("fetched %s/%s (%llu bytes)", p->name, rel, (unsigned long long)f.size);
	if (self && cs_registry_add_holder(p->name, rel, &f, self) < 0)
		cs_warn("%s/%s: installed, but not yet recorded as held here", p->name, rel);
out:
	free(order);
	return rc;
}
