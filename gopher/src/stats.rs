//! Self-metrics: what the agent counts about itself (`gala_gopher_self_*`).
//!
//! Every loss in the data path is counted here, in one place (a
//! [`DropCounter`] per stage and component), and only read by the Prometheus
//! exporter. Counters are atomics so the hot path never takes a lock; the
//! maps are only locked to register a probe or a counter. Outputs that fail
//! count their losses through an [`Outage`], which also logs the failure
//! once and the recovery once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::record::Reject;

/// Lifecycle state of a supervised probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProbeState {
    /// Configured but not started yet.
    Starting = 0,
    /// Running.
    Running = 1,
    /// Exited and waiting to be restarted.
    Restarting = 2,
    /// Gave up after too many restarts.
    Failed = 3,
    /// Stopped by shutdown.
    Stopped = 4,
    /// `switch = "auto"` and its start check said no (checked again later).
    Waiting = 5,
}

impl ProbeState {
    /// Every state, for rendering one series per state.
    pub const ALL: [ProbeState; 6] = [
        ProbeState::Starting,
        ProbeState::Running,
        ProbeState::Restarting,
        ProbeState::Failed,
        ProbeState::Stopped,
        ProbeState::Waiting,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeState::Starting => "starting",
            ProbeState::Running => "running",
            ProbeState::Restarting => "restarting",
            ProbeState::Failed => "failed",
            ProbeState::Stopped => "stopped",
            ProbeState::Waiting => "waiting",
        }
    }

    fn from_u8(v: u8) -> Self {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(ProbeState::Failed)
    }
}

/// Counters of one probe.
#[derive(Debug, Default)]
pub struct ProbeStats {
    /// Records accepted into the store or the event channel.
    pub accepted: AtomicU64,
    rejected: [AtomicU64; Reject::ALL.len()],
    /// Records dropped because the ingress queue was full (shared with the
    /// probe's emitters).
    pub emit_dropped: Arc<AtomicU64>,
    /// Restarts by the supervisor.
    pub restarts: AtomicU64,
    state: AtomicU8,
}

impl ProbeStats {
    /// Counts one rejected line or record.
    pub fn reject(&self, why: Reject) {
        let i = Reject::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Rejections so far for a reason.
    pub fn rejected(&self, why: Reject) -> u64 {
        Reject::ALL
            .iter()
            .position(|r| *r == why)
            .map_or(0, |i| self.rejected[i].load(Ordering::Relaxed))
    }

    /// Sets the probe's state.
    pub fn set_state(&self, s: ProbeState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// The probe's state.
    pub fn state(&self) -> ProbeState {
        ProbeState::from_u8(self.state.load(Ordering::Relaxed))
    }
}

/// Why an emitted record did not reach a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropStage {
    /// The queue from the probes to the ingress was full (component: the
    /// probe).
    IngressQueueFull,
    /// The store's per-table cap was reached.
    StoreFull,
    /// An exporter's queue was full.
    ExportQueueFull,
    /// An exporter failed to write (I/O error, broker refusal).
    ExportError,
    /// An exporter's bounded backlog (Kafka: records waiting for the broker)
    /// was full: the oldest waiting record was dropped.
    ExportBacklogFull,
    /// Still undelivered when the agent stopped.
    Shutdown,
}

impl DropStage {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropStage::IngressQueueFull => "ingress_queue_full",
            DropStage::StoreFull => "store_full",
            DropStage::ExportQueueFull => "export_queue_full",
            DropStage::ExportError => "export_error",
            DropStage::ExportBacklogFull => "export_backlog_full",
            DropStage::Shutdown => "shutdown",
        }
    }
}

/// One drop counter, registered in [`Stats`] under a stage and a component
/// (a probe, a table or an output); clones count on the same counter.
#[derive(Debug, Clone, Default)]
pub struct DropCounter(Arc<AtomicU64>);

