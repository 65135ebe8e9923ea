/* gen_facilities.c: synthetic facilities and queries for the server benchmark.
 *
 * bench/run-bench loads the same facilities into nearestd and into Redis GEO
 * and drives both with the same query points, so this program writes one
 * facility set in every form the two servers take, and the queries in both
 * request languages:
 *
 *   facilities.csv       nearest-import's CSV (id,category,subtype,name,address,
 *                        phone,opening_hours,lat,lon), ids b-0000001, ...
 *   facilities.resp      "GEOADD <category> lon lat id" as RESP, for redis-cli --pipe
 *   queries.nearest      "NEAREST <category> <lat> <lon> K 5", one per line
 *   queries.geosearch    "GEOSEARCH <category> FROMLONLAT <lon> <lat> BYRADIUS <r> km
 *                        ASC COUNT 5", the same points in the same order, each with
 *                        its own oracle radius (below)
 *   queries.geosearch_fixed  the same, with one radius per category (below)
 *   facilities.geojson,  with --dataset: the dataset directory nearestd --init
 *   areas.geojson        --dataset reads (the areas collection is empty)
 *
 * Where: 70 % of facilities (and of query points) fall in clusters where
 * people live, 30 % uniformly over the box. Below 10^6 facilities the box is
 * Licang district (lon 120.34-120.51, lat 36.13-36.24, about 15 x 12 km, 60
 * community-sized clusters, sigma 250-700 m); from 10^6 on it is Shandong
 * province (lon 114.8-122.7, lat 34.4-38.4, about 700 x 440 km, one town-sized
 * cluster per 2000 facilities, sigma 0.5-3 km), so that facilities per square
 * kilometre stay within a factor of a few of Licang's real density instead of
 * packing ten million points into one district.
 *
 * Categories follow the proportions of the bundled Licang dataset, roughly:
 * doctor_team 30 %, elder_care 23 %, school 18 %, meal_point 14 %, parking 15 %.
 * Each query asks for one category drawn with the same weights.
 *
 * The GEOSEARCH radius: Redis needs a radius, nearestd does not. For each
 * query the exact 5th-nearest distance in its category is computed (a grid of
 * cells, searched ring by ring until no unvisited cell can hold anything
 * closer), using the haversine formula on Redis's own sphere (R = 6372797.560856
 * m, src/geohash_helper.c), then multiplied by 1.01, plus 1 m, and rounded up
 * to the next metre. So every GEOSEARCH returns exactly 5 members and scans
 * the smallest area that guarantees it: the most favourable radius Redis could
 * be given. A real client without the oracle would have to guess larger.
 * queries.geosearch_fixed is what such a client, knowing only N and the
 * category, must send to be sure of 5 answers at every query point: issue 7's
 * "r chosen so every query gets 5" read as one r per category, the largest of
 * that category's per-query radii (so the smallest that serves all of them).
 *
 * Everything is a function of --seed (one splitmix64 stream, no other source),
 * so two runs with the same arguments write identical files.
 *
 * Usage: bench_gen --n N --out DIR [--seed S] [--queries Q] [--k K] [--dataset] */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <csv.h>

#define N_CATS 5
#define MAX_K 100
/* Redis's earth radius in metres (src/geohash_helper.c). */
#define REDIS_EARTH_M 6372797.560856
#define DEG_RAD (M_PI / 180.0)

static const char *const cat_names[N_CATS] = {
    "elder_care", "meal_point", "doctor_team", "school", "parking",
};
/* Cumulative category weights, from the Licang dataset's counts. */
static const double cat_cum[N_CATS] = {0.23, 0.37, 0.67, 0.85, 1.0};
static const char *const subtypes[N_CATS][4] = {
    {"institution", "home_care_station", "home_care_centre", "day_care"},
    {"canteen", "meal_station", "canteen", "meal_station"},
    {"family_doctor", "family_doctor", "family_doctor", "family_doctor"},
    {"kindergarten", "primary", "middle", "nine_year"},
    {"public", "shared", "public", "shared"},
};
static const char *const hours_list[] = {
    "24/7", "Mo-Fr 08:00-12:00,13:30-17:30; Sa 08:00-12:00", "Mo-Fr 07:30-17:30",
    "Mo-Su 06:30-19:00", "Mo-Sa 09:00-19:00", "",
};
#define N_HOURS (sizeof hours_list / sizeof hours_list[0])

