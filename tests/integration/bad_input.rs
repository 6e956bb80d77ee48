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

/// Runs `check-config FILE` with `bin`: (exit code, stdout, stderr).
fn check_config_with(
    bin: &std::path::Path,
    file: &std::path::Path,
) -> (Option<i32>, String, String) {
    // A binary copied a moment ago can still be open for writing in a child
    // forked meanwhile by another test thread: retry while it is busy.
    let mut tries = 0;
    let out = loop {
        match Command::new(bin).arg("check-config").arg(file).output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            r => break r.unwrap(),
        }
    };
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_reports_every_problem_of_a_file_at_once() {
    let s = Setup::new(&[]);
    let meta = s.path("meta");
    // Five kinds of problems in each syntax: a bad out_channel, TLS switched
    // on, a number out of range, an unknown key, an unknown probe name and a
    // bad switch value.
    let toml = format!(
        "[global]\nmeta_dir = \"{}\"\n\n[metric]\nout_channel = \"stdout\"\n\n\
         [web_server]\nport = 70000\nssl_auth = true\nbind_adr = \"127.0.0.1\"\n\n\
         [[probes]]\nname = \"no_such_probe\"\n\n[[probes]]\nname = \"system_cpu\"\nswitch = \"sometimes\"\n",
        meta.display()
    );
    let conf = format!(
        "global = {{ meta_dir = \"{}\"; }};\nmetric =\n{{\n    out_channel = \"stdout\";\n}};\n\
         web_server =\n{{\n    port = 70000;\n    ssl_auth = \"on\";\n    bind_adr = \"127.0.0.1\";\n}};\n\
         probes =\n(\n    {{ name = \"no_such_probe\"; }},\n    {{ name = \"system_cpu\"; switch = \"sometimes\"; }}\n);\n",
        meta.display()
    );
    for (name, text, lines) in [
        ("bad.toml", toml, [5, 8, 9, 10, 13, 17]),
        ("bad.conf", conf, [4, 8, 9, 10, 14, 15]),
    ] {
        let file = s.path(name);
        std::fs::write(&file, text).unwrap();
        let (code, stdout, stderr) = check_config_with(&harness::bin(), &file);
        assert_eq!(code, Some(2), "{name}: stdout {stdout}\nstderr {stderr}");
        assert!(!stdout.contains("OK"), "{name}: {stdout}");
        let expected = [
            (
                "metric.out_channel",
                "expected \"web_server\", \"logs\", \"kafka\" or \"\" (off), got \"stdout\"",
            ),
            ("web_server.port", "integer `70000`, expected u16"),
            (
                "web_server.ssl_auth",
                "`private_key`: expected the path of a PEM private key",
            ),
            (
                "web_server.bind_adr",
                "unknown field `bind_adr`, expected one of `port`, `bind_addr`",
            ),
            ("probes[0].name", "unknown probe `no_such_probe`"),
            (
                "probes[1].switch",
                "unknown variant `sometimes`, expected one of `on`, `off`, `auto`",
            ),
        ];
        let printed: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            printed.len(),
            expected.len(),
            "{name}: one line per problem:\n{stderr}"
        );
        for ((line_text, (key, what)), line) in printed.iter().zip(expected).zip(lines) {
            let head = format!("{}:{line}: key `{key}`: ", file.display());
            assert!(
                line_text.starts_with(&head) && line_text.contains(what),
                "{name}: expected `{head}...{what}...`, got:\n{stderr}"
            );
        }
    }
}

