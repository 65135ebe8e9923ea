/* test_cli_args.c: how the `nearest` CLI reads --where conditions
 * (clients/cli_args.h), well-formed and malformed, and that each split
 * condition, built into a request line by libnearest, reaches the server's
 * tokenizer as exactly the three tokens of `WHERE <field> <op> <value>`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli_args.h"
#include "nearest.h"
#include "proto.h"

static void check_split(const char *cond, const char *field, const char *op, const char *value) {
    struct cli_where w;
    int ret = cli_where_split(cond, &w);
    if (ret != 0) {
        fail_msg("'%s' was refused (%d)", cond, ret);
    }
    assert_string_equal(w.field, field);
    assert_string_equal(w.op, op);
    assert_string_equal(w.value, value);
    cli_where_clear(&w);
    assert_null(w.text);
    assert_null(w.field);
}

static void test_where_splits_at_each_operator(void **state) {
    (void)state;
    check_split("stars>=4", "stars", ">=", "4");
    check_split("stars<=4", "stars", "<=", "4");
    check_split("level!=primary", "level", "!=", "primary");
    check_split("dementia=yes", "dementia", "=", "yes");
    check_split("beds<100", "beds", "<", "100");
    check_split("free>7.5", "free", ">", "7.5");
    check_split("price>-1", "price", ">", "-1");
}

static void test_where_trims_blanks_but_keeps_them_inside_the_value(void **state) {
    (void)state;
    check_split("stars >= 4", "stars", ">=", "4");
    check_split("\tstars\t>=\t4\t", "stars", ">=", "4");
    check_split("name=泰塘 社区 食堂", "name", "=", "泰塘 社区 食堂");
    check_split("name = Licun \"east\" ", "name", "=", "Licun \"east\"");
    /* Only the first operator splits: the rest belongs to the value. */
    check_split("group=a=b", "group", "=", "a=b");
    check_split("name<x>y", "name", "<", "x>y");
    check_split("shared_hours=Mo-Fr 18:00-08:00", "shared_hours", "=", "Mo-Fr 18:00-08:00");
}

static void test_where_refuses_malformed_conditions(void **state) {
    (void)state;
    static const char *const bad[] = {
        "",            /* nothing */
        "stars",       /* no operator */
        "stars 4",     /* no operator */
        ">=4",         /* no field */
        "  = 4",       /* blank field */
        "stars>=",     /* no value */
        "stars>=   ",  /* blank value */
        "stars=>4",    /* value starts with an operator byte: a typo */
        "stars>>4",
        "stars==4",
        "stars=!4",
        "stars!4",     /* "!" alone is not an operator */
        "a!b=c",       /* '!' in the field */
        "st ars>=4",   /* blank inside the field */
        "stärs>=4",    /* not a field name */
        "\"stars\">=4",
        "x;y=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cli_where w = {.text = NULL};
        int ret = cli_where_split(bad[i], &w);
        if (ret != CLI_ERR_ARG) {
            fail_msg("'%s' gave %d, not CLI_ERR_ARG", bad[i], ret);
        }
        assert_null(w.text);
        assert_null(w.field);
        cli_where_clear(&w); /* safe on a cleared struct */
    }
}

static void test_where_field_length_is_bounded(void **state) {
    (void)state;
    char cond[CLI_WHERE_MAX_FIELD_BYTES + 8];
    memset(cond, 'f', CLI_WHERE_MAX_FIELD_BYTES);
    strcpy(cond + CLI_WHERE_MAX_FIELD_BYTES, "=1");
    struct cli_where w;
    assert_int_equal(cli_where_split(cond, &w), 0);
    assert_int_equal(strlen(w.field), CLI_WHERE_MAX_FIELD_BYTES);
    cli_where_clear(&w);
    memset(cond, 'f', CLI_WHERE_MAX_FIELD_BYTES + 1);
    strcpy(cond + CLI_WHERE_MAX_FIELD_BYTES + 1, "=1");
    assert_int_equal(cli_where_split(cond, &w), CLI_ERR_ARG);
}

/* The oracle is the server's tokenizer: the request libnearest builds from
 * the split condition must come back as WHERE, field, op, value. */
static void test_where_tokens_survive_the_servers_tokenizer(void **state) {
    (void)state;
    static const char *const conds[] = {
        "stars>=4", "name=泰塘 社区", "name=a \"quoted\" b", "name=back\\slash",
        "group != x y z", "name=\"", "name=\\\"",
    };
    for (size_t i = 0; i < sizeof conds / sizeof conds[0]; i++) {
        struct cli_where w;
        assert_int_equal(cli_where_split(conds[i], &w), 0);
        const char *tokens[] = {"NEAREST", "school", "36.16", "120.41", "WHERE",
                                w.field, w.op, w.value};
        char *line = NULL;
        size_t len = 0;
        assert_int_equal(cli_request_build(8, tokens, &line, &len), 0);
        assert_int_equal(line[len - 1], '\n');
        char *argv[PROTO_MAX_ARGS];
        size_t argc = 0;
        assert_int_equal(proto_split(line, len - 1, argv, PROTO_MAX_ARGS, &argc), 0);
        assert_int_equal(argc, 8);
        for (size_t t = 0; t < 8; t++) {
            assert_string_equal(argv[t], tokens[t]);
        }
        free(line);
        cli_where_clear(&w);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_where_splits_at_each_operator),
        cmocka_unit_test(test_where_trims_blanks_but_keeps_them_inside_the_value),
        cmocka_unit_test(test_where_refuses_malformed_conditions),
        cmocka_unit_test(test_where_field_length_is_bounded),
        cmocka_unit_test(test_where_tokens_survive_the_servers_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
