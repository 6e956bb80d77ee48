//! `gala-gopher`: the node agent binary, a thin layer over the `gopher` library.

mod settle;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use clap::{Parser, Subcommand};
use gala_gopher::config::{has_meta_files, Config, ConfigProblem};
use gala_gopher::control::ProbeControl;
use gala_gopher::daemon::{self, Daemon, PlannedProbe, Serving, StartError};
use gala_gopher::export::logfile::RotatingFile;
use gala_gopher::meta::{MetaError, MetaRegistry};
use gala_gopher::probe::cabi::{self, CSource};
use gala_gopher::rest;
use gala_gopher::systemd::{self, LogTarget, Notifier};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Registry};

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
    // The probe is not the service: the notify socket is not its to use.
    let err = std::process::Command::new(program)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .exec();
    eprintln!("[error] cannot exec {}: {err}", program.to_string_lossy());
    ExitCode::from(127)
}

/// `check-config`: every problem of the config file (syntax, keys, values,
/// probe names, each with file, line and key), then of the meta directory,
/// then of the probe plan; exit 2 when there is any.
fn check_config(path: &Path) -> ExitCode {
    match check(path) {
        Ok(c) => {
            for w in c.cfg.warnings.iter() {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: OK ({} tables from {}, {} probes to run)",
                path.display(),
                c.meta.len(),
                c.cfg.global.meta_dir.display(),
                c.plan.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            ExitCode::from(2)
        }
    }
}

/// A config file checked up to its probe plan, ready to start.
struct Checked {
    cfg: Config,
    meta: MetaRegistry,
    plan: Vec<PlannedProbe>,
}

/// Loads and checks a config file as `check-config` and a reload do: every
/// problem of the file, then of the meta directory, then of the probe plan,
/// one text each (`file:line: key ...`).
fn check(path: &Path) -> Result<Checked, Vec<String>> {
    let (cfg, problems) = Config::load_partial(path);
    let mut errors: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let Some(cfg) = cfg else {
        return Err(errors);
    };
    // The meta directory is checked too, unless the problems leave it unknown
    // (a syntax error, or a bad `global.meta_dir`).
    let meta_dir_unknown = problems
        .iter()
        .any(|p| matches!(p.key.as_deref(), None | Some("global" | "global.meta_dir")));
    if meta_dir_unknown {
        return Err(errors);
    }
    let meta = match MetaRegistry::load_dir(&cfg.global.meta_dir) {
        Ok(m) => m,
        Err(e) => {
            errors.extend(e.0.iter().map(ToString::to_string));
            let dir_problem =
                e.0.iter()
                    .any(|m| matches!(m, MetaError::Dir { .. } | MetaError::NoMetaFiles { .. }));
            if dir_problem {
                errors.push(cfg.meta_dir_note());
            }
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let (plan, plan_errors) = daemon::plan_probes_all(&cfg, &meta);
    if !plan_errors.is_empty() {
        return Err(plan_errors
            .iter()
            .map(|e| start_error_text(e, &cfg))
            .collect());
    }
    Ok(Checked { cfg, meta, plan })
}

/// A start error as printed: a probe problem with the line of its key, a
/// meta directory problem with where the directory came from.
fn start_error_text(e: &StartError, cfg: &Config) -> String {
    match e {
        StartError::Probe { file, key, msg } => {
            ConfigProblem::at_key(file, cfg.locations.line(key), key.clone(), msg.to_string())
                .to_string()
        }
        StartError::Meta { dir, .. } if !has_meta_files(dir) => {
            format!("{e}\n{}", cfg.meta_dir_note())
        }
        _ => e.to_string(),
    }
}

/// The default filter for a `global.log_level`.
fn level_filter(level: &str) -> EnvFilter {
    EnvFilter::new(format!("warn,gala_gopher={level},gopher_probes={level}"))
}

/// Where `global.log_file_name` puts the agent's own log: (directory, file
/// name), or `None` when it is not set.
fn own_log_path(cfg: &Config) -> Result<Option<(PathBuf, String)>, String> {
    let Some(name) = &cfg.global.log_file_name else {
        return Ok(None);
    };
    let path = cfg.logs.debug_dir.join(name);
    match (path.parent(), path.file_name()) {
        (Some(d), Some(f)) => Ok(Some((d.to_path_buf(), f.to_string_lossy().into_owned()))),
        _ => Err(format!("global.log_file_name: `{name}` is not a file name")),
    }
}

/// Opens the agent's own log file, when `global.log_file_name` is set.
fn open_own_log(cfg: &Config) -> Result<Option<RotatingFile>, String> {
    let Some((dir, file)) = own_log_path(cfg)? else {
        return Ok(None);
    };
    let max = cfg.logs.max_file_size_mb.saturating_mul(1024 * 1024);
    RotatingFile::open(&dir, &file, max, cfg.logs.max_files)
        .map(Some)
        .map_err(|e| {
            format!(
                "global.log_file_name: cannot open {}: {e}",
                dir.join(&file).display()
            )
        })
}

/// The agent's own log file, shared by the log writer and the reload that
/// reopens it.
#[derive(Debug, Clone)]
struct SharedLog(Arc<Mutex<RotatingFile>>);

impl SharedLog {
    fn lock(&self) -> MutexGuard<'_, RotatingFile> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One log line's hold on the file.
struct SharedLogWriter<'a>(MutexGuard<'a, RotatingFile>);

impl std::io::Write for SharedLogWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::Write::flush(&mut *self.0)
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SharedLog {
    type Writer = SharedLogWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SharedLogWriter(self.lock())
    }
}

/// The agent's own logging, as far as a reload can change it.
struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    /// `GOPHER_LOG` chose the filter: `global.log_level` is not applied.
    filter_from_env: bool,
    /// The log file, when `global.log_file_name` is set.
    file: Option<SharedLog>,
}

/// What a reload does to the agent's own log file.
enum LogChange {
    /// Nothing.
    Same,
    /// Go on in this newly opened file.
    File(RotatingFile),
    /// Between stderr (or the journal) and a file: not done in place.
    NeedsRestart(String),
}

impl Logging {
    /// Reopens the log file by name (after logrotate moved it away).
    fn reopen(&self) -> Result<(), String> {
        let Some(f) = &self.file else {
            return Ok(());
        };
        let mut f = f.lock();
        f.reopen()
            .map_err(|e| format!("cannot reopen {}: {e}", f.path().display()))
    }

    /// Opens what `new` needs, before anything changes: an error here
    /// keeps the running configuration.
    fn prepare(&self, old: &Config, new: &Config) -> Result<LogChange, String> {
        let same = own_log_path(old) == own_log_path(new)
            && old.logs.max_file_size_mb == new.logs.max_file_size_mb
            && old.logs.max_files == new.logs.max_files;
        if same {
            return Ok(LogChange::Same);
        }
        match (&self.file, open_own_log(new)?) {
            (Some(_), Some(f)) => Ok(LogChange::File(f)),
            (None, None) => Ok(LogChange::Same),
            (had, _) => {
                let (from, to) = if had.is_some() {
                    ("a file", "stderr or the journal")
                } else {
                    ("stderr or the journal", "a file")
                };
                Ok(LogChange::NeedsRestart(format!(
                    "global.log_file_name now sends the agent's own log from {from} to {to}: \
                     that takes effect when gala-gopher restarts"
                )))
            }
        }
    }

    /// Applies a reload: the log level (unless `GOPHER_LOG` set it) and
    /// the log file.
    fn apply(&self, change: LogChange, old: &Config, new: &Config) {
        if !self.filter_from_env && old.global.log_level != new.global.log_level {
            match self.filter.reload(level_filter(&new.global.log_level)) {
                Ok(()) => tracing::info!(level = %new.global.log_level, "log level changed"),
                Err(e) => tracing::warn!(error = %e, "cannot change the log level"),
            }
        }
        match change {
            LogChange::Same => {}
            LogChange::File(f) => {
                if let Some(shared) = &self.file {
                    let path = f.path().to_path_buf();
                    *shared.lock() = f;
                    tracing::info!(path = %path.display(), "the agent's own log goes to this file now");
                }
            }
            LogChange::NeedsRestart(why) => tracing::warn!("{why}"),
        }
    }
}

/// The agent's own log: `logs.debug_dir/<global.log_file_name>`, rotated
/// like the other log files, when that is set; otherwise the journal
/// (native entries with priorities and fields) under systemd, or stderr.
fn init_logging(cfg: &Config) -> Result<Logging, String> {
    let from_env = EnvFilter::try_from_env("GOPHER_LOG").ok();
    let filter_from_env = from_env.is_some();
    let (filter, handle) =
        reload::Layer::new(from_env.unwrap_or_else(|| level_filter(&cfg.global.log_level)));
    let registry = tracing_subscriber::registry().with(filter);
    let text = || tracing_subscriber::fmt::layer().with_target(false);
    let mut file = None;
    match open_own_log(cfg)? {
        Some(f) => {
            let shared = SharedLog(Arc::new(Mutex::new(f)));
            registry
                .with(text().with_ansi(false).with_writer(shared.clone()))
                .init();
            file = Some(shared);
        }
        None => match systemd::log_target("gala-gopher") {
            LogTarget::Journal(layer) => registry.with(*layer).init(),
            LogTarget::Stderr(why) => {
                use std::io::IsTerminal as _;
                registry
                    .with(
                        text()
                            .with_ansi(std::io::stderr().is_terminal())
                            .with_writer(std::io::stderr),
                    )
                    .init();
                if let Some(why) = why {
                    tracing::debug!("{why}");
                }
            }
        },
    }
    Ok(Logging {
        filter: handle,
        filter_from_env,
        file,
    })
}

/// The legacy keys and probe names a config file maps or ignores, and the
/// application whitelist it found, once per load.
fn log_config_warnings(cfg: &Config) {
    for w in cfg.warnings.iter() {
        tracing::warn!("{w}");
    }
    if let Some(w) = &cfg.app_whitelist {
        tracing::info!(path = %w.path.display(), entries = w.apps.len(), "application whitelist loaded");
    }
}

fn web_addr(cfg: &Config) -> SocketAddr {
    SocketAddr::new(cfg.web_server.bind_addr, cfg.web_server.port)
}

/// The TLS config of `[web_server]` when `ssl_auth` is on.
fn web_tls(cfg: &Config) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let w = &cfg.web_server;
    if !w.ssl_auth {
        return Ok(None);
    }
    gala_gopher::tls::load(gala_gopher::tls::TlsFiles {
        private_key: w.private_key.as_deref(),
        cert_file: w.cert_file.as_deref(),
        ca_file: w.ca_file.as_deref(),
    })
    .map(Some)
    .map_err(|e| format!("web_server.{e}"))
}

