/* cli_reply.h: reading nearestd answers, as bytes in and answers out. No sockets.
 *
 * libnearest, the C client library, is this header, cli_request.h (building
 * request lines) and cli_conn.h (the TCP connection). All of it carries the
 * cli_ prefix and links only nearest_proto from the daemon side.
 *
 * An answer is "OK <n>" followed by n record lines, or one line
 * "ERR <CODE> <message>", or, once the connection has said FORMAT json or
 * geojson, one line holding a JSON object (kept whole, not parsed here).
 * The parser takes reply lines out of a proto_reader, so the framing rules
 * ("\n", optional "\r") are the server's own. It works on any split of the
 * stream and on many pipelined answers. A malformed header ("OK -1", "OK x",
 * "OK" with more than CLI_MAX_REPLY_RECORDS, neither OK nor ERR nor "{") is
 * CLI_ERR_PARSE, which stays until cli_reply_parser_reset(), as in hiredis. */
#ifndef NEARESTD_CLI_REPLY_H
#define NEARESTD_CLI_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define CLI_MAX_REPLY_LINE_BYTES 65536   /* one answer line, terminator excluded */
#define CLI_MAX_REPLY_RECORDS 1000000    /* records in one answer; the server sends <= 1000 */

/* Errors of the client library: 0 is success, these are negative. */
enum cli_err {
    CLI_ERR_PARSE = -1,     /* the server sent something that is not an answer */
    CLI_ERR_NOMEM = -2,
    CLI_ERR_LIMIT = -3,     /* a line over its limit (request or answer) */
    CLI_ERR_ARG = -4,       /* a bad argument from the caller (e.g. a newline in a token) */
    CLI_ERR_CONNECT = -5,   /* could not connect; cli_conn_errstr() says why */
    CLI_ERR_IO = -6,        /* send or receive failed */
    CLI_ERR_TIMEOUT = -7,   /* no progress within timeout_ms */
    CLI_ERR_CLOSED = -8,    /* the server closed the connection mid-answer */
};

/* Returns a short English description of a cli_err code (static string). */
const char *cli_err_str(int err);

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

/* One whole answer. All pointers are owned by the reply: freed with cli_reply_free(). */
struct cli_reply {
    enum cli_reply_kind kind;
    char *header;               /* the first line as received: "OK 3", "ERR ...", "{...}" */
    size_t n_records;           /* CLI_REPLY_OK only */
    struct cli_record *records;
    char *code;                 /* CLI_REPLY_ERR: the code word, e.g. "RANGE" */
    char *message;              /* CLI_REPLY_ERR: the message, possibly "" */
    char *json;                 /* CLI_REPLY_JSON: the object's text */
};

/* A facility record read from a record: the six fields of PROTOCOL.md,
 * plus however many the server added after them. */
struct cli_facility {
    const char *id;             /* borrowed from the record */
    const char *category;
    const char *name;
    double lat_deg;
    double lon_deg;
    bool has_distance;          /* false when the server sent "-" (GET) */
    double distance_m;          /* valid when has_distance */
    size_t n_extra;             /* fields after distance_m */
    char *const *extra;         /* borrowed: the record's fields[6..] */
};

/* Frees the reply and everything it points to. NULL is a no-op. */
void cli_reply_free(struct cli_reply *reply);

/* Reads a record as a facility. The strings are borrowed from `rec` and stay
 * valid until its reply is freed. Returns 0, or CLI_ERR_PARSE if the record
 * has fewer than six fields, or a position or distance that is not a number. */
int cli_record_facility(const struct cli_record *rec, struct cli_facility *out);

struct cli_reply_parser;

/* Returns a parser, or NULL when out of memory. Free with cli_reply_parser_free(). */
struct cli_reply_parser *cli_reply_parser_new(void);

/* Frees the parser and any partial answer. NULL is a no-op. */
void cli_reply_parser_free(struct cli_reply_parser *p);

/* Appends len bytes received from the server (copied). Returns 0,
 * CLI_ERR_NOMEM, or the parser's sticky error if it is in one. */
int cli_reply_parser_feed(struct cli_reply_parser *p, const char *buf, size_t len);

/* Takes the next whole answer out. Returns 1 and sets *out (caller owns it,
 * free with cli_reply_free()) when one is complete; 0 when more bytes are
 * needed; or a negative cli_err (CLI_ERR_PARSE, CLI_ERR_LIMIT, CLI_ERR_NOMEM)
 * which stays until cli_reply_parser_reset(). */
int cli_reply_parser_next(struct cli_reply_parser *p, struct cli_reply **out);

/* Whether bytes of an unfinished answer are held (a header without all its
 * records, or part of a line): a server closing now cut an answer short. */
bool cli_reply_parser_is_partial(const struct cli_reply_parser *p);

/* Forgets buffered bytes, any partial answer and any error. */
void cli_reply_parser_reset(struct cli_reply_parser *p);

#endif
