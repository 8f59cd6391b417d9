/*
 * lazyload.c - a host program that only reads files already here, then
 * misses once.  The libraries the cluster needs (libcrypto, the MariaDB
 * client, libmemcached, libcurl) cost ~6 ms at every start of every
 * preloaded program when linked in; they must be loaded only by the first
 * miss or write.  Prints which of them /proc/self/maps shows after the
 * hits and after the miss, as "hits: <names>" and "miss: <names>" ("-"
 * for none).
 *
 *   lazyload PRESENT ABSENT     both under CS_PREFIXES
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void loaded(const char *when)
{
	static const char *const libs[] = { "libcrypto", "libmariadb", "libmemcached", "libcurl" };
	char line[4096];
	int seen[4] = { 0 }, any = 0;
	FILE *f = fopen("/proc/self/maps", "r");

	while (f && fgets(line, sizeof line, f))
		for (int i = 0; i < 4; i++)
			if (strstr(line, libs[i]))
				seen[i] = 1;
	if (f)
		fclose(f);
	printf("%s:", when);
	for (int i = 0; i < 4; i++)
		if (seen[i]) {
			printf(" %s", libs[i]);
			any = 1;
		}
	printf("%s\n", any ? "" : " -");
}

int main(int argc, char **argv)
{
	struct stat st;

	if (argc != 3)
		return 2;
	for (int i = 0; i < 10; i++) {
		int fd = open(argv[1], O_RDONLY);
		if (fd < 0 || fstat(fd, &st) < 0)
			return 1;
		close(fd);
	}
	loaded("hits");
	if (stat(argv[2], &st) == 0 || errno != ENOENT)
		return 1;
	loaded("miss");
	return 0;
}
