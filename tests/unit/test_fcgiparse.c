/* test_fcgiparse.c — unit tests of jobgate's FastCGI request parser (shared/fcgiparse.c): the
 * records a web server sends, split anywhere, and the edge cases a hostile peer can send. */
#include "buf.h"
#include "fcgi.h"
#include "fcgiparse.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

/* Appends one record with pad bytes of padding. */
static void rec(jg_buf_t *b, int type, int id, const void *data, size_t len, int pad)
{
    unsigned char h[8] = {1, (unsigned char)type, (unsigned char)(id >> 8), (unsigned char)id,
                          (unsigned char)(len >> 8), (unsigned char)len, (unsigned char)pad, 0};
    jg_buf_append(b, h, 8);
    jg_buf_append(b, data, len);
    for (int i = 0; i < pad; i++)
        jg_buf_putc(b, 'P');
}

static void begin(jg_buf_t *b, int id, int role, int keep)
{
    unsigned char body[8] = {(unsigned char)(role >> 8), (unsigned char)role,
                             (unsigned char)keep, 0, 0, 0, 0, 0};
    rec(b, 1, id, body, 8, 0);
}

/* One name-value pair, 4-byte lengths when long4. */
static void pair(jg_buf_t *b, const char *name, const char *value, int long4)
{
    size_t l[2] = {strlen(name), strlen(value)};
    for (int i = 0; i < 2; i++) {
        if (long4 || l[i] > 127) {
            unsigned char n[4] = {(unsigned char)(0x80 | (l[i] >> 24)), (unsigned char)(l[i] >> 16),
                                  (unsigned char)(l[i] >> 8), (unsigned char)l[i]};
            jg_buf_append(b, n, 4);
        } else {
            jg_buf_putc(b, (char)l[i]);
        }
    }
    jg_buf_puts(b, name);
    jg_buf_puts(b, value);
}

/* A GET-like request with params split across two records in the middle of a length. */
static void sample(jg_buf_t *b, int id, const char *body)
{
    jg_buf_t params = JG_BUF_INIT;
    pair(&params, "REQUEST_METHOD", "POST", 0);
    char longv[300];
    memset(longv, 'v', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    pair(&params, "HTTP_LONG", longv, 0);
    pair(&params, "REQUEST_URI", "/api/jobs?x=1", 1);
    begin(b, id, 1, 1);
    rec(b, 4, id, params.data, 17, 3);   /* the split falls inside HTTP_LONG's lengths */
    rec(b, 4, id, params.data + 17, params.len - 17, 5);
    rec(b, 4, id, "", 0, 0);
    if (body && *body)
        rec(b, 5, id, body, strlen(body), 7);
    rec(b, 5, id, "", 0, 0);
    jg_buf_free(&params);
}

UNIT_TEST(fcgi_request_split_into_any_pieces_gives_the_same_params_and_body)
{
    jg_buf_t in = JG_BUF_INIT;
    sample(&in, 7, "{\"type\":\"echo\"}");
    size_t steps[] = {in.len, 1, 3, 8, 9};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        jg_fcgi_parser_t p;
        jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 1024);
        size_t used = 0;
        while (used < in.len && p.status == JG_FCGI_MORE) {
            size_t n = in.len - used < steps[s] ? in.len - used : steps[s];
            used += jg_fcgi_feed(&p, in.data + used, n);
        }
        EXPECT_INT_EQ(JG_FCGI_REQUEST, p.status);
        EXPECT_INT_EQ(in.len, used);
        EXPECT_INT_EQ(7, p.request_id);
        EXPECT_INT_EQ(1, p.keep_conn);
        EXPECT_STR_EQ("POST", jg_fcgi_getenv(p.envp, "REQUEST_METHOD"));
        EXPECT_STR_EQ("/api/jobs?x=1", jg_fcgi_getenv(p.envp, "REQUEST_URI"));
        const char *lv = jg_fcgi_getenv(p.envp, "HTTP_LONG");
        EXPECT_INT_EQ(299, lv ? strlen(lv) : 0);
        EXPECT_TRUE(jg_fcgi_getenv(p.envp, "REQUEST") == NULL);
        EXPECT_STR_EQ("{\"type\":\"echo\"}", p.body.data);
        EXPECT_INT_EQ(0, p.reply.len);
        jg_fcgi_parser_free(&p);
    }
    jg_buf_free(&in);
}

UNIT_TEST(fcgi_second_request_on_a_kept_connection_starts_where_the_first_ended)
{
    jg_buf_t in = JG_BUF_INIT;
    sample(&in, 1, "a");
    size_t first = in.len;
    sample(&in, 2, "bb");
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 1024);
    EXPECT_INT_EQ(first, jg_fcgi_feed(&p, in.data, in.len));
    EXPECT_STR_EQ("a", p.body.data);
    jg_fcgi_parser_next(&p);
    EXPECT_INT_EQ(in.len - first, jg_fcgi_feed(&p, in.data + first, in.len - first));
    EXPECT_INT_EQ(JG_FCGI_REQUEST, p.status);
    EXPECT_INT_EQ(2, p.request_id);
    EXPECT_STR_EQ("bb", p.body.data);
    EXPECT_STR_EQ("POST", jg_fcgi_getenv(p.envp, "REQUEST_METHOD"));
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in);
}

