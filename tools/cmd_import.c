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
 *     test machine, against four times that with several in flight);
 *   - the registering thread announces a batch of IMPORT_BATCH names to
 *     every node, then registers them in one transaction
 *     (cs_registry_import_many), while the walk hashes the next batch: two
 *     batches at most, so memory stays the same for any tree.
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
#define READERS 8               /* ... by this many threads */

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
	struct cs_import v[IMPORT_BATCH];
	int n;
	struct cs_announce names;
};

struct import {
	const char *ns;
	unsigned long added, conflicts, errors;
	struct chunk ch;
	struct batch b[2];
	struct batch *filling;  /* the walk's */
	struct batch *sent;     /* the registering thread's, or registered; NULL: none */
	pthread_t registrar;
	bool threaded;          /* the registering thread runs (else: in line) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool busy, stop;        /* under mu */
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

static void *registrar(void *arg)
{
	struct import *im = arg;

	pthread_mutex_lock(&im->mu);
	for (;;) {
		while (!im->busy && !im->stop)
			pthread_cond_wait(&im->cv, &im->mu);
		if (!im->busy)
			break;
		pthread_mutex_unlock(&im->mu);
		register_batch(im->ns, im->sent);
		pthread_mutex_lock(&im->mu);
		im->busy = false;
		pthread_cond_broadcast(&im->cv);
	}
	pthread_mutex_unlock(&im->mu);
	return NULL;
}

/* Wait for the batch sent to the registry, then say what became of it. */
static void import_collect(struct import *im)
{
	struct batch *b = im->sent;

	if (im->threaded) {
		pthread_mutex_lock(&im->mu);
		while (im->busy)
			pthread_cond_wait(&im->cv, &im->mu);
		pthread_mutex_unlock(&im->mu);
	}
	if (!b)
		return;
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
	im->sent = NULL;
}

/* Send the batch being filled to the registry (after the one before it is
 * done), and fill the other. */
static void import_flush(struct import *im)
{
	struct batch *b = im->filling;

	if (!b->n)
		return;
	import_collect(im);
	im->sent = b;
	im->filling = b == &im->b[0] ? &im->b[1] : &im->b[0];
	if (!im->threaded) {
		register_batch(im->ns, b);
		return;
	}
	pthread_mutex_lock(&im->mu);
	im->busy = true;
	pthread_cond_broadcast(&im->cv);
	pthread_mutex_unlock(&im->mu);
}

/* ---- reading -------------------------------------------------------- */

static void read_one(int dirfd, struct item *it)
{
	struct stat st;
	int fd = openat(dirfd, it->rel + it->off,
			O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
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

static void *reader(void *arg)
{
	struct chunk *c = arg;
	int i;

	while ((i = atomic_fetch_add(&c->next, 1)) < c->n)
		read_one(c->dirfd, &c->v[i]);
	return NULL;
}

/* Read and hash the chunk's files, READERS at a time (this thread one of
 * them), then take each into the batch or say why not. */
static void import_chunk(struct import *im)
{
	struct chunk *c = &im->ch;
	pthread_t t[READERS - 1];
	int nt = 0;

	atomic_store(&c->next, 0);
	for (; nt < READERS - 1 && nt < c->n - 1; nt++)
		if (pthread_create(&t[nt], NULL, reader, c) != 0)
			break;          /* fewer readers, then */
	reader(c);
	for (int i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
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
				    .cv = PTHREAD_COND_INITIALIZER };
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
		fprintf(stderr, "cs-replicate import: registry unreachable (%s)\n",
			strerror(-rc));
		return 1;
	}
	im.ns = p->name;
	im.filling = &im.b[0];
	im.threaded = pthread_create(&im.registrar, NULL, registrar, &im) == 0;
	cs_progress_init(&im.prog, "import", "files");
	if (im.prog.tty && (fd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		count_dir(&im, fd);
		im.prog.start_ms = cs_clock_ms();       /* the rate is the import's */
	}
	cs_progress_show(&im.prog, true);
	fd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rc = fd < 0 ? -errno : import_dir(&im, fd, "");
	import_flush(&im);
	import_collect(&im);
	if (im.threaded) {
		pthread_mutex_lock(&im.mu);
		im.stop = true;
		pthread_cond_broadcast(&im.cv);
		pthread_mutex_unlock(&im.mu);
		pthread_join(im.registrar, NULL);
	}
	for (int i = 0; i < 2; i++)
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
