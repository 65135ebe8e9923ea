/* it_faults.c: the real nearestd under signals and bad databases.
 *
 * SIGTERM must answer the writes in flight (those already queued behind a
 * running group commit included), keep every write it answered OK, close
 * the database cleanly (no -wal file left) and exit 0. SIGHUP must rebuild
 * the catalogue from the database, so a change made behind the daemon's back
 * shows up on a connection that stays open, without losing the daemon's own
 * writes made during the reload. A database that is read-only, locked by
 * another process, corrupt, truncated or from a newer schema stops start-up
 * with one line on stderr and a non-zero exit. (A missing database and a
 * text file posing as one are in it_daemon; a read-only file system and a
 * full disk are in it_disk, which needs root.)
 *
 * The group setup builds one database from the bundled dataset with
 * `nearestd --init`; each test works on its own copy, starts its own daemon
 * and kills it in its teardown. Every wait is bounded (ITS_WAIT_MS). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "it_support.h"
#include "store.h"

static char dir[256];
static char base_db[320];
static pid_t daemon_pid = -1;

/* ---- Files and databases ------------------------------------------------------------ */

/* A fresh copy of the base database at dir/name; its path goes to path. */
static void fresh_db(const char *name, char *path, size_t path_len) {
    snprintf(path, path_len, "%s/%s", dir, name);
    unlink(path);
    its_copy_file(base_db, path);
}

