/*
 * client.c - a host process asks its node's agent to make a missing name
 * present, or for the cluster's entries of a directory it lists, over the
 * unix socket CS_SPOOL/agent.sock (protocol in cs.h).
 *
 * A miss is asked inside open() and stat(), perhaps in a signal handler,
 * perhaps in several threads at once: system calls, atomics and the stack
 * only.  (A listing is asked from readdir(), which no signal handler may
 * call, and its body is malloc'd.)  A
 * few connections are kept for the process (opened lazily, close-on-exec),
 * each used by one request at a time and claimed with an atomic; a request
 * that finds them all busy makes a connection of its own for the occasion.
 * A kept connection is checked before use (the host may have closed its
 * number behind our back, and a forked child must not share the parent's),
 * and made again when the agent restarted.  When no agent listens the answer
 * comes in microseconds (-ECONNREFUSED); when one listens but does not
 * answer, the deadline ends the wait.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "cs.h"

#define KEPT 4

static struct conn {
	int busy;
	int fd;                 /* -1: none */
	dev_t dev;              /* the socket, to know the number is still it */
	ino_t ino;
} kept[KEPT] = { { 0, -1, 0, 0 }, { 0, -1, 0, 0 }, { 0, -1, 0, 0 }, { 0, -1, 0, 0 } };

/* What a listing brought (a miss's answer is its reply byte alone). */
struct answer {
	char *body;
	size_t len;
};

/* A new connection to the agent, or -errno (-ECONNREFUSED: none runs). */
static int dial(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	if ((size_t)snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", cs_cfg.spool,
			     CS_SOCKET_NAME) >= sizeof a.sun_path)
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A reply is waited for by recv() itself, bounded by the deadline:
	 * one system call less per miss than poll() and then recv(). */
	struct timeval tv = { .tv_sec = cs_cfg.miss_timeout_ms / 1000,
			      .tv_usec = (cs_cfg.miss_timeout_ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		int e = errno;
		cs_libc.close(fd);
		if (e == ENOENT || e == ECONNREFUSED || e == ENOTSOCK)
			return -ECONNREFUSED;
		if (e == EACCES || e == EPERM)
			cs_error_every(60, "%s/%s: %s: this user may not ask the agent",
				       cs_cfg.spool, CS_SOCKET_NAME, strerror(e));
		return -e;
	}
	return fd;
}

/* Whether c's descriptor is still the socket we made. */
static bool still_ours(const struct conn *c)
{
	struct stat st;

	return c->fd >= 0 && fstat(c->fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
	       st.st_dev == c->dev && st.st_ino == c->ino;
}

static void keep(struct conn *c, int fd)
{
	struct stat st;

	c->fd = -1;
	if (fd >= 0 && fstat(fd, &st) == 0) {
		c->dev = st.st_dev;
		c->ino = st.st_ino;
		__atomic_store_n(&c->fd, fd, __ATOMIC_RELEASE);
	}
}

/* Exactly n bytes of the answer into p: 0, -EPIPE when the connection
 * was dead before the first byte of an answer (first), -ETIMEDOUT, or
 * another -errno. */
static int take(int fd, char *p, size_t n, bool first, int64_t deadline)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = recv(fd, p + got, n - got, 0);
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -ETIMEDOUT;      /* SO_RCVTIMEO: the deadline passed */
		if (k < 0 && errno == EINTR) {
			if (cs_clock_ms() >= deadline)
				return -ETIMEDOUT;
			continue;
		}
		if (k == 0 || (k < 0 && errno == ECONNRESET))
			return got == 0 && first ? -EPIPE : -EIO;
		if (k < 0)
			return -errno;
		got += (size_t)k;
	}
	return 0;
}

/* A listing's body, after its first two bytes ("L" and a digit): into
 * *a->body (malloc'd), its length in *a->len. */
static int take_listing(int fd, const char two[2], struct answer *a, int64_t deadline)
{
	char head[CS_LIST_HEAD];
	uint64_t n;
	int rc;

	memcpy(head, two, 2);
	if ((rc = take(fd, head + 2, CS_LIST_HEAD - 2, false, deadline)) < 0)
		return rc;
	head[CS_LIST_HEAD - 1] = '\0';
	if (!cs_parse_u64(head + 1, &n) || n > CS_LIST_MAX)
		return -EIO;
	if (!(a->body = malloc(n + 1)))
		return -ENOMEM;         /* the connection is closed: out of step */
	a->body[n] = '\0';
	a->len = n;
	return take(fd, a->body, n, false, deadline);
}

