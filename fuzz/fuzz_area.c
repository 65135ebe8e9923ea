/* fuzz_area.c: libFuzzer target for named areas (geo/geo_area.h) on fuzzed WKT.
 *
 * The input is split at "\n" into up to FUZZ_MAX_AREAS WKT texts, added as
 * areas with handles 0, 1, 2, ... and kinds handle % GEO_AREA_MAX_KINDS. Each
 * add must return one of its documented codes and leave the count right; a
 * second add of an existing handle must be refused. After geo_areas_build(),
 * points on a 5 x 5 grid over each area's envelope (widened by a quarter) are
 * asked for, and geo_areas_containing() must agree with geo_areas_contains()
 * for every area, list handles in increasing order, respect the kind mask, and
 * only ever name an area whose envelope holds the point and, for areas up to
 * two degrees across (where the header promises it), whose centre is within
 * radius_m. The Licang areas are a few kilometres across; GEOS parses the WKT,
 * so most of what this finds would be in our wrapper's error paths. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "geo_area.h"
#include "geo_distance.h"

#define FUZZ_MAX_AREAS 8
#define GRID 5
#define RADIUS_CHECK_MAX_DEG 2.0

static double clamp(double v, double lo, double hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static void check_point(struct geo_areas *set, const bool *added, size_t n_lines,
                        struct geo_point p)
{
    uint32_t out[FUZZ_MAX_AREAS + 1];
    size_t n_total = 999;
    int rc = geo_areas_containing(set, p, UINT32_MAX, out, FUZZ_MAX_AREAS + 1, &n_total);
    CHECK(rc == GEO_OK || rc == GEO_ERR_GEOS || rc == GEO_ERR_NOMEM);
    if (rc != GEO_OK) {
        return;
    }
    CHECK(n_total <= n_lines);
    for (size_t i = 0; i < n_total; i++) {
        CHECK(out[i] < n_lines && added[out[i]]);
        if (i > 0) {
            CHECK(out[i - 1] < out[i]);
        }
        struct geo_area_bounds b;
        CHECK(geo_areas_bounds(set, out[i], &b) == GEO_OK);
        CHECK(b.min_lat_deg <= p.lat_deg && p.lat_deg <= b.max_lat_deg);
        CHECK(b.min_lon_deg <= p.lon_deg && p.lon_deg <= b.max_lon_deg);
        if (b.max_lat_deg - b.min_lat_deg <= RADIUS_CHECK_MAX_DEG &&
            b.max_lon_deg - b.min_lon_deg <= RADIUS_CHECK_MAX_DEG) {
            CHECK(geo_distance_m(b.centre, p) <= b.radius_m);
        }
    }
    /* Every area, one at a time, and by its kind alone. */
    for (uint32_t h = 0; h < n_lines; h++) {
        bool listed = false;
        for (size_t i = 0; i < n_total; i++) {
            listed = listed || out[i] == h;
        }
        bool inside = !listed;
        rc = geo_areas_contains(set, h, p, &inside);
        if (!added[h]) {
            CHECK(rc == GEO_ERR_NOTFOUND);
            continue;
        }
        CHECK(rc == GEO_OK || rc == GEO_ERR_GEOS);
        if (rc == GEO_OK) {
            CHECK(inside == listed);
        }
        uint8_t kind = 255;
        CHECK(geo_areas_kind(set, h, &kind) == GEO_OK && kind == h % GEO_AREA_MAX_KINDS);
        uint32_t one[FUZZ_MAX_AREAS];
        size_t n_kind = 999;
        rc = geo_areas_containing(set, p, 1u << kind, one, FUZZ_MAX_AREAS, &n_kind);
        if (rc == GEO_OK) {
            /* Handles h and h + 32 would share a kind; FUZZ_MAX_AREAS < 32. */
            CHECK(n_kind == (listed ? 1u : 0u));
            CHECK(n_kind == 0 || one[0] == h);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    struct geo_areas *set = geo_areas_new();
    if (text == NULL || set == NULL) {
        goto done;
    }
    memcpy(text, data, size);
    text[size] = '\0';

    bool added[FUZZ_MAX_AREAS] = {false};
    size_t n_lines = 0, n_added = 0;
    char *line = text;
    while (line != NULL && n_lines < FUZZ_MAX_AREAS) {
        char *newline = strchr(line, '\n');
        if (newline != NULL) {
            *newline = '\0';
        }
        uint32_t handle = (uint32_t)n_lines;
        uint8_t kind = (uint8_t)(handle % GEO_AREA_MAX_KINDS);
        int rc = geo_areas_add_wkt(set, handle, kind, line);
        CHECK(rc == GEO_OK || rc == GEO_ERR_ARG || rc == GEO_ERR_GEOS || rc == GEO_ERR_NOMEM);
        CHECK(geo_areas_last_error(set) != NULL);
        if (rc == GEO_OK) {
            added[handle] = true;
            n_added++;
            /* Handles are unique: the same text again is refused, set unchanged. */
            CHECK(geo_areas_add_wkt(set, handle, kind, line) == GEO_ERR_ARG);
            double area_m2 = -1.0;
            CHECK(geo_areas_area_m2(set, handle, &area_m2) == GEO_OK);
            CHECK(isfinite(area_m2) && area_m2 >= 0.0);
            struct geo_area_bounds b;
            CHECK(geo_areas_bounds(set, handle, &b) == GEO_OK);
            CHECK(b.min_lat_deg <= b.max_lat_deg && b.min_lon_deg <= b.max_lon_deg);
            CHECK(b.min_lat_deg >= -90.0 && b.max_lat_deg <= 90.0);
            CHECK(b.min_lon_deg >= -180.0 && b.max_lon_deg <= 180.0);
            CHECK(b.radius_m > 0.0);
        }
        CHECK(geo_areas_count(set) == n_added);
        n_lines++;
        line = newline != NULL ? newline + 1 : NULL;
    }

    /* Queries before the build are refused. */
    size_t n_total = 0;
    struct geo_point licang = {36.17, 120.42};
    if (n_lines > 0) {
        CHECK(geo_areas_containing(set, licang, UINT32_MAX, NULL, 0, &n_total) == GEO_ERR_ARG);
    }
    int rc = geo_areas_build(set);
    CHECK(rc == GEO_OK || rc == GEO_ERR_GEOS || rc == GEO_ERR_NOMEM);
    if (rc != GEO_OK) {
        goto done;
    }
    struct geo_point nan_point = {NAN, 120.0};
    CHECK(geo_areas_containing(set, nan_point, UINT32_MAX, NULL, 0, &n_total) == GEO_ERR_ARG);
    check_point(set, added, n_lines, licang);

    for (uint32_t h = 0; h < n_lines; h++) {
        struct geo_area_bounds b;
        if (!added[h] || geo_areas_bounds(set, h, &b) != GEO_OK) {
            continue;
        }
        double pad_lat = (b.max_lat_deg - b.min_lat_deg) / 4.0;
        double pad_lon = (b.max_lon_deg - b.min_lon_deg) / 4.0;
        for (int i = 0; i < GRID; i++) {
            for (int j = 0; j < GRID; j++) {
                struct geo_point p = {
                    clamp(b.min_lat_deg - pad_lat +
                              (b.max_lat_deg - b.min_lat_deg + 2 * pad_lat) * i / (GRID - 1),
                          -90.0, 90.0),
                    clamp(b.min_lon_deg - pad_lon +
                              (b.max_lon_deg - b.min_lon_deg + 2 * pad_lon) * j / (GRID - 1),
                          -180.0, 180.0),
                };
                check_point(set, added, n_lines, p);
            }
        }
        check_point(set, added, n_lines, b.centre);
    }

done:
    geo_areas_free(set);
    free(text);
    return 0;
}
