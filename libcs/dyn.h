/*
 * dyn.h - libcrypto, the MariaDB client, libmemcached and libcurl, loaded the
 * first time they are needed instead of with the library.
 *
 * Linked in, they and the ~35 libraries they pull in (GnuTLS, Kerberos,
 * LDAP, libssh2, ...) were mapped and relocated at every start of every
 * preloaded program: ~15 million instructions and ~6 ms before main(), paid
 * by each `cp` or shell command whether it touches a prefix or not (and
 * libcrypto alone ~3 million and ~0.8 ms more).  Now a process loads them
 * at its first miss or first write (dlopen, RTLD_LOCAL: their symbols never
 * interpose on the host's own); a local hit needs none of them.
 *
 * Include this after nothing else of theirs: it includes their headers and
 * then points each function name used here at its loaded address, so the
 * code reads as plain calls.  A cs_dyn_* loader must have returned 0 in the
 * calling thread (it is a pthread_once) before any of them is called.
 */
#ifndef CS_DYN_H
#define CS_DYN_H

#include <curl/curl.h>
#include <libmemcached/memcached.h>
#include <mysql.h>
#include <errmsg.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define CS_DYN_CRYPTO(X)                                                       \
	X(OPENSSL_init_crypto) X(EVP_MD_fetch) X(EVP_sha256)                   \
	X(EVP_MD_CTX_new) X(EVP_MD_CTX_free) X(EVP_DigestInit_ex)              \
	X(EVP_DigestUpdate) X(EVP_DigestFinal_ex) X(HMAC) X(CRYPTO_memcmp)

#define CS_DYN_MARIADB(X)                                                      \
	X(mysql_server_init) X(mysql_init) X(mysql_options)                    \
	X(mysql_real_connect) X(mysql_close) X(mysql_real_query)              \
	X(mysql_send_query) X(mysql_read_query_result) X(mysql_store_result)  \
	X(mysql_free_result) X(mysql_fetch_row) X(mysql_fetch_lengths)        \
	X(mysql_field_count) X(mysql_next_result) X(mysql_insert_id)          \
	X(mysql_errno) X(mysql_error) X(mysql_real_escape_string)

#define CS_DYN_MEMCACHED(X)                                                    \
	X(memcached_create) X(memcached_free) X(memcached_behavior_set)        \
	X(memcached_servers_parse) X(memcached_server_push)                    \
	X(memcached_server_list_free) X(memcached_server_add_unix_socket)      \
	X(memcached_get) X(memcached_set) X(memcached_add)                     \
	X(memcached_strerror)

#define CS_DYN_CURL(X)                                                         \
	X(curl_global_init) X(curl_easy_init) X(curl_easy_cleanup)             \
	X(curl_easy_reset) X(curl_easy_setopt) X(curl_easy_getinfo)            \
	X(curl_easy_perform) X(curl_easy_strerror) X(curl_slist_append)        \
	X(curl_slist_free_all) X(curl_multi_init) X(curl_multi_cleanup)        \
	X(curl_multi_setopt) X(curl_multi_add_handle)                          \
	X(curl_multi_remove_handle) X(curl_multi_perform) X(curl_multi_poll)   \
	X(curl_multi_info_read)

#define CS_DYN_DECLARE(name) extern __typeof__(&name) cs_dyn_##name;
CS_DYN_CRYPTO(CS_DYN_DECLARE)
CS_DYN_MARIADB(CS_DYN_DECLARE)
CS_DYN_MEMCACHED(CS_DYN_DECLARE)
CS_DYN_CURL(CS_DYN_DECLARE)

/* Load one library (once per process); 0, or -ENOENT with one line on
 * stderr the first time it cannot be had (the caller then acts as if the
 * registry or the peer were unreachable). */
int cs_dyn_crypto(void);        /* also turns OpenSSL's exit-time cleanup off */
int cs_dyn_mariadb(void);
int cs_dyn_memcached(void);
int cs_dyn_curl(void);

