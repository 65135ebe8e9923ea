/* nearest.c: the `nearest` command line client.
 *
 *   nearest [options] <category> <lat> <lon>              NEAREST, as a table
 *   nearest [options] radius <category> <lat> <lon> <m>   RADIUS, as a table
 *   nearest [options] serves <lat> <lon> [<area-kind>]    SERVES: areas and who serves them
 *   nearest [options] --raw 'PROTOCOL LINE'               any request, the answer as received
 *   nearest [options] [-i]                                interactive: protocol lines at a prompt
 *
 * Exit status: 0 when the answer holds records (or, with --raw, is OK), 1
 * when nothing matched (OK 0), 2 for every error: a bad command line, no
 * connection, or an ERR answer, which is printed as "nearest: CODE: message".
 *
 * Options live in one table (`options` below) and are parsed by a small loop
 * rather than getopt, for two reasons: a negative coordinate such as -33.9 is
 * an argument, not an option, and options may come after the arguments. The
 * first positional argument picks the request: `radius`, `serves`, or else a
 * category, which means NEAREST. Filters (--where, --open, --maxdist, --crs)
 * become the protocol's own options; the server checks their values, so its
 * message is the one the user sees.
 *
 * Everything on the wire goes through libnearest (nearest.h): this file
 * builds tokens and shows answers, and parses no protocol itself. --json and
 * --geojson send "FORMAT json|geojson" pipelined before the request and print
 * the answer's JSON line as it came; jansson reads it only for the exit
 * status. `serves` pipelines one GET per serving facility after the SERVES
 * answer, to show their names. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>
#include <unistd.h>

#include <editline/readline.h>
#include <jansson.h>

#include "cli_args.h"
#include "cli_table.h"
#include "nearest.h"

#define EXIT_FOUND 0
#define EXIT_NOTHING 1
#define EXIT_ERROR 2
#define MAX_POSITIONAL 8
#define MAX_WHERE 8          /* the server takes at most 8 WHEREs a request */
#define MAX_REQUEST_TOKENS 48
#define MAX_SERVED_NAMES 256 /* GETs pipelined to name who serves the areas */
#define HISTORY_LINES 1000   /* lines of prompt history kept */

enum opt_id {
    OPT_HOST, OPT_PORT, OPT_K, OPT_MAXDIST, OPT_WHERE, OPT_OPEN, OPT_CRS, OPT_TSV, OPT_JSON,
    OPT_GEOJSON, OPT_RAW, OPT_INTERACTIVE, OPT_TIMEOUT, OPT_HELP
};

struct opt {
    enum opt_id id;
    const char *long_name;   /* without "--" */
    char short_name;         /* 0 if none */
    bool has_arg;
    const char *arg_name;
    const char *help;
};

static const struct opt options[] = {
    {OPT_HOST, "host", 0, true, "HOST", "server address (default $NEAREST_HOST or 127.0.0.1)"},
    {OPT_PORT, "port", 0, true, "PORT", "server port (default $NEAREST_PORT or 7878)"},
    {OPT_K, "k", 'k', true, "N",
     "how many, 1..1000 (K, default 5; with radius LIMIT, default 100)"},
    {OPT_MAXDIST, "maxdist", 0, true, "METRES", "only facilities within METRES (not radius)"},
    {OPT_WHERE, "where", 0, true, "COND",
     "filter FIELD OP VALUE, OP one of >= <= != = < > ('stars>=4',\n"
     "                     dementia=yes, level=primary); repeatable, all must hold"},
    {OPT_OPEN, "open", 0, true, "WHEN",
     "only facilities open now, or at YYYY-MM-DDTHH:MM (Qingdao time)"},
    {OPT_CRS, "crs", 0, true, "CRS",
     "positions in and out: wgs84 (default), gcj02 (Amap), bd09 (Baidu)"},
    {OPT_TSV, "tsv", 0, false, NULL, "print raw tab-separated records, for scripts"},
    {OPT_JSON, "json", 0, false, NULL, "print the answer as one JSON line (FORMAT json)"},
    {OPT_GEOJSON, "geojson", 0, false, NULL,
     "print the answer as one GeoJSON line (FORMAT geojson)"},
    {OPT_RAW, "raw", 0, true, "LINE", "send LINE as is and print the answer as received"},
    {OPT_INTERACTIVE, "interactive", 'i', false, NULL,
     "protocol lines at a prompt (default on a terminal, no arguments)"},
    {OPT_TIMEOUT, "timeout", 0, true, "MS", "give up after MS ms without progress (5000)"},
    {OPT_HELP, "help", 'h', false, NULL, "print this help and exit"},
};

