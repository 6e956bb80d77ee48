//! gala-spider topology benchmark: builds the topology from 200 k tcp_link
//! records (the metric JSON every node sends, parsed by the shared
//! [`gala_gopher::topology_records::MetricRecord`]) covering 10 k processes,
//! with the spider's real builder ([`gala_spider::topology::Builder`]).
//!
//! Measured, in CPU time of this (single-threaded) process, so that other
//! jobs on the machine count less than in wall time:
//! - the full build: parse + apply every record, then one snapshot;
//! - incremental periods on the built graph: 1 % of the records (2 k)
//!   change (new metrics for existing links, and new links), parse + apply
//!   them, snapshot; printed with its ratio to the full build;
//! - memory: this process's peak (VmHWM) above the generated input, and
//!   the real `gala-spider` binary's VmHWM when it reads the same records
//!   from a metric log file (its logfile source), streamed in as an agent
//!   writes them and, apart, all present in the file at its start.
//!
//! Usage: `spider [--records N] [--processes P] [--reps R] [--periods K]
//! [--spider PATH]` (defaults 200000, 10000, 5, 10, the `gala-spider`
//! beside this binary). Exits non-zero when a target is missed or a graph
//! is not the one generated.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use gala_gopher::export::json::push_str;
use gala_gopher::topology_records::MetricRecord;
use gala_spider::topology::{AddrFilter, Applied, Builder, Topology};
use gopher_bench::{free_port, median, process_cpu, Proc};

/// Target: the full build (parse + apply + snapshot), seconds of CPU.
const TARGET_SECS: f64 = 0.2;
/// Target: an incremental period at most this many times 1 % of a full
/// build ("about 1 %").
const TARGET_INCR: f64 = 2.0;
/// Target: peak RSS of the spider beside its input, MB.
const TARGET_MB: f64 = 100.0;
/// Processes per host (half servers, half clients).
const PER_HOST: usize = 20;
/// Servers each client process talks to.
const FANOUT: usize = 10;
/// The spider's period, ms (the incremental snapshots are this far apart).
const PERIOD_MS: u64 = 5_000;

struct Opts {
    records: usize,
    processes: usize,
    reps: usize,
    periods: usize,
    spider: PathBuf,
}

