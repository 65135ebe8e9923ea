/* test_geo_batch.c: geo_index_nearest_batch() against geo_index_nearest().
 *
 * The batch runs its searches side by side, a node at a time, so the oracle
 * here is the single search itself (tests/test_geo_index.c checks that one
 * against a brute-force scan): every item of a batch must get the rc, the
 * number of hits, the handles and the distances (bit for bit) that
 * geo_index_nearest() gives for its query alone, and its filter and value
 * filter must be asked about the same handles and values in the same order.
 * Every item's query is drawn at random, so hits written to the wrong item,
 * or a filter context swapped between items, would not match.
 * Batches: sizes 0, 1, 2, around the window (GEO_BATCH_WINDOW - 1, + 0, + 1),
 * several windows and a few hundred items. Queries: k from 1 to 20 and some
 * of 100 and 1000 (past the search's stack buffers), finite and infinite
 * distance limits, one, several or all layers, filters and value filters
 * (each alone, or both) keeping everything, 1 %, half or nothing (the batch
 * also asks for the leaves' values when a query has a value filter), and
 * invalid queries (k = 0 or too large, a NaN or
 * out-of-range point, a negative or NaN limit, no output array) mixed in.
 * Indexes: empty, tiny (1 - 100 entries), a few thousand on the globe,
 * clustered with duplicates, 10^5 in one layer, 3.2 * 10^5 in one layer
 * beside small ones, and indexes with deltas and tombstones (puts, new
 * values of present handles and removes after the build) or filled by puts
 * alone. Values are random words.
 * The library lets searches of small trees (under GI_BATCH_MIN_BYTES, 256 KB
 * of entries, about 8,000) run one after another, which leaves the tests of
 * small indexes on that path; CMake builds this file a second time as
 * test_geo_batch_interleaved, with geo_index.c compiled in and that
 * threshold 1 byte, so that every search of every test takes turns.
 * A few seconds in all. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "geo_index.h"
#include "test_rng.h"

/* ---- Random numbers ------------------------------------------------------ */

static uint64_t rng_state = 0x67656f5f62617463ULL;

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

/* ---- Points and indexes -------------------------------------------------- */

/* Qingdao's Licang district, about 15 x 12 km. */
#define BOX_LAT_LO 36.134047
#define BOX_LAT_HI 36.238138
#define BOX_LON_LO 120.338342
#define BOX_LON_HI 120.506382

#define N_CENTRES 8
static struct geo_point centres[N_CENTRES];

static struct geo_point random_global_point(void) {
    struct geo_point p = {asin(rng_range(-1.0, 1.0)) * (180.0 / M_PI), rng_range(-180.0, 180.0)};
    if (rng_unit() < 0.05) {
        p.lat_deg = rng_unit() < 0.5 ? 90.0 : -90.0;
    }
    if (rng_unit() < 0.05) {
        p.lon_deg = rng_unit() < 0.5 ? 180.0 : -180.0;
    }
    return p;
}

/* Mostly within a few hundred metres of a few centres, the rest anywhere in
 * the box. */
static struct geo_point random_local_point(void) {
    if (rng_unit() < 0.3) {
        struct geo_point p = {rng_range(BOX_LAT_LO, BOX_LAT_HI),
                              rng_range(BOX_LON_LO, BOX_LON_HI)};
        return p;
    }
    struct geo_point c = centres[rng_below(N_CENTRES)];
    double r = 0.004 * rng_unit() * rng_unit();
    double a = rng_range(0.0, 2.0 * M_PI);
    struct geo_point p = {c.lat_deg + r * sin(a), c.lon_deg + r * cos(a)};
    return p;
}

/* What the index holds, so that queries can start on an entry's spot. */
static struct geo_point *spots;
static size_t n_spots;

/* Where each handle is and 1 + its layer (0: absent), so that a put can
 * give a present handle a new value in place. The handles of these tests
 * stay below 2^19. */
#define MAX_HANDLES (1u << 19)
static struct geo_point handle_at[MAX_HANDLES];
static uint8_t handle_layer[MAX_HANDLES];

static struct geo_point random_point(bool global) {
    return global ? random_global_point() : random_local_point();
}

/* An index of n entries in n_layers layers with handles 0..n-1 in random
 * order, a twentieth of them exact duplicates of another's position. */
