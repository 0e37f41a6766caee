/* test_http.c — unit tests of routing (routes.c), request parsing and answers (http.c) and
 * the job object (job.c). */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "job.h"
#include "routes.h"
#include "unit.h"

/* Environment entries must be writable char *, as FCGX params are. */

static jg_match_t match(const char *program, const char *method, const char *path,
                        jg_route_id_t *id, char param[96], char allow[128])
{
    const jg_route_t *route = NULL;
    jg_match_t m = jg_route_match(program, method, path, &route, param, 96, allow, 128);
    *id = route ? route->id : (jg_route_id_t)-1;
    return m;
}

UNIT_TEST(routes_own_route_matches_with_its_param)
{
    jg_route_id_t id;
    char param[96], allow[128];
    EXPECT_INT_EQ(JG_MATCH_OK, match("status", "GET", "/jobs/abc", &id, param, allow));
    EXPECT_INT_EQ(JG_ROUTE_STATUS, id);
    EXPECT_STR_EQ("abc", param);
    EXPECT_INT_EQ(JG_MATCH_OK, match("status", "HEAD", "/jobs/abc", &id, param, allow));
    EXPECT_INT_EQ(JG_MATCH_OK, match("submit", "POST", "/jobs/x.y/cancel", &id, param, allow));
    EXPECT_INT_EQ(JG_ROUTE_CANCEL, id);
    EXPECT_STR_EQ("x.y", param);
    EXPECT_INT_EQ(JG_MATCH_OK, match("submit", "POST", "/jobs", &id, param, allow));
    EXPECT_INT_EQ(JG_ROUTE_SUBMIT, id);
}

UNIT_TEST(routes_another_programs_route_is_not_found)
{
    jg_route_id_t id;
    char param[96], allow[128];
    EXPECT_INT_EQ(JG_MATCH_NOT_FOUND, match("submit", "GET", "/jobs/abc", &id, param, allow));
    EXPECT_INT_EQ(JG_MATCH_NOT_FOUND, match("status", "POST", "/jobs", &id, param, allow));
    EXPECT_INT_EQ(JG_MATCH_NOT_FOUND, match("status", "GET", "/jobs", &id, param, allow));
    EXPECT_INT_EQ(JG_MATCH_NOT_FOUND, match("status", "GET", "/jobs/abc/logs", &id, param, allow));
}

