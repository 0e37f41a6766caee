/* test_durable.c — the pure parts of shared/durable.c: which commands a WAIT follows under
 * JOBGATE_REDIS_WAIT_REPLICAS, the WAIT command, and how its answer is judged. The setting is
 * tested live by tests/test_durable.py and tests/test_cluster_faults.py. */
#include "config.h"
#include "durable.h"
#include "scripts.h"
#include "unit.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

/* wants() of a command given as its words, in the wire format */
static int wants(const jg_config_t *cfg, int argc, const char **argv)
{
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, NULL);
    int w = jg_durable_wants(cfg, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return w;
}

UNIT_TEST(durable_a_wait_follows_every_write_and_no_read_when_the_setting_is_on)
{
    jg_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.redis_wait_replicas = 1;
    cfg.redis_wait_ms = 1000;
    static const char *const writes[] = {"submit", "claim", "log", "renew", "complete", "cancel",
                                         "retry", "delete", "resume", "giveback"};
    static const char *const reads[] = {"list", "qstats", "ratelimit"};
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        const char *argv[] = {"EVALSHA", jg_script(writes[i])->sha1, "1", "k"};
        if (!EXPECT_INT_EQ(1, wants(&cfg, 4, argv)))
            FAIL("%s.lua", writes[i]);
    }
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        const char *argv[] = {"EVALSHA", jg_script(reads[i])->sha1, "1", "k"};
        if (!EXPECT_INT_EQ(0, wants(&cfg, 4, argv)))
            FAIL("%s.lua", reads[i]);
    }
    const char *set[] = {"SET", "jobgate:idem:x", "id", "EX", "86400"};
    const char *set_nx[] = {"SET", "jobgate:idem:x", "pending:id", "NX", "GET", "PX", "10000"};
    const char *del[] = {"DEL", "jobgate:idem:x"};
    const char *get[] = {"GET", "jobgate:idem:x"};
    const char *hset[] = {"HSET", "jobgate:worker:w", "id", "w"};
    const char *load[] = {"SCRIPT", "LOAD", "return 1"};
    EXPECT_INT_EQ(1, wants(&cfg, 5, set));
    EXPECT_INT_EQ(0, wants(&cfg, 7, set_nx));   /* covered by the WAIT of the write after it */
    EXPECT_INT_EQ(1, wants(&cfg, 2, del));
    EXPECT_INT_EQ(0, wants(&cfg, 2, get));
    EXPECT_INT_EQ(0, wants(&cfg, 4, hset));     /* the heartbeat */
    EXPECT_INT_EQ(0, wants(&cfg, 3, load));
    EXPECT_INT_EQ(0, jg_durable_wants(&cfg, "*1\r\n$3\r\nSE", 11));   /* malformed: no */
    cfg.redis_wait_replicas = 0;
    EXPECT_INT_EQ(0, wants(&cfg, 5, set));
    const char *argv[] = {"EVALSHA", jg_script("submit")->sha1, "1", "k"};
    EXPECT_INT_EQ(0, wants(&cfg, 4, argv));
}

UNIT_TEST(durable_the_wait_command_and_its_answer)
{
    jg_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.redis_wait_replicas = 2;
    cfg.redis_wait_ms = 250;
    char buf[64];
    size_t n = jg_durable_wait_cmd(&cfg, buf, sizeof buf);
    const char want[] = "*3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$3\r\n250\r\n";
    EXPECT_INT_EQ((long long)strlen(want), (long long)n);
    EXPECT_MEM_EQ(want, strlen(want), buf, n);
    redisReply r = {.type = REDIS_REPLY_INTEGER, .integer = 1};
    EXPECT_INT_EQ(0, jg_durable_acked(&cfg, &r));
    r.integer = 2;
    EXPECT_INT_EQ(1, jg_durable_acked(&cfg, &r));
    r.integer = 3;
    EXPECT_INT_EQ(1, jg_durable_acked(&cfg, &r));
    redisReply e = {.type = REDIS_REPLY_ERROR};
    EXPECT_INT_EQ(0, jg_durable_acked(&cfg, &e));
    EXPECT_INT_EQ(0, jg_durable_acked(&cfg, NULL));
}
