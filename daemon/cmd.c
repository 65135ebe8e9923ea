/* cmd.c: the dispatcher, the handlers, and the write path's store side.
 *
 * Sections, from primitives up: the table, argument parsing, the dispatcher,
 * the query handlers, the batches (NEARESTs and RADIUSes of many connections
 * run side by side, cmd_batch_run()), areas, the writes (handlers that queue,
 * the group run on the worker thread, the finish on the loop thread), then
 * the small commands.
 * Handlers validate everything before they write the first byte of an
 * answer, so an answer is either a whole OK with its records or one ERR line.
 * A NEAREST with K 1000 keeps its hits and their records on the stack (about
 * 70 KB), so queries do not allocate in text format; a write allocates one
 * cmd_write (its strings in one block).
 * Outside the index search a NEAREST is mostly this file and reply.c, and the
 * common request is cheap on purpose: the command and option names are found
 * by their first letter, counts are read without strtol(), WGS84 positions
 * skip the CRS conversion, and the records take lengths and attribute counts
 * from the catalogue instead of measuring (tests/test_commands.c compares
 * each with the plain code). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "cmd.h"
#include "geo_index.h"
#include "hours.h"
#include "proto.h"
#include "store.h"

/* ---- The table ------------------------------------------------------------ */

static const struct cmd_spec cmd_specs[] = {
#define CMD_DEF(name, min, max, handler, writes, usage, summary) \
    {#name, min, max, handler, writes, usage, summary},
#include "commands.def"
#undef CMD_DEF
};

#define CMD_COUNT (sizeof cmd_specs / sizeof cmd_specs[0])

const struct cmd_spec *cmd_table(size_t *n) {
    *n = CMD_COUNT;
    return cmd_specs;
}

/* strcasecmp(a, b) == 0 for ASCII: what the C locale's strcasecmp() compares,
 * without the call (a PING went through some thirty of them, a quarter of
 * its instructions, before the first letters were compared first). */
static bool ascii_equal_ci(const char *a, const char *b) {
    for (;; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if ((unsigned)(x - 'A') < 26u) {
            x |= 0x20;
        }
        if ((unsigned)(y - 'A') < 26u) {
            y |= 0x20;
        }
        if (x != y) {
            return false;
        }
        if (x == 0) {
            return true;
        }
    }
}

/* The rows of the commands whose names begin with each letter, built once at
 * load time: a lookup compares the name with one or two rows (three for S)
 * instead of scanning all seventeen. A name that does not begin with a letter
 * names no command, unless some row's name does not either: then (and when a
 * letter has more rows than a bucket holds) lookups scan the whole table. */
#define CMD_BUCKET_ROWS 4
static uint8_t cmd_buckets[26][CMD_BUCKET_ROWS];
static uint8_t cmd_bucket_len[26];
static bool cmd_lookup_scans;

static bool is_ascii_letter(char c) {
    return ((unsigned char)c | 0x20u) - 'a' < 26u;
}

/* The category names and their lengths, for the parser and the records. */
static const char *cmd_category_names[STORE_CAT_COUNT];
static size_t cmd_category_lens[STORE_CAT_COUNT];

static void __attribute__((constructor)) cmd_tables_build(void) {
    for (int c = 0; c < STORE_CAT_COUNT; c++) {
        cmd_category_names[c] = store_category_name(c);
        cmd_category_lens[c] = strlen(cmd_category_names[c]);
    }
    for (size_t i = 0; i < CMD_COUNT; i++) {
        const char *name = cmd_specs[i].name;
        unsigned letter = ((unsigned char)name[0] | 0x20u) - 'a';
        bool letters = true;
        for (const char *p = name; *p; p++) {
            letters = letters && is_ascii_letter(*p);
        }
        if (!letters || cmd_bucket_len[letter] == CMD_BUCKET_ROWS || i > UINT8_MAX) {
            cmd_lookup_scans = true;
            return;
        }
        cmd_buckets[letter][cmd_bucket_len[letter]++] = (uint8_t)i;
    }
}

/* ascii_equal_ci(letters, s) for a `letters` made of ASCII letters only:
 * (c | 0x20) equals (l | 0x20) for exactly the two cases of the letter l. */
static bool letters_equal_ci(const char *letters, const char *s) {
    for (; *letters; letters++, s++) {
        if (((unsigned char)*letters | 0x20u) != ((unsigned char)*s | 0x20u)) {
            return false;
        }
    }
    return *s == '\0';
}

const struct cmd_spec *cmd_lookup(const char *name) {
    unsigned letter = ((unsigned char)name[0] | 0x20u) - 'a';
    if (!cmd_lookup_scans) {
        /* Every name in the table is letters only, and letter is below 26
         * for exactly the 52 letters: a name beginning with anything else
         * names no command. */
        if (letter >= 26) {
            return NULL;
        }
        for (unsigned j = 0; j < cmd_bucket_len[letter]; j++) {
            const struct cmd_spec *spec = &cmd_specs[cmd_buckets[letter][j]];
            if (letters_equal_ci(spec->name + 1, name + 1)) {
                return spec;
            }
        }
        return NULL;
    }
    for (size_t i = 0; i < CMD_COUNT; i++) {
        if (ascii_equal_ci(cmd_specs[i].name, name)) {
            return &cmd_specs[i];
        }
    }
    return NULL;
}

void cmd_session_init(struct cmd_session *s) {
    memset(s, 0, sizeof *s);
    s->crs = GEO_CRS_WGS84;
}

/* ---- Argument parsing ------------------------------------------------------ */

/* Answers `code` with a message echoing the user's text safely. */
#define ECHO(text) reply_echo((text), echo_buf, sizeof echo_buf)

/* Parses a plain decimal number: optional sign, digits, optional fraction and
 * exponent. Hex, "inf", "nan", spaces and trailing junk are refused, which
 * strtod alone would accept. Returns true and sets *out when valid. */
static bool parse_number(const char *s, double *out) {
    return proto_parse_number(s, out);
}

/* Parses a decimal integer of digits only (an optional leading "+").
 * Returns 0 and sets *out; CMD_ERR_ARG when not an integer; CMD_ERR_RANGE
 * when it does not fit in a long or is negative (counts start at 1). */
static int parse_count(const char *s, long *out) {
    const char *p = *s == '+' || *s == '-' ? s + 1 : s;
    /* Counts of up to 18 digits are read here (below 10^18, they fit in a
     * long); longer ones by strtol(), which says when they do not fit. */
    long v = 0;
    size_t n = 0;
    for (; (unsigned)(p[n] - '0') < 10u; n++) {
        if (n < 18) {
            v = v * 10 + (p[n] - '0');
        }
    }
    if (n == 0 || p[n] != '\0') {
        return CMD_ERR_ARG;
    }
    if (*s == '-') {
        return CMD_ERR_RANGE; /* an integer, and below every count's range */
    }
    if (n <= 18) {
        *out = v;
        return 0;
    }
    errno = 0;
    long big = strtol(p, NULL, 10);
    if (errno == ERANGE) {
        return CMD_ERR_RANGE;
    }
    *out = big;
    return 0;
}

/* Parses "<lat> <lon>" given in `crs` into WGS84. Answers and returns the
 * error on failure. */
static int parse_position_in(struct cmd_call *call, enum geo_crs crs, const char *lat_s,
                             const char *lon_s, struct geo_point *wgs84) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    struct geo_point p;
    if (!parse_number(lat_s, &p.lat_deg)) {
        reply_err(call->out, CMD_ERR_ARG, "latitude '%s' is not a number", ECHO(lat_s));
        return CMD_ERR_ARG;
    }
    if (!parse_number(lon_s, &p.lon_deg)) {
        reply_err(call->out, CMD_ERR_ARG, "longitude '%s' is not a number", ECHO(lon_s));
        return CMD_ERR_ARG;
    }
    if (p.lat_deg < -90.0 || p.lat_deg > 90.0) {
        reply_err(call->out, CMD_ERR_RANGE,
                  "latitude %s is outside [-90, 90] (latitude comes first)", ECHO(lat_s));
        return CMD_ERR_RANGE;
    }
    if (p.lon_deg < -180.0 || p.lon_deg > 180.0) {
        reply_err(call->out, CMD_ERR_RANGE, "longitude %s is outside [-180, 180]",
                  ECHO(lon_s));
        return CMD_ERR_RANGE;
    }
    if (crs == GEO_CRS_WGS84) {
        /* What geo_crs_to_wgs84() returns for a finite position in range. */
        *wgs84 = p;
        return 0;
    }
    if (geo_crs_to_wgs84(crs, p, wgs84) < 0) {
        reply_err(call->out, CMD_ERR_RANGE, "position has no WGS84 equivalent in %s",
                  geo_crs_name(crs));
        return CMD_ERR_RANGE;
    }
    return 0;
}

