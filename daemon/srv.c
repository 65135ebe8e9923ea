/* srv.c: connections, reads, pipelined dispatch, socket writes, the group
 * commit of PUT/SET/DEL, event-loop threads (--threads; see "Threads"
 * below), shutdown.
 *
 * Memory per connection: the struct (about 0.6 KB) plus the proto_reader's
 * buffer (up to PROTO_MAX_LINE_BYTES plus two reads: requests read wait for
 * the end of the loop iteration unless over one read is buffered, see
 * "Batches" below) plus unsent output, which
 * stays below max_output_bytes plus one answer (about 100 KB at K 1000): a
 * client that sends requests without reading answers is paused (reading and
 * executing stop) once that much waits, and resumed when it drains to half.
 * Before the cap was checked per request, one 64 KB read of short requests
 * could queue 6,500 answers of 100 KB each.
 *
 * Lifetimes follow libuv's rules: a connection is closed only through
 * srv_conn_close() and freed only in its close callback; a write request owns
 * its buffer until its callback, which libuv runs (with UV_ECANCELED) before
 * the close callback, so the connection outlives its writes.
 *
 * Batches: a read only feeds the connection's reader; its requests run at
 * the end of the loop iteration (on_check()), after every socket that polled
 * readable has been read, and the NEARESTs and RADIUSes of all those
 * connections wait in one batch whose index searches take turns node by node
 * (cmd_batch_run(), geo_index_nearest_batch()), so that the cache misses of
 * one overlap with the work of the others: at 10^6 facilities and more most
 * of a lone NEAREST's time is waiting for memory. A connection stops at its
 * batched query and goes on in the next round, so its answers stay in order.
 *
 * Group commit: a store write costs a full fsync (milliseconds), so writes
 * that arrive while one group is committing on the thread pool wait in a
 * queue and all go in the next group, one transaction and one fsync for all
 * of them. A connection whose write is queued stops reading and keeps its
 * later requests in its reader, so its answers stay in order; a connection
 * that goes away leaves its write to commit unanswered (owner set to NULL).
 *
 * Limits (struct srv_config): past max_connections a new connection gets one
 * ERR LIMIT line and is closed. A connection stops being read and executed
 * while more than max_output_bytes of its answers are unsent (requests
 * already read wait in its reader), so one read cannot make it grow without
 * bound; it resumes below half. One timer sweeps every connection a few
 * times per idle timeout and closes those that neither completed a request
 * nor had an answer taken by the kernel for idle_timeout_ms: a client that
 * trickles bytes without ending a line, and one that never reads its
 * answers, are both idle. A connection waiting for a group commit is not. */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np(): a reader lock that lets a writer in */
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "net.h"
#include "proto.h"
#include "srv.h"

#define SRV_PEER_BYTES 64 /* "[v6 address]:port" */

struct srv_loop;

struct srv_conn {
    struct net_conn net;          /* first: the socket, the list, closing, active_ms */
    struct srv *srv;
    struct srv_loop *lp;          /* the loop (thread) that serves it, for good */
    struct proto_reader *reader;
    struct cmd_session session;
    struct reply out;             /* answers not yet handed to uv_write */
    size_t writes_pending;        /* uv_write calls whose callback has not run */
    bool close_after_write;       /* QUIT, LIMIT or EOF: close once the writes are done */
    bool read_eof;                /* half-closed: close once every whole line read has
                                   * run (run_lines() sets close_after_write then) */
    bool paused;                  /* reading stopped for backpressure */
    struct cmd_write *waiting;    /* this connection's write in the group commit */
    struct auth_conn auth;
    char peer[SRV_PEER_BYTES];    /* the client's address, for the log */
    struct srv_conn *flush_next;  /* in lp->flush_head while flush_queued */
    bool flush_queued;            /* its answers go out at the end of this loop iteration */
    struct srv_conn *run_next;    /* in lp->run_head while run_queued */
    bool run_queued;              /* its requests run at the end of this loop iteration */
    bool batched;                 /* a query of its waits in lp->batch */
    /* A write from a worker loop's connection, while the main loop has it:
     * the main loop reads wsession (copied at hand-over) and builds the
     * answer in `answer`, then hands the connection back through the
     * worker's inbox (done_next). The worker alone touches everything else. */
    struct cmd_session wsession;
    struct reply answer;
    struct srv_conn *done_next;
    bool free_deferred;           /* closed while its write was away: freed on return */
};

struct srv_write {
    uv_write_t req;
    struct srv_conn *conn;
    char *buf;                    /* owned until the callback */
    size_t cap;                   /* bytes allocated at buf */
};

/* Answer buffers and write requests whose writes completed, kept for the next
 * answers: a malloc() and free() of the 4 KiB buffer per answer cost about
 * 900 instructions, more than the rest of a PING's user-space work but the
 * dispatch. At most SRV_SPARES of each, of at most SRV_SPARE_BUFFER_BYTES;
 * an idle connection holds none. */
#define SRV_SPARES 64
#define SRV_SPARE_BUFFER_BYTES 16384

struct srv_spares {
    char *bufs[SRV_SPARES];
    size_t caps[SRV_SPARES];
    size_t n_bufs;
    struct srv_write *writes[SRV_SPARES];
    size_t n_writes;
};

/* One event loop serving connections. Loop 0 is the caller's, on the
 * caller's thread: it accepts, commits writes, reloads, and serves its share
 * of the connections. Loops 1.. (--threads) each run on a thread of their
 * own and serve only reads; their writes go to loop 0 (see "Threads").
 * Everything here belongs to the loop's thread, except the inbox and the
 * published counters, which their mutexes guard. */
struct srv_loop {
    struct srv *srv;
    uv_loop_t *loop;
    int index;                    /* 0 for the main loop */
    struct net_conns conns;       /* counted in srv->n_open */
    struct srv_spares spares;
    struct cmd_stats stats;       /* this loop's counters; loop 0 also has the server's */
    struct cmd_env env;
    uv_timer_t sweep;             /* the idle timeout */
    uv_check_t check;             /* after each poll: send answers, unlock, publish */
    uv_prepare_t prepare;         /* workers: before each poll, unlock */
    struct srv_conn *flush_head;  /* connections whose answers go out at the check */
    struct srv_conn *run_head;    /* connections whose requests run at the check */
    struct cmd_batch *batch;      /* the check's queries (see "Batches" above) */
    struct srv_conn *batched[CMD_BATCH_MAX]; /* whose query is batch's i-th */
    int batched_rows[CMD_BATCH_MAX];         /* and its command's row */
    int batch_rcs[CMD_BATCH_MAX];
    bool read_locked;             /* workers: holds srv->lock to read the catalogue */
    char read_buf[SRV_READ_BYTES]; /* every read lands here; proto_feed() copies */
    bool read_buf_busy;
    /* Workers only. */
    bool closed;                  /* its handles are closing (set under inbox_lock) */
    uv_loop_t own_loop;
    uv_thread_t thread;
    bool thread_started;
    uv_async_t wake;              /* the inbox has something */
    bool stopping;                /* draining: reads nothing more, closes when answered */
    size_t n_away;                /* its connections' writes that the main loop has */
    uv_mutex_t inbox_lock;
    int *inbox_fds;               /* accepted sockets handed over, not yet adopted */
    size_t n_inbox_fds, cap_inbox_fds;
    struct srv_conn *inbox_done;  /* connections whose write came back (done_next) */
    bool inbox_stop, inbox_kill;  /* srv_close() started; the drain timed out */
    uv_mutex_t published_lock;
    struct cmd_stats published;   /* a copy of stats, refreshed at every check */
};

struct srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    uv_signal_t sighup;           /* reload the catalogue */
    uv_timer_t drain;             /* bounds the shutdown; started by srv_close() */
    bool drain_open;              /* drain was initialised and is not closed yet */
    bool closed;                  /* the drain is over: signals and drain closed */
    bool drain_expired;           /* it fired: what is left is closed unanswered */
    int n_open_handles;           /* of the handles above; freed when 0 */
    struct srv_config cfg;
    bool stopping;
    struct catalog *catalog;
    struct srv_loop *loops;       /* n_loops of them; loops[0] is the main loop */
    int n_loops;
    unsigned next_loop;           /* round robin of new connections */
    uint64_t n_open;              /* counted connections over every loop (atomic) */
    pthread_rwlock_t lock;        /* the catalogue: workers read, the main loop writes */
    bool lock_ready;
    uv_async_t main_wake;         /* workers handed over writes, or finished */
    bool main_wake_open;
    uv_mutex_t main_inbox_lock;
    struct cmd_write *inbox_head, *inbox_tail; /* writes from workers, in arrival order */
    int workers_finished;         /* worker threads whose loops have ended */
    int workers_running;          /* as far as the main loop knows */
    int n_mutexes;                /* loops whose two mutexes are initialised */
    /* Group commit: writes queue here while a group runs on the thread pool;
     * when it completes, everything queued meanwhile becomes the next group. */
    struct store *store;
    struct cmd_write *queue_head, *queue_tail;
    struct cmd_write *group;      /* running on the pool, NULL when idle */
    uv_work_t work;
    uint64_t db_bytes_after;      /* measured on the pool after a group's commit */
    int write_rows[3];            /* cmd_table() rows of PUT, DEL, SET (enum cmd_write_kind) */
    void (*close_hook)(void *);   /* srv_on_close(): run when srv_close() starts */
    void *close_hook_arg;
    /* SIGHUP: a new catalogue is built on the pool while write groups wait. */
    bool reload_wanted;           /* SIGHUP seen; starts once no group runs */
    bool reloading;               /* the build runs on the pool */
    uv_work_t reload_work;
    struct catalog *reload_new;   /* the pool's result, NULL on failure */
    char reload_err[256];
    uint64_t reload_start_ms;
    void (*reload_hook)(void *arg, struct catalog *catalog); /* srv_on_reload() */
    void *reload_hook_arg;
    /* The failed-AUTH rate limit, shared by every connection. */
    struct auth_limiter auth_limit;
};