struct box {
    double lat_lo, lat_hi, lon_lo, lon_hi;
};
static const struct box licang_box = {36.13, 36.24, 120.34, 120.51};
static const struct box shandong_box = {34.4, 38.4, 114.8, 122.7};

struct cluster {
    double lat_deg, lon_deg, sigma_m;
};

struct world {
    struct box box;
    struct cluster *clusters;
    double *cluster_cum;      /* cumulative weights, last is 1 */
    size_t n_clusters;
};

struct fac {
    double lat_deg, lon_deg;
    int cat;
};

/* ------------------------------------------------------------------------ */
/* Random numbers: splitmix64, one deterministic stream.                    */

static uint64_t rng_state;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unit(void) {
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_range(double lo, double hi) {
    return lo + (hi - lo) * rng_unit();
}

static double rng_gauss(void) {
    double u = rng_unit(), v = rng_unit();
    if (u < 1e-300) {
        u = 1e-300;
    }
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* Index of the first cumulative weight above a uniform draw. */
static size_t pick_cum(const double *cum, size_t n) {
    double u = rng_unit();
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cum[mid] > u) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

/* ------------------------------------------------------------------------ */
/* Where people live.                                                       */

static int world_init(struct world *w, size_t n) {
    bool province = n >= 1000000;
    w->box = province ? shandong_box : licang_box;
    w->n_clusters = province ? n / 2000 : 60;
    w->clusters = calloc(w->n_clusters, sizeof *w->clusters);
    w->cluster_cum = calloc(w->n_clusters, sizeof *w->cluster_cum);
    if (!w->clusters || !w->cluster_cum) {
        return -1;
    }
    double total = 0;
    for (size_t i = 0; i < w->n_clusters; i++) {
        struct cluster *c = &w->clusters[i];
        c->lat_deg = rng_range(w->box.lat_lo, w->box.lat_hi);
        c->lon_deg = rng_range(w->box.lon_lo, w->box.lon_hi);
        c->sigma_m = province ? rng_range(500, 3000) : rng_range(250, 700);
        /* Heavy-tailed sizes: a few big towns, many villages. */
        double weight = 1.0 / pow(rng_range(0.05, 1.0), 1.2);
        total += weight;
        w->cluster_cum[i] = total;
    }
    for (size_t i = 0; i < w->n_clusters; i++) {
        w->cluster_cum[i] /= total;
    }
    w->cluster_cum[w->n_clusters - 1] = 1.0;
    return 0;
}

static void world_free(struct world *w) {
    free(w->clusters);
    free(w->cluster_cum);
}

static bool in_box(const struct box *b, double lat, double lon) {
    return lat >= b->lat_lo && lat <= b->lat_hi && lon >= b->lon_lo && lon <= b->lon_hi;
}

/* One point: 70 % around a cluster (redrawn until inside the box), 30 % uniform. */
static void world_point(const struct world *w, double *lat, double *lon) {
    if (rng_unit() < 0.7) {
        const struct cluster *c = &w->clusters[pick_cum(w->cluster_cum, w->n_clusters)];
        double m_per_deg_lat = REDIS_EARTH_M * DEG_RAD;
        double m_per_deg_lon = m_per_deg_lat * cos(c->lat_deg * DEG_RAD);
        for (int tries = 0; tries < 100; tries++) {
            *lat = c->lat_deg + rng_gauss() * c->sigma_m / m_per_deg_lat;
            *lon = c->lon_deg + rng_gauss() * c->sigma_m / m_per_deg_lon;
            if (in_box(&w->box, *lat, *lon)) {
                return;
            }
        }
    }
    *lat = rng_range(w->box.lat_lo, w->box.lat_hi);
    *lon = rng_range(w->box.lon_lo, w->box.lon_hi);
}

/* ------------------------------------------------------------------------ */
/* Exact k-th nearest distance per category: a uniform grid, ring by ring.  */

static double haversine_m(double lat1, double lon1, double lat2, double lon2) {
    double dlat = (lat2 - lat1) * DEG_RAD, dlon = (lon2 - lon1) * DEG_RAD;
    double a = sin(dlat / 2) * sin(dlat / 2) +
               cos(lat1 * DEG_RAD) * cos(lat2 * DEG_RAD) * sin(dlon / 2) * sin(dlon / 2);
    return 2.0 * REDIS_EARTH_M * asin(sqrt(a));
}

struct grid {
    struct box box;
    size_t nx, ny;
    double cell_lat_deg, cell_lon_deg;
    double ring_m;           /* lower bound on the distance crossed by one ring of cells */
    size_t *start;           /* per cell, index of its first point in pts; nx*ny + 1 */
    struct fac *pts;         /* this category's points, grouped by cell */
};

static size_t grid_cell(const struct grid *g, double lat, double lon, size_t *cx, size_t *cy) {
    double fx = (lon - g->box.lon_lo) / g->cell_lon_deg;
    double fy = (lat - g->box.lat_lo) / g->cell_lat_deg;
    size_t x = fx < 0 ? 0 : (size_t)fx, y = fy < 0 ? 0 : (size_t)fy;
    if (x >= g->nx) {
        x = g->nx - 1;
    }
    if (y >= g->ny) {
        y = g->ny - 1;
    }
    *cx = x;
    *cy = y;
    return y * g->nx + x;
}

/* Builds a grid of about two points per cell over the facilities of one category. */
static int grid_build(struct grid *g, const struct box *box, const struct fac *all, size_t n,
                      int cat) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        count += all[i].cat == cat;
    }
    g->box = *box;
    double cells = count / 2.0 < 1 ? 1 : count / 2.0;
    double aspect = (box->lon_hi - box->lon_lo) / (box->lat_hi - box->lat_lo);
    g->ny = (size_t)ceil(sqrt(cells / aspect));
    g->nx = (size_t)ceil(cells / (double)g->ny);
    g->cell_lat_deg = (box->lat_hi - box->lat_lo) / g->ny;
    g->cell_lon_deg = (box->lon_hi - box->lon_lo) / g->nx;
    double m_per_deg = REDIS_EARTH_M * DEG_RAD;
    double lat_m = g->cell_lat_deg * m_per_deg;
    /* Narrowest a cell gets: at the box's pole-side edge. 0.98 covers the
     * great circle's small bulge towards the pole over a few kilometres. */
    double lon_m = g->cell_lon_deg * m_per_deg * cos(box->lat_hi * DEG_RAD);
    g->ring_m = 0.98 * (lat_m < lon_m ? lat_m : lon_m);
    size_t n_cells = g->nx * g->ny;
    g->start = calloc(n_cells + 1, sizeof *g->start);
    g->pts = malloc((count ? count : 1) * sizeof *g->pts);
    if (!g->start || !g->pts) {
        return -1;
    }
    size_t cx, cy;
    for (size_t i = 0; i < n; i++) {
        if (all[i].cat == cat) {
            g->start[grid_cell(g, all[i].lat_deg, all[i].lon_deg, &cx, &cy) + 1]++;
        }
    }
    for (size_t c = 0; c < n_cells; c++) {
        g->start[c + 1] += g->start[c];
    }
    size_t *fill = malloc(n_cells * sizeof *fill);
    if (!fill) {
        return -1;
    }
    memcpy(fill, g->start, n_cells * sizeof *fill);
    for (size_t i = 0; i < n; i++) {
        if (all[i].cat == cat) {
            g->pts[fill[grid_cell(g, all[i].lat_deg, all[i].lon_deg, &cx, &cy)]++] = all[i];
        }
    }
    free(fill);
    return 0;
}

