/*
 * A V1-style legacy probe that reports the snoopers it was given in its
 * params: filter_pid (-F) and task_whitelist (-w), and how many entries the
 * legacy parse_whitelist_config reads from that file. Built unchanged with
 * -Dmain=probe_main_<name>.
 */
#include <stdio.h>
#include <unistd.h>
#include "args.h"
#include "nprobe_fprintf.h"
#include "legacy/whitelist_config.h"

int main(struct probe_params *params)
{
    int exists = 0;
    int entries = -1;
    ApplicationsConfig *conf = NULL;

    if (params->task_whitelist[0] != '\0') {
        exists = access(params->task_whitelist, R_OK) == 0;
        if (exists && parse_whitelist_config(&conf, params->task_whitelist) == 0) {
            entries = conf->apps_num;
            whitelist_config_destroy(conf);
        }
    }
    nprobe_fprintf(stdout, "|snoopers_seen|c_%s|%u|%s|%d|%d|\n",
                   params->target_comm, params->filter_pid,
                   params->task_whitelist[0] ? params->task_whitelist : "none",
                   exists, entries);
    return 0;
}
