//! Wiring: config -> meta -> store -> ingress -> probes and exporters, then
//! serve until SIGTERM/SIGINT and shut everything down in order. A reload
//! (SIGHUP, driven by the binary) stops one [`Daemon`] and starts another
//! under the same HTTP listener ([`Serving`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Config, Switch};
use crate::control::{AgentStatus, ControlError, ProbeChange, ProbeControl, ProbeView};
use crate::export::logfile::ReopenSignal;
use crate::export::prometheus::Exposition;
use crate::export::sink::{BuildContext, SinkPlan};
use crate::identity::Identity;
use crate::ingress::Ingress;
use crate::manager::{Planner, ProbeEntry, ProbeManager};
use crate::meta::MetaRegistry;
use crate::probe::cabi::{self, CSource};
use crate::probe::extend::ExtendProbe;
use crate::probe::supervisor::{self, Restart, StartPolicy};
use crate::probe_api::{Emitted, Params, Probe, Shutdown};
use crate::stats::{ProbeState, Stats};
use crate::store::TableStore;

/// Capacity of the queue from all probes to the ingress, in records.
pub const INGRESS_QUEUE: usize = 8 * 1024;
/// Capacity of each push exporter's queue, in records.
pub const EXPORT_QUEUE: usize = crate::export::sink::EXPORT_QUEUE;
/// How often metadata is re-sent on the meta channel (docs/compat.md §6).
pub const METADATA_PERIOD: Duration = crate::export::sink::METADATA_PERIOD;
/// How often an `auto` probe's start check is re-run while it says no.
pub const AUTO_RECHECK: Duration = Duration::from_secs(30);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The meta directory has errors (one per line).
    #[error("meta directory {dir}:\n{errors}")]
    Meta {
        /// The directory.
        dir: PathBuf,
        /// Every problem found.
        #[source]
        errors: crate::meta::MetaErrors,
    },
    /// A probe in the config cannot be run.
    #[error("{file}: {key}: {msg}")]
    Probe {
        /// The config file.
        file: PathBuf,
        /// e.g. `probes[1].name`.
        key: String,
        /// What is wrong.
        msg: PlanError,
    },
    /// The HTTP listener could not be bound.
    #[error("web_server: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The outputs the config asks for are not valid (each problem names
    /// its key, e.g. `metric.out_channel`).
    #[error("{0}")]
    Outputs(#[from] crate::config::ConfigError),
    /// An output could not be built (a log file, the Kafka producer).
    #[error("{0}")]
    Sink(#[from] crate::export::sink::BuildError),
    /// A log directory or thread could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being set up.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What is wrong with one probe of the config (the `msg` of
/// [`StartError::Probe`], which names the file and key).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Its `param` does not parse.
    #[error(transparent)]
    Param(#[from] crate::probe_api::ParamsError),
    /// The gala-gopher binary, which hosts C probes, cannot be found.
    #[error("cannot find the gala-gopher binary to host C probes: {0}")]
    NoHostBinary(#[source] std::io::Error),
    /// Its `library` is not a file.
    #[error("{} is not a file", .0.display())]
    NotAFile(PathBuf),
    /// A probe this build left out (the text says which feature has it).
    #[error("{0}")]
    LeftOut(String),
    /// No probe of this build has the name.
    #[error("unknown probe `{name}` (this build has: {}; a C probe of your own needs `library`)", .known.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The probes of this build.
        known: Vec<String>,
    },
    /// A table the probe emits has no meta.
    #[error("probe `{probe}` emits table `{table}` but no .meta file in {} declares it", .dir.display())]
    MissingMeta {
        /// The probe.
        probe: String,
        /// The table.
        table: String,
        /// The meta directory.
        dir: PathBuf,
    },
    /// A 2.x probe's sub-probes (`ipc.probe`) are not known.
    #[error("{0}")]
    SubProbes(String),
    /// Its snoopers cannot be watched.
    #[error("{0}")]
    Snoopers(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// Loads the meta directory named by the config, with every error.
pub fn load_meta(cfg: &Config) -> Result<MetaRegistry, StartError> {
    MetaRegistry::load_dir(&cfg.global.meta_dir).map_err(|e| StartError::Meta {
        dir: cfg.global.meta_dir.clone(),
        errors: e,
    })
}

/// A probe ready to be supervised: its name, params, start policy and
/// factory.
pub type PlannedProbe = (String, Params, StartPolicy, supervisor::Factory);

/// The probes the config asks for, checked against the registries; the
/// returned list pairs each with its start policy. Probes switched off are
/// left out. The error is the first problem (see [`plan_probes_all`]).
pub fn plan_probes(cfg: &Config, meta: &MetaRegistry) -> Result<Vec<PlannedProbe>, StartError> {
    let (plan, mut problems) = plan_probes_all(cfg, meta);
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems.remove(0))
    }
}

/// [`plan_probes`] with every problem: the probes that can run, and one
/// error for each that cannot, in config order.
pub fn plan_probes_all(cfg: &Config, meta: &MetaRegistry) -> (Vec<PlannedProbe>, Vec<StartError>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for entry in ProbeEntry::of_config(cfg) {
        // `auto` is planned as `on`; the start check, if any, runs in the
        // probe's supervisor.
        if entry.switch() == Switch::Off {
            continue;
        }
        match plan_entry(cfg, meta, &entry) {
            Ok(planned) => out.push(planned),
            Err(e) => problems.push(e),
        }
    }
    (out, problems)
}

/// The planner of the probe manager for `cfg`: plans one entry as
/// [`plan_probes_all`] does (a probe the config does not name is planned
/// with the config's supervisor settings).
pub fn planner(cfg: &Config, meta: Arc<MetaRegistry>) -> Planner {
    let cfg = cfg.clone();
    Arc::new(move |entry: &ProbeEntry| plan_entry(&cfg, &meta, entry))
}

/// The plan of one entry (switched on); errors name its key in `cfg`
/// (`probes[i]`, `extend_probes[i]`; `probes[<name>]` for a probe the
/// config does not name).
pub fn plan_entry(
    cfg: &Config,
    meta: &MetaRegistry,
    entry: &ProbeEntry,
) -> Result<PlannedProbe, StartError> {
    let grace = Duration::from_millis(cfg.supervisor.stop_grace_ms);
    match entry {
        ProbeEntry::Native(p) => {
            let key = cfg
                .probes
                .iter()
                .position(|c| c.name == p.name)
                .map_or_else(|| format!("probes[{}]", p.name), |i| format!("probes[{i}]"));
            plan_native(cfg, meta, &key, p, grace)
        }
        ProbeEntry::Extend(p) => {
            let key = cfg
                .extend_probes
                .iter()
                .position(|c| c.name == p.name)
                .map_or_else(
                    || format!("extend_probes[{}]", p.name),
                    |i| format!("extend_probes[{i}]"),
                );
            plan_extend(cfg, &key, p, grace)
        }
    }
}

/// The plan of an `[[extend_probes]]` entry (switched on).
fn plan_extend(
    cfg: &Config,
    key: &str,
    p: &crate::config::ExtendProbeConf,
    grace: Duration,
) -> Result<PlannedProbe, StartError> {
    let start = match (p.switch, &p.start_check) {
        (Switch::Auto, Some(c)) => StartPolicy::Check {
            command: c.clone(),
            recheck: AUTO_RECHECK,
        },
        _ => StartPolicy::Always,
    };
    // An extend probe's param belongs to its command line; the legacy
    // letters are only parsed when they are well-formed.
    let params = Params::parse(&p.param).unwrap_or_default();
    let mut probe = ExtendProbe::new(&p.name, &p.command, &p.param, grace)
        .cgroups(&crate::probe::cgroup::ProbeCgroups::shared(cfg));
    if let Some(msg) = p.snoopers_conflict() {
        return Err(StartError::Probe {
            file: cfg.source.clone(),
            key: format!("{key}.snoopers"),
            msg: PlanError::Snoopers(msg),
        });
    }
    if let Some(feed) = snooper_feed(cfg, p.snoopers.as_ref(), None) {
        // Resolved at each start and given in the environment.
        probe = probe.snoopers(feed);
    }
    if let Some(ipc) = &p.ipc {
        // A legacy 2.x binary: its message is queued before each start.
        if let Err(msg) = ipc.range_flags() {
            return Err(StartError::Probe {
                file: cfg.source.clone(),
                key: format!("{key}.ipc.probe"),
                msg: PlanError::SubProbes(msg),
            });
        }
        probe = probe.legacy_ipc(ipc.clone());
    }
    match std::env::current_exe() {
        Ok(exe) => probe = probe.death_guard(exe),
        Err(e) => {
            tracing::warn!(probe = %p.name, error = %e, "cannot find the gala-gopher binary; this probe may outlive a killed agent")
        }
    }
    Ok((
        p.name.clone(),
        params,
        start,
        Box::new(move || Ok(Box::new(probe.clone()) as Box<dyn Probe>)) as supervisor::Factory,
    ))
}

/// The plan of a `[[probes]]` entry (switched on) at `key`.
fn plan_native(
    cfg: &Config,
    meta: &MetaRegistry,
    key: &str,
    p: &crate::config::ProbeConf,
    grace: Duration,
) -> Result<PlannedProbe, StartError> {
    let file = &cfg.source;
    // `auto` with a start check waits for it (e.g. the LB probes wait for
    // their server); `auto` without one is `on`, as legacy configs meant.
    let start = match (p.switch, &p.start_check) {
        (Switch::Auto, Some(c)) => StartPolicy::Check {
            command: c.clone(),
            recheck: AUTO_RECHECK,
        },
        _ => StartPolicy::Always,
    };
    let params = Params::parse(&p.param).map_err(|e| StartError::Probe {
        file: file.clone(),
        key: format!("{key}.param"),
        msg: PlanError::Param(e),
    })?;
    let hang = p.hang_timeout_secs.map_or_else(
        || cabi::default_hang_timeout(params.period()),
        Duration::from_secs,
    );
    let c_probe = |source: CSource| -> Result<supervisor::Factory, StartError> {
        let mut probe = cabi::child_probe(&p.name, &source, &p.param, grace, hang)
            .map(|c| c.cgroups(&crate::probe::cgroup::ProbeCgroups::shared(cfg)))
            .map_err(|e| StartError::Probe {
                file: file.clone(),
                key: key.to_owned(),
                msg: PlanError::NoHostBinary(e),
            })?;
        if let Some(feed) = snooper_feed(cfg, p.snoopers.as_ref(), Some(&p.param)) {
            // The param edit must work with any selection: checked now.
            let path = crate::probe::snoopers::file_of(&feed.dir, &p.name);
            crate::probe::snoopers::c_param(&p.param, &path, &[1]).map_err(|e| {
                StartError::Probe {
                    file: file.clone(),
                    key: format!("{key}.snoopers"),
                    msg: PlanError::Snoopers(format!(
                        "they are given to a C probe as `-w {}` in its param, which it cannot take: {e}",
                        path.display()
                    )),
                }
            })?;
            probe = probe.snoopers(feed);
        }
        Ok(Box::new(move || {
            Ok(Box::new(probe.clone()) as Box<dyn Probe>)
        }))
    };
    if let Some(lib) = &p.library {
        if !lib.is_file() {
            return Err(StartError::Probe {
                file: file.clone(),
                key: format!("{key}.library"),
                msg: PlanError::NotAFile(lib.clone()),
            });
        }
        return Ok((
            p.name.clone(),
            params,
            start,
            c_probe(CSource::Library(lib.clone()))?,
        ));
    }
    let tables: &[&str] = if let Some(def) = gopher_probes::native_probe(&p.name) {
        def.tables
    } else if let Some(c) = gopher_probes_c::builtin(&p.name) {
        c.tables
    } else if let Some(msg) = crate::config::trim::probe_left_out_message(&p.name) {
        return Err(StartError::Probe {
            file: file.clone(),
            key: format!("{key}.name"),
            msg: PlanError::LeftOut(msg),
        });
    } else {
        let known: Vec<String> = gopher_probes::NATIVE_PROBES
            .iter()
            .map(|d| d.name.to_owned())
            .chain(gopher_probes_c::BUILTIN.iter().map(|c| c.name.to_owned()))
            .collect();
        return Err(StartError::Probe {
            file: file.clone(),
            key: format!("{key}.name"),
            msg: PlanError::Unknown {
                name: p.name.clone(),
                known,
            },
        });
    };
    if let Some(missing) = tables.iter().find(|t| meta.get(t).is_none()) {
        return Err(StartError::Probe {
            file: file.clone(),
            key: format!("{key}.name"),
            msg: PlanError::MissingMeta {
                probe: p.name.clone(),
                table: (*missing).to_owned(),
                dir: cfg.global.meta_dir.clone(),
            },
        });
    }
    let factory: supervisor::Factory = match gopher_probes::native_probe(&p.name) {
        #[cfg(feature = "probe-tcp_link")]
        Some(def) if def.name == gopher_probes::tcp_link::PROBE => {
            tcp_link_factory(cfg, key, p, &params)?
        }
        Some(def) => {
            let build = def.build;
            Box::new(move || Ok(build()))
        }
        None => c_probe(CSource::Builtin(p.name.clone()))?,
    };
    Ok((p.name.clone(), params, start, factory))
}

/// The snoopers feed of a C probe (`c_param`: its `param`) or an extend
/// probe (`None`): none without snoopers, or with empty ones (docs:
/// snoopers, "Extend and C probes").
fn snooper_feed(
    cfg: &Config,
    snoopers: Option<&crate::config::ipc::Snoopers>,
    c_param: Option<&str>,
) -> Option<crate::probe::snoopers::Feed> {
    use crate::probe::snoopers::{selects, Delivery, Feed, DIR};
    let s = snoopers.filter(|s| selects(s))?;
    Some(Feed {
        snoopers: s.clone(),
        dir: cfg.global.state_dir.join(DIR),
        delivery: c_param.map_or(Delivery::Env, |param| Delivery::CParams {
            param: param.to_owned(),
        }),
    })
}

/// tcp_link watches what its `snoopers` select (docs: snoopers); its
/// [`gopher_probes::tcp_link::Watch`] is registered under the probe's name
/// each time the probe starts, for [`set_tcp_link_snoopers`].
#[cfg(feature = "probe-tcp_link")]
fn tcp_link_factory(
    cfg: &Config,
    key: &str,
    p: &crate::config::ProbeConf,
    params: &Params,
) -> Result<supervisor::Factory, StartError> {
    use gopher_probes::tcp_link;
    let sel = tcp_link_selection(cfg, p.snoopers.as_ref(), params);
    let watch = tcp_link::Watch::new(sel).map_err(|e| StartError::Probe {
        file: cfg.source.clone(),
        key: format!("{key}.snoopers"),
        msg: PlanError::Snoopers(e.to_string()),
    })?;
    let name = p.name.clone();
    Ok(Box::new(move || {
        tcp_link::watch::register(&name, &watch);
        Ok(tcp_link::with_watch(watch.clone()))
    }))
}

/// The processes a tcp_link probe watches: its snoopers, plus the entries
/// of the app whitelist ([`Config::app_whitelist`]) when its param has
/// `-w`, as the 1.x probes took the whitelist. Empty: every process.
#[cfg(feature = "probe-tcp_link")]
pub fn tcp_link_selection(
    cfg: &Config,
    snoopers: Option<&crate::config::ipc::Snoopers>,
    params: &Params,
) -> gopher_probes::tcp_link::Selection {
    use gopher_probes::tcp_link::{NameRule, Selection};
    let mut sel = Selection::default();
    if let Some(s) = snoopers {
        sel.proc_id.clone_from(&s.proc_id);
        sel.container_id.clone_from(&s.container_id);
        sel.proc_name = s
            .proc_name
            .iter()
            .map(|n| NameRule {
                comm: n.comm.clone(),
                cmdline: n.cmdline.clone(),
            })
            .collect();
    }
    if let (false, Some(wl)) = (params.task_whitelist.is_empty(), &cfg.app_whitelist) {
        sel.proc_name.extend(wl.apps.iter().map(|a| NameRule {
            comm: a.comm.as_str().to_owned(),
            cmdline: a.cmdline.clone(),
        }));
    }
    sel
}

/// Gives the running tcp_link probe `name` new snoopers (what `PUT /tcp`
/// with `snoopers` asks); it applies them within one report period, without
/// a restart. `Ok(false)`: no tcp_link probe of that name has started.
#[cfg(feature = "probe-tcp_link")]
pub fn set_tcp_link_snoopers(
    cfg: &Config,
    name: &str,
    snoopers: &crate::config::ipc::Snoopers,
) -> Result<bool, crate::control::ControlError> {
    let Some(watch) = gopher_probes::tcp_link::watch::registered(name) else {
        return Ok(false);
    };
    let params = cfg
        .probes
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| Params::parse(&p.param).ok())
        .unwrap_or_default();
    watch
        .set(tcp_link_selection(cfg, Some(snoopers), &params))
        .map(|()| true)
        .map_err(|e| crate::control::ControlError::Invalid {
            key: "snoopers".to_owned(),
            message: e.to_string(),
        })
}

/// Without tcp_link in the build there is no probe to give snoopers to.
#[cfg(not(feature = "probe-tcp_link"))]
pub fn set_tcp_link_snoopers(
    _cfg: &Config,
    _name: &str,
    _snoopers: &crate::config::ipc::Snoopers,
) -> Result<bool, crate::control::ControlError> {
    Ok(false)
}

#[cfg(all(test, feature = "probe-tcp_link"))]
mod tcp_link_snoopers_tests {
    use super::*;
    use crate::config::ipc::Snoopers;
    use crate::config::whitelist::{AppRule, AppWhitelist, PosixRegex};

    fn cfg_with_whitelist() -> Config {
        Config {
            app_whitelist: Some(AppWhitelist {
                path: "/etc/gala-gopher/gala-gopher-app.conf".into(),
                apps: vec![AppRule {
                    comm: PosixRegex::new("^redis-server$").expect("regex"),
                    cmdline: "6379".to_owned(),
                    line: 2,
                }],
            }),
            ..Config::default()
        }
    }

    fn snoopers(text: &str) -> Snoopers {
        toml::from_str(text).expect("snoopers")
    }

    fn names(sel: &gopher_probes::tcp_link::Selection) -> Vec<(&str, &str)> {
        sel.proc_name
            .iter()
            .map(|r| (r.comm.as_str(), r.cmdline.as_str()))
            .collect()
    }

    #[test]
    fn tcp_link_takes_its_snoopers_and_the_app_whitelist_only_with_dash_w() {
        let cfg = cfg_with_whitelist();
        let s = snoopers(
            "proc_id = [7]\nproc_name = [{comm = \"^nginx$\", cmdline = \"-g\"}]\ncontainer_id = [\"3f2b\"]",
        );
        let plain = Params::parse("-t 5").expect("params");
        let sel = tcp_link_selection(&cfg, Some(&s), &plain);
        assert_eq!(sel.proc_id, [7]);
        assert_eq!(sel.container_id, ["3f2b"]);
        assert_eq!(names(&sel), [("^nginx$", "-g")]);
        let with_w =
            Params::parse("-t 5 -w /etc/gala-gopher/gala-gopher-app.conf").expect("params");
        let sel = tcp_link_selection(&cfg, Some(&s), &with_w);
        assert_eq!(names(&sel), [("^nginx$", "-g"), ("^redis-server$", "6379")]);
        // Neither: every process.
        assert!(tcp_link_selection(&cfg, None, &plain).is_empty());
        assert!(!tcp_link_selection(&cfg, None, &with_w).is_empty());
    }

    #[test]
    fn new_snoopers_reach_the_running_probe_or_are_refused_naming_the_entry() {
        let cfg = Config::default();
        let w = gopher_probes::tcp_link::Watch::default();
        gopher_probes::tcp_link::watch::register("tcp_link_daemon_test", &w);
        let ok = snoopers("proc_id = [42]");
        assert_eq!(
            set_tcp_link_snoopers(&cfg, "tcp_link_daemon_test", &ok),
            Ok(true)
        );
        assert_eq!(w.selection().proc_id, [42]);
        let bad = snoopers("container_id = [\"zz-not-hex\"]");
        let e = set_tcp_link_snoopers(&cfg, "tcp_link_daemon_test", &bad).expect_err("bad id");
        assert!(
            matches!(&e, crate::control::ControlError::Invalid { key, message }
                if key == "snoopers" && message.starts_with("container_id[0]: ")),
            "{e:?}"
        );
        assert_eq!(w.selection().proc_id, [42], "the old selection stays");
        assert_eq!(
            set_tcp_link_snoopers(&cfg, "no_such_tcp_link", &ok),
            Ok(false)
        );
    }
}

/// A running daemon, until [`Daemon::shutdown`] (or [`Daemon::stop`]).
#[derive(Debug)]
pub struct Daemon {
    shutdown: Shutdown,
    /// The probes.
    manager: ProbeManager,
    /// Taken (and joined) by [`Daemon::stop`].
    workers: Mutex<Vec<JoinHandle<()>>>,
    exposition: Arc<Exposition>,
    stats: Arc<Stats>,
    store: Arc<TableStore>,
    meta: Arc<MetaRegistry>,
    /// Asks the log exporters to reopen their files.
    reopen: ReopenSignal,
    /// The files of the log exporters.
    log_files: Vec<PathBuf>,
    /// Length of the last exposition, to size the next one's buffer.
    last_scrape_len: std::sync::atomic::AtomicUsize,
    /// The built-in event rules: closed at stop; their thresholds follow
    /// the probes' params.
    rules: Option<(crate::rules::RulesCloser, crate::rules::ThresholdSet)>,
    /// The config it runs.
    pub config: Config,
}

impl Daemon {
    /// Starts everything except the HTTP endpoint.
    pub fn start(cfg: Config) -> Result<Self, StartError> {
        let meta = load_meta(&cfg)?;
        let plan = plan_probes(&cfg, &meta)?;
        Self::start_planned(cfg, meta, plan)
    }

    /// [`Daemon::start`] with the meta registry and the probe plan already
    /// loaded and checked (a reload checks them before it stops anything).
    /// Call it on the main thread: it sets the capabilities of the calling
    /// thread, which the threads it starts inherit.
    pub fn start_planned(
        cfg: Config,
        meta: MetaRegistry,
        plan: Vec<PlannedProbe>,
    ) -> Result<Self, StartError> {
        let meta = Arc::new(meta);
        mount_bpffs_for_probe_binaries(&cfg);
        // The legacy 2.x probes of this daemon start from its config, not
        // from what a previous (or half-started) one registered.
        crate::probe::legacy_ipc::release();
        // Before the capabilities go: a v1 root cgroup needs CAP_DAC_OVERRIDE.
        crate::probe::cgroup::ProbeCgroups::shared(&cfg).setup();
        restrict_capabilities(&cfg, &plan);
        let reopen = ReopenSignal::new();
        let identity = Identity::load(&cfg.global.state_dir);
        let stats = Stats::new();
        let ttl = Duration::from_secs(cfg.imdb.record_timeout);
        let store =
            Arc::new(TableStore::new(&meta, ttl, cfg.imdb.max_records_num).counting_in(&stats));
        // Declared before everything that feeds its threads: on an early
        // return, the channels are dropped first, then it stops and joins
        // the threads started so far.
        let mut started = Started::default();
        let shutdown = started.shutdown.clone();
        let mut ingress = Ingress::new(Arc::clone(&meta), Arc::clone(&store), Arc::clone(&stats));
        ingress.set_event_timeout(Duration::from_secs(cfg.event.timeout));
        // The outputs: validated, built (files opened, producer created),
        // then wired to the ingress and the metadata ticker and started.
        let sinks = SinkPlan::validate(&cfg)?;
        let log_files = sinks.log_files();
        let (tx, rx) = sync_channel::<Emitted>(INGRESS_QUEUE);
        let mut built = sinks.build(&BuildContext {
            meta: &meta,
            identity: &identity,
            stats: &stats,
            reopen: &reopen,
        })?;
        let rules = crate::rules::RulesSink::plan(&cfg, &tx, &stats).map(|(sink, closer, set)| {
            built.push(sink);
            (closer, set)
        });
        crate::export::sink::start(
            built,
            &mut ingress,
            &meta,
            &stats,
            &shutdown,
            &mut started.workers,
        )?;

        started
            .workers
            .push(spawn("ingress", move || ingress.run(rx))?);
        {
            let store = Arc::clone(&store);
            let stats = Arc::clone(&stats);
            let sd = shutdown.clone();
            let every = (ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
            started.workers.push(spawn("store-sweeper", move || {
                while !sd.wait(every) {
                    let n = store.sweep(Instant::now());
                    stats.expired.fetch_add(n as u64, Ordering::Relaxed);
                }
            })?);
        }

        let restart = Restart {
            max: cfg.supervisor.restart_max,
            backoff: Duration::from_millis(cfg.supervisor.restart_backoff_ms),
            stable_after: Duration::from_secs(300),
        };
        let manager = ProbeManager::start(
            ProbeEntry::of_config(&cfg),
            plan,
            crate::rules::following_params(
                rules.as_ref().map(|(_, t)| t),
                planner(&cfg, Arc::clone(&meta)),
            ),
            tx,
            Arc::clone(&stats),
            restart,
            shutdown.clone(),
        );
        {
            // A stopped probe's series leave /metrics at once, as they did
            // when a reload restarted the whole daemon.
            let store = Arc::clone(&store);
            manager.on_probe_stopped(Arc::new(move |tables: &[String]| {
                let n = store.clear_tables(tables);
                tracing::debug!(tables = %tables.join(","), series = n, "series of a stopped probe removed");
            }));
        }
        {
            let cfg = cfg.clone();
            manager.on_tcp_link_snoopers(Arc::new(
                move |name: &str, sn: &crate::control::Snoopers| {
                    set_tcp_link_snoopers(&cfg, name, sn)
                },
            ));
        }
        let exposition = Arc::new(Exposition::new(
            Arc::clone(&meta),
            Arc::clone(&store),
            Arc::clone(&stats),
            &identity,
        ));
        lower_main_thread_capabilities();
        tracing::info!(probes = manager.running(), machine_id = %identity.machine_id, "gala-gopher started");
        Ok(Self {
            shutdown,
            manager,
            workers: Mutex::new(std::mem::take(&mut started.workers)),
            exposition,
            stats,
            store,
            meta,
            reopen,
            log_files,
            last_scrape_len: std::sync::atomic::AtomicUsize::new(64 * 1024),
            rules,
            config: cfg,
        })
    }

    /// Renders one scrape and accounts for its time.
    pub fn scrape(&self) -> String {
        let t0 = Instant::now();
        // Size the buffer from the last scrape, so that one large scrape does
        // not leave a doubled-and-freed trail behind in the allocator.
        let hint = self.last_scrape_len.load(Ordering::Relaxed);
        let mut out = String::with_capacity(hint + hint / 8 + 4096);
        self.exposition.render(t0, &mut out);
        self.last_scrape_len.store(out.len(), Ordering::Relaxed);
        self.stats.scrapes.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.scrape_nanos.fetch_add(ns, Ordering::Relaxed);
        out
    }

    /// The store (for tests and the REST API).
    pub fn store(&self) -> &Arc<TableStore> {
        &self.store
    }

    /// Probes running, starting (not yet running, or waiting for a
    /// restart) and failed (given up after their restarts).
    pub fn probe_counts(&self) -> (usize, usize, usize) {
        let probes = self.stats.probes();
        let count = |s: ProbeState| probes.iter().filter(|(_, p)| p.state() == s).count();
        (
            count(ProbeState::Running),
            count(ProbeState::Starting) + count(ProbeState::Restarting),
            count(ProbeState::Failed),
        )
    }

    /// Series held by the store, over every table. Takes each table's lock
    /// in turn, like a scrape: it blocks while a table is stuck locked.
    pub fn series_count(&self) -> usize {
        (0..self.store.len())
            .filter_map(|i| self.store.lock(i).map(|t| t.len()))
            .sum()
    }

    /// The one-line summary for the service manager's `STATUS=`.
    pub fn status_line(&self) -> String {
        let (running, starting, failed) = self.probe_counts();
        crate::systemd::agent_status(running, starting, failed, self.series_count())
    }

    /// The probes.
    pub fn manager(&self) -> &ProbeManager {
        &self.manager
    }

    /// Whether `cfg` and `meta` differ from what this daemon runs in their
    /// probes at most, so that a reload to them is a
    /// [`Daemon::reconcile`] of the probes and leaves everything else
    /// running. `global.log_level` and `global.log_file_name` are left out:
    /// only the binary's own logging uses them, and it applies them itself.
    pub fn runs_except_probes(&self, cfg: &Config, meta: &MetaRegistry) -> bool {
        let strip = |c: &Config| {
            let mut c = c.clone();
            c.probes.clear();
            c.extend_probes.clear();
            c
        };
        let mine = strip(&self.config);
        let mut cfg = strip(cfg);
        cfg.global
            .log_level
            .clone_from(&self.config.global.log_level);
        cfg.global
            .log_file_name
            .clone_from(&self.config.global.log_file_name);
        mine == cfg
            && self.meta.len() == meta.len()
            && self
                .meta
                .tables()
                .iter()
                .zip(meta.tables())
                .all(|(a, b)| **a == **b)
    }

    /// A reload to `cfg` that [`Daemon::runs_except_probes`] already: only
    /// the probes whose entry changed are restarted (see
    /// [`ProbeManager::reconcile`]); `plan` is `cfg`'s checked plan.
    pub fn reconcile(&self, cfg: &Config, plan: Vec<PlannedProbe>) -> crate::manager::Reconciled {
        let restart = Restart {
            max: cfg.supervisor.restart_max,
            backoff: Duration::from_millis(cfg.supervisor.restart_backoff_ms),
            stable_after: Duration::from_secs(300),
        };
        mount_bpffs_for_probe_binaries(cfg);
        if let Some((_, thresholds)) = &self.rules {
            thresholds.load(cfg);
        }
        self.manager.reconcile(
            ProbeEntry::of_config(cfg),
            plan,
            crate::rules::following_params(
                self.rules.as_ref().map(|(_, t)| t),
                planner(cfg, Arc::clone(&self.meta)),
            ),
            restart,
        )
    }

    /// Reopens the log exporters' files by name (after logrotate moved
    /// them away): each file is created now, and its writer reopens it
    /// before its next line.
    pub fn reopen_logs(&self) {
        self.reopen.trigger();
        for path in &self.log_files {
            if let Err(e) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                tracing::error!(path = %path.display(), error = %e, "cannot reopen a log file");
            }
        }
    }

    /// Stops probes (children get SIGTERM, then SIGKILL after the grace
    /// period), drains the ingress and flushes the exporters. The store
    /// keeps its last series (scrapes still work); a second call does
    /// nothing.
    pub fn stop(&self) {
        let workers = std::mem::take(&mut *lock(&self.workers));
        if workers.is_empty() {
            return;
        }
        tracing::info!("shutting down");
        // Every probe stops first and the ingress queue's last sender goes,
        // so the ingress drains and ends.
        self.manager.stop_all();
        if let Some((closer, _)) = &self.rules {
            closer.close();
        }
        self.shutdown.trigger();
        for h in workers {
            let _ = h.join();
        }
        crate::probe::legacy_ipc::release();
        tracing::info!("stopped");
    }

    /// [`Daemon::stop`], consuming it.
    pub fn shutdown(self) {
        self.stop();
    }
}

/// The threads of a start in progress. Dropped with threads still in it
/// (a start that failed half-way), it stops and joins them.
#[derive(Debug, Default)]
struct Started {
    shutdown: Shutdown,
    workers: Vec<JoinHandle<()>>,
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.workers.is_empty() {
            return;
        }
        self.shutdown.trigger();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The eBPF probes of `plan` that cannot load because this process no
/// longer holds the capabilities to load eBPF programs: they were dropped
/// at an earlier start whose plan had no eBPF probe, and a process cannot
/// get them back. Empty when every probe can load; the second value names
/// the capabilities missing.
pub fn ebpf_probes_without_capabilities(plan: &[PlannedProbe]) -> (Vec<String>, Vec<String>) {
    use caps::{CapSet, Capability};
    let ebpf: Vec<String> = plan
        .iter()
        .filter(|(name, ..)| gopher_probes::EBPF_PROBES.contains(&name.as_str()))
        .map(|(name, ..)| name.clone())
        .collect();
    if ebpf.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let Ok(permitted) = caps::read(None, CapSet::Permitted) else {
        return (Vec::new(), Vec::new());
    };
    if permitted.contains(&Capability::CAP_SYS_ADMIN) {
        return (Vec::new(), Vec::new());
    }
    let needed: Vec<Capability> = if gopher_probes::privilege::kernel_has_cap_bpf() {
        gopher_probes::privilege::LOAD.to_vec()
    } else {
        vec![Capability::CAP_SYS_ADMIN]
    };
    let missing: Vec<String> = needed
        .iter()
        .filter(|c| !permitted.contains(c))
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        (ebpf, missing)
    }
}

/// The daemon the HTTP endpoint serves; a reload puts another one in.
///
/// It is also what the control surfaces (REST, the control socket) hold as
/// their [`ProbeControl`]: each request goes to the daemon running then.
#[derive(Debug)]
pub struct Serving {
    current: RwLock<Option<Arc<Daemon>>>,
    started: Instant,
}

impl Default for Serving {
    fn default() -> Self {
        Self {
            current: RwLock::new(None),
            started: Instant::now(),
        }
    }
}

impl Serving {
    /// Serving `daemon`.
    pub fn new(daemon: Daemon) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Some(Arc::new(daemon))),
            started: Instant::now(),
        })
    }

    /// The daemon served now (`None` after a reload failed for good).
    pub fn get(&self) -> Option<Arc<Daemon>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serves `daemon` from now on (or nothing); returns the one replaced.
    pub fn replace(&self, daemon: Option<Daemon>) -> Option<Arc<Daemon>> {
        let mut slot = self.current.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *slot, daemon.map(Arc::new))
    }
}

