/* fuzz_proto.c: libFuzzer target for the line protocol reader and tokenizer
 * (daemon/proto.h), the first code every byte from a socket meets.
 *
 * The first input byte picks the reader's line limit (1..200 bytes, or the
 * default 4096 for bytes >= 200, so both short limits and the real one are
 * hit); the rest is the byte stream. It is fed in chunks whose sizes come from
 * the stream itself (1 + byte % 61 at each chunk's start), and after every
 * chunk all whole lines are taken out, as the server's read callback does.
 * A plain model of the stream (split at "\n", drop one "\r") checks:
 *   - every line returned is the model's next line, byte for byte, and no
 *     longer than the limit;
 *   - when no line is over the limit, every line comes out, and the reader
 *     ends with PROTO_MORE; when one is (ignoring the one-byte "\r" boundary
 *     case), PROTO_ERR_LIMIT is reported and then stays: proto_next() and
 *     proto_feed() keep returning it until proto_reader_reset(), after which
 *     the reader works again.
 * Each line then goes to proto_split(), which must return 0 or
 * PROTO_ERR_SYNTAX, give tokens inside the line in order, agree with a plain
 * split at spaces and tabs on lines without quotes or backslashes, respect
 * max_args, and give the same tokens back when they are re-quoted. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "proto.h"

#define FEW_ARGS 3

/* The model: the stream's lines, in order. */
struct model {
    const uint8_t *bytes;
    size_t size;
    size_t pos;           /* start of the next line not yet matched */
};

/* Finds the model's next complete line: its content (without "\r\n") as
 * [*start, *start + *len), and its raw length up to the "\n". False when no
 * "\n" follows. */
static bool model_next(const struct model *m, size_t *start, size_t *len, size_t *raw_len)
{
    const uint8_t *nl = memchr(m->bytes + m->pos, '\n', m->size - m->pos);
    if (nl == NULL) {
        return false;
    }
    *start = m->pos;
    *raw_len = (size_t)(nl - m->bytes) - m->pos;
    *len = *raw_len;
    if (*len > 0 && m->bytes[m->pos + *len - 1] == '\r') {
        (*len)--;
    }
    return true;
}

/* Whether the stream, from the model's position, has a line over the limit
 * (a partial last line counts once it is over). `unsure` is set when the
 * first such line is over only by its "\r", which either reading allows. */
static bool model_overflows(const struct model *m, size_t limit, bool *unsure)
{
    size_t pos = m->pos;
    *unsure = false;
    while (pos < m->size) {
        const uint8_t *nl = memchr(m->bytes + pos, '\n', m->size - pos);
        size_t raw = nl ? (size_t)(nl - m->bytes) - pos : m->size - pos;
        size_t content = raw;
        if (nl && raw > 0 && m->bytes[pos + raw - 1] == '\r') {
            content--;
        }
        if (raw > limit) {
            /* Over only by the "\r" (or, for a partial line, maybe by a "\r"
             * still to come): the reader may go either way. */
            *unsure = content <= limit || (!nl && raw == limit + 1 &&
                                           m->bytes[pos + raw - 1] == '\r');
            return true;
        }
        if (!nl) {
            return false;
        }
        pos += raw + 1;
    }
    return false;
}

static bool is_blank_char(char c)
{
    return c == ' ' || c == '\t';
}

