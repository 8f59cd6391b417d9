/*
 * forkmiss.c - a host that forks after the library has connected to the
 * registry and its peers (nginx's master, Apache prefork, PHP-FPM): the
 * child must make its own connections, and the parent's must survive the
 * child.  Each path is a file this node never had.
 *
 * usage: forkmiss <before-fork> <in-child> <parent-after> <child-after-parent>
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int check(const char *who, const char *path)
{
	errno = EXDEV;
	int fd = open(path, O_RDONLY);
	if (fd < 0 || errno != EXDEV) {
		printf("FAIL %s: open %s: %s\n", who, path, strerror(errno));
		return 1;
	}
	close(fd);
	printf("ok %s: %s\n", who, path);
	return 0;
}

int main(int argc, char **argv)
{
	int bad = 0, status = 0;

	if (argc != 5)
		return 2;
	bad += check("parent before fork", argv[1]);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		int b = check("child", argv[2]);
		fflush(stdout);
		_exit(b);
	}
	waitpid(pid, &status, 0);
	bad += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	bad += check("parent after the child exited", argv[3]);
	/* and a second generation, forked from a parent that fetched again */
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		int b = check("second child", argv[4]);
		fflush(stdout);
		_exit(b);
	}
	waitpid(pid, &status, 0);
	bad += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	printf("forkmiss: %d failed\n", bad);
	return bad != 0;
}
