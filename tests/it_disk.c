/* it_disk.c: the real nearestd on a full disk and on a read-only file system.
 *
 * A small tmpfs (8 MiB) stands in for the disk. On it: a database on a
 * file system mounted read-only stops start-up with one line and a non-zero
 * exit; and once the disk is filled, a write is answered ERR (never OK),
 * reads go on, writes succeed again when space is freed, and every write
 * answered OK is in the database after a clean exit.
 *
 * Mounting needs root. Without it, or when the mount fails (a container
 * without CAP_SYS_ADMIN), the program prints why and exits 77, which CTest
 * reports as skipped (SKIP_RETURN_CODE), not passed. The tests run in a
 * child process in its own process group; the parent waits for it at most
 * 60 s, then kills the whole group (daemons included) and detaches the mount
 * whatever happened, so a failure leaves neither a process nor a mount. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "it_support.h"

#define SKIP 77
#define MOUNT_OPTIONS "size=8m,mode=0755"
#define CHILD_WAIT_MS 60000

static char dir[256];       /* a temporary directory outside the mount */
static char mnt[320];       /* the tmpfs mount point inside it */
static char base_db[320];   /* the bundled dataset's database, outside the mount */
static pid_t daemon_pid = -1;

/* ---- Helpers ------------------------------------------------------------------------- */

/* Writes zeros to path until the file system is full. Returns the bytes. */
static size_t fill_disk(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    static char zeros[1 << 16];
    size_t total = 0;
    size_t chunk = sizeof zeros;
    for (;;) {
        ssize_t n = write(fd, zeros, chunk);
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        assert_true(n < 0 && errno == ENOSPC);
        if (chunk == 1) {
            break;
        }
        chunk /= 2; /* fill the last partial page too */
    }
    close(fd);
    return total;
}

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

/* ---- Tests --------------------------------------------------------------------------- */

static void test_database_on_a_read_only_file_system_stops_start_up(void **state) {
    (void)state;
    char db[400], log[400];
    snprintf(db, sizeof db, "%s/ro.db", mnt);
    snprintf(log, sizeof log, "%s/ro.log", dir);
    its_copy_file(base_db, db);
    assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, MOUNT_OPTIONS), 0);
    const char *args[] = {"--db", db, "--listen", "127.0.0.1:0", NULL};
    pid_t pid = its_spawn(NEARESTD_BIN, log, args);
    int status = its_wait_exit(pid, ITS_WAIT_MS);
    if (status == -1) {
        its_stop(pid);
    }
    assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT, MOUNT_OPTIONS), 0);
    assert_int_equal(unlink(db), 0);
    if (status == -1) {
        fail_msg("nearestd started on a read-only file system");
    }
    assert_true(WIFEXITED(status));
    assert_int_not_equal(WEXITSTATUS(status), 0);
    char *text = its_read_file(log);
    if (its_count_lines(text) != 1 || !strstr(text, "not writable")) {
        fail_msg("expected one line saying the database is not writable, got \"%s\"", text);
    }
    print_message("read-only file system: exit %d: %s", WEXITSTATUS(status), text);
    free(text);
}

