/*
 * Entry of the legacy_infos test probe: like system_infos, main() takes the
 * probe parameters, initialises its parts and loops forever.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "common.h"
#include "event.h"
#include "legacy_infos.h"

int main(struct probe_params *params)
{
    u32 round = 0;

    INFO("[LEGACY_INFOS] started, period %u, dev %s\n", params->period, params->target_dev);
    DEBUG("[LEGACY_INFOS] debug detail %d\n", 7);
    if (infos_procs_init(params->task_whitelist) < 0) {
        ERROR("[LEGACY_INFOS] whitelist %s could not be loaded.\n", params->task_whitelist);
        return -1;
    }

    for (;;) {
        round++;
        if (infos_sys_probe(params->period, params->target_dev, round) < 0) {
            ERROR("[LEGACY_INFOS] system part failed.\n");
        }
        if (infos_net_probe() < 0) {
            ERROR("[LEGACY_INFOS] net part failed.\n");
        }
        if (infos_procs_probe(round) < 0) {
            ERROR("[LEGACY_INFOS] procs part failed.\n");
        }
        if (round == 1) {
            WARN("[LEGACY_INFOS] warn line %s\n", "w1");
            ERROR("[LEGACY_INFOS] error line %d\n", 17);
            report_logs(METRICS_INFOS_NAME, "disk0", "util", EVT_SEC_INFO, "util is %d%%", 50);
            report_logs(METRICS_INFOS_NAME, "disk0", "iowait", EVT_SEC_WARN, "iowait high: %s", "9 ms");
            report_logs(METRICS_INFOS_NAME, "nic1", "drops", EVT_SEC_ERROR, "drops %u", 12u);
            report_logs(METRICS_INFOS_NAME, "cpu2", "temp", EVT_SEC_FATAL, "temp %d C|hot", 99);
        }
        sleep(params->period);
    }

    infos_procs_destroy();
    return 0;
}
