/* test_geo_index.c: the spatial index against a brute-force scan.
 *
 * The oracle keeps a plain table of what the index should hold (handle ->
 * live, layer, point, value) and answers a query by measuring every live
 * entry of the selected layers with geo_distance_m(), dropping what the value
 * filter or the filter rejects or max_distance_m excludes, and sorting by
 * (distance, handle). The index must return the same handles in the same
 * order with bit-identical distances. Every value an entry gets (at the
 * build or a put) is new, so the value filter can tell which entry a value
 * belongs to: it checks that it only ever sees the current value of a live
 * entry of a selected layer, once, and the filter that it only sees entries
 * the value filter kept.
 * Point sets: uniform on the globe (poles and antimeridian included) and
 * clustered in a Licang-sized box with exact duplicates and crowds of entries
 * on one spot. Queries mix k from 1 to past the number of matches, layer
 * masks, filters and value filters keeping from 0 to 100 %, alone and
 * together, and distance limits, before and after random inserts, moves,
 * value changes and removes that push layers through their rebuild.
 * geo_distance_m() costs about 60 ns here, and the brute-force work is sized
 * to a few seconds in all. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "geo_distance.h"
#include "geo_index.h"
#include "test_rng.h"

/* ---- Random numbers ------------------------------------------------------ */

static uint64_t rng_state = 0x67656f5f696e6478ULL;

static uint64_t rng_next(void) {
    return test_rng_splitmix64(&rng_state);
}

static double rng_unit(void) {
    return test_rng_unit(rng_next());
}

static double rng_range(double lo, double hi) {
    return test_rng_range(rng_next(), lo, hi);
}

static uint32_t rng_below(uint32_t n) {
    return (uint32_t)(rng_next() % n);
}

/* ---- Point sets ------------------------------------------------------------ */

/* Licang district's WGS84 bounding box, about 15 x 12 km. */
#define LICANG_LAT_LO 36.134047
#define LICANG_LAT_HI 36.238138
#define LICANG_LON_LO 120.338342
#define LICANG_LON_HI 120.506382

/* Anywhere on the globe, with extra weight near the poles and the antimeridian
 * and now and then exactly on a pole or on +-180. */
static struct geo_point random_global_point(void) {
    struct geo_point p;
    double pick = rng_unit();
    if (pick < 0.1) {
        p.lat_deg = rng_range(89.0, 90.0);
    } else if (pick < 0.2) {
        p.lat_deg = rng_range(-90.0, -89.0);
    } else {
        p.lat_deg = asin(rng_range(-1.0, 1.0)) * (180.0 / M_PI);
    }
    if (pick > 0.8) {
        p.lon_deg = rng_unit() < 0.5 ? rng_range(179.0, 180.0) : rng_range(-180.0, -179.0);
    } else {
        p.lon_deg = rng_range(-180.0, 180.0);
    }
    if (rng_unit() < 0.01) {
        p.lat_deg = rng_unit() < 0.5 ? 90.0 : -90.0;
    }
    if (rng_unit() < 0.01) {
        p.lon_deg = rng_unit() < 0.5 ? 180.0 : -180.0;
    }
    return p;
}

#define N_CENTRES 12
static struct geo_point centres[N_CENTRES];

static void pick_centres(void) {
    for (int i = 0; i < N_CENTRES; i++) {
        centres[i].lat_deg = rng_range(LICANG_LAT_LO, LICANG_LAT_HI);
        centres[i].lon_deg = rng_range(LICANG_LON_LO, LICANG_LON_HI);
    }
}

/* Mostly around a few centres (spread of a few hundred metres), the rest
 * anywhere in the box. */
static struct geo_point random_licang_point(void) {
    if (rng_unit() < 0.3) {
        struct geo_point p = {rng_range(LICANG_LAT_LO, LICANG_LAT_HI),
                              rng_range(LICANG_LON_LO, LICANG_LON_HI)};
        return p;
    }
    struct geo_point c = centres[rng_below(N_CENTRES)];
    double r = 0.004 * rng_unit() * rng_unit();
    double a = rng_range(0.0, 2.0 * M_PI);
    struct geo_point p = {c.lat_deg + r * sin(a), c.lon_deg + r * cos(a)};
    return p;
}

/* ---- The oracle ------------------------------------------------------------ */

struct model_entry {
    bool live;
    uint8_t layer;
    struct geo_point where;
    uint32_t value;      /* geo_entry.value: from new_value(), unique */
};

#define MODEL_MAX 60000
static struct model_entry model[MODEL_MAX];
static size_t model_live;

/* Values are serials with high bits set (so that all 32 bits go through),
 * and value_owner[serial] is 1 + the handle that got it. */
#define VALUE_HIGH 0xA5000000u
#define VALUE_MAX (1u << 18)
static uint32_t value_owner[VALUE_MAX];
static uint32_t next_serial;

static void model_clear(void) {
    memset(model, 0, sizeof model);
    memset(value_owner, 0, sizeof value_owner);
    next_serial = 0;
    model_live = 0;
}

/* A value no entry has had since model_clear(), now handle h's. */
static uint32_t new_value(uint32_t h) {
    assert_true(next_serial < VALUE_MAX);
    value_owner[next_serial] = h + 1;
    return VALUE_HIGH ^ next_serial++;
}

