/* geo_crs.h: the three coordinate systems of Chinese maps, and conversions.
 *
 * Mobile SDKs in mainland China hand out GCJ-02 (Amap, Tencent) or BD-09
 * (Baidu) instead of WGS84. Everything nearestd measures and stores is WGS84,
 * so a position arriving in another system is converted here first.
 * GCJ-02 is WGS84 shifted by a published, deliberately irregular formula (a few
 * hundred metres; about 440 m east in Licang); BD-09 is GCJ-02 with a further
 * small rotation and shift. Outside the usual mainland box (lon 72.004 -
 * 137.8347, lat 0.8293 - 55.8271) GCJ-02 equals WGS84; BD-09's own shift
 * applies everywhere.
 *
 * All functions are pure and thread-safe. Points are passed by value. */
#ifndef NEARESTD_GEO_CRS_H
#define NEARESTD_GEO_CRS_H

#include <stdbool.h>
#include <stdint.h>

#include "geo.h"

enum geo_crs {
    GEO_CRS_WGS84 = 0, /* GPS, OpenStreetMap, everything nearestd stores */
    GEO_CRS_GCJ02 = 1, /* "Mars coordinates": Amap, Tencent, Apple Maps in China */
    GEO_CRS_BD09 = 2,  /* Baidu */
};

/* Sets *out to the system named "wgs84", "gcj02" or "bd09" (ASCII case is
 * ignored). Returns 0, or GEO_ERR_ARG for NULL or any other name, leaving *out
 * unchanged. */
int geo_crs_parse(const char *name, enum geo_crs *out);

/* Returns the lower-case name that geo_crs_parse() accepts ("wgs84", "gcj02",
 * "bd09"), a static string; NULL for a value outside the enum. */
const char *geo_crs_name(enum geo_crs crs);

/* Returns true when p lies in the crude mainland box inside which GCJ-02
 * differs from WGS84. The same box is tested on the WGS84 point going forward
 * and on the GCJ-02 point going back. */
bool geo_crs_is_in_china(struct geo_point p);

/* The published forward formula (Krasovsky ellipsoid a = 6378245.0,
 * ee = 0.00669342162296594323). Outside the box, returns p unchanged. */
struct geo_point geo_crs_wgs84_to_gcj02(struct geo_point p);

/* The inverse of geo_crs_wgs84_to_gcj02(), found by iterating the forward
 * formula until it maps the result back onto p to within 1e-10 degrees (about
 * 1e-5 m), not the common one-step approximation (which is off by metres).
 * Outside the box, returns p unchanged. */
struct geo_point geo_crs_gcj02_to_wgs84(struct geo_point p);

/* Baidu's forward formula from GCJ-02 (x_pi = pi * 3000 / 180). */
struct geo_point geo_crs_gcj02_to_bd09(struct geo_point p);

/* The inverse of geo_crs_gcj02_to_bd09(), iterated like the GCJ-02 inverse
 * (the published one-step inverse is off by up to about 0.25 m). */
struct geo_point geo_crs_bd09_to_gcj02(struct geo_point p);

/* Converts p, given in system `from`, to WGS84 in *out.
 * Returns 0; GEO_ERR_ARG, leaving *out unchanged, when `from` is not a
 * geo_crs, p is not geo_point_is_valid(), or the result would not be (a BD-09
 * point within a few hundred metres of the antimeridian or a pole). */
int geo_crs_to_wgs84(enum geo_crs from, struct geo_point p, struct geo_point *out);

/* Converts the WGS84 point p to system `to` in *out. Errors as
 * geo_crs_to_wgs84(). */
int geo_crs_from_wgs84(enum geo_crs to, struct geo_point p, struct geo_point *out);

/* Sets *e6_out to deg in whole microdegrees, rounded exactly as printf's
 * "%.6f" rounds deg (the exact binary value, ties to even), so that a caller
 * printing a converted position with six decimals can print the integer
 * instead: WGS84 positions come from the catalogue on the microdegree grid,
 * converted ones do not, and printf was half the cost of a request in GCJ-02.
 * Returns false, leaving *e6_out unchanged, for NaN, for |deg| > 180, and for
 * a negative deg that rounds to zero (printf writes "-0.000000", which no
 * integer says). */
bool geo_crs_deg_to_e6(double deg, int32_t *e6_out);

#endif
