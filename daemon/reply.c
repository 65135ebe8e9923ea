/* reply.c: the reply builder, text and JSON.
 *
 * A reply is appended to a growable buffer that doubles from 4 KiB; a NEAREST
 * with K 1000 is about 100 KiB, the largest single answer today. An allocation
 * failure does not abort: it marks the buffer failed and later appends are
 * dropped, and the server closes the connection instead of sending it.
 * JSON answers are built as jansson documents and dumped as one line each
 * when their last announced record arrives.
 * The text records of NEAREST are the hot path (five a request, written
 * under a million times a second at 50 connections): one reserve per record,
 * strings copied a word at a time with their lengths taken from the caller
 * when it knows them, positions and distances in integers with two-digit
 * tables, and no printf. Every fast path has an oracle test against printf
 * in tests/test_commands.c. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "errors.h"
#include "reply.h"

#define REPLY_FIRST_CAP 4096

/* Significant digits of JSON numbers: enough for 6 decimals of a longitude
 * and for a distance of 10^4 km to 0.1 m, which are rounded before dumping. */
#define REPLY_JSON_DIGITS 10

static const char *const format_names[] = {"text", "json", "geojson"};

int reply_format_parse(const char *name, enum reply_format *out) {
    for (int f = 0; f < 3; f++) {
        if (strcasecmp(name, format_names[f]) == 0) {
            *out = (enum reply_format)f;
            return 0;
        }
    }
    return -1;
}

const char *reply_format_name(enum reply_format f) {
    return (unsigned)f < 3 ? format_names[f] : "text";
}

static void json_drop(struct reply *r) {
    json_decref(r->records);
    r->records = NULL;
}

void reply_init(struct reply *r) {
    memset(r, 0, sizeof *r);
}

void reply_close(struct reply *r) {
    free(r->buf);
    json_drop(r);
    reply_init(r);
}

size_t reply_len(const struct reply *r) {
    return r->len;
}

bool reply_failed(const struct reply *r) {
    return r->nomem;
}

char *reply_take(struct reply *r, size_t *len) {
    char *buf = r->len > 0 ? r->buf : NULL;
    *len = r->len;
    if (!buf) {
        free(r->buf);
    }
    r->buf = NULL;
    r->len = r->cap = 0;
    r->nomem = false;
    return buf;
}

char *reply_take_buffer(struct reply *r, size_t *len, size_t *cap) {
    char *buf = r->buf;
    *len = r->len;
    *cap = r->cap;
    r->buf = NULL;
    r->len = r->cap = 0;
    r->nomem = false;
    return buf;
}

bool reply_reuse(struct reply *r, char *buf, size_t cap) {
    if (r->buf || cap == 0) {
        return false;
    }
    r->buf = buf;
    r->cap = cap;
    r->len = 0;
    buf[0] = '\0';
    return true;
}

static void put_bytes(struct reply *r, const char *s, size_t n);

void reply_append(struct reply *r, struct reply *from) {
    size_t len = 0;
    bool failed = from->nomem;
    char *buf = reply_take(from, &len);
    if (buf) {
        put_bytes(r, buf, len);
        free(buf);
    }
    r->nomem = r->nomem || failed;
}

/* reserve() when the buffer is full or failed. */
static bool reserve_grow(struct reply *r, size_t more) {
    if (r->nomem) {
        return false;
    }
    size_t cap = r->cap ? r->cap : REPLY_FIRST_CAP;
    while (cap < r->len + more + 1) {
        cap *= 2;
    }
    char *buf = realloc(r->buf, cap);
    if (!buf) {
        r->nomem = true;
        return false;
    }
    r->buf = buf;
    r->cap = cap;
    return true;
}

/* Makes room for `more` bytes plus a NUL. Returns false (and marks r) on
 * failure. Inline: it runs for every record, and nearly always only
 * compares. */
static inline bool reserve(struct reply *r, size_t more) {
    if (r->len + more + 1 <= r->cap && !r->nomem) {
        return true;
    }
    return reserve_grow(r, more);
}

static void put_bytes(struct reply *r, const char *s, size_t n) {
    if (reserve(r, n)) {
        memcpy(r->buf + r->len, s, n);
        r->len += n;
        r->buf[r->len] = '\0';
    }
}

