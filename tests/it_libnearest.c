/* it_libnearest.c: libnearest as its users get it, against the real nearestd
 * on loopback serving the bundled Licang dataset.
 *
 *   - The shared library exports exactly the functions nearest.h marks
 *     NEAREST_API, and has a versioned SONAME; the static one defines no other
 *     global symbol either.
 *   - `cmake --install` of the libnearest component into a temporary prefix
 *     gives a header, both libraries and nearest.pc with which
 *     `pkg-config --cflags --libs nearest` (and `--static`) build
 *     clients/example.c; both builds print what the daemon's own answers say.
 *   - Pipelining: a few hundred mixed requests sent before any answer is read
 *     come back in order, each equal to the answer the same request gets on
 *     its own. The oracle for "the daemon's own answer" is a plain socket read
 *     line by line here (OK n and n lines, or one line), not libnearest's
 *     parser.
 * The whole program takes a few seconds, most of it the two compilations. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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
#include <unistd.h>

#include <cmocka.h>

#include "it_support.h"
#include "nearest.h"

#define N_PIPELINED 300

static char dir[64];
static char db[128];
static char log_path[128];
static pid_t daemon_pid = -1;
static int daemon_port;

/* ---- Daemon ------------------------------------------------------------------ */

static int dial(void) {
    return its_dial(daemon_port);
}

static int group_setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/it_libnearest-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    snprintf(db, sizeof db, "%s/licang.db", dir);
    snprintf(log_path, sizeof log_path, "%s/nearestd.log", dir);
    const char *args[] = {"--listen", "127.0.0.1:0", "--db", db, "--init", "--dataset",
                          NEARESTD_DATASET_DIR, NULL};
    daemon_pid = its_spawn(NEARESTD_BIN, log_path, args);
    daemon_port = its_wait_serving(daemon_pid, log_path);
    if (daemon_port < 0) {
        fprintf(stderr, "nearestd did not start; see %s\n", log_path);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    its_stop(daemon_pid);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", dir);
    }
    return 0;
}

/* ---- The oracle: the daemon's answers read by hand ----------------------------- */

struct text {
    char *s;
    size_t len, cap;
};

static void text_add(struct text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = 2 * (t->len + n + 1);
        t->s = realloc(t->s, t->cap);
        assert_non_null(t->s);
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void text_printf(struct text *t, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof buf);
    text_add(t, buf, (size_t)n);
}

/* Sends `line` and reads its whole answer off `in` into *out, every line with
 * its "\n" and no "\r": "OK n" and n lines, or one line (ERR, or JSON). */
static void raw_answer(int fd, FILE *in, const char *line, struct text *out) {
    char request[512];
    int len = snprintf(request, sizeof request, "%s\n", line);
    assert_true(len > 0 && (size_t)len < sizeof request);
    its_send_all(fd, request, (size_t)len); /* one send: no Nagle wait between parts */
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n = getline(&buf, &cap, in);
    assert_true(n > 0 && buf[n - 1] == '\n');
    text_add(out, buf, (size_t)n);
    long records = 0;
    if (strncmp(buf, "OK ", 3) == 0) {
        records = strtol(buf + 3, NULL, 10);
    }
    for (long i = 0; i < records; i++) {
        n = getline(&buf, &cap, in);
        assert_true(n > 0 && buf[n - 1] == '\n');
        text_add(out, buf, (size_t)n);
    }
    free(buf);
}

/* A libnearest answer written back as the lines it came from. */
static void reply_text(const struct cli_reply *r, struct text *out) {
    text_add(out, r->header, strlen(r->header));
    text_add(out, "\n", 1);
    for (size_t i = 0; i < r->n_records; i++) {
        text_add(out, r->records[i].line, strlen(r->records[i].line));
        text_add(out, "\n", 1);
    }
}

/* ---- Processes ----------------------------------------------------------------- */

/* Runs `sh -c cmd`, capturing stdout into *out (may be NULL). Returns the exit
 * status, or -1 if it did not exit normally. */
static int run_sh(const char *cmd, struct text *out) {
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
        if (out != NULL) {
            text_add(out, buf, n);
        }
    }
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- Exports --------------------------------------------------------------------- */