/*
 * One request of kind ask (CS_ASK_*) on fd: the reply byte, or -EPIPE when
 * the connection turned out to be dead before any answer (the agent
 * restarted: try a new one), -ETIMEDOUT, or another -errno.
 */
static int ask(int fd, char kind, const char *ns, const char *rel, struct answer *a,
	       int64_t deadline)
{
	char head[2] = { kind, '\t' };
	struct iovec v[5] = {
		{ head, 2 }, { (void *)ns, strlen(ns) }, { "\t", 1 },
		{ (void *)rel, strlen(rel) }, { "\n", 1 },
	};
	struct msghdr m = { .msg_iov = v, .msg_iovlen = 5 };
	size_t want = 0;
	char reply[2];
	int rc;

	for (int i = 0; i < 5; i++)
		want += v[i].iov_len;
	ssize_t n;
	do
		n = sendmsg(fd, &m, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EPIPE || errno == ECONNRESET ? -EPIPE : -errno;
	if ((size_t)n != want)
		return -EIO;    /* a request always fits the socket's buffer */
	if ((rc = take(fd, reply, sizeof reply, true, deadline)) < 0)
		return rc;
	if (kind == CS_ASK_LIST && reply[0] == CS_ASK_LIST)
		return (rc = take_listing(fd, reply, a, deadline)) < 0 ? rc : CS_ASK_LIST;
	return reply[1] == '\n' ? (unsigned char)reply[0] : -EIO;
}

/* A request on a kept connection (or one made for it): ask's answers. */
static int request(char kind, const char *ns, const char *rel, struct answer *a)
{
	int64_t deadline = cs_clock_ms() + cs_cfg.miss_timeout_ms;
	struct conn *c = NULL;
	int fd = -1, rc = -EIO;
	bool fresh = false;

	for (int i = 0; i < KEPT && !c; i++) {
		int zero = 0;
		if (__atomic_compare_exchange_n(&kept[i].busy, &zero, 1, false,
						__ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			c = &kept[i];
	}
	if (c && still_ours(c)) {
		fd = c->fd;
	} else if (c) {
		c->fd = -1;     /* closed behind our back: the number is not ours */
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		if (fd < 0) {
			if ((fd = dial()) < 0) {
				rc = fd;
				break;
			}
			fresh = true;
		}
		rc = ask(fd, kind, ns, rel, a, deadline);
		if (rc >= 0)
			break;
		free(a->body);          /* a listing cut short */
		a->body = NULL;
		cs_libc.close(fd);      /* a late answer would be taken for the next */
		fd = -1;
		if (rc != -EPIPE || fresh)
			break;          /* a kept connection's agent went: once more */
	}
	if (c) {
		keep(c, rc >= 0 ? fd : -1);
		__atomic_store_n(&c->busy, 0, __ATOMIC_RELEASE);
	} else if (fd >= 0) {
		cs_libc.close(fd);
	}
	return rc;
}

int cs_client_present(const char *ns, const char *rel)
{
	struct answer a = { NULL, 0 };
	int rc = request(CS_ASK_PRESENT, ns, rel, &a);

	switch (rc) {
	case CS_REPLY_INSTALLED:
		return 0;
	case CS_REPLY_ABSENT:
		return -ENOENT;
	case -ECONNREFUSED:
		return -ECONNREFUSED;
	case -EPIPE:
		return -ECONNREFUSED;   /* it went away and none came back */
	default:
		return -EIO;
	}
}

int cs_client_list(const char *ns, const char *rel, char **body, size_t *len)
{
	struct answer a = { NULL, 0 };
	int rc = request(CS_ASK_LIST, ns, rel, &a);

	if (rc == CS_ASK_LIST) {
		*body = a.body;
		*len = a.len;
		return 0;
	}
	free(a.body);
	return rc == -ECONNREFUSED || rc == -EPIPE ? -ECONNREFUSED : -EIO;
}

void cs_client_prepare(void)
{
	struct conn *c = &kept[0];
	int zero = 0;

	if (!__atomic_compare_exchange_n(&c->busy, &zero, 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED))
		return;
	if (!still_ours(c)) {
		int fd = dial();
		keep(c, fd);
	}
	__atomic_store_n(&c->busy, 0, __ATOMIC_RELEASE);
}

void cs_client_forget(void)
{
	/* The child has copies of the parent's connections: a request of
	 * its own there would interleave with the parent's. */
	for (int i = 0; i < KEPT; i++) {
		if (kept[i].fd >= 0)
			cs_libc.close(kept[i].fd);
		kept[i].fd = -1;
		kept[i].busy = 0;
	}
}