static void grid_free(struct grid *g) {
    free(g->start);
    free(g->pts);
}

static void best_insert(double *best, size_t k, size_t *n_best, double d) {
    if (*n_best == k && d >= best[k - 1]) {
        return;
    }
    size_t i = *n_best < k ? (*n_best)++ : k - 1;
    while (i > 0 && best[i - 1] > d) {
        best[i] = best[i - 1];
        i--;
    }
    best[i] = d;
}

static void grid_scan_cell(const struct grid *g, long x, long y, double lat, double lon,
                           double *best, size_t k, size_t *n_best) {
    if (x < 0 || y < 0 || (size_t)x >= g->nx || (size_t)y >= g->ny) {
        return;
    }
    size_t c = (size_t)y * g->nx + (size_t)x;
    for (size_t i = g->start[c]; i < g->start[c + 1]; i++) {
        best_insert(best, k, n_best, haversine_m(lat, lon, g->pts[i].lat_deg, g->pts[i].lon_deg));
    }
}

/* The k-th smallest haversine distance from (lat, lon) to the grid's points,
 * or -1 when the category has fewer than k points. */
static double grid_kth_m(const struct grid *g, double lat, double lon, size_t k) {
    double best[MAX_K];
    size_t n_best = 0, cx, cy;
    grid_cell(g, lat, lon, &cx, &cy);
    long max_ring = (long)(g->nx > g->ny ? g->nx : g->ny);
    for (long r = 0; r <= max_ring; r++) {
        long x0 = (long)cx - r, x1 = (long)cx + r, y0 = (long)cy - r, y1 = (long)cy + r;
        if (r == 0) {
            grid_scan_cell(g, x0, y0, lat, lon, best, k, &n_best);
        } else {
            for (long x = x0; x <= x1; x++) {
                grid_scan_cell(g, x, y0, lat, lon, best, k, &n_best);
                grid_scan_cell(g, x, y1, lat, lon, best, k, &n_best);
            }
            for (long y = y0 + 1; y < y1; y++) {
                grid_scan_cell(g, x0, y, lat, lon, best, k, &n_best);
                grid_scan_cell(g, x1, y, lat, lon, best, k, &n_best);
            }
        }
        /* Every unvisited cell lies at least r whole cells away. */
        if (n_best == k && best[k - 1] <= (double)r * g->ring_m) {
            return best[k - 1];
        }
    }
    return n_best == k ? best[k - 1] : -1;
}

