//! The topology builder: pure and incremental. [`Builder::apply`] folds one
//! record into the live observations in O(1); [`Builder::snapshot`] expires
//! what was not refreshed within the window and derives the graph from what
//! is left, in O(observations). No I/O, no clock: the caller passes `now`.
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
struct LinkKey {
    host: Box<str>,
    pid: u32,
    role: Role,
    client_ip: Box<str>,
    server_ip: Box<str>,
    server_port: u16,
    protocol: u16,
}

#[derive(Debug, Clone)]
struct LinkObs {
    process_name: Box<str>,
    /// The record's service ("" when it has none).
    service: Box<str>,
    link_count: u64,
    rx_bytes: u64,
    tx_bytes: u64,
    retran_packets: u64,
    lost_packets: u64,
    rtt: u64,
    seen_ms: u64,
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
#[derive(Debug, Clone)]
pub struct Builder {
    expire_ms: u64,
    exclude: AddrFilter,
    lb_tables: Vec<LbKind>,
    dns_on: bool,
    links: HashMap<LinkKey, LinkObs>,
    lbs: HashMap<LbKey, LbObs>,
    dns: HashMap<DnsKey, LbObs>,
}

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
    pub processes: Vec<ProcessNode>,
    /// Edges, by (source, target, kind).
    pub edges: Vec<Edge>,
    /// LB flow halves, by (flow_id, half).
    pub lb_flows: Vec<LbHalf>,
    /// Counts.
    pub stats: SnapshotStats,
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

#[derive(Default)]
struct EdgeAcc {
    link_count: u64,
    tx_bytes: u64,
    rx_bytes: u64,
    rtt_weighted: u128,
    rtt_weight: u128,
    retran_packets: u64,
    lost_packets: u64,
    server_ports: BTreeSet<u16>,
    flows: BTreeSet<String>,
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
            links: HashMap::default(),
            lbs: HashMap::default(),
            dns: HashMap::default(),
        }
    }

    /// Live observations (tcp_link, LB and dnsmasq_link).
    pub fn len(&self) -> (usize, usize) {
        (self.links.len(), self.lbs.len() + self.dns.len())
    }

    /// Whether nothing is live.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.lbs.is_empty() && self.dns.is_empty()
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
            let key = LinkKey {
                host: t.hostname.into(),
                pid: t.pid,
                role: t.role,
                client_ip: t.client_ip.into(),
                server_ip: t.server_ip.into(),
                server_port: t.server_port,
                protocol: t.protocol,
            };
            let obs = LinkObs {
                process_name: t.process_name.into(),
                service: t.service.unwrap_or("").into(),
                link_count: t.link_count,
                rx_bytes: t.rx_bytes,
                tx_bytes: t.tx_bytes,
                retran_packets: t.retran_packets,
                lost_packets: t.lost_packets,
                rtt: t.rtt,
                seen_ms: now_ms,
            };
            self.links.insert(key, obs);
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

    /// Drops observations not refreshed since `now_ms - expire`; returns how
    /// many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let cutoff = now_ms.saturating_sub(self.expire_ms);
        let before = self.links.len() + self.lbs.len() + self.dns.len();
        self.links.retain(|_, o| o.seen_ms >= cutoff);
        self.lbs.retain(|_, o| o.seen_ms >= cutoff);
        self.dns.retain(|_, o| o.seen_ms >= cutoff);
        before - self.links.len() - self.lbs.len() - self.dns.len()
    }

    /// Expires, then derives the graph of what is live at `now_ms`.
    pub fn snapshot(&mut self, now_ms: u64) -> Topology {
        let expired = self.expire(now_ms);
        let mut stats = SnapshotStats {
            links: self.links.len(),
            lb_records: self.lbs.len(),
            dns_records: self.dns.len(),
            expired,
            ..SnapshotStats::default()
        };

        // Observations and their process nodes, by index.
        let mut nodes = Nodes::default();
        let obs: Vec<(&LinkKey, &LinkObs, usize)> = self
            .links
            .iter()
            .map(|(k, o)| {
                let n = nodes.intern(&k.host, &o.process_name, &o.service);
                nodes.pids[n].push(k.pid);
                (k, o, n)
            })
            .collect();

        // Server indexes: exact 4-tuple, and (server_ip, server_port) with
        // one entry per node. Client index for LB fronts.
        type Exact<'a> = (&'a str, &'a str, u16, u16);
        let mut exact: HashMap<Exact<'_>, Vec<usize>> = HashMap::default();
        let mut listen: HashMap<(&str, u16), Vec<usize>> = HashMap::default();
        let mut clients: HashMap<(&str, &str, u16), Vec<usize>> = HashMap::default();
        for (i, (k, _, n)) in obs.iter().enumerate() {
            match k.role {
                Role::Server => {
                    exact
                        .entry((&k.client_ip, &k.server_ip, k.server_port, k.protocol))
                        .or_default()
                        .push(i);
                    let l = listen.entry((&k.server_ip, k.server_port)).or_default();
                    if !l.iter().any(|&o| obs[o].2 == *n) {
                        l.push(i);
                    }
                }
                Role::Client => clients
                    .entry((&k.client_ip, &k.server_ip, k.server_port))
                    .or_default()
                    .push(i),
            }
        }

        // Edges.
        let mut edges: HashMap<(usize, usize), EdgeAcc> = HashMap::default();
        let mut server_counted: HashSet<(usize, usize, usize)> = HashSet::default();
        let mut targets: Vec<usize> = Vec::new();
        let mut done: Vec<usize> = Vec::new();
        for (k, o, src) in obs.iter().filter(|(k, _, _)| k.role == Role::Client) {
            let loopback = is_loopback(&k.server_ip);
            let usable = |&&s: &&usize| !loopback || obs[s].0.host == k.host;
            targets.clear();
            if let Some(v) = exact.get(&(&*k.client_ip, &*k.server_ip, k.server_port, k.protocol)) {
                targets.extend(v.iter().filter(usable));
            }
            if targets.is_empty() {
                if let Some(v) = listen.get(&(&*k.server_ip, k.server_port)) {
                    targets.extend(v.iter().filter(usable));
                }
            }
            if targets.is_empty() {
                stats.unmatched_links += 1;
                continue;
            }
            targets.retain(|&s| obs[s].2 != *src);
            if targets.is_empty() {
                stats.self_links += 1;
                continue;
            }
            done.clear();
            for &s in &targets {
                let dst = obs[s].2;
                let acc = edges.entry((*src, dst)).or_default();
                if !done.contains(&dst) {
                    done.push(dst);
                    acc.link_count += o.link_count;
                    acc.tx_bytes += o.tx_bytes;
                    acc.rx_bytes += o.rx_bytes;
                    let w = u128::from(o.link_count.max(1));
                    acc.rtt_weighted += u128::from(o.rtt) * w;
                    acc.rtt_weight += w;
                    acc.retran_packets += o.retran_packets;
                    acc.lost_packets += o.lost_packets;
                    acc.server_ports.insert(k.server_port);
                }
                if server_counted.insert((*src, dst, s)) {
                    let so = obs[s].1;
                    acc.retran_packets += so.retran_packets;
                    acc.lost_packets += so.lost_packets;
                }
            }
        }

        // LB flows.
        let mut used: HashSet<usize> = HashSet::default();
        let mut halves: BTreeMap<(String, &'static str, usize, usize), (&'static str, u64)> =
            BTreeMap::new();
        for (k, o) in &self.lbs {
            // The LB process: the one of the host serving the virtual
            // address (of the record's process name, when it has one),
            // else a process of that name on the host.
            let name = k
                .process_name
                .as_deref()
                .unwrap_or(k.kind.default_process());
            let serving = listen
                .get(&(&*k.virtual_ip, k.virtual_port))
                .and_then(|v| {
                    v.iter().find(|&&s| {
                        obs[s].0.host == k.host
                            && (k.process_name.is_none() || *obs[s].1.process_name == *name)
                    })
                })
                .map(|&s| obs[s].2);
            let lb_node = match serving {
                Some(n) => n,
                None => nodes.by_name(&k.host, name),
            };
            let ends = |v: Option<&Vec<usize>>| -> Vec<usize> {
                let mut e: Vec<usize> = v
                    .map(|v| {
                        v.iter()
                            .map(|&i| obs[i].2)
                            .filter(|&n| n != lb_node)
                            .collect()
                    })
                    .unwrap_or_default();
                e.sort_unstable();
                e.dedup();
                e
            };
            let fronts = ends(clients.get(&(&*k.client_ip, &*k.virtual_ip, k.virtual_port)));
            let backs = ends(listen.get(&(&*k.server_ip, k.server_port)));
            // A half is given even when the other one is not found: in a
            // consumer group each spider has the records of one half only
            // (docs/spider.md, "Several spiders").
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
                used.insert(a);
                used.insert(b);
                halves
                    .entry((flow_id.clone(), half, a, b))
                    .or_insert((table, 0))
                    .1 += o.link_count;
                if let Some(e) = edges.get_mut(&(a, b)) {
                    e.flows.insert(flow_id.clone());
                }
            }
        }

        // DNS edges: asker -> the dnsmasq process of the record's host.
        let mut by_pid: HashMap<(&str, u32), usize> = HashMap::default();
        let mut by_client_ip: HashMap<&str, Vec<usize>> = HashMap::default();
        for (k, _, n) in &obs {
            by_pid.entry((&k.host, k.pid)).or_insert(*n);
            if k.role == Role::Client {
                let v = by_client_ip.entry(&k.client_ip).or_default();
                if !v.contains(n) {
                    v.push(*n);
                }
            }
        }
        let mut dns_edges: BTreeMap<(usize, usize), (u64, BTreeSet<&str>)> = BTreeMap::new();
        for (k, o) in &self.dns {
            let asker = if k.pid != 0 {
                match by_pid.get(&(&*k.host, k.pid)) {
                    Some(&n) => Some(n),
                    None if !k.process_comm.is_empty() => {
                        let n = nodes.by_name(&k.host, &k.process_comm);
                        nodes.pids[n].push(k.pid);
                        Some(n)
                    }
                    None => None,
                }
            } else {
                by_client_ip
                    .get(&*k.client_ip)
                    .map(|v| {
                        v.iter()
                            .copied()
                            .filter(|&n| nodes.keys[n].0 != &*k.host)
                            .collect::<Vec<_>>()
                    })
                    .filter(|v| v.len() == 1)
                    .map(|v| v[0])
            };
            let Some(asker) = asker else {
                stats.unresolved_dns += 1;
                continue;
            };
            let server = nodes.by_name(&k.host, &k.server_comm);
            if server == asker {
                stats.self_links += 1;
                continue;
            }
            used.insert(asker);
            used.insert(server);
            let e = dns_edges.entry((asker, server)).or_default();
            e.0 += o.link_count;
            if !k.domain.is_empty() && e.1.len() < MAX_DOMAINS {
                e.1.insert(&k.domain);
            }
        }

        // Output, sorted.
        nodes.name_all();
        let mut processes: Vec<ProcessNode> = Vec::with_capacity(nodes.ids.len());
        let mut hosts: BTreeSet<&str> = BTreeSet::new();
        for (i, id) in nodes.ids.iter().enumerate() {
            let (host, name, service) = nodes.keys[i];
            if nodes.pids[i].is_empty() && !used.contains(&i) {
                continue; // an LB node of an unresolved flow
            }
            hosts.insert(host);
            let mut pids = std::mem::take(&mut nodes.pids[i]);
            pids.sort_unstable();
            pids.dedup();
            processes.push(ProcessNode {
                id: id.clone(),
                name: name.to_owned(),
                host: host.to_owned(),
                pids,
                display: id.clone(),
                service: service.to_owned(),
            });
        }
        processes.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let id = |n: usize| nodes.ids[n].clone();
        let mut edges: Vec<Edge> = edges
            .into_iter()
            .map(|((s, t), a)| Edge {
                link_count: a.link_count,
                tx_bytes: a.tx_bytes,
                rx_bytes: a.rx_bytes,
                rtt: u64::try_from(a.rtt_weighted / a.rtt_weight.max(1)).unwrap_or(u64::MAX),
                retran_packets: a.retran_packets,
                lost_packets: a.lost_packets,
                server_ports: a.server_ports.into_iter().collect(),
                flows: a.flows.into_iter().collect(),
                ..Edge::tcp(id(s), id(t))
            })
            .chain(
                dns_edges
                    .into_iter()
                    .map(|((s, t), (link_count, domains))| Edge {
                        kind: "dns",
                        link_count,
                        domains: domains.into_iter().map(str::to_owned).collect(),
                        ..Edge::tcp(id(s), id(t))
                    }),
            )
            .collect();
        edges.sort_unstable_by(|a, b| {
            (&a.source, &a.target, a.kind).cmp(&(&b.source, &b.target, b.kind))
        });
        let mut lb_flows: Vec<LbHalf> = halves
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
            hosts: hosts.into_iter().map(str::to_owned).collect(),
            processes,
            edges,
            lb_flows,
            stats,
        }
    }
}

