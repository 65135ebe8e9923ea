/* nearest.h: libnearest, the C client library of nearestd. The one public header,
 * installed as <nearest.h>; link with `pkg-config --cflags --libs nearest`.
 *
 * Three parts, each in its own source file:
 *   - answers (cli_reply.c): bytes from the server in, parsed answers out, no
 *     sockets, so it is unit-tested and fuzzed on its own;
 *   - requests (cli_request.c): tokens in, one correctly quoted request line out;
 *   - the connection (cli_conn.c): a blocking TCP connection that sends request
 *     lines and reads answers in order, with a timeout on every wait.
 *
 * Protocol (PROTOCOL.md): an answer is "OK <n>" followed by n record lines, or
 * one line "ERR <CODE> <message>", or, once the connection has said FORMAT
 * json or geojson, one line holding a JSON object (kept whole, not parsed
 * here). Requests may be pipelined: send several, then read as many answers,
 * which come in request order.
 *
 * Ownership, in one rule: every pointer a function hands out through an
 * `**out` parameter or as a `_new`/`_open` result is the caller's, freed with
 * the matching `_free`/`_close` (or free() where said); every other pointer
 * (record fields, facility and area strings, error strings) is borrowed from
 * the object it came from and is valid until that object is freed.
 * `_free(NULL)` and `_close(NULL)` do nothing. Nothing here is thread-safe
 * across one object; separate objects may be used from separate threads.
 *
 * Every symbol carries the prefix cli_ (types, functions) or CLI_/NEAREST_
 * (macros). The shared library exports exactly the functions marked
 * NEAREST_API below and nothing else. */
#ifndef NEAREST_H
#define NEAREST_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NEAREST_VERSION_MAJOR 1
#define NEAREST_VERSION_MINOR 0
#define NEAREST_VERSION_PATCH 0

/* Marks the exported functions. The library is compiled with
 * -fvisibility=hidden, so anything without this mark stays inside it. */
#if defined(__GNUC__) || defined(__clang__)
#define NEAREST_API __attribute__((visibility("default")))
#else
#define NEAREST_API
#endif

#define CLI_DEFAULT_PORT 7878
#define CLI_DEFAULT_TIMEOUT_MS 5000
#define CLI_MAX_REPLY_LINE_BYTES 16777216 /* one answer line, terminator excluded: 16 MiB,
                                            room for an AREAS answer in FORMAT geojson,
                                            polygons included (150 KB for Licang) */
#define CLI_MAX_REPLY_RECORDS 1000000    /* records in one answer; the server sends <= 1000 */

/* ---- Errors ------------------------------------------------------------------ */

/* Errors of the client library: 0 is success, these are negative. An ERR
 * answer from the server is not one of these: it is a successful read of a
 * reply whose kind is CLI_REPLY_ERR. */
enum cli_err {
    CLI_ERR_PARSE = -1,     /* the server sent something that is not an answer */
    CLI_ERR_NOMEM = -2,
    CLI_ERR_LIMIT = -3,     /* a line over its limit (request or answer) */
    CLI_ERR_ARG = -4,       /* a bad argument from the caller (e.g. a newline in a token) */
    CLI_ERR_CONNECT = -5,   /* could not connect; cli_conn_errstr() says why */
    CLI_ERR_IO = -6,        /* send or receive failed */
    CLI_ERR_TIMEOUT = -7,   /* no progress within timeout_ms */
    CLI_ERR_CLOSED = -8,    /* the server closed the connection (mid-answer or before one) */
};

/* Returns a short English description of a cli_err code (a static string). */
NEAREST_API const char *cli_err_str(int err);

/* ---- Answers ----------------------------------------------------------------- */

enum cli_reply_kind {
    CLI_REPLY_OK,       /* "OK <n>": n records */
    CLI_REPLY_ERR,      /* "ERR <CODE> <message>" */
    CLI_REPLY_JSON,     /* one JSON line (FORMAT json|geojson): in `json` */
};

/* One record line, split at tabs. */
struct cli_record {
    char *line;         /* the line as received, without "\r\n" */
    size_t n_fields;    /* >= 1 */
    char **fields;      /* n_fields NUL-terminated fields */
};

/* One whole answer. Every pointer in it is owned by the reply and freed by
 * cli_reply_free(); the caller owns the reply itself. */
