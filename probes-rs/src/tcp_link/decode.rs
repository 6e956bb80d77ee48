//! Pure decoding of the tcp_link maps (layouts in `tcp_link.h`) and the
//! per-period aggregation into `tcp_link` records. No I/O: tested on byte
//! fixtures.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `struct tl_conn_key`.
pub const CONN_KEY_SIZE: usize = 44;
/// `struct tl_conn_val`.
pub const CONN_VAL_SIZE: usize = 128;
/// `struct tl_link_key`.
pub const LINK_KEY_SIZE: usize = 40;
/// `struct tl_link_val`.
pub const LINK_VAL_SIZE: usize = 88;
/// `TL_BUCKET_SLOTS`: sockets per bucket of the live-connection index.
pub const BUCKET_SLOTS: u32 = 8;

/// The occupied slots of one `struct tl_bucket`: (slot, socket address).
/// A value of the wrong size has none.
pub fn bucket_slots(b: &[u8]) -> impl Iterator<Item = (u32, u64)> + '_ {
    let ok = b.len() == BUCKET_SLOTS as usize * 8;
    b.chunks_exact(8)
        .take(if ok { BUCKET_SLOTS as usize } else { 0 })
        .zip(0..)
        .filter_map(|(c, i)| {
            let sk = u64::from_ne_bytes(c.try_into().ok()?);
            (sk != 0).then_some((i, sk))
        })
}

/// `struct tl_listen_key`.
pub const LISTEN_KEY_SIZE: usize = 8;
/// `struct tl_task`.
pub const TASK_SIZE: usize = 24;

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// Role of the process on a connection (docs/compat.md §8: 1 client, 0 server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Accepted the connection.
    Server = 0,
    /// Opened it.
    Client = 1,
}

impl Role {
    fn from_u8(v: u8) -> Self {
        if v == 1 {
            Self::Client
        } else {
            Self::Server
        }
    }
}

/// Where a connection's pid came from (`TL_PID_*`).
pub mod pid_src {
    /// Not known.
    pub const NONE: u8 = 0;
    /// The task that called connect().
    pub const CONNECT: u8 = 1;
    /// The owner of the listening socket (provisional).
    pub const LISTEN: u8 = 2;
    /// The task that closed the socket.
    pub const CLOSE: u8 = 3;
    /// Resolved or seeded by user space from the socket's inode.
    pub const USER: u8 = 4;
}

/// Indexes of the `stats` array (`TL_STAT_*`).
pub const STAT_NAMES: [&str; 7] = [
    "conn_overflow",
    "link_overflow",
    "close_untracked",
    "listen_overflow",
    "retrans_events",
    "conns_opened",
    "conns_reaped",
];

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self { b, at: 0 }
    }
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.at..self.at + N)?;
        self.at += N;
        s.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_ne_bytes(self.take()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.take()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.take()?))
    }
}

/// The text of a NUL-padded `comm`.
pub fn comm_text(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(comm.get(..end).unwrap_or_default()).into_owned()
}

/// A `comm` as the kernel stores it (at most 15 bytes and a NUL).
pub fn comm_bytes(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(s.bytes().take(15)) {
        *o = b;
    }
    out
}

/// An address as stored in the maps: IPv4 in the first 4 bytes.
pub fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

/// The address of `family` in `raw`; v4-mapped IPv6 addresses become IPv4
/// so that both ends of a dual-stack connection name it the same way.
pub fn addr(family: u16, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        let v6 = Ipv6Addr::from(*raw);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

/// `struct tl_conn_key`: one live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    /// Network namespace inode.
    pub netns: u32,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Local port.
    pub lport: u16,
    /// Remote port.
    pub rport: u16,
    /// Local address.
    pub laddr: [u8; 16],
    /// Remote address.
    pub raddr: [u8; 16],
}

impl ConnKey {
    /// Decodes a map key; `None` when the size is wrong.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != CONN_KEY_SIZE {
            return None;
        }
        let mut r = Reader::new(b);
        let netns = r.u32()?;
        let family = r.u16()?;
        let lport = r.u16()?;
        let rport = r.u16()?;
        let _pad = r.u16()?;
        Some(Self {
            netns,
            family,
            lport,
            rport,
            laddr: r.take()?,
            raddr: r.take()?,
        })
    }

    /// The map key bytes.
    pub fn encode(&self) -> [u8; CONN_KEY_SIZE] {
        let mut out = [0u8; CONN_KEY_SIZE];
        out[0..4].copy_from_slice(&self.netns.to_ne_bytes());
        out[4..6].copy_from_slice(&self.family.to_ne_bytes());
        out[6..8].copy_from_slice(&self.lport.to_ne_bytes());
        out[8..10].copy_from_slice(&self.rport.to_ne_bytes());
        out[12..28].copy_from_slice(&self.laddr);
        out[28..44].copy_from_slice(&self.raddr);
        out
    }
}

