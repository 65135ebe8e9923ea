/* export.c: writes the catalogue back out as GeoJSON or CSV, in exactly the
 * formats import.c reads, so that export -> import is lossless: coordinates
 * are printed as the shortest decimal that reads back to the same double,
 * text is copied byte for byte (UTF-8, no \u escapes), and attribute types
 * survive because import types CSV cells by the same table (store_attrs.c).
 *
 * Output streams: one facility at a time, so exporting 10^6 rows needs no
 * more memory than one row. CSV needs the list of attribute columns first,
 * which costs one extra pass over the rows. */
#include "import.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>

#include "store_attrs.h"

/* ------------------------------------------------------------------------ */
/* GeoJSON                                                                  */
/* ------------------------------------------------------------------------ */

struct export_ctx {
    FILE *out;
    int category;      /* -1 for all */
    size_t n;          /* features or rows written */
    json_t *columns;   /* CSV: attribute column names, in first-seen order */
    int err;
};

/* Adds to props each member of attrs (when it is an object) whose key props
 * does not have yet: the fixed columns win over attributes of the same name. */
static void add_missing_keys(json_t *props, json_t *attrs)
{
    if (!json_is_object(attrs)) {
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(attrs, key, v) {
        if (!json_object_get(props, key)) {
            json_object_set(props, key, v);
        }
    }
}

static int geojson_facility(const struct store_facility *f, void *data)
{
    struct export_ctx *x = data;
    if (x->category >= 0 && f->category != x->category) {
        return 0;
    }
    json_t *props = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", f->id, "category",
                              store_category_name(f->category), "subtype", f->subtype,
                              "name", f->name, "address", f->address, "phone", f->phone,
                              "opening_hours", f->hours);
    json_t *attrs = json_loads(f->attrs_json, 0, NULL);
    if (!props) {
        json_decref(attrs);
        return STORE_ERR_NOMEM;
    }
    add_missing_keys(props, attrs);
    char lat[STORE_DOUBLE_TEXT_MAX], lon[STORE_DOUBLE_TEXT_MAX];
    store_format_double(f->where.lat_deg, lat);
    store_format_double(f->where.lon_deg, lon);
    char *text = json_dumps(props, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(props);
    json_decref(attrs);
    if (!text) {
        return STORE_ERR_NOMEM;
    }
    fprintf(x->out, "%s{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\","
            "\"coordinates\":[%s,%s]},\"properties\":%s}", x->n ? ",\n" : "\n", lon, lat, text);
    free(text);
    x->n++;
    return 0;
}

/* A cursor over OGC WKB, as SpatiaLite's AsBinary() returns it. Areas are
 * written from WKB rather than AsGeoJSON() so that coordinates come out as the
 * shortest text that reads back to the same double, as for facilities. */
struct wkb {
    const unsigned char *p;
    size_t left;
    bool little;
};

static bool wkb_u32(struct wkb *w, uint32_t *out)
{
    if (w->left < 4) {
        return false;
    }
    unsigned char b[4];
    memcpy(b, w->p, 4);
    *out = w->little ? (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                       (uint32_t)b[3] << 24
                     : (uint32_t)b[3] | (uint32_t)b[2] << 8 | (uint32_t)b[1] << 16 |
                       (uint32_t)b[0] << 24;
    w->p += 4;
    w->left -= 4;
    return true;
}

static bool wkb_f64(struct wkb *w, double *out)
{
    if (w->left < 8) {
        return false;
    }
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) {
        int k = w->little ? i : 7 - i;
        bits |= (uint64_t)w->p[k] << (8 * i);
    }
    memcpy(out, &bits, sizeof *out);
    w->p += 8;
    w->left -= 8;
    return true;
}

/* Reads a byte-order mark and a geometry type; true when the type is `want`. */
static bool wkb_header(struct wkb *w, uint32_t want)
{
    if (w->left < 1 || w->p[0] > 1) {
        return false;
    }
    w->little = w->p[0] == 1;
    w->p++;
    w->left--;
    uint32_t type;
    return wkb_u32(w, &type) && type == want;
}

/* Writes a WKB MultiPolygon (type 6) as a GeoJSON geometry to out. */
static bool wkb_multipolygon_write(const unsigned char *wkb, size_t len, FILE *out)
{
    struct wkb w = {wkb, len, true};
    uint32_t n_polys;
    if (!wkb_header(&w, 6) || !wkb_u32(&w, &n_polys)) {
        return false;
    }
    fputs("{\"type\":\"MultiPolygon\",\"coordinates\":[", out);
    for (uint32_t i = 0; i < n_polys; i++) {
        uint32_t n_rings;
        if (!wkb_header(&w, 3) || !wkb_u32(&w, &n_rings)) {
            return false;
        }
        fputs(i ? ",[" : "[", out);
        for (uint32_t r = 0; r < n_rings; r++) {
            uint32_t n_points;
            if (!wkb_u32(&w, &n_points)) {
                return false;
            }
            fputs(r ? ",[" : "[", out);
            for (uint32_t k = 0; k < n_points; k++) {
                double x, y;
                if (!wkb_f64(&w, &x) || !wkb_f64(&w, &y)) {
                    return false;
                }
                char xs[STORE_DOUBLE_TEXT_MAX], ys[STORE_DOUBLE_TEXT_MAX];
                store_format_double(x, xs);
                store_format_double(y, ys);
                fprintf(out, "%s[%s,%s]", k ? "," : "", xs, ys);
            }
            fputc(']', out);
        }
        fputc(']', out);
    }
    fputs("]}", out);
    return true;
}

static int geojson_area(const struct store_area *a, void *data)
{
    struct export_ctx *x = data;
    json_t *props = json_pack("{s:s, s:s, s:s, s:s?}", "id", a->id, "kind",
                              store_area_kind_name(a->kind), "name", a->name, "parent",
                              *a->parent ? a->parent : NULL);
    json_t *attrs = json_loads(a->attrs_json, 0, NULL);
    if (!props) {
        json_decref(attrs);
        return STORE_ERR_NOMEM;
    }
    add_missing_keys(props, attrs);
    char *text = json_dumps(props, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(props);
    json_decref(attrs);
    if (!text) {
        return STORE_ERR_NOMEM;
    }
    fprintf(x->out, "%s{\"type\":\"Feature\",\"geometry\":", x->n ? ",\n" : "\n");
    bool ok = wkb_multipolygon_write(a->wkb, a->wkb_len, x->out);
    fprintf(x->out, ",\"properties\":%s}", text);
    free(text);
    if (!ok) {
        return STORE_ERR_IO;
    }
    x->n++;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* CSV                                                                      */
/* ------------------------------------------------------------------------ */

static const char *const csv_core[] = {
    "id", "category", "subtype", "name", "address", "phone", "opening_hours", "lat", "lon",
};
#define N_CSV_CORE (sizeof csv_core / sizeof csv_core[0])

/* Writes one cell, quoted only when it must be (libcsv does the quoting). */
static void csv_cell(FILE *out, const char *s, bool first)
{
    if (!first) {
        fputc(',', out);
    }
    size_t n = strlen(s);
    bool quote = n > 0 && (strpbrk(s, ",\"\r\n") || s[0] == ' ' || s[0] == '\t' ||
                           s[n - 1] == ' ' || s[n - 1] == '\t');
    if (quote) {
        csv_fwrite(out, s, n);
    } else {
        fwrite(s, 1, n, out);
    }
}

static int csv_collect_columns(const struct store_facility *f, void *data)
{
    struct export_ctx *x = data;
    if (x->category >= 0 && f->category != x->category) {
        return 0;
    }
    json_t *attrs = json_loads(f->attrs_json, 0, NULL);
    const char *key;
    json_t *v;
    json_object_foreach(attrs, key, v) {
        bool is_core = false;
        for (size_t i = 0; i < N_CSV_CORE; i++) {
            is_core = is_core || strcmp(key, csv_core[i]) == 0;
        }
        if (!is_core && !json_object_get(x->columns, key)) {
            json_object_set_new(x->columns, key, json_integer(json_object_size(x->columns)));
        }
    }
    json_decref(attrs);
    return 0;
}

static int csv_facility(const struct store_facility *f, void *data)
{
    struct export_ctx *x = data;
    if (x->category >= 0 && f->category != x->category) {
        return 0;
    }
    char lat[STORE_DOUBLE_TEXT_MAX], lon[STORE_DOUBLE_TEXT_MAX];
    store_format_double(f->where.lat_deg, lat);
    store_format_double(f->where.lon_deg, lon);
    const char *core[N_CSV_CORE] = {f->id, store_category_name(f->category), f->subtype,
                                    f->name, f->address, f->phone, f->hours, lat, lon};
    for (size_t i = 0; i < N_CSV_CORE; i++) {
        csv_cell(x->out, core[i], i == 0);
    }
    json_t *attrs = json_loads(f->attrs_json, 0, NULL);
    const char *key;
    json_t *col;
    json_object_foreach(x->columns, key, col) {
        json_t *v = json_object_get(attrs, key);
        char *text = NULL;
        if (v && store_attr_to_text(v, &text) != 0) {
            json_decref(attrs);
            return STORE_ERR_NOMEM;
        }
        csv_cell(x->out, text ? text : "", false);
        free(text);
    }
    fputc('\n', x->out);
    json_decref(attrs);
    x->n++;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                             */
/* ------------------------------------------------------------------------ */

int export_write(struct store *st, FILE *out, int format, int category, bool areas)
{
    struct export_ctx x = {.out = out, .category = category};
    int ret = 0;
    if (format == EXPORT_GEOJSON) {
        fputs("{\"type\":\"FeatureCollection\",\"features\":[", out);
        ret = areas ? store_area_each(st, STORE_AREA_WKB, geojson_area, &x)
                    : store_facility_each(st, geojson_facility, &x);
        fputs("\n]}\n", out);
    } else if (format == EXPORT_CSV && !areas) {
        x.columns = json_object();
        if (!x.columns) {
            return STORE_ERR_NOMEM;
        }
        ret = store_facility_each(st, csv_collect_columns, &x);
        if (ret == 0) {
            for (size_t i = 0; i < N_CSV_CORE; i++) {
                csv_cell(out, csv_core[i], i == 0);
            }
            const char *key;
            json_t *col;
            json_object_foreach(x.columns, key, col) {
                csv_cell(out, key, false);
            }
            fputc('\n', out);
            ret = store_facility_each(st, csv_facility, &x);
        }
        json_decref(x.columns);
    } else {
        return STORE_ERR_ARG;
    }
    if (ret == 0 && (fflush(out) != 0 || ferror(out))) {
        ret = STORE_ERR_IO;
    }
    return ret;
}

static const char *const export_usage =
    "usage: nearest-export --db PATH [--category C] [--format geojson|csv] [--areas] > out\n";

int export_main(int argc, char **argv, FILE *out, FILE *errors)
{
    const char *db_path = NULL;
    int category = -1;
    int format = EXPORT_GEOJSON;
    bool areas = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--db") == 0 && has_value) {
            db_path = argv[++i];
        } else if (strcmp(a, "--category") == 0 && has_value) {
            if (store_category_parse(argv[++i], &category) != 0) {
                fprintf(errors, "nearest-export: --category: unknown category %.40s\n",
                        argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--format") == 0 && has_value) {
            const char *f = argv[++i];
            if (strcmp(f, "geojson") == 0) {
                format = EXPORT_GEOJSON;
            } else if (strcmp(f, "csv") == 0) {
                format = EXPORT_CSV;
            } else {
                fprintf(errors, "nearest-export: --format: expected geojson or csv\n");
                return 2;
            }
        } else if (strcmp(a, "--areas") == 0) {
            areas = true;
        } else {
            fprintf(errors, "nearest-export: unexpected argument %.80s\n%s", a, export_usage);
            return 2;
        }
    }
    if (!db_path) {
        fputs(export_usage, errors);
        return 2;
    }
    if (areas && format == EXPORT_CSV) {
        fprintf(errors, "nearest-export: areas are exported as GeoJSON only\n");
        return 2;
    }
    char err[512];
    struct store *st = NULL;
    int rc = store_open(db_path, &st, err, sizeof err);
    if (rc != 0) {
        fprintf(errors, "nearest-export: %s\n", err);
        return 2;
    }
    rc = export_write(st, out, format, category, areas);
    if (rc != 0) {
        fprintf(errors, "nearest-export: %s: %s\n", store_strerror(rc), store_errmsg(st));
    }
    store_close(st);
    return rc == 0 ? 0 : 2;
}
