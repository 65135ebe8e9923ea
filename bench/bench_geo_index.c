/* bench_geo_index.c: what the spatial index costs from 10^3 to 10^7 entries.
 *
 * For each N it builds the index over N synthetic facilities and prints the
 * build time, geo_index_memory_bytes() / N, and microseconds per k=5 query:
 *   layer    one layer of five selected by the mask (a fifth of the entries);
 *   filter   the same layer and a filter callback that keeps 1 % of entries;
 *   value    the same layer and a value filter keeping the same 1 %: each
 *            entry's value is its handle, in random order along the tree as
 *            the daemon's timetable numbers are, and the value filter applies
 *            the filter's hash to it (so the two columns compare the paths,
 *            with the same hits; neither callback reads memory of its own);
 *   all      all five layers, no filter;
 *   put      one geo_index_put() moving a random entry (rebuilds included).
 * The data: 60 "towns" in the box of Qingdao municipality (1.6 x 1.5 degrees,
 * about 170 x 135 km, the city nearestd serves) with Zipf-like sizes and a
 * Gaussian spread of 1 - 6 km hold 70 % of the entries, the other 30 % are
 * uniform over the box; five layers of equal size; queries come 70 % from near
 * a town and 30 % from anywhere in the box. At 10^7 that is far denser than
 * any real city: it is there to show how the index scales. The seed is fixed,
 * so every run measures the same points.
 * Before timing, a few queries per N (without a filter, with the filter and
 * with the value filter, and again after the moves) are compared with a
 * brute-force scan over geo_distance_m();
 * any difference prints the query and makes the program exit 1, so the CTest
 * smoke run (--quick) fails on a wrong answer, never on a slow one.
 * The cross-check also runs its queries as one geo_index_nearest_batch().
 * Usage: bench_geo_index [--quick] [--no-10m] [--hot] [--queries Q] [--batch B]
 *   --quick   N up to 10^5 and 20000 queries (a few seconds)
 *   --no-10m  stop at 10^6
 *   --hot     cycle through 64 query points only, so the nodes they touch
 *             stay in cache: the difference to the default is memory time
 *   --batch B the timed queries go B at a time through
 *             geo_index_nearest_batch(), as the daemon hands it the NEARESTs
 *             of one event-loop iteration (0, the default: geo_index_nearest()
 *             one at a time) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "geo_distance.h"
#include "geo_index.h"

#define N_TOWNS 60
#define N_LAYERS 5
#define K 5
#define BOX_LAT 35.58, 37.15
#define BOX_LON 119.50, 121.00

static uint64_t rng_state = 0x62656e63685f6978ULL;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unit(void) {
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_range(double lo, double hi) {
    return lo + (hi - lo) * rng_unit();
}

static double rng_gauss(void) {
    double u = rng_unit() + 1e-300, v = rng_unit();
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct town {
    struct geo_point centre;
    double spread_deg;
    double cumulative_weight; /* for picking towns by size */
};

static struct town towns[N_TOWNS];

static void make_towns(void) {
    double total = 0.0;
    for (int i = 0; i < N_TOWNS; i++) {
        towns[i].centre.lat_deg = rng_range(BOX_LAT);
        towns[i].centre.lon_deg = rng_range(BOX_LON);
        towns[i].spread_deg = rng_range(1.0, 6.0) / 111.0;
        total += 1.0 / (i + 1);
        towns[i].cumulative_weight = total;
    }
    for (int i = 0; i < N_TOWNS; i++) {
        towns[i].cumulative_weight /= total;
    }
}

static struct geo_point clamp_point(struct geo_point p) {
    p.lat_deg = fmax(-90.0, fmin(90.0, p.lat_deg));
    p.lon_deg = fmax(-180.0, fmin(180.0, p.lon_deg));
    return p;
}

static struct geo_point near_town(void) {
    double w = rng_unit();
    int lo = 0, hi = N_TOWNS - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (towns[mid].cumulative_weight < w) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    const struct town *t = &towns[lo];
    struct geo_point p = {t->centre.lat_deg + t->spread_deg * rng_gauss(),
                          t->centre.lon_deg + t->spread_deg * rng_gauss()};
    return clamp_point(p);
}