static void check_split(const char *line, size_t len)
{
    char *copy = malloc(len + 1);
    char **argv = malloc(PROTO_MAX_ARGS * sizeof *argv);
    char *quoted = malloc(2 * len + 3 * PROTO_MAX_ARGS + 1);
    char *again = malloc(2 * len + 3 * PROTO_MAX_ARGS + 1);
    char **argv2 = malloc(PROTO_MAX_ARGS * sizeof *argv2);
    if (!copy || !argv || !quoted || !again || !argv2) {
        goto done;
    }
    memcpy(copy, line, len + 1);
    size_t argc = 999;
    int rc = proto_split(copy, len, argv, PROTO_MAX_ARGS, &argc);
    CHECK(rc == 0 || rc == PROTO_ERR_SYNTAX);

    bool plain = memchr(line, '"', len) == NULL && memchr(line, '\\', len) == NULL;
    if (plain) {
        /* The obviously correct split: runs of non-blank bytes. */
        size_t n = 0, i = 0;
        while (i < len) {
            while (i < len && is_blank_char(line[i])) {
                i++;
            }
            size_t start = i;
            while (i < len && !is_blank_char(line[i])) {
                i++;
            }
            if (i > start) {
                if (rc == 0 && n < argc) {
                    CHECK(strlen(argv[n]) == i - start || memchr(line + start, '\0', i - start));
                    CHECK(memcmp(argv[n], line + start, strlen(argv[n])) == 0);
                }
                n++;
            }
        }
        CHECK(rc == (n <= PROTO_MAX_ARGS ? 0 : PROTO_ERR_SYNTAX));
        if (rc == 0) {
            CHECK(argc == n);
        }
    }
    if (rc != 0) {
        goto done;
    }
    CHECK(argc <= PROTO_MAX_ARGS);
    for (size_t i = 0; i < argc; i++) {
        CHECK(argv[i] >= copy && argv[i] <= copy + len);
        CHECK(argv[i] + strlen(argv[i]) <= copy + len);
        if (i > 0) {
            CHECK(argv[i - 1] + strlen(argv[i - 1]) < argv[i]);
        }
    }

    /* Fewer allowed tokens: the same answer, or SYNTAX when there are more. */
    memcpy(copy, line, len + 1);
    size_t few_argc = 999;
    rc = proto_split(copy, len, argv2, FEW_ARGS, &few_argc);
    CHECK(rc == (argc <= FEW_ARGS ? 0 : PROTO_ERR_SYNTAX));
    if (rc == 0) {
        CHECK(few_argc == argc);
    }

    /* Quote every token again: splitting that must give the same tokens. */
    memcpy(copy, line, len + 1);
    CHECK(proto_split(copy, len, argv, PROTO_MAX_ARGS, &argc) == 0);
    size_t q = 0;
    for (size_t i = 0; i < argc; i++) {
        quoted[q++] = '"';
        for (const char *c = argv[i]; *c != '\0'; c++) {
            if (*c == '"' || *c == '\\') {
                quoted[q++] = '\\';
            }
            quoted[q++] = *c;
        }
        quoted[q++] = '"';
        quoted[q++] = i % 2 ? '\t' : ' ';
    }
    quoted[q] = '\0';
    memcpy(again, quoted, q + 1);
    size_t argc2 = 999;
    CHECK(proto_split(again, q, argv2, PROTO_MAX_ARGS, &argc2) == 0);
    CHECK(argc2 == argc);
    for (size_t i = 0; i < argc; i++) {
        CHECK(strcmp(argv[i], argv2[i]) == 0);
    }

done:
    free(argv2);
    free(again);
    free(quoted);
    free(argv);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    size_t limit = data[0] >= 200 ? PROTO_MAX_LINE_BYTES : 1 + (size_t)data[0];
    struct model m = {.bytes = data + 1, .size = size - 1, .pos = 0};
    bool unsure = false;
    bool overflows = model_overflows(&m, limit, &unsure);

    struct proto_reader *r = proto_reader_new(limit);
    if (r == NULL) {
        return 0;
    }
    bool in_error = false;
    size_t fed = 0;
    while (fed < m.size && !in_error) {
        size_t chunk = 1 + m.bytes[fed] % 61;
        if (chunk > m.size - fed) {
            chunk = m.size - fed;
        }
        int rc = proto_feed(r, (const char *)m.bytes + fed, chunk);
        CHECK(rc == 0 || rc == PROTO_ERR_LIMIT);
        fed += chunk;
        for (;;) {
            char *line = NULL;
            size_t len = 0;
            int st = proto_next(r, &line, &len);
            if (st == PROTO_MORE) {
                CHECK(rc == 0);
                break;
            }
            if (st == PROTO_ERR_LIMIT) {
                CHECK(overflows);
                in_error = true;
                break;
            }
            CHECK(st == PROTO_LINE);
            CHECK(len <= limit);
            CHECK(line != NULL && line[len] == '\0');
            size_t start, want_len, raw_len;
            CHECK(model_next(&m, &start, &want_len, &raw_len));
            CHECK(len == want_len && memcmp(line, m.bytes + start, len) == 0);
            m.pos = start + raw_len + 1;
            check_split(line, len);
        }
    }

    if (in_error) {
        /* Sticky until reset. */
        char *line = NULL;
        size_t len = 0;
        CHECK(proto_next(r, &line, &len) == PROTO_ERR_LIMIT);
        CHECK(proto_feed(r, "PING\n", 5) == PROTO_ERR_LIMIT);
        CHECK(proto_next(r, &line, &len) == PROTO_ERR_LIMIT);
    } else {
        CHECK(!overflows || unsure);
        /* Everything whole came out; what remains is a partial line. */
        size_t start, want_len, raw_len;
        CHECK(!model_next(&m, &start, &want_len, &raw_len));
    }
    proto_reader_reset(r);
    char *line = NULL;
    size_t len = 0;
    CHECK(proto_next(r, &line, &len) == PROTO_MORE);
    CHECK(proto_feed(r, "P\n", 2) == 0);
    CHECK(proto_next(r, &line, &len) == PROTO_LINE && len == 1 && line[0] == 'P');
    CHECK(proto_next(r, &line, &len) == PROTO_MORE);
    proto_reader_free(r);
    return 0;
}