/* parse_position_in() in the session's system. */
static int parse_position(struct cmd_call *call, const char *lat_s, const char *lon_s,
                          struct geo_point *wgs84) {
    return parse_position_in(call, call->session->crs, lat_s, lon_s, wgs84);
}

/* store_category_parse(), comparing the first bytes before calling strcmp():
 * the five names begin with five different letters. */
static int category_parse(const char *name, int *out) {
    for (int c = 0; c < STORE_CAT_COUNT; c++) {
        const char *known = cmd_category_names[c];
        if (known[0] == name[0] && strcmp(known, name) == 0) {
            *out = c;
            return 0;
        }
    }
    return -1;
}

/* Parses "<category>" or "*" into a layer mask. */
static int parse_category_mask(struct cmd_call *call, const char *name, uint32_t *mask) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    if (strcmp(name, "*") == 0) {
        *mask = (1u << STORE_CAT_COUNT) - 1;
        return 0;
    }
    int cat;
    if (category_parse(name, &cat) < 0) {
        reply_err(call->out, CMD_ERR_UNKNOWN, "unknown category '%s' (see CATEGORIES)",
                  ECHO(name));
        return CMD_ERR_UNKNOWN;
    }
    *mask = 1u << cat;
    return 0;
}

/* ---- Query options ------------------------------------------------------------ */

/* The options of NEAREST, RADIUS and INAREA after their positional arguments:
 * "K 10 MAXDIST 500 WHERE stars >= 4 OPEN now CRS gcj02". Names ignore case;
 * WHERE may repeat (its conditions are ANDed), the others come at most once. */
enum {
    OPT_K = 1,
    OPT_MAXDIST = 2,
    OPT_LIMIT = 4,
    OPT_WHERE = 8,
    OPT_OPEN = 16,
    OPT_CRS = 32,
};

static const struct {
    const char *name;
    unsigned bit;
} option_names[] = {
    {"K", OPT_K},         {"MAXDIST", OPT_MAXDIST}, {"LIMIT", OPT_LIMIT},
    {"WHERE", OPT_WHERE}, {"OPEN", OPT_OPEN},       {"CRS", OPT_CRS},
};

struct query_opts {
    unsigned seen;                            /* OPT_ bits given */
    long count;                               /* K or LIMIT */
    double max_distance_m;                    /* MAXDIST */
    struct catalog_cond conds[CMD_MAX_WHERE]; /* WHERE; texts borrowed from argv */
    size_t n_conds;
    int open_week_min;                        /* OPEN: the instant as hours_week_minute()
                                               * gives it in Shanghai time, resolved once */
    enum geo_crs crs;                         /* CRS, else the session's */
};

/* The row of option_names named `name` (ASCII case ignored), or -1. The
 * options begin with six different letters, so the first one picks the only
 * row to compare. */
static int option_row(const char *name) {
    int row;
    switch ((unsigned char)name[0] | 0x20) {
    case 'k': row = 0; break;
    case 'm': row = 1; break;
    case 'l': row = 2; break;
    case 'w': row = 3; break;
    case 'o': row = 4; break;
    case 'c': row = 5; break;
    default: return -1;
    }
    return ascii_equal_ci(option_names[row].name, name) ? row : -1;
}

static const char *const op_names[] = {"=", "!=", "<", "<=", ">", ">="};

/* Reads yes/no/true/false (ASCII case ignored). */
static bool parse_bool(const char *s, double *out) {
    if (strcasecmp(s, "yes") == 0 || strcasecmp(s, "true") == 0) {
        *out = 1.0;
        return true;
    }
    if (strcasecmp(s, "no") == 0 || strcasecmp(s, "false") == 0) {
        *out = 0.0;
        return true;
    }
    return false;
}

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d. */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Parses "now" or "YYYY-MM-DDTHH:MM" (local time, Asia/Shanghai) into the
 * minute of the Shanghai week (hours_week_minute()), what the filter checks
 * each candidate's timetable at. Returns true when valid. */
static bool parse_open_time(const char *s, int *week_min) {
    int64_t unix_s;
    if (ascii_equal_ci(s, "now")) {
        unix_s = (int64_t)time(NULL);
        *week_min = hours_week_minute(unix_s, HOURS_DEFAULT_UTC_OFFSET_MIN);
        return true;
    }
    static const char shape[] = "dddd-dd-ddTdd:dd";
    if (strlen(s) != sizeof shape - 1) {
        return false;
    }
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i]) {
            return false;
        }
    }
    int y = atoi(s), mo = atoi(s + 5), d = atoi(s + 8), h = atoi(s + 11), mi = atoi(s + 14);
    static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h > 23 || mi > 59) {
        return false;
    }
    unix_s = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 -
             (int64_t)HOURS_DEFAULT_UTC_OFFSET_MIN * 60;
    *week_min = hours_week_minute(unix_s, HOURS_DEFAULT_UTC_OFFSET_MIN);
    return true;
}

/* Parses "<field> <op> <value>" for the categories in layer_mask into *c.
 * Answers and returns the error on failure. */
static int parse_condition(struct cmd_call *call, uint32_t layer_mask, const char *field,
                           const char *op, const char *value, struct catalog_cond *c) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    const struct catalog *cat = call->env->catalog;
    unsigned types = CATALOG_TEXT;
    *c = (struct catalog_cond){.text = value};
    if (strcmp(field, "name") == 0) {
        c->key = CATALOG_KEY_NAME;
    } else if (strcmp(field, "subtype") == 0) {
        c->key = CATALOG_KEY_SUBTYPE;
    } else {
        c->key = catalog_key_find(cat, field);
        types = 0;
        for (int k = 0; k < STORE_CAT_COUNT; k++) {
            if (layer_mask & (1u << k)) {
                types |= catalog_key_types(cat, k, c->key);
            }
        }
        if (types == 0) {
            reply_err(call->out, CMD_ERR_ARG, "unknown field '%s' for %s (see CATEGORIES)",
                      ECHO(field), call->argv[1]);
            return CMD_ERR_ARG;
        }
    }
    c->op = -1;
    for (int i = 0; i < 6; i++) {
        if (strcmp(op, op_names[i]) == 0) {
            c->op = i;
        }
    }
    if (c->op < 0) {
        reply_err(call->out, CMD_ERR_ARG, "unknown operator '%s' (= != < <= > >=)", ECHO(op));
        return CMD_ERR_ARG;
    }
    c->is_num = parse_number(value, &c->num);
    if (!c->is_num) {
        c->is_bool = parse_bool(value, &c->num);
    }
    if (types == CATALOG_NUM && !c->is_num) {
        reply_err(call->out, CMD_ERR_ARG, "%s compares with numbers, not '%s'", field,
                  ECHO(value));
        return CMD_ERR_ARG;
    }
    if (types == CATALOG_BOOL && !c->is_bool) {
        reply_err(call->out, CMD_ERR_ARG, "%s is yes/no/true/false, not '%s'", field,
                  ECHO(value));
        return CMD_ERR_ARG;
    }
    if ((types & ~(unsigned)(CATALOG_BOOL | CATALOG_IDS)) == 0 && c->op != CATALOG_EQ &&
        c->op != CATALOG_NE) {
        reply_err(call->out, CMD_ERR_ARG, "%s takes only = and !=", field);
        return CMD_ERR_ARG;
    }
    return 0;
}

/* Reads argv[first..argc) as the options in `allowed`. K and LIMIT are
 * integers in 1..CMD_MAX_K, MAXDIST a number >= 0. Answers and returns the
 * error on failure. */
