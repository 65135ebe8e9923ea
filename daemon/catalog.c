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
 * handle, in O(1).
 * Issue 5 grew the slot to 32 bytes: the subtype (an offset to bytes shared by
 * all facilities of that subtype), the typed attributes (16 bytes each, 3-8
 * of them in the Licang data: parsed from attrs_json once at load or put, so a
 * WHERE filter compares numbers and offsets and never parses JSON per
 * candidate) and a timetable number; timetables (1.3 KB each) are shared by
 * all facilities with the same hours text, of which the Licang data has about
 * a dozen. Measured at 10^5 bench facilities (no attributes): 112 bytes per
 * facility with the index, against 100 before. The slot's padding holds the
 * plain-text flag and the id's length (up to 255), and a byte before each
 * name in the arena its length (up to 254), which replies would otherwise
 * measure. OPEN reads a facility's timetable number not from its slot but
 * from the index, which keeps it beside the facility's entry (geo_index's
 * values) for the search's value filter: 40 - 100 candidates a NEAREST,
 * whose slots (or a 4-byte copy of the number in slot order, which this
 * file kept before) are scattered in memory, a cache miss each once they
 * outgrow the caches (28 % of the daemon's time at 10^7 facilities). Areas
 * (about 400) are held
 * with their GEOS geometries and their polygons as GeoJSON text in each of
 * the three coordinate systems (about 450 KB for Licang's), and each keeps
 * the slots linked to it.
 * The slot array and the string arena, a NEAREST's five random reads each,
 * sit on 2 MB boundaries with madvise(MADV_HUGEPAGE) once they reach 2 MB, as
 * geo_index's arrays do: at 10^7 facilities they are 320 and about 300 MB,
 * and a TLB miss on a 4 KB page is a slow page walk in this VM. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <jansson.h>

#include "catalog.h"
#include "geo_crs.h"
#include "hours.h"
#include "reply.h"

#define SLOT_FREE 0xFF     /* category of a removed slot */
#define CATALOG_SUBTYPE_CACHE 64 /* subtypes shared between facilities; the data has ~15 */
#define HASH_EMPTY 0u      /* hash cells hold slot + 1 */

struct slot {
    uint32_t id_off;       /* into arena */
    uint32_t name_off;     /* into arena, after a byte holding the name's length */
    int32_t lat_e6;        /* microdegrees */
    int32_t lon_e6;
    uint32_t subtype_off;  /* into arena */
    uint32_t attr_first;   /* into attrs */
    uint32_t hours_no;     /* into timetables; 0 is "no hours" */
    uint8_t n_attrs;
    uint8_t category;      /* enum store_category, or SLOT_FREE */
    bool plain_text;       /* id and name hold no C0 control or DEL (in the padding) */
    uint8_t id_len;        /* strlen of the id, 0 when over 255 (the padding's last byte;
                            * a slot's id never changes) */
};

_Static_assert(sizeof(struct slot) == 32,
               "a slot is 32 bytes (plain_text and id_len are in the padding)");

/* One typed attribute; text_off for TEXT and IDS, num for NUM and BOOL. */
struct attr {
    uint16_t key;
    uint8_t type;          /* enum catalog_type */
    union {
        double num;
        uint32_t text_off; /* into arena */
    } v;
};

/* An area and the slots of the facilities linked to it. */
struct area_rec {
    uint32_t id_off;       /* into arena */
    uint32_t name_off;
    uint32_t parent_off;
    uint8_t kind;          /* enum store_area_kind */
    uint32_t *links;       /* slots, malloc'ed */
    uint32_t n_links;
    uint32_t cap_links;
    char *geojson[3];      /* the polygon as answers write it, per enum geo_crs; malloc'ed,
                            * NULL when it could not be written */
};

/* A parsed timetable, as one bit per minute of the week, and its text,
 * shared by every facility with the same hours text. The bits, not the
 * ranges: an OPEN query checks one instant against each candidate's
 * timetable, a load and a bit test once the request has resolved the instant
 * to its week minute (1,264 bytes a timetable against 260 for the ranges). */
struct timetable {
    struct hours_week week;
    char *text;            /* malloc'ed, so that arena roll-backs cannot strand it */
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
    struct attr *attrs;    /* every slot's attributes; replaced ones stay until a load */
    uint32_t n_attrs;
    uint32_t cap_attrs;
    char *keys[CATALOG_MAX_KEYS];   /* interned attribute names, malloc'ed */
    uint32_t n_keys;
    uint8_t key_types[STORE_CAT_COUNT][CATALOG_MAX_KEYS];
    struct timetable *timetables;   /* [0] is the empty one */
    uint32_t n_timetables;
    uint32_t cap_timetables;
    uint32_t *tt_hash;     /* timetable number + 1, or HASH_EMPTY; power of two */
    uint32_t tt_hash_cap;
    struct area_rec *areas;         /* in id order; index = area handle */
    uint32_t n_areas;
    uint32_t cap_areas;
    bool areas_sorted;     /* ids ascending (strcmp): binary search works */
    uint32_t subtype_offs[CATALOG_SUBTYPE_CACHE]; /* distinct subtypes already in the arena */
    uint32_t n_subtypes;
    size_t areas_skipped;
    struct geo_areas *area_set;     /* NULL until a load */
    size_t geojson_bytes;  /* the areas' geojson texts */
};

/* ---- Primitives: arena, hash ------------------------------------------- */

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

#define CATALOG_HUGE_BYTES ((size_t)2 << 20)

/* realloc(old, bytes) that keeps `keep` bytes; from CATALOG_HUGE_BYTES on the
 * block starts on a 2 MB boundary and is advised into huge pages. (realloc()
 * would move it with mremap() to an address that is not, which splits the
 * huge pages it had.) Returns NULL and leaves old alone on failure. */
static void *grow_block(void *old, size_t keep, size_t bytes) {
    if (bytes < CATALOG_HUGE_BYTES) {
        return realloc(old, bytes);
    }
    void *q = NULL;
    if (posix_memalign(&q, CATALOG_HUGE_BYTES, bytes) != 0) {
        return NULL;
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    (void)madvise(q, bytes & ~(CATALOG_HUGE_BYTES - 1), MADV_HUGEPAGE); /* only a hint */
#endif
    if (keep > 0) {
        memcpy(q, old, keep);
    }
    free(old);
    return q;
}

/* Makes room for n more bytes in the arena. */
static int arena_reserve(struct catalog *c, size_t n) {
    if (c->arena_len + n > UINT32_MAX) {
        return CATALOG_ERR_FULL;
    }
    if (c->arena_len + n > c->arena_cap) {
        size_t cap = c->arena_cap ? c->arena_cap : 65536;
        while (cap < c->arena_len + n) {
            cap *= 2;
        }
        char *a = grow_block(c->arena, c->arena_len, cap);
        if (!a) {
            return CATALOG_ERR_NOMEM;
        }
        c->arena = a;
        c->arena_cap = cap;
    }
    return 0;
}

static int arena_add(struct catalog *c, const char *s, uint32_t *off) {
    size_t n = strlen(s) + 1;
    int ret = arena_reserve(c, n);
    if (ret < 0) {
        return ret;
    }
    memcpy(c->arena + c->arena_len, s, n);
    *off = (uint32_t)c->arena_len;
    c->arena_len += n;
    return 0;
}

/* arena_add() of a facility's name, after one byte holding its length
 * (UINT8_MAX for that many bytes or more), which replies read instead of
 * calling strlen(): one byte a facility. */
static int arena_add_name(struct catalog *c, const char *s, uint32_t *off) {
    size_t n = strlen(s);
    int ret = arena_reserve(c, n + 2);
    if (ret < 0) {
        return ret;
    }
    c->arena[c->arena_len] = (char)(unsigned char)(n < UINT8_MAX ? n : UINT8_MAX);
    memcpy(c->arena + c->arena_len + 1, s, n + 1);
    *off = (uint32_t)c->arena_len + 1;
    c->arena_len += n + 2;
    return 0;
}

/* Cuts the arena back to `mark` after a failed change, forgetting the shared
 * subtypes that lived past it. */
static void arena_rollback(struct catalog *c, size_t mark) {
    c->arena_len = mark;
    while (c->n_subtypes > 0 && c->subtype_offs[c->n_subtypes - 1] >= mark) {
        c->n_subtypes--;
    }
}

/* Sets *off to a copy of subtype s in the arena, shared with the facilities
 * of the same subtype (there are a few dozen at most, so each facility costs
 * 4 bytes of offset instead of its own copy). */
static int subtype_add(struct catalog *c, const char *s, uint32_t *off) {
    for (uint32_t i = 0; i < c->n_subtypes; i++) {
        if (strcmp(c->arena + c->subtype_offs[i], s) == 0) {
            *off = c->subtype_offs[i];
            return 0;
        }
    }
    int ret = arena_add(c, s, off);
    if (ret == 0 && c->n_subtypes < CATALOG_SUBTYPE_CACHE) {
        c->subtype_offs[c->n_subtypes++] = *off;
    }
    return ret;
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

/* ---- Attributes and timetables ------------------------------------------- */

/* Returns the key number of `name`, interning it; -1 when the table is full
 * or out of memory (the attribute is then dropped). */
static int key_intern(struct catalog *c, const char *name) {
    for (uint32_t k = 0; k < c->n_keys; k++) {
        if (strcmp(c->keys[k], name) == 0) {
            return (int)k;
        }
    }
    if (c->n_keys == CATALOG_MAX_KEYS) {
        return -1;
    }
    char *copy = strdup(name);
    if (!copy) {
        return -1;
    }
    c->keys[c->n_keys] = copy;
    return (int)c->n_keys++;
}

static int attrs_reserve(struct catalog *c, size_t more) {
    if (c->n_attrs + more <= c->cap_attrs) {
        return 0;
    }
    if ((uint64_t)c->n_attrs + more > UINT32_MAX / 2) {
        return CATALOG_ERR_FULL;
    }
    uint32_t cap = c->cap_attrs ? c->cap_attrs : 1024;
    while (cap < c->n_attrs + more) {
        cap *= 2;
    }
    struct attr *a = realloc(c->attrs, (size_t)cap * sizeof *a);
    if (!a) {
        return CATALOG_ERR_NOMEM;
    }
    c->attrs = a;
    c->cap_attrs = cap;
    return 0;
}

/* Joins the strings of an array with ';' into a malloc'ed string; NULL when
 * an element is not a string (or out of memory). */
static char *ids_join(json_t *arr) {
    size_t total = 1;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v)) {
            return NULL;
        }
        total += json_string_length(v) + 1;
    }
    char *out = malloc(total);
    if (!out) {
        return NULL;
    }
    out[0] = '\0';
    char *p = out;
    json_array_foreach(arr, i, v) {
        if (i > 0) {
            *p++ = ';';
        }
        size_t n = json_string_length(v);
        memcpy(p, json_string_value(v), n);
        p += n;
        *p = '\0';
    }
    return out;
}

/* Returns the timetable number for hours `text`, adding it when new: 0 for
 * empty or invalid text (never open). Out of memory also gives 0. */
static uint32_t timetable_intern(struct catalog *c, const char *text) {
    struct hours h;
    if (!text || !text[0] || hours_parse(text, &h, NULL) != 0 || !hours_is_recorded(&h)) {
        return 0;
    }
    if ((uint64_t)(c->n_timetables + 1) * 2 > c->tt_hash_cap) {
        uint32_t cap = c->tt_hash_cap ? c->tt_hash_cap * 2 : 64;
        uint32_t *t = calloc(cap, sizeof *t);
        if (!t) {
            return 0;
        }
        for (uint32_t i = 0; i < c->tt_hash_cap; i++) {
            if (c->tt_hash[i] != HASH_EMPTY) {
                uint32_t j = hash_str(c->timetables[c->tt_hash[i] - 1].text) & (cap - 1);
                while (t[j] != HASH_EMPTY) {
                    j = (j + 1) & (cap - 1);
                }
                t[j] = c->tt_hash[i];
            }
        }
        free(c->tt_hash);
        c->tt_hash = t;
        c->tt_hash_cap = cap;
    }
    uint32_t mask = c->tt_hash_cap - 1;
    uint32_t i = hash_str(text) & mask;
    while (c->tt_hash[i] != HASH_EMPTY) {
        if (strcmp(c->timetables[c->tt_hash[i] - 1].text, text) == 0) {
            return c->tt_hash[i] - 1;
        }
        i = (i + 1) & mask;
    }
    /* Number 0 stays "no hours". It is counted only once the array holds it:
     * a failed first allocation must leave n_timetables 0, or OPEN would read
     * timetable 0 of a NULL array. */
    if (c->n_timetables == 0 ? c->cap_timetables == 0 : c->n_timetables >= c->cap_timetables) {
        uint32_t cap = c->cap_timetables ? c->cap_timetables * 2 : 16;
        struct timetable *t = realloc(c->timetables, (size_t)cap * sizeof *t);
        if (!t) {
            return 0;
        }
        if (c->cap_timetables == 0) {
            t[0] = (struct timetable){.text = NULL}; /* never open: all bits 0 */
        }
        c->timetables = t;
        c->cap_timetables = cap;
    }
    if (c->n_timetables == 0) {
        c->n_timetables = 1;
    }
    char *copy = strdup(text);
    if (!copy) {
        return 0;
    }
    uint32_t no = c->n_timetables++;
    c->timetables[no].text = copy;
    hours_week_init(&c->timetables[no].week, &h);
    c->tt_hash[i] = no + 1;
    return no;
}

/* Fills s's subtype, attributes and timetable from f, appending to the arena
 * and the attribute array. On error the caller rolls both back. */
static int slot_extras(struct catalog *c, const struct store_facility *f, struct slot *s) {
    int ret = subtype_add(c, f->subtype ? f->subtype : "", &s->subtype_off);
    if (ret < 0) {
        return ret;
    }
    s->attr_first = c->n_attrs;
    s->n_attrs = 0;
    const char *hours_text = f->hours;
    /* The alternative hours live in the arena, which later arena_add() calls
     * may move, so remember their offset and make the pointer at the end. */
    bool alt_hours = false;
    uint32_t alt_hours_off = 0;
    json_t *obj = f->attrs_json ? json_loads(f->attrs_json, 0, NULL) : NULL;
    if (json_is_object(obj)) {
        ret = attrs_reserve(c, json_object_size(obj) < CATALOG_MAX_ATTRS
                                   ? json_object_size(obj) : CATALOG_MAX_ATTRS);
        const char *key;
        json_t *v;
        json_object_foreach(obj, key, v) {
            if (ret < 0 || s->n_attrs == CATALOG_MAX_ATTRS) {
                break;
            }
            struct attr a = {0};
            char *joined = NULL;
            const char *text = NULL;
            if (json_is_number(v)) {
                a.type = CATALOG_NUM;
                a.v.num = json_number_value(v);
            } else if (json_is_boolean(v)) {
                a.type = CATALOG_BOOL;
                a.v.num = json_is_true(v) ? 1.0 : 0.0;
            } else if (json_is_string(v)) {
                a.type = CATALOG_TEXT;
                text = json_string_value(v);
            } else if (json_is_array(v) && (joined = ids_join(v)) != NULL) {
                a.type = CATALOG_IDS;
                text = joined;
            } else {
                continue;
            }
            int k = key_intern(c, key);
            if (k >= 0 && text) {
                ret = arena_add(c, text, &a.v.text_off);
            }
            free(joined);
            if (k < 0 || ret < 0) {
                continue;
            }
            a.key = (uint16_t)k;
            c->attrs[c->n_attrs++] = a;
            s->n_attrs++;
            if (f->category >= 0 && f->category < STORE_CAT_COUNT) {
                c->key_types[f->category][k] |= a.type;
            }
            bool alt = (f->category == STORE_CAT_PARKING && strcmp(key, "shared_hours") == 0) ||
                       (f->category == STORE_CAT_MEAL_POINT && strcmp(key, "meal_hours") == 0);
            if (alt && a.type == CATALOG_TEXT && text[0]) {
                alt_hours = true;
                alt_hours_off = a.v.text_off;
            }
        }
    }
    json_decref(obj);
    if (ret < 0) {
        return ret;
    }
    if (alt_hours) {
        hours_text = c->arena + alt_hours_off;
    }
    s->hours_no = timetable_intern(c, hours_text);
    return 0;
}


/* ---- Area links -------------------------------------------------------------- */

static int area_lookup(const struct catalog *c, const char *id, uint32_t *handle) {
    if (c->areas_sorted) {
        uint32_t lo = 0, hi = c->n_areas;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            int cmp = strcmp(c->arena + c->areas[mid].id_off, id);
            if (cmp == 0) {
                *handle = mid;
                return 0;
            }
            if (cmp < 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return CATALOG_ERR_NOTFOUND;
    }
    for (uint32_t i = 0; i < c->n_areas; i++) {
        if (strcmp(c->arena + c->areas[i].id_off, id) == 0) {
            *handle = i;
            return 0;
        }
    }
    return CATALOG_ERR_NOTFOUND;
}

/* Adds (add) or removes slot from the links of the area named by
 * id[0..len-1]. Out of memory drops the link. */
static void area_link(struct catalog *c, const char *id, size_t len, uint32_t slot, bool add) {
    char buf[STORE_ID_MAX_BYTES + 1];
    uint32_t h;
    if (len == 0 || len > STORE_ID_MAX_BYTES) {
        return;
    }
    memcpy(buf, id, len);
    buf[len] = '\0';
    if (area_lookup(c, buf, &h) < 0) {
        return;
    }
    struct area_rec *a = &c->areas[h];
    if (!add) {
        for (uint32_t i = 0; i < a->n_links; i++) {
            if (a->links[i] == slot) {
                memmove(&a->links[i], &a->links[i + 1], (a->n_links - i - 1) * sizeof *a->links);
                a->n_links--;
                return;
            }
        }
        return;
    }
    for (uint32_t i = 0; i < a->n_links; i++) {
        if (a->links[i] == slot) {
            return; /* "serves=cm-1;cm-1" links once */
        }
    }
    if (a->n_links == a->cap_links) {
        uint32_t cap = a->cap_links ? a->cap_links * 2 : 4;
        uint32_t *l = realloc(a->links, (size_t)cap * sizeof *l);
        if (!l) {
            return;
        }
        a->links = l;
        a->cap_links = cap;
    }
    a->links[a->n_links++] = slot;
}

/* Links (add) or unlinks slot by its attributes: a doctor_team's serves and
 * service_area, a school's catchment. */
static void slot_links(struct catalog *c, uint32_t slot, bool add) {
    const struct slot *s = &c->slots[slot];
    if (c->n_areas == 0 ||
        (s->category != STORE_CAT_DOCTOR_TEAM && s->category != STORE_CAT_SCHOOL)) {
        return;
    }
    for (uint32_t i = 0; i < s->n_attrs; i++) {
        const struct attr *a = &c->attrs[s->attr_first + i];
        const char *key = c->keys[a->key];
        bool linked = s->category == STORE_CAT_DOCTOR_TEAM
                          ? strcmp(key, "serves") == 0 || strcmp(key, "service_area") == 0
                          : strcmp(key, "catchment") == 0;
        if (!linked || (a->type != CATALOG_TEXT && a->type != CATALOG_IDS)) {
            continue;
        }
        const char *p = c->arena + a->v.text_off;
        while (*p) {
            const char *end = a->type == CATALOG_IDS ? strchr(p, ';') : NULL;
            size_t len = end ? (size_t)(end - p) : strlen(p);
            area_link(c, p, len, slot, add);
            p += len + (end ? 1 : 0);
        }
    }
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
    free(c->attrs);
    for (uint32_t i = 1; i < c->n_timetables; i++) {
        free(c->timetables[i].text);
    }
    free(c->timetables);
    free(c->tt_hash);
    for (uint32_t k = 0; k < c->n_keys; k++) {
        free(c->keys[k]);
    }
    c->n_keys = 0;
    c->n_subtypes = 0;
    memset(c->key_types, 0, sizeof c->key_types);
    for (uint32_t i = 0; i < c->n_areas; i++) {
        free(c->areas[i].links);
        for (int crs = 0; crs < 3; crs++) {
            free(c->areas[i].geojson[crs]);
        }
    }
    c->geojson_bytes = 0;
    free(c->areas);
    c->areas = NULL;
    c->n_areas = c->cap_areas = 0;
    c->areas_skipped = 0;
    geo_areas_free(c->area_set);
    c->area_set = NULL;
    c->attrs = NULL;
    c->timetables = NULL;
    c->tt_hash = NULL;
    c->n_attrs = c->cap_attrs = c->n_timetables = c->cap_timetables = c->tt_hash_cap = 0;
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

/* True when s holds no C0 control character and no DEL: a reply may copy it
 * as it is instead of replacing those with spaces byte by byte. */
static bool text_is_plain(const char *s) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch == 0x7f) {
            return false;
        }
    }
    return true;
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
        struct slot *s = grow_block(c->slots, (size_t)c->n_slots * sizeof *s,
                                    (size_t)cap * sizeof *s);
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
    uint32_t attrs_mark = c->n_attrs;
    ret = arena_add(c, f->id, &s.id_off);
    if (ret == 0) {
        ret = arena_add_name(c, f->name ? f->name : "", &s.name_off);
    }
    if (ret == 0) {
        ret = slot_extras(c, f, &s);
    }
    if (ret < 0) {
        arena_rollback(c, arena_mark);
        c->n_attrs = attrs_mark;
        return ret;
    }
    s.plain_text = text_is_plain(f->id) && text_is_plain(c->arena + s.name_off);
    size_t id_len = strlen(f->id);
    s.id_len = id_len <= UINT8_MAX ? (uint8_t)id_len : 0;
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
        .handle = slot, .layer = (uint8_t)f->category, .where = f->where,
        .value = ctx->c->slots[slot].hours_no};
    slot_links(ctx->c, slot, true);
    return 0;
}

