/* geo.h: the small values every geo/ module shares: points and error codes.
 *
 * geo/ is pure computation. Nothing in it does I/O, touches libuv or SQLite, or
 * includes anything from data/ or daemon/. Every function is reentrant: state
 * lives in objects the caller owns, never in mutable globals.
 * Latitude comes first everywhere, matching the wire protocol. */
#ifndef NEARESTD_GEO_H
#define NEARESTD_GEO_H

#include <stdbool.h>

/* A position in degrees. Which datum it is in (WGS84, GCJ-02, BD-09) is the
 * caller's business; every function below that measures takes WGS84. */
struct geo_point {
    double lat_deg; /* [-90, 90] */
    double lon_deg; /* [-180, 180] */
};

/* Errors of geo/: 0 or one of these negative values. */
enum geo_err {
    GEO_OK = 0,
    GEO_ERR_ARG = -1,      /* an argument is out of its documented range */
    GEO_ERR_NOMEM = -2,    /* an allocation failed; nothing was changed */
    GEO_ERR_NOTFOUND = -3, /* no entry with that handle */
    GEO_ERR_GEOS = -4,     /* GEOS raised an exception or could not parse */
};

/* Returns true when both coordinates are finite, latitude is in [-90, 90]
 * and longitude in [-180, 180]. */
bool geo_point_is_valid(struct geo_point p);

/* Returns a static, human-readable sentence for a geo_err value. */
const char *geo_strerror(int err);

#endif
