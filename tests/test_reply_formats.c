/* test_reply_formats.c: answers of daemon/reply.c, byte for byte.
 *
 * reply.c writes JSON answers itself because building them as jansson
 * documents cost nine times a text answer. The bytes must stay those that
 * jansson's json_dumps() gave, so this file keeps that builder as the model
 * (the reply.c code it replaced, which built one jansson object per record
 * and dumped the answer compact, with 10 significant digits) and compares
 * the two over random answers: strings with quotes, backslashes, every C0
 * control, DEL, CJK and four-byte UTF-8, and invalid UTF-8 of every kind;
 * positions on and off the microdegree grid, near zero and at the limits;
 * distances from 0 to beyond the Earth, NaN and infinite; attributes of
 * every type, with keys that repeat each other or the standard members,
 * numbers that are whole, fractional, huge or not finite; answers in json
 * and geojson, with and without a "crs", of facility records, field records
 * and none, interrupted by errors and by reply_take(). The text format's
 * attributes, also written without printf() now when they are whole numbers,
 * are compared with a printf() model over the same random attributes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "errors.h"
#include "reply.h"
#include "test_rng.h"

#define MODEL_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(10))
#define MAX_ATTRS 8
#define MAX_RECORDS 6

static uint64_t rng_state = 20261129;

static uint64_t rnd(void) {
    return test_rng_splitmix64(&rng_state);
}

static unsigned pick(unsigned n) {
    return (unsigned)(rnd() % n);
}

/* ---- The model: the jansson builder reply.c used before ------------------------ */

static json_t *model_str(const char *s) {
    json_t *j = json_string(s);
    return j ? j : json_string("?");
}

static json_t *model_round(double v, double scale) {
    return json_real(round(v * scale) / scale);
}

static json_t *model_attr_value(const struct reply_attr *a) {
    switch (a->type) {
    case REPLY_ATTR_NUM:
        if (a->num == floor(a->num) && fabs(a->num) < 1e15) {
            return json_integer((json_int_t)a->num);
        }
        return json_real(a->num);
    case REPLY_ATTR_BOOL:
        return json_boolean(a->num != 0.0);
    case REPLY_ATTR_IDS: {
        json_t *arr = json_array();
        const char *p = a->text ? a->text : "";
        while (arr && *p) {
            const char *end = strchr(p, ';');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            json_array_append_new(arr, json_stringn(p, len));
            p = end ? end + 1 : p + len;
        }
        return arr;
    }
    default:
        return model_str(a->text ? a->text : "");
    }
}

static json_t *model_add_attrs(json_t *obj, const struct reply_facility *f) {
    for (size_t i = 0; obj && i < f->n_attrs; i++) {
        if (!json_object_get(obj, f->attrs[i].key)) {
            json_object_set_new(obj, f->attrs[i].key, model_attr_value(&f->attrs[i]));
        }
    }
    return obj;
}

static json_t *model_facility(bool geojson, const struct reply_facility *f) {
    json_t *dist = isnan(f->distance_m) ? json_null() : model_round(f->distance_m, 10.0);
    if (geojson) {
        json_t *feat = json_pack(
            "{s:s, s:{s:s, s:[o, o]}, s:{s:o, s:o, s:o, s:o}}", "type", "Feature", "geometry",
            "type", "Point", "coordinates", model_round(f->where.lon_deg, 1e6),
            model_round(f->where.lat_deg, 1e6), "properties", "id", model_str(f->id),
            "category", model_str(f->category), "name", model_str(f->name), "distance_m", dist);
        model_add_attrs(json_object_get(feat, "properties"), f);
        return feat;
    }
    json_t *obj = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "id", model_str(f->id),
                            "category", model_str(f->category), "name", model_str(f->name),
                            "lat", model_round(f->where.lat_deg, 1e6), "lon",
                            model_round(f->where.lon_deg, 1e6), "distance_m", dist);
    return model_add_attrs(obj, f);
}

