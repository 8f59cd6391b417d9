/*
 * mkindex.c - writes CS_SPOOL/index with the names given, as the agent
 * would publish it, for tests that run host programs with no agent.
 *
 *   mkindex SPOOL NAMESPACE REL...
 */
#include <stdio.h>
#include <string.h>

#include "index_file.h"

int main(int argc, char **argv)
{
	struct cs_index_file x;
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: mkindex SPOOL NAMESPACE REL...\n");
		return 2;
	}
	if ((rc = cs_index_file_create(&x, argv[1], (uint64_t)argc)) < 0) {
		fprintf(stderr, "mkindex: %s: %s\n", argv[1], strerror(-rc));
		return 1;
	}
	for (int i = 3; i < argc; i++)
		cs_index_file_add(&x, argv[2], argv[i]);
	if ((rc = cs_index_file_publish(&x, argv[1])) < 0) {
		fprintf(stderr, "mkindex: %s: %s\n", argv[1], strerror(-rc));
		return 1;
	}
	cs_index_file_close(&x, false);
	return 0;
}
