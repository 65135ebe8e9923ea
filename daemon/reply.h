/* reply.h: builds the bytes of replies, one request's answer after another.
 *
 * A handler writes its answer through these functions and never sees a
 * socket. The server keeps one struct reply per connection, lets every
 * request of a read batch append to it, and sends it with one write, which
 * keeps pipelined answers in order.
 *
 * Text format (PROTOCOL.md): "OK <n>\n" followed by exactly n record lines,
 * or one "ERR <WORD> <message>\n" line. A facility record is the tab-separated
 * fields id, category, name, lat, lon, distance_m, then key=value attributes.
 *
 * JSON and GeoJSON formats (FORMAT json|geojson) put each answer on one line
 * instead. The builder writes each record's JSON as it arrives and closes the
 * document when the last record announced by reply_ok() has come, so
 * handlers are the same for every format. */
#ifndef NEARESTD_REPLY_H
#define NEARESTD_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "geo.h"

/* Longest user-supplied text echoed in an ERR line, in bytes; longer text is
 * cut (at a UTF-8 character boundary) and ends in "...". */
#define REPLY_MAX_ECHO_BYTES 120

/* Longest whole ERR line, "\n" included. */
#define REPLY_MAX_ERR_BYTES 512

enum reply_format {
    REPLY_TEXT = 0,     /* "OK n" + n tab-separated lines (the default) */
    REPLY_JSON = 1,     /* one JSON object a line */
    REPLY_GEOJSON = 2,  /* like JSON, but facilities as a GeoJSON FeatureCollection */
};

/* The output of one connection. Fields are private to reply.c, except
 * `format`, which the caller sets before each answer (reply_take() keeps it). */
struct reply {
    char *buf;          /* malloc'ed, NULL while empty */
    size_t len;         /* bytes written */
    size_t cap;         /* bytes allocated */
    size_t expected;    /* records still owed to the last reply_ok() */
    bool nomem;         /* an append failed: the content is incomplete */
    enum reply_format format;
    bool json_open;     /* JSON formats: an answer is begun and owed records */
    size_t json_start;  /* ... it starts at this offset of buf */
    size_t json_count;  /* ... records it has so far */
    size_t json_announced; /* ... records its reply_ok() announced */
    const char *next_crs;   /* static name for the next reply_ok(), NULL for none */
    const char *answer_crs; /* JSON formats: the answer being built states this "crs" */
};

/* The type of an attribute value in a record. */
enum reply_attr_type {
    REPLY_ATTR_NUM = 1,      /* text: shortest "%.15g"; JSON: a number (an integer when whole) */
    REPLY_ATTR_BOOL = 2,     /* num 0 or 1; text: false/true; JSON: false/true */
    REPLY_ATTR_TEXT = 4,     /* text as is; JSON: a string */
    REPLY_ATTR_IDS = 8,      /* text "a;b"; JSON: an array of strings */
};

/* One `key=value` attribute after a facility's six standard fields. */
struct reply_attr {
    const char *key;
    int type;                /* enum reply_attr_type */
    double num;              /* NUM and BOOL */
    const char *text;        /* TEXT and IDS */
};

/* One facility in a reply. Every pointer is borrowed for the call. */
struct reply_facility {
    const char *id;
    const char *category;
    const char *name;
    struct geo_point where;  /* in the connection's coordinate system */
    double distance_m;       /* NAN when the reply has no distance (GET): printed "-" */
    bool has_e6;             /* where is exactly lat_e6 / 1e6, lon_e6 / 1e6: the text
                              * format prints these integers (same digits as %.6f,
                              * without printf's cost) */
    int32_t lat_e6;
    int32_t lon_e6;
    bool plain_text;         /* id, category and name are known to hold no C0 control
                              * character or DEL: copied without checking each byte */
    const struct reply_attr *attrs;  /* extra fields, in order; NULL when n_attrs is 0 */
    size_t n_attrs;
    size_t id_len;           /* strlen(id) when the caller knows it, else 0 (then the text
                              * format measures it); the same for category and name */
    size_t category_len;
    size_t name_len;
};

/* One area in a reply (AREAS, SERVES). Every pointer is borrowed for the call. */
struct reply_area {
    const char *id;
    const char *kind;
    const char *name;
    const char *parent;      /* "" for none */
    const char *served_by;   /* SERVES: ids joined by ';' ("" for none); NULL: no such field */
    const char *geometry;    /* GeoJSON geometry object text; read in geojson only, NULL
                              * there writes "geometry":null */
    bool geometry_dumped;    /* geometry is already as reply_geometry_json() writes it,
                              * and is copied as it is (not parsed again) */
};