/* The area Feature the model built (reply_area()'s jansson path), or NULL. */
static json_t *model_area(const struct reply_area *a) {
    json_t *geometry = a->geometry ? json_loads(a->geometry, JSON_DECODE_ANY, NULL) : json_null();
    json_t *feat = geometry ? json_pack("{s:s, s:o, s:{s:o, s:o, s:o, s:o}}", "type", "Feature",
                                        "geometry", geometry, "properties", "id",
                                        model_str(a->id), "kind", model_str(a->kind), "name",
                                        model_str(a->name), "parent", model_str(a->parent))
                            : NULL;
    if (feat && a->served_by) {
        struct reply_attr ids = {.key = "served_by", .type = REPLY_ATTR_IDS,
                                 .text = a->served_by};
        json_object_set_new(json_object_get(feat, "properties"), "served_by",
                            model_attr_value(&ids));
    }
    return feat;
}

/* The line the model writes for an answer of these records (an array of
 * json_t records, stolen), or NULL when one of them could not be built. */
static char *model_answer(bool geojson, const char *crs, json_t *records) {
    size_t n = json_array_size(records);
    bool features = geojson && (n == 0 || json_is_object(json_array_get(records, 0)));
    json_t *doc = features ? json_pack("{s:s, s:b, s:I, s:o}", "type", "FeatureCollection",
                                       "ok", 1, "count", (json_int_t)n, "features", records)
                           : json_pack("{s:b, s:I, s:o}", "ok", 1, "count", (json_int_t)n,
                                       "results", records);
    assert_non_null(doc);
    if (crs) {
        assert_int_equal(json_object_set_new(doc, "crs", json_string(crs)), 0);
    }
    char *text = json_dumps(doc, MODEL_FLAGS);
    json_decref(doc);
    assert_non_null(text);
    size_t len = strlen(text);
    char *line = malloc(len + 2);
    assert_non_null(line);
    memcpy(line, text, len);
    memcpy(line + len, "\n", 2);
    free(text);
    return line;
}

/* ---- Random input ------------------------------------------------------------ */

/* Pieces strings are made of: each kind of byte the writer treats apart. */
static const char *const pieces[] = {
    "a", "Bench meal_point 51135", "0123456789abcdef", "\"", "\\", "/", "\t", "\n", "\r",
    "\b", "\f", "\x01", "\x1f", "\x7f", " ", ";", "=", "é", "虎山路街道", "长者食堂",
    "\xf0\x9f\x98\x80",        /* U+1F600 */
    "\xef\xbf\xbf",            /* U+FFFF */
    "\xed\x9f\xbf",            /* U+D7FF, below the surrogates */
    "\xee\x80\x80",            /* U+E000, above them */
    "\xf4\x8f\xbf\xbf",        /* U+10FFFF */
};

/* ... and the invalid UTF-8 jansson refuses. */
static const char *const bad_pieces[] = {
    "\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80", "\xed\xbf\xbf",
    "\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xc3", "\xe8\x99",
    "\xc3\x28",
};

#define N_PIECES (sizeof pieces / sizeof pieces[0])
#define N_BAD (sizeof bad_pieces / sizeof bad_pieces[0])

/* Fills out (cap bytes) with a random string; invalid UTF-8 one time in
 * `bad_one_in` (never when 0). */
static void random_string(char *out, size_t cap, unsigned bad_one_in) {
    size_t len = 0;
    unsigned n = pick(7);
    bool bad = bad_one_in && pick(bad_one_in) == 0;
    unsigned bad_at = bad ? pick(n + 1) : 0;
    out[0] = '\0';
    for (unsigned i = 0; i <= n; i++) {
        const char *p = (bad && i == bad_at) ? bad_pieces[pick(N_BAD)]
                        : i < n             ? pieces[pick(N_PIECES)]
                                            : "";
        size_t pl = strlen(p);
        if (len + pl + 1 > cap) {
            break;
        }
        memcpy(out + len, p, pl + 1);
        len += pl;
    }
}

