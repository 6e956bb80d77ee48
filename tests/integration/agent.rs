//! The agent end to end: an extend probe's records at :port, exactly.

use std::time::Duration;

use crate::harness::{self, live_pids, promtool, series_value, wait_for, Setup};

const DEMO_META: &str = include_str!("../data/demo_app.meta");

fn identity(s: &Setup) -> String {
    let machine_id =
        std::fs::read_to_string(s.path("state/machine_id")).expect("agent persisted machine_id");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    format!(
        "machine_id=\"{}\",hostname=\"{}\"",
        machine_id.trim(),
        hostname.trim()
    )
}

fn demo_agent(s: &Setup) -> harness::Agent {
    let script = s.script(
        "demo.sh",
        "while true; do\n  echo '|demo_app|100|nginx|42|3|'\n  echo '|demo_app|200|redis|7||'\n  sleep 1\ndone",
    );
    s.start(&format!(
        "{}\n[[extend_probes]]\nname = \"demo\"\ncommand = \"{}\"\nswitch = \"on\"\n",
        s.base_config(),
        script.display()
    ))
}

#[test]
fn extend_probe_series_are_exact_and_promtool_clean() {
    let s = Setup::new(&[("demo_app.meta", DEMO_META)]);
    let agent = demo_agent(&s);
    let expo = wait_for(Duration::from_secs(15), "demo series", || {
        let e = agent.scrape();
        e.contains("gala_gopher_demo_requests{pid=\"200\"")
            .then_some(e)
    });
    let id = identity(&s);
    let table: Vec<&str> = expo
        .lines()
        .filter(|l| l.contains("gala_gopher_demo_"))
        .collect();
    assert_eq!(
        table,
        vec![
            "# HELP gala_gopher_demo_requests requests served since start".to_owned(),
            "# TYPE gala_gopher_demo_requests counter".to_owned(),
            format!("gala_gopher_demo_requests{{pid=\"100\",comm=\"nginx\",{id}}} 42"),
            format!("gala_gopher_demo_requests{{pid=\"200\",comm=\"redis\",{id}}} 7"),
            "# HELP gala_gopher_demo_inflight requests in flight".to_owned(),
            "# TYPE gala_gopher_demo_inflight gauge".to_owned(),
            format!("gala_gopher_demo_inflight{{pid=\"100\",comm=\"nginx\",{id}}} 3"),
        ],
        "full exposition:\n{expo}"
    );
    // A second scraper sees the same series: scraping deletes nothing.
    let again = agent.scrape();
    for l in &table {
        assert!(again.contains(l), "second scrape lost `{l}`");
    }
    let accepted = format!("gala_gopher_self_records_accepted_total{{probe=\"demo\",{id}}}");
    assert!(series_value(&expo, &accepted).unwrap() >= 2.0);

    let (code, out) = promtool(&again);
    assert!(code == 0 || code == 3, "promtool exit {code}: {out}");
    for l in out.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            l.contains("counter metrics should have \"_total\" suffix"),
            "unexpected promtool finding: {l}\n{out}"
        );
    }
}

#[test]
fn native_probes_report_the_seed_os_tables() {
    let s = Setup::new(&[]);
    let cfg = format!(
        "{}\n{}",
        s.base_config(),
        [
            "system_meminfo",
            "system_vmstat",
            "system_inode",
            "system_tcp"
        ]
        .iter()
        .map(|p| format!("[[probes]]\nname = \"{p}\"\nparam = \"-t 1\"\nswitch = \"on\"\n"))
        .collect::<String>()
    );
    let agent = s.start(&cfg);
    let id = identity(&s);
    let own = format!("local_port=\"{}\"", s.port);
    let expo = wait_for(Duration::from_secs(15), "OS tables", || {
        let e = agent.scrape();
        (e.contains(&own)
            && e.contains("gala_gopher_system_meminfo_MemTotal{")
            && e.contains("gala_gopher_system_vmstat_nr_free_pages{")
            && e.contains("gala_gopher_system_inode_Inodes{"))
        .then_some(e)
    });
    let mem = series_value(
        &expo,
        &format!("gala_gopher_system_meminfo_MemTotal{{mem=\"mem\",{id}}}"),
    )
    .expect("MemTotal series");
    let proc_total: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(mem, proc_total, "MemTotal in kB as /proc/meminfo says");
    // The agent's own listening socket shows up in system_tcp.
    assert!(
        expo.lines()
            .any(|l| l.starts_with("gala_gopher_system_tcp_") && l.contains(&own)),
        "own listener missing:\n{expo}"
    );
    let (code, out) = promtool(&expo);
    assert!(code == 0 || code == 3, "promtool exit {code}: {out}");
}

