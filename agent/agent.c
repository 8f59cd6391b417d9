/*
 * agent.c - `cs-replicate serve`: the one process per node that does the
 * cluster's work, so that host processes hold no secret, no connection and
 * no thread of ours.
 *
 * It starts, in order: the removal of what a killed run left half-installed
 * (leftovers.c), its registration in the registry, the index of names
 * hosts map (indexer.c), the local socket hosts ask for misses (local.c),
 * the write path that follows every journal (tail.c), the peer endpoint
 * (http.c), repair (repair.c: every file back to CS_REPLICAS copies), the
 * census (census.c: how well the cluster holds its files, counted on one
 * node for `cs-replicate status`), and small loops here: the heartbeat (every 2 s, with the journal backlog, and
 * a report while MySQL is unreachable of what is held up), the sweep of
 * superseded copies (every 250 ms), the verify of this node's copies
 * (verify.c; a pass at most every CS_VERIFY_EVERY, at CS_VERIFY_RATE, unless
 * that is off) and, with CS_CACHE_MAX, the eviction of pulled copies over
 * it (evict.c, every 3 s).  One agent per spool directory: it
 * holds CS_SPOOL/agent.lock for life.  SIGTERM or SIGINT stops it; SIGHUP
 * reopens CS_LOG_FILE.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "census.h"
#include "db.h"
#include "evict.h"
#include "fetch.h"
#include "http.h"
#include "indexer.h"
#include "leftovers.h"
#include "local.h"
#include "mcache.h"
#include "nodes.h"
#include "peer.h"
#include "repair.h"
#include "stale.h"
#include "tail.h"
#include "verify.h"

#define HEARTBEAT_MS 2000
#define SWEEP_MS 250            /* superseded copies go within this */
#define EVICT_MS 3000           /* a look at the cache quota, one SUM query */
#define OUTAGE_REPORT_MS 60000
#define VERIFY_FIRST_MS 60000   /* the first verify pass, after start */
#define VERIFY_RETRY_MS 300000  /* ... and the next after a failed one, at most */

static volatile int stopping;

void cs_agent_setup(void)
{
	/*
	 * Every miss takes a 256 KiB buffer and gives it back.  With glibc's
	 * defaults the freed memory goes back to the kernel (madvise, or
	 * munmap), and the next miss faults it in again and shoots down TLBs
	 * on the other CPU: about a tenth of the agent's CPU per miss.  Keep
	 * the arenas' memory and take buffers below 4 MiB from them.
	 */
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	cs_db_init(cs_cfg.db_connections);
	cs_mc_init(cs_cfg.db_connections);
	cs_peer_global_init();
}

int cs_agent_lock(void)
{
	char path[CS_PATH_MAX + 16];
	int fd;

	if (mkdir(cs_cfg.spool, 0777) < 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof path, "%s/agent.lock", cs_cfg.spool);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		return e == EWOULDBLOCK ? -EBUSY : -e;
	}
	return 0;       /* fd stays open: the lock is the process's */
}

/* One line when `what` starts failing and one when it works again. */
static void note(bool *failing, int rc, const char *what)
{
	if (rc < 0 && !*failing)
		cs_warn("%s failing (%s); still serving", what, strerror(-rc));
	else if (rc >= 0 && *failing)
		cs_warn("%s working again", what);
	*failing = rc < 0;
}

static void nap(int ms)
{
	for (; ms > 0 && !stopping; ms -= 50)
		usleep((ms < 50 ? ms : 50) * 1000);
}

/* While MySQL is unreachable, say now and then what waits for it. */
static void report_outage(int64_t *last, unsigned long *unavailable_before)
{
	struct cs_fetch_stats fs;
	int64_t since, now = cs_clock_ms();

	cs_fetch_stats(&fs);
	if (!cs_db_down(&since)) {
		*last = 0;
		*unavailable_before = fs.unavailable;
		return;
	}
	if (*last && now - *last < OUTAGE_REPORT_MS)
		return;
	*last = now;
	cs_error("MySQL unreachable for %.0f s: %lu misses answered unavailable (EIO) so far, "
		 "%lu journal entries waiting", (now - since) / 1000.0,
		 fs.unavailable - *unavailable_before, cs_tail_backlog());
}

