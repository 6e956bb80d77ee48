// SPDX-License-Identifier: GPL-2.0
/*
 * tcp_link: every TCP connection of the node, with its process and role,
 * paid per connection and never per packet.
 *
 * - inet_sock_set_state tracks connect, listen, accept, close; about 5
 *   events per connection and side. It is attached as a BTF tracepoint
 *   (tp_btf, 5.5+) where the kernel allows, else as a classic tracepoint,
 *   else the kprobe on tcp_set_state stands in.
 * - Live connections are found by socket address in a lock-free bucket
 *   index (see `buckets`), so the hot path takes no lock and allocates
 *   nothing.
 * - At close, the socket's own cumulative counters are read through CO-RE
 *   and added to the connection's aggregate in `links`.
 * - Open connections are sampled once per report period by `tcp_link_sample`,
 *   which user space runs with BPF_PROG_TEST_RUN: it walks `buckets` and reads
 *   each socket's counters. This works for every network namespace at once.
 * - tcp_retransmit_skb (rare) gives the socket address of connections that
 *   were open before the probe started, so they can be sampled too.
 * - tcp_probe (per packet, optional, off by default) refreshes the counters
 *   on every received segment, for kernels where the sampler cannot run.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "tcp_link.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* Kernel TCP states (include/net/tcp_states.h). */
#define S_ESTABLISHED 1
#define S_SYN_SENT 2
#define S_SYN_RECV 3
#define S_FIN_WAIT1 4
#define S_FIN_WAIT2 5
#define S_CLOSE 7
#define S_CLOSE_WAIT 8
#define S_LAST_ACK 9
#define S_LISTEN 10
#define S_CLOSING 11

/* Filters set by user space before load. */
const volatile __u32 filter_pid = 0;     /* only this process (0: all) */
const volatile __u8 skip_loopback = 0;   /* ignore connections to 127/8, ::1 */
/* Cleared by user space where the sampler runs (5.13+): the sampler then
 * writes each connection's addresses, and the state handler never does. */
const volatile __u8 eager_key = 1;

#define MAX_CONNS 65536
#define MAX_LINKS 16384

/*
 * Live connections by socket address.
 *
 * On 5.12+ (atomic compare-and-exchange) they live in two arrays: `buckets`
 * holds, per bucket, the addresses of up to TL_BUCKET_SLOTS sockets in one
 * cache line, and `conns` the connection of each slot. A socket's bucket is
 * a multiplicative hash of its address; finding it is one inlined array
 * lookup and 8 compares, claiming a slot is one cmpxchg, freeing it one
 * store. No lock, no allocation: a hash map update takes a bucket lock with
 * interrupts off and costs about 400 ns per connection here, more than the
 * rest of the program. A full bucket is counted as an overflow.
 *
 * Older kernels get the hash map `conns_h` instead. Every program exists
 * twice: as is, and with the suffix `_h` for the hash map (H = 1 below,
 * folded by the compiler), and user space loads one set. The split is by
 * program and not by a load-time constant because kernels before 5.12
 * refuse a cmpxchg instruction anywhere in a program, even in code the
 * verifier would never reach. The maps of the set not loaded are shrunk to
 * one entry.
 */
#define MAX_CONNS 65536
#define N_BUCKETS (MAX_CONNS / TL_BUCKET_SLOTS)
#define MAX_LINKS 16384

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, N_BUCKETS);
	__type(key, __u32);
	__type(value, struct tl_bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CONNS);
	__type(key, __u32);
	__type(value, struct tl_conn_val);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CONNS);
	__type(key, __u64);
	__type(value, struct tl_conn_val);
} conns_h SEC(".maps");

/* Connections that were open before the probe loaded, by 4-tuple, as user
 * space found them in /proc. The first event that shows their socket
 * (close, shutdown, retransmit) moves them into `conns`. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tl_conn_key);
	__type(value, struct tl_conn_val);
} seeded SEC(".maps");

/* Set by user space once it has filled `seeded`: only then is a miss in
 * `conns` worth a second lookup. */
volatile __u32 have_seeded = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct tl_listen_key);
	__type(value, struct tl_task);
} listeners SEC(".maps");

/* Aggregates of closed connections, per CPU: a close adds to its own CPU's
 * copy with plain adds (no atomics, no cache line shared between CPUs), and
 * user space sums the copies. Not preallocated: memory grows with the links
 * actually seen (entries x CPUs), not with max_entries. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_LINKS);
	__type(key, struct tl_link_key);
	__type(value, struct tl_link_val);
} links SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TL_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1; /* per CPU: no atomic needed */
}

/*
 * Snoopers: the processes the probe watches. With `watch_on` clear (the
 * default: no selection) every process is watched and the hooks pay one
 * load of a global. With it set, a connection is tracked only when its
 * process (the task calling connect(), or the owner of the listening port
 * for an accepted one) is a key of `watched`, so an unwatched process
 * creates no entry in the connection store at all. User space fills the
 * map from the selection (pids, names, containers, resolved in /proc) once
 * per period and whenever the selection changes; in between, the fork and
 * exit hooks below add the children of watched processes and drop
 * processes that exit.
 */
