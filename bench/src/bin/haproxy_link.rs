//! The uprobe cost of haproxy_link per proxied request.
//!
//! `haproxy_link [--gopher target/release/gala-gopher] [--secs 5] [--rounds 3] [--conns 32]`
//! (root: uprobes, and `kernel.bpf_stats_enabled` for the last phase).
//!
//! On 127.0.0.1: the stock haproxy (HTTP mode, one frontend, one backend)
//! in front of nginx answering `return 200` (a backend much cheaper than
//! haproxy, so haproxy is what wrk measures). wrk (keep-alive, 2 threads,
//! `--conns` connections) runs the same job in windows that alternate
//! between no agent and the agent with haproxy_link attached (period 1 s).
//! It prints requests/s both ways and their ratio (median over rounds).
//!
//! A last phase, attached, turns the BPF run-time statistics on (they add
//! two clock reads to each run, so the rounds above run without them) and
//! prints the program's run time per request: run_time_ns / requests wrk
//! completed, and runs per request (one stream per request in HTTP mode).
//! `kernel.bpf_stats_enabled` is put back as it was (on errors too).

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gopher_bench::{base_config, free_port, median, prog_ids, BpfStatsGuard, Proc, BPF_STATS};

/// The program's name as the kernel keeps it (15 characters).
const PROG_PREFIX: &str = "haproxy_link_rd";

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
            "--secs" => a.secs = v.parse().context("--secs")?,
            "--rounds" => a.rounds = v.parse().context("--rounds")?,
            "--conns" => a.conns = v.parse().context("--conns")?,
            _ => bail!("unknown argument {k} (--gopher, --secs, --rounds, --conns)"),
        }
    }
    Ok(a)
}

