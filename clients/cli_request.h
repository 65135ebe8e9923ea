/* cli_request.h: building nearestd request lines from tokens (part of libnearest).
 *
 * A token is sent bare when it can be, and double-quoted (with \" and \\)
 * when it is empty or holds a blank, a quote or a backslash, so that the
 * server's proto_split() gives back exactly the caller's tokens. */
#ifndef NEARESTD_CLI_REQUEST_H
#define NEARESTD_CLI_REQUEST_H

#include <stddef.h>

/* Builds the request line for argv[0..argc-1], ending in "\n", into a new
 * NUL-terminated string *line_out of *len_out bytes ("\n" included); the
 * caller owns it and frees it with free(). Returns 0, CLI_ERR_ARG if argc is
 * 0 or more than PROTO_MAX_ARGS or a token holds "\r" or "\n" (no quoting
 * can carry a line break), CLI_ERR_LIMIT if the
 * line would exceed PROTO_MAX_LINE_BYTES, or CLI_ERR_NOMEM. */
int cli_request_build(size_t argc, const char *const *argv, char **line_out, size_t *len_out);

/* Whether a token must be quoted to survive proto_split(). */
int cli_request_needs_quotes(const char *token);

#endif
