/* test_geo_distance.c: geo_distance_m() against PROJ's geod_inverse.
 *
 * The promise under test is |geo_distance_m - geo_distance_reference_m| <= 1 mm
 * for every pair of valid points. Pairs are drawn at random (fixed seed) in
 * bands of separation from 0 to antipodal, at every latitude with extra weight
 * on the poles, the equator and the antimeridian, and on both sides of the
 * fast path's 100 km chord threshold. Each band's worst difference is printed,
 * so a change of formula shows its numbers in the test log.
 * The sines and cosines of the conversions come from geo_sincos_deg() (a table
 * of whole degrees plus series): it is checked against long double over 3
 * million angles (random, the microdegree grid, near whole and half degrees,
 * multiples of 45, tiny and subnormal) for at most 2 ulps, printing the worst
 * (1.6), against libm within the rounding libm's radian argument carries, for
 * symmetry and exact values at right angles, and the conversions against it
 * bit for bit. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <geodesic.h>

#include "geo_distance.h"
#include "test_rng.h"

#define MM 1e-3

/* splitmix64: a small, seedable generator so every run draws the same pairs. */
static uint64_t rng_state = 0x6e65617265737464ULL;

static uint64_t rng_next(void) {
    return test_rng_splitmix64(&rng_state);
}

/* Uniform in [0, 1). */
static double rng_unit(void) {
    return test_rng_unit(rng_next());
}

static double rng_range(double lo, double hi) {
    return test_rng_range(rng_next(), lo, hi);
}

static struct geod_geodesic wgs84;

/* A start point: one in four near a pole, one in eight near the equator, one in
 * eight near the antimeridian, the rest uniform on the sphere. */
static struct geo_point random_start(void) {
    struct geo_point p;
    double pick = rng_unit();
    if (pick < 0.125) {
        p.lat_deg = 90.0 - rng_range(0.0, 0.5) * rng_unit();
    } else if (pick < 0.25) {
        p.lat_deg = -90.0 + rng_range(0.0, 0.5) * rng_unit();
    } else if (pick < 0.375) {
        p.lat_deg = rng_range(-0.01, 0.01);
    } else {
        p.lat_deg = asin(rng_range(-1.0, 1.0)) * (180.0 / M_PI);
    }
    if (pick >= 0.375 && pick < 0.5) {
        p.lon_deg = rng_unit() < 0.5 ? rng_range(179.9, 180.0) : rng_range(-180.0, -179.9);
    } else {
        p.lon_deg = rng_range(-180.0, 180.0);
    }
    if (rng_unit() < 0.01) {
        p.lat_deg = rng_unit() < 0.5 ? 90.0 : -90.0; /* exactly on a pole */
    }
    return p;
}

/* The point s_m metres from `from` along a random azimuth, through PROJ. */
static struct geo_point walk(struct geo_point from, double s_m) {
    struct geo_point to;
    double azi = rng_range(-180.0, 180.0);
    geod_direct(&wgs84, from.lat_deg, from.lon_deg, azi, s_m, &to.lat_deg, &to.lon_deg, NULL);
    return to;
}

static double chord_between_units(struct geo_point a, struct geo_point b) {
    double ua[3], ub[3];
    geo_point_to_unit(a, ua);
    geo_point_to_unit(b, ub);
    double dx = ua[0] - ub[0], dy = ua[1] - ub[1], dz = ua[2] - ub[2];
    return sqrt(dx * dx + dy * dy + dz * dz);
}

/* Worst |fast - PROJ| over n pairs whose separation is uniform in [lo_m, hi_m];
 * fails at the first pair beyond 1 mm. */
static double worst_error_in_band(double lo_m, double hi_m, int n) {
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        struct geo_point a = random_start();
        struct geo_point b = walk(a, rng_range(lo_m, hi_m));
        double fast = geo_distance_m(a, b);
        double ref = geo_distance_reference_m(a, b);
        double err = fabs(fast - ref);
        if (!(err <= MM)) {
            fail_msg("pair (%.12f, %.12f) (%.12f, %.12f): fast %.9f PROJ %.9f",
                     a.lat_deg, a.lon_deg, b.lat_deg, b.lon_deg, fast, ref);
        }
        if (err > worst) {
            worst = err;
        }
    }
    return worst;
}