#[test]
fn logs_channel_writes_json_lines() {
    let s = Setup::new(&[("demo_app.meta", DEMO_META)]);
    let cfg = s
        .base_config()
        .replace(
            "[metric]\nout_channel = \"web_server\"",
            "[metric]\nout_channel = \"logs\"",
        )
        .replace(
            "log_level = \"debug\"",
            "log_level = \"debug\"\nlog_file_name = \"gopher.log\"",
        );
    let script = s.script(
        "demo.sh",
        "echo '|demo_app|100|nginx|42|3|'\nexec sleep 600",
    );
    let _agent = s.start(&format!(
        "{cfg}\n[[extend_probes]]\nname = \"demo\"\ncommand = \"{}\"\n",
        script.display()
    ));
    let line = wait_for(Duration::from_secs(15), "a metric log line", || {
        std::fs::read_to_string(s.path("logs/metrics/metrics.log"))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned))
    });
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["table_name"], "demo_app");
    assert_eq!(v["entity_name"], "demo");
    assert_eq!(v["pid"], "100");
    assert_eq!(v["comm"], "nginx");
    assert_eq!(v["requests"], "42");
    assert_eq!(v["inflight"], "3");
    assert!(v["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    let meta = wait_for(Duration::from_secs(10), "metadata log", || {
        std::fs::read_to_string(s.path("logs/meta/metadata.log"))
            .ok()
            .filter(|t| t.contains("demo_app"))
    });
    let m: serde_json::Value =
        serde_json::from_str(meta.lines().find(|l| l.contains("\"demo_app\"")).unwrap()).unwrap();
    assert_eq!(m["keys"], serde_json::json!(["pid"]));
    assert_eq!(m["labels"], serde_json::json!(["comm"]));
    assert_eq!(m["metrics"], serde_json::json!(["requests", "inflight"]));
    // global.log_file_name sends the agent's own log to logs.debug_dir.
    let own_log = std::fs::read_to_string(s.path("logs/debug/gopher.log")).unwrap();
    assert!(own_log.contains("gala-gopher started"), "{own_log}");
}

#[test]
fn events_go_to_the_event_log() {
    let s = Setup::new(&[]);
    let script = s.script(
        "ev.sh",
        "echo '|event|proc|1234|cpu_util|1234|java||||eth0|WARN|13|cpu too high|'\nexec sleep 600",
    );
    let _agent = s.start(&format!(
        "{}\n[[extend_probes]]\nname = \"ev\"\ncommand = \"{}\"\n",
        s.base_config(),
        script.display()
    ));
    let line = wait_for(Duration::from_secs(15), "an event log line", || {
        std::fs::read_to_string(s.path("logs/event/events.log"))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned))
    });
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["SeverityText"], "WARN");
    assert_eq!(v["SeverityNumber"], 13);
    assert_eq!(v["Body"], "cpu too high");
    assert_eq!(v["Resource"]["metric"], "gala_gopher_proc_cpu_util");
    assert_eq!(v["Resource"]["labels"]["comm"], "java");
}

