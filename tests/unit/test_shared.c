/* test_shared.c — unit tests of the pure parts of shared/ other than JSON: names, ids and keys
 * (keys.c), the byte buffer and its JSON string escaping (buf.c), and the configuration loader
 * (config.c: REDIS_URL forms, JOBGATE_* ranges, secrets never printed).
 *
 * Expected queue tags were computed outside this code: printf 'default' | sha256sum. */
#include "buf.h"
#include "config.h"
#include "jg.h"
#include "keys.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- keys.c: names ---- */

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

UNIT_TEST(keys_valid_name_accepts_the_name_rule)
{
    const char *good[] = {"a", "0", "default", "echo", "a-b_c.d", "9lives", "a..b", "a--",
                          "resize.image", "x_", "a.", "0-0"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!EXPECT_TRUE(jg_valid_name(good[i])))
            FAIL("name %s", good[i]);
    char *n64 = repeat('a', 64);
    EXPECT_TRUE(jg_valid_name(n64));
    n64[0] = '7';
    n64[63] = '-';
    EXPECT_TRUE(jg_valid_name(n64));
    free(n64);
}

UNIT_TEST(keys_valid_name_rejects_the_rest)
{
    const char *bad[] = {"", "A", "Default", "aB", "_a", "-a", ".a", " a", "a b", "a/b", "a:b",
                         "a{b", "a}", "a\n", "a\t", u8"\u00e9", u8"caf\u00e9", "a*", "a?", "a%20",
                         "a+b", "a@b", "..", "\x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!EXPECT_FALSE(jg_valid_name(bad[i])))
            FAIL("name %s", bad[i]);
    EXPECT_FALSE(jg_valid_name(NULL));
    char *n65 = repeat('a', 65);
    EXPECT_FALSE(jg_valid_name(n65));
    free(n65);
    char *n200 = repeat('b', 200);
    EXPECT_FALSE(jg_valid_name(n200));
    free(n200);
}

/* ---- keys.c: ids, tags, hex ---- */

UNIT_TEST(keys_queue_tag_is_first_8_hex_of_sha256)
{
    char tag[JG_TAG_LEN + 1];
    memset(tag, 'x', sizeof tag);
    jg_queue_tag("default", tag);
    EXPECT_STR_EQ("37a8eec1", tag);   /* as docs/redis.md says */
    jg_queue_tag("emails", tag);
    EXPECT_STR_EQ("cedbe818", tag);
    jg_queue_tag("", tag);
    EXPECT_STR_EQ("e3b0c442", tag);
}

UNIT_TEST(keys_queue_tag_of_alternating_queues_is_each_ones_own)
{
    /* each thread keeps the last queue's tag: switching back and forth must not mix them */
    char tag[JG_TAG_LEN + 1];
    for (int i = 0; i < 3; i++) {
        jg_queue_tag("default", tag);
        EXPECT_STR_EQ("37a8eec1", tag);
        jg_queue_tag("emails", tag);
        EXPECT_STR_EQ("cedbe818", tag);
        jg_queue_tag("emails", tag);
        EXPECT_STR_EQ("cedbe818", tag);
    }
}

UNIT_TEST(keys_new_job_id_of_a_forked_child_is_not_its_parents_next)
{
    /* ids take random bytes from a per-thread pool: a child must not reuse what the parent has */
    char first[JG_ID_LEN + 1], mine[JG_ID_LEN + 1], child[JG_ID_LEN + 1] = "";
    ASSERT_INT_EQ(0, jg_new_job_id("default", first));   /* the pool holds more now */
    int fds[2];
    ASSERT_INT_EQ(0, pipe(fds));
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        char id[JG_ID_LEN + 1] = "";
        jg_new_job_id("default", id);
        ssize_t w = write(fds[1], id, JG_ID_LEN);
        _exit(w == JG_ID_LEN ? 0 : 1);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], child, JG_ID_LEN);
    close(fds[0]);
    waitpid(pid, NULL, 0);
    ASSERT_INT_EQ(JG_ID_LEN, n);
    child[JG_ID_LEN] = '\0';
    ASSERT_INT_EQ(0, jg_new_job_id("default", mine));
    if (!EXPECT_TRUE(strcmp(mine, child) != 0))
        FAIL("parent and child both minted %s", mine);
}

