/*
 * local.c - the agent's unix socket: this node's host processes ask here
 * for names they miss (protocol in cs.h), and are answered when the name is
 * present or cannot be.
 *
 * One thread reads requests for every connection (epoll, each connection
 * armed one-shot); a request goes to fetch.c, and the pool thread that
 * finishes it writes the reply and arms the connection again.  So a slow
 * fetch holds up nobody but those who asked for the same name.  The socket
 * is CS_SPOOL/agent.sock, mode 0660, in the spool directory's group: who
 * may ask is whoever may open it (the agent's user, that group, root), and
 * each connection's uid and pid are logged (SO_PEERCRED).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fetch.h"
#include "local.h"

#define MAX_CONNS 8192
#define REQ_MAX (4 + CS_NAME_MAX + CS_PATH_MAX)

struct conn {
	int fd;
	pid_t pid;
	uid_t uid;
	size_t len;                     /* bytes in buf */
	size_t line;                    /* the request under way's, with its '\n' */
	const char *ns, *rel;           /* the request under way, in buf */
	int64_t asked_us;
	char buf[REQ_MAX];
};

static int listen_fd = -1, ep = -1, wake = -1;
static int nconns;
static pthread_t thread;
static char sock_path[sizeof ((struct sockaddr_un *)0)->sun_path];

static void drop(struct conn *c)
{
	close(c->fd);           /* also leaves the epoll set */
	__atomic_sub_fetch(&nconns, 1, __ATOMIC_RELAXED);
	free(c);
}

static void arm(struct conn *c, int op)
{
	struct epoll_event e = { .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.ptr = c };

	if (epoll_ctl(ep, op, c->fd, &e) < 0)
		drop(c);
}

static void take_next(struct conn *c);

static const char *outcome(char reply)
{
	return reply == CS_REPLY_INSTALLED ? "installed" :
	       reply == CS_REPLY_ABSENT ? "absent" : "unavailable";
}

/* The request's outcome (a pool thread, or this one): reply, then the next. */
static void answered(void *arg, char reply)
{
	struct conn *c = arg;
	char msg[2] = { reply, '\n' };

	cs_info("pid %d uid %u: %s/%s %s (%.2f ms)", (int)c->pid, (unsigned)c->uid, c->ns, c->rel,
		outcome(reply), (cs_clock_us() - c->asked_us) / 1000.0);
	if (send(c->fd, msg, 2, MSG_NOSIGNAL | MSG_DONTWAIT) != 2) {
		drop(c);        /* it gave up waiting, or went */
		return;
	}
	memmove(c->buf, c->buf + c->line, c->len - c->line);
	c->len -= c->line;
	c->ns = c->rel = NULL;
	take_next(c);
}

/* A whole line in buf is a request: hand it on; else wait for more. */
static void take_next(struct conn *c)
{
	char *nl = memchr(c->buf, '\n', c->len);

	if (!nl) {
		if (c->len == sizeof c->buf) {
			cs_warn("pid %d uid %u: request too long; connection closed", (int)c->pid,
				(unsigned)c->uid);
			drop(c);
			return;
		}
		arm(c, EPOLL_CTL_MOD);
		return;
	}
	*nl = '\0';
	c->line = (size_t)(nl - c->buf) + 1;
	char *ns = c->buf + 2, *tab = strchr(ns, '\t');
	if (c->buf[0] != 'P' || c->buf[1] != '\t' || !tab) {
		cs_warn("pid %d uid %u: not a request; connection closed", (int)c->pid,
			(unsigned)c->uid);
		drop(c);
		return;
	}
	*tab = '\0';
	c->ns = ns;
	c->rel = tab + 1;
	c->asked_us = cs_clock_us();
	if (!cs_path_rel_valid(c->rel, strlen(c->rel)) || strlen(c->ns) >= CS_NAME_MAX) {
		answered(c, CS_REPLY_ABSENT);
		return;
	}
	if (cs_fetch_submit(c->ns, c->rel, answered, c) < 0)
		answered(c, CS_REPLY_UNAVAILABLE);
}

static void readable(struct conn *c, uint32_t events)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, MSG_DONTWAIT);

	if (n > 0) {
		c->len += n;
		take_next(c);
	} else if (n < 0 && (errno == EAGAIN || errno == EINTR) && !(events & EPOLLHUP)) {
		arm(c, EPOLL_CTL_MOD);
	} else {
		drop(c);        /* the host went (or closed after a timeout) */
	}
}

static void accept_all(void)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct ucred cred = { 0 };
		socklen_t len = sizeof cred;
		struct conn *c;

		if (fd < 0)
			return;
		if (__atomic_load_n(&nconns, __ATOMIC_RELAXED) >= MAX_CONNS ||
		    !(c = calloc(1, sizeof *c))) {
			cs_error_every(10, "too many host connections (%d); refusing more", MAX_CONNS);
			close(fd);
			continue;
		}
		getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
		c->fd = fd;
		c->pid = cred.pid;
		c->uid = cred.uid;
		__atomic_add_fetch(&nconns, 1, __ATOMIC_RELAXED);
		cs_debug("pid %d uid %u connected", (int)c->pid, (unsigned)c->uid);
		arm(c, EPOLL_CTL_ADD);
	}
}

static void *loop(void *unused)
{
	struct epoll_event ev[64];

	(void)unused;
	for (;;) {
		int n = epoll_wait(ep, ev, 64, -1);
		for (int i = 0; i < n; i++) {
			if (ev[i].data.ptr == &listen_fd)
				accept_all();
			else if (ev[i].data.ptr == &wake)
				return NULL;
			else
				readable(ev[i].data.ptr, ev[i].events);
		}
	}
}

int cs_local_start(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct epoll_event e = { .events = EPOLLIN };
	struct stat spool;

	if ((size_t)snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", cs_cfg.spool,
			     CS_SOCKET_NAME) >= sizeof a.sun_path)
		return -ENAMETOOLONG;
	snprintf(sock_path, sizeof sock_path, "%s", a.sun_path);
	if ((listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return -errno;
	unlink(a.sun_path);     /* a previous run's (we hold the agent lock) */
	if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(listen_fd, 1024) < 0)
		return -errno;
	if (stat(cs_cfg.spool, &spool) == 0 && chown(a.sun_path, (uid_t)-1, spool.st_gid) < 0)
		cs_debug("%s: keeping the agent's group: %s", a.sun_path, strerror(errno));
	if (chmod(a.sun_path, 0660) < 0)
		return -errno;
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return -errno;
	e.data.ptr = &listen_fd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &e) < 0)
		return -errno;
	e.data.ptr = &wake;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, wake, &e) < 0)
		return -errno;
	return pthread_create(&thread, NULL, loop, NULL) == 0 ? 0 : -EAGAIN;
}

void cs_local_stop(void)
{
	uint64_t one = 1;

	if (wake < 0)
		return;
	if (write(wake, &one, sizeof one) == sizeof one)
		pthread_join(thread, NULL);
	unlink(sock_path);
	close(listen_fd);
}