struct config {
    const char *host;
    int port;
    int timeout_ms;
    const char *k;
    const char *maxdist;
    const char *open;
    const char *crs;
    size_t n_where;
    const char *where[MAX_WHERE];
    const char *raw;
    bool tsv;
    bool json;
    bool geojson;
    bool interactive;
    bool help;
    size_t n_pos;
    const char *pos[MAX_POSITIONAL];
};

static void usage(FILE *out) {
    fputs("usage: nearest [options] <category> <lat> <lon>\n"
          "       nearest [options] radius <category> <lat> <lon> <metres>\n"
          "       nearest [options] serves <lat> <lon> [<area-kind>]\n"
          "       nearest [options] --raw 'PROTOCOL LINE'\n"
          "       nearest [options] [-i]        (interactive: one protocol line a prompt)\n"
          "\n"
          "Finds the facilities nearest to a point (latitude first), closest first;\n"
          "`radius` those within a distance; `serves` the areas (street, community,\n"
          "school catchments, ...) that contain the point and the facilities that\n"
          "serve them. Area kinds: district street community catchment service_area.\n"
          "Categories: elder_care meal_point doctor_team school parking, or '*' for all;\n"
          "their attributes, for --where, are listed by: nearest --raw CATEGORIES\n"
          "\n"
          "Examples:\n"
          "  nearest meal_point 36.16 120.41 -k 3\n"
          "  nearest --where 'stars>=4' --where dementia=yes elder_care 36.16 120.41\n"
          "  nearest --open now parking 36.16 120.41 --maxdist 2000\n"
          "  nearest radius school 36.16 120.41 1500 --where level=primary\n"
          "  nearest serves 36.16 120.41 community\n"
          "  nearest --crs gcj02 --geojson meal_point 36.1577 120.4158\n"
          "  nearest --raw 'HELP NEAREST'\n"
          "\n"
          "Options (anywhere on the line; --opt=value works too; -- ends options):\n",
          out);
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        const struct opt *o = &options[i];
        char left[48];
        if (o->short_name && strlen(o->long_name) == 1) {
            snprintf(left, sizeof left, "-%c %s", o->short_name, o->arg_name ? o->arg_name : "");
        } else if (o->short_name) {
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->long_name,
                     o->has_arg ? " " : "", o->has_arg ? o->arg_name : "");
        } else {
            snprintf(left, sizeof left, "--%s%s%s", o->long_name, o->has_arg ? " " : "",
                     o->has_arg ? o->arg_name : "");
        }
        fprintf(out, "  %-18s %s\n", left, o->help);
    }
    fputs("\nOutput: an aligned table (distances in m below 1 km, in km above);\n"
          "--tsv, --json or --geojson for programs (choose one; --raw takes either JSON).\n"
          "Environment: NEAREST_HOST, NEAREST_PORT (the options win).\n"
          "Interactive mode: line editing and history (kept in $NEAREST_HISTORY, else\n"
          "~/.nearest_history); type HELP for the server's commands, QUIT or Ctrl-D\n"
          "to leave.\n"
          "Exit status: 0 found, 1 nothing matched, 2 error (the server's message on\n"
          "stderr as \"nearest: CODE: message\").\n",
          out);
}