/* A position in degrees: on the microdegree grid, off it, near zero, whole,
 * and rarely not a number at all (which jansson could not hold). */
static double random_degrees(double limit) {
    if (pick(200) == 0) {
        return pick(2) ? NAN : -INFINITY;
    }
    switch (pick(6)) {
    case 0:
        return test_rng_microdeg(rnd(), -limit, limit);
    case 1:
        return test_rng_range(rnd(), -limit, limit);
    case 2:
        return test_rng_range(rnd(), -2e-4, 2e-4);
    case 3:
        return (double)((int)pick(2 * (unsigned)limit + 1) - (int)limit);
    case 4:
        return (double)((int64_t)pick(2000001) - 1000000) / 1e6 * (pick(2) ? 1 : 100);
    default:
        return pick(2) ? limit : -limit;
    }
}

static double random_distance(void) {
    static const double special[] = {0.0, -0.0, 0.04, 0.05, 0.05000000000000001, 0.95,
                                     99.95, 1e8, 99999999.94, 1e9, 1e15, 1e300};
    switch (pick(8)) {
    case 0:
        return special[pick(sizeof special / sizeof special[0])];
    case 1:
        return NAN;
    case 2:
        return pick(4) ? test_rng_range(rnd(), 0, 1) : INFINITY;
    case 3:
        return (double)pick(100000) / 10.0;
    default:
        return test_rng_range(rnd(), 0, pick(2) ? 5000 : 2.1e7);
    }
}

static const char *const keys[] = {"stars", "beds", "free", "street", "serves", "id", "name",
                                   "lat", "lon", "distance_m", "category", "type",
                                   "a\"b", "tab\tkey", "键", "\xc3\x28", ""};

static double random_number(void) {
    static const double special[] = {0.0, -0.0, 1.0, -7.0, 3.5, 1e15, -1e15, 999999999999999.0,
                                     1e-5, 1e20, 123456.789, 1.0 / 3.0, 1e-300};
    switch (pick(5)) {
    case 0:
        return special[pick(sizeof special / sizeof special[0])];
    case 1:
        return pick(2) ? NAN : (pick(2) ? INFINITY : -INFINITY);
    case 2:
        return (double)((int64_t)(rnd() % 2000001) - 1000000);
    default:
        return test_rng_range(rnd(), -1e6, 1e6);
    }
}

struct rec {
    char id[64], category[32], name[128];
    char texts[MAX_ATTRS][64];
    struct reply_attr attrs[MAX_ATTRS];
    struct reply_facility f;
};

static void random_record(struct rec *r) {
    memset(r, 0, sizeof *r);
    random_string(r->id, sizeof r->id, 20);
    random_string(r->category, sizeof r->category, 40);
    random_string(r->name, sizeof r->name, 20);
    if (pick(3) == 0) {
        strcpy(r->category, "meal_point");
    }
    size_t n_attrs = pick(3) ? pick(MAX_ATTRS + 1) : 0;
    for (size_t i = 0; i < n_attrs; i++) {
        struct reply_attr *a = &r->attrs[i];
        a->key = keys[pick(sizeof keys / sizeof keys[0])];
        static const int types[] = {REPLY_ATTR_NUM, REPLY_ATTR_BOOL, REPLY_ATTR_TEXT,
                                    REPLY_ATTR_IDS, 99};
        a->type = types[pick(5)];
        a->num = a->type == REPLY_ATTR_BOOL ? (double)pick(2) : random_number();
        if (pick(8)) {
            random_string(r->texts[i], sizeof r->texts[i], 10);
            a->text = r->texts[i];
        }
    }
    r->f.id = r->id;
    r->f.category = r->category;
    r->f.name = r->name;
    r->f.where.lat_deg = random_degrees(90);
    r->f.where.lon_deg = random_degrees(180);
    r->f.distance_m = random_distance();
    r->f.attrs = n_attrs ? r->attrs : NULL;
    r->f.n_attrs = n_attrs;
    r->f.has_e6 = false;
    if (pick(4) == 0) {
        /* What the catalogue hands over: microdegrees and the same position. */
        r->f.has_e6 = true;
        r->f.lat_e6 = (int32_t)((int64_t)(rnd() % 180000001) - 90000000);
        r->f.lon_e6 = (int32_t)((int64_t)(rnd() % 360000001) - 180000000);
        if (pick(8) == 0) {
            r->f.lat_e6 = (int32_t)pick(201) - 100;
        }
        r->f.where.lat_deg = r->f.lat_e6 / 1e6;
        r->f.where.lon_deg = r->f.lon_e6 / 1e6;
    }
    if (pick(2)) {
        r->f.id_len = strlen(r->id);
        r->f.category_len = strlen(r->category);
        r->f.name_len = strlen(r->name);
    }
}

