/* store_attrs.c: record validation and the CSV <-> JSON value conversions
 * that make an export re-import to the same records.
 *
 * The table of known attributes is small (eighteen rows) and is searched
 * linearly: a facility has at most a handful of attributes. */
#include "store_attrs.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hours.h"
#include "store.h"

bool store_id_is_valid(const char *id)
{
    if (!id) {
        return false;
    }
    size_t n = strlen(id);
    if (n == 0 || n > STORE_ID_MAX_BYTES) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == ':' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* Checks that s is well-formed UTF-8 (no overlongs, no surrogates). Lists
 * saved by spreadsheet programs in China are often GBK, which fails here. */
bool store_utf8_is_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        int n;
        unsigned min;
        unsigned cp;
        if ((*p & 0xe0) == 0xc0) {
            n = 1, min = 0x80, cp = *p & 0x1f;
        } else if ((*p & 0xf0) == 0xe0) {
            n = 2, min = 0x800, cp = *p & 0x0f;
        } else if ((*p & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, cp = *p & 0x07;
        } else {
            return false;
        }
        p++;
        for (int i = 0; i < n; i++, p++) {
            if ((*p & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (*p & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
    }
    return true;
}

/* Checks opening-hours text; writes the reason to err. */
bool store_hours_check(const char *text, char *err, size_t err_len)
{
    struct hours h;
    struct hours_error he;
    if (hours_parse(text, &h, &he) != 0) {
        store_set_err(err, err_len, "%s at byte %zu", hours_strerror(he.code), he.offset);
        return false;
    }
    return true;
}

enum attr_type { A_INT, A_NUM, A_BOOL, A_STR, A_HOURS, A_IDS, A_ID };

/* The attributes whose type we know, per category. Others pass as they are. */
struct attr_rule {
    int category;
    const char *name;
    enum attr_type type;
    double min, max;            /* for A_INT and A_NUM */
    const char *choices;        /* for A_STR: "|a|b|" or NULL for any text */
};

static const struct attr_rule attr_rules[] = {
    {STORE_CAT_ELDER_CARE, "stars", A_INT, 1, 5, NULL},
    {STORE_CAT_ELDER_CARE, "beds", A_INT, 0, 1e6, NULL},
    {STORE_CAT_ELDER_CARE, "dementia", A_BOOL, 0, 0, NULL},
    {STORE_CAT_MEAL_POINT, "meal_hours", A_HOURS, 0, 0, NULL},
    {STORE_CAT_MEAL_POINT, "price_60", A_NUM, 0, 1e6, NULL},
    {STORE_CAT_MEAL_POINT, "price_80", A_NUM, 0, 1e6, NULL},
    {STORE_CAT_MEAL_POINT, "delivery", A_BOOL, 0, 0, NULL},
    {STORE_CAT_DOCTOR_TEAM, "station", A_STR, 0, 0, NULL},
    {STORE_CAT_DOCTOR_TEAM, "team_size", A_INT, 0, 1e4, NULL},
    {STORE_CAT_DOCTOR_TEAM, "serves", A_IDS, 0, 0, NULL},
    {STORE_CAT_SCHOOL, "level", A_STR, 0, 0, "|kindergarten|primary|middle|nine_year|"},
    {STORE_CAT_SCHOOL, "ownership", A_STR, 0, 0, "|public|private|"},
    {STORE_CAT_SCHOOL, "group", A_STR, 0, 0, NULL},
    {STORE_CAT_SCHOOL, "status", A_STR, 0, 0, "|open|under_construction|"},
    {STORE_CAT_SCHOOL, "catchment", A_ID, 0, 0, NULL},
    {STORE_CAT_PARKING, "capacity", A_INT, 0, 1e6, NULL},
    {STORE_CAT_PARKING, "price", A_NUM, 0, 1e6, NULL},
    {STORE_CAT_PARKING, "shared_hours", A_HOURS, 0, 0, NULL},
};

static const struct attr_rule *attr_rule_find(int category, const char *name)
{
    for (size_t i = 0; i < sizeof attr_rules / sizeof attr_rules[0]; i++) {
        if (attr_rules[i].category == category && strcmp(attr_rules[i].name, name) == 0) {
            return &attr_rules[i];
        }
    }
    return NULL;
}

/* True when s is exactly one of the words in "|a|b|c|". Compared word by
 * word, so "", "|a" and "a|b" are refused (a substring search once read the
 * byte before the list for those; found by fuzz/fuzz_import). */
static bool choice_ok(const char *choices, const char *s)
{
    size_t n = strlen(s);
    const char *word = choices + 1;
    while (*word) {
        const char *bar = strchr(word, '|');
        size_t len = bar ? (size_t)(bar - word) : strlen(word);
        if (len == n && n > 0 && memcmp(word, s, n) == 0) {
            return true;
        }
        word += len + (bar ? 1 : 0);
    }
    return false;
}

/* Checks one attribute value against its rule; writes "reason" to err. */
static bool attr_ok(const struct attr_rule *r, json_t *v, char *err, size_t err_len)
{
    switch (r->type) {
    case A_INT:
        if (!json_is_integer(v)) {
            store_set_err(err, err_len, "bad number: expected an integer");
            return false;
        }
        if (json_integer_value(v) < r->min || json_integer_value(v) > r->max) {
            store_set_err(err, err_len, "out of range %g..%g", r->min, r->max);
            return false;
        }
        return true;
    case A_NUM:
        if (!json_is_number(v) || !isfinite(json_number_value(v))) {
            store_set_err(err, err_len, "bad number");
            return false;
        }
        if (json_number_value(v) < r->min || json_number_value(v) > r->max) {
            store_set_err(err, err_len, "out of range %g..%g", r->min, r->max);
            return false;
        }
        return true;
    case A_BOOL:
        if (!json_is_boolean(v)) {
            store_set_err(err, err_len, "expected true or false");
            return false;
        }
        return true;
    case A_STR:
        if (!json_is_string(v)) {
            store_set_err(err, err_len, "expected text");
            return false;
        }
        if (r->choices && !choice_ok(r->choices, json_string_value(v))) {
            /* "|a|b|" -> "a, b" */
            char words[160];
            size_t n = 0;
            for (const char *c = r->choices + 1; c[0] && c[1] && n + 3 < sizeof words; c++) {
                if (*c == '|') {
                    words[n++] = ',';
                    words[n++] = ' ';
                } else {
                    words[n++] = *c;
                }
            }
            words[n] = '\0';
            store_set_err(err, err_len, "expected one of %s", words);
            return false;
        }
        return true;
    case A_HOURS:
        if (!json_is_string(v)) {
            store_set_err(err, err_len, "expected opening-hours text");
            return false;
        }
        return store_hours_check(json_string_value(v), err, err_len);
    case A_ID:
        if (!json_is_string(v) || !store_id_is_valid(json_string_value(v))) {
            store_set_err(err, err_len, "expected an area id ([A-Za-z0-9_.:-], 1..64 bytes)");
            return false;
        }
        return true;
    case A_IDS:
        if (!json_is_array(v)) {
            store_set_err(err, err_len, "expected an array of area ids");
            return false;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i);
            if (!json_is_string(e) || !store_id_is_valid(json_string_value(e))) {
                store_set_err(err, err_len, "element %zu is not an area id", i + 1);
                return false;
            }
        }
        return true;
    }
    return false;
}

/* Parses and checks attrs; on success *out is a new reference to the object. */
int store_attrs_parse(int category, const char *text, json_t **out, char *err,
                       size_t err_len)
{
    json_error_t je;
    json_t *obj = json_loads(text && *text ? text : "{}", JSON_REJECT_DUPLICATES, &je);
    if (!obj) {
        store_set_err(err, err_len, "attrs: not JSON: %s", je.text);
        return STORE_ERR_ARG;
    }
    if (!json_is_object(obj)) {
        store_set_err(err, err_len, "attrs: not a JSON object");
        json_decref(obj);
        return STORE_ERR_ARG;
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        const struct attr_rule *r = attr_rule_find(category, key);
        char why[160];
        if (r && !attr_ok(r, v, why, sizeof why)) {
            store_set_err(err, err_len, "%s: %s", key, why);
            json_decref(obj);
            return STORE_ERR_ARG;
        }
    }
    *out = obj;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* CSV cells <-> JSON values                                                */
/* ------------------------------------------------------------------------ */

int store_parse_double(const char *text, double *out)
{
    char *end = NULL;
    errno = 0;
    double x = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(x)) {
        return STORE_ERR_ARG;
    }
    /* strtod also reads hex floats and "inf"; lists only hold decimals. */
    for (const char *p = text; *p; p++) {
        if (strchr("0123456789+-.eE", *p) == NULL) {
            return STORE_ERR_ARG;
        }
    }
    *out = x;
    return 0;
}

void store_format_double(double x, char out[STORE_DOUBLE_TEXT_MAX])
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, STORE_DOUBLE_TEXT_MAX, "%.*g", prec, x);
        if (strtod(out, NULL) == x) {
            return;
        }
    }
}

