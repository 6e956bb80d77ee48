/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared between ipvs_link.bpf.c and its Rust decoder (decode.rs mirrors
 * both structs with #[repr(C)] and checks sizes and offsets).
 */
#pragma once

/* One IPVS flow as the topology sees it. Addresses are 16 bytes; an
 * AF_INET address uses the first 4 (network order). Ports are network
 * order, as struct ip_vs_conn holds them. */
struct ipvs_key {
	__u8 caddr[16];  /* client */
	__u8 vaddr[16];  /* virtual service */
	__u8 daddr[16];  /* real server (destination) */
	__u8 laddr[16];  /* local (source-NAT) address; 0 when the kernel has none */
	__be16 vport;
	__be16 dport;
	__u16 af;        /* family of caddr and vaddr: AF_INET or AF_INET6 */
	__u16 daf;       /* family of daddr (and laddr) */
	__u16 protocol;  /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP */
	__u16 pad;
};

/* Cumulative counts of the flow's connections. */
struct ipvs_val {
	__u64 opened; /* ip_vs_conn_new returned a connection */
	__u64 closed; /* ip_vs_conn_expire freed one */
};

enum ipvs_stat {
	IPVS_STAT_OVERFLOW = 0, /* connections not counted: the flow map was full */
	IPVS_STAT_MAX = 2,
};