/* Value filters keep a share of values, by a hash, or exactly one value.
 * Each call also checks that the value is the current one of a live entry of
 * a selected layer, asked about at most once; the calls are counted in the
 * mutable part. */
struct value_calls {
    uint32_t layer_mask; /* the query's, to check the calls */
    size_t calls;
    size_t bad_calls;    /* a value no live entry of a selected layer has, or twice */
};

struct value_ctx {
    uint32_t percent;    /* keep this share of values, 0..100 */
    uint32_t salt;       /* varies which */
    bool only_one;       /* keep exactly `keep` instead */
    uint32_t keep;
    struct value_calls *state;
};

static uint8_t value_seen[MODEL_MAX];

static bool value_keeps(uint32_t value, const struct value_ctx *v) {
    if (v->only_one) {
        return value == v->keep;
    }
    return test_rng_hash32(value ^ v->salt) % 100 < v->percent;
}

static bool test_value_filter(uint32_t value, const void *ctx) {
    const struct value_ctx *v = ctx;
    struct value_calls *st = v->state;
    st->calls++;
    uint32_t serial = value ^ VALUE_HIGH;
    uint32_t h = serial < VALUE_MAX ? value_owner[serial] : 0;
    if (h == 0 || !model[h - 1].live || model[h - 1].value != value ||
        !(st->layer_mask >> model[h - 1].layer & 1u) || value_seen[h - 1]) {
        st->bad_calls++;
        return false;
    }
    value_seen[h - 1] = 1;
    return value_keeps(value, v);
}

/* Filters: keep a share of handles, exactly one handle, or nothing. Each call
 * also checks that the index only asks about live entries of selected layers
 * that the query's value filter kept, and about each entry at most once. */
enum filter_kind { KEEP_SHARE, KEEP_ONE, KEEP_RESIDUE };

struct filter_ctx {
    enum filter_kind kind;
    uint32_t percent;    /* KEEP_SHARE: keep this share of handles, 0..100 */
    uint32_t salt;       /* KEEP_SHARE: varies which handles */
    uint32_t keep;       /* KEEP_ONE: the handle kept; KEEP_RESIDUE: h % modulus */
    uint32_t modulus;    /* KEEP_RESIDUE */
    uint32_t layer_mask; /* the query's, to check the calls */
    const struct value_ctx *value; /* the query's value filter's, or NULL */
    size_t calls;
    size_t bad_calls;    /* calls for a dead entry, an unselected layer, one the value
                          * filter rejected, or twice */
    uint8_t *seen;       /* per handle: asked already in this query */
};

static uint8_t seen_buf[MODEL_MAX];

static bool filter_keeps(uint32_t handle, const struct filter_ctx *f) {
    if (f->kind == KEEP_ONE) {
        return handle == f->keep;
    }
    if (f->kind == KEEP_RESIDUE) {
        return handle % f->modulus == f->keep;
    }
    return test_rng_hash32(handle ^ f->salt) % 100 < f->percent;
}

static bool test_filter(uint32_t handle, void *ctx) {
    struct filter_ctx *f = ctx;
    f->calls++;
    if (handle >= MODEL_MAX || !model[handle].live ||
        !(f->layer_mask >> model[handle].layer & 1u) || f->seen[handle] ||
        (f->value != NULL && !value_keeps(model[handle].value, f->value))) {
        f->bad_calls++;
        return false;
    }
    f->seen[handle] = 1;
    return filter_keeps(handle, f);
}

static int hit_order(const void *pa, const void *pb) {
    const struct geo_hit *a = pa, *b = pb;
    if (a->distance_m != b->distance_m) {
        return a->distance_m < b->distance_m ? -1 : 1;
    }
    return a->handle < b->handle ? -1 : a->handle > b->handle;
}

static struct geo_hit scan_buf[MODEL_MAX];

/* The obviously correct answer. */
static size_t brute_nearest(const struct geo_query *q, struct geo_hit *out) {
    size_t n = 0;
    for (uint32_t h = 0; h < MODEL_MAX; h++) {
        const struct model_entry *m = &model[h];
        if (!m->live || !(q->layer_mask >> m->layer & 1u)) {
            continue;
        }
        if (q->value_filter != NULL && !value_keeps(m->value, q->value_ctx)) {
            continue;
        }
        if (q->filter != NULL && !filter_keeps(h, q->filter_ctx)) {
            continue;
        }
        double d = geo_distance_m(q->from, m->where);
        if (d <= q->max_distance_m) {
            scan_buf[n].handle = h;
            scan_buf[n].distance_m = d;
            n++;
        }
    }
    qsort(scan_buf, n, sizeof *scan_buf, hit_order);
    n = n < q->k ? n : q->k;
    memcpy(out, scan_buf, n * sizeof *out);
    return n;
}

static struct geo_hit got[MODEL_MAX], want[MODEL_MAX];

/* Runs q on the index and on the oracle and asserts they agree exactly.
 * Returns the number of hits. */