/// `/metrics` (and `/`) over TLS: [`daemon::metrics_router`].
async fn serve_https(
    serving: Arc<Serving>,
    listener: std::net::TcpListener,
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    tracing::info!(%addr, "serving Prometheus metrics over TLS 1.3");
    gala_gopher::tls::serve_router(listener, daemon::metrics_router(serving), tls, stop)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn run(path: &Path) -> ExitCode {
    // First, while this is the only thread: what the service manager set in
    // the environment.
    let notifier = Notifier::from_env();
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let logging = match init_logging(&cfg) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{}: {e}", cfg.source.display());
            return ExitCode::from(2);
        }
    };
    log_config_warnings(&cfg);
    // A current-thread runtime starts no thread; it is built first so that
    // SIGTERM, SIGINT and SIGHUP are handled from here on (a SIGHUP during
    // the start is a reload right after it, never the default death).
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
    let signals = {
        let _in_runtime = rt.enter();
        Signals::install()
    };
    let addr = web_addr(&cfg);
    let listener = match daemon::bind_http(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let tls = match web_tls(&cfg) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // For messages: `Daemon::start` takes the config.
    let explain = cfg.clone();
    let daemon = match Daemon::start(cfg) {
        Ok(d) => d,
        Err(e) => {
            let text = start_error_text(&e, &explain);
            tracing::error!("cannot start: {text}");
            eprintln!("{text}");
            return ExitCode::from(2);
        }
    };
    let config = daemon.config.clone();
    let serving = Serving::new(daemon);
    let code = rt.block_on(async move {
        let server = Server::spawn(Arc::clone(&serving), listener, addr, tls);
        let controls = match start_controls(&serving, &config) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                eprintln!("{e}");
                let _ = server.stop().await;
                if let Some(d) = serving.replace(None) {
                    d.stop();
                }
                return ExitCode::from(2);
            }
        };
        let agent = Agent {
            path: path.to_path_buf(),
            serving,
            config,
            server,
            controls: Some(controls),
            logging,
            notifier,
            signals,
        };
        agent.supervise().await
    });
    drop(rt);
    code
}

