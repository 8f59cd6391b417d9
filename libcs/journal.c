/*
 * journal.c - the record of changes still to be replicated: its format, and
 * the append a host process makes when a write ends.
 *
 * One append-only file per process in CS_SPOOL, named j.<pid>.<stamp>.
 * close(), rename() and unlink() under a prefix append one line with a single
 * write(2) before they return, so an entry survives the writer dying at any
 * moment after (kill -9 included).  Lines:
 *
 *   W \t ns \t rel \n                 written: publish the path's content
 *   D \t ns \t rel \n                 unlinked: tombstone it
 *   R \t ns \t rel \t rel2 \n         renamed within the namespace
 *   H \t ns \t rel \t id \t version \t size \t mtime_ns \n
 *                                     the agent installed this copy
 *   K \t offset \n                    the entry starting at offset is done
 *
 * Paths are percent-encoded, so a line holds no tab or newline of its own.
 * Entries are idempotent (replaying one that is done changes nothing).  A
 * line cut short lacks its '\n': the agent reads whole lines only, and drops
 * such a line once its writer is gone (killed in the middle of writing it).
 * A writer that lives on after a short write (a full disk) appends its next
 * entry onto the cut line, and the two read as one unreadable line; the
 * agent ends the K lines it cuts itself.
 *
 * The owner holds an flock on its journal for life; the agent reads every
 * journal in CS_SPOOL, writes the K lines, and deletes a journal once all of
 * it is done and its lock can be taken (its owner is gone).  A journal is
 * created under a temporary name, locked, and only then renamed into view,
 * so the agent never mistakes one being born for an orphan.  Appending is
 * async-signal-safe: no allocation, no lock, only atomics and system calls;
 * it may run inside close() called from a signal handler.  The spool
 * directory is reached through a descriptor of its own, so a process that
 * chroots (a PHP-FPM pool) still finds it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cs.h"

#define LINE_MAX_BYTES (2 * 3 * CS_PATH_MAX + CS_NAME_MAX + 128)

static struct {
	int fd;                 /* this process's journal, -1 until first use */
	int opening;            /* a thread is creating it */
	int spool_fd;           /* CS_SPOOL, O_PATH */
	char name[64];          /* fd's name in CS_SPOOL, written before fd */
} jr = { .fd = -1, .spool_fd = -1 };

