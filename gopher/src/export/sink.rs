//! Push outputs ("sinks"): the one home of everything that leaves the agent
//! as a stream (log files, Kafka). The Prometheus endpoint is the pull side
//! and reads the store instead.
//!
//! What flows is one enum, [`Flow`]: an accepted metric record, an event, or
//! a batch of table metadata. Each [`Sink`] says which flows it takes
//! ([`Takes`]) and runs on its own thread, reading a bounded queue of them.
//! The ingress offers records and events to the sinks that take them; one
//! [`MetadataTicker`] offers the metadata to every sink that takes it, at
//! start and every [`METADATA_PERIOD`]. Offers never wait: what does not fit
//! in a sink's queue is lost, counted (`export_queue_full`) and reported
//! through an [`Outage`]. A sink ends when its queue closes (the ingress and
//! the ticker are gone), after delivering or counting what it still holds.
//!
//! Sinks come from the config in two steps, as Vector builds them:
//! [`SinkPlan::validate`] is pure and reports every problem as a config
//! error naming the key (`metric.out_channel`); [`SinkPlan::build`] does the
//! I/O (opens files, creates the Kafka producer) and fails with a typed
//! [`BuildError`]. [`start`] then wires and spawns them.
//!
//! A component that watches the records and produces events of its own
//! (a rule engine) is a sink taking [`FlowKind::Metric`] that holds an
//! [`IngressHandle`](crate::ingress::IngressHandle): its events go through
//! the ingress like a probe's (validated, de-duplicated by `event.timeout`,
//! counted) and reach the event outputs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Config, ConfigError, ConfigProblem, OutChannel};
use crate::export::json;
use crate::export::logfile::{ReopenSignal, RotatingFile};
use crate::identity::Identity;
use crate::ingress::{now_ms, Accepted, Event, Ingress};
use crate::meta::{MetaRegistry, Table};
use crate::probe_api::Shutdown;
use crate::stats::{DropCounter, DropStage, Outage, Stats};

/// Capacity of a sink's input queue, in records, for each kind of record
/// it takes (metric records, events).
pub const EXPORT_QUEUE: usize = 4 * 1024;
/// How often metadata is sent again (docs/compat.md §6).
pub const METADATA_PERIOD: Duration = Duration::from_secs(600);

/// What flows to the sinks.
#[derive(Debug, Clone)]
pub enum Flow {
    /// An accepted metric record.
    Metric(Arc<Accepted>),
    /// An accepted event (already de-duplicated).
    Event(Arc<Event>),
    /// The metadata of every table, sent at start and every
    /// [`METADATA_PERIOD`].
    Metadata(Arc<Metadata>),
}

impl Flow {
    /// Its kind.
    pub fn kind(&self) -> FlowKind {
        match self {
            Flow::Metric(_) => FlowKind::Metric,
            Flow::Event(_) => FlowKind::Event,
            Flow::Metadata(_) => FlowKind::Metadata,
        }
    }

    /// How many records it counts as when lost (metadata: one per table).
    pub fn records(&self) -> u64 {
        match self {
            Flow::Metric(_) | Flow::Event(_) => 1,
            Flow::Metadata(m) => m.tables.len() as u64,
        }
    }
}

/// The metadata of the tables at one tick.
#[derive(Debug)]
pub struct Metadata {
    /// Every table, in registry order.
    pub tables: Vec<Arc<Table>>,
    /// When it was sent, ms since the epoch.
    pub timestamp_ms: u64,
}

/// The kinds of [`Flow`], which are also the config's three channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowKind {
    /// `[metric]`.
    Metric = 0,
    /// `[event]`.
    Event = 1,
    /// `[meta]`.
    Metadata = 2,
}

impl FlowKind {
    /// Every kind, by index.
    pub const ALL: [FlowKind; 3] = [FlowKind::Metric, FlowKind::Event, FlowKind::Metadata];

    /// The config section of its channel.
    pub fn section(self) -> &'static str {
        match self {
            FlowKind::Metric => "metric",
            FlowKind::Event => "event",
            FlowKind::Metadata => "meta",
        }
    }
}

/// Which flows a sink takes, each with the component its losses are
/// counted under (`gala_gopher_self_records_dropped_total{component}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Takes([Option<&'static str>; 3]);

