//! The Neo4j sink: the topology through Neo4j's HTTP Query API v2
//! (`POST <address>/db/<database>/query/v2`, basic auth), applied as a diff
//! each period: only nodes and relationships that appeared, changed or went
//! away are written.
//!
//! Schema (docs/compat.md §9): `(:Host {name})`, `(:Process {name, runon,
//! comm, service})` (one per service: `name` is the node id, the display
//! name `<host>.<comm>` suffixed where services share a comm; `service` the
//! identity the agent reported, "" when none), `(:Host)-[:RUNON]->(:Process)`,
//! `(:Process)-[:TCP_LINK {link_count, tx_bytes, rx_bytes, rtt,
//! retran_packets, lost_packets}]->(:Process)`, per LB flow half
//! `(:Process)-[:NGINX_LINK|IPVS_LINK|HAPROXY_LINK {flow_id, half,
//! link_count}]->(:Process)`, and per DNS edge `(:Process)-[:DNSMASQ_LINK
//! {link_count, domains}]->(:Process)` (`domains` comma separated).
//!
//! The statements stay inside the Cypher subset littlegraph serves (one
//! write clause each, relationships created only between MATCHed nodes, no
//! relationship MERGE), so they run on Neo4j 5 and on littlegraph alike.
//!
//! At start and after every failure the sink does not trust what it last
//! wrote: it reads what the database holds (its Host and Process nodes and
//! their relationships) and writes the difference to the whole desired
//! graph (a reconcile). This is idempotent without relationship MERGE (which
//! littlegraph lacks), removes duplicates and leftovers, and writes nothing
//! that is already there. Neo4j being down is logged once per outage (and
//! once when it ends) and every failed request is counted; a statement the
//! server refuses is logged once per distinct message, skipped, and the
//! next period reconciles again.
//!
//! Several spiders (one Kafka consumer group, each building the part of
//! the graph its partitions carry) may write one database. Every
//! relationship carries `writer` (`[neo4j] writer`, by default `<host
//! name>:<server port>`), and a spider reads, updates and deletes only its
//! own; relationships without a writer (an older spider's) are removed at a
//! reconcile and written again as its own where its graph has them. Host
//! and Process nodes are shared: MERGEd by name (properties SET apart), and
//! deleted with a plain `DELETE`, which the database refuses while another
//! writer's relationship still uses the node (that refusal is expected, not
//! an error). A relationship created between nodes that another spider
//! removed meanwhile matches nothing and returns no row: the sink then
//! reconciles at the next period. docs/spider.md has the consumer's view.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config;
use crate::stats::Stats;
use crate::topology::Topology;

/// TCP edge properties, in schema order.
const EDGE_PROPS: [&str; 6] = [
    "link_count",
    "tx_bytes",
    "rx_bytes",
    "rtt",
    "retran_packets",
    "lost_packets",
];

/// What a statement's success looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Any answer that is not an error.
    Done,
    /// At least one row: a relationship created between MATCHed nodes (no
    /// row: a node was gone, deleted by another spider meanwhile; the sink
    /// reconciles at the next period).
    Row,
    /// A node deletion the database refuses while the node still has
    /// relationships (another spider's): a refusal is an answer, not an
    /// error.
    MayRefuse,
}

/// One parameterized Cypher statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The Cypher text.
    pub cypher: String,
    /// Its parameters (a JSON object).
    pub parameters: Value,
    /// What success is.
    pub expect: Expect,
}

fn stmt(cypher: impl Into<String>, parameters: Value) -> Statement {
    Statement {
        cypher: cypher.into(),
        parameters,
        expect: Expect::Done,
    }
}

fn expecting(expect: Expect, s: Statement) -> Statement {
    Statement { expect, ..s }
}

/// LB relationship key: (type, flow_id, half, source, target).
type LbKey = (String, String, String, String, String);

/// What the graph holds, in the sink's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphState {
    hosts: BTreeSet<String>,
    /// id -> (runon, comm, service).
    processes: BTreeMap<String, (String, String, String)>,
    /// RUNON relationships: (host, process id).
    runon: BTreeSet<(String, String)>,
    /// (source, target) -> EDGE_PROPS values.
    tcp: BTreeMap<(String, String), [u64; 6]>,
    /// LB halves -> link_count.
    lb: BTreeMap<LbKey, u64>,
    /// DNS edges (source, target) -> (link_count, domains).
    dns: BTreeMap<(String, String), (u64, String)>,
    /// Hosts and processes other writers' relationships use (read at a
    /// reconcile): never deleted by this one.
    foreign: BTreeSet<String>,
}