/* ---- Tests ------------------------------------------------------------------- */

/* The reply's bytes equal `want` (NULL: the reply must have failed). */
static void assert_reply_is(struct reply *r, const char *want) {
    if (!want) {
        assert_true(reply_failed(r));
        return;
    }
    assert_false(reply_failed(r));
    size_t len;
    char *got = reply_take(r, &len);
    if (!got || len != strlen(want) || memcmp(got, want, len) != 0) {
        fprintf(stderr, "want: %s\ngot:  %.*s\n", want, (int)len, got ? got : "");
        fail();
    }
    free(got);
}

static void test_facility_answers_are_the_bytes_jansson_dumped(void **state) {
    (void)state;
    static struct rec recs[MAX_RECORDS];
    for (int round = 0; round < 60000; round++) {
        bool geojson = pick(2);
        const char *crs = pick(3) == 0 ? (pick(2) ? "gcj02" : "bd09") : NULL;
        size_t n = pick(MAX_RECORDS + 1);
        struct reply r;
        reply_init(&r);
        r.format = geojson ? REPLY_GEOJSON : REPLY_JSON;
        json_t *records = json_array();
        bool ok = true;
        for (size_t i = 0; i < n; i++) {
            random_record(&recs[i]);
            json_t *rec = model_facility(geojson, &recs[i].f);
            ok = ok && rec != NULL;
            if (rec) {
                json_array_append_new(records, rec);
            }
        }
        char *want = ok ? model_answer(geojson, crs, records) : NULL;
        if (!ok) {
            json_decref(records);
        }
        if (crs) {
            reply_set_crs(&r, crs);
        }
        reply_ok(&r, n);
        for (size_t i = 0; i < n; i++) {
            reply_facility(&r, &recs[i].f);
        }
        assert_reply_is(&r, want);
        free(want);
        reply_close(&r);
    }
}

static void test_field_records_and_empty_answers_are_the_bytes_jansson_dumped(void **state) {
    (void)state;
    char fields[4][128];
    const char *ptrs[4];
    for (int round = 0; round < 20000; round++) {
        bool geojson = pick(2);
        size_t n = pick(4), n_fields = 1 + pick(4);
        const char *crs = pick(4) == 0 ? "wgs84" : NULL;
        json_t *records = json_array();
        struct reply r;
        reply_init(&r);
        r.format = geojson ? REPLY_GEOJSON : REPLY_JSON;
        if (crs) {
            reply_set_crs(&r, crs);
        }
        reply_ok(&r, n);
        for (size_t i = 0; i < n; i++) {
            json_t *rec = json_array();
            for (size_t k = 0; k < n_fields; k++) {
                random_string(fields[k], sizeof fields[k], 8);
                ptrs[k] = fields[k];
                json_array_append_new(rec, model_str(fields[k]));
            }
            json_array_append_new(records, rec);
            reply_fields(&r, n_fields, ptrs);
        }
        char *want = model_answer(geojson, crs, records);
        assert_reply_is(&r, want);
        free(want);
        reply_close(&r);
    }
}

/* An ERR in the middle of an answer replaces it, as the model's drop did; a
 * reply_take() in the middle hands over only the whole answers before it,
 * and the open answer goes on in the next buffer. */
