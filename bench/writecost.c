/*
 * writecost.c - the call sequence whose cost the write path adds to: open a
 * file under a prefix with O_WRONLY|O_CREAT|O_TRUNC, write 100 bytes, close
 * it (under the library the open remembers the descriptor, and the close
 * appends one journal line and wakes the replicator).  bench/run-write
 * counts its instructions with callgrind, with and without the library, at
 * n and 3n iterations and divides the difference, which cancels start-up
 * and exit.
 *
 * usage: writecost [-t] [-s] <file> <n>
 *
 * -t  time each call (CLOCK_MONOTONIC) and print the mean nanoseconds of
 *     open, write and close, and of the whole iteration, on one line
 * -s  first create and unlink a scratch file beside <file>: under the
 *     library the unlink starts the replicator thread (close() does not
 *     start it), so the closes that follow also wake a running replicator
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void start_replicator(const char *file)
{
	char scratch[4096];
	const char *slash = strrchr(file, '/');
	int len = slash ? (int)(slash - file) : 1;

	snprintf(scratch, sizeof scratch, "%.*s/.bench-start-%d", len, slash ? file : ".",
		 (int)getpid());
	int fd = open(scratch, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0)
		close(fd);
	unlink(scratch);
}

int main(int argc, char **argv)
{
	char buf[100];
	int timed = 0, start = 0, opt;
	long long t_open = 0, t_write = 0, t_close = 0;

	while ((opt = getopt(argc, argv, "ts")) != -1) {
		if (opt == 't')
			timed = 1;
		else if (opt == 's')
			start = 1;
		else
			return 2;
	}
	if (argc - optind != 2)
		return 2;
	const char *file = argv[optind];
	long n = atol(argv[optind + 1]);
	memset(buf, 'x', sizeof buf);
	if (start)
		start_replicator(file);
	if (!timed) {
		for (long i = 0; i < n; i++) {
			int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
				return 1;
			if (close(fd) < 0)
				return 1;
		}
		return 0;
	}
	long long t0 = now_ns();
	for (long i = 0; i < n; i++) {
		long long a = now_ns();
		int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		long long b = now_ns();
		if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
			return 1;
		long long c = now_ns();
		if (close(fd) < 0)
			return 1;
		long long d = now_ns();
		t_open += b - a;
		t_write += c - b;
		t_close += d - c;
	}
	long long t1 = now_ns();
	if (n > 0)
		printf("open %.1f write %.1f close %.1f iteration %.1f\n", (double)t_open / n,
		       (double)t_write / n, (double)t_close / n, (double)(t1 - t0) / n);
	return 0;
}
