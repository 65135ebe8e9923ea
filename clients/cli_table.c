/* cli_table.c: the views of answers for the `nearest` CLI: the facility
 * table (with optional category and attribute columns), the areas table of
 * SERVES and AREAS, HELP for people, TSV and raw. Answers hold at most 1000
 * records, so a table is laid out in two passes over the reply (measure,
 * then print) without copying anything but the "served by" texts. */
#include "cli_table.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Display width ---------------------------------------------------------- */

struct cp_range {
    unsigned long first, last;
};

/* Combining marks and zero-width format characters. */
static const struct cp_range zero_width[] = {
    {0x0300, 0x036F}, {0x0483, 0x0489}, {0x0591, 0x05BD}, {0x0610, 0x061A},
    {0x064B, 0x065F}, {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF}, {0x200B, 0x200F},
    {0x202A, 0x202E}, {0x2060, 0x2064}, {0x20D0, 0x20FF}, {0xFE00, 0xFE0F},
    {0xFE20, 0xFE2F}, {0xFEFF, 0xFEFF}, {0xE0100, 0xE01EF}, {0x302A, 0x302D},
    {0x3099, 0x309A},
};

/* East Asian Wide and Fullwidth blocks (Unicode EastAsianWidth.txt W/F). */
static const struct cp_range wide[] = {
    {0x1100, 0x115F},   {0x231A, 0x231B},   {0x2329, 0x232A},   {0x2E80, 0x303E},
    {0x3041, 0x33FF},   {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},   {0xA000, 0xA4CF},
    {0xA960, 0xA97F},   {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},   {0xFE10, 0xFE19},
    {0xFE30, 0xFE6F},   {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},   {0x1F300, 0x1F64F},
    {0x1F900, 0x1F9FF}, {0x20000, 0x2FFFD}, {0x30000, 0x3FFFD},
};

static bool in_ranges(unsigned long cp, const struct cp_range *r, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (cp >= r[i].first && cp <= r[i].last) {
            return true;
        }
    }
    return false;
}

int cli_codepoint_width(unsigned long cp) {
    if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) {
        return 0;
    }
    if (in_ranges(cp, zero_width, sizeof zero_width / sizeof zero_width[0])) {
        return 0;
    }
    if (in_ranges(cp, wide, sizeof wide / sizeof wide[0])) {
        return 2;
    }
    return 1;
}

/* Decodes one UTF-8 sequence at s. Returns its length in bytes (0 if invalid:
 * bad lead or continuation byte, overlong form, surrogate, beyond U+10FFFF). */
static size_t utf8_decode(const unsigned char *s, unsigned long *cp) {
    size_t n;
    unsigned long v, min;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    } else if ((s[0] & 0xE0) == 0xC0) {
        n = 2, v = s[0] & 0x1F, min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        n = 3, v = s[0] & 0x0F, min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        n = 4, v = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0; /* also stops at the NUL */
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        return 0;
    }
    *cp = v;
    return n;
}

size_t cli_display_width(const char *utf8) {
    const unsigned char *s = (const unsigned char *)utf8;
    size_t width = 0;
    while (*s) {
        unsigned long cp = 0;
        size_t n = utf8_decode(s, &cp);
        if (n == 0) {
            width++;
            s++;
            continue;
        }
        width += (size_t)cli_codepoint_width(cp);
        s += n;
    }
    return width;
}

/* ---- Values ----------------------------------------------------------------- */

void cli_format_distance(bool has_distance, double distance_m, char *buf, size_t cap) {
    if (!has_distance || !isfinite(distance_m)) {
        snprintf(buf, cap, "-");
    } else if (distance_m < 999.5) {
        snprintf(buf, cap, "%.0f m", distance_m < 0 ? 0.0 : distance_m);
    } else if (distance_m < 99995.0) {
        snprintf(buf, cap, "%.2f km", distance_m / 1000.0);
    } else {
        snprintf(buf, cap, "%.1f km", distance_m / 1000.0);
    }
}

/* ---- Views ------------------------------------------------------------------ */

/* Length of a control sequence starter at s that a terminal would act on:
 * a C0 control or DEL (1 byte), or a C1 control U+0080..U+009F (2 bytes).
 * 0 for anything else. */
static size_t control_len(const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x20 || u[0] == 0x7F) {
        return 1;
    }
    if (u[0] == 0xC2 && u[1] >= 0x80 && u[1] <= 0x9F) {
        return 2;
    }
    return 0;
}

/* Prints s with every control character as '?', so that a name from the
 * server cannot move the cursor or change colours in the table. */
static void put_clean(FILE *out, const char *s) {
    while (*s) {
        size_t n = control_len(s);
        if (n > 0) {
            fputc('?', out);
            s += n;
        } else {
            fputc(*s++, out);
        }
    }
}

/* Display width of s as put_clean() prints it. */
static size_t clean_width(const char *s) {
    size_t controls = 0;
    for (const char *p = s; *p;) {
        size_t n = control_len(p);
        controls += n > 0;
        p += n > 0 ? n : 1;
    }
    return cli_display_width(s) + controls;
}

static void pad(FILE *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        fputc(' ', out);
    }
}