static int setup_geodesic(void **state) {
    (void)state;
    geod_init(&wgs84, 6378137.0, 1.0 / 298.257223563);
    return 0;
}

static void test_identical_points_are_zero_apart(void **state) {
    (void)state;
    for (int i = 0; i < 20000; i++) {
        struct geo_point a = random_start();
        assert_true(geo_distance_m(a, a) == 0.0);
        assert_true(geo_distance_reference_m(a, a) == 0.0);
    }
}

static void test_distance_is_symmetric(void **state) {
    (void)state;
    for (int i = 0; i < 50000; i++) {
        struct geo_point a = random_start();
        struct geo_point b = walk(a, rng_range(0.0, 200000.0));
        assert_true(geo_distance_m(a, b) == geo_distance_m(b, a));
    }
}

/* The fast path's own margin: far inside 1 mm wherever it is used. */
static void test_short_distances_match_proj_to_a_micrometre(void **state) {
    (void)state;
    static const double bands_m[][2] = {
        {0.0, 1e-3}, {0.0, 1.0}, {1.0, 100.0}, {100.0, 1e3},
        {1e3, 1e4}, {1e4, 5e4}, {5e4, 99000.0},
    };
    for (size_t i = 0; i < sizeof bands_m / sizeof bands_m[0]; i++) {
        double worst = worst_error_in_band(bands_m[i][0], bands_m[i][1], 50000);
        printf("# %9.3g - %9.3g m: worst |fast - PROJ| = %.3g m\n",
               bands_m[i][0], bands_m[i][1], worst);
        assert_true(worst <= 1e-6);
    }
}

/* Both sides of the 100 km chord threshold, where the two paths meet. */
static void test_fast_and_proj_paths_agree_at_the_threshold(void **state) {
    (void)state;
    double worst = worst_error_in_band(99000.0, 101000.0, 50000);
    printf("# around the 100 km threshold: worst |fast - PROJ| = %.3g m\n", worst);
    assert_true(worst <= 1e-6);
}

static void test_long_distances_match_proj_within_1mm(void **state) {
    (void)state;
    static const double bands_m[][2] = {
        {1e5, 1e6}, {1e6, 1e7}, {1e7, 2.0e7},
    };
    for (size_t i = 0; i < sizeof bands_m / sizeof bands_m[0]; i++) {
        double worst = worst_error_in_band(bands_m[i][0], bands_m[i][1], 30000);
        printf("# %9.3g - %9.3g m: worst |fast - PROJ| = %.3g m\n",
               bands_m[i][0], bands_m[i][1], worst);
    }
}

/* Antipodal and nearly antipodal pairs, where geodesics are least stable. */
static void test_nearly_antipodal_pairs_match_proj_within_1mm(void **state) {
    (void)state;
    for (int i = 0; i < 20000; i++) {
        struct geo_point a = random_start();
        struct geo_point b = {-a.lat_deg, a.lon_deg > 0.0 ? a.lon_deg - 180.0 : a.lon_deg + 180.0};
        b.lat_deg += rng_range(-0.01, 0.01) * (rng_unit() < 0.2 ? 0.0 : 1.0);
        b.lon_deg += rng_range(-0.01, 0.01) * (rng_unit() < 0.2 ? 0.0 : 1.0);
        if (b.lat_deg > 90.0 || b.lat_deg < -90.0 || b.lon_deg > 180.0 || b.lon_deg < -180.0) {
            continue;
        }
        assert_true(fabs(geo_distance_m(a, b) - geo_distance_reference_m(a, b)) <= MM);
    }
}

/* Pairs drawn in degrees rather than metres: a small box, the Licang area
 * scale, and the same pairs shifted across the antimeridian. */
