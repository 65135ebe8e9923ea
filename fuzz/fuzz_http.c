/* fuzz_http.c: libFuzzer target for the HTTP interface below the socket:
 * bytes -> http_reader (libhttp-parser) -> http_respond() (routes, query
 * strings through liburiparser, cmd_dispatch()) -> response bytes, against
 * the real Licang catalogue (daemon/http.h).
 *
 * The catalogue is loaded once per process as in fuzz_commands (the bundled
 * dataset through store_create(), in /dev/shm when there is one). Each input
 * is one connection: its first byte picks the size of the reads (1..64
 * bytes, or all at once) the rest is cut into, so the same requests are also
 * read split at odd places; every request read is answered, until an error
 * or a request that closes the connection.
 *
 * Checked for every response, besides "no crash, no leak, no UB": it parses
 * as exactly one HTTP/1.1 response (libhttp-parser in response mode) whose
 * status is one the contract allows and matches resp.status; it carries
 * Access-Control-Allow-Origin: * and a Content-Length equal to its body
 * (HEAD: none sent); every body except the page's is one JSON object whose
 * "ok" is true exactly when the status is 200; the connection closes exactly
 * when the request asked (or the reader failed: 400 or 413). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <http_parser.h>
#include <jansson.h>

#include "catalog.h"
#include "catalog_fixture.h"
#include "cmd.h"
#include "http.h"
#include "store.h"

#ifndef NEARESTD_DATASET_DIR
#error "NEARESTD_DATASET_DIR must name the bundled dataset directory"
#endif

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "fuzz_http: check failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

static char dir_path[64];
static struct store *store;
static struct catalog *catalog;
static struct cmd_stats stats;

static void remove_dir(void) {
    catalog_free(catalog);
    store_close(store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir_path);
    if (system(cmd) != 0) {
        fprintf(stderr, "fuzz_http: could not remove %s\n", dir_path);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir_path, sizeof dir_path, "%s/fuzz_http.XXXXXX", base);
    CHECK(mkdtemp(dir_path) != NULL);
    atexit(remove_dir);
    char db[128], err[600] = "";
    snprintf(db, sizeof db, "%s/catalogue.db", dir_path);
    if (fixture_catalog_open(db, NEARESTD_DATASET_DIR, &store, &catalog, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_http: %s\n", err);
        abort();
    }
    return 0;
}

/* ---- Reading a response back ------------------------------------------------------ */

struct seen {
    bool head;
    bool done;
    bool in_value;
    char field[32];
    size_t field_len;
    bool acao_star;
    long content_length;          /* -1: none */
    size_t body_len;
    const char *body;
};

static int on_field(http_parser *p, const char *at, size_t n) {
    struct seen *s = p->data;
    if (s->in_value) {
        s->field_len = 0;
        s->in_value = false;
    }
    if (s->field_len + n < sizeof s->field) {
        memcpy(s->field + s->field_len, at, n);
    }
    s->field_len += n;
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t n) {
    struct seen *s = p->data;
    s->in_value = true;
    if (s->field_len < sizeof s->field) {
        s->field[s->field_len] = '\0';
        if (strcasecmp(s->field, "Access-Control-Allow-Origin") == 0) {
            s->acao_star = n == 1 && at[0] == '*';
        } else if (strcasecmp(s->field, "Content-Length") == 0) {
            s->content_length = strtol(at, NULL, 10);
        }
    }
    return 0;
}

static int on_headers_complete(http_parser *p) {
    return ((struct seen *)p->data)->head ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
    struct seen *s = p->data;
    if (!s->body) {
        s->body = at;
    }
    s->body_len += n;
    return 0;
}

static int on_complete(http_parser *p) {
    ((struct seen *)p->data)->done = true;
    return 0;
}

static bool status_allowed(int status) {
    static const int allowed[] = {200, 204, 400, 403, 404, 405, 413, 500, 503};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        if (status == allowed[i]) {
            return true;
        }
    }
    return false;
}

static void check_response(const struct http_request *req, const struct http_response *resp,
                           bool is_head) {
    static const http_parser_settings settings = {
        .on_header_field = on_field,
        .on_header_value = on_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_complete,
    };
    struct seen s = {.head = is_head, .content_length = -1};
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &s;
    size_t used = http_parser_execute(&p, &settings, resp->bytes, resp->len);
    CHECK(HTTP_PARSER_ERRNO(&p) == HPE_OK);
    CHECK(s.done && used == resp->len);
    CHECK((int)p.status_code == resp->status);
    CHECK(status_allowed(resp->status));
    CHECK(s.acao_star);
    CHECK(s.content_length >= 0);
    CHECK(is_head ? s.body_len == 0 : (size_t)s.content_length == s.body_len);
    CHECK(resp->close == !http_should_keep_alive(&p));
    if (req) {
        CHECK(resp->close == !req->keep_alive);
    }
    bool page = req && resp->status == 200 && s.body_len > 0 && s.body[0] == '<';
    if (is_head || resp->status == 204 || page) {
        return;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(s.body, s.body_len, 0, &jerr);
    CHECK(doc != NULL && json_is_object(doc));
    json_t *ok = json_object_get(doc, "ok");
    CHECK(json_is_boolean(ok) && json_is_true(ok) == (resp->status == 200));
    json_decref(doc);
}

/* ---- One connection ------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) {
        return 0;
    }
    const struct cmd_env env = {.catalog = catalog, .stats = &stats};
    size_t step = data[0] % 65 == 0 ? size : data[0] % 65;
    const char *bytes = (const char *)data + 1;
    size_t len = size - 1;
    struct http_reader *r = http_reader_new();
    CHECK(r != NULL);
    size_t at = 0;
    while (at < len) {
        size_t chunk = len - at < step ? len - at : step;
        size_t used = 0;
        struct http_request req;
        enum http_read st = http_reader_next(r, bytes + at, chunk, &used, &req);
        CHECK(used <= chunk);
        struct http_response resp;
        if (st == HTTP_READ_ERROR) {
            CHECK(http_reader_error(r, &resp) == 0);
            CHECK(resp.close && (resp.status == 400 || resp.status == 413));
            check_response(NULL, &resp, false);
            free(resp.bytes);
            break;
        }
        at += used;
        if (st == HTTP_READ_MORE) {
            CHECK(used == chunk);
            continue;
        }
        CHECK(req.url != NULL && req.accept != NULL && req.method_name != NULL);
        CHECK(strlen(req.url) <= HTTP_MAX_URL_BYTES);
        CHECK(http_respond(&env, &req, &resp) == 0);
        check_response(&req, &resp, req.method == HTTP_REQ_HEAD);
        free(resp.bytes);
        if (!req.keep_alive) {
            break;
        }
    }
    http_reader_free(r);
    return 0;
}
