/* import.c: reads facility lists (CSV, GeoJSON) and area lists (GeoJSON)
 * into the catalogue, one clear message per bad record.
 *
 * The lists come from district offices as spreadsheets or GeoJSON exports,
 * usually geocoded by Amap (GCJ-02) or Baidu (BD-09); coordinates are
 * converted to WGS84 here before they reach the store. CSV is parsed with
 * libcsv fed one text line at a time, so that each record knows the line it
 * started on even when a quoted field spans lines. GeoJSON is parsed whole with
 * jansson: area files are a few MB; big lists come as CSV, which streams, and
 * 10^6 CSV rows must import in under 30 s.
 *
 * Nothing here opens a transaction: the caller's batch makes a whole import
 * all or nothing (see import.h). */
#include "import.h"

#include <csv.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "geo_crs.h"
#include "store_attrs.h"

/* ------------------------------------------------------------------------ */
/* A set of ids seen in one file, for duplicate detection                   */
/* ------------------------------------------------------------------------ */

struct id_set {
    char **slots;    /* open addressing, power-of-two size, NULL = empty */
    size_t cap;
    size_t n;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    }
    return h;
}

static void id_set_free(struct id_set *set)
{
    for (size_t i = 0; i < set->cap; i++) {
        free(set->slots[i]);
    }
    free(set->slots);
    set->slots = NULL;
    set->cap = set->n = 0;
}

