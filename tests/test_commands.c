/* test_commands.c: the command layer (daemon/cmd.h) without sockets.
 *
 * A group setup writes a random dataset of facilities around Licang as
 * GeoJSON, creates a real SpatiaLite database from it with store_create(),
 * and loads the catalogue from that database, as the daemon does. Request
 * lines then go through cmd_execute() and the exact bytes of each answer are
 * compared with what a brute-force scan over the same facilities, formatted
 * by this file's own printf, says they must be. Every ERR path is asserted
 * with its exact line; the JSON formats are parsed back and checked field by
 * field. The error table and the command list of PROTOCOL.md
 * are checked against errors.def and commands.def. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "catalog.h"
#include "catalog_fixture.h"
#include "cmd.h"
#include "geo_crs.h"
#include "geo_distance.h"
#include "hours.h"
#include "reply.h"
#include "store.h"
#include "test_rng.h"

#define USAGE_NEAREST                                                                     \
    "NEAREST <category|*> <lat> <lon> [K <n>] [MAXDIST <metres>] [WHERE <field> <op> "    \
    "<value>]... [OPEN now|<YYYY-MM-DDTHH:MM>] [CRS wgs84|gcj02|bd09]"
#define USAGE_RADIUS                                                                      \
    "RADIUS <category|*> <lat> <lon> <metres> [LIMIT <n>] [WHERE <field> <op> <value>]... " \
    "[OPEN now|<YYYY-MM-DDTHH:MM>] [CRS wgs84|gcj02|bd09]"

#define N_FACILITIES 400

struct fac {
    char id[16];
    int category;
    char name[64];
    struct geo_point where;
    char subtype[16];
    const char *hours;               /* opening hours, static text */
    json_t *attrs;                   /* the category attributes; owned */
};

struct fixture {
    char dir[256];
    char db[300];
    struct fac facs[N_FACILITIES];   /* sorted by id, which is slot order */
    struct store *store;
    struct catalog *catalog;
    struct cmd_stats stats;
    struct cmd_env env;
    struct cmd_session session;
    struct reply out;
};

static struct fixture *fx;

/* ---- Fixture ---------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void) {
    return test_rng_xorshift64(&rng_state);
}

/* Uniform in [lo, hi], on the microdegree grid so that text round-trips. */
static double rng_deg(double lo, double hi) {
    return test_rng_microdeg(rng_next(), lo, hi);
}

static const char *const hours_pool[] = {
    "", "24/7", "Mo-Fr 08:00-17:00", "Mo-Sa 07:30-11:30,13:30-17:00", "Sa,Su 09:00-21:00",
    "22:00-02:00",
};
#define N_HOURS (sizeof hours_pool / sizeof hours_pool[0])

static const char *pick(const char *const *pool, size_t n) {
    return pool[rng_next() % n];
}

/* Random category attributes of the kinds the Licang data has; each one is
 * absent one time in eight, so WHERE meets facilities without the field. */
static json_t *random_attrs(int category, char *subtype, size_t subtype_len) {
    static const char *const levels[] = {"kindergarten", "primary", "middle", "nine_year"};
    static const char *const stations[] = {"东站", "西站", "南站"};
    static const char *const prices[] = {"5", "7.5", "10", "12.5"};
    json_t *a = json_object();
    bool has[4];
    for (int i = 0; i < 4; i++) {
        has[i] = rng_next() % 8 != 0;
    }
    const char *sub = "";
    switch (category) {
    case STORE_CAT_ELDER_CARE:
        sub = rng_next() % 2 ? "institution" : "community";
        if (has[0]) json_object_set_new(a, "stars", json_integer(1 + (int)(rng_next() % 5)));
        if (has[1]) json_object_set_new(a, "beds", json_integer((int)(rng_next() % 300)));
        if (has[2]) json_object_set_new(a, "dementia", json_boolean(rng_next() % 2));
        break;
    case STORE_CAT_MEAL_POINT:
        sub = "canteen";
        if (has[0]) json_object_set_new(a, "price_60", json_real(atof(pick(prices, 4))));
        if (has[1]) json_object_set_new(a, "delivery", json_boolean(rng_next() % 2));
        if (has[2] && rng_next() % 2) {
            json_object_set_new(a, "meal_hours", json_string(pick(hours_pool + 1, N_HOURS - 1)));
        }
        break;
    case STORE_CAT_DOCTOR_TEAM:
        sub = "family_doctor";
        if (has[0]) json_object_set_new(a, "team_size", json_integer(1 + (int)(rng_next() % 9)));
        if (has[1]) json_object_set_new(a, "station", json_string(pick(stations, 3)));
        if (has[2]) {
            json_t *serves = json_array();
            for (int j = 0, n = 1 + (int)(rng_next() % 3); j < n; j++) {
                char id[16];
                snprintf(id, sizeof id, "cm-%d", 1 + (int)(rng_next() % 6));
                json_array_append_new(serves, json_string(id));
            }
            json_object_set_new(a, "serves", serves);
        }
        break;
    case STORE_CAT_SCHOOL:
        sub = rng_next() % 2 ? "primary" : "kindergarten";
        if (has[0]) json_object_set_new(a, "level", json_string(pick(levels, 4)));
        if (has[1]) {
            json_object_set_new(a, "ownership",
                                json_string(rng_next() % 2 ? "public" : "private"));
        }
        if (has[2]) {
            json_object_set_new(a, "catchment", json_string(rng_next() % 2 ? "ca-1" : "ca-2"));
        }
        break;
    default:
        sub = rng_next() % 2 ? "public" : "shared";
        if (has[0]) json_object_set_new(a, "capacity", json_integer(50 + (int)(rng_next() % 400)));
        if (has[1]) json_object_set_new(a, "free", json_integer((int)(rng_next() % 50)));
        if (has[2]) json_object_set_new(a, "price", json_real(atof(pick(prices, 4))));
        if (has[3] && strcmp(sub, "shared") == 0) {
            json_object_set_new(a, "shared_hours", json_string(pick(hours_pool + 1, N_HOURS - 1)));
        }
        break;
    }
    snprintf(subtype, subtype_len, "%s", rng_next() % 8 ? sub : "");
    return a;
}

/* The fixture's areas, in id order (which is their handle order). Edges lie
 * half a microdegree off the grid the facilities stand on, so no facility is
 * on a boundary. The triangle ca-1 is the one area that is not a box. */
struct test_area {
    const char *id, *kind, *name, *parent;
    size_t n;                      /* vertices */
    double lat[4], lon[4];
};

#define E 0.0000005
static const struct test_area test_areas[] = {
    {"ca-1", "catchment", "三角学区", "d-1", 3, {36.14, 36.24, 36.19}, {120.36, 120.36, 120.48}},
    {"ca-2", "catchment", "方学区", "d-1", 4, {36.15, 36.15, 36.22 + E, 36.22 + E},
     {120.40, 120.47 + E, 120.47 + E, 120.40}},
    {"cm-1", "community", "一社区", "st-w", 4, {36.12, 36.12, 36.19 + E, 36.19 + E},
     {120.33, 120.39 + E, 120.39 + E, 120.33}},
    {"cm-2", "community", "二社区", "st-w", 4, {36.12, 36.12, 36.19 + E, 36.19 + E},
     {120.39 + E, 120.45 + E, 120.45 + E, 120.39 + E}},
    {"cm-3", "community", "三社区", "st-e", 4, {36.12, 36.12, 36.19 + E, 36.19 + E},
     {120.45 + E, 120.51, 120.51, 120.45 + E}},
    {"cm-4", "community", "四社区", "st-w", 4, {36.19 + E, 36.19 + E, 36.26, 36.26},
     {120.33, 120.39 + E, 120.39 + E, 120.33}},
    {"cm-5", "community", "五社区", "st-w", 4, {36.19 + E, 36.19 + E, 36.26, 36.26},
     {120.39 + E, 120.45 + E, 120.45 + E, 120.39 + E}},
    {"cm-6", "community", "六社区", "st-e", 4, {36.19 + E, 36.19 + E, 36.26, 36.26},
     {120.45 + E, 120.51, 120.51, 120.45 + E}},
    {"d-1", "district", "区", NULL, 4, {36.12, 36.12, 36.26, 36.26},
     {120.33, 120.51, 120.51, 120.33}},
    {"st-e", "street", "东街道", "d-1", 4, {36.12, 36.12, 36.26, 36.26},
     {120.42 + E, 120.51, 120.51, 120.42 + E}},
    {"st-w", "street", "西街道", "d-1", 4, {36.12, 36.12, 36.26, 36.26},
     {120.33, 120.42 + E, 120.42 + E, 120.33}},
};
#undef E
#define N_AREAS (sizeof test_areas / sizeof test_areas[0])

/* Point in a convex polygon, by the sign of cross products (the oracle of
 * geo_areas_contains for these shapes; no facility is on an edge). */
static bool test_area_contains(const struct test_area *a, struct geo_point p) {
    int pos = 0, neg = 0;
    for (size_t i = 0; i < a->n; i++) {
        size_t j = (i + 1) % a->n;
        double cross = (a->lon[j] - a->lon[i]) * (p.lat_deg - a->lat[i]) -
                       (a->lat[j] - a->lat[i]) * (p.lon_deg - a->lon[i]);
        pos += cross > 0;
        neg += cross < 0;
    }
    return pos == 0 || neg == 0;
}

static void write_dataset(const char *dir, const struct fac *facs, size_t n) {
    json_t *features = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *props = json_deep_copy(facs[i].attrs);
        json_object_set_new(props, "id", json_string(facs[i].id));
        json_object_set_new(props, "category",
                            json_string(store_category_name(facs[i].category)));
        json_object_set_new(props, "name", json_string(facs[i].name));
        json_object_set_new(props, "subtype", json_string(facs[i].subtype));
        json_object_set_new(props, "opening_hours", json_string(facs[i].hours));
        json_t *feat = json_pack("{s:s, s:o, s:{s:s, s:[f, f]}}", "type", "Feature",
                                 "properties", props, "geometry", "type", "Point",
                                 "coordinates", facs[i].where.lon_deg, facs[i].where.lat_deg);
        assert_non_null(feat);
        json_array_append_new(features, feat);
    }
    json_t *fc = json_pack("{s:s, s:o}", "type", "FeatureCollection", "features", features);
    char path[512];
    snprintf(path, sizeof path, "%s/facilities.geojson", dir);
    assert_int_equal(json_dump_file(fc, path, JSON_REAL_PRECISION(17)), 0);
    json_decref(fc);
    snprintf(path, sizeof path, "%s/areas.geojson", dir);
    json_t *areas = json_array();
    for (size_t i = 0; i < N_AREAS; i++) {
        json_t *ring = json_array();
        for (size_t v = 0; v <= test_areas[i].n; v++) {
            size_t w = v % test_areas[i].n; /* closed ring */
            json_array_append_new(ring, json_pack("[f, f]", test_areas[i].lon[w],
                                                  test_areas[i].lat[w]));
        }
        json_t *feat = json_pack("{s:s, s:{s:s, s:s, s:s, s:s*}, s:{s:s, s:[o]}}", "type",
                                 "Feature", "properties", "id", test_areas[i].id, "kind",
                                 test_areas[i].kind, "name", test_areas[i].name, "parent",
                                 test_areas[i].parent, "geometry", "type", "Polygon",
                                 "coordinates", ring);
        assert_non_null(feat);
        json_array_append_new(areas, feat);
    }
    json_t *afc = json_pack("{s:s, s:o}", "type", "FeatureCollection", "features", areas);
    assert_int_equal(json_dump_file(afc, path, JSON_REAL_PRECISION(17)), 0);
    json_decref(afc);
}

