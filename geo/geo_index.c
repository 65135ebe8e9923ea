/* geo_index.c: the in-memory spatial index: exact k-nearest with filters.
 *
 * The workload: 10^3 to 10^7 facilities in up to 32 layers (categories), read
 * by "nearest k of these layers that pass this filter" thousands of times a
 * second, moved a few times a second, built in bulk at start-up. The targets
 * that shaped it: under 64 bytes per entry, a bulk build of 10^6 entries in
 * under 1 s, and a k=5 query at 10^6 entries (one layer of five, clustered data)
 * in under 5 us, exact distances included, and within 2x of the time at 10^3.
 * BENCHMARKS.md has the figures measured with bench/bench_geo_index.c.
 *
 * Layout. Each layer has a static packed tree (like flatbush, a packed Hilbert
 * R-tree): its entries sorted by the Hilbert key of (lon, lat) on a 2^32 x 2^32
 * grid (about 1 cm), cut into leaves of 16 consecutive entries, 16 leaves to a
 * parent and so on up to one root. A node is only a box, because its children
 * are found by arithmetic. The boxes are axis-aligned float boxes in 3D around
 * the entries' unit vectors (geo_point_to_unit), which has no seam at the
 * antimeridian and no singularity at the poles. The 16 sibling boxes of a node
 * are stored coordinate by coordinate (a 384-byte block), so four lanes at a
 * time measure all 16 from the query (SSE on x86-64, a loop the compiler
 * vectorises elsewhere); that halved the query time at 10^6 entries against
 * one box at a time in doubles. An entry is 36
 * bytes in three parallel arrays: 16 "hot" bytes read for every entry of a
 * visited leaf (the float unit vector, for bounds, and the handle), so a leaf
 * is four cache lines; the 16-byte double lat/lon, read only for the ~5
 * candidates that get an exact distance (and prefetched as they become
 * candidates); and the caller's 4-byte value, read only by a value filter
 * (below). With the boxes (24 bytes per 15 entries) and a 4-byte handle ->
 * location table that is about 42 bytes an entry. Arrays of 2 MB or more sit
 * on huge pages (grow()), rounded up by at most half: 53 bytes an entry at
 * 10^6 entries in five layers, 60.4 at the worst rounding (grow()).
 *
 * Updates. A removed or moved entry stays in its tree as a tombstone (handle
 * GI_DEAD), and puts go to the layer's small "delta" tree: the same structure,
 * kept sorted by inserting in place and relinked on every put, which costs
 * O(delta) and is nothing at a few writes a second. When the delta and the
 * tombstones together pass max(256, live/32) entries, the layer is rebuilt in
 * one O(n) pass (radix sort), so queries never walk more than a few percent
 * of dead or unsorted entries. A handle -> (layer, tree, position) table makes
 * remove O(1) for the main tree and O(delta) for the delta.
 *
 * Search, in two phases. Phase 1 visits the leaves of the selected layers'
 * trees in order of their boxes' distance (best first, over a heap that holds
 * one item per "open" node, keyed by its nearest child not yet taken, going
 * straight on to a node's nearest child when nothing queued is nearer), and
 * stops at the first box beyond the limit:
 * max_distance_m, or, once k candidates are known, the k-th smallest of their
 * upper bounds (below), since k entries are at least that near. The tombstone
 * check and the filters (the value filter, then the handle filter) run as a
 * leaf is read, so rejected entries never become candidates however many
 * there are. A leaf is read in two passes: the first
 * notes the squared chords of its entries within the limit and updates the
 * limit once; the second makes those still within it candidates, with their
 * lower bounds (at 10^5 entries, k=5: 9.1 candidates a query, where noting
 * and adding entry by entry made 17.5, all 16 of the first leaf). Phase 2
 * drops the candidates beyond the final limit. When at most k + 1 remain
 * (5.4 on average in that case) each gets its exact distance, and they are
 * ordered by distance and handle (up to 8 by counting each one's place
 * without branches, more by insertion). Otherwise they go into a
 * binary min-heap keyed in metres, popped until k hits: a bounded entry gets
 * its exact distance and goes back in with it; an exact entry at the front is
 * the next hit, since nothing left can be nearer. Equal keys pop bounded
 * entries before exact ones, and exact ones by handle, which gives the
 * ties-by-handle order. The upper bound is about 1 % above the distance, so
 * the heap computes few more than k exact distances (5.1 for k=5).
 * Measured at 10^6 entries, k=5, one layer: a first version, best first over
 * one heap of boxes and entries, pushed about 160 items a query and spent
 * most of its time in the heap; a depth-first walk with no heap visited 12
 * leaves where 2.8 touch the k-nearest ball; best first over nodes visits 2.9.
 * Queueing every child within the limit pushed about 55 nodes a query at 10^6
 * (the limit is infinite until k candidates are known) to pop about 5; the
 * lazy queue pushes a few, which with the split entries, huge pages and SSE
 * minimums took the query from 2.1 to 1.28 - 1.36 us (0.73 - 0.75 us at
 * 10^3: 1.73 - 1.86x).
 * Tried without gain: prefetching the leaves within the limit when their
 * parent is opened, or the next leaf when an open node is queued again.
 * Instruction counts (the daemon's NEAREST k=5 at 10^5 facilities, callgrind
 * through bench/count-instructions): the query's own walk was about 7300 of
 * them; measuring boxes with SSE intrinsics, sums in registers (block_chord2),
 * took off 900, iterating the mask's set bits instead of 32 layers 220, the
 * two-pass leaves 330, and the insertion sort for few candidates 250. Reading
 * a leaf's entries four at a time in SSE (transposed, tests as masks) took
 * off only 80 more and was left out.
 * None of that made a query faster: bench_geo_index and the daemon's user
 * time stayed within their noise. A query is a chain of dependent steps, and
 * callgrind's branch simulation counted 77 mispredicted branches in one at
 * 10^5 entries, a third of its time or more. The leaves' keep-or-drop tests
 * and the heap of the k smallest chords were 43 of them; advancing indices
 * by 0 or 1 instead, and for k <= GI_SORTED_K a sorted array updated with
 * min and max, made the query about 0.12 us (12 - 15 %) faster at 10^3 -
 * 10^5 entries and the daemon about 0.2 us a request, for 1100 more
 * instructions than the heap. The same sorted update in SSE pairs took
 * fewer instructions but lost the gain again (each update's loads straddle
 * the previous one's stores, which defeats store forwarding). Placing up to
 * 8 final candidates by counting instead of inserting them took another
 * 0.05 - 0.07 us off (for 320 more instructions); doing so up to 8 whatever
 * k (more exact distances, computed side by side) was no clearer gain.
 * Together (bench_geo_index, one layer, k=5, two runs each, interleaved):
 * 0.67 - 0.69 -> 0.53 - 0.54 us at 10^3, 0.99 - 1.00 -> 0.76 - 0.77 us at
 * 10^5, 1.16 - 1.19 -> 0.91 - 0.92 us at 10^6 (1.7x the time at 10^3);
 * callgrind counts 10030 -> 7830 instructions a query inside
 * geo_index_nearest() and 78 -> 38 mispredicted branches.
 *
 * Batches. The daemon collects the NEARESTs of one event-loop iteration (20 -
 * 50 at 50 connections) for geo_index_nearest_batch(). At 10^7 entries a
 * query spends half its time or more waiting for memory (bench_geo_index,
 * one layer: 1.8 - 2.1 us, against 0.94 us with 64 query points kept hot):
 * the first lines of each box block and leaf it visits miss (about 200 ns
 * from memory here), and each node is known only once the one before it is
 * read. So the walk goes a node at a time (walk_visit() reads one node and
 * names the next), a search's whole state is one struct gi_search, and a
 * batch keeps GEO_BATCH_WINDOW = 8 of them in turn: each step ends by
 * prefetching every line of the search's next node (a block: six, a leaf's
 * entries: four), which has arrived by the search's next turn, and phase 2
 * waits one more turn, for the positions of the last leaf's candidates.
 * geo_index_nearest() runs the same steps back to back, without prefetches;
 * it did not get slower (same index and queries, old and new code
 * alternating, one layer: new 1.69 - 1.79, old 1.71 - 1.83 us at 10^7; new
 * 0.59 - 0.62, old 0.60 - 0.62 at 10^3). In batches of 16 - 64 (medians of
 * four runs): at 10^7 one layer 1.95 -> 1.34 - 1.38 us, with the 1 % filter
 * 9.3 -> 6.5 - 6.7, all five layers 8.9 -> 5.1 - 5.4 (60 - 70 % of the
 * memory time hidden); at 10^6 all layers 4.8 -> 3.9 - 4.0. Windows of 4, 8, 16 and 32
 * gave the same times within noise: a step is about 100 ns of work, so two
 * or three other searches cover a miss, and this core keeps about 13 lines
 * in flight (a pointer chase over 512 MB: 207 ns a step alone, 16 ns a line
 * with 16 or more chains), which the prefetches of eight searches already
 * fill; 8 takes half of 16's stack (77 KB). Smaller search states would not
 * help either: 32 of them (300 KB) were no slower than 4. Where the selected
 * trees hold under 256 KB of entries (GI_BATCH_MIN_BYTES) each search runs
 * alone: they stay in cache. In bench_geo_index's tight loop, where nothing
 * else runs between queries, taking turns cost 8 - 20 % more time a query at
 * 10^4 - 10^5 entries (state in memory instead of registers, branches of
 * eight searches mixed), nothing at 6.4 MB and gained 10 % at 12.8 MB; but
 * in the daemon, whose kernel work between requests evicts the trees from
 * the caches, taking turns gained at 10^5 facilities (one layer of 640 KB:
 * 2.9 -> 2.4 us of user time a NEAREST at 50 connections x 1) and at 10^6
 * (6.4 MB: 3.3 -> 3.1 us), and lost nothing measurable at 10^3.
 *
 * Values. The caller keeps a 32-bit value with each entry (the daemon: the
 * facility's timetable number), in an array parallel to the entries and on a
 * 64-byte boundary, so that the values of leaf j, [16j, 16j + 16), are one
 * cache line. A query's value filter runs on the values of a leaf's entries
 * within reach, in order, before the handle filter, which sees only the
 * entries it kept. The daemon's OPEN was a handle filter reading a 4-byte
 * timetable number per slot from a table in slot order, which is spatially
 * random: 40 - 100 entries a NEAREST, each a cache miss in 40 MB at 10^7
 * facilities, and 28 % of the daemon's time there (13 % at 10^6), of which a
 * prefetch of the leaf's words before the filter's first call hid only a
 * part. Beside the leaf, the same check reads one line a leaf, which the
 * batch's prefetch of a leaf (prefetch_node()) asks for too when the query
 * has a value filter, and visit_leaf() asks for before it measures the
 * entries, so that in a search alone the two misses overlap (bench_geo_index
 * at 10^6 entries, one layer, 1 % kept, three runs each: 6.14 - 6.38 ->
 * 5.78 - 5.89 us a query, against 5.65 - 6.04 for the same entries kept by
 * a handle filter that reads no memory; in batches of 16, 6.10 - 6.23 us
 * with or without it). The value follows its entry through the radix sort,
 * the delta's inserts in place, moves and rebuilds; a tombstone's value is
 * never read.
 *
 * Why the lower bound is safe. Let c be the chord between the query's unit
 * vector and an entry's (both of geodetic latitude and longitude). The normal
 * of the ellipsoid turns by the central angle t >= c along any path between
 * the two points, and it turns at most at the largest principal curvature,
 * 1 / (a (1 - e^2)) = 1 / GEO_MIN_RADIUS_M, so the geodesic is at least
 * GEO_MIN_RADIUS_M * c (geo_distance.h). For a box, c is at least the
 * Euclidean distance from the query to the box, chordmin. Three corrections
 * keep this true of the numbers we compare, not just of real arithmetic:
 *   - the stored unit vectors are floats, each component within 2^-25 of the
 *     double one, so within 5.2e-8 in length; we subtract GI_UNIT_EPS = 2e-7
 *     (the double unit vectors themselves are within 1e-15);
 *   - geo_distance_m() may be below the true geodesic by up to its promised
 *     1 mm, and the doubles round by about 1e-9 m (GEO_BOUND_SLACK_M); we
 *     subtract GI_DISTANCE_SLACK_M = 1 mm + GEO_BOUND_SLACK_M;
 *   - for one entry, the chord is computed in doubles from the floats, which
 *     are exact in double; its rounding (1e-16 relative) is far inside the
 *     slack. For boxes it is computed in floats, from the query's vector
 *     rounded to float (another 5.2e-8, which GI_UNIT_EPS also covers) with
 *     at most 2.1e-7 relative rounding, which set_limit() covers by widening
 *     the squared limit by 1e-5.
 * So bound(box) = max(0, GEO_MIN_RADIUS_M * (chordmin - GI_UNIT_EPS) -
 * GI_DISTANCE_SLACK_M) <= geo_distance_m(query, e) for every e in the box, and
 * likewise for one entry with its own float vector. The two corrections cost
 * about 1.3 m of pruning, which only ever adds an exact distance or two.
 *
 * Why the upper bound is safe. The Gauss map of the ellipsoid is one-to-one,
 * so the points whose normals run along the great-circle arc between the two
 * normals form a path between the two points; along it the point moves at most
 * R_max = a^2 / b (the largest radius of curvature, at the poles) per radian
 * the normal turns, so the geodesic is at most R_max * t, with the central
 * angle t = 2 asin(c / 2) <= c (1 + c^2 / 20) for c <= 1 (the Taylor terms are
 * positive and sum to 0.047 at c = 1). With the float rounding (c + 2e-7) and
 * the 1 mm promise added, upper_bound_m() >= geo_distance_m(). It is used only
 * as a limit, never as a key.
 *
 * Exact distances come from geo_distance_ecef_m() with the query converted
 * once (its normal is also the query's unit vector for the bounds, equal bit
 * for bit to geo_point_to_unit()), which geo_distance.h promises equals
 * geo_distance_m() bit for bit;
 * tests/test_geo_index.c compares the index with a scan over geo_distance_m()
 * for equality, not within a tolerance.
 *
 * Not here: what the handles and values mean, attribute conditions (the
 * filter callbacks), and any locking (geo_index.h: one writer, readers not
 * concurrent with it). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "geo_distance.h"
#include "geo_index.h"

/* For the few functions of a search that both geo_index_nearest() and
 * geo_index_nearest_batch() call: GCC 12 inlines them into neither then,
 * which made a single query 3 - 5 % slower. */
