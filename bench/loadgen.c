/* loadgen.c: a closed-loop load generator for nearestd and Redis.
 *
 * Issue 7 compares nearestd's NEAREST with Redis's GEOSEARCH and both with
 * PING, so one client drives both servers: the same connections, the same
 * pipelining, the same clock, only the framing differs (--proto nearest or
 * resp). C connections each keep P requests in flight: a request is sent as
 * soon as a reply comes back, so at P = 1 the rate measures round trips and
 * at P = 16 it measures how much work a server gets through per wake-up.
 *
 * Requests come from a file, one per line, cycled; connection i starts at line
 * i * lines / C so that connections do not ask the same thing in lockstep.
 * With --proto resp each line is split at spaces and sent as a RESP array of
 * bulk strings (what redis-cli sends); with --proto nearest the line is sent
 * as it is. A reply is complete after "OK <n>" and n more lines or one "ERR"
 * line (nearestd), or after one whole RESP value, nested arrays included
 * (Redis); a nearestd record line must hold six tab-separated fields. With
 * --proto json each connection first switches to FORMAT json (what a backend
 * that wants one JSON object per answer does) and a reply is one line, whose
 * count is read from the '{"ok":true,"count":N' the daemon always begins a
 * success with; the rest of the object is not parsed here (the client shares
 * the server's two cores, and the daemon's tests check the JSON itself).
 * Replies are checked: an error reply, a malformed reply, a reply whose count
 * differs from --expect, a closed connection or a reply still missing after
 * the drain all count as errors, and any error makes the exit status 1.
 *
 * Timing: W seconds of warm-up whose replies are not recorded, then D seconds
 * in which every completed reply's latency (from the moment its request was
 * queued for writing to the moment its last byte was read) is kept, then at
 * most 2 s to drain replies in flight. An alarm at W + D + 30 s kills the
 * process if anything hangs, so a run always ends by itself. One thread and
 * epoll: on the 2-core project machine the server gets the other core, and a
 * second client thread would only compete with it.
 *
 * Only loopback addresses (127.0.0.0/8, ::1) are accepted: this program sends
 * as fast as it can and is not meant to be pointed at anyone's server.
 *
 * Output: one line of key=value pairs on stdout (bench/run-bench parses it):
 *   proto conns pipeline seconds requests rps p50_us p90_us p99_us p999_us
 *   max_us errors
 *
 * Usage: bench_loadgen --addr HOST:PORT --proto nearest|json|resp --requests FILE
 *                      [--conns C] [--pipeline P] [--duration D] [--warmup W]
 *                      [--expect N] */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define MAX_PIPELINE 1024
#define DRAIN_NS 2000000000LL
#define MAX_SAMPLES 100000000u   /* latencies kept; beyond this they are counted only */
#define RESP_MAX_DEPTH 8

enum proto_kind { PROTO_NEAREST, PROTO_RESP, PROTO_JSON };

/* Outcome of parsing one reply from the front of a buffer. */
enum reply_status {
    REPLY_MORE = 0,        /* incomplete: read more */
    REPLY_OK = 1,          /* one whole reply */
    REPLY_ERROR = 2,       /* one whole error reply (ERR line, RESP error) */
    REPLY_MALFORMED = -1,  /* framing lost: the connection is closed */
};

/* Requests as they go on the wire, back to back. */
struct req_set {
    char *bytes;
    size_t *off;           /* n + 1 offsets into bytes */
    size_t n;
};

struct conn {
    int fd;
    bool open;
    char *wbuf;
    size_t wlen, wcap;
    bool want_out;         /* EPOLLOUT registered */
    char *rbuf;
    size_t rlen, rcap;
    int64_t *sent_ns;      /* ring of send times of requests in flight */
    size_t ring_head, in_flight;
    size_t next_req;
};

