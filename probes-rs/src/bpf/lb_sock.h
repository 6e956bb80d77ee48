/* SPDX-License-Identifier: GPL-2.0 */
/*
 * lb_sock.h: the addresses of a socket of the current task, found from its
 * file descriptor alone (shared by the load-balancer uprobes: nginx_link,
 * haproxy_link).
 *
 * A uprobe on a proxy reads only a file descriptor number from the proxy's
 * memory; everything else comes from kernel structures through CO-RE:
 *
 *   current task -> files -> fdt -> fd[fd] (struct file)
 *     -> the inode must be a socket (S_IFSOCK)
 *     -> private_data (struct socket) -> sk (struct sock) -> __sk_common
 *
 * so a wrong offset in the proxy's structs gives at worst a wrong fd (no
 * socket, or another socket of the same process), never a read of
 * arbitrary memory as an address.
 *
 * Include after vmlinux.h and bpf_helpers.h:
 *
 *   struct lb_sock_addr a;
 *   if (lb_sock_from_fd(fd, &a) == 0 && a.family != 0) { ... }
 *
 * Addresses are in network byte order, 16 bytes each (an IPv4 address in
 * the first 4, the rest zero); ports in host byte order. An IPv4-mapped
 * IPv6 address is left as it is (user space shows it as IPv4).
 */
#pragma once

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#ifndef LB_AF_INET
#define LB_AF_INET 2
#define LB_AF_INET6 10
#endif

#define LB_S_IFMT 00170000
#define LB_S_IFSOCK 0140000

/* One end pair of a TCP (or UDP) socket, as the kernel keeps it. */
struct lb_sock_addr {
	__u16 family;     /* AF_INET, AF_INET6; 0 when not filled */
	__u16 lport;      /* local port, host order */
	__u16 rport;      /* remote port, host order */
	__u16 pad;
	__u8 laddr[16];   /* local address */
	__u8 raddr[16];   /* remote address */
};

/* The struct sock of descriptor `fd` of the current task, or NULL when the
 * descriptor is out of range, closed, or not a socket. */
static __always_inline struct sock *lb_sock_of_fd(int fd)
{
	struct task_struct *task;
	struct files_struct *files;
	struct fdtable *fdt;
	struct file **fds;
	struct file *file = NULL;
	struct inode *inode;
	struct socket *sock;
	unsigned int max_fds;
	umode_t mode;

	if (fd < 0)
		return NULL;
	task = (struct task_struct *)bpf_get_current_task();
	files = BPF_CORE_READ(task, files);
	if (!files)
		return NULL;
	fdt = BPF_CORE_READ(files, fdt);
	if (!fdt)
		return NULL;
	max_fds = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned int)fd >= max_fds)
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (!fds)
		return NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	inode = BPF_CORE_READ(file, f_inode);
	if (!inode)
		return NULL;
	mode = BPF_CORE_READ(inode, i_mode);
	if ((mode & LB_S_IFMT) != LB_S_IFSOCK)
		return NULL;
	sock = (struct socket *)BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

/* Fills `out` with the addresses of `sk`: 0, or -1 for a family other than
 * IPv4 and IPv6 (out->family is then 0). */
static __always_inline int lb_sock_addr_of(struct sock *sk, struct lb_sock_addr *out)
{
	__u16 family;

	__builtin_memset(out, 0, sizeof(*out));
	if (!sk)
		return -1;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == LB_AF_INET) {
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);

		__builtin_memcpy(out->laddr, &l, 4);
		__builtin_memcpy(out->raddr, &r, 4);
	} else if (family == LB_AF_INET6) {
		BPF_CORE_READ_INTO(&out->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&out->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return -1;
	}
	out->family = family;
	out->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	out->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	return 0;
}

/* The addresses of descriptor `fd` of the current task: 0, or -1 when it is
 * not an IPv4/IPv6 socket. */
static __always_inline int lb_sock_from_fd(int fd, struct lb_sock_addr *out)
{
	return lb_sock_addr_of(lb_sock_of_fd(fd), out);
}
