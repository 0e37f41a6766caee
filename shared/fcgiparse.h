/* fcgiparse.h — reading one FastCGI request from bytes as they arrive (the Responder role of
 * the FastCGI 1.0 specification). Pure: no sockets; the caller reads, feeds whatever it got
 * (any split, a byte at a time gives the same result) and writes what the parser asks it to.
 *
 * What it does with each record:
 *   - FCGI_BEGIN_REQUEST starts the request (its id, the keep-conn flag). One request at a time,
 *     as libfcgi: a BEGIN_REQUEST of another id while one is active is answered END_REQUEST
 *     FCGI_CANT_MPX_CONN and skipped; one of the active id again is a protocol error. A role
 *     other than FCGI_RESPONDER is answered END_REQUEST FCGI_UNKNOWN_ROLE.
 *   - FCGI_PARAMS up to the empty record: name-value pairs (1- or 4-byte lengths, split across
 *     records anywhere) decoded into one arena as "NAME=VALUE" strings, with an envp-style
 *     array over them — no allocation per parameter. A name that is empty or holds '=' or
 *     NUL is dropped (no lookup could find it as sent). More than max_params bytes of them are
 *     dropped (params_over is set; the request still completes, with no parameters), so that
 *     the caller can answer it with an error.
 *   - FCGI_STDIN up to the empty record: the body, kept up to max_body bytes; beyond that it is
 *     only counted (stdin_total), so that the caller answers 413 and memory stays bounded.
 *   - FCGI_ABORT_REQUEST of the active request: the request ends as aborted.
 *   - FCGI_GET_VALUES (request id 0): answered FCGI_GET_VALUES_RESULT with FCGI_MAX_CONNS 1,
 *     FCGI_MAX_REQS 1, FCGI_MPXS_CONNS 0 for the names asked (libfcgi's values); any other
 *     type on request id 0: FCGI_UNKNOWN_TYPE. Records of other request ids, and FCGI_DATA,
 *     are skipped. Padding is skipped.
 * A version other than 1, a BEGIN_REQUEST shorter than 8 bytes, STDIN before the parameters
 * ended, or parameters whose lengths overrun their bytes are protocol errors: the caller
 * closes the connection.
 *
 * Memory: the parser owns its arena, body and reply buffers and keeps them between requests
 * (jg_fcgi_parser_next); jg_fcgi_parser_free releases them. */
#ifndef JG_FCGIPARSE_H
#define JG_FCGIPARSE_H

#include <stddef.h>

#include "buf.h"

/* Parameters of one request at most, in bytes as sent (names, values and their lengths). */
#define JG_FCGI_MAX_PARAMS (256u << 10)

typedef enum jg_fcgi_status {
    JG_FCGI_MORE = 0,     /* feed more bytes */
    JG_FCGI_REQUEST,      /* a whole request: parameters and body up to the empty STDIN */
    JG_FCGI_ABORTED,      /* the active request was aborted (FCGI_ABORT_REQUEST) */
    JG_FCGI_ERROR         /* a protocol error: close the connection */
} jg_fcgi_status_t;

typedef struct jg_fcgi_parser {
    /* limits (jg_fcgi_parser_init) */
    size_t max_params, max_body;

    /* the request, valid once status is JG_FCGI_REQUEST */
    jg_fcgi_status_t status;
    int request_id;        /* 0: no request begun */
    int keep_conn;         /* FCGI_KEEP_CONN: the connection carries further requests */
    char **envp;           /* "NAME=VALUE" strings, NULL-terminated (points into the arena) */
    int params_over;       /* more than max_params bytes of parameters: none kept */
    jg_buf_t body;         /* STDIN, the first max_body bytes */
    size_t stdin_total;    /* STDIN bytes received (may exceed body.len) */
    const char *error;     /* why, when status is JG_FCGI_ERROR (static text) */

    /* bytes to write back (management answers, END_REQUEST refusals): the caller writes
     * and resets them after each feed */
    jg_buf_t reply;

    /* internal state */
    unsigned char hdr[8];
    size_t hdr_have;       /* header bytes gathered; 8: inside a record's content/padding */
    size_t content_left, padding_left;
    int kind;              /* what the record's content is for, from its header */
    unsigned char small[8];   /* a BEGIN_REQUEST's body */
    size_t small_have;
    int params_done, begun;
    jg_buf_t arena;        /* raw PARAMS bytes, decoded in place at their end */
    jg_buf_t mgmt;         /* a GET_VALUES record's content */
    char **env;
    size_t env_cap;
} jg_fcgi_parser_t;

/* Prepares p (memory is allocated as needed). max_body: STDIN bytes kept. */
void jg_fcgi_parser_init(jg_fcgi_parser_t *p, size_t max_params, size_t max_body);
/* Forgets the request (keeps the memory and the limits) for the next one on the connection. */
void jg_fcgi_parser_next(jg_fcgi_parser_t *p);
void jg_fcgi_parser_free(jg_fcgi_parser_t *p);
/* The memory p holds, in bytes (its buffers, not the struct). */
size_t jg_fcgi_parser_bytes(const jg_fcgi_parser_t *p);

/* Consumes bytes from in[0..len) until the status is no longer JG_FCGI_MORE; returns how many
 * it consumed (the rest belongs to what comes after the request). Call again with more bytes
 * while p->status is JG_FCGI_MORE; after it changed, call jg_fcgi_parser_next first. Anything
 * appended to p->reply is to be written to the peer. */
size_t jg_fcgi_feed(jg_fcgi_parser_t *p, const void *in, size_t len);

/* The value of parameter name in envp ("NAME=VALUE" strings, NULL-terminated), or NULL. */
const char *jg_fcgi_getenv(char **envp, const char *name);

#endif