static int group_setup(void **state) {
    (void)state;
    fx = calloc(1, sizeof *fx);
    if (!fx) {
        return -1;
    }
    snprintf(fx->dir, sizeof fx->dir, "/tmp/test_commands-XXXXXX");
    if (!mkdtemp(fx->dir)) {
        return -1;
    }
    for (int i = 0; i < N_FACILITIES; i++) {
        struct fac *f = &fx->facs[i];
        snprintf(f->id, sizeof f->id, "f-%04d", i);
        f->category = (int)(rng_next() % STORE_CAT_COUNT);
        /* A few names carry a tab or a newline, which replies must flatten. */
        snprintf(f->name, sizeof f->name, i % 50 == 7 ? "设施\t%d\n号" : "设施 %d 号", i);
        f->where = (struct geo_point){rng_deg(36.13, 36.25), rng_deg(120.34, 120.50)};
        f->hours = pick(hours_pool, N_HOURS);
        f->attrs = random_attrs(f->category, f->subtype, sizeof f->subtype);
    }
    write_dataset(fx->dir, fx->facs, N_FACILITIES);
    snprintf(fx->db, sizeof fx->db, "%s/x.db", fx->dir);
    char err[600] = "";
    if (fixture_catalog_open(fx->db, fx->dir, &fx->store, &fx->catalog, err, sizeof err) != 0) {
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
    char path[512];
    const char *files[] = {"x.db", "x.db-wal", "x.db-shm", "facilities.geojson",
                           "areas.geojson"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", fx->dir, files[i]);
        unlink(path);
    }
    rmdir(fx->dir);
    for (int i = 0; i < N_FACILITIES; i++) {
        json_decref(fx->facs[i].attrs);
    }
    free(fx);
    return 0;
}

static int test_setup(void **state) {
    (void)state;
    cmd_session_init(&fx->session);
    reply_init(&fx->out);
    return 0;
}

static int test_teardown(void **state) {
    (void)state;
    reply_close(&fx->out);
    return 0;
}

/* Runs one request line and returns the answer (owned by the caller). */
static char *run(const char *request) {
    char line[8192];
    snprintf(line, sizeof line, "%s", request);
    cmd_execute(&fx->env, &fx->session, line, strlen(line), &fx->out);
    assert_false(reply_failed(&fx->out));
    size_t len = 0;
    char *got = reply_take(&fx->out, &len);
    if (!got) {
        got = strdup("");
    }
    return got;
}

static void expect(const char *request, const char *want) {
    char *got = run(request);
    if (strcmp(got, want) != 0) {
        fail_msg("request \"%s\"\n got: \"%s\"\nwant: \"%s\"", request, got, want);
    }
    free(got);
}

/* ---- The brute-force oracle --------------------------------------------------- */

struct cand {
    size_t index;
    double distance_m;
};

static int cand_cmp(const void *a_, const void *b_) {
    const struct cand *a = a_, *b = b_;
    if (a->distance_m != b->distance_m) {
        return a->distance_m < b->distance_m ? -1 : 1;
    }
    return a->index < b->index ? -1 : a->index > b->index;
}

/* A string builder for expected answers. */
struct sb {
    char *s;
    size_t len, cap;
};

static void sb_printf(struct sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        assert_non_null(b->s);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void flatten(char *dst, const char *src) {
    for (; *src; src++) {
        *dst++ = (*src == '\t' || *src == '\n' || *src == '\r') ? ' ' : *src;
    }
    *dst = '\0';
}

/* The "\tkey=value" fields of a JSON object of attributes, in its order. */
static void sb_attrs(struct sb *b, json_t *attrs) {
    const char *key;
    json_t *v;
    json_object_foreach(attrs, key, v) {
        sb_printf(b, "\t%s=", key);
        if (json_is_integer(v)) {
            sb_printf(b, "%lld", (long long)json_integer_value(v));
        } else if (json_is_real(v)) {
            sb_printf(b, "%.15g", json_real_value(v));
        } else if (json_is_boolean(v)) {
            sb_printf(b, "%s", json_is_true(v) ? "true" : "false");
        } else if (json_is_string(v)) {
            sb_printf(b, "%s", json_string_value(v));
        } else {
            for (size_t i = 0; i < json_array_size(v); i++) {
                sb_printf(b, "%s%s", i ? ";" : "", json_string_value(json_array_get(v, i)));
            }
        }
    }
}

static void sb_record(struct sb *b, const struct fac *f, struct geo_point shown,
                      double distance_m) {
    char name[64];
    flatten(name, f->name);
    sb_printf(b, "%s\t%s\t%s\t%.6f\t%.6f\t", f->id, store_category_name(f->category), name,
              shown.lat_deg, shown.lon_deg);
    if (isnan(distance_m)) {
        sb_printf(b, "-");
    } else {
        sb_printf(b, "%.1f", distance_m);
    }
    sb_attrs(b, f->attrs);
    sb_printf(b, "\n");
}

typedef bool (*keep_fn)(const struct fac *f, void *ctx);

static void expect_write(const char *request, const char *want);

/* The expected answer to a NEAREST/RADIUS of the facilities `keep` accepts
 * (all when NULL): category -1 is "*". */
static char *brute_force_if(int category, struct geo_point from, size_t k, double max_m,
                            keep_fn keep, void *ctx) {
    struct cand cands[N_FACILITIES];
    size_t n = 0;
    for (size_t i = 0; i < N_FACILITIES; i++) {
        if (category >= 0 && fx->facs[i].category != category) {
            continue;
        }
        if (keep && !keep(&fx->facs[i], ctx)) {
            continue;
        }
        double d = geo_distance_m(from, fx->facs[i].where);
        if (d <= max_m) {
            cands[n++] = (struct cand){i, d};
        }
    }
    qsort(cands, n, sizeof cands[0], cand_cmp);
    if (n > k) {
        n = k;
    }
    struct sb b = {0};
    sb_printf(&b, "OK %zu\n", n);
    for (size_t i = 0; i < n; i++) {
        const struct fac *f = &fx->facs[cands[i].index];
        sb_record(&b, f, f->where, cands[i].distance_m);
    }
    return b.s;
}

static char *brute_force(int category, struct geo_point from, size_t k, double max_m) {
    return brute_force_if(category, from, k, max_m, NULL, NULL);
}

static const char *category_arg(int category) {
    return category < 0 ? "*" : store_category_name(category);
}

/* ---- Queries against the oracle -------------------------------------------------- */

static void test_nearest_returns_k_closest_in_order(void **state) {
    (void)state;
    for (int round = 0; round < 300; round++) {
        int category = (int)(rng_next() % (STORE_CAT_COUNT + 1)) - 1;
        char lat[32], lon[32];
        snprintf(lat, sizeof lat, "%.6f", rng_deg(36.10, 36.28));
        snprintf(lon, sizeof lon, "%.6f", rng_deg(120.30, 120.55));
        struct geo_point from = {strtod(lat, NULL), strtod(lon, NULL)};
        size_t k = 1 + rng_next() % 120;
        char request[256];
        snprintf(request, sizeof request, "%s %s %s %s K %zu",
                 round % 2 ? "NEAREST" : "nearest", category_arg(category), lat, lon, k);
        char *want = brute_force(category, from, k, INFINITY);
        expect(request, want);
        free(want);
    }
}

static void test_nearest_without_k_returns_five(void **state) {
    (void)state;
    struct geo_point from = {36.18, 120.42};
    char *want = brute_force(STORE_CAT_SCHOOL, from, 5, INFINITY);
    expect("NEAREST school 36.18 120.42", want);
    free(want);
    want = brute_force(-1, from, 5, INFINITY);
    expect("NEAREST * 36.18 120.42", want);
    free(want);
}

static void test_nearest_maxdist_keeps_only_hits_within(void **state) {
    (void)state;
    for (int round = 0; round < 100; round++) {
        int category = (int)(rng_next() % (STORE_CAT_COUNT + 1)) - 1;
        double lat = rng_deg(36.13, 36.25), lon = rng_deg(120.34, 120.50);
        double max_m = (double)(rng_next() % 3000);
        size_t k = 1 + rng_next() % 40;
        char request[256];
        snprintf(request, sizeof request, "NEAREST %s %.6f %.6f maxdist %.0f K %zu",
                 category_arg(category), lat, lon, max_m, k);
        char *want = brute_force(category, (struct geo_point){lat, lon}, k, max_m);
        expect(request, want);
        free(want);
    }
}

static void test_radius_returns_everything_within_up_to_limit(void **state) {
    (void)state;
    for (int round = 0; round < 100; round++) {
        int category = (int)(rng_next() % (STORE_CAT_COUNT + 1)) - 1;
        double lat = rng_deg(36.13, 36.25), lon = rng_deg(120.34, 120.50);
        double max_m = (double)(rng_next() % 4000);
        char request[256];
        char *want;
        if (round % 2) {
            size_t limit = 1 + rng_next() % 30;
            snprintf(request, sizeof request, "RADIUS %s %.6f %.6f %.0f LIMIT %zu",
                     category_arg(category), lat, lon, max_m, limit);
            want = brute_force(category, (struct geo_point){lat, lon}, limit, max_m);
        } else {
            snprintf(request, sizeof request, "RADIUS %s %.6f %.6f %.0f",
                     category_arg(category), lat, lon, max_m);
            want = brute_force(category, (struct geo_point){lat, lon}, CMD_DEFAULT_LIMIT,
                               max_m);
        }
        expect(request, want);
        free(want);
    }
}

static void test_radius_zero_finds_a_facility_at_its_own_position(void **state) {
    (void)state;
    const struct fac *f = &fx->facs[123];
    char request[256];
    snprintf(request, sizeof request, "RADIUS %s %.6f %.6f 0", store_category_name(f->category),
             f->where.lat_deg, f->where.lon_deg);
    char *want = brute_force(f->category, f->where, CMD_DEFAULT_LIMIT, 0.0);
    assert_non_null(strstr(want, f->id));
    expect(request, want);
    free(want);
}

static void test_get_returns_the_record_without_distance(void **state) {
    (void)state;
    for (int i = 0; i < N_FACILITIES; i += 37) {
        const struct fac *f = &fx->facs[i];
        struct sb b = {0};
        sb_printf(&b, "OK 1\n");
        sb_record(&b, f, f->where, NAN);
        char request[64];
        snprintf(request, sizeof request, "GET %s", f->id);
        expect(request, b.s);
        free(b.s);
    }
    expect("GET f-9999", "ERR NOTFOUND no facility 'f-9999'\n");
}

static void test_records_flatten_tabs_and_newlines_in_names(void **state) {
    (void)state;
    char *got = run("GET f-0007");
    assert_non_null(strstr(got, "设施 7 号"));
    size_t tabs = 0, newlines = 0;
    for (char *p = got; *p; p++) {
        tabs += *p == '\t';
        newlines += *p == '\n';
    }
    assert_int_equal(tabs, 5 + json_object_size(fx->facs[7].attrs));
    assert_int_equal(newlines, 2);
    free(got);
}

static const char *json_kind(json_t *v) {
    return json_is_number(v)    ? "number"
           : json_is_boolean(v) ? "boolean"
           : json_is_string(v)  ? "text"
                                : "ids";
}

static void test_categories_counts_each_category_and_lists_its_attributes(void **state) {
    (void)state;
    /* A catalogue fresh from the store, so that attributes written by other
     * tests (and deleted since) do not count. */
    struct catalog *cat = catalog_new();
    char err[256];
    assert_non_null(cat);
    assert_int_equal(catalog_load(cat, fx->store, err, sizeof err), 0);
    struct cmd_env env = {.catalog = cat};
    /* Attribute names in the order the catalogue first met them: facilities by
     * id, attributes in their JSON order. */
    const char *keys[64];
    size_t n_keys = 0;
    size_t count[STORE_CAT_COUNT] = {0};
    for (int i = 0; i < N_FACILITIES; i++) {
        count[fx->facs[i].category]++;
        const char *key;
        json_t *v;
        json_object_foreach(fx->facs[i].attrs, key, v) {
            size_t k = 0;
            while (k < n_keys && strcmp(keys[k], key) != 0) {
                k++;
            }
            if (k == n_keys) {
                keys[n_keys++] = key;
            }
        }
    }
    struct sb b = {0};
    sb_printf(&b, "OK %d\n", STORE_CAT_COUNT);
    for (int c = 0; c < STORE_CAT_COUNT; c++) {
        sb_printf(&b, "%s\t%zu", store_category_name(c), count[c]);
        const char *sep = "\t";
        for (size_t k = 0; k < n_keys; k++) {
            const char *kind = NULL;
            for (int i = 0; i < N_FACILITIES && !kind; i++) {
                json_t *v = json_object_get(fx->facs[i].attrs, keys[k]);
                if (fx->facs[i].category == c && v) {
                    kind = json_kind(v); /* each fixture attribute has one kind */
                }
            }
            if (kind) {
                sb_printf(&b, "%s%s:%s", sep, keys[k], kind);
                sep = ",";
            }
        }
        sb_printf(&b, "\n");
    }
    char line[] = "CATEGORIES";
    cmd_execute(&env, &fx->session, line, strlen(line), &fx->out);
    size_t len;
    char *got = reply_take(&fx->out, &len);
    assert_non_null(got);
    assert_string_equal(got, b.s);
    assert_non_null(strstr(got, "\tstars:number,beds:number,dementia:boolean"));
    free(got);
    free(b.s);
    catalog_free(cat);
}

/* ---- WHERE and OPEN against the oracle ---------------------------------------------- */

struct tcond {
    char field[16];
    char op[4];
    char value[32];
};

struct tquery {
    struct tcond conds[3];
    size_t n_conds;
    bool open;
    int64_t open_unix;
};

static bool op_holds(const char *op, int cmp) {
    if (strcmp(op, "=") == 0) return cmp == 0;
    if (strcmp(op, "!=") == 0) return cmp != 0;
    if (strcmp(op, "<") == 0) return cmp < 0;
    if (strcmp(op, "<=") == 0) return cmp <= 0;
    if (strcmp(op, ">") == 0) return cmp > 0;
    return cmp >= 0;
}

/* PROTOCOL.md's meaning of one condition, read straight off the JSON. */
static bool oracle_cond(const struct fac *f, const struct tcond *c) {
    if (strcmp(c->field, "name") == 0 || strcmp(c->field, "subtype") == 0) {
        const char *mine = c->field[0] == 'n' ? f->name : f->subtype;
        return op_holds(c->op, strcmp(mine, c->value));
    }
    json_t *v = json_object_get(f->attrs, c->field);
    if (!v) {
        return false;
    }
    if (json_is_number(v)) {
        char *end;
        double x = strtod(c->value, &end);
        if (end == c->value || *end) {
            return false;
        }
        double a = json_number_value(v);
        return op_holds(c->op, (a > x) - (a < x));
    }
    if (json_is_boolean(v)) {
        int x = -1;
        if (strcmp(c->value, "yes") == 0 || strcmp(c->value, "true") == 0) x = 1;
        if (strcmp(c->value, "no") == 0 || strcmp(c->value, "false") == 0) x = 0;
        return x >= 0 && op_holds(c->op, (int)json_is_true(v) - x);
    }
    if (json_is_string(v)) {
        return op_holds(c->op, strcmp(json_string_value(v), c->value));
    }
    bool in = false;
    for (size_t i = 0; i < json_array_size(v); i++) {
        in |= strcmp(json_string_value(json_array_get(v, i)), c->value) == 0;
    }
    return strcmp(c->op, "=") == 0 ? in : strcmp(c->op, "!=") == 0 ? !in : false;
}

/* The timetable OPEN reads: shared_hours of a parking, meal_hours of a meal
 * point, when they have one; otherwise the opening hours. */
static bool oracle_open(const struct fac *f, int64_t unix_s) {
    const char *text = f->hours;
    const char *alt = f->category == STORE_CAT_PARKING      ? "shared_hours"
                      : f->category == STORE_CAT_MEAL_POINT ? "meal_hours"
                                                            : NULL;
    json_t *v = alt ? json_object_get(f->attrs, alt) : NULL;
    if (v && json_string_length(v) > 0) {
        text = json_string_value(v);
    }
    struct hours h;
    if (hours_parse(text, &h, NULL) != 0) {
        return false;
    }
    return hours_is_open_at(&h, unix_s, 480);
}

static bool oracle_keep(const struct fac *f, void *ctx) {
    const struct tquery *q = ctx;
    for (size_t i = 0; i < q->n_conds; i++) {
        if (!oracle_cond(f, &q->conds[i])) {
            return false;
        }
    }
    return !q->open || oracle_open(f, q->open_unix);
}

/* A random condition that is valid for `category` (-1: any). */
static void random_condition(int category, struct tcond *c) {
    static const struct {
        int category;
        const char *field;
        char kind; /* n number, b boolean, t text, i ids, s name or subtype */
    } pool[] = {
        {STORE_CAT_ELDER_CARE, "stars", 'n'},   {STORE_CAT_ELDER_CARE, "beds", 'n'},
        {STORE_CAT_ELDER_CARE, "dementia", 'b'}, {STORE_CAT_MEAL_POINT, "price_60", 'n'},
        {STORE_CAT_MEAL_POINT, "delivery", 'b'}, {STORE_CAT_DOCTOR_TEAM, "team_size", 'n'},
        {STORE_CAT_DOCTOR_TEAM, "station", 't'}, {STORE_CAT_DOCTOR_TEAM, "serves", 'i'},
        {STORE_CAT_SCHOOL, "level", 't'},       {STORE_CAT_SCHOOL, "ownership", 't'},
        {STORE_CAT_PARKING, "free", 'n'},       {STORE_CAT_PARKING, "capacity", 'n'},
        {STORE_CAT_PARKING, "price", 'n'},      {-1, "subtype", 's'},
        {-1, "name", 's'},
    };
    static const char *const ops[] = {"=", "!=", "<", "<=", ">", ">="};
    static const char *const nums[] = {"0", "1", "3", "4", "5", "7.5", "10", "25", "150", "1e3"};
    static const char *const bools[] = {"yes", "no", "true", "false", "YES"};
    static const char *const texts[] = {"primary", "middle", "nine_year", "public", "private",
                                        "东站", "西站", "shared", "canteen", "设施 2", ""};
    size_t n_pool = sizeof pool / sizeof pool[0];
    size_t i;
    do {
        i = rng_next() % n_pool;
    } while (category >= 0 && pool[i].category >= 0 && pool[i].category != category);
    snprintf(c->field, sizeof c->field, "%s", pool[i].field);
    char kind = pool[i].kind;
    bool eq_only = kind == 'b' || kind == 'i';
    snprintf(c->op, sizeof c->op, "%s", ops[rng_next() % (eq_only ? 2 : 6)]);
    if (kind == 'n') {
        snprintf(c->value, sizeof c->value, "%s", nums[rng_next() % 10]);
    } else if (kind == 'b') {
        snprintf(c->value, sizeof c->value, "%s", bools[rng_next() % 4]);
    } else if (kind == 'i') {
        snprintf(c->value, sizeof c->value, "cm-%d", 1 + (int)(rng_next() % 7));
    } else {
        snprintf(c->value, sizeof c->value, "%s", texts[rng_next() % 11]);
    }
}

static void test_where_and_open_filter_inside_the_search(void **state) {
    (void)state;
    size_t nonempty = 0;
    for (int round = 0; round < 600; round++) {
        int category = (int)(rng_next() % (STORE_CAT_COUNT + 1)) - 1;
        double lat = rng_deg(36.13, 36.25), lon = rng_deg(120.34, 120.50);
        struct tquery q = {.n_conds = rng_next() % 3};
        char request[512];
        int len = rng_next() % 2
                      ? snprintf(request, sizeof request, "NEAREST %s %.6f %.6f",
                                 category_arg(category), lat, lon)
                      : snprintf(request, sizeof request, "RADIUS %s %.6f %.6f 3000",
                                 category_arg(category), lat, lon);
        bool radius = request[0] == 'R';
        size_t k = 1 + rng_next() % 30;
        len += snprintf(request + len, sizeof request - (size_t)len, " %s %zu",
                        radius ? "LIMIT" : "K", k);
        for (size_t i = 0; i < q.n_conds; i++) {
            random_condition(category, &q.conds[i]);
            const struct tcond *c = &q.conds[i];
            len += snprintf(request + len, sizeof request - (size_t)len, " WHERE %s %s \"%s\"",
                            c->field, c->op, c->value);
        }
        if (q.n_conds == 0 || rng_next() % 3 == 0) {
            q.open = true;
            int month = 1 + (int)(rng_next() % 12), day = 1 + (int)(rng_next() % 28);
            int hour = (int)(rng_next() % 24), minute = (int)(rng_next() % 60);
            len += snprintf(request + len, sizeof request - (size_t)len,
                            " open 2026-%02d-%02dT%02d:%02d", month, day, hour, minute);
            struct tm tm = {.tm_year = 126, .tm_mon = month - 1, .tm_mday = day,
                            .tm_hour = hour, .tm_min = minute};
            q.open_unix = (int64_t)timegm(&tm) - 8 * 3600;
        }
        char *want = brute_force_if(category, (struct geo_point){lat, lon}, k,
                                    radius ? 3000.0 : INFINITY, oracle_keep, &q);
        nonempty += strncmp(want, "OK 0\n", 5) != 0;
        expect(request, want);
        free(want);
    }
    assert_true(nonempty > 200); /* the filters are not all empty answers */
}

static void test_open_now_uses_the_current_time(void **state) {
    (void)state;
    struct tquery q = {.open = true, .open_unix = (int64_t)time(NULL)};
    char *want = brute_force_if(-1, (struct geo_point){36.18, 120.42}, 50, INFINITY,
                                oracle_keep, &q);
    char *got = run("NEAREST * 36.18 120.42 K 50 OPEN now");
    if (strcmp(got, want) != 0) { /* a minute may have turned between the two */
        free(want);
        q.open_unix = (int64_t)time(NULL);
        want = brute_force_if(-1, (struct geo_point){36.18, 120.42}, 50, INFINITY,
                              oracle_keep, &q);
    }
    assert_string_equal(got, want);
    free(got);
    free(want);
}

static void test_crs_option_applies_to_one_request(void **state) {
    (void)state;
    char *per_request = run("NEAREST * 36.18 120.42 K 7 CRS gcj02 WHERE subtype != \"\"");
    expect("CRS gcj02", "OK 1\ngcj02\n");
    char *per_session = run("NEAREST * 36.18 120.42 K 7 WHERE subtype != \"\"");
    assert_string_equal(per_request, per_session);
    expect("CRS wgs84", "OK 1\nwgs84\n");
    char *plain = run("NEAREST * 36.18 120.42 K 7 WHERE subtype != \"\"");
    assert_string_not_equal(plain, per_request);
    free(per_request);
    free(per_session);
    free(plain);
}

static void test_where_errors_have_exact_lines(void **state) {
    (void)state;
    static const struct {
        const char *request;
        const char *answer;
    } cases[] = {
        {"NEAREST elder_care 36.1 120.4 WHERE colour = red",
         "ERR ARG unknown field 'colour' for elder_care (see CATEGORIES)\n"},
        {"NEAREST school 36.1 120.4 WHERE stars >= 3",
         "ERR ARG unknown field 'stars' for school (see CATEGORIES)\n"},
        {"RADIUS * 36.1 120.4 100 WHERE colour = red",
         "ERR ARG unknown field 'colour' for * (see CATEGORIES)\n"},
        {"NEAREST elder_care 36.1 120.4 WHERE stars ~ 3",
         "ERR ARG unknown operator '~' (= != < <= > >=)\n"},
        {"NEAREST elder_care 36.1 120.4 WHERE stars >= many",
         "ERR ARG stars compares with numbers, not 'many'\n"},
        {"NEAREST elder_care 36.1 120.4 WHERE dementia = maybe",
         "ERR ARG dementia is yes/no/true/false, not 'maybe'\n"},
        {"NEAREST elder_care 36.1 120.4 WHERE dementia < yes",
         "ERR ARG dementia takes only = and !=\n"},
        {"NEAREST doctor_team 36.1 120.4 WHERE serves > cm-1",
         "ERR ARG serves takes only = and !=\n"},
        {"NEAREST elder_care 36.1 120.4 WHERE stars >=",
         "ERR SYNTAX option 'WHERE' has no value (usage: " USAGE_NEAREST ")\n"},
        {"NEAREST * 36.1 120.4 WHERE name = a WHERE name = a WHERE name = a WHERE name = a "
         "WHERE name = a WHERE name = a WHERE name = a WHERE name = a WHERE name = a",
         "ERR RANGE more than 8 WHERE conditions\n"},
        {"NEAREST * 36.1 120.4 OPEN tomorrow",
         "ERR ARG OPEN 'tomorrow' is neither now nor YYYY-MM-DDTHH:MM\n"},
        {"NEAREST * 36.1 120.4 OPEN 2026-02-29T10:00",
         "ERR ARG OPEN '2026-02-29T10:00' is neither now nor YYYY-MM-DDTHH:MM\n"},
        {"NEAREST * 36.1 120.4 OPEN 2026-01-01T24:00",
         "ERR ARG OPEN '2026-01-01T24:00' is neither now nor YYYY-MM-DDTHH:MM\n"},
        {"NEAREST * 36.1 120.4 OPEN now open now", "ERR SYNTAX option OPEN given twice\n"},
        {"RADIUS * 36.1 120.4 10 CRS mars",
         "ERR UNKNOWN unknown coordinate system 'mars' (wgs84, gcj02 or bd09)\n"},
        {"RADIUS * 36.1 120.4 10 MAXDIST 5",
         "ERR SYNTAX unknown option 'MAXDIST' (usage: " USAGE_RADIUS ")\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect(cases[i].request, cases[i].answer);
    }
    /* 2028 is a leap year. */
    char *got = run("NEAREST * 36.1 120.4 OPEN 2028-02-29T10:00");
    assert_true(strncmp(got, "OK ", 3) == 0);
    free(got);
}

/* ---- Areas against the oracle ------------------------------------------------------ */

struct area_query {
    const struct test_area *area;
    const struct tquery *where;
};

static bool oracle_in_area(const struct fac *f, void *ctx) {
    const struct area_query *q = ctx;
    return test_area_contains(q->area, f->where) && oracle_keep(f, (void *)q->where);
}

static void test_inarea_returns_the_facilities_inside_nearest_the_centre(void **state) {
    (void)state;
    size_t nonempty = 0;
    size_t open_nonempty = 0;
    for (int round = 0; round < 160; round++) {
        const struct test_area *a = &test_areas[rng_next() % N_AREAS];
        int category = (int)(rng_next() % (STORE_CAT_COUNT + 1)) - 1;
        struct tquery where = {.n_conds = rng_next() % 2};
        char request[256];
        int len = snprintf(request, sizeof request, "INAREA %s %s", category_arg(category),
                           a->id);
        if (where.n_conds) {
            random_condition(category, &where.conds[0]);
            len += snprintf(request + len, sizeof request - (size_t)len, " WHERE %s %s \"%s\"",
                            where.conds[0].field, where.conds[0].op, where.conds[0].value);
        }
        if (rng_next() % 2 == 0) {
            /* OPEN: the search's value filter, the closed dropped before the
             * polygon test. */
            where.open = true;
            int day = 1 + (int)(rng_next() % 28), hour = (int)(rng_next() % 24);
            len += snprintf(request + len, sizeof request - (size_t)len,
                            " OPEN 2026-03-%02dT%02d:30", day, hour);
            struct tm tm = {.tm_year = 126, .tm_mon = 2, .tm_mday = day, .tm_hour = hour,
                            .tm_min = 30};
            where.open_unix = (int64_t)timegm(&tm) - 8 * 3600;
        }
        double min_lat = 90, max_lat = -90, min_lon = 180, max_lon = -180;
        for (size_t v = 0; v < a->n; v++) {
            min_lat = fmin(min_lat, a->lat[v]);
            max_lat = fmax(max_lat, a->lat[v]);
            min_lon = fmin(min_lon, a->lon[v]);
            max_lon = fmax(max_lon, a->lon[v]);
        }
        struct geo_point centre = {(min_lat + max_lat) / 2, (min_lon + max_lon) / 2};
        struct area_query q = {a, &where};
        char *want = brute_force_if(category, centre, CMD_MAX_K, INFINITY, oracle_in_area, &q);
        nonempty += strncmp(want, "OK 0\n", 5) != 0;
        open_nonempty += where.open && strncmp(want, "OK 0\n", 5) != 0;
        expect(request, want);
        free(want);
    }
    assert_true(nonempty > 80);
    assert_true(open_nonempty > 20); /* OPEN kept some, not none */
}

/* The expected SERVES answer: the areas of `kind` (NULL: all) containing p,
 * in id order, each with the ids of the facilities linked to it. */
static char *oracle_serves(struct geo_point p, const char *kind) {
    struct sb b = {0};
    size_t n = 0;
    for (size_t i = 0; i < N_AREAS; i++) {
        n += (!kind || strcmp(kind, test_areas[i].kind) == 0) &&
             test_area_contains(&test_areas[i], p);
    }
    sb_printf(&b, "OK %zu\n", n);
    for (size_t i = 0; i < N_AREAS; i++) {
        const struct test_area *a = &test_areas[i];
        if ((kind && strcmp(kind, a->kind) != 0) || !test_area_contains(a, p)) {
            continue;
        }
        sb_printf(&b, "%s\t%s\t%s\t%s\t", a->id, a->kind, a->name, a->parent ? a->parent : "");
        const char *sep = "";
        for (size_t j = 0; j < N_FACILITIES; j++) { /* facs are in id order */
            const struct fac *f = &fx->facs[j];
            json_t *serves = json_object_get(f->attrs, "serves");
            json_t *catchment = json_object_get(f->attrs, "catchment");
            bool linked = false;
            for (size_t k = 0; f->category == STORE_CAT_DOCTOR_TEAM && k < json_array_size(serves);
                 k++) {
                linked |= strcmp(json_string_value(json_array_get(serves, k)), a->id) == 0;
            }
            linked |= f->category == STORE_CAT_SCHOOL && catchment &&
                      strcmp(json_string_value(catchment), a->id) == 0;
            if (linked) {
                sb_printf(&b, "%s%s", sep, f->id);
                sep = ";";
            }
        }
        sb_printf(&b, "\n");
    }
    return b.s;
}

static void test_serves_lists_the_areas_of_a_point_and_who_serves_them(void **state) {
    (void)state;
    static const char *const kinds[] = {NULL, "community", "catchment", "street", "district"};
    for (int round = 0; round < 200; round++) {
        struct geo_point p = {rng_deg(36.11, 36.27), rng_deg(120.32, 120.52)};
        const char *kind = kinds[rng_next() % 5];
        char request[128];
        snprintf(request, sizeof request, "SERVES %.6f %.6f %s", p.lat_deg, p.lon_deg,
                 kind ? kind : "");
        char *want = oracle_serves(p, kind);
        expect(request, want);
        free(want);
    }
    /* CRS: the same point given in GCJ-02 has the same answer. */
    struct geo_point p = {36.1802, 120.4203}, shown;
    assert_int_equal(geo_crs_from_wgs84(GEO_CRS_GCJ02, p, &shown), 0);
    char request[128];
    snprintf(request, sizeof request, "SERVES %.9f %.9f community CRS gcj02", shown.lat_deg,
             shown.lon_deg);
    char *want = oracle_serves(p, "community");
    expect(request, want);
    free(want);
}

/* The polygons the catalogue writes once at load are those an answer wrote
 * from GEOS each time, in every coordinate system, and AREAS in geojson is
 * the same line whether it copies them or writes them again. */
static void test_area_polygons_written_at_load_are_those_written_per_request(void **state) {
    (void)state;
    size_t n = catalog_area_count(fx->catalog);
    assert_true(n > 0);
    for (uint32_t h = 0; h < n; h++) {
        for (int crs = 0; crs < 3; crs++) {
            char *raw = NULL;
            assert_int_equal(geo_areas_geojson(catalog_areas(fx->catalog), h,
                                               (enum geo_crs)crs, &raw), 0);
            char *want = reply_geometry_json(raw);
            const char *got = catalog_area_geojson(fx->catalog, h, crs);
            assert_non_null(want);
            assert_non_null(got);
            assert_string_equal(got, want);
            /* One record both ways: copied, and parsed again. */
            struct catalog_area ar;
            assert_int_equal(catalog_area_get(fx->catalog, h, &ar), 0);
            struct reply_area ra = {.id = ar.id, .kind = store_area_kind_name(ar.kind),
                                    .name = ar.name, .parent = ar.parent,
                                    .served_by = h % 2 ? "dt-1;dt-2" : NULL,
                                    .geometry = got, .geometry_dumped = true};
            struct reply a, b;
            reply_init(&a);
            reply_init(&b);
            a.format = b.format = REPLY_GEOJSON;
            reply_ok(&a, 1);
            reply_area(&a, &ra);
            ra.geometry = raw;
            ra.geometry_dumped = false;
            reply_ok(&b, 1);
            reply_area(&b, &ra);
            size_t la, lb;
            char *ta = reply_take(&a, &la), *tb = reply_take(&b, &lb);
            assert_int_equal(la, lb);
            assert_memory_equal(ta, tb, la);
            free(ta);
            free(tb);
            reply_close(&a);
            reply_close(&b);
            free(want);
            free(raw);
        }
    }
    assert_null(catalog_area_geojson(fx->catalog, (uint32_t)n, 0));
    assert_null(catalog_area_geojson(fx->catalog, 0, 3));
}

static void test_areas_lists_every_area_or_one_kind(void **state) {
    (void)state;
    static const char *const kinds[] = {NULL, "community", "catchment", "street", "district",
                                        "service_area"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        struct sb b = {0};
        size_t n = 0;
        for (size_t i = 0; i < N_AREAS; i++) {
            n += !kinds[k] || strcmp(kinds[k], test_areas[i].kind) == 0;
        }
        sb_printf(&b, "OK %zu\n", n);
        for (size_t i = 0; i < N_AREAS; i++) {
            const struct test_area *a = &test_areas[i];
            if (!kinds[k] || strcmp(kinds[k], a->kind) == 0) {
                sb_printf(&b, "%s\t%s\t%s\t%s\n", a->id, a->kind, a->name,
                          a->parent ? a->parent : "");
            }
        }
        char request[64];
        snprintf(request, sizeof request, "AREAS %s", kinds[k] ? kinds[k] : "");
        expect(request, b.s);
        free(b.s);
    }
}

static void test_area_errors_have_exact_lines(void **state) {
    (void)state;
    expect("INAREA * nope", "ERR NOTFOUND no area 'nope' (see AREAS)\n");
    expect("INAREA zoo cm-1", "ERR UNKNOWN unknown category 'zoo' (see CATEGORIES)\n");
    expect("INAREA * cm-1 K 5",
           "ERR SYNTAX unknown option 'K' (usage: INAREA <category|*> <area-id> [WHERE <field> "
           "<op> <value>]... [OPEN now|<YYYY-MM-DDTHH:MM>])\n");
    expect("INAREA school cm-1 WHERE stars > 3",
           "ERR ARG unknown field 'stars' for school (see CATEGORIES)\n");
    expect("SERVES 36.2 120.4 planet",
           "ERR UNKNOWN unknown area kind 'planet' (district, street, community, catchment or "
           "service_area)\n");
    expect("AREAS planet",
           "ERR UNKNOWN unknown area kind 'planet' (district, street, community, catchment or "
           "service_area)\n");
    expect("SERVES 36.2 120.4 community CRS mars",
           "ERR UNKNOWN unknown coordinate system 'mars' (wgs84, gcj02 or bd09)\n");
    expect("SERVES 136.2 120.4",
           "ERR RANGE latitude 136.2 is outside [-90, 90] (latitude comes first)\n");
    expect("SERVES 36.2 120.4 community LIMIT 3",
           "ERR SYNTAX unknown option 'LIMIT' (usage: SERVES <lat> <lon> [<area-kind>] "
           "[CRS wgs84|gcj02|bd09])\n");
}

static void test_writes_update_who_serves_an_area(void **state) {
    (void)state;
    /* 36.15 120.36 lies in cm-1 and in no catchment. */
    expect_write("PUT w-9 doctor_team 36.15 120.36 name=t serves=cm-1;cm-4",
                 "OK 1\nw-9\tdoctor_team\tt\t36.150000\t120.360000\t-\tserves=cm-1;cm-4\n");
    char *got = run("SERVES 36.15 120.36 community");
    assert_non_null(strstr(got, "w-9"));
    free(got);
    const struct test_area *cm1 = &test_areas[2];
    struct geo_point centre = {(cm1->lat[0] + cm1->lat[2]) / 2, (cm1->lon[0] + cm1->lon[1]) / 2};
    char want[256];
    snprintf(want, sizeof want, "OK 1\nw-9\tdoctor_team\tt\t36.150000\t120.360000\t%.1f"
             "\tserves=cm-1;cm-4\n", geo_distance_m(centre, (struct geo_point){36.15, 120.36}));
    expect("INAREA doctor_team cm-1 WHERE serves = cm-4 WHERE name = t", want);
    expect_write("SET w-9 serves=cm-4",
                 "OK 1\nw-9\tdoctor_team\tt\t36.150000\t120.360000\t-\tserves=cm-4\n");
    got = run("SERVES 36.15 120.36 community");
    assert_null(strstr(got, "w-9"));
    free(got);
    got = run("SERVES 36.2 120.36 community");
    assert_non_null(strstr(got, "w-9"));
    free(got);
    expect_write("DEL w-9", "OK 0\n");
    got = run("SERVES 36.2 120.36 community");
    assert_null(strstr(got, "w-9"));
    free(got);
}

/* ---- Coordinate systems ------------------------------------------------------------ */

static void test_crs_gcj02_converts_queries_and_answers(void **state) {
    (void)state;
    expect("CRS", "OK 1\nwgs84\n");
    expect("crs GCJ02", "OK 1\ngcj02\n");
    for (int i = 5; i < N_FACILITIES; i += 41) {
        const struct fac *f = &fx->facs[i];
        struct geo_point g;
        assert_int_equal(geo_crs_from_wgs84(GEO_CRS_GCJ02, f->where, &g), 0);
        char request[256];
        snprintf(request, sizeof request, "NEAREST %s %.10f %.10f K 1",
                 store_category_name(f->category), g.lat_deg, g.lon_deg);
        struct sb b = {0};
        sb_printf(&b, "OK 1\n");
        sb_record(&b, f, g, 0.0);
        expect(request, b.s);
        free(b.s);
    }
    expect("CRS bd09", "OK 1\nbd09\n");
    expect("CRS wgs84", "OK 1\nwgs84\n");
    expect("CRS mars", "ERR UNKNOWN unknown coordinate system 'mars' (wgs84, gcj02 or bd09)\n");
}

/* ---- JSON formats ------------------------------------------------------------------ */

/* Runs a request in a JSON format and returns the parsed single-line answer. */
static json_t *run_json(const char *request) {
    char *got = run(request);
    size_t len = strlen(got);
    assert_true(len > 0 && got[len - 1] == '\n');
    assert_ptr_equal(strchr(got, '\n'), got + len - 1);
    json_error_t jerr;
    json_t *doc = json_loads(got, 0, &jerr);
    if (!doc) {
        fail_msg("\"%s\" answered non-JSON \"%s\": %s", request, got, jerr.text);
    }
    free(got);
    return doc;
}

static double json_num(json_t *j) {
    assert_true(json_is_number(j));
    return json_number_value(j);
}

static void test_format_json_answers_one_object_a_line(void **state) {
    (void)state;
    json_t *doc = run_json("FORMAT json");
    assert_true(json_is_true(json_object_get(doc, "ok")));
    assert_string_equal(json_string_value(json_array_get(
                            json_array_get(json_object_get(doc, "results"), 0), 0)),
                        "json");
    json_decref(doc);
    for (int q = 0; q < 50; q++) {
        int category = (int)(rng_next() % (STORE_CAT_COUNT + 1)) - 1;
        struct geo_point from = {rng_deg(36.13, 36.25), rng_deg(120.34, 120.50)};
        size_t k = 1 + rng_next() % 30;
        struct cand cands[N_FACILITIES];
        size_t n = 0;
        for (size_t i = 0; i < N_FACILITIES; i++) {
            if (category < 0 || fx->facs[i].category == category) {
                cands[n++] = (struct cand){i, geo_distance_m(from, fx->facs[i].where)};
            }
        }
        qsort(cands, n, sizeof cands[0], cand_cmp);
        n = n < k ? n : k;
        char request[256];
        snprintf(request, sizeof request, "NEAREST %s %.6f %.6f K %zu", category_arg(category),
                 from.lat_deg, from.lon_deg, k);
        doc = run_json(request);
        assert_true(json_is_true(json_object_get(doc, "ok")));
        assert_int_equal(json_integer_value(json_object_get(doc, "count")), n);
        json_t *records = json_object_get(doc, "results");
        assert_int_equal(json_array_size(records), n);
        for (size_t i = 0; i < n; i++) {
            const struct fac *f = &fx->facs[cands[i].index];
            json_t *rec = json_array_get(records, i);
            assert_string_equal(json_string_value(json_object_get(rec, "id")), f->id);
            assert_string_equal(json_string_value(json_object_get(rec, "category")),
                                store_category_name(f->category));
            /* JSON carries the name as it is: escaping replaces flattening. */
            assert_string_equal(json_string_value(json_object_get(rec, "name")), f->name);
            assert_true(json_num(json_object_get(rec, "lat")) == f->where.lat_deg);
            assert_true(json_num(json_object_get(rec, "lon")) == f->where.lon_deg);
            assert_true(json_num(json_object_get(rec, "distance_m")) ==
                        round(cands[i].distance_m * 10.0) / 10.0);
        }
        json_decref(doc);
    }
    doc = run_json("GET f-0003");
    json_t *rec = json_array_get(json_object_get(doc, "results"), 0);
    assert_true(json_is_null(json_object_get(rec, "distance_m")));
    json_decref(doc);
    doc = run_json("NEAREST school 120.4 36.1");
    assert_true(json_is_false(json_object_get(doc, "ok")));
    json_t *error = json_object_get(doc, "error");
    assert_string_equal(json_string_value(json_object_get(error, "code")), "RANGE");
    assert_string_equal(json_string_value(json_object_get(error, "message")),
                        "latitude 120.4 is outside [-90, 90] (latitude comes first)");
    json_decref(doc);
    doc = run_json("FORMAT yaml");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(doc, "error"), "code")), "UNKNOWN");
    json_decref(doc);
    doc = run_json("PING");
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), 0);
    assert_int_equal(json_array_size(json_object_get(doc, "results")), 0);
    json_decref(doc);
    expect("FORMAT text", "OK 1\ntext\n");
}

