//! The contract between probes and the daemon.
//!
//! A probe emits records through an [`Emitter`], a bounded queue towards the
//! daemon's ingress. The emitter never blocks: when the queue is full the
//! record is dropped and counted on the probe's drop counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use crate::params::Params;

/// What a probe hands to the daemon.
#[derive(Debug)]
pub enum Payload {
    /// One line of the legacy protocol `|table|v1|...|vn|`, without the
    /// trailing newline, as printed by extend and C probes.
    Line(Vec<u8>),
    /// A structured record from a native probe. `values` map to the table's
    /// meta fields by position; an empty string is a null value.
    Record {
        /// Table name, as declared in a `.meta` file.
        table: &'static str,
        /// Values in meta field order.
        values: Vec<String>,
    },
}

/// A payload tagged with the probe that emitted it.
#[derive(Debug)]
pub struct Emitted {
    /// Configured name of the emitting probe.
    pub probe: Arc<str>,
    /// The record or line.
    pub payload: Payload,
}

/// Non-blocking, bounded sender of records from one probe to the daemon.
#[derive(Debug, Clone)]
pub struct Emitter {
    probe: Arc<str>,
    tx: SyncSender<Emitted>,
    dropped: Arc<AtomicU64>,
    tables: Option<Arc<TablesSeen>>,
}

/// The tables a probe has sent records of (so that the daemon can remove
/// its series when the probe is stopped).
#[derive(Debug, Default)]
pub struct TablesSeen(Mutex<Vec<Box<str>>>);

impl TablesSeen {
    fn note(&self, table: &[u8]) {
        let mut v = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !v.iter().any(|t| t.as_bytes() == table) {
            v.push(String::from_utf8_lossy(table).into());
        }
    }

    /// The tables seen so far, in the order first seen.
    pub fn tables(&self) -> Vec<String> {
        let v = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        v.iter().map(|t| t.to_string()).collect()
    }
}

/// The table a payload is for: a record's, or the first field of a line.
fn table_of(payload: &Payload) -> Option<&[u8]> {
    match payload {
        Payload::Record { table, .. } => Some(table.as_bytes()),
        Payload::Line(l) => {
            let rest = l.strip_prefix(b"|")?;
            let end = rest.iter().position(|b| *b == b'|')?;
            (end > 0).then(|| &rest[..end])
        }
    }
}

impl Emitter {
    /// Creates an emitter for `probe` that sends on `tx` and counts records
    /// it could not queue on `dropped`.
    pub fn new(probe: Arc<str>, tx: SyncSender<Emitted>, dropped: Arc<AtomicU64>) -> Self {
        Self {
            probe,
            tx,
            dropped,
            tables: None,
        }
    }

    /// Notes in `seen` the table of every payload it queues.
    #[must_use]
    pub fn tracking(mut self, seen: Arc<TablesSeen>) -> Self {
        self.tables = Some(seen);
        self
    }

    /// Name of the probe this emitter belongs to.
    pub fn probe(&self) -> &str {
        &self.probe
    }

    /// Queues one payload. Returns `false` when it was dropped because the
    /// queue is full or the daemon is shutting down; the drop is counted.
    pub fn send(&self, payload: Payload) -> bool {
        if let Some(seen) = &self.tables {
            if let Some(t) = table_of(&payload) {
                seen.note(t);
            }
        }
        let item = Emitted {
            probe: Arc::clone(&self.probe),
            payload,
        };
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues a protocol line (see [`Payload::Line`]).
    pub fn line(&self, line: Vec<u8>) -> bool {
        self.send(Payload::Line(line))
    }

    /// Queues a structured record (see [`Payload::Record`]).
    pub fn record(&self, table: &'static str, values: Vec<String>) -> bool {
        self.send(Payload::Record { table, values })
    }

    /// Records dropped so far by this probe's emitters.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A shutdown signal shared by the daemon and its probes.
///
/// Signals form a tree: [`Shutdown::child`] makes a signal that fires with its
/// parent but can also fire alone (a probe run stopping its helpers).
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<Signal>);

#[derive(Debug, Default)]
struct Signal {
    state: Mutex<SignalState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct SignalState {
    fired: bool,
    children: Vec<Weak<Signal>>,
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, SignalState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fire(&self) {
        let children = {
            let mut st = self.lock();
            st.fired = true;
            std::mem::take(&mut st.children)
        };
        self.cv.notify_all();
        for c in children.iter().filter_map(Weak::upgrade) {
            c.fire();
        }
    }
}

impl Shutdown {
    /// A signal that has not fired yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A signal that fires when this one does, and can also fire alone.
    pub fn child(&self) -> Self {
        let child = Arc::new(Signal::default());
        let mut st = self.0.lock();
        if st.fired {
            child.lock().fired = true;
        } else {
            st.children.retain(|w| w.strong_count() > 0);
            st.children.push(Arc::downgrade(&child));
        }
        Self(child)
    }

    /// Fires the signal (and its children) and wakes every waiter.
    pub fn trigger(&self) {
        self.0.fire();
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.0.lock().fired
    }

