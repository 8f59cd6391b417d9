/*
 * path.c - from whatever path a program passed to "which namespace, which
 * file".
 *
 * Normalisation is lexical (".", "..", "//"), like the registry's view of a
 * namespace: a path is a name, not a walk through this node's symlinks.  The
 * wrappers keep handing the caller's original path to libc, so the kernel's
 * own resolution still decides what is opened; this file only decides what
 * to ask the cluster for.  Nothing here touches the filesystem but to learn
 * where a relative path starts (the cwd, an *at() directory descriptor).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "cs.h"

/*
 * Append the segments of p to out, which holds *olen bytes starting "/".
 * A segment that does not fit is counted in *over instead, and so is every
 * one after it, since they lie below it: a later ".." takes one away again.
 * Only the normal form decides whether the path is too long, not the way
 * there ("long/.." under a long cwd).
 */
static void walk(const char *p, char *out, size_t outsz, size_t *olen, size_t *over)
{
	size_t n = *olen;

	while (*p) {
		const char *seg = p;
		size_t len;

		while (*p && *p != '/')
			p++;
		len = p - seg;
		while (*p == '/')
			p++;
		if (len == 0 || (len == 1 && seg[0] == '.'))
			continue;
		if (len == 2 && seg[0] == '.' && seg[1] == '.') {
			if (*over) {
				(*over)--;
				continue;
			}
			while (n > 1 && out[n - 1] != '/')
				n--;
			if (n > 1)
				n--;
			continue;
		}
		if (*over || n + (n > 1) + len + 1 > outsz) {
			(*over)++;
			continue;
		}
		if (n > 1)
			out[n++] = '/';
		memcpy(out + n, seg, len);
		n += len;
	}
	*olen = n;
}

int cs_path_normalize(const char *base, const char *path, char *out,
		      size_t outsz)
{
	size_t n = 1, over = 0;

	if (!path || outsz < 2)
		return -EINVAL;
	if (path[0] == '/' && !strstr(path, "//") && !strstr(path, "/.")) {
		/* Already clean (the usual case): no segment to remove. */
		size_t len = strlen(path);
		if (len > 1 && path[len - 1] == '/')
			len--;
		if (len + 1 > outsz)
			return -ENAMETOOLONG;
		memcpy(out, path, len);
		out[len] = '\0';
		return (int)len;
	}
	out[0] = '/';
	if (path[0] != '/') {
		if (!base || base[0] != '/')
			return -EINVAL;
		walk(base, out, outsz, &n, &over);
	}
	walk(path, out, outsz, &n, &over);
	if (over)
		return -ENAMETOOLONG;
	out[n] = '\0';
	return (int)n;
}

static const char *below(const char *abs, const char *dir, size_t dirlen)
{
	if (dirlen == 0 || strncmp(abs, dir, dirlen) != 0 || abs[dirlen] != '/' ||
	    abs[dirlen + 1] == '\0')
		return NULL;
	return abs + dirlen + 1;
}

const struct cs_prefix *cs_path_match(const struct cs_config *cfg,
				      const char *abs, const char **rel)
{
	for (int i = 0; i < cfg->nprefix; i++) {
		const struct cs_prefix *p = &cfg->prefix[i];
		const char *r = below(abs, p->dir, p->dirlen);

		if (!r)
			r = below(abs, p->real, p->reallen);
		if (r) {
			*rel = r;
			return p;
		}
	}
	return NULL;
}

/* Where a relative path starts: the cwd or an *at() directory descriptor. */
static int base_dir(int dirfd, char *buf, size_t size)
{
	if (dirfd == AT_FDCWD)
		return getcwd(buf, size) ? 0 : -errno;
	return cs_fd_path(dirfd, buf, size) < 0 ? -ENOENT : 0;
}

static const struct cs_prefix *locate(int dirfd, const char *path, char *abs,
				      const char **rel, bool top)
{
	char base[CS_PATH_MAX];
	const struct cs_prefix *p;

	if (!path || !path[0])
		return NULL;
	if (path[0] != '/' && base_dir(dirfd, base, sizeof base) < 0)
		return NULL;
	if (cs_path_normalize(base, path, abs, CS_PATH_MAX) < 0)
		return NULL;
	if ((p = cs_path_match(&cs_cfg, abs, rel)) || !top)
		return p;
	for (int i = 0; i < cs_cfg.nprefix; i++) {
		p = &cs_cfg.prefix[i];
		if (strcmp(abs, p->dir) == 0 || strcmp(abs, p->real) == 0) {
			*rel = abs + strlen(abs);
			return p;
		}
	}
	return NULL;
}

const struct cs_prefix *cs_path_locate(int dirfd, const char *path, char *abs,
				       const char **rel)
{
	return locate(dirfd, path, abs, rel, false);
}

const struct cs_prefix *cs_path_locate_dir(int dirfd, const char *path, char *abs,
					   const char **rel)
{
	return locate(dirfd, path, abs, rel, true);
}

bool cs_path_rel_valid(const char *rel, size_t len)
{
	size_t seg = 0;

	if (len == 0 || len >= CS_PATH_MAX || rel[0] == '/')
		return false;
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)rel[i] : '/';

		if (c == '/') {
			const char *s = rel + i - seg;
			if (seg == 0 || seg > NAME_MAX ||
			    (seg == 1 && s[0] == '.') ||
			    (seg == 2 && s[0] == '.' && s[1] == '.'))
				return false;
			seg = 0;
			continue;
		}
		if (c < 0x20 || c == 0x7f)
			return false;
		seg++;
	}
	return true;
}
