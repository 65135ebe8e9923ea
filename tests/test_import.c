/* test_import.c: nearest-import and nearest-export (data/import.h) on real
 * SpatiaLite files in a temporary directory, through the same command-line
 * functions the programs run.
 *
 * Round trips (CSV and GeoJSON, Chinese text byte for byte), one message per
 * bad record with its line or feature number, --keep-going and the exit
 * statuses, --map, --crs gcj02 against geo_crs, the spatial index after a bulk
 * import that moves and adds rows, and an import killed with SIGKILL midway. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <spatialite.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "geo_crs.h"
#include "import.h"
#include "store.h"
#include "test_tmpdir.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static int setup(void **state)
{
    return tmpdir_fixture_setup(state, "test_import");
}

static int teardown(void **state)
{
    return tmpdir_fixture_teardown(state);
}

/* Runs nearest-import with the given arguments (NULL-terminated); the
 * messages it wrote are returned in *messages (caller frees). */
static int run_import(char **messages, ...)
{
    char *argv[32] = {"nearest-import"};
    int argc = 1;
    va_list ap;
    va_start(ap, messages);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 31) {
        argv[argc++] = strdup(a);
    }
    va_end(ap);
    char *buf = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&buf, &len);
    assert_non_null(err);
    int status = import_main(argc, argv, err);
    fclose(err);
    for (int i = 1; i < argc; i++) {
        free(argv[i]);
    }
    if (messages) {
        *messages = buf;
    } else {
        free(buf);
    }
    return status;
}

/* Exports to a malloc'ed string. */
static char *export_text(const char *db, int format, int category, bool areas)
{
    struct store *st = NULL;
    char err[256];
    if (store_open(db, &st, err, sizeof err) != 0) {
        fail_msg("store_open: %s", err);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    assert_int_equal(export_write(st, out, format, category, areas), 0);
    fclose(out);
    store_close(st);
    return buf;
}

static int64_t count_in(const char *db)
{
    struct store *st = NULL;
    char err[256];
    if (store_open(db, &st, err, sizeof err) != 0) {
        fail_msg("store_open: %s", err);
    }
    int64_t n = -1;
    assert_int_equal(store_facility_count(st, &n), 0);
    store_close(st);
    return n;
}

/* A failed import into a new catalogue leaves nothing: no file, no temporary. */
static void assert_no_catalogue(const struct tmpdir_fixture *fx)
{
    assert_int_equal(access(fx->db, F_OK), -1);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q 'catalogue.db'", fx->dir);
    assert_int_not_equal(system(cmd), 0);
}

/* Runs one SQL query returning an integer, with SpatiaLite loaded. */
static int64_t sql_int(const char *db_path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    void *cache = spatialite_alloc_connection();
    spatialite_init_ex(db, cache, 0);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    }
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    spatialite_cleanup_ex(cache);
    return v;
}

