//! gala-gopher beside Prometheus node_exporter, on the same machine in the
//! same job: RSS, idle CPU, and CPU per scrape (and per 1000 series), each
//! as a ratio gala-gopher / node_exporter.
//!
//! Both servers listen on 127.0.0.1 only. This program starts each one
//! itself, keeps its PID, and stops exactly those PIDs at the end (also on
//! error or panic). The whole run is bounded: the idle window (5 minutes by
//! default, the measure) plus about 30 s, plus up to 60 s of waiting
//! for the machine's TCP sockets to drain first, and never more than
//! `--budget-secs` (450 s by default).
//!
//! Usage: `peer [--gopher PATH] [--node-exporter PATH] [--idle-secs S]
//!              [--out-dir DIR] [--budget-secs S] [--settle-secs S]
//!              [--without PROBE]...`
//! (`--without system_tcp` switches a default probe off, to attribute the
//! idle cost.)

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use gopher_bench::{base_config, free_port};

/// Scrapes before the second RSS reading.
const RSS_SCRAPES: usize = 100;
/// Scrapes timed for CPU per scrape (at least; more when the CPU clock has
/// not advanced enough ticks for a precise figure).
const CPU_SCRAPES: usize = 200;
/// Stop extending the CPU run once this many ticks were consumed.
const CPU_MIN_TICKS: u64 = 100;
/// ... or after this many scrapes, or this long.
const CPU_MAX_SCRAPES: usize = 5000;
const CPU_MAX_TIME: Duration = Duration::from_secs(10);
/// Time from start to the first RSS reading: at least two periods of the
/// slowest default probe (5 s).
const WARMUP: Duration = Duration::from_secs(12);
/// The tables of the default probes; the warm-up waits until each shows.
const DEFAULT_ENTITIES: [&str; 4] = [
    "system_meminfo",
    "system_vmstat",
    "system_inode",
    "system_tcp",
];

/// Figures of the legacy C agent, for reference.
const LEGACY_RSS_MB: f64 = 10.9;
const LEGACY_IDLE_PCT: &str = "0.40-0.47";

