/*
 * http_put.c - the write routes of the agent's peer endpoint: a peer pushes
 * a new version of a file here (PUT), has this node rename its copy (POST
 * with X-CS-From), drop the copies the registry superseded (DELETE), or
 * learn names it is about to register (POST /v1/index).
 *
 * http.c has already checked the path and the signature.  The registry is
 * the authority on content: a pushed body is installed only when it matches
 * its signed X-CS-SHA256 and is exactly the version the registry holds now
 * (version, size, SHA-256, mtime); anything else leaves no file behind.  The
 * body streams into the store's anonymous temporary file (store.c), so a
 * reader sees the old file or the whole new one, never a torn one, nobody
 * waits for a push in progress, and a client that goes away midway leaves
 * nothing, not even a directory (cs_put_end).  A copy made
 * here is recorded in the registry before the answer, so the writer counts
 * only copies the registry knows; one that could not be recorded (or whose
 * agent died in between) is not counted, and the writer pushes it again.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http_put.h"
#include "indexer.h"
#include "registry.h"
#include "sign.h"
#include "stale.h"
#include "store.h"

#define CS_MAX_PUT (16ULL << 30)        /* the largest body a PUT may announce */

static const struct cs_verdict go_on;
static const struct cs_verdict moved_on = { MHD_HTTP_CONFLICT, "registry has moved on\n" };
static const struct cs_verdict unreachable = { MHD_HTTP_SERVICE_UNAVAILABLE,
					       "registry unreachable\n" };
static const struct cs_verdict cannot = { MHD_HTTP_INTERNAL_SERVER_ERROR,
					  "cannot install here\n" };
static const struct cs_verdict no_namespace = { MHD_HTTP_NOT_FOUND, "no such namespace\n" };

