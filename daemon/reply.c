/* reply.c: the text reply builder.
 *
 * A reply is appended to a growable buffer that doubles from 4 KiB; a NEAREST
 * with K 1000 is about 100 KiB, the largest single answer today. An allocation
 * failure does not abort: it marks the buffer failed and later appends are
 * dropped, and the server closes the connection instead of sending it. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "reply.h"

#define REPLY_FIRST_CAP 4096

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

char *reply_take(struct reply *r, size_t *len) {
    char *buf = r->len > 0 ? r->buf : NULL;
    *len = r->len;
    if (!buf) {
        free(r->buf);
    }
    reply_init(r);
    return buf;
}

/* Makes room for `more` bytes plus a NUL. Returns false (and marks r) on failure. */
static bool reserve(struct reply *r, size_t more) {
    if (r->nomem) {
        return false;
    }
    if (r->len + more + 1 <= r->cap) {
        return true;
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

static void put_bytes(struct reply *r, const char *s, size_t n) {
    if (reserve(r, n)) {
        memcpy(r->buf + r->len, s, n);
        r->len += n;
        r->buf[r->len] = '\0';
    }
}

/* Appends s with tabs, CR and LF (and other C0 controls) turned into spaces. */
static void put_field(struct reply *r, const char *s) {
    size_t n = strlen(s);
    if (!reserve(r, n)) {
        return;
    }
    char *out = r->buf + r->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
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

void reply_ok(struct reply *r, size_t n) {
    put_fmt(r, "OK %zu\n", n);
    r->expected = n;
}

void reply_facility(struct reply *r, const struct reply_facility *f) {
    put_field(r, f->id);
    put_bytes(r, "\t", 1);
    put_field(r, f->category);
    put_bytes(r, "\t", 1);
    put_field(r, f->name);
    /* 6 decimals of a degree is 0.11 m, finer than any position we hold. */
    put_fmt(r, "\t%.6f\t%.6f\t", f->where.lat_deg, f->where.lon_deg);
    if (isnan(f->distance_m)) {
        put_bytes(r, "-\n", 2);
    } else {
        put_fmt(r, "%.1f\n", f->distance_m);
    }
    if (r->expected > 0) {
        r->expected--;
    }
}

void reply_fields(struct reply *r, size_t n_fields, const char *const *fields) {
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
    put_bytes(r, "ERR ", 4);
    put_bytes(r, word, strlen(word));
    put_bytes(r, " ", 1);
    put_field(r, msg);
    put_bytes(r, "\n", 1);
    r->expected = 0;
}
