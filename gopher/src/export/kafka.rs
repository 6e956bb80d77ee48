//! Kafka export (`out_channel = "kafka"`): metric records, events and table
//! metadata as the JSON objects of docs/compat.md §6, one message each, to the topic
//! of their channel.
//!
//! One producer thread per daemon, a [`Sink`] taking the flows of the
//! channels that go to Kafka. It drains its bounded input queue (which the
//! ingress and the metadata ticker never wait on), formats each record
//! once, and hands it to librdkafka, which holds at most a window of
//! messages ([`Bounds`]). What does not fit waits in the exporter's own
//! backlog, oldest first; past the bound (`queue_buffering_max_messages`,
//! `queue_buffering_max_kbytes`, counting the backlog and the window) the
//! oldest are dropped and counted. librdkafka never expires a message
//! (`message.timeout.ms = 0`), so during an outage nothing is lost silently:
//! records wait, and when the broker is back delivery resumes by itself.
//!
//! Every loss is counted on `gala_gopher_self_records_dropped_total
//! {component="kafka_<channel>"}` by stage: `export_queue_full` (the
//! input queue), `export_backlog_full` (the bound), `export_error`
//! (delivery failed for good) and `shutdown` (undelivered at stop). Broker
//! trouble is an [`Outage`]: logged once when it begins, and the return to
//! health once.
//!
//! A message's key is `<machine_id>|<table>|<key values..>`, so one series
//! always goes to one partition (events: `<machine_id>|event|<entity_name>|
//! <entity_id>`; metadata: `<machine_id>|<table>`).
//!
//! librdkafka itself lives in libgopher_kafka.so (the `kafka/` crate),
//! which [`dl`] loads only when a producer is made: the agent binary links
//! neither librdkafka nor OpenSSL, and an agent without a Kafka channel does
//! not map them. A Kafka channel without that library is a startup error
//! naming the paths tried.
//!
//! Compiled only with the cargo feature `kafka` (default on): a build
//! without it (tail.conf `FEATURES="kafka"`) has no Kafka exporter (and
//! needs no libgopher_kafka.so), and its config validation refuses
//! `out_channel = "kafka"` ([`crate::config::trim`]).
#![cfg(feature = "kafka")]

mod backlog;
pub mod client;
pub mod dl;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use self::dl::{code, Events, Producer};

use self::backlog::{Backlog, CHANNELS};
pub use self::client::Bounds;
use super::partition;
use crate::config::{self, Config, OutChannel};
use crate::export::json;
use crate::export::sink::{Flow, FlowKind, Metadata, Sink, Takes};
use crate::identity::Identity;
use crate::ingress::{Accepted, Event};
use crate::meta::{FieldType, MetaRegistry};
use crate::probe_api::Shutdown;
use crate::stats::{DropCounter, DropStage, KafkaChannelStats, Outage, Stats};

/// Records taken from each input per turn of the loop.
const BATCH: usize = 1024;
/// How long an idle producer sleeps on its input before it looks again.
const IDLE: Duration = Duration::from_millis(200);
/// How long a busy producer waits for delivery reports when no input came.
const BUSY_POLL: Duration = Duration::from_millis(10);
/// How often the queue gauges are refreshed.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// How long the producer tries to deliver what waits when the agent stops.
pub const FLUSH_GRACE: Duration = Duration::from_secs(3);

/// The three channels, in index order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `[metric]`: one message per accepted record.
    Metric = 0,
    /// `[event]`: one message per event.
    Event = 1,
    /// `[meta]`: one message per table, at start and every 10 minutes.
    Meta = 2,
}

impl From<FlowKind> for Channel {
    fn from(k: FlowKind) -> Self {
        match k {
            FlowKind::Metric => Channel::Metric,
            FlowKind::Event => Channel::Event,
            FlowKind::Metadata => Channel::Meta,
        }
    }
}

impl Channel {
    /// Every channel, by index.
    pub const ALL: [Channel; CHANNELS] = [Channel::Metric, Channel::Event, Channel::Meta];

