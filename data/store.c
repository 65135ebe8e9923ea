/* store.c: the SpatiaLite catalogue behind store.h.
 *
 * One SQLite connection per struct store, with SpatiaLite loaded through
 * spatialite_init_ex() on a per-connection cache. Every write runs in a
 * BEGIN IMMEDIATE transaction with journal_mode=WAL and synchronous=FULL, so a
 * call that returned 0 has reached the disk (fsync of the WAL) and survives
 * kill -9 and power loss. Group commit (store_batch_*) lets the daemon put
 * many clients' records under one fsync. The Licang dataset is a few hundred
 * facilities; an import may be 10^6 rows, for which store_bulk_begin() skips
 * SpatiaLite's per-row triggers and fills the R*Tree once at commit (55 s ->
 * about 20 s for 10^6 rows; see docs/IMPORT.md).
 *
 * Validation lives here too (store_facility_check), so the daemon's PUT and
 * the importer refuse the same records with the same words. Reading files is
 * import.c's business; store_create() calls it to load the dataset. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <spatialite.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "import.h"
#include "store_attrs.h"
#include "store_schema.h"

/* A row put during a bulk load: where it is, and in which order it came. */
struct bulk_row {
    int64_t rowid;
    uint64_t seq;            /* put order, so that the last put of a rowid wins */
    uint64_t zorder;         /* Morton code of the position, for index locality */
    double lon_deg, lat_deg;
};

/* Page cache sizes (negative: KiB). Everyday work (the daemon's writes, a walk
 * at start) needs little. A bulk load of 10^6 rows makes a ~250 MB file; with
 * a small cache its R*Tree and index pages spill to the WAL and are rewritten
 * there many times, so a bulk load raises the bound (only touched pages are
 * allocated) and gives the memory back when it ends. */
#define CACHE_SIZE_NORMAL "PRAGMA cache_size = -8192"
#define CACHE_SIZE_BULK "PRAGMA cache_size = -262144"

struct store {
    sqlite3 *db;
    void *splite_cache;      /* spatialite_alloc_connection(), freed after the db */
    bool in_batch;
    int batch_err;           /* first error that poisoned the open batch, or 0 */
    bool bulk;               /* in a store_bulk_begin() batch */
    char *bulk_triggers;     /* SQL of the per-row triggers dropped for the bulk load */
    struct bulk_row *bulk_rows; /* rows put during the bulk load, for the R*Tree */
    int64_t bulk_max_rowid;  /* largest rowid before the bulk load began */
    size_t n_bulk_rows, cap_bulk_rows;
    sqlite3_stmt *rowid_of;  /* the rowid of a facility id, for bulk loads */
    sqlite3_stmt *put;       /* cached statements, prepared at open */
    sqlite3_stmt *del;
    sqlite3_stmt *link_del;
    sqlite3_stmt *link_put;
    sqlite3_stmt *area_put;
    char errmsg[256];
};

/* ------------------------------------------------------------------------ */
/* Names and messages                                                       */
/* ------------------------------------------------------------------------ */

static const char *const category_names[STORE_CAT_COUNT] = {
    "elder_care", "meal_point", "doctor_team", "school", "parking",
};

static const char *const area_kind_names[STORE_AREA_KIND_COUNT] = {
    "district", "street", "community", "catchment", "service_area",
};

/* names[i], or NULL when i is not in 0..n-1. */
static const char *name_at(const char *const *names, int n, int i)
{
    return i >= 0 && i < n ? names[i] : NULL;
}

/* Sets *out to the index of name in names[0..n-1]; STORE_ERR_ARG if absent. */
static int index_of(const char *const *names, int n, const char *name, int *out)
{
    for (int i = 0; name && i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return STORE_ERR_ARG;
}

const char *store_category_name(int category)
{
    return name_at(category_names, STORE_CAT_COUNT, category);
}

int store_category_parse(const char *name, int *out)
{
    return index_of(category_names, STORE_CAT_COUNT, name, out);
}

const char *store_area_kind_name(int kind)
{
    return name_at(area_kind_names, STORE_AREA_KIND_COUNT, kind);
}

int store_area_kind_parse(const char *name, int *out)
{
    return index_of(area_kind_names, STORE_AREA_KIND_COUNT, name, out);
}

const char *store_strerror(int err)
{
    switch (err) {
    case STORE_OK: return "ok";
    case STORE_ERR_IO: return "database or file-system failure";
    case STORE_ERR_MISSING: return "database file does not exist";
    case STORE_ERR_SCHEMA: return "not a nearestd database, or made by a newer build";
    case STORE_ERR_ARG: return "invalid record";
    case STORE_ERR_NOTFOUND: return "no such facility or area";
    case STORE_ERR_NOMEM: return "out of memory";
    case STORE_ERR_BUSY: return "database is locked by another process";
    case STORE_ERR_FULL: return "disk full; nothing was written";
    case STORE_ERR_READONLY: return "database file or directory is not writable";
    case STORE_ERR_EXISTS: return "file already exists";
    default: return "unknown store error";
    }
}

const char *store_errmsg(const struct store *st)
{
    return st ? st->errmsg : "";
}

void store_set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* Maps a SQLite result code to a store_err. */
static int from_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW: return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return STORE_ERR_BUSY;
    case SQLITE_FULL: return STORE_ERR_FULL;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN: return STORE_ERR_READONLY;
    case SQLITE_NOMEM: return STORE_ERR_NOMEM;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT: return STORE_ERR_SCHEMA;
    default: return STORE_ERR_IO;
    }
}

