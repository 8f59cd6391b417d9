/*
 * fuzz_progress.c - a repair pass's progress as another agent reports it
 * (GET /v1/repair, read by `cs-replicate repair`): cs_repair_progress_parse.
 *
 * Properties: any text is read without fault, to 0 or -EINVAL; a value
 * parsed is a value the text held; what was parsed, formatted and parsed
 * again is the same (the format is the parser's own).
 */
#include <errno.h>
#include <stdbool.h>

#include "fuzz.h"
#include "repair.h"

static bool same(const struct cs_repair_progress *a, const struct cs_repair_progress *b)
{
	return a->asked == b->asked && a->done == b->done && a->running == b->running &&
	       a->rate == b->rate && a->files == b->files && a->copies == b->copies &&
	       a->promoted == b->promoted && a->bytes == b->bytes && a->failed == b->failed &&
	       a->pending == b->pending;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct cs_repair_progress p, q;
	char out[1024];
	size_t len;
	char *text = fuzz_rest(&in, &len);
	int rc = cs_repair_progress_parse(text, &p);

	FUZZ_CHECK(rc == 0 || rc == -EINVAL, "'%s': rc %d", fuzz_show(text, len), rc);
	if (rc == 0) {
		int n = cs_repair_progress_format(&p, out, sizeof out);
		FUZZ_CHECK(n > 0, "format of a parsed progress: %d", n);
		FUZZ_CHECK(cs_repair_progress_parse(out, &q) == 0 && same(&p, &q),
			   "'%s' parsed, formatted as '%s', parsed again differs",
			   fuzz_show(text, len), out);
	}
	free(text);
	return 0;
}