/* Reads a whole decimal integer in [lo, hi]. */
static bool parse_int(const char *s, long lo, long hi, int *out) {
    if (s == NULL || *s == '\0') {
        return false;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || errno != 0 || v < lo || v > hi) {
        return false;
    }
    *out = (int)v;
    return true;
}

/* Whether arg is an option rather than a (possibly negative) number or "-". */
static bool looks_like_option(const char *arg) {
    if (arg[0] != '-' || arg[1] == '\0') {
        return false;
    }
    return !(arg[1] == '.' || (arg[1] >= '0' && arg[1] <= '9'));
}

static const struct opt *find_option(const char *arg, const char **value) {
    *value = NULL;
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        const struct opt *o = &options[i];
        if (arg[1] != '-') {
            if (o->short_name && arg[1] == o->short_name) {
                *value = arg[2] ? arg + 2 : NULL; /* -k3 */
                return o;
            }
            continue;
        }
        size_t n = strlen(o->long_name);
        if (strncmp(arg + 2, o->long_name, n) == 0) {
            if (arg[2 + n] == '\0') {
                return o;
            }
            if (arg[2 + n] == '=' && o->has_arg) {
                *value = arg + 3 + n;
                return o;
            }
        }
    }
    return NULL;
}

static int apply_option(struct config *cfg, const struct opt *o, const char *value) {
    switch (o->id) {
    case OPT_HOST:
        cfg->host = value;
        return 0;
    case OPT_PORT:
        return parse_int(value, 1, 65535, &cfg->port) ? 0 : -1;
    case OPT_K:
        cfg->k = value;
        return 0;
    case OPT_MAXDIST:
        cfg->maxdist = value;
        return 0;
    case OPT_WHERE:
        if (cfg->n_where == MAX_WHERE) {
            return -2;
        }
        cfg->where[cfg->n_where++] = value;
        return 0;
    case OPT_OPEN:
        cfg->open = value;
        return 0;
    case OPT_CRS:
        cfg->crs = value;
        return 0;
    case OPT_TSV:
        cfg->tsv = true;
        return 0;
    case OPT_JSON:
        cfg->json = true;
        return 0;
    case OPT_GEOJSON:
        cfg->geojson = true;
        return 0;
    case OPT_RAW:
        cfg->raw = value;
        return 0;
    case OPT_INTERACTIVE:
        cfg->interactive = true;
        return 0;
    case OPT_TIMEOUT:
        return parse_int(value, 0, 3600000, &cfg->timeout_ms) ? 0 : -1;
    case OPT_HELP:
        cfg->help = true;
        return 0;
    }
    return -1;
}

/* Fills cfg from the environment, then argv. Prints why and returns false on a
 * bad command line. */