    /// Sleeps for `timeout` or until the signal fires. Returns `true` when it
    /// has fired, so a probe loop reads `while !cx.shutdown.wait(period) {..}`.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.0.lock();
        let (guard, _) = self
            .0
            .cv
            .wait_timeout_while(guard, timeout, |st| !st.fired)
            .unwrap_or_else(PoisonError::into_inner);
        guard.fired
    }

    /// Blocks until the signal fires.
    pub fn wait_forever(&self) {
        while !self.wait(Duration::from_secs(3600)) {}
    }
}

/// Everything a running probe gets from the daemon.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    /// Where records go.
    pub emitter: Emitter,
    /// The probe's parameters (legacy `param` string, parsed).
    pub params: Params,
    /// Fires when the probe must stop.
    pub shutdown: Shutdown,
}

/// Why a probe could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Reading a file the probe depends on failed.
    #[error("{path}: {source}")]
    Io {
        /// The file that could not be read.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A kernel file had content the probe could not parse.
    #[error("{path}:{line}: {msg}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What was expected.
        msg: String,
    },
    /// The probe cannot run on this machine (missing kernel feature,
    /// capability or file); the message names what is missing.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The probe's `run` panicked.
    #[error("panicked: {message}")]
    Panicked {
        /// The probe.
        probe: String,
        /// The panic's message.
        message: String,
    },
    /// A probe process could not be started.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The probe.
        probe: String,
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A probe process exited before it was asked to stop.
    #[error("`{command}` exited: {status}")]
    Exited {
        /// The probe.
        probe: String,
        /// The command line.
        command: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// A probe process printed nothing for its hang timeout and was killed.
    #[error("`{command}` hung: no output for {secs} s, killed")]
    Hung {
        /// The probe.
        probe: String,
        /// The command line.
        command: String,
        /// The hang timeout, seconds.
        secs: u64,
    },
    /// Waiting for a probe process failed.
    #[error("`{command}`: wait failed: {source}")]
    Wait {
        /// The probe.
        probe: String,
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A step before the start failed (e.g. queuing a legacy probe's
    /// message); it may work on a restart.
    #[error("{source}")]
    Setup {
        /// The probe.
        probe: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A probe: something that runs until shutdown and emits records.
///
/// `run` is called on a thread of its own and may block; it must return
/// soon after `cx.shutdown` fires. Returning `Ok` before shutdown counts as
/// an exit and the supervisor restarts the probe.
pub trait Probe: Send {
    /// Configured name, used in logs and self-metrics.
    fn name(&self) -> &str;
    /// Tables this probe may emit; the daemon checks they have meta.
    fn tables(&self) -> &[&str];
    /// Runs the probe until shutdown.
    fn run(self: Box<Self>, cx: ProbeContext) -> Result<(), ProbeError>;
}

/// A registered native probe: its name, tables and constructor.
#[derive(Debug)]
pub struct ProbeDef {
    /// Name used in `[[probes]] name = ...`.
    pub name: &'static str,
    /// Tables it emits, each with a `.meta` file in `meta/`.
    pub tables: &'static [&'static str],
    /// Builds a fresh instance (called again on every restart).
    pub build: fn() -> Box<dyn Probe>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    #[test]
    fn emitter_counts_drops_when_full() {
        let (tx, rx) = sync_channel(1);
        let dropped = Arc::new(AtomicU64::new(0));
        let em = Emitter::new("p".into(), tx, Arc::clone(&dropped));
        assert!(em.line(b"|t|1|".to_vec()));
        assert!(!em.line(b"|t|2|".to_vec()));
        assert_eq!(em.dropped(), 1);
        drop(rx);
        assert!(!em.record("t", vec!["1".into()]));
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_tracking_emitter_notes_each_table_once() {
        let (tx, _rx) = sync_channel(10);
        let seen = Arc::new(TablesSeen::default());
        let em =
            Emitter::new("p".into(), tx, Arc::new(AtomicU64::new(0))).tracking(Arc::clone(&seen));
        em.line(b"|a|1|".to_vec());
        em.line(b"|a|2|".to_vec());
        em.record("b", vec!["1".into()]);
        em.line(b"not a record".to_vec());
        em.line(b"||x|".to_vec());
        assert_eq!(seen.tables(), ["a", "b"]);
    }

    #[test]
    fn shutdown_wakes_waiters() {
        let s = Shutdown::new();
        assert!(!s.wait(Duration::from_millis(1)));
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.wait(Duration::from_secs(30)));
        s.trigger();
        assert!(t.join().expect("waiter thread"));
        assert!(s.is_triggered());
    }

    #[test]
    fn child_fires_with_parent_or_alone() {
        let parent = Shutdown::new();
        let a = parent.child();
        let b = parent.child();
        a.trigger();
        assert!(a.is_triggered() && !parent.is_triggered() && !b.is_triggered());
        parent.trigger();
        assert!(b.wait(Duration::from_secs(1)));
        assert!(
            parent.child().is_triggered(),
            "a child of a fired signal starts fired"
        );
    }
}