impl GraphState {
    /// The state a topology asks for.
    pub fn of(t: &Topology) -> Self {
        Self {
            hosts: t.hosts.iter().cloned().collect(),
            processes: t
                .processes
                .iter()
                .map(|p| {
                    (
                        p.id.clone(),
                        (p.host.clone(), p.name.clone(), p.service.clone()),
                    )
                })
                .collect(),
            runon: t
                .processes
                .iter()
                .map(|p| (p.host.clone(), p.id.clone()))
                .collect(),
            tcp: t
                .edges
                .iter()
                .filter(|e| e.kind != "dns")
                .map(|e| {
                    (
                        (e.source.clone(), e.target.clone()),
                        [
                            e.link_count,
                            e.tx_bytes,
                            e.rx_bytes,
                            e.rtt,
                            e.retran_packets,
                            e.lost_packets,
                        ],
                    )
                })
                .collect(),
            lb: t
                .lb_flows
                .iter()
                .map(|h| {
                    (
                        (
                            h.kind.to_ascii_uppercase(),
                            h.flow_id.clone(),
                            h.half.to_owned(),
                            h.source.clone(),
                            h.target.clone(),
                        ),
                        h.link_count,
                    )
                })
                .collect(),
            dns: t
                .edges
                .iter()
                .filter(|e| e.kind == "dns")
                .map(|e| {
                    (
                        (e.source.clone(), e.target.clone()),
                        (e.link_count, e.domains.join(",")),
                    )
                })
                .collect(),
            foreign: BTreeSet::new(),
        }
    }

    /// Nodes and relationships (for logs).
    pub fn size(&self) -> (usize, usize) {
        (
            self.hosts.len() + self.processes.len(),
            self.runon.len() + self.tcp.len() + self.lb.len() + self.dns.len(),
        )
    }
}

/// Relationship types are not parameters: only these three are ever
/// written into the statement text.
fn lb_type(kind: &str) -> &'static str {
    match kind {
        "IPVS_LINK" => "IPVS_LINK",
        "HAPROXY_LINK" => "HAPROXY_LINK",
        _ => "NGINX_LINK",
    }
}

fn edge_params(s: &str, t: &str, v: &[u64; 6], w: &str) -> Value {
    let mut p = json!({"s": s, "t": t, "w": w});
    for (k, x) in EDGE_PROPS.iter().zip(v) {
        p[*k] = json!(x);
    }
    p
}

fn create_edge(s: &str, t: &str, v: &[u64; 6], w: &str) -> Statement {
    let props: Vec<String> = EDGE_PROPS.iter().map(|k| format!("{k}: ${k}")).collect();
    expecting(
        Expect::Row,
        stmt(
            format!(
                "MATCH (a:Process {{name: $s}}), (b:Process {{name: $t}}) CREATE (a)-[e:TCP_LINK {{{}, writer: $w}}]->(b) RETURN e.writer",
                props.join(", ")
            ),
            edge_params(s, t, v, w),
        ),
    )
}

fn create_lb(k: &LbKey, link_count: u64, w: &str) -> Statement {
    expecting(
        Expect::Row,
        stmt(
            format!(
                "MATCH (a:Process {{name: $s}}), (b:Process {{name: $t}}) CREATE (a)-[e:{} {{flow_id: $f, half: $h, link_count: $lc, writer: $w}}]->(b) RETURN e.writer",
                lb_type(&k.0)
            ),
            json!({"s": k.3, "t": k.4, "f": k.1, "h": k.2, "lc": link_count, "w": w}),
        ),
    )
}

fn process_props(id: &str, (runon, comm, service): &(String, String, String)) -> Value {
    json!({"n": id, "r": runon, "c": comm, "v": service})
}

