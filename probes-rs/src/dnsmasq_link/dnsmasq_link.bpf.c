// SPDX-License-Identifier: GPL-2.0
/*
 * dnsmasq_link: which process asked the local DNS server (dnsmasq) for
 * which name.
 *
 * dnsmasq is stripped and exports nothing worth a uprobe, so everything here
 * hangs off the kernel's socket calls, in one of two plans that do the same
 * work: fexit on __sys_recvmsg, __sys_recvfrom, __sys_connect, __sys_sendto,
 * __sys_sendmsg and __sys_sendmmsg (5.5+, the default; only those calls
 * pay), or the raw syscall tracepoints raw_syscalls:sys_enter/sys_exit (the
 * fallback). Both attach by name: no tracefs to mount, no kprobe.
 *
 * Server side: a process whose comm is `server_comm` receiving with
 * recvmsg() or recvfrom(): at the exit of the call the sender's address, the
 * first bytes of the datagram (DNS header and question), the ancillary data
 * (IP_PKTINFO: the address the query was sent to) and the receiving
 * socket's own address go to user space through a ring buffer. The DNS
 * message is parsed there.
 *
 * Client side: connect(), sendto(), sendmsg() and sendmmsg() of a UDP
 * socket to port `dns_port`: the socket's local address and port are
 * recorded in `clients` with the calling process. Connected sockets are
 * recorded at the entry of the send (they are bound already), the rest at
 * the exit of the call (the kernel binds them during it). User space joins a
 * query's sender address to this map.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "lb_sock.h"
#include "dnsmasq_link.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_DGRAM 2

#if defined(__TARGET_ARCH_x86)
#define NR_CONNECT 42
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define NR_SENDMMSG 307
#define SYSCALL_NR(regs) BPF_CORE_READ((regs), orig_ax)
#define HAVE_SYSCALL_NR 1
#else
/* Syscall numbers are only written down for x86-64 (the pinned vmlinux.h
 * is x86-64's): elsewhere the raw tracepoint programs do nothing and user
 * space refuses that plan, leaving fexit. */
#define HAVE_SYSCALL_NR 0
#define NR_CONNECT -1
#define NR_SENDTO -2
#define NR_RECVFROM -3
#define NR_SENDMSG -4
#define NR_RECVMSG -5
#define NR_SENDMMSG -6
#define SYSCALL_NR(regs) (-100)
#endif

/* Set by user space before load. */
const volatile char server_comm[DL_COMM_LEN] = "dnsmasq";
const volatile __u16 dns_port = 53; /* host order */

enum call_kind {
	CALL_RECVMSG = 1,
	CALL_RECVFROM = 2,
	CALL_CLIENT = 3, /* a send or connect whose socket is recorded at exit */
};

/* A call in flight, by thread. */
struct call {
	__u32 kind;
	__s32 fd;
	__u64 buf;     /* recvmsg: the user msghdr; recvfrom: the buffer */
	__u64 addr;    /* recvfrom: the sockaddr */
	__u64 addrlen; /* recvfrom: its length (int *) */
	__u64 size;    /* recvfrom: the buffer's size */
};

/* LRU: an entry of a thread that died inside its call is not left for ever. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct call);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct dl_client_key);
	__type(value, struct dl_client_val);
} clients SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} queries SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DL_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* One per CPU: the event is built here, too big for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dl_query);
} scratch SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &slot);
	if (v)
		*v += 1;
}

static __always_inline bool is_server(void)
{
	char comm[DL_COMM_LEN];
	if (bpf_get_current_comm(comm, sizeof(comm)))
		return false;
#pragma unroll
	for (int i = 0; i < DL_COMM_LEN; i++) {
		if (comm[i] != server_comm[i])
			return false;
		if (comm[i] == 0)
			return true;
	}
	return true;
}

/* A UDP socket? sk_type is a bitfield before 5.6, a u16 since: the probed
 * bitfield read handles both. */
static __always_inline bool is_dgram(struct sock *sk)
{
	return sk && BPF_CORE_READ_BITFIELD_PROBED(sk, sk_type) == SOCK_DGRAM;
}

