//! Legacy 1.x in-tree C probes built unchanged against `include/legacy/`
//! (common.h, event.h, whitelist_config.h, object.h) and run by the real
//! agent (issue 13, part 2).
//!
//! `tests/data/c/legacy_infos/` is a probe in the shape of 1.x
//! `system_infos`: several .c files and a private header including the
//! legacy headers, `int main(struct probe_params *)` looping forever. It is
//! compiled as the devel package documents it, with the Cflags and Libs of
//! a `gopher.pc` made from `rpm/gopher.pc.in` over an install-like copy of
//! the headers, plus only `-Dmain=probe_main_legacy_infos` (and warnings
//! as errors). The test checks that its records reach /metrics, its log
//! macros reach the agent's log at their levels, its `report_logs` calls
//! reach the event log, and the object.h note is logged exactly once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{self, wait_for, Agent, Setup};

const PROBE: &str = "legacy_infos";

fn data_dir() -> PathBuf {
    harness::repo().join("tests/data/c/legacy_infos")
}

/// Where `cargo build -p gopher-ffi` left libgopher.so.
fn libdir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| harness::repo().join("target"), PathBuf::from);
    let debug = target.join("debug");
    [debug.clone(), debug.join("deps")]
        .into_iter()
        .find(|d| d.join("libgopher.so").exists())
        .unwrap_or_else(|| {
            panic!(
                "libgopher.so not found under {}: run `cargo build -p gopher-ffi` first (`make test` does)",
                debug.display()
            )
        })
}

/// Lays the headers out under `root` as gala-gopher-devel installs them
/// (`<root>/include/gala-gopher/{,legacy/}`), writes `gopher.pc` from
/// rpm/gopher.pc.in, and returns what `pkg-config --cflags --libs gopher`
/// says.
fn devel_flags(root: &Path) -> Vec<String> {
    let repo = harness::repo();
    let inc = root.join("include/gala-gopher");
    std::fs::create_dir_all(inc.join("legacy")).expect("include dirs");
    for h in ["gopher.h", "args.h", "nprobe_fprintf.h"] {
        std::fs::copy(repo.join("include").join(h), inc.join(h)).expect("copy header");
    }
    for e in std::fs::read_dir(repo.join("include/legacy")).expect("include/legacy") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "h") {
            let name = p.file_name().expect("file name");
            std::fs::copy(&p, inc.join("legacy").join(name)).expect("copy legacy header");
        }
    }
    let pc_in = std::fs::read_to_string(repo.join("rpm/gopher.pc.in")).expect("rpm/gopher.pc.in");
    let pc = pc_in
        .replace("@PREFIX@", &root.display().to_string())
        .replace("@LIBDIR@", &libdir().display().to_string())
        .replace("@INCLUDEDIR@", &root.join("include").display().to_string())
        .replace("@VERSION@", "0.0.0");
    let pc_dir = root.join("pkgconfig");
    std::fs::create_dir_all(&pc_dir).expect("pkgconfig dir");
    std::fs::write(pc_dir.join("gopher.pc"), pc).expect("write gopher.pc");
    let out = Command::new("pkg-config")
        .args(["--cflags", "--libs", "gopher"])
        .env("PKG_CONFIG_PATH", &pc_dir)
        .env_remove("PKG_CONFIG_SYSROOT_DIR")
        .output()
        .expect("pkg-config is required (`make test` installs it)");
    assert!(
        out.status.success(),
        "pkg-config gopher: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flags: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let legacy_inc = format!("-I{}", inc.join("legacy").display());
    assert!(
        flags.contains(&legacy_inc),
        "gopher.pc Cflags lack {legacy_inc}: {flags:?}"
    );
    flags
}