static const char *sql_text(const char *db_path, const char *sql, char *out, size_t out_len)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    snprintf(out, out_len, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

/* The export's own format: core columns, then attribute columns in the order
 * they first appear (rows in id order), cells quoted only when needed. */
static const char *const canonical_csv =
    "id,category,subtype,name,address,phone,opening_hours,lat,lon,station,team_size,serves,"
    "stars,beds,dementia,capacity,free,price,shared_hours,level,ownership,group,status,"
    "catchment\n"
    "dt-001,doctor_team,family_doctor,明塘社区家庭医生团队1,青岛市李沧区宁苑路358号,"
    "0532-0898-9583,\"Mo-Fr 08:00-12:00,13:30-17:30; Sa 08:00-12:00\",36.148458,120.378702,"
    "明塘社区卫生服务站,5,cm-002;cm-003,,,,,,,,,,,,\n"
    "ec-001,elder_care,institution,\"青岛市李沧区源庄康养中心, 北院\",青岛市李沧区兴华路368号,"
    "0532-0091-2955,24/7,36.192482,120.394428,,,,2,75,false,,,,,,,,,\n"
    "pk-001,parking,shared,\"李沧\"\"万达\"\"共享车位\",,,,36.1,120.4,,,,,,,40,12,2.5,"
    "Mo-Fr 19:00-07:00,,,,,\n"
    "sc-001,school,primary,源苑小学,,,,36.169284,120.388583,,,,,,,,,,,primary,public,,open,"
    "ca-001\n";

/* ------------------------------------------------------------------------ */
/* Round trips                                                              */
/* ------------------------------------------------------------------------ */

static void test_csv_export_of_csv_import_is_byte_identical(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *csv = tmpdir_write_file(fx->dir, "in.csv", canonical_csv);
    char *msg = NULL;
    int status = run_import(&msg, "--db", fx->db, csv, NULL);
    if (status != 0) {
        fail_msg("import failed: %s", msg);
    }
    assert_non_null(strstr(msg, "imported 4 records, rejected 0"));
    free(msg);
    char *out = export_text(fx->db, EXPORT_CSV, -1, false);
    assert_string_equal(out, canonical_csv);
    free(out);
    /* Types survived: numbers are numbers, booleans booleans, "" stays "". */
    char text[256];
    assert_string_equal(sql_text(fx->db, "SELECT attrs FROM facilities WHERE id = 'ec-001'",
                                 text, sizeof text),
                        "{\"stars\":2,\"beds\":75,\"dementia\":false}");
    assert_string_equal(sql_text(fx->db, "SELECT attrs FROM facilities WHERE id = 'sc-001'",
                                 text, sizeof text),
                        "{\"level\":\"primary\",\"ownership\":\"public\",\"group\":\"\","
                        "\"status\":\"open\",\"catchment\":\"ca-001\"}");
    assert_string_equal(sql_text(fx->db, "SELECT attrs FROM facilities WHERE id = 'dt-001'",
                                 text, sizeof text),
                        "{\"station\":\"明塘社区卫生服务站\",\"team_size\":5,"
                        "\"serves\":[\"cm-002\",\"cm-003\"]}");
    /* One category only. */
    out = export_text(fx->db, EXPORT_CSV, STORE_CAT_PARKING, false);
    assert_string_equal(out, "id,category,subtype,name,address,phone,opening_hours,lat,lon,"
                             "capacity,free,price,shared_hours\n"
                             "pk-001,parking,shared,\"李沧\"\"万达\"\"共享车位\",,,,36.1,120.4,"
                             "40,12,2.5,Mo-Fr 19:00-07:00\n");
    free(out);
}

static void test_geojson_round_trip_keeps_records_and_text(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *csv = tmpdir_write_file(fx->dir, "in.csv", canonical_csv);
    assert_int_equal(run_import(NULL, "--db", fx->db, csv, NULL), 0);
    char *first = export_text(fx->db, EXPORT_GEOJSON, -1, false);
    assert_non_null(strstr(first, "\"name\":\"青岛市李沧区源庄康养中心, 北院\""));
    assert_non_null(strstr(first, "\"coordinates\":[120.394428,36.192482]"));
    const char *gj = tmpdir_write_file(fx->dir, "out.geojson", first);
    char db2[160];
    snprintf(db2, sizeof db2, "%s/second.db", fx->dir);
    char *msg = NULL;
    int status = run_import(&msg, "--db", db2, gj, NULL);
    if (status != 0) {
        fail_msg("re-import failed: %s", msg);
    }
    free(msg);
    char *second = export_text(db2, EXPORT_GEOJSON, -1, false);
    assert_string_equal(first, second);
    char *csv2 = export_text(db2, EXPORT_CSV, -1, false);
    assert_string_equal(csv2, canonical_csv);
    free(csv2);
    free(first);
    free(second);
}

static const char *const areas_geojson =
    "{\"type\":\"FeatureCollection\",\"features\":[\n"
    "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[120.37,36.15],"
    "[120.39,36.15],[120.39,36.17],[120.37,36.17],[120.37,36.15]],[[120.38,36.16],"
    "[120.381,36.16],[120.381,36.161],[120.38,36.16]]]},\"properties\":"
    "{\"id\":\"cm-002\",\"kind\":\"community\",\"name\":\"明塘社区\",\"parent\":\"st-1\","
    "\"population\":5200}},\n"
    "{\"type\":\"Feature\",\"geometry\":{\"type\":\"MultiPolygon\",\"coordinates\":[[[[120.38,"
    "36.16],[120.4,36.16],[120.4,36.18],[120.38,36.16]]],[[[121.0,36.0],[121.1,36.0],"
    "[121.1,36.1],[121.0,36.0]]]]},\"properties\":"
    "{\"id\":\"ca-001\",\"kind\":\"catchment\",\"name\":\"源苑小学学区\",\"parent\":null}}\n"
    "]}\n";

static void test_areas_round_trip_and_are_detected_from_geometry(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *gj = tmpdir_write_file(fx->dir, "areas.geojson", areas_geojson);
    assert_int_equal(run_import(NULL, "--db", fx->db, gj, NULL), 0);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM areas"), 2);
    assert_int_equal(count_in(fx->db), 0);
    char *first = export_text(fx->db, EXPORT_GEOJSON, -1, true);
    assert_non_null(strstr(first, "[[[[120.37,36.15],[120.39,36.15],[120.39,36.17],[120.37,"
                                  "36.17],[120.37,36.15]],[[120.38,36.16],[120.381,36.16],"
                                  "[120.381,36.161],[120.38,36.16]]]]"));
    assert_non_null(strstr(first, "\"name\":\"明塘社区\",\"parent\":\"st-1\","
                                  "\"population\":5200"));
    const char *again = tmpdir_write_file(fx->dir, "again.geojson", first);
    char db2[160];
    snprintf(db2, sizeof db2, "%s/second.db", fx->dir);
    assert_int_equal(run_import(NULL, "--db", db2, "--areas", again, NULL), 0);
    char *second = export_text(db2, EXPORT_GEOJSON, -1, true);
    assert_string_equal(first, second);
    free(first);
    free(second);
}

/* Random text from pieces that stress CSV quoting and UTF-8. */
static void random_text(char *out, size_t out_len)
{
    static const char *const pieces[] = {
        "青岛", "李沧区", "路", ",", "\"", " ", "a", "Z", "\n", "é", ";", "'", "\t", "\r\n",
        "0", "12", "养老", "#",
    };
    size_t n = (size_t)(rand() % 6);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *p = pieces[rand() % (int)(sizeof pieces / sizeof pieces[0])];
        if (strlen(out) + strlen(p) + 1 < out_len) {
            strcat(out, p);
        }
    }
}

