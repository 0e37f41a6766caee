/* test_cluster.c — the pure parts of shared/cluster.c (key slots, where a command goes, MOVED/ASK
 * texts, CLUSTER SLOTS replies) and the redis+cluster:// form of REDIS_URL. The cluster itself is
 * tested live by tests/test_cluster.py. */
#include "cluster.h"
#include "config.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

UNIT_TEST(cluster_key_slots_are_those_redis_computes)
{
    /* each value is what CLUSTER KEYSLOT answered on Redis 7.0 */
    struct { const char *key; unsigned slot; } cases[] = {
        {"foo", 12182}, {"bar", 5061}, {"123456789", 12739}, {"{user1000}.following", 3443},
        {"{user1000}.followers", 3443}, {"foo{}{bar}", 8363}, {"foo{{bar}}zap", 4015},
        {"foo{bar}{zap}", 5061}, {"{}", 15257}, {"jobgate:{341c0a3e}:job:x", 10167},
        {"a{b", 13340}, {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!EXPECT_UINT_EQ(cases[i].slot, jg_cluster_key_slot(cases[i].key, strlen(cases[i].key))))
            fprintf(stderr, "  key %s\n", cases[i].key);
}

/* The wire format of a command, as hiredis writes it. */
static size_t wire(char *out, size_t cap, int argc, const char **argv)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, NULL);
    if (len < 0 || (size_t)len > cap)
        abort();
    memcpy(out, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return (size_t)len;
}

