/*
 * listdir.c - list one directory over and over, as a program that shows a
 * folder on every request does: opendir, readdir to the end, closedir.
 *
 *   listdir DIR ROUNDS
 *
 * Prints "<entries> <median µs> <min µs> <first µs>" for one listing; exits
 * 1 when a listing fails (readdir's error, e.g. EIO from the library).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int rounds = argc > 2 ? atoi(argv[2]) : 0;
	double *t;
	long entries = 0;

	if (argc != 3 || rounds < 1 || !(t = calloc(rounds, sizeof *t))) {
		fprintf(stderr, "usage: listdir DIR ROUNDS\n");
		return 2;
	}
	for (int r = 0; r < rounds; r++) {
		double start = now_us();
		DIR *d = opendir(argv[1]);
		struct dirent *e;
		long n = 0;

		if (!d) {
			fprintf(stderr, "listdir: %s: %s\n", argv[1], strerror(errno));
			return 1;
		}
		errno = 0;
		while ((e = readdir(d)))
			n++;
		if (errno) {
			fprintf(stderr, "listdir: %s: %s\n", argv[1], strerror(errno));
			return 1;
		}
		closedir(d);
		t[r] = now_us() - start;
		entries = n;
	}
	double first = t[0];
	qsort(t, rounds, sizeof *t, cmp);
	printf("%ld %.1f %.1f %.1f\n", entries, t[rounds / 2], t[0], first);
	return 0;
}
