/* config.c — the configuration loader (see config.h). */
#include "config.h"
#include "buf.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int jg_parse_long(const char *s, long min, long max, long *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int jg_parse_double(const char *s, double min, double max, double *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end != '\0' || !isfinite(v) || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int copy_checked(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

/* host:port of one cluster seed ([v6]:port), the port required: 0, or -1 if malformed. */
static int parse_seed(const char *s, size_t len, char *host, size_t cap, int *port)
{
    long n;
    const char *colon = NULL;
    for (size_t i = len; i-- > 0;)
        if (s[i] == ':') {
            colon = s + i;
            break;
        }
    if (colon == NULL || colon == s)
        return -1;
    char num[8];
    size_t nlen = len - (size_t)(colon + 1 - s);
    if (nlen == 0 || nlen >= sizeof num)
        return -1;
    memcpy(num, colon + 1, nlen);
    num[nlen] = '\0';
    if (jg_parse_long(num, 1, 65535, &n))
        return -1;
    *port = (int)n;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (h[0] == '[') {                    /* [::1]:7000 */
        if (hlen < 3 || h[hlen - 1] != ']')
            return -1;
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= cap || (h == s && memchr(h, ':', hlen)))
        return -1;   /* a bare v6 address needs its brackets */
    for (size_t i = 0; i < hlen; i++)   /* a host name, IPv4 or IPv6 (with a %zone) */
        if (!((h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z') ||
              (h[i] >= '0' && h[i] <= '9') || strchr("-._:%", h[i])))
            return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    return 0;
}

/* The seeds of redis+cluster://: a comma list of host:port. A cluster has database 0 alone, so
 * the URL takes no /db. The first seed also fills redis_host and redis_port. */
static int parse_cluster_seeds(jg_config_t *cfg, const char *list)
{
    size_t used = 0;
    int nseeds = 0;
    const char *p = list;
    for (;;) {
        size_t len = strcspn(p, ",");
        char host[256];
        int port;
        if (parse_seed(p, len, host, sizeof host, &port))
            return -1;
        int v6 = strchr(host, ':') != NULL;
        int n = snprintf(cfg->redis_seeds + used, sizeof cfg->redis_seeds - used, "%s%s%s%s:%d",
                         nseeds ? "," : "", v6 ? "[" : "", host, v6 ? "]" : "", port);
        if (n < 0 || (size_t)n >= sizeof cfg->redis_seeds - used)
            return -1;
        used += (size_t)n;
        if (nseeds++ == 0) {
            memcpy(cfg->redis_host, host, strlen(host) + 1);
            cfg->redis_port = port;
        }
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    cfg->redis_cluster = 1;
    /* the printable form: the password is never shown */
    int n = snprintf(cfg->redis_url_masked, sizeof cfg->redis_url_masked,
                     "redis+cluster://%s%s%s%s", cfg->redis_user,
                     cfg->redis_password[0] ? ":***" : "",
                     (cfg->redis_user[0] || cfg->redis_password[0]) ? "@" : "", cfg->redis_seeds);
    return n < 0 || (size_t)n >= sizeof cfg->redis_url_masked ? -1 : 0;
}

static int parse_redis_url(jg_config_t *cfg, const char *url)
{
    long n;
    cfg->redis_unix[0] = cfg->redis_user[0] = cfg->redis_password[0] = '\0';
    cfg->redis_seeds[0] = '\0';
    cfg->redis_db = cfg->redis_cluster = 0;
    cfg->redis_port = 6379;
    snprintf(cfg->redis_host, sizeof cfg->redis_host, "127.0.0.1");

    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        const char *q = strchr(path, '?');
        size_t plen = q ? (size_t)(q - path) : strlen(path);
        if (plen == 0 || plen >= sizeof cfg->redis_unix || path[0] != '/')
            return -1;
        memcpy(cfg->redis_unix, path, plen);
        cfg->redis_unix[plen] = '\0';
        if (q) {
            if (strncmp(q, "?db=", 4) != 0 || jg_parse_long(q + 4, 0, 1000000, &n))
                return -1;
            cfg->redis_db = (int)n;
        }
        snprintf(cfg->redis_url_masked, sizeof cfg->redis_url_masked, "%s", url);
        return 0;
    }
    int cluster = strncmp(url, "redis+cluster://", 16) == 0;
    if (!cluster && strncmp(url, "redis://", 8) != 0)
        return -1;
    const char *rest = url + (cluster ? 16 : 8);
    const char *at = strrchr(rest, '@');
    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        if (colon) {
            if (jg_percent_decode(cfg->redis_user, sizeof cfg->redis_user, rest,
                                  (size_t)(colon - rest), 0) < 0 ||
                jg_percent_decode(cfg->redis_password, sizeof cfg->redis_password, colon + 1,
                                  (size_t)(at - colon - 1), 0) < 0)
                return -1;
        } else if (jg_percent_decode(cfg->redis_password, sizeof cfg->redis_password, rest,
                                     (size_t)(at - rest), 0) < 0) {
            return -1;   /* redis://password@host: a bare password, as redis-cli takes it */
        }
        rest = at + 1;
    }
    if (cluster)
        return parse_cluster_seeds(cfg, rest);
    const char *slash = strchr(rest, '/');
    size_t hostport_len = slash ? (size_t)(slash - rest) : strlen(rest);
    char hostport[300];
    if (hostport_len >= sizeof hostport)
        return -1;
    memcpy(hostport, rest, hostport_len);
    hostport[hostport_len] = '\0';
    char *colon = strrchr(hostport, ':');
    const char *rbracket = strchr(hostport, ']');
    if (colon && (rbracket == NULL || rbracket < colon)) {   /* not a colon inside [v6] */
        *colon = '\0';
        if (jg_parse_long(colon + 1, 1, 65535, &n))
            return -1;
        cfg->redis_port = (int)n;
    }
    char *host = hostport;
    if (host[0] == '[') {                 /* [::1] */
        host++;
        char *close = strchr(host, ']');
        if (!close)
            return -1;
        *close = '\0';
    }
    if (host[0] && copy_checked(cfg->redis_host, sizeof cfg->redis_host, host))
        return -1;
    if (slash && slash[1]) {
        if (jg_parse_long(slash + 1, 0, 1000000, &n))
            return -1;
        cfg->redis_db = (int)n;
    }
    /* the printable form: the password is never shown */
    int v6 = strchr(cfg->redis_host, ':') != NULL;
    snprintf(cfg->redis_url_masked, sizeof cfg->redis_url_masked, "redis://%s%s%s%s%s%s:%d/%d",
             cfg->redis_user, cfg->redis_password[0] ? ":***" : "",
             (cfg->redis_user[0] || cfg->redis_password[0]) ? "@" : "", v6 ? "[" : "",
             cfg->redis_host, v6 ? "]" : "", cfg->redis_port, cfg->redis_db);
    return 0;
}

