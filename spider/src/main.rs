//! `gala-spider`: the cluster topology service (see the library docs).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;

use gala_spider::config::Config;
use gala_spider::service::{period_loop, Shared};
use gala_spider::{server, source};

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

fn main() -> anyhow::Result<()> {
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.global.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

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
    let stop = async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                    if stopper.stopping() { break; }
                }
            }
        }
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