static void test_errors_and_takes_in_the_middle_of_an_answer(void **state) {
    (void)state;
    struct rec a, b;
    random_record(&a);
    random_record(&b);
    a.f.distance_m = b.f.distance_m = 12.5;
    a.f.where = b.f.where = (struct geo_point){.lat_deg = 36.16, .lon_deg = 120.41};
    a.f.has_e6 = b.f.has_e6 = false;
    strcpy(a.id, "a");
    strcpy(b.id, "b");
    a.f.id_len = b.f.id_len = 0;
    struct reply r;
    reply_init(&r);
    r.format = REPLY_JSON;
    reply_ok(&r, 3);
    reply_facility(&r, &a.f);
    reply_err(&r, CMD_ERR_ARG, "bad %s", "thing");
    json_t *err = json_pack("{s:b, s:{s:s, s:s}}", "ok", 0, "error", "code", "ARG", "message",
                            "bad thing");
    char *text = json_dumps(err, MODEL_FLAGS);
    char want[512];
    snprintf(want, sizeof want, "%s\n", text);
    free(text);
    json_decref(err);
    assert_reply_is(&r, want);

    /* A whole answer, then half of one: only the first is taken. */
    reply_ok(&r, 0);
    reply_ok(&r, 2);
    reply_facility(&r, &a.f);
    size_t len;
    char *first = reply_take(&r, &len);
    json_t *none = json_array();
    char *want_first = model_answer(false, NULL, none);
    assert_non_null(first);
    assert_int_equal(len, strlen(want_first));
    assert_memory_equal(first, want_first, len);
    free(first);
    free(want_first);
    reply_facility(&r, &b.f);
    json_t *two = json_array();
    json_array_append_new(two, model_facility(false, &a.f));
    json_array_append_new(two, model_facility(false, &b.f));
    char *want_two = model_answer(false, NULL, two);
    assert_reply_is(&r, want_two);
    free(want_two);

    /* A record with no answer owed fails the reply rather than write it. */
    reply_facility(&r, &a.f);
    assert_true(reply_failed(&r));
    reply_close(&r);
}

/* A text field as the builder cleans it: C0 controls and DEL become spaces. */
static void model_clean(char *out, size_t cap, const char *s) {
    size_t n = 0;
    for (; s[n] && n + 1 < cap; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    out[n] = '\0';
}

static void test_text_attributes_print_as_printf_would(void **state) {
    (void)state;
    struct rec rec;
    char want[8192], clean[3][256];
    for (int round = 0; round < 100000; round++) {
        random_record(&rec);
        if (isnan(rec.f.distance_m) || !(rec.f.distance_m >= 0) ||
            rec.f.distance_m >= 1e15) {
            rec.f.distance_m = 1.0;
        }
        rec.f.distance_m = fabs(rec.f.distance_m); /* the text format writes -0.0 as 0.0 */
        if (!isfinite(rec.f.where.lat_deg)) {
            rec.f.where.lat_deg = 0.0;
        }
        rec.f.has_e6 = false;
        rec.f.plain_text = false;
        model_clean(clean[0], sizeof clean[0], rec.id);
        model_clean(clean[1], sizeof clean[1], rec.category);
        model_clean(clean[2], sizeof clean[2], rec.name);
        int w = snprintf(want, sizeof want, "OK 1\n%s\t%s\t%s\t%.6f\t%.6f\t%.1f", clean[0],
                         clean[1], clean[2], rec.f.where.lat_deg, rec.f.where.lon_deg,
                         rec.f.distance_m);
        for (size_t i = 0; i < rec.f.n_attrs; i++) {
            const struct reply_attr *a = &rec.attrs[i];
            char key[256], value[256];
            model_clean(key, sizeof key, a->key);
            if (a->type == REPLY_ATTR_NUM) {
                snprintf(value, sizeof value, "%.15g", a->num);
            } else if (a->type == REPLY_ATTR_BOOL) {
                strcpy(value, a->num != 0.0 ? "true" : "false");
            } else {
                model_clean(value, sizeof value, a->text ? a->text : "");
            }
            w += snprintf(want + w, sizeof want - (size_t)w, "\t%s=%s", key, value);
        }
        snprintf(want + w, sizeof want - (size_t)w, "\n");
        struct reply r;
        reply_init(&r);
        reply_ok(&r, 1);
        reply_facility(&r, &rec.f);
        assert_reply_is(&r, want);
        reply_close(&r);
    }
}

/* A finite facility record named `id`, for the lifecycle tests. */
static void plain_record(struct rec *r, const char *id) {
    random_record(r);
    snprintf(r->id, sizeof r->id, "%s", id);
    r->f.id_len = 0;
    r->f.has_e6 = false;
    r->f.where = (struct geo_point){.lat_deg = 36.16, .lon_deg = 120.41};
    r->f.distance_m = 7.0;
    r->f.n_attrs = 0;
}

/* The model's line for an answer of these facility records. */
static char *model_facilities(bool geojson, const struct rec *const *recs, size_t n) {
    json_t *records = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(records, model_facility(geojson, &recs[i]->f));
    }
    return model_answer(geojson, NULL, records);
}