/* Copies n bytes of s to out with C0 controls (tabs, CR, LF...) and DEL
 * turned into spaces. Eight bytes at a time: a word with no byte below 0x20
 * and none equal to 0x7f, which is every word of ordinary text, is copied as
 * it is; only a word holding one goes byte by byte. This was a byte loop,
 * about 11 instructions a byte and a tenth of a NEAREST's cost. */
static void copy_clean(char *out, const char *s, size_t n) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        memcpy(out + i, &w, 8);
        uint64_t del = w ^ (0x7f * ones);
        /* Nonzero iff some byte is below 0x20, or some byte is 0x7f. */
        if (((w - 0x20 * ones) & ~w & highs) | ((del - ones) & ~del & highs)) {
            for (size_t j = i; j < i + 8; j++) {
                unsigned char c = (unsigned char)s[j];
                out[j] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
            }
        }
    }
    if (i < n) {
        /* The last bytes, in a word padded with 'a'. */
        uint64_t w = 0x61 * ones;
        memcpy(&w, s + i, n - i);
        uint64_t del = w ^ (0x7f * ones);
        if (((w - 0x20 * ones) & ~w & highs) | ((del - ones) & ~del & highs)) {
            for (; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                out[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
            }
        } else {
            memcpy(out + i, &w, n - i);
        }
    }
}

/* Copies s[0..n) to out and returns out + n: memcpy() for the short strings of
 * a record, without the call or a loop. From 4 to 32 bytes (nearly every id,
 * category and name) it takes two to four loads of 4 or 8 bytes, the last one
 * overlapping the one before it; shorter strings go byte by byte, longer ones
 * to memcpy(). Reads only s[0..n), writes only out[0..n). */
static inline char *copy_short(char *out, const char *s, size_t n) {
    if (n >= 8 && n <= 32) {
        uint64_t a, b, c, d;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        if (n > 16) {
            memcpy(&c, s + 8, 8);
            memcpy(&d, s + n - 16, 8);
            memcpy(out + 8, &c, 8);
            memcpy(out + n - 16, &d, 8);
        }
        memcpy(out, &a, 8);
        memcpy(out + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        memcpy(out, &a, 4);
        memcpy(out + n - 4, &b, 4);
    } else if (n < 4) {
        for (size_t i = 0; i < n; i++) {
            out[i] = s[i];
        }
    } else {
        memcpy(out, s, n);
    }
    return out + n;
}

/* Appends s with tabs, CR and LF (and other C0 controls) turned into spaces. */
static void put_field(struct reply *r, const char *s) {
    size_t n = strlen(s);
    if (!reserve(r, n)) {
        return;
    }
    copy_clean(r->buf + r->len, s, n);
    r->len += n;
    r->buf[r->len] = '\0';
}

static void put_fmt(struct reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_fmt(struct reply *r, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        r->nomem = true; /* cannot happen with the formats below */
        return;
    }
    put_bytes(r, tmp, (size_t)n);
}

/* ---- JSON answers ---------------------------------------------------------- */

static bool is_json(const struct reply *r) {
    return r->format == REPLY_JSON || r->format == REPLY_GEOJSON;
}

/* A JSON string of s; "?" when s is not UTF-8 (the store only holds UTF-8). */
static json_t *jstr(const char *s) {
    json_t *j = json_string(s);
    return j ? j : json_string("?");
}

static json_t *jround(double v, double scale) {
    return json_real(round(v * scale) / scale);
}

/* Appends `doc` as one line; the caller keeps its reference. */
static void json_put_line(struct reply *r, json_t *doc) {
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(REPLY_JSON_DIGITS))
                     : NULL;
    if (!text) {
        r->nomem = true;
    } else {
        put_bytes(r, text, strlen(text));
        put_bytes(r, "\n", 1);
    }
    free(text);
}

/* Writes the answer once every announced record has arrived. In geojson,
 * facility answers (their records are Feature objects) and empty ones become
 * a FeatureCollection; the others take the json shape. */
