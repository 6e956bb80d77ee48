//! The C API seen from C: the programs in `ffi/tests/c/` are compiled with
//! `gcc -Wall -Wextra -Werror` against `include/` and linked with the
//! staticlib `libgopher.a`, run, and their stdout (records only) compared
//! line by line. Then all of them again under AddressSanitizer and UBSan.
//!
//! The staticlib is the one cargo built for this test run, found next to the
//! test binary (`<target>/<profile>/deps/libgopher.a`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

mod common;
use common::{built_lib, gcc, include_dir, manifest_dir};

fn c_dir() -> PathBuf {
    manifest_dir().join("tests/c")
}

fn staticlib() -> PathBuf {
    built_lib("libgopher.a")
}

fn out_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Plain,
    Sanitized,
}

impl Mode {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Mode::Plain => &["-O2"],
            Mode::Sanitized => &[
                "-O1",
                "-g",
                "-fsanitize=address,undefined",
                "-fno-sanitize-recover=all",
                "-fno-omit-frame-pointer",
            ],
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Mode::Plain => "",
            Mode::Sanitized => "-asan",
        }
    }
}

const WARNINGS: &[&str] = &["-std=gnu11", "-Wall", "-Wextra", "-Werror"];

/// Compiles `sources` (relative to tests/c) into one program linked with
/// libgopher.a. `objects` are extra object files.
fn build(name: &str, sources: &[&str], objects: &[PathBuf], mode: Mode) -> PathBuf {
    let exe = out_dir().join(format!("{name}{}", mode.suffix()));
    let include = include_dir();
    let lib = staticlib();
    let mut args: Vec<std::ffi::OsString> = WARNINGS.iter().map(Into::into).collect();
    args.extend(mode.flags().iter().map(Into::into));
    args.push("-I".into());
    args.push(include.into());
    args.push("-I".into());
    args.push(c_dir().into());
    for s in sources {
        args.push(c_dir().join(s).into());
    }
    args.extend(objects.iter().map(|o| o.clone().into_os_string()));
    args.push(lib.into());
    for l in ["-lpthread", "-ldl", "-lm", "-o"] {
        args.push(l.into());
    }
    args.push(exe.clone().into());
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    gcc(&refs);
    exe
}

/// Runs a test program; it must exit 0 with no sanitizer report.
fn run(exe: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(exe);
    cmd.env_remove("GOPHER_PROBE_PARAM")
        // LeakSanitizer works here (no ptrace restriction seen); keep it on.
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=86",
        )
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run test program");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stderr}",
        exe.display(),
        out.status
    );
    for bad in ["AddressSanitizer", "LeakSanitizer", "runtime error:"] {
        assert!(!stderr.contains(bad), "{}: {bad}:\n{stderr}", exe.display());
    }
    out
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn for_each_mode(f: impl Fn(Mode)) {
    f(Mode::Plain);
    f(Mode::Sanitized);
}

#[test]
fn layout_matches_the_legacy_struct() {
    for_each_mode(|mode| {
        // The _Static_asserts are checked at compile time, in strict C11 too.
        let exe = build("layout", &["layout.c"], &[], mode);
        assert_eq!(stdout_lines(&run(&exe, &[])), ["|layout|ok|"]);
    });
}

