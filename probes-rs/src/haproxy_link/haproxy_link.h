/* SPDX-License-Identifier: GPL-2.0 */
/* Shared between haproxy_link.bpf.c and the Rust decoder (mod.rs, decode.rs):
 * keep the layouts and the numbers in step with both. */
#pragma once

/* Entries of the aggregate map (client, virtual, local, server) per process. */
#define HAP_MAX_LINKS 16384
/* haproxy processes with a known struct layout. */
#define HAP_MAX_PROCS 4096

/* Indexes of the stats array. */
#define HAP_ST_EVENTS 0      /* calls of the hooked function */
#define HAP_ST_COUNTED 1     /* streams counted in the aggregate map */
#define HAP_ST_NO_LAYOUT 2   /* caller (nor its parent) has no layout in the map */
#define HAP_ST_BAD_SC 3      /* a stream connector pointer or type did not check */
#define HAP_ST_NO_CONN 4     /* a side had no connection (applets, peers) */
#define HAP_ST_BAD_CONN 5    /* a connection's type did not check */
#define HAP_ST_NO_SOCK 6     /* an fd was no inet socket of the calling process */
#define HAP_ST_OVERFLOW 7    /* aggregate map full */
#define HAP_ST_COUNT 8

/* Offsets into haproxy's own structures, per binary (see layout.rs). */
struct hap_layout {
	__u32 stream_scf;   /* struct stream: the frontend stream connector */
	__u32 stream_scb;   /* struct stream: the backend stream connector */
	__u32 sc_sedesc;    /* struct stconn: its endpoint descriptor */
	__u32 sedesc_conn;  /* struct sedesc: the connection */
	__u32 conn_fd;      /* struct connection: handle.fd */
	__u8 sc_type;       /* obj_type value of a struct stconn */
	__u8 conn_type;     /* obj_type value of a struct connection */
	__u8 pad[2];
};

/* One client -> haproxy -> server path of one haproxy process. Ports in
 * host order; addresses as in the kernel (4 bytes used for AF_INET). */
struct hap_key {
	__u32 tgid;
	__u8 client_family;
	__u8 server_family;
	__u16 virtual_port;
	__u16 server_port;
	__u16 pad;
	__u8 client[16];
	__u8 virt[16];
	__u8 local[16];
	__u8 server[16];
};
