/* it_http.c: nearestd --http against real sockets on loopback.
 *
 * One daemon serves the bundled dataset (--init into a temporary directory)
 * on a line-protocol port and an HTTP port. The tests speak HTTP/1.1 over TCP
 * and read the responses with libhttp-parser (http_support.h): keep-alive
 * over several requests, pipelined requests answered in order, Connection:
 * close, the error statuses with their JSON codes, a CORS preflight, the page
 * at /, the street polygons (read back by GEOS), answers equal to the line
 * protocol's for the same query on the other port, and a clean stop on
 * SIGTERM with HTTP connections open. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <geos_c.h>
#include <jansson.h>

#include "http_support.h"
#include "it_support.h"

#define WAIT_MS 10000

static char dir[256];
static pid_t daemon_pid = -1;
static pid_t other_pid = -1;      /* a second daemon of one test; killed at teardown */
static int line_port, http_port;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return fd;
    }
    if (fd >= 0) {
        close(fd);
    }
    return -1;
}

/* ---- A connection's stream of responses ------------------------------------------ */

struct conn {
    int fd;
    size_t len;
    char buf[1 << 21];
    bool eof;
};

static struct conn *conn_open_port(int port) {
    struct conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fd = dial(port);
    assert_true(c->fd >= 0);
    return c;
}

static struct conn *conn_open(void) {
    return conn_open_port(http_port);
}

static void conn_free(struct conn *c) {
    close(c->fd);
    free(c);
}

static void conn_send(struct conn *c, const char *text) {
    its_send_all(c->fd, text, strlen(text));
}

/* Reads more bytes, waiting up to WAIT_MS. Returns false at EOF. */
static bool conn_fill(struct conn *c) {
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, WAIT_MS) != 1) {
        fail_msg("no answer within %d ms", WAIT_MS);
    }
    assert_true(c->len < sizeof c->buf);
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n <= 0) {
        c->eof = true;
        return false;
    }
    c->len += (size_t)n;
    return true;
}

/* Reads the next response (of a HEAD request when `head`). */
static void conn_read(struct conn *c, bool head, struct hs_response *r) {
    for (;;) {
        long used = hs_parse(c->buf, c->len, head, r);
        assert_true(used >= 0);
        if (used > 0) {
            memmove(c->buf, c->buf + used, c->len - (size_t)used);
            c->len -= (size_t)used;
            assert_string_equal(hs_header(r, "Access-Control-Allow-Origin"), "*");
            if (!head) {
                assert_int_equal(strtoul(hs_header(r, "Content-Length"), NULL, 10),
                                 r->body_len);
            }
            return;
        }
        if (!conn_fill(c)) {
            fail_msg("connection closed before a whole response (%zu bytes)", c->len);
        }
    }
}

/* True when the daemon closes the connection with nothing more to send. */
static bool conn_closed_by_peer(struct conn *c) {
    while (conn_fill(c)) {
    }
    return c->len == 0;
}

/* One request on a new connection with Connection: close. */
static void http_get(const char *path, const char *accept, struct hs_response *r) {
    struct conn *c = conn_open();
    char req[4096];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n%s%s%sConnection: close\r\n\r\n",
             path, accept ? "Accept: " : "", accept ? accept : "", accept ? "\r\n" : "");
    conn_send(c, req);
    conn_read(c, false, r);
    assert_true(conn_closed_by_peer(c));
    conn_free(c);
}

/* The line protocol's answer to `line` after FORMAT `format`: one JSON line. */
static char *line_answer(const char *format, const char *line) {
    int fd = dial(line_port);
    assert_true(fd >= 0);
    char req[1024];
    snprintf(req, sizeof req, "FORMAT %s\n%s\n", format, line);
    its_send_all(fd, req, strlen(req));
    size_t cap = 1 << 21, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    int newlines = 0;
    while (newlines < 2) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, WAIT_MS), 1);
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        assert_true(n > 0);
        for (ssize_t i = 0; i < n; i++) {
            newlines += buf[len + (size_t)i] == '\n';
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    char *second = strchr(buf, '\n') + 1;
    char *out = strdup(second);
    free(buf);
    return out;
}

