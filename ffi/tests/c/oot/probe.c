/* An out-of-tree probe: built with
 *     gcc -shared -fPIC -Wall -Wextra -Werror -I <include> probe.c -L <lib> -lgopher -o probe.so
 * and exporting its descriptor as gopher_probe_descriptor. */
#include "gopher.h"
#include "nprobe_fprintf.h"

static int oot_entry(const struct probe_params *params)
{
    const char *values[] = {"oot", params->target_dev, NULL};

    if (gopher_record_emit("oot_demo", values, 3) != GOPHER_OK) {
        return 1;
    }
    /* Variadic arguments of every class through the exported trampoline. */
    return nprobe_fprintf(stdout, "|oot_printf|%s|%d|%.2f|%ld|%c|%.1f|%u|%.3e|\n", "k", -7, 2.5,
                          1234567890123L, 'z', 0.5, 42u, 1e10) > 0
               ? 0
               : 1;
}

const struct gopher_probe_desc gopher_probe_descriptor = {
    GOPHER_ABI_VERSION,
    "oot_demo",
    oot_entry,
    5,
};
