/*
 * cs.h - the ClusterStorage core that both sides link: the preloaded library
 * (libcs.so: preload/ + libcs/) and the node agent (cs-replicate: agent/ +
 * tools/ + libcs/).
 *
 * Everything here is small and libc-only: configuration, paths, logging,
 * helpers, the journal's format and its append, the index of names the
 * cluster has (the reader; the agent writes it), and the client of the
 * agent's local socket.  Nothing here talks to the network or the registry;
 * that is the agent's (the headers in agent/).  Functions return 0 or a negative errno
 * and fill out parameters; none exits, aborts or asserts, because this code
 * runs inside other people's processes.
 */
#ifndef CS_H
#define CS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define CS_MAX_PREFIXES 16
#define CS_NAME_MAX 64          /* namespace and node names */
#define CS_PATH_MAX 4096        /* absolute paths, including the NUL */
#define CS_URL_MAX 512
#define CS_SECRET_MAX 256
#define CS_SECRET_MIN 16        /* bytes: shorter ones are refused */
#define CS_SHA256_LEN 32
#define CS_SHA256_HEX (2 * CS_SHA256_LEN + 1)
#define CS_MAX_HOLDERS 32       /* copies of one file the registry tracks */

/* ---- libc (libc.c) -------------------------------------------------- */

/*
 * The libc functions the core calls that libcs.so also wraps.  The core
 * calls them through this table, never by name, so it never runs one of the
 * library's own wrappers: in cs-replicate and the tests they are libc's; in
 * libcs.so the preload layer points them at the definitions after its own
 * (preload/real.c) before the core runs.
 */
#define CS_LIBC(X)                                                             \
	X(int, open, (const char *path, int flags, ...))                       \
	X(int, openat, (int dirfd, const char *path, int flags, ...))          \
	X(int, close, (int fd))                                                \
	X(int, renameat, (int da, const char *a, int db, const char *b))       \
	X(int, unlinkat, (int dirfd, const char *path, int flags))

struct cs_libc {
#define CS_LIBC_FIELD(ret, name, params) ret (*name) params;
	CS_LIBC(CS_LIBC_FIELD)
#undef CS_LIBC_FIELD
};
extern struct cs_libc cs_libc;

/* ---- logging (log.c) ------------------------------------------------ */

enum cs_log_level { CS_LOG_ERROR = 0, CS_LOG_WARN, CS_LOG_INFO, CS_LOG_DEBUG };

extern int cs_log_level;

/*
 * Where lines go: stderr (the default; nginx and Apache send their workers'
 * to their error log, systemd to its journal) or, for the agent, file
 * (appended; NULL keeps stderr).  stamp prefixes every line with the UTC
 * time.  0 or -errno.
 */
