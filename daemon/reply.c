/* reply.c: the reply builder, text and JSON.
 *
 * A reply is appended to a growable buffer that doubles from 4 KiB; a NEAREST
 * with K 1000 is about 100 KiB, the largest single answer today. An allocation
 * failure does not abort: it marks the buffer failed and later appends are
 * dropped, and the server closes the connection instead of sending it.
 * JSON answers are written record by record into the same buffer, and the
 * document is closed when the last announced record arrives. They used to be
 * built as jansson documents and dumped whole: a NEAREST of five records
 * then cost 14.4 us of daemon CPU against 1.65 in text (10^5 facilities,
 * 50 connections x 16 pipelined), which made FORMAT json, the format a
 * mobile backend asks for, nine times slower than the benchmarked one. The
 * writer below produces the bytes jansson's json_dumps() did (compact, reals
 * to REPLY_JSON_DIGITS significant digits, UTF-8 unescaped, invalid UTF-8
 * as "?"), which tests/test_reply_formats.c checks against jansson itself;
 * jansson still builds the rare area features (their geometry is parsed
 * JSON) and the error objects.
 * The text records of NEAREST are the hot path (five a request, written
 * under a million times a second at 50 connections): one reserve per record,
 * strings copied a word at a time with their lengths taken from the caller
 * when it knows them, positions and distances in integers with two-digit
 * tables, and no printf. Every fast path has an oracle test against printf
 * in tests/test_commands.c or tests/test_reply_formats.c. */
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

void reply_init(struct reply *r) {
    memset(r, 0, sizeof *r);
}

void reply_close(struct reply *r) {
    free(r->buf);
    reply_init(r);
}

size_t reply_len(const struct reply *r) {
    return r->len;
}

bool reply_failed(const struct reply *r) {
    return r->nomem;
}

static void put_bytes(struct reply *r, const char *s, size_t n);

/* A JSON answer still owed records, set aside while the finished answers
 * before it are handed over or appended to. */
struct json_held {
    bool open;     /* there was one */
    char *bytes;   /* its bytes so far, malloc'ed; NULL when none */
    size_t len;
};

/* Moves the open JSON answer, if any, out of the buffer into *h. Returns
 * true when there was one and its bytes could not be copied: the answer is
 * lost (and *h holds nothing, so json_unhold() puts nothing back). */
static bool json_hold(struct reply *r, struct json_held *h) {
    *h = (struct json_held){.open = r->json_open};
    if (!r->json_open) {
        return false;
    }
    bool lost = false;
    h->len = r->len - r->json_start;
    if (h->len > 0) {
        h->bytes = malloc(h->len);
        if (!h->bytes) {
            r->json_open = false;
            *h = (struct json_held){0};
            lost = true;
        } else {
            memcpy(h->bytes, r->buf + r->json_start, h->len);
        }
    }
    r->len = r->json_start;
    if (r->buf) {
        r->buf[r->len] = '\0';
    }
    return lost;
}

/* Puts a held answer back at the end of the buffer, still open. */
static void json_unhold(struct reply *r, struct json_held *h) {
    if (h->open) {
        r->json_open = true;
        r->json_start = r->len;
        if (h->len > 0) {
            put_bytes(r, h->bytes, h->len);
        }
    }
    free(h->bytes);
}

char *reply_take(struct reply *r, size_t *len) {
    struct json_held held;
    bool lost = json_hold(r, &held);
    char *buf = r->len > 0 ? r->buf : NULL;
    *len = r->len;
    if (!buf) {
        free(r->buf);
    }
    r->buf = NULL;
    r->len = r->cap = 0;
    r->nomem = lost;
    json_unhold(r, &held);
    return buf;
}

