//! The cost of the tcp_link eBPF probe on a loopback workload.
//!
//! `tcp_link --gopher target/release/gala-gopher [--secs 5] [--rounds 3]`
//!
//! Runs our own client and server on 127.0.0.1 in two workloads:
//! - connection rate: 2 client threads, each connection sends 64 bytes,
//!   reads 64 bytes and closes;
//! - request rate: 4 kept connections doing 64-byte ping-pongs.
//!
//! Each workload alternates, in one job, between the agent running with
//! tcp_link attached (period 1 s, so its sampler runs as often as it can)
//! and the same agent with tcp_link switched off. It prints the throughput
//! ratio attached/detached (median over rounds; the target is a loss under
//! 3 %). These rounds run with `kernel.bpf_stats_enabled` off, as in
//! production: the statistics add two clock reads to every program run.
//!
//! A last phase, attached, turns the statistics on and prints the
//! per-program cost (`bpftool prog show`: run_time_ns / run_cnt; the target
//! is < 300 ns), with runs and nanoseconds per connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const MSG: usize = 64;
const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

struct Args {
    gopher: PathBuf,
    secs: u64,
    rounds: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        gopher: PathBuf::from("target/release/gala-gopher"),
        secs: 5,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--gopher" => a.gopher = v.into(),
            "--secs" => a.secs = v.parse()?,
            "--rounds" => a.rounds = v.parse()?,
            _ => bail!("unknown argument {k}"),
        }
    }
    Ok(a)
}

/// The server: 8 threads that each accept a connection and answer its
/// 64-byte messages until it closes (no thread spawn per connection, so the
/// workload is TCP, not thread creation).
fn server(stop: Arc<AtomicBool>) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    for _ in 0..8 {
        let l = l.try_clone()?;
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = l.accept() else { continue };
                let _ = c.set_nodelay(true);
                let mut buf = [0u8; MSG];
                while c.read_exact(&mut buf).is_ok() {
                    if c.write_all(&buf).is_err() {
                        break;
                    }
                }
            }
        });
    }
    Ok(addr)
}

fn ping(c: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [7u8; MSG];
    c.write_all(&buf)?;
    c.read_exact(&mut buf)
}

/// Connections per second over `secs`.
fn conn_rate(addr: SocketAddr, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                while Instant::now() < end {
                    let Ok(mut c) = TcpStream::connect(addr) else {
                        continue;
                    };
                    let _ = c.set_nodelay(true);
                    if ping(&mut c).is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = c.shutdown(Shutdown::Both);
                }
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

/// Requests per second over `secs` on 4 kept connections.
fn req_rate(addr: SocketAddr, secs: u64) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let mut hs = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(addr)?;
        c.set_nodelay(true)?;
        let done = Arc::clone(&done);
        hs.push(std::thread::spawn(move || {
            let mut n = 0;
            while Instant::now() < end {
                for _ in 0..64 {
                    if ping(&mut c).is_err() {
                        return;
                    }
                }
                n += 64;
            }
            done.fetch_add(n, Ordering::Relaxed);
        }));
    }
    for h in hs {
        let _ = h.join();
    }
    Ok(done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64())
}

