//! scripts/deps.sh on a machine that runs its own Prometheus: installing
//! what the tests need must leave the user's services alone.
//!
//! The test starts a real `prometheus` server (Debian's, on 127.0.0.1 and a
//! port of its own), then runs deps.sh with `promtool` hidden from PATH so
//! that the script goes through its package-install path (apt-get for the
//! `prometheus` package), and checks that the server it started is still
//! alive and still serving, and that /usr/sbin/policy-rc.d is as it was.
//! Needs root (apt-get) and the prometheus package (`make test` installs it);
//! without them it fails and says so.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{free_port, http_get, live_pids, repo, wait_for};

/// A directory of links to every program on PATH except those in `hide`.
fn path_without(hide: &[&str], dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home_cargo = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin"));
    let dirs = std::env::split_paths(&path).chain(home_cargo);
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if hide.iter().any(|h| name == *h) || bin.join(&name).exists() {
                continue;
            }
            let _ = symlink(e.path(), bin.join(&name));
        }
    }
    bin
}

/// A real Prometheus server, stopped by its PID on drop.
struct Prometheus {
    child: std::process::Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path) -> Self {
        let exe = Path::new("/usr/bin/prometheus");
        assert!(
            exe.exists(),
            "/usr/bin/prometheus is missing: this test runs Debian's prometheus server (`make test` installs the package)"
        );
        let port = free_port();
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 1m\nscrape_configs: []\n")
            .expect("prometheus config");
        let child = Command::new(exe)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
            .spawn()
            .expect("start prometheus");
        let p = Self { child, port };
        wait_for(Duration::from_secs(30), "prometheus to be ready", || {
            http_get(p.port, "/-/ready")
                .ok()
                .filter(|(s, _)| *s == 200)
                .map(|_| ())
        });
        p
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn deps_sh_leaves_a_running_prometheus_alone() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test runs scripts/deps.sh, which installs packages: run `make test` as root"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let prom = Prometheus::start(dir.path());
    let pid = i32::try_from(prom.child.id()).expect("pid");
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let policy_before = std::fs::read(policy).ok();

    let bin = path_without(&["promtool"], dir.path());
    let out = Command::new("bash")
        .arg(repo().join("scripts/deps.sh"))
        .arg("test")
        .env("PATH", &bin)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/deps.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "deps.sh failed:\n{text}");
    assert!(
        text.contains("deps: installing") && text.contains("prometheus"),
        "deps.sh did not take its install path (promtool hidden):\n{text}"
    );
    assert_eq!(
        live_pids(&[pid]),
        vec![pid],
        "the prometheus started by the test died during deps.sh:\n{text}"
    );
    let (status, _) = http_get(prom.port, "/-/ready").expect("prometheus still answers");
    assert_eq!(status, 200, "prometheus no longer ready after deps.sh");
    assert_eq!(
        std::fs::read(policy).ok(),
        policy_before,
        "deps.sh must put /usr/sbin/policy-rc.d back as it found it"
    );
}
