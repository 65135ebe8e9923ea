/* test_geo_area.c: area containment against a ray-casting oracle.
 *
 * The oracle is the textbook even-odd rule: a horizontal ray from the point
 * crosses the rings of the area an odd number of times exactly when the point
 * is inside, holes and separate parts included. Random star-shaped polygons
 * (some with a star-shaped hole, some MultiPolygons of two parts) overlap one
 * another in a box the size of Licang, get random kinds, and random points are
 * asked of geo_areas_containing() with random kind masks. Random points lie on
 * a boundary with probability zero, so the boundary rule is tested separately
 * on hand-made squares. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <geos_c.h>

#include "geo_area.h"
#include "geo_distance.h"
#include "test_rng.h"

/* ---- Random numbers ------------------------------------------------------ */

static uint64_t rng_state = 0x61726561735f7465ULL;

static uint64_t rng_next(void) {
    return test_rng_splitmix64(&rng_state);
}

static double rng_range(double lo, double hi) {
    return test_rng_range(rng_next(), lo, hi);
}

static int rng_int(int lo, int hi) { /* inclusive */
    return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1));
}

/* ---- Test polygons and the oracle ----------------------------------------- */

#define MAX_RING_VERTICES 41
#define MAX_RINGS 4

struct ring {
    int n; /* vertices, the closing one not repeated */
    double lon[MAX_RING_VERTICES], lat[MAX_RING_VERTICES];
};

/* Rings of one test area: for each part, its shell then its holes. */
struct shape {
    int n_parts;
    int rings_of_part[2];
    struct ring rings[MAX_RINGS];
    uint32_t handle;
    uint8_t kind;
};

/* A star around (lat, lon): one vertex in each of n equal sectors, jittered,
 * so consecutive vertices are less than pi apart and the ring is simple. */
static void star_ring(struct ring *r, double lat, double lon, int n, double r_lo, double r_hi) {
    r->n = n;
    for (int i = 0; i < n; i++) {
        double theta = (i + rng_range(0.0, 0.9)) * (2.0 * M_PI / n);
        double radius = rng_range(r_lo, r_hi);
        r->lon[i] = lon + radius * cos(theta);
        r->lat[i] = lat + radius * sin(theta);
    }
}

/* A star with n >= 5 vertices at radii >= r_lo is at least 0.37 r_lo from its
 * centre everywhere, so a hole of radius <= 0.3 r_lo fits inside. */
static int star_part(struct shape *s, int first_ring, double lat, double lon, bool hole) {
    double r_lo = rng_range(0.002, 0.015);
    double r_hi = r_lo * rng_range(1.0, 2.0);
    star_ring(&s->rings[first_ring], lat, lon, rng_int(5, MAX_RING_VERTICES - 1), r_lo, r_hi);
    if (!hole) {
        return 1;
    }
    star_ring(&s->rings[first_ring + 1], lat, lon, rng_int(5, 12), 0.1 * r_lo, 0.3 * r_lo);
    return 2;
}

static void random_shape(struct shape *s, uint32_t handle) {
    memset(s, 0, sizeof *s);
    s->handle = handle;
    s->kind = (uint8_t)rng_int(0, 4);
    double lat = rng_range(36.10, 36.26), lon = rng_range(120.30, 120.55);
    s->n_parts = rng_int(1, 3) == 1 ? 2 : 1;
    s->rings_of_part[0] = star_part(s, 0, lat, lon, rng_int(0, 2) == 0);
    if (s->n_parts == 2) {
        /* 0.07 degrees east: farther than the two parts' radii together. */
        s->rings_of_part[1] = star_part(s, s->rings_of_part[0], lat, lon + 0.07,
                                        rng_int(0, 2) == 0);
    }
}

static int shape_ring_count(const struct shape *s) {
    return s->rings_of_part[0] + s->rings_of_part[1];
}

