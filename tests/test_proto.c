/* test_proto.c: the protocol reader and tokenizer (daemon/proto.h), without
 * sockets, in the manner of hiredis's reader tests: the same bytes whole,
 * split at every offset, pipelined, and malformed. The reader is checked
 * against a plain model (split at "\n", drop one "\r") on random streams, and
 * the tokenizer against a plain blank split and against re-quoting (which
 * takes the quoted path where the plain line took the unquoted one), and the
 * number reader against strtod() on random decimals. */
#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"
#include "test_rng.h"

/* ---- Helpers ---------------------------------------------------------------- */

/* Takes out every whole line, appending each followed by '|' to out. Returns
 * the last status (PROTO_MORE or PROTO_ERR_LIMIT). */
static int drain(struct proto_reader *r, char *out, size_t cap) {
    for (;;) {
        char *line = NULL;
        size_t len = 0;
        int st = proto_next(r, &line, &len);
        if (st != PROTO_LINE) {
            return st;
        }
        assert_int_equal(line[len], '\0');
        size_t used = strlen(out);
        assert_true(used + len + 2 <= cap);
        memcpy(out + used, line, len);
        out[used + len] = '|';
        out[used + len + 1] = '\0';
    }
}

/* Feeds `in` in pieces of `step` bytes, draining after each. */
static int feed_in_steps(struct proto_reader *r, const char *in, size_t n, size_t step,
                         char *out, size_t cap) {
    int st = PROTO_MORE;
    out[0] = '\0';
    for (size_t i = 0; i < n; i += step) {
        size_t chunk = n - i < step ? n - i : step;
        int rc = proto_feed(r, in + i, chunk);
        if (rc == PROTO_ERR_LIMIT) {
            return rc;
        }
        assert_int_equal(rc, 0);
        st = drain(r, out, cap);
        if (st == PROTO_ERR_LIMIT) {
            return st;
        }
    }
    return st;
}

/* ---- Reader ------------------------------------------------------------------ */

static void test_reader_returns_whole_lines_without_terminators(void **state) {
    (void)state;
    struct proto_reader *r = proto_reader_new(PROTO_MAX_LINE_BYTES);
    char out[256];
    const char *in = "PING\nNEAREST school 36.1 120.4\r\nGET ec-1\n";
    assert_int_equal(feed_in_steps(r, in, strlen(in), strlen(in), out, sizeof out),
                     PROTO_MORE);
    assert_string_equal(out, "PING|NEAREST school 36.1 120.4|GET ec-1|");
    assert_int_equal(proto_reader_buffered(r), 0);
    proto_reader_free(r);
}

static void test_reader_gives_same_lines_split_at_every_byte(void **state) {
    (void)state;
    const char *in = "PING\r\n\nGET \"a b\"\r\n\r\nQUIT\nPART";
    size_t n = strlen(in);
    for (size_t cut = 0; cut <= n; cut++) {
        struct proto_reader *r = proto_reader_new(PROTO_MAX_LINE_BYTES);
        char out[256] = "";
        assert_int_equal(proto_feed(r, in, cut), 0);
        drain(r, out, sizeof out);
        assert_int_equal(proto_feed(r, in + cut, n - cut), 0);
        assert_int_equal(drain(r, out, sizeof out), PROTO_MORE);
        assert_string_equal(out, "PING||GET \"a b\"||QUIT|");
        assert_int_equal(proto_reader_buffered(r), 4); /* "PART" waits for its "\n" */
        proto_reader_free(r);
    }
    for (size_t step = 1; step <= n; step++) {
        struct proto_reader *r = proto_reader_new(PROTO_MAX_LINE_BYTES);
        char out[256];
        assert_int_equal(feed_in_steps(r, in, n, step, out, sizeof out), PROTO_MORE);
        assert_string_equal(out, "PING||GET \"a b\"||QUIT|");
        proto_reader_free(r);
    }
}

static void test_reader_keeps_a_lone_cr_inside_a_line(void **state) {
    (void)state;
    struct proto_reader *r = proto_reader_new(16);
    char out[64];
    const char *in = "a\rb\nc\r\r\n";
    assert_int_equal(feed_in_steps(r, in, strlen(in), 1, out, sizeof out), PROTO_MORE);
    assert_string_equal(out, "a\rb|c\r|");
    proto_reader_free(r);
}

