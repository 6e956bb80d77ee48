//! The packages as their users meet them: the rpms of `make rpm`
//! (scripts/rpm.sh) installed with `rpm -U` into a Debian system booted
//! with a real systemd (tests/integration/container.rs), and the
//! gala-gopher service driven with systemctl: start (Type=notify), status
//! text, journal, capabilities, reload with a bad config, a bad config at
//! start, a C probe built against the devel package, `rpm -V`, an upgrade
//! and `rpm -e`. Then gala-spider's service.
//!
//! Not real here, and why: the container has no openEuler package
//! repository, so the rpms are installed with `rpm -U --nodeps` (their
//! Requires name openEuler packages the Debian rpm database does not know).
//! Debian's dynamic linker and pkg-config do not search /usr/lib64, where
//! rpm puts %{_libdir} on x86_64 as openEuler's do: the test adds that
//! directory to the container's ld.so.conf and PKG_CONFIG_PATH, as an
//! openEuler system has it. Everything else is the real thing.
//!
//! Needs root (systemd-nspawn, debootstrap). The root file system is built
//! once and cached (scripts/nspawn-root.sh); the rpms are built by
//! scripts/rpm.sh, twice (releases 1 and 2, the second reusing the first's
//! compiled crates).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::container::{self, Container};
use crate::harness::repo;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the service tests boot a container with systemd-nspawn: run `make test` as root"
    );
}

/// The binary rpms of one `scripts/rpm.sh` run with release `release`
/// copied into `into` (so that a later build cannot change them).
fn build_rpms(release: u32, into: &Path) -> Vec<PathBuf> {
    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg(repo().join("scripts/rpm.sh"))
        .env("RPM_RELEASE", release.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/rpm.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scripts/rpm.sh failed:\n{text}");
    std::fs::create_dir_all(into).expect("rpm dir");
    let mut rpms = Vec::new();
    for line in text.lines() {
        let Some(path) = line
            .strip_prefix("rpm: ")
            .and_then(|l| l.split(" (").next())
            .filter(|p| p.ends_with(".rpm") && !p.ends_with(".src.rpm"))
        else {
            continue;
        };
        let src = Path::new(path);
        let dst = into.join(src.file_name().expect("rpm file name"));
        std::fs::copy(src, &dst).expect("copy rpm");
        rpms.push(dst);
    }
    let names: Vec<String> = rpms
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for want in ["gala-gopher-0", "gala-gopher-devel-", "gala-spider-"] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "scripts/rpm.sh built no {want}* rpm:\n{text}"
        );
    }
    eprintln!(
        "service: release {release} rpms built in {:.0?}: {}",
        t0.elapsed(),
        names.join(", ")
    );
    rpms
}

/// The path inside the container of the package `prefix` among `rpms`.
fn inside(rpms: &[PathBuf], mount: &str, prefix: &str) -> String {
    let f = rpms
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .find(|n| n.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}* rpm"));
    format!("{mount}/{f}")
}

/// Capability names of a `/proc/<pid>/status` hex mask.
fn cap_names(hex: &str) -> Vec<String> {
    const NAMES: &[&str] = &[
        "chown",
        "dac_override",
        "dac_read_search",
        "fowner",
        "fsetid",
        "kill",
        "setgid",
        "setuid",
        "setpcap",
        "linux_immutable",
        "net_bind_service",
        "net_broadcast",
        "net_admin",
        "net_raw",
        "ipc_lock",
        "ipc_owner",
        "sys_module",
        "sys_rawio",
        "sys_chroot",
        "sys_ptrace",
        "sys_pacct",
        "sys_admin",
        "sys_boot",
        "sys_nice",
        "sys_resource",
        "sys_time",
        "sys_tty_config",
        "mknod",
        "lease",
        "audit_write",
        "audit_control",
        "setfcap",
        "mac_override",
        "mac_admin",
        "syslog",
        "wake_alarm",
        "block_suspend",
        "audit_read",
        "perfmon",
        "bpf",
        "checkpoint_restore",
    ];
    let mask = u64::from_str_radix(hex.trim(), 16).expect("capability mask");
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| {
            NAMES
                .get(b)
                .map_or(format!("cap_{b}"), |n| format!("cap_{n}"))
        })
        .collect()
}