static void json_finish_if_complete(struct reply *r) {
    if (r->expected > 0 || !r->records) {
        return;
    }
    json_t *records = r->records;
    r->records = NULL; /* the document below steals it */
    size_t n = json_array_size(records);
    bool features = r->format == REPLY_GEOJSON &&
                    (n == 0 || json_is_object(json_array_get(records, 0)));
    json_t *doc = features ? json_pack("{s:s, s:b, s:I, s:o}", "type", "FeatureCollection",
                                       "ok", 1, "count", (json_int_t)n, "features", records)
                           : json_pack("{s:b, s:I, s:o}", "ok", 1, "count", (json_int_t)n,
                                       "results", records);
    if (doc && r->answer_crs && json_object_set_new(doc, "crs", json_string(r->answer_crs))) {
        r->nomem = true;
    }
    r->answer_crs = NULL;
    json_put_line(r, doc);
    json_decref(doc);
}

static void json_begin(struct reply *r, size_t n) {
    json_drop(r);
    r->records = json_array();
    if (!r->records) {
        r->nomem = true;
        return;
    }
    r->expected = n;
    json_finish_if_complete(r);
}

/* Adds a record to the answer being built. Takes ownership of rec. */
static void json_add(struct reply *r, json_t *rec) {
    if (!r->records || !rec || json_array_append_new(r->records, rec) != 0) {
        r->nomem = true;
        return;
    }
    if (r->expected > 0) {
        r->expected--;
    }
    json_finish_if_complete(r);
}

static json_t *json_attr_value(const struct reply_attr *a) {
    switch (a->type) {
    case REPLY_ATTR_NUM:
        if (a->num == floor(a->num) && fabs(a->num) < 1e15) {
            return json_integer((json_int_t)a->num);
        }
        return json_real(a->num);
    case REPLY_ATTR_BOOL:
        return json_boolean(a->num != 0.0);
    case REPLY_ATTR_IDS: {
        json_t *arr = json_array();
        const char *p = a->text ? a->text : "";
        while (arr && *p) {
            const char *end = strchr(p, ';');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            json_array_append_new(arr, json_stringn(p, len));
            p = end ? end + 1 : p + len;
        }
        return arr;
    }
    default:
        return jstr(a->text ? a->text : "");
    }
}

/* Adds the attributes to obj, skipping names obj already has. */
static json_t *json_add_attrs(json_t *obj, const struct reply_facility *f) {
    for (size_t i = 0; obj && i < f->n_attrs; i++) {
        if (!json_object_get(obj, f->attrs[i].key)) {
            json_object_set_new(obj, f->attrs[i].key, json_attr_value(&f->attrs[i]));
        }
    }
    return obj;
}

static json_t *json_facility(const struct reply *r, const struct reply_facility *f) {
    json_t *dist = isnan(f->distance_m) ? json_null() : jround(f->distance_m, 10.0);
    if (r->format == REPLY_GEOJSON) {
        json_t *feat = json_pack(
            "{s:s, s:{s:s, s:[o, o]}, s:{s:o, s:o, s:o, s:o}}", "type", "Feature", "geometry",
            "type", "Point", "coordinates", jround(f->where.lon_deg, 1e6),
            jround(f->where.lat_deg, 1e6), "properties", "id", jstr(f->id), "category",
            jstr(f->category), "name", jstr(f->name), "distance_m", dist);
        json_add_attrs(json_object_get(feat, "properties"), f);
        return feat;
    }
    json_t *obj = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "id", jstr(f->id), "category",
                            jstr(f->category), "name", jstr(f->name), "lat",
                            jround(f->where.lat_deg, 1e6), "lon",
                            jround(f->where.lon_deg, 1e6), "distance_m", dist);
    return json_add_attrs(obj, f);
}

/* Appends the attributes as "\tkey=value" fields. */
static void put_attrs(struct reply *r, const struct reply_facility *f) {
    for (size_t i = 0; i < f->n_attrs; i++) {
        const struct reply_attr *a = &f->attrs[i];
        put_bytes(r, "\t", 1);
        put_field(r, a->key);
        put_bytes(r, "=", 1);
        if (a->type == REPLY_ATTR_NUM) {
            put_fmt(r, "%.15g", a->num);
        } else if (a->type == REPLY_ATTR_BOOL) {
            put_field(r, a->num != 0.0 ? "true" : "false");
        } else {
            put_field(r, a->text ? a->text : "");
        }
    }
}