/* In JSON every attribute is a member with its JSON type, equal to the
 * dataset's value; in GeoJSON a property. */
static void test_json_records_carry_typed_attributes(void **state) {
    (void)state;
    size_t checked = 0;
    for (int i = 0; i < N_FACILITIES; i += 7) {
        const struct fac *f = &fx->facs[i];
        char request[64];
        snprintf(request, sizeof request, "GET %s", f->id);
        for (int geo = 0; geo < 2; geo++) {
            expect(geo ? "FORMAT geojson" : "FORMAT json",
                   geo ? "{\"ok\":true,\"count\":1,\"results\":[[\"geojson\"]]}\n"
                       : "{\"ok\":true,\"count\":1,\"results\":[[\"json\"]]}\n");
            json_t *doc = run_json(request);
            json_t *rec = geo ? json_object_get(
                                    json_array_get(json_object_get(doc, "features"), 0),
                                    "properties")
                              : json_array_get(json_object_get(doc, "results"), 0);
            assert_non_null(rec);
            assert_string_equal(json_string_value(json_object_get(rec, "id")), f->id);
            assert_int_equal(json_object_size(rec),
                             (geo ? 4 : 6) + json_object_size(f->attrs));
            const char *key;
            json_t *v;
            json_object_foreach(f->attrs, key, v) {
                json_t *got = json_object_get(rec, key);
                bool same = got && (json_is_number(v) ? json_is_number(got) &&
                                                            json_number_value(got) ==
                                                                json_number_value(v)
                                                      : json_equal(got, v));
                if (!same) {
                    char *a = json_dumps(v, JSON_ENCODE_ANY), *b = json_dumps(rec, 0);
                    fail_msg("%s: attribute %s should be %s in %s", f->id, key, a, b);
                }
                checked++;
            }
            json_decref(doc);
        }
    }
    expect("FORMAT text", "OK 1\ntext\n");
    assert_true(checked > 100);
}