static void test_degree_offsets_match_proj_within_1mm(void **state) {
    (void)state;
    double worst = 0.0;
    for (int i = 0; i < 100000; i++) {
        double span_deg = i % 2 ? 0.2 : 2e-6;
        struct geo_point a = {rng_range(-90.0, 90.0), rng_range(-180.0, 180.0)};
        if (i % 4 == 0) {
            a.lon_deg = 180.0 - rng_range(0.0, span_deg);
        }
        struct geo_point b = {a.lat_deg + rng_range(-span_deg, span_deg),
                              a.lon_deg + rng_range(-span_deg, span_deg)};
        if (b.lon_deg > 180.0) {
            b.lon_deg -= 360.0;
        }
        if (b.lat_deg > 90.0 || b.lat_deg < -90.0) {
            continue;
        }
        double err = fabs(geo_distance_m(a, b) - geo_distance_reference_m(a, b));
        assert_true(err <= MM);
        if (err > worst) {
            worst = err;
        }
    }
    printf("# degree offsets: worst |fast - PROJ| = %.3g m\n", worst);
}

/* geo_distance.h promises GEO_MIN_RADIUS_M * unit chord <= distance; the index
 * prunes with it. Rounding of coordinates near 6.4e6 m makes both sides
 * uncertain by about 1e-9 m, so the check allows GEO_BOUND_SLACK_M. */
static void test_unit_chord_bound_never_exceeds_distance(void **state) {
    (void)state;
    static const double scales_m[] = {1e-3, 1.0, 100.0, 1e4, 1e5, 1e6, 2e7};
    double worst_excess = -INFINITY;
    for (size_t s = 0; s < sizeof scales_m / sizeof scales_m[0]; s++) {
        for (int i = 0; i < 30000; i++) {
            struct geo_point a = random_start();
            if (i % 3 == 0) {
                a.lat_deg = rng_range(-1e-4, 1e-4); /* equator: tightest case */
            }
            struct geo_point b = walk(a, rng_range(0.0, scales_m[s]));
            double bound = GEO_MIN_RADIUS_M * chord_between_units(a, b);
            double dist = geo_distance_m(a, b);
            assert_true(bound <= dist + GEO_BOUND_SLACK_M);
            if (bound - dist > worst_excess) {
                worst_excess = bound - dist;
            }
        }
    }
    printf("# worst (bound - distance) = %.3g m\n", worst_excess);
}

/* The precomputed form is the same computation, so it must agree exactly: the
 * index's results are defined by geo_distance_m(). */
static void test_precomputed_points_give_identical_distances(void **state) {
    (void)state;
    static const double scales_m[] = {1.0, 1e3, 5e4, 1.5e5, 2e7};
    for (size_t s = 0; s < sizeof scales_m / sizeof scales_m[0]; s++) {
        for (int i = 0; i < 20000; i++) {
            struct geo_point a = random_start();
            struct geo_point b = walk(a, rng_range(0.0, scales_m[s]));
            struct geo_ecef_point ea, eb;
            geo_ecef_point_init(&ea, a);
            geo_ecef_point_init(&eb, b);
            double ua[3];
            geo_point_to_unit(a, ua);
            assert_memory_equal(ea.normal, ua, sizeof ua);
            assert_true(ea.where.lat_deg == a.lat_deg && ea.where.lon_deg == a.lon_deg);
            double direct = geo_distance_m(a, b), pre = geo_distance_ecef_m(&ea, &eb);
            assert_memory_equal(&direct, &pre, sizeof direct);
        }
    }
}

/* ---- geo_sincos_deg() ------------------------------------------------------ */

/* pi/180 to the 64 bits of x87 long double (more where long double is wider). */
#define PI_OVER_180_L 0.01745329251994329576923690768488612713442871888541725456L

/* The reference: sin and cos of deg degrees in long double, reduced by the
 * nearest multiple of 90 in degrees first (exact in doubles), so that no
 * rounding of deg * pi/180 near a multiple of pi shows up as error; the
 * multiples of 90 themselves give exact zeros and ones. */
