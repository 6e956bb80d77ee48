//! `gala-spider`: the cluster topology service (see the library docs).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;

use gala_common::systemd::{self, LogTarget, Notifier};
use gala_spider::config::Config;
use gala_spider::service::{period_loop, Shared};
use gala_spider::{server, source};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, Parser)]
#[command(
    name = "gala-spider",
    version,
    about = "gala-spider: process-level topology from gala-gopher's tcp_link and LB records"
)]
struct Args {
    /// The config file (TOML).
    #[arg(long, short, default_value = "/etc/gala-spider/gala-spider.toml")]
    config: PathBuf,
    /// Check the config and exit.
    #[arg(long)]
    check: bool,
}

/// The `STATUS=` line: the last snapshot's size and the records read.
fn status(shared: &Shared) -> String {
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let st = &shared.stats;
    format!(
        "{} hosts, {} processes, {} edges, {} LB flow halves; {} records read",
        n(&st.hosts),
        n(&st.processes),
        n(&st.edges),
        n(&st.lb_halves),
        n(&st.received)
    )
}

/// Logs to the journal under systemd (native entries with priorities and
/// fields), to stderr otherwise.
fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.global.log_level));
    let registry = tracing_subscriber::registry().with(filter);
    match systemd::log_target("gala-spider") {
        LogTarget::Journal(layer) => registry.with(*layer).init(),
        LogTarget::Stderr(why) => {
            registry
                .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
                .init();
            if let Some(why) = why {
                tracing::debug!("{why}");
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    // First, while this is the only thread: what the service manager set in
    // the environment.
    let notifier = Arc::new(Notifier::from_env());
    let args = Args::parse();
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gala-spider: invalid config:\n{e}");
            std::process::exit(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    init_logging(&cfg);

    let shared = Arc::new(Shared::new(&cfg));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let listener = if cfg.server.port != 0 {
        let addr = format!("{}:{}", cfg.server.bind_addr, cfg.server.port);
        Some(
            rt.block_on(tokio::net::TcpListener::bind(&addr))
                .with_context(|| format!("[server] cannot listen on {addr}"))?,
        )
    } else {
        None
    };

    let src = {
        let (cfg, shared) = (cfg.clone(), Arc::clone(&shared));
        std::thread::Builder::new()
            .name("source".into())
            .spawn(move || {
                let r = source::run(&cfg, &shared);
                if r.is_err() {
                    shared.shutdown.store(true, Ordering::Relaxed);
                }
                r
            })
            .context("spawn the source thread")?
    };
    let period = {
        let (cfg, shared) = (cfg.clone(), Arc::clone(&shared));
        std::thread::Builder::new()
            .name("period".into())
            .spawn(move || period_loop(&shared, &cfg))
            .context("spawn the period thread")?
    };
    tracing::info!(
        source = ?cfg.global.data_source,
        sink = ?cfg.global.ui_source,
        port = cfg.server.port,
        "gala-spider started"
    );

    let stopper = Arc::clone(&shared);
    let notify = Arc::clone(&notifier);
    // Runs on the main thread, in the runtime that serves HTTP, and is first
    // polled once the server runs: READY=1 then, STATUS= every few
    // seconds, WATCHDOG=1 at half of WatchdogSec, STOPPING=1 at the end.
    // The watchdog is fed from here because this is the thread that stops
    // answering when the service hangs (a request stuck on the shared
    // state, or a wedged runtime); the source and period threads report
    // their troubles in the log and in /metrics.
    let stop = async move {
        use tokio::signal::unix::{signal, SignalKind};
        use tokio::time::Instant;
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM");
                return;
            }
        };
        // gala-spider has no reload: a SIGHUP must not kill it.
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGHUP");
                None
            }
        };
        notify.ready(&status(&stopper));
        let mut last_status = Instant::now();
        let mut last_ping = Instant::now();
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                got = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if got.is_some() {
                        tracing::warn!("SIGHUP: gala-spider does not reload; restart it to apply a changed config");
                    } else {
                        hup = None;
                    }
                }
                () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                    if stopper.stopping() { break; }
                }
            }
            if last_status.elapsed() >= systemd::STATUS_PERIOD {
                notify.status(&status(&stopper));
                last_status = Instant::now();
            }
            if let Some(p) = notify.watchdog_period() {
                if last_ping.elapsed() >= p {
                    notify.watchdog();
                    last_ping = Instant::now();
                }
            }
        }
        notify.stopping();
        stopper.shutdown.store(true, Ordering::Relaxed);
    };
    match listener {
        Some(l) => rt
            .block_on(server::serve(l, Arc::clone(&shared), stop))
            .context("HTTP server")?,
        None => rt.block_on(stop),
    }
    shared.shutdown.store(true, Ordering::Relaxed);
    let _ = period.join();
    match src.join() {
        Ok(Err(e)) => {
            tracing::error!(error = %e, "source failed");
            std::process::exit(1);
        }
        Ok(Ok(())) => {}
        Err(_) => anyhow::bail!("the source thread panicked"),
    }
    tracing::info!("gala-spider stopped");
    Ok(())
}