static void test_json_answers_state_the_crs_of_their_positions(void **state) {
    (void)state;
    expect("FORMAT json", "{\"ok\":true,\"count\":1,\"results\":[[\"json\"]]}\n");
    const struct fac *f = &fx->facs[7];
    char request[256];
    snprintf(request, sizeof request, "NEAREST %s %.10f %.10f K 1 CRS gcj02",
             store_category_name(f->category), f->where.lat_deg, f->where.lon_deg);
    json_t *doc = run_json(request);
    assert_string_equal(json_string_value(json_object_get(doc, "crs")), "gcj02");
    /* The query point was WGS84 read as GCJ-02; the answer's position is in
     * GCJ-02 too, so taken back to WGS84 it lies at the stated distance from
     * the query point taken back the same way. */
    json_t *rec = json_array_get(json_object_get(doc, "results"), 0);
    struct geo_point shown = {json_num(json_object_get(rec, "lat")),
                              json_num(json_object_get(rec, "lon"))};
    struct geo_point at, from;
    assert_int_equal(geo_crs_to_wgs84(GEO_CRS_GCJ02, shown, &at), 0);
    assert_int_equal(geo_crs_to_wgs84(GEO_CRS_GCJ02, f->where, &from), 0);
    assert_true(fabs(geo_distance_m(from, at) - json_num(json_object_get(rec, "distance_m"))) <
                0.3);
    json_decref(doc);
    snprintf(request, sizeof request, "NEAREST %s %.10f %.10f K 1",
             store_category_name(f->category), f->where.lat_deg, f->where.lon_deg);
    doc = run_json(request);
    assert_string_equal(json_string_value(json_object_get(doc, "crs")), "wgs84");
    json_decref(doc);
    /* Answers without positions state none. */
    doc = run_json("PING");
    assert_null(json_object_get(doc, "crs"));
    json_decref(doc);
    expect("FORMAT text", "OK 1\ntext\n");
}

static void test_format_geojson_answers_feature_collections(void **state) {
    (void)state;
    json_decref(run_json("format GeoJSON"));
    const struct fac *f = &fx->facs[77];
    char request[256];
    snprintf(request, sizeof request, "NEAREST * %.6f %.6f K 3", f->where.lat_deg,
             f->where.lon_deg);
    json_t *doc = run_json(request);
    assert_string_equal(json_string_value(json_object_get(doc, "type")), "FeatureCollection");
    json_t *features = json_object_get(doc, "features");
    assert_int_equal(json_array_size(features), 3);
    json_t *first = json_array_get(features, 0);
    assert_string_equal(json_string_value(json_object_get(first, "type")), "Feature");
    json_t *coords = json_object_get(json_object_get(first, "geometry"), "coordinates");
    assert_true(json_num(json_array_get(coords, 0)) == f->where.lon_deg);
    assert_true(json_num(json_array_get(coords, 1)) == f->where.lat_deg);
    json_t *props = json_object_get(first, "properties");
    assert_string_equal(json_string_value(json_object_get(props, "id")), f->id);
    assert_true(json_num(json_object_get(props, "distance_m")) == 0.0);
    json_decref(doc);
    fx->session.format = REPLY_TEXT;
}

/* In geojson, AREAS and SERVES answer area Features whose geometry holds the
 * area's vertices (in the connection's or the request's CRS); text and json
 * answers have no geometry (test_areas_lists_every_area_or_one_kind). */
static void test_format_geojson_areas_carry_their_polygons(void **state) {
    (void)state;
    static const char *const crs_names[] = {"wgs84", "gcj02", "bd09"};
    for (int crs = GEO_CRS_WGS84; crs <= GEO_CRS_BD09; crs++) {
        char request[128];
        fx->session.format = REPLY_TEXT;
        snprintf(request, sizeof request, "CRS %s", crs_names[crs]);
        free(run(request));
        json_decref(run_json("FORMAT geojson"));
        json_t *doc = run_json("AREAS");
        assert_string_equal(json_string_value(json_object_get(doc, "type")),
                            "FeatureCollection");
        assert_string_equal(json_string_value(json_object_get(doc, "crs")), crs_names[crs]);
        json_t *features = json_object_get(doc, "features");
        assert_int_equal(json_array_size(features), N_AREAS);
        for (size_t i = 0; i < N_AREAS; i++) {
            const struct test_area *a = &test_areas[i];
            json_t *feat = json_array_get(features, i);
            json_t *props = json_object_get(feat, "properties");
            assert_string_equal(json_string_value(json_object_get(props, "id")), a->id);
            assert_string_equal(json_string_value(json_object_get(props, "kind")), a->kind);
            assert_string_equal(json_string_value(json_object_get(props, "parent")),
                                a->parent ? a->parent : "");
            json_t *geom = json_object_get(feat, "geometry");
            const char *type = json_string_value(json_object_get(geom, "type"));
            json_t *ring = json_array_get(json_object_get(geom, "coordinates"), 0);
            if (strcmp(type, "MultiPolygon") == 0) {
                ring = json_array_get(ring, 0);
            } else {
                assert_string_equal(type, "Polygon");
            }
            assert_int_equal(json_array_size(ring), a->n + 1); /* closed */
            /* Every vertex is on the ring, converted to the CRS (1e-6 deg: JSON digits). */
            for (size_t v = 0; v < a->n; v++) {
                struct geo_point p = {a->lat[v], a->lon[v]}, q;
                assert_int_equal(geo_crs_from_wgs84((enum geo_crs)crs, p, &q), 0);
                bool found = false;
                for (size_t k = 0; k < a->n && !found; k++) {
                    json_t *pos = json_array_get(ring, k);
                    found = fabs(json_num(json_array_get(pos, 0)) - q.lon_deg) < 1e-6 &&
                            fabs(json_num(json_array_get(pos, 1)) - q.lat_deg) < 1e-6;
                }
                assert_true(found);
            }
        }
        json_decref(doc);
    }
    /* SERVES: the same areas as in text, with served_by as an array. */
    fx->session.format = REPLY_TEXT;
    free(run("CRS wgs84"));
    char *text = run("SERVES 36.15 120.36");
    json_decref(run_json("FORMAT geojson"));
    json_t *doc = run_json("SERVES 36.15 120.36");
    json_t *features = json_object_get(doc, "features");
    size_t n = strtoul(text + 3, NULL, 10);
    assert_int_equal(json_array_size(features), n);
    const char *line = strchr(text, '\n') + 1;
    for (size_t i = 0; i < n; i++) {
        json_t *props = json_object_get(json_array_get(features, i), "properties");
        const char *id = json_string_value(json_object_get(props, "id"));
        assert_int_equal(strncmp(line, id, strlen(id)), 0);
        assert_true(json_is_array(json_object_get(props, "served_by")));
        line = strchr(line, '\n') + 1;
    }
    json_decref(doc);
    free(text);
    fx->session.format = REPLY_TEXT;
    fx->session.crs = GEO_CRS_WGS84;
}

/* ---- Small commands --------------------------------------------------------------- */

static void test_ping_and_quit_answer_ok_0(void **state) {
    (void)state;
    expect("PING", "OK 0\n");
    assert_false(fx->session.quit);
    expect("quit", "OK 0\n");
    assert_true(fx->session.quit);
}

static void test_blank_line_gets_no_answer(void **state) {
    (void)state;
    expect("", "");
    expect("   \t ", "");
}

static void test_help_lists_every_command_from_the_table(void **state) {
    (void)state;
    size_t n = 0;
    const struct cmd_spec *t = cmd_table(&n);
    struct sb b = {0};
    sb_printf(&b, "OK %zu\n", n);
    for (size_t i = 0; i < n; i++) {
        sb_printf(&b, "%s\t%s\n", t[i].usage, t[i].summary);
    }
    expect("HELP", b.s);
    free(b.s);
    b = (struct sb){0};
    const struct cmd_spec *nearest = cmd_lookup("nearest");
    assert_non_null(nearest);
    sb_printf(&b, "OK 1\n%s\t%s\n", nearest->usage, nearest->summary);
    expect("help Nearest", b.s);
    free(b.s);
    expect("HELP FLY", "ERR UNKNOWN unknown command 'FLY' (see HELP)\n");
}

static void test_stats_counts_requests_and_errors(void **state) {
    (void)state;
    fx->stats = (struct cmd_stats){0};
    free(run("PING"));
    free(run("BOGUS"));
    char *got = run("STATS");
    char want[128];
    snprintf(want, sizeof want, "facilities\t%d\n", N_FACILITIES);
    assert_non_null(strstr(got, want));
    assert_non_null(strstr(got, "requests\t3\n"));
    assert_non_null(strstr(got, "errors\t1\n"));
    size_t n_cmds = 0;
    cmd_table(&n_cmds);
    char ok_line[32]; /* 11 counters, one per category, two per command, two batch ones */
    snprintf(ok_line, sizeof ok_line, "OK %zu\n", 11 + STORE_CAT_COUNT + 2 * n_cmds + 2);
    assert_true(strncmp(got, ok_line, strlen(ok_line)) == 0);
    assert_non_null(strstr(got, "\nrequests_stats\t1\nerrors_stats\t0\n"));
    assert_non_null(strstr(got, "\nbatches\t0\nbatched_queries\t0\n"));
    free(got);
    assert_int_equal(fx->stats.requests, 3);
}

/* ---- Every error path --------------------------------------------------------------- */

