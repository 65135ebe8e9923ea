/* geo_distance.c: WGS84 geodesic distances, fast where provably exact enough,
 * PROJ's geod_inverse (Karney) everywhere else.
 *
 * geod_inverse costs about 0.5 us a call here, and the spatial index calls
 * geo_distance_m() for every candidate it cannot prune, so the common short
 * distance takes a cheaper path that agrees with PROJ to far better than 1 mm.
 *
 * The fast path. A geodesic is a space curve whose curvature is the normal
 * curvature of the ellipsoid in its direction (its geodesic curvature is zero).
 * For any smooth curve, expanding about the midpoint of an arc of length s gives
 * chord c = s - k^2 s^3 / 24 + O(s^5), k the curvature at the midpoint; the odd
 * terms cancel by symmetry. A circle of radius R = 1/k has the same chord to that
 * order, so s = 2R asin(c / 2R) is exact up to O(s^5) terms, which involve the
 * change of k along the arc (of relative size e^2 = 0.0067) and the torsion of
 * the geodesic (also of order e^2), never the constant part of k. Here
 *   c   is the straight-line distance between the two points in ECEF;
 *   k   is Euler's normal curvature, k = cos^2(az)/M + sin^2(az)/N, with M, N
 *       the meridional and prime-vertical radii at the mid-latitude and az the
 *       direction of the chord projected on the horizontal plane there.
 * Written with n the normalised sum of the two geodetic unit normals (the
 * midpoint's normal to second order), W = sqrt(1 - e^2 sin^2 lat_mid) and
 * 1/M - 1/N = (W/a) e^2 cos^2(lat) / (1 - e^2), Euler's formula becomes
 *   k = (W/a) (1 + e^2/(1 - e^2) * (d.z - sin(lat) d.n)^2 / |d_h|^2),
 * d the chord vector and d_h its horizontal part, with no trigonometry and no
 * division by cos(lat), so it holds at the poles, where M = N, and across the
 * antimeridian, where ECEF has no seam.
 *
 * Numbers, over random pairs at every latitude, poles and antimeridian
 * included: below 50 km the worst difference from PROJ is about 1e-8 m, which
 * is the rounding of ECEF coordinates near 6.4e6 m; it grows as s^5, to 3e-7 m
 * at 100 km, 8e-6 m at 200 km, 8e-4 m at 500 km and 2.6e-2 m at 1000 km
 * (tests/test_geo_distance.c measures the bands up to 100 km on every run; the
 * longer ones come from running the formula without the threshold on 200000
 * pairs per band while choosing it). The fast path is used
 * for chords below GEO_FAST_CHORD_M = 100 km, a margin of more than 3000
 * against the 1 mm promise; longer pairs go to PROJ.
 *
 * geo_distance_ecef_m() is the same computation on points whose ECEF position
 * was computed once, so a caller that keeps them skips the eight sines and
 * cosines per pair that dominate the fast path; geo_distance_m() is built on
 * it, so the two agree bit for bit. Its arcsine takes arguments below 0.008
 * only, so a series to x^9 replaces libm's asin (asin_small(); 95 fewer
 * instructions and 0.02 - 0.03 us off an index query).
 *
 * The sines and cosines. The index converts about six points a query (the
 * query and the ~5 candidates that get an exact distance), and libm's sincos
 * was 1700 of the daemon's 15800 instructions a NEAREST (117 a call, the
 * input first rounded to radians). geo_sincos_deg() works in degrees: a
 * table of sin and cos of the whole degrees 0..90 as double-doubles
 * (geo_sincos_table.h, 2.9 KB, from scripts/gen-sincos-table), folded by
 * symmetry, and the angle-sum formulas with sin b and cos b - 1 of the rest
 * (|b| <= 1.5 degrees) by short series. About 70 instructions a call; within
 * 1.6 ulps of the true values (41 % of results bit-equal to libm's, the rest
 * differ by at most 3.3e-16, about the rounding of deg * pi / 180 that libm
 * saw). A Cody-Waite reduction by pi/2 in radians with Taylor series to r^17
 * was tried first: 94 instructions a call, too little gain. So was taking
 * latitude and longitude together in the two lanes of SSE2 doubles: 100
 * instructions for both angles instead of 140 (the daemon's NEAREST 266
 * fewer), but 37 ns a conversion instead of 13 in a loop and 0.1 us slower
 * index queries (the point went through the stack into a vector: store
 * forwarding stalls), so it was taken out. Measured alone, libm's path
 * converts a point in 15 ns and this one in 13 (latency 32 ns for both):
 * the gain is in instructions more than in time. Every conversion uses
 * geo_sincos_deg(), so geo_point_to_unit() and the normal of
 * geo_ecef_point_init() are equal bit for bit, and the index takes the
 * query's unit vector from the latter.
 *
 * Thread safety: the geod_geodesic PROJ needs is initialised once, under
 * pthread_once, and only read afterwards; the fast path uses only its
 * arguments. */