    /// The config section's name.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Metric => "metric",
            Channel::Event => "event",
            Channel::Meta => "meta",
        }
    }

    /// The component label of its drop counters: `kafka_<channel>`.
    pub fn component(self) -> &'static str {
        match self {
            Channel::Metric => "kafka_metric",
            Channel::Event => "kafka_event",
            Channel::Meta => "kafka_meta",
        }
    }
}

/// The topic of each channel that goes to Kafka.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topics(pub [Option<String>; CHANNELS]);

impl Topics {
    /// The channels of `cfg` whose `out_channel` is kafka, with their topics.
    pub fn from_config(cfg: &Config) -> Self {
        let pick =
            |out: OutChannel, topic: &str| (out == OutChannel::Kafka).then(|| topic.to_owned());
        Self([
            pick(cfg.metric.out_channel, &cfg.metric.kafka_topic),
            pick(cfg.event.out_channel, &cfg.event.kafka_topic),
            pick(cfg.meta.out_channel, &cfg.meta.kafka_topic),
        ])
    }

    /// Whether no channel goes to Kafka.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    fn get(&self, c: Channel) -> Option<&str> {
        self.0[c as usize].as_deref()
    }
}

/// Why the Kafka exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// libgopher_kafka.so is missing or cannot be loaded.
    #[error("{0}")]
    Library(#[from] dl::LoadError),
    /// librdkafka refused the configuration.
    #[error("cannot create the producer for kafka_broker = \"{broker}\" (check [kafka] and [kafka.options]): {reason}")]
    Create {
        /// The configured brokers.
        broker: String,
        /// librdkafka's message, naming the property.
        reason: String,
    },
}

/// Counters per channel, shared with the delivery callback.
struct ChannelCounters {
    stats: Arc<KafkaChannelStats>,
    backlog_full: DropCounter,
    lost_error: DropCounter,
    lost_shutdown: DropCounter,
    in_flight: AtomicU64,
    in_flight_bytes: AtomicU64,
}

/// The producer's context: delivery reports, client errors and logs.
/// Callbacks run on the producer thread, inside `poll`.
struct Ctx {
    broker: String,
    bounds: Bounds,
    channels: [ChannelCounters; CHANNELS],
    in_flight: AtomicU64,
    in_flight_bytes: AtomicU64,
    client_errors: Arc<Stats>,
    /// Broker trouble: logged once when it begins and once when it ends.
    outage: Outage,
    /// The last transport error, named when all brokers are down.
    last_transport: Mutex<String>,
}

/// A message's delivery opaque: its channel and size, without allocating.
fn opaque(channel: usize, bytes: usize) -> usize {
    (bytes << 2) | channel
}

impl Ctx {
    fn in_flight(&self) -> (u64, u64) {
        (
            self.in_flight.load(Ordering::Relaxed),
            self.in_flight_bytes.load(Ordering::Relaxed),
        )
    }

    fn sent(&self, ch: usize, bytes: u64) {
        let c = &self.channels[ch];
        c.in_flight.fetch_add(1, Ordering::Relaxed);
        c.in_flight_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.in_flight_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A message is lost for good: counted, and logged once per outage.
    fn failed(&self, ch: usize, e: &dyn std::fmt::Display) {
        let c = &self.channels[ch];
        c.stats.delivery_errors.fetch_add(1, Ordering::Relaxed);
        self.outage.lose(&c.lost_error, 1);
        self.outage
            .fail("delivery failed; such records are dropped and counted", e);
    }
}

/// librdkafka's syslog levels 0 (emergency) to 4 (warning).
const LOG_WARNING: i32 = 4;

impl Events for Ctx {
    fn log(&self, level: i32, fac: &str, msg: &str) {
        // Connection failures come as error events too, and are logged once
        // per burst there; here they would repeat at every reconnect.
        let quiet = matches!(fac, "FAIL" | "ERROR" | "BROKERFAIL");
        if level <= LOG_WARNING && !quiet {
            tracing::warn!(facility = fac, "kafka: {msg}");
        } else {
            tracing::debug!(facility = fac, "kafka: {msg}");
        }
    }