static struct geo_point anywhere(void) {
    struct geo_point p = {rng_range(BOX_LAT), rng_range(BOX_LON)};
    return p;
}

static struct geo_point facility_point(void) {
    return rng_unit() < 0.7 ? near_town() : anywhere();
}

/* Keeps 1 % of words, spread at random. */
static bool one_percent(uint32_t word) {
    uint32_t x = word * 0x9e3779b1u;
    x ^= x >> 15;
    x *= 0x85ebca6bu;
    x ^= x >> 13;
    return x % 100 == 0;
}

/* Keeps 1 % of handles. */
static bool keep_one_percent(uint32_t handle, void *ctx) {
    (void)ctx;
    return one_percent(handle);
}

/* Keeps 1 % of values: the same entries as keep_one_percent(), values being
 * handles here. */
static bool keep_one_percent_value(uint32_t value, const void *ctx) {
    (void)ctx;
    return one_percent(value);
}

/* ---- Brute-force cross-check --------------------------------------------- */

static int hit_order(const void *pa, const void *pb) {
    const struct geo_hit *a = pa, *b = pb;
    if (a->distance_m != b->distance_m) {
        return a->distance_m < b->distance_m ? -1 : 1;
    }
    return a->handle < b->handle ? -1 : a->handle > b->handle;
}

/* The K best by scanning every entry; entries[] holds the current content. */
static size_t brute_nearest(const struct geo_entry *entries, size_t n, const struct geo_query *q,
                            struct geo_hit *best) {
    size_t n_best = 0;
    for (size_t i = 0; i < n; i++) {
        const struct geo_entry *e = &entries[i];
        if (!(q->layer_mask >> e->layer & 1u) ||
            (q->value_filter != NULL && !q->value_filter(e->value, q->value_ctx)) ||
            (q->filter != NULL && !q->filter(e->handle, q->filter_ctx))) {
            continue;
        }
        struct geo_hit h = {e->handle, geo_distance_m(q->from, e->where)};
        if (h.distance_m > q->max_distance_m) {
            continue;
        }
        if (n_best < q->k) {
            best[n_best++] = h;
            qsort(best, n_best, sizeof *best, hit_order);
        } else if (hit_order(&h, &best[n_best - 1]) < 0) {
            best[n_best - 1] = h;
            qsort(best, n_best, sizeof *best, hit_order);
        }
    }
    return n_best;
}

static bool same_hits(const struct geo_hit *a, size_t n_a, const struct geo_hit *b, size_t n_b) {
    bool same = n_a == n_b;
    for (size_t j = 0; same && j < n_a; j++) {
        same = a[j].handle == b[j].handle && a[j].distance_m == b[j].distance_m;
    }
    return same;
}

#define MAX_CHECKS 20

/* Returns the number of queries that disagreed with the scan, one at a time
 * or all of them in one batch. */