struct area_load_ctx {
    struct catalog *c;
    int err;
    char *msg;
    size_t msg_len;
};

static int load_area(const struct store_area *a, void *ctx_) {
    struct area_load_ctx *ctx = ctx_;
    struct catalog *c = ctx->c;
    if (a->kind < 0 || a->kind >= STORE_AREA_KIND_COUNT ||
        geo_areas_add_wkb(c->area_set, c->n_areas, (uint8_t)a->kind, a->wkb, a->wkb_len) < 0) {
        c->areas_skipped++;
        return 0;
    }
    if (c->n_areas == c->cap_areas) {
        uint32_t cap = c->cap_areas ? c->cap_areas * 2 : 64;
        struct area_rec *r = realloc(c->areas, (size_t)cap * sizeof *r);
        if (!r) {
            goto nomem;
        }
        c->areas = r;
        c->cap_areas = cap;
    }
    struct area_rec r = {.kind = (uint8_t)a->kind};
    if (arena_add(c, a->id, &r.id_off) < 0 ||
        arena_add(c, a->name ? a->name : "", &r.name_off) < 0 ||
        arena_add(c, a->parent ? a->parent : "", &r.parent_off) < 0) {
        goto nomem;
    }
    if (c->n_areas > 0 && strcmp(c->arena + c->areas[c->n_areas - 1].id_off, a->id) >= 0) {
        c->areas_sorted = false;
    }
    c->areas[c->n_areas++] = r;
    return 0;
nomem:
    ctx->err = CATALOG_ERR_NOMEM;
    snprintf(ctx->msg, ctx->msg_len, "out of memory loading areas");
    return 1;
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

/* Writes every area's polygon in each coordinate system as the JSON formats
 * answer it. Areas do not change between loads, and writing them per request
 * (GEOS's GeoJSON writer, then jansson's parse and dump) made /v1/areas, 400
 * of them, 8 ms of the event loop; the three copies of the Licang areas are
 * about 450 KB. A text that cannot be written stays NULL: the answer then
 * takes the slow way, which reports why. */
static void area_geojson_write(struct catalog *c) {
    for (uint32_t i = 0; i < c->n_areas; i++) {
        for (int crs = 0; crs < 3; crs++) {
            char *raw = NULL;
            if (geo_areas_geojson(c->area_set, i, (enum geo_crs)crs, &raw) == 0) {
                char *text = reply_geometry_json(raw);
                c->areas[i].geojson[crs] = text;
                c->geojson_bytes += text ? strlen(text) + 1 : 0;
            }
            free(raw);
        }
    }
}

int catalog_load(struct catalog *c, struct store *st, char *err, size_t err_len) {
    catalog_clear(c);
    struct load_ctx ctx = {.c = c, .msg = err, .msg_len = err_len};
    struct area_load_ctx actx = {.c = c, .msg = err, .msg_len = err_len};
    int ret;
    c->area_set = geo_areas_new();
    if (!c->area_set) {
        snprintf(err, err_len, "out of memory creating the area set");
        ret = CATALOG_ERR_NOMEM;
        goto done;
    }
    c->areas_sorted = true;
    ret = store_area_each(st, STORE_AREA_WKB, load_area, &actx);
    if (actx.err < 0) {
        ret = actx.err;
        goto done;
    }
    if (ret != 0) {
        snprintf(err, err_len, "reading areas: %s", store_strerror(ret));
        ret = CATALOG_ERR_STORE;
        goto done;
    }
    ret = geo_areas_build(c->area_set);
    if (ret < 0) {
        snprintf(err, err_len, "building the area tree: %s", geo_strerror(ret));
        ret = ret == GEO_ERR_NOMEM ? CATALOG_ERR_NOMEM : CATALOG_ERR_ARG;
        goto done;
    }
    area_geojson_write(c);
    ret = store_facility_each(st, load_one, &ctx);
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
        ret = geo_index_put(c->index, slot, (uint8_t)f->category, f->where,
                            c->slots[slot].hours_no);
        if (ret < 0) {
            /* Undo the append: the slot is the last one and its strings end the arena. */
            hash_delete_at(c, hash_probe(c, f->id));
            arena_rollback(c, c->slots[slot].id_off);
            c->n_attrs = c->slots[slot].attr_first;
            c->n_slots--;
            c->n_live--;
            c->per_category[f->category]--;
            return ret == GEO_ERR_NOMEM ? CATALOG_ERR_NOMEM : CATALOG_ERR_ARG;
        }
        slot_links(c, slot, true);
        return 0;
    }
    struct slot *s = &c->slots[slot];
    struct slot ns = *s;
    size_t arena_mark = c->arena_len;
    uint32_t attrs_mark = c->n_attrs;
    int ret = 0;
    if (strcmp(c->arena + ns.name_off, f->name ? f->name : "") != 0) {
        ret = arena_add_name(c, f->name ? f->name : "", &ns.name_off);
    }
    if (ret == 0) {
        ret = slot_extras(c, f, &ns);
    }
    if (ret == 0) {
        /* The index keeps the timetable number too, for OPEN: a new one
         * (new hours) changes it, wherever the facility now is. */
        ret = geo_index_put(c->index, slot, (uint8_t)f->category, f->where, ns.hours_no);
        if (ret < 0) {
            ret = ret == GEO_ERR_NOMEM ? CATALOG_ERR_NOMEM : CATALOG_ERR_ARG;
        }
    }
    if (ret < 0) {
        arena_rollback(c, arena_mark);
        c->n_attrs = attrs_mark;
        return ret;
    }
    slot_links(c, slot, false); /* by the old attributes */
    uint32_t name_off = ns.name_off;
    s->subtype_off = ns.subtype_off;
    s->attr_first = ns.attr_first;
    s->n_attrs = ns.n_attrs;
    s->hours_no = ns.hours_no;
    c->per_category[s->category]--;
    c->per_category[f->category]++;
    s->category = (uint8_t)f->category;
    s->name_off = name_off;
    s->plain_text = text_is_plain(c->arena + s->id_off) && text_is_plain(c->arena + name_off);
    s->lat_e6 = to_e6(f->where.lat_deg);
    s->lon_e6 = to_e6(f->where.lon_deg);
    slot_links(c, slot, true);
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
    slot_links(c, slot, false);
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
    out->subtype = c->arena + s->subtype_off;
    out->category = s->category;
    out->where = (struct geo_point){s->lat_e6 / 1e6, s->lon_e6 / 1e6};
    out->lat_e6 = s->lat_e6;
    out->lon_e6 = s->lon_e6;
    out->plain_text = s->plain_text;
    out->id_len = s->id_len;
    unsigned name_len = (unsigned char)c->arena[s->name_off - 1];
    out->name_len = name_len < UINT8_MAX ? name_len : 0;
    out->n_attrs = s->n_attrs;
    return 0;
}

