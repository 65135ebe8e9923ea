/* catalog.h: the daemon's in-memory copy of every facility.
 *
 * Loaded once at start from the store (store_facility_each), then read by
 * every query on the event-loop thread. It holds what a reply or a filter
 * needs (id, category, name, subtype, position, the category attributes in a
 * typed form parsed once from attrs_json) in compact records, maps ids to
 * slots, and owns the spatial index, whose handles are slot numbers. Address
 * and phone stay in the store.
 *
 * Writes (issue 5) will call catalog_put() / catalog_remove() on the loop
 * thread after the store has committed, so no query sees a half-applied
 * change. Not thread-safe: one thread uses a catalog. */
#ifndef NEARESTD_CATALOG_H
#define NEARESTD_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "geo.h"
#include "geo_area.h"
#include "geo_index.h"
#include "store.h"

enum catalog_err {
    CATALOG_OK = 0,
    CATALOG_ERR_NOMEM = -1,
    CATALOG_ERR_STORE = -2,    /* the store walk failed; the message says why */
    CATALOG_ERR_ARG = -3,      /* a record the index refuses (bad point, category) */
    CATALOG_ERR_NOTFOUND = -4,
    CATALOG_ERR_FULL = -5,     /* more than GEO_MAX_HANDLE + 1 slots or 4 GiB of strings */
};

/* One facility as the catalogue keeps it. Strings are borrowed from the
 * catalogue and valid until the next catalog_put(), catalog_remove(),
 * catalog_load() or catalog_free(). */
struct catalog_facility {
    const char *id;
    const char *name;
    const char *subtype;     /* "" when none */
    int category;            /* enum store_category */
    struct geo_point where;  /* WGS84, to 1e-6 degree (0.11 m) */
    int32_t lat_e6;          /* the same position in integer microdegrees */
    int32_t lon_e6;
    bool plain_text;         /* id and name hold no C0 control character or DEL */
    size_t id_len;           /* strlen(id), or 0 when the catalogue does not keep it
                              * (ids over 255 bytes) */
    size_t name_len;         /* strlen(name), or 0 when empty or over 254 bytes */
    size_t n_attrs;          /* attributes catalog_attrs() would return */
};

struct catalog;

/* Returns an empty catalogue, or NULL when out of memory. Free with catalog_free(). */
struct catalog *catalog_new(void);

/* Frees the catalogue and its index. NULL is a no-op. */
void catalog_free(struct catalog *c);

/* Replaces the content with every area and facility of `st`, building the
 * index in one bulk call and the area set (geo_areas) with its STRtree. An
 * area whose geometry GEOS refuses is left out (catalog_areas_skipped()).
 * Returns 0, or a catalog_err with a one-line message in err; on error the
 * catalogue is empty. */
int catalog_load(struct catalog *c, struct store *st, char *err, size_t err_len);

/* Inserts the facility f->id, or replaces its category, name and position,
 * and updates the index. Returns 0 or a catalog_err; on error nothing changed.
 * (The old name's bytes stay in the string arena until the next load.) */
int catalog_put(struct catalog *c, const struct store_facility *f);

/* Removes the facility `id` from the catalogue and the index. Returns 0 or
 * CATALOG_ERR_NOTFOUND. Its slot is not reused until the next load. */
int catalog_remove(struct catalog *c, const char *id);

/* Sets *slot to the slot of `id`. Returns 0 or CATALOG_ERR_NOTFOUND. */
int catalog_find(const struct catalog *c, const char *id, uint32_t *slot);

/* Fills *out with the facility in `slot` (a handle from the index or from
 * catalog_find()). Returns 0 or CATALOG_ERR_NOTFOUND for a free slot. */
int catalog_get(const struct catalog *c, uint32_t slot, struct catalog_facility *out);

/* Hints that `slot` will be read soon. Replies touch a few slots and strings
 * scattered over tens of MB; asking for all of them before reading any lets
 * the cache misses overlap instead of queueing one behind another. */
void catalog_prefetch(const struct catalog *c, uint32_t slot);

/* Hints that the id and name of `slot` will be read soon. It reads the slot,
 * so it pays off after catalog_prefetch() of the same slot has had time to
 * bring it. */