/* Adds id; returns 1 when added, 0 when already present, -1 on no memory. */
static int id_set_add(struct id_set *set, const char *id)
{
    if (2 * (set->n + 1) > set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 1024;
        char **slots = calloc(cap, sizeof *slots);
        if (!slots) {
            return -1;
        }
        for (size_t i = 0; i < set->cap; i++) {
            if (set->slots[i]) {
                size_t j = hash_str(set->slots[i]) & (cap - 1);
                while (slots[j]) {
                    j = (j + 1) & (cap - 1);
                }
                slots[j] = set->slots[i];
            }
        }
        free(set->slots);
        set->slots = slots;
        set->cap = cap;
    }
    size_t j = hash_str(id) & (set->cap - 1);
    while (set->slots[j]) {
        if (strcmp(set->slots[j], id) == 0) {
            return 0;
        }
        j = (j + 1) & (set->cap - 1);
    }
    set->slots[j] = strdup(id);
    if (!set->slots[j]) {
        return -1;
    }
    set->n++;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Reporting                                                                */
/* ------------------------------------------------------------------------ */

struct importer {
    struct store *st;
    const struct import_opts *opts;
    struct import_stats *stats;
    const char *path;
    struct id_set ids;
    int fatal;             /* a store_err that stops the file, or 0 */
    /* progress */
    long long file_bytes;
    long long bytes_done;
    double t_start, t_last;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(struct importer *im, bool last)
{
    if (!im->opts->progress) {
        return;
    }
    double t = now_s();
    if (!last && t - im->t_last < 0.5) {
        return;
    }
    im->t_last = t;
    long long rows = (long long)(im->stats->accepted + im->stats->rejected);
    double rate = t > im->t_start ? (double)rows / (t - im->t_start) : 0;
    double pct = im->file_bytes > 0 ? 100.0 * (double)im->bytes_done / (double)im->file_bytes
                                    : 100.0;
    fprintf(stderr, "\r%s: %lld rows, %.0f rows/s, %.0f%%%s", im->path, rows, rate, pct,
            last ? "\n" : "");
}

/* Reports one rejected record: `where` is "FILE:LINE" or "FILE: feature N". */
static void reject(struct importer *im, const char *where, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Echoed input is capped and kept on one line. */
    for (char *p = msg; *p; p++) {
        if (*p == '\n' || *p == '\r') {
            *p = ' ';
        }
    }
    im->stats->rejected++;
    if (im->opts->errors) {
        if (im->opts->progress) {
            fputc('\n', stderr);
        }
        fprintf(im->opts->errors, "%s: %s\n", where, msg);
    }
    if (im->opts->first_error && im->opts->first_error_len && !im->opts->first_error[0]) {
        snprintf(im->opts->first_error, im->opts->first_error_len, "%s: %s", where, msg);
    }
}

/* Puts a checked facility; reports rejection or records a fatal store error. */
/* Counts the result rc of putting the record at `where`: accepted, rejected
 * with the store's reason (STORE_ERR_ARG), or a failure that stops the import. */
static void count_put(struct importer *im, const char *where, int rc)
{
    if (rc == STORE_ERR_ARG) {
        reject(im, where, "%s", store_errmsg(im->st));
    } else if (rc != 0) {
        im->fatal = rc;
        reject(im, where, "database: %s", store_errmsg(im->st));
    } else {
        im->stats->accepted++;
    }
}

static void put_facility(struct importer *im, const char *where, struct store_facility *f)
{
    char why[400];
    if (f->category >= 0 && geo_point_is_valid(f->where) && im->opts->crs != GEO_CRS_WGS84) {
        struct geo_point w;
        if (geo_crs_to_wgs84((enum geo_crs)im->opts->crs, f->where, &w) != 0) {
            reject(im, where, "lat/lon: cannot convert from %s",
                   geo_crs_name((enum geo_crs)im->opts->crs));
            return;
        }
        f->where = w;
    }
    if (store_facility_check(f, why, sizeof why) != 0) {
        reject(im, where, "%s", why);
        return;
    }
    int added = id_set_add(&im->ids, f->id);
    if (added < 0) {
        im->fatal = STORE_ERR_NOMEM;
        return;
    }
    if (added == 0) {
        reject(im, where, "id: duplicate id %s in this file", f->id);
        return;
    }
    count_put(im, where, store_facility_put(im->st, f));
}

/* Puts f with attrs as its attributes (attrs is taken: released here); out of
 * memory stops the import. */
static void put_facility_with_attrs(struct importer *im, const char *where,
                                    struct store_facility *f, json_t *attrs)
{
    char *attrs_text = json_dumps(attrs, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(attrs);
    if (!attrs_text) {
        im->fatal = STORE_ERR_NOMEM;
        return;
    }
    f->attrs_json = attrs_text;
    put_facility(im, where, f);
    free(attrs_text);
}

/* Applies --map to a column or property name. */
static const char *mapped(const struct import_opts *o, const char *name)
{
    for (size_t i = 0; i < o->n_maps; i++) {
        if (strcmp(o->map_src[i], name) == 0) {
            return o->map_dst[i];
        }
    }
    return name;
}

/* ------------------------------------------------------------------------ */
/* CSV                                                                      */
/* ------------------------------------------------------------------------ */

enum csv_core { C_ID, C_CATEGORY, C_SUBTYPE, C_NAME, C_ADDRESS, C_PHONE, C_HOURS, C_LAT,
                C_LON, C_N };

static const char *const core_names[C_N] = {
    "id", "category", "subtype", "name", "address", "phone", "opening_hours", "lat", "lon",
};

struct csv_state {
    struct importer *im;
    char **fields;           /* the current row's fields, NUL-terminated copies */
    size_t n_fields, cap_fields;
    char **header;           /* column names after --map; NULL until the header row */
    size_t n_header;
    int core_col[C_N];       /* column of each core field, -1 when absent */
    long line;               /* line number of the text line being fed */
    long row_line;           /* line the current row started on */
    bool in_row;
    bool header_bad;         /* a required column is missing: stop reading */
};

static void csv_field_cb(void *s, size_t len, void *data)
{
    struct csv_state *cs = data;
    if (cs->im->fatal) {
        return;
    }
    if (cs->n_fields == cs->cap_fields) {
        size_t cap = cs->cap_fields ? cs->cap_fields * 2 : 32;
        char **f = realloc(cs->fields, cap * sizeof *f);
        if (!f) {
            cs->im->fatal = STORE_ERR_NOMEM;
            return;
        }
        cs->fields = f;
        cs->cap_fields = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        cs->im->fatal = STORE_ERR_NOMEM;
        return;
    }
    memcpy(copy, s ? s : "", len);
    copy[len] = '\0';
    cs->fields[cs->n_fields++] = copy;
}

static void csv_take_header(struct csv_state *cs)
{
    cs->header = cs->fields;
    cs->n_header = cs->n_fields;
    cs->fields = NULL;
    cs->n_fields = cs->cap_fields = 0;
    if (cs->n_header > 0 && strncmp(cs->header[0], "\xef\xbb\xbf", 3) == 0) {
        memmove(cs->header[0], cs->header[0] + 3, strlen(cs->header[0] + 3) + 1);
    }
    for (int c = 0; c < C_N; c++) {
        cs->core_col[c] = -1;
    }
    for (size_t i = 0; i < cs->n_header; i++) {
        const char *name = mapped(cs->im->opts, cs->header[i]);
        if (name != cs->header[i]) {
            char *copy = strdup(name);
            if (!copy) {
                cs->im->fatal = STORE_ERR_NOMEM;
                return;
            }
            free(cs->header[i]);
            cs->header[i] = copy;
        }
        for (int c = 0; c < C_N; c++) {
            if (strcmp(cs->header[i], core_names[c]) == 0 && cs->core_col[c] < 0) {
                cs->core_col[c] = (int)i;
            }
        }
    }
    const int required[] = {C_ID, C_CATEGORY, C_LAT, C_LON};
    for (int k = 0; k < 4; k++) {
        if (cs->core_col[required[k]] < 0) {
            char where[600];
            snprintf(where, sizeof where, "%s:%ld", cs->im->path, cs->row_line);
            reject(cs->im, where, "header: no '%s' column (rename one with --map SRC=%s)",
                   core_names[required[k]], core_names[required[k]]);
            cs->header_bad = true;
            return;
        }
    }
}

static const char *core(const struct csv_state *cs, int c)
{
    int col = cs->core_col[c];
    return col >= 0 && (size_t)col < cs->n_fields ? cs->fields[col] : "";
}

static void csv_row(struct csv_state *cs)
{
    struct importer *im = cs->im;
    char where[600];
    snprintf(where, sizeof where, "%s:%ld", im->path, cs->row_line);
    if (cs->n_fields != cs->n_header) {
        reject(im, where, "row: %zu fields, but the header has %zu", cs->n_fields, cs->n_header);
        return;
    }
    struct store_facility f = {
        .id = core(cs, C_ID),
        .category = -1,
        .subtype = core(cs, C_SUBTYPE),
        .name = core(cs, C_NAME),
        .address = core(cs, C_ADDRESS),
        .phone = core(cs, C_PHONE),
        .hours = core(cs, C_HOURS),
    };
    if (!*f.id) {
        reject(im, where, "id: missing");
        return;
    }
    if (store_category_parse(core(cs, C_CATEGORY), &f.category) != 0) {
        reject(im, where, "category: unknown category '%.40s' (expected elder_care, "
                          "meal_point, doctor_team, school or parking)", core(cs, C_CATEGORY));
        return;
    }
    double ll[2];
    for (int k = 0; k < 2; k++) {
        const char *text = core(cs, k == 0 ? C_LAT : C_LON);
        const char *name = k == 0 ? "lat" : "lon";
        if (!*text) {
            reject(im, where, "%s: missing coordinates", name);
            return;
        }
        if (store_parse_double(text, &ll[k]) != 0) {
            reject(im, where, "%s: bad number '%.40s'", name, text);
            return;
        }
    }
    f.where.lat_deg = ll[0];
    f.where.lon_deg = ll[1];
    if (!geo_point_is_valid(f.where)) {
        reject(im, where, "lat/lon: out of range (%.40s, %.40s); lat must be -90..90 and "
                          "lon -180..180", core(cs, C_LAT), core(cs, C_LON));
        return;
    }
    json_t *attrs = json_object();
    if (!attrs) {
        im->fatal = STORE_ERR_NOMEM;
        return;
    }
    for (size_t i = 0; i < cs->n_header; i++) {
        bool is_core = false;
        for (int c = 0; c < C_N; c++) {
            is_core = is_core || cs->core_col[c] == (int)i;
        }
        if (is_core) {
            continue;
        }
        json_t *v = NULL;
        char why[200];
        if (store_attr_from_text(f.category, cs->header[i], cs->fields[i], &v, why,
                                   sizeof why) != 0) {
            reject(im, where, "%s: %s", cs->header[i], why);
            json_decref(attrs);
            return;
        }
        if (v) {
            json_object_set_new(attrs, cs->header[i], v);
        }
    }
    put_facility_with_attrs(im, where, &f, attrs);
}

static void csv_row_cb(int c, void *data)
{
    (void)c;
    struct csv_state *cs = data;
    cs->in_row = false;
    if (!cs->im->fatal && !cs->header_bad) {
        if (!cs->header) {
            csv_take_header(cs);
        } else {
            csv_row(cs);
            progress(cs->im, false);
        }
    }
    for (size_t i = 0; i < cs->n_fields; i++) {
        free(cs->fields[i]);
    }
    cs->n_fields = 0;
}

static bool line_is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\n' && s[i] != '\r') {
            return false;
        }
    }
    return true;
}

