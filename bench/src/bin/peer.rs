//! gala-gopher beside Prometheus node_exporter, on the same machine in the
//! same job: RSS, idle CPU, and CPU per scrape (and per 1000 series), each
//! as a ratio gala-gopher / node_exporter.
//!
//! Both servers listen on 127.0.0.1 only. This program starts each one
//! itself, keeps its PID, and stops exactly those PIDs at the end (also on
//! error or panic). The whole run is bounded (about 100 s by default, never
//! more than `--budget-secs`, 170 s by default).
//!
//! Usage: `peer [--gopher PATH] [--node-exporter PATH] [--idle-secs S]
//!              [--out-dir DIR] [--budget-secs S]`

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Scrapes before the second RSS reading.
const RSS_SCRAPES: usize = 100;
/// Scrapes timed for CPU per scrape (at least; more when the CPU clock has
/// not advanced enough ticks for a precise figure).
const CPU_SCRAPES: usize = 200;
/// Stop extending the CPU run once this many ticks were consumed.
const CPU_MIN_TICKS: u64 = 100;
/// ... or after this many scrapes, or this long.
const CPU_MAX_SCRAPES: usize = 5000;
const CPU_MAX_TIME: Duration = Duration::from_secs(15);
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
        idle: Duration::from_secs(60),
        out_dir: None,
        budget: Duration::from_secs(170),
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
            "--budget-secs" => {
                o.budget =
                    Duration::from_secs(val("--budget-secs")?.parse().context("--budget-secs")?)
            }
            "-h" | "--help" => {
                println!("usage: peer [--gopher PATH] [--node-exporter PATH] [--idle-secs S] [--out-dir DIR] [--budget-secs S]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    for (what, p) in [
        ("gala-gopher", &o.gopher),
        ("node_exporter", &o.node_exporter),
    ] {
        if !p.exists() {
            bail!("{what} binary {} is missing (cargo build --release -p gala-gopher; scripts/deps.sh bench)", p.display());
        }
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

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind an ephemeral port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

/// A server this program started; stopped by its PID when dropped.
struct Server {
    name: &'static str,
    child: Child,
    port: u16,
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
            port,
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

/// One `GET /metrics` over a fresh HTTP/1.1 connection; the body.
fn scrape(port: u16) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )?;
    let mut raw = Vec::with_capacity(256 * 1024);
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).context("response is not UTF-8")?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no end of headers in the response")
    };
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("HTTP status {status:?}");
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        unchunk(body)
    } else {
        Ok(body.to_owned())
    }
}