static size_t check_query(const struct geo_index *ix, struct geo_query *q) {
    struct filter_ctx *f = q->filter_ctx;
    const struct value_ctx *v = q->value_filter != NULL ? q->value_ctx : NULL;
    if (f != NULL) {
        memset(seen_buf, 0, sizeof seen_buf);
        f->seen = seen_buf;
        f->layer_mask = q->layer_mask;
        f->value = v;
        f->calls = f->bad_calls = 0;
    }
    if (v != NULL) {
        memset(value_seen, 0, sizeof value_seen);
        *v->state = (struct value_calls){.layer_mask = q->layer_mask};
    }
    size_t n_got = 12345;
    assert_int_equal(geo_index_nearest(ix, q, got, &n_got), GEO_OK);
    size_t n_want = brute_nearest(q, want);
    if (n_got != n_want) {
        fprintf(stderr, "query (%.9f, %.9f) k=%zu mask=%x max=%g: %zu hits, want %zu\n",
                q->from.lat_deg, q->from.lon_deg, q->k, q->layer_mask, q->max_distance_m,
                n_got, n_want);
    }
    assert_int_equal(n_got, n_want);
    for (size_t i = 0; i < n_got; i++) {
        if (got[i].handle != want[i].handle || got[i].distance_m != want[i].distance_m) {
            fprintf(stderr, "hit %zu: got %u at %.12f, want %u at %.12f\n", i, got[i].handle,
                    got[i].distance_m, want[i].handle, want[i].distance_m);
        }
        assert_int_equal(got[i].handle, want[i].handle);
        assert_true(got[i].distance_m == want[i].distance_m);
    }
    if (f != NULL) {
        assert_int_equal(f->bad_calls, 0);
    }
    if (v != NULL) {
        assert_int_equal(v->state->bad_calls, 0);
    }
    return n_got;
}

/* A random query: from near the data, on an entry's exact spot or anywhere;
 * k from 1 to past the data; one, some or all layers; sometimes a filter,
 * sometimes a value filter (so sometimes both), and sometimes a distance
 * limit. */
static struct geo_query random_query(bool global, uint32_t n_layers, struct filter_ctx *f,
                                     struct value_ctx *v) {
    struct geo_query q = {.max_distance_m = INFINITY};
    double pick = rng_unit();
    if (pick < 0.15) {
        uint32_t h = rng_below(MODEL_MAX);
        for (int tries = 0; tries < 100 && !model[h].live; tries++) {
            h = rng_below(MODEL_MAX);
        }
        q.from = model[h].live ? model[h].where : random_global_point();
    } else if (global || pick < 0.25) {
        q.from = random_global_point();
    } else {
        q.from = random_licang_point();
    }
    /* 15 - 17: either side of GI_SORTED_K, where the k smallest upper bounds
     * move from a sorted array to a heap; 33: past GI_FEW_MAX. */
    static const size_t ks[] = {1, 1, 2, 5, 5, 5, 10, 15, 16, 17, 33, 37, 200, 5000};
    q.k = ks[rng_below(sizeof ks / sizeof ks[0])];
    pick = rng_unit();
    if (pick < 0.4) {
        q.layer_mask = 1u << rng_below(n_layers);
    } else if (pick < 0.8) {
        q.layer_mask = (uint32_t)rng_next() & (n_layers >= 32 ? UINT32_MAX : (1u << n_layers) - 1);
    } else {
        q.layer_mask = UINT32_MAX;
    }
    if (rng_unit() < 0.5) {
        static const uint32_t shares[] = {0, 1, 1, 10, 50, 90, 100};
        f->kind = KEEP_SHARE;
        f->percent = shares[rng_below(sizeof shares / sizeof shares[0])];
        f->salt = (uint32_t)rng_next();
        q.filter = test_filter;
        q.filter_ctx = f;
    }
    if (rng_unit() < 0.4) {
        static const uint32_t shares[] = {0, 1, 1, 10, 17, 50, 90, 100};
        v->percent = shares[rng_below(sizeof shares / sizeof shares[0])];
        v->salt = (uint32_t)rng_next();
        q.value_filter = test_value_filter;
        q.value_ctx = v;
    }
    if (rng_unit() < 0.3) {
        static const double limits[] = {0.0, 50.0, 300.0, 2000.0, 20000.0, 3e6};
        q.max_distance_m = limits[rng_below(sizeof limits / sizeof limits[0])];
    }
    return q;
}

/* Fills the model and a build array with n entries in n_layers layers, with
 * handles shuffled over [0, 2n) so they are sparse and out of order. */
static size_t make_entries(struct geo_entry *e, size_t n, uint32_t n_layers, bool global) {
    model_clear();
    size_t made = 0;
    while (made < n) {
        uint32_t h = rng_below((uint32_t)(2 * n < MODEL_MAX ? 2 * n : MODEL_MAX));
        if (model[h].live) {
            continue;
        }
        struct geo_point p = global ? random_global_point() : random_licang_point();
        double dup = rng_unit();
        if (made > 0 && dup < 0.05) {
            p = e[rng_below((uint32_t)made)].where; /* an exact duplicate */
        } else if (!global && dup < 0.08) {
            p = centres[0]; /* a crowd on one spot */
        }
        e[made].handle = h;
        e[made].layer = (uint8_t)rng_below(n_layers);
        e[made].where = p;
        e[made].value = new_value(h);
        model[h] = (struct model_entry){true, e[made].layer, p, e[made].value};
        made++;
    }
    model_live = n;
    return made;
}

static struct geo_entry build_buf[MODEL_MAX];

