/*
 * misses.c - stat N paths this node lacks and time them, the first miss and
 * the rest apart, counting how each failed, so the runner can see misses
 * answered at once (from the index, or with no agent running) or bounded
 * by CS_MISS_TIMEOUT.  Also a plain reader for inert-mode checks.
 *
 * usage: misses <dir> <n> [name]   stats <dir>/<name>-<i> (name: absent);
 *                                  prints "first S rest S found K enoent K eio K"
 *        misses --cat <file>       copies a file to stdout
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	char path[4096];
	struct stat st;
	int found = 0;

	if (argc == 3 && !strcmp(argv[1], "--cat")) {
		FILE *f = fopen(argv[2], "r");
		int c;
		if (!f) {
			perror(argv[2]);
			return 1;
		}
		while ((c = getc(f)) != EOF)
			putchar(c);
		fclose(f);
		return 0;
	}
	if (argc != 3 && argc != 4)
		return 2;
	const char *name = argc == 4 ? argv[3] : "absent";
	long n = atol(argv[2]), enoent = 0, eio = 0;
	double t0 = now(), t1 = t0;
	for (long i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s/%s-%ld", argv[1], name, i);
		errno = 0;
		if (stat(path, &st) == 0)
			found++;
		else if (errno == ENOENT)
			enoent++;
		else if (errno == EIO)
			eio++;
		if (i == 0)
			t1 = now();
	}
	double t2 = now();
	printf("first %.6f rest %.6f found %d enoent %ld eio %ld\n", t1 - t0, t2 - t1, found,
	       enoent, eio);
	return 0;
}