/* ---- The daemon --------------------------------------------------------------------- */

/* Reads both ports from the daemon's log: "serving ... facilities on
 * HOST:PORT" and "serving HTTP (read-only) on http://HOST:PORT/". Returns
 * true once both are there. */
static bool read_ports(const char *log_path, int *line, int *http) {
    char *text = its_read_file(log_path);
    const char *facilities = strstr(text, " facilities on ");
    const char *web = strstr(text, "on http://");
    bool ok = false;
    if (facilities && web) {
        const char *colon = NULL; /* the last ':' on the line: after an IPv6 host too */
        for (const char *p = facilities; *p && *p != '\n'; p++) {
            colon = *p == ':' ? p : colon;
        }
        const char *web_colon = strchr(web + strlen("on http://"), ':');
        if (colon && web_colon) {
            *line = atoi(colon + 1);
            *http = atoi(web_colon + 1);
            ok = *line > 0 && *http > 0;
        }
    }
    free(text);
    return ok;
}

/* Starts nearestd on the database `db_name` in dir with --listen and --http on
 * port 0 (the bound ports, read from its log, go to *line and *http) and the
 * NULL-terminated extra flags. Returns its pid once both are known, or -1. */
static pid_t launch(const char *db_name, const char *const *extra, int *line, int *http) {
    char db[320], log_path[320];
    snprintf(db, sizeof db, "%s/%s", dir, db_name);
    snprintf(log_path, sizeof log_path, "%s/%s.log", dir, db_name);
    const char *args[16] = {"--db", db, "--init", "--dataset", NEARESTD_DATASET_DIR,
                            "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"};
    size_t n = 9;
    for (size_t i = 0; extra && extra[i] && n < 15; i++) {
        args[n++] = extra[i];
    }
    args[n] = NULL;
    pid_t pid = its_spawn(NEARESTD_BIN, log_path, args);
    for (int64_t start = now_ms(); now_ms() - start < 3 * WAIT_MS;) {
        if (read_ports(log_path, line, http)) {
            return pid;
        }
        if (its_wait_exit(pid, 0) != -1) {
            return -1;
        }
        usleep(10000);
    }
    its_stop(pid);
    return -1;
}