/* Parses a whole string as a decimal integer. */
static bool parse_int(const char *text, json_int_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE) {
        return false;
    }
    *out = (json_int_t)v;
    return true;
}

/* A number cell: integer syntax gives a JSON integer, else a real. */
static json_t *number_from_text(const char *text)
{
    json_int_t i;
    double d;
    if (parse_int(text, &i)) {
        return json_integer(i);
    }
    if (store_parse_double(text, &d) == 0) {
        return json_real(d);
    }
    return NULL;
}

static json_t *bool_from_text(const char *text)
{
    if (strcasecmp(text, "true") == 0 || strcmp(text, "1") == 0 ||
        strcasecmp(text, "yes") == 0) {
        return json_true();
    }
    if (strcasecmp(text, "false") == 0 || strcmp(text, "0") == 0 ||
        strcasecmp(text, "no") == 0) {
        return json_false();
    }
    return NULL;
}

/* Splits "a; b;c" into ["a","b","c"], dropping empty pieces. */
static json_t *ids_from_text(const char *text)
{
    json_t *arr = json_array();
    const char *p = text;
    while (arr && *p) {
        const char *semi = strchr(p, ';');
        size_t n = semi ? (size_t)(semi - p) : strlen(p);
        const char *b = p;
        const char *e = p + n;
        while (b < e && (*b == ' ' || *b == '\t')) {
            b++;
        }
        while (e > b && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        if (e > b && json_array_append_new(arr, json_stringn(b, (size_t)(e - b))) != 0) {
            json_decref(arr);
            return NULL;
        }
        p = semi ? semi + 1 : p + n;
    }
    return arr;
}

int store_attr_from_text(int category, const char *name, const char *text, json_t **out,
                         char *err, size_t err_len)
{
    const struct attr_rule *r = attr_rule_find(category, name);
    json_t *v = NULL;
    *out = NULL;
    if (!*text) {
        /* An empty cell is "not applicable", except for a text attribute of
         * the row's own category, where "" is a value (a school's group). */
        if (r && r->type == A_STR) {
            *out = json_string("");
            return *out ? 0 : STORE_ERR_NOMEM;
        }
        return 0;
    }
    if (!r) {
        /* Unknown attributes: only the exact words export writes are booleans. */
        if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0) {
            v = json_boolean(text[0] == 't');
        } else {
            v = number_from_text(text);
        }
        if (!v) {
            v = json_string(text);
        }
    } else {
        switch (r->type) {
        case A_INT:
        case A_NUM:
            v = number_from_text(text);
            if (!v) {
                store_set_err(err, err_len, "bad number '%.40s'", text);
                return STORE_ERR_ARG;
            }
            break;
        case A_BOOL:
            v = bool_from_text(text);
            if (!v) {
                store_set_err(err, err_len, "expected true or false, not '%.40s'", text);
                return STORE_ERR_ARG;
            }
            break;
        case A_IDS:
            v = ids_from_text(text);
            break;
        case A_STR:
        case A_HOURS:
        case A_ID:
            v = json_string(text);
            break;
        }
    }
    if (!v) {
        store_set_err(err, err_len, "not valid UTF-8 text, or out of memory");
        return STORE_ERR_ARG;
    }
    char why[200];
    if (r && !attr_ok(r, v, why, sizeof why)) {
        store_set_err(err, err_len, "%s", why);
        json_decref(v);
        return STORE_ERR_ARG;
    }
    *out = v;
    return 0;
}

