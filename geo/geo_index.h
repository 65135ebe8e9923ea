/* geo_index.h: the in-memory spatial index of facilities.
 *
 * The index stores, for each entry, a caller-chosen handle (a small dense
 * integer: the caller's slot number), a layer (the facility's category, below
 * GEO_MAX_LAYERS), a WGS84 position and a 32-bit value the caller chooses (the
 * daemon's: the facility's timetable number). It knows nothing else about
 * facilities: conditions reach the search as callbacks, one on the value kept
 * with each entry (value_filter, which reads memory the search reads anyway)
 * and one on the handle (filter, for whatever the caller must look up).
 *
 * Queries are exact: the set and the order returned equal what an exhaustive
 * scan with geo_distance_m() gives, ties broken by smaller handle.
 *
 * Not thread-safe for writers: one thread writes, and readers must not run
 * concurrently with a writer. The daemon runs queries and index updates on its
 * event-loop thread, so no query ever sees a half-applied update. */
#ifndef NEARESTD_GEO_INDEX_H
#define NEARESTD_GEO_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "geo.h"

#define GEO_MAX_LAYERS 32   /* layers are 0..31; a query selects them by bitmask */
#define GEO_MAX_K 100000    /* the largest k one query may ask for */

/* The largest handle the index accepts. Handles are slot numbers: the index
 * keeps a 4-byte position per handle up to the largest one in use, so they
 * should be dense from 0 (the limit caps that table at 1 GiB). */
#define GEO_MAX_HANDLE 0x0FFFFFFFu

/* At most this many entries (removed ones not yet compacted included) live in
 * one layer; beyond it geo_index_build() and geo_index_put() report
 * GEO_ERR_NOMEM. */
#define GEO_MAX_LAYER_ENTRIES 0x03FFFFFEu

struct geo_index;

/* One entry for geo_index_build(). */
struct geo_entry {
    uint32_t handle;        /* caller's id for the entry, unique */
    uint8_t layer;          /* < GEO_MAX_LAYERS */
    struct geo_point where; /* WGS84, geo_point_is_valid() */
    uint32_t value;         /* the caller's word kept with the entry, for value_filter */
};

/* Return true to keep the entry with this handle. Called during the walk, so
 * entries it rejects never take a place in the result. It is called at most
 * once per entry and query, only for entries of the selected layers that the
 * query's value_filter (if any) kept, in no particular order, and also for
 * entries farther than the hits returned. */
typedef bool (*geo_filter_fn)(uint32_t handle, void *ctx);

/* Return true to keep an entry whose stored value (geo_entry.value) is
 * `value`. Called as geo_filter_fn is (at most once per entry and query,
 * only for entries of the selected layers, in no particular order), but
 * with the value the index keeps beside the entry: the values of a leaf's
 * 16 entries are one cache line next to the leaf, so this costs no memory
 * access of its own, where a handle filter's lookup in a table of the
 * caller's is a cache miss an entry once the table outgrows the caches. */
typedef bool (*geo_value_filter_fn)(uint32_t value, const void *ctx);

struct geo_query {
    struct geo_point from;   /* WGS84 */
    uint32_t layer_mask;     /* bit L set: entries of layer L are candidates */
    size_t k;                /* 1..GEO_MAX_K: at most this many hits */
    double max_distance_m;   /* only hits at or within this distance; INFINITY for none */
    geo_filter_fn filter;    /* NULL keeps every candidate */
    void *filter_ctx;        /* passed to filter */
    /* Optional: runs on each entry's stored value before `filter`; an entry it
     * rejects is never passed to filter and never a hit. NULL keeps every
     * candidate. */
    geo_value_filter_fn value_filter;
    const void *value_ctx;   /* passed to value_filter */
};

struct geo_hit {
    uint32_t handle;
    double distance_m;       /* geo_distance_m(from, entry) */
};

/* Returns a new empty index, or NULL when out of memory. Free with geo_index_free(). */
struct geo_index *geo_index_new(void);

/* Frees the index and everything it holds. NULL is a no-op. */
void geo_index_free(struct geo_index *ix);