UNIT_TEST(fcgi_get_values_is_answered_with_libfcgis_values)
{
    jg_buf_t in = JG_BUF_INIT, q = JG_BUF_INIT, want = JG_BUF_INIT;
    pair(&q, "FCGI_MAX_CONNS", "", 0);
    pair(&q, "FCGI_NOT_A_VALUE", "", 0);
    pair(&q, "FCGI_MPXS_CONNS", "", 0);
    pair(&q, "FCGI_MAX_REQS", "", 0);
    rec(&in, 9, 0, q.data, q.len, 2);
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 1024);
    EXPECT_INT_EQ(in.len, jg_fcgi_feed(&p, in.data, in.len));
    EXPECT_INT_EQ(JG_FCGI_MORE, p.status);
    jg_buf_t res = JG_BUF_INIT;
    pair(&res, "FCGI_MAX_CONNS", "1", 0);
    pair(&res, "FCGI_MPXS_CONNS", "0", 0);
    pair(&res, "FCGI_MAX_REQS", "1", 0);
    jg_fcgi_put_record(&want, 10, 0, res.data, res.len);
    EXPECT_MEM_EQ(want.data, want.len, p.reply.data, p.reply.len);
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in), jg_buf_free(&q), jg_buf_free(&want), jg_buf_free(&res);
}

UNIT_TEST(fcgi_unknown_management_type_is_answered_unknown_type)
{
    jg_buf_t in = JG_BUF_INIT;
    rec(&in, 42, 0, "xyz", 3, 5);
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 1024);
    EXPECT_INT_EQ(in.len, jg_fcgi_feed(&p, in.data, in.len));
    const unsigned char want[16] = {1, 11, 0, 0, 0, 8, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0};
    EXPECT_MEM_EQ(want, sizeof want, p.reply.data, p.reply.len);
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in);
}

UNIT_TEST(fcgi_second_request_id_while_one_is_active_is_refused_cant_mpx_conn)
{
    jg_buf_t in = JG_BUF_INIT;
    begin(&in, 1, 1, 0);
    begin(&in, 2, 1, 0);
    rec(&in, 4, 2, "\x01\x01" "ab", 4, 0);   /* the refused request's records are skipped */
    rec(&in, 4, 1, "\x01\x01" "AB", 4, 0);
    rec(&in, 4, 1, "", 0, 0);
    rec(&in, 5, 1, "", 0, 0);
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 1024);
    EXPECT_INT_EQ(in.len, jg_fcgi_feed(&p, in.data, in.len));
    EXPECT_INT_EQ(JG_FCGI_REQUEST, p.status);
    EXPECT_INT_EQ(0, p.keep_conn);
    EXPECT_STR_EQ("B", jg_fcgi_getenv(p.envp, "A"));
    EXPECT_TRUE(jg_fcgi_getenv(p.envp, "a") == NULL);
    jg_buf_t want = JG_BUF_INIT;
    jg_fcgi_put_end_request(&want, 2, 1);
    EXPECT_MEM_EQ(want.data, want.len, p.reply.data, p.reply.len);
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in), jg_buf_free(&want);
}

UNIT_TEST(fcgi_begin_request_of_the_active_id_again_is_a_protocol_error)
{
    jg_buf_t in = JG_BUF_INIT;
    begin(&in, 1, 1, 0);
    begin(&in, 1, 1, 0);
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 1024);
    jg_fcgi_feed(&p, in.data, in.len);
    EXPECT_INT_EQ(JG_FCGI_ERROR, p.status);
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in);
}

UNIT_TEST(fcgi_role_other_than_responder_is_answered_unknown_role)
{
    jg_buf_t in = JG_BUF_INIT;
    begin(&in, 3, 2, 1);   /* FCGI_AUTHORIZER */
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 1024);
    EXPECT_INT_EQ(in.len, jg_fcgi_feed(&p, in.data, in.len));
    EXPECT_INT_EQ(JG_FCGI_MORE, p.status);
    jg_buf_t want = JG_BUF_INIT;
    jg_fcgi_put_end_request(&want, 3, 3);
    EXPECT_MEM_EQ(want.data, want.len, p.reply.data, p.reply.len);
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in), jg_buf_free(&want);
}

UNIT_TEST(fcgi_params_length_of_2_31_is_a_protocol_error_without_allocating_it)
{
    jg_buf_t in = JG_BUF_INIT;
    begin(&in, 1, 1, 0);
    rec(&in, 4, 1, "\x01\xff\xff\xff\xff" "A", 6, 0);   /* value length 2^31 - 1 */
    rec(&in, 4, 1, "", 0, 0);
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 1024);
    jg_fcgi_feed(&p, in.data, in.len);
    EXPECT_INT_EQ(JG_FCGI_ERROR, p.status);
    EXPECT_TRUE(p.arena.cap < 4096);
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in);
}