#[test]
fn headers_compile_standalone_in_strict_c_and_cxx() {
    for header in ["gopher.h", "args.h", "nprobe_fprintf.h"] {
        let path = include_dir().join(header);
        for std in ["-std=c99", "-std=c11"] {
            gcc(&[
                std.as_ref(),
                "-pedantic".as_ref(),
                "-Wall".as_ref(),
                "-Wextra".as_ref(),
                "-Werror".as_ref(),
                "-fsyntax-only".as_ref(),
                "-x".as_ref(),
                "c".as_ref(),
                path.as_os_str(),
            ]);
        }
        let gxx = Command::new("g++")
            .args(["-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-x", "c++"])
            .arg(&path)
            .output();
        // g++ is optional on a build machine; when present, the header must
        // be valid C++ (cbindgen's cpp_compat).
        if let Ok(out) = gxx {
            assert!(
                out.status.success(),
                "{header} as C++:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn records_logs_and_refusals() {
    for_each_mode(|mode| {
        let exe = build("records", &["records.c"], &[], mode);
        let out = run(&exe, &[]);
        assert_eq!(
            stdout_lines(&out),
            [
                "|system_cpu|cpu0|1|||4|",
                "|demo|k|42|1.5|",
                "|multi|1|",
                "|multi|2|",
                "|multi|3|",
                "|line|x|",
                "|line|y|",
                "|empty|",
                "|ok|1|",
                "|done|records|",
            ],
            "{mode:?}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        for want in [
            "[debug] hello debug\n",
            "plain 7\n",
            "[warn] multi line\n",
            "[error] it broke\n",
            "[error] nprobe_fprintf: output longer than 8193 bytes dropped\n",
            "[warn] nprobe_fprintf: record refused: invalid value",
        ] {
            assert!(
                stderr.contains(want),
                "{mode:?}: stderr lacks {want:?}:\n{stderr}"
            );
        }
    });
}

#[test]
fn params_come_from_the_environment() {
    for_each_mode(|mode| {
        let exe = build("params", &["params.c"], &[], mode);
        let got = |env: &[(&str, &str)]| stdout_lines(&run(&exe, env));
        assert_eq!(got(&[]), ["|params|5|100||4294967295|0||"]);
        assert_eq!(
            got(&[("GOPHER_PROBE_PARAM", "-t 7 -d eth0")]),
            ["|params|7|100|eth0|4294967295|0||"]
        );
        assert_eq!(
            got(&[("GOPHER_PROBE_PARAM", "-F task -m nginx -P 3")]),
            ["|params|5|100||3|1|nginx|"]
        );
        // GOPHER_ERR_INVALID_VALUE (3), and the reason in the log.
        let out = run(&exe, &[("GOPHER_PROBE_PARAM", "-x 1")]);
        assert_eq!(stdout_lines(&out), ["|params|error|3|"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("[warn] GOPHER_PROBE_PARAM=`-x 1`: unknown option `-x`"),
            "{stderr}"
        );
    });
}

#[test]
fn concurrent_threads_never_interleave() {
    for_each_mode(|mode| {
        let exe = build("threads", &["threads.c"], &[], mode);
        let lines = stdout_lines(&run(&exe, &[]));
        assert_eq!(lines.len(), 4 * 500, "{mode:?}");
        let mut seen = BTreeSet::new();
        for line in &lines {
            let parts: Vec<&str> = line.split('|').collect();
            assert_eq!(parts.len(), 6, "torn line {line:?}");
            assert_eq!(parts.get(1), Some(&"threads"), "{line:?}");
            assert_eq!(parts.get(4), Some(&"0123456789abcdefghijklmnopqrstuvwxyz"));
            assert!(
                seen.insert((parts[2].to_string(), parts[3].to_string())),
                "dup {line:?}"
            );
        }
    });
}

#[test]
fn legacy_v1_probe_compiles_unchanged() {
    for_each_mode(|mode| {
        // The probe source is compiled on its own with `main` renamed by a
        // define, as the build of legacy probes does, then linked with a
        // driver that calls it like the probe host.
        let obj = out_dir().join(format!("v1_probe{}.o", mode.suffix()));
        let include = include_dir();
        let src = c_dir().join("legacy/v1_probe.c");
        let mut args: Vec<&std::ffi::OsStr> = WARNINGS.iter().map(|s| s.as_ref()).collect();
        args.extend(mode.flags().iter().map(std::ffi::OsStr::new));
        args.extend([
            "-Dmain=probe_main_v1_demo".as_ref(),
            "-I".as_ref(),
            include.as_os_str(),
            "-c".as_ref(),
            src.as_os_str(),
            "-o".as_ref(),
            obj.as_os_str(),
        ]);
        gcc(&args);
        let exe = build("v1_demo", &["legacy/v1_driver.c"], &[obj], mode);
        let out = run(&exe, &[("GOPHER_PROBE_PARAM", "-d eth1 -t 3")]);
        assert_eq!(
            stdout_lines(&out),
            ["|v1_demo|eth1|3|1|", "|v1_demo|eth1|3|2|"]
        );
    });
}

#[test]
fn out_of_tree_probe_uses_libgopher_so() {
    // The documented command line for an out-of-tree probe, plus -Werror.
    let so_dir = built_lib("libgopher.so")
        .parent()
        .expect("lib dir")
        .to_path_buf();
    let probe = out_dir().join("oot_probe.so");
    let include = include_dir();
    let src = c_dir().join("oot/probe.c");
    let rpath = format!("-Wl,-rpath,{}", so_dir.display());
    gcc(&[
        "-shared".as_ref(),
        "-fPIC".as_ref(),
        "-Wall".as_ref(),
        "-Wextra".as_ref(),
        "-Werror".as_ref(),
        "-I".as_ref(),
        include.as_os_str(),
        src.as_os_str(),
        "-L".as_ref(),
        so_dir.as_os_str(),
        "-lgopher".as_ref(),
        rpath.as_ref(),
        "-o".as_ref(),
        probe.as_os_str(),
    ]);
    let host = build("oot_host", &["oot/host.c"], &[], Mode::Plain);
    let mut cmd = Command::new(&host);
    cmd.arg(&probe)
        .env("GOPHER_PROBE_PARAM", "-d eth9")
        .env_remove("LD_PRELOAD");
    let out = cmd.output().expect("run host");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout_lines(&out),
        [
            "|oot_demo|oot|eth9||",
            "|oot_printf|k|-7|2.50|1234567890123|z|0.5|42|1.000e+10|",
            "|host|done|",
        ]
    );
}
