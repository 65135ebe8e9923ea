/* http_srv.c: HTTP connections on libuv: accept, read, answer in order, write,
 * idle sweep, shutdown.
 *
 * Memory per connection: the struct, an http_reader (about 5 KB: URL and
 * Accept buffers), the bytes read but not yet parsed (at most one read, 64 KB,
 * and only while the connection is paused) and unsent responses, which stop
 * the connection from being read past max_output_bytes; an AREAS answer with
 * every polygon is the largest, about 150 KB.
 *
 * Listening, accepting, the connection cap, the idle sweep and closing are
 * net.c's, shared with srv.c: a connection closes only through conn_close()
 * (net_conn_close()) and is freed in its close callback (conn_free()); a write
 * request owns its buffer until its callback, which libuv runs before the
 * close callback. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "http_srv.h"
#include "net.h"

#define HTTP_SRV_BACKLOG 511
#define HTTP_SRV_READ_BYTES 65536
#define HTTP_SRV_LINGER_MS 2000       /* after its last response, a closing connection's
                                       * client has this long to close its side */

struct http_conn {
    struct net_conn net;          /* first: the socket, the list, closing, active_ms */
    struct http_srv *srv;
    struct http_reader *reader;
    char *in;                     /* bytes read, not yet parsed (while paused) */
    size_t in_len, in_cap;
    char *out;                    /* responses not yet handed to uv_write */
    size_t out_len, out_cap;
    size_t writes_pending;
    bool close_after_write;       /* Connection: close, an error, or turned away */
    bool shut;                    /* our side is shut down; reading discards until EOF */
    uv_shutdown_t shutdown_req;
    bool paused;                  /* reading stopped for backpressure */
};

struct http_write {
    uv_write_t req;
    struct http_conn *conn;
    char *buf;                    /* owned until the callback */
};

struct http_srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t sweep;
    int n_open_handles;           /* of the two above */
    struct http_srv_config cfg;
    struct cmd_env env;
    bool stopping;
    bool sweep_closed;            /* uv_close() called on sweep */
    uint64_t n_open;              /* counted connections */
    struct net_conns conns;
    char read_buf[HTTP_SRV_READ_BYTES];
    bool read_buf_busy;
};

static void conn_resume(struct http_conn *c);
static void conn_end(struct http_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* ---- Connection lifetime -------------------------------------------------------- */

/* net_conns.on_free: the close callback's part. */
static void conn_free(struct net_conn *nc) {
    struct http_conn *c = (struct http_conn *)nc;
    http_reader_free(c->reader);
    free(c->in);
    free(c->out);
    free(c);
}

static void drain_done_check(struct net_conns *conns);
static void on_server_handle_closed(uv_handle_t *h);

static void conn_close(struct http_conn *c) {
    net_conn_close(&c->net);
}

/* ---- Writing -------------------------------------------------------------------- */

static bool grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) {
        return true;
    }
    size_t cap2 = *cap ? *cap : 4096;
    while (cap2 < need) {
        cap2 *= 2;
    }
    char *p = realloc(*buf, cap2);
    if (!p) {
        return false;
    }
    *buf = p;
    *cap = cap2;
    return true;
}

static bool out_append(struct http_conn *c, const char *bytes, size_t len) {
    if (!grow(&c->out, &c->out_cap, c->out_len + len)) {
        return false;
    }
    memcpy(c->out + c->out_len, bytes, len);
    c->out_len += len;
    return true;
}

static size_t unsent_bytes(const struct http_conn *c) {
    return c->out_len + uv_stream_get_write_queue_size((const uv_stream_t *)&c->net.tcp);
}