/* ---- Answers ------------------------------------------------------------------ */

/* "00" to "99": two digits at a time halves the divisions. */
static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Writes the two digits of n (0 - 99) at p. */
static inline void put2(char *p, uint32_t n) {
    memcpy(p, digit_pairs + 2 * n, 2);
}

/* Writes n (0 - 9999) in decimal at p, without leading zeros; returns the end. */
static inline char *fmt_small(char *p, uint32_t n) {
    if (n < 100) {
        if (n < 10) {
            *p = (char)('0' + n);
            return p + 1;
        }
        put2(p, n);
        return p + 2;
    }
    uint32_t hi = n / 100, lo = n - hi * 100;
    if (hi < 10) {
        *p = (char)('0' + hi);
        put2(p + 1, lo);
        return p + 3;
    }
    put2(p, hi);
    put2(p + 2, lo);
    return p + 4;
}

/* Writes n (0 - 9999) as exactly four digits at p. */
static inline void put4(char *p, uint32_t n) {
    uint32_t hi = n / 100;
    put2(p, hi);
    put2(p + 2, n - hi * 100);
}

/* Writes n in decimal at p; returns the end. Below 10^8 (every count and
 * every distance under 10,000 km in tenths) it takes at most one division by
 * 10^4 and two by 100, all multiplications; above, a digit-pair loop. */
static char *fmt_uint(char *p, uint64_t n) {
    if (n < 10000) {
        return fmt_small(p, (uint32_t)n);
    }
    if (n < 100000000) {
        uint32_t hi = (uint32_t)n / 10000, lo = (uint32_t)n - hi * 10000;
        p = fmt_small(p, hi);
        put4(p, lo);
        return p + 4;
    }
    size_t len = 1;
    for (uint64_t t = n; t >= 10; t /= 10) {
        len++;
    }
    char *end = p + len, *q = end;
    while (n >= 100) {
        q -= 2;
        put2(q, (uint32_t)(n % 100));
        n /= 100;
    }
    if (n >= 10) {
        put2(q - 2, (uint32_t)n);
    } else {
        q[-1] = (char)('0' + n);
    }
    return end;
}

/* Writes "\t" and v / 10^6 with exactly 6 decimals, as "%.6f" prints it
 * (at most 13 bytes); returns the end. The degrees (at most 2147) take the
 * short path of fmt_small(), the decimals three digit pairs. */
static inline __attribute__((always_inline)) char *fmt_e6(char *p, int32_t v) {
    uint32_t a = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    p[0] = '\t';
    p[1] = '-';
    p += 1 + (v < 0);
    uint32_t deg = a / 1000000, frac = a - deg * 1000000;
    p = fmt_small(p, deg);
    *p = '.';
    /* The six decimals two at a time from one fixed-point product:
     * y / 2^32 is frac / 10^4 plus an error below frac * 0.2704 / 2^32, too
     * small to reach the next integer at any of the three steps (each step
     * multiplies the error by 100; it stays under 2^32 / 100, the smallest
     * gap). tests/test_commands.c checks all 10^6 fractions against printf. */
    uint64_t y = (uint64_t)frac * 429497u; /* ceil(2^32 / 10^4) */
    put2(p + 1, (uint32_t)(y >> 32));
    y = (uint64_t)(uint32_t)y * 100;
    put2(p + 3, (uint32_t)(y >> 32));
    y = (uint64_t)(uint32_t)y * 100;
    put2(p + 5, (uint32_t)(y >> 32));
    return p + 7;
}

/* Largest distance fmt_tenths() takes; longer ones go through printf. */
#define REPLY_TENTHS_MAX 1e15

/* Writes d (0 <= d < REPLY_TENTHS_MAX) with one decimal, exactly as
 * printf's "%.1f" does (the exact binary value rounded to tenths, ties to
 * even), without printf's arbitrary-precision arithmetic, which cost more
 * than the rest of a record. The rounding is done in integers on the exact
 * value: d is m / 2^s with a 53-bit m, and d < 2^50 makes s >= 3, so 10d is
 * 10m / 2^s with 10m < 2^57; its quotient and remainder by 2^s are the tenths
 * and the exact fraction left over. (This replaced floor() and three fma()
 * calls, 116 instructions a distance, by about 20.) At most 18 bytes;
 * returns the end. */
