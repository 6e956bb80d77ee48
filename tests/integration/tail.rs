//! tail.conf builds (issue 12): a legacy tail.conf names what to leave out
//! of a build, scripts/tail-features.sh turns it into gala-gopher's cargo
//! features, and the build holds only what is left.
//!
//! One trimmed agent is built, from a tail.conf that leaves out the eBPF
//! probe tcp_link and Kafka, with `cargo build -p gala-gopher` and the
//! script's arguments, in a target directory of its own (`target/tail-test`,
//! so the main build is not disturbed). It is a debug build of the agent and
//! its whole dependency tree the first time: 31 s on an idle 2-core VM,
//! 103 s beside other builds; later runs only check that it is up to date
//! (under a second). Against the full debug binary of `make test`
//! (`target/debug/gala-gopher`) the tests check that the probe's code, its
//! eBPF object, libbpf and the Kafka exporter are absent and the binary
//! smaller (librdkafka and OpenSSL are in neither: they are in
//! libgopher_kafka.so), and that a config asking for what the build left out
//! gets errors naming the build option, with file and line, apart from an
//! unknown probe name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::{self, free_port, http_get, wait_for};

/// The tail.conf of the trimmed build, as the legacy build wrote them (its
/// example probe and NULL placeholder included).
const TAIL_CONF: &str = "# leave out the eBPF probes and Kafka\n\
                         PROBES=\"example.probe|src/probes/tcp_link.probe|nginx_link|haproxy_link|ipvs_link|dnsmasq_link\"\n\
                         EXTEND_PROBES=\"NULL\"\n\
                         FEATURES=\"kafka\"\n";

/// What TAIL_CONF leaves in: every probe but the eBPF ones, no kafka.
const KEPT: &str = "probe-system_meminfo,probe-system_vmstat,probe-system_inode,probe-system_tcp,\
                    probe-system_cpu,probe-system_net";

fn script() -> PathBuf {
    harness::repo().join("scripts/tail-features.sh")
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `scripts/tail-features.sh <args>` on a tail.conf of `content`.
fn tail_features(dir: &Path, content: &str, args: &[&str]) -> Output {
    let conf = dir.join("tail.conf");
    std::fs::write(&conf, content).expect("write tail.conf");
    run(Command::new(script()).args(args).arg(&conf))
}

#[test]
fn tail_conf_names_what_to_leave_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = "kafka,probe-system_meminfo,probe-system_vmstat,probe-system_inode,probe-system_tcp,\
               probe-tcp_link,probe-nginx_link,probe-haproxy_link,probe-ipvs_link,probe-dnsmasq_link,\
               probe-system_cpu,probe-system_net";

    // The sample leaves everything in.
    let o = run(Command::new(script()).arg(harness::repo().join("config/tail.conf")));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout).trim(),
        format!("--no-default-features --features {all}")
    );

    // The legacy forms: a directory and .probe, NULL, the example probe,
    // spaces, `export`, the eBPF probe under EXTEND_PROBES.
    let o = tail_features(dir.path(), TAIL_CONF, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout).trim(),
        format!("--no-default-features --features {KEPT}")
    );
    let o = tail_features(
        dir.path(),
        "export EXTEND_PROBES = \"tcp_link | system_net\"\nPROBES=\n",
        &["--list"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout).trim(),
        "kafka,probe-system_meminfo,probe-system_vmstat,probe-system_inode,probe-system_tcp,\
         probe-nginx_link,probe-haproxy_link,probe-ipvs_link,probe-dnsmasq_link,probe-system_cpu"
    );

    // Everything left out.
    let o = tail_features(
        dir.path(),
        "PROBES=\"system_meminfo|system_vmstat|system_inode|system_tcp|tcp_link|nginx_link|haproxy_link|\
         ipvs_link|dnsmasq_link|system_cpu|system_net\"\n\
         FEATURES=\"kafka\"\n",
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "--no-default-features");

    // Unknown names and settings: every one named, with its line; nothing
    // on stdout (so `make build TAIL=` stops).
    let o = tail_features(
        dir.path(),
        "PROBES=\"tcpprobe|tcp_link\"\nFEATURES=\"kafka|ssl\"\nTAILOR=\"x\"\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    assert!(o.stdout.is_empty());
    let err = text(&o.stderr);
    for want in [
        "tail.conf:1: PROBES: unknown probe `tcpprobe` (built-in probes: system_meminfo",
        "tail.conf:2: FEATURES: unknown feature `ssl` (known: kafka)",
        "tail.conf:3: unknown setting `TAILOR`",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }

    // `--config`: the probes left out are switched off in a config, the
    // others untouched (the rpm ships the default config so).
    let o = run(Command::new(script())
        .args(["--config", KEPT])
        .arg(harness::repo().join("config/gala-gopher.toml")));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cfg = text(&o.stdout);
    let switch_of = |probe: &str| -> String {
        let entry = cfg
            .split("[[probes]]")
            .find(|e| e.contains(&format!("name = \"{probe}\"")))
            .unwrap_or_else(|| panic!("no entry of {probe}"));
        let line = entry.lines().find(|l| l.starts_with("switch")).unwrap();
        line.to_string()
    };
    for p in [
        "tcp_link",
        "nginx_link",
        "haproxy_link",
        "ipvs_link",
        "dnsmasq_link",
    ] {
        assert!(switch_of(p).starts_with("switch = \"off\""), "{p}");
    }
    assert_eq!(switch_of("system_meminfo"), "switch = \"on\"");
}

