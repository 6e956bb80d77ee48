/* SPDX-License-Identifier: GPL-2.0 */
/* Shared by nginx_link.bpf.c and the decoder in mod.rs (same layout). */
#pragma once

/* One proxied link, the key of `links` (80 bytes, no padding holes). */
struct nl_link_key {
	__u8 client_ip[16];   /* the client, as nginx's accepted socket sees it */
	__u8 virtual_ip[16];  /* nginx's local address on that socket */
	__u8 server_ip[16];   /* the upstream nginx connected to */
	__u8 local_ip[16];    /* nginx's own address on the upstream socket */
	__u16 family;         /* of the client socket */
	__u16 server_family;  /* of the upstream socket */
	__u16 virtual_port;
	__u16 server_port;
	__u8 is_l7;           /* 1: http, 0: stream */
	__u8 pad[7];
};

/* Slots of the per-CPU `stats` array. */
#define NL_STAT_CALLS 0       /* returns of ngx_event_connect_peer seen */
#define NL_STAT_LINKS 1       /* counted into `links` */
#define NL_STAT_FAILED_RC 2   /* returned an error (no connection) */
#define NL_STAT_NO_SOCKET 3   /* an fd that is not an IPv4/IPv6 socket */
#define NL_STAT_READ_FAIL 4   /* nginx memory could not be read */
#define NL_STAT_OVERFLOW 5    /* `links` or `calls` was full */
#define NL_STAT_MAX 6
