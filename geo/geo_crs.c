/* geo_crs.c: WGS84 <-> GCJ-02 <-> BD-09, written from the published formulas.
 *
 * The forward GCJ-02 formula shifts a WGS84 position by a few hundred metres
 * through sums of sines, scaled by the radii of the Krasovsky ellipsoid. It has
 * no closed-form inverse. The one-step inverse found in many libraries,
 * wgs = gcj - (fwd(gcj) - gcj), is off by up to a few metres, because the
 * shift changes by about 2e-3 degree per degree across China. Iterating
 * w += gcj - fwd(w) contracts by that same factor, four to five evaluations
 * to the 1e-10 degree (1e-5 m) tolerance; Newton's method, with derivatives
 * from the cosines that come with the sines, takes three. GEO_CRS_MAX_STEPS
 * bounds the loop regardless. BD-09's inverse is the plain iteration from its
 * published one-step inverse, which is off by up to about 0.25 m.
 *
 * Cost. A GCJ-02 request converts the query point back (the inverse, four
 * to five evaluations) and five answers forward, and the published formula
 * spends twelve sin() calls and a sin and cos of the latitude on each
 * evaluation: about 130 libm calls a request, 10,600 instructions with the
 * arithmetic around them, twice the index search. Its ten distinct sines are
 * all of multiples of 3x and 3y degrees (x = lon - 105, y = lat - 35), so
 * here each axis takes one geo_sincos_deg() and the multiples come from
 * double- and triple-angle formulas: three sincos an evaluation, about 450
 * instructions in all instead of 1,150, within 3e-14 degrees of the
 * published code (tests/test_geo_crs.c keeps it as the model). BD-09 drops
 * atan2: its small rotation is applied as one.
 *
 * Inside the iteration the forward formula is applied without the mainland-box
 * test, so a GCJ-02 point just inside the box cannot flip between the two
 * branches near the edge. */
#include <math.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "geo_crs.h"
#include "geo_distance.h"

#define KRASOVSKY_A_M 6378245.0
#define KRASOVSKY_EE 0.00669342162296594323
#define GEO_CRS_TOLERANCE_DEG 1e-10
#define GEO_CRS_MAX_STEPS 30

/* ---- The published GCJ-02 formula ------------------------------------- */

/* The sine and cosine of one angle. */
struct sin_cos {
    double s, c;
};

/* The angle doubled, tripled, and the sum of two angles. Each uses both the
 * sine and the cosine, so an error in either grows only in proportion to the
 * angle (about 4e-14 at the largest multiple, 360, against 1e-9 degrees of
 * tolerance measured in the formula's 13-metre terms). */
static inline struct sin_cos sc_double(struct sin_cos a) {
    return (struct sin_cos){2.0 * a.s * a.c, (a.c - a.s) * (a.c + a.s)};
}

static inline struct sin_cos sc_triple(struct sin_cos a) {
    double s2 = a.s * a.s, c2 = a.c * a.c;
    return (struct sin_cos){a.s * (3.0 * c2 - s2), a.c * (c2 - 3.0 * s2)};
}

static inline struct sin_cos sc_add(struct sin_cos a, struct sin_cos b) {
    return (struct sin_cos){a.s * b.c + a.c * b.s, a.c * b.c - a.s * b.s};
}

/* The formula's sines of one offset v (x = lon - 105 or y = lat - 35):
 * sin(v pi k / 60) for k = 2, 5, 20, 60, 120, 360, that is sin(v pi / 30),
 * sin(v pi / 12), sin(v pi / 3), sin(v pi), sin(2 v pi) and sin(6 v pi), and
 * their cosines for the inverse's derivatives. All are multiples of 3v
 * degrees, which stays within +-105 over the box, inside geo_sincos_deg()'s
 * fast range: one sincos and a few products instead of six calls to sin(). */
struct gcj_waves {
    struct sin_cos k2, k5, k20, k60, k120, k360;
};

static inline __attribute__((always_inline)) struct gcj_waves gcj_waves_of(double v) {
    struct gcj_waves w;
    struct sin_cos t;
    geo_sincos_deg(3.0 * v, &t.s, &t.c);
    w.k2 = sc_double(t);
    w.k5 = sc_add(sc_double(w.k2), t);
    w.k20 = sc_double(sc_double(w.k5));
    w.k60 = sc_triple(w.k20);
    w.k120 = sc_double(w.k60);
    w.k360 = sc_triple(w.k120);
    return w;
}

/* Degrees per metre of the formula's shifts, apart from the factors that
 * depend on latitude: 180 / (a (1 - ee) pi) northward, 180 / (a pi) eastward. */
#define GCJ_DEG_PER_M_LAT (180.0 / (KRASOVSKY_A_M * (1.0 - KRASOVSKY_EE) * M_PI))
#define GCJ_DEG_PER_M_LON (180.0 / (KRASOVSKY_A_M * M_PI))
#define RAD_PER_DEG (M_PI / 180.0)

