//! The soak benchmark (issue 16, target 9): the release agent on its
//! default config for an hour under 1 000 short TCP connections per second,
//! an extend probe at 10 000 records/s over a few thousand churning series,
//! and a keep-alive scrape every 5 s (the run itself: `gopher_bench::soak`).
//!
//! `soak [--gopher PATH] [--minutes N] [--warmup-minutes W] [--out-dir DIR]`
//!
//! Prints a line per minute, then the verdicts: RSS growth from minute W
//! (5 by default) to the last minute under 5 %, zero unexplained drops, no
//! fd growth, series and threads stable, the load delivered. It exits
//! non-zero when one fails. Writes `soak.csv` (every sample) and
//! `soak.png` (RSS, CPU and series over time) into the out dir
//! (target/bench by default). Needs root: tcp_link is an eBPF probe.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use gopher_bench::soak::{self, Bounds, Report};
use plotters::prelude::*;

/// The benchmark's bounds (issue 16).
const BOUNDS: Bounds = Bounds {
    rss_growth_pct: 5.0,
    fd_slack: 8,
    series_change_pct: 5.0,
    min_load: 0.9,
};

/// The font of the plot's text (Debian fonts-dejavu-core; scripts/deps.sh bench).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn usage() -> &'static str {
    "usage: soak [--gopher PATH] [--minutes N] [--warmup-minutes W] [--out-dir DIR]"
}

fn opts() -> anyhow::Result<soak::Opts> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| soak::repo().join("target"), PathBuf::from);
    let mut gopher = target.join("release").join("gala-gopher");
    let mut out = target.join("bench");
    let (mut minutes, mut warmup) = (60.0_f64, 5.0_f64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--gopher" => gopher = val()?.into(),
            "--out-dir" => out = val()?.into(),
            "--minutes" => minutes = val()?.parse().context("--minutes: a number")?,
            "--warmup-minutes" => {
                warmup = val()?.parse().context("--warmup-minutes: a number")?;
            }
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; {}", usage()),
        }
    }
    if !(minutes.is_finite() && warmup.is_finite() && warmup >= 0.0 && minutes >= warmup + 2.0) {
        bail!("--minutes must be at least --warmup-minutes + 2 (got {minutes} and {warmup})");
    }
    let gopher = std::fs::canonicalize(&gopher).with_context(|| {
        format!(
            "agent binary {} (cargo build --release -p gala-gopher)",
            gopher.display()
        )
    })?;
    let mut o = soak::Opts::new(gopher, Duration::from_secs_f64(minutes * 60.0), out);
    o.warmup = Duration::from_secs_f64(warmup * 60.0);
    Ok(o)
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<bool> {
    let o = opts()?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the soak needs root: the default config's tcp_link is an eBPF probe (CAP_BPF, CAP_PERFMON)");
    }
    println!(
        "soak: {} for {:.0} min: {} records/s over {} series, {} connections/s, a scrape every {} s; load average {}",
        o.gopher.display(),
        o.duration.as_secs_f64() / 60.0,
        o.records_per_sec,
        o.series,
        o.conns_per_sec,
        o.interval.as_secs(),
        loadavg()
    );
    let r = soak::run(&o)?;
    println!("soak: done; load average {}", loadavg());
    let png = o.out_dir.join("soak.png");
    plot(&r, &png).with_context(|| format!("plot {}", png.display()))?;
    println!(
        "soak: samples {}, plot {}",
        o.out_dir.join("soak.csv").display(),
        png.display()
    );
    Ok(print_report(&r, &BOUNDS))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints the figures and the verdicts; whether all hold.