static void test_errors_have_exact_lines(void **state) {
    (void)state;
    static const struct {
        const char *request;
        const char *answer;
    } cases[] = {
        {"FLY 1 2", "ERR UNKNOWN unknown command 'FLY' (see HELP)\n"},
        {"NEAREST", "ERR SYNTAX wrong number of arguments for NEAREST (usage: " USAGE_NEAREST
                    ")\n"},
        {"NEAREST school 36.1", "ERR SYNTAX wrong number of arguments for NEAREST (usage: "
                                USAGE_NEAREST ")\n"},
        {"PING now", "ERR SYNTAX wrong number of arguments for PING (usage: PING)\n"},
        {"NEAREST zoo 36.1 120.4", "ERR UNKNOWN unknown category 'zoo' (see CATEGORIES)\n"},
        {"NEAREST School 36.1 120.4", "ERR UNKNOWN unknown category 'School' (see CATEGORIES)\n"},
        {"NEAREST school 120.4 36.1",
         "ERR RANGE latitude 120.4 is outside [-90, 90] (latitude comes first)\n"},
        {"NEAREST school -90.5 36.1",
         "ERR RANGE latitude -90.5 is outside [-90, 90] (latitude comes first)\n"},
        {"NEAREST school 36.1 180.01", "ERR RANGE longitude 180.01 is outside [-180, 180]\n"},
        {"NEAREST school abc 120.4", "ERR ARG latitude 'abc' is not a number\n"},
        {"NEAREST school 36.1 120.4x", "ERR ARG longitude '120.4x' is not a number\n"},
        {"NEAREST school nan 120.4", "ERR ARG latitude 'nan' is not a number\n"},
        {"NEAREST school 36.1 inf", "ERR ARG longitude 'inf' is not a number\n"},
        {"NEAREST school 0x24 120.4", "ERR ARG latitude '0x24' is not a number\n"},
        {"NEAREST school 36.1 1e999", "ERR ARG longitude '1e999' is not a number\n"},
        {"NEAREST school \"\" 120.4", "ERR ARG latitude '' is not a number\n"},
        {"NEAREST school 36.1 120.4 K", "ERR SYNTAX option 'K' has no value (usage: " USAGE_NEAREST
                                        ")\n"},
        {"NEAREST school 36.1 120.4 N 5",
         "ERR SYNTAX unknown option 'N' (usage: " USAGE_NEAREST ")\n"},
        {"NEAREST school 36.1 120.4 K 2 k 3", "ERR SYNTAX option K given twice\n"},
        {"NEAREST school 36.1 120.4 K 0", "ERR RANGE K 0 is outside [1, 1000]\n"},
        {"NEAREST school 36.1 120.4 K 1001", "ERR RANGE K 1001 is outside [1, 1000]\n"},
        {"NEAREST school 36.1 120.4 K 99999999999999999999999",
         "ERR RANGE K 99999999999999999999999 is outside [1, 1000]\n"},
        {"NEAREST school 36.1 120.4 K 2.5", "ERR ARG K '2.5' is not an integer\n"},
        {"NEAREST school 36.1 120.4 K -3", "ERR RANGE K -3 is outside [1, 1000]\n"},
        {"NEAREST school 36.1 120.4 K -0", "ERR RANGE K -0 is outside [1, 1000]\n"},
        {"NEAREST school 36.1 120.4 K -", "ERR ARG K '-' is not an integer\n"},
        {"NEAREST school 36.1 120.4 MAXDIST -1", "ERR RANGE MAXDIST -1 is negative\n"},
        {"NEAREST school 36.1 120.4 MAXDIST far", "ERR ARG MAXDIST 'far' is not a number\n"},
        {"RADIUS school 36.1 120.4 -5", "ERR RANGE radius -5 is negative\n"},
        {"RADIUS school 36.1 120.4 5km", "ERR ARG radius '5km' is not a number\n"},
        {"RADIUS school 36.1 120.4 500 LIMIT 0", "ERR RANGE LIMIT 0 is outside [1, 1000]\n"},
        {"RADIUS school 36.1 120.4 500 K 3", "ERR SYNTAX unknown option 'K' (usage: " USAGE_RADIUS
                                             ")\n"},
        {"GET", "ERR SYNTAX wrong number of arguments for GET (usage: GET <id>)\n"},
        {"GET nope", "ERR NOTFOUND no facility 'nope'\n"},
        {"NEAREST \"school 36.1 120.4",
         "ERR SYNTAX cannot split the request (unbalanced quote, bad escape or over 64 "
         "tokens)\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect(cases[i].request, cases[i].answer);
    }
}

static void test_echoed_text_is_one_capped_line(void **state) {
    (void)state;
    /* A command name with a CR in it and a very long one. */
    char request[4096];
    snprintf(request, sizeof request, "FLY\rAWAY");
    char *got = run(request);
    assert_string_equal(got, "ERR UNKNOWN unknown command 'FLY AWAY' (see HELP)\n");
    free(got);
    memset(request, 'x', 3000);
    request[3000] = '\0';
    got = run(request);
    assert_true(strlen(got) <= REPLY_MAX_ERR_BYTES);
    assert_non_null(strstr(got, "...' (see HELP)\n"));
    assert_ptr_equal(strchr(got, '\n'), got + strlen(got) - 1);
    free(got);
}

/* A random-case copy of src: each ASCII letter flipped half of the time. */
static void random_case(char *dst, const char *src) {
    for (; *src; src++) {
        char c = *src;
        if (((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) && rng_next() % 2) {
            c ^= 0x20;
        }
        *dst++ = c;
    }
    *dst = '\0';
}

/* `name` changed a little: a byte dropped, replaced, added, or the first one
 * replaced by a byte that equals a letter once ORed with 0x20. */
static void mutate_name(char *s) {
    static const char bytes[] = "AZaz@[`{_09 \x80\xc1\xe1-";
    size_t n = strlen(s);
    char c = bytes[rng_next() % (sizeof bytes - 1)];
    switch (rng_next() % 4) {
    case 0:
        if (n > 0) {
            s[rng_next() % n] = c;
        }
        break;
    case 1:
        if (n > 0) {
            size_t at = rng_next() % n;
            memmove(s + at, s + at + 1, n - at);
        }
        break;
    case 2: {
        size_t at = rng_next() % (n + 1);
        memmove(s + at + 1, s + at, n - at + 1);
        s[at] = c;
        break;
    }
    default:
        s[0] = (char)((unsigned char)s[0] ^ (rng_next() % 2 ? 0x20 : 0x60));
        break;
    }
}

/* The obvious lookup: every row, compared ignoring ASCII case. */
static const struct cmd_spec *model_lookup(const char *name) {
    size_t n = 0;
    const struct cmd_spec *t = cmd_table(&n);
    for (size_t i = 0; i < n; i++) {
        bool same = true;
        const char *a = t[i].name, *b = name;
        for (; same && (*a || *b); a++, b++) {
            char x = *a, y = *b;
            x = x >= 'a' && x <= 'z' ? (char)(x - 32) : x;
            y = y >= 'a' && y <= 'z' ? (char)(y - 32) : y;
            same = x == y;
        }
        if (same) {
            return &t[i];
        }
    }
    return NULL;
}

static void test_command_names_are_found_as_a_case_blind_scan_finds_them(void **state) {
    (void)state;
    size_t n = 0;
    const struct cmd_spec *t = cmd_table(&n);
    for (int round = 0; round < 200000; round++) {
        char name[64];
        random_case(name, t[rng_next() % n].name);
        if (round % 2) {
            mutate_name(name);
        }
        if (cmd_lookup(name) != model_lookup(name)) {
            fail_msg("cmd_lookup(\"%s\") disagrees with a scan of the table", name);
        }
    }
    for (size_t i = 0; i < n; i++) {
        char name[64];
        random_case(name, t[i].name);
        assert_ptr_equal(cmd_lookup(name), &t[i]);
    }
    assert_null(cmd_lookup(""));
}

/* The old reading of a count: digits with an optional sign, then strtol().
 * Returns 0 and *out, CMD_ERR_ARG or CMD_ERR_RANGE. */
static int model_count(const char *s, long *out) {
    const char *p = *s == '+' || *s == '-' ? s + 1 : s;
    if (!*p) {
        return CMD_ERR_ARG;
    }
    for (const char *q = p; *q; q++) {
        if (*q < '0' || *q > '9') {
            return CMD_ERR_ARG;
        }
    }
    if (*s == '-') {
        return CMD_ERR_RANGE;
    }
    errno = 0;
    long v = strtol(p, NULL, 10);
    if (errno == ERANGE) {
        return CMD_ERR_RANGE;
    }
    *out = v;
    return 0;
}

static void test_k_and_option_names_read_as_a_strtol_model_reads_them(void **state) {
    (void)state;
    static const char *const options[] = {"K", "MAXDIST", "CRS"};
    for (int round = 0; round < 3000; round++) {
        char value[64], opt[32], request[256], want_line[256];
        size_t n = 0;
        int shape = (int)(rng_next() % 5);
        if (shape == 0 || rng_next() % 8 == 0) {
            value[n++] = "+-"[rng_next() % 2];
        }
        size_t digits = shape == 1 ? 17 + rng_next() % 8 : 1 + rng_next() % 5;
        for (size_t i = 0; i < digits; i++) {
            value[n++] = (char)('0' + (i == 0 && shape == 2 ? 0 : rng_next() % 10));
        }
        if (shape == 3) {
            value[rng_next() % n] = "x.e/:!"[rng_next() % 6];
        }
        value[n] = '\0';
        const char *option = options[rng_next() % 3];
        random_case(opt, option);
        if (rng_next() % 4 == 0) {
            mutate_name(opt);
        }
        if (!opt[0] || strchr(opt, ' ')) {
            continue; /* no longer one token */
        }
        double lat = rng_deg(36.13, 36.25), lon = rng_deg(120.34, 120.50);
        int category = (int)(rng_next() % STORE_CAT_COUNT);
        const char *opt_value = strcmp(option, "K") == 0 ? value
                                : strcmp(option, "CRS") == 0 ? "wgs84" : "2500";
        snprintf(request, sizeof request, "NEAREST %s %.6f %.6f %s %s", category_arg(category),
                 lat, lon, opt, opt_value);
        char upper[32];
        size_t i = 0;
        for (; opt[i]; i++) {
            upper[i] = opt[i] >= 'a' && opt[i] <= 'z' ? (char)(opt[i] - 32) : opt[i];
        }
        upper[i] = '\0';
        char *got = run(request);
        if (strcmp(upper, option) != 0) {
            const char *m = strcmp(upper, "K") == 0 ? "K" : strcmp(upper, "CRS") == 0 ? "CRS"
                            : strcmp(upper, "MAXDIST") == 0 ? "MAXDIST" : NULL;
            if (m) { /* mutated into another option's name: not this test's case */
                free(got);
                continue;
            }
            char echo[REPLY_MAX_ECHO_BYTES + 1];
            snprintf(want_line, sizeof want_line, "ERR SYNTAX unknown option '%s' (usage: %s)\n",
                     reply_echo(opt, echo, sizeof echo), USAGE_NEAREST);
            if (strcmp(got, want_line) != 0) {
                fail_msg("\"%s\": got \"%s\", want \"%s\"", request, got, want_line);
            }
            free(got);
            continue;
        }
        struct geo_point from = {lat, lon};
        char *want = NULL;
        if (strcmp(option, "K") != 0) {
            want = brute_force(category, from, 5, strcmp(option, "CRS") ? 2500.0 : INFINITY);
        } else {
            long k = 0;
            int ret = model_count(value, &k);
            if (ret == CMD_ERR_ARG) {
                snprintf(want_line, sizeof want_line, "ERR ARG K '%s' is not an integer\n",
                         value);
            } else if (ret < 0 || k < 1 || k > CMD_MAX_K) {
                snprintf(want_line, sizeof want_line, "ERR RANGE K %s is outside [1, %d]\n",
                         value, CMD_MAX_K);
            } else {
                want = brute_force(category, from, (size_t)k, INFINITY);
            }
        }
        const char *w = want ? want : want_line;
        if (strcmp(got, w) != 0) {
            fail_msg("\"%s\": got \"%s\", want \"%s\"", request, got, w);
        }
        free(want);
        free(got);
    }
}

static void test_microdegree_records_print_as_printf_would(void **state) {
    (void)state;
    for (int i = 0; i < 20000; i++) {
        int32_t lat_e6 = (int32_t)(rng_next() % 180000001) - 90000000;
        int32_t lon_e6 = (int32_t)(rng_next() % 360000001) - 180000000;
        if (i < 9) { /* the edges: zero, one microdegree either side, the limits */
            static const int32_t edge[9] = {0, 1, -1, 999999, -999999, 1000000, -1000000,
                                            90000000, -90000000};
            lat_e6 = edge[i];
            lon_e6 = edge[8 - i] * 2;
        }
        struct geo_point where = {lat_e6 / 1e6, lon_e6 / 1e6};
        struct reply_facility fast = {.id = "x", .category = "school", .name = "n",
                                      .where = where, .distance_m = 12.25, .has_e6 = true,
                                      .lat_e6 = lat_e6, .lon_e6 = lon_e6};
        struct reply_facility slow = fast;
        slow.has_e6 = false;
        struct reply a, b;
        reply_init(&a);
        reply_init(&b);
        reply_facility(&a, &fast);
        reply_facility(&b, &slow);
        size_t la, lb;
        char *ta = reply_take(&a, &la), *tb = reply_take(&b, &lb);
        assert_string_equal(ta, tb);
        free(ta);
        free(tb);
    }
}

static void test_every_microdegree_fraction_prints_as_printf_would(void **state) {
    (void)state;
    struct reply r;
    reply_init(&r);
    char want[64 * 1000 + 1];
    size_t want_len = 0;
    for (int32_t frac = 0; frac < 1000000; frac++) {
        /* Both signs, and degrees of one to three digits. */
        int32_t lat_e6 = (frac % 2 ? -1 : 1) * ((frac % 91) * 1000000 + frac);
        int32_t lon_e6 = (frac % 3 ? 1 : -1) * ((frac % 181) * 1000000 + (999999 - frac));
        struct reply_facility f = {.id = "i", .category = "c", .name = "n",
                                   .where = {lat_e6 / 1e6, lon_e6 / 1e6}, .distance_m = 0.0,
                                   .has_e6 = true, .lat_e6 = lat_e6, .lon_e6 = lon_e6,
                                   .plain_text = true};
        reply_facility(&r, &f);
        want_len += (size_t)snprintf(want + want_len, sizeof want - want_len,
                                     "i\tc\tn\t%.6f\t%.6f\t0.0\n", f.where.lat_deg,
                                     f.where.lon_deg);
        if (frac % 1000 == 999) {
            size_t got_len = 0;
            char *got = reply_take(&r, &got_len);
            assert_int_equal(got_len, want_len);
            assert_memory_equal(got, want, want_len);
            free(got);
            want_len = 0;
        }
    }
    reply_close(&r);
}

/* The distance field of a record, as the builder writes it. */
static void distance_text(double d, char *out, size_t out_len) {
    struct reply r;
    reply_init(&r);
    struct reply_facility f = {.id = "x", .category = "c", .name = "n", .distance_m = d};
    reply_facility(&r, &f);
    size_t len;
    char *text = reply_take(&r, &len);
    const char *field = strrchr(text, '\t') + 1;
    snprintf(out, out_len, "%.*s", (int)(strlen(field) - 1), field);
    free(text);
}

static void test_distances_print_as_printf_would(void **state) {
    (void)state;
    char got[64], want[64];
    for (int i = 0; i < 300000; i++) {
        double d;
        switch (i % 4) {
        case 0: /* anywhere up to 20,000 km */
            d = (double)(rng_next() >> 11) / (double)(1ull << 53) * 2e7;
            break;
        case 1: /* exact ties: multiples of 0.05 that a double holds exactly */
            d = (double)(rng_next() % 4000000) * 0.25 + (i % 8 == 1 ? 0.25 : 0.75);
            break;
        case 2: { /* a step either side of a tie or of a tenth */
            double base = (double)(rng_next() % 1000000) / 20.0;
            d = (rng_next() & 1) ? nextafter(base, INFINITY) : nextafter(base, 0.0);
            break;
        }
        case 3: /* small */
            d = (double)(rng_next() % 100000) / 997.0;
            break;
        }
        if (i % 16 == 3) { /* any exponent the integer rounding meets: tiny to 10^15 */
            d = ldexp((double)(rng_next() >> 11) / 0x1p53, (int)(rng_next() % 110) - 60);
            d = d < 1e15 ? d : d / 8;
        } else if (i % 16 == 7) { /* right next to a power of two */
            d = ldexp(1.0, (int)(rng_next() % 100) - 50);
            d = rng_next() % 2 ? nextafter(d, 0.0) : d;
        }
        distance_text(d, got, sizeof got);
        snprintf(want, sizeof want, "%.1f", d);
        if (strcmp(got, want) != 0) {
            fail_msg("distance %.17g: got %s, printf says %s", d, got, want);
        }
    }
    distance_text(0.0, got, sizeof got);
    assert_string_equal(got, "0.0");
    distance_text(0.05, got, sizeof got);
    assert_string_equal(got, "0.1"); /* 0.05 is slightly above 1/20 in binary */
    distance_text(0.25, got, sizeof got);
    assert_string_equal(got, "0.2"); /* an exact tie goes to even */
    static const double edges[] = {5e-324, 2.2250738585072014e-308, 0x1p-64, 0x1p-61,
                                   0x1p-58, 0.049999999999999996, 0.95, 9.95, 999999.95,
                                   99999999.95, 999999999.95, 9999999999999.9,
                                   999999999999999.9, 1e15 - 0.125};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        distance_text(edges[i], got, sizeof got);
        snprintf(want, sizeof want, "%.1f", edges[i]);
        assert_string_equal(got, want);
    }
    distance_text(-0.0, got, sizeof got);
    assert_string_equal(got, "0.0"); /* no "-0.0" (the builder has always said so) */
}

/* Random text of 0 - 40 bytes: half of the fields printable bytes only
 * (0x20 - 0xff but DEL), the others with a C0 control or DEL in one byte of
 * four, so that every byte position of the builder's word-at-a-time copy
 * meets one. */
static void random_field(char *out) {
    size_t n = (size_t)(rng_next() % 41);
    bool dirty = rng_next() % 2;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rng_next();
        char c = (char)(0x20 + (r >> 8) % 0xe0);
        if (c == 0x7f || (dirty && r % 4 == 0)) {
            c = (char)(r % 8 == 0 ? 0x7f : 1 + (r >> 8) % 0x1f);
        }
        out[i] = c;
    }
    out[n] = '\0';
}

/* A field as the protocol shows it: C0 controls and DEL become spaces. */
static void model_field(char *out, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        *out++ = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    *out = '\0';
}

static void test_records_print_as_a_plain_printf_model_would(void **state) {
    (void)state;
    struct reply r;
    reply_init(&r);
    char want[4096], fields[3][48], clean[3][48], pos[64], dist[64];
    size_t want_len = 0;
    for (int i = 0; i < 100000; i++) {
        if (i % 50 == 0) {
            size_t n_ok = (size_t)(rng_next() % (i % 100 == 0 ? 1000000007u : 100001u));
            reply_ok(&r, n_ok); /* text format: no records are awaited */
            want_len += (size_t)snprintf(want + want_len, sizeof want - want_len, "OK %zu\n",
                                         n_ok);
        }
        for (int k = 0; k < 3; k++) {
            random_field(fields[k]);
            model_field(clean[k], fields[k]);
        }
        int32_t lat_e6 = (int32_t)(rng_next() % 180000001) - 90000000;
        int32_t lon_e6 = (int32_t)(rng_next() % 360000001) - 180000000;
        bool has_e6 = rng_next() % 4 != 0;
        double d = rng_next() % 8 == 0 ? NAN : (double)(rng_next() >> 11) / 0x1p53 * 2e7;
        bool plain = true;
        for (int k = 0; k < 3; k++) {
            plain = plain && strcmp(fields[k], clean[k]) == 0;
        }
        /* The builder copies fields said to be plain as they are: say so when
         * they are, half of the time. */
        struct reply_facility f = {.id = fields[0], .category = fields[1], .name = fields[2],
                                   .where = {lat_e6 / 1e6, lon_e6 / 1e6}, .distance_m = d,
                                   .has_e6 = has_e6, .lat_e6 = lat_e6, .lon_e6 = lon_e6,
                                   .plain_text = plain && rng_next() % 2};
        if (rng_next() % 2) { /* the caller knows the lengths */
            f.id_len = strlen(fields[0]);
            f.category_len = strlen(fields[1]);
            f.name_len = strlen(fields[2]);
        }
        reply_facility(&r, &f);
        snprintf(pos, sizeof pos, "%.6f\t%.6f", f.where.lat_deg, f.where.lon_deg);
        snprintf(dist, sizeof dist, isnan(d) ? "-" : "%.1f", d);
        want_len += (size_t)snprintf(want + want_len, sizeof want - want_len,
                                     "%s\t%s\t%s\t%s\t%s\n", clean[0], clean[1], clean[2], pos,
                                     dist);
        if (i % 16 == 15) {
            size_t got_len = 0;
            char *got = reply_take(&r, &got_len);
            assert_int_equal(got_len, want_len);
            assert_memory_equal(got, want, want_len);
            free(got);
            want_len = 0;
        }
    }
    reply_close(&r);
}

