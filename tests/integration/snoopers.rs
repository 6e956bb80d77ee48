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

// ---- Extend and C probes: the watched set at each start ----------------

const SEEN_META: &str = include_str!("../data/snoopers_seen.meta");

/// A `sleep` started by the test to be watched; killed by its pid on drop.
struct Sleeper(Child);

impl Sleeper {
    /// `sleep <secs>`: the argument tells the sleepers apart by cmdline.
    fn start(secs: &str) -> Self {
        let child = Command::new("sleep")
            .arg(secs)
            .spawn()
            .expect("start sleep");
        let pid = child.id();
        // Until its exec is done it still has the test's comm.
        wait_for(Duration::from_secs(5), "sleep to exec", || {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (comm.trim() == "sleep").then_some(())
        });
        Self(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `snoopers_seen` series of `probe`: (pids, file) -> (file_exists,
/// entries), from each gauge's line.
fn seen(expo: &str, probe: &str) -> Vec<(String, String, f64, f64)> {
    let label = |labels: &str, k: &str| {
        labels
            .split("\",")
            .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
            .map(|v| v.trim_end_matches('"').to_owned())
    };
    let lines = |field: &str| -> Vec<(String, String, f64)> {
        let m = format!("gala_gopher_snoopers_seen_{field}{{");
        expo.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&m)?;
                let (labels, value) = rest.rsplit_once("} ")?;
                if label(labels, "probe")? != probe {
                    return None;
                }
                Some((
                    label(labels, "pids")?,
                    label(labels, "file")?,
                    value.trim().parse().ok()?,
                ))
            })
            .collect()
    };
    let entries = lines("entries");
    lines("file_exists")
        .into_iter()
        .map(|(p, f, e)| {
            let n = entries
                .iter()
                .find(|(p2, f2, _)| *p2 == p && *f2 == f)
                .map_or(f64::NAN, |x| x.2);
            (p, f, e, n)
        })
        .collect()
}

/// `curl -X PUT` of `body` to `/<name>` on the REST port: the status.
fn rest_put(port: u16, name: &str, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            "-X",
            "PUT",
        ])
        .arg(format!("http://127.0.0.1:{port}/{name}"))
        .args(["-d", body])
        .output()
        .expect("curl is needed by this test (scripts/deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// An extend probe with `snoopers` gets the pids and the whitelist file in
/// its environment at start; `PUT /<name>` with new snoopers restarts it
/// alone, with the new set.
#[test]
fn an_extend_probe_gets_its_snoopers_in_its_environment_and_rest_changes_them() {
    let s = Setup::new(&[("snoopers_seen.meta", SEEN_META)]);
    let a_sleep = Sleeper::start("1000.4141");
    let b_sleep = Sleeper::start("1000.4242");
    let script = s.script(
        "seen.sh",
        r#"f="$GALA_GOPHER_SNOOPERS_FILE"
while true; do
  if [ -n "$f" ] && [ -f "$f" ]; then e=1; n=$(grep -c 'comm =' "$f"); else e=0; n=-1; fi
  echo "|snoopers_seen|ext|${GALA_GOPHER_SNOOPER_PIDS:-none}|${f:-none}|$e|$n|"
  sleep 0.5
done"#,
    );
    let rest_port = crate::harness::free_port();
    let cfg = format!(
        "{}\n[rest_api_server]\nport = {rest_port}\nbind_addr = \"127.0.0.1\"\n\
         [[extend_probes]]\nname = \"snoop_ext\"\ncommand = \"{}\"\nswitch = \"on\"\n\
         snoopers = {{ proc_id = [ {} ] }}\n\
         [[probes]]\nname = \"system_meminfo\"\nparam = \"-t 1\"\nswitch = \"on\"\n",
        s.base_config()
            .replacen("[global]\n", "[global]\nrest_api_on = true\n", 1),
        script.display(),
        a_sleep.pid()
    );
    let sock = s.path("ctl.sock");
    let a = s.start_with_env(
        &cfg,
        &[("GALA_GOPHER_CTL_SOCKET", sock.to_str().expect("utf-8"))],
    );
    let file = s.path("state/snoopers/snoop_ext.conf");
    let file_s = file.display().to_string();
    let a_pid = a_sleep.pid().to_string();
    wait_for(
        Duration::from_secs(20),
        "the extend probe reports sleep A",
        || {
            seen(&a.scrape(), "ext")
                .contains(&(a_pid.clone(), file_s.clone(), 1.0, 0.0))
                .then_some(())
        },
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let text = std::fs::read_to_string(&file).expect("the snoopers file");
        assert!(text.contains("application"), "{text}");
        let mode = std::fs::metadata(s.path("state/snoopers"))
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the snoopers dir is private");
    }
    // New snoopers over REST: by name, now selecting sleep B only.
    let (code, body) = rest_put(
        rest_port,
        "snoop_ext",
        r#"json={"snoopers":{"proc_name":[{"comm":"^sleep$","cmdline":"1000.4242"}]}}"#,
    );
    assert_eq!(code, 200, "PUT /snoop_ext: {body}");
    let b_pid = b_sleep.pid().to_string();
    wait_for(
        Duration::from_secs(20),
        "the restarted probe reports sleep B and one whitelist entry",
        || {
            seen(&a.scrape(), "ext")
                .contains(&(b_pid.clone(), file_s.clone(), 1.0, 1.0))
                .then_some(())
        },
    );
    let text = std::fs::read_to_string(&file).expect("the snoopers file");
    assert!(
        text.contains("comm = \"^sleep$\"; cmdline = \"1000.4242\";"),
        "{text}"
    );
    let log = a.log_text();
    assert!(
        log.contains("snoopers: given to the probe at its start"),
        "{log}"
    );
    // The REST view shows the new snoopers; the other probe kept running,
    // never restarted.
    let view = |name: &str| -> serde_json::Value {
        let (code, body) = crate::harness::http_get(rest_port, &format!("/{name}")).expect("GET");
        assert_eq!(code, 200, "GET /{name}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    };
    let ext = view("snoop_ext");
    assert_eq!(
        ext["snoopers"]["proc_name"][0]["cmdline"], "1000.4242",
        "{ext}"
    );
    let other = view("system_meminfo");
    assert_eq!(other["state"], "running", "{other}");
    assert_eq!(other["restarts"], 0, "{other}");
}

/// `tests/data/c/<src>.c` built as a legacy V1 probe
/// (`-Dmain=probe_main_<name>`) against include/ and libgopher.so.
fn build_legacy_so(src: &str, name: &str, out: &std::path::Path) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || crate::harness::repo().join("target"),
        std::path::PathBuf::from,
    );
    let debug = target.join("debug");
    let lib = [debug.clone(), debug.join("deps")]
        .into_iter()
        .find(|d| d.join("libgopher.so").exists())
        .unwrap_or_else(|| {
            panic!(
                "libgopher.so not found under {}: run `cargo build -p gopher-ffi` first",
                debug.display()
            )
        });
    let so = out.join(format!("{src}.so"));
    let o = Command::new("cc")
        .args([
            "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-O1", "-I",
        ])
        .arg(crate::harness::repo().join("include"))
        .arg(format!("-Dmain=probe_main_{name}"))
        .arg(crate::harness::repo().join(format!("tests/data/c/{src}.c")))
        .arg("-L")
        .arg(&lib)
        .arg("-lgopher")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&so)
        .output()
        .expect("a C compiler (cc) is required");
    assert!(
        o.status.success(),
        "{src}.c does not compile:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    so
}

/// A C probe with `snoopers` gets them in its V1 params: `task_whitelist`
/// names the file written for it (which `parse_whitelist_config` reads),
/// and `filter_pid` is the one pid selected, or 0 (every process) when
/// several are, in place of the `-F` of its `param`.
#[test]
fn a_c_probe_gets_its_snoopers_in_filter_pid_and_task_whitelist() {
    let s = Setup::new(&[("snoopers_seen.meta", SEEN_META)]);
    let out = s.path("so");
    std::fs::create_dir_all(&out).expect("so dir");
    let a_sleep = Sleeper::start("1000.5151");
    let _b_sleep = Sleeper::start("1000.5252");
    let one = build_legacy_so("snooper_params", "snoop_one", &out);
    // The same source under a second entry name.
    std::fs::create_dir_all(s.path("so2")).expect("so2 dir");
    let two_so = build_legacy_so("snooper_params", "snoop_two", &s.path("so2"));
    let cfg = format!(
        "{}\n[[probes]]\nname = \"snoop_one\"\nlibrary = \"{}\"\nparam = \"-t 1 -m one -F 7\"\n\
         snoopers = {{ proc_id = [ {} ] }}\n\
         [[probes]]\nname = \"snoop_two\"\nlibrary = \"{}\"\nparam = \"-t 1 -m two -F 7 -w /nonexistent\"\n\
         snoopers = {{ proc_name = [ {{ comm = \"^sleep$\", cmdline = \"1000.5\" }} ] }}\n",
        s.base_config(),
        one.display(),
        a_sleep.pid(),
        two_so.display(),
    );
    let a = s.start(&cfg);
    let file = |p: &str| {
        s.path(&format!("state/snoopers/{p}.conf"))
            .display()
            .to_string()
    };
    let want_one = (a_sleep.pid().to_string(), file("snoop_one"), 1.0, 0.0);
    let want_two = ("0".to_owned(), file("snoop_two"), 1.0, 1.0);
    wait_for(Duration::from_secs(20), "both C probes report", || {
        let e = a.scrape();
        (seen(&e, "c_one").contains(&want_one) && seen(&e, "c_two").contains(&want_two))
            .then_some(())
    });
    // Only these series: the user's -F 7 and -w never reached the probes.
    let e = a.scrape();
    assert_eq!(seen(&e, "c_one"), [want_one], "{e}");
    assert_eq!(seen(&e, "c_two"), [want_two], "{e}");
}

/// An extend probe with `ipc` takes its snoopers in `ipc.snoopers`: both
/// at once are a config error naming the key.
#[test]
fn snoopers_beside_ipc_are_a_config_error_naming_the_key() {
    let s = Setup::new(&[]);
    let cfg = s.path("gala-gopher.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[[extend_probes]]\nname = \"proc2x\"\ncommand = \"/bin/true\"\nswitch = \"on\"\n\
             snoopers = {{ proc_id = [ 1 ] }}\n[extend_probes.ipc]\nprobe_type = \"proc\"\n",
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
        err.contains("extend_probes[0].snoopers")
            && err.contains("`snoopers` and `ipc` are both set")
            && err.contains("ipc.snoopers"),
        "{err}"
    );
}
