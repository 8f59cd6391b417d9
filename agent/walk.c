/*
 * walk.c - a resumable walk over this node's holder records, in file id
 * order, for repair and verify.
 *
 * Both jobs look only at what this node holds: the replicas rows of
 * node_id = self and stale = 0, through the replicas_node (node_id, stale)
 * index, to which InnoDB appends the primary key (file_id, node_id), so
 * the rows come in file id order and "the next n above a file id" is a
 * range read of n index entries, however large the registry.  What the
 * walker does with each batch is its own business.
 *
 * The place is kept in CS_SPOOL/<name>.cursor, one line of numbers, written
 * to a new file and renamed over the old one after each batch: a reader
 * sees the old place or the new, never half.  It is not synced: after a
 * crash of the machine the place may be a little behind, which only means
 * some files are looked at twice.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "walk.h"

#define COUNT_STEP 1000000      /* records counted per statement */

static int path_of(const char *name, const char *ext, char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%s/%s.cursor%s", cs_cfg.spool, name, ext);

	return !cs_cfg.spool[0] ? -ENOENT : n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}

int cs_walk_load(const char *name, struct cs_walk *w)
{
	char path[CS_PATH_MAX], line[256];
	unsigned long long lap, after, done, phase;
	ssize_t n;
	int fd;

	memset(w, 0, sizeof *w);
	if (path_of(name, "", path, sizeof path) < 0 ||
	    (fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, line, sizeof line - 1);
	close(fd);
	if (n <= 0)
		return 0;
	line[n] = '\0';
	if (sscanf(line, "lap %llu after %llu done %llu phase %llu", &lap, &after, &done,
		   &phase) != 4)
		return 0;       /* not ours, or from another release: from the start */
	*w = (struct cs_walk){ lap, after, done, phase };
	return 0;
}

int cs_walk_save(const char *name, const struct cs_walk *w)
{
	char path[CS_PATH_MAX], tmp[CS_PATH_MAX], line[256];
	int len, fd, rc;

	if ((rc = path_of(name, "", path, sizeof path)) < 0 ||
	    (rc = path_of(name, ".new", tmp, sizeof tmp)) < 0)
		return rc;
	len = snprintf(line, sizeof line, "lap %" PRIu64 " after %" PRIu64 " done %" PRIu64
		       " phase %" PRIu64 "\n", w->lap, w->after, w->done, w->phase);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644)) < 0)
		return -errno;
	if (write(fd, line, (size_t)len) != len) {
		rc = errno ? -errno : -EIO;
		close(fd);
		unlink(tmp);
		return rc;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		rc = -errno;
		unlink(tmp);
		return rc;
	}
	return 0;
}

/* "SELECT ... FROM (the next max records above after) x": by the index. */
static void next_sql(struct cs_buf *q, const char *what, uint32_t self, uint64_t after, int max)
{
	cs_sql_fmt(q, "SELECT %s FROM (SELECT file_id FROM replicas WHERE node_id=%" PRIu32
		   " AND stale=0 AND file_id > %" PRIu64 " ORDER BY file_id LIMIT %d) x",
		   what, self, after, max);
}

int cs_walk_next(uint32_t self, uint64_t after, int max, uint64_t *last, uint64_t *n)
{
	struct cs_buf q = { 0 };
	MYSQL_RES *res = NULL;
	MYSQL_ROW row;
	int rc;

	next_sql(&q, "COUNT(*), COALESCE(MAX(file_id), 0)", self, after, max);
	if ((rc = cs_db_query(&q, &res)) < 0)
		return rc;
	row = res ? mysql_fetch_row(res) : NULL;
	*n = row ? cs_db_u64(row[0]) : 0;
	*last = row ? cs_db_u64(row[1]) : after;
	if (res)
		mysql_free_result(res);
	return 0;
}

int cs_walk_count(uint32_t self, uint64_t after, uint64_t *n)
{
	uint64_t last = after, got;
	int rc;

	*n = 0;
	do {
		if ((rc = cs_walk_next(self, last, COUNT_STEP, &last, &got)) < 0)
			return rc;
		*n += got;
	} while (got == COUNT_STEP);
	return 0;
}
