/* test_json.c — unit tests of shared/json.c: the strict JSON check, top-level member lookup,
 * RFC 8785 canonical form (the RFC's own examples and number table, plus a randomized
 * shortest-round-trip test) and the cache key of contract section 6.
 *
 * Expected cache keys were computed outside this code, with
 *   printf '%s' '<canonical text>' | sha256sum
 * and the number strings with node's String(x) (ECMAScript Number.prototype.toString). */
#include "http.h"
#include "json.h"
#include "unit.h"

#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Under valgrind (20x slower) the randomized test takes a smaller sample by default. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND() RUNNING_ON_VALGRIND
#endif
#endif
#ifndef UNDER_VALGRIND
#define UNDER_VALGRIND() 0
#endif

/* ---- helpers ---- */

static jg_json_status_t check(const char *s, char *msg, size_t msglen)
{
    return jg_json_check(s, strlen(s), 64, msg, msglen);
}

/* The status of s, with its message checked to contain want_msg when that is not NULL. */
#define EXPECT_CHECK(want, s, want_msg)                                  \
    do {                                                                 \
        char m_[160] = "";                                               \
        EXPECT_INT_EQ(want, jg_json_check((s), strlen(s), 64, m_, sizeof m_)); \
        if ((want_msg) != NULL)                                          \
            EXPECT_CONTAINS(m_, (const char *)(want_msg));               \
    } while (0)

/* The same with an explicit length (for inputs holding NUL bytes). */
#define EXPECT_CHECK_N(want, s, n) EXPECT_INT_EQ(want, jg_json_check((s), (n), 64, NULL, 0))

/* JCS of s as a NUL-terminated string in a static buffer, or "<error>". */
static const char *jcs(const char *s)
{
    static jg_buf_t b = JG_BUF_INIT;
    static char out[1 << 16];
    jg_buf_reset(&b);
    if (jg_jcs(s, strlen(s), &b) != 0) {
        jg_buf_free(&b);
        return "<error>";
    }
    snprintf(out, sizeof out, "%s", b.data ? b.data : "");
    jg_buf_free(&b);
    return out;
}

