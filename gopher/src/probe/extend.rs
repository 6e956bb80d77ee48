//! Extend probes: child processes in any language whose stdout lines are
//! records (docs/compat.md §1, §4).
//!
//! `command param` runs as `sh -c 'exec command param'` so the legacy quoting
//! keeps working and the shell is replaced by the probe (signals reach it
//! directly). The child leads its own process group, so shutdown reaches
//! its helpers too: SIGTERM to the group, then SIGKILL after the grace
//! period. `PR_SET_PDEATHSIG` kills it if the daemon dies without cleaning
//! up, so no probe outlives the agent.
//!
//! C probes run the same way, inside a probe host process (see
//! [`super::cabi`]), with a hang watchdog: a host that prints nothing, not
//! even its heartbeat, for its hang timeout is killed and restarted.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::ipc::LegacyIpcConf;
use crate::ingress::now_ms;

use crate::probe_api::{Probe, ProbeContext, ProbeError, Shutdown};
use crate::record::MAX_LINE_LEN;

/// How a child probe is started.
#[derive(Debug, Clone)]
pub enum Launch {
    /// A shell command line (extend probes): run as `sh -c 'exec LINE'`.
    Shell(String),
    /// A program and its arguments, with extra environment (C probe hosts).
    Exec {
        /// The program.
        program: PathBuf,
        /// Its arguments.
        args: Vec<OsString>,
        /// Extra environment variables.
        env: Vec<(OsString, OsString)>,
    },
}

/// A probe run as a child process whose stdout lines are records: extend
/// probes, and C probes inside a probe host.
#[derive(Debug, Clone)]
pub struct ChildProbe {
    name: String,
    launch: Launch,
    grace: Duration,
    hang_timeout: Option<Duration>,
    refused_exit: Option<i32>,
    guard: Option<PathBuf>,
    ipc: Option<LegacyIpcConf>,
    cgroups: Option<Arc<super::cgroup::ProbeCgroups>>,
    snoopers: Option<super::snoopers::Feed>,
}

/// The extend probe of the legacy config: `command param` through the shell.
pub type ExtendProbe = ChildProbe;

impl ChildProbe {
    /// An extend probe that runs `command param` and stops it within `grace`.
    pub fn new(name: &str, command: &str, param: &str, grace: Duration) -> Self {
        let line = if param.trim().is_empty() {
            format!("exec {command}")
        } else {
            format!("exec {command} {param}")
        };
        Self {
            name: name.into(),
            launch: Launch::Shell(line),
            grace,
            hang_timeout: None,
            refused_exit: None,
            guard: None,
            ipc: None,
            cgroups: None,
            snoopers: None,
        }
    }

    /// A child started from `launch`.
    pub fn with_launch(name: &str, launch: Launch, grace: Duration) -> Self {
        Self {
            name: name.into(),
            launch,
            grace,
            hang_timeout: None,
            refused_exit: None,
            guard: None,
            ipc: None,
            cgroups: None,
            snoopers: None,
        }
    }

    /// Kill and restart the child when it shows no sign of life (no stdout
    /// line, empty heartbeat lines included) for `timeout`.
    pub fn hang_timeout(mut self, timeout: Duration) -> Self {
        self.hang_timeout = Some(timeout);
        self
    }

    /// An exit with `code` means the child refused to run (bad library,
    /// ABI mismatch): it is reported as unsupported and not restarted.
    pub fn refused_exit_code(mut self, code: i32) -> Self {
        self.refused_exit = Some(code);
        self
    }

    /// Starts the child through `exe exec-child --parent <our pid> -- ...`
    /// (`exe` is the gala-gopher binary), which re-arms the parent-death
    /// signal after its own exec and then execs the probe. The kernel clears
    /// that signal when an exec gains capabilities, which is what happens to
    /// a root child once the daemon has dropped some of its own; without the
    /// guard such a child would outlive a daemon killed with SIGKILL.
    pub fn death_guard(mut self, exe: PathBuf) -> Self {
        self.guard = Some(exe);
        self
    }

    /// A legacy 2.x probe binary: before every start its message (params,
    /// range flags, snoopers) is queued on the 2.x message queue, and its
    /// snoopers are looked up again while it runs (see [`super::legacy_ipc`]).
    pub fn legacy_ipc(mut self, conf: LegacyIpcConf) -> Self {
        self.ipc = Some(conf);
        self
    }

    /// Gives the child the processes it watches at each start (see
    /// [`super::snoopers`]): in its param (C probes) or its environment
    /// (extend probes).
    pub fn snoopers(mut self, feed: super::snoopers::Feed) -> Self {
        self.snoopers = Some(feed);
        self
    }

