/* A new-ABI probe whose collection never returns and prints nothing. */
#include <unistd.h>
#include "gopher.h"

static int collect(const struct probe_params *params)
{
    (void)params;
    for (;;)
        pause();
    return 0;
}

const struct gopher_probe_desc gopher_probe_descriptor = {
    GOPHER_ABI_VERSION, "hanger", collect, 1,
};