/// Process nodes interned by (host, process name, service); their ids are
/// given by [`Nodes::name_all`] once every node is known.
#[derive(Default)]
struct Nodes<'a> {
    index: HashMap<(&'a str, &'a str, &'a str), usize>,
    /// (host, name) -> its nodes, in interning order.
    by_name: HashMap<(&'a str, &'a str), Vec<usize>>,
    keys: Vec<(&'a str, &'a str, &'a str)>,
    ids: Vec<String>,
    pids: Vec<Vec<u32>>,
}

impl<'a> Nodes<'a> {
    fn intern(&mut self, host: &'a str, name: &'a str, service: &'a str) -> usize {
        if let Some(&n) = self.index.get(&(host, name, service)) {
            return n;
        }
        let n = self.keys.len();
        self.index.insert((host, name, service), n);
        self.by_name.entry((host, name)).or_default().push(n);
        self.keys.push((host, name, service));
        self.pids.push(Vec::new());
        n
    }

    /// A node of this name on the host: the one there is, or of several
    /// the first by service (a stable choice); a new node without a
    /// service when there is none.
    fn by_name(&mut self, host: &'a str, name: &'a str) -> usize {
        match self
            .by_name
            .get(&(host, name))
            .and_then(|v| v.iter().copied().min_by_key(|&n| self.keys[n].2))
        {
            Some(n) => n,
            None => self.intern(host, name, ""),
        }
    }

    /// Gives every node its id: `<host>.<name>`, plus the suffix of its
    /// service where the host has several services of that name (a node
    /// without a service keeps the bare name), plus `#2`, `#3`.. (by
    /// service) where suffixes still collide.
    fn name_all(&mut self) {
        let mut ids = vec![String::new(); self.keys.len()];
        for (&(host, name), group) in &self.by_name {
            let base = node_id(host, name);
            if group.len() == 1 {
                ids[group[0]] = base;
                continue;
            }
            let mut g = group.clone();
            g.sort_unstable_by_key(|&n| self.keys[n].2);
            let mut taken: HashMap<String, u32> = HashMap::default();
            for n in g {
                let mut id = base.clone();
                id.push_str(&service_suffix(self.keys[n].2));
                let k = taken.entry(id.clone()).or_insert(0);
                *k += 1;
                if *k > 1 {
                    id.push_str(&format!("#{k}"));
                }
                ids[n] = id;
            }
        }
        self.ids = ids;
    }
}

#[cfg(test)]
mod tests;