/* A socket's family, local port (host order) and bound address, from
 * lb_sock.h; v4-mapped IPv6 addresses come out as AF_INET. Returns the
 * family, 0 if not inet. `addr` must be zeroed by the caller. */
static __always_inline __u16 sock_local(struct sock *sk, __u16 *port, __u8 addr[16])
{
	struct lb_sock_addr a;
	__u32 *w = (__u32 *)a.laddr;

	if (lb_sock_addr_of(sk, &a))
		return 0;
	*port = a.lport;
	if (a.family == AF_INET6 && w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff)) {
		__builtin_memcpy(addr, &w[3], 4);
		return AF_INET;
	}
	__builtin_memcpy(addr, a.laddr, 16);
	return a.family;
}

/* The destination port (host order) of a user sockaddr, 0 if not inet. */
static __always_inline __u16 user_dport(const void *uaddr)
{
	struct {
		__u16 family;
		__be16 port;
	} sa = {};

	if (!uaddr || bpf_probe_read_user(&sa, sizeof(sa), uaddr))
		return 0;
	if (sa.family != AF_INET && sa.family != AF_INET6)
		return 0;
	return bpf_ntohs(sa.port);
}

static __always_inline void record_client(int fd)
{
	struct sock *sk = lb_sock_of_fd(fd);
	struct dl_client_key key = {};
	struct dl_client_val val = {};
	struct task_struct *task, *leader;
	__u64 id;

	if (!is_dgram(sk))
		return;
	key.family = sock_local(sk, &key.port, key.addr);
	if (!key.family || !key.port)
		return;
	id = bpf_get_current_pid_tgid();
	val.pid = id >> 32;
	val.tid = (__u32)id;
	val.ts = bpf_ktime_get_ns();
	/* The process's name (its main thread's): resolvers often send from
	 * a worker thread with a name of its own. */
	task = (struct task_struct *)bpf_get_current_task();
	leader = BPF_CORE_READ(task, group_leader);
	if (!leader || bpf_core_read_str(val.comm, sizeof(val.comm), &leader->comm) < 0)
		bpf_get_current_comm(val.comm, sizeof(val.comm));
	if (bpf_map_update_elem(&clients, &key, &val, BPF_ANY) == 0)
		count(DL_STAT_CLIENTS);
}

static __always_inline void remember(struct call *c)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&calls, &tid, c, BPF_ANY))
		count(DL_STAT_PENDING_FULL);
}

/* A send: `uaddr` is its explicit destination (NULL: a connected socket). */
static __always_inline void client_send(int fd, const void *uaddr)
{
	if (uaddr) {
		/* Unconnected: the kernel may bind the socket during the call. */
		if (user_dport(uaddr) == dns_port) {
			struct call c = { .kind = CALL_CLIENT, .fd = fd };
			remember(&c);
		}
		return;
	}
	struct sock *sk = lb_sock_of_fd(fd);
	if (is_dgram(sk) && bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)) == dns_port)
		record_client(fd);
}

SEC("raw_tp/sys_enter")
int dnsmasq_link_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long nr = (long)ctx->args[1];
	int fd;

	if (!HAVE_SYSCALL_NR)
		return 0;
	switch (nr) {
	case NR_RECVMSG:
	case NR_RECVFROM: {
		if (!is_server())
			return 0;
		struct call c = {
			.kind = nr == NR_RECVMSG ? CALL_RECVMSG : CALL_RECVFROM,
			.fd = (int)PT_REGS_PARM1_CORE_SYSCALL(regs),
			.buf = PT_REGS_PARM2_CORE_SYSCALL(regs),
		};
		if (nr == NR_RECVFROM) {
			c.size = PT_REGS_PARM3_CORE_SYSCALL(regs);
			c.addr = PT_REGS_PARM5_CORE_SYSCALL(regs);
			c.addrlen = PT_REGS_PARM6_CORE_SYSCALL(regs);
		}
		remember(&c);
		return 0;
	}
	case NR_CONNECT: {
		const void *uaddr = (const void *)PT_REGS_PARM2_CORE_SYSCALL(regs);
		fd = (int)PT_REGS_PARM1_CORE_SYSCALL(regs);
		if (user_dport(uaddr) == dns_port) {
			if (is_dgram(lb_sock_of_fd(fd))) {
				struct call c = { .kind = CALL_CLIENT, .fd = fd };
				remember(&c);
			}
		}
		return 0;
	}
	case NR_SENDTO:
		fd = (int)PT_REGS_PARM1_CORE_SYSCALL(regs);
		client_send(fd, (const void *)PT_REGS_PARM5_CORE_SYSCALL(regs));
		return 0;
	case NR_SENDMSG:
	case NR_SENDMMSG: {
		/* A struct mmsghdr starts with its struct user_msghdr: the first
		 * message's destination is read the same way. */
		struct user_msghdr *m = (struct user_msghdr *)PT_REGS_PARM2_CORE_SYSCALL(regs);
		void *name = NULL;
		fd = (int)PT_REGS_PARM1_CORE_SYSCALL(regs);
		if (!m || bpf_probe_read_user(&name, sizeof(name), &m->msg_name))
			return 0;
		client_send(fd, name);
		return 0;
	}
	}
	return 0;
}

