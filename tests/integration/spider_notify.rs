//! gala-spider as a systemd `Type=notify` service, with the test playing
//! the service manager (a unix datagram socket as `NOTIFY_SOCKET`): READY=1
//! once its HTTP server answers, STATUS= with the topology's size,
//! WATCHDOG=1 at half of `WATCHDOG_USEC`, a SIGHUP that does not kill it,
//! STOPPING=1 on SIGTERM.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use crate::harness::{
    free_port, http_get, repo, signal_child, spawn_notified, status_of, wait_for, NotifySocket,
};

fn spider_bin() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    let p = target.join("debug").join("gala-spider");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p gala-spider` first (`make test` does)",
        p.display()
    );
    p
}

/// Kills the spider on drop (a failed test leaves nothing running).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn spider_notifies_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("metrics");
    std::fs::create_dir_all(&source).unwrap();
    let port = free_port();
    let cfg = dir.path().join("gala-spider.toml");
    std::fs::write(
        &cfg,
        format!(
            "[global]\ndata_source = \"logfile\"\nui_source = \"none\"\nlog_level = \"info\"\n\n\
             [logfile]\nmetric_dir = \"{}\"\npoll_ms = 50\n\n[option]\nexpire_secs = 600\nperiod_secs = 1\n\n\
             [server]\nbind_addr = \"127.0.0.1\"\nport = {port}\n",
            source.display()
        ),
    )
    .unwrap();
    let mut sock = NotifySocket::bind(dir.path());
    let log = dir.path().join("spider.log");
    let mut spider = Killed(spawn_notified(
        &spider_bin(),
        &["--config".as_ref(), cfg.as_os_str()],
        &sock.path,
        Some(1_000_000),
        None,
        &log,
    ));
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // READY=1 first, and :port answers when it comes.
    let first = wait_for(Duration::from_secs(20), "the first notification", || {
        if let Ok(Some(st)) = spider.0.try_wait() {
            panic!("gala-spider exited ({st}):\n{}", log_text());
        }
        sock.recv(Duration::from_millis(100))
    });
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    let (code, body) =
        http_get(port, "/gala-spider/api/v1/get_status").expect(":port answers at READY=1");
    assert_eq!(code, 200, "{body}");
    assert!(
        status_of(&first).is_some_and(|s| s.contains("hosts") && s.contains("edges")),
        "{first:?}"
    );

    // Records come in: STATUS= shows the topology.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let records = std::fs::read_to_string(repo().join("tests/data/spider/known_topology.jsonl"))
        .unwrap()
        .replace("@NOW@", &now);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(source.join("metrics.log"))
        .unwrap()
        .write_all(records.as_bytes())
        .unwrap();

    // A SIGHUP (no reload in the spider) must not kill it.
    signal_child(&spider.0, libc::SIGHUP);

    let w = sock.watch(Duration::from_secs(15), Duration::from_secs(4), |st| {
        !st.starts_with("0 hosts")
    });
    let topology = w
        .status
        .as_deref()
        .unwrap_or_else(|| panic!("no STATUS= with hosts: {:?}\n{}", sock.seen, log_text()));
    assert!(
        topology.contains("processes") && !topology.contains(" 0 edges"),
        "{topology}"
    );
    w.assert_pings_every(0.5);
    assert!(
        spider.0.try_wait().unwrap().is_none(),
        "SIGHUP killed gala-spider:\n{}",
        log_text()
    );
    assert!(log_text().contains("SIGHUP"), "{}", log_text());

    signal_child(&spider.0, libc::SIGTERM);
    let exit = wait_for(Duration::from_secs(20), "gala-spider to exit", || {
        spider.0.try_wait().unwrap()
    });
    assert_eq!(exit.code(), Some(0), "{}", log_text());
    let _ = sock.collect(Duration::from_millis(200));
    assert!(
        sock.seen
            .iter()
            .any(|(_, m)| m.lines().any(|l| l == "STOPPING=1")),
        "no STOPPING=1: {:?}",
        sock.seen
    );
}