/* The key prefix goes into every Redis key: no braces (they would break the hash tags). */
static int valid_key_prefix(const char *p)
{
    if (*p == '\0')
        return 0;
    for (; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("_.:-", *p)))
            return 0;
    return 1;
}

static int valid_mount_prefix(const char *p)
{
    if (*p == '\0')
        return 1;   /* mounted at the root */
    if (p[0] != '/' || p[strlen(p) - 1] == '/')
        return 0;
    return strpbrk(p, "?#% \t") == NULL;
}

const char *jg_list_next(const char **cursor, size_t *len)
{
    const char *p = *cursor;
    while (*p == ' ' || *p == ',')
        p++;
    if (*p == '\0') {
        *cursor = p;
        return NULL;
    }
    size_t n = strcspn(p, ",");
    *cursor = p + n;
    while (p[n - 1] == ' ')   /* p[0] is neither ' ' nor ',': n >= 1 stays */
        n--;
    *len = n;
    return p;
}

/* A token list: comma-separated tokens of visible ASCII (what an Authorization header can carry),
 * surrounding spaces ignored, at least one token. */
static int valid_token_list(const char *list)
{
    int tokens = 0;
    size_t len;
    for (const char *p = list, *item; (item = jg_list_next(&p, &len)) != NULL; tokens++)
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)item[i] < 0x21 || (unsigned char)item[i] > 0x7e)
                return 0;
    return tokens > 0;
}

#define FAIL(name) do { snprintf(err, errlen, "invalid %s", name); return -1; } while (0)

