/* The procs part: the application whitelist and the object registry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "object.h"
#include "nprobe_fprintf.h"
#include "whitelist_config.h"
#include "legacy_infos.h"

static ApplicationsConfig *g_apps = NULL;

int infos_procs_init(const char *whitelist_path)
{
    obj_module_init();
    if (!obj_module_init_ok()) {
        return -1;
    }
    obj_module_set_maps_fd();
    return parse_whitelist_config(&g_apps, whitelist_path);
}

int infos_procs_probe(u32 round)
{
    struct proc_s self = {.proc_id = (unsigned int)getpid()};
    struct cgroup_s cg = {.knid = 1000 + round, .type = CGP_TYPE_CPUACCT};
    struct nm_s ns = {.id = 4026531836u, .type = NM_TYPE_NET};
    int matched = 0;
    int i;

    for (i = 0; i < g_apps->apps_num; i++) {
        ApplicationConfig *app = g_apps->apps[i];
        if (is_str_match_pattern("kafka-server", app->comm)) {
            matched++;
        }
        (void)nprobe_fprintf(stdout, "|%s|app%d|%s/%s|%d|\n", METRICS_INFOS_NAME, i, app->comm,
                             app->cmd_line, g_apps->apps_num);
    }
    (void)nprobe_fprintf(stdout, "|%s|matched|kafka-server|%d|\n", METRICS_INFOS_NAME, matched);

    /* Two references, one dropped: the process stays known. */
    (void)proc_add(&self);
    (void)proc_add(&self);
    (void)proc_put(&self);
    (void)cgrp_add(&cg);
    (void)cgrp_put(&cg);
    (void)nm_add(&ns);
    (void)nm_put(&ns);
    (void)nprobe_fprintf(stdout, "|%s|objects|proc%d_cg%d_ns%d|%d|\n", METRICS_INFOS_NAME,
                         is_proc_exist(&self), is_cgrp_exist(&cg), is_nm_exist(&ns),
                         is_proc_exist(&self) + is_cgrp_exist(&cg) + is_nm_exist(&ns));
    (void)proc_put(&self);
    return 0;
}

void infos_procs_destroy(void)
{
    whitelist_config_destroy(g_apps);
    g_apps = NULL;
    obj_module_exit();
}
