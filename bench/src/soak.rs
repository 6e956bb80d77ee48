//! The soak run (issue 16, target 9), shared by the `soak` benchmark (one
//! hour, `make bench`) and its five-minute test (`make test`).
//!
//! The agent runs on its default config (`config/gala-gopher.toml`, paths
//! and ports moved into a temp dir) plus one extend probe,
//! `bench/soak/gen.py`, writing 10 000 records/s over a few thousand series
//! that churn (tables in `bench/soak/soak.meta`). Beside it: 1 000 short TCP
//! connections per second on 127.0.0.1 (our client and server: connect,
//! write, read, close; both ends seen by the eBPF tcp_link probe), and a
//! keep-alive scrape of the agent's `/metrics` every sample.
//!
//! Each sample (every 5 s) reads the agent's RSS (VmRSS, RssAnon, RssFile),
//! CPU (utime + stime), open fds, threads, the series of the scrape, and the
//! self-metrics of accepted, rejected and dropped records. At the end the
//! generator is told to stop, and every record it wrote must be accepted,
//! rejected or dropped by a counter: the rest are unexplained drops.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::{free_port, median, Proc};

/// The extend probe's name in the agent's config (`probe` label).
pub const PROBE: &str = "soak";

/// What to run and for how long.
#[derive(Debug, Clone)]
pub struct Opts {
    /// The agent's binary.
    pub gopher: PathBuf,
    /// The whole run.
    pub duration: Duration,
    /// Start of the reference minute: growth is measured from the median
    /// of [warmup, warmup + 1 min) to the median of the last minute.
    pub warmup: Duration,
    /// Time between samples (and scrapes).
    pub interval: Duration,
    /// Records per second of the extend probe.
    pub records_per_sec: u32,
    /// Live series of the extend probe.
    pub series: u32,
    /// Short TCP connections per second.
    pub conns_per_sec: u32,
    /// Where the agent's log, config and the samples (`soak.csv`) go.
    pub out_dir: PathBuf,
    /// Print a line per minute.
    pub progress: bool,
}

impl Opts {
    /// The benchmark's load for `duration` with the agent `gopher`.
    pub fn new(gopher: PathBuf, duration: Duration, out_dir: PathBuf) -> Self {
        Self {
            gopher,
            duration,
            warmup: Duration::from_secs(300),
            interval: Duration::from_secs(5),
            records_per_sec: 10_000,
            series: 3_000,
            conns_per_sec: 1_000,
            out_dir,
            progress: true,
        }
    }
}

/// The repository (bench/..).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// One sample of the agent.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    /// VmRSS, RssAnon, RssFile (kB).
    pub rss_kb: u64,
    /// Anonymous part of the RSS (kB).
    pub anon_kb: u64,
    /// File-backed part of the RSS (kB).
    pub file_kb: u64,
    /// CPU of one core used since the previous sample, percent.
    pub cpu_pct: f64,
    /// Open file descriptors.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
    /// Series (non-comment lines) of the scrape: the soak's, the default
    /// probes' (which follow the machine's sockets and processes), the
    /// agent's own.
    pub series: u64,
    /// Live series of the soak's tables in the store
    /// (`gala_gopher_self_series{table="soak_N"}`): the load's own, which
    /// the machine's other activity does not move.
    pub soak_series: u64,
    /// Records the generator reports written so far.
    pub sent: u64,
    /// The probe's accepted records (self-metrics).
    pub accepted: u64,
    /// The probe's rejected records, every reason.
    pub rejected: u64,
    /// Every drop counter of the agent, all stages and components.
    pub dropped: u64,
    /// Connections completed by the TCP load so far.
    pub conns: u64,
}

/// The end of the run: what the generator wrote against what the agent
/// counted, after the generator stopped.
#[derive(Debug, Clone, Default)]
pub struct Accounting {
    /// Lines the generator wrote.
    pub sent: u64,
    /// Accepted by the agent (store-full drops are among them, counted too).
    pub accepted: u64,
    /// Rejected, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Dropped on the way to the ingress (stage ingress_queue_full of the
    /// probe).
    pub ingress_dropped: u64,
    /// Every drop counter at the end: (stage, component) -> count.
    pub drops: BTreeMap<(String, String), u64>,
    /// Restarts of the extend probe.
    pub restarts: u64,
}