/* Prints s left-aligned in a column of `width` display columns. */
static void print_left(FILE *out, const char *s, size_t width) {
    size_t w = clean_width(s);
    put_clean(out, s);
    pad(out, width > w ? width - w : 0);
}

static void print_right(FILE *out, const char *s, size_t width) {
    size_t w = clean_width(s);
    pad(out, width > w ? width - w : 0);
    put_clean(out, s);
}

struct row_text {
    char number[24];
    char distance[32];
    char position[64];
};

static void row_text(size_t i, const struct cli_facility *f, struct row_text *t) {
    snprintf(t->number, sizeof t->number, "%zu", i + 1);
    cli_format_distance(f->has_distance, f->distance_m, t->distance, sizeof t->distance);
    snprintf(t->position, sizeof t->position, "%.6f, %.6f", f->lat_deg, f->lon_deg);
}

static size_t max_size(size_t a, size_t b) {
    return a > b ? a : b;
}

/* The columns of a facility table, left to right:
 * "#  name  [category]  distance  [attributes...]  lat, lon  id". */
enum column_kind { COL_NUMBER, COL_NAME, COL_CATEGORY, COL_DISTANCE, COL_ATTR, COL_POSITION,
                   COL_ID };

struct column {
    enum column_kind kind;
    const char *head;       /* also the attribute's key for COL_ATTR */
    size_t width;           /* display columns */
};

static const char *facility_cell(const struct column *col, const struct cli_facility *f,
                                 const struct row_text *t) {
    switch (col->kind) {
    case COL_NUMBER:
        return t->number;
    case COL_NAME:
        return f->name;
    case COL_CATEGORY:
        return f->category;
    case COL_DISTANCE:
        return t->distance;
    case COL_ATTR: {
        const char *v = cli_facility_attr(f, col->head);
        return v != NULL ? v : "-";
    }
    case COL_POSITION:
        return t->position;
    case COL_ID:
        break;
    }
    return f->id;
}

static void print_cell(FILE *out, const char *s, size_t width, bool right, bool last) {
    if (right) {
        print_right(out, s, width);
    } else if (last) {
        put_clean(out, s);
    } else {
        print_left(out, s, width);
    }
    fputs(last ? "\n" : "  ", out);
}

static bool is_right_aligned(const struct column *col) {
    return col->kind == COL_NUMBER || col->kind == COL_DISTANCE;
}

/* Whether the facility records hold more than one category (a "*" query). */
static bool mixes_categories(const struct cli_reply *reply) {
    const char *first = NULL;
    for (size_t i = 0; i < reply->n_records; i++) {
        struct cli_facility f;
        if (cli_record_facility(&reply->records[i], &f) < 0) {
            continue;
        }
        if (first == NULL) {
            first = f.category;
        } else if (strcmp(first, f.category) != 0) {
            return true;
        }
    }
    return false;
}

void cli_table_print_attrs(FILE *out, const struct cli_reply *reply, const char *const *attrs,
                           size_t n_attrs) {
    if (n_attrs > CLI_TABLE_MAX_ATTRS) {
        n_attrs = CLI_TABLE_MAX_ATTRS;
    }
    struct column cols[6 + CLI_TABLE_MAX_ATTRS];
    size_t n_cols = 0;
    cols[n_cols++] = (struct column){COL_NUMBER, "#", 0};
    cols[n_cols++] = (struct column){COL_NAME, "name", 0};
    if (mixes_categories(reply)) {
        cols[n_cols++] = (struct column){COL_CATEGORY, "category", 0};
    }
    cols[n_cols++] = (struct column){COL_DISTANCE, "distance", 0};
    for (size_t a = 0; a < n_attrs; a++) {
        cols[n_cols++] = (struct column){COL_ATTR, attrs[a], 0};
    }
    cols[n_cols++] = (struct column){COL_POSITION, "lat, lon", 0};
    cols[n_cols++] = (struct column){COL_ID, "id", 0};
    for (size_t c = 0; c < n_cols; c++) {
        cols[c].width = clean_width(cols[c].head);
    }
    for (size_t i = 0; i < reply->n_records; i++) {
        struct cli_facility f;
        if (cli_record_facility(&reply->records[i], &f) < 0) {
            continue;
        }
        struct row_text t;
        row_text(i, &f, &t);
        for (size_t c = 0; c < n_cols; c++) {
            cols[c].width = max_size(cols[c].width, clean_width(facility_cell(&cols[c], &f, &t)));
        }
    }
    for (size_t c = 0; c < n_cols; c++) {
        print_cell(out, cols[c].head, cols[c].width, is_right_aligned(&cols[c]),
                   c + 1 == n_cols);
    }
    for (size_t i = 0; i < reply->n_records; i++) {
        const struct cli_record *rec = &reply->records[i];
        struct cli_facility f;
        if (cli_record_facility(rec, &f) < 0) {
            for (size_t k = 0; k < rec->n_fields; k++) {
                fputs(k ? "  " : "", out);
                put_clean(out, rec->fields[k]);
            }
            fputc('\n', out);
            continue;
        }
        struct row_text t;
        row_text(i, &f, &t);
        for (size_t c = 0; c < n_cols; c++) {
            print_cell(out, facility_cell(&cols[c], &f, &t), cols[c].width,
                       is_right_aligned(&cols[c]), c + 1 == n_cols);
        }
    }
}