static int import_csv(struct importer *im, FILE *fp)
{
    struct csv_state cs = {.im = im};
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0) {
        return STORE_ERR_NOMEM;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int ret = 0;
    while (!im->fatal && !cs.header_bad && (n = getline(&line, &cap, fp)) > 0) {
        cs.line++;
        im->bytes_done += n;
        if (!cs.in_row && !line_is_blank(line, (size_t)n)) {
            cs.in_row = true;
            cs.row_line = cs.line;
        }
        if (csv_parse(&p, line, (size_t)n, csv_field_cb, csv_row_cb, &cs) != (size_t)n) {
            char where[600];
            snprintf(where, sizeof where, "%s:%ld", im->path, cs.line);
            reject(im, where, "csv: %s (a stray quote?); reading stopped here",
                   csv_strerror(csv_error(&p)));
            ret = STORE_ERR_ARG;
            break;
        }
    }
    if (cs.header_bad) {
        ret = STORE_ERR_ARG;
    }
    if (ret == 0 && !im->fatal && ferror(fp)) {
        reject(im, im->path, "file: read error: %s", strerror(errno));
        ret = STORE_ERR_IO;
    }
    if (ret == 0 && !im->fatal && csv_fini(&p, csv_field_cb, csv_row_cb, &cs) != 0) {
        char where[600];
        snprintf(where, sizeof where, "%s:%ld", im->path, cs.row_line);
        reject(im, where, "csv: unterminated quoted field");
        ret = STORE_ERR_ARG;
    }
    if (ret == 0 && !im->fatal && !cs.header) {
        reject(im, im->path, "file: empty; expected a header row");
        ret = STORE_ERR_ARG;
    }
    progress(im, true);
    for (size_t i = 0; i < cs.n_fields; i++) {
        free(cs.fields[i]);
    }
    free(cs.fields);
    for (size_t i = 0; i < cs.n_header; i++) {
        free(cs.header[i]);
    }
    free(cs.header);
    free(line);
    csv_free(&p);
    return im->fatal ? im->fatal : ret;
}