void catalog_prefetch(const struct catalog *c, uint32_t slot) {
    if (slot < c->n_slots) {
        __builtin_prefetch(&c->slots[slot]);
    }
}

void catalog_prefetch_text(const struct catalog *c, uint32_t slot) {
    if (slot < c->n_slots) {
        const struct slot *s = &c->slots[slot];
        __builtin_prefetch(c->arena + s->id_off);
        __builtin_prefetch(c->arena + s->name_off);
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
           (size_t)c->hash_cap * sizeof *c->hash + (size_t)c->cap_attrs * sizeof *c->attrs +
           (size_t)c->cap_timetables * sizeof *c->timetables +
           (size_t)c->tt_hash_cap * sizeof *c->tt_hash +
           (size_t)c->cap_areas * sizeof *c->areas + c->geojson_bytes +
           geo_index_memory_bytes(c->index);
}

/* ---- Attributes, conditions, hours ----------------------------------------- */

size_t catalog_attrs(const struct catalog *c, uint32_t slot, struct catalog_attr *out,
                     size_t max) {
    if (slot >= c->n_slots || c->slots[slot].category == SLOT_FREE) {
        return 0;
    }
    const struct slot *s = &c->slots[slot];
    for (size_t i = 0; i < s->n_attrs && i < max; i++) {
        const struct attr *a = &c->attrs[s->attr_first + i];
        bool is_text = a->type == CATALOG_TEXT || a->type == CATALOG_IDS;
        out[i] = (struct catalog_attr){.key = c->keys[a->key], .type = a->type,
                                       .num = is_text ? 0.0 : a->v.num,
                                       .text = is_text ? c->arena + a->v.text_off : NULL};
    }
    return s->n_attrs;
}

int catalog_key_find(const struct catalog *c, const char *name) {
    for (uint32_t k = 0; k < c->n_keys; k++) {
        if (strcmp(c->keys[k], name) == 0) {
            return (int)k;
        }
    }
    return -1;
}

size_t catalog_key_count(const struct catalog *c) {
    return c->n_keys;
}

const char *catalog_key_name(const struct catalog *c, int key) {
    return key >= 0 && (uint32_t)key < c->n_keys ? c->keys[key] : NULL;
}

unsigned catalog_key_types(const struct catalog *c, int category, int key) {
    if (category < 0 || category >= STORE_CAT_COUNT || key < 0 || (uint32_t)key >= c->n_keys) {
        return 0;
    }
    return c->key_types[category][key];
}

static bool order_holds(int op, int cmp) {
    switch (op) {
    case CATALOG_EQ:
        return cmp == 0;
    case CATALOG_NE:
        return cmp != 0;
    case CATALOG_LT:
        return cmp < 0;
    case CATALOG_LE:
        return cmp <= 0;
    case CATALOG_GT:
        return cmp > 0;
    case CATALOG_GE:
        return cmp >= 0;
    default:
        return false;
    }
}

/* True when `id` is one of the ';'-separated ids of list. */
static bool ids_contain(const char *list, const char *id) {
    size_t n = strlen(id);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, id, n) == 0) {
            return true;
        }
        if (!end) {
            break;
        }
        p = end + 1;
    }
    return false;
}

