//! Kafka export (`out_channel = "kafka"`): metric records, events and table
//! metadata as the JSON objects of docs/compat.md §6, one message each, to the topic
//! of their channel.
//!
//! One producer thread per daemon. It drains the ingress's bounded queues
//! (never blocking the ingress: it only `try_send`s), formats each record
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
//! ingress's queue), `export_backlog_full` (the bound), `export_error`
//! (delivery failed for good) and `shutdown` (undelivered at stop). Broker
//! trouble is logged once per burst, and the return to health once.
//!
//! A message's key is `<machine_id>|<table>|<key values..>`, so one series
//! always goes to one partition (events: `<machine_id>|event|<entity_name>|
//! <entity_id>`; metadata: `<machine_id>|<table>`).
//!
//! Compiled only with the cargo feature `kafka` (default on): a build
//! without it (tail.conf `FEATURES="kafka"`) links no rdkafka, librdkafka or
//! OpenSSL, and its config validation refuses `out_channel = "kafka"`
//! ([`crate::config::trim`]).
#![cfg(feature = "kafka")]

mod backlog;
pub mod client;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};

use self::backlog::{Backlog, Pending, CHANNELS};
pub use self::client::Bounds;
use crate::config::{self, Config, OutChannel};
use crate::export::json;
use crate::identity::Identity;
use crate::ingress::{now_ms, Accepted, Event, Ingress, Subscriber};
use crate::meta::{FieldType, MetaRegistry};
use crate::probe_api::Shutdown;
use crate::stats::{DropStage, KafkaChannelStats, Stats};

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
    /// librdkafka refused the configuration.
    #[error("cannot create the producer for kafka_broker = \"{broker}\" (check [kafka] and [kafka.options]): {reason}")]
    Create {
        /// The configured brokers.
        broker: String,
        /// librdkafka's message, naming the property.
        reason: String,
    },
}

/// The Kafka exporter for the channels of `cfg` that go to Kafka, with its
/// inputs subscribed to `ingress` (bounded queues of `queue` items);
/// `None` when no channel goes to Kafka.
pub fn for_config(
    cfg: &Config,
    meta: &Arc<MetaRegistry>,
    identity: &Identity,
    stats: &Arc<Stats>,
    ingress: &mut Ingress,
    queue: usize,
) -> Result<Option<KafkaExporter>, SetupError> {
    let topics = Topics::from_config(cfg);
    if topics.is_empty() {
        return Ok(None);
    }
    let mut k = KafkaExporter::new(
        &cfg.kafka,
        topics,
        identity.clone(),
        Arc::clone(meta),
        stats,
    )?;
    if k.topics.get(Channel::Metric).is_some() {
        let (tx, rx) = sync_channel(queue);
        let dropped = stats.drop_counter(DropStage::ExportQueueFull, Channel::Metric.component());
        ingress.subscribe_records(Subscriber::new(tx, dropped));
        k.records = Some(rx);
    }
    if k.topics.get(Channel::Event).is_some() {
        let (tx, rx) = sync_channel(queue);
        let dropped = stats.drop_counter(DropStage::ExportQueueFull, Channel::Event.component());
        ingress.subscribe_events(Subscriber::new(tx, dropped));
        k.events = Some(rx);
    }
    Ok(Some(k))
}

/// Counters per channel, shared with the delivery callback.
struct ChannelCounters {
    stats: Arc<KafkaChannelStats>,
    backlog_full: Arc<AtomicU64>,
    lost_error: Arc<AtomicU64>,
    lost_shutdown: Arc<AtomicU64>,
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
    failing: AtomicBool,
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

    /// A message is lost for good: counted, and logged once per burst.
    fn failed(&self, ch: usize, e: &KafkaError) {
        let c = &self.channels[ch];
        c.stats.delivery_errors.fetch_add(1, Ordering::Relaxed);
        c.lost_error.fetch_add(1, Ordering::Relaxed);
        self.trouble(
            "delivery failed; such records are dropped and counted",
            &e.to_string(),
        );
    }