static bool parse_args(int argc, char **argv, struct config *cfg) {
    cfg->host = "127.0.0.1";
    cfg->port = CLI_DEFAULT_PORT;
    cfg->timeout_ms = CLI_DEFAULT_TIMEOUT_MS;
    const char *env_host = getenv("NEAREST_HOST");
    if (env_host != NULL && *env_host != '\0') {
        cfg->host = env_host;
    }
    const char *env_port = getenv("NEAREST_PORT");
    if (env_port != NULL && *env_port != '\0' && !parse_int(env_port, 1, 65535, &cfg->port)) {
        fprintf(stderr, "nearest: NEAREST_PORT '%s' is not a port (1..65535)\n", env_port);
        return false;
    }
    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!only_positional && strcmp(arg, "--") == 0) {
            only_positional = true;
            continue;
        }
        if (only_positional || !looks_like_option(arg)) {
            if (cfg->n_pos == MAX_POSITIONAL) {
                fprintf(stderr, "nearest: too many arguments\n");
                return false;
            }
            cfg->pos[cfg->n_pos++] = arg;
            continue;
        }
        const char *value = NULL;
        const struct opt *o = find_option(arg, &value);
        if (o == NULL || (!o->has_arg && value != NULL)) {
            fprintf(stderr, "nearest: unknown option '%s' (see --help)\n", arg);
            return false;
        }
        if (o->has_arg && value == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "nearest: option '%s' needs a value\n", arg);
                return false;
            }
            value = argv[++i];
        }
        int applied = apply_option(cfg, o, value);
        if (applied == -2) {
            fprintf(stderr, "nearest: at most %d --where conditions\n", MAX_WHERE);
            return false;
        }
        if (applied < 0) {
            fprintf(stderr, "nearest: bad value '%s' for '%s'\n", value, arg);
            return false;
        }
    }
    /* --raw prints as received, so it goes with --json or --geojson (whose
     * FORMAT it then uses), not with --tsv. */
    if (cfg->tsv + cfg->json + cfg->geojson > 1 || (cfg->tsv && cfg->raw != NULL)) {
        fprintf(stderr, "nearest: choose one of --tsv, --json, --geojson (--raw goes "
                        "with --json or --geojson)\n");
        return false;
    }
    return true;
}

/* "host:port", with brackets around an IPv6 address. */
static void format_address(const struct config *cfg, char *buf, size_t cap) {
    if (strchr(cfg->host, ':') != NULL) {
        snprintf(buf, cap, "[%s]:%d", cfg->host, cfg->port);
    } else {
        snprintf(buf, cap, "%s:%d", cfg->host, cfg->port);
    }
}

enum request_kind { REQ_NEAREST, REQ_RADIUS, REQ_SERVES };

/* The request of a command line: its tokens, and what the table needs. */
struct request {
    enum request_kind kind;
    size_t n_tokens;
    const char *tokens[MAX_REQUEST_TOKENS];
    size_t n_where;
    struct cli_where where[MAX_WHERE];   /* owned; tokens point into them */
    size_t n_attrs;
    const char *attrs[MAX_WHERE];        /* attributes the --where conditions name */
};

static void request_clear(struct request *req) {
    for (size_t i = 0; i < req->n_where; i++) {
        cli_where_clear(&req->where[i]);
    }
    req->n_where = 0;
}

static void add_tokens(struct request *req, const char *a, const char *b) {
    req->tokens[req->n_tokens++] = a;
    if (b != NULL) {
        req->tokens[req->n_tokens++] = b;
    }
}

/* Whether a --where field is also a column worth showing: an attribute, not
 * the name (always shown) or the subtype (not in records), and not yet listed. */
static bool is_new_attr(const struct request *req, const char *field) {
    if (strcmp(field, "name") == 0 || strcmp(field, "subtype") == 0) {
        return false;
    }
    for (size_t i = 0; i < req->n_attrs; i++) {
        if (strcmp(req->attrs[i], field) == 0) {
            return false;
        }
    }
    return true;
}

/* Builds the request tokens from the positional arguments and the filter
 * options. Prints why and returns false on a bad command line. */
