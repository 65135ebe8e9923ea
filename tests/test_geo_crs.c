/* test_geo_crs.c: WGS84 <-> GCJ-02 <-> BD-09 against published vectors, round
 * trips over a grid covering China, the Licang offset, and the fast
 * conversions against the plain code they replaced (the model below), over
 * 10^6 random points and the edges of the box.
 *
 * The vectors are those gathered in shared/reference-data/crs-vectors.md from
 * public projects' own tests; each row below names its source. Forward values
 * are checked to the precision the source prints. Where a source's expected
 * value came from a one-step or partly converged inverse, our fully iterated
 * inverse differs from it by up to about 1e-6 degree, so those rows are checked
 * to that tolerance and the exactness of our inverse is checked by mapping it
 * forward again. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "geo_crs.h"
#include "geo_distance.h"
#include "test_rng.h"

static struct geo_point pt(double lat_deg, double lon_deg) {
    return (struct geo_point){lat_deg, lon_deg};
}

static void assert_near(struct geo_point got, struct geo_point want, double tol_deg) {
    if (!(fabs(got.lat_deg - want.lat_deg) <= tol_deg &&
          fabs(got.lon_deg - want.lon_deg) <= tol_deg)) {
        fail_msg("got (%.11f, %.11f), want (%.11f, %.11f) within %g deg", got.lat_deg,
                 got.lon_deg, want.lat_deg, want.lon_deg, tol_deg);
    }
}

/* ---- Published vectors ------------------------------------------------- */

/* googollee/eviltransform, c/test.c: WGS84 -> GCJ-02, (lat, lon), printed to
 * full double precision. */
static void test_wgs84_to_gcj02_matches_eviltransform_vectors(void **state) {
    (void)state;
    assert_near(geo_crs_wgs84_to_gcj02(pt(31.1774276, 121.5272106)), /* Shanghai */
                pt(31.17530398364597, 121.531541859215), 1e-11);
    assert_near(geo_crs_wgs84_to_gcj02(pt(22.543847, 113.912316)), /* Shenzhen */
                pt(22.540796131694766, 113.9171764808363), 1e-11);
    assert_near(geo_crs_wgs84_to_gcj02(pt(39.911954, 116.377817)), /* Beijing */
                pt(39.91334545536069, 116.38404722455657), 1e-11);
}

/* hujiulong/gcoord, test/unit/crs/WGS84.spec.ts and GCJ02.spec.ts: input
 * (lon 123, lat 45), expected printed to 8 decimals. */
static void test_forward_conversions_match_gcoord_vectors(void **state) {
    (void)state;
    struct geo_point in = pt(45.0, 123.0), out;
    assert_near(geo_crs_wgs84_to_gcj02(in), pt(45.00197815, 123.00607541), 1e-8);
    assert_int_equal(geo_crs_from_wgs84(GEO_CRS_BD09, in, &out), GEO_OK);
    assert_near(out, pt(45.0083293, 123.0124491), 1e-7);
    assert_near(geo_crs_gcj02_to_bd09(in), pt(45.00636899, 123.00636499), 1e-8);
}

/* hujiulong/gcoord GCJ02.spec.ts: GCJ-02 -> WGS84 of (lon 123, lat 45).
 * crs-vectors.md gives gcoord's value (122.99395597, 44.99804071) and the fully
 * converged one (122.9939558, 44.9980406); we must hit the latter. */
static void test_gcj02_inverse_is_the_converged_one(void **state) {
    (void)state;
    struct geo_point w = geo_crs_gcj02_to_wgs84(pt(45.0, 123.0));
    assert_near(w, pt(44.9980406, 122.9939558), 1e-7);
    assert_near(w, pt(44.99804071, 122.99395597), 3e-7); /* gcoord's own, looser */
    assert_near(geo_crs_wgs84_to_gcj02(w), pt(45.0, 123.0), 1e-10);
}

/* hujiulong/gcoord BD09.spec.ts: BD-09 -> GCJ-02 and BD-09 -> WGS84 of
 * (lon 123, lat 45). gcoord uses the one-step BD-09 inverse; ours is iterated,
 * so it differs by under 1e-6 degree and maps forward onto the input exactly. */
