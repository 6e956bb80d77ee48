//! Issue 15: `dnsmasq_link` on the real dnsmasq of this machine, and the
//! `ipvs_link` refusal on this kernel (no IPVS, no kprobes).
//!
//! - dnsmasq runs in a network namespace; clients in another one resolve
//!   through it: python3 with glibc's resolver (a private mount namespace
//!   puts a resolv.conf naming dnsmasq over /etc/resolv.conf for it alone)
//!   and dig. The agent's metric log must hold, per asking process, its pid,
//!   its comm, the name asked and exactly as many queries as were sent
//!   (dnsmasq's own query log is the second witness). Garbage datagrams are
//!   counted as malformed and change nothing else.
//! - ipvs_link switched on here is refused with a message naming what the
//!   kernel lacks; the agent keeps serving /metrics and its other probe.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{repo, wait_for, Setup, TwoHosts};
use crate::spider::require_root;

/// A child process killed (by its pid) and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn data(name: &str) -> PathBuf {
    repo().join("tests/data/dnsmasq").join(name)
}

/// Gives the veth end in `ns` the IPv6 address `ip`/64 (no duplicate
/// address detection: usable at once).
fn add_v6(ns: &str, ip: &str) {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "type", "veth"])
        .output()
        .expect("ip");
    let text = String::from_utf8_lossy(&out.stdout);
    let dev = text
        .split(": ")
        .nth(1)
        .and_then(|d| d.split('@').next())
        .unwrap_or_else(|| panic!("no veth in {ns}: {text}"));
    crate::harness::run_ok(
        "ip",
        &[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{ip}/64"),
            "dev",
            dev,
            "nodad",
        ],
    );
}