static double random_double(double lo, double hi)
{
    /* 53 random bits, so the shortest round-trip text needs up to 17 digits. */
    uint64_t bits = ((uint64_t)rand() << 31 ^ (uint64_t)rand()) & ((1ull << 53) - 1);
    return lo + (hi - lo) * ((double)bits / (double)(1ull << 53));
}

/* Random attributes of the category, every key always present, in one order. */
static json_t *random_attrs(int category)
{
    static const char *const levels[] = {"kindergarten", "primary", "middle", "nine_year"};
    char text[64];
    json_t *a = json_object();
    switch (category) {
    case STORE_CAT_ELDER_CARE:
        json_object_set_new(a, "stars", json_integer(1 + rand() % 5));
        json_object_set_new(a, "beds", json_integer(rand() % 500));
        json_object_set_new(a, "dementia", json_boolean(rand() % 2));
        break;
    case STORE_CAT_MEAL_POINT:
        json_object_set_new(a, "meal_hours", json_string("Mo-Fr 11:00-13:00; Sa off"));
        json_object_set_new(a, "price_60", json_real(rand() % 2 ? 3.0 : random_double(0, 30)));
        json_object_set_new(a, "price_80", json_integer(rand() % 10));
        json_object_set_new(a, "delivery", json_boolean(rand() % 2));
        break;
    case STORE_CAT_DOCTOR_TEAM: {
        random_text(text, sizeof text);
        json_object_set_new(a, "station", json_string(text));
        json_object_set_new(a, "team_size", json_integer(rand() % 9));
        json_t *serves = json_array();
        for (int i = 0, n = 1 + rand() % 3; i < n; i++) {
            snprintf(text, sizeof text, "cm-%03d", rand() % 150);
            json_array_append_new(serves, json_string(text));
        }
        json_object_set_new(a, "serves", serves);
        break;
    }
    case STORE_CAT_SCHOOL:
        json_object_set_new(a, "level", json_string(levels[rand() % 4]));
        json_object_set_new(a, "ownership", json_string(rand() % 2 ? "public" : "private"));
        random_text(text, sizeof text);
        json_object_set_new(a, "group", json_string(text));
        json_object_set_new(a, "status", json_string(rand() % 2 ? "open" : "under_construction"));
        snprintf(text, sizeof text, "ca-%03d", rand() % 56);
        json_object_set_new(a, "catchment", json_string(text));
        break;
    default:
        json_object_set_new(a, "capacity", json_integer(rand() % 900));
        json_object_set_new(a, "free", json_integer(rand() % 50));
        json_object_set_new(a, "price", json_real(random_double(0, 10)));
        json_object_set_new(a, "shared_hours", json_string("Mo-Fr 19:00-07:00"));
        break;
    }
    return a;
}

/* A facility as owned copies, for comparing two catalogues. */
struct frec {
    char id[16];
    int category;
    char text[5][64]; /* subtype, name, address, phone, hours */
    struct geo_point where;
    json_t *attrs;
};

struct frecs {
    struct frec r[256];
    size_t n;
};

static int frec_collect(const struct store_facility *f, void *ctx)
{
    struct frecs *c = ctx;
    assert_true(c->n < 256);
    struct frec *r = &c->r[c->n++];
    snprintf(r->id, sizeof r->id, "%s", f->id);
    r->category = f->category;
    const char *text[5] = {f->subtype, f->name, f->address, f->phone, f->hours};
    for (int i = 0; i < 5; i++) {
        snprintf(r->text[i], sizeof r->text[i], "%s", text[i]);
    }
    r->where = f->where;
    r->attrs = json_loads(f->attrs_json, 0, NULL);
    assert_non_null(r->attrs);
    return 0;
}

static void frecs_load(const char *db, struct frecs *c)
{
    struct store *st = NULL;
    char err[256];
    assert_int_equal(store_open(db, &st, err, sizeof err), 0);
    c->n = 0;
    assert_int_equal(store_facility_each(st, frec_collect, c), 0);
    store_close(st);
}

static void frecs_free(struct frecs *c)
{
    for (size_t i = 0; i < c->n; i++) {
        json_decref(c->r[i].attrs);
    }
}

static void frecs_assert_equal(const struct frecs *a, const struct frecs *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_string_equal(a->r[i].id, b->r[i].id);
        assert_int_equal(a->r[i].category, b->r[i].category);
        for (int k = 0; k < 5; k++) {
            assert_string_equal(a->r[i].text[k], b->r[i].text[k]);
        }
        assert_true(a->r[i].where.lat_deg == b->r[i].where.lat_deg);
        assert_true(a->r[i].where.lon_deg == b->r[i].where.lon_deg);
        if (!json_equal(a->r[i].attrs, b->r[i].attrs)) {
            char *x = json_dumps(a->r[i].attrs, JSON_COMPACT);
            char *y = json_dumps(b->r[i].attrs, JSON_COMPACT);
            fail_msg("%s: attrs %s became %s", a->r[i].id, x, y);
        }
    }
}