#define MAX_WATCHED 32768

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_WATCHED);
	__type(key, __u32);   /* tgid */
	__type(value, __u8);
} watched SEC(".maps");

/* Written by user space while the programs run (global data is mmapped). */
volatile __u32 watch_on = 0;

static __always_inline int is_watched(__u32 tgid)
{
	if (!watch_on)
		return 1;
	return bpf_map_lookup_elem(&watched, &tgid) != 0;
}

/* A new process whose parent is watched is watched too. `child` is 0 for a
 * thread (same tgid as the parent: nothing to add). */
static __always_inline void watch_fork(__u32 parent_tgid, __u32 child)
{
	__u8 one = 1;

	if (!child || !watch_on || !bpf_map_lookup_elem(&watched, &parent_tgid))
		return;
	bpf_map_update_elem(&watched, &child, &one, BPF_ANY);
}

/* The exiting task's id: the tgid when the process ends (its leader exits),
 * or a thread id the classic fork hook may have added. */
static __always_inline void watch_exit(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (watch_on)
		bpf_map_delete_elem(&watched, &tid);
}

/* One u64 per CPU to turn a socket pointer into a number. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} scratch SEC(".maps");

/* The socket's kernel address as a plain number, the key of its connection.
 * In the BTF plan `sk` is a typed pointer, and the verifier refuses any
 * arithmetic on it (the bucket hash multiplies); a round trip through map
 * memory, which holds no types, gives the number (this needs CAP_PERFMON,
 * which loading needs anyway). Elsewhere it is a number already and the
 * round trip is a few inlined instructions. */
static __always_inline __u64 sk_addr(const struct sock *sk)
{
	__u32 zero = 0;
	__u64 *slot = bpf_map_lookup_elem(&scratch, &zero);

	if (!slot)
		return 0;
	*slot = (__u64)sk;
	return *(volatile __u64 *)slot;
}

/* A socket has two candidate buckets (two multiplicative hashes of its
 * address): it goes in the first unless that is full. Nearly every socket
 * then sits in its first bucket, so a lookup reads one cache line, and the
 * second bucket takes the overflow of the first: with one bucket, 19 000
 * loopback connections (38 000 sockets, 58 % of MAX_CONNS) lost 208 to full
 * buckets; with two, 29 (each counted in conn_overflow). */
static __always_inline __u32 bucket_of(__u64 sk, int second)
{
	__u64 mul = second ? 0xC2B2AE3D27D4EB4FULL : 0x9E3779B97F4A7C15ULL;

	return (__u32)((sk * mul) >> 40) & (N_BUCKETS - 1);
}

/* The slot of socket `sk` in bucket `b`, or -1. */
static __always_inline int slot_in(__u32 b, __u64 sk)
{
	struct tl_bucket *bk = bpf_map_lookup_elem(&buckets, &b);

	if (!bk)
		return -1;
#pragma unroll
	for (int i = 0; i < TL_BUCKET_SLOTS; i++) {
		if (bk->sk[i] == sk)
			return i;
	}
	return -1;
}

/* Where socket `sk` is: its bucket in *b and slot in *slot; 0 if absent. */
static __always_inline int locate(__u64 sk, __u32 *b, int *slot)
{
	*b = bucket_of(sk, 0);
	*slot = slot_in(*b, sk);
	if (*slot >= 0)
		return 1;
	*b = bucket_of(sk, 1);
	*slot = slot_in(*b, sk);
	return *slot >= 0;
}

/* Claims a free slot of bucket `b` for `sk`: the slot, or -1 when full. */
static __always_inline int claim_in(__u32 b, __u64 sk)
{
	struct tl_bucket *bk = bpf_map_lookup_elem(&buckets, &b);

	if (!bk)
		return -1;
#pragma unroll
	for (int i = 0; i < TL_BUCKET_SLOTS; i++) {
		if (bk->sk[i] == 0 && __sync_val_compare_and_swap(&bk->sk[i], 0, sk) == 0)
			return i;
	}
	return -1;
}

static __always_inline struct tl_conn_val *entry_at(__u32 b, int slot)
{
	__u32 idx = b * TL_BUCKET_SLOTS + (__u32)slot;

	return bpf_map_lookup_elem(&conns, &idx);
}

/* The connection of socket `sk`, or NULL. */
static __always_inline struct tl_conn_val *conn_get(int H, __u64 sk)
{
	__u32 b;
	int slot;

	if (H)
		return bpf_map_lookup_elem(&conns_h, &sk);
	if (!locate(sk, &b, &slot))
		return 0;
	return entry_at(b, slot);
}

/* The entry of socket `sk` in the index, claimed when it has none (an
 * address is reused once its socket is freed); NULL when both buckets are
 * full. */
static __always_inline struct tl_conn_val *conn_claim(__u64 sk)
{
	__u32 b;
	int slot;

	/* The second bucket is read only when the first is full: a new socket
	 * costs one cache line. (An entry of the same address could sit in
	 * the second bucket only if its socket's close went unseen; the
	 * sampler reaps it.) */
	b = bucket_of(sk, 0);
	slot = slot_in(b, sk);
	if (slot < 0)
		slot = claim_in(b, sk);
	if (slot < 0) {
		b = bucket_of(sk, 1);
		slot = slot_in(b, sk);
		if (slot < 0)
			slot = claim_in(b, sk);
	}
	if (slot < 0)
		return 0;
	return entry_at(b, slot);
}

