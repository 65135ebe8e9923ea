/* http.c: requests out of bytes (libhttp-parser), routes into argv
 * (liburiparser), answers out of cmd_dispatch().
 *
 * The reader keeps a request's URL (at most HTTP_MAX_URL_BYTES) and Accept
 * header (HTTP_MAX_ACCEPT_BYTES) and nothing else: every other header only
 * counts towards HTTP_MAX_HEAD_BYTES, so a connection's parser state is about
 * 5 KB however hostile the client. libhttp-parser is paused at the end of each
 * message, so one call hands out one request and pipelined requests are
 * answered in the order they came.
 *
 * The router builds the argv a line-protocol client would have typed, with
 * each query value as one argument (a value can never smuggle in a keyword of
 * its own), and lets the command layer validate it: a bad `lat` gets the same
 * ERR RANGE over HTTP as over TCP, as a 400. `crs` runs the protocol's CRS
 * command in the request's session first, so it applies to positions in and
 * out of every route alike, and is validated by the same code. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <uriparser/Uri.h>

#include "http.h"
#include "proto.h"

/* ---- The reader ---------------------------------------------------------------- */

#define HTTP_FIELD_NAME_BYTES 16      /* enough for "accept"; longer names never match */

struct http_reader {
    http_parser parser;
    size_t head_bytes;            /* of the request being read */
    size_t url_len;
    char url[HTTP_MAX_URL_BYTES + 1];
    size_t accept_len;
    char accept[HTTP_MAX_ACCEPT_BYTES + 1];
    char field[HTTP_FIELD_NAME_BYTES + 1];
    size_t field_len;             /* may exceed the buffer: then it matches nothing */
    bool in_value;                /* the last callback was a header value */
    bool complete;                /* a whole request is ready */
    bool keep_alive;
    bool over_limit;              /* head, URL or body: 413 */
    bool failed;                  /* in error: stays so */
    bool ended;                   /* a request that closes the connection was read */
};

static struct http_reader *reader_of(http_parser *p) {
    return p->data;
}

/* Counts head bytes; marks the reader over the limit (and fails the parse)
 * past HTTP_MAX_HEAD_BYTES. */