char *reply_take_buffer(struct reply *r, size_t *len, size_t *cap) {
    struct json_held held;
    bool lost = json_hold(r, &held);
    char *buf = r->buf;
    *len = r->len;
    *cap = r->cap;
    r->buf = NULL;
    r->len = r->cap = 0;
    r->nomem = lost;
    json_unhold(r, &held);
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

void reply_append(struct reply *r, struct reply *from) {
    size_t len = 0;
    bool failed = from->nomem;
    char *buf = reply_take(from, &len);
    struct json_held held;
    bool lost = json_hold(r, &held);
    if (buf) {
        put_bytes(r, buf, len);
        free(buf);
    }
    json_unhold(r, &held);
    r->nomem = r->nomem || failed || lost;
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

/* The dump flags of every JSON line, jansson's and ours alike. */
#define REPLY_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(REPLY_JSON_DIGITS))

/* A jansson string of s; "?" when s is not UTF-8 (the store only holds UTF-8). */
static json_t *jstr(const char *s) {
    json_t *j = json_string(s);
    return j ? j : json_string("?");
}

/* Length of the UTF-8 character starting at s[0] (a byte >= 0x80) within
 * s[0..n), or 0 when it is not one jansson accepts: no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
static size_t utf8_char_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        return 0;
    }
    return len;
}

/* Writes s[0..n) at p as a JSON string, escaped as json_dumps() escapes
 * (\" \\ \b \f \n \r \t, other C0 controls as \u00XX, nothing else), and
 * returns the end; p needs room for 6n + 2 bytes. Returns NULL, having
 * written garbage, when s is not valid UTF-8. Eight bytes at a time while
 * they are plain ASCII that needs no escape, as copy_clean() does. */
static char *json_string_at(char *p, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    const unsigned char *u = (const unsigned char *)s;
    *p++ = '"';
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            uint64_t q = w ^ (0x22 * ones), b = w ^ (0x5C * ones);
            /* Zero iff no byte is >= 0x80, below 0x20, '"' or '\\'. */
            if (!((w | ((w - 0x20 * ones) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b)) &
                  highs)) {
                memcpy(p, &w, 8);
                p += 8;
                i += 8;
                continue;
            }
        }
        unsigned c = u[i];
        if (c >= 0xE1 && c <= 0xEC && i + 3 <= n && (u[i + 1] & 0xC0) == 0x80 &&
            (u[i + 2] & 0xC0) == 0x80) {
            /* U+1000 - U+CFFF, CJK included: three bytes no check can refuse. */
            memcpy(p, s + i, 3);
            p += 3;
            i += 3;
            continue;
        }
        if (c >= 0x80) {
            size_t len = utf8_char_len(u + i, n - i);
            if (len == 0) {
                return NULL;
            }
            memcpy(p, s + i, len);
            p += len;
            i += len;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            *p++ = (char)c;
        } else {
            *p++ = '\\';
            switch (c) {
            case '"': *p++ = '"'; break;
            case '\\': *p++ = '\\'; break;
            case '\b': *p++ = 'b'; break;
            case '\f': *p++ = 'f'; break;
            case '\n': *p++ = 'n'; break;
            case '\r': *p++ = 'r'; break;
            case '\t': *p++ = 't'; break;
            default:
                memcpy(p, "u00", 3);
                p[3] = hex[c >> 4];
                p[4] = hex[c & 15];
                p += 5;
            }
        }
        i++;
    }
    *p++ = '"';
    return p;
}

/* Copies a string literal to p and returns the end. */
#define PUT_LIT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

/* json_string_at(), or "?" when s is not UTF-8 (jstr()). */
static char *json_string_or_mark(char *p, const char *s, size_t n) {
    char *end = json_string_at(p, s, n);
    return end ? end : PUT_LIT(p, "\"?\"");
}

/* Appends s[0..n) as a JSON string, or "?" when it is not UTF-8 (jstr()). */
static void json_put_string(struct reply *r, const char *s, size_t n) {
    if (!reserve(r, 6 * n + 2)) {
        return;
    }
    char *end = json_string_or_mark(r->buf + r->len, s, n);
    *end = '\0';
    r->len = (size_t)(end - r->buf);
}

