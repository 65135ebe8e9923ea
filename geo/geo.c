/* geo.c: the shared bits of geo/: point validation and error sentences. */
#include <math.h>

#include "geo.h"

bool geo_point_is_valid(struct geo_point p) {
    return isfinite(p.lat_deg) && isfinite(p.lon_deg) && p.lat_deg >= -90.0 &&
           p.lat_deg <= 90.0 && p.lon_deg >= -180.0 && p.lon_deg <= 180.0;
}

const char *geo_strerror(int err) {
    switch (err) {
    case GEO_OK: return "success";
    case GEO_ERR_ARG: return "argument out of range";
    case GEO_ERR_NOMEM: return "out of memory";
    case GEO_ERR_NOTFOUND: return "no such entry";
    case GEO_ERR_GEOS: return "geometry error";
    default: return "unknown error";
    }
}