struct Opts {
    gopher: PathBuf,
    node_exporter: PathBuf,
    idle: Duration,
    out_dir: Option<PathBuf>,
    budget: Duration,
    /// Default probes switched off (to attribute the idle cost).
    without: Vec<String>,
    /// Longest wait for the machine's TCP sockets to drain before starting.
    settle: Duration,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn opts() -> anyhow::Result<Opts> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    let mut o = Opts {
        gopher: target.join("release").join("gala-gopher"),
        node_exporter: PathBuf::from("/usr/bin/prometheus-node-exporter"),
        idle: Duration::from_secs(300),
        out_dir: None,
        budget: Duration::from_secs(450),
        without: Vec::new(),
        settle: Duration::from_secs(60),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--gopher" => o.gopher = val("--gopher")?.into(),
            "--node-exporter" => o.node_exporter = val("--node-exporter")?.into(),
            "--idle-secs" => {
                o.idle = Duration::from_secs(val("--idle-secs")?.parse().context("--idle-secs")?)
            }
            "--out-dir" => o.out_dir = Some(val("--out-dir")?.into()),
            "--without" => o.without.push(val("--without")?),
            "--settle-secs" => {
                o.settle =
                    Duration::from_secs(val("--settle-secs")?.parse().context("--settle-secs")?)
            }
            "--budget-secs" => {
                o.budget =
                    Duration::from_secs(val("--budget-secs")?.parse().context("--budget-secs")?)
            }
            "-h" | "--help" => {
                println!("usage: peer [--gopher PATH] [--node-exporter PATH] [--idle-secs S] [--out-dir DIR] [--budget-secs S] [--settle-secs S] [--without PROBE]...");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    for (what, p) in [
        ("gala-gopher", &mut o.gopher),
        ("node_exporter", &mut o.node_exporter),
    ] {
        // Absolute, as the servers run in a temp working directory.
        *p = std::fs::canonicalize(&*p).with_context(|| {
            format!(
                "{what} binary {} (cargo build --release -p gala-gopher; scripts/deps.sh bench)",
                p.display()
            )
        })?;
    }
    if o.idle < Duration::from_secs(5) {
        bail!("--idle-secs must be at least 5");
    }
    Ok(o)
}

/// Fails once the run's time budget is spent.
struct Deadline(Instant);

impl Deadline {
    fn check(&self, what: &str) -> anyhow::Result<()> {
        if Instant::now() >= self.0 {
            bail!("time budget exceeded while {what}");
        }
        Ok(())
    }

    fn left(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// A server this program started; stopped by its PID when dropped.
struct Server {
    name: &'static str,
    child: Child,
    client: Client,
    log: PathBuf,
}

impl Server {
    fn start(
        name: &'static str,
        mut cmd: Command,
        port: u16,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let out =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        println!(
            "peer: started {name} pid {} on 127.0.0.1:{port}",
            child.id()
        );
        Ok(Self {
            name,
            child,
            client: Client::new(port),
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the end of its log when the process has exited.
    fn alive(&mut self) -> anyhow::Result<()> {
        if let Some(st) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "{} exited ({st}); its log ends with:\n{}",
                self.name,
                tail.join("\n")
            );
        }
        Ok(())
    }

    /// SIGTERM, up to 3 s to exit, then SIGKILL; always reaped.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP/1.1 client of `GET /metrics` that keeps its connection alive
/// between scrapes, as Prometheus does (so scrapes neither pay for a TCP
/// handshake nor leave TIME_WAIT sockets, which `system_tcp` would report).
struct Client {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
    line: String,
}

impl Client {
    fn new(port: u16) -> Self {
        Self {
            port,
            conn: None,
            line: String::new(),
        }
    }

    /// One scrape; the body. Reconnects once when a kept connection fails.
    fn get(&mut self) -> anyhow::Result<String> {
        let reused = self.conn.is_some();
        match self.try_get() {
            Ok(b) => Ok(b),
            Err(_) if reused => {
                self.conn = None;
                self.try_get()
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    fn try_get(&mut self) -> anyhow::Result<String> {
        if self.conn.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::with_capacity(64 * 1024, s));
        }
        let port = self.port;
        let conn = self.conn.as_mut().context("no connection")?;
        conn.get_mut().write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
        )?;
        let line = &mut self.line;
        let mut next_line = |conn: &mut BufReader<TcpStream>| -> anyhow::Result<String> {
            line.clear();
            if conn.read_line(line)? == 0 {
                bail!("connection closed mid-response");
            }
            Ok(line.trim_end_matches(['\r', '\n']).to_owned())
        };
        let status_line = next_line(conn)?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            let h = next_line(conn)?;
            if h.is_empty() {
                break;
            }
            let Some((k, v)) = h.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => {
                    length = Some(v.parse::<usize>().context("bad Content-Length")?)
                }
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => close = v.contains("close"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let size = next_line(conn)?;
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .context("bad chunk size")?;
                if size == 0 {
                    // Trailers, then the empty line.
                    while !next_line(conn)?.is_empty() {}
                    break;
                }
                let at = body.len();
                body.resize(at + size, 0);
                conn.read_exact(&mut body[at..])?;
                if !next_line(conn)?.is_empty() {
                    bail!("chunk not followed by CRLF");
                }
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            conn.read_exact(&mut body)?;
        } else {
            conn.read_to_end(&mut body)?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        if status != "200" {
            bail!("HTTP status {status:?}");
        }
        String::from_utf8(body).context("body is not UTF-8")
    }
}

/// Series in an exposition: lines that are neither empty nor comments.
fn count_series(body: &str) -> usize {
    body.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count()
}

/// Memory and thread figures from /proc/<pid>/status, in kB.
#[derive(Clone, Copy, Default)]
struct Mem {
    rss: u64,
    anon: u64,
    file: u64,
    hwm: u64,
    threads: u64,
}

fn mem(pid: u32) -> anyhow::Result<Mem> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let mut m = Mem::default();
    for line in s.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let n = v
            .split_whitespace()
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        match k {
            "VmRSS" => m.rss = n,
            "RssAnon" => m.anon = n,
            "RssFile" => m.file = n,
            "VmHWM" => m.hwm = n,
            "Threads" => m.threads = n,
            _ => {}
        }
    }
    if m.rss == 0 {
        bail!("no VmRSS in /proc/{pid}/status");
    }
    Ok(m)
}

/// utime + stime of the whole process (every thread, live or gone), in ticks.
fn ticks(pid: u32) -> anyhow::Result<u64> {
    Ok(ticks_split(pid)?.0)
}

/// (utime + stime, cutime + cstime) of a process, in ticks: its own threads,
/// and its children that it waited for (e.g. a `start_check` shell).
fn ticks_split(pid: u32) -> anyhow::Result<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    let rest = s
        .rfind(')')
        .map(|i| &s[i + 1..])
        .context("malformed stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let u: u64 = f.get(11).context("no utime")?.parse()?;
    let st: u64 = f.get(12).context("no stime")?.parse()?;
    let cu: u64 = f.get(13).context("no cutime")?.parse()?;
    let cs: u64 = f.get(14).context("no cstime")?.parse()?;
    Ok((u + st, cu + cs))
}

/// Run time of the live threads of a process in ns (the first field of
/// /proc/<pid>/task/*/schedstat): finer than ticks, for the idle window.
fn sched_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Per-thread (tid, name, utime, stime) ticks of a process, with the
/// thread's run time in ns from schedstat (finer than ticks).
fn thread_ticks(pid: u32) -> Vec<(u32, String, u64, u64, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Ok(s) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (s.find('('), s.rfind(')')) else {
            continue;
        };
        let name = s[open + 1..close].to_owned();
        let f: Vec<&str> = s[close + 1..].split_whitespace().collect();
        let t = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        let tid = e.file_name().to_string_lossy().parse().unwrap_or(0);
        let ns = std::fs::read_to_string(e.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        out.push((tid, name, t(11), t(12), ns));
    }
    out.sort();
    out
}

/// "name[tid] u+s (ms), ..." for every thread between two readings: ticks
/// of utime and stime, and the run time by schedstat in ms.
fn thread_delta(
    before: &[(u32, String, u64, u64, u64)],
    after: &[(u32, String, u64, u64, u64)],
) -> String {
    let mut parts = Vec::new();
    for (tid, name, u1, s1, n1) in after {
        let (u0, s0, n0) = before
            .iter()
            .find(|b| b.0 == *tid)
            .map_or((0, 0, 0), |b| (b.2, b.3, b.4));
        parts.push(format!(
            "{name}[{tid}] {}+{} ({:.1} ms)",
            u1.saturating_sub(u0),
            s1.saturating_sub(s0),
            n1.saturating_sub(n0) as f64 / 1e6
        ));
    }
    parts.join(", ")
}

fn clk_tck() -> anyhow::Result<f64> {
    let o = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("run getconf CLK_TCK")?;
    let v: f64 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .context("parse getconf CLK_TCK")?;
    if v <= 0.0 {
        bail!("CLK_TCK is {v}");
    }
    Ok(v)
}

/// The gala-gopher config for this run: `config/gala-gopher.toml` when it
/// exists, with every path and port moved into `dir`, else its equivalent
/// written here (the four default probes).
fn gopher_config(dir: &Path, port: u16, without: &[String]) -> anyhow::Result<String> {
    let repo = repo();
    let d = dir.display();
    let meta = repo.join("meta");
    let default = repo.join("config").join("gala-gopher.toml");
    if default.exists() {
        let src = std::fs::read_to_string(&default)
            .with_context(|| format!("read {}", default.display()))?;
        let mut t: toml::Table = src
            .parse()
            .with_context(|| format!("parse {}", default.display()))?;
        let mut set = |section: &str, key: &str, v: toml::Value| {
            let s = t
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let Some(s) = s.as_table_mut() {
                s.insert(key.to_owned(), v);
            }
        };
        let s = |p: String| toml::Value::String(p);
        set("global", "meta_dir", s(meta.display().to_string()));
        set("global", "state_dir", s(format!("{d}/state")));
        set("logs", "metric_dir", s(format!("{d}/logs/metrics")));
        set("logs", "event_dir", s(format!("{d}/logs/event")));
        set("logs", "meta_dir", s(format!("{d}/logs/meta")));
        set("logs", "debug_dir", s(format!("{d}/logs/debug")));
        set("web_server", "port", toml::Value::Integer(i64::from(port)));
        set("web_server", "bind_addr", s("127.0.0.1".into()));
        set(
            "rest_api_server",
            "port",
            toml::Value::Integer(i64::from(free_port()?)),
        );
        set("rest_api_server", "bind_addr", s("127.0.0.1".into()));
        if let Some(g) = t.get_mut("global").and_then(toml::Value::as_table_mut) {
            // Log to stderr, which goes to this run's log file.
            g.remove("log_file_name");
        }
        if let Some(probes) = t.get_mut("probes").and_then(toml::Value::as_array_mut) {
            for p in probes.iter_mut().filter_map(toml::Value::as_table_mut) {
                let off = p
                    .get("name")
                    .and_then(toml::Value::as_str)
                    .is_some_and(|n| without.iter().any(|w| w == n));
                if off {
                    p.insert("switch".into(), toml::Value::String("off".into()));
                }
            }
        }
        println!(
            "peer: gala-gopher config derived from {}",
            default.strip_prefix(&repo).unwrap_or(&default).display()
        );
        return Ok(toml::to_string(&t)?);
    }
    println!(
        "peer: {} does not exist; using its documented defaults",
        default.display()
    );
    let mut c = base_config(dir, port);
    c.push_str("\n[imdb]\nmax_records_num = 1024\nrecord_timeout = 60\n");
    for (name, param) in [
        ("system_meminfo", "-t 5"),
        ("system_vmstat", "-t 5"),
        ("system_inode", "-t 5"),
        ("system_tcp", "-t 5"),
    ] {
        let switch = if without.iter().any(|w| w == name) {
            "off"
        } else {
            "on"
        };
        c.push_str(&format!(
            "\n[[probes]]\nname = \"{name}\"\nparam = \"{param}\"\nswitch = \"{switch}\"\n"
        ));
    }
    Ok(c)
}

/// The machine's TCP socket counts from /proc/net/sockstat{,6}: gala-gopher's
/// `system_tcp` reads every socket each period, so they drive its cost.
fn tcp_counts() -> (u64, u64, u64) {
    let read = |p: &str, prefix: &str| -> Vec<(String, u64)> {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let Some(line) = text.lines().find(|l| l.starts_with(prefix)) else {
            return Vec::new();
        };
        let f: Vec<&str> = line.split_whitespace().skip(1).collect();
        f.chunks(2)
            .filter_map(|c| Some((c.first()?.to_string(), c.get(1)?.parse().ok()?)))
            .collect()
    };
    let v4 = read("/proc/net/sockstat", "TCP:");
    let v6 = read("/proc/net/sockstat6", "TCP6:");
    let get = |v: &[(String, u64)], k: &str| v.iter().find(|(n, _)| n == k).map_or(0, |(_, x)| *x);
    (get(&v4, "inuse"), get(&v4, "tw"), get(&v6, "inuse"))
}

/// Above this many TCP sockets, `system_tcp`'s figures are not those of an
/// idle machine.
const MANY_SOCKETS: u64 = 500;

fn tcp_sockets() -> String {
    let (inuse, tw, inuse6) = tcp_counts();
    let warn = if inuse + tw + inuse6 > MANY_SOCKETS {
        " (MANY: system_tcp's cost and series are inflated)"
    } else {
        ""
    };
    format!("IPv4 inuse {inuse} + time_wait {tw}, IPv6 inuse {inuse6}{warn}")
}

/// Names of the probes a config switches on (not `off`).
fn probes_on(cfg: &str) -> Vec<String> {
    let Ok(t) = cfg.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for key in ["probes", "extend_probes"] {
        let Some(list) = t.get(key).and_then(toml::Value::as_array) else {
            continue;
        };
        for p in list.iter().filter_map(toml::Value::as_table) {
            let name = p.get("name").and_then(toml::Value::as_str).unwrap_or("?");
            let switch = p
                .get("switch")
                .and_then(toml::Value::as_str)
                .unwrap_or("on");
            let param = p.get("param").and_then(toml::Value::as_str).unwrap_or("");
            if switch != "off" {
                out.push(format!("{name} ({param:?}, {switch})"));
            }
        }
    }
    out
}

/// What was measured for one server.
#[derive(Default, Clone, Copy)]
struct Figures {
    mem_warm: Mem,
    /// At the end of the idle window.
    mem_idle: Mem,
    mem_scraped: Mem,
    /// Own threads and waited-for children, over the idle window.
    idle_pct: f64,
    idle_ticks: u64,
    /// Of which children (`start_check` shells).
    idle_child_ticks: u64,
    /// Live threads by schedstat, over the idle window.
    idle_sched_pct: f64,
    series: f64,
    bytes: f64,
    cpu_scrapes: usize,
    cpu_ticks: u64,
    cpu_wall: Duration,
    /// CPU per scrape, idle share subtracted, ms.
    ms_per_scrape: f64,
}

impl Figures {
    fn ms_per_1000_series(&self) -> f64 {
        if self.series == 0.0 {
            f64::NAN
        } else {
            self.ms_per_scrape * 1000.0 / self.series
        }
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn scrape_n(s: &mut Server, n: usize, dl: &Deadline) -> anyhow::Result<()> {
    for _ in 0..n {
        dl.check("scraping")?;
        s.client
            .get()
            .with_context(|| format!("scrape {}", s.name))?;
    }
    s.alive()
}

/// One timed run of sequential scrapes.
struct CpuRun {
    scrapes: usize,
    ticks: u64,
    wall: Duration,
    /// Mean series and bytes per scrape over the run.
    series: f64,
    bytes: f64,
    last: String,
}

/// Times at least `CPU_SCRAPES` sequential scrapes, more while the CPU clock
/// has advanced fewer than `CPU_MIN_TICKS` ticks (bounded).
fn cpu_run(s: &mut Server, dl: &Deadline) -> anyhow::Result<CpuRun> {
    let pid = s.pid();
    let t0 = Instant::now();
    let k0 = ticks(pid)?;
    let (mut n, mut series, mut bytes) = (0usize, 0usize, 0usize);
    let mut last;
    loop {
        dl.check("timing scrapes")?;
        last = s
            .client
            .get()
            .with_context(|| format!("scrape {}", s.name))?;
        n += 1;
        series += count_series(&last);
        bytes += last.len();
        if n >= CPU_SCRAPES && (n % 50 == 0) {
            let dk = ticks(pid)? - k0;
            if dk >= CPU_MIN_TICKS || n >= CPU_MAX_SCRAPES || t0.elapsed() >= CPU_MAX_TIME {
                break;
            }
        }
    }
    let wall = t0.elapsed();
    let dk = ticks(pid)? - k0;
    s.alive()?;
    Ok(CpuRun {
        scrapes: n,
        ticks: dk,
        wall,
        series: series as f64 / n as f64,
        bytes: bytes as f64 / n as f64,
        last,
    })
}

fn row(name: &str, g: f64, ne: f64, prec: usize) {
    let ratio = if ne == 0.0 {
        "n/a".to_owned()
    } else {
        format!("{:.2}", g / ne)
    };
    println!("{name:<30} gopher {g:>9.prec$}  node_exporter {ne:>9.prec$}  ratio {ratio}");
}

fn run() -> anyhow::Result<()> {
    let o = opts()?;
    let t_start = Instant::now();
    let dl = Deadline(t_start + o.budget);
    let clk = clk_tck()?;
    let dir = tempfile::Builder::new()
        .prefix("gopher-bench-peer.")
        .tempdir()
        .context("temp dir")?;

    // Other work on a shared machine can leave thousands of TIME_WAIT
    // sockets, which system_tcp reads every period: wait (bounded) for them
    // to drain, so the figures are those of a quiet machine.
    let settle_by = Instant::now() + o.settle;
    loop {
        let (a, b, c) = tcp_counts();
        if a + b + c <= MANY_SOCKETS {
            break;
        }
        if Instant::now() >= settle_by {
            println!(
                "peer: WARNING: still {} TCP sockets after {} s; measuring anyway",
                a + b + c,
                o.settle.as_secs()
            );
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    println!(
        "peer: TCP sockets on the machine before start: {}",
        tcp_sockets()
    );

    let gport = free_port()?;
    let nport = free_port()?;
    let cfg = dir.path().join("gala-gopher.toml");
    let cfg_text = gopher_config(dir.path(), gport, &o.without)?;
    std::fs::write(&cfg, &cfg_text).context("write the temp config")?;
    println!(
        "peer: gala-gopher probes on: {}",
        probes_on(&cfg_text).join(", ")
    );
    let check = Command::new(&o.gopher)
        .arg("check-config")
        .arg(&cfg)
        .output()
        .context("run gala-gopher check-config")?;
    if !check.status.success() {
        bail!(
            "gala-gopher check-config {} failed:\n{}{}",
            cfg.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }

    let mut cmd = Command::new(&o.gopher);
    cmd.arg("--config").arg(&cfg).current_dir(dir.path());
    let mut g = Server::start(
        "gala-gopher",
        cmd,
        gport,
        dir.path().join("gala-gopher.log"),
    )?;
    let mut cmd = Command::new(&o.node_exporter);
    cmd.arg(format!("--web.listen-address=127.0.0.1:{nport}"))
        .current_dir(dir.path());
    let mut n = Server::start(
        "node_exporter",
        cmd,
        nport,
        dir.path().join("node_exporter.log"),
    )?;
    let started = Instant::now();

    // Ready: both answer, and gala-gopher shows every default probe's table.
    let ready_by = Instant::now() + Duration::from_secs(20);
    let mut missing: Vec<&str> = DEFAULT_ENTITIES
        .iter()
        .copied()
        .filter(|e| !o.without.iter().any(|w| w == e))
        .collect();
    loop {
        g.alive()?;
        n.alive()?;
        dl.check("waiting for the servers")?;
        let gb = g.client.get().ok();
        let nb = n.client.get().ok();
        if let Some(b) = &gb {
            missing.retain(|e| !b.contains(&format!("gala_gopher_{e}_")));
        }
        if gb.is_some() && nb.is_some() && missing.is_empty() {
            break;
        }
        if Instant::now() >= ready_by {
            if gb.is_none() || nb.is_none() {
                bail!(
                    "servers not answering after 20 s (gala-gopher {}, node_exporter {})",
                    gb.is_some(),
                    nb.is_some()
                );
            }
            println!(
                "peer: WARNING: gala-gopher shows no series of {} after 20 s",
                missing.join(", ")
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "peer: both ready after {:.1} s; warming up until {} s",
        started.elapsed().as_secs_f64(),
        WARMUP.as_secs()
    );
    std::thread::sleep(WARMUP.saturating_sub(started.elapsed()));

    let mut fg = Figures::default();
    let mut fnx = Figures::default();
    fg.mem_warm = mem(g.pid())?;
    fnx.mem_warm = mem(n.pid())?;

    // Idle: no scrapes, both side by side.
    if o.idle + Duration::from_secs(30) > dl.left() {
        bail!(
            "not enough time budget left for {} s of idle measurement",
            o.idle.as_secs()
        );
    }
    let socks_idle = tcp_sockets();
    println!("peer: idle for {} s (no scrapes)", o.idle.as_secs());
    let (gt0, nt0) = (thread_ticks(g.pid()), thread_ticks(n.pid()));
    let (gs0, ns0) = (sched_ns(g.pid()), sched_ns(n.pid()));
    let (g0, n0, t0) = (ticks_split(g.pid())?, ticks_split(n.pid())?, Instant::now());
    // Checked each minute, so a server that died is seen early.
    let idle_end = t0 + o.idle;
    while Instant::now() < idle_end {
        std::thread::sleep(
            idle_end
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(60)),
        );
        g.alive()?;
        n.alive()?;
    }
    let (g1, n1, wall) = (ticks_split(g.pid())?, ticks_split(n.pid())?, t0.elapsed());
    let (gs1, ns1) = (sched_ns(g.pid()), sched_ns(n.pid()));
    let (gt1, nt1) = (thread_ticks(g.pid()), thread_ticks(n.pid()));
    fg.mem_idle = mem(g.pid())?;
    fnx.mem_idle = mem(n.pid())?;
    let idle_threads = [
        format!("gala-gopher: {}", thread_delta(&gt0, &gt1)),
        format!("node_exporter: {}", thread_delta(&nt0, &nt1)),
    ];
    g.alive()?;
    n.alive()?;
    let pct = |dk: u64| 100.0 * dk as f64 / clk / wall.as_secs_f64();
    let all = |a: (u64, u64), b: (u64, u64)| (b.0 + b.1).saturating_sub(a.0 + a.1);
    (fg.idle_ticks, fnx.idle_ticks) = (all(g0, g1), all(n0, n1));
    (fg.idle_child_ticks, fnx.idle_child_ticks) =
        (g1.1.saturating_sub(g0.1), n1.1.saturating_sub(n0.1));
    (fg.idle_pct, fnx.idle_pct) = (pct(fg.idle_ticks), pct(fnx.idle_ticks));
    let sched_pct = |a: u64, b: u64| 100.0 * b.saturating_sub(a) as f64 / 1e9 / wall.as_secs_f64();
    (fg.idle_sched_pct, fnx.idle_sched_pct) = (sched_pct(gs0, gs1), sched_pct(ns0, ns1));

    println!("peer: {RSS_SCRAPES} scrapes of each, then RSS");
    scrape_n(&mut g, RSS_SCRAPES, &dl)?;
    scrape_n(&mut n, RSS_SCRAPES, &dl)?;
    fg.mem_scraped = mem(g.pid())?;
    fnx.mem_scraped = mem(n.pid())?;
    // Where the RSS is, mapping by mapping (kept with --out-dir).
    let smaps: Vec<(&str, String)> = [&g, &n]
        .iter()
        .map(|s| {
            (
                s.name,
                std::fs::read_to_string(format!("/proc/{}/smaps", s.pid())).unwrap_or_default(),
            )
        })
        .collect();

    println!("peer: CPU per scrape: at least {CPU_SCRAPES} sequential scrapes of each");
    let mut bodies = Vec::new();
    let mut scrape_threads = Vec::new();
    for (s, f) in [(&mut g, &mut fg), (&mut n, &mut fnx)] {
        let th0 = thread_ticks(s.pid());
        let r = cpu_run(s, &dl)?;
        scrape_threads.push(format!(
            "{}: {}",
            s.name,
            thread_delta(&th0, &thread_ticks(s.pid()))
        ));
        let idle_share = f.idle_pct / 100.0 * r.wall.as_secs_f64();
        let busy = (r.ticks as f64 / clk - idle_share).max(0.0);
        f.cpu_scrapes = r.scrapes;
        f.cpu_ticks = r.ticks;
        f.cpu_wall = r.wall;
        f.ms_per_scrape = busy * 1000.0 / r.scrapes as f64;
        f.series = r.series;
        f.bytes = r.bytes;
        bodies.push((s.name, r.last));
    }
    g.stop();
    n.stop();
    let logs: Vec<(&str, String)> = [&g, &n]
        .iter()
        .map(|s| (s.name, std::fs::read_to_string(&s.log).unwrap_or_default()))
        .collect();

    if let Some(out) = &o.out_dir {
        std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
        for (name, body) in &bodies {
            std::fs::write(out.join(format!("{name}-scrape.txt")), body)?;
        }
        for (name, log) in &logs {
            std::fs::write(out.join(format!("{name}.log")), log)?;
        }
        for (name, text) in &smaps {
            std::fs::write(out.join(format!("{name}-smaps.txt")), text)?;
        }
    }

    let socks_end = tcp_sockets();
    println!();
    println!(
        "peer: TCP sockets on the machine at the idle start: {socks_idle}; at the end: {socks_end}"
    );
    println!(
        "peer: CLK_TCK {clk}, idle window {:.1} s, total run {:.0} s",
        wall.as_secs_f64(),
        t_start.elapsed().as_secs_f64()
    );
    row(
        "rss_mb_after_warmup",
        mb(fg.mem_warm.rss),
        mb(fnx.mem_warm.rss),
        1,
    );
    for (name, g, n) in [
        ("rss_mb_at_idle_end", fg.mem_idle.rss, fnx.mem_idle.rss),
        (
            "  rss_anon_mb_at_idle_end",
            fg.mem_idle.anon,
            fnx.mem_idle.anon,
        ),
        (
            "  rss_file_mb_at_idle_end",
            fg.mem_idle.file,
            fnx.mem_idle.file,
        ),
    ] {
        row(name, mb(g), mb(n), 2);
    }
    row(
        "rss_mb_after_100_scrapes",
        mb(fg.mem_scraped.rss),
        mb(fnx.mem_scraped.rss),
        1,
    );
    row(
        "  rss_anon_mb",
        mb(fg.mem_scraped.anon),
        mb(fnx.mem_scraped.anon),
        1,
    );
    row(
        "  rss_file_mb",
        mb(fg.mem_scraped.file),
        mb(fnx.mem_scraped.file),
        1,
    );
    row(
        "  vm_hwm_mb",
        mb(fg.mem_scraped.hwm),
        mb(fnx.mem_scraped.hwm),
        1,
    );
    row(
        "threads",
        fg.mem_scraped.threads as f64,
        fnx.mem_scraped.threads as f64,
        0,
    );
    row("idle_cpu_pct", fg.idle_pct, fnx.idle_pct, 3);
    row(
        "  idle_ticks",
        fg.idle_ticks as f64,
        fnx.idle_ticks as f64,
        0,
    );
    row(
        "  idle_ticks_of_children",
        fg.idle_child_ticks as f64,
        fnx.idle_child_ticks as f64,
        0,
    );
    row(
        "  idle_cpu_pct_schedstat",
        fg.idle_sched_pct,
        fnx.idle_sched_pct,
        4,
    );
    row("series_per_scrape", fg.series, fnx.series, 0);
    row("bytes_per_scrape", fg.bytes, fnx.bytes, 0);
    row(
        "  scrapes_timed",
        fg.cpu_scrapes as f64,
        fnx.cpu_scrapes as f64,
        0,
    );
    row(
        "  cpu_ticks_in_run",
        fg.cpu_ticks as f64,
        fnx.cpu_ticks as f64,
        0,
    );
    row("cpu_ms_per_scrape", fg.ms_per_scrape, fnx.ms_per_scrape, 3);
    row(
        "cpu_ms_per_1000_series",
        fg.ms_per_1000_series(),
        fnx.ms_per_1000_series(),
        3,
    );
    // Whole cost at a common scrape interval: idle work (gala-gopher's
    // probes run on their own period; node_exporter collects per scrape)
    // plus 4 scrapes a minute.
    let per_min = |f: &Figures| f.idle_pct / 100.0 * 60_000.0 + 4.0 * f.ms_per_scrape;
    row(
        "cpu_ms_per_min_at_15s_scrapes",
        per_min(&fg),
        per_min(&fnx),
        1,
    );
    for l in &idle_threads {
        println!("idle ticks per thread (utime+stime, run time), {l}");
    }
    for l in &scrape_threads {
        println!("scrape-run ticks per thread (utime+stime, run time), {l}");
    }
    println!(
        "reference: legacy C gala-gopher: rss_mb {LEGACY_RSS_MB}, idle_cpu_pct {LEGACY_IDLE_PCT}"
    );
    println!("reference: tick resolution: {:.3} ms of CPU per scrape for gopher, {:.3} for node_exporter", 1000.0 / clk / fg.cpu_scrapes.max(1) as f64, 1000.0 / clk / fnx.cpu_scrapes.max(1) as f64);
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let rss = mb(fg.mem_idle.rss);
    println!(
        "target gala-gopher idle rss < 8 MB (end of the idle window): {rss:.2} MB (node_exporter {:.2} MB, ratio {:.2}): {}",
        mb(fnx.mem_idle.rss),
        fg.mem_idle.rss as f64 / fnx.mem_idle.rss.max(1) as f64,
        verdict(rss < 8.0)
    );
    let rss = mb(fg.mem_scraped.rss);
    println!(
        "target gala-gopher rss < 10 MB after 100 scrapes: {rss:.2} MB: {}",
        verdict(rss < 10.0)
    );
    let idle_ratio = if fnx.idle_ticks == 0 {
        "n/a: node_exporter does nothing between scrapes".to_owned()
    } else {
        format!("{:.2}", fg.idle_pct / fnx.idle_pct)
    };
    println!(
        "target gala-gopher idle cpu < 0.05 % of a core over {:.0} s (own threads and start_check children): {:.2} % (node_exporter {:.2} %, ratio {idle_ratio}): {}",
        wall.as_secs_f64(),
        fg.idle_pct,
        fnx.idle_pct,
        verdict(fg.idle_pct < 0.05)
    );
    let r = fg.ms_per_1000_series() / fnx.ms_per_1000_series();
    println!(
        "target cpu per 1000 series, gala-gopher / node_exporter < 1: {r:.2}: {}",
        verdict(r < 1.0)
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peer: {e:#}");
            ExitCode::from(2)
        }
    }
}