static void test_random_records_survive_csv_and_geojson_round_trips(void **state)
{
    struct tmpdir_fixture *fx = *state;
    char err[256];
    const char *empty = tmpdir_write_file(fx->dir, "empty.csv", "id,category,lat,lon\n");
    assert_int_equal(run_import(NULL, "--db", fx->db, empty, NULL), 0);
    struct store *st = NULL;
    assert_int_equal(store_open(fx->db, &st, err, sizeof err), 0);
    srand(2026);
    for (int i = 0; i < 200; i++) {
        char id[16], text[5][64];
        snprintf(id, sizeof id, "r-%04d", i);
        for (int k = 0; k < 4; k++) {
            random_text(text[k], sizeof text[k]);
        }
        int category = rand() % STORE_CAT_COUNT;
        json_t *attrs = random_attrs(category);
        char *attrs_text = json_dumps(attrs, JSON_COMPACT | JSON_PRESERVE_ORDER);
        struct store_facility f = {
            .id = id, .category = category,
            .subtype = category == STORE_CAT_PARKING ? "shared" : text[0],
            .name = text[1], .address = text[2], .phone = text[3],
            .hours = rand() % 2 ? "" : "Mo-Su 08:00-20:00",
            .where = {random_double(-90, 90), random_double(-180, 180)},
            .attrs_json = attrs_text,
        };
        if (store_facility_put(st, &f) != 0) {
            fail_msg("put %s: %s", id, store_errmsg(st));
        }
        free(attrs_text);
        json_decref(attrs);
    }
    store_close(st);
    static struct frecs original, via_csv, via_geojson;
    frecs_load(fx->db, &original);
    assert_int_equal(original.n, 200);

    const int formats[2] = {EXPORT_CSV, EXPORT_GEOJSON};
    struct frecs *results[2] = {&via_csv, &via_geojson};
    for (int k = 0; k < 2; k++) {
        char *text = export_text(fx->db, formats[k], -1, false);
        const char *path = tmpdir_write_file(fx->dir, k == 0 ? "r.csv" : "r.geojson", text);
        char db[160];
        snprintf(db, sizeof db, "%s/r%d.db", fx->dir, k);
        char *msg = NULL;
        int status = run_import(&msg, "--db", db, path, NULL);
        if (status != 0) {
            fail_msg("re-import %d: %s", k, msg);
        }
        free(msg);
        frecs_load(db, results[k]);
        frecs_assert_equal(&original, results[k]);
        /* And the second export is the same text as the first. */
        char *again = export_text(db, formats[k], -1, false);
        assert_string_equal(text, again);
        free(again);
        free(text);
    }
    frecs_free(&original);
    frecs_free(&via_csv);
    frecs_free(&via_geojson);
}

/* ------------------------------------------------------------------------ */
/* Bad records                                                              */
/* ------------------------------------------------------------------------ */

static void test_each_bad_csv_record_gets_one_message_with_its_line(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *csv = tmpdir_write_file(
        fx->dir, "bad.csv",
        "id,category,name,opening_hours,lat,lon,stars\n"                 /* 1 */
        "ok-1,elder_care,好,,36.1,120.3,3\n"                             /* 2 */
        "no-lat,elder_care,x,,,120.3,\n"                                 /* 3 */
        "far,elder_care,x,,95.5,120.3,\n"                                /* 4 */
        "zoo-1,zoo,x,,36.1,120.3,\n"                                     /* 5 */
        "\n"                                                             /* 6 */
        "hrs,school,\"two\nlines\",Mo-Fx 08:00-12:00,36.1,120.3,\n"      /* 7-8 */
        "ok-1,school,dup,,36.1,120.3,\n"                                 /* 9 */
        "nan-lat,school,x,,abc,120.3,\n"                                 /* 10 */
        "bad-stars,elder_care,x,,36.1,120.3,many\n"                      /* 11 */
        "short,school\n"                                                 /* 12 */
        "bad id!,school,x,,36.1,120.3,\n"                                /* 13 */
        "ok-2,parking,x,,36.2,120.4,\n");                                /* 14 */
    char *msg = NULL;
    assert_int_equal(run_import(&msg, "--db", fx->db, csv, NULL), 2);
    char expect[2048];
    snprintf(expect, sizeof expect,
             "%1$s:3: lat: missing coordinates\n"
             "%1$s:4: lat/lon: out of range (95.5, 120.3); lat must be -90..90 and lon "
             "-180..180\n"
             "%1$s:5: category: unknown category 'zoo' (expected elder_care, meal_point, "
             "doctor_team, school or parking)\n"
             "%1$s:7: opening_hours: unknown weekday (expected Mo, Tu, We, Th, Fr, Sa or Su) "
             "at byte 3\n"
             "%1$s:9: id: duplicate id ok-1 in this file\n"
             "%1$s:10: lat: bad number 'abc'\n"
             "%1$s:11: stars: bad number 'many'\n"
             "%1$s:12: row: 2 fields, but the header has 7\n"
             "%1$s:13: id: must be 1..64 bytes of [A-Za-z0-9_.:-]\n"
             "nearest-import: 9 bad records; nothing imported (--keep-going imports the good "
             "ones)\n",
             csv);
    assert_string_equal(msg, expect);
    free(msg);
    /* Nothing was written: the catalogue was new, so there is none. */
    assert_no_catalogue(fx);
    /* Into an existing catalogue, nothing changes. */
    const char *good = tmpdir_write_file(fx->dir, "good.csv",
                                         "id,category,lat,lon\na,school,36.1,120.3\n");
    assert_int_equal(run_import(NULL, "--db", fx->db, good, NULL), 0);
    assert_int_equal(run_import(NULL, "--db", fx->db, csv, NULL), 2);
    assert_int_equal(count_in(fx->db), 1);
}