static char *fmt_tenths(char *p, double d) {
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    unsigned biased_exp = (unsigned)(bits >> 52) & 0x7ff;
    uint64_t tenths = 0; /* zero (-0.0 too, as before) and subnormals print 0.0 */
    if (biased_exp != 0) {
        uint64_t m = (bits & ((1ull << 52) - 1)) | (1ull << 52);
        unsigned shift = 1075 - biased_exp; /* d = m / 2^shift, shift >= 3 */
        if (shift < 64) {
            /* (Below that, 10d < 2^57 / 2^64 is far under a half: 0.0.) */
            uint64_t x = 10 * m;
            uint64_t rest = x & ((1ull << shift) - 1), half = 1ull << (shift - 1);
            tenths = x >> shift;
            tenths += rest > half || (rest == half && (tenths & 1));
        }
    }
    if (tenths < 10) {
        p[0] = '0';
        p[1] = '.';
        p[2] = (char)('0' + tenths);
        return p + 3;
    }
    /* The digits of the tenths, then the point slipped in before the last. */
    p = fmt_uint(p, tenths);
    p[0] = p[-1];
    p[-1] = '.';
    return p + 1;
}

void reply_set_crs(struct reply *r, const char *crs) {
    r->next_crs = crs;
}

void reply_ok(struct reply *r, size_t n) {
    r->answer_crs = r->next_crs;
    r->next_crs = NULL;
    if (is_json(r)) {
        json_begin(r, n);
        return;
    }
    if (reserve(r, 24)) {
        char *p = r->buf + r->len;
        memcpy(p, "OK ", 3);
        p = fmt_uint(p + 3, n);
        *p++ = '\n';
        *p = '\0';
        r->len = (size_t)(p - r->buf);
    }
    r->expected = n;
}

void reply_facility(struct reply *r, const struct reply_facility *f) {
    if (is_json(r)) {
        json_add(r, json_facility(r, f));
        return;
    }
    /* The common record is written in place after one reserve: the three
     * strings, two tabs, two positions of up to 13 bytes, a tab, a distance
     * of up to 18 bytes and the newline. */
    size_t n_id = f->id_len ? f->id_len : strlen(f->id);
    size_t n_cat = f->category_len ? f->category_len : strlen(f->category);
    size_t n_name = f->name_len ? f->name_len : strlen(f->name);
    if (!reserve(r, n_id + n_cat + n_name + 2 + 2 * 13 + 1 + 18 + 1)) {
        goto done;
    }
    char *p = r->buf + r->len;
    if (f->plain_text) {
        p = copy_short(p, f->id, n_id);
        *p++ = '\t';
        p = copy_short(p, f->category, n_cat);
        *p++ = '\t';
        p = copy_short(p, f->name, n_name);
    } else {
        copy_clean(p, f->id, n_id);
        p += n_id;
        *p++ = '\t';
        copy_clean(p, f->category, n_cat);
        p += n_cat;
        *p++ = '\t';
        copy_clean(p, f->name, n_name);
        p += n_name;
    }
    /* 6 decimals of a degree is 0.11 m, finer than any position we hold. */
    if (f->has_e6) {
        p = fmt_e6(p, f->lat_e6);
        p = fmt_e6(p, f->lon_e6);
        *p++ = '\t';
        if (f->n_attrs == 0 && f->distance_m >= 0.0 && f->distance_m < REPLY_TENTHS_MAX) {
            p = fmt_tenths(p, f->distance_m); /* NEAREST's records end here */
            *p++ = '\n';
            *p = '\0';
            r->len = (size_t)(p - r->buf);
            goto done;
        }
    }
    *p = '\0';
    r->len = (size_t)(p - r->buf);
    if (!f->has_e6) {
        put_fmt(r, "\t%.6f\t%.6f\t", f->where.lat_deg, f->where.lon_deg);
    }
    if (isnan(f->distance_m)) {
        put_bytes(r, "-", 1);
    } else if (f->distance_m >= 0.0 && f->distance_m < REPLY_TENTHS_MAX) {
        if (reserve(r, 18)) {
            p = fmt_tenths(r->buf + r->len, f->distance_m);
            *p = '\0';
            r->len = (size_t)(p - r->buf);
        }
    } else {
        put_fmt(r, "%.1f", f->distance_m);
    }
    put_attrs(r, f);
    put_bytes(r, "\n", 1);
done:
    if (r->expected > 0) {
        r->expected--;
    }
}

