/* catalog.h: the daemon's in-memory copy of every facility.
 *
 * Loaded once at start from the store (store_facility_each), then read by
 * every query on the event-loop thread. It holds what a reply needs (id,
 * category, name, position) in compact records, maps ids to slots, and owns
 * the spatial index, whose handles are slot numbers. Everything else about a
 * facility (address, hours, attributes) stays in the store.
 *
 * Writes (issue 5) will call catalog_put() / catalog_remove() on the loop
 * thread after the store has committed, so no query sees a half-applied
 * change. Not thread-safe: one thread uses a catalog. */
#ifndef NEARESTD_CATALOG_H
#define NEARESTD_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "geo.h"
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
    int category;            /* enum store_category */
    struct geo_point where;  /* WGS84, to 1e-6 degree (0.11 m) */
    int32_t lat_e6;          /* the same position in integer microdegrees */
    int32_t lon_e6;
};

struct catalog;

/* Returns an empty catalogue, or NULL when out of memory. Free with catalog_free(). */
struct catalog *catalog_new(void);

/* Frees the catalogue and its index. NULL is a no-op. */
void catalog_free(struct catalog *c);

/* Replaces the content with every facility of `st`, building the index in one
 * bulk call. Returns 0, or a catalog_err with a one-line message in err; on
 * error the catalogue is empty. */
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

/* Number of facilities, in all categories or in one (enum store_category). */
size_t catalog_count(const struct catalog *c);
size_t catalog_count_category(const struct catalog *c, int category);

/* The spatial index over the facilities; layer = category, handle = slot.
 * Borrowed; valid until catalog_free(). */
const struct geo_index *catalog_index(const struct catalog *c);

/* Bytes the catalogue holds, its index included. */
size_t catalog_memory_bytes(const struct catalog *c);

#endif