static void reference_sincos_deg(double deg, long double *s, long double *c) {
    double q = nearbyint(deg / 90.0);
    double r = deg - 90.0 * q;
    long double rs = r == 0.0 ? 0.0L : sinl(r * PI_OVER_180_L);
    long double rc = r == 0.0 ? 1.0L : cosl(r * PI_OVER_180_L);
    switch ((long)q & 3) {
    case 0: *s = rs; *c = rc; break;
    case 1: *s = rc; *c = -rs; break;
    case 2: *s = -rs; *c = -rc; break;
    default: *s = -rc; *c = rs; break;
    }
}

/* Error of `got` against `ref` in ulps of the double nearest ref (an exact
 * zero must be met exactly: any other value counts as infinitely far). */
static double ulps_off(double got, long double ref) {
    double r = (double)ref;
    if (r == 0.0) {
        return got == 0.0 ? 0.0 : INFINITY;
    }
    int e;
    frexp(r, &e);
    double ulp = e - 53 < -1074 ? 0x1p-1074 : ldexp(1.0, e - 53); /* subnormals */
    return (double)(fabsl((long double)got - ref) / (long double)ulp);
}

/* The arguments geo_sincos_deg() must get right: uniform in [-180, 180]; on
 * the microdegree grid the wire protocol sends; whole and half degrees and a
 * nanodegree either side (where the table switches); the multiples of 45;
 * tiny and subnormal angles of both signs. All within [-180, 180]. */
static double sincos_argument(int i) {
    uint64_t bits = rng_next();
    switch (i % 6) {
    case 0: return rng_range(-180.0, 180.0);
    case 1: return (double)((int64_t)(bits % 360000001u) - 180000000) * 1e-6;
    case 2: {
        double near = (double)((int64_t)(bits % 361u) - 180) +
                      (double)((int64_t)((bits >> 16) % 2001u) - 1000) * 1e-9;
        return fmin(fmax(near, -180.0), 180.0);
    }
    case 3: {
        double half = (double)((int64_t)(bits % 360u) - 180) + 0.5;
        return (bits >> 20) % 3 == 0 ? half : nextafter(half, (bits >> 22) & 1 ? 200.0 : -200.0);
    }
    case 4: return 45.0 * (double)((int64_t)(bits % 9u) - 4);
    default: {
        double tiny = ldexp(rng_unit(), -(int)(bits % 1080u));
        return (bits >> 40) & 1 ? -tiny : tiny;
    }
    }
}

/* Every sine and cosine of the conversions comes from geo_sincos_deg(), so its
 * accuracy is the conversions' accuracy. Measured against long double (x87:
 * 11 more bits; where long double is only a double, the reference itself is
 * up to an ulp off, so the bound allows one more ulp). The worst errors are
 * printed. */
static void test_sincos_deg_is_within_2_ulps_of_the_true_values(void **state) {
    (void)state;
    /* 1.75, not 2: the stated worst is 1.6 ulps, and the two likeliest
     * mistakes (the table's low words dropped, or the 1 -> 0 and 89 -> 90
     * remapping removed) reach 1.85 and 1.96. */
    double bound = LDBL_MANT_DIG >= 64 ? 1.75 : 3.0;
    double worst_sin = 0.0, worst_cos = 0.0, worst_sin_at = 0.0, worst_cos_at = 0.0;
    for (int i = 0; i < 3000000; i++) {
        double deg = sincos_argument(i);
        double s, c;
        geo_sincos_deg(deg, &s, &c);
        long double rs, rc;
        reference_sincos_deg(deg, &rs, &rc);
        double es = ulps_off(s, rs), ec = ulps_off(c, rc);
        if (!(es <= bound && ec <= bound)) {
            fail_msg("deg %.17g: sin %a cos %a, reference %La %La", deg, s, c, rs, rc);
        }
        if (es > worst_sin) {
            worst_sin = es;
            worst_sin_at = deg;
        }
        if (ec > worst_cos) {
            worst_cos = ec;
            worst_cos_at = deg;
        }
    }
    printf("# geo_sincos_deg: worst %.3f ulp for sin (at %.17g), %.3f for cos (at %.17g)\n",
           worst_sin, worst_sin_at, worst_cos, worst_cos_at);
}

