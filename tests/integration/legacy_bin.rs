//! Legacy probe binaries run unchanged under the agent (issue 13, part 3):
//! a 1.x-style eBPF probe binary started as an extend probe on a machine
//! without bpffs (the agent mounts it), and a 2.x-style binary fed over the
//! SysV message queue (the agent plays the 2.x daemon's side). The probes
//! are small C programs of this repository, compiled here with `cc`.
//!
//! Both run the real agent in private namespaces: a mount namespace without
//! tracefs, debugfs or bpffs, and for the 2.x probe also a private IPC
//! namespace (its queue is nobody else's) in which `/usr/bin/gala-gopher`
//! exists through an overlay whose upper dir is in the test's temp dir.
//! Nothing is written to the host's `/usr/bin` or `/sys/fs/bpf`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{self, http_get, series_value, wait_for, Agent, Setup, Tracefs};

fn data(rel: &str) -> PathBuf {
    harness::repo().join("tests/data/c/legacy_bin").join(rel)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Compiles `tests/data/c/legacy_bin/<src>.c` into `dir`.
fn compile(dir: &Path, src: &str) -> PathBuf {
    let out = dir.join(src);
    let st = Command::new("cc")
        .args(["-Wall", "-Wextra", "-Werror", "-O1", "-o"])
        .arg(&out)
        .arg(data(&format!("{src}.c")))
        .status()
        .expect("cc is required for this test (Debian package gcc)");
    assert!(st.success(), "cc {src}.c failed");
    out
}

fn assert_root() {
    // SAFETY: plain getuid(2).
    let uid = unsafe { libc::getuid() };
    assert_eq!(
        uid, 0,
        "this test runs the agent in private mount and IPC namespaces (unshare), which needs root"
    );
}

/// The value of `<metric>{probe="<probe>"...}` in a scrape.
fn value(expo: &str, table: &str, field: &str, probe: &str) -> Option<f64> {
    series_value(
        expo,
        &format!("gala_gopher_{table}_{field}{{probe=\"{probe}\""),
    )
}

#[test]
fn a_1x_ebpf_probe_binary_pins_its_map_on_the_bpffs_the_agent_mounts() {
    assert_root();
    let s = Setup::new(&[(
        "legacy_bin_probe.meta",
        &read(&data("legacy_bin_probe.meta")),
    )]);
    let probe = compile(s.dir.path(), "pin_probe");
    // The legacy whitelist file, as 1.x installed it (libconfig).
    let whitelist = s.path("gala-gopher-app.conf");
    std::fs::write(
        &whitelist,
        "application =\n(\n    {\n        comm = \"^nginx$\";\n        cmdline = \"\";\n    },\n    \
         {\n        comm = \"java\";\n        cmdline = \"kafka\";\n    }\n);\n",
    )
    .expect("whitelist");
    // Both extend-probe spellings of the legacy config reach the same probe:
    // here the 1.x libconfig `extend_probes = ( ... )` list.
    let cfg = s.path("gala-gopher.conf");
    let d = s.dir.path().display();
    std::fs::write(
        &cfg,
        format!(
            r#"global = {{ log_level = "debug"; meta_dir = "{d}/meta"; state_dir = "{d}/state"; }};
metric = {{ out_channel = "web_server"; }};
event = {{ out_channel = "logs"; }};
meta = {{ out_channel = "logs"; }};
web_server = {{ port = {port}; bind_addr = "127.0.0.1"; }};
logs = {{ metric_dir = "{d}/logs/metrics"; event_dir = "{d}/logs/event"; meta_dir = "{d}/logs/meta"; debug_dir = "{d}/logs/debug"; }};
extend_probes = (
    {{
        name = "pinprobe";
        command = "{probe}";
        param = "-n pin1 -t 1 -w {wl}";
        switch = "on";
    }}
);
"#,
            port = s.port,
            probe = probe.display(),
            wl = whitelist.display(),
        ),
    )
    .expect("config");
    let agent = Agent::spawn_in(&cfg, s.port, &s.path("agent.log"), &[], Tracefs::Absent);
    let expo = wait_for(
        Duration::from_secs(30),
        "a record of the 1.x probe binary",
        || {
            let (_, body) = http_get(agent.port, "/metrics").ok()?;
            value(&body, "legacy_bin_probe", "pinned", "pin1").map(|_| body)
        },
    );
    let log = agent.log_text();
    let v = |f: &str| value(&expo, "legacy_bin_probe", f, "pin1");
    assert_eq!(
        v("bpffs"),
        Some(1.0),
        "the probe does not see a bpffs at /sys/fs/bpf:\n{expo}\nlog:\n{log}"
    );
    assert!(
        log.contains("mounted bpffs"),
        "the agent did not say it mounted bpffs (it was unmounted in its namespace):\n{log}"
    );
    assert_eq!(
        v("map"),
        Some(1.0),
        "BPF_MAP_CREATE failed in the probe:\n{log}"
    );
    assert_eq!(
        (v("pinned"), v("pin_errno")),
        (Some(1.0), Some(0.0)),
        "the map is not pinned under /sys/fs/bpf/probe:\n{log}"
    );
    assert_eq!(v("apps"), Some(2.0), "the -w whitelist was not read");
    assert!(
        expo.contains(r#"gala_gopher_legacy_bin_probe_pinned{probe="pin1",comm="^nginx$""#),
        "the first comm of the whitelist, a label of the probe's own meta:\n{expo}"
    );
    // The pin lives in the agent's namespace only: the host is untouched.
    assert!(!Path::new("/sys/fs/bpf/probe/pin1").exists());
}

/// Without bpffs and without the right to mount it, the agent says which
/// mount to make, and its extend probes still run (without their pins).
#[test]
fn without_bpffs_or_cap_sys_admin_the_agent_names_the_mount_and_runs_on() {
    assert_root();
    let s = Setup::new(&[(
        "legacy_bin_probe.meta",
        &read(&data("legacy_bin_probe.meta")),
    )]);
    let probe = compile(s.dir.path(), "pin_probe");
    let cfg = s.path("gala-gopher.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[[extend_probes]]\nname = \"pinprobe\"\ncommand = \"{}\"\nparam = \"-n pin2 -t 1\"\n",
            s.base_config(),
            probe.display()
        ),
    )
    .expect("config");
    let log = s.path("agent.log");
    let child = Tracefs::Absent
        .command(&[], "", Path::new("setpriv"))
        .args(["--bounding-set=-sys_admin", "--inh-caps=-all", "--"])
        .arg(harness::bin())
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("unshare and setpriv (util-linux)");
    let agent = Agent {
        child,
        port: s.port,
        log,
    };
    let expo = wait_for(Duration::from_secs(30), "a record of the probe", || {
        let (_, body) = http_get(agent.port, "/metrics").ok()?;
        value(&body, "legacy_bin_probe", "pinned", "pin2").map(|_| body)
    });
    let text = agent.log_text();
    assert!(
        text.contains("mount -t bpf bpf /sys/fs/bpf") && text.contains("lacks CAP_SYS_ADMIN"),
        "the error should name the mount to make and why the agent could not:\n{text}"
    );
    let v = |f: &str| value(&expo, "legacy_bin_probe", f, "pin2");
    assert_eq!((v("bpffs"), v("pinned")), (Some(0.0), Some(0.0)), "{expo}");
}

/// A process the tests point the probe at; killed by pid at the end.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Self {
        Self(
            Command::new("sleep")
                .arg("600")
                .stdin(Stdio::null())
                .spawn()
                .expect("sleep"),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        harness::signal_child(&self.0, libc::SIGKILL);
        let _ = self.0.wait();
    }
}

