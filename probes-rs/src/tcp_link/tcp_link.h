/* SPDX-License-Identifier: MulanPSL-2.0 */
/*
 * Layouts shared by tcp_link.bpf.c and the Rust decoder in mod.rs
 * (decode.rs). Every struct is packed by hand to natural alignment with
 * explicit padding, so the byte layout is the same in BPF and in Rust; the
 * Rust side checks the sizes below against its own constants.
 */
#ifndef GOPHER_TCP_LINK_H
#define GOPHER_TCP_LINK_H

#define TL_COMM_LEN 16

#define TL_ROLE_SERVER 0
#define TL_ROLE_CLIENT 1

/* Where the pid of a connection came from. */
#define TL_PID_NONE 0     /* not known yet */
#define TL_PID_CONNECT 1  /* the task that called connect() */
#define TL_PID_LISTEN 2   /* the task that called listen() on the port (provisional) */
#define TL_PID_CLOSE 3    /* the task that called close()/shutdown() (server side) */
#define TL_PID_USER 4     /* resolved or seeded by user space */

/* One live connection, keyed by its 4-tuple in its network namespace.
 * Ports in host byte order; IPv4 addresses in the first 4 bytes. 44 bytes. */
struct tl_conn_key {
	__u32 netns;
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u16 pad;
	__u8 laddr[16];
	__u8 raddr[16];
};

/* 128 bytes, two cache lines; `conns` is keyed by the socket's kernel
 * address, `seeded` (connections open before the probe) by `key`. The
 * state handler touches only the first line: everything up to the key's
 * ports. The addresses and the counters, in the second line, are written by
 * the sampler (and, on kernels without it, the addresses at ESTABLISHED);
 * `key.family` is 0 until the addresses are there. */
struct tl_conn_val {
	__u64 sk;          /* kernel address of the socket, 0 when not seen yet */
	__u32 pid;
	__u8 role;
	__u8 pid_src;
	__u16 pad;
	char comm[TL_COMM_LEN];
	__u64 ino;         /* inode of the socket file, 0 before accept() */
	__u32 samples;     /* times the counters below were read */
	struct tl_conn_key key;
	/* second cache line from key.laddr[8] on */
	__u64 rx_bytes;    /* tcp_sock.bytes_received */
	__u64 tx_bytes;    /* tcp_sock.bytes_acked */
	__u32 segs_in;
	__u32 segs_out;
	__u32 retrans;     /* tcp_sock.total_retrans */
	__u32 drops;       /* sock.sk_drops */
	__u32 srtt_us;     /* smoothed RTT, us */
	__u32 pad2;
};

/* One bucket of the live-connection index: the kernel addresses of up to
 * TL_BUCKET_SLOTS sockets (0: free), one cache line. Slot i of bucket b
 * holds the connection at index b * TL_BUCKET_SLOTS + i of `conns`. */
#define TL_BUCKET_SLOTS 8
struct tl_bucket {
	__u64 sk[TL_BUCKET_SLOTS];
};

/* One aggregate of closed connections: (pid, role, client, server, port). 40 bytes. */
struct tl_link_key {
	__u32 pid;
	__u8 role;
	__u8 family;
	__u16 server_port;
	__u8 client_ip[16];
	__u8 server_ip[16];
};

/* 88 bytes; all cumulative since the probe loaded. */
struct tl_link_val {
	__u64 closed;
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 segs_in;
	__u64 segs_out;
	__u64 retrans;
	__u64 drops;
	__u64 srtt_sum_us;
	char comm[TL_COMM_LEN];
	__u64 pad;
};

/* A listening port: who called listen(). */
struct tl_listen_key {
	__u32 netns;
	__u16 port;
	__u16 pad;
};

struct tl_task {
	__u32 pid;
	__u32 pad;
	char comm[TL_COMM_LEN];
};

/* Indexes of the stats array (self-metrics). */
#define TL_STAT_CONN_OVERFLOW 0    /* a connection could not be tracked: conns map full */
#define TL_STAT_LINK_OVERFLOW 1    /* a closed connection was lost: links map full */
#define TL_STAT_CLOSE_UNTRACKED 2  /* a connection closed that was never tracked */
#define TL_STAT_LISTEN_OVERFLOW 3  /* a listener could not be recorded */
#define TL_STAT_RETRANS_EVENTS 4   /* tcp_retransmit_skb events seen */
#define TL_STAT_CONNS_OPENED 5     /* connections tracked from ESTABLISHED (each side) */
#define TL_STAT_CONNS_REAPED 6     /* entries whose socket was gone, freed by the sampler */
#define TL_STAT_UNWATCHED 7        /* connections not tracked: their process is not watched */
#define TL_STAT_MAX 8

#endif
