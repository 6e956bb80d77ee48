/* Tiny assertion helper shared by the C API tests. Diagnostics go to
 * stderr: stdout carries only the records the driver compares. */
#ifndef GOPHER_TEST_CHECK_H
#define GOPHER_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

#define CHECK_STATUS(expr, want)                                              \
    do {                                                                      \
        gopher_status got_ = (expr);                                          \
        if (got_ != (gopher_status)(want)) {                                  \
            fprintf(stderr, "FAIL %s:%d: %s = %u (%s), want %s\n", __FILE__, \
                    __LINE__, #expr, (unsigned)got_, gopher_status_str(got_), \
                    #want);                                                   \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

#endif
