/* fuzz_crs.c: libFuzzer target for the coordinate-system conversions
 * (geo/geo_crs.h).
 *
 * The first 16 bytes are read as two raw doubles (latitude, longitude), so
 * NaN, infinities, subnormals and out-of-range values reach the argument
 * checks of geo_crs_to_wgs84() and geo_crs_from_wgs84(): both must return 0
 * with a valid point or GEO_ERR_ARG with *out untouched. The next 8 bytes are
 * two fractions that place a point inside the mainland box with a 0.1 degree
 * margin (GCJ-02 moves a point by at most about 0.01 degree, so the box test
 * cannot flip during a round trip); there every WGS84 -> X -> WGS84 and
 * X -> WGS84 -> X round trip must come back within 0.01 m. The whole input, as
 * a string, also goes to geo_crs_parse(). */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_check.h"
#include "geo_crs.h"

#define ROUND_TRIP_TOLERANCE_M 0.01
#define METRES_PER_DEG 111320.0 /* on the equator; a bound for the check below */

/* The box of geo_crs_is_in_china(), less a 0.1 degree margin. */
#define BOX_MIN_LAT 0.9293
#define BOX_MAX_LAT 55.7271
#define BOX_MIN_LON 72.104
#define BOX_MAX_LON 137.7347

static const enum geo_crs all_crs[] = {GEO_CRS_WGS84, GEO_CRS_GCJ02, GEO_CRS_BD09};

/* A local flat-earth distance, accurate far beyond what the 1 cm check needs. */
static double gap_m(struct geo_point a, struct geo_point b)
{
    double dy = (a.lat_deg - b.lat_deg) * METRES_PER_DEG;
    double dx = (a.lon_deg - b.lon_deg) * METRES_PER_DEG * cos(a.lat_deg * M_PI / 180.0);
    return sqrt(dx * dx + dy * dy);
}

static bool same_point(struct geo_point a, struct geo_point b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Any bit pattern: either a valid answer or GEO_ERR_ARG and no write. */
static void check_any_point(struct geo_point p)
{
    const struct geo_point sentinel = {1234.5, -9876.5};
    for (size_t i = 0; i < sizeof all_crs / sizeof all_crs[0]; i++) {
        struct geo_point out = sentinel;
        int rc = geo_crs_to_wgs84(all_crs[i], p, &out);
        CHECK(rc == GEO_OK || rc == GEO_ERR_ARG);
        CHECK(rc == GEO_OK ? geo_point_is_valid(out) : same_point(out, sentinel));
        if (!geo_point_is_valid(p)) {
            CHECK(rc == GEO_ERR_ARG);
        }

        out = sentinel;
        rc = geo_crs_from_wgs84(all_crs[i], p, &out);
        CHECK(rc == GEO_OK || rc == GEO_ERR_ARG);
        CHECK(rc == GEO_OK ? geo_point_is_valid(out) : same_point(out, sentinel));
        if (!geo_point_is_valid(p)) {
            CHECK(rc == GEO_ERR_ARG);
        }
    }
    /* WGS84 to WGS84 is the identity for every valid point. */
    if (geo_point_is_valid(p)) {
        struct geo_point out;
        CHECK(geo_crs_to_wgs84(GEO_CRS_WGS84, p, &out) == GEO_OK && same_point(out, p));
        CHECK(geo_crs_from_wgs84(GEO_CRS_WGS84, p, &out) == GEO_OK && same_point(out, p));
    }
    /* Outside the box GCJ-02 is WGS84. */
    if (geo_point_is_valid(p) && !geo_crs_is_in_china(p)) {
        CHECK(same_point(geo_crs_wgs84_to_gcj02(p), p));
        CHECK(same_point(geo_crs_gcj02_to_wgs84(p), p));
    }
    /* Out-of-enum systems are refused. */
    struct geo_point out = sentinel;
    CHECK(geo_crs_to_wgs84((enum geo_crs)3, p, &out) == GEO_ERR_ARG);
    CHECK(geo_crs_from_wgs84((enum geo_crs)-1, p, &out) == GEO_ERR_ARG);
    CHECK(same_point(out, sentinel));
}

static void check_round_trips(struct geo_point p)
{
    CHECK(geo_crs_is_in_china(p));
    for (size_t i = 1; i < sizeof all_crs / sizeof all_crs[0]; i++) {
        struct geo_point there, back;
        CHECK(geo_crs_from_wgs84(all_crs[i], p, &there) == GEO_OK);
        CHECK(geo_crs_to_wgs84(all_crs[i], there, &back) == GEO_OK);
        CHECK(gap_m(p, back) <= ROUND_TRIP_TOLERANCE_M);
        /* And p read as a point given in system i. */
        CHECK(geo_crs_to_wgs84(all_crs[i], p, &there) == GEO_OK);
        CHECK(geo_crs_from_wgs84(all_crs[i], there, &back) == GEO_OK);
        CHECK(gap_m(p, back) <= ROUND_TRIP_TOLERANCE_M);
    }
}

static void check_name(const uint8_t *data, size_t size)
{
    char *name = malloc(size + 1);
    if (name == NULL) {
        return;
    }
    memcpy(name, data, size);
    name[size] = '\0';
    enum geo_crs crs = (enum geo_crs)77;
    if (geo_crs_parse(name, &crs) == GEO_OK) {
        const char *canonical = geo_crs_name(crs);
        CHECK(canonical != NULL && strcasecmp(canonical, name) == 0);
    } else {
        CHECK(crs == (enum geo_crs)77);
    }
    free(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t bytes[24] = {0};
    memcpy(bytes, data, size < sizeof bytes ? size : sizeof bytes);

    struct geo_point raw;
    memcpy(&raw.lat_deg, bytes, 8);
    memcpy(&raw.lon_deg, bytes + 8, 8);
    check_any_point(raw);

    uint32_t u_lat, u_lon;
    memcpy(&u_lat, bytes + 16, 4);
    memcpy(&u_lon, bytes + 20, 4);
    struct geo_point boxed = {
        BOX_MIN_LAT + (BOX_MAX_LAT - BOX_MIN_LAT) * (u_lat / 4294967295.0),
        BOX_MIN_LON + (BOX_MAX_LON - BOX_MIN_LON) * (u_lon / 4294967295.0),
    };
    check_any_point(boxed);
    check_round_trips(boxed);

    check_name(data, size);
    return 0;
}