fn opts() -> anyhow::Result<Opts> {
    let exe = std::env::current_exe().context("own path")?;
    let mut o = Opts {
        records: 200_000,
        processes: 10_000,
        reps: 5,
        periods: 10,
        spider: exe.with_file_name("gala-spider"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || -> anyhow::Result<String> {
            args.next().with_context(|| format!("{a} needs a value"))
        };
        let num = |v: String| -> anyhow::Result<usize> {
            v.parse().with_context(|| format!("{a}: not a number"))
        };
        match a.as_str() {
            "--records" => o.records = num(val()?)?,
            "--processes" => o.processes = num(val()?)?,
            "--reps" => o.reps = num(val()?)?,
            "--periods" => o.periods = num(val()?)?,
            "--spider" => o.spider = val()?.into(),
            _ => bail!(
                "usage: spider [--records N] [--processes P] [--reps R] [--periods K] [--spider PATH]"
            ),
        }
    }
    Ok(o)
}

fn host_ip(h: usize) -> String {
    format!("10.{}.{}.1", (h / 256) % 256, h % 256)
}

/// One tcp_link record in the exporter's JSON shape.
#[expect(clippy::too_many_arguments, reason = "one record")]
fn record(
    out: &mut String,
    ts: u64,
    host: usize,
    pid: usize,
    role: u8,
    cip: &str,
    sip: &str,
    port: usize,
    round: u64,
) {
    let _ = write!(out, "{{\"timestamp\":{ts}");
    let kv = |out: &mut String, k: &str, v: &str| {
        out.push(',');
        push_str(out, k);
        out.push(':');
        push_str(out, v);
    };
    kv(out, "machine_id", &format!("machine-{host}"));
    kv(out, "hostname", &format!("host{host}"));
    kv(out, "entity_name", "tcp_link");
    kv(out, "table_name", "tcp_link");
    kv(out, "pid", &pid.to_string());
    kv(out, "process_name", &format!("proc{}", pid % 100_000));
    kv(out, "role", &role.to_string());
    kv(out, "client_ip", cip);
    kv(out, "server_ip", sip);
    kv(out, "server_port", &port.to_string());
    kv(out, "protocol", "2");
    kv(out, "link_count", &(1 + round % 3).to_string());
    for f in ["rx_bytes", "tx_bytes", "packets_in", "packets_out"] {
        kv(out, f, &(1000 * (round + 1) + pid as u64).to_string());
    }
    kv(out, "retran_packets", &(round % 2).to_string());
    kv(out, "lost_packets", "0");
    kv(out, "rtt", &(100 + pid % 50).to_string());
    out.push('}');
}

/// The cluster's shape: `hosts` hosts of PER_HOST processes, the first
/// half servers, the second half clients.
struct Shape {
    hosts: usize,
    servers: usize,
}

impl Shape {
    fn new(processes: usize) -> Self {
        let hosts = processes.div_ceil(PER_HOST);
        Self {
            hosts,
            servers: hosts * PER_HOST / 2,
        }
    }

    /// Links in one round.
    fn links(&self) -> usize {
        self.hosts * PER_HOST / 2 * FANOUT
    }

    /// Link `n` (`j` = its index among its client's links; `j >= FANOUT`
    /// gives links beyond the generated ones): (client host, client pid,
    /// server host, server pid, server port).
    fn link(&self, client_seq: usize, j: usize) -> (usize, usize, usize, usize, usize) {
        let h = client_seq / (PER_HOST / 2);
        let c = client_seq % (PER_HOST / 2);
        let client = h * PER_HOST + PER_HOST / 2 + c;
        let s = (client * 7 + j * 131 + 1) % self.servers;
        let (sh, sk) = (s / (PER_HOST / 2), s % (PER_HOST / 2));
        let sh = if sh == h { (sh + 1) % self.hosts } else { sh };
        (h, client, sh, sh * PER_HOST + sk, 8000 + sk)
    }

    /// Both sides of a link, as records of report round `round`.
    fn sides(&self, client_seq: usize, j: usize, ts: u64, round: u64) -> [String; 2] {
        let (h, client, sh, server, port) = self.link(client_seq, j);
        let (cip, sip) = (host_ip(h), host_ip(sh));
        [(h, client, 1), (sh, server, 0)].map(|(host, pid, role)| {
            let mut s = String::with_capacity(420);
            record(&mut s, ts, host, pid, role, &cip, &sip, port, round);
            s
        })
    }
}

/// `records` records: each client talks to FANOUT servers on other hosts;
/// each link is reported by both sides, round after round.
fn generate(shape: &Shape, records: usize, ts: u64) -> Vec<String> {
    let mut out = Vec::with_capacity(records);
    let mut round = 0u64;
    'outer: loop {
        for cs in 0..shape.hosts * PER_HOST / 2 {
            for j in 0..FANOUT {
                for r in shape.sides(cs, j, ts, round) {
                    if out.len() == records {
                        break 'outer;
                    }
                    out.push(r);
                }
            }
        }
        round += 1;
    }
    out
}

/// The records of incremental period `p`: `n` records (both sides of
/// n/2 links), three quarters new metrics of existing links, a quarter new
/// links (a client's next server).
fn changes(shape: &Shape, n: usize, p: usize, ts: u64) -> Vec<String> {
    let clients = shape.hosts * PER_HOST / 2;
    let links = n / 2;
    let mut out = Vec::with_capacity(n);
    for k in 0..links {
        let seq = (p * 7919 + k * 104_729) % shape.links();
        let (cs, j) = (seq / FANOUT, seq % FANOUT);
        let j = if k % 4 == 3 { FANOUT + p } else { j };
        out.extend(shape.sides(cs % clients, j, ts, 100 + p as u64));
    }
    out
}

fn mem_kb(pid: &str) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn apply_all(b: &mut Builder, lines: &[String], ts: u64) -> anyhow::Result<usize> {
    let mut applied = 0;
    for l in lines {
        let rec = MetricRecord::parse(l).context("generated record")?;
        if b.apply(&rec, ts) == Applied::TcpLink {
            applied += 1;
        }
    }
    Ok(applied)
}

/// Seconds of CPU `f` takes.
fn cpu<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let c0 = process_cpu();
    let v = f();
    (v, (process_cpu() - c0).as_secs_f64())
}