static __always_inline void emit_query(struct call *c, long ret)
{
	__u32 zero = 0;
	struct dl_query *q = bpf_map_lookup_elem(&scratch, &zero);
	void *name = NULL, *data = NULL, *ctl = NULL;
	__u64 namelen = 0, datalen = 0, ctllen = 0;
	struct sock *sk;

	if (!q)
		return;
	/* Only inet sockets: dnsmasq also reads netlink with recvmsg(). */
	sk = lb_sock_of_fd(c->fd);
	if (!sk)
		return;
	__builtin_memset(q->sock_addr, 0, sizeof(q->sock_addr));
	q->sock_family = sock_local(sk, &q->sock_port, q->sock_addr);
	if (!q->sock_family)
		return;
	if (c->kind == CALL_RECVMSG) {
		struct user_msghdr m = {};
		struct iovec iov = {};
		if (bpf_probe_read_user(&m, sizeof(m), (void *)c->buf))
			return;
		name = m.msg_name;
		namelen = (__u32)m.msg_namelen;
		ctl = m.msg_control;
		ctllen = m.msg_controllen;
		if (m.msg_iovlen < 1 || bpf_probe_read_user(&iov, sizeof(iov), m.msg_iov))
			return;
		data = iov.iov_base;
		datalen = iov.iov_len;
	} else {
		int alen = 0;
		name = (void *)c->addr;
		if (name && c->addrlen)
			bpf_probe_read_user(&alen, sizeof(alen), (void *)c->addrlen);
		namelen = alen > 0 ? alen : 0;
		data = (void *)c->buf;
		datalen = c->size;
	}
	if ((__u64)ret < datalen)
		datalen = ret;
	if (datalen > DL_PAYLOAD_MAX)
		datalen = DL_PAYLOAD_MAX;
	if (namelen > DL_NAME_MAX)
		namelen = DL_NAME_MAX;
	if (!ctl || ctllen > DL_CTL_MAX)
		ctllen = ctl ? DL_CTL_MAX : 0;

	q->tgid = bpf_get_current_pid_tgid() >> 32;
	q->ret = (__u32)ret;
	q->payload_len = 0;
	q->name_len = 0;
	q->ctl_len = 0;
	bpf_get_current_comm(q->comm, sizeof(q->comm));
	if (datalen && !bpf_probe_read_user(q->payload, datalen, data))
		q->payload_len = datalen;
	if (name && namelen && !bpf_probe_read_user(q->name, namelen, name))
		q->name_len = namelen;
	if (ctllen && !bpf_probe_read_user(q->ctl, ctllen, ctl))
		q->ctl_len = ctllen;
	if (bpf_ringbuf_output(&queries, q, sizeof(*q), 0))
		count(DL_STAT_RINGBUF_FULL);
}

