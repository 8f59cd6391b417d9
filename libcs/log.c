/*
 * log.c - the one logging path of libcs.
 *
 * A line is formatted into a stack buffer and written to stderr with a single
 * write(2): no stdio (the host may hold its locks), no allocation, atomic for
 * lines under PIPE_BUF.  The level check happens in the cs_log macro, so a
 * disabled level costs one compare.  Where stderr goes is the host's business
 * (nginx points it at its error log).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cs.h"

int cs_log_level = CS_LOG_ERROR;

static const char *const level_name[] = { "error", "warn", "info", "debug" };

void cs_log_write(enum cs_log_level level, const char *fmt, ...)
{
	char buf[1024];
	int saved = errno;
	int n = snprintf(buf, sizeof buf, "cs[%d] %s: ", (int)getpid(),
			 level_name[level & 3]);
	va_list ap;

	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof buf - 2)
		n = sizeof buf - 2;
	buf[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, buf, n);
	(void)w;
	errno = saved;
}

long long cs_log_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}
