//! Abnormal events from the built-in rules (gopher/src/rules.rs), end to
//! end: the real agent and the real tcp_link eBPF probe, a real connection
//! between two network namespaces the test creates, an iptables DROP rule on
//! the server's side that makes the client retransmit, and the events read
//! back from the event channel (`event.out_channel = "logs"`: the events log
//! file), at most once per `event.timeout`. Also: a probe that gives up
//! after its restarts raises one ERROR event.
//!
//! Needs root (eBPF, namespaces, iptables): not being root is a failure with
//! a clear message, never a silent skip.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{free_port, run_ok, wait_for, Agent, Helper, Setup, TwoHosts};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the event tests need root (eBPF, network namespaces, iptables); run `make test` as root"
    );
}

/// An iptables rule in a namespace's INPUT chain, deleted on drop.
struct DropRule {
    netns: String,
    rule: Vec<String>,
}

impl DropRule {
    /// Drops a share `p` of the TCP segments arriving for `port`.
    fn add(netns: &str, port: u16, p: &str) -> Self {
        let rule: Vec<String> = [
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
            p,
            "-j",
            "DROP",
        ]
        .map(str::to_owned)
        .to_vec();
        let r = Self {
            netns: netns.to_owned(),
            rule,
        };
        r.iptables("-A");
        r
    }

    fn iptables(&self, op: &str) {
        let mut args = vec!["netns", "exec", &self.netns, "iptables", op];
        args.extend(self.rule.iter().map(String::as_str));
        run_ok("ip", &args);
    }
}

impl Drop for DropRule {
    fn drop(&mut self) {
        let mut args = vec!["netns", "exec", &self.netns, "iptables", "-D"];
        args.extend(self.rule.iter().map(String::as_str));
        let _ = Command::new("ip").args(&args).status();
    }
}

/// A server that reads and discards, and a client that streams until its
/// stdin closes, paced (about 1.6 MB/s) so that the receiver keeps up and
/// nothing is lost before the test drops segments (both python3, written
/// into the setup).
const SINK: &str = r#"
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
def drain(c):
    while c.recv(65536):
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
"#;

const STREAM: &str = r#"
import socket, sys, threading, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=120)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
print("connected", flush=True)
chunk = b"x" * 16384
while not stop.is_set():
    c.sendall(chunk)
    time.sleep(0.01)
c.close()
print("closed", flush=True)
"#;

fn python(s: &Setup, netns: &str, name: &str, body: &str, args: &[String]) -> Helper {
    let path = s.path(name);
    std::fs::write(&path, body).expect("write helper script");
    Helper::python(Some(netns), &path, args)
}

/// Every event of the events log, parsed.
fn events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The events of `metric` (as `Resource.metric`) whose entity id starts
/// with `entity_prefix`.
fn events_of(path: &Path, metric: &str, entity_prefix: &str) -> Vec<serde_json::Value> {
    events(path)
        .into_iter()
        .filter(|e| {
            e["Resource"]["metric"] == metric
                && e["Attributes"]["entity_id"]
                    .as_str()
                    .is_some_and(|id| id.contains(entity_prefix))
        })
        .collect()
}

fn config(s: &Setup, extra: &str) -> String {
    let base = s.base_config();
    let head = "[event]\nout_channel = \"logs\"\n";
    assert!(
        base.contains(head),
        "the harness config has an [event] section"
    );
    format!(
        "{}\n{extra}",
        base.replace(head, &format!("{head}timeout = {TIMEOUT_SECS}\n"))
    )
}

const TIMEOUT_SECS: u64 = 5;

