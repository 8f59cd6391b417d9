/*
 * local.c - the agent's unix socket: this node's host processes ask here
 * for names they miss (protocol in cs.h), and are answered when the name is
 * present or cannot be.
 *
 * A thread per connection: it reads a request, does the work (fetch.c,
 * which joins a request already under way for the same name), answers, and
 * reads the next.  A host keeps its few connections for its life, so
 * threads are made once per host process, and a miss costs one wake-up of
 * the agent and no hand-over between its threads (on a VM a switch between
 * threads is the dearest part of a miss).  A slow fetch holds up nobody but
 * those who asked for the same name.  The socket is CS_SPOOL/agent.sock,
 * mode 0660, in the spool directory's group: who may ask is whoever may
 * open it (the agent's user, that group, root), and each connection's uid
 * and pid are logged (SO_PEERCRED).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fetch.h"
#include "listing.h"
#include "metrics.h"
#include "tail.h"
#include "local.h"

#define MAX_CONNS 4096
#define REQ_MAX (4 + CS_NAME_MAX + CS_PATH_MAX)
#define STACK_BYTES (512 * 1024)

struct conn {
	int fd;
	pid_t pid;
	uid_t uid;
	size_t len;                     /* bytes in buf */
	char buf[REQ_MAX];
};

static int listen_fd = -1;
static int nconns;
static volatile int stopping;
static pthread_t acceptor;
static char sock_path[sizeof ((struct sockaddr_un *)0)->sun_path];

static const char *outcome(char reply)
{
	return reply == CS_REPLY_INSTALLED ? "installed" :
	       reply == CS_REPLY_ABSENT ? "absent" : "unavailable";
}

int cs_local_parse(char *line, size_t len, const char **ns, const char **rel)
{
	char *tab;
	size_t rl;

	if (len < 2 || (line[0] != CS_ASK_PRESENT && line[0] != CS_ASK_LIST) ||
	    line[1] != '\t' || !(tab = memchr(line + 2, '\t', len - 2)))
		return -EINVAL;
	*tab = '\0';
	*ns = line + 2;
	*rel = tab + 1;
	rl = len - (size_t)(*rel - line);
	/* Every byte counts: a NUL would end a name early and the rest be
	 * ignored (cs_path_rel_valid refuses it in rel). */
	if (!cs_config_name_ok(*ns, tab - *ns) ||
	    (!cs_path_rel_valid(*rel, rl) && !(line[0] == CS_ASK_LIST && rl == 0)))
		return -ENOENT;
	return line[0];
}

/* Leave the NUL-separated names of gone out of the entries in out[from..). */
static void drop_gone(const struct cs_buf *gone, struct cs_buf *out, size_t from)
{
	size_t to = from;

	if (!gone->len)
		return;
	for (size_t at = from; at < out->len;) {
		const char *name = out->s + at + 1;
		size_t n = strlen(name) + 2;
		bool hit = false;

		for (size_t k = 0; k < gone->len && !hit; k += strlen(gone->s + k) + 1)
			hit = strcmp(gone->s + k, name) == 0;
		if (!hit) {
			memmove(out->s + to, out->s + at, n);
			to += n;
		}
		at += n;
	}
	out->len = to;
}

/*
 * A listing's reply: "L<length>\n" and its body, or "U\n" when the
 * registry cannot say (the host then reports EIO).  Names that a delete
 * or rename on this node took out, and that the registry may not show yet,
 * are left out.  They are read from the journals first, before the
 * registry's answer (an entry acknowledged since was registered, and its
 * kept listings forgotten, before that), and read from the journals
 * themselves, not asked of the thread that replicates them: it reads a new
 * line only once the one before has settled, or after a push under way,
 * and "rm f; ls" must not list f again meanwhile.  Reading them costs a
 * few microseconds a journal.
 */
static void list(struct conn *c, const char *ns, const char *rel, struct cs_buf *out)
{
	int64_t start = cs_clock_us();
	char head[CS_LIST_HEAD + 1] = "";
	struct cs_buf gone = { 0 };
	int rc;

	if (cs_tail_gone_in(ns, rel, &gone) < 0)
		cs_buf_clear(&gone);
	cs_buf_put(out, head, CS_LIST_HEAD);    /* room for the header */
	rc = cs_listing_get(ns, rel, out);
	if (rc == 0)
		drop_gone(&gone, out, CS_LIST_HEAD);
	cs_buf_free(&gone);
	if (rc < 0 || out->oom) {
		cs_buf_clear(out);
		cs_buf_put(out, "U\n", 2);
		cs_error_every(10, "listing %s/%s: %s", ns, rel,
			       strerror(rc < 0 ? -rc : ENOMEM));
		return;
	}
	snprintf(head, sizeof head, "L%0*zu\n", CS_LIST_HEAD - 2, out->len - CS_LIST_HEAD);
	memcpy(out->s, head, CS_LIST_HEAD);
	cs_count(CS_C_LISTINGS, 1);
	cs_info("pid %d uid %u: listed %s/%s (%zu bytes, %.2f ms)", (int)c->pid,
		(unsigned)c->uid, ns, *rel ? rel : ".", out->len - CS_LIST_HEAD,
		(cs_clock_us() - start) / 1000.0);
}

