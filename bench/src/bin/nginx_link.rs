//! The cost of the nginx_link uprobes per proxied request.
//!
//! `nginx_link --gopher target/release/gala-gopher [--secs 5] [--rounds 3]
//!  [--conns 32]` (root)
//!
//! The stock nginx (`/usr/sbin/nginx`, one worker) proxies every request of
//! `wrk` (one thread, kept client connections) on 127.0.0.1 to an upstream
//! served by the same nginx (`return 200`), without upstream keepalive: each
//! request opens one upstream connection, so `ngx_event_connect_peer` (the
//! hooked function: one uprobe and one uretprobe) runs once per request.
//!
//! Windows alternate, in one job, between the agent running with
//! nginx_link attached and no agent at all (same nginx, same wrk command);
//! it prints requests/s both ways (median over rounds) and the ratio. These
//! windows run with `kernel.bpf_stats_enabled` off, as in production.
//!
//! A last window, attached, turns the statistics on and prints each
//! program's run time (run_time_ns / run_cnt of the agent's programs) and
//! their sum per request. The uprobe's trap and return trampoline are not in
//! run_time_ns: the throughput ratio holds them.

use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gopher_bench::{base_config, free_port, median, prog_ids, BpfStatsGuard, Proc, BPF_STATS};

const NGINX: &str = "/usr/sbin/nginx";

struct Args {
    gopher: PathBuf,
    secs: u64,
    rounds: usize,
    conns: u32,
}

fn args() -> Result<Args> {
    let mut a = Args {
        gopher: PathBuf::from("target/release/gala-gopher"),
        secs: 5,
        rounds: 3,
        conns: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--gopher" => a.gopher = v.into(),
            "--secs" => a.secs = v.parse()?,
            "--rounds" => a.rounds = v.parse()?,
            "--conns" => a.conns = v.parse()?,
            _ => bail!("unknown argument {k}"),
        }
    }
    Ok(a)
}

fn nginx(dir: &Path, front: u16, back: u16) -> Result<Proc> {
    let d = dir.display();
    let conf = format!(
        r#"user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream back {{ server 127.0.0.1:{back}; }}
    server {{
        listen 127.0.0.1:{front};
        location / {{ proxy_pass http://back; }}
    }}
    server {{
        listen 127.0.0.1:{back};
        location / {{ return 200 "ok\n"; }}
    }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off; master_process on;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {NGINX} (the Debian nginx package)"))?;
    let p = Proc(child);
    let t0 = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", front)) {
            use std::io::Write as _;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return Ok(p);
            }
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!(
                "nginx did not serve: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn agent(bin: &Path, dir: &Path) -> Result<Proc> {
    let port = free_port()?;
    let cfg = format!(
        "{}\n[[probes]]\nname = \"nginx_link\"\nparam = \"-t 1\"\nswitch = \"on\"\n",
        base_config(dir, port)
    );
    let path = dir.join("gala-gopher.toml");
    std::fs::write(&path, cfg)?;
    let log = dir.join("agent.log");
    let child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let a = Proc(child);
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("attached to /usr/sbin/nginx") {
            return Ok(a);
        }
        if text.contains("will not be restarted") || t0.elapsed() > Duration::from_secs(20) {
            bail!("nginx_link did not attach:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Requests per second of one wrk window.
fn wrk(port: u16, secs: u64, conns: u32) -> Result<f64> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .context("run wrk (the Debian wrk package)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk saw errors:\n{text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))
}

/// (name#id, run_time_ns, run_cnt) of the programs with these ids (the
/// kernel cuts names to 15 characters: the id tells them apart; the entry
/// program is loaded first).
fn prog_stats(ids: &[u32]) -> Vec<(String, u64, u64)> {
    libbpf_rs::query::ProgInfoIter::default()
        .filter(|p| ids.contains(&p.id))
        .map(|p| {
            (
                format!("{}#{}", p.name.to_string_lossy(), p.id),
                p.run_time_ns,
                p.run_cnt,
            )
        })
        .collect()
}

fn main() -> Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let ndir = dir.path().join("nginx");
    std::fs::create_dir_all(&ndir)?;
    let (front, back) = (free_port()?, free_port()?);
    let _nginx = nginx(&ndir, front, back)?;
    let _stats = BpfStatsGuard::off()?;
    run(&a, dir.path(), front)
}

fn run(a: &Args, dir: &Path, front: u16) -> Result<()> {
    // Warm up nginx and the page cache.
    wrk(front, 1, a.conns)?;
    let (mut on, mut off, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..a.rounds {
        // Alternate which goes first; each round's pair gives one ratio,
        // so a drift of the machine's load between rounds cancels out.
        let (mut ron, mut roff) = (0.0, 0.0);
        for attached in [r % 2 == 0, r % 2 != 0] {
            if attached {
                let _agent = agent(&a.gopher, dir)?;
                ron = wrk(front, a.secs, a.conns)?;
                println!("round {r}: attached   {ron:>10.0} requests/s");
                on.push(ron);
            } else {
                roff = wrk(front, a.secs, a.conns)?;
                println!("round {r}: detached   {roff:>10.0} requests/s");
                off.push(roff);
            }
        }
        ratios.push(ron / roff);
    }
    let (mon, moff) = (median(on), median(off));
    println!(
        "nginx_link: proxied requests/s, median of {} windows of {} s (wrk -t1 -c{}, nginx 1 worker, no upstream keepalive): detached {moff:.0}, attached {mon:.0}; ratio attached/detached: median of the rounds' ratios {:.3} (ratio of medians {:.3})",
        a.rounds,
        a.secs,
        a.conns,
        median(ratios),
        mon / moff
    );
    println!(
        "nginx_link: added time per request (1/attached - 1/detached): {:.2} us",
        (1.0 / mon - 1.0 / moff) * 1e6
    );

    // The programs' own run time, statistics on.
    std::fs::write(BPF_STATS, "1").context("enable kernel.bpf_stats_enabled")?;
    let agent = agent(&a.gopher, dir)?;
    let ids = prog_ids(agent.0.id());
    let before = prog_stats(&ids);
    let t0 = Instant::now();
    let rps = wrk(front, a.secs, a.conns)?;
    let requests = rps * t0.elapsed().as_secs_f64().min(a.secs as f64);
    let after = prog_stats(&ids);
    std::fs::write(BPF_STATS, "0")?;
    let mut total_ns = 0u64;
    for (name, ns, cnt) in &after {
        let (ns0, cnt0) = before
            .iter()
            .find(|(n, ..)| n == name)
            .map_or((0, 0), |(_, a, b)| (*a, *b));
        let (dns, dcnt) = (ns - ns0, cnt - cnt0);
        if dcnt == 0 {
            continue;
        }
        total_ns += dns;
        println!(
            "nginx_link: program {name}: {dcnt} runs, {:.0} ns/run ({:.2} runs per request)",
            dns as f64 / dcnt as f64,
            dcnt as f64 / requests
        );
    }
    println!(
        "nginx_link: eBPF run time per request: {:.0} ns (statistics on; {rps:.0} requests/s in that window)",
        total_ns as f64 / requests
    );
    Ok(())
}