/* Appends a string known to need no escape (a key of ours, a CRS name). */
static void json_put_raw(struct reply *r, const char *s) {
    put_bytes(r, s, strlen(s));
}

static char *fmt_uint(char *p, uint64_t n);
static inline void put2(char *p, uint32_t n);

/* Writes the finite v as json_dumps() writes a real: printf's "%.10g", with
 * ".0" added when that looks like an integer and the exponent stripped of
 * its '+' and leading zeros. At most 24 bytes; returns the end. */
static char *fmt_json_real(char *p, double v) {
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.*g", REPLY_JSON_DIGITS, v);
    if (n < 0 || (size_t)n >= sizeof tmp - 2) {
        n = 0; /* cannot happen: 10 digits, a sign, a point and an exponent */
    }
    tmp[n] = '\0';
    if (!strchr(tmp, '.') && !strchr(tmp, 'e')) {
        memcpy(tmp + n, ".0", 3);
        n += 2;
    }
    char *e = strchr(tmp, 'e');
    if (e) {
        char *digits = e + 1 + (e[1] == '-'), *from = e + 2;
        while (*from == '0') {
            from++;
        }
        memmove(digits, from, strlen(from) + 1);
        n = (int)strlen(tmp);
    }
    memcpy(p, tmp, (size_t)n);
    return p + n;
}

/* round(x), halves away from zero, inline: libm's round() is a call on
 * baseline x86-64, three of them a record. Exact below 2^52, where the
 * truncation and the fraction left are both exact. */
static inline double round_half_away(double x) {
    double a = fabs(x);
    if (!(a < 4503599627370496.0)) {
        return round(x); /* 2^52 and above are whole already; NaN stays NaN */
    }
    double t = (double)(uint64_t)a;
    t += a - t >= 0.5;
    return copysign(t, x);
}

/* Writes q / 10^6 for a whole q (a position rounded to microdegrees) as
 * fmt_json_real() would. From 10^-4 to 10^3 in magnitude, which is every
 * position but those within 11 m of the equator or the prime meridian, the
 * digits are the integer's, with trailing zeros dropped: "%.10g" shows at
 * least 7 decimals there, so the double's rounding error (under 10^-13)
 * never reaches them, and 6 decimals are all there are. Returns NULL when q
 * is not finite (jansson has no such real). */
static char *fmt_json_micro(char *p, double q) {
    if (!(fabs(q) >= 100.0 && fabs(q) < 1e9)) {
        return isfinite(q) ? fmt_json_real(p, q / 1e6) : NULL;
    }
    int64_t e = (int64_t)q;
    if (e < 0) {
        *p++ = '-';
        e = -e;
    }
    uint32_t deg = (uint32_t)(e / 1000000), frac = (uint32_t)(e % 1000000);
    p = fmt_uint(p, deg);
    *p++ = '.';
    if (frac == 0) {
        *p++ = '0';
        return p;
    }
    put2(p, frac / 10000);
    put2(p + 2, frac / 100 % 100);
    put2(p + 4, frac % 100);
    p += 6;
    while (p[-1] == '0') {
        p--;
    }
    return p;
}

/* Writes round(v * 10^6) / 10^6 as fmt_json_real() would: a position. */
static char *fmt_json_e6(char *p, double v) {
    return fmt_json_micro(p, round_half_away(v * 1e6));
}

/* Writes round(d * 10) / 10 as fmt_json_real() would (a distance): for
 * 0.1 <= d < 10^8 the tenths' digits with a point before the last. Returns
 * NULL when d is not finite. */
static char *fmt_json_tenths(char *p, double d) {
    double t = round_half_away(d * 10.0);
    if (!(t >= 1.0 && t < 1e9)) {
        return isfinite(t) ? fmt_json_real(p, t / 10.0) : NULL;
    }
    uint64_t u = (uint64_t)t;
    p = fmt_uint(p, u / 10);
    p[0] = '.';
    p[1] = (char)('0' + u % 10);
    return p + 2;
}