#[test]
fn check_config_on_a_copied_default_config_finds_the_meta_files_or_says_where_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("copied/gala-gopher.toml");
    std::fs::create_dir_all(tmp.path().join("copied")).unwrap();
    std::fs::copy(harness::repo().join("config/gala-gopher.toml"), &cfg).unwrap();

    // The build in target/debug finds the source tree's meta/.
    let (code, stdout, stderr) = check_config_with(&harness::bin(), &cfg);
    assert_eq!(code, Some(0), "stdout {stdout}\nstderr {stderr}");
    assert!(
        stdout.contains(&format!(
            "tables from {}",
            harness::repo().join("meta").display()
        )),
        "{stdout}"
    );

    // An installed binary, <prefix>/bin/gala-gopher, with nothing in
    // <prefix>/share: it works only if a system directory has meta files,
    // and otherwise says which directories it tried and what to set.
    let prefix = tmp.path().join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    let installed = prefix.join("bin/gala-gopher");
    if std::fs::hard_link(harness::bin(), &installed).is_err() {
        std::fs::copy(harness::bin(), &installed).unwrap();
    }
    let share = prefix.join("share/gala-gopher/meta");
    let (code, stdout, stderr) = check_config_with(&installed, &cfg);
    if code != Some(0) {
        assert_eq!(code, Some(2), "stdout {stdout}\nstderr {stderr}");
        for dir in [
            tmp.path().join("meta").display().to_string(),
            share.display().to_string(),
            "/opt/gala-gopher/meta".to_string(),
            "/etc/gala-gopher/meta".to_string(),
        ] {
            assert!(stderr.contains(&dir), "{dir} not named:\n{stderr}");
        }
        assert!(stderr.contains("`global.meta_dir`"), "{stderr}");
    }
    // With the meta files installed beside it, they are found.
    std::fs::create_dir_all(&share).unwrap();
    for e in std::fs::read_dir(harness::repo().join("meta")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), share.join(e.file_name())).unwrap();
    }
    let (code, stdout, stderr) = check_config_with(&installed, &cfg);
    assert_eq!(code, Some(0), "stdout {stdout}\nstderr {stderr}");
    assert!(
        stdout.contains(&format!("tables from {}", share.display())),
        "{stdout}"
    );
}

#[test]
fn a_keyless_v0_meta_file_is_served_as_one_series_with_the_newest_record() {
    // A 21.09 (V0) meta file: `name:` tables of gauges and counters, no key.
    let v0 = include_str!("../data/meta_variants/v0_keyless/system_meminfo.meta");
    let s = Setup::new(&[]);
    // It declares system_meminfo, as the shipped (V1) file does.
    std::fs::remove_file(s.path("meta/system_meminfo.meta")).unwrap();
    std::fs::write(s.path("meta/system_meminfo.meta"), v0).unwrap();
    let script = s.script(
        "v0.sh",
        "echo '|system_meminfo|16303980|14279100|15000000|2000|300000|7|'\n\
         echo '|system_meminfo|16303980|14000000|14900000|2100|310000|9|'\n\
         exec sleep 600",
    );
    let agent = s.start(&format!(
        "{}\n[[extend_probes]]\nname = \"v0\"\ncommand = \"{}\"\n",
        s.base_config(),
        script.display()
    ));
    let expo = wait_for(Duration::from_secs(15), "the newest V0 record", || {
        let e = agent.scrape();
        (series_value(&e, "gala_gopher_system_meminfo_pswpin{") == Some(9.0)).then_some(e)
    });
    let series: Vec<&str> = expo
        .lines()
        .filter(|l| l.starts_with("gala_gopher_system_meminfo_"))
        .collect();
    assert_eq!(
        series.len(),
        6,
        "one series per field:\n{}",
        series.join("\n")
    );
    for l in &series {
        let labels = l
            .split_once('{')
            .and_then(|(_, r)| r.split_once('}'))
            .map(|(l, _)| l);
        let names: Vec<&str> = labels
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
            .collect();
        assert_eq!(names, ["machine_id", "hostname"], "{l}");
    }
    assert_eq!(
        series_value(&expo, "gala_gopher_system_meminfo_MemFree{"),
        Some(14_000_000.0)
    );
    assert_eq!(
        self_series(&expo, "records_accepted_total", "probe=\"v0\""),
        2.0
    );
}
