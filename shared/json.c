/* json.c — strict JSON checking (RFC 8259), top-level member lookup, RFC 8785 (JCS) canonical
 * output and the cache key (see json.h). Pure functions over byte spans: no I/O, no locale
 * dependence, no global state but one "C" locale object created once.
 *
 * All three walkers (check, member, JCS) are iterative with explicit stacks, so that no input and
 * no max_depth can exhaust the C stack. jg_json_member() and jg_json_nul_name() trust that their
 * input passed jg_json_check(); they stay in bounds on any input but give no meaningful answer
 * then. jg_jcs() checks its input itself, so that its work stays linear whatever it is given. */
#include "json.h"
#include "sha256.h"

#include <inttypes.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers shared by the walkers ---- */

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        abort();   /* as jg_buf: out of memory has no recovery path */
    return p;
}

/* Grows *arr (element size sz, capacity *cap) so that it holds at least need elements. */
static void grow(void **arr, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    *arr = xrealloc(*arr, c * sz);
    *cap = c;
}

/* Drops the bytes of b after n (b is a stack of decoded names). */
static void truncate_buf(jg_buf_t *b, size_t n)
{
    b->len = n;
    if (b->data)
        b->data[n] = '\0';
}

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static size_t skip_ws(const char *t, size_t len, size_t i)
{
    while (i < len && is_ws((unsigned char)t[i]))
        i++;
    return i;
}

/* Four hex digits at t[i..i+4) as a UTF-16 code unit, or -1. */
static long hex4(const char *t, size_t len, size_t i)
{
    if (i + 4 > len)
        return -1;
    long v = 0;
    for (size_t k = i; k < i + 4; k++) {
        unsigned char c = (unsigned char)t[k];
        int d = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                      : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Length (1..4) of the well-formed UTF-8 sequence at p (Unicode table 3-7: no overlongs, no
 * encoded surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;   /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++)
        if (p[k] < 0x80 || p[k] > 0xBF)
            return 0;
    return n;
}

static void put_utf8(jg_buf_t *b, unsigned long cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    jg_buf_append(b, u, n);
}

/* i is at the opening quote of a string; returns the index just after its closing quote (or len
 * if unterminated). Does not validate. */
static size_t skip_string(const char *t, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (t[i] == '"')
            return i + 1;
        if (t[i] == '\\')
            i++;
    }
    return len;
}

