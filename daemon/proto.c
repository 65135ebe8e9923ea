/* proto.c: the line reader and the tokenizer of the nearestd protocol.
 *
 * The reader turns a byte stream into lines. The workload that shaped it: a
 * server read hands over up to 64 KiB at once, and a pipelining client puts
 * hundreds of 40-byte requests in one read, so taking a line out must not
 * move the rest of the buffer. Lines are cut out in place (the "\n" becomes
 * the NUL), the read position only advances, and the unread bytes are moved
 * to the front lazily, when a feed would not fit behind them.
 *
 * Memory is bounded by checking the partial line as bytes arrive:
 * proto_feed() finds the last "\n" of the new bytes (one memrchr) and copies
 * nothing of the partial line after it once that is over the limit; whole
 * lines are checked as proto_next() takes them out (one memchr each). The
 * buffer so holds at most the unread whole lines (one feed's worth when the
 * caller drains after each feed) plus a partial line of at most
 * max_line_bytes + 1 bytes (the + 1 is a "\r" that may turn out to end the
 * line). A 10 MiB line without a newline costs max_line_bytes, not 10 MiB.
 * Lines before a long one are still handed out; then the reader reports
 * PROTO_ERR_LIMIT until proto_reader_reset(). Measured with 2 million
 * pipelined 41-byte requests in 64 KiB feeds (-O2): about 30 ns a line for
 * feed and next, about 100 ns with proto_split().
 *
 * The tokenizer knows nothing of commands; it only cuts a line into tokens,
 * and reads the numbers in them. Sockets, command names and replies are left
 * to the daemon and clients. Both have a fast path for what clients send
 * nearly always (no quotes; plain decimals), because a NEAREST spent about
 * 1,450 instructions splitting its 40 bytes and 1,700 in strtod() for its
 * two coordinates (callgrind on the daemon under bench_loadgen). A line of
 * up to 64 bytes is split from a bitmap of its blanks, built 16 bytes at a
 * time (185 instructions for a NEAREST, against 479 for the byte loop and a
 * memchr() for quotes that came before); a longer one looks for the end of
 * each token eight bytes at a time, and a quote sends either to the general
 * loop. Tests compare the fast paths with the obvious code (a byte-by-byte
 * tokenizer, strtod()). */
#define _GNU_SOURCE /* memrchr() */
#include "proto.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define PROTO_MIN_CAP_BYTES 256

struct proto_reader {
    char *buf;               /* cap bytes; [start, end) is unread */
    size_t cap;
    size_t start;            /* first unread byte: start of the next line */
    size_t end;              /* one past the last buffered byte */
    size_t tail;             /* start of the partial line: no "\n" in [tail, end) */
    size_t max_line_bytes;   /* longest line accepted, terminator excluded */
    bool overflow;           /* a line over the limit follows the buffered bytes */
    bool in_error;           /* PROTO_ERR_LIMIT has been reported */
};

/* ---- Reader ----------------------------------------------------------------- */

