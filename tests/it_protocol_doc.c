/* it_protocol_doc.c: every example in PROTOCOL.md, run against a live daemon.
 *
 * An example is an indented block (four spaces) of lines "> request" and
 * "< expected answer line"; the lines after a request, up to the next
 * request, are its whole answer. A "< ..." line means "and more lines": the
 * lines before it are compared and the rest of the answer is skipped. Each
 * block runs on a new connection, so CRS and FORMAT set in one block do not
 * leak into the next, but blocks run in document order on one daemon, so a
 * PUT shown in one block is there for the SET of a later one. The daemon
 * serves the bundled dataset (--init into a temporary directory), listens
 * on loopback and has no token, as the document's examples assume. Every
 * disagreement is listed with its line number, then the test fails. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "it_support.h"

#define WAIT_MS 10000
#define MAX_LINES 4096

static char dir[256];
static pid_t daemon_pid = -1;
static int daemon_port;

static int dial(void) {
    return its_dial(daemon_port);
}

/* A buffered line reader. */
struct conn {
    int fd;
    size_t len;
    char buf[1 << 16];
};

/* Reads one line without its "\n" into a malloc'ed string; NULL at EOF. */
static char *read_line(struct conn *c) {
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            char *line = strndup(c->buf, n);
            memmove(c->buf, c->buf + n + 1, c->len - n - 1);
            c->len -= n + 1;
            return line;
        }
        if (c->len == sizeof c->buf) {
            return NULL;
        }
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, WAIT_MS) != 1) {
            return NULL;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (n <= 0) {
            return NULL;
        }
        c->len += (size_t)n;
    }
}

/* Reads one whole answer into lines[]; returns its line count, or 0 when
 * the connection ended or timed out. */
static size_t read_answer(struct conn *c, char **lines, size_t max) {
    char *first = read_line(c);
    if (!first) {
        return 0;
    }
    lines[0] = first;
    size_t n = 0;
    if (strncmp(first, "OK ", 3) == 0) {
        n = strtoul(first + 3, NULL, 10);
    }
    size_t got = 1;
    for (size_t i = 0; i < n && got < max; i++) {
        char *line = read_line(c);
        if (!line) {
            break;
        }
        lines[got++] = line;
    }
    return got;
}

/* The examples, as read from the document. */
struct step {
    int doc_line;          /* of the request, 1-based */
    int block;             /* examples of one block share a connection */
    char *request;
    size_t n_expected;
    char **expected;
};

static struct step *steps;
static size_t n_steps;

static void parse_doc(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char line[8192];
    int doc_line = 0, block = 0;
    bool in_block = false;
    struct step *cur = NULL;
    while (fgets(line, sizeof line, f)) {
        doc_line++;
        line[strcspn(line, "\n")] = '\0';
        bool is_req = strncmp(line, "    > ", 6) == 0;
        bool is_resp = strncmp(line, "    < ", 6) == 0 || strcmp(line, "    <") == 0;
        if (!is_req && !is_resp) {
            in_block = false;
            cur = NULL;
            continue;
        }
        if (!in_block) {
            block++;
            in_block = true;
        }
        if (is_req) {
            steps = realloc(steps, (n_steps + 1) * sizeof *steps);
            assert_non_null(steps);
            cur = &steps[n_steps++];
            *cur = (struct step){.doc_line = doc_line, .block = block,
                                 .request = strdup(line + 6)};
        } else {
            if (!cur) {
                fail_msg("PROTOCOL.md:%d: an answer line with no request before it", doc_line);
            }
            cur->expected = realloc(cur->expected, (cur->n_expected + 1) * sizeof(char *));
            assert_non_null(cur->expected);
            cur->expected[cur->n_expected++] = strdup(line[5] ? line + 6 : "");
        }
    }
    fclose(f);
}