/* Stores `nv` as the connection of socket `sk`, replacing what was there.
 * 0, or -1 when full. */
static __always_inline int conn_put(int H, __u64 sk, const struct tl_conn_val *nv)
{
	struct tl_conn_val *v;

	if (H)
		return bpf_map_update_elem(&conns_h, &sk, nv, BPF_ANY) ? -1 : 0;
	v = conn_claim(sk);
	if (!v)
		return -1;
	*v = *nv;
	return 0;
}

/* Forgets the connection of socket `sk`. */
static __always_inline void conn_del(int H, __u64 sk)
{
	struct tl_bucket *bk;
	__u32 b;
	int slot;

	if (H) {
		bpf_map_delete_elem(&conns_h, &sk);
		return;
	}
	if (!locate(sk, &b, &slot))
		return;
	bk = bpf_map_lookup_elem(&buckets, &b);
	if (bk && slot >= 0 && slot < TL_BUCKET_SLOTS)
		bk->sk[slot] = 0;
}

static __always_inline int is_loopback(const struct tl_conn_key *k)
{
	if (k->family == AF_INET)
		return k->raddr[0] == 127;
	/* ::1 and ::ffff:127.x.y.z */
	__u64 hi = *(__u64 *)&k->raddr[0];
	__u32 w2 = *(__u32 *)&k->raddr[8];
	__u32 w3 = *(__u32 *)&k->raddr[12];

	if (hi != 0)
		return 0;
	if (w2 == 0 && w3 == bpf_htonl(1))
		return 1;
	return w2 == bpf_htonl(0xffff) && k->raddr[12] == 127;
}

/*
 * Reads of the socket. Where the kernel has the bpf_rdonly_cast kfunc
 * (6.2+), a cast pointer is read with plain loads that the JIT guards like
 * probe reads, at about a nanosecond each instead of a helper call per
 * field; elsewhere each field is a BPF_CORE_READ. The verifier drops the
 * branch the kernel cannot take.
 */
#define HAVE_CAST bpf_ksym_exists(bpf_rdonly_cast)

/* The state handler leaves a connection's addresses to the sampler (and
 * reads them from the socket at close): where the sampler runs and the
 * socket is read with plain loads. */
#define LAZY_KEY (!eager_key && HAVE_CAST)

static __always_inline __u32 sk_netns(const struct sock *sk)
{
	if (HAVE_CAST) {
		struct sock *s = bpf_core_cast(sk, struct sock);

		return s->__sk_common.skc_net.net->ns.inum;
	}
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline void current_task(struct tl_task *t)
{
	t->pid = bpf_get_current_pid_tgid() >> 32;
	t->pad = 0;
	bpf_get_current_comm(t->comm, sizeof(t->comm));
}

/* The 4-tuple of a socket read from the socket itself, and its network
 * namespace unless `no_netns` (a pointer chase the link key does not need). */
static __always_inline void key_from_sk_ns(const struct sock *sk, struct tl_conn_key *k,
					   int no_netns)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (HAVE_CAST) {
		struct sock *s = bpf_core_cast(sk, struct sock);

		if (!no_netns)
			k->netns = s->__sk_common.skc_net.net->ns.inum;
		k->family = s->__sk_common.skc_family;
		k->lport = s->__sk_common.skc_num;
		k->rport = bpf_ntohs(s->__sk_common.skc_dport);
		if (k->family == AF_INET) {
			*(__u32 *)k->laddr = s->__sk_common.skc_rcv_saddr;
			*(__u32 *)k->raddr = s->__sk_common.skc_daddr;
		} else {
			__builtin_memcpy(k->laddr, &s->__sk_common.skc_v6_rcv_saddr, 16);
			__builtin_memcpy(k->raddr, &s->__sk_common.skc_v6_daddr, 16);
		}
		return;
	}
	k->netns = sk_netns(sk);
	k->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	k->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	k->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (k->family == AF_INET) {
		BPF_CORE_READ_INTO(&k->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO(&k->raddr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&k->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&k->raddr, sk, __sk_common.skc_v6_daddr);
	}
}

/* The 4-tuple and network namespace of a socket, from the socket (hooks
 * that get no tuple, the sampler). */
static __always_inline void key_from_sk(const struct sock *sk, struct tl_conn_key *k)
{
	key_from_sk_ns(sk, k, 0);
}

/* A socket's cumulative counters. */
struct tl_counters {
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u32 segs_in;
	__u32 segs_out;
	__u32 retrans;
	__u32 drops;
	__u32 srtt_us;
};

static __always_inline void counters_of(const struct sock *sk, struct tl_counters *c)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	if (HAVE_CAST) {
		struct tcp_sock *t = bpf_core_cast(sk, struct tcp_sock);

		c->rx_bytes = t->bytes_received;
		c->tx_bytes = t->bytes_acked;
		c->segs_in = t->segs_in;
		c->segs_out = t->segs_out;
		c->retrans = t->total_retrans;
		c->drops = t->inet_conn.icsk_inet.sk.sk_drops.counter;
		c->srtt_us = t->srtt_us >> 3;
		return;
	}
	c->rx_bytes = BPF_CORE_READ(tp, bytes_received);
	c->tx_bytes = BPF_CORE_READ(tp, bytes_acked);
	c->segs_in = BPF_CORE_READ(tp, segs_in);
	c->segs_out = BPF_CORE_READ(tp, segs_out);
	c->retrans = BPF_CORE_READ(tp, total_retrans);
	c->drops = BPF_CORE_READ(sk, sk_drops.counter);
	c->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
}