static bool build_request(const struct config *cfg, struct request *req) {
    static const char *const shapes[] = {
        "<category> <lat> <lon>",
        "radius <category> <lat> <lon> <metres>",
        "serves <lat> <lon> [<area-kind>]",
    };
    const char *first = cfg->n_pos > 0 ? cfg->pos[0] : "";
    req->kind = strcmp(first, "radius") == 0   ? REQ_RADIUS
                : strcmp(first, "serves") == 0 ? REQ_SERVES
                                               : REQ_NEAREST;
    size_t lo = req->kind == REQ_NEAREST ? 3 : req->kind == REQ_RADIUS ? 5 : 3;
    size_t hi = req->kind == REQ_SERVES ? 4 : lo;
    if (cfg->n_pos < lo || cfg->n_pos > hi) {
        fprintf(stderr, "nearest: expected %s (see --help)\n", shapes[req->kind]);
        return false;
    }
    const char *refused = NULL;
    if (req->kind == REQ_SERVES) {
        refused = cfg->k ? "-k" : cfg->maxdist ? "--maxdist" : cfg->n_where ? "--where"
                              : cfg->open      ? "--open"
                                               : NULL;
    } else if (req->kind == REQ_RADIUS && cfg->maxdist != NULL) {
        refused = "--maxdist";
    }
    if (refused != NULL) {
        fprintf(stderr, "nearest: %s does not apply to %s (see --help)\n", refused,
                req->kind == REQ_SERVES ? "serves" : "radius (give the distance)");
        return false;
    }
    static const char *const commands[] = {"NEAREST", "RADIUS", "SERVES"};
    req->tokens[req->n_tokens++] = commands[req->kind];
    for (size_t i = req->kind == REQ_NEAREST ? 0 : 1; i < cfg->n_pos; i++) {
        req->tokens[req->n_tokens++] = cfg->pos[i];
    }
    if (cfg->k != NULL) {
        add_tokens(req, req->kind == REQ_RADIUS ? "LIMIT" : "K", cfg->k);
    }
    if (cfg->maxdist != NULL) {
        add_tokens(req, "MAXDIST", cfg->maxdist);
    }
    for (size_t i = 0; i < cfg->n_where; i++) {
        struct cli_where *w = &req->where[req->n_where];
        int ret = cli_where_split(cfg->where[i], w);
        if (ret == CLI_ERR_NOMEM) {
            fprintf(stderr, "nearest: out of memory\n");
            return false;
        }
        if (ret < 0) {
            fprintf(stderr,
                    "nearest: --where '%s' is not FIELD OP VALUE with OP one of "
                    ">= <= != = < > (e.g. 'stars>=4')\n",
                    cfg->where[i]);
            return false;
        }
        req->n_where++;
        add_tokens(req, "WHERE", w->field);
        add_tokens(req, w->op, w->value);
        if (is_new_attr(req, w->field)) {
            req->attrs[req->n_attrs++] = w->field;
        }
    }
    if (cfg->open != NULL) {
        add_tokens(req, "OPEN", cfg->open);
    }
    if (cfg->crs != NULL) {
        add_tokens(req, "CRS", cfg->crs);
    }
    return true;
}

/* Prints a JSON answer as received and picks the exit status from it: an
 * error object is reported on stderr like an ERR line. */
static int show_json(const char *text) {
    puts(text);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    int status = EXIT_ERROR;
    if (root == NULL || !json_is_object(root)) {
        fprintf(stderr, "nearest: the server's JSON does not parse: %s\n", jerr.text);
    } else if (json_is_true(json_object_get(root, "ok"))) {
        json_int_t count = json_integer_value(json_object_get(root, "count"));
        status = count > 0 ? EXIT_FOUND : EXIT_NOTHING;
    } else {
        json_t *error = json_object_get(root, "error");
        const char *code = json_string_value(json_object_get(error, "code"));
        const char *message = json_string_value(json_object_get(error, "message"));
        fprintf(stderr, "nearest: %s: %s\n", code ? code : "?", message ? message : "");
    }
    json_decref(root);
    return status;
}

/* The ids that serve the areas of a SERVES answer, each once, at most max,
 * into ids[]: copies the caller frees with free(). Stops early when out of
 * memory (the table then names fewer facilities). */
static size_t served_ids(const struct cli_reply *reply, const char **ids, size_t max) {
    size_t n = 0;
    for (size_t i = 0; i < reply->n_records; i++) {
        struct cli_area a;
        if (cli_record_area(&reply->records[i], &a) < 0 || a.served_by == NULL) {
            continue;
        }
        for (const char *p = a.served_by; *p && n < max;) {
            size_t len = strcspn(p, ";");
            bool seen = false;
            for (size_t k = 0; k < n && !seen; k++) {
                seen = strlen(ids[k]) == len && memcmp(ids[k], p, len) == 0;
            }
            if (len > 0 && !seen) {
                char *id = strndup(p, len);
                if (id == NULL) {
                    return n;
                }
                ids[n++] = id;
            }
            p += len + (p[len] == ';');
        }
    }
    return n;
}