static void test_bd09_inverses_match_gcoord_and_round_trip(void **state) {
    (void)state;
    struct geo_point in = pt(45.0, 123.0), out;
    struct geo_point g = geo_crs_bd09_to_gcj02(in);
    assert_near(g, pt(44.99365430, 122.99363304), 1e-6);
    assert_near(geo_crs_gcj02_to_bd09(g), in, 1e-10);
    assert_int_equal(geo_crs_to_wgs84(GEO_CRS_BD09, in, &out), GEO_OK);
    assert_near(out, pt(44.99171540, 122.98762210), 1e-6);
    struct geo_point back;
    assert_int_equal(geo_crs_from_wgs84(GEO_CRS_BD09, out, &back), GEO_OK);
    assert_near(back, in, 1e-10);
}

/* ---- Round trips over China ---------------------------------------------- */

static double worst_round_trip_m(struct geo_point (*there)(struct geo_point),
                                 struct geo_point (*back)(struct geo_point)) {
    double worst = 0.0;
    for (double lat = 0.9; lat <= 55.8; lat += 0.173) {
        for (double lon = 72.1; lon <= 137.8; lon += 0.191) {
            struct geo_point p = pt(lat, lon);
            double err = geo_distance_m(p, back(there(p)));
            if (err > worst) {
                worst = err;
            }
        }
    }
    return worst;
}

static void test_round_trips_over_china_are_within_1cm(void **state) {
    (void)state;
    double w_gcj = worst_round_trip_m(geo_crs_wgs84_to_gcj02, geo_crs_gcj02_to_wgs84);
    double gcj_w = worst_round_trip_m(geo_crs_gcj02_to_wgs84, geo_crs_wgs84_to_gcj02);
    double gcj_bd = worst_round_trip_m(geo_crs_gcj02_to_bd09, geo_crs_bd09_to_gcj02);
    double bd_gcj = worst_round_trip_m(geo_crs_bd09_to_gcj02, geo_crs_gcj02_to_bd09);
    printf("# worst round trip: wgs->gcj->wgs %.2g m, gcj->wgs->gcj %.2g m, "
           "gcj->bd->gcj %.2g m, bd->gcj->bd %.2g m\n", w_gcj, gcj_w, gcj_bd, bd_gcj);
    assert_true(w_gcj < 0.01);
    assert_true(gcj_w < 0.01);
    assert_true(gcj_bd < 0.01);
    assert_true(bd_gcj < 0.01);
}

static void test_generic_round_trips_through_every_system(void **state) {
    (void)state;
    for (int crs = GEO_CRS_WGS84; crs <= GEO_CRS_BD09; crs++) {
        for (double lat = 18.3; lat <= 53.5; lat += 1.37) {
            for (double lon = 73.6; lon <= 134.7; lon += 1.53) {
                struct geo_point p = pt(lat, lon), there, back;
                assert_int_equal(geo_crs_from_wgs84((enum geo_crs)crs, p, &there), GEO_OK);
                assert_int_equal(geo_crs_to_wgs84((enum geo_crs)crs, there, &back), GEO_OK);
                assert_true(geo_distance_m(p, back) < 0.01);
            }
        }
    }
}

/* The shift is not small: the iterated inverse must beat the one-step one,
 * which is off by metres somewhere in China. */
static void test_inverse_is_better_than_one_step(void **state) {
    (void)state;
    double worst_one_step = 0.0;
    for (double lat = 1.0; lat <= 55.0; lat += 0.5) {
        for (double lon = 73.0; lon <= 137.0; lon += 0.5) {
            struct geo_point g = pt(lat, lon);
            struct geo_point f = geo_crs_wgs84_to_gcj02(g);
            struct geo_point one_step = pt(2.0 * g.lat_deg - f.lat_deg,
                                           2.0 * g.lon_deg - f.lon_deg);
            struct geo_point iterated = geo_crs_gcj02_to_wgs84(g);
            double one_err = geo_distance_m(geo_crs_wgs84_to_gcj02(one_step), g);
            double it_err = geo_distance_m(geo_crs_wgs84_to_gcj02(iterated), g);
            assert_true(it_err < 0.001);
            if (one_err > worst_one_step) {
                worst_one_step = one_err;
            }
        }
    }
    printf("# one-step GCJ-02 inverse: worst miss %.2f m\n", worst_one_step);
    assert_true(worst_one_step > 1.0);
}