/* Reads the socket's cumulative counters into a connection entry (the
 * sampler, the per-packet plan). */
static __always_inline void read_counters(const struct sock *sk, struct tl_conn_val *v)
{
	struct tl_counters c;

	counters_of(sk, &c);
	v->rx_bytes = c.rx_bytes;
	v->tx_bytes = c.tx_bytes;
	v->segs_in = c.segs_in;
	v->segs_out = c.segs_out;
	v->retrans = c.retrans;
	v->drops = c.drops;
	v->srtt_us = c.srtt_us;
	v->samples++;
}

static __always_inline void link_key_of(const struct tl_conn_val *v, const struct tl_conn_key *k,
					struct tl_link_key *lk)
{
	lk->pid = v->pid;
	lk->role = v->role;
	lk->family = (__u8)k->family;
	if (v->role == TL_ROLE_CLIENT) {
		lk->server_port = k->rport;
		__builtin_memcpy(lk->client_ip, k->laddr, 16);
		__builtin_memcpy(lk->server_ip, k->raddr, 16);
	} else {
		lk->server_port = k->lport;
		__builtin_memcpy(lk->client_ip, k->raddr, 16);
		__builtin_memcpy(lk->server_ip, k->laddr, 16);
	}
}

/* A connection closed: fold its final counters into its link aggregate. */
static __always_inline void close_conn(int H, const struct sock *sk, __u64 skaddr,
				       struct tl_conn_val *v)
{
	struct tl_link_key lk = {};
	struct tl_link_val *agg;
	struct tl_counters c;
	struct tl_conn_key k;
	const struct tl_conn_key *kp = &v->key;

	if (filter_pid && v->pid != filter_pid)
		goto out;
	/* The final counters and (unless the entry has them) the addresses
	 * come from the socket: the entry's second cache line is not read. */
	counters_of(sk, &c);
	if (LAZY_KEY) {
		key_from_sk_ns(sk, &k, 1);
		/* Except the local port: the tracepoint fires after
		 * inet_put_port() has cleared it. A server's (the only role
		 * whose link key has it) was kept when its entry was made. */
		k.lport = v->key.lport;
		kp = &k;
	}
	link_key_of(v, kp, &lk);
	agg = bpf_map_lookup_elem(&links, &lk);
	if (!agg) {
		struct tl_link_val zero = {};

		__builtin_memcpy(zero.comm, v->comm, sizeof(zero.comm));
		/* EEXIST when another CPU raced us: the lookup below finds it. */
		bpf_map_update_elem(&links, &lk, &zero, BPF_NOEXIST);
		agg = bpf_map_lookup_elem(&links, &lk);
		if (!agg) {
			stat_inc(TL_STAT_LINK_OVERFLOW);
			goto out;
		}
	}
	/* This CPU's copy: nothing else writes it while we run. */
	agg->closed += 1;
	agg->rx_bytes += c.rx_bytes;
	agg->tx_bytes += c.tx_bytes;
	agg->segs_in += c.segs_in;
	agg->segs_out += c.segs_out;
	agg->retrans += c.retrans;
	agg->drops += c.drops;
	agg->srtt_sum_us += c.srtt_us;
out:
	conn_del(H, skaddr);
}

/* A connection by its socket; one that was open before the probe loaded is
 * moved over from `seeded`. Only then is the 4-tuple needed: it is read from
 * the socket on that miss, unless the caller has it already (family set). */
static __always_inline struct tl_conn_val *find_conn(int H, const struct sock *sk, __u64 skaddr,
						struct tl_conn_key *k)
{
	struct tl_conn_val *v = conn_get(H, skaddr);

	if (v || !have_seeded)
		return v;
	if (k->family == 0)
		key_from_sk(sk, k);
	v = bpf_map_lookup_elem(&seeded, k);
	if (!v)
		return 0;
	v->sk = skaddr;
	if (conn_put(H, skaddr, v)) {
		stat_inc(TL_STAT_CONN_OVERFLOW);
		return 0;
	}
	bpf_map_delete_elem(&seeded, k);
	return conn_get(H, skaddr);
}

/* Whether the socket is TCP: the tracepoint also fires for SCTP (and DCCP
 * before 6.16). Known already in the classic tracepoint (its record says)
 * and the kprobe (tcp_set_state). */
static __always_inline int is_tcp(const struct sock *sk, int known)
{
	if (known)
		return 1;
	if (HAVE_CAST) {
		struct sock *s = bpf_core_cast(sk, struct sock);

		return BPF_CORE_READ_BITFIELD(s, sk_protocol) == IPPROTO_TCP;
	}
	return BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) == IPPROTO_TCP;
}

/* Whether a transition can matter at all: a few compares on the arguments,
 * before anything else (FIN_WAIT2, CLOSE_WAIT, TIME_WAIT, SYN_RECV,
 * CLOSING and a half-open connection's close do not). */
