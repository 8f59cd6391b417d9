/*
 * index.c - the host's side of the index of names the cluster has (cs.h):
 * hashing a name, and answering "absent" or "maybe" from CS_SPOOL/index,
 * mapped read-only.  The agent writes the file (agent/index_file.c).
 *
 * The lookup takes no lock and allocates nothing (it runs inside open() and
 * stat(), maybe in a signal handler).  When the agent replaces the file (to
 * forget deleted names or to grow) it marks the old one superseded, and the
 * next lookup maps the new one.  Two slots hold the mappings: a lookup counts
 * itself in its slot's readers before it reads, and a mapping leaves memory
 * only once it is no longer current and nobody reads it, so no thread ever
 * reads an unmapped page.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cs.h"

#define RETRY_MS 1000   /* no index: look for one again this often */

static struct slot {
	const struct cs_index_head *head;
	size_t len;
	int readers;
} slots[2];
static int cur = -1;            /* the current slot, -1 for none */
static int remapping;
static int64_t next_look;       /* no index found: not before this (ms) */

void cs_index_hash(const char *ns, const char *rel, uint64_t h[2])
{
	uint64_t x = cs_fnv1a(CS_FNV_SEED, ns, strlen(ns) + 1);     /* with its NUL */

	x = cs_fnv1a(x, rel, strlen(rel));
	h[0] = cs_mix64(x);
	h[1] = cs_mix64(x ^ 0x9e3779b97f4a7c15ULL);
}

bool cs_index_test(const uint64_t *blocks, uint64_t nblocks, const uint64_t h[2])
{
	const uint64_t *b = blocks + cs_index_block(nblocks, h);

	for (int i = 0; i < CS_INDEX_K; i++) {
		unsigned bit = cs_index_bit(h, i);
		if (!((__atomic_load_n(&b[bit >> 6], __ATOMIC_RELAXED) >> (bit & 63)) & 1))
			return false;
	}
	return true;
}

bool cs_index_head_ok(const struct cs_index_head *h, uint64_t size)
{
	uint64_t n = h->nblocks;

	return memcmp(h->magic, CS_INDEX_MAGIC, 8) == 0 && h->k == CS_INDEX_K && n != 0 &&
	       (n & (n - 1)) == 0 && n <= (size - CS_INDEX_HEAD) / 64;
}

/* Map CS_SPOOL/index; NULL when there is none or it is not one. */
static const struct cs_index_head *map_file(size_t *len)
{
	char path[CS_PATH_MAX + 8];
	struct stat st;
	void *p;
	int fd;

	snprintf(path, sizeof path, "%s/index", cs_cfg.spool);
	fd = cs_libc.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < CS_INDEX_HEAD) {
		cs_libc.close(fd);
		return NULL;
	}
	p = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	cs_libc.close(fd);
	if (p == MAP_FAILED)
		return NULL;
	if (!cs_index_head_ok(p, st.st_size)) {
		munmap(p, st.st_size);
		return NULL;
	}
	*len = st.st_size;
	return p;
}

/* Drop slot s's mapping if nobody reads it. */
static void release(struct slot *s)
{
	if (s->head && __atomic_load_n(&s->readers, __ATOMIC_SEQ_CST) == 0) {
		munmap((void *)s->head, s->len);
		s->head = NULL;
	}
}

/* Map the published index into the slot that is not current and make it
 * current.  False when none could be had (or another thread is at it). */
static bool remap(void)
{
	int zero = 0, c, o;
	bool ok = false;
	size_t len;

	if (!__atomic_compare_exchange_n(&remapping, &zero, 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED))
		return false;
	c = __atomic_load_n(&cur, __ATOMIC_SEQ_CST);
	o = c == 0 ? 1 : 0;
	release(&slots[o]);     /* the one before the current: normally idle */
	if (!slots[o].head) {
		const struct cs_index_head *h = map_file(&len);
		if (h) {
			slots[o].head = h;
			slots[o].len = len;
			__atomic_store_n(&cur, o, __ATOMIC_SEQ_CST);
			if (c >= 0)
				release(&slots[c]);
			ok = true;
		} else {
			next_look = cs_clock_ms() + RETRY_MS;
		}
	}
	__atomic_store_n(&remapping, 0, __ATOMIC_RELEASE);
	return ok;
}

enum cs_index_answer cs_index_lookup(const char *ns, const char *rel)
{
	uint64_t h[2];

	cs_index_hash(ns, rel, h);
	for (int tries = 0; tries < 4; tries++) {
		int c = __atomic_load_n(&cur, __ATOMIC_SEQ_CST);

		if (c < 0) {
			if (cs_clock_ms() < next_look || !remap())
				return CS_INDEX_NONE;
			continue;
		}
		struct slot *s = &slots[c];
		__atomic_add_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&cur, __ATOMIC_SEQ_CST) != c) {
			__atomic_sub_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
			continue;
		}
		const struct cs_index_head *head = s->head;
		if (__atomic_load_n(&head->superseded, __ATOMIC_ACQUIRE) && tries < 3) {
			__atomic_sub_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
			if (remap())
				continue;
			/* No newer one to be had (a chroot, say): the old one
			 * still answers, only without the latest names. */
			__atomic_add_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&cur, __ATOMIC_SEQ_CST) != c) {
				__atomic_sub_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
				continue;
			}
		}
		bool maybe = cs_index_test((const uint64_t *)((const char *)head + CS_INDEX_HEAD),
					   head->nblocks, h);
		__atomic_sub_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
		return maybe ? CS_INDEX_MAYBE : CS_INDEX_ABSENT;
	}
	return CS_INDEX_MAYBE;  /* replaced under us again and again: ask */
}

void cs_index_prepare(void)
{
	if (__atomic_load_n(&cur, __ATOMIC_SEQ_CST) < 0)
		remap();
}

void cs_index_atfork_child(void)
{
	slots[0].readers = slots[1].readers = 0;
	remapping = 0;
}