static int count_head(struct http_reader *r, size_t n) {
    r->head_bytes += n;
    if (r->head_bytes > HTTP_MAX_HEAD_BYTES) {
        r->over_limit = true;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p) {
    struct http_reader *r = reader_of(p);
    r->head_bytes = 0;
    r->url_len = 0;
    r->accept_len = 0;
    r->field_len = 0;
    r->in_value = false;
    r->complete = false;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
    struct http_reader *r = reader_of(p);
    if (n > HTTP_MAX_URL_BYTES - r->url_len) {
        r->over_limit = true;
        return -1;
    }
    memcpy(r->url + r->url_len, at, n);
    r->url_len += n;
    return count_head(r, n);
}

static bool field_is(const struct http_reader *r, const char *name) {
    return r->field_len == strlen(name) && strncasecmp(r->field, name, r->field_len) == 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
    struct http_reader *r = reader_of(p);
    size_t framing = 0;
    if (r->in_value || r->field_len == 0) {
        framing = 4; /* ": " and CRLF, once per field however it arrives */
        r->field_len = 0;
        r->in_value = false;
    }
    if (r->field_len < HTTP_FIELD_NAME_BYTES) {
        size_t room = HTTP_FIELD_NAME_BYTES - r->field_len;
        memcpy(r->field + r->field_len, at, n < room ? n : room);
    }
    r->field_len += n;
    return count_head(r, n + framing);
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
    struct http_reader *r = reader_of(p);
    if (!r->in_value && field_is(r, "accept") && r->accept_len > 0 &&
        r->accept_len < HTTP_MAX_ACCEPT_BYTES) {
        r->accept[r->accept_len++] = ','; /* a repeated Accept header joins the list */
    }
    r->in_value = true;
    if (field_is(r, "accept")) {
        size_t room = HTTP_MAX_ACCEPT_BYTES - r->accept_len;
        size_t k = n < room ? n : room;
        memcpy(r->accept + r->accept_len, at, k);
        r->accept_len += k;
    }
    return count_head(r, n);
}

static int on_headers_complete(http_parser *p) {
    struct http_reader *r = reader_of(p);
    bool has_body = (p->flags & F_CHUNKED) ||
                    (p->content_length > 0 && p->content_length != ULLONG_MAX);
    if (has_body) {
        r->over_limit = true; /* nothing here takes a body */
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
    (void)at;
    (void)n;
    reader_of(p)->over_limit = true;
    return -1;
}

static int on_message_complete(http_parser *p) {
    struct http_reader *r = reader_of(p);
    r->complete = true;
    r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    http_parser_pause(p, 1); /* one request per http_reader_next() */
    return 0;
}

static const http_parser_settings reader_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

struct http_reader *http_reader_new(void) {
    struct http_reader *r = calloc(1, sizeof *r);
    if (!r) {
        return NULL;
    }
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
    return r;
}

void http_reader_free(struct http_reader *r) {
    free(r);
}

static enum http_req_method method_of(unsigned m) {
    switch (m) {
    case HTTP_GET:
        return HTTP_REQ_GET;
    case HTTP_HEAD:
        return HTTP_REQ_HEAD;
    case HTTP_OPTIONS:
        return HTTP_REQ_OPTIONS;
    default:
        return HTTP_REQ_OTHER;
    }
}

enum http_read http_reader_next(struct http_reader *r, const char *data, size_t len,
                                size_t *consumed, struct http_request *req) {
    *consumed = 0;
    if (r->failed) {
        return HTTP_READ_ERROR;
    }
    if (r->ended || len == 0) {
        *consumed = len; /* len 0 would tell libhttp-parser the stream ended */
        return HTTP_READ_MORE;
    }
    if (HTTP_PARSER_ERRNO(&r->parser) == HPE_PAUSED) {
        http_parser_pause(&r->parser, 0);
    }
    size_t used = http_parser_execute(&r->parser, &reader_settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    if (e != HPE_OK && e != HPE_PAUSED) {
        r->failed = true;
        return HTTP_READ_ERROR;
    }
    *consumed = used > len ? len : used;
    if (!r->complete) {
        return HTTP_READ_MORE;
    }
    r->complete = false;
    r->url[r->url_len] = '\0';
    r->accept[r->accept_len] = '\0';
    req->method = method_of(r->parser.method);
    req->method_name = http_method_str((enum http_method)r->parser.method);
    req->url = r->url;
    req->accept = r->accept;
    req->keep_alive = r->keep_alive;
    if (!r->keep_alive) {
        r->ended = true;
    }
    return HTTP_READ_REQUEST;
}

/* ---- Responses ------------------------------------------------------------------ */

static const char *reason_of(int status) {
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

int http_status_of(int code) {
    switch (code) {
    case CMD_OK:
        return 200;
    case CMD_ERR_SYNTAX:
    case CMD_ERR_UNKNOWN:
    case CMD_ERR_ARG:
    case CMD_ERR_RANGE:
    case CMD_ERR_LIMIT:
        return 400;
    case CMD_ERR_NOTFOUND:
        return 404;
    case CMD_ERR_BUSY:
        return 503;
    case CMD_ERR_DENIED:
        return 403;
    default:
        return 500;
    }
}

#define CORS_METHODS "GET, HEAD, OPTIONS"

/* What a response says besides its status and body. */
struct head {
    int status;
    const char *content_type;     /* NULL: no body, no Content-Type */
    bool vary_accept;             /* the body depends on Accept */
    bool preflight;               /* OPTIONS: the CORS method and header lists */
    bool allow;                   /* 405: Allow */
    bool close;
    bool omit_body;               /* HEAD: headers as for GET, no body */
};

/* Assembles status line, headers and body into *out. Returns 0 or
 * CMD_ERR_INTERNAL. */
static int assemble(const struct head *h, const void *body, size_t body_len,
                    struct http_response *out) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n"
                     "%s%s%s"
                     "Content-Length: %zu\r\n"
                     "Access-Control-Allow-Origin: *\r\n"
                     "%s%s%s"
                     "Connection: %s\r\n\r\n",
                     h->status, reason_of(h->status),
                     h->content_type ? "Content-Type: " : "",
                     h->content_type ? h->content_type : "", h->content_type ? "\r\n" : "",
                     body_len,
                     h->vary_accept ? "Vary: Accept\r\n" : "",
                     h->preflight ? "Access-Control-Allow-Methods: " CORS_METHODS "\r\n"
                                    "Access-Control-Allow-Headers: Accept, Content-Type\r\n"
                                    "Access-Control-Max-Age: 86400\r\n"
                                  : "",
                     h->allow ? "Allow: " CORS_METHODS "\r\n" : "",
                     h->close ? "close" : "keep-alive");
    if (n < 0 || (size_t)n >= sizeof head) {
        return CMD_ERR_INTERNAL;
    }
    size_t send_body = h->omit_body ? 0 : body_len;
    char *bytes = malloc((size_t)n + send_body);
    if (!bytes) {
        return CMD_ERR_INTERNAL;
    }
    memcpy(bytes, head, (size_t)n);
    if (send_body > 0) {
        memcpy(bytes + n, body, send_body);
    }
    out->status = h->status;
    out->bytes = bytes;
    out->len = (size_t)n + send_body;
    out->close = h->close;
    return 0;
}

/* The JSON error object of `code`, as the engine writes it. Caller frees
 * *body. Returns 0 or CMD_ERR_INTERNAL. */
static int error_body(int code, const char *message, char **body, size_t *len) {
    struct reply r;
    reply_init(&r);
    r.format = REPLY_JSON;
    if (message) {
        reply_err(&r, code, "%s", message);
    } else {
        reply_err(&r, code, NULL);
    }
    bool failed = reply_failed(&r);
    *body = reply_take(&r, len);
    reply_close(&r);
    if (failed || !*body) {
        free(*body);
        *body = NULL;
        return CMD_ERR_INTERNAL;
    }
    return 0;
}

static int respond_error(const struct head *h, int code, const char *message,
                         struct http_response *out) {
    char *body = NULL;
    size_t len = 0;
    int ret = error_body(code, message, &body, &len);
    if (ret == 0) {
        struct head eh = *h;
        eh.content_type = "application/json";
        ret = assemble(&eh, body, len, out);
    }
    free(body);
    return ret;
}

int http_respond_error(int status, int code, const char *message, bool close,
                       struct http_response *out) {
    memset(out, 0, sizeof *out);
    struct head h = {.status = status, .close = close};
    return respond_error(&h, code, message, out);
}

int http_reader_error(const struct http_reader *r, struct http_response *out) {
    if (r->over_limit) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "request too large (URL at most %d bytes, head at most %d, no body); closing",
                 HTTP_MAX_URL_BYTES, HTTP_MAX_HEAD_BYTES);
        return http_respond_error(413, CMD_ERR_LIMIT, msg, true, out);
    }
    char msg[160];
    snprintf(msg, sizeof msg, "malformed HTTP request: %s; closing",
             http_errno_description(HTTP_PARSER_ERRNO(&r->parser)));
    return http_respond_error(400, CMD_ERR_SYNTAX, msg, true, out);
}

