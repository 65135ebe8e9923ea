/* http_srv.h: the libuv side of the HTTP interface.
 *
 * A listener on the line server's event loop whose connections feed their
 * bytes to an http_reader and send what http_respond() builds (http.h): the
 * same catalogue, the same command table, on the same thread, so an HTTP
 * answer is always consistent with the line protocol's at that moment.
 * Keep-alive per HTTP/1.1; the responses to pipelined requests leave in
 * request order, those of one read in one write. Read-only by construction:
 * no route runs a write command, so any address may serve it.
 *
 * Limits: the request limits of http.h (413 and close); at most
 * max_connections open at once (one more gets a 503 and is closed); a
 * connection that completes no request and has no response taken by the
 * kernel for idle_timeout_ms is closed; a client that does not read its
 * responses stops being read once max_output_bytes of them wait. A connection
 * that is to close (Connection: close, an error) shuts its side down after
 * its last response and drops what the client still sends, so that the
 * response is not lost to a reset, for at most 2 s (or the idle timeout). */
#ifndef NEARESTD_HTTP_SRV_H
#define NEARESTD_HTTP_SRV_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cmd.h"

#define HTTP_SRV_DEFAULT_MAX_CONNECTIONS 1000
#define HTTP_SRV_DEFAULT_IDLE_TIMEOUT_MS 60000  /* browsers keep idle connections ~1 min */
#define HTTP_SRV_DEFAULT_MAX_OUTPUT_BYTES (512 << 10) /* three answers of every area
                                                        * polygon (150 KB each); at the
                                                        * connection cap, 500 MB at most */
#define HTTP_SRV_DEFAULT_DRAIN_TIMEOUT_MS 5000

struct http_srv;

struct http_srv_config {
    size_t max_connections;       /* open at once; >= 1 */
    uint64_t idle_timeout_ms;     /* 0: never */
    size_t max_output_bytes;      /* unsent responses that stop reading a client; >= 1 */
    uint64_t drain_timeout_ms;    /* http_srv_close(): responses being sent get this long */
};

/* Sets the HTTP_SRV_DEFAULT_* values. Added fields get defaults here, so start
 * from this. */
void http_srv_config_init(struct http_srv_config *cfg);

/* Starts serving HTTP on host:port (an IPv4 or IPv6 literal; port 0 picks a
 * free one) on `loop`, answering from env (copied; the catalogue and counters
 * it points to are borrowed until http_srv_free()). On success *out is the
 * caller's: run the loop, http_srv_close(), then http_srv_free() once uv_run()
 * has returned. On failure returns a negative libuv error (UV_EINVAL for a
 * zero limit), writes one line to err, and leaves no handle open. */
int http_srv_open(uv_loop_t *loop, const struct cmd_env *env, const char *host, int port,
                  const struct http_srv_config *cfg, struct http_srv **out, char *err,
                  size_t err_len);

/* Answers from `catalog` from now on (borrowed like env's). The line server's
 * SIGHUP reload calls this through srv_on_reload() before it frees the old
 * catalogue. */
void http_srv_set_catalog(struct http_srv *s, struct catalog *catalog);

/* The port actually bound, or a negative libuv error. */
int http_srv_port(const struct http_srv *s);

/* Stops accepting and reading. Each connection closes once the responses it
 * was given are sent (requests not yet read or answered get none); after
 * cfg.drain_timeout_ms whatever is left is closed, and one line logged.
 * Idempotent. The loop returns once the closes complete. */
void http_srv_close(struct http_srv *s);

/* Frees the server; only after http_srv_close() and uv_run() has returned.
 * NULL is a no-op. */
void http_srv_free(struct http_srv *s);

#endif
