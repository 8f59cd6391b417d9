/*
 * peer_client.c - calls the agent's peer client (agent/peer.c) once from
 * the command line, so test_peer_writes.py can check push, move and delete
 * against a real cs-replicate serve.
 *
 *   peer_client push   URL NS REL FILE VERSION SIZE MTIME_NS SHA256HEX
 *   peer_client move   URL NS FROM TO VERSION SIZE MTIME_NS SHA256HEX
 *   peer_client delete URL NS REL
 *
 * Configuration (CS_SECRET, CS_NODE, ...) comes from the environment.
 * Prints the function's return value (0 or a negative errno) and exits 0,
 * or exits 2 on a usage or configuration error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer.h"
#include "settings.h"

static int version_of(char **a, struct cs_file *f)
{
	memset(f, 0, sizeof *f);
	f->version = strtoull(a[0], NULL, 10);
	f->size = strtoull(a[1], NULL, 10);
	f->mtime_ns = strtoll(a[2], NULL, 10);
	return cs_unhex(a[3], f->sha256, CS_SHA256_LEN);
}

int main(int argc, char **argv)
{
	struct cs_file f;
	char err[512];
	int rc;

	if (cs_settings_load(&cs_cfg, CS_ROLE_TOOL, err, sizeof err) < 0) {
		fprintf(stderr, "peer_client: %s\n", err);
		return 2;
	}
	cs_peer_global_init();
	if (argc == 10 && strcmp(argv[1], "push") == 0 && version_of(argv + 6, &f) == 0) {
		int fd = open(argv[5], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			perror(argv[5]);
			return 2;
		}
		rc = cs_peer_push(argv[2], argv[3], argv[4], fd, &f);
		close(fd);
	} else if (argc == 10 && strcmp(argv[1], "move") == 0 && version_of(argv + 6, &f) == 0) {
		rc = cs_peer_move(argv[2], argv[3], argv[4], argv[5], &f);
	} else if (argc == 5 && strcmp(argv[1], "delete") == 0) {
		rc = cs_peer_delete(argv[2], argv[3], argv[4]);
	} else {
		fprintf(stderr, "usage: see the first comment of peer_client.c\n");
		return 2;
	}
	printf("%d\n", rc);
	return 0;
}