impl Accounting {
    /// Records neither accepted, nor rejected, nor counted as dropped.
    pub fn unexplained(&self) -> i128 {
        i128::from(self.sent)
            - i128::from(self.accepted)
            - self.rejected.values().map(|&n| i128::from(n)).sum::<i128>()
            - i128::from(self.ingress_dropped)
    }
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options it ran with.
    pub opts: Opts,
    /// Every sample.
    pub samples: Vec<Sample>,
    /// The records' accounting.
    pub accounting: Accounting,
    /// Load seconds (first to last sample).
    pub secs: f64,
    /// TCP connections that failed (connect, write or read).
    pub conn_errors: u64,
    /// The agent's CPU over the whole run, seconds.
    pub cpu_secs: f64,
}

/// A verdict: its name, whether it holds, and the figures.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// What is checked.
    pub name: &'static str,
    /// Whether it holds.
    pub ok: bool,
    /// The figures behind it.
    pub detail: String,
}

/// The bounds a run must stay within.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most RSS growth from the reference minute to the last one, percent.
    pub rss_growth_pct: f64,
    /// Most fds at the end above the reference minute's median.
    pub fd_slack: u64,
    /// Most change of the series count between the two minutes, percent.
    pub series_change_pct: f64,
    /// Least share of the asked load (records/s, connections/s) delivered.
    pub min_load: f64,
}

impl Report {
    fn window(&self, from: f64, to: f64) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.t >= from && s.t < to)
            .collect()
    }

    /// Medians of `f` over the reference minute and over the last minute.
    pub fn windows(&self, f: impl Fn(&Sample) -> f64) -> (f64, f64) {
        let w = self.opts.warmup.as_secs_f64();
        let end = self.samples.last().map_or(0.0, |s| s.t);
        let first: Vec<f64> = self.window(w, w + 60.0).into_iter().map(&f).collect();
        let last: Vec<f64> = self
            .window(end - 60.0 + 1e-3, end + 1.0)
            .into_iter()
            .map(&f)
            .collect();
        (median(first), median(last))
    }

    /// The verdicts of the run against `b`.
    pub fn verdicts(&self, b: &Bounds) -> Vec<Verdict> {
        let mut v = Vec::new();
        let w = self.opts.warmup.as_secs() / 60;
        let (r0, r1) = self.windows(|s| s.rss_kb as f64);
        let growth = (r1 - r0) / r0 * 100.0;
        v.push(Verdict {
            name: "RSS growth after warm-up",
            ok: growth < b.rss_growth_pct,
            detail: format!(
                "median RSS minute {w}-{}: {:.0} kB, last minute: {:.0} kB, growth {growth:+.2} % (bound {} %)",
                w + 1,
                r0,
                r1,
                b.rss_growth_pct
            ),
        });
        let a = &self.accounting;
        let unexplained = a.unexplained();
        let rejected: u64 = a.rejected.values().sum();
        v.push(Verdict {
            name: "zero unexplained drops",
            ok: unexplained == 0 && a.sent > 0,
            detail: format!(
                "sent {} = accepted {} + rejected {rejected} + ingress drops {} + unexplained {unexplained}",
                a.sent, a.accepted, a.ingress_dropped
            ),
        });
        let (f0, _) = self.windows(|s| s.fds as f64);
        let fd_end = self.samples.last().map_or(0, |s| s.fds);
        let fd_max = self.samples.iter().map(|s| s.fds).max().unwrap_or(0);
        v.push(Verdict {
            name: "no fd growth",
            ok: (fd_end as f64) <= f0 + b.fd_slack as f64,
            detail: format!(
                "fds minute {w}: {f0:.0}, at the end: {fd_end}, most: {fd_max} (bound +{})",
                b.fd_slack
            ),
        });
        let (s0, s1) = self.windows(|s| s.soak_series as f64);
        let (a0, a1) = self.windows(|s| s.series as f64);
        let change = (s1 - s0) / s0 * 100.0;
        v.push(Verdict {
            name: "series stable",
            ok: change.abs() <= b.series_change_pct,
            detail: format!(
                "median live series of the soak's tables minute {w}: {s0:.0}, last minute: {s1:.0}, change {change:+.2} % (bound ±{} %); whole scrape {a0:.0} -> {a1:.0}",
                b.series_change_pct
            ),
        });
        let (t0, t1) = self.windows(|s| s.threads as f64);
        v.push(Verdict {
            name: "threads stable",
            ok: t1 <= t0 + 2.0,
            detail: format!("median threads minute {w}: {t0:.0}, last minute: {t1:.0}"),
        });
        v.push(Verdict {
            name: "extend probe never restarted",
            ok: a.restarts == 0,
            detail: format!("restarts {}", a.restarts),
        });
        let rec_rate = a.sent as f64 / self.secs.max(1.0);
        let conns = self.samples.last().map_or(0, |s| s.conns);
        let conn_rate = conns as f64 / self.secs.max(1.0);
        let want_r = f64::from(self.opts.records_per_sec);
        let want_c = f64::from(self.opts.conns_per_sec);
        v.push(Verdict {
            name: "load delivered",
            ok: rec_rate >= b.min_load * want_r && conn_rate >= b.min_load * want_c,
            detail: format!(
                "{rec_rate:.0} records/s of {want_r:.0}, {conn_rate:.0} connections/s of {want_c:.0} ({} failed), bound {:.0} %",
                self.conn_errors,
                b.min_load * 100.0
            ),
        });
        v
    }

    /// The samples as CSV (a header line first).
    pub fn csv(&self) -> String {
        let mut out = String::from(CSV_HEADER);
        for s in &self.samples {
            out.push_str(&csv_line(s));
        }
        out
    }
}