fn ipc_config(s: &Setup, probe: &Path, period: u32, sample: u32, snooper: u32) -> String {
    format!(
        r#"{base}
[[extend_probes]]
name = "ipcprobe"
command = "{probe}"
param = "8 ipc1"
switch = "on"

[extend_probes.ipc]
probe_type = "proc"
probe = ["proc_syscall", "proc_io"]
range_flags = 256

[extend_probes.ipc.params]
report_period = {period}
sample_period = {sample}
dev_name = "eth7"

[extend_probes.ipc.snoopers]
proc_id = [{snooper}]
proc_name = [{{ comm = "^no-such-comm$", cmdline = "" }}]
"#,
        base = s.base_config(),
        probe = probe.display(),
    )
}

/// The agent in private mount and IPC namespaces where `/usr/bin/gala-gopher`
/// exists (an overlay over /usr/bin, its upper dir in the temp dir).
fn spawn_ipc_agent(s: &Setup, cfg: &Path) -> Agent {
    let up = s.path("usrbin-up");
    let work = s.path("usrbin-work");
    std::fs::create_dir_all(&up).expect("upper dir");
    std::fs::create_dir_all(&work).expect("work dir");
    let prelude = format!(
        "mount -t overlay overlay -o lowerdir=/usr/bin,upperdir={},workdir={} /usr/bin && \
         touch /usr/bin/gala-gopher",
        up.display(),
        work.display()
    );
    let log = s.path("agent.log");
    let err = std::fs::File::create(&log).expect("log");
    let child = Tracefs::Absent
        .command(&["--ipc"], &prelude, &harness::bin())
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn gala-gopher");
    let mut agent = Agent {
        child,
        port: s.port,
        log,
    };
    wait_for(Duration::from_secs(20), "the agent to serve :port", || {
        if let Ok(Some(st)) = agent.child.try_wait() {
            panic!(
                "agent exited early ({st}; 97 means the namespace prelude failed); log:\n{}",
                agent.log_text()
            );
        }
        http_get(agent.port, "/metrics")
            .ok()
            .filter(|(st, _)| *st == 200)
    });
    // The 2.x key path exists only in the agent's namespace: the file went
    // to the overlay's upper dir, not to the host's /usr/bin.
    assert!(up.join("gala-gopher").exists());
    assert!(!Path::new("/usr/bin/gala-gopher").exists());
    agent
}

