/* hours.h: opening hours, a documented subset of OpenStreetMap's
 * `opening_hours` syntax, parsed into a fixed-size weekly timetable.
 *
 * Facilities in the Licang dataset carry opening hours (and meal-point and
 * shared-parking hours) as text; the importer validates that text with
 * hours_parse() and the daemon answers "open now?" from each timetable's
 * week bits (hours_week_init(), hours_week_is_open()); hours_is_open_at()
 * answers the same for one timetable and one instant.
 * Everything here is pure: no I/O, no allocation, no globals, reentrant.
 *
 * Grammar (ABNF-like; SP is one or more spaces or tabs, [x] is optional):
 *
 *     hours    = "" | [SP] rule *( [SP] ";" [SP] rule ) [SP]
 *     rule     = "24/7"
 *              | [ days SP ] ( spans | "off" )
 *     days     = dayspec *( "," [SP] dayspec )
 *     dayspec  = day [ "-" day ]              ; "Fr-Mo" wraps: Fr,Sa,Su,Mo
 *     day      = "Mo" | "Tu" | "We" | "Th" | "Fr" | "Sa" | "Su"
 *     spans    = span *( "," [SP] span )      ; at most HOURS_MAX_SPANS per rule
 *     span     = time [SP] "-" [SP] time
 *     time     = 2DIGIT ":" 2DIGIT            ; 00:00 .. 23:59; "24:00" only as an end
 *
 * Spaces are allowed where [SP] appears, so the common hand-written forms
 * "08:00 - 12:00" and "08:00-12:00, 14:00-18:00" are accepted; a space inside a
 * day range ("Mo - Fr") or before a comma is not.
 *
 * Meaning:
 *   - The empty string (or only spaces) means "no hours recorded": the
 *     timetable is never open and hours_is_recorded() is false.
 *   - A rule without days applies to every day. "24/7" is every day 00:00-24:00.
 *   - A span is [start, end): open at start, closed at end. When end is earlier
 *     than start ("22:00-02:00") the span runs past midnight and the part after
 *     midnight belongs to the next day (Sunday spills into Monday). A span whose
 *     end equals its start is an error, not a 24-hour day (write 00:00-24:00).
 *   - Rules are read left to right. A rule replaces the whole schedule of every
 *     day it names, as in OSM: "Mo-Fr 08:00-18:00; Fr 08:00-12:00" closes Friday
 *     at noon, and "Mo-Su 09:00-17:00; Su off" is closed on Sunday. A day's
 *     schedule includes its own spill past midnight, so "Fr 20:00-02:00; Sa off"
 *     is open until 02:00 on Saturday: the later rule replaced Saturday's own
 *     spans, not Friday's.
 *   - Day names and "off" are case-sensitive, as in OSM. Public holidays (PH),
 *     months, weeks, comments and the other OSM selectors are not supported and
 *     are reported as errors, so text we cannot evaluate is never guessed at.
 *
 * Weekdays are numbered 0 = Monday .. 6 = Sunday (OSM order, unlike struct tm).
 * Minutes of the day are 0 .. 1439. */
#ifndef NEARESTD_HOURS_H
#define NEARESTD_HOURS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* At most this many time spans in one rule. Real timetables use one to three
 * (morning, afternoon, evening); eight leaves room without allocation. */
#define HOURS_MAX_SPANS 8

/* Per day the timetable holds the day's own spans plus at most one range
 * spilled from the previous evening, after merging overlaps. */
#define HOURS_MAX_DAY_RANGES (HOURS_MAX_SPANS + 1)

#define HOURS_MINUTES_PER_DAY 1440

/* Asia/Shanghai is UTC+8 all year: China has had no daylight saving since 1991. */
#define HOURS_SHANGHAI_UTC_OFFSET_MIN 480
/* The offset nearestd evaluates opening hours in unless told otherwise. */
#define HOURS_DEFAULT_UTC_OFFSET_MIN HOURS_SHANGHAI_UTC_OFFSET_MIN

/* Errors of the hours module: 0 or one of these negative values.
 * HOURS_ERR_MAP(X) expands X(name, value, message) once per code, so the enum
 * and hours_strerror() come from one list. */
#define HOURS_ERR_MAP(X)                                                              \
    X(HOURS_ERR_ARG, -1, "invalid argument")                                          \
    X(HOURS_ERR_EMPTY_RULE, -2, "empty rule between ';'")                             \
    X(HOURS_ERR_DAY, -3, "unknown weekday (expected Mo, Tu, We, Th, Fr, Sa or Su)")   \
    X(HOURS_ERR_TIME, -4, "malformed time (expected HH:MM)")                          \
    X(HOURS_ERR_TIME_RANGE, -5, "time out of range (00:00-23:59, 24:00 only as end)") \
    X(HOURS_ERR_EMPTY_SPAN, -6, "time span ends when it starts")                      \
    X(HOURS_ERR_TOO_MANY_SPANS, -7, "more than 8 time spans in one rule")             \
    X(HOURS_ERR_EXPECTED_SPANS, -8, "expected time spans or 'off' after the days")    \
    X(HOURS_ERR_EXPECTED_DASH, -9, "expected '-' between start and end time")         \
    X(HOURS_ERR_TRAILING, -10, "unexpected text (expected ';' or the end)")

