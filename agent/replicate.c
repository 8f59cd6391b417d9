/*
 * replicate.c - turning journal entries into cluster state: the work of a
 * batch the queue (queue.c) picked.
 *
 * Writes: every file is hashed, new names are announced to the other nodes
 * (so their indexes know them before anyone could read them), all are
 * registered as new versions in one transaction (publish.c) and pushed side
 * by side to enough nodes (peer.c) to reach CS_REPLICAS copies.  A delete
 * becomes a tombstone and the holders are told to drop their copies; a
 * rename registers the new path, asks holders of the old one to rename their
 * copy (no transfer when they have these bytes), and tombstones the old
 * path.  Holder records are this node's own copies, installed by a fetch.
 * Every step reads the current local state, so replaying an entry is
 * harmless and an entry about a path that has since gone (a temporary name
 * renamed away) does nothing.  An entry that failed on its own stays not
 * done (the queue backs it off); a registry that cannot be reached at all
 * makes the batch answer -EAGAIN (the queue pauses).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "announce.h"
#include "nodes.h"
#include "peer.h"
#include "publish.h"
#include "registry.h"
#include "replicate.h"
#include "sign.h"
#include "store.h"

/* ---- one entry ------------------------------------------------------ */

static int local_path(const struct cs_prefix *p, const char *rel, char *abs)
{
	if ((size_t)snprintf(abs, CS_PATH_MAX, "%s/%s", p->dir, rel) >= CS_PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/* Whether there is something at rel on this node (not followed): *st. */
static bool exists(const struct cs_prefix *p, const char *rel, struct stat *st)
{
	char abs[CS_PATH_MAX];

	return local_path(p, rel, abs) == 0 && lstat(abs, st) == 0;
}

/* The agent is stopping: pushes under way are dropped (cs_replicate_batch). */
static const int *stop;

/*
 * Writes go in batches: every file is hashed, all are registered in one
 * transaction, and the pushes run side by side, so a busy writer's entries
 * share the round trips instead of queueing behind each other's.
 */
struct wjob {
	const struct cs_prefix *p;
	const char *rel;
	int fd;                 /* the file as hashed, pushed from; -1: none */
	dev_t dev;              /* ... and which file that was */
	ino_t ino;
	struct cs_publish pub;  /* pub.f: the registered record */
	struct cs_node *to;     /* where to push, best first */
	int nto, next;          /* how many, and the next one to try */
	int have, acks;         /* copies there were, copies pushed */
	int fails;              /* times its entry was tried before */
	int rc;                 /* 0 done, -EAGAIN to retry */
};

/* Tries an entry waits for a writer still at its file (backing off 0.1 s
 * doubling to 5 s: about 20 s) before what is there is replicated anyway. */
#define WRITER_WAITS 8

/* Open and hash rel.  w->fd stays -1 when there is no regular file at rel
 * any more (a later entry says what became of it); -EAGAIN when it could
 * not be read. */
static int hash_job(struct wjob *w)
{
	char abs[CS_PATH_MAX];
	struct stat a, b;
	uint64_t size;
	int fd, rc;

	w->fd = -1;
	w->pub.ns = w->p->name;
	w->pub.rel = w->rel;
	if ((rc = local_path(w->p, w->rel, abs)) < 0)
		return 0;
	fd = open(abs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &a) < 0 || !S_ISREG(a.st_mode)) {
		rc = fd < 0 && errno != ENOENT && errno != ELOOP && errno != ENOTDIR ? -errno : 0;
		if (fd >= 0)
			close(fd);
		if (rc < 0) {
			cs_error_every(10, "%s: cannot read to replicate: %s", abs, strerror(-rc));
			return -EAGAIN;
		}
		cs_debug("%s: gone before it was replicated", abs);
		return 0;
	}
	/* Another process is writing it (in place) right now: its close brings
	 * another entry; this one waits rather than spread half a file. */
	if (cs_store_writing_now(fd) == 1 && w->fails < WRITER_WAITS) {
		cs_debug("%s: open for writing elsewhere; later", abs);
		close(fd);
		return -EAGAIN;
	}
	rc = cs_sha256_fd(fd, w->pub.sha256, &size);
	/* Written to again while hashed: its next close brings another entry,
	 * but what is registered must be one state of the file, so hash again. */
	if (rc == 0 && fstat(fd, &b) == 0 &&
	    (b.st_mtim.tv_sec != a.st_mtim.tv_sec || b.st_mtim.tv_nsec != a.st_mtim.tv_nsec ||
	     (uint64_t)b.st_size != size)) {
		a = b;
		rc = cs_sha256_fd(fd, w->pub.sha256, &size);
	}
	if (rc == 0 && cs_store_writing_now(fd) == 1 && w->fails < WRITER_WAITS) {
		cs_debug("%s: opened for writing while hashed; later", abs);
		rc = -EAGAIN;
	}
	if (rc < 0) {
		close(fd);
		return -EAGAIN;
	}
	w->fd = fd;
	w->dev = a.st_dev;
	w->ino = a.st_ino;
	w->pub.size = size;
	w->pub.mtime_ns = cs_mtime_ns(&a);
	return 0;
}

static void close_jobs(struct wjob *w, int n)
{
	for (int i = 0; i < n; i++)
		if (w[i].fd >= 0) {
			close(w[i].fd);
			w[i].fd = -1;
		}
}

/* Tell every other node's index about the names of w[0, n) that this
 * node's index does not know yet (new files), before they are registered. */
static void announce(struct wjob *w, int n)
{
	struct cs_announce a = { 0 };

	for (int i = 0; i < n; i++)
		if (w[i].fd >= 0)
			cs_announce_add(&a, w[i].p->name, w[i].rel);
	cs_announce_send(&a, false);
	cs_announce_free(&a);
}

/* Hash every job and register what was read as each file's newest version,
 * all in one transaction.  A job whose file is gone is done (rc 0, fd -1);
 * one whose file could not be read is not (rc -EAGAIN, fd -1) and does not
 * hold the others back.  0, or -errno for all when they were not registered
 * (-ENOTCONN: the registry could not be reached). */
static int publish_jobs(struct wjob *w, int n)
{
	struct cs_publish *v = malloc(n * sizeof *v);
	int m = 0, rc = 0;

	if (!v)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		w[i].to = NULL;
		w[i].nto = w[i].next = w[i].acks = w[i].have = 0;
		w[i].rc = hash_job(&w[i]);
		if (w[i].fd >= 0)
			v[m++] = w[i].pub;
	}
	announce(w, n);
	if ((rc = cs_publish_many(v, m)) < 0) {
		cs_debug("registering %d files: %s", m, strerror(-rc));
		free(v);
		close_jobs(w, n);
		return rc == -EAGAIN ? -ENOTCONN : rc;
	}
	for (int i = 0, k = 0; i < n; i++)
		if (w[i].fd >= 0)
			w[i].pub.f = v[k++].f;
	free(v);
	/* Another process may have renamed other bytes over the path while we
	 * hashed and registered after it: the registry now names our bytes,
	 * the disk has theirs.  Such a job runs again (and registers what is
	 * there); pushing from our descriptor would spread the wrong bytes. */
	for (int i = 0; i < n; i++) {
		struct stat st;

		if (w[i].fd < 0)
			continue;
		if (!exists(w[i].p, w[i].rel, &st) ||
		    st.st_dev != w[i].dev || st.st_ino != w[i].ino ||
		    (uint64_t)st.st_size != w[i].pub.size ||
		    cs_mtime_ns(&st) != w[i].pub.mtime_ns) {
			cs_debug("%s/%s: changed while it was registered; again", w[i].p->name, w[i].rel);
			close(w[i].fd);
			w[i].fd = -1;
			w[i].rc = -EAGAIN;
		}
	}
	return 0;
}