/* Even-odd ray casting over every ring. */
static bool oracle_inside(const struct shape *s, double lat, double lon) {
    bool inside = false;
    for (int k = 0; k < shape_ring_count(s); k++) {
        const struct ring *r = &s->rings[k];
        for (int i = 0, j = r->n - 1; i < r->n; j = i++) {
            if ((r->lat[i] > lat) != (r->lat[j] > lat)) {
                double x = r->lon[j] + (lat - r->lat[j]) * (r->lon[i] - r->lon[j]) /
                                           (r->lat[i] - r->lat[j]);
                if (lon < x) {
                    inside = !inside;
                }
            }
        }
    }
    return inside;
}

static size_t append(char *buf, size_t at, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + at, cap - at, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < cap - at);
    return at + (size_t)n;
}

static void shape_wkt(const struct shape *s, char *buf, size_t cap) {
    size_t at = append(buf, 0, cap, "MULTIPOLYGON(");
    int k = 0;
    for (int p = 0; p < s->n_parts; p++) {
        at = append(buf, at, cap, p ? ",(" : "(");
        for (int h = 0; h < s->rings_of_part[p]; h++, k++) {
            const struct ring *r = &s->rings[k];
            at = append(buf, at, cap, h ? ",(" : "(");
            for (int i = 0; i <= r->n; i++) {
                int v = i % r->n;
                at = append(buf, at, cap, "%s%.15g %.15g", i ? "," : "", r->lon[v], r->lat[v]);
            }
            at = append(buf, at, cap, ")");
        }
        at = append(buf, at, cap, ")");
    }
    append(buf, at, cap, ")");
}

static int add_shape(struct geo_areas *set, const struct shape *s) {
    char wkt[8192];
    shape_wkt(s, wkt, sizeof wkt);
    return geo_areas_add_wkt(set, s->handle, s->kind, wkt);
}

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* ---- Tests --------------------------------------------------------------- */

#define N_SHAPES 80

static void test_containing_matches_ray_casting_oracle(void **state) {
    (void)state;
    static struct shape shapes[N_SHAPES];
    struct geo_areas *set = geo_areas_new();
    assert_non_null(set);
    for (int i = 0; i < N_SHAPES; i++) {
        random_shape(&shapes[i], (uint32_t)(1000 + 7 * i) ^ 0x5u);
        assert_int_equal(add_shape(set, &shapes[i]), GEO_OK);
    }
    assert_int_equal(geo_areas_count(set), N_SHAPES);
    assert_int_equal(geo_areas_build(set), GEO_OK);

    size_t nonempty = 0, in_holes = 0;
    for (int q = 0; q < 20000; q++) {
        double lat = rng_range(36.05, 36.31), lon = rng_range(120.25, 120.65);
        if (q % 4 == 0) { /* aim at a hole's neighbourhood */
            const struct shape *s = &shapes[rng_int(0, N_SHAPES - 1)];
            double clat = 0.0, clon = 0.0;
            for (int i = 0; i < s->rings[0].n; i++) {
                clat += s->rings[0].lat[i] / s->rings[0].n;
                clon += s->rings[0].lon[i] / s->rings[0].n;
            }
            lat = clat + rng_range(-0.004, 0.004);
            lon = clon + rng_range(-0.004, 0.004);
        }
        uint32_t mask = q % 3 == 0 ? UINT32_MAX : (uint32_t)rng_int(0, 31);
        uint32_t want[N_SHAPES];
        size_t n_want = 0;
        for (int i = 0; i < N_SHAPES; i++) {
            bool inside = oracle_inside(&shapes[i], lat, lon);
            if (inside && (mask >> shapes[i].kind & 1u)) {
                want[n_want++] = shapes[i].handle;
            }
            if (!inside && shapes[i].rings_of_part[0] == 2 &&
                oracle_inside(&(struct shape){.n_parts = 1, .rings_of_part = {1, 0},
                                              .rings = {shapes[i].rings[0]}}, lat, lon)) {
                in_holes++;
            }
        }
        qsort(want, n_want, sizeof want[0], compare_u32);
        uint32_t got[N_SHAPES];
        size_t n_got = 0;
        struct geo_point p = {lat, lon};
        assert_int_equal(geo_areas_containing(set, p, mask, got, N_SHAPES, &n_got), GEO_OK);
        assert_int_equal(n_got, n_want);
        assert_memory_equal(got, want, n_want * sizeof want[0]);
        nonempty += n_want > 0;

        /* The single-area predicate agrees for a few areas per point. */
        for (int k = 0; k < 3; k++) {
            const struct shape *s = &shapes[rng_int(0, N_SHAPES - 1)];
            bool inside = !oracle_inside(s, lat, lon);
            assert_int_equal(geo_areas_contains(set, s->handle, p, &inside), GEO_OK);
            assert_true(inside == oracle_inside(s, lat, lon));
        }
    }
    printf("# %zu of 20000 points inside some selected area, %zu (point, area) pairs in "
           "holes\n", nonempty, in_holes);
    assert_true(nonempty > 2000);
    assert_true(in_holes > 100);
    geo_areas_free(set);
}

