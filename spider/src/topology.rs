//! The topology builder: pure and incremental. [`Builder::apply`] folds one
//! record into the live observations in O(1); [`Builder::snapshot`] expires
//! what was not refreshed within the window and brings the graph up to date:
//! only the client observations that changed, or whose servers changed, are
//! matched again, and the published lists ([`Items`]) share every item that
//! did not change with the last snapshot. A snapshot equals a fresh build of
//! the live records (a property test checks it). No I/O, no clock: the
//! caller passes `now`.
//!
//! Rules (docs/compat.md §9, improved):
//! - A node is one service of a host: host + process name + the record's
//!   `service` (its systemd unit, container, listening ports or command
//!   line, as the agent tells; records of older agents have none and fall
//!   back to host + process name). Its id and display name is
//!   `<hostname>.<process_name>`; where several services of one host share
//!   a process name, each gets a suffix from its service ([`service_suffix`]:
//!   `:8080,8081` for ports, `@nginx.service` for a unit, `@<12 hex>` for a
//!   container, `#<6 hex>` (a hash) for a command line), so ids are unique,
//!   and stable for as long as the services of that name on the host are
//!   the same.
//! - A client record (role 1) gives a directed edge client → server. Its
//!   server is the process whose server record (role 0) has the same
//!   (client_ip, server_ip, server_port, protocol); failing that, a process
//!   found serving (server_ip, server_port). Loopback server addresses only
//!   match on the client's own host.
//! - Edge metrics: link_count, tx/rx bytes and rtt are the client's view
//!   (tx = client → server); retran_packets and lost_packets add both sides,
//!   each server record counted once per edge. rtt is the link_count
//!   weighted mean, us.
//! - An edge from a process to itself (a self link) is dropped and counted.
//!   Records naming an excluded address are dropped and counted.
//! - An LB record (nginx_link, ipvs_link, haproxy_link) joins the front half
//!   client → LB node and the back half LB node → server into one flow with
//!   one flow id; the TCP edges under the halves list that id too. A half
//!   whose other end is not found is still given (and the record counted
//!   unresolved).
//! - A dnsmasq_link record gives a DNS edge (kind `dns`) asker → the dnsmasq
//!   process of the record's host. The asker is the process of that host
//!   with the record's pid (or, not seen in tcp_link, a node of its
//!   process_comm) when pid is not 0; else the one process of another host
//!   whose tcp_link client records have the record's client_ip; else the
//!   record is left out and counted (`unresolved_dns`).

use std::collections::{BTreeMap, BTreeSet};

/// Maps of the builder: a fast seeded hasher (keys are short strings and
/// numbers; SipHash was the largest single cost of a build).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::net::IpAddr;
use std::sync::Arc;

use gala_common::topology_records::{
    DnsLink, LbKind, LbLink, MetricRecord, Role, TcpLink, DNSMASQ_LINK, TCP_LINK,
};
use serde::Serialize;

/// Addresses and networks to leave out (`[option] exclude_addr`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrFilter {
    nets: Vec<(IpAddr, u8)>,
}

fn prefix_match(a: IpAddr, net: IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl AddrFilter {
    /// `a.b.c.d`, `::1` or `net/len`; `None` when malformed.
    pub fn parse_one(s: &str) -> Option<(IpAddr, u8)> {
        let s = s.trim();
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, Some(len.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        (len <= max).then_some((ip, len))
    }

    /// The filter of these entries; malformed entries are ignored (config
    /// validation reports them).
    pub fn new(entries: &[String]) -> Self {
        Self {
            nets: entries.iter().filter_map(|e| Self::parse_one(e)).collect(),
        }
    }

    /// Whether nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether the address (as a record writes it) is excluded.
    pub fn contains(&self, addr: &str) -> bool {
        if self.nets.is_empty() {
            return false;
        }
        let Ok(a) = addr.trim().parse::<IpAddr>() else {
            return false;
        };
        self.nets.iter().any(|&(n, l)| prefix_match(a, n, l))
    }
}

/// What [`Builder::apply`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A tcp_link record was folded in.
    TcpLink,
    /// An LB record was folded in.
    Lb,
    /// A dnsmasq_link record was folded in.
    Dns,
    /// A table this service does not use.
    UnusedTable,
    /// A used table with a missing or malformed field.
    BadRecord,
    /// It names an excluded address.
    Excluded,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LbKey {
    host: Box<str>,
    kind: LbKind,
    process_name: Option<Box<str>>,
    client_ip: Box<str>,
    virtual_ip: Box<str>,
    virtual_port: u16,
    local_ip: Option<Box<str>>,
    server_ip: Box<str>,
    server_port: u16,
}

#[derive(Debug, Clone)]
struct LbObs {
    link_count: u64,
    seen_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DnsKey {
    host: Box<str>,
    client_ip: Box<str>,
    virtual_ip: Box<str>,
    domain: Box<str>,
    pid: u32,
    process_comm: Box<str>,
    server_comm: Box<str>,
}

/// The builder's state: live observations, one per reporting series.
/// A process node: one service of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessNode {
    /// Unique in the snapshot: the display name.
    pub id: String,
    /// The process name.
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// Its pids seen in live records, ascending.
    pub pids: Vec<u32>,
    /// `<hostname>.<process_name>`, suffixed from the service where
    /// several services of the host share the process name.
    pub display: String,
    /// The service identity the agent reported (`unit:..`, `container:..`,
    /// `ports:..`, `cmd:..`); empty for records without one.
    pub service: String,
}

/// A directed edge with its metrics: a TCP edge client → server, or a DNS
/// edge asker → dnsmasq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// The client process's id.
    pub source: String,
    /// The server process's id.
    pub target: String,
    /// `tcp` (from tcp_link) or `dns` (from dnsmasq_link).
    pub kind: &'static str,
    /// Connections (client side).
    pub link_count: u64,
    /// Bytes client → server.
    pub tx_bytes: u64,
    /// Bytes server → client.
    pub rx_bytes: u64,
    /// Mean smoothed RTT seen by the client, us.
    pub rtt: u64,
    /// Retransmitted segments, both sides.
    pub retran_packets: u64,
    /// Dropped packets, both sides.
    pub lost_packets: u64,
    /// The server ports used, ascending.
    pub server_ports: Vec<u16>,
    /// The LB flows that pass over this edge, ascending.
    pub flows: Vec<String>,
    /// DNS edges: the names asked, ascending (at most [`MAX_DOMAINS`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
}

/// Names kept per DNS edge.
pub const MAX_DOMAINS: usize = 32;

impl Edge {
    /// A TCP edge source → target with no metrics.
    pub fn tcp(source: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            target: target.into(),
            kind: "tcp",
            link_count: 0,
            tx_bytes: 0,
            rx_bytes: 0,
            rtt: 0,
            retran_packets: 0,
            lost_packets: 0,
            server_ports: Vec::new(),
            flows: Vec::new(),
            domains: Vec::new(),
        }
    }
}

/// One half of an LB flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LbHalf {
    /// The LB table: nginx_link, ipvs_link or haproxy_link.
    pub kind: &'static str,
    /// Shared by the two halves of one flow.
    pub flow_id: String,
    /// `front` (client → LB) or `back` (LB → server).
    pub half: &'static str,
    /// From.
    pub source: String,
    /// To.
    pub target: String,
    /// The LB record's link_count.
    pub link_count: u64,
}

