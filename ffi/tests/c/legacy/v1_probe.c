/* A V1-style legacy probe, as users wrote them: args.h, nprobe_fprintf.h,
 * and `int main(struct probe_params *params)`. The test compiles it
 * unchanged with -Dmain=probe_main_v1_demo and calls it from v1_driver.c. */
#include <stdio.h>
#include "args.h"
#include "nprobe_fprintf.h"

#define METRIC_NAME "v1_demo"

int main(struct probe_params *params)
{
    static unsigned calls;

    calls++;
    (void)nprobe_fprintf(stdout, "|%s|%s|%u|%u|\n", METRIC_NAME, params->target_dev,
                         params->period, calls);
    return 0;
}