/* i is at the first byte of a value; returns the index just after it. Does not validate. */
static size_t skip_value(const char *t, size_t len, size_t i)
{
    if (i >= len)
        return len;
    if (t[i] == '"')
        return skip_string(t, len, i);
    if (t[i] == '{' || t[i] == '[') {
        size_t depth = 0;
        while (i < len) {
            char c = t[i];
            if (c == '"') {
                i = skip_string(t, len, i);
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if ((c == '}' || c == ']') && --depth == 0)
                return i + 1;
            i++;
        }
        return len;
    }
    while (i < len && !is_ws((unsigned char)t[i]) && t[i] != ',' && t[i] != ']' && t[i] != '}')
        i++;
    return i;
}

/* Appends the decoded (UTF-8) contents of the checked string whose content is t[i..end) (between
 * the quotes). Escapes become their characters, surrogate pairs one code point. */
static void decode_string(const char *t, size_t i, size_t end, jg_buf_t *out)
{
    size_t run = i;
    while (i < end) {
        if (t[i] != '\\') {
            i++;
            continue;
        }
        jg_buf_append(out, t + run, i - run);
        char e = i + 1 < end ? t[i + 1] : '\\';
        i += 2;
        switch (e) {
        case 'b': jg_buf_putc(out, '\b'); break;
        case 'f': jg_buf_putc(out, '\f'); break;
        case 'n': jg_buf_putc(out, '\n'); break;
        case 'r': jg_buf_putc(out, '\r'); break;
        case 't': jg_buf_putc(out, '\t'); break;
        case 'u': {
            long cu = hex4(t, end, i);
            if (cu < 0)
                cu = 0xFFFD;
            i += 4;
            if (cu >= 0xD800 && cu <= 0xDBFF && i + 6 <= end && t[i] == '\\' && t[i + 1] == 'u') {
                long lo = hex4(t, end, i + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cu = 0x10000 + ((cu - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            }
            put_utf8(out, (unsigned long)cu);
            break;
        }
        default: jg_buf_putc(out, e); break;   /* " \ / */
        }
        if (i > end)   /* a cut escape, only in unchecked text */
            i = end;
        run = i;
    }
    jg_buf_append(out, t + run, i - run);
}

/* ---- jg_json_check ---- */

typedef struct check_name {
    const char *p;      /* decoded bytes; set only while the object's names are compared */
    size_t off;         /* of the decoded bytes: in the text (no escapes) or in the arena */
    size_t len;         /* decoded length */
    size_t at;          /* index of the name's opening quote (for messages) */
    size_t rawlen;      /* length of the raw name between its quotes */
    int in_arena;
} check_name_t;

typedef struct check_frame {
    char kind;          /* '{' or '[' */
    size_t names0;      /* first name of this object in the names stack */
    size_t arena0;      /* arena length when this object opened */
} check_frame_t;

typedef struct checker {
    const char *t;
    size_t len;
    char *msg;
    size_t msglen;
    check_frame_t *frames;
    size_t nframes, cframes;
    check_name_t *names;
    size_t nnames, cnames;
    jg_buf_t arena;     /* decoded names that had escapes */
} checker_t;

static jg_json_status_t fail(checker_t *c, jg_json_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static jg_json_status_t fail(checker_t *c, jg_json_status_t st, const char *fmt, ...)
{
    if (c->msg && c->msglen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->msg, c->msglen, fmt, ap);
        va_end(ap);
    }
    return st;
}

static jg_json_status_t unexpected(checker_t *c, size_t i)
{
    if (i >= c->len)
        return fail(c, JG_JSON_SYNTAX, "unexpected end of input");
    unsigned char ch = (unsigned char)c->t[i];
    if (ch > 0x20 && ch < 0x7F)
        return fail(c, JG_JSON_SYNTAX, "unexpected '%c' at byte %zu", ch, i);
    return fail(c, JG_JSON_SYNTAX, "unexpected byte 0x%02x at byte %zu", ch, i);
}

/* Checks the string whose opening quote is at *ip; moves *ip past its closing quote and sets
 * *esc if it holds any escape. */
static jg_json_status_t check_string(checker_t *c, size_t *ip, int *esc)
{
    const char *t = c->t;
    size_t len = c->len, start = *ip, i = start + 1;
    *esc = 0;
    for (;;) {
        /* fast path over plain printable ASCII */
        while (i < len) {
            unsigned char ch = (unsigned char)t[i];
            if (ch < 0x20 || ch >= 0x80 || ch == '"' || ch == '\\')
                break;
            i++;
        }
        if (i >= len)
            return fail(c, JG_JSON_SYNTAX, "unterminated string at byte %zu", start);
        unsigned char ch = (unsigned char)t[i];
        if (ch == '"') {
            *ip = i + 1;
            return JG_JSON_OK;
        }
        if (ch < 0x20)
            return fail(c, JG_JSON_SYNTAX, "control character in string at byte %zu", i);
        if (ch >= 0x80) {
            size_t n = utf8_seq((const unsigned char *)t + i, len - i);
            if (n == 0)
                return fail(c, JG_JSON_UTF8, "invalid UTF-8 at byte %zu", i);
            i += n;
            continue;
        }
        /* a backslash */
        *esc = 1;
        if (i + 1 >= len)
            return fail(c, JG_JSON_SYNTAX, "unterminated string at byte %zu", start);
        switch (t[i + 1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            i += 2;
            continue;
        case 'u':
            break;
        default:
            return fail(c, JG_JSON_SYNTAX, "invalid escape at byte %zu", i);
        }
        long cu = hex4(t, len, i + 2);
        if (cu < 0)
            return fail(c, JG_JSON_SYNTAX, "invalid \\u escape at byte %zu", i);
        if (cu >= 0xDC00 && cu <= 0xDFFF)
            return fail(c, JG_JSON_SURROGATE, "lone surrogate \\u%04lx at byte %zu", cu, i);
        if (cu >= 0xD800 && cu <= 0xDBFF) {
            long lo = -1;
            if (i + 7 < len && t[i + 6] == '\\' && t[i + 7] == 'u') {
                lo = hex4(t, len, i + 8);
                if (lo < 0)
                    return fail(c, JG_JSON_SYNTAX, "invalid \\u escape at byte %zu", i + 6);
            }
            if (lo < 0xDC00 || lo > 0xDFFF)
                return fail(c, JG_JSON_SURROGATE, "lone surrogate \\u%04lx at byte %zu", cu, i);
            i += 6;
        }
        i += 6;
    }
}

static jg_json_status_t check_number(checker_t *c, size_t *ip)
{
    const char *t = c->t;
    size_t len = c->len, start = *ip, i = start;
    if (i < len && t[i] == '-')
        i++;
    if (i >= len || !is_digit((unsigned char)t[i]))
        goto bad;
    if (t[i] == '0') {
        i++;
        if (i < len && is_digit((unsigned char)t[i]))
            goto bad;   /* leading zero */
    } else {
        while (i < len && is_digit((unsigned char)t[i]))
            i++;
    }
    if (i < len && t[i] == '.') {
        i++;
        if (i >= len || !is_digit((unsigned char)t[i]))
            goto bad;
        while (i < len && is_digit((unsigned char)t[i]))
            i++;
    }
    if (i < len && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < len && (t[i] == '+' || t[i] == '-'))
            i++;
        if (i >= len || !is_digit((unsigned char)t[i]))
            goto bad;
        while (i < len && is_digit((unsigned char)t[i]))
            i++;
    }
    *ip = i;
    return JG_JSON_OK;
bad:
    return fail(c, JG_JSON_SYNTAX, "invalid number at byte %zu", start);
}

/* Records the name whose opening quote is at at and which ends just before end. */
static void add_name(checker_t *c, size_t at, size_t end, int esc)
{
    grow((void **)&c->names, &c->cnames, c->nnames + 1, sizeof *c->names);
    check_name_t *n = &c->names[c->nnames++];
    n->at = at;
    n->rawlen = end - at - 2;
    n->p = NULL;
    if (!esc) {
        n->in_arena = 0;
        n->off = at + 1;
        n->len = n->rawlen;
    } else {
        n->in_arena = 1;
        n->off = c->arena.len;
        decode_string(c->t, at + 1, end - 1, &c->arena);
        n->len = c->arena.len - n->off;
    }
}

static int cmp_name(const void *a, const void *b)
{
    const check_name_t *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    int r = memcmp(x->p, y->p, x->len);
    if (r)
        return r;
    return x->at < y->at ? -1 : x->at > y->at;   /* equal names: in text order */
}

/* An object closes: compares its names (sorted, so linear after the sort), then forgets them. */
static jg_json_status_t close_object(checker_t *c, const check_frame_t *f)
{
    size_t n = c->nnames - f->names0;
    check_name_t *v = c->names + f->names0;
    jg_json_status_t st = JG_JSON_OK;
    if (n >= 2) {
        for (size_t k = 0; k < n; k++)
            v[k].p = v[k].in_arena ? c->arena.data + v[k].off : c->t + v[k].off;
        qsort(v, n, sizeof *v, cmp_name);
        const check_name_t *dup = NULL;   /* the repeat that comes first in the text */
        for (size_t k = 1; k < n; k++)
            if (v[k].len == v[k - 1].len && memcmp(v[k].p, v[k - 1].p, v[k].len) == 0 &&
                (dup == NULL || v[k].at < dup->at))
                dup = &v[k];
        if (dup) {
            /* the name as written, cut at a character boundary if long */
            size_t shown = dup->rawlen, max = 40;
            const char *raw = c->t + dup->at + 1;
            if (shown > max) {
                shown = max;
                while (shown > 0 && ((unsigned char)raw[shown] & 0xC0) == 0x80)
                    shown--;
            }
            st = fail(c, JG_JSON_DUPLICATE, "duplicate member name \"%.*s%s\" at byte %zu",
                      (int)shown, raw, shown < dup->rawlen ? "..." : "", dup->at);
        }
    }
    c->nnames = f->names0;
    truncate_buf(&c->arena, f->arena0);
    return st;
}

jg_json_status_t jg_json_check(const char *text, size_t len, int max_depth, char *msg,
                               size_t msglen)
{
    checker_t c = {.t = text, .len = text ? len : 0, .msg = msg, .msglen = msglen};
    const char *t = c.t;
    jg_json_status_t st = JG_JSON_OK;
    int esc;
    size_t i = skip_ws(t, c.len, 0);
    if (msg && msglen)
        msg[0] = '\0';
    if (i >= c.len) {
        st = fail(&c, JG_JSON_SYNTAX, "empty input");
        goto out;
    }

value:   /* i is at the first byte of a value */
    if (i >= c.len) {
        st = unexpected(&c, i);
        goto out;
    }
    switch (t[i]) {
    case '{':
    case '[': {
        char open = t[i];
        if (max_depth < 0 || c.nframes >= (size_t)max_depth) {
            st = fail(&c, JG_JSON_DEPTH, "nesting deeper than %d", max_depth);
            goto out;
        }
        grow((void **)&c.frames, &c.cframes, c.nframes + 1, sizeof *c.frames);
        c.frames[c.nframes++] = (check_frame_t){open, c.nnames, c.arena.len};
        i = skip_ws(t, c.len, i + 1);
        if (i < c.len && t[i] == (open == '[' ? ']' : '}')) {
            c.nframes--;   /* empty container */
            i++;
            goto after;
        }
        if (open == '[')
            goto value;
        goto member;
    }
    case '"':
        if ((st = check_string(&c, &i, &esc)) != JG_JSON_OK)
            goto out;
        goto after;
    case 't':
    case 'f':
    case 'n': {
        const char *lit = t[i] == 't' ? "true" : t[i] == 'f' ? "false" : "null";
        size_t n = strlen(lit);
        if (c.len - i < n || memcmp(t + i, lit, n) != 0) {
            st = fail(&c, JG_JSON_SYNTAX, "invalid literal at byte %zu", i);
            goto out;
        }
        i += n;
        goto after;
    }
    default:
        if (t[i] == '-' || is_digit((unsigned char)t[i])) {
            if ((st = check_number(&c, &i)) != JG_JSON_OK)
                goto out;
            goto after;
        }
        st = unexpected(&c, i);
        goto out;
    }

member:   /* i is where an object member's name must start */
    if (i >= c.len || t[i] != '"') {
        if (i < c.len && t[i] != '}')
            st = fail(&c, JG_JSON_SYNTAX, "expected a member name at byte %zu", i);
        else
            st = unexpected(&c, i);
        goto out;
    }
    {
        size_t at = i;
        if ((st = check_string(&c, &i, &esc)) != JG_JSON_OK)
            goto out;
        add_name(&c, at, i, esc);
    }
    i = skip_ws(t, c.len, i);
    if (i >= c.len || t[i] != ':') {
        st = unexpected(&c, i);
        goto out;
    }
    i = skip_ws(t, c.len, i + 1);
    goto value;

after:   /* a value ended just before i */
    if (c.nframes == 0) {
        i = skip_ws(t, c.len, i);
        if (i < c.len)
            st = fail(&c, JG_JSON_SYNTAX, "trailing characters at byte %zu", i);
        goto out;
    }
    i = skip_ws(t, c.len, i);
    {
        check_frame_t *f = &c.frames[c.nframes - 1];
        char close = f->kind == '[' ? ']' : '}';
        if (i < c.len && t[i] == ',') {
            i = skip_ws(t, c.len, i + 1);
            if (f->kind == '[')
                goto value;
            goto member;
        }
        if (i < c.len && t[i] == close) {
            i++;
            if (f->kind == '{' && (st = close_object(&c, f)) != JG_JSON_OK)
                goto out;
            c.nframes--;
            goto after;
        }
        st = unexpected(&c, i);
    }

out:
    free(c.frames);
    free(c.names);
    jg_buf_free(&c.arena);
    return st;
}

/* ---- jg_json_member ---- */

/* Does the raw name t[i..end) (between quotes) decode to name? */
static int name_is(const char *t, size_t i, size_t end, const char *name)
{
    size_t nlen = strlen(name);
    if (memchr(t + i, '\\', end - i) == NULL)
        return end - i == nlen && memcmp(t + i, name, nlen) == 0;
    jg_buf_t b = JG_BUF_INIT;
    decode_string(t, i, end, &b);
    int eq = b.len == nlen && memcmp(b.data, name, nlen) == 0;
    jg_buf_free(&b);
    return eq;
}

int jg_json_member(const char *text, size_t len, const char *name, const char **value,
                   size_t *vlen)
{
    if (text == NULL || name == NULL)
        return 0;
    size_t i = skip_ws(text, len, 0);
    if (i >= len || text[i] != '{')
        return 0;
    i = skip_ws(text, len, i + 1);
    while (i < len && text[i] == '"') {
        size_t end = skip_string(text, len, i);
        int match = end > i + 1 && name_is(text, i + 1, end - 1, name);
        i = skip_ws(text, len, end);
        if (i >= len || text[i] != ':')
            return 0;
        i = skip_ws(text, len, i + 1);
        size_t vend = skip_value(text, len, i);
        if (match) {
            if (value)
                *value = text + i;
            if (vlen)
                *vlen = vend - i;
            return 1;
        }
        i = skip_ws(text, len, vend);
        if (i >= len || text[i] != ',')
            return 0;
        i = skip_ws(text, len, i + 1);
    }
    return 0;
}

long jg_json_nul_name(const char *text, size_t len)
{
    if (text == NULL)
        return -1;
    size_t i = skip_ws(text, len, 0);
    if (i >= len || text[i] != '{')
        return -1;
    i = skip_ws(text, len, i + 1);
    jg_buf_t b = JG_BUF_INIT;
    long found = -1;
    while (i < len && text[i] == '"') {
        size_t end = skip_string(text, len, i);
        /* U+0000 can only be written \u0000 (a raw NUL fails the check): decode the escaped */
        if (end > i + 1 && memchr(text + i + 1, '\\', end - i - 2) != NULL) {
            jg_buf_reset(&b);
            decode_string(text, i + 1, end - 1, &b);
            if (b.len > 0 && memchr(b.data, 0, b.len) != NULL) {
                found = (long)i;
                break;
            }
        }
        i = skip_ws(text, len, end);
        if (i >= len || text[i] != ':')
            break;
        i = skip_ws(text, len, skip_value(text, len, skip_ws(text, len, i + 1)));
        if (i >= len || text[i] != ',')
            break;
        i = skip_ws(text, len, i + 1);
    }
    jg_buf_free(&b);
    return found;
}

/* ---- UTF-8 repair of messages ---- */

size_t jg_utf8_scrub(char *s)
{
    size_t n = strlen(s), r = 0, w = 0;
    while (r < n) {
        size_t k = utf8_seq((const unsigned char *)s + r, n - r);
        if (k == 0) {   /* not part of a well-formed character: dropped */
            r++;
            continue;
        }
        if (w != r)
            memmove(s + w, s + r, k);
        w += k;
        r += k;
    }
    s[w] = '\0';
    return w;
}

/* ---- numbers: ECMAScript Number.prototype.toString ---- */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (c_locale == (locale_t)0)
        abort();
}

locale_t jg_c_locale(void)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale;
}

/* strtod in the "C" locale, whatever setlocale() the program did. */
static double strtod_c(const char *s, char **end)
{
    return strtod_l(s, end, jg_c_locale());
}

/* Does s × 10^e read back as exactly a? */
static int reads_back(uint64_t s, int e, double a)
{
    char tmp[48];
    snprintf(tmp, sizeof tmp, "%" PRIu64 "e%d", s, e);
    return strtod_c(tmp, NULL) == a;
}

/* Is there a p-digit decimal s × 10^e that reads back as a (a > 0, finite)? Tries the p-digit
 * decimal nearest to a and, because the rounding interval of a power of two is lopsided, its
 * two neighbours. The nearest one that reads back wins, as ECMAScript asks. Formatting with %e
 * is exact in glibc; the digits are picked out of its output by position, so whatever decimal
 * point the locale uses does not matter. */
static int digits_of(double a, int p, uint64_t *s, int *e)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.*e", p - 1, a);
    uint64_t v = 0;
    int nd = 0;
    const char *q = buf;
    for (; *q && *q != 'e'; q++)
        if (is_digit((unsigned char)*q)) {
            v = v * 10 + (uint64_t)(*q - '0');
            nd++;
        }
    if (*q != 'e')
        return 0;
    long x = strtol(q + 1, NULL, 10);
    int ex = (int)x - (nd - 1);
    if (reads_back(v, ex, a)) {
        *s = v;
        *e = ex;
        return 1;
    }
    if (reads_back(v + 1, ex, a)) {
        *s = v + 1;
        *e = ex;
        return 1;
    }
    if (v > 1 && reads_back(v - 1, ex, a)) {
        *s = v - 1;
        *e = ex;
        return 1;
    }
    return 0;
}

/* Lays out the number (neg ? -1 : 1) × 0.d[0..k) × 10^n the ECMAScript way (Number::toString
 * steps 5-10); d has no leading or trailing zeros, 1 <= k <= 17. Returns the length. */
static int es_layout(int neg, const char *d, int k, int n, char out[JG_NUMBER_MAX])
{
    char *o = out;
    if (neg)
        *o++ = '-';
    if (k <= n && n <= 21) {            /* 123000 */
        memcpy(o, d, (size_t)k);
        o += k;
        for (int z = 0; z < n - k; z++)
            *o++ = '0';
    } else if (0 < n && n <= 21) {      /* 123.45 */
        memcpy(o, d, (size_t)n);
        o += n;
        *o++ = '.';
        memcpy(o, d + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {      /* 0.000123 */
        *o++ = '0';
        *o++ = '.';
        for (int z = 0; z < -n; z++)
            *o++ = '0';
        memcpy(o, d, (size_t)k);
        o += k;
    } else {                            /* 1.23e+45, 1e-7 */
        *o++ = d[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, d + 1, (size_t)(k - 1));
            o += k - 1;
        }
        int x = n - 1;
        o += snprintf(o, 8, "e%c%d", x < 0 ? '-' : '+', x < 0 ? -x : x);
    }
    *o = '\0';
    return (int)(o - out);
}

int jg_json_number(double v, char out[JG_NUMBER_MAX])
{
    if (!isfinite(v))
        return -1;
    if (v == 0) {   /* 0 and -0 */
        memcpy(out, "0", 2);
        return 1;
    }
    double a = fabs(v);
    if (a < 9007199254740992.0 && (double)(int64_t)a == a)   /* an exact integer below 2^53 */
        return snprintf(out, JG_NUMBER_MAX, "%s%" PRId64, v < 0 ? "-" : "", (int64_t)a);
    /* The fewest digits that read back: 17 always do, and if p digits do, p + 1 do, so a binary
     * search finds the least p. */
    uint64_t s = 0;
    int e = 0, lo = 1, hi = 17, found = 0;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        uint64_t ms;
        int me;
        if (digits_of(a, mid, &ms, &me)) {
            hi = mid;
            s = ms;
            e = me;
            found = 1;
        } else {
            lo = mid + 1;
        }
    }
    if (!found && !digits_of(a, 17, &s, &e))
        return -1;   /* cannot happen for a finite double */
    while (s % 10 == 0) {
        s /= 10;
        e++;
    }
    char d[24];
    int k = snprintf(d, sizeof d, "%" PRIu64, s);
    return es_layout(v < 0, d, k, e + k, out);
}

/* The JCS form of the JSON number text t[0..len) without going through a double, when that is
 * safe: with at most 15 significant digits (DBL_DIG) and a magnitude well inside the normal
 * range, the double nearest to the text reads back as exactly those digits and no shorter
 * decimal reads back as it, so they are the ECMAScript digits. Returns the length, or -1 when
 * the text needs the general path. */
static int number_from_text(const char *t, size_t len, char out[JG_NUMBER_MAX])
{
    char d[16];
    int k = 0, neg = 0, point = 0, seen_point = 0, trailing = 0;
    size_t i = 0;
    long exp10 = 0;
    if (i < len && t[i] == '-') {
        neg = 1;
        i++;
    }
    /* significant digits into d; point = how many of them stand before the decimal point */
    for (; i < len; i++) {
        char c = t[i];
        if (c == '.') {
            seen_point = 1;
            continue;
        }
        if (!is_digit((unsigned char)c))
            break;
        if (c == '0' && k == 0) {   /* leading zero: only moves the point */
            if (seen_point)
                point--;
            continue;
        }
        if (c == '0') {
            trailing++;   /* held back: kept only if a non-zero digit follows */
        } else {
            if (k + trailing + 1 > 15)
                return -1;
            for (; trailing > 0; trailing--)
                d[k++] = '0';
            d[k++] = c;
        }
        if (!seen_point)
            point++;
    }
    if (i < len && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        int eneg = 0;
        if (i < len && (t[i] == '+' || t[i] == '-'))
            eneg = t[i++] == '-';
        size_t e0 = i;
        for (; i < len && is_digit((unsigned char)t[i]); i++)
            if (i - e0 < 6)
                exp10 = exp10 * 10 + (t[i] - '0');
        if (i - e0 > 5)
            return -1;
        if (eneg)
            exp10 = -exp10;
    }
    if (k == 0) {   /* 0, -0, 0.000e5 */
        memcpy(out, "0", 2);
        return 1;
    }
    /* trailing zeros before the point count in point already */
    long n = point + exp10;   /* value = 0.d × 10^n */
    if (n < -290 || n > 290)
        return -1;
    return es_layout(neg, d, k, (int)n, out);
}

/* ---- jg_jcs ---- */

typedef struct jcs_member {
    const char *p;      /* decoded name; set only while the object's members are sorted */
    size_t off, len;    /* decoded name: in the text (no escapes) or in the arena */
    int in_arena;
    size_t vpos;        /* index of the member's value */
} jcs_member_t;

typedef struct jcs_frame {
    char kind;          /* '{' or '[' */
    size_t pos;         /* arrays: where the next element or ']' is (after the child ends) */
    int in_child;       /* arrays: a child value is being written */
    size_t m0, mn, mi;  /* objects: members [m0, m0 + mn) in sorted order, next one mi */
    size_t arena0;
    size_t end;         /* objects: index just after '}' */
} jcs_frame_t;

/* Where each container of a checked text opens and ends, in order of opening. */
typedef struct jcs_span {
    size_t open, end;   /* index of '{' or '[', index just after its '}' or ']' */
} jcs_span_t;

typedef struct jcs_spans {
    jcs_span_t *v;
    size_t n;
} jcs_spans_t;

/* One pass over a checked text: fills s with every container's span. */
static void jcs_find_spans(const char *t, size_t len, jcs_spans_t *s)
{
    size_t cap = 0, *stack = NULL, nstack = 0, cstack = 0;
    for (size_t i = 0; i < len;) {
        char c = t[i];
        if (c == '"') {
            i = skip_string(t, len, i);
            continue;
        }
        if (c == '{' || c == '[') {
            grow((void **)&s->v, &cap, s->n + 1, sizeof *s->v);
            grow((void **)&stack, &cstack, nstack + 1, sizeof *stack);
            s->v[s->n] = (jcs_span_t){i, len};
            stack[nstack++] = s->n++;
        } else if ((c == '}' || c == ']') && nstack > 0) {
            s->v[stack[--nstack]].end = i + 1;
        }
        i++;
    }
    free(stack);
}

/* skip_value, with a container's end taken from the spans (a binary search on its opening). */
static size_t jcs_skip_value(const char *t, size_t len, size_t i, const jcs_spans_t *s)
{
    if (i >= len || (t[i] != '{' && t[i] != '['))
        return skip_value(t, len, i);
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].open < i)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n && s->v[lo].open == i ? s->v[lo].end : skip_value(t, len, i);
}

