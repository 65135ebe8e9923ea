/* cli_args.c: splitting --where conditions for the `nearest` CLI. A condition
 * is a few dozen bytes, so it is copied once into one allocation holding the
 * three parts, and nothing here needs to be fast. */
#include "cli_args.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nearest.h"

static bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

static bool is_op_byte(char c) {
    return c == '=' || c == '!' || c == '<' || c == '>';
}

static bool is_field_byte(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == ':' || c == '-';
}

/* The operator starting at s: its length (1 or 2), or 0 if s does not start
 * one ("!" alone is not an operator). */
static size_t op_len(const char *s) {
    if ((s[0] == '<' || s[0] == '>' || s[0] == '!') && s[1] == '=') {
        return 2;
    }
    return s[0] == '=' || s[0] == '<' || s[0] == '>' ? 1 : 0;
}

void cli_where_clear(struct cli_where *w) {
    free(w->text);
    *w = (struct cli_where){0};
}

int cli_where_split(const char *condition, struct cli_where *out) {
    *out = (struct cli_where){0};
    const char *op_at = condition;
    while (*op_at != '\0' && !is_op_byte(*op_at)) {
        op_at++;
    }
    size_t n_op = op_len(op_at);
    if (n_op == 0) {
        return CLI_ERR_ARG;
    }
    const char *field = condition;
    const char *field_end = op_at;
    while (field < field_end && is_blank(*field)) {
        field++;
    }
    while (field_end > field && is_blank(field_end[-1])) {
        field_end--;
    }
    size_t n_field = (size_t)(field_end - field);
    if (n_field == 0 || n_field > CLI_WHERE_MAX_FIELD_BYTES) {
        return CLI_ERR_ARG;
    }
    for (size_t i = 0; i < n_field; i++) {
        if (!is_field_byte(field[i])) {
            return CLI_ERR_ARG;
        }
    }
    const char *value = op_at + n_op;
    while (is_blank(*value)) {
        value++;
    }
    size_t n_value = strlen(value);
    while (n_value > 0 && is_blank(value[n_value - 1])) {
        n_value--;
    }
    if (n_value == 0 || is_op_byte(value[0])) {
        return CLI_ERR_ARG;
    }
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
