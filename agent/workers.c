/*
 * workers.c - the machinery of the agent's blocking work, and nothing of
 * what the work is (that is fetch.c's).
 *
 * Threads are made on demand, up to MAX_THREADS, so one slow peer holding a
 * few of them does not hold up the misses behind it; one idle for IDLE_MS
 * goes away.  Jobs beyond MAX_THREADS wait in order.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "cs.h"
#include "workers.h"

#define MAX_THREADS 128
#define IDLE_MS 30000
#define STACK_BYTES (256 * 1024)

struct job {
	struct job *next;
	void (*fn)(void *);
	void *arg;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static struct job *head, **tail = &head;
static int threads, idle, queued;

static void *run(void *unused)
{
	struct timespec until;

	(void)unused;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (!head) {
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += IDLE_MS / 1000;
			idle++;
			int rc = pthread_cond_timedwait(&work, &mu, &until);
			idle--;
			if (rc == ETIMEDOUT && !head) {
				threads--;
				pthread_mutex_unlock(&mu);
				return NULL;
			}
		}
		struct job *j = head;
		if (!(head = j->next))
			tail = &head;
		queued--;
		pthread_mutex_unlock(&mu);
		j->fn(j->arg);
		free(j);
		pthread_mutex_lock(&mu);
	}
}

int cs_workers_submit(void (*fn)(void *arg), void *arg)
{
	struct job *j = malloc(sizeof *j);
	bool spawn;

	if (!j)
		return -ENOMEM;
	j->fn = fn;
	j->arg = arg;
	j->next = NULL;
	pthread_mutex_lock(&mu);
	*tail = j;
	tail = &j->next;
	queued++;
	spawn = idle < queued && threads < MAX_THREADS;
	if (spawn)
		threads++;
	else
		pthread_cond_signal(&work);
	pthread_mutex_unlock(&mu);
	if (spawn) {
		pthread_attr_t attr;
		pthread_t t;
		sigset_t all, old;

		/* Workers take no signal: the agent's main thread waits for them. */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, STACK_BYTES);
		if (pthread_create(&t, &attr, run, NULL) != 0) {
			pthread_mutex_lock(&mu);
			threads--;
			pthread_cond_signal(&work);     /* someone else takes it */
			pthread_mutex_unlock(&mu);
			cs_error_every(10, "cannot start a worker thread; misses wait for a free one");
		}
		pthread_attr_destroy(&attr);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	return 0;
}

void cs_workers_count(int *nthreads, int *nqueued)
{
	pthread_mutex_lock(&mu);
	*nthreads = threads;
	*nqueued = queued;
	pthread_mutex_unlock(&mu);
}