void cs_replicate_push(struct cs_push *push, const uint32_t *target, bool *held, int np,
		       const int *stop)
{
	struct cs_held_at *at;
	const struct cs_file *dropped = NULL;
	int asked = 0, rc = -ENOMEM;

	if (np <= 0)
		return;
	cs_peer_push_many(push, np, stop);
	at = malloc((size_t)np * sizeof *at);
	for (int k = 0; k < np; k++) {
		held[k] = false;
		if (push[k].rc == -EHOSTUNREACH)
			cs_nodes_demote(target[k]);
		else if (push[k].rc == 0 && at)
			at[asked++] = (struct cs_held_at){ push[k].f->id, target[k],
							   push[k].f->version, false };
	}
	if (asked == 0) {
		free(at);
		return;
	}
	if (at && (rc = cs_registry_confirm(at, asked)) < 0)
		cs_info("cannot confirm %d pushed copies in the registry (%s); they are pushed again",
			asked, strerror(-rc));
	for (int k = 0, j = 0; k < np && at; k++) {
		if (push[k].rc != 0)
			continue;
		held[k] = rc == 0 && at[j++].held;
		if (rc == 0 && !held[k])
			cs_error_every(10, "%s/%s: node %" PRIu32 " answered 200 to a push but the "
				       "registry does not show its copy; not counted",
				       push[k].ns, push[k].rel, target[k]);
		if (!held[k])
			continue;
		cs_nodes_worked(target[k]);
		/* Readers learn of the new holder (memcached named the ones
		 * before alone), so they can pick the nearest or fastest.  A
		 * file's pushes are side by side: its record goes once. */
		if (push[k].f != dropped)
			cs_registry_uncache(push[k].ns, push[k].rel);
		dropped = push[k].f;
	}
	free(at);
}