static struct geo_index *build_random(size_t n, uint32_t n_layers, bool global) {
    make_entries(build_buf, n, n_layers, global);
    struct geo_index *ix = geo_index_new();
    assert_non_null(ix);
    assert_int_equal(geo_index_build(ix, build_buf, n), GEO_OK);
    assert_int_equal(geo_index_count(ix), n);
    return ix;
}

static void run_random_queries(const struct geo_index *ix, int n_queries, bool global,
                               uint32_t n_layers) {
    struct filter_ctx f;
    struct value_calls calls;
    struct value_ctx v;
    for (int i = 0; i < n_queries; i++) {
        memset(&f, 0, sizeof f);
        v = (struct value_ctx){.state = &calls};
        struct geo_query q = random_query(global, n_layers, &f, &v);
        check_query(ix, &q);
    }
}

/* ---- Tests ----------------------------------------------------------------- */

static void test_nearest_matches_brute_force_on_global_points(void **state) {
    (void)state;
    struct geo_index *ix = build_random(3000, 5, true);
    run_random_queries(ix, 800, true, 5);
    geo_index_free(ix);
}

static void test_nearest_matches_brute_force_on_clustered_points_with_duplicates(void **state) {
    (void)state;
    pick_centres();
    struct geo_index *ix = build_random(4000, 5, false);
    run_random_queries(ix, 1200, false, 5);
    geo_index_free(ix);
}

/* Every layer in use, the highest (31) included, and masks of any of them:
 * the search visits exactly the selected layers' trees. */
static void test_nearest_matches_brute_force_in_all_32_layers(void **state) {
    (void)state;
    struct geo_index *ix = build_random(6000, 32, true);
    run_random_queries(ix, 800, true, 32);
    geo_index_free(ix);
}

static void test_nearest_matches_brute_force_in_a_deep_tree(void **state) {
    (void)state;
    pick_centres();
    /* 40000 entries in one layer: leaves, three inner levels and a root. */
    struct geo_index *ix = build_random(40000, 1, false);
    run_random_queries(ix, 150, false, 1);
    geo_index_free(ix);
}

static void test_nearest_returns_k_closest_in_order_with_ties_by_handle(void **state) {
    (void)state;
    model_clear();
    struct geo_point spot = {36.2, 120.4};
    struct geo_entry e[60];
    for (int i = 0; i < 60; i++) {
        /* 40 entries on one spot, 20 spread around it; handles descending so
         * the build order is not the answer's order. */
        e[i].handle = (uint32_t)(1000 - 7 * i);
        e[i].layer = 3;
        e[i].where = spot;
        if (i >= 40) {
            e[i].where.lat_deg += rng_range(-0.01, 0.01);
        }
        e[i].value = new_value(e[i].handle);
        model[e[i].handle] = (struct model_entry){true, 3, e[i].where, e[i].value};
    }
    struct geo_index *ix = geo_index_new();
    assert_int_equal(geo_index_build(ix, e, 60), GEO_OK);
    struct geo_query q = {.from = spot, .layer_mask = 1u << 3, .k = 25,
                          .max_distance_m = INFINITY};
    struct geo_hit hits[25];
    size_t n = 0;
    assert_int_equal(geo_index_nearest(ix, &q, hits, &n), GEO_OK);
    assert_int_equal(n, 25);
    for (size_t i = 0; i < n; i++) {
        assert_true(hits[i].distance_m == 0.0);
        if (i > 0) {
            assert_true(hits[i - 1].handle < hits[i].handle);
        }
    }
    assert_int_equal(hits[0].handle, 1000 - 7 * 39);
    q.k = 60;
    assert_int_equal(check_query(ix, &q), 60);
    q.from.lon_deg += 0.001;
    check_query(ix, &q);
    geo_index_free(ix);
}

static void test_filter_finds_matches_behind_many_rejected_nearer_entries(void **state) {
    (void)state;
    model_clear();
    struct geo_point from = {36.18, 120.42};
    size_t n = 0;
    for (uint32_t h = 0; h < 2000; h++) {
        /* 2000 entries within 300 m; the kept five are beyond 3 km. */
        struct geo_point p = {from.lat_deg + rng_range(-0.002, 0.002),
                              from.lon_deg + rng_range(-0.002, 0.002)};
        if (h % 400 == 7) {
            p.lat_deg += 0.03 + 0.001 * h / 400;
        }
        uint32_t value = new_value(h);
        build_buf[n++] = (struct geo_entry){h, 0, p, value};
        model[h] = (struct model_entry){true, 0, p, value};
    }
    struct geo_index *ix = geo_index_new();
    assert_int_equal(geo_index_build(ix, build_buf, n), GEO_OK);
    struct filter_ctx f = {.kind = KEEP_RESIDUE, .keep = 7, .modulus = 400};
    struct geo_query q = {.from = from, .layer_mask = 1, .k = 5, .max_distance_m = INFINITY,
                          .filter = test_filter, .filter_ctx = &f};
    assert_int_equal(check_query(ix, &q), 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(got[i].handle % 400, 7);
        assert_true(got[i].distance_m > 3000.0);
    }

    /* Only one entry matches, far away: every other one must be asked. */
    f.kind = KEEP_ONE;
    f.keep = 7 + 400 * 3;
    assert_int_equal(check_query(ix, &q), 1);
    assert_int_equal(got[0].handle, 7 + 400 * 3);
    assert_true(got[0].distance_m > 3000.0);
    assert_int_equal(f.calls, n);

    f.kind = KEEP_SHARE;
    f.percent = 0;
    assert_int_equal(check_query(ix, &q), 0);

    /* A filter keeping 1 %: the oracle decides which, the index must agree. */
    f.percent = 1;
    for (uint32_t salt = 0; salt < 20; salt++) {
        f.salt = salt;
        check_query(ix, &q);
    }
    geo_index_free(ix);
}

