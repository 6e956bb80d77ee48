/* SPDX-License-Identifier: GPL-2.0 */
/* Shared by nginx_link.bpf.c and the decoder in mod.rs (same layout). */
#pragma once

/* One proxied link, the key of `links` (64 bytes, no padding holes). */
struct nl_link_key {
	__u8 client_ip[16];   /* the client, as nginx's accepted socket sees it */
	__u8 virtual_ip[16];  /* nginx's local address on that socket */
	__u8 server_ip[16];   /* the upstream nginx connected to */
	__u16 family;         /* of the client socket */
	__u16 server_family;  /* of the upstream socket */
	__u16 virtual_port;
	__u16 server_port;
	__u8 is_l7;           /* 1: http, 0: stream */
	__u8 pad[7];
};

/* Where nginx keeps what the probe reads, per binary (the value of
 * `offsets`, indexed by the uprobe's BPF cookie). */
struct nl_offsets {
	__u32 pc_log;     /* ngx_peer_connection_t.log */
	__u32 log_data;   /* ngx_log_t.data */
	__u32 conn_fd;    /* ngx_connection_t.fd */
	__u32 http_conn;  /* ngx_http_log_ctx_t.connection */
	__u32 strm_conn;  /* ngx_stream_session_t.connection */
};

#define NL_MAX_BINARIES 64

/* Slots of the per-CPU `stats` array. */
#define NL_STAT_CALLS 0       /* returns of ngx_event_connect_peer seen */
#define NL_STAT_LINKS 1       /* counted into `links` */
#define NL_STAT_FAILED_RC 2   /* returned an error (no connection) */
#define NL_STAT_NO_SOCKET 3   /* an fd that is not an IPv4/IPv6 socket */
#define NL_STAT_READ_FAIL 4   /* nginx memory could not be read */
#define NL_STAT_OVERFLOW 5    /* `links` or `calls` was full */
#define NL_STAT_NO_OFFSETS 6 /* a cookie without offsets */
#define NL_STAT_MAX 7