static void srv_conn_resume(struct srv_conn *c);
static void drain_check(struct srv *s);

/* ---- Connection lifetime ---------------------------------------------------- */

/* net_conns.on_free: the close callback's part. */
static void conn_release(struct srv_conn *c) {
    proto_reader_free(c->reader);
    reply_close(&c->out);
    reply_close(&c->answer);
    free(c);
}

static void conn_free(struct net_conn *nc) {
    struct srv_conn *c = (struct srv_conn *)nc;
    if (c->waiting) {
        if (c->lp->index != 0) {
            /* The main loop still has its write and will hand c back. */
            c->free_deferred = true;
            return;
        }
        c->waiting->owner = NULL; /* the commit goes on; nobody to answer */
    }
    conn_release(c);
}

static void worker_check_done(struct srv_loop *lp);

/* net_conns.on_closed: a close may end the drain. */
static void conn_closed(struct net_conns *conns) {
    struct srv_loop *lp = conns->owner;
    if (lp->index == 0) {
        drain_check(lp->srv);
    } else {
        worker_check_done(lp);
    }
}

static void srv_conn_close(struct srv_conn *c) {
    net_conn_close(&c->net);
}

/* Closes c after a socket call failed with err; logged unless the client
 * simply went away, so that a connection the server drops is never silent. */
static void srv_conn_fail(struct srv_conn *c, const char *what, int err) {
    if (err != UV_EOF && err != UV_ECONNRESET && err != UV_EPIPE && err != UV_ECANCELED) {
        fprintf(stderr, "nearestd: %s %s: %s; closing it\n", what, c->peer, uv_strerror(err));
    }
    srv_conn_close(c);
}

/* With several loops: copies lp's counters where STATS on another loop reads
 * them (stats_total()). Done before any answer leaves (flush(), and the
 * main loop's before it hands answered writes back), so that a STATS sent
 * after an answer arrived always counts that answer's request. */
static void publish(struct srv_loop *lp) {
    if (lp->srv->n_loops > 1) {
        uv_mutex_lock(&lp->published_lock);
        lp->published = lp->stats;
        uv_mutex_unlock(&lp->published_lock);
    }
}

/* ---- Writing ------------------------------------------------------------------ */

/* Keeps buf (cap bytes) for a later answer, or frees it. */
static void spare_buffer_put(struct srv_loop *lp, char *buf, size_t cap) {
    struct srv_spares *sp = &lp->spares;
    if (buf && cap <= SRV_SPARE_BUFFER_BYTES && sp->n_bufs < SRV_SPARES) {
        sp->bufs[sp->n_bufs] = buf;
        sp->caps[sp->n_bufs++] = cap;
    } else {
        free(buf);
    }
}

/* Gives c's reply a kept buffer, if it has none and one is kept. */
static void spare_buffer_lend(struct srv_conn *c) {
    struct srv_spares *sp = &c->lp->spares;
    if (sp->n_bufs > 0 && reply_reuse(&c->out, sp->bufs[sp->n_bufs - 1],
                                      sp->caps[sp->n_bufs - 1])) {
        sp->n_bufs--;
    }
}

static struct srv_write *spare_write_get(struct srv_loop *lp) {
    struct srv_spares *sp = &lp->spares;
    return sp->n_writes > 0 ? sp->writes[--sp->n_writes] : malloc(sizeof(struct srv_write));
}

static void spare_write_put(struct srv_loop *lp, struct srv_write *w) {
    struct srv_spares *sp = &lp->spares;
    if (sp->n_writes < SRV_SPARES) {
        sp->writes[sp->n_writes++] = w;
    } else {
        free(w);
    }
}

static void spares_free(struct srv_spares *sp) {
    while (sp->n_bufs > 0) {
        free(sp->bufs[--sp->n_bufs]);
    }
    while (sp->n_writes > 0) {
        free(sp->writes[--sp->n_writes]);
    }
}

static void on_write(uv_write_t *req, int status) {
    struct srv_write *w = (struct srv_write *)req;
    struct srv_conn *c = w->conn;
    spare_buffer_put(c->lp, w->buf, w->cap);
    spare_write_put(c->lp, w);
    c->writes_pending--;
    if (c->net.closing) {
        return;
    }
    if (status < 0) {
        srv_conn_fail(c, "write to", status);
        return;
    }
    c->net.active_ms = uv_now(c->lp->loop);
    if (c->close_after_write && c->writes_pending == 0 && !c->waiting) {
        srv_conn_close(c);
        return;
    }
    if (c->paused) {
        srv_conn_resume(c);
    }
}

/* Sends what the last batch of requests produced: first with one
 * uv_try_write(), which writes at once unless earlier answers still wait in
 * libuv's queue, and then, for what the socket did not take, one uv_write.
 * Nearly every answer goes whole through the first: no write request, no
 * callback, and no epoll_ctl, which libuv makes after every completed
 * uv_write (it re-arms the watcher when it stops waiting for POLLOUT); strace
 * counted read, write and epoll_ctl once each per unpipelined request. */
static void flush(struct srv_conn *c) {
    /* Only this thread writes lp->published: it may read it unlocked. Every
     * counter a request moves moves with `requests` (the main loop's write
     * counters are published in on_group_done()). */
    if (c->lp->stats.requests != c->lp->published.requests) {
        publish(c->lp);
    }
    if (reply_failed(&c->out)) {
        fprintf(stderr, "nearestd: out of memory building a reply; closing a connection\n");
        srv_conn_close(c);
        return;
    }
    size_t len = 0, cap = 0;
    char *buf = reply_take_buffer(&c->out, &len, &cap);
    if (len == 0) {
        spare_buffer_put(c->lp, buf, cap);
        buf = NULL;
    }
    if (buf) {
        uv_buf_t whole = uv_buf_init(buf, (unsigned int)len);
        int sent = uv_try_write((uv_stream_t *)&c->net.tcp, &whole, 1);
        if (sent < 0 && sent != UV_EAGAIN) {
            spare_buffer_put(c->lp, buf, cap);
            srv_conn_fail(c, "write to", sent);
            return;
        }
        size_t off = sent > 0 ? (size_t)sent : 0;
        if (off == len) {
            spare_buffer_put(c->lp, buf, cap);
            c->net.active_ms = uv_now(c->lp->loop);
            buf = NULL;
        } else {
            memmove(buf, buf + off, len - off);
            len -= off;
        }
    }
    if (buf) {
        struct srv_write *w = spare_write_get(c->lp);
        if (!w) {
            free(buf);
            srv_conn_close(c);
            return;
        }
        w->conn = c;
        w->buf = buf;
        w->cap = cap;
        uv_buf_t b = uv_buf_init(buf, (unsigned int)len);
        int ret = uv_write(&w->req, (uv_stream_t *)&c->net.tcp, &b, 1, on_write);
        if (ret < 0) {
            /* The callback will not run: we still own w and buf. */
            free(buf);
            spare_write_put(c->lp, w);
            srv_conn_fail(c, "write to", ret);
            return;
        }
        c->writes_pending++;
    }
    if (c->waiting) {
        /* Later requests stay in the reader until the write is answered. */
        uv_read_stop((uv_stream_t *)&c->net.tcp); /* cannot fail for TCP */
        return;
    }
    if (c->close_after_write) {
        if (c->writes_pending == 0) {
            srv_conn_close(c);
        } else {
            uv_read_stop((uv_stream_t *)&c->net.tcp);
        }
        return;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->net.tcp) > c->srv->cfg.max_output_bytes) {
        uv_read_stop((uv_stream_t *)&c->net.tcp);
        c->paused = true;
    }
}

/* Unsent answers: built but not flushed, plus queued in libuv. */
static size_t unsent_bytes(const struct srv_conn *c) {
    return reply_len(&c->out) + uv_stream_get_write_queue_size((const uv_stream_t *)&c->net.tcp);
}