static int group_setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/it_http-XXXXXX");
    if (!mkdtemp(dir)) {
        return -1;
    }
    /* The last test stops this daemon with SIGTERM and requires every response
     * it had begun to arrive whole: give the drain far more than it needs, so
     * that a slow build (TSan) on a busy machine is not cut off by the default
     * 5 s. Cutting at the deadline is it_faults' test. */
    const char *const flags[] = {"--shutdown-timeout-ms", "120000", NULL};
    daemon_pid = launch("n.db", flags, &line_port, &http_port);
    return daemon_pid > 0 ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGKILL);
        waitpid(daemon_pid, NULL, 0);
    }
    if (other_pid > 0) {
        kill(other_pid, SIGKILL);
        waitpid(other_pid, NULL, 0);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- Tests ---------------------------------------------------------------------------- */

static void test_keep_alive_serves_several_requests_on_one_connection(void **state) {
    (void)state;
    struct conn *c = conn_open();
    for (int i = 0; i < 5; i++) {
        char req[256];
        snprintf(req, sizeof req,
                 "GET /v1/nearest?category=meal_point&lat=36.16&lon=120.41&k=%d HTTP/1.1\r\n"
                 "Host: t\r\n\r\n", i + 1);
        conn_send(c, req);
        struct hs_response r;
        conn_read(c, false, &r);
        assert_int_equal(r.status, 200);
        assert_true(r.keep_alive);
        assert_string_equal(hs_header(&r, "Content-Type"), "application/geo+json");
        json_t *doc = json_loads(r.body, 0, NULL);
        assert_non_null(doc);
        assert_int_equal(json_integer_value(json_object_get(doc, "count")), i + 1);
        json_decref(doc);
        hs_response_free(&r);
    }
    conn_free(c);
}

static void test_pipelined_requests_are_answered_in_order(void **state) {
    (void)state;
    struct conn *c = conn_open();
    conn_send(c, "GET /v1/facilities/ec-095 HTTP/1.1\r\nHost: t\r\n\r\n"
                 "HEAD /v1/areas?kind=street HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /v1/facilities/nope HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /v1/facilities/mp-016 HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n"
                 "\r\n"
                 "OPTIONS /v1/nearest HTTP/1.1\r\nHost: t\r\n\r\n");
    struct hs_response r;
    conn_read(c, false, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"id\":\"ec-095\""));
    hs_response_free(&r);
    conn_read(c, true, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_true(strtoul(hs_header(&r, "Content-Length"), NULL, 10) > 1000);
    hs_response_free(&r);
    conn_read(c, false, &r);
    assert_int_equal(r.status, 404);
    hs_response_free(&r);
    conn_read(c, false, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hs_header(&r, "Content-Type"), "application/json");
    assert_non_null(strstr(r.body, "\"id\":\"mp-016\""));
    hs_response_free(&r);
    conn_read(c, false, &r);
    assert_int_equal(r.status, 204);
    hs_response_free(&r);
    /* The connection is still open for more. */
    conn_send(c, "GET /v1/categories HTTP/1.1\r\nHost: t\r\n\r\n");
    conn_read(c, false, &r);
    assert_int_equal(r.status, 200);
    hs_response_free(&r);
    conn_free(c);
}

static void test_connection_close_is_honoured(void **state) {
    (void)state;
    struct conn *c = conn_open();
    /* A request after the one with Connection: close is never answered. */
    conn_send(c, "GET /v1/categories HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                 "GET /v1/categories HTTP/1.1\r\nHost: t\r\n\r\n");
    struct hs_response r;
    conn_read(c, false, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hs_header(&r, "Connection"), "close");
    assert_false(r.keep_alive);
    hs_response_free(&r);
    assert_true(conn_closed_by_peer(c));
    conn_free(c);
}

/* Asserts status and JSON error code of a raw request's first response, and
 * whether the daemon then closes the connection. */
static void assert_raw_error(const char *raw, size_t raw_len, int status, const char *code,
                             bool closes) {
    struct conn *c = conn_open();
    its_send_all(c->fd, raw, raw_len);
    struct hs_response r;
    conn_read(c, false, &r);
    assert_int_equal(r.status, status);
    assert_string_equal(hs_header(&r, "Content-Type"), "application/json");
    json_t *doc = json_loads(r.body, 0, NULL);
    assert_non_null(doc);
    assert_true(json_is_false(json_object_get(doc, "ok")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "error"),
                                                          "code")),
                        code);
    json_decref(doc);
    if (status == 405) {
        assert_string_equal(hs_header(&r, "Allow"), "GET, HEAD, OPTIONS");
    }
    hs_response_free(&r);
    if (closes) {
        assert_true(conn_closed_by_peer(c));
    } else {
        conn_send(c, "GET /v1/categories HTTP/1.1\r\nHost: t\r\n\r\n");
        conn_read(c, false, &r);
        assert_int_equal(r.status, 200);
        hs_response_free(&r);
    }
    conn_free(c);
}