static struct geo_index *build_random(size_t n, uint32_t n_layers, bool global) {
    for (int i = 0; i < N_CENTRES; i++) {
        centres[i] = (struct geo_point){rng_range(BOX_LAT_LO, BOX_LAT_HI),
                                        rng_range(BOX_LON_LO, BOX_LON_HI)};
    }
    struct geo_entry *e = malloc((n ? n : 1) * sizeof *e);
    free(spots);
    spots = malloc((n ? n : 1) * sizeof *spots);
    assert_non_null(e);
    assert_non_null(spots);
    for (size_t i = 0; i < n; i++) {
        struct geo_point p = i > 0 && rng_unit() < 0.05 ? spots[rng_below((uint32_t)i)]
                                                         : random_point(global);
        spots[i] = p;
        e[i] = (struct geo_entry){(uint32_t)i, (uint8_t)rng_below(n_layers), p,
                                  (uint32_t)rng_next()};
    }
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_below((uint32_t)i);
        uint32_t h = e[i - 1].handle;
        e[i - 1].handle = e[j].handle;
        e[j].handle = h;
    }
    n_spots = n;
    memset(handle_layer, 0, sizeof handle_layer);
    for (size_t i = 0; i < n; i++) {
        handle_at[e[i].handle] = e[i].where;
        handle_layer[e[i].handle] = (uint8_t)(1 + e[i].layer);
    }
    struct geo_index *ix = geo_index_new();
    assert_non_null(ix);
    assert_int_equal(geo_index_build(ix, e, n), GEO_OK);
    free(e);
    return ix;
}

/* Puts (new handles, moves, often to another layer, and new values in place)
 * and removes after the build: they leave deltas and tombstones, and rebuild
 * some layers. */
static void random_writes(struct geo_index *ix, size_t n_writes, uint32_t n_layers,
                          uint32_t handle_range, bool global) {
    for (size_t w = 0; w < n_writes; w++) {
        uint32_t h = rng_below(handle_range);
        if (rng_unit() < 0.3) {
            int rc = geo_index_remove(ix, h);
            assert_int_equal(rc, handle_layer[h] ? GEO_OK : GEO_ERR_NOTFOUND);
            handle_layer[h] = 0;
            continue;
        }
        struct geo_point p = random_point(global);
        uint8_t layer = (uint8_t)rng_below(n_layers);
        if (handle_layer[h] && rng_unit() < 0.4) {
            p = handle_at[h]; /* only a new value */
            layer = (uint8_t)(handle_layer[h] - 1);
        }
        assert_int_equal(geo_index_put(ix, h, layer, p, (uint32_t)rng_next()), GEO_OK);
        handle_at[h] = p;
        handle_layer[h] = (uint8_t)(1 + layer);
    }
}

/* ---- Filters that record their calls -------------------------------------- */

enum filter_kind { KEEP_ALL, KEEP_SHARE, KEEP_NONE };

/* The calls are in a part of their own, so that a value filter's context
 * can be const (geo_value_filter_fn) and still record them. */
struct filter_calls {
    uint32_t *calls;   /* the handles or values asked about, in order */
    size_t n_calls, cap_calls;
};

struct filter_ctx {
    enum filter_kind kind;
    uint32_t percent;  /* KEEP_SHARE: keep this share of handles or values */
    uint32_t salt;     /* KEEP_SHARE: varies which */
    struct filter_calls *rec;
};

static bool filter_record_and_decide(const struct filter_ctx *f, uint32_t word) {
    struct filter_calls *r = f->rec;
    if (r->n_calls == r->cap_calls) {
        r->cap_calls = r->cap_calls ? 2 * r->cap_calls : 64;
        r->calls = realloc(r->calls, r->cap_calls * sizeof *r->calls);
        assert_non_null(r->calls);
    }
    r->calls[r->n_calls++] = word;
    switch (f->kind) {
    case KEEP_ALL:
        return true;
    case KEEP_NONE:
        return false;
    default:
        return test_rng_hash32(word ^ f->salt) % 100 < f->percent;
    }
}

static bool recording_filter(uint32_t handle, void *ctx) {
    return filter_record_and_decide(ctx, handle);
}

static bool recording_value_filter(uint32_t value, const void *ctx) {
    return filter_record_and_decide(ctx, value);
}

/* ---- Batches --------------------------------------------------------------- */

/* One item of a test batch: the query, the batch's item, and its copy for
 * the single search with filter contexts of its own. */