fn print_report(r: &Report, b: &Bounds) -> bool {
    let s = &r.samples;
    let rss: Vec<f64> = s.iter().map(|x| x.rss_kb as f64).collect();
    let cpu: Vec<f64> = s.iter().map(|x| x.cpu_pct).collect();
    println!(
        "soak: {:.0} s, {} samples; agent CPU {:.1} s = {:.2} % of a core (median sample {:.2} %)",
        r.secs,
        s.len(),
        r.cpu_secs,
        r.cpu_secs / r.secs * 100.0,
        gopher_bench::median(cpu)
    );
    let (a0, a1) = r.windows(|x| x.anon_kb as f64);
    let (f0, f1) = r.windows(|x| x.file_kb as f64);
    println!(
        "soak: RSS min {:.0} kB, max {:.0} kB; anon {a0:.0} -> {a1:.0} kB, file {f0:.0} -> {f1:.0} kB (reference minute -> last minute)",
        rss.iter().copied().fold(f64::INFINITY, f64::min),
        rss.iter().copied().fold(0.0, f64::max),
    );
    let a = &r.accounting;
    let zero = a.drops.values().filter(|n| **n == 0).count();
    println!(
        "soak: drop counters of the agent at the end ({} in all, {zero} at 0):",
        a.drops.len()
    );
    for ((stage, comp), n) in a.drops.iter().filter(|(_, n)| **n > 0) {
        println!("  {stage} {comp}: {n}");
    }
    for (why, n) in a.rejected.iter().filter(|(_, n)| **n > 0) {
        println!("  rejected {why} {}: {n}", soak::PROBE);
    }
    let mut ok = true;
    for v in r.verdicts(b) {
        ok &= v.ok;
        println!(
            "soak: {} {}: {}",
            if v.ok { "PASS" } else { "FAIL" },
            v.name,
            v.detail
        );
    }
    println!("soak: {}", if ok { "all verdicts hold" } else { "FAILED" });
    ok
}

/// One plotted figure of a sample.
type Metric = fn(&soak::Sample) -> f64;

/// RSS (MB), CPU (% of a core) and series over minutes, three panels.
fn plot(r: &Report, png: &Path) -> anyhow::Result<()> {
    let font = std::fs::read(FONT).with_context(|| {
        format!("read {FONT} (Debian package fonts-dejavu-core; scripts/deps.sh bench)")
    })?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{FONT}: not a font"))?;
    let (w, h) = (1000_u32, 900_u32);
    let mut buf = vec![0_u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let root = root
            .titled(
                &format!(
                    "gala-gopher soak: {} records/s, {} conn/s, scrape every {} s",
                    r.opts.records_per_sec,
                    r.opts.conns_per_sec,
                    r.opts.interval.as_secs()
                ),
                ("sans-serif", 22),
            )
            .map_err(draw_err)?;
        let panels = root.split_evenly((3, 1));
        let mins = |x: &soak::Sample| x.t / 60.0;
        let end = r.samples.last().map_or(1.0, mins).max(1.0);
        let series: [(&str, RGBColor, Metric); 3] = [
            ("RSS, MB", RED, |x| x.rss_kb as f64 / 1024.0),
            ("CPU, % of a core", BLUE, |x| x.cpu_pct),
            ("series per scrape", GREEN, |x| x.series as f64),
        ];
        for (area, (label, color, f)) in panels.iter().zip(series) {
            let ys: Vec<f64> = r.samples.iter().map(f).collect();
            let top = ys.iter().copied().fold(0.0, f64::max).max(1e-3) * 1.15;
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .x_label_area_size(32)
                .y_label_area_size(70)
                .build_cartesian_2d(0.0..end, 0.0..top)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .y_label_formatter(&|v| format!("{v:.1}"))
                .x_desc("minutes")
                .y_desc(label)
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(draw_err)?;
            chart
                .draw_series(LineSeries::new(
                    r.samples.iter().map(|x| (mins(x), f(x))),
                    color.stroke_width(2),
                ))
                .map_err(draw_err)?;
            let w0 = r.opts.warmup.as_secs_f64() / 60.0;
            chart
                .draw_series(LineSeries::new(
                    [(w0, 0.0), (w0, top)],
                    BLACK.mix(0.4).stroke_width(1),
                ))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    let file = std::fs::File::create(png).with_context(|| format!("create {}", png.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header()?;
    wr.write_image_data(&buf)?;
    wr.finish()?;
    Ok(())
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing: {e:?}")
}
