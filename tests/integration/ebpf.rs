//! The tcp_link eBPF probe on the real kernel: the agent binary, real
//! connections between the test's own client and server processes (python3
//! scripts in tests/data/ebpf, so their pids and comms are known), on
//! loopback (IPv4 and IPv6) and across a veth pair between two network
//! namespaces the test creates, scraped over HTTP.
//!
//! These tests need root (eBPF, namespaces, iptables). Not being root is a
//! failure with a clear message, never a silent skip.
//!
//! Byte tolerance: `bytes_received` and `bytes_acked` also count the SYN
//! and FIN sequence numbers, so a counter may exceed the payload by at most
//! 2 per connection; it must never be below it.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{free_port, repo, run_ok, wait_for, Agent, Setup, Tracefs, TwoHosts};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the tcp_link eBPF tests need root (CAP_BPF, CAP_PERFMON, network namespaces, iptables); run `make test` as root"
    );
}

/// One `tcp_link` record as exposed: its labels and its values by field.
#[derive(Debug, Clone, Default)]
struct Rec {
    labels: HashMap<String, String>,
    values: HashMap<String, f64>,
}

impl Rec {
    fn v(&self, f: &str) -> f64 {
        self.values.get(f).copied().unwrap_or(f64::NAN)
    }
    fn l(&self, k: &str) -> &str {
        self.labels.get(k).map_or("", String::as_str)
    }
}

fn parse_labels(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for part in s.split("\",") {
        if let Some((k, v)) = part.split_once("=\"") {
            out.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
        }
    }
    out
}

/// Every tcp_link record of an exposition, keyed by its label set.
fn records(expo: &str) -> Vec<Rec> {
    let mut by: HashMap<String, Rec> = HashMap::new();
    for line in expo.lines() {
        let Some(rest) = line.strip_prefix("gala_gopher_tcp_link_") else {
            continue;
        };
        let Some((field, rest)) = rest.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if !labels.starts_with("pid=") {
            continue; // tcp_link_probe_stats
        }
        let r = by.entry(labels.to_owned()).or_insert_with(|| Rec {
            labels: parse_labels(labels),
            values: HashMap::new(),
        });
        r.values
            .insert(field.to_owned(), value.parse().unwrap_or(f64::NAN));
    }
    by.into_values().collect()
}

fn find(expo: &str, pid: u32, role: u8, port: u16) -> Option<Rec> {
    let (pid, role, port) = (pid.to_string(), role.to_string(), port.to_string());
    records(expo)
        .into_iter()
        .find(|r| r.l("pid") == pid && r.l("role") == role && r.l("server_port") == port)
}