struct case_ {
    struct geo_query q;
    struct filter_ctx f_batch, f_single, v_batch, v_single;
    struct filter_calls calls_f_batch, calls_f_single, calls_v_batch, calls_v_single;
    struct geo_hit *out_single;
    size_t n_single;
    int rc_single;
};

#define SENTINEL_HANDLE 0xabcdef01u

/* A random query; now and then an invalid one. Its filter and value filter,
 * if any, are set up by the caller from f_kind and v_kind. */
static struct geo_query random_query(bool global, uint32_t n_layers, int *f_kind, int *v_kind) {
    struct geo_query q = {.max_distance_m = INFINITY};
    double pick = rng_unit();
    if (pick < 0.2 && n_spots > 0) {
        q.from = spots[rng_below((uint32_t)n_spots)];
    } else if (global || pick < 0.3) {
        q.from = random_global_point();
    } else {
        q.from = random_local_point();
    }
    pick = rng_unit();
    q.k = pick < 0.85 ? 1 + rng_below(20) : (pick < 0.95 ? 100 : 1000);
    pick = rng_unit();
    uint32_t all = n_layers >= 32 ? UINT32_MAX : (1u << n_layers) - 1;
    if (pick < 0.4) {
        q.layer_mask = 1u << rng_below(n_layers);
    } else if (pick < 0.8) {
        q.layer_mask = (uint32_t)rng_next() & all;
    } else {
        q.layer_mask = UINT32_MAX;
    }
    if (rng_unit() < 0.3) {
        static const double limits[] = {0.0, 30.0, 300.0, 3000.0, 30000.0, 3e6};
        q.max_distance_m = limits[rng_below(sizeof limits / sizeof limits[0])];
    }
    pick = rng_unit();
    *f_kind = pick < 0.5 ? -1 : (pick < 0.65 ? KEEP_ALL : (pick < 0.95 ? KEEP_SHARE : KEEP_NONE));
    pick = rng_unit();
    *v_kind = pick < 0.5 ? -1 : (pick < 0.65 ? KEEP_ALL : (pick < 0.95 ? KEEP_SHARE : KEEP_NONE));
    if (rng_unit() < 0.08) {
        switch (rng_below(6)) {
        case 0:
            q.k = 0;
            break;
        case 1:
            q.k = GEO_MAX_K + 1;
            break;
        case 2:
            q.from.lat_deg = NAN;
            break;
        case 3:
            q.from.lat_deg = 91.0;
            break;
        case 4:
            q.max_distance_m = -1.0;
            break;
        default:
            q.max_distance_m = NAN;
            break;
        }
    }
    return q;
}

/* Sets up the filter context pair of one case: the same decisions on both
 * sides, each recording into its own part. */
static void filter_pair(struct filter_ctx *batch, struct filter_ctx *single,
                        struct filter_calls *rec_batch, struct filter_calls *rec_single,
                        int kind) {
    batch->kind = single->kind = (enum filter_kind)kind;
    batch->percent = single->percent = rng_unit() < 0.7 ? 1 : 50;
    batch->salt = single->salt = (uint32_t)rng_next();
    batch->rec = rec_batch;
    single->rec = rec_single;
}

static void assert_same_calls(const struct filter_calls *batch,
                              const struct filter_calls *single) {
    assert_int_equal(batch->n_calls, single->n_calls);
    if (single->n_calls > 0) {
        assert_memory_equal(batch->calls, single->calls, single->n_calls * sizeof *single->calls);
    }
}

/* Runs n random queries as one batch and one by one, and asserts they
 * agree item by item, the calls of their filters and value filters
 * included. Returns the number of hits, so callers can check that the batch
 * had some work to do. */