void cli_table_print(FILE *out, const struct cli_reply *reply) {
    cli_table_print_attrs(out, reply, NULL, 0);
}

/* Name of a facility id in names[], or NULL. */
static const char *name_of(const char *id, size_t id_len, const struct cli_id_name *names,
                           size_t n_names) {
    for (size_t i = 0; i < n_names; i++) {
        if (strlen(names[i].id) == id_len && memcmp(names[i].id, id, id_len) == 0) {
            return names[i].name;
        }
    }
    return NULL;
}

/* "name (id), name (id)" for a served_by list "id;id", ids alone when no name
 * is known; "-" when the list is empty. Caller frees; NULL when out of memory. */
static char *served_text(const char *served_by, const struct cli_id_name *names,
                         size_t n_names) {
    size_t cap = 2;
    for (const char *p = served_by; *p; p++) {
        cap += *p == ';' ? 2 : 1;
    }
    for (const char *id = served_by; *id;) {
        size_t n = strcspn(id, ";");
        const char *name = name_of(id, n, names, n_names);
        cap += name != NULL ? strlen(name) + 3 : 0;
        id += n + (id[n] == ';');
    }
    char *text = malloc(cap);
    if (text == NULL) {
        return NULL;
    }
    size_t o = 0;
    for (const char *id = served_by; *id;) {
        size_t n = strcspn(id, ";");
        if (n > 0) {
            const char *name = name_of(id, n, names, n_names);
            o += (size_t)snprintf(text + o, cap - o, "%s", o > 0 ? ", " : "");
            if (name != NULL) {
                o += (size_t)snprintf(text + o, cap - o, "%s (%.*s)", name, (int)n, id);
            } else {
                o += (size_t)snprintf(text + o, cap - o, "%.*s", (int)n, id);
            }
        }
        id += n + (id[n] == ';');
    }
    if (o == 0) {
        snprintf(text, cap, "-");
    }
    return text;
}

int cli_areas_print(FILE *out, const struct cli_reply *reply, const struct cli_id_name *names,
                    size_t n_names) {
    static const char *const head[] = {"kind", "name", "id", "served by"};
    size_t width[4];
    for (size_t c = 0; c < 4; c++) {
        width[c] = clean_width(head[c]);
    }
    bool has_served = false;
    char **served = calloc(reply->n_records + 1, sizeof *served);
    if (served == NULL) {
        return CLI_ERR_NOMEM;
    }
    int ret = CLI_ERR_NOMEM;
    for (size_t i = 0; i < reply->n_records; i++) {
        struct cli_area a;
        if (cli_record_area(&reply->records[i], &a) < 0) {
            continue;
        }
        has_served = has_served || a.served_by != NULL;
        served[i] = served_text(a.served_by != NULL ? a.served_by : "", names, n_names);
        if (served[i] == NULL) {
            goto done;
        }
        width[0] = max_size(width[0], clean_width(a.kind));
        width[1] = max_size(width[1], clean_width(a.name));
        width[2] = max_size(width[2], clean_width(a.id));
    }
    size_t n_cols = has_served ? 4 : 3;
    for (size_t c = 0; c < n_cols; c++) {
        print_cell(out, head[c], width[c], false, c + 1 == n_cols);
    }
    for (size_t i = 0; i < reply->n_records; i++) {
        const struct cli_record *rec = &reply->records[i];
        struct cli_area a;
        if (cli_record_area(rec, &a) < 0) {
            for (size_t k = 0; k < rec->n_fields; k++) {
                fputs(k ? "  " : "", out);
                put_clean(out, rec->fields[k]);
            }
            fputc('\n', out);
            continue;
        }
        const char *cells[4] = {a.kind, a.name, a.id, served[i]};
        for (size_t c = 0; c < n_cols; c++) {
            print_cell(out, cells[c], width[c], false, c + 1 == n_cols);
        }
    }
    ret = 0;
done:
    for (size_t i = 0; i < reply->n_records; i++) {
        free(served[i]);
    }
    free(served);
    return ret;
}

void cli_help_print(FILE *out, const struct cli_reply *reply) {
    for (size_t i = 0; i < reply->n_records; i++) {
        const struct cli_record *rec = &reply->records[i];
        put_clean(out, rec->fields[0]);
        fputc('\n', out);
        for (size_t k = 1; k < rec->n_fields; k++) {
            fputs("    ", out);
            put_clean(out, rec->fields[k]);
            fputc('\n', out);
        }
    }
}

void cli_tsv_print(FILE *out, const struct cli_reply *reply) {
    for (size_t i = 0; i < reply->n_records; i++) {
        fputs(reply->records[i].line, out);
        fputc('\n', out);
    }
}

void cli_raw_print(FILE *out, const struct cli_reply *reply) {
    fputs(reply->header, out);
    fputc('\n', out);
    cli_tsv_print(out, reply);
}
