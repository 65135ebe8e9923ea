/* auth.c: the write rule, the token file, constant-time token comparison and
 * the AUTH command.
 *
 * auth_gate() runs before every request, so it stays cheap: one copy of the
 * line (at most PROTO_MAX_LINE_BYTES, on the stack) and one tokenization,
 * the same proto_split() the dispatcher uses, so a quoted or oddly cased
 * "pUt" is recognised exactly as the dispatcher would recognise it. The
 * server calls auth_gate_argv() on the tokens it then dispatches, and so
 * saves that copy and second split (about 1,000 instructions a NEAREST). */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "proto.h"

int auth_token_load(struct auth_policy *p, const char *path, char *err, size_t err_len) {
    int status = -1;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "cannot read token file '%s': %s", path, strerror(errno));
        return -1;
    }
    char line[AUTH_MAX_TOKEN_BYTES + 3]; /* token, "\r\n", NUL */
    if (!fgets(line, sizeof line, f)) {
        snprintf(err, err_len, "token file '%s' is empty", path);
        goto done;
    }
    size_t len = strcspn(line, "\n");
    bool whole_line = line[len] == '\n' || feof(f);
    if (len > 0 && line[len - 1] == '\r') {
        len--;
    }
    if (!whole_line || len > AUTH_MAX_TOKEN_BYTES) {
        snprintf(err, err_len, "token in '%s' is longer than %d bytes", path,
                 AUTH_MAX_TOKEN_BYTES);
        goto done;
    }
    if (len == 0) {
        snprintf(err, err_len, "token file '%s' has an empty first line", path);
        goto done;
    }
    memset(p->token, 0, sizeof p->token);
    memcpy(p->token, line, len);
    p->token_len = len;
    p->has_token = true;
    status = 0;
done:
    explicit_bzero(line, sizeof line);
    fclose(f);
    return status;
}

bool auth_token_matches(const struct auth_policy *p, const char *given, size_t given_len) {
    if (!p->has_token) {
        return false;
    }
    /* Walk the whole token buffer whatever the lengths: given's bytes past
     * its end count as zero, like the padding of p->token, and the lengths
     * are compared too. The volatile keeps the loop from ending early. */
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < AUTH_MAX_TOKEN_BYTES; i++) {
        uint8_t g = i < given_len ? (uint8_t)given[i] : 0;
        diff |= (uint8_t)(g ^ (uint8_t)p->token[i]);
    }
    size_t len_diff = given_len ^ p->token_len;
    return ((size_t)diff | len_diff) == 0; /* one test: no early exit on either part */
}

bool auth_addr_is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *b = in6->sin6_addr.s6_addr;
        static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, v4_mapped, sizeof v4_mapped) == 0) {
            return b[12] == 127;
        }
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

/* Counts one request answered here, in total and for its command row. */
static void count(struct cmd_stats *stats, int row, bool error) {
    if (!stats) {
        return;
    }
    stats->requests++;
    stats->errors += error;
    if (row >= 0 && row < CMD_MAX_COMMANDS) {
        stats->requests_by_cmd[row]++;
        stats->errors_by_cmd[row] += error;
    }
}

/* Answers one ERR DENIED, counted as a request and an error. */
static enum auth_verdict deny(struct reply *out, struct cmd_stats *stats, int row,
                              enum auth_verdict verdict, const char *message) {
    reply_err(out, CMD_ERR_DENIED, "%s", message);
    count(stats, row, true);
    return verdict;
}

/* ---- The daemon-wide limit on wrong tokens ---------------------------------------- */

void auth_limiter_init(struct auth_limiter *l, int64_t now_ms) {
    l->tokens = AUTH_FAIL_BURST;
    l->last_ms = now_ms;
    l->logged_empty = false;
    pthread_mutex_init(&l->lock, NULL); /* default attributes: cannot fail on Linux */
}

bool auth_limiter_allows(struct auth_limiter *l, int64_t now_ms) {
    if (now_ms > l->last_ms) {
        l->tokens += (double)(now_ms - l->last_ms) * AUTH_FAIL_PER_SECOND / 1000.0;
        if (l->tokens > AUTH_FAIL_BURST) {
            l->tokens = AUTH_FAIL_BURST;
        }
        l->last_ms = now_ms;
    }
    if (l->tokens >= 1.0) {
        l->logged_empty = false;
        return true;
    }
    return false;
}

void auth_limiter_charge(struct auth_limiter *l) {
    l->tokens = l->tokens >= 1.0 ? l->tokens - 1.0 : 0.0;
}

static int64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- AUTH ------------------------------------------------------------------------ */