/* ---- Content negotiation -------------------------------------------------------- */

/* True when the Accept list names application/json and not
 * application/geo+json (parameters such as q are ignored). */
static bool wants_plain_json(const char *accept) {
    bool json = false, geojson = false;
    const char *p = accept;
    while (*p) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",;");
        size_t end = n;
        while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t')) {
            end--;
        }
        if (end == strlen("application/json") && strncasecmp(p, "application/json", end) == 0) {
            json = true;
        } else if (end == strlen("application/geo+json") &&
                   strncasecmp(p, "application/geo+json", end) == 0) {
            geojson = true;
        }
        p += n;
        p += strcspn(p, ","); /* skip parameters */
    }
    return json && !geojson;
}

/* ---- Routes --------------------------------------------------------------------- */

/* How a query parameter becomes arguments. */
enum param_kind {
    PARAM_POSITIONAL = 0,         /* one argument at its place among the positionals */
    PARAM_OPTIONAL_POSITIONAL,    /* the same, left out when absent */
    PARAM_KEYWORD,                /* KEYWORD value, after the positionals */
    PARAM_WHERE,                  /* WHERE field op value, repeatable */
    PARAM_CRS,                    /* runs CRS <value> in the session first */
};

struct route_param {
    const char *name;
    enum param_kind kind;
    const char *keyword;          /* PARAM_KEYWORD */
};

