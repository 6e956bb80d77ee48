// SPDX-License-Identifier: GPL-2.0
/*
 * nginx_link: each upstream connection nginx makes, with the client it
 * serves, from a uprobe and a uretprobe on ngx_event_connect_peer().
 *
 * At entry the argument (ngx_peer_connection_t *pc) is kept per thread. At
 * return, when nginx has a connection (NGX_OK, NGX_AGAIN while connecting,
 * NGX_DONE for a cached keepalive connection):
 *   pc->connection->fd        the upstream socket
 *   pc->log->data             the client's context: a stream session
 *                             (u32 "STRM", then its connection) or an http
 *                             log context (its connection first)
 *   that connection's fd      the client socket
 * Only these pointers and two fds are read from nginx's memory, at offsets
 * user space sets per binary (by nginx version and build flags, passed as
 * the uprobe's cookie, 5.15+); the addresses come from the kernel's
 * sockets (lb_sock.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "lb_sock.h"
#include "nginx_link.h"

char LICENSE[] SEC("license") = "GPL";

/* The offsets of each attached binary (user space fills the entry and
 * passes its index as the uprobe's cookie). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NL_MAX_BINARIES);
	__type(key, __u32);
	__type(value, struct nl_offsets);
} offsets SEC(".maps");

#define NGX_OK 0
#define NGX_AGAIN -2
#define NGX_DONE -4
#define NGX_STREAM_SIGNATURE 0x4d525453 /* "STRM" */

/* The argument of the calls in progress, by thread (LRU: the entry of a
 * thread killed inside the call is recycled). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} calls SEC(".maps");

/* Cumulative count of connections per link (user space takes differences). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct nl_link_key);
	__type(value, __u64);
} links SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NL_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &slot);

	if (v)
		*v += 1;
}

static __always_inline int read_ptr(__u64 *out, __u64 addr)
{
	return bpf_probe_read_user(out, sizeof(*out), (const void *)addr);
}

static __always_inline int on_enter(void *pc)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 v = (__u64)pc;

	if (bpf_map_update_elem(&calls, &id, &v, BPF_ANY))
		stat(NL_STAT_OVERFLOW);
	return 0;
}

static __always_inline int on_exit(void *ctx, long rc)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *pcp = bpf_map_lookup_elem(&calls, &id);
	__u64 pc, up_conn = 0, log = 0, data = 0, cl_conn = 0, one = 1, *cnt;
	__u32 sig = 0;
	int up_fd = -1, cl_fd = -1;
	struct lb_sock_addr cl, up;
	struct nl_link_key key;
	struct nl_offsets *o;
	__u32 idx = (__u32)bpf_get_attach_cookie(ctx);

	if (!pcp)
		return 0;
	pc = *pcp;
	bpf_map_delete_elem(&calls, &id);
	stat(NL_STAT_CALLS);
	o = bpf_map_lookup_elem(&offsets, &idx);
	if (!o || !o->conn_fd) {
		stat(NL_STAT_NO_OFFSETS);
		return 0;
	}
	if (rc != NGX_OK && rc != NGX_AGAIN && rc != NGX_DONE) {
		stat(NL_STAT_FAILED_RC);
		return 0;
	}
	if (read_ptr(&up_conn, pc) || !up_conn ||
	    bpf_probe_read_user(&up_fd, sizeof(up_fd), (const void *)(up_conn + o->conn_fd)) ||
	    read_ptr(&log, pc + o->pc_log) || !log ||
	    read_ptr(&data, log + o->log_data) || !data ||
	    bpf_probe_read_user(&sig, sizeof(sig), (const void *)data)) {
		stat(NL_STAT_READ_FAIL);
		return 0;
	}
	__builtin_memset(&key, 0, sizeof(key));
	if (sig == NGX_STREAM_SIGNATURE) {
		key.is_l7 = 0;
		if (read_ptr(&cl_conn, data + o->strm_conn)) {
			stat(NL_STAT_READ_FAIL);
			return 0;
		}
	} else {
		key.is_l7 = 1;
		if (read_ptr(&cl_conn, data + o->http_conn)) {
			stat(NL_STAT_READ_FAIL);
			return 0;
		}
	}
	if (!cl_conn ||
	    bpf_probe_read_user(&cl_fd, sizeof(cl_fd), (const void *)(cl_conn + o->conn_fd))) {
		stat(NL_STAT_READ_FAIL);
		return 0;
	}
	if (lb_sock_from_fd(cl_fd, &cl) || lb_sock_from_fd(up_fd, &up)) {
		stat(NL_STAT_NO_SOCKET);
		return 0;
	}
	__builtin_memcpy(key.client_ip, cl.raddr, 16);
	__builtin_memcpy(key.virtual_ip, cl.laddr, 16);
	__builtin_memcpy(key.server_ip, up.raddr, 16);
	key.family = cl.family;
	key.server_family = up.family;
	key.virtual_port = cl.lport;
	key.server_port = up.rport;

	cnt = bpf_map_lookup_elem(&links, &key);
	if (cnt) {
		__sync_fetch_and_add(cnt, 1);
	} else if (bpf_map_update_elem(&links, &key, &one, BPF_NOEXIST)) {
		cnt = bpf_map_lookup_elem(&links, &key);
		if (cnt)
			__sync_fetch_and_add(cnt, 1);
		else {
			stat(NL_STAT_OVERFLOW);
			return 0;
		}
	}
	stat(NL_STAT_LINKS);
	return 0;
}

/*
 * Two attach types, the same code: uprobe.multi links (6.6+) need only
 * CAP_BPF and CAP_PERFMON; a classic uprobe is a perf event, which some
 * kernels allow only with CAP_SYS_ADMIN. User space loads one pair.
 */
SEC("uprobe.multi")
int BPF_UPROBE(nginx_connect_peer_enter_multi, void *pc)
{
	return on_enter(pc);
}

SEC("uretprobe.multi")
int BPF_URETPROBE(nginx_connect_peer_exit_multi, long rc)
{
	return on_exit(ctx, rc);
}

SEC("uprobe")
int BPF_UPROBE(nginx_connect_peer_enter, void *pc)
{
	return on_enter(pc);
}

SEC("uretprobe")
int BPF_URETPROBE(nginx_connect_peer_exit, long rc)
{
	return on_exit(ctx, rc);
}