struct proto_reader *proto_reader_new(size_t max_line_bytes) {
    struct proto_reader *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    r->max_line_bytes = max_line_bytes;
    r->cap = PROTO_MIN_CAP_BYTES;
    r->buf = malloc(r->cap);
    if (r->buf == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

void proto_reader_free(struct proto_reader *r) {
    if (r == NULL) {
        return;
    }
    free(r->buf);
    free(r);
}

void proto_reader_reset(struct proto_reader *r) {
    r->start = r->end = r->tail = 0;
    r->overflow = false;
    r->in_error = false;
}

size_t proto_reader_buffered(const struct proto_reader *r) {
    return r->end - r->start;
}

size_t proto_reader_capacity(const struct proto_reader *r) {
    return r->cap;
}

/* Whether a partial line of `raw` bytes whose last byte is `last` is already
 * known to be over the limit: it is, unless the only excess byte is a "\r"
 * that a following "\n" would drop. */
static bool partial_is_over(size_t raw, char last, size_t max) {
    return raw > max + 1 || (raw == max + 1 && last != '\r');
}

/* Makes room for `need` more bytes behind the unread ones: first by moving
 * the unread bytes to the front, then by growing. */
static int reserve(struct proto_reader *r, size_t need) {
    if (r->cap - r->end >= need) {
        return 0;
    }
    if (r->start > 0) {
        size_t unread = r->end - r->start;
        memmove(r->buf, r->buf + r->start, unread);
        r->tail -= r->start;
        r->end = unread;
        r->start = 0;
        if (r->cap - r->end >= need) {
            return 0;
        }
    }
    size_t want = r->end + need;
    size_t cap = r->cap * 2;
    if (cap < want) {
        cap = want;
    }
    char *buf = realloc(r->buf, cap);
    if (buf == NULL) {
        return PROTO_ERR_NOMEM;
    }
    r->buf = buf;
    r->cap = cap;
    return 0;
}

int proto_feed(struct proto_reader *r, const char *buf, size_t len) {
    if (r->in_error || r->overflow) {
        return PROTO_ERR_LIMIT;
    }
    if (r->start == r->end) {
        r->start = r->end = r->tail = 0; /* everything consumed: free compaction */
    }
    if (len == 0) {
        return 0;
    }
    /* Only the partial line after the last "\n" is checked here, so that a
     * feed costs one memrchr and one memcpy; whole lines are checked as
     * proto_next() takes them out. */
    const char *nl = memrchr(buf, '\n', len);
    size_t keep = len;
    if (nl == NULL) {
        if (partial_is_over(r->end - r->tail + len, buf[len - 1], r->max_line_bytes)) {
            r->overflow = true;
            r->end = r->tail; /* drop the long line's start */
            return 0;
        }
    } else {
        size_t whole = (size_t)(nl - buf) + 1;
        if (partial_is_over(len - whole, buf[len - 1], r->max_line_bytes)) {
            r->overflow = true;
            keep = whole;
        }
    }
    int ret = reserve(r, keep);
    if (ret < 0) {
        return ret;
    }
    memcpy(r->buf + r->end, buf, keep);
    if (nl != NULL) {
        r->tail = r->end + (size_t)(nl - buf) + 1;
    }
    r->end += keep;
    return 0;
}

int proto_next(struct proto_reader *r, char **line, size_t *len) {
    if (r->in_error) {
        return PROTO_ERR_LIMIT;
    }
    if (r->start >= r->tail) {
        if (r->overflow) {
            goto over;
        }
        return PROTO_MORE;
    }
    /* A "\n" lies before tail, so memchr finds it within the buffer. */
    char *begin = r->buf + r->start;
    char *nl = memchr(begin, '\n', r->tail - r->start);
    size_t n = (size_t)(nl - begin);
    if (n > 0 && begin[n - 1] == '\r') {
        n--;
    }
    if (n > r->max_line_bytes) {
        goto over;
    }
    r->start = (size_t)(nl - r->buf) + 1;
    begin[n] = '\0';
    *line = begin;
    *len = n;
    return PROTO_LINE;
over:
    r->in_error = true;
    r->start = r->end = r->tail = 0;
    return PROTO_ERR_LIMIT;
}

/* ---- Tokenizer -------------------------------------------------------------- */

static bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

/* A token is a run of non-blank bytes in which double-quoted segments may
 * hold blanks, as in a shell: `name="Licun east"` is the one token
 * `name=Licun east`. Output never runs ahead of input (quotes and escape
 * backslashes are only dropped), so the token is rewritten in place.
 * A NUL byte inside a line is an ordinary token byte; since tokens are C
 * strings, a token holding one reads as ending there. It never ends the line:
 * the line is `len` bytes long whatever it holds. */
/* The general tokenizer, from line[i] on, with argv[0..n) already found: the
 * whole line when i and n are 0, or the rest of a line that split_fast() found
 * to hold a quote (the tokens before the quoted one are cut as this loop
 * would have cut them, since a token without quotes is copied onto itself). */
static int split_quoted(char *line, size_t len, char **argv, size_t max_args, size_t *argc,
                        size_t i, size_t n) {
    for (;;) {
        while (i < len && is_blank(line[i])) {
            i++;
        }
        if (i >= len) {
            break;
        }
        if (n == max_args) {
            return PROTO_ERR_SYNTAX;
        }
        char *out = line + i;
        argv[n++] = out;
        bool quoted = false;
        while (i < len && (quoted || !is_blank(line[i]))) {
            char c = line[i];
            if (c == '"') {
                quoted = !quoted;
                i++;
                continue;
            }
            if (quoted && c == '\\') {
                if (i + 1 >= len || (line[i + 1] != '"' && line[i + 1] != '\\')) {
                    return PROTO_ERR_SYNTAX; /* only \" and \\ are escapes */
                }
                c = line[++i];
            }
            *out++ = c;
            i++;
        }
        if (quoted) {
            return PROTO_ERR_SYNTAX; /* no closing quote */
        }
        if (i < len) {
            i++; /* the blank that ended the token; out is at or before it */
        }
        *out = '\0';
    }
    line[len] = '\0'; /* ends a bare last token; the header asks for len + 1 bytes */
    *argc = n;
    return 0;
}

#define PROTO_ONES 0x0101010101010101ull
#define PROTO_HIGHS 0x8080808080808080ull

/* The high bit of each byte of w equal to c (given as c * PROTO_ONES) is set,
 * and no bit below the lowest such byte: bits above it may be set wrongly
 * (by a borrow), so only the lowest one is to be read. */
static inline uint64_t bytes_equal(uint64_t w, uint64_t c_ones) {
    uint64_t x = w ^ c_ones;
    return (x - PROTO_ONES) & ~x & PROTO_HIGHS;
}

/* Index of the first blank or double quote in line[i..len), or len. Eight
 * bytes at a time where a little-endian word fits before len: a token costs
 * about ten instructions a word instead of six a byte. */
static size_t token_end(const char *line, size_t i, size_t len) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, line + i, 8);
        uint64_t hit = bytes_equal(w, ' ' * PROTO_ONES) | bytes_equal(w, '\t' * PROTO_ONES) |
                       bytes_equal(w, '"' * PROTO_ONES);
        if (hit) {
            return i + (size_t)__builtin_ctzll(hit) / 8;
        }
    }
