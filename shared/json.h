/* json.h — strict JSON input and RFC 8785 (JCS) canonical output, as pure functions with no I/O.
 *
 * json-c parses leniently (it keeps the last of duplicate member names, turns lone surrogates
 * into U+FFFD, keeps 64-bit integers), so every JSON body jobgate accepts first passes
 * jg_json_check(); json-c then reads the fields. Cache keys are computed from JCS text. */
#ifndef JG_JSON_H
#define JG_JSON_H

#include <locale.h>
#include <stddef.h>

#include "buf.h"

typedef enum jg_json_status {
    JG_JSON_OK = 0,
    JG_JSON_SYNTAX,      /* not RFC 8259 JSON (or trailing bytes after the value) */
    JG_JSON_UTF8,        /* invalid UTF-8 */
    JG_JSON_DEPTH,       /* nested deeper than max_depth arrays/objects */
    JG_JSON_DUPLICATE,   /* an object has two members of the same name (after unescaping) */
    JG_JSON_SURROGATE,   /* a \u escape leaves a lone surrogate */
} jg_json_status_t;

/* Checks that text[0..len) is one JSON value (surrounding whitespace allowed) with the rules
 * above; depth counts open arrays/objects (a top-level object is depth 1). On failure writes
 * a short human message (e.g. "duplicate member name \"a\" at byte 12", byte offsets counted
 * from 0) into msg; msg may be NULL. Never reads beyond text[len). */
jg_json_status_t jg_json_check(const char *text, size_t len, int max_depth, char *msg,
                               size_t msglen);

/* For a text that passed jg_json_check and is an object: finds the top-level member name and
 * points *value and *vlen at the raw text of its value (no surrounding whitespace).
 * Returns 1 if found, 0 if not (or text is not an object). */
int jg_json_member(const char *text, size_t len, const char *name, const char **value,
                   size_t *vlen);

/* For a text that passed jg_json_check and is an object: the byte offset of the opening quote
 * of the first top-level member name that holds U+0000 (written \u0000), or -1 if none does.
 * json-c cuts names at a NUL, so "type\u0000" would read as a second "type". */
long jg_json_nul_name(const char *text, size_t len);

/* Appends the RFC 8785 canonical form of text[0..len) to out. Any input is safe: a text that
 * does not pass jg_json_check (at any depth) is refused first, and the walk finds where each
 * container ends in one pass, so the work is O(len log len) and the output at most about
 * 6 x len, whatever the text. Returns 0, or -1 (out unchanged) if the text is not strict JSON
 * or a number is not finite as an IEEE 754 double. */
int jg_jcs(const char *text, size_t len, jg_buf_t *out);

/* Drops from the NUL-terminated s, in place, every byte that is not part of a well-formed
 * UTF-8 character (a character cut by "%.64s" or by truncation, stray bytes), so that s can be
 * written as a JSON string. Returns the new length. */
size_t jg_utf8_scrub(char *s);

/* Writes v as ECMAScript's Number.prototype.toString() does, which is the JCS form of a number
 * (RFC 8785 3.2.2.3): the fewest digits that read back as v, laid out as 1e+21, 0.000001, 1e-7,
 * 123456789012345680000; -0 is "0". NUL-terminated in out. Returns the length, or -1 if v is
 * NaN or infinite. Independent of the C locale. */
#define JG_NUMBER_MAX 32
int jg_json_number(double v, char out[JG_NUMBER_MAX]);

/* glibc's "C" locale object, made once per process (for strtod_l and uselocale). */
locale_t jg_c_locale(void);

/* The cache key of section 6 of the contract: lowercase hex SHA-256 of the JCS form of
 * {"payload": P, "type": T} plus "version": V when version is not NULL. payload is JSON text
 * that passed jg_json_check (NULL means {}). Returns 0, or -1 as jg_jcs. */
int jg_cache_key(const char *type, const char *payload, size_t plen, const char *version,
                 char hex[65]);

#endif