static int parse_query_options(struct cmd_call *call, size_t first, unsigned allowed,
                               uint32_t layer_mask, struct query_opts *o) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    o->crs = call->session->crs;
    for (size_t a = first; a < call->argc;) {
        const char *name = call->argv[a];
        unsigned bit = 0;
        int row = option_row(name);
        if (row >= 0) {
            bit = option_names[row].bit;
            name = option_names[row].name;
        }
        if (!(bit & allowed)) {
            reply_err(call->out, CMD_ERR_SYNTAX, "unknown option '%s' (usage: %s)", ECHO(name),
                      call->spec->usage);
            return CMD_ERR_SYNTAX;
        }
        size_t n_values = bit == OPT_WHERE ? 3 : 1;
        if (a + n_values >= call->argc) {
            reply_err(call->out, CMD_ERR_SYNTAX, "option '%s' has no value (usage: %s)",
                      ECHO(name), call->spec->usage);
            return CMD_ERR_SYNTAX;
        }
        if ((o->seen & bit) && bit != OPT_WHERE) {
            reply_err(call->out, CMD_ERR_SYNTAX, "option %s given twice", name);
            return CMD_ERR_SYNTAX;
        }
        o->seen |= bit;
        const char *value = call->argv[a + 1];
        if (bit == OPT_K || bit == OPT_LIMIT) {
            const char *what = bit == OPT_K ? "K" : "LIMIT";
            int ret = parse_count(value, &o->count);
            if (ret == CMD_ERR_ARG) {
                reply_err(call->out, CMD_ERR_ARG, "%s '%s' is not an integer", what,
                          ECHO(value));
                return ret;
            }
            if (ret < 0 || o->count < 1 || o->count > CMD_MAX_K) {
                reply_err(call->out, CMD_ERR_RANGE, "%s %s is outside [1, %d]", what,
                          ECHO(value), CMD_MAX_K);
                return CMD_ERR_RANGE;
            }
        } else if (bit == OPT_MAXDIST) {
            if (!parse_number(value, &o->max_distance_m)) {
                reply_err(call->out, CMD_ERR_ARG, "MAXDIST '%s' is not a number", ECHO(value));
                return CMD_ERR_ARG;
            }
            if (o->max_distance_m < 0) {
                reply_err(call->out, CMD_ERR_RANGE, "MAXDIST %s is negative", ECHO(value));
                return CMD_ERR_RANGE;
            }
        } else if (bit == OPT_WHERE) {
            if (o->n_conds == CMD_MAX_WHERE) {
                reply_err(call->out, CMD_ERR_RANGE, "more than %d WHERE conditions",
                          CMD_MAX_WHERE);
                return CMD_ERR_RANGE;
            }
            int ret = parse_condition(call, layer_mask, value, call->argv[a + 2],
                                      call->argv[a + 3], &o->conds[o->n_conds]);
            if (ret < 0) {
                return ret;
            }
            o->n_conds++;
        } else if (bit == OPT_OPEN) {
            if (!parse_open_time(value, &o->open_week_min)) {
                reply_err(call->out, CMD_ERR_ARG,
                          "OPEN '%s' is neither now nor YYYY-MM-DDTHH:MM", ECHO(value));
                return CMD_ERR_ARG;
            }
        } else if (geo_crs_parse(value, &o->crs) < 0) {
            reply_err(call->out, CMD_ERR_UNKNOWN,
                      "unknown coordinate system '%s' (wgs84, gcj02 or bd09)", ECHO(value));
            return CMD_ERR_UNKNOWN;
        }
        a += 1 + n_values;
    }
    return 0;
}

/* The filters of a query with WHERE or OPEN run inside the index search, so
 * a rejected facility never takes one of the k places. */
struct query_filter {
    const struct catalog *catalog;
    const struct query_opts *opts;
};

/* OPEN in NEAREST, RADIUS and INAREA: the index's value filter, on the timetable
 * number the index keeps with each facility (catalog_index()). It checks 40
 * - 100 candidates a NEAREST k=5 on the bench data, and reads only a bit of
 * a timetable (a dozen of them, in cache) for each: as a handle filter it
 * read each candidate's number from a table in slot order, a cache miss a
 * candidate at 10^6 facilities and more. */
struct open_filter {
    const struct catalog *catalog;
    int week_min;             /* the instant, as query_opts.open_week_min */
};

static bool open_filter_keeps(uint32_t timetable_no, const void *ctx) {
    const struct open_filter *f = ctx;
    return catalog_timetable_is_open(f->catalog, timetable_no, f->week_min);
}

/* When o has OPEN, makes it q's value filter, with *f (which must live as
 * long as the search) as its context. */
static void use_open_filter(struct geo_query *q, struct open_filter *f,
                            const struct catalog *cat, const struct query_opts *o) {
    if (o->seen & OPT_OPEN) {
        *f = (struct open_filter){.catalog = cat, .week_min = o->open_week_min};
        q->value_filter = open_filter_keeps;
        q->value_ctx = f;
    }
}

/* WHERE as the search's handle filter (OPEN, if given, is its value filter). */
static bool query_filter_where(uint32_t handle, void *ctx) {
    const struct query_filter *f = ctx;
    return catalog_matches(f->catalog, handle, f->opts->conds, f->opts->n_conds);
}

/* ---- The dispatcher ---------------------------------------------------------- */

int cmd_dispatch(const struct cmd_env *env, struct cmd_session *session, size_t argc,
                 char **argv, struct reply *out) {
    return cmd_dispatch_spec(env, session, cmd_lookup(argv[0]), argc, argv, out);
}

int cmd_dispatch_spec(const struct cmd_env *env, struct cmd_session *session,
                      const struct cmd_spec *spec, size_t argc, char **argv,
                      struct reply *out) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    int ret;
    out->format = session->format;
    if (!spec) {
        reply_err(out, CMD_ERR_UNKNOWN, "unknown command '%s' (see HELP)", ECHO(argv[0]));
        ret = CMD_ERR_UNKNOWN;
        goto done;
    }
    size_t n_args = argc - 1;
    if (n_args < (size_t)spec->min_args || n_args > (size_t)spec->max_args) {
        reply_err(out, CMD_ERR_SYNTAX, "wrong number of arguments for %s (usage: %s)",
                  spec->name, spec->usage);
        ret = CMD_ERR_SYNTAX;
        goto done;
    }
    struct cmd_call call = {.env = env, .session = session, .spec = spec,
                            .argc = argc, .argv = argv, .out = out};
    ret = spec->handler(&call);
done:
    if (env->stats) {
        env->stats->requests++;
        if (ret < 0) {
            env->stats->errors++;
        }
    }
    return ret;
}

int cmd_answer_split_error(const struct cmd_env *env, struct cmd_session *session,
                           struct reply *out) {
    out->format = session->format;
    reply_err(out, CMD_ERR_SYNTAX,
              "cannot split the request (unbalanced quote, bad escape or over %d tokens)",
              PROTO_MAX_ARGS);
    if (env->stats) {
        env->stats->requests++;
        env->stats->errors++;
    }
    return CMD_ERR_SYNTAX;
}

int cmd_execute(const struct cmd_env *env, struct cmd_session *session, char *line,
                size_t len, struct reply *out) {
    char *argv[PROTO_MAX_ARGS];
    size_t argc = 0;
    out->format = session->format;
    if (proto_split(line, len, argv, PROTO_MAX_ARGS, &argc) < 0) {
        return cmd_answer_split_error(env, session, out);
    }
    if (argc == 0) {
        return 1;
    }
    return cmd_dispatch(env, session, argc, argv, out);
}

/* ---- Query handlers ------------------------------------------------------------ */

/* Writes the record of one facility: the six fields, then its attributes as
 * key=value fields. (The subtype is not shown: records of facilities without
 * attributes keep exactly six fields, which bench/loadgen.c checks.)
 * `category` is the name of f->category and category_len its length. */
static void answer_one(const struct catalog *cat, struct reply *out, uint32_t slot,
                       const struct catalog_facility *f, const char *category,
                       size_t category_len, double distance_m, bool has_e6) {
    struct catalog_attr ca[CATALOG_MAX_ATTRS];
    struct reply_attr ra[CATALOG_MAX_ATTRS];
    size_t n = 0;
    if (f->n_attrs > 0) {
        size_t n_attrs = catalog_attrs(cat, slot, ca, CATALOG_MAX_ATTRS);
        for (size_t i = 0; i < n_attrs && i < CATALOG_MAX_ATTRS; i++) {
            /* enum catalog_type and enum reply_attr_type share their values. */
            ra[n++] = (struct reply_attr){.key = ca[i].key, .type = ca[i].type,
                                          .num = ca[i].num, .text = ca[i].text};
        }
    }
    struct reply_facility rf = {.id = f->id, .category = category, .name = f->name,
                                .where = f->where, .distance_m = distance_m,
                                .has_e6 = has_e6, .lat_e6 = f->lat_e6, .lon_e6 = f->lon_e6,
                                .plain_text = f->plain_text, /* category names are plain */
                                .attrs = n > 0 ? ra : NULL, .n_attrs = n,
                                .id_len = f->id_len, .category_len = category_len,
                                .name_len = f->name_len};
    reply_facility(out, &rf);
}

/* Converts f's WGS84 position to `crs` (not WGS84) and puts the result's
 * microdegrees in f->lat_e6 and f->lon_e6, so that the text format prints
 * integers instead of calling printf (half the cost of a GCJ-02 request):
 * f->where becomes exactly lat_e6 / 1e6, lon_e6 / 1e6, as reply_facility()'s
 * has_e6 requires. (JSON, which printed round(where * 1e6) of the unrounded
 * position, now prints these digits too; the two part only when where * 1e6
 * lies within about 1e-8 of a half: none in 2 * 10^7 coordinates of random
 * GCJ-02 positions.) *has_e6 is false, and f->where the unrounded result, in
 * the one case no integer prints: a negative coordinate above -0.0000005.
 * Returns geo_crs_from_wgs84()'s result. */
