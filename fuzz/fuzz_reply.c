/* fuzz_reply.c: libFuzzer target for libnearest's reply parser
 * (clients/nearest.h: cli_reply_parser_*, cli_record_*) and request builder
 * (cli_request_build), the code a client runs on whatever a server, or
 * something posing as one, sends.
 *
 * The input is the byte stream from the server. It goes to two parsers: one
 * gets it whole, the other in chunks whose sizes come from the stream (1 +
 * byte % 37 at each chunk's start), taking answers out after every chunk. The
 * two must produce the same answers (kind, header, records, fields) and end
 * in the same state: answers cannot depend on how TCP cut the bytes. For
 * every answer:
 *   - OK: the header is "OK <n>" with n = n_records; each record's fields,
 *     joined with tabs, give back its line (unless the stream holds a NUL); cli_record_facility() returns 0
 *     or CLI_ERR_PARSE, and on 0 counts the extra fields right;
 *   - ERR: the header starts "ERR " and code and message are set;
 *   - JSON: the header starts "{" and json is set.
 * Every record also goes through cli_record_area(), which accepts exactly the
 * four- and five-field records with an id and a kind, and the attributes of
 * every facility through cli_facility_attr(), checked against a plain scan.
 * Errors are one of the three documented codes and sticky until reset, after
 * which "OK 0\n" parses. The first line of the input, split by proto_split()
 * into tokens, also goes through cli_request_build(), whose line must split
 * back into the same tokens. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "nearest.h"
#include "proto.h"

#define MAX_ANSWERS 4096

/* Whether the stream holds a NUL byte: a record line holding one cannot be
 * rebuilt from C strings, so the field/line check is skipped then. */
static bool stream_has_nul;

/* cli_facility_attr() against a plain scan: for the key of every extra
 * field holding '=', the value is the text after the first field naming
 * that key; a key no field names has none. */
static void check_attrs(const struct cli_facility *f)
{
    for (size_t i = 0; i < f->n_extra; i++) {
        const char *eq = strchr(f->extra[i], '=');
        if (eq == NULL) {
            continue;
        }
        size_t key_len = (size_t)(eq - f->extra[i]);
        char key[64];
        if (key_len >= sizeof key) {
            continue;
        }
        memcpy(key, f->extra[i], key_len);
        key[key_len] = '\0';
        const char *want = NULL;
        for (size_t k = 0; k < f->n_extra && want == NULL; k++) {
            if (strncmp(f->extra[k], key, key_len) == 0 && f->extra[k][key_len] == '=') {
                want = f->extra[k] + key_len + 1;
            }
        }
        CHECK(want != NULL && cli_facility_attr(f, key) == want);
    }
}

static void check_answer(const struct cli_reply *a)
{
    CHECK(a->header != NULL);
    switch (a->kind) {
    case CLI_REPLY_OK: {
        CHECK(strncmp(a->header, "OK ", 3) == 0);
        char *end = NULL;
        unsigned long long n = strtoull(a->header + 3, &end, 10);
        CHECK(n == a->n_records);
        CHECK(a->n_records <= CLI_MAX_REPLY_RECORDS);
        for (size_t i = 0; i < a->n_records; i++) {
            const struct cli_record *rec = &a->records[i];
            CHECK(rec->line != NULL && rec->n_fields >= 1);
            size_t at = 0, line_len = strlen(rec->line);
            for (size_t f = 0; f < rec->n_fields && !stream_has_nul; f++) {
                size_t flen = strlen(rec->fields[f]);
                CHECK(at + flen <= line_len);
                CHECK(memcmp(rec->line + at, rec->fields[f], flen) == 0);
                at += flen;
                if (f + 1 < rec->n_fields) {
                    CHECK(rec->line[at] == '\t');
                    at++;
                }
            }
            CHECK(at == line_len || stream_has_nul);
            struct cli_facility fac;
            int rc = cli_record_facility(rec, &fac);
            CHECK(rc == 0 || rc == CLI_ERR_PARSE);
            if (rc == 0) {
                CHECK(rec->n_fields >= 6 && fac.n_extra == rec->n_fields - 6);
                CHECK(fac.id != NULL && fac.category != NULL && fac.name != NULL);
                check_attrs(&fac);
            } else {
                CHECK(cli_err_str(rc) != NULL);
            }
            struct cli_area area;
            rc = cli_record_area(rec, &area);
            CHECK(rc == 0 || rc == CLI_ERR_PARSE);
            bool area_shaped = (rec->n_fields == 4 || rec->n_fields == 5) &&
                               rec->fields[0][0] != '\0' && rec->fields[1][0] != '\0';
            CHECK((rc == 0) == area_shaped);
            if (rc == 0) {
                CHECK(area.id == rec->fields[0] && area.kind == rec->fields[1]);
                CHECK(area.name == rec->fields[2] && area.parent == rec->fields[3]);
                CHECK((area.served_by != NULL) == (rec->n_fields == 5));
            }
        }
        break;
    }
    case CLI_REPLY_ERR:
        CHECK(strncmp(a->header, "ERR ", 4) == 0);
        CHECK(a->code != NULL && a->message != NULL);
        break;
    case CLI_REPLY_JSON:
        CHECK(a->header[0] == '{' && a->json != NULL);
        break;
    default:
        CHECK(false);
    }
}