UNIT_TEST(keys_valid_job_id_form)
{
    EXPECT_TRUE(jg_valid_job_id("37a8eec1.AAAAAAAAAAAAAAAAAAAAAA"));
    EXPECT_TRUE(jg_valid_job_id("37a8eec1.abcXYZ012-_abcXYZ012-_"));
    EXPECT_TRUE(jg_valid_job_id("00000000.----------------------"));
    const char *bad[] = {
        "",
        "37a8eec1.AAAAAAAAAAAAAAAAAAAAA",     /* 30 characters */
        "37a8eec1.AAAAAAAAAAAAAAAAAAAAAAA",   /* 32 */
        "37A8EEC1.AAAAAAAAAAAAAAAAAAAAAA",    /* uppercase tag */
        "37a8eecg.AAAAAAAAAAAAAAAAAAAAAA",    /* not hex */
        "37a8eec1-AAAAAAAAAAAAAAAAAAAAAA",    /* no dot */
        "37a8eec1.AAAAAAAAAAAAAAAAAAAAA+",    /* base64, not base64url */
        "37a8eec1.AAAAAAAAAAAAAAAAAAAAA/",
        "37a8eec1.AAAAAAAAAAAAAAAAAAAAA=",
        "37a8eec1.AAAAAAAAAA.AAAAAAAAAAA",
        "37a8eec1.AAAAAAAAAA AAAAAAAAAAA",
        "37a8eec1.AAAAAAAAAA:AAAAAAAAAAA",
        "37a8eec1.AAAAAAAAAA{AAAAAAAAAAA",
        "../../../etc/passwd.AAAAAAAAAAA",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!EXPECT_FALSE(jg_valid_job_id(bad[i])))
            FAIL("id %s", bad[i]);
    EXPECT_FALSE(jg_valid_job_id(NULL));
}

UNIT_TEST(keys_valid_hex64)
{
    char *h = repeat('a', 64);
    EXPECT_TRUE(jg_valid_hex64(h));
    EXPECT_TRUE(jg_valid_hex64("b5a790f50e957ca182e5acbe5718896668fbf7ddd85313abbdc6efda40a1b16d"));
    h[10] = 'A';
    EXPECT_FALSE(jg_valid_hex64(h));
    h[10] = 'g';
    EXPECT_FALSE(jg_valid_hex64(h));
    h[10] = 'a';
    h[63] = '\0';
    EXPECT_FALSE(jg_valid_hex64(h));
    free(h);
    h = repeat('0', 65);
    EXPECT_FALSE(jg_valid_hex64(h));
    free(h);
    EXPECT_FALSE(jg_valid_hex64(""));
    EXPECT_FALSE(jg_valid_hex64(NULL));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

UNIT_TEST(keys_new_job_id_form_and_uniqueness)
{
    enum { N = 10000 };
    char (*ids)[JG_ID_LEN + 1] = calloc(N, sizeof *ids);
    ASSERT_TRUE(ids != NULL);
    char tag[JG_TAG_LEN + 1];
    jg_queue_tag("emails", tag);
    int seen[JG_ID_LEN][256];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++) {
        if (!EXPECT_INT_EQ(0, jg_new_job_id("emails", ids[i])))
            break;
        if (!EXPECT_INT_EQ(JG_ID_LEN, strlen(ids[i])) || !EXPECT_TRUE(jg_valid_job_id(ids[i])) ||
            !EXPECT_TRUE(strncmp(ids[i], tag, JG_TAG_LEN) == 0)) {
            FAIL("id %s", ids[i]);
            break;
        }
        /* 128 bits in 22 digits: the last digit carries 2 bits, so it is one of 4 */
        if (!EXPECT_TRUE(strchr("AQgw", ids[i][JG_ID_LEN - 1]) != NULL))
            break;
        for (int k = JG_TAG_LEN + 1; k < JG_ID_LEN; k++)
            seen[k][(unsigned char)ids[i][k]] = 1;
    }
    qsort(ids, N, sizeof *ids, cmp_str);
    for (int i = 1; i < N; i++)
        if (!EXPECT_TRUE(strcmp(ids[i - 1], ids[i]) != 0)) {
            FAIL("id %s minted twice", ids[i]);
            break;
        }
    /* every random position takes (nearly) all 64 digits over 10,000 ids */
    for (int k = JG_TAG_LEN + 1; k < JG_ID_LEN - 1; k++) {
        int distinct = 0;
        for (int c = 0; c < 256; c++)
            distinct += seen[k][c];
        if (!EXPECT_INT_EQ(64, distinct))
            FAIL("position %d", k);
    }
    free(ids);
}

