//! `gala-gopher`: the node agent binary, a thin layer over the `gopher` library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use gala_gopher::config::{has_meta_files, Config, ConfigProblem};
use gala_gopher::daemon::{self, Daemon, StartError};
use gala_gopher::export::logfile::RotatingFile;
use gala_gopher::meta::{MetaError, MetaRegistry};
use gala_gopher::probe::cabi::{self, CSource};

/// The gala-gopher node agent: runs probes, keeps their live series and
/// exports them to Prometheus, log files (and Kafka).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML, or a legacy libconfig gala-gopher.conf).
    /// Default: /etc/gala-gopher/gala-gopher.toml, then
    /// /etc/gala-gopher/gala-gopher.conf, then config/gala-gopher.toml.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Validate a config and every meta file it points to, report all
    /// errors, and exit (0 when clean, 2 otherwise).
    CheckConfig {
        /// The config file to check.
        file: Option<PathBuf>,
    },
    /// Re-arms the parent-death signal, then execs the command (how the
    /// daemon starts every probe child; not for use by hand).
    #[command(hide = true)]
    ExecChild {
        /// The daemon's pid: exit at once if it is no longer our parent.
        #[arg(long)]
        parent: u32,
        /// The program and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Runs one C probe in this process (started by the daemon, not by hand).
    #[command(hide = true)]
    ProbeHost {
        /// The probe's configured name.
        #[arg(long)]
        name: String,
        /// The probe's legacy param string.
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        param: String,
        /// A C probe compiled into this build.
        #[arg(long, conflicts_with = "library", required_unless_present = "library")]
        builtin: Option<String>,
        /// A shared library with a C probe.
        #[arg(long)]
        library: Option<PathBuf>,
    },
}

fn default_config() -> PathBuf {
    [
        "/etc/gala-gopher/gala-gopher.toml",
        "/etc/gala-gopher/gala-gopher.conf",
        "config/gala-gopher.toml",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .unwrap_or_else(|| PathBuf::from("/etc/gala-gopher/gala-gopher.toml"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::CheckConfig { file }) => {
            check_config(&file.or(cli.config).unwrap_or_else(default_config))
        }
        Some(Cmd::ExecChild { parent, command }) => exec_child(parent, &command),
        Some(Cmd::ProbeHost {
            name,
            param,
            builtin,
            library,
        }) => {
            let source = match (builtin, library) {
                (Some(b), _) => CSource::Builtin(b),
                (None, Some(l)) => CSource::Library(l),
                (None, None) => return ExitCode::from(2),
            };
            match cabi::host_main(&name, &source, &param) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("[error] probe {name}: {e}");
                    ExitCode::from(cabi::EXIT_REFUSED)
                }
            }
        }
        None => run(&cli.config.unwrap_or_else(default_config)),
    }
}

fn exec_child(parent: u32, command: &[std::ffi::OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt as _;
    if !gala_gopher::probe::extend::rearm_parent_death(parent) {
        // The daemon is gone already: do not start an orphan.
        return ExitCode::from(1);
    }
    let Some((program, args)) = command.split_first() else {
        return ExitCode::from(2);
    };
    let err = std::process::Command::new(program).args(args).exec();
    eprintln!("[error] cannot exec {}: {err}", program.to_string_lossy());
    ExitCode::from(127)
}

/// `check-config`: every problem of the config file (syntax, keys, values,
/// probe names, each with file, line and key), then of the meta directory,
/// then of the probe plan; exit 2 when there is any.
fn check_config(path: &Path) -> ExitCode {
    let (cfg, problems) = Config::load_partial(path);
    for p in &problems {
        eprintln!("{p}");
    }
    let Some(cfg) = cfg else {
        return ExitCode::from(2);
    };
    // The meta directory is checked too, unless the problems leave it unknown
    // (a syntax error, or a bad `global.meta_dir`).
    let meta_dir_unknown = problems
        .iter()
        .any(|p| matches!(p.key.as_deref(), None | Some("global" | "global.meta_dir")));
    if meta_dir_unknown {
        return ExitCode::from(2);
    }
    let meta = match MetaRegistry::load_dir(&cfg.global.meta_dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            let dir_problem =
                e.0.iter()
                    .any(|m| matches!(m, MetaError::Dir { .. } | MetaError::NoMetaFiles { .. }));
            if dir_problem {
                eprintln!("{}", cfg.meta_dir_note());
            }
            return ExitCode::from(2);
        }
    };
    if !problems.is_empty() {
        return ExitCode::from(2);
    }
    match daemon::plan_probes(&cfg, &meta) {
        Ok(plan) => {
            println!(
                "{}: OK ({} tables from {}, {} probes to run)",
                path.display(),
                meta.len(),
                cfg.global.meta_dir.display(),
                plan.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", start_error_text(&e, &cfg));
            ExitCode::from(2)
        }
    }
}

/// A start error as printed: a probe problem with the line of its key, a
/// meta directory problem with where the directory came from.
fn start_error_text(e: &StartError, cfg: &Config) -> String {
    match e {
        StartError::Probe { file, key, msg } => {
            ConfigProblem::at_key(file, cfg.locations.line(key), key.clone(), msg.clone())
                .to_string()
        }
        StartError::Meta { dir, .. } if !has_meta_files(dir) => {
            format!("{e}\n{}", cfg.meta_dir_note())
        }
        _ => e.to_string(),
    }
}

/// Logs go to stderr (the journal under systemd), or to
/// `logs.debug_dir/<global.log_file_name>` rotated like the other log files.
fn init_logging(cfg: &Config) -> Result<(), String> {
    let level = &cfg.global.log_level;
    let filter = tracing_subscriber::EnvFilter::try_from_env("GOPHER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "warn,gala_gopher={level},gopher_probes={level}"
        ))
    });
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match &cfg.global.log_file_name {
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
        Some(name) => {
            let path = cfg.logs.debug_dir.join(name);
            let (dir, file) = match (path.parent(), path.file_name()) {
                (Some(d), Some(f)) => (d.to_path_buf(), f.to_string_lossy().into_owned()),
                _ => return Err(format!("global.log_file_name: `{name}` is not a file name")),
            };
            let max = cfg.logs.max_file_size_mb.saturating_mul(1024 * 1024);
            let f = RotatingFile::open(&dir, &file, max, cfg.logs.max_files).map_err(|e| {
                format!("global.log_file_name: cannot open {}: {e}", path.display())
            })?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init();
        }
    }
    Ok(())
}

fn run(path: &Path) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&cfg) {
        eprintln!("{}: {e}", cfg.source.display());
        return ExitCode::from(2);
    }
    let addr = std::net::SocketAddr::new(cfg.web_server.bind_addr, cfg.web_server.port);
    let listener = match daemon::bind_http(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // For messages: `Daemon::start` takes the config.
    let explain = cfg.clone();
    let daemon = match Daemon::start(cfg) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            let text = start_error_text(&e, &explain);
            tracing::error!("cannot start: {text}");
            eprintln!("{text}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = rt.block_on(daemon::serve_http(
        Arc::clone(&daemon),
        listener,
        stop_signal(),
    ));
    let code = match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            ExitCode::from(2)
        }
    };
    drop(rt);
    match Arc::try_unwrap(daemon) {
        Ok(d) => d.shutdown(),
        Err(_) => {
            tracing::warn!("HTTP handlers still hold the daemon; exiting without a full drain")
        }
    }
    code
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