static bool same_answer(const struct cli_reply *a, const struct cli_reply *b)
{
    if (a->kind != b->kind || strcmp(a->header, b->header) != 0 ||
        a->n_records != b->n_records) {
        return false;
    }
    for (size_t i = 0; i < a->n_records; i++) {
        if (strcmp(a->records[i].line, b->records[i].line) != 0 ||
            a->records[i].n_fields != b->records[i].n_fields) {
            return false;
        }
    }
    return true;
}

static bool is_parser_err(int rc)
{
    return rc == CLI_ERR_PARSE || rc == CLI_ERR_LIMIT || rc == CLI_ERR_NOMEM;
}

/* Takes every complete answer out of p into out[*n..]; returns the final status. */
static int drain(struct cli_reply_parser *p, struct cli_reply **out, size_t *n)
{
    for (;;) {
        struct cli_reply *a = NULL;
        int rc = cli_reply_parser_next(p, &a);
        if (rc != 1) {
            CHECK(rc == 0 || is_parser_err(rc));
            return rc;
        }
        CHECK(a != NULL);
        check_answer(a);
        if (*n < MAX_ANSWERS) {
            out[(*n)++] = a;
        } else {
            cli_reply_free(a);
        }
    }
}

static void check_request_build(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t len = nl ? (size_t)(nl - data) : size;
    char *line = malloc(len + 1);
    char **argv = malloc(PROTO_MAX_ARGS * sizeof *argv);
    char **argv2 = malloc(PROTO_MAX_ARGS * sizeof *argv2);
    char *built = NULL;
    size_t argc = 0;
    if (!line || !argv || !argv2) {
        goto done;
    }
    memcpy(line, data, len);
    line[len] = '\0';
    if (proto_split(line, len, argv, PROTO_MAX_ARGS, &argc) != 0 || argc == 0) {
        goto done;
    }
    size_t built_len = 0;
    int rc = cli_request_build(argc, (const char *const *)argv, &built, &built_len);
    CHECK(rc == 0 || rc == CLI_ERR_ARG || rc == CLI_ERR_LIMIT || rc == CLI_ERR_NOMEM);
    if (rc != 0) {
        /* Tokens from one line hold no "\n"; a "\r" or the length may refuse. */
        CHECK(rc != CLI_ERR_ARG || memchr(data, '\r', len) != NULL);
        goto done;
    }
    CHECK(built_len >= 1 && built[built_len - 1] == '\n' && strlen(built) == built_len);
    CHECK(built_len - 1 <= PROTO_MAX_LINE_BYTES);
    size_t argc2 = 0;
    CHECK(proto_split(built, built_len - 1, argv2, PROTO_MAX_ARGS, &argc2) == 0);
    CHECK(argc2 == argc);
    for (size_t i = 0; i < argc; i++) {
        CHECK(strcmp(argv[i], argv2[i]) == 0);
    }
done:
    free(built);
    free(argv2);
    free(argv);
    free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cli_reply *whole_out[MAX_ANSWERS], *split_out[MAX_ANSWERS];
    size_t n_whole = 0, n_split = 0;
    stream_has_nul = memchr(data, '\0', size) != NULL;
    struct cli_reply_parser *whole = cli_reply_parser_new();
    struct cli_reply_parser *split = cli_reply_parser_new();
    if (whole == NULL || split == NULL) {
        goto done;
    }

    int rc_whole = cli_reply_parser_feed(whole, (const char *)data, size);
    CHECK(rc_whole == 0 || is_parser_err(rc_whole));
    rc_whole = drain(whole, whole_out, &n_whole);

    int rc_split = 0;
    size_t fed = 0;
    while (fed < size && rc_split == 0) {
        size_t chunk = 1 + data[fed] % 37;
        chunk = chunk < size - fed ? chunk : size - fed;
        rc_split = cli_reply_parser_feed(split, (const char *)data + fed, chunk);
        CHECK(rc_split == 0 || is_parser_err(rc_split));
        fed += chunk;
        if (rc_split == 0) {
            rc_split = drain(split, split_out, &n_split);
        }
    }
    if (rc_split == 0) {
        rc_split = drain(split, split_out, &n_split);
    }

    /* Same answers, same end, however the bytes were cut. */
    CHECK(n_whole == n_split);
    for (size_t i = 0; i < n_whole; i++) {
        CHECK(same_answer(whole_out[i], split_out[i]));
    }
    CHECK(rc_whole == rc_split);
    if (rc_whole == 0) {
        CHECK(cli_reply_parser_is_partial(whole) == cli_reply_parser_is_partial(split));
    } else {
        /* Sticky until reset. */
        struct cli_reply *a = NULL;
        CHECK(cli_reply_parser_next(whole, &a) == rc_whole && a == NULL);
        CHECK(cli_reply_parser_feed(whole, "OK 0\n", 5) == rc_whole);
    }
    cli_reply_parser_reset(whole);
    struct cli_reply *a = NULL;
    CHECK(cli_reply_parser_feed(whole, "OK 0\n", 5) == 0);
    CHECK(cli_reply_parser_next(whole, &a) == 1);
    CHECK(a->kind == CLI_REPLY_OK && a->n_records == 0);
    cli_reply_free(a);

    check_request_build(data, size);

done:
    for (size_t i = 0; i < n_whole; i++) {
        cli_reply_free(whole_out[i]);
    }
    for (size_t i = 0; i < n_split; i++) {
        cli_reply_free(split_out[i]);
    }
    cli_reply_parser_free(split);
    cli_reply_parser_free(whole);
    return 0;
}