/// Decodes a chunked body: `<hex size>[;ext]\r\n<data>\r\n ... 0\r\n\r\n`.
fn unchunk(mut rest: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(rest.len());
    loop {
        let (line, after) = rest.split_once("\r\n").context("truncated chunk size")?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .context("bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        let data = after.get(..size).context("truncated chunk")?;
        out.push_str(data);
        rest = after
            .get(size..)
            .unwrap_or("")
            .strip_prefix("\r\n")
            .context("chunk without CRLF")?;
    }
}

/// Series in an exposition: lines that are neither empty nor comments.
fn series(body: &str) -> usize {
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
    Ok(u + st)
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
fn gopher_config(dir: &Path, port: u16) -> anyhow::Result<String> {
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
        println!(
            "peer: gala-gopher config derived from {}",
            default.display()
        );
        return Ok(toml::to_string(&t)?);
    }
    println!(
        "peer: {} does not exist; using its documented defaults",
        default.display()
    );
    let mut c = format!(
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

[imdb]
max_records_num = 1024
record_timeout = 60

[web_server]
port = {port}
bind_addr = "127.0.0.1"

[logs]
metric_dir = "{d}/logs/metrics"
event_dir = "{d}/logs/event"
meta_dir = "{d}/logs/meta"
debug_dir = "{d}/logs/debug"
"#,
        meta = meta.display()
    );
    for (name, param) in [
        ("system_meminfo", ""),
        ("system_vmstat", ""),
        ("system_inode", ""),
        ("system_tcp", "-t 5"),
    ] {
        c.push_str(&format!(
            "\n[[probes]]\nname = \"{name}\"\nparam = \"{param}\"\nswitch = \"on\"\n"
        ));
    }
    Ok(c)
}

/// What was measured for one server.
#[derive(Default, Clone, Copy)]
struct Figures {
    mem_warm: Mem,
    mem_scraped: Mem,
    idle_pct: f64,
    idle_ticks: u64,
    series: usize,
    bytes: usize,
    cpu_scrapes: usize,
    cpu_ticks: u64,
    cpu_wall: Duration,
    /// CPU per scrape, idle share subtracted, ms.
    ms_per_scrape: f64,
}

impl Figures {
    fn ms_per_1000_series(&self) -> f64 {
        if self.series == 0 {
            f64::NAN
        } else {
            self.ms_per_scrape * 1000.0 / self.series as f64
        }
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn scrape_n(s: &mut Server, n: usize, dl: &Deadline) -> anyhow::Result<String> {
    let mut last = String::new();
    for _ in 0..n {
        dl.check("scraping")?;
        last = scrape(s.port).with_context(|| format!("scrape {}", s.name))?;
    }
    s.alive()?;
    Ok(last)
}

/// Times at least `CPU_SCRAPES` sequential scrapes; returns (scrapes, ticks,
/// wall, last body).
fn cpu_run(s: &mut Server, dl: &Deadline) -> anyhow::Result<(usize, u64, Duration, String)> {
    let pid = s.pid();
    let t0 = Instant::now();
    let k0 = ticks(pid)?;
    let mut n = 0;
    let mut last;
    loop {
        dl.check("timing scrapes")?;
        last = scrape(s.port).with_context(|| format!("scrape {}", s.name))?;
        n += 1;
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
    Ok((n, dk, wall, last))
}

fn row(name: &str, g: f64, ne: f64, prec: usize) {
    let ratio = if ne == 0.0 {
        "n/a".to_owned()
    } else {
        format!("{:.2}", g / ne)
    };
    println!("{name:<26} gopher {g:>9.prec$}  node_exporter {ne:>9.prec$}  ratio {ratio}");
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

    let gport = free_port()?;
    let nport = free_port()?;
    let cfg = dir.path().join("gala-gopher.toml");
    std::fs::write(&cfg, gopher_config(dir.path(), gport)?).context("write the temp config")?;
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
    let mut missing: Vec<&str> = DEFAULT_ENTITIES.to_vec();
    loop {
        g.alive()?;
        n.alive()?;
        dl.check("waiting for the servers")?;
        let gb = scrape(g.port).ok();
        let nb = scrape(n.port).ok();
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
    println!("peer: idle for {} s (no scrapes)", o.idle.as_secs());
    let (g0, n0, t0) = (ticks(g.pid())?, ticks(n.pid())?, Instant::now());
    std::thread::sleep(o.idle);
    let (g1, n1, wall) = (ticks(g.pid())?, ticks(n.pid())?, t0.elapsed());
    g.alive()?;
    n.alive()?;
    let pct = |dk: u64| 100.0 * dk as f64 / clk / wall.as_secs_f64();
    (fg.idle_ticks, fnx.idle_ticks) = (g1 - g0, n1 - n0);
    (fg.idle_pct, fnx.idle_pct) = (pct(fg.idle_ticks), pct(fnx.idle_ticks));

    println!("peer: {RSS_SCRAPES} scrapes of each, then RSS");
    scrape_n(&mut g, RSS_SCRAPES, &dl)?;
    scrape_n(&mut n, RSS_SCRAPES, &dl)?;
    fg.mem_scraped = mem(g.pid())?;
    fnx.mem_scraped = mem(n.pid())?;

    println!("peer: CPU per scrape: at least {CPU_SCRAPES} sequential scrapes of each");
    let mut bodies = Vec::new();
    for (s, f) in [(&mut g, &mut fg), (&mut n, &mut fnx)] {
        let (count, dk, wall, body) = cpu_run(s, &dl)?;
        let idle_share = f.idle_pct / 100.0 * wall.as_secs_f64();
        let busy = (dk as f64 / clk - idle_share).max(0.0);
        f.cpu_scrapes = count;
        f.cpu_ticks = dk;
        f.cpu_wall = wall;
        f.ms_per_scrape = busy * 1000.0 / count as f64;
        f.series = series(&body);
        f.bytes = body.len();
        bodies.push((s.name, body));
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
    }

    println!();
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
    row("series_per_scrape", fg.series as f64, fnx.series as f64, 0);
    row("bytes_per_scrape", fg.bytes as f64, fnx.bytes as f64, 0);
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
    println!(
        "reference: legacy C gala-gopher: rss_mb {LEGACY_RSS_MB}, idle_cpu_pct {LEGACY_IDLE_PCT}"
    );
    println!("reference: tick resolution: {:.3} ms of CPU per scrape for gopher, {:.3} for node_exporter", 1000.0 / clk / fg.cpu_scrapes.max(1) as f64, 1000.0 / clk / fnx.cpu_scrapes.max(1) as f64);
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let rss = mb(fg.mem_scraped.rss);
    println!(
        "target gala-gopher rss < 10 MB after 100 scrapes: {rss:.1} MB: {}",
        verdict(rss < 10.0)
    );
    println!(
        "target gala-gopher idle cpu < 0.1 % of a core: {:.3} %: {}",
        fg.idle_pct,
        verdict(fg.idle_pct < 0.1)
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
