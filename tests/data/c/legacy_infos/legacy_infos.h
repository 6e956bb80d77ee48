/*
 * legacy_infos: a test probe in the shape of the 1.x in-tree system_infos
 * probe (several .c files, one private header, the legacy common headers),
 * compiled unchanged against include/ and include/legacy/.
 */
#ifndef __LEGACY_INFOS_H__
#define __LEGACY_INFOS_H__

#pragma once

#include "common.h"

#define METRICS_INFOS_NAME "legacy_infos"
#define INFOS_BUF_LEN 256

/* infos_net.c */
int infos_net_probe(void);
/* infos_procs.c */
int infos_procs_init(const char *whitelist_path);
int infos_procs_probe(u32 round);
void infos_procs_destroy(void);
/* infos_sys.c */
int infos_sys_probe(unsigned int period, const char *dev, u32 round);

#endif
