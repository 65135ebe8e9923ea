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
#include <stdint.h>
#include <sys/types.h>

#define ITS_WAIT_MS 30000 /* every wait below gives up after this long: generous, since
                          * it is reached only on failure, and a sanitized daemon
                          * on a busy 2-core machine has needed over 10 s to start */

/* Milliseconds on the monotonic clock, for measuring waits. */
int64_t its_now_ms(void);

/* Starts `bin` with args (NULL-terminated, without argv[0], at most 64 in
 * all) in a child whose stderr goes to log_path (truncated before this
 * returns). The child is killed if the test process dies first. Returns the
 * pid; the test must reap it (its_stop() or its_wait_exit()).
 * When bin's last path component is "nearestd" and the environment variable
 * NEARESTD_TEST_ARGS is set, its words (split on blanks, no quoting) go
 * before args: CTest runs the daemon tests a second time with
 * NEARESTD_TEST_ARGS="--threads 3" (tests/daemon.cmake). Put first, they
 * leave the test's own arguments their meaning: a flag the test gives itself
 * wins over the same flag in the variable, and a trailing flag without its
 * value is still a usage error. */
pid_t its_spawn(const char *bin, const char *log_path, const char *const *args);

/* Waits up to timeout_ms for pid to exit. Returns its wait status, or -1. */
int its_wait_exit(pid_t pid, int timeout_ms);

/* SIGKILLs and reaps pid if it is > 0. */
void its_stop(pid_t pid);

/* Connects to 127.0.0.1:port with TCP_NODELAY. Returns the fd or -1. */
int its_dial(int port);

/* Like its_dial(), but when rcvbuf_bytes > 0 first shrinks the socket's
 * receive buffer to it (SO_RCVBUF), to make a client that reads slowly. */
int its_dial_rcvbuf(int port, int rcvbuf_bytes);

/* Waits until something accepts on `port` while pid lives. Returns a
 * connected fd, or -1 when pid exited or ITS_WAIT_MS passed. */
int its_wait_ready(pid_t pid, int port);

/* Like its_wait_ready(), giving up after timeout_ms instead. */
int its_wait_ready_within(pid_t pid, int port, int timeout_ms);

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
    int wait_ms; /* how long one read waits for data; 0 means ITS_WAIT_MS */
};

/* Reads one line with its "\n" into a malloc'ed string; NULL at EOF or
 * reset. Fails the test after c->wait_ms (ITS_WAIT_MS) without data. */
char *its_read_line(struct its_conn *c);

/* Reads one whole answer (an ERR line, or "OK n" and n lines) into a
 * malloc'ed string; NULL at EOF before its first line. */
char *its_read_answer(struct its_conn *c);

/* Like its_read_answer(), but fails the test unless an answer arrives and
 * its first line starts "OK " or "ERR ". Never returns NULL. */
char *its_expect_answer(struct its_conn *c);

/* Sends request and fails the test unless the answer starts with prefix. */
void its_ask(struct its_conn *c, const char *request, const char *prefix);

/* True when the peer closes (EOF or reset) within ms, skipping any data. */
bool its_closes_within(int fd, int ms);

/* True when the peer closes (EOF or reset) within ms without sending
 * anything more first: unlike its_closes_within(), data means false. */
bool its_closes_silently(int fd, int ms);

/* Waits until the server at the other end of the loopback connection fd has
 * read every byte sent on it (its socket's receive queue in /proc/net/tcp or
 * tcp6 is empty), so a test can act on "the daemon has taken this request"
 * instead of sleeping and hoping. Returns false after ms without that. */
bool its_peer_has_read(int fd, int ms);

/* Waits until the file at log_path contains `text`; false after ms without. */
bool its_log_has_within(const char *log_path, const char *text, int ms);

/* Reads the whole file at path into a malloc'ed string ("" if missing). */
char *its_read_file(const char *path);

/* Reads the first 64 KiB of the daemon log at path into a static buffer,
 * which the next call overwrites; fails the test if it cannot be opened. */
const char *its_read_log(const char *path);

/* Writes text to the file at path (created or truncated). Returns 0, or -1
 * when it could not (for group setups, which return rather than fail). */
int its_write_file(const char *path, const char *text);

/* ---- Databases and files (added for it_faults, it_disk) ------------------------------ */

/* Creates the database db_path from the dataset in dataset_dir by starting
 * the daemon `bin` with --init on 127.0.0.1:0, waiting until it serves and
 * stopping it with SIGTERM; its stderr goes to log_path. Returns 0 when the
 * daemon served and then exited with status 0, else -1 (no child left). */
int its_init_db(const char *bin, const char *dataset_dir, const char *db_path,
                const char *log_path);

/* Copies the file at `from` to `to` (created or truncated); fails the test
 * on any error. */
void its_copy_file(const char *from, const char *to);

/* The number of "\n" in s. */
size_t its_count_lines(const char *s);

#endif
