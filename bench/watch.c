/*
 * watch.c - when files appear in some directories: inotify IN_MOVED_TO
 * (installed by rename, as cs-replicate serve and rsync do) and
 * IN_CLOSE_WRITE (written in place).  The first appearance of each name,
 * in any of the directories, is stamped with CLOCK_REALTIME (the clock
 * bench/writefiles.c stamps its close() with).  Names starting with '.'
 * (temporary files) are ignored.
 *
 * usage: watch <out> <expect> <timeout-s> <dir>...
 *
 * Prints "ready" once every directory is watched; stops after <expect>
 * distinct names, <timeout-s> seconds, or SIGTERM/SIGINT, and then writes
 * "<name> <ns>" per name to <out>.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS (1 << 16)

struct seen {
	struct seen *next;
	long long ns;
	char name[];
};

static struct seen *table[BUCKETS];
static struct seen **order;
static long nseen, cap;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void saw(const char *name, long long ns)
{
	unsigned h = 2166136261u;

	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	struct seen **pp = &table[h & (BUCKETS - 1)];
	for (struct seen *s = *pp; s; s = s->next)
		if (!strcmp(s->name, name))
			return;
	struct seen *s = malloc(sizeof *s + strlen(name) + 1);
	if (!s)
		return;
	s->ns = ns;
	strcpy(s->name, name);
	s->next = *pp;
	*pp = s;
	if (nseen == cap) {
		cap = cap ? 2 * cap : 4096;
		order = realloc(order, cap * sizeof *order);
		if (!order)
			exit(1);
	}
	order[nseen++] = s;
}

int main(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	long expect = atol(argv[2]);
	long long deadline = now_ns() + (long long)(atof(argv[3]) * 1e9);
	int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	long overflows = 0;

	if (in < 0)
		return 1;
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	for (int i = 4; i < argc; i++)
		if (inotify_add_watch(in, argv[i], IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
			perror(argv[i]);
			return 1;
		}
	printf("ready\n");
	fflush(stdout);
	while (!stop && nseen < expect && now_ns() < deadline) {
		char buf[1 << 16] __attribute__((aligned(__alignof__(struct inotify_event))));
		struct pollfd p = { .fd = in, .events = POLLIN };

		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(in, buf, sizeof buf);
		long long t = now_ns();
		for (char *q = buf; n > 0 && q < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)q;
			if (e->mask & IN_Q_OVERFLOW)
				overflows++;
			else if (e->len && e->name[0] != '.' && !(e->mask & IN_ISDIR))
				saw(e->name, t);
			q += sizeof *e + e->len;
		}
	}
	FILE *out = fopen(argv[1], "w");
	if (!out)
		return 1;
	for (long i = 0; i < nseen; i++)
		fprintf(out, "%s %lld\n", order[i]->name, order[i]->ns);
	if (overflows)
		fprintf(stderr, "watch: inotify queue overflowed %ld times\n", overflows);
	return fclose(out) ? 1 : 0;
}
