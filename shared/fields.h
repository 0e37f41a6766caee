/* fields.h — the members of a JSON request body, read with the rules of contract sections 2, 3
 * and 6. Each rule that more than one program applies has its one definition here: the strict
 * object body, names, and what a cache key is made of (type, payload, cache_version), which both
 * POST /jobs (jobgate-submit) and POST /cache/key (jobgate-cache) read.
 *
 * Readers fail the request with jg_fail() (400, naming the field) and return JG_ERR on bad
 * input, JG_OK otherwise. Strings they hand out point into the body or the parsed object: they
 * live as long as those. */
#ifndef JG_FIELDS_H
#define JG_FIELDS_H

#include <json-c/json.h>
#include <stddef.h>

#include "buf.h"
#include "http.h"

/* Parses a body that is strict JSON (json.h: duplicates, lone surrogates, depth 64) and an
 * object whose member names hold no U+0000 (json-c would cut them there). Returns the object (the caller frees it with json_object_put), or NULL after
 * jg_fail (400 invalid_json). */
json_object *jg_body_object(jg_req_t *req, const jg_buf_t *body);

/* A JSON string with no NUL inside (json-c would cut it there). */
int jg_field_plain_string(json_object *v);

/* A member that must be a name (^[a-z0-9][a-z0-9_.-]{0,63}$): queue, type. */
int jg_field_name(jg_req_t *req, const char *name, json_object *v, const char **out);

/* What a cache key is made of (contract section 6). */
typedef struct jg_key_fields {
    const char *type;           /* NULL until read; required */
    const char *payload;        /* raw JSON text of the payload member, "{}" when absent */
    size_t payload_len;
    const char *cache_version;  /* NULL when absent; at most 64 characters */
} jg_key_fields_t;

void jg_key_fields_init(jg_key_fields_t *kf);

/* Reads member name (value v, of the object parsed from body) into kf when it is "type",
 * "payload" or "cache_version": returns JG_OK, or JG_ERR after jg_fail. Returns 1, touching
 * nothing, for any other member: the caller reads it (or answers that it is unknown). */
int jg_key_fields_member(jg_req_t *req, const jg_buf_t *body, const char *name, json_object *v,
                         jg_key_fields_t *kf);

/* Once every member was read: type is required; hex receives the cache key
 * (jg_cache_key). JG_OK, or JG_ERR after jg_fail (400 invalid_field). */
int jg_key_fields_key(jg_req_t *req, const jg_key_fields_t *kf, char hex[65]);

#endif