/// Why nothing can be changed while no configuration runs.
const NOTHING_RUNS: &str =
    "no configuration is running: the last reload failed (see the log); fix the config and reload";

impl ProbeControl for Serving {
    fn list(&self) -> Vec<ProbeView> {
        self.get().map_or_else(Vec::new, |d| d.manager.list())
    }

    fn get(&self, name: &str) -> Option<ProbeView> {
        Serving::get(self).and_then(|d| d.manager.get(name))
    }

    fn apply(&self, name: &str, change: &ProbeChange) -> Result<(), ControlError> {
        match Serving::get(self) {
            Some(d) => d.manager.apply(name, change),
            None => Err(ControlError::Failed(NOTHING_RUNS.to_owned())),
        }
    }

    fn status(&self) -> AgentStatus {
        let mut st = AgentStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: self.started.elapsed().as_secs(),
            ..AgentStatus::default()
        };
        if let Some(d) = Serving::get(self) {
            st.series = d.series_count();
            st.drops = drops_by_reason(&d.stats);
            st.probes = d.manager.list();
        }
        st
    }

    fn metrics(&self) -> String {
        Serving::get(self).map_or_else(String::new, |d| d.scrape())
    }
}

/// Records dropped so far, by reason (the drop stages of [`Stats`], and
/// `ingress_queue_full` for what the probes could not queue).
pub fn drops_by_reason(stats: &Stats) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for (stage, _, n) in stats.drops() {
        *m.entry(stage.to_owned()).or_insert(0) += n;
    }
    let emit: u64 = stats
        .probes()
        .iter()
        .map(|(_, p)| p.emit_dropped.load(Ordering::Relaxed))
        .sum();
    m.insert("ingress_queue_full".to_owned(), emit);
    m
}