static void test_each_bad_geojson_feature_gets_one_message_with_its_number(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *gj = tmpdir_write_file(
        fx->dir, "bad.geojson",
        "{\"type\":\"FeatureCollection\",\"features\":["
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[120.3,36.1]},"
        "\"properties\":{\"id\":\"a\",\"category\":\"school\"}},"
        "{\"type\":\"Feature\",\"geometry\":null,\"properties\":{\"id\":\"b\","
        "\"category\":\"school\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[200,36.1]},"
        "\"properties\":{\"id\":\"c\",\"category\":\"school\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[120.3,\"x\"]},"
        "\"properties\":{\"id\":\"d\",\"category\":\"school\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[120.3,36.1]},"
        "\"properties\":{\"id\":\"e\",\"category\":\"meal_point\",\"meal_hours\":\"lunch\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[120.3,36.1]},"
        "\"properties\":{\"id\":\"a\",\"category\":\"school\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[120,36],"
        "[121,36],[121,37],[120,37]]]},\"properties\":{\"id\":\"ar\",\"kind\":\"street\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[120,36],"
        "[121,36],[121,37],[120,36]]]},\"properties\":{\"id\":\"ar2\",\"kind\":\"county\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[120,36],"
        "[121,36],[121,37],[120,36]]]},\"properties\":{\"id\":\"ar3\",\"kind\":0.5}}"
        "]}");
    char *msg = NULL;
    assert_int_equal(run_import(&msg, "--db", fx->db, gj, NULL), 2);
    char expect[2048];
    snprintf(expect, sizeof expect,
             "%1$s: feature 2: geometry: missing coordinates\n"
             "%1$s: feature 3: geometry: out-of-range coordinates [200, 36.1] (lon -180..180, "
             "lat -90..90)\n"
             "%1$s: feature 4: geometry: bad number in coordinates\n"
             "%1$s: feature 5: meal_hours: unknown weekday (expected Mo, Tu, We, Th, Fr, Sa or "
             "Su) at byte 0\n"
             "%1$s: feature 6: id: duplicate id a in this file\n"
             "%1$s: feature 7: geometry: a ring must end where it starts\n"
             "%1$s: feature 8: kind: unknown kind 'county' (expected district, street, "
             "community, catchment or service_area)\n"
             "%1$s: feature 9: kind: unknown kind '' (expected district, street, "
             "community, catchment or service_area)\n"
             "nearest-import: 8 bad records; nothing imported (--keep-going imports the good "
             "ones)\n",
             gj);
    assert_string_equal(msg, expect);
    free(msg);
    assert_no_catalogue(fx);
}

static void test_keep_going_imports_the_good_records_and_exits_1(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *csv = tmpdir_write_file(fx->dir, "mixed.csv",
                                 "id,category,lat,lon\n"
                                 "a,school,36.1,120.3\n"
                                 "b,school,,120.3\n"
                                 "c,parking,36.2,120.4\n");
    char *msg = NULL;
    assert_int_equal(run_import(&msg, "--db", fx->db, "--keep-going", csv, NULL), 1);
    assert_non_null(strstr(msg, ":3: lat: missing coordinates\n"));
    assert_non_null(strstr(msg, "imported 2 records, rejected 1"));
    free(msg);
    assert_int_equal(count_in(fx->db), 2);
    /* All bad: nothing to import, even with --keep-going. */
    const char *bad = tmpdir_write_file(fx->dir, "bad.csv", "id,category,lat,lon\nz,zoo,1,2\n");
    assert_int_equal(run_import(NULL, "--db", fx->db, "--keep-going", bad, NULL), 2);
    assert_int_equal(count_in(fx->db), 2);
}