static double from_bits(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static uint64_t to_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static const char *number(double d)
{
    static char out[JG_NUMBER_MAX];
    if (jg_json_number(d, out) < 0)
        return "<error>";
    return out;
}

/* ---- jg_json_check: what is accepted ---- */

UNIT_TEST(json_check_accepts_every_kind_of_value)
{
    const char *good[] = {
        "{}", "[]", "0", "-0", "1", "-1.5", "1.5e+10", "1E-2", "0.0", "\"\"", "\"x\"", "true",
        "false", "null", "[1,\"a\",true,false,null,{},[]]", "{\"a\":[1,2,{\"b\":null}],\"c\":{}}",
        " \t\n\r{\"a\" : 1 , \"b\" :[ ] }\r\n\t ", "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0041\"",
        "\"\\u0000\"", u8"\"\u00e9\u20ac\U0001F600\"", "\"\xef\xbf\xbf\"", /* U+FFFF: allowed */
        "1e400", "-1e400", "123456789012345678901234567890123456789",
        "0.0000000000000000000000000000000000000000000000000000000000000000000001",
        "{\"a\":{\"a\":1}}", "[{\"a\":1},{\"a\":2}]", "{\"a\":1,\"A\":2}",
        "{\"a\\u0000\":1,\"a\":2}", "{\"\\ud83d\\ude00\":1,\"\\ud83d\\ude01\":2}",
        "\"\\uD83D\\uDE00\"", "\"\\udbff\\udfff\"", "\"\xf4\x8f\xbf\xbf\"", /* U+10FFFF */
        "\"\x7f\"",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char msg[128] = "";
        if (!EXPECT_INT_EQ(JG_JSON_OK, check(good[i], msg, sizeof msg)))
            FAIL("input %s: %s", good[i], msg);
    }
}

UNIT_TEST(json_check_leaves_msg_empty_and_accepts_null_msg)
{
    char msg[32] = "junk";
    EXPECT_INT_EQ(JG_JSON_OK, check("{}", msg, sizeof msg));
    EXPECT_STR_EQ("", msg);
    EXPECT_INT_EQ(JG_JSON_OK, jg_json_check("[1]", 3, 64, NULL, 0));
    EXPECT_INT_EQ(JG_JSON_SYNTAX, jg_json_check("[1", 2, 64, NULL, 0));
    EXPECT_INT_EQ(JG_JSON_SYNTAX, jg_json_check(NULL, 0, 64, NULL, 0));
}

UNIT_TEST(json_check_reads_only_len_bytes)
{
    /* the length, not a NUL, ends the text */
    EXPECT_CHECK_N(JG_JSON_OK, "[1]garbage", 3);
    EXPECT_CHECK_N(JG_JSON_SYNTAX, "[1]\0", 4);
    EXPECT_CHECK_N(JG_JSON_SYNTAX, "\"a\0b\"", 5);   /* raw NUL in a string */
    EXPECT_CHECK_N(JG_JSON_OK, "\"ab\"", 4);
    EXPECT_CHECK_N(JG_JSON_SYNTAX, "\"ab\"", 3);
    EXPECT_CHECK_N(JG_JSON_SYNTAX, "\"\\u00", 5);
    EXPECT_CHECK_N(JG_JSON_SYNTAX, "tru", 3);
}

/* ---- jg_json_check: syntax errors ---- */

UNIT_TEST(json_check_rejects_bad_syntax)
{
    const char *bad[] = {
        "", "   ", "{", "[", "]", "}", "[1,]", "[,1]", "{\"a\":1,}", "{,}", "{\"a\" 1}",
        "{\"a\":}", "{a:1}", "{'a':1}", "{1:2}", "[1 2]", "{\"a\":1 \"b\":2}", "01", "-01",
        "1.", ".5", "-", "+1", "1e", "1e+", "1.e3", "0x10", "- 1", "tru", "nul", "True", "NULL",
        "NaN", "Infinity", "-Infinity", "'a'", "\"a", "\"\\x\"", "\"\\u12G4\"", "\"\\u123\"",
        "\"\\U0041\"", "\"a\tb\"", "\"a\nb\"", "{} {}", "[1] x", "1 2", "\"a\" \"b\"",
        "\xef\xbb\xbf{}", /* a byte order mark */
        "// c\n{}", "/* c */ {}", "[1]//", "\"\\\"", "[\"a\\\"]", "{\"a\":1:2}",
        "\v1", "\f1", /* not JSON whitespace */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char msg[128] = "";
        if (!EXPECT_INT_EQ(JG_JSON_SYNTAX, check(bad[i], msg, sizeof msg)))
            FAIL("input %s: %s", bad[i], msg);
        else if (!EXPECT_TRUE(msg[0] != '\0'))
            FAIL("input %s gave no message", bad[i]);
    }
}

UNIT_TEST(json_check_messages_name_the_place)
{
    EXPECT_CHECK(JG_JSON_SYNTAX, "[1,]", "unexpected ']' at byte 3");
    EXPECT_CHECK(JG_JSON_SYNTAX, "[1", "unexpected end of input");
    EXPECT_CHECK(JG_JSON_SYNTAX, "{} x", "trailing characters at byte 3");
    EXPECT_CHECK(JG_JSON_SYNTAX, "", "empty input");
    EXPECT_CHECK(JG_JSON_SYNTAX, "[01]", "invalid number at byte 1");
    EXPECT_CHECK(JG_JSON_SYNTAX, "\"a\tb\"", "control character in string at byte 2");
    EXPECT_CHECK(JG_JSON_SYNTAX, "  \"abc", "unterminated string at byte 2");
    EXPECT_CHECK(JG_JSON_SYNTAX, "\xef\xbb\xbf{}", "unexpected byte 0xef at byte 0");
}

UNIT_TEST(json_check_message_fits_a_small_buffer)
{
    char msg[8];
    memset(msg, 'x', sizeof msg);
    EXPECT_INT_EQ(JG_JSON_DUPLICATE, check("{\"abcdefgh\":1,\"abcdefgh\":2}", msg, sizeof msg));
    EXPECT_INT_EQ(7, strlen(msg));
    EXPECT_INT_EQ(JG_JSON_SYNTAX, check("[", msg, 1));
    EXPECT_STR_EQ("", msg);
}

/* ---- jg_json_check: UTF-8 ---- */

UNIT_TEST(json_check_rejects_invalid_utf8)
{
    const char *bad[] = {
        "\"\xc0\xaf\"",             /* overlong '/' */
        "\"\xc1\xbf\"",             /* overlong */
        "\"\xe0\x80\xaf\"",         /* overlong, 3 bytes */
        "\"\xe0\x9f\xbf\"",         /* overlong U+07FF */
        "\"\xf0\x80\x80\xaf\"",     /* overlong, 4 bytes */
        "\"\xf0\x8f\xbf\xbf\"",     /* overlong U+FFFF */
        "\"\xed\xa0\x80\"",         /* U+D800 encoded */
        "\"\xed\xbf\xbf\"",         /* U+DFFF encoded */
        "\"\xed\xa0\xbd\xed\xb8\x80\"", /* CESU-8 surrogate pair */
        "\"\xf4\x90\x80\x80\"",     /* U+110000 */
        "\"\xf5\x80\x80\x80\"", "\"\xf8\x88\x80\x80\x80\"", "\"\xfe\"", "\"\xff\"",
        "\"\x80\"",                 /* lone continuation byte */
        "\"\xbf\"", "\"\xc3\"",     /* truncated before the quote */
        "\"\xe2\x82\"", "\"\xf0\x9f\x98\"", "\"\xc3\x28\"", "\"\xe2\x28\xa1\"",
        "{\"\xc3\":1}",             /* in a name */
        "[\"ok\",\"\xe9t\xe9\"]",   /* Latin-1 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char msg[128] = "";
        if (!EXPECT_INT_EQ(JG_JSON_UTF8, check(bad[i], msg, sizeof msg)))
            FAIL("input %zu: %s", i, msg);
    }
    EXPECT_CHECK(JG_JSON_UTF8, "[\"ok\",\"\xe9t\xe9\"]", "invalid UTF-8 at byte 7");
    EXPECT_CHECK(JG_JSON_UTF8, "{\"abcdefghijklmnop\":\"\xc0\xaf\"}", "invalid UTF-8 at byte 21");
    /* a truncated sequence at the very end of the text */
    EXPECT_CHECK_N(JG_JSON_UTF8, "\"\xe2\x82\xac\"", 3);
    EXPECT_CHECK_N(JG_JSON_SYNTAX, "\"\xe2\x82\xac\"", 4);
}

/* ---- jg_json_check: depth ---- */

static char *nested(int depth, const char *open, const char *inner, const char *close)
{
    jg_buf_t b = JG_BUF_INIT;
    for (int i = 0; i < depth; i++)
        jg_buf_puts(&b, open);
    jg_buf_puts(&b, inner);
    for (int i = 0; i < depth; i++)
        jg_buf_puts(&b, close);
    return jg_buf_steal(&b);
}

UNIT_TEST(json_check_depth_64_ok_65_rejected)
{
    char *a64 = nested(64, "[", "1", "]"), *a65 = nested(65, "[", "1", "]");
    char *o64 = nested(64, "{\"a\":", "1", "}"), *o65 = nested(65, "{\"a\":", "1", "}");
    char *m64 = nested(32, "[{\"k\":", "1", "}]"), *m65 = nested(32, "[{\"k\":", "[]", "}]");
    char *e65 = nested(65, "[", "", "]");
    EXPECT_CHECK(JG_JSON_OK, a64, NULL);
    EXPECT_CHECK(JG_JSON_DEPTH, a65, "nesting deeper than 64");
    EXPECT_CHECK(JG_JSON_OK, o64, NULL);
    EXPECT_CHECK(JG_JSON_DEPTH, o65, "nesting deeper than 64");
    EXPECT_CHECK(JG_JSON_OK, m64, NULL);
    EXPECT_CHECK(JG_JSON_DEPTH, m65, NULL);
    EXPECT_CHECK(JG_JSON_DEPTH, e65, NULL);   /* empty containers count too */
    /* depth is about nesting, not about how many containers there are */
    char *wide = nested(1, "[", "[[1],[2],[3],{},{\"a\":[]}]", "]");
    EXPECT_INT_EQ(JG_JSON_OK, jg_json_check(wide, strlen(wide), 4, NULL, 0));
    EXPECT_INT_EQ(JG_JSON_DEPTH, jg_json_check(wide, strlen(wide), 3, NULL, 0));
    EXPECT_INT_EQ(JG_JSON_OK, jg_json_check("1", 1, 0, NULL, 0));
    EXPECT_INT_EQ(JG_JSON_DEPTH, jg_json_check("[]", 2, 0, NULL, 0));
    free(a64);
    free(a65);
    free(o64);
    free(o65);
    free(m64);
    free(m65);
    free(e65);
    free(wide);
}

UNIT_TEST(json_check_deep_nesting_does_not_use_the_c_stack)
{
    /* with no practical depth limit, a million levels are still checked without recursion */
    char *deep = nested(1000000, "[", "", "]");
    EXPECT_INT_EQ(JG_JSON_OK, jg_json_check(deep, strlen(deep), 2000000, NULL, 0));
    deep[strlen(deep) - 1] = ' ';
    EXPECT_INT_EQ(JG_JSON_SYNTAX, jg_json_check(deep, strlen(deep), 2000000, NULL, 0));
    free(deep);
}

/* ---- jg_json_check: duplicate member names ---- */

UNIT_TEST(json_check_rejects_duplicate_names)
{
    EXPECT_CHECK(JG_JSON_DUPLICATE, "{\"a\":1,\"a\":2}", "duplicate member name \"a\" at byte 7");
    EXPECT_CHECK(JG_JSON_DUPLICATE, "{\"a\":1,\"b\":2,\"a\":3}", "\"a\" at byte 13");
    EXPECT_CHECK(JG_JSON_DUPLICATE, "{\"a\":1,\"a\":1}", NULL);   /* same value: still ambiguous */
    EXPECT_CHECK(JG_JSON_DUPLICATE, "{\"\":1,\"\":2}", "duplicate member name \"\"");
    /* equal after unescaping */
    EXPECT_CHECK(JG_JSON_DUPLICATE, "{\"a\":1,\"\\u0061\":2}", "duplicate member name \"\\u0061\"");
    EXPECT_CHECK(JG_JSON_DUPLICATE, "{\"\\u0061\":1,\"a\":2}", "duplicate member name \"a\"");
    EXPECT_CHECK(JG_JSON_DUPLICATE, u8"{\"\\u00e9\":1,\"\u00e9\":2}", NULL);
    EXPECT_CHECK(JG_JSON_DUPLICATE, u8"{\"\\u00E9\":1,\"\\u00e9\":2}", NULL);
    EXPECT_CHECK(JG_JSON_DUPLICATE, u8"{\"\\ud83d\\ude00\":1,\"\U0001F600\":2}", NULL);
    EXPECT_CHECK(JG_JSON_DUPLICATE, "{\"\\/\":1,\"/\":2}", NULL);
    EXPECT_CHECK(JG_JSON_DUPLICATE, "{\"\\n\":1,\"\\u000a\":2}", NULL);
    EXPECT_CHECK(JG_JSON_DUPLICATE, "{\"\\u0000\":1,\"\\u0000\":2}", NULL);
    EXPECT_CHECK(JG_JSON_DUPLICATE, "{\"a\\\"b\":1,\"a\\u0022b\":2}", NULL);
    /* in nested objects, in objects inside arrays, after a nested object with the same names */
    EXPECT_CHECK(JG_JSON_DUPLICATE, "{\"x\":{\"b\":1,\"b\":2}}", "\"b\" at byte 12");
    EXPECT_CHECK(JG_JSON_DUPLICATE, "[{\"a\":1},{\"b\":1,\"b\":2}]", NULL);
    EXPECT_CHECK(JG_JSON_DUPLICATE, "{\"a\":{\"b\":1,\"c\":2},\"b\":{},\"a\":0}", "\"a\" at byte 26");
    /* the same name in different objects is fine, and so are near misses */
    EXPECT_CHECK(JG_JSON_OK, "{\"a\":{\"a\":{\"a\":1}},\"b\":{\"a\":2}}", NULL);
    EXPECT_CHECK(JG_JSON_OK, "{\"a\":1,\"a \":2,\"A\":3,\"\\u0061\\u0000\":4,\"aa\":5}", NULL);
}

UNIT_TEST(json_check_duplicate_message_is_short_and_utf8)
{
    char msg[256];
    jg_buf_t b = JG_BUF_INIT;
    /* a long name made of 2-byte characters: shown cut at a character boundary */
    jg_buf_puts(&b, "{\"");
    for (int i = 0; i < 100; i++)
        jg_buf_puts(&b, u8"\u00e9");
    jg_buf_puts(&b, "\":1,\"");
    for (int i = 0; i < 100; i++)
        jg_buf_puts(&b, u8"\u00e9");
    jg_buf_puts(&b, "\":2}");
    EXPECT_INT_EQ(JG_JSON_DUPLICATE, jg_json_check(b.data, b.len, 64, msg, sizeof msg));
    EXPECT_TRUE(strlen(msg) < 100);
    EXPECT_CONTAINS(msg, "...\" at byte 206");
    /* the message itself is valid UTF-8: as a JSON string it passes the check */
    jg_buf_t s = JG_BUF_INIT;
    jg_buf_json_string(&s, msg, strlen(msg));
    EXPECT_INT_EQ(JG_JSON_OK, jg_json_check(s.data, s.len, 64, NULL, 0));
    jg_buf_free(&s);
    jg_buf_free(&b);
}

/* An object with n members named "k<i>" in a shuffled order, optionally with one repeat. */
static char *big_object(int n, int with_dup)
{
    jg_buf_t b = JG_BUF_INIT;
    jg_buf_putc(&b, '{');
    for (int i = 0; i < n; i++) {
        int k = (int)(((long)i * 7919) % n);   /* 7919 is prime: a permutation of 0..n-1 */
        jg_buf_printf(&b, "%s\"k%d\":[%d,{\"k%d\":true}]", i ? "," : "", k, i, k);
    }
    if (with_dup)
        jg_buf_printf(&b, ",\"k%d\":null", n / 2);
    jg_buf_putc(&b, '}');
    return jg_buf_steal(&b);
}

UNIT_TEST(json_check_many_members_fast)
{
    /* a 1 MiB object with ~50,000 members: duplicates are found by sorting, not by pairs */
    char *ok = big_object(50000, 0), *dup = big_object(50000, 1);
    EXPECT_TRUE(strlen(ok) > 1000000);
    clock_t t0 = clock();
    EXPECT_CHECK(JG_JSON_OK, ok, NULL);
    EXPECT_CHECK(JG_JSON_DUPLICATE, dup, "duplicate member name \"k25000\"");
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    if (!EXPECT_TRUE(secs < 2.0))
        FAIL("checking 2 MiB took %.2f s", secs);
    free(ok);
    free(dup);
}

UNIT_TEST(json_check_long_string_fast)
{
    jg_buf_t b = JG_BUF_INIT;
    jg_buf_putc(&b, '"');
    for (int i = 0; i < 100000; i++)
        jg_buf_puts(&b, u8"abc\\n\u00e9\u20ac");
    jg_buf_putc(&b, '"');
    EXPECT_INT_EQ(JG_JSON_OK, jg_json_check(b.data, b.len, 64, NULL, 0));
    jg_buf_free(&b);
}

/* ---- jg_json_check: lone surrogates ---- */

UNIT_TEST(json_check_rejects_lone_surrogates)
{
    EXPECT_CHECK(JG_JSON_SURROGATE, "\"\\ud800\"", "lone surrogate \\ud800 at byte 1");
    EXPECT_CHECK(JG_JSON_SURROGATE, "\"\\udc00\"", "lone surrogate \\udc00");
    EXPECT_CHECK(JG_JSON_SURROGATE, "\"\\uDFFF\"", NULL);
    EXPECT_CHECK(JG_JSON_SURROGATE, "\"\\udbff\"", NULL);
    EXPECT_CHECK(JG_JSON_SURROGATE, "\"\\ud800\\u0041\"", NULL);   /* high, then not a low */
    EXPECT_CHECK(JG_JSON_SURROGATE, "\"\\ud800\\ud800\"", NULL);   /* high, high */
    EXPECT_CHECK(JG_JSON_SURROGATE, "\"\\ud800x\"", NULL);
    EXPECT_CHECK(JG_JSON_SURROGATE, "\"\\ud800\\n\"", NULL);
    EXPECT_CHECK(JG_JSON_SURROGATE, "\"\\ude00\\ud83d\"", NULL);   /* low, high: reversed */
    EXPECT_CHECK(JG_JSON_SURROGATE, "\"a\\ud83d\\ude00\\ude00\"", "at byte 14");
    EXPECT_CHECK(JG_JSON_SURROGATE, "{\"\\ud800\":1}", NULL);      /* in a name */
    EXPECT_CHECK(JG_JSON_SURROGATE, "[\"ok\",{\"a\":[\"\\udfff\"]}]", NULL);
    /* a high surrogate whose next escape is not a valid \u escape is a syntax error */
    EXPECT_CHECK(JG_JSON_SYNTAX, "\"\\ud800\\u12\"", NULL);
    /* pairs are fine */
    EXPECT_CHECK(JG_JSON_OK, "\"\\ud800\\udc00\\udbff\\udfff\\ud83d\\ude00\"", NULL);
}

/* ---- jg_json_member ---- */

static const char *member(const char *text, const char *name)
{
    static char out[256];
    const char *v = NULL;
    size_t n = 0;
    if (!jg_json_member(text, strlen(text), name, &v, &n))
        return "<none>";
    snprintf(out, sizeof out, "%.*s", (int)n, v);
    return out;
}

UNIT_TEST(json_member_finds_top_level_values)
{
    const char *t = " { \"type\" : \"echo\" , \"payload\":{\"a\":[1,2,\"]}\"]} ,\"n\": -1.5e3 ,"
                    "\"t\":true,\"z\":null,\"s\":\"a\\\"}b\",\"arr\":[ {} , [] ] } ";
    EXPECT_INT_EQ(JG_JSON_OK, check(t, NULL, 0));
    EXPECT_STR_EQ("\"echo\"", member(t, "type"));
    EXPECT_STR_EQ("{\"a\":[1,2,\"]}\"]}", member(t, "payload"));
    EXPECT_STR_EQ("-1.5e3", member(t, "n"));
    EXPECT_STR_EQ("true", member(t, "t"));
    EXPECT_STR_EQ("null", member(t, "z"));
    EXPECT_STR_EQ("\"a\\\"}b\"", member(t, "s"));
    EXPECT_STR_EQ("[ {} , [] ]", member(t, "arr"));
    EXPECT_STR_EQ("<none>", member(t, "a"));      /* nested only */
    EXPECT_STR_EQ("<none>", member(t, "typ"));
    EXPECT_STR_EQ("<none>", member(t, "types"));
    EXPECT_STR_EQ("<none>", member(t, ""));
}

UNIT_TEST(json_member_matches_names_after_unescaping)
{
    EXPECT_STR_EQ("\"x\"", member("{\"t\\u0079pe\":\"x\"}", "type"));
    EXPECT_STR_EQ("1", member(u8"{\"\\u00e9t\\u00E9\":1}", u8"\u00e9t\u00e9"));
    EXPECT_STR_EQ("2", member("{\"a\\\"b\":2}", "a\"b"));
    EXPECT_STR_EQ("3", member("{\"\":3}", ""));
    EXPECT_STR_EQ("4", member(u8"{\"\\ud83d\\ude00\":4}", u8"\U0001F600"));
}

UNIT_TEST(json_member_not_an_object)
{
    EXPECT_STR_EQ("<none>", member("[{\"a\":1}]", "a"));
    EXPECT_STR_EQ("<none>", member("\"a\"", "a"));
    EXPECT_STR_EQ("<none>", member("{}", "a"));
    EXPECT_STR_EQ("<none>", member("  { }  ", "a"));
    EXPECT_STR_EQ("<none>", member("", "a"));
    const char *v = NULL;
    size_t n = 0;
    EXPECT_INT_EQ(1, jg_json_member("{\"a\":1}", 7, "a", NULL, NULL));
    EXPECT_INT_EQ(1, jg_json_member("{\"a\":12}", 8, "a", &v, &n));
    EXPECT_INT_EQ(2, n);
    EXPECT_TRUE(v && memcmp(v, "12", 2) == 0);
}

/* ---- jg_jcs: the examples of RFC 8785 ---- */

UNIT_TEST(jcs_rfc8785_section_3_2_2_example)
{
    const char *in = "{\n"
                     "  \"numbers\": [333333333.33333329, 1E30, 4.50,\n"
                     "              2e-3, 0.000000000000000000000000001],\n"
                     "  \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\",\n"
                     "  \"literals\": [null, true, false]\n"
                     "}";
    const char *want = u8"{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,"
                       u8"0.002,1e-27],\"string\":\"\u20ac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
    EXPECT_INT_EQ(JG_JSON_OK, check(in, NULL, 0));
    EXPECT_STR_EQ(want, jcs(in));
    /* canonical text is a fixed point */
    EXPECT_STR_EQ(want, jcs(want));
}

UNIT_TEST(jcs_rfc8785_section_3_2_3_sorting_example)
{
    const char *in = "{\n"
                     "  \"\\u20ac\": \"Euro Sign\",\n"
                     "  \"\\r\": \"Carriage Return\",\n"
                     "  \"\\ufb33\": \"Hebrew Letter Dalet With Dagesh\",\n"
                     "  \"1\": \"One\",\n"
                     "  \"\\ud83d\\ude00\": \"Emoji: Grinning Face\",\n"
                     "  \"\\u0080\": \"Control\",\n"
                     "  \"\\u00f6\": \"Latin Small Letter O With Diaeresis\"\n"
                     "}";
    const char *want = u8"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xc2\x80\":\"Control\","
                       u8"\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\","
                       u8"\"\U0001F600\":\"Emoji: Grinning Face\","
                       u8"\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}";
    EXPECT_INT_EQ(JG_JSON_OK, check(in, NULL, 0));
    EXPECT_STR_EQ(want, jcs(in));
}

/* RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text. */
static const struct {
    uint64_t bits;
    const char *want;   /* NULL: not a JSON number (NaN, Infinity) */
} appendix_b[] = {
    {0x0000000000000000ULL, "0"},
    {0x8000000000000000ULL, "0"},
    {0x0000000000000001ULL, "5e-324"},
    {0x8000000000000001ULL, "-5e-324"},
    {0x7fefffffffffffffULL, "1.7976931348623157e+308"},
    {0xffefffffffffffffULL, "-1.7976931348623157e+308"},
    {0x4340000000000000ULL, "9007199254740992"},
    {0xc340000000000000ULL, "-9007199254740992"},
    {0x4430000000000000ULL, "295147905179352830000"},
    {0x7fffffffffffffffULL, NULL},
    {0x7ff0000000000000ULL, NULL},
    {0x44b52d02c7e14af5ULL, "9.999999999999997e+22"},
    {0x44b52d02c7e14af6ULL, "1e+23"},
    {0x44b52d02c7e14af7ULL, "1.0000000000000001e+23"},
    {0x444b1ae4d6e2ef4eULL, "999999999999999700000"},
    {0x444b1ae4d6e2ef4fULL, "999999999999999900000"},
    {0x444b1ae4d6e2ef50ULL, "1e+21"},
    {0x3eb0c6f7a0b5ed8cULL, "9.999999999999997e-7"},
    {0x3eb0c6f7a0b5ed8dULL, "0.000001"},
    {0x41b3de4355555553ULL, "333333333.3333332"},
    {0x41b3de4355555554ULL, "333333333.33333325"},
    {0x41b3de4355555555ULL, "333333333.3333333"},
    {0x41b3de4355555556ULL, "333333333.3333334"},
    {0x41b3de4355555557ULL, "333333333.33333343"},
    {0xbecbf647612f3696ULL, "-0.0000033333333333333333"},
    {0x43143ff3c1cb0959ULL, "1424953923781206.2"},
};

UNIT_TEST(jcs_rfc8785_appendix_b_numbers)
{
    for (size_t i = 0; i < sizeof appendix_b / sizeof appendix_b[0]; i++) {
        double d = from_bits(appendix_b[i].bits);
        const char *want = appendix_b[i].want ? appendix_b[i].want : "<error>";
        if (!EXPECT_STR_EQ(want, number(d)))
            FAIL("bits %016llx", (unsigned long long)appendix_b[i].bits);
        if (!isfinite(d))
            continue;
        /* the same through jg_jcs, from a 17-digit text of the double */
        char text[64];
        snprintf(text, sizeof text, "[%.17g]", d);
        char wrapped[64];
        snprintf(wrapped, sizeof wrapped, "[%s]", want);
        if (!EXPECT_STR_EQ(wrapped, jcs(text)))
            FAIL("text %s", text);
    }
}

/* ---- jg_jcs: structures, arrays, strings, values ---- */

UNIT_TEST(jcs_arrays_keep_order_and_sort_nested_objects)
{
    EXPECT_STR_EQ("[56,{\"1\":[],\"10\":null,\"d\":true}]",
                  jcs("[\n  56,\n  {\n    \"d\": true,\n    \"10\": null,\n    \"1\": [ ]\n  }\n]"));
    EXPECT_STR_EQ("[]", jcs(" [ ] "));
    EXPECT_STR_EQ("[[]]", jcs("[[ ]]"));
    EXPECT_STR_EQ("[3,2,1,[\"c\",\"b\",\"a\"]]", jcs("[3, 2, 1, [\"c\", \"b\", \"a\"]]"));
    EXPECT_STR_EQ("[{},{},[{}]]", jcs("[{ }, {}, [ { } ] ]"));
}

UNIT_TEST(jcs_structures)
{
    const char *in = "{\n  \"1\": {\"f\": {\"f\": \"hi\",\"F\": 5} ,\"\\n\": 56.0},\n"
                     "  \"10\": { },\n  \"\": \"empty\",\n  \"a\": { },\n"
                     "  \"111\": [ {\"e\": \"yes\",\"E\": \"no\" } ],\n  \"A\": { }\n}";
    EXPECT_STR_EQ("{\"\":\"empty\",\"1\":{\"\\n\":56,\"f\":{\"F\":5,\"f\":\"hi\"}},\"10\":{},"
                  "\"111\":[{\"E\":\"no\",\"e\":\"yes\"}],\"A\":{},\"a\":{}}",
                  jcs(in));
}

UNIT_TEST(jcs_unicode_is_not_normalized)
{
    /* A followed by a combining ring stays two characters (no NFC to U+00C5) */
    EXPECT_STR_EQ(u8"{\"Unnormalized Unicode\":\"A\u030a\"}",
                  jcs("{\n  \"Unnormalized Unicode\":\"A\\u030a\"\n}"));
    EXPECT_STR_EQ(u8"\"\u00c5\"", jcs(u8"\"\u00c5\""));
}

UNIT_TEST(jcs_weird_names_and_strings)
{
    const char *in = "{\n  \"\\u20ac\": \"Euro Sign\",\n  \"\\r\": \"Carriage Return\",\n"
                     "  \"\\u000a\": \"Newline\",\n  \"1\": \"One\",\n"
                     "  \"\\u0080\": \"Control\\u007f\",\n  \"\\ud83d\\ude02\": \"Smiley\",\n"
                     "  \"\\u00f6\": \"Latin Small Letter O With Diaeresis\",\n"
                     "  \"\\ufb33\": \"Hebrew Letter Dalet With Dagesh\",\n"
                     "  \"</script>\": \"Browser Challenge\"\n}";
    const char *want = u8"{\"\\n\":\"Newline\",\"\\r\":\"Carriage Return\",\"1\":\"One\","
                       u8"\"</script>\":\"Browser Challenge\",\"\xc2\x80\":\"Control\x7f\","
                       u8"\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\","
                       u8"\"\U0001F602\":\"Smiley\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}";
    EXPECT_STR_EQ(want, jcs(in));
}

UNIT_TEST(jcs_sorts_by_utf16_code_units_not_utf8_bytes)
{
    /* U+1F600 is D83D DE00 in UTF-16: after U+D7FF, before U+E000 and U+FB33 (in UTF-8 it
     * would come last) */
    EXPECT_STR_EQ(u8"{\"\ud7ff\":3,\"\U00010000\":5,\"\U0001F600\":2,\"\ue000\":4,\"\ufb33\":1,"
                  u8"\"\uffff\":6}",
                  jcs("{\"\\ufb33\":1,\"\\ud83d\\ude00\":2,\"\\ud7ff\":3,\"\\ue000\":4,"
                      "\"\\ud800\\udc00\":5,\"\\uffff\":6}"));
    /* prefixes first; raw and escaped names sort by what they mean */
    EXPECT_STR_EQ("{\"\":0,\"a\":1,\"a\\u0000\":2,\"aa\":3,\"ab\":4,\"b\":5}",
                  jcs("{\"b\":5,\"ab\":4,\"a\\u0000\":2,\"aa\":3,\"\\u0061\":1,\"\":0}"));
    EXPECT_STR_EQ(u8"{\"\U0001F600\":1,\"\U0001F601\":2}",
                  jcs(u8"{\"\\ud83d\\ude01\":2,\"\U0001F600\":1}"));
}

UNIT_TEST(jcs_string_escapes_as_json_stringify)
{
    /* every control character below 0x20 */
    jg_buf_t in = JG_BUF_INIT;
    jg_buf_putc(&in, '"');
    for (int c = 0; c < 0x20; c++)
        jg_buf_printf(&in, "\\u%04X", c);
    jg_buf_putc(&in, '"');
    EXPECT_STR_EQ("\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r"
                  "\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018"
                  "\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\"",
                  jcs(in.data));
    jg_buf_free(&in);
    EXPECT_STR_EQ("\"\\\"\\\\/\"", jcs("\"\\u0022\\u005c\\/\""));
    EXPECT_STR_EQ("\"\\\"\\\\/\"", jcs("\"\\\"\\\\/\""));
    EXPECT_STR_EQ("\"\x7f\"", jcs("\"\\u007f\""));                        /* DEL: literal */
    EXPECT_STR_EQ(u8"\"\u2028\u2029\"", jcs("\"\\u2028\\u2029\""));      /* literal */
    EXPECT_STR_EQ(u8"\"\u00e9\uffff\U0010FFFF\"", jcs("\"\\u00E9\\uFFFF\\udbff\\udfff\""));
    EXPECT_STR_EQ("\"</script>\"", jcs("\"<\\/script>\""));
    EXPECT_STR_EQ("\"a\\tb\"", jcs("\"a\\u0009b\""));
    EXPECT_STR_EQ(u8"\"\u00e9\"", jcs(u8"\"\u00e9\""));                  /* raw stays raw */
}

UNIT_TEST(jcs_literals_and_whitespace)
{
    EXPECT_STR_EQ("true", jcs(" true "));
    EXPECT_STR_EQ("false", jcs("\tfalse\n"));
    EXPECT_STR_EQ("null", jcs("\r\nnull"));
    EXPECT_STR_EQ("[1,{\"a\":[],\"b\":2}]", jcs(" [ 1 ,\n { \"b\" : 2 ,\r\n\t\"a\" : [ ] } ] "));
    EXPECT_STR_EQ("{\"a\":[true,false,null]}", jcs("{ \"a\" : [ true , false , null ] }"));
}

UNIT_TEST(jcs_numbers_ecmascript_layout)
{
    struct { const char *in, *want; } cases[] = {
        {"-0", "0"}, {"-0.0", "0"}, {"0e10", "0"}, {"0", "0"}, {"1.0", "1"}, {"1e0", "1"},
        {"100", "100"}, {"1e2", "100"}, {"0.1", "0.1"}, {"-1.5", "-1.5"}, {"1e21", "1e+21"},
        {"1e20", "100000000000000000000"}, {"999999999999999999999", "1e+21"},
        {"123456789012345678901", "123456789012345680000"}, {"1e-7", "1e-7"},
        {"0.000001", "0.000001"}, {"0.0000012345", "0.0000012345"},
        {"0.00000012345", "1.2345e-7"}, {"1.5e30", "1.5e+30"}, {"-1.5e-30", "-1.5e-30"},
        {"1E400", "<error>"}, {"-1e400", "<error>"}, {"1e-400", "0"}, {"-1e-400", "0"},
        {"9007199254740993", "9007199254740992"}, {"4.9e-324", "5e-324"}, {"2e-324", "0"},
        {"3e-324", "5e-324"}, {"0.30000000000000004", "0.30000000000000004"},
        {"0.1000000000000000055511151231257827", "0.1"}, {"12345678.9", "12345678.9"},
        {"1.7976931348623157e308", "1.7976931348623157e+308"},
        {"1.7976931348623158e308", "1.7976931348623157e+308"},
        {"1.7976931348623159e308", "<error>"},   /* rounds to Infinity */
        {"1000e-3", "1"}, {"0.001e3", "1"}, {"0.00000000000000000000000000000000000000001e41", "1"},
        {"[1E2,-0,0.5e-6]", "[100,0,5e-7]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!EXPECT_STR_EQ(cases[i].want, jcs(cases[i].in)))
            FAIL("input %s", cases[i].in);
}

UNIT_TEST(jcs_power_of_two_boundaries)
{
    /* At a power of two the double below is nearer than the one above, so the nearest 16-digit
     * decimal may not read back while the next one up does (a naive "%.{p}e until it reads
     * back" gives 17 digits here). Expected values from node. */
    EXPECT_STR_EQ("7.120236347223045e-307", number(from_bits(0x0060000000000000ULL)));
    EXPECT_STR_EQ("7.854549544476363e-90", number(from_bits(0x2d70000000000000ULL)));
    EXPECT_STR_EQ("5.966672584960166e-154", number(from_bits(0x2020000000000000ULL)));
    EXPECT_STR_EQ("8.98846567431158e+307", number(ldexp(1.0, 1023)));
    EXPECT_STR_EQ("2.2250738585072014e-308", number(ldexp(1.0, -1022)));
    EXPECT_STR_EQ("1.1102230246251565e-16", number(ldexp(1.0, -53)));
}

UNIT_TEST(jcs_non_finite_leaves_output_unchanged)
{
    jg_buf_t b = JG_BUF_INIT;
    jg_buf_puts(&b, "prefix");
    EXPECT_INT_EQ(-1, jg_jcs("{\"b\":[1,2,{\"c\":1e999}],\"a\":\"x\"}", 32, &b));
    EXPECT_STR_EQ("prefix", b.data);
    EXPECT_INT_EQ(6, b.len);
    EXPECT_INT_EQ(0, jg_jcs("{\"b\":1}", 7, &b));
    EXPECT_STR_EQ("prefix{\"b\":1}", b.data);
    jg_buf_free(&b);
    char out[JG_NUMBER_MAX];
    EXPECT_INT_EQ(-1, jg_json_number(NAN, out));
    EXPECT_INT_EQ(-1, jg_json_number(INFINITY, out));
    EXPECT_INT_EQ(-1, jg_json_number(-INFINITY, out));
}

UNIT_TEST(jcs_big_object_and_deep_nesting)
{
    char *big = big_object(20000, 0);
    jg_buf_t b = JG_BUF_INIT;
    EXPECT_INT_EQ(0, jg_jcs(big, strlen(big), &b));
    /* names sorted as strings: k0, k1, k10, k100, ... and each value's inner object intact */
    const char *head = "{\"k0\":[0,{\"k0\":true}],\"k1\":[";
    EXPECT_TRUE(b.len > 0 && strncmp(b.data, head, strlen(head)) == 0);
    EXPECT_TRUE(strstr(b.data, "\"k1\":[") < strstr(b.data, "\"k10\":["));
    EXPECT_TRUE(strstr(b.data, "\"k19999\":[") < strstr(b.data, "\"k2\":["));
    /* JCS output is itself canonical */
    jg_buf_t again = JG_BUF_INIT;
    EXPECT_INT_EQ(0, jg_jcs(b.data, b.len, &again));
    EXPECT_MEM_EQ(b.data, b.len, again.data, again.len);
    jg_buf_free(&again);
    jg_buf_free(&b);
    free(big);

    char *deep = nested(64, "{\"b\":[1,{\"a\":", "\"x\"", "}]}");
    char *want = nested(64, "{\"b\":[1,{\"a\":", "\"x\"", "}]}");
    EXPECT_STR_EQ(want, jcs(deep));
    free(deep);
    free(want);
    deep = nested(100000, "[", "{\"z\" : 1, \"y\":2}", "]");
    want = nested(100000, "[", "{\"y\":2,\"z\":1}", "]");
    b = (jg_buf_t)JG_BUF_INIT;
    EXPECT_INT_EQ(0, jg_jcs(deep, strlen(deep), &b));
    EXPECT_STR_EQ(want, b.data);
    jg_buf_free(&b);
    free(deep);
    free(want);
}

UNIT_TEST(jcs_does_not_loop_on_unchecked_text)
{
    /* text the checker refuses is refused, and nothing is written */
    const char *bad[] = {"[}", "{\"a\"}", "[1,", "{\"a\":", "\"abc", "[\"a\\", "{\"a\":1,", "]]]",
                         "[,,]", "{,}", "{\"a\" 1 \"b\"}", "x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jg_buf_t b = JG_BUF_INIT;
        EXPECT_INT_EQ(-1, jg_jcs(bad[i], strlen(bad[i]), &b));
        EXPECT_INT_EQ(0, b.len);
        jg_buf_free(&b);
    }
}

/* ---- all three on random JSON-like text ---- */

UNIT_TEST(json_random_text_properties)
{
    /* Random short texts over JSON's alphabet: the check never crashes; member lookup and JCS
     * end and stay in bounds on anything; on what the check accepts, the JCS output passes the
     * check again and is its own JCS (canonical text is a fixed point). */
    static const char alphabet[] = "[]{}\",:\\ 01-.eEtrufalsn\xc3\xa9u0d8\n";
    uint64_t st = 12345;
    int accepted = 0;
    jg_buf_t b = JG_BUF_INIT, again = JG_BUF_INIT;
    for (int round = 0; round < 100000; round++) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t len = (size_t)(st >> 60) + 1;
        char *text = malloc(len);   /* exactly len bytes: a read past the end is caught */
        if (text == NULL)
            break;
        for (size_t i = 0; i < len; i++) {
            st = st * 6364136223846793005ULL + 1442695040888963407ULL;
            text[i] = alphabet[(st >> 33) % (sizeof alphabet - 1)];
        }
        const char *v;
        size_t vlen;
        jg_json_member(text, len, "a", &v, &vlen);
        jg_buf_reset(&b);
        int done = jg_jcs(text, len, &b) == 0;   /* unchecked: refused unless it checks */
        int ok = jg_json_check(text, len, 64, NULL, 0) == JG_JSON_OK;
        if (done && jg_json_check(text, len, INT_MAX, NULL, 0) != JG_JSON_OK)
            FAIL("JCS accepted unchecked text %.*s", (int)len, text);
        if (ok) {
            accepted++;
            jg_buf_reset(&b);
            ok = jg_jcs(text, len, &b) == 0;
        }
        if (ok) {
            char msg[128] = "";
            if (!EXPECT_INT_EQ(JG_JSON_OK, jg_json_check(b.data, b.len, 64, msg, sizeof msg)))
                FAIL("JCS of %.*s is %s: %s", (int)len, text, b.data, msg);
            jg_buf_reset(&again);
            jg_jcs(b.data, b.len, &again);
            EXPECT_MEM_EQ(b.data, b.len, again.data, again.len);
        }
        free(text);
    }
    jg_buf_free(&b);
    jg_buf_free(&again);
    EXPECT_TRUE(accepted > 1000);
}

/* ---- JCS of generated documents against an independent canonical rendering ---- */

/* A document generator. The logical value comes from lrng alone; every way of spelling it
 * (member order, whitespace, escapes, number notation) from rrng. With canonical set, it spells
 * the value the RFC 8785 way itself: names sorted by UTF-16 code units, minimal escapes, and
 * numbers m x 10^e (|m| < 10^6, -5 <= e <= 5) as plain decimals, exact by construction. */
typedef struct gen {
    uint64_t lrng, rrng;
    int canonical;
} gen_t;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static unsigned pick(uint64_t *s, unsigned n) { return (unsigned)(splitmix(s) % n); }

static void gen_ws(gen_t *g, jg_buf_t *b)
{
    if (g->canonical)
        return;
    for (unsigned n = pick(&g->rrng, 4); n > 0 && n < 3; n--)
        jg_buf_putc(b, " \t\n\r"[pick(&g->rrng, 4)]);
}

static void put_utf8_cp(jg_buf_t *b, unsigned long cp)
{
    if (cp < 0x80) {
        jg_buf_putc(b, (char)cp);
    } else if (cp < 0x800) {
        jg_buf_putc(b, (char)(0xC0 | (cp >> 6)));
        jg_buf_putc(b, (char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        jg_buf_putc(b, (char)(0xE0 | (cp >> 12)));
        jg_buf_putc(b, (char)(0x80 | ((cp >> 6) & 0x3F)));
        jg_buf_putc(b, (char)(0x80 | (cp & 0x3F)));
    } else {
        jg_buf_putc(b, (char)(0xF0 | (cp >> 18)));
        jg_buf_putc(b, (char)(0x80 | ((cp >> 12) & 0x3F)));
        jg_buf_putc(b, (char)(0x80 | ((cp >> 6) & 0x3F)));
        jg_buf_putc(b, (char)(0x80 | (cp & 0x3F)));
    }
}

static unsigned long gen_cp(gen_t *g)
{
    unsigned long cp;
    switch (pick(&g->lrng, 6)) {
    case 0: return 0x20 + pick(&g->lrng, 95);
    case 1: return pick(&g->lrng, 0x20);
    case 2: return (unsigned char)"\"\\/\x7f"[pick(&g->lrng, 4)];
    case 3: return 0x80 + pick(&g->lrng, 0x800 - 0x80);
    case 4:
        cp = 0x800 + pick(&g->lrng, 0x10000 - 0x800 - 0x800);
        return cp >= 0xD800 ? cp + 0x800 : cp;   /* no surrogates */
    default: return 0x10000 + pick(&g->lrng, 0x100000);
    }
}

static void put_u_escape(gen_t *g, jg_buf_t *b, unsigned long unit)
{
    jg_buf_printf(b, pick(&g->rrng, 2) ? "\\u%04lx" : "\\u%04lX", unit);
}

static void gen_string_cps(gen_t *g, jg_buf_t *b, const unsigned long *cps, size_t n)
{
    static const char shorts[] = "\"\"\\\\//\bb\ff\nn\rr\tt";
    jg_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned long cp = cps[i];
        const char *sh = NULL;
        for (size_t k = 0; k + 1 < sizeof shorts; k += 2)
            if ((unsigned long)(unsigned char)shorts[k] == cp)
                sh = &shorts[k + 1];
        if (g->canonical) {
            if (sh && cp != '/') {
                jg_buf_putc(b, '\\');
                jg_buf_putc(b, *sh);
            } else if (cp < 0x20) {
                jg_buf_printf(b, "\\u%04lx", cp);
            } else {
                put_utf8_cp(b, cp);
            }
            continue;
        }
        unsigned mode = pick(&g->rrng, 3);
        int must = cp < 0x20 || cp == '"' || cp == '\\';
        if (!must && mode == 0) {
            put_utf8_cp(b, cp);
        } else if (sh && mode == 1) {
            jg_buf_putc(b, '\\');
            jg_buf_putc(b, *sh);
        } else if (cp >= 0x10000) {
            put_u_escape(g, b, 0xD800 + ((cp - 0x10000) >> 10));
            put_u_escape(g, b, 0xDC00 + ((cp - 0x10000) & 0x3FF));
        } else {
            put_u_escape(g, b, cp);
        }
    }
    jg_buf_putc(b, '"');
}

static void gen_number(gen_t *g, jg_buf_t *b)
{
    long m = (long)pick(&g->lrng, 2000001) - 1000000;
    int e = (int)pick(&g->lrng, 11) - 5;
    if (pick(&g->lrng, 4) == 0)
        m /= 1000;   /* more small numbers and zeros */
    if (g->canonical) {
        /* the exact decimal m x 10^e, without trailing zeros after a point */
        if (m == 0) {
            jg_buf_putc(b, '0');
            return;
        }
        unsigned long a = (unsigned long)(m < 0 ? -m : m);
        while (a % 10 == 0) {
            a /= 10;
            e++;
        }
        char d[16];
        int k = snprintf(d, sizeof d, "%lu", a);
        if (m < 0)
            jg_buf_putc(b, '-');
        if (e >= 0) {
            jg_buf_puts(b, d);
            for (int z = 0; z < e; z++)
                jg_buf_putc(b, '0');
        } else if (k + e > 0) {
            jg_buf_printf(b, "%.*s.%s", k + e, d, d + k + e);
        } else {
            jg_buf_puts(b, "0.");
            for (int z = 0; z < -(k + e); z++)
                jg_buf_putc(b, '0');
            jg_buf_puts(b, d);
        }
        return;
    }
    int shift = (int)pick(&g->rrng, 4);   /* m x 10^shift, e - shift: the same number */
    const char *sign = m < 0 ? "-" : (m == 0 && pick(&g->rrng, 2)) ? "-" : "";
    unsigned long a = (unsigned long)(m < 0 ? -m : m);
    char digits[32];
    if (a == 0)
        snprintf(digits, sizeof digits, "0");
    else
        snprintf(digits, sizeof digits, "%lu%.*s", a, shift, "000");
    int ex = a == 0 ? e : e - shift;
    switch (pick(&g->rrng, 3)) {
    case 0:   /* 123e-2, 123E+0 */
        jg_buf_printf(b, "%s%s%s%s%d", sign, digits, pick(&g->rrng, 2) ? "e" : "E",
                      ex >= 0 && pick(&g->rrng, 2) ? "+" : "", ex);
        break;
    case 1:   /* 1.23, with a point placed to absorb the exponent when it is negative */
        if (ex < 0 && (int)strlen(digits) > -ex && digits[0] != '0') {
            int k = (int)strlen(digits);
            jg_buf_printf(b, "%s%.*s.%s", sign, k + ex, digits, digits + k + ex);
        } else if (ex < 0) {   /* 0.000123 */
            jg_buf_printf(b, "%s0.", sign);
            for (int z = (int)strlen(digits); z < -ex; z++)
                jg_buf_putc(b, '0');
            jg_buf_printf(b, "%se0", digits);
        } else {
            jg_buf_printf(b, "%s%s", sign, digits);
            for (int z = 0; z < ex; z++)
                jg_buf_putc(b, '0');
            if (pick(&g->rrng, 2))
                jg_buf_puts(b, ".000");
        }
        break;
    default:   /* 0.123e1 */
        jg_buf_printf(b, "%s0.%se%d", sign, digits, ex + (int)strlen(digits));
        break;
    }
}

/* Compares two names by their UTF-16 code units. */
static int utf16_less(const unsigned long *a, size_t an, const unsigned long *b, size_t bn)
{
    unsigned short ua[64], ub[64];
    size_t na = 0, nb = 0;
    for (size_t i = 0; i < an; i++) {
        if (a[i] >= 0x10000) {
            ua[na++] = (unsigned short)(0xD800 + ((a[i] - 0x10000) >> 10));
            ua[na++] = (unsigned short)(0xDC00 + ((a[i] - 0x10000) & 0x3FF));
        } else {
            ua[na++] = (unsigned short)a[i];
        }
    }
    for (size_t i = 0; i < bn; i++) {
        if (b[i] >= 0x10000) {
            ub[nb++] = (unsigned short)(0xD800 + ((b[i] - 0x10000) >> 10));
            ub[nb++] = (unsigned short)(0xDC00 + ((b[i] - 0x10000) & 0x3FF));
        } else {
            ub[nb++] = (unsigned short)b[i];
        }
    }
    for (size_t i = 0; i < na && i < nb; i++)
        if (ua[i] != ub[i])
            return ua[i] < ub[i];
    return na < nb;
}

#define GEN_MAX_MEMBERS 6
#define GEN_MAX_NAME 4

static void gen_value(gen_t *g, jg_buf_t *b, int depth)
{
    unsigned kind = pick(&g->lrng, depth >= 4 ? 4 : 6);
    gen_ws(g, b);
    switch (kind) {
    case 0:
        jg_buf_puts(b, (const char *[]){"true", "false", "null"}[pick(&g->lrng, 3)]);
        break;
    case 1:
        gen_number(g, b);
        break;
    case 2:
    case 3: {
        unsigned long cps[8];
        size_t n = pick(&g->lrng, 8);
        for (size_t i = 0; i < n; i++)
            cps[i] = gen_cp(g);
        gen_string_cps(g, b, cps, n);
        break;
    }
    case 4: {
        unsigned n = pick(&g->lrng, 5);
        jg_buf_putc(b, '[');
        for (unsigned i = 0; i < n; i++) {
            if (i)
                jg_buf_putc(b, ',');
            gen_value(g, b, depth + 1);
        }
        gen_ws(g, b);
        jg_buf_putc(b, ']');
        break;
    }
    default: {
        unsigned long names[GEN_MAX_MEMBERS][GEN_MAX_NAME];
        size_t nlen[GEN_MAX_MEMBERS];
        jg_buf_t parts[GEN_MAX_MEMBERS];
        unsigned n = 0, want = pick(&g->lrng, GEN_MAX_MEMBERS + 1);
        for (unsigned i = 0; i < want; i++) {
            size_t len = pick(&g->lrng, GEN_MAX_NAME + 1);
            for (size_t k = 0; k < len; k++)   /* mostly a small alphabet: shared prefixes */
                names[n][k] = pick(&g->lrng, 2) ? (unsigned long)"ab"[pick(&g->lrng, 2)] : gen_cp(g);
            nlen[n] = len;
            int dup = 0;
            for (unsigned j = 0; j < n; j++)
                if (nlen[j] == len && memcmp(names[j], names[n], len * sizeof names[0][0]) == 0)
                    dup = 1;
            parts[n] = (jg_buf_t)JG_BUF_INIT;
            gen_ws(g, &parts[n]);
            gen_string_cps(g, &parts[n], names[n], len);
            gen_ws(g, &parts[n]);
            jg_buf_putc(&parts[n], ':');
            gen_value(g, &parts[n], depth + 1);   /* generated even for a dropped duplicate */
            gen_ws(g, &parts[n]);
            if (dup)
                jg_buf_free(&parts[n]);
            else
                n++;
        }
        unsigned order[GEN_MAX_MEMBERS];
        for (unsigned i = 0; i < n; i++)
            order[i] = i;
        for (unsigned i = 1; i < n; i++) {   /* insertion sort, or a shuffle */
            if (g->canonical) {
                for (unsigned j = i; j > 0 && utf16_less(names[order[j]], nlen[order[j]],
                                                         names[order[j - 1]], nlen[order[j - 1]]); j--) {
                    unsigned t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
            } else {
                unsigned j = pick(&g->rrng, i + 1), t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        }
        jg_buf_putc(b, '{');
        for (unsigned i = 0; i < n; i++) {
            if (i)
                jg_buf_putc(b, ',');
            jg_buf_append(b, parts[order[i]].data, parts[order[i]].len);
        }
        if (n == 0)
            gen_ws(g, b);
        jg_buf_putc(b, '}');
        for (unsigned i = 0; i < n; i++)
            jg_buf_free(&parts[i]);
        break;
    }
    }
    gen_ws(g, b);
}

UNIT_TEST(jcs_generated_documents_match_independent_canonical_form)
{
    jg_buf_t canon = JG_BUF_INIT, va = JG_BUF_INIT, vb = JG_BUF_INIT, out = JG_BUF_INIT;
    int failed = 0;
    for (uint64_t seed = 1; seed <= 3000 && !failed; seed++) {
        gen_t g = {seed, 0, 1};
        jg_buf_reset(&canon);
        gen_value(&g, &canon, 0);
        g = (gen_t){seed, seed * 31 + 1, 0};
        jg_buf_reset(&va);
        gen_value(&g, &va, 0);
        g = (gen_t){seed, seed * 77 + 5, 0};
        jg_buf_reset(&vb);
        gen_value(&g, &vb, 0);
        char msg[128] = "";
        if (!EXPECT_INT_EQ(JG_JSON_OK, jg_json_check(va.data, va.len, 64, msg, sizeof msg))) {
            FAIL("seed %llu: %s: %s", (unsigned long long)seed, va.data, msg);
            break;
        }
        EXPECT_INT_EQ(JG_JSON_OK, jg_json_check(vb.data, vb.len, 64, NULL, 0));
        EXPECT_INT_EQ(JG_JSON_OK, jg_json_check(canon.data, canon.len, 64, NULL, 0));
        jg_buf_reset(&out);
        EXPECT_INT_EQ(0, jg_jcs(va.data, va.len, &out));
        if (!EXPECT_MEM_EQ(canon.data, canon.len, out.data, out.len)) {
            FAIL("seed %llu: input %s", (unsigned long long)seed, va.data);
            failed = 1;
        }
        jg_buf_reset(&out);
        EXPECT_INT_EQ(0, jg_jcs(vb.data, vb.len, &out));
        if (!EXPECT_MEM_EQ(canon.data, canon.len, out.data, out.len))
            failed = 1;
        char ka[65], kb[65];
        EXPECT_INT_EQ(0, jg_cache_key("t", va.data, va.len, NULL, ka));
        EXPECT_INT_EQ(0, jg_cache_key("t", vb.data, vb.len, NULL, kb));
        EXPECT_STR_EQ(ka, kb);
    }
    jg_buf_free(&canon);
    jg_buf_free(&va);
    jg_buf_free(&vb);
    jg_buf_free(&out);
}

/* ---- jg_json_number: randomized shortest round trip ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng(void)   /* xorshift64*: fixed seed, so a failure can be replayed */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* The significant digits of an ECMAScript number string: their count, in k. */
static int significant_digits(const char *s)
{
    char digits[64];
    int n = 0;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9' && n < 63)
            digits[n++] = *s;
    int start = 0;
    while (start < n && digits[start] == '0')
        start++;
    while (n > start && digits[n - 1] == '0')
        n--;
    return n - start;
}

/* Does any decimal with k significant digits read back as a (> 0)? Only the k-digit decimals
 * nearest to a, just below and just above it, can. */
static int k_digits_read_back(double a, int k)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.*e", k - 1, a);
    unsigned long long m = 0;
    char *e = strchr(buf, 'e');
    for (char *p = buf; p < e; p++)
        if (*p >= '0' && *p <= '9')
            m = m * 10 + (unsigned long long)(*p - '0');
    int exp10 = (int)strtol(e + 1, NULL, 10) - (k - 1);
    for (int delta = -1; delta <= 1; delta++) {
        if (m + (unsigned long long)delta == 0)
            continue;
        char cand[64];
        snprintf(cand, sizeof cand, "%llue%d", m + (unsigned long long)delta, exp10);
        if (strtod(cand, NULL) == a)
            return 1;
    }
    return 0;
}

UNIT_TEST(jcs_numbers_random_shortest_round_trip)
{
    /* JG_UNIT_RANDOM_N=<count> overrides the sample size */
    const char *env = getenv("JG_UNIT_RANDOM_N");
    long n = env ? strtol(env, NULL, 10) : UNDER_VALGRIND() ? 20000 : 200000;
    long checked = 0;
    char text[64];
    jg_buf_t b = JG_BUF_INIT;
    for (long i = 0; i < n; i++) {
        uint64_t bits = rng();
        if (i % 4 == 1)   /* also plenty of everyday magnitudes: 2^-60 .. 2^60 */
            bits = (bits & 0x800FFFFFFFFFFFFFULL) | ((uint64_t)(1023 - 60 + (int)(rng() % 121)) << 52);
        else if (i % 4 == 2)   /* and short decimals */
            bits = to_bits((double)(int64_t)(rng() % 2000001 - 1000000) / 1000.0);
        double d = from_bits(bits);
        if (!isfinite(d))
            continue;
        checked++;
        const char *s = number(d);
        double back = strtod(s, NULL);
        if (!EXPECT_UINT_EQ(d == 0 ? 0 : bits, to_bits(back))) {
            FAIL("bits %016llx gave %s", (unsigned long long)bits, s);
            break;
        }
        int k = significant_digits(s);
        if (d != 0 && k > 1 && k_digits_read_back(fabs(d), k - 1)) {
            FAIL("bits %016llx gave %s but %d digits would do", (unsigned long long)bits, s, k - 1);
            break;
        }
        if (i % 16 == 0) {   /* the whole path: text in, canonical text out */
            snprintf(text, sizeof text, "%.17g", d);
            jg_buf_reset(&b);
            if (!EXPECT_INT_EQ(0, jg_jcs(text, strlen(text), &b)) || !EXPECT_STR_EQ(s, b.data))
                break;
        }
    }
    jg_buf_free(&b);
    EXPECT_TRUE(checked > n * 9 / 10);
}

UNIT_TEST(jcs_numbers_from_text_agree_with_numbers_from_doubles)
{
    /* Short decimal texts take a path that never goes through a double; it must give what the
     * double would. Texts of 1..17 significant digits, exponents across the whole range, many
     * spellings (1.5e3, 15E2, 1500.0, 0.0015e6). */
    uint64_t st = 777;
    char text[96], want[JG_NUMBER_MAX];
    jg_buf_t b = JG_BUF_INIT;
    for (int i = 0; i < 20000; i++) {
        int digits = 1 + (int)(splitmix(&st) % 17);
        int exp10 = (int)(splitmix(&st) % 640) - 320;
        if (i % 2)
            exp10 = (int)(splitmix(&st) % 40) - 20;
        char mant[24];
        for (int k = 0; k < digits; k++)
            mant[k] = (char)('0' + (k == 0 ? 1 + splitmix(&st) % 9 : splitmix(&st) % 10));
        mant[digits] = '\0';
        const char *sign = splitmix(&st) % 2 ? "-" : "";
        switch (splitmix(&st) % 4) {
        case 0:
            snprintf(text, sizeof text, "%s%se%d", sign, mant, exp10);
            break;
        case 1:
            snprintf(text, sizeof text, "%s%c.%sE%+d", sign, mant[0], digits > 1 ? mant + 1 : "0",
                     exp10 + digits - 1);
            break;
        case 2:
            snprintf(text, sizeof text, "%s0.000%s00e%d", sign, mant, exp10 + digits + 3);
            break;
        default:
            snprintf(text, sizeof text, "%s%s000.0e%d", sign, mant, exp10 - 3);
            break;
        }
        double d = strtod(text, NULL);
        int n = jg_json_number(d, want);
        jg_buf_reset(&b);
        int rc = jg_jcs(text, strlen(text), &b);
        if (n < 0) {
            if (!EXPECT_INT_EQ(-1, rc))
                break;
            continue;
        }
        if (!EXPECT_INT_EQ(0, rc) || !EXPECT_STR_EQ(want, b.data)) {
            FAIL("text %s", text);
            break;
        }
    }
    jg_buf_free(&b);
}

UNIT_TEST(jcs_numbers_ignore_the_c_locale)
{
    /* a locale whose decimal point is ',' must change nothing (skipped where none is installed) */
    const char *names[] = {"de_DE.UTF-8", "fr_FR.UTF-8", "ru_RU.UTF-8", "de_DE", "fr_FR"};
    const char *set = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !set; i++)
        set = setlocale(LC_ALL, names[i]);
    EXPECT_STR_EQ("[1.5,0.1,1.7976931348623157e+308,1e-7,333333333.3333333]",
                  jcs("[1.5,0.1,1.7976931348623157e308,1e-7,333333333.33333329]"));
    EXPECT_STR_EQ("2.5e-7", number(2.5e-7));
    EXPECT_STR_EQ("0.30000000000000004", number(0.1 + 0.2));
    if (set)
        setlocale(LC_ALL, "C");
}

/* ---- jg_cache_key ---- */

static const char *cache_key(const char *type, const char *payload, const char *version)
{
    static char hex[65];
    if (jg_cache_key(type, payload, payload ? strlen(payload) : 0, version, hex) != 0)
        return "<error>";
    return hex;
}

UNIT_TEST(cache_key_matches_sha256_of_canonical_text)
{
    /* printf '%s' '{"payload":{},"type":"echo"}' | sha256sum */
    EXPECT_STR_EQ("b5a790f50e957ca182e5acbe5718896668fbf7ddd85313abbdc6efda40a1b16d",
                  cache_key("echo", NULL, NULL));
    EXPECT_STR_EQ("b5a790f50e957ca182e5acbe5718896668fbf7ddd85313abbdc6efda40a1b16d",
                  cache_key("echo", " { } ", NULL));
    /* printf '%s' '{"payload":{"a":"x","b":[1,2]},"type":"echo"}' | sha256sum */
    EXPECT_STR_EQ("2fb71a50a85e75cd2f5270aee3769893214ea3650fef340e705cbd9bf533b8d9",
                  cache_key("echo", "{\"b\": [1.0, 2e0], \"a\": \"\\u0078\"}", NULL));
    /* printf '%s' '{"payload":{},"type":"echo","version":"v1"}' | sha256sum */
    EXPECT_STR_EQ("7f693495adf6e8446653b5bdea5c9ff0f1cf08e3f7ca80a0faad43ebe4bb4d91",
                  cache_key("echo", "{}", "v1"));
    /* printf '%s' '{"payload":[null,true,"é"],"type":"resize.image","version":"a\"b\\c"}' */
    EXPECT_STR_EQ("eac93b315081814d3a4ca9aeba9a130355d7fef282894013223b83bf330ea2a5",
                  cache_key("resize.image", "[ null, true, \"\\u00e9\" ]", "a\"b\\c"));
}

UNIT_TEST(cache_key_ignores_spelling_but_not_meaning)
{
    char k1[65];
    snprintf(k1, sizeof k1, "%s", cache_key("t", "{\"a\":1,\"b\":[1,\"x\"]}", NULL));
    EXPECT_STR_EQ(k1, cache_key("t", "{\"b\":[1,\"x\"],\"a\":1}", NULL));              /* order */
    EXPECT_STR_EQ(k1, cache_key("t", " {\n \"a\" : 1.0 ,\t\"b\":[ 1e0 , \"\\u0078\" ] } ", NULL));
    EXPECT_STR_EQ(k1, cache_key("t", "{\"a\":10e-1,\"b\":[100e-2,\"x\"]}", NULL));
    EXPECT_FALSE(strcmp(k1, cache_key("t", "{\"a\":2,\"b\":[1,\"x\"]}", NULL)) == 0);
    EXPECT_FALSE(strcmp(k1, cache_key("t", "{\"a\":\"1\",\"b\":[1,\"x\"]}", NULL)) == 0);
    EXPECT_FALSE(strcmp(k1, cache_key("u", "{\"a\":1,\"b\":[1,\"x\"]}", NULL)) == 0);
    /* a version changes the key; an empty version is still a version */
    char kv[65];
    snprintf(kv, sizeof kv, "%s", cache_key("t", "{\"a\":1,\"b\":[1,\"x\"]}", "2"));
    EXPECT_FALSE(strcmp(k1, kv) == 0);
    EXPECT_FALSE(strcmp(kv, cache_key("t", "{\"a\":1,\"b\":[1,\"x\"]}", "3")) == 0);
    EXPECT_FALSE(strcmp(k1, cache_key("t", "{\"a\":1,\"b\":[1,\"x\"]}", "")) == 0);
    /* an absent payload is {} */
    char kn[65];
    snprintf(kn, sizeof kn, "%s", cache_key("t", NULL, NULL));
    EXPECT_STR_EQ(kn, cache_key("t", "{}", NULL));
    EXPECT_FALSE(strcmp(kn, cache_key("t", "null", NULL)) == 0);
    /* a number that is not finite has no key */
    EXPECT_STR_EQ("<error>", cache_key("t", "[1e999]", NULL));
    /* 64 lowercase hex */
    const char *k = cache_key("echo", "{\"x\":[1,2,3]}", NULL);
    EXPECT_INT_EQ(64, strlen(k));
    EXPECT_TRUE(strspn(k, "0123456789abcdef") == 64);
}

/* ---- issue 9: jcs on unchecked text, names with U+0000, UTF-8-safe messages ---- */

UNIT_TEST(jcs_refuses_unchecked_text_that_used_to_blow_up)
{
    /* "[" then "{\"\"[}" x 40: the unchecked walk rescanned each span once per open bracket,
     * gigabytes of output. Now it is refused and out is untouched. */
    jg_buf_t text = JG_BUF_INIT, out = JG_BUF_INIT;
    jg_buf_putc(&text, '[');
    for (int i = 0; i < 40; i++)
        jg_buf_puts(&text, "{\"\"[}");
    jg_buf_puts(&out, "prefix");
    EXPECT_INT_EQ(-1, jg_jcs(text.data, text.len, &out));
    EXPECT_STR_EQ("prefix", out.data);
    EXPECT_INT_EQ(6, out.len);
    const char *bad[] = {"[}", "{\"a\"}", "[1,", "{\"a\":1,\"a\":2}", "\"\\ud800\"", "01", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_INT_EQ(-1, jg_jcs(bad[i], strlen(bad[i]), &out));
    EXPECT_INT_EQ(6, out.len);
    jg_buf_free(&text);
    jg_buf_free(&out);
}

UNIT_TEST(jcs_of_deeply_nested_objects_is_one_pass_per_level_not_per_byte)
{
    /* 200,000 nested objects: finding each object's members no longer rescans its whole
     * contents once per enclosing object (that was 10^10 steps here, never finishing) */
    char *deep = nested(200000, "{\"b\":1,\"a\":", "[]", "}");
    char *want = nested(200000, "{\"a\":", "[]", ",\"b\":1}");
    jg_buf_t b = JG_BUF_INIT;
    EXPECT_INT_EQ(0, jg_jcs(deep, strlen(deep), &b));
    EXPECT_TRUE(b.data != NULL && strcmp(want, b.data) == 0);
    jg_buf_free(&b);
    free(deep);
    free(want);
}

UNIT_TEST(json_nul_name_finds_top_level_names_with_u0000)
{
    const char *with[] = {"{\"type\":\"echo\",\"type\\u0000\":\"other\"}",
                          "{\"payload\\u0000\":{}}", "{\"a\":[{\"b\":1}], \"queue\\u0000x\":1}",
                          "{\"\\u0000\":1}"};
    for (size_t i = 0; i < sizeof with / sizeof with[0]; i++) {
        EXPECT_INT_EQ(JG_JSON_OK, check(with[i], NULL, 0));
        EXPECT_TRUE(jg_json_nul_name(with[i], strlen(with[i])) > 0);
    }
    EXPECT_INT_EQ(15, jg_json_nul_name(with[0], strlen(with[0])));
    const char *without[] = {"{\"type\":\"echo\"}", "{\"a\\\\u0000\":1}", "{\"a\":{\"b\\u0000\":1}}",
                             "{\"a\":\"\\u0000\"}", "[\"\\u0000\"]", "{}", "{\"\\u0041\":1}"};
    for (size_t i = 0; i < sizeof without / sizeof without[0]; i++) {
        EXPECT_INT_EQ(JG_JSON_OK, check(without[i], NULL, 0));
        EXPECT_INT_EQ(-1, jg_json_nul_name(without[i], strlen(without[i])));
    }
}

UNIT_TEST(utf8_scrub_keeps_whole_characters_only)
{
    char a[] = "abc\xe2\x82";                         /* a cut euro sign at the end */
    EXPECT_INT_EQ(3, jg_utf8_scrub(a));
    EXPECT_STR_EQ("abc", a);
    char b[] = "unknown field \"\xe2\x82\xac\xe2\x82\"";   /* cut inside, then the quote */
    jg_utf8_scrub(b);
    EXPECT_STR_EQ("unknown field \"\xe2\x82\xac\"", b);
    char c[] = "\xff x \xc0\xaf y \xed\xa0\x80 z \xf4\x90\x80\x80 \xf0\x9f\x98\x80 \xc3\xa9";
    jg_utf8_scrub(c);                                 /* stray, overlong, surrogate, > U+10FFFF */
    EXPECT_STR_EQ(" x  y  z  \xf0\x9f\x98\x80 \xc3\xa9", c);
    char d[] = "";
    EXPECT_INT_EQ(0, jg_utf8_scrub(d));
}

UNIT_TEST(error_message_cut_inside_a_character_still_renders_json)
{
    /* the handlers' "unknown field \"%.64s\"" on 70 euro signs (210 bytes) ends inside one */
    jg_config_t cfg;
    char err[64];
    memset(&cfg, 0, sizeof cfg);
    jg_config_load_env(&cfg, err, sizeof err);
    char name[211];
    for (int i = 0; i < 70; i++)
        memcpy(name + 3 * i, "\xe2\x82\xac", 3);
    name[210] = '\0';
    jg_req_t req;
    memset(&req, 0, sizeof req);
    jg_req_reset(&req, &cfg, NULL, NULL, NULL, NULL);
    jg_fail(&req, 400, "invalid_field", "unknown field \"%.64s\"", name);
    EXPECT_INT_EQ(14 + 1 + 63 + 1, strlen(req.err_msg));   /* 21 whole characters kept */
    jg_buf_t out = JG_BUF_INIT;
    jg_resp_render(&req, &out);
    const char *body = out.data ? strstr(out.data, "\r\n\r\n") : NULL;
    ASSERT_TRUE(body != NULL);
    body += 4;
    char msg[128] = "";
    if (!EXPECT_INT_EQ(JG_JSON_OK, jg_json_check(body, strlen(body), 64, msg, sizeof msg)))
        FAIL("body %s: %s", body, msg);
    /* and a message cut by the 255-byte limit in the middle of a character */
    char longname[600];
    for (int i = 0; i < 200; i++)
        memcpy(longname + 3 * i, "\xe2\x82\xac", 3);
    longname[600 - 1] = '\0';
    jg_fail(&req, 400, "invalid_field", "x%s", longname);
    EXPECT_INT_EQ(1 + 84 * 3, strlen(req.err_msg));
    jg_buf_reset(&out);
    jg_resp_render(&req, &out);
    body = strstr(out.data, "\r\n\r\n") + 4;
    EXPECT_INT_EQ(JG_JSON_OK, jg_json_check(body, strlen(body), 64, NULL, 0));
    jg_buf_free(&out);
    jg_req_free(&req);
}