struct stats {
    uint64_t *lat_ns;
    size_t n_lat, cap_lat;
    uint64_t measured;     /* replies completed inside the measurement window */
    uint64_t err_replies, malformed, unexpected, conn_errors, missing;
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Reply parsers: each looks at buf[0..len-1] and says how long the first   */
/* reply is and what its count is.                                           */

/* Finds the end of the line starting at buf; returns its length including
 * "\n", or 0 when there is no "\n" yet. */
static size_t line_len(const char *buf, size_t len) {
    const char *nl = memchr(buf, '\n', len);
    return nl ? (size_t)(nl - buf) + 1 : 0;
}

/* nearestd: "OK <n>" then n lines, or one "ERR <CODE> <message>" line. */
static int parse_nearest(const char *buf, size_t len, size_t *used, long long *count) {
    size_t first = line_len(buf, len);
    if (first == 0) {
        return len > 65536 ? REPLY_MALFORMED : REPLY_MORE;
    }
    if (first >= 4 && memcmp(buf, "ERR ", 4) == 0) {
        *used = first;
        return REPLY_ERROR;
    }
    if (first < 4 || memcmp(buf, "OK ", 3) != 0) {
        return REPLY_MALFORMED;
    }
    char *end;
    long long n = strtoll(buf + 3, &end, 10);
    if (end == buf + 3 || n < 0 || (*end != '\r' && *end != '\n' && *end != ' ')) {
        return REPLY_MALFORMED;
    }
    size_t pos = first;
    for (long long i = 0; i < n; i++) {
        size_t l = line_len(buf + pos, len - pos);
        if (l == 0) {
            return REPLY_MORE;
        }
        /* A facility record is six tab-separated fields, then its category's
         * attributes as further key=value fields (PROTOCOL.md). */
        size_t tabs = 0;
        for (size_t j = pos; j < pos + l; j++) {
            tabs += buf[j] == '\t';
        }
        if (tabs < 5) {
            return REPLY_MALFORMED;
        }
        pos += l;
    }
    *used = pos;
    *count = n;
    return REPLY_OK;
}

/* nearestd in FORMAT json: one line, '{"ok":true,"count":N,...}' or
 * '{"ok":false,...}'. */
static int parse_json_line(const char *buf, size_t len, size_t *used, long long *count) {
    static const char ok[] = "{\"ok\":true,\"count\":";
    static const char err[] = "{\"ok\":false,";
    size_t l = line_len(buf, len);
    if (l == 0) {
        return len > (1u << 24) ? REPLY_MALFORMED : REPLY_MORE;
    }
    *used = l;
    if (l > sizeof err - 1 && memcmp(buf, err, sizeof err - 1) == 0) {
        return REPLY_ERROR;
    }
    if (l <= sizeof ok - 1 || memcmp(buf, ok, sizeof ok - 1) != 0) {
        return REPLY_MALFORMED;
    }
    char *end;
    long long n = strtoll(buf + sizeof ok - 1, &end, 10);
    if (end == buf + sizeof ok - 1 || n < 0 || (*end != ',' && *end != '}') ||
        buf[l - 2] != '}') {
        return REPLY_MALFORMED;
    }
    *count = n;
    return REPLY_OK;
}

/* One RESP value (RESP2, plus the RESP3 scalars) at buf[pos]. Sets *end past
 * it. Returns REPLY_OK, REPLY_ERROR (a simple or bulk error, anywhere inside),
 * REPLY_MORE or REPLY_MALFORMED. *count gets the element count of an array. */
static int parse_resp_at(const char *buf, size_t len, size_t pos, int depth, size_t *end,
                         long long *count) {
    if (depth > RESP_MAX_DEPTH) {
        return REPLY_MALFORMED;
    }
    size_t l = line_len(buf + pos, len - pos);
    if (l == 0) {
        return len - pos > 65536 ? REPLY_MALFORMED : REPLY_MORE;
    }
    if (l < 3 || buf[pos + l - 2] != '\r') {
        return REPLY_MALFORMED;
    }
    char type = buf[pos];
    size_t body = pos + l;
    char *numend;
    long long n;
    *count = -1;
    switch (type) {
    case '+': case ':': case ',': case '#': case '(': case '_':
        *end = body;
        return REPLY_OK;
    case '-':
        *end = body;
        return REPLY_ERROR;
    case '$': case '!': case '=':
        n = strtoll(buf + pos + 1, &numend, 10);
        if (numend != buf + pos + l - 2 || n < -1) {
            return REPLY_MALFORMED;
        }
        if (n == -1) {
            *end = body;
            return REPLY_OK;
        }
        if (len - body < (size_t)n + 2) {
            return REPLY_MORE;
        }
        if (buf[body + n] != '\r' || buf[body + n + 1] != '\n') {
            return REPLY_MALFORMED;
        }
        *end = body + (size_t)n + 2;
        return type == '!' ? REPLY_ERROR : REPLY_OK;
    case '*': case '~': case '>': case '%': {
        n = strtoll(buf + pos + 1, &numend, 10);
        if (numend != buf + pos + l - 2 || n < -1) {
            return REPLY_MALFORMED;
        }
        long long elements = type == '%' ? 2 * n : n;
        int status = REPLY_OK;
        size_t at = body;
        for (long long i = 0; i < elements; i++) {
            long long inner;
            int s = parse_resp_at(buf, len, at, depth + 1, &at, &inner);
            if (s == REPLY_MORE || s == REPLY_MALFORMED) {
                return s;
            }
            if (s == REPLY_ERROR) {
                status = REPLY_ERROR;
            }
        }
        *end = at;
        *count = n;
        return status;
    }
    default:
        return REPLY_MALFORMED;
    }
}

static int parse_resp(const char *buf, size_t len, size_t *used, long long *count) {
    return parse_resp_at(buf, len, 0, 0, used, count);
}

/* ------------------------------------------------------------------------ */
/* Requests.                                                                */

static int append(char **buf, size_t *len, size_t *cap, const void *src, size_t n) {
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *len + n) {
            c *= 2;
        }
        char *p = realloc(*buf, c);
        if (!p) {
            return -1;
        }
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *len, src, n);
    *len += n;
    return 0;
}

