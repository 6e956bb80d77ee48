//! C probes: legacy V0/V1 sources and new-ABI libraries compiled unchanged
//! against include/, run by the daemon in probe-host children; crashes,
//! hangs and ABI mismatches are contained.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{self, series_value, wait_for, Setup};

const DEMO_META: &str = include_str!("../data/demo_app.meta");

/// Where `cargo build -p gopher-ffi` (run by `make test`) left libgopher.so.
fn libdir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| harness::repo().join("target"), PathBuf::from);
    let debug = target.join("debug");
    [debug.clone(), debug.join("deps")]
        .into_iter()
        .find(|d| d.join("libgopher.so").exists())
        .unwrap_or_else(|| panic!("libgopher.so not found under {}: run `cargo build -p gopher-ffi` first (`make test` does)", debug.display()))
}

/// Compiles `tests/data/c/<src>.c` into `<out>/<src>.so` the documented way:
/// `cc -shared -fPIC -Wall -Wextra -Werror -I include [-Dmain=probe_main_<name>] probe.c -lgopher`.
fn build_so(src: &str, legacy_name: Option<&str>, out: &Path) -> PathBuf {
    let lib = libdir();
    let so = out.join(format!("{src}.so"));
    let mut cc = Command::new("cc");
    cc.args([
        "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-O1", "-I",
    ])
    .arg(harness::repo().join("include"));
    if let Some(n) = legacy_name {
        cc.arg(format!("-Dmain=probe_main_{n}"));
    }
    cc.arg(harness::repo().join(format!("tests/data/c/{src}.c")))
        .arg("-L")
        .arg(&lib)
        .arg("-lgopher")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&so);
    let o = cc
        .output()
        .expect("a C compiler (cc) is required: `make test` installs gcc");
    assert!(
        o.status.success(),
        "{src}.c does not compile unchanged:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    so
}

fn lib_probe(name: &str, so: &Path, param: &str, extra: &str) -> String {
    format!(
        "[[probes]]\nname = \"{name}\"\nlibrary = \"{}\"\nparam = \"{param}\"\n{extra}\n",
        so.display()
    )
}

fn self_value(expo: &str, name: &str, labels: &str) -> Option<f64> {
    series_value(expo, &format!("gala_gopher_self_{name}{{{labels}"))
}

