//! Bad input: each is counted or refused clearly, and the daemon serves on.

use std::process::Command;
use std::time::Duration;

use crate::harness::{self, series_value, wait_for, Setup};

const DEMO_META: &str = include_str!("../data/demo_app.meta");

fn self_series(expo: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("gala_gopher_self_{name}{{{labels}");
    series_value(expo, &prefix).unwrap_or_else(|| panic!("no series {prefix}... in:\n{expo}"))
}

#[test]
fn malformed_lines_are_rejected_by_reason_and_counted() {
    let s = Setup::new(&[("demo_app.meta", DEMO_META)]);
    let script = s.script(
        "bad.sh",
        "echo 'not a record'\n\
         echo '|demo_app|1|x|'\n\
         echo '|nosuch|1|2|'\n\
         echo '|demo_app||x|1|2|'\n\
         echo '|demo_app|5|x|abc|1|'\n\
         echo '|demo_app|5|x|1|1'\n\
         echo '|demo_app|6|ok|1|1|'\n\
         exec sleep 600",
    );
    let agent = s.start(&format!(
        "{}\n[[extend_probes]]\nname = \"bad\"\ncommand = \"{}\"\n",
        s.base_config(),
        script.display()
    ));
    let expo = wait_for(Duration::from_secs(15), "the good record", || {
        let e = agent.scrape();
        e.contains("gala_gopher_demo_requests{pid=\"6\"")
            .then_some(e)
    });
    let r = |reason: &str| {
        self_series(
            &expo,
            "records_rejected_total",
            &format!("probe=\"bad\",reason=\"{reason}\""),
        )
    };
    assert_eq!(r("not_a_record"), 1.0);
    assert_eq!(r("field_count"), 1.0);
    assert_eq!(r("unknown_table"), 1.0);
    assert_eq!(r("empty_key"), 1.0);
    assert_eq!(r("invalid_number"), 1.0);
    assert_eq!(r("unterminated"), 1.0);
    assert_eq!(r("too_long"), 0.0);
    assert_eq!(
        self_series(&expo, "records_accepted_total", "probe=\"bad\""),
        1.0
    );
    assert!(
        !expo.contains("pid=\"5\""),
        "a rejected record leaked into the store"
    );
    // Still serving.
    assert!(agent.scrape().contains("gala_gopher_self_probe_state"));
}

#[test]
fn a_probe_that_exits_at_once_is_restarted_three_times_then_failed() {
    let s = Setup::new(&[("demo_app.meta", DEMO_META)]);
    let good = s.script(
        "good.sh",
        "while true; do echo '|demo_app|1|ok|1|1|'; sleep 0.2; done",
    );
    let agent = s.start(&format!(
        "{}\n[[extend_probes]]\nname = \"quitter\"\ncommand = \"/bin/true\"\n\n[[extend_probes]]\nname = \"steady\"\ncommand = \"{}\"\n",
        s.base_config(),
        good.display()
    ));
    let expo = wait_for(Duration::from_secs(20), "quitter to fail", || {
        let e = agent.scrape();
        (series_value(
            &e,
            "gala_gopher_self_probe_state{probe=\"quitter\",state=\"failed\"",
        ) == Some(1.0))
        .then_some(e)
    });
    assert_eq!(
        self_series(&expo, "probe_restarts_total", "probe=\"quitter\""),
        3.0
    );
    assert_eq!(
        self_series(&expo, "probe_state", "probe=\"steady\",state=\"running\""),
        1.0
    );
    let before = self_series(&expo, "records_accepted_total", "probe=\"steady\"");
    std::thread::sleep(Duration::from_millis(800));
    let after = self_series(
        &agent.scrape(),
        "records_accepted_total",
        "probe=\"steady\"",
    );
    assert!(
        after > before,
        "the other probe stopped reporting ({before} -> {after})"
    );
    assert!(
        agent.log_text().contains("quitter"),
        "the failure is logged"
    );
}

fn run_agent_expecting_failure(s: &Setup, config: &str) -> String {
    let cfg = s.path("gala-gopher.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = Command::new(harness::bin())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "must refuse to start; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_broken_meta_file_stops_startup_naming_file_and_line() {
    let broken = "version = \"1.0.0\"\nmeasurements:\n(\n    {\n        table_name: \"broken\",\n        fields: ( { type: \"gauge\", name: \"x\" } \n";
    let s = Setup::new(&[("broken.meta", broken)]);
    let err = run_agent_expecting_failure(&s, &s.base_config());
    assert!(err.contains("broken.meta:"), "file not named: {err}");
    assert!(
        err.contains("broken.meta:7") || err.contains("broken.meta:6"),
        "line not named: {err}"
    );
    // The port was never taken.
    assert!(harness::http_get(s.port, "/metrics").is_err());
}

#[test]
fn a_broken_config_is_a_clear_error_and_no_start() {
    let s = Setup::new(&[]);
    let cfg = s
        .base_config()
        .replace(&format!("port = {}", s.port), "port = 0");
    let err = run_agent_expecting_failure(&s, &cfg);
    assert!(err.contains("gala-gopher.toml"), "file not named: {err}");
    assert!(err.contains("web_server.port"), "key not named: {err}");
    let err = run_agent_expecting_failure(&s, &format!("{}\n[global2]\nx = 1\n", s.base_config()));
    assert!(err.contains("global2"), "unknown section not named: {err}");
    let err = run_agent_expecting_failure(
        &s,
        &format!(
            "{}\n[[probes]]\nname = \"no_such_probe\"\n",
            s.base_config()
        ),
    );
    assert!(
        err.contains("no_such_probe") && err.contains("probes[0].name"),
        "{err}"
    );
}