static void test_errors_have_their_status_and_json_code(void **state) {
    (void)state;
    const char *not_found = "GET /v2/nearest HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_raw_error(not_found, strlen(not_found), 404, "NOTFOUND", false);
    const char *no_id = "GET /v1/facilities/zz-999 HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_raw_error(no_id, strlen(no_id), 404, "NOTFOUND", false);
    const char *post = "DELETE /v1/facilities/ec-095 HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_raw_error(post, strlen(post), 405, "DENIED", false);
    const char *range = "GET /v1/nearest?category=school&lat=91&lon=120.4 HTTP/1.1\r\n"
                        "Host: t\r\n\r\n";
    assert_raw_error(range, strlen(range), 400, "RANGE", false);
    const char *garbage = "NEAREST school 36.16 120.41\r\n\r\n";
    assert_raw_error(garbage, strlen(garbage), 400, "SYNTAX", true);
    const char *body = "POST /v1/nearest HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    assert_raw_error(body, strlen(body), 413, "LIMIT", true);
    /* A URL over the limit: 413 and closed. */
    size_t n = 20000;
    char *big = malloc(n + 64);
    assert_non_null(big);
    size_t len = (size_t)sprintf(big, "GET /v1/nearest?category=");
    memset(big + len, 'x', n);
    len += n;
    len += (size_t)sprintf(big + len, " HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_raw_error(big, len, 413, "LIMIT", true);
    free(big);
}

/* 100 pipelined requests whose answers (7.5 MB) pass the 512 KiB of unsent
 * responses at which the daemon stops reading a client: once the client
 * reads, every answer arrives, in order. */
static void test_a_slow_reader_gets_every_pipelined_answer_in_order(void **state) {
    (void)state;
    struct conn *c = conn_open();
    size_t cap = 100 * 64, len = 0;
    char *reqs = malloc(cap);
    assert_non_null(reqs);
    for (int i = 0; i < 100; i++) {
        len += (size_t)snprintf(reqs + len, cap - len, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n",
                                i % 2 ? "/v1/facilities/ec-095" : "/v1/areas");
    }
    its_send_all(c->fd, reqs, len);
    free(reqs);
    usleep(300000); /* the daemon fills the socket buffers and pauses */
    for (int i = 0; i < 100; i++) {
        struct hs_response r;
        conn_read(c, false, &r);
        assert_int_equal(r.status, 200);
        if (i % 2) {
            assert_non_null(strstr(r.body, "\"id\":\"ec-095\""));
        } else {
            assert_true(r.body_len > 100000);
        }
        hs_response_free(&r);
    }
    conn_free(c);
}

static void test_options_is_a_cors_preflight(void **state) {
    (void)state;
    struct conn *c = conn_open();
    conn_send(c, "OPTIONS /v1/nearest?category=school HTTP/1.1\r\nHost: t\r\n"
                 "Origin: http://example.org\r\nAccess-Control-Request-Method: GET\r\n"
                 "Access-Control-Request-Headers: accept\r\n\r\n");
    struct hs_response r;
    conn_read(c, false, &r);
    assert_int_equal(r.status, 204);
    assert_string_equal(hs_header(&r, "Access-Control-Allow-Methods"), "GET, HEAD, OPTIONS");
    assert_non_null(strstr(hs_header(&r, "Access-Control-Allow-Headers"), "Accept"));
    hs_response_free(&r);
    conn_free(c);
}

static void test_root_serves_the_map_page(void **state) {
    (void)state;
    FILE *f = fopen(NEARESTD_WEB_PAGE, "rb");
    assert_non_null(f);
    static char page[1 << 22];
    size_t n = fread(page, 1, sizeof page, f);
    fclose(f);
    struct hs_response r;
    http_get("/", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hs_header(&r, "Content-Type"), "text/html; charset=utf-8");
    assert_int_equal(r.body_len, n);
    assert_memory_equal(r.body, page, n);
    hs_response_free(&r);
}

/* Reads a GeoJSON geometry with GEOS; the caller destroys it. */
static GEOSGeometry *read_geometry(GEOSContextHandle_t ctx, json_t *geometry) {
    char *text = json_dumps(geometry, JSON_COMPACT);
    assert_non_null(text);
    GEOSGeoJSONReader *reader = GEOSGeoJSONReader_create_r(ctx);
    GEOSGeometry *g = GEOSGeoJSONReader_readGeometry_r(ctx, reader, text);
    GEOSGeoJSONReader_destroy_r(ctx, reader);
    free(text);
    assert_non_null(g);
    return g;
}

static void test_street_polygons_are_valid_and_hold_their_communities(void **state) {
    (void)state;
    struct hs_response streets, communities;
    http_get("/v1/areas?kind=street", NULL, &streets);
    http_get("/v1/areas?kind=community", NULL, &communities);
    assert_int_equal(streets.status, 200);
    assert_string_equal(hs_header(&streets, "Content-Type"), "application/geo+json");
    json_t *sdoc = json_loads(streets.body, 0, NULL);
    json_t *cdoc = json_loads(communities.body, 0, NULL);
    assert_non_null(sdoc);
    assert_non_null(cdoc);
    assert_string_equal(json_string_value(json_object_get(sdoc, "type")), "FeatureCollection");
    json_t *sfeat = json_object_get(sdoc, "features");
    json_t *cfeat = json_object_get(cdoc, "features");
    assert_int_equal(json_array_size(sfeat), 11);
    assert_true(json_array_size(cfeat) > 100);
    GEOSContextHandle_t ctx = GEOS_init_r();
    GEOSGeometry *street_geom[11];
    for (size_t i = 0; i < 11; i++) {
        json_t *f = json_array_get(sfeat, i);
        json_t *props = json_object_get(f, "properties");
        assert_string_equal(json_string_value(json_object_get(props, "kind")), "street");
        assert_string_equal(json_string_value(json_object_get(props, "parent")), "district");
        const char *type = json_string_value(json_object_get(json_object_get(f, "geometry"),
                                                             "type"));
        assert_true(strcmp(type, "Polygon") == 0 || strcmp(type, "MultiPolygon") == 0);
        street_geom[i] = read_geometry(ctx, json_object_get(f, "geometry"));
        assert_int_equal(GEOSisEmpty_r(ctx, street_geom[i]), 0);
        assert_int_equal(GEOSisValid_r(ctx, street_geom[i]), 1);
    }
    /* Every community's interior point lies in the street that is its parent. */
    size_t checked = 0;
    for (size_t j = 0; j < json_array_size(cfeat); j++) {
        json_t *f = json_array_get(cfeat, j);
        const char *parent = json_string_value(
            json_object_get(json_object_get(f, "properties"), "parent"));
        GEOSGeometry *g = read_geometry(ctx, json_object_get(f, "geometry"));
        GEOSGeometry *inside = GEOSPointOnSurface_r(ctx, g);
        assert_non_null(inside);
        for (size_t i = 0; i < 11; i++) {
            json_t *props = json_object_get(json_array_get(sfeat, i), "properties");
            if (strcmp(json_string_value(json_object_get(props, "id")), parent) == 0) {
                if (GEOSCovers_r(ctx, street_geom[i], inside) != 1) {
                    fail_msg("community %s is not inside its street %s",
                             json_string_value(json_object_get(
                                 json_object_get(f, "properties"), "id")), parent);
                }
                checked++;
            }
        }
        GEOSGeom_destroy_r(ctx, inside);
        GEOSGeom_destroy_r(ctx, g);
    }
    assert_int_equal(checked, json_array_size(cfeat));
    for (size_t i = 0; i < 11; i++) {
        GEOSGeom_destroy_r(ctx, street_geom[i]);
    }
    GEOS_finish_r(ctx);
    json_decref(sdoc);
    json_decref(cdoc);
    hs_response_free(&streets);
    hs_response_free(&communities);
}

static void test_answers_equal_the_line_protocols(void **state) {
    (void)state;
    static const char *const pairs[][3] = {
        {"/v1/areas?kind=street", NULL, "AREAS street"},
        {"/v1/nearest?category=elder_care&lat=36.1602&lon=120.4105&k=3&where=stars%3E=4", NULL,
         "NEAREST elder_care 36.1602 120.4105 K 3 WHERE stars >= 4"},
        {"/v1/radius?category=*&lat=36.16&lon=120.41&r=800&crs=bd09", "application/json",
         "RADIUS * 36.16 120.41 800 CRS bd09"},
        {"/v1/serves?lat=36.1602&lon=120.4105", NULL, "SERVES 36.1602 120.4105"},
        {"/v1/inarea?category=meal_point&area=st-hushan", NULL, "INAREA meal_point st-hushan"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        struct hs_response r;
        http_get(pairs[i][0], pairs[i][1], &r);
        char *want = line_answer(pairs[i][1] ? "json" : "geojson", pairs[i][2]);
        if (strcmp(r.body, want) != 0) {
            fail_msg("%s\n  http: %.200s\n  line: %.200s", pairs[i][0], r.body, want);
        }
        free(want);
        hs_response_free(&r);
    }
}

/* A write on the line port is seen over HTTP at once (one catalogue), and
 * after SIGHUP swaps in a catalogue rebuilt from the database, HTTP answers
 * from the new one (under ASan, reading the freed old one would fail here). */
static void test_http_sees_writes_and_the_reloaded_catalogue(void **state) {
    (void)state;
    char *put = line_answer("json", "PUT zz-http parking 36.16 120.41 name=HTTP-Test");
    assert_non_null(strstr(put, "zz-http"));
    free(put);
    struct hs_response r;
    http_get("/v1/facilities/zz-http", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "HTTP-Test"));
    hs_response_free(&r);
    char log_path[320];
    snprintf(log_path, sizeof log_path, "%s/n.db.log", dir);
    assert_int_equal(kill(daemon_pid, SIGHUP), 0);
    int64_t start = now_ms();
    for (;;) {
        char *text = its_read_file(log_path);
        bool reloaded = strstr(text, "nearestd: reloaded ") != NULL;
        free(text);
        if (reloaded) {
            break;
        }
        assert_true(now_ms() - start < WAIT_MS);
        usleep(10000);
    }
    http_get("/v1/facilities/zz-http", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "HTTP-Test"));
    hs_response_free(&r);
    http_get("/v1/areas?kind=street", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"count\":11"));
    hs_response_free(&r);
}