#define GI_INLINE static inline __attribute__((always_inline))

#define GI_NODE_SIZE 16   /* entries per leaf and children per inner node */
#define GI_MAX_LEVELS 8   /* 16^7 leaves exceed GEO_MAX_LAYER_ENTRIES */
#define GI_DEAD UINT32_MAX /* the handle of a tombstone */
#define GI_NOWHERE UINT32_MAX /* location of a handle not in the index */
#define GI_DELTA_MIN 256  /* rebuild a layer when delta + tombstones pass */
#define GI_DELTA_SHIFT 5  /* ... max(GI_DELTA_MIN, live >> GI_DELTA_SHIFT) */
#define GI_UNIT_EPS 2e-7  /* float rounding of a stored unit vector, with margin */
#define GI_DISTANCE_SLACK_M (1e-3 + GEO_BOUND_SLACK_M)

/* a^2 / b, the largest radius of curvature of WGS84 (at the poles), rounded up. */
#define GI_MAX_RADIUS_M 6399593.63

/* Location of a handle: bits 0..25 position, bit 26 delta tree, 27..31 layer.
 * GI_NOWHERE would be layer 31, delta, position 2^26 - 1, which no tree
 * reaches because a tree holds at most GEO_MAX_LAYER_ENTRIES = 2^26 - 2. */
#define GI_POS_BITS 26
#define GI_POS_MASK ((1u << GI_POS_BITS) - 1)
#define GI_LOC_DELTA (1u << GI_POS_BITS)
#define GI_LOC_LAYER_SHIFT 27

/* The part of an entry that phase 1 reads for every entry of a leaf: 16
 * bytes, so a leaf is four cache lines. */
struct gi_entry {
    float unit[3];   /* geo_point_to_unit(), rounded to float */
    uint32_t handle; /* GI_DEAD for a tombstone */
};

/* The part read only for the candidates that need an exact distance, in a
 * parallel array. */
struct gi_spot {
    double lat_deg, lon_deg; /* the WGS84 point as given */
};

/* Both parts and the caller's value together, while building and rebuilding. */
struct gi_staged {
    struct gi_entry e;
    struct gi_spot at;
    uint32_t value;
};

/* The boxes of up to 16 siblings, coordinate by coordinate so that one loop
 * measures all 16 at once (the compiler turns it into SIMD). A box bounds the
 * float unit vectors below its node. Unused lanes hold the empty box
 * (lo = +inf, hi = -inf), which is infinitely far and changes no min or max. */
struct gi_block {
    float lo[3][GI_NODE_SIZE];
    float hi[3][GI_NODE_SIZE];
};

/* A packed tree: entries in curve order, boxes of every level, leaves first.
 * Box c of level l is lane c % 16 of block level_start[l] + c / 16, so the
 * children of node j of level l are exactly block level_start[l - 1] + j. */
struct gi_tree {
    struct gi_entry *entries;
    struct gi_spot *spots; /* spots[i] is where entries[i] is */
    uint32_t *values;   /* values[i] is entries[i]'s caller value (geo_entry.value); on a
                         * 64-byte boundary, so a leaf's 16 values are one cache line */
    uint32_t n;         /* entries, tombstones included */
    uint32_t cap;       /* allocated entries */
    struct gi_block *blocks;
    uint32_t block_cap; /* allocated blocks */
    uint32_t n_levels;  /* 0 for an empty tree; the last level is the root */
    uint32_t level_start[GI_MAX_LEVELS + 1]; /* blocks of level l: [start[l], start[l+1]) */
};

struct gi_layer {
    struct gi_tree main;  /* built in bulk; removed entries are tombstones */
    struct gi_tree delta; /* recent puts, sorted in place, no tombstones */
    uint32_t n_dead;      /* tombstones in main */
};

struct geo_index {
    struct gi_layer layers[GEO_MAX_LAYERS];
    uint32_t *where;  /* handle -> location, GI_NOWHERE when absent */
    size_t where_len; /* handles the table covers */
    size_t count;     /* live entries */
};

/* ---- Curve keys and sorting --------------------------------------------- */

static uint32_t grid_coord(double v, double lo, double span) {
    double f = (v - lo) * (4294967296.0 / span);
    if (!(f > 0.0)) {
        return 0;
    }
    return f >= 4294967295.0 ? UINT32_MAX : (uint32_t)f;
}

/* Position of (lon, lat) along a Hilbert curve over the 2^32 x 2^32 grid.
 * Locality only matters for speed; any order would give correct answers. */
static uint64_t hilbert_key(double lat_deg, double lon_deg) {
    uint32_t x = grid_coord(lon_deg, -180.0, 360.0);
    uint32_t y = grid_coord(lat_deg, -90.0, 180.0);
    uint64_t d = 0;
    for (int bit = 31; bit >= 0; bit--) {
        uint32_t rx = (x >> bit) & 1u;
        uint32_t ry = (y >> bit) & 1u;
        d |= (uint64_t)((3u * rx) ^ ry) << (2 * bit);
        if (ry == 0) {
            if (rx == 1) {
                x = ~x;
                y = ~y;
            }
            uint32_t t = x;
            x = y;
            y = t;
        }
    }
    return d;
}

struct gi_keyed {
    uint64_t key;
    uint32_t idx;
};

/* LSD radix sort of a[0..n-1] by key, 8 bits a pass, skipping the passes in
 * which every key has the same byte (the high ones, for data in one city). */
static void radix_sort(struct gi_keyed *a, struct gi_keyed *tmp, size_t n) {
    size_t count[8][256];
    memset(count, 0, sizeof count);
    for (size_t i = 0; i < n; i++) {
        uint64_t k = a[i].key;
        for (int p = 0; p < 8; p++) {
            count[p][(k >> (8 * p)) & 255]++;
        }
    }
    struct gi_keyed *src = a, *dst = tmp;
    for (int p = 0; p < 8; p++) {
        size_t *c = count[p];
        if (n == 0 || c[(src[0].key >> (8 * p)) & 255] == n) {
            continue;
        }
        size_t sum = 0;
        for (int b = 0; b < 256; b++) {
            size_t t = c[b];
            c[b] = sum;
            sum += t;
        }
        for (size_t i = 0; i < n; i++) {
            dst[c[(src[i].key >> (8 * p)) & 255]++] = src[i];
        }
        struct gi_keyed *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) {
        memcpy(a, src, n * sizeof *a);
    }
}