static void test_bounds_hold_every_inside_point(void **state) {
    (void)state;
    struct geo_areas *set = geo_areas_new();
    assert_non_null(set);
    for (int i = 0; i < 40; i++) {
        struct shape s;
        random_shape(&s, (uint32_t)i);
        assert_int_equal(add_shape(set, &s), GEO_OK);
        struct geo_area_bounds b;
        assert_int_equal(geo_areas_bounds(set, s.handle, &b), GEO_OK);
        size_t inside_seen = 0;
        for (int q = 0; q < 2000; q++) {
            double lat = rng_range(b.min_lat_deg - 0.01, b.max_lat_deg + 0.01);
            double lon = rng_range(b.min_lon_deg - 0.01, b.max_lon_deg + 0.01);
            if (!oracle_inside(&s, lat, lon)) {
                continue;
            }
            inside_seen++;
            assert_true(lat >= b.min_lat_deg && lat <= b.max_lat_deg);
            assert_true(lon >= b.min_lon_deg && lon <= b.max_lon_deg);
            assert_true(geo_distance_m(b.centre, (struct geo_point){lat, lon}) <= b.radius_m);
        }
        assert_true(inside_seen > 0);
        /* Every vertex lies within the radius too, and the radius is not lavish:
         * some vertex comes within 0.1 % + 1 m of it. */
        double far_m = 0.0;
        for (int k = 0; k < shape_ring_count(&s); k++) {
            for (int v = 0; v < s.rings[k].n; v++) {
                struct geo_point vp = {s.rings[k].lat[v], s.rings[k].lon[v]};
                far_m = fmax(far_m, geo_distance_m(b.centre, vp));
            }
        }
        assert_true(far_m <= b.radius_m && b.radius_m <= far_m * 1.001 + 1.0);
    }
    geo_areas_free(set);
}

/* A 0.02 x 0.02 degree square with a 0.01 degree square hole, and a second
 * square to the east: the hole and the gap are outside, the boundary inside. */
static const char *const square_with_hole =
    "MULTIPOLYGON(((120.40 36.15,120.42 36.15,120.42 36.17,120.40 36.17,120.40 36.15),"
    "(120.405 36.155,120.415 36.155,120.415 36.165,120.405 36.165,120.405 36.155)),"
    "((120.45 36.15,120.46 36.15,120.46 36.16,120.45 36.16,120.45 36.15)))";

