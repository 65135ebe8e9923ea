/* test_cli_view.c: how the `nearest` CLI shows answers (clients/cli_table.h):
 * display widths against the C library's wcwidth() in a UTF-8 locale,
 * distances for people, and a table whose columns line up by display width
 * whatever mix of Chinese and ASCII names it holds. */
#define _XOPEN_SOURCE 700 /* wcwidth() */
#include <locale.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <cmocka.h>

#include "cli_reply.h"
#include "cli_table.h"

static void test_width_counts_cjk_as_two_columns(void **state) {
    (void)state;
    assert_int_equal(cli_display_width(""), 0);
    assert_int_equal(cli_display_width("abc 12"), 6);
    assert_int_equal(cli_display_width("泰塘小学"), 8);
    assert_int_equal(cli_display_width("泰塘 school"), 11);
    assert_int_equal(cli_display_width("ｆｕｌｌ"), 8);      /* fullwidth forms */
    assert_int_equal(cli_display_width("e\xcc\x81"), 1);      /* e + combining acute */
    assert_int_equal(cli_display_width("\xff\xfe" "a"), 3);   /* invalid bytes: one each */
    assert_int_equal(cli_display_width("\xe6\xb3"), 2);       /* cut sequence */
    assert_int_equal(cli_display_width("\xc0\xaf"), 2);       /* overlong "/" */
}

/* The oracle: glibc's wcwidth() under C.UTF-8, over the blocks names use. */
static void test_width_agrees_with_wcwidth(void **state) {
    (void)state;
    if (setlocale(LC_CTYPE, "C.UTF-8") == NULL && setlocale(LC_CTYPE, "en_US.UTF-8") == NULL) {
        /* No UTF-8 locale here: compare with the ranges glibc documents instead. */
        assert_int_equal(cli_codepoint_width(0x4E2D), 2);
        return;
    }
    static const unsigned long blocks[][2] = {
        {0x20, 0x7E},     {0xA0, 0x2FF},    {0x300, 0x36F},   {0x3000, 0x303E},
        {0x3041, 0x30FF}, {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0xFF01, 0xFF60},
        {0x20000, 0x2A6DF},
    };
    size_t checked = 0;
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        for (unsigned long cp = blocks[b][0]; cp <= blocks[b][1]; cp++) {
            int want = wcwidth((wchar_t)cp);
            if (want < 0) {
                continue; /* unassigned in this glibc */
            }
            if (cli_codepoint_width(cp) != want) {
                fail_msg("U+%04lX: %d, wcwidth says %d", cp, cli_codepoint_width(cp), want);
            }
            checked++;
        }
    }
    assert_true(checked > 40000);
    setlocale(LC_CTYPE, "C");
}