static int convert_facility(enum geo_crs crs, struct catalog_facility *f, bool *has_e6) {
    int ret = geo_crs_from_wgs84(crs, f->where, &f->where);
    *has_e6 = ret == 0 && geo_crs_deg_to_e6(f->where.lat_deg, &f->lat_e6) &&
              geo_crs_deg_to_e6(f->where.lon_deg, &f->lon_e6);
    if (*has_e6) {
        f->where = (struct geo_point){f->lat_e6 / 1e6, f->lon_e6 / 1e6};
    }
    return ret;
}

/* Answers the hits as facility records, positions in `crs`. The records are
 * read (and, outside WGS84, converted) before the first byte is written, so
 * a failure can still be a lone ERR line; the slots are all prefetched first,
 * then each record's strings as its slot is read, so that the cache misses
 * overlap. */
static int answer_hits(const struct catalog *cat, enum geo_crs crs, struct reply *out,
                       const struct geo_hit *hits, size_t n) {
    struct catalog_facility f[CMD_MAX_K];
    bool has_e6[CMD_MAX_K];
    for (size_t i = 0; i < n; i++) {
        catalog_prefetch(cat, hits[i].handle);
    }
    for (size_t i = 0; i < n; i++) {
        has_e6[i] = true;
        if (catalog_get(cat, hits[i].handle, &f[i]) < 0 ||
            (crs != GEO_CRS_WGS84 && convert_facility(crs, &f[i], &has_e6[i]) < 0)) {
            /* (In WGS84 the position is what geo_crs_from_wgs84() would
             * return: the catalogue holds only positions that passed
             * geo_point_is_valid() when stored.) */
            reply_err(out, CMD_ERR_INTERNAL, "cannot render facility handle %u",
                      (unsigned)hits[i].handle);
            return CMD_ERR_INTERNAL;
        }
        __builtin_prefetch(f[i].id);
        __builtin_prefetch(f[i].name);
    }
    reply_set_crs(out, geo_crs_name(crs));
    reply_ok(out, n);
    for (size_t i = 0; i < n; i++) {
        int c = f[i].category; /* the catalogue holds only valid ones */
        bool known = c >= 0 && c < STORE_CAT_COUNT;
        answer_one(cat, out, hits[i].handle, &f[i], known ? cmd_category_names[c] : "?",
                   known ? cmd_category_lens[c] : 1, hits[i].distance_m, has_e6[i]);
    }
    return 0;
}

static int reply_hits(struct cmd_call *call, const struct geo_hit *hits, size_t n) {
    return answer_hits(call->env->catalog, call->session->crs, call->out, hits, n);
}

/* Answers a search that returned `rc` and n hits. */
static int answer_search(const struct catalog *cat, enum geo_crs crs, struct reply *out, int rc,
                         const struct geo_hit *hits, size_t n) {
    if (rc < 0) {
        reply_err(out, CMD_ERR_INTERNAL, "index query failed: %s", geo_strerror(rc));
        return CMD_ERR_INTERNAL;
    }
    return answer_hits(cat, crs, out, hits, n);
}

/* ---- Batches ------------------------------------------------------------------
 *
 * The server reads the requests of every connection that polled readable
 * before it answers any (srv.c), so at 50 connections a loop iteration holds
 * 20 - 50 NEARESTs. Run one after another, each pays for its cache misses in
 * full: at 10^7 facilities a NEAREST took 4.9 us of user time where the same
 * query repeated (its memory in cache) took 1.8. In a batch the searches take
 * turns node by node (geo_index_nearest_batch()), and the slots, then the
 * ids and names, of all the batch's hits are asked for before the first
 * record is written. */

struct batch_query {
    struct reply *out;
    enum geo_crs crs;             /* the answer's */
    struct open_filter open;      /* OPEN's value filter, if the query has OPEN */
};

struct cmd_batch {
    size_t n;
    struct geo_batch_item items[CMD_BATCH_MAX];
    struct batch_query queries[CMD_BATCH_MAX];
    struct geo_hit hits[CMD_BATCH_MAX][CMD_BATCH_K];
};

struct cmd_batch *cmd_batch_new(void) {
    struct cmd_batch *b = malloc(sizeof *b);
    if (b != NULL) {
        b->n = 0;
    }
    return b;
}

void cmd_batch_free(struct cmd_batch *b) {
    free(b);
}

size_t cmd_batch_count(const struct cmd_batch *b) {
    return b->n;
}

/* Leaves q (with OPEN's value filter, if o has OPEN) to wait in b; b has
 * room, q->k is at most CMD_BATCH_K and o has no WHERE. */
static int batch_add(struct cmd_batch *b, const struct catalog *cat, struct reply *out,
                     const struct geo_query *q, const struct query_opts *o) {
    size_t i = b->n++;
    struct batch_query *bq = &b->queries[i];
    bq->out = out;
    bq->crs = o->crs;
    struct geo_batch_item *it = &b->items[i];
    it->q = *q;
    it->out = b->hits[i];
    use_open_filter(&it->q, &bq->open, cat, o);
    return CMD_BATCHED;
}

void cmd_batch_run(const struct cmd_env *env, struct cmd_batch *b, int *rcs) {
    const struct catalog *cat = env->catalog;
    if (env->stats && b->n > 0) {
        env->stats->batches++;
        env->stats->batched_queries += b->n;
    }
    geo_index_nearest_batch(catalog_index(cat), b->items, b->n);
    for (size_t i = 0; i < b->n; i++) {
        for (size_t j = 0; j < b->items[i].n_out; j++) {
            catalog_prefetch(cat, b->hits[i][j].handle);
        }
    }
    for (size_t i = 0; i < b->n; i++) {
        for (size_t j = 0; j < b->items[i].n_out; j++) {
            catalog_prefetch_text(cat, b->hits[i][j].handle);
        }
    }
    for (size_t i = 0; i < b->n; i++) {
        const struct geo_batch_item *it = &b->items[i];
        int ret = answer_search(cat, b->queries[i].crs, b->queries[i].out, it->rc,
                                it->out, it->n_out);
        if (ret < 0 && env->stats) {
            env->stats->errors++;
        }
        if (rcs) {
            rcs[i] = ret;
        }
    }
    b->n = 0;
}

/* Runs q with the filters of the options, if any (WHERE as the search's
 * handle filter, OPEN as its value filter), and answers in o->crs; or leaves
 * it to wait in the environment's batch, if it may. */
static int run_query(struct cmd_call *call, struct geo_query *q, const struct query_opts *o) {
    struct cmd_batch *b = call->env->batch;
    if (b != NULL && b->n < CMD_BATCH_MAX && q->k <= CMD_BATCH_K && o->n_conds == 0) {
        return batch_add(b, call->env->catalog, call->out, q, o);
    }
    struct geo_hit hits[CMD_MAX_K];
    size_t n = 0;
    struct query_filter filter = {.catalog = call->env->catalog, .opts = o};
    struct open_filter open;
    if (o->n_conds > 0) {
        q->filter = query_filter_where;
        q->filter_ctx = &filter;
    }
    use_open_filter(q, &open, call->env->catalog, o);
    int ret = geo_index_nearest(catalog_index(call->env->catalog), q, hits, &n);
    return answer_search(call->env->catalog, o->crs, call->out, ret, hits, n);
}

int cmd_handle_nearest(struct cmd_call *call) {
    struct geo_query q = {.k = CMD_DEFAULT_K, .max_distance_m = INFINITY};
    /* Not `= {0}`: clearing the WHERE conditions cost 50 instructions a
     * request. The fields are read only once `seen` or n_conds says they
     * were set. */
    struct query_opts o;
    o.seen = 0;
    o.n_conds = 0;
    int ret = parse_category_mask(call, call->argv[1], &q.layer_mask);
    if (ret == 0) {
        ret = parse_query_options(call, 4, OPT_K | OPT_MAXDIST | OPT_WHERE | OPT_OPEN | OPT_CRS,
                                  q.layer_mask, &o);
    }
    if (ret == 0) {
        ret = parse_position_in(call, o.crs, call->argv[2], call->argv[3], &q.from);
    }
    if (ret < 0) {
        return ret;
    }
    if (o.seen & OPT_K) {
        q.k = (size_t)o.count;
    }
    if (o.seen & OPT_MAXDIST) {
        q.max_distance_m = o.max_distance_m;
    }
    return run_query(call, &q, &o);
}

