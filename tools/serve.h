/* serve.h - the HTTP daemon of cs-replicate (serve.c). */
#ifndef CS_SERVE_H
#define CS_SERVE_H

#include <stdint.h>

/* Run `cs-replicate serve` with cs_cfg loaded; returns the exit status. */
int serve_main(void);
/* Exposed for tests: parse one Range header against a file size. */
int serve_parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len);

#endif