/// What the 2.x probe reported last: (period, sample_period, range,
/// snoopers, first pid, flags, messages, probe pid).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    period: f64,
    sample: f64,
    range: f64,
    snoopers: f64,
    first_pid: f64,
    flags: f64,
    messages: f64,
    pid: f64,
}

fn seen(agent: &Agent) -> Option<Seen> {
    let (_, e) = http_get(agent.port, "/metrics").ok()?;
    let v = |f: &str| value(&e, "legacy_ipc_probe", f, "ipc1");
    Some(Seen {
        period: v("period")?,
        sample: v("sample_period")?,
        range: v("range")?,
        snoopers: v("snoopers")?,
        first_pid: v("first_pid")?,
        flags: v("flags")?,
        messages: v("messages")?,
        pid: v("pid")?,
    })
}

#[test]
fn a_2x_probe_binary_gets_its_params_and_snoopers_over_the_message_queue() {
    assert_root();
    let s = Setup::new(&[(
        "legacy_ipc_probe.meta",
        &read(&data("legacy_ipc_probe.meta")),
    )]);
    let probe = compile(s.dir.path(), "ipc_probe");
    let sleeper = Sleeper::start();
    let cfg = s.path("gala-gopher.toml");
    std::fs::write(&cfg, ipc_config(&s, &probe, 5, 250, sleeper.pid())).expect("config");
    let mut agent = spawn_ipc_agent(&s, &cfg);
    let log = |a: &Agent| a.log_text();

    // The message was queued before the start: the probe has its params,
    // its range bits and its one live snooper (the proc_name matches none).
    let first = wait_for(Duration::from_secs(30), "the 2.x probe's record", || {
        seen(&agent)
    });
    assert_eq!(
        (first.period, first.sample),
        (5.0, 250.0),
        "{first:?}\n{}",
        log(&agent)
    );
    assert_eq!(first.range, f64::from(0x1 | 0x8 | 0x100), "{first:?}");
    assert_eq!(
        (first.snoopers, first.first_pid),
        (1.0, f64::from(sleeper.pid())),
        "{first:?}"
    );
    assert_eq!(
        first.flags, 3.0,
        "first message: params and snoopers changed"
    );
    let (_, e) = http_get(agent.port, "/metrics").expect("scrape");
    assert!(
        e.contains(r#"gala_gopher_legacy_ipc_probe_period{probe="ipc1",dev="eth7""#),
        "params.dev_name reaches target_dev:\n{e}"
    );

    // A config change and SIGHUP: the same probe process gets the new params.
    std::fs::write(&cfg, ipc_config(&s, &probe, 7, 400, sleeper.pid())).expect("config");
    harness::signal_child(&agent.child, libc::SIGHUP);
    let second = wait_for(Duration::from_secs(30), "the new params", || {
        seen(&agent).filter(|v| v.period == 7.0)
    });
    assert_eq!(
        second.pid,
        first.pid,
        "the reload restarted the probe instead of sending it the new params:\n{}",
        log(&agent)
    );
    assert_eq!(second.sample, 400.0);
    assert!(second.messages > first.messages, "{second:?}");
    assert_eq!(second.flags, 2.0, "only the params changed: {second:?}");

    // The snooper dies: the next rescan sends the new (empty) set.
    let pid = sleeper.pid();
    drop(sleeper);
    let third = wait_for(
        Duration::from_secs(30),
        "the snooper set without the dead pid",
        || seen(&agent).filter(|v| v.snoopers == 0.0),
    );
    assert_eq!(third.pid, first.pid);
    assert_eq!(third.flags, 1.0, "only the snoopers changed: {third:?}");
    assert_ne!(third.first_pid, f64::from(pid));

    // The probe is killed: the agent restarts it, and the new process gets
    // its message (the reloaded params) before it starts.
    let old = libc::pid_t::try_from(third.pid as i64).expect("probe pid");
    // SAFETY: kill(2) of the probe process by its pid, as reported by it.
    unsafe {
        libc::kill(old, libc::SIGKILL);
    }
    let fourth = wait_for(Duration::from_secs(30), "the restarted probe", || {
        seen(&agent).filter(|v| v.pid != third.pid)
    });
    assert_eq!(
        (fourth.period, fourth.sample, fourth.messages, fourth.flags),
        (7.0, 400.0, 1.0, 3.0),
        "{fourth:?}\n{}",
        log(&agent)
    );

    // The queue this agent created goes at shutdown.
    assert_eq!(agent.stop(), Some(0), "{}", log(&agent));
    let text = log(&agent);
    assert!(
        text.contains("created the legacy 2.x message queue"),
        "{text}"
    );
    assert!(
        text.contains("removed the legacy 2.x message queue"),
        "{text}"
    );
}

#[test]
fn without_usr_bin_gala_gopher_a_2x_probe_is_refused_with_the_reason() {
    assert_root();
    let s = Setup::new(&[(
        "legacy_ipc_probe.meta",
        &read(&data("legacy_ipc_probe.meta")),
    )]);
    assert!(
        !Path::new("/usr/bin/gala-gopher").exists(),
        "this test needs a machine without /usr/bin/gala-gopher"
    );
    let probe = compile(s.dir.path(), "ipc_probe");
    let cfg = ipc_config(&s, &probe, 5, 250, std::process::id());
    // In a private mount namespace: the agent mounts bpffs for its extend
    // probe, and must not do it on the host.
    let agent = s.start_in(&cfg, &[], Tracefs::Absent);
    let text = wait_for(Duration::from_secs(20), "the refusal", || {
        let t = agent.log_text();
        t.contains("will not be restarted").then_some(t)
    });
    assert!(
        text.contains("ftok(\"/usr/bin/gala-gopher\", 'g')") && text.contains("does not"),
        "{text}"
    );
    let (_, e) = http_get(agent.port, "/metrics").expect("scrape");
    assert_eq!(
        series_value(
            &e,
            r#"gala_gopher_self_probe_state{probe="ipcprobe",state="failed""#
        ),
        Some(1.0),
        "refused for good, not restarted:\n{e}"
    );
}

#[test]
fn bad_ipc_values_are_refused_naming_the_key_and_the_range() {
    let s = Setup::new(&[]);
    let cfg = s.path("bad.toml");
    // (the ipc block, what the error must say)
    let cases: &[(&str, &[&str])] = &[
        (
            "probe_type = \"procc\"",
            &["extend_probes[0].ipc.probe_type", "\"procc\"", "proc"],
        ),
        (
            "probe_type = 22",
            &["extend_probes[0].ipc.probe_type", "100 + i", "got 22"],
        ),
        (
            "probe_type = \"proc\"\n[extend_probes.ipc.params]\nreport_period = 2",
            &["extend_probes[0].ipc.params.report_period", "5..=600", "got 2"],
        ),
        (
            "probe_type = \"tcp\"\n[extend_probes.ipc.params]\nsample_period = 20000",
            &["extend_probes[0].ipc.params.sample_period", "100..=10000"],
        ),
        (
            "probe_type = \"proc\"\n[extend_probes.ipc.params]\nenv = [\"moon\"]",
            &["extend_probes[0].ipc.params.env", "\"moon\"", "kubenet"],
        ),
        (
            "probe_type = \"proc\"\n[extend_probes.ipc.params]\ndev_name = \"0123456789012345678901234567890123\"",
            &["extend_probes[0].ipc.params.dev_name", "at most 31 bytes"],
        ),
        (
            "probe_type = \"proc\"\n[extend_probes.ipc.snoopers]\nproc_name = [{ comm = \"([\" }]",
            &["extend_probes[0].ipc.snoopers.proc_name[0].comm", "regular expression"],
        ),
        (
            "probe_type = \"proc\"\nprobe = [\"proc_nope\"]",
            &["extend_probes[0].ipc.probe", "proc_nope", "proc_syscall"],
        ),
    ];
    for (ipc, wants) in cases {
        std::fs::write(
            &cfg,
            format!(
                "{base}\n[[extend_probes]]\nname = \"p\"\ncommand = \"/bin/true\"\n\n[extend_probes.ipc]\n{ipc}\n",
                base = s.base_config()
            ),
        )
        .expect("config");
        let out = Command::new(harness::bin())
            .arg("check-config")
            .arg(&cfg)
            .output()
            .expect("check-config");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{ipc}: {text}");
        for want in *wants {
            assert!(text.contains(want), "{ipc}: `{want}` missing from:\n{text}");
        }
    }
}
