/* geo_distance.c: WGS84 geodesic distances through PROJ's geodesic API.
 *
 * PROJ's geod_inverse (Karney) is the reference. The geod_geodesic it needs is
 * initialised once, under pthread_once, and only read afterwards, so every
 * function here is safe to call from any thread. */
#include <math.h>
#include <pthread.h>

#include <geodesic.h>

#include "geo_distance.h"

static struct geod_geodesic wgs84;
static pthread_once_t wgs84_once = PTHREAD_ONCE_INIT;

static void wgs84_init(void) {
    geod_init(&wgs84, 6378137.0, 1.0 / 298.257223563);
}

double geo_distance_reference_m(struct geo_point a, struct geo_point b) {
    pthread_once(&wgs84_once, wgs84_init);
    double s12 = 0.0;
    geod_inverse(&wgs84, a.lat_deg, a.lon_deg, b.lat_deg, b.lon_deg, &s12, NULL, NULL);
    return s12;
}

double geo_distance_m(struct geo_point a, struct geo_point b) {
    return geo_distance_reference_m(a, b);
}

void geo_point_to_unit(struct geo_point p, double out[3]) {
    double lat = p.lat_deg * (M_PI / 180.0);
    double lon = p.lon_deg * (M_PI / 180.0);
    double c = cos(lat);
    out[0] = c * cos(lon);
    out[1] = c * sin(lon);
    out[2] = sin(lat);
}
