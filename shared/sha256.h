/* sha256.h — SHA-256 for the request path (queue tags, cache keys, Idempotency-Key and
 * client address digests; tokens keep OpenSSL's one-shot SHA256(), which leaves no state).
 * OpenSSL 3's one-shot SHA256() looks the algorithm up in its provider tables on every call
 * (EVP_MD_fetch, locks included): about twice the instructions of the hash itself for the short
 * inputs jobgate hashes. jg_sha256() fetches it once per process and keeps one digest context
 * per thread, freed when the thread ends. */
#ifndef JG_SHA256_H
#define JG_SHA256_H

#include <stddef.h>

#define JG_SHA256_LEN 32

/* md = SHA-256 of the len bytes at data. Thread-safe. Aborts if OpenSSL cannot hash (no
 * SHA-256 provider, no memory): nothing could be keyed then. */
void jg_sha256(const void *data, size_t len, unsigned char md[JG_SHA256_LEN]);

#endif