static void *heartbeat(void *arg)
{
	bool failing = false;
	int64_t reported = 0;
	unsigned long before = 0;

	(void)arg;
	while (!stopping) {
		note(&failing, cs_nodes_heartbeat(cs_tail_backlog()), "heartbeat");
		report_outage(&reported, &before);
		nap(HEARTBEAT_MS);
	}
	return NULL;
}

static void *sweeper(void *arg)
{
	bool failing = false;

	(void)arg;
	while (!stopping) {
		note(&failing, cs_stale_sweep(), "removing superseded copies");
		nap(SWEEP_MS);
	}
	return NULL;
}

/* What a background pass found: logged, as hosts' operators read the log. */
static void verified(void *arg, enum cs_verify_kind kind, const char *ns, const char *rel,
		     const char *why)
{
	(void)arg;
	if (kind == CS_VERIFY_REGISTERED)
		cs_info("verify: %s/%s: %s", ns, rel, why);
	else
		cs_warn("verify: %s/%s: %s", ns, rel, why);
}

/* Passes over this node's copies, slowly: the first a minute after start
 * (at once when passes are to come more often than that), each next
 * CS_VERIFY_EVERY after the one before began. */
static void *verifier(void *arg)
{
	const int64_t every = cs_cfg.verify_every * 1000LL;
	struct cs_verify_opts o = { .rate = cs_cfg.verify_rate, .mend = true, .stop = &stopping,
				    .report = verified, .cursor = "verify" };
	int64_t next = cs_clock_ms() + (every < VERIFY_FIRST_MS ? 0 : VERIFY_FIRST_MS);
	bool failing = false;

	(void)arg;
	while (!stopping) {
		struct cs_verify_result r;
		int64_t wait = next - cs_clock_ms();

		if (wait > 0) {
			nap(wait < 1000 ? (int)wait : 1000);
			continue;
		}
		next = cs_clock_ms() + every;
		int rc = cs_verify_pass(&o, &r);
		note(&failing, rc, "verifying this node's copies");
		if (rc < 0 && every > VERIFY_RETRY_MS)
			next = cs_clock_ms() + VERIFY_RETRY_MS;
		if (rc == 0 && !r.stopped)
			cs_info("verified %llu copies (%.1f MB) in %.1f s: %llu mended, %llu registered, "
				"%llu changed behind the library, %llu not in the registry, %llu errors",
				(unsigned long long)r.copies, r.bytes / 1e6, r.ms / 1000.0,
				(unsigned long long)r.count[CS_VERIFY_MENDED],
				(unsigned long long)r.count[CS_VERIFY_REGISTERED],
				(unsigned long long)r.count[CS_VERIFY_CHANGED],
				(unsigned long long)r.count[CS_VERIFY_UNKNOWN],
				(unsigned long long)r.count[CS_VERIFY_ERROR]);
	}
	return NULL;
}

static void *evictor(void *arg)
{
	bool failing = false;

	(void)arg;
	while (!stopping) {
		note(&failing, cs_evict_pass(&stopping), "keeping to CS_CACHE_MAX");
		nap(EVICT_MS);
	}
	return NULL;
}

/* The evictor, when there is a quota to keep to. */
static int start_evictor(pthread_t *ev)
{
	uint64_t quota;
	int rc;

	if (!cs_evict_wanted())
		return 0;
	if ((rc = cs_evict_quota(&quota)) < 0)
		cs_error("CS_CACHE_MAX=%d%%: cannot measure the filesystem of the namespace "
			 "directories: %s; trying again every %d s", cs_cfg.cache_max_pct,
			 strerror(-rc), EVICT_MS / 1000);
	else
		cs_log_write(CS_LOG_INFO, "pulled copies kept within %" PRIu64 " bytes (CS_CACHE_MAX)",
			     quota);
	if ((rc = pthread_create(ev, NULL, evictor, NULL)) != 0)
		return -rc;
	return 1;
}

