/* import.h: reading facility and area lists (CSV, GeoJSON) into the
 * catalogue, and writing them back out in the same formats.
 *
 * The formats are described in docs/IMPORT.md. The functions here do not
 * open transactions: the caller wraps a whole import in store_batch_begin() /
 * store_batch_commit() so that it is all or nothing, which is what
 * nearest-import and store_create() do. */
#ifndef NEARESTD_IMPORT_H
#define NEARESTD_IMPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "store.h"

/* At most this many --map renames. */
#define IMPORT_MAX_MAPS 64

/* What a file holds. */
enum import_kind {
    IMPORT_DETECT = -1,      /* facilities, unless GeoJSON with (Multi)Polygon geometries */
    IMPORT_FACILITIES = 0,
    IMPORT_AREAS = 1,
};

struct import_opts {
    int crs;              /* enum geo_crs of the input coordinates; 0 = WGS84 */
    int kind;             /* enum import_kind */
    bool keep_going;      /* only changes the exit status and what the caller commits */
    size_t n_maps;        /* renames applied to CSV columns and GeoJSON properties */
    const char *map_src[IMPORT_MAX_MAPS];
    const char *map_dst[IMPORT_MAX_MAPS];
    FILE *errors;         /* one line per rejected record goes here; NULL: nowhere */
    bool progress;        /* rows, rows/s and percent of bytes on stderr */
    char *first_error;    /* if not NULL, receives the first rejection message */
    size_t first_error_len;
};

/* Counts of one or more import_file() calls; they accumulate. */
struct import_stats {
    int64_t accepted;     /* records written into the open batch */
    int64_t rejected;     /* records refused, each reported on opts->errors */
};

/* Reads `path` (".csv" is CSV, anything else GeoJSON) and puts every valid
 * record into `st`, which must have a batch open. A bad record is reported as
 * "FILE:LINE: field: reason" (CSV, lines counted as an editor does, header =
 * line 1) or "FILE: feature N: field: reason" (GeoJSON, N from 1), counted
 * in stats->rejected, and skipped. Ids are checked for duplicates within one
 * call; an id that is already in the database is replaced (an import is an
 * update). Returns 0 when the file could be read to the end (even with
 * rejected records), or a store_err when it could not be read at all or the
 * store failed (the batch is then poisoned). */
int import_file(struct store *st, const char *path, const struct import_opts *opts,
                struct import_stats *stats);

/* nearest-import's command line: see docs/IMPORT.md. Writes messages to
 * `errors`. Returns the exit status: 0 all imported, 1 some rejected with
 * --keep-going, 2 nothing imported (bad records, unreadable file, usage). */
int import_main(int argc, char **argv, FILE *errors);

/* Output formats of export_write(). */
enum export_format {
    EXPORT_GEOJSON = 0,
    EXPORT_CSV = 1,
};

/* Writes the facilities of `category` (or all when category is -1), or the
 * areas when `areas` is true (GeoJSON only), to `out` in the import formats,
 * in id order. Returns 0, STORE_ERR_ARG (CSV areas), STORE_ERR_IO when
 * writing fails, or another store_err. */
int export_write(struct store *st, FILE *out, int format, int category, bool areas);

/* nearest-export's command line: see docs/IMPORT.md. Returns the exit status
 * (0, or 2 on any error, reported on `errors`). */
int export_main(int argc, char **argv, FILE *out, FILE *errors);

#endif
