//! gala-spider topology benchmark: builds the topology from 200 k tcp_link
//! records (the metric JSON every node sends, parsed by the shared
//! [`gala_gopher::topology_records::MetricRecord`]) covering 10 k processes,
//! with the spider's real builder ([`gala_spider::topology::Builder`]), then
//! snapshots it and serializes the snapshot as the REST API does. Reports
//! each phase's time and the memory (VmRSS/VmHWM) before and after.
//!
//! Usage: `spider [--records N] [--processes P] [--reps R]` (defaults
//! 200000, 10000, 3). Exits non-zero when the target (< 1 s for parse +
//! apply + snapshot) is missed or the graph is not the one generated.

use std::fmt::Write as _;
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _};
use gala_gopher::export::json::push_str;
use gala_gopher::topology_records::MetricRecord;
use gala_spider::topology::{AddrFilter, Applied, Builder};

/// Target: parse + apply + snapshot, seconds.
const TARGET_SECS: f64 = 1.0;
/// Processes per host (half servers, half clients).
const PER_HOST: usize = 20;
/// Servers each client process talks to.
const FANOUT: usize = 10;

struct Opts {
    records: usize,
    processes: usize,
    reps: usize,
}

fn opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        records: 200_000,
        processes: 10_000,
        reps: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || -> anyhow::Result<usize> {
            args.next()
                .with_context(|| format!("{a} needs a value"))?
                .parse()
                .with_context(|| format!("{a}: not a number"))
        };
        match a.as_str() {
            "--records" => o.records = val()?,
            "--processes" => o.processes = val()?,
            "--reps" => o.reps = val()?,
            _ => bail!("usage: spider [--records N] [--processes P] [--reps R]"),
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

/// `records` records over `processes` processes: per host, PER_HOST/2
/// servers and PER_HOST/2 clients; each client talks to FANOUT servers on
/// other hosts; each link is reported by both sides, round after round.
fn generate(records: usize, processes: usize, ts: u64) -> (Vec<String>, usize) {
    let hosts = processes.div_ceil(PER_HOST);
    let servers = hosts * PER_HOST / 2;
    let mut out = Vec::with_capacity(records);
    let mut links = 0usize;
    let mut round = 0u64;
    'outer: loop {
        for h in 0..hosts {
            for c in 0..PER_HOST / 2 {
                let client = h * PER_HOST + PER_HOST / 2 + c;
                for j in 0..FANOUT {
                    let s = (client * 7 + j * 131 + 1) % servers;
                    let (sh, sk) = (s / (PER_HOST / 2), s % (PER_HOST / 2));
                    let sh = if sh == h { (sh + 1) % hosts } else { sh };
                    let server = sh * PER_HOST + sk;
                    let (cip, sip, port) = (host_ip(h), host_ip(sh), 8000 + sk);
                    for (host, pid, role) in [(h, client, 1), (sh, server, 0)] {
                        if out.len() == records {
                            break 'outer;
                        }
                        let mut s = String::with_capacity(420);
                        record(&mut s, ts, host, pid, role, &cip, &sip, port, round);
                        out.push(s);
                    }
                    if round == 0 {
                        links += 1;
                    }
                }
            }
        }
        round += 1;
    }
    (out, links)
}

fn mem_kb() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn main() -> anyhow::Result<ExitCode> {
    let o = opts()?;
    let ts = gala_spider::service::now_ms();
    let t = Instant::now();
    let (lines, links) = generate(o.records, o.processes, ts);
    let bytes: usize = lines.iter().map(String::len).sum();
    println!(
        "input: {} records ({:.1} MB of JSON, {} links x 2 sides per round) over {} processes, generated in {:.2} s",
        lines.len(),
        bytes as f64 / 1e6,
        links,
        o.processes,
        t.elapsed().as_secs_f64()
    );
    let (rss0, _) = mem_kb();
    let mut ok = true;
    let mut best = f64::MAX;
    for rep in 0..o.reps {
        let mut b = Builder::new(60_000, AddrFilter::default(), &["nginx_link".into()]);
        let t0 = Instant::now();
        let mut applied = 0usize;
        for l in &lines {
            let rec = MetricRecord::parse(l).context("generated record")?;
            if b.apply(&rec, ts) == Applied::TcpLink {
                applied += 1;
            }
        }
        let t_apply = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let topo = b.snapshot(ts);
        let t_snap = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let json = serde_json::to_string(&topo).context("serialize")?;
        let t_json = t2.elapsed().as_secs_f64();
        let total = t_apply + t_snap;
        best = best.min(total);
        let (rss, hwm) = mem_kb();
        println!(
            "rep {rep}: parse+apply {:.3} s ({:.2} µs/record), snapshot {:.3} s, total {:.3} s; \
             JSON snapshot {:.3} s ({:.1} MB); live series {}; graph: {} hosts, {} processes, {} edges \
             (unmatched {}, self {}); RSS {} MB (input alone {} MB), peak {} MB",
            t_apply,
            t_apply * 1e6 / lines.len() as f64,
            t_snap,
            total,
            t_json,
            json.len() as f64 / 1e6,
            b.len().0,
            topo.hosts.len(),
            topo.processes.len(),
            topo.edges.len(),
            topo.stats.unmatched_links,
            topo.stats.self_links,
            rss / 1024,
            rss0 / 1024,
            hwm / 1024,
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
    }
    let verdict = if best < TARGET_SECS { "met" } else { "MISSED" };
    println!("best total {best:.3} s; target < {TARGET_SECS} s: {verdict}");
    Ok(if ok && best < TARGET_SECS {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
