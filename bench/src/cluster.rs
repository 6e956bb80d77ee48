//! Several gala-spiders in one consumer group against one spider alone:
//! the simulated cluster (tcp_link both sides, nginx_link flows, dnsmasq_link)
//! as the agent's Kafka messages (its JSON, its partition keys), and the
//! comparison of the graphs. Shared by tests/integration/spider_group.rs and
//! bench/src/bin/spider_cluster.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gala_gopher::export::{json, partition};
use gala_gopher::identity::Identity;
use gala_gopher::ingress::Accepted;
use gala_gopher::meta::{FieldType, MetaRegistry};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

/// One simulated record: host index, table, fields.
#[derive(Debug, Clone)]
pub struct SimRecord {
    /// The host that reports it.
    pub host: usize,
    /// Its table.
    pub table: &'static str,
    /// Field values by name (the rest are null).
    pub fields: Vec<(&'static str, String)>,
}

/// The address of simulated host `i` (up to 62 500 hosts).
pub fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", i / 62_500 % 250, i / 250 % 250, i % 250 + 1)
}

/// The host name of simulated host `i`.
pub fn hostname(i: usize) -> String {
    format!("n{i:05}")
}

fn link(
    host: usize,
    pid: u32,
    name: &str,
    service: &str,
    role: u8,
    (client, server, port): (usize, usize, u16),
    seed: usize,
) -> SimRecord {
    let v = |k: usize| (seed * 31 + k * 7) % 97;
    SimRecord {
        host,
        table: "tcp_link",
        fields: vec![
            ("pid", pid.to_string()),
            ("process_name", name.to_owned()),
            ("role", role.to_string()),
            ("client_ip", ip(client)),
            ("server_ip", ip(server)),
            ("server_port", port.to_string()),
            ("protocol", "2".into()),
            ("link_count", (1 + v(1) % 5).to_string()),
            ("rx_bytes", (1000 * v(2) + 17).to_string()),
            ("tx_bytes", (900 * v(3) + 5).to_string()),
            ("packets_in", v(4).to_string()),
            ("packets_out", v(5).to_string()),
            ("retran_packets", (v(6) % 3).to_string()),
            ("lost_packets", (v(7) % 2).to_string()),
            ("rtt", (100 + v(8)).to_string()),
            ("service", service.to_owned()),
        ],
    }
}

/// A client -> server connection: both sides' tcp_link records.
fn conn(
    out: &mut Vec<SimRecord>,
    (c, cpid, cname, csvc): (usize, u32, &str, &str),
    (s, spid, sname, ssvc): (usize, u32, &str, &str),
    port: u16,
) {
    let seed = c * 1009 + s * 13 + usize::from(port);
    out.push(link(c, cpid, cname, csvc, 1, (c, s, port), seed));
    out.push(link(s, spid, sname, ssvc, 0, (c, s, port), seed + 1));
}

