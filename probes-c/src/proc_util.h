/*
 * Helpers shared by gala-gopher's own C probes: the proc root, a line
 * reader with a fixed buffer that skips over-long lines, and number parsing.
 * Everything is static: each probe's translation unit gets its own copy.
 * SPDX-License-Identifier: MulanPSL-2.0
 */
#ifndef GOPHER_PROBES_C_PROC_UTIL_H
#define GOPHER_PROBES_C_PROC_UTIL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gopher.h"

/* Environment variable that moves the proc root (fixture tests). */
#define GOPHER_PROC_ROOT_ENV "GOPHER_PROC_ROOT"
#define GOPHER_PROC_ROOT_DEFAULT "/proc"

#define PROC_PATH_MAX 4096

/* Line reader results. */
enum {
    LINE_EOF = 0,
    LINE_OK = 1,
    LINE_TOO_LONG = 2, /* the line did not fit and was skipped */
    LINE_ERROR = -1,
};

/* Writes "<root>/<rel>" into buf; returns 0, or -1 if it does not fit. */
static inline int proc_path(char *buf, size_t size, const char *rel)
{
    const char *root = getenv(GOPHER_PROC_ROOT_ENV);
    int n;

    if (root == NULL || root[0] == '\0') {
        root = GOPHER_PROC_ROOT_DEFAULT;
    }
    n = snprintf(buf, size, "%s/%s", root, rel);
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

/* Reads the next line into buf without its newline. A line longer than
 * size - 2 bytes is consumed to its end and reported as LINE_TOO_LONG. */
static inline int next_line(FILE *f, char *buf, size_t size)
{
    size_t len;

    if (fgets(buf, (int)size, f) == NULL) {
        return ferror(f) ? LINE_ERROR : LINE_EOF;
    }
    len = strlen(buf);
    if (len > 0 && buf[len - 1] == '\n') {
        buf[len - 1] = '\0';
        return LINE_OK;
    }
    if (feof(f)) {
        return LINE_OK; /* last line without a newline */
    }
    /* Too long: drop the rest of this line. */
    for (;;) {
        int c = fgetc(f);
        if (c == '\n' || c == EOF) {
            break;
        }
    }
    buf[0] = '\0';
    return ferror(f) ? LINE_ERROR : LINE_TOO_LONG;
}

/* The next whitespace-separated token of *cursor, NUL-terminated in place;
 * NULL at the end of the string. */
static inline char *next_token(char **cursor)
{
    char *p = *cursor;
    char *start;

    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (*p == '\0') {
        *cursor = p;
        return NULL;
    }
    start = p;
    while (*p != '\0' && *p != ' ' && *p != '\t') {
        p++;
    }
    if (*p != '\0') {
        *p++ = '\0';
    }
    *cursor = p;
    return start;
}

/* Copies a decimal counter into out (at most 20 digits, no sign); returns
 * 0, or -1 if tok is not one (out is then ""). */
static inline int copy_number(char *out, size_t size, const char *tok)
{
    size_t len = strlen(tok);

    out[0] = '\0';
    if (len == 0 || len >= size || len > 20 || strspn(tok, "0123456789") != len) {
        return -1;
    }
    memcpy(out, tok, len + 1);
    return 0;
}

/* Logs "<what> <path>: <strerror(err)>" at level. */
static inline void log_errno(uint32_t level, const char *what, const char *path, int err)
{
    char msg[PROC_PATH_MAX + 128];

    (void)snprintf(msg, sizeof msg, "%s %s: %s", what, path, strerror(err));
    (void)gopher_log(level, msg);
}

#endif /* GOPHER_PROBES_C_PROC_UTIL_H */