/// The trimmed agent, built once for the tests of this file.
fn trimmed() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = harness::repo().join("target/tail-test");
        std::fs::create_dir_all(&target).expect("mkdir target/tail-test");
        let o = tail_features(&target, TAIL_CONF, &[]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let args = text(&o.stdout);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let t0 = Instant::now();
        let o = run(Command::new(cargo)
            .current_dir(harness::repo())
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "-p", "gala-gopher"])
            .args(args.split_whitespace()));
        assert!(
            o.status.success(),
            "the trimmed build failed:\n{}",
            text(&o.stderr)
        );
        eprintln!(
            "tail: trimmed debug build ({}) in {:.0?}",
            args.trim(),
            t0.elapsed()
        );
        target.join("debug/gala-gopher")
    })
}

/// Symbol lines of `nm` on `bin`.
fn symbols(bin: &Path) -> String {
    let o = run(Command::new("nm").arg(bin));
    assert!(
        o.status.success(),
        "nm {} (binutils is required): {}",
        bin.display(),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Whether the bytes of `bin` hold `s` (grep -a, to spare reading 100 MB here).
fn holds_bytes(bin: &Path, s: &str) -> bool {
    run(Command::new("grep").args(["-q", "-a", "-F", s]).arg(bin))
        .status
        .success()
}

/// The shared libraries `bin` needs (readelf -d).
fn needed(bin: &Path) -> String {
    let o = run(Command::new("readelf").arg("-d").arg(bin));
    assert!(o.status.success(), "readelf: {}", text(&o.stderr));
    text(&o.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn trimmed_build_holds_neither_the_probe_nor_its_ebpf_object_nor_librdkafka() {
    let full = harness::bin();
    let trimmed = trimmed();
    let (full_syms, trimmed_syms) = (symbols(&full), symbols(trimmed));
    let has = |syms: &str, name: &str| syms.lines().any(|l| l.contains(name));

    // (what, a symbol or byte string of it) present in the full build, so
    // that each absence below means something.
    let probe_code = "gopher_probes8tcp_link"; // the mangled path gopher_probes::tcp_link::
    let bpf_program = "tcp_link_state_btf"; // a program of the embedded BPF object
    for (what, sym) in [
        ("the tcp_link probe's code", probe_code),
        ("libbpf", "bpf_object__load"),
        ("the Kafka exporter", "KafkaExporter"),
    ] {
        assert!(has(&full_syms, sym), "the full build lacks {what} ({sym})");
        assert!(
            !has(&trimmed_syms, sym),
            "the trimmed build holds {what}: {}",
            trimmed_syms
                .lines()
                .filter(|l| l.contains(sym))
                .take(3)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    assert!(
        holds_bytes(&full, bpf_program),
        "no BPF object in the full build"
    );
    assert!(
        !holds_bytes(trimmed, bpf_program),
        "the trimmed build embeds the tcp_link BPF object"
    );
    // The probes left in are there.
    for sym in ["gopher_probes6procfs7meminfo", "gopher_probe_system_cpu"] {
        assert!(has(&trimmed_syms, sym), "the trimmed build lacks {sym}");
    }

    // librdkafka and its OpenSSL are in libgopher_kafka.so, loaded only when
    // a channel uses Kafka (issue 16): in neither binary.
    for (what, sym) in [
        ("librdkafka", "rd_kafka_new"),
        ("librdkafka's producer", "rd_kafka_producev"),
        ("OpenSSL (for librdkafka)", "SSL_CTX_new"),
    ] {
        for (build, syms) in [("full", &full_syms), ("trimmed", &trimmed_syms)] {
            assert!(!has(syms, sym), "the {build} build links {what} ({sym})");
        }
    }

    // No libelf to load in the trimmed build; libssl and libcrypto in neither.
    let (full_needed, trimmed_needed) = (needed(&full), needed(trimmed));
    assert!(
        full_needed.contains("libelf.so"),
        "full build: {full_needed}"
    );
    assert!(
        !trimmed_needed.contains("libelf.so"),
        "trimmed build: {trimmed_needed}"
    );
    for lib in ["libssl.so", "libcrypto.so"] {
        for (build, needed) in [("full", &full_needed), ("trimmed", &trimmed_needed)] {
            assert!(!needed.contains(lib), "{build} build: {needed}");
        }
    }

    let size = |p: &Path| std::fs::metadata(p).expect("stat").len();
    let (full_size, trimmed_size) = (size(&full), size(trimmed));
    eprintln!("tail: debug binaries: full {full_size} bytes, trimmed {trimmed_size} bytes");
    assert!(
        trimmed_size < full_size,
        "trimmed {trimmed_size} bytes is not smaller than full {full_size}"
    );
}

/// The 1-based number of the first line of `text` that starts with `start`
/// after line `after`.
fn line_of(text: &str, after: usize, start: &str) -> usize {
    text.lines()
        .enumerate()
        .skip(after)
        .find(|(_, l)| l.starts_with(start))
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("no line `{start}` after line {after}"))
}

#[test]
fn trimmed_build_refuses_what_it_left_out_and_runs_the_rest() {
    let trimmed = trimmed();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let meta = harness::repo().join("meta");
    let port = free_port();
    let head = format!(
        "[global]\nmeta_dir = \"{}\"\nstate_dir = \"{d}/state\"\n\n\
         [web_server]\nport = {port}\nbind_addr = \"127.0.0.1\"\n\n\
         [logs]\nmetric_dir = \"{d}/logs/metrics\"\nevent_dir = \"{d}/logs/event\"\n\
         meta_dir = \"{d}/logs/meta\"\ndebug_dir = \"{d}/logs/debug\"\n\n",
        meta.display()
    );
    let bad = format!(
        "{head}[metric]\nout_channel = \"kafka\"\n\n[event]\nout_channel = \"kafka\"\n\n\
         [[probes]]\nname = \"system_meminfo\"\nswitch = \"on\"\n\n\
         [[probes]]\nname = \"tcp_link\"\nparam = \"-t 5\"\nswitch = \"on\"\n\n\
         [[probes]]\nname = \"tcp_lnk\"\nswitch = \"on\"\n"
    );
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, &bad).expect("write config");
    let c = cfg.display();
    let metric = line_of(&bad, line_of(&bad, 0, "[metric]"), "out_channel");
    let event = line_of(&bad, line_of(&bad, 0, "[event]"), "out_channel");
    let tcp_link = line_of(&bad, 0, "name = \"tcp_link\"");
    let typo = line_of(&bad, 0, "name = \"tcp_lnk\"");

    let o = run(Command::new(trimmed).arg("check-config").arg(&cfg));
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "check-config:\n{err}");
    let lines: Vec<&str> = err.lines().collect();
    let kafka = "this gala-gopher was built without Kafka, so out_channel = \"kafka\" cannot be used \
                 (cargo feature `kafka` of gala-gopher is off; a tail.conf build leaves it out when \
                 FEATURES names kafka)";
    let expected = [
        format!("{c}:{metric}: key `metric.out_channel`: {kafka}"),
        format!("{c}:{event}: key `event.out_channel`: {kafka}"),
        format!(
            "{c}:{tcp_link}: key `probes[1].name`: probe `tcp_link` was left out of this build of gala-gopher \
             (cargo feature `probe-tcp_link` is off; a tail.conf build leaves it out when PROBES or \
             EXTEND_PROBES names it): build it with the probe, or set switch = \"off\""
        ),
    ];
    for want in &expected {
        assert!(
            lines.iter().any(|l| l.starts_with(want.as_str())),
            "missing `{want}` in:\n{err}"
        );
    }
    // A misspelt name is still an unknown probe, and says what was left out.
    let unknown = lines
        .iter()
        .find(|l| l.starts_with(&format!("{c}:{typo}: key `probes[2].name`: ")))
        .unwrap_or_else(|| panic!("no error for probes[2] in:\n{err}"));
    assert!(
        unknown.contains("unknown probe `tcp_lnk`")
            && unknown.contains("left out of this build: tcp_link"),
        "{unknown}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("probes[1]") && l.contains("unknown probe")),
        "tcp_link reported as unknown:\n{err}"
    );
    assert_eq!(lines.len(), 4, "one error each:\n{err}");

    // The full build takes Kafka and tcp_link; only the typo is wrong.
    let o = run(Command::new(harness::bin()).arg("check-config").arg(&cfg));
    let full_err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{full_err}");
    assert_eq!(full_err.lines().count(), 1, "{full_err}");
    assert!(full_err.contains("unknown probe `tcp_lnk`"), "{full_err}");

    // Started on it, the trimmed agent refuses it the same way.
    let o = run(Command::new(trimmed).arg("--config").arg(&cfg));
    let start_err = text(&o.stderr);
    assert!(!o.status.success(), "started on a config it cannot run");
    assert!(
        start_err.contains(&expected[0]) && start_err.contains(&expected[2]),
        "{start_err}"
    );

    // The repository's default config with the left-out probes switched off
    // (as the rpm ships it) is accepted.
    let o = run(Command::new(script())
        .args(["--config", KEPT])
        .arg(harness::repo().join("config/gala-gopher.toml")));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let default = dir.path().join("default.toml");
    std::fs::write(&default, &o.stdout).expect("write config");
    let o = run(Command::new(trimmed).arg("check-config").arg(&default));
    assert!(
        o.status.success(),
        "check-config of the default config, tcp_link off:\n{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );

    // And it runs what it holds: a native probe and a C probe.
    let good = format!(
        "{head}[metric]\nout_channel = \"web_server\"\n\n\
         [[probes]]\nname = \"system_meminfo\"\nparam = \"-t 1\"\nswitch = \"on\"\n\n\
         [[probes]]\nname = \"system_cpu\"\nparam = \"-t 1\"\nswitch = \"on\"\n\n\
         [[probes]]\nname = \"tcp_link\"\nswitch = \"off\"\n"
    );
    let cfg = dir.path().join("good.toml");
    std::fs::write(&cfg, good).expect("write config");
    let log = std::fs::File::create(dir.path().join("agent.log")).expect("log");
    let mut child = Command::new(trimmed)
        .arg("--config")
        .arg(&cfg)
        .env(harness::CTL_SOCKET_ENV, harness::ctl_socket())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn the trimmed agent");
    let expo = wait_for(
        Duration::from_secs(30),
        "system_meminfo and system_cpu series",
        || {
            if let Ok(Some(st)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
                panic!("the trimmed agent exited ({st}):\n{log}");
            }
            let (status, body) = http_get(port, "/metrics").ok()?;
            (status == 200
                && body.contains("gala_gopher_system_meminfo_")
                && body.contains("gala_gopher_system_cpu_"))
            .then_some(body)
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(!expo.contains("gala_gopher_tcp_link_"), "tcp_link series");
    assert!(
        !expo.contains("gala_gopher_self_kafka_"),
        "Kafka counters in a build without Kafka"
    );
}
