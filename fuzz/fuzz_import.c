/* fuzz_import.c: libFuzzer target for the importers (data/import.h), built
 * twice: as fuzz_import_csv (FUZZ_IMPORT_EXT ".csv") and fuzz_import_geojson
 * (".geojson"). import_file() reads a path and picks the parser by its ending,
 * so each input is written to a file with that ending and imported for real
 * into a SpatiaLite catalogue, inside a batch that is rolled back afterwards.
 *
 * The catalogue is made once per process by store_create() from an empty
 * dataset, in a temporary directory (on /dev/shm when there is one, so the
 * per-input file write costs microseconds). Rolling back keeps every input
 * independent of the ones before it, which libFuzzer needs to reproduce a
 * crash from one file. The coordinate system is chosen from the input's
 * length (size % 3: WGS84, GCJ-02, BD-09) so all three code paths are fed.
 *
 * Checked for each input, besides "no crash, no leak, no UB":
 *   - import_file() returns 0 or a store_err, and the counts are not negative;
 *   - when it returns 0: exactly one error line per rejected record, a first
 *     error message when anything was rejected, and the batch holds exactly
 *     the accepted records (facilities + areas, starting from none);
 *   - every facility that made it in passes store_facility_check();
 *   - after the rollback the catalogue is empty again. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "import.h"
#include "store.h"

#ifndef FUZZ_IMPORT_EXT
#error "define FUZZ_IMPORT_EXT as \".csv\" or \".geojson\""
#endif

static char dir_path[64];
static char input_path[128];
static struct store *catalogue;

static void remove_dir(void)
{
    store_close(catalogue);
    catalogue = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir_path);
    if (system(cmd) != 0) {
        fprintf(stderr, "fuzz_import: could not remove %s\n", dir_path);
    }
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    CHECK(fputs(text, fp) >= 0);
    CHECK(fclose(fp) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir_path, sizeof dir_path, "%s/fuzz_import.XXXXXX", base);
    CHECK(mkdtemp(dir_path) != NULL);
    atexit(remove_dir);

    /* An empty dataset, so the catalogue starts with no records. */
    static const char empty[] = "{\"type\":\"FeatureCollection\",\"features\":[]}\n";
    char path[128];
    snprintf(path, sizeof path, "%s/facilities.geojson", dir_path);
    write_text(path, empty);
    snprintf(path, sizeof path, "%s/areas.geojson", dir_path);
    write_text(path, empty);

    char db[128], err[512] = "";
    snprintf(db, sizeof db, "%s/catalogue.db", dir_path);
    if (store_create(db, dir_path, err, sizeof err) != 0 ||
        store_open(db, &catalogue, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_import: cannot make the catalogue: %s\n", err);
        abort();
    }
    snprintf(input_path, sizeof input_path, "%s/input%s", dir_path, FUZZ_IMPORT_EXT);
    return 0;
}

static int count_facility(const struct store_facility *f, void *ctx)
{
    char why[256];
    if (store_facility_check(f, why, sizeof why) != 0) {
        fprintf(stderr, "fuzz_import: stored facility %s fails its check: %s\n", f->id, why);
        abort();
    }
    (*(int64_t *)ctx)++;
    return 0;
}

static int count_area(const struct store_area *a, void *ctx)
{
    (void)a;
    (*(int64_t *)ctx)++;
    return 0;
}

static size_t count_lines(const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        n += text[i] == '\n';
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *fp = fopen(input_path, "wb");
    CHECK(fp != NULL);
    CHECK(size == 0 || fwrite(data, 1, size, fp) == size);
    CHECK(fclose(fp) == 0);

    char *messages = NULL;
    size_t messages_len = 0;
    FILE *errors = open_memstream(&messages, &messages_len);
    CHECK(errors != NULL);
    char first[512] = "";
    struct import_opts opts = {
        .crs = (int)(size % 3),
        .kind = IMPORT_DETECT,
        .errors = errors,
        .first_error = first,
        .first_error_len = sizeof first,
    };
    struct import_stats stats = {0, 0};

    CHECK(store_batch_begin(catalogue) == 0);
    int rc = import_file(catalogue, input_path, &opts, &stats);
    CHECK(fclose(errors) == 0);
    CHECK(rc <= 0 && rc >= STORE_ERR_EXISTS);
    CHECK(stats.accepted >= 0 && stats.rejected >= 0);
    if (rc == 0) {
        CHECK(count_lines(messages, messages_len) == (size_t)stats.rejected);
        CHECK(stats.rejected == 0 || first[0] != '\0');
        int64_t n_facilities = 0, n_areas = 0;
        CHECK(store_facility_each(catalogue, count_facility, &n_facilities) == 0);
        CHECK(store_area_each(catalogue, 0, count_area, &n_areas) == 0);
        CHECK(n_facilities + n_areas == stats.accepted);
    }
    store_batch_rollback(catalogue);
    int64_t left = -1;
    CHECK(store_facility_count(catalogue, &left) == 0 && left == 0);
    free(messages);
    return 0;
}
