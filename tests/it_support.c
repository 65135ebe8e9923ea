/* it_support.c: loopback helpers shared by the integration tests; see
 * it_support.h. Failures go through cmocka's assertions, so this file is
 * only ever linked into cmocka test programs. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "it_support.h"

int its_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

void its_send_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        assert_true(n > 0);
        buf += n;
        len -= (size_t)n;
    }
}

/* ---- Daemons and buffered connections ------------------------------------------------ */

int64_t its_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* True when bin names the daemon: its last path component is "nearestd". */
static bool is_nearestd(const char *bin) {
    const char *slash = strrchr(bin, '/');
    return strcmp(slash ? slash + 1 : bin, "nearestd") == 0;
}

pid_t its_spawn(const char *bin, const char *log_path, const char *const *args) {
    enum { MAX_ARGS = 64 };
    const char *argv[MAX_ARGS + 1] = {bin};
    size_t n = 1;
    /* NEARESTD_TEST_ARGS goes first, so that the test's own arguments keep
     * their meaning: a trailing flag without its value is still one, and a
     * flag the test gives itself overrides the same flag from the variable.
     * Its words are split on blanks in a copy that lives until the exec. */
    const char *extra = is_nearestd(bin) ? getenv("NEARESTD_TEST_ARGS") : NULL;
    char *words = extra ? strdup(extra) : NULL;
    assert_true(!extra || words);
    char *save = NULL;
    for (char *w = words ? strtok_r(words, " \t", &save) : NULL; w;
         w = strtok_r(NULL, " \t", &save)) {
        assert_true(n < MAX_ARGS);
        argv[n++] = w;
    }
    for (size_t i = 0; args[i]; i++) {
        assert_true(n < MAX_ARGS);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    /* Truncated here, before the fork, so that nothing the caller reads from
     * the log after this returns can be left over from an earlier daemon. */
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Dies with the test, even one killed by CTest's timeout. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
            _exit(125);
        }
        if (dup2(fd, 2) < 0) {
            _exit(126);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(fd);
    free(words);
    assert_true(pid > 0);
    return pid;
}

int its_wait_exit(pid_t pid, int timeout_ms) {
    for (int64_t start = its_now_ms(); its_now_ms() - start <= timeout_ms;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return status;
        }
        usleep(5000);
    }
    return -1;
}

void its_stop(pid_t pid) {
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

int its_dial(int port) {
    return its_dial_rcvbuf(port, 0);
}

int its_dial_rcvbuf(int port, int rcvbuf_bytes) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    if (rcvbuf_bytes > 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_bytes, sizeof rcvbuf_bytes);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int its_wait_ready(pid_t pid, int port) {
    return its_wait_ready_within(pid, port, ITS_WAIT_MS);
}

int its_wait_ready_within(pid_t pid, int port, int timeout_ms) {
    for (int64_t start = its_now_ms(); its_now_ms() - start < timeout_ms;) {
        int fd = its_dial(port);
        if (fd >= 0) {
            return fd;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return -1;
        }
        usleep(20000);
    }
    return -1;
}

/* The port of the first complete "nearestd: serving ... on HOST:PORT" line
 * in text, or -1. */
static int serving_port(const char *text) {
    const char *line = strstr(text, "nearestd: serving ");
    const char *end = line ? strchr(line, '\n') : NULL;
    if (!end) {
        return -1;
    }
    const char *colon = end;
    while (colon > line && *colon != ':') {
        colon--;
    }
    if (*colon != ':') {
        return -1;
    }
    int port = atoi(colon + 1);
    return port > 0 && port < 65536 ? port : -1;
}

int its_wait_serving(pid_t pid, const char *log_path) {
    for (int64_t start = its_now_ms(); its_now_ms() - start < ITS_WAIT_MS;) {
        char *text = its_read_file(log_path);
        int port = serving_port(text);
        free(text);
        if (port > 0) {
            return port;
        }
        siginfo_t info = {0};
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == pid) {
            return -1; /* exited; left for the caller to reap */
        }
        usleep(10000);
    }
    return -1;
}

char *its_read_line(struct its_conn *c) {
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            size_t n = (size_t)(nl - c->buf) + 1;
            char *line = strndup(c->buf, n);
            assert_non_null(line);
            memmove(c->buf, c->buf + n, c->len - n);
            c->len -= n;
            return line;
        }
        assert_true(c->len < sizeof c->buf);
        int wait_ms = c->wait_ms > 0 ? c->wait_ms : ITS_WAIT_MS;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, wait_ms) != 1) {
            fail_msg("no answer within %d ms", wait_ms);
        }
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return NULL;
        }
        assert_true(n > 0);
        c->len += (size_t)n;
    }
}

char *its_read_answer(struct its_conn *c) {
    char *first = its_read_line(c);
    if (!first || strncmp(first, "OK ", 3) != 0) {
        return first;
    }
    size_t n = strtoul(first + 3, NULL, 10);
    size_t len = strlen(first);
    for (size_t i = 0; i < n; i++) {
        char *line = its_read_line(c);
        assert_non_null(line);
        size_t l = strlen(line);
        char *grown = realloc(first, len + l + 1);
        assert_non_null(grown);
        first = grown;
        memcpy(first + len, line, l + 1);
        len += l;
        free(line);
    }
    return first;
}

