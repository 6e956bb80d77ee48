/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared between dnsmasq_link.bpf.c and its Rust decoder (decode.rs mirrors
 * every struct here with #[repr(C)] and checks sizes and offsets).
 */
#pragma once

#define DL_PAYLOAD_MAX 512 /* bytes of the DNS message copied (header + question) */
#define DL_CTL_MAX 128     /* bytes of ancillary data copied (IP_PKTINFO) */
#define DL_NAME_MAX 28     /* a struct sockaddr_in6 */
#define DL_COMM_LEN 16

/* One datagram a server process (dnsmasq) received: sent to user space. */
struct dl_query {
	__u32 tgid;        /* the server process */
	__u32 payload_len; /* bytes copied into payload */
	__u32 ret;         /* bytes the receive call returned */
	__u16 name_len;    /* bytes copied into name (the sender's sockaddr) */
	__u16 ctl_len;     /* bytes copied into ctl */
	__u16 sock_family; /* the receiving socket: AF_INET or AF_INET6 (0: unknown) */
	__u16 sock_port;   /* its local port, host order */
	__u8 sock_addr[16];/* its bound address (4 bytes used for AF_INET; 0: wildcard) */
	__u8 name[DL_NAME_MAX];
	char comm[DL_COMM_LEN];
	__u8 ctl[DL_CTL_MAX];
	__u8 payload[DL_PAYLOAD_MAX];
};

/* A UDP socket of this host that sent to the DNS port: its local address. */
struct dl_client_key {
	__u16 family; /* AF_INET or AF_INET6; v4-mapped IPv6 is stored as AF_INET */
	__u16 port;   /* local port, host order */
	__u8 addr[16];/* local address (4 bytes used for AF_INET); 0 when unbound */
};

/* Who owns it. */
struct dl_client_val {
	__u32 pid; /* tgid */
	__u32 tid;
	__u64 ts;  /* bpf_ktime_get_ns of the last send */
	char comm[DL_COMM_LEN];
};

/* Slots of the per-CPU `stats` array. */
enum dl_stat {
	DL_STAT_RINGBUF_FULL = 0, /* queries lost: the ring buffer was full */
	DL_STAT_CLIENTS = 1,      /* client sockets recorded (sends to the DNS port) */
	DL_STAT_PENDING_FULL = 2, /* calls not followed: the map of calls in flight was full */
	DL_STAT_MAX = 4,
};
