/*
 * log.c - the one logging path of the core and the agent.
 *
 * A line is formatted into a stack buffer and written with a single
 * write(2): no stdio (a host may hold its locks), no allocation, atomic for
 * lines under PIPE_BUF.  The level check happens in the cs_log macro, so a
 * disabled level costs one compare.  In a host process lines go to stderr
 * as "cs[pid] level: message" (nginx and Apache send it to their error log);
 * the agent stamps each line with the UTC time and may write to a file of
 * its own (CS_LOG_FILE), reopened on request after logrotate moved it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cs.h"

int cs_log_level = CS_LOG_ERROR;

static int log_fd = STDERR_FILENO;
static bool stamped;
static char who_[32] = "cs";
static char file_[CS_PATH_MAX];

static const char *const level_name[] = { "error", "warn", "info", "debug" };

static int open_file(void)
{
	int fd = cs_libc.open(file_, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);

	if (fd < 0)
		return -errno;
	int old = log_fd;
	log_fd = fd;
	if (old != STDERR_FILENO)
		cs_libc.close(old);
	return 0;
}

int cs_log_setup(const char *file, bool stamp, const char *who)
{
	stamped = stamp;
	if (who)
		snprintf(who_, sizeof who_, "%s", who);
	if (!file || !*file)
		return 0;
	if (strlen(file) >= sizeof file_)
		return -ENAMETOOLONG;
	strcpy(file_, file);
	return open_file();
}

void cs_log_reopen(void)
{
	if (file_[0])
		open_file();
}

void cs_log_write(enum cs_log_level level, const char *fmt, ...)
{
	char buf[1024];
	int saved = errno, n = 0;
	va_list ap;

	if (stamped) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = (int)strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
		n += snprintf(buf + n, sizeof buf - n, ".%03ldZ ", ts.tv_nsec / 1000000);
	}
	n += snprintf(buf + n, sizeof buf - n, "%s[%d] %s: ", who_, (int)getpid(),
		      level_name[level & 3]);
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof buf - 2)
		n = sizeof buf - 2;
	buf[n++] = '\n';
	ssize_t w = write(log_fd, buf, n);
	(void)w;
	errno = saved;
}