UNIT_TEST(keys_layout_shares_the_queue_tag)
{
    jg_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.key_prefix, sizeof cfg.key_prefix, "jobgate");
    char key[JG_KEY_MAX];
    const char *id = "37a8eec1.AAAAAAAAAAAAAAAAAAAAAA";
    EXPECT_INT_EQ(strlen("jobgate:{37a8eec1}:job:") + JG_ID_LEN, jg_key_job(&cfg, id, key));
    EXPECT_STR_EQ("jobgate:{37a8eec1}:job:37a8eec1.AAAAAAAAAAAAAAAAAAAAAA", key);
    jg_key_log(&cfg, id, key);
    EXPECT_STR_EQ("jobgate:{37a8eec1}:log:37a8eec1.AAAAAAAAAAAAAAAAAAAAAA", key);
    jg_key_queue(&cfg, "default", "ready:echo", key);
    EXPECT_STR_EQ("jobgate:{37a8eec1}:q:default:ready:echo", key);
    jg_key_queue(&cfg, "emails", "delayed", key);
    EXPECT_STR_EQ("jobgate:{cedbe818}:q:emails:delayed", key);
    /* the same key from a tag kept by the caller (the worker keeps its queues' tags) */
    EXPECT_INT_EQ(strlen("jobgate:{cedbe818}:q:emails:delayed"),
                  jg_key_queue_tag(&cfg, "cedbe818", "emails", "delayed", key));
    EXPECT_STR_EQ("jobgate:{cedbe818}:q:emails:delayed", key);
    jg_key_global(&cfg, "queues", key);
    EXPECT_STR_EQ("jobgate:queues", key);
    /* shard channels, in the slot of the queue's tag (of a job id, a tag or a queue name) */
    jg_chan_events(&cfg, id, key);
    EXPECT_STR_EQ("jobgate:{37a8eec1}:events", key);
    jg_chan_events(&cfg, "cedbe818", key);
    EXPECT_STR_EQ("jobgate:{cedbe818}:events", key);
    jg_chan_wake(&cfg, "emails", key);
    EXPECT_STR_EQ("jobgate:{cedbe818}:wake:emails", key);
    jg_chan_worker(&cfg, id, "host.1234", key);
    EXPECT_STR_EQ("jobgate:{37a8eec1}:worker:host.1234", key);
    /* the slot's prefix, of a job id or of a queue's tag */
    jg_key_tagged(&cfg, id, key);
    EXPECT_STR_EQ("jobgate:{37a8eec1}:", key);
    jg_key_tagged(&cfg, "cedbe818", key);
    EXPECT_STR_EQ("jobgate:{cedbe818}:", key);
    /* a job id minted for a queue names keys in that queue's slot */
    char minted[JG_ID_LEN + 1], qkey[JG_KEY_MAX];
    ASSERT_INT_EQ(0, jg_new_job_id("emails", minted));
    jg_key_job(&cfg, minted, key);
    jg_key_queue(&cfg, "emails", "running", qkey);
    EXPECT_TRUE(strncmp(key, qkey, strlen("jobgate:{cedbe818}")) == 0);
}

/* ---- buf.c ---- */

UNIT_TEST(buf_appends_grow_and_stay_nul_terminated)
{
    jg_buf_t b = JG_BUF_INIT;
    jg_buf_append(&b, "", 0);
    EXPECT_TRUE(b.data != NULL);
    EXPECT_STR_EQ("", b.data);
    jg_buf_puts(&b, "ab");
    jg_buf_putc(&b, 'c');
    jg_buf_printf(&b, "%d-%s", 42, "x");
    EXPECT_STR_EQ("abc42-x", b.data);
    EXPECT_INT_EQ(7, b.len);
    for (int i = 0; i < 1000; i++)
        jg_buf_printf(&b, "%04d", i);
    EXPECT_INT_EQ(7 + 4000, b.len);
    EXPECT_INT_EQ(7 + 4000, strlen(b.data));
    EXPECT_TRUE(b.cap > b.len);
    EXPECT_TRUE(memcmp(b.data + b.len - 4, "0999", 4) == 0);
    /* one printf much larger than the initial capacity */
    char *big = repeat('z', 5000);
    jg_buf_reset(&b);
    EXPECT_STR_EQ("", b.data);
    jg_buf_printf(&b, "<%s>", big);
    EXPECT_INT_EQ(5002, b.len);
    EXPECT_TRUE(b.data[0] == '<' && b.data[5001] == '>' && b.data[5002] == '\0');
    free(big);
    /* binary data with NULs */
    jg_buf_reset(&b);
    jg_buf_append(&b, "a\0b", 3);
    EXPECT_INT_EQ(3, b.len);
    EXPECT_TRUE(memcmp(b.data, "a\0b\0", 4) == 0);
    char *stolen = jg_buf_steal(&b);
    EXPECT_TRUE(b.data == NULL && b.len == 0 && b.cap == 0);
    EXPECT_TRUE(memcmp(stolen, "a\0b", 4) == 0);
    free(stolen);
    EXPECT_TRUE(jg_buf_steal(&b) == NULL);
    jg_buf_reset(&b);   /* on an empty buffer: fine */
    jg_buf_free(&b);
    jg_buf_free(&b);    /* twice: fine */
}