static int by_string(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names of the functions nearest.h marks NEAREST_API, sorted. */
static size_t header_api(char **names, size_t max) {
    FILE *h = fopen(NEAREST_HEADER, "r");
    assert_non_null(h);
    char line[512];
    size_t n = 0;
    while (fgets(line, sizeof line, h) != NULL) {
        if (strncmp(line, "NEAREST_API ", 12) != 0) {
            continue; /* the #define lines and comments do not start with it */
        }
        char *paren = strchr(line, '(');
        assert_non_null(paren);
        char *end = paren;
        char *start = end;
        while (start > line && (start[-1] == '_' || (start[-1] >= 'a' && start[-1] <= 'z'))) {
            start--;
        }
        assert_true(end > start && n < max);
        names[n++] = strndup(start, (size_t)(end - start));
    }
    fclose(h);
    qsort(names, n, sizeof *names, by_string);
    return n;
}

static void test_shared_library_exports_exactly_the_header_api(void **state) {
    (void)state;
    char *want[64];
    size_t n_want = header_api(want, 64);
    assert_true(n_want >= 20);

    struct text expect = {0};
    for (size_t i = 0; i < n_want; i++) {
        text_printf(&expect, "%s\n", want[i]);
        free(want[i]);
    }
    /* Defined global symbols of the shared library's dynamic table and of the
     * static archive; names starting with '_' belong to the toolchain (a
     * sanitizer runtime's hooks), never to our sources. sort(1) and strcmp
     * agree on these names (lower case, digits and '_'). */
    static const char *const libs[][2] = {{NEAREST_SHARED_LIB, "-D"},
                                          {NEAREST_STATIC_LIB, ""}};
    char cmd[512];
    for (size_t l = 0; l < 2; l++) {
        snprintf(cmd, sizeof cmd,
                 "nm %s -g --defined-only --format=posix '%s' | "
                 "awk 'NF >= 3 && substr($1, 1, 1) != \"_\" {print $1}' | LC_ALL=C sort",
                 libs[l][1], libs[l][0]);
        struct text got = {0};
        assert_int_equal(run_sh(cmd, &got), 0);
        if (got.s == NULL || strcmp(got.s, expect.s) != 0) {
            fail_msg("%s exports:\n%s\nnearest.h declares:\n%s", libs[l][0],
                     got.s ? got.s : "", expect.s);
        }
        free(got.s);
    }
    free(expect.s);

    snprintf(cmd, sizeof cmd, "readelf -d '%s'", NEAREST_SHARED_LIB);
    struct text dyn = {0};
    assert_int_equal(run_sh(cmd, &dyn), 0);
    assert_non_null(strstr(dyn.s, "Library soname: [libnearest.so.1]"));
    free(dyn.s);
}

/* ---- Install and pkg-config ------------------------------------------------------- */

/* What clients/example.c must print, from the daemon's answers to the same
 * three requests. */
static void example_oracle(struct text *want) {
    int fd = dial();
    assert_true(fd >= 0);
    FILE *in = fdopen(dup(fd), "r");
    assert_non_null(in);
    static const char *const requests[] = {"NEAREST school 36.16 120.41 K 3",
                                           "SERVES 36.16 120.41 community",
                                           "NEAREST hospital 36.16 120.41"};
    for (size_t r = 0; r < 3; r++) {
        struct text answer = {0};
        raw_answer(fd, in, requests[r], &answer);
        if (strncmp(answer.s, "ERR ", 4) == 0) {
            char *code = answer.s + 4;
            char *space = strchr(code, ' ');
            assert_non_null(space);
            *space = '\0';
            text_printf(want, "error %s: %s", code, space + 1); /* keeps its "\n" */
            free(answer.s);
            continue;
        }
        char *save = NULL;
        strtok_r(answer.s, "\n", &save); /* the header */
        for (char *line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char *f[32];
            size_t nf = 0;
            for (char *p = line;; p++) {
                f[nf++] = p;
                p = strchr(p, '\t');
                if (p == NULL || nf == 32) {
                    break;
                }
                *p = '\0';
            }
            if (r == 0) {
                const char *level = "-";
                for (size_t i = 6; i < nf; i++) {
                    level = strncmp(f[i], "level=", 6) == 0 ? f[i] + 6 : level;
                }
                text_printf(want, "facility %s %s %s %s %s level=%s\n", f[0], f[2], f[3], f[4],
                            f[5], level);
            } else {
                assert_int_equal(nf, 5);
                text_printf(want, "area %s %s %s served_by=%s\n", f[0], f[1], f[2], f[4]);
            }
        }
        free(answer.s);
    }
    fclose(in);
    close(fd);
}

static void test_installed_library_builds_a_program_with_pkg_config(void **state) {
    (void)state;
    char prefix[128], path[512], cmd[4096];
    snprintf(prefix, sizeof prefix, "%s/prefix", dir);
    snprintf(cmd, sizeof cmd,
             "'%s' --install '%s' --component libnearest --prefix '%s' >'%s/install.log' 2>&1",
             NEAREST_CMAKE, NEAREST_BUILD_DIR, prefix, dir);
    assert_int_equal(run_sh(cmd, NULL), 0);
    const char *files[] = {"include/nearest.h", NEAREST_LIBDIR "/libnearest.so",
                           NEAREST_LIBDIR "/libnearest.so.1", NEAREST_LIBDIR "/libnearest.a",
                           NEAREST_LIBDIR "/pkgconfig/nearest.pc"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", prefix, files[i]);
        if (!file_exists(path)) {
            fail_msg("%s was not installed", path);
        }
    }

    char env[512];
    snprintf(env, sizeof env, "PKG_CONFIG_PATH='%s/%s/pkgconfig'", prefix, NEAREST_LIBDIR);
    snprintf(cmd, sizeof cmd, "%s pkg-config --cflags --libs nearest", env);
    struct text flags = {0};
    assert_int_equal(run_sh(cmd, &flags), 0);
    assert_non_null(strstr(flags.s, "-lnearest"));
    free(flags.s);
    snprintf(cmd, sizeof cmd, "%s pkg-config --modversion nearest", env);
    struct text version = {0};
    assert_int_equal(run_sh(cmd, &version), 0);
    char want_version[32];
    snprintf(want_version, sizeof want_version, "%d.%d.%d\n", NEAREST_VERSION_MAJOR,
             NEAREST_VERSION_MINOR, NEAREST_VERSION_PATCH);
    assert_string_equal(version.s, want_version);
    free(version.s);

    struct text want = {0};
    example_oracle(&want);
    assert_non_null(strstr(want.s, "facility sc-"));
    assert_non_null(strstr(want.s, "area cm-"));
    assert_non_null(strstr(want.s, "error UNKNOWN: "));

    /* Shared: the program needs libnearest.so.1 at run time. */
    snprintf(cmd, sizeof cmd,
             "%s '%s' %s -std=c11 -Wall -Wextra -Werror '%s' "
             "$(%s pkg-config --cflags --libs nearest) -Wl,-rpath,'%s/%s' "
             "-o '%s/example-shared' 2>&1",
             env, TEST_CC, TEST_CFLAGS, EXAMPLE_SOURCE, env, prefix, NEAREST_LIBDIR, dir);
    struct text log = {0};
    if (run_sh(cmd, &log) != 0) {
        fail_msg("compiling against the installed library failed:\n%s\n%s", cmd, log.s);
    }
    free(log.s);
    /* Static: the same program with libnearest.a linked in. */
    snprintf(cmd, sizeof cmd,
             "%s '%s' %s -std=c11 -Wall -Wextra -Werror '%s' "
             "$(%s pkg-config --cflags nearest) -Wl,-Bstatic "
             "$(%s pkg-config --static --libs nearest) -Wl,-Bdynamic "
             "-o '%s/example-static' 2>&1",
             env, TEST_CC, TEST_CFLAGS, EXAMPLE_SOURCE, env, env, dir);
    log = (struct text){0};
    if (run_sh(cmd, &log) != 0) {
        fail_msg("static link against the installed library failed:\n%s\n%s", cmd, log.s);
    }
    free(log.s);

    static const char *const variants[] = {"shared", "static"};
    for (size_t v = 0; v < 2; v++) {
        snprintf(cmd, sizeof cmd, "readelf -d '%s/example-%s'", dir, variants[v]);
        struct text dyn = {0};
        assert_int_equal(run_sh(cmd, &dyn), 0);
        bool needs_lib = strstr(dyn.s, "[libnearest.so.1]") != NULL;
        assert_int_equal(needs_lib, v == 0);
        free(dyn.s);

        snprintf(cmd, sizeof cmd, "'%s/example-%s' 127.0.0.1 %d", dir, variants[v],
                 daemon_port);
        struct text got = {0};
        assert_int_equal(run_sh(cmd, &got), 0);
        assert_non_null(got.s);
        assert_string_equal(got.s, want.s);
        free(got.s);
    }
    free(want.s);
}

/* ---- Pipelining -------------------------------------------------------------------- */

/* Request i of a fixed pseudo-random mix: every command that reads, errors,
 * and format switches in the middle, so that answers differ in kind and size. */
static void make_request(unsigned i, unsigned *seed, char *line, size_t cap) {
    static const char *const categories[] = {"elder_care", "meal_point", "doctor_team",
                                             "school", "parking", "*"};
    const char *cat = categories[rand_r(seed) % 6];
    double lat = 36.14 + (rand_r(seed) % 8000) / 100000.0;
    double lon = 120.36 + (rand_r(seed) % 12000) / 100000.0;
    if (i == 100) {
        snprintf(line, cap, "FORMAT json");
        return;
    }
    if (i == 140) {
        snprintf(line, cap, "FORMAT text");
        return;
    }
    switch (rand_r(seed) % 10) {
    case 0:
        snprintf(line, cap, "SERVES %.5f %.5f", lat, lon);
        break;
    case 1:
        snprintf(line, cap, "RADIUS %s %.5f %.5f %d LIMIT 5", cat, lat, lon,
                 100 + rand_r(seed) % 900);
        break;
    case 2:
        snprintf(line, cap, "GET ec-%03d", 1 + rand_r(seed) % 130); /* some do not exist */
        break;
    case 3:
        snprintf(line, cap, "NEAREST %s %.5f", cat, lat); /* ERR SYNTAX */
        break;
    case 4:
        snprintf(line, cap, "NEAREST elder_care %.5f %.5f K 3 WHERE stars >= %d", lat, lon,
                 1 + rand_r(seed) % 5);
        break;
    case 5:
        snprintf(line, cap, i % 2 ? "PING" : "CATEGORIES");
        break;
    default:
        snprintf(line, cap, "NEAREST %s %.5f %.5f K %d", cat, lat, lon, 1 + rand_r(seed) % 10);
        break;
    }
}

static void test_pipelined_answers_come_in_order_and_match_one_by_one(void **state) {
    (void)state;
    static char lines[N_PIPELINED][160];
    unsigned seed = 6;
    for (unsigned i = 0; i < N_PIPELINED; i++) {
        make_request(i, &seed, lines[i], sizeof lines[i]);
    }

    /* One by one, on a plain socket. */
    struct text want[N_PIPELINED] = {0};
    int fd = dial();
    assert_true(fd >= 0);
    FILE *in = fdopen(dup(fd), "r");
    assert_non_null(in);
    for (unsigned i = 0; i < N_PIPELINED; i++) {
        raw_answer(fd, in, lines[i], &want[i]);
    }
    fclose(in);
    close(fd);

    /* All sent through libnearest before the first answer is read; every
     * third request goes as tokens, the others as raw lines. */
    struct cli_conn *c = cli_conn_open("127.0.0.1", daemon_port, CLI_DEFAULT_TIMEOUT_MS);
    assert_non_null(c);
    assert_int_equal(cli_conn_err(c), 0);
    for (unsigned i = 0; i < N_PIPELINED; i++) {
        if (i % 3 == 0) {
            char copy[160];
            char *argv[64];
            size_t argc = 0;
            strcpy(copy, lines[i]);
            for (char *save = NULL, *t = strtok_r(copy, " ", &save); t;
                 t = strtok_r(NULL, " ", &save)) {
                argv[argc++] = t;
            }
            assert_int_equal(cli_conn_send(c, argc, (const char *const *)argv), 0);
        } else {
            assert_int_equal(cli_conn_send_line(c, lines[i], strlen(lines[i])), 0);
        }
    }
    size_t kinds[3] = {0};
    for (unsigned i = 0; i < N_PIPELINED; i++) {
        struct cli_reply *r = NULL;
        assert_int_equal(cli_conn_read_reply(c, &r), 0);
        struct text got = {0};
        reply_text(r, &got);
        if (strcmp(got.s, want[i].s) != 0) {
            fail_msg("answer %u to '%s' differs:\n%s\none by one:\n%s", i, lines[i], got.s,
                     want[i].s);
        }
        kinds[r->kind]++;
        cli_reply_free(r);
        free(got.s);
        free(want[i].s);
    }
    /* The mix really held every kind of answer. */
    assert_true(kinds[CLI_REPLY_OK] > 50 && kinds[CLI_REPLY_ERR] > 10 &&
                kinds[CLI_REPLY_JSON] > 10);
    cli_conn_close(c);
}

static void test_reading_past_quit_says_closed_and_stays_closed(void **state) {
    (void)state;
    struct cli_conn *c = cli_conn_open("127.0.0.1", daemon_port, CLI_DEFAULT_TIMEOUT_MS);
    assert_non_null(c);
    const char *quit[] = {"QUIT"};
    const char *ping[] = {"PING"};
    assert_int_equal(cli_conn_send(c, 1, quit), 0);
    struct cli_reply *r = NULL;
    assert_int_equal(cli_conn_read_reply(c, &r), 0);
    assert_string_equal(r->header, "OK 0");
    cli_reply_free(r);
    r = NULL;
    assert_int_equal(cli_conn_read_reply(c, &r), CLI_ERR_CLOSED);
    assert_null(r);
    assert_int_equal(cli_conn_err(c), CLI_ERR_CLOSED);
    assert_int_equal(cli_conn_send(c, 1, ping), CLI_ERR_CLOSED);
    assert_string_not_equal(cli_conn_errstr(c), "");
    cli_conn_close(c);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_library_exports_exactly_the_header_api),
        cmocka_unit_test(test_installed_library_builds_a_program_with_pkg_config),
        cmocka_unit_test(test_pipelined_answers_come_in_order_and_match_one_by_one),
        cmocka_unit_test(test_reading_past_quit_says_closed_and_stays_closed),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
