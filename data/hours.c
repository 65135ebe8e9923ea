/* hours.c: parses the opening-hours subset described in hours.h and answers
 * "open at this minute?".
 *
 * Parsing happens in two passes over fixed arrays. First every rule writes its
 * spans into the schedule of each day it names, replacing what was there, with
 * ends up to 2880 minutes so a span past midnight stays whole. Then each day is
 * materialised: its own spans cut at midnight, plus the part of the previous
 * day's spans that ran past midnight, sorted and merged. Queries then scan at
 * most HOURS_MAX_DAY_RANGES ranges, so there is no need for anything cleverer
 * than a linear scan. The importer parses a few hundred strings at start-up.
 * The daemon's OPEN filter checks one instant against 40 - 60 timetables a
 * query, so it keeps each timetable as 10,080 bits, one per minute of the
 * week (1,264 bytes; Licang has about a dozen distinct timetables), and
 * resolves the instant to its week minute once. */
#include "hours.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

const char *hours_strerror(int code)
{
    switch (code) {
    case HOURS_OK:
        return "ok";
#define HOURS_ERR_CASE_(name, value, message) \
    case name:                                \
        return message;
        HOURS_ERR_MAP(HOURS_ERR_CASE_)
#undef HOURS_ERR_CASE_
    default:
        return "unknown opening-hours error";
    }
}

/* ------------------------------------------------------------------------ */
/* The parser                                                               */
/* ------------------------------------------------------------------------ */

/* One day's schedule as the rules leave it: spans in [0, 2880). */
struct day_spans {
    uint8_t n;
    uint16_t start_min[HOURS_MAX_SPANS];
    uint16_t end_min[HOURS_MAX_SPANS];
};

struct parser {
    const char *text;
    size_t pos;
    int code;
    size_t err_pos;
};

static const char *const day_names[7] = {"Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"};

