/* A probe built for a future major version of the ABI: must be refused. */
#include "gopher.h"

static int collect(const struct probe_params *params)
{
    (void)params;
    return 0;
}

const struct gopher_probe_desc gopher_probe_descriptor = {
    (2u << 16) | 0u, "future_abi", collect, 1,
};