#[test]
fn legacy_and_new_abi_probes_run_and_failures_are_contained() {
    let s = Setup::new(&[("demo_app.meta", DEMO_META)]);
    let out = s.path("so");
    std::fs::create_dir_all(&out).unwrap();
    let v1 = build_so("legacy_v1", Some("legacy_v1"), &out);
    let v0 = build_so("legacy_v0", Some("legacy_v0"), &out);
    let new = build_so("new_abi", None, &out);
    let crasher = build_so("crasher", Some("crasher"), &out);
    let hanger = build_so("hanger", None, &out);
    let future = build_so("future_abi", None, &out);
    let cfg = [
        s.base_config(),
        lib_probe("legacy_v1", &v1, "-t 1 -d eth9", ""),
        lib_probe("legacy_v0", &v0, "", ""),
        lib_probe("new_abi", &new, "-t 1", ""),
        "[[probes]]\nname = \"system_cpu\"\nparam = \"-t 1\"\n".to_owned(),
        lib_probe("crasher", &crasher, "-t 1", ""),
        lib_probe("hanger", &hanger, "-t 1", "hang_timeout_secs = 2"),
        lib_probe("future_abi", &future, "-t 1", ""),
    ]
    .join("\n");
    let agent = s.start(&cfg);

    // Records of all three source styles reach :port.
    let expo = wait_for(Duration::from_secs(20), "C probe records", || {
        let e = agent.scrape();
        (e.contains("gala_gopher_demo_requests{pid=\"1001\",comm=\"v1_eth9\"")
            && e.contains("gala_gopher_demo_requests{pid=\"2000\",comm=\"v0\"")
            && e.contains("gala_gopher_demo_requests{pid=\"3000\",comm=\"newabi\"")
            && e.contains("gala_gopher_system_cpu_user_total{cpu=\"cpu\""))
        .then_some(e)
    });
    assert_eq!(
        series_value(&expo, "gala_gopher_demo_requests{pid=\"1001\"").unwrap(),
        1.0,
        "V1 sees its parsed params (-t 1)"
    );
    assert_eq!(
        series_value(&expo, "gala_gopher_demo_inflight{pid=\"1001\"").unwrap(),
        3.0
    );
    assert_eq!(
        series_value(&expo, "gala_gopher_demo_requests{pid=\"3000\"").unwrap(),
        1.0
    );
    // The V0 probe loops on its own: its counter keeps rising.
    let v0_first = series_value(&expo, "gala_gopher_demo_requests{pid=\"2000\"").unwrap();
    wait_for(
        Duration::from_secs(10),
        "the looping V0 probe to report again",
        || {
            (series_value(&agent.scrape(), "gala_gopher_demo_requests{pid=\"2000\"").unwrap_or(0.0)
                > v0_first)
                .then_some(())
        },
    );

    // The crashing and the hanging probe are restarted 3 times, then failed;
    // the ABI mismatch is refused at once, without restarts.
    let expo = wait_for(
        Duration::from_secs(60),
        "crasher, hanger and future_abi to fail",
        || {
            let e = agent.scrape();
            ["crasher", "hanger", "future_abi"]
                .iter()
                .all(|p| {
                    self_value(
                        &e,
                        "probe_state",
                        &format!("probe=\"{p}\",state=\"failed\""),
                    ) == Some(1.0)
                })
                .then_some(e)
        },
    );
    assert_eq!(
        self_value(&expo, "probe_restarts_total", "probe=\"crasher\""),
        Some(3.0)
    );
    assert_eq!(
        self_value(&expo, "probe_restarts_total", "probe=\"hanger\""),
        Some(3.0)
    );
    assert_eq!(
        self_value(&expo, "probe_restarts_total", "probe=\"future_abi\""),
        Some(0.0)
    );
    let log = agent.log_text();
    assert!(
        log.contains("rebuild the probe against"),
        "ABI refusal not logged clearly:\n{log}"
    );
    assert!(log.contains("hung"), "hang not logged:\n{log}");

    // The daemon and the healthy probes carry on.
    for p in ["legacy_v1", "new_abi", "system_cpu", "legacy_v0"] {
        assert_eq!(
            self_value(
                &expo,
                "probe_state",
                &format!("probe=\"{p}\",state=\"running\"")
            ),
            Some(1.0),
            "{p}"
        );
    }
    let before = self_value(&expo, "records_accepted_total", "probe=\"system_cpu\"").unwrap();
    wait_for(
        Duration::from_secs(10),
        "system_cpu to keep reporting",
        || {
            (self_value(
                &agent.scrape(),
                "records_accepted_total",
                "probe=\"system_cpu\"",
            )
            .unwrap()
                > before)
                .then_some(())
        },
    );
}

#[test]
fn an_abi_mismatch_is_a_clear_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let future = build_so("future_abi", None, dir.path());
    let out = Command::new(harness::bin())
        .args(["probe-host", "--name", "future_abi", "--library"])
        .arg(&future)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "refusal exit code");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gopher ABI 2.0")
            && err.contains("provides 1.0")
            && err.contains("future_abi.so"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing was run");
}

#[test]
fn a_library_without_an_entry_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // legacy_v0.c built without the -Dmain rename exports `main`, not
    // `probe_main_legacy_v0`.
    let so = build_so("legacy_v0", None, dir.path());
    let out = Command::new(harness::bin())
        .args(["probe-host", "--name", "legacy_v0", "--library"])
        .arg(&so)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gopher_probe_descriptor") && err.contains("probe_main_legacy_v0"),
        "{err}"
    );
}