/*
 * Push each published job's file to other nodes until CS_REPLICAS copies
 * exist (w->have counts copies made by renames the registry has not shown
 * yet).  All jobs' pushes of a round run at once; a failed one is tried on
 * the job's next target in the next round.  A job is done when the count is
 * reached, or when at least one other node holds it and none is left to
 * ask; else its rc is -EAGAIN.
 */
static void spread_jobs(struct wjob *w, int n)
{
	int want = cs_cfg.replicas, cap = 0;
	struct cs_push *push;

	for (int i = 0; i < n; i++) {
		if (w[i].fd < 0)
			continue;
		w[i].have += w[i].pub.f.nholders;
		if (w[i].have >= want || !(w[i].to = malloc(CS_MAX_HOLDERS * sizeof *w[i].to)))
			continue;
		w[i].nto = cs_nodes_targets(&w[i].pub.f, w[i].to, CS_MAX_HOLDERS);
		if (w[i].nto < 0)
			w[i].nto = 0;
		/* Counted now, so the next file of the batch goes elsewhere. */
		for (int j = 0; j < w[i].nto && j < want - w[i].have; j++)
			cs_nodes_note_copy(w[i].to[j].id);
		cap += w[i].nto;
	}
	int *owner = cap > 0 ? malloc(cap * sizeof *owner) : NULL;
	uint32_t *target = cap > 0 ? malloc(cap * sizeof *target) : NULL;
	bool *held = cap > 0 ? malloc(cap * sizeof *held) : NULL;
	if (owner && target && held && (push = malloc(cap * sizeof *push))) {
		while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
			int np = 0;
			for (int i = 0; i < n; i++) {
				for (int need = want - w[i].have - w[i].acks;
				     need > 0 && w[i].next < w[i].nto; need--) {
					const struct cs_node *t = &w[i].to[w[i].next++];
					owner[np] = i;
					target[np] = t->id;
					push[np++] = (struct cs_push){ .url = t->url, .ns = w[i].p->name,
								       .rel = w[i].rel, .fd = w[i].fd,
								       .f = &w[i].pub.f };
				}
			}
			if (np == 0)
				break;
			cs_replicate_push(push, target, held, np, stop);
			for (int k = 0; k < np; k++) {
				struct wjob *x = &w[owner[k]];
				if (held[k]) {
					x->acks++;
				} else if (push[k].rc == -ESTALE) {
					x->acks = want;  /* a newer version exists: its entry spreads it */
					x->next = x->nto;
				}
			}
		}
		free(push);
	}
	free(owner);
	free(target);
	free(held);
	for (int i = 0; i < n; i++) {
		int copies = w[i].have + w[i].acks;

		free(w[i].to);
		w[i].to = NULL;
		if (w[i].fd < 0 || w[i].rc < 0 || copies >= want || copies >= 2)
			continue;
		if (w[i].fails >= 5)
			cs_error_every(30, "%s/%s: %d of %d copies after %d tries (%d nodes to push to); "
				       "retrying", w[i].p->name, w[i].rel, copies, want, w[i].fails + 1,
				       w[i].nto);
		else
			cs_debug("%s/%s: %d of %d copies; will retry", w[i].p->name, w[i].rel, copies,
				 want);
		w[i].rc = -EAGAIN;
	}
}

