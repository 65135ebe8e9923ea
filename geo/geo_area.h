/* geo_area.h: named areas (polygons) and which of them contain a point.
 *
 * The areas nearestd knows are few and large next to its facilities: the
 * district, its 11 streets, about 150 residential communities, family-doctor
 * service areas and school catchments. Each is a Polygon or MultiPolygon held
 * as a GEOS prepared geometry behind a GEOS STRtree, so "which areas contain
 * this point" tests only the few areas whose bounding box holds the point.
 *
 * Coordinates. Geometry arrives as WKB or WKT with x = longitude and
 * y = latitude in WGS84 degrees, the GIS order in which SpatiaLite stores it
 * (SpatiaLite's own blob format is not WKB: select AsBinary(geom)). Points
 * passed to queries are struct geo_point, latitude first, as everywhere else.
 * Edges are straight in longitude/latitude, as GEOS and SpatiaLite draw them,
 * so an area must not cross the antimeridian (none near Qingdao does).
 * A point on an area's boundary counts as inside it, so a point on the line
 * between two streets belongs to both.
 *
 * Life cycle: geo_areas_new(), any number of geo_areas_add_wkb/_wkt(), then
 * geo_areas_build(); only then do queries answer. Adding after a build is
 * allowed and makes the set unbuilt again until the next build.
 *
 * Threads: each set has its own GEOSContextHandle_t and shares nothing mutable
 * with any other set, so different sets may be used from different threads at
 * once. Within one set, the queries (geo_areas_containing(),
 * geo_areas_contains(), geo_areas_geojson()) may run on several threads at
 * once: they take turns on a lock in the set, since GEOS fills the prepared
 * geometries' internal indexes lazily and allows one context per thread.
 * Building and adding must not overlap anything else on the set. */
#ifndef NEARESTD_GEO_AREA_H
#define NEARESTD_GEO_AREA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "geo.h"
#include "geo_crs.h"

#define GEO_AREA_MAX_KINDS 32 /* kinds are 0..31; a query selects them by bitmask */

struct geo_areas;

/* Where an area lies, for a radius query on the facility index: every point of
 * the area is in the box, and within radius_m of centre by geo_distance_m().
 * The radius is the farthest vertex plus a margin (1e-4 relative and 1 m) that
 * covers the bulge of edges drawn straight in degrees, for areas up to a few
 * hundred kilometres across. */
struct geo_area_bounds {
    double min_lat_deg, min_lon_deg; /* the envelope, WGS84 degrees */
    double max_lat_deg, max_lon_deg;
    struct geo_point centre;         /* the middle of the envelope */
    double radius_m;                 /* > 0 */
};

/* Returns a new empty set with its own GEOS context, or NULL when out of
 * memory. Caller owns it; free with geo_areas_free(). */
struct geo_areas *geo_areas_new(void);

/* Frees the set, its geometries, its tree and its GEOS context. NULL is a
 * no-op. */
void geo_areas_free(struct geo_areas *set);

/* Adds the area `handle` (the caller's id, unique in the set) of `kind`
 * (< GEO_AREA_MAX_KINDS), a Polygon or MultiPolygon given as wkb[0..wkb_bytes-1]
 * in ISO or extended WKB. The bytes are read, not kept.
 * Returns 0; GEO_ERR_ARG for NULL arguments, a kind out of range, a handle
 * already present, a geometry that is not a (Multi)Polygon, or coordinates
 * outside [-180, 180] x [-90, 90]; GEO_ERR_GEOS when GEOS cannot parse the bytes
 * or the polygon is empty or not valid (self-intersecting rings, holes outside
 * their shell: run ST_MakeValid first); GEO_ERR_NOMEM. On error the set is
 * unchanged. */
int geo_areas_add_wkb(struct geo_areas *set, uint32_t handle, uint8_t kind,
                      const unsigned char *wkb, size_t wkb_bytes);

/* As geo_areas_add_wkb(), from the NUL-terminated WKT text `wkt`, which is read,
 * not kept. */
int geo_areas_add_wkt(struct geo_areas *set, uint32_t handle, uint8_t kind, const char *wkt);

/* Number of areas added. */
size_t geo_areas_count(const struct geo_areas *set);

/* Prepares every geometry and builds the STRtree. Queries answer only after
 * this. Returns 0, GEO_ERR_GEOS, or GEO_ERR_NOMEM (the set stays unbuilt). */
int geo_areas_build(struct geo_areas *set);

/* Finds the areas whose kind bit is set in kind_mask and that contain p
 * (boundary included). Writes the first min(total, max) of their handles to
 * out[0..], smallest handle first, and the total to *n_total, which may exceed
 * max. `out` is caller-owned; it may be NULL when max is 0.
 * Returns 0; GEO_ERR_ARG when the set is not built, p is not
 * geo_point_is_valid(), or n_total is NULL; GEO_ERR_GEOS if GEOS fails;
 * GEO_ERR_NOMEM. */
int geo_areas_containing(struct geo_areas *set, struct geo_point p, uint32_t kind_mask,
                         uint32_t *out, size_t max, size_t *n_total);

/* Sets *inside to whether area `handle` contains p (boundary included): the
 * filter for "which facilities lie inside area A".
 * Returns 0; GEO_ERR_ARG when the set is not built or p is invalid;
 * GEO_ERR_NOTFOUND for an unknown handle; GEO_ERR_GEOS when the GEOS predicate
 * raised an exception (then *inside is left unchanged, never read as true). */
int geo_areas_contains(struct geo_areas *set, uint32_t handle, struct geo_point p,
                       bool *inside);

/* Writes area `handle`'s bounds (see struct geo_area_bounds) to *out. Works
 * before build. Returns 0, GEO_ERR_NOTFOUND, or GEO_ERR_ARG for NULL out. */
int geo_areas_bounds(const struct geo_areas *set, uint32_t handle,
                     struct geo_area_bounds *out);

/* Writes area `handle`'s kind to *kind. Returns 0 or GEO_ERR_NOTFOUND. */
int geo_areas_kind(const struct geo_areas *set, uint32_t handle, uint8_t *kind);

/* Writes the geodesic area of `handle` on the WGS84 ellipsoid, in square
 * metres, shells minus holes, computed by PROJ's geod_polygonarea when the
 * area was added. Returns 0 or GEO_ERR_NOTFOUND. */
int geo_areas_area_m2(const struct geo_areas *set, uint32_t handle, double *area_m2);

/* Writes area `handle`'s geometry as a GeoJSON geometry object (a Polygon or
 * MultiPolygon, [longitude, latitude] positions, no whitespace) in the
 * coordinate system `crs`, converting every vertex from WGS84 with
 * geo_crs_from_wgs84() when crs is not GEO_CRS_WGS84. *out is a new
 * NUL-terminated string; caller owns it, free with free(). Works before build.
 * Returns 0; GEO_ERR_NOTFOUND for an unknown handle; GEO_ERR_ARG for NULL out
 * or a crs outside the enum; GEO_ERR_GEOS when GEOS fails; GEO_ERR_NOMEM.
 * *out is NULL on error. */
int geo_areas_geojson(struct geo_areas *set, uint32_t handle, enum geo_crs crs, char **out);

/* The last message GEOS reported to this thread ("" if none), through any
 * set's context: a thread-local string, valid until this thread's next call.
 * For logs. */
const char *geo_areas_last_error(const struct geo_areas *set);

#endif
