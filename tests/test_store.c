/* test_store.c: the SpatiaLite catalogue (data/store.h) on real database
 * files in a temporary directory.
 *
 * Covers create/open/close, put/each/delete against an in-memory oracle on
 * random records, validation (nothing written on a bad record), group commit,
 * the open errors (missing, corrupt, not ours, newer schema, read-only,
 * locked), the migration from schema 1, durability of an acknowledged write
 * across kill -9, and loading the bundled Licang dataset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <spatialite.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "store_schema.h"
#include "test_tmpdir.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static int setup(void **state)
{
    return tmpdir_fixture_setup(state, "test_store");
}

static int teardown(void **state)
{
    return tmpdir_fixture_teardown(state);
}

static const char *const small_facilities =
    "{\"type\":\"FeatureCollection\",\"features\":[\n"
    "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[120.394428,"
    "36.192482]},\"properties\":{\"id\":\"ec-001\",\"category\":\"elder_care\","
    "\"subtype\":\"institution\",\"name\":\"青岛市李沧区源庄康养中心\",\"address\":"
    "\"青岛市李沧区兴华路368号\",\"phone\":\"0532-0091-2955\",\"opening_hours\":\"24/7\","
    "\"stars\":2,\"beds\":75,\"dementia\":false}},\n"
    "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[120.378702,"
    "36.148458]},\"properties\":{\"id\":\"dt-001\",\"category\":\"doctor_team\","
    "\"subtype\":\"family_doctor\",\"name\":\"明塘社区家庭医生团队1\",\"address\":\"\","
    "\"phone\":\"\",\"opening_hours\":\"Mo-Fr 08:00-12:00,13:30-17:30\","
    "\"station\":\"明塘站\",\"team_size\":5,\"serves\":[\"cm-002\",\"cm-003\"]}},\n"
    "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[120.388583,"
    "36.169284]},\"properties\":{\"id\":\"sc-001\",\"category\":\"school\","
    "\"subtype\":\"primary\",\"name\":\"源苑小学\",\"address\":\"\",\"phone\":\"\","
    "\"opening_hours\":\"\",\"level\":\"primary\",\"ownership\":\"public\",\"group\":\"\","
    "\"status\":\"open\",\"catchment\":\"ca-001\"}}\n"
    "]}\n";

static const char *const small_areas =
    "{\"type\":\"FeatureCollection\",\"features\":[\n"
    "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[120.37,36.15],"
    "[120.39,36.15],[120.39,36.17],[120.37,36.17],[120.37,36.15]]]},\"properties\":"
    "{\"id\":\"cm-002\",\"kind\":\"community\",\"name\":\"明塘社区\",\"parent\":null,"
    "\"population\":5200}},\n"
    "{\"type\":\"Feature\",\"geometry\":{\"type\":\"MultiPolygon\",\"coordinates\":[[[[120.38,"
    "36.16],[120.4,36.16],[120.4,36.18],[120.38,36.16]]]]},\"properties\":"
    "{\"id\":\"ca-001\",\"kind\":\"catchment\",\"name\":\"源苑小学学区\",\"parent\":\"cm-002\"}}\n"
    "]}\n";

static void make_small_db(struct tmpdir_fixture *fx)
{
    tmpdir_write_file(fx->dir, "facilities.geojson", small_facilities);
    tmpdir_write_file(fx->dir, "areas.geojson", small_areas);
    char err[256] = "";
    int rc = store_create(fx->db, fx->dir, err, sizeof err);
    if (rc != 0) {
        fail_msg("store_create: %s", err);
    }
}

static struct store *open_ok(const char *path)
{
    struct store *st = NULL;
    char err[256] = "";
    int rc = store_open(path, &st, err, sizeof err);
    if (rc != 0) {
        fail_msg("store_open: %d %s", rc, err);
    }
    return st;
}

/* A facility as owned copies, for the oracle. */
struct rec {
    char id[32];
    int category;
    char name[64];
    double lat, lon;
    char attrs[64];
    int64_t updated;
};