static void test_reply_echo_cuts_at_a_character_boundary(void **state) {
    (void)state;
    char text[400] = "";
    for (int i = 0; i < 60; i++) {
        strcat(text, "李沧");  /* 6 bytes each */
    }
    char out[REPLY_MAX_ECHO_BYTES + 1];
    reply_echo(text, out, sizeof out);
    size_t n = strlen(out);
    assert_true(n <= REPLY_MAX_ECHO_BYTES);
    assert_string_equal(out + n - 3, "...");
    /* What precedes "..." is whole 3-byte characters. */
    assert_int_equal((n - 3) % 3, 0);
    assert_memory_equal(out, text, n - 3);
}

/* Checks that `got` is exactly one well-formed answer: "OK n" and n lines
 * without control characters other than tabs, or one ERR line with a code
 * from errors.def. */
static void assert_one_answer(const char *request, const char *got) {
    if (strncmp(got, "ERR ", 4) == 0) {
        const char *nl = strchr(got, '\n');
        bool known = false;
        for (int code = -1; code >= -CMD_ERR_COUNT; code--) {
            size_t n = strlen(cmd_err_word(code));
            known |= strncmp(got + 4, cmd_err_word(code), n) == 0 && got[4 + n] == ' ';
        }
        if (!known || !nl || nl[1] != '\0' || strlen(got) > REPLY_MAX_ERR_BYTES) {
            fail_msg("\"%s\": malformed ERR answer \"%s\"", request, got);
        }
        return;
    }
    char *end = NULL;
    if (strncmp(got, "OK ", 3) != 0) {
        fail_msg("\"%s\": answer \"%s\" is neither OK nor ERR", request, got);
    }
    unsigned long n = strtoul(got + 3, &end, 10);
    if (*end != '\n') {
        fail_msg("\"%s\": bad OK line in \"%s\"", request, got);
    }
    const char *p = end + 1;
    for (unsigned long i = 0; i < n; i++) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            fail_msg("\"%s\": %lu records announced, %lu sent", request, n, i);
        }
        for (const char *q = p; q < nl; q++) {
            if ((unsigned char)*q < 0x20 && *q != '\t') {
                fail_msg("\"%s\": control character in a record", request);
            }
        }
        p = nl + 1;
    }
    if (*p != '\0') {
        fail_msg("\"%s\": bytes after the announced records: \"%s\"", request, p);
    }
}

static void test_random_requests_get_exactly_one_answer(void **state) {
    (void)state;
    static const char *const words[] = {
        "NEAREST", "nearest", "RADIUS", "GET", "CATEGORIES", "CRS", "FORMAT", "HELP", "STATS",
        "PING", "QUIT", "K", "k", "MAXDIST", "LIMIT", "school", "*", "parking", "zoo", "36.2",
        "120.4", "-91", "1e3", "0x1p3", "nan", "inf", "5", "0", "1001", "\"quoted word\"",
        "\"", "\\", "gcj02", "json", "text", "f-0001", "\t", "\r", "\x01", "李沧", "",
    };
    size_t n_words = sizeof words / sizeof words[0];
    for (int round = 0; round < 5000; round++) {
        char request[512] = "";
        size_t n = rng_next() % 9;
        for (size_t i = 0; i < n; i++) {
            strcat(request, words[rng_next() % n_words]);
            strcat(request, rng_next() % 5 ? " " : "  ");
        }
        char *got = run(request);
        bool blank = strspn(request, " \t") == strlen(request);
        if (blank) {
            assert_string_equal(got, "");
        } else if (fx->session.format == REPLY_TEXT) {
            assert_one_answer(request, got);
        } else {
            /* A JSON format was switched on: one line of valid JSON. */
            size_t len = strlen(got);
            assert_true(len > 0 && got[len - 1] == '\n' && strchr(got, '\n') == got + len - 1);
            json_t *doc = json_loads(got, 0, NULL);
            assert_non_null(doc);
            json_decref(doc);
        }
        free(got);
        if (rng_next() % 50 == 0) {
            cmd_session_init(&fx->session); /* back to text and WGS84 now and then */
        }
    }
}

/* ---- Batches ------------------------------------------------------------------------ */

/* A random request for the batch test: mostly NEAREST and RADIUS, with and
 * without the options that keep a query out of a batch (WHERE, K or LIMIT
 * over CMD_BATCH_K), some invalid, some other commands. *batchable says
 * whether it may wait in a batch if it is valid. */
static void random_batch_request(char *request, size_t cap, bool *batchable) {
    static const char *const cats[] = {"school", "meal_point", "parking", "elder_care",
                                       "doctor_team", "*", "zoo"};
    static const char *const crs[] = {"wgs84", "gcj02", "bd09"};
    static const char *const instants[] = {"2026-11-30T09:00", "2026-12-05T22:30",
                                           "2026-12-06T12:00"};
    int kind = (int)(rng_next() % 10);
    if (kind == 0) {
        snprintf(request, cap, "%s", rng_next() % 2 ? "PING" : "GET f-0007");
        *batchable = false;
        return;
    }
    bool radius = kind <= 2;
    int len = snprintf(request, cap, "%s %s %.6f %.6f", radius ? "RADIUS" : "NEAREST",
                       cats[rng_next() % 7], rng_deg(36.10, 36.28), rng_deg(120.30, 120.55));
    if (radius) {
        len += snprintf(request + len, cap - (size_t)len, " %s",
                        rng_next() % 9 ? "1500" : "-3");
    }
    long k = radius ? 100 : 5;
    if (rng_next() % 3 == 0) {
        static const long ks[] = {1, 2, 5, 31, CMD_BATCH_K, CMD_BATCH_K + 1, 100, 0};
        k = ks[rng_next() % 8];
        len += snprintf(request + len, cap - (size_t)len, " %s %ld", radius ? "LIMIT" : "K", k);
    }
    bool where = rng_next() % 8 == 0;
    if (where) {
        len += snprintf(request + len, cap - (size_t)len, " WHERE name != x");
    }
    if (!radius && rng_next() % 4 == 0) {
        len += snprintf(request + len, cap - (size_t)len, " MAXDIST %d",
                        (int)(rng_next() % 3000));
    }
    if (rng_next() % 3 == 0) {
        len += snprintf(request + len, cap - (size_t)len, " OPEN %s",
                        instants[rng_next() % 3]);
    }
    if (rng_next() % 3 == 0) {
        snprintf(request + len, cap - (size_t)len, " CRS %s", crs[rng_next() % 3]);
    }
    *batchable = !where && k <= CMD_BATCH_K;
}

static char *take_all(struct reply *r) {
    assert_false(reply_failed(r));
    size_t len = 0;
    char *got = reply_take(r, &len);
    return got ? got : strdup("");
}

/* Every request of a round runs twice: alone (no batch), and through a batch
 * where the eligible queries wait and cmd_batch_run() answers them. Each
 * request has its own session (format, CRS) and reply, as connections do,
 * except that some share one, whose answers must then come in dispatch
 * order. The bytes, the return codes and the counters must agree, and a
 * query must wait exactly when it may: valid, eligible, and the batch not
 * full (rounds go past CMD_BATCH_MAX). */
static void test_batched_queries_answer_as_queries_run_alone(void **state) {
    (void)state;
    enum { MAX_ROUND = CMD_BATCH_MAX + 8 };
    static const enum reply_format formats[] = {REPLY_TEXT, REPLY_JSON, REPLY_GEOJSON};
    struct cmd_batch *batch = cmd_batch_new();
    assert_non_null(batch);
    struct cmd_stats alone_stats = {0}, batch_stats = {0};
    struct cmd_env alone_env = {.catalog = fx->catalog, .stats = &alone_stats};
    struct cmd_env batch_env = {.catalog = fx->catalog, .stats = &batch_stats, .batch = batch};
    size_t total_batched = 0;
    for (int round = 0; round < 300; round++) {
        size_t n = rng_next() % 4 == 0 ? MAX_ROUND : rng_next() % (MAX_ROUND + 1);
        static char requests[MAX_ROUND][256];
        bool batchable[MAX_ROUND];
        struct cmd_session sessions[MAX_ROUND];
        size_t reply_of[MAX_ROUND];
        struct reply alone[MAX_ROUND], batched[MAX_ROUND];
        int alone_rc[MAX_ROUND], batch_rc[MAX_ROUND], run_rc[CMD_BATCH_MAX];
        size_t waiting[CMD_BATCH_MAX], n_waiting = 0;
        for (size_t i = 0; i < n; i++) {
            random_batch_request(requests[i], sizeof requests[i], &batchable[i]);
            cmd_session_init(&sessions[i]);
            sessions[i].format = formats[rng_next() % 3];
            sessions[i].crs = rng_next() % 4 == 0 ? GEO_CRS_GCJ02 : GEO_CRS_WGS84;
            /* One request in four shares the reply of an earlier one. */
            reply_of[i] = i > 0 && rng_next() % 4 == 0 ? reply_of[rng_next() % i] : i;
            reply_init(&alone[i]);
            reply_init(&batched[i]);
        }
        for (size_t i = 0; i < n; i++) {
            char line[256];
            struct cmd_session s = sessions[i];
            snprintf(line, sizeof line, "%s", requests[i]);
            alone_rc[i] = cmd_execute(&alone_env, &s, line, strlen(line), &alone[reply_of[i]]);
        }
        for (size_t i = 0; i < n; i++) {
            static char lines[MAX_ROUND][256]; /* the argv of waiting queries live on */
            struct cmd_session s = sessions[i];
            snprintf(lines[i], sizeof lines[i], "%s", requests[i]);
            size_t before = reply_len(&batched[reply_of[i]]);
            batch_rc[i] = cmd_execute(&batch_env, &s, lines[i], strlen(lines[i]),
                                      &batched[reply_of[i]]);
            bool may_wait = alone_rc[i] == 0 && batchable[i] && n_waiting < CMD_BATCH_MAX;
            if (may_wait != (batch_rc[i] == CMD_BATCHED)) {
                fail_msg("request \"%s\": alone %d, in a batch %d (%zu waiting)", requests[i],
                         alone_rc[i], batch_rc[i], n_waiting);
            }
            if (batch_rc[i] == CMD_BATCHED) {
                assert_int_equal(reply_len(&batched[reply_of[i]]), before);
                waiting[n_waiting++] = i;
                /* A reply shared with a later request: its answer must come
                 * before theirs, so run the batch now, as the server does
                 * before it runs that connection's next request. */
                bool shared = false;
                for (size_t j = i + 1; j < n; j++) {
                    shared |= reply_of[j] == reply_of[i];
                }
                if (shared) {
                    assert_int_equal(cmd_batch_count(batch), n_waiting);
                    cmd_batch_run(&batch_env, batch, run_rc);
                    for (size_t w = 0; w < n_waiting; w++) {
                        batch_rc[waiting[w]] = run_rc[w];
                    }
                    total_batched += n_waiting;
                    n_waiting = 0;
                }
            }
        }
        assert_int_equal(cmd_batch_count(batch), n_waiting);
        cmd_batch_run(&batch_env, batch, run_rc);
        assert_int_equal(cmd_batch_count(batch), 0);
        for (size_t w = 0; w < n_waiting; w++) {
            batch_rc[waiting[w]] = run_rc[w];
        }
        total_batched += n_waiting;
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(batch_rc[i], alone_rc[i]);
            char *want = take_all(&alone[i]), *got = take_all(&batched[i]);
            if (strcmp(got, want) != 0) {
                fail_msg("round %d, reply %zu\n got: \"%s\"\nwant: \"%s\"", round, i, got,
                         want);
            }
            free(want);
            free(got);
            reply_close(&alone[i]);
            reply_close(&batched[i]);
        }
    }
    assert_int_equal(batch_stats.requests, alone_stats.requests);
    assert_int_equal(batch_stats.errors, alone_stats.errors);
    assert_int_equal(batch_stats.batched_queries, total_batched);
    assert_true(batch_stats.batches > 0 && batch_stats.batches < total_batched);
    assert_int_equal(alone_stats.batches, 0);
    assert_true(total_batched > 3000); /* the test did test batches */
    cmd_batch_free(batch);
}

/* ---- Catalogue -------------------------------------------------------------------- */

static void test_catalog_keeps_id_and_name_lengths(void **state) {
    (void)state;
    struct catalog *c = catalog_new();
    assert_non_null(c);
    static const size_t lengths[] = {1, 8, 254, 255, 256, 300};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        char id[301];
        memset(id, 'a' + (int)i, lengths[i]);
        id[lengths[i]] = '\0';
        struct store_facility f = {.id = id, .category = STORE_CAT_SCHOOL, .name = "n",
                                   .where = {36.2, 120.4}};
        assert_int_equal(catalog_put(c, &f), 0);
        uint32_t slot;
        struct catalog_facility got;
        assert_int_equal(catalog_find(c, id, &slot), 0);
        assert_int_equal(catalog_get(c, slot, &got), 0);
        assert_string_equal(got.id, id);
        assert_int_equal(got.id_len, lengths[i] <= 255 ? lengths[i] : 0);
        assert_int_equal(got.n_attrs, 0);
        /* Names of the same lengths, given by a second put of the same id. */
        f.name = id;
        assert_int_equal(catalog_put(c, &f), 0);
        assert_int_equal(catalog_get(c, slot, &got), 0);
        assert_string_equal(got.name, id);
        assert_int_equal(got.name_len, lengths[i] <= 254 ? lengths[i] : 0);
    }
    catalog_free(c);
}

static void test_catalog_put_and_remove_agree_with_a_plain_array(void **state) {
    (void)state;
    struct catalog *c = catalog_new();
    assert_non_null(c);
    enum { N_IDS = 3000 };
    static bool present[N_IDS];
    static int category[N_IDS];
    static int version[N_IDS];
    static const char *const subtypes[] = {"", "public", "shared", "canteen", "primary"};
    memset(present, 0, sizeof present);
    for (int op = 0; op < 20000; op++) {
        int i = (int)(rng_next() % N_IDS);
        char id[32];
        snprintf(id, sizeof id, "id-%d", i);
        if (rng_next() % 3 == 0) {
            int ret = catalog_remove(c, id);
            assert_int_equal(ret, present[i] ? 0 : CATALOG_ERR_NOTFOUND);
            present[i] = false;
        } else {
            category[i] = (int)(rng_next() % STORE_CAT_COUNT);
            char name[32];
            /* One name in three holds a tab: its record is not plain text. */
            snprintf(name, sizeof name, "n%d%s-%d", i, op % 3 == 0 ? "\t" : "", op);
            char attrs[96];
            version[i] = op;
            snprintf(attrs, sizeof attrs, "{\"v\": %d, \"ok\": %s, \"tag\": \"t%d\"}", op,
                     op % 2 ? "true" : "false", op % 7);
            struct store_facility f = {.id = id, .category = category[i], .name = name,
                                       .subtype = subtypes[op % 5], .attrs_json = attrs,
                                       .where = {rng_deg(36, 37), rng_deg(120, 121)}};
            assert_int_equal(catalog_put(c, &f), 0);
            present[i] = true;
        }
    }
    size_t live = 0, per[STORE_CAT_COUNT] = {0};
    for (int i = 0; i < N_IDS; i++) {
        char id[32];
        snprintf(id, sizeof id, "id-%d", i);
        uint32_t slot;
        int ret = catalog_find(c, id, &slot);
        assert_int_equal(ret, present[i] ? 0 : CATALOG_ERR_NOTFOUND);
        if (present[i]) {
            struct catalog_facility f;
            assert_int_equal(catalog_get(c, slot, &f), 0);
            assert_string_equal(f.id, id);
            assert_int_equal(f.id_len, strlen(id));
            assert_int_equal(f.n_attrs, 3);
            assert_int_equal(f.category, category[i]);
            char name[32];
            snprintf(name, sizeof name, "n%d%s-%d", i, version[i] % 3 == 0 ? "\t" : "",
                     version[i]);
            assert_string_equal(f.name, name);
            assert_int_equal(f.name_len, strlen(name));
            assert_int_equal(f.plain_text, version[i] % 3 != 0);
            /* The attributes and subtype of the last put, typed. */
            assert_string_equal(f.subtype, subtypes[version[i] % 5]);
            struct catalog_attr a[4];
            assert_int_equal(catalog_attrs(c, slot, a, 4), 3);
            assert_string_equal(a[0].key, "v");
            assert_int_equal(a[0].type, CATALOG_NUM);
            assert_true(a[0].num == version[i]);
            assert_int_equal(a[1].type, CATALOG_BOOL);
            assert_true(a[1].num == (version[i] % 2 ? 1.0 : 0.0));
            char tag[16];
            snprintf(tag, sizeof tag, "t%d", version[i] % 7);
            assert_string_equal(a[2].text, tag);
            struct catalog_cond cond = {.key = catalog_key_find(c, "v"), .op = CATALOG_EQ,
                                        .text = "", .is_num = true, .num = version[i]};
            assert_true(catalog_matches(c, slot, &cond, 1));
            cond.num += 1;
            assert_false(catalog_matches(c, slot, &cond, 1));
            live++;
            per[category[i]]++;
        }
    }
    assert_int_equal(catalog_count(c), live);
    assert_int_equal(geo_index_count(catalog_index(c)), live);
    for (int k = 0; k < STORE_CAT_COUNT; k++) {
        assert_int_equal(catalog_count_category(c, k), per[k]);
    }
    catalog_free(c);
}

