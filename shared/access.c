/* access.c — tokens, the client address and the rate limit (see access.h). */
#include "access.h"
#include "jg.h"
#include "keys.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int jg_token_listed(const char *list, const unsigned char digest[32])
{
    int found = 0;
    size_t len;
    for (const char *p = list, *token; (token = jg_list_next(&p, &len)) != NULL;) {
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)token, len, md);
        found |= CRYPTO_memcmp(md, digest, SHA256_DIGEST_LENGTH) == 0;   /* no early exit */
        OPENSSL_cleanse(md, sizeof md);
    }
    return found;
}

int jg_bearer_token(const char *authorization, char *out, size_t cap)
{
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return 0;
    const char *t = authorization + 7;
    while (*t == ' ')
        t++;
    size_t len = strlen(t);
    while (len && t[len - 1] == ' ')
        len--;
    if (len == 0 || len >= cap)
        return 0;
    memcpy(out, t, len);
    out[len] = '\0';
    return 1;
}

/* addr (len bytes) as an IPv4 or IPv6 address, normalized into out. Returns 1 if it is one. */
static int normalize_addr(const char *addr, size_t len, char *out, size_t cap)
{
    char tmp[64];
    unsigned char bin[16];
    while (len && (*addr == ' ' || *addr == '\t'))
        addr++, len--;
    while (len && (addr[len - 1] == ' ' || addr[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= sizeof tmp)
        return 0;
    memcpy(tmp, addr, len);
    tmp[len] = '\0';
    if (inet_pton(AF_INET, tmp, bin) == 1)
        return inet_ntop(AF_INET, bin, out, (socklen_t)cap) != NULL;
    if (inet_pton(AF_INET6, tmp, bin) == 1)
        return inet_ntop(AF_INET6, bin, out, (socklen_t)cap) != NULL;
    return 0;
}

void jg_client_addr(const char *remote, const char *xff, int trust_proxy, char *out, size_t cap)
{
    if (trust_proxy && xff && *xff) {
        const char *last = strrchr(xff, ',');
        last = last ? last + 1 : xff;
        if (normalize_addr(last, strlen(last), out, cap))
            return;
    }
    if (remote && normalize_addr(remote, strlen(remote), out, cap))
        return;
    snprintf(out, cap, "unknown");
}

/* 401 with the challenge of RFC 6750; invalid: a token was sent but is not accepted. */
static int unauthorized(jg_req_t *req, int invalid, const char *what)
{
    jg_resp_header(req, "WWW-Authenticate: Bearer realm=\"jobgate\"%s\r\n",
                   invalid ? ", error=\"invalid_token\"" : "");
    return jg_fail(req, 401, "unauthorized", invalid ? "the token is not valid for %s"
                                                     : "%s needs a bearer token", what);
}

static void hex32(const unsigned char md[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[64] = '\0';
}

/* The route's class against the token sent: write routes need a write token when
 * JOBGATE_API_TOKENS is set; read routes a read or a write token when JOBGATE_READ_TOKENS is. */
static int check_token(jg_req_t *req)
{
    const jg_config_t *cfg = req->cfg;
    const jg_route_t *route = req->route;
    int need_write = route->access == JG_ACCESS_WRITE && cfg->api_tokens[0];
    int need_read = route->access == JG_ACCESS_READ && cfg->read_tokens[0];
    if (!need_write && !need_read)
        return JG_OK;
    const char *what = need_write ? "a write" : "a read";
    char token[JG_TOKEN_MAX];
    int sent = jg_bearer_token(jg_req_param(req, "HTTP_AUTHORIZATION"), token, sizeof token);
    if (!sent && (route->flags & JG_ROUTE_QUERY_TOKEN) &&
        jg_query_get(req->query, "access_token", token, sizeof token) == 1 && token[0])
        sent = 1;   /* RFC 6750 2.3, for EventSource, which cannot send headers */
    if (!sent)
        return unauthorized(req, jg_req_param(req, "HTTP_AUTHORIZATION") != NULL, what);
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), md);
    OPENSSL_cleanse(token, sizeof token);
    int is_write = cfg->api_tokens[0] && jg_token_listed(cfg->api_tokens, md);
    int ok = is_write || (need_read && jg_token_listed(cfg->read_tokens, md));
    if (ok && is_write)   /* the caller, for Idempotency-Keys: the token's digest, never it */
        hex32(md, req->caller);
    OPENSSL_cleanse(md, sizeof md);
    return ok ? JG_OK : unauthorized(req, 1, what);
}

/* JOBGATE_RATE_LIMIT=N/S: one round trip to redis/ratelimit.lua on the client's key. */
static int rate_limit(jg_req_t *req)
{
    const jg_config_t *cfg = req->cfg;
    char addr[64], key[JG_KEY_MAX];
    jg_client_addr(jg_req_param(req, "REMOTE_ADDR"), jg_req_param(req, "HTTP_X_FORWARDED_FOR"),
                   cfg->trust_proxy, addr, sizeof addr);
    jg_key_ratelimit(cfg, addr, key);
    jg_args_t a;
    jg_args_init(&a);
    jg_args_str(&a, key);
    jg_args_printf(&a, "%ld", cfg->rate_limit_n);
    jg_args_printf(&a, "%ld", cfg->rate_limit_s * 1000);
    redisReply *rep = jg_redis_script(req->redis, "ratelimit", 1, a.argc, a.argv, a.lens);
    jg_args_free(&a);
    if (rep == NULL)
        return jg_fail_unavailable(req);
    int rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_INTEGER) {
        rc = jg_fail_redis(req, rep);   /* 500: never let a request through uncounted */
    } else if (rep->element[0]->integer == 1) {
        rc = JG_OK;
    } else {
        long long ms = rep->element[1]->integer;
        long long s = ms <= 0 ? 1 : (ms + 999) / 1000;
        jg_resp_header(req, "Retry-After: %lld\r\n", s);
        rc = jg_fail(req, 429, "rate_limited", "at most %ld submits per %ld s; retry in %lld s",
                     cfg->rate_limit_n, cfg->rate_limit_s, s);
    }
    freeReplyObject(rep);
    return rc;
}

int jg_access_check(jg_req_t *req)
{
    if (check_token(req) != JG_OK)
        return JG_ERR;
    if ((req->route->flags & JG_ROUTE_RATE_LIMITED) && req->cfg->rate_limit_n)
        return rate_limit(req);
    return JG_OK;
}