/* Reads FILE's non-empty lines and encodes each for the protocol. */
static int req_set_load(struct req_set *rs, const char *path, int proto) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench_loadgen: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t line_cap = 0, len = 0, cap = 0, off_cap = 0;
    ssize_t got;
    int rc = -1;
    rs->n = 0;
    while ((got = getline(&line, &line_cap, f)) >= 0) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) {
            line[--got] = '\0';
        }
        if (got == 0) {
            continue;
        }
        if (rs->n + 2 > off_cap) {
            off_cap = off_cap ? off_cap * 2 : 1024;
            size_t *p = realloc(rs->off, off_cap * sizeof *p);
            if (!p) {
                goto done;
            }
            rs->off = p;
        }
        rs->off[rs->n] = len;
        if (proto != PROTO_RESP) {
            if (append(&rs->bytes, &len, &cap, line, (size_t)got) ||
                append(&rs->bytes, &len, &cap, "\n", 1)) {
                goto done;
            }
        } else {
            char *tok[64];
            size_t n_tok = 0;
            for (char *save, *t = strtok_r(line, " \t", &save); t;
                 t = strtok_r(NULL, " \t", &save)) {
                if (n_tok == 64) {
                    fprintf(stderr, "bench_loadgen: %s: more than 64 words\n", path);
                    goto done;
                }
                tok[n_tok++] = t;
            }
            char head[32];
            int h = snprintf(head, sizeof head, "*%zu\r\n", n_tok);
            if (append(&rs->bytes, &len, &cap, head, (size_t)h)) {
                goto done;
            }
            for (size_t i = 0; i < n_tok; i++) {
                size_t tl = strlen(tok[i]);
                h = snprintf(head, sizeof head, "$%zu\r\n", tl);
                if (append(&rs->bytes, &len, &cap, head, (size_t)h) ||
                    append(&rs->bytes, &len, &cap, tok[i], tl) ||
                    append(&rs->bytes, &len, &cap, "\r\n", 2)) {
                    goto done;
                }
            }
        }
        rs->n++;
    }
    if (rs->n == 0) {
        fprintf(stderr, "bench_loadgen: %s: no requests\n", path);
        goto done;
    }
    rs->off[rs->n] = len;
    rc = 0;