struct cli_reply {
    enum cli_reply_kind kind;
    char *header;               /* the first line as received: "OK 3", "ERR ...", "{...}" */
    size_t n_records;           /* CLI_REPLY_OK only */
    struct cli_record *records;
    char *code;                 /* CLI_REPLY_ERR: the code word, e.g. "RANGE" */
    char *message;              /* CLI_REPLY_ERR: the message, possibly "" */
    char *json;                 /* CLI_REPLY_JSON: the object's text */
};

/* A facility record (NEAREST, RADIUS, INAREA, GET, PUT, SET): the six fields
 * of PROTOCOL.md, then its attributes as "key=value" fields. */
struct cli_facility {
    const char *id;             /* borrowed from the record, like every pointer here */
    const char *category;
    const char *name;
    double lat_deg;
    double lon_deg;
    bool has_distance;          /* false when the server sent "-" (GET) */
    double distance_m;          /* valid when has_distance */
    size_t n_extra;             /* attribute fields after distance_m */
    char *const *extra;         /* the record's fields[6..]: "stars=4", ... */
};

/* An area record of SERVES (five fields) or AREAS (four fields). */
struct cli_area {
    const char *id;             /* borrowed from the record, like every pointer here */
    const char *kind;           /* district, street, community, catchment, service_area */
    const char *name;
    const char *parent;         /* "" for the district */
    const char *served_by;      /* SERVES: ";"-separated facility ids, possibly "";
                                   AREAS: NULL (the answer does not say) */
};

/* Frees the reply and everything it points to. NULL is a no-op. */
NEAREST_API void cli_reply_free(struct cli_reply *reply);

/* Reads a record as a facility. The strings are borrowed from `rec` and stay
 * valid until its reply is freed. Returns 0, or CLI_ERR_PARSE if the record
 * has fewer than six fields, or a position or distance that is not a number. */
NEAREST_API int cli_record_facility(const struct cli_record *rec, struct cli_facility *out);

/* The value of the facility's attribute `key` (the text after "key=" in the
 * first extra field naming it), borrowed from the record; NULL when the
 * facility has no such attribute. */
NEAREST_API const char *cli_facility_attr(const struct cli_facility *f, const char *key);

/* Reads a record of SERVES or AREAS as an area. The strings are borrowed from
 * `rec`. Returns 0, or CLI_ERR_PARSE unless the record has four or five fields
 * with a non-empty id and kind. */
NEAREST_API int cli_record_area(const struct cli_record *rec, struct cli_area *out);

/* ---- The answer parser (bytes in, answers out; no sockets) --------------------
 *
 * The parser takes reply lines out of the protocol's own line reader, so the
 * framing rules ("\n", optional "\r") are the server's. It works on any split
 * of the stream and on many pipelined answers. A malformed header ("OK -1",
 * "OK x", "OK" with more than CLI_MAX_REPLY_RECORDS, neither OK nor ERR nor
 * "{") is CLI_ERR_PARSE, which stays until cli_reply_parser_reset(), as in
 * hiredis. */

struct cli_reply_parser;

/* Returns a parser, or NULL when out of memory. Free with cli_reply_parser_free(). */
NEAREST_API struct cli_reply_parser *cli_reply_parser_new(void);

/* Frees the parser and any partial answer. NULL is a no-op. */
NEAREST_API void cli_reply_parser_free(struct cli_reply_parser *p);

/* Appends len bytes received from the server (copied). Returns 0,
 * CLI_ERR_NOMEM, or the parser's sticky error if it is in one. */
NEAREST_API int cli_reply_parser_feed(struct cli_reply_parser *p, const char *buf, size_t len);

/* Takes the next whole answer out. Returns 1 and sets *out (caller owns it,
 * free with cli_reply_free()) when one is complete; 0 when more bytes are
 * needed; or a negative cli_err (CLI_ERR_PARSE, CLI_ERR_LIMIT, CLI_ERR_NOMEM)
 * which stays until cli_reply_parser_reset(). */
NEAREST_API int cli_reply_parser_next(struct cli_reply_parser *p, struct cli_reply **out);

/* Whether bytes of an unfinished answer are held (a header without all its
 * records, or part of a line): a server closing now cut an answer short. */
NEAREST_API bool cli_reply_parser_is_partial(const struct cli_reply_parser *p);