UNIT_TEST(fcgi_params_over_the_limit_are_dropped_and_the_request_flagged)
{
    jg_buf_t in = JG_BUF_INIT, params = JG_BUF_INIT;
    pair(&params, "REQUEST_METHOD", "GET", 0);
    char big[200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    pair(&params, "HTTP_COOKIE", big, 0);
    begin(&in, 1, 1, 1);
    rec(&in, 4, 1, params.data, params.len, 0);
    rec(&in, 4, 1, "", 0, 0);
    rec(&in, 5, 1, "", 0, 0);
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, 100, 1024);
    EXPECT_INT_EQ(in.len, jg_fcgi_feed(&p, in.data, in.len));
    EXPECT_INT_EQ(JG_FCGI_REQUEST, p.status);
    EXPECT_INT_EQ(1, p.params_over);
    EXPECT_TRUE(p.envp[0] == NULL);
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in), jg_buf_free(&params);
}

UNIT_TEST(fcgi_stdin_beyond_the_body_limit_is_counted_not_kept)
{
    jg_buf_t in = JG_BUF_INIT;
    sample(&in, 1, "0123456789");
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 4);
    EXPECT_INT_EQ(in.len, jg_fcgi_feed(&p, in.data, in.len));
    EXPECT_INT_EQ(JG_FCGI_REQUEST, p.status);
    EXPECT_STR_EQ("0123", p.body.data);
    EXPECT_INT_EQ(10, p.stdin_total);
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in);
}

UNIT_TEST(fcgi_abort_request_ends_the_active_request)
{
    jg_buf_t in = JG_BUF_INIT;
    begin(&in, 5, 1, 1);
    rec(&in, 2, 9, "", 0, 0);   /* another id's abort: skipped */
    rec(&in, 2, 5, "", 0, 3);
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 1024);
    EXPECT_INT_EQ(in.len, jg_fcgi_feed(&p, in.data, in.len));
    EXPECT_INT_EQ(JG_FCGI_ABORTED, p.status);
    EXPECT_INT_EQ(5, p.request_id);
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in);
}

UNIT_TEST(fcgi_bad_version_or_stdin_before_params_end_is_a_protocol_error)
{
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 1024);
    const unsigned char v2[8] = {2, 1, 0, 1, 0, 8, 0, 0};
    EXPECT_INT_EQ(8, jg_fcgi_feed(&p, v2, 8));
    EXPECT_INT_EQ(JG_FCGI_ERROR, p.status);
    jg_fcgi_parser_next(&p);
    jg_buf_t in = JG_BUF_INIT;
    begin(&in, 1, 1, 0);
    rec(&in, 5, 1, "x", 1, 0);
    jg_fcgi_feed(&p, in.data, in.len);
    EXPECT_INT_EQ(JG_FCGI_ERROR, p.status);
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in);
}

UNIT_TEST(fcgi_header_split_byte_by_byte_waits_for_more)
{
    jg_buf_t in = JG_BUF_INIT;
    sample(&in, 1, "");
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 1024);
    for (size_t i = 0; i + 1 < in.len; i++) {
        EXPECT_INT_EQ(1, jg_fcgi_feed(&p, in.data + i, 1));
        if (p.status != JG_FCGI_MORE)
            break;
    }
    EXPECT_INT_EQ(JG_FCGI_MORE, p.status);
    EXPECT_INT_EQ(1, jg_fcgi_feed(&p, in.data + in.len - 1, 1));
    EXPECT_INT_EQ(JG_FCGI_REQUEST, p.status);
    EXPECT_STR_EQ("", p.body.data ? p.body.data : "");
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in);
}

UNIT_TEST(fcgi_param_names_that_are_empty_or_hold_equals_or_nul_are_dropped)
{
    jg_buf_t in = JG_BUF_INIT, params = JG_BUF_INIT;
    pair(&params, "", "empty", 0);
    pair(&params, "REQUEST_METHOD=GE", "T", 0);
    jg_buf_append(&params, "\x05\x01" "AB\0CDx", 8);   /* name "AB\0CD" */
    pair(&params, "REQUEST_URI", "/x", 0);
    begin(&in, 1, 1, 0);
    rec(&in, 4, 1, params.data, params.len, 0);
    rec(&in, 4, 1, "", 0, 0);
    rec(&in, 5, 1, "", 0, 0);
    jg_fcgi_parser_t p;
    jg_fcgi_parser_init(&p, JG_FCGI_MAX_PARAMS, 1024);
    EXPECT_INT_EQ(in.len, jg_fcgi_feed(&p, in.data, in.len));
    EXPECT_INT_EQ(JG_FCGI_REQUEST, p.status);
    EXPECT_STR_EQ("REQUEST_URI=/x", p.envp[0]);
    EXPECT_TRUE(p.envp[1] == NULL);
    EXPECT_TRUE(jg_fcgi_getenv(p.envp, "REQUEST_METHOD") == NULL);
    jg_fcgi_parser_free(&p);
    jg_buf_free(&in), jg_buf_free(&params);
}