/// Counts of the last derivation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotStats {
    /// Live tcp_link observations.
    pub links: usize,
    /// Live LB observations.
    pub lb_records: usize,
    /// Client observations with no server found.
    pub unmatched_links: usize,
    /// Client observations whose server was the same process (dropped).
    pub self_links: usize,
    /// LB observations whose client or server was not found.
    pub unresolved_lb: usize,
    /// Live dnsmasq_link observations.
    pub dns_records: usize,
    /// dnsmasq_link observations whose asker was not found (remote, and no
    /// single process of another host has that address).
    pub unresolved_dns: usize,
    /// Observations expired by this snapshot.
    pub expired: usize,
}

/// The graph at one time. Every list is sorted, so equal graphs are equal
/// values and serialize identically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// When it was taken, ms.
    pub timestamp_ms: u64,
    /// Host names.
    pub hosts: Vec<String>,
    /// Process nodes, by id.
    pub processes: Items<ProcessNode>,
    /// Edges, by (source, target, kind).
    pub edges: Items<Edge>,
    /// LB flow halves, by (flow_id, half).
    pub lb_flows: Vec<LbHalf>,
    /// Counts.
    pub stats: SnapshotStats,
}

/// A list of a snapshot (its processes, its edges): shared, item by item,
/// with the builder and the other snapshots, so that publishing a graph of
/// which little changed costs little. Reads as a slice (`iter`, `len`,
/// indexing, `&Arc<T>` dereferencing to `T`); made from a `Vec<T>` or an
/// iterator of `T`; serializes as a JSON array of the items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Items<T>(Vec<Arc<T>>);

impl<T> Default for Items<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> std::ops::Deref for Items<T> {
    type Target = [Arc<T>];
    fn deref(&self) -> &[Arc<T>] {
        &self.0
    }
}

impl<'a, T> IntoIterator for &'a Items<T> {
    type Item = &'a Arc<T>;
    type IntoIter = std::slice::Iter<'a, Arc<T>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T> FromIterator<T> for Items<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self(iter.into_iter().map(Arc::new).collect())
    }
}

impl<T> From<Vec<T>> for Items<T> {
    fn from(v: Vec<T>) -> Self {
        v.into_iter().collect()
    }
}

impl<T: PartialEq> PartialEq<[T]> for Items<T> {
    fn eq(&self, other: &[T]) -> bool {
        self.0.len() == other.len() && self.0.iter().zip(other).all(|(a, b)| **a == *b)
    }
}

impl<T: PartialEq> PartialEq<Vec<T>> for Items<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        *self == **other
    }
}

impl<T: PartialEq, const N: usize> PartialEq<[T; N]> for Items<T> {
    fn eq(&self, other: &[T; N]) -> bool {
        *self == other[..]
    }
}

impl<T: Serialize> Serialize for Items<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|a| &**a))
    }
}

/// Replaces in `list` (sorted by `cmp`) the items at the sorted, distinct
/// positions `gone` and inserts `new`, in one pass.
fn patch<T>(
    list: &mut Vec<Arc<T>>,
    gone: &[usize],
    mut new: Vec<Arc<T>>,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) {
    if gone.is_empty() && new.is_empty() {
        return;
    }
    new.sort_unstable_by(|a, b| cmp(a, b));
    let old = std::mem::take(list);
    // Where each new item goes among the old ones.
    let at: Vec<usize> = new
        .iter()
        .map(|n| old.partition_point(|o| cmp(o, n).is_lt()))
        .collect();
    let mut out = Vec::with_capacity(old.len() + new.len() - gone.len());
    let (mut g, mut a) = (0, 0);
    let mut new = new.into_iter();
    for (i, o) in old.into_iter().enumerate() {
        while a < at.len() && at[a] == i {
            out.extend(new.next());
            a += 1;
        }
        if g < gone.len() && gone[g] == i {
            g += 1;
            continue;
        }
        out.push(o);
    }
    out.extend(new);
    *list = out;
}

fn edge_key(e: &Edge) -> (&str, &str, &'static str) {
    (&e.source, &e.target, e.kind)
}

fn node_id(host: &str, name: &str) -> String {
    let mut s = String::with_capacity(host.len() + name.len() + 1);
    s.push_str(host);
    s.push('.');
    s.push_str(name);
    s
}

/// FNV-1a, 32 bits: a stable hash (the same in every build and run).
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The suffix a node's display name gets when other services of its host
/// share its process name: `:8080,8081` (`ports:8080,8081`),
/// `@nginx.service` (`unit:nginx.service`), `@<first 12 hex digits>`
/// (`container:<id>`), otherwise (`cmd:..`, anything else) `#` and six hex
/// digits of a stable hash of the service. Empty for no service.
pub fn service_suffix(service: &str) -> String {
    if service.is_empty() {
        return String::new();
    }
    match service.split_once(':') {
        Some(("ports", p)) if !p.is_empty() => format!(":{p}"),
        Some(("unit", u)) if !u.is_empty() => format!("@{u}"),
        Some(("container", c)) if !c.is_empty() => {
            format!("@{}", c.chars().take(12).collect::<String>())
        }
        _ => format!("#{:06x}", fnv1a(service) & 0x00ff_ffff),
    }
}

fn is_loopback(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// An interned string.
type Id = u32;

/// Strings the live observations name (hosts, addresses, process names,
/// services), each stored once and counted; freed when nothing names it.
#[derive(Debug, Clone)]
struct Interner {
    map: HashMap<Arc<str>, Id>,
    strs: Vec<Arc<str>>,
    refs: Vec<u32>,
    free: Vec<Id>,
    empty: Arc<str>,
}

impl Default for Interner {
    fn default() -> Self {
        Self {
            map: HashMap::default(),
            strs: Vec::new(),
            refs: Vec::new(),
            free: Vec::new(),
            empty: Arc::from(""),
        }
    }
}

impl Interner {
    fn get(&self, s: &str) -> Option<Id> {
        self.map.get(s).copied()
    }

    fn str(&self, id: Id) -> &str {
        &self.strs[id as usize]
    }

    fn acquire(&mut self, s: &str) -> Id {
        if let Some(&id) = self.map.get(s) {
            self.refs[id as usize] += 1;
            return id;
        }
        let a: Arc<str> = Arc::from(s);
        let id = match self.free.pop() {
            Some(id) => {
                self.strs[id as usize] = Arc::clone(&a);
                self.refs[id as usize] = 1;
                id
            }
            None => {
                self.strs.push(Arc::clone(&a));
                self.refs.push(1);
                Id::try_from(self.strs.len() - 1).unwrap_or(Id::MAX)
            }
        };
        self.map.insert(a, id);
        id
    }

    fn retain(&mut self, id: Id) {
        self.refs[id as usize] += 1;
    }

    fn release(&mut self, id: Id) {
        let r = &mut self.refs[id as usize];
        *r -= 1;
        if *r == 0 {
            let s = std::mem::replace(&mut self.strs[id as usize], Arc::clone(&self.empty));
            self.map.remove(&*s);
            self.free.push(id);
        }
    }
}

/// A tcp_link series: (host, pid, role, client_ip, server_ip, server_port,
/// protocol), strings interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LinkKey {
    host: Id,
    cip: Id,
    sip: Id,
    pid: u32,
    port: u16,
    proto: u16,
    role: Role,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Metrics {
    link_count: u64,
    rx_bytes: u64,
    tx_bytes: u64,
    retran_packets: u64,
    lost_packets: u64,
    rtt: u64,
}

/// How a client observation was matched the last time it was derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// Not derived (new, changed, or its servers changed).
    Pending,
    Unmatched,
    SelfLink,
    /// To servers of its exact address (a change of its listening address
    /// that is not one of those cannot change it).
    Matched,
    /// To the processes serving the server address.
    Fallback,
}

