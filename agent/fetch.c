/*
 * fetch.c - what a miss does: a host asked for a name this node lacks; if
 * the cluster has it, bring it here.
 *
 * A request joins the one already under way for the same name, if any, so
 * however many processes ask, one transfer is made and all are answered
 * with its outcome.  The work (in the thread of the connection that asked
 * first, local.c): look the name up in the registry; a live file is fetched from the best holder (the next
 * on error; if every holder the cached record named failed, MySQL is asked
 * for the current ones), verified, and installed by an atomic rename with
 * the registry's mtime; a directory with a live file below it is made; and
 * the answer is one of installed, absent, or unavailable.  A copy installed
 * is recorded as held through this agent's own journal (an H entry written
 * before the rename), so a failed record is retried until it sticks and a
 * crash in between leaves nothing unaccounted for.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetch.h"
#include "tail.h"
#include "metrics.h"
#include "nodes.h"
#include "peer.h"
#include "registry.h"
#include "store.h"

#define TABLE 1024

/* A name being made present; whoever asks for it meanwhile waits for it. */
struct job {
	struct job *next;               /* in its table bucket */
	uint64_t hash;
	int refs;                       /* the asker doing it, and those waiting */
	bool done;
	char reply;
	pthread_cond_t cv;
	char ns[CS_NAME_MAX];
	char rel[CS_PATH_MAX];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct job *table[TABLE];
static struct cs_fetch_stats stats;     /* under mu */

static uint64_t name_hash(const char *ns, const char *rel)
{
	uint64_t h = cs_fnv1a(CS_FNV_SEED, ns, strlen(ns) + 1);

	return cs_fnv1a(h, rel, strlen(rel));
}

/* Try each holder in order[0, n) not yet tried; 0 when one delivered.  A
 * holder that failed leaves the temporary file empty for the next, and one
 * that did not answer is read from last for a while (cs_nodes_demote). */
static int from_holders(const struct cs_prefix *p, const char *rel, struct cs_install *in,
			const struct cs_file *f, struct cs_node *order, int n, uint32_t *tried,
			int *ntried, int64_t deadline)
{
	for (int i = 0; i < n; i++) {
		int64_t left = deadline - cs_clock_ms();
		if (left <= 0) {
			cs_error_every(10, "%s/%s: no holder delivered it in time "
				       "(CS_FETCH_TIMEOUT, plus its size at CS_FETCH_MIN_RATE); "
				       "given up", p->name, rel);
			return -ETIMEDOUT;
		}
		bool seen = false;

		for (int j = 0; j < *ntried && !seen; j++)
			seen = tried[j] == order[i].id;
		if (seen)
			continue;
		if (*ntried < CS_MAX_HOLDERS)
			tried[(*ntried)++] = order[i].id;
		int64_t t0 = cs_clock_ms();
		int rc = cs_peer_fetch(order[i].url, p->name, rel, in->fd, f, left);
		if (rc == 0) {
			cs_nodes_worked(order[i].id);
			cs_nodes_measured(order[i].id, cs_clock_ms() - t0, f->size);
			return 0;
		}
		/* Silent, slow, failing or serving wrong bytes: read from last
		 * for a while.  (One that lacks the file is only out of date.) */
		if (rc != -ENOENT)
			cs_nodes_demote(order[i].id);
		if (lseek(in->fd, 0, SEEK_SET) < 0 || ftruncate(in->fd, 0) < 0)
			return -EIO;
	}
	return -ENOENT;
}

int cs_fetch_into(const struct cs_prefix *p, const char *rel, struct cs_install *in,
		  struct cs_file *f, bool cached)
{
	struct cs_node *order = malloc(CS_MAX_HOLDERS * sizeof *order);
	uint32_t tried[CS_MAX_HOLDERS];
	int ntried = 0, n, rc;
	/* The whole miss, every holder tried: CS_FETCH_TIMEOUT plus the time
	 * its size takes at CS_FETCH_MIN_RATE. */
	int64_t deadline = cs_clock_ms() + cs_cfg.fetch_timeout_ms +
			   (int64_t)(f->size * 1000 / (cs_cfg.fetch_min_rate ? cs_cfg.fetch_min_rate : 1));