done:
    if (rc != 0 && ferror(f)) {
        fprintf(stderr, "bench_loadgen: %s: read error\n", path);
    }
    free(line);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Connections.                                                             */

/* Resolves a numeric HOST:PORT ("127.0.0.1:7878", "[::1]:7878") and refuses
 * anything that is not a loopback address. */
static int resolve_loopback(const char *addr, struct sockaddr_storage *out, socklen_t *out_len) {
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host) {
        fprintf(stderr, "bench_loadgen: --addr wants HOST:PORT, got %s\n", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h[strlen(h) - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(h, colon + 1, &hints, &res);
    if (gai != 0) {
        fprintf(stderr, "bench_loadgen: %s: %s (numeric loopback addresses only)\n", addr,
                gai_strerror(gai));
        return -1;
    }
    bool loopback = false;
    if (res->ai_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)res->ai_addr;
        loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    } else if (res->ai_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)res->ai_addr;
        loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
    }
    if (loopback) {
        memcpy(out, res->ai_addr, res->ai_addrlen);
        *out_len = res->ai_addrlen;
    } else {
        fprintf(stderr, "bench_loadgen: %s is not a loopback address (127.0.0.0/8, ::1)\n",
                addr);
    }
    freeaddrinfo(res);
    return loopback ? 0 : -1;
}

/* Sends `line` on the still blocking socket and reads its one-line answer,
 * which must begin with `want`. */
static int conn_setup(int fd, const char *line, const char *want) {
    size_t n = strlen(line);
    if (write(fd, line, n) != (ssize_t)n) {
        return -1;
    }
    char buf[256];
    size_t got = 0;
    while (got < sizeof buf && (got == 0 || buf[got - 1] != '\n')) {
        ssize_t r = read(fd, buf + got, 1);
        if (r <= 0) {
            return -1;
        }
        got += (size_t)r;
    }
    return got > strlen(want) && memcmp(buf, want, strlen(want)) == 0 ? 0 : -1;
}

static int conn_open(struct conn *c, const struct sockaddr_storage *sa, socklen_t sa_len,
                     int ep, size_t pipeline, size_t first_req, int proto) {
    memset(c, 0, sizeof *c);
    c->sent_ns = calloc(pipeline, sizeof *c->sent_ns);
    if (!c->sent_ns) {
        return -1;
    }
    c->next_req = first_req;
    c->fd = socket(sa->ss_family, SOCK_STREAM, 0);
    if (c->fd < 0) {
        perror("bench_loadgen: socket");
        return -1;
    }
    if (connect(c->fd, (const struct sockaddr *)sa, sa_len) != 0) {
        perror("bench_loadgen: connect");
        close(c->fd);
        return -1;
    }
    if (proto == PROTO_JSON && conn_setup(c->fd, "FORMAT json\n", "{\"ok\":true") != 0) {
        fprintf(stderr, "bench_loadgen: FORMAT json refused\n");
        close(c->fd);
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        perror("bench_loadgen: epoll_ctl");
        close(c->fd);
        return -1;
    }
    c->open = true;
    return 0;
}

static void conn_close(struct conn *c) {
    if (c->open) {
        close(c->fd);   /* also removes it from the epoll set */
        c->open = false;
    }
}

static void conn_free(struct conn *c) {
    conn_close(c);
    free(c->wbuf);
    free(c->rbuf);
    free(c->sent_ns);
}

