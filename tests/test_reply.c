/* test_reply.c: libnearest without sockets: the answer parser (clients/cli_reply.h)
 * and request building (clients/cli_request.h).
 *
 * Answers are fed whole, split at every byte, pipelined and malformed, as in
 * hiredis's reader tests; a random stream of answers built from a model is
 * fed in random chunks and must come back as the model. Request lines are
 * checked against the server's own tokenizer: splitting a built line must
 * give back the tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli_reply.h"
#include "cli_request.h"
#include "proto.h"

/* ---- Helpers ---------------------------------------------------------------- */

/* A one-line summary of an answer: "OK|f1,f2;f1,f2" or "ERR|CODE|message" or "JSON|text". */
static void summarize(const struct cli_reply *r, char *out, size_t cap) {
    size_t o = 0;
    if (r->kind == CLI_REPLY_ERR) {
        snprintf(out, cap, "ERR|%s|%s", r->code, r->message);
        return;
    }
    if (r->kind == CLI_REPLY_JSON) {
        snprintf(out, cap, "JSON|%s", r->json);
        return;
    }
    o += (size_t)snprintf(out, cap, "OK");
    for (size_t i = 0; i < r->n_records; i++) {
        o += (size_t)snprintf(out + o, cap - o, i ? ";" : "|");
        for (size_t f = 0; f < r->records[i].n_fields; f++) {
            o += (size_t)snprintf(out + o, cap - o, f ? "," : "");
            o += (size_t)snprintf(out + o, cap - o, "%s", r->records[i].fields[f]);
        }
    }
}

/* Takes out every whole answer, appending each summary and a newline. Returns
 * the last status (0 or a negative error). */
static int drain(struct cli_reply_parser *p, char *out, size_t cap) {
    for (;;) {
        struct cli_reply *r = NULL;
        int st = cli_reply_parser_next(p, &r);
        if (st != 1) {
            return st;
        }
        size_t used = strlen(out);
        summarize(r, out + used, cap - used);
        used = strlen(out);
        assert_true(used + 2 < cap);
        out[used] = '\n';
        out[used + 1] = '\0';
        cli_reply_free(r);
    }
}

static int feed_all(const char *in, size_t n, size_t step, char *out, size_t cap) {
    struct cli_reply_parser *p = cli_reply_parser_new();
    out[0] = '\0';
    int st = 0;
    for (size_t i = 0; i < n && st == 0; i += step) {
        size_t chunk = n - i < step ? n - i : step;
        st = cli_reply_parser_feed(p, in + i, chunk);
        if (st == 0) {
            st = drain(p, out, cap);
        }
    }
    cli_reply_parser_free(p);
    return st;
}

/* ---- Whole, split and pipelined answers -------------------------------------- */

static const char stream[] =
    "OK 2\r\n"
    "mp-016\tmeal_point\t虎山路街道新埠社区长者食堂\t36.156464\t120.403264\t722.0\n"
    "mp-013\tmeal_point\t兴溪 食堂\t36.152344\t120.403366\t1038.3\n"
    "OK 0\n"
    "ERR RANGE latitude 120.4 is outside [-90, 90] (latitude comes first)\n"
    "ERR BUSY\n"
    "OK 1\n"
    "\n"
    "{\"ok\":true,\"count\":0,\"records\":[]}\n"
    "OK 1\n"
    "gcj02\n";

static const char stream_summary[] =
    "OK|mp-016,meal_point,虎山路街道新埠社区长者食堂,36.156464,120.403264,722.0;"
    "mp-013,meal_point,兴溪 食堂,36.152344,120.403366,1038.3\n"
    "OK\n"
    "ERR|RANGE|latitude 120.4 is outside [-90, 90] (latitude comes first)\n"
    "ERR|BUSY|\n"
    "OK|\n"
    "JSON|{\"ok\":true,\"count\":0,\"records\":[]}\n"
    "OK|gcj02\n";