/* The forward formula without the box test. The shifts keep the published
 * formula's terms, x = lon - 105, y = lat - 35 in degrees, the sums in metres
 * on the Krasovsky ellipsoid until scaled to degrees; the published code's
 * divisions (by 3 after each pair of sines, by the radii) are folded into
 * one constant factor each, which moves results by under 1e-17 degrees.
 * With `jac` not NULL, also writes the derivatives of the result, d lat / d
 * lat, d lat / d lon, d lon / d lat, d lon / d lon, leaving out the term
 * of sqrt(|x|), whose derivative is infinite at x = 0 and below 5e-6 beyond
 * |x| = 0.01 degree. (Inlined, so the forward alone computes none of it.) */
static inline __attribute__((always_inline)) struct geo_point gcj_eval(struct geo_point p,
                                                                       double jac[4]) {
    double x = p.lon_deg - 105.0, y = p.lat_deg - 35.0;
    struct gcj_waves wx = gcj_waves_of(x), wy = gcj_waves_of(y);
    double root = sqrt(fabs(x));
    double wave_x = 20.0 * wx.k360.s + 20.0 * wx.k120.s;
    double s_lat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * root;
    s_lat += (wave_x + 20.0 * wy.k60.s + 40.0 * wy.k20.s + 160.0 * wy.k5.s + 320.0 * wy.k2.s) *
             (2.0 / 3.0);
    double s_lon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * root;
    s_lon += (wave_x + 20.0 * wx.k60.s + 40.0 * wx.k20.s + 150.0 * wx.k5.s + 300.0 * wx.k2.s) *
             (2.0 / 3.0);
    double sin_lat, cos_lat;
    geo_sincos_deg(p.lat_deg, &sin_lat, &cos_lat);
    double magic = 1.0 - KRASOVSKY_EE * sin_lat * sin_lat;
    double sqrt_magic = sqrt(magic);
    double k_lat = magic * sqrt_magic * GCJ_DEG_PER_M_LAT;
    double k_lon = sqrt_magic / cos_lat * GCJ_DEG_PER_M_LON;
    if (jac != NULL) {
        /* d sin(k v pi / 60) / dv = (k pi / 60) cos(k v pi / 60). */
        const double u = M_PI / 60.0 * (2.0 / 3.0);
        double dwave_x = 20.0 * 360.0 * u * wx.k360.c + 20.0 * 120.0 * u * wx.k120.c;
        double ds_lat_dx = 2.0 + 0.1 * y + dwave_x;
        double ds_lat_dy = 3.0 + 0.4 * y + 0.1 * x + 20.0 * 60.0 * u * wy.k60.c +
                           40.0 * 20.0 * u * wy.k20.c + 160.0 * 5.0 * u * wy.k5.c +
                           320.0 * 2.0 * u * wy.k2.c;
        double ds_lon_dx = 1.0 + 0.2 * x + 0.1 * y + dwave_x + 20.0 * 60.0 * u * wx.k60.c +
                           40.0 * 20.0 * u * wx.k20.c + 150.0 * 5.0 * u * wx.k5.c +
                           300.0 * 2.0 * u * wx.k2.c;
        double ds_lon_dy = 2.0 + 0.1 * x;
        /* d magic / d lat, and the scale factors' logarithmic derivatives. */
        double dmagic = -2.0 * KRASOVSKY_EE * sin_lat * cos_lat * RAD_PER_DEG;
        double dk_lat = k_lat * 1.5 * dmagic / magic;
        double dk_lon = k_lon * (0.5 * dmagic / magic + sin_lat / cos_lat * RAD_PER_DEG);
        jac[0] = 1.0 + dk_lat * s_lat + k_lat * ds_lat_dy;
        jac[1] = k_lat * ds_lat_dx;
        jac[2] = dk_lon * s_lon + k_lon * ds_lon_dy;
        jac[3] = 1.0 + k_lon * ds_lon_dx;
    }
    return (struct geo_point){p.lat_deg + s_lat * k_lat, p.lon_deg + s_lon * k_lon};
}

static struct geo_point gcj_forward(struct geo_point p) {
    return gcj_eval(p, NULL);
}

/* Solves gcj_forward(x) = target for x by Newton's method from x = target:
 * the first step lands within about 5e-7 degrees, the second within 1e-14,
 * and the third evaluation confirms it (four to five steps of the plain
 * iteration x += target - forward(x) did the same). A step whose
 * derivatives are unusable (a zero determinant) is the plain one. */
static struct geo_point gcj_invert(struct geo_point target) {
    struct geo_point x = target;
    for (int step = 0; step < GEO_CRS_MAX_STEPS; step++) {
        double jac[4];
        struct geo_point f = gcj_eval(x, jac);
        double r_lat = target.lat_deg - f.lat_deg;
        double r_lon = target.lon_deg - f.lon_deg;
        if (fabs(r_lat) < GEO_CRS_TOLERANCE_DEG && fabs(r_lon) < GEO_CRS_TOLERANCE_DEG) {
            x.lat_deg += r_lat;
            x.lon_deg += r_lon;
            break;
        }
        double det = jac[0] * jac[3] - jac[1] * jac[2];
        if (isfinite(det) && det != 0.0) {
            double r = (jac[3] * r_lat - jac[1] * r_lon) / det;
            r_lon = (jac[0] * r_lon - jac[2] * r_lat) / det;
            r_lat = r;
        }
        x.lat_deg += r_lat;
        x.lon_deg += r_lon;
    }
    return x;
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
    return gcj_invert(p);
}

