/*
 * dyn.c - load libcrypto, the MariaDB client, libmemcached and libcurl on first use
 * (see dyn.h for why).  Each is opened by its soname with RTLD_LOCAL, so a
 * host that links its own copy shares it and none of their symbols enters
 * the host's global scope; every function used is looked up at once, so a
 * library that lacks one is refused whole rather than failing later.
 */
#define CS_DYN_IMPL
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>

#include "cs.h"
#include "dyn.h"

#define CS_DYN_DEFINE(name) __typeof__(&name) cs_dyn_##name;
CS_DYN_CRYPTO(CS_DYN_DEFINE)
CS_DYN_MARIADB(CS_DYN_DEFINE)
CS_DYN_MEMCACHED(CS_DYN_DEFINE)
CS_DYN_CURL(CS_DYN_DEFINE)

/* Sonames of the Debian 12 packages this is built against. */
#define SONAME_CRYPTO "libcrypto.so.3"
#define SONAME_MARIADB "libmariadb.so.3"
#define SONAME_MEMCACHED "libmemcached.so.11"
#define SONAME_CURL "libcurl.so.4"

struct lib {
	pthread_once_t once;
	int rc;
};

/* Open soname and look up each of names[] into ptrs[]; 0 or -ENOENT. */
static int load(const char *soname, const char *const *names, void **ptrs, int n)
{
	void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		cs_error("cannot load %s (%s): working as if the servers it reaches were down",
			 soname, dlerror());
		return -ENOENT;
	}
	for (int i = 0; i < n; i++) {
		if (!(ptrs[i] = dlsym(h, names[i]))) {
			cs_error("%s has no %s: working as if the servers it reaches were down",
				 soname, names[i]);
			return -ENOENT;
		}
	}
	return 0;
}

#define NAME(name) #name,
#define ADDR(name) (void **)&cs_dyn_##name,
#define LOADER(fn, list, soname, then)                                         \
	static struct lib lib_##fn = { PTHREAD_ONCE_INIT, 0 };                \
	static void once_##fn(void)                                            \
	{                                                                      \
		static const char *const names[] = { list(NAME) };             \
		void **ptrs[] = { list(ADDR) };                                \
		void *got[sizeof names / sizeof *names];                       \
		int n = sizeof names / sizeof *names;                          \
                                                                               \
		lib_##fn.rc = load(soname, names, got, n);                     \
		for (int i = 0; lib_##fn.rc == 0 && i < n; i++)                \
			*ptrs[i] = got[i];                                     \
		if (lib_##fn.rc == 0)                                          \
			then;                                                  \
	}                                                                      \
	int cs_dyn_##fn(void)                                                  \
	{                                                                      \
		pthread_once(&lib_##fn.once, once_##fn);                       \
		return lib_##fn.rc;                                            \
	}

/* OpenSSL would free its state in an exit handler of its own while the
 * replicator thread may still hash; set up first by us, it does not. */
LOADER(crypto, CS_DYN_CRYPTO, SONAME_CRYPTO,
       cs_dyn_OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL))
LOADER(mariadb, CS_DYN_MARIADB, SONAME_MARIADB, (void)0)
LOADER(memcached, CS_DYN_MEMCACHED, SONAME_MEMCACHED, (void)0)
LOADER(curl, CS_DYN_CURL, SONAME_CURL, (void)0)
