/* struct probe_params has the exact legacy V1 layout: the offsets below are
 * worked out by hand with the C rules and match the Rust unit test
 * params::tests::layout_is_the_legacy_v1_layout. */
#include <stddef.h>

#include "args.h"
#include "check.h"

_Static_assert(offsetof(struct probe_params, period) == 0, "period");
_Static_assert(offsetof(struct probe_params, sample_period) == 4, "sample_period");
_Static_assert(offsetof(struct probe_params, latency_thr) == 8, "latency_thr");
_Static_assert(offsetof(struct probe_params, jitter_thr) == 12, "jitter_thr");
_Static_assert(offsetof(struct probe_params, offline_thr) == 16, "offline_thr");
_Static_assert(offsetof(struct probe_params, drops_count_thr) == 20, "drops_count_thr");
_Static_assert(offsetof(struct probe_params, filter_pid) == 24, "filter_pid");
_Static_assert(offsetof(struct probe_params, load_probe) == 28, "load_probe");
_Static_assert(offsetof(struct probe_params, logs) == 32, "logs");
_Static_assert(offsetof(struct probe_params, pad) == 33, "pad");
_Static_assert(offsetof(struct probe_params, filter_task_probe) == 36, "filter_task_probe");
_Static_assert(offsetof(struct probe_params, res_percent_upper) == 37, "res_percent_upper");
_Static_assert(offsetof(struct probe_params, res_percent_lower) == 38, "res_percent_lower");
_Static_assert(offsetof(struct probe_params, cport_flag) == 39, "cport_flag");
_Static_assert(offsetof(struct probe_params, cycle_sampling_flag) == 40, "cycle_sampling_flag");
_Static_assert(offsetof(struct probe_params, target_dev) == 41, "target_dev");
_Static_assert(offsetof(struct probe_params, elf_path) == 73, "elf_path");
_Static_assert(offsetof(struct probe_params, task_whitelist) == 585, "task_whitelist");
_Static_assert(offsetof(struct probe_params, netcard_list) == 1097, "netcard_list");
_Static_assert(offsetof(struct probe_params, target_comm) == 1609, "target_comm");
_Static_assert(sizeof(struct probe_params) == 1628, "size");
_Static_assert(sizeof(((struct probe_params *)0)->target_dev) == GOPHER_PARAMS_DEV_LEN, "dev");
_Static_assert(sizeof(((struct probe_params *)0)->elf_path) == GOPHER_PARAMS_PATH_LEN, "path");
_Static_assert(sizeof(((struct probe_params *)0)->target_comm) == GOPHER_PARAMS_COMM_LEN, "comm");

_Static_assert(GOPHER_ABI_VERSION == ((GOPHER_ABI_VERSION_MAJOR << 16) | GOPHER_ABI_VERSION_MINOR),
               "abi version packing");
_Static_assert(sizeof(gopher_status) == 4 && sizeof(gopher_log_level) == 4, "enum sizes");
_Static_assert(GOPHER_OK == 0, "GOPHER_OK is 0");

int main(void)
{
    CHECK(gopher_abi_version() == GOPHER_ABI_VERSION);
    CHECK_STATUS(gopher_record_emit_line("|layout|ok|"), GOPHER_OK);
    return 0;
}