/* ------------------------------------------------------------------------ */
/* Output.                                                                  */

static void resp_bulk(FILE *f, const char *s) {
    fprintf(f, "$%zu\r\n%s\r\n", strlen(s), s);
}

static void csv_field(FILE *f, const char *s, bool last) {
    csv_fwrite(f, s, strlen(s));
    fputc(last ? '\n' : ',', f);
}

static void json_string(FILE *f, const char *s) {
    /* Every string written here is generated ASCII without quotes or
     * backslashes (names, addresses, hours), so no escaping is needed. */
    fprintf(f, "\"%s\"", s);
}

static FILE *open_out(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench_gen: %s: %s\n", path, strerror(errno));
    }
    return f;
}

static int close_out(FILE *f, const char *name) {
    if (!f) {
        return 0;
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "bench_gen: writing %s failed\n", name);
        return -1;
    }
    return 0;
}

struct fac_text {
    char id[32], name[64], address[64], phone[24], lat[24], lon[24];
    const char *subtype, *hours;
};

static void fac_text(const struct fac *f, size_t i, struct fac_text *t) {
    snprintf(t->id, sizeof t->id, "b-%07zu", i + 1);
    snprintf(t->name, sizeof t->name, "Bench %s %zu", cat_names[f->cat], i + 1);
    snprintf(t->address, sizeof t->address, "%zu Bench Road", (i * 7919) % 9999 + 1);
    snprintf(t->phone, sizeof t->phone, "0532-%04zu-%04zu", (i / 10000) % 10000, i % 10000);
    snprintf(t->lat, sizeof t->lat, "%.6f", f->lat_deg);
    snprintf(t->lon, sizeof t->lon, "%.6f", f->lon_deg);
    t->subtype = subtypes[f->cat][i % 4];
    t->hours = hours_list[(i / 4) % N_HOURS];
}

