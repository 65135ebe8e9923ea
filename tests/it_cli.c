/* it_cli.c: the `nearest` CLI against the real nearestd, run as a user would.
 *
 * Two groups, each with its own daemon started with --init on a new database
 * and a port it picks itself (--listen 127.0.0.1:0), killed in the teardown
 * and with the test process:
 *
 *   synthetic: a small dataset written here (GeoJSON Points with every
 *   property the importer reads). Facilities sit at distances from the query
 *   point that differ by at least 30 %, so a flat-earth approximation is an
 *   exact oracle for their order; names mix Chinese and ASCII for the table.
 *
 *   licang: the bundled dataset, with attributes, opening hours and areas. The
 *   oracle is the protocol itself: each CLI form (--where, --open, --maxdist,
 *   --crs, radius, serves, --json, --geojson) must print exactly what the
 *   daemon answers to the equivalent request line, read here from a plain
 *   socket, and its errors must be the daemon's ERR lines.
 *
 * Each test runs the build's `nearest` binary as a child process, with its own
 * environment, and checks stdout, stderr and the exit status. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <termios.h>
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "it_support.h"
#include <jansson.h>

#include "cli_table.h"

#define QUERY_LAT 36.16
#define QUERY_LON 120.41

struct site {
    const char *id;
    const char *category;
    const char *name;
    double dlat_deg, dlon_deg;   /* offset from the query point */
};

/* Names mix Chinese and ASCII so the table's widths are exercised. */
static const struct site sites[] = {
    {"mp-a", "meal_point", "虎山路街道新埠社区长者食堂", 0.003, 0.0},
    {"mp-b", "meal_point", "兴溪 canteen", -0.001, 0.0},
    {"mp-c", "meal_point", "祥洼食堂", 0.0, 0.02},
    {"mp-d", "meal_point", "Licun \"east\" kitchen", 0.05, 0.0},
    {"mp-e", "meal_point", "嘉屯社区长者食堂", -0.0075, 0.0},
    {"mp-f", "meal_point", "far away", 0.2, 0.0},
    {"sc-a", "school", "青岛市李沧区泰塘小学", 0.0, -0.004},
    {"sc-b", "school", "泰塘第二小学", 0.01, 0.01},
    {"ec-a", "elder_care", "泰塘社区居家养老服务站", 0.0005, 0.0005},
};
#define N_SITES (sizeof sites / sizeof sites[0])

struct fixture {
    char dir[64];
    char db[128];
    char log[128];
    int port;
    pid_t pid;
};

static struct fixture *fx;

/* ---- Dataset and daemon ----------------------------------------------------- */

static int write_dataset(void) {
    json_t *features = json_array();
    for (size_t i = 0; i < N_SITES; i++) {
        const struct site *s = &sites[i];
        json_array_append_new(
            features,
            json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s}, s:{s:s, s:[f, f]}}",
                      "type", "Feature", "properties", "id", s->id, "category", s->category,
                      "subtype", "", "name", s->name, "address", "李沧区 test road",
                      "phone", "0532-0000000", "opening_hours", "Mo-Su 08:00-18:00",
                      "geometry", "type", "Point", "coordinates", QUERY_LON + s->dlon_deg,
                      QUERY_LAT + s->dlat_deg));
    }
    json_t *fc = json_pack("{s:s, s:o}", "type", "FeatureCollection", "features", features);
    char path[256];
    snprintf(path, sizeof path, "%s/facilities.geojson", fx->dir);
    int ret = json_dump_file(fc, path, JSON_REAL_PRECISION(17));
    json_decref(fc);
    snprintf(path, sizeof path, "%s/areas.geojson", fx->dir);
    if (its_write_file(path, "{\"type\": \"FeatureCollection\", \"features\": []}\n") != 0) {
        return -1;
    }
    return ret;
}

/* Starts nearestd on a new database made from `dataset` (a directory) in a
 * new fixture, which becomes fx. */
static int start_fixture(const char *dataset, bool synthetic) {
    fx = calloc(1, sizeof *fx);
    if (fx == NULL) {
        return -1;
    }
    snprintf(fx->dir, sizeof fx->dir, "/tmp/it_cli-XXXXXX");
    if (mkdtemp(fx->dir) == NULL || (synthetic && write_dataset() != 0)) {
        return -1;
    }
    snprintf(fx->db, sizeof fx->db, "%s/cli.db", fx->dir);
    snprintf(fx->log, sizeof fx->log, "%s/nearestd.log", fx->dir);
    /* Port 0: the daemon binds a free port and logs it, so no other test can
     * take it in between. */
    const char *args[] = {"--listen", "127.0.0.1:0", "--db", fx->db, "--init", "--dataset",
                          synthetic ? fx->dir : dataset, NULL};
    fx->pid = its_spawn(NEARESTD_BIN, fx->log, args);
    fx->port = its_wait_serving(fx->pid, fx->log);
    if (fx->port < 0) {
        fprintf(stderr, "nearestd did not start; see %s\n", fx->log);
        return -1;
    }
    return 0;
}

/* The small synthetic dataset of `sites`. */
static int group_setup(void **state) {
    (void)state;
    return start_fixture(NULL, true);
}

/* The bundled Licang dataset, with attributes, opening hours and areas. */
static int licang_setup(void **state) {
    (void)state;
    return start_fixture(NEARESTD_DATASET_DIR, false);
}

static int group_teardown(void **state) {
    (void)state;
    its_stop(fx->pid);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", fx->dir);
    }
    free(fx);
    return 0;
}

/* ---- Running the CLI -------------------------------------------------------- */

struct run {
    int status;     /* exit status, or -1 if it did not exit normally */
    char *out;      /* stdout, NUL-terminated */
    char *err;      /* stderr */
};

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf != NULL && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    assert_non_null(buf);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Runs `nearest args...` (NULL-terminated) with NEAREST_PORT set to
 * env_port (unset if NULL) and NEAREST_HOST unset, or set to env_host, and
 * `input` on its stdin (/dev/null when NULL, so it is never a terminal). */
