/*
 * object.h: the legacy 1.x object registry (processes, cgroups, namespaces
 * a probe tracks), kept so that probes build unchanged (docs/compat.md §3).
 * SPDX-License-Identifier: MulanPSL-2.0
 *
 * In 1.x these reference counts lived in eBPF maps pinned under
 * /sys/fs/bpf/probe and were shared by all probes of the daemon. Here each
 * probe runs in its own process and the counts are kept in that process
 * only: add/put/exist behave as before within one probe, but another probe
 * does not see them. The first call logs this once.
 */
#ifndef __GOPHER_OBJ_H__
#define __GOPHER_OBJ_H__

#define CGRP_MAP_PATH "/sys/fs/bpf/probe/cgroup_map"
#define NM_MAP_PATH "/sys/fs/bpf/probe/nm_map"
#define PROC_MAP_PATH "/sys/fs/bpf/probe/proc_map"

#define CGRP_MAP_MAX_ENTRIES 100
#define NM_MAP_MAX_ENTRIES 100
#define PROC_MAP_MAX_ENTRIES 1000

enum cgp_type_e {
    CGP_TYPE_CPUACCT = 0,
    CGP_TYPE_MEM,
    CGP_TYPE_BLKIO,
    CGP_TYPE_PIDS,
    CGP_TYPE_NET,
    CGP_TYPE_HUGETLB,
    CGP_TYPE_MAX
};

struct proc_s {
    unsigned int proc_id;
};

struct cgroup_s {
    unsigned int knid;
    enum cgp_type_e type;
};

enum nm_type_e {
    NM_TYPE_CGRP = 0,
    NM_TYPE_MNT,
    NM_TYPE_NET,
    NM_TYPE_PID,
    NM_TYPE_MAX
};

struct nm_s {
    unsigned int id;
    enum nm_type_e type;
};

struct obj_ref_s {
    unsigned int count;
};

#if !defined(BPF_PROG_KERN) && !defined(BPF_PROG_USER)
#ifdef __cplusplus
extern "C" {
#endif

/* add: one more reference (0, or -1 when the table is full);
 * put: one less, forgotten at zero (0, or -1 when unknown);
 * is_*_exist: 1 while referenced, else 0. NULL gives -1 or 0. */
int proc_put(struct proc_s *obj);
int proc_add(struct proc_s *obj);
int cgrp_put(struct cgroup_s *obj);
int cgrp_add(struct cgroup_s *obj);
int nm_put(struct nm_s *obj);
int nm_add(struct nm_s *obj);
char is_proc_exist(struct proc_s *obj);
char is_nm_exist(struct nm_s *obj);
char is_cgrp_exist(struct cgroup_s *obj);

/* 1 after obj_module_init, 0 after obj_module_exit. */
char obj_module_init_ok(void);
/* Nothing to look up here (there are no shared maps); kept for linking. */
void obj_module_set_maps_fd(void);
void obj_module_init(void);
/* Forgets every object. */
void obj_module_exit(void);

#ifdef __cplusplus
}
#endif
#endif

#endif /* __GOPHER_OBJ_H__ */
