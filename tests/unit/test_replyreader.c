/* test_replyreader.c — the bounds on Redis replies (shared/replyreader.c): what a hostile or
 * broken Redis can declare is refused before it is allocated, whole replies still read as
 * hiredis reads them, and input split anywhere reads the same. The refusal's path to a 503 is
 * tested live by tests/test_hostile_redis.py. */
#include "replyreader.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads text through a bounded reader fed in pieces of step bytes; returns 0 with *out (which
 * may be NULL: not complete), or -1 with why. */
static int read_all(const char *text, size_t len, size_t step, size_t bulk_max, redisReply **out,
                    char *why, size_t whylen)
{
    redisReader *rd = redisReaderCreate();
    jg_reply_bound(rd, bulk_max);
    void *rep = NULL;
    int rc = 0;
    for (size_t off = 0; off < len && rep == NULL && rc == 0; off += step) {
        redisReaderFeed(rd, text + off, len - off < step ? len - off : step);
        rc = jg_reply_read(rd, &rep, why, whylen);
    }
    redisReaderFree(rd);
    *out = rep;
    return rc;
}

UNIT_TEST(reply_reader_reads_what_hiredis_reads)
{
    const char *text = "*4\r\n$3\r\nfoo\r\n:-42\r\n$-1\r\n*2\r\n+OK\r\n-ERR no\r\n";
    for (size_t step = 1; step <= strlen(text); step++) {
        redisReply *r = NULL;
        char why[128] = "";
        if (read_all(text, strlen(text), step, 0, &r, why, sizeof why) || r == NULL) {
            FAIL("split every %zu bytes: expected a reply, got %s", step, why[0] ? why : "none");
            freeReplyObject(r);
            continue;
        }
        EXPECT_INT_EQ(REDIS_REPLY_ARRAY, r->type);
        EXPECT_INT_EQ(4, r->elements);
        EXPECT_STR_EQ("foo", r->element[0]->str);
        EXPECT_INT_EQ(-42, r->element[1]->integer);
        EXPECT_INT_EQ(REDIS_REPLY_NIL, r->element[2]->type);
        EXPECT_INT_EQ(REDIS_REPLY_STATUS, r->element[3]->element[0]->type);
        EXPECT_STR_EQ("ERR no", r->element[3]->element[1]->str);
        freeReplyObject(r);   /* hiredis' own free takes our objects */
    }
}