static void on_write(uv_write_t *req, int status) {
    struct http_write *w = (struct http_write *)req;
    struct http_conn *c = w->conn;
    free(w->buf);
    free(w);
    c->writes_pending--;
    if (c->net.closing) {
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->net.active_ms = uv_now(c->srv->loop);
    if (c->close_after_write && c->writes_pending == 0) {
        conn_end(c);
        return;
    }
    if (c->paused) {
        conn_resume(c);
    }
}

/* Sends the responses built so far in one uv_write. */
static void flush(struct http_conn *c) {
    if (c->out_len > 0) {
        struct http_write *w = malloc(sizeof *w);
        if (!w) {
            conn_close(c);
            return;
        }
        w->conn = c;
        w->buf = c->out;
        uv_buf_t b = uv_buf_init(c->out, (unsigned int)c->out_len);
        c->out = NULL;
        c->out_len = c->out_cap = 0;
        int ret = uv_write(&w->req, (uv_stream_t *)&c->net.tcp, &b, 1, on_write);
        if (ret < 0) {
            free(w->buf);
            free(w);
            conn_close(c);
            return;
        }
        c->writes_pending++;
    }
    if (c->close_after_write && c->writes_pending == 0) {
        conn_end(c);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    struct http_conn *c = req->data;
    if (status < 0 && !c->net.closing) {
        conn_close(c);
    }
}

/* Ends a connection whose last response has been written: shuts our side
 * down and reads (and drops) what the client still sends until its EOF or the
 * idle sweep. Closing at once with unread request bytes in the kernel would
 * send a reset, which can destroy the 413 or 400 response before the client
 * reads it. */
static void conn_end(struct http_conn *c) {
    if (c->net.closing || c->shut) {
        return;
    }
    if (c->srv->stopping) {
        conn_close(c); /* shutting down: no lingering */
        return;
    }
    c->shut = true;
    c->net.active_ms = uv_now(c->srv->loop); /* the linger starts */
    c->shutdown_req.data = c;
    uv_read_stop((uv_stream_t *)&c->net.tcp); /* then started again: it may be running */
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->net.tcp, on_shutdown) < 0 ||
        uv_read_start((uv_stream_t *)&c->net.tcp, on_alloc, on_read) < 0) {
        conn_close(c);
    }
}

/* ---- Reading and answering --------------------------------------------------------- */

/* Appends a response; closes the connection when out of memory. */
static void send_response(struct http_conn *c, struct http_response *resp) {
    if (!out_append(c, resp->bytes, resp->len)) {
        free(resp->bytes);
        conn_close(c);
        return;
    }
    free(resp->bytes);
    if (resp->close) {
        c->close_after_write = true;
    }
}

/* Answers every whole request in c->in, in order, until the input runs out,
 * the connection is to close, or its unsent responses pass the output limit
 * (then reading stops and the rest waits in c->in). */
static void process(struct http_conn *c) {
    struct http_srv *s = c->srv;
    size_t pos = 0;
    while (pos < c->in_len && !c->net.closing && !c->close_after_write) {
        if (unsent_bytes(c) > s->cfg.max_output_bytes) {
            uv_read_stop((uv_stream_t *)&c->net.tcp);
            c->paused = true;
            break;
        }
        struct http_request req;
        size_t used = 0;
        enum http_read st = http_reader_next(c->reader, c->in + pos, c->in_len - pos, &used,
                                             &req);
        pos += used;
        struct http_response resp;
        if (st == HTTP_READ_REQUEST) {
            c->net.active_ms = uv_now(s->loop);
            if (http_respond(&s->env, &req, &resp) < 0) {
                conn_close(c);
                return;
            }
            send_response(c, &resp);
        } else if (st == HTTP_READ_ERROR) {
            if (http_reader_error(c->reader, &resp) < 0) {
                conn_close(c);
                return;
            }
            send_response(c, &resp);
            c->close_after_write = true;
        } else if (used == 0) {
            break;
        }
    }
    if (c->net.closing) {
        return;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    struct http_conn *c = h->data;
    struct http_srv *s = c->srv;
    if (s->read_buf_busy) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
        return;
    }
    s->read_buf_busy = true;
    *buf = uv_buf_init(s->read_buf, sizeof s->read_buf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    struct http_conn *c = stream->data;
    if (buf->base == c->srv->read_buf) {
        c->srv->read_buf_busy = false; /* copied below, before returning */
    }
    if (c->net.closing || nread == 0) {
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF && c->writes_pending > 0) {
            c->close_after_write = true; /* half-closed: let the responses out */
            uv_read_stop(stream);
        } else {
            conn_close(c);
        }
        return;
    }
    if (c->close_after_write) {
        return;
    }
    if (!grow(&c->in, &c->in_cap, c->in_len + (size_t)nread)) {
        conn_close(c);
        return;
    }
    memcpy(c->in + c->in_len, buf->base, (size_t)nread);
    c->in_len += (size_t)nread;
    process(c);
    if (!c->net.closing) {
        flush(c);
    }
}