static void test_reader_hands_out_hundreds_of_pipelined_lines_from_one_feed(void **state) {
    (void)state;
    enum { N = 500 };
    char *in = malloc(N * 32);
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        n += (size_t)sprintf(in + n, "NEAREST school 36.%03d 120.4\n", i);
    }
    struct proto_reader *r = proto_reader_new(PROTO_MAX_LINE_BYTES);
    assert_int_equal(proto_feed(r, in, n), 0);
    size_t cap_after_feed = proto_reader_capacity(r);
    for (int i = 0; i < N; i++) {
        char *line = NULL;
        size_t len = 0;
        char want[64];
        snprintf(want, sizeof want, "NEAREST school 36.%03d 120.4", i);
        assert_int_equal(proto_next(r, &line, &len), PROTO_LINE);
        assert_int_equal(len, strlen(want));
        assert_string_equal(line, want);
    }
    char *line = NULL;
    size_t len = 0;
    assert_int_equal(proto_next(r, &line, &len), PROTO_MORE);
    assert_int_equal(proto_reader_capacity(r), cap_after_feed);
    proto_reader_free(r);
    free(in);
}

static void test_reader_accepts_a_line_of_exactly_the_limit(void **state) {
    (void)state;
    enum { MAX = 10 };
    const char *ok[] = {"0123456789\n", "0123456789\r\n", "\n", "\r\n"};
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        for (size_t step = 1; step <= strlen(ok[k]); step++) {
            struct proto_reader *r = proto_reader_new(MAX);
            char out[64];
            assert_int_equal(feed_in_steps(r, ok[k], strlen(ok[k]), step, out, sizeof out),
                             PROTO_MORE);
            assert_int_equal(strlen(out), strcspn(ok[k], "\r\n") + 1);
            proto_reader_free(r);
        }
    }
}

static void test_reader_refuses_a_line_one_over_the_limit(void **state) {
    (void)state;
    enum { MAX = 10 };
    const char *bad[] = {"01234567890\n", "01234567890\r\n", "0123456789\r\r\n",
                         "0123456789\rX\n", "01234567890"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        for (size_t step = 1; step <= strlen(bad[k]); step++) {
            struct proto_reader *r = proto_reader_new(MAX);
            char out[64];
            char pipeline[64];
            snprintf(pipeline, sizeof pipeline, "OK\n%s\nAFTER\n", bad[k]);
            int st = feed_in_steps(r, pipeline, strlen(pipeline), step, out, sizeof out);
            assert_int_equal(st, PROTO_ERR_LIMIT);
            assert_string_equal(out, "OK|"); /* lines before the long one still come out */
            proto_reader_free(r);
        }
    }
}

static void test_reader_error_sticks_until_reset(void **state) {
    (void)state;
    struct proto_reader *r = proto_reader_new(4);
    char *line = NULL;
    size_t len = 0;
    assert_int_equal(proto_feed(r, "TOOLONG\nPING\n", 13), 0);
    assert_int_equal(proto_next(r, &line, &len), PROTO_ERR_LIMIT);
    assert_int_equal(proto_next(r, &line, &len), PROTO_ERR_LIMIT);
    assert_int_equal(proto_feed(r, "PING\n", 5), PROTO_ERR_LIMIT);
    assert_int_equal(proto_next(r, &line, &len), PROTO_ERR_LIMIT);
    proto_reader_reset(r);
    assert_int_equal(proto_next(r, &line, &len), PROTO_MORE);
    assert_int_equal(proto_feed(r, "PING\n", 5), 0);
    assert_int_equal(proto_next(r, &line, &len), PROTO_LINE);
    assert_string_equal(line, "PING");
    assert_int_equal(proto_next(r, &line, &len), PROTO_MORE);
    proto_reader_free(r);
}

