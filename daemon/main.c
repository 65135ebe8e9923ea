/* main.c: nearestd's command line, start-up and shut-down.
 *
 *   nearestd [--listen HOST:PORT] [--http HOST:PORT] [--db PATH] [--init] [--dataset DIR]
 *            [--auth-token-file PATH] [--max-connections N] [--idle-timeout-ms MS]
 *            [--max-output-bytes N] [--shutdown-timeout-ms MS] [--help]
 *
 * Start-up either succeeds and logs one "serving" line, or prints one line to
 * stderr and exits non-zero: 2 for a bad command line, 1 for anything else
 * (missing or bad database, bad address, port in use, unreadable or empty
 * token file). A non-loopback address without a token file starts read-only,
 * and the log says so in its own line. --http adds an HTTP listener on the
 * same loop (http_srv.h), read-only on any address, logged in a line of its
 * own and shut down with the line server. A database that another process
 * holds locked for writing (longer than STORE_BUSY_TIMEOUT_MS) is a start-up
 * error too, since every write would fail. The open-file limit is raised to
 * its hard limit, so --max-connections is not capped by a soft 1024. The
 * daemon then runs until SIGINT or SIGTERM, answers the writes in flight
 * (srv.h, srv_close()), closes the store and exits 0. SIGHUP reloads the
 * catalogue from the database. */
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include "auth.h"
#include "catalog.h"
#include "http_srv.h"
#include "proto.h"
#include "srv.h"
#include "store.h"

#ifndef NEARESTD_DATASET_DIR
#define NEARESTD_DATASET_DIR "data/licang"
#endif

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_DB "nearestd.db"
#define MAX_HOST_BYTES 256

static const char usage[] =
    "usage: nearestd [--listen HOST:PORT] [--http HOST:PORT] [--db PATH] [--init]\n"
    "                [--dataset DIR] [--auth-token-file PATH] [--max-connections N]\n"
    "                [--idle-timeout-ms MS] [--max-output-bytes N]\n"
    "                [--shutdown-timeout-ms MS] [--threads N] [--help]\n"
    "  --listen HOST:PORT  address to serve on (default " DEFAULT_HOST ":%d);\n"
    "                      an IPv6 host goes in brackets: [::1]:7878\n"
    "  --http HOST:PORT    also serve the read-only HTTP/GeoJSON API and the map page\n"
    "                      there (docs/HTTP.md); any address, it cannot write\n"
    "  --db PATH           SpatiaLite database (default " DEFAULT_DB ")\n"
    "  --init              create the database from the dataset if PATH does not exist\n"
    "  --dataset DIR       dataset for --init (default %s)\n"
    "  --auth-token-file PATH  writes need AUTH with the token on the file's first line;\n"
    "                      without it, writes come from loopback clients only, and a\n"
    "                      non-loopback --listen makes the daemon read-only\n"
    "  --max-connections N connections open at once (default %d), and as many HTTP ones\n"
    "  --idle-timeout-ms MS  close a connection idle this long, 0 never (default %d)\n"
    "  --max-output-bytes N  unsent answers that pause a connection (default %d)\n"
    "  --shutdown-timeout-ms MS  on SIGTERM, how long answers in flight may take\n"
    "                      before the rest is closed unanswered (default %d)\n"
    "  --threads N         event loops serving the line protocol, 1..%d (default 1): one\n"
    "                      accepts and commits writes, the others answer reads on\n"
    "                      threads of their own\n"
    "  --help              print this and exit\n";

struct options {
    char host[MAX_HOST_BYTES];
    int port;
    const char *db;
    const char *dataset;
    bool init;
    bool help;
    const char *token_file;
    unsigned long long max_connections;
    unsigned long long threads;
    unsigned long long idle_timeout_ms;
    unsigned long long max_output_bytes;
    unsigned long long shutdown_timeout_ms;
    bool http;                    /* --http given */
    char http_host[MAX_HOST_BYTES];
    int http_port;
};