/* ---- Reading ------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    struct srv_conn *c = h->data;
    struct srv_loop *lp = c->lp;
    /* The read callback consumes the bytes before the next allocation, so one
     * buffer serves every connection of the loop. */
    if (lp->read_buf_busy) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
        return;
    }
    lp->read_buf_busy = true;
    *buf = uv_buf_init(lp->read_buf, sizeof lp->read_buf);
}

static void write_enqueue(struct srv_conn *c);
static void run_at_check(struct srv_conn *c);

/* Runs every whole request line the reader holds, up to the first write,
 * or until the unsent answers pass the output limit (then the connection is
 * paused and the rest waits in the reader). */
static void run_lines(struct srv_conn *c) {
    struct srv *s = c->srv;
    struct srv_loop *lp = c->lp;
    if (c->waiting || c->batched) {
        return; /* what follows a write runs once the write is answered, and
                 * what follows a batched query once the batch has run */
    }
    if (lp->index != 0 && !lp->read_locked) {
        /* Held until this iteration's check or the next prepare, so one lock
         * covers every request a worker runs before it polls again. */
        pthread_rwlock_rdlock(&s->lock);
        lp->read_locked = true;
    }
    spare_buffer_lend(c);
    for (;;) {
        if (unsent_bytes(c) > s->cfg.max_output_bytes) {
            /* Offer the answers to the socket first: flush() may write them
             * all at once, and then no write callback would come to resume a
             * connection paused here. What it cannot write is queued, and
             * that write's callback resumes the connection. */
            flush(c);
            if (c->net.closing) {
                return;
            }
            if (c->paused || unsent_bytes(c) > s->cfg.max_output_bytes) {
                uv_read_stop((uv_stream_t *)&c->net.tcp);
                c->paused = true;
                return;
            }
        }
        char *line = NULL;
        size_t len = 0;
        int st = proto_next(c->reader, &line, &len);
        if (st == PROTO_MORE) {
            if (c->read_eof) {
                c->close_after_write = true; /* everything read has run */
            }
            return;
        }
        if (st == PROTO_LINE) {
            c->net.active_ms = uv_now(lp->loop);
            c->out.format = c->session.format;
            if (memchr(line, '\0', len)) {
                /* auth_gate() answers a line holding a NUL byte, ERR SYNTAX. */
                auth_gate(&s->cfg.auth, &c->auth, line, len, &c->out, &lp->stats, c->peer,
                          NULL);
                continue;
            }
            /* One split serves the gate and the dispatcher. */
            char *argv[PROTO_MAX_ARGS];
            size_t argc = 0;
            int split = proto_split(line, len, argv, PROTO_MAX_ARGS, &argc);
            if (split == 0 && argc == 0) {
                continue; /* a blank line gets no answer */
            }
            int row = -1;
            enum auth_verdict verdict =
                split < 0 ? AUTH_PASS
                          : auth_gate_argv(&s->cfg.auth, &c->auth, argc, argv, &c->out,
                                           &lp->stats, c->peer, &row);
            if (verdict == AUTH_CLOSE) {
                c->close_after_write = true;
                return;
            }
            if (verdict == AUTH_ANSWERED) {
                continue;
            }
            /* The gate has looked the command up: its row, -1 for none. */
            size_t n_specs = 0;
            const struct cmd_spec *spec = row >= 0 ? cmd_table(&n_specs) + row : NULL;
            int ret = split < 0 ? cmd_answer_split_error(&lp->env, &c->session, &c->out)
                                : cmd_dispatch_spec(&lp->env, &c->session, spec, argc, argv,
                                                    &c->out);
            if (row >= 0 && row < CMD_MAX_COMMANDS) {
                lp->stats.requests_by_cmd[row]++;
                lp->stats.errors_by_cmd[row] += ret < 0; /* a write's error: after its commit */
            }
            if (ret == CMD_QUEUED) {
                write_enqueue(c);
                return;
            }
            if (ret == CMD_BATCHED) {
                size_t i = cmd_batch_count(lp->batch) - 1;
                lp->batched[i] = c;
                lp->batched_rows[i] = row;
                c->batched = true;
                return;
            }
            if (c->session.quit) {
                c->close_after_write = true;
                return;
            }
            continue;
        }
        c->out.format = c->session.format;
        reply_err(&c->out, CMD_ERR_LIMIT, "request line longer than %d bytes; closing",
                  PROTO_MAX_LINE_BYTES);
        lp->stats.requests++;
        lp->stats.errors++;
        c->close_after_write = true;
        return;
    }
}

/* Requests, too, run at the end of the loop iteration, once every socket that
 * polled readable has been read: NEARESTs and RADIUSes from all of them then
 * wait in lp->batch and run together (cmd_batch_run(): their cache misses
 * overlap). A connection stops at its batched query, so its answers stay in
 * order, and goes on with its next request in the next round; a round runs
 * every connection that has requests, then the batch. */
static void run_at_check(struct srv_conn *c) {
    if (!c->run_queued) {
        c->run_queued = true;
        c->run_next = c->lp->run_head;
        c->lp->run_head = c;
    }
}

static void run_queued(struct srv_loop *lp) {
    lp->env.batch = lp->batch;
    while (lp->run_head) {
        struct srv_conn *c = lp->run_head;
        lp->run_head = NULL;
        while (c) {
            struct srv_conn *next = c->run_next;
            c->run_queued = false;
            if (!c->net.closing && !c->paused) {
                run_lines(c); /* a paused one goes on when a write drains it */
            }
            c = next;
        }
        size_t n = cmd_batch_count(lp->batch);
        if (n == 0) {
            break;
        }
        cmd_batch_run(&lp->env, lp->batch, lp->batch_rcs);
        for (size_t i = 0; i < n; i++) {
            struct srv_conn *b = lp->batched[i];
            int row = lp->batched_rows[i];
            if (row >= 0 && row < CMD_MAX_COMMANDS) {
                lp->stats.errors_by_cmd[row] += lp->batch_rcs[i] < 0;
            }
            b->batched = false;
            run_at_check(b);
        }
    }
    lp->env.batch = NULL;
}

/* Answers go out at the end of this loop iteration (on_check()), after every
 * socket that polled readable has been read, as Redis does before it
 * sleeps: the client, woken by the first answer, finds the others waiting. */
static void flush_at_check(struct srv_conn *c) {
    if (!c->flush_queued && !c->net.closing) {
        c->flush_queued = true;
        c->flush_next = c->lp->flush_head;
        c->lp->flush_head = c;
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    struct srv_conn *c = stream->data;
    if (buf->base == c->lp->read_buf) {
        c->lp->read_buf_busy = false; /* consumed below, before returning */
    }
    if (c->net.closing || nread == 0) {
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF) {
            /* Half-closed: the lines already read still run (at the check,
             * or once a write or the backpressure lets them), and their
             * answers reach the client; run_lines() then marks the
             * connection to close once they are sent. The EOF can come in
             * the same callback as a burst of lines none of which has run. */
            c->read_eof = true;
            uv_read_stop(stream);
            run_at_check(c);
            flush_at_check(c);
        } else {
            srv_conn_fail(c, "read from", (int)nread);
        }
        return;
    }
    if (c->close_after_write) {
        return;
    }
    int ret = proto_feed(c->reader, buf->base, (size_t)nread);
    if (ret == PROTO_ERR_NOMEM) {
        srv_conn_close(c);
        return;
    }
    if (proto_reader_buffered(c->reader) <= SRV_READ_BYTES) {
        run_at_check(c);
    } else {
        run_lines(c); /* keeps what a connection buffers to what it did before */
    }
    flush_at_check(c);
}

/* Starts reading again a connection whose reading was stopped, for
 * backpressure or behind a write, unless it must stay stopped: it is closing,
 * waiting for a write, or still has over half the output limit queued (then
 * it stays paused and the next write callback asks again). Requests already
 * in its reader run first; reading restarts only if they leave it free to. */
static void srv_conn_resume(struct srv_conn *c) {
    if (c->net.closing || c->close_after_write || c->waiting) {
        return;
    }
    if (unsent_bytes(c) > c->srv->cfg.max_output_bytes / 2) {
        c->paused = true;
        return;
    }
    c->paused = false;
    run_lines(c);
    flush(c);
    if (c->net.closing || c->close_after_write || c->waiting || c->paused || c->read_eof) {
        return;
    }
    int ret = uv_read_start((uv_stream_t *)&c->net.tcp, on_alloc, on_read);
    if (ret < 0 && ret != UV_EALREADY) {
        srv_conn_fail(c, "reading again from", ret);
    }
}

/* ---- Group commit ----------------------------------------------------------------- */

static void group_start(struct srv *s);
static void group_next(struct srv *s);
static void reload_start(struct srv *s);

/* The database file's size plus its write-ahead log's, or 0 without a path. */
static uint64_t db_size_bytes(const char *path) {
    if (!path) {
        return 0;
    }
    uint64_t total = 0;
    struct stat st;
    if (stat(path, &st) == 0) {
        total += (uint64_t)st.st_size;
    }
    char wal[4096];
    if ((size_t)snprintf(wal, sizeof wal, "%s-wal", path) < sizeof wal && stat(wal, &st) == 0) {
        total += (uint64_t)st.st_size;
    }
    return total;
}