static void test_k_larger_than_matches_returns_every_match(void **state) {
    (void)state;
    pick_centres();
    struct geo_index *ix = build_random(300, 3, false);
    size_t in_layer = 0;
    for (uint32_t h = 0; h < MODEL_MAX; h++) {
        in_layer += model[h].live && model[h].layer == 1;
    }
    struct geo_query q = {.from = centres[1], .layer_mask = 1u << 1, .k = 1000,
                          .max_distance_m = INFINITY};
    assert_int_equal(check_query(ix, &q), in_layer);
    q.k = GEO_MAX_K;
    q.layer_mask = UINT32_MAX;
    assert_int_equal(check_query(ix, &q), 300);
    geo_index_free(ix);
}

static void test_max_distance_keeps_hits_at_or_within_it(void **state) {
    (void)state;
    pick_centres();
    struct geo_index *ix = build_random(2000, 2, false);
    struct geo_query q = {.from = centres[2], .layer_mask = 3, .k = 2000,
                          .max_distance_m = INFINITY};
    size_t n = check_query(ix, &q);
    assert_true(n > 10);
    /* A limit exactly at the 10th hit's distance keeps it (and its ties). */
    struct geo_hit all[2000];
    memcpy(all, got, n * sizeof *all);
    q.max_distance_m = all[9].distance_m;
    size_t within = check_query(ix, &q);
    assert_true(within >= 10);
    assert_true(got[within - 1].distance_m <= all[9].distance_m);
    q.max_distance_m = 0.0;
    check_query(ix, &q);
    q.max_distance_m = 1e-9;
    q.from = all[0].distance_m == 0.0 ? q.from : model[all[0].handle].where;
    assert_true(check_query(ix, &q) >= 1);
    geo_index_free(ix);

    /* Along a meridian at the equator the lower bound is tightest (the
     * curvature radius there is the smallest): a limit at an entry's exact
     * distance must still keep it. */
    model_clear();
    struct geo_entry line[200];
    for (uint32_t h = 0; h < 200; h++) {
        line[h] = (struct geo_entry){h, 0, {0.0005 * (h + 0.5 * rng_unit()), 10.0}, new_value(h)};
        model[h] = (struct model_entry){true, 0, line[h].where, line[h].value};
    }
    ix = geo_index_new();
    assert_int_equal(geo_index_build(ix, line, 200), GEO_OK);
    q = (struct geo_query){.from = {0.0, 10.0}, .layer_mask = 1, .k = 200};
    for (uint32_t h = 1; h < 200; h += 7) {
        q.max_distance_m = geo_distance_m(q.from, line[h].where);
        check_query(ix, &q);
        assert_true(got[h].handle == h && got[h].distance_m == q.max_distance_m);
    }
    geo_index_free(ix);
}

static void test_empty_index_returns_no_hits(void **state) {
    (void)state;
    model_clear();
    struct geo_index *ix = geo_index_new();
    struct geo_query q = {.from = {36.2, 120.4}, .layer_mask = UINT32_MAX, .k = 5,
                          .max_distance_m = INFINITY};
    struct geo_hit hits[5];
    size_t n = 99;
    assert_int_equal(geo_index_nearest(ix, &q, hits, &n), GEO_OK);
    assert_int_equal(n, 0);
    assert_int_equal(geo_index_count(ix), 0);
    assert_int_equal(geo_index_build(ix, NULL, 0), GEO_OK);
    n = 99;
    assert_int_equal(geo_index_nearest(ix, &q, hits, &n), GEO_OK);
    assert_int_equal(n, 0);

    /* Filled and emptied again by writes. */
    for (uint32_t h = 0; h < 300; h++) {
        assert_int_equal(geo_index_put(ix, h, (uint8_t)(h % 4), q.from, h), GEO_OK);
    }
    assert_int_equal(geo_index_count(ix), 300);
    for (uint32_t h = 0; h < 300; h++) {
        assert_int_equal(geo_index_remove(ix, h), GEO_OK);
    }
    assert_int_equal(geo_index_count(ix), 0);
    n = 99;
    assert_int_equal(geo_index_nearest(ix, &q, hits, &n), GEO_OK);
    assert_int_equal(n, 0);
    geo_index_free(ix);
}

/* One random write to both the index and the model: insert, move (often to
 * another layer), a new value in place, or remove. Every put gives the entry
 * a new value. */