/* ------------------------------------------------------------------------ */
/* GeoJSON                                                                  */
/* ------------------------------------------------------------------------ */

/* Reads a core text property: strings as they are, integers as decimals
 * (lists often hold phone numbers and ids as numbers), null or absent as "".
 * Returns false for anything else. */
static bool prop_text(json_t *props, const char *key, char *buf, size_t buf_len,
                      const char **out)
{
    json_t *v = json_object_get(props, key);
    if (!v || json_is_null(v)) {
        *out = "";
    } else if (json_is_string(v)) {
        *out = json_string_value(v);
    } else if (json_is_integer(v)) {
        snprintf(buf, buf_len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        *out = buf;
    } else {
        return false;
    }
    return true;
}

/* Returns a copy of the properties with --map renames applied. */
static json_t *props_mapped(const struct import_opts *o, json_t *props)
{
    json_t *copy = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(props, key, v) {
        if (copy && json_object_set(copy, mapped(o, key), v) != 0) {
            json_decref(copy);
            copy = NULL;
        }
    }
    return copy;
}

/* Converts a position array [lon, lat, ...] in place to WGS84 and checks it. */
static bool position_fix(struct importer *im, json_t *pos, const char **why)
{
    if (!json_is_array(pos) || json_array_size(pos) < 2) {
        *why = "missing coordinates";
        return false;
    }
    json_t *lon = json_array_get(pos, 0);
    json_t *lat = json_array_get(pos, 1);
    if (!json_is_number(lon) || !json_is_number(lat)) {
        *why = "bad number in coordinates";
        return false;
    }
    struct geo_point p = {json_number_value(lat), json_number_value(lon)};
    if (!geo_point_is_valid(p)) {
        *why = "out-of-range coordinates (lat -90..90, lon -180..180)";
        return false;
    }
    if (im->opts->crs != GEO_CRS_WGS84) {
        struct geo_point w;
        if (geo_crs_to_wgs84((enum geo_crs)im->opts->crs, p, &w) != 0) {
            *why = "coordinates cannot be converted to WGS84";
            return false;
        }
        json_array_set_new(pos, 0, json_real(w.lon_deg));
        json_array_set_new(pos, 1, json_real(w.lat_deg));
    }
    return true;
}

/* Checks (and converts) a Polygon's rings: each a closed ring of >= 4 positions. */
static bool polygon_fix(struct importer *im, json_t *rings, const char **why)
{
    if (!json_is_array(rings) || json_array_size(rings) == 0) {
        *why = "a polygon needs at least one ring";
        return false;
    }
    for (size_t r = 0; r < json_array_size(rings); r++) {
        json_t *ring = json_array_get(rings, r);
        if (!json_is_array(ring) || json_array_size(ring) < 4) {
            *why = "a ring needs at least 4 positions";
            return false;
        }
        for (size_t i = 0; i < json_array_size(ring); i++) {
            if (!position_fix(im, json_array_get(ring, i), why)) {
                return false;
            }
        }
        if (!json_equal(json_array_get(ring, 0),
                        json_array_get(ring, json_array_size(ring) - 1))) {
            *why = "a ring must end where it starts";
            return false;
        }
    }
    return true;
}

static void geojson_area(struct importer *im, const char *where, json_t *geom, json_t *props)
{
    const char *type = json_string_value(json_object_get(geom, "type"));
    json_t *coords = json_object_get(geom, "coordinates");
    const char *why = NULL;
    bool ok;
    if (type && strcmp(type, "Polygon") == 0) {
        ok = polygon_fix(im, coords, &why);
    } else if (type && strcmp(type, "MultiPolygon") == 0) {
        ok = json_is_array(coords) && json_array_size(coords) > 0;
        why = "a MultiPolygon needs at least one polygon";
        for (size_t i = 0; ok && i < json_array_size(coords); i++) {
            ok = polygon_fix(im, json_array_get(coords, i), &why);
        }
    } else {
        reject(im, where, "geometry: an area needs a Polygon or MultiPolygon");
        return;
    }
    if (!ok) {
        reject(im, where, "geometry: %s", why);
        return;
    }
    char idbuf[32], namebuf[32], parentbuf[32], kindbuf[32];
    const char *id = "", *name = "", *parent = "", *kind_name = "";
    if (!prop_text(props, "id", idbuf, sizeof idbuf, &id) || !*id) {
        reject(im, where, "id: missing");
        return;
    }
    if (!prop_text(props, "name", namebuf, sizeof namebuf, &name)) {
        reject(im, where, "name: expected text");
        return;
    }
    if (!prop_text(props, "parent", parentbuf, sizeof parentbuf, &parent)) {
        reject(im, where, "parent: expected an area id or null");
        return;
    }
    struct store_area a = {.id = id, .name = name, .parent = parent};
    if (!prop_text(props, "kind", kindbuf, sizeof kindbuf, &kind_name) ||
        store_area_kind_parse(kind_name, &a.kind) != 0) {
        reject(im, where, "kind: unknown kind '%.40s' (expected district, street, community, "
                          "catchment or service_area)", kind_name);
        return;
    }
    json_t *attrs = json_deep_copy(props);
    char *attrs_text = NULL;
    char *geom_text = NULL;
    if (attrs) {
        json_object_del(attrs, "id");
        json_object_del(attrs, "kind");
        json_object_del(attrs, "name");
        json_object_del(attrs, "parent");
        attrs_text = json_dumps(attrs, JSON_COMPACT | JSON_PRESERVE_ORDER);
        geom_text = json_dumps(geom, JSON_COMPACT | JSON_REAL_PRECISION(17));
    }
    if (!attrs_text || !geom_text) {
        im->fatal = STORE_ERR_NOMEM;
        goto done;
    }
    a.attrs_json = attrs_text;
    a.geojson = geom_text;
    int added = id_set_add(&im->ids, id);
    if (added < 0) {
        im->fatal = STORE_ERR_NOMEM;
        goto done;
    }
    if (added == 0) {
        reject(im, where, "id: duplicate id %s in this file", id);
        goto done;
    }
    count_put(im, where, store_area_put(im->st, &a));
done:
    free(geom_text);
    free(attrs_text);
    json_decref(attrs);
}

static void geojson_facility(struct importer *im, const char *where, json_t *geom,
                             json_t *props)
{
    const char *type = json_string_value(json_object_get(geom, "type"));
    if (!geom || json_is_null(geom)) {
        reject(im, where, "geometry: missing coordinates");
        return;
    }
    if (!type || strcmp(type, "Point") != 0) {
        reject(im, where, "geometry: a facility needs a Point");
        return;
    }
    json_t *coords = json_object_get(geom, "coordinates");
    if (!json_is_array(coords) || json_array_size(coords) < 2) {
        reject(im, where, "geometry: missing coordinates");
        return;
    }
    json_t *lon = json_array_get(coords, 0);
    json_t *lat = json_array_get(coords, 1);
    if (!json_is_number(lon) || !json_is_number(lat)) {
        reject(im, where, "geometry: bad number in coordinates");
        return;
    }
    struct store_facility f = {.category = -1};
    f.where.lat_deg = json_number_value(lat);
    f.where.lon_deg = json_number_value(lon);
    if (!geo_point_is_valid(f.where)) {
        reject(im, where, "geometry: out-of-range coordinates [%g, %g] (lon -180..180, "
                          "lat -90..90)", f.where.lon_deg, f.where.lat_deg);
        return;
    }
    char bufs[C_LAT][32];
    const char **outs[C_LAT] = {&f.id, NULL, &f.subtype, &f.name, &f.address, &f.phone,
                                &f.hours};
    const char *category = "";
    outs[C_CATEGORY] = &category;
    for (int c = 0; c < C_LAT; c++) {
        if (!prop_text(props, core_names[c], bufs[c], sizeof bufs[c], outs[c])) {
            reject(im, where, "%s: expected text", core_names[c]);
            return;
        }
    }
    if (!*f.id) {
        reject(im, where, "id: missing");
        return;
    }
    if (store_category_parse(category, &f.category) != 0) {
        reject(im, where, "category: unknown category '%.40s' (expected elder_care, "
                          "meal_point, doctor_team, school or parking)", category);
        return;
    }
    json_t *attrs = json_deep_copy(props);
    if (!attrs) {
        im->fatal = STORE_ERR_NOMEM;
        return;
    }
    for (int c = 0; c < C_N; c++) {
        json_object_del(attrs, core_names[c]);
    }
    put_facility_with_attrs(im, where, &f, attrs);
}

static int import_geojson(struct importer *im, FILE *fp)
{
    json_error_t je;
    json_t *root = json_loadf(fp, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        char where[600];
        snprintf(where, sizeof where, "%s:%d", im->path, je.line);
        reject(im, where, "json: %s", je.text);
        return STORE_ERR_ARG;
    }
    json_t *features = json_object_get(root, "features");
    const char *type = json_string_value(json_object_get(root, "type"));
    if (!type || strcmp(type, "FeatureCollection") != 0 || !json_is_array(features)) {
        reject(im, im->path, "file: not a GeoJSON FeatureCollection");
        json_decref(root);
        return STORE_ERR_ARG;
    }
    im->bytes_done = im->file_bytes;
    for (size_t i = 0; !im->fatal && i < json_array_size(features); i++) {
        char where[600];
        snprintf(where, sizeof where, "%s: feature %zu", im->path, i + 1);
        json_t *feature = json_array_get(features, i);
        json_t *geom = json_object_get(feature, "geometry");
        json_t *raw = json_object_get(feature, "properties");
        if (!json_is_object(feature) || (raw && !json_is_null(raw) && !json_is_object(raw))) {
            reject(im, where, "feature: not a GeoJSON Feature with properties");
            continue;
        }
        json_t *empty = json_object();
        json_t *props = props_mapped(im->opts, raw && json_is_object(raw) ? raw : empty);
        json_decref(empty);
        if (!props) {
            im->fatal = STORE_ERR_NOMEM;
            break;
        }
        const char *gtype = json_string_value(json_object_get(geom, "type"));
        bool polygonal = gtype && (strcmp(gtype, "Polygon") == 0 ||
                                   strcmp(gtype, "MultiPolygon") == 0);
        int kind = im->opts->kind;
        if (kind == IMPORT_DETECT) {
            kind = polygonal ? IMPORT_AREAS : IMPORT_FACILITIES;
        }
        if (kind == IMPORT_AREAS) {
            geojson_area(im, where, geom, props);
        } else {
            geojson_facility(im, where, geom, props);
        }
        json_decref(props);
        progress(im, false);
    }
    progress(im, true);
    json_decref(root);
    return im->fatal;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* ------------------------------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s);
    size_t m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

int import_file(struct store *st, const char *path, const struct import_opts *opts,
                struct import_stats *stats)
{
    struct importer im = {.st = st, .opts = opts, .stats = stats, .path = path};
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        reject(&im, path, "file: %s", strerror(errno));
        return errno == ENOENT ? STORE_ERR_MISSING : STORE_ERR_IO;
    }
    struct stat sb;
    if (fstat(fileno(fp), &sb) == 0) {
        im.file_bytes = (long long)sb.st_size;
    }
    im.t_start = im.t_last = now_s();
    int ret;
    if (ends_with(path, ".csv")) {
        if (opts->kind == IMPORT_AREAS) {
            reject(&im, path, "file: areas can only be imported from GeoJSON");
            ret = STORE_ERR_ARG;
        } else {
            ret = import_csv(&im, fp);
        }
    } else {
        ret = import_geojson(&im, fp);
    }
    fclose(fp);
    id_set_free(&im.ids);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* nearest-import                                                           */
/* ------------------------------------------------------------------------ */

/* One run of nearest-import over its files, as a store_load_fn. */
struct import_run {
    const struct import_opts *opts;
    char **files;
    int n_files;
    struct import_stats stats;
    const char *stopped_at;  /* the file that could not be read to the end */
    int file_err;            /* its store_err, or 0 */
    bool rejected_all;       /* bad records and no --keep-going, or nothing good */
};

/* Imports every file into the open batch; returns non-zero to abandon it. */
static int import_run_files(struct store *st, void *ctx, char *err, size_t err_len)
{
    struct import_run *run = ctx;
    for (int i = 0; i < run->n_files; i++) {
        int rc = import_file(st, run->files[i], run->opts, &run->stats);
        if (rc != 0) {
            run->stopped_at = run->files[i];
            run->file_err = rc;
            snprintf(err, err_len, "%s: %s", run->files[i], store_strerror(rc));
            return rc;
        }
    }
    const struct import_stats *stats = &run->stats;
    if (stats->rejected > 0 && (!run->opts->keep_going || stats->accepted == 0)) {
        run->rejected_all = true;
        snprintf(err, err_len, "bad records");
        return STORE_ERR_ARG;
    }
    if (run->opts->progress) {
        fprintf(stderr, "nearest-import: committing %lld records (spatial index, fsync)\n",
                (long long)stats->accepted);
    }
    return 0;
}

static const char *const import_usage =
    "usage: nearest-import --db PATH [--crs wgs84|gcj02|bd09] [--map SRC=DST]...\n"
    "                      [--keep-going] [--areas] FILE...\n";

int import_main(int argc, char **argv, FILE *errors)
{
    struct import_opts opts = {.crs = GEO_CRS_WGS84, .kind = IMPORT_DETECT, .errors = errors};
    const char *db_path = NULL;
    int first_file = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--db") == 0 && has_value) {
            db_path = argv[++i];
        } else if (strcmp(a, "--crs") == 0 && has_value) {
            enum geo_crs crs;
            if (geo_crs_parse(argv[++i], &crs) != 0) {
                fprintf(errors, "nearest-import: --crs: expected wgs84, gcj02 or bd09\n");
                return 2;
            }
            opts.crs = (int)crs;
        } else if (strcmp(a, "--map") == 0 && has_value) {
            char *eq = strchr(argv[++i], '=');
            if (!eq || eq == argv[i] || !eq[1] || opts.n_maps == IMPORT_MAX_MAPS) {
                fprintf(errors, "nearest-import: --map: expected SRC=DST (at most %d)\n",
                        IMPORT_MAX_MAPS);
                return 2;
            }
            *eq = '\0'; /* argv strings are ours to modify */
            opts.map_src[opts.n_maps] = argv[i];
            opts.map_dst[opts.n_maps++] = eq + 1;
        } else if (strcmp(a, "--keep-going") == 0) {
            opts.keep_going = true;
        } else if (strcmp(a, "--areas") == 0) {
            opts.kind = IMPORT_AREAS;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(import_usage, errors);
            return 2;
        } else if (strcmp(a, "--") == 0) {
            first_file = i + 1;
            break;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(errors, "nearest-import: unknown or incomplete option %s\n%s", a,
                    import_usage);
            return 2;
        } else {
            first_file = i;
            break;
        }
    }
    if (!db_path || first_file >= argc) {
        fputs(import_usage, errors);
        return 2;
    }
    opts.progress = isatty(STDERR_FILENO) == 1;

    struct import_run run = {.opts = &opts, .files = argv + first_file,
                             .n_files = argc - first_file};
    char err[512] = "";
    struct store *st = NULL;
    int rc = store_open(db_path, &st, err, sizeof err);
    if (rc == STORE_ERR_MISSING) {
        /* A new catalogue appears only complete: built beside, then linked. */
        err[0] = '\0';
        rc = store_create_with(db_path, import_run_files, &run, err, sizeof err);
    } else if (rc == 0) {
        rc = store_bulk_begin(st);
        snprintf(err, sizeof err, "%s: %s", db_path, store_errmsg(st));
        if (rc == 0) {
            rc = import_run_files(st, &run, err, sizeof err);
            if (rc == 0) {
                rc = store_batch_commit(st);
                snprintf(err, sizeof err, "%s", store_errmsg(st));
            } else {
                store_batch_rollback(st);
            }
        }
    }
    store_close(st);

    const struct import_stats *stats = &run.stats;
    if (run.file_err != 0) {
        fprintf(errors, "nearest-import: stopped at %s: %s; nothing imported\n", run.stopped_at,
                run.file_err == STORE_ERR_ARG ? "the file is malformed"
                                              : store_strerror(run.file_err));
        return 2;
    }
    if (run.rejected_all) {
        fprintf(errors, "nearest-import: %lld bad record%s; nothing imported%s\n",
                (long long)stats->rejected, stats->rejected == 1 ? "" : "s",
                opts.keep_going ? "" : " (--keep-going imports the good ones)");
        return 2;
    }
    if (rc != 0) {
        fprintf(errors, "nearest-import: %s; nothing imported\n", err);
        return 2;
    }
    fprintf(errors, "nearest-import: imported %lld record%s, rejected %lld\n",
            (long long)stats->accepted, stats->accepted == 1 ? "" : "s",
            (long long)stats->rejected);
    return stats->rejected > 0 ? 1 : 0;
}