fn start_tcp_link(s: &Setup, param: &str) -> Agent {
    let a = s.start(&config(
        s,
        &format!("[[probes]]\nname = \"tcp_link\"\nparam = \"{param}\"\nswitch = \"on\"\n"),
    ));
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

#[test]
fn retransmits_past_the_threshold_raise_one_event_per_timeout() {
    require_root();
    let hosts = TwoHosts::new("ev", 201);
    let s = Setup::new(&[]);
    // -D 1: more than one segment retransmitted in a period (1 s) raises it.
    let mut a = start_tcp_link(&s, "-t 1 -D 1");
    let log = s.path("logs/event/events.log");
    let port = free_port();
    let mut srv = python(
        &s,
        &hosts.server,
        "sink.py",
        SINK,
        &[hosts.server_ip.clone(), port.to_string()],
    );
    srv.expect("ready");
    let mut cli = python(
        &s,
        &hosts.client,
        "stream.py",
        STREAM,
        &[hosts.server_ip.clone(), port.to_string()],
    );
    cli.expect("connected");
    // The client's link (role 1) as the rules name it: pid_role_...
    let entity = format!("_tcp_link_{}_1_", cli.pid());
    let metric = "gala_gopher_tcp_link_retran_packets";
    // Before any drop: a few periods of records, and no event.
    wait_for(
        Duration::from_secs(20),
        "the client's tcp_link series",
        || {
            a.scrape()
                .lines()
                .any(|l| {
                    l.starts_with("gala_gopher_tcp_link_tx_bytes{")
                        && l.contains(&format!("pid=\"{}\"", cli.pid()))
                })
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        events_of(&log, metric, &entity).is_empty(),
        "an event before any drop: {:?}",
        events(&log)
    );

    let rule = DropRule::add(&hosts.server, port, "0.1");
    let first = wait_for(Duration::from_secs(30), "a retransmit event", || {
        events_of(&log, metric, &entity).into_iter().next()
    });
    let seen_at = Instant::now();
    assert_eq!(
        first["Resource"]["labels"]["pid"],
        cli.pid().to_string(),
        "{first}"
    );
    assert_eq!(first["SeverityText"], "WARN", "{first}");
    assert_eq!(first["SeverityNumber"], 13, "{first}");
    assert_eq!(first["Attributes"]["event_type"], "sys", "{first}");
    let ip = first["Resource"]["labels"]["ip"]
        .as_str()
        .unwrap_or_default();
    assert!(
        ip.contains(&format!("SIP({}:{port})", hosts.server_ip)),
        "{first}"
    );
    let body = first["Body"].as_str().unwrap_or_default();
    assert!(body.contains("retransmitted"), "{first}");
    let t1 = first["Timestamp"].as_u64().expect("Timestamp");

    // Within the timeout the retransmits go on (checked below through the
    // second event) but no second event is passed on.
    let quiet = Duration::from_secs(TIMEOUT_SECS) - Duration::from_millis(1500);
    std::thread::sleep(quiet.saturating_sub(seen_at.elapsed()));
    let within = events_of(&log, metric, &entity);
    assert_eq!(
        within.len(),
        1,
        "more than one event within event.timeout: {within:?}"
    );

    // After it, the next period over the threshold passes again.
    let second = wait_for(Duration::from_secs(30), "a second retransmit event", || {
        events_of(&log, metric, &entity).into_iter().nth(1)
    });
    let t2 = second["Timestamp"].as_u64().expect("Timestamp");
    assert!(
        t2 >= t1 + TIMEOUT_SECS * 1000,
        "the second event came {} ms after the first, within the timeout",
        t2.saturating_sub(t1)
    );
    drop(rule);
    cli.release();
    cli.expect("closed");
    let all = events_of(&log, metric, &entity);
    let ts: Vec<u64> = all.iter().filter_map(|e| e["Timestamp"].as_u64()).collect();
    assert!(
        ts.windows(2).all(|w| w[1] >= w[0] + TIMEOUT_SECS * 1000),
        "two events closer than event.timeout: {ts:?}"
    );
    // The suppressed ones are counted.
    let expo = a.scrape();
    assert!(
        expo.lines()
            .any(|l| l.starts_with("gala_gopher_self_events_suppressed") && !l.ends_with(" 0")),
        "no suppressed events counted:\n{expo}"
    );
    // The rules end with the agent: SIGTERM stops it cleanly.
    assert_eq!(a.stop(), Some(0), "{}", a.log_text());
}

#[test]
fn a_probe_that_gives_up_raises_one_error_event() {
    let s = Setup::new(&[]);
    let script = s.script("fails.sh", "echo starting >&2\nexit 3");
    let cfg = config(
        &s,
        &format!(
            "[[extend_probes]]\nname = \"doomed\"\ncommand = \"{}\"\nswitch = \"on\"\n",
            script.display()
        ),
    )
    .replace("restart_max = 3", "restart_max = 1");
    let mut a = s.start(&cfg);
    let log = s.path("logs/event/events.log");
    let ev = wait_for(Duration::from_secs(20), "the probe-failed event", || {
        events_of(&log, "gala_gopher_probe_state", "_probe_doomed")
            .into_iter()
            .next()
    });
    assert_eq!(ev["SeverityText"], "ERROR", "{ev}");
    assert_eq!(ev["SeverityNumber"], 17, "{ev}");
    let body = ev["Body"].as_str().unwrap_or_default();
    assert!(body.contains("doomed") && body.contains("3"), "{ev}");
    assert!(
        a.log_text().contains("will not be restarted"),
        "{}",
        a.log_text()
    );
    // One only: the probe is not restarted, so nothing raises it again.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        events_of(&log, "gala_gopher_probe_state", "_probe_doomed").len(),
        1,
        "{:?}",
        events(&log)
    );
    a.stop();
}

#[test]
fn a_threshold_set_over_rest_turns_its_rule_on() {
    require_root();
    let hosts = TwoHosts::new("ev", 201);
    let s = Setup::new(&[]);
    let rest = free_port();
    // tcp_link runs without -D: the retransmit rule is off.
    let cfg = config(
        &s,
        &format!(
            "[rest_api_server]\nport = {rest}\nbind_addr = \"127.0.0.1\"\n\n\
             [[probes]]\nname = \"tcp_link\"\nparam = \"-t 1\"\nswitch = \"on\"\n"
        ),
    )
    .replacen("[global]\n", "[global]\nrest_api_on = true\n", 1);
    let a = s.start(&cfg);
    wait_for(Duration::from_secs(20), "tcp_link attached", || {
        a.log_text()
            .contains("eBPF programs attached")
            .then_some(())
    });
    let log = s.path("logs/event/events.log");
    let port = free_port();
    let mut srv = python(
        &s,
        &hosts.server,
        "sink.py",
        SINK,
        &[hosts.server_ip.clone(), port.to_string()],
    );
    srv.expect("ready");
    let mut cli = python(
        &s,
        &hosts.client,
        "stream.py",
        STREAM,
        &[hosts.server_ip.clone(), port.to_string()],
    );
    cli.expect("connected");
    let entity = format!("_tcp_link_{}_1_", cli.pid());
    let metric = "gala_gopher_tcp_link_retran_packets";
    let rule = DropRule::add(&hosts.server, port, "0.1");
    // Retransmits go on, but with no threshold nothing is raised.
    wait_for(Duration::from_secs(20), "retransmits counted", || {
        a.scrape()
            .lines()
            .any(|l| {
                l.starts_with("gala_gopher_tcp_link_retran_packets{")
                    && l.contains(&format!("pid=\"{}\"", cli.pid()))
                    && !l.ends_with(" 0")
            })
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        events_of(&log, metric, &entity).is_empty(),
        "an event with the rule off: {:?}",
        events(&log)
    );
    // The legacy REST call sets drops_thr (the probe's -D) at run time.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            &format!("http://127.0.0.1:{rest}/tcp_link"),
            "-d",
            "json={\"params\":{\"drops_thr\":10}}",
        ])
        .output()
        .expect("curl is required by this test");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "PUT /tcp_link: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        a.log_text()
    );
    let ev = wait_for(
        Duration::from_secs(40),
        "a retransmit event after the PUT",
        || events_of(&log, metric, &entity).into_iter().next(),
    );
    assert!(
        ev["Body"]
            .as_str()
            .is_some_and(|b| b.contains("threshold 10")),
        "{ev}"
    );
    drop(rule);
}