static void test_points_in_a_hole_are_outside_and_boundaries_inside(void **state) {
    (void)state;
    struct geo_areas *set = geo_areas_new();
    assert_non_null(set);
    assert_int_equal(geo_areas_add_wkt(set, 7, 1, square_with_hole), GEO_OK);
    assert_int_equal(geo_areas_build(set), GEO_OK);
    static const struct {
        double lat, lon;
        bool inside;
    } cases[] = {
        {36.152, 120.402, true},   /* in the ring around the hole */
        {36.160, 120.410, false},  /* in the hole */
        {36.160, 120.430, false},  /* between the parts */
        {36.155, 120.455, true},   /* in the second part */
        {36.150, 120.410, true},   /* on the outer boundary */
        {36.155, 120.410, true},   /* on the hole's boundary */
        {36.200, 120.410, false},  /* north of everything */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct geo_point p = {cases[i].lat, cases[i].lon};
        bool inside = !cases[i].inside;
        assert_int_equal(geo_areas_contains(set, 7, p, &inside), GEO_OK);
        assert_true(inside == cases[i].inside);
        uint32_t got = 0;
        size_t n = 99;
        assert_int_equal(geo_areas_containing(set, p, UINT32_MAX, &got, 1, &n), GEO_OK);
        assert_int_equal(n, cases[i].inside ? 1 : 0);
    }
    geo_areas_free(set);
}

/* Nested squares of kinds 0, 1, 2 around one point; an unrelated square far off. */
static void test_kind_mask_selects_kinds_and_max_truncates(void **state) {
    (void)state;
    struct geo_areas *set = geo_areas_new();
    assert_non_null(set);
    char wkt[256];
    for (int k = 0; k < 3; k++) {
        double h = 0.01 * (k + 1);
        snprintf(wkt, sizeof wkt, "POLYGON((%.3f %.3f,%.3f %.3f,%.3f %.3f,%.3f %.3f,%.3f %.3f))",
                 120.4 - h, 36.2 - h, 120.4 + h, 36.2 - h, 120.4 + h, 36.2 + h,
                 120.4 - h, 36.2 + h, 120.4 - h, 36.2 - h);
        assert_int_equal(geo_areas_add_wkt(set, (uint32_t)(30 - k), (uint8_t)k, wkt), GEO_OK);
    }
    assert_int_equal(geo_areas_add_wkt(set, 5, 0, "POLYGON((10 10,11 10,11 11,10 10))"), GEO_OK);
    assert_int_equal(geo_areas_build(set), GEO_OK);
    struct geo_point p = {36.2, 120.4};
    uint32_t got[4];
    size_t n = 0;
    assert_int_equal(geo_areas_containing(set, p, 0x7, got, 4, &n), GEO_OK);
    assert_int_equal(n, 3);
    assert_int_equal(got[0], 28);
    assert_int_equal(got[1], 29);
    assert_int_equal(got[2], 30);
    assert_int_equal(geo_areas_containing(set, p, 0x5, got, 4, &n), GEO_OK);
    assert_int_equal(n, 2);
    assert_int_equal(got[0], 28);
    assert_int_equal(got[1], 30);
    assert_int_equal(geo_areas_containing(set, p, 0x2, got, 4, &n), GEO_OK);
    assert_int_equal(n, 1);
    assert_int_equal(got[0], 29);
    assert_int_equal(geo_areas_containing(set, p, 0x8, got, 4, &n), GEO_OK);
    assert_int_equal(n, 0);
    /* Room for two: the two smallest handles, and the full count. */
    got[2] = 12345;
    assert_int_equal(geo_areas_containing(set, p, 0x7, got, 2, &n), GEO_OK);
    assert_int_equal(n, 3);
    assert_int_equal(got[0], 28);
    assert_int_equal(got[1], 29);
    assert_int_equal(got[2], 12345);
    assert_int_equal(geo_areas_containing(set, p, 0x7, NULL, 0, &n), GEO_OK);
    assert_int_equal(n, 3);
    /* A point outside all areas. */
    assert_int_equal(geo_areas_containing(set, (struct geo_point){-45.0, -60.0}, UINT32_MAX,
                                          got, 4, &n), GEO_OK);
    assert_int_equal(n, 0);
    uint8_t kind = 9;
    assert_int_equal(geo_areas_kind(set, 29, &kind), GEO_OK);
    assert_int_equal(kind, 1);
    geo_areas_free(set);
}