static __always_inline int worth_a_look(int old, int new)
{
	switch (new) {
	case S_SYN_SENT:
	case S_LISTEN:
	case S_FIN_WAIT1:
	case S_LAST_ACK:
		return 1;
	case S_ESTABLISHED:
		return old == S_SYN_SENT || old == S_SYN_RECV;
	case S_CLOSE:
		return old != S_SYN_RECV;
	}
	return 0;
}

/* The inode of a socket's file (0 for a socket without one). */
static __always_inline __u64 sock_ino(const struct sock *sk)
{
	if (HAVE_CAST) {
		struct sock *s = bpf_core_cast(sk, struct sock);

		return s->sk_socket->file->f_inode->i_ino;
	}
	return BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
}

#define COMM_NONE 0
#define COMM_CURRENT 1
#define COMM_OWNER 2

/* Records a new connection of socket `sk`: its owner (`pid`, with the
 * command of the current task or of `owner`), its role, and what of its key
 * the caller has: nothing (`k` NULL: a client before its port is chosen),
 * the ports and netns, or everything (`keyed`). In the index, a lazy key
 * writes only the entry's first cache line; `key.family` stays 0 until the
 * sampler has written the addresses (and the counters, which are stale
 * until then). 0, or -1 when full. */
static __always_inline int conn_new(int H, __u64 sk, __u32 pid, int comm_src,
				    const struct tl_task *owner, __u8 role, __u8 pid_src, __u64 ino,
				    const struct tl_conn_key *k, int keyed)
{
	struct tl_conn_val *v;

	if (H) {
		struct tl_conn_val nv = {};

		nv.sk = sk;
		nv.pid = pid;
		nv.role = role;
		nv.pid_src = pid_src;
		nv.ino = ino;
		if (comm_src == COMM_CURRENT)
			bpf_get_current_comm(nv.comm, sizeof(nv.comm));
		else if (comm_src == COMM_OWNER && owner)
			__builtin_memcpy(nv.comm, owner->comm, sizeof(nv.comm));
		if (k && keyed) {
			nv.key = *k;
		} else if (k) {
			nv.key.netns = k->netns;
			nv.key.lport = k->lport;
			nv.key.rport = k->rport;
		}
		return conn_put(1, sk, &nv);
	}
	v = conn_claim(sk);
	if (!v)
		return -1;
	/* Until `sk` is written last, the sampler and user space take the
	 * entry for its previous socket's and skip it. */
	v->key.family = 0;
	v->pid = pid;
	v->role = role;
	v->pid_src = pid_src;
	v->pad = 0;
	if (comm_src == COMM_CURRENT) {
		bpf_get_current_comm(v->comm, sizeof(v->comm));
	} else if (comm_src == COMM_OWNER && owner) {
		__builtin_memcpy(v->comm, owner->comm, sizeof(v->comm));
	} else {
		__builtin_memset(v->comm, 0, sizeof(v->comm));
	}
	v->ino = ino;
	v->samples = 0;
	v->key.netns = k ? k->netns : 0;
	v->key.lport = k ? k->lport : 0;
	v->key.rport = k ? k->rport : 0;
	v->key.pad = 0;
	if (!LAZY_KEY) {
		v->rx_bytes = 0;
		v->tx_bytes = 0;
		v->segs_in = 0;
		v->segs_out = 0;
		v->retrans = 0;
		v->drops = 0;
		v->srtt_us = 0;
	}
	if (k && keyed) {
		__builtin_memcpy(v->key.laddr, k->laddr, 16);
		__builtin_memcpy(v->key.raddr, k->raddr, 16);
		v->key.family = k->family;
	}
	asm volatile("" ::: "memory");
	v->sk = sk;
	return 0;
}

/* Whether socket `sk` has an entry; in the index, only its bucket is read. */
static __always_inline int conn_seen(int H, __u64 sk)
{
	__u32 b;
	int slot;

	if (H)
		return bpf_map_lookup_elem(&conns_h, &sk) != 0;
	return locate(sk, &b, &slot);
}

#define NEED_NOTHING 0
#define NEED_KEY 1     /* the 4-tuple and netns are needed */
#define NEED_SK 2      /* the socket address is enough (unless seeded) */

/* Most transitions need nothing (FIN_WAIT2, CLOSE_WAIT, TIME_WAIT, ...):
 * decide before reading anything from the socket. SYN_SENT and failed
 * connects are handled here, keyed on the socket address alone. */