/* Returns the format named "text", "json" or "geojson" (ASCII case ignored)
 * in *out. Returns 0, or -1 for any other name. */
int reply_format_parse(const char *name, enum reply_format *out);

/* Returns the lower-case name of a format, a static string. */
const char *reply_format_name(enum reply_format f);

/* Makes r empty, in text format. Never fails: memory is allocated on the
 * first append. */
void reply_init(struct reply *r);

/* Frees r's buffer; r is empty again. */
void reply_close(struct reply *r);

/* Bytes waiting in r. */
size_t reply_len(const struct reply *r);

/* True when an allocation failed since the last reply_take(): the server then
 * closes the connection rather than send a truncated answer. */
bool reply_failed(const struct reply *r);

/* Hands over the buffer: returns it (caller owns it, free with free()) and
 * its length in *len, and leaves r empty (its format is kept). Returns NULL
 * (and *len 0) when r is empty. A JSON answer still waiting for announced
 * records is not part of the buffer yet. */
char *reply_take(struct reply *r, size_t *len);

/* Hands over the buffer as reply_take() does, but also when it holds no
 * bytes: returns it (NULL when r has none), its length in *len and its
 * allocated size in *cap, and leaves r empty without a buffer. The caller
 * owns it: free() it, or give it to an empty reply with reply_reuse(). */
char *reply_take_buffer(struct reply *r, size_t *len, size_t *cap);

/* Lets r append into buf, cap bytes from malloc() (cap >= 1), instead of
 * allocating its own, and takes ownership of buf. Only a reply without a
 * buffer takes one: when r already has one, returns false and buf stays the
 * caller's; otherwise returns true. */
bool reply_reuse(struct reply *r, char *buf, size_t cap);

/* Moves the finished answers `from` holds to the end of r's, ahead of an
 * answer r is still owed records (which stays open after them); an answer
 * `from` is still owed records stays in from, which is otherwise left empty
 * (its buffer freed). A failed allocation, in either, marks r as failed
 * (reply_failed()). For an answer built on one thread and sent by another:
 * build it into a reply of its own, then append it to the connection's. */
void reply_append(struct reply *r, struct reply *from);

/* Says that the positions of the next success reply are in the coordinate
 * system named `crs` (a static string such as "gcj02"); JSON answers then state
 * it as a "crs" member. Applies to one reply_ok() only. */
void reply_set_crs(struct reply *r, const char *crs);

/* Starts a success reply announcing n records. In the JSON formats, the
 * answer is written when the n-th record arrives (at once when n is 0). */
void reply_ok(struct reply *r, size_t n);

/* Appends one facility record. Tabs, "\r" and "\n" in the strings become
 * spaces, so a record is always one line: the six standard fields, then one
 * tab-separated "key=value" field per attribute. In the JSON formats the
 * attributes are further members of the facility object (GeoJSON: further
 * properties), never replacing a standard one. */
void reply_facility(struct reply *r, const struct reply_facility *f);

/* Appends one record line made of the given tab-separated fields (HELP,
 * STATS, CATEGORIES). Same replacement of control characters in each field.
 * In the JSON formats the record is an array of strings. */
void reply_fields(struct reply *r, size_t n_fields, const char *const *fields);

/* Appends one area record. In text and json it is exactly the record
 * reply_fields() makes of id, kind, name, parent and (when not NULL) served_by.
 * In geojson it is a Feature with a->geometry as its geometry and id, kind,
 * name, parent (and served_by, an array of id strings) as its properties, so
 * that the answer is a FeatureCollection. A geometry that is not JSON marks
 * the reply failed. */
void reply_area(struct reply *r, const struct reply_area *a);

/* Returns `geometry`, a GeoJSON text, as the JSON formats write it inside an
 * answer (parsed, then dumped compact with the answers' 10 significant
 * digits), for a caller that keeps it to answer many times with
 * geometry_dumped set; or NULL when it is not JSON or memory runs out. The
 * caller owns it: free(). */
char *reply_geometry_json(const char *geometry);

/* Appends "ERR <WORD> <message>\n" for a cmd_err code (in the JSON formats
 * {"ok":false,"error":WORD,"message":...}), dropping any unfinished answer.
 * Control characters in the formatted message become spaces and the line is
 * capped at REPLY_MAX_ERR_BYTES. A NULL fmt uses the code's default message. */
void reply_err(struct reply *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes a copy of user text fit to appear inside an ERR message into
 * out[0..out_len-1]: control characters become spaces and text longer than
 * REPLY_MAX_ECHO_BYTES is cut at a character boundary and ends in "...".
 * Returns out. */
char *reply_echo(const char *text, char *out, size_t out_len);

#endif
