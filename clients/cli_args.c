/* cli_args.c: splitting --where conditions for the `nearest` CLI. A condition
 * is a few dozen bytes, so it is copied once into one allocation holding the
 * three parts, and nothing here needs to be fast. */
#include "cli_args.h"

#include <stdlib.h>
#include <string.h>

#include "nearest.h"
#include "proto.h"

void cli_where_clear(struct cli_where *w) {
    free(w->text);
    *w = (struct cli_where){0};
}

int cli_where_split(const char *condition, struct cli_where *out) {
    *out = (struct cli_where){0};
    struct proto_where w;
    if (!proto_where_split(condition, &w)) {
        return CLI_ERR_ARG;
    }
    const char *field = condition + w.field_at, *op_at = condition + w.op_at;
    const char *value = condition + w.value_at;
    size_t n_field = w.field_len, n_op = w.op_len, n_value = w.value_len;
    char *text = malloc(n_field + 1 + n_op + 1 + n_value + 1);
    if (text == NULL) {
        return CLI_ERR_NOMEM;
    }
    char *o = text;
    memcpy(o, field, n_field);
    o[n_field] = '\0';
    out->field = o;
    o += n_field + 1;
    memcpy(o, op_at, n_op);
    o[n_op] = '\0';
    out->op = o;
    o += n_op + 1;
    memcpy(o, value, n_value);
    o[n_value] = '\0';
    out->value = o;
    out->text = text;
    return 0;
}