int cmd_handle_radius(struct cmd_call *call) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    struct geo_query q = {.k = CMD_DEFAULT_LIMIT};
    struct query_opts o = {0};
    int ret = parse_category_mask(call, call->argv[1], &q.layer_mask);
    if (ret == 0) {
        ret = parse_query_options(call, 5, OPT_LIMIT | OPT_WHERE | OPT_OPEN | OPT_CRS,
                                  q.layer_mask, &o);
    }
    if (ret == 0) {
        ret = parse_position_in(call, o.crs, call->argv[2], call->argv[3], &q.from);
    }
    if (ret < 0) {
        return ret;
    }
    if (!parse_number(call->argv[4], &q.max_distance_m)) {
        reply_err(call->out, CMD_ERR_ARG, "radius '%s' is not a number", ECHO(call->argv[4]));
        return CMD_ERR_ARG;
    }
    if (q.max_distance_m < 0) {
        reply_err(call->out, CMD_ERR_RANGE, "radius %s is negative", ECHO(call->argv[4]));
        return CMD_ERR_RANGE;
    }
    if (o.seen & OPT_LIMIT) {
        q.k = (size_t)o.count;
    }
    return run_query(call, &q, &o);
}

/* ---- Areas ------------------------------------------------------------------------ */

/* INAREA's filter: the query's WHERE, then the polygon (OPEN is the search's
 * value filter, as in NEAREST: the closed never reach the polygon test). */
struct inarea_filter {
    struct query_filter base;
    struct geo_areas *set;
    uint32_t area;
    bool geos_failed;        /* a GEOS predicate raised: answer ERR INTERNAL */
};

static bool inarea_keeps(uint32_t handle, void *ctx) {
    struct inarea_filter *f = ctx;
    struct catalog_facility cf;
    bool inside = false;
    if ((f->base.opts->n_conds > 0 && !query_filter_where(handle, &f->base)) ||
        catalog_get(f->base.catalog, handle, &cf) < 0) {
        return false;
    }
    if (geo_areas_contains(f->set, f->area, cf.where, &inside) < 0) {
        f->geos_failed = true;
        return false;
    }
    return inside;
}

/* Finds the area named by argv[i]; answers ERR NOTFOUND when there is none. */
static int find_area(struct cmd_call *call, const char *id, uint32_t *handle) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    if (!catalog_areas(call->env->catalog) ||
        catalog_area_find(call->env->catalog, id, handle) < 0) {
        reply_err(call->out, CMD_ERR_NOTFOUND, "no area '%s' (see AREAS)", ECHO(id));
        return CMD_ERR_NOTFOUND;
    }
    return 0;
}

int cmd_handle_inarea(struct cmd_call *call) {
    struct catalog *cat = call->env->catalog;
    struct geo_query q = {.k = CMD_MAX_K};
    struct query_opts o = {0};
    uint32_t area = 0;
    int ret = parse_category_mask(call, call->argv[1], &q.layer_mask);
    if (ret == 0) {
        ret = parse_query_options(call, 3, OPT_WHERE | OPT_OPEN, q.layer_mask, &o);
    }
    if (ret == 0) {
        ret = find_area(call, call->argv[2], &area);
    }
    if (ret < 0) {
        return ret;
    }
    struct geo_area_bounds b;
    if (geo_areas_bounds(catalog_areas(cat), area, &b) < 0) {
        reply_err(call->out, CMD_ERR_INTERNAL, "area without bounds");
        return CMD_ERR_INTERNAL;
    }
    /* Every point of the area is within radius_m of the centre: a radius query
     * around it, filtered by the polygon, sees exactly the facilities inside. */
    q.from = b.centre;
    q.max_distance_m = b.radius_m;
    struct inarea_filter filter = {.base = {.catalog = cat, .opts = &o},
                                   .set = catalog_areas(cat), .area = area};
    q.filter = inarea_keeps;
    q.filter_ctx = &filter;
    struct open_filter open;
    use_open_filter(&q, &open, cat, &o);
    struct geo_hit hits[CMD_MAX_K];
    size_t n = 0;
    ret = geo_index_nearest(catalog_index(cat), &q, hits, &n);
    if (ret < 0 || filter.geos_failed) {
        reply_err(call->out, CMD_ERR_INTERNAL, "area query failed: %s",
                  ret < 0 ? geo_strerror(ret) : geo_areas_last_error(catalog_areas(cat)));
        return CMD_ERR_INTERNAL;
    }
    return answer_hits(cat, call->session->crs, call->out, hits, n);
}