#include <math.h>
#include <pthread.h>

#include <geodesic.h>

#include "geo_distance.h"
#include "geo_sincos_table.h"

#define WGS84_A_M 6378137.0
#define WGS84_F (1.0 / 298.257223563)
#define WGS84_E2 (WGS84_F * (2.0 - WGS84_F))

/* Chords at or above this go to PROJ; see the opening comment. */
#define GEO_FAST_CHORD_M 100000.0

static struct geod_geodesic wgs84;
static pthread_once_t wgs84_once = PTHREAD_ONCE_INIT;

static void wgs84_init(void) {
    geod_init(&wgs84, WGS84_A_M, WGS84_F);
}

double geo_distance_reference_m(struct geo_point a, struct geo_point b) {
    pthread_once(&wgs84_once, wgs84_init);
    double s12 = 0.0;
    geod_inverse(&wgs84, a.lat_deg, a.lon_deg, b.lat_deg, b.lon_deg, &s12, NULL, NULL);
    return s12;
}

/* ---- Sine and cosine of degrees -------------------------------------------- */

/* pi/180 rounded to the nearest double. */
#define GEO_PI_OVER_180 0x1.1df46a2529d39p-6

/* Beyond the table's range: libm. Out of line, so that the common path
 * saves no registers for the call. */
__attribute__((noinline)) static void sincos_deg_libm(double deg, double *sin_out,
                                                      double *cos_out) {
    double x = deg * (M_PI / 180.0);
    *sin_out = sin(x);
    *cos_out = cos(x);
}

void geo_sincos_deg(double deg, double *sin_out, double *cos_out) {
    double a = fabs(deg);
    if (!(a <= 180.0)) {
        sincos_deg_libm(deg, sin_out, cos_out);
        return;
    }
    /* sin(180 - a) = sin a and cos(180 - a) = -cos a, and 180 - a is exact
     * for a >= 90: so a is at most 90, and no result near 0 comes from a
     * table value near 1 minus a nearly equal correction. */
    double cos_sign = 1.0;
    if (a > 90.0) {
        a = 180.0 - a;
        cos_sign = -1.0;
    }
    /* a = n + b degrees with n whole and |b| <= 1/2 (a - n is exact), except
     * that n is 0 rather than 1 and 90 rather than 89, |b| then up to 3/2:
     * sin near 1/2 degree (or cos near 89 1/2) from sin 1 minus a correction
     * of half its size was 2 ulps off, from the table's 0 and 1 it is not. */
    int n = (int)(a + 0.5);
    n = n == 1 ? 0 : n == 89 ? 90 : n;
    double b = (a - (double)n) * GEO_PI_OVER_180;
    /* sin b and cos b - 1 for |b| <= 3 pi/360: the first terms left out,
     * b^9/9! and b^10/10!, are below 2e-20 there. */
    double z = b * b;
    double sin_b = b + b * z * (-1.0 / 6.0 + z * (1.0 / 120.0 + z * (-1.0 / 5040.0)));
    double cos_b_m1 =
        z * (-0.5 + z * (1.0 / 24.0 + z * (-1.0 / 720.0 + z * (1.0 / 40320.0))));
    /* The angle sum, table value first: it carries nearly all of the result,
     * to 106 bits, and the corrections are at most 0.0088 of it. */
    const double *t = geo_sincos_table[n];
    double s = t[0] + (t[1] + (t[0] * cos_b_m1 + t[2] * sin_b));
    double c = t[2] + (t[3] + (t[2] * cos_b_m1 - t[0] * sin_b));
    *cos_out = cos_sign * c;
    *sin_out = signbit(deg) ? -s : s;
}

