//! cgroup limits per probe (docs/cgroups.md): a probe that burns CPU is
//! held to its limit, measured from its cgroup's own usage counter; one
//! that allocates past its memory limit is OOM-killed, counted and
//! restarted; the agent keeps serving; the cgroups are gone after it stops.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::harness::{series_value, wait_for, Setup};

const DEMO_META: &str = include_str!("../data/demo_app.meta");

/// The per-probe CPU limit of the burning probe, percent of one CPU.
const BURN_PERCENT: u32 = 20;
/// The memory limit of the allocating probe, MiB.
const HOG_MB: u32 = 48;

fn root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the cgroup tests make real cgroups: run them as root (`make test` does)"
    );
}

/// The directories of the cgroups `pid` is in, for the controllers asked
/// (v1: the hierarchy with that controller; v2: the unified one), through
/// the test's view of the cgroup mounts.
fn cgroup_dir(pid: u32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let path = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_owned())
    })?;
    mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        (r.first() == Some(&"cgroup")
            && r.get(2)?.split(',').any(|o| o == controller)
            && l[3] == "/")
            .then(|| PathBuf::from(l[4]).join(path.trim_start_matches('/')))
    })
}

/// The v2 cgroup dir of `pid` (hosts without v1 cpu/memory).
fn cgroup_dir_v2(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let l: Vec<&str> = left.split(' ').collect();
        (right.starts_with("cgroup2 ") && l[3] == "/")
            .then(|| PathBuf::from(l[4]).join(path.trim_start_matches('/')))
    })
}

