/* test_access.c — unit tests of access.c (tokens, client address) and of the access classes
 * of the route table (contract section 8). */
#include <openssl/sha.h>
#include <string.h>

#include "access.h"
#include "keys.h"
#include "routes.h"
#include "unit.h"

static int listed(const char *list, const char *token)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), md);
    return jg_token_listed(list, md);
}

UNIT_TEST(access_token_lists_match_whole_tokens_only)
{
    EXPECT_TRUE(listed("alpha", "alpha"));
    EXPECT_TRUE(listed("alpha,beta", "beta"));
    EXPECT_TRUE(listed(" alpha , beta ", "alpha"));
    EXPECT_TRUE(listed(" alpha , beta ", "beta"));
    EXPECT_FALSE(listed("alpha,beta", "alph"));
    EXPECT_FALSE(listed("alpha,beta", "alphaa"));
    EXPECT_FALSE(listed("alpha,beta", "alpha,beta"));
    EXPECT_FALSE(listed("alpha,beta", ""));
    EXPECT_FALSE(listed("alpha,,beta", ""));
    EXPECT_FALSE(listed("", "alpha"));
}

UNIT_TEST(access_bearer_header_parsing)
{
    char t[64];
    EXPECT_INT_EQ(1, jg_bearer_token("Bearer abc.DEF-1", t, sizeof t));
    EXPECT_STR_EQ("abc.DEF-1", t);
    EXPECT_INT_EQ(1, jg_bearer_token("bearer   xyz  ", t, sizeof t));
    EXPECT_STR_EQ("xyz", t);
    EXPECT_INT_EQ(0, jg_bearer_token("Basic dXNlcjpwdw==", t, sizeof t));
    EXPECT_INT_EQ(0, jg_bearer_token("Bearer ", t, sizeof t));
    EXPECT_INT_EQ(0, jg_bearer_token("Bearerabc", t, sizeof t));
    EXPECT_INT_EQ(0, jg_bearer_token(NULL, t, sizeof t));
    char longer[100];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    memcpy(longer, "Bearer ", 7);
    EXPECT_INT_EQ(0, jg_bearer_token(longer, t, sizeof t));   /* does not fit: no match */
}

UNIT_TEST(access_client_address_rule)
{
    char a[64];
    jg_client_addr("10.0.0.1", "1.2.3.4", 0, a, sizeof a);
    EXPECT_STR_EQ("10.0.0.1", a);   /* not trusted: X-Forwarded-For ignored */
    jg_client_addr("10.0.0.1", "1.2.3.4", 1, a, sizeof a);
    EXPECT_STR_EQ("1.2.3.4", a);
    jg_client_addr("10.0.0.1", "6.6.6.6, 1.2.3.4", 1, a, sizeof a);
    EXPECT_STR_EQ("1.2.3.4", a);    /* the last: what the trusted proxy appended */
    jg_client_addr("10.0.0.1", "1.2.3.4, not-an-ip", 1, a, sizeof a);
    EXPECT_STR_EQ("10.0.0.1", a);
    jg_client_addr("10.0.0.1", "", 1, a, sizeof a);
    EXPECT_STR_EQ("10.0.0.1", a);
    jg_client_addr("10.0.0.1", NULL, 1, a, sizeof a);
    EXPECT_STR_EQ("10.0.0.1", a);
    jg_client_addr("10.0.0.1", " 2001:DB8:0:0::1 ", 1, a, sizeof a);
    EXPECT_STR_EQ("2001:db8::1", a);   /* one spelling per address */
    jg_client_addr(NULL, NULL, 0, a, sizeof a);
    EXPECT_STR_EQ("unknown", a);
}

UNIT_TEST(access_classes_of_every_route)
{
    static const struct { jg_route_id_t id; jg_access_t access; } want[] = {
        {JG_ROUTE_SUBMIT, JG_ACCESS_WRITE},      {JG_ROUTE_CANCEL, JG_ACCESS_WRITE},
        {JG_ROUTE_STATUS, JG_ACCESS_READ},       {JG_ROUTE_LOGS, JG_ACCESS_READ},
        {JG_ROUTE_CACHE_KEY, JG_ACCESS_WRITE},   {JG_ROUTE_CACHE_GET, JG_ACCESS_READ},
        {JG_ROUTE_CACHE_PUT, JG_ACCESS_WRITE},   {JG_ROUTE_CACHE_DELETE, JG_ACCESS_WRITE},
        {JG_ROUTE_HEALTH, JG_ACCESS_OPEN},       {JG_ROUTE_STATS, JG_ACCESS_READ},
        {JG_ROUTE_METRICS, JG_ACCESS_READ},      {JG_ROUTE_LIST, JG_ACCESS_READ},
        {JG_ROUTE_RETRY, JG_ACCESS_WRITE},       {JG_ROUTE_DELETE, JG_ACCESS_WRITE},
        {JG_ROUTE_QUEUES, JG_ACCESS_READ},       {JG_ROUTE_PAUSE, JG_ACCESS_WRITE},
        {JG_ROUTE_RESUME, JG_ACCESS_WRITE},      {JG_ROUTE_RETRY_FAILED, JG_ACCESS_WRITE},
    };
    size_t n;
    const jg_route_t *routes = jg_routes(&n);
    EXPECT_INT_EQ((long long)(sizeof want / sizeof want[0]), (long long)n);
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (size_t j = 0; j < sizeof want / sizeof want[0]; j++)
            if (want[j].id == routes[i].id) {
                found = 1;
                if (!EXPECT_INT_EQ(want[j].access, routes[i].access))
                    FAIL("route %s %s", routes[i].method, routes[i].pattern);
            }
        if (!found)
            FAIL("route %s %s has no expected class", routes[i].method, routes[i].pattern);
        /* only the logs route takes ?access_token=, only submits are rate limited */
        EXPECT_INT_EQ(routes[i].id == JG_ROUTE_LOGS, !!(routes[i].flags & JG_ROUTE_QUERY_TOKEN));
        EXPECT_INT_EQ(routes[i].id == JG_ROUTE_SUBMIT,
                      !!(routes[i].flags & JG_ROUTE_RATE_LIMITED));
    }
}

UNIT_TEST(access_idempotency_keys_are_scoped_by_caller)
{
    jg_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    strcpy(cfg.key_prefix, "jobgate");
    char none[JG_KEY_MAX], a[JG_KEY_MAX], b[JG_KEY_MAX];
    const char *ca = "1111111111111111111111111111111111111111111111111111111111111111";
    const char *cb = "2222222222222222222222222222222222222222222222222222222222222222";
    jg_key_idempotency(&cfg, "", "order-1", none);
    jg_key_idempotency(&cfg, ca, "order-1", a);
    jg_key_idempotency(&cfg, cb, "order-1", b);
    EXPECT_TRUE(strcmp(none, a) != 0);
    EXPECT_TRUE(strcmp(a, b) != 0);
    EXPECT_NOT_CONTAINS(a, ca);
    EXPECT_INT_EQ(strlen("jobgate:idem:") + 64, strlen(a));
    char rl[JG_KEY_MAX];
    jg_key_ratelimit(&cfg, "1.2.3.4", rl);
    EXPECT_NOT_CONTAINS(rl, "1.2.3.4");
    EXPECT_INT_EQ(strlen("jobgate:rl:") + 64, strlen(rl));
}