/// `CapEff`, `CapPrm` or `CapBnd` of a process in the container.
fn caps_of(c: &Container, pid: &str, which: &str) -> Vec<String> {
    let line = c.ok(&format!("grep '^{which}:' /proc/{pid}/status"));
    let hex = line.split_whitespace().nth(1).expect("mask");
    cap_names(hex)
}

fn main_pid(c: &Container, unit: &str) -> String {
    let pid = c.ok(&format!("systemctl show -p MainPID --value {unit}"));
    let pid = pid.trim().to_owned();
    assert_ne!(pid, "0", "{unit} has no main process");
    pid
}

/// Everything the journal holds for `unit`, one JSON object per line.
fn journal(c: &Container, unit: &str) -> Vec<serde_json::Value> {
    c.ok(&format!("journalctl -u {unit} -o json --no-pager"))
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn text(v: &serde_json::Value, field: &str) -> String {
    v.get(field)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_owned()
}

const CONF: &str = "/etc/gala-gopher/gala-gopher.toml";

/// What /metrics serves inside the container.
fn scrape(c: &Container) -> String {
    c.ok("curl -sf http://127.0.0.1:8888/metrics")
}

#[test]
fn the_rpms_install_and_run_as_a_systemd_service() {
    require_root();
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    // Release 1 is the build the rpm tests check (built once for both);
    // release 2 is built after it, for the upgrade.
    let p = crate::rpm::packages();
    let r1_dir = dir.path().join("r1");
    std::fs::create_dir_all(&r1_dir).expect("r1 dir");
    let r1: Vec<PathBuf> = [&p.gopher, &p.devel, &p.spider]
        .iter()
        .map(|src| {
            let dst = r1_dir.join(src.file_name().expect("rpm file name"));
            std::fs::copy(src, &dst).expect("copy rpm");
            dst
        })
        .collect();
    let r2 = build_rpms(2, &dir.path().join("r2"));
    let root = container::root();
    let c = Container::boot(&root, &[(dir.path(), "/rpms")]);
    eprintln!("service: container booted ({:.0?} so far)", t0.elapsed());

    // As an openEuler system has them (see the module comment).
    c.ok("echo /usr/lib64 > /etc/ld.so.conf.d/lib64.conf");
    let gopher1 = inside(&r1, "/rpms/r1", "gala-gopher-0");
    let devel1 = inside(&r1, "/rpms/r1", "gala-gopher-devel-");
    let spider1 = inside(&r1, "/rpms/r1", "gala-spider-");
    // --nodeps: no openEuler repository here (module comment).
    c.ok(&format!(
        "rpm -U --nodeps --force-debian {gopher1} {devel1} {spider1}"
    ));
    assert_eq!(
        c.ok("systemctl is-enabled gala-gopher").trim(),
        "enabled",
        "%systemd_post applies the preset: the service is enabled on install"
    );

    // rpm -V: nothing to report right after install (the tamper check;
    // --nodeps as for the install: the Debian rpm database lists no glibc).
    let v = c.sh("rpm -V --nodeps gala-gopher");
    assert!(
        v.code == 0 && v.out.trim().is_empty(),
        "rpm -V gala-gopher after install:\n{}{}",
        v.out,
        v.err
    );

    // Start: systemctl returns once the agent sent READY=1.
    c.ok("systemctl start gala-gopher");
    assert_eq!(c.ok("systemctl is-active gala-gopher").trim(), "active");
    // READY=1 comes after :8888 is bound: it answers at once.
    let expo = scrape(&c);
    for t in [
        "system_meminfo",
        "system_vmstat",
        "system_inode",
        "system_tcp",
    ] {
        assert!(
            expo.contains(&format!("gala_gopher_{t}_")),
            "no {t} series right after start:\n{expo}"
        );
    }
    // tcp_link attached (BTF tracepoints, no tracefs in the container): its
    // probe state, then a record of the curl connections made here.
    let tcp = c.wait_ok(
        Duration::from_secs(30),
        "tcp_link records",
        "curl -sf http://127.0.0.1:8888/metrics | grep '^gala_gopher_tcp_link_rx_bytes{'",
    );
    assert!(tcp.contains("curl") || tcp.contains("gala-gopher"), "{tcp}");
    let status = c.ok("systemctl show -p StatusText --value gala-gopher");
    assert!(
        status.contains("running") && status.contains("series"),
        "StatusText should summarise the probes and series: {status:?}"
    );

    // The journal holds the start-up lines with their priorities, as
    // native entries (not text on stderr).
    let j = journal(&c, "gala-gopher");
    let attached = j
        .iter()
        .find(|e| text(e, "MESSAGE").contains("eBPF programs attached"))
        .unwrap_or_else(|| panic!("no `eBPF programs attached` in the journal:\n{j:?}"));
    assert_eq!(text(attached, "PRIORITY"), "6", "{attached}");
    assert_ne!(
        text(attached, "_TRANSPORT"),
        "stdout",
        "the agent should log natively to the journal: {attached}"
    );

    // Capabilities of the running service (docs/install.md's table): the
    // bounding set of the unit; permitted, what the configured probes need
    // (eBPF load and attach, memlock, and reading other users' /proc);
    // effective on the main thread, only the /proc readers.
    let pid = main_pid(&c, "gala-gopher");
    let bnd = caps_of(&c, &pid, "CapBnd");
    let prm = caps_of(&c, &pid, "CapPrm");
    let eff = caps_of(&c, &pid, "CapEff");
    let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // The unit's set, less what the container itself lacks (this VM gives
    // no CAP_SYS_RESOURCE to anyone).
    let container_bnd = caps_of(&c, "1", "CapBnd");
    let mut want_bnd: Vec<String> = set(&[
        "cap_dac_read_search",
        "cap_sys_ptrace",
        "cap_sys_resource",
        "cap_perfmon",
        "cap_bpf",
    ])
    .into_iter()
    .filter(|cap| container_bnd.contains(cap))
    .collect();
    want_bnd.sort();
    let mut got_bnd = bnd.clone();
    got_bnd.sort();
    assert_eq!(got_bnd, want_bnd, "CapBnd of the service");
    let mut got_prm = prm.clone();
    got_prm.sort();
    assert_eq!(
        got_prm, want_bnd,
        "CapPrm of the service (tcp_link configured)"
    );
    let mut got_eff = eff.clone();
    got_eff.sort();
    assert_eq!(
        got_eff,
        set(&["cap_dac_read_search", "cap_sys_ptrace"]),
        "CapEff of the service's main thread"
    );

    // systemd's own checks of the unit.
    let verify = c.sh("systemd-analyze verify gala-gopher.service gala-spider.service");
    assert!(
        verify.code == 0 && !verify.err.contains("gala"),
        "systemd-analyze verify:\n{}{}",
        verify.out,
        verify.err
    );
    let sec = c.ok("systemd-analyze security --no-pager gala-gopher.service | tail -1");
    eprintln!("service: systemd-analyze security: {}", sec.trim());
    let score: f64 = sec
        .split("level for gala-gopher.service:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {sec:?}"));
    assert!(
        score <= 3.5,
        "the unit's exposure level rose to {score} (3.0 when this test was written)"
    );

    // A C probe built against the devel package, run by the service.
    c.ok(
        "set -e; mkdir -p /opt/example; cp /usr/share/doc/gala-gopher-devel/example/* /opt/example/; \
         cd /opt/example; export PKG_CONFIG_PATH=/usr/lib64/pkgconfig; \
         cc $(pkg-config --cflags gopher) -shared -fPIC probe.c $(pkg-config --libs gopher) -o probe.so; \
         cp example.meta /opt/gala-gopher/meta/",
    );
    let needed =
        c.ok("readelf -d /opt/example/probe.so 2>/dev/null || objdump -p /opt/example/probe.so");
    assert!(
        needed.contains("libgopher.so.1"),
        "probe.so NEEDED:\n{needed}"
    );
    c.ok(&format!(
        "printf '\\n[[probes]]\\nname = \"example\"\\nlibrary = \"/opt/example/probe.so\"\\nparam = \"-t 1\"\\nswitch = \"on\"\\n' >> {CONF}"
    ));
    c.ok("systemctl restart gala-gopher");
    c.wait_ok(
        Duration::from_secs(20),
        "the example C probe's table",
        "curl -sf http://127.0.0.1:8888/metrics | grep -q '^gala_gopher_example_load1{'",
    );

    // Reload with a broken config: the agent keeps the config it runs and
    // logs the error with its line.
    let pid_before = main_pid(&c, "gala-gopher");
    c.ok(&format!("cp {CONF} /root/good.toml"));
    c.ok(&format!(
        "printf '\\n[no_such_section]\\nkey = 1\\n' >> {CONF}"
    ));
    c.ok("systemctl reload gala-gopher");
    c.wait_ok(
        Duration::from_secs(15),
        "the reload error in the journal",
        "journalctl -u gala-gopher -p err --no-pager | grep -q no_such_section",
    );
    assert_eq!(c.ok("systemctl is-active gala-gopher").trim(), "active");
    assert_eq!(
        main_pid(&c, "gala-gopher"),
        pid_before,
        "a bad reload must not restart"
    );
    let err_line =
        c.ok("journalctl -u gala-gopher -p err --no-pager -o cat | grep no_such_section");
    assert!(
        err_line.contains("gala-gopher.toml:"),
        "the error should name the file and line: {err_line}"
    );
    assert!(
        scrape(&c).contains("gala_gopher_example_load1{"),
        "still serving"
    );

    // A broken config at start: systemctl start fails, the journal says why.
    c.ok("systemctl stop gala-gopher");
    let start = c.sh("systemctl start gala-gopher");
    assert_ne!(start.code, 0, "start with a broken config should fail");
    c.ok("systemctl reset-failed gala-gopher || true; systemctl stop gala-gopher || true");
    let why = c.ok("journalctl -u gala-gopher --no-pager -o cat");
    assert!(
        why.lines()
            .filter(|l| l.contains("no_such_section"))
            .count()
            >= 2,
        "the start error should be in the journal too:\n{why}"
    );
    c.ok(&format!("cp /root/good.toml {CONF}"));
    c.ok("systemctl start gala-gopher");

    // rpm -V: a packaged binary edited on disk is reported.
    c.ok("cp /usr/bin/gala-spider /root/spider && printf '\\0' >> /root/spider && mv /root/spider /usr/bin/gala-spider");
    let v = c.sh("rpm -V --nodeps gala-spider");
    assert!(
        v.code != 0 && v.out.contains("/usr/bin/gala-spider") && v.out.contains('5'),
        "rpm -V should report the edited binary (digest '5'):\n{}{}",
        v.out,
        v.err
    );

    // Upgrade to release 2: the service restarts, the edited config stays.
    c.ok(&format!(
        "sed -i 's/^log_level = .*/log_level = \"debug\"/' {CONF}"
    ));
    let edited = c.ok(&format!("cat {CONF}"));
    let pid_before = main_pid(&c, "gala-gopher");
    let gopher2 = inside(&r2, "/rpms/r2", "gala-gopher-0");
    let devel2 = inside(&r2, "/rpms/r2", "gala-gopher-devel-");
    let spider2 = inside(&r2, "/rpms/r2", "gala-spider-");
    c.ok(&format!(
        "rpm -U --nodeps --force-debian {gopher2} {devel2} {spider2}"
    ));
    assert!(
        c.ok("rpm -q gala-gopher").contains("-2"),
        "release 2 installed"
    );
    c.wait_ok(
        Duration::from_secs(20),
        "the upgraded service to be active",
        "systemctl is-active gala-gopher",
    );
    assert_ne!(
        main_pid(&c, "gala-gopher"),
        pid_before,
        "the upgrade should restart the service"
    );
    assert_eq!(
        c.ok(&format!("cat {CONF}")),
        edited,
        "the edited config is kept"
    );

    // gala-spider's service: no capability at all.
    c.ok("systemctl start gala-spider");
    assert_eq!(c.ok("systemctl is-active gala-spider").trim(), "active");
    let spid = main_pid(&c, "gala-spider");
    assert!(
        caps_of(&c, &spid, "CapEff").is_empty() && caps_of(&c, &spid, "CapBnd").is_empty(),
        "gala-spider runs with no capability"
    );
    c.ok("curl -sf http://127.0.0.1:11115/gala-spider/api/v1/get_status >/dev/null");

    // rpm -e: the service stops, the files go, the edited config stays as
    // .rpmsave.
    c.ok("rpm -e --nodeps gala-gopher-devel gala-gopher gala-spider");
    assert_ne!(
        c.sh("systemctl is-active gala-gopher").out.trim(),
        "active",
        "rpm -e stops the service"
    );
    assert_ne!(
        c.sh("test -e /usr/bin/gala-gopher").code,
        0,
        "binary removed"
    );
    assert_ne!(c.sh("test -e /opt/gala-gopher/meta/tcp_link.meta").code, 0);
    assert_eq!(
        c.ok(&format!("cat {CONF}.rpmsave")),
        edited,
        "the edited config is left as .rpmsave"
    );
    eprintln!("service: whole scenario in {:.0?}", t0.elapsed());
}
