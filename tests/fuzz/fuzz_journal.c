/*
 * fuzz_journal.c - journal lines (libcs/journal.c): what host processes
 * append and the agent reads back (cs_journal_parse, called by tail.c for
 * every complete line).  Any process allowed to write in CS_SPOOL can put
 * any bytes there, so the reader sees them all.
 *
 * Two properties, both on every input:
 *   - a line the reader accepts is one a writer could have made: its
 *     namespace a name the configuration accepts, its paths valid
 *     (cs_path_rel_valid), its numbers digits, no byte of it ignored
 *     (no NUL anywhere); and formatting the entry again reads back as the
 *     same entry;
 *   - any entry made of the input's bytes (W, D, R, H with any numbers,
 *     any path) is refused by cs_journal_format if the cluster refuses its
 *     path, and otherwise written as one line, within exactly the room it
 *     needs and no less, that reads back as itself.
 *
 * Input: the raw line (without its '\n'); the same bytes also make the
 * entry: op, four numbers, then ns '\n' rel '\n' rel2.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>

#include "cs.h"
#include "fuzz.h"

#define LINE_BYTES (2 * 3 * CS_PATH_MAX + CS_NAME_MAX + 128)

static bool same(const struct cs_entry *a, const struct cs_entry *b)
{
	return a->op == b->op && !strcmp(a->ns, b->ns) && !strcmp(a->rel, b->rel) &&
	       !strcmp(a->rel2, b->rel2) &&
	       (a->op != CS_OP_HELD || !memcmp(&a->held, &b->held, sizeof a->held));
}

static void raw(const uint8_t *data, size_t size)
{
	char *line = malloc(size ? size : 1), *again = malloc(LINE_BYTES);
	struct cs_entry *e = malloc(sizeof *e), *f = malloc(sizeof *f);

	if (!line || !again || !e || !f)
		abort();
	memcpy(line, data, size);
	int rc = cs_journal_parse(line, size, e);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL, "'%s': rc %d", fuzz_show(line, size), rc);
	if (rc == 0) {
		FUZZ_CHECK(!memchr(line, '\0', size), "accepted '%s', which holds a NUL",
			   fuzz_show(line, size));
		if (e->op == CS_OP_ACK) {
			for (size_t i = 2; i < size; i++)
				FUZZ_CHECK(line[i] >= '0' && line[i] <= '9', "ack '%s'",
					   fuzz_show(line, size));
		} else {
			FUZZ_CHECK(strchr("WDRH", e->op), "op %c", e->op);
			FUZZ_CHECK(cs_config_name_ok(e->ns, strlen(e->ns)),
				   "'%s': namespace '%s' no configuration accepts",
				   fuzz_show(line, size), fuzz_show(e->ns, strlen(e->ns)));
			FUZZ_CHECK(cs_path_rel_valid(e->rel, strlen(e->rel)) &&
				   (e->op != CS_OP_RENAME ||
				    cs_path_rel_valid(e->rel2, strlen(e->rel2))),
				   "'%s': rel '%s' rel2 '%s'", fuzz_show(line, size),
				   fuzz_show(e->rel, strlen(e->rel)),
				   fuzz_show(e->rel2, strlen(e->rel2)));
			int n = cs_journal_format(e->op, e->ns, e->rel, e->rel2, &e->held, again,
						  LINE_BYTES);
			FUZZ_CHECK(n > 0, "'%s' accepted, formatted again: %d",
				   fuzz_show(line, size), n);
			FUZZ_CHECK(cs_journal_parse(again, n - 1, f) == 0 && same(e, f),
				   "'%s' accepted, formatted again '%s' reads otherwise",
				   fuzz_show(line, size), fuzz_show(again, n - 1));
		}
	}
	free(line);
	free(again);
	free(e);
	free(f);
}

static void made(const uint8_t *data, size_t size)
{
	static const char ops[] = { CS_OP_WRITE, CS_OP_DELETE, CS_OP_RENAME, CS_OP_HELD };
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				       "0123456789._-";
	struct fuzz_in in = { data, size };
	struct cs_held h;
	char op = ops[fuzz_byte(&in) % 4];

	h.file_id = fuzz_u64(&in);
	h.version = fuzz_u64(&in);
	h.size = fuzz_u64(&in);
	h.mtime_ns = (int64_t)fuzz_u64(&in);

	/* A namespace the configuration accepts, from any bytes. */
	size_t nl;
	char *ns = fuzz_field(&in, '\n', &nl);
	if (!ns || !nl || nl >= CS_NAME_MAX) {
		free(ns);
		return;
	}
	for (size_t i = 0; i < nl; i++)
		ns[i] = alphabet[(unsigned char)ns[i] % (sizeof alphabet - 1)];
	size_t rl = 0, r2l = 0;
	char *rel = fuzz_field(&in, '\n', &rl), *rel2 = fuzz_field(&in, '\n', &r2l);
	if (!rel)
		rel = strdup("");
	if (!rel2)
		rel2 = strdup("x");
	if (!rel || !rel2)
		abort();

	char *line = malloc(LINE_BYTES);
	if (!line)
		abort();
	int n = cs_journal_format(op, ns, rel, rel2, &h, line, LINE_BYTES);
	bool valid = cs_path_rel_valid(rel, strlen(rel)) &&
		     (op != CS_OP_RENAME || cs_path_rel_valid(rel2, strlen(rel2)));
	if (!valid) {
		FUZZ_CHECK(n == -EINVAL, "%c '%s' '%s': a path the cluster refuses, got %d", op,
			   fuzz_show(rel, strlen(rel)), fuzz_show(rel2, strlen(rel2)), n);
		goto out;
	}
	FUZZ_CHECK(n > 0 && line[n - 1] == '\n' && !memchr(line, '\n', n - 1) &&
		   !memchr(line, '\0', n),
		   "%c '%s': %d '%s'", op, fuzz_show(rel, strlen(rel)), n,
		   n > 0 ? fuzz_show(line, n) : "");

	char *tight = malloc(n + 1), *short_ = malloc(n);
	if (!tight || !short_)
		abort();
	FUZZ_CHECK(cs_journal_format(op, ns, rel, rel2, &h, tight, n + 1) == n &&
		   !memcmp(tight, line, n), "format into %d bytes differs", n + 1);
	FUZZ_CHECK(cs_journal_format(op, ns, rel, rel2, &h, short_, n) == -ENOSPC,
		   "format into %d bytes: not -ENOSPC", n);
	free(tight);
	free(short_);

	struct cs_entry *e = malloc(sizeof *e);
	if (!e)
		abort();
	int rc = cs_journal_parse(line, n - 1, e);
	FUZZ_CHECK(rc == 0 && e->op == op && !strcmp(e->ns, ns) && !strcmp(e->rel, rel) &&
		   (op != CS_OP_RENAME || !strcmp(e->rel2, rel2)) &&
		   (op != CS_OP_HELD || !memcmp(&e->held, &h, sizeof h)),
		   "'%s' reads back as %d: %c '%s' '%s' '%s'", fuzz_show(line, n - 1), rc,
		   rc ? '?' : e->op, rc ? "" : e->ns, rc ? "" : fuzz_show(e->rel, strlen(e->rel)),
		   rc ? "" : fuzz_show(e->rel2, strlen(e->rel2)));
	free(e);
out:
	free(line);
	free(ns);
	free(rel);
	free(rel2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	raw(data, size);
	made(data, size);
	return 0;
}
