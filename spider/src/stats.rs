//! Self-metrics: one place that counts what happens to records and to the
//! sink, rendered as Prometheus text on the spider's `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::topology::{Applied, Topology};

/// Counters and gauges, shared by the threads.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records read from the source (lines or messages).
    pub received: AtomicU64,
    /// tcp_link records folded in.
    pub tcp_link: AtomicU64,
    /// LB records folded in.
    pub lb: AtomicU64,
    /// dnsmasq_link records folded in.
    pub dns: AtomicU64,
    /// Not a metric record (bad JSON, no table_name or hostname).
    pub bad_json: AtomicU64,
    /// A used table with a missing or malformed field.
    pub bad_record: AtomicU64,
    /// Tables this service does not use.
    pub unused_table: AtomicU64,
    /// Records naming an excluded address.
    pub excluded: AtomicU64,
    /// Records older than the expiry window when read.
    pub stale: AtomicU64,
    /// Errors of the source (Kafka or file).
    pub source_errors: AtomicU64,
    /// Failed Neo4j requests.
    pub neo4j_errors: AtomicU64,
    /// Neo4j statements applied.
    pub neo4j_statements: AtomicU64,
    /// Full resyncs of Neo4j (start and after each outage).
    pub neo4j_resyncs: AtomicU64,
    /// 1 while the last Neo4j write succeeded.
    pub neo4j_up: AtomicU64,
    /// Snapshots taken.
    pub snapshots: AtomicU64,
    /// Gauges of the last snapshot.
    pub hosts: AtomicU64,
    /// Process nodes.
    pub processes: AtomicU64,
    /// TCP edges.
    pub edges: AtomicU64,
    /// LB flow halves.
    pub lb_halves: AtomicU64,
    /// Self links dropped in the last snapshot.
    pub self_links: AtomicU64,
    /// Unmatched client observations in the last snapshot.
    pub unmatched_links: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn set(c: &AtomicU64, v: usize) {
    c.store(u64::try_from(v).unwrap_or(u64::MAX), Ordering::Relaxed);
}

impl Stats {
    /// Counts what [`crate::topology::Builder::apply`] did.
    pub fn applied(&self, a: Applied) {
        inc(match a {
            Applied::TcpLink => &self.tcp_link,
            Applied::Lb => &self.lb,
            Applied::Dns => &self.dns,
            Applied::UnusedTable => &self.unused_table,
            Applied::BadRecord => &self.bad_record,
            Applied::Excluded => &self.excluded,
        });
    }

    /// Records the gauges of a snapshot.
    pub fn snapshot(&self, t: &Topology) {
        inc(&self.snapshots);
        set(&self.hosts, t.hosts.len());
        set(&self.processes, t.processes.len());
        set(&self.edges, t.edges.len());
        set(&self.lb_halves, t.lb_flows.len());
        set(&self.self_links, t.stats.self_links);
        set(&self.unmatched_links, t.stats.unmatched_links);
    }

    /// The Prometheus exposition.
    pub fn render(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = String::new();
        let mut one = |name: &str, ty: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP gala_spider_{name} {help}");
            let _ = writeln!(s, "# TYPE gala_spider_{name} {ty}");
            let _ = writeln!(s, "gala_spider_{name} {v}");
        };
        one(
            "records_received_total",
            "counter",
            "Records read from the source.",
            g(&self.received),
        );
        one(
            "neo4j_errors_total",
            "counter",
            "Failed Neo4j requests.",
            g(&self.neo4j_errors),
        );
        one(
            "neo4j_statements_total",
            "counter",
            "Neo4j statements applied.",
            g(&self.neo4j_statements),
        );
        one(
            "neo4j_resyncs_total",
            "counter",
            "Full writes of the graph to Neo4j (start, and after each outage).",
            g(&self.neo4j_resyncs),
        );
        one(
            "neo4j_up",
            "gauge",
            "1 while the last Neo4j write succeeded.",
            g(&self.neo4j_up),
        );
        one(
            "source_errors_total",
            "counter",
            "Errors of the record source.",
            g(&self.source_errors),
        );
        one(
            "snapshots_total",
            "counter",
            "Topology snapshots taken.",
            g(&self.snapshots),
        );
        one(
            "hosts",
            "gauge",
            "Hosts in the last snapshot.",
            g(&self.hosts),
        );
        one(
            "processes",
            "gauge",
            "Process nodes in the last snapshot.",
            g(&self.processes),
        );
        one(
            "edges",
            "gauge",
            "TCP edges in the last snapshot.",
            g(&self.edges),
        );
        one(
            "lb_flow_halves",
            "gauge",
            "LB flow halves in the last snapshot.",
            g(&self.lb_halves),
        );
        one(
            "self_links",
            "gauge",
            "Self links dropped in the last snapshot.",
            g(&self.self_links),
        );
        one(
            "unmatched_links",
            "gauge",
            "Client links with no server found in the last snapshot.",
            g(&self.unmatched_links),
        );
        let _ = writeln!(
            s,
            "# HELP gala_spider_records_total Records by what was done with them."
        );
        let _ = writeln!(s, "# TYPE gala_spider_records_total counter");
        for (outcome, c) in [
            ("tcp_link", &self.tcp_link),
            ("lb", &self.lb),
            ("dns", &self.dns),
            ("bad_json", &self.bad_json),
            ("bad_record", &self.bad_record),
            ("unused_table", &self.unused_table),
            ("excluded", &self.excluded),
            ("stale", &self.stale),
        ] {
            let _ = writeln!(
                s,
                "gala_spider_records_total{{outcome=\"{outcome}\"}} {}",
                g(c)
            );
        }
        s
    }
}