char *its_expect_answer(struct its_conn *c) {
    char *a = its_read_answer(c);
    if (!a) {
        fail_msg("the connection closed before an answer");
    }
    if (strncmp(a, "OK ", 3) != 0 && strncmp(a, "ERR ", 4) != 0) {
        fail_msg("not an answer: %s", a);
    }
    return a;
}

void its_ask(struct its_conn *c, const char *request, const char *prefix) {
    its_send_all(c->fd, request, strlen(request));
    char *a = its_read_answer(c);
    if (!a || strncmp(a, prefix, strlen(prefix)) != 0) {
        fail_msg("%s-> got %s, expected %s...", request, a ? a : "(closed)", prefix);
    }
    free(a);
}

bool its_closes_within(int fd, int ms) {
    for (int64_t start = its_now_ms();;) {
        int left = ms - (int)(its_now_ms() - start);
        if (left <= 0) {
            return false;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) != 1) {
            return false;
        }
        char b[65536];
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return true;
        }
    }
}

bool its_closes_silently(int fd, int ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1) {
        return false;
    }
    char b[64];
    ssize_t n = recv(fd, b, sizeof b, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* The receive queue of the socket whose local port is `local` and remote port
 * `remote` in one /proc/net/tcp* table: 1 and *rx set when found, 0 when not,
 * -1 when the table cannot be read. Lines read
 * "sl local_addr:port rem_addr:port st tx_queue:rx_queue ...", ports in hex. */
static int proc_rx_queue(const char *table, unsigned local, unsigned remote, unsigned long *rx) {
    FILE *f = fopen(table, "r");
    if (!f) {
        return -1;
    }
    char line[512];
    int found = 0;
    if (fgets(line, sizeof line, f)) { /* the header */
        while (!found && fgets(line, sizeof line, f)) {
            char local_addr[64], remote_addr[64];
            unsigned st;
            unsigned long tx, queue;
            if (sscanf(line, " %*d: %63s %63s %x %lx:%lx", local_addr, remote_addr, &st, &tx,
                       &queue) != 5) {
                continue;
            }
            char *lp = strrchr(local_addr, ':'), *rp = strrchr(remote_addr, ':');
            if (lp && rp && strtoul(lp + 1, NULL, 16) == local &&
                strtoul(rp + 1, NULL, 16) == remote) {
                *rx = queue;
                found = 1;
            }
        }
    }
    fclose(f);
    return found;
}

bool its_peer_has_read(int fd, int ms) {
    struct sockaddr_storage mine, peer;
    socklen_t mine_len = sizeof mine, peer_len = sizeof peer;
    if (getsockname(fd, (struct sockaddr *)&mine, &mine_len) != 0 ||
        getpeername(fd, (struct sockaddr *)&peer, &peer_len) != 0) {
        return false;
    }
    unsigned my_port = mine.ss_family == AF_INET6
                           ? ntohs(((struct sockaddr_in6 *)&mine)->sin6_port)
                           : ntohs(((struct sockaddr_in *)&mine)->sin_port);
    unsigned peer_port = peer.ss_family == AF_INET6
                             ? ntohs(((struct sockaddr_in6 *)&peer)->sin6_port)
                             : ntohs(((struct sockaddr_in *)&peer)->sin_port);
    for (int64_t start = its_now_ms(); its_now_ms() - start < ms; usleep(2000)) {
        unsigned long rx = 0;
        /* The server's end of the connection: local is the peer's port. */
        int found = proc_rx_queue("/proc/net/tcp", peer_port, my_port, &rx);
        if (found != 1) {
            found = proc_rx_queue("/proc/net/tcp6", peer_port, my_port, &rx);
        }
        if (found == 1 && rx == 0) {
            return true;
        }
    }
    return false;
}

bool its_log_has_within(const char *log_path, const char *text, int ms) {
    for (int64_t start = its_now_ms();; usleep(5000)) {
        char *log = its_read_file(log_path);
        bool found = strstr(log, text) != NULL;
        free(log);
        if (found) {
            return true;
        }
        if (its_now_ms() - start >= ms) {
            return false;
        }
    }
}

char *its_read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    if (f) {
        size_t n;
        while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
            len += n;
            if (cap - len < 2) {
                cap *= 2;
                buf = realloc(buf, cap);
                assert_non_null(buf);
            }
        }
        fclose(f);
    }
    buf[len] = '\0';
    return buf;
}

const char *its_read_log(const char *path) {
    static char buf[1 << 16];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

int its_write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        return -1;
    }
    int put = fputs(text, f);
    return fclose(f) == 0 && put >= 0 ? 0 : -1;
}

/* ---- Databases and files ------------------------------------------------------------- */

int its_init_db(const char *bin, const char *dataset_dir, const char *db_path,
                const char *log_path) {
    const char *args[] = {"--db", db_path, "--init", "--dataset", dataset_dir,
                          "--listen", "127.0.0.1:0", NULL};
    pid_t pid = its_spawn(bin, log_path, args);
    if (its_wait_serving(pid, log_path) < 0) {
        its_stop(pid);
        return -1;
    }
    kill(pid, SIGTERM);
    int status = its_wait_exit(pid, ITS_WAIT_MS);
    if (status == -1) {
        its_stop(pid);
        return -1;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

void its_copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char *buf = malloc(1 << 16);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf, 1, 1 << 16, in)) > 0) {
        assert_int_equal(fwrite(buf, 1, n, out), n);
    }
    free(buf);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

size_t its_count_lines(const char *s) {
    size_t n = 0;
    for (; *s; s++) {
        n += *s == '\n';
    }
    return n;
}