static int rec_cmp(const void *a, const void *b)
{
    return strcmp(((const struct rec *)a)->id, ((const struct rec *)b)->id);
}

struct collect {
    struct rec *recs;
    size_t n, cap;
};

static int collect_fn(const struct store_facility *f, void *ctx)
{
    struct collect *c = ctx;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->recs = realloc(c->recs, c->cap * sizeof *c->recs);
        assert_non_null(c->recs);
    }
    struct rec *r = &c->recs[c->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", f->id);
    r->category = f->category;
    snprintf(r->name, sizeof r->name, "%s", f->name);
    r->lat = f->where.lat_deg;
    r->lon = f->where.lon_deg;
    snprintf(r->attrs, sizeof r->attrs, "%s", f->attrs_json);
    r->updated = f->updated_unix;
    return 0;
}

static struct store_facility facility(const char *id, int category, double lat, double lon)
{
    struct store_facility f = {
        .id = id, .category = category, .subtype = "", .name = "测试", .address = "",
        .phone = "", .hours = "", .where = {lat, lon}, .attrs_json = "{}",
    };
    return f;
}

static int64_t count(struct store *st)
{
    int64_t n = -1;
    assert_int_equal(store_facility_count(st, &n), 0);
    return n;
}

static size_t count_dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Create, open, close                                                      */
/* ------------------------------------------------------------------------ */

static void test_create_then_open_returns_dataset_records(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    struct store *st = open_ok(fx->db);
    struct collect c = {0};
    assert_int_equal(store_facility_each(st, collect_fn, &c), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.recs[0].id, "dt-001");
    assert_string_equal(c.recs[1].id, "ec-001");
    assert_string_equal(c.recs[2].id, "sc-001");
    assert_int_equal(c.recs[1].category, STORE_CAT_ELDER_CARE);
    assert_string_equal(c.recs[1].name, "青岛市李沧区源庄康养中心");
    assert_true(c.recs[1].lat == 36.192482 && c.recs[1].lon == 120.394428);
    assert_string_equal(c.recs[1].attrs, "{\"stars\":2,\"beds\":75,\"dementia\":false}");
    free(c.recs);
    store_close(st);
    /* Closed cleanly: the WAL was checkpointed and the file reopens. */
    st = open_ok(fx->db);
    assert_int_equal(count(st), 3);
    store_close(st);
    store_close(NULL);
}

struct area_seen {
    int n;
    char ids[4][16];
    int kinds[4];
    char parents[4][16];
    size_t wkb_len[4];
    char attrs[4][64];
};

static int area_fn(const struct store_area *a, void *ctx)
{
    struct area_seen *s = ctx;
    assert_true(s->n < 4);
    snprintf(s->ids[s->n], sizeof s->ids[0], "%s", a->id);
    snprintf(s->parents[s->n], sizeof s->parents[0], "%s", a->parent);
    snprintf(s->attrs[s->n], sizeof s->attrs[0], "%s", a->attrs_json);
    s->kinds[s->n] = a->kind;
    s->wkb_len[s->n] = a->wkb_len;
    assert_null(a->geojson);
    s->n++;
    return 0;
}