/* Records SQLite's message for rc in st->errmsg and returns the store_err. */
static int db_fail(struct store *st, int rc, const char *what)
{
    store_set_err(st->errmsg, sizeof st->errmsg, "%s: %s", what, sqlite3_errmsg(st->db));
    return from_sqlite(rc);
}

/* ------------------------------------------------------------------------ */
/* Validation                                                               */
/* ------------------------------------------------------------------------ */

/* The text fields of a facility with their names, for the checks in a loop. */
static int check_core(const struct store_facility *f, char *err, size_t err_len)
{
    if (!store_id_is_valid(f->id)) {
        store_set_err(err, err_len, "id: must be 1..%d bytes of [A-Za-z0-9_.:-]",
                      STORE_ID_MAX_BYTES);
        return STORE_ERR_ARG;
    }
    if (!store_category_name(f->category)) {
        store_set_err(err, err_len, "category: unknown (expected elder_care, meal_point, "
                                    "doctor_team, school or parking)");
        return STORE_ERR_ARG;
    }
    if (!geo_point_is_valid(f->where)) {
        store_set_err(err, err_len, "lat/lon: out of range (lat -90..90, lon -180..180)");
        return STORE_ERR_ARG;
    }
    const char *names[] = {"subtype", "name", "address", "phone", "opening_hours"};
    const char *values[] = {f->subtype, f->name, f->address, f->phone, f->hours};
    for (int i = 0; i < 5; i++) {
        if (values[i] && !store_utf8_is_valid(values[i])) {
            store_set_err(err, err_len, "%s: not valid UTF-8 (convert GBK files with iconv)",
                          names[i]);
            return STORE_ERR_ARG;
        }
    }
    if (f->category == STORE_CAT_PARKING && f->subtype && *f->subtype &&
        strcmp(f->subtype, "public") != 0 && strcmp(f->subtype, "shared") != 0) {
        store_set_err(err, err_len, "subtype: parking must be public or shared");
        return STORE_ERR_ARG;
    }
    char why[200];
    if (f->hours && !store_hours_check(f->hours, why, sizeof why)) {
        store_set_err(err, err_len, "opening_hours: %s", why);
        return STORE_ERR_ARG;
    }
    return 0;
}