static void random_write(struct geo_index *ix, uint32_t n_layers, uint32_t handle_range,
                         bool global) {
    uint32_t h = rng_below(handle_range);
    double pick = rng_unit();
    if (model[h].live && pick < 0.3) {
        assert_int_equal(geo_index_remove(ix, h), GEO_OK);
        model[h].live = false;
        model_live--;
        assert_int_equal(geo_index_remove(ix, h), GEO_ERR_NOTFOUND);
        return;
    }
    struct geo_point p = global ? random_global_point() : random_licang_point();
    uint8_t layer = (uint8_t)rng_below(n_layers);
    if (model[h].live && pick < 0.5) {
        /* A short move in the same layer, like a vehicle. */
        layer = model[h].layer;
        p = model[h].where;
        p.lat_deg = fmin(90.0, fmax(-90.0, p.lat_deg + rng_range(-0.001, 0.001)));
    } else if (model[h].live && pick < 0.7) {
        /* Only the value changes (new opening hours); now and then the layer too. */
        layer = rng_unit() < 0.8 ? model[h].layer : layer;
        p = model[h].where;
    }
    uint32_t value = new_value(h);
    assert_int_equal(geo_index_put(ix, h, layer, p, value), GEO_OK);
    if (!model[h].live) {
        model_live++;
    }
    model[h] = (struct model_entry){true, layer, p, value};
}

static void test_queries_see_inserts_moves_and_removes_through_rebuilds(void **state) {
    (void)state;
    pick_centres();
    /* 2500 entries in 5 layers: each layer rebuilds after about 256 writes,
     * and 4000 writes go through that several times. */
    struct geo_index *ix = build_random(2500, 5, false);
    for (int round = 0; round < 200; round++) {
        for (int w = 0; w < 20; w++) {
            random_write(ix, 5, 5000, false);
        }
        assert_int_equal(geo_index_count(ix), model_live);
        run_random_queries(ix, 4, false, 5);
    }
    geo_index_free(ix);
}

/* A query with a value filter alone or with a filter as well, on the index
 * and the oracle. */
static void check_value_queries(const struct geo_index *ix, int n_queries, uint32_t n_layers) {
    struct filter_ctx f;
    struct value_calls calls;
    struct value_ctx v;
    for (int i = 0; i < n_queries; i++) {
        memset(&f, 0, sizeof f);
        v = (struct value_ctx){.state = &calls};
        struct geo_query q = random_query(false, n_layers, &f, &v);
        static const uint32_t shares[] = {1, 10, 17, 50, 90};
        v.percent = shares[rng_below(sizeof shares / sizeof shares[0])];
        v.salt = (uint32_t)rng_next();
        q.value_filter = test_value_filter;
        q.value_ctx = &v;
        if (i % 2 == 0) {
            q.filter = NULL;
            q.filter_ctx = NULL;
        } else if (q.filter == NULL) {
            f.kind = KEEP_SHARE;
            f.percent = 50;
            f.salt = (uint32_t)rng_next();
            q.filter = test_filter;
            q.filter_ctx = &f;
        }
        check_query(ix, &q);
    }
}

/* The value follows its entry through puts of a present handle with a new
 * value (in place, moved a little, moved to another layer), removes, the
 * delta's inserts in place and the rebuilds: 3000 entries in 4 layers
 * rebuild a layer about every 256 writes to it, and 3600 writes go through
 * that several times. After each put, the new value finds the entry and the
 * old one finds nothing. */
static void test_value_filter_matches_brute_force_through_value_changes_and_rebuilds(
    void **state) {
    (void)state;
    pick_centres();
    struct geo_index *ix = build_random(3000, 4, false);
    struct value_calls calls;
    for (int round = 0; round < 120; round++) {
        for (int w = 0; w < 30; w++) {
            random_write(ix, 4, 4500, false);
        }
        assert_int_equal(geo_index_count(ix), model_live);
        check_value_queries(ix, 6, 4);

        /* One entry's value changed in place, or with a move. */
        uint32_t h = rng_below(4500);
        while (!model[h].live) {
            h = rng_below(4500);
        }
        uint32_t old_value = model[h].value;
        struct geo_point p = model[h].where;
        if (round % 3 == 1) {
            p.lon_deg += rng_range(-0.0005, 0.0005);
        }
        uint8_t layer = round % 3 == 2 ? (uint8_t)((model[h].layer + 1) % 4) : model[h].layer;
        uint32_t value = new_value(h);
        assert_int_equal(geo_index_put(ix, h, layer, p, value), GEO_OK);
        model[h] = (struct model_entry){true, layer, p, value};
        struct value_ctx v = {.only_one = true, .keep = value, .state = &calls};
        struct geo_query q = {.from = p, .layer_mask = 0xf, .k = 3, .max_distance_m = INFINITY,
                              .value_filter = test_value_filter, .value_ctx = &v};
        assert_int_equal(check_query(ix, &q), 1);
        assert_int_equal(got[0].handle, h);
        assert_true(got[0].distance_m == 0.0);
        assert_int_equal(calls.calls, model_live); /* one match: every entry asked */
        v.keep = old_value;
        assert_int_equal(check_query(ix, &q), 0);
    }
    geo_index_free(ix);
}

/* As the filter test above, by values: the kept entries are beyond 3 km,
 * behind 2000 rejected ones. */