/* The same shapes added from WKB written by GEOS answer like the WKT ones. */
static void test_wkb_and_wkt_answer_alike(void **state) {
    (void)state;
    GEOSContextHandle_t ctx = GEOS_init_r();
    GEOSWKTReader *reader = GEOSWKTReader_create_r(ctx);
    GEOSWKBWriter *writer = GEOSWKBWriter_create_r(ctx);
    struct geo_areas *from_wkt = geo_areas_new(), *from_wkb = geo_areas_new();
    assert_non_null(from_wkt);
    assert_non_null(from_wkb);
    struct shape shapes[20];
    for (int i = 0; i < 20; i++) {
        random_shape(&shapes[i], (uint32_t)i);
        char wkt[8192];
        shape_wkt(&shapes[i], wkt, sizeof wkt);
        assert_int_equal(geo_areas_add_wkt(from_wkt, (uint32_t)i, shapes[i].kind, wkt), GEO_OK);
        GEOSGeometry *g = GEOSWKTReader_read_r(ctx, reader, wkt);
        assert_non_null(g);
        size_t wkb_bytes = 0;
        unsigned char *wkb = GEOSWKBWriter_write_r(ctx, writer, g, &wkb_bytes);
        assert_non_null(wkb);
        assert_int_equal(geo_areas_add_wkb(from_wkb, (uint32_t)i, shapes[i].kind, wkb, wkb_bytes),
                         GEO_OK);
        GEOSFree_r(ctx, wkb);
        GEOSGeom_destroy_r(ctx, g);
        double a1 = 0.0, a2 = -1.0;
        assert_int_equal(geo_areas_area_m2(from_wkt, (uint32_t)i, &a1), GEO_OK);
        assert_int_equal(geo_areas_area_m2(from_wkb, (uint32_t)i, &a2), GEO_OK);
        assert_true(a1 > 0.0 && a1 == a2);
    }
    assert_int_equal(geo_areas_build(from_wkt), GEO_OK);
    assert_int_equal(geo_areas_build(from_wkb), GEO_OK);
    for (int q = 0; q < 3000; q++) {
        struct geo_point p = {rng_range(36.05, 36.31), rng_range(120.25, 120.65)};
        uint32_t a[20], b[20];
        size_t na = 0, nb = 0;
        assert_int_equal(geo_areas_containing(from_wkt, p, UINT32_MAX, a, 20, &na), GEO_OK);
        assert_int_equal(geo_areas_containing(from_wkb, p, UINT32_MAX, b, 20, &nb), GEO_OK);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof a[0]);
    }
    geo_areas_free(from_wkt);
    geo_areas_free(from_wkb);
    GEOSWKBWriter_destroy_r(ctx, writer);
    GEOSWKTReader_destroy_r(ctx, reader);
    GEOS_finish_r(ctx);
}

/* Geodesic area of a box between two parallels and two meridians, from the
 * closed form for a zone of the ellipsoid; the polygon's top and bottom edges
 * are geodesics, not parallels, which changes a 0.01 degree box by about 1e-5. */
static double zone_area_m2(double lat1_deg, double lat2_deg, double dlon_deg) {
    const double a = 6378137.0, f = 1.0 / 298.257223563;
    const double e2 = f * (2.0 - f), e = sqrt(e2), b2 = a * a * (1.0 - e2);
    double q[2];
    double lats[2] = {lat1_deg, lat2_deg};
    for (int i = 0; i < 2; i++) {
        double s = sin(lats[i] * M_PI / 180.0);
        q[i] = s / (1.0 - e2 * s * s) + log((1.0 + e * s) / (1.0 - e * s)) / (2.0 * e);
    }
    return 0.5 * b2 * (dlon_deg * M_PI / 180.0) * (q[1] - q[0]);
}

