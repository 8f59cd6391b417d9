/*
 * chrooted.c - a worker that chroots into a directory (as a PHP-FPM pool
 * with `chroot` does), then misses and writes.  Under the library, the miss
 * must still reach the agent, whose socket is not inside the new root, and
 * the write must still be journaled in CS_SPOOL, which is not either.
 *
 *   chrooted NEWROOT MISSING NEW   paths under CS_PREFIXES as seen from
 *                                  inside NEWROOT: MISSING is one the agent
 *                                  installs, NEW is written
 * Exits 0 when stat(MISSING) succeeds and NEW is written.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct stat st;

	if (argc != 4)
		return 2;
	if (chroot(argv[1]) < 0 || chdir("/") < 0) {
		perror("chroot");
		return 2;
	}
	if (stat(argv[2], &st) < 0) {
		fprintf(stderr, "stat %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	FILE *f = fopen(argv[3], "w");
	if (!f || fclose(f) < 0) {
		perror(argv[3]);
		return 1;
	}
	return 0;
}