#[test]
fn sigterm_stops_children_and_leaves_no_orphan() {
    let s = Setup::new(&[("demo_app.meta", DEMO_META)]);
    let pids = s.path("pids");
    // The probe starts a helper that ignores SIGTERM: the agent must kill it
    // after the grace period.
    let script = s.script(
        "orphan.sh",
        &format!(
            "trap '' TERM\nsleep 600 &\necho $$ $! > {}\necho '|demo_app|1|x|1|1|'\nwait",
            pids.display()
        ),
    );
    let mut agent = s.start(&format!(
        "{}\n[[extend_probes]]\nname = \"o\"\ncommand = \"{}\"\n",
        s.base_config(),
        script.display()
    ));
    let pids: Vec<i32> = wait_for(Duration::from_secs(10), "probe pids", || {
        let t = std::fs::read_to_string(&pids).ok()?;
        let v: Vec<i32> = t
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        (v.len() == 2).then_some(v)
    });
    assert_eq!(live_pids(&pids).len(), 2);
    assert_eq!(
        agent.stop(),
        Some(0),
        "clean exit on SIGTERM; log:\n{}",
        agent.log_text()
    );
    // SIGKILL lands asynchronously: allow the kernel a moment to finish it.
    wait_for(Duration::from_secs(3), "no orphan left", || {
        live_pids(&pids).is_empty().then_some(())
    });
}

#[test]
fn check_config_accepts_the_shipped_configs() {
    for cfg in ["config/gala-gopher.toml", "config/gala-gopher.conf"] {
        let out = std::process::Command::new(harness::bin())
            .arg("check-config")
            .arg(harness::repo().join(cfg))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cfg}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    }
}

/// Children of `pid`, from /proc.
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            fields.get(1).and_then(|pp| pp.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

#[test]
fn sigkill_of_the_agent_leaves_no_orphan() {
    // The agent drops capabilities at start, and an exec that regains them
    // clears the kernel's parent-death signal: children must re-arm it.
    let s = Setup::new(&[("demo_app.meta", DEMO_META)]);
    // A probe that stops writing: nothing but the parent-death signal can
    // end it once the agent is gone.
    let script = s.script("quiet.sh", "echo '|demo_app|1|x|1|1|'\nexec sleep 600");
    let mut agent = s.start(&format!(
        "{}\n[[probes]]\nname = \"system_cpu\"\nparam = \"-t 600\"\n\n[[extend_probes]]\nname = \"quiet\"\ncommand = \"{}\"\n",
        s.base_config(),
        script.display()
    ));
    let kids = wait_for(Duration::from_secs(10), "two probe children", || {
        let k = children_of(agent.child.id());
        (k.len() >= 2).then_some(k)
    });
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    wait_for(
        Duration::from_secs(5),
        "children to die with the agent",
        || live_pids(&kids).is_empty().then_some(()),
    );
}

/// `[[probes]]` with `switch = "auto"`: a native probe starts only when its
/// start check prints a count above 0 (the LB probes wait for their server
/// this way); one whose check says 0 waits, and says so in self-metrics.
#[test]
fn native_auto_probes_wait_for_their_start_check() {
    let s = Setup::new(&[]);
    let cfg = format!(
        "{}\n[[probes]]\nname = \"system_meminfo\"\nparam = \"-t 1\"\nswitch = \"auto\"\nstart_check = \"echo 0\"\n\
         [[probes]]\nname = \"system_vmstat\"\nparam = \"-t 1\"\nswitch = \"auto\"\nstart_check = \"echo 2\"\n",
        s.base_config()
    );
    let agent = s.start(&cfg);
    let expo = wait_for(Duration::from_secs(15), "the checked probe runs", || {
        let e = agent.scrape();
        (e.contains("gala_gopher_system_vmstat_nr_free_pages{")
            && state_is(&e, "system_meminfo", "waiting"))
        .then_some(e)
    });
    assert!(
        !expo.contains("gala_gopher_system_meminfo_"),
        "a probe whose start check printed 0 must not run:\n{expo}"
    );
    assert!(state_is(&expo, "system_vmstat", "running"), "{expo}");
}

/// Whether the self-metric says `probe` is in `state`.
fn state_is(expo: &str, probe: &str, state: &str) -> bool {
    let head = format!("gala_gopher_self_probe_state{{probe=\"{probe}\",state=\"{state}\",");
    expo.lines()
        .any(|l| l.starts_with(&head) && l.ends_with(" 1"))
}