/* Parses an optional area kind; answers ERR UNKNOWN for an unknown one. */
static int parse_area_kind(struct cmd_call *call, const char *name, int *kind) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    if (store_area_kind_parse(name, kind) < 0) {
        reply_err(call->out, CMD_ERR_UNKNOWN,
                  "unknown area kind '%s' (district, street, community, catchment or "
                  "service_area)", ECHO(name));
        return CMD_ERR_UNKNOWN;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends area `handle` as a record (reply_area()): in geojson with its polygon
 * in `crs`. Answers ERR INTERNAL when GEOS cannot write the polygon. */
static int reply_one_area(struct cmd_call *call, uint32_t handle, enum geo_crs crs,
                          const char *served_by) {
    struct catalog *cat = call->env->catalog;
    struct catalog_area ar;
    if (catalog_area_get(cat, handle, &ar) < 0) {
        reply_err(call->out, CMD_ERR_INTERNAL, "area %u vanished", (unsigned)handle);
        return CMD_ERR_INTERNAL;
    }
    char *geometry = NULL;
    const char *written = call->out->format == REPLY_GEOJSON
                              ? catalog_area_geojson(cat, handle, (int)crs)
                              : NULL;
    if (call->out->format == REPLY_GEOJSON && !written) {
        int ret = geo_areas_geojson(catalog_areas(cat), handle, crs, &geometry);
        if (ret < 0) {
            reply_err(call->out, CMD_ERR_INTERNAL, "cannot write area '%s': %s", ar.id,
                      ret == GEO_ERR_GEOS ? geo_areas_last_error(catalog_areas(cat))
                                          : geo_strerror(ret));
            return CMD_ERR_INTERNAL;
        }
    }
    struct reply_area ra = {.id = ar.id, .kind = store_area_kind_name(ar.kind), .name = ar.name,
                            .parent = ar.parent, .served_by = served_by,
                            .geometry = written ? written : geometry,
                            .geometry_dumped = written != NULL};
    reply_area(call->out, &ra);
    free(geometry);
    return 0;
}

#define CMD_MAX_SERVES_AREAS 64   /* areas containing one point that SERVES lists */
#define CMD_MAX_SERVED_BY 64      /* facilities listed as serving one area */

int cmd_handle_serves(struct cmd_call *call) {
    struct catalog *cat = call->env->catalog;
    struct query_opts o = {0};
    size_t a = 3;
    int kind = -1;
    int ret = 0;
    if (a < call->argc && strcasecmp(call->argv[a], "CRS") != 0) {
        ret = parse_area_kind(call, call->argv[a], &kind);
        a++;
    }
    if (ret == 0) {
        ret = parse_query_options(call, a, OPT_CRS, 0, &o);
    }
    struct geo_point p;
    if (ret == 0) {
        ret = parse_position_in(call, o.crs, call->argv[1], call->argv[2], &p);
    }
    if (ret < 0) {
        return ret;
    }
    uint32_t found[CMD_MAX_SERVES_AREAS];
    size_t n_total = 0;
    struct geo_areas *set = catalog_areas(cat);
    if (set && catalog_area_count(cat) > 0) {
        uint32_t mask = kind >= 0 ? 1u << kind : (1u << STORE_AREA_KIND_COUNT) - 1;
        ret = geo_areas_containing(set, p, mask, found, CMD_MAX_SERVES_AREAS, &n_total);
        if (ret < 0) {
            reply_err(call->out, CMD_ERR_INTERNAL, "area query failed: %s", geo_strerror(ret));
            return CMD_ERR_INTERNAL;
        }
    }
    size_t n = n_total < CMD_MAX_SERVES_AREAS ? n_total : CMD_MAX_SERVES_AREAS;
    if (call->out->format == REPLY_GEOJSON) {
        reply_set_crs(call->out, geo_crs_name(o.crs));
    }
    reply_ok(call->out, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t slots[CMD_MAX_SERVED_BY];
        const char *ids[CMD_MAX_SERVED_BY];
        size_t n_links = catalog_area_links(cat, found[i], slots, CMD_MAX_SERVED_BY);
        size_t n_ids = 0;
        for (size_t j = 0; j < n_links && j < CMD_MAX_SERVED_BY; j++) {
            struct catalog_facility f;
            if (catalog_get(cat, slots[j], &f) == 0) {
                ids[n_ids++] = f.id;
            }
        }
        qsort(ids, n_ids, sizeof ids[0], cmp_str);
        char served_by[CMD_MAX_SERVED_BY * (STORE_ID_MAX_BYTES + 1) + 1];
        size_t len = 0;
        served_by[0] = '\0';
        for (size_t j = 0; j < n_ids; j++) {
            len += (size_t)snprintf(served_by + len, sizeof served_by - len, "%s%s",
                                    j ? ";" : "", ids[j]);
        }
        ret = reply_one_area(call, found[i], o.crs, served_by);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int cmd_handle_areas(struct cmd_call *call) {
    struct catalog *cat = call->env->catalog;
    int kind = -1;
    if (call->argc == 2) {
        int ret = parse_area_kind(call, call->argv[1], &kind);
        if (ret < 0) {
            return ret;
        }
    }
    size_t n = 0;
    struct catalog_area ar;
    for (uint32_t h = 0; h < catalog_area_count(cat); h++) {
        n += catalog_area_get(cat, h, &ar) == 0 && (kind < 0 || ar.kind == kind);
    }
    if (call->out->format == REPLY_GEOJSON) {
        reply_set_crs(call->out, geo_crs_name(call->session->crs));
    }
    reply_ok(call->out, n);
    for (uint32_t h = 0; h < catalog_area_count(cat); h++) {
        if (catalog_area_get(cat, h, &ar) == 0 && (kind < 0 || ar.kind == kind)) {
            int ret = reply_one_area(call, h, call->session->crs, NULL);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

int cmd_handle_get(struct cmd_call *call) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    uint32_t slot;
    if (catalog_find(call->env->catalog, call->argv[1], &slot) < 0) {
        reply_err(call->out, CMD_ERR_NOTFOUND, "no facility '%s'", ECHO(call->argv[1]));
        return CMD_ERR_NOTFOUND;
    }
    struct geo_hit hit = {.handle = slot, .distance_m = NAN};
    return reply_hits(call, &hit, 1);
}

/* ---- Writes ------------------------------------------------------------------------ */

void cmd_write_free(struct cmd_write *w) {
    if (w) {
        free(w->text);
        free(w);
    }
}

/* Returns a write holding a deep copy of *src (NULL strings stay NULL), or
 * NULL when out of memory. */
static struct cmd_write *write_new(enum cmd_write_kind kind, const struct store_facility *src) {
    struct cmd_write *w = calloc(1, sizeof *w);
    if (!w) {
        return NULL;
    }
    w->kind = kind;
    w->rec = *src;
    const char **fields[] = {&w->rec.id, &w->rec.subtype, &w->rec.name, &w->rec.address,
                             &w->rec.phone, &w->rec.hours, &w->rec.attrs_json};
    size_t n = sizeof fields / sizeof fields[0];
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += *fields[i] ? strlen(*fields[i]) + 1 : 0;
    }
    w->text = malloc(total + 1);
    if (!w->text) {
        free(w);
        return NULL;
    }
    char *p = w->text;
    for (size_t i = 0; i < n; i++) {
        if (*fields[i]) {
            size_t len = strlen(*fields[i]) + 1;
            memcpy(p, *fields[i], len);
            *fields[i] = p;
            p += len;
        }
    }
    return w;
}

/* ---- PUT and SET fields ----------------------------------------------------- */

/* The facility fields that are not attributes, as PUT and SET name them. */
enum core_field { F_NAME, F_SUBTYPE, F_ADDRESS, F_PHONE, F_HOURS, F_CATEGORY, F_LAT, F_LON,
                  F_N };
static const char *const core_field_names[F_N] = {"name",  "subtype",  "address", "phone",
                                                  "hours", "category", "lat",     "lon"};

/* The parsed "<field>=<value>" arguments of a PUT or SET. */
struct field_args {
    const char *core[F_N];        /* NULL when not given */
    json_t *attrs;                /* attribute -> value; JSON null: remove (SET) */
};

/* Returns the JSON value of attribute `key` given as `text` for a facility of
 * `category`: typed as the catalogue has seen the attribute in that category
 * (numbers, yes/no/true/false, ';'-separated id lists, text), otherwise a
 * number when it reads as one, true/false, or text. "" is JSON null. Sets
 * *why and returns NULL when the text does not fit the attribute's type. */
static json_t *attr_value(const struct catalog *cat, int category, const char *key,
                          const char *text, const char **why) {
    if (!text[0]) {
        return json_null();
    }
    unsigned types = catalog_key_types(cat, category, catalog_key_find(cat, key));
    double num;
    if (types == CATALOG_IDS || (types == 0 && strchr(text, ';'))) {
        json_t *arr = json_array();
        for (const char *p = text; arr && *p;) {
            const char *end = strchr(p, ';');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            json_array_append_new(arr, json_stringn(p, len));
            p = end ? end + 1 : p + len;
        }
        if (types == 0 && json_array_size(arr) < 2) {
            json_decref(arr);
            return json_string(text);
        }
        return arr;
    }
    if (types == CATALOG_BOOL || (types == 0 && parse_bool(text, &num) &&
                                  (strcasecmp(text, "true") == 0 ||
                                   strcasecmp(text, "false") == 0))) {
        if (!parse_bool(text, &num)) {
            *why = "expected yes, no, true or false";
            return NULL;
        }
        return json_boolean(num != 0.0);
    }
    if (types == CATALOG_NUM || (types == 0 && parse_number(text, &num))) {
        if (!parse_number(text, &num)) {
            *why = "expected a number";
            return NULL;
        }
        bool whole = !strpbrk(text, ".eE") && fabs(num) < 9e15;
        return whole ? json_integer((json_int_t)num) : json_real(num);
    }
    return json_string(text);
}

/* Parses argv[first..argc) as "<field>=<value>" for a facility of
 * `category` into *fa (the caller frees fa->attrs). `put` refuses the
 * fields PUT takes by position. Answers and returns the error on failure. */
static int parse_fields(struct cmd_call *call, size_t first, int category, bool put,
                        struct field_args *fa) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    memset(fa, 0, sizeof *fa);
    fa->attrs = json_object();
    if (!fa->attrs) {
        reply_err(call->out, CMD_ERR_INTERNAL, "out of memory");
        return CMD_ERR_INTERNAL;
    }
    for (size_t a = first; a < call->argc; a++) {
        char *arg = call->argv[a];
        char *eq = strchr(arg, '=');
        if (!eq || eq == arg) {
            reply_err(call->out, CMD_ERR_ARG, "'%s' is not <field>=<value> (usage: %s)",
                      ECHO(arg), call->spec->usage);
            return CMD_ERR_ARG;
        }
        *eq = '\0';
        const char *key = arg, *value = eq + 1;
        int core = -1;
        for (int i = 0; i < F_N; i++) {
            if (strcmp(key, core_field_names[i]) == 0 ||
                (i == F_HOURS && strcmp(key, "opening_hours") == 0)) {
                core = i;
            }
        }
        if (strcmp(key, "id") == 0 || (put && core >= F_CATEGORY)) {
            reply_err(call->out, CMD_ERR_ARG, "%s is given by position (usage: %s)", ECHO(key),
                      call->spec->usage);
            return CMD_ERR_ARG;
        }
        if ((core >= 0 && fa->core[core]) || json_object_get(fa->attrs, key)) {
            reply_err(call->out, CMD_ERR_ARG, "field %s given twice", ECHO(key));
            return CMD_ERR_ARG;
        }
        if (core >= 0) {
            fa->core[core] = value;
            continue;
        }
        const char *why = NULL;
        json_t *v = attr_value(call->env->catalog, category, key, value, &why);
        if (!v) {
            reply_err(call->out, CMD_ERR_ARG, "%s: %s, not '%s'", ECHO(key),
                      why ? why : "out of memory", value);
            return CMD_ERR_ARG;
        }
        if (put && json_is_null(v)) {
            json_decref(v); /* PUT: an empty attribute is an absent one */
            continue;
        }
        json_object_set_new(fa->attrs, key, v);
    }
    return 0;
}

/* Queues a validated write; answers ERR INTERNAL when out of memory. */
static int queue_write(struct cmd_call *call, enum cmd_write_kind kind,
                       const struct store_facility *f) {
    struct cmd_write *w = write_new(kind, f);
    if (!w) {
        reply_err(call->out, CMD_ERR_INTERNAL, "out of memory");
        return CMD_ERR_INTERNAL;
    }
    call->session->pending = w;
    return CMD_QUEUED;
}

int cmd_handle_set(struct cmd_call *call) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    struct field_args fa;
    char *patch = NULL;
    int category = -1;
    uint32_t slot;
    struct catalog_facility cf;
    if (catalog_find(call->env->catalog, call->argv[1], &slot) == 0 &&
        catalog_get(call->env->catalog, slot, &cf) == 0) {
        category = cf.category; /* for typing attributes; the store has the last word */
    }
    for (size_t a = 2; a < call->argc; a++) {
        if (strncmp(call->argv[a], "category=", 9) == 0) {
            store_category_parse(call->argv[a] + 9, &category); /* typed as the new one */
        }
    }
    int ret = parse_fields(call, 2, category, false, &fa);
    struct store_facility f = {.id = call->argv[1], .name = fa.core[F_NAME],
                               .subtype = fa.core[F_SUBTYPE], .address = fa.core[F_ADDRESS],
                               .phone = fa.core[F_PHONE], .hours = fa.core[F_HOURS],
                               .category = -1, .where = {NAN, NAN}};
    if (ret < 0) {
        goto done;
    }
    if (fa.core[F_CATEGORY] && store_category_parse(fa.core[F_CATEGORY], &f.category) < 0) {
        reply_err(call->out, CMD_ERR_UNKNOWN, "unknown category '%s' (see CATEGORIES)",
                  ECHO(fa.core[F_CATEGORY]));
        ret = CMD_ERR_UNKNOWN;
        goto done;
    }
    if (!fa.core[F_LAT] != !fa.core[F_LON]) {
        reply_err(call->out, CMD_ERR_ARG, "lat and lon are set together");
        ret = CMD_ERR_ARG;
        goto done;
    }
    if (fa.core[F_LAT]) {
        ret = parse_position(call, fa.core[F_LAT], fa.core[F_LON], &f.where);
        if (ret < 0) {
            goto done;
        }
    }
    if (json_object_size(fa.attrs) > 0) {
        patch = json_dumps(fa.attrs, JSON_COMPACT);
        if (!patch) {
            reply_err(call->out, CMD_ERR_INTERNAL, "out of memory");
            ret = CMD_ERR_INTERNAL;
            goto done;
        }
        f.attrs_json = patch; /* a patch: null members remove attributes */
    }
    ret = queue_write(call, CMD_WRITE_SET, &f);
done:
    free(patch);
    json_decref(fa.attrs);
    return ret;
}

/* store_facility_get() callback of SET: replaces the write's changes with
 * the whole new record, the stored one with the changes applied. */
static int set_merge(const struct store_facility *old, void *ctx) {
    struct cmd_write *w = ctx;
    struct store_facility merged = *old;
    const char **mine[] = {&w->rec.name, &w->rec.subtype, &w->rec.address, &w->rec.phone,
                           &w->rec.hours};
    const char **theirs[] = {&merged.name, &merged.subtype, &merged.address, &merged.phone,
                             &merged.hours};
    for (int i = 0; i < 5; i++) {
        if (*mine[i]) {
            *theirs[i] = *mine[i];
        }
    }
    if (w->rec.category >= 0) {
        merged.category = w->rec.category;
    }
    if (!isnan(w->rec.where.lat_deg)) {
        merged.where = w->rec.where;
    }
    char *attrs_text = NULL;
    if (w->rec.attrs_json) {
        json_t *attrs = json_loads(old->attrs_json ? old->attrs_json : "{}", 0, NULL);
        json_t *patch = json_loads(w->rec.attrs_json, 0, NULL);
        if (!json_is_object(attrs)) {
            json_decref(attrs);
            attrs = json_object();
        }
        const char *key;
        json_t *v;
        json_object_foreach(patch, key, v) {
            if (json_is_null(v)) {
                json_object_del(attrs, key);
            } else {
                json_object_set(attrs, key, v);
            }
        }
        attrs_text = attrs && patch ? json_dumps(attrs, JSON_COMPACT) : NULL;
        json_decref(attrs);
        json_decref(patch);
        if (!attrs_text) {
            return STORE_ERR_NOMEM;
        }
        merged.attrs_json = attrs_text;
    }
    merged.updated_unix = (int64_t)time(NULL);
    struct cmd_write *copy = write_new(CMD_WRITE_SET, &merged);
    free(attrs_text);
    if (!copy) {
        return STORE_ERR_NOMEM;
    }
    free(w->text); /* the changes now live in the copy */
    w->text = copy->text;
    w->rec = copy->rec;
    free(copy);
    return 0;
}

int cmd_handle_put(struct cmd_call *call) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    struct store_facility f = {0};
    struct field_args fa = {0};
    char *attrs = NULL;
    int ret = 0;
    if (store_category_parse(call->argv[2], &f.category) < 0) {
        reply_err(call->out, CMD_ERR_UNKNOWN, "unknown category '%s' (see CATEGORIES)",
                  ECHO(call->argv[2]));
        return CMD_ERR_UNKNOWN;
    }
    ret = parse_position(call, call->argv[3], call->argv[4], &f.where);
    if (ret == 0) {
        ret = parse_fields(call, 5, f.category, true, &fa);
    }
    if (ret < 0) {
        goto done;
    }
    attrs = json_dumps(fa.attrs, JSON_COMPACT);
    if (!attrs) {
        reply_err(call->out, CMD_ERR_INTERNAL, "out of memory");
        ret = CMD_ERR_INTERNAL;
        goto done;
    }
    f.id = call->argv[1];
    f.name = fa.core[F_NAME] ? fa.core[F_NAME] : "";
    f.subtype = fa.core[F_SUBTYPE] ? fa.core[F_SUBTYPE] : "";
    f.address = fa.core[F_ADDRESS] ? fa.core[F_ADDRESS] : "";
    f.phone = fa.core[F_PHONE] ? fa.core[F_PHONE] : "";
    f.hours = fa.core[F_HOURS] ? fa.core[F_HOURS] : "";
    f.attrs_json = attrs;
    f.updated_unix = (int64_t)time(NULL);
    char why[256] = "";
    if (store_facility_check(&f, why, sizeof why) < 0) {
        reply_err(call->out, CMD_ERR_ARG, "%s", why);
        ret = CMD_ERR_ARG;
        goto done;
    }
    ret = queue_write(call, CMD_WRITE_PUT, &f);
done:
    free(attrs);
    json_decref(fa.attrs);
    return ret;
}

int cmd_handle_del(struct cmd_call *call) {
    struct store_facility f = {.id = call->argv[1]};
    return queue_write(call, CMD_WRITE_DEL, &f);
}

int cmd_writes_run(struct store *st, struct cmd_write *list) {
    int ret = store_batch_begin(st);
    if (ret == 0) {
        for (struct cmd_write *w = list; w; w = w->next) {
            if (w->kind == CMD_WRITE_SET) {
                /* Read, merge and write in the same transaction. */
                w->result = store_facility_get(st, w->rec.id, set_merge, w);
                if (w->result == 0) {
                    w->result = store_facility_put(st, &w->rec);
                }
            } else {
                w->result = w->kind == CMD_WRITE_PUT ? store_facility_put(st, &w->rec)
                                                     : store_facility_delete(st, w->rec.id);
            }
            if (w->result != 0) {
                snprintf(w->message, sizeof w->message, "%s", store_errmsg(st));
            }
        }
        ret = store_batch_commit(st);
    }
    if (ret != 0) {
        /* Nothing of the group is durable: every write fails with the reason. */
        for (struct cmd_write *w = list; w; w = w->next) {
            if (w->result == 0 || w->result == STORE_ERR_IO) {
                w->result = ret;
                snprintf(w->message, sizeof w->message, "%s", store_errmsg(st));
            }
        }
    }
    return ret;
}

/* The one place where store errors become wire errors. */
static int wire_code_of_store(int store_err) {
    switch (store_err) {
    case STORE_ERR_ARG:
        return CMD_ERR_ARG;
    case STORE_ERR_NOTFOUND:
        return CMD_ERR_NOTFOUND;
    case STORE_ERR_BUSY:
        return CMD_ERR_BUSY;
    default:
        return CMD_ERR_INTERNAL;
    }
}

void cmd_write_finish(const struct cmd_env *env, const struct cmd_session *session,
                      const struct cmd_write *w, struct reply *out) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    int code = 0;
    if (w->result == 0) {
        if (w->kind != CMD_WRITE_DEL) {
            if (catalog_put(env->catalog, &w->rec) < 0) {
                code = CMD_ERR_INTERNAL;
            }
        } else {
            catalog_remove(env->catalog, w->rec.id); /* absent already: nothing to do */
        }
    } else {
        code = wire_code_of_store(w->result);
    }
    if (env->stats) {
        env->stats->writes++;
        if (code < 0) {
            env->stats->errors++;
        }
    }
    if (!out) {
        return;
    }
    out->format = session->format;
    if (code == CMD_ERR_INTERNAL && w->result == 0) {
        reply_err(out, code, "stored, but the catalogue is out of memory; restart the daemon");
    } else if (code == CMD_ERR_NOTFOUND) {
        reply_err(out, code, "no facility '%s'", ECHO(w->rec.id));
    } else if (code == CMD_ERR_ARG) {
        reply_err(out, code, "%s", w->message); /* "field: reason" */
    } else if (code < 0) {
        reply_err(out, code, "%s: %s", store_strerror(w->result), w->message);
    } else if (w->kind == CMD_WRITE_DEL) {
        reply_ok(out, 0);
    } else {
        struct geo_hit hit = {.distance_m = NAN};
        if (catalog_find(env->catalog, w->rec.id, &hit.handle) < 0) {
            reply_err(out, CMD_ERR_INTERNAL, "stored, but not found in the catalogue");
            return;
        }
        answer_hits(env->catalog, session->crs, out, &hit, 1);
    }
}
/* ---- Small commands ------------------------------------------------------------ */