/* Appends what one of the fmt_json_* writers writes; marks r failed when it
 * refuses (a value jansson could not have held). */
static void json_put_number(struct reply *r, char *(*fmt)(char *, double), double v) {
    if (!reserve(r, 32)) {
        return;
    }
    char *end = fmt(r->buf + r->len, v);
    if (!end) {
        r->nomem = true;
        return;
    }
    *end = '\0';
    r->len = (size_t)(end - r->buf);
}

/* Appends `doc` as json_dumps() writes it, without the newline. */
static void json_put_doc(struct reply *r, const json_t *doc) {
    char *text = doc ? json_dumps(doc, REPLY_JSON_FLAGS) : NULL;
    if (!text) {
        r->nomem = true;
    } else {
        json_put_raw(r, text);
    }
    free(text);
}

/* Writes the opening of the answer up to its first record. In geojson, a
 * facility answer (its records are Feature objects) or an empty one is a
 * FeatureCollection; the others take the json shape. */
static void json_put_opening(struct reply *r, bool features) {
    json_put_raw(r, features ? "{\"type\":\"FeatureCollection\",\"ok\":true,\"count\":"
                             : "{\"ok\":true,\"count\":");
    char tmp[24];
    put_bytes(r, tmp, (size_t)(fmt_uint(tmp, r->json_announced) - tmp));
    json_put_raw(r, features ? ",\"features\":[" : ",\"results\":[");
}

/* Closes the answer: the list, its "crs" when it states one, the line. */
static void json_close(struct reply *r) {
    if (r->json_count == 0) {
        json_put_opening(r, r->format == REPLY_GEOJSON);
    }
    put_bytes(r, "]", 1);
    if (r->answer_crs) {
        json_put_raw(r, ",\"crs\":");
        json_put_string(r, r->answer_crs, strlen(r->answer_crs));
    }
    put_bytes(r, "}\n", 2);
    r->answer_crs = NULL;
    r->json_open = false;
}

/* Drops an answer still owed records. */
static void json_cancel(struct reply *r) {
    if (r->json_open) {
        r->len = r->json_start;
        if (r->buf) {
            r->buf[r->len] = '\0';
        }
        r->json_open = false;
    }
}

static void json_begin(struct reply *r, size_t n) {
    json_cancel(r);
    r->json_open = true;
    r->json_start = r->len;
    r->json_count = 0;
    r->json_announced = n;
    r->expected = n;
    if (n == 0) {
        json_close(r);
    }
}

/* Starts a record (an object or an array) of the open answer. Returns false,
 * marking r failed, when no answer is owed one. */
static bool json_record_begin(struct reply *r, bool object) {
    if (!r->json_open) {
        r->nomem = true;
        return false;
    }
    if (r->json_count == 0) {
        json_put_opening(r, r->format == REPLY_GEOJSON && object);
    } else {
        put_bytes(r, ",", 1);
    }
    return true;
}

static void json_record_end(struct reply *r) {
    r->json_count++;
    if (r->expected > 0) {
        r->expected--;
    }
    if (r->expected == 0) {
        json_close(r);
    }
}

/* Appends ids joined by ';' as a JSON array of strings, leaving out an id
 * that is not UTF-8 (as json_array_append_new() left out the NULL that
 * json_stringn() gave for it). */
static void json_put_ids(struct reply *r, const char *ids) {
    const char *p = ids ? ids : "";
    bool first = true;
    put_bytes(r, "[", 1);
    while (*p) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        size_t at = r->len;
        if (!first) {
            put_bytes(r, ",", 1);
        }
        if (reserve(r, 6 * len + 2)) {
            char *q = json_string_at(r->buf + r->len, p, len);
            if (q) {
                *q = '\0';
                r->len = (size_t)(q - r->buf);
                first = false;
            } else {
                r->len = at;
                r->buf[at] = '\0';
            }
        }
        p = end ? end + 1 : p + len;
    }
    put_bytes(r, "]", 1);
}

