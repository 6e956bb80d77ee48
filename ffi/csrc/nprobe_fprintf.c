/*
 * nprobe_fprintf: the legacy V1 record printf of libgopher.
 *
 * To stdout, each formatted line becomes one record through
 * gopher_record_emit_line (lines not starting with '|' go to the debug
 * log instead, as the daemon does with an extend probe's stdout). To any
 * other stream it is plain vfprintf.
 *
 * The exported symbol nprobe_fprintf is a Rust trampoline to
 * gopher_nprobe_fprintf_impl on x86_64 and aarch64 (see ffi/src/nprobe.rs);
 * elsewhere this file defines it (GOPHER_NPROBE_FPRINTF_IN_C).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "gopher.h"
#include "nprobe_fprintf.h"

/* One record line of at most GOPHER_MAX_LINE_LEN bytes, its newline, NUL. */
#define NPROBE_BUF_SIZE (GOPHER_MAX_LINE_LEN + 2)

int gopher_nprobe_fprintf_impl(FILE *stream, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int nprobe_emit_lines(char *buf, size_t len)
{
    int failed = 0;
    size_t start = 0;

    while (start < len) {
        char *nl = memchr(buf + start, '\n', len - start);
        size_t end = nl != NULL ? (size_t)(nl - buf) : len;

        buf[end] = '\0';
        if (end > start) {
            const char *line = buf + start;
            if (line[0] == '|') {
                gopher_status st = gopher_record_emit_line(line);
                if (st != GOPHER_OK) {
                    char msg[160];
                    (void)snprintf(msg, sizeof msg,
                                   "nprobe_fprintf: record refused: %s (line starts \"%.40s\")",
                                   gopher_status_str(st), line);
                    (void)gopher_log(GOPHER_LOG_WARN, msg);
                    failed = 1;
                }
            } else {
                (void)gopher_log(GOPHER_LOG_DEBUG, line);
            }
        }
        start = end + 1;
    }
    return failed ? -1 : 0;
}

static int nprobe_vfprintf(FILE *stream, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static int nprobe_vfprintf(FILE *stream, const char *fmt, va_list ap)
{
    char buf[NPROBE_BUF_SIZE];
    int n;

    if (stream == NULL || fmt == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (stream != stdout) {
        return vfprintf(stream, fmt, ap);
    }

    n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n < 0) {
        return n;
    }
    if ((size_t)n >= sizeof buf) {
        (void)gopher_log(GOPHER_LOG_ERROR,
                         "nprobe_fprintf: output longer than 8193 bytes dropped");
        return -1;
    }
    /* Keep the order with anything the probe printed to stdout by stdio. */
    (void)fflush(stdout);
    if (nprobe_emit_lines(buf, (size_t)n) != 0) {
        return -1;
    }
    return n;
}

int gopher_nprobe_fprintf_impl(FILE *stream, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = nprobe_vfprintf(stream, fmt, ap);
    va_end(ap);
    return n;
}

#ifdef GOPHER_NPROBE_FPRINTF_IN_C
int nprobe_fprintf(FILE *stream, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = nprobe_vfprintf(stream, fmt, ap);
    va_end(ap);
    return n;
}
#endif
