/*
 * args.h: legacy probe parameters (docs/compat.md §3).
 * SPDX-License-Identifier: MulanPSL-2.0
 *
 * struct probe_params, in the exact legacy V1 layout, is declared in
 * gopher.h (generated); this header keeps the legacy include name and the
 * legacy default values. A V1 probe's entry is
 *     int main(struct probe_params *params)
 * renamed at build time with -Dmain=probe_main_<name>.
 */
#ifndef GOPHER_ARGS_H
#define GOPHER_ARGS_H

#include "gopher.h"

/* Defaults of struct probe_params (what an empty param string gives).
 * Prefixed, so that they never clash with a legacy source's own macros. */
#define GOPHER_PARAMS_DEFAULT_PERIOD 5u
#define GOPHER_PARAMS_DEFAULT_SAMPLE_PERIOD 100u
#define GOPHER_PARAMS_DEFAULT_LOAD_PROBE 0xFFFFFFFFu

/* Sizes of the string fields, terminating NUL included. */
#define GOPHER_PARAMS_DEV_LEN 32
#define GOPHER_PARAMS_PATH_LEN 512
#define GOPHER_PARAMS_COMM_LEN 17

#endif /* GOPHER_ARGS_H */
