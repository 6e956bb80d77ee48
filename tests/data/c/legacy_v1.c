/*
 * A V1-style legacy probe, as users of the C gala-gopher write them. It must
 * build UNCHANGED: the build renames main with -Dmain=probe_main_legacy_v1.
 */
#include <stdio.h>
#include "args.h"
#include "nprobe_fprintf.h"

int main(struct probe_params *params)
{
    /* One collection per call; the host calls it every period. */
    nprobe_fprintf(stdout, "|demo_app|%u|v1_%s|%u|%u|\n",
                   1000u + params->period, params->target_dev, params->period, 3u);
    return 0;
}