int store_facility_check(const struct store_facility *f, char *err, size_t err_len)
{
    if (!f) {
        store_set_err(err, err_len, "record: missing");
        return STORE_ERR_ARG;
    }
    int rc = check_core(f, err, err_len);
    if (rc == 0) {
        json_t *attrs = NULL;
        rc = store_attrs_parse(f->category, f->attrs_json, &attrs, err, err_len);
        json_decref(attrs);
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Opening, creating, closing                                               */
/* ------------------------------------------------------------------------ */

static const char *const put_sql =
    "INSERT INTO facilities (id, category, subtype, name, address, phone, opening_hours,"
    " attrs, updated_unix, geom) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
    " MakePoint(?10, ?11, 4326))"
    " ON CONFLICT (id) DO UPDATE SET category = excluded.category,"
    " subtype = excluded.subtype, name = excluded.name, address = excluded.address,"
    " phone = excluded.phone, opening_hours = excluded.opening_hours,"
    " attrs = excluded.attrs, updated_unix = excluded.updated_unix, geom = excluded.geom";

static const char *const area_put_sql =
    "INSERT INTO areas (id, kind, name, parent, attrs, geom) VALUES (?1, ?2, ?3, ?4, ?5,"
    " CastToMultiPolygon(SetSRID(CASE WHEN ?6 IS NOT NULL THEN GeomFromGeoJSON(?6)"
    " ELSE GeomFromWKB(?7) END, 4326)))"
    " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name,"
    " parent = excluded.parent, attrs = excluded.attrs, geom = excluded.geom";

static int exec(struct store *st, const char *sql)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_fail(st, rc, sql);
}

static int prepare_all(struct store *st)
{
    struct {
        sqlite3_stmt **stmt;
        const char *sql;
    } list[] = {
        {&st->put, put_sql},
        {&st->rowid_of, "SELECT rowid FROM facilities WHERE id = ?1"},
        {&st->del, "DELETE FROM facilities WHERE id = ?1"},
        {&st->link_del, "DELETE FROM links WHERE facility_id = ?1"},
        {&st->link_put, "INSERT OR IGNORE INTO links (kind, facility_id, area_id)"
                        " VALUES (?1, ?2, ?3)"},
        {&st->area_put, area_put_sql},
    };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        int rc = sqlite3_prepare_v3(st->db, list[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
                                    list[i].stmt, NULL);
        if (rc != SQLITE_OK) {
            db_fail(st, rc, "preparing statements");
            return STORE_ERR_SCHEMA;
        }
    }
    return 0;
}

void store_close(struct store *st)
{
    if (!st) {
        return;
    }
    store_batch_rollback(st);
    sqlite3_finalize(st->put);
    sqlite3_finalize(st->rowid_of);
    sqlite3_finalize(st->del);
    sqlite3_finalize(st->link_del);
    sqlite3_finalize(st->link_put);
    sqlite3_finalize(st->area_put);
    sqlite3_close(st->db);
    spatialite_cleanup_ex(st->splite_cache);
    free(st);
}

/* Reads one integer PRAGMA; returns a SQLite result code. */
static int pragma_int(sqlite3 *db, const char *sql, int *out)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int(stmt, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* Whether the directory holding path is writable (WAL needs -wal and -shm). */
static bool dir_is_writable(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    return access(dir, W_OK) == 0;
}

/* Opens the connection with SpatiaLite and our pragmas; no schema checks. */
static int connect(const char *path, int flags, struct store **out, char *err, size_t err_len)
{
    struct store *st = calloc(1, sizeof *st);
    if (!st) {
        store_set_err(err, err_len, "%s: out of memory", path);
        return STORE_ERR_NOMEM;
    }
    st->splite_cache = spatialite_alloc_connection();
    int rc = sqlite3_open_v2(path, &st->db, flags, NULL);
    if (rc != SQLITE_OK) {
        store_set_err(err, err_len, "%s: %s", path, st->db ? sqlite3_errmsg(st->db)
                                                            : sqlite3_errstr(rc));
        store_close(st);
        return from_sqlite(rc);
    }
    spatialite_init_ex(st->db, st->splite_cache, 0);
    sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
    *out = st;
    return 0;
}

int store_open(const char *path, struct store **out, char *err, size_t err_len)
{
    struct store *st = NULL;
    int ret = 0;
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        store_set_err(err, err_len, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? STORE_ERR_MISSING : STORE_ERR_IO;
    }
    if (!S_ISREG(sb.st_mode)) {
        store_set_err(err, err_len, "%s: not a regular file, so not a nearestd database", path);
        return STORE_ERR_SCHEMA;
    }
    /* A file without write permission bits counts as read-only even for root,
     * who could write it anyway: the owner said "do not change this". */
    if ((sb.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) == 0 || access(path, W_OK) != 0 ||
        !dir_is_writable(path)) {
        store_set_err(err, err_len, "%s: the file or its directory is not writable", path);
        return STORE_ERR_READONLY;
    }
    /* NOMUTEX: a struct store is used by one thread at a time (store.h). */
    ret = connect(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, &st, err, err_len);
    if (ret != 0) {
        goto done;
    }
    if (sqlite3_db_readonly(st->db, "main") == 1) {
        store_set_err(err, err_len, "%s: opened read-only; the file is not writable", path);
        ret = STORE_ERR_READONLY;
        goto done;
    }
    int app_id = 0;
    int version = 0;
    int rc = pragma_int(st->db, "PRAGMA application_id", &app_id);
    if (rc == SQLITE_OK) {
        rc = pragma_int(st->db, "PRAGMA user_version", &version);
    }
    if (rc != SQLITE_OK) {
        ret = from_sqlite(rc);
        if (ret == STORE_ERR_SCHEMA) {
            store_set_err(err, err_len,
                          "%s: not a SQLite database (or damaged), so not a nearestd database",
                          path);
        } else {
            store_set_err(err, err_len, "%s: %s", path, sqlite3_errmsg(st->db));
        }
        goto done;
    }
    if (app_id != STORE_SCHEMA_APP_ID || version < 1) {
        store_set_err(err, err_len, "%s: a SQLite file but not a nearestd database "
                                    "(application_id %d, user_version %d)", path, app_id, version);
        ret = STORE_ERR_SCHEMA;
        goto done;
    }
    if (version > STORE_SCHEMA_VERSION) {
        store_set_err(err, err_len, "%s: made by a newer nearestd (schema %d; this build reads up "
                                    "to %d)", path, version, STORE_SCHEMA_VERSION);
        ret = STORE_ERR_SCHEMA;
        goto done;
    }
    const char *setup[] = {"PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL",
                           "PRAGMA foreign_keys = OFF", CACHE_SIZE_NORMAL};
    for (int i = 0; i < 4; i++) {
        if ((ret = exec(st, setup[i])) != 0) {
            store_set_err(err, err_len, "%s: %s%s", path,
                          ret == STORE_ERR_SCHEMA ? "damaged database: " : "", st->errmsg);
            goto done;
        }
    }
    if (version < STORE_SCHEMA_VERSION) {
        if ((ret = exec(st, "BEGIN IMMEDIATE")) != 0) {
            store_set_err(err, err_len, "%s: cannot migrate: %s", path, st->errmsg);
            goto done;
        }
        char why[200] = "";
        rc = store_schema_upgrade(st->db, version, STORE_SCHEMA_VERSION, why, sizeof why);
        if (rc == SQLITE_OK) {
            rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
            snprintf(why, sizeof why, "%s", sqlite3_errmsg(st->db));
        }
        if (rc != SQLITE_OK) {
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            store_set_err(err, err_len, "%s: migrating from schema %d failed: %s", path,
                          version, why);
            ret = from_sqlite(rc);
            goto done;
        }
    }
    if ((ret = prepare_all(st)) != 0) {
        store_set_err(err, err_len, "%s: damaged nearestd database: %s", path, st->errmsg);
        goto done;
    }
done:
    if (ret != 0) {
        store_close(st);
        return ret;
    }
    *out = st;
    return 0;
}

/* Loads one dataset file into the open batch; the first rejection becomes err. */
static int load_dataset_file(struct store *st, const char *dir, const char *name, int kind,
                             char *err, size_t err_len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char first[512] = "";
    struct import_opts opts = {.kind = kind, .first_error = first,
                               .first_error_len = sizeof first};
    struct import_stats stats = {0, 0};
    int rc = import_file(st, path, &opts, &stats);
    if (rc != 0) {
        store_set_err(err, err_len, "%s", first[0] ? first : store_errmsg(st));
        return rc;
    }
    if (stats.rejected > 0) {
        store_set_err(err, err_len, "%s (and %lld more bad records)", first,
                      (long long)stats.rejected - 1);
        return STORE_ERR_ARG;
    }
    return 0;
}

static int fsync_path(const char *path, bool dir)
{
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) {
        return -1;
    }
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int store_create_with(const char *path, store_load_fn fn, void *ctx, char *err,
                      size_t err_len)
{
    struct store *st = NULL;
    int ret = 0;
    char tmp[PATH_MAX];
    bool tmp_made = false;
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        store_set_err(err, err_len, "%s: already exists; not overwriting it", path);
        return STORE_ERR_EXISTS;
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof tmp) {
        store_set_err(err, err_len, "%s: path too long", path);
        return STORE_ERR_ARG;
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        store_set_err(err, err_len, "%s: cannot create a temporary file beside it: %s", path,
                      strerror(errno));
        return errno == EACCES || errno == EROFS ? STORE_ERR_READONLY : STORE_ERR_IO;
    }
    close(fd);
    tmp_made = true;
    char why[512] = "";
    int rc = store_schema_create_file(tmp, STORE_SCHEMA_VERSION, why, sizeof why);
    if (rc != SQLITE_OK) {
        store_set_err(err, err_len, "%s: %s", path, why);
        ret = from_sqlite(rc) ? from_sqlite(rc) : STORE_ERR_IO;
        goto done;
    }
    ret = store_open(tmp, &st, why, sizeof why);
    if (ret != 0) {
        store_set_err(err, err_len, "%s", why);
        goto done;
    }
    if ((ret = store_bulk_begin(st)) != 0) {
        store_set_err(err, err_len, "%s: %s", path, st->errmsg);
        goto done;
    }
    ret = fn(st, ctx, err, err_len);
    if (ret != 0) {
        store_batch_rollback(st);
        goto done;
    }
    if ((ret = store_batch_commit(st)) != 0) {
        store_set_err(err, err_len, "%s: %s", path, st->errmsg);
        goto done;
    }
    store_close(st);
    st = NULL;
    if (fsync_path(tmp, false) != 0) {
        store_set_err(err, err_len, "%s: fsync: %s", tmp, strerror(errno));
        ret = STORE_ERR_IO;
        goto done;
    }
    /* link() rather than rename(): it refuses to replace a file that appeared
     * at `path` meanwhile, so we never overwrite someone's database. */
    if (link(tmp, path) != 0) {
        int e = errno;
        store_set_err(err, err_len, "%s: %s", path, strerror(e));
        ret = e == EEXIST ? STORE_ERR_EXISTS : STORE_ERR_IO;
        goto done;
    }
    unlink(tmp);
    tmp_made = false;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    snprintf(slash ? slash + 1 : dir, sizeof dir - (size_t)(slash ? slash + 1 - dir : 0), ".");
    if (fsync_path(dir, true) != 0) {
        store_set_err(err, err_len, "%s: fsync of directory: %s", path, strerror(errno));
        ret = STORE_ERR_IO;
    }
done:
    store_close(st);
    if (tmp_made) {
        char side[PATH_MAX + 8];
        unlink(tmp);
        snprintf(side, sizeof side, "%s-wal", tmp);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", tmp);
        unlink(side);
        snprintf(side, sizeof side, "%s-journal", tmp);
        unlink(side);
    }
    return ret;
}

struct dataset {
    const char *dir;
};

static int load_dataset(struct store *st, void *ctx, char *err, size_t err_len)
{
    const struct dataset *d = ctx;
    int ret = load_dataset_file(st, d->dir, "facilities.geojson", IMPORT_FACILITIES, err,
                                err_len);
    if (ret == 0) {
        ret = load_dataset_file(st, d->dir, "areas.geojson", IMPORT_AREAS, err, err_len);
    }
    return ret;
}

int store_create(const char *path, const char *dataset_dir, char *err, size_t err_len)
{
    struct dataset d = {dataset_dir};
    return store_create_with(path, load_dataset, &d, err, err_len);
}

/* ------------------------------------------------------------------------ */
/* Transactions and group commit                                            */
/* ------------------------------------------------------------------------ */

int store_write_probe(struct store *st, char *err, size_t err_len)
{
    if (st->in_batch) {
        store_set_err(err, err_len, "a batch is open");
        return STORE_ERR_ARG;
    }
    int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int ret = from_sqlite(rc);
        if (ret == STORE_ERR_BUSY) {
            store_set_err(err, err_len,
                          "locked by another process (it has held the write lock for over %d ms)",
                          STORE_BUSY_TIMEOUT_MS);
        } else {
            store_set_err(err, err_len, "%s", sqlite3_errmsg(st->db));
        }
        return ret;
    }
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return 0;
}

