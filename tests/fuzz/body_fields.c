/* body_fields.c — fuzzes the one reader of JSON request bodies (shared/fields.c) as POST /jobs
 * and POST /cache/key use it: jg_body_object, then each member through jg_key_fields_member
 * (type, payload, cache_version; any other name answered "unknown field" as the handlers do),
 * then jg_key_fields_key. Properties: no crash; a failure is a 400 whose rendered body (the one
 * error writer, jg_resp_render) is valid JSON of the contract's form; a success has a valid
 * type name, a payload that is checked JSON with no U+0000 member name at the top, and a key of
 * 64 lowercase hex. */
#include <string.h>

#include "buf.h"
#include "config.h"
#include "fields.h"
#include "fuzz.h"
#include "http.h"
#include "json.h"
#include "keys.h"

static jg_config_t cfg;
static int cfg_loaded;

static void check_error_body(jg_req_t *req)
{
    FUZZ_CHECK(req->status == 400, "status %d", req->status);
    jg_buf_t out = JG_BUF_INIT;
    jg_resp_render(req, &out);
    const char *body = strstr(out.data, "\r\n\r\n");
    FUZZ_CHECK(body != NULL, "no header end");
    body += 4;
    char msg[128] = "";
    FUZZ_CHECK(jg_json_check(body, strlen(body), 64, msg, sizeof msg) == JG_JSON_OK,
               "error body is not JSON (%s): %s", msg, body);
    FUZZ_CHECK(strncmp(body, "{\"error\":{\"code\":\"", 18) == 0, "error body %s", body);
    jg_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg_loaded) {
        char err[128];
        jg_config_load_env(&cfg, err, sizeof err);
        cfg_loaded = 1;
    }
    jg_req_t req;
    memset(&req, 0, sizeof req);
    jg_req_reset(&req, &cfg, NULL, NULL, NULL, NULL);
    jg_buf_t body = JG_BUF_INIT;
    jg_buf_append(&body, data, size);   /* as jg_req_read_json_body leaves it: NUL-terminated */
    if (body.data == NULL)
        jg_buf_append(&body, "", 0);
    json_object *obj = jg_body_object(&req, &body);
    int rc = obj ? JG_OK : JG_ERR;
    jg_key_fields_t kf;
    jg_key_fields_init(&kf);
    if (obj) {
        json_object_object_foreach(obj, name, v) {
            int r = jg_key_fields_member(&req, &body, name, v, &kf);
            if (r == 1)
                r = jg_fail(&req, 400, "invalid_field", "unknown field \"%.64s\"", name);
            if (r != JG_OK) {
                rc = JG_ERR;
                break;
            }
        }
    }
    char hex[65] = "";
    if (rc == JG_OK)
        rc = jg_key_fields_key(&req, &kf, hex);
    if (rc != JG_OK) {
        FUZZ_CHECK(req.failed, "refused without an error");
        check_error_body(&req);
    } else {
        FUZZ_CHECK(!req.failed, "accepted with an error");
        FUZZ_CHECK(kf.type && jg_valid_name(kf.type), "type %s", kf.type ? kf.type : "(null)");
        FUZZ_CHECK(jg_json_check(kf.payload, kf.payload_len, 64, NULL, 0) == JG_JSON_OK,
                   "payload %.*s", (int)kf.payload_len, kf.payload);
        FUZZ_CHECK(jg_json_nul_name(body.data, body.len) < 0, "a NUL name got through");
        FUZZ_CHECK(jg_valid_hex64(hex), "key %s", hex);
    }
    json_object_put(obj);
    jg_buf_free(&body);
    jg_req_free(&req);
    return 0;
}