/* Appends a facility's attributes as further members of the object being
 * written, as json_object_set_new() would have added them to one holding
 * the `standard` keys: a key the object already has is skipped (the first
 * wins), and so is an attribute jansson could not hold (a key that is not
 * UTF-8, a number that is not finite). Beyond 64 attributes (the catalogue
 * gives at most CATALOG_MAX_ATTRS, 32) a key is compared with the earlier
 * ones past the 64th as if each had been written. */
static void json_put_attrs(struct reply *r, const struct reply_facility *f,
                           const char *const *standard, size_t n_standard) {
    bool set[64];
    size_t key_lens[64];
    for (size_t i = 0; i < f->n_attrs; i++) {
        const struct reply_attr *a = &f->attrs[i];
        size_t key_len = strlen(a->key);
        if (i < 64) {
            key_lens[i] = key_len;
        }
        /* The key is taken when an earlier member has it: compared by first
         * byte and length before the bytes, since strcmp() of each key with
         * each earlier one was a sixth of a Licang record's time. */
        bool taken = false;
        for (size_t k = 0; k < n_standard && !taken; k++) {
            taken = a->key[0] == standard[k][0] && strcmp(a->key, standard[k]) == 0;
        }
        for (size_t k = 0; k < i && !taken; k++) {
            const char *other = f->attrs[k].key;
            taken = (k >= 64 || (set[k] && key_lens[k] == key_len)) && a->key[0] == other[0] &&
                    strcmp(a->key, other) == 0;
        }
        bool finite_num = a->type != REPLY_ATTR_NUM || isfinite(a->num);
        bool ok = !taken && finite_num;
        size_t mark = r->len;
        if (ok && reserve(r, 6 * key_len + 4)) {
            char *p = r->buf + r->len;
            *p++ = ',';
            p = json_string_at(p, a->key, key_len);
            ok = p != NULL;
            if (ok) {
                *p++ = ':';
                *p = '\0';
                r->len = (size_t)(p - r->buf);
            }
        }
        if (i < 64) {
            set[i] = ok;
        }
        if (!ok) {
            r->len = mark;
            if (r->buf) {
                r->buf[mark] = '\0';
            }
            continue;
        }
        switch (a->type) {
        case REPLY_ATTR_NUM:
            if (a->num == floor(a->num) && fabs(a->num) < 1e15) {
                char tmp[24], *p = tmp;
                int64_t v = (int64_t)a->num;
                if (v < 0) {
                    *p++ = '-';
                }
                p = fmt_uint(p, v < 0 ? 0u - (uint64_t)v : (uint64_t)v);
                put_bytes(r, tmp, (size_t)(p - tmp));
            } else {
                json_put_number(r, fmt_json_real, a->num);
            }
            break;
        case REPLY_ATTR_BOOL:
            json_put_raw(r, a->num != 0.0 ? "true" : "false");
            break;
        case REPLY_ATTR_IDS:
            json_put_ids(r, a->text);
            break;
        default: {
            const char *t = a->text ? a->text : "";
            json_put_string(r, t, strlen(t));
        }
        }
    }
}

static const char *const json_facility_keys[] = {"id", "category", "name",
                                                 "lat", "lon", "distance_m"};
static const char *const geojson_property_keys[] = {"id", "category", "name", "distance_m"};

/* Writes a facility's position: from its microdegrees when it has them (the
 * same integers: lat_e6 / 10^6 times 10^6 rounds back to lat_e6), else
 * rounded. NULL when a coordinate is not finite. */
static char *fmt_json_coord(char *p, const struct reply_facility *f, bool lat) {
    if (f->has_e6) {
        return fmt_json_micro(p, (double)(lat ? f->lat_e6 : f->lon_e6));
    }
    return fmt_json_e6(p, lat ? f->where.lat_deg : f->where.lon_deg);
}