static void test_reader_memory_stays_bounded_for_a_huge_line(void **state) {
    (void)state;
    enum { CHUNK = 65536, TOTAL = 10 << 20 };
    char *chunk = malloc(CHUNK);
    memset(chunk, 'x', CHUNK);
    struct proto_reader *r = proto_reader_new(PROTO_MAX_LINE_BYTES);
    int st = 0;
    size_t fed = 0;
    for (; fed < TOTAL && st == 0; fed += CHUNK) {
        st = proto_feed(r, chunk, CHUNK);
        assert_true(proto_reader_buffered(r) <= PROTO_MAX_LINE_BYTES + 1);
        assert_true(proto_reader_capacity(r) <= 2 * (PROTO_MAX_LINE_BYTES + 1 + CHUNK));
        char *line = NULL;
        size_t len = 0;
        if (proto_next(r, &line, &len) == PROTO_ERR_LIMIT) {
            break;
        }
    }
    assert_true(fed < TOTAL); /* the error came long before the end */
    assert_int_equal(proto_feed(r, chunk, CHUNK), PROTO_ERR_LIMIT);
    assert_int_equal(proto_reader_buffered(r), 0);
    proto_reader_free(r);

    /* Byte by byte, never taking lines out: the partial line still stops at the limit. */
    r = proto_reader_new(100);
    for (int i = 0; i < 1000; i++) {
        if (proto_feed(r, "y", 1) != 0) {
            break;
        }
        assert_true(proto_reader_buffered(r) <= 101);
    }
    char *line = NULL;
    size_t len = 0;
    assert_int_equal(proto_next(r, &line, &len), PROTO_ERR_LIMIT);
    proto_reader_free(r);
    free(chunk);
}

static void test_reader_passes_nul_bytes_through(void **state) {
    (void)state;
    struct proto_reader *r = proto_reader_new(16);
    char *line = NULL;
    size_t len = 0;
    assert_int_equal(proto_feed(r, "a\0b\n", 4), 0);
    assert_int_equal(proto_next(r, &line, &len), PROTO_LINE);
    assert_int_equal(len, 3);
    assert_memory_equal(line, "a\0b", 4);
    proto_reader_free(r);
}

/* The model: the stream's whole lines, each ended by '|', if none is over max. */
static int model_lines(const char *in, size_t n, size_t max, char *out) {
    size_t o = 0, start = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] != '\n') {
            continue;
        }
        size_t len = i - start;
        if (len > 0 && in[i - 1] == '\r') {
            len--;
        }
        if (len > max) {
            out[o] = '\0';
            return PROTO_ERR_LIMIT;
        }
        memcpy(out + o, in + start, len);
        o += len;
        out[o++] = '|';
        start = i + 1;
    }
    out[o] = '\0';
    size_t raw = n - start;
    bool over = raw > max + 1 || (raw == max + 1 && in[n - 1] != '\r');
    return over ? PROTO_ERR_LIMIT : PROTO_MORE;
}

static void test_reader_agrees_with_a_plain_model_on_random_streams(void **state) {
    (void)state;
    srand(7);
    static const char alphabet[] = "ab \r\n\n";
    for (int round = 0; round < 3000; round++) {
        char in[200], want[600], got[600];
        size_t n = (size_t)(rand() % 200);
        for (size_t i = 0; i < n; i++) {
            in[i] = alphabet[rand() % 6];
        }
        size_t max = 1 + (size_t)(rand() % 20);
        int want_st = model_lines(in, n, max, want);
        struct proto_reader *r = proto_reader_new(max);
        size_t step = 1 + (size_t)(rand() % 40);
        int st = feed_in_steps(r, in, n, step, got, sizeof got);
        assert_int_equal(st, want_st);
        assert_string_equal(got, want);
        proto_reader_free(r);
    }
}

/* ---- Tokenizer --------------------------------------------------------------- */

/* Splits a copy of s; returns the status and joins tokens with '|' into out. */
static int split_joined(const char *s, size_t len, size_t max_args, char *out) {
    char copy[512];
    char *argv[PROTO_MAX_ARGS + 1];
    size_t argc = 0;
    memcpy(copy, s, len);
    copy[len] = '\0';
    int rc = proto_split(copy, len, argv, max_args, &argc);
    out[0] = '\0';
    if (rc == 0) {
        for (size_t i = 0; i < argc; i++) {
            strcat(out, argv[i]);
            strcat(out, "|");
        }
    }
    return rc;
}

static void test_split_cuts_at_spaces_and_tabs(void **state) {
    (void)state;
    char out[512];
    assert_int_equal(split_joined("  NEAREST\tschool  36.1 \t120.4  ", 31, 64, out), 0);
    assert_string_equal(out, "NEAREST|school|36.1|120.4|");
    assert_int_equal(split_joined("", 0, 64, out), 0);
    assert_string_equal(out, "");
    assert_int_equal(split_joined(" \t ", 3, 64, out), 0);
    assert_string_equal(out, "");
}

