/*
 * writefiles.c - a writer of many files, as an upload handler would be: for
 * each file open(O_WRONLY|O_CREAT|O_TRUNC), write its bytes, close.  Each
 * file's bytes differ (its index is stamped in them).
 *
 * usage: writefiles [-t] [-s] [-r rate] <dir> <name-prefix> <count> <size>
 *
 * -r R  pace the files on an absolute schedule, one every 1/R s (a late
 *       file is written at once, so the schedule catches up); default: as
 *       fast as it can
 * -t    after the summary, one line "<name> <ns>" per file: CLOCK_REALTIME
 *       when its close() returned (bench/watch.c stamps arrivals with it)
 * -s    first create and unlink a scratch file in <dir>: under the library
 *       the unlink starts the replicator thread, which close() does not
 *
 * Prints "elapsed_ns <ns> files <count> late_ns <max>" for the loop
 * (start-up and exit excluded; late_ns: the most a paced file started
 * behind its schedule).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long ns_of(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (long long)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	int times = 0, start = 0, opt;
	double rate = 0;

	while ((opt = getopt(argc, argv, "tsr:")) != -1) {
		if (opt == 't')
			times = 1;
		else if (opt == 's')
			start = 1;
		else if (opt == 'r')
			rate = atof(optarg);
		else
			return 2;
	}
	if (argc - optind != 4)
		return 2;
	const char *dir = argv[optind], *pre = argv[optind + 1];
	long count = atol(argv[optind + 2]);
	size_t size = (size_t)atol(argv[optind + 3]);
	char *buf = malloc(size < 8 ? 8 : size);
	long long *closed = calloc(count > 0 ? count : 1, sizeof *closed);
	unsigned long long x = 0x9e3779b97f4a7c15ull ^ (unsigned long long)ns_of(CLOCK_REALTIME);

	if (!buf || !closed)
		return 1;
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		buf[i] = (char)x;
	}
	if (start) {
		char scratch[4096];
		snprintf(scratch, sizeof scratch, "%s/.bench-start-%d", dir, (int)getpid());
		int fd = open(scratch, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0)
			close(fd);
		unlink(scratch);
	}
	long long period = rate > 0 ? (long long)(1e9 / rate) : 0, late = 0;
	long long t0 = ns_of(CLOCK_MONOTONIC);
	for (long i = 0; i < count; i++) {
		char path[4096];

		if (period) {
			long long due = t0 + i * period;
			struct timespec ts = { due / 1000000000, due % 1000000000 };
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
			long long behind = ns_of(CLOCK_MONOTONIC) - due;
			if (behind > late)
				late = behind;
		}
		snprintf(path, sizeof path, "%s/%s%06ld.bin", dir, pre, i);
		memcpy(buf, &i, size < sizeof i ? size : sizeof i);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0) {
			perror(path);
			return 1;
		}
		for (size_t off = 0; off < size;) {
			ssize_t w = write(fd, buf + off, size - off);
			if (w < 0) {
				perror(path);
				return 1;
			}
			off += (size_t)w;
		}
		if (close(fd) < 0) {
			perror(path);
			return 1;
		}
		closed[i] = ns_of(CLOCK_REALTIME);
	}
	long long t1 = ns_of(CLOCK_MONOTONIC);
	printf("elapsed_ns %lld files %ld late_ns %lld\n", t1 - t0, count, late);
	if (times)
		for (long i = 0; i < count; i++)
			printf("%s%06ld.bin %lld\n", pre, i, closed[i]);
	fflush(stdout);
	return 0;
}