/* Forgets buffered bytes, any partial answer and any error. */
NEAREST_API void cli_reply_parser_reset(struct cli_reply_parser *p);

/* ---- Requests ---------------------------------------------------------------
 *
 * A token is sent bare when it can be, and double-quoted (with \" and \\)
 * when it is empty or holds a blank, a quote or a backslash, so that the
 * server's tokenizer gives back exactly the caller's tokens. */

/* Builds the request line for argv[0..argc-1], ending in "\n", into a new
 * NUL-terminated string *line_out of *len_out bytes ("\n" included); the
 * caller owns it and frees it with free(). Returns 0, CLI_ERR_ARG if argc is
 * 0 or more than 64 (the protocol's limit) or a token holds "\r" or "\n" (no
 * quoting can carry a line break), CLI_ERR_LIMIT if the line would exceed
 * 4096 bytes, or CLI_ERR_NOMEM. */
NEAREST_API int cli_request_build(size_t argc, const char *const *argv, char **line_out,
                                  size_t *len_out);

/* Whether a token must be quoted to survive the server's tokenizer (1 or 0). */
NEAREST_API int cli_request_needs_quotes(const char *token);

/* ---- The connection ---------------------------------------------------------
 *
 * One connection sends request lines and reads answers in order; every wait
 * (connect, send, receive) gives up after timeout_ms without progress. The
 * socket has TCP_NODELAY set, so a request leaves at once. Use one connection
 * per thread. */

struct cli_conn;

/* Connects to host:port (a name, an IPv4 or an IPv6 address; every address
 * the name resolves to is tried in turn), waiting at most timeout_ms for
 * each (0: no limit). Returns NULL only when out of memory; otherwise the
 * caller owns the connection and must call cli_conn_close() on it even when
 * connecting failed, which cli_conn_err() tells (CLI_ERR_CONNECT), with the
 * reason in cli_conn_errstr() (e.g. "Connection refused"). */
NEAREST_API struct cli_conn *cli_conn_open(const char *host, int port, int timeout_ms);

/* Closes the socket and frees the connection. NULL is a no-op. */
NEAREST_API void cli_conn_close(struct cli_conn *c);

/* The connection's error: 0, or the negative cli_err that put it out of use.
 * Errors in the caller's request (CLI_ERR_ARG, or CLI_ERR_LIMIT and
 * CLI_ERR_NOMEM while building it) leave the connection usable and this at 0;
 * any other error is sticky: every later call returns it. */
NEAREST_API int cli_conn_err(const struct cli_conn *c);

/* A sentence about the last error (sticky or not), borrowed, valid until the
 * next call on c; "" when there has been none. */
NEAREST_API const char *cli_conn_errstr(const struct cli_conn *c);

/* Sends one raw request line of len bytes; a trailing "\n" (or "\r\n") is
 * optional and added when missing; the line goes out in one send. Returns 0,
 * CLI_ERR_ARG if the line holds another "\n" (one line gets one answer),
 * CLI_ERR_NOMEM (both leave the connection usable), or CLI_ERR_IO /
 * CLI_ERR_TIMEOUT. */
NEAREST_API int cli_conn_send_line(struct cli_conn *c, const char *line, size_t len);

/* Sends the request made of argv[0..argc-1] (see cli_request_build()). */
NEAREST_API int cli_conn_send(struct cli_conn *c, size_t argc, const char *const *argv);

/* Waits for the next answer. Returns 0 and sets *out (caller owns it, free
 * with cli_reply_free()), or CLI_ERR_CLOSED (the server closed before a whole
 * answer), CLI_ERR_TIMEOUT, CLI_ERR_IO, CLI_ERR_PARSE, CLI_ERR_LIMIT,
 * CLI_ERR_NOMEM. An ERR answer from the server is a success here: look at
 * (*out)->kind. After pipelined sends, answers come in the order of the
 * requests, one per call. */
NEAREST_API int cli_conn_read_reply(struct cli_conn *c, struct cli_reply **out);

/* cli_conn_send() then cli_conn_read_reply(). */
NEAREST_API int cli_conn_command(struct cli_conn *c, size_t argc, const char *const *argv,
                                 struct cli_reply **out);

#ifdef __cplusplus
}
#endif

#endif