/* ---- Licang and the box -------------------------------------------------- */

/* shared/reference-data/README.md: in Licang (WGS84 bbox lon 120.338342 -
 * 120.506382, lat 36.134047 - 36.238138) a GCJ-02 position lies about 430 -
 * 460 m east of the WGS84 position of the same place. Over a grid of the bbox
 * the formula gives 435 - 463 m east, with a small northward part. */
static void test_licang_gcj02_lies_about_440_m_east(void **state) {
    (void)state;
    for (double lat = 36.134047; lat <= 36.238138; lat += 0.005) {
        for (double lon = 120.338342; lon <= 120.506382; lon += 0.005) {
            struct geo_point w = pt(lat, lon);
            struct geo_point g;
            assert_int_equal(geo_crs_from_wgs84(GEO_CRS_GCJ02, w, &g), GEO_OK);
            assert_true(g.lon_deg > w.lon_deg);
            double east_m = geo_distance_m(w, pt(w.lat_deg, g.lon_deg));
            double north_m = geo_distance_m(w, pt(g.lat_deg, w.lon_deg));
            assert_true(east_m >= 430.0 && east_m <= 465.0);
            assert_true(north_m < east_m / 5.0);
        }
    }
}

static void test_outside_china_gcj02_equals_wgs84(void **state) {
    (void)state;
    struct geo_point outside[] = {
        pt(51.4779, -0.0015), pt(-33.86, 151.21), pt(0.8292, 100.0), pt(55.8272, 100.0),
        pt(30.0, 72.0039), pt(30.0, 137.8348), pt(90.0, 180.0), pt(-90.0, -180.0),
    };
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        struct geo_point p = outside[i];
        assert_false(geo_crs_is_in_china(p));
        struct geo_point f = geo_crs_wgs84_to_gcj02(p), b = geo_crs_gcj02_to_wgs84(p);
        assert_true(f.lat_deg == p.lat_deg && f.lon_deg == p.lon_deg);
        assert_true(b.lat_deg == p.lat_deg && b.lon_deg == p.lon_deg);
    }
    assert_true(geo_crs_is_in_china(pt(36.18, 120.42)));
    assert_true(geo_crs_is_in_china(pt(0.8293, 72.004)));
    assert_true(geo_crs_is_in_china(pt(55.8271, 137.8347)));
}

/* ---- The model: the conversions as first written ------------------------ */

/* The published formulas as geo_crs.c first had them, one libm sin() per term
 * and the inverse iterated from the GCJ-02 point itself: the fast code must
 * agree with these to within 1e-9 degrees everywhere. */
#define MODEL_A_M 6378245.0
#define MODEL_EE 0.00669342162296594323
#define MODEL_X_PI (M_PI * 3000.0 / 180.0)

static double model_shift_lat(double x, double y) {
    double r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt(fabs(x));
    r += (20.0 * sin(6.0 * x * M_PI) + 20.0 * sin(2.0 * x * M_PI)) * 2.0 / 3.0;
    r += (20.0 * sin(y * M_PI) + 40.0 * sin(y / 3.0 * M_PI)) * 2.0 / 3.0;
    r += (160.0 * sin(y / 12.0 * M_PI) + 320.0 * sin(y * M_PI / 30.0)) * 2.0 / 3.0;
    return r;
}

static double model_shift_lon(double x, double y) {
    double r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt(fabs(x));
    r += (20.0 * sin(6.0 * x * M_PI) + 20.0 * sin(2.0 * x * M_PI)) * 2.0 / 3.0;
    r += (20.0 * sin(x * M_PI) + 40.0 * sin(x / 3.0 * M_PI)) * 2.0 / 3.0;
    r += (150.0 * sin(x / 12.0 * M_PI) + 300.0 * sin(x / 30.0 * M_PI)) * 2.0 / 3.0;
    return r;
}