#define ROUTE_MAX_PARAMS 10

struct route {
    const char *path;             /* exact, or a prefix ending in '/' when id_in_path */
    const char *command;
    bool id_in_path;              /* /v1/facilities/<id>: the rest of the path is argv[1] */
    bool features;                /* answers a FeatureCollection in geojson */
    struct route_param params[ROUTE_MAX_PARAMS];
};

#define P_POS(n) {n, PARAM_POSITIONAL, NULL}
#define P_OPT(n) {n, PARAM_OPTIONAL_POSITIONAL, NULL}
#define P_KW(n, kw) {n, PARAM_KEYWORD, kw}
#define P_WHERE {"where", PARAM_WHERE, NULL}
#define P_CRS {"crs", PARAM_CRS, NULL}

static const struct route routes[] = {
    {"/v1/nearest", "NEAREST", false, true,
     {P_POS("category"), P_POS("lat"), P_POS("lon"), P_KW("k", "K"), P_KW("maxdist", "MAXDIST"),
      P_WHERE, P_KW("open", "OPEN"), P_CRS}},
    {"/v1/radius", "RADIUS", false, true,
     {P_POS("category"), P_POS("lat"), P_POS("lon"), P_POS("r"), P_KW("limit", "LIMIT"),
      P_WHERE, P_KW("open", "OPEN"), P_CRS}},
    {"/v1/inarea", "INAREA", false, true,
     {P_POS("category"), P_POS("area"), P_WHERE, P_KW("open", "OPEN"), P_CRS}},
    {"/v1/serves", "SERVES", false, true, {P_POS("lat"), P_POS("lon"), P_OPT("kind"), P_CRS}},
    {"/v1/areas", "AREAS", false, true, {P_OPT("kind"), P_CRS}},
    {"/v1/categories", "CATEGORIES", false, false, {{0}}},
    {"/v1/facilities/", "GET", true, true, {P_CRS}},
};

/* A request being routed: the argv under construction and what it owns. */
struct call {
    char **argv;
    size_t argc, cap;
    const char *crs;              /* the crs parameter, NULL when absent */
    int err;                      /* the cmd_err of a routing error, 0 */
    char message[256];
};

/* Appends a copy of arg (handlers may change their arguments in place). */
static bool push(struct call *c, const char *arg) {
    if (c->err) {
        return false;
    }
    if (c->argc == c->cap) {
        c->err = CMD_ERR_LIMIT;
        snprintf(c->message, sizeof c->message, "too many query parameters");
        return false;
    }
    char *copy = strdup(arg);
    if (!copy) {
        c->err = CMD_ERR_INTERNAL;
        snprintf(c->message, sizeof c->message, "out of memory");
        return false;
    }
    c->argv[c->argc++] = copy;
    return true;
}

/* Splits "<field><op><value>" (proto_where_split()'s rules, as the CLI's
 * --where) into the arguments WHERE field op value. */