static struct run run_cli_input(const char *env_host, const char *env_port, const char *input,
                                const char *const *args) {
    const char *argv[24] = {NEAREST_CLI_BIN};
    size_t n = 1;
    while (args[n - 1] != NULL && n < 23) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    char out_path[160], err_path[160], in_path[160];
    snprintf(out_path, sizeof out_path, "%s/out", fx->dir);
    snprintf(err_path, sizeof err_path, "%s/err", fx->dir);
    snprintf(in_path, sizeof in_path, "%s/in", fx->dir);
    FILE *in = fopen(in_path, "w");
    assert_non_null(in);
    fputs(input ? input : "", in);
    assert_int_equal(fclose(in), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int stdin_fd = open(input ? in_path : "/dev/null", O_RDONLY);
        if (out < 0 || err < 0 || stdin_fd < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 ||
            dup2(stdin_fd, 0) < 0) {
            _exit(126);
        }
        unsetenv("NEAREST_HOST");
        unsetenv("NEAREST_PORT");
        if (env_host != NULL) {
            setenv("NEAREST_HOST", env_host, 1);
        }
        if (env_port != NULL) {
            setenv("NEAREST_PORT", env_port, 1);
        }
        execv(NEAREST_CLI_BIN, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    struct run r = {.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1};
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    return r;
}

static struct run run_cli_env(const char *env_host, const char *env_port,
                              const char *const *args) {
    return run_cli_input(env_host, env_port, NULL, args);
}

/* Runs nearest against the fixture's daemon through NEAREST_PORT. */
static struct run run_cli(const char *const *args) {
    char port[16];
    snprintf(port, sizeof port, "%d", fx->port);
    return run_cli_env(NULL, port, args);
}

static void run_free(struct run *r) {
    free(r->out);
    free(r->err);
}

/* ---- The oracle -------------------------------------------------------------- */

/* Approximate metres from the query point; good enough to order the sites,
 * whose distances differ by far more than its error. */
static double approx_distance_m(const struct site *s) {
    double dy = s->dlat_deg * 110950.0;
    double dx = s->dlon_deg * 111320.0 * cos(QUERY_LAT * M_PI / 180.0);
    return sqrt(dx * dx + dy * dy);
}

static int by_distance(const void *a, const void *b) {
    double da = approx_distance_m(*(const struct site *const *)a);
    double db = approx_distance_m(*(const struct site *const *)b);
    return (da > db) - (da < db);
}

/* The sites of a category ("*" for all), nearest first. */
static size_t expected(const char *category, const struct site **out) {
    size_t n = 0;
    for (size_t i = 0; i < N_SITES; i++) {
        if (strcmp(category, "*") == 0 || strcmp(category, sites[i].category) == 0) {
            out[n++] = &sites[i];
        }
    }
    qsort(out, n, sizeof *out, by_distance);
    return n;
}

/* Splits text into lines in place. */
static size_t split_lines(char *text, char **lines, size_t max) {
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && n < max;
         l = strtok_r(NULL, "\n", &save)) {
        lines[n++] = l;
    }
    return n;
}

/* ---- Tests ------------------------------------------------------------------- */

static void check_table(const char *category, const char *k, size_t want_rows) {
    const struct site *want[N_SITES];
    size_t n_want = expected(category, want);
    assert_true(want_rows <= n_want);
    const char *args[] = {category, "36.16", "120.41", k ? "-k" : NULL, k, NULL};
    struct run r = run_cli(args);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    char *lines[32];
    size_t n = split_lines(r.out, lines, 32);
    assert_int_equal(n, want_rows + 1);
    assert_non_null(strstr(lines[0], "name"));
    assert_non_null(strstr(lines[0], "distance"));
    for (size_t i = 0; i < want_rows; i++) {
        const char *row = lines[i + 1];
        /* The row ends with the id, starts with its number, and names the facility. */
        size_t id_len = strlen(want[i]->id);
        assert_true(strlen(row) > id_len);
        assert_string_equal(row + strlen(row) - id_len, want[i]->id);
        assert_int_equal(atoi(row), (int)i + 1);
        assert_non_null(strstr(row, want[i]->name));
        /* The id starts in the header's "id" column. */
        char head_prefix[256], row_prefix[512];
        size_t hp = (size_t)(strstr(lines[0], " id") + 1 - lines[0]);
        size_t rp = strlen(row) - id_len;
        memcpy(head_prefix, lines[0], hp);
        head_prefix[hp] = '\0';
        memcpy(row_prefix, row, rp);
        row_prefix[rp] = '\0';
        assert_int_equal(cli_display_width(row_prefix), cli_display_width(head_prefix));
    }
    run_free(&r);
}

static void test_table_lists_nearest_ids_in_order(void **state) {
    (void)state;
    check_table("meal_point", "3", 3);
    check_table("meal_point", "6", 6);
    check_table("*", "9", 9);
    check_table("school", "5", 2);
}

static void test_default_k_is_five(void **state) {
    (void)state;
    check_table("meal_point", NULL, 5);
}

static void test_tsv_prints_records_and_table_shows_their_distances(void **state) {
    (void)state;
    const struct site *want[N_SITES];
    size_t n_want = expected("*", want);
    const char *args[] = {"--tsv", "*", "36.16", "120.41", "-k", "20", NULL};
    struct run tsv = run_cli(args);
    assert_int_equal(tsv.status, 0);
    char *lines[32];
    size_t n = split_lines(tsv.out, lines, 32);
    assert_int_equal(n, n_want);

    const char *table_args[] = {"*", "36.16", "120.41", "-k", "20", NULL};
    struct run table = run_cli(table_args);
    assert_int_equal(table.status, 0);
    char *rows[32];
    assert_int_equal(split_lines(table.out, rows, 32), n_want + 1);

    for (size_t i = 0; i < n; i++) {
        char *fields[8];
        size_t nf = 0;
        for (char *save = NULL, *f = strtok_r(lines[i], "\t", &save); f && nf < 8;
             f = strtok_r(NULL, "\t", &save)) {
            fields[nf++] = f;
        }
        assert_int_equal(nf, 6);
        assert_string_equal(fields[0], want[i]->id);
        assert_string_equal(fields[1], want[i]->category);
        assert_string_equal(fields[2], want[i]->name);
        double d = strtod(fields[5], NULL);
        double approx = approx_distance_m(want[i]);
        assert_true(fabs(d - approx) <= 0.01 * approx + 1.0);
        char shown[32];
        cli_format_distance(true, d, shown, sizeof shown);
        assert_non_null(strstr(rows[i + 1], shown));
    }
    run_free(&tsv);
    run_free(&table);
}

static void test_nothing_matched_exits_1(void **state) {
    (void)state;
    const char *args[] = {"parking", "36.16", "120.41", NULL};
    struct run r = run_cli(args);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    run_free(&r);
    const char *tsv_args[] = {"--tsv", "parking", "36.16", "120.41", NULL};
    r = run_cli(tsv_args);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    run_free(&r);
}

static void test_server_errors_exit_2_with_code_and_message(void **state) {
    (void)state;
    const char *swapped[] = {"school", "120.41", "36.16", NULL};
    struct run r = run_cli(swapped);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.out, "");
    assert_true(strncmp(r.err, "nearest: RANGE: latitude 120.41", 31) == 0);
    assert_non_null(strchr(r.err, '\n'));
    run_free(&r);

    const char *unknown[] = {"hospital", "36.16", "120.41", NULL};
    r = run_cli(unknown);
    assert_int_equal(r.status, 2);
    assert_true(strncmp(r.err, "nearest: UNKNOWN: ", 18) == 0);
    run_free(&r);

    const char *big_k[] = {"school", "36.16", "120.41", "-k", "1001", NULL};
    r = run_cli(big_k);
    assert_int_equal(r.status, 2);
    assert_true(strncmp(r.err, "nearest: RANGE: ", 16) == 0);
    run_free(&r);
}