void reply_fields(struct reply *r, size_t n_fields, const char *const *fields) {
    if (is_json(r)) {
        json_t *rec = json_array();
        for (size_t i = 0; rec && i < n_fields; i++) {
            json_array_append_new(rec, jstr(fields[i]));
        }
        json_add(r, rec);
        return;
    }
    for (size_t i = 0; i < n_fields; i++) {
        if (i > 0) {
            put_bytes(r, "\t", 1);
        }
        put_field(r, fields[i]);
    }
    put_bytes(r, "\n", 1);
    if (r->expected > 0) {
        r->expected--;
    }
}

void reply_area(struct reply *r, const struct reply_area *a) {
    if (r->format != REPLY_GEOJSON) {
        const char *fields[5] = {a->id, a->kind, a->name, a->parent, a->served_by};
        reply_fields(r, a->served_by ? 5 : 4, fields);
        return;
    }
    json_t *geometry = json_null();
    if (a->geometry) {
        json_decref(geometry);
        geometry = json_loads(a->geometry, JSON_DECODE_ANY, NULL);
    }
    json_t *feat = geometry ? json_pack("{s:s, s:o, s:{s:o, s:o, s:o, s:o}}", "type", "Feature",
                                        "geometry", geometry, "properties", "id", jstr(a->id),
                                        "kind", jstr(a->kind), "name", jstr(a->name),
                                        "parent", jstr(a->parent))
                            : NULL;
    if (feat && a->served_by) {
        struct reply_attr ids = {.key = "served_by", .type = REPLY_ATTR_IDS,
                                 .text = a->served_by};
        json_object_set_new(json_object_get(feat, "properties"), "served_by",
                            json_attr_value(&ids));
    }
    json_add(r, feat);
}

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8
 * sequence. */
static size_t utf8_cut(const char *s, size_t n) {
    size_t cut = n;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) {
        cut--;
    }
    return cut;
}

char *reply_echo(const char *text, char *out, size_t out_len) {
    if (out_len == 0) {
        return out;
    }
    size_t n = strlen(text);
    size_t room = out_len - 1;
    size_t max = REPLY_MAX_ECHO_BYTES < room ? REPLY_MAX_ECHO_BYTES : room;
    bool cut = n > max;
    if (cut) {
        n = max >= 3 ? utf8_cut(text, max - 3) : 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        out[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    if (cut && max >= 3) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

void reply_err(struct reply *r, int code, const char *fmt, ...) {
    char msg[REPLY_MAX_ERR_BYTES];
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (n < 0) {
            msg[0] = '\0';
        }
    } else {
        snprintf(msg, sizeof msg, "%s", cmd_err_message(code));
    }
    const char *word = cmd_err_word(code);
    /* Room for "ERR ", the word, a space and "\n". */
    size_t max_msg = REPLY_MAX_ERR_BYTES - 4 - strlen(word) - 2;
    size_t n = strlen(msg);
    if (n > max_msg) {
        n = utf8_cut(msg, max_msg);
        msg[n] = '\0';
    }
    if (is_json(r)) {
        json_drop(r);
        r->expected = 0;
        for (char *p = msg; *p; p++) {
            *p = ((unsigned char)*p < 0x20 || *p == 0x7f) ? ' ' : *p;
        }
        json_t *doc = json_pack("{s:b, s:{s:s, s:o}}", "ok", 0, "error", "code", word,
                                "message", jstr(msg));
        json_put_line(r, doc);
        json_decref(doc);
        return;
    }
    put_bytes(r, "ERR ", 4);
    put_bytes(r, word, strlen(word));
    put_bytes(r, " ", 1);
    put_field(r, msg);
    put_bytes(r, "\n", 1);
    r->expected = 0;
}
