/* test_speed.c — the hot paths' printf-free formatting (issue 15): integers, RFC 3339 times
 * and the CGI status/header block, each against what libc's own formatting gives. */
#include "unit.h"
#include "../../shared/buf.h"
#include "../../shared/http.h"
#include "../../shared/keys.h"
#include "../../shared/timefmt.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

UNIT_TEST(fmt_int_is_what_printf_lld_gives)
{
    const long long vs[] = {0, 1, -1, 9, 10, -10, 99, 1000, 1099511627776LL, 999999999999LL,
                            LLONG_MAX, LLONG_MIN, -1000, 123456789};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        char want[32], got[24];
        snprintf(want, sizeof want, "%lld", vs[i]);
        size_t n = jg_fmt_int(vs[i], got);
        EXPECT_STR_EQ(want, got);
        EXPECT_INT_EQ((long long)strlen(want), (long long)n);
    }
}

UNIT_TEST(time_format_is_what_gmtime_gives_over_four_centuries)
{
    /* every day of 1970..2370 at a varying time of day, and leap-day edges */
    int bad = 0;
    for (int64_t day = 0; day < 146097 && bad < 3; day++) {
        int64_t ms = day * 86400000 + (day * 7919 % 86400000) + day % 1000;
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        char want[64], got[32];
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
        jg_time_format(ms, got);
        if (!EXPECT_STR_EQ(want, got))
            bad++;
    }
    char got[32];
    jg_time_format(951782400123LL, got);   /* 2000-02-29, a leap day of a century year */
    EXPECT_STR_EQ("2000-02-29T00:00:00.123Z", got);
    jg_time_format(4107542399999LL, got);  /* 2100-02-28 23:59:59.999: 2100 is no leap year */
    EXPECT_STR_EQ("2100-02-28T23:59:59.999Z", got);
}

UNIT_TEST(rendered_status_and_headers_are_the_cgi_block)
{
    jg_buf_t out = JG_BUF_INIT;
    jg_resp_render_parts(&out, 200, "ETag: \"3\"\r\n", "application/json", "no-store", "{}", 2, 0);
    EXPECT_STR_EQ("Status: 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
                  "Content-Length: 2\r\nETag: \"3\"\r\n\r\n{}", out.data);
    jg_buf_reset(&out);
    jg_resp_render_parts(&out, 304, "", "application/json", NULL, NULL, 0, 0);
    EXPECT_STR_EQ("Status: 304 Not Modified\r\n\r\n", out.data);
    jg_buf_free(&out);
}

UNIT_TEST(keys_built_without_printf_truncate_as_snprintf_does)
{
    jg_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    memset(cfg.key_prefix, 'p', sizeof cfg.key_prefix - 1);   /* the longest prefix */
    char key[JG_KEY_MAX], want[1024];
    char queue[JG_NAME_MAX + 1], what[200];
    memset(queue, 'q', JG_NAME_MAX);
    queue[JG_NAME_MAX] = '\0';
    memset(what, 'w', sizeof what - 1);
    what[sizeof what - 1] = '\0';
    char tag[JG_TAG_LEN + 1];
    jg_queue_tag(queue, tag);
    int n = snprintf(want, sizeof want, "%s:{%s}:q:%s:%s", cfg.key_prefix, tag, queue, what);
    EXPECT_INT_EQ(n, jg_key_queue(&cfg, queue, what, key));
    want[JG_KEY_MAX - 1] = '\0';
    EXPECT_STR_EQ(want, key);
    const char *id = "37a8eec1.AAAAAAAAAAAAAAAAAAAAAA";
    n = snprintf(want, sizeof want, "%s:{%.8s}:job:%s", cfg.key_prefix, id, id);
    EXPECT_INT_EQ(n, jg_key_job(&cfg, id, key));
    EXPECT_STR_EQ(want, key);
    char hex[65];
    memset(hex, 'a', 64);
    hex[64] = '\0';
    n = snprintf(want, sizeof want, "%s:{%s}:q:%s:inflight:%s", cfg.key_prefix, tag, queue, hex);
    EXPECT_INT_EQ(n, jg_key_inflight(&cfg, queue, hex, key));
    want[JG_KEY_MAX - 1] = '\0';
    EXPECT_STR_EQ(want, key);
}