static const char *json_string(const char *s, size_t len)
{
    static char out[512];
    jg_buf_t b = JG_BUF_INIT;
    jg_buf_json_string(&b, s, len);
    snprintf(out, sizeof out, "%s", b.data);
    jg_buf_free(&b);
    return out;
}

UNIT_TEST(buf_json_string_escaping)
{
    EXPECT_STR_EQ("\"\"", json_string("", 0));
    EXPECT_STR_EQ("\"abc\"", json_string("abc", 3));
    EXPECT_STR_EQ("\"a\\\"b\\\\c\"", json_string("a\"b\\c", 5));
    EXPECT_STR_EQ("\"\\n\\r\\t\\b\\f\"", json_string("\n\r\t\b\f", 5));
    EXPECT_STR_EQ("\"\\u0000\\u0001\\u001f\\u000b\"", json_string("\0\x01\x1f\x0b", 4));
    EXPECT_STR_EQ("\"x\\u001ay\"", json_string("x\x1ay", 3));   /* lowercase hex */
    EXPECT_STR_EQ("\"/ \x7f\"", json_string("/ \x7f", 3));        /* '/' and DEL as they are */
    EXPECT_STR_EQ(u8"\"\u00e9\u20ac\U0001F600\u2028\"",
                  json_string(u8"\u00e9\u20ac\U0001F600\u2028", strlen(u8"\u00e9\u20ac\U0001F600\u2028")));
    EXPECT_STR_EQ("\"ab\"", json_string("abcdef", 2));   /* only len bytes */
    /* appends after what is there */
    jg_buf_t b = JG_BUF_INIT;
    jg_buf_puts(&b, "{\"k\":");
    jg_buf_json_string(&b, "v\n", 2);
    jg_buf_putc(&b, '}');
    EXPECT_STR_EQ("{\"k\":\"v\\n\"}", b.data);
    jg_buf_free(&b);
    /* every byte below 0x20 has a \u00xx or short form */
    for (int c = 0; c < 0x20; c++) {
        char in = (char)c, want[8];
        const char *s = json_string(&in, 1);
        if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f')
            EXPECT_INT_EQ(4, strlen(s));
        else if (snprintf(want, sizeof want, "\\u%04x", c) > 0 && !EXPECT_TRUE(strstr(s, want)))
            FAIL("byte %d gave %s", c, s);
    }
}

/* ---- config.c ---- */

static const char *const config_vars[] = {
    "REDIS_URL", "JOBGATE_KEY_PREFIX", "JOBGATE_PREFIX", "JOBGATE_MAX_BODY", "JOBGATE_RETENTION",
    "JOBGATE_LOG_MAX", "JOBGATE_SSE_HEARTBEAT", "JOBGATE_LEASE", "JOBGATE_RETRY_BASE",
    "JOBGATE_CORS_ORIGINS", "JOBGATE_API_TOKENS", "JOBGATE_READ_TOKENS", "JOBGATE_RATE_LIMIT",
    "JOBGATE_TRUST_PROXY", "JOBGATE_REDIS_WAIT_REPLICAS", "JOBGATE_REDIS_WAIT_MS",
};
#define NVARS (sizeof config_vars / sizeof config_vars[0])

/* The caller's environment, saved before a config test clears it and put back after. */
static char *saved_env[NVARS];

static void env_clear(void)
{
    for (size_t i = 0; i < NVARS; i++) {
        const char *v = getenv(config_vars[i]);
        saved_env[i] = v ? strdup(v) : NULL;
        unsetenv(config_vars[i]);
    }
}

static void env_restore(void)
{
    for (size_t i = 0; i < NVARS; i++) {
        if (saved_env[i])
            setenv(config_vars[i], saved_env[i], 1);
        else
            unsetenv(config_vars[i]);
        free(saved_env[i]);
        saved_env[i] = NULL;
    }
}