/// Applies the REST changes kept in `global.state_dir` over the running
/// configuration, then starts the control servers: the REST API (with
/// `global.rest_api_on`, on `rest_api_server`) and the control socket.
fn start_controls(serving: &Arc<Serving>, cfg: &Config) -> Result<rest::Servers, rest::StartError> {
    let control: Arc<dyn ProbeControl> = Arc::clone(serving) as Arc<dyn ProbeControl>;
    rest::persist::restore(&*control, &cfg.global.state_dir);
    rest::start(cfg, control)
}

/// What the control servers are started from: a reload that changes it
/// restarts them.
fn control_settings(cfg: &Config) -> (bool, gala_gopher::config::RestApiServer, PathBuf) {
    (
        cfg.global.rest_api_on,
        cfg.rest_api_server.clone(),
        cfg.global.state_dir.clone(),
    )
}

/// How long a stopping HTTP server waits for the requests in flight.
const HTTP_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The HTTP endpoint: a task of the runtime on the main thread.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), StartError>>,
}

impl Server {
    /// Serves on `listener`, over TLS when `tls` is given (`web_server.ssl_auth`).
    fn spawn(
        serving: Arc<Serving>,
        listener: std::net::TcpListener,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            let _ = rx.await;
        };
        let task = match tls {
            Some(tls) => tokio::spawn(serve_https(serving, listener, addr, tls, stop)),
            None => tokio::spawn(daemon::serve_http_from(serving, listener, stop)),
        };
        Self {
            addr,
            stop: Some(tx),
            task,
        }
    }

    /// Stops accepting, finishes the requests in flight (for at most
    /// [`HTTP_DRAIN`]), closes the listener.
    async fn stop(mut self) -> Result<(), String> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(HTTP_DRAIN, &mut self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(e)) => Err(format!("the HTTP server task failed: {e}")),
            Err(_) => {
                self.task.abort();
                tracing::warn!(addr = %self.addr, "HTTP requests still open after {HTTP_DRAIN:?}: closed");
                Ok(())
            }
        }
    }
}

