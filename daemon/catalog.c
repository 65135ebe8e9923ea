/* catalog.c: compact facility records, an id hash, and the spatial index.
 *
 * Sized for 10^6 facilities in well under 150 bytes each above the empty
 * daemon (issue 7's target). Per facility we keep:
 *   - a 20-byte slot: offsets of id and name in one string arena, position in
 *     integer microdegrees (exact for the 6-decimal datasets, 0.11 m at worst
 *     otherwise; the index keeps its own doubles for distances), category;
 *   - the id and name bytes, NUL-terminated, in the arena (about 40 bytes for
 *     the Licang names, which are 8-12 CJK characters);
 *   - one 4-byte cell of an open-addressing id hash, kept at most half full
 *     (4-8 bytes per facility);
 *   - whatever geo_index needs (its own figure, geo_index_memory_bytes()).
 * Replies and filters reach a facility by its slot, which is the index
 * handle, in O(1). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"

#define SLOT_FREE 0xFF     /* category of a removed slot */
#define HASH_EMPTY 0u      /* hash cells hold slot + 1 */

struct slot {
    uint32_t id_off;       /* into arena */
    uint32_t name_off;     /* into arena */
    int32_t lat_e6;        /* microdegrees */
    int32_t lon_e6;
    uint8_t category;      /* enum store_category, or SLOT_FREE */
};

struct catalog {
    struct slot *slots;
    uint32_t n_slots;      /* slots used, free ones included */
    uint32_t cap_slots;
    char *arena;           /* NUL-terminated strings */
    size_t arena_len;
    size_t arena_cap;
    uint32_t *hash;        /* slot + 1, or HASH_EMPTY; cap is a power of two */
    uint32_t hash_cap;
    size_t n_live;
    size_t per_category[STORE_CAT_COUNT];
    struct geo_index *index;
};

/* ---- Primitives: arena, hash ------------------------------------------- */

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

static int arena_add(struct catalog *c, const char *s, uint32_t *off) {
    size_t n = strlen(s) + 1;
    if (c->arena_len + n > UINT32_MAX) {
        return CATALOG_ERR_FULL;
    }
    if (c->arena_len + n > c->arena_cap) {
        size_t cap = c->arena_cap ? c->arena_cap : 65536;
        while (cap < c->arena_len + n) {
            cap *= 2;
        }
        char *a = realloc(c->arena, cap);
        if (!a) {
            return CATALOG_ERR_NOMEM;
        }
        c->arena = a;
        c->arena_cap = cap;
    }
    memcpy(c->arena + c->arena_len, s, n);
    *off = (uint32_t)c->arena_len;
    c->arena_len += n;
    return 0;
}

static const char *slot_id(const struct catalog *c, uint32_t slot) {
    return c->arena + c->slots[slot].id_off;
}

/* Returns the hash cell holding `id`, or the empty cell where it would go. */
static uint32_t hash_probe(const struct catalog *c, const char *id) {
    uint32_t mask = c->hash_cap - 1;
    uint32_t i = hash_str(id) & mask;
    while (c->hash[i] != HASH_EMPTY && strcmp(slot_id(c, c->hash[i] - 1), id) != 0) {
        i = (i + 1) & mask;
    }
    return i;
}

/* Keeps the table at most half full once n_slots + 1 slots are in it. */
static int hash_reserve(struct catalog *c) {
    if (c->hash_cap && (uint64_t)(c->n_slots + 1) * 2 <= c->hash_cap) {
        return 0;
    }
    uint64_t cap = c->hash_cap ? (uint64_t)c->hash_cap * 2 : 1024;
    if (cap > (1ull << 31)) {
        return CATALOG_ERR_FULL;
    }
    uint32_t *old = c->hash;
    uint32_t old_cap = c->hash_cap;
    c->hash = calloc(cap, sizeof *c->hash);
    if (!c->hash) {
        c->hash = old;
        return CATALOG_ERR_NOMEM;
    }
    c->hash_cap = (uint32_t)cap;
    for (uint32_t i = 0; i < old_cap; i++) {
        if (old[i] != HASH_EMPTY) {
            c->hash[hash_probe(c, slot_id(c, old[i] - 1))] = old[i];
        }
    }
    free(old);
    return 0;
}