/// The columns of `soak.csv`, one per field of [`Sample`].
const CSV_HEADER: &str =
    "t_s,rss_kb,anon_kb,file_kb,cpu_pct,fds,threads,series,soak_series,sent,accepted,rejected,dropped,conns\n";

fn csv_line(s: &Sample) -> String {
    format!(
        "{:.1},{},{},{},{:.3},{},{},{},{},{},{},{},{},{}\n",
        s.t,
        s.rss_kb,
        s.anon_kb,
        s.file_kb,
        s.cpu_pct,
        s.fds,
        s.threads,
        s.series,
        s.soak_series,
        s.sent,
        s.accepted,
        s.rejected,
        s.dropped,
        s.conns
    )
}

/// The agent's config: the default one with its paths and ports moved
/// into `dir`, meta files from `dir/meta`, and the soak's extend probe.
fn config(dir: &Path, port: u16, o: &Opts) -> anyhow::Result<String> {
    let default = repo().join("config").join("gala-gopher.toml");
    let src =
        std::fs::read_to_string(&default).with_context(|| format!("read {}", default.display()))?;
    let mut t: toml::Table = src
        .parse()
        .with_context(|| format!("parse {}", default.display()))?;
    let d = dir.display();
    let text = |s: String| toml::Value::String(s);
    let edits = [
        ("global", "meta_dir", text(format!("{d}/meta"))),
        ("global", "state_dir", text(format!("{d}/state"))),
        ("logs", "metric_dir", text(format!("{d}/logs/metrics"))),
        ("logs", "event_dir", text(format!("{d}/logs/event"))),
        ("logs", "meta_dir", text(format!("{d}/logs/meta"))),
        ("logs", "debug_dir", text(format!("{d}/logs/debug"))),
        ("web_server", "port", toml::Value::Integer(port.into())),
        (
            "rest_api_server",
            "port",
            toml::Value::Integer(free_port()?.into()),
        ),
    ];
    for (section, key, v) in edits {
        let s = t
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(s) = s.as_table_mut() {
            s.insert(key.to_owned(), v);
        }
    }
    if let Some(g) = t.get_mut("global").and_then(toml::Value::as_table_mut) {
        g.remove("log_file_name");
    }
    let gen = repo().join("bench").join("soak").join("gen.py");
    let mut probe = toml::Table::new();
    probe.insert("name".into(), text(PROBE.into()));
    probe.insert("command".into(), text(gen.display().to_string()));
    probe.insert(
        "param".into(),
        text(format!(
            "--rate {} --series {} --count-file {d}/sent --stop-file {d}/stop",
            o.records_per_sec, o.series
        )),
    );
    probe.insert("switch".into(), text("on".into()));
    let list = t
        .entry("extend_probes")
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    match list.as_array_mut() {
        Some(a) => a.push(toml::Value::Table(probe)),
        None => bail!("{}: extend_probes is not an array", default.display()),
    }
    Ok(toml::to_string(&t)?)
}

