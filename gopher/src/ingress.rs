//! Ingress: decode and validate what probes emit, then store and fan out.
//!
//! One thread drains the probes' bounded queue. For each payload it decodes
//! the line, validates it against the table's meta, counts a rejection per
//! probe and reason, upserts the store, and offers the accepted record to the
//! sinks (log files, Kafka: [`crate::export::sink`]) through their own
//! bounded queues, never waiting on them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::export::sink::{Flow, FlowKind, SinkInput};
use crate::meta::{MetaRegistry, Table};
use crate::probe_api::{Emitted, Emitter, Payload};
use crate::record::{self, Reject, EVENT_FIELDS, EVENT_TABLE};
use crate::stats::{ProbeStats, Stats};
use crate::store::{TableStore, Upsert};

/// An accepted metric record, as pushed to exporters.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its table.
    pub table: Arc<Table>,
    /// Values in meta order, `""` for null.
    pub values: Vec<String>,
    /// Wall-clock time of acceptance, ms since the epoch.
    pub timestamp_ms: u64,
}

/// An accepted record of the reserved `event` table (docs/compat.md §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The 12 event values: entity_name, entity_id, metric, pid, comm, ip,
    /// container_id, pod_id, dev, SeverityText, SeverityNumber, body.
    pub values: Vec<String>,
    /// Wall-clock time of acceptance, ms since the epoch.
    pub timestamp_ms: u64,
}

/// A way into the ingress for a component that is not a probe, such as a
/// sink that watches the records and produces events of its own: what it
/// sends is handled like a probe's records (validated, events
/// de-duplicated, counted under its name). Unlike a probe's emitter it does
/// not keep the ingress running: once [`IngressHandle::close`] is called
/// (the daemon does at stop, after the probes), sends are dropped and
/// counted, so the ingress can drain and end, and with it the sinks.
#[derive(Debug, Clone)]
pub struct IngressHandle {
    emitter: Arc<Mutex<Option<Emitter>>>,
    dropped: Arc<AtomicU64>,
}

impl IngressHandle {
    /// A handle sending on the ingress queue `tx` as `name`; what cannot be
    /// queued is counted in `stats` (stage `ingress_queue_full` of `name`).
    pub fn new(name: &str, tx: SyncSender<Emitted>, stats: &Stats) -> Self {
        let dropped = Arc::clone(&stats.probe(name).emit_dropped);
        Self {
            emitter: Arc::new(Mutex::new(Some(Emitter::new(
                Arc::from(name),
                tx,
                Arc::clone(&dropped),
            )))),
            dropped,
        }
    }

    /// Sends an event (the 12 values of the reserved `event` table).
    /// Returns `false` when it was dropped (queue full, or closed).
    pub fn event(&self, values: Vec<String>) -> bool {
        self.record(EVENT_TABLE, values)
    }

