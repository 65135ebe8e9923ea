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

/* ---------------------------------------------------------------------------
 * Additions for the daemon and the importer (issue 4). Everything above this
 * line is the original contract and keeps its meaning.
 *
 * Threading: a struct store is one SQLite connection; use it from one thread
 * at a time. Other processes (nearest-import, a second daemon reading) may
 * open the same file: WAL lets readers run beside one writer, and a writer
 * that finds the file locked waits up to STORE_BUSY_TIMEOUT_MS, then fails
 * with STORE_ERR_BUSY. */

/* Details of the calls above, settled by the implementation:
 *  - store_facility_put() stores f->updated_unix when it is > 0 (for a
 *    caller that carries a stamp over) and the current time otherwise; the
 *    importer passes 0. attrs_json is stored re-serialised compactly, keys in
 *    their given order.
 *  - The SQLite page cache is bounded at 8 MiB, raised to 256 MiB only for
 *    the length of a store_bulk_begin() batch. 
 *  - store_facility_each() and the other walks may not write to the same
 *    store from inside fn.
 *  - store_create() loads the dataset with the importer (import.h); its error
 *    message is the first bad record, as nearest-import would print it.
 *  - store_open() of a file with no write permission bits is
 *    STORE_ERR_READONLY even for root. */

/* How long a statement waits for another process's write lock. */
#define STORE_BUSY_TIMEOUT_MS 2000

/* The schema version this build writes; store_open() migrates older files up
 * to it and refuses newer ones with STORE_ERR_SCHEMA. */
#define STORE_SCHEMA_VERSION 2

/* Longest accepted facility or area id, in bytes. */
#define STORE_ID_MAX_BYTES 64

/* Checks a facility record without touching any database: id syntax, known
 * category, valid WGS84 point, attrs_json a JSON object whose known attributes
 * have the right types and ranges (for example stars 1..5, serves an array of
 * ids), and opening hours (and meal_hours / shared_hours) that data/hours.h
 * accepts. Returns 0, or STORE_ERR_ARG and writes "field: reason" (for
 * example "opening_hours: unknown weekday ...") to err. NULL strings other
 * than id are read as "". */
int store_facility_check(const struct store_facility *f, char *err, size_t err_len);

/* Calls fn once with the facility `id` (pointers borrowed for the call).
 * Returns fn's result, STORE_ERR_NOTFOUND, or another store_err. */
int store_facility_get(struct store *st, const char *id, store_facility_fn fn, void *ctx);

/* Returns the number of facilities in *n. Returns 0 or a store_err. */
int store_facility_count(struct store *st, int64_t *n);

/* The last error message of this store (one line, never NULL, "" when none).
 * Borrowed; valid until the next call on st. */
const char *store_errmsg(const struct store *st);

/* Like store_create(), but the records come from fn: it is called once with
 * the new store (a temporary file beside `path`) inside an open bulk batch
 * (store_bulk_begin), puts what it likes, and returns 0 to keep it or a
 * non-zero value to abandon the file, which store_create_with() then returns.
 * On success the file appears at `path` complete; on any failure, or if the
 * process dies, nothing is left at `path`. nearest-import uses this to build a
 * catalogue that does not exist yet. */
typedef int (*store_load_fn)(struct store *st, void *ctx, char *err, size_t err_len);
int store_create_with(const char *path, store_load_fn fn, void *ctx, char *err,
                      size_t err_len);

/* --- Group commit ----------------------------------------------------------
 *
 * Between store_batch_begin() and store_batch_commit(), store_facility_put()
 * and store_facility_delete() join one transaction instead of committing each
 * on its own, so that writes from many clients share one fsync. In a batch a
 * return of 0 means "accepted into the batch": the write is durable only once
 * store_batch_commit() returns 0, and the daemon must not answer OK before.
 * A put that fails validation (STORE_ERR_ARG) or a delete of a missing id
 * (STORE_ERR_NOTFOUND) leaves the batch intact. Any other failure inside a
 * batch (I/O, disk full) poisons it: later calls return STORE_ERR_IO and
 * store_batch_commit() rolls everything back and returns the first error.
 * Batches do not nest. */

/* Starts a batch. Returns 0, STORE_ERR_ARG when one is already open, or a
 * store_err (STORE_ERR_BUSY when another process holds the write lock). */
int store_batch_begin(struct store *st);

/* Commits the batch durably (synchronous=FULL: it survives kill -9 and power
 * loss once this returns 0). On failure everything in the batch is rolled
 * back and a store_err is returned. STORE_ERR_ARG when no batch is open. */
int store_batch_commit(struct store *st);