static void test_areas_are_multipolygons_with_kind_parent_and_attrs(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    struct store *st = open_ok(fx->db);
    struct area_seen s = {0};
    assert_int_equal(store_area_each(st, STORE_AREA_WKB, area_fn, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.ids[0], "ca-001");
    assert_int_equal(s.kinds[0], STORE_AREA_CATCHMENT);
    assert_string_equal(s.parents[0], "cm-002");
    assert_string_equal(s.ids[1], "cm-002");
    assert_string_equal(s.parents[1], "");
    assert_string_equal(s.attrs[1], "{\"population\":5200}");
    /* WKB MultiPolygon, one polygon, one ring of 5 points: 1+4+4 + 1+4+4 + 4 + 5*16. */
    assert_int_equal(s.wkb_len[1], 9 + 9 + 4 + 5 * 16);
    store_close(st);
}

struct link_seen {
    int n;
    char text[8][48];
};

static int link_fn(const struct store_link *l, void *ctx)
{
    struct link_seen *s = ctx;
    assert_true(s->n < 8);
    snprintf(s->text[s->n++], sizeof s->text[0], "%d %s %s", l->kind, l->facility_id,
             l->area_id);
    return 0;
}

static void test_links_follow_serves_and_catchment_attributes(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    struct store *st = open_ok(fx->db);
    struct link_seen s = {0};
    assert_int_equal(store_link_each(st, -1, NULL, link_fn, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.text[0], "0 dt-001 cm-002");
    assert_string_equal(s.text[1], "0 dt-001 cm-003");
    assert_string_equal(s.text[2], "1 sc-001 ca-001");
    /* Which teams serve cm-003? Then change the team and ask again. */
    memset(&s, 0, sizeof s);
    assert_int_equal(store_link_each(st, STORE_LINK_SERVES, "cm-003", link_fn, &s), 0);
    assert_int_equal(s.n, 1);
    struct store_facility f = facility("dt-001", STORE_CAT_DOCTOR_TEAM, 36.1, 120.4);
    f.attrs_json = "{\"serves\":[\"cm-009\"]}";
    assert_int_equal(store_facility_put(st, &f), 0);
    memset(&s, 0, sizeof s);
    assert_int_equal(store_link_each(st, STORE_LINK_SERVES, NULL, link_fn, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.text[0], "0 dt-001 cm-009");
    assert_int_equal(store_facility_delete(st, "dt-001"), 0);
    memset(&s, 0, sizeof s);
    assert_int_equal(store_link_each(st, STORE_LINK_SERVES, NULL, link_fn, &s), 0);
    assert_int_equal(s.n, 0);
    store_close(st);
}

static void test_create_on_existing_path_is_exists(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    struct stat before;
    assert_int_equal(stat(fx->db, &before), 0);
    char err[256] = "";
    assert_int_equal(store_create(fx->db, fx->dir, err, sizeof err), STORE_ERR_EXISTS);
    assert_non_null(strstr(err, "exists"));
    struct stat after;
    assert_int_equal(stat(fx->db, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
}

static void test_create_from_bad_dataset_leaves_no_file(void **state)
{
    struct tmpdir_fixture *fx = *state;
    char data_dir[128];
    snprintf(data_dir, sizeof data_dir, "%s/data", fx->dir);
    assert_int_equal(mkdir(data_dir, 0755), 0);
    /* The first record is good, the second has an unknown category. */
    tmpdir_write_file(data_dir, "facilities.geojson",
               "{\"type\":\"FeatureCollection\",\"features\":["
               "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[120,36]},"
               "\"properties\":{\"id\":\"a\",\"category\":\"school\"}},"
               "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[120,36]},"
               "\"properties\":{\"id\":\"b\",\"category\":\"zoo\"}}]}");
    tmpdir_write_file(data_dir, "areas.geojson",
                      "{\"type\":\"FeatureCollection\",\"features\":[]}");
    char err[512] = "";
    assert_int_equal(store_create(fx->db, data_dir, err, sizeof err), STORE_ERR_ARG);
    assert_non_null(strstr(err, "feature 2: category: unknown category 'zoo'"));
    assert_int_equal(access(fx->db, F_OK), -1);
    assert_int_equal(count_dir_entries(fx->dir), 1); /* only data/: no temporary left */
    /* A missing dataset directory fails the same way. */
    snprintf(data_dir, sizeof data_dir, "%s/nowhere", fx->dir);
    assert_int_not_equal(store_create(fx->db, data_dir, err, sizeof err), 0);
    assert_int_equal(access(fx->db, F_OK), -1);
    assert_int_equal(count_dir_entries(fx->dir), 1);
}

static int count_area_fn(const struct store_area *a, void *ctx)
{
    assert_null(a->wkb);
    ++*(int *)ctx;
    return 0;
}

static int count_link_fn(const struct store_link *l, void *ctx)
{
    (void)l;
    ++*(int *)ctx;
    return 0;
}

static void test_create_loads_bundled_licang_dataset(void **state)
{
    struct tmpdir_fixture *fx = *state;
    char err[512] = "";
    int rc = store_create(fx->db, NEAREST_DATASET_DIR, err, sizeof err);
    if (rc != 0) {
        fail_msg("store_create(licang): %s", err);
    }
    /* The oracle: the files themselves, read with jansson. */
    char path[512];
    snprintf(path, sizeof path, "%s/facilities.geojson", NEAREST_DATASET_DIR);
    json_t *facilities = json_load_file(path, 0, NULL);
    assert_non_null(facilities);
    snprintf(path, sizeof path, "%s/areas.geojson", NEAREST_DATASET_DIR);
    json_t *areas = json_load_file(path, 0, NULL);
    assert_non_null(areas);
    json_t *features = json_object_get(facilities, "features");
    size_t n_links = 0;
    for (size_t i = 0; i < json_array_size(features); i++) {
        json_t *props = json_object_get(json_array_get(features, i), "properties");
        n_links += json_array_size(json_object_get(props, "serves"));
        n_links += json_is_string(json_object_get(props, "catchment"));
    }
    struct store *st = open_ok(fx->db);
    assert_true(count(st) > 100);
    assert_int_equal(count(st), json_array_size(features));
    int n_areas = 0;
    assert_int_equal(store_area_each(st, 0, count_area_fn, &n_areas), 0);
    assert_int_equal(n_areas, json_array_size(json_object_get(areas, "features")));
    int n_stored_links = 0;
    assert_int_equal(store_link_each(st, -1, NULL, count_link_fn, &n_stored_links), 0);
    assert_int_equal(n_stored_links, n_links);
    assert_true(n_links > 0);
    json_decref(facilities);
    json_decref(areas);
    struct collect c = {0};
    assert_int_equal(store_facility_each(st, collect_fn, &c), 0);
    assert_int_equal((int64_t)c.n, count(st));
    for (size_t i = 1; i < c.n; i++) {
        assert_true(strcmp(c.recs[i - 1].id, c.recs[i].id) < 0);
    }
    free(c.recs);
    store_close(st);
}

/* ------------------------------------------------------------------------ */
/* Open errors                                                              */
/* ------------------------------------------------------------------------ */

static void test_open_missing_file_is_missing(void **state)
{
    struct tmpdir_fixture *fx = *state;
    struct store *st = (struct store *)1;
    char err[256] = "";
    assert_int_equal(store_open(fx->db, &st, err, sizeof err), STORE_ERR_MISSING);
    assert_null(st);
    assert_non_null(strstr(err, fx->db));
    assert_null(strchr(err, '\n'));
}

static void test_open_corrupt_file_is_schema(void **state)
{
    struct tmpdir_fixture *fx = *state;
    char junk[8192];
    srand(7);
    for (size_t i = 0; i < sizeof junk; i++) {
        junk[i] = (char)(rand() % 255 + 1);
    }
    junk[sizeof junk - 1] = '\0';
    tmpdir_write_file(fx->dir, "catalogue.db", junk);
    struct store *st = NULL;
    char err[256] = "";
    assert_int_equal(store_open(fx->db, &st, err, sizeof err), STORE_ERR_SCHEMA);
    assert_non_null(strstr(err, "not a nearestd database"));
}

static void test_open_other_sqlite_file_is_schema(void **state)
{
    struct tmpdir_fixture *fx = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1);", NULL,
                                  NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct store *st = NULL;
    char err[256] = "";
    assert_int_equal(store_open(fx->db, &st, err, sizeof err), STORE_ERR_SCHEMA);
    assert_non_null(strstr(err, "not a nearestd database"));
}

static void test_open_newer_schema_is_schema(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx->db, &db), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION + 1);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct store *st = NULL;
    char err[256] = "";
    assert_int_equal(store_open(fx->db, &st, err, sizeof err), STORE_ERR_SCHEMA);
    assert_non_null(strstr(err, "newer"));
}

static void test_open_read_only_file_is_readonly(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    assert_int_equal(chmod(fx->db, 0444), 0);
    struct store *st = NULL;
    char err[256] = "";
    assert_int_equal(store_open(fx->db, &st, err, sizeof err), STORE_ERR_READONLY);
    assert_non_null(strstr(err, "writable"));
}

static void test_open_locked_file_is_busy(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;"
                                      "UPDATE facilities SET name = name;", NULL, NULL, NULL),
                     SQLITE_OK);
    struct store *st = NULL;
    char err[256] = "";
    assert_int_equal(store_open(fx->db, &st, err, sizeof err), STORE_ERR_BUSY);
    assert_non_null(strstr(err, "locked"));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    st = open_ok(fx->db);
    store_close(st);
}