/* Replaces the whole content with entries[0..n-1] (their values included) in
 * one bulk build, the fast way to load at start-up. The entries array is
 * read, not kept.
 * Returns 0; GEO_ERR_ARG on an invalid point, a layer out of range, a handle
 * above GEO_MAX_HANDLE or a duplicate handle; GEO_ERR_NOMEM (also when a layer
 * would exceed GEO_MAX_LAYER_ENTRIES). On error the index is unchanged. */
int geo_index_build(struct geo_index *ix, const struct geo_entry *entries, size_t n);

/* Inserts an entry with its value, or, when the handle is already present,
 * gives it this layer, position and value (any of them may be unchanged).
 * The next query sees the change.
 * Returns 0, GEO_ERR_ARG on an invalid point or layer or a handle above
 * GEO_MAX_HANDLE, GEO_ERR_NOMEM. On error the index is unchanged. */
int geo_index_put(struct geo_index *ix, uint32_t handle, uint8_t layer, struct geo_point where,
                  uint32_t value);

/* Removes the entry with this handle. Returns 0 or GEO_ERR_NOTFOUND. */
int geo_index_remove(struct geo_index *ix, uint32_t handle);

/* Number of entries. */
size_t geo_index_count(const struct geo_index *ix);

/* Bytes of memory the index holds (structures and arrays, not malloc overhead). */
size_t geo_index_memory_bytes(const struct geo_index *ix);

/* Writes up to q->k hits to out[0..], nearest first, ties by handle, and their
 * number to *n_out: the entries of the selected layers within max_distance_m
 * that value_filter and filter (those given) keep. `out` is caller-owned with
 * room for q->k hits.
 * Returns 0, or GEO_ERR_ARG when q->k is 0 or above GEO_MAX_K, the point is
 * invalid, or max_distance_m is negative or NaN; GEO_ERR_NOMEM when the
 * search outgrows its stack buffers (k above 64, more than about 240
 * candidates, or more than 48 opened nodes, as when a filter rejects nearly
 * everything) and malloc fails.
 * Queries do not modify the index: any number may run at once between writes.
 * A query uses about 10 KB of stack (struct gi_search, 9.6 KB). */
int geo_index_nearest(const struct geo_index *ix, const struct geo_query *q,
                      struct geo_hit *out, size_t *n_out);

/* One search of a batch: the query, where its hits go (room for q.k), and,
 * once geo_index_nearest_batch() returns, what geo_index_nearest() would
 * have given for it. */
struct geo_batch_item {
    struct geo_query q;
    struct geo_hit *out;     /* caller-owned, room for q.k hits */
    size_t n_out;            /* set: the number of hits */
    int rc;                  /* set: 0 or a GEO_ERR_ code, as geo_index_nearest() */
};

/* Runs items[0..n-1] as n calls of geo_index_nearest() would, with the same
 * hits in the same order and the same return codes, but side by side: the
 * searches take turns a node at a time, each asking for the memory of its
 * next node before giving way, so that the cache misses of one overlap with
 * the work of the others. (A search of 10^6 or more entries spends most of
 * its time waiting for memory; one after another, every wait is paid in
 * full.) Filters (value filters too) are called as geo_index_nearest()
 * calls them, from this thread, the calls of different items interleaved.
 * n may be 0.
 * An item that fails gets n_out = 0 (geo_index_nearest() leaves *n_out alone
 * on GEO_ERR_ARG). A search whose selected layers hold under 256 KB of
 * entries (about 8,000) runs alone, start to end, when its turn comes: those
 * trees stay in cache, and taking turns only costs there.
 * Like a query, it does not modify the index. The call uses about 80 KB of
 * stack (GEO_BATCH_WINDOW searches of 9.6 KB), and mallocs only where
 * geo_index_nearest() would. */
void geo_index_nearest_batch(const struct geo_index *ix, struct geo_batch_item *items, size_t n);

/* geo_index_nearest_batch() keeps this many searches under way at once and
 * starts the next item whenever one ends: a batch of fewer items overlaps
 * less, and a larger batch costs no more per item. */
#define GEO_BATCH_WINDOW 8

#endif