void catalog_prefetch_text(const struct catalog *c, uint32_t slot);

/* Number of facilities, in all categories or in one (enum store_category). */
size_t catalog_count(const struct catalog *c);
size_t catalog_count_category(const struct catalog *c, int category);

/* The spatial index over the facilities; layer = category, handle = slot,
 * value = the facility's timetable number (catalog_timetable_is_open()), so
 * that OPEN can be the search's value filter. Borrowed; valid until
 * catalog_free(). */
const struct geo_index *catalog_index(const struct catalog *c);

/* Bytes the catalogue holds, its index included. */
size_t catalog_memory_bytes(const struct catalog *c);

/* ---- Attributes (issue 5) ---------------------------------------------------
 *
 * The members of a facility's attrs_json are parsed once, when the facility is
 * loaded or put, into typed values: JSON numbers become CATALOG_NUM, true and
 * false CATALOG_BOOL, strings CATALOG_TEXT, arrays of strings CATALOG_IDS
 * (held joined with ';'); null, objects and other arrays are dropped. Keys are
 * interned: the catalogue holds at most CATALOG_MAX_KEYS distinct attribute
 * names (a facility with more new names keeps the first ones) and at most
 * CATALOG_MAX_ATTRS attributes per facility. */

#define CATALOG_MAX_KEYS 256
#define CATALOG_MAX_ATTRS 32

enum catalog_type {
    CATALOG_NUM = 1,
    CATALOG_BOOL = 2,
    CATALOG_TEXT = 4,
    CATALOG_IDS = 8,
};

/* One attribute of a facility. Strings borrowed like catalog_facility's. */
struct catalog_attr {
    const char *key;
    int type;                /* one enum catalog_type */
    double num;              /* CATALOG_NUM; CATALOG_BOOL as 0 or 1 */
    const char *text;        /* CATALOG_TEXT; CATALOG_IDS as "a;b;c"; NULL otherwise */
};

/* Writes the first min(n, max) attributes of `slot`, in their JSON order, to
 * out[0..] and returns n, their number (0 for a free slot). */
size_t catalog_attrs(const struct catalog *c, uint32_t slot, struct catalog_attr *out,
                     size_t max);

/* Returns the key number of the attribute called `name`, or -1 when no
 * facility loaded or put since the last load has had it. */
int catalog_key_find(const struct catalog *c, const char *name);

/* Number of interned keys; key numbers are 0 .. n - 1. */
size_t catalog_key_count(const struct catalog *c);

/* Returns the name of key `key` (borrowed until catalog_free()), or NULL. */
const char *catalog_key_name(const struct catalog *c, int key);

/* Returns the enum catalog_type bits of the values key `key` has had in
 * facilities of `category` since the last load (0: never seen there). The
 * bits are not cleared when those facilities change or go. */
unsigned catalog_key_types(const struct catalog *c, int category, int key);

/* ---- Conditions (WHERE) -------------------------------------------------------- */

#define CATALOG_KEY_NAME (-2)     /* a condition on the facility's name */
#define CATALOG_KEY_SUBTYPE (-3)  /* ... on its subtype */

enum catalog_op { CATALOG_EQ, CATALOG_NE, CATALOG_LT, CATALOG_LE, CATALOG_GT, CATALOG_GE };

/* "<field> <op> <value>", with the value read every way it can be read. */
struct catalog_cond {
    int key;                  /* a key number, CATALOG_KEY_NAME or CATALOG_KEY_SUBTYPE */
    int op;                   /* enum catalog_op */
    const char *text;         /* the value as given; borrowed */
    bool is_num;              /* the value is a number: num */
    double num;
    bool is_bool;             /* the value is yes/no/true/false: num is 1 or 0 */
};

/* True when facility `slot` satisfies every condition of conds[0..n-1]:
 *  - a number attribute compares numerically with a number value;
 *  - a boolean attribute with yes/no/true/false (false < true);
 *  - text attributes, name and subtype compare bytewise (strcmp);
 *  - an id list is = a value when one of its ids is the value, != when none is,
 *    and never < or >;
 *  - a facility without the attribute, or whose value has another type than
 *    the condition's, does not match (not even !=).
 * False for a free slot. Reads only the catalogue: no parsing per call. */