/* ------------------------------------------------------------------------ */
/* Migration                                                                */
/* ------------------------------------------------------------------------ */

static void test_open_migrates_schema_1_and_derives_links(void **state)
{
    struct tmpdir_fixture *fx = *state;
    char err[256] = "";
    assert_int_equal(store_schema_create_file(fx->db, 1, err, sizeof err), SQLITE_OK);
    /* Write a version-1 row the way a version-1 build did (no links table). */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx->db, &db), SQLITE_OK);
    int has_links = 1;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE "
                                            "name = 'links'", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    has_links = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    assert_int_equal(has_links, 0);
    /* A raw connection with SpatiaLite loaded, as a version-1 build had. */
    void *cache = spatialite_alloc_connection();
    spatialite_init_ex(db, cache, 0);
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO facilities (id, category, attrs, geom)"
                                            " VALUES ('dt-9', 2, '{\"serves\":[\"cm-1\","
                                            "\"cm-2\"]}', MakePoint(120, 36, 4326))", -1, &s,
                                        NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    sqlite3_close(db);
    spatialite_cleanup_ex(cache);

    struct store *st = open_ok(fx->db);
    struct link_seen seen = {0};
    assert_int_equal(store_link_each(st, -1, NULL, link_fn, &seen), 0);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.text[0], "0 dt-9 cm-1");
    assert_string_equal(seen.text[1], "0 dt-9 cm-2");
    struct collect c = {0};
    assert_int_equal(store_facility_each(st, collect_fn, &c), 0);
    assert_int_equal(c.n, 1);
    assert_true(c.recs[0].lat == 36.0 && c.recs[0].lon == 120.0);
    free(c.recs);
    store_close(st);
    assert_int_equal(sqlite3_open(fx->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), STORE_SCHEMA_VERSION);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------------ */