static void test_area_m2_is_geodesic_and_subtracts_holes(void **state) {
    (void)state;
    struct geo_areas *set = geo_areas_new();
    assert_non_null(set);
    assert_int_equal(geo_areas_add_wkt(set, 1, 0, square_with_hole), GEO_OK);
    assert_int_equal(geo_areas_add_wkt(set, 2, 0,
        "POLYGON((120.40 36.15,120.42 36.15,120.42 36.17,120.40 36.17,120.40 36.15))"), GEO_OK);
    double got = 0.0, shell = 0.0;
    assert_int_equal(geo_areas_area_m2(set, 1, &got), GEO_OK);
    assert_int_equal(geo_areas_area_m2(set, 2, &shell), GEO_OK);
    double want_shell = zone_area_m2(36.15, 36.17, 0.02);
    double want = want_shell - zone_area_m2(36.155, 36.165, 0.01) +
                  zone_area_m2(36.15, 36.16, 0.01);
    printf("# 0.02 degree square at 36.16 N: %.1f m2, zone formula %.1f m2\n", shell,
           want_shell);
    assert_true(fabs(shell - want_shell) <= 1e-4 * want_shell);
    assert_true(fabs(got - want) <= 1e-4 * want);
    assert_int_equal(geo_areas_area_m2(set, 3, &got), GEO_ERR_NOTFOUND);
    geo_areas_free(set);
}

/* Reads a geometry's vertices, in ring order, into xy (pairs); returns their
 * count. */
static size_t vertices(GEOSContextHandle_t ctx, const GEOSGeometry *g, double *xy, size_t max) {
    size_t n = 0;
    for (int i = 0; i < GEOSGetNumGeometries_r(ctx, g); i++) {
        const GEOSGeometry *poly = GEOSGetGeometryN_r(ctx, g, i);
        for (int r = -1; r < GEOSGetNumInteriorRings_r(ctx, poly); r++) {
            const GEOSGeometry *ring = r < 0 ? GEOSGetExteriorRing_r(ctx, poly)
                                             : GEOSGetInteriorRingN_r(ctx, poly, r);
            const GEOSCoordSequence *seq = GEOSGeom_getCoordSeq_r(ctx, ring);
            unsigned size = 0;
            assert_true(GEOSCoordSeq_getSize_r(ctx, seq, &size));
            for (unsigned k = 0; k < size && n < max; k++, n++) {
                assert_true(GEOSCoordSeq_getXY_r(ctx, seq, k, &xy[2 * n], &xy[2 * n + 1]));
            }
        }
    }
    return n;
}

static void test_geojson_is_the_polygon_in_each_crs(void **state) {
    (void)state;
    static const char *const shapes[] = {
        "POLYGON((120.40 36.15,120.42 36.15,120.42 36.17,120.40 36.17,120.40 36.15),"
        "(120.405 36.155,120.415 36.155,120.415 36.165,120.405 36.165,120.405 36.155))",
        "MULTIPOLYGON(((120.40 36.15,120.42 36.15,120.41 36.17,120.40 36.15)),"
        "((120.45 36.20,120.46 36.20,120.46 36.21,120.45 36.20)))",
    };
    static const char *const types[] = {"\"Polygon\"", "\"MultiPolygon\""};
    struct geo_areas *set = geo_areas_new();
    assert_non_null(set);
    GEOSContextHandle_t ctx = GEOS_init_r();
    GEOSWKTReader *wkt = GEOSWKTReader_create_r(ctx);
    GEOSGeoJSONReader *json = GEOSGeoJSONReader_create_r(ctx);
    for (uint32_t h = 0; h < 2; h++) {
        assert_int_equal(geo_areas_add_wkt(set, h, 0, shapes[h]), GEO_OK);
        GEOSGeometry *want = GEOSWKTReader_read_r(ctx, wkt, shapes[h]);
        double want_xy[64], got_xy[64];
        size_t n_want = vertices(ctx, want, want_xy, 32);
        for (int crs = GEO_CRS_WGS84; crs <= GEO_CRS_BD09; crs++) {
            char *text = NULL;
            assert_int_equal(geo_areas_geojson(set, h, (enum geo_crs)crs, &text), GEO_OK);
            assert_non_null(strstr(text, types[h]));
            GEOSGeometry *got = GEOSGeoJSONReader_readGeometry_r(ctx, json, text);
            assert_non_null(got);
            assert_int_equal(GEOSGeomTypeId_r(ctx, got), GEOSGeomTypeId_r(ctx, want));
            assert_int_equal(vertices(ctx, got, got_xy, 32), n_want);
            /* Every vertex is the WGS84 one converted, in [lon, lat] order. */
            for (size_t k = 0; k < n_want; k++) {
                struct geo_point p = {.lat_deg = want_xy[2 * k + 1], .lon_deg = want_xy[2 * k]};
                struct geo_point q;
                assert_int_equal(geo_crs_from_wgs84((enum geo_crs)crs, p, &q), GEO_OK);
                assert_true(fabs(got_xy[2 * k] - q.lon_deg) < 1e-12);
                assert_true(fabs(got_xy[2 * k + 1] - q.lat_deg) < 1e-12);
            }
            GEOSGeom_destroy_r(ctx, got);
            free(text);
        }
        GEOSGeom_destroy_r(ctx, want);
    }
    char *text = (char *)"untouched";
    assert_int_equal(geo_areas_geojson(set, 9, GEO_CRS_WGS84, &text), GEO_ERR_NOTFOUND);
    assert_null(text);
    assert_int_equal(geo_areas_geojson(set, 0, (enum geo_crs)7, &text), GEO_ERR_ARG);
    assert_int_equal(geo_areas_geojson(set, 0, GEO_CRS_WGS84, NULL), GEO_ERR_ARG);
    GEOSGeoJSONReader_destroy_r(ctx, json);
    GEOSWKTReader_destroy_r(ctx, wkt);
    GEOS_finish_r(ctx);
    geo_areas_free(set);
}

