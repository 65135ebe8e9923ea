/* geo_crs.c: WGS84 <-> GCJ-02 <-> BD-09, written from the published formulas.
 *
 * The forward GCJ-02 formula shifts a WGS84 position by a few hundred metres
 * through sums of sines, scaled by the radii of the Krasovsky ellipsoid. It has
 * no closed-form inverse. The one-step inverse found in many libraries,
 * wgs = gcj - (fwd(gcj) - gcj), is off by up to a few metres, because the
 * shift changes by about 2e-3 degree per degree across China. Iterating
 * w += gcj - fwd(w) contracts by that same factor, so each step gains two to
 * three digits; four to six steps reach the 1e-10 degree (1e-5 m) tolerance,
 * and GEO_CRS_MAX_STEPS bounds the loop regardless. BD-09's inverse is iterated
 * the same way: its published one-step inverse is off by up to about 0.25 m.
 *
 * Inside the iteration the forward formula is applied without the mainland-box
 * test, so a GCJ-02 point just inside the box cannot flip between the two
 * branches near the edge. */
#include <math.h>
#include <stddef.h>
#include <strings.h>

#include "geo_crs.h"

#define KRASOVSKY_A_M 6378245.0
#define KRASOVSKY_EE 0.00669342162296594323
#define BD_X_PI (M_PI * 3000.0 / 180.0)
#define GEO_CRS_TOLERANCE_DEG 1e-10
#define GEO_CRS_MAX_STEPS 30

/* ---- The published GCJ-02 formula ------------------------------------- */

/* x = lon - 105, y = lat - 35, both in degrees; result in the formula's own
 * units (metres on the Krasovsky ellipsoid, after scaling below). */
static double shift_lat(double x, double y) {
    double r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt(fabs(x));
    r += (20.0 * sin(6.0 * x * M_PI) + 20.0 * sin(2.0 * x * M_PI)) * 2.0 / 3.0;
    r += (20.0 * sin(y * M_PI) + 40.0 * sin(y / 3.0 * M_PI)) * 2.0 / 3.0;
    r += (160.0 * sin(y / 12.0 * M_PI) + 320.0 * sin(y * M_PI / 30.0)) * 2.0 / 3.0;
    return r;
}

static double shift_lon(double x, double y) {
    double r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt(fabs(x));
    r += (20.0 * sin(6.0 * x * M_PI) + 20.0 * sin(2.0 * x * M_PI)) * 2.0 / 3.0;
    r += (20.0 * sin(x * M_PI) + 40.0 * sin(x / 3.0 * M_PI)) * 2.0 / 3.0;
    r += (150.0 * sin(x / 12.0 * M_PI) + 300.0 * sin(x / 30.0 * M_PI)) * 2.0 / 3.0;
    return r;
}

/* The forward formula without the box test. */
static struct geo_point gcj_forward(struct geo_point p) {
    double d_lat = shift_lat(p.lon_deg - 105.0, p.lat_deg - 35.0);
    double d_lon = shift_lon(p.lon_deg - 105.0, p.lat_deg - 35.0);
    double rad_lat = p.lat_deg / 180.0 * M_PI;
    double magic = sin(rad_lat);
    magic = 1.0 - KRASOVSKY_EE * magic * magic;
    double sqrt_magic = sqrt(magic);
    d_lat = (d_lat * 180.0) /
            ((KRASOVSKY_A_M * (1.0 - KRASOVSKY_EE)) / (magic * sqrt_magic) * M_PI);
    d_lon = (d_lon * 180.0) / (KRASOVSKY_A_M / sqrt_magic * cos(rad_lat) * M_PI);
    return (struct geo_point){p.lat_deg + d_lat, p.lon_deg + d_lon};
}

/* Solves forward(x) = target for x, starting from `guess`. */
static struct geo_point invert(struct geo_point (*forward)(struct geo_point),
                               struct geo_point target, struct geo_point guess) {
    struct geo_point x = guess;
    for (int step = 0; step < GEO_CRS_MAX_STEPS; step++) {
        struct geo_point f = forward(x);
        double r_lat = target.lat_deg - f.lat_deg;
        double r_lon = target.lon_deg - f.lon_deg;
        x.lat_deg += r_lat;
        x.lon_deg += r_lon;
        if (fabs(r_lat) < GEO_CRS_TOLERANCE_DEG && fabs(r_lon) < GEO_CRS_TOLERANCE_DEG) {
            break;
        }
    }
    return x;
}