#endif
    while (i < len && !is_blank(line[i]) && line[i] != '"') {
        i++;
    }
    return i;
}

/* proto_split() as clients send nearly every line: tokens are the runs of
 * non-blank bytes, cut where they stand. At the first token holding a double
 * quote it hands the rest of the line to split_quoted(). (This replaced a
 * memchr() for a quote over the whole line and a byte loop.) */
static int split_fast(char *line, size_t len, char **argv, size_t max_args, size_t *argc) {
    size_t n = 0;
    size_t i = 0;
    for (;;) {
        while (i < len && is_blank(line[i])) {
            i++;
        }
        if (i >= len) {
            break;
        }
        if (n == max_args) {
            return PROTO_ERR_SYNTAX;
        }
        size_t start = i;
        i = token_end(line, i, len);
        if (i < len && line[i] == '"') {
            return split_quoted(line, len, argv, max_args, argc, start, n);
        }
        argv[n++] = line + start;
        if (i < len) {
            line[i++] = '\0'; /* the blank that ended the token */
        }
    }
    line[len] = '\0';
    *argc = n;
    return 0;
}

/* proto_split() of a line of at most 64 bytes (a NEAREST is about 40, a
 * PING 4): one bit per byte says whether it is a blank, computed sixteen
 * bytes at a time with SSE2 (the last sixteen overlapping the ones before
 * them) or, for short lines, byte by byte; the tokens are then the runs of
 * zero bits, found with a count of trailing zeros each. A line holding a
 * quote goes to split_fast(). */
static int split_short(char *line, size_t len, char **argv, size_t max_args, size_t *argc) {
    uint64_t blank = 0, quotes = 0;
#ifdef __SSE2__
    if (len >= 16) {
        const __m128i space = _mm_set1_epi8(' '), tab = _mm_set1_epi8('\t'),
                      quote = _mm_set1_epi8('"');
        for (size_t i = 0; i < len; i += 16) {
            size_t at = i + 16 <= len ? i : len - 16;
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(line + at));
            __m128i b = _mm_or_si128(_mm_cmpeq_epi8(v, space), _mm_cmpeq_epi8(v, tab));
            blank |= (uint64_t)(unsigned)_mm_movemask_epi8(b) << at;
            quotes |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) << at;
        }
    } else
#endif
    {
        for (size_t i = 0; i < len; i++) {
            blank |= (uint64_t)is_blank(line[i]) << i;
            quotes |= (uint64_t)(line[i] == '"') << i;
        }
    }
    if (quotes) {
        return split_fast(line, len, argv, max_args, argc);
    }
    if (len < 64) {
        blank |= ~0ull << len; /* the end of the line ends the last token */
    }
    uint64_t starts = ~blank & ((blank << 1) | 1);
    uint64_t ends = blank & (~blank << 1); /* none above len: those follow blanks */
    size_t n = 0;
    for (; starts; starts &= starts - 1) {
        if (n == max_args) {
            return PROTO_ERR_SYNTAX;
        }
        argv[n++] = line + __builtin_ctzll(starts);
    }
    for (; ends; ends &= ends - 1) {
        line[__builtin_ctzll(ends)] = '\0'; /* the blank after a token, or line[len] */
    }
    line[len] = '\0';
    *argc = n;
    return 0;
}