/* Loads the config with only name=value set (name NULL: nothing set). Returns the load result. */
static int load_with(jg_config_t *cfg, const char *name, const char *value, char *err,
                     size_t errlen)
{
    for (size_t i = 0; i < NVARS; i++)
        unsetenv(config_vars[i]);
    if (name)
        setenv(name, value, 1);
    err[0] = '\0';
    return jg_config_load_env(cfg, err, errlen);
}

/* What jg_config_print writes, in a static buffer. */
static const char *printed(const jg_config_t *cfg)
{
    static char out[8192];
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);
    if (f == NULL)
        return "";
    jg_config_print(cfg, f);
    fclose(f);
    snprintf(out, sizeof out, "%s", p ? p : "");
    free(p);
    return out;
}

UNIT_TEST(config_defaults)
{
    jg_config_t cfg;
    char err[128];
    env_clear();
    EXPECT_INT_EQ(0, load_with(&cfg, NULL, NULL, err, sizeof err));
    EXPECT_STR_EQ("127.0.0.1", cfg.redis_host);
    EXPECT_INT_EQ(6379, cfg.redis_port);
    EXPECT_INT_EQ(0, cfg.redis_db);
    EXPECT_STR_EQ("", cfg.redis_unix);
    EXPECT_STR_EQ("", cfg.redis_password);
    EXPECT_STR_EQ("redis://127.0.0.1:6379/0", cfg.redis_url_masked);
    EXPECT_STR_EQ("jobgate", cfg.key_prefix);
    EXPECT_STR_EQ("/api", cfg.mount_prefix);
    EXPECT_UINT_EQ(1048576, cfg.max_body);
    EXPECT_INT_EQ(86400, cfg.retention);
    EXPECT_INT_EQ(10000, cfg.log_max);
    EXPECT_INT_EQ(15, cfg.sse_heartbeat);
    EXPECT_INT_EQ(30, cfg.lease);
    EXPECT_TRUE(cfg.retry_base == 1.0);
    EXPECT_INT_EQ(0, cfg.rate_limit_n);
    EXPECT_INT_EQ(0, cfg.trust_proxy);
    EXPECT_INT_EQ(8, cfg.threads);
    EXPECT_INT_EQ(10000, cfg.max_streams);
    /* an empty value is the default */
    EXPECT_INT_EQ(0, load_with(&cfg, "REDIS_URL", "", err, sizeof err));
    EXPECT_STR_EQ("redis://127.0.0.1:6379/0", cfg.redis_url_masked);
    EXPECT_INT_EQ(0, load_with(&cfg, "JOBGATE_LEASE", "", err, sizeof err));
    EXPECT_INT_EQ(30, cfg.lease);
    env_restore();
}

UNIT_TEST(config_redis_url_forms)
{
    jg_config_t cfg;
    char err[128];
    env_clear();
    EXPECT_INT_EQ(0, load_with(&cfg, "REDIS_URL", "redis://cache.example:6380/3", err, sizeof err));
    EXPECT_STR_EQ("cache.example", cfg.redis_host);
    EXPECT_INT_EQ(6380, cfg.redis_port);
    EXPECT_INT_EQ(3, cfg.redis_db);
    EXPECT_STR_EQ("", cfg.redis_user);
    EXPECT_STR_EQ("", cfg.redis_password);
    EXPECT_STR_EQ("redis://cache.example:6380/3", cfg.redis_url_masked);

    EXPECT_INT_EQ(0, load_with(&cfg, "REDIS_URL", "redis://user:pass@h:1/2", err, sizeof err));
    EXPECT_STR_EQ("h", cfg.redis_host);
    EXPECT_INT_EQ(1, cfg.redis_port);
    EXPECT_INT_EQ(2, cfg.redis_db);
    EXPECT_STR_EQ("user", cfg.redis_user);
    EXPECT_STR_EQ("pass", cfg.redis_password);
    EXPECT_STR_EQ("redis://user:***@h:1/2", cfg.redis_url_masked);

    EXPECT_INT_EQ(0, load_with(&cfg, "REDIS_URL", "redis://h", err, sizeof err));
    EXPECT_STR_EQ("h", cfg.redis_host);
    EXPECT_INT_EQ(6379, cfg.redis_port);
    EXPECT_INT_EQ(0, cfg.redis_db);

    EXPECT_INT_EQ(0, load_with(&cfg, "REDIS_URL", "redis://h:7000/", err, sizeof err));
    EXPECT_INT_EQ(7000, cfg.redis_port);
    EXPECT_INT_EQ(0, cfg.redis_db);

    /* a password alone, percent-encoded characters */
    EXPECT_INT_EQ(0, load_with(&cfg, "REDIS_URL", "redis://:p%40ss%3Aw@h/1", err, sizeof err));
    EXPECT_STR_EQ("", cfg.redis_user);
    EXPECT_STR_EQ("p@ss:w", cfg.redis_password);
    EXPECT_STR_EQ("redis://:***@h:6379/1", cfg.redis_url_masked);

    /* IPv6 */
    EXPECT_INT_EQ(0, load_with(&cfg, "REDIS_URL", "redis://[::1]:6390/4", err, sizeof err));
    EXPECT_STR_EQ("::1", cfg.redis_host);
    EXPECT_INT_EQ(6390, cfg.redis_port);
    EXPECT_STR_EQ("redis://[::1]:6390/4", cfg.redis_url_masked);
    EXPECT_INT_EQ(0, load_with(&cfg, "REDIS_URL", "redis://[::1]", err, sizeof err));
    EXPECT_STR_EQ("::1", cfg.redis_host);
    EXPECT_INT_EQ(6379, cfg.redis_port);

    /* unix sockets */
    EXPECT_INT_EQ(0, load_with(&cfg, "REDIS_URL", "unix:///x.sock?db=3", err, sizeof err));
    EXPECT_STR_EQ("/x.sock", cfg.redis_unix);
    EXPECT_INT_EQ(3, cfg.redis_db);
    EXPECT_INT_EQ(0, load_with(&cfg, "REDIS_URL", "unix:///run/redis/redis.sock", err, sizeof err));
    EXPECT_STR_EQ("/run/redis/redis.sock", cfg.redis_unix);
    EXPECT_INT_EQ(0, cfg.redis_db);
    EXPECT_STR_EQ("unix:///run/redis/redis.sock", cfg.redis_url_masked);
    env_restore();
}

