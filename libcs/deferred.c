/*
 * deferred.c - registry writes that need not hold up the host's call.
 *
 * After a fetch, recording "this node now holds version V" costs a MySQL
 * insert and a memcached set (~0.3 ms), which the caller's open() does not
 * need to wait for.  Such writes are queued here and done by one background
 * thread, started lazily in the process that first needs it (never in the
 * constructor: nginx, Apache and PHP-FPM fork after loading us, and threads
 * do not survive fork).  The thread blocks every signal, so the host's
 * handlers keep running on the host's threads.  At exit the queue gets a
 * bounded chance to drain; a write still queued then, or refused by a
 * registry that stays down, is lost only as a record: the file is here, and
 * `cs-replicate` can re-register it.  When the queue is full the caller does
 * the write itself.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs.h"

#define QUEUE_MAX 1024
#define RETRIES 5

struct job {
	struct job *next;
	struct cs_file f;
	uint32_t node;
	int tries;
	char ns[CS_NAME_MAX];
	char rel[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;
static struct job *head, *tail;
static int queued;
static bool busy, started;

static void *worker(void *arg)
{
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	cs_inside = 1;          /* this thread's own libc calls pass straight */
	pthread_mutex_lock(&lock);
	for (;;) {
		while (!head) {
			busy = false;
			pthread_cond_broadcast(&idle);
			pthread_cond_wait(&wake, &lock);
		}
		struct job *j = head;
		head = j->next;
		if (!head)
			tail = NULL;
		queued--;
		busy = true;
		pthread_mutex_unlock(&lock);

		int rc = cs_registry_add_holder(j->ns, j->rel, &j->f, j->node);
		if (rc == -EAGAIN && ++j->tries < RETRIES) {
			/* Registry down: try again later, after newer work. */
			struct timespec ts = { .tv_sec = 0, .tv_nsec = 200000000L * j->tries };
			nanosleep(&ts, NULL);
			pthread_mutex_lock(&lock);
			j->next = NULL;
			if (tail)
				tail->next = j;
			else
				head = j;
			tail = j;
			queued++;
			continue;
		}
		if (rc < 0)
			cs_warn("%s/%s: not recorded as held by this node (%s)", j->ns,
				j->rel, strerror(-rc));
		free(j);
		pthread_mutex_lock(&lock);
	}
	return NULL;
}

/* Caller holds lock. */
static bool locked_start(void)
{
	pthread_t t;
	pthread_attr_t attr;

	if (started)
		return true;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	started = pthread_create(&t, &attr, worker, NULL) == 0;
	pthread_attr_destroy(&attr);
	return started;
}

int cs_deferred_add_holder(const char *ns, const char *rel,
			   const struct cs_file *f, uint32_t node)
{
	size_t len = strlen(rel) + 1;
	struct job *j = malloc(sizeof *j + len);

	if (!j)
		return cs_registry_add_holder(ns, rel, f, node);
	memset(j, 0, sizeof *j);
	j->f = *f;
	j->node = node;
	snprintf(j->ns, sizeof j->ns, "%s", ns);
	memcpy(j->rel, rel, len);

	pthread_mutex_lock(&lock);
	if (queued >= QUEUE_MAX || !locked_start()) {
		pthread_mutex_unlock(&lock);
		free(j);
		return cs_registry_add_holder(ns, rel, f, node);
	}
	if (tail)
		tail->next = j;
	else
		head = j;
	tail = j;
	queued++;
	busy = true;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	return 0;
}

bool cs_deferred_flush(int timeout_ms)
{
	struct timespec until;
	bool done;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&lock);
	while (started && (head || busy))
		if (pthread_cond_timedwait(&idle, &lock, &until) == ETIMEDOUT)
			break;
	done = !head && !busy;
	pthread_mutex_unlock(&lock);
	return done || !started;
}

void cs_deferred_forget(void)
{
	/* The parent's queue is the parent's work; the thread did not come
	 * along.  Drop the list without freeing it: a node may be half-linked. */
	pthread_mutex_init(&lock, NULL);
	pthread_cond_init(&wake, NULL);
	pthread_cond_init(&idle, NULL);
	head = tail = NULL;
	queued = 0;
	busy = started = false;
}