/* ---- Packed trees --------------------------------------------------------- */

static struct gi_staged entry_make(uint32_t handle, struct geo_point where, uint32_t value) {
    double u[3];
    geo_point_to_unit(where, u);
    struct gi_staged e = {
        .e = {.unit = {(float)u[0], (float)u[1], (float)u[2]}, .handle = handle},
        .at = {.lat_deg = where.lat_deg, .lon_deg = where.lon_deg},
        .value = value,
    };
    return e;
}

static uint32_t div_up(uint32_t n) {
    return (n + GI_NODE_SIZE - 1) / GI_NODE_SIZE;
}

/* Blocks a tree of n entries needs, all levels. */
static size_t blocks_for(size_t n) {
    if (n == 0) {
        return 0;
    }
    uint32_t count = div_up((uint32_t)n);
    size_t total = div_up(count);
    while (count > 1) {
        count = div_up(count);
        total += div_up(count);
    }
    return total;
}

static void block_clear(struct gi_block *b) {
    for (int a = 0; a < 3; a++) {
        for (int i = 0; i < GI_NODE_SIZE; i++) {
            b->lo[a][i] = INFINITY;
            b->hi[a][i] = -INFINITY;
        }
    }
}

/* Recomputes every box of t from its entries; t->block_cap must suffice. */
static void tree_link(struct gi_tree *t) {
    t->n_levels = 0;
    if (t->n == 0) {
        return;
    }
    uint32_t count = div_up(t->n);
    t->level_start[0] = 0;
    for (uint32_t b = 0; b < div_up(count); b++) {
        block_clear(&t->blocks[b]);
    }
    for (uint32_t j = 0; j < count; j++) {
        struct gi_block *b = &t->blocks[j / GI_NODE_SIZE];
        uint32_t lane = j % GI_NODE_SIZE;
        uint32_t end = t->n - j * GI_NODE_SIZE < GI_NODE_SIZE ? t->n : (j + 1) * GI_NODE_SIZE;
        for (uint32_t i = j * GI_NODE_SIZE; i < end; i++) {
            for (int a = 0; a < 3; a++) {
                float v = t->entries[i].unit[a];
                b->lo[a][lane] = v < b->lo[a][lane] ? v : b->lo[a][lane];
                b->hi[a][lane] = v > b->hi[a][lane] ? v : b->hi[a][lane];
            }
        }
    }
    t->n_levels = 1;
    t->level_start[1] = div_up(count);
    while (count > 1) {
        uint32_t below = t->level_start[t->n_levels - 1];
        uint32_t start = t->level_start[t->n_levels];
        uint32_t up = div_up(count);
        for (uint32_t b = 0; b < div_up(up); b++) {
            block_clear(&t->blocks[start + b]);
        }
        for (uint32_t j = 0; j < up; j++) {
            const struct gi_block *kids = &t->blocks[below + j];
            struct gi_block *b = &t->blocks[start + j / GI_NODE_SIZE];
            uint32_t lane = j % GI_NODE_SIZE;
            for (int a = 0; a < 3; a++) {
                for (int i = 0; i < GI_NODE_SIZE; i++) {
                    float lo = kids->lo[a][i], hi = kids->hi[a][i];
                    b->lo[a][lane] = lo < b->lo[a][lane] ? lo : b->lo[a][lane];
                    b->hi[a][lane] = hi > b->hi[a][lane] ? hi : b->hi[a][lane];
                }
            }
        }
        count = up;
        t->n_levels++;
        t->level_start[t->n_levels] = start + div_up(up);
    }
}

#define GI_HUGE_BYTES ((size_t)2 << 20)
#define GI_LINE_BYTES 64

/* The bytes grow() allocates for `want`: rounded up to whole 2 MB pages from
 * 2 MB on when that adds at most a half (see grow()). */
static size_t grow_size(size_t want) {
    if (want < GI_HUGE_BYTES) {
        return want;
    }
    size_t got = (want + GI_HUGE_BYTES - 1) & ~(GI_HUGE_BYTES - 1);
    return (got - want) * 2 <= want ? got : want;
}

/* Resizes *p (holding `keep` bytes worth keeping) to at least `want` bytes
 * on an `align`-byte boundary (a power of two up to 2 MB) and returns the
 * size it got, or 0 on failure with *p untouched. Arrays of
 * 2 MB or more start on a 2 MB boundary, are rounded up to whole 2 MB pages
 * when that adds at most a half, and the kernel is asked to back them with
 * huge pages (it does so only on request under the usual
 * transparent_hugepage=madvise). A query jumps to a few random leaves among
 * megabytes of entries; with 4 KB pages each jump is also a TLB miss, and
 * page walks are slow under virtualisation. Measured at 10^6 entries (3.2 MB
 * arrays): 1.49 - 1.51 us a query before, 1.32 - 1.34 us with the arrays
 * rounded to 4 MB, and no gain with only the start aligned (the tail in small
 * pages). Past a half the memory target matters more: just above 2 MB,
 * rounding would double the array; with at most half, an entry costs at most
 * 1.5 * 36 + 4 + 2.4 = 60.4 bytes, under the 64 of the target. (The values'
 * array, a quarter of the entries', whose rounding sets the capacity, may
 * round up once more on its own: by a third at most, from 3 to 4 MB, where
 * the entries' array was rounded by at most 1.2, so that bound holds.)
 * Smaller arrays take malloc's alignment, or `align` bytes when that is
 * more: the values' 64. */