    fn error(&self, code: i32, error: &str, reason: &str) {
        self.client_errors
            .kafka_client_errors
            .fetch_add(1, Ordering::Relaxed);
        match code {
            code::TRANSPORT => {
                tracing::debug!(error = %reason, "kafka: broker connection failed");
                let mut last = self
                    .last_transport
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                reason.clone_into(&mut last);
            }
            code::ALL_BROKERS_DOWN => {
                let last = self
                    .last_transport
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let detail = if last.is_empty() { reason } else { &last };
                self.outage.fail("cannot reach any broker", &detail);
            }
            _ => {
                self.outage.fail(
                    "the Kafka client reports an error",
                    &format_args!("{error}: {reason}"),
                );
            }
        }
    }

    fn delivery(&self, op: usize, code: i32, error: &str) {
        let ch = (op & 3).min(CHANNELS - 1);
        let bytes = (op >> 2) as u64;
        let c = &self.channels[ch];
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        c.in_flight_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.in_flight_bytes.fetch_sub(bytes, Ordering::Relaxed);
        match code {
            dl::abi::OK => {
                c.stats.delivered.fetch_add(1, Ordering::Relaxed);
                if self.outage.is_failing() {
                    self.outage.recover("the broker acknowledges records again");
                }
            }
            code::PURGE_QUEUE | code::PURGE_INFLIGHT => {
                self.outage.lose(&c.lost_shutdown, 1);
            }
            _ => self.failed(ch, &error),
        }
    }
}

/// The input of the producer thread.
#[derive(Debug)]
enum Input {
    /// The sink's queue.
    Flows(Receiver<Flow>),
    /// Metric records fed directly (benchmarks).
    Records(Receiver<Arc<Accepted>>),
}

impl Input {
    fn try_recv(&self) -> Result<Flow, TryRecvError> {
        match self {
            Input::Flows(rx) => rx.try_recv(),
            Input::Records(rx) => rx.try_recv().map(Flow::Metric),
        }
    }

    fn recv_timeout(&self, d: Duration) -> Result<Flow, RecvTimeoutError> {
        match self {
            Input::Flows(rx) => rx.recv_timeout(d),
            Input::Records(rx) => rx.recv_timeout(d).map(Flow::Metric),
        }
    }
}

/// The producer thread's state: a [`Sink`] (the daemon builds it through
/// [`crate::export::sink::SinkPlan`]), or [`KafkaExporter::new`], an input
/// ([`KafkaExporter::input`]) and [`run`](Self::run).
pub struct KafkaExporter {
    producer: Producer<Ctx>,
    topics: Topics,
    input: Option<Input>,
    identity: Identity,
    backlog: Backlog,
    payload: String,
    key: String,
    /// How long [`run`](Self::run) tries to deliver what waits at the end.
    pub flush_grace: Duration,
}

impl std::fmt::Debug for KafkaExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaExporter")
            .field("broker", &self.producer.events().broker)
            .field("topics", &self.topics)
            .field("bounds", &self.producer.events().bounds)
            .field("producer", &self.producer)
            .finish_non_exhaustive()
    }
}

