/* fcgi.c — FastCGI record framing for what the event loop writes (see fcgi.h). */
#include "fcgi.h"

#define FCGI_VERSION_1 1
#define FCGI_END_REQUEST 3
#define FCGI_STDOUT 6
#define FCGI_MAX_CONTENT 65535

static void put_record(jg_buf_t *b, int type, int request_id, const char *data, size_t len)
{
    unsigned char h[8] = {FCGI_VERSION_1, (unsigned char)type,
                          (unsigned char)(request_id >> 8), (unsigned char)request_id,
                          (unsigned char)(len >> 8), (unsigned char)len, 0, 0};
    jg_buf_append(b, h, 8);
    if (len)
        jg_buf_append(b, data, len);
}

void jg_fcgi_put_stdout(jg_buf_t *out, int request_id, const char *bytes, size_t len)
{
    while (len) {
        size_t n = len > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : len;
        put_record(out, FCGI_STDOUT, request_id, bytes, n);
        bytes += n;
        len -= n;
    }
}

void jg_fcgi_put_end(jg_buf_t *out, int request_id)
{
    static const char end_body[8] = {0};   /* appStatus 0, FCGI_REQUEST_COMPLETE, reserved */
    put_record(out, FCGI_STDOUT, request_id, NULL, 0);
    put_record(out, FCGI_END_REQUEST, request_id, end_body, sizeof end_body);
}