UNIT_TEST(config_redis_url_rejects_bad_ones)
{
    const char *bad[] = {
        "http://h:6379", "h:6379", "redis:/h", "rediss://h", "redis://h:0", "redis://h:65536",
        "redis://h:abc", "redis://h:", "redis://h:-1", "redis://h/abc", "redis://h/-1",
        "redis://h/1/2", "redis://h:1x/0", "redis://[::1", "unix://", "unix://relative.sock",
        "unix:///x.sock?db=", "unix:///x.sock?db=x", "unix:///x.sock?foo=1", "unix:///x.sock?db=-1",
        "redis://u:p%00@h", "redis://u:p%zz@h",
    };
    jg_config_t cfg;
    char err[128];
    env_clear();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!EXPECT_INT_EQ(-1, load_with(&cfg, "REDIS_URL", bad[i], err, sizeof err)))
            FAIL("REDIS_URL=%s was accepted", bad[i]);
        else if (!EXPECT_CONTAINS(err, "REDIS_URL"))
            break;
    }
    /* over-long parts are refused, not cut */
    jg_buf_t url = JG_BUF_INIT;
    jg_buf_puts(&url, "unix:///");
    for (int i = 0; i < 300; i++)
        jg_buf_putc(&url, 'd');
    EXPECT_INT_EQ(-1, load_with(&cfg, "REDIS_URL", url.data, err, sizeof err));
    jg_buf_reset(&url);
    jg_buf_puts(&url, "redis://");
    for (int i = 0; i < 300; i++)
        jg_buf_putc(&url, 'h');
    EXPECT_INT_EQ(-1, load_with(&cfg, "REDIS_URL", url.data, err, sizeof err));
    jg_buf_free(&url);
    env_restore();
}