static void test_value_filter_finds_matches_behind_many_rejected_nearer_entries(void **state) {
    (void)state;
    model_clear();
    struct geo_point from = {36.18, 120.42};
    size_t n = 0;
    uint32_t far_value[5];
    for (uint32_t h = 0; h < 2000; h++) {
        struct geo_point p = {from.lat_deg + rng_range(-0.002, 0.002),
                              from.lon_deg + rng_range(-0.002, 0.002)};
        uint32_t value = new_value(h);
        if (h % 400 == 7) {
            p.lat_deg += 0.03 + 0.001 * h / 400;
            far_value[h / 400] = value;
        }
        build_buf[n++] = (struct geo_entry){h, 0, p, value};
        model[h] = (struct model_entry){true, 0, p, value};
    }
    struct geo_index *ix = geo_index_new();
    assert_int_equal(geo_index_build(ix, build_buf, n), GEO_OK);
    struct value_calls calls;
    struct value_ctx v = {.only_one = true, .keep = far_value[3], .state = &calls};
    struct geo_query q = {.from = from, .layer_mask = 1, .k = 5, .max_distance_m = INFINITY,
                          .value_filter = test_value_filter, .value_ctx = &v};
    assert_int_equal(check_query(ix, &q), 1);
    assert_int_equal(got[0].handle, 7 + 400 * 3);
    assert_true(got[0].distance_m > 3000.0);
    assert_int_equal(calls.calls, n);

    /* With a filter too: the value filter keeps the near entries and the far
     * ones' share, the filter only the far ones. */
    struct filter_ctx f = {.kind = KEEP_RESIDUE, .keep = 7, .modulus = 400};
    q.filter = test_filter;
    q.filter_ctx = &f;
    v.only_one = false;
    v.percent = 100;
    assert_int_equal(check_query(ix, &q), 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(got[i].handle % 400, 7);
    }
    assert_int_equal(f.calls, calls.calls); /* the filter saw what the value filter kept */
    v.percent = 0;
    assert_int_equal(check_query(ix, &q), 0);
    assert_int_equal(f.calls, 0);
    for (uint32_t salt = 0; salt < 20; salt++) {
        v.percent = 1 + salt % 3 * 40;
        v.salt = salt;
        q.filter = salt % 2 ? test_filter : NULL;
        q.filter_ctx = salt % 2 ? &f : NULL;
        check_query(ix, &q);
    }
    geo_index_free(ix);
}

static void test_index_filled_only_by_puts_matches_brute_force(void **state) {
    (void)state;
    model_clear();
    struct geo_index *ix = geo_index_new();
    for (int round = 0; round < 60; round++) {
        for (int w = 0; w < 40; w++) {
            random_write(ix, 3, 3000, true);
        }
        assert_int_equal(geo_index_count(ix), model_live);
        run_random_queries(ix, 8, true, 3);
    }
    geo_index_free(ix);
}

static void test_build_replaces_content_and_bulk_build_after_writes(void **state) {
    (void)state;
    pick_centres();
    struct geo_index *ix = build_random(1000, 4, false);
    for (int w = 0; w < 300; w++) {
        random_write(ix, 4, 2000, false);
    }
    make_entries(build_buf, 1500, 4, false);
    assert_int_equal(geo_index_build(ix, build_buf, 1500), GEO_OK);
    assert_int_equal(geo_index_count(ix), 1500);
    run_random_queries(ix, 100, false, 4);
    geo_index_free(ix);
}

static void test_bad_arguments_are_refused_and_change_nothing(void **state) {
    (void)state;
    pick_centres();
    struct geo_index *ix = build_random(500, 2, false);
    struct geo_hit hits[8];
    size_t n = 0;
    struct geo_query q = {.from = centres[0], .layer_mask = 3, .k = 0,
                          .max_distance_m = INFINITY};
    assert_int_equal(geo_index_nearest(ix, &q, hits, &n), GEO_ERR_ARG);
    q.k = GEO_MAX_K + 1;
    assert_int_equal(geo_index_nearest(ix, &q, hits, &n), GEO_ERR_ARG);
    q.k = 8;
    q.max_distance_m = -1.0;
    assert_int_equal(geo_index_nearest(ix, &q, hits, &n), GEO_ERR_ARG);
    q.max_distance_m = NAN;
    assert_int_equal(geo_index_nearest(ix, &q, hits, &n), GEO_ERR_ARG);
    q.max_distance_m = INFINITY;
    q.from.lat_deg = 91.0;
    assert_int_equal(geo_index_nearest(ix, &q, hits, &n), GEO_ERR_ARG);
    q.from.lat_deg = NAN;
    assert_int_equal(geo_index_nearest(ix, &q, hits, &n), GEO_ERR_ARG);
    q.from = (struct geo_point){36.2, 181.0};
    assert_int_equal(geo_index_nearest(ix, &q, hits, &n), GEO_ERR_ARG);

    /* Builds with a bad entry leave the old content. */
    struct geo_entry bad[3] = {
        {1, 0, {36.2, 120.4}, 1},
        {2, 1, {36.2, 120.41}, 2},
        {1, 1, {36.2, 120.42}, 3}, /* duplicate handle */
    };
    assert_int_equal(geo_index_build(ix, bad, 3), GEO_ERR_ARG);
    bad[2].handle = 3;
    bad[2].layer = GEO_MAX_LAYERS;
    assert_int_equal(geo_index_build(ix, bad, 3), GEO_ERR_ARG);
    bad[2].layer = 0;
    bad[2].where.lon_deg = INFINITY;
    assert_int_equal(geo_index_build(ix, bad, 3), GEO_ERR_ARG);
    bad[2].where.lon_deg = 120.0;
    bad[2].handle = GEO_MAX_HANDLE + 1;
    assert_int_equal(geo_index_build(ix, bad, 3), GEO_ERR_ARG);
    assert_int_equal(geo_index_count(ix), 500);
    q.from = centres[0];
    run_random_queries(ix, 30, false, 2);

    /* Writes with bad arguments change nothing either. */
    assert_int_equal(geo_index_put(ix, 7, GEO_MAX_LAYERS, centres[1], 0), GEO_ERR_ARG);
    assert_int_equal(geo_index_put(ix, 7, 0, (struct geo_point){-90.5, 0.0}, 0), GEO_ERR_ARG);
    assert_int_equal(geo_index_put(ix, GEO_MAX_HANDLE + 1, 0, centres[1], 0), GEO_ERR_ARG);
    uint32_t missing = 0;
    while (model[missing].live) {
        missing++;
    }
    assert_int_equal(geo_index_remove(ix, missing), GEO_ERR_NOTFOUND);
    assert_int_equal(geo_index_remove(ix, GEO_MAX_HANDLE), GEO_ERR_NOTFOUND);
    assert_int_equal(geo_index_remove(ix, UINT32_MAX), GEO_ERR_NOTFOUND);
    assert_int_equal(geo_index_count(ix), 500);
    run_random_queries(ix, 30, false, 2);
    geo_index_free(ix);
}