static void test_bad_geometry_is_refused_and_leaves_the_set_unchanged(void **state) {
    (void)state;
    struct geo_areas *set = geo_areas_new();
    assert_non_null(set);
    const char *ok = "POLYGON((120.4 36.1,120.5 36.1,120.5 36.2,120.4 36.1))";
    assert_int_equal(geo_areas_add_wkt(set, 1, 0, ok), GEO_OK);
    assert_int_equal(geo_areas_add_wkt(set, 2, 0, "POLYGON((120.4 36.1,120.5 36.1"),
                     GEO_ERR_GEOS);
    assert_true(strlen(geo_areas_last_error(set)) > 0);
    assert_int_equal(geo_areas_add_wkt(set, 2, 0, "not wkt at all"), GEO_ERR_GEOS);
    assert_int_equal(geo_areas_add_wkt(set, 2, 0, ""), GEO_ERR_GEOS);
    /* A bow tie: its ring crosses itself. */
    assert_int_equal(geo_areas_add_wkt(set, 2, 0, "POLYGON((0 0,1 1,1 0,0 1,0 0))"),
                     GEO_ERR_GEOS);
    assert_int_equal(geo_areas_add_wkt(set, 2, 0, "POLYGON EMPTY"), GEO_ERR_GEOS);
    assert_int_equal(geo_areas_add_wkt(set, 2, 0, "POINT(120.4 36.1)"), GEO_ERR_ARG);
    assert_int_equal(geo_areas_add_wkt(set, 2, 0, "LINESTRING(0 0,1 1)"), GEO_ERR_ARG);
    /* Latitude first by mistake puts y at 120. */
    assert_int_equal(geo_areas_add_wkt(set, 2, 0, "POLYGON((36.1 120.4,36.2 120.4,"
                                                  "36.2 120.5,36.1 120.4))"), GEO_ERR_ARG);
    assert_int_equal(geo_areas_add_wkt(set, 1, 0, ok), GEO_ERR_ARG);  /* duplicate */
    assert_int_equal(geo_areas_add_wkt(set, 2, 32, ok), GEO_ERR_ARG); /* kind */
    assert_int_equal(geo_areas_add_wkt(set, 2, 0, NULL), GEO_ERR_ARG);
    static const unsigned char junk[] = {1, 3, 0, 0, 0, 1, 0, 0, 0, 255, 255, 255, 255};
    assert_int_equal(geo_areas_add_wkb(set, 2, 0, junk, sizeof junk), GEO_ERR_GEOS);
    assert_int_equal(geo_areas_add_wkb(set, 2, 0, junk, 0), GEO_ERR_GEOS);
    assert_int_equal(geo_areas_count(set), 1);
    struct geo_area_bounds b;
    assert_int_equal(geo_areas_bounds(set, 2, &b), GEO_ERR_NOTFOUND);
    assert_int_equal(geo_areas_build(set), GEO_OK);
    size_t n = 0;
    uint32_t got[2];
    assert_int_equal(geo_areas_containing(set, (struct geo_point){36.11, 120.49}, 1, got, 2, &n),
                     GEO_OK);
    assert_int_equal(n, 1);
    assert_int_equal(got[0], 1);
    geo_areas_free(set);
}