static void on_group_work(uv_work_t *req) {
    struct srv *s = req->data;
    cmd_writes_run(s->store, s->group); /* results are in each write */
    s->db_bytes_after = db_size_bytes(s->cfg.db_path); /* off the loop: stat() may block */
}

static void hand_back(struct srv_conn *c);

/* Runs on the main loop when a group has committed. First, under the
 * catalogue's writer lock (with worker loops; they read it meanwhile
 * otherwise), every write is applied and answered; then each connection on
 * this loop goes on with its pipeline, and each on a worker is handed back
 * to its loop with its answer. Two writes of a group never share a
 * connection, which waits for its write before it runs more requests. */
static void on_group_done(uv_work_t *req, int status) {
    struct srv *s = req->data;
    struct srv_loop *main_lp = &s->loops[0];
    struct cmd_write *group = s->group;
    s->group = NULL;
    main_lp->stats.db_bytes = s->db_bytes_after;
    if (s->n_loops > 1) {
        pthread_rwlock_wrlock(&s->lock);
    }
    for (struct cmd_write *w = group; w; w = w->next) {
        int row = (unsigned)w->kind < 3 ? s->write_rows[w->kind] : -1;
        if (w->result != 0 && row >= 0 && row < CMD_MAX_COMMANDS) {
            main_lp->stats.errors_by_cmd[row]++;
        }
        if (status < 0 && w->result == 0) {
            w->result = STORE_ERR_IO; /* cancelled: cannot happen, nothing cancels */
            snprintf(w->message, sizeof w->message, "%s", uv_strerror(status));
        }
        struct srv_conn *c = w->owner;
        if (c && c->lp != main_lp) {
            /* The worker keeps c alive until it is handed back, closed or not. */
            reply_init(&c->answer);
            cmd_write_finish(&main_lp->env, &c->wsession, w, &c->answer);
            continue;
        }
        if (c && c->net.closing) {
            c->waiting = NULL;
            w->owner = c = NULL;
        }
        cmd_write_finish(&main_lp->env, c ? &c->session : NULL, w, c ? &c->out : NULL);
    }
    if (s->n_loops > 1) {
        pthread_rwlock_unlock(&s->lock);
    }
    publish(main_lp); /* the writes' counters, before their answers leave */
    while (group) {
        struct cmd_write *next = group->next;
        struct srv_conn *c = group->owner;
        cmd_write_free(group);
        if (c && c->lp != main_lp) {
            hand_back(c);
        } else if (c) {
            c->waiting = NULL;
            if (s->stopping) {
                flush(c); /* the answer, then the close srv_close() asked for */
            } else {
                run_lines(c);  /* the rest of its pipeline, up to its next write */
                flush(c);
                srv_conn_resume(c); /* reading stopped while the write waited */
            }
        }
        group = next;
    }
    group_next(s);
}

/* Sends everything queued to the pool as one group, unless one is running. */
static void group_start(struct srv *s) {
    if (s->group || !s->queue_head || s->reloading || s->reload_wanted || s->drain_expired) {
        return;
    }
    s->group = s->queue_head;
    s->queue_head = s->queue_tail = NULL;
    s->loops[0].stats.write_groups++;
    s->work.data = s;
    int ret = uv_queue_work(s->loop, &s->work, on_group_work, on_group_done);
    if (ret < 0) {
        /* The callbacks will not run: fail the group here. */
        for (struct cmd_write *w = s->group; w; w = w->next) {
            w->result = STORE_ERR_IO;
            snprintf(w->message, sizeof w->message, "uv_queue_work: %s", uv_strerror(ret));
        }
        on_group_done(&s->work, 0);
    }
}

/* Adds w to the queue of the next group (main loop). */
static void queue_append(struct srv *s, struct cmd_write *w) {
    w->next = NULL;
    if (s->queue_tail) {
        s->queue_tail->next = w;
    } else {
        s->queue_head = w;
    }
    s->queue_tail = w;
}

/* Takes the write the session just queued and adds it to the next group:
 * directly on the main loop; from a worker, through the main loop's inbox,
 * with the session's format and CRS copied for the answer. */
static void write_enqueue(struct srv_conn *c) {
    struct srv *s = c->srv;
    struct cmd_write *w = c->session.pending;
    c->session.pending = NULL;
    w->owner = c;
    c->waiting = w;
    /* Now, not at the flush: libuv goes on calling on_read() while reads
     * fill the buffer, and the requests behind the write must wait. */
    uv_read_stop((uv_stream_t *)&c->net.tcp);
    if (c->lp->index == 0) {
        queue_append(s, w);
        group_start(s);
        return;
    }
    c->wsession = c->session;
    c->wsession.pending = NULL;
    c->lp->n_away++;
    w->next = NULL;
    uv_mutex_lock(&s->main_inbox_lock);
    if (s->inbox_tail) {
        s->inbox_tail->next = w;
    } else {
        s->inbox_head = w;
    }
    s->inbox_tail = w;
    uv_async_send(&s->main_wake);
    uv_mutex_unlock(&s->main_inbox_lock);
}

/* ---- Threads -------------------------------------------------------------------
 *
 * With --threads N, loops 1..N-1 run on threads of their own (worker_run())
 * and serve the connections the main loop hands them (hand_over()). What
 * they share with the main loop, and how:
 *   - the catalogue: a worker takes srv->lock for reading before it runs its
 *     first request of a loop iteration and drops it before it polls again
 *     (on_check(), on_prepare()), so it never holds it while blocked; the
 *     main loop takes it for writing only to apply a group's writes and to
 *     swap in a reloaded catalogue. The lock prefers writers, so a stream of
 *     reads on the workers cannot hold a commit's answers back; the main
 *     loop's own reads need no lock, since only its thread writes;
 *   - writes: handed to the main loop's inbox (write_enqueue()), committed
 *     in the next group, applied and answered there into the connection's
 *     `answer`, and the connection handed back through its worker's inbox
 *     (hand_back()), where the answer joins its output. The connection
 *     reads nothing meanwhile, as on the main loop, so answers stay in order;
 *     one closed meanwhile is freed only when it comes back;
 *   - counters: each loop counts into its own struct cmd_stats and
 *     publishes a copy at the end of every iteration, before it sends that
 *     iteration's answers; STATS adds the copies of the other loops to its
 *     own loop's counters (stats_total()). Open connections are one atomic
 *     count (srv->n_open);
 *   - the failed-AUTH bucket has its own lock (auth.h).
 * Shutdown: srv_close() asks each worker to drain (inbox_stop); a worker
 * closes its handles once its connections are closed and none of its writes
 * is away, its loop ends, and the thread tells the main loop, whose drain
 * waits for every worker; srv_free() joins the threads. */

static bool conn_start(struct srv_conn *c, struct srv_loop *lp);

/* Sends c, whose write the main loop has answered or dropped, back to its
 * worker loop (main loop). */
static void hand_back(struct srv_conn *c) {
    struct srv_loop *lp = c->lp;
    uv_mutex_lock(&lp->inbox_lock);
    c->done_next = lp->inbox_done;
    lp->inbox_done = c;
    uv_async_send(&lp->wake); /* the worker cannot have closed it: a write is away */
    uv_mutex_unlock(&lp->inbox_lock);
}

/* Frees a write that will not be committed; its client gets no answer. */
static void drop_write(struct cmd_write *w) {
    struct srv_conn *c = w->owner;
    cmd_write_free(w);
    if (c && c->lp->index != 0) {
        reply_init(&c->answer); /* nothing to say */
        hand_back(c);
    } else if (c) {
        c->waiting = NULL;
    }
}

/* Sets a worker's stop or kill flag and wakes it, unless its loop is over. */
static void worker_post(struct srv_loop *lp, bool kill) {
    uv_mutex_lock(&lp->inbox_lock);
    if (!lp->closed) {
        lp->inbox_stop = true;
        lp->inbox_kill = lp->inbox_kill || kill;
        uv_async_send(&lp->wake);
    }
    uv_mutex_unlock(&lp->inbox_lock);
}

/* Main loop: writes handed over by workers, and workers that finished. */
static void on_main_wake(uv_async_t *h) {
    struct srv *s = h->data;
    uv_mutex_lock(&s->main_inbox_lock);
    struct cmd_write *w = s->inbox_head;
    s->inbox_head = s->inbox_tail = NULL;
    s->workers_running = s->n_loops - 1 - s->workers_finished;
    uv_mutex_unlock(&s->main_inbox_lock);
    while (w) {
        struct cmd_write *next = w->next;
        if (s->drain_expired) {
            drop_write(w);
        } else {
            queue_append(s, w);
        }
        w = next;
    }
    group_start(s);
    drain_check(s);
}

