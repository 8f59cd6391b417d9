/*
 * memcost.c - a small host program whose memory bench/run reads from
 * /proc/PID/smaps_rollup before and after it makes one miss and one write
 * under a prefix.
 *
 * usage: memcost <file to read> <file to write>
 *
 * Prints "ready" and waits for a line on stdin; then opens <file to read>
 * (under the library, a file only a peer holds: the first miss, which asks
 * the agent and maps the index; natively it is simply absent), reads a byte
 * and closes it, writes 100 bytes to <file to write> (O_CREAT|O_TRUNC) and
 * closes it (under the library, a journal line); prints "done <read ok>"
 * and waits for a line again before it exits.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void wait_line(void)
{
	char buf[64];

	if (!fgets(buf, sizeof buf, stdin))
		_exit(1);
}

int main(int argc, char **argv)
{
	char buf[100];
	int ok = 0, fd;

	if (argc != 3)
		return 2;
	printf("ready\n");
	fflush(stdout);
	wait_line();
	if ((fd = open(argv[1], O_RDONLY)) >= 0) {
		ok = read(fd, buf, 1) == 1;
		close(fd);
	}
	memset(buf, 'x', sizeof buf);
	if ((fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0 ||
	    write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || close(fd) < 0) {
		perror(argv[2]);
		return 1;
	}
	printf("done %d\n", ok);
	fflush(stdout);
	wait_line();
	return 0;
}
