/* config.h — the one configuration loader: defaults, then the environment (REDIS_URL,
 * JOBGATE_*), then command-line flags. Every program reads its settings through here, and
 * `--check` prints them through jg_config_print(), which masks every secret. */
#ifndef JG_CONFIG_H
#define JG_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef struct jg_config {
    /* Redis, parsed from REDIS_URL (redis://[user:password@]host[:port][/db],
     * unix:///path.sock[?db=N], or redis+cluster://[user:password@]host:port[,host:port...]).
     * redis_password is a secret. */
    char redis_url_masked[512];
    char redis_host[256];
    int  redis_port;
    char redis_unix[256];      /* non-empty: connect to this unix socket */
    char redis_user[128];
    char redis_password[256];
    int  redis_db;
    int  redis_cluster;        /* redis+cluster://: a Redis Cluster (db 0 only; see cluster.h) */
    char redis_seeds[512];     /* its seed nodes, "host:port,[v6]:port" (host/port: the first) */

    char key_prefix[64];       /* JOBGATE_KEY_PREFIX, default "jobgate" */
    char mount_prefix[128];    /* JOBGATE_PREFIX, default "/api": routes live under it */
    size_t max_body;           /* JOBGATE_MAX_BODY, default 1048576 */
    long retention;            /* JOBGATE_RETENTION s, default 86400 */
    long log_max;              /* JOBGATE_LOG_MAX entries, default 10000 */
    long sse_heartbeat;        /* JOBGATE_SSE_HEARTBEAT s, default 15 */
    long lease;                /* JOBGATE_LEASE s, default 30 */
    long redis_wait_replicas;  /* JOBGATE_REDIS_WAIT_REPLICAS: WAIT for N replica acks after
                                  every write (durable.h); 0 = off, the default */
    long redis_wait_ms;        /* JOBGATE_REDIS_WAIT_MS: WAIT's timeout, default 1000 */
    double retry_base;         /* JOBGATE_RETRY_BASE s, default 1 */
    char cors_origins[1024];   /* JOBGATE_CORS_ORIGINS, comma list or "*"; empty = no CORS */
    char api_tokens[2048];     /* JOBGATE_API_TOKENS (secret) */
    char read_tokens[2048];    /* JOBGATE_READ_TOKENS (secret) */
    long rate_limit_n;         /* JOBGATE_RATE_LIMIT=N/S (N 1..100000, S 1..86400); 0 = off */
    long rate_limit_s;
    int  trust_proxy;          /* JOBGATE_TRUST_PROXY=1 */

    /* Flags of the web programs (see server.h). */
    int    threads;            /* --threads N, default 8 */
    double grace;              /* --grace S, default 5 (the worker: 30) */
    char   socket[256];        /* --socket PATH|HOST:PORT; empty = fd 0 from spawn-fcgi, or CGI */
    long   max_streams;        /* --max-streams N, default 10000 */
    double read_timeout;       /* --read-timeout S, default 10: to deliver a whole request */
    char   web_server_addrs[1024];   /* FCGI_WEB_SERVER_ADDRS: peers a TCP --socket accepts */
} jg_config_t;

/* Fills cfg with defaults and the environment. Returns 0, or -1 with a message in err naming the
 * bad variable (never its secret value). */
int jg_config_load_env(jg_config_t *cfg, char *err, size_t errlen);

/* Parses a number with range checks: 0 on success, -1 if s is not a number in [min, max]. */
int jg_parse_long(const char *s, long min, long max, long *out);
int jg_parse_double(const char *s, double min, double max, double *out);

/* Walks a comma list such as JOBGATE_API_TOKENS or JOBGATE_CORS_ORIGINS ("a, b,c"): returns the
 * next item, with the spaces around it dropped, and its length in *len, and moves *cursor past
 * it; NULL once no item is left. The item is not NUL-terminated: it points into the list. */
const char *jg_list_next(const char **cursor, size_t *len);

/* Prints the effective configuration, one `name=value` per line, secrets masked. */
void jg_config_print(const jg_config_t *cfg, FILE *out);

#endif