/* Adds the counters of `from` to `to`. */
static void stats_add(struct cmd_stats *to, const struct cmd_stats *from) {
    to->requests += from->requests;
    to->errors += from->errors;
    to->writes += from->writes;
    to->write_groups += from->write_groups;
    to->connections_total += from->connections_total;
    to->started_unix += from->started_unix; /* the main loop's; 0 elsewhere */
    to->db_bytes += from->db_bytes;         /* likewise */
    to->batches += from->batches;
    to->batched_queries += from->batched_queries;
    for (size_t i = 0; i < CMD_MAX_COMMANDS; i++) {
        to->requests_by_cmd[i] += from->requests_by_cmd[i];
        to->errors_by_cmd[i] += from->errors_by_cmd[i];
    }
}

/* cmd_env.stats_total: this loop's counters and the other loops' copies. */
static void stats_total(void *arg, struct cmd_stats *out) {
    struct srv_loop *lp = arg;
    struct srv *s = lp->srv;
    *out = lp->stats;
    for (int i = 0; i < s->n_loops; i++) {
        struct srv_loop *other = &s->loops[i];
        if (other != lp) {
            uv_mutex_lock(&other->published_lock);
            stats_add(out, &other->published);
            uv_mutex_unlock(&other->published_lock);
        }
    }
    out->connections_open = __atomic_load_n(&s->n_open, __ATOMIC_RELAXED);
}

static void read_unlock(struct srv_loop *lp) {
    if (lp->read_locked) {
        lp->read_locked = false;
        pthread_rwlock_unlock(&lp->srv->lock);
    }
}

/* End of a loop iteration's I/O: publish the counters, let a writer in,
 * then send the answers the reads produced. */
static void on_check(uv_check_t *h) {
    struct srv_loop *lp = h->data;
    run_queued(lp);
    publish(lp);
    read_unlock(lp);
    while (lp->flush_head) {
        struct srv_conn *c = lp->flush_head;
        lp->flush_head = c->flush_next;
        c->flush_queued = false;
        if (!c->net.closing) {
            flush(c);
        }
    }
}

/* Workers: never hold the reader lock while blocked in poll. */
static void on_prepare(uv_prepare_t *h) {
    read_unlock(h->data);
}

/* A worker's drain: stop reading everything; close each connection once
 * its answers are sent (srv_conn_drain()). */
static void srv_conn_drain(struct srv_conn *c);

static void worker_drain(struct srv_loop *lp) {
    lp->stopping = true;
    struct srv_conn *next = NULL;
    for (struct srv_conn *c = (struct srv_conn *)lp->conns.head; c; c = next) {
        next = (struct srv_conn *)c->net.next;
        srv_conn_drain(c);
    }
}

/* Closes a worker loop's own handles; its loop ends once they are closed.
 * The wake-up handle only if its init succeeded (workers_start()). */
static void worker_close_handles(struct srv_loop *lp) {
    uv_close((uv_handle_t *)&lp->sweep, NULL);
    uv_close((uv_handle_t *)&lp->check, NULL);
    uv_close((uv_handle_t *)&lp->prepare, NULL);
    if (lp->wake.type == UV_ASYNC) {
        uv_close((uv_handle_t *)&lp->wake, NULL);
    }
}

/* Ends a draining worker's loop once nothing is left to answer. */
static void worker_check_done(struct srv_loop *lp) {
    if (!lp->stopping || lp->conns.head || lp->n_away > 0) {
        return;
    }
    uv_mutex_lock(&lp->inbox_lock);
    bool was_closed = lp->closed;
    lp->closed = true; /* no uv_async_send() from now on */
    while (lp->n_inbox_fds > 0) {
        /* Handed over but not adopted before the drain (more than one
         * wake-up's worth): closed unanswered, like any not yet read. */
        close(lp->inbox_fds[--lp->n_inbox_fds]);
        __atomic_sub_fetch(&lp->srv->n_open, 1, __ATOMIC_RELAXED);
    }
    uv_mutex_unlock(&lp->inbox_lock);
    if (was_closed) {
        return;
    }
    read_unlock(lp);
    worker_close_handles(lp);
}

/* Worker: adopts handed-over sockets, takes back answered writes, and
 * starts the drain or the final close that the main loop asked for. */
static void on_worker_wake(uv_async_t *h) {
    struct srv_loop *lp = h->data;
    struct srv *s = lp->srv;
    uv_mutex_lock(&lp->inbox_lock);
    int fds[64];
    size_t n_fds = lp->n_inbox_fds < 64 ? lp->n_inbox_fds : 64;
    if (n_fds > 0) { /* inbox_fds is NULL until the first socket comes */
        memcpy(fds, lp->inbox_fds, n_fds * sizeof *fds);
        memmove(lp->inbox_fds, lp->inbox_fds + n_fds,
                (lp->n_inbox_fds - n_fds) * sizeof *fds);
        lp->n_inbox_fds -= n_fds;
    }
    if (lp->n_inbox_fds > 0) {
        uv_async_send(&lp->wake); /* the rest in the next iteration */
    }
    struct srv_conn *done = lp->inbox_done;
    lp->inbox_done = NULL;
    bool stop = lp->inbox_stop, kill = lp->inbox_kill;
    uv_mutex_unlock(&lp->inbox_lock);

    /* A drain first, so that a write answered in the same wake-up only has
     * its answer sent: nothing pipelined behind it runs any more, as on the
     * main loop (and after a dropped write nothing else is answered). */
    if (stop && !lp->stopping) {
        worker_drain(lp);
    }
    if (kill) {
        while (lp->conns.head) {
            net_conn_close(lp->conns.head);
        }
    }

    for (size_t i = 0; i < n_fds; i++) {
        struct srv_conn *c = NULL;
        if (!lp->stopping) {
            c = (struct srv_conn *)net_conn_adopt(&lp->conns, fds[i]);
        } else {
            close(fds[i]);
        }
        if (!c) {
            __atomic_sub_fetch(&s->n_open, 1, __ATOMIC_RELAXED);
            continue;
        }
        int ret = conn_start(c, lp) ? uv_read_start((uv_stream_t *)&c->net.tcp, on_alloc,
                                                     on_read)
                                    : 0;
        if (ret < 0) {
            srv_conn_fail(c, "reading from", ret);
        }
    }
    while (done) {
        struct srv_conn *c = done;
        done = c->done_next;
        lp->n_away--;
        c->waiting = NULL;
        if (c->free_deferred) {
            conn_release(c);
            continue;
        }
        if (c->net.closing) {
            reply_close(&c->answer); /* its close callback frees the rest */
            continue;
        }
        reply_append(&c->out, &c->answer);
        if (lp->stopping) {
            flush(c);
        } else {
            run_lines(c);
            flush(c);
            srv_conn_resume(c);
        }
    }
    worker_check_done(lp);
}

/* A worker thread: runs its loop until worker_check_done() closes it. */
static void worker_run(void *arg) {
    struct srv_loop *lp = arg;
    struct srv *s = lp->srv;
    uv_run(lp->loop, UV_RUN_DEFAULT);
    uv_mutex_lock(&s->main_inbox_lock);
    s->workers_finished++;
    uv_async_send(&s->main_wake); /* under the lock: the main loop closes it after */
    uv_mutex_unlock(&s->main_inbox_lock);
}

/* ---- Accepting ------------------------------------------------------------------ */

/* Fills c->peer and c->auth.loopback from the socket's peer address. An
 * address that cannot be read counts as not loopback. */
static void describe_peer(struct srv_conn *c) {
    struct sockaddr_storage addr;
    int len = sizeof addr;
    snprintf(c->peer, sizeof c->peer, "?");
    if (uv_tcp_getpeername(&c->net.tcp, (struct sockaddr *)&addr, &len) < 0) {
        return;
    }
    c->auth.loopback = auth_addr_is_loopback((struct sockaddr *)&addr);
    char host[48] = "?";
    if (addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&addr;
        uv_ip6_name(a, host, sizeof host);
        snprintf(c->peer, sizeof c->peer, "[%s]:%d", host, ntohs(a->sin6_port));
    } else if (addr.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&addr;
        uv_ip4_name(a, host, sizeof host);
        snprintf(c->peer, sizeof c->peer, "%s:%d", host, ntohs(a->sin_port));
    }
}

/* ---- The idle timeout ------------------------------------------------------------ */

/* The idle limit of c; one waiting for a group commit is not idle. */
static uint64_t idle_limit_ms(struct net_conn *nc, uint64_t now) {
    struct srv_conn *c = (struct srv_conn *)nc;
    if (c->waiting) {
        c->net.active_ms = now; /* the server, not the client, is slow */
    }
    return c->srv->cfg.idle_timeout_ms;
}

static void on_sweep(uv_timer_t *t) {
    struct srv_loop *lp = t->data;
    net_conns_sweep(&lp->conns, idle_limit_ms);
}

/* Sets up a connection just accepted or adopted on lp; false when it had to
 * be closed (out of memory). */
static bool conn_start(struct srv_conn *c, struct srv_loop *lp) {
    c->srv = lp->srv;
    c->lp = lp;
    cmd_session_init(&c->session);
    reply_init(&c->out);
    reply_init(&c->answer);
    c->reader = proto_reader_new(PROTO_MAX_LINE_BYTES);
    if (!c->reader) {
        fprintf(stderr, "nearestd: accept: %s\n", uv_strerror(UV_ENOMEM));
        srv_conn_close(c);
        return false;
    }
    describe_peer(c);
    c->auth.limiter = &lp->srv->auth_limit;
    return true;
}

