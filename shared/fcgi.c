/* fcgi.c — FastCGI record framing for everything jobgate writes (see fcgi.h). */
#include "fcgi.h"

#define FCGI_VERSION_1 1
#define FCGI_END_REQUEST 3
#define FCGI_STDOUT 6
#define FCGI_MAX_CONTENT JG_FCGI_MAX_CONTENT

static void header(unsigned char h[JG_FCGI_HEADER_LEN], int type, int request_id, size_t len)
{
    h[0] = FCGI_VERSION_1;
    h[1] = (unsigned char)type;
    h[2] = (unsigned char)(request_id >> 8);
    h[3] = (unsigned char)request_id;
    h[4] = (unsigned char)(len >> 8);
    h[5] = (unsigned char)len;
    h[6] = h[7] = 0;   /* no padding, reserved */
}

void jg_fcgi_stdout_header(unsigned char h[JG_FCGI_HEADER_LEN], int request_id, size_t len)
{
    header(h, FCGI_STDOUT, request_id, len);
}

void jg_fcgi_put_record(jg_buf_t *b, int type, int request_id, const void *data, size_t len)
{
    unsigned char h[JG_FCGI_HEADER_LEN];
    header(h, type, request_id, len);
    jg_buf_append(b, h, sizeof h);
    if (len)
        jg_buf_append(b, data, len);
}

void jg_fcgi_put_stdout(jg_buf_t *out, int request_id, const char *bytes, size_t len)
{
    while (len) {
        size_t n = len > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : len;
        jg_fcgi_put_record(out, FCGI_STDOUT, request_id, bytes, n);
        bytes += n;
        len -= n;
    }
}

void jg_fcgi_put_end_request(jg_buf_t *out, int request_id, int proto)
{
    const unsigned char body[8] = {0, 0, 0, 0, (unsigned char)proto, 0, 0, 0};   /* appStatus 0 */
    jg_fcgi_put_record(out, FCGI_END_REQUEST, request_id, body, sizeof body);
}

void jg_fcgi_put_end(jg_buf_t *out, int request_id)
{
    jg_fcgi_put_record(out, FCGI_STDOUT, request_id, NULL, 0);
    jg_fcgi_put_end_request(out, request_id, 0);   /* FCGI_REQUEST_COMPLETE */
}
