/* net.c: listening, accepting, the connection list, closing and the idle
 * sweep, shared by srv.c and http_srv.c (see net.h).
 *
 * The list is doubly linked so that a close unlinks in O(1); the sweep walks
 * all of it a few times per idle timeout, which at the line server's default
 * cap of 10,000 connections is some microseconds per pass.
 *
 * The count of open connections may be shared by the lists of several loop
 * threads (srv.c with --threads): one thread accepts and counts up, any
 * thread counts down as it closes, so the count is read and changed with
 * atomic operations. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "net.h"

void net_conns_init(struct net_conns *conns, uv_loop_t *loop, void *owner, size_t conn_bytes,
                    uint64_t *n_open, size_t max_connections, const char *name,
                    void (*on_free)(struct net_conn *c),
                    void (*on_closed)(struct net_conns *conns)) {
    conns->loop = loop;
    conns->head = NULL;
    conns->n_open = n_open;
    conns->max_connections = max_connections;
    conns->conn_bytes = conn_bytes;
    conns->name = name;
    conns->on_free = on_free;
    conns->on_closed = on_closed;
    conns->owner = owner;
}

/* ---- Listening ------------------------------------------------------------------ */

int net_addr_parse(const char *host, int port, struct sockaddr_storage *addr, char *err,
                   size_t err_len) {
    int ret = uv_ip4_addr(host, port, (struct sockaddr_in *)addr);
    if (ret < 0) {
        ret = uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr);
    }
    if (ret < 0) {
        snprintf(err, err_len, "'%s' is not an IPv4 or IPv6 address", host);
    }
    return ret;
}

int net_listen(uv_tcp_t *listener, const struct sockaddr *addr, int backlog,
               uv_connection_cb cb) {
    int ret = uv_tcp_bind(listener, addr, 0);
    if (ret == 0) {
        ret = uv_listen((uv_stream_t *)listener, backlog, cb);
    }
    return ret;
}

int net_port(const uv_tcp_t *listener) {
    struct sockaddr_storage addr;
    int len = sizeof addr;
    int ret = uv_tcp_getsockname(listener, (struct sockaddr *)&addr, &len);
    if (ret < 0) {
        return ret;
    }
    if (addr.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&addr)->sin_port);
}

/* ---- Accepting and closing -------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h) {
    struct net_conn *c = h->data;
    c->conns->on_free(c);
}

/* A connection that was never accepted has nothing of the server's yet. */
static void on_accept_failed_closed(uv_handle_t *h) {
    free(h->data);
}

/* Links c, whose socket is open, at the head of the list as active now. */
static void conn_link(struct net_conns *conns, struct net_conn *c) {
    c->next = conns->head;
    if (conns->head) {
        conns->head->prev = c;
    }
    conns->head = c;
    c->active_ms = uv_now(conns->loop);
    uv_tcp_nodelay(&c->tcp, 1); /* answers are small; a failure only costs latency */
}

struct net_conn *net_conn_accept(struct net_conns *conns, uv_stream_t *listener, int status) {
    if (status < 0) {
        fprintf(stderr, "nearestd: %s: %s\n", conns->name, uv_strerror(status));
        return NULL;
    }
    struct net_conn *c = calloc(1, conns->conn_bytes);
    if (!c) {
        fprintf(stderr, "nearestd: %s: out of memory\n", conns->name);
        return NULL;
    }
    int ret = uv_tcp_init(conns->loop, &c->tcp);
    if (ret < 0) {
        fprintf(stderr, "nearestd: uv_tcp_init: %s\n", uv_strerror(ret));
        free(c);
        return NULL;
    }
    c->tcp.data = c;
    c->conns = conns;
    ret = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (ret < 0) {
        fprintf(stderr, "nearestd: %s: %s\n", conns->name, uv_strerror(ret));
        uv_close((uv_handle_t *)&c->tcp, on_accept_failed_closed);
        return NULL;
    }
    conn_link(conns, c);
    if (__atomic_load_n(conns->n_open, __ATOMIC_RELAXED) < conns->max_connections) {
        c->counted = true;
        __atomic_add_fetch(conns->n_open, 1, __ATOMIC_RELAXED);
    }
    return c;
}

struct net_conn *net_conn_adopt(struct net_conns *conns, uv_os_sock_t fd) {
    struct net_conn *c = calloc(1, conns->conn_bytes);
    if (!c) {
        fprintf(stderr, "nearestd: %s: out of memory\n", conns->name);
        close(fd);
        return NULL;
    }
    int ret = uv_tcp_init(conns->loop, &c->tcp);
    if (ret < 0) {
        fprintf(stderr, "nearestd: uv_tcp_init: %s\n", uv_strerror(ret));
        free(c);
        close(fd);
        return NULL;
    }
    c->tcp.data = c;
    c->conns = conns;
    ret = uv_tcp_open(&c->tcp, fd);
    if (ret < 0) {
        fprintf(stderr, "nearestd: %s: uv_tcp_open: %s\n", conns->name, uv_strerror(ret));
        close(fd); /* not the handle's: uv_tcp_open() failed */
        uv_close((uv_handle_t *)&c->tcp, on_accept_failed_closed);
        return NULL;
    }
    conn_link(conns, c);
    c->counted = true;
    return c;
}

void net_conn_close(struct net_conn *c) {
    if (c->closing) {
        return;
    }
    struct net_conns *conns = c->conns;
    c->closing = true;
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        conns->head = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    if (c->counted) {
        __atomic_sub_fetch(conns->n_open, 1, __ATOMIC_RELAXED);
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    if (conns->on_closed) {
        conns->on_closed(conns);
    }
}

/* ---- The idle sweep ------------------------------------------------------------ */

int net_sweep_start(uv_timer_t *sweep, uint64_t idle_timeout_ms, uv_timer_cb cb) {
    if (idle_timeout_ms == 0) {
        return 0;
    }
    uint64_t period_ms = idle_timeout_ms / 4;
    period_ms = period_ms < 10 ? 10 : period_ms > 1000 ? 1000 : period_ms;
    int ret = uv_timer_start(sweep, cb, period_ms, period_ms);
    if (ret == 0) {
        uv_unref((uv_handle_t *)sweep);
    }
    return ret;
}

void net_conns_sweep(struct net_conns *conns,
                     uint64_t (*limit_ms)(struct net_conn *c, uint64_t now)) {
    uint64_t now = uv_now(conns->loop);
    struct net_conn *next = NULL;
    for (struct net_conn *c = conns->head; c; c = next) {
        next = c->next; /* net_conn_close() unlinks c */
        uint64_t limit = limit_ms(c, now);
        if (now - c->active_ms >= limit) {
            net_conn_close(c);
        }
    }
}