/* Queues the connection's next request, stamped `t`. */
static int conn_queue(struct conn *c, const struct req_set *rs, size_t pipeline, int64_t t) {
    size_t i = c->next_req;
    c->next_req = (i + 1) % rs->n;
    if (append(&c->wbuf, &c->wlen, &c->wcap, rs->bytes + rs->off[i],
               rs->off[i + 1] - rs->off[i])) {
        return -1;
    }
    c->sent_ns[(c->ring_head + c->in_flight) % pipeline] = t;
    c->in_flight++;
    return 0;
}

/* Writes what it can; asks for EPOLLOUT while bytes remain. */
static int conn_flush(struct conn *c, int ep) {
    size_t done = 0;
    while (done < c->wlen) {
        ssize_t w = write(c->fd, c->wbuf + done, c->wlen - done);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            return -1;
        }
        done += (size_t)w;
    }
    memmove(c->wbuf, c->wbuf + done, c->wlen - done);
    c->wlen -= done;
    bool want = c->wlen > 0;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
            return -1;
        }
        c->want_out = want;
    }
    return 0;
}

static void record(struct stats *st, uint64_t ns) {
    st->measured++;
    if (st->n_lat == st->cap_lat) {
        if (st->cap_lat >= MAX_SAMPLES) {
            return;
        }
        size_t cap = st->cap_lat ? st->cap_lat * 2 : 65536;
        uint64_t *p = realloc(st->lat_ns, cap * sizeof *p);
        if (!p) {
            return;
        }
        st->lat_ns = p;
        st->cap_lat = cap;
    }
    st->lat_ns[st->n_lat++] = ns;
}

struct run {
    int proto;
    size_t pipeline;
    long long expect;      /* reply count every reply must have, -1 for any */
    int64_t window_lo, window_hi;
    bool sending;
    const struct req_set *rs;
    struct stats st;
};

/* Reads everything available, completes replies, queues follow-ups. */
static int conn_on_readable(struct run *r, struct conn *c, int ep) {
    for (;;) {
        if (c->rcap - c->rlen < 65536) {
            size_t cap = c->rcap ? c->rcap * 2 : 131072;
            char *p = realloc(c->rbuf, cap);
            if (!p) {
                return -1;
            }
            c->rbuf = p;
            c->rcap = cap;
        }
        ssize_t got = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (got <= 0) {
            if (r->st.conn_errors == 0) {
                fprintf(stderr, "bench_loadgen: connection %s by the server\n",
                        got == 0 ? "closed" : "reset");
            }
            return -1;
        }
        c->rlen += (size_t)got;
    }
    int64_t t = now_ns();
    size_t pos = 0;
    while (pos < c->rlen) {
        size_t used = 0;
        long long count = -1;
        const char *at = c->rbuf + pos;
        size_t avail = c->rlen - pos;
        int s = r->proto == PROTO_NEAREST ? parse_nearest(at, avail, &used, &count)
                : r->proto == PROTO_JSON  ? parse_json_line(at, avail, &used, &count)
                                          : parse_resp(at, avail, &used, &count);
        if (s == REPLY_MORE) {
            break;
        }
        if (s == REPLY_MALFORMED || c->in_flight == 0) {
            r->st.malformed++;
            size_t show = c->rlen - pos < 80 ? c->rlen - pos : 80;
            fprintf(stderr, "bench_loadgen: malformed or unrequested reply: %.*s\n", (int)show,
                    c->rbuf + pos);
            return -1;
        }
        if (s == REPLY_ERROR) {
            if (r->st.err_replies++ == 0) {
                fprintf(stderr, "bench_loadgen: error reply: %.*s\n",
                        (int)(used < 200 ? used : 200), c->rbuf + pos);
            }
        } else if (r->expect >= 0 && count != r->expect) {
            if (r->st.unexpected++ == 0) {
                fprintf(stderr, "bench_loadgen: reply with %lld items, expected %lld\n", count,
                        r->expect);
            }
        }
        pos += used;
        int64_t sent = c->sent_ns[c->ring_head];
        c->ring_head = (c->ring_head + 1) % r->pipeline;
        c->in_flight--;
        if (t >= r->window_lo && t < r->window_hi) {
            record(&r->st, (uint64_t)(t - sent));
        }
        if (r->sending && conn_queue(c, r->rs, r->pipeline, t) != 0) {
            return -1;
        }
    }
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
    return conn_flush(c, ep);
}

