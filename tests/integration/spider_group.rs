//! Several gala-spiders in one Kafka consumer group build exactly the graph
//! one spider builds: tansu with a 6-partition topic, the records of 30
//! simulated hosts (tcp_link both sides, nginx_link flows, dnsmasq_link)
//! as the agent's exporter sends them (its JSON and its partition keys,
//! `gala_gopher::export::partition`, through gopher_bench::cluster), every
//! second like agents reporting each period; 3 spiders in one group and 1
//! spider in another, each setup writing its own littlegraph. The union of
//! the 3 spiders' REST graphs equals the single spider's (every edge with
//! its metrics, every LB half, every process id), no edge is split between
//! spiders, and the Neo4j graphs the two setups wrote are equal.
//!
//! Needs tansu (scripts/kafka.sh) and littlegraph (scripts/littlegraph.sh).

use std::process::Command;
use std::time::{Duration, Instant};

use gopher_bench::cluster::{self, View};

use crate::harness::free_port;
use crate::kafka::Broker;
use crate::spider::{find_tool, now_ms, Graph, Spider};

const TOPIC: &str = "gala_gopher";
const HOSTS: usize = 30;

/// A kafka-sourced spider of `group` writing to the littlegraph on
/// `graph_port`.
fn spider(dir: &std::path::Path, broker: &str, group: &str, graph_port: u16) -> Spider {
    std::fs::create_dir_all(dir).expect("spider dir");
    let port = free_port();
    let cfg = format!(
        r#"[global]
data_source = "kafka"
ui_source = "neo4j"
[kafka]
topic = "{TOPIC}"
broker = "{broker}"
group_id = "{group}"
auto_offset_reset = "earliest"
[table_info]
other_table_name = "nginx_link, dnsmasq_link"
[option]
period_secs = 1
expire_secs = 6
[neo4j]
address = "http://127.0.0.1:{graph_port}"
database = "self"
username = ""
timeout_ms = 5000
[server]
port = {port}
"#
    );
    Spider::start(dir, &cfg, port)
}

/// A littlegraph whose store has room for this graph: littlegraph never
/// grows its record files (about 200 property records in a new store), so
/// the store it created is stopped, its record stores extended with unused
/// (zero) records, and served again.
fn roomy_graph(dir: &std::path::Path) -> Graph {
    let mut g = Graph::new(dir, free_port());
    g.start();
    g.stop();
    // Room for about 4 000 nodes, 3 800 relationships, 6 000 property
    // records; not more: littlegraph reads whole stores on a MATCH.
    for (store, len) in [
        ("neostore.nodestore.db", 64 << 10),
        ("neostore.relationshipstore.db", 128 << 10),
        ("neostore.propertystore.db", 256 << 10),
        ("neostore.propertystore.db.strings", 64 << 10),
    ] {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(store))
            .unwrap_or_else(|e| panic!("{store}: {e}"));
        f.set_len(len).expect("extend the store");
    }
    g.start();
    g
}

