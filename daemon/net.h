/* net.h: the TCP plumbing the two servers on the loop share.
 *
 * srv.c (the line protocol) and http_srv.c (HTTP) both listen on an IPv4 or
 * IPv6 literal, accept connections into a list, turn away those past a
 * connection cap, close idle ones from a sweep timer, and close every
 * connection through one function and free it in its close callback. That
 * much lives here; reading, answering, writing and shutting down stay with
 * each server, whose output paths differ on purpose (srv.c tries the socket
 * before queueing a write and keeps spare buffers; HTTP lingers after its last
 * response).
 *
 * libuv's rules hold throughout: a handle that was init'ed is uv_close'd,
 * and its memory is released only in its close callback. A server embeds
 * struct net_conn as the first member of its connection struct, so that the
 * callbacks below can hand back the server's own struct by a cast. */
#ifndef NEARESTD_NET_H
#define NEARESTD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct net_conns;

/* One accepted connection: the part every server has. Fields are the
 * server's to read; net_ functions set them. */
struct net_conn {
    uv_tcp_t tcp;                 /* tcp.data points back here */
    struct net_conns *conns;      /* the list it was accepted into */
    struct net_conn *prev, *next; /* in conns->head while not closing */
    bool closing;                 /* net_conn_close() was called */
    bool counted;                 /* within the cap, in *conns->n_open */
    uint64_t active_ms;           /* uv_now() of the last request or answer sent; the
                                   * server updates it, the sweep reads it */
};

/* The connections of one listener. Set the fields with net_conns_init();
 * the list is then managed by the functions below. */
struct net_conns {
    uv_loop_t *loop;
    struct net_conn *head;        /* open connections, newest first */
    uint64_t *n_open;             /* counted connections; the server's counter, which
                                   * several lists may share (atomic operations) */
    size_t max_connections;       /* connections beyond this are not counted */
    size_t conn_bytes;            /* size of the server's connection struct */
    const char *name;             /* for the log: "accept" or "http accept" */
    /* Runs in the close callback of every connection that was accepted: it
     * frees what the server attached, then the struct itself (free(c)). */
    void (*on_free)(struct net_conn *c);
    /* Runs after net_conn_close() has started a close; NULL for none. */
    void (*on_closed)(struct net_conns *conns);
    void *owner;                  /* the server, for its callbacks */
};

/* Fills `conns` with an empty list. n_open is borrowed until every
 * connection is freed; name must be a string literal or live as long. */
void net_conns_init(struct net_conns *conns, uv_loop_t *loop, void *owner, size_t conn_bytes,
                    uint64_t *n_open, size_t max_connections, const char *name,
                    void (*on_free)(struct net_conn *c),
                    void (*on_closed)(struct net_conns *conns));

/* Parses host (an IPv4 or IPv6 literal) and port into *addr. Returns 0, or a
 * negative libuv error with one line written to err. */
int net_addr_parse(const char *host, int port, struct sockaddr_storage *addr, char *err,
                   size_t err_len);

/* Binds the init'ed `listener` to addr and listens with `backlog`; new
 * connections go to cb. Returns 0 or a negative libuv error; the listener is
 * still the caller's to uv_close() either way. */
int net_listen(uv_tcp_t *listener, const struct sockaddr *addr, int backlog,
               uv_connection_cb cb);

/* The port `listener` is bound to, or a negative libuv error. */
int net_port(const uv_tcp_t *listener);

/* For a listener's connection callback: allocates conns->conn_bytes zeroed
 * bytes, accepts the connection into them, links it at the head of the list,
 * sets active_ms to now and TCP_NODELAY, and counts it if fewer than
 * max_connections are counted (c->counted false: the server turns it away,
 * then closes it). The result is owned by the list: close it only with
 * net_conn_close(); on_free frees it. Returns NULL, with one line logged,
 * when status is an error or the accept fails (nothing is left open). */
struct net_conn *net_conn_accept(struct net_conns *conns, uv_stream_t *listener, int status);

/* For a connection accepted on another loop's thread and handed over as a
 * socket: wraps fd (owned from now on; closed on failure) in a connection
 * on conns's loop, links it and sets active_ms, like net_conn_accept(). It
 * is marked counted: the thread that accepted it has counted it in
 * *conns->n_open already. Returns NULL, with one line logged, on failure. */
struct net_conn *net_conn_adopt(struct net_conns *conns, uv_os_sock_t fd);

/* Closes c, once: unlinks it, uncounts it, uv_close()s its socket (its
 * pending write callbacks run before on_free), then runs on_closed. */
void net_conn_close(struct net_conn *c);

/* Starts the init'ed timer `sweep` calling cb a few times per idle timeout
 * (a quarter of it, so that a connection is closed at most 25 % late,
 * between 10 ms and 1 s), unref'ed: the listener keeps the loop alive.
 * idle_timeout_ms 0 starts nothing. Returns 0 or a negative libuv error. */
int net_sweep_start(uv_timer_t *sweep, uint64_t idle_timeout_ms, uv_timer_cb cb);

/* One sweep: closes every connection with now - active_ms >= limit_ms(c, now),
 * where limit_ms is the server's rule for that connection (it may also move
 * c->active_ms, say, for a connection the server keeps busy). */
void net_conns_sweep(struct net_conns *conns,
                     uint64_t (*limit_ms)(struct net_conn *c, uint64_t now));

#endif