static enum auth_verdict answer_auth(const struct auth_policy *p, struct auth_conn *c,
                                     const char *token, struct reply *out,
                                     struct cmd_stats *stats, int row, const char *peer) {
    if (!p->has_token) {
        return deny(out, stats, row, AUTH_ANSWERED,
                    "no token is configured (without one, writes are accepted from "
                    "loopback clients only)");
    }
    /* The bucket is shared by every loop thread: one lock covers the check,
     * the charge of a wrong token and the log-once flag. */
    struct auth_limiter *l = c->limiter;
    bool matches = auth_token_matches(p, token, strlen(token));
    bool refused = false, log_empty = false;
    if (l) {
        pthread_mutex_lock(&l->lock);
        refused = !auth_limiter_allows(l, monotonic_ms());
        if (refused && !l->logged_empty) {
            l->logged_empty = log_empty = true;
        }
        if (!refused && !matches) {
            auth_limiter_charge(l);
        }
        pthread_mutex_unlock(&l->lock);
    }
    if (refused) {
        if (log_empty) {
            fprintf(stderr, "nearestd: too many wrong AUTH tokens daemon-wide (last from %s); "
                            "AUTH is refused for now\n", peer ? peer : "?");
        }
        reply_err(out, CMD_ERR_BUSY, "too many wrong AUTH tokens lately; try again in a "
                                     "second");
        count(stats, row, true);
        return AUTH_ANSWERED;
    }
    if (matches) {
        c->authed = true;
        reply_ok(out, 0);
        count(stats, row, false);
        return AUTH_ANSWERED;
    }
    c->failures++;
    fprintf(stderr, "nearestd: wrong AUTH token from %s (%d of %d on this connection)\n",
            peer ? peer : "?", c->failures, AUTH_MAX_FAILURES);
    if (c->failures >= AUTH_MAX_FAILURES) {
        char msg[96];
        snprintf(msg, sizeof msg, "wrong token; closing after %d wrong tokens",
                 AUTH_MAX_FAILURES);
        return deny(out, stats, row, AUTH_CLOSE, msg);
    }
    return deny(out, stats, row, AUTH_ANSWERED, "wrong token");
}

enum auth_verdict auth_gate(const struct auth_policy *p, struct auth_conn *c, const char *line,
                            size_t len, struct reply *out, struct cmd_stats *stats,
                            const char *peer, int *cmd_row) {
    char copy[PROTO_MAX_LINE_BYTES + 1];
    int unused_row;
    cmd_row = cmd_row ? cmd_row : &unused_row;
    *cmd_row = -1;
    if (len >= sizeof copy) {
        /* The reader never hands out such a line; refuse rather than guess. */
        reply_err(out, CMD_ERR_LIMIT, "request line longer than %d bytes",
                  PROTO_MAX_LINE_BYTES);
        if (stats) {
            stats->requests++;
            stats->errors++;
        }
        return AUTH_ANSWERED;
    }
    if (memchr(line, '\0', len)) {
        /* The tokenizer would end a token at it, so "36.1\0junk" would read
         * as 36.1: refuse the line instead of running part of it. */
        reply_err(out, CMD_ERR_SYNTAX, "request holds a NUL byte");
        if (stats) {
            stats->requests++;
            stats->errors++;
        }
        return AUTH_ANSWERED;
    }
    memcpy(copy, line, len);
    copy[len] = '\0';
    char *argv[PROTO_MAX_ARGS];
    size_t argc = 0;
    enum auth_verdict verdict = AUTH_PASS; /* cmd_execute() answers a syntax error */
    if (proto_split(copy, len, argv, PROTO_MAX_ARGS, &argc) == 0 && argc > 0) {
        verdict = auth_gate_argv(p, c, argc, argv, out, stats, peer, cmd_row);
    }
    explicit_bzero(copy, len); /* the line may hold the token */
    return verdict;
}

enum auth_verdict auth_gate_argv(const struct auth_policy *p, struct auth_conn *c, size_t argc,
                                 char **argv, struct reply *out, struct cmd_stats *stats,
                                 const char *peer, int *cmd_row) {
    int unused_row;
    cmd_row = cmd_row ? cmd_row : &unused_row;
    const struct cmd_spec *spec = cmd_lookup(argv[0]);
    size_t n_specs = 0;
    int row = spec ? (int)(spec - cmd_table(&n_specs)) : -1;
    *cmd_row = row;
    enum auth_verdict verdict = AUTH_PASS;
    if (!spec) {
        verdict = AUTH_PASS;
    } else if (spec->handler == auth_handle_command) {
        if (argc == 2) {
            verdict = answer_auth(p, c, argv[1], out, stats, row, peer);
        }
    } else if (spec->writes) {
        if (p->read_only) {
            verdict = deny(out, stats, row, AUTH_ANSWERED,
                           "read-only: the daemon listens on a non-loopback address without "
                           "--auth-token-file");
        } else if (p->has_token && !c->authed) {
            verdict = deny(out, stats, row, AUTH_ANSWERED, "writes need AUTH <token> first");
        } else if (!p->has_token && !c->loopback) {
            verdict = deny(out, stats, row, AUTH_ANSWERED,
                           "writes are accepted from loopback clients only (no token is "
                           "configured)");
        }
    }
    return verdict;
}

/* The AUTH row of commands.def. The server answers AUTH in auth_gate()
 * before dispatching, so this runs only where no server is in front of the
 * command layer (tests/test_commands.c), which has no token to check. */
int auth_handle_command(struct cmd_call *call) {
    reply_err(call->out, CMD_ERR_DENIED, "AUTH is answered by the server, not this session");
    return CMD_ERR_DENIED;
}