static size_t grow(void **p, size_t keep, size_t want, size_t align) {
    bool huge = want >= GI_HUGE_BYTES;
    if (!huge && align <= _Alignof(max_align_t)) {
        void *q = realloc(*p, want);
        if (q == NULL) {
            return 0;
        }
        *p = q;
        return want;
    }
    size_t got = grow_size(want);
    void *q = NULL;
    if (posix_memalign(&q, huge ? GI_HUGE_BYTES : align, got) != 0) {
        return 0;
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (huge) {
        (void)madvise(q, got & ~(GI_HUGE_BYTES - 1), MADV_HUGEPAGE); /* only a hint */
    }
#endif
    if (keep > 0) {
        memcpy(q, *p, keep);
    }
    free(*p);
    *p = q;
    return got;
}

/* Makes room for n entries and their boxes. Changes nothing on failure. */
static int tree_reserve(struct gi_tree *t, size_t n) {
    if (n > GEO_MAX_LAYER_ENTRIES) {
        return GEO_ERR_NOMEM;
    }
    if (n > t->cap) {
        size_t cap = t->cap < 16 ? 16 : t->cap + t->cap / 2;
        cap = cap < n ? n : cap;
        cap = cap > GEO_MAX_LAYER_ENTRIES ? GEO_MAX_LAYER_ENTRIES : cap;
        /* Any rounding up is capacity. The entries may grow before the spots
         * or the values fail: harmless, cap is what all three have. */
        size_t got = grow((void **)&t->entries, t->n * sizeof *t->entries,
                          cap * sizeof *t->entries, _Alignof(struct gi_entry));
        if (got == 0) {
            return GEO_ERR_NOMEM;
        }
        cap = got / sizeof *t->entries;
        cap = cap > GEO_MAX_LAYER_ENTRIES ? GEO_MAX_LAYER_ENTRIES : cap;
        if (grow((void **)&t->spots, t->n * sizeof *t->spots, cap * sizeof *t->spots,
                 _Alignof(struct gi_spot)) == 0 ||
            grow((void **)&t->values, t->n * sizeof *t->values, cap * sizeof *t->values,
                 GI_LINE_BYTES) == 0) {
            return GEO_ERR_NOMEM;
        }
        t->cap = (uint32_t)cap;
    }
    if (blocks_for(n) > t->block_cap) {
        size_t cap = blocks_for(t->cap);
        size_t got = grow((void **)&t->blocks, blocks_for(t->n) * sizeof *t->blocks,
                          cap * sizeof *t->blocks, _Alignof(struct gi_block));
        if (got == 0) {
            return GEO_ERR_NOMEM;
        }
        t->block_cap = (uint32_t)(got / sizeof *t->blocks);
    }
    return GEO_OK;
}

static void tree_clear(struct gi_tree *t) {
    free(t->entries);
    free(t->spots);
    free(t->values);
    free(t->blocks);
    memset(t, 0, sizeof *t);
}

/* Builds *out (empty on entry) from src[0..n-1], in curve order. src is read,
 * not kept. Returns 0 or GEO_ERR_NOMEM, leaving *out empty. */
static int tree_make(struct gi_tree *out, const struct gi_staged *src, size_t n) {
    int rc = GEO_ERR_NOMEM;
    struct gi_keyed *keyed = malloc((n ? n : 1) * sizeof *keyed);
    struct gi_keyed *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (keyed == NULL || tmp == NULL || tree_reserve(out, n) != GEO_OK) {
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        keyed[i].key = hilbert_key(src[i].at.lat_deg, src[i].at.lon_deg);
        keyed[i].idx = (uint32_t)i;
    }
    radix_sort(keyed, tmp, n);
    for (size_t i = 0; i < n; i++) {
        out->entries[i] = src[keyed[i].idx].e;
        out->spots[i] = src[keyed[i].idx].at;
        out->values[i] = src[keyed[i].idx].value;
    }
    out->n = (uint32_t)n;
    tree_link(out);
    rc = GEO_OK;
done:
    if (rc != GEO_OK) {
        tree_clear(out);
    }
    free(tmp);
    free(keyed);
    return rc;
}

/* ---- Locations and updates ------------------------------------------------ */

static uint32_t loc_make(unsigned layer, bool delta, uint32_t pos) {
    return (uint32_t)layer << GI_LOC_LAYER_SHIFT | (delta ? GI_LOC_DELTA : 0) | pos;
}

/* Points the handles of t's entries from `first` on at their positions. */
static void tree_relocate(struct geo_index *ix, unsigned layer, bool delta, uint32_t first) {
    struct gi_tree *t = delta ? &ix->layers[layer].delta : &ix->layers[layer].main;
    for (uint32_t i = first; i < t->n; i++) {
        if (t->entries[i].handle != GI_DEAD) {
            ix->where[t->entries[i].handle] = loc_make(layer, delta, i);
        }
    }
}

static size_t layer_live(const struct gi_layer *l) {
    return (size_t)l->main.n - l->n_dead + l->delta.n;
}

/* Merges the delta and drops the tombstones of `layer` into a new main tree.
 * On GEO_ERR_NOMEM nothing changes (the layer just stays slower). */
static int layer_rebuild(struct geo_index *ix, unsigned layer) {
    struct gi_layer *l = &ix->layers[layer];
    size_t n = layer_live(l);
    struct gi_staged *live = malloc((n ? n : 1) * sizeof *live);
    if (live == NULL) {
        return GEO_ERR_NOMEM;
    }
    size_t m = 0;
    for (uint32_t i = 0; i < l->main.n; i++) {
        if (l->main.entries[i].handle != GI_DEAD) {
            live[m].e = l->main.entries[i];
            live[m].at = l->main.spots[i];
            live[m++].value = l->main.values[i];
        }
    }
    for (uint32_t i = 0; i < l->delta.n; i++) {
        live[m].e = l->delta.entries[i];
        live[m].at = l->delta.spots[i];
        live[m++].value = l->delta.values[i];
    }
    struct gi_tree fresh = {0};
    int rc = tree_make(&fresh, live, n);
    free(live);
    if (rc != GEO_OK) {
        return rc;
    }
    tree_clear(&l->main);
    l->main = fresh;
    l->n_dead = 0;
    l->delta.n = 0;
    tree_link(&l->delta);
    tree_relocate(ix, layer, false, 0);
    return GEO_OK;
}

static void layer_maybe_rebuild(struct geo_index *ix, unsigned layer) {
    struct gi_layer *l = &ix->layers[layer];
    size_t limit = layer_live(l) >> GI_DELTA_SHIFT;
    limit = limit < GI_DELTA_MIN ? GI_DELTA_MIN : limit;
    if ((size_t)l->delta.n + l->n_dead > limit) {
        (void)layer_rebuild(ix, layer); /* on failure, retried at the next write */
    }
}

/* Takes the entry at `loc` out of its tree; the handle's location is left to
 * the caller. Cannot fail. */
static void detach(struct geo_index *ix, uint32_t loc) {
    unsigned layer = loc >> GI_LOC_LAYER_SHIFT;
    uint32_t pos = loc & GI_POS_MASK;
    struct gi_layer *l = &ix->layers[layer];
    if (!(loc & GI_LOC_DELTA)) {
        l->main.entries[pos].handle = GI_DEAD;
        l->n_dead++;
        return;
    }
    struct gi_tree *t = &l->delta;
    memmove(&t->entries[pos], &t->entries[pos + 1], (t->n - pos - 1) * sizeof *t->entries);
    memmove(&t->spots[pos], &t->spots[pos + 1], (t->n - pos - 1) * sizeof *t->spots);
    memmove(&t->values[pos], &t->values[pos + 1], (t->n - pos - 1) * sizeof *t->values);
    t->n--;
    tree_relocate(ix, layer, true, pos);
    tree_link(t);
}

/* Inserts e into the delta of `layer` at its curve position; room must have
 * been reserved. */
static void delta_insert(struct geo_index *ix, unsigned layer, struct gi_staged e) {
    struct gi_tree *t = &ix->layers[layer].delta;
    uint64_t key = hilbert_key(e.at.lat_deg, e.at.lon_deg);
    uint32_t lo = 0, hi = t->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (hilbert_key(t->spots[mid].lat_deg, t->spots[mid].lon_deg) <= key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    memmove(&t->entries[lo + 1], &t->entries[lo], (t->n - lo) * sizeof *t->entries);
    memmove(&t->spots[lo + 1], &t->spots[lo], (t->n - lo) * sizeof *t->spots);
    memmove(&t->values[lo + 1], &t->values[lo], (t->n - lo) * sizeof *t->values);
    t->entries[lo] = e.e;
    t->spots[lo] = e.at;
    t->values[lo] = e.value;
    t->n++;
    tree_relocate(ix, layer, true, lo);
    tree_link(t);
}

/* Makes the location table cover `handle`. Changes nothing on failure. */
static int where_cover(struct geo_index *ix, uint32_t handle) {
    if (handle < ix->where_len) {
        return GEO_OK;
    }
    size_t len = ix->where_len + ix->where_len / 4 + 16;
    len = len <= handle ? (size_t)handle + 1 : len;
    len = len > (size_t)GEO_MAX_HANDLE + 1 ? (size_t)GEO_MAX_HANDLE + 1 : len;
    uint32_t *w = realloc(ix->where, len * sizeof *w);
    if (w == NULL) {
        return GEO_ERR_NOMEM;
    }
    memset(&w[ix->where_len], 0xff, (len - ix->where_len) * sizeof *w);
    ix->where = w;
    ix->where_len = len;
    return GEO_OK;
}

/* ---- Life cycle and updates ---------------------------------------------- */

struct geo_index *geo_index_new(void) {
    return calloc(1, sizeof(struct geo_index));
}

static void layers_clear(struct gi_layer *layers) {
    for (int i = 0; i < GEO_MAX_LAYERS; i++) {
        tree_clear(&layers[i].main);
        tree_clear(&layers[i].delta);
        layers[i].n_dead = 0;
    }
}

void geo_index_free(struct geo_index *ix) {
    if (ix == NULL) {
        return;
    }
    layers_clear(ix->layers);
    free(ix->where);
    free(ix);
}

int geo_index_build(struct geo_index *ix, const struct geo_entry *entries, size_t n) {
    if (ix == NULL || (entries == NULL && n > 0)) {
        return GEO_ERR_ARG;
    }
    int rc = GEO_ERR_ARG;
    size_t per_layer[GEO_MAX_LAYERS] = {0};
    uint32_t max_handle = 0;
    for (size_t i = 0; i < n; i++) {
        const struct geo_entry *e = &entries[i];
        if (e->layer >= GEO_MAX_LAYERS || e->handle > GEO_MAX_HANDLE ||
            !geo_point_is_valid(e->where)) {
            return GEO_ERR_ARG;
        }
        per_layer[e->layer]++;
        max_handle = e->handle > max_handle ? e->handle : max_handle;
    }
    for (int l = 0; l < GEO_MAX_LAYERS; l++) {
        if (per_layer[l] > GEO_MAX_LAYER_ENTRIES) {
            return GEO_ERR_NOMEM;
        }
    }

    struct gi_layer fresh[GEO_MAX_LAYERS];
    memset(fresh, 0, sizeof fresh);
    struct gi_staged *staged[GEO_MAX_LAYERS] = {0};
    size_t where_len = n > 0 ? (size_t)max_handle + 1 : 0;
    uint32_t *where = malloc((where_len ? where_len : 1) * sizeof *where);
    if (where == NULL) {
        rc = GEO_ERR_NOMEM;
        goto done;
    }
    memset(where, 0xff, where_len * sizeof *where);
    for (size_t i = 0; i < n; i++) {
        if (where[entries[i].handle] != GI_NOWHERE) {
            rc = GEO_ERR_ARG; /* duplicate handle */
            goto done;
        }
        where[entries[i].handle] = 0;
    }

    /* Stage each layer's entries, then sort and link them. */
    size_t filled[GEO_MAX_LAYERS] = {0};
    for (int l = 0; l < GEO_MAX_LAYERS; l++) {
        if (per_layer[l] > 0 && (staged[l] = malloc(per_layer[l] * sizeof **staged)) == NULL) {
            rc = GEO_ERR_NOMEM;
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++) {
        unsigned l = entries[i].layer;
        staged[l][filled[l]++] = entry_make(entries[i].handle, entries[i].where,
                                            entries[i].value);
    }
    for (int l = 0; l < GEO_MAX_LAYERS; l++) {
        if (per_layer[l] == 0) {
            continue;
        }
        if (tree_make(&fresh[l].main, staged[l], per_layer[l]) != GEO_OK) {
            rc = GEO_ERR_NOMEM;
            goto done;
        }
        free(staged[l]);
        staged[l] = NULL;
    }

    /* Nothing can fail any more: swap the new content in. */
    layers_clear(ix->layers);
    memcpy(ix->layers, fresh, sizeof fresh);
    memset(fresh, 0, sizeof fresh);
    free(ix->where);
    ix->where = where;
    ix->where_len = where_len;
    where = NULL;
    ix->count = n;
    for (unsigned l = 0; l < GEO_MAX_LAYERS; l++) {
        tree_relocate(ix, l, false, 0);
    }
    rc = GEO_OK;
done:
    for (int l = 0; l < GEO_MAX_LAYERS; l++) {
        free(staged[l]);
    }
    layers_clear(fresh);
    free(where);
    return rc;
}

int geo_index_put(struct geo_index *ix, uint32_t handle, uint8_t layer, struct geo_point where,
                  uint32_t value) {
    if (ix == NULL || handle > GEO_MAX_HANDLE || layer >= GEO_MAX_LAYERS ||
        !geo_point_is_valid(where)) {
        return GEO_ERR_ARG;
    }
    struct gi_layer *l = &ix->layers[layer];
    if (where_cover(ix, handle) != GEO_OK || tree_reserve(&l->delta, l->delta.n + 1) != GEO_OK) {
        return GEO_ERR_NOMEM;
    }
    uint32_t loc = ix->where[handle];
    if (loc != GI_NOWHERE) {
        detach(ix, loc);
    } else {
        ix->count++;
    }
    delta_insert(ix, layer, entry_make(handle, where, value));
    if (loc != GI_NOWHERE && loc >> GI_LOC_LAYER_SHIFT != layer) {
        layer_maybe_rebuild(ix, loc >> GI_LOC_LAYER_SHIFT);
    }
    layer_maybe_rebuild(ix, layer);
    return GEO_OK;
}

int geo_index_remove(struct geo_index *ix, uint32_t handle) {
    if (ix == NULL || handle >= ix->where_len || ix->where[handle] == GI_NOWHERE) {
        return GEO_ERR_NOTFOUND;
    }
    uint32_t loc = ix->where[handle];
    detach(ix, loc);
    ix->where[handle] = GI_NOWHERE;
    ix->count--;
    layer_maybe_rebuild(ix, loc >> GI_LOC_LAYER_SHIFT);
    return GEO_OK;
}

size_t geo_index_count(const struct geo_index *ix) {
    return ix == NULL ? 0 : ix->count;
}

size_t geo_index_memory_bytes(const struct geo_index *ix) {
    if (ix == NULL) {
        return 0;
    }
    size_t bytes = sizeof *ix + ix->where_len * sizeof *ix->where;
    for (int l = 0; l < GEO_MAX_LAYERS; l++) {
        const struct gi_tree *trees[2] = {&ix->layers[l].main, &ix->layers[l].delta};
        for (int t = 0; t < 2; t++) {
            size_t entry = sizeof(struct gi_entry) + sizeof(struct gi_spot);
            size_t cap = trees[t]->cap;
            /* The values' array is a quarter of the entries' (whose size
             * set cap), so grow() may have rounded it up on its own. */
            bytes += cap * entry + (cap > 0 ? grow_size(cap * sizeof(uint32_t)) : 0) +
                     (size_t)trees[t]->block_cap * sizeof(struct gi_block);
        }
    }
    return bytes;
}

/* ---- Search ------------------------------------------------------------- */

/* A candidate's tag. Exact entries: bit 63 and the handle in bits 0..31, so
 * that at equal keys they come after bounded ones and in handle order.
 * Bounded entries: bits 0..31 the position, bit 37 set for the delta tree,
 * 38..42 the layer. */
#define TAG_EXACT (1ull << 63)
#define TAG_DELTA (1ull << 37)
#define TAG_LAYER_SHIFT 38

struct gi_item {
    double key_m; /* lower bound, or the exact distance when TAG_EXACT */
    uint64_t tag;
};

/* Phase 1 walks nodes best first: a min-heap of nodes keyed by the float
 * squared chord. A node's reference packs the root's number (6 bits), its
 * level (3) and its index in the level (23: a level has at most 2^22 nodes). */
struct gi_node_item {
    float chord2;
    uint32_t ref;
};

#define GI_REF_ROOT_SHIFT 26
#define GI_REF_LEVEL_SHIFT 23
#define GI_REF_INDEX_MASK ((1u << GI_REF_LEVEL_SHIFT) - 1)
#define GI_STACK_NODES 64
#define GI_STACK_OPEN 48

/* A node whose children have been measured: the squared chords of the
 * children not yet taken (+inf once taken, and for empty lanes). */
struct gi_open {
    float d2[GI_NODE_SIZE];
    uint32_t first; /* reference of child 0; child i is first + i */
};

/* The heap holds at most one item per open node, keyed by its nearest child
 * not yet taken; `ref` of an item is the open node's index times 16 plus that
 * child's lane. A query opens each inner node at most once, and with at most
 * 2^28 entries there are fewer than 2^21 of them. */
#define GI_LANE_BITS 4
struct gi_node_heap {
    struct gi_node_item *items;
    size_t n, cap;
    struct gi_open *open;
    size_t n_open, cap_open;
    struct gi_node_item stack_items[GI_STACK_NODES];
    struct gi_open stack_open[GI_STACK_OPEN];
};

struct gi_root {
    const struct gi_tree *tree;
    uint64_t tree_tag;
};

/* Growable arrays start in buffers inside the search state (on the stack):
 * these sizes cover the common case (k <= 64; the candidates, open nodes and
 * queued nodes of a k=5 query at 10^6 entries in five layers: at most 53,
 * 58 and 52 over 20000 of them, 99 % within 37, 48 and 37). */
#define GI_STACK_ITEMS 256
#define GI_STACK_NEAR 64

/* A whole search: the query's limits, phase 1's candidates and its walk over
 * the nodes, everything geo_index_nearest() once kept in its local variables,
 * so that geo_index_nearest_batch() can keep several and move each one node
 * at a time. The fields read at every step come first; the buffers, of which
 * a query touches a few cache lines, last. About 9.5 KB. */
struct gi_search {
    const struct geo_query *q;
    double unit[3];             /* the query's unit vector */
    double limit_m;             /* no hit is farther: max_distance_m or the k-th upper bound */
    double limit_chord2;        /* the squared chord beyond which bound_m() > limit_m */
    float limit_box2;           /* the same for block_chord2(), with its float rounding */
    float unit_f[3];            /* unit, rounded to float for block_chord2() */
    struct gi_item *cand;       /* entries whose lower bound was within the limit */
    size_t n_cand, cap_cand;    /* cand is stack_cand or malloc'd */
    double *near_d2;            /* the k smallest squared chords seen (note_chord2()) */
    size_t n_near;
    uint32_t n_roots;
    struct gi_node_heap nodes;  /* open nodes and the queue of them */
    struct gi_root roots[2 * GEO_MAX_LAYERS]; /* the selected trees, main and delta */
    struct geo_ecef_point from; /* the query's point, for phase 2 */
    double stack_near[GI_STACK_NEAR];
    struct gi_item stack_cand[GI_STACK_ITEMS];
};

/* The safe lower bound, in metres, for a chord (on the unit sphere) that is
 * at least `chord` up to the float rounding of stored unit vectors. */
static inline double bound_m(double chord) {
    double lb = GEO_MIN_RADIUS_M * (chord - GI_UNIT_EPS) - GI_DISTANCE_SLACK_M;
    return lb > 0.0 ? lb : 0.0;
}

/* An upper bound, in metres, on geo_distance_m() for an entry whose float
 * unit vector is `chord` from the query's (see the opening comment). */
static inline double upper_bound_m(double chord) {
    double c = chord + GI_UNIT_EPS;
    if (c >= 1.0) {
        return INFINITY;
    }
    return GI_MAX_RADIUS_M * c * (1.0 + c * c / 20.0) + GI_DISTANCE_SLACK_M;
}

/* Sets the limit and its image in squared chords: bound_m(c) <= limit_m
 * implies c^2 <= limit_chord2, with a relative margin far above rounding. */
static void set_limit(struct gi_search *s, double limit_m) {
    s->limit_m = limit_m;
    double c = (limit_m + GI_DISTANCE_SLACK_M) / GEO_MIN_RADIUS_M + GI_UNIT_EPS;
    s->limit_chord2 = c * c * (1.0 + 1e-12);
    /* block_chord2() works in floats: its chord may be 2.1e-7 relatively
     * short, and the query's float vector 5.2e-8 away (GI_UNIT_EPS covers
     * that and the entries' rounding together). Every real chord^2 is <= 4,
     * and 16 still excludes the empty lanes. */
    double c2 = c * c * (1.0 + 1e-5);
    s->limit_box2 = c2 < 16.0 ? (float)c2 : 16.0f;
}

/* Squared chords from the query to the 16 boxes of a block, in floats. Per
 * lane and coordinate, the distance to the interval [lo, hi] is
 * max(lo - q, q - hi, 0): at most one of the first two is positive, as
 * lo <= hi, and an empty lane (lo = +inf, hi = -inf) gives +inf. */
static inline void block_chord2(const float q[3], const struct gi_block *restrict b,
                                float *restrict out) {
#if defined(__SSE2__) && GI_NODE_SIZE == 16
    /* Four lanes per SSE op with the sums kept in registers: about 110
     * instructions a block, where GCC 12's vectorisation of the loop below
     * (sums through memory, compare-and-mask for the max) took about 240.
     * maxps is exactly the `x > y ? x : y` of the loop (no lane is NaN), so
     * both give the same bits. */
    __m128 zero = _mm_setzero_ps();
    __m128 s0 = zero, s1 = zero, s2 = zero, s3 = zero;
    for (int a = 0; a < 3; a++) {
        __m128 qa = _mm_set1_ps(q[a]);
        const float *lo = b->lo[a], *hi = b->hi[a];
#define GI_LANES4(sum, at)                                                           \
    do {                                                                             \
        __m128 d = _mm_max_ps(_mm_sub_ps(_mm_loadu_ps(lo + (at)), qa),              \
                              _mm_sub_ps(qa, _mm_loadu_ps(hi + (at))));             \
        d = _mm_max_ps(d, zero);                                                     \
        sum = _mm_add_ps(sum, _mm_mul_ps(d, d));                                     \
    } while (0)
        GI_LANES4(s0, 0);
        GI_LANES4(s1, 4);
        GI_LANES4(s2, 8);
        GI_LANES4(s3, 12);
#undef GI_LANES4
    }
    _mm_storeu_ps(out, s0);
    _mm_storeu_ps(out + 4, s1);
    _mm_storeu_ps(out + 8, s2);
    _mm_storeu_ps(out + 12, s3);
#else
    float sum[GI_NODE_SIZE] = {0};
    /* One coordinate at a time over all 16 lanes, into a local array: the
     * shape that GCC and Clang vectorise at -O2 (4 lanes per SSE op). */
    for (int a = 0; a < 3; a++) {
        const float *lo = b->lo[a], *hi = b->hi[a];
        float qa = q[a];
        for (int i = 0; i < GI_NODE_SIZE; i++) {
            float below = lo[i] - qa;
            float above = qa - hi[i];
            float d = below > above ? below : above;
            d = d > 0.0f ? d : 0.0f;
            sum[i] += d * d;
        }
    }
    memcpy(out, sum, sizeof sum);
#endif
}

static inline double entry_chord2(const double q[3], const struct gi_entry *e) {
    double dx = (double)e->unit[0] - q[0];
    double dy = (double)e->unit[1] - q[1];
    double dz = (double)e->unit[2] - q[2];
    return dx * dx + dy * dy + dz * dz;
}

/* Up to this k, s->near_d2 holds the k smallest squared chords in ascending
 * order, padded with +inf, and a new one goes in without branches. */
#define GI_SORTED_K 16

/* Inserts d2 into the ascending h[0..k-1] and drops the largest: the i-th
 * smallest of h and d2 is min(h[i], max(h[i - 1], d2)). Two minsd/maxsd an
 * element and no branch: where the heap below branched on every comparison,
 * 23 mispredicted branches a query at 10^5 entries (of 77; callgrind's
 * branch simulation). Returns true when the k-th smallest became smaller
 * (from +inf once k are known). */
static inline bool note_chord2_sorted(double *h, size_t k, double d2) {
    double last = h[k - 1];
    for (size_t i = k - 1; i > 0; i--) {
        double up = h[i - 1] > d2 ? h[i - 1] : d2;
        h[i] = h[i] < up ? h[i] : up;
    }
    h[0] = h[0] < d2 ? h[0] : d2;
    return h[k - 1] < last;
}

/* Notes the squared chord of an entry that passed the filter. Once k are
 * known, the k-th smallest gives, through upper_bound_m() (which does not
 * decrease as the chord grows, in floating point too: every operation in it
 * is monotonic), the k-th smallest upper bound: a distance that k entries
 * beat or tie, so it limits the search. For k up to GI_SORTED_K the k
 * smallest are a sorted array (above); beyond, a max-heap. Returns true when
 * the k-th smallest became known or smaller. */
GI_INLINE bool note_chord2(struct gi_search *s, double d2) {
    size_t k = s->q->k;
    double *h = s->near_d2;
    size_t i;
    if (k <= GI_SORTED_K) {
        return note_chord2_sorted(h, k, d2);
    }
    if (s->n_near < k) {
        i = s->n_near++;
        while (i > 0 && h[(i - 1) / 2] < d2) {
            h[i] = h[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h[i] = d2;
        return s->n_near == k;
    }
    if (!(d2 < h[0])) {
        return false;
    }
    i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= k) {
            break;
        }
        if (c + 1 < k && h[c + 1] > h[c]) {
            c++;
        }
        if (h[c] <= d2) {
            break;
        }
        h[i] = h[c];
        i = c;
    }
    h[i] = d2;
    return true;
}

/* The k-th smallest squared chord noted; only once k are known. */
static inline double kth_chord2(const struct gi_search *s) {
    size_t k = s->q->k;
    return k <= GI_SORTED_K ? s->near_d2[k - 1] : s->near_d2[0];
}

/* Makes room for `more` candidates past the n_cand there are. */
GI_INLINE int reserve_candidates(struct gi_search *s, size_t more) {
    if (s->n_cand + more <= s->cap_cand) {
        return GEO_OK;
    }
    size_t cap = s->cap_cand * 2;
    cap = cap < s->n_cand + more ? s->n_cand + more : cap;
    bool on_stack = s->cand == s->stack_cand;
    struct gi_item *c = on_stack ? malloc(cap * sizeof *c) : realloc(s->cand, cap * sizeof *c);
    if (c == NULL) {
        return GEO_ERR_NOMEM;
    }
    if (on_stack) {
        memcpy(c, s->cand, s->n_cand * sizeof *c);
    }
    s->cand = c;
    s->cap_cand = cap;
    return GEO_OK;
}

/* Phase 1: the live entries of leaf j that pass the filter and lie within
 * the limit become candidates. In two passes: the first measures the leaf's
 * entries against the limit as it was and notes their squared chords, so the
 * limit is updated once per leaf with all of them; the second keeps those
 * within the new limit. At 10^5 entries one pass made 17.5 candidates a
 * query (all 16 of the first leaf, the limit being infinite until k were
 * known) and updated the limit 14 times, for 5.4 that phase 2 kept. Without
 * a filter, both passes keep or drop an entry by advancing an index by 0 or
 * 1, not by a branch: the outcome is as good as random, and the branches had
 * been 20 mispredictions a query (of 77). */
GI_INLINE int visit_leaf(struct gi_search *s, const struct gi_tree *t, uint64_t tree_tag,
                         uint32_t j) {
    const struct geo_query *q = s->q;
    uint32_t first = j * GI_NODE_SIZE;
    uint32_t end = t->n - first < GI_NODE_SIZE ? t->n : first + GI_NODE_SIZE;
    double kept_d2[GI_NODE_SIZE];
    uint32_t kept_at[GI_NODE_SIZE];
    uint32_t n_kept = 0;
    if (q->value_filter != NULL) {
        /* The values' line, asked for before the entries are measured, so
         * that the two misses overlap (see the opening comment, "Values"). */
        __builtin_prefetch(&t->values[first]);
    }
    if (q->filter == NULL && q->value_filter == NULL) {
        for (uint32_t i = first; i < end; i++) {
            const struct gi_entry *e = &t->entries[i];
            double d2 = entry_chord2(s->unit, e);
            kept_d2[n_kept] = d2;
            kept_at[n_kept] = i;
            n_kept += (uint32_t)((d2 <= s->limit_chord2) & (e->handle != GI_DEAD));
        }
    } else {
        /* The entries within reach first, then the value filter on them in
         * the same order (their values are the one line t->values holds for
         * the leaf), then the handle filter on those it kept. */
        uint32_t n_near = 0;
        for (uint32_t i = first; i < end; i++) {
            const struct gi_entry *e = &t->entries[i];
            double d2 = entry_chord2(s->unit, e);
            kept_d2[n_near] = d2;
            kept_at[n_near] = i;
            n_near += (uint32_t)((d2 <= s->limit_chord2) & (e->handle != GI_DEAD));
        }
        if (q->value_filter != NULL) {
            const uint32_t *values = t->values;
            uint32_t n_valued = 0;
            for (uint32_t m = 0; m < n_near; m++) {
                uint32_t i = kept_at[m];
                kept_d2[n_valued] = kept_d2[m];
                kept_at[n_valued] = i;
                n_valued += q->value_filter(values[i], q->value_ctx);
            }
            n_near = n_valued;
        }
        if (q->filter == NULL) {
            n_kept = n_near;
        } else {
            for (uint32_t m = 0; m < n_near; m++) {
                uint32_t i = kept_at[m];
                kept_d2[n_kept] = kept_d2[m];
                kept_at[n_kept] = i;
                n_kept += q->filter(t->entries[i].handle, q->filter_ctx);
            }
        }
    }
    bool improved = false;
    for (uint32_t m = 0; m < n_kept; m++) {
        improved |= note_chord2(s, kept_d2[m]);
    }
    if (improved) {
        double ub_m = upper_bound_m(sqrt(kth_chord2(s)));
        if (ub_m < s->limit_m) {
            set_limit(s, ub_m);
        }
    }
    if (reserve_candidates(s, n_kept) != GEO_OK) {
        return GEO_ERR_NOMEM;
    }
    struct gi_item *cand = s->cand;
    size_t n = s->n_cand;
    for (uint32_t m = 0; m < n_kept; m++) {
        double d2 = kept_d2[m];
        double key_m = bound_m(sqrt(d2));
        uint32_t i = kept_at[m];
        cand[n].key_m = key_m;
        cand[n].tag = tree_tag | i;
        n += (size_t)((d2 <= s->limit_chord2) & (key_m <= s->limit_m));
        /* Its exact position is in another array: start loading it now, so
         * that phase 2 does not wait for one cache miss after another. At
         * 10^6 entries this took 0.25 - 0.45 us off a 1.7 - 2.2 us query. */
        __builtin_prefetch(&t->spots[i]);
    }
    s->n_cand = n;
    return GEO_OK;
}

/* A new open node at the end of h->open, or NULL when out of memory. */
static struct gi_open *open_add(struct gi_node_heap *h) {
    if (h->n_open == h->cap_open) {
        size_t cap = h->cap_open * 2;
        bool on_stack = h->open == h->stack_open;
        struct gi_open *o = on_stack ? malloc(cap * sizeof *o) : realloc(h->open, cap * sizeof *o);
        if (o == NULL) {
            return NULL;
        }
        if (on_stack) {
            memcpy(o, h->stack_open, h->n_open * sizeof *o);
        }
        h->open = o;
        h->cap_open = cap;
    }
    return &h->open[h->n_open++];
}

static int node_heap_grow(struct gi_node_heap *h) {
    size_t cap = h->cap * 2;
    bool on_stack = h->items == h->stack_items;
    struct gi_node_item *it = on_stack ? malloc(cap * sizeof *it)
                                       : realloc(h->items, cap * sizeof *it);
    if (it == NULL) {
        return GEO_ERR_NOMEM;
    }
    if (on_stack) {
        memcpy(it, h->stack_items, h->n * sizeof *it);
    }
    h->items = it;
    h->cap = cap;
    return GEO_OK;
}

static inline int node_push(struct gi_node_heap *h, float chord2, uint32_t ref) {
    if (h->n == h->cap && node_heap_grow(h) != GEO_OK) {
        return GEO_ERR_NOMEM;
    }
    struct gi_node_item *items = h->items;
    size_t i = h->n++;
    while (i > 0 && items[(i - 1) / 2].chord2 > chord2) {
        items[i] = items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    items[i].chord2 = chord2;
    items[i].ref = ref;
    return GEO_OK;
}

GI_INLINE struct gi_node_item node_pop(struct gi_node_heap *h) {
    struct gi_node_item top = h->items[0];
    struct gi_node_item last = h->items[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) {
            break;
        }
        if (c + 1 < h->n && h->items[c + 1].chord2 < h->items[c].chord2) {
            c++;
        }
        if (h->items[c].chord2 >= last.chord2) {
            break;
        }
        h->items[i] = h->items[c];
        i = c;
    }
    if (h->n > 0) {
        h->items[i] = last;
    }
    return top;
}

static inline unsigned ref_level(uint32_t ref) {
    return (ref >> GI_REF_LEVEL_SHIFT) & 7u;
}

/* The squared chords to the children of inner node `ref` and the reference of
 * the first child; child i is first + i. */
GI_INLINE uint32_t children(const struct gi_search *s, const struct gi_root *roots,
                            uint32_t ref, float d2[GI_NODE_SIZE]) {
    const struct gi_tree *t = roots[ref >> GI_REF_ROOT_SHIFT].tree;
    unsigned level = ref_level(ref);
    uint32_t j = ref & GI_REF_INDEX_MASK;
    block_chord2(s->unit_f, &t->blocks[t->level_start[level - 1] + j], d2);
    return (ref & ~((1u << GI_REF_ROOT_SHIFT) - 1)) | (level - 1) << GI_REF_LEVEL_SHIFT |
           j * GI_NODE_SIZE;
}

/* The first of the nearest of 16 lanes. It runs two or three times per node
 * a query opens: as a scalar loop it was a fifth of the instructions of a
 * query at 10^6 entries, so on x86-64 it takes four SSE minimums. No lane is
 * NaN (an empty lane is +inf), so the two versions agree. */
static inline int nearest_lane(const float d2[GI_NODE_SIZE]) {
#if defined(__SSE2__) && GI_NODE_SIZE == 16
    __m128 a = _mm_loadu_ps(d2), b = _mm_loadu_ps(d2 + 4);
    __m128 c = _mm_loadu_ps(d2 + 8), d = _mm_loadu_ps(d2 + 12);
    __m128 m = _mm_min_ps(_mm_min_ps(a, b), _mm_min_ps(c, d));
    m = _mm_min_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
    m = _mm_min_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
    unsigned mask = (unsigned)_mm_movemask_ps(_mm_cmpeq_ps(a, m)) |
                    (unsigned)_mm_movemask_ps(_mm_cmpeq_ps(b, m)) << 4 |
                    (unsigned)_mm_movemask_ps(_mm_cmpeq_ps(c, m)) << 8 |
                    (unsigned)_mm_movemask_ps(_mm_cmpeq_ps(d, m)) << 12;
    return __builtin_ctz(mask);
#else
    int best = 0;
    for (int i = 1; i < GI_NODE_SIZE; i++) {
        best = d2[i] < d2[best] ? i : best;
    }
    return best;
#endif
}

static int nearest_child(const struct gi_search *s, const float d2[GI_NODE_SIZE]) {
    int best = nearest_lane(d2);
    return d2[best] <= s->limit_box2 ? best : -1;
}

GI_INLINE int visit_leaf_ref(struct gi_search *s, const struct gi_root *roots, uint32_t ref) {
    const struct gi_root *root = &roots[ref >> GI_REF_ROOT_SHIFT];
    return visit_leaf(s, root->tree, root->tree_tag, ref & GI_REF_INDEX_MASK);
}

/* Queues open node o by its nearest child not yet taken, if that is within
 * the limit. */
GI_INLINE int requeue(const struct gi_search *s, struct gi_node_heap *h, uint32_t o) {
    const float *d2 = h->open[o].d2;
    int lane = nearest_lane(d2);
    float next = d2[lane];
    return next <= s->limit_box2 ? node_push(h, next, o << GI_LANE_BITS | (uint32_t)lane)
                                 : GEO_OK;
}

/* Best first, lazily: popping an open node takes its nearest child and
 * queues the node again by the next one, so a node's siblings are never
 * queued one by one; most of them fall beyond the limit before their turn.
 * (Queueing all 15 siblings at every level pushed about 55 nodes a query at
 * 10^6 entries to pop about 5.) From a taken child the walk goes straight
 * down to the child's nearest child while nothing queued is nearer.
 * The walk goes one node at a time: walk_visit() reads one node (a leaf's
 * entries or an inner node's block of 16 boxes) and names the next, which
 * is the only memory of the index the next step reads for the first time.
 * geo_index_nearest() runs the steps one after another;
 * geo_index_nearest_batch() asks for the next node's memory and lets other
 * searches take a step before it reads it. */
#define GI_NO_REF UINT32_MAX /* no node: root 63 at level 7 is never a tree's */

/* Takes the nearest child of the nearest queued open node, if it is within
 * the limit, into *next (else GI_NO_REF: the walk is over). */
GI_INLINE int walk_next(struct gi_search *s, uint32_t *next) {
    struct gi_node_heap *h = &s->nodes;
    if (h->n == 0 || !(h->items[0].chord2 <= s->limit_box2)) {
        *next = GI_NO_REF;
        return GEO_OK;
    }
    uint32_t item = node_pop(h).ref;
    uint32_t o = item >> GI_LANE_BITS;
    uint32_t lane = item & ((1u << GI_LANE_BITS) - 1);
    *next = h->open[o].first + lane;
    h->open[o].d2[lane] = INFINITY;
    return requeue(s, h, o);
}

/* Visits node `ref` and sets *next to the node to visit after it, or
 * GI_NO_REF. A leaf's entries become candidates. An inner node is opened:
 * its nearest child within the limit is next unless a queued node is nearer,
 * in which case the node is queued and the nearest queued one is next. */
GI_INLINE int walk_visit(struct gi_search *s, uint32_t ref, uint32_t *next) {
    struct gi_node_heap *h = &s->nodes;
    if (ref_level(ref) == 0) {
        int rc = visit_leaf_ref(s, s->roots, ref);
        return rc != GEO_OK ? rc : walk_next(s, next);
    }
    struct gi_open *node = open_add(h);
    if (node == NULL) {
        return GEO_ERR_NOMEM;
    }
    node->first = children(s, s->roots, ref, node->d2);
    int best = nearest_child(s, node->d2);
    if (best < 0) {
        h->n_open--;
        return walk_next(s, next);
    }
    uint32_t idx = (uint32_t)(h->n_open - 1);
    float d2_best = node->d2[best];
    if (h->n > 0 && h->items[0].chord2 < d2_best) {
        int rc = node_push(h, d2_best, idx << GI_LANE_BITS | (uint32_t)best);
        return rc != GEO_OK ? rc : walk_next(s, next);
    }
    node->d2[best] = INFINITY;
    *next = node->first + (uint32_t)best;
    return requeue(s, h, idx);
}

/* Visits `ref` and every node after it, to the end of the walk. */
GI_INLINE int walk_to_end(struct gi_search *s, uint32_t ref) {
    int rc = GEO_OK;
    while (rc == GEO_OK && ref != GI_NO_REF) {
        rc = walk_visit(s, ref, &ref);
    }
    return rc;
}

/* Phase 2 helpers: a binary min-heap over the candidates, ordered by key and
 * then tag. */
static inline bool item_less(const struct gi_item *a, const struct gi_item *b) {
    return a->key_m < b->key_m || (a->key_m == b->key_m && a->tag < b->tag);
}

static void sift_down(struct gi_item *h, size_t n, size_t i) {
    struct gi_item it = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) {
            break;
        }
        if (c + 1 < n && item_less(&h[c + 1], &h[c])) {
            c++;
        }
        if (!item_less(&h[c], &it)) {
            break;
        }
        h[i] = h[c];
        i = c;
    }
    h[i] = it;
}

/* The exact distance from `from` to the entry of bounded candidate `tag`, and
 * the entry's handle. */
static double candidate_distance_m(const struct geo_index *ix, const struct geo_ecef_point *from,
                                   uint64_t tag, uint32_t *handle) {
    const struct gi_layer *l = &ix->layers[(tag >> TAG_LAYER_SHIFT) & 31u];
    const struct gi_tree *t = (tag & TAG_DELTA) ? &l->delta : &l->main;
    const struct gi_spot *at = &t->spots[(uint32_t)tag];
    struct geo_ecef_point p;
    geo_ecef_point_init(&p, (struct geo_point){at->lat_deg, at->lon_deg});
    *handle = t->entries[(uint32_t)tag].handle;
    return geo_distance_ecef_m(from, &p);
}

/* Phase 2 for few candidates: the exact distance of every one of cand[0..n-1]
 * (all bounded), those within limit_m sorted by distance and then handle
 * into out[0..], at most k of them. Returns how many. */
#define GI_FEW_RANKED 8 /* up to this many, exact_few() sorts by counting */
#define GI_FEW_MAX 32   /* above this many, the heap: insertion is quadratic, and
                         * entries of equal distance arrive in no handle order
                         * (10^4 at one point, k = 9999: 53 ms by insertion,
                         * 2 ms by the heap) */

GI_INLINE size_t exact_few(const struct geo_index *ix, const struct geo_ecef_point *from,
                           const struct gi_item *cand, size_t n, double limit_m, size_t k,
                           struct geo_hit *out) {
    if (n <= GI_FEW_RANKED) {
        /* All the distances first, independent of one another, then each
         * one's place: the number of entries before it, counted with
         * comparisons that set flags rather than branch. Those beyond the
         * limit are farther than every hit, so they are placed after them
         * and not returned. The insertion sort below mispredicted 5.7
         * branches a query, and each misprediction also threw away the
         * distances in flight: this took 0.05 - 0.07 us off a query. */
        struct geo_hit all[GI_FEW_RANKED], sorted[GI_FEW_RANKED];
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            all[i].distance_m = candidate_distance_m(ix, from, cand[i].tag, &all[i].handle);
            m += all[i].distance_m <= limit_m;
        }
        for (size_t i = 0; i < n; i++) {
            size_t place = 0;
            for (size_t j = 0; j < n; j++) {
                place += (size_t)((all[j].distance_m < all[i].distance_m) |
                                  ((all[j].distance_m == all[i].distance_m) &
                                   (all[j].handle < all[i].handle)));
            }
            sorted[place] = all[i];
        }
        m = m < k ? m : k;
        memcpy(out, sorted, m * sizeof *out);
        return m;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t handle;
        double d_m = candidate_distance_m(ix, from, cand[i].tag, &handle);
        if (!(d_m <= limit_m)) {
            continue;
        }
        /* Insert at the end (or just past it when out[] is full), moving
         * farther hits up one; the one moved past k falls off. */
        size_t j = m;
        m += m < k;
        while (j > 0 && (out[j - 1].distance_m > d_m ||
                         (out[j - 1].distance_m == d_m && out[j - 1].handle > handle))) {
            if (j < k) {
                out[j] = out[j - 1];
            }
            j--;
        }
        if (j < k) {
            out[j].handle = handle;
            out[j].distance_m = d_m;
        }
    }
    return m;
}