/* Writes                                                                   */
/* ------------------------------------------------------------------------ */

static void test_put_each_delete_match_oracle_on_random_records(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    struct store *st = open_ok(fx->db);
    assert_int_equal(store_facility_delete(st, "dt-001"), 0);
    assert_int_equal(store_facility_delete(st, "ec-001"), 0);
    assert_int_equal(store_facility_delete(st, "sc-001"), 0);
    enum { N = 300 };
    static struct rec oracle[N];
    static bool alive[N];
    srand(42);
    for (int i = 0; i < N; i++) {
        struct rec *r = &oracle[i];
        snprintf(r->id, sizeof r->id, "f-%05d", rand() % 100000 * N + i);
        r->category = rand() % STORE_CAT_COUNT;
        r->lat = 36.0 + rand() / (double)RAND_MAX * 0.3;
        r->lon = 120.2 + rand() / (double)RAND_MAX * 0.3;
        struct store_facility f = facility(r->id, r->category, r->lat, r->lon);
        f.updated_unix = r->updated = 1700000000 + i;
        assert_int_equal(store_facility_put(st, &f), 0);
        alive[i] = true;
    }
    for (int i = 0; i < N; i += 3) {
        assert_int_equal(store_facility_delete(st, oracle[i].id), 0);
        assert_int_equal(store_facility_delete(st, oracle[i].id), STORE_ERR_NOTFOUND);
        alive[i] = false;
    }
    struct rec expect[N];
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        if (alive[i]) {
            expect[n++] = oracle[i];
        }
    }
    qsort(expect, n, sizeof expect[0], rec_cmp);
    struct collect c = {0};
    assert_int_equal(store_facility_each(st, collect_fn, &c), 0);
    assert_int_equal(c.n, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(c.recs[i].id, expect[i].id);
        assert_int_equal(c.recs[i].category, expect[i].category);
        assert_true(c.recs[i].lat == expect[i].lat && c.recs[i].lon == expect[i].lon);
        assert_int_equal(c.recs[i].updated, expect[i].updated);
    }
    free(c.recs);
    store_close(st);
}