/// One live tcp_link observation (a slot; `live` false when free).
#[derive(Debug, Clone)]
struct Link {
    key: LinkKey,
    name: Id,
    service: Id,
    node: u32,
    m: Metrics,
    loopback: bool,
    live: bool,
    /// Client: to be derived again at the next snapshot.
    dirty: bool,
    /// Server: its metrics changed since the last snapshot.
    mdirty: bool,
    state: Match,
    /// Client, matched: (server node, server observation), sorted; what
    /// this observation added to the edges.
    contrib: Vec<(u32, u32)>,
}

/// Observations of one address: servers and clients.
#[derive(Debug, Clone, Default)]
struct Group {
    servers: Vec<u32>,
    clients: Vec<u32>,
    dirty: bool,
}

/// A process node: one service of a host, alive while observations or
/// this snapshot's LB/DNS records name it.
#[derive(Debug, Clone)]
struct Node {
    host: Id,
    name: Id,
    service: Id,
    /// Live observations of this node.
    refs: u32,
    /// Their pids, counted.
    pids: Vec<(u32, u32)>,
    /// Pids only dnsmasq_link records gave, this snapshot.
    extra_pids: Vec<u32>,
    /// An end of an LB half or DNS edge this snapshot.
    used: bool,
    /// In `used_nodes`.
    listed: bool,
    live: bool,
    dirty: bool,
    id: Arc<str>,
    /// The id it is published under.
    out: Option<Arc<str>>,
}

/// A TCP edge's running sums over the client observations matched to it.
#[derive(Debug, Clone, Default)]
struct EdgeAcc {
    clients: u32,
    link_count: u64,
    tx_bytes: u64,
    rx_bytes: u64,
    rtt_weighted: u128,
    rtt_weight: u128,
    retran_packets: u64,
    lost_packets: u64,
    /// Server ports, counted.
    ports: Vec<(u16, u32)>,
    /// Server observations whose retransmits and losses count (once each).
    servers: Vec<(u32, u32)>,
    dirty: bool,
    out: Option<(Arc<str>, Arc<str>)>,
}

impl EdgeAcc {
    /// Adds one client observation's metrics and port (`add`), or takes
    /// them out.
    fn client(&mut self, m: &Metrics, port: u16, add: bool) {
        let f = |a: u64, b: u64| {
            if add {
                a.wrapping_add(b)
            } else {
                a.wrapping_sub(b)
            }
        };
        let g = |a: u128, b: u128| {
            if add {
                a.wrapping_add(b)
            } else {
                a.wrapping_sub(b)
            }
        };
        let w = u128::from(m.link_count.max(1));
        self.link_count = f(self.link_count, m.link_count);
        self.tx_bytes = f(self.tx_bytes, m.tx_bytes);
        self.rx_bytes = f(self.rx_bytes, m.rx_bytes);
        self.rtt_weighted = g(self.rtt_weighted, u128::from(m.rtt) * w);
        self.rtt_weight = g(self.rtt_weight, w);
        self.retran_packets = f(self.retran_packets, m.retran_packets);
        self.lost_packets = f(self.lost_packets, m.lost_packets);
        if add {
            self.clients += 1;
            count_add(&mut self.ports, port);
        } else {
            self.clients -= 1;
            count_sub(&mut self.ports, port);
        }
    }
}

fn count_add<K: PartialEq + Copy>(v: &mut Vec<(K, u32)>, k: K) {
    match v.iter_mut().find(|(x, _)| *x == k) {
        Some((_, c)) => *c += 1,
        None => v.push((k, 1)),
    }
}

fn count_sub<K: PartialEq + Copy>(v: &mut Vec<(K, u32)>, k: K) {
    if let Some(i) = v.iter().position(|(x, _)| *x == k) {
        v[i].1 -= 1;
        if v[i].1 == 0 {
            v.swap_remove(i);
        }
    }
}

fn vec_remove(v: &mut Vec<u32>, x: u32) {
    if let Some(i) = v.iter().position(|&y| y == x) {
        v.swap_remove(i);
    }
}

