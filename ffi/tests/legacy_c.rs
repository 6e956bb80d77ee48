//! The legacy 1.x headers of `include/legacy/` seen from C.
//!
//! - `legacy_helpers.c` checks return values and edge cases of the helpers
//!   and is run plain and under AddressSanitizer/UBSan, linked with the
//!   staticlib; its records and log lines are compared here.
//! - Every function the legacy headers declare must link against
//!   `libgopher.so` (the names are read from the headers, so a new
//!   declaration without a definition fails this test).
//! - The headers compile on their own in strict C and as C++, and add
//!   nothing to `gopher.h`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{built_lib, gcc, include_dir, manifest_dir};

const HEADERS: [&str; 4] = ["common.h", "event.h", "whitelist_config.h", "object.h"];

fn legacy_dir() -> PathBuf {
    include_dir().join("legacy")
}

fn run_helpers(sanitized: bool) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dir.path().join("legacy_helpers");
    let src = manifest_dir().join("tests/c/legacy_helpers.c");
    let (inc, leg, c_dir, lib) = (
        include_dir(),
        legacy_dir(),
        manifest_dir().join("tests/c"),
        built_lib("libgopher.a"),
    );
    let mut args: Vec<&std::ffi::OsStr> = ["-std=gnu11", "-Wall", "-Wextra", "-Werror"]
        .iter()
        .map(|s| s.as_ref())
        .collect();
    if sanitized {
        args.extend(
            [
                "-O1",
                "-g",
                "-fsanitize=address,undefined",
                "-fno-sanitize-recover=all",
                "-fno-omit-frame-pointer",
            ]
            .iter()
            .map(std::ffi::OsStr::new),
        );
    } else {
        args.push("-O2".as_ref());
    }
    args.extend([
        "-I".as_ref(),
        inc.as_os_str(),
        "-I".as_ref(),
        leg.as_os_str(),
        "-I".as_ref(),
        c_dir.as_os_str(),
        src.as_os_str(),
        lib.as_os_str(),
        "-lpthread".as_ref(),
        "-ldl".as_ref(),
        "-lm".as_ref(),
        "-o".as_ref(),
        exe.as_os_str(),
    ]);
    gcc(&args);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("scratch dir");
    let out = Command::new(&exe)
        .arg(&scratch)
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=86",
        )
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        .output()
        .expect("run legacy_helpers");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "legacy_helpers failed ({}):\n{stderr}",
        out.status
    );
    for bad in ["AddressSanitizer", "LeakSanitizer", "runtime error:"] {
        assert!(!stderr.contains(bad), "{bad}:\n{stderr}");
    }
    out
}