static void test_parser_reads_whole_answers_in_order(void **state) {
    (void)state;
    char out[2048];
    assert_int_equal(feed_all(stream, strlen(stream), strlen(stream), out, sizeof out), 0);
    assert_string_equal(out, stream_summary);
}

static void test_parser_gives_same_answers_split_at_every_byte(void **state) {
    (void)state;
    size_t n = strlen(stream);
    for (size_t cut = 0; cut <= n; cut++) {
        struct cli_reply_parser *p = cli_reply_parser_new();
        char out[2048] = "";
        assert_int_equal(cli_reply_parser_feed(p, stream, cut), 0);
        assert_int_equal(drain(p, out, sizeof out), 0);
        assert_int_equal(cli_reply_parser_feed(p, stream + cut, n - cut), 0);
        assert_int_equal(drain(p, out, sizeof out), 0);
        assert_string_equal(out, stream_summary);
        assert_false(cli_reply_parser_is_partial(p));
        cli_reply_parser_free(p);
    }
    for (size_t step = 1; step < 16; step++) {
        char out[2048];
        assert_int_equal(feed_all(stream, n, step, out, sizeof out), 0);
        assert_string_equal(out, stream_summary);
    }
}

static void test_parser_reports_a_partial_answer(void **state) {
    (void)state;
    struct cli_reply_parser *p = cli_reply_parser_new();
    struct cli_reply *r = NULL;
    assert_false(cli_reply_parser_is_partial(p));
    assert_int_equal(cli_reply_parser_feed(p, "OK 2\nrec1\n", 10), 0);
    assert_int_equal(cli_reply_parser_next(p, &r), 0);
    assert_true(cli_reply_parser_is_partial(p));
    assert_int_equal(cli_reply_parser_feed(p, "rec2", 4), 0);
    assert_int_equal(cli_reply_parser_next(p, &r), 0);
    assert_int_equal(cli_reply_parser_feed(p, "\n", 1), 0);
    assert_int_equal(cli_reply_parser_next(p, &r), 1);
    assert_int_equal(r->n_records, 2);
    assert_string_equal(r->records[1].line, "rec2");
    assert_string_equal(r->header, "OK 2");
    assert_false(cli_reply_parser_is_partial(p));
    cli_reply_free(r);
    cli_reply_parser_free(p);
}

static void test_parser_handles_a_thousand_pipelined_answers(void **state) {
    (void)state;
    enum { N = 1000 };
    char *in = malloc(N * 64);
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        n += (size_t)sprintf(in + n, "OK 1\nid-%d\tschool\tn\t1\t2\t%d.5\n", i, i);
    }
    struct cli_reply_parser *p = cli_reply_parser_new();
    assert_int_equal(cli_reply_parser_feed(p, in, n), 0);
    for (int i = 0; i < N; i++) {
        struct cli_reply *r = NULL;
        assert_int_equal(cli_reply_parser_next(p, &r), 1);
        struct cli_facility f;
        assert_int_equal(cli_record_facility(&r->records[0], &f), 0);
        char want[32];
        snprintf(want, sizeof want, "id-%d", i);
        assert_string_equal(f.id, want);
        assert_true(f.has_distance && f.distance_m == i + 0.5);
        cli_reply_free(r);
    }
    struct cli_reply *r = NULL;
    assert_int_equal(cli_reply_parser_next(p, &r), 0);
    cli_reply_parser_free(p);
    free(in);
}

/* ---- Malformed answers ------------------------------------------------------- */