/// A GET to 127.0.0.1:`port`, the body.
fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The real gala-spider on a metric log file of `lines`: all written before
/// it starts, or (`stream`) appended in chunks of 1 % as an agent writes
/// them. Returns (VmHWM, VmRSS at the end, KB; seconds to the full graph).
fn real_spider(
    bin: &Path,
    lines: &[String],
    processes: usize,
    stream: bool,
) -> anyhow::Result<(u64, u64, f64)> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let cfg = dir.path().join("gala-spider.toml");
    std::fs::write(
        &cfg,
        format!(
            "[global]\ndata_source = \"logfile\"\nui_source = \"none\"\nlog_level = \"warn\"\n\n\
             [logfile]\nmetric_dir = \"{}\"\npoll_ms = 50\n\n\
             [option]\nexpire_secs = 600\nperiod_secs = 1\n\n\
             [server]\nbind_addr = \"127.0.0.1\"\nport = {port}\n",
            dir.path().display()
        ),
    )?;
    let log = dir.path().join("metrics.log");
    let mut file = std::fs::File::create(&log)?;
    let chunk = (lines.len() / 100).max(1);
    let write = |f: &mut std::fs::File, ls: &[String]| -> anyhow::Result<()> {
        let mut buf = String::with_capacity(ls.iter().map(|l| l.len() + 1).sum());
        for l in ls {
            buf.push_str(l);
            buf.push('\n');
        }
        f.write_all(buf.as_bytes())?;
        Ok(())
    };
    if !stream {
        write(&mut file, lines)?;
    }
    let t0 = Instant::now();
    let child = Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("spider.log"))?)
        .spawn()
        .with_context(|| {
            format!(
                "start {} (build it: cargo build --release -p gala-spider)",
                bin.display()
            )
        })?;
    let spider = Proc(child);
    let pid = spider.0.id().to_string();
    let read = |want: usize| -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Ok(m) = http_get(port, "/metrics") {
                let got =
                    metric(&m, "gala_spider_records_total{outcome=\"tcp_link\"}").unwrap_or(0);
                if got as usize >= want {
                    return Ok(m);
                }
            }
            if Instant::now() > deadline {
                bail!("gala-spider read fewer than {want} records in 300 s; see its log");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    if stream {
        for (i, c) in lines.chunks(chunk).enumerate() {
            write(&mut file, c)?;
            read(i * chunk + c.len())?;
        }
    }
    let m = read(lines.len())?;
    let snaps = metric(&m, "gala_spider_snapshots_total").unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = http_get(port, "/metrics").unwrap_or_default();
        let done = metric(&m, "gala_spider_snapshots_total").unwrap_or(0) > snaps + 1;
        if done && metric(&m, "gala_spider_processes") == Some(processes as u64) {
            break;
        }
        if Instant::now() > deadline {
            bail!("gala-spider did not show {processes} processes in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs = t0.elapsed().as_secs_f64();
    let (rss, hwm) = mem_kb(&pid);
    drop(spider);
    Ok((hwm, rss, secs))
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn main() -> anyhow::Result<ExitCode> {
    let o = opts()?;
    let ts = gala_spider::service::now_ms();
    let shape = Shape::new(o.processes);
    let t = Instant::now();
    let lines = generate(&shape, o.records, ts);
    let bytes: usize = lines.iter().map(String::len).sum();
    println!(
        "input: {} records ({:.1} MB of JSON, {} links x 2 sides per round) over {} processes, generated in {:.2} s",
        lines.len(),
        bytes as f64 / 1e6,
        shape.links(),
        o.processes,
        t.elapsed().as_secs_f64()
    );
    let (rss0, _) = mem_kb("self");
    let mut ok = true;
    let new_builder = || Builder::new(60_000, AddrFilter::default(), &["nginx_link".into()]);

    // Full builds.
    let mut full = Vec::new();
    let mut last: Option<(Builder, Topology)> = None;
    for rep in 0..o.reps {
        let w0 = Instant::now();
        let mut b = new_builder();
        let (applied, t_apply) = cpu(|| apply_all(&mut b, &lines, ts));
        let applied = applied?;
        let (topo, t_snap) = cpu(|| b.snapshot(ts));
        let wall = w0.elapsed().as_secs_f64();
        let (json, t_json) = cpu(|| serde_json::to_string(&topo));
        let json = json.context("serialize")?;
        let total = t_apply + t_snap;
        full.push(total);
        let (rss, hwm) = mem_kb("self");
        println!(
            "full build {rep}: parse+apply {:.1} ms ({:.2} µs/record), snapshot {:.1} ms, total {:.1} ms CPU \
             ({:.1} ms wall); JSON {:.1} ms ({:.1} MB); live series {}; graph: {} hosts, {} processes, \
             {} edges (unmatched {}, self {}); RSS {:.0} MB (input alone {:.0} MB), peak {:.0} MB",
            t_apply * 1e3,
            t_apply * 1e6 / lines.len() as f64,
            t_snap * 1e3,
            total * 1e3,
            wall * 1e3,
            t_json * 1e3,
            json.len() as f64 / 1e6,
            b.len().0,
            topo.hosts.len(),
            topo.processes.len(),
            topo.edges.len(),
            topo.stats.unmatched_links,
            topo.stats.self_links,
            mb(rss),
            mb(rss0),
            mb(hwm),
        );
        if applied != lines.len() || topo.processes.len() != o.processes.min(lines.len()) {
            println!(
                "FAIL: {applied} of {} applied, {} processes (want {})",
                lines.len(),
                topo.processes.len(),
                o.processes
            );
            ok = false;
        }
        black_box(json);
        last = Some((b, topo));
    }
    let full_med = median(full.clone());

    // Incremental periods on the last full build: 1 % of the records.
    let Some((mut b, mut topo)) = last else {
        bail!("--reps must be at least 1");
    };
    let n = lines.len() / 100;
    let mut incr = Vec::new();
    let mut all: Vec<(String, u64)> = Vec::new();
    for p in 0..o.periods {
        let now = ts + (p as u64 + 1) * PERIOD_MS;
        let ch = changes(&shape, n, p, now);
        let (applied, t_apply) = cpu(|| apply_all(&mut b, &ch, now));
        applied?;
        let (t2, t_snap) = cpu(|| b.snapshot(now));
        let secs = t_apply + t_snap;
        let changed_edges = t2.edges.len() != topo.edges.len() || t2 != topo;
        println!(
            "period {p}: {} changed records, parse+apply {:.2} ms + snapshot {:.2} ms = {:.2} ms CPU \
             ({:.2} % of the full build); {} edges{}",
            ch.len(),
            t_apply * 1e3,
            t_snap * 1e3,
            secs * 1e3,
            100.0 * secs / full_med,
            t2.edges.len(),
            if changed_edges { "" } else { " (UNCHANGED?)" }
        );
        if !changed_edges {
            ok = false;
        }
        topo = t2;
        incr.push(secs);
        all.extend(ch.into_iter().map(|l| (l, now)));
    }
    // The incremental graph is the one a fresh build of the same records
    // gives.
    if o.periods > 0 {
        let now = ts + o.periods as u64 * PERIOD_MS;
        let mut fresh = new_builder();
        apply_all(&mut fresh, &lines, ts)?;
        for (l, t) in &all {
            fresh.apply(&MetricRecord::parse(l).context("record")?, *t);
        }
        let mut want = fresh.snapshot(now);
        let mut got = b.snapshot(now);
        (want.stats.expired, got.stats.expired) = (0, 0);
        if got == want {
            println!(
                "incremental graph = fresh build of the same records: {} processes, {} edges",
                got.processes.len(),
                got.edges.len()
            );
        } else {
            println!("FAIL: the incremental graph differs from a fresh build of the same records");
            ok = false;
        }
    }
    drop((b, topo));
    let (_, hwm) = mem_kb("self");

    // The real binary.
    let stream = real_spider(&o.spider, &lines, o.processes, true)?;
    let backlog = real_spider(&o.spider, &lines, o.processes, false)?;
    println!(
        "gala-spider binary, records appended to its metric log in 1 % chunks: VmHWM {:.1} MB, VmRSS {:.1} MB \
         ({:.1} s to the full graph)",
        mb(stream.0),
        mb(stream.1),
        stream.2
    );
    println!(
        "gala-spider binary, the whole {:.1} MB log there at its start: VmHWM {:.1} MB, VmRSS {:.1} MB ({:.1} s)",
        bytes as f64 / 1e6,
        mb(backlog.0),
        mb(backlog.1),
        backlog.2
    );

    let incr_med = median(incr);
    let ratio = incr_med / full_med;
    let verdict = |m: bool| if m { "met" } else { "MISSED" };
    let (full_ok, incr_ok) = (full_med < TARGET_SECS, ratio <= TARGET_INCR / 100.0);
    let mem_ok = mb(stream.0) < TARGET_MB;
    println!(
        "full build: median {:.1} ms CPU of {} (min {:.1}); target < {:.0} ms: {}",
        full_med * 1e3,
        full.len(),
        full.iter().copied().fold(f64::MAX, f64::min) * 1e3,
        TARGET_SECS * 1e3,
        verdict(full_ok)
    );
    println!(
        "incremental (1 % of the records changed): median {:.2} ms CPU of {}, {:.2} % of the full build; \
         target about 1 % (at most {TARGET_INCR} %): {}",
        incr_med * 1e3,
        o.periods,
        ratio * 100.0,
        verdict(incr_ok)
    );
    println!(
        "peak RSS: gala-spider {:.1} MB (records streamed in) beside its {:.1} MB input; this process's \
         peak {:.1} MB above its generated input ({:.1} MB); target < {TARGET_MB:.0} MB: {}",
        mb(stream.0),
        bytes as f64 / 1e6,
        mb(hwm.saturating_sub(rss0)),
        mb(rss0),
        verdict(mem_ok)
    );
    Ok(if ok && full_ok && incr_ok && mem_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
