/*
 * basics.c - a host program's view of the preloaded library with no cluster
 * to talk to: calls under and outside the prefixes keep libc's answers and
 * the caller's errno, from main, from a constructor, from threads and after
 * fork.  Knows nothing of libcs; tests/preload/run runs it under
 * LD_PRELOAD with CS_PREFIXES=t=<dir> and no agent running to ask.
 *
 * usage: basics <dir-under-prefix> <dir-outside>
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures, checks;
static const char *in_dir, *out_dir;

#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		checks++;                                                     \
		if (!(cond)) {                                                \
			failures++;                                           \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);  \
			fprintf(stderr, __VA_ARGS__);                         \
			fputc('\n', stderr);                                  \
		}                                                             \
	} while (0)

static char *join(const char *dir, const char *name)
{
	static __thread char buf[8][4096];
	static __thread int next;
	char *b = buf[next++ & 7];

	snprintf(b, 4096, "%s/%s", dir, name);
	return b;
}

/* One round of calls whose answers are known; safe from any thread. */
static void round_of_calls(const char *who)
{
	struct stat st;
	int fd;

	errno = EXDEV;
	fd = open(join(in_dir, "present"), O_RDONLY);
	CHECK(fd >= 0, "%s: open present: %s", who, strerror(errno));
	CHECK(errno == EXDEV, "%s: open present changed errno to %d", who, errno);
	if (fd >= 0)
		close(fd);

	errno = EXDEV;
	CHECK(stat(join(in_dir, "present"), &st) == 0 && st.st_size == 6,
	      "%s: stat present", who);
	CHECK(errno == EXDEV, "%s: stat present changed errno to %d", who, errno);

	errno = 0;
	CHECK(stat(join(in_dir, "absent"), &st) < 0 && errno == ENOENT,
	      "%s: stat absent under prefix: expected ENOENT, got %d", who, errno);
	errno = 0;
	CHECK(open(join(in_dir, "absent"), O_RDONLY) < 0 && errno == ENOENT,
	      "%s: open absent under prefix: expected ENOENT, got %d", who, errno);
	errno = 0;
	CHECK(access(join(out_dir, "absent"), R_OK) < 0 && errno == ENOENT,
	      "%s: access absent outside: expected ENOENT, got %d", who, errno);
	errno = 0;
	CHECK(stat(join(in_dir, "present/x"), &st) < 0 && errno == ENOTDIR,
	      "%s: stat through a file: expected ENOTDIR, got %d", who, errno);
	errno = 0;
	CHECK(fopen(join(in_dir, "absent"), "r") == NULL && errno == ENOENT,
	      "%s: fopen absent: expected ENOENT, got %d", who, errno);

	errno = EXDEV;
	FILE *f = fopen(join(out_dir, "present"), "r");
	CHECK(f != NULL && errno == EXDEV, "%s: fopen present outside", who);
	if (f)
		fclose(f);

	errno = EXDEV;
	int dfd = open(in_dir, O_RDONLY | O_DIRECTORY);
	CHECK(dfd >= 0, "%s: open dir", who);
	CHECK(fstatat(dfd, "present", &st, 0) == 0 && errno == EXDEV,
	      "%s: fstatat relative to a dirfd", who);
	errno = 0;
	CHECK(fstatat(dfd, "absent", &st, 0) < 0 && errno == ENOENT,
	      "%s: fstatat absent relative to dirfd: got %d", who, errno);
	close(dfd);
}

static int ctor_fd = -2, ctor_errno;

/* The host's own constructors run after the library's, and call wrappers. */
__attribute__((constructor)) static void host_ctor(void)
{
	const char *d = getenv("BASICS_CTOR_FILE");

	errno = EXDEV;
	if (d) {
		ctor_fd = open(d, O_RDONLY);
		ctor_errno = errno;
	}
}

static void *thread_main(void *arg)
{
	char who[32];

	snprintf(who, sizeof who, "thread %ld", (long)(intptr_t)arg);
	for (int i = 0; i < 200; i++)
		round_of_calls(who);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t[8];

	if (argc != 3) {
		fprintf(stderr, "usage: basics <dir-under-prefix> <dir-outside>\n");
		return 2;
	}
	in_dir = argv[1];
	out_dir = argv[2];

	CHECK(ctor_fd >= 0 && ctor_errno == EXDEV,
	      "open from the host's constructor: fd %d errno %d", ctor_fd, ctor_errno);
	round_of_calls("main");

	for (long i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, thread_main, (void *)i);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);

	pid_t pid = fork();
	if (pid == 0) {
		round_of_calls("child");
		_exit(failures ? 1 : 0);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child failed");

	printf("basics: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