/// CPU time used by the cgroup of `pid`, nanoseconds, from the cgroup's own
/// counter (v1 cpuacct.usage, v2 cpu.stat usage_usec), and the file read.
fn cpu_usage_ns(pid: u32) -> (u64, PathBuf) {
    if let Some(d) = cgroup_dir(pid, "cpuacct") {
        let f = d.join("cpuacct.usage");
        let v = std::fs::read_to_string(&f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .trim()
            .parse()
            .expect("cpuacct.usage is a number");
        return (v, f);
    }
    let d = cgroup_dir_v2(pid).expect("the probe's cgroup");
    let f = d.join("cpu.stat");
    let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    let us: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .expect("usage_usec");
    (us * 1000, f)
}

/// The pids of the demo_app rows with `comm` in a scrape.
fn pids_of(expo: &str, comm: &str) -> Vec<u32> {
    expo.lines()
        .filter(|l| {
            l.starts_with("gala_gopher_demo_requests{") && l.contains(&format!("comm=\"{comm}\""))
        })
        .filter_map(|l| l.split("pid=\"").nth(1)?.split('"').next()?.parse().ok())
        .collect()
}

#[test]
fn probes_are_held_to_their_cgroup_limits_and_oom_kills_restart_them() {
    root();
    let s = Setup::new(&[("demo_app.meta", DEMO_META)]);
    // Busy loop in the shell; a record now and then, with its pid.
    let burn = s.script(
        "burn.sh",
        "i=0\nwhile :; do\n  i=$((i+1))\n  if [ $((i % 20000)) -eq 0 ]; then echo \"|demo_app|$$|burn|$i|0|\"; fi\ndone",
    );
    // Says its pid, waits a little, then allocates 1 MiB at a time until
    // the OOM killer ends it.
    let hog = s.script(
        "hog.sh",
        "echo \"|demo_app|$$|hog|1|0|\"\nsleep 3\nexec python3 -c '\nimport time\nheld = []\nwhile True:\n    held.append(bytearray(1 << 20))\n    time.sleep(0.002)\n'",
    );
    let cfg = format!(
        "{}\n[cgroup]\ncpu_percent_total = 60\n\n[cgroup.probes.burn]\ncpu_percent = {BURN_PERCENT}\n\n\
         [cgroup.probes.hog]\nmemory_mb = {HOG_MB}\n\n\
         [[extend_probes]]\nname = \"burn\"\ncommand = \"{}\"\nswitch = \"on\"\n\n\
         [[extend_probes]]\nname = \"hog\"\ncommand = \"{}\"\nswitch = \"on\"\n",
        s.base_config().replace("restart_max = 3", "restart_max = 20"),
        burn.display(),
        hog.display()
    );
    let mut agent = s.start(&cfg);

    // --- CPU: the burning probe stays within its limit. -----------------
    let burn_pid = wait_for(
        Duration::from_secs(20),
        "a record of the burning probe",
        || pids_of(&agent.scrape(), "burn").first().copied(),
    );
    let expo = agent.scrape();
    let limited = series_value(
        &expo,
        "gala_gopher_self_probe_cgroup_limited{probe=\"burn\"",
    );
    assert_eq!(
        limited,
        Some(1.0),
        "the burn probe runs with its limits; cgroup series:\n{}\nlog:\n{}",
        expo.lines()
            .filter(|l| l.contains("probe_cgroup"))
            .collect::<Vec<_>>()
            .join("\n"),
        agent.log_text()
    );
    let burn_cpu_dir = cgroup_dir(burn_pid, "cpu")
        .or_else(|| cgroup_dir_v2(burn_pid))
        .expect("burn's cgroup");
    let burn_mem_dir = cgroup_dir(burn_pid, "memory")
        .or_else(|| cgroup_dir_v2(burn_pid))
        .expect("burn's memory cgroup");
    let (u0, file) = cpu_usage_ns(burn_pid);
    let t0 = Instant::now();
    let mut scrapes = 0;
    while t0.elapsed() < Duration::from_secs(10) {
        // The agent keeps serving meanwhile.
        let e = agent.scrape();
        assert!(e.contains("gala_gopher_self_probe_cgroup_limited"));
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let (u1, _) = cpu_usage_ns(burn_pid);
    let secs = t0.elapsed().as_secs_f64();
    let used = (u1 - u0) as f64 / 1e9 / secs * 100.0;
    println!(
        "cgroups: the capped probe used {used:.1} % of one CPU over {secs:.1} s (limit {BURN_PERCENT} %), \
         measured from {}; {scrapes} scrapes served meanwhile",
        file.display()
    );
    assert!(
        used <= f64::from(BURN_PERCENT) + 2.0,
        "the burning probe used {used:.1} % of a CPU, over its {BURN_PERCENT} % limit"
    );
    assert!(
        used >= f64::from(BURN_PERCENT) * 0.5,
        "the burning probe hardly ran ({used:.1} %): is the measure right?"
    );
    let expo = agent.scrape();
    let throttled = series_value(
        &expo,
        "gala_gopher_self_probe_cgroup_cpu_throttled_periods_total{probe=\"burn\"",
    )
    .expect("throttled periods of burn");
    assert!(throttled > 0.0, "burn was never throttled:\n{expo}");

    // --- Memory: the hog is OOM-killed, counted and restarted. ----------
    let first = wait_for(Duration::from_secs(20), "a record of the hog", || {
        pids_of(&agent.scrape(), "hog").first().copied()
    });
    // The hog may be gone already: its cgroup is burn's sibling.
    let hog_dir = burn_mem_dir.parent().expect("parent").join("hog");
    let expo = wait_for(
        Duration::from_secs(40),
        "the hog OOM-killed, counted and restarted",
        || {
            let e = agent.scrape();
            let kills = series_value(
                &e,
                "gala_gopher_self_probe_cgroup_oom_kills_total{probe=\"hog\"",
            )
            .unwrap_or(0.0);
            let pids = pids_of(&e, "hog");
            (kills >= 1.0 && pids.iter().any(|p| *p != first)).then_some(e)
        },
    );
    let kills = series_value(
        &expo,
        "gala_gopher_self_probe_cgroup_oom_kills_total{probe=\"hog\"",
    );
    println!("cgroups: the hog ({HOG_MB} MiB limit) was OOM-killed {kills:?} times and restarted");
    assert!(
        agent.log_text().contains("OOM killer"),
        "the kill is named in the log:\n{}",
        agent.log_text()
    );
    // Burn still reports: the other probe was untouched.
    assert!(!pids_of(&agent.scrape(), "burn").is_empty());

    // --- Stop: the cgroups are removed. ----------------------------------
    let parent = burn_cpu_dir.parent().expect("parent").to_path_buf();
    assert!(burn_cpu_dir.exists() && hog_dir.exists());
    assert_eq!(agent.stop(), Some(0), "log:\n{}", agent.log_text());
    for d in [&burn_cpu_dir, &hog_dir] {
        assert!(
            !d.exists(),
            "{} is left after the agent stopped; log:\n{}",
            d.display(),
            agent.log_text()
        );
    }
    // The parent goes too. The shared name (`gala-gopher-probes`, taken by
    // the first agent of a cgroup) may be made again at once by another
    // agent of this test run; one of the agent's own (`-<pid>`) may not.
    let name = parent
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    assert!(
        name.starts_with("gala-gopher-probes"),
        "{}",
        parent.display()
    );
    assert!(
        name == "gala-gopher-probes" || !parent.exists(),
        "{} is left after the agent stopped; log:\n{}",
        parent.display(),
        agent.log_text()
    );
    assert!(
        agent.log_text().contains("removing the probes' cgroups"),
        "the agent removed its cgroups itself"
    );
}

#[test]
fn cgroups_can_be_switched_off() {
    root();
    let s = Setup::new(&[("demo_app.meta", DEMO_META)]);
    let script = s.script("demo.sh", "echo \"|demo_app|$$|off|1|0|\"\nexec sleep 600");
    let cfg = format!(
        "{}\n[cgroup]\nenabled = false\n\n[[extend_probes]]\nname = \"off\"\ncommand = \"{}\"\nswitch = \"on\"\n",
        s.base_config(),
        script.display()
    );
    let agent = s.start(&cfg);
    let pid = wait_for(Duration::from_secs(20), "a record", || {
        pids_of(&agent.scrape(), "off").first().copied()
    });
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup of the probe");
    assert!(
        !text.contains("gala-gopher-probes"),
        "with enabled = false the probe is in no probe cgroup:\n{text}"
    );
    assert!(!agent
        .scrape()
        .contains("gala_gopher_self_probe_cgroup_limited{probe=\"off\""));
}