/// `struct tl_conn_val`: what is known of a live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnVal {
    /// Kernel address of the socket (0: not seen yet).
    pub sk: u64,
    /// Owning process.
    pub pid: u32,
    /// 1 client, 0 server.
    pub role: u8,
    /// See [`pid_src`].
    pub pid_src: u8,
    /// Command name of the owner.
    pub comm: [u8; 16],
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent and acknowledged.
    pub tx_bytes: u64,
    /// Segments received.
    pub segs_in: u32,
    /// Segments sent.
    pub segs_out: u32,
    /// Retransmitted segments.
    pub retrans: u32,
    /// Packets dropped by the socket.
    pub drops: u32,
    /// Smoothed RTT, us.
    pub srtt_us: u32,
    /// How many times the counters were read (0: never).
    pub samples: u32,
    /// Inode of the socket file (0 before accept()).
    pub ino: u64,
    /// The connection's 4-tuple and network namespace.
    pub key: ConnKey,
}

impl Default for ConnKey {
    fn default() -> Self {
        Self {
            netns: 0,
            family: AF_INET,
            lport: 0,
            rport: 0,
            laddr: [0; 16],
            raddr: [0; 16],
        }
    }
}

impl ConnVal {
    /// Decodes a map value; `None` when the size is wrong.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != CONN_VAL_SIZE {
            return None;
        }
        let mut r = Reader::new(b);
        let sk = r.u64()?;
        let pid = r.u32()?;
        let role = r.u8()?;
        let pid_src = r.u8()?;
        let _pad = r.u16()?;
        let comm = r.take()?;
        let ino = r.u64()?;
        let samples = r.u32()?;
        let key = ConnKey::decode(&r.take::<CONN_KEY_SIZE>()?)?;
        Some(Self {
            sk,
            pid,
            role,
            pid_src,
            comm,
            rx_bytes: r.u64()?,
            tx_bytes: r.u64()?,
            segs_in: r.u32()?,
            segs_out: r.u32()?,
            retrans: r.u32()?,
            drops: r.u32()?,
            srtt_us: r.u32()?,
            samples,
            ino,
            key,
        })
    }

    /// The map value bytes.
    pub fn encode(&self) -> [u8; CONN_VAL_SIZE] {
        let mut o = [0u8; CONN_VAL_SIZE];
        o[0..8].copy_from_slice(&self.sk.to_ne_bytes());
        o[8..12].copy_from_slice(&self.pid.to_ne_bytes());
        o[12] = self.role;
        o[13] = self.pid_src;
        o[16..32].copy_from_slice(&self.comm);
        o[32..40].copy_from_slice(&self.ino.to_ne_bytes());
        o[40..44].copy_from_slice(&self.samples.to_ne_bytes());
        o[44..88].copy_from_slice(&self.key.encode());
        o[88..96].copy_from_slice(&self.rx_bytes.to_ne_bytes());
        o[96..104].copy_from_slice(&self.tx_bytes.to_ne_bytes());
        for (i, v) in [
            self.segs_in,
            self.segs_out,
            self.retrans,
            self.drops,
            self.srtt_us,
        ]
        .iter()
        .enumerate()
        {
            o[104 + 4 * i..108 + 4 * i].copy_from_slice(&v.to_ne_bytes());
        }
        o
    }
}

/// `struct tl_link_key`: one aggregate of closed connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkKey {
    /// Owning process.
    pub pid: u32,
    /// 1 client, 0 server.
    pub role: u8,
    /// Address family.
    pub family: u8,
    /// Server port.
    pub server_port: u16,
    /// Client address.
    pub client_ip: [u8; 16],
    /// Server address.
    pub server_ip: [u8; 16],
}