static int stop_at_two(const struct store_facility *f, void *ctx)
{
    (void)f;
    int *n = ctx;
    return ++*n == 2 ? 77 : 0;
}

static void test_each_stops_on_nonzero_and_returns_it(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    struct store *st = open_ok(fx->db);
    int n = 0;
    assert_int_equal(store_facility_each(st, stop_at_two, &n), 77);
    assert_int_equal(n, 2);
    store_close(st);
}

static void test_put_replaces_existing_id(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    struct store *st = open_ok(fx->db);
    struct store_facility f = facility("ec-001", STORE_CAT_PARKING, 36.3, 120.5);
    f.name = "新名字";
    f.subtype = "shared";
    f.attrs_json = "{\"capacity\":30, \"shared_hours\":\"Mo-Fr 19:00-07:00\"}";
    assert_int_equal(store_facility_put(st, &f), 0);
    assert_int_equal(count(st), 3);
    struct collect c = {0};
    assert_int_equal(store_facility_get(st, "ec-001", collect_fn, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.recs[0].name, "新名字");
    assert_int_equal(c.recs[0].category, STORE_CAT_PARKING);
    assert_true(c.recs[0].lat == 36.3 && c.recs[0].lon == 120.5);
    assert_string_equal(c.recs[0].attrs,
                        "{\"capacity\":30,\"shared_hours\":\"Mo-Fr 19:00-07:00\"}");
    assert_true(c.recs[0].updated > 1700000000);
    assert_int_equal(store_facility_get(st, "nope", collect_fn, &c), STORE_ERR_NOTFOUND);
    free(c.recs);
    /* The spatial index follows the move: the old place is empty now. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx->db, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM idx_facilities_geom WHERE "
                                            "xmin <= 120.3945 AND xmax >= 120.3943", -1, &s,
                                        NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    store_close(st);
}

static void test_invalid_records_are_rejected_and_nothing_written(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    struct store *st = open_ok(fx->db);
    char long_id[80];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    struct {
        const char *id;
        int category;
        double lat, lon;
        const char *hours;
        const char *attrs;
        const char *expect;
    } bad[] = {
        {"has space", 0, 36, 120, "", "{}", "id:"},
        {"", 0, 36, 120, "", "{}", "id:"},
        {long_id, 0, 36, 120, "", "{}", "id:"},
        {"ok-1", 9, 36, 120, "", "{}", "category:"},
        {"ok-1", -1, 36, 120, "", "{}", "category:"},
        {"ok-1", 0, 91, 120, "", "{}", "lat/lon:"},
        {"ok-1", 0, 36, 181, "", "{}", "lat/lon:"},
        {"ok-1", 0, NAN, 120, "", "{}", "lat/lon:"},
        {"ok-1", 0, 36, 120, "", "[1,2]", "attrs: not a JSON object"},
        {"ok-1", 0, 36, 120, "", "{oops", "attrs: not JSON"},
        {"ok-1", 0, 36, 120, "Mo-Xx 08:00-12:00", "{}", "opening_hours:"},
        {"ok-1", 0, 36, 120, "", "{\"stars\":9}", "stars: out of range"},
        {"ok-1", 0, 36, 120, "", "{\"stars\":\"3\"}", "stars: bad number"},
        {"ok-1", 1, 36, 120, "", "{\"meal_hours\":\"noon\"}", "meal_hours:"},
        {"ok-1", 2, 36, 120, "", "{\"serves\":\"cm-1\"}", "serves: expected an array"},
        {"ok-1", 3, 36, 120, "", "{\"level\":\"college\"}", "level: expected one of"},
        {"ok-1", 3, 36, 120, "", "{\"level\":\"\"}", "level: expected one of"},
        {"ok-1", 3, 36, 120, "", "{\"level\":\"|primary\"}", "level: expected one of"},
        {"ok-1", 3, 36, 120, "", "{\"level\":\"primary|middle\"}", "level: expected one of"},
        {"ok-1", 3, 36, 120, "", "{\"status\":\"under\"}", "status: expected one of"},
        {"ok-1", 4, 36, 120, "", "{\"price\":-1}", "price: out of range"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct store_facility f = facility(bad[i].id, bad[i].category, bad[i].lat, bad[i].lon);
        f.hours = bad[i].hours;
        f.attrs_json = bad[i].attrs;
        char err[256] = "";
        assert_int_equal(store_facility_check(&f, err, sizeof err), STORE_ERR_ARG);
        if (strstr(err, bad[i].expect) != err) {
            fail_msg("case %zu: '%s' does not start with '%s'", i, err, bad[i].expect);
        }
        assert_int_equal(store_facility_put(st, &f), STORE_ERR_ARG);
        assert_string_equal(store_errmsg(st), err);
    }
    struct store_facility gbk = facility("ok-1", 0, 36, 120);
    gbk.name = "\xc7\xe0\xb5\xba"; /* 青岛 in GBK */
    assert_int_equal(store_facility_put(st, &gbk), STORE_ERR_ARG);
    assert_non_null(strstr(store_errmsg(st), "name: not valid UTF-8"));
    assert_int_equal(count(st), 3);
    assert_int_equal(store_facility_get(st, "ok-1", collect_fn, &(struct collect){0}),
                     STORE_ERR_NOTFOUND);
    store_close(st);
}

static void test_batch_commits_together_and_rolls_back_together(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    struct store *st = open_ok(fx->db);
    assert_int_equal(store_batch_commit(st), STORE_ERR_ARG);
    assert_int_equal(store_batch_begin(st), 0);
    assert_int_equal(store_batch_begin(st), STORE_ERR_ARG);
    char id[16];
    for (int i = 0; i < 50; i++) {
        snprintf(id, sizeof id, "b-%02d", i);
        struct store_facility f = facility(id, STORE_CAT_SCHOOL, 36.1, 120.3);
        assert_int_equal(store_facility_put(st, &f), 0);
    }
    /* A bad record and a missing id do not spoil the batch. */
    struct store_facility bad = facility("b-bad", 42, 36.1, 120.3);
    assert_int_equal(store_facility_put(st, &bad), STORE_ERR_ARG);
    assert_int_equal(store_facility_delete(st, "no-such"), STORE_ERR_NOTFOUND);
    assert_int_equal(store_facility_delete(st, "ec-001"), 0);
    store_batch_rollback(st);
    assert_int_equal(count(st), 3);
    assert_int_equal(store_batch_begin(st), 0);
    for (int i = 0; i < 50; i++) {
        snprintf(id, sizeof id, "b-%02d", i);
        struct store_facility f = facility(id, STORE_CAT_SCHOOL, 36.1, 120.3);
        assert_int_equal(store_facility_put(st, &f), 0);
    }
    assert_int_equal(store_facility_delete(st, "ec-001"), 0);
    assert_int_equal(store_batch_commit(st), 0);
    store_close(st);
    st = open_ok(fx->db);
    assert_int_equal(count(st), 52);
    store_close(st);
}

static void test_acknowledged_write_survives_kill_9(void **state)
{
    struct tmpdir_fixture *fx = *state;
    make_small_db(fx);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct store *st = NULL;
        char err[256];
        if (store_open(fx->db, &st, err, sizeof err) != 0) {
            _exit(3);
        }
        struct store_facility f = facility("acked", STORE_CAT_MEAL_POINT, 36.2, 120.4);
        if (store_facility_put(st, &f) != 0) {
            _exit(4);
        }
        char ok = 'k';
        if (write(fds[1], &ok, 1) != 1) {
            _exit(5);
        }
        for (;;) {
            pause(); /* killed here with the connection still open */
        }
    }
    close(fds[1]);
    char c = 0;
    assert_int_equal(read(fds[0], &c, 1), 1);
    assert_int_equal(c, 'k');
    close(fds[0]);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    struct store *st = open_ok(fx->db);
    struct collect got = {0};
    assert_int_equal(store_facility_get(st, "acked", collect_fn, &got), 0);
    assert_int_equal(got.n, 1);
    free(got.recs);
    assert_int_equal(count(st), 4);
    store_close(st);
}

