/* test_cache.c — unit tests of the result cache's and Idempotency-Key's pure parts: the key
 * names of keys.c (entries, in-flight markers, hashed Idempotency-Keys) and the header rule. */
#include "config.h"
#include "jg.h"
#include "keys.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

static void config(jg_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->key_prefix, sizeof cfg->key_prefix, "jobgate");
}

UNIT_TEST(idempotency_key_rule)
{
    char k128[129], k129[130];
    memset(k128, '~', 128);
    k128[128] = '\0';
    memset(k129, '!', 129);
    k129[129] = '\0';
    EXPECT_TRUE(jg_valid_idempotency_key("a"));
    EXPECT_TRUE(jg_valid_idempotency_key("order-1234:{x}/\"'"));
    EXPECT_TRUE(jg_valid_idempotency_key(k128));
    EXPECT_FALSE(jg_valid_idempotency_key(k129));
    EXPECT_FALSE(jg_valid_idempotency_key(""));
    EXPECT_FALSE(jg_valid_idempotency_key(NULL));
    EXPECT_FALSE(jg_valid_idempotency_key("a b"));
    EXPECT_FALSE(jg_valid_idempotency_key("a\tb"));
    EXPECT_FALSE(jg_valid_idempotency_key("a\x7f"));
    EXPECT_FALSE(jg_valid_idempotency_key("caf\xc3\xa9"));
    EXPECT_FALSE(jg_valid_idempotency_key("a\r\nb"));
}

UNIT_TEST(cache_key_names)
{
    jg_config_t cfg;
    char key[JG_KEY_MAX];
    const char *hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    config(&cfg);
    jg_key_cache(&cfg, hex, key);
    EXPECT_STR_EQ("jobgate:cache:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                  key);
    jg_key_inflight(&cfg, "default", hex, key);
    EXPECT_STR_EQ("jobgate:{37a8eec1}:q:default:inflight:"
                  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", key);
}

UNIT_TEST(idempotency_key_is_hashed)
{
    jg_config_t cfg;
    char key[JG_KEY_MAX];
    config(&cfg);
    jg_key_idempotency(&cfg, "", "abc", key);   /* SHA-256("abc"), FIPS 180-2's example */
    EXPECT_STR_EQ("jobgate:idem:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                  key);
    jg_key_idempotency(&cfg, "", "{x}:*", key);
    EXPECT_NOT_CONTAINS(key, "{x}");
    EXPECT_INT_EQ(strlen("jobgate:idem:") + 64, strlen(key));
}