static void test_no_daemon_says_cannot_connect_and_exits_2(void **state) {
    (void)state;
    int port = its_free_port();
    char port_arg[16], want[160];
    snprintf(port_arg, sizeof port_arg, "%d", port);
    snprintf(want, sizeof want,
             "nearest: cannot connect to 127.0.0.1:%d: Connection refused "
             "(is nearestd running?)\n", port);
    const char *args[] = {"--port", port_arg, "school", "36.16", "120.41", NULL};
    struct run r = run_cli_env(NULL, NULL, args);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, want);
    assert_string_equal(r.out, "");
    run_free(&r);
}

static void test_host_and_port_come_from_environment_unless_given(void **state) {
    (void)state;
    char port[16], bad_port[16];
    snprintf(port, sizeof port, "%d", fx->port);
    snprintf(bad_port, sizeof bad_port, "%d", its_free_port());
    const char *args[] = {"school", "36.16", "120.41", NULL};
    struct run r = run_cli_env("127.0.0.1", port, args);
    assert_int_equal(r.status, 0);
    run_free(&r);
    /* --port wins over NEAREST_PORT. */
    const char *with_port[] = {"--port", port, "school", "36.16", "120.41", NULL};
    r = run_cli_env(NULL, bad_port, with_port);
    assert_int_equal(r.status, 0);
    run_free(&r);
    /* --host wins over NEAREST_HOST. */
    const char *with_host[] = {"--host", "127.0.0.1", "school", "36.16", "120.41", NULL};
    r = run_cli_env("127.0.0.2.invalid", port, with_host);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = run_cli_env(NULL, bad_port, args);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, bad_port));
    run_free(&r);
}

static void test_raw_prints_the_answer_as_received(void **state) {
    (void)state;
    const char *get[] = {"--raw", "GET mp-b", NULL};
    struct run r = run_cli(get);
    assert_int_equal(r.status, 0);
    char want[256];
    snprintf(want, sizeof want, "OK 1\nmp-b\tmeal_point\t兴溪 canteen\t%.6f\t%.6f\t-\n",
             QUERY_LAT - 0.001, QUERY_LON);
    assert_string_equal(r.out, want);
    run_free(&r);

    const char *ping[] = {"--raw", "PING", NULL};
    r = run_cli(ping);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "OK 0\n");
    run_free(&r);

    const char *missing[] = {"--raw", "GET nope", NULL};
    r = run_cli(missing);
    assert_int_equal(r.status, 2);
    assert_true(strncmp(r.out, "ERR NOTFOUND", 12) == 0);
    assert_true(strncmp(r.err, "nearest: NOTFOUND: ", 19) == 0);
    run_free(&r);

    const char *two_lines[] = {"--raw", "PING\nPING", NULL};
    r = run_cli(two_lines);
    assert_int_equal(r.status, 2);
    run_free(&r);
}

static void test_names_with_quotes_and_spaces_reach_the_server_intact(void **state) {
    (void)state;
    /* mp-d's name holds quotes; asking for it by position must find it. */
    const char *args[] = {"--tsv", "meal_point", "36.21", "120.41", "-k", "1", NULL};
    struct run r = run_cli(args);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "mp-d\tmeal_point\tLicun \"east\" kitchen\t", 37) == 0);
    run_free(&r);
    /* A category with a space is one token, refused by the server, not split. */
    const char *spaced[] = {"meal point", "36.16", "120.41", NULL};
    r = run_cli(spaced);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "UNKNOWN"));
    assert_non_null(strstr(r.err, "meal point"));
    run_free(&r);
}

static void test_bad_command_lines_exit_2_with_usage_hint(void **state) {
    (void)state;
    const char *cases[][6] = {
        {"school", "36.16", NULL},
        {"--port", "0", "school", "36.16", "120.41", NULL},
        {"--bogus", "school", "36.16", "120.41", NULL},
        {"-k", NULL},
        {"--raw", "PING", "extra", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r = run_cli(cases[i]);
        assert_int_equal(r.status, 2);
        assert_true(strncmp(r.err, "nearest: ", 9) == 0);
        assert_string_equal(r.out, "");
        run_free(&r);
    }
    const char *help[] = {"--help", NULL};
    struct run r = run_cli(help);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: nearest"));
    assert_non_null(strstr(r.out, "--tsv"));
    run_free(&r);
}

static void test_negative_coordinates_are_arguments_not_options(void **state) {
    (void)state;
    const char *args[] = {"school", "-36.16", "-120.41", NULL};
    struct run r = run_cli(args);
    /* Far from every site but still an answer: the nearest schools. */
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "sc-a"));
    run_free(&r);
}

static void test_json_prints_one_object_with_the_oracle_ids(void **state) {
    (void)state;
    const struct site *want[N_SITES];
    size_t n_want = expected("meal_point", want);
    const char *args[] = {"--json", "meal_point", "36.16", "120.41", "-k", "4", NULL};
    struct run r = run_cli(args);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    assert_non_null(strchr(r.out, '\n'));
    assert_int_equal(strchr(r.out, '\n')[1], '\0'); /* one line */
    json_error_t jerr;
    json_t *root = json_loads(r.out, 0, &jerr);
    assert_non_null(root);
    assert_true(json_is_true(json_object_get(root, "ok")));
    json_t *records = json_object_get(root, "results");
    assert_true(n_want >= 4);
    assert_int_equal(json_array_size(records), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *rec = json_array_get(records, i);
        assert_string_equal(json_string_value(json_object_get(rec, "id")), want[i]->id);
        assert_string_equal(json_string_value(json_object_get(rec, "name")), want[i]->name);
    }
    json_decref(root);
    run_free(&r);

    const char *none[] = {"--json", "parking", "36.16", "120.41", NULL};
    r = run_cli(none);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "\"count\":0"));
    run_free(&r);

    const char *bad[] = {"--json", "school", "120.41", "36.16", NULL};
    r = run_cli(bad);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.out, "\"ok\":false"));
    assert_true(strncmp(r.err, "nearest: RANGE: ", 16) == 0);
    run_free(&r);
}

