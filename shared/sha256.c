/* sha256.c — SHA-256 with the algorithm fetched once and a context per thread (sha256.h). */
#include "sha256.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>

static EVP_MD *md_sha256;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static __thread EVP_MD_CTX *thread_ctx;   /* kept for the thread's life (a few hundred bytes) */

static void fetch(void) { md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL); }

void jg_sha256(const void *data, size_t len, unsigned char md[JG_SHA256_LEN])
{
    pthread_once(&md_once, fetch);
    if (thread_ctx == NULL)
        thread_ctx = EVP_MD_CTX_new();
    if (md_sha256 == NULL || thread_ctx == NULL ||
        !EVP_DigestInit_ex(thread_ctx, md_sha256, NULL) ||
        !EVP_DigestUpdate(thread_ctx, data, len) ||
        !EVP_DigestFinal_ex(thread_ctx, md, NULL))
        abort();
}
