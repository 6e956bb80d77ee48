//! haproxy_link end to end, on the stock Debian haproxy (issue 15): real
//! haproxy (an HTTP-mode and a TCP-mode frontend, each balancing over two
//! python backends) in a network namespace, clients in another, the agent
//! with tcp_link and haproxy_link, gala-spider (logfile source) and
//! littlegraph. Also the refusal of a haproxy whose version the probe does
//! not know (a copy with a patched version string), the agent running on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    free_port, http_get, repo, wait_for, Agent, Helper, Setup, Tracefs, TwoHosts,
};
use crate::spider::{agent_named, require_root, spider_config, Graph, Spider};

const HAPROXY: &str = "/usr/sbin/haproxy";
const HTTP_PORT: u16 = 8180;
const TCP_PORT: u16 = 8190;
const BACKENDS: [(&str, u16); 2] = [("hap-back1", 8181), ("hap-back2", 8182)];
/// haproxy_link's period in the flow test, seconds: long enough for each
/// burst of requests to fall in one period.
const PERIOD: u64 = 5;
/// Requests of the HTTP client (one keep-alive connection) and connections
/// of the TCP client.
const HTTP_REQUESTS: u64 = 200;
const TCP_CONNECTIONS: u64 = 100;

fn data(name: &str) -> PathBuf {
    repo().join("tests/data/haproxy").join(name)
}

/// A haproxy config: an HTTP-mode frontend on `ip:http` and a TCP-mode one
/// on `ip:tcp`, both round robin over `backends` at `back_ip`.
fn haproxy_config(
    ip: &str,
    http: u16,
    tcp: u16,
    back_ip: &str,
    backends: &[(&str, u16)],
) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("    server b{i} {back_ip}:{p}\n"))
        .collect();
    format!(
        "global\n    maxconn 1000\n\ndefaults\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\n\
         frontend web\n    mode http\n    bind {ip}:{http}\n    default_backend apps_http\n\n\
         backend apps_http\n    mode http\n    balance roundrobin\n{servers}\n\
         frontend tcpfe\n    mode tcp\n    bind {ip}:{tcp}\n    default_backend apps_tcp\n\n\
         backend apps_tcp\n    mode tcp\n    balance roundrobin\n{servers}"
    )
}

/// A haproxy (`binary`, foreground) in `netns`, stopped by PID on drop.
struct Haproxy {
    child: Child,
}

impl Haproxy {
    fn start(binary: &Path, netns: &str, cfg: &Path, log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("haproxy log");
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(binary)
            .arg("-f")
            .arg(cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (scripts/deps.sh installs haproxy)",
                    binary.display()
                )
            });
        Self { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test client (tests/data/haproxy/client.py) in `netns`.
fn client(netns: &str, name: &str, mode: &str, ip: &str, port: u16, count: u64) -> Helper {
    let mut c = Helper::python(
        Some(netns),
        &data("client.py"),
        &[name, mode, ip, &port.to_string(), &count.to_string()],
    );
    c.expect("waiting");
    c
}

/// Runs one burst of `c` and checks every request got its 200.
fn burst(c: &mut Helper, count: u64) {
    c.say("go");
    c.expect(&format!("done {count}"));
}

/// A backend (tests/data/haproxy/backend.py) in `netns`.
fn backend(netns: &str, name: &str, ip: &str, port: u16) -> Helper {
    let mut b = Helper::python(
        Some(netns),
        &data("backend.py"),
        &[name, ip, &port.to_string()],
    );
    b.expect("ready");
    b
}

/// The agent with `probes` config, metrics to its log files, hostname
/// `host` (own UTS namespace), as on a fresh machine (no tracefs).
fn agent(s: &Setup, host: &str, probes: &str, env: &[(&str, &str)]) -> Agent {
    let cfg = format!(
        "{}\n{probes}",
        s.base_config().replace(
            "[metric]\nout_channel = \"web_server\"",
            "[metric]\nout_channel = \"logs\""
        )
    );
    agent_named(host, s, &cfg, env, Tracefs::Absent, "haproxy_link")
}

/// The haproxy_link records the agent wrote so far (its metrics log).
fn records(s: &Setup) -> Vec<Value> {
    let text = std::fs::read_to_string(s.path("logs/metrics/metrics.log")).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("\"haproxy_link\""))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["table_name"] == "haproxy_link")
        .collect()
}