static void on_handle_free(uv_handle_t *h) {
    free(h);
}

/* With worker loops, new connections go round the loops in turn, starting
 * with loop 1. On a worker's turn the connection is accepted here and handed
 * to that worker as a socket, which it adopts (on_worker_wake()). Returns
 * false when the main loop is to accept it itself: its own turn, or the cap
 * is reached (then the main loop turns it away). */
static bool hand_over(struct srv *s, uv_stream_t *listener) {
    if (s->n_loops == 1) {
        return false;
    }
    unsigned pick = s->next_loop++ % (unsigned)s->n_loops;
    if (pick == 0 || __atomic_load_n(&s->n_open, __ATOMIC_RELAXED) >= s->cfg.max_connections) {
        return false;
    }
    struct srv_loop *lp = &s->loops[pick];
    uv_tcp_t *tmp = malloc(sizeof *tmp);
    if (!tmp || uv_tcp_init(s->loop, tmp) < 0) {
        fprintf(stderr, "nearestd: accept: out of memory\n");
        free(tmp);
        return false; /* the main loop tries, and logs what happens */
    }
    int ret = uv_accept(listener, (uv_stream_t *)tmp);
    int fd = -1;
    uv_os_fd_t sock;
    if (ret == 0 && (ret = uv_fileno((uv_handle_t *)tmp, &sock)) == 0) {
        fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
        ret = fd < 0 ? uv_translate_sys_error(errno) : 0;
    }
    uv_close((uv_handle_t *)tmp, on_handle_free); /* closes its copy of the socket */
    if (ret < 0) {
        fprintf(stderr, "nearestd: accept: %s\n", uv_strerror(ret));
        return true;
    }
    __atomic_add_fetch(&s->n_open, 1, __ATOMIC_RELAXED);
    s->loops[0].stats.connections_total++;
    bool handed = false;
    uv_mutex_lock(&lp->inbox_lock);
    if (!lp->inbox_stop) {
        if (lp->n_inbox_fds == lp->cap_inbox_fds) {
            size_t cap = lp->cap_inbox_fds ? 2 * lp->cap_inbox_fds : 16;
            int *fds = realloc(lp->inbox_fds, cap * sizeof *fds);
            if (fds) {
                lp->inbox_fds = fds;
                lp->cap_inbox_fds = cap;
            }
        }
        if (lp->n_inbox_fds < lp->cap_inbox_fds) {
            lp->inbox_fds[lp->n_inbox_fds++] = fd;
            uv_async_send(&lp->wake);
            handed = true;
        }
    }
    uv_mutex_unlock(&lp->inbox_lock);
    if (!handed) {
        fprintf(stderr, "nearestd: accept: %s\n", uv_strerror(UV_ENOMEM));
        close(fd);
        __atomic_sub_fetch(&s->n_open, 1, __ATOMIC_RELAXED);
    }
    return true;
}

static void on_connection(uv_stream_t *listener, int status) {
    struct srv *s = listener->data;
    if (status == 0 && hand_over(s, listener)) {
        return;
    }
    struct srv_loop *lp = &s->loops[0];
    struct srv_conn *c = (struct srv_conn *)net_conn_accept(&lp->conns, listener, status);
    if (!c || !conn_start(c, lp)) {
        return;
    }
    if (!c->net.counted) {
        /* Turned away: one answer, then closed; it never counts as open. */
        c->out.format = REPLY_TEXT;
        reply_err(&c->out, CMD_ERR_LIMIT, "too many connections (at most %zu); closing",
                  s->cfg.max_connections);
        c->close_after_write = true;
        flush(c);
        return;
    }
    lp->stats.connections_total++;
    int ret = uv_read_start((uv_stream_t *)&c->net.tcp, on_alloc, on_read);
    if (ret < 0) {
        srv_conn_fail(c, "reading from", ret);
    }
}

/* ---- Server lifetime -------------------------------------------------------------- */

static void on_server_handle_closed(uv_handle_t *h) {
    struct srv *s = h->data;
    s->n_open_handles--;
}

/* For the main loop's own handles (sweep, check), whose data is the loop. */
static void on_main_loop_handle_closed(uv_handle_t *h) {
    struct srv_loop *lp = h->data;
    lp->srv->n_open_handles--;
}

static void on_signal(uv_signal_t *h, int signum) {
    struct srv *s = h->data;
    if (s->stopping) {
        fprintf(stderr, "nearestd: caught signal %d, already shutting down\n", signum);
        return;
    }
    fprintf(stderr, "nearestd: caught signal %d, shutting down\n", signum);
    srv_close(s);
}

/* ---- Shutdown: drain, then close ----------------------------------------------------
 *
 * SIGTERM (or srv_close()) stops accepting and reading at once. A connection
 * whose write is queued or committing keeps its socket until that write is
 * answered; the queue keeps committing group after group (no new writes can
 * join it, since nothing is read any more); every connection closes as soon
 * as the answers it was given have been sent. Requests a client pipelined
 * behind a queued write are not executed. The drain timer bounds all this:
 * after cfg.drain_timeout_ms whatever is left is closed unanswered (writes not
 * yet started are dropped, never acknowledged) and uv_run() returns once a
 * group commit already running has finished. A second signal during the
 * drain is logged and ignored (drain_check()). */

/* Once nothing is left to answer after srv_close(): closes the drain timer
 * and the signal handlers, which stay open during the drain so that a second
 * SIGTERM or a SIGHUP is logged and ignored rather than taking its default
 * action (ending the process). */
static void drain_check(struct srv *s) {
    if (!s->stopping || s->closed || s->loops[0].conns.head || s->group || s->queue_head ||
        s->reloading || s->workers_running > 0) {
        return;
    }
    s->closed = true;
    uv_close((uv_handle_t *)&s->loops[0].check, on_main_loop_handle_closed);
    if (s->main_wake_open) {
        /* Every worker has finished, and sent its last wake-up before that. */
        s->main_wake_open = false;
        uv_close((uv_handle_t *)&s->main_wake, on_server_handle_closed);
    }
    uv_close((uv_handle_t *)&s->sigint, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->sigterm, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->sighup, on_server_handle_closed);
    if (s->drain_open) {
        s->drain_open = false;
        uv_close((uv_handle_t *)&s->drain, on_server_handle_closed);
    }
}

/* Frees the writes that have not started; their clients get no answer. */
static void queue_drop(struct srv *s) {
    while (s->queue_head) {
        struct cmd_write *w = s->queue_head;
        s->queue_head = w->next;
        drop_write(w);
    }
    s->queue_tail = NULL;
}

static void on_drain_expired(uv_timer_t *t) {
    struct srv *s = t->data;
    size_t n_conns = __atomic_load_n(&s->n_open, __ATOMIC_RELAXED);
    fprintf(stderr, "nearestd: shutdown: %zu connections still busy after %llu ms; closing "
                    "them\n", n_conns, (unsigned long long)s->cfg.drain_timeout_ms);
    s->drain_expired = true;
    queue_drop(s);
    while (s->loops[0].conns.head) {
        net_conn_close(s->loops[0].conns.head);
    }
    for (int i = 1; i < s->n_loops; i++) {
        worker_post(&s->loops[i], true);
    }
    drain_check(s);
}

/* Stops reading c and closes it once its answers, and its queued write's
 * answer, have been sent. */
static void srv_conn_drain(struct srv_conn *c) {
    uv_read_stop((uv_stream_t *)&c->net.tcp);
    if (c->run_queued && !c->close_after_write && !c->paused) {
        /* Read in this iteration before the shutdown began: answer them, as
         * when requests ran as soon as they were read. */
        run_lines(c);
        if (c->net.closing) {
            return;
        }
    }
    c->close_after_write = true;
    if (reply_len(&c->out) > 0 || reply_failed(&c->out)) {
        flush(c); /* answers built this iteration first; it closes c when they are sent */
        return;
    }
    if (!c->waiting && c->writes_pending == 0) {
        srv_conn_close(c);
    }
}

void srv_close(struct srv *s) {
    if (s->stopping) {
        return;
    }
    s->stopping = true;
    s->reload_wanted = false; /* a reload not yet started would only delay the exit */
    if (s->close_hook) {
        s->close_hook(s->close_hook_arg);
    }
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->loops[0].sweep, on_main_loop_handle_closed);
    for (int i = 1; i < s->n_loops; i++) {
        worker_post(&s->loops[i], false);
    }
    if (uv_timer_init(s->loop, &s->drain) == 0) {
        s->drain.data = s;
        s->drain_open = true;
        s->n_open_handles++;
        uv_timer_start(&s->drain, on_drain_expired, s->cfg.drain_timeout_ms, 0);
    } else {
        s->drain_expired = true; /* cannot bound a drain: do not start one */
        queue_drop(s);
    }
    struct srv_conn *next = NULL;
    for (struct srv_conn *c = (struct srv_conn *)s->loops[0].conns.head; c; c = next) {
        next = (struct srv_conn *)c->net.next; /* srv_conn_drain() may unlink c */
        if (s->drain_expired) {
            srv_conn_close(c);
        } else {
            srv_conn_drain(c);
        }
    }
    if (s->drain_expired) {
        for (int i = 1; i < s->n_loops; i++) {
            worker_post(&s->loops[i], true);
        }
    }
    group_start(s); /* the queue, if no group runs and no reload holds it */
    drain_check(s);
}

