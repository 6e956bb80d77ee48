//! One node per service, not per command name (issue 15, item 8), end to
//! end with real parts: two python3 HTTP services on two ports of one host
//! (network namespace `srv`, agent hostname `idsrv`), each with its own
//! python3 client on another host (namespace `cli`, agent hostname
//! `idcli`); the real agents with the eBPF tcp_link probe (snoopers on the
//! four processes) report to Kafka (tansu); gala-spider builds the
//! topology and writes it to littlegraph. The four processes share one
//! comm, yet the spider must show four nodes, each edge on its own pair, in
//! the JSON snapshot, in the legacy get_entities, in Neo4j and on the page.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{free_port, wait_for, Helper, Setup, Tracefs, TwoHosts};
use crate::kafka::Broker;
use crate::spider::{agent_as, artifacts, chromium, require_root, Graph, Spider};

/// An HTTP/1.1 server (keep-alive) on addr:port: prints `ready`, serves
/// until killed.
const SERVER: &str = r#"
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("hello from %s\n" % sys.argv[2]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
s = S((sys.argv[1], int(sys.argv[2])), H)
print("ready", flush=True)
s.serve_forever()
"#;

/// A client: one kept connection, a GET every 200 ms; prints `connected`
/// after the first answer.
const CLIENT: &str = r#"
import http.client, sys, time
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=5)
first = True
while True:
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    if first:
        print("connected", flush=True)
        first = False
    time.sleep(0.2)
"#;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write helper script");
    p
}

fn processes(t: &Value) -> Vec<Value> {
    t["processes"].as_array().cloned().unwrap_or_default()
}

