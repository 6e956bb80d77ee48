//! gala-spider consumer group at cluster scale: the records of `--hosts`
//! simulated nodes (default 1 000; tcp_link both sides, nginx_link flows,
//! dnsmasq_link; gopher_bench::cluster) produced every `--period` seconds
//! with the agent's own JSON and partition keys to a 6-partition topic on a
//! local tansu; 3 gala-spiders in one consumer group and 1 gala-spider in
//! another consume it (`ui_source = "none"`: the graph is read over REST).
//!
//! Prints, per round: the produce rate (records/s), the time until every
//! spider has received the round (its `gala_spider_records_received_total`
//! reaching what was produced: the consumer lag, against the period), and
//! whether the union of the group's graphs equals the single spider's
//! (edges with their metrics, LB halves, process ids; no edge split).
//! Exits non-zero when the graphs differ at the end or the median lag is
//! not under one period. Needs tansu (scripts/kafka.sh) and a built
//! gala-spider beside this binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use gopher_bench::cluster::{self, View};
use gopher_bench::{find_tool, free_port, median, Proc, Tansu};

const TOPIC: &str = "gala_gopher";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The body of GET 127.0.0.1:`port``path`.
fn get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut r = String::new();
    s.read_to_string(&mut r)?;
    Ok(r.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

struct Spider {
    _proc: Proc,
    port: u16,
}

impl Spider {
    fn start(dir: &Path, broker: &str, group: &str, period: u64) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("gala-spider");
        let port = free_port()?;
        std::fs::create_dir_all(dir)?;
        let cfg = dir.join("gala-spider.toml");
        std::fs::write(
            &cfg,
            format!(
                "[global]\ndata_source = \"kafka\"\nui_source = \"none\"\nlog_level = \"warn\"\n\
                 [kafka]\ntopic = \"{TOPIC}\"\nbroker = \"{broker}\"\ngroup_id = \"{group}\"\n\
                 auto_offset_reset = \"earliest\"\n[table_info]\nother_table_name = \"nginx_link, dnsmasq_link\"\n\
                 [option]\nperiod_secs = {period}\nexpire_secs = {}\n[server]\nport = {port}\n",
                3 * period
            ),
        )?;
        let child = Command::new(&exe)
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("spider.log"))?)
            .spawn()
            .with_context(|| format!("start {}", exe.display()))?;
        let s = Self {
            _proc: Proc(child),
            port,
        };
        let t0 = Instant::now();
        while get(port, "/gala-spider/api/v1/get_status").is_err() {
            if t0.elapsed() > Duration::from_secs(20) {
                bail!(
                    "gala-spider did not serve within 20 s (log in {})",
                    dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(s)
    }

    /// CPU seconds (user + system) the spider used so far.
    fn cpu_s(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self._proc.0.id()))
            .unwrap_or_default();
        // After the command name (in parentheses): fields 3.., utime and
        // stime are the 14th and 15th of the line.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / hz
    }

    fn received(&self) -> u64 {
        get(self.port, "/metrics")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("gala_spider_records_received_total "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .map_or(0, |v| v as u64)
    }

    fn view(&self) -> anyhow::Result<View> {
        let body = get(self.port, "/api/v1/topology")?;
        Ok(View::of(&serde_json::from_str(&body)?))
    }
}