/* Parses a decimal count in [min, max]. Returns false on anything else. */
static bool parse_count(const char *arg, unsigned long long min, unsigned long long max,
                        unsigned long long *out) {
    if (!*arg || strlen(arg) > 19 || strspn(arg, "0123456789") != strlen(arg)) {
        return false;
    }
    unsigned long long v = strtoull(arg, NULL, 10);
    if (v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* Parses "HOST:PORT", "[V6]:PORT" or ":PORT" (default host). Returns false on
 * a malformed address. */
static bool parse_listen(const char *arg, struct options *o) {
    const char *colon = strrchr(arg, ':');
    if (!colon) {
        return false;
    }
    const char *host = arg;
    size_t host_len = (size_t)(colon - arg);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    } else if (memchr(host, ':', host_len)) {
        return false; /* an IPv6 literal needs brackets */
    }
    if (host_len >= sizeof o->host) {
        return false;
    }
    const char *p = colon + 1;
    if (!*p || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p)) {
        return false;
    }
    long port = strtol(p, NULL, 10);
    if (port > 65535) {
        return false;
    }
    if (host_len == 0) {
        snprintf(o->host, sizeof o->host, "%s", DEFAULT_HOST);
    } else {
        memcpy(o->host, host, host_len);
        o->host[host_len] = '\0';
    }
    o->port = (int)port;
    return true;
}

