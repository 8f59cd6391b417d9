/*
 * misses.c - stat N paths that no node has and time them: the first miss
 * and the rest separately, so the runner can see the circuit breaker answer
 * for a registry that hangs.  Also a plain reader for inert-mode checks.
 *
 * usage: misses <dir> <n>          prints "first S rest S found K"
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
	if (argc != 3)
		return 2;
	long n = atol(argv[2]);
	double t0 = now();
	snprintf(path, sizeof path, "%s/absent-0", argv[1]);
	found += stat(path, &st) == 0;
	double t1 = now();
	for (long i = 1; i < n; i++) {
		snprintf(path, sizeof path, "%s/absent-%ld", argv[1], i);
		found += stat(path, &st) == 0;
	}
	double t2 = now();
	printf("first %.3f rest %.3f found %d\n", t1 - t0, t2 - t1, found);
	return 0;
}