/// The repository's meta files plus the soak's tables, in `dir/meta`.
fn meta_dir(dir: &Path) -> anyhow::Result<()> {
    let meta = dir.join("meta");
    std::fs::create_dir_all(&meta)?;
    let src = repo().join("meta");
    for e in std::fs::read_dir(&src).with_context(|| format!("read {}", src.display()))? {
        let e = e?;
        std::fs::copy(e.path(), meta.join(e.file_name()))?;
    }
    let soak = repo().join("bench").join("soak").join("soak.meta");
    std::fs::copy(&soak, meta.join("soak.meta"))
        .with_context(|| format!("copy {}", soak.display()))?;
    Ok(())
}

/// A kept-alive HTTP/1.1 connection for `GET /metrics`, as a Prometheus
/// server scrapes (no new connection, no TIME_WAIT socket per scrape).
#[derive(Debug)]
struct Scraper {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl Scraper {
    fn scrape(&mut self) -> anyhow::Result<String> {
        for attempt in 0..2 {
            let fresh = self.conn.is_none();
            match self.once() {
                Ok(body) => return Ok(body),
                Err(e) if fresh || attempt == 1 => {
                    self.conn = None;
                    return Err(e);
                }
                Err(_) => self.conn = None,
            }
        }
        bail!("unreachable")
    }

    fn once(&mut self) -> anyhow::Result<String> {
        if self.conn.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))?;
            s.set_read_timeout(Some(Duration::from_secs(20)))?;
            self.conn = Some(BufReader::new(s));
        }
        let r = self.conn.as_mut().context("no connection")?;
        let req = format!(
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        );
        r.get_mut().write_all(req.as_bytes())?;
        let mut head = Vec::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l)? == 0 {
                bail!("the agent closed the connection");
            }
            let l = l.trim_end().to_owned();
            if l.is_empty() {
                break;
            }
            head.push(l);
        }
        let status = head.first().cloned().unwrap_or_default();
        let header = |name: &str| {
            head.iter().skip(1).find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_ascii_lowercase())
            })
        };
        let mut body = Vec::new();
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut l = String::new();
                r.read_line(&mut l)?;
                let n = usize::from_str_radix(l.trim().split(';').next().unwrap_or(""), 16)
                    .with_context(|| format!("chunk size {l:?}"))?;
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            let n: usize = header("content-length")
                .context("a response without length")?
                .parse()
                .context("Content-Length")?;
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        if header("connection").is_some_and(|v| v.contains("close")) {
            self.conn = None;
        }
        if !status.contains(" 200") {
            bail!("GET /metrics: {status}");
        }
        Ok(String::from_utf8(body)?)
    }
}

/// A series' labels: (name, value).
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// One parsed series: name, labels, value.
fn parse_series(line: &str) -> Option<(&str, Labels<'_>, f64)> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, labels)) = head.split_once('{') else {
        return Some((head, Vec::new(), value));
    };
    let labels = labels
        .trim_end_matches('}')
        .split("\",")
        .filter_map(|kv| {
            let (k, v) = kv.split_once("=\"")?;
            Some((k, v.trim_end_matches('"')))
        })
        .collect();
    Some((name, labels, value))
}

/// What a scrape says about the soak probe and the drops.
#[derive(Debug, Default)]
struct SelfMetrics {
    series: u64,
    soak_series: u64,
    accepted: u64,
    rejected: BTreeMap<String, u64>,
    drops: BTreeMap<(String, String), u64>,
    restarts: u64,
}

