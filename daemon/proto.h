/* proto.h: the nearestd line protocol, as bytes and lines. No sockets here.
 *
 * Requests are lines ending in "\n" (a "\r" before it is dropped), split into
 * whitespace-separated tokens; double quotes let a token hold spaces
 * ("Licun \"east\" station", or name="Licun east"), with \" and \\ as the
 * only escapes inside them.
 * Replies: a success is "OK <n>\n" followed by exactly n record lines; a
 * failure is one line "ERR <CODE> <message>\n". A text record line holds
 * tab-separated fields: id, category, name, lat, lon, distance_m.
 *
 * The server feeds socket bytes into a proto_reader and takes whole lines out;
 * the client library reuses the same reader for reply lines. Tests and fuzzers
 * call these functions directly. */
#ifndef NEARESTD_PROTO_H
#define NEARESTD_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#define PROTO_DEFAULT_PORT 7878
#define PROTO_MAX_LINE_BYTES 4096   /* default request line limit, "\n" excluded */
#define PROTO_MAX_ARGS 64           /* tokens in one request line */

enum proto_status {
    PROTO_MORE = 0,         /* no whole line yet: feed more bytes */
    PROTO_LINE = 1,         /* *line and *len hold one line */
    PROTO_ERR_LIMIT = -1,   /* a line exceeded the limit: sticky until reset */
    PROTO_ERR_NOMEM = -2,
    PROTO_ERR_SYNTAX = -3,  /* tokenizer: unbalanced quote, bad escape, too many tokens */
};

struct proto_reader;

/* Returns a reader that accepts lines of at most max_line_bytes bytes
 * (terminator excluded), or NULL when out of memory. Free with proto_reader_free(). */
struct proto_reader *proto_reader_new(size_t max_line_bytes);

/* Frees the reader. NULL is a no-op. */
void proto_reader_free(struct proto_reader *r);

/* Appends len bytes from buf (copied). The reader never buffers more than
 * max_line_bytes plus one read's worth: once the current line is over the
 * limit, its bytes are discarded and the reader is in error.
 * Returns 0, PROTO_ERR_LIMIT (already in error) or PROTO_ERR_NOMEM. */
int proto_feed(struct proto_reader *r, const char *buf, size_t len);

/* Takes the next whole line out of the reader. On PROTO_LINE, *line points to
 * its bytes, NUL-terminated, without "\r\n"; it is borrowed and valid until the
 * next call to proto_feed() or proto_next(), and the caller may modify it in
 * place (proto_split() does). Returns PROTO_LINE, PROTO_MORE, or
 * PROTO_ERR_LIMIT once a line has exceeded the limit (and from then on). */
int proto_next(struct proto_reader *r, char **line, size_t *len);

/* Forgets buffered bytes and any error. */
void proto_reader_reset(struct proto_reader *r);

/* Bytes held and not yet taken out as lines (whole lines and a partial one).
 * After every whole line is taken out, this is at most max_line_bytes + 1. */
size_t proto_reader_buffered(const struct proto_reader *r);

/* Bytes allocated for the buffer; bounded by about twice
 * max_line_bytes + 1 plus the largest single feed, when each feed is followed
 * by taking out every whole line. */
size_t proto_reader_capacity(const struct proto_reader *r);

/* Splits line[0..len-1] in place into at most max_args tokens, storing
 * pointers into `line` in argv[] and their count in *argc. Quoted tokens are
 * unquoted in place. Returns 0, or PROTO_ERR_SYNTAX (unbalanced quote, bad
 * escape, more than max_args tokens); on error argv is unspecified.
 * Details: as in a shell, a token is a run of non-blank bytes in which
 * double-quoted segments may hold blanks and may start or end anywhere in it:
 * `name="Licun east"` and `"name=Licun east"` are the same one token; inside
 * quotes \" and \\ are the only escapes; outside quotes a backslash is an
 * ordinary byte; `""` is an empty token. line[len] is written (set to NUL), so `line` must
 * hold len + 1 bytes, as lines from proto_next() do. A NUL byte inside the
 * line is an ordinary token byte, so the C string of a token holding one ends
 * there; it never ends the line or crashes the split. */
int proto_split(char *line, size_t len, char **argv, size_t max_args, size_t *argc);

/* Reads a number argument: an optional sign, then digits with an optional
 * fraction and exponent ("36.1", "-1e3", ".5", "5."), to the double nearest
 * its value, as strtod() does. Hex, "inf", "nan", blanks and trailing bytes,
 * which strtod() alone would accept or skip, are refused, and so is a value
 * too large for a double. Returns true and sets *out when s is such a number;
 * returns false and leaves *out alone otherwise. */
bool proto_parse_number(const char *s, double *out);

#define PROTO_WHERE_MAX_FIELD_BYTES 64

/* Where the parts of a compact condition lie: the CLI's --where 'stars>=4'
 * and HTTP's where=stars>=4 both become the protocol's WHERE field op value. */
struct proto_where {
    size_t field_at, field_len;   /* 1..PROTO_WHERE_MAX_FIELD_BYTES of [A-Za-z0-9_.:-] */
    size_t op_at, op_len;         /* one of = != < <= > >= */
    size_t value_at, value_len;   /* non-empty; may hold blanks and any UTF-8 */
};

/* Splits a condition such as "stars>=4", "stars >= 4" or "name=泰塘 小学" at
 * its operator, the first of = != < <= > >= found (two-byte operators win over
 * their first byte), into offsets into `condition` (nothing is copied).
 * Blanks around the field and the value are left out; blanks inside the value
 * are kept. Returns false when the condition has no operator, an empty or
 * malformed field, an empty value, or a value that starts with an operator
 * byte ("stars=>4", "stars>>4", "a!b"). */
bool proto_where_split(const char *condition, struct proto_where *out);

#endif
