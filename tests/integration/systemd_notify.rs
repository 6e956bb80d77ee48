//! gala-gopher as a systemd `Type=notify` service, with the test playing
//! the service manager: a unix datagram socket as `NOTIFY_SOCKET`, the real
//! binary, real signals. READY=1 only once :port answers, STATUS= lines,
//! WATCHDOG=1 at half of `WATCHDOG_USEC` (and never without it), STOPPING=1
//! on SIGTERM; SIGHUP reopens the log files and reloads the config: a bad
//! one is refused with every problem logged, a good one is applied.

use std::path::Path;
use std::time::Duration;

use crate::harness::{
    bin, free_port, http_get, live_pids, signal_child, spawn_notified, status_of, wait_for, Agent,
    NotifySocket, Setup,
};

const DEMO_META: &str = include_str!("../data/demo_app.meta");

const TWO_META: &str = r#"version = "1.0.0"
measurements:
(
    {
        table_name: "demo_two",
        entity_name: "demotwo",
        fields:
        (
            { description: "id", type: "key", name: "id" },
            { description: "a level", type: "gauge", name: "level" },
        )
    }
)
"#;

fn setup() -> Setup {
    Setup::new(&[("demo_app.meta", DEMO_META), ("demo_two.meta", TWO_META)])
}

/// An extend probe `name` emitting `line` every second; it records its pid
/// and environment in the setup.
fn probe(s: &Setup, name: &str, line: &str) -> String {
    let script = s.script(
        &format!("{name}.sh"),
        &format!(
            "echo $$ > {dir}/{name}.pid\nenv > {dir}/{name}.env\nwhile true; do\n  echo '{line}'\n  sleep 1\ndone",
            dir = s.dir.path().display()
        ),
    );
    format!(
        "\n[[extend_probes]]\nname = \"{name}\"\ncommand = \"{}\"\nswitch = \"on\"\n",
        script.display()
    )
}

fn demo(s: &Setup) -> String {
    probe(s, "demo", "|demo_app|100|nginx|42|3|")
}

fn two(s: &Setup) -> String {
    probe(s, "two", "|demo_two|7|5|")
}

/// The base config with the agent's own log in `logs/debug/agent.log`.
fn with_own_log(base: &str) -> String {
    base.replacen("[global]\n", "[global]\nlog_file_name = \"agent.log\"\n", 1)
}

fn own_log(s: &Setup) -> String {
    std::fs::read_to_string(s.path("logs/debug/agent.log")).unwrap_or_default()
}