UNIT_TEST(cluster_commands_go_to_the_node_of_their_key)
{
    char buf[512];
    const char *key;
    size_t keylen;
    const char *get[] = {"GET", "jobgate:cache:ab"};
    EXPECT_INT_EQ(JG_ROUTE_KEY, jg_cluster_route(buf, wire(buf, sizeof buf, 2, get), &key, &keylen));
    EXPECT_MEM_EQ("jobgate:cache:ab", 16, key, keylen);
    const char *hmget[] = {"hmget", "jobgate:{t}:job:1", "status", "version"};
    EXPECT_INT_EQ(JG_ROUTE_KEY, jg_cluster_route(buf, wire(buf, sizeof buf, 4, hmget), &key, &keylen));
    EXPECT_MEM_EQ("jobgate:{t}:job:1", 17, key, keylen);
    /* a script: its first KEYS entry; no key: any node */
    const char *eval[] = {"EVALSHA", "abc", "2", "k1", "k2", "argv1"};
    EXPECT_INT_EQ(JG_ROUTE_KEY, jg_cluster_route(buf, wire(buf, sizeof buf, 6, eval), &key, &keylen));
    EXPECT_MEM_EQ("k1", 2, key, keylen);
    const char *eval0[] = {"EVALSHA", "abc", "0", "argv1"};
    EXPECT_INT_EQ(JG_ROUTE_ANY, jg_cluster_route(buf, wire(buf, sizeof buf, 4, eval0), &key, &keylen));
    const char *evalbad[] = {"EVALSHA", "abc", "x1", "k"};
    EXPECT_INT_EQ(JG_ROUTE_ANY, jg_cluster_route(buf, wire(buf, sizeof buf, 4, evalbad), &key, &keylen));
    const char *evalshort[] = {"EVALSHA", "abc", "1"};
    EXPECT_INT_EQ(JG_ROUTE_ANY, jg_cluster_route(buf, wire(buf, sizeof buf, 3, evalshort), &key, &keylen));
    const char *ping[] = {"PING"};
    EXPECT_INT_EQ(JG_ROUTE_ANY, jg_cluster_route(buf, wire(buf, sizeof buf, 1, ping), &key, &keylen));
    const char *sub[] = {"SUBSCRIBE", "jobgate:events"};
    EXPECT_INT_EQ(JG_ROUTE_ANY, jg_cluster_route(buf, wire(buf, sizeof buf, 2, sub), &key, &keylen));
    const char *load[] = {"SCRIPT", "LOAD", "return 1"};
    EXPECT_INT_EQ(JG_ROUTE_ALL, jg_cluster_route(buf, wire(buf, sizeof buf, 3, load), &key, &keylen));
    const char *exists[] = {"SCRIPT", "EXISTS", "abc"};
    EXPECT_INT_EQ(JG_ROUTE_ANY, jg_cluster_route(buf, wire(buf, sizeof buf, 3, exists), &key, &keylen));
    /* not the wire format */
    const char *bad[] = {"", "*", "*1\r\n", "*1\r\n$3\r\nGE\r\n", "*1\r\n$3\r\nGET\r\nX",
                         "*0\r\n", "*2\r\n$3\r\nGET\r\n", "PING\r\n", "*1\r\n$-1\r\n",
                         "*1\r\n$99999999999\r\nGET\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!EXPECT_INT_EQ(-1, jg_cluster_route(bad[i], strlen(bad[i]), &key, &keylen)))
            fprintf(stderr, "  input %zu\n", i);
}

UNIT_TEST(cluster_redirections_are_read)
{
    char host[64];
    int ask, slot, port;
    const char *m = "MOVED 3999 127.0.0.1:6381";
    EXPECT_INT_EQ(0, jg_cluster_parse_redirect(m, strlen(m), &ask, &slot, host, sizeof host, &port));
    EXPECT_INT_EQ(0, ask);
    EXPECT_INT_EQ(3999, slot);
    EXPECT_STR_EQ("127.0.0.1", host);
    EXPECT_INT_EQ(6381, port);
    m = "ASK 16383 redis-2.example:7000";
    EXPECT_INT_EQ(0, jg_cluster_parse_redirect(m, strlen(m), &ask, &slot, host, sizeof host, &port));
    EXPECT_INT_EQ(1, ask);
    EXPECT_INT_EQ(16383, slot);
    EXPECT_STR_EQ("redis-2.example", host);
    m = "MOVED 0 ::1:7000";     /* IPv6 as Redis writes it: the last colon is the port's */
    EXPECT_INT_EQ(0, jg_cluster_parse_redirect(m, strlen(m), &ask, &slot, host, sizeof host, &port));
    EXPECT_STR_EQ("::1", host);
    EXPECT_INT_EQ(7000, port);
    m = "MOVED 5 :7001";         /* no announced host: the one asked */
    EXPECT_INT_EQ(0, jg_cluster_parse_redirect(m, strlen(m), &ask, &slot, host, sizeof host, &port));
    EXPECT_STR_EQ("", host);
    const char *bad[] = {"MOVED", "MOVED 3999", "MOVED 16384 h:1", "MOVED -1 h:1", "MOVED 1 h",
                         "MOVED 1 h:0", "MOVED 1 h:65536", "MOVED 1 h:1x", "MOVED x h:1",
                         "ASK 1  h:1", "moved 1 h:1", "NOSCRIPT No matching script",
                         "MOVED 1 h h:1", "MOVED 1 h:", "ERR MOVED 1 h:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!EXPECT_INT_EQ(-1, jg_cluster_parse_redirect(bad[i], strlen(bad[i]), &ask, &slot, host,
                                                         sizeof host, &port)))
            fprintf(stderr, "  input %s\n", bad[i]);
    /* a host longer than the buffer is refused, not cut */
    m = "MOVED 1 a-very-long-host-name.example:1";
    EXPECT_INT_EQ(-1, jg_cluster_parse_redirect(m, strlen(m), &ask, &slot, host, 8, &port));
}

/* A reply as hiredis reads it from the bytes Redis sends. */
static redisReply *reply_of(const char *resp)
{
    redisReader *rd = redisReaderCreate();
    void *rep = NULL;
    redisReaderFeed(rd, resp, strlen(resp));
    if (redisReaderGetReply(rd, &rep) != REDIS_OK)
        rep = NULL;
    redisReaderFree(rd);
    return rep;
}