/// dnsmasq in `ns`, on `ip` and `ip6`, answering `example.test` names with
/// 10.9.9.9, on `port`, logging its queries to `dir/dnsmasq-<port>.log`.
fn start_dnsmasq(ns: &str, ip: &str, ip6: &str, port: u16, dir: &Path) -> Killed {
    let conf = dir.join("dnsmasq.conf");
    std::fs::write(&conf, "# empty: everything is on the command line\n").unwrap();
    let log = dir.join(format!("dnsmasq-{port}.log"));
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "dnsmasq", "-k"])
        .arg(format!("--conf-file={}", conf.display()))
        .args([&format!("--port={port}"), &format!("--listen-address={ip}")])
        .arg(format!("--listen-address={ip6}"))
        .args([
            "--no-resolv",
            "--no-hosts",
            "--address=/example.test/10.9.9.9",
        ])
        .arg(format!(
            "--pid-file={}",
            dir.join(format!("dnsmasq-{port}.pid")).display()
        ))
        .arg(format!("--log-facility={}", log.display()))
        .args(["--log-queries", "--user=root", "--group=root"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("dnsmasq (Debian's dnsmasq-base) is required by this test");
    let mut d = Killed(child);
    wait_for(Duration::from_secs(10), "dnsmasq to start", || {
        if let Ok(Some(st)) = d.0.try_wait() {
            panic!(
                "dnsmasq exited ({st}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("started, version"))
            .map(|_| ())
    });
    d
}

/// Runs `cmd` to completion; returns its pid and stdout.
fn run_child(mut cmd: Command) -> (u32, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The metric log's records of `table`.
fn records(dir: &Path, table: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("logs/metrics/metrics.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["table_name"] == table)
        .collect()
}

fn num(v: &serde_json::Value, field: &str) -> u64 {
    v[field].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// dnsmasq_link link_count summed per (client_ip, virtual_ip, domain, pid,
/// process_comm, server_comm, family).
type Sums = HashMap<[String; 7], u64>;

fn sums(dir: &Path) -> Sums {
    let mut m = Sums::new();
    for r in records(dir, "dnsmasq_link") {
        // An empty value (process_comm of an unknown asker) is left out of
        // the JSON record.
        let f = |k: &str| r[k].as_str().unwrap_or("").to_owned();
        let key = [
            f("client_ip"),
            f("virtual_ip"),
            f("domain"),
            f("pid"),
            f("process_comm"),
            f("server_comm"),
            f("family"),
        ];
        *m.entry(key).or_default() += num(&r, "link_count");
    }
    m
}

fn stat_sum(dir: &Path, field: &str) -> u64 {
    records(dir, "dnsmasq_link_probe_stats")
        .iter()
        .map(|r| num(r, field))
        .sum()
}

#[test]
fn dnsmasq_link_names_the_asking_process_and_counts_its_queries() {
    require_root();
    let t0 = Instant::now();
    let s = Setup::new(&[]);
    let cfg = format!(
        "{}\n[[probes]]\nname = \"dnsmasq_link\"\nparam = \"-t 1\"\nswitch = \"on\"\n",
        s.base_config().replace(
            "[metric]\nout_channel = \"web_server\"",
            "[metric]\nout_channel = \"logs\""
        )
    );
    let mut agent = s.start(&cfg);
    let _ = wait_for(Duration::from_secs(20), "dnsmasq_link attached", || {
        let log = agent.log_text();
        assert!(
            !log.contains("will not be restarted"),
            "dnsmasq_link failed:\n{log}"
        );
        log.lines()
            .find(|l| l.contains("dnsmasq_link") && l.contains("eBPF programs attached"))
            .map(str::to_owned)
    });
    let attached = agent
        .log_text()
        .lines()
        .find(|l| l.contains("dnsmasq_link") && l.contains("eBPF programs attached"))
        .map(str::to_owned)
        .unwrap();
    assert!(
        attached.contains("plan=\"fexit\"") || attached.contains("plan=\"raw_tp\""),
        "{attached}"
    );
    eprintln!("{attached}");

    // dnsmasq starts after the probe: it is found by its name.
    let net = TwoHosts::new("dm", 203);
    let third = net.server_ip.split('.').nth(2).unwrap();
    let (srv6, cli6) = (
        format!("fd00:203:{third}::1"),
        format!("fd00:203:{third}::2"),
    );
    add_v6(&net.server, &srv6);
    add_v6(&net.client, &cli6);
    let dir = tempfile::tempdir().unwrap();
    let _dnsmasq = start_dnsmasq(&net.server, &net.server_ip, &srv6, 53, dir.path());
    // A second dnsmasq on port 5353: senders to it are not recorded (the
    // probe follows senders to port 53), so its queries stand for a remote
    // or unknown client: pid 0, no comm.
    let _dnsmasq2 = start_dnsmasq(&net.server, &net.server_ip, &srv6, 5353, dir.path());

    // python3 through glibc's resolver, 5 names resolved.
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!(
            "nameserver {}\noptions attempts:1 timeout:2\n",
            net.server_ip
        ),
    )
    .unwrap();
    let resolve = |args: &[&str]| {
        let mut py = Command::new("ip");
        py.args(["netns", "exec", &net.client])
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg("r=$1; shift; mount --bind \"$r\" /etc/resolv.conf && exec python3 \"$@\"")
            .arg("sh")
            .arg(&resolv)
            .arg(data("resolve.py"))
            .args(args);
        let (pid, out) = run_child(py);
        assert!(out.contains(&format!("pid {pid}")), "{out}");
        (pid, out)
    };
    // 5 A queries, each connect() + send().
    let (py_pid, out) = resolve(&["py.example.test", "5"]);
    assert_eq!(out.matches("answer 10.9.9.9").count(), 5, "{out}");
    // 2 calls of A + AAAA, each pair in one sendmmsg().
    let (any_pid, out) = resolve(&["any.example.test", "2", "any"]);
    assert_eq!(out.matches("answer 10.9.9.9").count(), 2, "{out}");

    // dig, three processes, one query each.
    let mut dig_pids = Vec::new();
    for _ in 0..3 {
        let mut dig = Command::new("ip");
        dig.args(["netns", "exec", &net.client, "dig"])
            .arg(format!("@{}", net.server_ip))
            .args(["+retry=0", "+time=3", "+short", "dig.example.test"]);
        let (pid, out) = run_child(dig);
        assert_eq!(out.trim(), "10.9.9.9");
        dig_pids.push(pid);
    }
    // dig over IPv6, twice.
    let mut dig6_pids = Vec::new();
    for _ in 0..2 {
        let mut dig = Command::new("ip");
        dig.args(["netns", "exec", &net.client, "dig", "-6"])
            .arg(format!("@{srv6}"))
            .args(["+retry=0", "+time=3", "+short", "v6.example.test"]);
        let (pid, out) = run_child(dig);
        assert_eq!(out.trim(), "10.9.9.9");
        dig6_pids.push(pid);
    }

    // One query to the second dnsmasq.
    let mut dig = Command::new("ip");
    dig.args(["netns", "exec", &net.client, "dig", "-p", "5353"])
        .arg(format!("@{}", net.server_ip))
        .args(["+retry=0", "+time=3", "+short", "unknown.example.test"]);
    assert_eq!(run_child(dig).1.trim(), "10.9.9.9");

    // Garbage: counted as malformed, not as queries.
    let mut g = Command::new("ip");
    g.args(["netns", "exec", &net.client, "python3"])
        .arg(data("garbage.py"))
        .arg(&net.server_ip);
    run_child(g);

    let (cli, srv) = (net.client_ip.clone(), net.server_ip.clone());
    let key6 = |c: &str, s: &str, domain: &str, pid: u32, comm: &str, family: &str| {
        [
            c.to_owned(),
            s.to_owned(),
            domain.to_owned(),
            pid.to_string(),
            comm.to_owned(),
            "dnsmasq".to_owned(),
            family.to_owned(),
        ]
    };
    let key = |domain: &str, pid: u32, comm: &str| key6(&cli, &srv, domain, pid, comm, "4");
    let mut want: Sums = HashMap::new();
    want.insert(key("py.example.test", py_pid, "python3"), 5);
    want.insert(key("any.example.test", any_pid, "python3"), 4);
    for pid in &dig_pids {
        want.insert(key("dig.example.test", *pid, "dig"), 1);
    }
    want.insert(key("unknown.example.test", 0, ""), 1);
    for pid in &dig6_pids {
        want.insert(key6(&cli6, &srv6, "v6.example.test", *pid, "dig", "6"), 1);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let got = loop {
        let got = sums(s.dir.path());
        let done = got == want && stat_sum(s.dir.path(), "malformed") >= 4;
        if done || Instant::now() > deadline {
            let mut g: Vec<_> = got.iter().collect();
            g.sort();
            let mut w: Vec<_> = want.iter().collect();
            w.sort();
            assert_eq!(g, w, "dnsmasq_link counts in the metric log");
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Two more periods: nothing more is counted.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        sums(s.dir.path()),
        got,
        "counts changed with no more queries"
    );
    assert_eq!(stat_sum(s.dir.path(), "queries"), 15);
    assert_eq!(stat_sum(s.dir.path(), "local_queries"), 14);
    assert_eq!(stat_sum(s.dir.path(), "malformed"), 4);
    assert_eq!(stat_sum(s.dir.path(), "lost"), 0);

    // dnsmasq's own log agrees.
    let dlog = std::fs::read_to_string(dir.path().join("dnsmasq-53.log")).unwrap();
    assert_eq!(
        dlog.matches("query[A] py.example.test from").count(),
        5,
        "{dlog}"
    );
    assert_eq!(dlog.matches("query[A] dig.example.test from").count(), 3);
    assert_eq!(dlog.matches("query[A] any.example.test from").count(), 2);
    assert_eq!(dlog.matches("query[AAAA] any.example.test from").count(), 2);
    assert_eq!(
        dlog.matches(&format!("query[A] v6.example.test from {cli6}"))
            .count(),
        2,
        "{dlog}"
    );

    // The agent lived through the garbage and stops cleanly.
    assert_eq!(agent.stop(), Some(0), "{}", agent.log_text());
    eprintln!("dnsmasq_link end to end: {:?}", t0.elapsed());
}

/// What this host lacks for ipvs_link, as the probe's message names it.
fn ipvs_missing() -> Vec<&'static str> {
    let mut m = Vec::new();
    let kprobes = [
        "/sys/bus/event_source/devices/kprobe",
        "/sys/kernel/tracing/kprobe_events",
        "/sys/kernel/debug/tracing/kprobe_events",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    if !kprobes {
        m.push("kprobes (");
    }
    let ipvs = Path::new("/proc/net/ip_vs").exists()
        || std::fs::read_to_string("/proc/kallsyms").is_ok_and(|k| {
            k.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("ip_vs_conn_new"))
        });
    if !ipvs {
        m.push("IPVS (");
    }
    m
}

#[test]
fn ipvs_link_is_refused_here_naming_what_is_missing_and_the_agent_runs_on() {
    require_root();
    let missing = ipvs_missing();
    assert!(
        !missing.is_empty(),
        "this host has kprobes and IPVS: the refusal cannot be checked here (ipvs_link would attach)"
    );
    let s = Setup::new(&[]);
    let cfg = format!(
        "{}\n[[probes]]\nname = \"ipvs_link\"\nparam = \"-t 1\"\nswitch = \"on\"\n\
         [[probes]]\nname = \"system_meminfo\"\nparam = \"-t 1\"\nswitch = \"on\"\n",
        s.base_config()
    );
    let a = s.start(&cfg);
    let line = wait_for(Duration::from_secs(20), "the ipvs_link verdict", || {
        a.log_text()
            .lines()
            .find(|l| l.contains("ipvs_link") && l.contains("will not be restarted"))
            .map(str::to_owned)
    });
    assert!(
        line.contains("ipvs_link cannot run on this kernel: it needs"),
        "{line}"
    );
    for what in &missing {
        assert!(
            line.contains(what),
            "the refusal should name {what}:\n{line}"
        );
    }
    // The agent serves /metrics, the other probe reports, and the probe's
    // state is visible.
    let expo = wait_for(
        Duration::from_secs(10),
        "system_meminfo and the probe state",
        || {
            let e = a.scrape();
            (e.contains("gala_gopher_system_meminfo_MemTotal{")
                && e.contains("gala_gopher_self_probe_state{probe=\"ipvs_link\",state=\"failed\""))
            .then_some(e)
        },
    );
    let failed = expo
        .lines()
        .find(|l| {
            l.starts_with("gala_gopher_self_probe_state{probe=\"ipvs_link\",state=\"failed\"")
        })
        .unwrap();
    assert!(failed.ends_with(" 1"), "{failed}");
    let running = expo
        .lines()
        .find(|l| {
            l.starts_with("gala_gopher_self_probe_state{probe=\"system_meminfo\",state=\"running\"")
        })
        .unwrap();
    assert!(running.ends_with(" 1"), "{running}");
    assert!(
        !expo.contains("gala_gopher_ipvs_link_"),
        "no ipvs_link series here"
    );
}
