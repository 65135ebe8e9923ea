/* srv.h: the libuv TCP server.
 *
 * One event loop, one thread. Each connection owns its uv_tcp_t, a
 * proto_reader and an output buffer; what one read produced (any number of
 * pipelined requests) is sent with one uv_write, so answers leave in request
 * order. A write stops its connection's pipeline until the group commit it
 * joined has answered, so answers stay in order across writes too. Every
 * request line passes auth_gate() first (auth.h: who may write, AUTH), and
 * struct srv_config sets the connection limits (PROTOCOL.md, "Limits"). The
 * server handles SIGINT and SIGTERM itself: it stops accepting and reading,
 * answers the writes already queued (srv_close()), closes every connection,
 * and lets uv_run() return. SIGHUP rebuilds the catalogue from the database
 * and swaps it in (srv_on_reload()). */
#ifndef NEARESTD_SRV_H
#define NEARESTD_SRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "auth.h"
#include "cmd.h"

#define SRV_BACKLOG 511
#define SRV_READ_BYTES 65536          /* one read's worth, the proto_feed() unit */
#define SRV_MAX_QUEUED_BYTES (1 << 20) /* unsent output that pauses reading a client */
#define SRV_DEFAULT_MAX_CONNECTIONS 10000
#define SRV_DEFAULT_IDLE_TIMEOUT_MS 300000 /* five minutes */
#define SRV_DEFAULT_DRAIN_TIMEOUT_MS 5000  /* SIGTERM: longest wait for answers in flight */
#define SRV_MAX_THREADS 64                 /* event loops serving connections */

struct srv;

/* Limits and the write rule. Start from srv_config_init(), change fields. */
struct srv_config {
    size_t max_connections;       /* open at once; one more is answered ERR LIMIT and closed */
    uint64_t idle_timeout_ms;     /* a connection that completes no request and receives
                                   * none of its answers for this long is closed; 0: never */
    size_t max_output_bytes;      /* unsent answers of one connection that stop it from being
                                   * read and executed; resumed below half */
    struct auth_policy auth;      /* token; read_only is decided by srv_open_config() */
    const char *db_path;          /* the store's file, for STATS db_bytes and the SIGHUP
                                   * reload; NULL: 0 and no reload. Borrowed until
                                   * srv_free() */
    uint64_t drain_timeout_ms;    /* srv_close(): answers in flight get this long, then
                                   * what is left is closed unanswered */
    bool owns_catalog;            /* srv_open_config() takes the catalogue on success and
                                   * srv_free() frees it; SIGHUP may then replace it.
                                   * false: borrowed, and SIGHUP is ignored */
    unsigned threads;             /* event loops serving connections, 1..SRV_MAX_THREADS
                                   * (0 means 1): the caller's loop, which also accepts,
                                   * commits writes and reloads, plus threads - 1 loops
                                   * on threads of their own that serve reads (srv.c,
                                   * "Threads") */
};

/* Sets the defaults: SRV_DEFAULT_MAX_CONNECTIONS, SRV_DEFAULT_IDLE_TIMEOUT_MS,
 * SRV_MAX_QUEUED_BYTES of output, SRV_DEFAULT_DRAIN_TIMEOUT_MS, no token, the
 * catalogue borrowed. */
void srv_config_init(struct srv_config *cfg);

/* Starts serving `catalog` on host:port (an IPv4 or IPv6 literal; port 0
 * picks a free one) on `loop`, and installs the SIGINT/SIGTERM handlers.
 * Writes go to `store` in group commits on libuv's thread pool; nothing else
 * may use the store while the loop runs. Catalogue and store are borrowed
 * until srv_free(). On success *out is the
 * caller's; run the loop, then free with srv_free(). On failure returns a
 * negative libuv error, writes one line to err, and leaves no handle open. */
int srv_open(uv_loop_t *loop, struct catalog *catalog, struct store *store, const char *host,
             int port, struct srv **out, char *err, size_t err_len);

/* srv_open() with limits and a write rule (copied; cfg may be freed after).
 * With cfg->owns_catalog the catalogue becomes the server's on success (on
 * failure it stays the caller's).
 * A listener on a non-loopback address without a token is read-only: every
 * write is refused (see auth.h); srv_is_read_only() tells. Fails like
 * srv_open(), and with UV_EINVAL when max_connections or max_output_bytes
 * is 0. */
int srv_open_config(uv_loop_t *loop, struct catalog *catalog, struct store *store,
                    const char *host, int port, const struct srv_config *cfg,
                    struct srv **out, char *err, size_t err_len);

/* True when the server refuses every write (see srv_open_config()). */
bool srv_is_read_only(const struct srv *s);

/* The port actually bound (useful after port 0), or a negative libuv error. */
int srv_port(const struct srv *s);

/* Starts shutting down: stops accepting and reading. Every connection is
 * closed once the answers it was given and the answer to its queued write
 * have been sent: queued writes keep committing, in group commits as usual,
 * and are answered. Requests pipelined behind a
 * queued write are not executed. After cfg.drain_timeout_ms whatever is left
 * is closed unanswered (writes not yet started are dropped, so never
 * acknowledged). uv_run() returns once the closes complete and a group commit
 * already running has finished. The signal handlers stay open until then, so
 * a second SIGINT/SIGTERM, or a SIGHUP, during the drain is logged and
 * ignored. Idempotent; the SIGINT/SIGTERM handlers call it. */
void srv_close(struct srv *s);

/* Frees the server. Call only after srv_close() and after uv_run() has
 * returned, when no handle of it is open any more. NULL is a no-op. */
void srv_free(struct srv *s);

/* Registers fn(arg) to run once, when srv_close() starts (a signal or a call),
 * so that another listener on the same loop, such as the HTTP one
 * (http_srv.h), shuts down together with this one. One hook per server; a
 * second call replaces the first. */
void srv_on_close(struct srv *s, void (*fn)(void *arg), void *arg);

/* SIGHUP (with cfg.owns_catalog and a db_path): the server builds a new
 * catalogue from the database on the thread pool, holding write groups from
 * the signal until the swap (reads go on from the old one), swaps it in on the
 * loop thread, calls fn(arg, new catalogue), frees the old one and logs one
 * line with the counts. Anything else that reads the catalogue on this loop
 * (the HTTP server) must take the new pointer in fn, since the old one is
 * freed when fn returns. On failure the old catalogue stays and one line is
 * logged. One hook per server; a second call replaces the first. */
void srv_on_reload(struct srv *s, void (*fn)(void *arg, struct catalog *catalog), void *arg);

/* The catalogue the server answers from now (it changes at a reload).
 * Borrowed; valid until the next reload or srv_free(). */
struct catalog *srv_catalog(const struct srv *s);

/* The main loop's counters, which the HTTP server adds to (STATS shows them
 * added to the other loops', with --threads). Borrowed; valid until
 * srv_free(). */
struct cmd_stats *srv_stats(struct srv *s);

#endif