/* Shows a SERVES answer as a table, naming each serving facility: one GET
 * per facility, all sent before any answer is read (pipelined). A facility
 * that cannot be named (say, deleted meanwhile) shows as its id. Returns 0,
 * or EXIT_ERROR when the connection fails. */
static int show_serves(struct cli_conn *conn, const char *address,
                       const struct cli_reply *reply) {
    const char *ids[MAX_SERVED_NAMES];
    size_t n_ids = served_ids(reply, ids, MAX_SERVED_NAMES);
    struct cli_reply *answers[MAX_SERVED_NAMES] = {0};
    struct cli_id_name names[MAX_SERVED_NAMES];
    size_t n_names = 0;
    int status = EXIT_ERROR;
    bool sent[MAX_SERVED_NAMES] = {false};
    for (size_t i = 0; i < n_ids; i++) {
        const char *get[] = {"GET", ids[i]};
        /* An id no request can carry (a "\r" in it) is refused here, with
         * the connection still usable: it is shown without a name. */
        sent[i] = cli_conn_send(conn, 2, get) == 0;
        if (!sent[i] && cli_conn_err(conn) != 0) {
            goto failed;
        }
    }
    for (size_t i = 0; i < n_ids; i++) {
        if (!sent[i]) {
            continue;
        }
        if (cli_conn_read_reply(conn, &answers[i]) < 0) {
            goto failed;
        }
        struct cli_facility f;
        if (answers[i]->kind == CLI_REPLY_OK && answers[i]->n_records == 1 &&
            cli_record_facility(&answers[i]->records[0], &f) == 0) {
            names[n_names++] = (struct cli_id_name){.id = ids[i], .name = f.name};
        }
    }
    if (cli_areas_print(stdout, reply, names, n_names) < 0) {
        fprintf(stderr, "nearest: out of memory\n");
        goto done;
    }
    status = EXIT_FOUND;
    goto done;
failed:
    fprintf(stderr, "nearest: %s: %s\n", address, cli_conn_errstr(conn));
done:
    for (size_t i = 0; i < n_ids; i++) {
        cli_reply_free(answers[i]);
        free((char *)ids[i]);
    }
    return status;
}

static int show_reply(const struct config *cfg, const struct request *req,
                      struct cli_conn *conn, const char *address,
                      const struct cli_reply *reply) {
    if (reply->kind == CLI_REPLY_JSON) {
        int status = show_json(reply->json);
        return cfg->raw != NULL && status == EXIT_NOTHING ? EXIT_FOUND : status;
    }
    if (reply->kind == CLI_REPLY_ERR) {
        if (cfg->raw != NULL) {
            cli_raw_print(stdout, reply);
        }
        fprintf(stderr, "nearest: %s: %s\n", reply->code, reply->message);
        return EXIT_ERROR;
    }
    if (cfg->raw != NULL) {
        cli_raw_print(stdout, reply);
        return EXIT_FOUND;
    }

    if (reply->n_records == 0) {
        if (!cfg->tsv) {
            fprintf(stderr, "nearest: nothing found\n");
        }
        return EXIT_NOTHING;
    }
    if (cfg->tsv) {
        cli_tsv_print(stdout, reply);
    } else if (req->kind == REQ_SERVES) {
        return show_serves(conn, address, reply);
    } else {
        cli_table_print_attrs(stdout, reply, req->attrs, req->n_attrs);
    }
    return EXIT_FOUND;
}

