/*
 * asks.c - a host program that misses names its node's agent answers in
 * each way (tests/preload/fake_agent.py): installed, absent, unavailable, a
 * directory; from a forked child; across a restart of the agent; from
 * threads at once.  Every call must give the agent's answer and keep the
 * caller's errno when it succeeds.
 *
 *   asks DIR     DIR under CS_PREFIXES; after "restart?" on stdout it
 *                waits for a line on stdin (the agent restarted meanwhile)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *dir;
static int failures;

#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			failures++;                                           \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);           \
			printf(__VA_ARGS__);                                  \
			printf(" (errno %d)\n", errno);                       \
		}                                                             \
	} while (0)

static char *at(const char *name)
{
	static __thread char buf[4][4096];
	static __thread int i;
	char *b = buf[i++ & 3];

	snprintf(b, 4096, "%s/%s", dir, name);
	return b;
}

/* stat a name the agent installs; its bytes are what it fetched. */
static void have(const char *name)
{
	struct stat st;
	char got[256] = "", want[256];

	errno = EXDEV;
	CHECK(stat(at(name), &st) == 0 && errno == EXDEV, "stat %s", name);
	int fd = open(at(name), O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, got, sizeof got - 1) : -1;
	if (fd >= 0)
		close(fd);
	got[n > 0 ? n : 0] = '\0';
	snprintf(want, sizeof want, "fetched %s\n", name);
	CHECK(strcmp(got, want) == 0, "%s holds '%s'", name, got);
}

static void *thread(void *arg)
{
	char name[64];

	snprintf(name, sizeof name, "have-t%ld", (long)arg);
	have(name);
	return NULL;
}

int main(int argc, char **argv)
{
	struct stat st;
	char line[16];
	pthread_t t[8];
	int status;

	if (argc != 2)
		return 2;
	dir = argv[1];
	have("have-a");
	errno = 0;
	CHECK(open(at("none-a"), O_RDONLY) < 0 && errno == ENOENT, "absent: ENOENT");
	errno = 0;
	CHECK(stat(at("down-a"), &st) < 0 && errno == EIO, "unavailable: EIO");
	errno = 0;
	CHECK(fopen(at("down-b"), "r") == NULL && errno == EIO, "fopen unavailable: EIO");
	errno = EXDEV;
	DIR *d = opendir(at("dir-a"));
	CHECK(d && errno == EXDEV, "opendir of a directory the cluster has");
	if (d)
		closedir(d);
	errno = EXDEV;
	CHECK(chdir(at("dir-b")) == 0 && errno == EXDEV, "chdir into one");
	CHECK(chdir("/") == 0, "chdir back");

	pid_t pid = fork();
	if (pid == 0) {
		have("have-child");
		fflush(stdout);
		_exit(failures ? 1 : 0);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's miss");
	have("have-b");

	printf("restart?\n");
	fflush(stdout);
	if (!fgets(line, sizeof line, stdin))
		return 2;
	have("have-after-restart");
	for (long i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, thread, (void *)i);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	printf("asks: %d failed\n", failures);
	return failures != 0;
}