/* With --max-connections 2 and --idle-timeout-ms 300: once two HTTP
 * connections are being served, a third gets a 503 and is closed; idle ones
 * are closed by the sweep. */
static void test_connection_cap_and_idle_timeout(void **state) {
    (void)state;
    const char *const flags[] = {"--max-connections", "2", "--idle-timeout-ms", "300", NULL};
    int line = 0, http = 0;
    other_pid = launch("cap.db", flags, &line, &http);
    assert_true(other_pid > 0);
    /* Open connections until two of them are served (a 503 at the cap would
     * mean another client still counted). */
    struct conn *served[2];
    struct hs_response r;
    for (int n = 0, tries = 0; n < 2; tries++) {
        assert_true(tries < 100);
        struct conn *c = conn_open_port(http);
        conn_send(c, "GET /v1/categories HTTP/1.1\r\nHost: t\r\n\r\n");
        conn_read(c, false, &r);
        if (r.status == 200) {
            served[n++] = c;
        } else {
            assert_int_equal(r.status, 503);
            conn_free(c);
            usleep(20000);
        }
        hs_response_free(&r);
    }
    struct conn *c = conn_open_port(http);
    conn_read(c, false, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"LIMIT\""));
    hs_response_free(&r);
    assert_true(conn_closed_by_peer(c));
    conn_free(c);
    /* Left idle, both are closed within the timeout plus a sweep period. */
    int64_t start = now_ms();
    assert_true(conn_closed_by_peer(served[0]));
    assert_true(conn_closed_by_peer(served[1]));
    assert_true(now_ms() - start < WAIT_MS);
    conn_free(served[0]);
    conn_free(served[1]);
    /* Then a new connection is served again. */
    c = conn_open_port(http);
    conn_send(c, "GET /v1/categories HTTP/1.1\r\nHost: t\r\n\r\n");
    conn_read(c, false, &r);
    assert_int_equal(r.status, 200);
    hs_response_free(&r);
    conn_free(c);
    kill(other_pid, SIGTERM);
    int status = 0;
    waitpid(other_pid, &status, 0);
    other_pid = -1;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    (void)line;
}

