/* cli_reply.c: assembles nearestd answers from reply lines.
 *
 * Lines come out of the protocol's own proto_reader, with a 16 MiB limit: a
 * record is a name and a few numbers, about 150 bytes, but in FORMAT geojson
 * a whole answer is one line, and AREAS sends every polygon (150 KB for the
 * Licang dataset, 100 times that for a city's worth); the reader grows its
 * buffer only as far as a line really goes. Answers are small (at most 1000 records of
 * NEAREST or RADIUS), so each record is copied into its own allocation and
 * the record array grows by doubling; nothing is sized from the header's
 * count, so a lying "OK 999999" costs nothing until records really arrive. */
#include "nearest.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define CLI_MAX_COUNT_DIGITS 7    /* enough for CLI_MAX_REPLY_RECORDS */

struct cli_reply_parser {
    struct proto_reader *reader;
    struct cli_reply *partial;    /* an OK header whose records are still coming */
    size_t want_records;          /* records partial still needs */
    size_t cap_records;           /* slots allocated in partial->records */
    int err;                      /* sticky error, 0 if none */
};

const char *cli_err_str(int err) {
    switch (err) {
    case 0: return "success";
    case CLI_ERR_PARSE: return "malformed answer from the server";
    case CLI_ERR_NOMEM: return "out of memory";
    case CLI_ERR_LIMIT: return "answer line too long";
    case CLI_ERR_ARG: return "invalid argument";
    case CLI_ERR_CONNECT: return "cannot connect";
    case CLI_ERR_IO: return "input/output error";
    case CLI_ERR_TIMEOUT: return "timed out";
    case CLI_ERR_CLOSED: return "connection closed by the server";
    default: return "unknown error";
    }
}

/* ---- Replies and records ---------------------------------------------------- */

static void record_clear(struct cli_record *rec) {
    free(rec->line);
    free(rec->fields);
}

void cli_reply_free(struct cli_reply *reply) {
    if (reply == NULL) {
        return;
    }
    for (size_t i = 0; i < reply->n_records; i++) {
        record_clear(&reply->records[i]);
    }
    free(reply->records);
    free(reply->header);
    free(reply->code);
    free(reply->message);
    free(reply->json);
    free(reply);
}

static char *copy_bytes(const char *s, size_t len) {
    char *out = malloc(len + 1);
    if (out != NULL) {
        memcpy(out, s, len);
        out[len] = '\0';
    }
    return out;
}

/* Fills rec from a line: `line` keeps the text, a second copy behind it is
 * cut at tabs into fields. */
static int record_init(struct cli_record *rec, const char *line, size_t len) {
    rec->line = malloc(2 * (len + 1));
    if (rec->line == NULL) {
        return CLI_ERR_NOMEM;
    }
    memcpy(rec->line, line, len);
    rec->line[len] = '\0';
    char *split = rec->line + len + 1;
    memcpy(split, line, len + 1);
    split[len] = '\0';
    size_t n = 1;
    for (size_t i = 0; i < len; i++) {
        n += split[i] == '\t';
    }
    rec->fields = malloc(n * sizeof *rec->fields);
    if (rec->fields == NULL) {
        free(rec->line);
        rec->line = NULL;
        return CLI_ERR_NOMEM;
    }
    rec->n_fields = n;
    size_t f = 0;
    rec->fields[f++] = split;
    for (size_t i = 0; i < len; i++) {
        if (split[i] == '\t') {
            split[i] = '\0';
            rec->fields[f++] = split + i + 1;
        }
    }
    return 0;
}

/* Reads a whole field as a finite number. */
static bool parse_number(const char *s, double *out) {
    if (*s == '\0') {
        return false;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0' || errno != 0 || !isfinite(v)) {
        return false;
    }
    *out = v;
    return true;
}

