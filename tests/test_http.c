/* test_http.c: the HTTP core (daemon/http.h) without sockets, on the real
 * Licang catalogue (the bundled dataset through store_create(), as nearestd
 * loads it).
 *
 * The oracle is the line protocol: for random points, categories and
 * options, the body of a /v1 route must be byte for byte the answer that
 * cmd_execute() gives to the same request line after FORMAT geojson (or
 * json), in a fresh session. The rest checks what only HTTP has: routing,
 * percent-decoding, the status of every engine error, CORS, Accept, HEAD,
 * the page, and the request reader (whole, split at every byte, pipelined,
 * and over each limit). Responses are read back with libhttp-parser
 * (http_support.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "catalog.h"
#include "catalog_fixture.h"
#include "cmd.h"
#include "http.h"
#include "http_support.h"
#include "store.h"

#ifndef NEARESTD_DATASET_DIR
#error "NEARESTD_DATASET_DIR must name the bundled dataset directory"
#endif

#define N_RANDOM 200

struct fixture {
    char dir[64];
    char db[128];
    struct store *store;
    struct catalog *catalog;
    struct cmd_stats stats;
    struct cmd_env env;
};

static struct fixture *fx;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double rng_deg(double lo, double hi) {
    return lo + (hi - lo) * (double)(rng_next() % 1000000) / 1e6;
}

static int group_setup(void **state) {
    (void)state;
    fx = calloc(1, sizeof *fx);
    if (!fx) {
        return -1;
    }
    snprintf(fx->dir, sizeof fx->dir, "/tmp/test_http-XXXXXX");
    if (!mkdtemp(fx->dir)) {
        return -1;
    }
    snprintf(fx->db, sizeof fx->db, "%s/x.db", fx->dir);
    char err[600] = "";
    if (fixture_catalog_open(fx->db, NEARESTD_DATASET_DIR, &fx->store, &fx->catalog, err,
                             sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    fx->env = (struct cmd_env){.catalog = fx->catalog, .stats = &fx->stats};
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    catalog_free(fx->catalog);
    store_close(fx->store);
    const char *files[] = {"x.db", "x.db-wal", "x.db-shm"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", fx->dir, files[i]);
        unlink(path);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* ---- Helpers -------------------------------------------------------------------- */

/* The line protocol's answer to `line` in `format` (a fresh session), owned
 * by the caller. */
static char *line_answer(const char *format, const char *line) {
    struct cmd_session session;
    cmd_session_init(&session);
    struct reply out;
    reply_init(&out);
    char buf[4096];
    snprintf(buf, sizeof buf, "FORMAT %s", format);
    cmd_execute(&fx->env, &session, buf, strlen(buf), &out);
    size_t len = 0;
    free(reply_take(&out, &len));
    out.format = session.format;
    snprintf(buf, sizeof buf, "%s", line);
    cmd_execute(&fx->env, &session, buf, strlen(buf), &out);
    assert_false(reply_failed(&out));
    char *got = reply_take(&out, &len);
    assert_non_null(got);
    reply_close(&out);
    return got;
}

/* Answers a request and parses the response; the caller frees *r. */
static void request(enum http_req_method method, const char *url, const char *accept,
                    struct hs_response *r) {
    static const char *const names[] = {"GET", "HEAD", "OPTIONS", "DELETE"};
    struct http_request req = {.method = method, .method_name = names[method], .url = url,
                               .accept = accept ? accept : "", .keep_alive = true};
    struct http_response resp;
    assert_int_equal(http_respond(&fx->env, &req, &resp), 0);
    long used = hs_parse(resp.bytes, resp.len, method == HTTP_REQ_HEAD, r);
    assert_true(used > 0);
    assert_int_equal((size_t)used, resp.len); /* exactly one response, nothing after */
    assert_int_equal(r->status, resp.status);
    assert_string_equal(hs_header(r, "Access-Control-Allow-Origin"), "*");
    assert_non_null(hs_header(r, "Content-Length"));
    if (method != HTTP_REQ_HEAD) {
        assert_int_equal(strtoul(hs_header(r, "Content-Length"), NULL, 10), r->body_len);
    }
    free(resp.bytes);
}

static void get(const char *url, struct hs_response *r) {
    request(HTTP_REQ_GET, url, NULL, r);
}