impl Takes {
    /// Nothing yet.
    pub fn nothing() -> Self {
        Self::default()
    }

    /// Also takes `kind`, its losses counted under `component`.
    #[must_use]
    pub fn and(mut self, kind: FlowKind, component: &'static str) -> Self {
        self.0[kind as usize] = Some(component);
        self
    }

    /// The component of `kind`, when it is taken.
    pub fn component(&self, kind: FlowKind) -> Option<&'static str> {
        self.0[kind as usize]
    }

    /// Whether `kind` is taken.
    pub fn takes(&self, kind: FlowKind) -> bool {
        self.0[kind as usize].is_some()
    }

    /// How many kinds are taken.
    pub fn count(&self) -> usize {
        self.0.iter().flatten().count()
    }
}

/// An output that flows are pushed to.
pub trait Sink: Send + 'static {
    /// Its name, for its thread (`export-<name>`) and its logs.
    fn name(&self) -> &str;

    /// The flows it takes.
    fn takes(&self) -> Takes;

    /// Takes flows from `input` until it closes, then delivers (or counts
    /// as dropped) what it still holds. Never panics on what it is given.
    fn run(self: Box<Self>, input: Receiver<Flow>);
}

/// How long a sink's queue must take every flow before its overflow is
/// reported over: a sink that drains in batches makes room between drops,
/// which is no recovery yet.
pub const OVERFLOW_QUIET: Duration = Duration::from_secs(10);

/// The sending end of a sink's input queue. Offering never waits: a flow
/// that does not fit is lost, counted on the component of its kind
/// (`export_queue_full`) and reported once per overflow by an [`Outage`]
/// (over once nothing was lost for [`OVERFLOW_QUIET`]).
#[derive(Debug, Clone)]
pub struct SinkInput {
    tx: SyncSender<Flow>,
    takes: Takes,
    dropped: [Option<DropCounter>; 3],
    full: Arc<Overflow>,
}

/// The overflow state of a sink's queue.
#[derive(Debug)]
struct Overflow {
    outage: Outage,
    /// When the queue was made, the origin of `last_loss_ms`.
    origin: Instant,
    /// The last loss, ms after `origin`.
    last_loss_ms: AtomicU64,
    quiet: Duration,
}

impl Overflow {
    fn since_origin_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lost(&self, counter: &DropCounter, n: u64) {
        self.last_loss_ms
            .store(self.since_origin_ms(), Ordering::Relaxed);
        self.outage.lose(counter, n);
        self.outage.fail("its input queue is full", &"queue full");
    }

    /// A flow was queued: the overflow is over when the last loss is old.
    fn queued(&self) {
        if self.outage.is_failing() {
            let quiet = u64::try_from(self.quiet.as_millis()).unwrap_or(u64::MAX);
            let last = self.last_loss_ms.load(Ordering::Relaxed);
            if self.since_origin_ms().saturating_sub(last) >= quiet {
                self.outage.recover("its queue takes every record again");
            }
        }
    }
}

impl SinkInput {
    /// A queue towards the sink `name` that takes `takes`, holding
    /// `capacity` flows; its drop counters are registered in `stats`.
    pub fn new(name: &str, takes: Takes, capacity: usize, stats: &Stats) -> (Self, Receiver<Flow>) {
        let (tx, rx) = sync_channel(capacity.max(1));
        let dropped = FlowKind::ALL.map(|k| {
            takes
                .component(k)
                .map(|c| stats.drop_counter(DropStage::ExportQueueFull, c))
        });
        let full = Arc::new(Overflow {
            outage: Outage::new(
                name,
                format!("{name} input queue ({capacity} records)"),
                "the output does not keep up; what does not fit in its queue is dropped and \
                 counted",
            ),
            origin: Instant::now(),
            last_loss_ms: AtomicU64::new(0),
            quiet: OVERFLOW_QUIET,
        });
        (
            Self {
                tx,
                takes,
                dropped,
                full,
            },
            rx,
        )
    }

    /// Whether the sink takes `kind`.
    pub fn takes(&self, kind: FlowKind) -> bool {
        self.takes.takes(kind)
    }