/* Takes r's bytes and asserts they are the concatenation of want[0..n). */
static void assert_taken(struct reply *r, bool whole_buffer, char *const *want, size_t n) {
    char all[16384];
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        w += (size_t)snprintf(all + w, sizeof all - w, "%s", want[i]);
    }
    size_t len, cap;
    char *got = whole_buffer ? reply_take_buffer(r, &len, &cap) : reply_take(r, &len);
    assert_false(reply_failed(r));
    assert_int_equal(len, w);
    if (w > 0) {
        assert_memory_equal(got, all, w);
    }
    free(got);
}

/* An answer still owed records survives takes of either kind, from before
 * its first record to its last, in both formats; finished answers are handed
 * over whole and alone. */
static void test_takes_hold_an_unfinished_answer_in_both_formats(void **state) {
    (void)state;
    struct rec a, b;
    plain_record(&a, "a");
    plain_record(&b, "b");
    const struct rec *both[] = {&a, &b};
    for (int geo = 0; geo < 2; geo++) {
        for (int whole = 0; whole < 2; whole++) {
            struct reply r;
            reply_init(&r);
            r.format = geo ? REPLY_GEOJSON : REPLY_JSON;
            reply_ok(&r, 0);
            char *empty = model_facilities(geo, NULL, 0);
            reply_ok(&r, 2);
            assert_taken(&r, whole, &empty, 1); /* announced, nothing written yet */
            reply_facility(&r, &a.f);
            assert_taken(&r, whole, NULL, 0);  /* one of two written */
            reply_facility(&r, &b.f);
            char *two = model_facilities(geo, both, 2);
            assert_taken(&r, whole, &two, 1);
            free(empty);
            free(two);
            reply_close(&r);
        }
    }
}

/* reply_append() puts the finished answers of `from` before the answer r is
 * still building, which then goes on; an answer `from` is still building
 * stays in from. */
static void test_append_goes_before_an_unfinished_answer(void **state) {
    (void)state;
    struct rec a, b, c;
    plain_record(&a, "a");
    plain_record(&b, "b");
    plain_record(&c, "c");
    struct reply r, from;
    reply_init(&r);
    reply_init(&from);
    r.format = from.format = REPLY_JSON;
    reply_ok(&r, 2);
    reply_facility(&r, &a.f);
    reply_ok(&from, 1);
    reply_facility(&from, &c.f);
    reply_ok(&from, 1); /* still owed its record */
    reply_append(&r, &from);
    reply_facility(&r, &b.f);
    const struct rec *ab[] = {&a, &b}, *just_c[] = {&c};
    char *want[] = {model_facilities(false, just_c, 1), model_facilities(false, ab, 2)};
    assert_taken(&r, false, want, 2);
    reply_facility(&from, &c.f);
    assert_taken(&from, false, want, 1);
    free(want[0]);
    free(want[1]);
    reply_close(&r);
    reply_close(&from);
}

