/* keys.c — name and id rules, id minting, key layout (see keys.h). */
#include "keys.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "sha256.h"

static int is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
static int is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
static int is_b64url(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

int jg_valid_name(const char *s)
{
    if (s == NULL || !is_lower_alnum(s[0]))
        return 0;
    size_t i = 1;
    for (; s[i]; i++)
        if (i >= JG_NAME_MAX || !(is_lower_alnum(s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return 0;
    return 1;
}

int jg_valid_job_id(const char *s)
{
    if (s == NULL || strlen(s) != JG_ID_LEN || s[JG_TAG_LEN] != '.')
        return 0;
    for (int i = 0; i < JG_TAG_LEN; i++)
        if (!is_hex(s[i]))
            return 0;
    for (int i = JG_TAG_LEN + 1; i < JG_ID_LEN; i++)
        if (!is_b64url(s[i]))
            return 0;
    return 1;
}

int jg_valid_hex64(const char *s)
{
    if (s == NULL || strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!is_hex(s[i]))
            return 0;
    return 1;
}

int jg_valid_idempotency_key(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= 128 || (unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7E)
            return 0;
    return 1;
}

/* A request builds several keys of one queue (a submit: eight), and a program mostly serves one
 * or a few queues: each thread keeps the last queue's tag instead of hashing its name again. */
static __thread char last_queue[JG_NAME_MAX + 1], last_tag[JG_TAG_LEN + 1];

void jg_queue_tag(const char *queue, char tag[JG_TAG_LEN + 1])
{
    size_t len = strlen(queue);
    if (len <= JG_NAME_MAX && last_tag[0] && memcmp(queue, last_queue, len + 1) == 0) {
        memcpy(tag, last_tag, JG_TAG_LEN + 1);
        return;
    }
    unsigned char md[JG_SHA256_LEN];
    static const char hex[] = "0123456789abcdef";
    jg_sha256(queue, len, md);
    for (int i = 0; i < JG_TAG_LEN / 2; i++) {
        tag[2 * i] = hex[md[i] >> 4];
        tag[2 * i + 1] = hex[md[i] & 15];
    }
    tag[JG_TAG_LEN] = '\0';
    if (len <= JG_NAME_MAX) {
        memcpy(last_queue, queue, len + 1);
        memcpy(last_tag, tag, JG_TAG_LEN + 1);
    }
}

/* Key text without printf (keys are built several times per request): the n strings of
 * parts, each cut at lens[i] bytes when lens[i] >= 0, joined into out as snprintf would
 * (truncated to JG_KEY_MAX - 1, NUL-terminated); returns the untruncated length. */
static int join(char out[JG_KEY_MAX], int n, const char *const *parts, const int *lens)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        size_t l = lens && lens[i] >= 0 ? strnlen(parts[i], (size_t)lens[i]) : strlen(parts[i]);
        if (len < JG_KEY_MAX - 1)
            memcpy(out + len, parts[i], len + l < JG_KEY_MAX - 1 ? l : JG_KEY_MAX - 1 - len);
        len += l;
    }
    out[len < JG_KEY_MAX - 1 ? len : JG_KEY_MAX - 1] = '\0';
    return (int)len;
}

/* Random bytes for ids, drawn from RAND_bytes 16 ids at a time: each RAND_bytes call costs a
 * DRBG round (a cipher set-up) and a getpid() for OpenSSL's fork check, more than the id's
 * other work. The pool is per thread; a forked child starts with an empty one (atfork), so
 * parent and child never hand out the same bytes. Bytes are used once, then cleansed. */
#define RAND_POOL 256
static __thread unsigned char rand_pool[RAND_POOL];
static __thread size_t rand_left;
static pthread_once_t rand_once = PTHREAD_ONCE_INIT;

static void rand_forked(void) { rand_left = 0; }
static void rand_init(void) { pthread_atfork(NULL, NULL, rand_forked); }

static int random_bytes(unsigned char *out, size_t n)
{
    pthread_once(&rand_once, rand_init);
    if (rand_left < n) {
        if (RAND_bytes(rand_pool, RAND_POOL) != 1)
            return -1;
        rand_left = RAND_POOL;
    }
    unsigned char *p = rand_pool + RAND_POOL - rand_left;
    memcpy(out, p, n);
    OPENSSL_cleanse(p, n);
    rand_left -= n;
    return 0;
}

int jg_new_job_id(const char *queue, char id[JG_ID_LEN + 1])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char rnd[16];
    if (random_bytes(rnd, sizeof rnd) != 0)
        return -1;
    jg_queue_tag(queue, id);
    id[JG_TAG_LEN] = '.';
    /* 128 bits as 22 base64url digits, 6 bits each (the last one carries 2) */
    unsigned acc = 0;
    int bits = 0, o = JG_TAG_LEN + 1;
    for (size_t i = 0; i < sizeof rnd; i++) {
        acc = (acc << 8) | rnd[i];
        bits += 8;
        while (bits >= 6) {
            id[o++] = b64[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    id[o++] = b64[(acc << (6 - bits)) & 63];
    id[o] = '\0';
    return 0;
}

int jg_key_job(const jg_config_t *cfg, const char *id, char out[JG_KEY_MAX])
{
    const char *p[] = {cfg->key_prefix, ":{", id, "}:job:", id};
    const int l[] = {-1, -1, 8, -1, -1};
    return join(out, 5, p, l);
}

int jg_key_log(const jg_config_t *cfg, const char *id, char out[JG_KEY_MAX])
{
    const char *p[] = {cfg->key_prefix, ":{", id, "}:log:", id};
    const int l[] = {-1, -1, 8, -1, -1};
    return join(out, 5, p, l);
}

int jg_key_queue(const jg_config_t *cfg, const char *queue, const char *what, char out[JG_KEY_MAX])
{
    char tag[JG_TAG_LEN + 1];
    jg_queue_tag(queue, tag);
    return jg_key_queue_tag(cfg, tag, queue, what, out);
}

int jg_key_queue_tag(const jg_config_t *cfg, const char *tag, const char *queue, const char *what,
                     char out[JG_KEY_MAX])
{
    const char *p[] = {cfg->key_prefix, ":{", tag, "}:q:", queue, ":", what};
    const int l[] = {-1, -1, JG_TAG_LEN, -1, -1, -1, -1};
    return join(out, 7, p, l);
}

int jg_key_tagged(const jg_config_t *cfg, const char *tag, char out[JG_KEY_MAX])
{
    const char *p[] = {cfg->key_prefix, ":{", tag, "}:"};
    const int l[] = {-1, -1, JG_TAG_LEN, -1};
    return join(out, 4, p, l);
}

int jg_key_global(const jg_config_t *cfg, const char *what, char out[JG_KEY_MAX])
{
    return snprintf(out, JG_KEY_MAX, "%s:%s", cfg->key_prefix, what);
}

int jg_chan_events(const jg_config_t *cfg, const char *tag, char out[JG_KEY_MAX])
{
    return snprintf(out, JG_KEY_MAX, "%s:{%.*s}:events", cfg->key_prefix, JG_TAG_LEN, tag);
}

int jg_chan_wake(const jg_config_t *cfg, const char *queue, char out[JG_KEY_MAX])
{
    char tag[JG_TAG_LEN + 1];
    jg_queue_tag(queue, tag);
    return snprintf(out, JG_KEY_MAX, "%s:{%s}:wake:%s", cfg->key_prefix, tag, queue);
}

int jg_chan_worker(const jg_config_t *cfg, const char *tag, const char *worker,
                   char out[JG_KEY_MAX])
{
    return snprintf(out, JG_KEY_MAX, "%s:{%.*s}:worker:%s", cfg->key_prefix, JG_TAG_LEN, tag,
                    worker);
}

int jg_key_cache(const jg_config_t *cfg, const char *hex, char out[JG_KEY_MAX])
{
    return snprintf(out, JG_KEY_MAX, "%s:cache:%.64s", cfg->key_prefix, hex);
}

int jg_key_inflight(const jg_config_t *cfg, const char *queue, const char *hex,
                    char out[JG_KEY_MAX])
{
    char what[80] = "inflight:";
    const size_t n = strlen(what), h = strnlen(hex, 64);
    memcpy(what + n, hex, h);
    what[n + h] = '\0';
    return jg_key_queue(cfg, queue, what, out);
}

/* hex SHA-256 of a followed by b (each at most 200 bytes: a caller, a header, an address). */
static void sha256_hex(const char *a, const char *b, char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[JG_SHA256_LEN];
    char in[512];
    int n = snprintf(in, sizeof in, "%.200s%.200s", a, b);
    jg_sha256(in, (size_t)n, md);
    for (int i = 0; i < JG_SHA256_LEN; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

int jg_key_idempotency(const jg_config_t *cfg, const char *caller, const char *key,
                       char out[JG_KEY_MAX])
{
    char hex[65], scope[80] = "";
    if (caller && caller[0])
        snprintf(scope, sizeof scope, "%.64s\n", caller);
    sha256_hex(scope, key, hex);
    return snprintf(out, JG_KEY_MAX, "%s:idem:%s", cfg->key_prefix, hex);
}

int jg_key_ratelimit(const jg_config_t *cfg, const char *addr, char out[JG_KEY_MAX])
{
    char hex[65];
    sha256_hex("", addr, hex);
    return snprintf(out, JG_KEY_MAX, "%s:rl:%s", cfg->key_prefix, hex);
}