    /// Sends a record of `table`. Returns `false` when it was dropped.
    pub fn record(&self, table: &'static str, values: Vec<String>) -> bool {
        let guard = self.emitter.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(e) => e.record(table, values),
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Stops sending (every clone): the ingress no longer waits for it.
    pub fn close(&self) {
        self.emitter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// The ingress stage.
#[derive(Debug)]
pub struct Ingress {
    registry: Arc<MetaRegistry>,
    store: Arc<TableStore>,
    stats: Arc<Stats>,
    /// The sinks that take metric records.
    records: Vec<SinkInput>,
    /// The sinks that take events.
    events: Vec<SinkInput>,
    probes: HashMap<Arc<str>, Arc<ProbeStats>>,
    key_buf: String,
    /// The table of the last record and its registry index: probes print
    /// runs of one table, which then cost no lookup by name.
    last_table: Option<(Box<str>, usize)>,
    /// Reused capacity for the borrowed values of one line.
    scratch: Vec<&'static str>,
    /// `event.timeout`: an event of the same entity and metric is passed on
    /// at most once per this period.
    event_timeout: Duration,
    /// When each (entity_name, entity_id, metric) was last passed on.
    event_seen: HashMap<String, Instant>,
}

/// Most items handled under one reading of the clocks by [`Ingress::run`]
/// (about 50 µs of work).
pub const BATCH: usize = 256;

/// Most distinct events remembered for de-duplication.
const EVENT_SEEN_MAX: usize = 16 * 1024;

/// Empties a vector of borrowed strings and gives its allocation back with a
/// `'static` element type, so it can be kept between lines. (Collecting an
/// emptied `vec::IntoIter` into a vector of the same layout reuses the
/// allocation; no element survives, so no borrow is extended.)
fn recycle(mut v: Vec<&str>) -> Vec<&'static str> {
    v.clear();
    v.into_iter().map(|_| "").collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn count(ps: &ProbeStats, res: Result<(), Reject>) {
    match res {
        Ok(()) => {
            ps.accepted.fetch_add(1, Ordering::Relaxed);
        }
        Err(why) => ps.reject(why),
    }
}

impl Ingress {
    /// An ingress writing into `store`.
    pub fn new(registry: Arc<MetaRegistry>, store: Arc<TableStore>, stats: Arc<Stats>) -> Self {
        Self {
            registry,
            store,
            stats,
            records: Vec::new(),
            events: Vec::new(),
            probes: HashMap::new(),
            key_buf: String::with_capacity(128),
            last_table: None,
            scratch: Vec::with_capacity(64),
            event_timeout: Duration::ZERO,
            event_seen: HashMap::new(),
        }
    }

    /// Passes an event of the same entity and metric on at most once per
    /// `timeout` (`event.timeout`); zero passes every event.
    pub fn set_event_timeout(&mut self, timeout: Duration) {
        self.event_timeout = timeout;
    }

    /// Offers the metric records and the events to the sink of `input`,
    /// as far as it takes them.
    pub fn subscribe(&mut self, input: SinkInput) {
        if input.takes(FlowKind::Event) {
            self.events.push(input.clone());
        }
        if input.takes(FlowKind::Metric) {
            self.records.push(input);
        }
    }

    /// Drains `rx` until every sender is gone. The clocks are read once per
    /// batch: what is queued when a batch starts (at most [`BATCH`] items)
    /// is stamped with the batch's time.
    pub fn run(mut self, rx: Receiver<Emitted>) {
        while let Ok(first) = rx.recv() {
            let (now, ts_ms) = (Instant::now(), now_ms());
            self.process(first, now, ts_ms);
            for item in rx.try_iter().take(BATCH - 1) {
                self.process(item, now, ts_ms);
            }
        }
        tracing::debug!("ingress stopped: every probe queue is closed");
    }

    fn probe_stats(&mut self, probe: &Arc<str>) -> Arc<ProbeStats> {
        if let Some(s) = self.probes.get(probe) {
            return Arc::clone(s);
        }
        let s = self.stats.probe(probe);
        self.probes.insert(Arc::clone(probe), Arc::clone(&s));
        s
    }

    /// Handles one emitted payload.
    pub fn process(&mut self, item: Emitted, now: Instant, ts_ms: u64) {
        let ps = self.probe_stats(&item.probe);
        let res = match &item.payload {
            Payload::Line(line) => {
                let res = self.line(line, now, ts_ms);
                if res == Err(Reject::NotARecord) {
                    tracing::debug!(probe = %item.probe, line = %String::from_utf8_lossy(line), "probe output that is not a record");
                }
                res
            }
            Payload::Record { table, values } => self.accept(table, values, now, ts_ms),
        };
        count(&ps, res);
    }

    /// Ingests one protocol line for `ps` (the benchmarked hot path).
    pub fn ingest_line(&mut self, ps: &ProbeStats, line: &[u8], now: Instant, ts_ms: u64) {
        let res = self.line(line, now, ts_ms);
        count(ps, res);
    }

    fn line(&mut self, line: &[u8], now: Instant, ts_ms: u64) -> Result<(), Reject> {
        let mut values: Vec<&str> = std::mem::take(&mut self.scratch);
        let res = match record::split_line_joined(line, &mut values) {
            Ok((table, joined)) => self.accept_joined(table, &values, Some(joined), now, ts_ms),
            Err(e) => Err(e),
        };
        self.scratch = recycle(values);
        res
    }

    fn accept<S: AsRef<str>>(
        &mut self,
        table: &str,
        values: &[S],
        now: Instant,
        ts_ms: u64,
    ) -> Result<(), Reject> {
        self.accept_joined(table, values, None, now, ts_ms)
    }

    /// The registry index of `table`, `None` when unknown.
    fn table_index(&mut self, table: &str) -> Option<usize> {
        if let Some((name, idx)) = &self.last_table {
            if **name == *table {
                return Some(*idx);
            }
        }
        let idx = self.registry.index_of(table)?;
        self.last_table = Some((table.into(), idx));
        Some(idx)
    }

    /// Accepts a record; `joined`, when given, is the text its values were
    /// cut from (see [`TableStore::upsert_joined`]).
    fn accept_joined<S: AsRef<str>>(
        &mut self,
        table: &str,
        values: &[S],
        joined: Option<&str>,
        now: Instant,
        ts_ms: u64,
    ) -> Result<(), Reject> {
        if table == EVENT_TABLE {
            return self.accept_event(values, now, ts_ms);
        }
        let idx = self.table_index(table).ok_or(Reject::UnknownTable)?;
        let meta = self.registry.by_index(idx).ok_or(Reject::UnknownTable)?;
        record::validate(meta, values)?;
        if self
            .store
            .upsert_joined(idx, values, joined, now, ts_ms, &mut self.key_buf)
            == Upsert::DroppedFull
        {
            // Counted by the store per table; the record still reaches the
            // push exporters, which are not bounded by the store's cap.
        }
        if !self.records.is_empty() {
            let rec = Arc::new(Accepted {
                table: Arc::clone(meta),
                values: values.iter().map(|v| v.as_ref().to_owned()).collect(),
                timestamp_ms: ts_ms,
            });
            for s in &self.records {
                s.offer(Flow::Metric(Arc::clone(&rec)));
            }
        }
        Ok(())
    }

    fn accept_event<S: AsRef<str>>(
        &mut self,
        values: &[S],
        now: Instant,
        ts_ms: u64,
    ) -> Result<(), Reject> {
        if values.len() != EVENT_FIELDS {
            return Err(Reject::FieldCount);
        }
        if values[0].as_ref().is_empty() {
            return Err(Reject::EmptyKey);
        }
        if !self.event_timeout.is_zero() {
            let key = format!(
                "{}|{}|{}",
                values[0].as_ref(),
                values[1].as_ref(),
                values[2].as_ref()
            );
            if let Some(last) = self.event_seen.get(&key) {
                if now.saturating_duration_since(*last) < self.event_timeout {
                    self.stats.events_suppressed.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
            if self.event_seen.len() >= EVENT_SEEN_MAX {
                let timeout = self.event_timeout;
                self.event_seen
                    .retain(|_, t| now.saturating_duration_since(*t) < timeout);
                if self.event_seen.len() >= EVENT_SEEN_MAX {
                    self.event_seen.clear();
                }
            }
            self.event_seen.insert(key, now);
        }
        let ev = Arc::new(Event {
            values: values.iter().map(|v| v.as_ref().to_owned()).collect(),
            timestamp_ms: ts_ms,
        });
        for s in &self.events {
            s.offer(Flow::Event(Arc::clone(&ev)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::sink::Takes;
    use crate::meta::{Field, FieldType};
    use std::time::Duration;

    /// A sink input taking `kind`, and its queue.
    fn input(kind: FlowKind, stats: &Stats, cap: usize) -> (SinkInput, Receiver<Flow>) {
        SinkInput::new("test", Takes::nothing().and(kind, "test"), cap, stats)
    }

    fn metrics(rx: &Receiver<Flow>) -> Vec<Arc<Accepted>> {
        rx.try_iter()
            .map(|f| match f {
                Flow::Metric(r) => r,
                other => panic!("not a metric record: {other:?}"),
            })
            .collect()
    }

    fn events(rx: &Receiver<Flow>) -> Vec<Arc<Event>> {
        rx.try_iter()
            .map(|f| match f {
                Flow::Event(e) => e,
                other => panic!("not an event: {other:?}"),
            })
            .collect()
    }

    fn setup() -> (Ingress, Arc<TableStore>, Arc<Stats>) {
        let f = |name: &str, ty| Field {
            name: name.into(),
            description: String::new(),
            ty,
        };
        let t = Table::new(
            "t",
            "t",
            vec![f("k", FieldType::Key), f("v", FieldType::Gauge)],
        );
        let reg = Arc::new(MetaRegistry::from_checked(vec![t]));
        let store = Arc::new(TableStore::new(&reg, Duration::from_secs(60), 100));
        let stats = Stats::new();
        (
            Ingress::new(reg, Arc::clone(&store), Arc::clone(&stats)),
            store,
            stats,
        )
    }

    fn line(probe: &str, l: &[u8]) -> Emitted {
        Emitted {
            probe: probe.into(),
            payload: Payload::Line(l.to_vec()),
        }
    }

    #[test]
    fn accepts_rejects_and_counts_per_probe() {
        let (mut ing, store, stats) = setup();
        let (tx, rx) = input(FlowKind::Metric, &stats, 10);
        ing.subscribe(tx);
        let now = Instant::now();
        for l in [
            &b"|t|a|1|"[..],
            b"|t|a|",
            b"|nope|a|1|",
            b"junk",
            b"|t||1|",
            b"|t|b|x|",
        ] {
            ing.process(line("p", l), now, 7);
        }
        let p = stats.probe("p");
        assert_eq!(p.accepted.load(Ordering::Relaxed), 1);
        assert_eq!(p.rejected(Reject::FieldCount), 1);
        assert_eq!(p.rejected(Reject::UnknownTable), 1);
        assert_eq!(p.rejected(Reject::NotARecord), 1);
        assert_eq!(p.rejected(Reject::EmptyKey), 1);
        assert_eq!(p.rejected(Reject::InvalidNumber), 1);
        assert_eq!(store.lock(0).expect("t").len(), 1);
        let got = metrics(&rx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].values, ["a", "1"]);
        assert_eq!(got[0].timestamp_ms, 7);
    }

    #[test]
    fn events_go_to_the_event_channel_only() {
        let (mut ing, store, stats) = setup();
        let (tx, rx) = input(FlowKind::Event, &stats, 10);
        ing.subscribe(tx);
        let now = Instant::now();
        ing.process(
            line(
                "p",
                b"|event|proc|42|cpu|42|bash|1.2.3.4|||eth0|WARN|13|too hot|",
            ),
            now,
            1,
        );
        ing.process(line("p", b"|event|proc|42|"), now, 1);
        let got = events(&rx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].values[11], "too hot");
        assert_eq!(stats.probe("p").rejected(Reject::FieldCount), 1);
        assert!(store.lock(0).expect("t").is_empty());
    }

    #[test]
    fn repeated_events_are_suppressed_within_the_timeout() {
        let (mut ing, _store, stats) = setup();
        ing.set_event_timeout(Duration::from_secs(600));
        let (tx, rx) = input(FlowKind::Event, &stats, 10);
        ing.subscribe(tx);
        let t0 = Instant::now();
        let ev = b"|event|proc|42|cpu|42|bash|||||WARN|13|hot|";
        ing.process(line("p", ev), t0, 1);
        ing.process(line("p", ev), t0 + Duration::from_secs(10), 2);
        ing.process(
            line("p", b"|event|proc|43|cpu|43|bash|||||WARN|13|hot|"),
            t0,
            3,
        );
        ing.process(line("p", ev), t0 + Duration::from_secs(601), 4);
        let got: Vec<u64> = events(&rx).iter().map(|e| e.timestamp_ms).collect();
        assert_eq!(got, [1, 3, 4]);
        assert_eq!(stats.events_suppressed.load(Ordering::Relaxed), 1);
        assert_eq!(stats.probe("p").accepted.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_full_sink_queue_counts_drops_without_blocking() {
        let (mut ing, _store, stats) = setup();
        let (tx, rx) = input(FlowKind::Metric, &stats, 1);
        ing.subscribe(tx);
        let now = Instant::now();
        for _ in 0..5 {
            ing.process(line("p", b"|t|a|1|"), now, 1);
        }
        assert_eq!(
            stats.drops(),
            [
                ("export_queue_full", "test".to_string(), 4),
                ("ingress_queue_full", "p".to_string(), 0)
            ]
        );
        // Room again: it takes records again (and the overflow is over).
        assert_eq!(metrics(&rx).len(), 1);
        ing.process(line("p", b"|t|a|1|"), now, 1);
        assert_eq!(metrics(&rx).len(), 1);
        assert_eq!(stats.total_dropped(), 4);
    }

    #[test]
    fn a_sink_gets_only_what_it_takes() {
        let (mut ing, _store, stats) = setup();
        let both = Takes::nothing()
            .and(FlowKind::Metric, "m")
            .and(FlowKind::Event, "e");
        let (tx, rx) = SinkInput::new("both", both, 10, &stats);
        ing.subscribe(tx);
        let (meta_only, meta_rx) = input(FlowKind::Metadata, &stats, 10);
        ing.subscribe(meta_only);
        let now = Instant::now();
        ing.process(line("p", b"|t|a|1|"), now, 1);
        ing.process(
            line("p", b"|event|proc|42|cpu|42|bash|||||WARN|13|hot|"),
            now,
            2,
        );
        let kinds: Vec<FlowKind> = rx.try_iter().map(|f| f.kind()).collect();
        assert_eq!(kinds, [FlowKind::Metric, FlowKind::Event]);
        assert!(meta_rx.try_recv().is_err());
    }

    #[test]
    fn an_ingress_handle_feeds_events_and_lets_the_ingress_end_once_closed() {
        let (mut ing, _store, stats) = setup();
        let (etx, erx) = input(FlowKind::Event, &stats, 10);
        ing.subscribe(etx);
        let (tx, rx) = std::sync::mpsc::sync_channel(10);
        let handle = IngressHandle::new("rules", tx, &stats);
        let ingress = std::thread::spawn(move || ing.run(rx));
        let ev = |body: &str| {
            [
                "proc", "42", "cpu", "42", "bash", "", "", "", "", "WARN", "13", body,
            ]
            .map(String::from)
            .to_vec()
        };
        assert!(handle.clone().event(ev("too hot")));
        assert!(
            handle.event(vec!["short".into()]),
            "queued; rejected by the ingress"
        );
        handle.close();
        assert!(!handle.event(ev("late")), "closed: dropped");
        ingress
            .join()
            .expect("the ingress ends once the handle is closed");
        let got = events(&erx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].values[11], "too hot");
        let p = stats.probe("rules");
        assert_eq!(p.accepted.load(Ordering::Relaxed), 1);
        assert_eq!(p.rejected(Reject::FieldCount), 1);
        assert_eq!(p.emit_dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn ingest_line_hot_path() {
        let (mut ing, store, stats) = setup();
        let ps = stats.probe("bench");
        let now = Instant::now();
        ing.ingest_line(&ps, b"|t|a|1|", now, 1);
        ing.ingest_line(&ps, b"|t|a|2|", now, 1);
        ing.ingest_line(&ps, b"|t|", now, 1);
        assert_eq!(ps.accepted.load(Ordering::Relaxed), 2);
        assert_eq!(ps.rejected(Reject::FieldCount), 1);
        assert_eq!(store.lock(0).expect("t").len(), 1);
    }
}