static size_t check_batch(const struct geo_index *ix, size_t n, bool global, uint32_t n_layers) {
    struct case_ *cases = calloc(n ? n : 1, sizeof *cases);
    struct geo_batch_item *items = calloc(n ? n : 1, sizeof *items);
    assert_non_null(cases);
    assert_non_null(items);
    for (size_t i = 0; i < n; i++) {
        struct case_ *c = &cases[i];
        int f_kind, v_kind;
        c->q = random_query(global, n_layers, &f_kind, &v_kind);
        items[i].q = c->q;
        if (f_kind >= 0) {
            filter_pair(&c->f_batch, &c->f_single, &c->calls_f_batch, &c->calls_f_single,
                        f_kind);
            c->q.filter = items[i].q.filter = recording_filter;
            c->q.filter_ctx = &c->f_single;
            items[i].q.filter_ctx = &c->f_batch;
        }
        if (v_kind >= 0) {
            filter_pair(&c->v_batch, &c->v_single, &c->calls_v_batch, &c->calls_v_single,
                        v_kind);
            c->q.value_filter = items[i].q.value_filter = recording_value_filter;
            c->q.value_ctx = &c->v_single;
            items[i].q.value_ctx = &c->v_batch;
        }
        /* Room for k hits and one sentinel past them; no array at all now
         * and then, which is an invalid query too. */
        size_t room = c->q.k <= GEO_MAX_K ? c->q.k + 1 : 2;
        if (rng_unit() < 0.02) {
            items[i].out = NULL;
        } else {
            items[i].out = malloc(room * sizeof *items[i].out);
            assert_non_null(items[i].out);
            for (size_t j = 0; j < room; j++) {
                items[i].out[j] = (struct geo_hit){SENTINEL_HANDLE, -1.0};
            }
        }
        c->out_single = malloc(room * sizeof *c->out_single);
        assert_non_null(c->out_single);
        items[i].n_out = 777;
        items[i].rc = 777;
    }

    geo_index_nearest_batch(ix, items, n);

    size_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        struct case_ *c = &cases[i];
        c->n_single = 0;
        c->rc_single = geo_index_nearest(ix, &c->q, items[i].out ? c->out_single : NULL,
                                         &c->n_single);
        if (items[i].rc != c->rc_single || items[i].n_out != c->n_single) {
            fprintf(stderr, "item %zu of %zu: rc %d, %zu hits; alone rc %d, %zu hits\n", i, n,
                    items[i].rc, items[i].n_out, c->rc_single, c->n_single);
        }
        assert_int_equal(items[i].rc, c->rc_single);
        if (c->rc_single != GEO_OK) {
            assert_int_equal(items[i].n_out, 0);
        } else {
            assert_int_equal(items[i].n_out, c->n_single);
            for (size_t j = 0; j < c->n_single; j++) {
                assert_int_equal(items[i].out[j].handle, c->out_single[j].handle);
                assert_memory_equal(&items[i].out[j].distance_m, &c->out_single[j].distance_m,
                                    sizeof(double));
            }
            hits += c->n_single;
        }
        if (items[i].out != NULL) {
            assert_int_equal(items[i].out[c->q.k <= GEO_MAX_K ? c->q.k : 1].handle,
                             SENTINEL_HANDLE);
        }
        assert_same_calls(&c->calls_f_batch, &c->calls_f_single);
        assert_same_calls(&c->calls_v_batch, &c->calls_v_single);
        free(c->calls_f_batch.calls);
        free(c->calls_f_single.calls);
        free(c->calls_v_batch.calls);
        free(c->calls_v_single.calls);
        free(c->out_single);
        free(items[i].out);
    }
    free(items);
    free(cases);
    return hits;
}

/* Batches of the sizes that matter for the window, and a few random ones. */
static size_t check_batches(const struct geo_index *ix, int rounds, bool global,
                            uint32_t n_layers) {
    const size_t w = GEO_BATCH_WINDOW;
    const size_t sizes[] = {0, 1, 2, w - 1, w, w + 1, 2 * w, 3 * w + 5};
    size_t hits = 0;
    for (int r = 0; r < rounds; r++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            hits += check_batch(ix, sizes[s], global, n_layers);
        }
        hits += check_batch(ix, 1 + rng_below((uint32_t)(8 * w)), global, n_layers);
    }
    return hits;
}

/* ---- Tests ----------------------------------------------------------------- */

static void test_batch_matches_single_searches_on_global_points(void **state) {
    (void)state;
    struct geo_index *ix = build_random(3000, 5, true);
    assert_true(check_batches(ix, 6, true, 5) > 0);
    geo_index_free(ix);
}

static void test_batch_matches_single_searches_on_clustered_points(void **state) {
    (void)state;
    struct geo_index *ix = build_random(20000, 3, false);
    assert_true(check_batches(ix, 6, false, 3) > 0);
    geo_index_free(ix);
}

/* 10^5 entries in one layer: a tree of five levels, and filters that keep
 * nothing make searches that open hundreds of nodes. */
static void test_batch_matches_single_searches_in_a_deep_tree(void **state) {
    (void)state;
    struct geo_index *ix = build_random(100000, 1, false);
    assert_true(check_batches(ix, 2, false, 1) > 0);
    geo_index_free(ix);
}

