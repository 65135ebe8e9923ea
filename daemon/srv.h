/* srv.h: the libuv TCP server.
 *
 * One event loop, one thread. Each connection owns its uv_tcp_t, a
 * proto_reader and an output buffer; what one read produced (any number of
 * pipelined requests) is sent with one uv_write, so answers leave in request
 * order. A write stops its connection's pipeline until the group commit it
 * joined has answered, so answers stay in order across writes too. The
 * server handles SIGINT and SIGTERM itself: it stops accepting,
 * closes every connection, and lets uv_run() return. */
#ifndef NEARESTD_SRV_H
#define NEARESTD_SRV_H

#include <stddef.h>

#include <uv.h>

#include "cmd.h"

#define SRV_BACKLOG 511
#define SRV_READ_BYTES 65536          /* one read's worth, the proto_feed() unit */
#define SRV_MAX_QUEUED_BYTES (1 << 20) /* unsent output that pauses reading a client */

struct srv;

/* Starts serving `catalog` on host:port (an IPv4 or IPv6 literal; port 0
 * picks a free one) on `loop`, and installs the SIGINT/SIGTERM handlers.
 * Writes go to `store` in group commits on libuv's thread pool; nothing else
 * may use the store while the loop runs. Catalogue and store are borrowed
 * until srv_free(). On success *out is the
 * caller's; run the loop, then free with srv_free(). On failure returns a
 * negative libuv error, writes one line to err, and leaves no handle open. */
int srv_open(uv_loop_t *loop, struct catalog *catalog, struct store *store, const char *host,
             int port, struct srv **out, char *err, size_t err_len);

/* The port actually bound (useful after port 0), or a negative libuv error. */
int srv_port(const struct srv *s);

/* Starts shutting down: stops accepting, closes every connection (answers in
 * flight are dropped; queued writes that have not started are dropped
 * unanswered; a group commit already running completes) and the signal
 * handlers. uv_run() returns once the closes complete. Idempotent; the
 * signal handlers call it. */
void srv_close(struct srv *s);

/* Frees the server. Call only after srv_close() and after uv_run() has
 * returned, when no handle of it is open any more. NULL is a no-op. */
void srv_free(struct srv *s);

/* The counters STATS shows. Borrowed; valid until srv_free(). */
struct cmd_stats *srv_stats(struct srv *s);

#endif