UNIT_TEST(config_secrets_never_shown)
{
    const char *urls[] = {"redis://user:s3cretPW@h:1/2", "redis://:s3cretPW@h", "redis://s3cretPW@h",
                          "redis://user:s3cretPW@h:99999/0", "redis://u:s3cretPW@h/x"};
    jg_config_t cfg;
    char err[128];
    env_clear();
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        int rc = load_with(&cfg, "REDIS_URL", urls[i], err, sizeof err);
        EXPECT_NOT_CONTAINS(err, "s3cret");
        if (rc == 0) {
            EXPECT_STR_EQ("s3cretPW", cfg.redis_password);
            EXPECT_NOT_CONTAINS(cfg.redis_url_masked, "s3cret");
            EXPECT_CONTAINS(cfg.redis_url_masked, "***");
            EXPECT_NOT_CONTAINS(printed(&cfg), "s3cret");
        }
    }
    /* tokens: masked in the printout */
    for (size_t i = 0; i < NVARS; i++)
        unsetenv(config_vars[i]);
    setenv("REDIS_URL", "redis://:s3cretPW@h", 1);
    setenv("JOBGATE_API_TOKENS", "tokA1secret,tokB2secret", 1);
    setenv("JOBGATE_READ_TOKENS", "readT0ken", 1);
    EXPECT_INT_EQ(0, jg_config_load_env(&cfg, err, sizeof err));
    EXPECT_STR_EQ("tokA1secret,tokB2secret", cfg.api_tokens);
    const char *out = printed(&cfg);
    EXPECT_CONTAINS(out, "JOBGATE_API_TOKENS=***\n");
    EXPECT_CONTAINS(out, "JOBGATE_READ_TOKENS=***\n");
    EXPECT_CONTAINS(out, "REDIS_URL=redis://:***@h:6379/0\n");
    EXPECT_NOT_CONTAINS(out, "secret");
    EXPECT_NOT_CONTAINS(out, "T0ken");
    EXPECT_NOT_CONTAINS(out, "s3cret");
    /* a token list too long for its field is an error that does not quote it */
    jg_buf_t big = JG_BUF_INIT;
    for (int i = 0; i < 300; i++)
        jg_buf_puts(&big, "secret01,");
    setenv("JOBGATE_API_TOKENS", big.data, 1);
    EXPECT_INT_EQ(-1, jg_config_load_env(&cfg, err, sizeof err));
    EXPECT_CONTAINS(err, "JOBGATE_API_TOKENS");
    EXPECT_NOT_CONTAINS(err, "secret01");
    jg_buf_free(&big);
    env_restore();
}

UNIT_TEST(config_ranges)
{
    static const struct {
        const char *name, *value;
        int ok;
    } cases[] = {
        {"JOBGATE_RETENTION", "1", 1}, {"JOBGATE_RETENTION", "0", 0},
        {"JOBGATE_RETENTION", "31536000", 1}, {"JOBGATE_RETENTION", "31536001", 0},
        {"JOBGATE_RETENTION", "abc", 0}, {"JOBGATE_RETENTION", "10s", 0},
        {"JOBGATE_RETENTION", "1.5", 0}, {"JOBGATE_RETENTION", "99999999999999999999", 0},
        {"JOBGATE_LOG_MAX", "1", 1}, {"JOBGATE_LOG_MAX", "0", 0}, {"JOBGATE_LOG_MAX", "-5", 0},
        {"JOBGATE_SSE_HEARTBEAT", "3600", 1}, {"JOBGATE_SSE_HEARTBEAT", "3601", 0},
        {"JOBGATE_LEASE", "2", 1}, {"JOBGATE_LEASE", "1", 0}, {"JOBGATE_LEASE", "86401", 0},
        {"JOBGATE_REDIS_WAIT_REPLICAS", "0", 1}, {"JOBGATE_REDIS_WAIT_REPLICAS", "16", 1},
        {"JOBGATE_REDIS_WAIT_REPLICAS", "17", 0}, {"JOBGATE_REDIS_WAIT_REPLICAS", "-1", 0},
        {"JOBGATE_REDIS_WAIT_MS", "1", 1}, {"JOBGATE_REDIS_WAIT_MS", "0", 0},
        {"JOBGATE_REDIS_WAIT_MS", "60000", 1}, {"JOBGATE_REDIS_WAIT_MS", "60001", 0},
        {"JOBGATE_MAX_BODY", "64", 1}, {"JOBGATE_MAX_BODY", "63", 0},
        {"JOBGATE_MAX_BODY", "1073741824", 1}, {"JOBGATE_MAX_BODY", "1073741825", 0},
        {"JOBGATE_RETRY_BASE", "0.5", 1}, {"JOBGATE_RETRY_BASE", "0", 0},
        {"JOBGATE_RETRY_BASE", "3601", 0}, {"JOBGATE_RETRY_BASE", "nan", 0},
        {"JOBGATE_RETRY_BASE", "inf", 0}, {"JOBGATE_RETRY_BASE", "1x", 0},
        {"JOBGATE_RATE_LIMIT", "10/60", 1}, {"JOBGATE_RATE_LIMIT", "10", 0},
        {"JOBGATE_RATE_LIMIT", "10/0", 0}, {"JOBGATE_RATE_LIMIT", "0/60", 0},
        {"JOBGATE_RATE_LIMIT", "/60", 0}, {"JOBGATE_RATE_LIMIT", "10/", 0},
        {"JOBGATE_RATE_LIMIT", "10/86401", 0}, {"JOBGATE_RATE_LIMIT", "a/b", 0},
        {"JOBGATE_RATE_LIMIT", "100000/1", 1}, {"JOBGATE_RATE_LIMIT", "100001/1", 0},
        {"JOBGATE_API_TOKENS", "a,b", 1}, {"JOBGATE_API_TOKENS", " a , b ", 1},
        {"JOBGATE_API_TOKENS", ",", 0}, {"JOBGATE_API_TOKENS", "a b", 0},
        {"JOBGATE_READ_TOKENS", "r\tx", 0}, {"JOBGATE_READ_TOKENS", "caf\xc3\xa9", 0},
        {"JOBGATE_KEY_PREFIX", "jg-test:1", 1}, {"JOBGATE_KEY_PREFIX", "a{b}", 0},
        {"JOBGATE_KEY_PREFIX", "a b", 0}, {"JOBGATE_PREFIX", "/jobs/api", 1},
        {"JOBGATE_PREFIX", "", 1}, {"JOBGATE_PREFIX", "api", 0}, {"JOBGATE_PREFIX", "/api/", 0},
        {"JOBGATE_PREFIX", "/a?b", 0}, {"JOBGATE_PREFIX", "/a b", 0},
    };
    jg_config_t cfg;
    char err[128];
    env_clear();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = load_with(&cfg, cases[i].name, cases[i].value, err, sizeof err);
        if (!EXPECT_INT_EQ(cases[i].ok ? 0 : -1, rc))
            FAIL("%s=%s: %s", cases[i].name, cases[i].value, err);
        else if (!cases[i].ok && !EXPECT_CONTAINS(err, cases[i].name))
            FAIL("%s=%s", cases[i].name, cases[i].value);
    }
    /* values land where they belong */
    EXPECT_INT_EQ(0, load_with(&cfg, "JOBGATE_RATE_LIMIT", "10/60", err, sizeof err));
    EXPECT_INT_EQ(10, cfg.rate_limit_n);
    EXPECT_INT_EQ(60, cfg.rate_limit_s);
    EXPECT_CONTAINS(printed(&cfg), "JOBGATE_RATE_LIMIT=10/60\n");
    EXPECT_INT_EQ(0, load_with(&cfg, "JOBGATE_MAX_BODY", "2048", err, sizeof err));
    EXPECT_UINT_EQ(2048, cfg.max_body);
    EXPECT_INT_EQ(0, load_with(&cfg, "JOBGATE_PREFIX", "", err, sizeof err));
    EXPECT_STR_EQ("", cfg.mount_prefix);
    EXPECT_INT_EQ(0, load_with(&cfg, "JOBGATE_TRUST_PROXY", "1", err, sizeof err));
    EXPECT_INT_EQ(1, cfg.trust_proxy);
    EXPECT_INT_EQ(0, load_with(&cfg, "JOBGATE_TRUST_PROXY", "yes", err, sizeof err));
    EXPECT_INT_EQ(0, cfg.trust_proxy);
    env_restore();
}