UNIT_TEST(routes_unknown_paths_are_not_found)
{
    jg_route_id_t id;
    char param[96], allow[128];
    const char *paths[] = {"", "/", "/job", "/jobs/", "/jobs//cancel", "/jobs/a/b/c",
                           "/jobsx", "/health/", "/cache"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        EXPECT_INT_EQ(JG_MATCH_NOT_FOUND, match("status", "GET", paths[i], &id, param, allow));
}

UNIT_TEST(routes_wrong_method_lists_every_allowed_one)
{
    jg_route_id_t id;
    char param[96], allow[128];
    EXPECT_INT_EQ(JG_MATCH_BAD_METHOD, match("submit", "DELETE", "/jobs", &id, param, allow));
    EXPECT_STR_EQ("POST, GET, HEAD, OPTIONS", allow);
    EXPECT_INT_EQ(JG_MATCH_BAD_METHOD, match("status", "PUT", "/jobs/abc", &id, param, allow));
    EXPECT_STR_EQ("GET, HEAD, DELETE, OPTIONS", allow);   /* DELETE: jobgate-admin's */
    EXPECT_INT_EQ(JG_MATCH_BAD_METHOD, match("submit", "GET", "/jobs/a/cancel", &id, param, allow));
    EXPECT_STR_EQ("POST, OPTIONS", allow);
    EXPECT_INT_EQ(JG_MATCH_BAD_METHOD, match("cache", "PATCH", "/cache/k", &id, param, allow));
    EXPECT_STR_EQ("GET, HEAD, PUT, DELETE, OPTIONS", allow);
}

UNIT_TEST(routes_too_long_param_is_emptied)
{
    jg_route_id_t id;
    char param[96], allow[128];
    char path[300] = "/jobs/";
    memset(path + 6, 'a', 200);
    path[206] = '\0';
    EXPECT_INT_EQ(JG_MATCH_OK, match("status", "GET", path, &id, param, allow));
    EXPECT_STR_EQ("", param);
}

UNIT_TEST(query_get_decodes_and_rejects)
{
    char out[16];
    EXPECT_INT_EQ(1, jg_query_get("wait=5&version=7", "version", out, sizeof out));
    EXPECT_STR_EQ("7", out);
    EXPECT_INT_EQ(1, jg_query_get("a=%41+b", "a", out, sizeof out));
    EXPECT_STR_EQ("A b", out);
    EXPECT_INT_EQ(0, jg_query_get("waits=5", "wait", out, sizeof out));
    EXPECT_INT_EQ(1, jg_query_get("wait", "wait", out, sizeof out));
    EXPECT_STR_EQ("", out);
    EXPECT_INT_EQ(-1, jg_query_get("wait=%00", "wait", out, sizeof out));
    EXPECT_INT_EQ(-1, jg_query_get("wait=%4", "wait", out, sizeof out));
    EXPECT_INT_EQ(-1, jg_query_get("wait=%zz", "wait", out, sizeof out));
    EXPECT_INT_EQ(-1, jg_query_get("wait=12345678901234567890", "wait", out, sizeof out));
    EXPECT_INT_EQ(0, jg_query_get("", "wait", out, sizeof out));
}

static jg_config_t test_config(void)
{
    jg_config_t cfg;
    char err[64];
    jg_config_load_env(&cfg, err, sizeof err);
    snprintf(cfg.mount_prefix, sizeof cfg.mount_prefix, "/api");
    return cfg;
}

UNIT_TEST(request_target_is_taken_under_the_mount_prefix)
{
    jg_config_t cfg = test_config();
    char *env[] = {(char[]){"REQUEST_METHOD=HEAD"}, (char[]){"REQUEST_URI=/api/jobs/x?wait=1"}, NULL};
    jg_req_t req;
    memset(&req, 0, sizeof req);
    jg_req_reset(&req, &cfg, NULL, env, NULL, NULL);
    ASSERT_INT_EQ(0, jg_req_parse_target(&req));
    EXPECT_STR_EQ("/jobs/x", req.path);
    EXPECT_STR_EQ("wait=1", req.query);
    EXPECT_TRUE(req.head);
    char *outside[] = {(char[]){"REQUEST_METHOD=GET"}, (char[]){"REQUEST_URI=/apix/jobs"}, NULL};
    jg_req_reset(&req, &cfg, NULL, outside, NULL, NULL);
    EXPECT_INT_EQ(-1, jg_req_parse_target(&req));
    jg_req_free(&req);
}

UNIT_TEST(error_answer_is_the_contract_json_with_common_headers)
{
    jg_config_t cfg = test_config();
    char *env[] = {(char[]){"REQUEST_METHOD=GET"}, NULL};
    jg_req_t req;
    memset(&req, 0, sizeof req);
    jg_req_reset(&req, &cfg, NULL, env, NULL, NULL);
    EXPECT_INT_EQ(JG_ERR, jg_fail(&req, 400, "invalid_field", "priority \"x\""));
    jg_buf_t out = JG_BUF_INIT;
    jg_resp_render(&req, &out);
    EXPECT_CONTAINS(out.data, "Status: 400 Bad Request\r\n");
    EXPECT_CONTAINS(out.data, "X-Content-Type-Options: nosniff\r\n");
    EXPECT_CONTAINS(out.data, "Content-Type: application/json\r\n");
    EXPECT_CONTAINS(out.data,
                    "\r\n\r\n{\"error\":{\"code\":\"invalid_field\",\"message\":\"priority \\\"x\\\"\"}}");
    jg_buf_free(&out);
    jg_req_free(&req);
}

UNIT_TEST(cors_headers_only_for_listed_origins)
{
    jg_config_t cfg = test_config();
    snprintf(cfg.cors_origins, sizeof cfg.cors_origins, "https://a.example, https://b.example");
    char *env[] = {(char[]){"HTTP_ORIGIN=https://b.example"}, NULL};
    char *other[] = {(char[]){"HTTP_ORIGIN=https://c.example"}, NULL};
    jg_req_t req;
    memset(&req, 0, sizeof req);
    jg_buf_t out = JG_BUF_INIT;
    jg_req_reset(&req, &cfg, NULL, env, NULL, NULL);
    jg_resp_common_headers(&req, &out);
    EXPECT_CONTAINS(out.data, "Access-Control-Allow-Origin: https://b.example\r\n");
    jg_buf_reset(&out);
    jg_req_reset(&req, &cfg, NULL, other, NULL, NULL);
    jg_resp_common_headers(&req, &out);
    EXPECT_NOT_CONTAINS(out.data, "Access-Control");
    jg_buf_free(&out);
    jg_req_free(&req);
}

UNIT_TEST(job_object_of_a_job_stored_before_json_has_every_member_and_nulls)
{
    /* The HMGET reply of the fields a job stored before the `json` field shows (jg_job_read's
     * second read), in the members' order, built by hand: nil and "" are both null. */
    const char *v[] = {"37a8eec1.AAAAAAAAAAAAAAAAAAAAAA", "default", "echo", "done", "-5", "1",
                       "3", "", "1795000000123", NULL, "", NULL, "", "{\"a\":1}", NULL, "0",
                       "ab", "1", "4"};
    size_t n = sizeof v / sizeof v[0];
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = n};
    redisReply *elems[64], items[64];
    for (size_t i = 0; i < n; i++) {
        items[i] = v[i] ? (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)v[i],
                                       .len = strlen(v[i])}
                        : (redisReply){.type = REDIS_REPLY_NIL};
        elems[i] = &items[i];
    }
    arr.element = elems;
    jg_buf_t out = JG_BUF_INIT;
    EXPECT_INT_EQ(4, jg_job_json_hmget(&arr, 0, &out));
    EXPECT_STR_EQ("{\"id\":\"37a8eec1.AAAAAAAAAAAAAAAAAAAAAA\",\"queue\":\"default\",\"type\":"
                  "\"echo\",\"status\":\"done\",\"priority\":-5,\"attempts\":1,\"max_attempts\":3,"
                  "\"progress\":null,\"created_at\":\"2026-11-18T11:06:40.123Z\",\"started_at\":"
                  "null,\"finished_at\":null,\"run_at\":null,\"worker\":null,\"result\":{\"a\":1},"
                  "\"error\":null,\"cached\":false,\"cache_key\":\"ab\",\"cancel_requested\":true,"
                  "\"version\":4}",
                  out.data);
    jg_buf_free(&out);
    items[0] = (redisReply){.type = REDIS_REPLY_NIL};   /* no id: no job */
    EXPECT_INT_EQ(-1, jg_job_json_hmget(&arr, 0, &out));
}