static void test_parser_refuses_malformed_headers_until_reset(void **state) {
    (void)state;
    const char *bad[] = {
        "OK -1\n", "OK x\n", "OK\n", "OK \n", "OK  1\n", "OK 1 \n", "OK +1\n", "OK 1x\n",
        "OK 1000001\n", "OK 99999999999999999999\n", "ok 1\n", "HELLO\n", "\n", "ERR\n",
        "ERR \n", "ERR lower case\n", "ERR CODE\tmessage\n", "OK 1\0\n", "OK 0x1\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = strlen(bad[i]) + (i == 17 ? 2 : 0);
        struct cli_reply_parser *p = cli_reply_parser_new();
        struct cli_reply *r = NULL;
        assert_int_equal(cli_reply_parser_feed(p, "OK 0\n", 5), 0);
        assert_int_equal(cli_reply_parser_feed(p, bad[i], len), 0);
        assert_int_equal(cli_reply_parser_next(p, &r), 1); /* the good one first */
        cli_reply_free(r);
        r = NULL;
        assert_int_equal(cli_reply_parser_next(p, &r), CLI_ERR_PARSE);
        assert_null(r);
        /* Sticky: more good bytes change nothing. */
        assert_int_equal(cli_reply_parser_feed(p, "OK 0\n", 5), CLI_ERR_PARSE);
        assert_int_equal(cli_reply_parser_next(p, &r), CLI_ERR_PARSE);
        cli_reply_parser_reset(p);
        assert_int_equal(cli_reply_parser_feed(p, "OK 0\n", 5), 0);
        assert_int_equal(cli_reply_parser_next(p, &r), 1);
        assert_int_equal(r->kind, CLI_REPLY_OK);
        assert_int_equal(r->n_records, 0);
        cli_reply_free(r);
        cli_reply_parser_free(p);
    }
}

static void test_parser_accepts_the_largest_count_without_allocating_for_it(void **state) {
    (void)state;
    struct cli_reply_parser *p = cli_reply_parser_new();
    struct cli_reply *r = NULL;
    assert_int_equal(cli_reply_parser_feed(p, "OK 1000000\na\n", 13), 0);
    assert_int_equal(cli_reply_parser_next(p, &r), 0);
    assert_true(cli_reply_parser_is_partial(p));
    cli_reply_parser_free(p); /* frees the partial answer */
}

static void test_parser_refuses_an_answer_line_over_the_limit(void **state) {
    (void)state;
    size_t n = CLI_MAX_REPLY_LINE_BYTES + 1;
    char *line = malloc(n);
    memset(line, 'x', n);
    struct cli_reply_parser *p = cli_reply_parser_new();
    struct cli_reply *r = NULL;
    assert_int_equal(cli_reply_parser_feed(p, "OK 1\n", 5), 0);
    assert_int_equal(cli_reply_parser_feed(p, line, n - 1), 0);
    assert_int_equal(cli_reply_parser_feed(p, "\n", 1), 0);
    assert_int_equal(cli_reply_parser_next(p, &r), 1); /* exactly the limit is fine */
    assert_int_equal(strlen(r->records[0].line), n - 1);
    cli_reply_free(r);
    assert_int_equal(cli_reply_parser_feed(p, "OK 1\n", 5), 0);
    assert_int_equal(cli_reply_parser_feed(p, line, n), 0);
    assert_int_equal(cli_reply_parser_next(p, &r), CLI_ERR_LIMIT);
    assert_int_equal(cli_reply_parser_next(p, &r), CLI_ERR_LIMIT);
    cli_reply_parser_free(p);
    free(line);
}

/* ---- Records ----------------------------------------------------------------- */

static int facility_of(const char *line, struct cli_facility *f, struct cli_reply **keep) {
    struct cli_reply_parser *p = cli_reply_parser_new();
    char buf[512];
    int n = snprintf(buf, sizeof buf, "OK 1\n%s\n", line);
    assert_int_equal(cli_reply_parser_feed(p, buf, (size_t)n), 0);
    assert_int_equal(cli_reply_parser_next(p, keep), 1);
    cli_reply_parser_free(p);
    return cli_record_facility(&(*keep)->records[0], f);
}