static jg_cluster_t *new_cluster(const char *seeds)
{
    jg_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.redis_seeds, sizeof cfg.redis_seeds, "%s", seeds);
    return jg_cluster_new(&cfg);
}

UNIT_TEST(cluster_slot_map_is_read_from_cluster_slots)
{
    jg_cluster_t *cl = new_cluster("127.0.0.1:7000");
    /* two masters; the second with a replica and an empty host ("the node you asked") */
    redisReply *rep = reply_of("*2\r\n"
                               "*3\r\n:0\r\n:8191\r\n*3\r\n$8\r\n10.0.0.1\r\n:7001\r\n$2\r\nid\r\n"
                               "*4\r\n:8192\r\n:16383\r\n*2\r\n$0\r\n\r\n:7002\r\n"
                               "*2\r\n$8\r\n10.0.0.9\r\n:7009\r\n");
    ASSERT_TRUE(rep != NULL);
    EXPECT_INT_EQ(16384, jg_cluster_load_map(cl, rep, "10.0.0.5"));
    const char *host;
    int port;
    EXPECT_INT_EQ(0, jg_cluster_slot_owner(cl, 0, &host, &port));
    EXPECT_STR_EQ("10.0.0.1", host);
    EXPECT_INT_EQ(7001, port);
    EXPECT_INT_EQ(0, jg_cluster_slot_owner(cl, 16383, &host, &port));
    EXPECT_STR_EQ("10.0.0.5", host);
    EXPECT_INT_EQ(7002, port);
    EXPECT_INT_EQ(-1, jg_cluster_slot_owner(cl, 16384, &host, &port));
    freeReplyObject(rep);

    /* malformed replies leave the map as it was */
    const char *bad[] = {
        ":1\r\n",
        "*1\r\n:1\r\n",
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",
        "*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n$1\r\nh\r\n:1\r\n",
        "*1\r\n*3\r\n:-1\r\n:4\r\n*2\r\n$1\r\nh\r\n:1\r\n",
        "*1\r\n*3\r\n:0\r\n:4\r\n*2\r\n$1\r\nh\r\n:0\r\n",
        "*1\r\n*3\r\n:0\r\n:4\r\n*1\r\n$1\r\nh\r\n",
        "*1\r\n*3\r\n:0\r\n:4\r\n*2\r\n:1\r\n:1\r\n",
        "*1\r\n*2\r\n:0\r\n:4\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rep = reply_of(bad[i]);
        if (!EXPECT_INT_EQ(-1, jg_cluster_load_map(cl, rep, "x")))
            fprintf(stderr, "  reply %zu\n", i);
        freeReplyObject(rep);
    }
    EXPECT_INT_EQ(0, jg_cluster_slot_owner(cl, 0, &host, &port));
    EXPECT_STR_EQ("10.0.0.1", host);
    /* an empty reply (no slot served) maps nothing */
    rep = reply_of("*0\r\n");
    EXPECT_INT_EQ(0, jg_cluster_load_map(cl, rep, "x"));
    EXPECT_INT_EQ(-1, jg_cluster_slot_owner(cl, 0, &host, &port));
    freeReplyObject(rep);
    jg_cluster_free(cl);
}

