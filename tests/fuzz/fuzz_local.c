/*
 * fuzz_local.c - the agent's local protocol (cs.h): a host process sends
 * "P\t<ns>\t<rel>\n" over CS_SPOOL/agent.sock (libcs/client.c) and the
 * agent parses each line with cs_local_parse (agent/local.c).  Whoever may
 * open the socket may send any bytes.
 *
 * Properties:
 *   - a stream cut into lines as the agent cuts it: each line is a request
 *     to fetch (0), a request answered absent (-ENOENT) or no request
 *     (-EINVAL, which closes the connection), and no request unless it
 *     starts "P\t" and has a second tab; a request to fetch names a
 *     namespace the configuration accepts and a valid path, and "P\t",
 *     that namespace, "\t" and that path are the whole line: no byte
 *     ignored;
 *   - what the client sends for any namespace and path is parsed back to
 *     exactly them when both are valid, and answered absent otherwise.
 *
 * Input: the stream; the same bytes also give the client's ns '\n' rel.
 */
#include <errno.h>
#include <stdbool.h>

#include "cs.h"
#include "fuzz.h"
#include "local.h"

static void line(const char *p, size_t len)
{
	char *l = malloc(len + 1);
	const char *ns = NULL, *rel = NULL;

	if (!l)
		abort();
	memcpy(l, p, len);
	l[len] = '\0';
	int rc = cs_local_parse(l, len, &ns, &rel);
	FUZZ_CHECK((rc > 0 && rc == p[0]) || rc == -ENOENT || rc == -EINVAL, "'%s': rc %d",
		   fuzz_show(p, len), rc);
	bool request = len >= 2 && (p[0] == CS_ASK_PRESENT || p[0] == CS_ASK_LIST) &&
		       p[1] == '\t' && memchr(p + 2, '\t', len - 2);
	FUZZ_CHECK(request == (rc != -EINVAL), "'%s': rc %d", fuzz_show(p, len), rc);
	if (rc > 0) {
		size_t nl = strlen(ns), rl = strlen(rel);
		/* Only a listing may name the top, "". */
		FUZZ_CHECK(cs_config_name_ok(ns, nl) &&
			   (cs_path_rel_valid(rel, rl) || (rc == CS_ASK_LIST && rl == 0)),
			   "'%s': ns '%s' rel '%s'", fuzz_show(p, len), fuzz_show(ns, nl),
			   fuzz_show(rel, rl));
		FUZZ_CHECK(2 + nl + 1 + rl == len && !memcmp(p + 2, ns, nl) && p[2 + nl] == '\t' &&
			   !memcmp(p + 3 + nl, rel, rl),
			   "'%s' fetched as ns '%s' rel '%s': bytes ignored", fuzz_show(p, len),
			   fuzz_show(ns, nl), fuzz_show(rel, rl));
	}
	free(l);
}

/* The request as client.c's ask() sends it (without its '\n'). */
static void client(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	size_t nl = 0, rl = 0;
	char *ns = fuzz_field(&in, '\n', &nl), *rel = fuzz_rest(&in, &rl);

	if (!ns || memchr(ns, '\t', nl) || memchr(ns, '\0', nl)) {
		free(ns);
		free(rel);
		return;
	}
	char *req = malloc(2 + nl + 1 + rl + 1);
	const char *gns = NULL, *grel = NULL;
	if (!req)
		abort();
	memcpy(req, "P\t", 2);
	memcpy(req + 2, ns, nl);
	req[2 + nl] = '\t';
	memcpy(req + 3 + nl, rel, rl);
	req[3 + nl + rl] = '\0';
	int rc = cs_local_parse(req, 3 + nl + rl, &gns, &grel);
	if (cs_config_name_ok(ns, nl) && cs_path_rel_valid(rel, rl))
		FUZZ_CHECK(rc == CS_ASK_PRESENT && !strcmp(gns, ns) && !strcmp(grel, rel),
			   "ns '%s' rel '%s' parsed as %d '%s' '%s'", fuzz_show(ns, nl),
			   fuzz_show(rel, rl), rc, rc < 0 ? "" : gns,
			   rc < 0 ? "" : fuzz_show(grel, strlen(grel)));
	else
		FUZZ_CHECK(rc == -ENOENT, "ns '%s' rel '%s' (refused names): %d", fuzz_show(ns, nl),
			   fuzz_show(rel, rl), rc);
	free(req);
	free(ns);
	free(rel);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;

	/* Complete lines, as the agent's connection thread takes them. */
	for (const char *nl; p < end && (nl = memchr(p, '\n', end - p)); p = nl + 1)
		line(p, nl - p);
	client(data, size);
	return 0;
}