/* Appends the text of a scalar to a growing buffer. */
static int scalar_text(const json_t *v, char **buf)
{
    char num[STORE_DOUBLE_TEXT_MAX];
    const char *s = num;
    char *owned = NULL;
    switch (json_typeof(v)) {
    case JSON_STRING: s = json_string_value(v); break;
    case JSON_INTEGER: snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
                                json_integer_value(v)); break;
    case JSON_REAL:
        /* "3.0", not "3": a real must read back as a real, not an integer. */
        store_format_double(json_real_value(v), num);
        if (!strpbrk(num, ".eEn")) {
            strcat(num, ".0");
        }
        break;
    case JSON_TRUE: s = "true"; break;
    case JSON_FALSE: s = "false"; break;
    case JSON_NULL: s = ""; break;
    default:
        owned = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        if (!owned) {
            return STORE_ERR_NOMEM;
        }
        s = owned;
    }
    *buf = strdup(s);
    free(owned);
    return *buf ? 0 : STORE_ERR_NOMEM;
}

int store_attr_to_text(const json_t *v, char **buf)
{
    *buf = NULL;
    if (!json_is_array(v)) {
        return scalar_text(v, buf);
    }
    size_t len = 0;
    char *out = strdup("");
    for (size_t i = 0; out && i < json_array_size(v); i++) {
        char *piece = NULL;
        if (scalar_text(json_array_get(v, i), &piece) != 0) {
            free(out);
            return STORE_ERR_NOMEM;
        }
        size_t n = strlen(piece);
        char *grown = realloc(out, len + n + 2);
        if (!grown) {
            free(piece);
            free(out);
            return STORE_ERR_NOMEM;
        }
        out = grown;
        if (i > 0) {
            out[len++] = ';';
        }
        memcpy(out + len, piece, n + 1);
        len += n;
        free(piece);
    }
    *buf = out;
    return out ? 0 : STORE_ERR_NOMEM;
}