/* Removes the cell at i, shifting later members of its probe run back
 * (linear probing without tombstones). */
static void hash_delete_at(struct catalog *c, uint32_t i) {
    uint32_t mask = c->hash_cap - 1;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (c->hash[j] == HASH_EMPTY) {
            break;
        }
        uint32_t home = hash_str(slot_id(c, c->hash[j] - 1)) & mask;
        /* Move j into the hole at i unless its home lies cyclically in (i, j]. */
        bool home_in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!home_in_range) {
            c->hash[i] = c->hash[j];
            i = j;
        }
    }
    c->hash[i] = HASH_EMPTY;
}

static int32_t to_e6(double deg) {
    return (int32_t)lround(deg * 1e6);
}

/* ---- Lifetime ------------------------------------------------------------ */

struct catalog *catalog_new(void) {
    struct catalog *c = calloc(1, sizeof *c);
    if (!c) {
        return NULL;
    }
    c->index = geo_index_new();
    if (!c->index) {
        free(c);
        return NULL;
    }
    return c;
}

static void catalog_clear(struct catalog *c) {
    free(c->slots);
    free(c->arena);
    free(c->hash);
    c->slots = NULL;
    c->arena = NULL;
    c->hash = NULL;
    c->n_slots = c->cap_slots = c->hash_cap = 0;
    c->arena_len = c->arena_cap = 0;
    c->n_live = 0;
    memset(c->per_category, 0, sizeof c->per_category);
}

void catalog_free(struct catalog *c) {
    if (!c) {
        return;
    }
    catalog_clear(c);
    geo_index_free(c->index);
    free(c);
}

/* ---- Building ------------------------------------------------------------ */

static bool record_is_valid(const struct store_facility *f) {
    return f->id && f->id[0] && f->category >= 0 && f->category < STORE_CAT_COUNT &&
           geo_point_is_valid(f->where);
}

/* Appends a new slot for f (whose id is not present). Does not touch the index. */
static int slot_append(struct catalog *c, const struct store_facility *f, uint32_t *slot_out) {
    if (c->n_slots > GEO_MAX_HANDLE) {
        return CATALOG_ERR_FULL; /* slots are index handles */
    }
    if (c->n_slots == c->cap_slots) {
        uint32_t cap = c->cap_slots ? c->cap_slots * 2 : 1024;
        if (cap < c->cap_slots) {
            cap = UINT32_MAX - 1;
        }
        struct slot *s = realloc(c->slots, (size_t)cap * sizeof *s);
        if (!s) {
            return CATALOG_ERR_NOMEM;
        }
        c->slots = s;
        c->cap_slots = cap;
    }
    int ret = hash_reserve(c);
    if (ret < 0) {
        return ret;
    }
    struct slot s = {.category = (uint8_t)f->category,
                     .lat_e6 = to_e6(f->where.lat_deg),
                     .lon_e6 = to_e6(f->where.lon_deg)};
    size_t arena_mark = c->arena_len;
    ret = arena_add(c, f->id, &s.id_off);
    if (ret == 0) {
        ret = arena_add(c, f->name ? f->name : "", &s.name_off);
    }
    if (ret < 0) {
        c->arena_len = arena_mark;
        return ret;
    }
    uint32_t slot = c->n_slots++;
    c->slots[slot] = s;
    c->hash[hash_probe(c, f->id)] = slot + 1;
    c->n_live++;
    c->per_category[f->category]++;
    *slot_out = slot;
    return 0;
}