fn main() -> anyhow::Result<()> {
    let hosts = usize::try_from(arg("--hosts", 1000))?;
    let rounds = arg("--rounds", 12);
    let period = arg("--period", 5);
    let dir = tempfile::tempdir()?;
    let tansu = Tansu::start(
        &find_tool("tansu")?,
        TOPIC,
        6,
        std::fs::File::create(dir.path().join("tansu.log"))?.into(),
    )?;
    let broker = tansu.addr.clone();
    let id = std::process::id();
    let one = Spider::start(
        &dir.path().join("one"),
        &broker,
        &format!("one-{id}"),
        period,
    )?;
    let three = (0..3)
        .map(|i| {
            Spider::start(
                &dir.path().join(format!("s{i}")),
                &broker,
                &format!("three-{id}"),
                period,
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let reg = cluster::registry()?;
    let recs = cluster::simulate(hosts);
    let producer = cluster::producer(&broker)?;
    println!(
        "gala-spider consumer group: {hosts} simulated nodes, {} records per period of {period} s, 6 partitions; 3 spiders (one group) against 1 (another group)",
        recs.len()
    );
    let mut produced = 0u64;
    let mut rates = Vec::new();
    let mut lags = Vec::new();
    let mut equal_rounds = 0;
    let mut last_diff = String::new();
    for round in 0..rounds {
        let start = Instant::now();
        let msgs = cluster::messages(&reg, &recs, now_ms())?;
        cluster::produce(&producer, TOPIC, &msgs)?;
        let produce_s = start.elapsed().as_secs_f64();
        produced += msgs.len() as u64;
        // Lag: until the group together, and the single spider, have
        // received everything produced so far.
        let drained = loop {
            let group: u64 = three.iter().map(Spider::received).sum();
            if group >= produced && one.received() >= produced {
                break start.elapsed().as_secs_f64();
            }
            if start.elapsed() > Duration::from_secs(10 * period) {
                break f64::INFINITY;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let rate = msgs.len() as f64 / produce_s;
        // The graphs, one snapshot after the round was consumed.
        let wait = Duration::from_secs(period).saturating_sub(start.elapsed());
        std::thread::sleep(wait + Duration::from_millis(1200));
        let single = one.view()?;
        let parts = three
            .iter()
            .map(Spider::view)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let verdict = match View::union(&parts) {
            Ok(u) if u == single && !single.edges.is_empty() => {
                equal_rounds += 1;
                last_diff.clear();
                "equal".to_owned()
            }
            Ok(u) => {
                last_diff = u.difference(&single);
                "DIFFERENT".to_owned()
            }
            Err(e) => {
                last_diff = e;
                "SPLIT EDGE".to_owned()
            }
        };
        let shares: Vec<usize> = parts.iter().map(|v| v.edges.len()).collect();
        println!(
            "round {round:>2}: {} messages produced at {:.0} records/s; all received {:.2} s after the round began (period {period} s); graph {verdict}: {} edges, {} LB halves, {} processes; the group's edges per spider {shares:?}",
            msgs.len(),
            rate,
            drained,
            single.edges.len(),
            single.lb_flows.len(),
            single.processes.len()
        );
        if round > 0 {
            rates.push(rate);
            lags.push(drained);
        }
        let used = start.elapsed();
        std::thread::sleep(Duration::from_secs(period).saturating_sub(used));
    }
    let cpu_one = one.cpu_s();
    let cpu_group: Vec<f64> = three.iter().map(Spider::cpu_s).collect();
    let busiest = cpu_group.iter().copied().fold(0.0, f64::max);
    println!(
        "CPU: the single spider {cpu_one:.2} s; the group's spiders {cpu_group:.2?} s: the busiest of the group at {:.2}x the single spider (an even share is 0.33)",
        busiest / cpu_one.max(1e-9)
    );
    let lag = median(lags.clone());
    let worst = lags.iter().copied().fold(0.0, f64::max);
    println!(
        "median produce rate {:.0} records/s; consumer lag median {lag:.2} s, worst {worst:.2} s, period {period} s: ratio {:.2} (target < 1); graph equal in {equal_rounds} of {rounds} rounds",
        median(rates),
        lag / period as f64
    );
    if !last_diff.is_empty() {
        bail!("the group's graph differs from the single spider's at the end:\n{last_diff}");
    }
    if lag >= period as f64 {
        bail!("consumer lag {lag:.2} s is not under one period ({period} s)");
    }
    Ok(())
}