static const char *header(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* The version a PUT or POST says it is about. */
struct want {
	unsigned char sha[CS_SHA256_LEN];
	uint64_t version;
	int64_t mtime_ns;
};

/* X-CS-SHA256, X-CS-Version and X-CS-Mtime: NULL, or what is wrong. */
static const char *parse_want(struct MHD_Connection *c, struct want *w)
{
	const char *sha = header(c, "X-CS-SHA256");

	if (!sha || cs_unhex(sha, w->sha, CS_SHA256_LEN) < 0)
		return "missing or malformed X-CS-SHA256\n";
	if (!cs_parse_u64(header(c, "X-CS-Version"), &w->version) || w->version == 0)
		return "missing or malformed X-CS-Version\n";
	if (!cs_parse_i64(header(c, "X-CS-Mtime"), &w->mtime_ns))
		return "missing or malformed X-CS-Mtime\n";
	return NULL;
}

/* Decoded X-CS-From into out[CS_PATH_MAX]: its length, or -EINVAL. */
static int move_source(struct MHD_Connection *c, char *out)
{
	const char *from = header(c, "X-CS-From");

	return from ? cs_url_decode_to(from, strlen(from), out, CS_PATH_MAX) : -EINVAL;
}

void cs_http_signed_body(struct MHD_Connection *c, const char *method, char *out,
			 size_t outsz)
{
	const char *sha = header(c, "X-CS-SHA256");
	char from[CS_PATH_MAX];

	if (strcmp(method, "POST") == 0 && move_source(c, from) >= 0)
		snprintf(out, outsz, "%s:%s", sha ? sha : "", from);
	else
		snprintf(out, outsz, "%s", sha ? sha : "-");
}

/* Is w the registry's current version of (ns, rel)?  *f gets the record. */
static struct cs_verdict registry_has(const char *ns, const char *rel,
				      const struct want *w, struct cs_file *f)
{
	int rc = cs_registry_lookup_db(ns, rel, f);

	if (rc < 0 && rc != -ENOENT)      /* -EAGAIN: down or unreachable */
		return unreachable;
	/* The mtime too: a copy must look exactly as the registry says it was
	 * installed, or the stale sweep would never recognise it. */
	if (rc < 0 || f->deleted || f->version != w->version ||
	    memcmp(f->sha256, w->sha, CS_SHA256_LEN) != 0 || f->mtime_ns != w->mtime_ns)
		return moved_on;
	return go_on;
}

/*
 * This node is about to hold f at (ns, rel): an H entry in the agent's own
 * journal before the copy becomes visible, as a fetch does (fetch.c).  When
 * the record below fails (the registry went away between the install and
 * the answer) or the agent dies in between, the journal records the copy
 * later, stale at once if the registry has moved past it, so the sweep
 * removes it.  Without it such a copy was known to no one and kept being
 * served after newer versions were registered.
 */
static void journal_held(const char *ns, const char *rel, const struct cs_file *f)
{
	struct cs_held h = { f->id, f->version, f->size, f->mtime_ns };
	int rc = cs_journal_append_held(ns, rel, &h);

	if (rc < 0)
		cs_error_every(10, "%s/%s: cannot journal its holder record (%s); installing anyway",
			       ns, rel, strerror(-rc));
}

/* This node now holds f at (ns, rel): recorded before the peer counts it. */
static struct cs_verdict record(const char *ns, const char *rel, const struct cs_file *f)
{
	static const struct cs_verdict unrecorded = {
		MHD_HTTP_SERVICE_UNAVAILABLE, "installed, but the registry did not record it yet\n"
	};
	struct cs_held v = { f->id, f->version, f->size, f->mtime_ns };
	int rc = cs_registry_hold(&v, 1, true);

	if (rc < 0) {
		cs_info("%s/%s: installed, not yet recorded as held here: %s", ns, rel,
			strerror(-rc));
		return unrecorded;
	}
	return go_on;
}

static const struct cs_verdict outside = {
	MHD_HTTP_BAD_REQUEST, "path leads out of the namespace or through a file\n"
};

/* The store's temporary file for rel in namespace p. */
static struct cs_verdict install_begin(const struct cs_prefix *p, const char *rel,
				       struct cs_install *in)
{
	int rc = cs_store_begin(p, rel, in);

	if (rc == 0)
		return go_on;
	if (rc == -EXDEV || rc == -ENAMETOOLONG)
		return outside;
	cs_error_every(10, "%s/%s: cannot install here: %s", p->name, rel, strerror(-rc));
	return cannot;
}

/* ---- PUT -------------------------------------------------------------- */

struct cs_upload {
	struct cs_install in;
	struct cs_sha256 sha;
	struct want want;
	uint64_t length, got;
	int err;                        /* the first write error */
	char ns[CS_NAME_MAX];
	char rel[CS_PATH_MAX];
};

struct cs_verdict cs_put_begin(struct MHD_Connection *c, const struct cs_route *rt,
			       struct cs_upload **up)
{
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, rt->ns);
	const char *length = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH), *why;
	struct cs_upload *u;
	struct cs_verdict v;
	struct want w;
	uint64_t n;

	*up = NULL;
	if (!p)
		return no_namespace;
	if (!length)            /* (a chunked body was refused already, in http.c) */
		return (struct cs_verdict){ MHD_HTTP_LENGTH_REQUIRED,
					    "Content-Length required (no chunked bodies)\n" };
	if (!cs_parse_u64(length, &n))
		return (struct cs_verdict){ MHD_HTTP_BAD_REQUEST, "malformed Content-Length\n" };
	if (n > CS_MAX_PUT)
		return (struct cs_verdict){ MHD_HTTP_CONTENT_TOO_LARGE, "body too large\n" };
	if ((why = parse_want(c, &w)))
		return (struct cs_verdict){ MHD_HTTP_BAD_REQUEST, why };
	if (!(u = calloc(1, sizeof *u)) || cs_sha256_init(&u->sha) < 0) {
		free(u);
		return (struct cs_verdict){ MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n" };
	}
	u->in.fd = u->in.tmpdir = -1;
	u->want = w;
	u->length = n;
	snprintf(u->ns, sizeof u->ns, "%s", rt->ns);
	snprintf(u->rel, sizeof u->rel, "%s", rt->rel);
	v = install_begin(p, rt->rel, &u->in);
	if (v.status) {
		cs_put_end(u);
		return v;
	}
	*up = u;
	return go_on;
}

void cs_put_data(struct cs_upload *u, const char *data, size_t size)
{
	/* After a write error the rest is read and dropped, so the peer still
	 * gets an answer rather than a reset. */
	if (!u->err) {
		cs_sha256_update(&u->sha, data, size);
		u->err = -cs_write_all(u->in.fd, data, size);
	}
	u->got += size;
}