    /// How the child is started (before snoopers edit it).
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// Runs the child in its own cgroup with the limits of `cgroups`
    /// (see [`super::cgroup`]).
    pub fn cgroups(mut self, cgroups: &Arc<super::cgroup::ProbeCgroups>) -> Self {
        self.cgroups = Some(Arc::clone(cgroups));
        self
    }

    fn command(&self, launch: &Launch) -> (Command, String) {
        let (program, args, env): (PathBuf, Vec<OsString>, &[(OsString, OsString)]) = match launch {
            Launch::Shell(line) => ("/bin/sh".into(), vec!["-c".into(), line.into()], &[]),
            Launch::Exec { program, args, env } => (program.clone(), args.clone(), env),
        };
        match (launch, &self.guard) {
            (Launch::Shell(line), None) => (shell_command(line), line.clone()),
            (_, guard) => {
                let mut cmd = match guard {
                    Some(exe) => {
                        let mut c = Command::new(exe);
                        c.arg("exec-child")
                            .arg("--parent")
                            .arg(std::process::id().to_string())
                            .arg("--")
                            .arg(&program)
                            .args(&args);
                        c
                    }
                    None => {
                        let mut c = Command::new(&program);
                        c.args(&args);
                        c
                    }
                };
                cmd.envs(env.iter().map(|(k, v)| (k, v)))
                    .stdin(Stdio::null());
                dies_with_parent(&mut cmd);
                let shown = match launch {
                    Launch::Shell(line) => line.clone(),
                    Launch::Exec { .. } => std::iter::once(program.as_os_str())
                        .chain(args.iter().map(OsString::as_os_str))
                        .map(|a| a.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(" "),
                };
                (cmd, shown)
            }
        }
    }
}

/// Builds a `sh -c` command in its own process group that dies with us.
pub fn shell_command(line: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(line).stdin(Stdio::null());
    dies_with_parent(&mut cmd);
    cmd
}

/// Puts the child in its own process group and has the kernel SIGKILL it
/// if the daemon dies.
fn dies_with_parent(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls async-signal-safe functions (prctl, getppid, kill, getpid).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() == 1 {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// In a freshly exec'd child: asks for SIGKILL when the parent dies, and
/// returns `false` if `parent` is already gone (we were re-parented).
pub fn rearm_parent_death(parent: u32) -> bool {
    // SAFETY: plain prctl/getppid syscalls on this process.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return false;
        }
        u32::try_from(libc::getppid()).is_ok_and(|p| p == parent)
    }
}

/// Sends `sig` to the process group led by `pid`.
fn signal_group(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: plain syscall; a group that is gone gives ESRCH, ignored.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}

/// Waits until `pid` has exited without reaping it, so its pid (and group
/// id) cannot be reused while we still signal the group.
fn wait_exit_no_reap(pid: u32) {
    let id: libc::id_t = pid;
    loop {
        // SAFETY: siginfo_t is plain data, zeroed is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes only into `info`.
        let r = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Stops the child's group when `stop` fires: SIGTERM, then SIGKILL if it
/// has not exited within `grace`. With a hang timeout it also polls the
/// child's last sign of life once a second and SIGKILLs a silent child,
/// setting `hung`.
fn spawn_killer(
    pid: u32,
    stop: Shutdown,
    exited: Shutdown,
    grace: Duration,
    watchdog: Option<(Duration, Arc<AtomicU64>, Arc<AtomicBool>)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        match &watchdog {
            None => stop.wait_forever(),
            Some((timeout, last_ms, hung)) => {
                while !stop.wait(Duration::from_secs(1)) {
                    let silent = now_ms().saturating_sub(last_ms.load(Ordering::Relaxed));
                    if u128::from(silent) > timeout.as_millis() {
                        hung.store(true, Ordering::Relaxed);
                        signal_group(pid, libc::SIGKILL);
                        stop.wait_forever();
                        return;
                    }
                }
            }
        }
        if exited.is_triggered() {
            return;
        }
        signal_group(pid, libc::SIGTERM);
        if !exited.wait(grace) {
            signal_group(pid, libc::SIGKILL);
        }
    })
}

/// While a legacy 2.x probe runs: looks its snoopers up again every
/// [`super::legacy_ipc::RESCAN`] and queues a new message when they changed.
fn spawn_rescanner(name: String, exited: Shutdown) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut failing = false;
        while !exited.wait(super::legacy_ipc::RESCAN) {
            match super::legacy_ipc::rescan(&name) {
                Ok(_) => failing = false,
                // Logged once per run of failures.
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(probe = %name, "{e}");
                }
                Err(_) => {}
            }
        }
    })
}