bool catalog_matches(const struct catalog *c, uint32_t slot, const struct catalog_cond *conds,
                     size_t n);

/* ---- Opening hours (OPEN) -------------------------------------------------------
 *
 * Each facility's timetable is parsed once at load/put (data/hours.h) and
 * shared between facilities with the same text. The timetable that counts:
 * a parking's `shared_hours` attribute when it has one, a meal point's
 * `meal_hours` when it has one, otherwise the opening hours. */

/* True when facility `slot` is open at the instant unix_s seen at UTC +
 * utc_offset_min. False for a free slot or a facility without (valid) hours. */
bool catalog_is_open_at(const struct catalog *c, uint32_t slot, int64_t unix_s,
                        int utc_offset_min);

/* The same check for an instant already resolved with hours_week_minute(), for
 * a query that checks one instant against many facilities: a slot read, a
 * load and a bit test. catalog_is_open_in_week(c, slot, hours_week_minute(t,
 * off)) == catalog_is_open_at(c, slot, t, off); false for a week_minute outside
 * [0, HOURS_MINUTES_PER_WEEK). */
bool catalog_is_open_in_week(const struct catalog *c, uint32_t slot, int week_minute);

/* True when timetable number `timetable_no` is open at `week_minute` (as
 * hours_week_minute() gives it). The number is what the index keeps as each
 * facility's value (catalog_index()), so a search can run OPEN on the values
 * it reads beside its entries, without reading the slots:
 * catalog_timetable_is_open(c, the value of slot s, m) ==
 * catalog_is_open_in_week(c, s, m). False for 0 ("no hours"), a number no
 * timetable has, and a week_minute outside [0, HOURS_MINUTES_PER_WEEK). */
bool catalog_timetable_is_open(const struct catalog *c, uint32_t timetable_no, int week_minute);

/* ---- Areas (INAREA, SERVES, AREAS) -------------------------------------------
 *
 * The areas of the store (district, streets, communities, catchments, service
 * areas), loaded with the facilities by catalog_load() and not changed by
 * writes. Area handles are 0 .. catalog_area_count() - 1 in id order, and are
 * the handles of the geo_areas set. Facilities are linked to areas by their
 * attributes, kept up to date by catalog_put() and catalog_remove():
 *   - a doctor_team's `serves` ids and `service_area` id;
 *   - a school's `catchment` id.
 * Links to ids that are not loaded areas are not kept. */

struct catalog_area {
    const char *id;
    int kind;                /* enum store_area_kind */
    const char *name;
    const char *parent;      /* "" for none */
};

/* Number of areas loaded, and of those left out because GEOS refused them. */
size_t catalog_area_count(const struct catalog *c);
size_t catalog_areas_skipped(const struct catalog *c);

/* Sets *handle to the area `id`. Returns 0 or CATALOG_ERR_NOTFOUND. */
int catalog_area_find(const struct catalog *c, const char *id, uint32_t *handle);

/* Fills *out with area `handle`. Returns 0 or CATALOG_ERR_NOTFOUND. */
int catalog_area_get(const struct catalog *c, uint32_t handle, struct catalog_area *out);

/* The built area set (borrowed; valid until the next load or catalog_free()).
 * Not const: GEOS fills its prepared geometries lazily on queries. */
struct geo_areas *catalog_areas(struct catalog *c);

/* Area `handle`'s polygon as a GeoJSON geometry object in the coordinate
 * system `crs` (enum geo_crs), as reply_geometry_json() writes it: written
 * once by catalog_load(), so answers copy it. NULL for an unknown handle or
 * crs, or when it could not be written (geo_areas_geojson() says why).
 * Borrowed until the next load or catalog_free(). */
const char *catalog_area_geojson(const struct catalog *c, uint32_t handle, int crs);

/* Writes the first min(n, max) slots of the facilities linked to area
 * `handle` (see above), in the order they were linked, to out[0..], and
 * returns n. */
size_t catalog_area_links(const struct catalog *c, uint32_t handle, uint32_t *out, size_t max);

#endif