static struct geo_point model_gcj_forward(struct geo_point p) {
    double d_lat = model_shift_lat(p.lon_deg - 105.0, p.lat_deg - 35.0);
    double d_lon = model_shift_lon(p.lon_deg - 105.0, p.lat_deg - 35.0);
    double rad_lat = p.lat_deg / 180.0 * M_PI;
    double magic = sin(rad_lat);
    magic = 1.0 - MODEL_EE * magic * magic;
    double sqrt_magic = sqrt(magic);
    d_lat = (d_lat * 180.0) / ((MODEL_A_M * (1.0 - MODEL_EE)) / (magic * sqrt_magic) * M_PI);
    d_lon = (d_lon * 180.0) / (MODEL_A_M / sqrt_magic * cos(rad_lat) * M_PI);
    return (struct geo_point){p.lat_deg + d_lat, p.lon_deg + d_lon};
}

static struct geo_point model_invert(struct geo_point (*forward)(struct geo_point),
                                     struct geo_point target, struct geo_point guess) {
    struct geo_point x = guess;
    for (int step = 0; step < 30; step++) {
        struct geo_point f = forward(x);
        double r_lat = target.lat_deg - f.lat_deg;
        double r_lon = target.lon_deg - f.lon_deg;
        x.lat_deg += r_lat;
        x.lon_deg += r_lon;
        if (fabs(r_lat) < 1e-10 && fabs(r_lon) < 1e-10) {
            break;
        }
    }
    return x;
}

static bool model_is_in_china(struct geo_point p) {
    return p.lon_deg >= 72.004 && p.lon_deg <= 137.8347 && p.lat_deg >= 0.8293 &&
           p.lat_deg <= 55.8271;
}

static struct geo_point model_wgs84_to_gcj02(struct geo_point p) {
    return model_is_in_china(p) ? model_gcj_forward(p) : p;
}

static struct geo_point model_gcj02_to_wgs84(struct geo_point p) {
    return model_is_in_china(p) ? model_invert(model_gcj_forward, p, p) : p;
}

static struct geo_point model_gcj02_to_bd09(struct geo_point p) {
    double x = p.lon_deg, y = p.lat_deg;
    double z = sqrt(x * x + y * y) + 0.00002 * sin(y * MODEL_X_PI);
    double theta = atan2(y, x) + 0.000003 * cos(x * MODEL_X_PI);
    return (struct geo_point){z * sin(theta) + 0.006, z * cos(theta) + 0.0065};
}

static struct geo_point model_bd09_to_gcj02(struct geo_point p) {
    double x = p.lon_deg - 0.0065, y = p.lat_deg - 0.006;
    double z = sqrt(x * x + y * y) - 0.00002 * sin(y * MODEL_X_PI);
    double theta = atan2(y, x) - 0.000003 * cos(x * MODEL_X_PI);
    struct geo_point guess = {z * sin(theta), z * cos(theta)};
    return model_invert(model_gcj02_to_bd09, p, guess);
}

/* geo_crs_to_wgs84() and geo_crs_from_wgs84() on the model. */
static int model_convert(bool to_wgs84, enum geo_crs crs, struct geo_point p,
                         struct geo_point *out) {
    if (!geo_point_is_valid(p)) {
        return GEO_ERR_ARG;
    }
    struct geo_point r = p;
    if (to_wgs84 && crs == GEO_CRS_GCJ02) {
        r = model_gcj02_to_wgs84(p);
    } else if (to_wgs84 && crs == GEO_CRS_BD09) {
        r = model_gcj02_to_wgs84(model_bd09_to_gcj02(p));
    } else if (crs == GEO_CRS_GCJ02) {
        r = model_wgs84_to_gcj02(p);
    } else if (crs == GEO_CRS_BD09) {
        r = model_gcj02_to_bd09(model_wgs84_to_gcj02(p));
    }
    if (!geo_point_is_valid(r)) {
        return GEO_ERR_ARG;
    }
    *out = r;
    return GEO_OK;
}

/* ---- The fast conversions against the model ----------------------------- */