static void test_interactive_answers_each_line_until_quit(void **state) {
    (void)state;
    const struct site *want[N_SITES];
    expected("meal_point", want);
    char port[16];
    snprintf(port, sizeof port, "%d", fx->port);
    const char *args[] = {"-i", NULL};
    struct run r = run_cli_input(NULL, port,
                                 "PING\n"
                                 "\n   \n" /* blank lines get no answer and are not sent */
                                 "NEAREST meal_point 36.16 120.41 K 2\n"
                                 "NEAREST nowhere\n"
                                 "CATEGORIES\n"
                                 "quit\n"
                                 "PING\n", /* after QUIT: never sent */
                                 args);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    const char *empty = strstr(r.out, "(empty)\n");
    const char *first = strstr(r.out, want[0]->id);
    const char *second = strstr(r.out, want[1]->id);
    const char *error = strstr(r.out, "(error) SYNTAX: ");
    const char *cats = strstr(r.out, "meal_point\t6\n");
    assert_true(empty && first && second && error && cats);
    assert_true(empty < first && first < second && second < error && error < cats);
    /* QUIT's own answer is the last thing printed. */
    assert_string_equal(r.out + strlen(r.out) - 8, "(empty)\n");
    assert_ptr_not_equal(strstr(r.out, "(empty)\n"), r.out + strlen(r.out) - 8);
    run_free(&r);

    /* Without arguments and without a terminal, nearest does not prompt. */
    const char *none[] = {NULL};
    r = run_cli_input(NULL, port, "PING\n", none);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.out, "");
    run_free(&r);
}

/* A listening socket on a free port that the test, not nearestd, controls. */
static int listen_socket(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_silent_server_times_out_with_exit_2(void **state) {
    (void)state;
    int port = 0;
    int fd = listen_socket(&port); /* the kernel accepts; nobody answers */
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%d", port);
    const char *args[] = {"--port", port_arg, "--timeout", "300", "school", "36.16", "120.41",
                          NULL};
    struct run r = run_cli_env(NULL, NULL, args);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "no answer in time"));
    assert_string_equal(r.out, "");
    run_free(&r);
    close(fd);
}

/* Serves one connection: reads the request line, writes `answer`, closes. */
static pid_t serve_once(int listen_fd, const char *answer) {
    pid_t pid = fork();
    if (pid == 0) {
        int c = accept(listen_fd, NULL, NULL);
        char buf[512];
        if (c < 0 || read(c, buf, sizeof buf) <= 0) {
            _exit(1);
        }
        size_t n = strlen(answer);
        if (write(c, answer, n) != (ssize_t)n) {
            _exit(1);
        }
        close(c);
        _exit(0);
    }
    return pid;
}

static void test_answer_cut_short_or_malformed_exits_2(void **state) {
    (void)state;
    static const struct {
        const char *answer;
        const char *says;
    } cases[] = {
        {"OK 3\na\tschool\tn\t1\t2\t3\n", "closed in the middle of an answer"},
        {"", "connection closed by the server"},
        {"HTTP/1.1 400 Bad Request\r\n\r\n", "malformed answer"},
        {"OK -1\n", "malformed answer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int port = 0;
        int fd = listen_socket(&port);
        pid_t server = serve_once(fd, cases[i].answer);
        char port_arg[16];
        snprintf(port_arg, sizeof port_arg, "%d", port);
        const char *args[] = {"--port", port_arg, "school", "36.16", "120.41", NULL};
        struct run r = run_cli_env(NULL, NULL, args);
        assert_int_equal(r.status, 2);
        assert_non_null(strstr(r.err, cases[i].says));
        assert_string_equal(r.out, "");
        run_free(&r);
        int status = 0;
        assert_int_equal(waitpid(server, &status, 0), server);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        close(fd);
    }
}

/* ---- Against the bundled dataset: the CLI says what the protocol says --------- */

#define LC_LAT "36.1602"
#define LC_LON "120.4105"

/* The daemon's whole answer to `line` on a fresh connection, as received
 * (header and records, each line with its "\n"), after `prelude` (e.g.
 * "FORMAT geojson") when not NULL, whose answer is dropped. Read by hand:
 * "OK n" and n lines, or one line. */
static char *protocol_answer(const char *prelude, const char *line) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    FILE *in = fdopen(fd, "r");
    assert_non_null(in);
    char request[1024];
    int len = snprintf(request, sizeof request, "%s%s%s\n", prelude ? prelude : "",
                       prelude ? "\n" : "", line);
    assert_true(len > 0 && (size_t)len < sizeof request);
    its_send_all(fd, request, (size_t)len);
    char *out = NULL;
    size_t out_len = 0;
    FILE *collect = open_memstream(&out, &out_len);
    char *buf = NULL;
    size_t cap = 0;
    for (int answer = prelude ? 0 : 1; answer < 2; answer++) {
        ssize_t n = getline(&buf, &cap, in);
        assert_true(n > 0 && buf[n - 1] == '\n');
        long records = strncmp(buf, "OK ", 3) == 0 ? strtol(buf + 3, NULL, 10) : 0;
        if (answer == 1) {
            fputs(buf, collect);
        }
        for (long i = 0; i < records; i++) {
            n = getline(&buf, &cap, in);
            assert_true(n > 0 && buf[n - 1] == '\n');
            if (answer == 1) {
                fputs(buf, collect);
            }
        }
    }
    free(buf);
    fclose(collect);
    fclose(in);
    return out;
}

/* The records of an answer: what follows its first line. */
static const char *records_of(const char *answer) {
    return strchr(answer, '\n') + 1;
}

/* Runs the CLI with `args` and, through --tsv, checks that it prints exactly
 * the records the daemon answers to `line`, with exit status 0 when there
 * are some and 1 when there are none. Returns the number of records. */
