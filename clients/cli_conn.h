/* cli_conn.h: a blocking TCP connection to nearestd (part of libnearest).
 *
 * One connection sends request lines and reads answers in order; answers are
 * parsed by cli_reply.h, so this file only moves bytes. Every wait (connect,
 * send, receive) gives up after timeout_ms without progress. Not thread-safe:
 * use one connection per thread. Requests may be pipelined: send several,
 * then read as many answers. */
#ifndef NEARESTD_CLI_CONN_H
#define NEARESTD_CLI_CONN_H

#include <stddef.h>

#include "cli_reply.h"

#define CLI_DEFAULT_TIMEOUT_MS 5000

struct cli_conn;

/* Connects to host:port (a name, an IPv4 or an IPv6 address; every address
 * the name resolves to is tried in turn), waiting at most timeout_ms for
 * each (0: no limit). Returns NULL only when out of memory; otherwise the
 * caller owns the connection and must call cli_conn_close() on it even when
 * connecting failed, which cli_conn_err() tells (CLI_ERR_CONNECT), with the
 * reason in cli_conn_errstr() (e.g. "Connection refused"). */
struct cli_conn *cli_conn_open(const char *host, int port, int timeout_ms);

/* Closes the socket and frees the connection. NULL is a no-op. */
void cli_conn_close(struct cli_conn *c);

/* The connection's error: 0, or the negative cli_err that put it out of use.
 * Errors in the caller's request (CLI_ERR_ARG, or CLI_ERR_LIMIT and
 * CLI_ERR_NOMEM while building it) leave the connection usable and this at 0;
 * any other error is sticky: every later call returns it. */
int cli_conn_err(const struct cli_conn *c);

/* A sentence about the last error (sticky or not), borrowed, valid until the
 * next call on c; "" when there has been none. */
const char *cli_conn_errstr(const struct cli_conn *c);

/* Sends one raw request line of len bytes; a trailing "\n" (or "\r\n") is
 * optional and added when missing. Returns 0, CLI_ERR_ARG if the line holds
 * another "\n" (one line gets one answer), or CLI_ERR_IO / CLI_ERR_TIMEOUT. */
int cli_conn_send_line(struct cli_conn *c, const char *line, size_t len);

/* Sends the request made of argv[0..argc-1] (see cli_request_build()). */
int cli_conn_send(struct cli_conn *c, size_t argc, const char *const *argv);

/* Waits for the next answer. Returns 0 and sets *out (caller owns it, free
 * with cli_reply_free()), or CLI_ERR_CLOSED (the server closed before a whole
 * answer), CLI_ERR_TIMEOUT, CLI_ERR_IO, CLI_ERR_PARSE, CLI_ERR_LIMIT,
 * CLI_ERR_NOMEM. An ERR answer from the server is a success here: look at
 * (*out)->kind. */
int cli_conn_read_reply(struct cli_conn *c, struct cli_reply **out);

/* cli_conn_send() then cli_conn_read_reply(). */
int cli_conn_command(struct cli_conn *c, size_t argc, const char *const *argv,
                     struct cli_reply **out);

#endif