static bool query_is_valid(const struct geo_query *q) {
    return q->k > 0 && q->k <= GEO_MAX_K && geo_point_is_valid(q->from) &&
           q->max_distance_m >= 0.0;
}

/* Starts the search of the valid query q in *s: its limits, and an open node
 * for each selected tree whose root is within the limit. Whatever it
 * returns, search_release() frees what *s holds. Fields are set one by one:
 * an initialiser would clear the 9.5 KB of buffers. */
GI_INLINE int search_begin(struct gi_search *s, const struct geo_index *ix,
                           const struct geo_query *q) {
    s->q = q;
    s->cand = s->stack_cand;
    s->n_cand = 0;
    s->cap_cand = GI_STACK_ITEMS;
    s->near_d2 = s->stack_near;
    s->n_near = 0;
    s->n_roots = 0;
    struct gi_node_heap *nodes = &s->nodes;
    nodes->items = nodes->stack_items;
    nodes->n = 0;
    nodes->cap = GI_STACK_NODES;
    nodes->open = nodes->stack_open;
    nodes->n_open = 0;
    nodes->cap_open = GI_STACK_OPEN;
    if (q->k > GI_STACK_NEAR && (s->near_d2 = malloc(q->k * sizeof *s->near_d2)) == NULL) {
        s->near_d2 = s->stack_near;
        return GEO_ERR_NOMEM;
    }
    if (q->k <= GI_SORTED_K) {
        for (size_t i = 0; i < q->k; i++) {
            s->near_d2[i] = INFINITY;
        }
    }
    /* The query's normal is geo_point_to_unit(q->from), bit for bit
     * (geo_distance.h), so one conversion serves the bounds and phase 2. */
    geo_ecef_point_init(&s->from, q->from);
    memcpy(s->unit, s->from.normal, sizeof s->unit);
    for (int a = 0; a < 3; a++) {
        s->unit_f[a] = (float)s->unit[a];
    }
    set_limit(s, q->max_distance_m);

    /* Only the selected layers: a loop over all 32 testing each bit was
     * about 225 instructions a query. */
    for (uint32_t mask = q->layer_mask; mask != 0; mask &= mask - 1) {
        unsigned layer = (unsigned)__builtin_ctz(mask);
        for (int d = 0; d < 2; d++) {
            const struct gi_tree *t = d ? &ix->layers[layer].delta : &ix->layers[layer].main;
            if (t->n_levels == 0) {
                continue;
            }
            float d2[GI_NODE_SIZE];
            block_chord2(s->unit_f, &t->blocks[t->level_start[t->n_levels - 1]], d2);
            uint32_t n_roots = s->n_roots++;
            s->roots[n_roots].tree = t;
            s->roots[n_roots].tree_tag = (uint64_t)layer << TAG_LAYER_SHIFT | (d ? TAG_DELTA : 0);
            uint32_t ref = n_roots << GI_REF_ROOT_SHIFT | (t->n_levels - 1) << GI_REF_LEVEL_SHIFT;
            if (!(d2[0] <= s->limit_box2)) {
                continue;
            }
            /* The root is the only child of an open node of its own. */
            struct gi_open *top = open_add(nodes);
            if (top == NULL) {
                return GEO_ERR_NOMEM;
            }
            for (int i = 0; i < GI_NODE_SIZE; i++) {
                top->d2[i] = INFINITY;
            }
            top->d2[0] = d2[0];
            top->first = ref;
            uint32_t item = (uint32_t)(nodes->n_open - 1) << GI_LANE_BITS; /* lane 0 */
            int rc = node_push(nodes, d2[0], item);
            if (rc != GEO_OK) {
                return rc;
            }
        }
    }
    return GEO_OK;
}