int cli_record_facility(const struct cli_record *rec, struct cli_facility *out) {
    if (rec->n_fields < 6) {
        return CLI_ERR_PARSE;
    }
    struct cli_facility f = {
        .id = rec->fields[0],
        .category = rec->fields[1],
        .name = rec->fields[2],
        .n_extra = rec->n_fields - 6,
        .extra = rec->fields + 6,
    };
    if (!parse_number(rec->fields[3], &f.lat_deg) || !parse_number(rec->fields[4], &f.lon_deg)) {
        return CLI_ERR_PARSE;
    }
    if (strcmp(rec->fields[5], "-") != 0) {
        if (!parse_number(rec->fields[5], &f.distance_m)) {
            return CLI_ERR_PARSE;
        }
        f.has_distance = true;
    }
    *out = f;
    return 0;
}

const char *cli_facility_attr(const struct cli_facility *f, const char *key) {
    size_t key_len = strlen(key);
    for (size_t i = 0; i < f->n_extra; i++) {
        const char *field = f->extra[i];
        if (strncmp(field, key, key_len) == 0 && field[key_len] == '=') {
            return field + key_len + 1;
        }
    }
    return NULL;
}

int cli_record_area(const struct cli_record *rec, struct cli_area *out) {
    if (rec->n_fields < 4 || rec->n_fields > 5 || rec->fields[0][0] == '\0' ||
        rec->fields[1][0] == '\0') {
        return CLI_ERR_PARSE;
    }
    *out = (struct cli_area){
        .id = rec->fields[0],
        .kind = rec->fields[1],
        .name = rec->fields[2],
        .parent = rec->fields[3],
        .served_by = rec->n_fields == 5 ? rec->fields[4] : NULL,
    };
    return 0;
}

/* ---- Headers ---------------------------------------------------------------- */

/* Parses "OK <n>": exactly one space, then 1..7 decimal digits, nothing else. */
static bool parse_ok_header(const char *line, size_t len, size_t *n) {
    if (len < 4 || memcmp(line, "OK ", 3) != 0) {
        return false;
    }
    size_t digits = len - 3;
    if (digits > CLI_MAX_COUNT_DIGITS) {
        return false;
    }
    size_t v = 0;
    for (size_t i = 3; i < len; i++) {
        if (line[i] < '0' || line[i] > '9') {
            return false;
        }
        v = v * 10 + (size_t)(line[i] - '0');
    }
    if (v > CLI_MAX_REPLY_RECORDS) {
        return false;
    }
    *n = v;
    return true;
}

static bool is_code_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Parses "ERR <CODE>[ <message>]": the code is upper-case letters, digits, '_'. */
static bool parse_err_header(const char *line, size_t len, size_t *code_len) {
    if (len < 5 || memcmp(line, "ERR ", 4) != 0) {
        return false;
    }
    size_t i = 4;
    while (i < len && is_code_char(line[i])) {
        i++;
    }
    if (i == 4 || (i < len && line[i] != ' ')) {
        return false;
    }
    *code_len = i - 4;
    return true;
}

/* Starts an answer from its header line. Sets *done when it is already whole. */
static int begin_reply(struct cli_reply_parser *p, const char *line, size_t len, bool *done) {
    if (memchr(line, '\0', len) != NULL) {
        return CLI_ERR_PARSE;
    }
    struct cli_reply *reply = calloc(1, sizeof *reply);
    if (reply == NULL) {
        return CLI_ERR_NOMEM;
    }
    int ret = CLI_ERR_NOMEM;
    reply->header = copy_bytes(line, len);
    if (reply->header == NULL) {
        goto done;
    }
    size_t n = 0, code_len = 0;
    if (parse_ok_header(line, len, &n)) {
        reply->kind = CLI_REPLY_OK;
        p->want_records = n;
        *done = n == 0;
    } else if (parse_err_header(line, len, &code_len)) {
        reply->kind = CLI_REPLY_ERR;
        reply->code = copy_bytes(line + 4, code_len);
        size_t msg_at = 4 + code_len + (4 + code_len < len);
        reply->message = copy_bytes(line + msg_at, len - msg_at);
        if (reply->code == NULL || reply->message == NULL) {
            goto done;
        }
        *done = true;
    } else if (len > 0 && line[0] == '{') {
        reply->kind = CLI_REPLY_JSON;
        reply->json = copy_bytes(line, len);
        if (reply->json == NULL) {
            goto done;
        }
        *done = true;
    } else {
        ret = CLI_ERR_PARSE;
        goto done;
    }
    p->partial = reply;
    reply = NULL;
    ret = 0;
done:
    cli_reply_free(reply);
    return ret;
}

