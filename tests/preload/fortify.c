/*
 * fortify.c - built with -D_FORTIFY_SOURCE=2, where glibc turns open() with
 * flags unknown at compile time into __open_2 and openat() into __openat_2.
 * Under the library those must keep libc's answers and the caller's errno.
 *
 * usage: fortify <existing file> <missing file>
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int flags = argc > 3 ? atoi(argv[3]) : O_RDONLY;  /* not a constant */
	int bad = 0;

	if (argc < 3)
		return 2;
	errno = EXDEV;
	int fd = open(argv[1], flags);
	if (fd < 0 || errno != EXDEV) {
		fprintf(stderr, "FAIL __open_2 on existing file: fd %d errno %d\n", fd, errno);
		bad++;
	}
	close(fd);
	errno = EXDEV;
	fd = openat(AT_FDCWD, argv[1], flags);
	if (fd < 0 || errno != EXDEV) {
		fprintf(stderr, "FAIL __openat_2 on existing file: fd %d errno %d\n", fd, errno);
		bad++;
	}
	close(fd);
	errno = 0;
	if (open(argv[2], flags) >= 0 || errno != ENOENT) {
		fprintf(stderr, "FAIL __open_2 on missing file: errno %d\n", errno);
		bad++;
	}
	printf("fortify: 3 checks, %d failed\n", bad);
	return bad != 0;
}