    /// Queues `flow` if the sink takes it and its queue has room; else a
    /// taken flow is counted as dropped.
    pub fn offer(&self, flow: Flow) {
        let kind = flow.kind();
        let Some(counter) = &self.dropped[kind as usize] else {
            return;
        };
        match self.tx.try_send(flow) {
            Ok(()) => self.full.queued(),
            Err(TrySendError::Full(f)) => self.full.lost(counter, f.records()),
            // The sink has ended (only at shutdown, or if it panicked).
            Err(TrySendError::Disconnected(f)) => self.full.outage.lose(counter, f.records()),
        }
    }
}

/// Offers the metadata of every table to the sinks that take it: once at
/// start, then every period, until shutdown. The one metadata timer of the
/// agent.
#[derive(Debug)]
pub struct MetadataTicker {
    meta: Arc<MetaRegistry>,
    inputs: Vec<SinkInput>,
    period: Duration,
}

impl MetadataTicker {
    /// A ticker of `meta`'s tables every `period`.
    pub fn new(meta: Arc<MetaRegistry>, period: Duration) -> Self {
        Self {
            meta,
            inputs: Vec::new(),
            period,
        }
    }

    /// Also offers metadata to `input` (ignored unless it takes metadata).
    pub fn subscribe(&mut self, input: SinkInput) {
        if input.takes(FlowKind::Metadata) {
            self.inputs.push(input);
        }
    }

    /// Whether no sink takes metadata.
    pub fn is_idle(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Offers the metadata now, stamped `timestamp_ms`.
    pub fn tick(&self, timestamp_ms: u64) {
        let m = Arc::new(Metadata {
            tables: self.meta.tables().to_vec(),
            timestamp_ms,
        });
        for i in &self.inputs {
            i.offer(Flow::Metadata(Arc::clone(&m)));
        }
    }

    /// Ticks until `shutdown`, then closes its side of the queues.
    pub fn run(self, shutdown: &Shutdown) {
        loop {
            self.tick(now_ms());
            if shutdown.wait(self.period) {
                return;
            }
        }
    }
}

/// A log-file sink: one kind of flow as JSON lines in a rotating file
/// (`out_channel = "logs"`).
#[derive(Debug)]
pub struct LogSink {
    name: &'static str,
    kind: FlowKind,
    component: &'static str,
    file: RotatingFile,
    identity: Identity,
    errors: DropCounter,
    outage: Outage,
}

impl LogSink {
    /// A sink of `kind` into `file`; write errors are counted in `stats`.
    pub fn new(kind: FlowKind, file: RotatingFile, identity: Identity, stats: &Stats) -> Self {
        let (name, component, what) = match kind {
            FlowKind::Metric => ("metric-logs", "metric_logs", "metric logs"),
            FlowKind::Event => ("event-logs", "event_logs", "event logs"),
            FlowKind::Metadata => ("meta-logs", "meta_logs", "metadata logs"),
        };
        let outage = Outage::new(
            what,
            file.path().display().to_string(),
            "cannot write; records are dropped and counted until it recovers",
        );
        Self {
            name,
            kind,
            component,
            file,
            identity,
            errors: stats.drop_counter(DropStage::ExportError, component),
            outage,
        }
    }

    fn write(&mut self, line: &str) {
        match self.file.write_line(line) {
            Ok(()) => {
                self.outage.recover("writing again");
            }
            Err(e) => {
                self.outage.lose(&self.errors, 1);
                self.outage.fail("cannot write", &e);
            }
        }
    }

    fn flush(&mut self) {
        match self.file.flush() {
            Ok(()) => {
                self.outage.recover("writing again");
            }
            Err(e) => {
                self.outage.fail("cannot write", &e);
            }
        }
    }

    fn handle(&mut self, flow: &Flow, line: &mut String) {
        match flow {
            Flow::Metric(r) => {
                line.clear();
                json::metric(line, &self.identity, r);
                self.write(line);
            }
            Flow::Event(e) => {
                line.clear();
                json::event(line, &self.identity, e);
                self.write(line);
            }
            Flow::Metadata(m) => {
                for t in &m.tables {
                    line.clear();
                    json::metadata(line, t, m.timestamp_ms);
                    self.write(line);
                }
                // Metadata comes seldom and in one batch: written at once.
                self.flush();
            }
        }
    }
}

impl Sink for LogSink {
    fn name(&self) -> &str {
        self.name
    }