static void test_queries_before_build_are_refused(void **state) {
    (void)state;
    struct geo_areas *set = geo_areas_new();
    assert_non_null(set);
    struct geo_point p = {36.15, 120.45};
    uint32_t got[2];
    size_t n = 0;
    bool inside = false;
    assert_int_equal(geo_areas_containing(set, p, 1, got, 2, &n), GEO_ERR_ARG);
    assert_int_equal(geo_areas_add_wkt(set, 1, 0,
        "POLYGON((120.4 36.1,120.5 36.1,120.5 36.2,120.4 36.2,120.4 36.1))"), GEO_OK);
    assert_int_equal(geo_areas_contains(set, 1, p, &inside), GEO_ERR_ARG);
    assert_int_equal(geo_areas_build(set), GEO_OK);
    assert_int_equal(geo_areas_contains(set, 1, p, &inside), GEO_OK);
    assert_true(inside);
    assert_int_equal(geo_areas_contains(set, 2, p, &inside), GEO_ERR_NOTFOUND);
    assert_int_equal(geo_areas_contains(set, 1, (struct geo_point){NAN, 0.0}, &inside),
                     GEO_ERR_ARG);
    /* Adding after a build unbuilds until the next build, which sees both. */
    assert_int_equal(geo_areas_add_wkt(set, 2, 1,
        "POLYGON((120.44 36.14,120.46 36.14,120.46 36.16,120.44 36.16,120.44 36.14))"), GEO_OK);
    assert_int_equal(geo_areas_containing(set, p, 3, got, 2, &n), GEO_ERR_ARG);
    assert_int_equal(geo_areas_build(set), GEO_OK);
    assert_int_equal(geo_areas_containing(set, p, 3, got, 2, &n), GEO_OK);
    assert_int_equal(n, 2);
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 2);
    geo_areas_free(set);
}

static void test_empty_set_builds_and_finds_nothing(void **state) {
    (void)state;
    struct geo_areas *set = geo_areas_new();
    assert_non_null(set);
    assert_int_equal(geo_areas_build(set), GEO_OK);
    size_t n = 7;
    assert_int_equal(geo_areas_containing(set, (struct geo_point){36.2, 120.4}, UINT32_MAX,
                                          NULL, 0, &n), GEO_OK);
    assert_int_equal(n, 0);
    geo_areas_free(set);
    geo_areas_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_containing_matches_ray_casting_oracle),
        cmocka_unit_test(test_bounds_hold_every_inside_point),
        cmocka_unit_test(test_points_in_a_hole_are_outside_and_boundaries_inside),
        cmocka_unit_test(test_kind_mask_selects_kinds_and_max_truncates),
        cmocka_unit_test(test_wkb_and_wkt_answer_alike),
        cmocka_unit_test(test_area_m2_is_geodesic_and_subtracts_holes),
        cmocka_unit_test(test_geojson_is_the_polygon_in_each_crs),
        cmocka_unit_test(test_bad_geometry_is_refused_and_leaves_the_set_unchanged),
        cmocka_unit_test(test_queries_before_build_are_refused),
        cmocka_unit_test(test_empty_set_builds_and_finds_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