/* After a group commit: a reload waiting for it goes first, then the next group. */
static void group_next(struct srv *s) {
    reload_start(s);
    group_start(s);
    drain_check(s);
}

/* ---- SIGHUP: reload the catalogue --------------------------------------------------
 *
 * The new catalogue is built on the thread pool from its own connection to
 * the database, while the loop goes on answering queries from the old one.
 * Write groups are held from the SIGHUP until the swap (a running group
 * finishes first), so the database does not change under the build except
 * by other processes, and no write committed by this daemon can be missing
 * from the new catalogue: writes queued meanwhile commit after the swap and
 * are applied to the new one. The swap is one pointer assignment on the loop
 * thread between two callbacks, so no request sees a half-built catalogue.
 * Writes wait as long as the build: 8 ms for the bundled dataset, 1.4 s for
 * 10^6 facilities (measured); reads do not wait. Both catalogues are in
 * memory until the swap, so a reload briefly needs twice the catalogue's
 * memory; the old one's pages are handed back afterwards (malloc_trim). */

static void on_reload_work(uv_work_t *req) {
    struct srv *s = req->data;
    struct store *st = NULL;
    struct catalog *cat = NULL;
    s->reload_err[0] = '\0';
    int ret = store_open(s->cfg.db_path, &st, s->reload_err, sizeof s->reload_err);
    if (ret < 0) {
        goto done;
    }
    cat = catalog_new();
    if (!cat) {
        snprintf(s->reload_err, sizeof s->reload_err, "out of memory");
        goto done;
    }
    ret = catalog_load(cat, st, s->reload_err, sizeof s->reload_err);
    if (ret < 0) {
        catalog_free(cat);
        cat = NULL;
    }
done:
    store_close(st);
    s->reload_new = cat;
}

static void on_reload_done(uv_work_t *req, int status) {
    struct srv *s = req->data;
    struct catalog *fresh = s->reload_new;
    s->reload_new = NULL;
    s->reloading = false;
    uint64_t took_ms = uv_now(s->loop) - s->reload_start_ms;
    if (status < 0 || !fresh) {
        fprintf(stderr, "nearestd: reload failed, still serving the old catalogue: %s\n",
                status < 0 ? uv_strerror(status) : s->reload_err);
        catalog_free(fresh);
    } else {
        struct catalog *old = s->catalog;
        if (s->n_loops > 1) {
            pthread_rwlock_wrlock(&s->lock);
        }
        s->catalog = fresh;
        for (int i = 0; i < s->n_loops; i++) {
            s->loops[i].env.catalog = fresh;
        }
        if (s->n_loops > 1) {
            pthread_rwlock_unlock(&s->lock);
        }
        if (s->reload_hook) {
            s->reload_hook(s->reload_hook_arg, fresh);
        }
        size_t n_waited = 0;
        for (const struct cmd_write *w = s->queue_head; w; w = w->next) {
            n_waited++;
        }
        fprintf(stderr, "nearestd: reloaded %zu facilities (was %zu) and %zu areas from %s in "
                        "%llu ms; writes that waited: %zu\n",
                catalog_count(fresh), catalog_count(old), catalog_area_count(fresh),
                s->cfg.db_path, (unsigned long long)took_ms, n_waited);
        catalog_free(old);
        malloc_trim(0); /* the old catalogue's pages go back to the system */
    }
    group_start(s);
    drain_check(s);
}

/* Starts the build a SIGHUP asked for, once no group commit runs. */
static void reload_start(struct srv *s) {
    if (!s->reload_wanted || s->reloading || s->group || s->stopping) {
        return;
    }
    s->reload_wanted = false;
    s->reloading = true;
    s->reload_start_ms = uv_now(s->loop);
    s->reload_work.data = s;
    int ret = uv_queue_work(s->loop, &s->reload_work, on_reload_work, on_reload_done);
    if (ret < 0) {
        s->reloading = false;
        fprintf(stderr, "nearestd: reload failed, still serving the old catalogue: "
                        "uv_queue_work: %s\n", uv_strerror(ret));
        group_start(s);
    }
}

static void on_sighup(uv_signal_t *h, int signum) {
    (void)signum;
    struct srv *s = h->data;
    if (s->stopping) {
        fprintf(stderr, "nearestd: SIGHUP ignored: shutting down\n");
        return;
    }
    if (!s->cfg.db_path || !s->cfg.owns_catalog) {
        fprintf(stderr, "nearestd: SIGHUP ignored: this server cannot replace its catalogue\n");
        return;
    }
    if (s->reload_wanted || s->reloading) {
        fprintf(stderr, "nearestd: SIGHUP ignored: a reload is already under way\n");
        return;
    }
    s->reload_wanted = true;
    reload_start(s); /* now, or when the running group commit completes */
}

void srv_on_reload(struct srv *s, void (*fn)(void *arg, struct catalog *catalog), void *arg) {
    s->reload_hook = fn;
    s->reload_hook_arg = arg;
}

struct catalog *srv_catalog(const struct srv *s) {
    return s->catalog;
}

void srv_on_close(struct srv *s, void (*fn)(void *arg), void *arg) {
    s->close_hook = fn;
    s->close_hook_arg = arg;
}

void srv_free(struct srv *s) {
    if (!s) {
        return;
    }
    for (int i = 0; i < s->n_loops; i++) {
        struct srv_loop *lp = &s->loops[i];
        if (lp->thread_started) {
            uv_thread_join(&lp->thread);
        }
        if (i > 0 && lp->loop) {
            (void)uv_loop_close(lp->loop); /* every handle was closed before it ended */
        }
        spares_free(&lp->spares);
        free(lp->inbox_fds);
        cmd_batch_free(lp->batch);
    }
    for (int i = 0; i < s->n_mutexes; i++) {
        uv_mutex_destroy(&s->loops[i].inbox_lock);
        uv_mutex_destroy(&s->loops[i].published_lock);
    }
    if (s->lock_ready) {
        pthread_rwlock_destroy(&s->lock);
        uv_mutex_destroy(&s->main_inbox_lock);
        pthread_mutex_destroy(&s->auth_limit.lock);
    }
    if (s->cfg.owns_catalog) {
        catalog_free(s->catalog);
    }
    free(s->loops);
    free(s);
}

struct cmd_stats *srv_stats(struct srv *s) {
    return &s->loops[0].stats;
}

int srv_port(const struct srv *s) {
    return net_port(&s->listener);
}

void srv_config_init(struct srv_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->max_connections = SRV_DEFAULT_MAX_CONNECTIONS;
    cfg->idle_timeout_ms = SRV_DEFAULT_IDLE_TIMEOUT_MS;
    cfg->max_output_bytes = SRV_MAX_QUEUED_BYTES;
    cfg->drain_timeout_ms = SRV_DEFAULT_DRAIN_TIMEOUT_MS;
}

bool srv_is_read_only(const struct srv *s) {
    return s->cfg.auth.read_only;
}

int srv_open(uv_loop_t *loop, struct catalog *catalog, struct store *store, const char *host,
             int port, struct srv **out, char *err, size_t err_len) {
    struct srv_config cfg;
    srv_config_init(&cfg);
    return srv_open_config(loop, catalog, store, host, port, &cfg, out, err, err_len);
}

/* The part of a loop's set-up that is the same on every thread. */
static void loop_setup(struct srv *s, struct srv_loop *lp, int index, uv_loop_t *loop) {
    lp->srv = s;
    lp->loop = loop;
    lp->index = index;
    net_conns_init(&lp->conns, loop, lp, sizeof(struct srv_conn), &s->n_open,
                   s->cfg.max_connections, "accept", conn_free, conn_closed);
    lp->env.catalog = s->catalog;
    lp->env.stats = &lp->stats;
    lp->env.stats_total = stats_total;
    lp->env.stats_total_arg = lp;
    lp->sweep.data = lp;
    lp->check.data = lp;
    lp->prepare.data = lp;
    lp->wake.data = lp;
}

/* Stops and joins workers 1..n-1 that were started (open's failure path). */
static void workers_stop(struct srv *s, int n) {
    for (int i = 1; i < n; i++) {
        struct srv_loop *lp = &s->loops[i];
        if (lp->thread_started) {
            worker_post(lp, true);
            uv_thread_join(&lp->thread);
            lp->thread_started = false;
        }
    }
}

/* Sets up loops 1..n_loops-1 and starts their threads. On failure, stops
 * those started, leaves everything closed, and returns a libuv error. */
