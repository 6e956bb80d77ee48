//! The probe manager: owns the running probes, and starts, stops and
//! re-parameterises one of them without touching the others.
//!
//! Each probe runs under its own supervisor thread (see
//! [`crate::probe::supervisor`]) with a shutdown signal of its own, a child
//! of the daemon's: stopping one probe fires only its signal and joins only
//! its thread, so the other probes keep reporting and their series never
//! gap.
//!
//! What the manager holds per probe (a *slot*):
//! - the entry as the config file gives it (none for a probe of this build
//!   that the config does not name);
//! - the effective entry, which run-time requests (REST, the control
//!   socket) change: `param` letters, a 2.x probe's `ipc` params,
//!   sub-probes and snoopers;
//! - whether it should run, and its supervisor when it does.
//!
//! A reload ([`ProbeManager::reconcile`]) compares each new config entry
//! with the one the slot was configured from: an unchanged entry keeps its
//! probe running, with whatever requests changed on it (a probe stopped by
//! a request stays stopped); a changed entry restarts that probe alone with
//! the new entry (requests made on it before are dropped); a change of a
//! 2.x probe's `ipc` params, sub-probes or snoopers only is sent to the
//! running probe over the 2.x message queue, without a restart.
//!
//! Run-time requests ([`ProbeManager::apply`], behind
//! [`crate::control::ProbeControl`]):
//! - `state: running` starts a stopped (or failed) probe; an extend probe
//!   with `switch = "auto"` and a `start_check` starts waiting for its check
//!   again, as at start (shown as `waiting` until the check says yes),
//!   while one switched off in the config starts at once, its check
//!   skipped (the request is the operator's answer); a probe of this build
//!   that the config does not name is listed as stopped and starts with
//!   the default params; `state: stopped` stops it, and it stays stopped
//!   until a request or a change of its config entry starts it (its series
//!   leave the store at once).
//! - `params` (2.x names): for native, C and eBPF probes each maps onto a
//!   `param` letter ([`PARAM_LETTERS`]) and the probe is restarted alone
//!   with the new `param`; for a 2.x probe binary (`[extend_probes.ipc]`)
//!   they go into its 2.x params and are sent over the message queue, no
//!   restart; other extend probes take no params at run time.
//! - `cmd.probe`: for a group (a legacy feature name such as `baseinfo`)
//!   which of its probes run; for a 2.x probe binary its sub-probes.
//! - `snoopers`: kept in the view and in the entry (a start uses them);
//!   sent to a running 2.x probe binary over the message queue, and given to
//!   a running tcp_link through [`ProbeManager::on_tcp_link_snoopers`]
//!   (its kernel-side filter is updated without a restart); a running C
//!   probe or extend probe (without `ipc`) whose snoopers change is
//!   restarted alone, since it receives them at start
//!   ([`crate::probe::snoopers`]).

use std::collections::BTreeMap;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::config::ipc::{LegacyIpcConf, LegacyParams};
use crate::config::{CheckType, ExtendProbeConf, ProbeConf, Switch};
use crate::control::{
    Cmd, ControlError, ProbeChange, ProbeState as ViewState, ProbeView, Snoopers, SnoopersView,
    LEGACY_FEATURES, LEGACY_SUB_PROBES,
};
use crate::daemon::{PlannedProbe, StartError};
use crate::probe::supervisor::{self, Restart, Supervised};
use crate::probe_api::api::TablesSeen;
use crate::probe_api::{Emitted, Emitter, Params, Shutdown};
use crate::stats::{ProbeState, ProbeStats, Stats};

/// tcp_link's name (the probe that honours snoopers in the kernel).
const TCP_LINK: &str = "tcp_link";

/// The 2.x REST params that native, C and eBPF probes take, and the
/// `param` letter each sets.
pub const PARAM_LETTERS: &[(&str, char)] = &[
    ("report_period", 't'),
    ("sample_period", 's'),
    ("latency_thr", 'T'),
    ("offline_thr", 'O'),
    ("drops_thr", 'D'),
    ("res_lower_thr", 'L'),
    ("res_upper_thr", 'U'),
];

/// One probe of the config: a `[[probes]]` or an `[[extend_probes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // few, long-lived, compared whole
pub enum ProbeEntry {
    /// `[[probes]]`: native, C or eBPF.
    Native(ProbeConf),
    /// `[[extend_probes]]`.
    Extend(ExtendProbeConf),
}

impl ProbeEntry {
    /// The probe's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Native(p) => &p.name,
            Self::Extend(p) => &p.name,
        }
    }

    /// Its `switch`.
    pub fn switch(&self) -> Switch {
        match self {
            Self::Native(p) => p.switch,
            Self::Extend(p) => p.switch,
        }
    }

    fn set_switch(&mut self, s: Switch) {
        match self {
            Self::Native(p) => p.switch = s,
            Self::Extend(p) => p.switch = s,
        }
    }

    /// `native`, `c`, `ebpf` or `extend`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Extend(_) => "extend",
            Self::Native(p) if p.library.is_some() => "c",
            Self::Native(p) if gopher_probes::EBPF_PROBES.contains(&p.name.as_str()) => "ebpf",
            Self::Native(p) if gopher_probes::native_probe(&p.name).is_some() => "native",
            Self::Native(_) => "c",
        }
    }

    /// The entries of a config, `[[probes]]` first, each in file order.
    pub fn of_config(cfg: &crate::config::Config) -> Vec<Self> {
        cfg.probes
            .iter()
            .cloned()
            .map(Self::Native)
            .chain(cfg.extend_probes.iter().cloned().map(Self::Extend))
            .collect()
    }

    /// A probe of this build that the config does not name, switched off.
    fn unconfigured(name: &str) -> Self {
        Self::Native(ProbeConf {
            name: name.to_owned(),
            param: String::new(),
            switch: Switch::Off,
            library: None,
            hang_timeout_secs: None,
            interval: None,
            snoopers: None,
            start_check: None,
            check_type: CheckType::Count,
        })
    }

    /// This entry with what a running 2.x probe takes over the message
    /// queue left out: two entries equal this way differ at most in that.
    fn restart_part(&self) -> Self {
        let mut e = self.clone();
        if let Self::Extend(p) = &mut e {
            p.ipc = p.ipc.as_ref().map(LegacyIpcConf::restart_part);
        }
        e
    }
}

/// The names of the probes compiled into this build (native, eBPF and
/// built-in C probes), sorted.
pub fn build_probes() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = gopher_probes::NATIVE_PROBES
        .iter()
        .map(|d| d.name)
        .chain(gopher_probes_c::BUILTIN.iter().map(|c| c.name))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Plans one entry (checks it and builds its factory). The daemon's planner
/// checks the registries and the meta tables; tests give their own.
pub type Planner = Arc<dyn Fn(&ProbeEntry) -> Result<PlannedProbe, StartError> + Send + Sync>;

/// Removes the series of the tables named (the daemon's store).
pub type ClearTables = Arc<dyn Fn(&[String]) + Send + Sync>;

/// Gives the running tcp_link probe of that name new snoopers, without a
/// restart (the daemon's [`crate::daemon::set_tcp_link_snoopers`]).
pub type SetSnoopers = Arc<dyn Fn(&str, &Snoopers) -> Result<bool, ControlError> + Send + Sync>;