/// Compiles every .c of the probe into one shared library, unchanged.
fn build_probe(out: &Path) -> PathBuf {
    let flags = devel_flags(&out.join("devel"));
    let mut sources: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("tests/data/c/legacy_infos")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    assert!(sources.len() >= 3, "the probe has several .c files");
    let so = out.join(format!("{PROBE}.so"));
    let o = Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Wextra", "-Werror"])
        .arg(format!("-Dmain=probe_main_{PROBE}"))
        .args(&sources)
        .args(&flags)
        .arg(format!("-Wl,-rpath,{}", libdir().display()))
        .arg("-o")
        .arg(&so)
        .output()
        .expect("a C compiler (cc) is required: `make test` installs gcc");
    assert!(
        o.status.success(),
        "{PROBE} does not compile unchanged:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    so
}

/// Starts the agent with the probe (period 1 s, device eth7, the whitelist
/// given with -w) at `log_level`.
fn start(s: &Setup, log_level: &str) -> Agent {
    let so = build_probe(s.dir.path());
    let wl = s.path("gala-gopher-app.conf");
    std::fs::copy(data_dir().join("gala-gopher-app.conf"), &wl).expect("copy whitelist");
    let base = s.base_config();
    assert!(base.contains("log_level = \"debug\""), "{base}");
    let cfg =
        format!(
        "{}\n[[probes]]\nname = \"{PROBE}\"\nlibrary = \"{}\"\nparam = \"-t 1 -d eth7 -w {}\"\n",
        base.replace("log_level = \"debug\"", &format!("log_level = \"{log_level}\"")),
        so.display(),
        wl.display()
    );
    s.start(&cfg)
}

fn setup() -> Setup {
    let meta = std::fs::read_to_string(data_dir().join("legacy_infos.meta")).expect("meta");
    Setup::new(&[("legacy_infos.meta", &meta)])
}

/// `(detail, value)` of the series `name` of the probe's table.
fn series(expo: &str, name: &str) -> Option<(String, f64)> {
    let prefix = format!("gala_gopher_legacy_infos_value{{name=\"{name}\",detail=\"");
    let line = expo.lines().find(|l| l.starts_with(&prefix))?;
    let rest = &line[prefix.len()..];
    let detail = rest.split('"').next()?.to_owned();
    let value = line.rsplit(' ').next()?.parse().ok()?;
    Some((detail, value))
}

/// The level word of each agent log line that contains `needle`.
fn levels_of(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

#[test]
fn a_1x_style_probe_with_the_legacy_headers_runs_unchanged() {
    let s = setup();
    let mut agent = start(&s, "debug");

    // A looping probe: wait for its third round.
    let expo = wait_for(
        Duration::from_secs(30),
        "three rounds of legacy_infos",
        || {
            let e = agent.scrape();
            series(&e, "round")
                .is_some_and(|(_, v)| v >= 3.0)
                .then_some(e)
        },
    );
    let want: [(&str, &str, f64); 13] = [
        ("round", "eth7", -1.0), // value checked above
        ("exec", "first_line", 42.0),
        ("ip4", "10.1.2.3", 4.0),
        ("ip6", "fe80:0:0:0:21b:21ff:192.168.0.7", 6.0),
        ("ip6mapped", "172.16.5.4", 46.0),
        ("split", "trimmed", 7.0),
        ("snprintf", "dev-1_eth7", 246.0),
        ("snprintf_small", "-1", -1.0),
        ("app0", "^kafka/server.properties", 2.0),
        ("app1", "nginx/", 2.0),
        ("matched", "kafka-server", 1.0),
        ("objects", "proc1_cg0_ns0", 1.0),
        ("time", "", 19.0),
    ];
    for (name, detail, value) in want {
        let (d, v) = series(&expo, name).unwrap_or_else(|| panic!("no series {name} in:\n{expo}"));
        if name != "time" {
            assert_eq!(d, detail, "{name}");
        } else {
            // get_cur_time: YYYY-MM-DD-hh-mm-ss
            let parts: Vec<&str> = d.split('-').collect();
            assert!(
                parts.len() == 6 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
                "time {d:?}"
            );
        }
        if name != "round" {
            assert_eq!(v, value, "{name}");
        }
    }

    // The log macros at their levels, without the messages' newline.
    let log = agent.log_text();
    for (needle, level) in [
        (
            "[LEGACY_INFOS] started, period 1, dev eth7 probe=legacy_infos",
            "INFO",
        ),
        ("[LEGACY_INFOS] debug detail 7 probe=legacy_infos", "DEBUG"),
        ("[LEGACY_INFOS] warn line w1 probe=legacy_infos", "WARN"),
        ("[LEGACY_INFOS] error line 17 probe=legacy_infos", "ERROR"),
    ] {
        assert_eq!(levels_of(&log, needle), [level], "{needle}:\n{log}");
    }
    // object.h is called every round; its note is logged once.
    assert_eq!(
        levels_of(
            &log,
            "object.h: processes, cgroups and namespaces added by this probe"
        ),
        ["WARN"],
        "{log}"
    );
    // exec_cmd reads the whole output: the command never hits a closed pipe.
    assert!(
        !log.contains("I/O error") && !log.contains("Broken pipe"),
        "{log}"
    );

    // report_logs reaches the event channel (event.out_channel = "logs").
    let events_file = s.path("logs/event/events.log");
    let events: Vec<serde_json::Value> =
        wait_for(Duration::from_secs(15), "4 events in the event log", || {
            let text = std::fs::read_to_string(&events_file).ok()?;
            let v: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("each event line is JSON"))
                .collect();
            (v.len() >= 4).then_some(v)
        });
    assert_eq!(events.len(), 4, "each event once: {events:?}");
    let want = [
        ("disk0", "util", "INFO", 9, "INFO Entity(disk0) util is 50%"),
        (
            "disk0",
            "iowait",
            "WARN",
            13,
            "WARN Entity(disk0) iowait high: 9 ms",
        ),
        ("nic1", "drops", "ERROR", 17, "ERROR Entity(nic1) drops 12"),
        (
            "cpu2",
            "temp",
            "FATAL",
            21,
            "FATAL Entity(cpu2) temp 99 C hot",
        ),
    ];
    for (ev, (id, metric, text, number, body)) in events.iter().zip(want) {
        let entity_id = ev["Attributes"]["entity_id"].as_str().unwrap_or_default();
        assert!(entity_id.ends_with(&format!("_legacy_infos_{id}")), "{ev}");
        assert_eq!(
            ev["Resource"]["metric"],
            format!("gala_gopher_legacy_infos_{metric}"),
            "{ev}"
        );
        assert_eq!(ev["SeverityText"], text, "{ev}");
        assert_eq!(ev["SeverityNumber"], number, "{ev}");
        let b = ev["Body"].as_str().unwrap_or_default();
        assert!(b.ends_with(body), "body {b:?} should end with {body:?}");
    }

    assert_eq!(agent.stop(), Some(0), "{}", agent.log_text());
}

#[test]
fn the_debug_macro_follows_the_agents_log_level() {
    let s = setup();
    let agent = start(&s, "info");
    wait_for(
        Duration::from_secs(30),
        "two rounds of legacy_infos",
        || {
            series(&agent.scrape(), "round")
                .is_some_and(|(_, v)| v >= 2.0)
                .then_some(())
        },
    );
    let log = agent.log_text();
    assert_eq!(
        levels_of(&log, "[LEGACY_INFOS] started, period 1"),
        ["INFO"],
        "{log}"
    );
    assert_eq!(
        levels_of(&log, "[LEGACY_INFOS] error line 17"),
        ["ERROR"],
        "{log}"
    );
    assert!(
        levels_of(&log, "[LEGACY_INFOS] debug detail").is_empty(),
        "DEBUG is below log_level info:\n{log}"
    );
}