int store_batch_begin(struct store *st)
{
    if (st->in_batch) {
        store_set_err(st->errmsg, sizeof st->errmsg, "batch: already open");
        return STORE_ERR_ARG;
    }
    int ret = exec(st, "BEGIN IMMEDIATE");
    if (ret == 0) {
        st->in_batch = true;
        st->batch_err = 0;
    }
    return ret;
}

/* The per-row triggers SpatiaLite puts on facilities.geom: R*Tree upkeep
 * (gi*) and "last changed" stamps (tm*). Each R*Tree trigger prepares a fresh
 * SQL statement per row inside RTreeAlign(), which made a 10^6-row import
 * take about 55 s; the bulk load drops them and does the same work once. The
 * geometry-constraint triggers (gg*) are dropped too: every geometry we write
 * is MakePoint(lon, lat, 4326) of a checked point, which they would accept. */
static const char *const bulk_trigger_names =
    "('gii_facilities_geom', 'giu_facilities_geom', 'gid_facilities_geom',"
    " 'tmi_facilities_geom', 'tmu_facilities_geom', 'tmd_facilities_geom',"
    " 'ggi_facilities_geom', 'ggu_facilities_geom')";

int store_bulk_begin(struct store *st)
{
    int ret = store_batch_begin(st);
    if (ret != 0) {
        return ret;
    }
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT group_concat(sql, ';' || char(10)) FROM sqlite_master"
             " WHERE type = 'trigger' AND name IN %s", bulk_trigger_names);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(s, 0);
        st->bulk_triggers = strdup(text ? text : "");
        rc = st->bulk_triggers ? SQLITE_OK : SQLITE_NOMEM;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_OK) {
        ret = db_fail(st, rc, "bulk load");
        store_batch_rollback(st);
        return ret;
    }
    st->bulk = true; /* from here on, ending the batch restores the cache */
    ret = exec(st, CACHE_SIZE_BULK);
    const char *names[] = {"gii", "giu", "gid", "tmi", "tmu", "tmd", "ggi", "ggu"};
    for (int i = 0; ret == 0 && i < 8; i++) {
        snprintf(sql, sizeof sql, "DROP TRIGGER IF EXISTS %s_facilities_geom", names[i]);
        ret = exec(st, sql);
    }
    if (ret != 0) {
        store_batch_rollback(st);
        return ret;
    }
    s = NULL;
    rc = sqlite3_prepare_v2(st->db, "SELECT ifnull(max(rowid), 0) FROM facilities", -1, &s,
                            NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        st->bulk_max_rowid = sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_OK) {
        ret = db_fail(st, rc, "bulk load");
        store_batch_rollback(st);
        return ret;
    }
    st->bulk = true;
    return 0;
}