static bool push_where(struct call *c, const char *cond) {
    struct proto_where w;
    if (proto_where_split(cond, &w)) {
        char field[PROTO_WHERE_MAX_FIELD_BYTES + 1], op[3];
        snprintf(field, sizeof field, "%.*s", (int)w.field_len, cond + w.field_at);
        snprintf(op, sizeof op, "%.*s", (int)w.op_len, cond + w.op_at);
        char *value = strndup(cond + w.value_at, w.value_len);
        bool ok = value && push(c, "WHERE") && push(c, field) && push(c, op) && push(c, value);
        if (!value) {
            c->err = CMD_ERR_INTERNAL;
            snprintf(c->message, sizeof c->message, "out of memory");
        }
        free(value);
        return ok;
    }
    char echo[REPLY_MAX_ECHO_BYTES + 1];
    c->err = CMD_ERR_ARG;
    snprintf(c->message, sizeof c->message,
             "where '%s' is not <field><op><value> with op one of >= <= != = < >",
             reply_echo(cond, echo, sizeof echo));
    return false;
}

static const struct route_param *find_param(const struct route *rt, const char *name) {
    for (size_t i = 0; i < ROUTE_MAX_PARAMS && rt->params[i].name; i++) {
        if (strcmp(rt->params[i].name, name) == 0) {
            return &rt->params[i];
        }
    }
    return NULL;
}

/* Lists the route's parameter names into buf, for error messages. */
static const char *param_list(const struct route *rt, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < ROUTE_MAX_PARAMS && rt->params[i].name; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", rt->params[i].name);
        if (n < 0 || (size_t)n >= len - used) {
            break;
        }
        used += (size_t)n;
    }
    return used ? buf : "none";
}

/* Fills c->argv from the route, the id in the path (if any) and the query
 * items. On a routing error sets c->err and c->message. */
static void build_argv(struct call *c, const struct route *rt, char *path_id,
                       UriQueryListA *items) {
    char echo[REPLY_MAX_ECHO_BYTES + 1];
    const char *value_of[ROUTE_MAX_PARAMS] = {0};
    for (UriQueryListA *it = items; it; it = it->next) {
        if (!it->key[0] && !it->value) {
            continue; /* "a=1&&b=2" */
        }
        const struct route_param *p = find_param(rt, it->key);
        if (!p) {
            char names[160];
            c->err = CMD_ERR_ARG;
            snprintf(c->message, sizeof c->message, "unknown parameter '%s' (%s takes: %s)",
                     reply_echo(it->key, echo, sizeof echo), rt->path,
                     param_list(rt, names, sizeof names));
            return;
        }
        size_t k = (size_t)(p - rt->params);
        if (p->kind != PARAM_WHERE && value_of[k]) {
            c->err = CMD_ERR_ARG;
            snprintf(c->message, sizeof c->message, "parameter '%s' given twice", p->name);
            return;
        }
        value_of[k] = it->value ? it->value : "";
    }
    push(c, rt->command);
    if (path_id) {
        push(c, path_id);
    }
    /* Positionals in order, then keywords and WHERE in query order per kind. */
    for (size_t k = 0; k < ROUTE_MAX_PARAMS && rt->params[k].name; k++) {
        const struct route_param *p = &rt->params[k];
        if (p->kind == PARAM_POSITIONAL && !value_of[k]) {
            c->err = CMD_ERR_ARG;
            snprintf(c->message, sizeof c->message, "missing parameter '%s'", p->name);
            return;
        }
        if ((p->kind == PARAM_POSITIONAL || p->kind == PARAM_OPTIONAL_POSITIONAL) &&
            value_of[k] && !push(c, value_of[k])) {
            return;
        }
    }
    for (size_t k = 0; k < ROUTE_MAX_PARAMS && rt->params[k].name; k++) {
        const struct route_param *p = &rt->params[k];
        if (p->kind == PARAM_KEYWORD && value_of[k]) {
            if (!push(c, p->keyword) || !push(c, value_of[k])) {
                return;
            }
        } else if (p->kind == PARAM_WHERE) {
            for (UriQueryListA *it = items; it; it = it->next) {
                if (strcmp(it->key, "where") == 0 && !push_where(c, it->value ? it->value : "")) {
                    return;
                }
            }
        } else if (p->kind == PARAM_CRS) {
            c->crs = value_of[k];
        }
    }
}