/// Drops every capability that no thread of the agent needs, on the main
/// thread before it starts any other: capabilities belong to threads and a
/// new thread inherits its creator's, so every thread gets the smaller sets.
///
/// What stays permitted (`gopher_probes::privilege::keep_set`):
/// CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, to read `/proc/<pid>/fd` and
/// `/proc/<pid>/ns` of other users' processes (socket owners); with an eBPF
/// probe configured, also CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on kernels
/// before 5.8) and CAP_SYS_RESOURCE (locked-memory limit before 5.11), so
/// that the supervisor can restart the probe. The eBPF probe lowers its own
/// thread's effective set after attaching. The bounding set is kept: extend
/// and C probes are separate programs that ran as root under the legacy
/// agent, and a root `execve` gets it back.
///
/// The eBPF capabilities stay (permitted) when an eBPF probe runs, and also
/// when one may be started at run time: the REST API is on, or the config
/// lists an eBPF probe switched off. Otherwise a request to start one is
/// refused as needing a restart (docs/rest-api.md).
pub fn restrict_capabilities(cfg: &Config, plan: &[PlannedProbe]) {
    use gopher_probes::privilege;
    let is_ebpf = |name: &str| gopher_probes::EBPF_PROBES.contains(&name);
    let ebpf = plan.iter().any(|(name, ..)| is_ebpf(name))
        || (cfg.global.rest_api_on && !gopher_probes::EBPF_PROBES.is_empty())
        || cfg.probes.iter().any(|p| is_ebpf(&p.name));
    match privilege::restrict_process(&privilege::keep_set(ebpf)) {
        Ok(d) if d.dropped.is_empty() => {
            tracing::debug!(kept = %d.kept.join(","), "no capability to drop")
        }
        Ok(d) => tracing::info!(
            dropped = %d.dropped.join(","),
            kept = %d.kept.join(","),
            "capabilities dropped"
        ),
        Err(e) => tracing::warn!("cannot drop capabilities: {e}"),
    }
}

