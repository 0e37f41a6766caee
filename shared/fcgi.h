/* fcgi.h — the FastCGI records jobgate writes: the one writer of the request threads' answers,
 * the event loop's (parked requests, on a non-blocking socket) and the parser's replies
 * (fcgiparse.h): FCGI_STDOUT records, then the empty FCGI_STDOUT and FCGI_END_REQUEST that end a
 * request. Pure functions over a jg_buf_t: no I/O. */
#ifndef JG_FCGI_H
#define JG_FCGI_H

#include <stddef.h>

#include "buf.h"

#define JG_FCGI_HEADER_LEN 8
#define JG_FCGI_MAX_CONTENT 65535

/* The header of one FCGI_STDOUT record of len (1..JG_FCGI_MAX_CONTENT) bytes, no padding:
 * for a writer that sends the header and the bytes together without copying them. */
void jg_fcgi_stdout_header(unsigned char h[JG_FCGI_HEADER_LEN], int request_id, size_t len);
/* Appends len bytes of a response (CGI-style headers and body) to out as FCGI_STDOUT
 * records of request request_id, split at 65535 bytes. len 0 appends nothing. */
void jg_fcgi_put_stdout(jg_buf_t *out, int request_id, const char *bytes, size_t len);
/* Appends the end of request request_id: an empty FCGI_STDOUT, then FCGI_END_REQUEST with
 * appStatus 0 and FCGI_REQUEST_COMPLETE. */
void jg_fcgi_put_end(jg_buf_t *out, int request_id);
/* Appends one record of type (FCGI_* number), no padding; len at most JG_FCGI_MAX_CONTENT. */
void jg_fcgi_put_record(jg_buf_t *out, int type, int request_id, const void *data, size_t len);
/* Appends an FCGI_END_REQUEST alone, appStatus 0 and protocol status proto (0 complete,
 * 1 FCGI_CANT_MPX_CONN, 3 FCGI_UNKNOWN_ROLE). */
void jg_fcgi_put_end_request(jg_buf_t *out, int request_id, int proto);

#endif