UNIT_TEST(cluster_node_table_is_bounded)
{
    /* a map naming a new node each time (hosts replaced over months): the table holds at most
     * 256 nodes; past that a map is refused (cluster.c then starts again from the seeds) */
    jg_cluster_t *cl = new_cluster("127.0.0.1:7000");
    int refused = 0;
    for (int i = 0; i < 300 && !refused; i++) {
        char host[32], resp[128];
        snprintf(host, sizeof host, "10.1.%d.%d", i / 250, i % 250);
        snprintf(resp, sizeof resp, "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$%zu\r\n%s\r\n:7000\r\n",
                 strlen(host), host);
        redisReply *rep = reply_of(resp);
        if (rep == NULL) {
            FAIL("reply %d not read", i);
            break;
        }
        refused = jg_cluster_load_map(cl, rep, "x") < 0 ? i : 0;
        freeReplyObject(rep);
    }
    EXPECT_INT_EQ(255, refused);   /* the seed and 255 others */
    const char *host;
    int port;
    EXPECT_INT_EQ(0, jg_cluster_slot_owner(cl, 0, &host, &port));
    EXPECT_STR_EQ("10.1.1.4", host);   /* the last map taken, i = 254 */
    jg_cluster_free(cl);
}

static int load_url(jg_config_t *cfg, const char *url, char *err, size_t errlen)
{
    setenv("REDIS_URL", url, 1);
    int rc = jg_config_load_env(cfg, err, errlen);
    unsetenv("REDIS_URL");
    return rc;
}

UNIT_TEST(config_redis_cluster_url)
{
    jg_config_t cfg;
    char err[128];
    char *saved = getenv("REDIS_URL") ? strdup(getenv("REDIS_URL")) : NULL;
    EXPECT_INT_EQ(0, load_url(&cfg, "redis+cluster://10.0.0.1:7000,10.0.0.2:7001", err, sizeof err));
    EXPECT_INT_EQ(1, cfg.redis_cluster);
    EXPECT_STR_EQ("10.0.0.1:7000,10.0.0.2:7001", cfg.redis_seeds);
    EXPECT_STR_EQ("10.0.0.1", cfg.redis_host);
    EXPECT_INT_EQ(7000, cfg.redis_port);
    EXPECT_INT_EQ(0, cfg.redis_db);
    EXPECT_STR_EQ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001", cfg.redis_url_masked);

    EXPECT_INT_EQ(0, load_url(&cfg, "redis+cluster://app:s3cr%40t@[::1]:7000", err, sizeof err));
    EXPECT_STR_EQ("app", cfg.redis_user);
    EXPECT_STR_EQ("s3cr@t", cfg.redis_password);
    EXPECT_STR_EQ("[::1]:7000", cfg.redis_seeds);
    EXPECT_STR_EQ("::1", cfg.redis_host);
    EXPECT_STR_EQ("redis+cluster://app:***@[::1]:7000", cfg.redis_url_masked);
    EXPECT_INT_EQ(0, load_url(&cfg, "redis+cluster://:pw@h:1", err, sizeof err));
    EXPECT_STR_EQ("redis+cluster://:***@h:1", cfg.redis_url_masked);

    /* a plain URL is no cluster */
    EXPECT_INT_EQ(0, load_url(&cfg, "redis://h:1/0", err, sizeof err));
    EXPECT_INT_EQ(0, cfg.redis_cluster);
    EXPECT_STR_EQ("", cfg.redis_seeds);

    /* a port on every seed, no /db (a cluster has database 0 alone), no empty seed */
    const char *bad[] = {"redis+cluster://", "redis+cluster://h", "redis+cluster://h:1/0",
                         "redis+cluster://h:1,", "redis+cluster://h:1,,h:2", "redis+cluster://:1",
                         "redis+cluster://h:0", "redis+cluster://h:65536", "redis+cluster://::1:7000",
                         "redis+cluster://[::1:7000", "redis+cluster://h:1?db=2",
                         "redis+cluster://u:p%zz@h:1", "redis+cluster://h :1",
                         "redis+cluster://a?1:2", "redis+cluster://h#:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!EXPECT_INT_EQ(-1, load_url(&cfg, bad[i], err, sizeof err)))
            fprintf(stderr, "  REDIS_URL=%s was accepted\n", bad[i]);
        EXPECT_CONTAINS(err, "REDIS_URL");
    }
    if (saved) {
        setenv("REDIS_URL", saved, 1);
        free(saved);
    }
}
