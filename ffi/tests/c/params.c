/* gopher_params_get parses GOPHER_PROBE_PARAM (set by the driver). */
#include "args.h"
#include "check.h"
#include "nprobe_fprintf.h"

int main(void)
{
    struct probe_params p;
    gopher_status st;

    CHECK_STATUS(gopher_params_get(NULL), GOPHER_ERR_NULL);
    st = gopher_params_get(&p);
    if (st != GOPHER_OK) {
        CHECK(nprobe_fprintf(stdout, "|params|error|%u|\n", (unsigned)st) > 0);
        return 0;
    }
    CHECK(nprobe_fprintf(stdout, "|params|%u|%u|%s|%u|%d|%s|\n", p.period, p.sample_period,
                         p.target_dev, p.load_probe, p.filter_task_probe, p.target_comm) > 0);
    return 0;
}