/* Sends the one request of the command line and shows its answer. */
static int run_once(const struct config *cfg, struct cli_conn *conn, const char *address,
                    const struct request *req) {
    struct cli_reply *reply = NULL;
    int status = EXIT_ERROR;
    /* --json and --geojson: FORMAT goes first, pipelined with the request. */
    const char *format = cfg->json ? "json" : cfg->geojson ? "geojson" : NULL;
    const char *const format_tokens[] = {"FORMAT", format};
    int ret = format != NULL ? cli_conn_send(conn, 2, format_tokens) : 0;
    if (ret == 0) {
        ret = cfg->raw != NULL ? cli_conn_send_line(conn, cfg->raw, strlen(cfg->raw))
                               : cli_conn_send(conn, req->n_tokens, req->tokens);
    }
    if (ret == 0 && format != NULL) {
        ret = cli_conn_read_reply(conn, &reply); /* the answer to FORMAT */
        if (ret == 0 && reply->kind != CLI_REPLY_JSON) {
            fprintf(stderr, "nearest: %s: the server does not speak FORMAT %s\n", address,
                    format);
            goto done;
        }
        cli_reply_free(reply);
        reply = NULL;
    }
    if (ret == 0) {
        ret = cli_conn_read_reply(conn, &reply);
    }
    if (ret < 0) {
        fprintf(stderr, "nearest: %s: %s\n", address, cli_conn_errstr(conn));
        goto done;
    }
    status = show_reply(cfg, req, conn, address, reply);
done:
    cli_reply_free(reply);
    return status;
}

/* Whether a request line's first token is `word` (ASCII case ignored). */
static bool first_token_is(const char *line, const char *word) {
    line += strspn(line, " \t");
    size_t n = strlen(word);
    return strncasecmp(line, word, n) == 0 &&
           (line[n] == '\0' || line[n] == ' ' || line[n] == '\t');
}

/* Shows an answer at the prompt: facilities as a table, HELP as usage and
 * summary, areas as their table, other records as they came, errors as
 * "(error) CODE: message". */
static void show_interactive(const char *line, const struct cli_reply *reply) {
    if (reply->kind == CLI_REPLY_JSON) {
        puts(reply->json);
    } else if (reply->kind == CLI_REPLY_ERR) {
        printf("(error) %s: %s\n", reply->code, reply->message);
    } else if (reply->n_records == 0) {
        puts("(empty)");
    } else if (first_token_is(line, "HELP")) {
        cli_help_print(stdout, reply);
    } else if ((first_token_is(line, "SERVES") || first_token_is(line, "AREAS")) &&
               cli_areas_print(stdout, reply, NULL, 0) == 0) {
        /* printed */
    } else {
        bool facilities = true;
        for (size_t i = 0; i < reply->n_records && facilities; i++) {
            struct cli_facility f;
            facilities = cli_record_facility(&reply->records[i], &f) == 0;
        }
        if (facilities) {
            cli_table_print(stdout, reply);
        } else {
            cli_tsv_print(stdout, reply);
        }
    }
    fflush(stdout);
}

/* Where the prompt's history lives between sessions: $NEAREST_HISTORY, else
 * ~/.nearest_history; "" (no file) when neither can be named. */
static void history_path(char *buf, size_t cap) {
    const char *path = getenv("NEAREST_HISTORY");
    const char *home = getenv("HOME");
    if (path != NULL && *path != '\0') {
        snprintf(buf, cap, "%s", path);
    } else if (home != NULL && *home != '\0') {
        snprintf(buf, cap, "%s/.nearest_history", home);
    } else {
        buf[0] = '\0';
    }
}

/* Reads protocol lines with libedit (history included, kept between
 * sessions when stdin is a terminal) and answers each on one connection,
 * until end of input or QUIT. Blank lines are not sent: the
 * server would not answer them. Returns 0, or 2 when the connection fails. */