static void test_free_of_null_is_a_no_op(void **state) {
    (void)state;
    geo_index_free(NULL);
    assert_int_equal(geo_index_count(NULL), 0);
}

static void test_memory_stays_under_64_bytes_per_entry(void **state) {
    (void)state;
    pick_centres();
    size_t n = 50000;
    struct geo_entry *e = malloc(n * sizeof *e);
    assert_non_null(e);
    for (size_t i = 0; i < n; i++) {
        e[i] = (struct geo_entry){(uint32_t)i, (uint8_t)(i % 5), random_licang_point(),
                                  (uint32_t)i};
    }
    struct geo_index *ix = geo_index_new();
    assert_int_equal(geo_index_build(ix, e, n), GEO_OK);
    size_t bytes = geo_index_memory_bytes(ix);
    printf("memory after build of %zu: %.1f bytes per entry\n", n, (double)bytes / n);
    assert_true(bytes < 64 * n);
    /* So do moves, with the tombstones, deltas and rebuilds they make. */
    for (uint32_t w = 0; w < 1500; w++) {
        assert_int_equal(geo_index_put(ix, w * 7, (uint8_t)(w % 5), random_licang_point(), w),
                         GEO_OK);
    }
    bytes = geo_index_memory_bytes(ix);
    printf("memory after 1500 moves: %.1f bytes per entry\n", (double)bytes / n);
    assert_true(bytes < 64 * n);
    geo_index_free(ix);
    free(e);
}

/* Arrays of 2 MB or more are rounded up to whole 2 MB pages when that adds at
 * most half; this size (16 bytes an entry, 2.67 MB) is the worst case. */
static void test_memory_stays_under_64_bytes_per_entry_at_worst_huge_page_rounding(
    void **state) {
    (void)state;
    pick_centres();
    size_t n = (size_t)4 * 1024 * 1024 * 2 / 3 / 16 + 1;
    struct geo_entry *e = malloc(n * sizeof *e);
    assert_non_null(e);
    for (size_t i = 0; i < n; i++) {
        e[i] = (struct geo_entry){(uint32_t)i, 0, random_licang_point(), (uint32_t)i};
    }
    struct geo_index *ix = geo_index_new();
    assert_int_equal(geo_index_build(ix, e, n), GEO_OK);
    size_t bytes = geo_index_memory_bytes(ix);
    printf("memory after build of %zu in one layer: %.1f bytes per entry\n", n,
           (double)bytes / n);
    assert_true(bytes < 64 * n);
    geo_index_free(ix);
    free(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nearest_matches_brute_force_on_global_points),
        cmocka_unit_test(test_nearest_matches_brute_force_on_clustered_points_with_duplicates),
        cmocka_unit_test(test_nearest_matches_brute_force_in_all_32_layers),
        cmocka_unit_test(test_nearest_matches_brute_force_in_a_deep_tree),
        cmocka_unit_test(test_nearest_returns_k_closest_in_order_with_ties_by_handle),
        cmocka_unit_test(test_filter_finds_matches_behind_many_rejected_nearer_entries),
        cmocka_unit_test(test_k_larger_than_matches_returns_every_match),
        cmocka_unit_test(test_max_distance_keeps_hits_at_or_within_it),
        cmocka_unit_test(test_empty_index_returns_no_hits),
        cmocka_unit_test(test_queries_see_inserts_moves_and_removes_through_rebuilds),
        cmocka_unit_test(test_value_filter_matches_brute_force_through_value_changes_and_rebuilds),
        cmocka_unit_test(test_value_filter_finds_matches_behind_many_rejected_nearer_entries),
        cmocka_unit_test(test_index_filled_only_by_puts_matches_brute_force),
        cmocka_unit_test(test_build_replaces_content_and_bulk_build_after_writes),
        cmocka_unit_test(test_bad_arguments_are_refused_and_change_nothing),
        cmocka_unit_test(test_free_of_null_is_a_no_op),
        cmocka_unit_test(test_memory_stays_under_64_bytes_per_entry),
        cmocka_unit_test(test_memory_stays_under_64_bytes_per_entry_at_worst_huge_page_rounding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