#define ORACLE_POINTS 1000000
/* How far the fast conversions may stray from the model: the forward
 * formula measured 2.8e-14 degrees at worst, the iterated inverses (which
 * stop anywhere below their 1e-10 residual) 2.1e-12. A tenfold margin, so a
 * regression of 1e-10 degrees, which would change about one printed digit in
 * 10^4, fails. */
#define ORACLE_TOL_FORWARD_DEG 3e-13
#define ORACLE_TOL_INVERSE_DEG 2e-11

/* How the fast conversions differed from the model over one sample. */
struct oracle_tally {
    double tol_deg;        /* the largest difference allowed */
    double worst_deg;      /* largest difference in either coordinate */
    long text_changes;     /* points whose "%.6f %.6f" text differs */
    long points;
};

static void tally(struct oracle_tally *t, struct geo_point got, struct geo_point want) {
    t->points++;
    if (isnan(want.lat_deg) || isnan(want.lon_deg)) {
        /* Invalid points pass through unchanged, NaN and all. */
        assert_true(memcmp(&got, &want, sizeof got) == 0);
        return;
    }
    double d = fmax(fabs(got.lat_deg - want.lat_deg), fabs(got.lon_deg - want.lon_deg));
    if (!(d <= t->tol_deg)) {
        fail_msg("got (%.17g, %.17g), the model (%.17g, %.17g)", got.lat_deg, got.lon_deg,
                 want.lat_deg, want.lon_deg);
    }
    if (d > t->worst_deg) {
        t->worst_deg = d;
    }
    if (d > 0.0) {
        char a[64], b[64];
        snprintf(a, sizeof a, "%.6f %.6f", got.lat_deg, got.lon_deg);
        snprintf(b, sizeof b, "%.6f %.6f", want.lat_deg, want.lon_deg);
        t->text_changes += strcmp(a, b) != 0;
    }
}

/* Prints one sample's figures (and its worst round trip, when it measured
 * one: trip >= 0) and asserts that no printed position changed: the sample is
 * fixed, and none did when it was measured. */
static void tally_done(const char *what, const struct oracle_tally *t, double trip) {
    printf("# %s over %ld cases: worst %.2g deg from the model, %ld printed differently",
           what, t->points, t->worst_deg, t->text_changes);
    if (trip >= 0.0) {
        printf("; round trip within %.2g deg", trip);
    }
    printf("\n");
    assert_int_equal(t->text_changes, 0);
}

/* The i-th random point: seven in ten inside the box, two in ten within
 * three degrees around it (across its edges), one anywhere on Earth. */
static struct geo_point oracle_point(uint64_t *rng) {
    uint64_t kind = test_rng_splitmix64(rng) % 10;
    double lat_lo = 0.8293, lat_hi = 55.8271, lon_lo = 72.004, lon_hi = 137.8347;
    if (kind >= 9) {
        lat_lo = -90.0, lat_hi = 90.0, lon_lo = -180.0, lon_hi = 180.0;
    } else if (kind >= 7) {
        lat_lo -= 3.0, lat_hi += 3.0, lon_lo -= 3.0, lon_hi += 3.0;
    }
    double lat = test_rng_range(test_rng_splitmix64(rng), lat_lo, lat_hi);
    double lon = test_rng_range(test_rng_splitmix64(rng), lon_lo, lon_hi);
    return pt(lat, lon);
}

/* The box's corners and edges, each exactly and one ulp to either side,
 * the poles, the antimeridian, zero, and NaN in either coordinate. */
static size_t edge_points(struct geo_point *out, size_t cap) {
    const double lats[] = {0.8293, 55.8271, 36.18, 0.0, 90.0, -90.0, NAN};
    const double lons[] = {72.004, 137.8347, 120.42, 0.0, 180.0, -180.0, NAN};
    size_t n = 0;
    for (size_t i = 0; i < sizeof lats / sizeof lats[0]; i++) {
        for (size_t j = 0; j < sizeof lons / sizeof lons[0]; j++) {
            for (int di = -1; di <= 1; di++) {
                for (int dj = -1; dj <= 1; dj++) {
                    double lat = di == 0 ? lats[i] : nextafter(lats[i], di * INFINITY);
                    double lon = dj == 0 ? lons[j] : nextafter(lons[j], dj * INFINITY);
                    if (n < cap) {
                        out[n++] = pt(lat, lon);
                    }
                }
            }
        }
    }
    return n;
}