fn field<'a>(r: &'a Value, k: &str) -> &'a str {
    r[k].as_str().unwrap_or_else(|| panic!("field {k} in {r}"))
}

fn count_of(r: &Value) -> u64 {
    field(r, "link_count")
        .parse()
        .unwrap_or_else(|_| panic!("link_count in {r}"))
}

/// link_count summed per server port, over the records from `client_ip`
/// to `vport`.
fn per_server(recs: &[Value], client_ip: &str, vport: u16) -> BTreeMap<u16, u64> {
    let mut m = BTreeMap::new();
    for r in recs {
        if field(r, "client_ip") == client_ip && field(r, "virtual_port") == vport.to_string() {
            let p: u16 = field(r, "server_port").parse().expect("server_port");
            *m.entry(p).or_default() += count_of(r);
        }
    }
    m
}

/// An empty littlegraph store whose record files are made larger (zero
/// records are free ones) before it is served: littlegraph does not grow
/// them, and a new store has room for about 60 long strings (the flow ids),
/// after which it refuses the spider's writes ("dynamic string store has no
/// preallocated record capacity").
fn roomy_store(dir: &Path) {
    let out = Command::new(crate::spider::littlegraph())
        .arg("load")
        .arg(dir)
        .arg("-")
        .stdin(Stdio::null())
        .output()
        .expect("littlegraph load");
    assert!(
        out.status.success(),
        "littlegraph load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "propertystore.db.strings",
        "propertystore.db",
        "propertystore.db.arrays",
        "nodestore.db",
        "relationshipstore.db",
        "relationshipgroupstore.db",
    ] {
        let p = dir.join(format!("neostore.{f}"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        file.set_len(256 << 10).expect("grow the store file");
    }
}

fn within_5pct(got: u64, want: u64) -> bool {
    got.abs_diff(want) * 100 <= want * 5
}

#[test]
fn haproxy_link_http_and_tcp_flows_are_stitched_by_the_spider() {
    require_root();
    let t0 = Instant::now();
    let net = TwoHosts::new("hap", 211);
    let (srv_ip, cli_ip) = (net.server_ip.clone(), net.client_ip.clone());
    let _backs: Vec<Helper> = BACKENDS
        .iter()
        .map(|(n, p)| backend(&net.server, n, &srv_ip, *p))
        .collect();
    let s = Setup::new(&[]);
    let cfg = s.path("haproxy.cfg");
    std::fs::write(
        &cfg,
        haproxy_config(&srv_ip, HTTP_PORT, TCP_PORT, &srv_ip, &BACKENDS),
    )
    .expect("haproxy.cfg");
    let hap = Haproxy::start(
        Path::new(HAPROXY),
        &net.server,
        &cfg,
        &s.path("haproxy.log"),
    );
    let host = "hap-lb";
    let mut a = agent(
        &s,
        host,
        &format!(
            "[[probes]]\nname = \"tcp_link\"\nparam = \"-t 1\"\nswitch = \"on\"\n\
             snoopers = {{ proc_name = [ {{ comm = \"^(hap-|haproxy$)\", cmdline = \"\" }} ] }}\n\n\
             [[probes]]\nname = \"haproxy_link\"\nparam = \"-t {PERIOD}\"\nswitch = \"on\"\n"
        ),
        &[],
    );
    let log = a.log_text();
    assert!(
        log.contains("uprobe attached to back_handle_st_rdy of /usr/sbin/haproxy: haproxy 2.6.12"),
        "the stock haproxy is hooked:\n{log}"
    );

    let graph_dir = s.path("graph");
    roomy_store(&graph_dir);
    let mut graph = Graph::new(&graph_dir, free_port());
    graph.start();
    let sp_port = free_port();
    let sp_dir = s.path("spider");
    std::fs::create_dir_all(&sp_dir).expect("spider dir");
    let metric_dir = s.path("logs/metrics");
    let sp = Spider::start(
        &sp_dir,
        &spider_config(&metric_dir.display().to_string(), graph.port, sp_port),
        sp_port,
    );

    // Clients: a warm-up one in the server's namespace (its own address, so
    // its records are told apart), then the measured ones in theirs.
    let mut warm = client(&net.server, "hap-warm", "http", &srv_ip, HTTP_PORT, 2);
    let mut http = client(
        &net.client,
        "hap-cli-http",
        "http",
        &srv_ip,
        HTTP_PORT,
        HTTP_REQUESTS,
    );
    let mut tcp = client(
        &net.client,
        "hap-cli-tcp",
        "tcp",
        &srv_ip,
        TCP_PORT,
        TCP_CONNECTIONS,
    );
    burst(&mut warm, 2);
    // The warm-up's record marks the end of a period: the bursts then fall
    // in the next one (they take well under a period).
    wait_for(
        Duration::from_secs(3 * PERIOD),
        "the warm-up's haproxy_link record",
        || {
            records(&s)
                .iter()
                .any(|r| field(r, "client_ip") == srv_ip)
                .then_some(())
        },
    );
    let tb = Instant::now();
    burst(&mut http, HTTP_REQUESTS);
    burst(&mut tcp, TCP_CONNECTIONS);
    let burst_secs = tb.elapsed().as_secs_f64();

    // The agent's records: per mode, both backends, counts as sent
    // (HTTP: requests on one connection; TCP: connections).
    let (http_m, tcp_m) = wait_for(
        Duration::from_secs(4 * PERIOD),
        "haproxy_link records of every request",
        || {
            let recs = records(&s);
            let h = per_server(&recs, &cli_ip, HTTP_PORT);
            let t = per_server(&recs, &cli_ip, TCP_PORT);
            (h.values().sum::<u64>() >= HTTP_REQUESTS && t.values().sum::<u64>() >= TCP_CONNECTIONS)
                .then_some((h, t))
        },
    );
    let recs = records(&s);
    for r in recs.iter().filter(|r| field(r, "client_ip") == cli_ip) {
        assert_eq!(field(r, "process_name"), "haproxy", "{r}");
        assert_eq!(
            field(r, "virtual_ip"),
            srv_ip,
            "the address the client reached: {r}"
        );
        assert_eq!(
            field(r, "local_ip"),
            srv_ip,
            "haproxy's source address: {r}"
        );
        assert_eq!(field(r, "server_ip"), srv_ip, "{r}");
        assert_eq!(
            (field(r, "protocol"), field(r, "family")),
            ("6", "2"),
            "{r}"
        );
        assert_eq!(field(r, "hostname"), host, "{r}");
    }
    let ports: Vec<u16> = BACKENDS.iter().map(|b| b.1).collect();
    for (mode, m, want) in [
        ("http", &http_m, HTTP_REQUESTS),
        ("tcp", &tcp_m, TCP_CONNECTIONS),
    ] {
        assert_eq!(
            m.keys().copied().collect::<Vec<_>>(),
            ports,
            "{mode}: both backends: {m:?}"
        );
        assert_eq!(
            m.values().sum::<u64>(),
            want,
            "{mode}: one count per stream: {m:?}"
        );
        assert!(
            m.values().all(|&n| n * 4 >= want),
            "{mode}: round robin spreads the streams: {m:?}"
        );
    }

    // The spider: each flow client -> haproxy -> backend, both halves, the
    // link counts those of the bursts (one period each).
    let names = |t: &Value| -> BTreeMap<String, String> {
        t["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap_or_default().to_owned(),
                    format!(
                        "{}.{}",
                        p["host"].as_str().unwrap_or_default(),
                        p["name"].as_str().unwrap_or_default()
                    ),
                )
            })
            .collect()
    };
    // (half, source, target, virtual port, server port) -> link_count
    type Halves = BTreeMap<(String, String, String, u16, u16), u64>;
    let flows = |t: &Value| -> Halves {
        let n = names(t);
        let mut out = Halves::new();
        for h in t["lb_flows"].as_array().expect("lb_flows") {
            let id = h["flow_id"].as_str().unwrap_or_default();
            if h["kind"] != "haproxy_link" || !id.contains(&format!(":{cli_ip}>")) {
                continue;
            }
            // haproxy_link:<host>:<client>><virtual>:<vport>><server>:<sport>
            let mut ends = id.rsplit('>').map(|e| e.rsplit(':').next().unwrap_or("0"));
            let sport: u16 = ends.next().unwrap_or("0").parse().unwrap_or(0);
            let vport: u16 = ends.next().unwrap_or("0").parse().unwrap_or(0);
            let name = |k: &str| {
                n.get(h[k].as_str().unwrap_or_default())
                    .cloned()
                    .unwrap_or_default()
            };
            out.insert(
                (
                    h["half"].as_str().unwrap_or_default().to_owned(),
                    name("source"),
                    name("target"),
                    vport,
                    sport,
                ),
                h["link_count"].as_u64().unwrap_or(0),
            );
        }
        out
    };
    let lb = format!("{host}.haproxy");
    let mut want: Vec<(String, String, String, u16, u16)> = Vec::new();
    for (cli, vport) in [("hap-cli-http", HTTP_PORT), ("hap-cli-tcp", TCP_PORT)] {
        for (b, sport) in BACKENDS {
            want.push((
                "back".into(),
                lb.clone(),
                format!("{host}.{b}"),
                vport,
                sport,
            ));
            want.push((
                "front".into(),
                format!("{host}.{cli}"),
                lb.clone(),
                vport,
                sport,
            ));
        }
    }
    want.sort();
    let got = wait_for(
        Duration::from_secs(30),
        "the spider's haproxy flows (REST)",
        || {
            let f = flows(&sp.get_json("/api/v1/topology"));
            (f.keys().cloned().collect::<Vec<_>>() == want).then_some(f)
        },
    );
    for (vport, sent) in [(HTTP_PORT, HTTP_REQUESTS), (TCP_PORT, TCP_CONNECTIONS)] {
        for half in ["front", "back"] {
            let sum: u64 = got
                .iter()
                .filter(|(k, _)| k.0 == half && k.3 == vport)
                .map(|(_, n)| n)
                .sum();
            assert!(
                within_5pct(sum, sent),
                "{half} halves of port {vport}: link counts {sum}, {sent} sent (within 5%): {got:?}\nrecords: {recs:?}"
            );
        }
    }

    // littlegraph: the same halves as HAPROXY_LINK relationships.
    let query = "MATCH (a:Process)-[e:HAPROXY_LINK]->(b:Process) RETURN e.half, a.runon, a.comm, b.runon, b.comm, e.flow_id, e.link_count";
    let deadline = Instant::now() + Duration::from_secs(30);
    let neo = loop {
        let rows = graph.strings(query);
        let mine: Vec<Vec<String>> = rows
            .iter()
            .filter(|r| r.get(5).is_some_and(|f| f.contains(&format!(":{cli_ip}>"))))
            .cloned()
            .collect();
        if mine.len() == want.len() {
            break mine;
        }
        assert!(
            Instant::now() < deadline,
            "HAPROXY_LINK in littlegraph: {} of {} halves; rows {rows:?}\nspider log:\n{}",
            mine.len(),
            want.len(),
            sp.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let mut neo_sum: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in &neo {
        let (a, b) = (format!("{}.{}", r[1], r[2]), format!("{}.{}", r[3], r[4]));
        assert!(
            want.iter().any(|w| w.0 == r[0] && w.1 == a && w.2 == b),
            "unexpected half {r:?}"
        );
        *neo_sum.entry((r[0].clone(), a)).or_default() += r[6].parse::<u64>().unwrap_or(0);
    }
    let http_front = neo_sum
        .get(&("front".to_owned(), format!("{host}.hap-cli-http")))
        .copied()
        .unwrap_or(0);
    assert!(within_5pct(http_front, HTTP_REQUESTS), "Neo4j: {neo:?}");

    let line = format!(
        "haproxy_link e2e: {HTTP_REQUESTS} HTTP requests (keep-alive) and {TCP_CONNECTIONS} TCP connections in {burst_secs:.2} s; agent records per backend http {http_m:?} tcp {tcp_m:?}; spider halves {got:?}; {:.1} s in all",
        t0.elapsed().as_secs_f64()
    );
    eprintln!("{line}");
    drop(hap);
    assert!(
        a.child.try_wait().expect("agent state").is_none(),
        "the agent runs"
    );
    a.stop();
}

/// Replaces every `from` by `to` (same length) in `data`.
fn patch(data: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while let Some(p) = data[i..].windows(from.len()).position(|w| w == from) {
        data[i + p..i + p + to.len()].copy_from_slice(to);
        i += p + from.len();
        n += 1;
    }
    n
}

#[test]
fn haproxy_link_refuses_a_version_it_does_not_know_and_runs_on() {
    require_root();
    let net = TwoHosts::new("hapr", 212);
    let srv_ip = net.server_ip.clone();
    let s = Setup::new(&[]);
    // A copy of the stock binary whose version string says 2.6.99.
    let mut bytes = std::fs::read(HAPROXY)
        .unwrap_or_else(|e| panic!("{HAPROXY}: {e} (scripts/deps.sh installs haproxy)"));
    assert!(patch(&mut bytes, b"2.6.12-1+deb12u", b"2.6.99-1+deb12u") >= 1);
    let copy_dir = s.path("bin");
    std::fs::create_dir_all(&copy_dir).expect("bin dir");
    let copy = copy_dir.join("haproxy");
    std::fs::write(&copy, &bytes).expect("write the copy");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let backs: [(&str, u16); 1] = [("hapr-back", 8281)];
    let _b = backend(&net.server, backs[0].0, &srv_ip, backs[0].1);
    let cfg_copy = s.path("copy.cfg");
    std::fs::write(
        &cfg_copy,
        haproxy_config(&srv_ip, 8280, 8290, &srv_ip, &backs),
    )
    .expect("cfg");
    let cfg_stock = s.path("stock.cfg");
    std::fs::write(
        &cfg_stock,
        haproxy_config(&srv_ip, 8380, 8390, &srv_ip, &backs),
    )
    .expect("cfg");
    let patched = Haproxy::start(&copy, &net.server, &cfg_copy, &s.path("copy.log"));
    let stock = Haproxy::start(
        Path::new(HAPROXY),
        &net.server,
        &cfg_stock,
        &s.path("stock.log"),
    );
    let mut via_copy = client(&net.client, "hapr-cli1", "http", &srv_ip, 8280, 20);
    let mut via_stock = client(&net.client, "hapr-cli2", "http", &srv_ip, 8380, 20);
    // The copy answers (it is a working haproxy), before the agent too.
    burst(&mut via_copy, 20);

    let mut a = agent(
        &s,
        "hapr-lb",
        "[[probes]]\nname = \"haproxy_link\"\nparam = \"-t 1\"\nswitch = \"on\"\n",
        &[],
    );
    let refusal = format!(
        "haproxy binary {} refused: haproxy version 2.6.99-1+deb12u",
        copy.display()
    );
    let log = wait_for(
        Duration::from_secs(10),
        "the refusal of the patched copy",
        || {
            let log = a.log_text();
            log.contains(&refusal).then_some(log)
        },
    );
    let line = log
        .lines()
        .find(|l| l.contains(&refusal))
        .unwrap_or_default();
    for part in [
        "WARN",
        "docs/haproxy_link.md",
        "GALA_GOPHER_HAPROXY_LAYOUT",
        "2.6.12",
    ] {
        assert!(line.contains(part), "the refusal names {part}: {line}");
    }
    assert!(
        log.contains("uprobe attached to back_handle_st_rdy of /usr/sbin/haproxy"),
        "the stock haproxy beside it is hooked:\n{log}"
    );
    eprintln!("refusal: {line}");

    // Both get traffic; only the stock one is counted, and the agent and
    // the probe run on.
    burst(&mut via_copy, 20);
    burst(&mut via_stock, 20);
    let counted = wait_for(
        Duration::from_secs(10),
        "records of the stock haproxy",
        || {
            let recs = records(&s);
            let n: u64 = recs
                .iter()
                .filter(|r| field(r, "virtual_port") == "8380")
                .map(count_of)
                .sum();
            (n >= 20).then_some(recs)
        },
    );
    assert!(
        counted.iter().all(|r| field(r, "virtual_port") != "8280"),
        "nothing is counted for the refused binary: {counted:?}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let log = a.log_text();
    assert_eq!(
        log.matches(&refusal).count(),
        1,
        "the refusal is said once, not at every scan:\n{log}"
    );
    assert!(
        a.child.try_wait().expect("agent state").is_none(),
        "the agent runs:\n{log}"
    );
    let (st, _) = http_get(a.port, "/metrics").expect("the agent serves /metrics");
    assert_eq!(st, 200);
    // The stock haproxy's pid is the one whose records came in.
    assert!(Path::new(&format!("/proc/{}", stock.pid())).exists());
    drop(patched);
    drop(stock);
    a.stop();
}