/// Probe binaries (extend probes: legacy 1.x and 2.x eBPF probes among
/// them) pin their maps under `/sys/fs/bpf`, and `global.pin_path` lies
/// there too: when an extend probe is switched on (or `auto`), bpffs is
/// mounted before the capabilities are dropped, if it is missing. When it
/// cannot be, the error names the mount command; the probes still start
/// (one that needs no pinning works without it).
fn mount_bpffs_for_probe_binaries(cfg: &Config) {
    if cfg.extend_probes.iter().all(|p| p.switch == Switch::Off) {
        return;
    }
    if let Err(e) = gopher_probes::bpffs::ensure() {
        tracing::error!("{e}");
    }
}

/// The main thread serves HTTP after start and loads nothing: only the
/// /proc-reading capabilities stay effective on it.
fn lower_main_thread_capabilities() {
    if let Err(e) = gopher_probes::privilege::lower_after_attach() {
        tracing::warn!("cannot lower the main thread's capabilities: {e}");
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, StartError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(io_err(format!("thread {name}")))
}

/// Binds the web_server address; done before anything starts, so a port
/// conflict is reported without spawning a single probe.
pub fn bind_http(addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    let l =
        std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
    l.set_nonblocking(true)
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok(l)
}

/// The `/metrics` router (and `/`, like the legacy agent) over whatever
/// daemon `serving` holds at each request: a reload swaps the daemon under a
/// listener that stays open. Answers 503 while it holds none. Served over
/// plain HTTP by [`serve_http_from`] and over TLS by the agent.
pub fn metrics_router(serving: Arc<Serving>) -> axum::Router {
    use axum::{
        http::{header, StatusCode},
        response::IntoResponse,
        routing::get,
        Router,
    };
    let handler = move || {
        let serving = Arc::clone(&serving);
        async move {
            // The daemon is only held while the scrape renders, so that a
            // reload can stop it right after.
            match serving.get() {
                Some(d) => (
                    [(
                        header::CONTENT_TYPE,
                        crate::export::prometheus::CONTENT_TYPE,
                    )],
                    d.scrape(),
                )
                    .into_response(),
                None => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no configuration is running: the last reload failed (see the log); fix the config and reload\n",
                )
                    .into_response(),
            }
        }
    };
    Router::new()
        .route("/metrics", get(handler.clone()))
        .route("/", get(handler))
}

