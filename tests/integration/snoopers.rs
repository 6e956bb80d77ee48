//! Snoopers of tcp_link on the real kernel: two processes with different
//! comms (python3 helpers that rename themselves with prctl) make loopback
//! connections to themselves; with a snooper on one of them (by comm, or by
//! pid) only its tcp_link series appear, and the probe's store of live
//! connections holds entries for its connections only (the stats field
//! `conn_entries`, read from the kernel map). Without snoopers both appear.
//!
//! These tests need root (eBPF). Not being root is a failure with a clear
//! message, never a silent skip.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::harness::{wait_for, Agent, Setup, Tracefs};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the tcp_link snoopers tests need root (CAP_BPF, CAP_PERFMON); run `make test` as root"
    );
}

/// Renames itself (argv[1]), listens on a loopback port, waits for a line
/// on stdin, then opens argv[2] connections to itself, sends a little on
/// each and holds them until stdin closes.
const PEER: &str = r#"
import ctypes, os, socket, sys, time
name, n = sys.argv[1], int(sys.argv[2])
libc = ctypes.CDLL(None)
libc.prctl(15, name.encode(), 0, 0, 0)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
port = srv.getsockname()[1]
print("ready", port, flush=True)
sys.stdin.readline()
clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
accepted = [srv.accept()[0] for _ in range(n)]
for c in clients:
    c.sendall(b"x" * 100)
for a in accepted:
    a.recv(100)
    a.sendall(b"y" * 200)
for c in clients:
    c.recv(200)
print("connected", flush=True)
if len(sys.argv) > 3:
    # A child that renames itself at once and connects: watched only as the
    # child of a watched process, from its first connection.
    pid = os.fork()
    if pid == 0:
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
        libc.prctl(15, sys.argv[3].encode(), 0, 0, 0)
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"z" * 100)
        while True:
            time.sleep(60)
    a = srv.accept()[0]
    a.recv(100)
    print("child", pid, flush=True)
sys.stdin.read()
"#;

/// One helper process; killed (by its pid) on drop.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    port: u16,
    comm: String,
    conns: usize,
}

impl Peer {
    fn start(comm: &str, conns: usize) -> Self {
        Self::start_args(comm, conns, &[])
    }

