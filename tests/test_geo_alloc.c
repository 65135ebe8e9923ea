/* test_geo_alloc.c: the spatial index when an allocation fails.
 *
 * Linked with -Wl,--wrap=posix_memalign, so this file's wrapper sees every
 * aligned allocation geo_index.c makes: the values' arrays always (they ask
 * for 64-byte lines), the other arrays from 2 MB on. While `refusing`, it
 * refuses those of 64-byte alignment, which is the values' array: the third a
 * tree grows, after its entries and positions have grown. geo_index.h
 * promises that a failed put or build leaves the index unchanged, and a
 * rebuild that fails is retried at the next write; the oracle here is a
 * scan over the entries the calls that succeeded have left. Each test
 * asserts that refusals happened, so that a change of sizes cannot turn it
 * into a test of nothing. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "geo_distance.h"
#include "geo_index.h"
#include "test_rng.h"

int __real_posix_memalign(void **p, size_t align, size_t n);

static bool refusing;
static int refused;

int __wrap_posix_memalign(void **p, size_t align, size_t n) {
    if (refusing && align == 64) {
        refused++;
        return 12; /* ENOMEM */
    }
    return __real_posix_memalign(p, align, n);
}

static uint64_t rng_state = 0x67656f5f616c6c6fULL;

static uint64_t rng_next(void) {
    return test_rng_splitmix64(&rng_state);
}

static double rng_range(double lo, double hi) {
    return test_rng_range(rng_next(), lo, hi);
}

enum { MAX_HANDLES = 3000, N_LAYERS = 3, K = 40 };

/* What the index should hold: the calls that returned GEO_OK. */
static struct {
    bool live;
    uint8_t layer;
    struct geo_point where;
    uint32_t value;
} model[MAX_HANDLES];

static bool value_is_odd(uint32_t value, const void *ctx) {
    (void)ctx;
    return value & 1u;
}

/* The index against a scan of the model, for a few random queries with and
 * without the value filter: the same handles, distances and order. */
static void check_against_model(const struct geo_index *ix) {
    size_t live = 0;
    for (uint32_t h = 0; h < MAX_HANDLES; h++) {
        live += model[h].live;
    }
    assert_int_equal(geo_index_count(ix), live);
    for (int t = 0; t < 12; t++) {
        struct geo_query q = {.from = {rng_range(36.0, 36.3), rng_range(120.2, 120.6)},
                              .layer_mask = (uint32_t)(1 + rng_next() % 7),
                              .k = K,
                              .max_distance_m = INFINITY};
        if (t % 2) {
            q.value_filter = value_is_odd;
        }
        struct geo_hit want[K], got[K];
        size_t n_want = 0;
        for (uint32_t h = 0; h < MAX_HANDLES; h++) {
            if (!model[h].live || !(q.layer_mask >> model[h].layer & 1u) ||
                (q.value_filter && !value_is_odd(model[h].value, NULL))) {
                continue;
            }
            double d = geo_distance_m(q.from, model[h].where);
            size_t j = n_want < K ? n_want++ : K;
            for (; j > 0 && (want[j - 1].distance_m > d ||
                             (want[j - 1].distance_m == d && want[j - 1].handle > h));
                 j--) {
                if (j < K) {
                    want[j] = want[j - 1];
                }
            }
            if (j < K) {
                want[j] = (struct geo_hit){h, d};
            }
        }
        size_t n_got = 0;
        assert_int_equal(geo_index_nearest(ix, &q, got, &n_got), GEO_OK);
        assert_int_equal(n_got, n_want);
        for (size_t i = 0; i < n_got; i++) {
            assert_int_equal(got[i].handle, want[i].handle);
            assert_true(got[i].distance_m == want[i].distance_m);
        }
    }
}

/* Puts (new handles, moves, new values, other layers) and removes, about a
 * third of them while the values' arrays cannot grow: those that fail must
 * change nothing, and the rebuilds that fail under them must leave every
 * answer right. */
static void test_writes_that_cannot_grow_the_values_change_nothing(void **state) {
    (void)state;
    struct geo_index *ix = geo_index_new();
    assert_non_null(ix);
    memset(model, 0, sizeof model);
    int failed_puts = 0, ok_while_refusing = 0;
    refused = 0;
    for (int op = 0; op < 12000; op++) {
        uint32_t h = (uint32_t)(rng_next() % MAX_HANDLES);
        refusing = rng_next() % 3 == 0;
        if (rng_next() % 5 == 0) {
            int rc = geo_index_remove(ix, h);
            assert_int_equal(rc, model[h].live ? GEO_OK : GEO_ERR_NOTFOUND);
            model[h].live = false;
        } else {
            struct geo_point p = {rng_range(36.0, 36.3), rng_range(120.2, 120.6)};
            if (model[h].live && rng_next() % 3 == 0) {
                p = model[h].where; /* a new value where it is */
            }
            uint8_t layer = (uint8_t)(rng_next() % N_LAYERS);
            uint32_t value = (uint32_t)rng_next();
            int rc = geo_index_put(ix, h, layer, p, value);
            if (rc == GEO_OK) {
                model[h].live = true;
                model[h].layer = layer;
                model[h].where = p;
                model[h].value = value;
                ok_while_refusing += refusing;
            } else {
                assert_int_equal(rc, GEO_ERR_NOMEM);
                assert_true(refusing);
                failed_puts++;
            }
        }
        refusing = false;
        if (op % 500 == 499) {
            check_against_model(ix);
        }
    }
    check_against_model(ix);
    assert_true(failed_puts > 0);       /* a put really had to grow and could not */
    assert_true(ok_while_refusing > 0); /* and most did not need to */
    assert_true(refused > failed_puts); /* rebuilds were refused too */
    geo_index_free(ix);
}

/* A bulk build that cannot have its values' arrays fails and keeps what the
 * index held before. */
static void test_a_build_that_cannot_have_its_values_keeps_the_old_content(void **state) {
    (void)state;
    struct geo_index *ix = geo_index_new();
    assert_non_null(ix);
    memset(model, 0, sizeof model);
    static struct geo_entry entries[MAX_HANDLES];
    for (uint32_t h = 0; h < 1000; h++) {
        entries[h] = (struct geo_entry){h, (uint8_t)(h % N_LAYERS),
                                        {rng_range(36.0, 36.3), rng_range(120.2, 120.6)},
                                        (uint32_t)rng_next()};
        model[h].live = true;
        model[h].layer = entries[h].layer;
        model[h].where = entries[h].where;
        model[h].value = entries[h].value;
    }
    assert_int_equal(geo_index_build(ix, entries, 1000), GEO_OK);
    static struct geo_entry other[MAX_HANDLES];
    for (uint32_t h = 0; h < MAX_HANDLES; h++) {
        other[h] = (struct geo_entry){h, (uint8_t)(h % N_LAYERS),
                                      {rng_range(36.0, 36.3), rng_range(120.2, 120.6)},
                                      (uint32_t)rng_next()};
    }
    refused = 0;
    refusing = true;
    int rc = geo_index_build(ix, other, MAX_HANDLES);
    refusing = false;
    assert_int_equal(rc, GEO_ERR_NOMEM);
    assert_true(refused > 0);
    check_against_model(ix);
    geo_index_free(ix);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writes_that_cannot_grow_the_values_change_nothing),
        cmocka_unit_test(test_a_build_that_cannot_have_its_values_keeps_the_old_content),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