/// Reads stderr lines into the log, bounded in length.
fn spawn_stderr_logger(
    name: String,
    stderr: impl Read + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.by_ref().take(4096).read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    let text = text.trim_end();
                    // C probes log through gopher_log as `[level] message`.
                    match gopher::log::parse_log_line(text) {
                        Some((level, msg)) => match level {
                            gopher::gopher_log_level::GOPHER_LOG_DEBUG => {
                                tracing::debug!(probe = %name, "{msg}")
                            }
                            gopher::gopher_log_level::GOPHER_LOG_INFO => {
                                tracing::info!(probe = %name, "{msg}")
                            }
                            gopher::gopher_log_level::GOPHER_LOG_WARN => {
                                tracing::warn!(probe = %name, "{msg}")
                            }
                            gopher::gopher_log_level::GOPHER_LOG_ERROR => {
                                tracing::error!(probe = %name, "{msg}")
                            }
                        },
                        None if !text.is_empty() => tracing::info!(probe = %name, "stderr: {text}"),
                        None => {}
                    }
                }
            }
        }
    })
}

impl Probe for ChildProbe {
    fn name(&self) -> &str {
        &self.name
    }

    fn tables(&self) -> &[&str] {
        &[]
    }

    fn run(self: Box<Self>, cx: ProbeContext) -> Result<(), ProbeError> {
        if let Some(conf) = &self.ipc {
            // A 2.x binary has no defaults: its message must be queued first.
            super::legacy_ipc::prepare(&self.name, conf).map_err(|e| match e {
                super::legacy_ipc::IpcError::Sys(_) => ProbeError::Setup {
                    probe: self.name.clone(),
                    source: Box::new(e),
                },
                _ => ProbeError::Unsupported(e.to_string()),
            })?;
        }
        // Snoopers: resolved now, given in the param or the environment.
        let (launch, snooper_env) = match &self.snoopers {
            Some(feed) => {
                let setup = |e: super::snoopers::FeedError| ProbeError::Setup {
                    probe: self.name.clone(),
                    source: Box::new(e),
                };
                let sel = feed
                    .prepare(&self.name, std::path::Path::new("/proc"))
                    .map_err(setup)?;
                (
                    feed.launch(&self.launch, &sel).map_err(setup)?,
                    feed.env(&sel),
                )
            }
            None => (self.launch.clone(), Vec::new()),
        };
        let (mut cmd, line) = self.command(&launch);
        cmd.envs(snooper_env);
        // The child joins its cgroup before it execs.
        let placement = self.cgroups.as_ref().and_then(|c| c.prepare(&self.name));
        if let Some(p) = &placement {
            p.apply(&mut cmd);
        }
        let mut child: Child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ProbeError::Spawn {
                probe: self.name.clone(),
                command: line.clone(),
                source,
            })?;
        let pid = child.id();
        if let Some(p) = &placement {
            p.check(pid);
        }
        let stop = cx.shutdown.child();
        let exited = Shutdown::new();
        let last_ms = Arc::new(AtomicU64::new(now_ms()));
        let hung = Arc::new(AtomicBool::new(false));
        let watchdog = self
            .hang_timeout
            .map(|t| (t, Arc::clone(&last_ms), Arc::clone(&hung)));
        let killer = spawn_killer(pid, stop.clone(), exited.clone(), self.grace, watchdog);
        let logger = child
            .stderr
            .take()
            .map(|e| spawn_stderr_logger(self.name.clone(), e));
        let rescanner = self
            .ipc
            .as_ref()
            .map(|_| spawn_rescanner(self.name.clone(), exited.clone()));

        if let Some(out) = child.stdout.take() {
            read_records(out, &cx, &last_ms);
        }
        wait_exit_no_reap(pid);
        exited.trigger();
        // Helpers the probe left behind in its group go with it.
        signal_group(pid, libc::SIGKILL);
        let status = child.wait();
        if let Some(p) = &placement {
            // An OOM kill is logged and counted; the exit restarts it.
            p.exited();
        }
        stop.trigger();
        let _ = killer.join();
        if let Some(l) = logger {
            let _ = l.join();
        }
        if let Some(r) = rescanner {
            let _ = r.join();
        }
        if cx.shutdown.is_triggered() {
            return Ok(());
        }
        if hung.load(Ordering::Relaxed) {
            let secs = self.hang_timeout.unwrap_or_default().as_secs();
            return Err(ProbeError::Hung {
                probe: self.name.clone(),
                command: line,
                secs,
            });
        }
        match status {
            Ok(s) if s.code().is_some() && s.code() == self.refused_exit => {
                Err(ProbeError::Unsupported(format!(
                    "`{line}` refused to run ({s}); see its error above"
                )))
            }
            Ok(status) => Err(ProbeError::Exited {
                probe: self.name.clone(),
                command: line,
                status,
            }),
            Err(source) => Err(ProbeError::Wait {
                probe: self.name.clone(),
                command: line,
                source,
            }),
        }
    }
}