	if (!order)
		return -ENOMEM;
	n = cs_nodes_holders(f, order, CS_MAX_HOLDERS);
	/* Every holder the cached record names failed lately: its list may be
	 * old, and MySQL may know a copy that works. */
	if (cached && n > 0 && cs_nodes_is_demoted(order[0].id)) {
		struct cs_file g;
		if (cs_registry_lookup_db(p->name, rel, &g) == 0 && !g.deleted &&
		    g.version == f->version) {
			*f = g;
			n = cs_nodes_holders(f, order, CS_MAX_HOLDERS);
			cached = false;         /* MySQL's answer now: not asked again below */
		}
	}
	rc = n > 0 ? from_holders(p, rel, in, f, order, n, tried, &ntried, deadline) : -ENOENT;
	if (rc < 0 && rc != -ETIMEDOUT && cached) {
		/* The cached record's holders may be out of date (copies made
		 * since, a holder gone): ask the truth. */
		struct cs_file g;
		if (cs_registry_lookup_db(p->name, rel, &g) == 0 && !g.deleted) {
			if (g.version != f->version)
				ntried = 0;     /* another version: every holder again */
			*f = g;
			n = cs_nodes_holders(f, order, CS_MAX_HOLDERS);
			rc = n > 0 ? from_holders(p, rel, in, f, order, n, tried, &ntried,
						  deadline) : -ENOENT;
		}
	}
	free(order);
	return rc;
}

/* Fetch f for (p, rel) and install it.  One of the protocol's replies. */
static char install_file(const struct cs_prefix *p, const char *rel, struct cs_file *f,
			 bool cached)
{
	struct cs_install in;
	int rc;
	char reply = CS_REPLY_UNAVAILABLE;

	if (cs_store_exists(p, rel)) {
		reply = CS_REPLY_INSTALLED;     /* a push put it here meanwhile */
		goto out;
	}
	rc = cs_store_begin(p, rel, &in);
	if (rc == -EXDEV) {
		/* Here the name leads out of the namespace (a symlink on the
		 * way) or through a file: nothing of the cluster's is there. */
		reply = CS_REPLY_ABSENT;
		goto out;
	}
	if (rc < 0) {
		cs_error_every(10, "%s/%s: cannot install here: %s", p->name, rel, strerror(-rc));
		goto out;
	}
	rc = cs_fetch_into(p, rel, &in, f, cached);
	if (rc < 0) {
		cs_error_every(10, "%s/%s: registered, but none of the %d nodes holding it could "
			       "deliver it", p->name, rel, f->nholders);
		cs_store_abort(&in);
		goto out;
	}
	/* Recorded as held before it is visible: the record's retries are
	 * then the journal's, and a crash right here leaves an entry that
	 * finds no such copy. */
	struct cs_held h = { f->id, f->version, f->size, f->mtime_ns };
	if ((rc = cs_journal_append_held(p->name, rel, &h)) < 0)
		cs_error_every(10, "%s/%s: cannot journal its holder record (%s); installing anyway",
			       p->name, rel, strerror(-rc));
	/* Never over what is there: a push may have put a newer version here
	 * while this one was on its way (then that one stays). */
	int lock = cs_store_lock(p->name, rel);
	rc = cs_store_commit(&in, f->mtime_ns, false);
	cs_store_unlock(lock);
	if (rc == -EXDEV) {
		reply = CS_REPLY_ABSENT;        /* a way out was planted meanwhile */
		goto out;
	}
	if (rc < 0) {
		cs_error_every(10, "%s/%s: cannot install: %s", p->name, rel, strerror(-rc));
		goto out;
	}
	if (rc == 0)
		cs_info("fetched %s/%s (%" PRIu64 " bytes)", p->name, rel, f->size);
	reply = CS_REPLY_INSTALLED;
out:
	return reply;
}

/* Make (ns, rel) present, without joining anyone: the reply byte. */
static char present(const char *ns, const char *rel)
{
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, ns);
	struct cs_file f;
	bool cached;
	int rc;

