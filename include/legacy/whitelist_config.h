/*
 * whitelist_config.h: the legacy 1.x application whitelist
 * (gala-gopher-app.conf), kept so that probes build unchanged
 * (docs/compat.md §3).
 * SPDX-License-Identifier: MulanPSL-2.0
 *
 * The file is libconfig syntax:
 *     application = ( { comm = "<regex>"; cmdline = "<substring>"; }, ... );
 */
#ifndef __GOPHER_WHITELIST_CONFIG_H__
#define __GOPHER_WHITELIST_CONFIG_H__


#include "common.h"

#define PROC_NAME_MAX 64
#define PROC_CMD_LINE_MAX 128
#define PROC_MAX_RANGE 64

typedef struct {
    char comm[PROC_NAME_MAX];
    char cmd_line[PROC_CMD_LINE_MAX];
} ApplicationConfig;

typedef struct {
    int apps_num;
    ApplicationConfig *apps[PROC_MAX_RANGE];
} ApplicationsConfig;

#ifdef __cplusplus
extern "C" {
#endif

/* Reads the whitelist at path into a new *conf (free it with
 * whitelist_config_destroy). 0 on success; -1 on any error, which is logged
 * with the file, line and what was expected, and *conf is then NULL. Each
 * entry needs comm and cmdline strings; at most PROC_MAX_RANGE entries. */
int parse_whitelist_config(ApplicationsConfig **conf, const char *path);
/* Frees conf and its entries (NULL is ignored). */
void whitelist_config_destroy(ApplicationsConfig *conf);
/* 1 when the POSIX extended regex pattern matches string, else 0 (also for
 * an empty string or pattern, or a pattern that does not compile). */
int is_str_match_pattern(const char *string, char *pattern);

#ifdef __cplusplus
}
#endif

#endif /* __GOPHER_WHITELIST_CONFIG_H__ */