static void test_split_unquotes_quoted_tokens_with_escapes(void **state) {
    (void)state;
    char out[512];
    const char *in = "PUT \"Licun \\\"east\\\" station\" \"a\\\\b\" \"\" x";
    assert_int_equal(split_joined(in, strlen(in), 64, out), 0);
    assert_string_equal(out, "PUT|Licun \"east\" station|a\\b||x|");
    in = "\"泰塘 临时\"\t\"服务点\"";
    assert_int_equal(split_joined(in, strlen(in), 64, out), 0);
    assert_string_equal(out, "泰塘 临时|服务点|");
    /* Quoted segments may start and end inside a token, as in a shell. */
    in = "PUT x name=\"泰塘 临时 食堂\" \"a\"b\" c\"d x\"\\\"\"y";
    assert_int_equal(split_joined(in, strlen(in), 64, out), 0);
    assert_string_equal(out, "PUT|x|name=泰塘 临时 食堂|ab cd|x\"y|");
    in = "a\\b"; /* a backslash in a bare token is an ordinary byte */
    assert_int_equal(split_joined(in, strlen(in), 64, out), 0);
    assert_string_equal(out, "a\\b|");
}

static void test_split_refuses_malformed_quoting(void **state) {
    (void)state;
    char out[512];
    const char *bad[] = {"\"open", "a \"open", "\"bad \\n escape\"", "\"ends in \\",
                         "x\"", "a\"b", "name=\"open end", "\"\\\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(split_joined(bad[i], strlen(bad[i]), 64, out), PROTO_ERR_SYNTAX);
    }
}

static void test_split_enforces_max_args(void **state) {
    (void)state;
    char line[512] = "";
    char out[512];
    for (int i = 0; i < PROTO_MAX_ARGS; i++) {
        strcat(line, "a ");
    }
    assert_int_equal(split_joined(line, strlen(line), PROTO_MAX_ARGS, out), 0);
    strcat(line, "b");
    assert_int_equal(split_joined(line, strlen(line), PROTO_MAX_ARGS, out), PROTO_ERR_SYNTAX);
    assert_int_equal(split_joined("a b c", 5, 3, out), 0);
    assert_int_equal(split_joined("a b c d", 7, 3, out), PROTO_ERR_SYNTAX);
    assert_int_equal(split_joined("\"a\" \"b\" \"c\" \"d\"", 15, 3, out), PROTO_ERR_SYNTAX);
}

static void test_split_survives_nul_bytes(void **state) {
    (void)state;
    char out[512];
    assert_int_equal(split_joined("GET a\0b c", 9, 64, out), 0);
    assert_string_equal(out, "GET|a|c|"); /* the token "a\0b" reads as "a" */
    assert_int_equal(split_joined("\"a\0b\" c", 7, 64, out), 0);
    assert_string_equal(out, "a|c|");
    assert_int_equal(split_joined("\"\\\0\"", 4, 64, out), PROTO_ERR_SYNTAX);
}

static bool is_blank_byte(char c) {
    return c == ' ' || c == '\t';
}

static void test_split_agrees_with_plain_split_and_requoting(void **state) {
    (void)state;
    srand(11);
    static const char alphabet[] = "ab \t\"\\";
    for (int round = 0; round < 20000; round++) {
        char line[64], copy[65], quoted[512];
        char *argv[8], *argv2[8];
        size_t n = (size_t)(rand() % 40), argc = 0, argc2 = 0;
        bool plain = rand() % 2;
        for (size_t i = 0; i < n; i++) {
            line[i] = alphabet[rand() % (plain ? 4 : 6)];
        }
        memcpy(copy, line, n);
        copy[n] = '\0';
        int rc = proto_split(copy, n, argv, 8, &argc);
        assert_true(rc == 0 || rc == PROTO_ERR_SYNTAX);
        if (plain) {
            size_t want = 0;
            for (size_t i = 0; i < n; i++) {
                if (!is_blank_byte(line[i]) && (i == 0 || is_blank_byte(line[i - 1]))) {
                    want++;
                }
            }
            assert_int_equal(rc, want <= 8 ? 0 : PROTO_ERR_SYNTAX);
            if (rc == 0) {
                assert_int_equal(argc, want);
            }
        }
        if (rc != 0) {
            continue;
        }
        size_t q = 0;
        for (size_t i = 0; i < argc; i++) {
            quoted[q++] = '"';
            for (const char *c = argv[i]; *c; c++) {
                if (*c == '"' || *c == '\\') {
                    quoted[q++] = '\\';
                }
                quoted[q++] = *c;
            }
            quoted[q++] = '"';
            quoted[q++] = ' ';
        }
        quoted[q] = '\0';
        assert_int_equal(proto_split(quoted, q, argv2, 8, &argc2), 0);
        assert_int_equal(argc2, argc);
        for (size_t i = 0; i < argc; i++) {
            assert_string_equal(argv[i], argv2[i]);
        }
    }
}