int cs_log_setup(const char *file, bool stamp, const char *who);
/* The agent's log file again (after logrotate moved it). */
void cs_log_reopen(void);
void cs_log_write(enum cs_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* One level check, then formatting into a stack buffer and one write(2). */
#define cs_log(level, ...)                                                    \
	do {                                                                  \
		if ((level) <= cs_log_level)                                  \
			cs_log_write((level), __VA_ARGS__);                   \
	} while (0)
#define cs_error(...) cs_log(CS_LOG_ERROR, __VA_ARGS__)
#define cs_warn(...) cs_log(CS_LOG_WARN, __VA_ARGS__)
#define cs_info(...) cs_log(CS_LOG_INFO, __VA_ARGS__)
#define cs_debug(...) cs_log(CS_LOG_DEBUG, __VA_ARGS__)
/* For errors a request can hit repeatedly (a peer down, a full disk): at
 * most one line per call site every `seconds`. */
#define cs_error_every(seconds, ...)                                          \
	do {                                                                  \
		static int64_t last_;                                         \
		int64_t now_ = cs_clock_ms() / 1000;                          \
		if (!last_ || now_ - last_ >= (seconds)) {                    \
			last_ = now_;                                         \
			cs_error(__VA_ARGS__);                                \
		}                                                             \
	} while (0)

/* ---- helpers (util.c) ------------------------------------------------ */

int64_t cs_clock_ms(void);      /* monotonic */
int64_t cs_clock_us(void);
/* Lowercase hex of p[0, n) into out[2n + 1]. */
void cs_hex(const void *p, size_t n, char *out);
/* The value of one hex digit, or -1. */
int cs_hexval(int c);
/* Exactly 2n hex digits then a NUL into out[n]: 0 or -EINVAL. */
int cs_unhex(const char *hex, void *out, size_t n);
/* Decimal digits only, whole string, no overflow (strtoull alone would take
 * spaces, signs and "0x"). */
bool cs_parse_u64(const char *s, uint64_t *v);
bool cs_parse_i64(const char *s, int64_t *v);
/* A number of seconds in [lo, hi], decimals allowed, as milliseconds. */
bool cs_parse_seconds(const char *s, double lo, double hi, int *ms);
/* FNV-1a, continuing from h (start with CS_FNV_SEED). */
#define CS_FNV_SEED 1469598103934665603ULL
uint64_t cs_fnv1a(uint64_t h, const void *p, size_t n);
/* A 64-bit finaliser: spreads every input bit over the result. */
uint64_t cs_mix64(uint64_t x);
/* The path the descriptor fd refers to (/proc/self/fd): its length, or
 * -errno; -ENOENT when it is not a path (a socket, a deleted file). */
int cs_fd_path(int fd, char *out, size_t outsz);
/* Write all of p[0, n) to fd, again after EINTR or a short write: 0, or
 * -errno (-EIO when write(2) makes no progress). */
int cs_write_all(int fd, const void *p, size_t n);
/* A file's mtime in nanoseconds, as the registry records it. */
static inline int64_t cs_mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* ---- escaping (escape.c) ---------------------------------------------- */

/* Percent-encode rel for a URL path or a journal line (keeps '/' and the
 * unreserved characters); returns the length or -ENOSPC. */
int cs_url_encode_path(const char *rel, char *out, size_t outsz);
/* Strict in-place percent-decoding: -EINVAL for a malformed escape, an
 * encoded '/', or any NUL or control byte, encoded or not; else the new
 * length. */
int cs_url_decode(char *s);
/* The same, from s[0, len) into out: -ENOSPC when it does not fit.  An
 * encoded path may be three times the length of the path. */
int cs_url_decode_to(const char *s, size_t len, char *out, size_t outsz);
/* Percent-decode s[0, len) into out (a user name, a password): -EINVAL for
 * a malformed escape or an encoded NUL, -ENOSPC; else the length. */
int cs_pct_decode(const char *s, size_t len, char *out, size_t outsz);

/* ---- configuration (config.c: the only file that calls getenv) -------- */

struct cs_prefix {
	char name[CS_NAME_MAX];         /* cluster-wide namespace */
	char dir[CS_PATH_MAX];          /* this node's directory, normalised */
	size_t dirlen;
	char real[CS_PATH_MAX];         /* dir with symlinks resolved, or "" */
	size_t reallen;
};

/* CS_MYSQL names one server or several (a Galera cluster's nodes): each
 * connection goes to the first of them that works. */
#define CS_MYSQL_HOSTS_MAX 8

struct cs_mysql_host {
	char name[256];                 /* a host name or an IP address (IPv6 bare) */
	unsigned port;                  /* 0: the client library's default */
};

struct cs_mysql_dsn {
	char user[128];
	char pass[256];
	struct cs_mysql_host host[CS_MYSQL_HOSTS_MAX];
	int nhosts;                     /* at least 1 */
	char database[128];
	char socket[CS_PATH_MAX];
};

/*
 * Who reads the configuration.  A host process (the preloaded library)
 * needs CS_PREFIXES and CS_SPOOL and reads nothing secret; cs-replicate's
 * commands need the registry too; `cs-replicate serve`, the agent, also
 * its listening address and URL.
 */
enum cs_role { CS_ROLE_HOST, CS_ROLE_TOOL, CS_ROLE_AGENT };

struct cs_config {
	struct cs_prefix prefix[CS_MAX_PREFIXES];
	int nprefix;
	char spool[CS_PATH_MAX];
	enum cs_log_level log_level;
	int miss_timeout_ms;            /* CS_MISS_TIMEOUT: a miss waits this long */
	/* host: the environment holds what a host must not have */
	char needless[64];              /* e.g. "CS_SECRET, CS_MYSQL", or "" */
	/* the rest: cs-replicate only */
	char node[CS_NAME_MAX];
	char node_url[CS_URL_MAX];
	char listen[CS_URL_MAX];
	char memcached[CS_URL_MAX];     /* "" when not configured */
	struct cs_mysql_dsn mysql;
	unsigned char secret[CS_SECRET_MAX];
	size_t secret_len;
	/* CS_SECRET_OLD: still accepted while the secret is being changed,
	 * never signed with; secret_old_len 0 when unset */
	unsigned char secret_old[CS_SECRET_MAX];
	size_t secret_old_len;
	int replicas;
	int db_connections;             /* CS_DB_CONNECTIONS */
	int admin_timeout_ms;           /* CS_ADMIN_TIMEOUT: a command's statements */
	int fetch_timeout_ms;           /* CS_FETCH_TIMEOUT: a miss's budget ... */
	uint64_t fetch_min_rate;        /* ... + size / CS_FETCH_MIN_RATE (bytes/s) */
	char zone[CS_NAME_MAX];
	/* membership and upkeep (issue: nodes come, go and fail) */
	int down_after_ms;              /* CS_DOWN_AFTER: no heartbeat this long: down */
	uint64_t repair_rate;           /* CS_REPAIR_RATE: the agent's repair, bytes/s; 0: no bound */
	bool repair_off;                /* CS_REPAIR_RATE=off: only passes an operator asks for */
	uint64_t verify_rate;           /* CS_VERIFY_RATE: background verify, bytes/s; 0: no bound */
	bool verify_off;                /* CS_VERIFY_RATE=off: no background verify */
	int verify_every;               /* CS_VERIFY_EVERY: seconds from one pass's start to the next */
	int verify_settle;              /* CS_VERIFY_SETTLE: seconds a file changed here is left alone */
	uint64_t cache_max;             /* CS_CACHE_MAX in bytes; 0: no quota */
	int cache_max_pct;              /* ... or in % of the filesystem (1-100); 0: bytes */
	int status_exact_ms;            /* CS_STATUS_EXACT_MS: status counts exactly this long at most */
	/* TLS between nodes: this node's certificate and key (needed when
	 * CS_NODE_URL is https://), and the CA bundle peers' certificates are
	 * verified against ("" for the system's) */
	char tls_cert[CS_PATH_MAX], tls_key[CS_PATH_MAX], tls_ca[CS_PATH_MAX];
	char log_file[CS_PATH_MAX];     /* CS_LOG_FILE, "" for stderr */
};

/* Where cs_config_parse reads variables from (getenv in production). */
typedef const char *(*cs_getenv_fn)(const char *name);

/*
 * Parse a host's CS_* variables into *cfg (the namespaces, CS_SPOOL, CS_LOG,
 * CS_MISS_TIMEOUT; for CS_ROLE_HOST also what it should not hold).  Returns
 * 0, -ENOENT when CS_PREFIXES is unset (ClusterStorage is simply not
 * wanted), or -EINVAL with one sentence in err naming the variable at
 * fault.  cs-replicate's roles read the rest with cs_settings_parse
 * (agent/settings.h).
 */
int cs_config_parse(struct cs_config *cfg, cs_getenv_fn get, enum cs_role role,
		    char *err, size_t errlen);
/* cs_config_parse with the process environment; sets the log level. */
int cs_config_load(struct cs_config *cfg, enum cs_role role, char *err,
		   size_t errlen);
/* What both parsers share: getenv; one sentence into err, -EINVAL; a name
 * fit for URLs, memcached keys and SQL; a bounded copy (false: too long). */
const char *cs_config_env(const char *name);
int cs_config_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool cs_config_name_ok(const char *s, size_t len);
bool cs_config_copy(char *dst, size_t dstsz, const char *src, size_t len);
const struct cs_prefix *cs_config_namespace(const struct cs_config *cfg,
					    const char *name);

/* The process-wide configuration the core works with. */
extern struct cs_config cs_cfg;

/* ---- paths (path.c) ------------------------------------------------- */

/*
 * Make path absolute against base (a directory, itself absolute) and remove
 * ".", ".." and repeated slashes lexically.  Writes a NUL-terminated path to
 * out; returns its length, -ENAMETOOLONG when that path does not fit outsz,
 * or -EINVAL.
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
/* The prefix holding path (relative to dirfd, AT_FDCWD or a directory
 * descriptor) in cs_cfg, with abs[CS_PATH_MAX] filled and *rel pointing
 * into it; NULL when none does. */
const struct cs_prefix *cs_path_locate(int dirfd, const char *path, char *abs,
				       const char **rel);
/* The same for a directory, which may also be the prefix's directory
 * itself: then *rel is "". */
const struct cs_prefix *cs_path_locate_dir(int dirfd, const char *path, char *abs,
					   const char **rel);
/*
 * True when rel is a safe relative path inside a namespace: not empty, no
 * leading '/', no empty, "." or ".." segment, no NUL or control byte, each
 * segment at most NAME_MAX and the whole at most CS_PATH_MAX - 1.
 */
bool cs_path_rel_valid(const char *rel, size_t len);

/* ---- journal (journal.c) ----------------------------------------------- */

/* What happened to a path under a prefix. */
enum cs_op {
	CS_OP_WRITE = 'W',      /* written and closed: publish its content */
	CS_OP_DELETE = 'D',     /* unlinked */
	CS_OP_RENAME = 'R',     /* rel renamed to rel2, both in namespace ns */
	CS_OP_HELD = 'H',       /* the agent installed a copy: record it */
	CS_OP_ACK = 'K',        /* the entry at off is done */
};

/* What the agent installed (CS_OP_HELD): the version and the copy as it
 * was made, so the registry knows it and the stale sweep can find it. */
struct cs_held {
	uint64_t file_id, version, size;
	int64_t mtime_ns;
};

struct cs_entry {
	char op;
	uint64_t off;           /* where the entry starts in its journal; for
				 * CS_OP_ACK, the entry acknowledged */
	struct cs_held held;    /* CS_OP_HELD */
	char ns[CS_NAME_MAX];
	char rel[CS_PATH_MAX];
	char rel2[CS_PATH_MAX];
};

/*
 * Append an entry to this process's journal in CS_SPOOL with one write(2):
 * once it returns 0 the entry survives the process (kill -9 included).
 * Async-signal-safe: no allocation, no lock.  -ENOSYS when CS_SPOOL is unset,
 * -EINVAL for a name the cluster refuses.
 */
int cs_journal_append(enum cs_op op, const char *ns, const char *rel,
		      const char *rel2);
/* The same for a CS_OP_HELD entry. */
int cs_journal_append_held(const char *ns, const char *rel, const struct cs_held *h);
/* Format an entry line with its '\n' (h: CS_OP_HELD's numbers); returns its
 * length, -ENOSPC, or -EINVAL for a name the cluster refuses. */
int cs_journal_format(enum cs_op op, const char *ns, const char *rel,
		      const char *rel2, const struct cs_held *h, char *out,
		      size_t outsz);
/* Parse one line (without its '\n'); 0 or -EINVAL.  e->off is left alone
 * except for CS_OP_ACK. */
int cs_journal_parse(const char *line, size_t len, struct cs_entry *e);
/* This process's journal's name in CS_SPOOL, "" before the first entry; from
 * any thread, as long as nothing closes the journal (the agent never does). */
const char *cs_journal_name(void);
/* Open the spool directory now (chroot is coming: it could not be found). */
int cs_journal_prepare(void);
/* In a forked child: the journal is the parent's; start a new one. */
void cs_journal_forget(void);
/* The host is closing fd: if it is our journal, start a new one next time
 * (daemons close every descriptor they did not open). */
void cs_journal_closing(int fd);
/* The same for every descriptor from first to last (close_range). */
void cs_journal_closing_range(unsigned first, unsigned last);

/* ---- the index of names the cluster has (index.c) -------------------- */

/*
 * CS_SPOOL/index, written by the agent and mapped read-only by every host
 * process: a blocked Bloom filter over "<namespace>\0<path>" of every live
 * file the cluster has and every directory above one.  "Absent" is certain,
 * so a path no node ever had is answered ENOENT inside the host with no
 * round trip; "maybe" is confirmed by the agent.  The agent only ever sets
 * bits in place (adds are seen at once), and replaces the file whole to
 * forget deleted names or grow, marking the old one superseded.
 */
#define CS_INDEX_MAGIC "CSINDEX1"
#define CS_INDEX_HEAD 4096              /* header page; blocks follow */
#define CS_INDEX_BLOCK_WORDS 8          /* a block: 512 bits, one cache line */
#define CS_INDEX_K 7                    /* bits per name, 9 bits of hash each */

struct cs_index_head {
	char magic[8];
	uint32_t k;
	uint32_t superseded;            /* a newer file took this one's place */
	uint64_t nblocks;               /* a power of two */
	uint64_t names;                 /* names added (the agent's count) */
	uint64_t built_ms;              /* CLOCK_REALTIME when built */
};

/* Whether h, the start of a file of size bytes (at least CS_INDEX_HEAD), is
 * an index of this format whose blocks are all in the file. */
bool cs_index_head_ok(const struct cs_index_head *h, uint64_t size);
/* The two hashes of a name: h[0] picks the block, h[1] the bits in it. */
void cs_index_hash(const char *ns, const char *rel, uint64_t h[2]);
/* Where h's block starts among nblocks (in words), and which bit of it is
 * h's i-th (0 <= i < CS_INDEX_K): the reader and the agent's writer share
 * these, so they cannot disagree.  Inline: a lookup runs on every stat of
 * a path the cluster does not have. */
static inline uint64_t cs_index_block(uint64_t nblocks, const uint64_t h[2])
{
	return (h[0] & (nblocks - 1)) * CS_INDEX_BLOCK_WORDS;
}
static inline unsigned cs_index_bit(const uint64_t h[2], int i)
{
	return (unsigned)(h[1] >> (9 * i)) & 511;
}
/* Whether the bits of h are all set in the blocks. */
bool cs_index_test(const uint64_t *blocks, uint64_t nblocks, const uint64_t h[2]);

enum cs_index_answer {
	CS_INDEX_ABSENT,        /* no node has ever had it (or it is deleted) */
	CS_INDEX_MAYBE,         /* ask the agent */
	CS_INDEX_NONE,          /* no index: the agent never ran here */
};
/* Look (ns, rel) up in the published index, mapping it (again) as needed. */
enum cs_index_answer cs_index_lookup(const char *ns, const char *rel);
/* Map the index now (chroot is coming). */
void cs_index_prepare(void);
/* In a forked child, with no other thread: reset the readers' counts. */
void cs_index_atfork_child(void);

/* ---- the agent's local socket (client.c) ------------------------------ */

#define CS_SOCKET_NAME "agent.sock"
#define CS_MISS_TIMEOUT_MS 5000         /* default of CS_MISS_TIMEOUT */

/*
 * Ask this node's agent to make <ns>/<rel> present (a file or a directory
 * the cluster has; rel valid by cs_path_rel_valid, so it holds no tab or
 * newline), waiting at most CS_MISS_TIMEOUT.  0: installed, repeat the
 * call; -ENOENT: the cluster has no such name; -EIO: it has it but cannot
 * deliver it now (registry or holders unreachable, or the deadline passed);
 * -ECONNREFUSED: no agent is running.  Async-signal-safe: system calls,
 * atomics and the stack only.
 */
int cs_client_present(const char *ns, const char *rel);
/*
 * The cluster's live entries of directory <ns>/<rel> ("" for the top), as
 * the agent lists them (the protocol's body, below): 0 with *body malloc'd
 * (NUL-terminated after its *len bytes; the caller frees it); -ECONNREFUSED
 * when no agent is running; -EIO when it cannot say now or the deadline
 * passed.  Not for a signal handler: it allocates.
 */
int cs_client_list(const char *ns, const char *rel, char **body, size_t *len);
#define CS_LIST_MAX (256u << 20)        /* the largest listing taken */
/* Connect now (chroot is coming: the socket could not be found after). */
void cs_client_prepare(void);
/* In a forked child: our connections are the parent's. */
void cs_client_forget(void);

/*
 * The protocol, a line from the host and an answer per request:
 *   host:  "P\t<ns>\t<rel>\n"   make it present (rel as it is)
 *   agent: "I\n" installed, "A\n" absent, "U\n" unavailable
 *   host:  "L\t<ns>\t<rel>\n"   list directory rel ("" for the top)
 *   agent: "L" and the body's length in CS_LIST_HEAD - 2 decimal digits,
 *          "\n", then the body: for each of the cluster's live entries
 *          there, 'f' (a file) or 'd' (a directory), its name and a NUL;
 *          or "U\n" when the registry cannot say now
 */
#define CS_ASK_PRESENT 'P'
#define CS_ASK_LIST 'L'
#define CS_REPLY_INSTALLED 'I'
#define CS_REPLY_ABSENT 'A'
#define CS_REPLY_UNAVAILABLE 'U'
#define CS_LIST_HEAD 18                 /* "L", 16 digits, "\n" */

#endif
