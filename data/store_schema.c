/* store_schema.c: the SQL of each schema version and the forward migrations.
 *
 * Version 1 held facilities and areas, each with a SpatiaLite geometry column
 * in SRID 4326 and an R*Tree spatial index. Version 2 added the `links` table
 * (doctor team -> community served, school -> catchment), filled from the
 * attributes already stored, so a version-1 file opens in this build with its
 * links in place. Each step runs inside the caller's transaction: a migration
 * that fails leaves the file at its old version. */
#include "store_schema.h"

#include <sqlite3.h>
/* spatialite.h uses sqlite3 types without including sqlite3.h. */
#include <spatialite.h>
#include <stdio.h>
#include <string.h>

/* Statements run with sqlite3_exec; a SpatiaLite function that reports failure
 * by returning 0 is written as "SELECT f(...)" and checked by run_checked(). */
static const char *const step1_sql =
    "CREATE TABLE facilities ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  category INTEGER NOT NULL CHECK (category BETWEEN 0 AND 4),"
    "  subtype TEXT NOT NULL DEFAULT '',"
    "  name TEXT NOT NULL DEFAULT '',"
    "  address TEXT NOT NULL DEFAULT '',"
    "  phone TEXT NOT NULL DEFAULT '',"
    "  opening_hours TEXT NOT NULL DEFAULT '',"
    "  attrs TEXT NOT NULL DEFAULT '{}',"
    "  updated_unix INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE areas ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  kind INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 4),"
    "  name TEXT NOT NULL DEFAULT '',"
    "  parent TEXT NOT NULL DEFAULT '',"
    "  attrs TEXT NOT NULL DEFAULT '{}');";

static const char *const step1_spatial[] = {
    "SELECT AddGeometryColumn('facilities', 'geom', 4326, 'POINT', 'XY', 1)",
    "SELECT CreateSpatialIndex('facilities', 'geom')",
    "SELECT AddGeometryColumn('areas', 'geom', 4326, 'MULTIPOLYGON', 'XY', 1)",
    "SELECT CreateSpatialIndex('areas', 'geom')",
    NULL,
};

/* Link kinds are enum store_link_kind: 0 serves, 1 catchment. Categories are
 * enum store_category: 2 doctor_team, 3 school. */
static const char *const step2_sql =
    "CREATE TABLE links ("
    "  kind INTEGER NOT NULL,"
    "  facility_id TEXT NOT NULL,"
    "  area_id TEXT NOT NULL,"
    "  PRIMARY KEY (facility_id, kind, area_id)) WITHOUT ROWID;"
    "CREATE INDEX links_area ON links (kind, area_id, facility_id);"
    "INSERT OR IGNORE INTO links (kind, facility_id, area_id)"
    "  SELECT 0, f.id, j.value FROM facilities AS f, json_each(f.attrs, '$.serves') AS j"
    "  WHERE f.category = 2 AND json_valid(f.attrs)"
    "    AND json_type(f.attrs, '$.serves') = 'array' AND j.type = 'text';"
    "INSERT OR IGNORE INTO links (kind, facility_id, area_id)"
    "  SELECT 1, f.id, json_extract(f.attrs, '$.catchment') FROM facilities AS f"
    "  WHERE f.category = 3 AND json_valid(f.attrs)"
    "    AND json_type(f.attrs, '$.catchment') = 'text';";

static int run_checked(sqlite3 *db, const char *sql, char *err, size_t err_len)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
            rc = sqlite3_column_int(stmt, 0) == 1 ? SQLITE_OK : SQLITE_ERROR;
            if (rc != SQLITE_OK) {
                snprintf(err, err_len, "schema: SpatiaLite refused: %s", sql);
            }
        } else {
            snprintf(err, err_len, "schema: %s", sqlite3_errmsg(db));
        }
    } else {
        snprintf(err, err_len, "schema: %s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(stmt);
    return rc;
}

static int run_exec(sqlite3 *db, const char *sql, char *err, size_t err_len)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, err_len, "schema: %s", msg ? msg : sqlite3_errstr(rc));
    }
    sqlite3_free(msg);
    return rc;
}

static int step1(sqlite3 *db, char *err, size_t err_len)
{
    int rc = run_exec(db, step1_sql, err, err_len);
    for (int i = 0; rc == SQLITE_OK && step1_spatial[i]; i++) {
        rc = run_checked(db, step1_spatial[i], err, err_len);
    }
    return rc;
}

static int step2(sqlite3 *db, char *err, size_t err_len)
{
    return run_exec(db, step2_sql, err, err_len);
}

typedef int (*schema_step_fn)(sqlite3 *db, char *err, size_t err_len);

/* steps[v - 1] takes a database from version v - 1 to v. */
static const schema_step_fn steps[] = {step1, step2};
#define N_STEPS ((int)(sizeof steps / sizeof steps[0]))

int store_schema_upgrade(sqlite3 *db, int from, int to, char *err, size_t err_len)
{
    if (from < 0 || to > N_STEPS || from > to) {
        snprintf(err, err_len, "schema: no migration from version %d to %d", from, to);
        return SQLITE_ERROR;
    }
    int rc = SQLITE_OK;
    for (int v = from + 1; rc == SQLITE_OK && v <= to; v++) {
        rc = steps[v - 1](db, err, err_len);
    }
    if (rc == SQLITE_OK) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", to);
        rc = run_exec(db, sql, err, err_len);
    }
    return rc;
}

int store_schema_create_file(const char *path, int version, char *err, size_t err_len)
{
    sqlite3 *db = NULL;
    void *cache = spatialite_alloc_connection();
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, err_len, "%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        goto done;
    }
    spatialite_init_ex(db, cache, 0);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA page_size = 8192; PRAGMA application_id = %d",
             STORE_SCHEMA_APP_ID);
    rc = run_exec(db, sql, err, err_len);
    if (rc == SQLITE_OK) {
        rc = run_checked(db, "SELECT InitSpatialMetadata(1, 'WGS84_ONLY')", err, err_len);
    }
    if (rc == SQLITE_OK) {
        rc = run_exec(db, "BEGIN IMMEDIATE", err, err_len);
    }
    if (rc == SQLITE_OK) {
        rc = store_schema_upgrade(db, 0, version, err, err_len);
        if (rc == SQLITE_OK) {
            rc = run_exec(db, "COMMIT", err, err_len);
        } else {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        }
    }
    if (rc == SQLITE_OK) {
        rc = run_exec(db, "PRAGMA journal_mode = WAL", err, err_len);
    }
done:
    sqlite3_close(db);
    spatialite_cleanup_ex(cache);
    return rc;
}