static int cross_check(const struct geo_index *ix, const struct geo_entry *entries, size_t n,
                       int n_queries) {
    int bad = 0;
    struct geo_batch_item batch[MAX_CHECKS];
    struct geo_hit batch_hits[MAX_CHECKS][K];
    struct geo_hit want[MAX_CHECKS][K];
    size_t n_want[MAX_CHECKS];
    n_queries = n_queries < MAX_CHECKS ? n_queries : MAX_CHECKS;
    for (int i = 0; i < n_queries; i++) {
        struct geo_query q = {
            .from = rng_unit() < 0.7 ? near_town() : anywhere(),
            .layer_mask = i % 3 == 2 ? 0x1f : 1u << (i % N_LAYERS),
            .k = K,
            .max_distance_m = INFINITY,
            .filter = i % 4 == 1 ? keep_one_percent : NULL,
            .value_filter = i % 4 == 3 ? keep_one_percent_value : NULL,
        };
        batch[i] = (struct geo_batch_item){.q = q, .out = batch_hits[i]};
        struct geo_hit got[K];
        size_t n_got = 0;
        int rc = geo_index_nearest(ix, &q, got, &n_got);
        n_want[i] = brute_nearest(entries, n, &q, want[i]);
        if (rc != GEO_OK || !same_hits(got, n_got, want[i], n_want[i])) {
            fprintf(stderr, "MISMATCH at N=%zu: query (%.9f, %.9f) mask %x filter %s: "
                    "rc %d, %zu hits, want %zu\n", n, q.from.lat_deg, q.from.lon_deg,
                    q.layer_mask, q.filter ? "1%" : (q.value_filter ? "value 1%" : "none"), rc,
                    n_got, n_want[i]);
            bad++;
        }
    }
    geo_index_nearest_batch(ix, batch, (size_t)n_queries);
    for (int i = 0; i < n_queries; i++) {
        if (batch[i].rc != GEO_OK ||
            !same_hits(batch[i].out, batch[i].n_out, want[i], n_want[i])) {
            fprintf(stderr, "MISMATCH at N=%zu in a batch: query %d: rc %d, %zu hits, "
                    "want %zu\n", n, i, batch[i].rc, batch[i].n_out, n_want[i]);
            bad++;
        }
    }
    return bad;
}

/* ---- Timing ----------------------------------------------------------------- */

/* Microseconds per query over the query points, with a checksum kept live;
 * with batch > 0, batch queries at a time through geo_index_nearest_batch()
 * (items[] and hits[] have room for batch). */
static double time_queries(const struct geo_index *ix, const struct geo_point *from,
                           size_t n_queries, uint32_t layer_mask, geo_filter_fn filter,
                           geo_value_filter_fn value_filter, size_t batch,
                           struct geo_batch_item *items, struct geo_hit *hits, double *sink) {
    double t0 = now_s();
    if (batch == 0) {
        for (size_t i = 0; i < n_queries; i++) {
            struct geo_query q = {.from = from[i], .layer_mask = layer_mask, .k = K,
                                  .max_distance_m = INFINITY, .filter = filter,
                                  .value_filter = value_filter};
            size_t n = 0;
            if (geo_index_nearest(ix, &q, hits, &n) != GEO_OK) {
                fprintf(stderr, "query failed\n");
                exit(1);
            }
            *sink += n > 0 ? hits[n - 1].distance_m : 0.0;
        }
        return (now_s() - t0) * 1e6 / (double)n_queries;
    }
    for (size_t first = 0; first < n_queries; first += batch) {
        size_t m = n_queries - first < batch ? n_queries - first : batch;
        for (size_t i = 0; i < m; i++) {
            items[i].q = (struct geo_query){.from = from[first + i], .layer_mask = layer_mask,
                                            .k = K, .max_distance_m = INFINITY,
                                            .filter = filter, .value_filter = value_filter};
            items[i].out = &hits[i * K];
        }
        geo_index_nearest_batch(ix, items, m);
        for (size_t i = 0; i < m; i++) {
            if (items[i].rc != GEO_OK) {
                fprintf(stderr, "query failed\n");
                exit(1);
            }
            size_t n = items[i].n_out;
            *sink += n > 0 ? items[i].out[n - 1].distance_m : 0.0;
        }
    }
    return (now_s() - t0) * 1e6 / (double)n_queries;
}

