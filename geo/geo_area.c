/* geo_area.c: areas as GEOS prepared geometries behind a GEOS STRtree.
 *
 * Sizes that shaped it: a few hundred areas of a few hundred to a few thousand
 * vertices each, loaded once at start-up and queried for every "which areas
 * contain this point" and for every candidate of "which facilities lie inside
 * area A". So areas live in one array sorted by handle (binary search for the
 * per-area calls), each prepared once when added (GEOS then builds its
 * per-polygon segment index on first use), and one STRtree over their envelopes
 * narrows a point query to the handful of areas whose box holds the point.
 *
 * geo_areas_geojson() writes an area out with GEOS's GeoJSON writer (GEOS >= 3.10),
 * moving the vertices to another CRS with GEOSGeom_transformXY (>= 3.11) first; it is
 * called per request rather than cached: areas are asked for rarely (a map page loads
 * them once), and a profile of the largest answer (every area, 150 KB) shows most of
 * its time in formatting and parsing JSON numbers, not here.
 *
 * Only the reentrant GEOS API is used, with one context per set; GEOS reports
 * errors through that context into a thread's last_error. Every GEOS predicate result
 * is checked for 2 (exception) and turned into GEO_ERR_GEOS. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <geodesic.h>
#include <geos_c.h>

#include "geo_area.h"
#include "geo_distance.h"

#define STRTREE_NODE_CAPACITY 10

struct area {
    uint32_t handle;
    uint8_t kind;
    GEOSGeometry *geom;                   /* owned */
    const GEOSPreparedGeometry *prepared; /* owned; refers to geom */
    struct geo_area_bounds bounds;
    double area_m2;
};

struct geo_areas {
    GEOSContextHandle_t ctx;
    struct area *areas; /* sorted by handle */
    size_t n, cap;
    GEOSSTRtree *tree;  /* NULL until built; items are struct area * into areas */
    bool built;
    /* GEOS allows one context per thread, and a prepared geometry builds
     * its index on first use: queries from several threads (the daemon's
     * loop threads) take turns on this. */
    pthread_mutex_t lock;
};

/* The message of the last GEOS error on this thread: the error handler runs
 * on the thread that made the failing call, which reads it next. */
static _Thread_local char last_error[256];

/* ---- Set life cycle --------------------------------------------------- */

static void on_geos_error(const char *message, void *userdata) {
    (void)userdata;
    snprintf(last_error, sizeof last_error, "%s", message);
}

struct geo_areas *geo_areas_new(void) {
    struct geo_areas *set = calloc(1, sizeof *set);
    if (set == NULL) {
        return NULL;
    }
    set->ctx = GEOS_init_r();
    if (set->ctx == NULL) {
        free(set);
        return NULL;
    }
    GEOSContext_setErrorMessageHandler_r(set->ctx, on_geos_error, set);
    pthread_mutex_init(&set->lock, NULL); /* default attributes: cannot fail on Linux */
    return set;
}

static void drop_tree(struct geo_areas *set) {
    if (set->tree != NULL) {
        GEOSSTRtree_destroy_r(set->ctx, set->tree);
        set->tree = NULL;
    }
    set->built = false;
}

void geo_areas_free(struct geo_areas *set) {
    if (set == NULL) {
        return;
    }
    drop_tree(set);
    for (size_t i = 0; i < set->n; i++) {
        GEOSPreparedGeom_destroy_r(set->ctx, set->areas[i].prepared);
        GEOSGeom_destroy_r(set->ctx, set->areas[i].geom);
    }
    free(set->areas);
    GEOS_finish_r(set->ctx);
    pthread_mutex_destroy(&set->lock);
    free(set);
}

size_t geo_areas_count(const struct geo_areas *set) {
    return set->n;
}

const char *geo_areas_last_error(const struct geo_areas *set) {
    (void)set;
    return last_error;
}