impl LinkKey {
    /// Decodes a map key; `None` when the size is wrong.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != LINK_KEY_SIZE {
            return None;
        }
        let mut r = Reader::new(b);
        Some(Self {
            pid: r.u32()?,
            role: r.u8()?,
            family: r.u8()?,
            server_port: r.u16()?,
            client_ip: r.take()?,
            server_ip: r.take()?,
        })
    }

    /// The map key bytes.
    pub fn encode(&self) -> [u8; LINK_KEY_SIZE] {
        let mut o = [0u8; LINK_KEY_SIZE];
        o[0..4].copy_from_slice(&self.pid.to_ne_bytes());
        o[4] = self.role;
        o[5] = self.family;
        o[6..8].copy_from_slice(&self.server_port.to_ne_bytes());
        o[8..24].copy_from_slice(&self.client_ip);
        o[24..40].copy_from_slice(&self.server_ip);
        o
    }

    /// The aggregate a live connection folds into when it closes (the same
    /// rule as `link_key_of` in the BPF program).
    pub fn of(k: &ConnKey, v: &ConnVal) -> Self {
        let client = v.role == Role::Client as u8;
        Self {
            pid: v.pid,
            role: v.role,
            family: u8::try_from(k.family).unwrap_or(0),
            server_port: if client { k.rport } else { k.lport },
            client_ip: if client { k.laddr } else { k.raddr },
            server_ip: if client { k.raddr } else { k.laddr },
        }
    }
}

/// `struct tl_link_val`: cumulative sums over closed connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkVal {
    /// Connections closed.
    pub closed: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent and acknowledged.
    pub tx_bytes: u64,
    /// Segments received.
    pub segs_in: u64,
    /// Segments sent.
    pub segs_out: u64,
    /// Retransmitted segments.
    pub retrans: u64,
    /// Packets dropped by the sockets.
    pub drops: u64,
    /// Sum of the final smoothed RTTs, us.
    pub srtt_sum_us: u64,
    /// Command name of the owner.
    pub comm: [u8; 16],
}

impl LinkVal {
    /// Decodes a map value; `None` when the size is wrong.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != LINK_VAL_SIZE {
            return None;
        }
        let mut r = Reader::new(b);
        Some(Self {
            closed: r.u64()?,
            rx_bytes: r.u64()?,
            tx_bytes: r.u64()?,
            segs_in: r.u64()?,
            segs_out: r.u64()?,
            retrans: r.u64()?,
            drops: r.u64()?,
            srtt_sum_us: r.u64()?,
            comm: r.take()?,
        })
    }

    /// The sum of the per-CPU copies of one aggregate (`links` is a per-CPU
    /// map); the command name is the first one set. Copies of the wrong size
    /// are left out.
    pub fn sum<'a>(cpus: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut t = Self::default();
        for v in cpus.into_iter().filter_map(Self::decode) {
            t.closed = t.closed.wrapping_add(v.closed);
            t.rx_bytes = t.rx_bytes.wrapping_add(v.rx_bytes);
            t.tx_bytes = t.tx_bytes.wrapping_add(v.tx_bytes);
            t.segs_in = t.segs_in.wrapping_add(v.segs_in);
            t.segs_out = t.segs_out.wrapping_add(v.segs_out);
            t.retrans = t.retrans.wrapping_add(v.retrans);
            t.drops = t.drops.wrapping_add(v.drops);
            t.srtt_sum_us = t.srtt_sum_us.wrapping_add(v.srtt_sum_us);
            if t.comm[0] == 0 {
                t.comm = v.comm;
            }
        }
        t
    }
}

/// `struct tl_listen_key`.
pub fn listen_key(netns: u32, port: u16) -> [u8; LISTEN_KEY_SIZE] {
    let mut o = [0u8; LISTEN_KEY_SIZE];
    o[0..4].copy_from_slice(&netns.to_ne_bytes());
    o[4..6].copy_from_slice(&port.to_ne_bytes());
    o
}

/// `struct tl_task`.
pub fn task(pid: u32, comm: &str) -> [u8; TASK_SIZE] {
    let mut o = [0u8; TASK_SIZE];
    o[0..4].copy_from_slice(&pid.to_ne_bytes());
    o[8..24].copy_from_slice(&comm_bytes(comm));
    o
}

/// Identity of one `tcp_link` record: the table's keys in output form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    /// Process.
    pub pid: u32,
    /// Role.
    pub role: Role,
    /// Client address (v4-mapped shown as IPv4).
    pub client_ip: IpAddr,
    /// Server address.
    pub server_ip: IpAddr,
    /// Server port.
    pub server_port: u16,
    /// Address family as the legacy agent printed it: 2 IPv4, 10 IPv6.
    pub protocol: u16,
}

impl RecordKey {
    /// The record a link aggregate belongs to.
    pub fn of(k: &LinkKey) -> Self {
        let family = u16::from(k.family);
        let client_ip = addr(family, &k.client_ip);
        let server_ip = addr(family, &k.server_ip);
        let protocol = if server_ip.is_ipv4() {
            AF_INET
        } else {
            AF_INET6
        };
        Self {
            pid: k.pid,
            role: Role::from_u8(k.role),
            client_ip,
            server_ip,
            server_port: k.server_port,
            protocol,
        }
    }
}

