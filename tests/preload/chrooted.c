/*
 * chrooted.c - a worker that chroots into a directory without the system's
 * libraries (as a PHP-FPM pool with `chroot` does), then misses.  Under the
 * library, the miss must still reach the registry code: the libraries it
 * loads at first use were loaded before the chroot.
 *
 *   chrooted NEWROOT ABSENT     ABSENT: a path under CS_PREFIXES, as seen
 *                               from inside NEWROOT
 * Exits 0 when stat(ABSENT) fails with ENOENT after the chroot.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct stat st;

	if (argc != 3)
		return 2;
	if (chroot(argv[1]) < 0 || chdir("/") < 0) {
		perror("chroot");
		return 2;
	}
	if (stat(argv[2], &st) == 0 || errno != ENOENT) {
		fprintf(stderr, "stat %s: expected ENOENT\n", argv[2]);
		return 1;
	}
	return 0;
}