bool geo_crs_is_in_china(struct geo_point p) {
    return p.lon_deg >= 72.004 && p.lon_deg <= 137.8347 && p.lat_deg >= 0.8293 &&
           p.lat_deg <= 55.8271;
}

struct geo_point geo_crs_wgs84_to_gcj02(struct geo_point p) {
    if (!geo_crs_is_in_china(p)) {
        return p;
    }
    return gcj_forward(p);
}

struct geo_point geo_crs_gcj02_to_wgs84(struct geo_point p) {
    if (!geo_crs_is_in_china(p)) {
        return p;
    }
    return invert(gcj_forward, p, p);
}

/* ---- BD-09 ------------------------------------------------------------ */

struct geo_point geo_crs_gcj02_to_bd09(struct geo_point p) {
    double x = p.lon_deg, y = p.lat_deg;
    double z = sqrt(x * x + y * y) + 0.00002 * sin(y * BD_X_PI);
    double theta = atan2(y, x) + 0.000003 * cos(x * BD_X_PI);
    return (struct geo_point){z * sin(theta) + 0.006, z * cos(theta) + 0.0065};
}

struct geo_point geo_crs_bd09_to_gcj02(struct geo_point p) {
    /* The published one-step inverse, then refinement. */
    double x = p.lon_deg - 0.0065, y = p.lat_deg - 0.006;
    double z = sqrt(x * x + y * y) - 0.00002 * sin(y * BD_X_PI);
    double theta = atan2(y, x) - 0.000003 * cos(x * BD_X_PI);
    struct geo_point guess = {z * sin(theta), z * cos(theta)};
    return invert(geo_crs_gcj02_to_bd09, p, guess);
}

/* ---- Names and the generic entry points --------------------------------- */

static const char *const crs_names[] = {
    [GEO_CRS_WGS84] = "wgs84",
    [GEO_CRS_GCJ02] = "gcj02",
    [GEO_CRS_BD09] = "bd09",
};
#define CRS_COUNT (sizeof crs_names / sizeof crs_names[0])

int geo_crs_parse(const char *name, enum geo_crs *out) {
    if (name == NULL || out == NULL) {
        return GEO_ERR_ARG;
    }
    for (size_t i = 0; i < CRS_COUNT; i++) {
        if (strcasecmp(name, crs_names[i]) == 0) {
            *out = (enum geo_crs)i;
            return GEO_OK;
        }
    }
    return GEO_ERR_ARG;
}

const char *geo_crs_name(enum geo_crs crs) {
    if ((unsigned)crs >= CRS_COUNT) {
        return NULL;
    }
    return crs_names[crs];
}

int geo_crs_to_wgs84(enum geo_crs from, struct geo_point p, struct geo_point *out) {
    if (out == NULL || !geo_point_is_valid(p)) {
        return GEO_ERR_ARG;
    }
    struct geo_point r;
    switch (from) {
    case GEO_CRS_WGS84: r = p; break;
    case GEO_CRS_GCJ02: r = geo_crs_gcj02_to_wgs84(p); break;
    case GEO_CRS_BD09: r = geo_crs_gcj02_to_wgs84(geo_crs_bd09_to_gcj02(p)); break;
    default: return GEO_ERR_ARG;
    }
    if (!geo_point_is_valid(r)) {
        return GEO_ERR_ARG;
    }
    *out = r;
    return GEO_OK;
}

int geo_crs_from_wgs84(enum geo_crs to, struct geo_point p, struct geo_point *out) {
    if (out == NULL || !geo_point_is_valid(p)) {
        return GEO_ERR_ARG;
    }
    struct geo_point r;
    switch (to) {
    case GEO_CRS_WGS84: r = p; break;
    case GEO_CRS_GCJ02: r = geo_crs_wgs84_to_gcj02(p); break;
    case GEO_CRS_BD09: r = geo_crs_gcj02_to_bd09(geo_crs_wgs84_to_gcj02(p)); break;
    default: return GEO_ERR_ARG;
    }
    if (!geo_point_is_valid(r)) {
        return GEO_ERR_ARG;
    }
    *out = r;
    return GEO_OK;
}