fn pid_of(s: &Setup, name: &str) -> i32 {
    std::fs::read_to_string(s.path(&format!("{name}.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The agent started by `spawn_notified` on `s`'s config, as a harness
/// [`Agent`] (killed on drop, `stop()` sends SIGTERM).
fn notified_agent(
    s: &Setup,
    config: &str,
    sock: &NotifySocket,
    watchdog_usec: Option<u64>,
    watchdog_pid: Option<u32>,
) -> Agent {
    let cfg = s.path("gala-gopher.toml");
    std::fs::write(&cfg, config).unwrap();
    let log = s.path("agent.log");
    let child = spawn_notified(
        &bin(),
        &["--config".as_ref(), cfg.as_os_str()],
        &sock.path,
        watchdog_usec,
        watchdog_pid,
        &log,
    );
    Agent {
        child,
        port: s.port,
        log,
    }
}

#[test]
fn notify_ready_after_http_then_status_watchdog_and_stopping() {
    let s = setup();
    let mut sock = NotifySocket::bind(s.dir.path());
    let config = format!("{}{}", s.base_config(), demo(&s));
    // WatchdogSec=1s: a ping every 0.5 s.
    let mut agent = notified_agent(&s, &config, &sock, Some(1_000_000), None);

    // Nothing but READY=1 comes first, and when it comes :port answers.
    let first = wait_for(Duration::from_secs(20), "the first notification", || {
        if let Ok(Some(st)) = agent.child.try_wait() {
            panic!("agent exited ({st}):\n{}", agent.log_text());
        }
        sock.recv(Duration::from_millis(100))
    });
    assert!(
        first.lines().any(|l| l == "READY=1"),
        "the first message is READY=1: {first:?}"
    );
    let (code, body) = http_get(s.port, "/metrics").expect(":port answers at READY=1");
    assert_eq!(code, 200, "{body}");
    // ... and the probe is started: its supervisor counts it.
    let status = status_of(&first).expect("READY=1 comes with a STATUS=");
    assert!(
        status.starts_with("1 probe running, 0 failed; ")
            || status.starts_with("0 probes running (1 starting), 0 failed; "),
        "{status}"
    );

    // The probe's child does not inherit what belongs to the service.
    let env = wait_for(Duration::from_secs(10), "the probe's environment", || {
        std::fs::read_to_string(s.path("demo.env"))
            .ok()
            .filter(|e| !e.is_empty())
    });
    for var in ["NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="] {
        assert!(
            !env.lines().any(|l| l.starts_with(var)),
            "the probe inherited {var}:\n{env}"
        );
    }

    // Pings at about half the interval, and a STATUS= with the probe
    // running and its series counted. What queued meanwhile is dropped
    // first: its arrival times say nothing.
    let w = sock.watch(Duration::from_secs(12), Duration::from_secs(4), |st| {
        st.starts_with("1 probe running, 0 failed; ") && !st.ends_with("; 0 series")
    });
    let status = w.status.as_deref().unwrap_or_else(|| {
        panic!(
            "no STATUS= with the probe running and series: {:?}",
            sock.seen
        )
    });
    assert!(status.ends_with(" series"), "{status}");
    w.assert_pings_every(0.5);
    let pings = &w.pings;
    let gaps: Vec<f64> = pings
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    assert!(
        gaps.iter().all(|g| *g > 0.1 && *g < 1.2),
        "WATCHDOG=1 gaps (s): {gaps:?}"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    assert_eq!(agent.stop(), Some(0), "{}", agent.log_text());
    let rest = sock.collect(Duration::from_millis(300));
    assert!(
        sock.seen
            .iter()
            .any(|(_, m)| m.lines().any(|l| l == "STOPPING=1")),
        "no STOPPING=1; after SIGTERM: {rest:?}"
    );
}

#[test]
fn no_watchdog_pings_unless_asked_for_this_process() {
    let s = setup();
    let config = format!("{}{}", s.base_config(), demo(&s));
    // Without WATCHDOG_USEC, and with a WATCHDOG_PID naming another
    // process (the variables a child inherited): no pings.
    for (usec, pid) in [(None, None), (Some(200_000), Some(1))] {
        let mut sock = NotifySocket::bind(s.dir.path());
        let mut agent = notified_agent(&s, &config, &sock, usec, pid);
        sock.wait_line(Duration::from_secs(20), "READY=1");
        let after = sock.collect(Duration::from_millis(1500));
        assert!(
            !after
                .iter()
                .any(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1")),
            "WATCHDOG=1 sent with WATCHDOG_USEC={usec:?} WATCHDOG_PID={pid:?}: {after:?}"
        );
        assert_eq!(agent.stop(), Some(0), "{}", agent.log_text());
        sock.wait_line(Duration::from_secs(5), "STOPPING=1");
    }
}

/// The 1-based line of the first line of `text` that starts with `start`.
fn line_of(text: &str, start: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{text}"))
        + 1
}

/// Waits until the agent's own log has `n` lines containing `what`.
fn wait_log(s: &Setup, what: &str, n: usize) -> String {
    wait_for(Duration::from_secs(20), what, || {
        let log = own_log(s);
        (log.matches(what).count() >= n).then_some(log)
    })
}

#[test]
fn sighup_refuses_a_bad_config_and_applies_a_good_one() {
    let s = setup();
    let mut sock = NotifySocket::bind(s.dir.path());
    let cfg_path = s.path("gala-gopher.toml");
    let base = with_own_log(&s.base_config());
    let good = format!("{base}{}", demo(&s));
    let mut agent = s.start_with_env(&good, &[("NOTIFY_SOCKET", sock.path.to_str().unwrap())]);
    sock.wait_line(Duration::from_secs(10), "READY=1");
    let demo_series = "gala_gopher_demo_requests{pid=\"100\"";
    wait_for(Duration::from_secs(15), "the demo series", || {
        agent.scrape().contains(demo_series).then_some(())
    });
    let demo_pid = pid_of(&s, "demo");

    // 1. A config with two problems: neither is applied, both are logged
    //    with file:line: key, the agent keeps serving the same probe.
    let bad = good
        .replace(&format!("port = {}", s.port), "port = 70000")
        .replace(
            "record_timeout = 60",
            "record_timeout = 60\nno_such_key = 1",
        );
    std::fs::write(&cfg_path, &bad).unwrap();
    signal_child(&agent.child, libc::SIGHUP);
    let log = wait_log(&s, "reload refused", 1);
    let cfg = cfg_path.display();
    for (start, key) in [
        ("port = 70000", "web_server.port"),
        ("no_such_key", "imdb.no_such_key"),
    ] {
        let head = format!("{cfg}:{}: key `{key}`: ", line_of(&bad, start));
        assert!(
            log.lines()
                .any(|l| l.contains(" ERROR ") && l.contains(&head)),
            "no ERROR line with `{head}`:\n{log}"
        );
    }
    sock.wait_line(Duration::from_secs(5), "RELOADING=1");
    let ready = sock.wait_line(Duration::from_secs(5), "READY=1");
    assert!(
        status_of(&ready).is_some_and(|st| st.contains("refused")),
        "{ready:?}"
    );
    assert!(agent.scrape().contains(demo_series));
    assert_eq!(live_pids(&[demo_pid]), [demo_pid], "the probe kept running");

    // 2. A meta directory without .meta files: refused, and said why.
    let empty_meta = s.path("empty-meta");
    std::fs::create_dir_all(&empty_meta).unwrap();
    let bad_meta = good.replace(
        &format!("meta_dir = \"{}\"", s.path("meta").display()),
        &format!("meta_dir = \"{}\"", empty_meta.display()),
    );
    assert_ne!(bad_meta, good);
    std::fs::write(&cfg_path, &bad_meta).unwrap();
    signal_child(&agent.child, libc::SIGHUP);
    let log = wait_log(&s, "reload refused", 2);
    sock.wait_line(Duration::from_secs(5), "RELOADING=1");
    sock.wait_line(Duration::from_secs(5), "READY=1");
    assert!(
        log.lines().any(|l| l.contains(" ERROR ")
            && l.contains(&format!("{}: no .meta files", empty_meta.display()))),
        "{log}"
    );
    assert!(agent.scrape().contains(demo_series));

    // 3. A good config with another probe: the old probe stops, its table
    //    leaves /metrics, the new one's comes, on the same listener.
    let switched = format!("{base}{}", two(&s));
    std::fs::write(&cfg_path, &switched).unwrap();
    signal_child(&agent.child, libc::SIGHUP);
    let log = wait_log(&s, "reload applied", 1);
    assert!(
        log.contains("reload applied: the new configuration runs 1 probe(s)"),
        "{log}"
    );
    let two_series = "gala_gopher_demotwo_level{id=\"7\"";
    let expo = wait_for(Duration::from_secs(15), "the new probe's series", || {
        let e = agent.scrape();
        e.contains(two_series).then_some(e)
    });
    assert!(!expo.contains("gala_gopher_demo_requests"), "{expo}");
    assert!(
        live_pids(&[demo_pid]).is_empty(),
        "the old probe was stopped"
    );
    sock.wait_line(Duration::from_secs(5), "RELOADING=1");
    sock.wait_line(Duration::from_secs(10), "READY=1");

    // 4. web_server moves: the new port serves, the old one is closed.
    let new_port = free_port();
    let moved = switched.replace(&format!("port = {}", s.port), &format!("port = {new_port}"));
    std::fs::write(&cfg_path, &moved).unwrap();
    signal_child(&agent.child, libc::SIGHUP);
    wait_log(&s, "reload applied", 2);
    wait_for(
        Duration::from_secs(15),
        "the new port to serve the probe",
        || {
            http_get(new_port, "/metrics")
                .ok()
                .filter(|(c, b)| *c == 200 && b.contains(two_series))
        },
    );
    assert!(
        http_get(s.port, "/metrics").is_err(),
        "the old port still answers"
    );
    agent.port = new_port;

    // SIGHUP never killed it; SIGTERM stops it cleanly.
    assert_eq!(agent.stop(), Some(0), "{}", own_log(&s));
}

#[test]
fn sighup_reopens_the_log_files() {
    let s = setup();
    let base = with_own_log(&s.base_config()).replace(
        "[metric]\nout_channel = \"web_server\"",
        "[metric]\nout_channel = \"logs\"",
    );
    assert!(base.contains("[metric]\nout_channel = \"logs\""));
    let mut agent = s.start(&format!("{base}{}", demo(&s)));
    let metrics = s.path("logs/metrics/metrics.log");
    let own = s.path("logs/debug/agent.log");
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    wait_for(
        Duration::from_secs(15),
        "metric records in metrics.log",
        || (size(&metrics) > 0).then_some(()),
    );
    // logrotate's way: move the files away, then SIGHUP.
    let moved_metrics = s.path("logs/metrics/metrics.log.rotated");
    let moved_own = s.path("logs/debug/agent.log.rotated");
    std::fs::rename(&metrics, &moved_metrics).unwrap();
    std::fs::rename(&own, &moved_own).unwrap();
    signal_child(&agent.child, libc::SIGHUP);
    // The same config: nothing restarts, the files are opened again.
    let log = wait_log(&s, "reload applied", 1);
    assert!(
        log.contains("the configuration is unchanged; its probes keep running"),
        "{log}"
    );
    assert!(log.contains("SIGHUP"), "{log}");
    wait_for(
        Duration::from_secs(15),
        "new records in a new metrics.log",
        || {
            std::fs::read_to_string(&metrics)
                .ok()
                .filter(|t| t.contains("demo_app"))
        },
    );
    let old_size = size(&moved_metrics);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        size(&moved_metrics),
        old_size,
        "the moved metrics.log still grows"
    );
    assert!(size(&metrics) > 0);
    let rotated = std::fs::read_to_string(&moved_own).unwrap();
    assert!(!rotated.contains("reload applied"), "{rotated}");
    assert_eq!(agent.stop(), Some(0), "{}", own_log(&s));
}

#[test]
fn sighup_adding_an_ebpf_probe_says_a_restart_is_needed() {
    let s = setup();
    let cfg_path = s.path("gala-gopher.toml");
    let base = with_own_log(&s.base_config());
    // Started without an eBPF probe: the capabilities to load one are
    // dropped for good.
    let mut agent = s.start(&format!("{base}{}", demo(&s)));
    let with_ebpf = format!("{base}{}\n[[probes]]\nname = \"tcp_link\"\n", demo(&s));
    std::fs::write(&cfg_path, &with_ebpf).unwrap();
    signal_child(&agent.child, libc::SIGHUP);
    let log = wait_log(&s, "reload applied", 1);
    let warning = log
        .lines()
        .find(|l| l.contains(" WARN ") && l.contains("eBPF probes"))
        .unwrap_or_else(|| panic!("no warning about the eBPF probe:\n{log}"));
    assert!(
        warning.contains("restart gala-gopher") && warning.contains("probes=tcp_link"),
        "{warning}"
    );
    assert!(
        warning.contains("CAP_BPF") || warning.contains("CAP_SYS_ADMIN"),
        "{warning}"
    );
    // The agent goes on serving.
    wait_for(Duration::from_secs(15), "the demo series again", || {
        agent
            .scrape()
            .contains("gala_gopher_demo_requests{pid=\"100\"")
            .then_some(())
    });
    assert_eq!(agent.stop(), Some(0), "{}", own_log(&s));
}

#[test]
fn sighup_restarts_an_ebpf_probe_the_agent_started_with() {
    let s = setup();
    let cfg_path = s.path("gala-gopher.toml");
    let base = with_own_log(&s.base_config());
    let ebpf = "\n[[probes]]\nname = \"tcp_link\"\n";
    let agent = s.start(&format!("{base}{ebpf}{}", demo(&s)));
    let running = |expo: &str| {
        expo.lines().any(|l| {
            l.starts_with("gala_gopher_self_probe_state{probe=\"tcp_link\",state=\"running\"")
                && l.ends_with(" 1")
        })
    };
    wait_for(Duration::from_secs(20), "tcp_link running", || {
        running(&agent.scrape()).then_some(())
    });
    // Another probe set: the daemon restarts, tcp_link loads again (its
    // capabilities were kept, since the first plan had it).
    std::fs::write(&cfg_path, format!("{base}{ebpf}{}", two(&s))).unwrap();
    signal_child(&agent.child, libc::SIGHUP);
    let log = wait_log(&s, "reload applied", 1);
    assert!(
        log.contains("the new configuration runs 2 probe(s)"),
        "{log}"
    );
    assert!(!log.contains("eBPF probes"), "{log}");
    let expo = wait_for(Duration::from_secs(20), "tcp_link running again", || {
        let e = agent.scrape();
        (running(&e) && e.contains("gala_gopher_demotwo_level")).then_some(e)
    });
    let restarts = expo
        .lines()
        .find(|l| l.starts_with("gala_gopher_self_probe_restarts_total{probe=\"tcp_link\""))
        .unwrap_or_else(|| panic!("no restart counter for tcp_link:\n{expo}"));
    assert!(
        restarts.ends_with(" 0"),
        "tcp_link failed to load after the reload: {restarts}\n{}",
        own_log(&s)
    );
    let mut agent = agent;
    assert_eq!(agent.stop(), Some(0), "{}", own_log(&s));
}