UNIT_TEST(config_parse_numbers)
{
    long l = -7;
    double d = -7;
    EXPECT_INT_EQ(0, jg_parse_long("42", 0, 100, &l));
    EXPECT_INT_EQ(42, l);
    EXPECT_INT_EQ(-1, jg_parse_long("101", 0, 100, &l));
    EXPECT_INT_EQ(42, l);   /* untouched on failure */
    EXPECT_INT_EQ(-1, jg_parse_long("", 0, 100, &l));
    EXPECT_INT_EQ(-1, jg_parse_long(NULL, 0, 100, &l));
    EXPECT_INT_EQ(-1, jg_parse_long("4 2", 0, 100, &l));
    EXPECT_INT_EQ(-1, jg_parse_long("0x10", 0, 100, &l));
    EXPECT_INT_EQ(-1, jg_parse_long("9223372036854775808", 0, 9223372036854775807L, &l));
    EXPECT_INT_EQ(0, jg_parse_long("-1000", -1000, 1000, &l));
    EXPECT_INT_EQ(-1000, l);
    EXPECT_INT_EQ(0, jg_parse_double("0.25", 0, 1, &d));
    EXPECT_TRUE(d == 0.25);
    EXPECT_INT_EQ(-1, jg_parse_double("1.5", 0, 1, &d));
    EXPECT_INT_EQ(-1, jg_parse_double("1e999", 0, 1e308, &d));
    EXPECT_INT_EQ(-1, jg_parse_double("", 0, 1, &d));
    EXPECT_INT_EQ(-1, jg_parse_double("0.5s", 0, 1, &d));
    EXPECT_TRUE(d == 0.25);
}