fn self_metrics(body: &str) -> SelfMetrics {
    let mut m = SelfMetrics::default();
    for line in body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        m.series += 1;
        if !line.starts_with("gala_gopher_self_") {
            continue;
        }
        let Some((name, labels, value)) = parse_series(line) else {
            continue;
        };
        let label = |k: &str| labels.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let n = value as u64;
        match name {
            "gala_gopher_self_records_accepted_total" if label("probe") == Some(PROBE) => {
                m.accepted = n
            }
            "gala_gopher_self_records_rejected_total" if label("probe") == Some(PROBE) => {
                m.rejected
                    .insert(label("reason").unwrap_or("?").to_owned(), n);
            }
            "gala_gopher_self_records_dropped_total" => {
                let key = (
                    label("stage").unwrap_or("?").to_owned(),
                    label("component").unwrap_or("?").to_owned(),
                );
                m.drops.insert(key, n);
            }
            "gala_gopher_self_probe_restarts_total" if label("probe") == Some(PROBE) => {
                m.restarts = n
            }
            "gala_gopher_self_series" if label("table").is_some_and(|t| t.starts_with("soak_")) => {
                m.soak_series += n
            }
            _ => {}
        }
    }
    m
}

/// (VmRSS, RssAnon, RssFile, Threads) from /proc/<pid>/status.
fn status(pid: u32) -> anyhow::Result<[u64; 4]> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let mut out = [0; 4];
    for l in text.lines() {
        let i = match l.split(':').next() {
            Some("VmRSS") => 0,
            Some("RssAnon") => 1,
            Some("RssFile") => 2,
            Some("Threads") => 3,
            _ => continue,
        };
        out[i] = l
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    Ok(out)
}

/// utime + stime of the process, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let after = text.rsplit_once(')').map(|(_, r)| r).context("stat")?;
    // After the command: state is field 3, utime 14 and stime 15.
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    match f[..] {
        [u, s] => Ok(u + s),
        _ => bail!("{path}: no utime/stime"),
    }
}

fn fds(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&path)
        .with_context(|| format!("read {path}"))?
        .count() as u64)
}

/// The TCP load: a server answering one 64-byte message per connection,
/// and a client making `rate` connections per second.
struct TcpLoad {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
    servers: usize,
}