/* Asserts that GET url answers `status` with the JSON error object `code`. */
static void assert_error(const char *url, int status, const char *code) {
    struct hs_response r;
    get(url, &r);
    assert_int_equal(r.status, status);
    assert_string_equal(hs_header(&r, "Content-Type"), "application/json");
    char want[64];
    snprintf(want, sizeof want, "{\"ok\":false,\"error\":{\"code\":\"%s\",", code);
    if (strncmp(r.body, want, strlen(want)) != 0) {
        fail_msg("%s: expected %s, got %s", url, want, r.body);
    }
    hs_response_free(&r);
}

/* Asserts that GET url (with Accept) is 200 and its body is the answer to
 * `line` in `format`. */
static void assert_same_as_line(const char *url, const char *accept, const char *format,
                                const char *line) {
    struct hs_response r;
    request(HTTP_REQ_GET, url, accept, &r);
    char *want = line_answer(format, line);
    if (strcmp(r.body, want) != 0) {
        fail_msg("%s\n  http: %.300s\n  line: %.300s", url, r.body, want);
    }
    if (r.status != 200) {
        fail_msg("%s: status %d: %.300s", url, r.status, r.body);
    }
    free(want);
    hs_response_free(&r);
}

static const char *const categories[] = {"elder_care", "meal_point", "doctor_team", "school",
                                         "parking", "*"};

/* ---- The oracle ------------------------------------------------------------------- */

static void test_nearest_body_is_the_format_geojson_answer_at_random_points(void **state) {
    (void)state;
    for (int i = 0; i < N_RANDOM; i++) {
        const char *cat = categories[rng_next() % 6];
        double lat = rng_deg(36.10, 36.30), lon = rng_deg(120.30, 120.55);
        unsigned k = 1 + (unsigned)(rng_next() % 12);
        char url[256], line[256];
        snprintf(url, sizeof url, "/v1/nearest?category=%s&lat=%.6f&lon=%.6f&k=%u",
                 strcmp(cat, "*") == 0 ? "%2A" : cat, lat, lon, k);
        snprintf(line, sizeof line, "NEAREST %s %.6f %.6f K %u", cat, lat, lon, k);
        assert_same_as_line(url, NULL, "geojson", line);
        /* The same with Accept: application/json is the FORMAT json answer. */
        assert_same_as_line(url, "application/json", "json", line);
    }
}

static void test_radius_and_crs_bodies_are_the_line_answers_at_random_points(void **state) {
    (void)state;
    static const char *const crs[] = {"wgs84", "gcj02", "bd09"};
    for (int i = 0; i < N_RANDOM / 4; i++) {
        const char *cat = categories[rng_next() % 5];
        const char *c = crs[rng_next() % 3];
        double lat = rng_deg(36.12, 36.26), lon = rng_deg(120.33, 120.52);
        unsigned r = 200 + (unsigned)(rng_next() % 3000);
        char url[256], line[256];
        snprintf(url, sizeof url, "/v1/radius?category=%s&lat=%.6f&lon=%.6f&r=%u&limit=7&crs=%s",
                 cat, lat, lon, r, c);
        snprintf(line, sizeof line, "RADIUS %s %.6f %.6f %u LIMIT 7 CRS %s", cat, lat, lon, r,
                 c);
        assert_same_as_line(url, NULL, "geojson", line);
        snprintf(url, sizeof url, "/v1/nearest?lat=%.6f&crs=%s&lon=%.6f&category=%s&maxdist=%u",
                 lat, c, lon, cat, r);
        snprintf(line, sizeof line, "NEAREST %s %.6f %.6f MAXDIST %u CRS %s", cat, lat, lon, r,
                 c);
        assert_same_as_line(url, NULL, "geojson", line);
    }
}