static int write_facilities(const char *dir, const struct fac *facs, size_t n, bool dataset) {
    FILE *csv = open_out(dir, "facilities.csv");
    FILE *resp = open_out(dir, "facilities.resp");
    FILE *geo = dataset ? open_out(dir, "facilities.geojson") : NULL;
    FILE *areas = dataset ? open_out(dir, "areas.geojson") : NULL;
    int rc = -1;
    if (!csv || !resp || (dataset && (!geo || !areas))) {
        goto done;
    }
    fputs("id,category,subtype,name,address,phone,opening_hours,lat,lon\n", csv);
    if (geo) {
        fputs("{\"type\": \"FeatureCollection\", \"features\": [\n", geo);
    }
    for (size_t i = 0; i < n; i++) {
        struct fac_text t;
        fac_text(&facs[i], i, &t);
        const char *cat = cat_names[facs[i].cat];
        csv_field(csv, t.id, false);
        csv_field(csv, cat, false);
        csv_field(csv, t.subtype, false);
        csv_field(csv, t.name, false);
        csv_field(csv, t.address, false);
        csv_field(csv, t.phone, false);
        csv_field(csv, t.hours, false);
        csv_field(csv, t.lat, false);
        csv_field(csv, t.lon, true);
        fputs("*5\r\n", resp);
        resp_bulk(resp, "GEOADD");
        resp_bulk(resp, cat);
        resp_bulk(resp, t.lon);
        resp_bulk(resp, t.lat);
        resp_bulk(resp, t.id);
        if (geo) {
            fputs("{\"type\": \"Feature\", \"properties\": {\"id\": ", geo);
            json_string(geo, t.id);
            fputs(", \"category\": ", geo);
            json_string(geo, cat);
            fputs(", \"subtype\": ", geo);
            json_string(geo, t.subtype);
            fputs(", \"name\": ", geo);
            json_string(geo, t.name);
            fputs(", \"address\": ", geo);
            json_string(geo, t.address);
            fputs(", \"phone\": ", geo);
            json_string(geo, t.phone);
            fputs(", \"opening_hours\": ", geo);
            json_string(geo, t.hours);
            fprintf(geo, "}, \"geometry\": {\"type\": \"Point\", \"coordinates\": [%s, %s]}}%s\n",
                    t.lon, t.lat, i + 1 < n ? "," : "");
        }
    }
    if (geo) {
        fputs("]}\n", geo);
        fputs("{\"type\": \"FeatureCollection\", \"features\": []}\n", areas);
    }
    rc = 0;
done:
    if (close_out(csv, "facilities.csv") || close_out(resp, "facilities.resp") ||
        close_out(geo, "facilities.geojson") || close_out(areas, "areas.geojson")) {
        rc = -1;
    }
    return rc;
}

