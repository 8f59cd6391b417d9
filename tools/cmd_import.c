/*
 * cmd_import.c - `cs-replicate import NAMESPACE`: register the files
 * already in this node's directory for NAMESPACE, so that an existing tree
 * joins the cluster without copying.
 *
 * Three stages run at once, each bounded:
 *   - the walk (the main thread) reads the directories, depth first, never
 *     through a symlink, and takes up to CHUNK regular files of one
 *     directory at a time;
 *   - READERS threads open, stat and hash a chunk's files side by side: a
 *     first import reads its tree from a cold cache, and one read at a time
 *     leaves the disk idle between them (about 2,000 small files/s on the
 *     test machine, against three to four times that with 4-16 in flight);
 *   - REGISTRARS threads each announce a batch of IMPORT_BATCH names to
 *     every node, then register them in one transaction
 *     (cs_registry_import_many), while the walk hashes the next batch: a
 *     batch's time is mostly waiting on MySQL and memcached, and two in
 *     flight keep both busy.  REGISTRARS + 1 batches at most, so memory
 *     stays the same for any tree.
 * The lines about single files and the progress line come from the main
 * thread alone.  Registering is safe to repeat: an import stopped part way
 * (a signal, a crash) and run again registers what is left, nothing twice.
 *
 * On a terminal, import first counts what it will do (a walk that reads the
 * directories and stats each file, nothing more), so that its progress line
 * has an ETA from the start: the count costs a small share of the import
 * itself, which reads and hashes every byte and registers every file
 * (bench/import measures both).  When stderr is not a terminal nobody
 * watches a progress line: no count, and the summary alone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "announce.h"
#include "cs.h"
#include "nodes.h"
#include "registry.h"
#include "settings.h"
#include "sign.h"
#include "tool.h"

/* Files announced, then registered, together: one transaction each (about
 * 300 bytes of SQL a file, well inside a statement's limit and MySQL's
 * read timeout). */
#define IMPORT_BATCH 500
#define CHUNK 128               /* files of one directory read side by side */
#define READERS 16              /* ... by this many threads */
#define REGISTRARS 2            /* batches registered at once */
#define BATCHES (REGISTRARS + 1)

/* What a reader found instead of a file to register. */
#define NOT_REGULAR (-1)
#define HARD_LINKED (-2)

/* One file of a chunk. */
struct item {
	char *rel;              /* its path in the namespace; its name at rel + off */
	size_t off;
	int err;                /* 0, an errno, NOT_REGULAR or HARD_LINKED */
	uint64_t size;
	int64_t mtime_ns;
	unsigned char sha[CS_SHA256_LEN];
};

/* Files of one directory, read by the readers. */
struct chunk {
	int dirfd;
	int n;
	atomic_int next;        /* the next item a reader takes */
	struct item v[CHUNK];
};

/* Files on their way to the registry, and their names for the indexes. */
struct batch {
	enum { FREE, FILLING, QUEUED, BUSY, DONE } state;       /* under mu */
	int n;
	struct cs_import v[IMPORT_BATCH];
	struct cs_announce names;
};

struct import {
	const char *ns;
	unsigned long added, conflicts, errors;
	struct chunk ch;
	struct batch b[BATCHES];
	struct batch *filling;  /* the walk's */
	pthread_t registrar[REGISTRARS];
	int threads;            /* registrars running (none: registered in line) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;              /* under mu */
	pthread_t reader[READERS - 1];
	int readers;            /* running (none: this thread reads alone) */
	pthread_mutex_t rmu;
	pthread_cond_t rgo, rdone;
	unsigned rgen;          /* under rmu: bumped for each chunk */
	int rbusy;              /* ... readers not done with it yet */
	bool rstop;
	struct cs_progress prog;        /* done: files looked at; bytes: hashed */
};

/* A line about one file, above the progress line. */
#define say(im, ...) cs_progress_print(&(im)->prog, stderr, "cs-replicate import: " __VA_ARGS__)

const struct cs_usage cs_usage_import = {
	"import", "NAMESPACE", 1, 1,
	"Register the files already in this node's directory for NAMESPACE: an existing\n"
	"tree joins the cluster without copying.  Progress on a terminal, then a summary.",
	(const struct cs_opt[]){ { NULL } },
};

static void progress(struct import *im)
{
	struct cs_progress *p = &im->prog;

	if (p->total && p->done > p->total)
		p->total = p->done;             /* the tree grew since it was counted */
	if (p->bytes_total && p->bytes > p->bytes_total)
		p->bytes_total = p->bytes;
	cs_progress_show(p, false);
}