/// The signals the agent acts on (`None`: could not be installed).
struct Signals {
    term: Option<Signal>,
    int: Option<Signal>,
    hup: Option<Signal>,
}

impl Signals {
    /// Installs the handlers; must run inside the runtime.
    fn install() -> Self {
        let install = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot handle {name}");
                None
            }
        };
        Self {
            term: install(SignalKind::terminate(), "SIGTERM; stop with SIGKILL"),
            int: install(SignalKind::interrupt(), "SIGINT"),
            hup: install(
                SignalKind::hangup(),
                "SIGHUP (a reload would kill the agent)",
            ),
        }
    }
}

/// The next delivery of `s`: `false` once it can deliver no more, never
/// when it is `None`.
async fn next(s: &mut Option<Signal>) -> bool {
    match s.as_mut() {
        Some(sig) => sig.recv().await.is_some(),
        None => std::future::pending().await,
    }
}

/// The next tick of an optional timer; never when there is none.
async fn tick(t: &mut Option<tokio::time::Interval>) {
    match t.as_mut() {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The running agent: the daemon behind the HTTP endpoint, and what the main
/// thread needs to reload, report to systemd and stop it.
struct Agent {
    path: PathBuf,
    serving: Arc<Serving>,
    /// The configuration running (still known when a reload failed to start
    /// any).
    config: Config,
    server: Server,
    /// The REST API and the control socket.
    controls: Option<rest::Servers>,
    logging: Logging,
    notifier: Notifier,
    signals: Signals,
}

impl Agent {
    /// Serves until SIGTERM or SIGINT, reloading on SIGHUP, then stops
    /// everything in order.
    ///
    /// The service manager hears from this loop (it runs on the main thread,
    /// in the runtime that serves /metrics): `READY=1` once the listener is
    /// bound and the probes are started, `STATUS=` every
    /// [`systemd::STATUS_PERIOD`], `RELOADING=1` ... `READY=1` around a
    /// reload, `STOPPING=1` when the stop begins.
    ///
    /// `WATCHDOG=1` (half of `WatchdogSec`) is sent from here too, right
    /// after counting the series under every table's lock: this is the
    /// thread that hangs when the agent does, since a scrape stuck on a
    /// table lock, a table lock held forever (a wedged ingress) or a wedged
    /// runtime all stop the pings, and systemd restarts the agent. A probe
    /// that hangs is the supervisor's business (restart, then `failed`,
    /// counted in `STATUS=`), not a reason to restart every probe.
    async fn supervise(mut self) -> ExitCode {
        use std::time::Instant;
        // Let the server task start accepting before telling systemd.
        tokio::task::yield_now().await;
        self.notifier.ready(&self.status());
        let period = systemd::STATUS_PERIOD;
        let mut status = tokio::time::interval_at((Instant::now() + period).into(), period);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watchdog = self.notifier.watchdog_period().map(|p| {
            let mut t = tokio::time::interval_at((Instant::now() + p).into(), p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        // Once, after the start: give back what only the start needed.
        let settle_at = tokio::time::sleep(settle::AFTER);
        tokio::pin!(settle_at);
        let mut settled = false;
        // Then regularly: the heap's free pages after a burst.
        let mut trim = tokio::time::interval_at(
            (Instant::now() + settle::AFTER + settle::TRIM_EVERY).into(),
            settle::TRIM_EVERY,
        );
        trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let code = loop {
            tokio::select! {
                () = &mut settle_at, if !settled => {
                    settled = true;
                    let s = settle::settle();
                    tracing::debug!(mappings = s.mappings, file_kb = s.file_kb, "start-up memory given back");
                }
                _ = trim.tick() => {
                    let t0 = Instant::now();
                    settle::trim_heap();
                    tracing::debug!(us = t0.elapsed().as_micros() as u64, "heap trimmed");
                }
                got = next(&mut self.signals.term) => {
                    if got {
                        tracing::info!("SIGTERM received");
                        break ExitCode::SUCCESS;
                    }
                    self.signals.term = None;
                }
                got = next(&mut self.signals.int) => {
                    if got {
                        tracing::info!("SIGINT received");
                        break ExitCode::SUCCESS;
                    }
                    self.signals.int = None;
                }
                got = next(&mut self.signals.hup) => {
                    if got {
                        self.reload().await;
                    } else {
                        self.signals.hup = None;
                    }
                }
                _ = status.tick() => self.notifier.status(&self.status()),
                () = tick(&mut watchdog) => {
                    if let Some(d) = self.serving.get() {
                        let _ = d.series_count();
                    }
                    self.notifier.watchdog();
                }
                r = &mut self.server.task => {
                    let e = match r {
                        Ok(Ok(())) => "the HTTP server stopped".to_owned(),
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => format!("the HTTP server task failed: {e}"),
                    };
                    tracing::error!("{e}");
                    eprintln!("{e}");
                    self.stop_daemon();
                    return ExitCode::from(2);
                }
            }
        };
        self.notifier.stopping();
        if let Some(c) = self.controls.take() {
            c.stop().await;
        }
        let code = match self.server.stop().await {
            Ok(()) => code,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
        if let Some(d) = self.serving.replace(None) {
            d.stop();
        }
        code
    }

    fn stop_daemon(&self) {
        self.notifier.stopping();
        if let Some(d) = self.serving.replace(None) {
            d.stop();
        }
    }

    /// The `STATUS=` line.
    fn status(&self) -> String {
        match self.serving.get() {
            Some(d) => d.status_line(),
            None => "no configuration running: the last reload failed; fix the config and reload"
                .to_owned(),
        }
    }

    /// SIGHUP: reopens the log files, then re-reads the config file. A
    /// config with any problem is not applied: every problem is logged, one
    /// ERROR line each, and the running one stays. A valid one replaces
    /// the running daemon (probes and exporters stop, new ones start) under
    /// the same HTTP listener, or a new one when `web_server` moved; the
    /// same config and meta files change nothing but the log files.
    async fn reload(&mut self) {
        self.notifier.reloading();
        // The agent's own log first, so that what follows is in the new file.
        let reopened = self.logging.reopen();
        tracing::info!(config = %self.path.display(), "SIGHUP: reopening the log files and reloading the configuration");
        if let Err(e) = reopened {
            tracing::error!("{e}");
        }
        if let Some(d) = self.serving.get() {
            d.reopen_logs();
        }
        // Everything that can fail is done before anything stops.
        let checked = match check(&self.path) {
            Ok(c) => c,
            Err(problems) => return self.reload_refused(&problems),
        };
        log_config_warnings(&checked.cfg);
        let addr = web_addr(&checked.cfg);
        let listener = if addr == self.server.addr {
            None
        } else {
            match daemon::bind_http(addr) {
                Ok(l) => Some(l),
                Err(e) => return self.reload_refused(&[e.to_string()]),
            }
        };
        let tls = match web_tls(&checked.cfg) {
            Ok(t) => t,
            Err(e) => return self.reload_refused(&[e]),
        };
        let log_change = match self.logging.prepare(&self.config, &checked.cfg) {
            Ok(c) => c,
            Err(e) => return self.reload_refused(&[e]),
        };
        self.logging.apply(log_change, &self.config, &checked.cfg);
        let probes = checked.plan.len();
        let controls_changed = control_settings(&self.config) != control_settings(&checked.cfg);
        let (ebpf, missing) = daemon::ebpf_probes_without_capabilities(&checked.plan);
        if !ebpf.is_empty() {
            tracing::warn!(
                probes = %ebpf.join(","),
                missing = %missing.join(","),
                "the new configuration adds eBPF probes, but this process gave up the capabilities to load them \
                 (dropped at a start without eBPF probes; they cannot be regained): restart gala-gopher \
                 (systemctl restart gala-gopher) to run them"
            );
        }
        // Only the probes changed (or nothing): the probe manager restarts
        // the probes whose entry changed, and nothing else stops.
        let in_place = listener.is_none()
            && self
                .serving
                .get()
                .is_some_and(|d| d.runs_except_probes(&checked.cfg, &checked.meta));
        if in_place {
            if let Some(d) = self.serving.get() {
                let r = d.reconcile(&checked.cfg, checked.plan);
                for (probe, why) in &r.failed {
                    tracing::error!(probe = %probe, "reload: cannot start the probe: {why}");
                }
                let changed =
                    r.started.len() + r.restarted.len() + r.stopped.len() + r.updated.len();
                if changed == 0 && r.failed.is_empty() {
                    tracing::info!(
                        probes,
                        "reload applied: the configuration is unchanged; its probes keep running"
                    );
                } else {
                    tracing::info!(
                        probes,
                        started = %r.started.join(","),
                        restarted = %r.restarted.join(","),
                        stopped = %r.stopped.join(","),
                        updated = %r.updated.join(","),
                        kept = r.kept.len(),
                        config = %self.path.display(),
                        "reload applied: the new configuration runs {probes} probe(s); only the probes whose entry changed were restarted"
                    );
                }
            }
            self.config = checked.cfg;
            self.after_reload(controls_changed).await;
            self.notifier.watchdog();
            self.notifier.ready(&self.status());
            return;
        }
        // Stops probes and exporters; scrapes wait meanwhile (this thread
        // serves them), then get the new daemon.
        if let Some(old) = self.serving.get() {
            old.stop();
        }
        self.notifier.watchdog();
        if let Some(l) = listener {
            let old = std::mem::replace(
                &mut self.server,
                Server::spawn(Arc::clone(&self.serving), l, addr, tls),
            );
            if let Err(e) = old.stop().await {
                tracing::warn!("the previous HTTP listener: {e}");
            }
            tracing::info!(%addr, "web_server moved");
        }
        let Checked { cfg, meta, plan } = checked;
        let explain = cfg.clone();
        match Daemon::start_planned(cfg, meta, plan) {
            Ok(d) => {
                self.config = d.config.clone();
                self.serving.replace(Some(d));
                tracing::info!(probes, config = %self.path.display(), "reload applied: the new configuration runs {probes} probe(s)");
                self.after_reload(controls_changed).await;
            }
            Err(e) => {
                tracing::error!(
                    "reload: cannot start the new configuration: {}",
                    start_error_text(&e, &explain)
                );
                match Daemon::start(self.config.clone()) {
                    Ok(d) => {
                        self.serving.replace(Some(d));
                        tracing::error!("reload failed: running the previous configuration again");
                    }
                    Err(e) => {
                        self.serving.replace(None);
                        tracing::error!(
                            "reload failed, and the previous configuration does not start again either ({}): \
                             nothing runs until a reload succeeds",
                            start_error_text(&e, &self.config)
                        );
                    }
                }
            }
        }
        self.notifier.watchdog();
        self.notifier.ready(&self.status());
    }

    /// After a reload was applied: the REST changes kept in
    /// `global.state_dir` go over the new configuration again (they win
    /// over the config file, as at start), and the control servers restart
    /// when their settings changed.
    async fn after_reload(&mut self, controls_changed: bool) {
        if !controls_changed {
            rest::persist::restore(&*self.serving, &self.config.global.state_dir);
            return;
        }
        if let Some(c) = self.controls.take() {
            c.stop().await;
        }
        match start_controls(&self.serving, &self.config) {
            Ok(c) => {
                self.controls = Some(c);
                tracing::info!("reload: the REST API and the control socket restarted with the new settings");
            }
            Err(e) => tracing::error!(
                "reload: cannot start the REST API with the new settings ({e}); fix the config and reload"
            ),
        }
    }

    /// A reload that changes nothing: every problem, one ERROR line each.
    fn reload_refused(&self, problems: &[String]) {
        for p in problems {
            tracing::error!("{p}");
        }
        tracing::error!(
            config = %self.path.display(),
            "reload refused: {} problem(s) in the new configuration; the running configuration stays",
            problems.len()
        );
        self.notifier
            .ready(&format!("{}; the last reload was refused", self.status()));
    }
}
