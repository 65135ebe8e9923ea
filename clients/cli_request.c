/* cli_request.c: request lines from tokens; the inverse of proto_split().
 * A request is at most PROTO_MAX_LINE_BYTES (4096) bytes and 64 tokens, so the
 * line is built in one exact-size allocation after a sizing pass. */
#include "nearest.h"

#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* nearest.h states these limits in words, without including proto.h. */
_Static_assert(PROTO_MAX_ARGS == 64, "nearest.h says 64 tokens");
_Static_assert(PROTO_MAX_LINE_BYTES == 4096, "nearest.h says 4096 bytes");
_Static_assert(PROTO_DEFAULT_PORT == CLI_DEFAULT_PORT, "one default port");

int cli_request_needs_quotes(const char *token) {
    return token[0] == '\0' || strpbrk(token, " \t\"\\") != NULL;
}

int cli_request_build(size_t argc, const char *const *argv, char **line_out, size_t *len_out) {
    if (argc == 0 || argc > PROTO_MAX_ARGS) {
        return CLI_ERR_ARG;
    }
    size_t need = 0;
    for (size_t i = 0; i < argc; i++) {
        const char *t = argv[i];
        if (strpbrk(t, "\r\n") != NULL) {
            return CLI_ERR_ARG;
        }
        need += strlen(t) + (i > 0);
        if (cli_request_needs_quotes(t)) {
            need += 2;
            for (const char *c = t; *c; c++) {
                need += *c == '"' || *c == '\\';
            }
        }
    }
    if (need > PROTO_MAX_LINE_BYTES) {
        return CLI_ERR_LIMIT;
    }
    char *line = malloc(need + 2);
    if (line == NULL) {
        return CLI_ERR_NOMEM;
    }
    char *o = line;
    for (size_t i = 0; i < argc; i++) {
        const char *t = argv[i];
        if (i > 0) {
            *o++ = ' ';
        }
        if (!cli_request_needs_quotes(t)) {
            size_t n = strlen(t);
            memcpy(o, t, n);
            o += n;
            continue;
        }
        *o++ = '"';
        for (const char *c = t; *c; c++) {
            if (*c == '"' || *c == '\\') {
                *o++ = '\\';
            }
            *o++ = *c;
        }
        *o++ = '"';
    }
    *o++ = '\n';
    *o = '\0';
    *line_out = line;
    *len_out = (size_t)(o - line);
    return 0;
}
