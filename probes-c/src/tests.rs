//! Tests of the built-in C probes. A probe's entry writes its records to fd
//! 1, so each run happens in a child process: this test binary started
//! again with `CHILD_ENV` set, running only [`child_entry`], with stdout
//! captured.

use std::ffi::{c_char, CStr};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gopher::{probe_params, GOPHER_ABI_VERSION};

use super::*;

const CHILD_ENV: &str = "GOPHER_PROBES_C_TEST_CHILD";

fn fixture_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/proc")
}

/// In a child started by [`run_entry`]: runs one probe's entry once and
/// exits with 0 if it returned 0, 10 otherwise. Elsewhere: does nothing.
#[test]
fn child_entry() {
    let Ok(name) = std::env::var(CHILD_ENV) else {
        return;
    };
    let probe = builtin(&name).expect("known probe");
    // SAFETY: descriptors of built-in probes point to static strings.
    let info = unsafe { (probe.desc)().validate() }.expect("valid descriptor");
    let params = probe_params::default();
    // Nothing of the harness may sit in a buffer in front of the records.
    let _ = std::io::stdout().flush();
    // SAFETY: a valid entry called with valid params, as the host does.
    let rc = unsafe { (info.entry)(&params) };
    std::process::exit(if rc == 0 { 0 } else { 10 });
}

#[derive(Debug)]
struct Run {
    records: Vec<String>,
    stderr: String,
    ok: bool,
}

/// Runs the entry of probe `name` once in a child process with the proc
/// root `root`.
fn run_entry(name: &str, root: &Path) -> Run {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--exact", "tests::child_entry", "--test-threads=1", "-q"])
        .env(CHILD_ENV, name)
        .env(GOPHER_PROC_ROOT_ENV, root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the test binary");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("probe {name} hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out_reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    Run {
        records: stdout
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(str::to_string)
            .collect(),
        stderr,
        ok: status.success(),
    }
}

/// The line for a record of `table` whose first values are `values`,
/// padded with nulls to `n` values.
fn rec(table: &str, values: &[&str], n: usize) -> String {
    let mut v: Vec<&str> = values.to_vec();
    v.resize(n, "");
    format!("|{table}|{}|", v.join("|"))
}

fn c_fields(f: unsafe extern "C" fn() -> *const *const c_char) -> Vec<String> {
    // SAFETY: the C function returns a static NULL-terminated array of
    // static strings.
    unsafe {
        let mut p = f();
        let mut out = Vec::new();
        while !(*p).is_null() {
            out.push(CStr::from_ptr(*p).to_string_lossy().into_owned());
            p = p.add(1);
        }
        out
    }
}

fn cpu_fields() -> Vec<String> {
    c_fields(c::gopher_probe_system_cpu_fields)
}

fn net_fields() -> Vec<String> {
    c_fields(c::gopher_probe_system_net_fields)
}

/// `(name, type)` of each field of a `.meta` file, in order: a small scan
/// for `name: "..."` and `type: "..."` with `name` a whole word (so
/// `table_name:` and `entity_name:` do not count).
fn meta_fields(meta: &str) -> Vec<(String, String)> {
    fn quoted_after(text: &str, key: &str) -> Vec<String> {
        let pat = format!("{key}:");
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(off) = text.get(from..).and_then(|t| t.find(&pat)) {
            let at = from + off;
            from = at + pat.len();
            let prev = text.get(..at).and_then(|t| t.chars().next_back());
            if prev.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = text.get(from..).unwrap_or_default().trim_start();
            if let Some(rest) = rest.strip_prefix('"') {
                let end = rest.find('"').expect("closing quote");
                out.push(rest.get(..end).unwrap_or_default().to_string());
            }
        }
        out
    }
    let names = quoted_after(meta, "name");
    let types = quoted_after(meta, "type");
    assert_eq!(
        names.len(),
        types.len(),
        "every field has a name and a type"
    );
    names.into_iter().zip(types).collect()
}

fn meta_of(probe: &str) -> &'static str {
    match probe {
        "system_cpu" => include_str!("../../meta/system_cpu.meta"),
        "system_net" => include_str!("../../meta/system_net.meta"),
        other => panic!("no meta for {other}"),
    }
}

#[test]
fn every_builtin_has_a_valid_descriptor_and_meta() {
    for probe in BUILTIN {
        let desc = (probe.desc)();
        assert_eq!(desc.abi_version, GOPHER_ABI_VERSION, "{}", probe.name);
        // SAFETY: built-in descriptors point to static strings.
        let info = unsafe { desc.validate() }.expect("valid descriptor");
        assert_eq!(info.name, probe.name);
        assert_eq!(info.period_secs, 5);
        assert_eq!(builtin(probe.name).map(|p| p.name), Some(probe.name));
        let meta = meta_of(probe.name);
        for table in probe.tables {
            assert!(
                meta.contains(&format!("table_name: \"{table}\"")),
                "{table} in meta"
            );
        }
    }
    assert!(builtin("nope").is_none());
}

#[test]
fn meta_fields_are_the_printed_fields() {
    for (probe, fields) in [("system_cpu", cpu_fields()), ("system_net", net_fields())] {
        let meta = meta_fields(meta_of(probe));
        let names: Vec<&str> = meta.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, fields, "{probe}: meta field order = C field order");
        assert_eq!(meta.first().map(|(_, t)| t.as_str()), Some("key"));
        assert!(
            meta.iter()
                .skip(1)
                .all(|(_, t)| t == "counter" || t == "gauge"),
            "{probe}: {meta:?}"
        );
    }
}