/// Why a probe could not be (re)started.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The entry could not be planned.
    #[error("probe `{probe}`: {source}")]
    Plan {
        /// The probe.
        probe: String,
        /// Why.
        #[source]
        source: Box<StartError>,
    },
    /// The supervisor thread could not be started.
    #[error("probe `{probe}`: cannot start its thread: {source}")]
    Thread {
        /// The probe.
        probe: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The agent is stopping.
    #[error("probe `{probe}`: the agent is stopping")]
    Stopping {
        /// The probe.
        probe: String,
    },
    /// An eBPF probe needs capabilities this process gave up.
    #[error(
        "probe `{probe}` is an eBPF probe, and this process gave up the capabilities to load it \
         ({missing}) when it started without one: restart gala-gopher with the probe in its config"
    )]
    NoCapabilities {
        /// The probe.
        probe: String,
        /// The capabilities missing.
        missing: String,
    },
    /// The 2.x message queue refused the new message.
    #[error("probe `{probe}`: {source}")]
    Ipc {
        /// The probe.
        probe: String,
        /// Why.
        #[source]
        source: crate::probe::legacy_ipc::IpcError,
    },
}

impl From<ManagerError> for ControlError {
    fn from(e: ManagerError) -> Self {
        ControlError::Failed(e.to_string())
    }
}

/// A probe's supervisor.
struct Run {
    stop: Shutdown,
    handle: JoinHandle<()>,
    stats: Arc<ProbeStats>,
}

impl Run {
    /// Stops the probe and waits for its supervisor (children get SIGTERM,
    /// then SIGKILL after the grace period).
    fn stop(self) {
        self.stop.trigger();
        let _ = self.handle.join();
    }
}

/// One probe the manager knows.
struct Slot {
    /// The entry of the config (`None`: a probe of this build that the
    /// config does not name).
    config: Option<ProbeEntry>,
    /// The entry it runs with: the config's, changed by requests.
    entry: ProbeEntry,
    /// Whether it should run.
    want: bool,
    /// Its snoopers as requested (`None`: the config's).
    snoopers: Option<Snoopers>,
    /// Its supervisor, while it has one.
    run: Option<Run>,
    /// Why its last start was refused.
    refused: Option<String>,
    /// The tables it sent records of.
    seen: Arc<TablesSeen>,
}

impl Slot {
    fn new(config: Option<ProbeEntry>, entry: ProbeEntry, want: bool) -> Self {
        Self {
            config,
            entry,
            want,
            snoopers: None,
            run: None,
            refused: None,
            seen: Arc::default(),
        }
    }

    /// The tables it emits: those of its definition, and those it sent.
    fn tables(&self) -> Vec<String> {
        let mut t = self.seen.tables();
        let name = self.name();
        let fixed: &[&str] = if let ProbeEntry::Native(p) = &self.entry {
            if p.library.is_some() {
                &[]
            } else if let Some(d) = gopher_probes::native_probe(name) {
                d.tables
            } else if let Some(c) = gopher_probes_c::builtin(name) {
                c.tables
            } else {
                &[]
            }
        } else {
            &[]
        };
        for f in fixed {
            if !t.iter().any(|x| x == f) {
                t.push((*f).to_owned());
            }
        }
        t
    }

    fn name(&self) -> &str {
        self.entry.name()
    }

    fn running(&self) -> bool {
        self.run.as_ref().is_some_and(|r| !r.handle.is_finished())
    }

    fn state(&self, stats: &Stats) -> ViewState {
        match &self.run {
            Some(_) => match stats.probe(self.name()).state() {
                ProbeState::Starting | ProbeState::Running | ProbeState::Restarting => {
                    ViewState::Running
                }
                ProbeState::Waiting => ViewState::Waiting,
                ProbeState::Failed => ViewState::Failed,
                ProbeState::Stopped => ViewState::Stopped,
            },
            None if self.refused.is_some() => ViewState::Failed,
            None => ViewState::Stopped,
        }
    }

    fn snoopers(&self) -> Option<&Snoopers> {
        if let Some(s) = &self.snoopers {
            return Some(s);
        }
        match &self.entry {
            ProbeEntry::Native(p) => p.snoopers.as_ref(),
            ProbeEntry::Extend(p) => p.ipc.as_ref().map(|i| &i.snoopers).or(p.snoopers.as_ref()),
        }
    }
}

/// What a reload did to the probes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Probes started (new in the config, or switched on).
    pub started: Vec<String>,
    /// Probes restarted because their entry changed.
    pub restarted: Vec<String>,
    /// Probes stopped (switched off, or gone from the config).
    pub stopped: Vec<String>,
    /// 2.x probes whose new params, sub-probes or snoopers were sent to
    /// them running.
    pub updated: Vec<String>,
    /// Probes whose entry is the same: left as they are.
    pub kept: Vec<String>,
    /// Probes that could not be started, with why.
    pub failed: Vec<(String, String)>,
}

/// The probe manager (see the module docs).
pub struct ProbeManager {
    shutdown: Shutdown,
    tx: Mutex<Option<SyncSender<Emitted>>>,
    stats: Arc<Stats>,
    restart: Mutex<Restart>,
    planner: Mutex<Planner>,
    slots: Mutex<Vec<Slot>>,
    /// Per group, the members `cmd.probe` selected last.
    selections: Mutex<BTreeMap<String, Vec<String>>>,
    /// Gives a running tcp_link new snoopers.
    on_snoopers: Mutex<Option<SetSnoopers>>,
    /// Told the tables whose series should go when a probe stops.
    on_stopped: Mutex<Option<ClearTables>>,
    /// Serialises the changes (a change stops and starts probes outside the
    /// slots' lock, so that views are not held up by a probe's stop).
    changing: Mutex<()>,
}