/// (source, target) of the tcp edges of a snapshot.
fn tcp_edges(t: &Value) -> BTreeSet<(String, String)> {
    t["edges"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter(|e| e["kind"] == "tcp")
                .map(|e| {
                    (
                        e["source"].as_str().unwrap_or("").to_owned(),
                        e["target"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The id of the node of `host` whose pids include `pid`.
fn id_of(t: &Value, host: &str, pid: u32) -> Option<String> {
    processes(t)
        .iter()
        .find(|p| {
            p["host"] == host
                && p["pids"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x.as_u64() == Some(u64::from(pid))))
        })
        .and_then(|p| p["id"].as_str().map(str::to_owned))
}

/// Whether the DOM has an element whose opening tag has all these
/// attributes (in any order).
fn has_tag(dom: &str, tag: &str, attrs: &[String]) -> bool {
    dom.split(&format!("<{tag} "))
        .skip(1)
        .filter_map(|rest| rest.split('>').next())
        .any(|open| attrs.iter().all(|a| open.contains(a.as_str())))
}

#[test]
fn spider_identity_two_python3_services_on_one_host_are_two_nodes() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let net = TwoHosts::new("sid", 211);
    let broker = Broker::start(free_port(), &dir.path().join("tansu.log"), &["gala_gopher"]);
    let mut graph = Graph::new(&dir.path().join("graph"), free_port());
    graph.start();

    // Two python3 services on 8080 and 8081 of one host; a python3 client
    // of each on the other host.
    let server = write(dir.path(), "id_server.py", SERVER);
    let client = write(dir.path(), "id_client.py", CLIENT);
    let sip = net.server_ip.clone();
    let mut srv_a = Helper::python(Some(&net.server), &server, &[sip.as_str(), "8080"]);
    srv_a.expect("ready");
    let mut srv_b = Helper::python(Some(&net.server), &server, &[sip.as_str(), "8081"]);
    srv_b.expect("ready");
    let mut cli_a = Helper::python(Some(&net.client), &client, &[sip.as_str(), "8080"]);
    let mut cli_b = Helper::python(Some(&net.client), &client, &[sip.as_str(), "8081"]);
    cli_a.expect("connected");
    cli_b.expect("connected");
    for h in [&srv_a, &srv_b, &cli_a, &cli_b] {
        assert_eq!(
            h.comm(),
            "python3",
            "every process of the test is a python3"
        );
    }

    // One agent per host, each watching its two processes.
    let setups: Vec<Setup> = (0..2).map(|_| Setup::new(&[])).collect();
    let snoop =
        |a: &Helper, b: &Helper| format!("snoopers = {{ proc_id = [{}, {}] }}\n", a.pid(), b.pid());
    let addr = broker.addr();
    let _agents = [
        agent_as(
            "idsrv",
            &setups[0],
            &addr,
            0,
            &snoop(&srv_a, &srv_b),
            Tracefs::Absent,
        ),
        agent_as(
            "idcli",
            &setups[1],
            &addr,
            0,
            &snoop(&cli_a, &cli_b),
            Tracefs::Absent,
        ),
    ];

    let port = free_port();
    let sp = Spider::start(
        dir.path(),
        &format!(
            r#"[global]
data_source = "kafka"
ui_source = "neo4j"
log_level = "info"

[kafka]
topic = "gala_gopher"
broker = "{addr}"
group_id = "spider-identity-{pid}"
auto_offset_reset = "earliest"

[option]
expire_secs = 30
period_secs = 1

[neo4j]
address = "http://127.0.0.1:{gport}"
database = "self"
username = ""

[server]
port = {port}
"#,
            pid = std::process::id(),
            gport = graph.port
        ),
        port,
    );

    // The JSON snapshot: four python3 nodes, the servers named by their
    // ports, each client on its own server.
    let (a8080, a8081) = ("idsrv.python3:8080", "idsrv.python3:8081");
    let t = wait_for(
        Duration::from_secs(120),
        "both client -> server edges in the snapshot",
        || {
            let t = sp.get_json("/api/v1/topology");
            let ca = id_of(&t, "idcli", cli_a.pid())?;
            let cb = id_of(&t, "idcli", cli_b.pid())?;
            let e = tcp_edges(&t);
            (e.contains(&(ca, a8080.to_owned())) && e.contains(&(cb, a8081.to_owned())))
                .then_some(t)
        },
    );
    let (ca, cb) = (
        id_of(&t, "idcli", cli_a.pid()).expect("client a"),
        id_of(&t, "idcli", cli_b.pid()).expect("client b"),
    );
    assert_ne!(ca, cb, "the two clients are two nodes: {t}");
    assert_eq!(
        tcp_edges(&t),
        [
            (ca.clone(), a8080.to_owned()),
            (cb.clone(), a8081.to_owned())
        ]
        .into_iter()
        .collect::<BTreeSet<_>>(),
        "exactly the two edges, none crossed: {t}"
    );
    let procs = processes(&t);
    assert_eq!(procs.len(), 4, "{t}");
    let by_id = |id: &str| {
        procs
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("process {id} in {t}"))
    };
    for (id, pid, service) in [
        (a8080, srv_a.pid(), "ports:8080"),
        (a8081, srv_b.pid(), "ports:8081"),
    ] {
        let p = by_id(id);
        assert_eq!(p["name"], "python3", "{p}");
        assert_eq!(p["host"], "idsrv", "{p}");
        assert_eq!(p["display"], id, "{p}");
        assert_eq!(p["service"], service, "{p}");
        assert_eq!(p["pids"], serde_json::json!([pid]), "{p}");
    }
    for (id, port) in [(&ca, "8080"), (&cb, "8081")] {
        let p = by_id(id);
        let service = p["service"].as_str().unwrap_or("");
        assert!(
            service.starts_with("cmd:")
                && service.contains("python3")
                && service.contains("id_client.py")
                && service.ends_with(&format!(" {port}")),
            "a client without listening ports is told by its command line: {p}"
        );
        assert!(
            id.starts_with("idcli.python3#") && id.len() == "idcli.python3#".len() + 6,
            "a client's id carries the hash of its command line: {id}"
        );
    }

    // Stable across periods: the same ids a few periods later.
    std::thread::sleep(Duration::from_secs(3));
    let later = sp.get_json("/api/v1/topology");
    let ids = |t: &Value| -> BTreeSet<String> {
        processes(t)
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(ids(&later), ids(&t), "ids stay across periods");

    // The legacy REST output.
    let ents = sp.get_json("/gala-spider/api/v1/get_entities");
    let entity_ids: BTreeSet<String> = ents["entityids"]
        .as_array()
        .expect("entityids")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    for id in [
        a8080.to_owned(),
        a8081.to_owned(),
        ca.clone(),
        cb.clone(),
        format!("{ca}->{a8080}"),
        format!("{cb}->{a8081}"),
    ] {
        assert!(entity_ids.contains(&id), "{id} in get_entities: {ents}");
    }
    assert!(
        !entity_ids.contains(&format!("{ca}->{a8081}"))
            && !entity_ids.contains(&format!("{cb}->{a8080}")),
        "no crossed link: {ents}"
    );
    let ent = ents["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .find(|e| e["entityid"] == a8081)
        .cloned()
        .expect("entity");
    assert!(
        ent["attrs"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x["key"] == "service" && x["value"] == "ports:8081")),
        "{ent}"
    );

    // Neo4j: one Process per service, the edges on the right ones.
    let want_edges = crate::spider::pairs(&[(ca.as_str(), a8080), (cb.as_str(), a8081)]);
    wait_for(
        Duration::from_secs(30),
        "the two edges in littlegraph",
        || {
            (graph.strings("MATCH (a:Process)-[e:TCP_LINK]->(b:Process) RETURN a.name, b.name")
                == want_edges)
                .then_some(())
        },
    );
    assert_eq!(
        graph.strings(
            "MATCH (h:Host {name: 'idsrv'})-[:RUNON]->(p:Process) RETURN p.name, p.comm, p.service"
        ),
        [
            [a8080, "python3", "ports:8080"],
            [a8081, "python3", "ports:8081"]
        ]
    );
    assert_eq!(
        graph
            .strings("MATCH (h:Host {name: 'idcli'})-[:RUNON]->(p:Process) RETURN p.name")
            .len(),
        2
    );

    // The page: one process group per node, one edge per pair.
    let png = artifacts().join("spider-identity.png");
    let dom = chromium(&format!("http://127.0.0.1:{port}/"), &png);
    for id in [a8080, a8081, ca.as_str(), cb.as_str()] {
        assert!(
            has_tag(
                &dom,
                "g",
                &["class=\"process".to_owned(), format!("data-id=\"{id}\""),]
            ),
            "g.process[data-id={id}] on the page (screenshot {})",
            png.display()
        );
    }
    for (s, d) in [(&ca, a8080), (&cb, a8081)] {
        let attrs = [
            format!("data-source=\"{s}\""),
            format!("data-target=\"{d}\""),
        ];
        assert!(
            dom.split('<')
                .any(|tag| attrs.iter().all(|a| tag.contains(a.as_str()))),
            "an edge {s} -> {d} on the page (screenshot {})",
            png.display()
        );
    }
    eprintln!(
        "spider identity: nodes {:?}, screenshot {}",
        ids(&t),
        png.display()
    );
}