impl KafkaExporter {
    /// A producer for `k`, sending to `topics`; registers its self-metrics
    /// in `stats`. Connects lazily: an unreachable broker is not an error
    /// here (it is logged once when librdkafka gives up on it). The tables
    /// of metadata come with each [`Flow::Metadata`]; `_meta` is kept for
    /// the callers of this signature.
    pub fn new(
        k: &config::Kafka,
        topics: Topics,
        identity: Identity,
        _meta: Arc<MetaRegistry>,
        stats: &Arc<Stats>,
    ) -> Result<Self, SetupError> {
        let bounds = Bounds::from_config(k);
        let props = client::properties(k, &bounds);
        let counters = |c: Channel| {
            let registered = topics.get(c).is_some();
            let comp = c.component();
            ChannelCounters {
                stats: if registered {
                    stats.kafka_channel(c.name())
                } else {
                    Arc::default()
                },
                backlog_full: if registered {
                    stats.drop_counter(DropStage::ExportBacklogFull, comp)
                } else {
                    DropCounter::default()
                },
                lost_error: if registered {
                    stats.drop_counter(DropStage::ExportError, comp)
                } else {
                    DropCounter::default()
                },
                lost_shutdown: if registered {
                    stats.drop_counter(DropStage::Shutdown, comp)
                } else {
                    DropCounter::default()
                },
                in_flight: AtomicU64::new(0),
                in_flight_bytes: AtomicU64::new(0),
            }
        };
        let broker = k.kafka_broker.trim().to_owned();
        let outage = Outage::new(
            "kafka",
            broker.clone(),
            format!(
                "records wait for the broker in a queue of at most {} messages / {} kB, past that \
                 the oldest are dropped and counted (gala_gopher_self_records_dropped_total)",
                bounds.max_messages,
                bounds.max_bytes / 1024
            ),
        );
        let ctx = Ctx {
            broker: broker.clone(),
            bounds,
            channels: Channel::ALL.map(counters),
            in_flight: AtomicU64::new(0),
            in_flight_bytes: AtomicU64::new(0),
            client_errors: Arc::clone(stats),
            outage,
            last_transport: Mutex::new(String::new()),
        };
        let lib = dl::lib()?;
        let names = Channel::ALL.map(|c| topics.get(c).unwrap_or(""));
        let producer =
            Producer::new(lib, &props, &names, ctx).map_err(|reason| SetupError::Create {
                broker: broker.clone(),
                reason,
            })?;
        let shown: Vec<String> = props
            .iter()
            .map(|(key, v)| format!("{key}={}", client::shown(key, v)))
            .collect();
        tracing::info!(kafka_broker = %broker, topics = ?topics.0, properties = %shown.join(" "), library = %lib.path.display(), "kafka: producer ready");
        Ok(Self {
            producer,
            topics,
            input: None,
            identity,
            backlog: Backlog::default(),
            payload: String::with_capacity(1024),
            key: String::with_capacity(128),
            flush_grace: FLUSH_GRACE,
        })
    }

    /// Takes its flows from `rx`; those of a channel without a topic are
    /// ignored.
    pub fn input(&mut self, rx: Receiver<Flow>) {
        self.input = Some(Input::Flows(rx));
    }

    /// Takes metric records from `rx` (the metric topic must be set), as a
    /// benchmark feeds them.
    pub fn records_input(&mut self, rx: Receiver<Arc<Accepted>>) {
        self.input = Some(Input::Records(rx));
    }

    /// Runs until its input is closed (or, with no input, until
    /// `shutdown`), then tries for [`flush_grace`](Self::flush_grace) to
    /// deliver what waits; what is left is counted as dropped.
    pub fn run(mut self, shutdown: &Shutdown) {
        let had_input = self.input.is_some();
        let mut published = Instant::now();
        loop {
            let now = Instant::now();
            let got = self.drain_input();
            self.pump();
            self.producer.poll(Duration::ZERO);
            if now.duration_since(published) >= PUBLISH_EVERY {
                self.publish();
                published = now;
            }
            if got == 0 {
                if self.input.is_none() && (had_input || shutdown.is_triggered()) {
                    break;
                }
                self.idle();
            }
        }
        self.finish();
    }

    /// Takes up to [`BATCH`] flows from the input; returns how many.
    fn drain_input(&mut self) -> usize {
        let Some(input) = self.input.take() else {
            return 0;
        };
        let (n, open) = drain_batch(&input, |f| self.flow(&f));
        if open {
            self.input = Some(input);
        }
        n
    }

    fn flow(&mut self, flow: &Flow) {
        if self.topics.get(flow.kind().into()).is_none() {
            return;
        }
        match flow {
            Flow::Metric(r) => self.metric(r),
            Flow::Event(e) => self.event(e),
            Flow::Metadata(m) => self.metadata(m),
        }
    }