/* Appends one facility record: in json {"id", "category", "name", "lat",
 * "lon", "distance_m", attributes...}; in geojson a Point Feature with id,
 * category, name, distance_m and the attributes as properties. All but the
 * attributes is written after one reserve. */
static void json_put_facility(struct reply *r, const struct reply_facility *f) {
    bool geo = r->format == REPLY_GEOJSON;
    if (!json_record_begin(r, true)) {
        return;
    }
    size_t n_id = f->id_len ? f->id_len : strlen(f->id);
    size_t n_cat = f->category_len ? f->category_len : strlen(f->category);
    size_t n_name = f->name_len ? f->name_len : strlen(f->name);
    if (!reserve(r, 6 * (n_id + n_cat + n_name) + 200)) {
        return;
    }
    char *p = r->buf + r->len;
    if (geo) {
        p = PUT_LIT(p, "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\","
                       "\"coordinates\":[");
        p = fmt_json_coord(p, f, false);
        if (!p) {
            goto bad;
        }
        *p++ = ',';
        p = fmt_json_coord(p, f, true);
        if (!p) {
            goto bad;
        }
        p = PUT_LIT(p, "]},\"properties\":{\"id\":");
    } else {
        p = PUT_LIT(p, "{\"id\":");
    }
    p = json_string_or_mark(p, f->id, n_id);
    p = PUT_LIT(p, ",\"category\":");
    p = json_string_or_mark(p, f->category, n_cat);
    p = PUT_LIT(p, ",\"name\":");
    p = json_string_or_mark(p, f->name, n_name);
    if (!geo) {
        p = PUT_LIT(p, ",\"lat\":");
        p = fmt_json_coord(p, f, true);
        if (!p) {
            goto bad;
        }
        p = PUT_LIT(p, ",\"lon\":");
        p = fmt_json_coord(p, f, false);
        if (!p) {
            goto bad;
        }
    }
    p = PUT_LIT(p, ",\"distance_m\":");
    if (isnan(f->distance_m)) {
        p = PUT_LIT(p, "null");
    } else if (!(p = fmt_json_tenths(p, f->distance_m))) {
        goto bad;
    }
    *p = '\0';
    r->len = (size_t)(p - r->buf);
    if (geo) {
        json_put_attrs(r, f, geojson_property_keys, 4);
        json_put_raw(r, "}}");
    } else {
        json_put_attrs(r, f, json_facility_keys, 6);
        json_put_raw(r, "}");
    }
    json_record_end(r);
    return;
bad:
    r->nomem = true; /* a position or distance jansson could not have held */
}

/* Appends the attributes as "\tkey=value" fields, each after one reserve.
 * A whole number below 10^15 in magnitude (stars, beds, free: nearly every
 * number attribute) is written from its integer, which is what "%.15g"
 * prints for it; printf() took a fifth of a Licang NEAREST's time. */