static __always_inline int prefilter(int H, const struct sock *sk, __u64 skaddr, int old, int new,
				     int tcp_known)
{

	switch (new) {
	case S_SYN_SENT: {
		/* connect(): task context, the caller owns the socket. The local
		 * port is not chosen yet, so the 4-tuple comes at ESTABLISHED
		 * (or from the sampler); until then the entry has no key
		 * (family 0). With a lazy key, the socket's inode identifies it
		 * to the sampler. */
		__u32 pid;

		if (!is_tcp(sk, tcp_known))
			return 0;
		pid = bpf_get_current_pid_tgid() >> 32;
		if (filter_pid && pid != filter_pid)
			return 0;
		if (!is_watched(pid)) {
			stat_inc(TL_STAT_UNWATCHED);
			return 0;
		}
		if (conn_new(H, skaddr, pid, COMM_CURRENT, 0, TL_ROLE_CLIENT, TL_PID_CONNECT,
			     LAZY_KEY ? sock_ino(sk) : 0, 0, 0))
			stat_inc(TL_STAT_CONN_OVERFLOW);
		return 0;
	}
	case S_ESTABLISHED:
		if (old == S_SYN_SENT && LAZY_KEY && !skip_loopback) {
			/* Active open: the addresses are the sampler's to read,
			 * so this is only counted. */
			if (conn_seen(H, skaddr))
				stat_inc(TL_STAT_CONNS_OPENED);
			return NEED_NOTHING;
		}
		return old == S_SYN_SENT || old == S_SYN_RECV ? NEED_KEY : NEED_NOTHING;
	case S_CLOSE:
		if (old == S_SYN_SENT) {
			conn_del(H, skaddr); /* the connect failed */
			return NEED_NOTHING;
		}
		if (old == S_LISTEN)
			return NEED_KEY;
		return old == S_SYN_RECV ? NEED_NOTHING : NEED_SK;
	case S_LISTEN:
		return NEED_KEY;
	case S_FIN_WAIT1:
	case S_LAST_ACK:
		return NEED_SK;
	}
	return NEED_NOTHING;
}

static __always_inline int on_state(int H, const struct sock *sk, __u64 skaddr, int old, int new,
				    struct tl_conn_key *k, int tcp_known)
{
	struct tl_conn_val *v;
	struct tl_task t;

	switch (new) {
	case S_LISTEN: {
		struct tl_listen_key lk = { .netns = k->netns, .port = k->lport };

		if (!is_tcp(sk, tcp_known))
			return 0;
		current_task(&t);
		if (bpf_map_update_elem(&listeners, &lk, &t, BPF_ANY))
			stat_inc(TL_STAT_LISTEN_OVERFLOW);
		return 0;
	}
	case S_ESTABLISHED: {
		struct tl_task *owner;

		if (old == S_SYN_SENT) {
			/* Active open, completed in softirq: the owner was recorded
			 * at connect(); now the 4-tuple is known (here only with an
			 * eager key or loopback connections to skip). */
			v = conn_get(H, skaddr);
			if (!v)
				return 0; /* filtered out, or connected before we loaded */
			if (skip_loopback && is_loopback(k)) {
				conn_del(H, skaddr);
				return 0;
			}
			if (!LAZY_KEY)
				v->key = *k;
			stat_inc(TL_STAT_CONNS_OPENED);
			return 0;
		}
		if (old != S_SYN_RECV || (skip_loopback && is_loopback(k)) || !is_tcp(sk, tcp_known))
			return 0;
		/* Passive open, in softirq (on loopback: in the client's task).
		 * Until the owner closes it, the listener's owner stands in; user
		 * space refines it from the socket's inode. */
		struct tl_listen_key lk = { .netns = k->netns, .port = k->lport };

		owner = bpf_map_lookup_elem(&listeners, &lk);
		/* With snoopers, a server side is tracked only for a watched
		 * listener (an unknown one is not watched). */
		if (watch_on && (!owner || !is_watched(owner->pid))) {
			stat_inc(TL_STAT_UNWATCHED);
			return 0;
		}
		/* The ports identify the socket to the sampler until it has
		 * written the addresses. */
		if (conn_new(H, skaddr, owner ? owner->pid : 0, COMM_OWNER, owner, TL_ROLE_SERVER,
			     owner ? TL_PID_LISTEN : TL_PID_NONE, 0, k, !LAZY_KEY))
			stat_inc(TL_STAT_CONN_OVERFLOW);
		else
			stat_inc(TL_STAT_CONNS_OPENED);
		return 0;
	}
	case S_FIN_WAIT1:
	case S_LAST_ACK:
		/* close()/shutdown() by the owner: task context on both sides. */
		v = find_conn(H, sk, skaddr, k);
		if (v && v->role == TL_ROLE_SERVER && v->pid_src != TL_PID_CLOSE) {
			v->pid = bpf_get_current_pid_tgid() >> 32;
			v->pid_src = TL_PID_CLOSE;
			bpf_get_current_comm(v->comm, sizeof(v->comm));
		}
		return 0;
	case S_CLOSE:
		if (old == S_LISTEN) {
			struct tl_listen_key lk = { .netns = k->netns, .port = k->lport };

			if (is_tcp(sk, tcp_known))
				bpf_map_delete_elem(&listeners, &lk);
			return 0;
		}
		v = find_conn(H, sk, skaddr, k);
		if (!v) {
			stat_inc(TL_STAT_CLOSE_UNTRACKED);
			return 0;
		}
		close_conn(H, sk, skaddr, v);
		return 0;
	}
	return 0;
}

/* ---- tracepoint plan (4.16+) ---- */

