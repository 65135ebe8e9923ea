/* proto.c: the line reader and the tokenizer of the nearestd protocol.
 *
 * The reader turns a byte stream into lines. The workload that shaped it: a
 * server read hands over up to 64 KiB at once, and a pipelining client puts
 * hundreds of 40-byte requests in one read, so taking a line out must not
 * move the rest of the buffer. Lines are cut out in place (the "\n" becomes
 * the NUL), the read position only advances, and the unread bytes are moved
 * to the front lazily, when a feed would not fit behind them.
 *
 * Memory is bounded by validating lengths as bytes arrive: proto_feed() looks
 * at every line end in the new bytes and copies nothing past the start of a
 * line that is over the limit. The buffer so holds at most the unread whole
 * lines, plus a partial line of at most max_line_bytes + 1 bytes (the + 1 is a
 * "\r" that may turn out to end the line). A 10 MiB line without a newline
 * costs max_line_bytes, not 10 MiB. Lines before the long one are still handed
 * out; then the reader reports PROTO_ERR_LIMIT until proto_reader_reset().
 *
 * The tokenizer knows nothing of commands; it only cuts a line into tokens.
 * Sockets, command names and replies are left to the daemon and clients. */
#include "proto.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

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

/* Whether a whole line of `raw` bytes before its "\n", ending in `last`, is
 * over the limit once a trailing "\r" is dropped. */
static bool whole_is_over(size_t raw, char last, size_t max) {
    size_t content = raw > 0 && last == '\r' ? raw - 1 : raw;
    return content > max;
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
    /* Walk the new bytes line by line, keeping the length of the partial line
     * they continue, and stop at the first line over the limit. */
    size_t partial = r->end - r->tail;
    size_t keep = 0;           /* bytes of buf to copy */
    size_t tail_in_buf = 0;    /* offset in buf where the last partial line starts */
    bool tail_moved = false;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (nl == NULL) {
            size_t raw = partial + (len - pos);
            if (partial_is_over(raw, buf[len - 1], r->max_line_bytes)) {
                r->overflow = true;
            } else {
                keep = len;
            }
            break;
        }
        size_t nl_at = (size_t)(nl - buf);
        size_t raw = partial + (nl_at - pos);
        char last = nl_at > pos ? buf[nl_at - 1] : (partial > 0 ? r->buf[r->end - 1] : '\0');
        if (whole_is_over(raw, last, r->max_line_bytes)) {
            r->overflow = true;
            break;
        }
        pos = nl_at + 1;
        keep = pos;
        tail_in_buf = pos;
        tail_moved = true;
        partial = 0;
    }
    if (r->overflow) {
        /* Drop the partial start of the long line already buffered. */
        if (!tail_moved) {
            r->end = r->tail;
        }
        keep = tail_moved ? tail_in_buf : 0;
    }
    if (keep == 0) {
        return 0;
    }
    int ret = reserve(r, keep);
    if (ret < 0) {
        return ret;
    }
    memcpy(r->buf + r->end, buf, keep);
    if (tail_moved) {
        r->tail = r->end + tail_in_buf;
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
            r->in_error = true;
            r->start = r->end = r->tail = 0;
            return PROTO_ERR_LIMIT;
        }
        return PROTO_MORE;
    }
    /* A "\n" lies before tail, so memchr finds it within the buffer. */
    char *begin = r->buf + r->start;
    char *nl = memchr(begin, '\n', r->tail - r->start);
    size_t n = (size_t)(nl - begin);
    r->start += n + 1;
    if (n > 0 && begin[n - 1] == '\r') {
        n--;
    }
    begin[n] = '\0';
    *line = begin;
    *len = n;
    return PROTO_LINE;
}

/* ---- Tokenizer -------------------------------------------------------------- */

static bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

/* A NUL byte inside a line is an ordinary token byte; since tokens are C
 * strings, a token holding one reads as ending there. It never ends the line:
 * the line is `len` bytes long whatever it holds. */
int proto_split(char *line, size_t len, char **argv, size_t max_args, size_t *argc) {
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
        if (line[i] == '"') {
            /* Quoted: unescape in place, writing from the opening quote on. */
            char *out = line + i;
            argv[n++] = out;
            i++;
            for (;;) {
                if (i >= len) {
                    return PROTO_ERR_SYNTAX; /* no closing quote */
                }
                char c = line[i];
                if (c == '"') {
                    break;
                }
                if (c == '\\') {
                    if (i + 1 >= len || (line[i + 1] != '"' && line[i + 1] != '\\')) {
                        return PROTO_ERR_SYNTAX;
                    }
                    c = line[++i];
                }
                *out++ = c;
                i++;
            }
            /* The closing quote must end the token. */
            if (i + 1 < len && !is_blank(line[i + 1])) {
                return PROTO_ERR_SYNTAX;
            }
            *out = '\0';
            i++;
        } else {
            argv[n++] = line + i;
            while (i < len && !is_blank(line[i])) {
                if (line[i] == '"') {
                    return PROTO_ERR_SYNTAX; /* a quote inside a bare token */
                }
                i++;
            }
            if (i < len) {
                line[i++] = '\0';
            }
        }
    }
    line[len] = '\0'; /* ends a bare last token; the header asks for len + 1 bytes */
    *argc = n;
    return 0;
}
