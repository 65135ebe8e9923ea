/* http_support.h: reading HTTP responses in the tests, with libhttp-parser
 * (no hand-written HTTP parsing here either). test_http.c reads the bytes
 * http_respond() built; it_http.c reads a socket's stream of pipelined
 * responses, one at a time. Linked as the static library nearest_http_support. */
#ifndef NEARESTD_HTTP_SUPPORT_H
#define NEARESTD_HTTP_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>

#define HS_MAX_HEADERS 32

struct hs_response {
    int status;
    size_t n_headers;
    char *names[HS_MAX_HEADERS];  /* as sent */
    char *values[HS_MAX_HEADERS];
    char *body;                   /* NUL-terminated; "" when empty */
    size_t body_len;
    bool keep_alive;              /* by libhttp-parser's reading of the response */
};

/* Parses the first whole response in data[0..len-1]; `head` says it answers
 * a HEAD request (so it has no body, whatever Content-Length says). Returns
 * the bytes it took, 0 when data holds no whole response yet, or -1 when
 * data is not HTTP. *out is filled on a positive return only; release it
 * with hs_response_free(). */
long hs_parse(const char *data, size_t len, bool head, struct hs_response *out);

/* The value of header `name` (ASCII case ignored), or NULL. */
const char *hs_header(const struct hs_response *r, const char *name);

/* Frees what hs_parse() allocated in *r. */
void hs_response_free(struct hs_response *r);

#endif