/* Not looked at: ".", "..", and the library's temp files. */
static bool skipped(const char *name)
{
	return !strcmp(name, ".") || !strcmp(name, "..") || !strncmp(name, ".cs-", 4);
}

/* How many regular files, of how many bytes, import_dir will find below
 * fd (closed here), never through a symlink, as it does. */
static void count_dir(struct import *im, int fd)
{
	DIR *d = fdopendir(fd);
	struct dirent *e;

	if (!d) {
		close(fd);
		return;
	}
	while ((e = readdir(d))) {
		struct stat st;

		if (skipped(e->d_name) || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), e->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				count_dir(im, sub);
		} else if (S_ISREG(st.st_mode)) {
			im->prog.total++;
			im->prog.bytes_total += (uint64_t)st.st_size;
			if (im->prog.total % 1024 == 0)
				cs_progress_text(&im->prog, "import: counting files: %" PRIu64 " so far",
						 im->prog.total);
		}
	}
	closedir(d);
}

/* ---- registering ------------------------------------------------------ */

/* Announce the batch's names to every node, then register them: no node
 * can then answer 404 for a name the registry has. */
static void register_batch(const char *ns, struct batch *b)
{
	cs_announce_send(&b->names, true);
	cs_registry_import_many(ns, b->v, b->n);
}

/* A batch QUEUED, or NULL once told to stop; under mu. */
static struct batch *queued(struct import *im)
{
	for (;;) {
		for (int i = 0; i < BATCHES; i++)
			if (im->b[i].state == QUEUED)
				return &im->b[i];
		if (im->stop)
			return NULL;
		pthread_cond_wait(&im->cv, &im->mu);
	}
}

static void *registrar(void *arg)
{
	struct import *im = arg;
	struct batch *b;

	pthread_mutex_lock(&im->mu);
	while ((b = queued(im))) {
		b->state = BUSY;
		pthread_mutex_unlock(&im->mu);
		register_batch(im->ns, b);
		pthread_mutex_lock(&im->mu);
		b->state = DONE;
		pthread_cond_broadcast(&im->cv);
	}
	pthread_mutex_unlock(&im->mu);
	return NULL;
}

/* Say what became of a registered batch, and free it. */
static void report(struct import *im, struct batch *b)
{
	for (int i = 0; i < b->n; i++) {
		struct cs_import *h = &b->v[i];

		if (h->rc == 0) {
			im->added++;
		} else if (h->rc == -EEXIST) {
			say(im, "%s: the registry holds different content for this path; "
				"left as it is", h->rel);
			im->conflicts++;
		} else {
			say(im, "%s: %s", h->rel,
			    h->rc == -EAGAIN ? "registry unreachable" : strerror(-h->rc));
			im->errors++;
		}
		free((char *)h->rel);
	}
	b->n = 0;
}

/* Report the batches registered meanwhile; with all, wait for every one
 * sent.  Then a free batch to fill, if wanted (waiting for one if none). */
static struct batch *import_collect(struct import *im, bool all, bool want)
{
	struct batch *done[BATCHES], *free_one = NULL;
	int nd;

	pthread_mutex_lock(&im->mu);
	for (;;) {
		bool sent = false;

		nd = 0;
		free_one = NULL;
		for (int i = 0; i < BATCHES; i++) {
			struct batch *b = &im->b[i];
			if (b->state == DONE)
				done[nd++] = b;
			else if (b->state == FREE && !free_one)
				free_one = b;
			else if (b->state == QUEUED || b->state == BUSY)
				sent = true;
		}
		if (nd || !(all ? sent : want && !free_one))
			break;
		pthread_cond_wait(&im->cv, &im->mu);
	}
	pthread_mutex_unlock(&im->mu);
	for (int i = 0; i < nd; i++)
		report(im, done[i]);    /* only this thread takes a DONE batch */
	pthread_mutex_lock(&im->mu);
	for (int i = 0; i < nd; i++) {
		done[i]->state = FREE;
		free_one = free_one ? free_one : done[i];
	}
	if (free_one && want && !all)
		free_one->state = FILLING;
	pthread_mutex_unlock(&im->mu);
	if (all && nd)
		return import_collect(im, all, want);
	return want ? free_one : NULL;
}

/* Send the batch being filled to the registry, and fill another. */
static void import_flush(struct import *im)
{
	struct batch *b = im->filling;

	if (!b->n)
		return;
	if (!im->threads) {
		register_batch(im->ns, b);
		report(im, b);
		return;
	}
	pthread_mutex_lock(&im->mu);
	b->state = QUEUED;
	pthread_cond_broadcast(&im->cv);
	pthread_mutex_unlock(&im->mu);
	im->filling = import_collect(im, false, true);
}

