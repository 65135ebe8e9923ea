/* geo_distance.h: distances on the WGS84 ellipsoid.
 *
 * Every distance nearestd reports, or that decides an order, comes from here. */
#ifndef NEARESTD_GEO_DISTANCE_H
#define NEARESTD_GEO_DISTANCE_H

#include "geo.h"

/* Semi-minor-curvature radius a(1 - e^2) of WGS84, the smallest radius of
 * curvature anywhere on the ellipsoid. For two points mapped to the unit
 * sphere by their geodetic latitude and longitude, the geodesic distance is at
 * least GEO_MIN_RADIUS_M times the central angle between them (and the angle is
 * at least their chord). geo_index uses this as its pruning bound. */
#define GEO_MIN_RADIUS_M 6335439.327

/* The bound above holds exactly in real arithmetic; computed in doubles, both
 * of its sides carry the rounding of coordinates near 6.4e6 m, about 1e-9 m.
 * A pruning test that must never discard a true hit therefore compares
 * GEO_MIN_RADIUS_M * chord - GEO_BOUND_SLACK_M with the distance. */
#define GEO_BOUND_SLACK_M 1e-6

/* Geodesic distance in metres between two WGS84 points, computed by PROJ's
 * geod_inverse (Karney's algorithm). The reference every faster path is
 * tested against. Thread-safe. Inputs must satisfy geo_point_is_valid(). */
double geo_distance_reference_m(struct geo_point a, struct geo_point b);

/* Geodesic distance in metres between two WGS84 points; agrees with
 * geo_distance_reference_m() to within 1 mm for every pair of valid points
 * (it uses a fast formula where tests prove that, PROJ elsewhere).
 * Thread-safe. Inputs must satisfy geo_point_is_valid(). */
double geo_distance_m(struct geo_point a, struct geo_point b);

/* A point with its Earth-centred position precomputed, for callers that
 * measure from the same points many times (the index can keep one per entry).
 * Fill with geo_ecef_point_init(); the fields are read-only afterwards. */
struct geo_ecef_point {
    struct geo_point where; /* the WGS84 point itself, for the PROJ path */
    double xyz_m[3];        /* ECEF position on the ellipsoid, metres */
    double normal[3];       /* geodetic unit normal: geo_point_to_unit(), bit for bit */
};

/* Fills *out for the valid point p. */
void geo_ecef_point_init(struct geo_ecef_point *out, struct geo_point p);

/* Exactly (bit for bit) geo_distance_m(a->where, b->where), without the
 * trigonometry of converting the two points: about 4 times cheaper.
 * Thread-safe. */
double geo_distance_ecef_m(const struct geo_ecef_point *a, const struct geo_ecef_point *b);

/* Writes sin and cos of an angle in degrees. Every sine and cosine of geo/'s
 * conversions (geo_ecef_point_init(), geo_point_to_unit()) comes from here,
 * so that they agree bit for bit. For |deg| <= 180 it starts from a table of
 * the whole degrees and adds a short series for the rest: within 2 ulps of
 * the true sin(deg pi / 180) and cos (1.6 measured; tests/test_geo_distance.c
 * checks it against long double and libm), exact at multiples of 90, and
 * about 70 instructions against libm's 117 for sincos(deg * (M_PI / 180)).
 * Beyond 180, and for NaN, it returns libm's sin and cos of
 * deg * (M_PI / 180). sin is odd and cos even exactly, as in libm.
 * Thread-safe. */
void geo_sincos_deg(double deg, double *sin_out, double *cos_out);

/* Unit vector of a point's geodetic latitude and longitude on the unit sphere:
 * out[0..2] = (cos lat cos lon, cos lat sin lon, sin lat). */
void geo_point_to_unit(struct geo_point p, double out[3]);

#endif