static void test_record_reads_facility_fields(void **state) {
    (void)state;
    struct cli_facility f;
    struct cli_reply *r = NULL;
    assert_int_equal(facility_of("ec-045\telder_care\t中心\t36.152753\t120.414865\t-", &f, &r),
                     0);
    assert_string_equal(f.id, "ec-045");
    assert_string_equal(f.category, "elder_care");
    assert_string_equal(f.name, "中心");
    assert_true(f.lat_deg == 36.152753 && f.lon_deg == 120.414865);
    assert_false(f.has_distance);
    assert_int_equal(f.n_extra, 0);
    cli_reply_free(r);

    assert_int_equal(facility_of("a\tschool\t\t1.5\t-2\t0.0\tx\t\ty", &f, &r), 0);
    assert_string_equal(f.name, "");
    assert_true(f.has_distance && f.distance_m == 0.0 && f.lon_deg == -2.0);
    assert_int_equal(f.n_extra, 3);
    assert_string_equal(f.extra[0], "x");
    assert_string_equal(f.extra[1], "");
    assert_string_equal(f.extra[2], "y");
    cli_reply_free(r);

    const char *bad[] = {"a\tb\tc\t1\t2",    "a\tb\tc\tx\t2\t3",   "a\tb\tc\t1\t2\t",
                         "a\tb\tc\t1\t2\tnan", "a\tb\tc\t1 \t2\t3", "elder_care\t111"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(facility_of(bad[i], &f, &r), CLI_ERR_PARSE);
        cli_reply_free(r);
    }
}

static void test_facility_attr_finds_values_by_key(void **state) {
    (void)state;
    struct cli_facility f;
    struct cli_reply *r = NULL;
    assert_int_equal(facility_of("pk-1\tparking\tP\t36.1\t120.4\t5.0\tfree=12\tfree_x=3"
                                 "\tshared_hours=Mo-Fr 18:00-08:00\tempty=\tnoequals\tfree=99",
                                 &f, &r),
                     0);
    assert_string_equal(cli_facility_attr(&f, "free"), "12"); /* the first one wins */
    assert_string_equal(cli_facility_attr(&f, "free_x"), "3");
    assert_string_equal(cli_facility_attr(&f, "shared_hours"), "Mo-Fr 18:00-08:00");
    assert_string_equal(cli_facility_attr(&f, "empty"), "");
    assert_null(cli_facility_attr(&f, "fre"));       /* a prefix is not a key */
    assert_null(cli_facility_attr(&f, "noequals"));  /* a field without '=' has no value */
    assert_null(cli_facility_attr(&f, "stars"));
    assert_null(cli_facility_attr(&f, "id"));        /* the six fields are not attributes */
    cli_reply_free(r);
}

static void test_record_reads_area_fields(void **state) {
    (void)state;
    struct cli_reply *r = NULL;
    struct cli_facility unused;
    struct cli_area a;
    /* SERVES: five fields, served_by possibly empty. */
    facility_of("cm-078\tcommunity\t泰塘社区\tst-hushan\tdt-108;dt-109", &unused, &r);
    assert_int_equal(cli_record_area(&r->records[0], &a), 0);
    assert_string_equal(a.id, "cm-078");
    assert_string_equal(a.kind, "community");
    assert_string_equal(a.name, "泰塘社区");
    assert_string_equal(a.parent, "st-hushan");
    assert_string_equal(a.served_by, "dt-108;dt-109");
    cli_reply_free(r);
    facility_of("district\tdistrict\t李沧区\t\t", &unused, &r);
    assert_int_equal(cli_record_area(&r->records[0], &a), 0);
    assert_string_equal(a.parent, "");
    assert_string_equal(a.served_by, "");
    cli_reply_free(r);
    /* AREAS: four fields, nothing said about who serves. */
    facility_of("st-licun\tstreet\t李村街道\tdistrict", &unused, &r);
    assert_int_equal(cli_record_area(&r->records[0], &a), 0);
    assert_null(a.served_by);
    cli_reply_free(r);

    const char *bad[] = {"a\tb\tc", "\tstreet\tx\ty", "a\t\tx\ty", "a",
                         "ec-1\telder_care\tn\t36.1\t120.4\t5.0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        facility_of(bad[i], &unused, &r);
        assert_int_equal(cli_record_area(&r->records[0], &a), CLI_ERR_PARSE);
        cli_reply_free(r);
    }
}

