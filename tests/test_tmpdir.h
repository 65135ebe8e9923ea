/* test_tmpdir.h: the fixture of the tests that work on real database files
 * (test_import, test_store), written once: each test gets a new temporary
 * directory under /tmp and the path of a database in it, and the directory
 * goes away after the test whatever it left there. Header-only (static
 * inline), for cmocka programs: include it after <cmocka.h>. */
#ifndef NEARESTD_TEST_TMPDIR_H
#define NEARESTD_TEST_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tmpdir_fixture {
    char dir[64]; /* /tmp/<program>.XXXXXX, made by mkdtemp */
    char db[128]; /* dir/catalogue.db, not created */
};

/* The cmocka setup: a new fixture in *state with its directory made;
 * `program` names the directory. Returns 0, or -1 when it could not. */
static inline int tmpdir_fixture_setup(void **state, const char *program) {
    struct tmpdir_fixture *fx = calloc(1, sizeof *fx);
    if (!fx) {
        return -1;
    }
    snprintf(fx->dir, sizeof fx->dir, "/tmp/%s.XXXXXX", program);
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->db, sizeof fx->db, "%s/catalogue.db", fx->dir);
    *state = fx;
    return 0;
}

/* The cmocka teardown: removes the directory with all in it and frees the
 * fixture. Returns 0, or -1 when the directory could not be removed. */
static inline int tmpdir_fixture_teardown(void **state) {
    struct tmpdir_fixture *fx = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    int rc = system(cmd);
    free(fx);
    return rc == 0 ? 0 : -1;
}

/* Writes text to dir/name, failing the test on any error, and returns the
 * path: a static buffer, one of four used in turn. */
static inline const char *tmpdir_write_file(const char *dir, const char *name,
                                            const char *text) {
    static char paths[4][256];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
    return path;
}

#endif