static int fail(struct parser *p, int code, size_t at)
{
    p->code = code;
    p->err_pos = at;
    return code;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static void skip_space(struct parser *p)
{
    while (is_space(p->text[p->pos]))
        p->pos++;
}

/* True when the text at the cursor starts with `word` and the word ends there
 * (not followed by a letter or digit). Does not move the cursor. */
static bool at_word(const struct parser *p, const char *word)
{
    size_t n = strlen(word);
    if (strncmp(p->text + p->pos, word, n) != 0)
        return false;
    char next = p->text[p->pos + n];
    return !(is_digit(next) || (next >= 'A' && next <= 'Z') || (next >= 'a' && next <= 'z'));
}

static int parse_day(struct parser *p, int *day)
{
    for (int d = 0; d < 7; d++) {
        if (p->text[p->pos] == day_names[d][0] && p->text[p->pos + 1] == day_names[d][1]) {
            char next = p->text[p->pos + 2];
            if ((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z'))
                break; /* "Mon", "Sat": not our two-letter names */
            *day = d;
            p->pos += 2;
            return 0;
        }
    }
    return fail(p, HOURS_ERR_DAY, p->pos);
}

/* days = dayspec *( "," dayspec ); sets bit d of *mask for every day named. */
static int parse_days(struct parser *p, unsigned *mask)
{
    *mask = 0;
    for (;;) {
        int first, last;
        int rc = parse_day(p, &first);
        if (rc < 0)
            return rc;
        last = first;
        if (p->text[p->pos] == '-') {
            p->pos++;
            rc = parse_day(p, &last);
            if (rc < 0)
                return rc;
        }
        for (int d = first;; d = (d + 1) % 7) {
            *mask |= 1u << d;
            if (d == last)
                break;
        }
        if (p->text[p->pos] != ',')
            return 0;
        p->pos++;
        skip_space(p);
    }
}

/* time = 2DIGIT ":" 2DIGIT; 24:00 only when allow_24 (an end). */
static int parse_time(struct parser *p, bool allow_24, int *minutes)
{
    const char *s = p->text + p->pos;
    size_t at = p->pos;
    if (!(is_digit(s[0]) && is_digit(s[1]) && s[2] == ':' && is_digit(s[3]) && is_digit(s[4])))
        return fail(p, HOURS_ERR_TIME, at);
    if (is_digit(s[5]) || s[5] == ':')
        return fail(p, HOURS_ERR_TIME, at);
    int hh = (s[0] - '0') * 10 + (s[1] - '0');
    int mm = (s[3] - '0') * 10 + (s[4] - '0');
    bool ok = mm <= 59 && (hh <= 23 || (allow_24 && hh == 24 && mm == 0));
    if (!ok)
        return fail(p, HOURS_ERR_TIME_RANGE, at);
    *minutes = hh * 60 + mm;
    p->pos += 5;
    return 0;
}

/* spans = span *( "," span ); writes them to *out. */
static int parse_spans(struct parser *p, struct day_spans *out)
{
    out->n = 0;
    for (;;) {
        size_t span_at = p->pos;
        int start, end;
        int rc = parse_time(p, false, &start);
        if (rc < 0)
            return rc;
        skip_space(p);
        if (p->text[p->pos] != '-')
            return fail(p, HOURS_ERR_EXPECTED_DASH, p->pos);
        p->pos++;
        skip_space(p);
        rc = parse_time(p, true, &end);
        if (rc < 0)
            return rc;
        if (end == start)
            return fail(p, HOURS_ERR_EMPTY_SPAN, span_at);
        if (end < start)
            end += HOURS_MINUTES_PER_DAY;
        if (out->n == HOURS_MAX_SPANS)
            return fail(p, HOURS_ERR_TOO_MANY_SPANS, span_at);
        out->start_min[out->n] = (uint16_t)start;
        out->end_min[out->n] = (uint16_t)end;
        out->n++;
        if (p->text[p->pos] != ',')
            return 0;
        p->pos++;
        skip_space(p);
    }
}

/* rule = "24/7" | [ days SP ] ( spans | "off" ); applies it to week[]. */
static int parse_rule(struct parser *p, struct day_spans week[7])
{
    unsigned mask = 0x7f;
    struct day_spans spans = {0};
    char c = p->text[p->pos];

    if (c == '\0' || c == ';')
        return fail(p, HOURS_ERR_EMPTY_RULE, p->pos);
    if (strncmp(p->text + p->pos, "24/7", 4) == 0) {
        p->pos += 4;
        spans.n = 1;
        spans.start_min[0] = 0;
        spans.end_min[0] = HOURS_MINUTES_PER_DAY;
    } else {
        if (!is_digit(c) && !at_word(p, "off")) {
            int rc = parse_days(p, &mask);
            if (rc < 0)
                return rc;
            size_t before_space = p->pos;
            skip_space(p);
            c = p->text[p->pos];
            /* "Mo-Fr" alone, "Mo-Fr;..." or "Mo08:00": say what should follow. */
            if (p->pos == before_space || !(is_digit(c) || at_word(p, "off")))
                return fail(p, HOURS_ERR_EXPECTED_SPANS, p->pos);
        }
        if (at_word(p, "off")) {
            p->pos += 3;
        } else {
            int rc = parse_spans(p, &spans);
            if (rc < 0)
                return rc;
        }
    }
    for (int d = 0; d < 7; d++) {
        if (mask & (1u << d))
            week[d] = spans;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Materialising the week                                                   */
/* ------------------------------------------------------------------------ */

static void sort_ranges(struct hours_range *r, int n)
{
    for (int i = 1; i < n; i++) {
        struct hours_range x = r[i];
        int j = i - 1;
        while (j >= 0 && r[j].start_min > x.start_min) {
            r[j + 1] = r[j];
            j--;
        }
        r[j + 1] = x;
    }
}

/* Builds day d's ranges from its own spans and yesterday's spill past midnight.
 * At most HOURS_MAX_SPANS own spans plus one spill range [0, x) survive merging:
 * every own span starts before midnight, so they merge to at most 8 ranges, and
 * all spills start at 0 and merge to one. */
static void materialise_day(const struct day_spans *own, const struct day_spans *yesterday,
                            struct hours *out, int d)
{
    struct hours_range tmp[2 * HOURS_MAX_SPANS];
    int n = 0;
    for (int i = 0; i < own->n; i++) {
        uint16_t end = own->end_min[i];
        if (end > HOURS_MINUTES_PER_DAY)
            end = HOURS_MINUTES_PER_DAY;
        tmp[n++] = (struct hours_range){own->start_min[i], end};
    }
    for (int i = 0; i < yesterday->n; i++) {
        if (yesterday->end_min[i] > HOURS_MINUTES_PER_DAY) {
            uint16_t end = (uint16_t)(yesterday->end_min[i] - HOURS_MINUTES_PER_DAY);
            tmp[n++] = (struct hours_range){0, end};
        }
    }
    sort_ranges(tmp, n);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m > 0 && tmp[i].start_min <= out->ranges[d][m - 1].end_min) {
            if (tmp[i].end_min > out->ranges[d][m - 1].end_min)
                out->ranges[d][m - 1].end_min = tmp[i].end_min;
        } else {
            out->ranges[d][m++] = tmp[i];
        }
    }
    out->n_ranges[d] = (uint8_t)m;
}

int hours_parse(const char *text, struct hours *out, struct hours_error *err)
{
    struct parser p = {.text = text, .pos = 0, .code = HOURS_OK, .err_pos = 0};
    struct day_spans week[7];
    int rc = 0;

    if (out == NULL || text == NULL) {
        rc = fail(&p, HOURS_ERR_ARG, 0);
        goto done;
    }
    memset(out, 0, sizeof *out);
    memset(week, 0, sizeof week);

    skip_space(&p);
    if (text[p.pos] == '\0')
        goto done; /* no hours recorded */
    for (;;) {
        rc = parse_rule(&p, week);
        if (rc < 0)
            goto done;
        skip_space(&p);
        if (text[p.pos] == '\0')
            break;
        if (text[p.pos] != ';') {
            rc = fail(&p, HOURS_ERR_TRAILING, p.pos);
            goto done;
        }
        p.pos++;
        skip_space(&p);
    }
    out->recorded = true;
    for (int d = 0; d < 7; d++)
        materialise_day(&week[d], &week[(d + 6) % 7], out, d);

done:
    if (rc < 0 && out != NULL)
        memset(out, 0, sizeof *out);
    if (err != NULL) {
        err->code = rc < 0 ? p.code : HOURS_OK;
        err->offset = rc < 0 ? p.err_pos : 0;
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Queries                                                                  */
/* ------------------------------------------------------------------------ */

bool hours_is_recorded(const struct hours *h)
{
    return h != NULL && h->recorded;
}

bool hours_is_open(const struct hours *h, int weekday, int minute_of_day)
{
    if (h == NULL || !h->recorded || weekday < 0 || weekday > 6 || minute_of_day < 0 ||
        minute_of_day >= HOURS_MINUTES_PER_DAY)
        return false;
    for (int i = 0; i < h->n_ranges[weekday]; i++) {
        const struct hours_range *r = &h->ranges[weekday][i];
        if (minute_of_day >= r->start_min && minute_of_day < r->end_min)
            return true;
    }
    return false;
}

void hours_local_time(int64_t unix_s, int utc_offset_min, int *weekday, int *minute_of_day)
{
    int64_t local_min = unix_s / 60 - (unix_s % 60 < 0 ? 1 : 0) + utc_offset_min;
    int64_t day = local_min / HOURS_MINUTES_PER_DAY;
    int64_t minute = local_min % HOURS_MINUTES_PER_DAY;
    if (minute < 0) {
        minute += HOURS_MINUTES_PER_DAY;
        day -= 1;
    }
    /* 1970-01-01 was a Thursday, weekday 3 when Monday is 0. */
    int64_t wd = (day + 3) % 7;
    if (wd < 0)
        wd += 7;
    if (weekday != NULL)
        *weekday = (int)wd;
    if (minute_of_day != NULL)
        *minute_of_day = (int)minute;
}

bool hours_is_open_at(const struct hours *h, int64_t unix_s, int utc_offset_min)
{
    int weekday, minute;
    hours_local_time(unix_s, utc_offset_min, &weekday, &minute);
    return hours_is_open(h, weekday, minute);
}

/* ------------------------------------------------------------------------ */
/* The week as bits                                                         */
/* ------------------------------------------------------------------------ */

/* Sets bits [from, to) of the week, from < to <= HOURS_MINUTES_PER_WEEK. */
static void week_set(struct hours_week *w, unsigned from, unsigned to)
{
    for (unsigned m = from; m < to; m++)
        w->open[m / 64] |= (uint64_t)1 << (m % 64);
}

void hours_week_init(struct hours_week *w, const struct hours *h)
{
    memset(w, 0, sizeof *w);
    if (!hours_is_recorded(h))
        return;
    for (unsigned d = 0; d < 7; d++) {
        for (int i = 0; i < h->n_ranges[d] && i < HOURS_MAX_DAY_RANGES; i++) {
            const struct hours_range *r = &h->ranges[d][i];
            unsigned end = r->end_min < HOURS_MINUTES_PER_DAY ? r->end_min
                                                               : HOURS_MINUTES_PER_DAY;
            if (r->start_min < end)
                week_set(w, d * HOURS_MINUTES_PER_DAY + r->start_min,
                         d * HOURS_MINUTES_PER_DAY + end);
        }
    }
}

int hours_week_minute(int64_t unix_s, int utc_offset_min)
{
    /* Floor divisions, so instants before 1970 and negative offsets work;
     * 1970-01-01 00:00 was a Thursday, week minute 3 * 1440. */
    int64_t local_min = unix_s / 60 - (unix_s % 60 < 0 ? 1 : 0) + utc_offset_min;
    int64_t m = (local_min + 3 * HOURS_MINUTES_PER_DAY) % HOURS_MINUTES_PER_WEEK;
    if (m < 0)
        m += HOURS_MINUTES_PER_WEEK;
    return (int)m;
}