/* The value filter OPEN gives the index: the timetable number kept with
 * each entry, checked at one week minute. */
struct open_value_ctx {
    const struct catalog *c;
    int week_minute;
};

static bool open_value_keeps(uint32_t timetable_no, const void *ctx) {
    const struct open_value_ctx *o = ctx;
    return catalog_timetable_is_open(o->c, timetable_no, o->week_minute);
}

/* OPEN's per-candidate check (catalog_is_open_in_week() at an instant
 * resolved once), and the same check as the search makes it (the index's
 * value filter on the number kept with the entry: a search at the facility's
 * own position, its category only, within 0 m), against the hours text each
 * facility was last put with, parsed and checked with hours_is_open_at(),
 * through puts that change a facility's timetable or category, removals (a
 * free slot is never open, and the index no longer has it) and texts that do
 * not parse (never open). */
static void test_catalog_open_agrees_with_the_last_put_hours(void **state) {
    (void)state;
    static const char *const texts[] = {
        "", "24/7", "Mo-Fr 08:00-17:00", "Mo-Sa 07:30-11:30,13:30-17:00", "Sa,Su 09:00-21:00",
        "22:00-02:00", "Fr-Mo 20:00-03:30; Su off", "Mo-Su 06:30-19:00; We 10:00-10:01",
        "Mo-Fr 08:00-12:00; PH off", "Mo-Xx 08:00-09:00", "Tu,Th 00:00-24:00",
    };
    /* More ids than the 1,024 slots a catalogue starts with, so that the
     * timetable numbers grow with the slots. */
    enum { N_TEXTS = sizeof texts / sizeof texts[0], N_IDS = 1500 };
    struct catalog *c = catalog_new();
    assert_non_null(c);
    static const char *counted[N_IDS]; /* the text OPEN reads; NULL once removed */
    static uint32_t last_slot[N_IDS];
    static bool ever[N_IDS];
    static struct geo_point last_where[N_IDS];
    static int last_category[N_IDS];
    memset(counted, 0, sizeof counted);
    memset(ever, 0, sizeof ever);
    long checks = 0, open = 0;
    for (int op = 0; op < 6000; op++) {
        int i = (int)(rng_next() % N_IDS);
        char id[32];
        snprintf(id, sizeof id, "oh-%d", i);
        if (rng_next() % 4 == 0) {
            catalog_remove(c, id);
            counted[i] = NULL;
        } else {
            int category = (int)(rng_next() % STORE_CAT_COUNT);
            const char *hours = texts[rng_next() % N_TEXTS];
            const char *alt = texts[rng_next() % N_TEXTS];
            const char *alt_key = category == STORE_CAT_PARKING      ? "shared_hours"
                                  : category == STORE_CAT_MEAL_POINT ? "meal_hours"
                                                                     : "other_hours";
            bool has_alt = rng_next() % 2;
            char attrs[160] = "{}";
            if (has_alt) {
                snprintf(attrs, sizeof attrs, "{\"%s\": \"%s\"}", alt_key, alt);
            }
            struct store_facility f = {.id = id, .category = category, .name = "n",
                                       .hours = hours, .attrs_json = attrs,
                                       .where = {rng_deg(36, 37), rng_deg(120, 121)}};
            assert_int_equal(catalog_put(c, &f), 0);
            bool alt_counts = has_alt && alt[0] != '\0' &&
                              (category == STORE_CAT_PARKING ||
                               category == STORE_CAT_MEAL_POINT);
            counted[i] = alt_counts ? alt : hours;
            assert_int_equal(catalog_find(c, id, &last_slot[i]), 0);
            last_where[i] = f.where;
            last_category[i] = category;
            ever[i] = true;
        }
        if (op % 200 != 199) {
            continue;
        }
        for (int j = 0; j < N_IDS; j++) {
            if (!ever[j]) {
                continue;
            }
            struct hours h;
            bool parsed = counted[j] && hours_parse(counted[j], &h, NULL) == 0;
            for (int k = 0; k < 40; k++) {
                int64_t t = 1700000000 + (int64_t)(rng_next() % 400000000);
                if (k % 4 == 0) { /* within a minute of a Shanghai midnight */
                    t = (t / 86400) * 86400 - 8 * 3600 + (int64_t)(rng_next() % 121) - 60;
                }
                bool want = parsed && hours_is_open_at(&h, t, HOURS_DEFAULT_UTC_OFFSET_MIN);
                int wm = hours_week_minute(t, HOURS_DEFAULT_UTC_OFFSET_MIN);
                if (catalog_is_open_in_week(c, last_slot[j], wm) != want) {
                    fail_msg("oh-%d \"%s\" t=%lld: expected %d", j,
                             counted[j] ? counted[j] : "(removed)", (long long)t, want);
                }
                assert_int_equal(catalog_is_open_at(c, last_slot[j], t,
                                                    HOURS_DEFAULT_UTC_OFFSET_MIN),
                                 want);
                if (k % 4 == 1) {
                    struct open_value_ctx ov = {c, wm};
                    struct geo_query q = {.from = last_where[j],
                                          .layer_mask = 1u << last_category[j], .k = 1,
                                          .max_distance_m = 0.0,
                                          .value_filter = open_value_keeps, .value_ctx = &ov};
                    struct geo_hit hit;
                    size_t n_hit = 0;
                    assert_int_equal(geo_index_nearest(catalog_index(c), &q, &hit, &n_hit), 0);
                    if (n_hit != (size_t)want || (want && hit.handle != last_slot[j])) {
                        fail_msg("oh-%d \"%s\" t=%lld: the index's value filter found %zu",
                                 j, counted[j] ? counted[j] : "(removed)", (long long)t, n_hit);
                    }
                }
                open += want;
                checks++;
            }
        }
    }
    assert_true(open > checks / 10 && open < checks - checks / 10);
    uint32_t top_slot = 0;
    for (int j = 0; j < N_IDS; j++) {
        top_slot = ever[j] && last_slot[j] > top_slot ? last_slot[j] : top_slot;
    }
    assert_true(top_slot >= 1024); /* the slots, and the timetable numbers, grew */
    assert_false(catalog_is_open_in_week(c, UINT32_MAX, 0));
    assert_false(catalog_is_open_in_week(c, last_slot[0], -1));
    assert_false(catalog_is_open_in_week(c, last_slot[0], HOURS_MINUTES_PER_WEEK));
    catalog_free(c);
}

/* ---- Writes ------------------------------------------------------------------------- */

/* Queues each request (all must be writes), runs them as one group against
 * the real store, and returns the answers concatenated. */
static char *run_group(size_t n, const char *const *requests) {
    struct cmd_write *head = NULL, **tail = &head;
    for (size_t i = 0; i < n; i++) {
        char line[1024];
        snprintf(line, sizeof line, "%s", requests[i]);
        int ret = cmd_execute(&fx->env, &fx->session, line, strlen(line), &fx->out);
        if (ret != CMD_QUEUED) {
            fail_msg("\"%s\" was not queued (%d)", requests[i], ret);
        }
        struct cmd_write *w = fx->session.pending;
        fx->session.pending = NULL;
        assert_non_null(w);
        *tail = w;
        tail = &w->next;
    }
    assert_int_equal(reply_len(&fx->out), 0); /* no answer before the commit */
    cmd_writes_run(fx->store, head);
    while (head) {
        struct cmd_write *next = head->next;
        cmd_write_finish(&fx->env, &fx->session, head, &fx->out);
        cmd_write_free(head);
        head = next;
    }
    size_t len;
    char *got = reply_take(&fx->out, &len);
    return got ? got : strdup("");
}

static void expect_write(const char *request, const char *want) {
    char *got = run_group(1, &request);
    if (strcmp(got, want) != 0) {
        fail_msg("request \"%s\"\n got: \"%s\"\nwant: \"%s\"", request, got, want);
    }
    free(got);
}

static int count_in_store(const struct store_facility *f, void *ctx) {
    (void)f;
    ++*(int *)ctx;
    return 0;
}

struct kept {
    char address[64];
    char phone[64];
};

static int copy_address_phone(const struct store_facility *f, void *ctx) {
    struct kept *keep = ctx;
    snprintf(keep->address, sizeof keep->address, "%s", f->address);
    snprintf(keep->phone, sizeof keep->phone, "%s", f->phone);
    return 0;
}

static void test_put_and_del_are_durable_and_visible_to_queries(void **state) {
    (void)state;
    expect_write("PUT w-1 school 36.3 120.6 \"name=新 学校\" subtype=primary "
                 "\"hours=Mo-Fr 08:00-17:00\" level=primary",
                 "OK 1\nw-1\tschool\t新 学校\t36.300000\t120.600000\t-\tlevel=primary\n");
    expect("NEAREST school 36.3 120.6 K 1",
           "OK 1\nw-1\tschool\t新 学校\t36.300000\t120.600000\t0.0\tlevel=primary\n");
    int found = 0;
    assert_int_equal(store_facility_get(fx->store, "w-1", count_in_store, &found), 0);
    assert_int_equal(found, 1);
    /* Replacing moves it and replaces every field. */
    expect_write("put w-1 parking 36.31 120.61 name=moved free=17 capacity=40",
                 "OK 1\nw-1\tparking\tmoved\t36.310000\t120.610000\t-\tfree=17\tcapacity=40\n");
    expect("NEAREST school 36.3 120.6 K 1 MAXDIST 100", "OK 0\n");
    expect("NEAREST parking 36.31 120.61 K 1 WHERE free = 17",
           "OK 1\nw-1\tparking\tmoved\t36.310000\t120.610000\t0.0\tfree=17\tcapacity=40\n");
    expect_write("DEL w-1", "OK 0\n");
    expect("GET w-1", "ERR NOTFOUND no facility 'w-1'\n");
    assert_int_equal(store_facility_get(fx->store, "w-1", count_in_store, &found),
                     STORE_ERR_NOTFOUND);
    expect_write("DEL w-1", "ERR NOTFOUND no facility 'w-1'\n");
}

static void test_one_group_applies_its_writes_in_order(void **state) {
    (void)state;
    const char *group[] = {
        "PUT w-2 school 36.3 120.6 name=first",
        "PUT w-3 school 36.3 120.7 name=other",
        "PUT w-2 school 36.3 120.6 name=second",
        "DEL w-3",
        "DEL w-404",
    };
    char *got = run_group(5, group);
    assert_string_equal(got, "OK 1\nw-2\tschool\tfirst\t36.300000\t120.600000\t-\n"
                             "OK 1\nw-3\tschool\tother\t36.300000\t120.700000\t-\n"
                             "OK 1\nw-2\tschool\tsecond\t36.300000\t120.600000\t-\n"
                             "OK 0\n"
                             "ERR NOTFOUND no facility 'w-404'\n");
    free(got);
    expect("GET w-2", "OK 1\nw-2\tschool\tsecond\t36.300000\t120.600000\t-\n");
    expect("GET w-3", "ERR NOTFOUND no facility 'w-3'\n");
    expect_write("DEL w-2", "OK 0\n");
    char want[64];
    snprintf(want, sizeof want, "facilities\t%d\n", N_FACILITIES);
    char *stats = run("STATS");
    assert_non_null(strstr(stats, want));
    free(stats);
}

static void test_set_changes_only_the_given_fields(void **state) {
    (void)state;
    expect_write("PUT w-6 parking 36.3 120.6 name=orig \"address=1 Road\" phone=123 free=3 "
                 "capacity=40",
                 "OK 1\nw-6\tparking\torig\t36.300000\t120.600000\t-\tfree=3\tcapacity=40\n");
    expect_write("SET w-6 name=renamed",
                 "OK 1\nw-6\tparking\trenamed\t36.300000\t120.600000\t-\tfree=3\tcapacity=40\n");
    expect_write("SET w-6 free=17",
                 "OK 1\nw-6\tparking\trenamed\t36.300000\t120.600000\t-\tfree=17\tcapacity=40\n");
    expect_write("SET w-6 capacity= price=2.5",
                 "OK 1\nw-6\tparking\trenamed\t36.300000\t120.600000\t-\tfree=17\tprice=2.5\n");
    expect("NEAREST parking 36.3 120.6 K 1 WHERE free >= 17 WHERE price < 3",
           "OK 1\nw-6\tparking\trenamed\t36.300000\t120.600000\t0.0\tfree=17\tprice=2.5\n");
    expect_write("set w-6 lat=36.31 lon=120.61 category=school free=",
                 "OK 1\nw-6\tschool\trenamed\t36.310000\t120.610000\t-\tprice=2.5\n");
    expect("NEAREST school 36.31 120.61 K 1",
           "OK 1\nw-6\tschool\trenamed\t36.310000\t120.610000\t0.0\tprice=2.5\n");
    /* The fields SET did not name are still what PUT stored. */
    struct kept keep = {"", ""};
    assert_int_equal(store_facility_get(fx->store, "w-6", copy_address_phone, &keep), 0);
    assert_string_equal(keep.address, "1 Road");
    assert_string_equal(keep.phone, "123");
    const char *bad_hours = "SET w-6 \"hours=Mo-Xx 08:00-09:00\"";
    char *got = run_group(1, &bad_hours);
    assert_true(strncmp(got, "ERR ARG opening_hours: ", 23) == 0);
    free(got);
    expect("GET w-6", "OK 1\nw-6\tschool\trenamed\t36.310000\t120.610000\t-\tprice=2.5\n");
    expect_write("SET w-404 name=x", "ERR NOTFOUND no facility 'w-404'\n");
    expect("SET w-6 lat=36.3", "ERR ARG lat and lon are set together\n");
    expect("SET w-6 name=a name=b", "ERR ARG field name given twice\n");
    expect("SET w-6 price=1 price=2", "ERR ARG field price given twice\n");
    expect("SET w-6 colour",
           "ERR ARG 'colour' is not <field>=<value> (usage: SET <id> <field>=<value>...)\n");
    expect("SET w-6 =red",
           "ERR ARG '=red' is not <field>=<value> (usage: SET <id> <field>=<value>...)\n");
    expect("SET w-6 id=w-7", "ERR ARG id is given by position (usage: SET <id> "
                             "<field>=<value>...)\n");
    expect("SET w-6 category=zoo", "ERR UNKNOWN unknown category 'zoo' (see CATEGORIES)\n");
    expect("SET w-6 lat=north lon=120", "ERR ARG latitude 'north' is not a number\n");
    assert_null(fx->session.pending);
    expect_write("DEL w-6", "OK 0\n");
}

/* A meal point's meal_hours are read from the catalogue's string arena after
 * the attributes that follow them were added; a long attribute after them
 * makes the arena move meanwhile. Every such facility must still be open in
 * its meal hours and closed outside them (under ASan, a stale pointer to the
 * old arena fails here at once). */
static void test_meal_hours_survive_the_arena_moving_under_them(void **state) {
    (void)state;
    enum { GROUPS = 8, PER_GROUP = 50 };
    char note[801];
    memset(note, 'x', sizeof note - 1);
    note[sizeof note - 1] = '\0';
    static char lines[PER_GROUP][1000];
    const char *group[PER_GROUP];
    for (int g = 0; g < GROUPS; g++) {
        for (int i = 0; i < PER_GROUP; i++) {
            snprintf(lines[i], sizeof lines[i],
                     "PUT am-%d-%02d meal_point %.6f %.6f meal_hours=\"Mo-Su 11:00-13:00\" "
                     "note=%s", g, i, 36.30 + g * 0.01, 120.30 + i * 0.001, note);
            group[i] = lines[i];
        }
        free(run_group(PER_GROUP, group));
    }
    for (int g = 0; g < GROUPS; g++) {
        for (int i = 0; i < PER_GROUP; i += 7) {
            char request[160], want[32];
            snprintf(want, sizeof want, "OK 1\nam-%d-%02d\t", g, i);
            snprintf(request, sizeof request,
                     "RADIUS meal_point %.6f %.6f 1 OPEN 2026-12-01T12:00", 36.30 + g * 0.01,
                     120.30 + i * 0.001);
            char *got = run(request);
            if (strncmp(got, want, strlen(want)) != 0) {
                fail_msg("%s\n got: %.80s", request, got);
            }
            free(got);
            snprintf(request, sizeof request,
                     "RADIUS meal_point %.6f %.6f 1 OPEN 2026-12-01T14:00", 36.30 + g * 0.01,
                     120.30 + i * 0.001);
            expect(request, "OK 0\n");
        }
    }
}

/* The ids of a text answer's records, in order, joined by spaces. */
static void answer_ids(const char *answer, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    const char *line = strchr(answer, '\n');
    while (line && line[1] != '\0') {
        line++;
        size_t id_len = strcspn(line, "\t\n");
        len += (size_t)snprintf(out + len, cap - len, "%s%.*s", len ? " " : "", (int)id_len,
                                line);
        assert_true(len < cap);
        line = strchr(line, '\n');
    }
}

/* OPEN is the search's value filter, on the timetable number the index keeps
 * with each facility: a PUT that gives an existing facility new hours (its
 * opening hours, a meal point's meal_hours, a parking's shared_hours), where
 * it is or with a move, must change what OPEN finds at once, for queries run
 * alone and in a batch. The oracle: the hours each facility was last put
 * with, checked with hours_is_open_at(), around a spot 30 km from the
 * fixture's facilities. The test also counts the queries whose answer by
 * the hours before the round's puts differs, so that stale timetable numbers
 * in the index would fail it. */