/* The obviously correct tokenizer: one byte at a time, quotes anywhere, as
 * proto_split() was before its word-at-a-time fast path. */
static int model_split(char *line, size_t len, char **argv, size_t max_args, size_t *argc) {
    size_t n = 0, i = 0;
    for (;;) {
        while (i < len && is_blank_byte(line[i])) {
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
        while (i < len && (quoted || !is_blank_byte(line[i]))) {
            char c = line[i];
            if (c == '"') {
                quoted = !quoted;
                i++;
                continue;
            }
            if (quoted && c == '\\') {
                if (i + 1 >= len || (line[i + 1] != '"' && line[i + 1] != '\\')) {
                    return PROTO_ERR_SYNTAX;
                }
                c = line[++i];
            }
            *out++ = c;
            i++;
        }
        if (quoted) {
            return PROTO_ERR_SYNTAX;
        }
        if (i < len) {
            i++;
        }
        *out = '\0';
    }
    line[len] = '\0';
    *argc = n;
    return 0;
}

static void test_split_agrees_with_a_byte_by_byte_model(void **state) {
    (void)state;
    srand(12);
    /* Long tokens and short ones, so that tokens end inside a word, on a word
     * boundary and in the bytes after the last whole word; quotes (which
     * send the rest of the line to the general path) in any token. */
    static const char *const pieces[] = {"a", "NEAREST", "36.183414", "120.434430",
                                         "abcdefghijklmnopq", " ", "\t", "  ", "\"",
                                         "\\", "\"x y\"", "\xe6\xb3\xb0", "\0"};
    const size_t n_pieces = sizeof pieces / sizeof pieces[0];
    for (int round = 0; round < 200000; round++) {
        char line[256];
        size_t len = 0, n = (size_t)(rand() % 16);
        bool quotes = rand() % 4 == 0;
        for (size_t k = 0; k < n; k++) {
            size_t pick = (size_t)rand() % n_pieces;
            if (!quotes && (pick == 8 || pick == 10)) {
                pick = 0;
            }
            /* "\0" is one NUL byte: strlen() of it is 0. */
            size_t plen = pick == n_pieces - 1 ? 1 : strlen(pieces[pick]);
            memcpy(line + len, pieces[pick], plen);
            len += plen;
        }
        /* Exactly the len + 1 bytes the header asks for, on the heap, so that
         * ASan sees any load past them; the byte at line[len] is sometimes a
         * blank, which a load that reaches it must not take for the line's. */
        char *a = malloc(len + 1), *b = malloc(len + 1);
        assert_non_null(a);
        assert_non_null(b);
        memcpy(a, line, len);
        memcpy(b, line, len);
        a[len] = b[len] = rand() % 2 ? 'Z' : ' ';
        char *argv_a[PROTO_MAX_ARGS], *argv_b[PROTO_MAX_ARGS];
        size_t argc_a = 99, argc_b = 99;
        size_t max_args = 1 + (size_t)rand() % 12;
        int rc_a = proto_split(a, len, argv_a, max_args, &argc_a);
        int rc_b = model_split(b, len, argv_b, max_args, &argc_b);
        assert_int_equal(rc_a, rc_b);
        if (rc_a == 0) {
            assert_int_equal(argc_a, argc_b);
            assert_memory_equal(a, b, len + 1);
            for (size_t i = 0; i < argc_a; i++) {
                assert_int_equal(argv_a[i] - a, argv_b[i] - b);
            }
        }
        free(a);
        free(b);
    }
}

/* ---- Numbers ----------------------------------------------------------------- */

/* The obviously correct reader: the allowed characters, then strtod(). */
static bool model_number(const char *s, double *out) {
    if (!*s) {
        return false;
    }
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

static uint64_t num_rng = 0x9e3779b97f4a7c15ull;

static uint64_t num_next(void) {
    return test_rng_xorshift64(&num_rng);
}

/* A random decimal of a random shape: coordinates as clients send them,
 * long digit strings either side of the fast path's limits (19 digits,
 * 22 after the point, 2^53), exponents, and junk. */
static void random_number_text(char *out, size_t cap) {
    static const char junk[] = "0123456789+-.eExX \tinfa";
    size_t n = 0;
    switch (num_next() % 6) {
    case 0: /* a coordinate with 6 decimals */
        snprintf(out, cap, "%s%u.%06u", num_next() % 2 ? "-" : "",
                 (unsigned)(num_next() % 181), (unsigned)(num_next() % 1000000));
        return;
    case 1: /* around 2^53 */
        snprintf(out, cap, "%llu.%u", (unsigned long long)((1ull << 53) - 2 + num_next() % 5),
                 (unsigned)(num_next() % 3));
        if (num_next() % 2) {
            out[strlen(out) - 2] = '\0'; /* no fraction */
        }
        return;
    default:
        break;
    }
    if (num_next() % 3 == 0) {
        out[n++] = "+-"[num_next() % 2];
    }
    size_t int_digits = (size_t)(num_next() % 22);
    for (size_t i = 0; i < int_digits; i++) {
        out[n++] = (char)('0' + num_next() % 10);
    }
    if (num_next() % 4 != 0) {
        out[n++] = '.';
        size_t frac_digits = (size_t)(num_next() % 26);
        for (size_t i = 0; i < frac_digits; i++) {
            out[n++] = (char)('0' + num_next() % 10);
        }
    }
    if (num_next() % 5 == 0) {
        n += (size_t)snprintf(out + n, cap - n, "e%d", (int)(num_next() % 700) - 350);
    }
    if (num_next() % 10 == 0) {
        size_t at = (size_t)(num_next() % (n + 1)); /* n: appended */
        out[at] = junk[num_next() % (sizeof junk - 1)];
        n += at == n;
    }
    out[n] = '\0';
}

static void test_numbers_read_as_strtod_reads_them(void **state) {
    (void)state;
    static const char *const edges[] = {
        "", "+", "-", ".", "-.", "0", "-0", "-0.0", "+.5", "5.", "1e5", "1e", "0x10", "inf",
        "nan", " 1", "1 ", "1-2", "9007199254740992", "9007199254740993", "9007199254740993.0",
        "1234567890123456789", "12345678901234567890", "0.1234567890123456789012",
        "0.12345678901234567890123", "1e309", "-1e309", "1e-400", "36.183414", "120.434430",
    };
    char text[96];
    for (size_t i = 0; i < 600000; i++) {
        const char *s = text;
        if (i < sizeof edges / sizeof edges[0]) {
            s = edges[i];
        } else {
            random_number_text(text, sizeof text);
        }
        double got = 12345.0, want = 12345.0;
        bool ok = proto_parse_number(s, &got);
        bool want_ok = model_number(s, &want);
        if (ok != want_ok || memcmp(&got, &want, sizeof got) != 0) {
            fail_msg("'%s': read %d %.17g, strtod says %d %.17g", s, ok, got, want_ok, want);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_returns_whole_lines_without_terminators),
        cmocka_unit_test(test_reader_gives_same_lines_split_at_every_byte),
        cmocka_unit_test(test_reader_keeps_a_lone_cr_inside_a_line),
        cmocka_unit_test(test_reader_hands_out_hundreds_of_pipelined_lines_from_one_feed),
        cmocka_unit_test(test_reader_accepts_a_line_of_exactly_the_limit),
        cmocka_unit_test(test_reader_refuses_a_line_one_over_the_limit),
        cmocka_unit_test(test_reader_error_sticks_until_reset),
        cmocka_unit_test(test_reader_memory_stays_bounded_for_a_huge_line),
        cmocka_unit_test(test_reader_passes_nul_bytes_through),
        cmocka_unit_test(test_reader_agrees_with_a_plain_model_on_random_streams),
        cmocka_unit_test(test_split_cuts_at_spaces_and_tabs),
        cmocka_unit_test(test_split_unquotes_quoted_tokens_with_escapes),
        cmocka_unit_test(test_split_refuses_malformed_quoting),
        cmocka_unit_test(test_split_enforces_max_args),
        cmocka_unit_test(test_split_survives_nul_bytes),
        cmocka_unit_test(test_split_agrees_with_plain_split_and_requoting),
        cmocka_unit_test(test_split_agrees_with_a_byte_by_byte_model),
        cmocka_unit_test(test_numbers_read_as_strtod_reads_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