/* Phase 2 of a search whose walk is over: writes the hits to out[0..] and
 * returns their number. */
GI_INLINE size_t search_finish(const struct geo_index *ix, struct gi_search *s,
                               struct geo_hit *out) {
    const struct geo_query *q = s->q;
    /* Drop candidates the final limit excludes. */
    size_t n = 0;
    for (size_t i = 0; i < s->n_cand; i++) {
        if (s->cand[i].key_m <= s->limit_m) {
            s->cand[n++] = s->cand[i];
        }
    }
    if (n <= q->k + 1 && n <= GI_FEW_MAX) {
        /* At most one more than k (at 10^5 entries, k=5, one layer: 5.4 on
         * average): every one needs its exact distance or nearly, so take
         * them all and sort by insertion, which costs less than the heap
         * below (its sifts were 440 instructions a query). Only for a few:
         * insertion is quadratic. */
        return exact_few(ix, &s->from, s->cand, n, s->limit_m, q->k, out);
    }
    /* Take them in order of their bounds, replacing each by its exact
     * distance, until an exact one is first: it is the next hit. */
    struct gi_item *cand = s->cand;
    for (size_t i = n / 2; i-- > 0;) {
        sift_down(cand, n, i);
    }
    size_t found = 0;
    while (n > 0 && found < q->k) {
        struct gi_item it = cand[0];
        if (it.tag & TAG_EXACT) {
            out[found].handle = (uint32_t)it.tag;
            out[found].distance_m = it.key_m;
            found++;
            cand[0] = cand[--n];
            sift_down(cand, n, 0);
            continue;
        }
        uint32_t handle;
        double d_m = candidate_distance_m(ix, &s->from, it.tag, &handle);
        if (d_m <= s->limit_m) {
            /* Its exact distance is at least its bound: it can only sink. */
            cand[0].key_m = d_m;
            cand[0].tag = TAG_EXACT | handle;
        } else {
            cand[0] = cand[--n];
        }
        sift_down(cand, n, 0);
    }
    return found;
}

