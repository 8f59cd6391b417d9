/*
 * tool.c - output helpers the subcommands share.
 */
#include <inttypes.h>
#include <stdio.h>

#include "tool.h"

void cs_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

const char *cs_human_bytes(uint64_t n, char buf[32])
{
	static const char *const unit[] = { "kB", "MB", "GB", "TB", "PB" };
	double x = (double)n;
	int u = -1;

	if (n < 1000) {
		snprintf(buf, 32, "%" PRIu64 " B", n);
		return buf;
	}
	while (x >= 1000 && u < 4) {
		x /= 1000;
		u++;
	}
	snprintf(buf, 32, "%.1f %s", x, unit[u]);
	return buf;
}