	/* (A file that appeared here since the host looked is found by the
	 * store, under its lock, before anything is fetched.) */
	if (!p)
		return CS_REPLY_ABSENT;
	/* Deleted or renamed away here a moment ago ("mv a b; stat a"): the
	 * registry does not show it yet, and its copy elsewhere must not come
	 * back (the rename would then find a file at its old name). */
	if (cs_tail_gone(ns, rel))
		return CS_REPLY_ABSENT;
	rc = cs_registry_lookup(ns, rel, &f, &cached);
	if (rc == 0)
		return install_file(p, rel, &f, cached);
	if (rc == -ENOENT)
		rc = cs_registry_dir(ns, rel);
	if (rc == 0) {
		/* A directory the cluster has: made here, as a file would be. */
		if ((rc = cs_store_mkdir(p, rel)) == 0)
			return CS_REPLY_INSTALLED;
		cs_error_every(10, "%s/%s: cannot make the directory: %s", ns, rel, strerror(-rc));
		return rc == -EXDEV ? CS_REPLY_ABSENT : CS_REPLY_UNAVAILABLE;
	}
	return rc == -ENOENT ? CS_REPLY_ABSENT : CS_REPLY_UNAVAILABLE;
}

/* present(), timed for /metrics by the asker that does the work. */
static char timed(const char *ns, const char *rel)
{
	int64_t start = cs_clock_us();
	char reply = present(ns, rel);

	cs_observe(CS_H_FETCH, (cs_clock_us() - start) / 1e6);
	return reply;
}

/* Every asker's answer is counted, joined or not, so the answers add up
 * to the misses asked. */
static char answered(char reply)
{
	cs_count(reply == CS_REPLY_INSTALLED ? CS_C_INSTALLS :
		 reply == CS_REPLY_ABSENT ? CS_C_ABSENT : CS_C_UNAVAILABLE, 1);
	return reply;
}

static void put(struct job *j)
{
	if (--j->refs == 0) {
		pthread_cond_destroy(&j->cv);
		free(j);
	}
}

char cs_fetch_wait(const char *ns, const char *rel)
{
	uint64_t h = name_hash(ns, rel);
	struct job *j;
	char reply;

	cs_count(CS_C_MISSES, 1);
	pthread_mutex_lock(&mu);
	stats.asked++;
	for (j = table[h % TABLE]; j; j = j->next)
		if (j->hash == h && !strcmp(j->ns, ns) && !strcmp(j->rel, rel))
			break;
	if (j) {
		/* Under way: its outcome is ours. */
		j->refs++;
		stats.joined++;
		while (!j->done)
			pthread_cond_wait(&j->cv, &mu);
		reply = j->reply;
		put(j);
		pthread_mutex_unlock(&mu);
		return answered(reply);
	}
	if (!(j = calloc(1, sizeof *j))) {
		pthread_mutex_unlock(&mu);
		return answered(timed(ns, rel));
	}
	j->hash = h;
	j->refs = 1;
	pthread_cond_init(&j->cv, NULL);
	snprintf(j->ns, sizeof j->ns, "%s", ns);
	snprintf(j->rel, sizeof j->rel, "%s", rel);
	j->next = table[h % TABLE];
	table[h % TABLE] = j;
	stats.running++;
	pthread_mutex_unlock(&mu);

	reply = timed(ns, rel);

	pthread_mutex_lock(&mu);
	for (struct job **pp = &table[h % TABLE]; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	j->done = true;
	j->reply = reply;
	stats.running--;
	stats.done++;
	if (reply == CS_REPLY_UNAVAILABLE)
		stats.unavailable++;
	pthread_cond_broadcast(&j->cv);
	put(j);
	pthread_mutex_unlock(&mu);
	return answered(reply);
}

void cs_fetch_stats(struct cs_fetch_stats *out)
{
	pthread_mutex_lock(&mu);
	*out = stats;
	pthread_mutex_unlock(&mu);
}
