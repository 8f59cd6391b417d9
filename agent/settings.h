/*
 * settings.h - cs-replicate's configuration (settings.c): a host's
 * variables (libcs/config.c), then the node's, the registry's and the
 * secret.
 */
#ifndef CS_SETTINGS_H
#define CS_SETTINGS_H

#include "cs.h"

/*
 * Parse the CS_* variables the role needs into *cfg.  Returns 0, -ENOENT
 * when CS_PREFIXES is unset, or -EINVAL with one sentence in err naming the
 * variable at fault.
 */
int cs_settings_parse(struct cs_config *cfg, cs_getenv_fn get, enum cs_role role,
		      char *err, size_t errlen);
/* cs_settings_parse with the process environment; sets the log level. */
int cs_settings_load(struct cs_config *cfg, enum cs_role role, char *err, size_t errlen);
/* A size in bytes: digits, then optionally K, M, G or T (powers of 1024)
 * and "B" or "iB".  False when malformed or too large. */
bool cs_parse_size(const char *s, uint64_t *v);
int cs_mysql_dsn_parse(const char *url, struct cs_mysql_dsn *dsn, char *err,
		       size_t errlen);

#endif
