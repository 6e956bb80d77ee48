/*
 * An example C probe for gala-gopher, written against gopher.h from the
 * gala-gopher-devel package. Each period it emits one record of the table
 * example_loadavg (example.meta): the node's load averages and how many
 * collections it has made.
 *
 * Build it (the Makefile beside this file does the same):
 *     cc $(pkg-config --cflags gopher) -shared -fPIC -o example.so probe.c $(pkg-config --libs gopher)
 * Install its table and name it in /etc/gala-gopher/gala-gopher.toml:
 *     cp example.meta /opt/gala-gopher/meta/
 *     [[probes]]
 *     name = "example"
 *     library = "/opt/example/example.so"
 *     param = "-t 5"
 * then `systemctl reload gala-gopher`. The records are on
 * http://127.0.0.1:8888/metrics as gala_gopher_example_load1 and so on.
 *
 * SPDX-License-Identifier: MulanPSL-2.0
 */
#define _DEFAULT_SOURCE /* getloadavg */
#include <stdio.h>
#include <stdlib.h>

#include "gopher.h"

static unsigned long long collections;

/* Called by the probe host once per period; returns 0 when it collected. */
static int collect(const struct probe_params *params)
{
    double load[3];
    char load1[32], load5[32], load15[32], count[32];

    (void)params; /* params->period, ... as parsed from `param` */
    if (getloadavg(load, 3) != 3) {
        gopher_log(GOPHER_LOG_WARN, "getloadavg failed");
        return 1;
    }
    collections++;
    snprintf(load1, sizeof load1, "%.2f", load[0]);
    snprintf(load5, sizeof load5, "%.2f", load[1]);
    snprintf(load15, sizeof load15, "%.2f", load[2]);
    snprintf(count, sizeof count, "%llu", collections);

    /* The values follow the table's fields in order. */
    const char *values[] = { "getloadavg", load1, load5, load15, count };
    gopher_status st = gopher_record_emit("example_loadavg", values, 5);
    if (st != GOPHER_OK) {
        gopher_log(GOPHER_LOG_ERROR, gopher_status_str(st));
        return 1;
    }
    return 0;
}

/* What the probe host looks up: the ABI the probe was built for, its name,
 * its entry and its default period in seconds (param -t overrides it). */
const struct gopher_probe_desc gopher_probe_descriptor = {
    GOPHER_ABI_VERSION, "example", collect, 5,
};