int jg_config_load_env(jg_config_t *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    const char *v;
    long n;

    v = getenv("REDIS_URL");
    if (parse_redis_url(cfg, v && *v ? v : "redis://127.0.0.1:6379/0"))
        FAIL("REDIS_URL");

    v = getenv("JOBGATE_KEY_PREFIX");
    if (copy_checked(cfg->key_prefix, sizeof cfg->key_prefix, v && *v ? v : "jobgate") ||
        !valid_key_prefix(cfg->key_prefix))
        FAIL("JOBGATE_KEY_PREFIX");

    v = getenv("JOBGATE_PREFIX");
    if (copy_checked(cfg->mount_prefix, sizeof cfg->mount_prefix, v ? v : "/api") ||
        !valid_mount_prefix(cfg->mount_prefix))
        FAIL("JOBGATE_PREFIX");

    struct { const char *name; long *dst; long def, min, max; } longs[] = {
        {"JOBGATE_RETENTION", &cfg->retention, 86400, 1, 31536000},
        {"JOBGATE_LOG_MAX", &cfg->log_max, 10000, 1, 10000000},
        {"JOBGATE_SSE_HEARTBEAT", &cfg->sse_heartbeat, 15, 1, 3600},
        {"JOBGATE_LEASE", &cfg->lease, 30, 2, 86400},
        {"JOBGATE_REDIS_WAIT_REPLICAS", &cfg->redis_wait_replicas, 0, 0, 16},
        {"JOBGATE_REDIS_WAIT_MS", &cfg->redis_wait_ms, 1000, 1, 60000},
    };
    for (size_t i = 0; i < sizeof longs / sizeof longs[0]; i++) {
        v = getenv(longs[i].name);
        *longs[i].dst = longs[i].def;
        if (v && *v && jg_parse_long(v, longs[i].min, longs[i].max, longs[i].dst))
            FAIL(longs[i].name);
    }
    cfg->max_body = 1048576;
    v = getenv("JOBGATE_MAX_BODY");
    if (v && *v) {
        if (jg_parse_long(v, 64, 1L << 30, &n))
            FAIL("JOBGATE_MAX_BODY");
        cfg->max_body = (size_t)n;
    }
    cfg->retry_base = 1.0;
    v = getenv("JOBGATE_RETRY_BASE");
    if (v && *v && jg_parse_double(v, 0.001, 3600, &cfg->retry_base))
        FAIL("JOBGATE_RETRY_BASE");

    struct { const char *name; char *dst; size_t cap; } strs[] = {
        {"JOBGATE_CORS_ORIGINS", cfg->cors_origins, sizeof cfg->cors_origins},
        {"JOBGATE_API_TOKENS", cfg->api_tokens, sizeof cfg->api_tokens},
        {"JOBGATE_READ_TOKENS", cfg->read_tokens, sizeof cfg->read_tokens},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        v = getenv(strs[i].name);
        if (v && copy_checked(strs[i].dst, strs[i].cap, v))
            FAIL(strs[i].name);
    }
    if (cfg->api_tokens[0] && !valid_token_list(cfg->api_tokens))
        FAIL("JOBGATE_API_TOKENS");
    if (cfg->read_tokens[0] && !valid_token_list(cfg->read_tokens))
        FAIL("JOBGATE_READ_TOKENS");

    v = getenv("JOBGATE_RATE_LIMIT");
    if (v && *v) {
        char tmp[64];
        const char *slash = strchr(v, '/');
        if (!slash || (size_t)(slash - v) >= sizeof tmp)
            FAIL("JOBGATE_RATE_LIMIT");
        memcpy(tmp, v, (size_t)(slash - v));
        tmp[slash - v] = '\0';
        if (jg_parse_long(tmp, 1, 100000, &cfg->rate_limit_n) ||
            jg_parse_long(slash + 1, 1, 86400, &cfg->rate_limit_s))
            FAIL("JOBGATE_RATE_LIMIT");
    }
    v = getenv("JOBGATE_TRUST_PROXY");
    cfg->trust_proxy = v && strcmp(v, "1") == 0;

    /* libfcgi's variable: a comma list of the IPv4/IPv6 addresses a TCP socket accepts */
    v = getenv("FCGI_WEB_SERVER_ADDRS");
    if (v && copy_checked(cfg->web_server_addrs, sizeof cfg->web_server_addrs, v))
        FAIL("FCGI_WEB_SERVER_ADDRS");

    cfg->threads = 8;
    cfg->grace = 5;
    cfg->max_streams = 10000;
    cfg->read_timeout = 10;
    return 0;
}

void jg_config_print(const jg_config_t *cfg, FILE *out)
{
    fprintf(out, "REDIS_URL=%s\n", cfg->redis_url_masked);
    fprintf(out, "JOBGATE_KEY_PREFIX=%s\n", cfg->key_prefix);
    fprintf(out, "JOBGATE_PREFIX=%s\n", cfg->mount_prefix);
    fprintf(out, "JOBGATE_MAX_BODY=%zu\n", cfg->max_body);
    fprintf(out, "JOBGATE_RETENTION=%ld\n", cfg->retention);
    fprintf(out, "JOBGATE_LOG_MAX=%ld\n", cfg->log_max);
    fprintf(out, "JOBGATE_SSE_HEARTBEAT=%ld\n", cfg->sse_heartbeat);
    fprintf(out, "JOBGATE_LEASE=%ld\n", cfg->lease);
    fprintf(out, "JOBGATE_RETRY_BASE=%g\n", cfg->retry_base);
    fprintf(out, "JOBGATE_REDIS_WAIT_REPLICAS=%ld\nJOBGATE_REDIS_WAIT_MS=%ld\n",
            cfg->redis_wait_replicas, cfg->redis_wait_ms);
    fprintf(out, "JOBGATE_CORS_ORIGINS=%s\n", cfg->cors_origins);
    fprintf(out, "JOBGATE_API_TOKENS=%s\n", cfg->api_tokens[0] ? "***" : "");
    fprintf(out, "JOBGATE_READ_TOKENS=%s\n", cfg->read_tokens[0] ? "***" : "");
    if (cfg->rate_limit_n)
        fprintf(out, "JOBGATE_RATE_LIMIT=%ld/%ld\n", cfg->rate_limit_n, cfg->rate_limit_s);
    else
        fprintf(out, "JOBGATE_RATE_LIMIT=\n");
    fprintf(out, "JOBGATE_TRUST_PROXY=%d\n", cfg->trust_proxy);
    fprintf(out, "threads=%d\ngrace=%g\nsocket=%s\nmax_streams=%ld\n", cfg->threads, cfg->grace,
            cfg->socket[0] ? cfg->socket : "(fd 0 from spawn-fcgi, or CGI)", cfg->max_streams);
    fprintf(out, "read_timeout=%g\nFCGI_WEB_SERVER_ADDRS=%s\n", cfg->read_timeout,
            cfg->web_server_addrs);
}