/// Forwards each stdout line to the emitter. A line over the protocol limit
/// is cut at the limit (and then rejected as too long by the ingress); the
/// rest of it is skipped, so memory stays bounded.
fn read_records(out: impl Read, cx: &ProbeContext, last_ms: &AtomicU64) {
    let mut r = BufReader::with_capacity(64 * 1024, out);
    let mut buf = Vec::with_capacity(512);
    let limit = (MAX_LINE_LEN + 2) as u64;
    loop {
        buf.clear();
        match r.by_ref().take(limit).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.last() != Some(&b'\n') && buf.len() as u64 == limit {
            // Too long: skip to the end of the line.
            let mut sink = Vec::new();
            loop {
                sink.clear();
                match r.by_ref().take(64 * 1024).read_until(b'\n', &mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if sink.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
        }
        last_ms.store(now_ms(), Ordering::Relaxed);
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if buf.is_empty() {
            continue;
        }
        cx.emitter.line(buf.clone());
    }
}

/// Why a `start_check` gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum StartCheckError {
    /// The shell could not be started.
    #[error("cannot run start_check `{command}`: {source}")]
    Spawn {
        /// The `start_check` command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its first line is not a number.
    #[error("start_check `{command}` printed `{output}`, expected a number")]
    NotANumber {
        /// The `start_check` command.
        command: String,
        /// Its first line, trimmed.
        output: String,
    },
}

/// Runs a `start_check` command through the shell and says whether the
/// first line of its output is a number greater than zero (docs/compat.md §4).
pub fn start_check(cmd: &str, timeout: Duration) -> Result<bool, StartCheckError> {
    // The shipped forms are answered without a shell (crate::daemon::native_check).
    if let Some(yes) = crate::daemon::native_check::answer(cmd) {
        return Ok(yes);
    }
    let mut child = shell_command(cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| StartCheckError::Spawn {
            command: cmd.to_owned(),
            source,
        })?;
    let pid = child.id();
    let done = Shutdown::new();
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            if !done.wait(timeout) {
                signal_group(pid, libc::SIGKILL);
            }
        })
    };
    let mut first = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out.take(4096)).read_line(&mut first);
    }
    let _ = child.wait();
    done.trigger();
    let _ = watchdog.join();
    let n = first.trim();
    match n.parse::<f64>() {
        Ok(v) => Ok(v > 0.0),
        Err(_) if n.is_empty() => Ok(false),
        Err(_) => Err(StartCheckError::NotANumber {
            command: cmd.to_owned(),
            output: n.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe_api::{Emitted, Emitter, Params, Payload};
    use std::sync::atomic::AtomicU64;
    use std::sync::mpsc::sync_channel;
    use std::sync::Arc;

    fn cx(cap: usize) -> (ProbeContext, std::sync::mpsc::Receiver<Emitted>) {
        let (tx, rx) = sync_channel(cap);
        let em = Emitter::new("x".into(), tx, Arc::new(AtomicU64::new(0)));
        (
            ProbeContext {
                emitter: em,
                params: Params::default(),
                shutdown: Shutdown::new(),
            },
            rx,
        )
    }

    fn lines(rx: &std::sync::mpsc::Receiver<Emitted>) -> Vec<String> {
        rx.try_iter()
            .map(|e| match e.payload {
                Payload::Line(l) => String::from_utf8_lossy(&l).into_owned(),
                Payload::Record { .. } => "record".into(),
            })
            .collect()
    }

    #[test]
    fn forwards_stdout_lines_and_reports_exit() {
        let (cx, rx) = cx(100);
        let p = ExtendProbe::new(
            "x",
            "printf",
            "'|t|1|\\n\\n|t|2|\\r\\nplain\\n'",
            Duration::from_secs(1),
        );
        let err = Box::new(p)
            .run(cx)
            .expect_err("exit is an error before shutdown");
        assert!(err.to_string().contains("exited"), "{err}");
        assert_eq!(lines(&rx), ["|t|1|", "|t|2|", "plain"]);
    }

    #[test]
    fn overlong_lines_are_cut_and_the_next_line_survives() {
        let (cx, rx) = cx(100);
        let p = ExtendProbe::new(
            "x",
            "sh",
            "-c 'head -c 20000 /dev/zero | tr \"\\\\0\" a; echo; echo \"|t|ok|\"'",
            Duration::from_secs(1),
        );
        let _ = Box::new(p).run(cx);
        let got = lines(&rx);
        assert_eq!(
            got.len(),
            2,
            "{:?}",
            got.iter().map(String::len).collect::<Vec<_>>()
        );
        assert!(got[0].len() > MAX_LINE_LEN);
        assert_eq!(got[1], "|t|ok|");
    }

    #[test]
    fn shutdown_terminates_the_whole_group() {
        let (cx, _rx) = cx(10);
        let stop = cx.shutdown.clone();
        let dir = tempfile::tempdir().expect("tmp");
        let pidfile = dir.path().join("pid");
        // A helper in the background that ignores SIGTERM must still die.
        let script = format!(
            "-c 'trap \"\" TERM; sleep 300 & echo $! > {}; wait'",
            pidfile.display()
        );
        let p = ExtendProbe::new("x", "sh", &script, Duration::from_millis(300));
        let t = std::thread::spawn(move || Box::new(p).run(cx));
        let mut tries = 0;
        while !pidfile.exists()
            || std::fs::read_to_string(&pidfile).map_or(true, |s| s.trim().is_empty())
        {
            std::thread::sleep(Duration::from_millis(20));
            tries += 1;
            assert!(tries < 250, "helper never started");
        }
        let helper: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid")
            .trim()
            .parse()
            .expect("pid number");
        stop.trigger();
        t.join().expect("join").expect("clean stop on shutdown");
        // Gone, or a zombie waiting for init to reap it; SIGKILL is
        // delivered asynchronously, so give the kernel a moment.
        let gone = || {
            let stat = std::fs::read_to_string(format!("/proc/{helper}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned();
            stat.is_empty() || state == "Z"
        };
        let t0 = std::time::Instant::now();
        while !gone() && t0.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone(), "helper {helper} survived shutdown");
    }

    #[test]
    fn a_silent_child_is_killed_as_hung_but_heartbeats_keep_it_alive() {
        let (cx1, _rx) = cx(10);
        let t0 = std::time::Instant::now();
        let p = ChildProbe::new("x", "sleep", "30", Duration::from_secs(1))
            .hang_timeout(Duration::from_secs(1));
        let err = Box::new(p).run(cx1).expect_err("hung");
        assert!(err.to_string().contains("hung"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(10));

        // Empty lines are heartbeats: 3 s of them and no hang at 1 s.
        let (cx2, rx) = cx(10);
        let p = ChildProbe::new(
            "x",
            "sh",
            "-c 'for i in 1 2 3 4 5 6; do echo; sleep 0.5; done; echo \"|t|1|\"'",
            Duration::from_secs(1),
        )
        .hang_timeout(Duration::from_secs(1));
        let err = Box::new(p).run(cx2).expect_err("exits");
        assert!(err.to_string().contains("exited"), "{err}");
        assert_eq!(lines(&rx), ["|t|1|"], "heartbeats are not records");
    }

    #[test]
    fn exec_launch_passes_args_and_env() {
        let (cx, rx) = cx(10);
        let launch = Launch::Exec {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "echo \"|t|$1|$GOPHER_X|\"".into(),
                "sh".into(),
                "a b".into(),
            ],
            env: vec![("GOPHER_X".into(), "y".into())],
        };
        let _ = Box::new(ChildProbe::with_launch("x", launch, Duration::from_secs(1))).run(cx);
        assert_eq!(lines(&rx), ["|t|a b|y|"]);
    }

    #[test]
    fn start_check_reads_the_first_number() {
        let check = |cmd: &str, t: Duration| start_check(cmd, t).expect("an answer");
        assert!(check("echo 2", Duration::from_secs(5)));
        assert!(!check("echo 0; echo 5", Duration::from_secs(5)));
        assert!(!check("true", Duration::from_secs(5)));
        match start_check("echo nginx", Duration::from_secs(5)) {
            Err(StartCheckError::NotANumber { command, output }) => {
                assert_eq!((command.as_str(), output.as_str()), ("echo nginx", "nginx"));
            }
            other => panic!("expected NotANumber, got {other:?}"),
        }
        let t0 = std::time::Instant::now();
        assert!(!check("sleep 30", Duration::from_millis(200)));
        assert!(t0.elapsed() < Duration::from_secs(10));
    }
}