struct load_ctx {
    struct catalog *c;
    struct geo_entry *entries; /* the index's input, with the store's exact doubles */
    size_t n_entries;
    size_t cap_entries;
    int err;
    char *msg;
    size_t msg_len;
};

static int load_one(const struct store_facility *f, void *ctx_) {
    struct load_ctx *ctx = ctx_;
    uint32_t slot;
    if (!record_is_valid(f)) {
        snprintf(ctx->msg, ctx->msg_len, "facility %.64s: invalid category or position",
                 f->id ? f->id : "?");
        ctx->err = CATALOG_ERR_ARG;
        return 1;
    }
    if (catalog_find(ctx->c, f->id, &slot) == 0) {
        snprintf(ctx->msg, ctx->msg_len, "facility %.64s: duplicate id", f->id);
        ctx->err = CATALOG_ERR_ARG;
        return 1;
    }
    if (ctx->n_entries == ctx->cap_entries) {
        size_t cap = ctx->cap_entries ? ctx->cap_entries * 2 : 1024;
        struct geo_entry *e = realloc(ctx->entries, cap * sizeof *e);
        if (!e) {
            ctx->err = CATALOG_ERR_NOMEM;
            snprintf(ctx->msg, ctx->msg_len, "out of memory loading facilities");
            return 1;
        }
        ctx->entries = e;
        ctx->cap_entries = cap;
    }
    ctx->err = slot_append(ctx->c, f, &slot);
    if (ctx->err < 0) {
        snprintf(ctx->msg, ctx->msg_len, "facility %.64s: %s", f->id,
                 ctx->err == CATALOG_ERR_FULL ? "catalogue full" : "out of memory");
        return 1;
    }
    ctx->entries[ctx->n_entries++] = (struct geo_entry){
        .handle = slot, .layer = (uint8_t)f->category, .where = f->where};
    return 0;
}

/* Gives back what the doubling growth over-allocated (up to half of the slot
 * and string arrays) once a load is complete. Failure to shrink is harmless. */
static void shrink_to_fit(struct catalog *c) {
    if (c->n_slots > 0 && c->n_slots < c->cap_slots) {
        struct slot *s = realloc(c->slots, (size_t)c->n_slots * sizeof *s);
        if (s) {
            c->slots = s;
            c->cap_slots = c->n_slots;
        }
    }
    if (c->arena_len > 0 && c->arena_len < c->arena_cap) {
        char *a = realloc(c->arena, c->arena_len);
        if (a) {
            c->arena = a;
            c->arena_cap = c->arena_len;
        }
    }
}

int catalog_load(struct catalog *c, struct store *st, char *err, size_t err_len) {
    catalog_clear(c);
    struct load_ctx ctx = {.c = c, .msg = err, .msg_len = err_len};
    int ret = store_facility_each(st, load_one, &ctx);
    if (ctx.err < 0) {
        ret = ctx.err;
        goto done;
    }
    if (ret != 0) {
        snprintf(err, err_len, "reading facilities: %s", store_strerror(ret));
        ret = CATALOG_ERR_STORE;
        goto done;
    }
    shrink_to_fit(c);
    ret = geo_index_build(c->index, ctx.entries, ctx.n_entries);
    if (ret < 0) {
        snprintf(err, err_len, "building the index: %s", geo_strerror(ret));
        ret = ret == GEO_ERR_NOMEM ? CATALOG_ERR_NOMEM : CATALOG_ERR_ARG;
        goto done;
    }
    ret = 0;
done:
    free(ctx.entries);
    if (ret < 0) {
        catalog_clear(c);
        geo_index_build(c->index, NULL, 0);
    }
    return ret;
}