static void test_put_of_new_hours_changes_what_open_finds(void **state) {
    (void)state;
    enum { N = 24, ROUNDS = 60 };
    static const char *const texts[] = {
        "24/7", "Mo-Fr 08:00-17:00", "Sa,Su 09:00-21:00", "22:00-02:00",
        "Mo-Su 06:30-19:00", "Tu,Th 00:00-24:00", "Mo-Fr 08:00-12:00,14:00-18:00", "",
    };
    static const struct {
        const char *text; /* Shanghai time */
        int day, hour, minute;
    } instants[] = {{"2026-12-01T09:00", 1, 9, 0},   {"2026-12-05T22:30", 5, 22, 30},
                    {"2026-12-06T12:00", 6, 12, 0},  {"2026-12-02T13:00", 2, 13, 0},
                    {"2026-12-03T01:00", 3, 1, 0},   {"2026-12-04T17:45", 4, 17, 45}};
    static const int categories[] = {STORE_CAT_ELDER_CARE, STORE_CAT_MEAL_POINT,
                                     STORE_CAT_PARKING};
    enum {
        N_TEXTS = sizeof texts / sizeof texts[0],
        N_INSTANTS = sizeof instants / sizeof instants[0],
    };
    struct oh_facility {
        char id[16];
        int category;
        char lat[16], lon[16];
        struct geo_point where;
        const char *hours; /* the timetable OPEN reads; "" for none */
    } m[N], m_before[N];
    static char lines[N][256];
    const char *group[N];
    struct cmd_batch *batch = cmd_batch_new();
    assert_non_null(batch);
    struct cmd_stats batch_stats = {0};
    struct cmd_env batch_env = {.catalog = fx->catalog, .stats = &batch_stats, .batch = batch};
    size_t changed = 0, nonempty = 0;
    for (int round = 0; round <= ROUNDS; round++) {
        /* Round 0 puts them all; then a few at a time get new hours, a third
         * of those also a new place. */
        size_t n_puts = 0;
        memcpy(m_before, m, sizeof m);
        for (int i = 0; i < N; i++) {
            if (round > 0 && rng_next() % 6 != 0) {
                continue;
            }
            if (round == 0) {
                snprintf(m[i].id, sizeof m[i].id, "oh-w-%02d", i);
                m[i].category = categories[i % 3];
            }
            if (round == 0 || rng_next() % 3 == 0) {
                snprintf(m[i].lat, sizeof m[i].lat, "%.6f", rng_deg(36.49, 36.51));
                snprintf(m[i].lon, sizeof m[i].lon, "%.6f", rng_deg(120.79, 120.81));
                m[i].where = (struct geo_point){strtod(m[i].lat, NULL), strtod(m[i].lon, NULL)};
            }
            m[i].hours = texts[rng_next() % N_TEXTS];
            /* A meal point or parking keeps opening hours of its own too, which
             * OPEN must not read while the other hours are there. */
            const char *key = m[i].category == STORE_CAT_MEAL_POINT ? "meal_hours"
                              : m[i].category == STORE_CAT_PARKING  ? "shared_hours"
                                                                    : "hours";
            if (m[i].category != STORE_CAT_ELDER_CARE && m[i].hours[0] == '\0') {
                m[i].hours = "Mo-Su 03:00-04:00"; /* then the opening hours count */
                key = "hours";
            }
            int len = snprintf(lines[n_puts], sizeof lines[n_puts], "PUT %s %s %s %s name=n%d",
                               m[i].id, store_category_name(m[i].category), m[i].lat,
                               m[i].lon, i);
            if (m[i].hours[0] != '\0') {
                len += snprintf(lines[n_puts] + len, sizeof lines[n_puts] - (size_t)len,
                                " \"%s=%s\"", key, m[i].hours);
            }
            if (strcmp(key, "hours") != 0) {
                snprintf(lines[n_puts] + len, sizeof lines[n_puts] - (size_t)len,
                         " \"hours=Mo-Su 03:00-04:00\"");
            }
            group[n_puts] = lines[n_puts];
            n_puts++;
        }
        /* The answers by the hours before the puts, for the count above. */
        char before[4][512] = {"", "", "", ""};
        char requests[4][160];
        int64_t at[4];
        struct geo_point from[4];
        bool radius[4];
        for (int q = 0; q < 4; q++) {
            int t = (int)(rng_next() % N_INSTANTS);
            radius[q] = q % 2;
            char lat[16], lon[16];
            snprintf(lat, sizeof lat, "%.6f", rng_deg(36.49, 36.51));
            snprintf(lon, sizeof lon, "%.6f", rng_deg(120.79, 120.81));
            from[q] = (struct geo_point){strtod(lat, NULL), strtod(lon, NULL)};
            snprintf(requests[q], sizeof requests[q],
                     radius[q] ? "RADIUS * %s %s 5000 LIMIT 30 OPEN %s"
                               : "NEAREST * %s %s K 5 MAXDIST 5000 OPEN %s",
                     lat, lon, instants[t].text);
            struct tm tm = {.tm_year = 126, .tm_mon = 11, .tm_mday = instants[t].day,
                            .tm_hour = instants[t].hour, .tm_min = instants[t].minute};
            at[q] = (int64_t)timegm(&tm) - 8 * 3600;
        }
        for (int pass = round == 0 ? 1 : 0; pass < 2; pass++) {
            if (pass == 1) {
                char *got = run_group(n_puts, group);
                const char *p = got;
                for (size_t w = 0; w < n_puts; w++, p = strchr(p, '\n') + 1) {
                    if (strncmp(p, "OK 1\n", 5) != 0) {
                        fail_msg("%s\n got: %s", group[w], p);
                    }
                    p = strchr(p, '\n') + 1; /* the record */
                }
                free(got);
            }
            for (int q = 0; q < 4; q++) {
                /* The oracle: open facilities within 5 km, nearest first, by
                 * the model before the puts (pass 0) or after them. */
                const struct oh_facility *mm = pass == 0 ? m_before : m;
                struct {
                    double d;
                    int i;
                } hit[N];
                size_t n_hit = 0;
                for (int i = 0; i < N; i++) {
                    struct hours h;
                    double d = geo_distance_m(from[q], mm[i].where);
                    if (mm[i].hours[0] != '\0' && hours_parse(mm[i].hours, &h, NULL) == 0 &&
                        hours_is_open_at(&h, at[q], 480) && d <= 5000.0) {
                        size_t j = n_hit++;
                        for (; j > 0 && hit[j - 1].d > d; j--) {
                            hit[j] = hit[j - 1];
                        }
                        hit[j].d = d;
                        hit[j].i = i;
                    }
                }
                size_t k = radius[q] ? 30 : 5;
                char want[512] = "";
                size_t len = 0;
                for (size_t j = 0; j < n_hit && j < k; j++) {
                    len += (size_t)snprintf(want + len, sizeof want - len, "%s%s",
                                            len ? " " : "", mm[hit[j].i].id);
                }
                if (pass == 0) {
                    snprintf(before[q], sizeof before[q], "%s", want);
                    continue;
                }
                changed += round > 0 && strcmp(before[q], want) != 0;
                nonempty += want[0] != '\0';
                char *alone = run(requests[q]);
                char ids[512];
                answer_ids(alone, ids, sizeof ids);
                if (strcmp(ids, want) != 0) {
                    fail_msg("round %d: %s\n got: %s\nwant: %s", round, requests[q], ids,
                             want);
                }
                /* The same query through a batch answers the same bytes. */
                char line[160];
                snprintf(line, sizeof line, "%s", requests[q]);
                struct cmd_session session;
                cmd_session_init(&session);
                struct reply out;
                reply_init(&out);
                assert_int_equal(cmd_execute(&batch_env, &session, line, strlen(line), &out),
                                 CMD_BATCHED);
                int rc = -1;
                cmd_batch_run(&batch_env, batch, &rc);
                assert_int_equal(rc, 0);
                char *batched = take_all(&out);
                assert_string_equal(batched, alone);
                free(batched);
                reply_close(&out);
                free(alone);
            }
        }
    }
    assert_true(nonempty > ROUNDS);          /* OPEN found something, often */
    assert_true(changed > ROUNDS);           /* and the puts changed what it found */
    assert_int_equal(batch_stats.batched_queries, 4 * (ROUNDS + 1));
    cmd_batch_free(batch);
    for (int i = 0; i < N; i++) {
        snprintf(lines[i], sizeof lines[i], "DEL oh-w-%02d", i);
        group[i] = lines[i];
    }
    free(run_group(N, group));
}

static void test_put_refuses_bad_records_before_queueing(void **state) {
    (void)state;
    static const char usage[] = "(usage: PUT <id> <category> <lat> <lon> [<field>=<value>]...)";
    char want[512];
    expect("PUT w-5 * 36.3 120.6 name=x", "ERR UNKNOWN unknown category '*' (see CATEGORIES)\n");
    expect("PUT w-5 school 120.6 36.3 name=x",
           "ERR RANGE latitude 120.6 is outside [-90, 90] (latitude comes first)\n");
    snprintf(want, sizeof want, "ERR ARG 'y' is not <field>=<value> %s\n", usage);
    expect("PUT w-5 school 36.3 120.6 name=x y", want);
    /* The bare name of the grammar before issue 5 is refused. */
    snprintf(want, sizeof want, "ERR ARG 'x' is not <field>=<value> %s\n", usage);
    expect("PUT w-5 school 36.3 120.6 x", want);
    snprintf(want, sizeof want, "ERR ARG lat is given by position %s\n", usage);
    expect("PUT w-5 school 36.3 120.6 lat=36", want);
    snprintf(want, sizeof want, "ERR ARG category is given by position %s\n", usage);
    expect("PUT w-5 school 36.3 120.6 category=parking", want);
    expect("PUT w-5 school 36.3 120.6 phone=1 phone=2", "ERR ARG field phone given twice\n");
    expect("PUT w-5 elder_care 36.3 120.6 stars=many",
           "ERR ARG stars: expected a number, not 'many'\n");
    expect("PUT w-5 elder_care 36.3 120.6 dementia=maybe",
           "ERR ARG dementia: expected yes, no, true or false, not 'maybe'\n");
    char *got = run("PUT w/5 school 36.3 120.6 name=x");
    assert_true(strncmp(got, "ERR ARG id: ", 12) == 0);
    free(got);
    got = run("PUT w-5 school 36.3 120.6 name=x \"hours=Mo-Xx 08:00-09:00\"");
    assert_true(strncmp(got, "ERR ARG opening_hours: ", 23) == 0);
    free(got);
    got = run("PUT w-5 parking 36.3 120.6 name=x subtype=underwater");
    assert_true(strncmp(got, "ERR ARG subtype: ", 17) == 0);
    free(got);
    got = run("PUT w-5 elder_care 36.3 120.6 name=x stars=9");
    assert_true(strncmp(got, "ERR ARG stars: ", 15) == 0);
    free(got);
    got = run("PUT w-5 school 36.3 120.6 name=x level=university");
    assert_true(strncmp(got, "ERR ARG level: ", 15) == 0);
    free(got);
    assert_null(fx->session.pending);
    expect("GET w-5", "ERR NOTFOUND no facility 'w-5'\n");
}

static void test_put_types_attributes_like_the_data(void **state) {
    (void)state;
    /* Known kinds follow the catalogue; new names read as number, boolean or text. */
    expect_write("PUT w-8 doctor_team 36.3 120.6 name=t serves=cm-1;cm-9 team_size=4 "
                 "station=东站 night=true floors=3 \"note=a b\"",
                 "OK 1\nw-8\tdoctor_team\tt\t36.300000\t120.600000\t-\tserves=cm-1;cm-9"
                 "\tteam_size=4\tstation=东站\tnight=true\tfloors=3\tnote=a b\n");
    expect("NEAREST doctor_team 36.3 120.6 K 1 WHERE serves = cm-9 WHERE night = yes "
           "WHERE floors > 2",
           "OK 1\nw-8\tdoctor_team\tt\t36.300000\t120.600000\t0.0\tserves=cm-1;cm-9"
           "\tteam_size=4\tstation=东站\tnight=true\tfloors=3\tnote=a b\n");
    expect_write("PUT w-8 doctor_team 36.3 120.6 serves=cm-2",
                 "OK 1\nw-8\tdoctor_team\t\t36.300000\t120.600000\t-\tserves=cm-2\n");
    expect_write("PUT w-8 school 36.3 120.6 \"name=old style\" level=middle",
                 "OK 1\nw-8\tschool\told style\t36.300000\t120.600000\t-\tlevel=middle\n");
    /* SET types attributes by the category it moves the facility to. */
    expect_write("SET w-8 category=elder_care stars=4",
                 "OK 1\nw-8\telder_care\told style\t36.300000\t120.600000\t-\tlevel=middle"
                 "\tstars=4\n");
    expect("SET w-8 category=elder_care stars=many",
           "ERR ARG stars: expected a number, not 'many'\n");
    expect_write("DEL w-8", "OK 0\n");
}

/* ---- Documentation in sync ------------------------------------------------------------ */

static char *read_protocol_md(void) {
    FILE *f = fopen(NEARESTD_PROTOCOL_MD, "rb");
    assert_non_null(f);
    static char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void test_protocol_md_error_table_matches_errors_def(void **state) {
    (void)state;
    const char *doc = read_protocol_md();
    size_t rows = 0;
    for (const char *p = strstr(doc, "\n| `ERR "); p; p = strstr(p + 1, "\n| `ERR ")) {
        rows++;
    }
    assert_int_equal(rows, CMD_ERR_COUNT);
    for (int code = -1; code >= -CMD_ERR_COUNT; code--) {
        char row[128];
        snprintf(row, sizeof row, "\n| `ERR %s` | %s |", cmd_err_word(code),
                 cmd_err_message(code));
        if (!strstr(doc, row)) {
            fail_msg("PROTOCOL.md has no error row starting \"%s\"", row + 1);
        }
    }
}

static void test_protocol_md_shows_every_usage_line(void **state) {
    (void)state;
    const char *doc = read_protocol_md();
    size_t n = 0;
    const struct cmd_spec *t = cmd_table(&n);
    for (size_t i = 0; i < n; i++) {
        if (!strstr(doc, t[i].usage)) {
            fail_msg("PROTOCOL.md does not show \"%s\"", t[i].usage);
        }
    }
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)
    const struct CMUnitTest tests[] = {
        T(test_nearest_returns_k_closest_in_order),
        T(test_nearest_without_k_returns_five),
        T(test_nearest_maxdist_keeps_only_hits_within),
        T(test_radius_returns_everything_within_up_to_limit),
        T(test_radius_zero_finds_a_facility_at_its_own_position),
        T(test_get_returns_the_record_without_distance),
        T(test_records_flatten_tabs_and_newlines_in_names),
        T(test_categories_counts_each_category_and_lists_its_attributes),
        T(test_where_and_open_filter_inside_the_search),
        T(test_open_now_uses_the_current_time),
        T(test_crs_option_applies_to_one_request),
        T(test_where_errors_have_exact_lines),
        T(test_inarea_returns_the_facilities_inside_nearest_the_centre),
        T(test_serves_lists_the_areas_of_a_point_and_who_serves_them),
        T(test_areas_lists_every_area_or_one_kind),
        T(test_area_errors_have_exact_lines),
        T(test_writes_update_who_serves_an_area),
        T(test_crs_gcj02_converts_queries_and_answers),
        T(test_format_json_answers_one_object_a_line),
        T(test_json_answers_state_the_crs_of_their_positions),
        T(test_format_geojson_answers_feature_collections),
        T(test_format_geojson_areas_carry_their_polygons),
        T(test_json_records_carry_typed_attributes),
        T(test_ping_and_quit_answer_ok_0),
        T(test_blank_line_gets_no_answer),
        T(test_help_lists_every_command_from_the_table),
        T(test_stats_counts_requests_and_errors),
        T(test_errors_have_exact_lines),
        T(test_echoed_text_is_one_capped_line),
        T(test_command_names_are_found_as_a_case_blind_scan_finds_them),
        T(test_k_and_option_names_read_as_a_strtol_model_reads_them),
        T(test_catalog_keeps_id_and_name_lengths),
        T(test_microdegree_records_print_as_printf_would),
        T(test_every_microdegree_fraction_prints_as_printf_would),
        T(test_distances_print_as_printf_would),
        T(test_records_print_as_a_plain_printf_model_would),
        T(test_reply_echo_cuts_at_a_character_boundary),
        T(test_random_requests_get_exactly_one_answer),
    T(test_batched_queries_answer_as_queries_run_alone),
        T(test_catalog_put_and_remove_agree_with_a_plain_array),
        T(test_catalog_open_agrees_with_the_last_put_hours),
        T(test_area_polygons_written_at_load_are_those_written_per_request),
        T(test_put_and_del_are_durable_and_visible_to_queries),
        T(test_one_group_applies_its_writes_in_order),
        T(test_set_changes_only_the_given_fields),
        T(test_meal_hours_survive_the_arena_moving_under_them),
        T(test_put_of_new_hours_changes_what_open_finds),
        T(test_put_refuses_bad_records_before_queueing),
        T(test_put_types_attributes_like_the_data),
        T(test_protocol_md_error_table_matches_errors_def),
        T(test_protocol_md_shows_every_usage_line),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