struct cs_verdict cs_put_finish(struct MHD_Connection *c, struct cs_upload *u,
				uint64_t *bytes)
{
	unsigned char digest[CS_SHA256_LEN];
	struct cs_verdict v = go_on;
	struct cs_file f;
	int rc;

	*bytes = 0;
	cs_sha256_final(&u->sha, digest);
	if (u->err) {
		cs_error_every(10, "%s/%s: %s", u->ns, u->rel, strerror(u->err));
		v = cannot;
	} else if (u->got != u->length) {
		v = (struct cs_verdict){ MHD_HTTP_BAD_REQUEST, "truncated body\n" };
	} else if (memcmp(digest, u->want.sha, CS_SHA256_LEN) != 0) {
		v = (struct cs_verdict){ MHD_HTTP_BAD_REQUEST, "checksum mismatch\n" };
	}
	if (v.status) {
		cs_store_abort(&u->in);
		return v;
	}
	/* Under the path's lock from the registry's word to the rename, so an
	 * older push that ends at the same moment cannot land over this one. */
	int lock = cs_store_lock(u->ns, u->rel);
	v = registry_has(u->ns, u->rel, &u->want, &f);
	if (!v.status && f.size != u->got)
		v = moved_on;
	/* The copy about to be replaced may be the loser of two writes made at
	 * once: kept, not overwritten (stale.c). */
	if (!v.status && (rc = cs_stale_keep_lost(cs_config_namespace(&cs_cfg, u->ns), u->rel,
						  f.id)) < 0) {
		cs_error_every(10, "%s/%s: cannot keep the lost version here: %s", u->ns, u->rel,
			       strerror(-rc));
		v = rc == -EAGAIN ? unreachable : cannot;
	}
	if (!v.status)
		journal_held(u->ns, u->rel, &f);
	rc = v.status ? 0 : cs_store_commit(&u->in, f.mtime_ns, true);
	cs_store_unlock(lock);
	if (v.status) {
		cs_store_abort(&u->in);
		return v;
	}
	if (rc == -EXDEV)
		return outside;         /* a symlink planted on the way meanwhile */
	if (rc < 0) {
		cs_error_every(10, "%s/%s: cannot install: %s", u->ns, u->rel, strerror(-rc));
		return cannot;
	}
	cs_indexer_add(u->ns, u->rel);
	if ((v = record(u->ns, u->rel, &f)).status)
		return v;
	*bytes = u->got;
	cs_info("PUT /v1/files/%s/%s version %" PRIu64 " (%" PRIu64 " bytes) from %s",
		u->ns, u->rel, f.version, u->got,
		header(c, "X-CS-Node") ? header(c, "X-CS-Node") : "?");
	return (struct cs_verdict){ MHD_HTTP_OK, "stored\n" };
}

void cs_put_end(struct cs_upload *u)
{
	if (!u)
		return;
	if (u->in.fd >= 0)
		cs_info("%s/%s: push not completed; dropped", u->ns, u->rel);
	cs_store_abort(&u->in);
	cs_sha256_free(&u->sha);
	free(u);
}

/* ---- POST: move ------------------------------------------------------ */

/*
 * Rename the file open at fd (named name in dir, stat *st when it was
 * hashed) to toname in todir with mtime_ns: one rename(2), so a reader sees
 * nothing or the whole file.  -EAGAIN when it changed since it was hashed.
 */
