/* test_hours.c: the opening-hours parser and evaluator (data/hours.h).
 *
 * Hand-written cases cover each grammar feature, the override rule, spills
 * past midnight and each error reason with its offset. The oracle test builds
 * random valid timetables as data, prints them in the grammar, parses the text
 * and compares all 7 x 1440 minutes with a naive reading of the same data. A
 * second oracle checks the week bits OPEN uses (hours_week_*) against a copy
 * of the per-instant check they replaced, over 10^6 random instants. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "hours.h"

enum { MO, TU, WE, TH, FR, SA, SU };

static int hm(int h, int m)
{
    return h * 60 + m;
}

static struct hours parse_ok(const char *text)
{
    struct hours h;
    struct hours_error err;
    int rc = hours_parse(text, &h, &err);
    if (rc != 0)
        fail_msg("\"%s\": %s at %zu", text, hours_strerror(err.code), err.offset);
    assert_int_equal(err.code, HOURS_OK);
    return h;
}

/* Counts open minutes in the week, to check "nothing else is open". */
static int open_minutes(const struct hours *h)
{
    int n = 0;
    for (int d = 0; d < 7; d++)
        for (int m = 0; m < HOURS_MINUTES_PER_DAY; m++)
            n += hours_is_open(h, d, m);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Grammar features                                                         */
/* ------------------------------------------------------------------------ */

static void test_empty_string_is_not_recorded_and_never_open(void **state)
{
    (void)state;
    const char *texts[] = {"", "   ", "\t"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        struct hours h = parse_ok(texts[i]);
        assert_false(hours_is_recorded(&h));
        assert_int_equal(open_minutes(&h), 0);
    }
}

static void test_24_7_is_always_open(void **state)
{
    (void)state;
    struct hours h = parse_ok("24/7");
    assert_true(hours_is_recorded(&h));
    assert_int_equal(open_minutes(&h), 7 * HOURS_MINUTES_PER_DAY);
    for (int d = 0; d < 7; d++)
        assert_int_equal(h.n_ranges[d], 1);
}

static void test_rule_without_days_applies_every_day(void **state)
{
    (void)state;
    struct hours h = parse_ok("08:00-12:00");
    for (int d = 0; d < 7; d++) {
        assert_false(hours_is_open(&h, d, hm(7, 59)));
        assert_true(hours_is_open(&h, d, hm(8, 0)));
        assert_true(hours_is_open(&h, d, hm(11, 59)));
        assert_false(hours_is_open(&h, d, hm(12, 0)));
    }
    assert_int_equal(open_minutes(&h), 7 * 240);
}

static void test_day_range_list_and_mixed_selectors(void **state)
{
    (void)state;
    struct {
        const char *text;
        unsigned mask; /* bit d set: open at 10:00 on day d */
    } cases[] = {
        {"Mo-Fr 09:00-17:00", 0x1f},       {"Sa,Su 09:00-17:00", 0x60},
        {"Mo-We,Fr 09:00-17:00", 0x17},    {"Fr-Mo 09:00-17:00", 0x71},
        {"Tu 09:00-17:00", 0x02},          {"Mo,We-Th,Su 09:00-17:00", 0x4d},
        {"Su-Sa 09:00-17:00", 0x7f},       {"We-We 09:00-17:00", 0x04},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct hours h = parse_ok(cases[i].text);
        int days = 0;
        for (int d = 0; d < 7; d++) {
            bool want = (cases[i].mask >> d) & 1u;
            if (hours_is_open(&h, d, hm(10, 0)) != want)
                fail_msg("\"%s\" day %d: expected %d", cases[i].text, d, want);
            days += want;
        }
        assert_int_equal(open_minutes(&h), days * 8 * 60);
    }
}

static void test_several_spans_in_one_rule(void **state)
{
    (void)state;
    struct hours h = parse_ok("Mo-Fr 08:00-12:00,14:00-18:00");
    assert_true(hours_is_open(&h, MO, hm(11, 59)));
    assert_false(hours_is_open(&h, MO, hm(12, 0)));
    assert_false(hours_is_open(&h, MO, hm(13, 59)));
    assert_true(hours_is_open(&h, MO, hm(14, 0)));
    assert_false(hours_is_open(&h, SA, hm(10, 0)));
    assert_int_equal(h.n_ranges[MO], 2);
    assert_int_equal(open_minutes(&h), 5 * 8 * 60);
}

static void test_overlapping_and_touching_spans_merge(void **state)
{
    (void)state;
    struct hours h = parse_ok("10:00-12:00,08:00-11:00,12:00-13:00");
    assert_int_equal(h.n_ranges[TH], 1);
    assert_int_equal(h.ranges[TH][0].start_min, hm(8, 0));
    assert_int_equal(h.ranges[TH][0].end_min, hm(13, 0));
}

static void test_end_at_24_00_closes_at_midnight(void **state)
{
    (void)state;
    struct hours h = parse_ok("Sa 18:00-24:00");
    assert_true(hours_is_open(&h, SA, hm(23, 59)));
    assert_false(hours_is_open(&h, SU, 0));
    assert_int_equal(open_minutes(&h), 360);
}

static void test_span_past_midnight_spills_into_next_day(void **state)
{
    (void)state;
    struct hours h = parse_ok("Fr 22:00-02:00");
    assert_false(hours_is_open(&h, FR, hm(21, 59)));
    assert_true(hours_is_open(&h, FR, hm(22, 0)));
    assert_true(hours_is_open(&h, FR, hm(23, 59)));
    assert_true(hours_is_open(&h, SA, 0));
    assert_true(hours_is_open(&h, SA, hm(1, 59)));
    assert_false(hours_is_open(&h, SA, hm(2, 0)));
    assert_false(hours_is_open(&h, FR, hm(1, 0))); /* Thursday did not spill */
    assert_int_equal(open_minutes(&h), 240);
}

static void test_sunday_spills_into_monday(void **state)
{
    (void)state;
    struct hours h = parse_ok("Su 20:00-03:30");
    assert_true(hours_is_open(&h, MO, hm(3, 29)));
    assert_false(hours_is_open(&h, MO, hm(3, 30)));
    assert_int_equal(open_minutes(&h), 450);
}

static void test_spill_merges_with_next_days_own_span(void **state)
{
    (void)state;
    struct hours h = parse_ok("18:00-06:00");
    /* Every day: [0, 06:00) from yesterday and [18:00, 24:00) of its own. */
    for (int d = 0; d < 7; d++) {
        assert_int_equal(h.n_ranges[d], 2);
        assert_true(hours_is_open(&h, d, hm(5, 59)));
        assert_false(hours_is_open(&h, d, hm(6, 0)));
        assert_true(hours_is_open(&h, d, hm(18, 0)));
    }
    h = parse_ok("00:00-24:00,20:00-02:00");
    for (int d = 0; d < 7; d++)
        assert_int_equal(h.n_ranges[d], 1);
}

static void test_later_rule_overrides_named_days_only(void **state)
{
    (void)state;
    struct hours h = parse_ok("Mo-Fr 08:00-18:00; Fr 08:00-12:00");
    assert_true(hours_is_open(&h, TH, hm(17, 0)));
    assert_false(hours_is_open(&h, FR, hm(17, 0)));
    assert_true(hours_is_open(&h, FR, hm(11, 0)));
    assert_int_equal(open_minutes(&h), 4 * 600 + 240);

    h = parse_ok("Fr 08:00-12:00; Mo-Fr 08:00-18:00");
    assert_true(hours_is_open(&h, FR, hm(17, 0)));
}

static void test_off_closes_named_days(void **state)
{
    (void)state;
    struct hours h = parse_ok("Mo-Su 09:00-17:00; Su off");
    assert_true(hours_is_open(&h, SA, hm(9, 0)));
    assert_false(hours_is_open(&h, SU, hm(9, 0)));
    assert_int_equal(open_minutes(&h), 6 * 480);

    h = parse_ok("24/7; Sa,Su off");
    assert_int_equal(open_minutes(&h), 5 * HOURS_MINUTES_PER_DAY);

    h = parse_ok("off");
    assert_true(hours_is_recorded(&h));
    assert_int_equal(open_minutes(&h), 0);

    h = parse_ok("Mo 10:00-11:00; off; We 10:00-11:00");
    assert_int_equal(open_minutes(&h), 60);
    assert_true(hours_is_open(&h, WE, hm(10, 0)));
}

static void test_override_of_next_day_keeps_previous_spill(void **state)
{
    (void)state;
    /* Documented: a rule replaces a day's own spans, not yesterday's spill. */
    struct hours h = parse_ok("Fr 20:00-02:00; Sa off");
    assert_true(hours_is_open(&h, SA, hm(1, 0)));
    assert_false(hours_is_open(&h, SA, hm(2, 0)));
    /* Replacing Friday itself removes the spill. */
    h = parse_ok("Fr 20:00-02:00; Fr off");
    assert_int_equal(open_minutes(&h), 0);
}

static void test_spaces_around_semicolons_are_allowed(void **state)
{
    (void)state;
    struct hours a = parse_ok("Mo-Fr 08:00-12:00;Sa 09:00-10:00");
    struct hours b = parse_ok("  Mo-Fr   08:00-12:00 ;  Sa\t09:00-10:00  ");
    assert_memory_equal(&a, &b, sizeof a);
}

static void test_spaces_after_commas_and_around_span_dash_are_allowed(void **state)
{
    (void)state;
    struct hours a = parse_ok("Mo,We-Fr 08:00-12:00,14:00-18:00");
    struct hours b = parse_ok("Mo, We-Fr 08:00 - 12:00,  14:00 -18:00");
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(open_minutes(&a), 4 * 8 * 60);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static void test_invalid_inputs_report_reason_and_offset(void **state)
{
    (void)state;
    struct {
        const char *text;
        int code;
        size_t offset;
    } cases[] = {
        {"Mo-Fr 08:00-12:00;", HOURS_ERR_EMPTY_RULE, 18},
        {";Mo 08:00-12:00", HOURS_ERR_EMPTY_RULE, 0},
        {"Mo 08:00-12:00;; Tu off", HOURS_ERR_EMPTY_RULE, 15},
        {"Mx 08:00-12:00", HOURS_ERR_DAY, 0},
        {"Mon 08:00-12:00", HOURS_ERR_DAY, 0},
        {"mo 08:00-12:00", HOURS_ERR_DAY, 0},
        {"Mo-Fx 08:00-12:00", HOURS_ERR_DAY, 3},
        {"PH off", HOURS_ERR_DAY, 0},
        {"Mo ,Tu 08:00-12:00", HOURS_ERR_EXPECTED_SPANS, 3},
        {"Mo - Fr 08:00-12:00", HOURS_ERR_EXPECTED_SPANS, 3},
        {"Mo,,Tu 08:00-12:00", HOURS_ERR_DAY, 3},
        {"Mo 8:00-12:00", HOURS_ERR_TIME, 3},
        {"Mo 08:0-12:00", HOURS_ERR_TIME, 3},
        {"Mo 08:00-12", HOURS_ERR_TIME, 9},
        {"Mo 08:00-120:00", HOURS_ERR_TIME, 9},
        {"Mo 08:00-12:000", HOURS_ERR_TIME, 9},
        {"Mo 08:00-12:00:00", HOURS_ERR_TIME, 9},
        {"Mo 25:00-26:00", HOURS_ERR_TIME_RANGE, 3},
        {"Mo 08:60-12:00", HOURS_ERR_TIME_RANGE, 3},
        {"Mo 24:00-02:00", HOURS_ERR_TIME_RANGE, 3},
        {"Mo 08:00-24:01", HOURS_ERR_TIME_RANGE, 9},
        {"Mo 08:00-08:00", HOURS_ERR_EMPTY_SPAN, 3},
        {"Mo 00:00-00:00", HOURS_ERR_EMPTY_SPAN, 3},
        {"01:00-02:00,03:00-04:00,05:00-06:00,07:00-08:00,09:00-10:00,"
         "11:00-12:00,13:00-14:00,15:00-16:00,17:00-18:00",
         HOURS_ERR_TOO_MANY_SPANS, 96},
        {"Mo-Fr", HOURS_ERR_EXPECTED_SPANS, 5},
        {"Mo-Fr ; Sa off", HOURS_ERR_EXPECTED_SPANS, 6},
        {"Mo08:00-12:00", HOURS_ERR_EXPECTED_SPANS, 2},
        {"Mo closed", HOURS_ERR_EXPECTED_SPANS, 3},
        {"Mo 08:00", HOURS_ERR_EXPECTED_DASH, 8},
        {"Mo 08:00 12:00", HOURS_ERR_EXPECTED_DASH, 9},
        {"Mo 08:00-12:00 ,14:00-18:00", HOURS_ERR_TRAILING, 15},
        {"Mo 08:00-12:00 Tu 08:00-12:00", HOURS_ERR_TRAILING, 15},
        {"24/7 Su off", HOURS_ERR_TRAILING, 5},
        {"Mo 08:00-12:00,,14:00-18:00", HOURS_ERR_TIME, 15},
        {"Mo 08:00-12:00, ", HOURS_ERR_TIME, 16},
        {"Mo off 08:00-09:00", HOURS_ERR_TRAILING, 7},
        {"Mo 24/7", HOURS_ERR_TIME, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct hours h;
        memset(&h, 0xab, sizeof h);
        struct hours_error err = {0, 999};
        int rc = hours_parse(cases[i].text, &h, &err);
        if (rc != cases[i].code || err.code != cases[i].code || err.offset != cases[i].offset)
            fail_msg("\"%s\": got %d (%s) at %zu, expected %d (%s) at %zu", cases[i].text, rc,
                     hours_strerror(rc), err.offset, cases[i].code,
                     hours_strerror(cases[i].code), cases[i].offset);
        assert_false(hours_is_recorded(&h));
        assert_int_equal(open_minutes(&h), 0);
    }
}

static void test_null_arguments_are_rejected(void **state)
{
    (void)state;
    struct hours h;
    struct hours_error err;
    assert_int_equal(hours_parse(NULL, &h, &err), HOURS_ERR_ARG);
    assert_int_equal(err.code, HOURS_ERR_ARG);
    assert_int_equal(hours_parse("24/7", NULL, NULL), HOURS_ERR_ARG);
    assert_int_equal(hours_parse("24/7", &h, NULL), 0);
    assert_false(hours_is_open(NULL, 0, 0));
    assert_false(hours_is_recorded(NULL));
}

static void test_out_of_range_queries_are_closed(void **state)
{
    (void)state;
    struct hours h = parse_ok("24/7");
    assert_false(hours_is_open(&h, -1, 0));
    assert_false(hours_is_open(&h, 7, 0));
    assert_false(hours_is_open(&h, 0, -1));
    assert_false(hours_is_open(&h, 0, HOURS_MINUTES_PER_DAY));
}

static void test_every_error_code_has_its_own_message(void **state)
{
    (void)state;
    int codes[] = {
#define CODE_(name, value, message) name,
        HOURS_ERR_MAP(CODE_)
#undef CODE_
    };
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *msg = hours_strerror(codes[i]);
        assert_true(strlen(msg) > 0);
        assert_string_not_equal(msg, hours_strerror(HOURS_OK));
        assert_string_not_equal(msg, hours_strerror(-1000));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(msg, hours_strerror(codes[j]));
    }
}

/* ------------------------------------------------------------------------ */
/* Evaluating at an instant                                                 */
/* ------------------------------------------------------------------------ */

static void test_is_open_at_uses_shanghai_local_time(void **state)
{
    (void)state;
    /* 2026-11-29 01:00 UTC is Sunday 09:00 in Shanghai. */
    const int64_t sun_0100_utc = 1795914000;
    struct hours h = parse_ok("Su 09:00-10:00");
    assert_int_equal(HOURS_DEFAULT_UTC_OFFSET_MIN, 8 * 60);
    assert_true(hours_is_open_at(&h, sun_0100_utc, HOURS_DEFAULT_UTC_OFFSET_MIN));
    assert_false(hours_is_open_at(&h, sun_0100_utc - 1, HOURS_DEFAULT_UTC_OFFSET_MIN));
    assert_true(hours_is_open_at(&h, sun_0100_utc + 3599, HOURS_DEFAULT_UTC_OFFSET_MIN));
    assert_false(hours_is_open_at(&h, sun_0100_utc + 3600, HOURS_DEFAULT_UTC_OFFSET_MIN));
    assert_false(hours_is_open_at(&h, sun_0100_utc, 0)); /* 01:00 in UTC */
}

static void test_local_time_before_1970(void **state)
{
    (void)state;
    int wd, minute;
    hours_local_time(-1, 0, &wd, &minute); /* 1969-12-31 23:59:59, a Wednesday */
    assert_int_equal(wd, WE);
    assert_int_equal(minute, hm(23, 59));
    hours_local_time(0, -60, &wd, &minute);
    assert_int_equal(wd, WE);
    assert_int_equal(minute, hm(23, 0));
}

static void test_local_time_matches_gmtime(void **state)
{
    (void)state;
    srand(20261129);
    for (int i = 0; i < 20000; i++) {
        int64_t t = ((int64_t)rand() << 16 ^ rand()) % 8000000000LL - 2000000000LL;
        int offset = rand() % (28 * 60) - 14 * 60;
        time_t local = (time_t)(t + offset * 60);
        struct tm tm;
        assert_non_null(gmtime_r(&local, &tm));
        int wd, minute;
        hours_local_time(t, offset, &wd, &minute);
        assert_int_equal(wd, (tm.tm_wday + 6) % 7);
        assert_int_equal(minute, tm.tm_hour * 60 + tm.tm_min);
    }
}

/* ------------------------------------------------------------------------ */
/* Oracle: random timetables against a minute-by-minute reading             */
/* ------------------------------------------------------------------------ */

struct gen_rule {
    unsigned mask;  /* days named; 0x7f when the rule names none */
    bool all_days;  /* no day selector written */
    bool off, always;
    int n;
    int start[HOURS_MAX_SPANS], end[HOURS_MAX_SPANS]; /* minutes; end may be < start */
};

static const char *const names[7] = {"Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"};

/* Writes a random day selector for a random non-empty set of days into buf and
 * returns the set. Uses single days, ranges (sometimes wrapping) and lists. */
static unsigned gen_days(char *buf, size_t len)
{
    unsigned mask = 0;
    int parts = 1 + rand() % 3;
    size_t used = 0;
    for (int i = 0; i < parts; i++) {
        int a = rand() % 7;
        int b = rand() % 3 == 0 ? a : rand() % 7;
        used += (size_t)snprintf(buf + used, len - used, "%s%s",
                                 i ? (rand() % 4 ? "," : ", ") : "", names[a]);
        if (b != a)
            used += (size_t)snprintf(buf + used, len - used, "-%s", names[b]);
        for (int d = a;; d = (d + 1) % 7) {
            mask |= 1u << d;
            if (d == b)
                break;
        }
    }
    return mask;
}

static void gen_rule(struct gen_rule *r, char *buf, size_t len)
{
    size_t used = 0;
    memset(r, 0, sizeof *r);
    if (rand() % 12 == 0) {
        r->always = true;
        r->mask = 0x7f;
        snprintf(buf, len, "24/7");
        return;
    }
    r->all_days = rand() % 5 == 0;
    if (r->all_days) {
        r->mask = 0x7f;
    } else {
        r->mask = gen_days(buf, len);
        used = strlen(buf);
        used += (size_t)snprintf(buf + used, len - used, "%s", rand() % 4 ? " " : "  ");
    }
    if (rand() % 6 == 0) {
        r->off = true;
        snprintf(buf + used, len - used, "off");
        return;
    }
    r->n = 1 + rand() % HOURS_MAX_SPANS;
    if (rand() % 2)
        r->n = 1 + rand() % 3;
    for (int i = 0; i < r->n; i++) {
        int s = rand() % 24 * 60 + (rand() % 2 ? 0 : rand() % 60);
        int e;
        do {
            e = rand() % 25 * 60 + (rand() % 2 ? 0 : rand() % 60);
        } while (e == s || e > 1440 || (e == 1440 && s == 0 && rand() % 2));
        r->start[i] = s;
        r->end[i] = e;
        const char *dash = rand() % 8 ? "-" : " - ";
        used += (size_t)snprintf(buf + used, len - used, "%s%02d:%02d%s%02d:%02d",
                                 i ? (rand() % 4 ? "," : ", ") : "", s / 60, s % 60, dash,
                                 e / 60, e % 60);
    }
}

/* The naive reading: each day keeps the last rule naming it; a minute is open
 * when one of the day's spans covers it, or one of yesterday's spans that ends
 * before its start (past midnight) covers it. */
static bool naive_is_open(const struct gen_rule *rules, int n_rules, int day, int minute)
{
    int today = -1, yesterday = -1;
    int prev_day = (day + 6) % 7;
    for (int i = 0; i < n_rules; i++) {
        if (rules[i].mask & (1u << day))
            today = i;
        if (rules[i].mask & (1u << prev_day))
            yesterday = i;
    }
    if (today >= 0) {
        const struct gen_rule *r = &rules[today];
        if (r->always)
            return true;
        for (int i = 0; i < r->n; i++) {
            int end = r->end[i] < r->start[i] ? 1440 : r->end[i];
            if (minute >= r->start[i] && minute < end)
                return true;
        }
    }
    if (yesterday >= 0) {
        const struct gen_rule *r = &rules[yesterday];
        for (int i = 0; i < r->n; i++) {
            if (r->end[i] < r->start[i] && minute < r->end[i])
                return true;
        }
    }
    return false;
}

static void test_random_timetables_match_naive_reading(void **state)
{
    (void)state;
    srand(4242);
    for (int iter = 0; iter < 3000; iter++) {
        struct gen_rule rules[6];
        char text[2048] = "";
        size_t used = 0;
        int n_rules = 1 + rand() % 6;
        for (int i = 0; i < n_rules; i++) {
            char rule[256];
            gen_rule(&rules[i], rule, sizeof rule);
            used += (size_t)snprintf(text + used, sizeof text - used, "%s%s",
                                     i ? (rand() % 2 ? "; " : ";") : "", rule);
        }
        struct hours h = parse_ok(text);
        assert_true(hours_is_recorded(&h));
        for (int d = 0; d < 7; d++) {
            assert_true(h.n_ranges[d] <= HOURS_MAX_DAY_RANGES);
            for (int k = 0; k < h.n_ranges[d]; k++) {
                assert_true(h.ranges[d][k].start_min < h.ranges[d][k].end_min);
                if (k > 0)
                    assert_true(h.ranges[d][k - 1].end_min < h.ranges[d][k].start_min);
            }
            for (int m = 0; m < HOURS_MINUTES_PER_DAY; m++) {
                bool want = naive_is_open(rules, n_rules, d, m);
                if (hours_is_open(&h, d, m) != want)
                    fail_msg("\"%s\" day %d minute %d: expected %d", text, d, m, want);
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Oracle: the week as bits against the per-instant check it replaced       */
/* ------------------------------------------------------------------------ */

/* The check OPEN made per candidate before the week bits, copied here as
 * the model: the instant split into local weekday and minute with floor
 * divisions, then a scan of that day's ranges. */
static bool model_is_open_at(const struct hours *h, int64_t unix_s, int utc_offset_min)
{
    int64_t local_min = unix_s / 60 - (unix_s % 60 < 0 ? 1 : 0) + utc_offset_min;
    int64_t day = local_min / HOURS_MINUTES_PER_DAY;
    int64_t minute = local_min % HOURS_MINUTES_PER_DAY;
    if (minute < 0) {
        minute += HOURS_MINUTES_PER_DAY;
        day -= 1;
    }
    int64_t wd = (day + 3) % 7;
    if (wd < 0)
        wd += 7;
    if (!h->recorded)
        return false;
    for (int i = 0; i < h->n_ranges[wd]; i++) {
        const struct hours_range *r = &h->ranges[wd][i];
        if (minute >= r->start_min && minute < r->end_min)
            return true;
    }
    return false;
}

/* A random timetable text: usually rules as gen_rule() writes them (day
 * ranges and lists, several spans, spans past midnight, 24/7, off), at times
 * empty or with selectors the parser rejects (public and school holidays,
 * months), which must read as never open. */
static void gen_text(char *text, size_t len)
{
    static const char *const rejected[] = {
        "PH off", "PH 10:00-12:00", "Mo-Fr 08:00-18:00; PH off", "SH off",
        "Mo-Fr 08:00-12:00 || PH off", "Jan-Mar Mo 08:00-09:00", "Mo[1] 08:00-09:00",
        "sunrise-sunset", "Mo-Fr 08:00-18:00 \"closed on holidays\"",
    };
    int kind = rand() % 20;
    if (kind == 0) {
        snprintf(text, len, "%s", rand() % 2 ? "" : "  ");
        return;
    }
    if (kind == 1) {
        snprintf(text, len, "%s", rejected[rand() % (sizeof rejected / sizeof rejected[0])]);
        return;
    }
    size_t used = 0;
    int n_rules = 1 + rand() % 5;
    text[0] = '\0';
    for (int i = 0; i < n_rules; i++) {
        struct gen_rule r;
        char rule[256];
        gen_rule(&r, rule, sizeof rule);
        used += (size_t)snprintf(text + used, len - used, "%s%s", i ? "; " : "", rule);
    }
}

/* A random instant: uniform over 1906-2160, or within a few seconds of a
 * local Monday 00:00 (the week's wrap), a local midnight or a minute's turn. */
static int64_t gen_instant(int utc_offset_min)
{
    int64_t t = ((int64_t)rand() << 31 ^ rand()) % 6000000000LL - 2000000000LL;
    int64_t s;
    switch (rand() % 4) {
    case 0:
        return t;
    case 1: /* 1970-01-05 was a Monday */
        s = ((t / 604800) * 7 + 4) * 86400 - (int64_t)utc_offset_min * 60;
        break;
    case 2:
        s = (t / 86400) * 86400 - (int64_t)utc_offset_min * 60;
        break;
    default:
        s = (t / 60) * 60;
        break;
    }
    return s + rand() % 241 - 120;
}

static void test_week_bits_agree_with_the_per_instant_check(void **state)
{
    (void)state;
    static const int offsets[] = {HOURS_DEFAULT_UTC_OFFSET_MIN, 0, -60, 345, -600, 840, -720};
    srand(20261129);
    long checks = 0, open = 0, recorded = 0;
    for (int iter = 0; iter < 1500; iter++) {
        char text[2048];
        gen_text(text, sizeof text);
        struct hours h;
        bool ok = hours_parse(text, &h, NULL) == 0;
        recorded += ok && hours_is_recorded(&h);
        struct hours_week w;
        hours_week_init(&w, &h);
        for (int i = 0; i < 800; i++) {
            int offset = rand() % 3 ? offsets[rand() % 7] : rand() % (28 * 60) - 14 * 60;
            int64_t t = gen_instant(offset);
            int wm = hours_week_minute(t, offset);
            int wd, minute;
            hours_local_time(t, offset, &wd, &minute);
            if (wm != wd * HOURS_MINUTES_PER_DAY + minute)
                fail_msg("t=%lld offset %d: week minute %d, local %d %d", (long long)t,
                         offset, wm, wd, minute);
            bool want = model_is_open_at(&h, t, offset);
            if (hours_week_is_open(&w, wm) != want)
                fail_msg("\"%s\" t=%lld offset %d: expected %d", text, (long long)t, offset,
                         want);
            assert_int_equal(hours_is_open_at(&h, t, offset), want);
            open += want;
            checks++;
        }
        /* Every minute of the week once, so no bit is left to chance. */
        for (int m = 0; m < HOURS_MINUTES_PER_WEEK; m += 1 + (iter % 3)) {
            bool want = hours_is_open(&h, m / HOURS_MINUTES_PER_DAY, m % HOURS_MINUTES_PER_DAY);
            if (hours_week_is_open(&w, m) != want)
                fail_msg("\"%s\" week minute %d: expected %d", text, m, want);
            checks++;
        }
    }
    assert_true(checks >= 1000000);
    assert_true(open > checks / 20 && open < checks - checks / 20); /* both answers occur */
    assert_true(recorded > 1200 && recorded < 1500);               /* and both kinds of text */
}

static void test_week_bits_outside_the_week_are_closed(void **state)
{
    (void)state;
    struct hours h = parse_ok("24/7");
    struct hours_week w;
    hours_week_init(&w, &h);
    assert_true(hours_week_is_open(&w, 0));
    assert_true(hours_week_is_open(&w, HOURS_MINUTES_PER_WEEK - 1));
    assert_false(hours_week_is_open(&w, -1));
    assert_false(hours_week_is_open(&w, HOURS_MINUTES_PER_WEEK));
    assert_false(hours_week_is_open(&w, INT32_MIN));
    assert_false(hours_week_is_open(&w, INT32_MAX));
    hours_week_init(&w, NULL);
    for (int m = 0; m < HOURS_MINUTES_PER_WEEK; m++)
        assert_false(hours_week_is_open(&w, m));
    /* The week wraps at Monday 00:00 local: 2026-11-29 16:00 UTC is Monday
     * 2026-11-30 00:00 in Shanghai, and still Sunday 16:00 in UTC. */
    const int64_t mon_0000_shanghai = 1795968000;
    assert_int_equal(hours_week_minute(mon_0000_shanghai, HOURS_DEFAULT_UTC_OFFSET_MIN), 0);
    assert_int_equal(hours_week_minute(mon_0000_shanghai - 1, HOURS_DEFAULT_UTC_OFFSET_MIN),
                     HOURS_MINUTES_PER_WEEK - 1);
    assert_int_equal(hours_week_minute(mon_0000_shanghai, 0), 6 * 1440 + 16 * 60);
    assert_int_equal(hours_week_minute(-1, 0), 2 * 1440 + 1439); /* Wednesday 23:59 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_string_is_not_recorded_and_never_open),
        cmocka_unit_test(test_24_7_is_always_open),
        cmocka_unit_test(test_rule_without_days_applies_every_day),
        cmocka_unit_test(test_day_range_list_and_mixed_selectors),
        cmocka_unit_test(test_several_spans_in_one_rule),
        cmocka_unit_test(test_overlapping_and_touching_spans_merge),
        cmocka_unit_test(test_end_at_24_00_closes_at_midnight),
        cmocka_unit_test(test_span_past_midnight_spills_into_next_day),
        cmocka_unit_test(test_sunday_spills_into_monday),
        cmocka_unit_test(test_spill_merges_with_next_days_own_span),
        cmocka_unit_test(test_later_rule_overrides_named_days_only),
        cmocka_unit_test(test_off_closes_named_days),
        cmocka_unit_test(test_override_of_next_day_keeps_previous_spill),
        cmocka_unit_test(test_spaces_around_semicolons_are_allowed),
        cmocka_unit_test(test_spaces_after_commas_and_around_span_dash_are_allowed),
        cmocka_unit_test(test_invalid_inputs_report_reason_and_offset),
        cmocka_unit_test(test_null_arguments_are_rejected),
        cmocka_unit_test(test_out_of_range_queries_are_closed),
        cmocka_unit_test(test_every_error_code_has_its_own_message),
        cmocka_unit_test(test_is_open_at_uses_shanghai_local_time),
        cmocka_unit_test(test_local_time_before_1970),
        cmocka_unit_test(test_local_time_matches_gmtime),
        cmocka_unit_test(test_random_timetables_match_naive_reading),
        cmocka_unit_test(test_week_bits_agree_with_the_per_instant_check),
        cmocka_unit_test(test_week_bits_outside_the_week_are_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