/* ---- reading -------------------------------------------------------- */

/* The file, opened to be read.  Its access time stays as it was where
 * this user may say so (the owner): reading a tree is no use of it, and
 * the inode of every file read need not be written back. */
static int open_file(int dirfd, const char *name)
{
	int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	int fd = openat(dirfd, name, flags | O_NOATIME);

	return fd < 0 && errno == EPERM ? openat(dirfd, name, flags) : fd;
}

static void read_one(int dirfd, struct item *it)
{
	struct stat st;
	int fd = open_file(dirfd, it->rel + it->off);
	int rc;

	it->err = 0;
	if (fd < 0) {
		it->err = errno;
		return;
	}
	if (fstat(fd, &st) < 0)
		it->err = errno;
	else if (!S_ISREG(st.st_mode))
		it->err = NOT_REGULAR;          /* a FIFO or device is no file to serve */
	else if (st.st_nlink > 1)
		it->err = HARD_LINKED;          /* another name may lead outside the namespace */
	else if ((rc = cs_sha256_fd(fd, it->sha, &it->size)) < 0)
		it->err = -rc;
	else
		it->mtime_ns = cs_mtime_ns(&st);
	close(fd);
}

/* Take the chunk's files one by one until none is left. */
static void read_chunk(struct chunk *c)
{
	int i;

	while ((i = atomic_fetch_add(&c->next, 1)) < c->n)
		read_one(c->dirfd, &c->v[i]);
}

/* A reader: each chunk the walk hands out, until told to stop. */
static void *reader(void *arg)
{
	struct import *im = arg;
	unsigned seen = 0;

	pthread_mutex_lock(&im->rmu);
	for (;;) {
		while (im->rgen == seen && !im->rstop)
			pthread_cond_wait(&im->rgo, &im->rmu);
		if (im->rstop)
			break;
		seen = im->rgen;
		pthread_mutex_unlock(&im->rmu);
		read_chunk(&im->ch);
		pthread_mutex_lock(&im->rmu);
		if (--im->rbusy == 0)
			pthread_cond_signal(&im->rdone);
	}
	pthread_mutex_unlock(&im->rmu);
	return NULL;
}

/* Read and hash the chunk's files, the readers and this thread side by
 * side, then take each into the batch or say why not. */
static void import_chunk(struct import *im)
{
	struct chunk *c = &im->ch;

	if (!c->n)
		return;
	atomic_store(&c->next, 0);
	pthread_mutex_lock(&im->rmu);
	im->rbusy = im->readers;
	im->rgen++;
	pthread_cond_broadcast(&im->rgo);
	pthread_mutex_unlock(&im->rmu);
	read_chunk(c);
	pthread_mutex_lock(&im->rmu);
	while (im->rbusy)
		pthread_cond_wait(&im->rdone, &im->rmu);
	pthread_mutex_unlock(&im->rmu);
	for (int i = 0; i < c->n; i++) {
		struct item *it = &c->v[i];
		struct batch *b = im->filling;

		im->prog.done++;
		if (it->err) {
			say(im, "%s: %s", it->rel,
			    it->err == NOT_REGULAR ? "not a regular file; not imported" :
			    it->err == HARD_LINKED ? "hard-linked (another name may lead outside the "
						     "namespace; copy it instead); not imported" :
			    strerror(it->err));
			im->errors++;
			free(it->rel);
			continue;
		}
		im->prog.bytes += it->size;
		progress(im);
		cs_announce_add(&b->names, im->ns, it->rel);
		b->v[b->n++] = (struct cs_import){ it->rel, it->size, it->mtime_ns, { 0 }, 0 };
		memcpy(b->v[b->n - 1].sha256, it->sha, CS_SHA256_LEN);
		if (b->n == IMPORT_BATCH)
			import_flush(im);
	}
	c->n = 0;
}

/* ---- the walk ------------------------------------------------------- */

/* Whether entry e of directory d is a directory or a regular file (S_IFDIR,
 * S_IFREG), without a stat where readdir said; 0 for anything else. */
