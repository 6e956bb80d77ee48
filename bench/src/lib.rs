//! What the benchmark binaries share: ports and the agent's base config.

use std::net::TcpListener;
use std::path::Path;

use anyhow::Context as _;

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind an ephemeral port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

/// The agent's config without probes: metrics on 127.0.0.1:`port`, events
/// and meta to log files under `dir`, the repo's meta files. Sections may be
/// appended (`[imdb]`, `[[probes]]`).
pub fn base_config(dir: &Path, port: u16) -> String {
    let meta = Path::new(env!("CARGO_MANIFEST_DIR")).join("../meta");
    let (meta, d) = (meta.display(), dir.display());
    format!(
        r#"[global]
log_level = "info"
meta_dir = "{meta}"
state_dir = "{d}/state"

[metric]
out_channel = "web_server"

[event]
out_channel = "logs"

[meta]
out_channel = "logs"

[web_server]
port = {port}
bind_addr = "127.0.0.1"

[logs]
metric_dir = "{d}/logs/metrics"
event_dir = "{d}/logs/event"
meta_dir = "{d}/logs/meta"
debug_dir = "{d}/logs/debug"
"#
    )
}

/// The median of `v` (the upper one of an even count); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `kernel.bpf_stats_enabled`: the kernel counts each eBPF program's run
/// time and runs while it is 1.
pub const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Sets `kernel.bpf_stats_enabled` to 0 and puts the value found back when
/// dropped (on every way out, a panic included), so a benchmark leaves the
/// machine's setting as it was.
#[derive(Debug)]
pub struct BpfStatsGuard(String);

impl BpfStatsGuard {
    /// Turns the statistics off for now (needs root).
    pub fn off() -> anyhow::Result<Self> {
        let before = std::fs::read_to_string(BPF_STATS)
            .unwrap_or_default()
            .trim()
            .to_owned();
        std::fs::write(BPF_STATS, "0").context("set kernel.bpf_stats_enabled (needs root)")?;
        Ok(Self(if before.is_empty() {
            "0".into()
        } else {
            before
        }))
    }
}

impl Drop for BpfStatsGuard {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.0);
    }
}

/// A child process (a server or an agent) stopped by its PID on drop:
/// SIGTERM first, so that a server such as nginx stops its own workers,
/// then SIGKILL after 5 s.
#[derive(Debug)]
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: kill(2) on our own child's pid, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The soak run, shared by the `soak` benchmark and its test.
pub mod soak;

/// CPU time (user + system) of this whole process so far: every thread,
/// live or ended.
pub fn process_cpu() -> std::time::Duration {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + std::time::Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Ids of the eBPF programs process `pid` holds open (from its fdinfo).
pub fn prog_ids(pid: u32) -> Vec<u32> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect()
}

/// (name, run_time_ns, run_cnt) of the eBPF programs with these ids, from
/// the kernel (counted while `kernel.bpf_stats_enabled` is 1). The kernel
/// cuts names to 15 characters.
pub fn prog_stats(ids: &[u32]) -> Vec<(String, u64, u64)> {
    libbpf_rs::query::ProgInfoIter::default()
        .filter(|p| ids.contains(&p.id))
        .map(|p| {
            (
                p.name.to_string_lossy().into_owned(),
                p.run_time_ns,
                p.run_cnt,
            )
        })
        .collect()
}

/// Several spiders in one consumer group against one: the simulated
/// cluster and the graph comparison (spider_cluster and its test).
pub mod cluster;

/// A program on PATH or in ~/.cargo/bin (where scripts/kafka.sh installs
/// tansu with `cargo install`).
pub fn find_tool(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name));
    let cargo = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin").join(name));
    on_path
        .chain(cargo)
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not on PATH or in ~/.cargo/bin: run scripts/kafka.sh"))
}

/// A fresh tansu broker (in memory) on 127.0.0.1 with one topic, stopped by
/// PID when dropped.
#[derive(Debug)]
pub struct Tansu {
    _proc: Proc,
    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub addr: String,
}

impl Tansu {
    /// Starts `tansu`, waits until it listens, then creates `topic` with
    /// `partitions` partitions. The broker's stderr goes to `stderr`.
    pub fn start(
        tansu: &Path,
        topic: &str,
        partitions: u32,
        stderr: std::process::Stdio,
    ) -> anyhow::Result<Self> {
        use std::process::{Command, Stdio};
        use std::time::{Duration, Instant};
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let proc = Proc(
            Command::new(tansu)
                .args(["broker", "--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .context("start tansu")?,
        );
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t0.elapsed() > Duration::from_secs(10) {
                anyhow::bail!("tansu did not listen on {url} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = Command::new(tansu)
            .args(["topic", "create", "--broker", &url])
            .args(["--partitions", &partitions.to_string(), topic])
            .output()
            .context("tansu topic create")?;
        if !out.status.success() {
            anyhow::bail!(
                "tansu topic create {topic}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self {
            _proc: proc,
            addr: format!("127.0.0.1:{port}"),
        })
    }
}