/* Replicate the writes w[0..n) (distinct paths): each w->rc says how it
 * went; -ENOTCONN when the registry could not be reached. */
static int write_jobs(struct wjob *w, int n)
{
	int rc = publish_jobs(w, n);

	if (rc < 0) {
		for (int i = 0; i < n; i++)
			w[i].rc = -EAGAIN;
		return rc;
	}
	spread_jobs(w, n);
	close_jobs(w, n);
	return 0;
}

/* Tombstone rel unless a file is there again; tell its holders. */
static int unpublish(const struct cs_prefix *p, const char *rel)
{
	struct cs_file prev;
	struct cs_node *nodes;
	int n, rc;

	rc = cs_unpublish(p->name, rel, &prev);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc == -EAGAIN ? -ENOTCONN : -EAGAIN;
	nodes = malloc(CS_MAX_HOLDERS * sizeof *nodes);
	if (!nodes)
		return 0;       /* their sweeps will notice */
	n = cs_nodes_holders(&prev, nodes, CS_MAX_HOLDERS);
	for (int i = 0; i < n; i++)
		if (nodes[i].up)
			cs_peer_delete(nodes[i].url, p->name, rel);
	free(nodes);
	return 0;
}

static int write_entry(const struct cs_prefix *p, const char *rel)
{
	struct wjob w = { .p = p, .rel = rel };
	int rc = write_jobs(&w, 1);

	return rc < 0 ? rc : w.rc;
}

static int delete_entry(const struct cs_prefix *p, const char *rel)
{
	struct stat st;

	if (exists(p, rel, &st) && S_ISREG(st.st_mode))
		return write_entry(p, rel);     /* created again since */
	return unpublish(p, rel);
}

/* One file renamed from -> to within namespace p. */
static int move_one(const struct cs_prefix *p, const char *from, const char *to)
{
	struct wjob w = { .p = p, .rel = to };
	struct cs_file prev;
	struct cs_node *nodes;
	struct stat st;
	int moved = 0, rc;

	if ((rc = publish_jobs(&w, 1)) < 0)
		return rc;
	if (w.rc < 0)
		return w.rc;    /* not read, or changed since: no descriptor */
	if (w.fd < 0)
		return delete_entry(p, from);
	/* Holders of the old name that have these bytes rename their copy
	 * (other nodes with a URL: cs_nodes_holders leaves out the rest). */
	const struct cs_file *fto = &w.pub.f;
	if (cs_registry_lookup_db(p->name, from, &prev) == 0 && !prev.deleted &&
	    prev.size == fto->size && memcmp(prev.sha256, fto->sha256, CS_SHA256_LEN) == 0 &&
	    (nodes = malloc(CS_MAX_HOLDERS * sizeof *nodes))) {
		int n = cs_nodes_holders(&prev, nodes, CS_MAX_HOLDERS);
		for (int i = 0; i < n && fto->nholders + moved < cs_cfg.replicas + 8; i++) {
			bool holds = false;
			for (int j = 0; j < fto->nholders; j++)
				holds |= fto->holder[j] == nodes[i].id;
			if (!holds && nodes[i].up &&
			    cs_peer_move(nodes[i].url, p->name, from, to, fto) == 0)
				moved++;
		}
		free(nodes);
	}
	if (!exists(p, from, &st) && (rc = unpublish(p, from)) < 0) {
		close_jobs(&w, 1);
		return rc;
	}
	w.have = moved;
	spread_jobs(&w, 1);
	close_jobs(&w, 1);
	return w.rc;
}