static void put_attrs(struct reply *r, const struct reply_facility *f) {
    for (size_t i = 0; i < f->n_attrs; i++) {
        const struct reply_attr *a = &f->attrs[i];
        bool num = a->type == REPLY_ATTR_NUM;
        bool whole = num && fabs(a->num) < 1e15 && a->num == (double)(int64_t)a->num &&
                     !(a->num == 0.0 && signbit(a->num));
        const char *v = a->type == REPLY_ATTR_BOOL ? (a->num != 0.0 ? "true" : "false")
                        : a->text                  ? a->text
                                                   : "";
        size_t nk = strlen(a->key), nv = num ? 24 : strlen(v);
        if (!reserve(r, nk + nv + 2)) {
            return;
        }
        char *p = r->buf + r->len;
        *p++ = '\t';
        copy_clean(p, a->key, nk);
        p += nk;
        *p++ = '=';
        if (whole) {
            int64_t n = (int64_t)a->num;
            if (n < 0) {
                *p++ = '-';
            }
            p = fmt_uint(p, n < 0 ? 0u - (uint64_t)n : (uint64_t)n);
        } else if (!num) {
            copy_clean(p, v, nv);
            p += nv;
        }
        *p = '\0';
        r->len = (size_t)(p - r->buf);
        if (num && !whole) {
            put_fmt(r, "%.15g", a->num);
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
    json_cancel(r); /* a JSON answer left unfinished when the format changed */
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
        json_put_facility(r, f);
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
        if (json_record_begin(r, false)) {
            put_bytes(r, "[", 1);
            for (size_t i = 0; i < n_fields; i++) {
                if (i > 0) {
                    put_bytes(r, ",", 1);
                }
                json_put_string(r, fields[i], strlen(fields[i]));
            }
            put_bytes(r, "]", 1);
            json_record_end(r);
        }
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

char *reply_geometry_json(const char *geometry) {
    json_t *g = json_loads(geometry, JSON_DECODE_ANY, NULL);
    char *text = g ? json_dumps(g, REPLY_JSON_FLAGS | JSON_ENCODE_ANY) : NULL;
    json_decref(g);
    return text;
}

void reply_area(struct reply *r, const struct reply_area *a) {
    if (r->format != REPLY_GEOJSON) {
        const char *fields[5] = {a->id, a->kind, a->name, a->parent, a->served_by};
        reply_fields(r, a->served_by ? 5 : 4, fields);
        return;
    }
    if (a->geometry_dumped || !a->geometry) {
        /* What the jansson path below writes, without parsing the polygon
         * again: /v1/areas, 400 of these, took 8 ms of the loop that way. */
        if (!json_record_begin(r, true)) {
            return;
        }
        json_put_raw(r, "{\"type\":\"Feature\",\"geometry\":");
        json_put_raw(r, a->geometry ? a->geometry : "null");
        json_put_raw(r, ",\"properties\":{\"id\":");
        json_put_string(r, a->id, strlen(a->id));
        json_put_raw(r, ",\"kind\":");
        json_put_string(r, a->kind, strlen(a->kind));
        json_put_raw(r, ",\"name\":");
        json_put_string(r, a->name, strlen(a->name));
        json_put_raw(r, ",\"parent\":");
        json_put_string(r, a->parent, strlen(a->parent));
        if (a->served_by) {
            json_put_raw(r, ",\"served_by\":");
            json_put_ids(r, a->served_by);
        }
        json_put_raw(r, "}}");
        json_record_end(r);
        return;
    }
    json_t *geometry = json_loads(a->geometry, JSON_DECODE_ANY, NULL);
    json_t *feat = geometry ? json_pack("{s:s, s:o, s:{s:o, s:o, s:o, s:o}}", "type", "Feature",
                                        "geometry", geometry, "properties", "id", jstr(a->id),
                                        "kind", jstr(a->kind), "name", jstr(a->name),
                                        "parent", jstr(a->parent))
                            : NULL;
    if (feat && a->served_by) {
        json_t *ids = json_array();
        for (const char *p = a->served_by; ids && *p;) {
            const char *end = strchr(p, ';');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            json_array_append_new(ids, json_stringn(p, len));
            p = end ? end + 1 : p + len;
        }
        json_object_set_new(json_object_get(feat, "properties"), "served_by", ids);
    }
    if (!feat) {
        r->nomem = true;
    } else if (json_record_begin(r, true)) {
        json_put_doc(r, feat);
        json_record_end(r);
    }
    json_decref(feat);
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
        json_cancel(r);
        r->expected = 0;
        for (char *p = msg; *p; p++) {
            *p = ((unsigned char)*p < 0x20 || *p == 0x7f) ? ' ' : *p;
        }
        json_t *doc = json_pack("{s:b, s:{s:s, s:o}}", "ok", 0, "error", "code", word,
                                "message", jstr(msg));
        json_put_doc(r, doc);
        put_bytes(r, "\n", 1);
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