/* ---- Points and distances ------------------------------------------------- */

void geo_ecef_point_init(struct geo_ecef_point *out, struct geo_point p) {
    double sin_lat, cos_lat, sin_lon, cos_lon;
    geo_sincos_deg(p.lat_deg, &sin_lat, &cos_lat);
    geo_sincos_deg(p.lon_deg, &sin_lon, &cos_lon);
    double n_m = WGS84_A_M / sqrt(1.0 - WGS84_E2 * sin_lat * sin_lat);
    out->where = p;
    out->normal[0] = cos_lat * cos_lon;
    out->normal[1] = cos_lat * sin_lon;
    out->normal[2] = sin_lat;
    out->xyz_m[0] = n_m * out->normal[0];
    out->xyz_m[1] = n_m * out->normal[1];
    out->xyz_m[2] = n_m * (1.0 - WGS84_E2) * sin_lat;
}

/* asin(x) for 0 <= x <= 0.008, which is all the fast path needs: the chord
 * is below GEO_FAST_CHORD_M and k at most 1 / (a (1 - e^2)), so x is at most
 * 0.5 * 1e5 / 6335439 = 0.0079. The series to x^9; the first term left out,
 * 63/2816 x^11, is 2e-23 of x there. About 12 instructions where libm's asin
 * took 43 (5.4 calls a query). */
static inline double asin_small(double x) {
    double z = x * x;
    return x + x * z * (1.0 / 6.0 + z * (3.0 / 40.0 + z * (5.0 / 112.0 + z * (35.0 / 1152.0))));
}

double geo_distance_ecef_m(const struct geo_ecef_point *a, const struct geo_ecef_point *b) {
    const double *pa = a->xyz_m, *pb = b->xyz_m, *na = a->normal, *nb = b->normal;
    double d[3] = {pb[0] - pa[0], pb[1] - pa[1], pb[2] - pa[2]};
    double chord2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
    if (chord2 == 0.0) {
        return 0.0;
    }
    if (chord2 >= GEO_FAST_CHORD_M * GEO_FAST_CHORD_M) {
        return geo_distance_reference_m(a->where, b->where);
    }

    /* Normal at the midpoint, to second order in the separation. */
    double n[3] = {na[0] + nb[0], na[1] + nb[1], na[2] + nb[2]};
    double n_len = sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
    double sin_lat = n[2] / n_len;
    double d_up = (d[0] * n[0] + d[1] * n[1] + d[2] * n[2]) / n_len;
    double horiz2 = chord2 - d_up * d_up;
    /* cos(lat) times the northward component of the chord. */
    double d_north_cos = d[2] - sin_lat * d_up;
    double w = sqrt(1.0 - WGS84_E2 * sin_lat * sin_lat);
    double k = w / WGS84_A_M;
    if (horiz2 > 0.0) {
        k *= 1.0 + WGS84_E2 / (1.0 - WGS84_E2) * (d_north_cos * d_north_cos) / horiz2;
    }
    double chord = sqrt(chord2);
    return 2.0 / k * asin_small(0.5 * chord * k);
}

double geo_distance_m(struct geo_point a, struct geo_point b) {
    struct geo_ecef_point ea, eb;
    geo_ecef_point_init(&ea, a);
    geo_ecef_point_init(&eb, b);
    return geo_distance_ecef_m(&ea, &eb);
}

void geo_point_to_unit(struct geo_point p, double out[3]) {
    double sin_lat, cos_lat, sin_lon, cos_lon;
    geo_sincos_deg(p.lat_deg, &sin_lat, &cos_lat);
    geo_sincos_deg(p.lon_deg, &sin_lon, &cos_lon);
    out[0] = cos_lat * cos_lon;
    out[1] = cos_lat * sin_lon;
    out[2] = sin_lat;
}
