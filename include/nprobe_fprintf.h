/*
 * nprobe_fprintf.h: the legacy V1 record printf (docs/compat.md §3).
 * SPDX-License-Identifier: MulanPSL-2.0
 *
 * nprobe_fprintf(stdout, fmt, ...) formats like fprintf and turns each
 * formatted line into one record (gopher_record_emit_line); a line that does
 * not start with '|' goes to the debug log. The output of one call may hold
 * several lines and is limited to GOPHER_MAX_LINE_LEN + 1 bytes. It returns
 * the number of characters formatted, or -1 when the output was too long or
 * a line was refused (the reason is logged). To any other stream it is
 * plain vfprintf.
 */
#ifndef GOPHER_NPROBE_FPRINTF_H
#define GOPHER_NPROBE_FPRINTF_H

#include <stdio.h>

#include "gopher.h"

#ifdef __cplusplus
extern "C" {
#endif

int nprobe_fprintf(FILE *stream, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif /* GOPHER_NPROBE_FPRINTF_H */
