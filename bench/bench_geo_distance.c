/* bench_geo_distance.c: nanoseconds per distance, PROJ against the fast path.
 *
 * The index calls geo_distance_m() for every candidate it cannot prune, so its
 * cost per call bounds the query rate. Three workloads of 65536 precomputed
 * pairs each, run REPS times:
 *   licang   both points in Licang's bounding box (the service's own scale);
 *   city     up to 50 km apart anywhere on Earth (the fast path's whole range);
 *   far      100 - 10000 km apart (the fast path declines and calls PROJ).
 * For each it prints ns per call for geo_distance_reference_m() (PROJ),
 * geo_distance_m(), and geo_distance_ecef_m() on points converted beforehand
 * (as an index that keeps them would), and the worst difference between
 * geo_distance_m() and PROJ on those pairs.
 * Usage: bench_geo_distance [reps], default 20. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <geodesic.h>

#include "geo_distance.h"

#define N_PAIRS 65536
/* Licang's WGS84 bounding box (shared/reference-data/README.md). */
#define LICANG_LAT 36.134047, 36.238138
#define LICANG_LON 120.338342, 120.506382

static uint64_t rng_state = 0x62656e6368ULL;

static double rng_range(double lo, double hi) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return lo + (hi - lo) * ((double)(z >> 11) * (1.0 / 9007199254740992.0));
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static struct geo_point a[N_PAIRS], b[N_PAIRS];

static double time_ns_per_call(double (*fn)(struct geo_point, struct geo_point), int reps,
                               double *sink) {
    double sum = 0.0;
    double t0 = now_ns();
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < N_PAIRS; i++) {
            sum += fn(a[i], b[i]);
        }
    }
    double t1 = now_ns();
    *sink += sum;
    return (t1 - t0) / ((double)reps * N_PAIRS);
}

static struct geo_ecef_point ea[N_PAIRS], eb[N_PAIRS];

static double time_ecef_ns_per_call(int reps, double *sink) {
    for (int i = 0; i < N_PAIRS; i++) {
        geo_ecef_point_init(&ea[i], a[i]);
        geo_ecef_point_init(&eb[i], b[i]);
    }
    double sum = 0.0;
    double t0 = now_ns();
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < N_PAIRS; i++) {
            sum += geo_distance_ecef_m(&ea[i], &eb[i]);
        }
    }
    double t1 = now_ns();
    *sink += sum;
    return (t1 - t0) / ((double)reps * N_PAIRS);
}

static void run(const char *name, int reps, double *sink) {
    double worst = 0.0;
    for (int i = 0; i < N_PAIRS; i++) {
        double fast = geo_distance_m(a[i], b[i]);
        worst = fmax(worst, fabs(fast - geo_distance_reference_m(a[i], b[i])));
    }
    double proj_ns = time_ns_per_call(geo_distance_reference_m, reps, sink);
    double fast_ns = time_ns_per_call(geo_distance_m, reps, sink);
    double ecef_ns = time_ecef_ns_per_call(reps, sink);
    printf("%-7s %8.1f %16.1f %21.1f %19.2g\n", name, proj_ns, fast_ns, ecef_ns, worst);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    if (reps <= 0) {
        fprintf(stderr, "usage: %s [reps > 0]\n", argv[0]);
        return 2;
    }
    struct geod_geodesic wgs84;
    geod_init(&wgs84, 6378137.0, 1.0 / 298.257223563);
    double sink = 0.0;
    printf("ns per call; worst |geo_distance_m - PROJ| in metres\n");
    printf("%-7s %8s %16s %21s %19s\n", "pairs", "PROJ", "geo_distance_m",
           "geo_distance_ecef_m", "worst diff (m)");

    for (int i = 0; i < N_PAIRS; i++) {
        a[i] = (struct geo_point){rng_range(LICANG_LAT), rng_range(LICANG_LON)};
        b[i] = (struct geo_point){rng_range(LICANG_LAT), rng_range(LICANG_LON)};
    }
    run("licang", reps, &sink);

    static const double ranges_m[][2] = {{0.0, 50000.0}, {1e5, 1e7}};
    static const char *const names[] = {"city", "far"};
    for (int w = 0; w < 2; w++) {
        for (int i = 0; i < N_PAIRS; i++) {
            a[i] = (struct geo_point){asin(rng_range(-1.0, 1.0)) * (180.0 / M_PI),
                                      rng_range(-180.0, 180.0)};
            geod_direct(&wgs84, a[i].lat_deg, a[i].lon_deg, rng_range(-180.0, 180.0),
                        rng_range(ranges_m[w][0], ranges_m[w][1]), &b[i].lat_deg, &b[i].lon_deg,
                        NULL);
        }
        run(names[w], reps, &sink);
    }
    printf("(checksum %.6g, %d pairs x %d reps per figure)\n", sink, N_PAIRS, reps);
    return 0;
}