SEC("raw_tp/sys_exit")
int dnsmasq_link_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long ret = (long)ctx->args[1];
	long nr;
	struct call *c;
	__u32 tid;

	if (!HAVE_SYSCALL_NR)
		return 0;
	nr = SYSCALL_NR(regs);

	switch (nr) {
	case NR_RECVMSG:
	case NR_RECVFROM:
	case NR_CONNECT:
	case NR_SENDTO:
	case NR_SENDMSG:
	case NR_SENDMMSG:
		break;
	default:
		return 0;
	}
	tid = (__u32)bpf_get_current_pid_tgid();
	c = bpf_map_lookup_elem(&calls, &tid);
	if (!c)
		return 0;
	if (c->kind == CALL_CLIENT) {
		/* connect() of UDP returns 0; a send, the bytes sent. */
		if (ret >= 0)
			record_client(c->fd);
	} else if (ret > 0) {
		emit_query(c, ret);
	}
	bpf_map_delete_elem(&calls, &tid);
	return 0;
}

/*
 * The fexit plan (5.5+, the default): the same work on the kernel's own
 * socket-call functions, which fexit sees with their arguments and return
 * value at once. Only those calls pay; the raw syscall tracepoints above
 * (the fallback) put every system call of the host on the kernel's slow
 * syscall path.
 */

/* A send (or connect) that returned: `uaddr` is its explicit destination
 * (NULL: a connected socket). */
static __always_inline void client_done(int fd, const void *uaddr)
{
	if (uaddr) {
		if (user_dport(uaddr) == dns_port)
			record_client(fd);
		return;
	}
	struct sock *sk = lb_sock_of_fd(fd);
	if (is_dgram(sk) && bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)) == dns_port)
		record_client(fd);
}

SEC("fexit/__sys_recvmsg")
int BPF_PROG(dnsmasq_link_recvmsg, int fd, struct user_msghdr *msg, unsigned int flags,
	     bool forbid_cmsg_compat, long ret)
{
	if (ret > 0 && is_server()) {
		struct call c = { .kind = CALL_RECVMSG, .fd = fd, .buf = (__u64)msg };
		emit_query(&c, ret);
	}
	return 0;
}

SEC("fexit/__sys_recvfrom")
int BPF_PROG(dnsmasq_link_recvfrom, int fd, void *ubuf, size_t size, unsigned int flags,
	     struct sockaddr *addr, int *addr_len, int ret)
{
	if (ret > 0 && is_server()) {
		struct call c = {
			.kind = CALL_RECVFROM,
			.fd = fd,
			.buf = (__u64)ubuf,
			.size = size,
			.addr = (__u64)addr,
			.addrlen = (__u64)addr_len,
		};
		emit_query(&c, ret);
	}
	return 0;
}

SEC("fexit/__sys_connect")
int BPF_PROG(dnsmasq_link_connect, int fd, struct sockaddr *uaddr, int addrlen, int ret)
{
	if (ret == 0 && uaddr)
		client_done(fd, uaddr);
	return 0;
}

SEC("fexit/__sys_sendto")
int BPF_PROG(dnsmasq_link_sendto, int fd, void *buf, size_t len, unsigned int flags,
	     struct sockaddr *addr, int addr_len, int ret)
{
	if (ret >= 0)
		client_done(fd, addr);
	return 0;
}

/* A struct mmsghdr starts with its struct user_msghdr: sendmsg and
 * sendmmsg read the (first) destination the same way. */
static __always_inline void client_msg_done(int fd, struct user_msghdr *m)
{
	void *name = NULL;

	if (!m || bpf_probe_read_user(&name, sizeof(name), &m->msg_name))
		return;
	client_done(fd, name);
}

SEC("fexit/__sys_sendmsg")
int BPF_PROG(dnsmasq_link_sendmsg, int fd, struct user_msghdr *msg, unsigned int flags,
	     bool forbid_cmsg_compat, long ret)
{
	if (ret >= 0)
		client_msg_done(fd, msg);
	return 0;
}

SEC("fexit/__sys_sendmmsg")
int BPF_PROG(dnsmasq_link_sendmmsg, int fd, struct mmsghdr *mmsg, unsigned int vlen,
	     unsigned int flags, bool forbid_cmsg_compat, int ret)
{
	if (ret > 0)
		client_msg_done(fd, (struct user_msghdr *)mmsg);
	return 0;
}