int catalog_put(struct catalog *c, const struct store_facility *f) {
    if (!record_is_valid(f)) {
        return CATALOG_ERR_ARG;
    }
    uint32_t slot;
    if (catalog_find(c, f->id, &slot) < 0) {
        int ret = slot_append(c, f, &slot);
        if (ret < 0) {
            return ret;
        }
        ret = geo_index_put(c->index, slot, (uint8_t)f->category, f->where);
        if (ret < 0) {
            /* Undo the append: the slot is the last one and its strings end the arena. */
            hash_delete_at(c, hash_probe(c, f->id));
            c->arena_len = c->slots[slot].id_off;
            c->n_slots--;
            c->n_live--;
            c->per_category[f->category]--;
            return ret == GEO_ERR_NOMEM ? CATALOG_ERR_NOMEM : CATALOG_ERR_ARG;
        }
        return 0;
    }
    struct slot *s = &c->slots[slot];
    uint32_t name_off = s->name_off;
    size_t arena_mark = c->arena_len;
    if (strcmp(c->arena + name_off, f->name ? f->name : "") != 0) {
        int ret = arena_add(c, f->name ? f->name : "", &name_off);
        if (ret < 0) {
            return ret;
        }
    }
    int ret = geo_index_put(c->index, slot, (uint8_t)f->category, f->where);
    if (ret < 0) {
        c->arena_len = arena_mark;
        return ret == GEO_ERR_NOMEM ? CATALOG_ERR_NOMEM : CATALOG_ERR_ARG;
    }
    c->per_category[s->category]--;
    c->per_category[f->category]++;
    s->category = (uint8_t)f->category;
    s->name_off = name_off;
    s->lat_e6 = to_e6(f->where.lat_deg);
    s->lon_e6 = to_e6(f->where.lon_deg);
    return 0;
}

int catalog_remove(struct catalog *c, const char *id) {
    uint32_t slot;
    if (catalog_find(c, id, &slot) < 0) {
        return CATALOG_ERR_NOTFOUND;
    }
    if (geo_index_remove(c->index, slot) < 0) {
        return CATALOG_ERR_NOTFOUND;
    }
    hash_delete_at(c, hash_probe(c, id));
    c->per_category[c->slots[slot].category]--;
    c->slots[slot].category = SLOT_FREE;
    c->n_live--;
    return 0;
}

/* ---- Lookups ------------------------------------------------------------- */

int catalog_find(const struct catalog *c, const char *id, uint32_t *slot) {
    if (c->hash_cap == 0) {
        return CATALOG_ERR_NOTFOUND;
    }
    uint32_t cell = c->hash[hash_probe(c, id)];
    if (cell == HASH_EMPTY) {
        return CATALOG_ERR_NOTFOUND;
    }
    *slot = cell - 1;
    return 0;
}

int catalog_get(const struct catalog *c, uint32_t slot, struct catalog_facility *out) {
    if (slot >= c->n_slots || c->slots[slot].category == SLOT_FREE) {
        return CATALOG_ERR_NOTFOUND;
    }
    const struct slot *s = &c->slots[slot];
    out->id = c->arena + s->id_off;
    out->name = c->arena + s->name_off;
    out->category = s->category;
    out->where = (struct geo_point){s->lat_e6 / 1e6, s->lon_e6 / 1e6};
    out->lat_e6 = s->lat_e6;
    out->lon_e6 = s->lon_e6;
    return 0;
}

void catalog_prefetch(const struct catalog *c, uint32_t slot) {
    if (slot < c->n_slots) {
        __builtin_prefetch(&c->slots[slot]);
    }
}

size_t catalog_count(const struct catalog *c) {
    return c->n_live;
}

size_t catalog_count_category(const struct catalog *c, int category) {
    return category >= 0 && category < STORE_CAT_COUNT ? c->per_category[category] : 0;
}

const struct geo_index *catalog_index(const struct catalog *c) {
    return c->index;
}

size_t catalog_memory_bytes(const struct catalog *c) {
    return sizeof *c + (size_t)c->cap_slots * sizeof *c->slots + c->arena_cap +
           (size_t)c->hash_cap * sizeof *c->hash + geo_index_memory_bytes(c->index);
}