/* Starts reading again a connection paused for backpressure, once its
 * unsent responses are below half the limit; requests already read go first. */
static void conn_resume(struct http_conn *c) {
    if (c->net.closing || c->close_after_write ||
        unsent_bytes(c) > c->srv->cfg.max_output_bytes / 2) {
        return;
    }
    c->paused = false;
    process(c);
    if (c->net.closing) {
        return;
    }
    flush(c);
    if (c->net.closing || c->close_after_write || c->paused) {
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->net.tcp, on_alloc, on_read) < 0) {
        conn_close(c);
    }
}

/* ---- Accepting and the idle sweep ---------------------------------------------------- */

static void on_connection(uv_stream_t *listener, int status) {
    struct http_srv *s = listener->data;
    struct http_conn *c = (struct http_conn *)net_conn_accept(&s->conns, listener, status);
    if (!c) {
        return;
    }
    c->srv = s;
    c->reader = http_reader_new();
    if (!c->reader) {
        fprintf(stderr, "nearestd: http accept: %s\n", uv_strerror(UV_ENOMEM));
        conn_close(c);
        return;
    }
    if (!c->net.counted) {
        char msg[96];
        snprintf(msg, sizeof msg, "too many connections (at most %zu); closing",
                 s->cfg.max_connections);
        struct http_response resp;
        if (http_respond_error(503, CMD_ERR_LIMIT, msg, true, &resp) < 0) {
            conn_close(c);
            return;
        }
        send_response(c, &resp);
        if (!c->net.closing) {
            c->close_after_write = true;
            flush(c);
        }
        return;
    }
    int ret = uv_read_start((uv_stream_t *)&c->net.tcp, on_alloc, on_read);
    if (ret < 0) {
        conn_close(c);
    }
}

/* The idle limit of c: a closing connection's client gets the linger. */
static uint64_t idle_limit_ms(struct net_conn *nc, uint64_t now) {
    (void)now;
    struct http_conn *c = (struct http_conn *)nc;
    uint64_t limit = c->srv->cfg.idle_timeout_ms;
    if (c->shut && limit > HTTP_SRV_LINGER_MS) {
        limit = HTTP_SRV_LINGER_MS;
    }
    return limit;
}

static void on_sweep(uv_timer_t *t) {
    struct http_srv *s = t->data;
    net_conns_sweep(&s->conns, idle_limit_ms);
}

/* ---- Server lifetime ------------------------------------------------------------------ */

static void on_server_handle_closed(uv_handle_t *h) {
    struct http_srv *s = h->data;
    s->n_open_handles--;
}

void http_srv_config_init(struct http_srv_config *cfg) {
    cfg->drain_timeout_ms = HTTP_SRV_DEFAULT_DRAIN_TIMEOUT_MS;
    cfg->max_connections = HTTP_SRV_DEFAULT_MAX_CONNECTIONS;
    cfg->idle_timeout_ms = HTTP_SRV_DEFAULT_IDLE_TIMEOUT_MS;
    cfg->max_output_bytes = HTTP_SRV_DEFAULT_MAX_OUTPUT_BYTES;
}

/* Closes the sweep (the drain timer while stopping) once no connection is
 * left, so that uv_run() can return. */
static void drain_done_check(struct net_conns *conns) {
    struct http_srv *s = conns->owner;
    if (s->stopping && !s->conns.head && !s->sweep_closed) {
        s->sweep_closed = true;
        uv_close((uv_handle_t *)&s->sweep, on_server_handle_closed);
    }
}

