/* A probe written against the new ABI: a descriptor and gopher_record_emit. */
#include <stdio.h>
#include "gopher.h"

static int collect(const struct probe_params *params)
{
    char period[16];
    snprintf(period, sizeof period, "%u", params->period);
    const char *values[] = { "3000", "newabi", period, NULL };
    return gopher_record_emit("demo_app", values, 4) == GOPHER_OK ? 0 : 1;
}

const struct gopher_probe_desc gopher_probe_descriptor = {
    GOPHER_ABI_VERSION, "new_abi", collect, 1,
};