    fn start_args(comm: &str, conns: usize, more: &[&str]) -> Self {
        let mut child = Command::new("python3")
            .args(["-c", PEER, comm, &conns.to_string()])
            .args(more)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 is required by this test");
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut p = Self {
            child,
            stdin,
            out,
            port: 0,
            comm: comm.to_owned(),
            conns,
        };
        let line = p.line();
        p.port = line
            .strip_prefix("ready ")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("{comm}: expected `ready <port>`, got {line:?}"));
        let got = std::fs::read_to_string(format!("/proc/{}/comm", p.pid())).unwrap_or_default();
        assert_eq!(got.trim(), comm, "the helper renamed itself");
        p
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.out.read_line(&mut line).expect("read helper");
        assert!(n > 0, "{}: helper exited early", self.comm);
        line
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Makes its connections and waits until they carried their data.
    fn connect(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("write helper");
        stdin.flush().expect("flush helper");
        let line = self.line();
        assert_eq!(line.trim(), "connected", "{}", self.comm);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(pid, role)` of every tcp_link series on `port`.
fn series_on(expo: &str, port: u16) -> HashSet<(u32, u8)> {
    let want = format!("server_port=\"{port}\"");
    expo.lines()
        .filter(|l| l.starts_with("gala_gopher_tcp_link_") && l.contains(&want))
        .filter_map(|l| {
            let labels = l.split_once('{')?.1.rsplit_once('}')?.0;
            let label = |k: &str| {
                labels
                    .split("\",")
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
            };
            Some((label("pid")?.parse().ok()?, label("role")?.parse().ok()?))
        })
        .collect()
}

/// A field of `tcp_link_probe_stats` (`NaN` before the first record).
fn stat(expo: &str, name: &str) -> f64 {
    let m = format!("gala_gopher_tcp_link_probe_stats_{name}");
    expo.lines()
        .find(|l| l.starts_with(&format!("{m}{{")) || l.starts_with(&format!("{m}_total{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn agent(s: &Setup, snoopers: &str) -> Agent {
    agent_env(s, snoopers, &[])
}

fn agent_env(s: &Setup, snoopers: &str, env: &[(&str, &str)]) -> Agent {
    let cfg = format!(
        "{}\n[[probes]]\nname = \"tcp_link\"\nparam = \"-t 1\"\nswitch = \"on\"\n{snoopers}\n",
        s.base_config()
    );
    let a = s.start_in(&cfg, env, Tracefs::Absent);
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

/// Waits until the probe's map of watched processes holds `n` tgids.
fn wait_watched(a: &Agent, n: f64) {
    let mut last = f64::NAN;
    for _ in 0..100 {
        last = stat(&a.scrape(), "watched_tgids");
        if last == n {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "watched_tgids stayed {last}, expected {n}\nlog:\n{}",
        a.log_text()
    );
}

/// With `watched` selected, `other` not: only the watched helper's series
/// appear, and the store of live connections holds its connections only.
fn only_the_watched_one_shows(a: &Agent, watched: &mut Peer, other: &mut Peer) {
    // Connections made before the rescan found the helper are not
    // tracked: wait until the kernel map holds it.
    wait_watched(a, 1.0);
    let skipped_before = stat(&a.scrape(), "unwatched_skipped");
    watched.connect();
    other.connect();
    let want: HashSet<(u32, u8)> = [(watched.pid(), 0), (watched.pid(), 1)].into();
    let entries = 2.0 * watched.conns as f64;
    let expo = wait_for(
        Duration::from_secs(15),
        "the watched helper's series and its entries",
        || {
            let e = a.scrape();
            (series_on(&e, watched.port) == want && stat(&e, "conn_entries") == entries)
                .then_some(e)
        },
    );
    // A few more periods: the other helper never shows, and its
    // connections never had an entry.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        let e = a.scrape();
        assert!(
            series_on(&e, other.port).is_empty(),
            "series of the unwatched helper (pid {}): {:?}",
            other.pid(),
            series_on(&e, other.port)
        );
        assert_eq!(series_on(&e, watched.port), want, "{e}");
        assert_eq!(
            stat(&e, "conn_entries"),
            entries,
            "the store holds entries of the watched helper's {} connections (each side) only",
            watched.conns
        );
        assert_eq!(stat(&e, "watched_tgids"), 1.0);
    }
    // Each side of each of the other helper's connections was refused an
    // entry (other processes of the machine may add to the count).
    let skipped = stat(&expo, "unwatched_skipped").max(stat(&a.scrape(), "unwatched_skipped"));
    assert!(
        skipped - skipped_before >= 2.0 * other.conns as f64,
        "unwatched_skipped went from {skipped_before} to {skipped}"
    );
}

#[test]
fn a_snooper_by_comm_shows_only_that_process() {
    require_root();
    let s = Setup::new(&[]);
    let a = agent(
        &s,
        "snoopers = { proc_name = [ { comm = \"^tlsnoopA$\" } ] }",
    );
    // Started after the agent: the rescan of each period finds them.
    let mut watched = Peer::start("tlsnoopA", 3);
    let mut other = Peer::start("tlsnoopB", 5);
    only_the_watched_one_shows(&a, &mut watched, &mut other);
    // When it exits, it leaves the map.
    drop(watched);
    wait_watched(&a, 0.0);
    assert!(
        a.log_text()
            .contains("snoopers: watching the selected processes"),
        "{}",
        a.log_text()
    );
}

/// The fork hook: a child of a watched process is watched from its first
/// connection, made a moment after the fork and under another name, long
/// before the next rescan of /proc could find it.
#[test]
fn a_child_of_a_watched_process_is_watched_from_its_first_connection() {
    require_root();
    let s = Setup::new(&[]);
    let a = agent(
        &s,
        "snoopers = { proc_name = [ { comm = \"^tlsnoopF$\" } ] }",
    );
    let mut parent = Peer::start_args("tlsnoopF", 2, &["tlsnoopG"]);
    wait_watched(&a, 1.0);
    parent.connect();
    let line = parent.line();
    let child: u32 = line
        .strip_prefix("child ")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("expected `child <pid>`, got {line:?}"));
    let got = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
    assert_eq!(got.trim(), "tlsnoopG", "the child renamed itself");
    let want: HashSet<(u32, u8)> = [(parent.pid(), 0), (parent.pid(), 1), (child, 1)].into();
    wait_for(
        Duration::from_secs(15),
        "series of the parent and of its child",
        || {
            let e = a.scrape();
            (series_on(&e, parent.port) == want
                && stat(&e, "conn_entries") == 2.0 * 2.0 + 2.0
                && stat(&e, "watched_tgids") == 2.0)
                .then_some(())
        },
    );
    // Killing the parent kills the child (PR_SET_PDEATHSIG): both leave
    // the map.
    drop(parent);
    wait_watched(&a, 0.0);
}

/// The paths of older kernels (the classic tracepoint, the hash map of live
/// connections, the classic fork and exit tracepoints) honour snoopers too.
#[test]
fn older_kernel_paths_honour_a_snooper_by_comm() {
    require_root();
    let s = Setup::new(&[]);
    let a = agent_env(
        &s,
        "snoopers = { proc_name = [ { comm = \"^tlsnoopC\", cmdline = \"python\" } ] }",
        &[("GALA_GOPHER_TCP_LINK_COMPAT", "1")],
    );
    let mut watched = Peer::start("tlsnoopC1", 2);
    let mut other = Peer::start("tlsnoopD", 3);
    only_the_watched_one_shows(&a, &mut watched, &mut other);
    let e = a.scrape();
    assert!(
        e.contains("plan=\"tracepoint\""),
        "the classic plan: {}",
        e.lines()
            .filter(|l| l.contains("probe_stats"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !a.log_text().contains("cannot attach tracepoint sched:"),
        "{}",
        a.log_text()
    );
}

#[test]
fn a_snooper_by_pid_shows_only_that_process() {
    require_root();
    let s = Setup::new(&[]);
    // Same comm for both: only the pid tells them apart.
    let mut watched = Peer::start("tlsnoopP", 4);
    let mut other = Peer::start("tlsnoopP", 2);
    let a = agent(
        &s,
        &format!("snoopers = {{ proc_id = [ {} ] }}", watched.pid()),
    );
    only_the_watched_one_shows(&a, &mut watched, &mut other);
}

#[test]
fn without_snoopers_every_process_shows() {
    require_root();
    let s = Setup::new(&[]);
    let a = agent(&s, "");
    let mut one = Peer::start("tlsnoopA", 3);
    let mut two = Peer::start("tlsnoopB", 2);
    one.connect();
    two.connect();
    let both = |p: &Peer| -> HashSet<(u32, u8)> { [(p.pid(), 0), (p.pid(), 1)].into() };
    wait_for(Duration::from_secs(15), "series of both helpers", || {
        let e = a.scrape();
        (series_on(&e, one.port) == both(&one)
            && series_on(&e, two.port) == both(&two)
            && stat(&e, "conn_entries") >= 10.0)
            .then_some(())
    });
    let e = a.scrape();
    assert_eq!(stat(&e, "watched_tgids"), 0.0, "no map in use");
    assert_eq!(stat(&e, "unwatched_skipped"), 0.0, "nothing skipped");
}

/// A selector tcp_link cannot use is a config error naming the key.
#[test]
fn a_bad_container_id_is_a_config_error_naming_the_key() {
    let s = Setup::new(&[]);
    let cfg = s.path("gala-gopher.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[[probes]]\nname = \"tcp_link\"\nswitch = \"on\"\nsnoopers = {{ container_id = [ \"abc\", \"not-a-container\" ] }}\n",
            s.base_config()
        ),
    )
    .expect("write config");
    let out = Command::new(crate::harness::bin())
        .arg("check-config")
        .arg(&cfg)
        .output()
        .expect("run check-config");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    assert!(
        err.contains("probes[0].snoopers")
            && err.contains("container_id[1]: expected 1 to 64 hex digits of a container id, got \"not-a-container\""),
        "{err}"
    );
}