static void test_unterminated_quote_is_reported_and_nothing_written(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *csv = tmpdir_write_file(fx->dir, "q.csv", "id,category,name,lat,lon\n"
                                              "a,school,fine,36.1,120.3\n"
                                              "b,school,\"open,36.1,120.3\n");
    char *msg = NULL;
    assert_int_equal(run_import(&msg, "--db", fx->db, "--keep-going", csv, NULL), 2);
    assert_non_null(strstr(msg, ":3: csv: unterminated quoted field"));
    free(msg);
    assert_no_catalogue(fx);
}

static void test_missing_required_column_is_one_message_for_the_file(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *csv = tmpdir_write_file(fx->dir, "nolat.csv", "\nid,category,纬度,lon\n"
                                                  "a,school,36.1,120.3\nb,school,36.2,120.3\n");
    char *msg = NULL;
    assert_int_equal(run_import(&msg, "--db", fx->db, "--keep-going", csv, NULL), 2);
    char expect[512];
    snprintf(expect, sizeof expect,
             "%s:2: header: no 'lat' column (rename one with --map SRC=lat)\n"
             "nearest-import: stopped at %s: the file is malformed; nothing imported\n",
             csv, csv);
    assert_string_equal(msg, expect);
    free(msg);
    assert_no_catalogue(fx);
    assert_int_equal(run_import(NULL, "--db", fx->db, "--map", "纬度=lat", csv, NULL), 0);
    assert_int_equal(count_in(fx->db), 2);
}

static void test_usage_errors_exit_2(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *csv = tmpdir_write_file(fx->dir, "a.csv",
                                        "id,category,lat,lon\na,school,36.1,120.3\n");
    char *msg = NULL;
    assert_int_equal(run_import(&msg, csv, NULL), 2);
    assert_non_null(strstr(msg, "usage: nearest-import"));
    free(msg);
    assert_int_equal(run_import(&msg, "--db", fx->db, "--crs", "mars", csv, NULL), 2);
    assert_non_null(strstr(msg, "--crs: expected wgs84, gcj02 or bd09"));
    free(msg);
    assert_int_equal(run_import(&msg, "--db", fx->db, "--map", "novalue", csv, NULL), 2);
    assert_non_null(strstr(msg, "--map: expected SRC=DST"));
    free(msg);
    assert_int_equal(run_import(&msg, "--db", fx->db, "--bogus", csv, NULL), 2);
    assert_non_null(strstr(msg, "unknown or incomplete option --bogus"));
    free(msg);
    assert_int_equal(run_import(&msg, "--db", fx->db, "/nonexistent/x.csv", NULL), 2);
    assert_non_null(strstr(msg, "/nonexistent/x.csv: file: No such file"));
    free(msg);
    assert_no_catalogue(fx);
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

static void test_map_renames_columns_and_properties(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *csv = tmpdir_write_file(fx->dir, "cn.csv",
                                 "\xef\xbb\xbf编号,类别,名称,lat,lng,床位\n"
                                 "ec-9,elder_care,颐养院,36.1,120.3,80\n");
    char *msg = NULL;
    int status = run_import(&msg, "--db", fx->db, "--map", "编号=id", "--map", "类别=category",
                            "--map", "名称=name", "--map", "lng=lon", "--map", "床位=beds", csv,
                            NULL);
    if (status != 0) {
        fail_msg("%s", msg);
    }
    free(msg);
    char text[256];
    assert_string_equal(sql_text(fx->db, "SELECT name || '|' || attrs FROM facilities", text,
                                 sizeof text), "颐养院|{\"beds\":80}");
    const char *gj = tmpdir_write_file(
        fx->dir, "cn.geojson",
        "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",\"geometry\":"
        "{\"type\":\"Point\",\"coordinates\":[120.3,36.1]},\"properties\":{\"编号\":\"ec-10\","
        "\"category\":\"elder_care\",\"名称\":\"康乐园\"}}]}");
    assert_int_equal(run_import(NULL, "--db", fx->db, "--map", "编号=id", "--map", "名称=name",
                                gj, NULL), 0);
    assert_string_equal(sql_text(fx->db, "SELECT name FROM facilities WHERE id = 'ec-10'", text,
                                 sizeof text), "康乐园");
}

struct one_point {
    struct geo_point p;
};

static int grab_point(const struct store_facility *f, void *ctx)
{
    ((struct one_point *)ctx)->p = f->where;
    return 0;
}

static void test_crs_gcj02_and_bd09_are_converted_to_wgs84(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const struct geo_point given = {36.160123, 120.410456};
    const char *csv = tmpdir_write_file(fx->dir, "amap.csv",
                                 "id,category,lat,lon\namap-1,school,36.160123,120.410456\n");
    assert_int_equal(run_import(NULL, "--db", fx->db, "--crs", "gcj02", csv, NULL), 0);
    const char *gj = tmpdir_write_file(
        fx->dir, "baidu.geojson",
        "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",\"geometry\":"
        "{\"type\":\"Point\",\"coordinates\":[120.410456,36.160123]},\"properties\":"
        "{\"id\":\"bd-1\",\"category\":\"school\"}}]}");
    assert_int_equal(run_import(NULL, "--db", fx->db, "--crs", "bd09", gj, NULL), 0);
    struct store *st = NULL;
    char err[256];
    assert_int_equal(store_open(fx->db, &st, err, sizeof err), 0);
    const struct {
        const char *id;
        enum geo_crs crs;
    } cases[] = {{"amap-1", GEO_CRS_GCJ02}, {"bd-1", GEO_CRS_BD09}};
    for (int i = 0; i < 2; i++) {
        struct geo_point expect;
        assert_int_equal(geo_crs_to_wgs84(cases[i].crs, given, &expect), 0);
        struct one_point got = {{0, 0}};
        assert_int_equal(store_facility_get(st, cases[i].id, grab_point, &got), 0);
        assert_true(got.p.lat_deg == expect.lat_deg && got.p.lon_deg == expect.lon_deg);
        /* The shift in Licang is hundreds of metres: about 0.002-0.01 degrees. */
        assert_true(given.lon_deg - got.p.lon_deg > 0.002);
    }
    store_close(st);
}

/* ------------------------------------------------------------------------ */
/* Bulk import and the spatial index                                        */
/* ------------------------------------------------------------------------ */

/* Writes n rows with ids prefix-0..n-1 at pseudo-random places in Licang. */
static const char *write_rows(const struct tmpdir_fixture *fx, const char *name,
                              const char *prefix, int n, unsigned seed)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", fx->dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs("id,category,name,opening_hours,lat,lon,serves\n", fp);
    srand(seed);
    for (int i = 0; i < n; i++) {
        double lat = 36.10 + rand() / (double)RAND_MAX * 0.15;
        double lon = 120.33 + rand() / (double)RAND_MAX * 0.15;
        bool team = i % 7 == 0;
        fprintf(fp, "%s-%d,%s,设施%d,Mo-Fr 08:00-17:00,%.6f,%.6f,%s\n", prefix, i,
                team ? "doctor_team" : "parking", i, lat, lon, team ? "cm-1;cm-2" : "");
    }
    assert_int_equal(fclose(fp), 0);
    return path;
}