/* ---- BD-09 ------------------------------------------------------------ */

/* sin and cos of v x_pi radians, that is of 3000 v degrees, reduced by whole
 * turns into geo_sincos_deg()'s fast range. 3000 v rounds as v x_pi did;
 * the subtraction of whole turns is then exact. */
static struct sin_cos bd_sincos(double v) {
    double deg = 3000.0 * v;
    double turns = (deg * (1.0 / 360.0) + 0x1.8p52) - 0x1.8p52; /* nearest integer */
    struct sin_cos r;
    geo_sincos_deg(deg - 360.0 * turns, &r.s, &r.c);
    return r;
}

/* The published formula's step: the point (x, y) = (lon, lat) moved to
 * radius z = r + dz and angle theta = atan2(y, x) + eps. With r = |(x, y)|,
 * z sin(theta) = (z / r) (y cos eps + x sin eps), and the same for the cosine,
 * so neither atan2 nor a sine of theta is needed; |eps| <= 3e-6, where two
 * terms of each series are exact to the last bit. At the origin, where
 * atan2 decides the angle alone, the published form is kept. */
static struct geo_point bd_move(double x, double y, double dz, double eps) {
    double r = sqrt(x * x + y * y);
    if (!(r >= 1e-100)) {
        double z = r + dz, theta = atan2(y, x) + eps;
        return (struct geo_point){z * sin(theta), z * cos(theta)};
    }
    double sin_eps = eps - eps * eps * eps * (1.0 / 6.0);
    double cos_eps = 1.0 - eps * eps * 0.5;
    double scale = (r + dz) / r;
    return (struct geo_point){scale * (y * cos_eps + x * sin_eps),
                              scale * (x * cos_eps - y * sin_eps)};
}

struct geo_point geo_crs_gcj02_to_bd09(struct geo_point p) {
    double x = p.lon_deg, y = p.lat_deg;
    struct geo_point m = bd_move(x, y, 0.00002 * bd_sincos(y).s, 0.000003 * bd_sincos(x).c);
    return (struct geo_point){m.lat_deg + 0.006, m.lon_deg + 0.0065};
}

struct geo_point geo_crs_bd09_to_gcj02(struct geo_point p) {
    /* The published one-step inverse, then refinement. */
    double x = p.lon_deg - 0.0065, y = p.lat_deg - 0.006;
    struct geo_point guess =
        bd_move(x, y, -0.00002 * bd_sincos(y).s, -0.000003 * bd_sincos(x).c);
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

/* ---- Six decimals ---------------------------------------------------------- */

/* geo_crs_deg_to_e6() for the rare deg whose product with 10^6, rounded, lies
 * within 2^-20 of a half: the exact product decides. */
__attribute__((noinline)) static bool deg_to_e6_exact(double deg, int32_t *e6_out) {
    /* deg is m / 2^shift with m < 2^53 and, as deg < 2^8, shift >= 45, so
     * deg * 10^6 is m * 10^6 / 2^shift exactly, m * 10^6 < 2^73: its integer
     * part and the exact remainder decide the rounding, as in printf. */
    uint64_t bits;
    memcpy(&bits, &deg, sizeof bits);
    bool negative = (bits >> 63) != 0;
    int biased_exp = (int)((bits >> 52) & 0x7ff);
    uint64_t e6 = 0; /* zero and subnormals */
    int shift = 1075 - biased_exp;
    if (biased_exp != 0 && shift <= 73) { /* beyond, deg * 10^6 < 1/2 */
        uint64_t m = (bits & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1) << 52);
        unsigned __int128 prod = (unsigned __int128)m * 1000000u;
        e6 = (uint64_t)(prod >> shift);
        unsigned __int128 rest = prod - ((unsigned __int128)e6 << shift);
        unsigned __int128 half = (unsigned __int128)1 << (shift - 1);
        if (rest > half || (rest == half && (e6 & 1) != 0)) {
            e6++;
        }
    }
    if (negative && e6 == 0) {
        return false;
    }
    *e6_out = negative ? -(int32_t)e6 : (int32_t)e6;
    return true;
}

bool geo_crs_deg_to_e6(double deg, int32_t *e6_out) {
    if (!(fabs(deg) <= 180.0)) {
        return false;
    }
    /* |t| < 2^28, so t is within 2^-26 of the exact product, and n (t
     * rounded to an integer by the 1.5 * 2^52 trick) is the exact product's
     * nearest integer unless t lies near a half, or is a zero printf would
     * sign. */
    double t = deg * 1e6;
    double n = (t + 0x1.8p52) - 0x1.8p52;
    double frac = t - n;
    if (fabs(fabs(frac) - 0.5) > 0x1p-20 && (n != 0.0 || !signbit(deg))) {
        *e6_out = (int32_t)n;
        return true;
    }
    return deg_to_e6_exact(deg, e6_out);
}