int cs_agent_main(void)
{
	pthread_t hb, sw, vf, ev;
	bool evicting;
	sigset_t set;
	int sig, rc;

	if (!cs_cfg.spool[0]) {
		fprintf(stderr, "cs-replicate serve: CS_SPOOL: unset\n");
		return 2;
	}
	if ((rc = cs_agent_lock()) < 0) {
		fprintf(stderr, "cs-replicate serve: %s/agent.lock: %s\n", cs_cfg.spool,
			rc == -EBUSY ? "another agent runs with this CS_SPOOL" : strerror(-rc));
		return 1;
	}
	/* Signals are taken by sigwait below; every thread inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* A lease break's notice (replicate.c takes read leases for an
	 * instant to see whether a file is being written). */
	signal(SIGIO, SIG_IGN);

	cs_agent_setup();
	/* Before anything of this run could be installing: what is left of
	 * installs a killed run was making is nobody's now. */
	cs_leftovers_sweep();
	if (cs_nodes_heartbeat(0) < 0)
		cs_warn("not registered yet (registry unreachable); retrying every %d s",
			HEARTBEAT_MS / 1000);
	if ((rc = cs_indexer_start()) < 0) {
		cs_error("cannot start the index of names: %s", strerror(-rc));
		return 1;
	}
	if ((rc = cs_local_start()) < 0) {
		cs_error("cannot listen on %s/%s: %s", cs_cfg.spool, CS_SOCKET_NAME, strerror(-rc));
		return 1;
	}
	if ((rc = cs_tail_start()) < 0) {
		cs_error("cannot follow the journals in %s: %s", cs_cfg.spool, strerror(-rc));
		return 1;
	}
	/* Last: a peer (or an operator) that gets an answer from /v1/health
	 * finds everything running. */
	if (cs_http_start() < 0)
		return 1;
	if ((rc = cs_repair_start()) < 0) {
		cs_error("cannot start repair: %s", strerror(-rc));
		return 1;
	}
	if ((rc = cs_census_start()) < 0) {
		cs_error("cannot start the census: %s", strerror(-rc));
		return 1;
	}
	if ((rc = pthread_create(&hb, NULL, heartbeat, NULL)) != 0 ||
	    (rc = pthread_create(&sw, NULL, sweeper, NULL)) != 0 ||
	    (!cs_cfg.verify_off && (rc = pthread_create(&vf, NULL, verifier, NULL)) != 0)) {
		cs_error("cannot start the heartbeat, the sweep and the verify: %s", strerror(rc));
		return 1;
	}
	if ((rc = start_evictor(&ev)) < 0) {
		cs_error("cannot start the cache quota's thread: %s", strerror(-rc));
		return 1;
	}
	evicting = rc > 0;
	/* Said whatever CS_LOG is: an operator looks for this line. */
	cs_log_write(CS_LOG_INFO, "node %s serving peers on %s (%s), hosts on %s/%s", cs_cfg.node,
		     cs_cfg.listen, cs_cfg.node_url, cs_cfg.spool, CS_SOCKET_NAME);

	for (;;) {
		sigwait(&set, &sig);
		if (sig != SIGHUP)
			break;
		cs_log_reopen();
	}
	stopping = 1;
	cs_census_stop();
	cs_repair_stop();
	cs_local_stop();
	cs_http_stop();
	cs_tail_stop();
	pthread_join(hb, NULL);
	pthread_join(sw, NULL);
	if (!cs_cfg.verify_off)
		pthread_join(vf, NULL);
	if (evicting)
		pthread_join(ev, NULL);
	cs_indexer_stop();
	cs_db_shutdown();
	cs_mc_shutdown();
	return 0;
}