#[test]
fn spider_group_of_three_builds_the_graph_of_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(free_port(), &dir.path().join("tansu.log"), &[]);
    let tansu = find_tool("tansu").expect("tansu (scripts/kafka.sh)");
    let out = Command::new(tansu)
        .args(["topic", "create", "--broker"])
        .arg(format!("tcp://{}", broker.addr()))
        .args(["--partitions", "6", TOPIC])
        .output()
        .expect("tansu topic create");
    assert!(
        out.status.success(),
        "tansu topic create: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let g1 = roomy_graph(&dir.path().join("g1"));
    let g3 = roomy_graph(&dir.path().join("g3"));
    let id = std::process::id();
    let one = spider(
        &dir.path().join("one"),
        &broker.addr(),
        &format!("one-{id}"),
        g1.port,
    );
    let three: Vec<Spider> = (0..3)
        .map(|i| {
            spider(
                &dir.path().join(format!("s{i}")),
                &broker.addr(),
                &format!("three-{id}"),
                g3.port,
            )
        })
        .collect();

    let reg = cluster::registry().expect("meta/");
    let recs = cluster::simulate(HOSTS);
    let producer = cluster::producer(&broker.addr()).expect("producer");
    let view = |s: &Spider| View::of(&s.get_json("/api/v1/topology"));
    let neo = |g: &Graph| -> Result<Vec<String>, String> {
        let rows: Result<Vec<_>, String> =
            cluster::NEO4J_READS.iter().map(|q| g.query(q)).collect();
        Ok(cluster::neo4j_lines(&rows?))
    };
    // The expected size: 2 cli -> svc edges per host; per LB host 2 web ->
    // nginx and 2 nginx -> svc edges and 4 flows of two halves; a DNS edge
    // per dnsmasq host.
    let lb_hosts = HOSTS.div_ceil(10);
    let want_edges = 2 * HOSTS + 4 * lb_hosts + HOSTS / 10;
    let want_halves = 8 * lb_hosts;

    let t0 = Instant::now();
    for round in 0.. {
        let msgs = cluster::messages(&reg, &recs, now_ms()).expect("messages");
        cluster::produce(&producer, TOPIC, &msgs).expect("produce");
        std::thread::sleep(Duration::from_millis(1000));
        if round < 3 {
            continue;
        }
        let single = view(&one);
        let parts: Vec<View> = three.iter().map(view).collect();
        let shares: Vec<usize> = parts.iter().map(|v| v.edges.len()).collect();
        let verdict = match View::union(&parts) {
            Err(e) => e,
            Ok(u) if single.edges.len() != want_edges || single.lb_flows.len() != want_halves => {
                format!(
                    "the single spider has {} edges and {} LB halves, want {want_edges} and {want_halves}\n{}",
                    single.edges.len(),
                    single.lb_flows.len(),
                    u.difference(&single)
                )
            }
            Ok(u) if u != single => u.difference(&single),
            Ok(_) if shares.contains(&0) => {
                format!("a spider of the group has no edges: {shares:?}")
            }
            Ok(_) => match (neo(&g1), neo(&g3)) {
                (Ok(a), Ok(b))
                    if a == b
                        && a.iter().filter(|l| l.starts_with("2 ")).count()
                            == 2 * HOSTS + 4 * lb_hosts =>
                {
                    eprintln!(
                        "round {round}: {} edges, {} LB halves; the group's shares {shares:?}; Neo4j: {} lines equal",
                        single.edges.len(),
                        single.lb_flows.len(),
                        a.len()
                    );
                    break;
                }
                (Ok(a), Ok(b)) => {
                    let extra: Vec<&String> = b.iter().filter(|l| !a.contains(l)).take(3).collect();
                    let missing: Vec<&String> =
                        a.iter().filter(|l| !b.contains(l)).take(3).collect();
                    format!(
                        "Neo4j: the group wrote {} lines, the single spider {}: extra {extra:?}, missing {missing:?}",
                        b.len(),
                        a.len()
                    )
                }
                (Err(e), _) | (_, Err(e)) => format!("Neo4j read: {e}"),
            },
        };
        let last = verdict;
        assert!(
            t0.elapsed() < Duration::from_secs(150),
            "the group's graph never equalled the single spider's; last:\n{last}\nlog of the single spider:\n{}\nlog of a group spider:\n{}",
            one.log_text(),
            three[0].log_text()
        );
    }
    // Each group spider consumed only its partitions: together the group
    // received the same records as the single spider, not three times as many.
    let received = |s: &Spider| s.metric("gala_spider_records_total{outcome=\"tcp_link\"}");
    let group: f64 = three.iter().map(received).sum();
    let single = received(&one);
    assert!(
        group < single * 1.6,
        "the group received {group} tcp_link records, the single spider {single}: partitions are not shared"
    );
}
