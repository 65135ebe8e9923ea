/* fuzz_hours.c: libFuzzer target for the opening-hours parser (data/hours.h).
 *
 * The input, cut at its first NUL, is the text given to hours_parse(). Beyond
 * "does not crash", every input checks the parser's promises:
 *   - the return value is 0 or one of HOURS_ERR_MAP's codes, and the error
 *     record agrees with it and points inside the text;
 *   - a failed parse leaves a timetable that is never open;
 *   - a successful one is recorded exactly when the text is not blank, and its
 *     ranges are sorted, disjoint, not touching and inside [0, 1440];
 *   - hours_is_open() agrees, at every one of the 7 x 1440 minutes of the week,
 *     with a plain scan of those ranges, and is false out of range;
 *   - hours_is_open_at() agrees with hours_local_time() + hours_is_open(),
 *     and so do the week bits at hours_week_minute() (OPEN's fast path);
 *   - appending "; 24/7" to accepted, recorded text opens every minute.
 * 10 080 minute probes cost about 50 us, so the target still runs thousands of
 * inputs a second. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "hours.h"

static bool is_known_code(int rc)
{
    switch (rc) {
    case HOURS_OK:
#define FUZZ_HOURS_CASE_(name, value, message) case name:
        HOURS_ERR_MAP(FUZZ_HOURS_CASE_)
#undef FUZZ_HOURS_CASE_
        return true;
    default:
        return false;
    }
}

static bool is_blank(const char *text)
{
    for (const char *c = text; *c != '\0'; c++) {
        if (*c != ' ' && *c != '\t') {
            return false;
        }
    }
    return true;
}

/* The obviously correct answer: scan the day's materialised ranges. */
static bool open_by_scan(const struct hours *h, int day, int minute)
{
    for (int i = 0; i < h->n_ranges[day]; i++) {
        if (h->ranges[day][i].start_min <= minute && minute < h->ranges[day][i].end_min) {
            return true;
        }
    }
    return false;
}

static void check_never_open(const struct hours *h)
{
    CHECK(!hours_is_recorded(h));
    for (int day = 0; day < 7; day++) {
        for (int minute = 0; minute < HOURS_MINUTES_PER_DAY; minute++) {
            CHECK(!hours_is_open(h, day, minute));
        }
    }
}

static void check_timetable(const struct hours *h)
{
    for (int day = 0; day < 7; day++) {
        CHECK(h->n_ranges[day] <= HOURS_MAX_DAY_RANGES);
        for (int i = 0; i < h->n_ranges[day]; i++) {
            const struct hours_range *r = &h->ranges[day][i];
            CHECK(r->start_min < r->end_min);
            CHECK(r->end_min <= HOURS_MINUTES_PER_DAY);
            if (i > 0) {
                /* Sorted, disjoint and not touching: merged. */
                CHECK(h->ranges[day][i - 1].end_min < r->start_min);
            }
        }
        for (int minute = 0; minute < HOURS_MINUTES_PER_DAY; minute++) {
            CHECK(hours_is_open(h, day, minute) == open_by_scan(h, day, minute));
        }
        CHECK(!hours_is_open(h, day, -1));
        CHECK(!hours_is_open(h, day, HOURS_MINUTES_PER_DAY));
    }
    CHECK(!hours_is_open(h, -1, 0));
    CHECK(!hours_is_open(h, 7, 0));
}

/* Instants taken from the input bytes, including ones far before 1970. */
static void check_instants(const struct hours *h, const uint8_t *data, size_t size)
{
    struct hours_week week;
    hours_week_init(&week, h);
    for (size_t at = 0; at + 10 <= size && at < 80; at += 10) {
        int64_t unix_s;
        int16_t offset;
        memcpy(&unix_s, data + at, sizeof unix_s);
        memcpy(&offset, data + at + 8, sizeof offset);
        /* Keep the local time representable: +-2^60 s and +-1 day of offset. */
        unix_s >>= 3;
        int offset_min = offset % HOURS_MINUTES_PER_DAY;
        int day = -1, minute = -1;
        hours_local_time(unix_s, offset_min, &day, &minute);
        CHECK(day >= 0 && day < 7);
        CHECK(minute >= 0 && minute < HOURS_MINUTES_PER_DAY);
        CHECK(hours_is_open_at(h, unix_s, offset_min) == hours_is_open(h, day, minute));
        int week_minute = hours_week_minute(unix_s, offset_min);
        CHECK(week_minute == day * HOURS_MINUTES_PER_DAY + minute);
        CHECK(hours_week_is_open(&week, week_minute) == hours_is_open(h, day, minute));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* "; 24/7" and the NUL: 7 bytes more than the input. */
    char *text = malloc(size + 8);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    size_t len = strlen(text);

    struct hours h;
    struct hours_error err = {.code = 12345, .offset = (size_t)-1};
    int rc = hours_parse(text, &h, &err);
    CHECK(is_known_code(rc));
    CHECK(rc != HOURS_ERR_ARG);
    CHECK(hours_strerror(rc) != NULL);
    CHECK(err.code == rc);
    if (rc != HOURS_OK) {
        CHECK(err.offset <= len);
        check_never_open(&h);
        check_instants(&h, data, size);
        goto done;
    }
    CHECK(hours_is_recorded(&h) == !is_blank(text));
    if (!hours_is_recorded(&h)) {
        check_never_open(&h);
        goto done;
    }
    check_timetable(&h);
    check_instants(&h, data, size);

    /* A later rule replaces every day it names, spills included. */
    memcpy(text + len, "; 24/7", 7);
    struct hours all;
    CHECK(hours_parse(text, &all, NULL) == HOURS_OK);
    for (int day = 0; day < 7; day++) {
        for (int minute = 0; minute < HOURS_MINUTES_PER_DAY; minute++) {
            CHECK(hours_is_open(&all, day, minute));
        }
    }

done:
    free(text);
    return 0;
}
