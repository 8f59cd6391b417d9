/*
 * tool.c - output helpers the subcommands share.
 */
#include <inttypes.h>
#include <stdio.h>

#include "tool.h"

/* The length of the valid UTF-8 sequence at s (no overlong form, no
 * surrogate, nothing past U+10FFFF), or 0. */
static int utf8_len(const unsigned char *s)
{
	int n = s[0] < 0xc2 ? 0 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : s[0] < 0xf5 ? 4 : 0;
	unsigned lo = s[0] == 0xe0 ? 0xa0 : s[0] == 0xf0 ? 0x90 : 0x80;
	unsigned hi = s[0] == 0xed ? 0x9f : s[0] == 0xf4 ? 0x8f : 0xbf;

	if (n && (s[1] < lo || s[1] > hi))
		return 0;
	for (int i = 2; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

void cs_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		int n;

		if (*p == '"' || *p == '\\') {
			fprintf(f, "\\%c", *p++);
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\u%04x", *p++);
		} else if (*p < 0x80) {
			fputc(*p++, f);
		} else if ((n = utf8_len(p)) > 0) {
			fwrite(p, 1, (size_t)n, f);
			p += n;
		} else {
			fprintf(f, "\\u%04x", *p++);
		}
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