static int add_record(struct cli_reply_parser *p, const char *line, size_t len) {
    struct cli_reply *reply = p->partial;
    if (reply->n_records == p->cap_records) {
        size_t cap = p->cap_records ? 2 * p->cap_records : 8;
        struct cli_record *grown = realloc(reply->records, cap * sizeof *grown);
        if (grown == NULL) {
            return CLI_ERR_NOMEM;
        }
        reply->records = grown;
        p->cap_records = cap;
    }
    int ret = record_init(&reply->records[reply->n_records], line, len);
    if (ret < 0) {
        return ret;
    }
    reply->n_records++;
    p->want_records--;
    return 0;
}

/* ---- Parser ----------------------------------------------------------------- */

struct cli_reply_parser *cli_reply_parser_new(void) {
    struct cli_reply_parser *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return NULL;
    }
    p->reader = proto_reader_new(CLI_MAX_REPLY_LINE_BYTES);
    if (p->reader == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

static void drop_partial(struct cli_reply_parser *p) {
    cli_reply_free(p->partial);
    p->partial = NULL;
    p->want_records = 0;
    p->cap_records = 0;
}

void cli_reply_parser_free(struct cli_reply_parser *p) {
    if (p == NULL) {
        return;
    }
    drop_partial(p);
    proto_reader_free(p->reader);
    free(p);
}

void cli_reply_parser_reset(struct cli_reply_parser *p) {
    drop_partial(p);
    proto_reader_reset(p->reader);
    p->err = 0;
}

bool cli_reply_parser_is_partial(const struct cli_reply_parser *p) {
    return p->partial != NULL || proto_reader_buffered(p->reader) > 0;
}

int cli_reply_parser_feed(struct cli_reply_parser *p, const char *buf, size_t len) {
    if (p->err != 0) {
        return p->err;
    }
    int ret = proto_feed(p->reader, buf, len);
    if (ret == PROTO_ERR_NOMEM) {
        return CLI_ERR_NOMEM;
    }
    /* PROTO_ERR_LIMIT shows up in cli_reply_parser_next(), after the whole
     * answers before the long line. */
    return 0;
}

static int fail(struct cli_reply_parser *p, int err) {
    drop_partial(p);
    p->err = err;
    return err;
}

int cli_reply_parser_next(struct cli_reply_parser *p, struct cli_reply **out) {
    if (p->err != 0) {
        return p->err;
    }
    for (;;) {
        char *line = NULL;
        size_t len = 0;
        int st = proto_next(p->reader, &line, &len);
        if (st == PROTO_MORE) {
            return 0;
        }
        if (st != PROTO_LINE) {
            return fail(p, st == PROTO_ERR_LIMIT ? CLI_ERR_LIMIT : CLI_ERR_NOMEM);
        }
        bool done = false;
        int ret;
        if (p->partial == NULL) {
            ret = begin_reply(p, line, len, &done);
        } else {
            ret = add_record(p, line, len);
            done = p->want_records == 0;
        }
        if (ret < 0) {
            return fail(p, ret);
        }
        if (done) {
            *out = p->partial;
            p->partial = NULL;
            p->want_records = 0;
            p->cap_records = 0;
            return 1;
        }
    }
}