/* Writes "key:type,key:type" for the attributes seen in `category` to out
 * (cut at out_len; the types of one key joined with '|'). */
static void category_attributes(const struct catalog *cat, int category, char *out,
                                size_t out_len) {
    static const struct {
        unsigned bit;
        const char *name;
    } type_names[] = {{CATALOG_NUM, "number"}, {CATALOG_BOOL, "boolean"},
                      {CATALOG_TEXT, "text"},  {CATALOG_IDS, "ids"}};
    size_t len = 0;
    out[0] = '\0';
    for (size_t k = 0; k < catalog_key_count(cat); k++) {
        unsigned types = catalog_key_types(cat, category, (int)k);
        if (!types) {
            continue;
        }
        char item[160];
        int n = snprintf(item, sizeof item, "%s%s:", len ? "," : "",
                         catalog_key_name(cat, (int)k));
        const char *sep = "";
        for (size_t t = 0; t < 4 && n > 0 && (size_t)n < sizeof item; t++) {
            if (types & type_names[t].bit) {
                n += snprintf(item + n, sizeof item - (size_t)n, "%s%s", sep, type_names[t].name);
                sep = "|";
            }
        }
        if (n < 0 || (size_t)n >= sizeof item || len + (size_t)n >= out_len) {
            break;
        }
        memcpy(out + len, item, (size_t)n + 1);
        len += (size_t)n;
    }
}