/* Against libm on the radian argument the old code used: libm's result also
 * carries the rounding of deg * (M_PI / 180), up to 4.4e-16 at pi, so the
 * comparison is absolute. */
static void test_sincos_deg_matches_libm_within_its_argument_rounding(void **state) {
    (void)state;
    double worst = 0.0;
    long same = 0, n = 0;
    for (int i = 0; i < 1000000; i++, n++) {
        double deg = sincos_argument(i);
        double s, c;
        geo_sincos_deg(deg, &s, &c);
        double x = deg * (M_PI / 180.0);
        double diff = fmax(fabs(s - sin(x)), fabs(c - cos(x)));
        assert_true(diff <= 5e-16);
        worst = diff > worst ? diff : worst;
        same += s == sin(x) && c == cos(x);
    }
    printf("# geo_sincos_deg vs libm: worst %.3g, %.1f %% bit-equal\n", worst,
           100.0 * (double)same / (double)n);
}

static void test_sincos_deg_is_odd_and_even_and_exact_at_right_angles(void **state) {
    (void)state;
    for (int i = 0; i < 200000; i++) {
        double deg = sincos_argument(i);
        double s1, c1, s2, c2;
        geo_sincos_deg(deg, &s1, &c1);
        geo_sincos_deg(-deg, &s2, &c2);
        assert_true(s2 == -s1 && c2 == c1);
        assert_true(signbit(s2) != signbit(s1) || s1 != s1);
    }
    static const double right[][3] = {
        {0.0, 0.0, 1.0}, {90.0, 1.0, 0.0}, {-90.0, -1.0, 0.0},
        {180.0, 0.0, -1.0}, {-180.0, -0.0, -1.0}, {30.0, 0.5, NAN}, {60.0, NAN, 0.5},
    };
    for (size_t i = 0; i < sizeof right / sizeof right[0]; i++) {
        double s, c;
        geo_sincos_deg(right[i][0], &s, &c);
        assert_true(isnan(right[i][1]) || s == right[i][1]);
        assert_true(isnan(right[i][2]) || c == right[i][2]);
    }
    double s, c;
    geo_sincos_deg(-0.0, &s, &c);
    assert_true(s == 0.0 && signbit(s) && c == 1.0);
}

/* The conversions' sines and cosines must be geo_sincos_deg()'s bit for bit
 * (whatever path they take: a two-lane SSE2 version was tried), or the unit
 * vectors and ECEF positions would depend on the path taken. */
static void test_conversions_use_exactly_geo_sincos_deg(void **state) {
    (void)state;
    static const double edges[] = {0.0, -0.0, 0.5, 1.0, 1.5, 89.0, 89.5, 90.0, 90.5, 91.0,
                                   179.5, 180.0, 1e-300, 45.0, 135.0};
    size_t n_edges = sizeof edges / sizeof edges[0];
    for (int i = 0; i < 2000000; i++) {
        struct geo_point p;
        if (i < (int)(4 * n_edges * n_edges)) {
            int e = i / 4;
            p.lat_deg = fmin(edges[e % n_edges], 90.0) * (i & 1 ? -1.0 : 1.0);
            p.lon_deg = edges[e / n_edges] * (i & 2 ? -1.0 : 1.0);
        } else {
            p.lat_deg = sincos_argument(i) / 2.0;
            p.lon_deg = sincos_argument(i + 1);
        }
        double sin_lat, cos_lat, sin_lon, cos_lon;
        geo_sincos_deg(p.lat_deg, &sin_lat, &cos_lat);
        geo_sincos_deg(p.lon_deg, &sin_lon, &cos_lon);
        double want[3] = {cos_lat * cos_lon, cos_lat * sin_lon, sin_lat};
        double unit[3];
        geo_point_to_unit(p, unit);
        if (memcmp(unit, want, sizeof unit) != 0) {
            fail_msg("(%.17g, %.17g): unit (%a %a %a), want (%a %a %a)", p.lat_deg, p.lon_deg,
                     unit[0], unit[1], unit[2], want[0], want[1], want[2]);
        }
        struct geo_ecef_point e;
        geo_ecef_point_init(&e, p);
        assert_memory_equal(e.normal, want, sizeof want);
    }
}