type ExactKey = (Id, Id, u16, u16);
type EdgeKey = (u32, u32);
type OutKey = (Arc<str>, Arc<str>, &'static str);
/// LB halves: (flow id, half, from, to) -> (table, link_count).
type Halves = BTreeMap<(String, &'static str, u32, u32), (&'static str, u64)>;

/// The builder's state: live observations, one per reporting series, and
/// the graph derived from them, kept up to date by [`Builder::snapshot`]
/// for what changed since the last one.
#[derive(Debug, Clone)]
pub struct Builder {
    expire_ms: u64,
    exclude: AddrFilter,
    lb_tables: Vec<LbKind>,
    dns_on: bool,
    strs: Interner,
    keys: HashMap<LinkKey, u32>,
    links: Vec<Link>,
    /// When each slot of `links` was last refreshed (`u64::MAX` if free).
    seen: Vec<u64>,
    free_links: Vec<u32>,
    /// Freed since the last snapshot (reused after it).
    freed_links: Vec<u32>,
    lbs: HashMap<LbKey, LbObs>,
    dns: HashMap<DnsKey, LbObs>,
    /// (client_ip, server_ip, server_port, protocol).
    exact: HashMap<ExactKey, Vec<u32>>,
    /// (server_ip, server_port).
    listen: HashMap<(Id, u16), Group>,
    /// Client observations by (client_ip, server_ip, server_port).
    clients3: HashMap<(Id, Id, u16), Vec<u32>>,
    /// (host, pid) -> nodes, counted.
    by_pid: HashMap<(Id, u32), Vec<(u32, u32)>>,
    /// client_ip -> nodes of client observations, counted.
    by_cip: HashMap<Id, Vec<(u32, u32)>>,
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    node_index: HashMap<(Id, Id, Id), u32>,
    /// (host, name) -> its nodes.
    groups: HashMap<(Id, Id), Vec<u32>>,
    edges: HashMap<EdgeKey, EdgeAcc>,
    dirty_clients: Vec<u32>,
    dirty_listens: Vec<(Id, u16)>,
    mdirty_servers: Vec<u32>,
    dirty_nodes: Vec<u32>,
    dirty_groups: HashSet<(Id, Id)>,
    dirty_edges: Vec<EdgeKey>,
    /// Nodes that may have nothing left naming them.
    zero_nodes: Vec<u32>,
    /// Nodes LB/DNS records used (or gave pids) in the last snapshot.
    used_nodes: Vec<u32>,
    unmatched: usize,
    self_links: usize,
    /// LB flows over TCP edges, from the last snapshot.
    flows: HashMap<EdgeKey, Vec<String>>,
    /// Published: process nodes by id, hosts (counted), edges by key (the
    /// lists of the last snapshot), the DNS edges' keys.
    pub_procs: Vec<Arc<ProcessNode>>,
    out_hosts: BTreeMap<Arc<str>, u32>,
    pub_hosts: Vec<String>,
    pub_edges: Vec<Arc<Edge>>,
    out_dns: Vec<OutKey>,
    /// Published ids of nodes gone since the last snapshot.
    gone_procs: Vec<Arc<str>>,
    hosts_changed: bool,
}

impl Builder {
    /// A builder expiring observations after `expire_ms`, dropping
    /// `exclude`d addresses and stitching the LB tables in `lb_tables`
    /// (table names; others are unused).
    pub fn new(expire_ms: u64, exclude: AddrFilter, lb_tables: &[String]) -> Self {
        Self {
            expire_ms,
            exclude,
            lb_tables: lb_tables
                .iter()
                .filter_map(|t| LbKind::from_table(t))
                .collect(),
            dns_on: lb_tables.iter().any(|t| t == DNSMASQ_LINK),
            strs: Interner::default(),
            keys: HashMap::default(),
            links: Vec::new(),
            seen: Vec::new(),
            free_links: Vec::new(),
            freed_links: Vec::new(),
            lbs: HashMap::default(),
            dns: HashMap::default(),
            exact: HashMap::default(),
            listen: HashMap::default(),
            clients3: HashMap::default(),
            by_pid: HashMap::default(),
            by_cip: HashMap::default(),
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            node_index: HashMap::default(),
            groups: HashMap::default(),
            edges: HashMap::default(),
            dirty_clients: Vec::new(),
            dirty_listens: Vec::new(),
            mdirty_servers: Vec::new(),
            dirty_nodes: Vec::new(),
            dirty_groups: HashSet::default(),
            dirty_edges: Vec::new(),
            zero_nodes: Vec::new(),
            used_nodes: Vec::new(),
            unmatched: 0,
            self_links: 0,
            flows: HashMap::default(),
            pub_procs: Vec::new(),
            out_hosts: BTreeMap::new(),
            pub_hosts: Vec::new(),
            pub_edges: Vec::new(),
            out_dns: Vec::new(),
            gone_procs: Vec::new(),
            hosts_changed: false,
        }
    }

    /// Live observations (tcp_link, LB and dnsmasq_link).
    pub fn len(&self) -> (usize, usize) {
        (self.keys.len(), self.lbs.len() + self.dns.len())
    }

    /// Whether nothing is live.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.lbs.is_empty() && self.dns.is_empty()
    }

    /// Folds one record in, as seen at `now_ms`.
    pub fn apply(&mut self, rec: &MetricRecord<'_>, now_ms: u64) -> Applied {
        if rec.table_name == TCP_LINK {
            let Ok(t) = TcpLink::from_record(rec) else {
                return Applied::BadRecord;
            };
            if self.exclude.contains(t.client_ip) || self.exclude.contains(t.server_ip) {
                return Applied::Excluded;
            }
            self.apply_link(&t, now_ms);
            return Applied::TcpLink;
        }
        if rec.table_name == DNSMASQ_LINK {
            if !self.dns_on {
                return Applied::UnusedTable;
            }
            let Ok(d) = DnsLink::from_record(rec) else {
                return Applied::BadRecord;
            };
            if self.exclude.contains(d.client_ip) || self.exclude.contains(d.virtual_ip) {
                return Applied::Excluded;
            }
            let key = DnsKey {
                host: d.hostname.into(),
                client_ip: d.client_ip.into(),
                virtual_ip: d.virtual_ip.into(),
                domain: d.domain.into(),
                pid: d.pid,
                process_comm: d.process_comm.into(),
                server_comm: d.server_comm.into(),
            };
            self.dns.insert(
                key,
                LbObs {
                    link_count: d.link_count,
                    seen_ms: now_ms,
                },
            );
            return Applied::Dns;
        }
        let Some(kind) = LbKind::from_table(&rec.table_name).filter(|k| self.lb_tables.contains(k))
        else {
            return Applied::UnusedTable;
        };
        let Some(Ok(l)) = LbLink::from_record(rec) else {
            return Applied::BadRecord;
        };
        if [l.client_ip, l.virtual_ip, l.server_ip]
            .iter()
            .chain(l.local_ip.iter())
            .any(|a| self.exclude.contains(a))
        {
            return Applied::Excluded;
        }
        let key = LbKey {
            host: l.hostname.into(),
            kind,
            process_name: l.process_name.map(Into::into),
            client_ip: l.client_ip.into(),
            virtual_ip: l.virtual_ip.into(),
            virtual_port: l.virtual_port,
            local_ip: l.local_ip.map(Into::into),
            server_ip: l.server_ip.into(),
            server_port: l.server_port,
        };
        self.lbs.insert(
            key,
            LbObs {
                link_count: l.link_count,
                seen_ms: now_ms,
            },
        );
        Applied::Lb
    }

    fn apply_link(&mut self, t: &TcpLink<'_>, now_ms: u64) {
        let m = Metrics {
            link_count: t.link_count,
            rx_bytes: t.rx_bytes,
            tx_bytes: t.tx_bytes,
            retran_packets: t.retran_packets,
            lost_packets: t.lost_packets,
            rtt: t.rtt,
        };
        let service = t.service.unwrap_or("");
        let s = &self.strs;
        let slot = (|| {
            let key = LinkKey {
                host: s.get(t.hostname)?,
                cip: s.get(t.client_ip)?,
                sip: s.get(t.server_ip)?,
                pid: t.pid,
                port: t.server_port,
                proto: t.protocol,
                role: t.role,
            };
            self.keys.get(&key).copied()
        })();
        if let Some(i) = slot {
            let l = &self.links[i as usize];
            let same_node =
                s.get(t.process_name) == Some(l.name) && s.get(service) == Some(l.service);
            if same_node {
                self.seen[i as usize] = now_ms;
                if l.m != m {
                    self.set_metrics(i, m);
                }
                return;
            }
            self.remove_link(i);
        }
        self.insert_link(t, service, m, now_ms);
    }

    fn set_metrics(&mut self, i: u32, m: Metrics) {
        match self.links[i as usize].key.role {
            Role::Client => {
                self.unapply(i);
                self.links[i as usize].m = m;
                self.dirty_client(i);
            }
            Role::Server => {
                let l = &mut self.links[i as usize];
                l.m = m;
                if !l.mdirty {
                    l.mdirty = true;
                    self.mdirty_servers.push(i);
                }
            }
        }
    }

    fn dirty_client(&mut self, i: u32) {
        let l = &mut self.links[i as usize];
        if !l.dirty {
            l.dirty = true;
            self.dirty_clients.push(i);
        }
    }

    /// The clients of a server observation's exact address.
    fn dirty_exact(&mut self, k: LinkKey) {
        if let Some(v) = self.clients3.get(&(k.cip, k.sip, k.port)) {
            for &c in v {
                let l = &mut self.links[c as usize];
                if !l.dirty {
                    l.dirty = true;
                    self.dirty_clients.push(c);
                }
            }
        }
    }

    fn dirty_listen(&mut self, k: (Id, u16)) {
        if let Some(g) = self.listen.get_mut(&k) {
            if !g.dirty {
                g.dirty = true;
                self.dirty_listens.push(k);
            }
        }
    }

    fn dirty_edge(edges: &mut HashMap<EdgeKey, EdgeAcc>, dirty: &mut Vec<EdgeKey>, k: EdgeKey) {
        if let Some(e) = edges.get_mut(&k) {
            if !e.dirty {
                e.dirty = true;
                dirty.push(k);
            }
        }
    }

    fn dirty_node(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        if !node.dirty {
            node.dirty = true;
            self.dirty_nodes.push(n);
        }
    }

    fn insert_link(&mut self, t: &TcpLink<'_>, service: &str, m: Metrics, now_ms: u64) {
        let key = LinkKey {
            host: self.strs.acquire(t.hostname),
            cip: self.strs.acquire(t.client_ip),
            sip: self.strs.acquire(t.server_ip),
            pid: t.pid,
            port: t.server_port,
            proto: t.protocol,
            role: t.role,
        };
        let name = self.strs.acquire(t.process_name);
        let service = self.strs.acquire(service);
        let node = self.node_acquire(key.host, name, service);
        let nd = &mut self.nodes[node as usize];
        count_add(&mut nd.pids, key.pid);
        let link = Link {
            key,
            name,
            service,
            node,
            m,
            loopback: is_loopback(t.server_ip),
            live: true,
            dirty: false,
            mdirty: false,
            state: Match::Pending,
            contrib: Vec::new(),
        };
        let i = match self.free_links.pop() {
            Some(i) => {
                self.links[i as usize] = link;
                self.seen[i as usize] = now_ms;
                i
            }
            None => {
                self.links.push(link);
                self.seen.push(now_ms);
                u32::try_from(self.links.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.keys.insert(key, i);
        count_add(self.by_pid.entry((key.host, key.pid)).or_default(), node);
        let ek = (key.cip, key.sip, key.port, key.proto);
        let lk = (key.sip, key.port);
        match key.role {
            Role::Server => {
                self.exact.entry(ek).or_default().push(i);
                self.listen.entry(lk).or_default().servers.push(i);
                self.dirty_listen(lk);
                self.dirty_exact(key);
            }
            Role::Client => {
                self.listen.entry(lk).or_default().clients.push(i);
                self.clients3
                    .entry((key.cip, key.sip, key.port))
                    .or_default()
                    .push(i);
                count_add(self.by_cip.entry(key.cip).or_default(), node);
                self.dirty_client(i);
            }
        }
    }

    fn remove_link(&mut self, i: u32) {
        let key = self.links[i as usize].key;
        let node = self.links[i as usize].node;
        let ek = (key.cip, key.sip, key.port, key.proto);
        let lk = (key.sip, key.port);
        match key.role {
            Role::Server => {
                if let Some(v) = self.exact.get_mut(&ek) {
                    vec_remove(v, i);
                    if v.is_empty() {
                        self.exact.remove(&ek);
                    }
                }
                if let Some(g) = self.listen.get_mut(&lk) {
                    vec_remove(&mut g.servers, i);
                }
                self.dirty_listen(lk);
                self.dirty_exact(key);
            }
            Role::Client => {
                self.unapply(i);
                if let Some(g) = self.listen.get_mut(&lk) {
                    vec_remove(&mut g.clients, i);
                }
                let ck = (key.cip, key.sip, key.port);
                if let Some(v) = self.clients3.get_mut(&ck) {
                    vec_remove(v, i);
                    if v.is_empty() {
                        self.clients3.remove(&ck);
                    }
                }
                if let Some(v) = self.by_cip.get_mut(&key.cip) {
                    count_sub(v, node);
                    if v.is_empty() {
                        self.by_cip.remove(&key.cip);
                    }
                }
            }
        }
        if self
            .listen
            .get(&lk)
            .is_some_and(|g| g.servers.is_empty() && g.clients.is_empty() && !g.dirty)
        {
            self.listen.remove(&lk);
        }
        if let Some(v) = self.by_pid.get_mut(&(key.host, key.pid)) {
            count_sub(v, node);
            if v.is_empty() {
                self.by_pid.remove(&(key.host, key.pid));
            }
        }
        let nd = &mut self.nodes[node as usize];
        count_sub(&mut nd.pids, key.pid);
        nd.refs -= 1;
        if nd.refs == 0 {
            self.zero_nodes.push(node);
        }
        self.dirty_node(node);
        self.keys.remove(&key);
        let l = &mut self.links[i as usize];
        l.live = false;
        l.contrib = Vec::new();
        let (name, service) = (l.name, l.service);
        self.seen[i as usize] = u64::MAX;
        for id in [key.host, key.cip, key.sip, name, service] {
            self.strs.release(id);
        }
        self.freed_links.push(i);
    }

    /// The node (host, name, service), counted once more.
    fn node_acquire(&mut self, host: Id, name: Id, service: Id) -> u32 {
        let n = match self.node_index.get(&(host, name, service)) {
            Some(&n) => n,
            None => self.node_new(host, name, service),
        };
        self.nodes[n as usize].refs += 1;
        self.dirty_node(n);
        n
    }

    fn node_new(&mut self, host: Id, name: Id, service: Id) -> u32 {
        for id in [host, name, service] {
            self.strs.retain(id);
        }
        let node = Node {
            host,
            name,
            service,
            refs: 0,
            pids: Vec::new(),
            extra_pids: Vec::new(),
            used: false,
            listed: false,
            live: true,
            dirty: false,
            id: Arc::clone(&self.strs.empty),
            out: None,
        };
        let n = match self.free_nodes.pop() {
            Some(n) => {
                self.nodes[n as usize] = node;
                n
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.node_index.insert((host, name, service), n);
        self.groups.entry((host, name)).or_default().push(n);
        self.dirty_groups.insert((host, name));
        self.dirty_node(n);
        n
    }

    fn node_remove(&mut self, n: u32) {
        let nd = &mut self.nodes[n as usize];
        nd.live = false;
        let (host, name, service) = (nd.host, nd.name, nd.service);
        if let Some(out) = nd.out.take() {
            self.gone_procs.push(out);
        }
        self.node_index.remove(&(host, name, service));
        if let Some(g) = self.groups.get_mut(&(host, name)) {
            vec_remove(g, n);
            if g.is_empty() {
                self.groups.remove(&(host, name));
            }
        }
        self.dirty_groups.insert((host, name));
        for id in [host, name, service] {
            self.strs.release(id);
        }
        self.free_nodes.push(n);
    }

    /// Takes a client observation's part out of its edges.
    fn unapply(&mut self, i: u32) {
        let l = &mut self.links[i as usize];
        match l.state {
            Match::Unmatched => self.unmatched -= 1,
            Match::SelfLink => self.self_links -= 1,
            Match::Pending | Match::Matched | Match::Fallback => {}
        }
        l.state = Match::Pending;
        if l.contrib.is_empty() {
            return;
        }
        let contrib = std::mem::take(&mut l.contrib);
        let (src, m, port) = (l.node, l.m, l.key.port);
        let mut last = u32::MAX;
        for &(dst, s) in &contrib {
            let Some(e) = self.edges.get_mut(&(src, dst)) else {
                continue;
            };
            if dst != last {
                last = dst;
                e.client(&m, port, false);
            }
            count_sub(&mut e.servers, s);
            if !e.dirty {
                e.dirty = true;
                self.dirty_edges.push((src, dst));
            }
        }
        self.links[i as usize].contrib = contrib;
        self.links[i as usize].contrib.clear();
    }

    /// Order of server observations of one node on one address: the
    /// fallback match counts the first.
    fn rep_order(&self, s: u32) -> (&str, u32, u16) {
        let k = &self.links[s as usize].key;
        (self.strs.str(k.cip), k.pid, k.proto)
    }

    /// Matches a client observation to its servers and adds its part to
    /// the edges.
    fn derive(&mut self, i: u32, targets: &mut Vec<(u32, u32)>) {
        let l = &self.links[i as usize];
        let key = l.key;
        let src = l.node;
        let loopback = l.loopback;
        let links = &self.links;
        let usable = |s: u32| !loopback || links[s as usize].key.host == key.host;
        targets.clear();
        if let Some(v) = self.exact.get(&(key.cip, key.sip, key.port, key.proto)) {
            targets.extend(
                v.iter()
                    .filter(|&&s| usable(s))
                    .map(|&s| (links[s as usize].node, s)),
            );
        }
        let exact = !targets.is_empty();
        if !exact {
            if let Some(g) = self.listen.get(&(key.sip, key.port)) {
                for &s in g.servers.iter().filter(|&&s| usable(s)) {
                    let n = links[s as usize].node;
                    match targets.iter_mut().find(|(d, _)| *d == n) {
                        Some(t) => {
                            if self.rep_order(s) < self.rep_order(t.1) {
                                t.1 = s;
                            }
                        }
                        None => targets.push((n, s)),
                    }
                }
            }
        }
        let state = if targets.is_empty() {
            Match::Unmatched
        } else {
            targets.retain(|&(d, _)| d != src);
            if targets.is_empty() {
                Match::SelfLink
            } else if exact {
                Match::Matched
            } else {
                Match::Fallback
            }
        };
        match state {
            Match::Unmatched => self.unmatched += 1,
            Match::SelfLink => self.self_links += 1,
            Match::Pending | Match::Matched | Match::Fallback => {}
        }
        self.links[i as usize].state = state;
        if !matches!(state, Match::Matched | Match::Fallback) {
            return;
        }
        targets.sort_unstable();
        targets.dedup();
        let l = &self.links[i as usize];
        let (m, port) = (l.m, l.key.port);
        let mut last = u32::MAX;
        for &(dst, s) in targets.iter() {
            let e = self.edges.entry((src, dst)).or_default();
            if dst != last {
                last = dst;
                e.client(&m, port, true);
            }
            count_add(&mut e.servers, s);
            if !e.dirty {
                e.dirty = true;
                self.dirty_edges.push((src, dst));
            }
        }
        let c = &mut self.links[i as usize].contrib;
        c.clear();
        c.extend_from_slice(targets);
    }

    /// Drops observations not refreshed since `now_ms - expire`; returns how
    /// many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let cutoff = now_ms.saturating_sub(self.expire_ms);
        let old: Vec<u32> = self
            .seen
            .iter()
            .enumerate()
            .filter(|&(_, &s)| s < cutoff)
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect();
        for &i in &old {
            self.remove_link(i);
        }
        let before = self.lbs.len() + self.dns.len();
        self.lbs.retain(|_, o| o.seen_ms >= cutoff);
        self.dns.retain(|_, o| o.seen_ms >= cutoff);
        old.len() + before - self.lbs.len() - self.dns.len()
    }

    /// A node of this name on the host: the one there is, or of several
    /// the first by service (a stable choice); a new node without a
    /// service when there is none (it lives until the next snapshot).
    fn by_name(&mut self, host: &str, name: &str) -> u32 {
        let found = (|| {
            let g = self
                .groups
                .get(&(self.strs.get(host)?, self.strs.get(name)?))?;
            g.iter()
                .copied()
                .min_by_key(|&n| self.strs.str(self.nodes[n as usize].service))
        })();
        if let Some(n) = found {
            return n;
        }
        let (h, nm, sv) = (
            self.strs.acquire(host),
            self.strs.acquire(name),
            self.strs.acquire(""),
        );
        let n = self.node_new(h, nm, sv);
        for id in [h, nm, sv] {
            self.strs.release(id);
        }
        self.zero_nodes.push(n);
        n
    }

    fn use_node(&mut self, n: u32) {
        self.nodes[n as usize].used = true;
        self.list_node(n);
    }

    /// Marks a node LB/DNS records touched this snapshot.
    fn list_node(&mut self, n: u32) {
        let nd = &mut self.nodes[n as usize];
        if !nd.listed {
            nd.listed = true;
            self.used_nodes.push(n);
            self.dirty_node(n);
        }
    }

    /// Expires, then derives the graph of what is live at `now_ms`: what
    /// changed since the last snapshot is derived again, the rest is kept.
    pub fn snapshot(&mut self, now_ms: u64) -> Topology {
        let expired = self.expire(now_ms);
        for i in std::mem::take(&mut self.freed_links) {
            self.free_links.push(i);
        }

        // Clients whose servers changed; edges over servers whose metrics
        // changed.
        for lk in std::mem::take(&mut self.dirty_listens) {
            let Some(g) = self.listen.get_mut(&lk) else {
                continue;
            };
            g.dirty = false;
            let clients = std::mem::take(&mut g.clients);
            for &c in &clients {
                if self.links[c as usize].state != Match::Matched {
                    self.dirty_client(c);
                }
            }
            let g = self.listen.get_mut(&lk).expect("listen group");
            g.clients = clients;
            if g.servers.is_empty() && g.clients.is_empty() {
                self.listen.remove(&lk);
            }
        }
        let mdirty = std::mem::take(&mut self.mdirty_servers);
        for &s in &mdirty {
            let l = &self.links[s as usize];
            if !l.live || !l.mdirty {
                continue;
            }
            let lk = (l.key.sip, l.key.port);
            let Some(g) = self.listen.get(&lk) else {
                continue;
            };
            for &c in &g.clients {
                let cl = &self.links[c as usize];
                if cl.dirty {
                    continue;
                }
                for &(dst, sv) in &cl.contrib {
                    if self.links[sv as usize].mdirty {
                        Self::dirty_edge(&mut self.edges, &mut self.dirty_edges, (cl.node, dst));
                    }
                }
            }
            // The group's other servers are handled by this pass too.
            for &o in &g.servers {
                self.links[o as usize].mdirty = false;
            }
        }
        for s in mdirty {
            self.links[s as usize].mdirty = false;
        }

        // Derive changed clients again.
        let mut targets = Vec::new();
        for c in std::mem::take(&mut self.dirty_clients) {
            let l = &mut self.links[c as usize];
            if !l.live {
                continue;
            }
            l.dirty = false;
            self.unapply(c);
            self.derive(c, &mut targets);
        }

        // Nodes: last snapshot's LB/DNS uses end; nodes nothing names go.
        for n in std::mem::take(&mut self.used_nodes) {
            let nd = &mut self.nodes[n as usize];
            if nd.live {
                nd.used = false;
                nd.listed = false;
                nd.extra_pids.clear();
                let zero = nd.refs == 0;
                self.dirty_node(n);
                if zero {
                    self.zero_nodes.push(n);
                }
            }
        }
        for n in std::mem::take(&mut self.zero_nodes) {
            let nd = &self.nodes[n as usize];
            if nd.live && nd.refs == 0 {
                self.node_remove(n);
            }
        }

        let mut stats = SnapshotStats {
            links: self.keys.len(),
            lb_records: self.lbs.len(),
            dns_records: self.dns.len(),
            expired,
            ..SnapshotStats::default()
        };
        let (lb_flows_raw, flows) = self.lb_flows(&mut stats);
        let dns_edges = self.dns_edges(&mut stats);
        stats.unmatched_links = self.unmatched;
        stats.self_links += self.self_links;

        // Flows changed on these edges.
        let old_flows = std::mem::replace(&mut self.flows, flows);
        for (k, v) in &old_flows {
            if self.flows.get(k) != Some(v) {
                Self::dirty_edge(&mut self.edges, &mut self.dirty_edges, *k);
            }
        }
        for (k, v) in &self.flows {
            if old_flows.get(k) != Some(v) {
                Self::dirty_edge(&mut self.edges, &mut self.dirty_edges, *k);
            }
        }

        // Nodes that go now (an LB node of an unresolved flow).
        for n in std::mem::take(&mut self.zero_nodes) {
            let nd = &self.nodes[n as usize];
            if nd.live && nd.refs == 0 && !nd.used && nd.extra_pids.is_empty() {
                self.node_remove(n);
            }
        }

        self.name_groups();
        self.publish_nodes();
        self.publish_edges(dns_edges);

        let id = |n: u32| self.nodes[n as usize].id.to_string();
        let mut lb_flows: Vec<LbHalf> = lb_flows_raw
            .into_iter()
            .map(|((flow_id, half, s, t), (kind, link_count))| LbHalf {
                kind,
                flow_id,
                half,
                source: id(s),
                target: id(t),
                link_count,
            })
            .collect();
        lb_flows.sort_unstable_by(|a, b| {
            (&a.flow_id, a.half, &a.source, &a.target)
                .cmp(&(&b.flow_id, b.half, &b.source, &b.target))
        });
        Topology {
            timestamp_ms: now_ms,
            hosts: self.pub_hosts.clone(),
            processes: Items(self.pub_procs.clone()),
            edges: Items(self.pub_edges.clone()),
            lb_flows,
            stats,
        }
    }

    /// The LB halves of every live LB record, and the flows over each TCP
    /// edge.
    fn lb_flows(&mut self, stats: &mut SnapshotStats) -> (Halves, HashMap<EdgeKey, Vec<String>>) {
        let mut halves = Halves::new();
        let mut flows: HashMap<EdgeKey, BTreeSet<String>> = HashMap::default();
        let lbs: Vec<(LbKey, u64)> = self
            .lbs
            .iter()
            .map(|(k, o)| (k.clone(), o.link_count))
            .collect();
        for (k, link_count) in lbs {
            // The LB process: the one of the host serving the virtual
            // address (of the record's process name, when it has one),
            // else a process of that name on the host.
            let name = k
                .process_name
                .as_deref()
                .unwrap_or(k.kind.default_process());
            let host = self.strs.get(&k.host);
            let serving = self.listen_of(&k.virtual_ip, k.virtual_port).and_then(|g| {
                g.servers
                    .iter()
                    .map(|&s| &self.links[s as usize])
                    .filter(|l| {
                        Some(l.key.host) == host
                            && (k.process_name.is_none() || self.strs.str(l.name) == name)
                    })
                    .map(|l| l.node)
                    .min_by_key(|&n| {
                        let nd = &self.nodes[n as usize];
                        (self.strs.str(nd.name), self.strs.str(nd.service))
                    })
            });
            let lb_node = match serving {
                Some(n) => n,
                None => self.by_name(&k.host, name),
            };
            let mut fronts: Vec<u32> = self
                .strs
                .get(&k.client_ip)
                .zip(self.strs.get(&k.virtual_ip))
                .and_then(|(c, v)| self.clients3.get(&(c, v, k.virtual_port)))
                .map(|v| v.iter().map(|&i| self.links[i as usize].node).collect())
                .unwrap_or_default();
            let mut backs: Vec<u32> = self
                .listen_of(&k.server_ip, k.server_port)
                .map(|g| {
                    g.servers
                        .iter()
                        .map(|&i| self.links[i as usize].node)
                        .collect()
                })
                .unwrap_or_default();
            for e in [&mut fronts, &mut backs] {
                e.retain(|&n| n != lb_node);
                e.sort_unstable();
                e.dedup();
            }
            // A half is given even when the other one is not found: in a
            // consumer group each spider has the records of one half only
            // (docs/spider.md).
            if fronts.is_empty() || backs.is_empty() {
                stats.unresolved_lb += 1;
                if fronts.is_empty() && backs.is_empty() {
                    continue;
                }
            }
            let flow_id = format!(
                "{}:{}:{}>{}:{}>{}:{}",
                k.kind.table(),
                k.host,
                k.client_ip,
                k.virtual_ip,
                k.virtual_port,
                k.server_ip,
                k.server_port
            );
            let table = k.kind.table();
            let pairs = fronts
                .iter()
                .map(|&f| ("front", f, lb_node))
                .chain(backs.iter().map(|&b| ("back", lb_node, b)));
            for (half, a, b) in pairs {
                self.use_node(a);
                self.use_node(b);
                halves
                    .entry((flow_id.clone(), half, a, b))
                    .or_insert((table, 0))
                    .1 += link_count;
                if self.edges.get(&(a, b)).is_some_and(|e| e.clients > 0) {
                    flows.entry((a, b)).or_default().insert(flow_id.clone());
                }
            }
        }
        let flows = flows
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect();
        (halves, flows)
    }

    fn listen_of(&self, ip: &str, port: u16) -> Option<&Group> {
        self.listen.get(&(self.strs.get(ip)?, port))
    }

    /// DNS edges: asker -> the dnsmasq process of the record's host.
    fn dns_edges(&mut self, stats: &mut SnapshotStats) -> BTreeMap<EdgeKey, (u64, Vec<String>)> {
        let mut dns_edges: BTreeMap<EdgeKey, (u64, BTreeSet<String>)> = BTreeMap::new();
        let dns: Vec<(DnsKey, u64)> = self
            .dns
            .iter()
            .map(|(k, o)| (k.clone(), o.link_count))
            .collect();
        for (k, link_count) in dns {
            let host = self.strs.get(&k.host);
            let asker = if k.pid != 0 {
                let seen = host
                    .and_then(|h| self.by_pid.get(&(h, k.pid)))
                    .and_then(|v| {
                        v.iter().map(|&(n, _)| n).min_by_key(|&n| {
                            let nd = &self.nodes[n as usize];
                            (self.strs.str(nd.name), self.strs.str(nd.service))
                        })
                    });
                match seen {
                    Some(n) => Some(n),
                    None if !k.process_comm.is_empty() => {
                        let n = self.by_name(&k.host, &k.process_comm);
                        self.nodes[n as usize].extra_pids.push(k.pid);
                        self.list_node(n);
                        Some(n)
                    }
                    None => None,
                }
            } else {
                self.strs
                    .get(&k.client_ip)
                    .and_then(|c| self.by_cip.get(&c))
                    .map(|v| {
                        v.iter()
                            .map(|&(n, _)| n)
                            .filter(|&n| Some(self.nodes[n as usize].host) != host)
                            .collect::<Vec<_>>()
                    })
                    .filter(|v| v.len() == 1)
                    .map(|v| v[0])
            };
            let Some(asker) = asker else {
                stats.unresolved_dns += 1;
                continue;
            };
            let server = self.by_name(&k.host, &k.server_comm);
            if server == asker {
                stats.self_links += 1;
                continue;
            }
            self.use_node(asker);
            self.use_node(server);
            let e = dns_edges.entry((asker, server)).or_default();
            e.0 += link_count;
            if !k.domain.is_empty() && e.1.len() < MAX_DOMAINS {
                e.1.insert(k.domain.to_string());
            }
        }
        dns_edges
            .into_iter()
            .map(|(k, (n, d))| (k, (n, d.into_iter().collect())))
            .collect()
    }

    /// Gives the nodes of changed (host, name) groups their ids:
    /// `<host>.<name>`, plus the suffix of its service where the host has
    /// several services of that name (a node without a service keeps the
    /// bare name), plus `#2`, `#3`.. (by service) where suffixes still
    /// collide. Edges of renamed nodes are published again.
    fn name_groups(&mut self) {
        let mut renamed: HashSet<u32> = HashSet::default();
        for (host, name) in std::mem::take(&mut self.dirty_groups) {
            let Some(group) = self.groups.get(&(host, name)) else {
                continue;
            };
            let base = node_id(self.strs.str(host), self.strs.str(name));
            let mut ids: Vec<(u32, String)> = Vec::with_capacity(group.len());
            if group.len() == 1 {
                ids.push((group[0], base));
            } else {
                let mut g = group.clone();
                g.sort_unstable_by_key(|&n| self.strs.str(self.nodes[n as usize].service));
                let mut taken: HashMap<String, u32> = HashMap::default();
                for n in g {
                    let mut id = base.clone();
                    id.push_str(&service_suffix(
                        self.strs.str(self.nodes[n as usize].service),
                    ));
                    let k = taken.entry(id.clone()).or_insert(0);
                    *k += 1;
                    if *k > 1 {
                        id.push_str(&format!("#{k}"));
                    }
                    ids.push((n, id));
                }
            }
            for (n, id) in ids {
                if *self.nodes[n as usize].id != *id {
                    self.nodes[n as usize].id = Arc::from(id);
                    renamed.insert(n);
                    self.dirty_node(n);
                }
            }
        }
        if renamed.is_empty() {
            return;
        }
        let keys: Vec<EdgeKey> = self
            .edges
            .keys()
            .filter(|(s, t)| renamed.contains(s) || renamed.contains(t))
            .copied()
            .collect();
        for k in keys {
            Self::dirty_edge(&mut self.edges, &mut self.dirty_edges, k);
        }
    }

    /// Counts a published process of `host` (`d` = 1) or one gone (-1).
    fn count_host(&mut self, host: &str, up: bool) {
        if up {
            match self.out_hosts.get_mut(host) {
                Some(c) => *c += 1,
                None => {
                    self.out_hosts.insert(Arc::from(host), 1);
                    self.hosts_changed = true;
                }
            }
        } else if let Some(c) = self.out_hosts.get_mut(host) {
            *c -= 1;
            if *c == 0 {
                self.out_hosts.remove(host);
                self.hosts_changed = true;
            }
        }
    }

    fn publish_nodes(&mut self) {
        let dirty = std::mem::take(&mut self.dirty_nodes);
        // Out first: an id may move from one node to another.
        let mut gone = std::mem::take(&mut self.gone_procs);
        for &n in &dirty {
            let nd = &mut self.nodes[n as usize];
            nd.dirty = false;
            if !nd.live {
                continue;
            }
            if let Some(out) = nd.out.take() {
                gone.push(out);
            }
        }
        let mut at: Vec<usize> = Vec::with_capacity(gone.len());
        for id in &gone {
            if let Ok(i) = self.pub_procs.binary_search_by(|p| p.id.as_str().cmp(id)) {
                at.push(i);
            }
        }
        at.sort_unstable();
        at.dedup();
        for &i in &at {
            let host = Arc::clone(&self.pub_procs[i]);
            self.count_host(&host.host, false);
        }
        let mut new = Vec::new();
        for &n in &dirty {
            let nd = &self.nodes[n as usize];
            if !nd.live
                || nd.out.is_some()
                || (nd.refs == 0 && !nd.used && nd.extra_pids.is_empty())
            {
                continue;
            }
            let mut pids: Vec<u32> = nd
                .pids
                .iter()
                .map(|&(p, _)| p)
                .chain(nd.extra_pids.iter().copied())
                .collect();
            pids.sort_unstable();
            pids.dedup();
            let id = Arc::clone(&nd.id);
            let p = ProcessNode {
                id: id.to_string(),
                name: self.strs.str(nd.name).to_owned(),
                host: self.strs.str(nd.host).to_owned(),
                pids,
                display: id.to_string(),
                service: self.strs.str(nd.service).to_owned(),
            };
            self.count_host(&p.host, true);
            new.push(Arc::new(p));
            self.nodes[n as usize].out = Some(id);
        }
        patch(&mut self.pub_procs, &at, new, |a, b| a.id.cmp(&b.id));
        if std::mem::take(&mut self.hosts_changed) {
            self.pub_hosts = self.out_hosts.keys().map(|h| h.to_string()).collect();
        }
    }

    /// Publishes the changed TCP edges and this snapshot's DNS edges.
    fn publish_edges(&mut self, dns_edges: BTreeMap<EdgeKey, (u64, Vec<String>)>) {
        let dirty = std::mem::take(&mut self.dirty_edges);
        let mut gone = std::mem::take(&mut self.out_dns);
        for k in &dirty {
            if let Some(e) = self.edges.get_mut(k) {
                e.dirty = false;
                if let Some((s, t)) = e.out.take() {
                    gone.push((s, t, "tcp"));
                }
            }
        }
        let mut at: Vec<usize> = gone
            .iter()
            .filter_map(|(s, t, k)| {
                self.pub_edges
                    .binary_search_by(|e| edge_key(e).cmp(&(s, t, k)))
                    .ok()
            })
            .collect();
        at.sort_unstable();
        at.dedup();
        let mut new = Vec::with_capacity(dirty.len() + dns_edges.len());
        for k in dirty {
            let Some(e) = self.edges.get(&k) else {
                continue;
            };
            if e.clients == 0 {
                self.edges.remove(&k);
                continue;
            }
            let (s, t) = (
                Arc::clone(&self.nodes[k.0 as usize].id),
                Arc::clone(&self.nodes[k.1 as usize].id),
            );
            let (mut retran, mut lost) = (e.retran_packets, e.lost_packets);
            for &(sv, _) in &e.servers {
                let m = &self.links[sv as usize].m;
                retran = retran.wrapping_add(m.retran_packets);
                lost = lost.wrapping_add(m.lost_packets);
            }
            let mut ports: Vec<u16> = e.ports.iter().map(|&(p, _)| p).collect();
            ports.sort_unstable();
            new.push(Arc::new(Edge {
                link_count: e.link_count,
                tx_bytes: e.tx_bytes,
                rx_bytes: e.rx_bytes,
                rtt: u64::try_from(e.rtt_weighted / e.rtt_weight.max(1)).unwrap_or(u64::MAX),
                retran_packets: retran,
                lost_packets: lost,
                server_ports: ports,
                flows: self.flows.get(&k).cloned().unwrap_or_default(),
                ..Edge::tcp(&*s, &*t)
            }));
            if let Some(e) = self.edges.get_mut(&k) {
                e.out = Some((s, t));
            }
        }
        // DNS edges, all derived again (few).
        for ((s, t), (link_count, domains)) in dns_edges {
            let (si, ti) = (
                Arc::clone(&self.nodes[s as usize].id),
                Arc::clone(&self.nodes[t as usize].id),
            );
            new.push(Arc::new(Edge {
                kind: "dns",
                link_count,
                domains,
                ..Edge::tcp(&*si, &*ti)
            }));
            self.out_dns.push((si, ti, "dns"));
        }
        patch(&mut self.pub_edges, &at, new, |a, b| {
            edge_key(a).cmp(&edge_key(b))
        });
    }
}

#[cfg(test)]
mod tests;