int proto_split(char *line, size_t len, char **argv, size_t max_args, size_t *argc) {
#ifdef __SSE2__
    if (len <= 64) {
#else
    if (len < 16) {
#endif
        return split_short(line, len, argv, max_args, argc);
    }
    return split_fast(line, len, argv, max_args, argc);
}

/* ---- Numbers ----------------------------------------------------------------- */

/* Appends the run of decimal digits at p to *m (m * 10 + digit each, modulo
 * 2^64); returns the end of the run. */
static inline const char *digits_in(const char *p, uint64_t *m) {
    uint64_t v = *m;
    for (;;) {
        uint64_t digit = (uint64_t)(unsigned char)*p - '0';
        if (digit >= 10) {
            break;
        }
        v = v * 10 + digit;
        p++;
    }
    *m = v;
    return p;
}

/* Reads [+-]digits[.digits] with at most 19 digits, at most 22 of them after
 * the point, and a digit value up to 2^53. Then the value is m / 10^f with m
 * and 10^f exact doubles, and one IEEE division, rounded to nearest, gives the
 * double nearest the decimal, which is what strtod() returns (Clinger's fast
 * path). Returns false for anything else, to be read by strtod(). */
static bool parse_plain_decimal(const char *s, double *out) {
    static const double pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *p = s;
    bool negative = *p == '-';
    p += *p == '-' || *p == '+';
    /* The digits are counted from pointers after each run, not one by one;
     * m may wrap past 20 digits, but such a number is refused below. */
    const char *run = p;
    uint64_t m = 0;
    p = digits_in(p, &m);
    size_t n_digits = (size_t)(p - run), n_frac = 0;
    if (*p == '.') {
        run = ++p;
        p = digits_in(p, &m);
        n_frac = (size_t)(p - run);
        n_digits += n_frac;
    }
    if (*p != '\0' || n_digits == 0 || n_digits > 19 || n_frac > 22 || m > (1ull << 53)) {
        return false;
    }
    double v = (double)m / pow10[n_frac];
    *out = negative ? -v : v;
    return true;
}

/* proto_parse_number() of what parse_plain_decimal() refused. Not inlined,
 * so that the fast path saves no registers for strtod()'s sake (about 25
 * instructions a number). */
static __attribute__((noinline)) bool parse_number_slow(const char *s, double *out) {
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p) && !strchr("+-.eE", *p)) {
            return false;
        }
    }
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(v)) {
        return false;
    }
    *out = v;
    return true;
}

bool proto_parse_number(const char *s, double *out) {
    if (!*s) {
        return false;
    }
    return parse_plain_decimal(s, out) || parse_number_slow(s, out);
}

/* ---- Compact WHERE conditions ----------------------------------------------------- */

static bool where_is_blank(char c) {
    return c == ' ' || c == '\t';
}

static bool where_is_op_byte(char c) {
    return c == '=' || c == '!' || c == '<' || c == '>';
}

static bool where_is_field_byte(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == ':' || c == '-';
}

bool proto_where_split(const char *condition, struct proto_where *out) {
    size_t op_at = 0;
    while (condition[op_at] != '\0' && !where_is_op_byte(condition[op_at])) {
        op_at++;
    }
    const char *op = condition + op_at;
    size_t op_len = ((op[0] == '<' || op[0] == '>' || op[0] == '!') && op[1] == '=') ? 2
                    : (op[0] == '=' || op[0] == '<' || op[0] == '>')               ? 1
                                                                                    : 0;
    if (op_len == 0) {
        return false;
    }
    size_t field_at = 0, field_end = op_at;
    while (field_at < field_end && where_is_blank(condition[field_at])) {
        field_at++;
    }
    while (field_end > field_at && where_is_blank(condition[field_end - 1])) {
        field_end--;
    }
    if (field_end == field_at || field_end - field_at > PROTO_WHERE_MAX_FIELD_BYTES) {
        return false;
    }
    for (size_t i = field_at; i < field_end; i++) {
        if (!where_is_field_byte(condition[i])) {
            return false;
        }
    }
    size_t value_at = op_at + op_len;
    while (where_is_blank(condition[value_at])) {
        value_at++;
    }
    size_t value_len = strlen(condition + value_at);
    while (value_len > 0 && where_is_blank(condition[value_at + value_len - 1])) {
        value_len--;
    }
    if (value_len == 0 || where_is_op_byte(condition[value_at])) {
        return false;
    }
    *out = (struct proto_where){field_at, field_end - field_at, op_at, op_len, value_at,
                                value_len};
    return true;
}