static void test_bulk_import_that_moves_and_adds_rows_keeps_spatial_index_exact(void **state)
{
    struct tmpdir_fixture *fx = *state;
    assert_int_equal(run_import(NULL, "--db", fx->db, write_rows(fx, "a.csv", "f", 3000, 1),
                                NULL), 0);
    /* b.csv moves f-0..1999 and adds f-3000..3999; c.csv moves f-0..999 again
     * in the same run, so the last put of each row must win in the index. */
    char b[256], c[256];
    snprintf(b, sizeof b, "%s", write_rows(fx, "b.csv", "f", 4000, 2));
    snprintf(c, sizeof c, "%s", write_rows(fx, "c.csv", "f", 1000, 3));
    char *msg = NULL;
    int status = run_import(&msg, "--db", fx->db, b, c, NULL);
    if (status != 0) {
        fail_msg("%s", msg);
    }
    free(msg);
    assert_int_equal(count_in(fx->db), 4000);
    assert_int_equal(sql_int(fx->db, "SELECT CheckSpatialIndex('facilities', 'geom')"), 1);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM idx_facilities_geom"), 4000);
    /* Every row's point lies in its own index box (float32 boxes round outward). */
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM facilities f JOIN "
                                     "idx_facilities_geom i ON i.pkid = f.rowid WHERE "
                                     "ST_X(f.geom) BETWEEN i.xmin AND i.xmax AND "
                                     "ST_Y(f.geom) BETWEEN i.ymin AND i.ymax"), 4000);
    /* The triggers came back: a single put after the bulk load is indexed too. */
    struct store *st = NULL;
    char err[256];
    assert_int_equal(store_open(fx->db, &st, err, sizeof err), 0);
    struct store_facility f = {.id = "solo", .category = STORE_CAT_SCHOOL,
                               .where = {36.3, 120.6}, .attrs_json = "{}"};
    assert_int_equal(store_facility_put(st, &f), 0);
    store_close(st);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM idx_facilities_geom WHERE "
                                     "xmin <= 120.6 AND xmax >= 120.6 AND ymin <= 36.3 AND "
                                     "ymax >= 36.3"), 1);
    assert_int_equal(sql_int(fx->db, "SELECT CheckSpatialIndex('facilities', 'geom')"), 1);
    /* Links follow the last put: 1 in 7 rows of c.csv are teams serving 2 communities. */
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM links"),
                     sql_int(fx->db, "SELECT 2 * count(*) FROM facilities WHERE category = 2"));
}

static void test_killed_import_leaves_database_as_it_was(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *csv = tmpdir_write_file(fx->dir, "in.csv", canonical_csv);
    assert_int_equal(run_import(NULL, "--db", fx->db, csv, NULL), 0);
    char *before = export_text(fx->db, EXPORT_CSV, -1, false);
    char big[256];
    snprintf(big, sizeof big, "%s", write_rows(fx, "big.csv", "big", 200000, 4));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *null = fopen("/dev/null", "w");
        char *argv[] = {"nearest-import", "--db", fx->db, big, NULL};
        _exit(import_main(4, argv, null));
    }
    struct timespec nap = {0, 400 * 1000 * 1000};
    nanosleep(&nap, NULL);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* It really was killed midway, not finished. */
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    char *after = export_text(fx->db, EXPORT_CSV, -1, false);
    assert_string_equal(before, after);
    char text[64];
    assert_string_equal(sql_text(fx->db, "PRAGMA integrity_check", text, sizeof text), "ok");
    assert_int_equal(sql_int(fx->db, "SELECT CheckSpatialIndex('facilities', 'geom')"), 1);
    free(before);
    free(after);
}