/* ---- A random stream against its model --------------------------------------- */

static void random_token(char *out, size_t max) {
    static const char alphabet[] = "abcXYZ019 .-_泰";
    size_t n = (size_t)(rand() % (int)max);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = alphabet[rand() % (int)(sizeof alphabet - 1)];
        out[o++] = c;
    }
    out[o] = '\0';
}

static void test_parser_agrees_with_a_model_on_random_streams(void **state) {
    (void)state;
    srand(3);
    enum { STREAM = 8192 };
    char *in = malloc(STREAM), *want = malloc(4 * STREAM), *got = malloc(4 * STREAM);
    for (int round = 0; round < 300; round++) {
        size_t n = 0;
        want[0] = '\0';
        size_t w = 0;
        while (n < STREAM - 1024) {
            int kind = rand() % 3;
            char a[16], b[16];
            if (kind == 0) {
                int k = rand() % 5;
                n += (size_t)sprintf(in + n, "OK %d%s\n", k, rand() % 2 ? "\r" : "");
                w += (size_t)sprintf(want + w, "OK");
                for (int i = 0; i < k; i++) {
                    random_token(a, 8);
                    random_token(b, 8);
                    n += (size_t)sprintf(in + n, "%s\t%s\n", a, b);
                    w += (size_t)sprintf(want + w, "%s%s,%s", i ? ";" : "|", a, b);
                }
                w += (size_t)sprintf(want + w, "\n");
            } else if (kind == 1) {
                random_token(a, 12);
                n += (size_t)sprintf(in + n, "ERR ARG %s\n", a);
                w += (size_t)sprintf(want + w, "ERR|ARG|%s\n", a);
            } else {
                random_token(a, 12);
                n += (size_t)sprintf(in + n, "{%s}\n", a);
                w += (size_t)sprintf(want + w, "JSON|{%s}\n", a);
            }
        }
        size_t step = 1 + (size_t)(rand() % 300);
        assert_int_equal(feed_all(in, n, step, got, 4 * STREAM), 0);
        assert_string_equal(got, want);
    }
    free(in);
    free(want);
    free(got);
}

/* ---- Requests ---------------------------------------------------------------- */

static void test_request_quotes_only_what_needs_it(void **state) {
    (void)state;
    const char *argv[] = {"NEAREST", "meal_point", "36.16", "120.41", "K", "3"};
    char *line = NULL;
    size_t len = 0;
    assert_int_equal(cli_request_build(6, argv, &line, &len), 0);
    assert_string_equal(line, "NEAREST meal_point 36.16 120.41 K 3\n");
    assert_int_equal(len, strlen(line));
    free(line);
    const char *put[] = {"PUT", "x", "泰塘 临时 \"服务点\"", "", "a\\b"};
    assert_int_equal(cli_request_build(5, put, &line, &len), 0);
    assert_string_equal(line, "PUT x \"泰塘 临时 \\\"服务点\\\"\" \"\" \"a\\\\b\"\n");
    free(line);
}