/* Runs argv in a fresh session of `format`; the answer's bytes go to *body.
 * Returns the command's cmd_err (0 on success). */
static int run(const struct cmd_env *env, enum reply_format format, const char *crs,
               size_t argc, char **argv, char **body, size_t *len) {
    struct cmd_session session;
    cmd_session_init(&session);
    session.format = format;
    struct reply r;
    reply_init(&r);
    r.format = format;
    int ret = 0;
    if (crs) {
        /* Not counted as a request of its own: the HTTP request is one. */
        const struct cmd_env quiet = {.catalog = env->catalog, .stats = NULL};
        char crs_copy[64];
        snprintf(crs_copy, sizeof crs_copy, "%s", crs);
        char *crs_argv[2] = {"CRS", crs_copy};
        ret = cmd_dispatch(&quiet, &session, 2, crs_argv, &r);
        if (ret == 0) {
            size_t scratch_len = 0;
            free(reply_take(&r, &scratch_len)); /* the CRS answer itself is not wanted */
        } else if (env->stats) {
            env->stats->requests++;
            env->stats->errors++;
        }
    }
    if (ret == 0) {
        ret = cmd_dispatch(env, &session, argc, argv, &r);
    }
    /* STATS' per-command counters, which the line server keeps in srv.c. */
    size_t n_specs = 0;
    const struct cmd_spec *spec = cmd_lookup(argv[0]);
    size_t row = spec ? (size_t)(spec - cmd_table(&n_specs)) : CMD_MAX_COMMANDS;
    if (env->stats && row < CMD_MAX_COMMANDS) {
        env->stats->requests_by_cmd[row]++;
        env->stats->errors_by_cmd[row] += ret < 0;
    }
    if (reply_failed(&r)) {
        ret = CMD_ERR_INTERNAL;
        *body = NULL;
        *len = 0;
    } else {
        *body = reply_take(&r, len);
    }
    reply_close(&r);
    cmd_write_free(session.pending); /* never set: no route writes */
    return ret;
}

/* True when s[0..n-1] percent-encodes a NUL byte. Decoded values are C
 * strings, so "36.6%00junk" would otherwise read as 36.6; the line protocol
 * refuses NUL bytes the same way. */
static bool has_encoded_nul(const char *s, size_t n) {
    for (size_t i = 0; i + 2 < n; i++) {
        if (s[i] == '%' && s[i + 1] == '0' && s[i + 2] == '0') {
            return true;
        }
    }
    return false;
}

/* Answers a /v1 route. */
static int respond_route(const struct cmd_env *env, const struct http_request *req,
                         const struct route *rt, const char *path, size_t path_len,
                         const char *query, size_t query_len, struct head *h,
                         struct http_response *out) {
    int ret = 0;
    struct call c = {0};
    UriQueryListA *items = NULL;
    int n_items = 0;
    char *path_id = NULL;
    char *body = NULL;
    size_t body_len = 0;
    if (has_encoded_nul(path, path_len) || has_encoded_nul(query, query_len)) {
        h->status = 400;
        ret = respond_error(h, CMD_ERR_SYNTAX, "a NUL byte (%00) in the request", out);
        goto done;
    }
    if (query_len > 0 &&
        uriDissectQueryMallocA(&items, &n_items, query, query + query_len) != URI_SUCCESS) {
        h->status = 400;
        ret = respond_error(h, CMD_ERR_SYNTAX, "malformed query string", out);
        goto done;
    }
    if (n_items > HTTP_MAX_QUERY_PARAMS) {
        h->status = 400;
        ret = respond_error(h, CMD_ERR_LIMIT, "too many query parameters", out);
        goto done;
    }
    /* The command, an id, then per item at most four arguments (WHERE f op v). */
    c.cap = 2 + 4 * (size_t)n_items;
    c.argv = calloc(c.cap, sizeof *c.argv);
    if (!c.argv) {
        ret = CMD_ERR_INTERNAL;
        goto done;
    }
    if (rt->id_in_path) {
        size_t prefix = strlen(rt->path);
        path_id = strndup(path + prefix, path_len - prefix);
        if (!path_id) {
            ret = CMD_ERR_INTERNAL;
            goto done;
        }
        uriUnescapeInPlaceA(path_id);
    }
    build_argv(&c, rt, path_id, items);
    if (c.err == CMD_ERR_INTERNAL) {
        ret = CMD_ERR_INTERNAL;
        goto done;
    }
    if (c.err) {
        h->status = http_status_of(c.err);
        ret = respond_error(h, c.err, c.message, out);
        goto done;
    }
    enum reply_format format = wants_plain_json(req->accept) ? REPLY_JSON : REPLY_GEOJSON;
    int code = run(env, format, c.crs, c.argc, c.argv, &body, &body_len);
    if (!body) {
        h->status = 500;
        ret = respond_error(h, CMD_ERR_INTERNAL, "out of memory building the answer", out);
        goto done;
    }
    h->status = http_status_of(code);
    h->content_type = code == 0 && format == REPLY_GEOJSON && rt->features
                          ? "application/geo+json"
                          : "application/json";
    ret = assemble(h, body, body_len, out);
done:
    free(body);
    free(path_id);
    for (size_t i = 0; i < c.argc; i++) {
        free(c.argv[i]);
    }
    free(c.argv);
    uriFreeQueryListA(items);
    return ret;
}