/// The agent with or without tcp_link, killed on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn agent(bin: &Path, dir: &Path, attached: bool) -> Result<Agent> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let port = free_port()?;
    let d = dir.display();
    let switch = if attached { "on" } else { "off" };
    let cfg = format!(
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
[[probes]]
name = "system_meminfo"
param = "-t 1"
switch = "on"
[[probes]]
name = "tcp_link"
param = "-t 1"
switch = "{switch}"
"#,
        meta = repo.join("meta").display()
    );
    let path = dir.join("gala-gopher.toml");
    std::fs::write(&path, cfg)?;
    let log = dir.join(format!("agent-{switch}.log"));
    let child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let a = Agent(child);
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !attached && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(a);
        }
        if attached && text.contains("eBPF programs attached") {
            return Ok(a);
        }
        if text.contains("will not be restarted") || t0.elapsed() > Duration::from_secs(20) {
            bail!("agent did not come up:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ids of the BPF programs process `pid` holds (from its fdinfo).
fn prog_ids(pid: u32) -> Vec<u32> {
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

/// (name, run_time_ns, run_cnt) of the programs with these ids, from
/// `bpftool prog show` (other agents running beside us are left out).
fn prog_stats(ids: &[u32]) -> Vec<(String, u64, u64)> {
    let Ok(out) = Command::new("bpftool").args(["prog", "show"]).output() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let id: Option<u32> = w.first().and_then(|x| x.strip_suffix(':')?.parse().ok());
        if !id.is_some_and(|id| ids.contains(&id)) {
            continue;
        }
        let get = |k: &str| {
            w.iter()
                .position(|x| *x == k)
                .and_then(|i| w.get(i + 1))
                .copied()
        };
        let (Some(name), Some(ns), Some(cnt)) = (
            get("name"),
            get("run_time_ns").and_then(|x| x.parse().ok()),
            get("run_cnt").and_then(|x| x.parse().ok()),
        ) else {
            continue;
        };
        v.push((name.to_owned(), ns, cnt));
    }
    v
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let stats_before = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .unwrap_or_default()
        .trim()
        .to_owned();
    std::fs::write(BPF_STATS, "0").context("set kernel.bpf_stats_enabled (needs root)")?;
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server(Arc::clone(&stop))?;
    let mut ratios_conn = Vec::new();
    let mut ratios_req = Vec::new();
    println!(
        "{:>5} {:>9} {:>14} {:>14}",
        "round", "probe", "conn/s", "req/s"
    );
    for round in 0..a.rounds {
        let mut res = [(0.0, 0.0); 2];
        // Alternate which side goes first so drift hits both alike.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for attached in order {
            let agent = agent(&a.gopher, dir.path(), attached)?;
            std::thread::sleep(Duration::from_millis(500));
            let c = conn_rate(addr, a.secs);
            let r = req_rate(addr, a.secs)?;
            println!(
                "{round:>5} {:>9} {c:>14.0} {r:>14.0}",
                if attached { "attached" } else { "detached" }
            );
            res[usize::from(attached)] = (c, r);
            drop(agent);
        }
        ratios_conn.push(res[1].0 / res[0].0);
        ratios_req.push(res[1].1 / res[0].1);
    }
    // The cost phase: statistics on. The connection workload in `rounds`
    // windows (ns/run moves with the machine's load: the median window is
    // reported beside the total), then the request workload once, to show
    // that it runs no program at all (no state change, no per-packet hook).
    std::fs::write(BPF_STATS, "1").context("enable kernel.bpf_stats_enabled")?;
    let agent = agent(&a.gopher, dir.path(), true)?;
    std::thread::sleep(Duration::from_millis(500));
    let ids = prog_ids(agent.0.id());
    let delta = |before: &[(String, u64, u64)]| -> Vec<(String, u64, u64)> {
        prog_stats(&ids)
            .into_iter()
            .map(|(name, ns, cnt)| {
                let (ns0, cnt0) = before
                    .iter()
                    .find(|(n, ..)| *n == name)
                    .map_or((0, 0), |p| (p.1, p.2));
                (name, ns - ns0.min(ns), cnt - cnt0.min(cnt))
            })
            .collect()
    };
    let start = prog_stats(&ids);
    let t0 = Instant::now();
    let mut conns = 0.0;
    let mut windows = Vec::new();
    for _ in 0..a.rounds.max(1) {
        let before = prog_stats(&ids);
        conns += conn_rate(addr, a.secs) * a.secs as f64;
        if let Some((_, ns, cnt)) = delta(&before)
            .into_iter()
            .find(|(n, ..)| n.starts_with("tcp_link_state"))
        {
            windows.push(ns as f64 / (cnt.max(1)) as f64);
        }
    }
    let conn_secs = t0.elapsed().as_secs_f64();
    let prog = delta(&start);
    let before_req = prog_stats(&ids);
    let requests = req_rate(addr, a.secs)? * a.secs as f64;
    let req_runs: u64 = delta(&before_req)
        .iter()
        .filter(|(n, ..)| n.starts_with("tcp_link_state"))
        .map(|p| p.2)
        .sum();
    drop(agent);
    stop.store(true, Ordering::Relaxed);
    let _ = std::fs::write(
        BPF_STATS,
        if stats_before.is_empty() {
            "0"
        } else {
            &stats_before
        },
    );
    let spread = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("rounds {lo:.3}..{hi:.3}")
    };
    let (sc, sr) = (spread(&ratios_conn), spread(&ratios_req));
    let (rc, rr) = (median(ratios_conn), median(ratios_req));
    println!(
        "connection rate: attached/detached = {rc:.3} (loss {:.1} %; {sc})",
        (1.0 - rc) * 100.0
    );
    println!(
        "request rate:    attached/detached = {rr:.3} (loss {:.1} %; {sr})",
        (1.0 - rr) * 100.0
    );
    println!(
        "cost phase (bpf_stats on): {conns:.0} connections in {conn_secs:.1} s, both ends traced"
    );
    let wmin = windows.iter().copied().fold(f64::INFINITY, f64::min);
    let wmax = windows.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    println!(
        "state handler ns/run by {}-s window: median {:.0} (range {wmin:.0}..{wmax:.0})",
        a.secs,
        median(windows.clone())
    );
    println!(
        "request workload: {requests:.0} requests, {req_runs} runs of the state handler (~4 per kept connection)"
    );
    println!(
        "{:<24} {:>12} {:>16} {:>10} {:>10} {:>10}",
        "program", "run_cnt", "run_time_ns", "ns/run", "runs/conn", "ns/conn"
    );
    for (name, ns, cnt) in &prog {
        let per = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
        println!(
            "{name:<24} {cnt:>12} {ns:>16} {:>10.0} {:>10.1} {:>10.0}",
            per(*ns as f64, *cnt as f64),
            per(*cnt as f64, conns),
            per(*ns as f64, conns)
        );
    }
    Ok(())
}
