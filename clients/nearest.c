/* nearest.c: the `nearest` command line client.
 *
 *   nearest [options] <category> <lat> <lon>     the nearest facilities, as a table
 *   nearest [options] --raw 'PROTOCOL LINE'      any request, the answer as received
 *   nearest [options] [-i]                       interactive: protocol lines at a prompt
 *
 * Exit status: 0 when the answer holds records (or, with --raw, is OK), 1
 * when nothing matched (OK 0), 2 for every error: a bad command line, no
 * connection, or an ERR answer, which is printed as "nearest: CODE: message".
 *
 * Options live in one table (`options` below) and are parsed by a small loop
 * rather than getopt, for two reasons: a negative coordinate such as -33.9 is
 * an argument, not an option, and later options (--where, --open) and
 * subcommands (serves) only add a row and a case. The first positional
 * argument picks the request; a category means NEAREST.
 *
 * --json sends "FORMAT json" pipelined before the request and prints the
 * answer's JSON line as it came; jansson reads it only for the exit status. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>
#include <unistd.h>

#include <editline/readline.h>
#include <jansson.h>

#include "cli_conn.h"
#include "cli_request.h"
#include "cli_table.h"
#include "proto.h"

#define EXIT_FOUND 0
#define EXIT_NOTHING 1
#define EXIT_ERROR 2
#define MAX_POSITIONAL 8

enum opt_id {
    OPT_HOST, OPT_PORT, OPT_K, OPT_TSV, OPT_JSON, OPT_RAW, OPT_INTERACTIVE, OPT_TIMEOUT, OPT_HELP
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
    {OPT_K, "k", 'k', true, "N", "how many facilities (1..1000; the server's default is 5)"},
    {OPT_TSV, "tsv", 0, false, NULL, "print raw tab-separated records, for scripts"},
    {OPT_JSON, "json", 0, false, NULL, "print the answer as one JSON object (FORMAT json)"},
    {OPT_RAW, "raw", 0, true, "LINE", "send LINE as is and print the answer as received"},
    {OPT_INTERACTIVE, "interactive", 'i', false, NULL,
     "type protocol lines at a prompt (the default on a terminal without arguments)"},
    {OPT_TIMEOUT, "timeout", 0, true, "MS", "give up after MS ms without progress (5000)"},
    {OPT_HELP, "help", 'h', false, NULL, "print this help and exit"},
};

struct config {
    const char *host;
    int port;
    int timeout_ms;
    const char *k;
    const char *raw;
    bool tsv;
    bool json;
    bool interactive;
    bool help;
    size_t n_pos;
    const char *pos[MAX_POSITIONAL];
};

static void usage(FILE *out) {
    fputs("usage: nearest [options] <category> <lat> <lon>\n"
          "       nearest [options] --raw 'PROTOCOL LINE'\n"
          "       nearest [options] [-i]        (interactive: one protocol line a prompt)\n"
          "Finds the facilities nearest to a point (latitude first), closest first.\n"
          "Categories: elder_care meal_point doctor_team school parking, or '*' for all.\n"
          "Example: nearest meal_point 36.16 120.41 -k 3\n\n"
          "Options:\n",
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
    fputs("\nExit status: 0 found, 1 nothing matched, 2 error.\n", out);
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
    case OPT_TSV:
        cfg->tsv = true;
        return 0;
    case OPT_JSON:
        cfg->json = true;
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
    cfg->port = PROTO_DEFAULT_PORT;
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
        if (apply_option(cfg, o, value) < 0) {
            fprintf(stderr, "nearest: bad value '%s' for '%s'\n", value, arg);
            return false;
        }
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

/* Builds the request tokens from the positional arguments. */
static bool build_request(const struct config *cfg, const char **req, size_t *n_req) {
    if (cfg->n_pos != 3) {
        fprintf(stderr, "nearest: expected <category> <lat> <lon> (see --help)\n");
        return false;
    }
    size_t n = 0;
    req[n++] = "NEAREST";
    req[n++] = cfg->pos[0];
    req[n++] = cfg->pos[1];
    req[n++] = cfg->pos[2];
    if (cfg->k != NULL) {
        req[n++] = "K";
        req[n++] = cfg->k;
    }
    *n_req = n;
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

static int show_reply(const struct config *cfg, const struct cli_reply *reply) {
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
    } else {
        cli_table_print(stdout, reply);
    }
    return EXIT_FOUND;
}