static bool cond_holds(const struct catalog *c, const struct slot *s,
                       const struct catalog_cond *q) {
    if (q->key == CATALOG_KEY_NAME || q->key == CATALOG_KEY_SUBTYPE) {
        uint32_t off = q->key == CATALOG_KEY_NAME ? s->name_off : s->subtype_off;
        return order_holds(q->op, strcmp(c->arena + off, q->text));
    }
    for (uint32_t i = 0; i < s->n_attrs; i++) {
        const struct attr *a = &c->attrs[s->attr_first + i];
        if (a->key != q->key) {
            continue;
        }
        switch (a->type) {
        case CATALOG_NUM:
            return q->is_num && order_holds(q->op, (a->v.num > q->num) - (a->v.num < q->num));
        case CATALOG_BOOL:
            return q->is_bool && order_holds(q->op, (a->v.num > q->num) - (a->v.num < q->num));
        case CATALOG_TEXT:
            return order_holds(q->op, strcmp(c->arena + a->v.text_off, q->text));
        case CATALOG_IDS:
            if (q->op == CATALOG_EQ || q->op == CATALOG_NE) {
                bool in = ids_contain(c->arena + a->v.text_off, q->text);
                return q->op == CATALOG_EQ ? in : !in;
            }
            return false;
        default:
            return false;
        }
    }
    return false;
}

