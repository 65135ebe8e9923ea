/* cli_args.h: how the `nearest` CLI reads the arguments that are not plain
 * tokens: the condition of --where ('stars>=4') becomes the three tokens of
 * the protocol's `WHERE <field> <op> <value>`.
 *
 * Kept apart from main() so that tests feed it malformed conditions without
 * running a process. What a field or value means is the server's business:
 * this only splits, so an unknown field still reaches the server and comes
 * back as its own `ERR ARG`. */
#ifndef NEARESTD_CLI_ARGS_H
#define NEARESTD_CLI_ARGS_H

#include <stddef.h>

#define CLI_WHERE_MAX_FIELD_BYTES 64 /* PROTO_WHERE_MAX_FIELD_BYTES */

/* One --where condition, split. The three strings point into `text`, which
 * the struct owns: release it with cli_where_clear(). */
struct cli_where {
    char *text;         /* one allocation: field, op and value, each NUL-terminated */
    const char *field;  /* 1..CLI_WHERE_MAX_FIELD_BYTES of [A-Za-z0-9_.:-] */
    const char *op;     /* one of = != < <= > >= */
    const char *value;  /* non-empty; may hold blanks and any UTF-8 */
};

/* Splits a condition such as "stars>=4", "stars >= 4", "dementia=yes" or
 * "name=泰塘 小学" by proto_where_split()'s rules: at its operator, the first of = != < <= > >= found
 * (two-byte operators win over their first byte). Blanks around the field
 * and the value are dropped; blanks inside the value are kept. Returns 0 and
 * fills *out (free with cli_where_clear()), CLI_ERR_ARG when the condition has
 * no operator, an empty or malformed field, an empty value, or a value that
 * starts with an operator byte ("stars=>4", "stars>>4", "a!b"), or
 * CLI_ERR_NOMEM. On error *out is left cleared. */
int cli_where_split(const char *condition, struct cli_where *out);

/* Frees what cli_where_split() allocated and clears *w. Safe on a cleared
 * struct. */
void cli_where_clear(struct cli_where *w);

#endif