/// The records of `n` simulated hosts (n >= 12): every host runs a client
/// `cli` calling the `svc` of two other hosts (one of them on two ports);
/// every tenth host an nginx (virtual address `<its ip>:80`) with two `web`
/// clients and two backends, and its nginx_link records; every tenth host
/// (offset 5) a dnsmasq asked by its own `cli`.
pub fn simulate(n: usize) -> Vec<SimRecord> {
    assert!(n >= 12, "at least 12 hosts");
    let cli = |i: usize| (i, 100, "cli", "cmd:/usr/bin/cli");
    let svc = |i: usize| (i, 200, "svc", "ports:8000,8001");
    let mut out = Vec::new();
    for i in 0..n {
        conn(&mut out, cli(i), svc((i + 1) % n), 8000);
        conn(&mut out, cli(i), svc((i + 3) % n), 8000);
        conn(&mut out, cli(i), svc((i + 3) % n), 8001);
        if i % 10 == 0 {
            let nginx = (i, 300, "nginx", "ports:80");
            for c in [(i + 1) % n, (i + 2) % n] {
                conn(&mut out, (c, 400, "web", "cmd:/usr/bin/web"), nginx, 80);
            }
            for (b, port) in [((i + 5) % n, 8000), ((i + 6) % n, 8001)] {
                conn(&mut out, (i, 300, "nginx", "ports:80"), svc(b), port);
                for c in [(i + 1) % n, (i + 2) % n] {
                    out.push(SimRecord {
                        host: i,
                        table: "nginx_link",
                        fields: vec![
                            ("client_ip", ip(c)),
                            ("virtual_ip", ip(i)),
                            ("server_ip", ip(b)),
                            ("virtual_port", "80".into()),
                            ("server_port", port.to_string()),
                            ("is_l7", "1".into()),
                            ("link_count", (1 + (c + b) % 4).to_string()),
                        ],
                    });
                }
            }
        }
        if i % 10 == 5 {
            for d in 0..3 {
                out.push(SimRecord {
                    host: i,
                    table: "dnsmasq_link",
                    fields: vec![
                        ("client_ip", ip(i)),
                        ("virtual_ip", ip(i)),
                        ("domain", format!("svc{d}.cluster.example")),
                        ("pid", "100".into()),
                        ("process_comm", "cli".into()),
                        ("server_comm", "dnsmasq".into()),
                        ("family", "4".into()),
                        ("link_count", (1 + d).to_string()),
                    ],
                });
            }
        }
    }
    out
}

/// The agent's table definitions (the repository's meta/).
pub fn registry() -> anyhow::Result<MetaRegistry> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../meta");
    MetaRegistry::load_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
}

/// The Kafka messages (key, payload) the agent's exporter sends for these
/// records at `now_ms`: its JSON ([`json::metric`]) and its keys (one
/// message per [`partition::topology_key`], else the per-series key), as
/// `export::kafka` does.
pub fn messages(
    reg: &MetaRegistry,
    recs: &[SimRecord],
    now_ms: u64,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(recs.len() * 2);
    for r in recs {
        let table = reg
            .get(r.table)
            .with_context(|| format!("table {} in meta/", r.table))?;
        let values = table
            .fields
            .iter()
            .map(|f| {
                r.fields
                    .iter()
                    .find(|(k, _)| *k == f.name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect();
        let rec = Accepted {
            table: Arc::clone(table),
            values,
            timestamp_ms: now_ms,
        };
        let id = Identity {
            machine_id: format!("m{:05}", r.host),
            hostname: hostname(r.host),
        };
        let mut payload = String::new();
        json::metric(&mut payload, &id, &rec);
        let mut key = String::new();
        let mut nth = 0;
        while partition::topology_key(&mut key, &rec, nth) {
            out.push((std::mem::take(&mut key), payload.clone()));
            nth += 1;
        }
        if nth == 0 {
            key.push_str(&id.machine_id);
            key.push('|');
            key.push_str(&table.name);
            for (f, v) in table.fields.iter().zip(&rec.values) {
                if f.ty == FieldType::Key {
                    key.push('|');
                    key.push_str(v);
                }
            }
            out.push((key, payload));
        }
    }
    Ok(out)
}

/// A producer with librdkafka's default partitioner, as the agent's.
pub fn producer(broker: &str) -> anyhow::Result<BaseProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("queue.buffering.max.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("kafka producer")
}

/// Sends every message to `topic` and waits until they are delivered.
pub fn produce(p: &BaseProducer, topic: &str, msgs: &[(String, String)]) -> anyhow::Result<()> {
    for (k, v) in msgs {
        let mut rec = BaseRecord::to(topic).key(k.as_str()).payload(v.as_str());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        anyhow::bail!("produce to {topic}: {e}");
                    }
                    p.poll(Duration::from_millis(10));
                    rec = back;
                }
            }
        }
    }
    p.flush(Duration::from_secs(30))
        .with_context(|| format!("flush to {topic}"))
}