/* Kills an import after 30 ms, 45 ms, 67 ms, ... until one is quick enough
 * to finish: whenever it dies, parsing or committing, the catalogue is exactly
 * as before; when it finishes, all of it is there. */
static void test_import_killed_at_any_moment_is_all_or_nothing(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *csv = tmpdir_write_file(fx->dir, "in.csv", canonical_csv);
    assert_int_equal(run_import(NULL, "--db", fx->db, csv, NULL), 0);
    char *before = export_text(fx->db, EXPORT_CSV, -1, false);
    char rows[256];
    snprintf(rows, sizeof rows, "%s", write_rows(fx, "rows.csv", "k", 15000, 5));
    int kills = 0;
    for (int ms = 30;; ms += ms / 2) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            FILE *null = fopen("/dev/null", "w");
            char *argv[] = {"nearest-import", "--db", fx->db, rows, NULL};
            _exit(import_main(4, argv, null));
        }
        struct timespec nap = {ms / 1000, (long)(ms % 1000) * 1000 * 1000};
        nanosleep(&nap, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        char text[64];
        assert_string_equal(sql_text(fx->db, "PRAGMA integrity_check", text, sizeof text),
                            "ok");
        assert_int_equal(sql_int(fx->db, "SELECT CheckSpatialIndex('facilities', 'geom')"), 1);
        if (WIFEXITED(status)) {
            assert_int_equal(WEXITSTATUS(status), 0);
        }
        int64_t n = count_in(fx->db);
        if (n == 4 + 15000) {
            /* Finished; a kill can land after the commit but before exit. */
            break;
        }
        assert_true(WIFSIGNALED(status));
        kills++;
        char *after = export_text(fx->db, EXPORT_CSV, -1, false);
        if (strcmp(before, after) != 0) {
            fail_msg("killed after %d ms: %lld facilities, neither before nor after",
                     ms, (long long)n);
        }
        free(after);
        if (ms > 60000) {
            fail_msg("the import never finished");
        }
    }
    assert_true(kills >= 1);
    print_message("killed %d times before an import finished\n", kills);
    free(before);
}

static void test_export_command_line(void **state)
{
    struct tmpdir_fixture *fx = *state;
    const char *csv = tmpdir_write_file(fx->dir, "in.csv", canonical_csv);
    assert_int_equal(run_import(NULL, "--db", fx->db, csv, NULL), 0);
    char *out = NULL, *err = NULL;
    size_t out_len = 0, err_len = 0;
    FILE *o = open_memstream(&out, &out_len);
    FILE *e = open_memstream(&err, &err_len);
    char *ok[] = {"nearest-export", "--db", fx->db, "--format", "csv", NULL};
    assert_int_equal(export_main(5, ok, o, e), 0);
    char *areas_csv[] = {"nearest-export", "--db", fx->db, "--format", "csv", "--areas", NULL};
    assert_int_equal(export_main(6, areas_csv, o, e), 2);
    char *bad_cat[] = {"nearest-export", "--db", fx->db, "--category", "zoo", NULL};
    assert_int_equal(export_main(5, bad_cat, o, e), 2);
    char *missing[] = {"nearest-export", "--db", "/nonexistent.db", NULL};
    assert_int_equal(export_main(3, missing, o, e), 2);
    fclose(o);
    fclose(e);
    assert_string_equal(out, canonical_csv);
    assert_non_null(strstr(err, "areas are exported as GeoJSON only"));
    assert_non_null(strstr(err, "unknown category zoo"));
    assert_non_null(strstr(err, "/nonexistent.db"));
    free(out);
    free(err);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_csv_export_of_csv_import_is_byte_identical),
        T(test_geojson_round_trip_keeps_records_and_text),
        T(test_areas_round_trip_and_are_detected_from_geometry),
        T(test_random_records_survive_csv_and_geojson_round_trips),
        T(test_each_bad_csv_record_gets_one_message_with_its_line),
        T(test_each_bad_geojson_feature_gets_one_message_with_its_number),
        T(test_keep_going_imports_the_good_records_and_exits_1),
        T(test_unterminated_quote_is_reported_and_nothing_written),
        T(test_missing_required_column_is_one_message_for_the_file),
        T(test_usage_errors_exit_2),
        T(test_map_renames_columns_and_properties),
        T(test_crs_gcj02_and_bd09_are_converted_to_wgs84),
        T(test_bulk_import_that_moves_and_adds_rows_keeps_spatial_index_exact),
        T(test_killed_import_leaves_database_as_it_was),
        T(test_import_killed_at_any_moment_is_all_or_nothing),
        T(test_export_command_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
