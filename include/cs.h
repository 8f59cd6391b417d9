/*
 * cs.h - the one public header of libcs, the ClusterStorage core.
 *
 * What tools/, tests/ and preload/ may call.  Everything else in libcs/ is
 * private to it.  Functions return 0 or a negative errno and fill out
 * parameters; none of them exits, aborts or asserts, because libcs runs inside
 * other people's processes.
 */
#ifndef CS_H
#define CS_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#define CS_MAX_PREFIXES 16
#define CS_NAME_MAX 64          /* namespace and node names */
#define CS_PATH_MAX 4096        /* absolute paths, including the NUL */
#define CS_URL_MAX 512
#define CS_SECRET_MAX 256
#define CS_SHA256_LEN 32
#define CS_SHA256_HEX (2 * CS_SHA256_LEN + 1)
#define CS_MAX_HOLDERS 32

/* ---- logging (log.c) ------------------------------------------------ */

enum cs_log_level { CS_LOG_ERROR = 0, CS_LOG_WARN, CS_LOG_INFO, CS_LOG_DEBUG };

extern int cs_log_level;        /* set by cs_config_apply */

void cs_log_write(enum cs_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* One level check, then formatting into a stack buffer and a single write(2). */
#define cs_log(level, ...)                                                    \
	do {                                                                  \
		if ((level) <= cs_log_level)                                  \
			cs_log_write((level), __VA_ARGS__);                   \
	} while (0)
#define cs_error(...) cs_log(CS_LOG_ERROR, __VA_ARGS__)
/* For errors a request can hit repeatedly (a peer down, a full disk): at
 * most one line per call site every `seconds`, so a failing cluster cannot
 * flood the host's log. */
#define cs_error_every(seconds, ...)                                          \
	do {                                                                  \
		static long long last_;                                       \
		long long now_ = cs_log_clock();                              \
		if (now_ - last_ >= (seconds)) {                              \
			last_ = now_;                                         \
			cs_error(__VA_ARGS__);                                \
		}                                                             \
	} while (0)
long long cs_log_clock(void);   /* monotonic seconds */
#define cs_warn(...) cs_log(CS_LOG_WARN, __VA_ARGS__)
#define cs_info(...) cs_log(CS_LOG_INFO, __VA_ARGS__)
#define cs_debug(...) cs_log(CS_LOG_DEBUG, __VA_ARGS__)

/* ---- configuration (config.c: the only file that calls getenv) ------- */

struct cs_prefix {
	char name[CS_NAME_MAX];         /* cluster-wide namespace */
	char dir[CS_PATH_MAX];          /* this node's directory, normalised */
	size_t dirlen;
	char real[CS_PATH_MAX];         /* dir with symlinks resolved, or "" */
	size_t reallen;
};

struct cs_mysql_dsn {
	char user[128];
	char pass[256];
	char host[256];
	unsigned port;
	char database[128];
	char socket[CS_PATH_MAX];
};

struct cs_config {
	struct cs_prefix prefix[CS_MAX_PREFIXES];
	int nprefix;
	char node[CS_NAME_MAX];
	char node_url[CS_URL_MAX];
	char listen[CS_URL_MAX];
	char memcached[CS_URL_MAX];     /* "" when not configured */
	char mysql_url[CS_URL_MAX];
	struct cs_mysql_dsn mysql;
	unsigned char secret[CS_SECRET_MAX];
	size_t secret_len;
	int replicas;
	char spool[CS_PATH_MAX];
	char zone[CS_NAME_MAX];
	enum cs_log_level log_level;
};

/* Where cs_config_parse reads variables from (getenv in production). */
typedef const char *(*cs_getenv_fn)(const char *name);

/*
 * Parse the CS_* variables into *cfg.  Returns 0, -ENOENT when CS_PREFIXES is
 * unset (the library is simply not wanted), or -EINVAL with one human-readable
 * sentence in err naming the variable at fault.  need_server also requires
 * CS_LISTEN and CS_NODE_URL.
 */
int cs_config_parse(struct cs_config *cfg, cs_getenv_fn get, bool need_server,
		    char *err, size_t errlen);
/* cs_config_parse with the process environment. */
int cs_config_load(struct cs_config *cfg, bool need_server, char *err,
		   size_t errlen);
int cs_mysql_dsn_parse(const char *url, struct cs_mysql_dsn *dsn, char *err,
		       size_t errlen);
const struct cs_prefix *cs_config_namespace(const struct cs_config *cfg,
					    const char *name);

/* The process-wide configuration the core works with. */
extern struct cs_config cs_cfg;

/* ---- paths (path.c) ------------------------------------------------- */

/*
 * Make path absolute against base (a directory, itself absolute) and remove
 * ".", ".." and repeated slashes lexically.  Writes a NUL-terminated path to
 * out; returns its length or -ENAMETOOLONG / -EINVAL.
 */
int cs_path_normalize(const char *base, const char *path, char *out,
		      size_t outsz);
/*
 * Which prefix holds the normalised absolute path abs.  Returns the prefix
 * and points *rel at the part below its directory (never starting with '/',
 * never empty), or NULL when abs is outside every prefix or is the prefix
 * directory itself.
 */
const struct cs_prefix *cs_path_match(const struct cs_config *cfg,
				      const char *abs, const char **rel);
/*
 * True when rel is a safe relative path inside a namespace: not empty, no
 * leading '/', no empty, "." or ".." segment, no NUL or control byte, each
 * segment at most NAME_MAX and the whole at most CS_PATH_MAX - 1.
 */
bool cs_path_rel_valid(const char *rel, size_t len);

/* ---- peer protocol routes (route.c) --------------------------------- */

enum cs_route_kind { CS_ROUTE_FILES = 1, CS_ROUTE_STATS, CS_ROUTE_HEALTH };

struct cs_route {
	enum cs_route_kind kind;
	char ns[CS_NAME_MAX];
	const char *rel;        /* CS_ROUTE_FILES: points into the parsed path */
};

/*
 * Strict in-place percent-decoding of a URL path.  Returns the new length,
 * or -EINVAL for a malformed escape, an encoded '/' or any NUL or control
 * byte, encoded or not.
 */
int cs_url_decode(char *s);
/*
 * Parse a decoded path: "/v1/health", "/v1/stats" or
 * "/v1/files/<namespace>/<rel>".  -ENOENT for an unknown route, -EINVAL for
 * a files route whose namespace or path is unsafe (cs_path_rel_valid).
 */
int cs_route_parse(const char *path, struct cs_route *r);

/* ---- signatures (sign.c) ------------------------------------------- */

#define CS_SIGN_WINDOW 300      /* seconds a signed request stays valid */
#define CS_SIGN_HEX CS_SHA256_HEX

/*
 * HMAC-SHA256 over "method\npath\ntime\nbody_sha256hex" ("-" when there is no
 * body), as lowercase hex into out[CS_SIGN_HEX].  path is the decoded path.
 */
void cs_sign(const unsigned char *secret, size_t secret_len,
	     const char *method, const char *path, long long when,
	     const char *body_sha, char out[CS_SIGN_HEX]);
/* 0 when sig is right and |now - when| <= CS_SIGN_WINDOW; -EACCES otherwise. */
int cs_sign_verify(const unsigned char *secret, size_t secret_len,
		   const char *method, const char *path, const char *when,
		   const char *body_sha, const char *sig, long long now);

void cs_sha256_hex(const unsigned char digest[CS_SHA256_LEN],
		   char out[CS_SHA256_HEX]);
int cs_sha256_unhex(const char *hex, unsigned char digest[CS_SHA256_LEN]);
/* Streaming SHA-256 (libcrypto underneath). */
struct cs_sha256 {
	void *ctx;
};
int cs_sha256_init(struct cs_sha256 *h);
void cs_sha256_update(struct cs_sha256 *h, const void *p, size_t n);
void cs_sha256_final(struct cs_sha256 *h, unsigned char d[CS_SHA256_LEN]);
void cs_sha256_free(struct cs_sha256 *h);
/* SHA-256 of a whole open file from offset 0, and its size. */
int cs_sha256_fd(int fd, unsigned char digest[CS_SHA256_LEN], uint64_t *size);

/* A file's mtime in nanoseconds, as the registry records it. */
static inline int64_t cs_mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* ---- registry (registry.c: memcached in front of MySQL) ------------- */

struct cs_node {
	uint32_t id;
	char name[CS_NAME_MAX];
	char url[CS_URL_MAX];
	char zone[CS_NAME_MAX];
	bool up;                /* heartbeat seen recently */
};

struct cs_file {
	uint64_t id;
	uint64_t version;
	uint64_t size;
	int64_t mtime_ns;
	unsigned char sha256[CS_SHA256_LEN];
	bool deleted;
	int nholders;
	uint32_t holder[CS_MAX_HOLDERS];        /* node ids holding version */
};

/* Memcached key of (namespace, path): "cs1:" + hex of its SHA-256. */
#define CS_KEY_MAX 72
void cs_registry_key(const char *ns, const char *rel, char key[CS_KEY_MAX]);
/* Cache record encoding; encode returns the length or -ENOSPC. */
int cs_record_encode(const struct cs_file *f, char *out, size_t outsz);
/* 0 and *f filled, 1 for the "not in the cluster" record, -EINVAL if bad. */
int cs_record_decode(const char *in, size_t len, struct cs_file *f);
int cs_record_encode_absent(char *out, size_t outsz);

/*
 * Look (ns, rel) up: the process's short negative cache, then memcached, then
 * MySQL (filling memcached).  0 with *f, -ENOENT when not in the cluster (or
 * deleted), -EAGAIN when the registry cannot be reached now (the circuit
 * breaker is open or a call failed).
 */
int cs_registry_lookup(const char *ns, const char *rel, struct cs_file *f);
/* This node's id, registering the node by name if needed. */
int cs_registry_self(uint32_t *id);
/* Record that node holds version of file, without waiting for MySQL's
 * reply (read before the connection's next statement). */
int cs_registry_add_holder(const char *ns, const char *rel,
			   const struct cs_file *f, uint32_t node);
/* The nodes holding f, from the node table (cached for 2 s): how many were
 * written to out, or a negative errno when no table could be had. */
int cs_registry_holders(const struct cs_file *f, struct cs_node *out, int max);
/* Register or refresh this node (name, url, zone) and its heartbeat. */
int cs_registry_heartbeat(void);
/*
 * Register a file this node already has (import).  Returns 0 when it was
 * added or already matched, -EEXIST when the registry holds other content.
 */
int cs_registry_import(const char *ns, const char *rel, uint64_t size,
		       int64_t mtime_ns, const unsigned char sha[CS_SHA256_LEN]);
/* Status listing: per node, how many current files it holds. */
struct cs_node_status {
	struct cs_node node;
	double heartbeat_age;           /* seconds, -1 if never */
	uint64_t files;
};
int cs_registry_status(struct cs_node_status *st, int *n, uint64_t *files);
/* ---- registry: writes (a new version, a tombstone, where to push) --- */

/* MySQL's record of (ns, rel), bypassing every cache: 0 with *f (which may
 * be a tombstone, f->deleted), -ENOENT when never registered, -EAGAIN. */
int cs_registry_lookup_db(const char *ns, const char *rel, struct cs_file *f);
/*
 * Register the content this node has at (ns, rel) as the file's newest
 * version, held by this node, in one transaction (versions strictly increase
 * per path; the same bytes again make no new version).  Copies of older
 * versions on other nodes become stale.  *f gets the committed record with
 * its holders.  0, -EAGAIN (registry down: retry later) or another -errno.
 */
int cs_registry_publish(const char *ns, const char *rel, uint64_t size,
			int64_t mtime_ns, const unsigned char sha[CS_SHA256_LEN],
			struct cs_file *f);
/* One file of a batch: what this node has at (ns, rel); f gets the record. */
struct cs_publish {
	const char *ns, *rel;
	uint64_t size;
	int64_t mtime_ns;
	unsigned char sha256[CS_SHA256_LEN];
	struct cs_file f;
};
/* cs_registry_publish of n files in one transaction and two round trips
 * whatever n: every one is registered, or none.  The paths must differ. */
int cs_registry_publish_many(struct cs_publish *v, int n);
/* Write a tombstone version.  *prev gets the record it replaced, whose
 * holders still have copies to remove.  -ENOENT when nothing to delete. */
int cs_registry_unpublish(const char *ns, const char *rel, struct cs_file *prev);
/* Nodes to push a new version of f to: up, not this node, not holding it,
 * another CS_ZONE first, then the fewest files.  Returns how many. */
int cs_registry_targets(const struct cs_file *f, struct cs_node *out, int max);
/* A push to node succeeded: count it until the counts are next read, so a
 * burst of writes spreads instead of all going to the emptiest node. */
void cs_registry_note_copy(uint32_t node);
/* A copy on this node whose version was superseded (or deleted). */
struct cs_stale {
	uint64_t file_id, version, size;
	int64_t mtime_ns;               /* the copy as it was installed */
	char ns[CS_NAME_MAX];
	char rel[CS_PATH_MAX];
};
int cs_registry_stale(struct cs_stale *out, int max);
/* This node no longer holds the stale copy (file_id, version). */
int cs_registry_drop_copy(uint64_t file_id, uint64_t version);

/* Drop cached connections; called in a forked child, never frees. */
void cs_registry_forget(void);
/* The calling thread has a descriptor table of its own (unshare): give it
 * its own MySQL and memcached connections. */
int cs_registry_own_connections(void);
void cs_registry_shutdown(void);

/* ---- peers (peer.c: libcurl) ---------------------------------------- */

/*
 * GET /v1/files/<ns>/<rel> from the node at base_url into fd (positioned at
 * 0, empty), verifying size and SHA-256.  0 or a negative errno: -ENOENT when
 * the peer lacks it, -EIO for a transfer or verification failure.
 */
int cs_peer_fetch(const char *base_url, const char *ns, const char *rel,
		  int fd, const struct cs_file *want);
/*
 * PUT the file open at fd (read from offset 0) to the node at base_url as
 * version f->version of (ns, rel); the peer verifies size and SHA-256 against
 * f and the registry, installs it atomically and records itself as holder.
 * 0 when it holds it now, -ESTALE when the registry has moved past f (the
 * peer refused with 409), -EIO otherwise.
 */
int cs_peer_push(const char *base_url, const char *ns, const char *rel, int fd,
		 const struct cs_file *f);
/* One push of a batch; rc gets cs_peer_push's result. */
struct cs_push {
	const char *url, *ns, *rel;
	int fd;
	const struct cs_file *f;
	int rc;
};
/* cs_peer_push of every job, several at once on reused connections.  When
 * stop is given and becomes non-zero, transfers still running are dropped
 * within 0.1 s (their jobs fail with -EIO). */
void cs_peer_push_many(struct cs_push *jobs, int n, const int *stop);
/*
 * Ask the node at base_url to rename its copy of `from` to `to` (a rename
 * on the writer's node), which it does only when its copy has exactly the
 * content of version f of `to`.  0 when done, -ENOENT when it has no such
 * copy (push the file instead), -EIO otherwise.
 */
int cs_peer_move(const char *base_url, const char *ns, const char *from,
		 const char *to, const struct cs_file *f);
/* Ask the node at base_url to remove its copy of a deleted (ns, rel) now
 * rather than at its next sweep.  0 or -EIO. */
int cs_peer_delete(const char *base_url, const char *ns, const char *rel);
/* Percent-encode rel for a URL path (keeps '/'); returns length or -ENOSPC. */
int cs_url_encode_path(const char *rel, char *out, size_t outsz);
void cs_peer_forget(void);
/* libcurl's and the MySQL client's global set-up, which are not thread-safe:
 * done by the host's thread before the replicator thread exists. */
void cs_peer_global_init(void);
/* Load libcrypto now (dyn.c), with OpenSSL's exit-time cleanup turned off:
 * the replicator thread may still hash while the host exits.  0 or -ENOENT. */
int cs_dyn_crypto(void);
int cs_dyn_memcached(void);
void cs_registry_global_init(void);

/* ---- local store (store.c: temp file, verify, atomic install) ------- */

struct cs_install {
	int fd;                 /* temporary file, locked, empty */
	int dirfd;              /* its directory */
	char tmpname[64];
	const char *name;       /* final name within dirfd */
};

/*
 * Take the right to install abs (a path under a prefix whose directory is
 * root): creates missing parent directories and a temporary file beside the
 * target, locked so that every other process and thread wanting the same path
 * waits.  Returns 0 with *in ready to fill, 1 when the file appeared while
 * waiting (nothing to do), or a negative errno (-ETIMEDOUT after deadline_ms).
 */
int cs_store_begin(const char *root, const char *abs, struct cs_install *in,
		   int deadline_ms);
/* The same, for replacing the file with a newer version: never returns 1. */
int cs_store_begin_replace(const char *root, const char *abs,
			   struct cs_install *in, int deadline_ms);
/* Give the file its mtime and rename it into place. */
int cs_store_commit(struct cs_install *in, int64_t mtime_ns);
void cs_store_abort(struct cs_install *in);

/* ---- the miss path (fetch.c) ---------------------------------------- */

/*
 * Make abs (normalised, under prefix p, rel below it) present locally if the
 * cluster has it.  0 when it is now there, -ENOENT when the cluster lacks it
 * (or cannot be asked), another negative errno when installing failed.
 */
int cs_fetch(const struct cs_prefix *p, const char *abs, const char *rel);

/* ---- stale copies (stale.c) ------------------------------------------ */

/*
 * Remove this node's copies of files whose registry version moved on (an
 * overwrite, a delete or a rename elsewhere), so that the next open misses
 * and fetches the current version; a hit never asks the network.  A copy is
 * removed only while it is exactly as it was installed (size and mtime): a
 * local write not yet registered is left alone.  Returns how many copies
 * were handled, or a negative errno.  Run by cs-replicate serve.
 */
int cs_stale_sweep(void);

/* ---- journal (journal.c) ----------------------------------------------- */

/* What happened to a path under a prefix. */
enum cs_op {
	CS_OP_WRITE = 'W',      /* written and closed: publish its content */
	CS_OP_DELETE = 'D',     /* unlinked */
	CS_OP_RENAME = 'R',     /* rel renamed to rel2, both in namespace ns */
};

struct cs_entry {
	char op;
	uint64_t off;           /* where the entry starts in its journal */
	char ns[CS_NAME_MAX];
	char rel[CS_PATH_MAX];
	char rel2[CS_PATH_MAX];
};

/*
 * Append an entry to this process's journal in CS_SPOOL with one write(2):
 * once it returns 0 the entry survives the process (kill -9 included).
 * Async-signal-safe: no allocation, no lock.  -ENOSYS when CS_SPOOL is unset.
 */
int cs_journal_append(enum cs_op op, const char *ns, const char *rel,
		      const char *rel2);
/* Parse one journal line (without its '\n'); 0, 1 for an acknowledgement
 * (e->off says of what), -EINVAL. */
int cs_journal_parse(const char *line, size_t len, struct cs_entry *e);
/* Format an entry line with its '\n'; returns its length, -ENOSPC, or
 * -EINVAL for a name the cluster refuses (cs_path_rel_valid). */
int cs_journal_format(enum cs_op op, const char *ns, const char *rel,
		      const char *rel2, char *out, size_t outsz);
/* Forget the inherited journal in a forked child (the parent's). */
void cs_journal_forget(void);
/* The host is closing fd: if it is our journal, start a new one next time
 * (daemons close every descriptor they did not open). */
void cs_journal_closing(int fd);

/* ---- replication (replicator.c) ---------------------------------------- */

/*
 * Make the cluster reflect one journal entry: publish or tombstone it in the
 * registry and bring it to CS_REPLICAS nodes.  0 when done (the entry may be
 * dropped), -EAGAIN to retry later (registry or every target unreachable).
 * Idempotent: replaying a done entry does nothing new.
 */
int cs_replicate_entry(const struct cs_entry *e);
/* Start this process's replicator thread if it is not running (never from
 * the constructor, nor from close()). */
void cs_replicator_start(void);
/* Wake this process's replicator thread; start it first when may_start
 * (never from close(), which may run in a signal handler). */
void cs_replicator_kick(bool may_start);
/* The host is closing (or dup2-ing over) fd: if it is our eventfd, stop
 * writing to that number. */
void cs_replicator_closing(int fd);
/* In a forked child: no replicator thread, no queue (both the parent's). */
void cs_replicator_forget(void);
/* At exit: give pending entries up to deadline_ms; the rest stay journaled. */
void cs_replicator_finish(int deadline_ms);
/*
 * Replicate the journals of processes that have died (cs-replicate serve
 * and drain).  Returns the number of entries still pending in journals
 * (dead ones that failed, and live processes' when count_live), or a
 * negative errno; *live gets the number of live journals.
 */
int cs_replicate_orphans(bool count_live, int *live);

/* ---- process lifetime (core.c) -------------------------------------- */

/* Load configuration for the preloaded library; false when inert. */
bool cs_core_init(void);
/* Reset per-process state in a forked child (pthread_atfork). */
void cs_core_atfork_child(void);

/* Nonzero while this thread is inside libcs: its own libc calls pass. */
extern __thread int cs_inside;

#endif
