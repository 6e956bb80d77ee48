// SPDX-License-Identifier: GPL-2.0
/* haproxy_link: one uprobe on haproxy's back_handle_st_rdy(struct stream *),
 * which runs once per stream when its backend connection is ready (a new
 * connection or a reused idle one). A stream is a TCP-mode connection or one
 * HTTP request. From the stream only two fds are read (frontend and backend
 * connection, through stconn -> sedesc -> connection, at offsets user space
 * puts in `procs` for each haproxy process); the addresses come from the
 * kernel sockets behind those fds in the calling task's fd table (lb_sock.h). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "haproxy_link.h"
#include "lb_sock.h"

char LICENSE[] SEC("license") = "GPL";

/* haproxy processes (tgid) and the layout of their binary, kept by user
 * space from /proc; a worker forked since the last scan is found by its
 * parent (the master). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HAP_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct hap_layout);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HAP_MAX_LINKS);
	__type(key, struct hap_key);
	__type(value, __u64);
} links SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HAP_ST_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_inc(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &i);

	if (v)
		__sync_fetch_and_add(v, 1);
}

/* The fd of one side of the stream, or -1 (the stat to count in *why). */
static __always_inline int side_fd(const void *strm, __u32 off_sc,
				   const struct hap_layout *l, __u32 *why)
{
	const char *sc = NULL, *sd = NULL, *conn = NULL;
	__u8 t = 0;
	int fd = -1;

	if (bpf_probe_read_user(&sc, sizeof(sc), (const char *)strm + off_sc) || !sc ||
	    bpf_probe_read_user(&t, 1, sc) || t != l->sc_type) {
		*why = HAP_ST_BAD_SC;
		return -1;
	}
	if (bpf_probe_read_user(&sd, sizeof(sd), sc + l->sc_sedesc) || !sd ||
	    bpf_probe_read_user(&conn, sizeof(conn), sd + l->sedesc_conn) || !conn) {
		*why = HAP_ST_NO_CONN;
		return -1;
	}
	if (bpf_probe_read_user(&t, 1, conn) || t != l->conn_type ||
	    bpf_probe_read_user(&fd, sizeof(fd), conn + l->conn_fd) || fd < 0) {
		*why = HAP_ST_BAD_CONN;
		return -1;
	}
	return fd;
}

static __always_inline int on_stream_ready(const void *strm)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct hap_layout *l;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct hap_key key = {};
	struct lb_sock_addr front, back;
	__u32 why = 0;
	__u64 one = 1, *cnt;
	int ffd, bfd;

	stat_inc(HAP_ST_EVENTS);
	l = bpf_map_lookup_elem(&procs, &tgid);
	if (!l) {
		__u32 parent = BPF_CORE_READ(task, real_parent, tgid);

		l = bpf_map_lookup_elem(&procs, &parent);
	}
	if (!l) {
		stat_inc(HAP_ST_NO_LAYOUT);
		return 0;
	}
	ffd = side_fd(strm, l->stream_scf, l, &why);
	if (ffd < 0) {
		stat_inc(why);
		return 0;
	}
	bfd = side_fd(strm, l->stream_scb, l, &why);
	if (bfd < 0) {
		stat_inc(why);
		return 0;
	}
	if (lb_sock_from_fd(ffd, &front) || lb_sock_from_fd(bfd, &back)) {
		stat_inc(HAP_ST_NO_SOCK);
		return 0;
	}
	key.tgid = tgid;
	key.client_family = (__u8)front.family;
	key.server_family = (__u8)back.family;
	key.virtual_port = front.lport;
	key.server_port = back.rport;
	__builtin_memcpy(key.client, front.raddr, 16);
	__builtin_memcpy(key.virt, front.laddr, 16);
	__builtin_memcpy(key.local, back.laddr, 16);
	__builtin_memcpy(key.server, back.raddr, 16);
	cnt = bpf_map_lookup_elem(&links, &key);
	if (cnt) {
		__sync_fetch_and_add(cnt, 1);
	} else if (bpf_map_update_elem(&links, &key, &one, BPF_NOEXIST)) {
		/* Another CPU may have made it meanwhile. */
		cnt = bpf_map_lookup_elem(&links, &key);
		if (!cnt) {
			stat_inc(HAP_ST_OVERFLOW);
			return 0;
		}
		__sync_fetch_and_add(cnt, 1);
	}
	stat_inc(HAP_ST_COUNTED);
	return 0;
}

/*
 * The same code under two attach types: a uprobe_multi link (6.6+) needs
 * only CAP_BPF and CAP_PERFMON; a classic uprobe is a perf event, which
 * some kernels (this one) allow only with CAP_SYS_ADMIN. User space loads
 * one of the two.
 */
SEC("uprobe.multi")
int BPF_UPROBE(haproxy_link_rdy_multi, void *strm)
{
	return on_stream_ready(strm);
}

SEC("uprobe")
int BPF_UPROBE(haproxy_link_rdy, void *strm)
{
	return on_stream_ready(strm);
}