static void test_forward_agrees_with_the_model(void **state) {
    (void)state;
    uint64_t rng = 0x5eed0001;
    struct oracle_tally t = {.tol_deg = ORACLE_TOL_FORWARD_DEG};
    struct geo_point edges[512];
    size_t n_edges = edge_points(edges, 512);
    for (size_t i = 0; i < n_edges; i++) {
        tally(&t, geo_crs_wgs84_to_gcj02(edges[i]), model_wgs84_to_gcj02(edges[i]));
    }
    for (long i = 0; i < ORACLE_POINTS; i++) {
        struct geo_point p = oracle_point(&rng);
        struct geo_point got = geo_crs_wgs84_to_gcj02(p);
        tally(&t, got, model_wgs84_to_gcj02(p));
        if (!geo_crs_is_in_china(p)) {
            assert_true(memcmp(&got, &p, sizeof p) == 0);
        }
    }
    tally_done("WGS84 -> GCJ-02", &t, -1.0);
}

static void test_inverse_agrees_with_the_model_and_round_trips(void **state) {
    (void)state;
    uint64_t rng = 0x5eed0002;
    struct oracle_tally t = {.tol_deg = ORACLE_TOL_INVERSE_DEG};
    struct geo_point edges[512];
    size_t n_edges = edge_points(edges, 512);
    for (size_t i = 0; i < n_edges; i++) {
        tally(&t, geo_crs_gcj02_to_wgs84(edges[i]), model_gcj02_to_wgs84(edges[i]));
    }
    double worst_trip = 0.0;
    for (long i = 0; i < ORACLE_POINTS; i++) {
        struct geo_point p = oracle_point(&rng);
        struct geo_point w = geo_crs_gcj02_to_wgs84(p);
        tally(&t, w, model_gcj02_to_wgs84(p));
        if (!geo_crs_is_in_china(p)) {
            assert_true(memcmp(&w, &p, sizeof p) == 0);
        } else if (geo_crs_is_in_china(w)) {
            /* The documented round trip; near the edge, w may fall outside
             * the box, where the forward formula is not applied. */
            struct geo_point back = geo_crs_wgs84_to_gcj02(w);
            double d = fmax(fabs(back.lat_deg - p.lat_deg), fabs(back.lon_deg - p.lon_deg));
            assert_true(d <= 1e-10);
            worst_trip = fmax(worst_trip, d);
        }
    }
    tally_done("GCJ-02 -> WGS84", &t, worst_trip);
}

/* Both directions of every system through the generic entry points,
 * including their refusals (a BD-09 result past a pole or the antimeridian). */
static void test_generic_conversions_agree_with_the_model(void **state) {
    (void)state;
    uint64_t rng = 0x5eed0003;
    struct oracle_tally t = {.tol_deg = ORACLE_TOL_INVERSE_DEG};
    struct geo_point edges[512];
    size_t n_edges = edge_points(edges, 512);
    for (long i = 0; i < ORACLE_POINTS / 4 + (long)n_edges; i++) {
        struct geo_point p = i < (long)n_edges ? edges[i] : oracle_point(&rng);
        for (int crs = GEO_CRS_WGS84; crs <= GEO_CRS_BD09; crs++) {
            for (int to_wgs84 = 0; to_wgs84 <= 1; to_wgs84++) {
                struct geo_point got = pt(-1.0, -1.0), want = pt(-1.0, -1.0);
                int ret = to_wgs84 ? geo_crs_to_wgs84((enum geo_crs)crs, p, &got)
                                   : geo_crs_from_wgs84((enum geo_crs)crs, p, &got);
                int model_ret = model_convert(to_wgs84, (enum geo_crs)crs, p, &want);
                assert_int_equal(ret, model_ret);
                tally(&t, got, want);
            }
        }
    }
    tally_done("generic conversions", &t, -1.0);
}

