/* fuzz_check.h: CHECK(), the property assertion of the fuzz targets, written
 * once. It calls abort() rather than assert(): the check must hold in any
 * build type, and libFuzzer reports an abort as a crash and keeps its input.
 * The failed condition, with its file and line, goes to stderr first. */
#ifndef NEARESTD_FUZZ_CHECK_H
#define NEARESTD_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s: check failed: %s (line %d)\n", __FILE__, #cond,    \
                    __LINE__);                                                      \
            abort();                                                                \
        }                                                                           \
    } while (0)

#endif