enum hours_err {
    HOURS_OK = 0,
#define HOURS_ERR_ENUM_(name, value, message) name = value,
    HOURS_ERR_MAP(HOURS_ERR_ENUM_)
#undef HOURS_ERR_ENUM_
};

/* One open interval within a day, [start_min, end_min), 0 <= start < end <= 1440. */
struct hours_range {
    uint16_t start_min;
    uint16_t end_min;
};

/* A weekly timetable, fully materialised: spills past midnight are already
 * moved to the next day, and each day's ranges are sorted, disjoint and not
 * touching. Plain data (about 260 bytes), caller-owned, copyable with `=`. */
struct hours {
    bool recorded;                /* false for "" : never open */
    uint8_t n_ranges[7];          /* per weekday, 0 = Monday */
    struct hours_range ranges[7][HOURS_MAX_DAY_RANGES];
};

/* Where and why hours_parse() failed. */
struct hours_error {
    int code;          /* an enum hours_err value, HOURS_OK on success */
    size_t offset;     /* byte offset into the text where the problem starts */
};

/* Parses `text` (NUL-terminated) into *out. On success returns 0 and *out is
 * the timetable; on failure returns a negative enum hours_err, leaves *out
 * "not recorded" (never open), and, when err is not NULL, fills it with the
 * code and the byte offset of the offending character. Returns HOURS_ERR_ARG
 * when text or out is NULL. */
int hours_parse(const char *text, struct hours *out, struct hours_error *err);

/* Returns true when the timetable records any hours (parsed from non-empty text). */
bool hours_is_recorded(const struct hours *h);

/* Returns true when open on `weekday` (0 = Monday .. 6 = Sunday) at
 * `minute_of_day` (0 .. 1439). False when h is NULL, not recorded, or either
 * argument is out of range. */
bool hours_is_open(const struct hours *h, int weekday, int minute_of_day);

/* Returns true when open at the instant `unix_s` (seconds since 1970-01-01
 * UTC) as seen in local time UTC + utc_offset_min minutes; pass
 * HOURS_DEFAULT_UTC_OFFSET_MIN for Licang. Works for instants before 1970. */
bool hours_is_open_at(const struct hours *h, int64_t unix_s, int utc_offset_min);

/* Splits an instant into local weekday (0 = Monday) and minute of the day, the
 * way hours_is_open_at() does. Either out-pointer may be NULL. */
void hours_local_time(int64_t unix_s, int utc_offset_min, int *weekday, int *minute_of_day);

/* ---- The week as bits, for checking many timetables at one instant ----
 *
 * A query with OPEN checks one instant against the timetable of every
 * candidate the index visits (40 - 60 for a NEAREST k=5 on the bench data).
 * hours_is_open_at() would redo the calendar arithmetic and scan the day's
 * ranges each time; instead the caller resolves the instant once to a minute
 * of the local week, and each timetable is kept as one bit per minute of the
 * week, so a check is one load and a bit test. */

/* Minutes in a week. A week minute is weekday * 1440 + minute of the day:
 * 0 is Monday 00:00, 10079 is Sunday 23:59. */
#define HOURS_MINUTES_PER_WEEK (7 * HOURS_MINUTES_PER_DAY)
#define HOURS_WEEK_WORDS ((HOURS_MINUTES_PER_WEEK + 63) / 64)

/* A timetable as bits (1,264 bytes): bit m % 64 of word m / 64 is set when
 * open at week minute m. Plain data, copyable with `=`; all zero is never
 * open. */
struct hours_week {
    uint64_t open[HOURS_WEEK_WORDS];
};

/* Fills *w from h: open at week minute m exactly when hours_is_open(h,
 * m / 1440, m % 1440). A NULL or unrecorded h gives all zero. */
void hours_week_init(struct hours_week *w, const struct hours *h);

/* The week minute of the instant `unix_s` seen at UTC + utc_offset_min, the
 * local weekday and minute hours_local_time() gives, as one number in
 * [0, HOURS_MINUTES_PER_WEEK). */
int hours_week_minute(int64_t unix_s, int utc_offset_min);

/* True when open at `week_minute`; false when it is outside
 * [0, HOURS_MINUTES_PER_WEEK). hours_week_is_open(w, hours_week_minute(t, off))
 * answers what hours_is_open_at(h, t, off) does. */
static inline bool hours_week_is_open(const struct hours_week *w, int week_minute)
{
    unsigned m = (unsigned)week_minute;
    return m < HOURS_MINUTES_PER_WEEK && (w->open[m / 64] >> (m % 64) & 1u);
}

/* Returns a static sentence for an enum hours_err value ("ok" for 0). */
const char *hours_strerror(int code);

#endif
