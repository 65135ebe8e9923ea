/* http.h: HTTP/1.1 for map front ends and web backends, without sockets.
 *
 * Two halves, both byte-level so that tests and the fuzzer drive them with
 * strings (tests/test_http.c, fuzz/fuzz_http.c) and http_srv.c only moves
 * bytes:
 *
 *   - struct http_reader cuts requests out of a connection's byte stream with
 *     libhttp-parser (pipelined requests come out one at a time, in order) and
 *     enforces the size limits below;
 *   - http_respond() turns one request into one complete response. A route
 *     and its query string (split and percent-decoded by liburiparser) become
 *     an argv for cmd_dispatch(), run in a fresh session set to FORMAT geojson
 *     (or json, when the client's Accept asks for application/json and not
 *     application/geo+json): the body is exactly the line protocol's answer to
 *     the same command, and there is no second implementation of any query.
 *
 * Routes (docs/HTTP.md has the parameters, statuses and examples):
 *   GET /v1/nearest /v1/radius /v1/inarea /v1/serves /v1/areas /v1/categories
 *   GET /v1/facilities/<id>, and GET / (the map page, embedded at build time).
 * Only GET, HEAD and OPTIONS: the interface is read-only, whatever address it
 * listens on. Every response carries Access-Control-Allow-Origin: * and a
 * Content-Length. Engine errors map to statuses: SYNTAX, UNKNOWN, ARG, RANGE,
 * LIMIT 400; NOTFOUND 404; BUSY 503; DENIED 403; INTERNAL 500.
 *
 * Limits: a request head (request line and headers) over HTTP_MAX_HEAD_BYTES
 * or a URL over HTTP_MAX_URL_BYTES is answered 413 and the connection closed;
 * so is any request that announces a body (nothing here takes one). The
 * biggest real request, a NEAREST with eight WHERE conditions, a time and a
 * CRS, is about 300 bytes of URL; browsers send 0.5-2 KB of headers. */
#ifndef NEARESTD_HTTP_H
#define NEARESTD_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "cmd.h"

#define HTTP_MAX_URL_BYTES 4096       /* the request target as sent */
#define HTTP_MAX_HEAD_BYTES 16384     /* request line and header lines, CRLFs included */
#define HTTP_MAX_ACCEPT_BYTES 1024    /* of the Accept header kept; the rest is ignored */
#define HTTP_MAX_QUERY_PARAMS 64      /* name=value pairs in one query string */

/* The embedded map page (clients/web/index.html at build time), generated
 * into the build directory by daemon/CMakeLists.txt. */
extern const unsigned char http_page_html[];
extern const size_t http_page_html_len;

enum http_req_method {
    HTTP_REQ_GET = 0,
    HTTP_REQ_HEAD = 1,
    HTTP_REQ_OPTIONS = 2,
    HTTP_REQ_OTHER = 3,           /* any other method libhttp-parser knows: answered 405 */
};

/* One parsed request. The strings are NUL-terminated and borrowed from the
 * reader (or the caller, in tests) until its next call. */
struct http_request {
    enum http_req_method method;
    const char *method_name;      /* "GET", "POST", ... as libhttp-parser names it */
    const char *url;              /* the request target, e.g. "/v1/nearest?lat=36.1" */
    const char *accept;           /* the Accept header's value, "" when absent */
    bool keep_alive;              /* HTTP/1.1 without "Connection: close", or 1.0 with
                                   * "Connection: keep-alive" */
};

/* One complete response: status line, headers, body. */
struct http_response {
    int status;                   /* 200, 204, 400, ... */
    char *bytes;                  /* caller owns it, free with free() */
    size_t len;
    bool close;                   /* close the connection once it is sent */
};

/* ---- Reading requests ------------------------------------------------------- */

enum http_read {
    HTTP_READ_MORE = 0,           /* every byte consumed, no whole request yet */
    HTTP_READ_REQUEST = 1,        /* a request is complete: *req is filled */
    HTTP_READ_ERROR = 2,          /* malformed or over a limit: answer with
                                   * http_reader_error() and close */
};

struct http_reader;

/* Returns a new reader for one connection, or NULL when out of memory.
 * Caller owns it; free with http_reader_free(). */
struct http_reader *http_reader_new(void);

/* Frees the reader. NULL is a no-op. */
void http_reader_free(struct http_reader *r);

/* Parses data[0..len-1], the next bytes of the connection, and stops after the
 * first complete request: returns HTTP_READ_REQUEST with *req filled (its
 * strings borrowed until the next call) and the bytes used in *consumed; the
 * caller answers it and calls again with the rest. Returns HTTP_READ_MORE when
 * all bytes were used without completing a request, and HTTP_READ_ERROR when
 * the stream is malformed or over a limit; a reader in error stays in error.
 * After a request that does not keep the connection alive, later bytes are
 * consumed and ignored (HTTP_READ_MORE). */
enum http_read http_reader_next(struct http_reader *r, const char *data, size_t len,
                                size_t *consumed, struct http_request *req);

/* The response to a reader in error: 413 (head, URL or body over the limits),
 * or 400 (malformed), with the JSON error object LIMIT or SYNTAX; it closes
 * the connection. Returns 0, or CMD_ERR_INTERNAL when out of memory. */
int http_reader_error(const struct http_reader *r, struct http_response *out);

/* ---- Answering requests ----------------------------------------------------- */

/* Answers req by running its route's command on env (see above); HEAD gets
 * GET's headers without the body. *out is filled; the caller frees out->bytes.
 * out->close is set when the request does not keep the connection alive.
 * Returns 0, or CMD_ERR_INTERNAL when out of memory (*out is then empty). */
int http_respond(const struct cmd_env *env, const struct http_request *req,
                 struct http_response *out);

/* Builds a response with `status` and the JSON error object of cmd_err `code`
 * and message (NULL: the code's default) as body, closing the connection when
 * `close`: for the server's own refusals (503 at the connection cap).
 * Returns 0, or CMD_ERR_INTERNAL when out of memory. */
int http_respond_error(int status, int code, const char *message, bool close,
                       struct http_response *out);

/* The HTTP status of a cmd_err code (0: 200). */
int http_status_of(int code);

#endif
