//! gala-spider, all real: the `gala-spider` binary writing to littlegraph
//! (a Neo4j Query API v2 server) started by each test on 127.0.0.1 and
//! stopped by its PID; its REST API over HTTP; its page in headless
//! chromium; and, end to end, tansu + gala-gopher agents with the eBPF
//! tcp_link probe + the test's own processes across two network namespaces.
//!
//! Needs: littlegraph (scripts/littlegraph.sh), chromium (Debian), tansu
//! (scripts/kafka.sh), python3, and root for the eBPF test. A missing piece
//! is a failure that names it, never a silent skip.
//!
//! Artifacts (not in the repo): `target/spider-artifacts/` holds the page's
//! screenshot and DOM and the measured end-to-end latency.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{bin, free_port, http_get, repo, wait_for, Agent, Setup, Tracefs};
use crate::kafka::Broker;

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from)
}

pub(crate) fn artifacts() -> PathBuf {
    let d = target_dir().join("spider-artifacts");
    std::fs::create_dir_all(&d).expect("artifacts dir");
    d
}

pub(crate) fn spider_bin() -> PathBuf {
    let p = target_dir().join("debug").join("gala-spider");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p gala-spider` first (`make test` does)",
        p.display()
    );
    p
}

/// A program on PATH or in ~/.cargo/bin.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin").join(name));
    path.into_iter().chain(home).find(|p| p.is_file())
}

pub(crate) fn littlegraph() -> PathBuf {
    find_tool("littlegraph").unwrap_or_else(|| {
        panic!(
            "littlegraph (the Neo4j Query API server these tests write to) is not on PATH or in \
             ~/.cargo/bin: run scripts/littlegraph.sh (`make test` does)"
        )
    })
}

pub(crate) fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A plain HTTP/1.1 POST of JSON; returns (status, body).
pub(crate) fn http_post_json(port: u16, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, rest.to_owned()))
}

/// littlegraph serving a store directory, killed by PID on drop.
pub(crate) struct Graph {
    pub(crate) child: Option<Child>,
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
}

impl Graph {
    pub(crate) fn new(dir: &Path, port: u16) -> Self {
        Self {
            child: None,
            dir: dir.to_path_buf(),
            port,
            log: dir.with_extension("log"),
        }
    }

    /// Creates the store if needed and serves it (Bolt on a free port, the
    /// Query API on `port`).
    pub(crate) fn start(&mut self) {
        if !self.dir.join("neostore").exists() {
            let out = Command::new(littlegraph())
                .arg("load")
                .arg(&self.dir)
                .arg("-")
                .stdin(Stdio::null())
                .output()
                .expect("littlegraph load");
            assert!(
                out.status.success(),
                "littlegraph load: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(littlegraph())
            .arg("serve")
            .arg(&self.dir)
            .args(["--bolt", &format!("127.0.0.1:{}", free_port())])
            .args(["--query", &format!("127.0.0.1:{}", self.port)])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start littlegraph");
        self.child = Some(child);
        let port = self.port;
        wait_for(Duration::from_secs(15), "littlegraph to listen", || {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "littlegraph exited ({st}):\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
    }

    /// Kills it by PID and reaps it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The rows of a read query, or the error text.
    pub(crate) fn query(&self, cypher: &str) -> Result<Vec<Vec<Value>>, String> {
        let body = json!({ "statement": cypher }).to_string();
        let (status, text) =
            http_post_json(self.port, "/db/self/query/v2", &body).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if !(200..300).contains(&status) {
            return Err(format!("HTTP {status}: {text}"));
        }
        Ok(v["data"]["values"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.as_array().cloned().unwrap_or_default())
            .collect())
    }

    /// Rows as sorted vectors of strings.
    pub(crate) fn strings(&self, cypher: &str) -> Vec<Vec<String>> {
        let mut rows: Vec<Vec<String>> = self
            .query(cypher)
            .unwrap_or_else(|e| panic!("query {cypher}: {e}"))
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect()
            })
            .collect();
        rows.sort();
        rows
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        self.stop();
    }
}

const EDGES: &str = "MATCH (a:Process)-[e:TCP_LINK]->(b:Process) RETURN a.name, b.name";

/// A running gala-spider, killed on drop.
pub(crate) struct Spider {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
}

impl Spider {
    pub(crate) fn start(dir: &Path, config: &str, port: u16) -> Self {
        let cfg = dir.join("gala-spider.toml");
        std::fs::write(&cfg, config).expect("write config");
        let log = dir.join("spider.log");
        let child = Command::new(spider_bin())
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn gala-spider");
        let mut s = Self { child, port, log };
        wait_for(Duration::from_secs(20), "gala-spider to serve", || {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("gala-spider exited early ({st}):\n{}", s.log_text());
            }
            http_get(port, "/gala-spider/api/v1/get_status")
                .ok()
                .filter(|(st, _)| *st == 200)
                .map(|_| ())
        });
        s
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn get_json(&self, path: &str) -> Value {
        let (st, body) = http_get(self.port, path).expect("GET");
        assert_eq!(st, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    pub(crate) fn metric(&self, series: &str) -> f64 {
        let (_, body) = http_get(self.port, "/metrics").expect("metrics");
        crate::harness::series_value(&body, &format!("{series} ")).unwrap_or(f64::NAN)
    }

    pub(crate) fn edges(&self) -> Vec<(String, String)> {
        let t = self.get_json("/api/v1/topology");
        let mut v: Vec<(String, String)> = t["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["source"].as_str().unwrap().to_owned(),
                    e["target"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for Spider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn spider_config(source: &str, graph_port: u16, port: u16) -> String {
    format!(
        r#"[global]
data_source = "logfile"
ui_source = "neo4j"
log_level = "info"

[logfile]
metric_dir = "{source}"
poll_ms = 50

[option]
expire_secs = 600
period_secs = 1

[neo4j]
address = "http://127.0.0.1:{graph_port}"
database = "self"
username = ""
timeout_ms = 2000

[server]
bind_addr = "127.0.0.1"
port = {port}
"#
    )
}

pub(crate) fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/data/spider").join(name))
        .expect("fixture")
        .replace("@NOW@", &now_ms().to_string())
}

pub(crate) fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open metrics.log");
    f.write_all(text.as_bytes()).expect("append");
}

pub(crate) fn pairs(v: &[(&str, &str)]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = v
        .iter()
        .map(|(a, b)| vec![(*a).to_owned(), (*b).to_owned()])
        .collect();
    out.sort();
    out
}

/// Runs headless chromium on `url` (flags per INFRA.md); returns the DOM
/// after the page's scripts ran, and saves a screenshot to `png`.
pub(crate) fn chromium(url: &str, png: &Path) -> String {
    let browser = ["chromium", "chromium-browser"]
        .iter()
        .find_map(|b| find_tool(b))
        .unwrap_or_else(|| {
            panic!("chromium is required for the page test: `make test` installs it (Debian package chromium)")
        });
    let run = |extra: &[String]| {
        let profile = tempfile::tempdir().expect("profile dir");
        let out = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--virtual-time-budget=8000",
                "--window-size=1400,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = run(&["--dump-dom".to_owned()]);
    let _ = std::fs::remove_file(png);
    run(&[format!("--screenshot={}", png.display())]);
    assert!(
        std::fs::metadata(png).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        png.display()
    );
    dom
}

/// Counts `needle` in `hay`.
pub(crate) fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn spider_known_topology_to_littlegraph_rest_and_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = dir.path().join("metrics");
    std::fs::create_dir_all(&metrics).expect("metrics dir");
    let log = metrics.join("metrics.log");
    append(&log, &fixture("known_topology.jsonl"));
    let mut graph = Graph::new(&dir.path().join("graph"), free_port());
    graph.start();
    let port = free_port();
    let sp = Spider::start(
        dir.path(),
        &spider_config(&metrics.display().to_string(), graph.port, port),
        port,
    );

    // Neo4j, over the Query API: exactly the known edges, hosts and flow.
    // The spider writes one statement at a time, flow halves after the
    // TCP_LINK edges: wait for the last of them before reading any.
    let want = pairs(&[("web.curl", "lb.nginx"), ("lb.nginx", "app.java")]);
    let flows =
        "MATCH (a:Process)-[e:NGINX_LINK]->(b:Process) RETURN e.half, a.name, b.name, e.flow_id";
    wait_for(
        Duration::from_secs(20),
        "the known edges and both flow halves in littlegraph",
        || (graph.strings(EDGES) == want && graph.strings(flows).len() == 2).then_some(()),
    );
    assert_eq!(
        graph.strings("MATCH (h:Host)-[:RUNON]->(p:Process) RETURN h.name, p.name, p.runon"),
        [
            ["app", "app.java", "app"],
            ["lb", "lb.nginx", "lb"],
            ["web", "web.curl", "web"]
        ]
    );
    assert_eq!(
        graph.strings(
            "MATCH (a:Process {name: 'web.curl'})-[e:TCP_LINK]->(b:Process) RETURN e.link_count, e.tx_bytes, e.rx_bytes, e.rtt, e.retran_packets"
        ),
        [["2", "300", "5000", "120", "5"]]
    );
    let flow = "nginx_link:lb:10.0.0.1>10.0.0.2:80>10.0.0.3:8080";
    assert_eq!(
        graph.strings(flows),
        [
            ["back", "lb.nginx", "app.java", flow],
            ["front", "web.curl", "lb.nginx", flow]
        ]
    );

    // REST: the snapshot, the legacy endpoints, the counted skips.
    assert_eq!(
        sp.edges(),
        [
            ("lb.nginx".to_owned(), "app.java".to_owned()),
            ("web.curl".to_owned(), "lb.nginx".to_owned())
        ]
    );
    let t = sp.get_json("/api/v1/topology");
    assert_eq!(t["hosts"], json!(["app", "lb", "web"]));
    assert_eq!(t["stats"]["self_links"], 1, "{t}");
    let st = sp.get_json("/gala-spider/api/v1/get_status");
    assert_eq!(st["code"], 200);
    let ents = sp.get_json(&format!(
        "/gala-spider/api/v1/get_entities?timestamp={}",
        now_ms()
    ));
    assert_eq!(ents["code"], 200);
    for id in [
        "web.curl",
        "lb.nginx",
        "app.java",
        "web.curl->lb.nginx",
        "web",
    ] {
        assert!(
            ents["entityids"].as_array().unwrap().contains(&json!(id)),
            "{id} in {}",
            ents["entityids"]
        );
    }
    let (bad, _) = http_get(port, "/gala-spider/api/v1/get_entities?timestamp=x").unwrap();
    assert_eq!(bad, 400);
    assert_eq!(
        sp.metric("gala_spider_records_total{outcome=\"bad_json\"}"),
        2.0
    );
    assert_eq!(
        sp.metric("gala_spider_records_total{outcome=\"unused_table\"}"),
        1.0
    );
    assert_eq!(sp.metric("gala_spider_neo4j_up"), 1.0);

    // Followed: appended records become a new edge, applied as a diff.
    let before = sp.metric("gala_spider_neo4j_statements_total");
    append(&log, &fixture("added_edge.jsonl"));
    let want3 = pairs(&[
        ("web.curl", "lb.nginx"),
        ("lb.nginx", "app.java"),
        ("app.java", "db.mysqld"),
    ]);
    wait_for(
        Duration::from_secs(20),
        "the appended edge in littlegraph",
        || (graph.strings(EDGES) == want3).then_some(()),
    );
    let stmts = sp.metric("gala_spider_neo4j_statements_total") - before;
    assert!(
        (1.0..=6.0).contains(&stmts),
        "a diff, not a redraw: {stmts} statements for one host, one process and one edge"
    );
    assert_eq!(sp.metric("gala_spider_neo4j_resyncs_total"), 1.0);

    // The page, in headless chromium: the DOM shows every node and edge,
    // and the LB flow's two halves in one colour.
    let art = artifacts();
    let dom = chromium(
        &format!("http://127.0.0.1:{port}/"),
        &art.join("spider-page.png"),
    );
    std::fs::write(art.join("spider-page.html"), &dom).expect("save DOM");
    for id in ["web.curl", "lb.nginx", "app.java", "db.mysqld"] {
        assert!(
            dom.contains(&format!("data-id=\"{id}\"")),
            "node {id} in the DOM:\n{dom}"
        );
    }
    for h in ["web", "lb", "app", "db"] {
        assert!(
            dom.contains(&format!("class=\"host\" data-host=\"{h}\"")),
            "host {h}:\n{dom}"
        );
    }
    assert_eq!(count(&dom, "class=\"edge\""), 3, "three edges:\n{dom}");
    assert!(
        dom.contains("data-source=\"web.curl\" data-target=\"lb.nginx\""),
        "{dom}"
    );
    assert!(
        dom.contains("data-source=\"app.java\" data-target=\"db.mysqld\""),
        "{dom}"
    );
    assert_eq!(
        count(&dom, "class=\"lb-flow\""),
        2,
        "two flow halves:\n{dom}"
    );
    let strokes: Vec<&str> = dom
        .split("class=\"lb-flow\"")
        .skip(1)
        .filter_map(|s| s.split("stroke=\"").nth(1)?.split('"').next())
        .collect();
    assert!(
        strokes.len() == 2 && strokes[0] == strokes[1],
        "one colour per flow: {strokes:?}"
    );
    assert!(dom.contains("data-edges=\"3\""), "status line: {dom}");
    assert!(dom.contains("4 links"), "edge labels carry metrics:\n{dom}");
    eprintln!("page artifacts: {}", art.display());
}

#[test]
fn spider_keeps_running_while_neo4j_is_down_and_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = dir.path().join("metrics");
    std::fs::create_dir_all(&metrics).expect("metrics dir");
    append(
        &metrics.join("metrics.log"),
        &fixture("known_topology.jsonl"),
    );
    let mut graph = Graph::new(&dir.path().join("graph"), free_port());
    let port = free_port();
    // Neo4j is down from the start.
    let sp = Spider::start(
        dir.path(),
        &spider_config(&metrics.display().to_string(), graph.port, port),
        port,
    );
    wait_for(Duration::from_secs(20), "counted Neo4j errors", || {
        (sp.metric("gala_spider_neo4j_errors_total") >= 3.0).then_some(())
    });
    assert_eq!(sp.metric("gala_spider_neo4j_up"), 0.0);
    assert_eq!(sp.edges().len(), 2, "the service keeps running");
    let once = |s: &Spider| count(&s.log_text(), "neo4j: write failed");
    assert_eq!(once(&sp), 1, "one error per outage:\n{}", sp.log_text());

    // It comes up: the whole graph is written.
    let want = pairs(&[("web.curl", "lb.nginx"), ("lb.nginx", "app.java")]);
    graph.start();
    wait_for(
        Duration::from_secs(20),
        "the graph after Neo4j came up",
        || (graph.strings(EDGES) == want).then_some(()),
    );
    wait_for(
        Duration::from_secs(10),
        "the end of the outage logged",
        || {
            sp.log_text()
                .contains("neo4j: writes work again")
                .then_some(())
        },
    );

    // A second outage while the graph changes (an unchanged graph writes
    // nothing, so it notices the outage at the first change), then back on
    // the same store: resent, no duplicates.
    graph.stop();
    let errs = sp.metric("gala_spider_neo4j_errors_total");
    append(&metrics.join("metrics.log"), &fixture("added_edge.jsonl"));
    wait_for(
        Duration::from_secs(20),
        "errors of the second outage",
        || (sp.metric("gala_spider_neo4j_errors_total") > errs + 1.0).then_some(()),
    );
    assert_eq!(once(&sp), 2, "one error per outage:\n{}", sp.log_text());
    graph.start();
    let want3 = pairs(&[
        ("web.curl", "lb.nginx"),
        ("lb.nginx", "app.java"),
        ("app.java", "db.mysqld"),
    ]);
    let t0 = Instant::now();
    while graph.query(EDGES).map(|_| graph.strings(EDGES)).ok() != Some(want3.clone()) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the caught-up graph: {:?}\nspider metrics:\n{}\nspider log:\n{}\nlittlegraph log:\n{}",
            graph.query(EDGES),
            http_get(sp.port, "/metrics")
                .map(|r| r.1)
                .unwrap_or_default(),
            sp.log_text(),
            std::fs::read_to_string(&graph.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        graph.strings("MATCH (h:Host) RETURN h.name"),
        [["app"], ["db"], ["lb"], ["web"]],
        "no duplicate nodes"
    );
    assert!(sp.metric("gala_spider_neo4j_resyncs_total") >= 2.0);
}

#[test]
fn spider_rejects_a_bad_config_with_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[global]\ndata_source = \"kafka\"\n[kafka]\nbroker = \"nohost\"\n[option]\nperiod_secs = 0\n",
    )
    .unwrap();
    let out = Command::new(spider_bin())
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run gala-spider");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let path = cfg.display();
    assert!(
        err.contains(&format!("{path}:4: key `kafka.broker`: expected host:port")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{path}:6: key `option.period_secs`: expected 1..=3600, got 0"
        )),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// End to end with the eBPF probe.

pub(crate) fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the gala-spider end-to-end test needs root (eBPF tcp_link probe, network and UTS namespaces); run `make test` as root"
    );
}

pub(crate) fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces joined by a veth pair, removed on drop:
/// `srv` at 10.201.N.1/24, `cli` at 10.201.N.2/24.
pub(crate) struct TwoNs {
    pub(crate) srv: String,
    pub(crate) cli: String,
    pub(crate) srv_ip: String,
    pub(crate) cli_ip: String,
}

impl TwoNs {
    pub(crate) fn new() -> Self {
        let id = std::process::id();
        let n = 1 + id % 250;
        let t = Self {
            srv: format!("spsrv{id}"),
            cli: format!("spcli{id}"),
            srv_ip: format!("10.201.{n}.1"),
            cli_ip: format!("10.201.{n}.2"),
        };
        let (va, vb) = (format!("spva{id}"), format!("spvb{id}"));
        run("ip", &["netns", "add", &t.srv]);
        run("ip", &["netns", "add", &t.cli]);
        run(
            "ip",
            &[
                "link", "add", &va, "netns", &t.srv, "type", "veth", "peer", "name", &vb, "netns",
                &t.cli,
            ],
        );
        for (ns, dev, ip) in [(&t.srv, &va, &t.srv_ip), (&t.cli, &vb, &t.cli_ip)] {
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev],
            );
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        t
    }
}

impl Drop for TwoNs {
    fn drop(&mut self) {
        for ns in [&self.srv, &self.cli] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A helper process of tests/data/spider/node.py inside a namespace.
pub(crate) type Node = crate::harness::Helper;

pub(crate) fn node(ns: &str, args: &[&str]) -> Node {
    Node::python(Some(ns), &repo().join("tests/data/spider/node.py"), args)
}

/// A gala-gopher agent with hostname `host` (its own UTS namespace), the
/// tcp_link probe on one process, metrics to Kafka, plus `extra` config.
/// `tracefs` says what it finds mounted (in a mount namespace of its own).
pub(crate) fn agent_as(
    host: &str,
    s: &Setup,
    broker: &str,
    pid: u32,
    extra: &str,
    tracefs: Tracefs,
) -> Agent {
    let cfg = format!(
        "{}\n[kafka]\nkafka_broker = \"{broker}\"\nqueue_buffering_max_ms = 5\n\n[[probes]]\nname = \"tcp_link\"\nparam = \"-t 1 -F {pid}\"\nswitch = \"on\"\n{extra}",
        s.base_config().replace(
            "[metric]\nout_channel = \"web_server\"",
            "[metric]\nout_channel = \"kafka\""
        )
    );
    agent_named(host, s, &cfg, &[], tracefs, "tcp_link")
}

/// A gala-gopher agent with hostname `host` (its own UTS namespace) on the
/// config text `cfg`, with `env`, seeing what `tracefs` says mounted; returns
/// once the eBPF probe `probe` logged that its programs are attached (and
/// fails at once if the agent exits or a probe is given up on).
pub(crate) fn agent_named(
    host: &str,
    s: &Setup,
    cfg: &str,
    env: &[(&str, &str)],
    tracefs: Tracefs,
    probe: &str,
) -> Agent {
    let path = s.path("gala-gopher.toml");
    std::fs::write(&path, cfg).expect("write config");
    let log = s.path("agent.log");
    let child = tracefs
        .command(&["--uts"], &format!("hostname {host}"), &bin())
        .envs(env.iter().copied())
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("unshare (util-linux) runs the agent in its own UTS namespace");
    let mut a = Agent {
        child,
        port: s.port,
        log,
    };
    let attached = format!("probe=\"{probe}\"");
    wait_for(
        Duration::from_secs(30),
        &format!("{probe} attached"),
        || {
            if let Ok(Some(st)) = a.child.try_wait() {
                panic!("agent {host} exited ({st}):\n{}", a.log_text());
            }
            let log = a.log_text();
            assert!(
                !log.contains("will not be restarted"),
                "a probe failed on {host}:\n{log}"
            );
            log.lines()
                .any(|l| l.contains("eBPF programs attached") && l.contains(&attached))
                .then_some(())
        },
    );
    a
}

#[test]
fn spider_end_to_end_ebpf_kafka_two_hosts_and_an_lb() {
    require_root();
    let probe_ok = std::fs::read_to_string(repo().join("probes-rs/src/lib.rs"))
        .is_ok_and(|s| s.contains("tcp_link::DEF"));
    assert!(
        probe_ok,
        "the eBPF tcp_link probe (issue 4) is not registered as native probe `tcp_link` in probes-rs/src/lib.rs"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = TwoNs::new();
    let broker = Broker::start(free_port(), &dir.path().join("tansu.log"), &["gala_gopher"]);
    let mut graph = Graph::new(&dir.path().join("graph"), free_port());
    graph.start();

    // Processes: in `srv`, a server, a backend and a proxy to the backend;
    // in `cli`, a client of the server and of the proxy.
    let (p_srv, p_back, p_proxy) = ("9001", "9002", "9003");
    let mut server = node(&ns.srv, &["server", "sp-server", &ns.srv_ip, p_srv]);
    server.expect("ready");
    let mut backend = node(&ns.srv, &["server", "sp-backend", &ns.srv_ip, p_back]);
    backend.expect("ready");
    let mut proxy = node(
        &ns.srv,
        &["proxy", "sp-proxy", &ns.srv_ip, p_proxy, &ns.srv_ip, p_back],
    );
    proxy.expect("ready");
    let to_srv = format!("{}:{p_srv}", ns.srv_ip);
    let to_proxy = format!("{}:{p_proxy}", ns.srv_ip);
    let mut client = node(&ns.cli, &["client", "sp-client", &to_srv, &to_proxy]);
    client.expect("waiting");

    // One agent per process, each with its hostname: hosts spider-srv
    // (server, backend), spider-lb (proxy + the nginx_link extend probe),
    // spider-cli (client).
    let setups: Vec<Setup> = (0..4).map(|_| Setup::new(&[])).collect();
    let nginx = setups[2].script(
        "nginx_link.sh",
        &format!(
            "while true; do echo '|nginx_link|{cli}|{srv}|{srv}|{p_proxy}|{p_back}|0|1|'; sleep 1; done",
            cli = ns.cli_ip,
            srv = ns.srv_ip
        ),
    );
    let nginx_probe = format!(
        "\n[[extend_probes]]\nname = \"nginx_link\"\ncommand = \"{}\"\nswitch = \"on\"\n",
        nginx.display()
    );
    let addr = broker.addr();
    let _agents = [
        // Two agents as on a fresh machine (no tracefs), two as on a
        // prepared one (tracefs mounted): the same topology from both.
        agent_as(
            "spider-srv",
            &setups[0],
            &addr,
            server.pid(),
            "",
            Tracefs::Absent,
        ),
        agent_as(
            "spider-srv",
            &setups[1],
            &addr,
            backend.pid(),
            "",
            Tracefs::Present,
        ),
        agent_as(
            "spider-lb",
            &setups[2],
            &addr,
            proxy.pid(),
            &nginx_probe,
            Tracefs::Absent,
        ),
        agent_as(
            "spider-cli",
            &setups[3],
            &addr,
            client.pid(),
            "",
            Tracefs::Present,
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
group_id = "spider-e2e-{pid}"
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

    // The consumer group joins (tansu can take a while the first time):
    // wait until the spider has read records before the connections start,
    // so that the latency measured below is the pipeline's.
    wait_for(
        Duration::from_secs(90),
        "the spider to read from Kafka",
        || (sp.metric("gala_spider_records_received_total") > 0.0).then_some(()),
    );
    let t0 = Instant::now();
    client.say("go");
    client.expect("connected");
    let (cli, srv, lb, back) = (
        "spider-cli.sp-client",
        "spider-srv.sp-server",
        "spider-lb.sp-proxy",
        "spider-srv.sp-backend",
    );
    let direct = vec![cli.to_owned(), srv.to_owned()];
    wait_for(
        Duration::from_secs(60),
        "the edge client -> server in littlegraph",
        || graph.strings(EDGES).contains(&direct).then_some(()),
    );
    let latency = t0.elapsed();
    let want = pairs(&[(cli, srv), (cli, lb), (lb, back)]);
    wait_for(
        Duration::from_secs(60),
        "all three edges in littlegraph",
        || (graph.strings(EDGES) == want).then_some(()),
    );
    let line = format!(
        "spider e2e latency: new connection -> edge in Neo4j: {:.2} s = {:.1} spider periods (agent period 1 s, spider period 1 s)",
        latency.as_secs_f64(),
        latency.as_secs_f64() / 1.0
    );
    eprintln!("{line}");
    std::fs::write(
        artifacts().join("spider-e2e-latency.txt"),
        format!("{line}\n"),
    )
    .expect("save");

    // Cypher: the processes run on the right hosts, the edge carries traffic.
    assert_eq!(
        graph.strings(&format!(
            "MATCH (h:Host)-[:RUNON]->(p:Process {{name: '{cli}'}}) RETURN h.name"
        )),
        [["spider-cli"]]
    );
    let m = graph.strings(&format!(
        "MATCH (a:Process {{name: '{cli}'}})-[e:TCP_LINK]->(b:Process {{name: '{srv}'}}) RETURN e.link_count, e.tx_bytes, e.rx_bytes"
    ));
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0][0], "1", "one kept connection: {m:?}");
    assert!(m[0][1].parse::<u64>().unwrap_or(0) > 0, "bytes sent: {m:?}");

    // The LB flow: front and back halves, one flow id.
    // The nginx_link records come from their own probe and may land a
    // period after the TCP edges.
    let mut flows = wait_for(Duration::from_secs(30), "both NGINX_LINK halves", || {
        let f = graph.strings(
            "MATCH (a:Process)-[e:NGINX_LINK]->(b:Process) RETURN e.half, a.name, b.name, e.flow_id",
        );
        (f.len() == 2).then_some(f)
    });
    flows.sort();
    assert_eq!(flows[0][..3], ["back", lb, back]);
    assert_eq!(flows[1][..3], ["front", cli, lb]);
    assert_eq!(flows[0][3], flows[1][3], "one flow id");

    // REST: the same edge with the right processes (pids) and hosts.
    let t = sp.get_json("/api/v1/topology");
    let proc_of = |id: &str| {
        t["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("process {id} in {t}"))
    };
    assert_eq!(proc_of(cli)["pids"], json!([client.pid()]));
    assert_eq!(proc_of(srv)["pids"], json!([server.pid()]));
    assert_eq!(proc_of(cli)["host"], "spider-cli");
    assert_eq!(proc_of(srv)["host"], "spider-srv");
    let e = t["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == cli && e["target"] == srv)
        .cloned()
        .unwrap_or_else(|| panic!("edge in {t}"));
    assert_eq!(e["server_ports"], json!([9001]));
    let ents = sp.get_json("/gala-spider/api/v1/get_entities");
    assert!(
        ents["entityids"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("{cli}->{srv}"))),
        "{ents}"
    );
}

/// Two spiders of one consumer group share the partitions of the metric
/// topic: each sees the hosts of its partitions, together all of them.
#[test]
fn spider_consumer_group_shares_the_partitions() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(free_port(), &dir.path().join("tansu.log"), &[]);
    let tansu = find_tool("tansu").expect("tansu (scripts/kafka.sh)");
    let url = format!("tcp://{}", broker.addr());
    let out = Command::new(tansu)
        .args([
            "topic",
            "create",
            "--broker",
            &url,
            "--partitions",
            "2",
            "gala_gopher",
        ])
        .output()
        .expect("tansu topic create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let spider = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let port = free_port();
        let cfg = format!(
            "[global]\ndata_source = \"kafka\"\nui_source = \"none\"\n[kafka]\ntopic = \"gala_gopher\"\n\
             broker = \"{}\"\ngroup_id = \"shared-{}\"\nauto_offset_reset = \"earliest\"\n\
             [option]\nperiod_secs = 1\n[server]\nport = {port}\n",
            broker.addr(),
            std::process::id()
        );
        Spider::start(&d, &cfg, port)
    };
    let a = spider("a");
    let b = spider("b");

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("queue.buffering.max.ms", "0")
        .create()
        .expect("producer");
    let seen = |s: &Spider| -> std::collections::BTreeSet<String> {
        s.get_json("/api/v1/topology")["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_owned())
            .collect()
    };
    // Each round reports new hosts; once the group is stable, the hosts of
    // a round split between the two spiders: none twice, none missing.
    let round_hosts = |r: usize| -> std::collections::BTreeSet<String> {
        (0..16).map(|i| format!("r{r}h{i}")).collect()
    };
    let t0 = Instant::now();
    for r in 0.. {
        for h in &round_hosts(r) {
            let rec = json!({"timestamp": now_ms(), "hostname": h, "table_name": "tcp_link",
                "pid": "1", "process_name": "p", "role": "1", "client_ip": "10.9.0.1",
                "server_ip": "10.9.0.2", "server_port": "80", "protocol": "2"})
            .to_string();
            let _ = producer.send(BaseRecord::to("gala_gopher").key(h.as_str()).payload(&rec));
        }
        let _ = producer.flush(Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1500));
        if r == 0 {
            continue;
        }
        let want = round_hosts(r - 1);
        let sa: std::collections::BTreeSet<String> =
            seen(&a).intersection(&want).cloned().collect();
        let sb: std::collections::BTreeSet<String> =
            seen(&b).intersection(&want).cloned().collect();
        let all: std::collections::BTreeSet<String> = sa.union(&sb).cloned().collect();
        if !sa.is_empty() && !sb.is_empty() && sa.is_disjoint(&sb) && all == want {
            eprintln!("round {}: spider a {sa:?}, spider b {sb:?}", r - 1);
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the two spiders did not share the partitions: round {}: a {sa:?}, b {sb:?}\nlog a:\n{}\nlog b:\n{}",
            r - 1,
            a.log_text(),
            b.log_text()
        );
    }
}