static size_t check_tsv_matches(const char *const *args, const char *line) {
    const char *argv[24] = {"--tsv"};
    size_t n = 1;
    for (; args[n - 1] != NULL; n++) {
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;
    char *want = protocol_answer(NULL, line);
    struct run r = run_cli(argv);
    if (strcmp(r.out, records_of(want)) != 0 || strcmp(r.err, "") != 0) {
        fail_msg("nearest --tsv for '%s' printed:\n%s(stderr: %s)\nthe daemon answered:\n%s",
                 line, r.out, r.err, want);
    }
    size_t records = (size_t)strtol(want + 3, NULL, 10);
    assert_int_equal(r.status, records > 0 ? 0 : 1);
    run_free(&r);
    free(want);
    return records;
}

static void test_where_conditions_become_protocol_where(void **state) {
    (void)state;
    static const struct {
        const char *args[12];
        const char *line;
    } cases[] = {
        {{"--where", "stars>=4", "--where", "dementia=yes", "elder_care", LC_LAT, LC_LON, "-k",
          "7", NULL},
         "NEAREST elder_care " LC_LAT " " LC_LON " K 7 WHERE stars >= 4 WHERE dementia = yes"},
        {{"elder_care", LC_LAT, LC_LON, "--where", "beds<100", NULL},
         "NEAREST elder_care " LC_LAT " " LC_LON " WHERE beds < 100"},
        {{"elder_care", LC_LAT, LC_LON, "--where= beds > 200 ", NULL},
         "NEAREST elder_care " LC_LAT " " LC_LON " WHERE beds > 200"},
        {{"--where", "stars<=3", "elder_care", LC_LAT, LC_LON, NULL},
         "NEAREST elder_care " LC_LAT " " LC_LON " WHERE stars <= 3"},
        {{"--where", "level!=primary", "school", LC_LAT, LC_LON, "-k", "4", NULL},
         "NEAREST school " LC_LAT " " LC_LON " K 4 WHERE level != primary"},
        {{"--where", "name=青岛市李沧区泰塘小学", "*", LC_LAT, LC_LON, NULL},
         "NEAREST * " LC_LAT " " LC_LON " WHERE name = 青岛市李沧区泰塘小学"},
        {{"--where", "free>100", "--where", "price<=3", "parking", LC_LAT, LC_LON, NULL},
         "NEAREST parking " LC_LAT " " LC_LON " WHERE free > 100 WHERE price <= 3"},
    };
    size_t nonempty = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nonempty += check_tsv_matches(cases[i].args, cases[i].line) > 0;
    }
    assert_true(nonempty >= 6); /* the filters select something, so the check has teeth */

    /* The table shows the filtered attributes, with the ids in the answer's order. */
    char *want = protocol_answer(NULL, cases[0].line);
    struct run r = run_cli(cases[0].args);
    assert_int_equal(r.status, 0);
    char *lines[32];
    size_t n = split_lines(r.out, lines, 32);
    assert_non_null(strstr(lines[0], "stars"));
    assert_non_null(strstr(lines[0], "dementia"));
    char *save = NULL;
    size_t row = 1;
    strtok_r(want, "\n", &save);
    for (char *rec = strtok_r(NULL, "\n", &save); rec; rec = strtok_r(NULL, "\n", &save)) {
        assert_true(row < n);
        *strchr(rec, '\t') = '\0';
        assert_string_equal(lines[row] + strlen(lines[row]) - strlen(rec), rec);
        assert_non_null(strstr(lines[row], "true"));
        row++;
    }
    assert_int_equal(row, n);
    run_free(&r);
    free(want);
}

static void test_open_becomes_protocol_open(void **state) {
    (void)state;
    const char *at[] = {"--open", "2026-12-01T11:30", "meal_point", LC_LAT, LC_LON, "-k",
                        "8", NULL};
    assert_true(check_tsv_matches(at, "NEAREST meal_point " LC_LAT " " LC_LON
                                      " K 8 OPEN 2026-12-01T11:30") > 0);
    const char *night[] = {"--open=2026-12-01T03:00", "meal_point", LC_LAT, LC_LON, NULL};
    check_tsv_matches(night, "NEAREST meal_point " LC_LAT " " LC_LON " OPEN 2026-12-01T03:00");
    /* "now" moves: compare with the daemon's answer just before and just after. */
    const char *now[] = {"--tsv", "--open", "now", "parking", LC_LAT, LC_LON, "-k", "10", NULL};
    const char *line = "NEAREST parking " LC_LAT " " LC_LON " K 10 OPEN now";
    char *before = protocol_answer(NULL, line);
    struct run r = run_cli(now);
    char *after = protocol_answer(NULL, line);
    assert_true(strcmp(r.out, records_of(before)) == 0 || strcmp(r.out, records_of(after)) == 0);
    run_free(&r);
    free(before);
    free(after);
}

static void test_radius_and_maxdist_become_protocol_options(void **state) {
    (void)state;
    const char *radius[] = {"radius", "school", LC_LAT, LC_LON, "1500", NULL};
    assert_true(check_tsv_matches(radius, "RADIUS school " LC_LAT " " LC_LON " 1500") > 3);
    const char *limit[] = {"radius", "*", LC_LAT, LC_LON, "900", "-k", "3", NULL};
    assert_int_equal(check_tsv_matches(limit, "RADIUS * " LC_LAT " " LC_LON " 900 LIMIT 3"), 3);
    const char *filtered[] = {"radius", "elder_care", LC_LAT, LC_LON, "3000", "--where",
                              "stars>=4", "--open", "2026-12-01T11:30", NULL};
    check_tsv_matches(filtered, "RADIUS elder_care " LC_LAT " " LC_LON
                                " 3000 WHERE stars >= 4 OPEN 2026-12-01T11:30");
    const char *maxdist[] = {"--maxdist", "800", "*", LC_LAT, LC_LON, "-k", "50", NULL};
    size_t within = check_tsv_matches(maxdist, "NEAREST * " LC_LAT " " LC_LON " K 50 MAXDIST 800");
    assert_true(within > 0 && within < 50);
    const char *none[] = {"--maxdist", "1", "parking", LC_LAT, LC_LON, NULL};
    assert_int_equal(check_tsv_matches(none, "NEAREST parking " LC_LAT " " LC_LON " MAXDIST 1"),
                     0);

    /* The table of a radius answer: ids in order, distances for people. */
    char *want = protocol_answer(NULL, "RADIUS school " LC_LAT " " LC_LON " 1500");
    const char *table[] = {"radius", "school", LC_LAT, LC_LON, "1500", NULL};
    struct run r = run_cli(table);
    assert_int_equal(r.status, 0);
    char *lines[128];
    size_t n = split_lines(r.out, lines, 128);
    char *save = NULL;
    size_t row = 1;
    strtok_r(want, "\n", &save);
    for (char *rec = strtok_r(NULL, "\n", &save); rec; rec = strtok_r(NULL, "\n", &save)) {
        char *f[6];
        char *fsave = NULL;
        for (size_t k = 0; k < 6; k++) {
            f[k] = strtok_r(k ? NULL : rec, "\t", &fsave);
        }
        char shown[32];
        cli_format_distance(true, strtod(f[5], NULL), shown, sizeof shown);
        assert_true(row < n);
        assert_non_null(strstr(lines[row], shown));
        assert_string_equal(lines[row] + strlen(lines[row]) - strlen(f[0]), f[0]);
        row++;
    }
    assert_int_equal(row, n);
    run_free(&r);
    free(want);
}

