//! Starting the real `gala-gopher` binary on a temporary config and talking
//! to it over real HTTP on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Root of the source tree.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The daemon binary built by `cargo build -p gala-gopher` (`make test`
/// builds it first). Fails loudly when it is missing.
pub fn bin() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    let p = target.join("debug").join("gala-gopher");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p gala-gopher` first (`make test` does)",
        p.display()
    );
    p
}

/// A fresh path for an agent's control socket, in a directory of this test
/// process that is removed when it exits. Every agent a test starts gets
/// one through `GALA_GOPHER_CTL_SOCKET` (the test may set its own after), so
/// no agent of the tests serves the host's `/run/gala-gopher/gopher-ctl.sock`
/// and agents running side by side do not take each other's socket.
pub fn ctl_socket() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir for control sockets"));
    dir.path()
        .join(format!("ctl-{}.sock", NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// The variable that moves an agent's control socket.
pub const CTL_SOCKET_ENV: &str = "GALA_GOPHER_CTL_SOCKET";

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.1 GET; returns (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A temporary agent setup: a directory with meta/, logs and a config.
#[derive(Debug)]
pub struct Setup {
    /// Holds everything; removed on drop.
    pub dir: tempfile::TempDir,
    /// The web_server port.
    pub port: u16,
}

impl Setup {
    /// A temp dir with `meta/` holding the repo's meta files plus `extra_meta`
    /// (name, content) files.
    pub fn new(extra_meta: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = dir.path().join("meta");
        std::fs::create_dir_all(&meta).expect("meta dir");
        for e in std::fs::read_dir(repo().join("meta")).expect("repo meta/") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), meta.join(e.file_name())).expect("copy meta");
        }
        for (name, content) in extra_meta {
            std::fs::write(meta.join(name), content).expect("write meta");
        }
        Self {
            dir,
            port: free_port(),
        }
    }

    /// Path inside the setup.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The common TOML head: meta dir, state/log dirs in the temp dir, port,
    /// fast restarts. Append `[[probes]]`/`[[extend_probes]]` after it.
    pub fn base_config(&self) -> String {
        let d = self.dir.path().display();
        format!(
            r#"[global]
log_level = "debug"
meta_dir = "{d}/meta"
state_dir = "{d}/state"

[metric]
out_channel = "web_server"

[event]
out_channel = "logs"

[meta]
out_channel = "logs"

[imdb]
record_timeout = 60

[web_server]
port = {port}
bind_addr = "127.0.0.1"

[logs]
metric_dir = "{d}/logs/metrics"
event_dir = "{d}/logs/event"
meta_dir = "{d}/logs/meta"
debug_dir = "{d}/logs/debug"

[supervisor]
restart_max = 3
restart_backoff_ms = 100
stop_grace_ms = 2000
"#,
            port = self.port
        )
    }

    /// Writes an executable shell script into the setup and returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    /// Writes `config` to `gala-gopher.toml` and starts the agent on it.
    pub fn start(&self, config: &str) -> Agent {
        self.start_with_env(config, &[])
    }

    /// [`Setup::start`] with extra environment variables.
    pub fn start_with_env(&self, config: &str, env: &[(&str, &str)]) -> Agent {
        self.start_in(config, env, Tracefs::AsIs)
    }

    /// [`Setup::start_with_env`], the agent seeing tracefs as `tracefs` says.
    pub fn start_in(&self, config: &str, env: &[(&str, &str)], tracefs: Tracefs) -> Agent {
        let cfg = self.path("gala-gopher.toml");
        std::fs::write(&cfg, config).expect("write config");
        Agent::spawn_in(&cfg, self.port, &self.path("agent.log"), env, tracefs)
    }
}

/// What the agent under test finds mounted. A fresh machine often has no
/// tracefs, debugfs or bpffs; a prepared one has them. Every agent of the
/// tests runs in a private mount namespace of its own, so that what it
/// mounts (bpffs for extend probes, tracefs for the classic tcp_link plan)
/// stays there and the host's mounts are never touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracefs {
    /// A private copy of the test process's own mounts.
    AsIs,
    /// No tracefs, debugfs or bpffs, as on a fresh machine.
    Absent,
    /// tracefs mounted at /sys/kernel/tracing.
    Present,
}

/// Exit code of the mount prelude when it could not set the mounts up.
const PRELUDE_FAILED: i32 = 97;

impl Tracefs {
    /// Shell run before the agent in its private mount namespace.
    fn prelude(self) -> Option<String> {
        match self {
            Tracefs::AsIs => None,
            Tracefs::Absent => Some(format!(
                "for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug /sys/fs/bpf; do \
                   while mountpoint -q $m; do umount -l $m || exit {PRELUDE_FAILED}; done; done"
            )),
            Tracefs::Present => Some(format!(
                "mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing \
                   || exit {PRELUDE_FAILED}"
            )),
        }
    }

    /// `cmd args..` as a command that runs it with these mounts: through
    /// `unshare --mount` and a shell that execs it, so the child's pid is
    /// the program's own.
    pub fn command(self, extra_unshare: &[&str], prelude: &str, program: &Path) -> Command {
        let mount = self.prelude();
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private"]);
        let script = [
            mount.as_deref().unwrap_or(""),
            prelude,
            "exec \"$0\" \"$@\"",
        ]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" && ");
        c.args(extra_unshare)
            .args(["--", "sh", "-c", &script])
            .arg(program)
            .env(CTL_SOCKET_ENV, ctl_socket());
        c
    }
}

/// A running agent, killed on drop.
#[derive(Debug)]
pub struct Agent {
    /// The process.
    pub child: Child,
    /// The web_server port.
    pub port: u16,
    /// Its stderr.
    pub log: PathBuf,
}

impl Agent {
    /// Starts the binary with extra environment variables, seeing tracefs
    /// as `tracefs` says, and waits until it serves HTTP (or exits).
    pub fn spawn_in(
        config: &Path,
        port: u16,
        log: &Path,
        env: &[(&str, &str)],
        tracefs: Tracefs,
    ) -> Self {
        let err = std::fs::File::create(log).expect("log file");
        let child = tracefs
            .command(&[], "", &bin())
            .envs(env.iter().copied())
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn gala-gopher");
        let mut a = Self {
            child,
            port,
            log: log.to_path_buf(),
        };
        wait_for(Duration::from_secs(20), "the agent to serve :port", || {
            if let Ok(Some(st)) = a.child.try_wait() {
                assert_ne!(
                    st.code(),
                    Some(PRELUDE_FAILED),
                    "could not set up the mounts {tracefs:?} for the agent (needs root and unshare)"
                );
                panic!("agent exited early ({st}); log:\n{}", a.log_text());
            }
            http_get(port, "/metrics")
                .ok()
                .filter(|(s, _)| *s == 200)
                .map(|_| ())
        });
        a
    }

    /// One scrape of /metrics; panics unless it is a 200.
    pub fn scrape(&self) -> String {
        let (status, body) = http_get(self.port, "/metrics").expect("scrape");
        assert_eq!(status, 200, "scrape status; body: {body}");
        body
    }

    /// The agent's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: plain kill(2) of our own child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "agent ignored SIGTERM; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Value of the exposition series whose line starts with `prefix`
/// (metric name and labels up to a point).
pub fn series_value(expo: &str, prefix: &str) -> Option<f64> {
    expo.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Runs `promtool check metrics` on `expo`; returns (exit code, output).
pub fn promtool(expo: &str) -> (i32, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required for this test: `make test` installs it (Debian package prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(expo.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The state of each process in `pids` that still exists and is not a zombie.
pub fn live_pids(pids: &[i32]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("");
            !stat.is_empty() && state != "Z"
        })
        .collect()
}

/// A line-driven helper process of the tests (a python3 script under
/// tests/data/), optionally inside a network namespace: it prints words the
/// test waits for and reads words the test sends. Killed on drop.
#[derive(Debug)]
pub struct Helper {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Helper {
    /// `python3 <script> args..`, inside `netns` when given.
    pub fn python<S: AsRef<std::ffi::OsStr>>(
        netns: Option<&str>,
        script: &Path,
        args: &[S],
    ) -> Self {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "python3"]);
                c
            }
            None => Command::new("python3"),
        };
        let mut child = cmd
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 is required by this test (Debian's python3)");
        let stdin = child.stdin.take();
        let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Self { child, stdin, out }
    }

    /// Reads lines until one is `word`; panics if the helper exits first.
    pub fn expect(&mut self, word: &str) {
        use std::io::BufRead as _;
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.out.read_line(&mut line).expect("read helper");
            assert!(n > 0, "helper exited before printing {word}");
            if line.trim() == word {
                return;
            }
        }
    }

    /// Sends one word on a line.
    pub fn say(&mut self, word: &str) {
        let s = self.stdin.as_mut().expect("stdin");
        writeln!(s, "{word}").expect("write helper");
        s.flush().expect("flush");
    }

    /// Closes its stdin (a client then closes its kept connections).
    pub fn release(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.flush();
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its command name, from /proc.
    pub fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid()))
            .expect("comm")
            .trim()
            .to_owned()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unix datagram socket playing a service manager's notify socket
/// (`NOTIFY_SOCKET`): it receives what a `Type=notify` service sends.
#[derive(Debug)]
pub struct NotifySocket {
    /// Where it is bound.
    pub path: PathBuf,
    sock: std::os::unix::net::UnixDatagram,
    /// Every message received so far, with when it came.
    pub seen: Vec<(Instant, String)>,
}

impl NotifySocket {
    /// Binds `dir/notify.sock`.
    pub fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind the notify socket");
        Self {
            path,
            sock,
            seen: Vec::new(),
        }
    }

    /// The next message, if one comes within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<String> {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("set_read_timeout");
        let mut buf = vec![0u8; 64 * 1024];
        match self.sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push((Instant::now(), msg.clone()));
                Some(msg)
            }
            Err(_) => None,
        }
    }

    /// Receives until a message has the line `line` (e.g. `READY=1`) and
    /// returns it; panics after `timeout`.
    pub fn wait_line(&mut self, timeout: Duration, line: &str) -> String {
        let t0 = Instant::now();
        loop {
            let left = timeout.saturating_sub(t0.elapsed());
            assert!(
                !left.is_zero(),
                "no `{line}` within {timeout:?}; received: {:?}",
                self.seen
            );
            if let Some(m) = self.recv(left) {
                if m.lines().any(|l| l == line) {
                    return m;
                }
            }
        }
    }

    /// Watchdog pings and status lines, for at most `max`: drops what queued
    /// before (its arrival times say nothing), then records when each
    /// `WATCHDOG=1` comes and keeps the last `STATUS=` that `wanted`
    /// accepts; stops once it has one and `min` has passed.
    pub fn watch(
        &mut self,
        max: Duration,
        min: Duration,
        mut wanted: impl FnMut(&str) -> bool,
    ) -> Watched {
        while self.recv(Duration::from_millis(1)).is_some() {}
        let t0 = Instant::now();
        let mut w = Watched::default();
        while t0.elapsed() < max {
            if let Some(m) = self.recv(Duration::from_millis(200)) {
                if m.lines().any(|l| l == "WATCHDOG=1") {
                    w.pings.push(Instant::now());
                }
                if let Some(st) = status_of(&m).filter(|st| wanted(st)) {
                    w.status = Some(st.to_owned());
                }
            }
            if w.status.is_some() && t0.elapsed() > min {
                break;
            }
        }
        w.secs = t0.elapsed().as_secs_f64();
        w
    }

    /// Every message received within `d` from now.
    pub fn collect(&mut self, d: Duration) -> Vec<(Instant, String)> {
        let t0 = Instant::now();
        let mut out = Vec::new();
        while let Some(left) = d.checked_sub(t0.elapsed()) {
            if let Some(m) = self.recv(left) {
                out.push((Instant::now(), m));
            }
        }
        out
    }
}

/// Starts `program args..` as systemd starts a `Type=notify` service:
/// `NOTIFY_SOCKET` set and, with `watchdog_usec`, `WATCHDOG_USEC` and
/// `WATCHDOG_PID` (the program's own pid: a shell sets it to `$$` and
/// execs the program; `watchdog_pid` overrides it). Stderr goes to `log`.
pub fn spawn_notified(
    program: &Path,
    args: &[&std::ffi::OsStr],
    socket: &Path,
    watchdog_usec: Option<u64>,
    watchdog_pid: Option<u32>,
    log: &Path,
) -> Child {
    // In a private mount namespace, as every agent of the tests
    // ([`Tracefs`]); unshare and sh exec, so the pid is the program's.
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"]);
    match (watchdog_usec, watchdog_pid) {
        (Some(u), None) => c.arg(format!(
            "WATCHDOG_USEC={u} WATCHDOG_PID=$$ exec \"$0\" \"$@\""
        )),
        (Some(u), Some(p)) => c.arg(format!(
            "WATCHDOG_USEC={u} WATCHDOG_PID={p} exec \"$0\" \"$@\""
        )),
        (None, _) => c.arg("exec \"$0\" \"$@\""),
    };
    c.arg(program)
        .args(args)
        .env(CTL_SOCKET_ENV, ctl_socket())
        .env("NOTIFY_SOCKET", socket)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn the service")
}

/// Sends `sig` to a child of the test.
pub fn signal_child(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: plain kill(2) of our own child.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The config of an agent that exports every series it can: the built-in
/// probes at a 1 s period, the event and meta channels on Kafka at an
/// address where no broker listens (so the Kafka self-metrics exist), and
/// the extend probe `name` running `script` (for the rows no probe of this
/// machine may produce, e.g. tcp_link's where eBPF cannot attach).
pub fn every_series_config(s: &Setup, name: &str, script: &Path) -> String {
    let broker = format!("127.0.0.1:{}", free_port());
    let mut cfg = s
        .base_config()
        .replace(
            "[event]\nout_channel = \"logs\"",
            "[event]\nout_channel = \"kafka\"",
        )
        .replace(
            "[meta]\nout_channel = \"logs\"",
            "[meta]\nout_channel = \"kafka\"",
        );
    cfg.push_str(&format!("\n[kafka]\nkafka_broker = \"{broker}\"\n"));
    for p in [
        "system_meminfo",
        "system_vmstat",
        "system_inode",
        "system_tcp",
        "tcp_link",
        "system_cpu",
        "system_net",
    ] {
        cfg.push_str(&format!(
            "\n[[probes]]\nname = \"{p}\"\nparam = \"-t 1\"\nswitch = \"on\"\n"
        ));
    }
    cfg.push_str(&format!(
        "\n[[extend_probes]]\nname = \"{name}\"\ncommand = \"{}\"\nswitch = \"on\"\n",
        script.display()
    ));
    cfg
}

/// The `STATUS=` text of a notify message, if it has one.
pub fn status_of(msg: &str) -> Option<&str> {
    msg.lines().find_map(|l| l.strip_prefix("STATUS="))
}

/// What [`NotifySocket::watch`] saw.
#[derive(Debug, Default)]
pub struct Watched {
    /// When each `WATCHDOG=1` came.
    pub pings: Vec<Instant>,
    /// The last wanted `STATUS=` text.
    pub status: Option<String>,
    /// How long it watched, in seconds.
    pub secs: f64,
}

impl Watched {
    /// Panics unless the pings came at about `interval` apart: their count
    /// within half to one and a half times the expected one.
    pub fn assert_pings_every(&self, interval: f64) {
        let expected = self.secs / interval;
        let n = self.pings.len() as f64;
        assert!(
            n >= expected * 0.5 && n <= expected * 1.5 + 1.0,
            "{n} WATCHDOG=1 in {:.1} s, expected about {expected:.0}",
            self.secs
        );
    }
}

/// Number of fields of `table` in a meta file's text.
pub fn field_count(meta: &str, table: &str) -> usize {
    let at = meta
        .find(&format!("table_name: \"{table}\""))
        .unwrap_or_else(|| panic!("{table} in the meta file"));
    let rest = &meta[at..];
    let end = rest.find("\n    }").unwrap_or(rest.len());
    rest[..end].matches("type:").count()
}

/// Runs `cmd args..` and asserts it succeeded; a missing command is named
/// with where it comes from.
pub fn run_ok(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} is required by this test (scripts/deps.sh installs it): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces joined by a veth pair, removed on drop (also when
/// the test fails): `server` at 10.`net`.N.1/24, `client` at 10.`net`.N.2/24,
/// their names starting with `tag` (unique per test and per run).
#[derive(Debug)]
pub struct TwoHosts {
    /// The server's namespace.
    pub server: String,
    /// The client's namespace.
    pub client: String,
    /// The server's address.
    pub server_ip: String,
    /// The client's address.
    pub client_ip: String,
}

impl TwoHosts {
    /// Creates both namespaces and the link (needs root and `ip`).
    pub fn new(tag: &str, net: u8) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let seq = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}x{seq}", std::process::id());
        let n = 1 + (std::process::id() * 7 + seq * 37) % 250;
        let t = Self {
            server: format!("{tag}srv{id}"),
            client: format!("{tag}cli{id}"),
            server_ip: format!("10.{net}.{n}.1"),
            client_ip: format!("10.{net}.{n}.2"),
        };
        let (va, vb) = (format!("{tag}va{id}"), format!("{tag}vb{id}"));
        run_ok("ip", &["netns", "add", &t.server]);
        run_ok("ip", &["netns", "add", &t.client]);
        run_ok(
            "ip",
            &[
                "link", "add", &va, "netns", &t.server, "type", "veth", "peer", "name", &vb,
                "netns", &t.client,
            ],
        );
        for (ns, dev, ip) in [
            (&t.server, &va, &t.server_ip),
            (&t.client, &vb, &t.client_ip),
        ] {
            run_ok(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev],
            );
            run_ok("ip", &["-n", ns, "link", "set", dev, "up"]);
            run_ok("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        t
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