/* Frees what a search begun with search_begin() allocated. */
GI_INLINE void search_release(struct gi_search *s) {
    if (s->nodes.items != s->nodes.stack_items) {
        free(s->nodes.items);
    }
    if (s->nodes.open != s->nodes.stack_open) {
        free(s->nodes.open);
    }
    if (s->cand != s->stack_cand) {
        free(s->cand);
    }
    if (s->near_d2 != s->stack_near) {
        free(s->near_d2);
    }
}

int geo_index_nearest(const struct geo_index *ix, const struct geo_query *q,
                      struct geo_hit *out, size_t *n_out) {
    if (ix == NULL || q == NULL || out == NULL || n_out == NULL || !query_is_valid(q)) {
        return GEO_ERR_ARG;
    }
    struct gi_search s;
    uint32_t ref = GI_NO_REF;
    int rc = search_begin(&s, ix, q);
    if (rc == GEO_OK) {
        rc = walk_next(&s, &ref);
    }
    if (rc == GEO_OK) {
        rc = walk_to_end(&s, ref);
    }
    *n_out = rc == GEO_OK ? search_finish(ix, &s, out) : 0;
    search_release(&s);
    return rc;
}

/* ---- Batches ------------------------------------------------------------- */

/* Asks for the memory that visiting node `ref` reads for the first time:
 * for an inner node the block of its children's boxes (384 bytes, six cache
 * lines, seven where the array is not aligned to them), for a leaf its
 * entries' hot parts (256 bytes, four or five lines) and, when the query
 * has a value filter, the line of their values. Inlined by force: GCC
 * 12 takes a function that only prefetches for one without side effects (as
 * if `const`) and drops its calls. */