/* ------------------------------------------------------------------------ */
/* Report.                                                                  */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile, in microseconds. */
static double pct_us(const uint64_t *sorted, size_t n, double p) {
    if (n == 0) {
        return 0;
    }
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > n) {
        rank = n;
    }
    return (double)sorted[rank - 1] / 1000.0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: bench_loadgen --addr HOST:PORT --proto nearest|json|resp --requests FILE\n"
            "                     [--conns C] [--pipeline P] [--duration D] [--warmup W]\n"
            "                     [--expect N]\n"
            "  C connections (default 50) with P requests in flight each (default 1),\n"
            "  W seconds of warm-up (default 1) then D seconds measured (default 5);\n"
            "  --expect N: every reply must hold N records / array elements.\n"
            "  HOST must be a numeric loopback address.\n");
}

int main(int argc, char **argv) {
    const char *addr = NULL, *path = NULL, *proto_name = NULL;
    long conns = 50, pipeline = 1;
    double duration_s = 5, warmup_s = 1;
    long long expect = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            usage();
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--addr")) {
            addr = v;
        } else if (!strcmp(a, "--proto")) {
            proto_name = v;
        } else if (!strcmp(a, "--requests")) {
            path = v;
        } else if (!strcmp(a, "--conns")) {
            conns = strtol(v, NULL, 10);
        } else if (!strcmp(a, "--pipeline")) {
            pipeline = strtol(v, NULL, 10);
        } else if (!strcmp(a, "--duration")) {
            duration_s = strtod(v, NULL);
        } else if (!strcmp(a, "--warmup")) {
            warmup_s = strtod(v, NULL);
        } else if (!strcmp(a, "--expect")) {
            expect = strtoll(v, NULL, 10);
        } else {
            usage();
            return 2;
        }
    }
    int proto = -1;
    if (proto_name && !strcmp(proto_name, "nearest")) {
        proto = PROTO_NEAREST;
    } else if (proto_name && !strcmp(proto_name, "json")) {
        proto = PROTO_JSON;
    } else if (proto_name && !strcmp(proto_name, "resp")) {
        proto = PROTO_RESP;
    }
    if (!addr || !path || proto < 0 || conns < 1 || conns > MAX_CONNS || pipeline < 1 ||
        pipeline > MAX_PIPELINE || !(duration_s > 0 && duration_s <= 3600) ||
        !(warmup_s >= 0 && warmup_s <= 600)) {
        usage();
        return 2;
    }
    struct sockaddr_storage sa;
    socklen_t sa_len;
    if (resolve_loopback(addr, &sa, &sa_len) != 0) {
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* The last resort against a hung server or a bug here: SIGALRM's default
     * action ends the process with a failure status. */
    alarm((unsigned)(warmup_s + duration_s) + 30);

    struct req_set rs = {0};
    struct conn *cs = calloc((size_t)conns, sizeof *cs);
    int ep = epoll_create1(0);
    struct run r = {.proto = proto, .pipeline = (size_t)pipeline, .expect = expect, .rs = &rs,
                    .sending = true};
    int rc = 1;
    if (!cs || ep < 0 || req_set_load(&rs, path, proto) != 0) {
        goto done;
    }
    for (long i = 0; i < conns; i++) {
        if (conn_open(&cs[i], &sa, sa_len, ep, (size_t)pipeline,
                      (size_t)i * rs.n / (size_t)conns, proto) != 0) {
            fprintf(stderr, "bench_loadgen: cannot connect to %s\n", addr);
            goto done;
        }
    }
    int64_t start = now_ns();
    r.window_lo = start + (int64_t)(warmup_s * 1e9);
    r.window_hi = r.window_lo + (int64_t)(duration_s * 1e9);
    int64_t hard_end = r.window_hi + DRAIN_NS;
    for (long i = 0; i < conns; i++) {
        for (long p = 0; p < pipeline; p++) {
            if (conn_queue(&cs[i], &rs, (size_t)pipeline, now_ns()) != 0) {
                goto done;
            }
        }
        if (conn_flush(&cs[i], ep) != 0) {
            r.st.conn_errors++;
            goto report;
        }
    }
    struct epoll_event evs[256];
    for (;;) {
        int64_t t = now_ns();
        long n_open = 0;
        for (long i = 0; i < conns; i++) {
            n_open += cs[i].open;
        }
        if (n_open == 0) {
            break;
        }
        if (t >= r.window_hi) {
            r.sending = false;
            size_t left = 0;
            for (long i = 0; i < conns; i++) {
                left += cs[i].open ? cs[i].in_flight : 0;
            }
            if (left == 0) {
                break;
            }
            if (t >= hard_end) {
                r.st.missing += left;
                fprintf(stderr, "bench_loadgen: %zu replies missing after the drain\n", left);
                break;
            }
        }
        int64_t next = t < r.window_hi ? r.window_hi : hard_end;
        int timeout_ms = (int)((next - t) / 1000000) + 1;
        int n = epoll_wait(ep, evs, 256, timeout_ms);
        if (n < 0 && errno != EINTR) {
            perror("bench_loadgen: epoll_wait");
            goto done;
        }
        for (int e = 0; e < n; e++) {
            struct conn *c = evs[e].data.ptr;
            if (!c->open) {
                continue;
            }
            int bad = 0;
            if (evs[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                bad = conn_on_readable(&r, c, ep);
            }
            if (!bad && c->open && (evs[e].events & EPOLLOUT)) {
                bad = conn_flush(c, ep);
            }
            if (bad) {
                r.st.conn_errors++;
                r.st.missing += c->in_flight;
                c->in_flight = 0;
                conn_close(c);
            }
        }
    }
report:;
    double seconds = duration_s;
    qsort(r.st.lat_ns, r.st.n_lat, sizeof *r.st.lat_ns, cmp_u64);
    uint64_t errors = r.st.err_replies + r.st.malformed + r.st.unexpected + r.st.conn_errors +
                      r.st.missing;
    printf("proto=%s conns=%ld pipeline=%ld seconds=%.3f requests=%llu rps=%.0f "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%llu\n",
           proto_name, conns, pipeline, seconds, (unsigned long long)r.st.measured,
           (double)r.st.measured / seconds, pct_us(r.st.lat_ns, r.st.n_lat, 50),
           pct_us(r.st.lat_ns, r.st.n_lat, 90), pct_us(r.st.lat_ns, r.st.n_lat, 99),
           pct_us(r.st.lat_ns, r.st.n_lat, 99.9),
           r.st.n_lat ? (double)r.st.lat_ns[r.st.n_lat - 1] / 1000.0 : 0.0,
           (unsigned long long)errors);
    if (errors) {
        fprintf(stderr,
                "bench_loadgen: errors: %llu error replies, %llu malformed, %llu with the "
                "wrong count, %llu connection failures, %llu missing\n",
                (unsigned long long)r.st.err_replies, (unsigned long long)r.st.malformed,
                (unsigned long long)r.st.unexpected, (unsigned long long)r.st.conn_errors,
                (unsigned long long)r.st.missing);
    }
    rc = errors == 0 && r.st.measured > 0 ? 0 : 1;
done:
    for (long i = 0; cs && i < conns; i++) {
        conn_free(&cs[i]);
    }
    free(cs);
    if (ep >= 0) {
        close(ep);
    }
    free(rs.bytes);
    free(rs.off);
    free(r.st.lat_ns);
    return rc;
}
