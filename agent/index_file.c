/*
 * index_file.c - writing the index of names (cs.h): a blocked Bloom filter
 * in a file that every host process maps read-only.
 *
 * The agent holds the file mapped shared and read-write, and only ever sets
 * bits, with atomic ORs: a host sees a new name as soon as the bit is set,
 * and never a name half added in a way that matters (a name is "maybe" only
 * once all its bits are set).  A whole new file (to forget deleted names,
 * or to grow) is built under a temporary name, renamed into place, and the
 * old one marked superseded, which makes hosts map the new one.  Made with
 * 24 to 48 bits a name (BITS_PER_NAME, rounded up to a power of two of
 * blocks) and built again before it is down to 16 (capacity), a lookup of a
 * name never added says "maybe" about once in 8000 when it is new, and
 * once in 1000 at worst.
 *
 * A file can be made for more names than it gets and fitted afterwards
 * (cs_index_file_fit): a name's block is its hash modulo the number of
 * blocks, a power of two, and its bits within the block do not depend on
 * it, so OR-ing the upper half of the blocks into the lower half gives
 * exactly the file that half as many blocks would have made.  The agent
 * builds from a full scan whose count it only learns at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "index_file.h"

#define MIN_BLOCKS 2048                 /* 128 KiB */
#define BITS_PER_NAME 24

/* Blocks for about `names` names: BITS_PER_NAME each, a power of two. */
static uint64_t blocks_for(uint64_t names)
{
	uint64_t want = (names * BITS_PER_NAME + 511) / 512, n = MIN_BLOCKS;

	while (n < want && n < (1ULL << 40))
		n <<= 1;
	return n;
}

int cs_index_file_create(struct cs_index_file *x, const char *dir, uint64_t names)
{
	uint64_t n = blocks_for(names);
	struct timespec ts;
	int fd;

	memset(x, 0, sizeof *x);
	clock_gettime(CLOCK_REALTIME, &ts);
	if ((size_t)snprintf(x->tmp, sizeof x->tmp, "%s/index.%d.%ld.new", dir, (int)getpid(),
			     (long)ts.tv_nsec) >= sizeof x->tmp)
		return -ENAMETOOLONG;
	x->len = CS_INDEX_HEAD + n * 64;
	fd = open(x->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	/* Readable by every host whatever the agent's umask.  Its blocks
	 * taken now, not a sparse file: the agent sets bits through the
	 * mapping, and a store into a hole on a full disk is SIGBUS, the
	 * whole agent gone; here it is ENOSPC, and the build is tried again. */
	int e = fchmod(fd, 0644) < 0 ? errno : posix_fallocate(fd, 0, (off_t)x->len);
	if (e) {
		close(fd);
		unlink(x->tmp);
		return -e;
	}
	void *p = mmap(NULL, x->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	e = errno;
	close(fd);
	if (p == MAP_FAILED) {
		unlink(x->tmp);
		return -e;
	}
	x->head = p;
	x->blocks = (uint64_t *)((char *)p + CS_INDEX_HEAD);
	memcpy(x->head->magic, CS_INDEX_MAGIC, 8);
	x->head->k = CS_INDEX_K;
	x->head->nblocks = n;
	x->head->built_ms = (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	return 0;
}

void cs_index_file_prefetch(const struct cs_index_file *x, const uint64_t h[2])
{
	if (x->head)
		__builtin_prefetch(x->blocks + cs_index_block(x->head->nblocks, h), 1);
}

bool cs_index_file_add_hash(struct cs_index_file *x, const uint64_t h[2])
{
	uint64_t *b;
	bool fresh = false;

	if (!x->head)
		return true;
	b = x->blocks + cs_index_block(x->head->nblocks, h);
	for (int i = 0; i < CS_INDEX_K; i++) {
		unsigned bit = cs_index_bit(h, i);
		uint64_t m = 1ULL << (bit & 63);
		fresh |= !(__atomic_fetch_or(&b[bit >> 6], m, __ATOMIC_RELAXED) & m);
	}
	/* Counted once: the poll adds the same names again and again. */
	if (fresh)
		__atomic_add_fetch(&x->head->names, 1, __ATOMIC_RELAXED);
	return fresh;
}

bool cs_index_file_add_name(struct cs_index_file *x, const char *ns, const char *rel)
{
	uint64_t h[2];

	cs_index_hash(ns, rel, h);
	return cs_index_file_add_hash(x, h);
}

bool cs_index_file_add(struct cs_index_file *x, const char *ns, const char *rel)
{
	char dir[CS_PATH_MAX];
	size_t n = strlen(rel);

	if (!x->head || n >= sizeof dir)
		return true;
	/* Parents first: a host that sees the file's bits sees the way to it. */
	memcpy(dir, rel, n + 1);
	for (size_t i = 0; i < n; i++)
		if (dir[i] == '/') {
			dir[i] = '\0';
			cs_index_file_add_name(x, ns, dir);
			dir[i] = '/';
		}
	return cs_index_file_add_name(x, ns, rel);
}

uint64_t cs_index_file_capacity(const struct cs_index_file *x)
{
	return x->head ? x->head->nblocks * 512 / 16 : 0;
}

int cs_index_file_fit(struct cs_index_file *x, uint64_t names)
{
	uint64_t n = x->head->nblocks, want = blocks_for(names);
	size_t len;

	if (!x->tmp[0])
		return -EINVAL;         /* published: hosts read it at its size */
	if (want >= n)
		return 0;
	for (; n > want; n >>= 1) {
		uint64_t *lo = x->blocks, *hi = x->blocks + n / 2 * CS_INDEX_BLOCK_WORDS;
		for (uint64_t w = 0; w < n / 2 * CS_INDEX_BLOCK_WORDS; w++)
			lo[w] |= hi[w];
	}
	x->head->nblocks = n;
	/* The tail unmapped first: no store can land past the file's end. */
	len = CS_INDEX_HEAD + n * 64;
	if (munmap((char *)x->head + len, x->len - len) < 0)
		return -errno;
	x->len = len;
	return truncate(x->tmp, (off_t)len) < 0 ? -errno : 0;
}

int cs_index_file_publish(struct cs_index_file *x, const char *dir)
{
	char path[CS_PATH_MAX + 8];

	snprintf(path, sizeof path, "%s/index", dir);
	if (rename(x->tmp, path) < 0)
		return -errno;
	x->tmp[0] = '\0';
	return 0;
}

void cs_index_file_close(struct cs_index_file *x, bool superseded)
{
	if (!x->head)
		return;
	if (superseded)
		__atomic_store_n(&x->head->superseded, 1, __ATOMIC_RELEASE);
	munmap(x->head, x->len);
	if (x->tmp[0])
		unlink(x->tmp);
	memset(x, 0, sizeof *x);
}
