/*
 * serve_put.c - the write routes of `cs-replicate serve`: a peer pushes a
 * new version of a file here (PUT), has this node rename its copy (POST with
 * X-CS-From), or has it drop the copies the registry superseded (DELETE).
 *
 * serve.c has already checked the path and the signature.  The registry is
 * the authority on content: a pushed body is installed only when it matches
 * its signed X-CS-SHA256 and is exactly the version the registry holds now
 * (version, size, SHA-256, mtime); anything else leaves no file behind.  The
 * body streams into the store's temporary file beside the target (store.c),
 * so a reader sees the old file or the whole new one, never a torn one, and
 * a client that goes away midway leaves nothing (serve_put_end).  Targets
 * are reached through directories opened beneath the namespace directory,
 * made there if missing: no symlink or ".." takes a write outside it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve_int.h"

#define CS_MAX_PUT (16ULL << 30)        /* the largest body a PUT may announce */
/* How long to wait for another fetch or push of the same path.  Short: the
 * wait blocks one of the few server threads, maybe the very one feeding the
 * other push; the peer gets 503 and tries again later. */
#define INSTALL_WAIT_MS 2000
#define DIR_FLAGS (O_PATH | O_DIRECTORY | O_CLOEXEC)

/* An answer: 0 to go on, or the status and text to refuse with. */
struct verdict {
	unsigned status;
	const char *text;
};

static const struct verdict go_on;
static const struct verdict moved_on = { MHD_HTTP_CONFLICT, "registry has moved on\n" };
static const struct verdict unreachable = { MHD_HTTP_SERVICE_UNAVAILABLE,
					    "registry unreachable\n" };
static const struct verdict cannot = { MHD_HTTP_INTERNAL_SERVER_ERROR,
				       "cannot install here\n" };

static enum MHD_Result refuse(struct MHD_Connection *c, struct verdict v)
{
	return serve_reply(c, v.status, v.text);
}

static const char *header(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* Decimal digits only (strtoull alone would take spaces, '+' and '-'). */
static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return *end == '\0' && errno == 0;
}

static bool parse_i64(const char *s, int64_t *v)
{
	uint64_t u;
	bool neg = s && *s == '-';

	if (!parse_u64(neg ? s + 1 : s, &u) || u > (uint64_t)INT64_MAX)
		return false;
	*v = neg ? -(int64_t)u : (int64_t)u;
	return true;
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

	if (!sha || cs_sha256_unhex(sha, w->sha) < 0)
		return "missing or malformed X-CS-SHA256\n";
	if (!parse_u64(header(c, "X-CS-Version"), &w->version) || w->version == 0)
		return "missing or malformed X-CS-Version\n";
	if (!parse_i64(header(c, "X-CS-Mtime"), &w->mtime_ns))
		return "missing or malformed X-CS-Mtime\n";
	return NULL;
}

/* Decoded X-CS-From into out[CS_PATH_MAX]: its length, or -EINVAL. */
static int move_source(struct MHD_Connection *c, char *out)
{
	const char *from = header(c, "X-CS-From");

	if (!from || strlen(from) >= CS_PATH_MAX)
		return -EINVAL;
	strcpy(out, from);
	return cs_url_decode(out);
}

