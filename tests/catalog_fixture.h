/* catalog_fixture.h: a catalogue loaded from a real SpatiaLite database made
 * from a dataset folder, the fixture of the command, HTTP and fuzz programs
 * that drive the engine without a daemon. Header-only (static inline) so the
 * cmocka tests and the libFuzzer targets, which link different runtimes,
 * share it without a library of its own. */
#ifndef NEARESTD_CATALOG_FIXTURE_H
#define NEARESTD_CATALOG_FIXTURE_H

#include <stddef.h>
#include <stdio.h>

#include "catalog.h"
#include "store.h"

/* Creates the database db_path from the dataset in dataset_dir, opens it and
 * loads its catalogue. Returns 0 with *store and *catalog the caller's (free
 * with catalog_free() and store_close()), or -1 with one line in err and
 * whatever was opened still in *store and *catalog (both free calls accept
 * NULL). */
static inline int fixture_catalog_open(const char *db_path, const char *dataset_dir,
                                       struct store **store, struct catalog **catalog,
                                       char *err, size_t err_len) {
    *store = NULL;
    *catalog = NULL;
    char why[512] = "";
    if (store_create(db_path, dataset_dir, why, sizeof why) != 0 ||
        store_open(db_path, store, why, sizeof why) != 0) {
        snprintf(err, err_len, "store: %s", why);
        return -1;
    }
    *catalog = catalog_new();
    if (*catalog == NULL || catalog_load(*catalog, *store, why, sizeof why) != 0) {
        snprintf(err, err_len, "catalog: %s", why[0] ? why : "out of memory");
        return -1;
    }
    return 0;
}

#endif