static mode_t kind(DIR *d, const struct dirent *e)
{
	struct stat st;

	if (e->d_type == DT_DIR)
		return S_IFDIR;
	if (e->d_type == DT_REG)
		return S_IFREG;
	if (e->d_type != DT_UNKNOWN ||
	    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return S_ISDIR(st.st_mode) ? S_IFDIR : S_ISREG(st.st_mode) ? S_IFREG : 0;
}

/* Depth-first over fd (closed here); never follows symlinks, skips libcs
 * temp files.  A regular file is read by a reader, which checks again
 * what it opened. */
static int import_dir(struct import *im, int fd, const char *prefix)
{
	DIR *d = fdopendir(fd);
	struct dirent *e;

	if (!d) {
		close(fd);
		return -errno;
	}
	im->ch.dirfd = dirfd(d);
	while ((e = readdir(d))) {
		char rel[CS_PATH_MAX];
		mode_t k;

		if (skipped(e->d_name))
			continue;
		if (snprintf(rel, sizeof rel, "%s%s%s", prefix, *prefix ? "/" : "",
			     e->d_name) >= (int)sizeof rel ||
		    !cs_path_rel_valid(rel, strlen(rel))) {
			say(im, "skipping unusable name under '%s'", prefix);
			im->errors++;
			continue;
		}
		if ((k = kind(d, e)) == S_IFDIR) {
			int sub;

			import_chunk(im);       /* this directory's files so far */
			sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0 || import_dir(im, sub, rel) < 0) {
				say(im, "%s: %s", rel, strerror(errno));
				im->errors++;
			}
			im->ch.dirfd = dirfd(d);
		} else if (k == S_IFREG) {
			struct item *it = &im->ch.v[im->ch.n];

			if (!(it->rel = strdup(rel))) {
				say(im, "%s: %s", rel, strerror(errno));
				im->errors++;
				continue;
			}
			it->off = strlen(rel) - strlen(e->d_name);
			if (++im->ch.n == CHUNK)
				import_chunk(im);
		}
	}
	import_chunk(im);
	closedir(d);
	return 0;
}

int cs_cmd_import(const struct cs_args *a)
{
	static struct import im = { .mu = PTHREAD_MUTEX_INITIALIZER,
				    .cv = PTHREAD_COND_INITIALIZER,
				    .rmu = PTHREAD_MUTEX_INITIALIZER,
				    .rgo = PTHREAD_COND_INITIALIZER,
				    .rdone = PTHREAD_COND_INITIALIZER };
	const struct cs_prefix *p;
	int64_t start = cs_clock_ms();
	uint32_t self;
	int fd, rc;

	p = cs_config_namespace(&cs_cfg, a->arg[0]);
	if (!p) {
		fprintf(stderr, "cs-replicate import: no namespace '%s' in CS_PREFIXES\n",
			a->arg[0]);
		return 2;
	}
	if ((rc = cs_nodes_self(&self)) < 0) {
		char why[96];
		fprintf(stderr, "cs-replicate import: %s\n", cs_registry_why(rc, why));
		return 1;
	}
	im.ns = p->name;
	im.filling = &im.b[0];
	im.filling->state = FILLING;
	while (im.threads < REGISTRARS &&
	       pthread_create(&im.registrar[im.threads], NULL, registrar, &im) == 0)
		im.threads++;
	while (im.readers < READERS - 1 &&
	       pthread_create(&im.reader[im.readers], NULL, reader, &im) == 0)
		im.readers++;
	cs_progress_init(&im.prog, "import", "files");
	if (im.prog.tty && (fd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		count_dir(&im, fd);
		im.prog.start_ms = cs_clock_ms();       /* the rate is the import's */
	}
	cs_progress_show(&im.prog, true);
	fd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rc = fd < 0 ? -errno : import_dir(&im, fd, "");
	import_flush(&im);
	import_collect(&im, true, false);
	pthread_mutex_lock(&im.mu);
	im.stop = true;
	pthread_cond_broadcast(&im.cv);
	pthread_mutex_unlock(&im.mu);
	for (int i = 0; i < im.threads; i++)
		pthread_join(im.registrar[i], NULL);
	pthread_mutex_lock(&im.rmu);
	im.rstop = true;
	pthread_cond_broadcast(&im.rgo);
	pthread_mutex_unlock(&im.rmu);
	for (int i = 0; i < im.readers; i++)
		pthread_join(im.reader[i], NULL);
	for (int i = 0; i < BATCHES; i++)
		cs_announce_free(&im.b[i].names);
	cs_progress_end(&im.prog);
	if (rc < 0) {
		fprintf(stderr, "cs-replicate import: %s: %s\n", p->dir, strerror(-rc));
		return 1;
	}
	cs_summary("import", im.prog.done, "files", im.prog.bytes, (cs_clock_ms() - start) / 1e3);
	printf(": %lu registered or already matching, %lu conflicting, %lu errors\n",
	       im.added, im.conflicts, im.errors);
	return im.conflicts || im.errors ? 1 : 0;
}