/// The statements that turn `old` into `new`, for the writer `w`:
/// deletions first (its own relationships, then the nodes it no longer
/// has, which the database refuses while another writer's relationships
/// use them), then creations and updates (nodes MERGEd by name, so that
/// writers share them; relationships carry `writer: w`).
pub fn diff(old: &GraphState, new: &GraphState, w: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    for (k, _) in old.lb.iter().filter(|(k, _)| !new.lb.contains_key(*k)) {
        out.push(stmt(
            format!(
                "MATCH (a:Process {{name: $s}})-[e:{}]->(b:Process {{name: $t}}) WHERE e.flow_id = $f AND e.half = $h AND e.writer = $w DELETE e",
                lb_type(&k.0)
            ),
            json!({"s": k.3, "t": k.4, "f": k.1, "h": k.2, "w": w}),
        ));
    }
    for (s, t) in old.dns.keys().filter(|k| !new.dns.contains_key(*k)) {
        out.push(stmt(
            "MATCH (a:Process {name: $s})-[e:DNSMASQ_LINK]->(b:Process {name: $t}) WHERE e.writer = $w DELETE e",
            json!({"s": s, "t": t, "w": w}),
        ));
    }
    for (s, t) in old.tcp.keys().filter(|k| !new.tcp.contains_key(*k)) {
        out.push(stmt(
            "MATCH (a:Process {name: $s})-[e:TCP_LINK]->(b:Process {name: $t}) WHERE e.writer = $w DELETE e",
            json!({"s": s, "t": t, "w": w}),
        ));
    }
    for (h, id) in old.runon.difference(&new.runon) {
        out.push(stmt(
            "MATCH (h:Host {name: $r})-[e:RUNON]->(p:Process {name: $n}) WHERE e.writer = $w DELETE e",
            json!({"n": id, "r": h, "w": w}),
        ));
    }
    for id in old
        .processes
        .keys()
        .filter(|k| !new.processes.contains_key(*k) && !old.foreign.contains(*k))
    {
        out.push(expecting(
            Expect::MayRefuse,
            stmt("MATCH (p:Process {name: $n}) DELETE p", json!({"n": id})),
        ));
    }
    for h in old
        .hosts
        .difference(&new.hosts)
        .filter(|h| !old.foreign.contains(*h))
    {
        out.push(expecting(
            Expect::MayRefuse,
            stmt("MATCH (h:Host {name: $n}) DELETE h", json!({"n": h})),
        ));
    }
    for h in new.hosts.difference(&old.hosts) {
        out.push(stmt("MERGE (h:Host {name: $n})", json!({"n": h})));
    }
    for (id, props) in &new.processes {
        let set = || {
            stmt(
                "MATCH (p:Process {name: $n}) SET p.runon = $r, p.comm = $c, p.service = $v",
                process_props(id, props),
            )
        };
        match old.processes.get(id) {
            None => {
                out.push(stmt("MERGE (p:Process {name: $n})", json!({"n": id})));
                out.push(set());
            }
            Some(o) if o != props => out.push(set()),
            Some(_) => {}
        }
    }
    for (h, id) in new.runon.difference(&old.runon) {
        out.push(expecting(
            Expect::Row,
            stmt(
                "MATCH (h:Host {name: $r}), (p:Process {name: $n}) CREATE (h)-[e:RUNON {writer: $w}]->(p) RETURN e.writer",
                json!({"n": id, "r": h, "w": w}),
            ),
        ));
    }
    for ((s, t), v) in &new.tcp {
        match old.tcp.get(&(s.clone(), t.clone())) {
            None => out.push(create_edge(s, t, v, w)),
            Some(o) if o != v => {
                let sets: Vec<String> = EDGE_PROPS
                    .iter()
                    .zip(o.iter().zip(v))
                    .filter(|(_, (a, b))| a != b)
                    .map(|(k, _)| format!("e.{k} = ${k}"))
                    .collect();
                out.push(stmt(
                    format!(
                        "MATCH (a:Process {{name: $s}})-[e:TCP_LINK]->(b:Process {{name: $t}}) WHERE e.writer = $w SET {}",
                        sets.join(", ")
                    ),
                    edge_params(s, t, v, w),
                ));
            }
            Some(_) => {}
        }
    }
    for (k, lc) in &new.lb {
        match old.lb.get(k) {
            None => out.push(create_lb(k, *lc, w)),
            Some(o) if o != lc => out.push(stmt(
                format!(
                    "MATCH (a:Process {{name: $s}})-[e:{}]->(b:Process {{name: $t}}) WHERE e.flow_id = $f AND e.half = $h AND e.writer = $w SET e.link_count = $lc",
                    lb_type(&k.0)
                ),
                json!({"s": k.3, "t": k.4, "f": k.1, "h": k.2, "lc": lc, "w": w}),
            )),
            Some(_) => {}
        }
    }
    for ((s, t), (lc, domains)) in &new.dns {
        let p = json!({"s": s, "t": t, "lc": lc, "d": domains, "w": w});
        match old.dns.get(&(s.clone(), t.clone())) {
            None => out.push(expecting(
                Expect::Row,
                stmt(
                    "MATCH (a:Process {name: $s}), (b:Process {name: $t}) CREATE (a)-[e:DNSMASQ_LINK {link_count: $lc, domains: $d, writer: $w}]->(b) RETURN e.writer",
                    p,
                ),
            )),
            Some(o) if o != &(*lc, domains.clone()) => out.push(stmt(
                "MATCH (a:Process {name: $s})-[e:DNSMASQ_LINK]->(b:Process {name: $t}) WHERE e.writer = $w SET e.link_count = $lc, e.domains = $d",
                p,
            )),
            Some(_) => {}
        }
    }
    out
}

fn as_u64(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        .unwrap_or(0)
}

fn col(r: &[Value], i: usize) -> &Value {
    r.get(i).unwrap_or(&Value::Null)
}

fn as_string(v: &Value) -> String {
    v.as_str().map_or_else(String::new, str::to_owned)
}

/// Whose a relationship read at a reconcile is.
enum Owner {
    /// This writer's.
    Mine,
    /// No writer (an older spider's): removed, then written again as
    /// this writer's where its graph has it.
    Nobody,
    /// Another writer's: its nodes are in use.
    Other,
}

fn owner(v: &Value, w: &str) -> Owner {
    match v.as_str() {
        Some(x) if x == w => Owner::Mine,
        None | Some("") => Owner::Nobody,
        Some(_) => Owner::Other,
    }
}