    /// Waits for something to do: delivery reports while messages wait,
    /// else the first input (events and client errors are looked at
    /// within [`IDLE`]).
    fn idle(&mut self) {
        let busy = !self.backlog.is_empty() || self.producer.events().in_flight().0 > 0;
        if busy {
            self.producer.poll(BUSY_POLL);
            return;
        }
        if let Some(input) = self.input.take() {
            match input.recv_timeout(IDLE) {
                Ok(f) => {
                    self.flow(&f);
                    self.input = Some(input);
                }
                Err(RecvTimeoutError::Timeout) => self.input = Some(input),
                Err(RecvTimeoutError::Disconnected) => {}
            }
        } else {
            self.producer.poll(IDLE);
        }
    }

    fn metric(&mut self, rec: &Accepted) {
        self.payload.clear();
        json::metric(&mut self.payload, &self.identity, rec);
        // Topology tables: one message per partition key (see partition.rs).
        let mut sent = 0;
        loop {
            self.key.clear();
            if !partition::topology_key(&mut self.key, rec, sent) {
                break;
            }
            self.enqueue(Channel::Metric as usize);
            sent += 1;
        }
        if sent > 0 {
            return;
        }
        self.key.clear();
        self.key.push_str(&self.identity.machine_id);
        self.key.push('|');
        self.key.push_str(&rec.table.name);
        for (f, v) in rec.table.fields.iter().zip(&rec.values) {
            if f.ty == FieldType::Key {
                self.key.push('|');
                self.key.push_str(v);
            }
        }
        self.enqueue(Channel::Metric as usize);
    }

    fn event(&mut self, ev: &Event) {
        self.payload.clear();
        json::event(&mut self.payload, &self.identity, ev);
        self.key.clear();
        self.key.push_str(&self.identity.machine_id);
        self.key.push_str("|event");
        for v in ev.values.iter().take(2) {
            self.key.push('|');
            self.key.push_str(v);
        }
        self.enqueue(Channel::Event as usize);
    }

    fn metadata(&mut self, m: &Metadata) {
        for t in &m.tables {
            self.payload.clear();
            json::metadata(&mut self.payload, t, m.timestamp_ms);
            self.key.clear();
            self.key.push_str(&self.identity.machine_id);
            self.key.push('|');
            self.key.push_str(&t.name);
            self.enqueue(Channel::Meta as usize);
        }
    }

    /// Whether a message of `len` bytes may be handed to librdkafka now.
    fn fits_window(&self, len: u64) -> bool {
        let ctx = self.producer.events();
        let (m, b) = ctx.in_flight();
        m == 0 || (m < ctx.bounds.window_messages && b + len <= ctx.bounds.window_bytes)
    }

    /// Hands `key`/`payload` to librdkafka. `Ok(false)`: its queue is full.
    fn send(&self, ch: usize, key: &[u8], payload: &[u8]) -> Result<bool, String> {
        if self.topics.0[ch].is_none() {
            return Ok(true);
        }
        let bytes = key.len() + payload.len();
        match self.producer.send(ch, key, payload, opaque(ch, bytes)) {
            Ok(()) => {
                self.producer.events().sent(ch, bytes as u64);
                Ok(true)
            }
            Err((code::QUEUE_FULL, _)) => Ok(false),
            Err((_, e)) => Err(e),
        }
    }

