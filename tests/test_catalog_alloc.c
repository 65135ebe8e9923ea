/* test_catalog_alloc.c: the catalogue when an allocation fails.
 *
 * Linked with -Wl,--wrap=realloc, so this file's __wrap_realloc() sees every
 * realloc() the catalogue makes and can refuse one chosen by its size. Each
 * test asserts that the refusal it arranged really happened, so a change of
 * sizes cannot turn it into a test of nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "catalog.h"
#include "hours.h"
#include "store.h"

void *__real_realloc(void *p, size_t n);

static size_t refuse_min, refuse_max; /* refuse a NULL-based realloc of this many bytes */
static int refused;

void *__wrap_realloc(void *p, size_t n) {
    if (p == NULL && n >= refuse_min && n <= refuse_max && refused == 0) {
        refused++;
        return NULL;
    }
    return __real_realloc(p, n);
}

/* The first array of timetables (16 of them, each a week of bits and its
 * text) cannot be had: the facility is stored without hours, and OPEN says
 * it is closed. It used to count timetable 0 before the array existed, and
 * OPEN then read it through a NULL pointer. */
static void test_a_failed_first_timetable_array_leaves_open_answering_closed(void **state) {
    (void)state;
    struct catalog *c = catalog_new();
    assert_non_null(c);
    struct store_facility f = {.id = "mp-1", .category = STORE_CAT_MEAL_POINT,
                               .subtype = "", .name = "n", .address = "", .phone = "",
                               .hours = "24/7", .attrs_json = "{}",
                               .where = {.lat_deg = 36.16, .lon_deg = 120.41}};
    refuse_min = 16 * sizeof(struct hours_week);
    refuse_max = 16 * (sizeof(struct hours_week) + 64);
    refused = 0;
    assert_int_equal(catalog_put(c, &f), CATALOG_OK);
    refuse_max = 0;
    assert_int_equal(refused, 1);
    uint32_t slot;
    assert_int_equal(catalog_find(c, "mp-1", &slot), CATALOG_OK);
    assert_false(catalog_is_open_at(c, slot, 1764400000, 480));

    /* The next facility with hours gets its timetable, and is open. */
    f.id = "mp-2";
    assert_int_equal(catalog_put(c, &f), CATALOG_OK);
    assert_int_equal(catalog_find(c, "mp-2", &slot), CATALOG_OK);
    assert_true(catalog_is_open_at(c, slot, 1764400000, 480));
    catalog_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_failed_first_timetable_array_leaves_open_answering_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