static int bulk_cmp_rowid(const void *a, const void *b)
{
    const struct bulk_row *x = a, *y = b;
    if (x->rowid != y->rowid) {
        return x->rowid < y->rowid ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int bulk_cmp_zorder(const void *a, const void *b)
{
    const struct bulk_row *x = a, *y = b;
    return x->zorder < y->zorder ? -1 : x->zorder > y->zorder;
}

/* Interleaves the bits of two 32-bit values: a Morton (Z-order) code. */
static uint64_t morton(uint32_t x, uint32_t y)
{
    uint64_t z = 0;
    for (int i = 0; i < 32; i++) {
        z |= (uint64_t)((x >> i) & 1) << (2 * i) | (uint64_t)((y >> i) & 1) << (2 * i + 1);
    }
    return z;
}

/* Brings the R*Tree up to date with the rows put during the bulk load and
 * restores the triggers, inside the still-open transaction. Each rowid is
 * entered once, at its last position, from the coordinates we already have
 * (no geometry is parsed back), in Z-order so that consecutive inserts touch
 * the same index nodes: 10^6 rows in random order took 2.5 times longer. */
static int bulk_finish(struct store *st)
{
    size_t n = 0;
    if (st->n_bulk_rows > 0) {
        qsort(st->bulk_rows, st->n_bulk_rows, sizeof st->bulk_rows[0], bulk_cmp_rowid);
    }
    for (size_t i = 0; i < st->n_bulk_rows; i++) {
        if (i + 1 < st->n_bulk_rows && st->bulk_rows[i + 1].rowid == st->bulk_rows[i].rowid) {
            continue; /* a later put of the same row wins */
        }
        struct bulk_row r = st->bulk_rows[i];
        r.zorder = morton((uint32_t)((r.lon_deg + 180.0) / 360.0 * 4294967295.0),
                          (uint32_t)((r.lat_deg + 90.0) / 180.0 * 4294967295.0));
        st->bulk_rows[n++] = r;
    }
    if (n > 0) {
        qsort(st->bulk_rows, n, sizeof st->bulk_rows[0], bulk_cmp_zorder);
    }
    sqlite3_stmt *del = NULL;
    sqlite3_stmt *ins = NULL;
    int rc = sqlite3_prepare_v2(st->db, "DELETE FROM idx_facilities_geom WHERE pkid = ?1", -1,
                                &del, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_prepare_v2(st->db,
                                "INSERT INTO idx_facilities_geom (pkid, xmin, xmax, ymin, ymax)"
                                " VALUES (?1, ?2, ?2, ?3, ?3)", -1, &ins, NULL);
    }
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        const struct bulk_row *r = &st->bulk_rows[i];
        if (r->rowid <= st->bulk_max_rowid) {
            sqlite3_bind_int64(del, 1, r->rowid);
            rc = sqlite3_step(del);
            rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
            sqlite3_reset(del);
        }
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(ins, 1, r->rowid);
            sqlite3_bind_double(ins, 2, r->lon_deg);
            sqlite3_bind_double(ins, 3, r->lat_deg);
            rc = sqlite3_step(ins);
            rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
            sqlite3_reset(ins);
        }
    }
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    int ret = rc == SQLITE_OK ? 0 : db_fail(st, rc, "updating the spatial index");
    if (ret == 0 && n > 0) {
        ret = exec(st, "UPDATE geometry_columns_time SET last_insert = "
                       "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE f_table_name = 'facilities'");
    }
    if (ret == 0 && st->bulk_triggers && *st->bulk_triggers) {
        ret = exec(st, st->bulk_triggers);
    }
    return ret;
}

