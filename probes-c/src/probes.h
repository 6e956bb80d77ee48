/*
 * The descriptors of gala-gopher's own C probes (declared in Rust by
 * probes-c/src/lib.rs) and, for the tests, the field names each one
 * prints, in order.
 * SPDX-License-Identifier: MulanPSL-2.0
 */
#ifndef GOPHER_PROBES_C_PROBES_H
#define GOPHER_PROBES_C_PROBES_H

#include "gopher.h"

extern const struct gopher_probe_desc gopher_probe_system_cpu;
extern const struct gopher_probe_desc gopher_probe_system_net;

/* NULL-terminated field names of each probe's table, in record order. */
const char *const *gopher_probe_system_cpu_fields(void);
const char *const *gopher_probe_system_net_fields(void);

#endif /* GOPHER_PROBES_C_PROBES_H */