impl TcpLoad {
    fn start(rate: u32) -> anyhow::Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0").context("bind the load's server")?;
        let addr = l.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        let servers = 4;
        for _ in 0..servers {
            let l = l.try_clone()?;
            let stop = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut c, _)) = l.accept() else { continue };
                    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = [0u8; 64];
                    if c.read_exact(&mut buf).is_ok() && c.write_all(&buf).is_ok() {
                        // The client closes first (its side keeps the
                        // TIME_WAIT): wait for its FIN.
                        let _ = c.read(&mut buf);
                    }
                }
            }));
        }
        {
            let (stop, done, errors) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&errors));
            threads.push(std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let due = (t0.elapsed().as_secs_f64() * f64::from(rate)) as u64;
                    if n >= due {
                        std::thread::sleep(Duration::from_micros(500));
                        continue;
                    }
                    // Behind by more than a second: the lost time is not
                    // made up for.
                    n = n.max(due.saturating_sub(u64::from(rate))) + 1;
                    match one_connection(addr) {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        Ok(Self {
            stop,
            done,
            errors,
            threads,
            addr,
            servers,
        })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for _ in 0..self.servers {
            // Wakes a server thread blocked in accept.
            let _ = TcpStream::connect(self.addr);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for TcpLoad {
    fn drop(&mut self) {
        self.stop();
    }
}

fn one_connection(addr: SocketAddr) -> std::io::Result<()> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [7u8; 64];
    c.write_all(&buf)?;
    c.read_exact(&mut buf)?;
    c.shutdown(Shutdown::Both)
}

fn read_sent(dir: &Path) -> (u64, bool) {
    let text = std::fs::read_to_string(dir.join("sent")).unwrap_or_default();
    let mut w = text.split_whitespace();
    let n = w.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    (n, w.next() == Some("stopped"))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Runs the soak. Needs root (the eBPF tcp_link probe of the default
/// config); fails when the agent exits, a scrape fails or /proc cannot be
/// read.
pub fn run(o: &Opts) -> anyhow::Result<Report> {
    if o.duration < o.warmup + Duration::from_secs(120) {
        bail!("the run must last at least 2 minutes past the warm-up");
    }
    std::fs::create_dir_all(&o.out_dir)
        .with_context(|| format!("create {}", o.out_dir.display()))?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    meta_dir(dir)?;
    let port = free_port()?;
    let cfg = config(dir, port, o)?;
    let cfg_path = dir.join("gala-gopher.toml");
    std::fs::write(&cfg_path, &cfg)?;
    std::fs::write(o.out_dir.join("soak-gala-gopher.toml"), &cfg)?;
    let log = o.out_dir.join("soak-gala-gopher.log");
    let mut agent = Proc(
        Command::new(&o.gopher)
            .arg("--config")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("start {}", o.gopher.display()))?,
    );
    let pid = agent.0.id();
    let mut scraper = Scraper { port, conn: None };
    // Up: the probe's first records are in, tcp_link attached.
    let t_up = Instant::now();
    loop {
        if let Some(st) = agent.0.try_wait()? {
            bail!("the agent exited ({st}):\n{}", tail(&log));
        }
        let ready = scraper.scrape().ok().is_some_and(|b| {
            let m = self_metrics(&b);
            m.accepted > 0
                && (b.contains("gala_gopher_tcp_link_") || t_up.elapsed() > Duration::from_secs(30))
        });
        if ready {
            break;
        }
        if t_up.elapsed() > Duration::from_secs(60) {
            bail!(
                "the agent did not show the soak probe's records within 60 s:\n{}",
                tail(&log)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !scraper
        .scrape()?
        .contains("probe=\"tcp_link\",state=\"running\"")
    {
        eprintln!(
            "soak: warning: tcp_link is not running yet (see {})",
            log.display()
        );
    }
    let mut load = TcpLoad::start(o.conns_per_sec)?;
    let t0 = Instant::now();
    let tck = clock_ticks();
    let cpu_start = cpu_ticks(pid)?;
    let (mut prev_ticks, mut prev_t) = (cpu_start, 0.0);
    let mut samples = Vec::new();
    let mut csv = std::fs::File::create(o.out_dir.join("soak.csv"))?;
    csv.write_all(CSV_HEADER.as_bytes())?;
    let mut k: u32 = 1;
    let mut next_minute = 60.0;
    while t0.elapsed() < o.duration {
        let at = t0 + o.interval * k;
        k += 1;
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        if let Some(st) = agent.0.try_wait()? {
            bail!("the agent exited ({st}):\n{}", tail(&log));
        }
        let t = t0.elapsed().as_secs_f64();
        let ticks = cpu_ticks(pid)?;
        let [rss_kb, anon_kb, file_kb, threads] = status(pid)?;
        let fds = fds(pid)?;
        let body = scraper.scrape().context("scrape")?;
        let m = self_metrics(&body);
        let s = Sample {
            t,
            rss_kb,
            anon_kb,
            file_kb,
            cpu_pct: (ticks - prev_ticks) as f64 / tck / (t - prev_t) * 100.0,
            fds,
            threads,
            series: m.series,
            soak_series: m.soak_series,
            sent: read_sent(dir).0,
            accepted: m.accepted,
            rejected: m.rejected.values().sum(),
            dropped: m.drops.values().sum(),
            conns: load.done.load(Ordering::Relaxed),
        };
        (prev_ticks, prev_t) = (ticks, t);
        csv.write_all(csv_line(&s).as_bytes())?;
        if o.progress && t >= next_minute {
            next_minute += 60.0;
            println!(
                "soak: {:4.1} min  RSS {} kB  CPU {:.1} %  fds {}  threads {}  series {} (soak {})  sent {}  accepted {}  drops {}  conns {}",
                t / 60.0,
                s.rss_kb,
                s.cpu_pct,
                s.fds,
                s.threads,
                s.series,
                s.soak_series,
                s.sent,
                s.accepted,
                s.dropped,
                s.conns
            );
        }
        samples.push(s);
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_secs = (cpu_ticks(pid)? - cpu_start) as f64 / tck;
    load.stop();
    let conn_errors = load.errors.load(Ordering::Relaxed);
    // Stop the generator, then wait until the agent has counted every
    // record it wrote (or the counts stop moving).
    std::fs::write(dir.join("stop"), b"")?;
    let t_stop = Instant::now();
    let sent = loop {
        match read_sent(dir) {
            (n, true) => break n,
            _ if t_stop.elapsed() > Duration::from_secs(30) => {
                bail!("the generator did not confirm its stop within 30 s")
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let mut last = SelfMetrics::default();
    let mut stable = 0;
    let t_drain = Instant::now();
    while t_drain.elapsed() < Duration::from_secs(30) {
        let m = self_metrics(&scraper.scrape()?);
        let counted = m.accepted + m.rejected.values().sum::<u64>() + ingress_drops(&m.drops);
        let same = counted
            == last.accepted + last.rejected.values().sum::<u64>() + ingress_drops(&last.drops);
        last = m;
        if counted >= sent {
            break;
        }
        stable = if same { stable + 1 } else { 0 };
        if stable >= 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let accounting = Accounting {
        sent,
        accepted: last.accepted,
        ingress_dropped: ingress_drops(&last.drops),
        rejected: last.rejected,
        drops: last.drops,
        restarts: last.restarts,
    };
    drop(agent);
    Ok(Report {
        opts: o.clone(),
        samples,
        accounting,
        secs,
        conn_errors,
        cpu_secs,
    })
}

fn ingress_drops(drops: &BTreeMap<(String, String), u64>) -> u64 {
    drops
        .iter()
        .filter(|((stage, comp), _)| stage == "ingress_queue_full" && comp == PROBE)
        .map(|(_, n)| n)
        .sum()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_metrics_are_read_by_name_and_label() {
        let body = "# HELP x\n\
            gala_gopher_self_records_accepted_total{probe=\"soak\",machine_id=\"m\"} 41\n\
            gala_gopher_self_records_accepted_total{probe=\"tcp_link\",machine_id=\"m\"} 5\n\
            gala_gopher_self_records_rejected_total{probe=\"soak\",reason=\"field_count\",machine_id=\"m\"} 2\n\
            gala_gopher_self_records_dropped_total{stage=\"ingress_queue_full\",component=\"soak\",machine_id=\"m\"} 3\n\
            gala_gopher_self_records_dropped_total{stage=\"store_full\",component=\"tcp_link\",machine_id=\"m\"} 9\n\
            gala_gopher_self_probe_restarts_total{probe=\"soak\",machine_id=\"m\"} 1\n\
            gala_gopher_self_series{table=\"soak_0\",machine_id=\"m\"} 600\n\
            gala_gopher_self_series{table=\"soak_1\",machine_id=\"m\"} 610\n\
            gala_gopher_self_series{table=\"tcp_link\",machine_id=\"m\"} 3\n";
        let m = self_metrics(body);
        assert_eq!((m.series, m.accepted, m.restarts), (9, 41, 1));
        assert_eq!(m.soak_series, 1210);
        assert_eq!(m.rejected.get("field_count"), Some(&2));
        assert_eq!(ingress_drops(&m.drops), 3);
        assert_eq!(m.drops.values().sum::<u64>(), 12);
        let a = Accounting {
            sent: 47,
            accepted: 41,
            rejected: m.rejected,
            ingress_dropped: 3,
            ..Accounting::default()
        };
        assert_eq!(a.unexplained(), 1);
    }

    #[test]
    fn the_default_config_gets_the_soak_probe_and_private_paths() {
        let dir = Path::new("/tmp/x");
        let o = Opts::new("g".into(), Duration::from_secs(600), dir.into());
        let t: toml::Table = config(dir, 1234, &o)
            .expect("config")
            .parse()
            .expect("toml");
        assert_eq!(t["web_server"]["port"].as_integer(), Some(1234));
        assert_eq!(t["global"]["meta_dir"].as_str(), Some("/tmp/x/meta"));
        let ext = t["extend_probes"].as_array().expect("extend_probes");
        assert!(ext.iter().any(|p| p["name"].as_str() == Some(PROBE)));
        let probes = t["probes"].as_array().expect("probes");
        assert!(probes
            .iter()
            .any(|p| p["name"].as_str() == Some("tcp_link")));
    }
}