static void test_crs_reads_and_writes_positions_in_that_system(void **state) {
    (void)state;
    const char *gcj[] = {"--crs", "gcj02", "elder_care", LC_LAT, LC_LON, "-k", "3", NULL};
    check_tsv_matches(gcj, "NEAREST elder_care " LC_LAT " " LC_LON " K 3 CRS gcj02");
    const char *serves[] = {"--crs", "bd09", "serves", LC_LAT, LC_LON, NULL};
    check_tsv_matches(serves, "SERVES " LC_LAT " " LC_LON " CRS bd09");
    /* Not the WGS84 answer. */
    char *wgs = protocol_answer(NULL, "NEAREST elder_care " LC_LAT " " LC_LON " K 3");
    char *gcj02 = protocol_answer(NULL, "NEAREST elder_care " LC_LAT " " LC_LON " K 3 CRS gcj02");
    assert_string_not_equal(wgs, gcj02);
    free(wgs);
    free(gcj02);
}

static void test_json_and_geojson_print_the_daemons_answer(void **state) {
    (void)state;
    static const struct {
        const char *args[10];
        const char *format;
        const char *line;
        int status;
    } cases[] = {
        {{"--geojson", "meal_point", LC_LAT, LC_LON, "-k", "3", NULL}, "FORMAT geojson",
         "NEAREST meal_point " LC_LAT " " LC_LON " K 3", 0},
        {{"--geojson", "--crs", "gcj02", "school", LC_LAT, LC_LON, NULL}, "FORMAT geojson",
         "NEAREST school " LC_LAT " " LC_LON " CRS gcj02", 0},
        {{"--geojson", "serves", LC_LAT, LC_LON, NULL}, "FORMAT geojson",
         "SERVES " LC_LAT " " LC_LON, 0},
        {{"--json", "radius", "parking", LC_LAT, LC_LON, "1", NULL}, "FORMAT json",
         "RADIUS parking " LC_LAT " " LC_LON " 1", 1},
        {{"--geojson", "--where", "stars>=9", "elder_care", LC_LAT, LC_LON, NULL},
         "FORMAT geojson", "NEAREST elder_care " LC_LAT " " LC_LON " WHERE stars >= 9", 1},
        {{"--json", "--raw", "CATEGORIES", NULL}, "FORMAT json", "CATEGORIES", 0},
        {{"--raw", "AREAS street", "--geojson", NULL}, "FORMAT geojson", "AREAS street", 0},
        /* Every polygon of the district in one line, far over 64 KiB. */
        {{"--raw", "AREAS", "--geojson", NULL}, "FORMAT geojson", "AREAS", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *want = protocol_answer(cases[i].format, cases[i].line);
        struct run r = run_cli(cases[i].args);
        if (strcmp(r.out, want) != 0) {
            fail_msg("%s: printed\n%s\nthe daemon answered\n%s", cases[i].line, r.out, want);
        }
        assert_int_equal(r.status, cases[i].status);
        assert_string_equal(r.err, "");
        json_error_t jerr;
        json_t *root = json_loads(r.out, 0, &jerr);
        assert_non_null(root);
        json_decref(root);
        run_free(&r);
        free(want);
    }
}

static void test_serves_table_shows_areas_and_who_serves_them(void **state) {
    (void)state;
    char *want = protocol_answer(NULL, "SERVES " LC_LAT " " LC_LON);
    const char *args[] = {"serves", LC_LAT, LC_LON, NULL};
    struct run r = run_cli(args);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    char *lines[80];
    size_t n = split_lines(r.out, lines, 80);
    assert_true(strncmp(lines[0], "kind", 4) == 0);
    assert_non_null(strstr(lines[0], "served by"));
    size_t row = 1, served_rows = 0;
    char *save = NULL;
    strtok_r(want, "\n", &save);
    for (char *rec = strtok_r(NULL, "\n", &save); rec; rec = strtok_r(NULL, "\n", &save)) {
        /* id kind name parent served_by; empty fields kept. */
        char *f[5];
        char *p = rec;
        for (size_t k = 0; k < 5; k++) {
            f[k] = p;
            p = strchr(p, '\t');
            if (p != NULL) {
                *p++ = '\0';
            } else {
                assert_int_equal(k, 4);
            }
        }
        assert_true(row < n);
        const char *line = lines[row++];
        assert_true(strncmp(line, f[1], strlen(f[1])) == 0); /* kind first */
        assert_non_null(strstr(line, f[2]));
        assert_non_null(strstr(line, f[0]));
        if (*f[4] == '\0') {
            assert_string_equal(line + strlen(line) - 1, "-");
            continue;
        }
        served_rows++;
        for (char *id_save = NULL, *id = strtok_r(f[4], ";", &id_save); id;
             id = strtok_r(NULL, ";", &id_save)) {
            char get[128], named[512];
            snprintf(get, sizeof get, "GET %s", id);
            char *facility = protocol_answer(NULL, get);
            char *name = strchr(strchr(records_of(facility), '\t') + 1, '\t') + 1;
            *strchr(name, '\t') = '\0';
            snprintf(named, sizeof named, "%s (%s)", name, id);
            if (strstr(line, named) == NULL) {
                fail_msg("row '%s' does not name %s", line, named);
            }
            free(facility);
        }
    }
    assert_int_equal(row, n);
    assert_true(served_rows >= 3);
    run_free(&r);
    free(want);

    const char *one_kind[] = {"--tsv", "serves", LC_LAT, LC_LON, "community", NULL};
    check_tsv_matches(one_kind + 1, "SERVES " LC_LAT " " LC_LON " community");
    const char *outside[] = {"serves", "0", "0", NULL};
    assert_int_equal(check_tsv_matches(outside, "SERVES 0 0"), 0);
    r = run_cli(outside);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    run_free(&r);
}

/* The CLI's stderr for a request the daemon refuses is its ERR line, as
 * "nearest: CODE: message", and the exit status is 2. */
static void check_daemon_error(const char *const *args, const char *line) {
    char *answer = protocol_answer(NULL, line);
    assert_true(strncmp(answer, "ERR ", 4) == 0);
    char *code = answer + 4;
    char *message = strchr(code, ' ');
    *message++ = '\0';
    char want[700];
    snprintf(want, sizeof want, "nearest: %s: %s", code, message); /* keeps its "\n" */
    struct run r = run_cli(args);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, want);
    run_free(&r);
    free(answer);
}

