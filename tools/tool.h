/*
 * tool.h - what cs-replicate's subcommands share (tool.c): each
 * subcommand's entry point, and small output helpers.
 */
#ifndef CS_TOOL_H
#define CS_TOOL_H

#include <stdint.h>
#include <stdio.h>

int cs_cmd_status(int argc, char **argv);
int cs_cmd_node(int argc, char **argv);
int cs_cmd_repair(int argc, char **argv);
int cs_cmd_verify(int argc, char **argv);

/* Ask every up agent for a repair pass now at rate bytes/s (0: no bound):
 * how many took it. */
int cs_repair_kick_all(uint64_t rate);

/* s as a JSON string, quotes included.  Paths are bytes: one that is not
 * UTF-8 gets each such byte as the code point of the same number, so the
 * text stays JSON. */
void cs_json_str(FILE *f, const char *s);
/* n bytes for people: "812 B", "1.2 MB" (powers of 1000). */
const char *cs_human_bytes(uint64_t n, char buf[32]);

#endif