#ifndef CS_DYN_IMPL
/* libcurl's type-checking wrappers are macros over these three. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt
#undef mysql_library_init
#define OPENSSL_init_crypto (*cs_dyn_OPENSSL_init_crypto)
#define EVP_MD_fetch (*cs_dyn_EVP_MD_fetch)
#define EVP_sha256 (*cs_dyn_EVP_sha256)
#define EVP_MD_CTX_new (*cs_dyn_EVP_MD_CTX_new)
#define EVP_MD_CTX_free (*cs_dyn_EVP_MD_CTX_free)
#define EVP_DigestInit_ex (*cs_dyn_EVP_DigestInit_ex)
#define EVP_DigestUpdate (*cs_dyn_EVP_DigestUpdate)
#define EVP_DigestFinal_ex (*cs_dyn_EVP_DigestFinal_ex)
#define HMAC (*cs_dyn_HMAC)
#define CRYPTO_memcmp (*cs_dyn_CRYPTO_memcmp)
#define mysql_library_init (*cs_dyn_mysql_server_init)
#define mysql_server_init (*cs_dyn_mysql_server_init)
#define mysql_init (*cs_dyn_mysql_init)
#define mysql_options (*cs_dyn_mysql_options)
#define mysql_real_connect (*cs_dyn_mysql_real_connect)
#define mysql_close (*cs_dyn_mysql_close)
#define mysql_real_query (*cs_dyn_mysql_real_query)
#define mysql_send_query (*cs_dyn_mysql_send_query)
#define mysql_read_query_result (*cs_dyn_mysql_read_query_result)
#define mysql_store_result (*cs_dyn_mysql_store_result)
#define mysql_free_result (*cs_dyn_mysql_free_result)
#define mysql_fetch_row (*cs_dyn_mysql_fetch_row)
#define mysql_fetch_lengths (*cs_dyn_mysql_fetch_lengths)
#define mysql_field_count (*cs_dyn_mysql_field_count)
#define mysql_next_result (*cs_dyn_mysql_next_result)
#define mysql_insert_id (*cs_dyn_mysql_insert_id)
#define mysql_errno (*cs_dyn_mysql_errno)
#define mysql_error (*cs_dyn_mysql_error)
#define mysql_real_escape_string (*cs_dyn_mysql_real_escape_string)
#define memcached_create (*cs_dyn_memcached_create)
#define memcached_free (*cs_dyn_memcached_free)
#define memcached_behavior_set (*cs_dyn_memcached_behavior_set)
#define memcached_servers_parse (*cs_dyn_memcached_servers_parse)
#define memcached_server_push (*cs_dyn_memcached_server_push)
#define memcached_server_list_free (*cs_dyn_memcached_server_list_free)
#define memcached_server_add_unix_socket (*cs_dyn_memcached_server_add_unix_socket)
#define memcached_get (*cs_dyn_memcached_get)
#define memcached_set (*cs_dyn_memcached_set)
#define memcached_add (*cs_dyn_memcached_add)
#define memcached_strerror (*cs_dyn_memcached_strerror)
#define curl_global_init (*cs_dyn_curl_global_init)
#define curl_easy_init (*cs_dyn_curl_easy_init)
#define curl_easy_cleanup (*cs_dyn_curl_easy_cleanup)
#define curl_easy_reset (*cs_dyn_curl_easy_reset)
#define curl_easy_setopt (*cs_dyn_curl_easy_setopt)
#define curl_easy_getinfo (*cs_dyn_curl_easy_getinfo)
#define curl_easy_perform (*cs_dyn_curl_easy_perform)
#define curl_easy_strerror (*cs_dyn_curl_easy_strerror)
#define curl_slist_append (*cs_dyn_curl_slist_append)
#define curl_slist_free_all (*cs_dyn_curl_slist_free_all)
#define curl_multi_init (*cs_dyn_curl_multi_init)
#define curl_multi_cleanup (*cs_dyn_curl_multi_cleanup)
#define curl_multi_setopt (*cs_dyn_curl_multi_setopt)
#define curl_multi_add_handle (*cs_dyn_curl_multi_add_handle)
#define curl_multi_remove_handle (*cs_dyn_curl_multi_remove_handle)
#define curl_multi_perform (*cs_dyn_curl_multi_perform)
#define curl_multi_poll (*cs_dyn_curl_multi_poll)
#define curl_multi_info_read (*cs_dyn_curl_multi_info_read)
#endif

#endif