/* Returns 0, or 2 after printing one line about a bad command line. */
static int parse_args(int argc, char **argv, struct options *o) {
    snprintf(o->host, sizeof o->host, "%s", DEFAULT_HOST);
    o->port = PROTO_DEFAULT_PORT;
    o->db = DEFAULT_DB;
    o->dataset = NEARESTD_DATASET_DIR;
    o->max_connections = SRV_DEFAULT_MAX_CONNECTIONS;
    o->idle_timeout_ms = SRV_DEFAULT_IDLE_TIMEOUT_MS;
    o->max_output_bytes = SRV_MAX_QUEUED_BYTES;
    o->shutdown_timeout_ms = SRV_DEFAULT_DRAIN_TIMEOUT_MS;
    o->threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        static const char *const with_value[] = {
            "--listen", "--http", "--db", "--dataset", "--auth-token-file", "--max-connections",
            "--idle-timeout-ms", "--max-output-bytes", "--shutdown-timeout-ms", "--threads"};
        bool takes_value = false;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) {
            takes_value = takes_value || strcmp(a, with_value[k]) == 0;
        }
        if (takes_value && i + 1 >= argc) {
            fprintf(stderr, "nearestd: %s needs a value (see --help)\n", a);
            return 2;
        }
        if (strcmp(a, "--listen") == 0) {
            if (!parse_listen(argv[++i], o)) {
                fprintf(stderr, "nearestd: bad --listen '%s': expected HOST:PORT\n", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--http") == 0) {
            struct options addr;
            if (!parse_listen(argv[++i], &addr)) {
                fprintf(stderr, "nearestd: bad --http '%s': expected HOST:PORT\n", argv[i]);
                return 2;
            }
            o->http = true;
            memcpy(o->http_host, addr.host, sizeof o->http_host);
            o->http_port = addr.port;
        } else if (strcmp(a, "--db") == 0) {
            o->db = argv[++i];
        } else if (strcmp(a, "--dataset") == 0) {
            o->dataset = argv[++i];
        } else if (strcmp(a, "--auth-token-file") == 0) {
            o->token_file = argv[++i];
        } else if (strcmp(a, "--max-connections") == 0) {
            if (!parse_count(argv[++i], 1, 1000000, &o->max_connections)) {
                fprintf(stderr, "nearestd: bad --max-connections '%s': expected 1..1000000\n",
                        argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--idle-timeout-ms") == 0) {
            if (!parse_count(argv[++i], 0, 86400000, &o->idle_timeout_ms)) {
                fprintf(stderr, "nearestd: bad --idle-timeout-ms '%s': expected 0..86400000\n",
                        argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--max-output-bytes") == 0) {
            /* At most 1 GiB: libuv takes a buffer's length as unsigned int. */
            if (!parse_count(argv[++i], 1024, 1ull << 30, &o->max_output_bytes)) {
                fprintf(stderr,
                        "nearestd: bad --max-output-bytes '%s': expected 1024..1073741824\n",
                        argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--shutdown-timeout-ms") == 0) {
            if (!parse_count(argv[++i], 0, 600000, &o->shutdown_timeout_ms)) {
                fprintf(stderr, "nearestd: bad --shutdown-timeout-ms '%s': expected 0..600000\n",
                        argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--threads") == 0) {
            if (!parse_count(argv[++i], 1, SRV_MAX_THREADS, &o->threads)) {
                fprintf(stderr, "nearestd: bad --threads '%s': expected 1..%d\n", argv[i],
                        SRV_MAX_THREADS);
                return 2;
            }
        } else if (strcmp(a, "--init") == 0) {
            o->init = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = true;
        } else {
            fprintf(stderr, "nearestd: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    return 0;
}

/* srv_on_close()'s hook: the HTTP listener stops with the line server. */
static void close_http(void *http) {
    http_srv_close(http);
}

/* srv_on_reload()'s hook: the HTTP listener answers from the new catalogue. */
static void reload_http(void *http, struct catalog *catalog) {
    http_srv_set_catalog(http, catalog);
}

/* Raises the soft open-file limit to the hard one: each connection is a file
 * descriptor, and a soft limit of 1024 would turn clients away with accept
 * errors long before --max-connections. Says so when the limit stays below
 * what max_connections (the line server's and HTTP's) need. */
static void raise_file_limit(unsigned long long max_connections) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            getrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    /* The listener, the database, its WAL and shared memory, libuv's own. */
    const rlim_t spare = 32;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < max_connections + spare) {
        fprintf(stderr, "nearestd: warning: the open-file limit (%llu) is below the "
                        "connections allowed (%llu, HTTP's included) plus %d; connections "
                        "past it fail to accept\n",
                (unsigned long long)rl.rlim_cur, max_connections, (int)spare);
    }
}

/* The store's messages start with "PATH: "; main's lines name the path once. */
static const char *without_path(const char *err, const char *path) {
    size_t n = strlen(path);
    if (strncmp(err, path, n) == 0 && err[n] == ':' && err[n + 1] == ' ') {
        return err + n + 2;
    }
    return err;
}

int main(int argc, char **argv) {
    struct options opt = {0};
    int status = parse_args(argc, argv, &opt);
    if (status != 0) {
        return status;
    }
    if (opt.help) {
        printf(usage, PROTO_DEFAULT_PORT, NEARESTD_DATASET_DIR, SRV_DEFAULT_MAX_CONNECTIONS,
               SRV_DEFAULT_IDLE_TIMEOUT_MS, SRV_MAX_QUEUED_BYTES, SRV_DEFAULT_DRAIN_TIMEOUT_MS,
               SRV_MAX_THREADS);
        return 0;
    }
    /* A client that vanishes mid-write must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);
    raise_file_limit(opt.max_connections +
                     (opt.http ? HTTP_SRV_DEFAULT_MAX_CONNECTIONS : 0));

    char err[512] = "";
    struct store *st = NULL;
    struct catalog *cat = NULL;
    struct srv *srv = NULL;
    struct http_srv *http = NULL;
    bool srv_owns_cat = false;
    uv_loop_t *loop = NULL;
    status = 1;

    struct srv_config cfg;
    srv_config_init(&cfg);
    cfg.max_connections = (size_t)opt.max_connections;
    cfg.threads = (unsigned)opt.threads;
    cfg.idle_timeout_ms = opt.idle_timeout_ms;
    cfg.max_output_bytes = (size_t)opt.max_output_bytes;
    cfg.drain_timeout_ms = opt.shutdown_timeout_ms;
    cfg.db_path = opt.db;
    cfg.owns_catalog = true; /* SIGHUP replaces it */
    if (opt.token_file && auth_token_load(&cfg.auth, opt.token_file, err, sizeof err) < 0) {
        fprintf(stderr, "nearestd: %s\n", err);
        goto done;
    }

    if (access(opt.db, F_OK) != 0) {
        if (!opt.init) {
            fprintf(stderr, "nearestd: database '%s' does not exist (create it with --init)\n",
                    opt.db);
            goto done;
        }
        int ret = store_create(opt.db, opt.dataset, err, sizeof err);
        if (ret < 0) {
            fprintf(stderr, "nearestd: cannot create '%s' from '%s': %s\n", opt.db,
                    opt.dataset, err[0] ? err : store_strerror(ret));
            goto done;
        }
    }
    int ret = store_open(opt.db, &st, err, sizeof err);
    if (ret < 0) {
        fprintf(stderr, "nearestd: cannot open '%s': %s\n", opt.db,
                err[0] ? without_path(err, opt.db) : store_strerror(ret));
        st = NULL;
        goto done;
    }
    cat = catalog_new();
    if (!cat) {
        fprintf(stderr, "nearestd: out of memory\n");
        goto done;
    }
    ret = catalog_load(cat, st, err, sizeof err);
    if (ret < 0) {
        fprintf(stderr, "nearestd: cannot load '%s': %s\n", opt.db, err);
        goto done;
    }
    /* The store's page cache is sized for imports (hundreds of MB) and the
     * walk above has just filled it: reopen the store to drop it, and hand
     * the freed heap back, since the daemon reads only its catalogue. */
    store_close(st);
    st = NULL;
    ret = store_open(opt.db, &st, err, sizeof err);
    if (ret < 0) {
        fprintf(stderr, "nearestd: cannot reopen '%s': %s\n", opt.db,
                err[0] ? without_path(err, opt.db) : store_strerror(ret));
        st = NULL;
        goto done;
    }
    ret = store_write_probe(st, err, sizeof err);
    if (ret < 0) {
        fprintf(stderr, "nearestd: cannot write '%s': %s\n", opt.db,
                err[0] ? err : store_strerror(ret));
        goto done;
    }
    malloc_trim(0);
    loop = uv_default_loop();
    if (!loop) {
        fprintf(stderr, "nearestd: cannot create the event loop\n");
        goto done;
    }
    bool has_token = cfg.auth.has_token;
    ret = srv_open_config(loop, cat, st, opt.host, opt.port, &cfg, &srv, err, sizeof err);
    explicit_bzero(&cfg.auth, sizeof cfg.auth); /* the server keeps its own copy */
    if (ret < 0) {
        fprintf(stderr, "nearestd: %s\n", err);
        srv = NULL;
        goto done;
    }
    srv_owns_cat = true; /* srv_free() frees it, or the one a reload put in its place */
    fprintf(stderr, "nearestd: serving %zu facilities on %s%s%s:%d\n", catalog_count(cat),
            strchr(opt.host, ':') ? "[" : "", opt.host, strchr(opt.host, ':') ? "]" : "",
            srv_port(srv));
    if (srv_is_read_only(srv)) {
        fprintf(stderr, "nearestd: read-only mode: listening on a non-loopback address without "
                        "--auth-token-file; PUT, SET and DEL are refused\n");
    } else if (has_token) {
        fprintf(stderr, "nearestd: writes need AUTH (token from %s)\n", opt.token_file);
    }
    if (opt.http) {
        struct http_srv_config http_cfg;
        http_srv_config_init(&http_cfg);
        http_cfg.idle_timeout_ms = opt.idle_timeout_ms;
        /* A cap of its own, at most HTTP's default: each HTTP connection may
         * hold up to max_output_bytes of unsent responses. */
        http_cfg.max_connections = opt.max_connections < HTTP_SRV_DEFAULT_MAX_CONNECTIONS
                                       ? (size_t)opt.max_connections
                                       : HTTP_SRV_DEFAULT_MAX_CONNECTIONS;
        http_cfg.drain_timeout_ms = opt.shutdown_timeout_ms;
        struct cmd_env env = {.catalog = cat, .stats = srv_stats(srv)};
        ret = http_srv_open(loop, &env, opt.http_host, opt.http_port, &http_cfg, &http, err,
                            sizeof err);
        if (ret < 0) {
            fprintf(stderr, "nearestd: %s\n", err);
            http = NULL;
            srv_close(srv);
            uv_run(loop, UV_RUN_DEFAULT); /* lets the closes complete */
            goto done;
        }
        srv_on_close(srv, close_http, http);
        srv_on_reload(srv, reload_http, http);
        fprintf(stderr, "nearestd: serving HTTP (read-only) on http://%s%s%s:%d/\n",
                strchr(opt.http_host, ':') ? "[" : "", opt.http_host,
                strchr(opt.http_host, ':') ? "]" : "", http_srv_port(http));
    }
    ret = uv_run(loop, UV_RUN_DEFAULT);
    (void)ret; /* non-zero only if uv_stop() was called, which nothing does */
    fprintf(stderr, "nearestd: stopped\n");
    status = 0;
done:
    http_srv_free(http);
    srv_free(srv);
    if (loop) {
        ret = uv_loop_close(loop);
        if (ret < 0 && status == 0) {
            fprintf(stderr, "nearestd: uv_loop_close: %s\n", uv_strerror(ret));
            status = 1;
        }
    }
    if (!srv_owns_cat) {
        catalog_free(cat);
    }
    store_close(st);
    return status;
}
