/* it_support.h: what every integration test needs to reach a real nearestd
 * over loopback, written once. The integration tests (it_*.c) link it as the
 * static library nearest_it_support. */
#ifndef NEARESTD_IT_SUPPORT_H
#define NEARESTD_IT_SUPPORT_H

#include <stddef.h>

/* Returns a TCP port on 127.0.0.1 that was free a moment ago (bound to port 0
 * and released), or -1 when no socket could be had. Another process may take
 * it before the daemon binds it; tests on one machine rarely collide. */
int its_free_port(void);

/* Sends all len bytes of buf on fd, retrying short sends and EINTR, without
 * SIGPIPE. A failed send fails the running cmocka test. */
void its_send_all(int fd, const char *buf, size_t len);

/* ---- Daemons and buffered connections (added for it_faults, it_disk) ---------------- */

#include <stdbool.h>
#include <sys/types.h>

#define ITS_WAIT_MS 10000 /* every wait below gives up after this long */

/* Starts `bin` with args (NULL-terminated, without argv[0]) in a child whose
 * stderr goes to log_path (truncated before this returns). The child is
 * killed if the test process dies first. Returns the pid; the test must reap
 * it (its_stop() or its_wait_exit()). */
pid_t its_spawn(const char *bin, const char *log_path, const char *const *args);

/* Waits up to timeout_ms for pid to exit. Returns its wait status, or -1. */
int its_wait_exit(pid_t pid, int timeout_ms);

/* SIGKILLs and reaps pid if it is > 0. */
void its_stop(pid_t pid);

/* Connects to 127.0.0.1:port with TCP_NODELAY. Returns the fd or -1. */
int its_dial(int port);

/* Waits until something accepts on `port` while pid lives. Returns a
 * connected fd, or -1 when pid exited or ITS_WAIT_MS passed. */
int its_wait_ready(pid_t pid, int port);

/* Waits until the daemon `pid` logs its "nearestd: serving ... on HOST:PORT"
 * line to log_path and returns PORT, or -1 when pid exited (not reaped: wait
 * for it with its_wait_exit()) or ITS_WAIT_MS passed. Start the daemon with
 * --listen 127.0.0.1:0 and use this instead of its_free_port(): the port is
 * the one the daemon bound, so no other test can take it in between. */
int its_wait_serving(pid_t pid, const char *log_path);

/* A buffered reader of answers on one socket. */
struct its_conn {
    int fd;
    size_t len;
    char buf[1 << 16];
};

/* Reads one line with its "\n" into a malloc'ed string; NULL at EOF or
 * reset. Fails the test after ITS_WAIT_MS without a line. */
char *its_read_line(struct its_conn *c);

/* Reads one whole answer (an ERR line, or "OK n" and n lines) into a
 * malloc'ed string; NULL at EOF before its first line. */
char *its_read_answer(struct its_conn *c);

/* Sends request and fails the test unless the answer starts with prefix. */
void its_ask(struct its_conn *c, const char *request, const char *prefix);

/* True when the peer closes (EOF or reset) within ms, skipping any data. */
bool its_closes_within(int fd, int ms);

/* Reads the whole file at path into a malloc'ed string ("" if missing). */
char *its_read_file(const char *path);

#endif