impl DropCounter {
    /// Counts `n` lost records.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Records lost so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The failures of one output (a log file, a Kafka producer, a sink's input
/// queue): the first failure of an outage is logged once (ERROR: records
/// are being lost or held back), the return to health once (INFO, with how
/// many records were lost meanwhile), and every lost record is counted on
/// its [`DropCounter`]. Safe to share between threads.
#[derive(Debug)]
pub struct Outage {
    /// The output, as logs name it (`kafka`, `metric logs`).
    output: String,
    /// Where it writes (a broker list, a path, a queue).
    target: String,
    /// What happens to records while it fails, for the operator.
    meanwhile: String,
    failing: AtomicBool,
    /// Lost since the last outage began.
    lost: AtomicU64,
}

impl Outage {
    /// The outage state of `output` writing to `target`; `meanwhile` says
    /// what becomes of records while it fails.
    pub fn new(
        output: impl Into<String>,
        target: impl Into<String>,
        meanwhile: impl Into<String>,
    ) -> Self {
        Self {
            output: output.into(),
            target: target.into(),
            meanwhile: meanwhile.into(),
            failing: AtomicBool::new(false),
            lost: AtomicU64::new(0),
        }
    }

    /// The output fails (`what`, because of `detail`): logged only when
    /// this begins an outage. Returns whether it did.
    pub fn fail(&self, what: &str, detail: &dyn fmt::Display) -> bool {
        if self.failing.swap(true, Ordering::Relaxed) {
            return false;
        }
        self.lost.store(0, Ordering::Relaxed);
        tracing::error!(
            output = %self.target,
            error = %detail,
            "{}: {what}; {}",
            self.output,
            self.meanwhile
        );
        true
    }

    /// `n` records are lost: counted on `counter`, and in this outage's
    /// tally (reported at recovery).
    pub fn lose(&self, counter: &DropCounter, n: u64) {
        counter.add(n);
        self.lost.fetch_add(n, Ordering::Relaxed);
    }

    /// The output works again (`how`): logged only when it ends an outage.
    /// Returns whether it did.
    pub fn recover(&self, how: &str) -> bool {
        if !self.failing.load(Ordering::Relaxed) || !self.failing.swap(false, Ordering::Relaxed) {
            return false;
        }
        let lost = self.lost.swap(0, Ordering::Relaxed);
        tracing::info!(
            output = %self.target,
            lost,
            "{}: {how}; {lost} records were lost while it failed (gala_gopher_self_records_dropped_total)",
            self.output
        );
        true
    }

    /// Whether an outage is going on.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }
}

/// Counters of one Kafka channel (`metric`, `event` or `meta`). What is lost
/// is counted on the drop counters (`kafka_<channel>`), not here.
#[derive(Debug, Default)]
pub struct KafkaChannelStats {
    /// Messages the broker acknowledged.
    pub delivered: AtomicU64,
    /// Messages whose delivery failed for good (each is also a drop).
    pub delivery_errors: AtomicU64,
    /// Messages waiting: in the exporter's backlog or in flight (a gauge).
    pub queued: AtomicU64,
    /// Bytes (payload and key) of the messages waiting (a gauge).
    pub queued_bytes: AtomicU64,
}

/// All self-metrics of the agent.
#[derive(Debug, Default)]
pub struct Stats {
    probes: Mutex<BTreeMap<String, Arc<ProbeStats>>>,
    drops: Mutex<BTreeMap<(&'static str, String), DropCounter>>,
    kafka: Mutex<BTreeMap<String, Arc<KafkaChannelStats>>>,
    /// Errors the Kafka client reported about brokers (unreachable,
    /// authentication, TLS), whether or not records were lost.
    pub kafka_client_errors: AtomicU64,
    /// Scrapes served.
    pub scrapes: AtomicU64,
    /// Total time spent rendering scrapes, in nanoseconds.
    pub scrape_nanos: AtomicU64,
    /// Series removed because they expired.
    pub expired: AtomicU64,
    /// Events not passed on because the same one was sent within `event.timeout`.
    pub events_suppressed: AtomicU64,
}

impl Stats {
    /// New, empty stats.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counters of a probe, registering it on first use (its emitters'
    /// drop counter is the stage `ingress_queue_full` of the probe).
    pub fn probe(&self, name: &str) -> Arc<ProbeStats> {
        let mut map = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = map.get(name) {
            return Arc::clone(p);
        }
        let dropped = self.drop_counter(DropStage::IngressQueueFull, name);
        let p = Arc::new(ProbeStats {
            emit_dropped: dropped.0,
            ..ProbeStats::default()
        });
        map.insert(name.to_owned(), Arc::clone(&p));
        p
    }