/* 320000 entries in layer 0 (10 MB: past GI_BATCH_MIN_BYTES, so that the
 * library's searches of it take turns) and a few hundred in layers 1 - 3
 * (searches of those alone run one after another): batches mix both. */
static void test_batch_matches_single_searches_in_a_large_layer_beside_small_ones(
    void **state) {
    (void)state;
    struct geo_index *ix = build_random(320000, 1, false);
    for (uint32_t h = 0; h < 600; h++) {
        assert_int_equal(geo_index_put(ix, 320000 + h, (uint8_t)(1 + h % 3), random_local_point(),
                                       (uint32_t)rng_next()),
                         GEO_OK);
    }
    assert_true(check_batches(ix, 1, false, 4) > 0);
    geo_index_free(ix);
}

static void test_batch_matches_single_searches_in_all_32_layers(void **state) {
    (void)state;
    struct geo_index *ix = build_random(6000, 32, true);
    assert_true(check_batches(ix, 3, true, 32) > 0);
    geo_index_free(ix);
}

/* Deltas and tombstones: the searches walk both trees of a layer. */
static void test_batch_matches_single_searches_after_puts_and_removes(void **state) {
    (void)state;
    struct geo_index *ix = build_random(20000, 4, false);
    for (int round = 0; round < 4; round++) {
        random_writes(ix, 300, 4, 30000, false);
        assert_true(check_batches(ix, 1, false, 4) > 0);
    }
    geo_index_free(ix);
}

static void test_batch_matches_single_searches_in_an_index_of_puts_only(void **state) {
    (void)state;
    n_spots = 0;
    memset(handle_layer, 0, sizeof handle_layer);
    struct geo_index *ix = geo_index_new();
    assert_non_null(ix);
    for (int round = 0; round < 3; round++) {
        random_writes(ix, 200, 3, 400, true);
        assert_true(check_batches(ix, 1, true, 3) > 0);
    }
    geo_index_free(ix);
}

static void test_batch_matches_single_searches_in_tiny_indexes(void **state) {
    (void)state;
    const size_t sizes[] = {1, 2, 15, 16, 17, 100};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        struct geo_index *ix = build_random(sizes[s], 2, false);
        assert_true(check_batches(ix, 1, false, 2) > 0);
        geo_index_free(ix);
    }
}

static void test_batch_on_an_empty_index_returns_no_hits(void **state) {
    (void)state;
    n_spots = 0;
    struct geo_index *ix = geo_index_new();
    assert_non_null(ix);
    assert_int_equal(check_batches(ix, 1, false, 5), 0);
    assert_int_equal(geo_index_build(ix, NULL, 0), GEO_OK);
    assert_int_equal(check_batches(ix, 1, true, 5), 0);
    geo_index_free(ix);
}

/* Without an index every item is refused, as geo_index_nearest() refuses. */
static void test_batch_without_an_index_refuses_every_item(void **state) {
    (void)state;
    struct geo_hit hits[3][4];
    struct geo_batch_item items[3];
    for (int i = 0; i < 3; i++) {
        items[i] = (struct geo_batch_item){
            .q = {.from = {36.2, 120.4}, .layer_mask = 1, .k = 4, .max_distance_m = INFINITY},
            .out = hits[i], .n_out = 5, .rc = 5};
    }
    geo_index_nearest_batch(NULL, items, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(items[i].rc, GEO_ERR_ARG);
        assert_int_equal(items[i].n_out, 0);
    }
    geo_index_nearest_batch(NULL, NULL, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_matches_single_searches_on_global_points),
        cmocka_unit_test(test_batch_matches_single_searches_on_clustered_points),
        cmocka_unit_test(test_batch_matches_single_searches_in_a_deep_tree),
        cmocka_unit_test(test_batch_matches_single_searches_in_a_large_layer_beside_small_ones),
        cmocka_unit_test(test_batch_matches_single_searches_in_all_32_layers),
        cmocka_unit_test(test_batch_matches_single_searches_after_puts_and_removes),
        cmocka_unit_test(test_batch_matches_single_searches_in_an_index_of_puts_only),
        cmocka_unit_test(test_batch_matches_single_searches_in_tiny_indexes),
        cmocka_unit_test(test_batch_on_an_empty_index_returns_no_hits),
        cmocka_unit_test(test_batch_without_an_index_refuses_every_item),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    free(spots);
    return failed;
}
