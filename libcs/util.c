/*
 * util.c - the small helpers every part needs once: clocks, hex, checked
 * number parsing, hashing, the path behind a descriptor, and writing a
 * whole buffer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "cs.h"

int64_t cs_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cs_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cs_hex(const void *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int cs_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int cs_unhex(const char *hex, void *out, size_t n)
{
	unsigned char *b = out;

	for (size_t i = 0; i < n; i++) {
		int h = cs_hexval(hex[2 * i]), l = h < 0 ? -1 : cs_hexval(hex[2 * i + 1]);
		if (h < 0 || l < 0)
			return -EINVAL;
		b[i] = (unsigned char)(h << 4 | l);
	}
	return hex[2 * n] == '\0' ? 0 : -EINVAL;
}

bool cs_parse_u64(const char *s, uint64_t *v)
{
	uint64_t x = 0;

	if (!s || *s < '0' || *s > '9')
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || x > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	*v = x;
	return true;
}

bool cs_parse_i64(const char *s, int64_t *v)
{
	bool neg = s && *s == '-';
	uint64_t u;

	/* INT64_MIN too: what PRId64 writes must read back. */
	if (!cs_parse_u64(neg ? s + 1 : s, &u) || u > (uint64_t)INT64_MAX + neg)
		return false;
	*v = !neg ? (int64_t)u : u ? -(int64_t)(u - 1) - 1 : 0;
	return true;
}

bool cs_parse_seconds(const char *s, double lo, double hi, int *ms)
{
	char *end;
	double v;

	if (!s || !*s)
		return false;
	v = strtod(s, &end);
	if (end == s || *end || !(v >= lo && v <= hi))
		return false;
	*ms = (int)(v * 1000 + 0.5);
	return true;
}

uint64_t cs_fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

uint64_t cs_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

int cs_fd_path(int fd, char *out, size_t outsz)
{
	char link[32];
	ssize_t n;

	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	n = readlink(link, out, outsz - 1);
	if (n < 0)
		return -errno;
	out[n] = '\0';
	return out[0] == '/' ? (int)n : -ENOENT;
}

int cs_write_all(int fd, const void *p, size_t n)
{
	const char *b = p;
	size_t done = 0;

	while (done < n) {
		ssize_t w = write(fd, b + done, n - done);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		done += w;
	}
	return 0;
}