/* BD-09 both ways on their own, also right around the origin, where the
 * published formula's atan2 turns fastest. */
static void test_bd09_agrees_with_the_model_and_round_trips(void **state) {
    (void)state;
    uint64_t rng = 0x5eed0005;
    struct oracle_tally t = {.tol_deg = ORACLE_TOL_INVERSE_DEG};
    double worst_trip = 0.0;
    struct geo_point edges[512];
    size_t n_edges = edge_points(edges, 512);
    for (long i = 0; i < ORACLE_POINTS / 2 + (long)n_edges; i++) {
        struct geo_point p;
        if (i < (long)n_edges) {
            p = edges[i];
        } else if (i % 16 == 0) {
            double r = ldexp(1.0, -(int)(test_rng_splitmix64(&rng) % 40));
            p = pt(test_rng_range(test_rng_splitmix64(&rng), -r, r),
                   test_rng_range(test_rng_splitmix64(&rng), -r, r));
        } else {
            p = oracle_point(&rng);
        }
        tally(&t, geo_crs_gcj02_to_bd09(p), model_gcj02_to_bd09(p));
        struct geo_point g = geo_crs_bd09_to_gcj02(p);
        tally(&t, g, model_bd09_to_gcj02(p));
        if (!isnan(p.lat_deg) && !isnan(p.lon_deg)) {
            struct geo_point back = geo_crs_gcj02_to_bd09(g);
            double d = fmax(fabs(back.lat_deg - p.lat_deg), fabs(back.lon_deg - p.lon_deg));
            assert_true(d <= 1e-10);
            worst_trip = fmax(worst_trip, d);
        }
    }
    tally_done("BD-09 both ways", &t, worst_trip);
}

/* ---- Six decimals ---------------------------------------------------------- */

/* geo_crs_deg_to_e6() against printf: the digits of the integer must be
 * exactly the "%.6f" text, or the function must refuse the "-0.000000" that
 * no integer prints (and only that, inside [-180, 180]). */
static void check_e6(double deg) {
    char want[64], got[64];
    snprintf(want, sizeof want, "%.6f", deg);
    int32_t e6 = 12345;
    if (!geo_crs_deg_to_e6(deg, &e6)) {
        assert_int_equal(e6, 12345);
        if (fabs(deg) <= 180.0 && strcmp(want, "-0.000000") != 0) {
            fail_msg("refused %a (%s)", deg, want);
        }
        return;
    }
    assert_true(fabs(deg) <= 180.0);
    uint32_t a = e6 < 0 ? 0u - (uint32_t)e6 : (uint32_t)e6;
    snprintf(got, sizeof got, "%s%u.%06u", e6 < 0 ? "-" : "", a / 1000000, a % 1000000);
    if (strcmp(got, want) != 0) {
        fail_msg("%a: got %s, printf %s", deg, got, want);
    }
}

static void test_deg_to_e6_rounds_exactly_as_printf(void **state) {
    (void)state;
    uint64_t rng = 0x5eed0004;
    for (long i = 0; i < 300000; i++) {
        check_e6(test_rng_range(test_rng_splitmix64(&rng), -180.0, 180.0));
        /* Halfway between two microdegrees, as near as a double gets, and
         * its neighbours: the cases a rounded product gets wrong. */
        int64_t k = (int64_t)(test_rng_splitmix64(&rng) % 360000000) - 180000000;
        double half = ((double)k + 0.5) / 1e6;
        check_e6(half);
        check_e6(nextafter(half, INFINITY));
        check_e6(nextafter(half, -INFINITY));
        /* Exact halves: odd multiples of 2^-7 are k + 1/2 microdegrees. */
        double tie = ldexp((double)(2 * (test_rng_splitmix64(&rng) % 11520) + 1), -7);
        check_e6(tie);
        check_e6(-tie);
    }
    const double special[] = {0.0, -0.0, 5e-7, -5e-7, 0x1p-21, -0x1p-21, 0x1.0c6f7a0b5ed8dp-21,
                              -0x1.0c6f7a0b5ed8dp-21, 1e-300, -1e-300, 4.9e-324, -4.9e-324,
                              180.0, -180.0, 179.9999995, -179.9999995, 36.0078125,
                              nextafter(180.0, INFINITY), -200.0, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
        check_e6(special[i]);
    }
}