static __always_inline int state_tp(int H, struct trace_event_raw_inet_sock_set_state *ctx)
{
	/* Every field of the context is read once, here, at a fixed offset:
	 * the verifier refuses reads through a moved context pointer. */
	const struct sock *sk = ctx->skaddr;
	int old = ctx->oldstate, new = ctx->newstate;
	__u16 family = ctx->family, sport = ctx->sport, dport = ctx->dport;
	struct tl_conn_key k = {};
	int need;

	if (ctx->protocol != IPPROTO_TCP || !worth_a_look(old, new))
		return 0;
	need = prefilter(H, sk, (__u64)sk, old, new, 1);
	if (need == NEED_NOTHING)
		return 0;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (need == NEED_KEY && HAVE_CAST) {
		key_from_sk(sk, &k);
	} else if (need == NEED_KEY) {
		k.family = family;
		k.lport = sport;
		k.rport = dport;
		if (k.family == AF_INET) {
			bpf_probe_read_kernel(k.laddr, 4, ctx->saddr);
			bpf_probe_read_kernel(k.raddr, 4, ctx->daddr);
		} else {
			bpf_probe_read_kernel(k.laddr, 16, ctx->saddr_v6);
			bpf_probe_read_kernel(k.raddr, 16, ctx->daddr_v6);
		}
		k.netns = sk_netns(sk);
	}
	return on_state(H, sk, (__u64)sk, old, new, &k, 1);
}

SEC("tracepoint/sock/inet_sock_set_state")
int tcp_link_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	return state_tp(0, ctx);
}

SEC("tracepoint/sock/inet_sock_set_state")
int tcp_link_state_tp_h(struct trace_event_raw_inet_sock_set_state *ctx)
{
	return state_tp(1, ctx);
}

/* ---- BTF tracepoint plan (5.5+): the same hook with typed arguments ----
 *
 * A raw tracepoint gets the socket pointer itself: no event record is built
 * for it (the classic tracepoint copies every field, both IPv6 addresses
 * included, into a buffer on every state change), and the socket is read
 * with plain loads. The loader prefers this and falls back to the classic
 * tracepoint where the kernel refuses it. */
/* A state change seen by a hook that gets the socket alone (the BTF
 * tracepoint, the kprobe): the 4-tuple is read from it when needed. */
static __always_inline int state_change(int H, const struct sock *sk, __u64 skaddr, int old, int new,
					int tcp_known)
{
	struct tl_conn_key k;
	int need;

	k.family = 0;
	need = prefilter(H, sk, skaddr, old, new, tcp_known);
	if (need == NEED_NOTHING)
		return 0;
	if (need == NEED_KEY) {
		key_from_sk(sk, &k);
		if (k.family != AF_INET && k.family != AF_INET6)
			return 0;
	}
	return on_state(H, sk, skaddr, old, new, &k, tcp_known);
}

/* Transitions that need nothing return before any memory is touched (a
 * profile puts most of the cost in cache misses); the protocol is read only
 * where an entry is created. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_link_state_btf, const struct sock *sk, const int old, const int new)
{
	if (!worth_a_look(old, new))
		return 0;
	return state_change(0, sk, sk_addr(sk), old, new, 0);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_link_state_btf_h, const struct sock *sk, const int old, const int new)
{
	if (!worth_a_look(old, new))
		return 0;
	return state_change(1, sk, sk_addr(sk), old, new, 0);
}

/* Gives a connection that was open before the probe loaded its socket, so
 * the sampler can read it. */
static __always_inline void adopt(int H, const struct sock *sk, int typed)
{
	struct tl_conn_key k;

	stat_inc(TL_STAT_RETRANS_EVENTS);
	if (!have_seeded)
		return;
	k.family = 0;
	/* A typed socket pointer (tp_btf) allows no arithmetic: its address
	 * goes through sk_addr() to become a plain number. */
	find_conn(H, sk, typed ? sk_addr(sk) : (__u64)sk, &k);
}

/* The retransmit hook as a BTF tracepoint (5.5+), beside the state handler
 * of the same plan: found by name in the kernel's BTF, so attaching it needs
 * no tracefs. Its later arguments (skb, and err since 6.x) are not read. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_link_retrans_btf, const struct sock *sk)
{
	adopt(0, sk, 1);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_link_retrans_btf_h, const struct sock *sk)
{
	adopt(1, sk, 1);
	return 0;
}

/* The classic tracepoint (kernels that refuse tp_btf): attaching it reads
 * the tracepoint's id from tracefs. */