/// A spider's graph in comparable form: each edge and LB half as its JSON
/// text (every metric in it), process ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Edges (tcp and dns), each the JSON object the REST API gives.
    pub edges: BTreeSet<String>,
    /// LB flow halves, each the JSON object.
    pub lb_flows: BTreeSet<String>,
    /// Process node ids.
    pub processes: BTreeSet<String>,
}

impl View {
    /// The view of a `/api/v1/topology` answer.
    pub fn of(topology: &Value) -> Self {
        let texts = |k: &str| -> BTreeSet<String> {
            topology[k]
                .as_array()
                .map(|a| a.iter().map(Value::to_string).collect())
                .unwrap_or_default()
        };
        Self {
            edges: texts("edges"),
            lb_flows: texts("lb_flows"),
            processes: topology["processes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p["id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The union of several spiders' views. An edge (source, target, kind)
    /// that two spiders give with different metrics is an error: each
    /// edge must be built whole by one spider.
    pub fn union(views: &[View]) -> Result<View, String> {
        let mut u = View::default();
        let mut by_key: BTreeMap<(String, String, String), String> = BTreeMap::new();
        for v in views {
            for e in &v.edges {
                let j: Value = serde_json::from_str(e).unwrap_or(Value::Null);
                let k = (
                    j["source"].to_string(),
                    j["target"].to_string(),
                    j["kind"].to_string(),
                );
                if let Some(other) = by_key.insert(k, e.clone()) {
                    if other != *e {
                        return Err(format!("an edge split between spiders: {other} and {e}"));
                    }
                }
                u.edges.insert(e.clone());
            }
            u.lb_flows.extend(v.lb_flows.iter().cloned());
            u.processes.extend(v.processes.iter().cloned());
        }
        Ok(u)
    }

    /// What differs from `want`, briefly ("" when equal).
    pub fn difference(&self, want: &View) -> String {
        let mut out = String::new();
        for (what, a, b) in [
            ("edges", &self.edges, &want.edges),
            ("lb_flows", &self.lb_flows, &want.lb_flows),
            ("processes", &self.processes, &want.processes),
        ] {
            let extra: Vec<&String> = a.difference(b).take(3).collect();
            let missing: Vec<&String> = b.difference(a).take(3).collect();
            if !extra.is_empty() || !missing.is_empty() {
                out.push_str(&format!(
                    "{what}: {} extra {extra:?}, {} missing {missing:?}\n",
                    a.difference(b).count(),
                    b.difference(a).count()
                ));
            }
        }
        out
    }
}

/// The reads of a Neo4j graph compared between setups (the writer left
/// out): relationships with their properties, and the nodes.
pub const NEO4J_READS: [&str; 7] = [
    "MATCH (h:Host) RETURN h.name",
    "MATCH (p:Process) RETURN p.name, p.runon, p.comm",
    "MATCH (a:Process)-[e:TCP_LINK]->(b:Process) RETURN a.name, b.name, e.link_count, e.tx_bytes, e.rx_bytes, e.rtt, e.retran_packets, e.lost_packets",
    "MATCH (a:Process)-[e:NGINX_LINK]->(b:Process) RETURN a.name, b.name, e.flow_id, e.half, e.link_count",
    "MATCH (a:Process)-[e:IPVS_LINK]->(b:Process) RETURN a.name, b.name, e.flow_id, e.half, e.link_count",
    "MATCH (a:Process)-[e:HAPROXY_LINK]->(b:Process) RETURN a.name, b.name, e.flow_id, e.half, e.link_count",
    "MATCH (a:Process)-[e:DNSMASQ_LINK]->(b:Process) RETURN a.name, b.name, e.link_count, e.domains",
];

/// The rows of [`NEO4J_READS`] as one sorted list of lines (a multiset:
/// a duplicate relationship shows twice), each prefixed by its read.
pub fn neo4j_lines(rows: &[Vec<Vec<Value>>]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .enumerate()
        .flat_map(|(i, rs)| {
            rs.iter()
                .map(move |r| format!("{i} {}", Value::from(r.clone())))
        })
        .collect();
    out.sort();
    out
}