/* Index of the first area whose handle is >= handle. */
static size_t lower_bound(const struct geo_areas *set, uint32_t handle) {
    size_t lo = 0, hi = set->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (set->areas[mid].handle < handle) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static const struct area *find(const struct geo_areas *set, uint32_t handle) {
    size_t i = lower_bound(set, handle);
    return i < set->n && set->areas[i].handle == handle ? &set->areas[i] : NULL;
}

/* ---- Measuring a geometry's rings --------------------------------------- */

typedef int (*ring_fn)(struct geo_areas *set, const GEOSCoordSequence *seq, unsigned size,
                       bool is_hole, void *ctx);

/* Calls fn on every ring of a Polygon or MultiPolygon. */
static int for_each_ring(struct geo_areas *set, const GEOSGeometry *g, ring_fn fn, void *ctx) {
    int n_polys = GEOSGetNumGeometries_r(set->ctx, g);
    if (n_polys < 0) {
        return GEO_ERR_GEOS;
    }
    for (int i = 0; i < n_polys; i++) {
        const GEOSGeometry *poly = GEOSGetGeometryN_r(set->ctx, g, i);
        int n_holes = poly != NULL ? GEOSGetNumInteriorRings_r(set->ctx, poly) : -1;
        if (n_holes < 0) {
            return GEO_ERR_GEOS;
        }
        for (int r = -1; r < n_holes; r++) {
            const GEOSGeometry *ring = r < 0 ? GEOSGetExteriorRing_r(set->ctx, poly)
                                             : GEOSGetInteriorRingN_r(set->ctx, poly, r);
            const GEOSCoordSequence *seq =
                ring != NULL ? GEOSGeom_getCoordSeq_r(set->ctx, ring) : NULL;
            unsigned size = 0;
            if (seq == NULL || !GEOSCoordSeq_getSize_r(set->ctx, seq, &size)) {
                return GEO_ERR_GEOS;
            }
            int rc = fn(set, seq, size, r >= 0, ctx);
            if (rc != GEO_OK) {
                return rc;
            }
        }
    }
    return GEO_OK;
}

/* Largest geo_distance_m from ctx's centre to a vertex. */
struct far_vertex {
    struct geo_point centre;
    double max_m;
};

static int ring_far_vertex(struct geo_areas *set, const GEOSCoordSequence *seq, unsigned size,
                           bool is_hole, void *ctx) {
    (void)is_hole;
    struct far_vertex *fv = ctx;
    for (unsigned i = 0; i < size; i++) {
        double x, y;
        if (!GEOSCoordSeq_getXY_r(set->ctx, seq, i, &x, &y)) {
            return GEO_ERR_GEOS;
        }
        double d = geo_distance_m(fv->centre, (struct geo_point){y, x});
        if (d > fv->max_m) {
            fv->max_m = d;
        }
    }
    return GEO_OK;
}

/* Shells add, holes subtract; each ring's geodesic area through PROJ. */
struct ring_area {
    struct geod_geodesic wgs84;
    double total_m2;
};

static int ring_add_area(struct geo_areas *set, const GEOSCoordSequence *seq, unsigned size,
                         bool is_hole, void *ctx) {
    struct ring_area *ra = ctx;
    struct geod_polygon poly;
    geod_polygon_init(&poly, 0);
    /* The ring is closed: its last vertex repeats the first. */
    for (unsigned i = 0; i + 1 < size; i++) {
        double x, y;
        if (!GEOSCoordSeq_getXY_r(set->ctx, seq, i, &x, &y)) {
            return GEO_ERR_GEOS;
        }
        geod_polygon_addpoint(&ra->wgs84, &poly, y, x);
    }
    double area_m2 = 0.0, perimeter_m = 0.0;
    geod_polygon_compute(&ra->wgs84, &poly, 0, 1, &area_m2, &perimeter_m);
    ra->total_m2 += is_hole ? -fabs(area_m2) : fabs(area_m2);
    return GEO_OK;
}

static int measure(struct geo_areas *set, const GEOSGeometry *g, struct area *a) {
    double min_x, min_y, max_x, max_y;
    if (!GEOSGeom_getXMin_r(set->ctx, g, &min_x) || !GEOSGeom_getYMin_r(set->ctx, g, &min_y) ||
        !GEOSGeom_getXMax_r(set->ctx, g, &max_x) || !GEOSGeom_getYMax_r(set->ctx, g, &max_y)) {
        return GEO_ERR_GEOS;
    }
    if (!geo_point_is_valid((struct geo_point){min_y, min_x}) ||
        !geo_point_is_valid((struct geo_point){max_y, max_x})) {
        return GEO_ERR_ARG;
    }
    a->bounds.min_lat_deg = min_y;
    a->bounds.min_lon_deg = min_x;
    a->bounds.max_lat_deg = max_y;
    a->bounds.max_lon_deg = max_x;
    a->bounds.centre = (struct geo_point){0.5 * (min_y + max_y), 0.5 * (min_x + max_x)};
    struct far_vertex fv = {a->bounds.centre, 0.0};
    int rc = for_each_ring(set, g, ring_far_vertex, &fv);
    if (rc != GEO_OK) {
        return rc;
    }
    a->bounds.radius_m = fv.max_m * (1.0 + 1e-4) + 1.0;
    struct ring_area ra = {.total_m2 = 0.0};
    geod_init(&ra.wgs84, 6378137.0, 1.0 / 298.257223563);
    rc = for_each_ring(set, g, ring_add_area, &ra);
    a->area_m2 = ra.total_m2;
    return rc;
}

/* ---- Adding -------------------------------------------------------------- */

static int check_new(const struct geo_areas *set, uint32_t handle, uint8_t kind) {
    if (kind >= GEO_AREA_MAX_KINDS || find(set, handle) != NULL) {
        return GEO_ERR_ARG;
    }
    return GEO_OK;
}

/* Takes ownership of g in every case. */
static int add_geometry(struct geo_areas *set, uint32_t handle, uint8_t kind, GEOSGeometry *g) {
    int rc = GEO_OK;
    struct area a = {.handle = handle, .kind = kind, .geom = g};

    int type = GEOSGeomTypeId_r(set->ctx, g);
    if (type != GEOS_POLYGON && type != GEOS_MULTIPOLYGON) {
        rc = type < 0 ? GEO_ERR_GEOS : GEO_ERR_ARG;
        goto done;
    }
    char empty = GEOSisEmpty_r(set->ctx, g);
    char valid = GEOSisValid_r(set->ctx, g);
    if (empty != 0 || valid != 1) {
        rc = GEO_ERR_GEOS; /* empty, invalid, or 2: an exception */
        goto done;
    }
    rc = measure(set, g, &a);
    if (rc != GEO_OK) {
        goto done;
    }
    if (set->n == set->cap) {
        size_t cap = set->cap ? 2 * set->cap : 16;
        struct area *grown = realloc(set->areas, cap * sizeof *grown);
        if (grown == NULL) {
            rc = GEO_ERR_NOMEM;
            goto done;
        }
        set->areas = grown;
        set->cap = cap;
    }
    a.prepared = GEOSPrepare_r(set->ctx, g);
    if (a.prepared == NULL) {
        rc = GEO_ERR_GEOS;
        goto done;
    }
    drop_tree(set); /* the tree's items point into the array that moves now */
    size_t at = lower_bound(set, handle);
    memmove(&set->areas[at + 1], &set->areas[at], (set->n - at) * sizeof *set->areas);
    set->areas[at] = a;
    set->n++;
    return GEO_OK;
done:
    GEOSGeom_destroy_r(set->ctx, g);
    return rc;
}

int geo_areas_add_wkb(struct geo_areas *set, uint32_t handle, uint8_t kind,
                      const unsigned char *wkb, size_t wkb_bytes) {
    if (set == NULL || wkb == NULL) {
        return GEO_ERR_ARG;
    }
    int rc = check_new(set, handle, kind);
    if (rc != GEO_OK) {
        return rc;
    }
    GEOSWKBReader *reader = GEOSWKBReader_create_r(set->ctx);
    if (reader == NULL) {
        return GEO_ERR_NOMEM;
    }
    GEOSGeometry *g = GEOSWKBReader_read_r(set->ctx, reader, wkb, wkb_bytes);
    GEOSWKBReader_destroy_r(set->ctx, reader);
    if (g == NULL) {
        return GEO_ERR_GEOS;
    }
    return add_geometry(set, handle, kind, g);
}

int geo_areas_add_wkt(struct geo_areas *set, uint32_t handle, uint8_t kind, const char *wkt) {
    if (set == NULL || wkt == NULL) {
        return GEO_ERR_ARG;
    }
    int rc = check_new(set, handle, kind);
    if (rc != GEO_OK) {
        return rc;
    }
    GEOSWKTReader *reader = GEOSWKTReader_create_r(set->ctx);
    if (reader == NULL) {
        return GEO_ERR_NOMEM;
    }
    GEOSGeometry *g = GEOSWKTReader_read_r(set->ctx, reader, wkt);
    GEOSWKTReader_destroy_r(set->ctx, reader);
    if (g == NULL) {
        return GEO_ERR_GEOS;
    }
    return add_geometry(set, handle, kind, g);
}

/* ---- Building and querying ------------------------------------------------ */

int geo_areas_build(struct geo_areas *set) {
    drop_tree(set);
    set->tree = GEOSSTRtree_create_r(set->ctx, STRTREE_NODE_CAPACITY);
    if (set->tree == NULL) {
        return GEO_ERR_NOMEM;
    }
    for (size_t i = 0; i < set->n; i++) {
        GEOSSTRtree_insert_r(set->ctx, set->tree, set->areas[i].geom, &set->areas[i]);
    }
    set->built = true;
    return GEO_OK;
}

/* Turns a GEOS predicate's char (1 true, 0 false, 2 exception) into 0 with
 * *result set, or GEO_ERR_GEOS. */
static int predicate_result(char r, bool *result) {
    if (r != 0 && r != 1) {
        return GEO_ERR_GEOS;
    }
    *result = r == 1;
    return GEO_OK;
}

struct containing_walk {
    struct geo_areas *set;
    const GEOSGeometry *point;
    uint32_t kind_mask;
    uint32_t *out;
    size_t max;
    size_t total;
    int rc;
};

/* Keeps out[0..min(total,max)-1] as the smallest handles seen so far, sorted. */
static void keep_smallest(struct containing_walk *w, uint32_t handle) {
    size_t n = w->total < w->max ? w->total : w->max;
    w->total++;
    if (n == w->max && (n == 0 || w->out[n - 1] < handle)) {
        return;
    }
    size_t at = n;
    while (at > 0 && w->out[at - 1] > handle) {
        at--;
    }
    size_t tail = (n < w->max ? n : n - 1) - at;
    memmove(&w->out[at + 1], &w->out[at], tail * sizeof *w->out);
    w->out[at] = handle;
}

static void visit_candidate(void *item, void *userdata) {
    struct containing_walk *w = userdata;
    const struct area *a = item;
    if (w->rc != GEO_OK || !(w->kind_mask & (UINT32_C(1) << a->kind))) {
        return;
    }
    bool inside = false;
    w->rc = predicate_result(GEOSPreparedIntersects_r(w->set->ctx, a->prepared, w->point),
                             &inside);
    if (w->rc == GEO_OK && inside) {
        keep_smallest(w, a->handle);
    }
}

static GEOSGeometry *make_point(struct geo_areas *set, struct geo_point p) {
    return GEOSGeom_createPointFromXY_r(set->ctx, p.lon_deg, p.lat_deg);
}

static int containing_locked(struct geo_areas *set, struct geo_point p, uint32_t kind_mask,
                             uint32_t *out, size_t max, size_t *n_total) {
    if (!set->built || !geo_point_is_valid(p) || n_total == NULL || (out == NULL && max > 0)) {
        return GEO_ERR_ARG;
    }
    GEOSGeometry *point = make_point(set, p);
    if (point == NULL) {
        return GEO_ERR_GEOS;
    }
    struct containing_walk w = {set, point, kind_mask, out, max, 0, GEO_OK};
    GEOSSTRtree_query_r(set->ctx, set->tree, point, visit_candidate, &w);
    GEOSGeom_destroy_r(set->ctx, point);
    if (w.rc == GEO_OK) {
        *n_total = w.total;
    }
    return w.rc;
}

int geo_areas_containing(struct geo_areas *set, struct geo_point p, uint32_t kind_mask,
                         uint32_t *out, size_t max, size_t *n_total) {
    pthread_mutex_lock(&set->lock);
    int rc = containing_locked(set, p, kind_mask, out, max, n_total);
    pthread_mutex_unlock(&set->lock);
    return rc;
}

static int contains_locked(struct geo_areas *set, uint32_t handle, struct geo_point p,
                           bool *inside) {
    if (!set->built || !geo_point_is_valid(p) || inside == NULL) {
        return GEO_ERR_ARG;
    }
    const struct area *a = find(set, handle);
    if (a == NULL) {
        return GEO_ERR_NOTFOUND;
    }
    /* The envelope test first: most facilities of a radius query around a
     * small area fall outside its box, and this costs no allocation. */
    if (p.lat_deg < a->bounds.min_lat_deg || p.lat_deg > a->bounds.max_lat_deg ||
        p.lon_deg < a->bounds.min_lon_deg || p.lon_deg > a->bounds.max_lon_deg) {
        *inside = false;
        return GEO_OK;
    }
    GEOSGeometry *point = make_point(set, p);
    if (point == NULL) {
        return GEO_ERR_GEOS;
    }
    int rc = predicate_result(GEOSPreparedIntersects_r(set->ctx, a->prepared, point), inside);
    GEOSGeom_destroy_r(set->ctx, point);
    return rc;
}

int geo_areas_contains(struct geo_areas *set, uint32_t handle, struct geo_point p,
                       bool *inside) {
    pthread_mutex_lock(&set->lock);
    int rc = contains_locked(set, handle, p, inside);
    pthread_mutex_unlock(&set->lock);
    return rc;
}

/* ---- Per-area facts -------------------------------------------------------- */

int geo_areas_bounds(const struct geo_areas *set, uint32_t handle,
                     struct geo_area_bounds *out) {
    if (out == NULL) {
        return GEO_ERR_ARG;
    }
    const struct area *a = find(set, handle);
    if (a == NULL) {
        return GEO_ERR_NOTFOUND;
    }
    *out = a->bounds;
    return GEO_OK;
}

int geo_areas_kind(const struct geo_areas *set, uint32_t handle, uint8_t *kind) {
    const struct area *a = find(set, handle);
    if (a == NULL) {
        return GEO_ERR_NOTFOUND;
    }
    *kind = a->kind;
    return GEO_OK;
}

int geo_areas_area_m2(const struct geo_areas *set, uint32_t handle, double *area_m2) {
    const struct area *a = find(set, handle);
    if (a == NULL) {
        return GEO_ERR_NOTFOUND;
    }
    *area_m2 = a->area_m2;
    return GEO_OK;
}

/* ---- Writing an area out ------------------------------------------------------- */

/* GEOSGeom_transformXY's callback: x is a longitude, y a latitude, WGS84. */
static int to_crs(double *x, double *y, void *userdata) {
    const enum geo_crs *crs = userdata;
    struct geo_point out;
    if (geo_crs_from_wgs84(*crs, (struct geo_point){.lat_deg = *y, .lon_deg = *x}, &out) < 0) {
        return 0; /* GEOS raises, and the caller sees NULL */
    }
    *x = out.lon_deg;
    *y = out.lat_deg;
    return 1;
}

static int geojson_locked(struct geo_areas *set, uint32_t handle, enum geo_crs crs,
                          char **out) {
    if (out == NULL || geo_crs_name(crs) == NULL) {
        return GEO_ERR_ARG;
    }
    *out = NULL;
    const struct area *a = find(set, handle);
    if (a == NULL) {
        return GEO_ERR_NOTFOUND;
    }
    int ret = GEO_ERR_GEOS;
    GEOSGeometry *moved = NULL;
    GEOSGeoJSONWriter *writer = NULL;
    char *text = NULL;
    const GEOSGeometry *g = a->geom;
    if (crs != GEO_CRS_WGS84) {
        moved = GEOSGeom_transformXY_r(set->ctx, a->geom, to_crs, &crs);
        if (moved == NULL) {
            goto done;
        }
        g = moved;
    }
    writer = GEOSGeoJSONWriter_create_r(set->ctx);
    if (writer == NULL) {
        goto done;
    }
    text = GEOSGeoJSONWriter_writeGeometry_r(set->ctx, writer, g, -1);
    if (text == NULL) {
        goto done;
    }
    *out = strdup(text);
    ret = *out != NULL ? 0 : GEO_ERR_NOMEM;
done:
    if (text != NULL) {
        GEOSFree_r(set->ctx, text);
    }
    if (writer != NULL) {
        GEOSGeoJSONWriter_destroy_r(set->ctx, writer);
    }
    if (moved != NULL) {
        GEOSGeom_destroy_r(set->ctx, moved);
    }
    return ret;
}

int geo_areas_geojson(struct geo_areas *set, uint32_t handle, enum geo_crs crs, char **out) {
    pthread_mutex_lock(&set->lock);
    int rc = geojson_locked(set, handle, crs, out);
    pthread_mutex_unlock(&set->lock);
    return rc;
}
