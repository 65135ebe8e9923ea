/* cli_table.h: how the `nearest` CLI shows answers to people and scripts.
 *
 * Kept apart from main() so tests can check the output without a terminal.
 * Widths are display columns of UTF-8 text: CJK and other East Asian wide
 * characters take two, combining marks none, computed here from Unicode
 * ranges rather than wcwidth(), so the table lines up whatever the locale. */
#ifndef NEARESTD_CLI_TABLE_H
#define NEARESTD_CLI_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "nearest.h"

/* Columns the code point takes on a terminal: 0, 1 or 2 (control
 * characters 0). */
int cli_codepoint_width(unsigned long cp);

/* Display columns of a NUL-terminated UTF-8 string. A byte that does not
 * start a valid sequence counts as one column (it prints as a replacement). */
size_t cli_display_width(const char *utf8);

/* Writes a distance for people into buf (cap bytes, NUL-terminated, cut if
 * short): "850 m" below 1 km, "1.24 km" below 100 km, "123.4 km" beyond,
 * "-" without a distance. */
void cli_format_distance(bool has_distance, double distance_m, char *buf, size_t cap);

#define CLI_TABLE_MAX_ATTRS 8      /* attribute columns; as many as WHEREs in one request */

/* Prints an OK answer as an aligned table with the columns
 * "#  name  distance  lat, lon  id", plus "category" after the name when the
 * records hold more than one category, one row per facility record; records
 * that are not facilities are printed as their fields joined by two spaces.
 * Control characters (C0, DEL, C1) in names, ids and fields print as '?', so
 * a record cannot drive the terminal. */
void cli_table_print(FILE *out, const struct cli_reply *reply);

/* The same table with one more column after "distance" for each attribute
 * named in attrs[0..n_attrs-1] (at most CLI_TABLE_MAX_ATTRS; the rest are
 * left out), holding the facility's value or "-". attrs is borrowed. */
void cli_table_print_attrs(FILE *out, const struct cli_reply *reply, const char *const *attrs,
                           size_t n_attrs);

/* A facility id and its name, both borrowed, to show who serves an area. */
struct cli_id_name {
    const char *id;
    const char *name;
};

/* Prints the area records of a SERVES or AREAS answer as an aligned table
 * "kind  name  id  served by" (no "served by" column for AREAS). The served
 * facilities show as "name (id)" when names[0..n_names-1] knows the id, as
 * the id otherwise, joined by ", ", or "-" when none. Other records print as
 * their fields joined by two spaces. Returns 0, or CLI_ERR_NOMEM (nothing
 * printed). */
int cli_areas_print(FILE *out, const struct cli_reply *reply, const struct cli_id_name *names,
                    size_t n_names);

/* Prints a HELP answer for people: each usage line, then its summary
 * indented by four spaces. */
void cli_help_print(FILE *out, const struct cli_reply *reply);

/* Prints the records of an OK answer as received: one tab-separated line
 * each. Nothing is replaced: this is for scripts. */
void cli_tsv_print(FILE *out, const struct cli_reply *reply);

/* Prints an answer as received: the header line, then the record lines. */
void cli_raw_print(FILE *out, const struct cli_reply *reply);

#endif
