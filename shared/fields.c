/* fields.c — the members of JSON request bodies (see fields.h). */
#include "fields.h"
#include "jg.h"
#include "json.h"
#include "keys.h"

#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* json-c's parser switches LC_NUMERIC to "C" around every parse with duplocale/newlocale of
 * the thread's locale; for the global locale (a thread's default) those take glibc's global
 * locale lock for writing, which 8 threads submitting at once contend on. Our programs never
 * call setlocale(), so the global locale is "C": giving each thread glibc's own "C" locale
 * object instead changes no behaviour and lets duplocale/newlocale return at once. */
static void thread_c_locale(void)
{
    if (uselocale((locale_t)0) != LC_GLOBAL_LOCALE)
        return;
    uselocale(jg_c_locale());
}

/* The thread's json-c parser: made for its first body and reset for the next (a new one is a
 * zeroed allocation of its whole nesting stack, about a tenth of a plain submit's instructions);
 * freed when the thread ends. */
static pthread_key_t tokener_key;
static pthread_once_t tokener_once = PTHREAD_ONCE_INIT;

static void tokener_free(void *tok) { json_tokener_free(tok); }
static void tokener_key_make(void)
{
    if (pthread_key_create(&tokener_key, tokener_free) != 0)
        abort();
}

static json_tokener *thread_tokener(void)
{
    pthread_once(&tokener_once, tokener_key_make);
    json_tokener *tok = pthread_getspecific(tokener_key);
    if (tok) {
        json_tokener_reset(tok);
        return tok;
    }
    if ((tok = json_tokener_new_ex(JG_JSON_MAX_DEPTH + 1)) == NULL ||
        pthread_setspecific(tokener_key, tok) != 0)
        abort();
    return tok;
}

json_object *jg_body_object(jg_req_t *req, const jg_buf_t *body)
{
    char msg[128];
    if (jg_json_check(body->data, body->len, JG_JSON_MAX_DEPTH, msg, sizeof msg) != JG_JSON_OK) {
        jg_fail(req, 400, "invalid_json", "%s", msg);
        return NULL;
    }
    /* json-c would cut such a name at the NUL and read it as another member ("type\u0000" as
     * a second "type"): the body checked would not be the body used */
    long nul = jg_json_nul_name(body->data, body->len);
    if (nul >= 0) {
        jg_fail(req, 400, "invalid_json", "member name with U+0000 at byte %ld", nul);
        return NULL;
    }
    thread_c_locale();
    json_object *obj = json_tokener_parse_ex(thread_tokener(), body->data, (int)body->len);
    if (!json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        jg_fail(req, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return obj;
}

int jg_field_plain_string(json_object *v)
{
    return json_object_is_type(v, json_type_string) &&
           strlen(json_object_get_string(v)) == (size_t)json_object_get_string_len(v);
}

int jg_field_name(jg_req_t *req, const char *name, json_object *v, const char **out)
{
    if (!jg_field_plain_string(v) || !jg_valid_name(json_object_get_string(v)))
        return jg_fail(req, 400, "invalid_field",
                       "%s must be a name matching ^[a-z0-9][a-z0-9_.-]{0,63}$", name);
    *out = json_object_get_string(v);
    return JG_OK;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

void jg_key_fields_init(jg_key_fields_t *kf)
{
    memset(kf, 0, sizeof *kf);
    kf->payload = "{}";
    kf->payload_len = 2;
}

int jg_key_fields_member(jg_req_t *req, const jg_buf_t *body, const char *name, json_object *v,
                         jg_key_fields_t *kf)
{
    if (strcmp(name, "type") == 0)
        return jg_field_name(req, "type", v, &kf->type);
    if (strcmp(name, "payload") == 0) {
        /* the raw text: the job gets it as sent, and the key is computed from it (JCS) */
        jg_json_member(body->data, body->len, "payload", &kf->payload, &kf->payload_len);
        return JG_OK;
    }
    if (strcmp(name, "cache_version") == 0) {
        if (!jg_field_plain_string(v) || utf8_chars(json_object_get_string(v)) > 64)
            return jg_fail(req, 400, "invalid_field",
                           "cache_version must be a string of at most 64 characters");
        kf->cache_version = json_object_get_string(v);
        return JG_OK;
    }
    return 1;
}

int jg_key_fields_key(jg_req_t *req, const jg_key_fields_t *kf, char hex[65])
{
    if (kf->type == NULL)
        return jg_fail(req, 400, "invalid_field", "type is required");
    if (jg_cache_key(kf->type, kf->payload, kf->payload_len, kf->cache_version, hex))
        return jg_fail(req, 400, "invalid_field", "payload has a number out of range");
    return JG_OK;
}