/* Compares one answer with its example; appends a description to report. */
static bool answer_matches(const struct step *s, char **got, size_t n_got, char *report,
                           size_t report_len) {
    size_t n_cmp = s->n_expected;
    bool prefix_only = false;
    for (size_t i = 0; i < s->n_expected; i++) {
        if (strcmp(s->expected[i], "...") == 0) {
            n_cmp = i;
            prefix_only = true;
            break;
        }
    }
    bool ok = n_got > 0 && (prefix_only ? n_got >= n_cmp : n_got == n_cmp);
    for (size_t i = 0; ok && i < n_cmp; i++) {
        ok = strcmp(got[i], s->expected[i]) == 0;
    }
    if (!ok) {
        size_t used = strlen(report);
        used += (size_t)snprintf(report + used, report_len - used,
                                 "PROTOCOL.md:%d: %s\n  documented:\n", s->doc_line,
                                 s->request);
        for (size_t i = 0; i < s->n_expected && used < report_len; i++) {
            used += (size_t)snprintf(report + used, report_len - used, "    < %s\n",
                                     s->expected[i]);
        }
        used += (size_t)snprintf(report + used, report_len - used, "  daemon:\n");
        for (size_t i = 0; i < n_got && used < report_len; i++) {
            used += (size_t)snprintf(report + used, report_len - used, "    < %s\n", got[i]);
        }
    }
    return ok;
}

static void test_every_protocol_md_example_matches_the_daemon(void **state) {
    (void)state;
    parse_doc(NEARESTD_PROTOCOL_MD);
    assert_true(n_steps >= 10); /* the document shows at least this many */
    static char report[1 << 16];
    report[0] = '\0';
    size_t failures = 0;
    struct conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fd = -1;
    int block = 0;
    for (size_t i = 0; i < n_steps; i++) {
        const struct step *s = &steps[i];
        if (s->block != block) {
            if (c->fd >= 0) {
                close(c->fd);
            }
            c->fd = dial();
            c->len = 0;
            assert_true(c->fd >= 0);
            block = s->block;
        }
        char req[8200];
        int len = snprintf(req, sizeof req, "%s\n", s->request);
        assert_int_equal(send(c->fd, req, (size_t)len, MSG_NOSIGNAL), len);
        char *got[MAX_LINES];
        size_t n_got = read_answer(c, got, MAX_LINES);
        if (!answer_matches(s, got, n_got, report, sizeof report)) {
            failures++;
        }
        for (size_t k = 0; k < n_got; k++) {
            free(got[k]);
        }
    }
    close(c->fd);
    free(c);
    if (failures > 0) {
        fail_msg("%zu of %zu examples disagree with the daemon:\n%s", failures, n_steps,
                 report);
    }
}

static int group_setup(void **state) {
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof dir, "/tmp/it_protocol_doc.XXXXXX");
    if (!mkdtemp(dir)) {
        return -1;
    }
    char db[320], log_path[320], listen[64];
    snprintf(db, sizeof db, "%s/nearestd.db", dir);
    snprintf(log_path, sizeof log_path, "%s/nearestd.log", dir);
    daemon_port = its_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", daemon_port);
    const char *args[] = {"--db", db, "--init", "--dataset", NEARESTD_DATASET_DIR,
                          "--listen", listen, NULL};
    daemon_pid = its_spawn(NEARESTD_BIN, log_path, args);
    int fd = its_wait_ready_within(daemon_pid, daemon_port, 3 * WAIT_MS);
    if (fd < 0) {
        its_stop(daemon_pid);
        daemon_pid = -1;
        return -1;
    }
    close(fd);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    its_stop(daemon_pid);
    for (size_t i = 0; i < n_steps; i++) {
        free(steps[i].request);
        for (size_t k = 0; k < steps[i].n_expected; k++) {
            free(steps[i].expected[k]);
        }
        free(steps[i].expected);
    }
    free(steps);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_protocol_md_example_matches_the_daemon),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