/// Counters of one record, summed over its open and closed connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Sums {
    comm: String,
    open: u64,
    closed_in_period: u64,
    rx: u64,
    tx: u64,
    segs_in: u64,
    segs_out: u64,
    retrans: u64,
    drops: u64,
    rtt_sum: u64,
    rtt_n: u64,
}

/// What the aggregator remembers of a link aggregate between periods.
#[derive(Debug, Clone, Copy, Default)]
struct Prev {
    closed: u64,
    srtt_sum_us: u64,
}

/// Turns one period's map contents into `tcp_link` records. Keeps the
/// closed-connection totals of the previous period, so `link_count` counts
/// the connections open at some time in the period: those open now plus
/// those that closed since.
#[derive(Debug, Default)]
pub struct Aggregator {
    prev: HashMap<LinkKey, Prev>,
}

/// The `tcp_link` fields, in meta order. [`Aggregator::period`] gives all
/// but the last (`service`), which the probe appends
/// ([`super::service`]).
pub const FIELDS: &[&str] = &[
    "pid",
    "process_name",
    "role",
    "client_ip",
    "server_ip",
    "server_port",
    "protocol",
    "link_count",
    "rx_bytes",
    "tx_bytes",
    "packets_in",
    "packets_out",
    "retran_packets",
    "lost_packets",
    "rtt",
    "service",
];

impl Aggregator {
    /// The records of one period, sorted by key. Connections whose process
    /// is not known yet (pid 0) are left out; records with no connection
    /// open in the period are not repeated. `filter_pid` (non-zero) keeps
    /// one process.
    pub fn period(
        &mut self,
        conns: &[(ConnKey, ConnVal)],
        links: &[(LinkKey, LinkVal)],
        filter_pid: u32,
    ) -> Vec<Vec<String>> {
        let mut out: BTreeMap<RecordKey, Sums> = BTreeMap::new();
        let keep = |pid: u32| pid != 0 && (filter_pid == 0 || pid == filter_pid);
        let mut seen = HashMap::with_capacity(links.len());
        for (lk, lv) in links {
            let prev = self.prev.get(lk).copied().unwrap_or_default();
            seen.insert(
                *lk,
                Prev {
                    closed: lv.closed,
                    srtt_sum_us: lv.srtt_sum_us,
                },
            );
            if !keep(lk.pid) {
                continue;
            }
            let s = out.entry(RecordKey::of(lk)).or_default();
            if s.comm.is_empty() {
                s.comm = comm_text(&lv.comm);
            }
            let closed = lv.closed.saturating_sub(prev.closed);
            s.closed_in_period += closed;
            s.rx += lv.rx_bytes;
            s.tx += lv.tx_bytes;
            s.segs_in += lv.segs_in;
            s.segs_out += lv.segs_out;
            s.retrans += lv.retrans;
            s.drops += lv.drops;
            if closed > 0 {
                s.rtt_sum += lv.srtt_sum_us.saturating_sub(prev.srtt_sum_us);
                s.rtt_n += closed;
            }
        }
        self.prev = seen;
        for (ck, cv) in conns {
            if !keep(cv.pid) {
                continue;
            }
            let s = out.entry(RecordKey::of(&LinkKey::of(ck, cv))).or_default();
            if s.comm.is_empty() || cv.pid_src == pid_src::USER {
                s.comm = comm_text(&cv.comm);
            }
            s.open += 1;
            s.rx += cv.rx_bytes;
            s.tx += cv.tx_bytes;
            s.segs_in += u64::from(cv.segs_in);
            s.segs_out += u64::from(cv.segs_out);
            s.retrans += u64::from(cv.retrans);
            s.drops += u64::from(cv.drops);
            if cv.samples > 0 {
                s.rtt_sum += u64::from(cv.srtt_us);
                s.rtt_n += 1;
            }
        }
        out.into_iter()
            .filter(|(_, s)| s.open + s.closed_in_period > 0)
            .map(|(k, s)| {
                vec![
                    k.pid.to_string(),
                    s.comm,
                    (k.role as u8).to_string(),
                    k.client_ip.to_string(),
                    k.server_ip.to_string(),
                    k.server_port.to_string(),
                    k.protocol.to_string(),
                    (s.open + s.closed_in_period).to_string(),
                    s.rx.to_string(),
                    s.tx.to_string(),
                    s.segs_in.to_string(),
                    s.segs_out.to_string(),
                    s.retrans.to_string(),
                    s.drops.to_string(),
                    s.rtt_sum
                        .checked_div(s.rtt_n)
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                ]
            })
            .collect()
    }
}