int http_respond(const struct cmd_env *env, const struct http_request *req,
                 struct http_response *out) {
    char echo[REPLY_MAX_ECHO_BYTES + 1];
    memset(out, 0, sizeof *out);
    struct head h = {.status = 200, .close = !req->keep_alive,
                     .omit_body = req->method == HTTP_REQ_HEAD};
    if (req->method == HTTP_REQ_OTHER) {
        h.status = 405;
        h.allow = true;
        char msg[128];
        snprintf(msg, sizeof msg, "method %s not allowed: the HTTP interface is read-only (%s)",
                 req->method_name ? req->method_name : "?", CORS_METHODS);
        return respond_error(&h, CMD_ERR_DENIED, msg, out);
    }
    if (req->method == HTTP_REQ_OPTIONS) {
        h.status = 204;
        h.preflight = true;
        return assemble(&h, NULL, 0, out);
    }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(req->url, strlen(req->url), 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        h.status = 400;
        return respond_error(&h, CMD_ERR_SYNTAX, "malformed request target", out);
    }
    const char *path = req->url + u.field_data[UF_PATH].off;
    size_t path_len = u.field_data[UF_PATH].len;
    const char *query = "";
    size_t query_len = 0;
    if (u.field_set & (1 << UF_QUERY)) {
        query = req->url + u.field_data[UF_QUERY].off;
        query_len = u.field_data[UF_QUERY].len;
    }
    if (path_len == 1 && path[0] == '/') {
        h.content_type = "text/html; charset=utf-8";
        return assemble(&h, http_page_html, http_page_html_len, out);
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *rt = &routes[i];
        size_t n = strlen(rt->path);
        bool match = rt->id_in_path
                         ? path_len > n && strncmp(path, rt->path, n) == 0 &&
                               !memchr(path + n, '/', path_len - n)
                         : path_len == n && strncmp(path, rt->path, n) == 0;
        if (match) {
            h.vary_accept = true;
            return respond_route(env, req, rt, path, path_len, query, query_len, &h, out);
        }
    }
    char shown[HTTP_MAX_URL_BYTES + 1];
    snprintf(shown, sizeof shown, "%.*s", (int)path_len, path);
    char msg[256];
    snprintf(msg, sizeof msg, "no route '%s' (GET /, /v1/nearest, /v1/radius, /v1/inarea, "
             "/v1/serves, /v1/areas, /v1/categories, /v1/facilities/<id>)",
             reply_echo(shown, echo, sizeof echo));
    h.status = 404;
    return respond_error(&h, CMD_ERR_NOTFOUND, msg, out);
}