/// What the database holds for the writer `w`, from the rows of [`READS`]
/// (every node; `w`'s relationships), and the statements to run first:
/// removing `w`'s duplicate relationships and those without a writer (the
/// state then lacks them, so the diff creates them once). Nodes that other
/// writers' relationships use are marked, never to be deleted by `w`.
pub fn state_from_rows(rows: &[Vec<Vec<Value>>], w: &str) -> (GraphState, Vec<Statement>) {
    let mut g = GraphState::default();
    let mut pre = Vec::new();
    let empty = Vec::new();
    let part = |i: usize| rows.get(i).unwrap_or(&empty);
    for r in part(0) {
        g.hosts.insert(as_string(col(r, 0)));
    }
    for r in part(1) {
        g.processes.insert(
            as_string(col(r, 0)),
            (
                as_string(col(r, 1)),
                as_string(col(r, 2)),
                as_string(col(r, 3)),
            ),
        );
    }
    // The relationships of the reads 2..=7: their writer column, and the
    // statement removing those without one.
    let unowned = |ty: &str, from: &str| {
        stmt(
            format!("MATCH (a:{from})-[e:{ty}]->(b:Process) WHERE e.writer IS NULL DELETE e"),
            json!({}),
        )
    };
    let mut nobody = [false; 6];
    let mut mine = |i: usize, r: &[Value], wcol: usize, g: &mut GraphState| -> bool {
        match owner(col(r, wcol), w) {
            Owner::Mine => true,
            Owner::Nobody => {
                nobody[i - 2] = true;
                false
            }
            Owner::Other => {
                g.foreign.insert(as_string(col(r, 0)));
                g.foreign.insert(as_string(col(r, 1)));
                false
            }
        }
    };
    let mut dup_runon = BTreeSet::new();
    for r in part(2) {
        if !mine(2, r, 2, &mut g) {
            continue;
        }
        let k = (as_string(col(r, 0)), as_string(col(r, 1)));
        if dup_runon.contains(&k) {
            continue;
        }
        if !g.runon.insert(k.clone()) {
            g.runon.remove(&k);
            pre.push(stmt(
                "MATCH (h:Host {name: $r})-[e:RUNON]->(p:Process {name: $n}) WHERE e.writer = $w DELETE e",
                json!({"n": k.1, "r": k.0, "w": w}),
            ));
            dup_runon.insert(k);
        }
    }
    let mut dup_tcp = BTreeSet::new();
    for r in part(3) {
        if !mine(3, r, 8, &mut g) {
            continue;
        }
        let k = (as_string(col(r, 0)), as_string(col(r, 1)));
        let mut v = [0u64; 6];
        for (i, x) in v.iter_mut().enumerate() {
            *x = r.get(2 + i).map_or(0, as_u64);
        }
        if dup_tcp.contains(&k) {
            continue;
        }
        if g.tcp.insert(k.clone(), v).is_some() {
            g.tcp.remove(&k);
            dup_tcp.insert(k.clone());
            pre.push(stmt(
                "MATCH (a:Process {name: $s})-[e:TCP_LINK]->(b:Process {name: $t}) WHERE e.writer = $w DELETE e",
                json!({"s": k.0, "t": k.1, "w": w}),
            ));
        }
    }
    let mut dup_lb = BTreeSet::new();
    for (i, ty) in ["NGINX_LINK", "IPVS_LINK", "HAPROXY_LINK"]
        .iter()
        .enumerate()
    {
        for r in part(4 + i) {
            if !mine(4 + i, r, 5, &mut g) {
                continue;
            }
            let k: LbKey = (
                (*ty).to_owned(),
                as_string(col(r, 2)),
                as_string(col(r, 3)),
                as_string(col(r, 0)),
                as_string(col(r, 1)),
            );
            if dup_lb.contains(&k) {
                continue;
            }
            if g.lb.insert(k.clone(), r.get(4).map_or(0, as_u64)).is_some() {
                g.lb.remove(&k);
                pre.push(stmt(
                    format!(
                        "MATCH (a:Process {{name: $s}})-[e:{ty}]->(b:Process {{name: $t}}) WHERE e.flow_id = $f AND e.half = $h AND e.writer = $w DELETE e"
                    ),
                    json!({"s": k.3, "t": k.4, "f": k.1, "h": k.2, "w": w}),
                ));
                dup_lb.insert(k);
            }
        }
    }
    let mut dup_dns = BTreeSet::new();
    for r in part(7) {
        if !mine(7, r, 4, &mut g) {
            continue;
        }
        let k = (as_string(col(r, 0)), as_string(col(r, 1)));
        if dup_dns.contains(&k) {
            continue;
        }
        let v = (r.get(2).map_or(0, as_u64), as_string(col(r, 3)));
        if g.dns.insert(k.clone(), v).is_some() {
            g.dns.remove(&k);
            pre.push(stmt(
                "MATCH (a:Process {name: $s})-[e:DNSMASQ_LINK]->(b:Process {name: $t}) WHERE e.writer = $w DELETE e",
                json!({"s": k.0, "t": k.1, "w": w}),
            ));
            dup_dns.insert(k);
        }
    }
    for (i, (ty, from)) in [
        ("RUNON", "Host"),
        ("TCP_LINK", "Process"),
        ("NGINX_LINK", "Process"),
        ("IPVS_LINK", "Process"),
        ("HAPROXY_LINK", "Process"),
        ("DNSMASQ_LINK", "Process"),
    ]
    .iter()
    .enumerate()
    {
        if nobody[i] {
            pre.push(unowned(ty, from));
        }
    }
    (g, pre)
}

