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

/// dnsmasq in `ns`, answering `example.test` names with 10.9.9.9, logging
/// its queries to `dir/dnsmasq.log`.
fn start_dnsmasq(ns: &str, ip: &str, dir: &Path) -> Killed {
    let conf = dir.join("dnsmasq.conf");
    std::fs::write(&conf, "# empty: everything is on the command line\n").unwrap();
    let log = dir.join("dnsmasq.log");
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "dnsmasq", "-k"])
        .arg(format!("--conf-file={}", conf.display()))
        .args(["--port=53", &format!("--listen-address={ip}")])
        .args([
            "--no-resolv",
            "--no-hosts",
            "--address=/example.test/10.9.9.9",
        ])
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
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
        let f = |k: &str| r[k].as_str().unwrap_or("?").to_owned();
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
    wait_for(Duration::from_secs(20), "dnsmasq_link attached", || {
        let log = agent.log_text();
        assert!(
            !log.contains("will not be restarted"),
            "dnsmasq_link failed:\n{log}"
        );
        log.lines()
            .any(|l| l.contains("dnsmasq_link") && l.contains("eBPF programs attached"))
            .then_some(())
    });

    // dnsmasq starts after the probe: it is found by its name.
    let net = TwoHosts::new("dm", 203);
    let dir = tempfile::tempdir().unwrap();
    let _dnsmasq = start_dnsmasq(&net.server, &net.server_ip, dir.path());

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
    let mut py = Command::new("ip");
    py.args([
        "netns",
        "exec",
        &net.client,
        "unshare",
        "--mount",
        "--propagation",
        "private",
    ])
    .args([
        "sh",
        "-c",
        "mount --bind \"$1\" /etc/resolv.conf && exec python3 \"$2\" py.example.test 5",
        "sh",
    ])
    .arg(&resolv)
    .arg(data("resolve.py"));
    let (py_pid, out) = run_child(py);
    assert!(out.contains(&format!("pid {py_pid}")), "{out}");
    assert_eq!(out.matches("answer 10.9.9.9").count(), 5, "{out}");

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

    // Garbage: counted as malformed, not as queries.
    let mut g = Command::new("ip");
    g.args(["netns", "exec", &net.client, "python3"])
        .arg(data("garbage.py"))
        .arg(&net.server_ip);
    run_child(g);

    let (cli, srv) = (net.client_ip.clone(), net.server_ip.clone());
    let key = |domain: &str, pid: u32, comm: &str| {
        [
            cli.clone(),
            srv.clone(),
            domain.to_owned(),
            pid.to_string(),
            comm.to_owned(),
            "dnsmasq".to_owned(),
            "4".to_owned(),
        ]
    };
    let mut want: Sums = HashMap::new();
    want.insert(key("py.example.test", py_pid, "python3"), 5);
    for pid in &dig_pids {
        want.insert(key("dig.example.test", *pid, "dig"), 1);
    }
    let got = wait_for(
        Duration::from_secs(15),
        "the queries in the metric log",
        || {
            let got = sums(s.dir.path());
            (got == want && stat_sum(s.dir.path(), "malformed") >= 4).then_some(got)
        },
    );
    // Two more periods: nothing more is counted.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        sums(s.dir.path()),
        got,
        "counts changed with no more queries"
    );
    assert_eq!(stat_sum(s.dir.path(), "queries"), 8);
    assert_eq!(stat_sum(s.dir.path(), "local_queries"), 8);
    assert_eq!(stat_sum(s.dir.path(), "malformed"), 4);
    assert_eq!(stat_sum(s.dir.path(), "lost"), 0);

    // dnsmasq's own log agrees.
    let dlog = std::fs::read_to_string(dir.path().join("dnsmasq.log")).unwrap();
    assert_eq!(
        dlog.matches("query[A] py.example.test from").count(),
        5,
        "{dlog}"
    );
    assert_eq!(dlog.matches("query[A] dig.example.test from").count(), 3);

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