bool catalog_matches(const struct catalog *c, uint32_t slot, const struct catalog_cond *conds,
                     size_t n) {
    if (slot >= c->n_slots || c->slots[slot].category == SLOT_FREE) {
        return false;
    }
    const struct slot *s = &c->slots[slot];
    for (size_t i = 0; i < n; i++) {
        if (!cond_holds(c, s, &conds[i])) {
            return false;
        }
    }
    return true;
}

bool catalog_timetable_is_open(const struct catalog *c, uint32_t timetable_no, int week_minute) {
    return timetable_no > 0 && timetable_no < c->n_timetables &&
           hours_week_is_open(&c->timetables[timetable_no].week, week_minute);
}

bool catalog_is_open_in_week(const struct catalog *c, uint32_t slot, int week_minute) {
    /* A free slot keeps its last hours_no, but is never open. */
    if (slot >= c->n_slots || c->slots[slot].category == SLOT_FREE) {
        return false;
    }
    return catalog_timetable_is_open(c, c->slots[slot].hours_no, week_minute);
}

bool catalog_is_open_at(const struct catalog *c, uint32_t slot, int64_t unix_s,
                        int utc_offset_min) {
    return catalog_is_open_in_week(c, slot, hours_week_minute(unix_s, utc_offset_min));
}

