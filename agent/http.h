/*
 * http.h - the agent's peer endpoint (http.c): signed HTTP under /v1/.
 */
#ifndef CS_HTTP_H
#define CS_HTTP_H

#include <stdint.h>

/* Listen on CS_LISTEN.  0 or -errno (said on stderr). */
int cs_http_start(void);
void cs_http_stop(void);
/* Exposed for tests: parse one Range header against a file size: 1 with
 * [*off, *off + *len), 0 to ignore it, -1 when unsatisfiable (416). */
int cs_http_parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len);

#endif