/* CS_SPOOL's descriptor, opened (and the directory made) on first use. */
static int spool_dir(void)
{
	int fd = __atomic_load_n(&jr.spool_fd, __ATOMIC_ACQUIRE);

	if (fd >= 0)
		return fd;
	if (!cs_cfg.spool[0])
		return -ENOSYS;
	fd = cs_libc.open(cs_cfg.spool, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && mkdir(cs_cfg.spool, 0777) == 0)
		fd = cs_libc.open(cs_cfg.spool, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int none = -1;
	if (!__atomic_compare_exchange_n(&jr.spool_fd, &none, fd, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		cs_libc.close(fd);      /* another thread was first */
		fd = none;
	}
	return fd;
}

int cs_journal_prepare(void)
{
	int fd = spool_dir();

	return fd < 0 ? fd : 0;
}

/* A new journal in CS_SPOOL, locked (flock) for this process's life and
 * only then named j.<pid>.<stamp> (into name): its descriptor, or -errno. */
static int create(char *name, size_t namesz)
{
	char tmp[80];
	struct timespec ts;
	int dir = spool_dir(), fd;

	if (dir < 0)
		return dir;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(name, namesz, "j.%d.%llx%06lx", (int)getpid(),
		 (unsigned long long)ts.tv_sec, (long)(ts.tv_nsec / 1000));
	snprintf(tmp, sizeof tmp, "%s.new", name);
	fd = cs_libc.openat(dir, tmp, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
			    0666);
	if (fd < 0)
		return -errno;
	/* Whoever runs the agent must be able to acknowledge it for us. */
	if (fchmod(fd, 0666) < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0 ||
	    cs_libc.renameat(dir, tmp, dir, name) < 0) {
		int e = errno;
		cs_libc.unlinkat(dir, tmp, 0);
		cs_libc.close(fd);
		return -e;
	}
	return fd;
}

/* This process's journal, opened on first use; -1 with *err on failure. */
static int journal_fd(int *err)
{
	int fd = __atomic_load_n(&jr.fd, __ATOMIC_ACQUIRE);

	while (fd < 0) {
		int none = 0;
		if (__atomic_compare_exchange_n(&jr.opening, &none, 1, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			fd = __atomic_load_n(&jr.fd, __ATOMIC_ACQUIRE);
			if (fd < 0) {
				fd = create(jr.name, sizeof jr.name);
				if (fd >= 0)
					__atomic_store_n(&jr.fd, fd, __ATOMIC_RELEASE);
			}
			__atomic_store_n(&jr.opening, 0, __ATOMIC_RELEASE);
			if (fd < 0) {
				*err = fd;
				return -1;
			}
			break;
		}
		sched_yield();          /* another thread is creating it */
		fd = __atomic_load_n(&jr.fd, __ATOMIC_ACQUIRE);
	}
	return fd;
}

static int put(char *out, size_t outsz, size_t *n, const char *s, size_t len)
{
	if (*n + len + 1 > outsz)
		return -ENOSPC;
	memcpy(out + *n, s, len);
	*n += len;
	return 0;
}

static int put_path(char *out, size_t outsz, size_t *n, const char *rel)
{
	int m;

	if (*n + 2 > outsz)
		return -ENOSPC;
	out[(*n)++] = '\t';
	if ((m = cs_url_encode_path(rel, out + *n, outsz - *n)) < 0)
		return -ENOSPC;
	*n += m;
	return 0;
}

int cs_journal_format(enum cs_op op, const char *ns, const char *rel,
		      const char *rel2, const struct cs_held *h, char *out,
		      size_t outsz)
{
	char head[2] = { (char)op, '\t' };
	size_t n = 0;

	/* The cluster refuses names with control bytes everywhere (routes,
	 * fetches): say so now rather than journal what can never replicate. */
	if (!cs_path_rel_valid(rel, strlen(rel)) ||
	    (op == CS_OP_RENAME && !cs_path_rel_valid(rel2, strlen(rel2))))
		return -EINVAL;
	if (put(out, outsz, &n, head, 2) < 0 || put(out, outsz, &n, ns, strlen(ns)) < 0 ||
	    put_path(out, outsz, &n, rel) < 0 ||
	    (op == CS_OP_RENAME && put_path(out, outsz, &n, rel2) < 0))
		return -ENOSPC;
	if (op == CS_OP_HELD) {
		int m = snprintf(out + n, outsz - n, "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRId64,
				 h->file_id, h->version, h->size, h->mtime_ns);
		if (m < 0 || (size_t)m >= outsz - n)
			return -ENOSPC;
		n += m;
	}
	if (n + 1 >= outsz)
		return -ENOSPC;
	out[n++] = '\n';
	return (int)n;
}

static int append(enum cs_op op, const char *ns, const char *rel, const char *rel2,
		  const struct cs_held *h)
{
	char line[LINE_MAX_BYTES];
	int n = cs_journal_format(op, ns, rel, rel2, h, line, sizeof line);
	int err = 0;

	if (n < 0)
		return n == -EINVAL ? -EINVAL : -ENAMETOOLONG;
	int fd = journal_fd(&err);
	if (fd < 0)
		return err;
	ssize_t w;
	do
		w = write(fd, line, n);
	while (w < 0 && errno == EINTR);
	if (w != n)
		return w < 0 ? -errno : -EIO;
	return 0;
}

int cs_journal_append(enum cs_op op, const char *ns, const char *rel,
		      const char *rel2)
{
	return append(op, ns, rel, rel2, NULL);
}

int cs_journal_append_held(const char *ns, const char *rel, const struct cs_held *h)
{
	return append(CS_OP_HELD, ns, rel, NULL, h);
}

/* Split off the next tab-separated field of [*p, end). */
static const char *field(const char **p, const char *end, size_t *flen)
{
	const char *s = *p, *t = memchr(s, '\t', end - s);

	if (!t)
		t = end;
	*flen = t - s;
	*p = t < end ? t + 1 : end;
	return s;
}

/* The field decoded into out[CS_PATH_MAX]; its encoded form may be up to
 * three times as long.  A NUL would end the field early for every reader
 * after us: a line that holds one is damaged, not shorter. */
static int decode_rel(const char *s, size_t len, char *out)
{
	int n = cs_url_decode_to(s, len, out, CS_PATH_MAX);

	return n < 0 || !cs_path_rel_valid(out, n) ? -EINVAL : 0;
}

/* The next field as a number. */
static int number(const char **p, const char *end, bool sign, uint64_t *u, int64_t *i)
{
	char num[32];
	size_t n;
	const char *s = field(p, end, &n);

	if (n == 0 || n >= sizeof num || memchr(s, '\0', n))
		return -EINVAL;
	memcpy(num, s, n);
	num[n] = '\0';
	return (sign ? cs_parse_i64(num, i) : cs_parse_u64(num, u)) ? 0 : -EINVAL;
}

int cs_journal_parse(const char *line, size_t len, struct cs_entry *e)
{
	const char *p = line, *end = line + len, *s;
	size_t n;

	/* A tab ends a field that is followed by another: never the last byte. */
	if (len < 3 || line[1] != '\t' || line[len - 1] == '\t')
		return -EINVAL;
	e->op = line[0];
	p += 2;
	if (e->op == CS_OP_ACK)
		return number(&p, end, false, &e->off, NULL) == 0 && p == end ? 0 : -EINVAL;
	if (e->op != CS_OP_WRITE && e->op != CS_OP_DELETE && e->op != CS_OP_RENAME &&
	    e->op != CS_OP_HELD)
		return -EINVAL;
	s = field(&p, end, &n);
	if (!cs_config_name_ok(s, n))   /* only a configured name is ever written */
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
	if (e->op == CS_OP_HELD &&
	    (number(&p, end, false, &e->held.file_id, NULL) < 0 ||
	     number(&p, end, false, &e->held.version, NULL) < 0 ||
	     number(&p, end, false, &e->held.size, NULL) < 0 ||
	     number(&p, end, true, NULL, &e->held.mtime_ns) < 0))
		return -EINVAL;
	return p == end ? 0 : -EINVAL;
}

void cs_journal_forget(void)
{
	/* The parent's journal and its lock stay the parent's: closing our
	 * copy lets the lock go when the parent dies even if we live on. */
	int fd = jr.fd;

	jr.fd = -1;
	jr.opening = 0;
	jr.name[0] = '\0';
	if (fd >= 0)
		cs_libc.close(fd);
}

void cs_journal_closing(int fd)
{
	int cur = fd;

	if (fd < 0)
		return;
	if (__atomic_load_n(&jr.fd, __ATOMIC_RELAXED) == fd)
		__atomic_compare_exchange_n(&jr.fd, &cur, -1, false, __ATOMIC_ACQ_REL,
					    __ATOMIC_RELAXED);
	cur = fd;
	if (__atomic_load_n(&jr.spool_fd, __ATOMIC_RELAXED) == fd)
		__atomic_compare_exchange_n(&jr.spool_fd, &cur, -1, false, __ATOMIC_ACQ_REL,
					    __ATOMIC_RELAXED);
}

void cs_journal_closing_range(unsigned first, unsigned last)
{
	int fds[2] = { __atomic_load_n(&jr.fd, __ATOMIC_RELAXED),
		       __atomic_load_n(&jr.spool_fd, __ATOMIC_RELAXED) };

	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0 && (unsigned)fds[i] >= first && (unsigned)fds[i] <= last)
			cs_journal_closing(fds[i]);
}

const char *cs_journal_name(void)
{
	/* Another thread may be creating the journal: its name is whole once
	 * its descriptor is seen, which journal_fd stores after the name,
	 * with release. */
	return __atomic_load_n(&jr.fd, __ATOMIC_ACQUIRE) >= 0 ? jr.name : "";
}