fn stat(expo: &str, name: &str) -> f64 {
    expo.lines()
        .find(|l| {
            // Counters of this table carry `_total` (an own table).
            let m = format!("gala_gopher_tcp_link_probe_stats_{name}");
            l.starts_with(&format!("{m}{{")) || l.starts_with(&format!("{m}_total{{"))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn agent(s: &Setup, param: &str) -> Agent {
    agent_in(s, param, &[], Tracefs::AsIs)
}

fn agent_in(s: &Setup, param: &str, env: &[(&str, &str)], tracefs: Tracefs) -> Agent {
    let cfg = format!(
        "{}\n[[probes]]\nname = \"tcp_link\"\nparam = \"{param}\"\nswitch = \"on\"\n",
        s.base_config()
    );
    let a = s.start_in(&cfg, env, tracefs);
    wait_for(Duration::from_secs(20), "tcp_link attached", || {
        let log = a.log_text();
        assert!(
            !log.contains("will not be restarted"),
            "tcp_link failed:\n{log}"
        );
        log.contains("eBPF programs attached").then_some(())
    });
    a
}

/// A helper process of tests/data/ebpf/.
type Proc = crate::harness::Helper;

fn python(netns: Option<&str>, script: &str, args: &[String]) -> Proc {
    Proc::python(netns, &repo().join("tests/data/ebpf").join(script), args)
}

fn arg(v: impl ToString) -> String {
    v.to_string()
}

/// Checks the exact record of one side once it has settled.
#[expect(clippy::too_many_arguments, reason = "one record's expectations")]
fn expect_record(
    agent: &Agent,
    what: &str,
    pid: u32,
    comm: &str,
    role: u8,
    ips: (&str, &str, u16, &str),
    link_count: f64,
    rx: f64,
    tx: f64,
    conns: f64,
) -> Rec {
    let (client_ip, server_ip, port, protocol) = ips;
    let ok = |r: &Rec| {
        r.v("link_count") == link_count
            && r.v("rx_bytes") >= rx
            && r.v("rx_bytes") <= rx + 2.0 * conns
            && r.v("tx_bytes") >= tx
            && r.v("tx_bytes") <= tx + 2.0 * conns
    };
    let mut last = None;
    let found = (0..200).find_map(|_| {
        let r = find(&agent.scrape(), pid, role, port);
        if let Some(r) = r.filter(ok) {
            return Some(r);
        }
        last = find(&agent.scrape(), pid, role, port);
        std::thread::sleep(Duration::from_millis(100));
        None
    });
    let r = found.unwrap_or_else(|| {
        panic!(
            "{what}: no settled record for pid {pid} role {role} port {port} (want link_count {link_count}, rx {rx}, tx {tx}); last: {last:?}\nall: {:?}\nlog:\n{}",
            records(&agent.scrape()),
            agent.log_text()
        )
    });
    assert_eq!(r.l("process_name"), comm, "{what}: comm");
    assert_eq!(r.l("client_ip"), client_ip, "{what}: client_ip");
    assert_eq!(r.l("server_ip"), server_ip, "{what}: server_ip");
    assert_eq!(r.l("protocol"), protocol, "{what}: protocol");
    assert!(
        r.v("packets_in") > 0.0 && r.v("packets_out") > 0.0,
        "{what}: {r:?}"
    );
    r
}

const REQ: usize = 1000;
const RESP: usize = 30_000;

/// Short and kept connections between a client and a server; checks both
/// roles while the kept ones are open and after they close.
#[expect(clippy::too_many_arguments, reason = "a scenario")]
fn scenario(
    agent: &Agent,
    what: &str,
    server_ns: Option<&str>,
    client_ns: Option<&str>,
    server_ip: &str,
    client_ip: &str,
    protocol: &str,
    short: usize,
    keep: usize,
) {
    let port = free_port();
    let mut srv = python(
        server_ns,
        "server.py",
        &[arg(server_ip), arg(port), arg(REQ), arg(RESP)],
    );
    srv.expect("ready");
    let mut cli = python(
        client_ns,
        "client.py",
        &[
            arg(server_ip),
            arg(port),
            arg(REQ),
            arg(RESP),
            arg(short),
            arg(keep),
        ],
    );
    cli.expect("done");
    let n = (short + keep) as f64;
    let ips = (client_ip, server_ip, port, protocol);
    let (req, resp) = (REQ as f64, RESP as f64);
    // While the kept connections are open: the short ones are closed and
    // folded, the kept ones sampled; link_count settles at `keep`.
    expect_record(
        agent,
        &format!("{what} client"),
        cli.pid(),
        &cli.comm(),
        1,
        ips,
        keep as f64,
        n * resp,
        n * req,
        n,
    );
    expect_record(
        agent,
        &format!("{what} server"),
        srv.pid(),
        &srv.comm(),
        0,
        ips,
        keep as f64,
        n * req,
        n * resp,
        n,
    );
    // After they close, the record of the period says so; the byte totals
    // stay (counters do not go back).
    let ccomm = cli.comm();
    cli.release();
    cli.expect("closed");
    expect_record(
        agent,
        &format!("{what} client after close"),
        cli.pid(),
        &ccomm,
        1,
        ips,
        keep as f64,
        n * resp,
        n * req,
        n,
    );
}

/// As on a fresh machine: no tracefs, debugfs or bpffs mounted.
#[test]
fn loopback_v4_and_v6_records_are_exact() {
    require_root();
    let s = Setup::new(&[]);
    let a = agent_in(&s, "-t 1", &[], Tracefs::Absent);
    assert_mounted_nothing(&a);
    scenario(
        &a,
        "loopback v4",
        None,
        None,
        "127.0.0.1",
        "127.0.0.1",
        "2",
        5,
        3,
    );
    scenario(&a, "loopback v6", None, None, "::1", "::1", "10", 4, 2);
}

/// The BTF plan attaches everything by name: the agent mounts nothing.
fn assert_mounted_nothing(a: &Agent) {
    let log = a.log_text();
    assert!(
        log.contains("plan=\"tp_btf") && !log.contains("mounted tracefs"),
        "expected the BTF plan, attached without mounting tracefs:\n{log}"
    );
}

/// With tracefs mounted (a machine prepared by hand, or by systemd), the
/// default plan is the same and the records too.
#[test]
fn loopback_records_with_tracefs_mounted() {
    require_root();
    let s = Setup::new(&[]);
    let a = agent_in(&s, "-t 1", &[], Tracefs::Present);
    assert_mounted_nothing(&a);
    scenario(
        &a,
        "loopback v4, tracefs mounted",
        None,
        None,
        "127.0.0.1",
        "127.0.0.1",
        "2",
        4,
        2,
    );
}

const COMPAT: (&str, &str) = ("GALA_GOPHER_TCP_LINK_COMPAT", "1");

/// The paths older kernels take (classic tracepoint, hash map of live
/// connections; 5.5 to 5.11), forced on this kernel: the same exact records.
/// The classic tracepoints need tracefs: on a machine without it, the agent
/// mounts it (in the test, inside the agent's own mount namespace).
#[test]
fn older_kernel_paths_give_the_same_records() {
    require_root();
    let s = Setup::new(&[]);
    let a = agent_in(&s, "-t 1", &[COMPAT], Tracefs::Absent);
    let log = a.log_text();
    assert!(
        log.contains("plan=\"tracepoint\"") && log.contains("conn_store=\"hash\""),
        "the compat paths were not taken:\n{log}"
    );
    assert!(
        log.contains("mounted tracefs") && log.contains("/sys/kernel/tracing"),
        "the agent should have mounted tracefs for the classic tracepoints:\n{log}"
    );
    scenario(
        &a,
        "compat v4",
        None,
        None,
        "127.0.0.1",
        "127.0.0.1",
        "2",
        5,
        3,
    );
    scenario(&a, "compat v6", None, None, "::1", "::1", "10", 3, 2);
}

/// With tracefs already there, the classic plan uses it and mounts nothing.
#[test]
fn older_kernel_paths_with_tracefs_mounted() {
    require_root();
    let s = Setup::new(&[]);
    let a = agent_in(&s, "-t 1", &[COMPAT], Tracefs::Present);
    let log = a.log_text();
    assert!(
        log.contains("plan=\"tracepoint\"") && !log.contains("mounted tracefs"),
        "expected the classic plan on the mounted tracefs:\n{log}"
    );
    scenario(
        &a,
        "compat v4, tracefs mounted",
        None,
        None,
        "127.0.0.1",
        "127.0.0.1",
        "2",
        3,
        2,
    );
}

/// Without tracefs and without the right to mount it, the classic plan is
/// refused with the mount command to run, and the rest of the agent runs on.
#[test]
fn classic_plan_without_tracefs_or_cap_sys_admin_says_what_to_mount() {
    require_root();
    let s = Setup::new(&[]);
    let cfg = s.path("gala-gopher.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[[probes]]\nname = \"tcp_link\"\nparam = \"-t 1\"\nswitch = \"on\"\n\
             [[probes]]\nname = \"system_meminfo\"\nparam = \"-t 1\"\nswitch = \"on\"\n",
            s.base_config()
        ),
    )
    .expect("write config");
    let log_path = s.path("agent.log");
    let child = Tracefs::Absent
        .command(&[], "", std::path::Path::new("setpriv"))
        .args(["--bounding-set=-sys_admin", "--inh-caps=-all", "--"])
        .arg(crate::harness::bin())
        .arg("--config")
        .arg(&cfg)
        .env(COMPAT.0, COMPAT.1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("unshare and setpriv (util-linux)");
    let a = Agent {
        child,
        port: s.port,
        log: log_path,
    };
    let log = wait_for(Duration::from_secs(20), "tcp_link verdict", || {
        let log = a.log_text();
        log.contains("will not be restarted").then_some(log)
    });
    assert!(
        log.contains("mount -t tracefs tracefs /sys/kernel/tracing")
            && log.contains("CAP_SYS_ADMIN"),
        "the refusal should name the mount to make and why the agent could not:\n{log}"
    );
    wait_for(Duration::from_secs(10), "system_meminfo", || {
        crate::harness::http_get(s.port, "/metrics")
            .ok()
            .filter(|(_, b)| b.contains("gala_gopher_system_meminfo_MemTotal{"))
            .map(|_| ())
    });
}

#[test]
fn the_default_plan_is_the_btf_tracepoint_with_the_lock_free_index() {
    require_root();
    let s = Setup::new(&[]);
    let a = agent_in(&s, "-t 1", &[], Tracefs::Absent);
    let log = a.log_text();
    assert!(
        log.contains("plan=\"tp_btf\"") && log.contains("conn_store=\"index\""),
        "expected tp_btf and the index on this kernel:\n{log}"
    );
    let expo = wait_for(Duration::from_secs(10), "probe stats", || {
        let e = a.scrape();
        e.contains("gala_gopher_tcp_link_probe_stats_conn_overflow_total{")
            .then_some(e)
    });
    assert!(expo.contains("plan=\"tp_btf\""), "plan label:\n{expo}");
}

#[test]
fn two_namespaces_over_veth_records_are_exact() {
    require_root();
    let hosts = TwoHosts::new("tl", 200);
    let s = Setup::new(&[]);
    let a = agent(&s, "-t 1");
    scenario(
        &a,
        "veth",
        Some(&hosts.server),
        Some(&hosts.client),
        &hosts.server_ip,
        &hosts.client_ip,
        "2",
        6,
        2,
    );
}

#[test]
fn a_short_connection_burst_is_all_counted() {
    require_root();
    let s = Setup::new(&[]);
    let a = agent(&s, "-t 1");
    let port = free_port();
    let (req, resp, burst) = (100usize, 500usize, 300usize);
    let mut srv = python(
        None,
        "server.py",
        &[arg("127.0.0.1"), arg(port), arg(req), arg(resp)],
    );
    srv.expect("ready");
    let mut cli = python(
        None,
        "client.py",
        &[
            arg("127.0.0.1"),
            arg(port),
            arg(req),
            arg(resp),
            arg(burst),
            arg(0),
        ],
    );
    cli.expect("done");
    let n = burst as f64;
    // Every connection closed within the burst: the totals are exact
    // within the SYN/FIN tolerance, for both sides.
    let settled = |pid: u32, role: u8, rx: f64, tx: f64| {
        wait_for(Duration::from_secs(20), "burst totals", || {
            let r = find(&a.scrape(), pid, role, port)?;
            (r.v("rx_bytes") >= rx
                && r.v("rx_bytes") <= rx + 2.0 * n
                && r.v("tx_bytes") >= tx
                && r.v("tx_bytes") <= tx + 2.0 * n)
                .then_some(r)
        })
    };
    let c = settled(cli.pid(), 1, n * resp as f64, n * req as f64);
    let sv = settled(srv.pid(), 0, n * req as f64, n * resp as f64);
    assert!(c.v("link_count") >= 1.0 && sv.v("link_count") >= 1.0);
    // Probe stats are ingested after the period's records: wait for them.
    let expo = wait_for(Duration::from_secs(10), "probe stats of the burst", || {
        let e = a.scrape();
        (stat(&e, "conns_opened") >= 2.0 * n).then_some(e)
    });
    assert_eq!(stat(&expo, "conn_overflow"), 0.0);
    assert_eq!(stat(&expo, "link_overflow"), 0.0);
    // Every socket closed through the state machine: the sampler found
    // nothing to reap (a reap here would be a live connection lost).
    assert_eq!(stat(&expo, "conns_reaped"), 0.0, "{expo}");
}

/// Many connections open at once: every socket finds a place in the
/// kernel's index of live connections (two buckets of 8 per socket), and the
/// sampler reports them all. 9 000 connections are 18 000 sockets, 27 % of
/// the index; a single bucket per socket already lost some at 58 %.
#[test]
fn nine_thousand_open_connections_all_fit_and_are_reported() {
    require_root();
    let s = Setup::new(&[]);
    let a = agent(&s, "-t 1");
    let port = free_port();
    let n = 9000usize;
    let mut srv = python(
        None,
        "hold.py",
        &[arg("server"), arg("127.0.0.1"), arg(port), arg(n)],
    );
    srv.expect("ready");
    let mut cli = python(
        None,
        "hold.py",
        &[arg("client"), arg("127.0.0.1"), arg(port), arg(n)],
    );
    cli.expect("held");
    srv.expect("held");
    // The records of a period are ingested before its probe_stats record,
    // so one scrape can hold records of period k+1 and stats of period k:
    // wait until both show every connection.
    let expo = wait_for(Duration::from_secs(20), "all connections sampled", || {
        let e = a.scrape();
        let c = find(&e, cli.pid(), 1, port)?;
        let sv = find(&e, srv.pid(), 0, port)?;
        (c.v("link_count") == n as f64
            && sv.v("link_count") == n as f64
            && stat(&e, "conns_tracked") >= 2.0 * n as f64)
            .then_some(e)
    });
    assert_eq!(stat(&expo, "conn_overflow"), 0.0, "{expo}");
    assert_eq!(stat(&expo, "conns_reaped"), 0.0, "{expo}");
}

#[test]
fn retransmits_from_iptables_drops_show_in_retran_packets() {
    require_root();
    let hosts = TwoHosts::new("tl", 200);
    let s = Setup::new(&[]);
    let a = agent(&s, "-t 1");
    let port = free_port();
    // The rule drops on arrival in the server's namespace, so the client's
    // segments are really lost on the way. (Dropped in the client's own
    // OUTPUT chain, a segment is refused to TCP, which just sends it again
    // later as new data: no retransmission is counted.) The rule lives and
    // dies with the namespace, even when the test fails, and never touches
    // the host's tables.
    let rule = [
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &port.to_string(),
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.2",
        "-j",
        "DROP",
    ]
    .map(str::to_owned);
    let mut add = vec!["netns", "exec", &hosts.server, "iptables", "-A"];
    add.extend(rule.iter().map(String::as_str));
    run_ok("ip", &add);
    let (req, resp) = (400_000usize, 1000usize);
    let mut srv = python(
        Some(&hosts.server),
        "server.py",
        &[arg(&hosts.server_ip), arg(port), arg(req), arg(resp)],
    );
    srv.expect("ready");
    let mut cli = python(
        Some(&hosts.client),
        "client.py",
        &[
            arg(&hosts.server_ip),
            arg(port),
            arg(req),
            arg(resp),
            arg(3),
            arg(0),
        ],
    );
    cli.expect("done");
    let mut last = None;
    let r = (0..600).find_map(|_| {
        let r = find(&a.scrape(), cli.pid(), 1, port);
        let ok = r
            .as_ref()
            .is_some_and(|r| r.v("retran_packets") > 0.0 && r.v("tx_bytes") >= 3.0 * req as f64);
        if ok {
            return r;
        }
        last = r;
        std::thread::sleep(Duration::from_millis(100));
        None
    });
    let r = r.unwrap_or_else(|| {
        let rules = Command::new("ip")
            .args([
                "netns",
                "exec",
                &hosts.server,
                "iptables",
                "-L",
                "INPUT",
                "-v",
                "-n",
                "-x",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "no retransmits after 60 s; last client record {last:?}\nrules:\n{rules}\nlog:\n{}",
            a.log_text()
        )
    });
    let mut del = vec!["netns", "exec", &hosts.server, "iptables", "-D"];
    del.extend(rule.iter().map(String::as_str));
    run_ok("ip", &del);
    assert!(r.v("packets_out") > r.v("retran_packets"), "{r:?}");
    assert_eq!(r.l("client_ip"), hosts.client_ip);
    let expo = a.scrape();
    assert!(stat(&expo, "retrans_events") > 0.0, "{expo}");
}

#[test]
fn connections_open_before_the_agent_are_found_with_their_role() {
    require_root();
    let port = free_port();
    let mut srv = python(
        None,
        "server.py",
        &[arg("127.0.0.1"), arg(port), arg(10), arg(20)],
    );
    srv.expect("ready");
    let mut cli = python(
        None,
        "client.py",
        &[
            arg("127.0.0.1"),
            arg(port),
            arg(10),
            arg(20),
            arg(0),
            arg(2),
        ],
    );
    cli.expect("done");
    let st = Setup::new(&[]);
    let a = agent(&st, "-t 1");
    let ips = ("127.0.0.1", "127.0.0.1", port, "2");
    let ccomm = cli.comm();
    let (cpid, spid) = (cli.pid(), srv.pid());
    for (pid, role) in [(cpid, 1u8), (spid, 0u8)] {
        let r = wait_for(Duration::from_secs(15), "pre-existing", || {
            find(&a.scrape(), pid, role, port)
        });
        assert_eq!(r.v("link_count"), 2.0, "{r:?}");
        assert_eq!(r.l("client_ip"), ips.0);
    }
    // Their counters are read at close at the latest.
    cli.release();
    cli.expect("closed");
    expect_record(
        &a,
        "pre-existing closed",
        cpid,
        &ccomm,
        1,
        ips,
        2.0,
        40.0,
        20.0,
        2.0,
    );
}

#[test]
fn kprobe_plan_is_selectable_and_reports_what_is_missing() {
    require_root();
    let s = Setup::new(&[]);
    let cfg = format!(
        "{}\n[[probes]]\nname = \"tcp_link\"\nparam = \"-t 1 -P 2\"\nswitch = \"on\"\n\
         [[probes]]\nname = \"system_meminfo\"\nparam = \"-t 1\"\nswitch = \"on\"\n",
        s.base_config()
    );
    let a = s.start(&cfg);
    let log = wait_for(Duration::from_secs(15), "kprobe plan verdict", || {
        let log = a.log_text();
        (log.contains("eBPF programs attached") || log.contains("will not be restarted"))
            .then_some(log)
    });
    if log.contains("will not be restarted") {
        // This kernel has no kprobe events: the message names the hook.
        assert!(log.contains("kprobe tcp_set_state"), "{log}");
        let expo = a.scrape();
        assert!(
            expo.lines().any(|l| l
                .starts_with("gala_gopher_self_probe_state{probe=\"tcp_link\",state=\"failed\"")
                && l.ends_with(" 1")),
            "{expo}"
        );
    }
    // The rest of the agent runs on.
    wait_for(Duration::from_secs(10), "system_meminfo", || {
        a.scrape()
            .contains("gala_gopher_system_meminfo_MemTotal{")
            .then_some(())
    });
}

#[test]
fn without_capabilities_the_probe_says_which_and_the_rest_runs() {
    require_root();
    let s = Setup::new(&[]);
    let cfg_path = s.path("gala-gopher.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "{}\n[[probes]]\nname = \"tcp_link\"\nparam = \"-t 1\"\nswitch = \"on\"\n\
             [[probes]]\nname = \"system_meminfo\"\nparam = \"-t 1\"\nswitch = \"on\"\n",
            s.base_config()
        ),
    )
    .unwrap();
    let log_path = s.path("agent.log");
    let child = Command::new("setpriv")
        .env(crate::harness::CTL_SOCKET_ENV, crate::harness::ctl_socket())
        .args([
            "--bounding-set=-bpf,-perfmon,-sys_admin",
            "--inh-caps=-all",
            "--",
        ])
        .arg(crate::harness::bin())
        .arg("--config")
        .arg(&cfg_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("setpriv (util-linux)");
    let a = Agent {
        child,
        port: s.port,
        log: log_path,
    };
    let log = wait_for(Duration::from_secs(20), "capability verdict", || {
        let log = a.log_text();
        log.contains("will not be restarted").then_some(log)
    });
    assert!(
        log.contains("missing capabilities CAP_BPF, CAP_PERFMON"),
        "{log}"
    );
    wait_for(Duration::from_secs(10), "system_meminfo", || {
        crate::harness::http_get(s.port, "/metrics")
            .ok()
            .filter(|(_, b)| b.contains("gala_gopher_system_meminfo_MemTotal{"))
            .map(|_| ())
    });
}