/// The reads of a reconcile, in the order [`state_from_rows`] expects:
/// every node, every relationship with its writer last.
pub const READS: [&str; 8] = [
    "MATCH (h:Host) RETURN h.name",
    "MATCH (p:Process) RETURN p.name, p.runon, p.comm, p.service",
    "MATCH (h:Host)-[e:RUNON]->(p:Process) RETURN h.name, p.name, e.writer",
    "MATCH (a:Process)-[e:TCP_LINK]->(b:Process) RETURN a.name, b.name, e.link_count, e.tx_bytes, e.rx_bytes, e.rtt, e.retran_packets, e.lost_packets, e.writer",
    "MATCH (a:Process)-[e:NGINX_LINK]->(b:Process) RETURN a.name, b.name, e.flow_id, e.half, e.link_count, e.writer",
    "MATCH (a:Process)-[e:IPVS_LINK]->(b:Process) RETURN a.name, b.name, e.flow_id, e.half, e.link_count, e.writer",
    "MATCH (a:Process)-[e:HAPROXY_LINK]->(b:Process) RETURN a.name, b.name, e.flow_id, e.half, e.link_count, e.writer",
    "MATCH (a:Process)-[e:DNSMASQ_LINK]->(b:Process) RETURN a.name, b.name, e.link_count, e.domains, e.writer",
];

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Neo4jError {
    /// No connection, a timeout, or a broken response.
    #[error("{url}: {reason}")]
    Transport {
        /// The endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error.
    #[error("{url}: HTTP {status}: {message}")]
    Server {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// Neo4j's error code and message.
        message: String,
    },
}

/// A small blocking Query API v2 client with timeouts.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    url: String,
    auth: Option<String>,
}

