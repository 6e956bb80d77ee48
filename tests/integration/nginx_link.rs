//! nginx_link end to end, on the stock Debian nginx (issue 15): real nginx
//! (an http `proxy_pass` and a `stream` proxy, each to two backends) in a
//! network namespace, a client in another, the agent with tcp_link and
//! nginx_link, gala-spider (logfile source) and littlegraph. Also an nginx
//! reload during the test, and the refusal of a binary the probe cannot
//! handle with the agent running on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{free_port, repo, wait_for, Agent, Helper, Setup, TwoHosts};
use crate::spider::{require_root, spider_config, Graph, Spider};

const NGINX: &str = "/usr/sbin/nginx";
const HTTP_PORT: u16 = 8080;
const STREAM_PORT: u16 = 8090;
const BACKENDS: [(&str, u16); 2] = [("ngx-back1", 8081), ("ngx-back2", 8082)];
/// nginx_link's period in these tests, seconds.
const PERIOD: u64 = 3;

fn data(name: &str) -> PathBuf {
    repo().join("tests/data/nginx").join(name)
}

/// The children of `pid` (from /proc/<pid>/task/*/children).
fn children(pid: u32) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

/// An nginx master (and its workers) run by the test, stopped by pid.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// `binary -p dir -c dir/nginx.conf` in the foreground with a master,
    /// inside `netns` when given.
    fn start(binary: &Path, netns: Option<&str>, dir: &Path, conf: &str) -> Self {
        std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let child = cmd
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off; master_process on;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut n = Self {
            child,
            dir: dir.to_path_buf(),
        };
        wait_for(Duration::from_secs(15), "nginx workers", || {
            if let Ok(Some(st)) = n.child.try_wait() {
                panic!("nginx exited ({st}): {}", n.error_log());
            }
            (n.workers().len() == 2).then_some(())
        });
        n
    }

    fn master(&self) -> u32 {
        self.child.id()
    }

    fn workers(&self) -> BTreeSet<u32> {
        children(self.master())
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of our own child.
        unsafe { libc::kill(self.master() as libc::pid_t, sig) };
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let workers = self.workers();
        self.signal(libc::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for w in workers {
            // Only if it is still an nginx of ours (not a reused pid).
            let comm = std::fs::read_to_string(format!("/proc/{w}/comm")).unwrap_or_default();
            let cmd = std::fs::read_to_string(format!("/proc/{w}/cmdline")).unwrap_or_default();
            if comm.trim() == "nginx" && cmd.contains("worker") {
                // SAFETY: kill(2) on a worker of the master we started.
                unsafe { libc::kill(w as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

/// The test nginx.conf for backends at `ip`.
fn nginx_conf(dir: &Path, ip: &str) -> String {
    std::fs::read_to_string(data("nginx.conf.in"))
        .expect("tests/data/nginx/nginx.conf.in")
        .replace("@DIR@", &dir.display().to_string())
        .replace("@HTTP_PORT@", &HTTP_PORT.to_string())
        .replace("@STREAM_PORT@", &STREAM_PORT.to_string())
        .replace("@BACK1@", &format!("{ip}:{}", BACKENDS[0].1))
        .replace("@BACK2@", &format!("{ip}:{}", BACKENDS[1].1))
}

/// One nginx_link record of the agent's metrics.log.
#[derive(Debug, Clone)]
struct Rec {
    line: usize,
    client_ip: String,
    virtual_ip: String,
    server_ip: String,
    virtual_port: u16,
    server_port: u16,
    is_l7: String,
    link_count: u64,
}

fn records(metrics: &Path) -> Vec<Rec> {
    let text = std::fs::read_to_string(metrics).unwrap_or_default();
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
    text.lines()
        .enumerate()
        .filter_map(|(line, l)| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["table_name"] == "nginx_link").then(|| Rec {
                line,
                client_ip: s(&v, "client_ip"),
                virtual_ip: s(&v, "virtual_ip"),
                server_ip: s(&v, "server_ip"),
                virtual_port: s(&v, "virtual_port").parse().unwrap_or(0),
                server_port: s(&v, "server_port").parse().unwrap_or(0),
                is_l7: s(&v, "is_l7"),
                link_count: s(&v, "link_count").parse().unwrap_or(0),
            })
        })
        .collect()
}

fn line_count(metrics: &Path) -> usize {
    std::fs::read_to_string(metrics)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// `OK back1=N back2=M` -> {backend: count}.
fn parse_done(line: &str) -> BTreeMap<String, u64> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The client helper and the file it writes its answers to.
struct Client {
    helper: Helper,
    result: PathBuf,
}

impl Client {
    /// Sends `get host port n` and returns the per-backend counts.
    fn get(&mut self, host: &str, port: u16, n: u32) -> BTreeMap<String, u64> {
        let _ = std::fs::remove_file(&self.result);
        self.helper.say(&format!("get {host} {port} {n}"));
        self.helper.expect("done");
        let line = std::fs::read_to_string(&self.result).expect("the client's result");
        let by = parse_done(&line);
        assert_eq!(
            by.values().sum::<u64>(),
            u64::from(n),
            "every request answered: {line}"
        );
        by
    }
}

/// Checks within 5 %.
fn within_5pct(got: u64, want: u64) -> bool {
    got.abs_diff(want) * 20 <= want
}

/// The stitched flows the spider serves: (vport, backend id) -> (front
/// source, front target, back link_count), for flows of nginx_link.
fn spider_flows(t: &Value) -> BTreeMap<(u16, String), (String, String, u64)> {
    let mut halves: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for h in t["lb_flows"].as_array().into_iter().flatten() {
        if h["kind"] == "nginx_link" {
            halves
                .entry(h["flow_id"].as_str().unwrap_or("").to_owned())
                .or_default()
                .push(h);
        }
    }
    let mut out = BTreeMap::new();
    for (id, hs) in halves {
        let front = hs.iter().find(|h| h["half"] == "front");
        let back = hs.iter().find(|h| h["half"] == "back");
        let (Some(f), Some(b)) = (front, back) else {
            continue;
        };
        // flow id: nginx_link:<host>:<client>><vip>:<vport>><server>:<sport>
        let vport: u16 = id
            .split('>')
            .nth(1)
            .and_then(|s| s.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        out.insert(
            (vport, b["target"].as_str().unwrap_or("").to_owned()),
            (
                f["source"].as_str().unwrap_or("").to_owned(),
                f["target"].as_str().unwrap_or("").to_owned(),
                b["link_count"].as_u64().unwrap_or(0),
            ),
        );
    }
    out
}

/// The process id the spider gives the process named `comm`.
fn proc_id(t: &Value, comm: &str) -> Option<String> {
    t["processes"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == comm)
        .and_then(|p| p["id"].as_str())
        .map(str::to_owned)
}

struct Rig {
    net: TwoHosts,
    metrics: PathBuf,
    client: Client,
    spider: Spider,
    graph: Graph,
}

impl Rig {
    /// One round: waits for a period boundary, sends `n_http` requests to
    /// the http proxy and `n_stream` to the stream proxy, and checks that
    /// the agent counted each (port, backend) exactly as the client saw it,
    /// and that the spider shows the stitched flows with those counts
    /// within 5 %. Returns false when the burst fell across a period
    /// boundary (the spider then holds a part of it: the round is retried).
    fn round(&mut self, n_http: u32, n_stream: u32, tag: &str) -> bool {
        let srv = self.net.server_ip.clone();
        // A period boundary: the record of one request appears.
        let before = line_count(&self.metrics);
        self.client.get(&srv, HTTP_PORT, 1);
        wait_for(
            Duration::from_secs(PERIOD * 3),
            "the record of the boundary request",
            || {
                records(&self.metrics)
                    .iter()
                    .any(|r| r.line >= before)
                    .then_some(())
            },
        );
        let start = line_count(&self.metrics);
        let t0 = Instant::now();
        let mut sent: BTreeMap<(u16, u16), u64> = BTreeMap::new();
        for (port, n) in [(HTTP_PORT, n_http), (STREAM_PORT, n_stream)] {
            for (name, count) in self.client.get(&srv, port, n) {
                let bport = BACKENDS
                    .iter()
                    .find(|(b, _)| *b == name)
                    .map(|(_, p)| *p)
                    .unwrap_or_else(|| panic!("unknown backend {name}"));
                sent.insert((port, bport), count);
            }
        }
        let burst = t0.elapsed();
        eprintln!("{tag}: sent {sent:?} in {burst:?}");
        // Two boundaries later every connection is reported.
        std::thread::sleep(Duration::from_secs(PERIOD * 2 + 1));
        let recs: Vec<Rec> = records(&self.metrics)
            .into_iter()
            .filter(|r| r.line >= start)
            .collect();
        let mut got: BTreeMap<(u16, u16), u64> = BTreeMap::new();
        let mut parts: BTreeMap<(u16, u16), Vec<u64>> = BTreeMap::new();
        for r in &recs {
            assert_eq!(r.client_ip, self.net.client_ip, "{r:?}");
            assert_eq!(
                r.virtual_ip, srv,
                "virtual_ip is nginx's local address (it listens on 0.0.0.0): {r:?}"
            );
            assert_eq!(r.server_ip, srv, "{r:?}");
            let l7 = if r.virtual_port == HTTP_PORT {
                "1"
            } else {
                "0"
            };
            assert_eq!(r.is_l7, l7, "{r:?}");
            *got.entry((r.virtual_port, r.server_port)).or_default() += r.link_count;
            parts
                .entry((r.virtual_port, r.server_port))
                .or_default()
                .push(r.link_count);
        }
        for (k, want) in &sent {
            let g = got.get(k).copied().unwrap_or(0);
            assert!(
                within_5pct(g, *want),
                "{tag}: nginx_link counted {g} connections for (port, backend) {k:?}, the client made {want}; records: {recs:?}"
            );
        }
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            sent.keys().collect::<Vec<_>>(),
            "{tag}: no other links: {recs:?}"
        );
        if parts.values().any(|p| p.len() != 1) {
            eprintln!("{tag}: the burst fell across a period boundary ({parts:?}); again");
            return false;
        }
        // The spider: client -> nginx -> each backend, per port, with the
        // counts of this round.
        let spider = &self.spider;
        let flows = wait_for(
            Duration::from_secs(30),
            "the spider's stitched nginx flows with this round's counts",
            || {
                let t = spider.get_json("/api/v1/topology");
                let ids: Vec<Option<String>> = ["ngx-client", "nginx"]
                    .iter()
                    .chain(BACKENDS.iter().map(|(b, _)| b))
                    .map(|c| proc_id(&t, c))
                    .collect();
                let flows = spider_flows(&t);
                let ok = sent.iter().all(|((port, bport), want)| {
                    let b = BACKENDS.iter().position(|(_, p)| p == bport).unwrap_or(0);
                    let Some(Some(back_id)) = ids.get(2 + b) else {
                        return false;
                    };
                    flows
                        .get(&(*port, back_id.clone()))
                        .is_some_and(|(s, tg, n)| {
                            Some(s) == ids[0].as_ref()
                                && Some(tg) == ids[1].as_ref()
                                && within_5pct(*n, *want)
                        })
                });
                ok.then_some((t, flows))
            },
        );
        eprintln!("{tag}: spider flows {:?}", flows.1);
        // littlegraph: both halves of each flow, one flow id, the counts.
        let t = &flows.0;
        let ids: Vec<String> = ["ngx-client", "nginx"]
            .iter()
            .chain(BACKENDS.iter().map(|(b, _)| b))
            .map(|c| proc_id(t, c).unwrap_or_default())
            .collect();
        let t0 = Instant::now();
        loop {
            let rows = self.graph.strings(
                "MATCH (a:Process)-[e:NGINX_LINK]->(b:Process) RETURN e.half, a.name, b.name, e.flow_id, e.link_count",
            );
            let ok = sent.iter().all(|((port, bport), want)| {
                let b = BACKENDS.iter().position(|(_, p)| p == bport).unwrap_or(0);
                let back: Vec<&Vec<String>> = rows
                    .iter()
                    .filter(|r| {
                        r[0] == "back"
                            && r[1] == ids[1]
                            && r[2] == ids[2 + b]
                            && r[3].contains(&format!(":{port}>"))
                    })
                    .collect();
                back.len() == 1
                    && back[0][4]
                        .parse::<u64>()
                        .is_ok_and(|n| within_5pct(n, *want))
                    && rows.iter().any(|r| {
                        r[0] == "front" && r[1] == ids[0] && r[2] == ids[1] && r[3] == back[0][3]
                    })
            });
            if ok {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{tag}: littlegraph lacks the NGINX_LINK halves of {sent:?} (ids {ids:?}); it has {rows:?}\nspider log:\n{}",
                self.spider.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        true
    }
}

#[test]
fn nginx_link_end_to_end_http_and_stream_through_a_reload() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let net = TwoHosts::new("ngx", 207);
    let mut backs = Vec::new();
    for (name, port) in BACKENDS {
        let mut b = Helper::python(
            Some(&net.server),
            &data("backend.py"),
            &[name, &net.server_ip, &port.to_string()],
        );
        b.expect("ready");
        backs.push(b);
    }
    let ndir = tmp.path().join("nginx");
    std::fs::create_dir_all(&ndir).expect("nginx dir");
    let nginx = Nginx::start(
        Path::new(NGINX),
        Some(&net.server),
        &ndir,
        &nginx_conf(&ndir, &net.server_ip),
    );

    // The agent: tcp_link (the test's processes, by snoopers: the rest of
    // the machine would only add nodes) and nginx_link, records to
    // metrics.log, which the spider follows.
    let s = Setup::new(&[]);
    let cfg = format!(
        "{}\n[[probes]]\nname = \"tcp_link\"\nparam = \"-t 1\"\nswitch = \"on\"\n\
         snoopers = {{ proc_name = [ {{ comm = \"^(nginx|ngx-client|ngx-back[12])$\", cmdline = \"\" }} ] }}\n\n\
         [[probes]]\nname = \"nginx_link\"\nparam = \"-t {PERIOD}\"\nswitch = \"on\"\n",
        s.base_config().replace(
            "[metric]\nout_channel = \"web_server\"",
            "[metric]\nout_channel = \"logs\""
        )
    );
    let agent = s.start(&cfg);
    let attached = wait_for(Duration::from_secs(30), "nginx_link attached", || {
        let log = agent.log_text();
        assert!(
            !log.contains("will not be restarted"),
            "a probe failed:\n{log}"
        );
        log.lines()
            .find(|l| l.contains("attached to /usr/sbin/nginx"))
            .map(str::to_owned)
    });
    let master = nginx.master();
    assert!(
        attached.contains("nginx/1.22") && attached.contains(&master.to_string()),
        "{attached}"
    );
    wait_for(Duration::from_secs(30), "tcp_link attached", || {
        agent
            .log_text()
            .contains("probe=\"tcp_link\"")
            .then_some(())
    });

    let mut graph = Graph::new(&tmp.path().join("graph"), free_port());
    graph.start();
    let sport = free_port();
    let metrics_dir = s.path("logs/metrics");
    let spider = Spider::start(
        tmp.path(),
        &spider_config(&metrics_dir.display().to_string(), graph.port, sport),
        sport,
    );
    let result = tmp.path().join("client.result");
    let mut helper = Helper::python(
        Some(&net.client),
        &data("client.py"),
        &["ngx-client", &result.display().to_string()],
    );
    helper.expect("waiting");
    let client = Client { helper, result };
    let mut rig = Rig {
        net,
        metrics: metrics_dir.join("metrics.log"),
        client,
        spider,
        graph,
    };

    let rounds = |rig: &mut Rig, tag: &str| {
        for i in 0..3 {
            if rig.round(100, 60, &format!("{tag} #{i}")) {
                return;
            }
        }
        panic!("{tag}: three bursts in a row fell across a period boundary");
    };
    rounds(&mut rig, "before the reload");

    // Reload: new workers (new pids) are covered by the uprobes of the
    // binary, and no flow is lost.
    let old = nginx.workers();
    nginx.signal(libc::SIGHUP);
    let new = wait_for(Duration::from_secs(20), "new nginx workers", || {
        let w = nginx.workers();
        (w.len() == 2 && w.is_disjoint(&old)).then_some(w)
    });
    eprintln!("reload: workers {old:?} -> {new:?}");
    rounds(&mut rig, "after the reload");
    let log = agent.log_text();
    assert_eq!(
        log.matches("attached to /usr/sbin/nginx").count(),
        1,
        "one attachment per binary serves the new workers:\n{log}"
    );
    assert!(!log.contains("refused"), "{log}");
    drop(backs);
}

/// A copy of the stock nginx whose version string says 9.99.9 (same
/// length), run from a temp dir under its own name: the probe refuses it
/// naming the version and the binary, the agent serves /metrics, and the
/// other probe runs on.
#[test]
fn nginx_link_refuses_an_unknown_version_and_the_agent_runs_on() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = tmp.path().join("ngx-bad");
    let mut data = std::fs::read(NGINX).expect("the stock nginx (scripts/deps.sh)");
    let from = b"nginx/1.22.1";
    let mut n = 0;
    while let Some(p) = data.windows(from.len()).position(|w| w == from) {
        data[p..p + from.len()].copy_from_slice(b"nginx/9.99.9");
        n += 1;
    }
    assert!(
        n > 0,
        "{NGINX} is not nginx 1.22.1: update this test's version bytes"
    );
    std::fs::write(&bin, &data).expect("write the copy");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let port = free_port();
    let conf = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log info;\nworker_processes 2;\nevents {{}}\n\
         http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; \
         fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi; \
         server {{ listen 127.0.0.1:{port}; return 200; }} }}\n",
        d = tmp.path().display()
    );
    let bad = Nginx::start(&bin, None, tmp.path(), &conf);

    let s = Setup::new(&[]);
    let cfg = format!(
        "{}\n[[probes]]\nname = \"nginx_link\"\nparam = \"-t 1 -m ngx-bad\"\nswitch = \"on\"\n\n\
         [[probes]]\nname = \"system_meminfo\"\nparam = \"-t 1\"\nswitch = \"on\"\n",
        s.base_config()
    );
    let a: Agent = s.start(&cfg);
    let line = wait_for(Duration::from_secs(20), "the nginx_link verdict", || {
        a.log_text()
            .lines()
            .find(|l| l.contains("nginx_link") && l.contains("will not be restarted"))
            .map(str::to_owned)
    });
    for what in [
        "nginx/9.99.9",
        &bin.display().to_string(),
        "is not in nginx_link's offset table",
        "scripts/nginx-offsets.sh",
        "docs/nginx_link.md",
    ] {
        assert!(line.contains(what), "the refusal names {what}:\n{line}");
    }
    let expo = wait_for(
        Duration::from_secs(10),
        "system_meminfo and the probe state",
        || {
            let e = a.scrape();
            (e.contains("gala_gopher_system_meminfo_MemTotal{")
                && e.contains("gala_gopher_self_probe_state{probe=\"nginx_link\",state=\"failed\""))
            .then_some(e)
        },
    );
    let state = |probe: &str, st: &str| {
        expo.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "gala_gopher_self_probe_state{{probe=\"{probe}\",state=\"{st}\""
                ))
            })
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert!(state("nginx_link", "failed").ends_with(" 1"), "{expo}");
    assert!(state("system_meminfo", "running").ends_with(" 1"), "{expo}");
    // The copy kept serving: the probe touched nothing.
    assert_eq!(bad.workers().len(), 2, "{}", bad.error_log());
}