/* Runs one SQL statement on the database at path. */
static void sql_exec(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fail_msg("%s: %s", sql, msg ? msg : "?");
    }
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Number of facilities with this id in the database at path (0 or 1). */
static int db_has(sqlite3 *db, const char *id) {
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM facilities WHERE id = ?1",
                                        -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ---- The daemon ----------------------------------------------------------------- */

/* Starts nearestd on db with extra flags (NULL-terminated, may be NULL) and
 * returns a connection to it; the log goes to log_path. */
static int start_daemon(const char *db, const char *log_path, const char *const *flags) {
    const char *args[24] = {"--db", db, "--listen", "127.0.0.1:0"};
    size_t n = 4;
    for (size_t i = 0; flags && flags[i] && n < 23; i++) {
        args[n++] = flags[i];
    }
    args[n] = NULL;
    daemon_pid = its_spawn(NEARESTD_BIN, log_path, args);
    int port = its_wait_serving(daemon_pid, log_path);
    int fd = port > 0 ? its_dial(port) : -1;
    if (fd < 0) {
        char *log = its_read_file(log_path);
        fail_msg("nearestd did not start: %s", log);
    }
    return fd;
}

/* The port of the daemon a connection reaches. */
static int port_of(int fd) {
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    assert_int_equal(getpeername(fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(((struct sockaddr_in *)&a)->sin_port);
}

/* Sends SIGTERM and asserts an exit with status 0 within the wait. */
static void term_and_expect_exit_0(void) {
    assert_int_equal(kill(daemon_pid, SIGTERM), 0);
    int status = its_wait_exit(daemon_pid, ITS_WAIT_MS);
    if (status == -1) {
        fail_msg("nearestd did not exit within %d ms of SIGTERM", ITS_WAIT_MS);
    }
    daemon_pid = -1;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- SIGTERM ------------------------------------------------------------------------ */

/* Three writes: the first one's group commit is held by another process's
 * write lock, so the other two wait in the queue behind it, not yet started,
 * when SIGTERM arrives. All three must be answered OK, be in the database
 * after the exit, and the database must be closed cleanly. */
static void test_sigterm_answers_writes_queued_behind_a_running_commit(void **state) {
    (void)state;
    char db[400], log[400], wal[420];
    fresh_db("term-queue.db", db, sizeof db);
    snprintf(log, sizeof log, "%s/term-queue.log", dir);
    snprintf(wal, sizeof wal, "%s-wal", db);
    struct its_conn *c[3];
    c[0] = calloc(3, sizeof **c);
    assert_non_null(c[0]);
    c[1] = c[0] + 1;
    c[2] = c[0] + 2;
    c[0]->fd = start_daemon(db, log, NULL);
    int port = port_of(c[0]->fd);
    for (int i = 1; i < 3; i++) {
        c[i]->fd = its_dial(port);
        assert_true(c[i]->fd >= 0);
    }
    its_ask(c[0], "PING\n", "OK 0\n");

    sqlite3 *locker = NULL;
    assert_int_equal(sqlite3_open(db, &locker), SQLITE_OK);
    assert_int_equal(sqlite3_exec(locker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    /* The first write's group now waits for the lock (up to 2 s) ... */
    const char *put0 = "PUT tq-0 meal_point 36.2 120.4 name=tq\n";
    its_send_all(c[0]->fd, put0, strlen(put0));
    assert_true(its_peer_has_read(c[0]->fd, ITS_WAIT_MS));
    /* ... and these two queue behind it. The PING after a write is not run. */
    const char *put1 = "PUT tq-1 meal_point 36.2 120.4 name=tq\n";
    const char *put2 = "PUT tq-2 meal_point 36.2 120.4 name=tq\nPING\n";
    its_send_all(c[1]->fd, put1, strlen(put1));
    its_send_all(c[2]->fd, put2, strlen(put2));
    assert_true(its_peer_has_read(c[1]->fd, ITS_WAIT_MS));
    assert_true(its_peer_has_read(c[2]->fd, ITS_WAIT_MS));
    assert_int_equal(kill(daemon_pid, SIGTERM), 0);
    assert_true(its_log_has_within(log, "shutting down", ITS_WAIT_MS));
    /* The daemon is draining, not gone: it still waits for the lock, and a
     * second SIGTERM or a SIGHUP meanwhile changes nothing. */
    assert_int_equal(kill(daemon_pid, SIGTERM), 0);
    assert_int_equal(kill(daemon_pid, SIGHUP), 0);
    assert_true(its_log_has_within(log, "already shutting down", ITS_WAIT_MS));
    assert_true(its_log_has_within(log, "SIGHUP ignored: shutting down", ITS_WAIT_MS));
    assert_int_equal(waitpid(daemon_pid, NULL, WNOHANG), 0);
    assert_int_equal(sqlite3_exec(locker, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(locker), SQLITE_OK);

    for (int i = 0; i < 3; i++) {
        char *a = its_read_answer(c[i]);
        if (!a || strncmp(a, "OK 1\n", 5) != 0) {
            fail_msg("write %d: got %s, expected OK 1", i, a ? a : "(closed unanswered)");
        }
        free(a);
        assert_true(its_closes_within(c[i]->fd, ITS_WAIT_MS));
        close(c[i]->fd);
    }
    free(c[0]);
    int status = its_wait_exit(daemon_pid, ITS_WAIT_MS);
    daemon_pid = -1;
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_false(file_exists(wal)); /* the last connection closed cleanly */

    sqlite3 *check = NULL;
    assert_int_equal(sqlite3_open(db, &check), SQLITE_OK);
    assert_int_equal(db_has(check, "tq-0"), 1);
    assert_int_equal(db_has(check, "tq-1"), 1);
    assert_int_equal(db_has(check, "tq-2"), 1);
    assert_int_equal(sqlite3_close(check), SQLITE_OK);
    char *text = its_read_file(log);
    assert_non_null(strstr(text, "already shutting down"));
    assert_non_null(strstr(text, "SIGHUP ignored: shutting down"));
    assert_null(strstr(text, "nearestd: reloaded "));
    assert_non_null(strstr(text, "nearestd: stopped"));
    free(text);
}

/* Eight clients stream pipelined PUTs; SIGTERM arrives mid-stream. Every
 * write answered OK is in the database afterwards, and the exit status is 0. */
static void test_sigterm_during_write_streams_keeps_every_acknowledged_write(void **state) {
    (void)state;
    enum { CLIENTS = 8, PER_CLIENT = 200 };
    char db[400], log[400];
    fresh_db("term-stream.db", db, sizeof db);
    snprintf(log, sizeof log, "%s/term-stream.log", dir);
    struct its_conn *c = calloc(CLIENTS, sizeof *c);
    assert_non_null(c);
    c[0].fd = start_daemon(db, log, NULL);
    int port = port_of(c[0].fd);
    for (int i = 1; i < CLIENTS; i++) {
        c[i].fd = its_dial(port);
        assert_true(c[i].fd >= 0);
    }
    static char batch[PER_CLIENT * 64];
    for (int i = 0; i < CLIENTS; i++) {
        size_t len = 0;
        for (int j = 0; j < PER_CLIENT; j++) {
            len += (size_t)snprintf(batch + len, sizeof batch - len,
                                    "PUT ts-%d-%03d parking 36.2 120.4 free=%d\n", i, j, j);
        }
        its_send_all(c[i].fd, batch, len);
    }
    /* Wait until some writes are answered, then stop the daemon mid-stream. */
    char *first = its_read_answer(&c[0]);
    assert_non_null(first);
    assert_true(strncmp(first, "OK 1\n", 5) == 0);
    free(first);
    assert_int_equal(kill(daemon_pid, SIGTERM), 0);

    static bool acked[CLIENTS][PER_CLIENT];
    memset(acked, 0, sizeof acked);
    acked[0][0] = true;
    int n_acked = 1;
    for (int i = 0; i < CLIENTS; i++) {
        for (int j = i == 0 ? 1 : 0; j < PER_CLIENT; j++) {
            char *a = its_read_answer(&c[i]);
            if (!a) {
                break; /* closed: the rest was not executed */
            }
            assert_true(strncmp(a, "OK 1\n", 5) == 0);
            free(a);
            acked[i][j] = true;
            n_acked++;
        }
        close(c[i].fd);
    }
    free(c);
    int status = its_wait_exit(daemon_pid, ITS_WAIT_MS);
    daemon_pid = -1;
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    sqlite3 *check = NULL;
    assert_int_equal(sqlite3_open(db, &check), SQLITE_OK);
    for (int i = 0; i < CLIENTS; i++) {
        for (int j = 0; j < PER_CLIENT; j++) {
            char id[32];
            snprintf(id, sizeof id, "ts-%d-%03d", i, j);
            if (acked[i][j] && db_has(check, id) != 1) {
                fail_msg("%s was answered OK but is not in the database", id);
            }
        }
    }
    assert_int_equal(sqlite3_close(check), SQLITE_OK);
    print_message("SIGTERM mid-stream: %d of %d writes answered OK, all of them kept\n",
                  n_acked, CLIENTS * PER_CLIENT);
}

/* A client that never reads holds unsent answers the daemon cannot deliver:
 * SIGTERM still ends in exit 0, once --shutdown-timeout-ms has passed, and
 * the log says what was cut off. */
static void test_sigterm_with_a_client_that_never_reads_exits_after_the_timeout(void **state) {
    (void)state;
    char db[400], log[400];
    fresh_db("term-hog.db", db, sizeof db);
    snprintf(log, sizeof log, "%s/term-hog.log", dir);
    const char *flags[] = {"--shutdown-timeout-ms", "500", "--max-output-bytes", "65536", NULL};
    struct its_conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fd = start_daemon(db, log, flags);
    /* A small receive buffer, set before connecting, fills at once. */
    int hog = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(hog >= 0);
    int rcvbuf = 4096;
    setsockopt(hog, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port_of(c->fd)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(hog, (struct sockaddr *)&a, sizeof a), 0);
    /* 2,000 answers of about 50 KB each, never read. */
    const char *req = "RADIUS * 36.16 120.41 100000 LIMIT 1000\n";
    size_t req_len = strlen(req), n_req = 2000;
    char *batch = malloc(req_len * n_req);
    assert_non_null(batch);
    for (size_t i = 0; i < n_req; i++) {
        memcpy(batch + i * req_len, req, req_len);
    }
    size_t sent = 0;
    for (int i = 0; i < 50 && sent < req_len * n_req; i++) {
        ssize_t n = send(hog, batch + sent, req_len * n_req - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += (size_t)n;
        } else {
            usleep(10000);
        }
    }
    free(batch);
    usleep(500000); /* the daemon fills the socket, then holds the rest unsent */
    its_ask(c, "PING\n", "OK 0\n"); /* the others are still served */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(kill(daemon_pid, SIGTERM), 0);
    int status = its_wait_exit(daemon_pid, ITS_WAIT_MS);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    daemon_pid = -1;
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    long took_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    char *text = its_read_file(log);
    if (!strstr(text, "nearestd: shutdown: 1 connections still busy after 500 ms")) {
        fail_msg("the log does not show the drain cut off: %s", text);
    }
    free(text);
    print_message("exit 0 %ld ms after SIGTERM (shutdown timeout 500 ms)\n", took_ms);
    assert_true(took_ms >= 450);
    assert_true(its_closes_within(c->fd, ITS_WAIT_MS));
    close(hog);
    close(c->fd);
    free(c);
}

/* ---- Start-up faults ------------------------------------------------------------------ */

/* Starts nearestd on db and asserts a non-zero exit within the wait, with
 * exactly one line on stderr that contains `word`. */
static void expect_refused(const char *what, const char *db, const char *word) {
    char log[400];
    snprintf(log, sizeof log, "%s/refused.log", dir);
    const char *args[] = {"--db", db, "--listen", "127.0.0.1:0", NULL};
    pid_t pid = its_spawn(NEARESTD_BIN, log, args);
    int status = its_wait_exit(pid, ITS_WAIT_MS);
    if (status == -1) {
        its_stop(pid);
        fail_msg("%s: nearestd started (or hung) instead of refusing", what);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) == 0) {
        fail_msg("%s: expected a non-zero exit, got wait status %d", what, status);
    }
    char *text = its_read_file(log);
    if (its_count_lines(text) != 1 || !strstr(text, word)) {
        fail_msg("%s: expected one line with \"%s\", got \"%s\"", what, word, text);
    }
    print_message("%s: exit %d: %s", what, WEXITSTATUS(status), text);
    free(text);
}

static void test_read_only_database_file_stops_start_up(void **state) {
    (void)state;
    char db[400];
    fresh_db("ro.db", db, sizeof db);
    assert_int_equal(chmod(db, 0444), 0);
    expect_refused("read-only file", db, "not writable");
}

/* Another process holds the write lock (BEGIN EXCLUSIVE, which in WAL mode
 * still lets readers in, so only a write would notice). */
static void test_database_locked_by_another_process_stops_start_up(void **state) {
    (void)state;
    char db[400];
    fresh_db("locked.db", db, sizeof db);
    sqlite3 *locker = NULL;
    assert_int_equal(sqlite3_open(db, &locker), SQLITE_OK);
    assert_int_equal(sqlite3_exec(locker, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    expect_refused("locked", db, "locked by another process");
    assert_int_equal(sqlite3_exec(locker, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(locker), SQLITE_OK);
}

static void test_corrupt_or_truncated_database_stops_start_up(void **state) {
    (void)state;
    char db[400];
    struct stat sb;
    /* Truncated to half: the tables' pages are gone. */
    fresh_db("truncated.db", db, sizeof db);
    assert_int_equal(stat(db, &sb), 0);
    assert_int_equal(truncate(db, sb.st_size / 2), 0);
    expect_refused("truncated", db, "truncated.db");
    /* Garbage over the header. */
    fresh_db("header.db", db, sizeof db);
    int fd = open(db, O_WRONLY);
    assert_true(fd >= 0);
    char junk[100];
    for (size_t i = 0; i < sizeof junk; i++) {
        junk[i] = (char)(i * 37 + 11);
    }
    assert_int_equal(pwrite(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
    close(fd);
    expect_refused("garbage header", db, "header.db");
    /* Garbage over every page but the first. */
    fresh_db("pages.db", db, sizeof db);
    assert_int_equal(stat(db, &sb), 0);
    fd = open(db, O_WRONLY);
    assert_true(fd >= 0);
    static char page[4096];
    for (off_t off = 4096; off + (off_t)sizeof page <= sb.st_size; off += sizeof page) {
        for (size_t i = 0; i < sizeof page; i++) {
            page[i] = (char)((size_t)off * 131 + i * 7);
        }
        assert_int_equal(pwrite(fd, page, sizeof page, off), (ssize_t)sizeof page);
    }
    close(fd);
    expect_refused("garbage pages", db, "pages.db");
    /* An empty file is an empty SQLite database, not a nearestd one. */
    fresh_db("empty.db", db, sizeof db);
    assert_int_equal(truncate(db, 0), 0);
    expect_refused("empty file", db, "not a nearestd database");
    /* A directory. */
    snprintf(db, sizeof db, "%s/dir.db", dir);
    assert_int_equal(mkdir(db, 0755), 0);
    expect_refused("directory", db, "not a regular file");
}

static void test_database_from_a_newer_schema_stops_start_up(void **state) {
    (void)state;
    char db[400], sql[64];
    fresh_db("newer.db", db, sizeof db);
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION + 1);
    sql_exec(db, sql);
    expect_refused("newer schema", db, "newer");
}

/* ---- SIGHUP ---------------------------------------------------------------------------- */

/* store_facility_each() callback: keeps the first id that is not ours. */
static int pick(const struct store_facility *r, void *ctx) {
    char *id = ctx;
    if (strncmp(r->id, "hup-", 4) == 0) {
        return 0;
    }
    snprintf(id, STORE_ID_MAX_BYTES + 1, "%s", r->id);
    return 1;
}

/* Changes the database behind the daemon's back through the store API: one
 * facility added, the first other one in id order deleted (its id goes to
 * gone, STORE_ID_MAX_BYTES + 1 bytes). */
static void change_behind_the_back(const char *db, char *gone) {
    struct store *st = NULL;
    char err[256] = "";
    if (store_open(db, &st, err, sizeof err) < 0) {
        fail_msg("store_open: %s", err);
    }
    struct store_facility f = {.id = "hup-new", .category = STORE_CAT_SCHOOL,
                               .subtype = "", .name = "Reloaded School", .address = "",
                               .phone = "", .hours = "", .where = {36.18, 120.45},
                               .attrs_json = "{}"};
    assert_int_equal(store_facility_put(st, &f), 0);
    gone[0] = '\0';
    assert_int_equal(store_facility_each(st, pick, gone), 1);
    assert_int_equal(store_facility_delete(st, gone), 0);
    store_close(st);
}

/* One HTTP/1.1 GET of `path` on 127.0.0.1:port with Connection: close;
 * returns the whole response (malloc'ed). */
static char *http_get(int port, const char *path) {
    int fd = its_dial(port);
    assert_true(fd >= 0);
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             path);
    its_send_all(fd, req, strlen(req));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, ITS_WAIT_MS), 1);
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        assert_true(len < cap - 1);
    }
    buf[len] = '\0';
    close(fd);
    return buf;
}

static void test_sighup_shows_changes_made_behind_the_daemons_back(void **state) {
    (void)state;
    char db[400], log[400], gone[STORE_ID_MAX_BYTES + 1], request[128], http[64];
    fresh_db("hup.db", db, sizeof db);
    snprintf(log, sizeof log, "%s/hup.log", dir);
    int http_port = its_free_port();
    snprintf(http, sizeof http, "127.0.0.1:%d", http_port);
    const char *flags[] = {"--http", http, NULL};
    struct its_conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fd = start_daemon(db, log, flags);
    its_ask(c, "GET hup-new\n", "ERR NOTFOUND ");
    change_behind_the_back(db, gone);
    snprintf(request, sizeof request, "GET %s\n", gone);
    its_ask(c, request, "OK 1\n"); /* not reloaded yet: the old catalogue answers */

    assert_int_equal(kill(daemon_pid, SIGHUP), 0);
    bool seen = false;
    for (int i = 0; i < 500 && !seen; i++) {
        its_send_all(c->fd, "GET hup-new\n", 12);
        char *a = its_read_answer(c); /* the same connection, every time */
        assert_non_null(a);
        seen = strncmp(a, "OK 1\nhup-new\tschool\tReloaded School\t", 36) == 0;
        if (!seen) {
            assert_true(strncmp(a, "ERR NOTFOUND ", 13) == 0);
            usleep(10000);
        }
        free(a);
    }
    assert_true(seen);
    its_ask(c, request, "ERR NOTFOUND ");
    its_ask(c, "NEAREST school 36.18 120.45 K 1\n", "OK 1\nhup-new\t");
    /* The HTTP listener answers from the new catalogue too. */
    char *resp = http_get(http_port, "/v1/facilities/hup-new");
    if (strncmp(resp, "HTTP/1.1 200 ", 13) != 0 || !strstr(resp, "Reloaded School")) {
        fail_msg("HTTP after the reload: %s", resp);
    }
    free(resp);
    char *text = its_read_file(log);
    const char *line = strstr(text, "nearestd: reloaded ");
    assert_non_null(line);
    print_message("%.*s", (int)(strchr(line, '\n') - line + 1), line);
    free(text);
    close(c->fd);
    free(c);
    term_and_expect_exit_0();
}

/* Number of "reloaded" lines in a log. */
static int count_reloads(const char *text) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, "nearestd: reloaded ")) != NULL; p++) {
        n++;
    }
    return n;
}

/* Writes sent right after SIGHUP wait for the swap and then land in the new
 * catalogue: each one answered OK is seen by GET afterwards. */
static void test_writes_during_a_reload_are_kept(void **state) {
    (void)state;
    enum { N = 300, ROUNDS = 3 };
    char db[400], log[400];
    fresh_db("hup-writes.db", db, sizeof db);
    snprintf(log, sizeof log, "%s/hup-writes.log", dir);
    struct its_conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fd = start_daemon(db, log, NULL);
    static char batch[N * 64];
    for (int round = 0; round < ROUNDS; round++) {
        size_t len = 0;
        for (int i = 0; i < N; i++) {
            len += (size_t)snprintf(batch + len, sizeof batch - len,
                                    "PUT hw-%d-%03d doctor_team 36.2 120.4 name=hw\n", round, i);
        }
        assert_int_equal(kill(daemon_pid, SIGHUP), 0);
        its_send_all(c->fd, batch, len);
        for (int i = 0; i < N; i++) {
            char *a = its_read_answer(c);
            assert_non_null(a);
            assert_true(strncmp(a, "OK 1\n", 5) == 0);
            free(a);
        }
        /* The next round's signal only once this round's reload is logged. */
        bool logged = false;
        for (int waited_ms = 0; !logged && waited_ms < ITS_WAIT_MS; waited_ms += 10) {
            char *text = its_read_file(log);
            logged = count_reloads(text) == round + 1;
            free(text);
            if (!logged) {
                usleep(10000);
            }
        }
        assert_true(logged);
    }
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < N; i++) {
            char request[64];
            snprintf(request, sizeof request, "GET hw-%d-%03d\n", round, i);
            its_ask(c, request, "OK 1\n");
        }
    }
    close(c->fd);
    free(c);
    /* Each round's signal was a reload of its own, none ignored or failed. */
    char *text = its_read_file(log);
    assert_int_equal(count_reloads(text), ROUNDS);
    assert_null(strstr(text, "reload failed"));
    for (const char *p = text; (p = strstr(p, "nearestd: reloaded ")) != NULL; p++) {
        print_message("%.*s", (int)(strchr(p, '\n') - p + 1), p);
    }
    free(text);
    term_and_expect_exit_0();
}