/* Each hostile reply is refused with a reason, whatever it declares. */
UNIT_TEST(reply_reader_refuses_what_no_jobgate_reply_declares)
{
    struct { const char *name, *text, *why; } cases[] = {
        {"array declaring 420533333 elements", "*420533333\r\n", "over the bound 1000000"},
        {"array declaring INT_MAX elements", "*2147483647\r\n", "over the bound"},
        {"nested array declaring too many", "*1\r\n*2\r\n*1000001\r\n", "over the bound"},
        {"array length past INT_MAX", "*2147483648\r\n", "out of range"},
        {"array length past 2^63", "*99999999999999999999\r\n", "Bad multi-bulk length"},
        {"negative array length", "*-2\r\n", "out of range"},
        {"bulk length past 2^63", "$99999999999999999999\r\n", "Bad bulk string length"},
        {"negative bulk length", "$-5\r\n", "out of range"},
        {"nesting deeper than 7", "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
         "depth > 7"},
        {"unknown type byte", "!3\r\nfoo\r\n", "Protocol error"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        redisReply *r = NULL;
        char why[128] = "";
        int rc = read_all(cases[i].text, strlen(cases[i].text), 1, 0, &r, why, sizeof why);
        if (!EXPECT_INT_EQ(-1, rc))
            fprintf(stderr, "  %s: read as a reply\n", cases[i].name);
        else if (!EXPECT_CONTAINS(why, cases[i].why))
            fprintf(stderr, "  %s\n", cases[i].name);
        freeReplyObject(r);
    }
}

/* A bulk (or line) longer than the bound is refused while it arrives, before it is all there. */
UNIT_TEST(reply_reader_refuses_a_long_bulk_before_it_has_arrived)
{
    size_t bound = 1000, big = 100000;
    char *text = malloc(big + 32);
    int n = snprintf(text, 32, "$%zu\r\n", big);
    memset(text + n, 'x', big);
    memcpy(text + n + big, "\r\n", 2);
    redisReader *rd = redisReaderCreate();
    jg_reply_bound(rd, bound);
    void *rep = NULL;
    char why[128] = "";
    size_t fed = 0;
    int rc = 0;
    while (rc == 0 && fed < (size_t)n + big + 2) {
        redisReaderFeed(rd, text + fed, 512);
        fed += 512;
        rc = jg_reply_read(rd, &rep, why, sizeof why);
    }
    EXPECT_INT_EQ(-1, rc);
    EXPECT_CONTAINS(why, "still arriving");
    if (!EXPECT_TRUE(fed <= bound + 64 + 512))
        fprintf(stderr, "  refused after %zu bytes\n", fed);
    redisReaderFree(rd);

    /* the same bulk, complete in one piece: refused as a string over the bound */
    redisReply *r = NULL;
    EXPECT_INT_EQ(-1, read_all(text, (size_t)n + big + 2, big + 64, bound, &r, why, sizeof why));
    EXPECT_CONTAINS(why, "string of 100000 bytes over the bound 1000");
    /* a status line without its end, or a bulk header of endless digits: refused as a line (64
     * KiB), whatever the bulk bound (hiredis scans a line from its start at every read) */
    memset(text, 'x', big);
    text[0] = '+';
    EXPECT_INT_EQ(-1, read_all(text, big, 4096, 0, &r, why, sizeof why));
    EXPECT_CONTAINS(why, "of a line still arriving, over the bound 65536");
    memset(text, '1', big);
    text[0] = '$';
    EXPECT_INT_EQ(-1, read_all(text, big, 4096, 0, &r, why, sizeof why));
    EXPECT_CONTAINS(why, "of a line still arriving, over the bound 65536");
    /* a whole error line over 64 KiB, in one piece */
    memset(text, 'x', big);
    text[0] = '-';
    memcpy(text + big - 2, "\r\n", 2);
    EXPECT_INT_EQ(-1, read_all(text, big, big, 0, &r, why, sizeof why));
    EXPECT_CONTAINS(why, "line of 99997 bytes over the bound 65536");
    /* within the bound: read */
    snprintf(text, 32, "$%zu\r\n", bound);
    n = (int)strlen(text);
    memset(text + n, 'y', bound);
    memcpy(text + n + bound, "\r\n", 2);
    EXPECT_INT_EQ(0, read_all(text, (size_t)n + bound + 2, 7, bound, &r, why, sizeof why));
    if (EXPECT_TRUE(r != NULL))
        EXPECT_INT_EQ(bound, r->len);
    freeReplyObject(r);
    free(text);
}

/* Many elements, each within the bounds, may not add up past 8 bulk bounds in one reply. */
UNIT_TEST(reply_reader_refuses_a_reply_too_large_in_all)
{
    size_t bound = 1000;   /* 8,000 bytes of objects in all */
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof text, "*200\r\n");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, ":%d\r\n", i);
    redisReply *r = NULL;
    char why[128] = "";
    EXPECT_INT_EQ(-1, read_all(text, n, 13, bound, &r, why, sizeof why));
    EXPECT_CONTAINS(why, "bytes in all");
    EXPECT_TRUE(r == NULL);
    /* 20 of them fit */
    n = (size_t)snprintf(text, sizeof text, "*20\r\n");
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, ":%d\r\n", i);
    EXPECT_INT_EQ(0, read_all(text, n, 13, bound, &r, why, sizeof why));
    if (EXPECT_TRUE(r != NULL))
        EXPECT_INT_EQ(19, r->element[19]->integer);
    freeReplyObject(r);
}

UNIT_TEST(reply_reader_bulk_bound_holds_jobgates_largest_value)
{
    /* a job object: a payload of JOBGATE_MAX_BODY bytes, a 16 MiB result, and a margin */
    EXPECT_UINT_EQ(1048576 + 16 * 1048576 + 1048576, jg_reply_bulk_max(1048576));
}