    /// Logs the first trouble of a burst.
    fn trouble(&self, what: &str, detail: &str) {
        if self.failing.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::error!(
            kafka_broker = %self.broker,
            error = %detail,
            "kafka: {what}; records wait for the broker in a queue of at most {} messages / {} kB, \
             past that the oldest are dropped and counted (gala_gopher_self_records_dropped_total)",
            self.bounds.max_messages,
            self.bounds.max_bytes / 1024
        );
    }

    fn recovered(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(kafka_broker = %self.broker, "kafka: the broker acknowledges records again");
        }
    }
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        // Connection failures come as error events too, and are logged once
        // per burst there; here they would repeat at every reconnect.
        let quiet = matches!(fac, "FAIL" | "ERROR" | "BROKERFAIL");
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning
                if !quiet =>
            {
                tracing::warn!(facility = fac, "kafka: {msg}");
            }
            _ => tracing::debug!(facility = fac, "kafka: {msg}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.client_errors
            .kafka_client_errors
            .fetch_add(1, Ordering::Relaxed);
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::BrokerTransportFailure) => {
                tracing::debug!(error = %reason, "kafka: broker connection failed");
                let mut last = self
                    .last_transport
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                reason.clone_into(&mut last);
            }
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                let last = self
                    .last_transport
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let detail = if last.is_empty() { reason } else { &last };
                self.trouble("cannot reach any broker", detail);
            }
            _ => self.trouble(
                "the Kafka client reports an error",
                &format!("{error}: {reason}"),
            ),
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, op: usize) {
        let ch = (op & 3).min(CHANNELS - 1);
        let bytes = (op >> 2) as u64;
        let c = &self.channels[ch];
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        c.in_flight_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.in_flight_bytes.fetch_sub(bytes, Ordering::Relaxed);
        match result {
            Ok(_) => {
                c.stats.delivered.fetch_add(1, Ordering::Relaxed);
                if self.failing.load(Ordering::Relaxed) {
                    self.recovered();
                }
            }
            Err((e, _)) => match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight) => {
                    c.lost_shutdown.fetch_add(1, Ordering::Relaxed);
                }
                _ => self.failed(ch, e),
            },
        }
    }
}

/// The producer thread's state. Build with [`for_config`] (or
/// [`KafkaExporter::new`] and the `*_input` methods), then [`run`](Self::run).
pub struct KafkaExporter {
    producer: BaseProducer<Ctx>,
    topics: Topics,
    records: Option<Receiver<Arc<Accepted>>>,
    events: Option<Receiver<Arc<Event>>>,
    meta: Arc<MetaRegistry>,
    identity: Identity,
    backlog: Backlog,
    payload: String,
    key: String,
    /// How long [`run`](Self::run) tries to deliver what waits at the end.
    pub flush_grace: Duration,
    /// How often metadata is sent again.
    pub metadata_period: Duration,
}

impl std::fmt::Debug for KafkaExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaExporter")
            .field("broker", &self.producer.context().broker)
            .field("topics", &self.topics)
            .field("bounds", &self.producer.context().bounds)
            .finish_non_exhaustive()
    }
}