static void test_daemon_errors_reach_stderr_with_exit_2(void **state) {
    (void)state;
    const char *field[] = {"--where", "nosuch>1", "school", LC_LAT, LC_LON, NULL};
    check_daemon_error(field, "NEAREST school " LC_LAT " " LC_LON " WHERE nosuch > 1");
    const char *kind[] = {"--where", "stars=many", "elder_care", LC_LAT, LC_LON, NULL};
    check_daemon_error(kind, "NEAREST elder_care " LC_LAT " " LC_LON " WHERE stars = many");
    const char *open[] = {"--open", "tomorrow", "parking", LC_LAT, LC_LON, NULL};
    check_daemon_error(open, "NEAREST parking " LC_LAT " " LC_LON " OPEN tomorrow");
    const char *crs[] = {"--crs", "nad27", "parking", LC_LAT, LC_LON, NULL};
    check_daemon_error(crs, "NEAREST parking " LC_LAT " " LC_LON " CRS nad27");
    const char *radius[] = {"radius", "school", LC_LAT, LC_LON, "-5", NULL};
    check_daemon_error(radius, "RADIUS school " LC_LAT " " LC_LON " -5");
    const char *maxdist[] = {"--maxdist", "far", "school", LC_LAT, LC_LON, NULL};
    check_daemon_error(maxdist, "NEAREST school " LC_LAT " " LC_LON " MAXDIST far");
    const char *serves[] = {"serves", LC_LAT, LC_LON, "planet", NULL};
    check_daemon_error(serves, "SERVES " LC_LAT " " LC_LON " planet");
}

static void test_bad_combinations_are_refused_before_connecting(void **state) {
    (void)state;
    static const char *const cases[][14] = {
        {"serves", LC_LAT, LC_LON, "-k", "3", NULL},
        {"serves", LC_LAT, LC_LON, "--where", "stars>=4", NULL},
        {"serves", LC_LAT, LC_LON, "--open", "now", NULL},
        {"serves", LC_LAT, LC_LON, "street", "extra", NULL},
        {"serves", LC_LAT, NULL},
        {"radius", "school", LC_LAT, LC_LON, "--maxdist", "5", "100", NULL},
        {"radius", "school", LC_LAT, LC_LON, NULL},
        {"--json", "--tsv", "school", LC_LAT, LC_LON, NULL},
        {"--json", "--geojson", "school", LC_LAT, LC_LON, NULL},
        {"--tsv", "--raw", "PING", NULL},
        {"--raw", "PING", "--where", "stars>=4", NULL},
        {"--where", "stars=>4", "elder_care", LC_LAT, LC_LON, NULL},
        {"--where", "stars", "elder_care", LC_LAT, LC_LON, NULL},
        {"--where", NULL},
        {"--where", "a=1", "--where", "a=1", "--where", "a=1", "--where", "a=1", "--where",
         "a=1", "--where", "a=1", NULL},
    };
    /* A port where nothing listens: reaching the network would say so. */
    char port[16];
    snprintf(port, sizeof port, "%d", its_free_port());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r = run_cli_env(NULL, port, cases[i]);
        if (r.status != 2 || strncmp(r.err, "nearest: ", 9) != 0 ||
            strstr(r.err, "connect") != NULL || strcmp(r.out, "") != 0) {
            fail_msg("case %zu: status %d, stderr '%s'", i, r.status, r.err);
        }
        run_free(&r);
    }
    /* Nine conditions: one more than the server takes. */
    const char *nine[24] = {"elder_care", LC_LAT, LC_LON};
    for (size_t i = 0; i < 9; i++) {
        nine[3 + 2 * i] = "--where";
        nine[4 + 2 * i] = "stars>=1";
    }
    struct run r = run_cli_env(NULL, port, nine);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "at most 8"));
    run_free(&r);
}

static void test_interactive_help_is_the_servers_help(void **state) {
    (void)state;
    char *want = protocol_answer(NULL, "HELP");
    char port[16];
    snprintf(port, sizeof port, "%d", fx->port);
    const char *args[] = {"-i", NULL};
    struct run r = run_cli_input(NULL, port, "help\nSERVES " LC_LAT " " LC_LON "\n", args);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    size_t commands = 0;
    char *save = NULL;
    const char *at = r.out;
    strtok_r(want, "\n", &save);
    for (char *rec = strtok_r(NULL, "\n", &save); rec; rec = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(rec, '\t');
        assert_non_null(tab);
        *tab = '\0';
        char shown[1024];
        snprintf(shown, sizeof shown, "%s\n    %s\n", rec, tab + 1);
        const char *found = strstr(at, shown);
        if (found == NULL) {
            fail_msg("the prompt's HELP does not show, in order:\n%s", shown);
        }
        at = found + strlen(shown);
        commands++;
    }
    assert_true(commands >= 16);
    /* SERVES at the prompt shows the areas table after the help. */
    assert_non_null(strstr(at, "kind "));
    assert_non_null(strstr(at, "cm-078"));
    run_free(&r);
    free(want);
}

static void test_help_documents_every_option_and_command(void **state) {
    (void)state;
    const char *args[] = {"--help", NULL};
    struct run r = run_cli(args);
    assert_int_equal(r.status, 0);
    static const char *const words[] = {
        "--where", "--open", "--maxdist", "--crs", "gcj02", "--geojson", "--json", "--tsv",
        "--raw", "-k", "--host", "--port", "--timeout", "-i, --interactive", "NEAREST_HOST",
        "NEAREST_PORT", "radius <category>", "serves <lat>", ">= <= != = < >", "Exit status",
        "HELP",
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strstr(r.out, words[i]) == NULL) {
            fail_msg("--help does not mention '%s'", words[i]);
        }
    }
    run_free(&r);
}

/* ---- A terminal ------------------------------------------------------------------ */