/* Beyond +-180 degrees, and for NaN, it is libm's sin and cos. */
static void test_sincos_deg_beyond_180_is_libm(void **state) {
    (void)state;
    static const double args[] = {180.5, -181.0, 360.0, 1e6, -1e300, INFINITY, NAN};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        double s, c;
        geo_sincos_deg(args[i], &s, &c);
        double x = args[i] * (M_PI / 180.0);
        double ls = sin(x), lc = cos(x);
        assert_memory_equal(&s, &ls, sizeof s);
        assert_memory_equal(&c, &lc, sizeof c);
    }
    double s, c;
    geo_sincos_deg(nextafter(180.0, 0.0), &s, &c);
    assert_true(s > 0.0 && s < 1e-15 && c == -1.0);
}

static void test_point_validity_edges(void **state) {
    (void)state;
    assert_true(geo_point_is_valid((struct geo_point){90.0, 180.0}));
    assert_true(geo_point_is_valid((struct geo_point){-90.0, -180.0}));
    assert_true(geo_point_is_valid((struct geo_point){0.0, 0.0}));
    assert_true(geo_point_is_valid((struct geo_point){36.16, 120.42}));
    assert_false(geo_point_is_valid((struct geo_point){nextafter(90.0, 91.0), 0.0}));
    assert_false(geo_point_is_valid((struct geo_point){nextafter(-90.0, -91.0), 0.0}));
    assert_false(geo_point_is_valid((struct geo_point){0.0, nextafter(180.0, 181.0)}));
    assert_false(geo_point_is_valid((struct geo_point){0.0, nextafter(-180.0, -181.0)}));
    assert_false(geo_point_is_valid((struct geo_point){NAN, 0.0}));
    assert_false(geo_point_is_valid((struct geo_point){0.0, NAN}));
    assert_false(geo_point_is_valid((struct geo_point){INFINITY, 0.0}));
    assert_false(geo_point_is_valid((struct geo_point){0.0, -INFINITY}));
    /* The wire protocol sends lat first: a swapped Licang point is invalid. */
    assert_false(geo_point_is_valid((struct geo_point){120.42, 36.16}));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical_points_are_zero_apart),
        cmocka_unit_test(test_distance_is_symmetric),
        cmocka_unit_test(test_short_distances_match_proj_to_a_micrometre),
        cmocka_unit_test(test_fast_and_proj_paths_agree_at_the_threshold),
        cmocka_unit_test(test_long_distances_match_proj_within_1mm),
        cmocka_unit_test(test_nearly_antipodal_pairs_match_proj_within_1mm),
        cmocka_unit_test(test_degree_offsets_match_proj_within_1mm),
        cmocka_unit_test(test_unit_chord_bound_never_exceeds_distance),
        cmocka_unit_test(test_precomputed_points_give_identical_distances),
        cmocka_unit_test(test_sincos_deg_is_within_2_ulps_of_the_true_values),
        cmocka_unit_test(test_sincos_deg_matches_libm_within_its_argument_rounding),
        cmocka_unit_test(test_sincos_deg_is_odd_and_even_and_exact_at_right_angles),
        cmocka_unit_test(test_sincos_deg_beyond_180_is_libm),
        cmocka_unit_test(test_conversions_use_exactly_geo_sincos_deg),
        cmocka_unit_test(test_point_validity_edges),
    };
    return cmocka_run_group_tests(tests, setup_geodesic, NULL);
}