void serve_signed_body(struct MHD_Connection *c, const char *method, char *out,
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
static struct verdict registry_has(const char *ns, const char *rel,
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

/* This node now holds f at (ns, rel). */
static struct verdict record(const char *ns, const char *rel, const struct cs_file *f)
{
	static const struct verdict unrecorded = {
		MHD_HTTP_SERVICE_UNAVAILABLE, "installed, but the registry did not record it\n"
	};
	uint32_t self;
	int rc = cs_registry_self(&self);

	if (rc == 0)
		rc = cs_registry_add_holder(ns, rel, f, self);
	if (rc < 0) {
		cs_info("%s/%s: installed, but not recorded as held here: %s", ns, rel,
			strerror(-rc));
		return unrecorded;
	}
	return go_on;
}

/* ---- where a write may go ------------------------------------------- */

/* When root makes directories, they belong to the namespace directory's
 * owner, as the store does it: the web server's workers write there too. */
static void give_to_owner(int rootfd, int dirfd, const char *name)
{
	struct stat st;

	if (geteuid() == 0 && fstat(rootfd, &st) == 0 && st.st_uid != 0 &&
	    fchownat(dirfd, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
		cs_error_every(10, "chown %s: %s", name, strerror(errno));
}

/*
 * The directory holding rel (a valid relative path), opened beneath rootfd;
 * with create, missing directories are made, each inside its parent as
 * opened beneath rootfd.  *name gets rel's last segment.  -1 with errno:
 * EXDEV, ELOOP or ENOTDIR when the way leads out or through a file.
 */
static int open_parent(int rootfd, const char *rel, bool create, const char **name)
{
	const char *slash = strrchr(rel, '/');
	char dir[CS_PATH_MAX];
	int cur, next;

	*name = slash ? slash + 1 : rel;
	if (!slash)
		return fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
	memcpy(dir, rel, slash - rel);
	dir[slash - rel] = '\0';
	cur = serve_open_beneath(rootfd, dir, DIR_FLAGS);
	if (cur >= 0 || errno != ENOENT || !create)
		return cur;

	cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
	for (char *seg = dir, *end = dir; cur >= 0; end++) {
		if (*end != '/' && *end != '\0')
			continue;
		char c = *end;
		*end = '\0';
		int made = mkdirat(cur, seg, 0777);
		if (made == 0)
			give_to_owner(rootfd, cur, seg);
		next = made == 0 || errno == EEXIST ?
		       serve_open_beneath(rootfd, dir, DIR_FLAGS) : -1;
		int e = errno;
		close(cur);
		errno = e;
		cur = next;
		if (c == '\0')
			break;
		*end = '/';
		seg = end + 1;
	}
	return cur;
}

/*
 * Take the store's lock and temporary file for rel in namespace p (its
 * directory opened beneath p's, made if missing).  abs[CS_PATH_MAX] must
 * live as long as *in: the store keeps a pointer into it.
 */
static struct verdict install_begin(const struct cs_prefix *p, const char *rel,
				    char *abs, struct cs_install *in)
{
	static const struct verdict outside = {
		MHD_HTTP_BAD_REQUEST, "path leads out of the namespace or through a file\n"
	};
	static const struct verdict busy = { MHD_HTTP_SERVICE_UNAVAILABLE, "path busy\n" };
	struct verdict v = go_on;
	struct stat a, b;
	const char *name;
	int root, dir, rc;

	in->fd = in->dirfd = -1;
	if ((size_t)snprintf(abs, CS_PATH_MAX, "%s/%s", p->dir, rel) >= CS_PATH_MAX)
		return outside;
	if ((root = open(p->dir, DIR_FLAGS)) < 0) {
		cs_error_every(10, "%s: %s", p->dir, strerror(errno));
		return cannot;
	}
	dir = open_parent(root, rel, true, &name);
	int e = errno;
	close(root);
	if (dir < 0) {
		if (e == EXDEV || e == ELOOP || e == ENOTDIR || e == ENAMETOOLONG)
			return outside;
		cs_error_every(10, "%s: cannot make its directory: %s", abs, strerror(e));
		return cannot;
	}
	rc = cs_store_begin_replace(p->dir, abs, in, INSTALL_WAIT_MS);
	if (rc < 0) {
		if (rc != -ETIMEDOUT)
			cs_error_every(10, "%s: cannot install here: %s", abs, strerror(-rc));
		v = rc == -ETIMEDOUT ? busy : cannot;
	} else if (fstat(dir, &a) < 0 || fstat(in->dirfd, &b) < 0 ||
		   a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		cs_store_abort(in);     /* a symlink was swapped in meanwhile */
		v = outside;
	}
	close(dir);
	return v;
}

/* ---- PUT -------------------------------------------------------------- */

struct upload {
	struct cs_install in;
	struct cs_sha256 sha;
	struct want want;
	uint64_t length, got;
	int err;                        /* the first write error */
	const char *rel;                /* in abs */
	char ns[CS_NAME_MAX];
	char abs[CS_PATH_MAX];
};

enum MHD_Result serve_put_begin(struct MHD_Connection *c, const struct cs_route *rt,
				void **state)
{
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, rt->ns);
	const char *length = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH), *why;
	struct upload *u;
	struct verdict v;
	struct want w;
	uint64_t n;

	if (!p)
		return serve_reply(c, MHD_HTTP_NOT_FOUND, "no such namespace\n");
	if (!length || header(c, MHD_HTTP_HEADER_TRANSFER_ENCODING))
		return serve_reply(c, MHD_HTTP_LENGTH_REQUIRED,
				   "Content-Length required (no chunked bodies)\n");
	if (!parse_u64(length, &n))
		return serve_reply(c, MHD_HTTP_BAD_REQUEST, "malformed Content-Length\n");
	if (n > CS_MAX_PUT)
		return serve_reply(c, MHD_HTTP_CONTENT_TOO_LARGE, "body too large\n");
	if ((why = parse_want(c, &w)))
		return serve_reply(c, MHD_HTTP_BAD_REQUEST, why);
	if (!(u = calloc(1, sizeof *u)) || cs_sha256_init(&u->sha) < 0) {
		free(u);
		return serve_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	}
	u->want = w;
	u->length = n;
	snprintf(u->ns, sizeof u->ns, "%s", rt->ns);
	v = install_begin(p, rt->rel, u->abs, &u->in);
	if (v.status) {
		serve_put_end(u);
		return refuse(c, v);
	}
	u->rel = u->abs + p->dirlen + 1;
	*state = u;
	return MHD_YES;
}

/* The whole body is here: keep it if it is the registry's version. */
static enum MHD_Result put_finish(struct MHD_Connection *c, struct upload *u)
{
	unsigned char digest[CS_SHA256_LEN];
	struct verdict v = go_on;
	struct cs_file f;
	int rc;

	cs_sha256_final(&u->sha, digest);
	if (u->err) {
		cs_error_every(10, "%s: %s", u->abs, strerror(u->err));
		v = cannot;
	} else if (u->got != u->length) {
		v = (struct verdict){ MHD_HTTP_BAD_REQUEST, "truncated body\n" };
	} else if (memcmp(digest, u->want.sha, CS_SHA256_LEN) != 0) {
		v = (struct verdict){ MHD_HTTP_BAD_REQUEST, "checksum mismatch\n" };
	} else {
		v = registry_has(u->ns, u->rel, &u->want, &f);
		if (!v.status && f.size != u->got)
			v = moved_on;
	}
	if (v.status) {
		cs_store_abort(&u->in);
		return refuse(c, v);
	}
	if ((rc = cs_store_commit(&u->in, f.mtime_ns)) < 0) {
		cs_error_every(10, "%s: cannot install: %s", u->abs, strerror(-rc));
		return refuse(c, cannot);
	}
	v = record(u->ns, u->rel, &f);
	if (v.status)
		return refuse(c, v);
	atomic_fetch_add(&serve_stats.files_received, 1);
	atomic_fetch_add(&serve_stats.bytes_received, u->got);
	cs_info("PUT /v1/files/%s/%s version %" PRIu64 " (%" PRIu64 " bytes) from %s",
		u->ns, u->rel, f.version, u->got,
		header(c, "X-CS-Node") ? header(c, "X-CS-Node") : "?");
	return serve_reply(c, MHD_HTTP_OK, "stored\n");
}

enum MHD_Result serve_put_data(struct MHD_Connection *c, void *state,
			       const char *data, size_t *size)
{
	struct upload *u = state;
	size_t done = 0;

	if (*size == 0)
		return u->in.fd >= 0 ? put_finish(c, u) : MHD_YES;
	/* After a write error the rest is read and dropped, so the peer still
	 * gets an answer rather than a reset. */
	if (!u->err)
		cs_sha256_update(&u->sha, data, *size);
	while (!u->err && done < *size) {
		ssize_t n = write(u->in.fd, data + done, *size - done);
		if (n < 0 && errno != EINTR)
			u->err = errno;
		else if (n > 0)
			done += n;
	}
	u->got += *size;
	*size = 0;
	return MHD_YES;
}

void serve_put_end(void *state)
{
	struct upload *u = state;

	if (u->in.fd >= 0)
		cs_info("%s: push not completed; dropped", u->abs);
	cs_store_abort(&u->in);
	cs_sha256_free(&u->sha);
	free(u);
}

/* ---- POST: move ------------------------------------------------------ */

/*
 * Rename the file open at fd (named name in dir, stat *st when it was
 * hashed) to in's target with mtime_ns: one rename(2), so a reader sees
 * nothing or the whole file.  -EAGAIN when it changed since it was hashed.
 */
static int move_into(int dir, const char *name, int fd, const struct stat *st,
		     const struct cs_install *in, int64_t mtime_ns)
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
	if (renameat(dir, name, in->dirfd, in->name) < 0) {
		int e = errno;
		/* Leave it as installed, so the stale sweep still knows it. */
		if (futimens(fd, old) < 0)
			cs_error_every(10, "%s: cannot restore its mtime: %s", name,
				       strerror(errno));
		return -e;
	}
	return 0;
}

enum MHD_Result serve_move(struct MHD_Connection *c, const struct cs_route *rt)
{
	static const struct verdict no_copy = { MHD_HTTP_NOT_FOUND, "no such file\n" };
	static const struct verdict differs = { MHD_HTTP_CONFLICT,
						"this copy is not the registry's version\n" };
	const struct cs_prefix *p = cs_config_namespace(&cs_cfg, rt->ns);
	unsigned char digest[CS_SHA256_LEN];
	char from[CS_PATH_MAX], abs[CS_PATH_MAX];
	const char *why, *name;
	struct cs_install in;
	struct cs_file f;
	struct verdict v;
	struct stat st;
	struct want w;
	uint64_t size;
	int root, dir = -1, fd = -1, rc;

	if (!p)
		return serve_reply(c, MHD_HTTP_NOT_FOUND, "no such namespace\n");
	if (move_source(c, from) < 0 || !cs_path_rel_valid(from, strlen(from)))
		return serve_reply(c, MHD_HTTP_BAD_REQUEST, "missing or bad X-CS-From\n");
	if ((why = parse_want(c, &w)))
		return serve_reply(c, MHD_HTTP_BAD_REQUEST, why);
	v = registry_has(p->name, rt->rel, &w, &f);
	if (v.status)
		return refuse(c, v);

	if ((root = open(p->dir, DIR_FLAGS)) >= 0) {
		dir = open_parent(root, from, false, &name);
		close(root);
	}
	if (dir >= 0)
		fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		v = no_copy;
		goto out;
	}
	rc = cs_sha256_fd(fd, digest, &size);
	if (rc < 0 || size != f.size || memcmp(digest, f.sha256, CS_SHA256_LEN) != 0) {
		v = rc < 0 ? cannot : differs;
		goto out;
	}
	v = install_begin(p, rt->rel, abs, &in);        /* the lock on `to` */
	if (v.status)
		goto out;
	rc = move_into(dir, name, fd, &st, &in, f.mtime_ns);
	cs_store_abort(&in);
	if (rc < 0) {
		if (rc != -EAGAIN)
			cs_error_every(10, "rename %s/%s to %s: %s", p->dir, from, rt->rel,
				       strerror(-rc));
		v = rc == -EAGAIN ? differs : cannot;
		goto out;
	}
	v = record(p->name, rt->rel, &f);
	if (!v.status)
		cs_info("POST /v1/files/%s/%s from %s version %" PRIu64, p->name, rt->rel,
			from, f.version);
out:
	if (fd >= 0)
		close(fd);
	if (dir >= 0)
		close(dir);
	return v.status ? refuse(c, v) : serve_reply(c, MHD_HTTP_OK, "moved\n");
}

/* ---- DELETE ------------------------------------------------------------ */

enum MHD_Result serve_delete(struct MHD_Connection *c)
{
	char body[64];
	int n = cs_stale_sweep();

	if (n < 0)
		return refuse(c, unreachable);
	snprintf(body, sizeof body, "swept %d\n", n);
	return serve_reply(c, MHD_HTTP_OK, body);
}