static void test_distance_reads_in_metres_then_kilometres(void **state) {
    (void)state;
    struct {
        bool has;
        double m;
        const char *want;
    } cases[] = {
        {true, 0.0, "0 m"},         {true, 56.8, "57 m"},        {true, 850.0, "850 m"},
        {true, 999.4, "999 m"},     {true, 999.5, "1.00 km"},    {true, 1038.3, "1.04 km"},
        {true, 1240.0, "1.24 km"},  {true, 99994.0, "99.99 km"}, {true, 99995.0, "100.0 km"},
        {true, 123456.0, "123.5 km"}, {false, 5.0, "-"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        cli_format_distance(cases[i].has, cases[i].m, buf, sizeof buf);
        assert_string_equal(buf, cases[i].want);
    }
}

static struct cli_reply *parse(const char *text) {
    struct cli_reply_parser *p = cli_reply_parser_new();
    struct cli_reply *r = NULL;
    assert_int_equal(cli_reply_parser_feed(p, text, strlen(text)), 0);
    assert_int_equal(cli_reply_parser_next(p, &r), 1);
    cli_reply_parser_free(p);
    return r;
}

/* Display column where `needle` starts in `line`. */
static size_t column_of(const char *line, const char *needle) {
    const char *at = strstr(line, needle);
    assert_non_null(at);
    char prefix[512];
    size_t n = (size_t)(at - line);
    memcpy(prefix, line, n);
    prefix[n] = '\0';
    return cli_display_width(prefix);
}

static void test_table_lines_up_columns_by_display_width(void **state) {
    (void)state;
    struct cli_reply *r = parse(
        "OK 4\n"
        "mp-016\tmeal_point\t虎山路街道新埠社区长者食堂\t36.156464\t120.403264\t722.0\n"
        "x-1\tparking\tLot B\t36.1\t120.4\t1038.3\n"
        "sc-032\tschool\t青岛市李沧区泰塘小学 (east)\t36.159059\t120.411535"
        "\t56.8\n"
        "ec-045\telder_care\t中心\t-36.152753\t-120.414865\t-\n");
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    cli_table_print(out, r);
    fclose(out);

    char *lines[8] = {0};
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        lines[n++] = l;
    }
    assert_int_equal(n, 5);
    const char *ids[] = {"id", "mp-016", "x-1", "sc-032", "ec-045"};
    const char *dist[] = {"distance", "722 m", "1.04 km", "57 m", "-"};
    const char *pos[] = {"lat, lon", "36.156464, 120.403264", "36.100000, 120.400000",
                         "36.159059, 120.411535", "-36.152753, -120.414865"};
    size_t id_col = column_of(lines[0], "id");
    size_t pos_col = column_of(lines[0], "lat, lon");
    size_t dist_end = column_of(lines[0], "distance") + strlen("distance");
    for (size_t i = 1; i < n; i++) {
        assert_int_equal(column_of(lines[i], ids[i]), id_col);
        assert_int_equal(column_of(lines[i], pos[i]), pos_col);
        /* Distances are right-aligned. */
        assert_int_equal(column_of(lines[i], dist[i]) + strlen(dist[i]), dist_end);
        assert_string_equal(lines[i] + strlen(lines[i]) - strlen(ids[i]), ids[i]);
    }
    free(text);
    cli_reply_free(r);
}

static void test_table_shows_control_characters_as_question_marks(void **state) {
    (void)state;
    struct cli_reply *r = parse("OK 3\n"
                                "a\x1b[31m\tschool\tred\x1b[0m name\x7f\t1\t2\t3\n"
                                "b\tschool\tc1 \xc2\x9b" "2J here\t1\t2\t4\n"
                                "c\tschool\tplain\t1\t2\t5\n");
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    cli_table_print(out, r);
    fclose(out);
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)text[i];
        assert_true(c == '\n' || (c >= 0x20 && c != 0x7F));
        assert_false(c == 0xC2 && (unsigned char)text[i + 1] < 0xA0);
    }
    assert_non_null(strstr(text, "red?[0m name?"));
    assert_non_null(strstr(text, "c1 ?2J here"));
    assert_non_null(strstr(text, "a?[31m\n"));
    /* The ids still line up. */
    char *lines[8] = {0};
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        lines[n++] = l;
    }
    assert_int_equal(n, 4);
    size_t id_col = column_of(lines[0], " id") + 1;
    assert_int_equal(column_of(lines[1], " a?[31m") + 1, id_col);
    assert_int_equal(column_of(lines[2], " b") + 1, id_col);
    assert_int_equal(column_of(lines[3], " c") + 1, id_col);
    free(text);
    cli_reply_free(r);
}

static void test_tsv_and_raw_print_records_as_received(void **state) {
    (void)state;
    const char *answer = "OK 2\na\tb\tc\nelder_care\t111\n";
    struct cli_reply *r = parse(answer);
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    cli_tsv_print(out, r);
    fclose(out);
    assert_string_equal(text, "a\tb\tc\nelder_care\t111\n");
    free(text);
    out = open_memstream(&text, &size);
    cli_raw_print(out, r);
    fclose(out);
    assert_string_equal(text, answer);
    free(text);
    cli_reply_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_width_counts_cjk_as_two_columns),
        cmocka_unit_test(test_width_agrees_with_wcwidth),
        cmocka_unit_test(test_distance_reads_in_metres_then_kilometres),
        cmocka_unit_test(test_table_lines_up_columns_by_display_width),
        cmocka_unit_test(test_table_shows_control_characters_as_question_marks),
        cmocka_unit_test(test_tsv_and_raw_print_records_as_received),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