int cmd_handle_categories(struct cmd_call *call) {
    reply_ok(call->out, STORE_CAT_COUNT);
    for (int c = 0; c < STORE_CAT_COUNT; c++) {
        char count[32];
        char attrs[4096];
        snprintf(count, sizeof count, "%zu", catalog_count_category(call->env->catalog, c));
        category_attributes(call->env->catalog, c, attrs, sizeof attrs);
        const char *fields[3] = {store_category_name(c), count, attrs};
        /* A category without attributes keeps the two-field line of before. */
        reply_fields(call->out, attrs[0] ? 3 : 2, fields);
    }
    return 0;
}

int cmd_handle_crs(struct cmd_call *call) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    if (call->argc == 2) {
        enum geo_crs crs;
        if (geo_crs_parse(call->argv[1], &crs) < 0) {
            reply_err(call->out, CMD_ERR_UNKNOWN,
                      "unknown coordinate system '%s' (wgs84, gcj02 or bd09)",
                      ECHO(call->argv[1]));
            return CMD_ERR_UNKNOWN;
        }
        call->session->crs = crs;
    }
    const char *name = geo_crs_name(call->session->crs);
    reply_ok(call->out, 1);
    reply_fields(call->out, 1, &name);
    return 0;
}

int cmd_handle_format(struct cmd_call *call) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    if (call->argc == 2) {
        enum reply_format format;
        if (reply_format_parse(call->argv[1], &format) < 0) {
            reply_err(call->out, CMD_ERR_UNKNOWN,
                      "unknown format '%s' (text, json or geojson)", ECHO(call->argv[1]));
            return CMD_ERR_UNKNOWN;
        }
        call->session->format = format;
        call->out->format = format; /* this answer is already in the new format */
    }
    const char *name = reply_format_name(call->session->format);
    reply_ok(call->out, 1);
    reply_fields(call->out, 1, &name);
    return 0;
}

int cmd_handle_help(struct cmd_call *call) {
    char echo_buf[REPLY_MAX_ECHO_BYTES + 1];
    if (call->argc == 2) {
        const struct cmd_spec *spec = cmd_lookup(call->argv[1]);
        if (!spec) {
            reply_err(call->out, CMD_ERR_UNKNOWN, "unknown command '%s' (see HELP)",
                      ECHO(call->argv[1]));
            return CMD_ERR_UNKNOWN;
        }
        const char *fields[2] = {spec->usage, spec->summary};
        reply_ok(call->out, 1);
        reply_fields(call->out, 2, fields);
        return 0;
    }
    reply_ok(call->out, CMD_COUNT);
    for (size_t i = 0; i < CMD_COUNT; i++) {
        const char *fields[2] = {cmd_specs[i].usage, cmd_specs[i].summary};
        reply_fields(call->out, 2, fields);
    }
    return 0;
}

int cmd_handle_stats(struct cmd_call *call) {
    const struct catalog *cat = call->env->catalog;
    const struct cmd_stats *s = call->env->stats;
    struct cmd_stats zero = {0}, total;
    if (call->env->stats_total) {
        call->env->stats_total(call->env->stats_total_arg, &total);
        s = &total;
    } else if (!s) {
        s = &zero;
    }
    int64_t now = (int64_t)time(NULL);
    struct {
        const char *key;
        unsigned long long value;
    } rows[] = {
        {"facilities", catalog_count(cat)},
        {"catalog_bytes", catalog_memory_bytes(cat)},
        {"index_bytes", geo_index_memory_bytes(catalog_index(cat))},
        {"uptime_s", s->started_unix ? (unsigned long long)(now - s->started_unix) : 0},
        {"connections_open", s->connections_open},
        {"connections_total", s->connections_total},
        {"requests", s->requests + 1}, /* this one included */
        {"errors", s->errors},
        {"writes", s->writes},
        {"write_groups", s->write_groups},
        {"db_bytes", s->db_bytes},
    };
    size_t n = sizeof rows / sizeof rows[0];
    /* Then facilities_<category> for each category, and requests_<command>
     * and errors_<command> for each row of commands.def (counted by the
     * server; this request is included in its own row); then the batches,
     * last because they came last. */
    size_t n_cmds = CMD_COUNT < CMD_MAX_COMMANDS ? CMD_COUNT : CMD_MAX_COMMANDS;
    size_t n_all = n + STORE_CAT_COUNT + 2 * n_cmds + 2;
    reply_ok(call->out, n_all);
    for (size_t i = 0; i < n_all; i++) {
        char key[64], value[32];
        unsigned long long v;
        if (i < n) {
            snprintf(key, sizeof key, "%s", rows[i].key);
            v = rows[i].value;
        } else if (i < n + STORE_CAT_COUNT) {
            int cat_no = (int)(i - n);
            snprintf(key, sizeof key, "facilities_%s", store_category_name(cat_no));
            v = catalog_count_category(cat, cat_no);
        } else if (i >= n_all - 2) {
            bool queries = i == n_all - 1;
            snprintf(key, sizeof key, "%s", queries ? "batched_queries" : "batches");
            v = queries ? s->batched_queries : s->batches;
        } else {
            size_t row = (i - n - STORE_CAT_COUNT) / 2;
            bool errors = (i - n - STORE_CAT_COUNT) % 2 == 1;
            snprintf(key, sizeof key, "%s_%s", errors ? "errors" : "requests",
                     cmd_specs[row].name);
            for (char *k = key; *k; k++) {
                *k = (char)tolower((unsigned char)*k);
            }
            v = errors ? s->errors_by_cmd[row]
                       : s->requests_by_cmd[row] + (&cmd_specs[row] == call->spec);
        }
        snprintf(value, sizeof value, "%llu", v);
        const char *fields[2] = {key, value};
        reply_fields(call->out, 2, fields);
    }
    return 0;
}

int cmd_handle_ping(struct cmd_call *call) {
    reply_ok(call->out, 0);
    return 0;
}

int cmd_handle_quit(struct cmd_call *call) {
    reply_ok(call->out, 0);
    call->session->quit = true;
    return 0;
}