GI_INLINE void prefetch_node(const struct gi_search *s, uint32_t ref) {
    const struct gi_tree *t = s->roots[ref >> GI_REF_ROOT_SHIFT].tree;
    unsigned level = ref_level(ref);
    uint32_t j = ref & GI_REF_INDEX_MASK;
    if (level == 0) {
        const char *p = (const char *)&t->entries[(size_t)j * GI_NODE_SIZE];
        __builtin_prefetch(p);
        __builtin_prefetch(p + 64);
        __builtin_prefetch(p + 128);
        __builtin_prefetch(p + 192);
        __builtin_prefetch(p + GI_NODE_SIZE * sizeof(struct gi_entry) - 1);
        if (s->q->value_filter != NULL) {
            __builtin_prefetch(&t->values[(size_t)j * GI_NODE_SIZE]);
        }
    } else {
        const char *p = (const char *)&t->blocks[t->level_start[level - 1] + j];
        __builtin_prefetch(p);
        __builtin_prefetch(p + 64);
        __builtin_prefetch(p + 128);
        __builtin_prefetch(p + 192);
        __builtin_prefetch(p + 256);
        __builtin_prefetch(p + 320);
        __builtin_prefetch(p + sizeof(struct gi_block) - 1);
    }
}

/* Searches of fewer bytes of entries go alone, one after another: their trees
 * stay in cache even in the daemon, where taking turns only costs. (In a
 * tight loop the gain starts between 6.4 and 12.8 MB; in the daemon it shows
 * from 640 KB, see the opening comment.) */
#ifndef GI_BATCH_MIN_BYTES
#define GI_BATCH_MIN_BYTES ((size_t)256 << 10)
#endif

/* The bytes of entries (both parts) in the trees a search selected. */
static size_t search_bytes(const struct gi_search *s) {
    size_t n = 0;
    for (uint32_t r = 0; r < s->n_roots; r++) {
        n += s->roots[r].tree->n;
    }
    return n * (sizeof(struct gi_entry) + sizeof(struct gi_spot));
}

/* A search of the window: the item it answers and the node it visits next. */
struct gi_slot {
    struct gi_search s;
    struct geo_batch_item *item;
    uint32_t ref;
};

/* Phase 2 and the item's answer, as geo_index_nearest() gives it. */
static void slot_end(const struct geo_index *ix, struct gi_slot *slot, int rc) {
    struct geo_batch_item *item = slot->item;
    item->n_out = rc == GEO_OK ? search_finish(ix, &slot->s, item->out) : 0;
    item->rc = rc;
    search_release(&slot->s);
}

/* Starts in `slot` the next of items[*taken..n-1] that has a node to visit,
 * and asks for that node's memory; items that fail or have none are
 * answered on the way. Returns false when no item is left. */
static bool slot_start(const struct geo_index *ix, struct gi_slot *slot,
                       struct geo_batch_item *items, size_t n, size_t *taken) {
    while (*taken < n) {
        struct geo_batch_item *item = &items[(*taken)++];
        if (ix == NULL || item->out == NULL || !query_is_valid(&item->q)) {
            item->n_out = 0;
            item->rc = GEO_ERR_ARG;
            continue;
        }
        slot->item = item;
        int rc = search_begin(&slot->s, ix, &item->q);
        if (rc == GEO_OK) {
            rc = walk_next(&slot->s, &slot->ref);
        }
        if (rc == GEO_OK && slot->ref != GI_NO_REF) {
            if (search_bytes(&slot->s) >= GI_BATCH_MIN_BYTES) {
                prefetch_node(&slot->s, slot->ref);
                return true;
            }
            rc = walk_to_end(&slot->s, slot->ref);
        }
        slot_end(ix, slot, rc);
    }
    return false;
}

void geo_index_nearest_batch(const struct geo_index *ix, struct geo_batch_item *items, size_t n) {
    if (items == NULL) {
        return;
    }
    struct gi_slot slots[GEO_BATCH_WINDOW];
    struct gi_slot *turn[GEO_BATCH_WINDOW]; /* the searches under way, in the order they go */
    size_t n_active = 0, taken = 0;
    while (n_active < GEO_BATCH_WINDOW && slot_start(ix, &slots[n_active], items, n, &taken)) {
        turn[n_active] = &slots[n_active];
        n_active++;
    }
    size_t i = 0;
    while (n_active > 0) {
        struct gi_slot *slot = turn[i];
        int rc = GEO_OK;
        if (slot->ref != GI_NO_REF) {
            rc = walk_visit(&slot->s, slot->ref, &slot->ref);
            if (rc == GEO_OK) {
                if (slot->ref != GI_NO_REF) {
                    prefetch_node(&slot->s, slot->ref);
                }
                /* Phase 2 waits a turn, for the positions of the last
                 * leaf's candidates. */
                i = i + 1 < n_active ? i + 1 : 0;
                continue;
            }
        }
        slot_end(ix, slot, rc);
        if (!slot_start(ix, slot, items, n, &taken)) {
            turn[i] = turn[--n_active];
            i = i < n_active ? i : 0;
            continue;
        }
        i = i + 1 < n_active ? i + 1 : 0;
    }
}