SEC("tracepoint/tcp/tcp_retransmit_skb")
int tcp_link_retrans_tp(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	adopt(0, ctx->skaddr, 0);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int tcp_link_retrans_tp_h(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	adopt(1, ctx->skaddr, 0);
	return 0;
}

/* ---- kprobe plan (kernels without inet_sock_set_state, e.g. 4.14) ---- */

SEC("kprobe/tcp_set_state")
int BPF_KPROBE(tcp_link_state_kp, struct sock *sk, int state)
{
	int old = BPF_CORE_READ(sk, __sk_common.skc_state);

	if (!worth_a_look(old, state))
		return 0;
	return state_change(0, sk, (__u64)sk, old, state, 1);
}

SEC("kprobe/tcp_set_state")
int BPF_KPROBE(tcp_link_state_kp_h, struct sock *sk, int state)
{
	int old = BPF_CORE_READ(sk, __sk_common.skc_state);

	if (!worth_a_look(old, state))
		return 0;
	return state_change(1, sk, (__u64)sk, old, state, 1);
}

SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(tcp_link_retrans_kp, struct sock *sk)
{
	adopt(0, sk, 0);
	return 0;
}

SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(tcp_link_retrans_kp_h, struct sock *sk)
{
	adopt(1, sk, 0);
	return 0;
}

/* ---- per-packet plan (optional, off by default) ---- */

static __always_inline int packet(int H, const struct sock *sk, __u64 skaddr)
{
	struct tl_conn_val *v = conn_get(H, skaddr);

	if (v)
		read_counters(sk, v);
	return 0;
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(tcp_link_packet_btf, const struct sock *sk)
{
	return packet(0, sk, sk_addr(sk));
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(tcp_link_packet_btf_h, const struct sock *sk)
{
	return packet(1, sk, sk_addr(sk));
}

SEC("tracepoint/tcp/tcp_probe")
int tcp_link_packet_tp(struct trace_event_raw_tcp_probe *ctx)
{
	return packet(0, ctx->skaddr, (__u64)ctx->skaddr);
}

SEC("tracepoint/tcp/tcp_probe")
int tcp_link_packet_tp_h(struct trace_event_raw_tcp_probe *ctx)
{
	return packet(1, ctx->skaddr, (__u64)ctx->skaddr);
}

/* ---- snoopers: processes come and go ----
 *
 * Attached with every plan; each returns after one load of `watch_on` when
 * there is no selection. */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tcp_link_fork_btf, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid, ctgid;

	if (!watch_on)
		return 0;
	ptgid = BPF_CORE_READ(parent, tgid);
	ctgid = BPF_CORE_READ(child, tgid);
	/* A new thread shares its parent's tgid. */
	watch_fork(ptgid, ctgid == ptgid ? 0 : ctgid);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tcp_link_exit_btf)
{
	watch_exit();
	return 0;
}

/* The classic record has the child's thread id, not its tgid: for a new
 * thread of a watched process the id is added too, and removed again when
 * that thread exits. */
SEC("tracepoint/sched/sched_process_fork")
int tcp_link_fork_tp(struct trace_event_raw_sched_process_fork *ctx)
{
	if (!watch_on)
		return 0;
	watch_fork(bpf_get_current_pid_tgid() >> 32, (__u32)ctx->child_pid);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int tcp_link_exit_tp(void *ctx)
{
	watch_exit();
	return 0;
}

/* ---- the sampler, run by user space once per period ---- */

/* Reads one open connection; false when its socket is no longer the
 * connection the entry describes (freed, or its close is in flight). */
static __always_inline int sample_conn(struct tl_conn_val *v)
{
	const struct sock *sk = (const struct sock *)v->sk;
	__u16 lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	__u16 rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));

	if (v->key.family == 0) {
		/* Not keyed yet: a client is recognised by its socket's inode,
		 * a server by its ports; the addresses are read once the
		 * connection is established (a client between connect() and
		 * ESTABLISHED waits). */
		int state = BPF_CORE_READ(sk, __sk_common.skc_state);

		if (v->ino && BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino) != v->ino)
			return 0;
		if (v->key.lport && (lport != v->key.lport || rport != v->key.rport))
			return 0;
		switch (state) {
		case S_ESTABLISHED:
		case S_FIN_WAIT1:
		case S_FIN_WAIT2:
		case S_CLOSE_WAIT:
		case S_LAST_ACK:
		case S_CLOSING:
			break;
		default:
			return 1;
		}
		key_from_sk(sk, &v->key);
	} else if (lport != v->key.lport || rport != v->key.rport) {
		return 0;
	}
	read_counters(sk, v);
	v->ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	return 1;
}

static long sample_hashed(struct bpf_map *map, __u64 *skaddr, struct tl_conn_val *v, void *ctx)
{
	sample_conn(v);
	return 0;
}

static long sample_bucket(struct bpf_map *map, __u32 *b, struct tl_bucket *bk, void *ctx)
{
#pragma unroll
	for (int i = 0; i < TL_BUCKET_SLOTS; i++) {
		__u64 sk = bk->sk[i];
		__u32 idx = *b * TL_BUCKET_SLOTS + i;
		struct tl_conn_val *v;

		if (!sk)
			continue;
		v = bpf_map_lookup_elem(&conns, &idx);
		/* Taken over by another socket a moment ago. */
		if (!v || v->sk != sk)
			continue;
		/* An entry whose socket is no longer its connection: the
		 * socket went without a close we saw. Free the slot, unless
		 * it was taken over meanwhile. */
		if (!sample_conn(v) &&
		    __sync_val_compare_and_swap(&bk->sk[i], sk, 0) == sk)
			stat_inc(TL_STAT_CONNS_REAPED);
	}
	return 0;
}

SEC("raw_tp")
int tcp_link_sample(void *ctx)
{
	bpf_for_each_map_elem(&buckets, sample_bucket, NULL, 0);
	return 0;
}

SEC("raw_tp")
int tcp_link_sample_h(void *ctx)
{
	bpf_for_each_map_elem(&conns_h, sample_hashed, NULL, 0);
	return 0;
}

/* GPL: the program uses GPL-only helpers (probe reads of kernel memory). */
char LICENSE[] SEC("license") = "GPL";