static void test_every_route_answers_as_its_command(void **state) {
    (void)state;
    static const char *const pairs[][2] = {
        {"/v1/nearest?category=elder_care&lat=36.16&lon=120.41&where=stars>=4&where=dementia=yes"
         "&open=2026-11-29T10:00&k=3",
         "NEAREST elder_care 36.16 120.41 K 3 WHERE stars >= 4 WHERE dementia = yes "
         "OPEN 2026-11-29T10:00"},
        {"/v1/nearest?category=parking&lat=36.16&lon=120.41&open=now",
         "NEAREST parking 36.16 120.41 OPEN now"},
        {"/v1/inarea?category=*&area=district", "INAREA * district"},
        {"/v1/inarea?category=school&area=st-hushan&where=ownership!=private",
         "INAREA school st-hushan WHERE ownership != private"},
        {"/v1/serves?lat=36.1602&lon=120.4105", "SERVES 36.1602 120.4105"},
        {"/v1/serves?lat=36.1602&lon=120.4105&kind=community&crs=gcj02",
         "SERVES 36.1602 120.4105 community CRS gcj02"},
        {"/v1/areas", "AREAS"},
        {"/v1/areas?kind=street", "AREAS street"},
        {"/v1/categories", "CATEGORIES"},
        {"/v1/facilities/ec-095", "GET ec-095"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        assert_same_as_line(pairs[i][0], NULL, "geojson", pairs[i][1]);
        assert_same_as_line(pairs[i][0], "application/json", "json", pairs[i][1]);
    }
    /* GET with crs: the session's CRS, as CRS gcj02 then GET on a connection. */
    struct hs_response r;
    get("/v1/facilities/ec-095?crs=gcj02", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"crs\":\"gcj02\""));
    hs_response_free(&r);
}

static void test_query_values_are_percent_decoded(void **state) {
    (void)state;
    assert_same_as_line("/v1/nearest?category=elder%5Fcare&lat=36%2E16&lon=120.41"
                        "&where=stars%3E%3D4&k=2",
                        NULL, "geojson", "NEAREST elder_care 36.16 120.41 K 2 WHERE stars >= 4");
    assert_same_as_line("/v1/facilities/ec%2D095", NULL, "geojson", "GET ec-095");
    /* A value is one argument, whatever it holds: no keyword can be smuggled in. */
    assert_error("/v1/nearest?category=elder_care&lat=36.16&lon=120.41%20K%201000", 400,
                 "ARG");
    assert_error("/v1/nearest?category=elder_care+K&lat=36.16&lon=120.41", 400, "UNKNOWN");
}

/* ---- Statuses ----------------------------------------------------------------------- */

static void test_engine_errors_map_to_statuses_with_the_same_code(void **state) {
    (void)state;
    assert_error("/v1/nearest?category=meal_point&lat=96.16&lon=120.41", 400, "RANGE");
    assert_error("/v1/nearest?category=cafe&lat=36.16&lon=120.41", 400, "UNKNOWN");
    assert_error("/v1/nearest?category=meal_point&lat=36.16&lon=120.41&k=abc", 400, "ARG");
    assert_error("/v1/nearest?category=meal_point&lat=36.16&lon=120.41&k=0", 400, "RANGE");
    assert_error("/v1/nearest?category=meal_point&lat=36.16&lon=120.41&where=stars", 400, "ARG");
    assert_error("/v1/nearest?category=meal_point&lat=36.16&lon=120.41&crs=osgb", 400,
                 "UNKNOWN");
    assert_error("/v1/nearest?category=meal_point&lon=120.41", 400, "ARG");
    assert_error("/v1/nearest?category=meal_point&lat=36.1&lon=120.41&colour=red", 400, "ARG");
    assert_error("/v1/nearest?category=meal_point&lat=36.1&lat=36.2&lon=120.41", 400, "ARG");
    assert_error("/v1/areas?kind=county", 400, "UNKNOWN");
    assert_error("/v1/facilities/nope", 404, "NOTFOUND");
    assert_error("/v1/inarea?category=*&area=nowhere", 404, "NOTFOUND");
    assert_error("/v1/nothing", 404, "NOTFOUND");
    assert_error("/v1/nearest/", 404, "NOTFOUND");
    assert_error("/index.html", 404, "NOTFOUND");
    assert_error("/v1/facilities/a/b", 404, "NOTFOUND");
    /* A NUL byte would cut a decoded value short ("36.6%00junk" as 36.6). */
    assert_error("/v1/nearest?category=elder_care&lat=36.16%00junk&lon=120.41", 400, "SYNTAX");
    assert_error("/v1/nearest?category=elder_care&lat=36.16&lon=120.41&crs=wgs84%00x", 400,
                 "SYNTAX");
    assert_error("/v1/facilities/ec-045%00x", 400, "SYNTAX");
    /* The status of every code, including those no read route can produce. */
    assert_int_equal(http_status_of(0), 200);
    assert_int_equal(http_status_of(CMD_ERR_SYNTAX), 400);
    assert_int_equal(http_status_of(CMD_ERR_LIMIT), 400);
    assert_int_equal(http_status_of(CMD_ERR_BUSY), 503);
    assert_int_equal(http_status_of(CMD_ERR_INTERNAL), 500);
    assert_int_equal(http_status_of(CMD_ERR_DENIED), 403);
}