static int write_queries(const char *dir, const struct world *w, const struct fac *facs,
                         size_t n, size_t n_queries, size_t k) {
    struct grid grids[N_CATS];
    memset(grids, 0, sizeof grids);
    FILE *nq = open_out(dir, "queries.nearest");
    FILE *gq = open_out(dir, "queries.geosearch");
    FILE *fq = open_out(dir, "queries.geosearch_fixed");
    double *radii = calloc(n_queries ? n_queries : 1, sizeof *radii);
    double *points = calloc(n_queries ? 2 * n_queries : 1, sizeof *points);
    int *cats = calloc(n_queries ? n_queries : 1, sizeof *cats);
    double cat_max_m[N_CATS] = {0};
    int rc = -1;
    if (!nq || !gq || !fq || !radii || !points || !cats) {
        goto done;
    }
    for (int c = 0; c < N_CATS; c++) {
        if (grid_build(&grids[c], &w->box, facs, n, c) != 0) {
            fprintf(stderr, "bench_gen: out of memory\n");
            goto done;
        }
    }
    for (size_t q = 0; q < n_queries; q++) {
        double lat, lon;
        world_point(w, &lat, &lon);
        int cat = (int)pick_cum(cat_cum, N_CATS);
        double kth_m = grid_kth_m(&grids[cat], lat, lon, k);
        if (kth_m < 0) {
            fprintf(stderr, "bench_gen: category %s has fewer than %zu facilities\n",
                    cat_names[cat], k);
            goto done;
        }
        double r_m = ceil(kth_m * 1.01 + 1.0);
        radii[q] = r_m;
        points[2 * q] = lat;
        points[2 * q + 1] = lon;
        cats[q] = cat;
        cat_max_m[cat] = r_m > cat_max_m[cat] ? r_m : cat_max_m[cat];
        fprintf(nq, "NEAREST %s %.6f %.6f K %zu\n", cat_names[cat], lat, lon, k);
        fprintf(gq, "GEOSEARCH %s FROMLONLAT %.6f %.6f BYRADIUS %.3f km ASC COUNT %zu\n",
                cat_names[cat], lon, lat, r_m / 1000.0, k);
    }
    for (size_t q = 0; q < n_queries; q++) {
        fprintf(fq, "GEOSEARCH %s FROMLONLAT %.6f %.6f BYRADIUS %.3f km ASC COUNT %zu\n",
                cat_names[cats[q]], points[2 * q + 1], points[2 * q], cat_max_m[cats[q]] / 1000.0,
                k);
    }
    rc = 0;
done:
    if (rc == 0 && n_queries > 0) {
        double sum = 0, max = 0;
        for (size_t q = 0; q < n_queries; q++) {
            sum += radii[q];
            max = radii[q] > max ? radii[q] : max;
        }
        fprintf(stderr, "bench_gen: %zu queries, GEOSEARCH radius mean %.0f m, max %.0f m\n",
                n_queries, sum / n_queries, max);
        fprintf(stderr, "bench_gen: one radius per category (fixed):");
        for (int c = 0; c < N_CATS; c++) {
            fprintf(stderr, " %s %.0f m", cat_names[c], cat_max_m[c]);
        }
        fprintf(stderr, "\n");
    }
    for (int c = 0; c < N_CATS; c++) {
        grid_free(&grids[c]);
    }
    free(radii);
    free(points);
    free(cats);
    if (close_out(nq, "queries.nearest") || close_out(gq, "queries.geosearch") ||
        close_out(fq, "queries.geosearch_fixed")) {
        rc = -1;
    }
    return rc;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_gen --n N --out DIR [--seed S] [--queries Q] [--k K] "
                    "[--dataset]\n"
                    "  N in 1000..10000000; Q defaults to 10000, K to 5, S to 1\n");
}

int main(int argc, char **argv) {
    unsigned long long n = 0, seed = 1, n_queries = 10000, k = 5;
    const char *out_dir = NULL;
    bool dataset = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--n") && has_val) {
            n = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--seed") && has_val) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--queries") && has_val) {
            n_queries = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--k") && has_val) {
            k = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--out") && has_val) {
            out_dir = argv[++i];
        } else if (!strcmp(a, "--dataset")) {
            dataset = true;
        } else {
            usage();
            return 2;
        }
    }
    if (n < 1000 || n > 10000000 || !out_dir || k < 1 || k > MAX_K) {
        usage();
        return 2;
    }
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "bench_gen: %s: %s\n", out_dir, strerror(errno));
        return 1;
    }
    rng_state = seed * 0x2545f4914f6cdd1dULL + 0x62656e6368ULL;
    struct world w = {0};
    struct fac *facs = malloc(n * sizeof *facs);
    int rc = 1;
    if (!facs || world_init(&w, n) != 0) {
        fprintf(stderr, "bench_gen: out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        world_point(&w, &facs[i].lat_deg, &facs[i].lon_deg);
        facs[i].cat = (int)pick_cum(cat_cum, N_CATS);
    }
    if (write_facilities(out_dir, facs, n, dataset) != 0 ||
        write_queries(out_dir, &w, facs, n, n_queries, k) != 0) {
        goto done;
    }
    rc = 0;
done:
    world_free(&w);
    free(facs);
    return rc;
}