fn check_helpers_output(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    let events: Vec<Vec<&str>> = lines
        .iter()
        .filter(|l| l.starts_with("|event|"))
        .map(|l| l.trim_matches('|').split('|').collect())
        .collect();
    // Every event line: the table, then 12 values.
    for e in &events {
        assert_eq!(e.len(), 13, "{e:?}");
    }
    let got: Vec<(&str, &str, &str, &str, &str)> = events
        .iter()
        .map(|e| (e[1], e[2], e[3], e[10], e[11]))
        .collect();
    assert_eq!(
        got,
        [
            ("disk", "sda", "util", "WARN", "13"),
            ("disk", "sdb", "util", "FATAL", "21"),
            ("proc", "", "", "INFO", "9"),
            ("net", "eth0", "drops", "ERROR", "17"),
            ("net", "eth1", "drops", "ERROR", "17"),
            ("net", "eth0", "drops", "ERROR", "17"),
        ],
        "{stdout}"
    );
    // pid, comm, ip, container_id, pod_id, dev are null.
    assert!(events.iter().all(|e| e[4..10].iter().all(|v| v.is_empty())));
    // The body: "<Www Mmm dd hh:mm:ss yyyy> <LEVEL> Entity(<id>) <text>",
    // with `|` and newlines made spaces.
    let body = |i: usize| events[i][12];
    assert!(
        body(0).ends_with(" WARN Entity(sda) util 97% on sda"),
        "{}",
        body(0)
    );
    // asctime's "Fri Nov 27 17:15:45 2026": five words, the year last.
    let words: Vec<&str> = body(0).split(' ').filter(|w| !w.is_empty()).collect();
    assert_eq!(words.len(), 5 + 6, "{}", body(0));
    assert!(
        words[3].len() == 8 && words[3].matches(':').count() == 2,
        "{}",
        body(0)
    );
    assert!(
        words[4].len() == 4 && words[4].parse::<u32>().is_ok(),
        "{}",
        body(0)
    );
    assert!(body(1).ends_with(" FATAL Entity(sdb) a b c"), "{}", body(1));
    assert!(body(2).ends_with(" INFO Entity() no id"), "{}", body(2));
    assert!(body(3).ends_with("first") && body(4).ends_with("other") && body(5).ends_with("third"));
    // Order with the records around them is kept.
    let pos = |l: &str| {
        lines
            .iter()
            .position(|x| *x == l)
            .unwrap_or_else(|| panic!("no {l} in\n{stdout}"))
    };
    assert!(pos("|mark|before_events|") < pos("|mark|after_events|"));
    assert_eq!(lines.last(), Some(&"|done|legacy|"));

    for want in [
        "[debug] dbg 1\n",
        "[info] info two\n",
        "[warn] warn 3\n",
        "[error] error 4.0\n",
        "[error] report_logs: no entity name (metric `m`): event dropped\n",
        "[error] report_logs: unknown level 9 (EVT_SEC_INFO..EVT_SEC_FATAL): event of entity disk dropped\n",
        "[warn] init_event_mgr: event texts in language `zh_CN` are not supported",
        "/missing.conf: cannot read",
        "/bad.conf:3: expected `)` closing a list, found the end of the file",
        "/nocmd.conf:1: expected a string `cmdline` in this application entry",
        "[error] parse_whitelist_config: conf is NULL\n",
        "[error] parse_whitelist_config: path is NULL\n",
    ] {
        assert!(stderr.contains(want), "stderr lacks {want:?}:\n{stderr}");
    }
    // Once-only notes.
    assert_eq!(
        stderr
            .matches("object.h: processes, cgroups and namespaces")
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("init_event_mgr: event texts").count(),
        1,
        "{stderr}"
    );
    // No command's complaint about a closed pipe (exec_cmd reads it all).
    assert!(
        !stderr.contains("Broken pipe") && !stderr.contains("I/O error"),
        "{stderr}"
    );
}

#[test]
fn legacy_helpers_keep_their_1x_results() {
    check_helpers_output(&run_helpers(false));
}

#[test]
fn legacy_helpers_are_clean_under_sanitizers() {
    check_helpers_output(&run_helpers(true));
}

/// The functions a header declares: the identifier before `(` on each
/// declaration line (not a macro, typedef, struct member or comment).
fn declared_functions(header: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(header).unwrap_or_else(|e| panic!("{}: {e}", header.display()));
    let mut names = Vec::new();
    let mut in_comment = false;
    for line in text.lines() {
        let t = line.trim_start();
        if in_comment {
            in_comment = !line.contains("*/");
            continue;
        }
        if t.starts_with("/*") {
            in_comment = !line.contains("*/");
            continue;
        }
        let skip = t.is_empty()
            || line.starts_with(char::is_whitespace)
            || ["#", "//", "typedef", "struct", "enum", "extern", "}", "{"]
                .iter()
                .any(|p| t.starts_with(p));
        if skip {
            continue;
        }
        let Some(open) = t.find('(') else { continue };
        let name: String = t[..open]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if !name.is_empty() {
            names.push(name);
        }
    }
    names
}

