//! Self-metrics: what the agent counts about itself (`gala_gopher_self_*`).
//!
//! Every loss in the data path is counted here, in one place, and rendered
//! by the Prometheus exporter. Counters are atomics so the hot path never
//! takes a lock; the per-probe map is only locked to register a probe.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
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

/// Why an accepted record did not reach a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropStage {
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
            DropStage::StoreFull => "store_full",
            DropStage::ExportQueueFull => "export_queue_full",
            DropStage::ExportError => "export_error",
            DropStage::ExportBacklogFull => "export_backlog_full",
            DropStage::Shutdown => "shutdown",
        }
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
    drops: Mutex<BTreeMap<(&'static str, String), Arc<AtomicU64>>>,
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

    /// The counters of a probe, registering it on first use.
    pub fn probe(&self, name: &str) -> Arc<ProbeStats> {
        let mut map = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(name.to_owned()).or_default())
    }

    /// Snapshot of every probe's counters, sorted by name.
    pub fn probes(&self) -> Vec<(String, Arc<ProbeStats>)> {
        let map = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// A drop counter for a stage and a component (table or exporter name).
    pub fn drop_counter(&self, stage: DropStage, component: &str) -> Arc<AtomicU64> {
        let mut map = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            map.entry((stage.as_str(), component.to_owned()))
                .or_default(),
        )
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

    /// Snapshot of every drop counter: (stage, component, count).
    pub fn drops(&self) -> Vec<(&'static str, String, u64)> {
        let map = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|((s, c), v)| (*s, c.clone(), v.load(Ordering::Relaxed)))
            .collect()
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
        s.drop_counter(DropStage::StoreFull, "t")
            .fetch_add(3, Ordering::Relaxed);
        s.drop_counter(DropStage::StoreFull, "t")
            .fetch_add(1, Ordering::Relaxed);
        assert_eq!(s.drops(), vec![("store_full", "t".to_string(), 4)]);
    }
}