fn wait_port(port: u16, what: &str, child: &mut Child) -> Result<()> {
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(st) = child.try_wait()? {
            bail!("{what} exited ({st})");
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("{what} does not listen on 127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// nginx answering 200 on `port`, everything under `dir` (no write under
/// /var: every temp path is ours).
fn nginx(dir: &Path, port: u16) -> Result<Proc> {
    let d = dir.join("nginx");
    std::fs::create_dir_all(d.join("tmp"))?;
    let t = d.join("tmp").display().to_string();
    let cfg = format!(
        "worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {t};\n  proxy_temp_path {t};\n  fastcgi_temp_path {t};\n  uwsgi_temp_path {t};\n  scgi_temp_path {t};\n\
           server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n",
        p = d.display()
    );
    std::fs::write(d.join("nginx.conf"), cfg)?;
    let mut c = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(&d)
        .arg("-e")
        .arg(d.join("error.log"))
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start /usr/sbin/nginx (scripts/deps.sh installs it)")?;
    wait_port(port, "nginx", &mut c)?;
    Ok(Proc(c))
}

/// The stock haproxy, HTTP mode, `front` → nginx on `back`.
fn haproxy(dir: &Path, front: u16, back: u16) -> Result<Proc> {
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    maxconn 4000\n\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\n\
             frontend web\n    bind 127.0.0.1:{front}\n    default_backend app\n\n\
             backend app\n    server s1 127.0.0.1:{back}\n"
        ),
    )?;
    let mut c = Command::new("/usr/sbin/haproxy")
        .arg("-f")
        .arg(&cfg)
        .arg("-db")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start /usr/sbin/haproxy (scripts/deps.sh installs it)")?;
    wait_port(front, "haproxy", &mut c)?;
    Ok(Proc(c))
}

/// The agent with haproxy_link (period 1 s), once it says the uprobe is on.
fn agent(bin: &Path, dir: &Path) -> Result<Proc> {
    let port = free_port()?;
    let cfg = format!(
        "{}\n[[probes]]\nname = \"haproxy_link\"\nparam = \"-t 1\"\nswitch = \"on\"\n",
        base_config(dir, port)
    );
    let path = dir.join("gala-gopher.toml");
    std::fs::write(&path, cfg)?;
    let log = dir.join("agent.log");
    let child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .env("GALA_GOPHER_CTL_SOCKET", dir.join("ctl.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let a = Proc(child);
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("uprobe attached to back_handle_st_rdy") {
            return Ok(a);
        }
        if text.contains("refused") || text.contains("will not be restarted") {
            bail!("haproxy_link did not attach:\n{text}");
        }
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("the agent did not attach haproxy_link in 20 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (requests/s, requests completed) of one wrk window.
fn wrk(port: u16, secs: u64, conns: u32) -> Result<(f64, u64)> {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{conns}"), &format!("-d{secs}s")])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .context("run wrk (scripts/deps.sh installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let n = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no request count in wrk's output:\n{text}"))?;
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk saw errors:\n{text}");
    }
    Ok((rps, n))
}

/// (run_time_ns, run_cnt) summed over the haproxy_link programs among `ids`.
fn prog_stats(ids: &[u32]) -> (u64, u64) {
    libbpf_rs::query::ProgInfoIter::default()
        .filter(|p| ids.contains(&p.id) && p.name.to_string_lossy().starts_with(PROG_PREFIX))
        .fold((0, 0), |(t, n), p| (t + p.run_time_ns, n + p.run_cnt))
}

fn main() -> Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let (p_back, p_front) = (free_port()?, free_port()?);
    let _nginx = nginx(dir.path(), p_back)?;
    let _haproxy = haproxy(dir.path(), p_front, p_back)?;
    // Off for now, and put back as it was on every way out.
    let _restore = BpfStatsGuard::off()?;
    // Warm up haproxy and nginx.
    wrk(p_front, 1, a.conns)?;

    println!("{:>5} {:>9} {:>12}", "round", "probe", "req/s");
    let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..a.rounds {
        // Alternate which side goes first so drift hits both alike.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut r = [0.0; 2];
        for attached in order {
            let agent = if attached {
                Some(agent(&a.gopher, dir.path())?)
            } else {
                None
            };
            std::thread::sleep(Duration::from_millis(300));
            let (rps, _) = wrk(p_front, a.secs, a.conns)?;
            drop(agent);
            r[usize::from(attached)] = rps;
            println!(
                "{round:>5} {:>9} {rps:>12.0}",
                if attached { "attached" } else { "none" }
            );
            std::io::stdout().flush()?;
        }
        off.push(r[0]);
        on.push(r[1]);
        ratios.push(r[1] / r[0]);
    }

    // Cost per request, from the program's own run-time statistics.
    std::fs::write(BPF_STATS, "1")?;
    let cost = (|| -> Result<(u64, u64, u64)> {
        let ag = agent(&a.gopher, dir.path())?;
        let ids = prog_ids(ag.0.id());
        let (t0, n0) = prog_stats(&ids);
        let (_, reqs) = wrk(p_front, a.secs, a.conns)?;
        let (t1, n1) = prog_stats(&ids);
        Ok((t1 - t0, n1 - n0, reqs))
    })();
    std::fs::write(BPF_STATS, "0")?;
    let (ns, runs, reqs) = cost?;
    if runs == 0 || reqs == 0 {
        bail!("the program did not run ({runs} runs, {reqs} requests)");
    }
    let ratio = median(ratios);
    let (m_off, m_on) = (median(off.clone()), median(on.clone()));
    println!(
        "haproxy_link: wrk -t2 -c{} -d{}s, HTTP keep-alive through haproxy 2.6 to nginx; median of {} rounds: {:.0} req/s without the agent, {:.0} req/s with haproxy_link attached, ratio {:.3} ({:+.1} %)",
        a.conns,
        a.secs,
        a.rounds,
        m_off,
        m_on,
        ratio,
        (ratio - 1.0) * 100.0
    );
    println!(
        "haproxy_link: throughput cost {:.2} us per request (1/on - 1/off, the whole machine)",
        (1.0 / m_on - 1.0 / m_off) * 1e6
    );
    println!(
        "haproxy_link: uprobe program {:.0} ns per run, {:.3} runs per request ({runs} runs, {reqs} requests; run time with kernel.bpf_stats_enabled, uprobe entry/exit trap not included)",
        ns as f64 / runs as f64,
        runs as f64 / reqs as f64
    );
    Ok(())
}