static void test_request_refuses_line_breaks_and_oversize(void **state) {
    (void)state;
    char *line = NULL;
    size_t len = 0;
    const char *nl[] = {"GET", "a\nPING"};
    assert_int_equal(cli_request_build(2, nl, &line, &len), CLI_ERR_ARG);
    const char *cr[] = {"GET", "a\r"};
    assert_int_equal(cli_request_build(2, cr, &line, &len), CLI_ERR_ARG);
    assert_int_equal(cli_request_build(0, nl, &line, &len), CLI_ERR_ARG);
    const char *many[PROTO_MAX_ARGS + 1];
    for (size_t i = 0; i <= PROTO_MAX_ARGS; i++) {
        many[i] = "a";
    }
    assert_int_equal(cli_request_build(PROTO_MAX_ARGS, many, &line, &len), 0);
    free(line);
    assert_int_equal(cli_request_build(PROTO_MAX_ARGS + 1, many, &line, &len), CLI_ERR_ARG);
    char *big = malloc(PROTO_MAX_LINE_BYTES + 1);
    memset(big, 'x', PROTO_MAX_LINE_BYTES - 4);
    big[PROTO_MAX_LINE_BYTES - 4] = '\0';
    const char *fits[] = {"GET", big}; /* 4 + 4092 = exactly the limit */
    assert_int_equal(cli_request_build(2, fits, &line, &len), 0);
    assert_int_equal(len, PROTO_MAX_LINE_BYTES + 1);
    free(line);
    strcat(big, "x");
    assert_int_equal(cli_request_build(2, fits, &line, &len), CLI_ERR_LIMIT);
    free(big);
}

static void test_request_survives_the_servers_tokenizer(void **state) {
    (void)state;
    srand(5);
    static const char alphabet[] = "ab \t\"\\泰";
    for (int round = 0; round < 5000; round++) {
        char tokens[6][24];
        const char *argv[6];
        size_t argc = 1 + (size_t)(rand() % 6);
        for (size_t i = 0; i < argc; i++) {
            size_t n = (size_t)(rand() % 20);
            for (size_t k = 0; k < n; k++) {
                tokens[i][k] = alphabet[rand() % (int)(sizeof alphabet - 1)];
            }
            tokens[i][n] = '\0';
            argv[i] = tokens[i];
        }
        char *line = NULL;
        size_t len = 0;
        assert_int_equal(cli_request_build(argc, argv, &line, &len), 0);
        /* What the server does: take the line out of a reader, then split it. */
        struct proto_reader *r = proto_reader_new(PROTO_MAX_LINE_BYTES);
        assert_int_equal(proto_feed(r, line, len), 0);
        char *got = NULL;
        size_t got_len = 0;
        assert_int_equal(proto_next(r, &got, &got_len), PROTO_LINE);
        char *split[PROTO_MAX_ARGS];
        size_t split_argc = 0;
        assert_int_equal(proto_split(got, got_len, split, PROTO_MAX_ARGS, &split_argc), 0);
        assert_int_equal(split_argc, argc);
        for (size_t i = 0; i < argc; i++) {
            assert_string_equal(split[i], argv[i]);
        }
        proto_reader_free(r);
        free(line);
    }
}

static void test_err_str_names_every_code(void **state) {
    (void)state;
    for (int e = CLI_ERR_CLOSED; e <= 0; e++) {
        assert_string_not_equal(cli_err_str(e), "unknown error");
    }
    assert_string_equal(cli_err_str(-100), "unknown error");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_reads_whole_answers_in_order),
        cmocka_unit_test(test_parser_gives_same_answers_split_at_every_byte),
        cmocka_unit_test(test_parser_reports_a_partial_answer),
        cmocka_unit_test(test_parser_handles_a_thousand_pipelined_answers),
        cmocka_unit_test(test_parser_refuses_malformed_headers_until_reset),
        cmocka_unit_test(test_parser_accepts_the_largest_count_without_allocating_for_it),
        cmocka_unit_test(test_parser_refuses_an_answer_line_over_the_limit),
        cmocka_unit_test(test_record_reads_facility_fields),
        cmocka_unit_test(test_facility_attr_finds_values_by_key),
        cmocka_unit_test(test_record_reads_area_fields),
        cmocka_unit_test(test_parser_agrees_with_a_model_on_random_streams),
        cmocka_unit_test(test_request_quotes_only_what_needs_it),
        cmocka_unit_test(test_request_refuses_line_breaks_and_oversize),
        cmocka_unit_test(test_request_survives_the_servers_tokenizer),
        cmocka_unit_test(test_err_str_names_every_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