static int workers_start(struct srv *s, char *err, size_t err_len) {
    for (int i = 1; i < s->n_loops; i++) {
        struct srv_loop *lp = &s->loops[i];
        int ret = uv_loop_init(&lp->own_loop);
        if (ret < 0) {
            snprintf(err, err_len, "uv_loop_init: %s", uv_strerror(ret));
            workers_stop(s, i);
            return ret;
        }
        loop_setup(s, lp, i, &lp->own_loop);
        /* On a loop of its own, not yet running: these cannot fail but for
         * an eventfd (the async); then every handle is closed again. */
        uv_timer_init(lp->loop, &lp->sweep);
        uv_check_init(lp->loop, &lp->check);
        uv_prepare_init(lp->loop, &lp->prepare);
        ret = uv_async_init(lp->loop, &lp->wake, on_worker_wake);
        if (ret == 0) {
            ret = net_sweep_start(&lp->sweep, s->cfg.idle_timeout_ms, on_sweep);
        }
        if (ret == 0) {
            uv_check_start(&lp->check, on_check);
            uv_prepare_start(&lp->prepare, on_prepare);
            ret = uv_thread_create(&lp->thread, worker_run, lp);
        }
        if (ret < 0) {
            snprintf(err, err_len, "cannot start loop thread %d: %s", i, uv_strerror(ret));
            worker_close_handles(lp);
            uv_run(lp->loop, UV_RUN_DEFAULT); /* finishes the closes */
            (void)uv_loop_close(lp->loop);
            lp->loop = NULL;
            workers_stop(s, i);
            return ret;
        }
        lp->thread_started = true;
    }
    return 0;
}

int srv_open_config(uv_loop_t *loop, struct catalog *catalog, struct store *store,
                    const char *host, int port, const struct srv_config *cfg,
                    struct srv **out, char *err, size_t err_len) {
    if (cfg->max_connections == 0 || cfg->max_output_bytes == 0) {
        snprintf(err, err_len, "max_connections and max_output_bytes must be at least 1");
        return UV_EINVAL;
    }
    int n_loops = cfg->threads ? (int)cfg->threads : 1;
    if (cfg->threads > SRV_MAX_THREADS) {
        snprintf(err, err_len, "threads must be from 1 to %d", SRV_MAX_THREADS);
        return UV_EINVAL;
    }
    struct sockaddr_storage addr;
    int ret = net_addr_parse(host, port, &addr, err, err_len);
    if (ret < 0) {
        return ret;
    }
    struct srv *s = calloc(1, sizeof *s);
    struct srv_loop *loops = calloc((size_t)n_loops, sizeof *loops);
    if (!s || !loops) {
        free(s);
        free(loops);
        snprintf(err, err_len, "out of memory");
        return UV_ENOMEM;
    }
    s->loops = loops;
    s->n_loops = n_loops;
    s->next_loop = 1; /* the first connection goes to a worker: a lone client tests one */
    s->workers_running = n_loops - 1;
    s->loop = loop;
    s->cfg = *cfg;
    s->cfg.auth.read_only = !cfg->auth.has_token &&
                            !auth_addr_is_loopback((const struct sockaddr *)&addr);
    s->catalog = catalog;
    s->store = store;
    for (int i = 0; i < n_loops; i++) {
        if ((loops[i].batch = cmd_batch_new()) == NULL) {
            snprintf(err, err_len, "out of memory");
            s->cfg.owns_catalog = false; /* the caller keeps it on failure */
            srv_free(s);
            return UV_ENOMEM;
        }
    }
    for (; s->n_mutexes < n_loops; s->n_mutexes++) {
        uv_mutex_init(&loops[s->n_mutexes].inbox_lock); /* cannot fail on Linux */
        uv_mutex_init(&loops[s->n_mutexes].published_lock);
    }
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    uv_mutex_init(&s->main_inbox_lock);
    s->lock_ready = true;
    struct srv_loop *lp0 = &loops[0];
    loop_setup(s, lp0, 0, loop);
    lp0->stats.started_unix = (int64_t)time(NULL);
    auth_limiter_init(&s->auth_limit, (int64_t)(uv_hrtime() / 1000000));
    lp0->stats.db_bytes = db_size_bytes(cfg->db_path);
    static const char *const write_names[3] = {"PUT", "DEL", "SET"};
    for (int k = 0; k < 3; k++) {
        size_t n_specs = 0;
        const struct cmd_spec *spec = cmd_lookup(write_names[k]);
        s->write_rows[k] = spec ? (int)(spec - cmd_table(&n_specs)) : -1;
    }

    /* Each handle is counted in n_open_handles as it is initialised, in this
     * order, which the failure path below relies on. */
    ret = uv_tcp_init(loop, &s->listener);
    if (ret < 0) {
        snprintf(err, err_len, "uv_tcp_init: %s", uv_strerror(ret));
        s->cfg.owns_catalog = false; /* the caller keeps it on failure */
        srv_free(s);
        return ret;
    }
    s->listener.data = s;
    s->n_open_handles = 1;
    ret = uv_signal_init(loop, &s->sigint);
    if (ret == 0) {
        s->sigint.data = s;
        s->n_open_handles++;
        ret = uv_signal_init(loop, &s->sigterm);
    }
    if (ret == 0) {
        s->sigterm.data = s;
        s->n_open_handles++;
    } else {
        snprintf(err, err_len, "uv_signal_init: %s", uv_strerror(ret));
        goto fail;
    }
    ret = uv_timer_init(loop, &lp0->sweep);
    if (ret < 0) {
        snprintf(err, err_len, "uv_timer_init: %s", uv_strerror(ret));
        goto fail;
    }
    lp0->sweep.data = lp0;
    s->n_open_handles++;
    ret = uv_signal_init(loop, &s->sighup);
    if (ret < 0) {
        snprintf(err, err_len, "uv_signal_init: %s", uv_strerror(ret));
        goto fail;
    }
    s->sighup.data = s;
    s->n_open_handles++;
    ret = uv_check_init(loop, &lp0->check);
    if (ret < 0) {
        snprintf(err, err_len, "uv_check_init: %s", uv_strerror(ret));
        goto fail;
    }
    lp0->check.data = lp0;
    s->n_open_handles++;
    if (n_loops > 1) {
        ret = uv_async_init(loop, &s->main_wake, on_main_wake);
        if (ret < 0) {
            snprintf(err, err_len, "uv_async_init: %s", uv_strerror(ret));
            goto fail;
        }
        s->main_wake.data = s;
        s->main_wake_open = true;
        s->n_open_handles++;
    }
    ret = net_listen(&s->listener, (const struct sockaddr *)&addr, SRV_BACKLOG, on_connection);
    if (ret < 0) {
        snprintf(err, err_len, "cannot listen on %s:%d: %s", host, port, uv_strerror(ret));
        goto fail;
    }
    ret = uv_signal_start(&s->sigint, on_signal, SIGINT);
    if (ret == 0) {
        ret = uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    }
    if (ret == 0) {
        ret = uv_signal_start(&s->sighup, on_sighup, SIGHUP);
    }
    if (ret < 0) {
        snprintf(err, err_len, "uv_signal_start: %s", uv_strerror(ret));
        goto fail;
    }
    ret = net_sweep_start(&lp0->sweep, s->cfg.idle_timeout_ms, on_sweep);
    if (ret < 0) {
        snprintf(err, err_len, "uv_timer_start: %s", uv_strerror(ret));
        goto fail;
    }
    uv_check_start(&lp0->check, on_check); /* cannot fail: it has a callback */
    uv_unref((uv_handle_t *)&lp0->check); /* the listener keeps the loop alive */
    publish(lp0); /* what STATS on a worker shows of the main loop until its first check */
    ret = workers_start(s, err, err_len);
    if (ret < 0) {
        goto fail;
    }
    *out = s;
    return 0;
fail:
    /* Close whatever was initialised and let the loop finish the closes. */
    s->stopping = true;
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    if (s->n_open_handles >= 2) {
        uv_close((uv_handle_t *)&s->sigint, on_server_handle_closed);
    }
    if (s->n_open_handles >= 3) {
        uv_close((uv_handle_t *)&s->sigterm, on_server_handle_closed);
    }
    if (s->n_open_handles >= 4) {
        uv_close((uv_handle_t *)&lp0->sweep, on_main_loop_handle_closed);
    }
    if (s->n_open_handles >= 5) {
        uv_close((uv_handle_t *)&s->sighup, on_server_handle_closed);
    }
    if (s->n_open_handles >= 6) {
        uv_close((uv_handle_t *)&lp0->check, on_main_loop_handle_closed);
    }
    if (s->n_open_handles >= 7) {
        uv_close((uv_handle_t *)&s->main_wake, on_server_handle_closed);
    }
    while (s->n_open_handles > 0) {
        uv_run(loop, UV_RUN_ONCE);
    }
    s->cfg.owns_catalog = false; /* the caller keeps it on failure */
    srv_free(s);
    return ret;
}