/* Sends the one request of the command line and shows its answer. */
static int run_once(const struct config *cfg, struct cli_conn *conn, const char *address,
                    const char *const *req, size_t n_req) {
    struct cli_reply *reply = NULL;
    int status = EXIT_ERROR;
    /* --json: FORMAT json goes first, pipelined with the request. */
    static const char *const format_json[] = {"FORMAT", "json"};
    int ret = cfg->json ? cli_conn_send(conn, 2, format_json) : 0;
    if (ret == 0) {
        ret = cfg->raw != NULL ? cli_conn_send_line(conn, cfg->raw, strlen(cfg->raw))
                               : cli_conn_send(conn, n_req, req);
    }
    if (ret == 0 && cfg->json) {
        ret = cli_conn_read_reply(conn, &reply); /* the answer to FORMAT */
        if (ret == 0 && reply->kind != CLI_REPLY_JSON) {
            fprintf(stderr, "nearest: %s: the server does not speak FORMAT json\n", address);
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
    status = show_reply(cfg, reply);
done:
    cli_reply_free(reply);
    return status;
}

/* Whether a request line's first token is QUIT, after which the server closes. */
static bool is_quit(const char *line) {
    line += strspn(line, " \t");
    return strncasecmp(line, "quit", 4) == 0 && (line[4] == '\0' || line[4] == ' ' ||
                                                 line[4] == '\t');
}

/* Shows an answer at the prompt: facilities as a table, other records as
 * they came, errors as "(error) CODE: message". */
static void show_interactive(const struct cli_reply *reply) {
    if (reply->kind == CLI_REPLY_JSON) {
        puts(reply->json);
    } else if (reply->kind == CLI_REPLY_ERR) {
        printf("(error) %s: %s\n", reply->code, reply->message);
    } else if (reply->n_records == 0) {
        puts("(empty)");
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

/* Reads protocol lines with libedit (history included) and answers each on
 * one connection, until end of input or QUIT. Blank lines are not sent: the
 * server would not answer them. Returns 0, or 2 when the connection fails. */
static int run_interactive(const struct config *cfg, struct cli_conn *conn,
                           const char *address) {
    char prompt[320];
    snprintf(prompt, sizeof prompt, "%s> ", address);
    int status = EXIT_FOUND;
    if (cfg->json) {
        static const char *const format_json[] = {"FORMAT", "json"};
        struct cli_reply *reply = NULL;
        if (cli_conn_command(conn, 2, format_json, &reply) < 0) {
            fprintf(stderr, "nearest: %s: %s\n", address, cli_conn_errstr(conn));
            return EXIT_ERROR;
        }
        cli_reply_free(reply);
    }
    char *line;
    while ((line = readline(prompt)) != NULL) {
        size_t len = strlen(line);
        if (strspn(line, " \t") == len) {
            free(line);
            continue;
        }
        add_history(line);
        bool quit = is_quit(line);
        struct cli_reply *reply = NULL;
        int ret = cli_conn_send_line(conn, line, len);
        if (ret == 0) {
            ret = cli_conn_read_reply(conn, &reply);
        }
        free(line);
        if (ret < 0) {
            fprintf(stderr, "nearest: %s: %s\n", address, cli_conn_errstr(conn));
            status = EXIT_ERROR;
            break;
        }
        show_interactive(reply);
        cli_reply_free(reply);
        if (quit) {
            break;
        }
    }
    clear_history();
    return status;
}

int main(int argc, char **argv) {
    struct config cfg = {0};
    if (!parse_args(argc, argv, &cfg)) {
        return EXIT_ERROR;
    }
    if (cfg.help) {
        usage(stdout);
        return EXIT_FOUND;
    }
    bool interactive = cfg.interactive ||
                       (cfg.raw == NULL && cfg.n_pos == 0 && isatty(STDIN_FILENO));
    const char *req[8];
    size_t n_req = 0;
    if (interactive) {
        if (cfg.raw != NULL || cfg.n_pos != 0) {
            fprintf(stderr, "nearest: -i reads requests from the prompt; no other requests\n");
            return EXIT_ERROR;
        }
    } else if (cfg.raw != NULL) {
        if (cfg.n_pos != 0) {
            fprintf(stderr, "nearest: --raw takes the whole request; no other arguments\n");
            return EXIT_ERROR;
        }
    } else if (!build_request(&cfg, req, &n_req)) {
        return EXIT_ERROR;
    }

    int status = EXIT_ERROR;
    char address[300];
    format_address(&cfg, address, sizeof address);
    struct cli_conn *conn = cli_conn_open(cfg.host, cfg.port, cfg.timeout_ms);
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
                         : run_once(&cfg, conn, address, req, n_req);
done:
    cli_conn_close(conn);
    return status;
}