/// Serves [`metrics_router`] over plain HTTP until `stop` resolves. Must run
/// inside a tokio runtime.
pub async fn serve_http_from(
    serving: Arc<Serving>,
    listener: std::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let addr = listener
        .local_addr()
        .map_err(io_err("web_server listener"))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|source| StartError::Bind { addr, source })?;
    tracing::info!(%addr, "serving Prometheus metrics");
    axum::serve(listener, metrics_router(serving))
        .with_graceful_shutdown(stop)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Count of dropped records, summed over every stage (for tests).
pub fn total_dropped(stats: &Stats) -> u64 {
    stats.total_dropped()
}

/// The shipped `start_check` forms, answered in-process instead of through
/// `sh`: the default config waits for five servers with them, and running
/// a shell, `grep` and `wc` for each every 30 s cost more idle CPU than the
/// probes' own work. Any other command still goes to the shell.
pub mod native_check {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// A check the agent answers itself.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum NativeCheck {
        /// `grep -slx NAME /proc/[0-9]*/comm | wc -l`: the processes whose
        /// command name is NAME as a whole-line basic regex (`.` is any
        /// character; no other special character is accepted).
        Comm(String),
        /// `grep -c . FILE 2>/dev/null || echo 0`: the non-empty lines of
        /// FILE (0 when it cannot be read).
        NonEmptyLines(String),
    }

    /// Recognises `cmd` as one of the forms answered in-process (the words
    /// must be exactly those; spacing is free).
    pub fn parse(cmd: &str) -> Option<NativeCheck> {
        let w: Vec<&str> = cmd.split_whitespace().collect();
        match w.as_slice() {
            ["grep", "-slx", name, "/proc/[0-9]*/comm", "|", "wc", "-l"]
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-+@:".contains(&b)) =>
            {
                Some(NativeCheck::Comm((*name).to_owned()))
            }
            ["grep", "-c", ".", file, "2>/dev/null", "||", "echo", "0"]
                if file.starts_with('/')
                    && !file.bytes().any(|b| b"*?[]$`\\\"'{}~;&|<>()".contains(&b)) =>
            {
                Some(NativeCheck::NonEmptyLines((*file).to_owned()))
            }
            _ => None,
        }
    }

    /// Whether `pattern` (a basic regex of literals and `.`) matches all of
    /// `name`.
    pub fn comm_matches(pattern: &[u8], name: &[u8]) -> bool {
        pattern.len() == name.len() && pattern.iter().zip(name).all(|(p, c)| *p == b'.' || p == c)
    }

    /// A /proc scan serves every check made within this long of it: the
    /// waiting probes start together and recheck on the same period, so
    /// one scan answers all of them.
    const SHARED_SCAN: Duration = Duration::from_secs(2);

    /// Command names (`comm`, at most 15 bytes) of every process.
    type Comms = Vec<([u8; 16], u8)>;

    static LAST_SCAN: Mutex<Option<(Instant, Comms)>> = Mutex::new(None);

    /// Reads `<proc>/<pid>/comm` of every process.
    pub fn scan_comms(proc_root: &std::path::Path) -> Comms {
        use std::io::Read as _;
        let mut out = Comms::new();
        let Ok(dir) = std::fs::read_dir(proc_root) else {
            return out;
        };
        let mut path = proc_root.to_path_buf();
        for e in dir.flatten() {
            let name = e.file_name();
            if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
                continue;
            }
            path.push(&name);
            path.push("comm");
            let mut buf = [0u8; 16];
            let mut len = 0;
            if let Ok(mut f) = std::fs::File::open(&path) {
                // One read: comm is at most 16 bytes with its newline.
                len = f.read(&mut buf).unwrap_or(0);
            }
            path.pop();
            path.pop();
            let line = buf[..len].strip_suffix(b"\n").unwrap_or(&buf[..len]);
            let mut comm = [0u8; 16];
            comm[..line.len()].copy_from_slice(line);
            out.push((comm, u8::try_from(line.len()).unwrap_or(0)));
        }
        out
    }

    /// How many processes are named `pattern`, from a scan shared with the
    /// other checks made at the same moment.
    fn count_comm(pattern: &str) -> usize {
        let mut last = LAST_SCAN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = last
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < SHARED_SCAN);
        if !fresh {
            *last = Some((Instant::now(), scan_comms(std::path::Path::new("/proc"))));
        }
        last.as_ref().map_or(0, |(_, comms)| {
            comms
                .iter()
                .filter(|(c, n)| comm_matches(pattern.as_bytes(), &c[..usize::from(*n)]))
                .count()
        })
    }

    /// The non-empty lines of `path` (0 when it cannot be read).
    pub fn non_empty_lines(path: &str) -> usize {
        std::fs::read(path).map_or(0, |b| {
            b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count()
        })
    }

    /// The answer of a recognised `start_check` (the number it would print
    /// is > 0), or `None` for a command the shell must run.
    pub fn answer(cmd: &str) -> Option<bool> {
        Some(match parse(cmd)? {
            NativeCheck::Comm(name) => count_comm(&name) > 0,
            NativeCheck::NonEmptyLines(path) => non_empty_lines(&path) > 0,
        })
    }
}