/* The drain's deadline: whatever is still sending is cut off. */
static void on_drain_timeout(uv_timer_t *t) {
    struct http_srv *s = t->data;
    size_t n = 0;
    while (s->conns.head) {
        net_conn_close(s->conns.head);
        n++;
    }
    fprintf(stderr, "nearestd: HTTP drain timed out after %llu ms; closed %zu connections "
                    "with responses unsent\n", (unsigned long long)s->cfg.drain_timeout_ms, n);
}

void http_srv_close(struct http_srv *s) {
    if (!s || s->stopping) {
        return;
    }
    s->stopping = true;
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    /* Stop reading; a connection goes once what it was answered is sent. */
    struct http_conn *next = NULL;
    for (struct http_conn *c = (struct http_conn *)s->conns.head; c; c = next) {
        next = (struct http_conn *)c->net.next; /* conn_close() unlinks c */
        uv_read_stop((uv_stream_t *)&c->net.tcp);
        if (c->writes_pending == 0) {
            conn_close(c);
        } else {
            c->close_after_write = true;
        }
    }
    if (s->conns.head) {
        uv_timer_stop(&s->sweep);
        if (s->cfg.drain_timeout_ms == 0 ||
            uv_timer_start(&s->sweep, on_drain_timeout, s->cfg.drain_timeout_ms, 0) < 0) {
            on_drain_timeout(&s->sweep);
        } else {
            uv_ref((uv_handle_t *)&s->sweep);
        }
    }
    drain_done_check(&s->conns);
}

void http_srv_free(struct http_srv *s) {
    free(s);
}

int http_srv_port(const struct http_srv *s) {
    return net_port(&s->listener);
}

void http_srv_set_catalog(struct http_srv *s, struct catalog *catalog) {
    s->env.catalog = catalog;
}

int http_srv_open(uv_loop_t *loop, const struct cmd_env *env, const char *host, int port,
                  const struct http_srv_config *cfg, struct http_srv **out, char *err,
                  size_t err_len) {
    if (cfg->max_connections == 0 || cfg->max_output_bytes == 0) {
        snprintf(err, err_len, "HTTP max_connections and max_output_bytes must be at least 1");
        return UV_EINVAL;
    }
    struct sockaddr_storage addr;
    int ret = net_addr_parse(host, port, &addr, err, err_len);
    if (ret < 0) {
        return ret;
    }
    struct http_srv *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return UV_ENOMEM;
    }
    s->loop = loop;
    s->cfg = *cfg;
    s->env = *env;
    net_conns_init(&s->conns, loop, s, sizeof(struct http_conn), &s->n_open,
                   cfg->max_connections, "http accept", conn_free, drain_done_check);
    ret = uv_tcp_init(loop, &s->listener);
    if (ret < 0) {
        snprintf(err, err_len, "uv_tcp_init: %s", uv_strerror(ret));
        free(s);
        return ret;
    }
    s->listener.data = s;
    s->n_open_handles = 1;
    ret = uv_timer_init(loop, &s->sweep);
    if (ret < 0) {
        snprintf(err, err_len, "uv_timer_init: %s", uv_strerror(ret));
        goto fail;
    }
    s->sweep.data = s;
    s->n_open_handles++;
    ret = net_listen(&s->listener, (const struct sockaddr *)&addr, HTTP_SRV_BACKLOG,
                     on_connection);
    if (ret < 0) {
        snprintf(err, err_len, "cannot serve HTTP on %s:%d: %s", host, port, uv_strerror(ret));
        goto fail;
    }
    ret = net_sweep_start(&s->sweep, s->cfg.idle_timeout_ms, on_sweep);
    if (ret < 0) {
        snprintf(err, err_len, "uv_timer_start: %s", uv_strerror(ret));
        goto fail;
    }
    *out = s;
    return 0;
fail:
    s->stopping = true;
    s->sweep_closed = true;
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    if (s->n_open_handles >= 2) {
        uv_close((uv_handle_t *)&s->sweep, on_server_handle_closed);
    }
    while (s->n_open_handles > 0) {
        uv_run(loop, UV_RUN_ONCE);
    }
    free(s);
    return ret;
}