static void test_other_methods_get_405_with_allow(void **state) {
    (void)state;
    struct hs_response r;
    request(HTTP_REQ_OTHER, "/v1/facilities/ec-095", NULL, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(hs_header(&r, "Allow"), "GET, HEAD, OPTIONS");
    assert_non_null(strstr(r.body, "\"code\":\"DENIED\""));
    hs_response_free(&r);
}

static void test_options_is_a_cors_preflight(void **state) {
    (void)state;
    struct hs_response r;
    request(HTTP_REQ_OPTIONS, "/v1/nearest?category=meal_point", NULL, &r);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(hs_header(&r, "Access-Control-Allow-Methods"), "GET, HEAD, OPTIONS");
    assert_string_equal(hs_header(&r, "Access-Control-Allow-Headers"), "Accept, Content-Type");
    hs_response_free(&r);
}

static void test_accept_chooses_geojson_or_json(void **state) {
    (void)state;
    static const struct {
        const char *accept;
        const char *type;
    } cases[] = {
        {NULL, "application/geo+json"},
        {"*/*", "application/geo+json"},
        {"application/geo+json", "application/geo+json"},
        {"application/json", "application/json"},
        {"text/html, application/json;q=0.9", "application/json"},
        {"APPLICATION/JSON", "application/json"},
        {"application/json, application/geo+json", "application/geo+json"},
        {"application/jsonx", "application/geo+json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct hs_response r;
        request(HTTP_REQ_GET, "/v1/facilities/ec-095", cases[i].accept, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(hs_header(&r, "Content-Type"), cases[i].type);
        bool geo = strcmp(cases[i].type, "application/geo+json") == 0;
        assert_int_equal(strncmp(r.body, "{\"type\":\"FeatureCollection\"", 27) == 0, geo);
        hs_response_free(&r);
    }
    /* CATEGORIES is not a FeatureCollection in geojson either. */
    struct hs_response r;
    get("/v1/categories", &r);
    assert_string_equal(hs_header(&r, "Content-Type"), "application/json");
    hs_response_free(&r);
}

static void test_head_has_the_headers_of_get_and_no_body(void **state) {
    (void)state;
    const char *urls[] = {"/", "/v1/areas?kind=street", "/v1/facilities/nope"};
    for (size_t i = 0; i < 3; i++) {
        struct hs_response g, h;
        get(urls[i], &g);
        request(HTTP_REQ_HEAD, urls[i], NULL, &h);
        assert_int_equal(h.status, g.status);
        assert_int_equal(h.body_len, 0);
        assert_string_equal(hs_header(&h, "Content-Length"), hs_header(&g, "Content-Length"));
        assert_string_equal(hs_header(&h, "Content-Type"), hs_header(&g, "Content-Type"));
        hs_response_free(&g);
        hs_response_free(&h);
    }
}

static void test_root_is_the_embedded_page(void **state) {
    (void)state;
    struct hs_response r;
    get("/", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hs_header(&r, "Content-Type"), "text/html; charset=utf-8");
    assert_int_equal(r.body_len, http_page_html_len);
    assert_memory_equal(r.body, http_page_html, http_page_html_len);
    assert_non_null(strstr(r.body, "<html"));
    hs_response_free(&r);
}

static void test_each_request_counts_once_in_stats(void **state) {
    (void)state;
    size_t n_specs = 0;
    size_t row = (size_t)(cmd_lookup("NEAREST") - cmd_table(&n_specs));
    static const struct {
        const char *url;
        int errors;
    } cases[] = {
        {"/v1/nearest?category=school&lat=36.16&lon=120.41", 0},
        {"/v1/nearest?category=school&lat=36.16&lon=120.41&crs=gcj02", 0},
        {"/v1/nearest?category=school&lat=36.16&lon=120.41&crs=mars", 1},
        {"/v1/nearest?category=school&lat=96.16&lon=120.41&crs=bd09", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cmd_stats before = fx->stats;
        struct hs_response r;
        get(cases[i].url, &r);
        hs_response_free(&r);
        assert_int_equal(fx->stats.requests, before.requests + 1);
        assert_int_equal(fx->stats.errors, before.errors + (uint64_t)cases[i].errors);
        assert_int_equal(fx->stats.requests_by_cmd[row], before.requests_by_cmd[row] + 1);
        assert_int_equal(fx->stats.errors_by_cmd[row],
                         before.errors_by_cmd[row] + (uint64_t)cases[i].errors);
    }
}

/* ---- The reader ------------------------------------------------------------------- */

static const char pipeline[] =
    "GET /v1/facilities/ec-095 HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n"
    "HEAD /v1/categories HTTP/1.1\r\nHost: x\r\n\r\n"
    "OPTIONS /v1/nearest HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n"
    "Accept: application/geo+json\r\n\r\n"
    "DELETE /v1/facilities/ec-095 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    "GET /after-close HTTP/1.1\r\n\r\n";

/* Feeds data to a new reader in chunks of `step` bytes and checks the four
 * requests of `pipeline`, in order, and nothing after the Connection: close. */
static void read_pipeline(size_t step) {
    static const struct {
        enum http_req_method method;
        const char *url;
        const char *accept;
        bool keep_alive;
    } want[] = {
        {HTTP_REQ_GET, "/v1/facilities/ec-095", "application/json", true},
        {HTTP_REQ_HEAD, "/v1/categories", "", true},
        {HTTP_REQ_OPTIONS, "/v1/nearest", "text/html,application/geo+json", true},
        {HTTP_REQ_OTHER, "/v1/facilities/ec-095", "", false},
    };
    struct http_reader *rd = http_reader_new();
    assert_non_null(rd);
    size_t n_seen = 0, len = strlen(pipeline);
    for (size_t at = 0; at < len;) {
        size_t chunk = len - at < step ? len - at : step;
        size_t used = 0;
        struct http_request req;
        enum http_read st = http_reader_next(rd, pipeline + at, chunk, &used, &req);
        assert_int_not_equal(st, HTTP_READ_ERROR);
        assert_true(used <= chunk);
        if (st == HTTP_READ_REQUEST) {
            assert_true(n_seen < 4);
            assert_int_equal(req.method, want[n_seen].method);
            assert_string_equal(req.url, want[n_seen].url);
            assert_string_equal(req.accept, want[n_seen].accept);
            assert_int_equal(req.keep_alive, want[n_seen].keep_alive);
            n_seen++;
        } else {
            assert_int_equal(used, chunk);
        }
        at += used;
    }
    assert_int_equal(n_seen, 4);
    http_reader_free(rd);
}

static void test_reader_reads_pipelined_requests_whole_and_split_at_every_byte(void **state) {
    (void)state;
    read_pipeline(strlen(pipeline));
    for (size_t step = 1; step < 40; step++) {
        read_pipeline(step);
    }
}

/* Feeds text to a new reader and returns the status of its error response
 * (0 when it read a request without error). */
static int reader_error_status(const char *text, size_t len) {
    struct http_reader *rd = http_reader_new();
    assert_non_null(rd);
    int status = 0;
    for (size_t at = 0; at < len;) {
        size_t used = 0;
        struct http_request req;
        enum http_read st = http_reader_next(rd, text + at, len - at, &used, &req);
        if (st == HTTP_READ_ERROR) {
            struct http_response resp;
            assert_int_equal(http_reader_error(rd, &resp), 0);
            assert_true(resp.close);
            struct hs_response r;
            assert_true(hs_parse(resp.bytes, resp.len, false, &r) > 0);
            assert_string_equal(hs_header(&r, "Connection"), "close");
            status = r.status;
            assert_non_null(strstr(r.body, status == 413 ? "\"LIMIT\"" : "\"SYNTAX\""));
            hs_response_free(&r);
            free(resp.bytes);
            /* An error is final. */
            assert_int_equal(http_reader_next(rd, "GET / HTTP/1.1\r\n\r\n", 18, &used, &req),
                             HTTP_READ_ERROR);
            break;
        }
        at += used;
        if (st == HTTP_READ_MORE) {
            break;
        }
    }
    http_reader_free(rd);
    return status;
}

static void test_reader_limits_and_malformed_requests(void **state) {
    (void)state;
    size_t big = HTTP_MAX_HEAD_BYTES + 100;
    char *text = malloc(big + 64);
    assert_non_null(text);
    /* A URL one byte over the limit, and one at the limit. */
    for (int over = 0; over < 2; over++) {
        size_t url_len = HTTP_MAX_URL_BYTES + (size_t)over;
        size_t n = (size_t)sprintf(text, "GET /");
        memset(text + n, 'a', url_len - 1);
        n += url_len - 1;
        n += (size_t)sprintf(text + n, " HTTP/1.1\r\n\r\n");
        assert_int_equal(reader_error_status(text, n), over ? 413 : 0);
    }
    /* A head over the limit in one header. */
    size_t n = (size_t)sprintf(text, "GET / HTTP/1.1\r\nX-Pad: ");
    memset(text + n, 'b', big - n);
    n = big;
    n += (size_t)sprintf(text + n, "\r\n\r\n");
    assert_int_equal(reader_error_status(text, n), 413);
    free(text);
    /* A body, announced either way. */
    const char *with_body = "GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    assert_int_equal(reader_error_status(with_body, strlen(with_body)), 413);
    const char *chunked =
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_int_equal(reader_error_status(chunked, strlen(chunked)), 413);
    const char *zero = "GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(reader_error_status(zero, strlen(zero)), 0);
    /* Not HTTP. */
    const char *garbage = "NEAREST meal_point 36.16 120.41\r\n";
    assert_int_equal(reader_error_status(garbage, strlen(garbage)), 400);
    const char *bad_version = "GET / HTTP/x.1\r\n\r\n";
    assert_int_equal(reader_error_status(bad_version, strlen(bad_version)), 400);
}

/* The head limit counts the bytes sent, however they are split: a head of
 * half the limit, fed one byte at a time, is one whole request. */
static void test_head_limit_counts_bytes_however_they_arrive(void **state) {
    (void)state;
    char *text = malloc(HTTP_MAX_HEAD_BYTES);
    assert_non_null(text);
    size_t n = (size_t)sprintf(text, "GET / HTTP/1.1\r\n");
    for (int i = 0; n < HTTP_MAX_HEAD_BYTES / 2; i++) {
        n += (size_t)sprintf(text + n, "X-Field-%05d: v\r\n", i);
    }
    n += (size_t)sprintf(text + n, "\r\n");
    struct http_reader *rd = http_reader_new();
    assert_non_null(rd);
    enum http_read st = HTTP_READ_MORE;
    struct http_request req;
    for (size_t at = 0; at < n && st == HTTP_READ_MORE; at++) {
        size_t used = 0;
        st = http_reader_next(rd, text + at, 1, &used, &req);
        assert_int_equal(used, 1);
    }
    assert_int_equal(st, HTTP_READ_REQUEST);
    http_reader_free(rd);
    free(text);
}

static void test_keep_alive_follows_the_version_and_connection_header(void **state) {
    (void)state;
    static const struct {
        const char *text;
        bool keep_alive;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http_reader *rd = http_reader_new();
        size_t used = 0;
        struct http_request req;
        assert_int_equal(http_reader_next(rd, cases[i].text, strlen(cases[i].text), &used, &req),
                         HTTP_READ_REQUEST);
        assert_int_equal(req.keep_alive, cases[i].keep_alive);
        struct http_response resp;
        assert_int_equal(http_respond(&fx->env, &req, &resp), 0);
        assert_int_equal(resp.close, !cases[i].keep_alive);
        struct hs_response r;
        assert_true(hs_parse(resp.bytes, resp.len, false, &r) > 0);
        assert_string_equal(hs_header(&r, "Connection"),
                            cases[i].keep_alive ? "keep-alive" : "close");
        hs_response_free(&r);
        free(resp.bytes);
        http_reader_free(rd);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nearest_body_is_the_format_geojson_answer_at_random_points),
        cmocka_unit_test(test_radius_and_crs_bodies_are_the_line_answers_at_random_points),
        cmocka_unit_test(test_every_route_answers_as_its_command),
        cmocka_unit_test(test_query_values_are_percent_decoded),
        cmocka_unit_test(test_engine_errors_map_to_statuses_with_the_same_code),
        cmocka_unit_test(test_other_methods_get_405_with_allow),
        cmocka_unit_test(test_options_is_a_cors_preflight),
        cmocka_unit_test(test_accept_chooses_geojson_or_json),
        cmocka_unit_test(test_head_has_the_headers_of_get_and_no_body),
        cmocka_unit_test(test_root_is_the_embedded_page),
        cmocka_unit_test(test_each_request_counts_once_in_stats),
        cmocka_unit_test(test_reader_reads_pipelined_requests_whole_and_split_at_every_byte),
        cmocka_unit_test(test_reader_limits_and_malformed_requests),
        cmocka_unit_test(test_head_limit_counts_bytes_however_they_arrive),
        cmocka_unit_test(test_keep_alive_follows_the_version_and_connection_header),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