static void bulk_reset(struct store *st)
{
    if (st->bulk) {
        /* Give the bulk load's pages back; a long-running daemon keeps 8 MiB. */
        sqlite3_exec(st->db, CACHE_SIZE_NORMAL "; PRAGMA shrink_memory", NULL, NULL, NULL);
    }
    free(st->bulk_triggers);
    free(st->bulk_rows);
    st->bulk_triggers = NULL;
    st->bulk_rows = NULL;
    st->n_bulk_rows = st->cap_bulk_rows = 0;
    st->bulk = false;
}

int store_batch_commit(struct store *st)
{
    if (!st->in_batch) {
        store_set_err(st->errmsg, sizeof st->errmsg, "batch: none open");
        return STORE_ERR_ARG;
    }
    int ret = st->batch_err;
    if (ret == 0 && st->bulk) {
        ret = bulk_finish(st);
    }
    st->in_batch = false;
    if (ret == 0) {
        ret = exec(st, "COMMIT");
    }
    if (ret != 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    bulk_reset(st);
    return ret;
}

void store_batch_rollback(struct store *st)
{
    if (st && st->in_batch) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        st->in_batch = false;
        st->batch_err = 0;
        bulk_reset(st);
    }
}

/* Starts a write: its own transaction, or nothing inside a batch. */
static int write_begin(struct store *st)
{
    if (st->in_batch) {
        if (st->batch_err != 0) {
            store_set_err(st->errmsg, sizeof st->errmsg, "batch: failed earlier: %s",
                          store_strerror(st->batch_err));
            return STORE_ERR_IO;
        }
        return 0;
    }
    return exec(st, "BEGIN IMMEDIATE");
}

/* Ends a write started by write_begin(); `ret` is the write's result so far.
 * ARG and NOTFOUND changed nothing, so they do not poison a batch. */