/// RFC 4648 base64, for the basic auth header.
fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Client {
    /// A client of `[neo4j]`.
    pub fn new(cfg: &config::Neo4j) -> Self {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(timeout))
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let auth = (!cfg.username.is_empty()).then(|| {
            format!(
                "Basic {}",
                base64(format!("{}:{}", cfg.username, cfg.password).as_bytes())
            )
        });
        Self {
            agent,
            url: format!(
                "{}/db/{}/query/v2",
                cfg.address.trim_end_matches('/'),
                cfg.database
            ),
            auth,
        }
    }

    /// Runs one statement; returns the `data` member of the answer.
    pub fn run(&self, s: &Statement) -> Result<Value, Neo4jError> {
        let body = json!({"statement": s.cypher, "parameters": s.parameters}).to_string();
        let transport = |reason: String| Neo4jError::Transport {
            url: self.url.clone(),
            reason,
        };
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.send(&body).map_err(|e| transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| transport(e.to_string()))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !(200..300).contains(&status)
            || v.get("errors")
                .is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty()))
        {
            let message = v["errors"]
                .get(0)
                .map(|e| {
                    format!(
                        "{}: {}",
                        e["code"].as_str().unwrap_or(""),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(Neo4jError::Server {
                url: self.url.clone(),
                status,
                message: format!("{message} (statement: {})", s.cypher),
            });
        }
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    }
}

/// The sink: what Neo4j holds (as far as it knows) and the client.
#[derive(Debug)]
pub struct Sink {
    client: Client,
    /// `[neo4j] writer`: the name on this sink's relationships.
    writer: String,
    /// `None`: unknown (at start, and after a failure): reconcile next time.
    applied: Option<GraphState>,
    stats: Arc<Stats>,
    down: bool,
    last_error: String,
}

impl Sink {
    /// A sink of `[neo4j]`.
    pub fn new(cfg: &config::Neo4j, stats: Arc<Stats>) -> Self {
        let writer = if cfg.writer.is_empty() {
            config::default_writer(0)
        } else {
            cfg.writer.clone()
        };
        Self {
            client: Client::new(cfg),
            writer,
            applied: None,
            stats,
            down: false,
            last_error: String::new(),
        }
    }

    /// What the database holds now, and the statements removing duplicates.
    fn read(&self) -> Result<(GraphState, Vec<Statement>), Neo4jError> {
        let mut rows = Vec::with_capacity(READS.len());
        for q in READS {
            let data = self.client.run(&stmt(q, json!({})))?;
            rows.push(
                data["values"]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .map(|r| r.as_array().cloned().unwrap_or_default())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default(),
            );
        }
        Ok(state_from_rows(&rows, &self.writer))
    }

    /// Writes the change from what the database holds to `t`.
    pub fn apply(&mut self, t: &Topology) {
        let new = GraphState::of(t);
        let reconcile = self.applied.is_none();
        let (base, mut stmts) = match self.applied.take() {
            Some(old) => (old, Vec::new()),
            None => match self.read() {
                Ok(x) => x,
                Err(e) => return self.failed(&e),
            },
        };
        stmts.extend(diff(&base, &new, &self.writer));
        let mut refused = false;
        for s in &stmts {
            match self.run_retrying(s) {
                Ok(data) => {
                    self.stats.neo4j_statements.fetch_add(1, Ordering::Relaxed);
                    let no_row = data["values"].as_array().is_none_or(Vec::is_empty);
                    if s.expect == Expect::Row && no_row {
                        // A node was gone (another writer deleted it
                        // between our MERGE and this CREATE): reconcile.
                        tracing::debug!(statement = %s.cypher, "neo4j: a node was missing; reconciling at the next period");
                        refused = true;
                    }
                }
                Err(e @ Neo4jError::Transport { .. }) => return self.failed(&e),
                Err(Neo4jError::Server { .. }) if s.expect == Expect::MayRefuse => {
                    // Still used by another writer's relationships: kept.
                    self.stats.neo4j_statements.fetch_add(1, Ordering::Relaxed);
                }
                Err(e @ Neo4jError::Server { .. }) => {
                    // Up, but this statement was refused: skip it, and
                    // reconcile from what is there next period.
                    self.stats.neo4j_errors.fetch_add(1, Ordering::Relaxed);
                    let text = e.to_string();
                    if self.last_error != text {
                        tracing::warn!(error = %text, "neo4j: statement refused; skipped, retried at the next period");
                        self.last_error = text;
                    }
                    refused = true;
                }
            }
        }
        if reconcile {
            self.stats.neo4j_resyncs.fetch_add(1, Ordering::Relaxed);
            let (nodes, rels) = new.size();
            tracing::info!(
                nodes,
                relationships = rels,
                statements = stmts.len(),
                "neo4j: reconciled with the whole graph"
            );
        }
        self.applied = (!refused).then_some(new);
        self.stats.neo4j_up.store(1, Ordering::Relaxed);
        if self.down {
            tracing::info!("neo4j: writes work again");
            self.down = false;
        }
        if !refused {
            self.last_error.clear();
        }
    }

    /// Runs a statement; a transient refusal (a deadlock between writers,
    /// `Neo.TransientError.*`) is retried up to three times.
    fn run_retrying(&self, s: &Statement) -> Result<Value, Neo4jError> {
        let mut tries = 0;
        loop {
            match self.client.run(s) {
                Err(Neo4jError::Server { message, .. })
                    if tries < 3 && message.starts_with("Neo.TransientError.") =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20 * tries));
                }
                r => return r,
            }
        }
    }

    fn failed(&mut self, e: &Neo4jError) {
        self.stats.neo4j_errors.fetch_add(1, Ordering::Relaxed);
        self.stats.neo4j_up.store(0, Ordering::Relaxed);
        self.applied = None;
        let text = e.to_string();
        if !self.down {
            tracing::error!(error = %text, "neo4j: write failed; the graph there is stale until it works again (then it is reconciled with the whole graph)");
            self.down = true;
        } else if self.last_error != text {
            tracing::warn!(error = %text, "neo4j: still failing, now with another error");
        }
        self.last_error = text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Edge, LbHalf, ProcessNode};

    fn topo(edges: &[(&str, &str, u64)], lb: bool) -> Topology {
        let mut procs: BTreeSet<&str> = BTreeSet::new();
        for (s, t, _) in edges {
            procs.insert(s);
            procs.insert(t);
        }
        let processes: Vec<ProcessNode> = procs
            .iter()
            .map(|id| {
                let (h, n) = id.split_once('.').expect("host.name");
                ProcessNode {
                    id: (*id).into(),
                    name: n.into(),
                    host: h.into(),
                    pids: vec![1],
                    display: (*id).into(),
                    service: format!("ports:{}", n.len()),
                }
            })
            .collect();
        let hosts: BTreeSet<String> = processes.iter().map(|p| p.host.clone()).collect();
        Topology {
            hosts: hosts.into_iter().collect(),
            processes: processes.into(),
            edges: edges
                .iter()
                .map(|(s, t, lc)| Edge {
                    link_count: *lc,
                    tx_bytes: 1,
                    rx_bytes: 2,
                    rtt: 3,
                    server_ports: vec![80],
                    ..Edge::tcp(*s, *t)
                })
                .collect(),
            lb_flows: if lb {
                vec![LbHalf {
                    kind: "nginx_link",
                    flow_id: "f1".into(),
                    half: "front",
                    source: "a.x".into(),
                    target: "b.y".into(),
                    link_count: 1,
                }]
            } else {
                vec![]
            },
            ..Topology::default()
        }
    }

    fn texts(v: &[Statement]) -> Vec<String> {
        v.iter()
            .map(|s| format!("{} {}", s.cypher, s.parameters))
            .collect()
    }

    #[test]
    fn unchanged_graph_writes_nothing() {
        let g = GraphState::of(&topo(&[("a.x", "b.y", 1)], true));
        assert!(diff(&g, &g, "w").is_empty());
    }

    #[test]
    fn diff_writes_only_what_changed() {
        let old = GraphState::of(&topo(&[("a.x", "b.y", 1), ("a.x", "c.z", 1)], true));
        let new = GraphState::of(&topo(&[("a.x", "b.y", 4), ("a.x", "d.w", 1)], false));
        let t = texts(&diff(&old, &new, "w"));
        assert_eq!(
            t,
            [
                r#"MATCH (a:Process {name: $s})-[e:NGINX_LINK]->(b:Process {name: $t}) WHERE e.flow_id = $f AND e.half = $h AND e.writer = $w DELETE e {"f":"f1","h":"front","s":"a.x","t":"b.y","w":"w"}"#,
                r#"MATCH (a:Process {name: $s})-[e:TCP_LINK]->(b:Process {name: $t}) WHERE e.writer = $w DELETE e {"s":"a.x","t":"c.z","w":"w"}"#,
                r#"MATCH (h:Host {name: $r})-[e:RUNON]->(p:Process {name: $n}) WHERE e.writer = $w DELETE e {"n":"c.z","r":"c","w":"w"}"#,
                r#"MATCH (p:Process {name: $n}) DELETE p {"n":"c.z"}"#,
                r#"MATCH (h:Host {name: $n}) DELETE h {"n":"c"}"#,
                r#"MERGE (h:Host {name: $n}) {"n":"d"}"#,
                r#"MERGE (p:Process {name: $n}) {"n":"d.w"}"#,
                r#"MATCH (p:Process {name: $n}) SET p.runon = $r, p.comm = $c, p.service = $v {"c":"w","n":"d.w","r":"d","v":"ports:1"}"#,
                r#"MATCH (h:Host {name: $r}), (p:Process {name: $n}) CREATE (h)-[e:RUNON {writer: $w}]->(p) RETURN e.writer {"n":"d.w","r":"d","w":"w"}"#,
                r#"MATCH (a:Process {name: $s})-[e:TCP_LINK]->(b:Process {name: $t}) WHERE e.writer = $w SET e.link_count = $link_count {"link_count":4,"lost_packets":0,"retran_packets":0,"rtt":3,"rx_bytes":2,"s":"a.x","t":"b.y","tx_bytes":1,"w":"w"}"#,
                r#"MATCH (a:Process {name: $s}), (b:Process {name: $t}) CREATE (a)-[e:TCP_LINK {link_count: $link_count, tx_bytes: $tx_bytes, rx_bytes: $rx_bytes, rtt: $rtt, retran_packets: $retran_packets, lost_packets: $lost_packets, writer: $w}]->(b) RETURN e.writer {"link_count":1,"lost_packets":0,"retran_packets":0,"rtt":3,"rx_bytes":2,"s":"a.x","t":"d.w","tx_bytes":1,"w":"w"}"#,
            ]
        );
    }

    #[test]
    fn reconcile_writes_what_is_missing_and_removes_duplicates() {
        let want = GraphState::of(&topo(&[("a.x", "b.y", 1)], true));
        // The database holds host a, process a.x (with its RUNON), the edge
        // twice (a duplicate) and nothing else.
        let edge = |w: Value| {
            vec![
                json!("a.x"),
                json!("b.y"),
                json!(1),
                json!(1),
                json!(2),
                json!(3),
                json!(0),
                json!(0),
                w,
            ]
        };
        let rows = vec![
            vec![vec![json!("a")]],
            vec![vec![json!("a.x"), json!("a"), json!("x"), json!("ports:1")]],
            vec![vec![json!("a"), json!("a.x"), json!("w")]],
            vec![edge(json!("w")), edge(json!("w"))],
        ];
        let (have, pre) = state_from_rows(&rows, "w");
        let mut all = pre;
        all.extend(diff(&have, &want, "w"));
        let t = texts(&all);
        assert_eq!(
            t,
            [
                r#"MATCH (a:Process {name: $s})-[e:TCP_LINK]->(b:Process {name: $t}) WHERE e.writer = $w DELETE e {"s":"a.x","t":"b.y","w":"w"}"#,
                r#"MERGE (h:Host {name: $n}) {"n":"b"}"#,
                r#"MERGE (p:Process {name: $n}) {"n":"b.y"}"#,
                r#"MATCH (p:Process {name: $n}) SET p.runon = $r, p.comm = $c, p.service = $v {"c":"y","n":"b.y","r":"b","v":"ports:1"}"#,
                r#"MATCH (h:Host {name: $r}), (p:Process {name: $n}) CREATE (h)-[e:RUNON {writer: $w}]->(p) RETURN e.writer {"n":"b.y","r":"b","w":"w"}"#,
                r#"MATCH (a:Process {name: $s}), (b:Process {name: $t}) CREATE (a)-[e:TCP_LINK {link_count: $link_count, tx_bytes: $tx_bytes, rx_bytes: $rx_bytes, rtt: $rtt, retran_packets: $retran_packets, lost_packets: $lost_packets, writer: $w}]->(b) RETURN e.writer {"link_count":1,"lost_packets":0,"retran_packets":0,"rtt":3,"rx_bytes":2,"s":"a.x","t":"b.y","tx_bytes":1,"w":"w"}"#,
                r#"MATCH (a:Process {name: $s}), (b:Process {name: $t}) CREATE (a)-[e:NGINX_LINK {flow_id: $f, half: $h, link_count: $lc, writer: $w}]->(b) RETURN e.writer {"f":"f1","h":"front","lc":1,"s":"a.x","t":"b.y","w":"w"}"#,
            ]
        );
        // Once written, a reconcile finds nothing to do.
        let (again, pre) = state_from_rows(
            &[
                vec![vec![json!("a")], vec![json!("b")]],
                vec![
                    vec![json!("a.x"), json!("a"), json!("x"), json!("ports:1")],
                    vec![json!("b.y"), json!("b"), json!("y"), json!("ports:1")],
                ],
                vec![
                    vec![json!("a"), json!("a.x"), json!("w")],
                    vec![json!("b"), json!("b.y"), json!("w")],
                ],
                vec![edge(json!("w"))],
                vec![vec![
                    json!("a.x"),
                    json!("b.y"),
                    json!("f1"),
                    json!("front"),
                    json!(1),
                    json!("w"),
                ]],
            ],
            "w",
        );
        assert!(pre.is_empty());
        assert_eq!(again, want);
    }

    /// Several spiders on one database: a reconcile keeps the other
    /// writers' relationships and the nodes they use, removes those
    /// without a writer (and writes its own again), and only tries to
    /// delete nodes nobody else uses (the database refuses while in use).
    #[test]
    fn a_writer_reconciles_only_its_own_relationships() {
        let want = GraphState::of(&topo(&[("a.x", "b.y", 1)], false));
        let edge = |s: &str, t: &str, w: Value| {
            vec![
                json!(s),
                json!(t),
                json!(1),
                json!(1),
                json!(2),
                json!(3),
                json!(0),
                json!(0),
                w,
            ]
        };
        let p = |n: &str, h: &str| vec![json!(n), json!(h), json!("x"), json!("ports:1")];
        let rows = vec![
            vec![
                vec![json!("a")],
                vec![json!("b")],
                vec![json!("c")],
                vec![json!("d")],
            ],
            vec![p("a.x", "a"), p("b.y", "b"), p("c.z", "c"), p("d.v", "d")],
            vec![
                vec![json!("c"), json!("c.z"), json!("other")],
                vec![json!("a"), json!("a.x"), Value::Null],
            ],
            vec![
                edge("a.x", "b.y", json!("other")),
                edge("a.x", "c.z", json!("other")),
                edge("a.x", "b.y", Value::Null),
            ],
        ];
        let (have, pre) = state_from_rows(&rows, "w");
        let mut all = pre;
        all.extend(diff(&have, &want, "w"));
        let t = texts(&all);
        assert_eq!(
            t,
            [
                r#"MATCH (a:Host)-[e:RUNON]->(b:Process) WHERE e.writer IS NULL DELETE e {}"#,
                r#"MATCH (a:Process)-[e:TCP_LINK]->(b:Process) WHERE e.writer IS NULL DELETE e {}"#,
                r#"MATCH (p:Process {name: $n}) DELETE p {"n":"d.v"}"#,
                r#"MATCH (h:Host {name: $n}) DELETE h {"n":"d"}"#,
                r#"MATCH (p:Process {name: $n}) SET p.runon = $r, p.comm = $c, p.service = $v {"c":"y","n":"b.y","r":"b","v":"ports:1"}"#,
                r#"MATCH (h:Host {name: $r}), (p:Process {name: $n}) CREATE (h)-[e:RUNON {writer: $w}]->(p) RETURN e.writer {"n":"a.x","r":"a","w":"w"}"#,
                r#"MATCH (h:Host {name: $r}), (p:Process {name: $n}) CREATE (h)-[e:RUNON {writer: $w}]->(p) RETURN e.writer {"n":"b.y","r":"b","w":"w"}"#,
                r#"MATCH (a:Process {name: $s}), (b:Process {name: $t}) CREATE (a)-[e:TCP_LINK {link_count: $link_count, tx_bytes: $tx_bytes, rx_bytes: $rx_bytes, rtt: $rtt, retran_packets: $retran_packets, lost_packets: $lost_packets, writer: $w}]->(b) RETURN e.writer {"link_count":1,"lost_packets":0,"retran_packets":0,"rtt":3,"rx_bytes":2,"s":"a.x","t":"b.y","tx_bytes":1,"w":"w"}"#,
            ]
        );
        let deletes: Vec<Expect> = all
            .iter()
            .filter(|s| s.cypher.ends_with("DELETE p") || s.cypher.ends_with("DELETE h"))
            .map(|s| s.expect)
            .collect();
        assert_eq!(deletes, [Expect::MayRefuse, Expect::MayRefuse]);
    }

    #[test]
    fn basic_auth_is_base64() {
        assert_eq!(base64(b"neo4j:secret"), "bmVvNGo6c2VjcmV0");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }
}