static void test_names_parse_back(void **state)
{
    (void)state;
    for (int i = 0; i < STORE_CAT_COUNT; i++) {
        int out = -1;
        assert_int_equal(store_category_parse(store_category_name(i), &out), 0);
        assert_int_equal(out, i);
    }
    int out = -1;
    assert_int_equal(store_category_parse("Elder_care", &out), STORE_ERR_ARG);
    assert_int_equal(store_category_parse(NULL, &out), STORE_ERR_ARG);
    assert_null(store_category_name(STORE_CAT_COUNT));
    assert_null(store_category_name(-1));
    for (int i = 0; i < STORE_AREA_KIND_COUNT; i++) {
        assert_int_equal(store_area_kind_parse(store_area_kind_name(i), &out), 0);
        assert_int_equal(out, i);
    }
    for (int e = STORE_OK; e >= STORE_ERR_EXISTS; e--) {
        assert_non_null(store_strerror(e));
        assert_string_not_equal(store_strerror(e), "unknown store error");
    }
    assert_string_equal(store_strerror(-99), "unknown store error");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_create_then_open_returns_dataset_records),
        T(test_areas_are_multipolygons_with_kind_parent_and_attrs),
        T(test_links_follow_serves_and_catchment_attributes),
        T(test_create_on_existing_path_is_exists),
        T(test_create_from_bad_dataset_leaves_no_file),
        T(test_create_loads_bundled_licang_dataset),
        T(test_open_missing_file_is_missing),
        T(test_open_corrupt_file_is_schema),
        T(test_open_other_sqlite_file_is_schema),
        T(test_open_newer_schema_is_schema),
        T(test_open_read_only_file_is_readonly),
        T(test_open_locked_file_is_busy),
        T(test_open_migrates_schema_1_and_derives_links),
        T(test_put_each_delete_match_oracle_on_random_records),
        T(test_each_stops_on_nonzero_and_returns_it),
        T(test_put_replaces_existing_id),
        T(test_invalid_records_are_rejected_and_nothing_written),
        T(test_batch_commits_together_and_rolls_back_together),
        T(test_acknowledged_write_survives_kill_9),
        T(test_names_parse_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