/* Discards the batch. No-op when none is open. */
void store_batch_rollback(struct store *st);

/* Checks that this connection can take the write lock now: begins an
 * IMMEDIATE transaction (waiting up to STORE_BUSY_TIMEOUT_MS for another
 * process's) and rolls it back, writing nothing. Returns 0, STORE_ERR_BUSY
 * when another process holds the lock that long, or another store_err, with a
 * one-line message in err. The daemon calls it at start, so that a database
 * locked by another process stops start-up instead of failing every write. */
int store_write_probe(struct store *st, char *err, size_t err_len);

/* Starts a batch for a large load (nearest-import): like store_batch_begin(),
 * but the spatial index of facilities is brought up to date once, in
 * store_batch_commit(), instead of row by row, which is several times faster
 * for 10^5+ rows. Other connections see nothing until the commit, and the
 * index is complete when they do. store_facility_delete() in a bulk batch
 * returns STORE_ERR_ARG. End it with store_batch_commit() or _rollback(). */
int store_bulk_begin(struct store *st);

/* --- Areas -----------------------------------------------------------------
 *
 * Districts, streets, communities, school catchments and service areas, as
 * MULTIPOLYGONs in SRID 4326 (a Polygon is stored as a one-part
 * MULTIPOLYGON). */

enum store_area_kind {
    STORE_AREA_DISTRICT = 0,
    STORE_AREA_STREET = 1,
    STORE_AREA_COMMUNITY = 2,
    STORE_AREA_CATCHMENT = 3,
    STORE_AREA_SERVICE_AREA = 4,
    STORE_AREA_KIND_COUNT
};

/* Returns the kind's name ("community"), or NULL when out of range. */
const char *store_area_kind_name(int kind);

/* Sets *out to the kind named `name`. Returns 0 or STORE_ERR_ARG. */
int store_area_kind_parse(const char *name, int *out);

/* An area. Strings are UTF-8, never NULL ("" when unknown; parent is "" for
 * a root). In records passed to a store_area_fn every pointer is borrowed and
 * valid only during the call, and only the geometry forms asked for in the
 * walk's flags are set (the others are NULL / 0). */
struct store_area {
    const char *id;                /* same syntax as facility ids */
    int kind;                      /* enum store_area_kind */
    const char *name;
    const char *parent;            /* id of the enclosing area, "" for none */
    const char *attrs_json;        /* JSON object, "{}" when none */
    const unsigned char *wkb;      /* ISO WKB MULTIPOLYGON, lon/lat order (OGC) */
    size_t wkb_len;
    const char *geojson;           /* GeoJSON geometry object text */
};

#define STORE_AREA_WKB 1     /* fill wkb / wkb_len */
#define STORE_AREA_GEOJSON 2 /* fill geojson */

/* Calls fn for every area in id order, with the geometry forms in `flags`.
 * A non-zero return from fn stops the walk and is returned. */
typedef int (*store_area_fn)(const struct store_area *a, void *ctx);
int store_area_each(struct store *st, int flags, store_area_fn fn, void *ctx);

/* Inserts or replaces the area a->id. The geometry comes from a->geojson
 * (a GeoJSON Polygon or MultiPolygon) when it is not NULL, else from
 * a->wkb. Durable like store_facility_put(), and joins an open batch. Returns
 * 0, or STORE_ERR_ARG with "field: reason" in store_errmsg(). */
int store_area_put(struct store *st, const struct store_area *a);

/* --- Service links -----------------------------------------------------------
 *
 * Derived from facility attributes on every put: a doctor_team's `serves`
 * array gives one STORE_LINK_SERVES link per community id, a school's
 * `catchment` id one STORE_LINK_CATCHMENT link. They are kept in their own
 * tables so that "which team serves my community" is one indexed lookup. The
 * area id is not required to exist in areas. */

enum store_link_kind {
    STORE_LINK_SERVES = 0,    /* doctor_team -> community it serves */
    STORE_LINK_CATCHMENT = 1, /* school -> its catchment area */
};

struct store_link {
    int kind;                /* enum store_link_kind */
    const char *facility_id; /* borrowed for the call */
    const char *area_id;     /* borrowed for the call */
};

/* Calls fn for every link of `kind` (or of every kind when kind is -1), ordered
 * by kind, facility id, area id. `area_id` (may be NULL) keeps only links to
 * that area: store_link_each(st, STORE_LINK_SERVES, "c-12", fn, ctx) lists the
 * teams serving community c-12. */
typedef int (*store_link_fn)(const struct store_link *l, void *ctx);
int store_link_each(struct store *st, int kind, const char *area_id, store_link_fn fn,
                    void *ctx);

#endif