int main(int argc, char **argv) {
    bool quick = false, ten_million = true, hot = false;
    size_t n_queries = 100000, batch = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--no-10m") == 0) {
            ten_million = false;
        } else if (strcmp(argv[i], "--hot") == 0) {
            hot = true;
        } else if (strcmp(argv[i], "--queries") == 0 && i + 1 < argc) {
            n_queries = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            batch = strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--quick] [--no-10m] [--hot] [--queries Q] [--batch B]\n",
                    argv[0]);
            return 2;
        }
    }
    if (quick) {
        n_queries = n_queries < 20000 ? n_queries : 20000;
    }
    n_queries = n_queries > 0 ? n_queries : 1;
    size_t max_n = quick ? 100000 : (ten_million ? 10000000 : 1000000);

    make_towns();
    struct geo_point *from = malloc(n_queries * sizeof *from);
    struct geo_entry *entries = malloc(max_n * sizeof *entries);
    struct geo_batch_item *items = malloc((batch ? batch : 1) * sizeof *items);
    struct geo_hit *hits = malloc((batch ? batch : 1) * K * sizeof *hits);
    if (from == NULL || entries == NULL || items == NULL || hits == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n_queries; i++) {
        from[i] = hot && i >= 64 ? from[i % 64] : (rng_unit() < 0.7 ? near_town() : anywhere());
    }

    printf("k=%d, %zu %squeries per figure, 5 layers of equal size, ", K, n_queries,
           hot ? "hot (64 distinct) " : "");
    if (batch > 0) {
        printf("in batches of %zu\n\n", batch);
    } else {
        printf("one at a time\n\n");
    }
    printf("| N | build ms | bytes/entry | layer us | filter 1%% us | value 1%% us | "
           "all layers us | put us |\n");
    printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    int bad = 0;
    double sink = 0.0;
    for (size_t n = 1000; n <= max_n; n *= 10) {
        for (size_t i = 0; i < n; i++) {
            entries[i] = (struct geo_entry){(uint32_t)i, (uint8_t)(rng_next() % N_LAYERS),
                                            facility_point(), (uint32_t)i};
        }
        struct geo_index *ix = geo_index_new();
        if (ix == NULL) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        double t0 = now_s();
        int rc = geo_index_build(ix, entries, n);
        double build_ms = (now_s() - t0) * 1e3;
        if (rc != GEO_OK) {
            fprintf(stderr, "build of %zu failed: %s\n", n, geo_strerror(rc));
            return 1;
        }
        int checks = n <= 100000 ? 20 : (n <= 1000000 ? 6 : 2);
        bad += cross_check(ix, entries, n, checks);

        double layer_us = time_queries(ix, from, n_queries, 1u << 2, NULL, NULL, batch, items,
                                       hits, &sink);
        double filter_us = time_queries(ix, from, n_queries, 1u << 2, keep_one_percent, NULL,
                                        batch, items, hits, &sink);
        double value_us = time_queries(ix, from, n_queries, 1u << 2, NULL,
                                       keep_one_percent_value, batch, items, hits, &sink);
        double all_us = time_queries(ix, from, n_queries, 0x1f, NULL, NULL, batch, items, hits,
                                     &sink);
        size_t bytes = geo_index_memory_bytes(ix);

        /* Moves: each a short hop or a jump to a new place, in a new layer. */
        size_t n_puts = quick ? 2000 : 20000;
        t0 = now_s();
        for (size_t i = 0; i < n_puts; i++) {
            struct geo_entry *e = &entries[rng_next() % n];
            e->where = rng_unit() < 0.5 ? facility_point()
                                        : clamp_point((struct geo_point){
                                              e->where.lat_deg + rng_range(-0.001, 0.001),
                                              e->where.lon_deg + rng_range(-0.001, 0.001)});
            e->layer = (uint8_t)(rng_next() % N_LAYERS);
            if (geo_index_put(ix, e->handle, e->layer, e->where, e->value) != GEO_OK) {
                fprintf(stderr, "put failed\n");
                return 1;
            }
        }
        double put_us = (now_s() - t0) * 1e6 / (double)n_puts;
        bad += cross_check(ix, entries, n, checks);

        printf("| %zu | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f | %.1f |\n", n, build_ms,
               (double)bytes / (double)n, layer_us, filter_us, value_us, all_us, put_us);
        fflush(stdout);
        geo_index_free(ix);
    }
    printf("\n(checksum %.3f)\n", sink);
    free(hits);
    free(items);
    free(entries);
    free(from);
    if (bad > 0) {
        fprintf(stderr, "%d queries disagreed with the brute-force scan\n", bad);
        return 1;
    }
    printf("cross-check against brute force: all agreed\n");
    return 0;
}
