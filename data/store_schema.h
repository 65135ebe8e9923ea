/* store_schema.h: the catalogue's SQL schema, one step per version, and the
 * forward migrations between them. Private to data/: store.c and the tests.
 *
 * A nearestd database is recognised by PRAGMA application_id
 * (STORE_SCHEMA_APP_ID) and versioned by PRAGMA user_version. Version n is
 * reached from an empty SpatiaLite database by applying steps 1..n in order,
 * so a new file and a migrated old file run the very same SQL. */
#ifndef NEARESTD_STORE_SCHEMA_H
#define NEARESTD_STORE_SCHEMA_H

#include <stddef.h>
#include <sqlite3.h>

/* "NRST" in ASCII: the SQLite application_id of every nearestd database. */
#define STORE_SCHEMA_APP_ID 0x4e525354

/* Brings `db` (a SpatiaLite-initialised connection, inside a write
 * transaction the caller owns) from schema version `from` to `to` by running
 * steps from+1 .. to, and sets user_version to `to`. `from` 0 means an empty
 * database whose spatial metadata already exists (InitSpatialMetadata).
 * Returns 0, or a SQLite result code with a one-line message in err. */
int store_schema_upgrade(sqlite3 *db, int from, int to, char *err, size_t err_len);

/* Creates an empty nearestd database at `path` (which must not exist) at the
 * given schema version, with spatial metadata, application_id and WAL
 * journal. Exists so that tests can make a file "from an older build" and
 * check that store_open() migrates it. Returns 0 or a SQLite result code with
 * a message in err. */
int store_schema_create_file(const char *path, int version, char *err, size_t err_len);

#endif
