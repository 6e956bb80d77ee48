//! A real systemd for the service tests: a Debian root file system
//! (scripts/nspawn-root.sh builds and caches it) booted under
//! `systemd-nspawn -b`, with systemd 252 as its PID 1. Commands run inside
//! through `nsenter` into the container's namespaces. Every write inside
//! goes to a throwaway overlay (`--volatile=overlay`), so each test boots a
//! clean system; the container is powered off, and its nspawn process
//! killed by PID if need be, when the value is dropped.
//!
//! The container has no network (`--private-network`): what it needs is in
//! its root file system or bound read-only from the host (`bind_ro`). eBPF
//! works inside with CAP_BPF, CAP_PERFMON and the bpf and perf_event_open
//! system calls allowed, which `boot` grants.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::repo;

/// The cached root file system (built on first use, about 75 s).
pub fn root() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("scripts/nspawn-root.sh"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/nspawn-root.sh");
    assert!(
        out.status.success(),
        "scripts/nspawn-root.sh failed: it needs root, debootstrap and the Debian mirror"
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        path.join("lib/systemd/systemd").exists(),
        "{path:?} holds no systemd"
    );
    path
}

/// A booted container.
#[derive(Debug)]
pub struct Container {
    nspawn: Child,
    /// PID (on the host) of the container's systemd.
    pub leader: u32,
    /// What systemd-nspawn printed (the console).
    pub console: PathBuf,
    _dir: tempfile::TempDir,
}

/// Result of a command run inside.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub out: String,
    /// Standard error.
    pub err: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&o.stdout).into_owned(),
            err: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Container {
    /// Boots `root` with the host directories `bind_ro` (host, container)
    /// visible read-only inside, and waits until systemd says the system is
    /// running.
    pub fn boot(root: &Path, bind_ro: &[(&Path, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let console = dir.path().join("console.log");
        let name = format!("gala-test-{}", std::process::id());
        let mut cmd = Command::new("systemd-nspawn");
        cmd.arg("-D")
            .arg(root)
            .args([
                "-b",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "--volatile=overlay",
                "--capability=CAP_BPF,CAP_PERFMON",
                "--system-call-filter=bpf perf_event_open",
            ])
            .arg(format!("--machine={name}"));
        for (host, inside) in bind_ro {
            cmd.arg(format!("--bind-ro={}:{inside}", host.display()));
        }
        // Its own session, so that it has no controlling terminal.
        use std::os::unix::process::CommandExt as _;
        // SAFETY: setsid() is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let nspawn = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&console).expect("console log"))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&console)
                    .expect("console log"),
            ))
            .spawn()
            .expect("systemd-nspawn (Debian package systemd-container; scripts/nspawn-root.sh installs it)");
        let mut c = Self {
            nspawn,
            leader: 0,
            console,
            _dir: dir,
        };
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = c.nspawn.try_wait() {
                panic!(
                    "systemd-nspawn exited ({st}) while booting:\n{}",
                    c.console_text()
                );
            }
            if c.leader == 0 {
                c.leader = child_of(c.nspawn.id()).unwrap_or(0);
            }
            if c.leader != 0 {
                let st = c.sh("systemctl is-system-running").out;
                match st.trim() {
                    "running" => break,
                    "degraded" => {
                        let failed = c.sh("systemctl --failed --no-legend").out;
                        panic!("the container booted degraded; failed units:\n{failed}");
                    }
                    _ => {}
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the container did not boot within 60 s:\n{}",
                c.console_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// What the console showed so far.
    pub fn console_text(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Runs `script` with `sh -c` inside the container, as its root, in all
    /// its namespaces. Note: a process entered this way keeps the host's
    /// capabilities; a unit's own are read from its MainPID.
    pub fn sh(&self, script: &str) -> Run {
        let o = Command::new("nsenter")
            .arg("-t")
            .arg(self.leader.to_string())
            .args(["-a", "--", "/bin/sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter (util-linux)");
        Run::from(o)
    }

    /// [`Container::sh`] that must succeed; returns its stdout.
    pub fn ok(&self, script: &str) -> String {
        let r = self.sh(script);
        assert_eq!(
            r.code, 0,
            "inside the container, `{script}` failed ({}):\n{}{}",
            r.code, r.out, r.err
        );
        r.out
    }

    /// Polls `script` until it succeeds, for at most `timeout`; returns its
    /// stdout, or panics with `what` and the last output.
    pub fn wait_ok(&self, timeout: Duration, what: &str, script: &str) -> String {
        let t0 = Instant::now();
        loop {
            let r = self.sh(script);
            if r.code == 0 {
                return r.out;
            }
            assert!(
                t0.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what} (`{script}`: {}{})",
                r.out,
                r.err
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.leader != 0 {
            let _ = self.sh("systemctl poweroff");
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Ours, by PID.
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// The first child of `pid` (the container's systemd is nspawn's child).
fn child_of(pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}