    /// Snapshot of every probe's counters, sorted by name.
    pub fn probes(&self) -> Vec<(String, Arc<ProbeStats>)> {
        let map = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// A drop counter for a stage and a component (table or exporter name).
    pub fn drop_counter(&self, stage: DropStage, component: &str) -> DropCounter {
        let mut map = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((stage.as_str(), component.to_owned()))
            .or_default()
            .clone()
    }

    /// The counters of a Kafka channel, registering it on first use.
    pub fn kafka_channel(&self, channel: &str) -> Arc<KafkaChannelStats> {
        let mut map = self.kafka.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(channel.to_owned()).or_default())
    }

    /// Every Kafka channel's counters, sorted by channel (empty when no
    /// channel goes to Kafka).
    pub fn kafka_channels(&self) -> Vec<(String, Arc<KafkaChannelStats>)> {
        let map = self.kafka.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// Snapshot of every drop counter: (stage, component, count), sorted
    /// by stage label, then component.
    pub fn drops(&self) -> Vec<(&'static str, String, u64)> {
        let map = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|((s, c), v)| (*s, c.clone(), v.get()))
            .collect()
    }

    /// Records dropped, summed over every stage and component.
    pub fn total_dropped(&self) -> u64 {
        let map = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        map.values().map(DropCounter::get).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_counters_are_shared_by_name() {
        let s = Stats::new();
        let a = s.probe("x");
        a.reject(Reject::FieldCount);
        a.reject(Reject::FieldCount);
        s.probe("x").reject(Reject::UnknownTable);
        assert_eq!(a.rejected(Reject::FieldCount), 2);
        assert_eq!(a.rejected(Reject::UnknownTable), 1);
        assert_eq!(a.rejected(Reject::TooLong), 0);
        a.set_state(ProbeState::Failed);
        assert_eq!(s.probes()[0].1.state(), ProbeState::Failed);
    }

    #[test]
    fn drop_counters_are_keyed_by_stage_and_component() {
        let s = Stats::new();
        s.drop_counter(DropStage::StoreFull, "t").add(3);
        s.drop_counter(DropStage::StoreFull, "t").add(1);
        assert_eq!(s.drops(), vec![("store_full", "t".to_string(), 4)]);
        assert_eq!(s.total_dropped(), 4);
    }

    #[test]
    fn a_probe_s_emit_drops_are_a_drop_counter() {
        let s = Stats::new();
        let p = s.probe("p");
        p.emit_dropped.fetch_add(2, Ordering::Relaxed);
        assert!(Arc::ptr_eq(&p, &s.probe("p")));
        assert_eq!(s.drops(), vec![("ingress_queue_full", "p".to_string(), 2)]);
        assert_eq!(s.total_dropped(), 2);
    }

    #[test]
    fn an_outage_is_reported_once_each_way_and_counts_every_loss() {
        let s = Stats::new();
        let c = s.drop_counter(DropStage::ExportError, "x");
        let o = Outage::new("x", "/nowhere", "records are dropped");
        assert!(!o.recover("fine"), "no outage to end");
        assert!(o.fail("cannot write", &"EIO"));
        o.lose(&c, 1);
        assert!(!o.fail("cannot write", &"EIO"), "logged once");
        o.lose(&c, 2);
        assert!(o.is_failing());
        assert!(o.recover("writing again"));
        assert!(!o.recover("writing again"), "logged once");
        assert_eq!(c.get(), 3);
        assert_eq!(s.total_dropped(), 3);
        // A new outage starts a new tally; the counter keeps counting.
        assert!(o.fail("cannot write", &"ENOSPC"));
        o.lose(&c, 1);
        assert_eq!(o.lost.load(Ordering::Relaxed), 1);
        assert_eq!(c.get(), 4);
    }
}