static int run_interactive(const struct config *cfg, struct cli_conn *conn,
                           const char *address) {
    char prompt[320];
    snprintf(prompt, sizeof prompt, "%s> ", address);
    int status = EXIT_FOUND;
    const char *format = cfg->json ? "json" : cfg->geojson ? "geojson" : NULL;
    if (format != NULL) {
        const char *const format_tokens[] = {"FORMAT", format};
        struct cli_reply *reply = NULL;
        if (cli_conn_command(conn, 2, format_tokens, &reply) < 0) {
            fprintf(stderr, "nearest: %s: %s\n", address, cli_conn_errstr(conn));
            return EXIT_ERROR;
        }
        cli_reply_free(reply);
    }
    char history[4096] = "";
    if (isatty(STDIN_FILENO)) {
        printf("Connected to %s. HELP lists the commands; QUIT or Ctrl-D leaves.\n", address);
        history_path(history, sizeof history);
    }
    stifle_history(HISTORY_LINES);
    if (history[0] != '\0') {
        (void)read_history(history); /* none yet is fine */
    }
    char *line;
    while ((line = readline(prompt)) != NULL) {
        size_t len = strlen(line);
        if (strspn(line, " \t") == len) {
            free(line);
            continue;
        }
        add_history(line);
        bool quit = first_token_is(line, "QUIT");
        struct cli_reply *reply = NULL;
        int ret = cli_conn_send_line(conn, line, len);
        if (ret == 0) {
            ret = cli_conn_read_reply(conn, &reply);
        }
        if (ret < 0) {
            free(line);
            fprintf(stderr, "nearest: %s: %s\n", address, cli_conn_errstr(conn));
            status = EXIT_ERROR;
            break;
        }
        show_interactive(line, reply);
        free(line);
        cli_reply_free(reply);
        if (quit) {
            break;
        }
    }
    if (history[0] != '\0' && write_history(history) != 0) {
        fprintf(stderr, "nearest: could not save the history in %s\n", history);
    }
    clear_history();
    return status;
}

int main(int argc, char **argv) {
    struct config cfg = {0};
    struct request req = {0};
    struct cli_conn *conn = NULL;
    int status = EXIT_ERROR;
    if (!parse_args(argc, argv, &cfg)) {
        goto done;
    }
    if (cfg.help) {
        usage(stdout);
        status = EXIT_FOUND;
        goto done;
    }
    bool interactive = cfg.interactive ||
                       (cfg.raw == NULL && cfg.n_pos == 0 && isatty(STDIN_FILENO));
    bool has_filters = cfg.k || cfg.maxdist || cfg.n_where || cfg.open || cfg.crs;
    if (interactive) {
        if (cfg.raw != NULL || cfg.n_pos != 0 || has_filters || cfg.tsv) {
            fprintf(stderr, "nearest: -i reads requests from the prompt; no other requests\n");
            goto done;
        }
    } else if (cfg.raw != NULL) {
        if (cfg.n_pos != 0 || has_filters) {
            fprintf(stderr, "nearest: --raw takes the whole request; no other arguments\n");
            goto done;
        }
    } else if (!build_request(&cfg, &req)) {
        goto done;
    }

    char address[300];
    format_address(&cfg, address, sizeof address);
    conn = cli_conn_open(cfg.host, cfg.port, cfg.timeout_ms);
    if (conn == NULL) {
        fprintf(stderr, "nearest: out of memory\n");
        goto done;
    }
    if (cli_conn_err(conn) != 0) {
        const char *why = cli_conn_errstr(conn);
        bool refused = strcmp(why, strerror(ECONNREFUSED)) == 0;
        fprintf(stderr, "nearest: cannot connect to %s: %s%s\n", address, why,
                refused ? " (is nearestd running?)" : "");
        goto done;
    }
    status = interactive ? run_interactive(&cfg, conn, address)
                         : run_once(&cfg, conn, address, &req);
done:
    cli_conn_close(conn);
    request_clear(&req);
    return status;
}
