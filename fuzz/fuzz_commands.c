/* fuzz_commands.c: libFuzzer target for the daemon's request path below the
 * socket: proto_ reader -> cmd_execute() -> handlers -> reply builder
 * (daemon/cmd.h), against the real Licang catalogue.
 *
 * Once per process the bundled dataset (NEARESTD_DATASET_DIR, about 700
 * facilities) is loaded into a SpatiaLite file by store_create(), in a
 * temporary directory on /dev/shm when there is one, and from there into the
 * catalogue, as nearestd does at start. Each input is one connection: a fresh
 * session, the bytes fed to a proto_reader as one read, every whole line
 * executed in turn until QUIT or a line over the limit. Writes (PUT, SET, DEL) are
 * validated and queued by their handlers; this target checks the queued
 * record and frees it without committing, so the catalogue is the same for
 * every input and a crash reproduces from its one file.
 *
 * Checked for every request line, besides "no crash, no leak, no UB":
 *   - cmd_execute() returns 0, 1 (blank, and then nothing is written),
 *     CMD_QUEUED (a write is pending and nothing is written yet) or a cmd_err;
 *   - text format: the answer is exactly "OK <n>" and n record lines, or one
 *     "ERR <WORD> ..." line of at most REPLY_MAX_ERR_BYTES whose word is the
 *     returned code's; NEAREST, RADIUS and GET records have six fields and
 *     then only key=value attribute fields;
 *   - JSON formats: exactly one line, a JSON object whose "ok" matches;
 *   - no NUL byte anywhere in an answer; the error counter moves with ERRs;
 *   - a queued PUT carries a record that store_facility_check() accepts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "fuzz_check.h"
#include "catalog.h"
#include "catalog_fixture.h"
#include "cmd.h"
#include "proto.h"
#include "reply.h"
#include "store.h"

#ifndef NEARESTD_DATASET_DIR
#error "NEARESTD_DATASET_DIR must name the bundled dataset directory"
#endif

static char dir_path[64];
static struct store *store;
static struct catalog *catalog;
static struct cmd_stats stats;

static void remove_dir(void)
{
    catalog_free(catalog);
    store_close(store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir_path);
    if (system(cmd) != 0) {
        fprintf(stderr, "fuzz_commands: could not remove %s\n", dir_path);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir_path, sizeof dir_path, "%s/fuzz_commands.XXXXXX", base);
    CHECK(mkdtemp(dir_path) != NULL);
    atexit(remove_dir);
    char db[128], err[600] = "";
    snprintf(db, sizeof db, "%s/catalogue.db", dir_path);
    if (fixture_catalog_open(db, NEARESTD_DATASET_DIR, &store, &catalog, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_commands: %s\n", err);
        abort();
    }
    return 0;
}

static bool is_known_err(int code)
{
    return code <= -1 && code >= -CMD_ERR_COUNT;
}

/* The command word of a request, upper-cased, in name[0..size-1] ("" if none). */
static void command_name(const char *line, size_t len, char *name, size_t size)
{
    name[0] = '\0';
    char *copy = malloc(len + 1);
    char **argv = malloc(PROTO_MAX_ARGS * sizeof *argv);
    size_t argc = 0;
    if (copy && argv) {
        memcpy(copy, line, len + 1);
        if (proto_split(copy, len, argv, PROTO_MAX_ARGS, &argc) == 0 && argc > 0) {
            snprintf(name, size, "%s", argv[0]);
            for (char *c = name; *c; c++) {
                *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c);
            }
        }
    }
    free(argv);
    free(copy);
}

static size_t count_char(const char *s, size_t len, char c)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        n += s[i] == c;
    }
    return n;
}