    fn takes(&self) -> Takes {
        Takes::nothing().and(self.kind, self.component)
    }

    /// Flushes after a second of quiet and at the end.
    fn run(mut self: Box<Self>, input: Receiver<Flow>) {
        let mut line = String::with_capacity(1024);
        // With nothing buffered, block without a timeout: an idle agent
        // does not wake up once a second per log file.
        let mut pending = false;
        loop {
            let next = if pending {
                input.recv_timeout(Duration::from_secs(1))
            } else {
                input.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            match next {
                Ok(flow) => {
                    pending = true;
                    self.handle(&flow, &mut line);
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.flush();
                    pending = false;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.flush();
    }
}

/// One log sink of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogSpec {
    kind: FlowKind,
    /// The config key of its directory.
    key: &'static str,
    dir: PathBuf,
    file: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SinkSpec {
    Logs(LogSpec),
    #[cfg(feature = "kafka")]
    Kafka {
        conf: crate::config::Kafka,
        topics: crate::export::kafka::Topics,
    },
}

/// The sinks a config asks for, checked ([`SinkPlan::validate`]) and not
/// built yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkPlan {
    sinks: Vec<SinkSpec>,
    max_bytes: u64,
    max_files: u32,
}

/// Why a sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A log directory or file cannot be opened.
    #[error("{key} {}: cannot open {file} there: {source}", dir.display())]
    LogFile {
        /// The config key of the directory, e.g. `logs.metric_dir`.
        key: &'static str,
        /// The directory.
        dir: PathBuf,
        /// The file name.
        file: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Kafka producer cannot be created.
    #[cfg(feature = "kafka")]
    #[error("kafka: {0}")]
    Kafka(#[from] crate::export::kafka::SetupError),
    /// A sink's thread cannot be started.
    #[error("cannot start the thread {name}: {source}")]
    Thread {
        /// The thread's name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What building sinks needs besides the plan.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// The tables.
    pub meta: &'a Arc<MetaRegistry>,
    /// The machine, for the records' labels.
    pub identity: &'a Identity,
    /// Where losses are counted.
    pub stats: &'a Arc<Stats>,
    /// Log files reopen by name when it is triggered.
    pub reopen: &'a ReopenSignal,
}

impl SinkPlan {
    /// The sinks `cfg`'s channels ask for (pure): every problem is a config
    /// error naming the key.
    pub fn validate(cfg: &Config) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |key: String, msg: String| {
            let line = cfg.locations.line(&key);
            problems.push(ConfigProblem::at_key(&cfg.source, line, key, msg));
        };
        let channels = [
            (
                FlowKind::Metric,
                cfg.metric.out_channel,
                &cfg.metric.kafka_topic,
            ),
            (
                FlowKind::Event,
                cfg.event.out_channel,
                &cfg.event.kafka_topic,
            ),
            (
                FlowKind::Metadata,
                cfg.meta.out_channel,
                &cfg.meta.kafka_topic,
            ),
        ];
        let mut sinks = Vec::new();
        for (kind, out, topic) in channels {
            let key = format!("{}.out_channel", kind.section());
            match out {
                OutChannel::Off => {}
                OutChannel::WebServer if kind == FlowKind::Metric => {}
                OutChannel::WebServer => problem(
                    key,
                    "expected \"logs\", \"kafka\" or \"\" (off), got \"web_server\" (only metrics are \
                     served on the web server)"
                        .into(),
                ),
                OutChannel::Logs => {
                    let (key, dir, file) = match kind {
                        FlowKind::Metric => ("logs.metric_dir", &cfg.logs.metric_dir, "metrics.log"),
                        FlowKind::Event => ("logs.event_dir", &cfg.logs.event_dir, "events.log"),
                        FlowKind::Metadata => ("logs.meta_dir", &cfg.logs.meta_dir, "metadata.log"),
                    };
                    sinks.push(SinkSpec::Logs(LogSpec {
                        kind,
                        key,
                        dir: dir.clone(),
                        file,
                    }));
                }
                OutChannel::Kafka if !crate::config::trim::KAFKA => {
                    problem(key, crate::config::trim::kafka_left_out());
                }
                OutChannel::Kafka if topic.trim().is_empty() => problem(
                    format!("{}.kafka_topic", kind.section()),
                    "expected a topic name (out_channel is kafka), got an empty string".into(),
                ),
                OutChannel::Kafka => {}
            }
        }
        #[cfg(feature = "kafka")]
        {
            let topics = crate::export::kafka::Topics::from_config(cfg);
            if !topics.is_empty() {
                if cfg.kafka.kafka_broker.trim().is_empty() {
                    problem(
                        "kafka.kafka_broker".into(),
                        "expected a broker address host:port (a channel uses kafka), got an empty \
                         string"
                            .into(),
                    );
                }
                sinks.push(SinkSpec::Kafka {
                    conf: cfg.kafka.clone(),
                    topics,
                });
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError { errors: problems });
        }
        Ok(Self {
            sinks,
            max_bytes: cfg.logs.max_file_size_mb.saturating_mul(1024 * 1024),
            max_files: cfg.logs.max_files,
        })
    }

    /// The files of its log sinks.
    #[cfg_attr(
        not(feature = "kafka"),
        expect(
            clippy::unnecessary_filter_map,
            reason = "without Kafka every sink is a log sink"
        )
    )]
    pub fn log_files(&self) -> Vec<PathBuf> {
        self.sinks
            .iter()
            .filter_map(|s| match s {
                SinkSpec::Logs(l) => Some(l.dir.join(l.file)),
                #[cfg(feature = "kafka")]
                SinkSpec::Kafka { .. } => None,
            })
            .collect()
    }

    /// Builds every sink (opens the files, creates the producer); starts
    /// no thread.
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Vec<Box<dyn Sink>>, BuildError> {
        let mut out: Vec<Box<dyn Sink>> = Vec::new();
        for s in &self.sinks {
            match s {
                SinkSpec::Logs(l) => {
                    let file = RotatingFile::open(&l.dir, l.file, self.max_bytes, self.max_files)
                        .map_err(|source| BuildError::LogFile {
                            key: l.key,
                            dir: l.dir.clone(),
                            file: l.file,
                            source,
                        })?
                        .follow(cx.reopen);
                    out.push(Box::new(LogSink::new(
                        l.kind,
                        file,
                        cx.identity.clone(),
                        cx.stats,
                    )));
                }
                #[cfg(feature = "kafka")]
                SinkSpec::Kafka { conf, topics } => {
                    out.push(Box::new(crate::export::kafka::KafkaExporter::new(
                        conf,
                        topics.clone(),
                        cx.identity.clone(),
                        Arc::clone(cx.meta),
                        cx.stats,
                    )?));
                }
            }
        }
        Ok(out)
    }
}

/// Wires `sinks` to `ingress` and to one [`MetadataTicker`] of `meta`,
/// and starts a thread for each sink and one for the ticker (pushed onto
/// `threads` as they start, so that a caller can join those started before
/// an error). The sinks end once the ingress and the ticker (which stops at
/// `shutdown`) are gone.
pub fn start(
    sinks: Vec<Box<dyn Sink>>,
    ingress: &mut Ingress,
    meta: &Arc<MetaRegistry>,
    stats: &Stats,
    shutdown: &Shutdown,
    threads: &mut Vec<JoinHandle<()>>,
) -> Result<(), BuildError> {
    let mut ticker = MetadataTicker::new(Arc::clone(meta), METADATA_PERIOD);
    for sink in sinks {
        let takes = sink.takes();
        let kinds = [FlowKind::Metric, FlowKind::Event]
            .iter()
            .filter(|k| takes.takes(**k))
            .count();
        let (input, rx) = SinkInput::new(sink.name(), takes, EXPORT_QUEUE * kinds.max(1), stats);
        let name = format!("export-{}", sink.name());
        threads.push(spawn(&name, move || sink.run(rx))?);
        ingress.subscribe(input.clone());
        ticker.subscribe(input);
    }
    if !ticker.is_idle() {
        let sd = shutdown.clone();
        threads.push(spawn("metadata-ticker", move || ticker.run(&sd))?);
    }
    Ok(())
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, BuildError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|source| BuildError::Thread {
            name: name.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests;