static int write_end(struct store *st, int ret)
{
    if (st->in_batch) {
        if (ret != 0 && ret != STORE_ERR_ARG && ret != STORE_ERR_NOTFOUND && !st->batch_err) {
            st->batch_err = ret;
        }
        return ret;
    }
    if (ret == 0) {
        ret = exec(st, "COMMIT");
    }
    if (ret != 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return ret;
}

/* Steps a cached statement to completion and resets it. */
static int step_done(struct store *st, sqlite3_stmt *stmt, const char *what)
{
    int rc = sqlite3_step(stmt);
    int ret = rc == SQLITE_DONE ? 0 : db_fail(st, rc, what);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* Facilities                                                               */
/* ------------------------------------------------------------------------ */

static const char *nz(const char *s)
{
    return s ? s : "";
}

static int links_put(struct store *st, const struct store_facility *f, json_t *attrs)
{
    sqlite3_bind_text(st->link_del, 1, f->id, -1, SQLITE_STATIC);
    int ret = step_done(st, st->link_del, "deleting links");
    json_t *ids = NULL;
    int kind = 0;
    if (f->category == STORE_CAT_DOCTOR_TEAM) {
        ids = json_object_get(attrs, "serves");
        kind = STORE_LINK_SERVES;
    } else if (f->category == STORE_CAT_SCHOOL) {
        ids = json_object_get(attrs, "catchment");
        kind = STORE_LINK_CATCHMENT;
    }
    size_t n = json_is_array(ids) ? json_array_size(ids) : json_is_string(ids) ? 1 : 0;
    for (size_t i = 0; ret == 0 && i < n; i++) {
        json_t *e = json_is_array(ids) ? json_array_get(ids, i) : ids;
        sqlite3_bind_int(st->link_put, 1, kind);
        sqlite3_bind_text(st->link_put, 2, f->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st->link_put, 3, json_string_value(e), -1, SQLITE_STATIC);
        ret = step_done(st, st->link_put, "writing links");
    }
    return ret;
}

/* Steps the put statement in a bulk load and remembers the rowid it wrote
 * and where. An insert moves last_insert_rowid; an upsert that updated does
 * not, and then the rowid is looked up (rare in a bulk load, and always
 * right). */
static int step_bulk_put(struct store *st, const char *id, struct geo_point where)
{
    sqlite3_int64 before = sqlite3_last_insert_rowid(st->db);
    int ret = step_done(st, st->put, "writing facility");
    if (ret != 0) {
        return ret;
    }
    sqlite3_int64 rowid = sqlite3_last_insert_rowid(st->db);
    if (rowid == before) {
        sqlite3_bind_text(st->rowid_of, 1, id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st->rowid_of);
        if (rc == SQLITE_ROW) {
            rowid = sqlite3_column_int64(st->rowid_of, 0);
        } else {
            ret = db_fail(st, rc == SQLITE_DONE ? SQLITE_ERROR : rc, "finding facility");
        }
        sqlite3_reset(st->rowid_of);
        sqlite3_clear_bindings(st->rowid_of);
        if (ret != 0) {
            return ret;
        }
    }
    if (st->n_bulk_rows == st->cap_bulk_rows) {
        size_t cap = st->cap_bulk_rows ? 2 * st->cap_bulk_rows : 4096;
        struct bulk_row *rows = realloc(st->bulk_rows, cap * sizeof *rows);
        if (!rows) {
            return STORE_ERR_NOMEM;
        }
        st->bulk_rows = rows;
        st->cap_bulk_rows = cap;
    }
    struct bulk_row *r = &st->bulk_rows[st->n_bulk_rows];
    r->rowid = rowid;
    r->seq = st->n_bulk_rows++;
    r->lon_deg = where.lon_deg;
    r->lat_deg = where.lat_deg;
    return 0;
}

/* Checks attrs_json as the attributes of `category` (-1: none known): *attrs
 * gets the parsed object and *text its canonical compact text, both for the
 * caller to release, also on failure. Returns 0, STORE_ERR_ARG with the
 * reason in st->errmsg, or STORE_ERR_NOMEM. */
static int attrs_checked(struct store *st, int category, const char *attrs_json,
                         json_t **attrs, char **text)
{
    int ret = store_attrs_parse(category, attrs_json, attrs, st->errmsg, sizeof st->errmsg);
    if (ret != 0) {
        return ret;
    }
    *text = json_dumps(*attrs, JSON_COMPACT | JSON_PRESERVE_ORDER);
    return *text ? 0 : STORE_ERR_NOMEM;
}

int store_facility_put(struct store *st, const struct store_facility *f)
{
    json_t *attrs = NULL;
    char *attrs_text = NULL;
    int ret = check_core(f, st->errmsg, sizeof st->errmsg);
    if (ret == 0) {
        ret = attrs_checked(st, f->category, f->attrs_json, &attrs, &attrs_text);
    }
    if (ret != 0) {
        goto done;
    }
    if ((ret = write_begin(st)) != 0) {
        goto done;
    }
    sqlite3_stmt *s = st->put;
    sqlite3_bind_text(s, 1, f->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, f->category);
    sqlite3_bind_text(s, 3, nz(f->subtype), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, nz(f->name), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, nz(f->address), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, nz(f->phone), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, nz(f->hours), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, attrs_text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 9, f->updated_unix > 0 ? f->updated_unix : (int64_t)time(NULL));
    sqlite3_bind_double(s, 10, f->where.lon_deg);
    sqlite3_bind_double(s, 11, f->where.lat_deg);
    ret = st->bulk ? step_bulk_put(st, f->id, f->where) : step_done(st, s, "writing facility");
    if (ret == 0) {
        ret = links_put(st, f, attrs);
    }
    ret = write_end(st, ret);
done:
    free(attrs_text);
    json_decref(attrs);
    return ret;
}

int store_facility_delete(struct store *st, const char *id)
{
    if (st->bulk) {
        store_set_err(st->errmsg, sizeof st->errmsg, "delete: not during a bulk load");
        return STORE_ERR_ARG;
    }
    int ret = write_begin(st);
    if (ret != 0) {
        return ret;
    }
    sqlite3_bind_text(st->del, 1, id ? id : "", -1, SQLITE_STATIC);
    ret = step_done(st, st->del, "deleting facility");
    if (ret == 0 && sqlite3_changes(st->db) == 0) {
        store_set_err(st->errmsg, sizeof st->errmsg, "id: no facility %.64s", id ? id : "");
        ret = STORE_ERR_NOTFOUND;
    }
    if (ret == 0) {
        sqlite3_bind_text(st->link_del, 1, id, -1, SQLITE_STATIC);
        ret = step_done(st, st->link_del, "deleting links");
    }
    return write_end(st, ret);
}

static const char *const facility_cols =
    "SELECT id, category, subtype, name, address, phone, opening_hours, ST_Y(geom),"
    " ST_X(geom), attrs, updated_unix FROM facilities";

static const char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : "";
}

/* Runs a facility SELECT and calls fn per row. */
static int facility_walk(struct store *st, sqlite3_stmt *s, store_facility_fn fn, void *ctx,
                         int64_t *n_rows)
{
    int rc;
    int ret = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_facility f = {
            .id = col_text(s, 0),
            .category = sqlite3_column_int(s, 1),
            .subtype = col_text(s, 2),
            .name = col_text(s, 3),
            .address = col_text(s, 4),
            .phone = col_text(s, 5),
            .hours = col_text(s, 6),
            .where = {sqlite3_column_double(s, 7), sqlite3_column_double(s, 8)},
            .attrs_json = col_text(s, 9),
            .updated_unix = sqlite3_column_int64(s, 10),
        };
        (*n_rows)++;
        if ((ret = fn(&f, ctx)) != 0) {
            return ret;
        }
    }
    return rc == SQLITE_DONE ? 0 : db_fail(st, rc, "reading facilities");
}

int store_facility_each(struct store *st, store_facility_fn fn, void *ctx)
{
    char sql[256];
    snprintf(sql, sizeof sql, "%s ORDER BY id", facility_cols);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) {
        return db_fail(st, rc, "reading facilities");
    }
    int64_t n = 0;
    int ret = facility_walk(st, s, fn, ctx, &n);
    sqlite3_finalize(s);
    return ret;
}

int store_facility_get(struct store *st, const char *id, store_facility_fn fn, void *ctx)
{
    char sql[256];
    snprintf(sql, sizeof sql, "%s WHERE id = ?1", facility_cols);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) {
        return db_fail(st, rc, "reading facility");
    }
    sqlite3_bind_text(s, 1, id ? id : "", -1, SQLITE_STATIC);
    int64_t n = 0;
    int ret = facility_walk(st, s, fn, ctx, &n);
    sqlite3_finalize(s);
    if (ret == 0 && n == 0) {
        store_set_err(st->errmsg, sizeof st->errmsg, "id: no facility %.64s", id ? id : "");
        ret = STORE_ERR_NOTFOUND;
    }
    return ret;
}