    /// Sends the formatted message in `key`/`payload`, straight to
    /// librdkafka when nothing waits and its window has room, else through
    /// the bounded backlog.
    fn enqueue(&mut self, ch: usize) {
        let len = (self.key.len() + self.payload.len()) as u64;
        let bounds = self.producer.events().bounds;
        if self.backlog.is_empty() && len <= bounds.max_bytes && self.fits_window(len) {
            match self.send(ch, self.key.as_bytes(), self.payload.as_bytes()) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    self.producer.events().failed(ch, &e);
                    return;
                }
            }
        }
        let ctx = self.producer.events();
        let p = self
            .backlog
            .pending(ch, self.key.as_bytes(), self.payload.as_bytes());
        self.backlog.push_bounded(
            p,
            ctx.in_flight(),
            (bounds.max_messages, bounds.max_bytes),
            |c| ctx.outage.lose(&ctx.channels[c].backlog_full, 1),
        );
    }

    /// Moves waiting messages into librdkafka while its window has room.
    fn pump(&mut self) {
        while let Some(p) = self.backlog.front() {
            if !self.fits_window(p.len()) {
                break;
            }
            let ch = p.channel;
            match self.send(ch, p.key(), p.payload()) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => self.producer.events().failed(ch, &e),
            }
            if let Some(p) = self.backlog.pop_front() {
                self.backlog.recycle(p);
            }
        }
    }

    /// Refreshes the queue gauges.
    fn publish(&self) {
        let ctx = self.producer.events();
        for (ch, c) in ctx.channels.iter().enumerate() {
            c.stats.queued.store(
                self.backlog.messages_of[ch] + c.in_flight.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            c.stats.queued_bytes.store(
                self.backlog.bytes_of[ch] + c.in_flight_bytes.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
    }

    /// Delivers what waits within the grace period; counts what is left.
    fn finish(&mut self) {
        let deadline = Instant::now() + self.flush_grace;
        loop {
            self.pump();
            // Polling until nothing is in flight is much faster than
            // `flush()`, which always takes 100 ms or more.
            self.producer.poll(Duration::from_millis(5));
            if self.backlog.is_empty() && self.producer.events().in_flight().0 == 0 {
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        let ctx = self.producer.events();
        let left = self.backlog.len() + ctx.in_flight().0;
        if left > 0 {
            self.producer.purge();
            let t0 = Instant::now();
            while ctx.in_flight().0 > 0 && t0.elapsed() < Duration::from_secs(1) {
                self.producer.poll(Duration::from_millis(10));
            }
            self.backlog
                .clear(|c| ctx.outage.lose(&ctx.channels[c].lost_shutdown, 1));
            tracing::warn!(kafka_broker = %ctx.broker, left, "kafka: stopping with records not delivered; they are counted as dropped (stage shutdown)");
        }
        self.publish();
    }
}

impl Sink for KafkaExporter {
    fn name(&self) -> &str {
        "kafka"
    }

    fn takes(&self) -> Takes {
        FlowKind::ALL
            .into_iter()
            .filter(|k| self.topics.get((*k).into()).is_some())
            .fold(Takes::nothing(), |t, k| {
                t.and(k, Channel::from(k).component())
            })
    }

    fn run(mut self: Box<Self>, input: Receiver<Flow>) {
        self.input(input);
        KafkaExporter::run(*self, &Shutdown::new());
    }
}

/// Hands up to [`BATCH`] queued items to `each` without waiting; returns how
/// many, and whether the queue is still open.
fn drain_batch(rx: &Input, mut each: impl FnMut(Flow)) -> (usize, bool) {
    for n in 0..BATCH {
        match rx.try_recv() {
            Ok(item) => each(item),
            Err(TryRecvError::Empty) => return (n, true),
            Err(TryRecvError::Disconnected) => return (n, false),
        }
    }
    (BATCH, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    #[test]
    fn topics_follow_out_channel() {
        let mut cfg = Config::default();
        assert!(Topics::from_config(&cfg).is_empty());
        cfg.metric.out_channel = OutChannel::Kafka;
        cfg.meta.out_channel = OutChannel::Kafka;
        cfg.meta.kafka_topic = "m".into();
        let t = Topics::from_config(&cfg);
        assert_eq!(t.get(Channel::Metric), Some("gala_gopher"));
        assert_eq!(t.get(Channel::Event), None);
        assert_eq!(t.get(Channel::Meta), Some("m"));
    }

    #[test]
    fn opaque_round_trips() {
        let op = opaque(2, 12_345);
        assert_eq!((op & 3, op >> 2), (2, 12_345));
    }

    #[test]
    fn a_bad_option_is_a_clear_setup_error() {
        let mut k = config::Kafka::default();
        k.options.insert("no.such.property".into(), "1".into());
        let mut t = Topics::default();
        t.0[0] = Some("x".into());
        let err = KafkaExporter::new(
            &k,
            t,
            Identity {
                machine_id: "m".into(),
                hostname: "h".into(),
            },
            Arc::new(MetaRegistry::from_checked(Vec::new())),
            &Stats::new(),
        )
        .expect_err("unknown property");
        let msg = err.to_string();
        assert!(msg.contains("no.such.property"), "{msg}");
        assert!(msg.contains("localhost:9092"), "{msg}");
    }

    #[test]
    fn without_a_broker_records_wait_and_are_counted_at_stop() {
        let k = config::Kafka {
            // Nothing listens on port 1: every connection is refused.
            kafka_broker: "127.0.0.1:1".into(),
            queue_buffering_max_messages: 10,
            ..config::Kafka::default()
        };
        let stats = Stats::new();
        let f = |name: &str, ty| crate::meta::Field {
            name: name.into(),
            description: String::new(),
            ty,
        };
        let table = Arc::new(crate::meta::Table::new(
            "t",
            "t",
            vec![f("k", FieldType::Key), f("v", FieldType::Gauge)],
        ));
        let mut t = Topics::default();
        t.0[0] = Some("gala_gopher".into());
        let mut ex = KafkaExporter::new(
            &k,
            t,
            Identity {
                machine_id: "m".into(),
                hostname: "h".into(),
            },
            Arc::new(MetaRegistry::from_checked(Vec::new())),
            &stats,
        )
        .expect("producer");
        ex.flush_grace = Duration::from_millis(200);
        let (tx, rx) = sync_channel(100);
        ex.records_input(rx);
        for i in 0..25 {
            tx.send(Arc::new(Accepted {
                table: Arc::clone(&table),
                values: vec![i.to_string(), "1".into()],
                timestamp_ms: 1,
            }))
            .expect("send");
        }
        drop(tx);
        ex.run(&Shutdown::new());
        let drops = stats.drops();
        let count = |stage: &str| {
            drops
                .iter()
                .find(|(s, c, _)| *s == stage && c == "kafka_metric")
                .map_or(0, |d| d.2)
        };
        // 10 fit in the bound (5 of them in librdkafka's window); the 15
        // oldest of the backlog were dropped; the 10 left at stop too.
        assert_eq!(count("export_backlog_full"), 15);
        assert_eq!(count("shutdown"), 10);
        assert_eq!(count("export_error"), 0);
        let ch = stats.kafka_channel("metric");
        assert_eq!(ch.delivered.load(Ordering::Relaxed), 0);
        assert_eq!(ch.queued.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn as_a_sink_it_takes_only_the_channels_with_a_topic() {
        let k = config::Kafka {
            kafka_broker: "127.0.0.1:1".into(),
            ..config::Kafka::default()
        };
        let stats = Stats::new();
        let table = Arc::new(crate::meta::Table::new("t", "t", Vec::new()));
        let mut t = Topics::default();
        t.0[Channel::Meta as usize] = Some("gala_gopher_metadata".into());
        let mut ex = KafkaExporter::new(
            &k,
            t,
            Identity {
                machine_id: "m".into(),
                hostname: "h".into(),
            },
            Arc::new(MetaRegistry::from_checked(Vec::new())),
            &stats,
        )
        .expect("producer");
        ex.flush_grace = Duration::from_millis(200);
        let sink: Box<dyn Sink> = Box::new(ex);
        assert_eq!(sink.name(), "kafka");
        assert_eq!(
            sink.takes(),
            Takes::nothing().and(FlowKind::Metadata, "kafka_meta")
        );
        let (tx, rx) = sync_channel(10);
        tx.send(Flow::Metric(Arc::new(Accepted {
            table: Arc::clone(&table),
            values: Vec::new(),
            timestamp_ms: 1,
        })))
        .expect("send");
        tx.send(Flow::Metadata(Arc::new(Metadata {
            tables: vec![Arc::clone(&table), table],
            timestamp_ms: 2,
        })))
        .expect("send");
        drop(tx);
        sink.run(rx);
        // The two tables' metadata waited for the broker and were lost at
        // stop; the metric record had no topic and was not sent at all.
        let drops: Vec<(&str, String, u64)> =
            stats.drops().into_iter().filter(|d| d.2 > 0).collect();
        assert_eq!(drops, [("shutdown", "kafka_meta".to_string(), 2)]);
    }
}