#[cfg(test)]
mod native_check_tests {
    use super::native_check::*;
    use std::time::Duration;

    #[test]
    fn the_shipped_forms_are_recognised_and_others_are_left_to_the_shell() {
        let comm = |n: &str| Some(NativeCheck::Comm(n.to_owned()));
        assert_eq!(
            parse("grep -slx nginx /proc/[0-9]*/comm | wc -l"),
            comm("nginx")
        );
        assert_eq!(
            parse("  grep -slx beam.smp  /proc/[0-9]*/comm |  wc -l "),
            comm("beam.smp")
        );
        assert_eq!(
            parse("grep -c . /proc/net/ip_vs 2>/dev/null || echo 0"),
            Some(NativeCheck::NonEmptyLines("/proc/net/ip_vs".into()))
        );
        for shell in [
            "pgrep -c myapp",
            "grep -slx 'nginx' /proc/[0-9]*/comm | wc -l",
            "grep -slx ngin* /proc/[0-9]*/comm | wc -l",
            "grep -slx nginx /proc/[0-9]*/comm | wc -l; touch /tmp/x",
            "grep -sl nginx /proc/[0-9]*/comm | wc -l",
            "grep -c . /proc/net/ip_vs || echo 0",
            "grep -c . $HOME/x 2>/dev/null || echo 0",
            "ps -ef | grep 'redis\\|keydb' | grep -v grep | wc -l",
        ] {
            assert_eq!(parse(shell), None, "{shell}");
        }
    }