/* One request line (its '\n' replaced by a NUL): its reply into out;
 * false for what is no request. */
static bool answer(struct conn *c, char *line, size_t len, struct cs_buf *out)
{
	const char *ns, *rel;
	int64_t start = cs_clock_us();
	int rc = cs_local_parse(line, len, &ns, &rel);
	char reply[CS_LIST_HEAD + 1] = { CS_REPLY_ABSENT, '\n' };

	if (rc == -EINVAL)
		return false;
	if (rc == CS_ASK_LIST) {
		list(c, ns, rel, out);
		return true;
	}
	if (line[0] == CS_ASK_LIST) {   /* a directory the cluster cannot have */
		snprintf(reply, sizeof reply, "L%0*d\n", CS_LIST_HEAD - 2, 0);
		cs_buf_put(out, reply, CS_LIST_HEAD);
		return true;
	}
	if (rc == CS_ASK_PRESENT)
		reply[0] = cs_fetch_wait(ns, rel);
	cs_buf_put(out, reply, 2);
	cs_info("pid %d uid %u: %s/%s %s (%.2f ms)", (int)c->pid, (unsigned)c->uid, ns, rel,
		outcome(reply[0]), (cs_clock_us() - start) / 1000.0);
	return true;
}

/* All of p[0, n) to the host (a listing is larger than the socket's
 * buffer); false when it went. */
static bool send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		p += k;
		n -= (size_t)k;
	}
	return true;
}

static void *serve(void *arg)
{
	struct conn *c = arg;
	struct cs_buf out = { 0 };

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (!nl) {
			if (c->len == sizeof c->buf) {
				cs_warn("pid %d uid %u: request too long; connection closed",
					(int)c->pid, (unsigned)c->uid);
				break;
			}
			ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;          /* the host went, or gave up waiting */
			c->len += n;
			continue;
		}
		*nl = '\0';
		cs_buf_clear(&out);
		if (!answer(c, c->buf, (size_t)(nl - c->buf), &out)) {
			cs_warn("pid %d uid %u: not a request; connection closed", (int)c->pid,
				(unsigned)c->uid);
			break;
		}
		if (out.oom || !send_all(c->fd, out.s, out.len))
			break;
		if (out.cap > (1u << 20))
			cs_buf_free(&out);      /* a large listing's memory goes back */
		size_t used = (size_t)(nl - c->buf) + 1;
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
	}
	cs_buf_free(&out);
	close(c->fd);
	free(c);
	__atomic_sub_fetch(&nconns, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *accept_all(void *unused)
{
	pthread_attr_t attr;

	(void)unused;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, STACK_BYTES);
	while (!stopping) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		struct ucred cred = { 0 };
		socklen_t len = sizeof cred;
		struct conn *c;
		pthread_t t;

		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED && !stopping)
				cs_error_every(10, "%s: accept: %s", sock_path, strerror(errno));
			if (errno == EMFILE || errno == ENFILE)
				usleep(100 * 1000);
			continue;
		}
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
		if (pthread_create(&t, &attr, serve, c) != 0) {
			cs_error_every(10, "cannot start a thread for a host connection");
			close(fd);
			free(c);
			__atomic_sub_fetch(&nconns, 1, __ATOMIC_RELAXED);
		}
	}
	pthread_attr_destroy(&attr);
	return NULL;
}

int cs_local_start(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat spool;
	sigset_t all, old;
	int rc;

	if ((size_t)snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", cs_cfg.spool,
			     CS_SOCKET_NAME) >= sizeof a.sun_path)
		return -ENAMETOOLONG;
	snprintf(sock_path, sizeof sock_path, "%s", a.sun_path);
	if ((listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	unlink(a.sun_path);     /* a previous run's (we hold the agent lock) */
	if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(listen_fd, 1024) < 0)
		return -errno;
	if (stat(cs_cfg.spool, &spool) == 0 && chown(a.sun_path, (uid_t)-1, spool.st_gid) < 0)
		cs_debug("%s: keeping the agent's group: %s", a.sun_path, strerror(errno));
	if (chmod(a.sun_path, 0660) < 0)
		return -errno;
	/* Connection threads take no signal: the main thread waits for them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&acceptor, NULL, accept_all, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc == 0 ? 0 : -rc;
}

void cs_local_stop(void)
{
	if (listen_fd < 0)
		return;
	stopping = 1;
	unlink(sock_path);
	shutdown(listen_fd, SHUT_RDWR);         /* wakes accept() */
	pthread_join(acceptor, NULL);
	close(listen_fd);
	listen_fd = -1;
}
