// SPDX-License-Identifier: GPL-2.0
/*
 * The floor for the tcp_link benchmark: a program that does nothing, on the
 * same hook as tcp_link's state handler. Attached beside it in the same
 * job, its run time is what the hook and kernel.bpf_stats_enabled cost on
 * this machine at that moment; the state handler's own work is the rest.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(floor_state_btf, const struct sock *sk, const int old, const int new)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