/* Runs nearestd with `http_arg` for --http on a fresh database path and
 * returns its exit status (it must exit within the wait). */
static int exit_status_with_http(const char *http_arg) {
    char db[320], listen[64];
    snprintf(db, sizeof db, "%s/other.db", dir);
    snprintf(listen, sizeof listen, "127.0.0.1:0");
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null < 0 || dup2(null, 2) < 0) {
            _exit(126);
        }
        execl(NEARESTD_BIN, NEARESTD_BIN, "--db", db, "--init", "--dataset",
              NEARESTD_DATASET_DIR, "--listen", listen, "--http", http_arg, (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    int status = 0;
    for (int64_t start = now_ms(); waitpid(pid, &status, WNOHANG) != pid;) {
        if (now_ms() - start > 3 * WAIT_MS) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("nearestd --http %s did not exit", http_arg);
        }
        usleep(10000);
    }
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_bad_or_busy_http_address_stops_start_up(void **state) {
    (void)state;
    assert_int_equal(exit_status_with_http("127.0.0.1"), 2);
    assert_int_equal(exit_status_with_http("localhost:80800"), 2);
    assert_int_equal(exit_status_with_http("nohost:8080"), 1);
    char busy[64];
    snprintf(busy, sizeof busy, "127.0.0.1:%d", http_port); /* the running daemon's */
    assert_int_equal(exit_status_with_http(busy), 1);
}

/* Last: SIGTERM stops the daemon with an HTTP connection open; it exits 0. */
static void test_sigterm_stops_http_with_the_line_server(void **state) {
    (void)state;
    struct conn *c = conn_open();
    conn_send(c, "GET /v1/categories HTTP/1.1\r\nHost: t\r\n\r\n");
    struct hs_response r;
    conn_read(c, false, &r);
    hs_response_free(&r);
    /* A client with megabytes of responses waiting: they are sent whole
     * before its connection closes (the drain), never cut mid-response. */
    struct conn *busy = calloc(1, sizeof *busy);
    assert_non_null(busy);
    busy->fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 65536; /* so that the kernel cannot take every response at once */
    setsockopt(busy->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(busy->fd, (struct sockaddr *)&a, sizeof a), 0);
    for (int i = 0; i < 100; i++) {
        conn_send(busy, "GET /v1/areas HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    usleep(300000);
    assert_int_equal(kill(daemon_pid, SIGTERM), 0);
    int whole = 0;
    for (;;) {
        long used = hs_parse(busy->buf, busy->len, false, &r);
        assert_true(used >= 0);
        if (used > 0) {
            assert_int_equal(r.status, 200);
            hs_response_free(&r);
            memmove(busy->buf, busy->buf + used, busy->len - (size_t)used);
            busy->len -= (size_t)used;
            whole++;
        } else if (!conn_fill(busy)) {
            break;
        }
    }
    printf("# %d whole responses before the close\n", whole);
    assert_int_equal(busy->len, 0); /* nothing cut short */
    assert_true(whole >= 1);
    conn_free(busy);
    int status = 0;
    int64_t start = now_ms();
    while (waitpid(daemon_pid, &status, WNOHANG) != daemon_pid) {
        assert_true(now_ms() - start < WAIT_MS);
        usleep(10000);
    }
    daemon_pid = -1;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(conn_closed_by_peer(c));
    conn_free(c);
    assert_int_equal(dial(http_port), -1);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_alive_serves_several_requests_on_one_connection),
        cmocka_unit_test(test_pipelined_requests_are_answered_in_order),
        cmocka_unit_test(test_connection_close_is_honoured),
        cmocka_unit_test(test_errors_have_their_status_and_json_code),
        cmocka_unit_test(test_a_slow_reader_gets_every_pipelined_answer_in_order),
        cmocka_unit_test(test_options_is_a_cors_preflight),
        cmocka_unit_test(test_root_serves_the_map_page),
        cmocka_unit_test(test_street_polygons_are_valid_and_hold_their_communities),
        cmocka_unit_test(test_answers_equal_the_line_protocols),
        cmocka_unit_test(test_http_sees_writes_and_the_reloaded_catalogue),
        cmocka_unit_test(test_connection_cap_and_idle_timeout),
        cmocka_unit_test(test_bad_or_busy_http_address_stops_start_up),
        cmocka_unit_test(test_sigterm_stops_http_with_the_line_server),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
