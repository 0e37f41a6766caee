/* sha256.c — SHA-256 with the algorithm fetched once and a context per thread (sha256.h). */
#include "sha256.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>

static EVP_MD *md_sha256;
static pthread_key_t ctx_key;   /* each thread's EVP_MD_CTX, freed when the thread ends */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void free_ctx(void *ctx) { EVP_MD_CTX_free(ctx); }

static void init(void)
{
    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (pthread_key_create(&ctx_key, free_ctx) != 0)
        abort();
}

void jg_sha256(const void *data, size_t len, unsigned char md[JG_SHA256_LEN])
{
    pthread_once(&once, init);
    EVP_MD_CTX *ctx = pthread_getspecific(ctx_key);
    if (ctx == NULL) {
        ctx = EVP_MD_CTX_new();
        if (ctx == NULL || pthread_setspecific(ctx_key, ctx) != 0)
            abort();
    }
    if (md_sha256 == NULL || !EVP_DigestInit_ex(ctx, md_sha256, NULL) ||
        !EVP_DigestUpdate(ctx, data, len) || !EVP_DigestFinal_ex(ctx, md, NULL))
        abort();
}
