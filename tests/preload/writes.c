/*
 * writes.c - a host program that ends, moves and removes writes in every
 * way the library tracks, checking that each call keeps libc's answer and
 * the caller's errno.  Run by tests/preload/run, which then reads the
 * journal the library left in CS_SPOOL and compares it with the list of
 * entries this sequence must produce (printed by --expect).
 *
 *   writes IN OUT      IN under CS_PREFIXES (namespace t), OUT outside it
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *in, *out;
static int failures;

#define CHECK(cond)                                                           \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: %s failed (errno %d)\n",      \
				__FILE__, __LINE__, #cond, errno);            \
			failures++;                                           \
		}                                                             \
	} while (0)

static char *at(const char *dir, const char *name)
{
	static char buf[8][4096];
	static int i;
	char *b = buf[i++ & 7];

	snprintf(b, 4096, "%s/%s", dir, name);
	return b;
}

/* This process's anonymous memory (heap, stacks, the library's tables
 * once touched), kB. */
static long rss_anon(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "RssAnon: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* A successful call must leave errno as the caller had it. */
#define KEEPS_ERRNO(call)                                                     \
	do {                                                                  \
		errno = 4321;                                                 \
		CHECK((call) >= 0);                                           \
		CHECK(errno == 4321);                                         \
	} while (0)

int main(int argc, char **argv)
{
	int fd, fd2;
	FILE *f;

	if (argc == 2 && strcmp(argv[1], "--expect") == 0) {
		puts("W\tt\ta\nW\tt\tb\nW\tt\tc\nW\tt\td\nR\tt\ta\ta2\nD\tt\tb\nD\tt\tc\n"
		     "W\tt\tmoved\nW\tt\td\nW\tt\tdlink\nR\tt\tsub\tsub2\nW\tt\tsp%20ace\n"
		     "W\tt\tranged\nW\tt\tfrom\nW\tt\tleft");
		return 0;
	}
	if (argc != 3)
		return 2;
	in = argv[1];
	out = argv[2];

	/* close of a dup: the write ends at the last close only */
	CHECK((fd = open(at(in, "a"), O_WRONLY | O_CREAT | O_TRUNC, 0644)) >= 0);
	CHECK(write(fd, "a", 1) == 1);
	CHECK((fd2 = dup(fd)) >= 0);
	KEEPS_ERRNO(close(fd));
	KEEPS_ERRNO(close(fd2));
	/* stdio: fclose closes inside glibc */
	CHECK((f = fopen(at(in, "b"), "w")) != NULL);
	CHECK(fputs("b", f) >= 0);
	KEEPS_ERRNO(fclose(f));
	/* dup2 over a tracked descriptor ends that write */
	CHECK((fd = open(at(in, "c"), O_WRONLY | O_CREAT, 0644)) >= 0);
	CHECK(dup2(fd, 100) == 100);
	KEEPS_ERRNO(close(fd));
	CHECK((fd = open("/dev/null", O_RDONLY)) >= 0);
	KEEPS_ERRNO(dup2(fd, 100));
	CHECK(close(fd) == 0 && close(100) == 0);
	/* fcntl(F_DUPFD) */
	CHECK((fd = open(at(in, "d"), O_RDWR | O_CREAT, 0644)) >= 0);
	CHECK((fd2 = fcntl(fd, F_DUPFD_CLOEXEC, 50)) >= 50);
	KEEPS_ERRNO(close(fd2));
	KEEPS_ERRNO(close(fd));
	/* renames within, out of and into the prefix; unlink.  The first
	 * rename costs no more memory than it needs (it once read the whole
	 * table of open writes, 1 MiB, into the host's memory). */
	rss_anon();             /* stdio's buffers taken, so that they count before */
	long before = rss_anon();
	KEEPS_ERRNO(rename(at(in, "a"), at(in, "a2")));
	long gained = rss_anon() - before;
	if (gained > 256)
		fprintf(stderr, "the first rename took %ld kB\n", gained);
	CHECK(before > 0 && gained <= 256);
	KEEPS_ERRNO(unlink(at(in, "b")));
	KEEPS_ERRNO(rename(at(in, "c"), at(out, "c")));
	KEEPS_ERRNO(rename(at(out, "present"), at(in, "moved")));
	KEEPS_ERRNO(truncate(at(in, "d"), 0));
	KEEPS_ERRNO(link(at(in, "d"), at(in, "dlink")));
	/* reads and writes outside the prefix journal nothing */
	CHECK((fd = open(at(in, "a2"), O_RDONLY)) >= 0);
	KEEPS_ERRNO(close(fd));
	CHECK((fd = open(at(out, "x"), O_WRONLY | O_CREAT, 0644)) >= 0);
	KEEPS_ERRNO(close(fd));
	/* a directory renamed; a directory removed (not a file: nothing) */
	CHECK(mkdir(at(in, "sub"), 0755) == 0);
	KEEPS_ERRNO(rename(at(in, "sub"), at(in, "sub2")));
	CHECK(mkdir(at(in, "gone"), 0755) == 0);
	KEEPS_ERRNO(unlinkat(AT_FDCWD, at(in, "gone"), AT_REMOVEDIR));
	/* a failing call keeps its own errno and journals nothing */
	errno = 0;
	CHECK(rename(at(in, "nonexistent"), at(in, "n2")) < 0 && errno == ENOENT);
	/* names that need encoding */
	CHECK((f = fopen(at(in, "sp ace"), "a")) != NULL);
	KEEPS_ERRNO(fclose(f));
	/* close_range and closefrom close inside the kernel: the writes end */
	CHECK((fd = open(at(in, "ranged"), O_WRONLY | O_CREAT, 0644)) >= 0);
	CHECK(dup2(fd, 200) == 200 && close(fd) == 0);
	KEEPS_ERRNO(close_range(200, 210, 0));
	CHECK((fd = open(at(in, "from"), O_WRONLY | O_CREAT, 0644)) >= 0);
	CHECK(dup2(fd, 300) == 300 && close(fd) == 0);
	closefrom(300);
	/* a stream with no descriptor: fileno fails inside fclose's wrapper */
	CHECK((f = fmemopen(NULL, 16, "w")) != NULL);
	KEEPS_ERRNO(fclose(f));
	/* still open at exit through two descriptors: one write, ended once */
	CHECK((fd = open(at(in, "left"), O_WRONLY | O_CREAT, 0644)) >= 0);
	CHECK(dup(fd) >= 0);
	return failures ? 1 : 0;
}
