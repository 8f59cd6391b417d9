/*
 * verify.h - checking this node's copies against the registry, mending the
 * bad ones and recording the unrecorded (verify.c): one pass, run by
 * `cs-replicate verify` and, slowly, by the agent in the background.
 */
#ifndef CS_VERIFY_H
#define CS_VERIFY_H

#include "cs.h"
#include "rate.h"

/* What a pass did or found about one file. */
enum cs_verify_kind {
	CS_VERIFY_MENDED,       /* bad or missing here: a good copy fetched from a peer */
	CS_VERIFY_REGISTERED,   /* the registry's bytes, here but not recorded: recorded */
	CS_VERIFY_CHANGED,      /* changed behind the library: left as it is, record dropped */
	CS_VERIFY_UNKNOWN,      /* here, not in the registry or other than its version: left */
	CS_VERIFY_UNMENDED,     /* bad or missing, left as it is (no mending asked) */
	CS_VERIFY_UNRECORDED,   /* the registry's bytes, not recorded (no mending asked) */
	CS_VERIFY_ERROR,        /* could not be checked or mended */
	CS_VERIFY_KINDS
};

struct cs_verify_opts {
	uint64_t rate;                  /* bytes read per second, at most; 0: no bound */
	bool mend;                      /* false: report only, change nothing */
	const volatile int *stop;       /* becomes non-zero: the pass ends within 0.1 s */
	/* Where the pass keeps its place, CS_SPOOL/<cursor>.cursor: a pass
	 * that did not end goes on from there at the next one.  NULL: from
	 * the start, nothing kept. */
	const char *cursor;
	/* Each file reported, with a short phrase saying why, from the
	 * pass's thread; may be NULL. */
	void (*report)(void *arg, enum cs_verify_kind kind, const char *ns, const char *rel,
		       const char *why);
	void *arg;
};

struct cs_verify_result {
	uint64_t copies;                /* this node's recorded copies checked */
	uint64_t bytes;                 /* bytes read for it (and fetched to mend) */
	uint64_t count[CS_VERIFY_KINDS];        /* files reported, by kind */
	uint64_t skipped;               /* changed in the last minute, being written, a
					 * write waiting in a journal: judged next pass */
	int64_t ms;                     /* how long the pass took */
	bool stopped;                   /* ended early by opts.stop */
	/* Gone on from where an earlier pass stopped: its place (the last
	 * file id it had done; 0 with resumed_disk when it was walking the
	 * directories) and the copies it had checked. */
	bool resumed, resumed_disk;
	uint64_t resumed_after, resumed_copies;
};

/*
 * One pass over this node's copies: those the registry records here (each
 * present, of the recorded size and mtime, with the registry's SHA-256),
 * a page at a time in file id order, then the files in each namespace
 * directory it does not record.  0 (also when stopped early), or -EAGAIN
 * when the registry could not be reached; *r says what was done either
 * way.  With opts.cursor, a pass that stopped early or failed is taken up
 * by the next where it stopped.
 */
int cs_verify_pass(const struct cs_verify_opts *o, struct cs_verify_result *r);

#endif
