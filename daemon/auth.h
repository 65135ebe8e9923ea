/* auth.h: who may write, and the AUTH command.
 *
 * nearestd answers queries to anyone who can connect, but PUT, SET and DEL
 * (the commands.def rows marked `writes`) change the database, so the server
 * asks this module before it runs any request:
 *
 *   - with a token configured (--auth-token-file), a connection may write
 *     once it has sent `AUTH <token>`; the comparison takes the same time
 *     whatever the bytes, so timing tells nothing about the token;
 *   - without a token, only loopback clients (127.0.0.0/8, ::1, and IPv4
 *     loopback mapped into IPv6) may write;
 *   - a daemon listening on a non-loopback address without a token is
 *     read-only: every write is refused, loopback clients included.
 *
 * Refusals are ERR DENIED. A wrong token is logged (one line on stderr, the
 * peer's address, never the token) and a connection is closed at its
 * AUTH_MAX_FAILURES-th wrong token, so guessing costs a TCP handshake per
 * three tries. Across all connections, wrong tokens draw on one token bucket
 * (struct auth_limiter: AUTH_FAIL_BURST at once, then AUTH_FAIL_PER_SECOND):
 * while it is empty every AUTH, right or wrong, is answered ERR BUSY without
 * being compared, so many connections guess no faster than one. The price is
 * that a guesser can keep honest clients from authenticating while it
 * guesses; they get ERR BUSY, not a wrong verdict, and may retry. Nothing
 * here touches a socket: the server hands in the request line and the peer's
 * address, and tests call the functions alone. */
#ifndef NEARESTD_AUTH_H
#define NEARESTD_AUTH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "cmd.h"
#include "reply.h"

#define AUTH_MAX_TOKEN_BYTES 256 /* longest token a token file may hold */
#define AUTH_MAX_FAILURES 3      /* wrong tokens a connection may send; it is closed at this one */
#define AUTH_FAIL_BURST 20       /* wrong tokens the whole daemon absorbs at once ... */
#define AUTH_FAIL_PER_SECOND 2   /* ... and then per second */

/* The server-wide rule, set at start and read-only afterwards. */
struct auth_policy {
    bool has_token;                         /* --auth-token-file was given */
    size_t token_len;                       /* 1..AUTH_MAX_TOKEN_BYTES */
    char token[AUTH_MAX_TOKEN_BYTES];       /* not NUL-terminated; zero-padded */
    bool read_only;                         /* non-loopback listener without a token */
};

/* The daemon-wide bucket of wrong tokens. Start it with auth_limiter_init(). */
struct auth_limiter {
    double tokens;                          /* wrong tokens allowed now, 0..AUTH_FAIL_BURST */
    int64_t last_ms;                        /* when tokens was last refilled */
    bool logged_empty;                      /* the log said it is empty; reset on refill */
    pthread_mutex_t lock;                   /* held by auth_gate() around the three above:
                                             * connections on every loop thread share it */
};

/* One connection's state. Start it zeroed, then set `loopback` and `limiter`. */
struct auth_conn {
    bool loopback;                          /* the peer's address is a loopback address */
    bool authed;                            /* a correct AUTH was sent */
    int failures;                           /* wrong tokens so far */
    struct auth_limiter *limiter;           /* shared by every connection; NULL: no limit */
};

/* What auth_gate() decided about a request line. */
enum auth_verdict {
    AUTH_PASS = 0,     /* not answered: execute the line as usual */
    AUTH_ANSWERED = 1, /* answered (AUTH itself, or a refused write): do not execute it */
    AUTH_CLOSE = 2,    /* answered, and the connection must be closed after the answer */
};

/* Reads the token from the first line of the file at `path` (a final "\r"
 * is dropped) into p, setting has_token. Returns 0, or -1 after writing one
 * line to err: the file cannot be read, its first line is empty, or it is
 * longer than AUTH_MAX_TOKEN_BYTES. */
int auth_token_load(struct auth_policy *p, const char *path, char *err, size_t err_len);

/* True when `given` (given_len bytes) equals the policy's token. Takes the
 * same time for every given of at most AUTH_MAX_TOKEN_BYTES bytes, whatever
 * its content or length; false when no token is configured. */
bool auth_token_matches(const struct auth_policy *p, const char *given, size_t given_len);

/* True when `sa` (AF_INET or AF_INET6) is a loopback address: 127.0.0.0/8,
 * ::1, or ::ffff:127.x.y.z. False for any other address or family. */
bool auth_addr_is_loopback(const struct sockaddr *sa);

/* Fills the bucket: AUTH_FAIL_BURST wrong tokens allowed from now_ms (any
 * monotonic clock in milliseconds; auth_gate() uses CLOCK_MONOTONIC). */
void auth_limiter_init(struct auth_limiter *l, int64_t now_ms);

/* Refills the bucket for the time since the last call, then returns true when
 * at least one wrong token may be absorbed now. */
bool auth_limiter_allows(struct auth_limiter *l, int64_t now_ms);

/* Takes one wrong token from the bucket (after auth_limiter_allows()). */
void auth_limiter_charge(struct auth_limiter *l);

/* Decides about one request line (line[0..len-1], not modified) before it
 * runs. An AUTH request with one argument is answered here; a write the
 * connection may not make is answered ERR DENIED; everything else, including
 * malformed lines and AUTH with the wrong number of arguments, passes to
 * cmd_execute(), which answers it. Answers go to `out` in its current format;
 * requests and errors answered here are counted in `stats` (may be NULL),
 * in total and by command. `peer` names the client in the log line of a
 * wrong token. With c->limiter set, an AUTH while the bucket is empty is
 * answered ERR BUSY and not compared, and a wrong token takes from the bucket.
 * A line holding a NUL byte is answered ERR SYNTAX here, since the tokenizer
 * would cut a token at it and run the rest of the line as if it were not
 * there. *cmd_row (if not NULL) gets the line's row in cmd_table(), or -1 for
 * a blank, malformed or unknown request. */
enum auth_verdict auth_gate(const struct auth_policy *p, struct auth_conn *c, const char *line,
                            size_t len, struct reply *out, struct cmd_stats *stats,
                            const char *peer, int *cmd_row);

/* auth_gate() for a request line that proto_split() has already cut into
 * argv[0..argc-1] (argc >= 1), so that the server tokenizes each line once;
 * argv is not modified. Decides and answers exactly as auth_gate() does on
 * the line, except for the checks of the line itself (a NUL byte, the
 * length), which the caller makes by passing such lines to auth_gate(). */
enum auth_verdict auth_gate_argv(const struct auth_policy *p, struct auth_conn *c, size_t argc,
                                 char **argv, struct reply *out, struct cmd_stats *stats,
                                 const char *peer, int *cmd_row);

#endif
