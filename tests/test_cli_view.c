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

static char *print_to_string(void (*print)(FILE *, const struct cli_reply *),
                             const struct cli_reply *r) {
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    print(out, r);
    fclose(out);
    return text;
}

static size_t split_lines(char *text, char **lines, size_t max) {
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && n < max;
         l = strtok_r(NULL, "\n", &save)) {
        lines[n++] = l;
    }
    return n;
}

static const char *const where_attrs[] = {"stars", "dementia"};

static void print_with_attrs(FILE *out, const struct cli_reply *r) {
    cli_table_print_attrs(out, r, where_attrs, 2);
}

static void test_table_adds_a_column_for_each_filtered_attribute(void **state) {
    (void)state;
    struct cli_reply *r = parse(
        "OK 3\n"
        "ec-018\telder_care\t青岛市李沧区嘉峰康养中心\t36.159914\t120.400908\t863.7"
        "\tstars=5\tbeds=479\tdementia=true\n"
        "ec-2\telder_care\tB home\t36.1\t120.4\t1075.1\tdementia=false\tstars=4\n"
        "ec-3\telder_care\t无星\t36.1\t120.4\t2000\n");
    char *text = print_to_string(print_with_attrs, r);
    char *lines[8];
    assert_int_equal(split_lines(text, lines, 8), 4);
    size_t stars_col = column_of(lines[0], "stars");
    size_t dementia_col = column_of(lines[0], "dementia");
    size_t pos_col = column_of(lines[0], "lat, lon");
    assert_true(column_of(lines[0], "distance") < stars_col && stars_col < dementia_col &&
                dementia_col < pos_col);
    const char *stars[] = {NULL, " 5 ", " 4 ", " - "};
    const char *dementia[] = {NULL, " true ", " false ", " - "};
    const char *pos[] = {NULL, "36.159914, 120.400908", "36.100000, 120.400000",
                         "36.100000, 120.400000"};
    for (size_t i = 1; i < 4; i++) {
        assert_int_equal(column_of(lines[i], stars[i]) + 1, stars_col);
        /* Searched after the stars cell, which may be the same text. */
        const char *after_stars = strstr(lines[i], stars[i]) + 2;
        size_t after_col = column_of(lines[i], stars[i]) + 2;
        assert_int_equal(after_col + column_of(after_stars, dementia[i]) + 1, dementia_col);
        assert_int_equal(column_of(lines[i], pos[i]), pos_col);
    }
    free(text);
    /* Without attributes it is the plain table. */
    char *plain = print_to_string(cli_table_print, r);
    assert_null(strstr(plain, "stars"));
    free(plain);
    cli_reply_free(r);
}

static void test_table_names_categories_only_when_they_differ(void **state) {
    (void)state;
    struct cli_reply *mixed = parse("OK 2\n"
                                    "dt-108\tdoctor_team\t泰塘团队1\t36.1\t120.4\t56.8\n"
                                    "sc-032\tschool\tA campus\t36.1\t120.4\t157.2\n");
    char *text = print_to_string(cli_table_print, mixed);
    char *lines[4];
    assert_int_equal(split_lines(text, lines, 4), 3);
    size_t category_col = column_of(lines[0], "category");
    assert_true(column_of(lines[0], "name") < category_col &&
                category_col < column_of(lines[0], "distance"));
    assert_int_equal(column_of(lines[1], "doctor_team"), category_col);
    assert_int_equal(column_of(lines[2], "school"), category_col);
    free(text);
    cli_reply_free(mixed);

    struct cli_reply *one = parse("OK 2\n"
                                  "sc-1\tschool\tA\t36.1\t120.4\t5\n"
                                  "sc-2\tschool\tB\t36.1\t120.4\t6\n");
    text = print_to_string(cli_table_print, one);
    assert_null(strstr(text, "category"));
    assert_null(strstr(text, "school"));
    free(text);
    cli_reply_free(one);
}

static const struct cli_id_name served_names[] = {
    {"sc-032", "青岛市李沧区泰塘小学"},
    {"dt-108", "泰塘社区卫生服务站家庭医生团队1"},
};

static void print_areas(FILE *out, const struct cli_reply *r) {
    assert_int_equal(cli_areas_print(out, r, served_names, 2), 0);
}

static void test_areas_table_names_who_serves_each_area(void **state) {
    (void)state;
    struct cli_reply *r = parse(
        "OK 4\n"
        "ca-008\tcatchment\t青岛市李沧区泰塘小学小学学区\tdistrict\tsc-032\n"
        "cm-078\tcommunity\t泰塘社区\tst-hushan\tdt-108;dt-999\n"
        "district\tdistrict\t李沧区\t\t\n"
        "st-hushan\tstreet\tHushan \x1b[2J road\tdistrict\t\n");
    char *text = print_to_string(print_areas, r);
    char *lines[8];
    assert_int_equal(split_lines(text, lines, 8), 5);
    assert_true(strncmp(lines[0], "kind ", 5) == 0);
    size_t name_col = column_of(lines[0], "name");
    size_t id_col = column_of(lines[0], " id") + 1;
    size_t served_col = column_of(lines[0], "served by");
    const char *names[] = {NULL, "青岛市李沧区泰塘小学小学学区", "泰塘社区", "李沧区",
                           "Hushan ?[2J road"};
    const char *ids[] = {NULL, " ca-008", " cm-078", " district", " st-hushan"};
    const char *served[] = {NULL, "青岛市李沧区泰塘小学 (sc-032)",
                            "泰塘社区卫生服务站家庭医生团队1 (dt-108), dt-999", "-", "-"};
    for (size_t i = 1; i < 5; i++) {
        assert_int_equal(column_of(lines[i], names[i]), name_col);
        assert_int_equal(column_of(lines[i], ids[i]) + 1, id_col);
        /* The served-by cell ends the line (ids may hold '-', so no search). */
        assert_int_equal(cli_display_width(lines[i]) - cli_display_width(served[i]),
                         served_col);
        assert_string_equal(lines[i] + strlen(lines[i]) - strlen(served[i]), served[i]);
    }
    free(text);
    cli_reply_free(r);

    /* AREAS records have no served-by column. */
    r = parse("OK 1\nst-licun\tstreet\t李村街道\tdistrict\n");
    char *areas = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&areas, &size);
    assert_int_equal(cli_areas_print(out, r, NULL, 0), 0);
    fclose(out);
    assert_null(strstr(areas, "served"));
    assert_non_null(strstr(areas, "李村街道"));
    free(areas);
    cli_reply_free(r);
}

static void test_help_shows_usage_then_summary(void **state) {
    (void)state;
    struct cli_reply *r = parse("OK 2\nPING\tanswers OK 0\nGET <id>\tone facility by id\n");
    char *text = print_to_string(cli_help_print, r);
    assert_string_equal(text, "PING\n    answers OK 0\nGET <id>\n    one facility by id\n");
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
        cmocka_unit_test(test_table_adds_a_column_for_each_filtered_attribute),
        cmocka_unit_test(test_table_names_categories_only_when_they_differ),
        cmocka_unit_test(test_areas_table_names_who_serves_each_area),
        cmocka_unit_test(test_help_shows_usage_then_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