impl std::fmt::Debug for ProbeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = lock(&self.slots)
            .iter()
            .map(|s| s.name().to_owned())
            .collect();
        f.debug_struct("ProbeManager")
            .field("probes", &names)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ProbeManager {
    /// A manager of `entries` (and of the probes of this build that they do
    /// not name, stopped), starting the probes of `plan` (the checked plan
    /// of `entries`: every entry switched on). Records go to `tx`; every
    /// probe's signal is a child of `shutdown`. Probes of the plan that
    /// cannot be started are logged and shown as failed.
    pub fn start(
        entries: Vec<ProbeEntry>,
        plan: Vec<PlannedProbe>,
        planner: Planner,
        tx: SyncSender<Emitted>,
        stats: Arc<Stats>,
        restart: Restart,
        shutdown: Shutdown,
    ) -> Self {
        let mgr = Self {
            shutdown,
            tx: Mutex::new(Some(tx)),
            stats,
            restart: Mutex::new(restart),
            planner: Mutex::new(planner),
            slots: Mutex::new(Vec::new()),
            selections: Mutex::new(BTreeMap::new()),
            on_stopped: Mutex::new(None),
            on_snoopers: Mutex::new(None),
            changing: Mutex::new(()),
        };
        let mut slots = Vec::new();
        for e in entries {
            if slots.iter().any(|s: &Slot| s.name() == e.name()) {
                tracing::warn!(probe = %e.name(), "a second probe of this name is left out");
                continue;
            }
            let want = e.switch() != Switch::Off;
            slots.push(Slot::new(Some(e.clone()), e, want));
        }
        for name in build_probes() {
            if !slots.iter().any(|s| s.name() == name) {
                slots.push(Slot::new(None, ProbeEntry::unconfigured(name), false));
            }
        }
        *lock(&mgr.slots) = slots;
        for planned in plan {
            let name = planned.0.clone();
            let r = mgr.spawn(planned);
            if let Err(e) = mgr.put_run(&name, r) {
                tracing::error!("{e}");
            }
        }
        mgr
    }

    /// Probes with a supervisor.
    pub fn running(&self) -> usize {
        lock(&self.slots).iter().filter(|s| s.run.is_some()).count()
    }

    fn spawn(&self, (name, params, start, factory): PlannedProbe) -> Result<Run, ManagerError> {
        let seen = lock(&self.slots)
            .iter()
            .find(|s| s.name() == name)
            .map_or_else(Arc::default, |s| Arc::clone(&s.seen));
        let tx = lock(&self.tx)
            .clone()
            .ok_or_else(|| ManagerError::Stopping {
                probe: name.clone(),
            })?;
        let stats = self.stats.probe(&name);
        let emitter = Emitter::new(
            Arc::from(name.as_str()),
            tx,
            Arc::clone(&stats.emit_dropped),
        )
        .tracking(seen);
        let stop = self.shutdown.child();
        // Its last run may have left `stopped` or `failed` behind.
        stats.set_state(ProbeState::Starting);
        let s = Supervised {
            name: name.clone(),
            factory,
            params,
            emitter,
            stats: Arc::clone(&stats),
            start,
            restart: *lock(&self.restart),
        };
        let handle = supervisor::spawn(s, stop.clone()).map_err(|source| ManagerError::Thread {
            probe: name,
            source,
        })?;
        Ok(Run {
            stop,
            handle,
            stats,
        })
    }

    /// Plans `entry` (switched on) and starts it.
    fn plan_and_spawn(&self, entry: &ProbeEntry) -> Result<Run, ManagerError> {
        let mut on = entry.clone();
        if on.switch() == Switch::Off {
            on.set_switch(Switch::On);
        }
        let planner = Arc::clone(&lock(&self.planner));
        let planned = planner(&on).map_err(|source| ManagerError::Plan {
            probe: entry.name().to_owned(),
            source: Box::new(source),
        })?;
        let (ebpf, missing) =
            crate::daemon::ebpf_probes_without_capabilities(std::slice::from_ref(&planned));
        if !ebpf.is_empty() {
            return Err(ManagerError::NoCapabilities {
                probe: entry.name().to_owned(),
                missing: missing.join(","),
            });
        }
        self.spawn(planned)
    }

    /// Takes the supervisor of probe `name` out of its slot.
    fn take_run(&self, name: &str) -> Option<Run> {
        lock(&self.slots)
            .iter_mut()
            .find(|s| s.name() == name)
            .and_then(|s| s.run.take())
    }

    /// Puts a new run (or the refusal) into the slot of `name`.
    fn put_run(&self, name: &str, r: Result<Run, ManagerError>) -> Result<(), ManagerError> {
        let mut slots = lock(&self.slots);
        let slot = slots.iter_mut().find(|s| s.name() == name);
        match r {
            Ok(run) => {
                if let Some(s) = slot {
                    s.refused = None;
                    s.run = Some(run);
                } else {
                    drop(slots);
                    run.stop();
                }
                Ok(())
            }
            Err(e) => {
                if let Some(s) = slot {
                    s.refused = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    /// From now on, snoopers given to a running tcp_link go through `f`
    /// (a stopped one gets them from its entry when it starts).
    pub fn on_tcp_link_snoopers(&self, f: SetSnoopers) {
        *lock(&self.on_snoopers) = Some(f);
    }

    /// From now on, `f` is told the tables whose series should go when a
    /// probe is stopped (its tables that no running probe shares).
    pub fn on_probe_stopped(&self, f: ClearTables) {
        *lock(&self.on_stopped) = Some(f);
    }

    /// Has the series of the stopped probe `name` removed: its tables that
    /// no running probe emits too.
    fn clear_series_of(&self, name: &str) {
        let Some(f) = lock(&self.on_stopped).clone() else {
            return;
        };
        let tables: Vec<String> = {
            let slots = lock(&self.slots);
            let Some(mine) = slots.iter().find(|s| s.name() == name) else {
                return;
            };
            let others: Vec<String> = slots
                .iter()
                .filter(|s| s.name() != name && s.run.is_some())
                .flat_map(Slot::tables)
                .collect();
            mine.tables()
                .into_iter()
                .filter(|t| !others.contains(t))
                .collect()
        };
        if !tables.is_empty() {
            f(&tables);
        }
    }

    /// Stops probe `name` (the others keep running); `false` when it was
    /// not running.
    pub fn stop_probe(&self, name: &str) -> bool {
        let _changing = lock(&self.changing);
        self.stop_locked(name)
    }

    fn stop_locked(&self, name: &str) -> bool {
        match self.take_run(name) {
            Some(run) => {
                run.stop();
                self.clear_series_of(name);
                tracing::info!(probe = %name, "probe stopped");
                true
            }
            None => false,
        }
    }

    /// Starts probe `name` from its effective entry (a running one is
    /// restarted).
    pub fn start_probe(&self, name: &str) -> Result<(), ManagerError> {
        let _changing = lock(&self.changing);
        self.restart_locked(name)
    }

    fn restart_locked(&self, name: &str) -> Result<(), ManagerError> {
        let entry = {
            let mut slots = lock(&self.slots);
            let Some(s) = slots.iter_mut().find(|s| s.name() == name) else {
                return Ok(());
            };
            s.want = true;
            s.entry.clone()
        };
        if let Some(run) = self.take_run(name) {
            run.stop();
        }
        let r = self.plan_and_spawn(&entry);
        let ok = r.is_ok();
        self.put_run(name, r)?;
        if ok {
            tracing::info!(probe = %name, "probe started");
        }
        Ok(())
    }

    /// Restarts probe `name` alone with `param` as its param string (a
    /// `[[probes]]` entry).
    pub fn reparam(&self, name: &str, param: &str) -> Result<(), ManagerError> {
        let _changing = lock(&self.changing);
        {
            let mut slots = lock(&self.slots);
            if let Some(ProbeEntry::Native(p)) = slots
                .iter_mut()
                .find(|s| s.name() == name)
                .map(|s| &mut s.entry)
            {
                param.clone_into(&mut p.param);
            }
        }
        self.restart_locked(name)
    }

    /// A reload: `entries` is the new config's (with `plan`, its checked
    /// plan, and `planner` for later starts); see the module docs.
    pub fn reconcile(
        &self,
        entries: Vec<ProbeEntry>,
        plan: Vec<PlannedProbe>,
        planner: Planner,
        restart: Restart,
    ) -> Reconciled {
        let _changing = lock(&self.changing);
        *lock(&self.planner) = planner;
        *lock(&self.restart) = restart;
        let mut plan: BTreeMap<String, PlannedProbe> =
            plan.into_iter().map(|p| (p.0.clone(), p)).collect();
        let mut out = Reconciled::default();
        let mut seen: Vec<String> = Vec::new();
        for e in entries {
            let name = e.name().to_owned();
            if seen.contains(&name) {
                continue;
            }
            seen.push(name.clone());
            let old = {
                let slots = lock(&self.slots);
                slots
                    .iter()
                    .find(|s| s.name() == name)
                    .map(|s| s.config.clone())
            };
            let on = e.switch() != Switch::Off;
            match old {
                Some(Some(old)) if old == e => {
                    out.kept.push(name);
                    continue;
                }
                Some(Some(old)) if old.restart_part() == e.restart_part() => {
                    // Only what a running 2.x probe takes over the queue.
                    {
                        let mut slots = lock(&self.slots);
                        if let Some(s) = slots.iter_mut().find(|s| s.name() == name) {
                            s.config = Some(e.clone());
                            s.entry = e.clone();
                            s.snoopers = None;
                        }
                    }
                    if let ProbeEntry::Extend(ExtendProbeConf { ipc: Some(ipc), .. }) = &e {
                        match crate::probe::legacy_ipc::update(&name, ipc) {
                            Ok(_) => out.updated.push(name.clone()),
                            Err(err) => out.failed.push((name.clone(), err.to_string())),
                        }
                    }
                    continue;
                }
                _ => {}
            }
            // New, or changed: the new entry replaces the old one.
            let was = self.take_run(&name);
            let had = was.is_some();
            if let Some(run) = was {
                run.stop();
            }
            {
                let mut slots = lock(&self.slots);
                let mut slot = Slot::new(Some(e.clone()), e.clone(), on);
                match slots.iter_mut().find(|s| s.name() == name) {
                    Some(s) => {
                        slot.seen = Arc::clone(&s.seen);
                        *s = slot;
                    }
                    None => slots.push(slot),
                }
            }
            if !on {
                if had {
                    self.clear_series_of(&name);
                    out.stopped.push(name);
                }
                continue;
            }
            let r = match plan.remove(&name) {
                Some(p) => self.spawn(p),
                None => self.plan_and_spawn(&e),
            };
            match self.put_run(&name, r) {
                Ok(()) if had => out.restarted.push(name),
                Ok(()) => out.started.push(name),
                Err(err) => out.failed.push((name, err.to_string())),
            }
        }
        // Entries gone from the config.
        let gone: Vec<String> = lock(&self.slots)
            .iter()
            .filter(|s| s.config.is_some() && !seen.iter().any(|n| n == s.name()))
            .map(|s| s.name().to_owned())
            .collect();
        for name in gone {
            if let Some(run) = self.take_run(&name) {
                run.stop();
                self.clear_series_of(&name);
                out.stopped.push(name.clone());
            }
            let mut slots = lock(&self.slots);
            if build_probes().contains(&name.as_str()) {
                if let Some(s) = slots.iter_mut().find(|s| s.name() == name) {
                    let seen = Arc::clone(&s.seen);
                    *s = Slot::new(None, ProbeEntry::unconfigured(&name), false);
                    s.seen = seen;
                }
            } else {
                slots.retain(|s| s.name() != name);
            }
        }
        // Configured probes first, in config order; then the others.
        {
            let mut slots = lock(&self.slots);
            slots.sort_by_key(|s| match s.config {
                Some(_) => (
                    0,
                    seen.iter().position(|n| n == s.name()).unwrap_or(0),
                    String::new(),
                ),
                None => (1, 0, s.name().to_owned()),
            });
        }
        out
    }

    /// Stops every probe and lets go of the ingress queue (the ingress ends
    /// once the last sender is gone). A second call does nothing.
    pub fn stop_all(&self) {
        let _changing = lock(&self.changing);
        let runs: Vec<Run> = lock(&self.slots)
            .iter_mut()
            .filter_map(|s| s.run.take())
            .collect();
        for r in &runs {
            r.stop.trigger();
        }
        for r in runs {
            let _ = r.handle.join();
        }
        lock(&self.tx).take();
    }

    /// Every resource: the groups of [`LEGACY_FEATURES`] with a member in
    /// this build or the config, then every probe (configured ones in config
    /// order, then the others by name).
    pub fn list(&self) -> Vec<ProbeView> {
        let slots = lock(&self.slots);
        let mut out: Vec<ProbeView> = LEGACY_FEATURES
            .iter()
            .filter_map(|(g, _)| self.group_view(&slots, g))
            .collect();
        out.extend(slots.iter().map(|s| self.view(s)));
        out
    }

    /// One resource.
    pub fn get(&self, name: &str) -> Option<ProbeView> {
        let slots = lock(&self.slots);
        if let Some(v) = self.group_view(&slots, name) {
            return Some(v);
        }
        slots
            .iter()
            .find(|s| s.name() == name)
            .map(|s| self.view(s))
    }

    fn view(&self, s: &Slot) -> ProbeView {
        let (cmd, params) = match &s.entry {
            ProbeEntry::Native(p) => (Cmd::default(), native_params_view(&p.param)),
            ProbeEntry::Extend(ExtendProbeConf { ipc: Some(ipc), .. }) => (
                Cmd {
                    probe: ipc.probe.clone(),
                },
                legacy_params_view(&ipc.params),
            ),
            ProbeEntry::Extend(_) => (Cmd::default(), BTreeMap::new()),
        };
        ProbeView {
            name: s.name().to_owned(),
            kind: s.entry.kind(),
            state: s.state(&self.stats),
            cmd,
            params,
            snoopers: s.snoopers().map(SnoopersView::from).unwrap_or_default(),
            restarts: s.run.as_ref().map_or_else(
                || {
                    self.stats
                        .probe(s.name())
                        .restarts
                        .load(std::sync::atomic::Ordering::Relaxed)
                },
                |r| r.stats.restarts.load(std::sync::atomic::Ordering::Relaxed),
            ),
        }
    }

    fn group_view(&self, slots: &[Slot], group: &str) -> Option<ProbeView> {
        let members = group_members(slots, group)?;
        let member_slots: Vec<&Slot> = members
            .iter()
            .filter_map(|m| slots.iter().find(|s| s.name() == *m))
            .collect();
        let states: Vec<ViewState> = member_slots.iter().map(|s| s.state(&self.stats)).collect();
        let state = if states.contains(&ViewState::Running) {
            ViewState::Running
        } else if states.contains(&ViewState::Waiting) {
            ViewState::Waiting
        } else if states.contains(&ViewState::Failed) {
            ViewState::Failed
        } else {
            ViewState::Stopped
        };
        let running: Vec<String> = member_slots
            .iter()
            .filter(|s| s.run.is_some())
            .map(|s| s.name().to_owned())
            .collect();
        let cmd = if running.is_empty() {
            lock(&self.selections)
                .get(group)
                .cloned()
                .unwrap_or_else(|| members.iter().map(|m| (*m).to_owned()).collect())
        } else {
            running
        };
        let first = member_slots
            .iter()
            .find(|s| s.run.is_some())
            .or(member_slots.first());
        let params = first.map_or_else(BTreeMap::new, |s| match &s.entry {
            ProbeEntry::Native(p) => native_params_view(&p.param),
            ProbeEntry::Extend(_) => BTreeMap::new(),
        });
        let snoopers = first
            .and_then(|s| s.snoopers())
            .map(SnoopersView::from)
            .unwrap_or_default();
        let restarts = member_slots
            .iter()
            .map(|s| {
                self.stats
                    .probe(s.name())
                    .restarts
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum();
        Some(ProbeView {
            name: group.to_owned(),
            kind: "group",
            state,
            cmd: Cmd { probe: cmd },
            params,
            snoopers,
            restarts,
        })
    }

    /// Applies a checked change to one resource (see the module docs).
    /// Everything is checked before anything changes: a refused change
    /// changes nothing.
    pub fn apply(&self, name: &str, change: &ProbeChange) -> Result<(), ControlError> {
        let _changing = lock(&self.changing);
        let (targets, group) = {
            let slots = lock(&self.slots);
            match group_members(&slots, name) {
                Some(m) => (m.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), true),
                None if slots.iter().any(|s| s.name() == name) => (vec![name.to_owned()], false),
                None => return Err(ControlError::UnknownProbe(name.to_owned())),
            }
        };
        // Which targets should run afterwards (None: as they are).
        let mut want: BTreeMap<String, Option<bool>> =
            targets.iter().map(|t| (t.clone(), None)).collect();
        // A group's `cmd.probe`, as the members it selects.
        let picked = match (&change.probe, group) {
            (Some(sel), true) => Some(group_selection(name, &targets, sel)?),
            _ => None,
        };
        if group {
            let selection = picked
                .clone()
                .or_else(|| lock(&self.selections).get(name).cloned());
            let group_runs = {
                let slots = lock(&self.slots);
                targets
                    .iter()
                    .any(|t| slots.iter().any(|s| s.name() == t && s.running()))
            };
            let run_group = match change.state {
                Some(crate::control::DesiredState::Running) => true,
                Some(crate::control::DesiredState::Stopped) => false,
                // A selection alone applies to a running group; a stopped
                // one keeps it for its next start.
                None => group_runs && change.probe.is_some(),
            };
            if change.state.is_some() || (group_runs && change.probe.is_some()) {
                for t in &targets {
                    let on = run_group && selection.as_ref().is_none_or(|sel| sel.contains(t));
                    want.insert(t.clone(), Some(on));
                }
            }
        } else if let Some(s) = change.state {
            want.insert(
                name.to_owned(),
                Some(s == crate::control::DesiredState::Running),
            );
        }
        // The new entries, checked.
        let mut new_entries: Vec<(String, ProbeEntry, bool, bool)> = Vec::new();
        {
            let slots = lock(&self.slots);
            for t in &targets {
                let Some(s) = slots.iter().find(|s| s.name() == t) else {
                    continue;
                };
                let (entry, restart, ipc_changed) = changed_entry(s, change, group)?;
                new_entries.push((t.clone(), entry, restart, ipc_changed));
            }
        }
        if let Some(sel) = picked {
            lock(&self.selections).insert(name.to_owned(), sel);
        }
        // Apply.
        let mut errors = Vec::new();
        for (t, entry, restart, ipc_changed) in new_entries {
            let now_running = {
                let mut slots = lock(&self.slots);
                let Some(s) = slots.iter_mut().find(|s| s.name() == t) else {
                    continue;
                };
                s.entry = entry.clone();
                if let Some(sn) = &change.snoopers {
                    s.snoopers = Some(sn.clone());
                }
                if let Some(Some(w)) = want.get(&t) {
                    s.want = *w;
                }
                s.running()
            };
            if let (Some(sn), true) = (&change.snoopers, t == TCP_LINK && now_running) {
                let hook = lock(&self.on_snoopers).clone();
                if let Some(f) = hook {
                    if let Err(e) = f(&t, sn) {
                        errors.push(e.to_string());
                    }
                }
            }
            if ipc_changed {
                if let ProbeEntry::Extend(ExtendProbeConf { ipc: Some(ipc), .. }) = &entry {
                    if let Err(e) = crate::probe::legacy_ipc::update(&t, ipc) {
                        errors.push(
                            ManagerError::Ipc {
                                probe: t.clone(),
                                source: e,
                            }
                            .to_string(),
                        );
                    }
                }
            }
            let should_run = want.get(&t).copied().flatten().unwrap_or(now_running);
            let r = match (should_run, now_running) {
                (true, false) => self.restart_locked(&t),
                (true, true) if restart => self.restart_locked(&t),
                (false, _) => {
                    // Also clears a supervisor that gave up.
                    self.stop_locked(&t);
                    Ok(())
                }
                (true, true) => Ok(()),
            };
            if let Err(e) = r {
                errors.push(e.to_string());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ControlError::Failed(errors.join("; ")))
        }
    }
}

impl Drop for ProbeManager {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The members of `group` that this build has or the config names (`None`
/// when `group` is not a legacy feature name, or none of its probes
/// exists here).
fn group_members(slots: &[Slot], group: &str) -> Option<Vec<&'static str>> {
    let (_, members) = LEGACY_FEATURES.iter().find(|(g, _)| *g == group)?;
    let present: Vec<&'static str> = members
        .iter()
        .copied()
        .filter(|m| slots.iter().any(|s| s.name() == *m))
        .collect();
    (!present.is_empty()).then_some(present)
}

/// The members of `group` (those in this build: `targets`) that its
/// `cmd.probe` list selects. An entry is one of the members by name, or a
/// 2.x sub-probe name of the feature ([`LEGACY_SUB_PROBES`]), which selects
/// the members that collect its data (none, for one without an equivalent
/// here). Anything else is refused, naming what is accepted.
fn group_selection(
    group: &str,
    targets: &[String],
    sel: &[String],
) -> Result<Vec<String>, ControlError> {
    let mut picked: Vec<String> = Vec::new();
    for p in sel {
        let members: Vec<&str> = if targets.contains(p) {
            vec![p.as_str()]
        } else if let Some((_, _, m)) = LEGACY_SUB_PROBES
            .iter()
            .find(|(g, sub, _)| *g == group && sub == p)
        {
            m.to_vec()
        } else {
            let legacy: Vec<&str> = LEGACY_SUB_PROBES
                .iter()
                .filter(|(g, _, _)| *g == group)
                .map(|(_, sub, _)| *sub)
                .collect();
            return Err(ControlError::Invalid {
                key: "cmd.probe".into(),
                message: format!(
                    "`{p}` is not a probe of `{group}`: expected one of its probes in this build ({}) \
                     or a 2.x sub-probe name ({})",
                    targets.join(", "),
                    legacy.join(", ")
                ),
            });
        };
        for m in members {
            if targets.iter().any(|t| t == m) && !picked.iter().any(|x| x == m) {
                picked.push(m.to_owned());
            }
        }
    }
    Ok(picked)
}

/// `s`'s entry with `change` applied: (entry, whether the probe must restart
/// for it, whether a 2.x probe's message changed). `group`: the change came
/// through a group name (its `cmd.probe` selects members, not sub-probes).
fn changed_entry(
    s: &Slot,
    change: &ProbeChange,
    group: bool,
) -> Result<(ProbeEntry, bool, bool), ControlError> {
    let mut entry = s.entry.clone();
    let mut restart = false;
    let mut ipc_changed = false;
    match &mut entry {
        ProbeEntry::Native(p) => {
            if let Some(params) = &change.params {
                let mut param = p.param.clone();
                for (k, v) in params {
                    let Some((_, letter)) = PARAM_LETTERS.iter().find(|(n, _)| n == k) else {
                        let known: Vec<&str> = PARAM_LETTERS.iter().map(|(n, _)| *n).collect();
                        return Err(ControlError::Invalid {
                            key: format!("params.{k}"),
                            message: format!(
                                "probe `{}` ({}) cannot use it; its params are {}",
                                p.name,
                                s.entry.kind(),
                                known.join(", ")
                            ),
                        });
                    };
                    let Some(n) = v.as_u64() else {
                        return Err(ControlError::Invalid {
                            key: format!("params.{k}"),
                            message: format!("expected a whole number, got {v}"),
                        });
                    };
                    param = crate::probe_api::params::set_option(&param, *letter, &n.to_string())
                        .map_err(|e| ControlError::Invalid {
                        key: format!("params.{k}"),
                        message: e.to_string(),
                    })?;
                }
                restart = param != p.param;
                p.param = param;
            }
            if !group {
                if let Some(sub) = &change.probe {
                    if !sub.is_empty() {
                        return Err(ControlError::Invalid {
                            key: "cmd.probe".into(),
                            message: format!("probe `{}` has no sub-probes", p.name),
                        });
                    }
                }
            }
            if let Some(sn) = &change.snoopers {
                // A C probe gets its snoopers at start: it restarts.
                if s.entry.kind() == "c" && p.snoopers.as_ref() != Some(sn) {
                    restart = true;
                }
                p.snoopers = Some(sn.clone());
            }
        }
        ProbeEntry::Extend(p) => match &mut p.ipc {
            Some(ipc) => {
                let mut new = ipc.clone();
                if let Some(params) = &change.params {
                    new.params = merge_legacy_params(&ipc.params, params)?;
                }
                if !group {
                    if let Some(sub) = &change.probe {
                        new.probe.clone_from(sub);
                        new.range_flags().map_err(|message| ControlError::Invalid {
                            key: "cmd.probe".into(),
                            message,
                        })?;
                    }
                }
                if let Some(sn) = &change.snoopers {
                    new.snoopers = sn.clone();
                }
                ipc_changed = new != *ipc;
                *ipc = new;
            }
            None => {
                if change.params.as_ref().is_some_and(|m| !m.is_empty()) {
                    return Err(ControlError::Invalid {
                        key: "params".into(),
                        message: format!(
                            "extend probe `{}` takes its parameters on its command line: edit its \
                             `param` in the config file and reload",
                            p.name
                        ),
                    });
                }
                if !group && change.probe.as_ref().is_some_and(|v| !v.is_empty()) {
                    return Err(ControlError::Invalid {
                        key: "cmd.probe".into(),
                        message: format!(
                            "extend probe `{}` has no sub-probes (only a 2.x probe binary, with \
                             [extend_probes.ipc], has)",
                            p.name
                        ),
                    });
                }
                if let Some(sn) = &change.snoopers {
                    // It gets its snoopers at start: it restarts.
                    restart |= p.snoopers.as_ref() != Some(sn);
                    p.snoopers = Some(sn.clone());
                }
            }
        },
    }
    Ok((entry, restart, ipc_changed))
}

macro_rules! legacy_param_fields {
    ($m:ident) => {
        $m!(
            sample_period,
            report_period,
            latency_thr,
            offline_thr,
            drops_thr,
            res_lower_thr,
            res_upper_thr,
            report_event,
            metrics_type,
            env,
            l7_protocol,
            support_ssl,
            multi_instance,
            native_stack,
            cluster_ip_backend,
            pyroscope_server,
            svg_period,
            perf_sample_period,
            output_dir,
            flame_dir,
            dev_name,
            continuous_sampling,
            elf_path,
            kafka_port,
            cadvisor_port,
            profiling_chan,
            min_exec_dur,
            min_aggr_dur
        )
    };
}

/// `base` with the 2.x params of a request put over it; a key or value the
/// 2.x params do not take is an error naming it.
fn merge_legacy_params(
    base: &LegacyParams,
    changes: &BTreeMap<String, serde_json::Value>,
) -> Result<LegacyParams, ControlError> {
    let mut out = base.clone();
    for (k, v) in changes {
        let one = serde_json::Value::Object([(k.clone(), v.clone())].into_iter().collect());
        let delta: LegacyParams =
            serde_json::from_value(one).map_err(|e| ControlError::Invalid {
                key: format!("params.{k}"),
                message: e.to_string(),
            })?;
        macro_rules! take {
            ($($f:ident),*) => { $( if delta.$f.is_some() { out.$f = delta.$f.clone(); } )* };
        }
        legacy_param_fields!(take);
    }
    Ok(out)
}

/// The 2.x params a 2.x probe binary was given, by their REST names (name
/// lists such as `metrics_type` as their bits).
fn legacy_params_view(p: &LegacyParams) -> BTreeMap<String, serde_json::Value> {
    let mut m = BTreeMap::new();
    macro_rules! put {
        ($($f:ident),*) => { $( if let Some(v) = &p.$f { m.insert(stringify!($f).to_owned(), serde_json::json!(v)); } )* };
    }
    legacy_param_fields!(put);
    m
}

/// The params of a `[[probes]]` entry by their 2.x REST names.
fn native_params_view(param: &str) -> BTreeMap<String, serde_json::Value> {
    let p = Params::parse(param).unwrap_or_default();
    [
        ("report_period", p.period),
        ("sample_period", p.sample_period),
        ("latency_thr", p.latency_thr),
        ("offline_thr", p.offline_thr),
        ("drops_thr", p.drops_count_thr),
        ("res_lower_thr", u32::from(p.res_percent_lower)),
        ("res_upper_thr", u32::from(p.res_percent_upper)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), serde_json::json!(v)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::DesiredState;
    use crate::probe::supervisor::StartPolicy;
    use crate::probe_api::{Payload, Probe, ProbeContext, ProbeError};
    use std::sync::mpsc::{sync_channel, Receiver};
    use std::time::{Duration, Instant};

    /// A fake probe: sends `|<name>|<period>|` every 5 ms until shutdown.
    struct Ticker(String);

    impl Probe for Ticker {
        fn name(&self) -> &str {
            &self.0
        }
        fn tables(&self) -> &[&str] {
            &[]
        }
        fn run(self: Box<Self>, cx: ProbeContext) -> Result<(), ProbeError> {
            let line = format!("|{}|{}|", self.0, cx.params.period);
            while !cx.shutdown.wait(Duration::from_millis(5)) {
                cx.emitter.line(line.clone().into_bytes());
            }
            Ok(())
        }
    }

    /// Starts of each probe, by name.
    type Starts = Arc<Mutex<BTreeMap<String, u32>>>;

    fn planner(starts: &Starts) -> Planner {
        let starts = Arc::clone(starts);
        Arc::new(move |e: &ProbeEntry| {
            let name = e.name().to_owned();
            let param = match e {
                ProbeEntry::Native(p) => p.param.clone(),
                ProbeEntry::Extend(p) => p.param.clone(),
            };
            let params = Params::parse(&param).map_err(|err| StartError::Probe {
                file: "t.toml".into(),
                key: format!("probes[{name}].param"),
                msg: crate::daemon::PlanError::Param(err),
            })?;
            let starts = Arc::clone(&starts);
            let n = name.clone();
            Ok((
                name,
                params,
                StartPolicy::Always,
                Box::new(move || {
                    *lock(&starts).entry(n.clone()).or_default() += 1;
                    Ok(Box::new(Ticker(n.clone())) as Box<dyn Probe>)
                }) as supervisor::Factory,
            ))
        })
    }

    fn native(name: &str, param: &str) -> ProbeEntry {
        let mut e = ProbeEntry::unconfigured(name);
        if let ProbeEntry::Native(p) = &mut e {
            p.param = param.to_owned();
            p.switch = Switch::On;
        }
        e
    }

    fn extend(name: &str) -> ProbeEntry {
        ProbeEntry::Extend(ExtendProbeConf {
            name: name.to_owned(),
            command: "true".into(),
            param: String::new(),
            switch: Switch::On,
            start_check: None,
            check_type: crate::config::CheckType::Count,
            ipc: None,
            snoopers: None,
        })
    }

    const RESTART: Restart = Restart {
        max: 3,
        backoff: Duration::from_millis(5),
        stable_after: Duration::from_secs(60),
    };

    struct Fixture {
        mgr: ProbeManager,
        rx: Receiver<Emitted>,
        starts: Starts,
        planner: Planner,
        cleared: Arc<Mutex<Vec<String>>>,
    }

    fn fixture(entries: Vec<ProbeEntry>) -> Fixture {
        let starts = Starts::default();
        let planner = planner(&starts);
        let plan = entries
            .iter()
            .filter(|e| e.switch() != Switch::Off)
            .map(|e| planner(e).expect("plan"))
            .collect();
        let (tx, rx) = sync_channel(100_000);
        let mgr = ProbeManager::start(
            entries,
            plan,
            Arc::clone(&planner),
            tx,
            Stats::new(),
            RESTART,
            Shutdown::new(),
        );
        let cleared = Arc::new(Mutex::new(Vec::new()));
        let c = Arc::clone(&cleared);
        mgr.on_probe_stopped(Arc::new(move |t: &[String]| {
            lock(&c).extend(t.iter().cloned());
        }));
        Fixture {
            mgr,
            rx,
            starts,
            planner,
            cleared,
        }
    }

    /// Lines received per probe over `window`, with the last line of each.
    fn received(rx: &Receiver<Emitted>, window: Duration) -> BTreeMap<String, (u32, String)> {
        let mut out: BTreeMap<String, (u32, String)> = BTreeMap::new();
        let t0 = Instant::now();
        while t0.elapsed() < window {
            while let Ok(e) = rx.try_recv() {
                if let Payload::Line(l) = e.payload {
                    let v = out.entry(e.probe.to_string()).or_default();
                    v.0 += 1;
                    v.1 = String::from_utf8_lossy(&l).into_owned();
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        out
    }

    fn state(mgr: &ProbeManager, name: &str) -> ViewState {
        mgr.get(name).expect("a resource").state
    }

    fn wait_state(mgr: &ProbeManager, name: &str, want: ViewState) {
        let t0 = Instant::now();
        while state(mgr, name) != want {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{name} never {want:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts of `name` so far, once they reach `at_least` (or 5 s pass).
    fn starts_at_least(f: &Fixture, name: &str, at_least: u32) -> u32 {
        let t0 = Instant::now();
        loop {
            let n = lock(&f.starts).get(name).copied().unwrap_or(0);
            if n >= at_least || t0.elapsed() > Duration::from_secs(5) {
                return n;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn starts(f: &Fixture, name: &str) -> u32 {
        starts_at_least(f, name, 1)
    }

    fn change() -> ProbeChange {
        ProbeChange::default()
    }

    #[test]
    fn one_probe_stops_and_starts_while_the_others_keep_sending() {
        let f = fixture(vec![native("a", "-t 5"), native("b", ""), extend("c")]);
        for p in ["a", "b", "c"] {
            wait_state(&f.mgr, p, ViewState::Running);
        }
        let before = received(&f.rx, Duration::from_millis(100));
        assert!(
            ["a", "b", "c"].iter().all(|p| before.contains_key(*p)),
            "{before:?}"
        );

        let stop = ProbeChange {
            state: Some(DesiredState::Stopped),
            ..change()
        };
        f.mgr.apply("b", &stop).expect("stop b");
        assert_eq!(state(&f.mgr, "b"), ViewState::Stopped);
        assert_eq!(*lock(&f.cleared), ["b"], "b's table is cleared");
        let _ = received(&f.rx, Duration::from_millis(20));
        let during = received(&f.rx, Duration::from_millis(150));
        assert!(!during.contains_key("b"), "b still sends: {during:?}");
        assert!(
            during.get("a").is_some_and(|v| v.0 > 5) && during.get("c").is_some_and(|v| v.0 > 5),
            "the others stopped sending: {during:?}"
        );

        // Stopping it again changes nothing.
        f.mgr.apply("b", &stop).expect("stop b again");
        let start = ProbeChange {
            state: Some(DesiredState::Running),
            ..change()
        };
        f.mgr.apply("b", &start).expect("start b");
        wait_state(&f.mgr, "b", ViewState::Running);
        let after = received(&f.rx, Duration::from_millis(100));
        assert!(after.contains_key("b"), "{after:?}");
        assert_eq!(
            (
                starts(&f, "a"),
                starts_at_least(&f, "b", 2),
                starts(&f, "c")
            ),
            (1, 2, 1),
            "only b was started again"
        );
        assert!(matches!(
            f.mgr.apply("nope", &start),
            Err(ControlError::UnknownProbe(n)) if n == "nope"
        ));
    }

    #[test]
    fn a_param_change_restarts_that_probe_alone_with_the_new_param() {
        let f = fixture(vec![native("a", "-t 5 -T 100"), native("b", "-t 5")]);
        wait_state(&f.mgr, "a", ViewState::Running);
        wait_state(&f.mgr, "b", ViewState::Running);
        let params: BTreeMap<String, serde_json::Value> = [
            ("report_period".to_owned(), serde_json::json!(30)),
            ("res_upper_thr".to_owned(), serde_json::json!(80)),
        ]
        .into_iter()
        .collect();
        f.mgr
            .apply(
                "a",
                &ProbeChange {
                    params: Some(params),
                    ..change()
                },
            )
            .expect("params");
        let _ = received(&f.rx, Duration::from_millis(30));
        let got = received(&f.rx, Duration::from_millis(100));
        assert_eq!(
            got.get("a").map(|v| v.1.as_str()),
            Some("|a|30|"),
            "{got:?}"
        );
        assert_eq!(got.get("b").map(|v| v.1.as_str()), Some("|b|5|"), "{got:?}");
        assert_eq!((starts_at_least(&f, "a", 2), starts(&f, "b")), (2, 1));
        let view = f.mgr.get("a").expect("a");
        assert_eq!(view.params["report_period"], serde_json::json!(30));
        assert_eq!(view.params["res_upper_thr"], serde_json::json!(80));
        assert_eq!(view.params["latency_thr"], serde_json::json!(100), "kept");
        assert!(lock(&f.cleared).is_empty(), "a restart keeps the series");

        // The same params again: no restart.
        let same: BTreeMap<String, serde_json::Value> =
            [("report_period".to_owned(), serde_json::json!(30))]
                .into_iter()
                .collect();
        f.mgr
            .apply(
                "a",
                &ProbeChange {
                    params: Some(same),
                    ..change()
                },
            )
            .expect("same params");
        assert_eq!(starts(&f, "a"), 2);
    }

    #[test]
    fn a_snoopers_change_restarts_a_c_or_extend_probe_alone() {
        // `a` is not a native probe of this build: a C probe.
        let f = fixture(vec![
            native("a", ""),
            native("system_meminfo", ""),
            extend("c"),
        ]);
        for p in ["a", "system_meminfo", "c"] {
            wait_state(&f.mgr, p, ViewState::Running);
        }
        let sn = Snoopers {
            proc_id: vec![1],
            ..Snoopers::default()
        };
        let ch = ProbeChange {
            snoopers: Some(sn),
            ..change()
        };
        f.mgr.apply("c", &ch).expect("snoopers of c");
        assert_eq!(starts_at_least(&f, "c", 2), 2, "c restarted");
        assert_eq!((starts(&f, "a"), starts(&f, "system_meminfo")), (1, 1));
        f.mgr.apply("a", &ch).expect("snoopers of a");
        f.mgr
            .apply("system_meminfo", &ch)
            .expect("snoopers of meminfo");
        assert_eq!(starts_at_least(&f, "a", 2), 2, "a restarted");
        // The same snoopers again, and a native probe: no restart.
        f.mgr.apply("c", &ch).expect("same snoopers");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            (
                starts(&f, "a"),
                starts(&f, "system_meminfo"),
                starts(&f, "c")
            ),
            (2, 1, 2)
        );
        assert_eq!(f.mgr.get("c").expect("c").snoopers.proc_id, [1]);
        // The entry the next start plans from holds them.
        let slots = lock(&f.mgr.slots);
        let c = slots.iter().find(|s| s.name() == "c").expect("c");
        assert!(
            matches!(&c.entry, ProbeEntry::Extend(p) if p.snoopers.as_ref().is_some_and(|s| s.proc_id == [1]))
        );
    }

    #[test]
    fn params_a_probe_cannot_use_are_refused_and_change_nothing() {
        let f = fixture(vec![native("a", "-t 5"), extend("c")]);
        wait_state(&f.mgr, "a", ViewState::Running);
        let with = |k: &str, v: serde_json::Value| ProbeChange {
            params: Some([(k.to_owned(), v)].into_iter().collect()),
            state: Some(DesiredState::Stopped),
            ..change()
        };
        match f
            .mgr
            .apply("a", &with("l7_protocol", serde_json::json!(["http"])))
        {
            Err(ControlError::Invalid { key, message }) => {
                assert_eq!(key, "params.l7_protocol");
                assert!(message.contains("report_period"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match f
            .mgr
            .apply("c", &with("report_period", serde_json::json!(10)))
        {
            Err(ControlError::Invalid { key, message }) => {
                assert_eq!(key, "params");
                assert!(message.contains("`param`"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match f
            .mgr
            .apply("a", &with("report_period", serde_json::json!("x")))
        {
            Err(ControlError::Invalid { key, .. }) => assert_eq!(key, "params.report_period"),
            other => panic!("{other:?}"),
        }
        // The refused changes stopped nothing.
        assert_eq!(state(&f.mgr, "a"), ViewState::Running);
        assert_eq!(state(&f.mgr, "c"), ViewState::Running);
        assert_eq!(starts(&f, "a"), 1);
    }

    #[test]
    fn a_group_applies_to_its_probes_and_cmd_probe_selects_them() {
        let f = fixture(vec![
            native("system_meminfo", ""),
            native("system_vmstat", ""),
            native("other", ""),
        ]);
        wait_state(&f.mgr, "system_vmstat", ViewState::Running);
        let list = f.mgr.list();
        assert_eq!(list[0].name, "baseinfo", "groups come first");
        assert_eq!(list[0].kind, "group");
        let names: Vec<&str> = list.iter().map(|v| v.name.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n);
        assert!(
            pos("system_meminfo") < pos("system_vmstat") && pos("system_vmstat") < pos("other")
        );
        assert_eq!(f.mgr.list(), list, "a stable order");

        f.mgr
            .apply(
                "baseinfo",
                &ProbeChange {
                    probe: Some(vec!["system_meminfo".into()]),
                    ..change()
                },
            )
            .expect("select");
        assert_eq!(state(&f.mgr, "system_vmstat"), ViewState::Stopped);
        assert_eq!(state(&f.mgr, "system_meminfo"), ViewState::Running);
        assert_eq!(
            state(&f.mgr, "other"),
            ViewState::Running,
            "not in the group"
        );
        let g = f.mgr.get("baseinfo").expect("group");
        assert_eq!(g.state, ViewState::Running);
        assert_eq!(g.cmd.probe, ["system_meminfo"]);

        f.mgr
            .apply(
                "baseinfo",
                &ProbeChange {
                    state: Some(DesiredState::Stopped),
                    ..change()
                },
            )
            .expect("stop the group");
        assert_eq!(
            f.mgr.get("baseinfo").expect("group").state,
            ViewState::Stopped
        );
        assert_eq!(state(&f.mgr, "other"), ViewState::Running);
        // Started again: the selection holds.
        f.mgr
            .apply(
                "baseinfo",
                &ProbeChange {
                    state: Some(DesiredState::Running),
                    ..change()
                },
            )
            .expect("start the group");
        assert_eq!(state(&f.mgr, "system_meminfo"), ViewState::Running);
        assert_eq!(state(&f.mgr, "system_vmstat"), ViewState::Stopped);

        match f.mgr.apply(
            "baseinfo",
            &ProbeChange {
                probe: Some(vec!["tcp_link".into()]),
                ..change()
            },
        ) {
            Err(ControlError::Invalid { key, .. }) => assert_eq!(key, "cmd.probe"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reload_restarts_only_the_changed_entries() {
        let f = fixture(vec![
            native("a", "-t 5"),
            native("b", "-t 5"),
            native("c", ""),
        ]);
        for p in ["a", "b", "c"] {
            wait_state(&f.mgr, p, ViewState::Running);
        }
        // A request stopped `c`: an unchanged entry keeps it stopped.
        f.mgr
            .apply(
                "c",
                &ProbeChange {
                    state: Some(DesiredState::Stopped),
                    ..change()
                },
            )
            .expect("stop c");
        lock(&f.cleared).clear();
        // `a` has sent records (so its table is known).
        let t0 = Instant::now();
        while !received(&f.rx, Duration::from_millis(20)).contains_key("a") {
            assert!(t0.elapsed() < Duration::from_secs(10), "a never sent");
        }
        let new = vec![
            native("a", "-t 5"),
            native("b", "-t 9"),
            native("c", ""),
            extend("d"),
        ];
        let plan = new.iter().map(|e| (f.planner)(e).expect("plan")).collect();
        let r = f.mgr.reconcile(new, plan, Arc::clone(&f.planner), RESTART);
        assert_eq!(r.restarted, ["b"]);
        assert_eq!(r.started, ["d"]);
        assert_eq!(r.kept, ["a", "c"]);
        assert!(r.stopped.is_empty() && r.failed.is_empty(), "{r:?}");
        assert_eq!(state(&f.mgr, "c"), ViewState::Stopped);
        assert_eq!((starts(&f, "a"), starts_at_least(&f, "b", 2)), (1, 2));
        wait_state(&f.mgr, "d", ViewState::Running);

        // `a` leaves the config: it stops, its series go.
        let new = vec![native("b", "-t 9"), native("c", ""), extend("d")];
        let r = f
            .mgr
            .reconcile(new, Vec::new(), Arc::clone(&f.planner), RESTART);
        assert_eq!(r.stopped, ["a"]);
        assert!(
            f.mgr.get("a").is_none(),
            "not in the build, not in the config"
        );
        assert_eq!(*lock(&f.cleared), ["a"]);
        let got = received(&f.rx, Duration::from_millis(100));
        assert_eq!(got.get("b").map(|v| v.1.as_str()), Some("|b|9|"), "{got:?}");
        assert_eq!(starts(&f, "d"), 1);
        f.mgr.stop_all();
        assert_eq!(f.mgr.running(), 0);
    }

    #[test]
    fn a_probe_of_the_build_outside_the_config_is_listed_stopped_and_can_start() {
        let f = fixture(vec![native("a", "")]);
        let Some(name) = build_probes().first().copied() else {
            return;
        };
        assert_eq!(state(&f.mgr, name), ViewState::Stopped);
        f.mgr
            .apply(
                name,
                &ProbeChange {
                    state: Some(DesiredState::Running),
                    ..change()
                },
            )
            .expect("start");
        wait_state(&f.mgr, name, ViewState::Running);
        assert_eq!(starts(&f, name), 1);
    }

    #[test]
    fn legacy_params_merge_over_the_config_and_render_back() {
        let base = LegacyParams {
            report_period: Some(10),
            latency_thr: Some(30),
            ..LegacyParams::default()
        };
        let m = merge_legacy_params(
            &base,
            &[
                ("report_period".to_owned(), serde_json::json!(20)),
                ("metrics_type".to_owned(), serde_json::json!(["raw"])),
            ]
            .into_iter()
            .collect(),
        )
        .expect("valid");
        assert_eq!(
            (m.report_period, m.latency_thr, m.metrics_type),
            (Some(20), Some(30), Some(1))
        );
        let v = legacy_params_view(&m);
        assert_eq!(v["report_period"], serde_json::json!(20));
        assert_eq!(v.len(), 3, "{v:?}");
        match merge_legacy_params(
            &base,
            &[("no_such".to_owned(), serde_json::json!(1))]
                .into_iter()
                .collect(),
        ) {
            Err(ControlError::Invalid { key, .. }) => assert_eq!(key, "params.no_such"),
            other => panic!("{other:?}"),
        }
    }
}
