/*
 * journal.c - this process's record of writes still to be replicated.
 *
 * One append-only file per process in CS_SPOOL, named j.<pid>.<stamp>.
 * close(), rename() and unlink() under a prefix append one line with a single
 * write(2) before they return, so an entry survives the writer dying at any
 * moment after (kill -9 included; a power cut needs the registry's answer,
 * see README).  Lines:
 *
 *   W \t ns \t rel \n            written: publish the path's content
 *   D \t ns \t rel \n            unlinked: tombstone it
 *   R \t ns \t rel \t rel2 \n    renamed within the namespace
 *   K \t offset \n               the entry starting at offset is done
 *
 * Paths are percent-encoded, so a line holds no tab or newline of its own.
 * Entries are idempotent (replaying one that is done changes nothing) and a
 * line cut short by a crash lacks its '\n' and is ignored.
 *
 * The owner holds an flock on its journal for life; a journal whose lock can
 * be taken belongs to a dead process and is replicated by cs-replicate
 * (replicator.c).  The file is created under a temporary name, locked and
 * only then renamed into view, so nobody can mistake a journal being born for
 * an orphan.  Appending is async-signal-safe: no allocation, no lock, only
 * atomics and system calls; it may run inside close() called from a signal
 * handler.  Reading, acknowledging and compacting (punching holes in the
 * done part, so offsets never move) are the replicator's.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cs.h"
#include "journal.h"

#define LINE_MAX_BYTES (2 * 3 * CS_PATH_MAX + CS_NAME_MAX + 16)

struct cs_journal_state cs_jr = { .fd = -1 };

/* Create, lock and publish a new journal; its fd, or a negative errno. */
int cs_journal_create(char *name, size_t namesz)
{
	char tmp[CS_PATH_MAX + 64];
	struct timespec ts;
	int fd;

	if (!cs_cfg.spool[0])
		return -ENOSYS;
	clock_gettime(CLOCK_REALTIME, &ts);
	if ((size_t)snprintf(name, namesz, "%s/j.%d.%llx%06lx", cs_cfg.spool, (int)getpid(),
			     (unsigned long long)ts.tv_sec, (long)(ts.tv_nsec / 1000)) >= namesz ||
	    (size_t)snprintf(tmp, sizeof tmp, "%s.new", name) >= sizeof tmp)
		return -ENAMETOOLONG;
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0666);
	if (fd < 0 && errno == ENOENT && mkdir(cs_cfg.spool, 0777) == 0)
		fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0666);
	if (fd < 0)
		return -errno;
	/* Whoever runs cs-replicate must be able to finish it for us. */
	if (fchmod(fd, 0666) < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0 || rename(tmp, name) < 0) {
		int e = errno;
		unlink(tmp);
		close(fd);
		return -e;
	}
	return fd;
}