/* ---- Names and arguments ------------------------------------------------- */

static void test_names_parse_back_and_unknown_names_fail(void **state) {
    (void)state;
    for (int crs = GEO_CRS_WGS84; crs <= GEO_CRS_BD09; crs++) {
        enum geo_crs parsed = GEO_CRS_WGS84;
        const char *name = geo_crs_name((enum geo_crs)crs);
        assert_non_null(name);
        assert_int_equal(geo_crs_parse(name, &parsed), GEO_OK);
        assert_int_equal(parsed, crs);
    }
    enum geo_crs c = GEO_CRS_WGS84;
    assert_int_equal(geo_crs_parse("GCJ02", &c), GEO_OK);
    assert_int_equal(c, GEO_CRS_GCJ02);
    assert_string_equal(geo_crs_name(GEO_CRS_BD09), "bd09");
    c = GEO_CRS_BD09;
    assert_int_equal(geo_crs_parse("wgs-84", &c), GEO_ERR_ARG);
    assert_int_equal(geo_crs_parse("", &c), GEO_ERR_ARG);
    assert_int_equal(geo_crs_parse("gcj02 ", &c), GEO_ERR_ARG);
    assert_int_equal(geo_crs_parse(NULL, &c), GEO_ERR_ARG);
    assert_int_equal(c, GEO_CRS_BD09);
    assert_null(geo_crs_name((enum geo_crs)3));
    assert_null(geo_crs_name((enum geo_crs)-1));
}

static void test_invalid_points_and_systems_are_refused(void **state) {
    (void)state;
    struct geo_point out = pt(1.0, 2.0);
    assert_int_equal(geo_crs_to_wgs84(GEO_CRS_GCJ02, pt(NAN, 120.0), &out), GEO_ERR_ARG);
    assert_int_equal(geo_crs_from_wgs84(GEO_CRS_BD09, pt(36.0, 181.0), &out), GEO_ERR_ARG);
    assert_int_equal(geo_crs_to_wgs84((enum geo_crs)7, pt(36.0, 120.0), &out), GEO_ERR_ARG);
    assert_int_equal(geo_crs_from_wgs84((enum geo_crs)7, pt(36.0, 120.0), &out), GEO_ERR_ARG);
    /* BD-09's shift would carry this point past the antimeridian. */
    assert_int_equal(geo_crs_from_wgs84(GEO_CRS_BD09, pt(0.0, 180.0), &out), GEO_ERR_ARG);
    assert_int_equal(geo_crs_to_wgs84(GEO_CRS_WGS84, pt(36.0, 120.0), NULL), GEO_ERR_ARG);
    assert_true(out.lat_deg == 1.0 && out.lon_deg == 2.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wgs84_to_gcj02_matches_eviltransform_vectors),
        cmocka_unit_test(test_forward_conversions_match_gcoord_vectors),
        cmocka_unit_test(test_gcj02_inverse_is_the_converged_one),
        cmocka_unit_test(test_bd09_inverses_match_gcoord_and_round_trip),
        cmocka_unit_test(test_round_trips_over_china_are_within_1cm),
        cmocka_unit_test(test_generic_round_trips_through_every_system),
        cmocka_unit_test(test_inverse_is_better_than_one_step),
        cmocka_unit_test(test_licang_gcj02_lies_about_440_m_east),
        cmocka_unit_test(test_outside_china_gcj02_equals_wgs84),
        cmocka_unit_test(test_forward_agrees_with_the_model),
        cmocka_unit_test(test_inverse_agrees_with_the_model_and_round_trips),
        cmocka_unit_test(test_generic_conversions_agree_with_the_model),
        cmocka_unit_test(test_bd09_agrees_with_the_model_and_round_trips),
        cmocka_unit_test(test_deg_to_e6_rounds_exactly_as_printf),
        cmocka_unit_test(test_names_parse_back_and_unknown_names_fail),
        cmocka_unit_test(test_invalid_points_and_systems_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