int store_facility_count(struct store *st, int64_t *n)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, "SELECT count(*) FROM facilities", -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        *n = sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    }
    int ret = rc == SQLITE_OK ? 0 : db_fail(st, rc, "counting facilities");
    sqlite3_finalize(s);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* Areas and links                                                          */
/* ------------------------------------------------------------------------ */

int store_area_put(struct store *st, const struct store_area *a)
{
    json_t *attrs = NULL;
    char *attrs_text = NULL;
    int ret = 0;
    if (!store_id_is_valid(a->id)) {
        store_set_err(st->errmsg, sizeof st->errmsg, "id: must be 1..%d bytes of [A-Za-z0-9_.:-]",
                      STORE_ID_MAX_BYTES);
        return STORE_ERR_ARG;
    }
    if (!store_area_kind_name(a->kind)) {
        store_set_err(st->errmsg, sizeof st->errmsg, "kind: unknown (expected district, street, "
                                                     "community, catchment or service_area)");
        return STORE_ERR_ARG;
    }
    if (a->parent && *a->parent && !store_id_is_valid(a->parent)) {
        store_set_err(st->errmsg, sizeof st->errmsg, "parent: not an area id");
        return STORE_ERR_ARG;
    }
    if (!store_utf8_is_valid(nz(a->name))) {
        store_set_err(st->errmsg, sizeof st->errmsg, "name: not valid UTF-8");
        return STORE_ERR_ARG;
    }
    if (!a->geojson && (!a->wkb || a->wkb_len == 0)) {
        store_set_err(st->errmsg, sizeof st->errmsg, "geometry: missing");
        return STORE_ERR_ARG;
    }
    ret = attrs_checked(st, -1, a->attrs_json, &attrs, &attrs_text);
    if (ret != 0) {
        goto done;
    }
    if ((ret = write_begin(st)) != 0) {
        goto done;
    }
    sqlite3_stmt *s = st->area_put;
    sqlite3_bind_text(s, 1, a->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, a->kind);
    sqlite3_bind_text(s, 3, nz(a->name), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, nz(a->parent), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, attrs_text, -1, SQLITE_STATIC);
    if (a->geojson) {
        sqlite3_bind_text(s, 6, a->geojson, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_blob(s, 7, a->wkb, (int)a->wkb_len, SQLITE_STATIC);
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        ret = 0;
    } else if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        /* The geometry column's trigger refused a NULL or a non-polygon. */
        store_set_err(st->errmsg, sizeof st->errmsg,
                      "geometry: not a valid Polygon or MultiPolygon");
        ret = STORE_ERR_ARG;
    } else {
        ret = db_fail(st, rc, "writing area");
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    ret = write_end(st, ret);
done:
    free(attrs_text);
    json_decref(attrs);
    return ret;
}

int store_area_each(struct store *st, int flags, store_area_fn fn, void *ctx)
{
    sqlite3_stmt *s = NULL;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT id, kind, name, parent, attrs, %s, %s FROM areas"
             " ORDER BY id", flags & STORE_AREA_WKB ? "AsBinary(geom)" : "NULL",
             flags & STORE_AREA_GEOJSON ? "AsGeoJSON(geom, 15)" : "NULL");
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) {
        return db_fail(st, rc, "reading areas");
    }
    int ret = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_area a = {
            .id = col_text(s, 0),
            .kind = sqlite3_column_int(s, 1),
            .name = col_text(s, 2),
            .parent = col_text(s, 3),
            .attrs_json = col_text(s, 4),
        };
        if (flags & STORE_AREA_WKB) {
            a.wkb = sqlite3_column_blob(s, 5);
            a.wkb_len = (size_t)sqlite3_column_bytes(s, 5);
        }
        if (flags & STORE_AREA_GEOJSON) {
            a.geojson = col_text(s, 6);
        }
        if ((ret = fn(&a, ctx)) != 0) {
            break;
        }
    }
    if (ret == 0 && rc != SQLITE_DONE) {
        ret = db_fail(st, rc, "reading areas");
    }
    sqlite3_finalize(s);
    return ret;
}

int store_link_each(struct store *st, int kind, const char *area_id, store_link_fn fn,
                    void *ctx)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db,
                                "SELECT kind, facility_id, area_id FROM links"
                                " WHERE (?1 < 0 OR kind = ?1) AND (?2 IS NULL OR area_id = ?2)"
                                " ORDER BY kind, facility_id, area_id",
                                -1, &s, NULL);
    if (rc != SQLITE_OK) {
        return db_fail(st, rc, "reading links");
    }
    sqlite3_bind_int(s, 1, kind);
    if (area_id) {
        sqlite3_bind_text(s, 2, area_id, -1, SQLITE_STATIC);
    }
    int ret = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_link l = {
            .kind = sqlite3_column_int(s, 0),
            .facility_id = col_text(s, 1),
            .area_id = col_text(s, 2),
        };
        if ((ret = fn(&l, ctx)) != 0) {
            break;
        }
    }
    if (ret == 0 && rc != SQLITE_DONE) {
        ret = db_fail(st, rc, "reading links");
    }
    sqlite3_finalize(s);
    return ret;
}