impl KafkaExporter {
    /// A producer for `k`, sending to `topics`; registers its self-metrics
    /// in `stats`. Connects lazily: an unreachable broker is not an error
    /// here (it is logged once when librdkafka gives up on it).
    pub fn new(
        k: &config::Kafka,
        topics: Topics,
        identity: Identity,
        meta: Arc<MetaRegistry>,
        stats: &Arc<Stats>,
    ) -> Result<Self, SetupError> {
        let bounds = Bounds::from_config(k);
        let props = client::properties(k, &bounds);
        let mut cc = ClientConfig::new();
        for (key, v) in &props {
            cc.set(key, v);
        }
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
                    Arc::default()
                },
                lost_error: if registered {
                    stats.drop_counter(DropStage::ExportError, comp)
                } else {
                    Arc::default()
                },
                lost_shutdown: if registered {
                    stats.drop_counter(DropStage::Shutdown, comp)
                } else {
                    Arc::default()
                },
                in_flight: AtomicU64::new(0),
                in_flight_bytes: AtomicU64::new(0),
            }
        };
        let broker = k.kafka_broker.trim().to_owned();
        let ctx = Ctx {
            broker: broker.clone(),
            bounds,
            channels: Channel::ALL.map(counters),
            in_flight: AtomicU64::new(0),
            in_flight_bytes: AtomicU64::new(0),
            client_errors: Arc::clone(stats),
            failing: AtomicBool::new(false),
            last_transport: Mutex::new(String::new()),
        };
        let producer: BaseProducer<Ctx> =
            cc.create_with_context(ctx)
                .map_err(|e| SetupError::Create {
                    broker: broker.clone(),
                    reason: e.to_string(),
                })?;
        let shown: Vec<String> = props
            .iter()
            .map(|(key, v)| format!("{key}={}", client::shown(key, v)))
            .collect();
        tracing::info!(kafka_broker = %broker, topics = ?topics.0, properties = %shown.join(" "), "kafka: producer ready");
        Ok(Self {
            producer,
            topics,
            records: None,
            events: None,
            meta,
            identity,
            backlog: Backlog::default(),
            payload: String::with_capacity(1024),
            key: String::with_capacity(128),
            flush_grace: FLUSH_GRACE,
            metadata_period: crate::daemon::METADATA_PERIOD,
        })
    }

    /// Takes metric records from `rx` (the metric topic must be set).
    pub fn records_input(&mut self, rx: Receiver<Arc<Accepted>>) {
        self.records = Some(rx);
    }

    /// Takes events from `rx` (the event topic must be set).
    pub fn events_input(&mut self, rx: Receiver<Arc<Event>>) {
        self.events = Some(rx);
    }

    /// Runs until its inputs are closed (or, with no input, until
    /// `shutdown`), then tries for [`flush_grace`](Self::flush_grace) to
    /// deliver what waits; what is left is counted as dropped.
    pub fn run(mut self, shutdown: &Shutdown) {
        let had_inputs = self.records.is_some() || self.events.is_some();
        let mut next_meta = Instant::now();
        let mut published = Instant::now();
        loop {
            let now = Instant::now();
            if self.topics.get(Channel::Meta).is_some() && now >= next_meta {
                self.send_metadata();
                next_meta = now + self.metadata_period;
            }
            let got = self.drain_inputs();
            self.pump();
            self.producer.poll(Duration::ZERO);
            if now.duration_since(published) >= PUBLISH_EVERY {
                self.publish();
                published = now;
            }
            if got == 0 {
                let closed = self.records.is_none() && self.events.is_none();
                if closed && (had_inputs || shutdown.is_triggered()) {
                    break;
                }
                self.idle();
            }
        }
        self.finish();
    }

    /// Takes up to [`BATCH`] items from each input; returns how many.
    fn drain_inputs(&mut self) -> usize {
        let mut got = 0;
        if let Some(rx) = self.records.take() {
            let (n, open) = drain_batch(&rx, |r| self.metric(&r));
            got += n;
            if open {
                self.records = Some(rx);
            }
        }
        if let Some(rx) = self.events.take() {
            let (n, open) = drain_batch(&rx, |e| self.event(&e));
            got += n;
            if open {
                self.events = Some(rx);
            }
        }
        got
    }

    /// Waits for something to do: delivery reports while messages wait,
    /// else the first input (events and client errors are looked at
    /// within [`IDLE`]).
    fn idle(&mut self) {
        let busy = !self.backlog.is_empty() || self.producer.context().in_flight().0 > 0;
        if busy {
            self.producer.poll(BUSY_POLL);
            return;
        }
        if let Some(rx) = self.records.take() {
            match rx.recv_timeout(IDLE) {
                Ok(r) => {
                    self.metric(&r);
                    self.records = Some(rx);
                }
                Err(RecvTimeoutError::Timeout) => self.records = Some(rx),
                Err(RecvTimeoutError::Disconnected) => {}
            }
        } else if let Some(rx) = self.events.take() {
            match rx.recv_timeout(IDLE) {
                Ok(e) => {
                    self.event(&e);
                    self.events = Some(rx);
                }
                Err(RecvTimeoutError::Timeout) => self.events = Some(rx),
                Err(RecvTimeoutError::Disconnected) => {}
            }
        } else {
            self.producer.poll(IDLE);
        }
    }

    fn metric(&mut self, rec: &Accepted) {
        self.payload.clear();
        json::metric(&mut self.payload, &self.identity, rec);
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

    fn send_metadata(&mut self) {
        let meta = Arc::clone(&self.meta);
        let ts = now_ms();
        for t in meta.tables() {
            self.payload.clear();
            json::metadata(&mut self.payload, t, ts);
            self.key.clear();
            self.key.push_str(&self.identity.machine_id);
            self.key.push('|');
            self.key.push_str(&t.name);
            self.enqueue(Channel::Meta as usize);
        }
    }

    /// Whether a message of `len` bytes may be handed to librdkafka now.
    fn fits_window(&self, len: u64) -> bool {
        let ctx = self.producer.context();
        let (m, b) = ctx.in_flight();
        m == 0 || (m < ctx.bounds.window_messages && b + len <= ctx.bounds.window_bytes)
    }

    /// Hands `key`/`payload` to librdkafka. `Ok(false)`: its queue is full.
    fn send(&self, ch: usize, key: &[u8], payload: &[u8]) -> Result<bool, KafkaError> {
        let Some(topic) = self.topics.0[ch].as_deref() else {
            return Ok(true);
        };
        let bytes = key.len() + payload.len();
        let rec = BaseRecord::with_opaque_to(topic, opaque(ch, bytes))
            .key(key)
            .payload(payload);
        match self.producer.send(rec) {
            Ok(()) => {
                self.producer.context().sent(ch, bytes as u64);
                Ok(true)
            }
            Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => Ok(false),
            Err((e, _)) => Err(e),
        }
    }

    /// Sends the formatted message in `key`/`payload`, straight to
    /// librdkafka when nothing waits and its window has room, else through
    /// the bounded backlog.
    fn enqueue(&mut self, ch: usize) {
        let len = (self.key.len() + self.payload.len()) as u64;
        let bounds = self.producer.context().bounds;
        if self.backlog.is_empty() && len <= bounds.max_bytes && self.fits_window(len) {
            match self.send(ch, self.key.as_bytes(), self.payload.as_bytes()) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    self.producer.context().failed(ch, &e);
                    return;
                }
            }
        }
        let ctx = self.producer.context();
        let p = Pending::new(ch, self.key.as_bytes(), self.payload.as_bytes());
        self.backlog.push_bounded(
            p,
            ctx.in_flight(),
            (bounds.max_messages, bounds.max_bytes),
            |c| {
                ctx.channels[c].backlog_full.fetch_add(1, Ordering::Relaxed);
            },
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
                Err(e) => self.producer.context().failed(ch, &e),
            }
            self.backlog.pop_front();
        }
    }

    /// Refreshes the queue gauges.
    fn publish(&self) {
        let ctx = self.producer.context();
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
            if self.backlog.is_empty() && self.producer.context().in_flight().0 == 0 {
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        let ctx = self.producer.context();
        let left = self.backlog.len() + ctx.in_flight().0;
        if left > 0 {
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            let t0 = Instant::now();
            while ctx.in_flight().0 > 0 && t0.elapsed() < Duration::from_secs(1) {
                self.producer.poll(Duration::from_millis(10));
            }
            self.backlog.clear(|c| {
                ctx.channels[c]
                    .lost_shutdown
                    .fetch_add(1, Ordering::Relaxed);
            });
            tracing::warn!(kafka_broker = %ctx.broker, left, "kafka: stopping with records not delivered; they are counted as dropped (stage shutdown)");
        }
        self.publish();
    }
}

/// Hands up to [`BATCH`] queued items to `each` without waiting; returns how
/// many, and whether the queue is still open.
fn drain_batch<T>(rx: &Receiver<T>, mut each: impl FnMut(T)) -> (usize, bool) {
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
}