/* ---- Areas ----------------------------------------------------------------------- */

size_t catalog_area_count(const struct catalog *c) {
    return c->n_areas;
}

size_t catalog_areas_skipped(const struct catalog *c) {
    return c->areas_skipped;
}

int catalog_area_find(const struct catalog *c, const char *id, uint32_t *handle) {
    return area_lookup(c, id, handle);
}

int catalog_area_get(const struct catalog *c, uint32_t handle, struct catalog_area *out) {
    if (handle >= c->n_areas) {
        return CATALOG_ERR_NOTFOUND;
    }
    const struct area_rec *a = &c->areas[handle];
    *out = (struct catalog_area){.id = c->arena + a->id_off, .kind = a->kind,
                                 .name = c->arena + a->name_off,
                                 .parent = c->arena + a->parent_off};
    return 0;
}

const char *catalog_area_geojson(const struct catalog *c, uint32_t handle, int crs) {
    return handle < c->n_areas && crs >= 0 && crs < 3 ? c->areas[handle].geojson[crs] : NULL;
}

struct geo_areas *catalog_areas(struct catalog *c) {
    return c->area_set;
}

size_t catalog_area_links(const struct catalog *c, uint32_t handle, uint32_t *out, size_t max) {
    if (handle >= c->n_areas) {
        return 0;
    }
    const struct area_rec *a = &c->areas[handle];
    for (uint32_t i = 0; i < a->n_links && i < max; i++) {
        out[i] = a->links[i];
    }
    return a->n_links;
}