/* A renamed directory: every file below it moved. */
static int move_tree(const struct cs_prefix *p, const char *from, const char *to,
		     int depth)
{
	char abs[CS_PATH_MAX];
	struct dirent *d;
	DIR *dir;
	int rc = 0;

	if (depth > 64 || local_path(p, to, abs) < 0 || !(dir = opendir(abs)))
		return 0;
	while ((d = readdir(dir))) {
		char f2[CS_PATH_MAX], t2[CS_PATH_MAX];
		struct stat st;

		if (d->d_name[0] == '.' && (!d->d_name[1] || (d->d_name[1] == '.' && !d->d_name[2])))
			continue;
		if (!strncmp(d->d_name, ".cs-", 4) ||
		    (size_t)snprintf(f2, sizeof f2, "%s/%s", from, d->d_name) >= sizeof f2 ||
		    (size_t)snprintf(t2, sizeof t2, "%s/%s", to, d->d_name) >= sizeof t2 ||
		    !exists(p, t2, &st))
			continue;
		int r = S_ISDIR(st.st_mode) ? move_tree(p, f2, t2, depth + 1)
					    : S_ISREG(st.st_mode) ? move_one(p, f2, t2) : 0;
		if (r < 0)
			rc = r;
	}
	closedir(dir);
	return rc;
}

static int rename_entry(const struct cs_prefix *p, const char *from, const char *to)
{
	struct stat st;

	if (!exists(p, to, &st))
		return delete_entry(p, from);   /* renamed on or removed since */
	if (S_ISDIR(st.st_mode))
		return move_tree(p, from, to, 0);
	return S_ISREG(st.st_mode) ? move_one(p, from, to) : 0;
}

/* ---- holder records -------------------------------------------------- */

/* Record the copies fetches installed (entries b[0, n), all CS_OP_HELD):
 * those still on disk as installed; one gone or changed since needs none. */
static int hold_entries(struct cs_qentry **b, int n)
{
	struct cs_held *v = calloc(n, sizeof *v);
	int m = 0, rc;

	if (!v)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		const struct cs_prefix *p = cs_config_namespace(&cs_cfg, b[i]->ns);
		struct stat st;

		if (p && exists(p, b[i]->rel, &st) && S_ISREG(st.st_mode) &&
		    (uint64_t)st.st_size == b[i]->held.size &&
		    cs_mtime_ns(&st) == b[i]->held.mtime_ns)
			v[m++] = b[i]->held;
	}
	rc = cs_registry_hold(v, m, false);
	free(v);
	if (rc < 0)
		return -ENOTCONN;
	for (int i = 0; i < n; i++)
		b[i]->done = true;
	return 0;
}

/* ---- a batch ------------------------------------------------------------ */

static int write_entries(struct cs_qentry **b, int n)
{
	struct wjob *w = calloc(n, sizeof *w);
	int m = 0, rc;

	if (!w)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		const struct cs_prefix *p = cs_config_namespace(&cs_cfg, b[i]->ns);
		if (!p) {
			cs_warn("journal entry for unknown namespace '%s' dropped", b[i]->ns);
			b[i]->done = true;
			continue;
		}
		w[m++] = (struct wjob){ .p = p, .rel = b[i]->rel, .fails = b[i]->fails };
	}
	rc = m ? write_jobs(w, m) : 0;
	for (int i = 0, k = 0; i < n; i++)
		if (!b[i]->done)
			b[i]->done = w[k++].rc == 0;
	free(w);
	return rc;
}

static int one_entry(struct cs_qentry *x)
{
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, x->ns);
	int rc = 0;

	if (!p) {
		cs_warn("journal entry for unknown namespace '%s' dropped", x->ns);
	} else if (x->op == CS_OP_DELETE) {
		rc = delete_entry(p, x->rel);
	} else if (x->op == CS_OP_RENAME) {
		rc = rename_entry(p, x->rel, x->rel2);
	}
	x->done = rc == 0;
	return rc;
}

int cs_replicate_batch(struct cs_qentry **b, int n, const int *stopping)
{
	int rc;

	stop = stopping;
	cs_debug("replicating %d %c entr%s, first %s/%s", n, b[0]->op, n == 1 ? "y" : "ies",
		 b[0]->ns, b[0]->rel);
	if (b[0]->op == CS_OP_WRITE)
		rc = write_entries(b, n);
	else if (b[0]->op == CS_OP_HELD)
		rc = hold_entries(b, n);
	else
		rc = one_entry(b[0]);
	return rc == -ENOTCONN ? -EAGAIN : 0;
}

uint64_t cs_replicate_size(const struct cs_qentry *x)
{
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, x->ns);
	struct stat st;

	return p && exists(p, x->rel, &st) ? (uint64_t)st.st_size : 0;
}