/* Compares two code points as their UTF-16 code units compare (RFC 8785 3.2.3): code points
 * above U+FFFF become surrogates D800..DFFF, which sort below U+E000..U+FFFF. */
static int cmp_cp_utf16(unsigned long a, unsigned long b)
{
    int sa = a >= 0x10000, sb = b >= 0x10000;
    if (sa && !sb)
        return b < 0xD800 ? 1 : -1;
    if (sb && !sa)
        return a < 0xD800 ? -1 : 1;
    return a < b ? -1 : a > b;
}

static unsigned long utf8_decode(const unsigned char *p, size_t avail)
{
    size_t n = utf8_seq(p, avail);
    switch (n) {
    case 2: return ((unsigned long)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    case 3: return ((unsigned long)(p[0] & 0x0F) << 12) | ((unsigned long)(p[1] & 0x3F) << 6) |
                   (p[2] & 0x3F);
    case 4: return ((unsigned long)(p[0] & 0x07) << 18) | ((unsigned long)(p[1] & 0x3F) << 12) |
                   ((unsigned long)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
    default: return p[0];
    }
}

static int cmp_member(const void *x, const void *y)
{
    const jcs_member_t *a = x, *b = y;
    const unsigned char *p = (const unsigned char *)a->p, *q = (const unsigned char *)b->p;
    size_t n = a->len < b->len ? a->len : b->len, i = 0;
    while (i < n && p[i] == q[i])
        i++;
    if (i == n)
        return a->len < b->len ? -1 : a->len > b->len;
    while (i > 0 && (p[i] & 0xC0) == 0x80)   /* back to the start of the differing character */
        i--;
    return cmp_cp_utf16(utf8_decode(p + i, a->len - i), utf8_decode(q + i, b->len - i));
}

/* Writes the string at t[i] (opening quote) in canonical form; returns the index after it. */
static size_t jcs_string(const char *t, size_t len, size_t i, jg_buf_t *out, jg_buf_t *scratch)
{
    size_t end = skip_string(t, len, i);
    size_t cend = end > i + 1 && t[end - 1] == '"' ? end - 1 : end;   /* the closing quote */
    if (memchr(t + i + 1, '\\', cend - i - 1) == NULL) {
        jg_buf_putc(out, '"');   /* no escapes: already canonical */
        jg_buf_append(out, t + i + 1, cend - i - 1);
        jg_buf_putc(out, '"');
    } else {
        jg_buf_reset(scratch);
        decode_string(t, i + 1, cend, scratch);
        jg_buf_json_string(out, scratch->data, scratch->len);
    }
    return end;
}

int jg_jcs(const char *text, size_t len, jg_buf_t *out)
{
    /* The walk below trusts checked text; unchecked, its skips could rescan (and its output
     * repeat) a span once per open bracket: exponential on "[" then "{\"\"[}" x 40. */
    if (text == NULL || jg_json_check(text, len, INT_MAX, NULL, 0) != JG_JSON_OK)
        return -1;
    const char *t = text;
    /* Each object's members are found before it is written; the end of a container value is
     * looked up in this table, so that no byte is scanned once per enclosing object. */
    jcs_spans_t spans = {NULL, 0};
    jcs_find_spans(t, len, &spans);
    size_t out0 = out->len, last_end = 0;
    jcs_frame_t *frames = NULL;
    size_t nframes = 0, cframes = 0;
    jcs_member_t *mem = NULL;
    size_t nmem = 0, cmem = 0;
    jg_buf_t arena = JG_BUF_INIT, scratch = JG_BUF_INIT;
    int rc = 0;
    size_t i = skip_ws(t, len, 0);

value:   /* i is at the first byte of a value */
    if (i >= len) {   /* only on text that did not pass the check */
        last_end = len;
        goto next;
    }
    switch (t[i]) {
    case '{': {
        size_t m0 = nmem, arena0 = arena.len;
        size_t j = skip_ws(t, len, i + 1);
        while (j < len && t[j] == '"') {
            size_t end = skip_string(t, len, j);
            size_t cend = end > j + 1 && t[end - 1] == '"' ? end - 1 : end;
            grow((void **)&mem, &cmem, nmem + 1, sizeof *mem);
            jcs_member_t *m = &mem[nmem++];
            if (memchr(t + j + 1, '\\', cend - j - 1) == NULL) {
                m->in_arena = 0;
                m->off = j + 1;
                m->len = cend - j - 1;
            } else {
                m->in_arena = 1;
                m->off = arena.len;
                decode_string(t, j + 1, cend, &arena);
                m->len = arena.len - m->off;
            }
            j = skip_ws(t, len, end);
            if (j < len && t[j] == ':')
                j = skip_ws(t, len, j + 1);
            m->vpos = j;
            j = skip_ws(t, len, jcs_skip_value(t, len, j, &spans));
            if (j < len && t[j] == ',')
                j = skip_ws(t, len, j + 1);
        }
        for (size_t k = m0; k < nmem; k++)
            mem[k].p = mem[k].in_arena ? arena.data + mem[k].off : t + mem[k].off;
        if (nmem - m0 > 1)
            qsort(mem + m0, nmem - m0, sizeof *mem, cmp_member);
        grow((void **)&frames, &cframes, nframes + 1, sizeof *frames);
        frames[nframes++] = (jcs_frame_t){.kind = '{', .m0 = m0, .mn = nmem - m0, .mi = 0,
                                          .arena0 = arena0, .end = j < len ? j + 1 : len};
        jg_buf_putc(out, '{');
        goto next;
    }
    case '[':
        grow((void **)&frames, &cframes, nframes + 1, sizeof *frames);
        frames[nframes++] = (jcs_frame_t){.kind = '[', .pos = skip_ws(t, len, i + 1)};
        jg_buf_putc(out, '[');
        goto next;
    case '"':
        last_end = jcs_string(t, len, i, out, &scratch);
        goto next;
    case 't':
    case 'f':
    case 'n': {
        size_t n = t[i] == 'f' ? 5 : 4;
        if (n > len - i)
            n = len - i;
        jg_buf_append(out, t + i, n);
        last_end = i + n;
        goto next;
    }
    default: {
        size_t end = skip_value(t, len, i);
        if (end == i)
            end = i + 1;   /* not a value (unchecked text): step over it, never loop */
        char fmt[JG_NUMBER_MAX];
        int n = number_from_text(t + i, end - i, fmt);
        if (n >= 0) {
            jg_buf_append(out, fmt, (size_t)n);
            last_end = end;
            goto next;
        }
        char num[64], *copy = num;
        if (end - i >= sizeof num)
            copy = xrealloc(NULL, end - i + 1);
        memcpy(copy, t + i, end - i);
        copy[end - i] = '\0';
        double d = strtod_c(copy, NULL);
        if (copy != num)
            free(copy);
        n = jg_json_number(d, fmt);
        if (n < 0) {
            rc = -1;
            goto out;
        }
        jg_buf_append(out, fmt, (size_t)n);
        last_end = end;
        goto next;
    }
    }

next:   /* a value was written (or a container opened): continue with the innermost container */
    if (nframes == 0)
        goto out;
    {
        jcs_frame_t *f = &frames[nframes - 1];
        if (f->kind == '{') {
            if (f->mi == f->mn) {
                jg_buf_putc(out, '}');
                last_end = f->end;
                nmem = f->m0;
                truncate_buf(&arena, f->arena0);
                nframes--;
                goto next;
            }
            jcs_member_t *m = &mem[f->m0 + f->mi];
            if (f->mi++ > 0)
                jg_buf_putc(out, ',');
            jg_buf_json_string(out, m->in_arena ? arena.data + m->off : t + m->off, m->len);
            jg_buf_putc(out, ':');
            i = m->vpos;
            goto value;
        }
        if (f->in_child) {
            f->pos = skip_ws(t, len, last_end);
            if (f->pos < len && t[f->pos] == ',') {
                jg_buf_putc(out, ',');
                i = skip_ws(t, len, f->pos + 1);
                goto value;
            }
        }
        if (f->pos >= len || t[f->pos] == ']') {
            jg_buf_putc(out, ']');
            last_end = f->pos < len ? f->pos + 1 : len;
            nframes--;
            goto next;
        }
        f->in_child = 1;
        i = f->pos;
        goto value;
    }

out:
    if (rc != 0)
        truncate_buf(out, out0);
    free(frames);
    free(mem);
    free(spans.v);
    jg_buf_free(&arena);
    jg_buf_free(&scratch);
    return rc;
}

/* ---- jg_cache_key ---- */

int jg_cache_key(const char *type, const char *payload, size_t plen, const char *version,
                 char hex[65])
{
    /* "payload" < "type" < "version" in UTF-16 order, so the members are written in that order;
     * jg_buf_json_string escapes exactly as JCS does. */
    jg_buf_t b = JG_BUF_INIT;
    jg_buf_puts(&b, "{\"payload\":");
    if (payload == NULL) {
        jg_buf_puts(&b, "{}");
    } else if (jg_jcs(payload, plen, &b) != 0) {
        jg_buf_free(&b);
        return -1;
    }
    jg_buf_puts(&b, ",\"type\":");
    jg_buf_json_string(&b, type ? type : "", type ? strlen(type) : 0);
    if (version) {
        jg_buf_puts(&b, ",\"version\":");
        jg_buf_json_string(&b, version, strlen(version));
    }
    jg_buf_putc(&b, '}');
    unsigned char md[JG_SHA256_LEN];
    jg_sha256(b.data, b.len, md);
    jg_buf_free(&b);
    static const char digits[] = "0123456789abcdef";
    for (int k = 0; k < JG_SHA256_LEN; k++) {
        hex[2 * k] = digits[md[k] >> 4];
        hex[2 * k + 1] = digits[md[k] & 15];
    }
    hex[64] = '\0';
    return 0;
}