/* ---- Fixture ------------------------------------------------------------------------- */

static int group_setup(void **state) {
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof dir, "/tmp/it_faults.XXXXXX");
    if (!mkdtemp(dir)) {
        return -1;
    }
    snprintf(base_db, sizeof base_db, "%s/base.db", dir);
    char log[320];
    snprintf(log, sizeof log, "%s/init.log", dir);
    return its_init_db(NEARESTD_BIN, NEARESTD_DATASET_DIR, base_db, log);
}

static int group_teardown(void **state) {
    (void)state;
    its_stop(daemon_pid);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    its_stop(daemon_pid);
    daemon_pid = -1;
    return 0;
}

int main(void) {
#define T(f) cmocka_unit_test_teardown(f, teardown)
    const struct CMUnitTest tests[] = {
        T(test_sigterm_answers_writes_queued_behind_a_running_commit),
        T(test_sigterm_during_write_streams_keeps_every_acknowledged_write),
        T(test_sigterm_with_a_client_that_never_reads_exits_after_the_timeout),
        T(test_read_only_database_file_stops_start_up),
        T(test_database_locked_by_another_process_stops_start_up),
        T(test_corrupt_or_truncated_database_stops_start_up),
        T(test_database_from_a_newer_schema_stops_start_up),
        T(test_sighup_shows_changes_made_behind_the_daemons_back),
        T(test_writes_during_a_reload_are_kept),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