#[test]
fn system_cpu_records_from_fixture() {
    let run = run_entry("system_cpu", &fixture_root());
    assert!(run.ok, "{run:?}");
    let n = cpu_fields().len();
    assert_eq!(n, 15);
    let want = [
        rec(
            "system_cpu",
            &[
                "cpu0", "21370", "264", "7766", "1358234", "775", "0", "1062", "3", "0", "0",
            ],
            n,
        ),
        rec(
            "system_cpu",
            &[
                "cpu1", "21006", "252", "7480", "1359563", "780", "0", "216", "5", "0", "0",
            ],
            n,
        ),
        rec(
            "system_cpu",
            &[
                "cpu2", "21204", "263", "7502", "1359107", "787", "0", "159", "0", "0", "0",
            ],
            n,
        ),
        rec(
            "system_cpu",
            &[
                "cpu3", "21155", "263", "7470", "1359223", "762", "0", "132", "2", "0", "0",
            ],
            n,
        ),
        rec(
            "system_cpu",
            &[
                "cpu", "84735", "1042", "30218", "5436127", "3104", "0", "1569", "10", "0", "0",
                "5436590", "45872", "2", "1",
            ],
            n,
        ),
    ];
    assert_eq!(run.records, want);
    assert_eq!(
        run.stderr.matches('[').count(),
        0,
        "no log lines: {}",
        run.stderr
    );
}

#[test]
fn system_net_records_from_fixture() {
    let run = run_entry("system_net", &fixture_root());
    assert!(run.ok, "{run:?}");
    let n = net_fields().len();
    assert_eq!(n, 17);
    let want = [
        rec(
            "system_net",
            &[
                "lo",
                "289570600",
                "91084",
                "0",
                "0",
                "0",
                "0",
                "0",
                "0",
                "289570600",
                "91084",
                "0",
                "0",
                "0",
                "0",
                "0",
                "0",
            ],
            n,
        ),
        rec(
            "system_net",
            &[
                "eth0",
                "271798444",
                "11938",
                "2",
                "5",
                "0",
                "0",
                "0",
                "17",
                "664709",
                "5898",
                "0",
                "1",
                "0",
                "0",
                "0",
                "0",
            ],
            n,
        ),
        rec(
            "system_net",
            &[
                "docker0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0",
                "0", "0",
            ],
            n,
        ),
        rec(
            "system_net",
            &[
                "vethb2c4e6f",
                "1234567890123",
                "9876543",
                "0",
                "0",
                "0",
                "0",
                "0",
                "0",
                "98765432101",
                "123456",
                "0",
                "0",
                "0",
                "0",
                "0",
                "0",
            ],
            n,
        ),
    ];
    assert_eq!(run.records, want);
}

fn temp_root(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (rel, text) in files {
        let path = dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write fixture");
    }
    dir
}

#[test]
fn system_cpu_odd_input() {
    let n = 15;
    // An old kernel with four columns, a malformed name, a non-number, a
    // line without a newline at the end.
    let root = temp_root(&[(
        "stat",
        "cpu  5 x 7 8\ncpuX 1 2 3\ncpu0 1 2 3 4\nnot a line\nprocs_running abc\nprocs_blocked 3",
    )]);
    let run = run_entry("system_cpu", root.path());
    assert!(run.ok, "{run:?}");
    assert_eq!(
        run.records,
        [
            rec("system_cpu", &["cpu0", "1", "2", "3", "4"], n),
            rec(
                "system_cpu",
                &["cpu", "5", "", "7", "8", "", "", "", "", "", "", "", "", "", "3"],
                n
            ),
        ]
    );

    // No aggregate line: a failed collection, logged.
    let root = temp_root(&[("stat", "cpu0 1 2 3 4\n")]);
    let run = run_entry("system_cpu", root.path());
    assert!(!run.ok);
    assert!(
        run.stderr.contains("[error] system_cpu: no aggregate"),
        "{}",
        run.stderr
    );

    // A missing file.
    let root = temp_root(&[]);
    let run = run_entry("system_cpu", root.path());
    assert!(!run.ok);
    assert!(run.records.is_empty());
    assert!(
        run.stderr.contains("[error] system_cpu: cannot open"),
        "{}",
        run.stderr
    );
}

#[test]
fn system_net_odd_input() {
    let n = 17;
    let long_line = format!("{}: 1 2\n", "x".repeat(2000));
    let text = format!(
        "Inter-| header\n face |bytes\n  we|rd: 1 2 3\n{long_line}  eth1: 7 8\n  : 1 2\nnot a line\n"
    );
    let root = temp_root(&[("net/dev", &text)]);
    let run = run_entry("system_net", root.path());
    assert!(run.ok, "{run:?}");
    // The interface with '|' is skipped (logged at debug), the over-long
    // line and the nameless one are ignored, missing columns are null.
    assert_eq!(run.records, [rec("system_net", &["eth1", "7", "8"], n)]);
    assert!(
        run.stderr.contains("[debug] system_net: interface skipped"),
        "{}",
        run.stderr
    );

    let root = temp_root(&[]);
    let run = run_entry("system_net", root.path());
    assert!(!run.ok);
    assert!(
        run.stderr.contains("[error] system_net: cannot open"),
        "{}",
        run.stderr
    );
}