UNIT_TEST(stored_job_object_is_copied_with_its_version_and_coalesced_added)
{
    char text[] = "{\"id\":\"x\",\"version\":12}";
    redisReply json = {.type = REDIS_REPLY_STRING, .str = text, .len = strlen(text)};
    redisReply *el[] = {&json};
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = el};
    jg_buf_t out = JG_BUF_INIT;
    EXPECT_INT_EQ(12, jg_job_json_hmget(&arr, 0, &out));
    EXPECT_STR_EQ(text, out.data);
    jg_buf_reset(&out);
    EXPECT_INT_EQ(12, jg_job_json_text(&json, JG_JOB_COALESCED, &out));
    EXPECT_STR_EQ("{\"id\":\"x\",\"version\":12,\"coalesced\":true}", out.data);
    jg_buf_reset(&out);
    /* not a job object: nothing appended */
    const char *bad[] = {"", "{}", "{\"version\":}", "{\"id\":\"x\",\"version\":1", "x\"version\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        redisReply b = {.type = REDIS_REPLY_STRING, .str = (char *)bad[i], .len = strlen(bad[i])};
        EXPECT_INT_EQ(-1, jg_job_json_text(&b, 0, &out));
        EXPECT_INT_EQ(0, (long long)out.len);
    }
    redisReply nil = {.type = REDIS_REPLY_NIL};
    EXPECT_INT_EQ(-1, jg_job_json_text(&nil, 0, &out));
    jg_buf_free(&out);
}