    #[test]
    fn dot_is_any_character_and_the_whole_name_must_match() {
        assert!(comm_matches(b"beam.smp", b"beam.smp"));
        assert!(comm_matches(b"beam.smp", b"beamXsmp"));
        assert!(!comm_matches(b"nginx", b"nginx:"));
        assert!(!comm_matches(b"nginx", b"ngin"));
        assert!(!comm_matches(b"nginx", b"Nginx"));
    }

    /// Runs `cmd` through the shell and returns its first line's number.
    fn shell_count(cmd: &str) -> usize {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .expect("run sh");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn answers_agree_with_the_shell() {
        // A process of a known name: a copy of `sleep` under a name of our own.
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("gg-chk.x");
        std::fs::copy("/bin/sleep", &bin).expect("copy sleep");
        let mut child = std::process::Command::new(&bin)
            .arg("30")
            .spawn()
            .expect("start the named process");
        // Its comm is the test thread's until the exec: wait for the name.
        let comm = format!("/proc/{}/comm", child.id());
        let t0 = std::time::Instant::now();
        while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "gg-chk.x" {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "the copy of sleep never showed its name in {comm}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let count = |pat: &str| {
            scan_comms(std::path::Path::new("/proc"))
                .iter()
                .filter(|(c, n)| comm_matches(pat.as_bytes(), &c[..usize::from(*n)]))
                .count()
        };
        for name in ["gg-chk.x", "gg-chk.y", "gg-chk..", "gg-nothing"] {
            let cmd = format!("grep -slx {name} /proc/[0-9]*/comm | wc -l");
            assert!(parse(&cmd).is_some(), "{cmd}");
            assert_eq!(count(name), shell_count(&cmd), "{cmd}");
        }
        assert_eq!(count("gg-chk.x"), 1);
        assert_eq!(
            answer("grep -slx gg-chk.x /proc/[0-9]*/comm | wc -l"),
            Some(true)
        );
        let _ = child.kill();
        let _ = child.wait();
        let file = dir.path().join("lines");
        std::fs::write(&file, "a\n\nb\n").expect("write");
        for path in [file.display().to_string(), "/nonexistent/x".to_owned()] {
            let cmd = format!("grep -c . {path} 2>/dev/null || echo 0");
            assert_eq!(non_empty_lines(&path), shell_count(&cmd), "{cmd}");
        }
        assert_eq!(
            answer("grep -c . /nonexistent/x 2>/dev/null || echo 0"),
            Some(false)
        );
        // And through the supervisor's entry point, which uses them.
        assert!(!crate::probe::extend::start_check(
            "grep -slx gg-nothing-here /proc/[0-9]*/comm | wc -l",
            Duration::from_secs(5)
        )
        .expect("answer"));
    }
}