/* This process's journal, opened on first use; -1 with *err on failure. */
static int journal_fd(int *err)
{
	int fd = __atomic_load_n(&cs_jr.fd, __ATOMIC_ACQUIRE);

	while (fd < 0) {
		int none = 0;
		if (__atomic_compare_exchange_n(&cs_jr.opening, &none, 1, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			fd = __atomic_load_n(&cs_jr.fd, __ATOMIC_ACQUIRE);
			if (fd < 0) {
				fd = cs_journal_create(cs_jr.name, sizeof cs_jr.name);
				if (fd >= 0) {
					cs_jr.owner = getpid();
					__atomic_store_n(&cs_jr.fd, fd, __ATOMIC_RELEASE);
				}
			}
			__atomic_store_n(&cs_jr.opening, 0, __ATOMIC_RELEASE);
			if (fd < 0) {
				*err = fd;
				return -1;
			}
			break;
		}
		sched_yield();          /* another thread is creating it */
		fd = __atomic_load_n(&cs_jr.fd, __ATOMIC_ACQUIRE);
	}
	return fd;
}

int cs_journal_format(enum cs_op op, const char *ns, const char *rel,
		      const char *rel2, char *out, size_t outsz)
{
	size_t n = 0;
	int m;

	/* The cluster refuses names with control bytes everywhere (routes,
	 * fetches): say so now rather than journal what can never replicate. */
	if (!cs_path_rel_valid(rel, strlen(rel)) ||
	    (op == CS_OP_RENAME && !cs_path_rel_valid(rel2, strlen(rel2))))
		return -EINVAL;
	if (outsz < 4 + strlen(ns))
		return -ENOSPC;
	out[n++] = (char)op;
	out[n++] = '\t';
	memcpy(out + n, ns, strlen(ns));
	n += strlen(ns);
	out[n++] = '\t';
	if ((m = cs_url_encode_path(rel, out + n, outsz - n)) < 0)
		return -ENOSPC;
	n += m;
	if (op == CS_OP_RENAME) {
		if (n + 2 > outsz)
			return -ENOSPC;
		out[n++] = '\t';
		if ((m = cs_url_encode_path(rel2, out + n, outsz - n)) < 0)
			return -ENOSPC;
		n += m;
	}
	if (n + 1 >= outsz)
		return -ENOSPC;
	out[n++] = '\n';
	return (int)n;
}

int cs_journal_append(enum cs_op op, const char *ns, const char *rel,
		      const char *rel2)
{
	char line[LINE_MAX_BYTES];
	int n = cs_journal_format(op, ns, rel, rel2, line, sizeof line);
	int rc = 0, err = 0;

	if (n < 0)
		return n == -EINVAL ? -EINVAL : -ENAMETOOLONG;
	int fd = journal_fd(&err);
	if (fd < 0) {
		rc = err;
	} else {
		ssize_t w;
		do
			w = write(fd, line, n);
		while (w < 0 && errno == EINTR);
		if (w != n)
			rc = w < 0 ? -errno : -EIO;
		else
			__atomic_fetch_add(&cs_jr.appended, 1, __ATOMIC_ACQ_REL);
	}
	return rc;
}

/* Split off the next tab-separated field of line[0, len). */
static const char *field(const char **p, const char *end, size_t *flen)
{
	const char *s = *p, *t = memchr(s, '\t', end - s);

	if (!t)
		t = end;
	*flen = t - s;
	*p = t < end ? t + 1 : end;
	return s;
}

static int decode_rel(const char *s, size_t len, char *out)
{
	if (len == 0 || len >= CS_PATH_MAX)
		return -EINVAL;
	memcpy(out, s, len);
	out[len] = '\0';
	int n = cs_url_decode(out);
	if (n < 0 || !cs_path_rel_valid(out, n))
		return -EINVAL;
	return 0;
}

int cs_journal_parse(const char *line, size_t len, struct cs_entry *e)
{
	const char *p = line, *end = line + len, *s;
	size_t n;

	if (len < 3 || line[1] != '\t')
		return -EINVAL;
	e->op = line[0];
	p += 2;
	if (e->op == 'K') {
		char num[32], *stop;
		if (end - p <= 0 || (size_t)(end - p) >= sizeof num)
			return -EINVAL;
		memcpy(num, p, end - p);
		num[end - p] = '\0';
		e->off = strtoull(num, &stop, 10);
		return *stop ? -EINVAL : 1;
	}
	if (e->op != CS_OP_WRITE && e->op != CS_OP_DELETE && e->op != CS_OP_RENAME)
		return -EINVAL;
	s = field(&p, end, &n);
	if (n == 0 || n >= CS_NAME_MAX)
		return -EINVAL;
	memcpy(e->ns, s, n);
	e->ns[n] = '\0';
	s = field(&p, end, &n);
	if (decode_rel(s, n, e->rel) < 0)
		return -EINVAL;
	e->rel2[0] = '\0';
	if (e->op == CS_OP_RENAME) {
		s = field(&p, end, &n);
		if (decode_rel(s, n, e->rel2) < 0)
			return -EINVAL;
	}
	return p == end ? 0 : -EINVAL;
}

int cs_journal_ack(int fd, uint64_t off)
{
	char line[40];
	int n = snprintf(line, sizeof line, "K\t%llu\n", (unsigned long long)off);
	ssize_t w;

	do
		w = write(fd, line, n);
	while (w < 0 && errno == EINTR);
	return w == n ? 0 : -EIO;
}

void cs_journal_forget(void)
{
	/* The parent's journal and its lock stay the parent's: closing our
	 * copy lets the lock go when the parent dies even if we live on. */
	int fd = cs_jr.fd;

	cs_jr.fd = -1;
	cs_jr.opening = 0;
	cs_jr.appended = 0;
	cs_jr.name[0] = '\0';
	if (fd >= 0)
		close(fd);
}

void cs_journal_closing(int fd)
{
	int cur = fd;

	if (fd >= 0 && __atomic_load_n(&cs_jr.fd, __ATOMIC_RELAXED) == fd)
		__atomic_compare_exchange_n(&cs_jr.fd, &cur, -1, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}