static int move_into(int dir, const char *name, int fd, const struct stat *st,
		     int todir, const char *toname, int64_t mtime_ns)
{
	const struct timespec ts[2] = {
		{ .tv_nsec = UTIME_OMIT },
		{ .tv_sec = mtime_ns / 1000000000, .tv_nsec = mtime_ns % 1000000000 },
	};
	const struct timespec old[2] = { { .tv_nsec = UTIME_OMIT }, st->st_mtim };
	struct stat now, named;

	if (fstat(fd, &now) < 0 || fstatat(dir, name, &named, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (named.st_ino != st->st_ino || named.st_dev != st->st_dev ||
	    now.st_size != st->st_size || now.st_mtim.tv_sec != st->st_mtim.tv_sec ||
	    now.st_mtim.tv_nsec != st->st_mtim.tv_nsec)
		return -EAGAIN;
	if (futimens(fd, ts) < 0)
		return -errno;
	if (renameat(dir, name, todir, toname) < 0) {
		int e = errno;
		/* Leave it as installed, so the stale sweep still knows it. */
		if (futimens(fd, old) < 0)
			cs_error_every(10, "%s: cannot restore its mtime: %s", name,
				       strerror(errno));
		return -e;
	}
	return 0;
}

struct cs_verdict cs_move(struct MHD_Connection *c, const struct cs_route *rt)
{
	static const struct cs_verdict no_copy = { MHD_HTTP_NOT_FOUND, "no such file\n" };
	static const struct cs_verdict differs = {
		MHD_HTTP_CONFLICT, "this copy is not the registry's version\n"
	};
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, rt->ns);
	unsigned char digest[CS_SHA256_LEN];
	char from[CS_PATH_MAX];
	const char *why, *name;
	struct cs_verdict v;
	struct cs_file f;
	struct stat st;
	struct want w;
	uint64_t size;
	int root, dir = -1, fd = -1, rc;

	if (!p)
		return no_namespace;
	if (move_source(c, from) < 0 || !cs_path_rel_valid(from, strlen(from)))
		return (struct cs_verdict){ MHD_HTTP_BAD_REQUEST, "missing or bad X-CS-From\n" };
	if ((why = parse_want(c, &w)))
		return (struct cs_verdict){ MHD_HTTP_BAD_REQUEST, why };
	v = registry_has(p->name, rt->rel, &w, &f);
	if (v.status)
		return v;

	if ((root = cs_store_root(p)) >= 0)
		dir = cs_store_open_parent(root, from, false, &name);
	if (dir >= 0)
		fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		v = no_copy;
		goto out;
	}
	rc = cs_sha256_fd(fd, digest, &size);
	if (rc < 0 || size != f.size || memcmp(digest, f.sha256, CS_SHA256_LEN) != 0) {
		v = rc < 0 ? cannot : differs;
		goto out;
	}
	int lock = cs_store_lock(p->name, rt->rel);
	const char *toname;
	int todir = cs_store_open_parent(root, rt->rel, true, &toname);
	if (todir >= 0)
		journal_held(p->name, rt->rel, &f);
	rc = todir < 0 ? -errno : move_into(dir, name, fd, &st, todir, toname, f.mtime_ns);
	cs_store_unlock(lock);
	if (todir >= 0)
		close(todir);
	if (rc == -EXDEV || rc == -ELOOP || rc == -ENOTDIR) {
		v = outside;
		goto out;
	}
	if (rc < 0) {
		if (rc != -EAGAIN)
			cs_error_every(10, "rename %s/%s to %s: %s", p->dir, from, rt->rel,
				       strerror(-rc));
		v = rc == -EAGAIN ? differs : cannot;
		goto out;
	}
	cs_indexer_add(p->name, rt->rel);
	v = record(p->name, rt->rel, &f);
	if (!v.status) {
		cs_info("POST /v1/files/%s/%s from %s version %" PRIu64, p->name, rt->rel,
			from, f.version);
		v = (struct cs_verdict){ MHD_HTTP_OK, "moved\n" };
	}
out:
	if (fd >= 0)
		close(fd);
	if (dir >= 0)
		close(dir);
	return v;
}

/* ---- DELETE ------------------------------------------------------------ */

struct cs_verdict cs_delete(void)
{
	static __thread char body[64];
	int n = cs_stale_sweep();

	if (n < 0)
		return unreachable;
	snprintf(body, sizeof body, "swept %d\n", n);
	return (struct cs_verdict){ MHD_HTTP_OK, body };
}

/* ---- POST /v1/index ------------------------------------------------------ */

struct cs_verdict cs_announced(struct MHD_Connection *c, const char *body, size_t len)
{
	static const struct cs_verdict bad = { MHD_HTTP_BAD_REQUEST,
					       "body does not match X-CS-SHA256\n" };
	const char *sha = header(c, "X-CS-SHA256");
	unsigned char want[CS_SHA256_LEN], got[CS_SHA256_LEN];
	char rel[CS_PATH_MAX], ns[CS_NAME_MAX];
	unsigned long added = 0;

	if (!sha || cs_unhex(sha, want, CS_SHA256_LEN) < 0)
		return bad;
	cs_sha256_buf(body, len, got);
	if (memcmp(want, got, CS_SHA256_LEN) != 0)
		return bad;
	for (const char *p = body, *end = body + len; p < end;) {
		const char *nl = memchr(p, '\n', end - p), *tab;
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		tab = memchr(p, '\t', n);
		if (tab && (size_t)(tab - p) < sizeof ns) {
			memcpy(ns, p, tab - p);
			ns[tab - p] = '\0';
			int m = cs_url_decode_to(tab + 1, n - (tab - p) - 1, rel, sizeof rel);
			if (m > 0 && cs_path_rel_valid(rel, m) && cs_config_namespace(&cs_cfg, ns)) {
				cs_indexer_add(ns, rel);
				added++;
			}
		}
		p += n + 1;
	}
	cs_debug("announced: %lu names from %s", added,
		 header(c, "X-CS-Node") ? header(c, "X-CS-Node") : "?");
	return (struct cs_verdict){ MHD_HTTP_OK, "ok\n" };
}
