/* cli_conn.c: sockets for libnearest: connect with a deadline, send all,
 * receive into the reply parser. Plain blocking-style I/O on a non-blocking
 * socket with poll(), because a CLI makes one request and waits; the 16 KiB
 * receive buffer holds about a hundred records, so a 1000-record answer
 * takes a handful of reads. */
#include "nearest.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


#define CLI_RECV_BYTES 16384

struct cli_conn {
    int fd;                        /* -1 when not connected */
    int timeout_ms;                /* per wait; 0 means no limit */
    int err;                       /* sticky cli_err, 0 if none */
    char errstr[256];
    struct cli_reply_parser *parser;
};

static int set_err(struct cli_conn *c, int err, const char *fmt, const char *detail) {
    c->err = err;
    snprintf(c->errstr, sizeof c->errstr, fmt, detail);
    return err;
}

/* Waits until fd is ready for `events`. Returns 0, CLI_ERR_TIMEOUT or CLI_ERR_IO. */
static int wait_fd(struct cli_conn *c, short events) {
    struct pollfd pfd = {.fd = c->fd, .events = events};
    for (;;) {
        int n = poll(&pfd, 1, c->timeout_ms > 0 ? c->timeout_ms : -1);
        if (n > 0) {
            return 0;
        }
        if (n == 0) {
            return CLI_ERR_TIMEOUT;
        }
        if (errno != EINTR) {
            return CLI_ERR_IO;
        }
    }
}

/* Connects fd to one address within the timeout. Returns 0 or an errno value. */
static int connect_one(struct cli_conn *c, const struct addrinfo *ai) {
    c->fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (c->fd < 0) {
        return errno;
    }
    int flags = fcntl(c->fd, F_GETFL);
    if (flags < 0 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        return errno;
    }
    if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        return 0;
    }
    if (errno != EINPROGRESS) {
        return errno;
    }
    int ret = wait_fd(c, POLLOUT);
    if (ret == CLI_ERR_TIMEOUT) {
        return ETIMEDOUT;
    }
    if (ret < 0) {
        return errno;
    }
    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0) {
        return errno;
    }
    return so_error;
}

struct cli_conn *cli_conn_open(const char *host, int port, int timeout_ms) {
    struct cli_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->fd = -1;
    c->timeout_ms = timeout_ms;
    c->parser = cli_reply_parser_new();
    if (c->parser == NULL) {
        free(c);
        return NULL;
    }
    if (port <= 0 || port > 65535) {
        set_err(c, CLI_ERR_CONNECT, "%s", "invalid port");
        return c;
    }
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *list = NULL;
    int gai = getaddrinfo(host, service, &hints, &list);
    if (gai != 0) {
        set_err(c, CLI_ERR_CONNECT, "%s", gai_strerror(gai));
        return c;
    }
    int sys_err = ENOENT;
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        sys_err = connect_one(c, ai);
        if (sys_err == 0) {
            break;
        }
        if (c->fd >= 0) {
            close(c->fd);
            c->fd = -1;
        }
    }
    freeaddrinfo(list);
    if (sys_err != 0) {
        set_err(c, CLI_ERR_CONNECT, "%s", strerror(sys_err));
    } else {
        /* Requests are small and each waits for its answer: send at once.
         * Best effort; a failure only costs latency. */
        int one = 1;
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return c;
}

void cli_conn_close(struct cli_conn *c) {
    if (c == NULL) {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    cli_reply_parser_free(c->parser);
    free(c);
}

int cli_conn_err(const struct cli_conn *c) {
    return c->err;
}

const char *cli_conn_errstr(const struct cli_conn *c) {
    return c->errstr;
}

static int send_all(struct cli_conn *c, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int ret = wait_fd(c, POLLOUT);
            if (ret < 0) {
                return set_err(c, ret, "%s", ret == CLI_ERR_TIMEOUT ? "send timed out"
                                                                    : strerror(errno));
            }
            continue;
        }
        return set_err(c, CLI_ERR_IO, "%s", strerror(errno));
    }
    return 0;
}

int cli_conn_send_line(struct cli_conn *c, const char *line, size_t len) {
    if (c->err != 0) {
        return c->err;
    }
    if (len > 0 && line[len - 1] == '\n') {
        len--;
    }
    if (len > 0 && line[len - 1] == '\r') {
        len--;
    }
    if (memchr(line, '\n', len) != NULL) {
        snprintf(c->errstr, sizeof c->errstr, "a request is one line");
        return CLI_ERR_ARG;
    }
    /* One send for the line and its "\n": two would cost a delayed-ACK
     * round trip (about 40 ms) per request when Nagle holds the second. */
    char small[1024];
    char *buf = len + 1 <= sizeof small ? small : malloc(len + 1);
    if (buf == NULL) {
        snprintf(c->errstr, sizeof c->errstr, "%s", cli_err_str(CLI_ERR_NOMEM));
        return CLI_ERR_NOMEM;
    }
    memcpy(buf, line, len);
    buf[len] = '\n';
    int ret = send_all(c, buf, len + 1);
    if (buf != small) {
        free(buf);
    }
    return ret;
}

int cli_conn_send(struct cli_conn *c, size_t argc, const char *const *argv) {
    if (c->err != 0) {
        return c->err;
    }
    char *line = NULL;
    size_t len = 0;
    int ret = cli_request_build(argc, argv, &line, &len);
    if (ret < 0) {
        snprintf(c->errstr, sizeof c->errstr, "%s", cli_err_str(ret));
        return ret;
    }
    ret = send_all(c, line, len);
    free(line);
    return ret;
}

int cli_conn_read_reply(struct cli_conn *c, struct cli_reply **out) {
    if (c->err != 0) {
        return c->err;
    }
    char buf[CLI_RECV_BYTES];
    for (;;) {
        int ret = cli_reply_parser_next(c->parser, out);
        if (ret == 1) {
            return 0;
        }
        if (ret < 0) {
            return set_err(c, ret, "%s", cli_err_str(ret));
        }
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n > 0) {
            ret = cli_reply_parser_feed(c->parser, buf, (size_t)n);
            if (ret < 0) {
                return set_err(c, ret, "%s", cli_err_str(ret));
            }
            continue;
        }
        if (n == 0) {
            return set_err(c, CLI_ERR_CLOSED, "%s",
                           cli_reply_parser_is_partial(c->parser)
                               ? "connection closed in the middle of an answer"
                               : "connection closed by the server");
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            ret = wait_fd(c, POLLIN);
            if (ret < 0) {
                return set_err(c, ret, "%s", ret == CLI_ERR_TIMEOUT ? "no answer in time"
                                                                    : strerror(errno));
            }
            continue;
        }
        return set_err(c, CLI_ERR_IO, "%s", strerror(errno));
    }
}

int cli_conn_command(struct cli_conn *c, size_t argc, const char *const *argv,
                     struct cli_reply **out) {
    int ret = cli_conn_send(c, argc, argv);
    if (ret < 0) {
        return ret;
    }
    return cli_conn_read_reply(c, out);
}