static void test_full_disk_write_gets_err_reads_go_on_and_writes_resume(void **state) {
    (void)state;
    enum { MAX_WRITES = 20000 };
    char db[400], log[400], filler[400];
    snprintf(db, sizeof db, "%s/full.db", mnt);
    snprintf(filler, sizeof filler, "%s/filler", mnt);
    snprintf(log, sizeof log, "%s/full.log", dir);
    its_copy_file(base_db, db);
    const char *args[] = {"--db", db, "--listen", "127.0.0.1:0", NULL};
    daemon_pid = its_spawn(NEARESTD_BIN, log, args);
    struct its_conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    int port = its_wait_serving(daemon_pid, log);
    c->fd = port > 0 ? its_dial(port) : -1;
    assert_true(c->fd >= 0);

    /* Writes before the disk fills, then fill it. */
    static bool acked[MAX_WRITES];
    char request[512], id[32];
    for (int i = 0; i < 5; i++) {
        snprintf(request, sizeof request, "PUT full-%05d parking 36.2 120.4 free=%d\n", i, i);
        its_ask(c, request, "OK 1\n");
        acked[i] = true;
    }
    size_t filled = fill_disk(filler);

    /* Writes until one is refused; each answer is OK or ERR, never silence. */
    int refused = -1;
    char *refusal = NULL;
    for (int i = 5; i < MAX_WRITES && refused < 0; i++) {
        snprintf(request, sizeof request,
                 "PUT full-%05d parking 36.2 120.4 \"name=%0200d\" free=%d\n", i, i, i);
        its_send_all(c->fd, request, strlen(request));
        char *a = its_read_answer(c);
        assert_non_null(a);
        if (strncmp(a, "OK 1\n", 5) == 0) {
            acked[i] = true;
            free(a);
        } else {
            assert_true(strncmp(a, "ERR ", 4) == 0);
            refused = i;
            refusal = a;
        }
    }
    if (refused < 0) {
        fail_msg("%d writes on a full disk were all answered OK", MAX_WRITES);
    }
    print_message("disk full after %zu filler bytes: write %d answered %s", filled, refused,
                  refusal);
    free(refusal);

    /* Reads go on, and the refused write is nowhere. */
    its_ask(c, "NEAREST parking 36.2 120.4 K 3\n", "OK 3\n");
    its_ask(c, "GET full-00000\n", "OK 1\nfull-00000\t");
    snprintf(request, sizeof request, "GET full-%05d\n", refused);
    its_ask(c, request, "ERR NOTFOUND ");
    its_ask(c, "PING\n", "OK 0\n");

    /* Space comes back, and so do writes. */
    assert_int_equal(unlink(filler), 0);
    int again = refused + 1;
    snprintf(request, sizeof request, "PUT full-%05d parking 36.2 120.4 free=1\n", again);
    its_ask(c, request, "OK 1\n");
    acked[again] = true;
    snprintf(request, sizeof request, "GET full-%05d\n", again);
    its_ask(c, request, "OK 1\n");
    close(c->fd);
    free(c);

    /* A clean exit, and every acknowledged write is in a sound database. */
    assert_int_equal(kill(daemon_pid, SIGTERM), 0);
    int status = its_wait_exit(daemon_pid, ITS_WAIT_MS);
    assert_true(status != -1);
    daemon_pid = -1;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    sqlite3 *check = NULL;
    assert_int_equal(sqlite3_open(db, &check), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(check, "PRAGMA integrity_check", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    for (int i = 0; i <= again; i++) {
        snprintf(id, sizeof id, "full-%05d", i);
        if (acked[i] && db_has(check, id) != 1) {
            fail_msg("%s was answered OK but is not in the database", id);
        }
    }
    snprintf(id, sizeof id, "full-%05d", refused);
    assert_int_equal(db_has(check, id), 0);
    assert_int_equal(sqlite3_close(check), SQLITE_OK);
}

/* ---- Fixture and process guard --------------------------------------------------------- */

static int group_setup(void **state) {
    (void)state;
    snprintf(base_db, sizeof base_db, "%s/base.db", dir);
    char log[320];
    snprintf(log, sizeof log, "%s/init.log", dir);
    return its_init_db(NEARESTD_BIN, NEARESTD_DATASET_DIR, base_db, log);
}

static int teardown(void **state) {
    (void)state;
    its_stop(daemon_pid);
    daemon_pid = -1;
    return 0;
}

/* The child: mounts, runs the tests, unmounts. */
static int run_disk_tests(void) {
    if (mount("tmpfs", mnt, "tmpfs", 0, MOUNT_OPTIONS) != 0) {
        printf("it_disk: skipped: cannot mount a tmpfs on %s: %s\n", mnt, strerror(errno));
        return SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_database_on_a_read_only_file_system_stops_start_up,
                                  teardown),
        cmocka_unit_test_teardown(test_full_disk_write_gets_err_reads_go_on_and_writes_resume,
                                  teardown),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, NULL);
    umount2(mnt, MNT_DETACH);
    return failed == 0 ? 0 : 1;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    if (geteuid() != 0) {
        printf("it_disk: skipped: mounting a tmpfs needs root (running as uid %d)\n",
               (int)geteuid());
        return SKIP;
    }
    snprintf(dir, sizeof dir, "/tmp/it_disk.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("it_disk: mkdtemp");
        return 1;
    }
    snprintf(mnt, sizeof mnt, "%s/mnt", dir);
    if (mkdir(mnt, 0755) != 0) {
        perror("it_disk: mkdir");
        return 1;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        setpgid(0, 0);
        _exit(run_disk_tests());
    }
    if (child < 0) {
        perror("it_disk: fork");
        return 1;
    }
    setpgid(child, child); /* either side may win the race; both ask the same */
    int status = its_wait_exit(child, CHILD_WAIT_MS);
    if (status == -1) {
        printf("it_disk: the tests took over %d ms; killing them\n", CHILD_WAIT_MS);
    }
    kill(-child, SIGKILL); /* the child and any daemon it left behind */
    if (status == -1) {
        waitpid(child, &status, 0);
        status = -1;
    }
    usleep(100000); /* let killed daemons release the mount */
    umount2(mnt, MNT_DETACH); /* already gone unless the child died first */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        printf("it_disk: could not remove %s\n", dir);
    }
    if (status == -1 || !WIFEXITED(status)) {
        return 1;
    }
    return WEXITSTATUS(status);
}
