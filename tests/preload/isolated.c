/*
 * isolated.c - what a host process holds after it missed and wrote under
 * the library: none of the cluster's libraries (libcrypto, the MariaDB
 * client, libmemcached, libcurl), no TCP socket, no thread of the
 * library's.  Prints "libs: <names>|-", "tcp: N", "threads: N".
 *
 *   isolated PRESENT MISSING NEW    all under CS_PREFIXES; MISSING is one
 *                                   the agent installs, NEW is written
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int tcp_sockets(void)
{
	char inodes[64][80], line[512];
	int n = 0, found = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	while (d && (e = readdir(d)) && n < 64) {
		char link[300], target[64];
		snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
		ssize_t len = readlink(link, target, sizeof target - 1);
		if (len > 8 && !strncmp(target, "socket:[", 8)) {
			target[len - 1] = '\0';
			snprintf(inodes[n++], sizeof inodes[0], " %s ", target + 8);
		}
	}
	if (d)
		closedir(d);
	for (int v = 0; v < 2; v++) {
		FILE *f = fopen(v ? "/proc/net/tcp6" : "/proc/net/tcp", "r");
		while (f && fgets(line, sizeof line, f))
			for (int i = 0; i < n; i++)
				if (strstr(line, inodes[i]))
					found++;
		if (f)
			fclose(f);
	}
	return found;
}

int main(int argc, char **argv)
{
	static const char *const libs[] = { "libcrypto", "libmariadb", "libmemcached", "libcurl" };
	struct stat st;
	char line[4096];
	int any = 0, threads = 0;

	if (argc != 4)
		return 2;
	for (int i = 0; i < 10; i++) {
		int fd = open(argv[1], O_RDONLY);
		if (fd < 0 || fstat(fd, &st) < 0)
			return 1;
		close(fd);
	}
	if (stat(argv[2], &st) < 0) {
		perror(argv[2]);
		return 1;
	}
	FILE *w = fopen(argv[3], "w");
	if (!w || fputs("written\n", w) < 0 || fclose(w) < 0)
		return 1;

	FILE *f = fopen("/proc/self/maps", "r");
	printf("libs:");
	while (f && fgets(line, sizeof line, f))
		for (int i = 0; i < 4; i++)
			if (libs[i] && strstr(line, libs[i])) {
				printf(" %s", libs[i]);
				any = 1;
			}
	if (f)
		fclose(f);
	printf("%s\n", any ? "" : " -");
	printf("tcp: %d\n", tcp_sockets());
	f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "Threads:", 8))
			threads = atoi(line + 8);
	if (f)
		fclose(f);
	printf("threads: %d\n", threads);
	return 0;
}
