/*
 * closeerr.c - write a file and close it; prints what close() returned:
 * "closed" or "close: <errno name>".  Under the library with CS_SPOOL on a
 * full disk, the write cannot be journaled and close() must say so
 * (ENOSPC) rather than let it stay on this node unknown to the cluster.
 *
 *   closeerr PATH
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: closeerr PATH\n");
		return 2;
	}
	fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "data\n", 5) != 5) {
		perror(argv[1]);
		return 1;
	}
	if (close(fd) == 0)
		printf("closed\n");
	else
		printf("close: %s\n", errno == ENOSPC ? "ENOSPC" : strerror(errno));
	return 0;
}
