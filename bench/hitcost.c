/*
 * hitcost.c - the calls whose cost the library adds to: `open`+`fstat`+
 * `close` of a file that is here (a hit) and `stat` of a path that is in no
 * node (a 404).  bench/run counts its instructions with callgrind, with and
 * without the library, and divides the difference by the number of calls.
 *
 * usage: hitcost hit <file> <n> | absent <path> <n>
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct stat st;
	long n;

	if (argc != 4)
		return 2;
	n = atol(argv[3]);
	if (!strcmp(argv[1], "hit")) {
		for (long i = 0; i < n; i++) {
			int fd = open(argv[2], O_RDONLY);
			if (fd < 0 || fstat(fd, &st) < 0)
				return 1;
			close(fd);
		}
	} else {
		for (long i = 0; i < n; i++)
			if (stat(argv[2], &st) == 0)
				return 1;
	}
	return 0;
}