static void check_text_answer(const char *buf, size_t len, int rc, const char *name)
{
    CHECK(len > 0 && buf[len - 1] == '\n');
    const char *first_end = memchr(buf, '\n', len);
    size_t first_len = (size_t)(first_end - buf);
    if (rc < 0) {
        /* One ERR line with the code's word. */
        CHECK(first_len + 1 == len);
        CHECK(len <= REPLY_MAX_ERR_BYTES);
        const char *word = cmd_err_word(rc);
        CHECK(len > 4 + strlen(word) && memcmp(buf, "ERR ", 4) == 0);
        CHECK(memcmp(buf + 4, word, strlen(word)) == 0);
        CHECK(buf[4 + strlen(word)] == ' ' || buf[4 + strlen(word)] == '\n');
        return;
    }
    CHECK(first_len > 3 && memcmp(buf, "OK ", 3) == 0);
    char *end = NULL;
    unsigned long long n = strtoull(buf + 3, &end, 10);
    CHECK(end == first_end);
    CHECK(count_char(buf, len, '\n') == n + 1);
    bool facilities = strcmp(name, "NEAREST") == 0 || strcmp(name, "RADIUS") == 0 ||
                      strcmp(name, "GET") == 0;
    if (facilities) {
        /* Every record: six tab-separated fields, then one key=value field
         * per attribute (PROTOCOL.md, "Facility records"). */
        const char *p = first_end + 1;
        while (p < buf + len) {
            const char *e = memchr(p, '\n', (size_t)(buf + len - p));
            CHECK(count_char(p, (size_t)(e - p), '\t') >= 5);
            const char *field = p;
            for (int i = 0; field < e; i++) {
                const char *tab = memchr(field, '\t', (size_t)(e - field));
                const char *field_end = tab ? tab : e;
                if (i >= 6) {
                    const char *eq = memchr(field, '=', (size_t)(field_end - field));
                    CHECK(eq != NULL && eq > field);
                }
                field = field_end + 1;
            }
            p = e + 1;
        }
    }
}

static void check_json_answer(const char *buf, size_t len, int rc)
{
    CHECK(len > 0 && buf[len - 1] == '\n');
    CHECK(count_char(buf, len, '\n') == 1);
    json_error_t jerr;
    json_t *doc = json_loadb(buf, len, 0, &jerr);
    CHECK(doc != NULL && json_is_object(doc));
    json_t *ok = json_object_get(doc, "ok");
    CHECK(json_is_boolean(ok) && json_is_true(ok) == (rc >= 0));
    json_decref(doc);
}

static void run_line(struct cmd_session *session, struct reply *out, char *line, size_t len)
{
    const struct cmd_env env = {.catalog = catalog, .stats = &stats};
    char name[32];
    command_name(line, len, name, sizeof name);
    uint64_t errors_before = stats.errors;

    out->format = session->format;
    int rc = cmd_execute(&env, session, line, len, out);
    /* FORMAT answers in the format it sets. */
    enum reply_format format = out->format;
    CHECK(rc == 0 || rc == 1 || rc == CMD_QUEUED || is_known_err(rc));
    CHECK(stats.errors == errors_before + (rc < 0 ? 1 : 0));
    CHECK(!reply_failed(out));
    size_t n = 0;
    char *buf = reply_take(out, &n);
    if (rc == CMD_QUEUED) {
        struct cmd_write *w = session->pending;
        session->pending = NULL;
        CHECK(w != NULL && buf == NULL);
        if (w->kind == CMD_WRITE_PUT) {
            char why[256];
            CHECK(store_facility_check(&w->rec, why, sizeof why) == 0);
        } else {
            /* DEL names an id; SET names an id and the changes only. */
            CHECK(w->kind == CMD_WRITE_DEL || w->kind == CMD_WRITE_SET);
            CHECK(w->rec.id != NULL);
        }
        cmd_write_free(w);
        return;
    }
    CHECK(session->pending == NULL);
    if (rc == 1) {
        CHECK(buf == NULL);
        return;
    }
    CHECK(buf != NULL && memchr(buf, '\0', n) == NULL);
    if (format == REPLY_TEXT) {
        check_text_answer(buf, n, rc, name);
    } else {
        check_json_answer(buf, n, rc);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proto_reader *r = proto_reader_new(PROTO_MAX_LINE_BYTES);
    if (r == NULL) {
        return 0;
    }
    struct cmd_session session;
    cmd_session_init(&session);
    struct reply out;
    reply_init(&out);

    if (proto_feed(r, (const char *)data, size) == 0) {
        char *line = NULL;
        size_t len = 0;
        while (!session.quit && proto_next(r, &line, &len) == PROTO_LINE) {
            run_line(&session, &out, line, len);
        }
    }
    reply_close(&out);
    proto_reader_free(r);
    return 0;
}