/* What a pseudo-terminal's reader has seen of the CLI's output. */
struct screen {
    char text[1 << 16];
    size_t len;
    size_t mark;    /* where the next expect() starts looking */
};

/* Reads the terminal until `needle` appears after the mark (then moves the
 * mark past it) or timeout_ms pass. Returns whether it appeared. */
static bool expect(int master, struct screen *s, const char *needle, int timeout_ms) {
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        const char *at = strstr(s->text + s->mark, needle);
        if (at != NULL) {
            s->mark = (size_t)(at - s->text) + strlen(needle);
            return true;
        }
        struct pollfd p = {.fd = master, .events = POLLIN};
        if (poll(&p, 1, 10) > 0) {
            ssize_t n = read(master, s->text + s->len, sizeof s->text - s->len - 1);
            if (n <= 0) {
                return false; /* the other side is gone */
            }
            s->len += (size_t)n;
            s->text[s->len] = '\0';
        }
    }
    return false;
}

/* Runs `nearest` with no arguments on a new pseudo-terminal, as a person
 * would start it, with its history in `history`. */
static pid_t start_on_terminal(int *master, const char *history) {
    char port[16];
    snprintf(port, sizeof port, "%d", fx->port);
    pid_t pid = forkpty(master, NULL, NULL, NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        unsetenv("NEAREST_HOST");
        setenv("NEAREST_PORT", port, 1);
        setenv("NEAREST_HISTORY", history, 1);
        execl(NEAREST_CLI_BIN, NEAREST_CLI_BIN, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Types keys once the prompt shows and the line editor has the terminal:
 * libedit prints the prompt and then leaves canonical mode; keys typed
 * before that are taken by the terminal's own line discipline instead. */
static void type_at_prompt(int master, struct screen *s, const char *prompt, const char *keys) {
    if (!expect(master, s, prompt, 5000)) {
        fail_msg("no prompt '%s'; the terminal shows:\n%s", prompt, s->text);
    }
    struct termios mode;
    int waited = 0;
    while (tcgetattr(master, &mode) == 0 && (mode.c_lflag & ICANON) && waited < 5000) {
        usleep(1000);
        waited++;
    }
    assert_false(mode.c_lflag & ICANON);
    assert_int_equal(write(master, keys, strlen(keys)), (ssize_t)strlen(keys));
}

static int wait_exit(pid_t pid, int master, struct screen *s) {
    for (int waited = 0; waited < 5000; waited += 10) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        /* Keep draining the terminal; once the child has closed it, reads
         * fail at once, so sleep as well. */
        expect(master, s, "\x01never", 10);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail_msg("nearest did not leave; the terminal shows:\n%s", s->text);
    return -1;
}

static void test_terminal_without_arguments_prompts_and_keeps_history(void **state) {
    (void)state;
    char history[160], prompt[64], banner[96];
    snprintf(history, sizeof history, "%s/history", fx->dir);
    snprintf(prompt, sizeof prompt, "127.0.0.1:%d> ", fx->port);
    snprintf(banner, sizeof banner, "Connected to 127.0.0.1:%d.", fx->port);
    unlink(history);

    int master = -1;
    static struct screen s;
    memset(&s, 0, sizeof s);
    pid_t pid = start_on_terminal(&master, history);
    assert_true(expect(master, &s, banner, 5000));
    type_at_prompt(master, &s, prompt, "PING\n");
    assert_true(expect(master, &s, "(empty)", 5000));
    type_at_prompt(master, &s, prompt, "HELP ping\n");
    assert_true(expect(master, &s, "PING\r\n    answers OK 0", 5000));
    type_at_prompt(master, &s, prompt, "\x04"); /* Ctrl-D on an empty line */
    assert_int_equal(wait_exit(pid, master, &s), 0);
    close(master);

    /* The next session recalls the last line with the up arrow and runs it. */
    FILE *h = fopen(history, "r");
    assert_non_null(h);
    fclose(h);
    memset(&s, 0, sizeof s);
    pid = start_on_terminal(&master, history);
    type_at_prompt(master, &s, prompt, "\x1b[A\n");
    assert_true(expect(master, &s, "PING\r\n    answers OK 0", 5000));
    type_at_prompt(master, &s, prompt, "quit\n");
    assert_int_equal(wait_exit(pid, master, &s), 0);
    close(master);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_lists_nearest_ids_in_order),
        cmocka_unit_test(test_default_k_is_five),
        cmocka_unit_test(test_tsv_prints_records_and_table_shows_their_distances),
        cmocka_unit_test(test_nothing_matched_exits_1),
        cmocka_unit_test(test_server_errors_exit_2_with_code_and_message),
        cmocka_unit_test(test_no_daemon_says_cannot_connect_and_exits_2),
        cmocka_unit_test(test_host_and_port_come_from_environment_unless_given),
        cmocka_unit_test(test_raw_prints_the_answer_as_received),
        cmocka_unit_test(test_names_with_quotes_and_spaces_reach_the_server_intact),
        cmocka_unit_test(test_bad_command_lines_exit_2_with_usage_hint),
        cmocka_unit_test(test_negative_coordinates_are_arguments_not_options),
        cmocka_unit_test(test_json_prints_one_object_with_the_oracle_ids),
        cmocka_unit_test(test_interactive_answers_each_line_until_quit),
        cmocka_unit_test(test_silent_server_times_out_with_exit_2),
        cmocka_unit_test(test_answer_cut_short_or_malformed_exits_2),
    };
    const struct CMUnitTest licang_tests[] = {
        cmocka_unit_test(test_where_conditions_become_protocol_where),
        cmocka_unit_test(test_open_becomes_protocol_open),
        cmocka_unit_test(test_radius_and_maxdist_become_protocol_options),
        cmocka_unit_test(test_crs_reads_and_writes_positions_in_that_system),
        cmocka_unit_test(test_json_and_geojson_print_the_daemons_answer),
        cmocka_unit_test(test_serves_table_shows_areas_and_who_serves_them),
        cmocka_unit_test(test_daemon_errors_reach_stderr_with_exit_2),
        cmocka_unit_test(test_bad_combinations_are_refused_before_connecting),
        cmocka_unit_test(test_interactive_help_is_the_servers_help),
        cmocka_unit_test(test_terminal_without_arguments_prompts_and_keeps_history),
        cmocka_unit_test(test_help_documents_every_option_and_command),
    };
    int failed = cmocka_run_group_tests_name("synthetic", tests, group_setup, group_teardown);
    failed += cmocka_run_group_tests_name("licang", licang_tests, licang_setup, group_teardown);
    return failed;
}