/* An answer left unfinished when the format changes is dropped by the next
 * answer, as an ERR drops it: nothing of it is sent. */
static void test_a_new_answer_in_another_format_drops_an_unfinished_one(void **state) {
    (void)state;
    struct rec a;
    plain_record(&a, "a");
    struct reply r;
    reply_init(&r);
    r.format = REPLY_JSON;
    reply_ok(&r, 2);
    reply_facility(&r, &a.f);
    r.format = REPLY_TEXT;
    reply_ok(&r, 1);
    const char *fields[] = {"x", "y"};
    reply_fields(&r, 2, fields);
    assert_reply_is(&r, "OK 1\nx\ty\n");
    reply_close(&r);
}

/* A random polygon or multipolygon as GEOS writes one (shortest digits),
 * into out. */
static void random_geometry(char *out, size_t cap) {
    size_t w = 0;
    bool multi = pick(2);
    w += (size_t)snprintf(out + w, cap - w, "{\"type\":\"%s\",\"coordinates\":[%s",
                          multi ? "MultiPolygon" : "Polygon", multi ? "[" : "");
    unsigned n = 3 + pick(5);
    for (unsigned i = 0; i <= n; i++) {
        double lon = test_rng_range(rnd(), -180, 180), lat = test_rng_range(rnd(), -90, 90);
        if (pick(3) == 0) {
            lon = (double)((int)pick(361) - 180);
        }
        w += (size_t)snprintf(out + w, cap - w, "%s[%.17g,%.*g]", i ? "," : "[", lon,
                              1 + (int)pick(17), lat);
    }
    snprintf(out + w, cap - w, "]%s]}", multi ? "]" : "");
}

/* Area features written from a geometry dumped once (what the catalogue
 * keeps for /v1/areas) are the bytes the jansson path wrote. */
static void test_area_features_from_dumped_geometry_are_the_bytes_jansson_dumped(void **state) {
    (void)state;
    char id[64], kind[32], name[128], parent[64], served[64], raw[2048];
    for (int round = 0; round < 20000; round++) {
        random_string(id, sizeof id, 20);
        random_string(kind, sizeof kind, 20);
        random_string(name, sizeof name, 20);
        random_string(parent, sizeof parent, 20);
        random_string(served, sizeof served, 10);
        random_geometry(raw, sizeof raw);
        struct reply_area a = {.id = id, .kind = kind, .name = name, .parent = parent,
                               .served_by = pick(2) ? served : NULL,
                               .geometry = pick(10) ? raw : NULL};
        json_t *records = json_array();
        json_array_append_new(records, model_area(&a));
        char *want = model_answer(true, NULL, records);
        char *dumped = a.geometry ? reply_geometry_json(a.geometry) : NULL;
        assert_true(!a.geometry || dumped);
        a.geometry = dumped;
        a.geometry_dumped = dumped != NULL;
        struct reply r;
        reply_init(&r);
        r.format = REPLY_GEOJSON;
        reply_ok(&r, 1);
        reply_area(&r, &a);
        assert_reply_is(&r, want);
        free(want);
        free(dumped);
        reply_close(&r);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_facility_answers_are_the_bytes_jansson_dumped),
        cmocka_unit_test(test_field_records_and_empty_answers_are_the_bytes_jansson_dumped),
        cmocka_unit_test(test_errors_and_takes_in_the_middle_of_an_answer),
        cmocka_unit_test(test_text_attributes_print_as_printf_would),
        cmocka_unit_test(test_takes_hold_an_unfinished_answer_in_both_formats),
        cmocka_unit_test(test_append_goes_before_an_unfinished_answer),
        cmocka_unit_test(test_a_new_answer_in_another_format_drops_an_unfinished_one),
        cmocka_unit_test(test_area_features_from_dumped_geometry_are_the_bytes_jansson_dumped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
