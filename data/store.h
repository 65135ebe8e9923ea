/* store.h: the SpatiaLite catalogue, nearestd's system of record.
 *
 * One SQLite database file with SpatiaLite metadata, WAL journal, facilities
 * and areas as geometries in SRID 4326 with spatial indexes. The daemon builds
 * its in-memory index from it at start and writes every acknowledged change to
 * it before answering OK. */
#ifndef NEARESTD_STORE_H
#define NEARESTD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "geo.h"

enum store_err {
    STORE_OK = 0,
    STORE_ERR_IO = -1,       /* SQLite or file-system failure; the message says which */
    STORE_ERR_MISSING = -2,  /* the database file does not exist */
    STORE_ERR_SCHEMA = -3,   /* not a nearestd database, or made by a newer build */
    STORE_ERR_ARG = -4,      /* invalid record (bad id, category, point, ...) */
    STORE_ERR_NOTFOUND = -5, /* no such facility or area */
    STORE_ERR_NOMEM = -6,
    STORE_ERR_BUSY = -7,     /* locked by another process */
    STORE_ERR_FULL = -8,     /* disk full: nothing was written */
    STORE_ERR_READONLY = -9, /* the file or directory cannot be written */
    STORE_ERR_EXISTS = -10,  /* store_create() on a path that exists */
};

/* The five categories nearestd knows. Values are stable: they are stored. */
enum store_category {
    STORE_CAT_ELDER_CARE = 0,
    STORE_CAT_MEAL_POINT = 1,
    STORE_CAT_DOCTOR_TEAM = 2,
    STORE_CAT_SCHOOL = 3,
    STORE_CAT_PARKING = 4,
    STORE_CAT_COUNT
};

/* A facility as stored. Every string is UTF-8 and never NULL ("" when
 * unknown). In records passed to a store_facility_fn, every pointer is
 * borrowed and valid only during the call. */
struct store_facility {
    const char *id;          /* stable text id, 1..64 bytes of [A-Za-z0-9_.:-] */
    int category;            /* enum store_category */
    const char *subtype;     /* e.g. "institution", "kindergarten", "shared" */
    const char *name;
    const char *address;
    const char *phone;
    const char *hours;       /* opening hours, the subset described in data/hours.h */
    struct geo_point where;  /* WGS84 */
    const char *attrs_json;  /* JSON object of category attributes, "{}" when none */
    int64_t updated_unix;    /* seconds since the epoch of the last change */
};

struct store;

/* Returns the category's wire name ("meal_point"), or NULL when out of range. */
const char *store_category_name(int category);

/* Sets *out to the category named `name`. Returns 0 or STORE_ERR_ARG. */
int store_category_parse(const char *name, int *out);

/* Opens an existing nearestd database, migrating an older schema forward.
 * On success *out is the caller's, to close with store_close(). On failure
 * returns a store_err and writes one line saying what is wrong to err. */
int store_open(const char *path, struct store **out, char *err, size_t err_len);

/* Creates a new database at `path` and loads the dataset in `dataset_dir`
 * (facilities.geojson and areas.geojson) into it. All or nothing: on any
 * error no file is left at `path`. Returns 0, STORE_ERR_EXISTS when the path
 * exists, or another store_err with a one-line message in err. */
int store_create(const char *path, const char *dataset_dir, char *err, size_t err_len);

/* Closes the database. NULL is a no-op. */
void store_close(struct store *st);

/* Calls fn for every facility, in id order. A non-zero return from fn stops
 * the walk and is returned. Returns 0 or a store_err. */
typedef int (*store_facility_fn)(const struct store_facility *f, void *ctx);
int store_facility_each(struct store *st, store_facility_fn fn, void *ctx);

/* Inserts or replaces the facility with f->id, durably (committed before it
 * returns). Returns 0 or a store_err; on error nothing was written. */
int store_facility_put(struct store *st, const struct store_facility *f);

/* Deletes the facility with this id, durably. Returns 0, STORE_ERR_NOTFOUND
 * or another store_err. */
int store_facility_delete(struct store *st, const char *id);

/* Returns a static sentence for a store_err value. */
const char *store_strerror(int err);

#endif