#[test]
fn every_declared_legacy_function_links_against_libgopher_so() {
    let mut names = Vec::new();
    for h in HEADERS {
        names.extend(declared_functions(&legacy_dir().join(h)));
    }
    names.sort();
    names.dedup();
    // The parse above found them all (count them when adding one).
    assert_eq!(names.len(), 37, "declared: {names:?}");
    for want in [
        "debug_logs",
        "exec_cmd",
        "__snprintf",
        "report_logs",
        "parse_whitelist_config",
        "proc_add",
        "obj_module_exit",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} not found in {names:?}"
        );
    }
    // ntohs is libc's; the header only declares it when no macro exists.
    let mut src = String::from(
        "#include <stdio.h>\n#include \"common.h\"\n#include \"event.h\"\n\
         #include \"whitelist_config.h\"\n#include \"object.h\"\n\
         typedef void (*fn_t)(void);\nint main(void)\n{\n    fn_t all[] = {\n",
    );
    for n in &names {
        src.push_str(&format!("        (fn_t){n},\n"));
    }
    src.push_str(
        "    };\n    unsigned i;\n    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {\n\
         \x20       if (all[i] == NULL) {\n            return 1;\n        }\n    }\n\
         \x20   printf(\"%u\\n\", i);\n    return 0;\n}\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let c = dir.path().join("links.c");
    std::fs::write(&c, &src).expect("write links.c");
    let exe = dir.path().join("links");
    let so_dir = built_lib("libgopher.so")
        .parent()
        .expect("lib dir")
        .to_path_buf();
    let rpath = format!("-Wl,-rpath,{}", so_dir.display());
    let leg = legacy_dir();
    let inc = include_dir();
    gcc(&[
        "-Wall".as_ref(),
        "-Wextra".as_ref(),
        "-Werror".as_ref(),
        "-Wno-cast-function-type".as_ref(),
        "-I".as_ref(),
        inc.as_os_str(),
        "-I".as_ref(),
        leg.as_os_str(),
        c.as_os_str(),
        "-L".as_ref(),
        so_dir.as_os_str(),
        "-lgopher".as_ref(),
        rpath.as_ref(),
        "-o".as_ref(),
        exe.as_os_str(),
    ]);
    let out = Command::new(&exe)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run links");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        names.len().to_string()
    );
    // And each is a dynamic symbol of libgopher.so itself (not libc's).
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(built_lib("libgopher.so"))
        .output()
        .expect("nm runs (binutils)");
    let syms = String::from_utf8_lossy(&nm.stdout);
    let defined: Vec<&str> = syms
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    for n in names.iter().filter(|n| *n != "ntohs") {
        assert!(
            defined.contains(&n.as_str()),
            "libgopher.so does not export {n}"
        );
    }
}

#[test]
fn legacy_headers_compile_alone_and_stay_out_of_gopher_h() {
    for h in HEADERS {
        let path = legacy_dir().join(h);
        let leg = legacy_dir();
        for std in ["-std=c99", "-std=c11"] {
            gcc(&[
                std.as_ref(),
                "-pedantic".as_ref(),
                "-Wall".as_ref(),
                "-Wextra".as_ref(),
                "-Werror".as_ref(),
                "-fsyntax-only".as_ref(),
                "-I".as_ref(),
                leg.as_os_str(),
                "-x".as_ref(),
                "c".as_ref(),
                path.as_os_str(),
            ]);
        }
        if let Ok(out) = Command::new("g++")
            .args(["-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I"])
            .arg(&leg)
            .args(["-x", "c++"])
            .arg(&path)
            .output()
        {
            assert!(
                out.status.success(),
                "{h} as C++:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let gopher_h = std::fs::read_to_string(include_dir().join("gopher.h")).expect("gopher.h");
    for h in HEADERS {
        for name in declared_functions(&legacy_dir().join(h)) {
            assert!(
                !gopher_h.contains(&format!(" {name}(")),
                "gopher.h declares the legacy {name}"
            );
        }
    }
    for name in ["gopher_legacy_event_emit", "ApplicationsConfig", "proc_s"] {
        assert!(!gopher_h.contains(name), "gopher.h mentions {name}");
    }
}
