// SPDX-License-Identifier: GPL-2.0
/*
 * ipvs_link: the flows an IPVS (LVS) virtual service carries, client ->
 * virtual service -> real server, counted per connection.
 *
 * - kretprobe ip_vs_conn_new: the connection IPVS just made; its flow's
 *   `opened` count goes up.
 * - kprobe ip_vs_conn_expire(struct timer_list *): the connection being
 *   freed (its `timer` member); the flow's `closed` count goes up.
 *
 * struct ip_vs_conn lives in the ip_vs module, so it is not in the pinned
 * vmlinux.h; the few members read are declared here with
 * preserve_access_index and found by CO-RE in the module's BTF on a kernel
 * that has IPVS. On a kernel without the type every read sits behind
 * bpf_core_type_exists(), which libbpf resolves to 0: the object still loads
 * (the programs do nothing) and the probe refuses to start before attaching.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "ipvs_link.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

/* The members of the kernel's struct ip_vs_conn this probe reads (the
 * ___gg suffix is a CO-RE flavour: it matches ip_vs_conn). */
struct ip_vs_conn___gg {
	__be16 cport;
	__be16 dport;
	__be16 vport;
	__u16 af;
	union nf_inet_addr caddr;
	union nf_inet_addr vaddr;
	union nf_inet_addr daddr;
	__u16 protocol;
	__u16 daf;
	struct timer_list timer;
} __attribute__((preserve_access_index));

/* Out-of-tree full-NAT builds (the legacy probe's ip_vs_conn_fnat) have a
 * local address too; read only where the member exists. */
struct ip_vs_conn___fnat {
	union nf_inet_addr laddr;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct ipvs_key);
	__type(value, struct ipvs_val);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IPVS_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void read_addr(__u8 out[16], const union nf_inet_addr *a, __u16 af)
{
	bpf_probe_read_kernel(out, af == AF_INET6 ? 16 : 4, a);
}

/* Fills `k` from the connection; false when the type is unknown here. */
static __always_inline bool flow_key(struct ip_vs_conn___gg *cp, struct ipvs_key *k)
{
	if (!bpf_core_type_exists(struct ip_vs_conn___gg))
		return false;
	k->af = BPF_CORE_READ(cp, af);
	k->daf = k->af;
	if (bpf_core_field_exists(cp->daf))
		k->daf = BPF_CORE_READ(cp, daf);
	if (k->af != AF_INET && k->af != AF_INET6)
		return false;
	read_addr(k->caddr, &cp->caddr, k->af);
	read_addr(k->vaddr, &cp->vaddr, k->af);
	read_addr(k->daddr, &cp->daddr, k->daf);
	if (bpf_core_type_exists(struct ip_vs_conn___fnat)) {
		struct ip_vs_conn___fnat *f = (void *)cp;
		if (bpf_core_field_exists(f->laddr))
			read_addr(k->laddr, &f->laddr, k->daf);
	}
	k->vport = BPF_CORE_READ(cp, vport);
	k->dport = BPF_CORE_READ(cp, dport);
	k->protocol = BPF_CORE_READ(cp, protocol);
	return true;
}

SEC("kretprobe/ip_vs_conn_new")
int BPF_KRETPROBE(ipvs_link_new, struct ip_vs_conn___gg *cp)
{
	struct ipvs_key k = {};
	struct ipvs_val zero = {}, *v;

	if (!cp || !flow_key(cp, &k))
		return 0;
	v = bpf_map_lookup_elem(&flows, &k);
	if (!v) {
		if (bpf_map_update_elem(&flows, &k, &zero, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&flows, &k)) {
			__u32 slot = IPVS_STAT_OVERFLOW;
			__u64 *n = bpf_map_lookup_elem(&stats, &slot);
			if (n)
				*n += 1;
			return 0;
		}
		v = bpf_map_lookup_elem(&flows, &k);
		if (!v)
			return 0;
	}
	__sync_fetch_and_add(&v->opened, 1);
	return 0;
}

SEC("kprobe/ip_vs_conn_expire")
int BPF_KPROBE(ipvs_link_expire, struct timer_list *t)
{
	struct ipvs_key k = {};
	struct ipvs_val *v;
	struct ip_vs_conn___gg *cp;

	if (!bpf_core_type_exists(struct ip_vs_conn___gg) || !t)
		return 0;
	cp = (void *)((char *)t - bpf_core_field_offset(struct ip_vs_conn___gg, timer));
	if (!flow_key(cp, &k))
		return 0;
	v = bpf_map_lookup_elem(&flows, &k);
	if (v)
		__sync_fetch_and_add(&v->closed, 1);
	return 0;
}
