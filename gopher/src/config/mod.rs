//! The daemon's configuration.
//!
//! The native format is TOML with the legacy section and key names
//! (docs/compat.md §4); a legacy libconfig `gala-gopher.conf` is read into the same
//! structs ([`legacy`]). Loading is `parse -> serde structs -> resolve paths ->
//! validate()`, and reports every problem of the file in one pass: every
//! syntax error (the reader resumes after each one), every key that does not
//! deserialize (the key is reported and left at its default, and the rest of
//! its section is still read), and every value rule of [`Config::validate`],
//! which is pure.
//!
//! Defaults live in one place per struct (its `Default` impl; the per-section
//! channel defaults in [`Config::default`]). Every struct denies unknown keys.
//! Keys a legacy generation had but this agent does not use are accepted,
//! then mapped onto this agent's settings or ignored with a warning
//! ([`compat`], [`Config::warnings`]); the legacy application whitelist is
//! read into [`Config::app_whitelist`] ([`whitelist`]).

pub mod cgroup;
pub mod compat;
mod error;
pub mod ipc;
pub mod legacy;
mod source;
pub mod trim;
mod validate;
pub mod whitelist;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use error::{ConfigError, ConfigProblem};
pub use legacy::Ignored;
pub use source::Locations;
pub use whitelist::AppWhitelist;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file loaded (empty for [`Config::default`]).
    pub source: PathBuf,
    /// `[global]`.
    pub global: Global,
    /// `[metric]`: where metric records go.
    pub metric: Channel,
    /// `[event]`: where event records go.
    pub event: EventChannel,
    /// `[meta]`: where table metadata goes.
    pub meta: Channel,
    /// `[ingress]`.
    pub ingress: Ingress,
    /// `[egress]`.
    pub egress: Egress,
    /// `[imdb]`: the in-memory table store.
    pub imdb: Imdb,
    /// `[web_server]`: the Prometheus endpoint.
    pub web_server: WebServer,
    /// `[rest_api_server]`: dynamic probe control.
    pub rest_api_server: RestApiServer,
    /// `[kafka]`.
    pub kafka: Kafka,
    /// `[logs]`: the log-file exporter.
    pub logs: Logs,
    /// `[supervisor]`: probe restarts (new in this agent).
    pub supervisor: Supervisor,
    /// `[cgroup]`: CPU and memory limits of the probe processes.
    pub cgroup: cgroup::CgroupConf,
    /// `[[probes]]`: native probes.
    pub probes: Vec<ProbeConf>,
    /// `[[extend_probes]]`: probes run as child processes.
    pub extend_probes: Vec<ExtendProbeConf>,
    /// Where each key was written, for error messages. Not part of equality:
    /// two configs with the same values compare equal wherever they came from.
    pub locations: Locations,
    /// How `global.meta_dir` was chosen, for error messages. Not part of equality.
    pub meta_dir_origin: MetaDirOrigin,
    /// The legacy application whitelist (`gala-gopher-app.conf`), when one
    /// was found (see [`whitelist`]).
    pub app_whitelist: Option<AppWhitelist>,
    /// Legacy keys and probe names that were ignored or mapped with a
    /// warning ([`compat`]); logged once when the file is loaded. Not part
    /// of equality.
    pub warnings: Warnings,
}

/// Warnings about a config file: each names the file, line and key, and
/// why. All values compare equal: they explain a config, they are not part
/// of it.
#[derive(Debug, Clone, Default)]
pub struct Warnings(pub Vec<ConfigProblem>);

impl PartialEq for Warnings {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Warnings {
    /// The warnings, in line order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigProblem> {
        self.0.iter()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            source: PathBuf::new(),
            global: Global::default(),
            metric: Channel {
                out_channel: OutChannel::WebServer,
                kafka_topic: "gala_gopher".into(),
            },
            event: EventChannel::default(),
            meta: Channel {
                out_channel: OutChannel::Logs,
                kafka_topic: "gala_gopher_metadata".into(),
            },
            ingress: Ingress::default(),
            egress: Egress::default(),
            imdb: Imdb::default(),
            web_server: WebServer::default(),
            rest_api_server: RestApiServer::default(),
            kafka: Kafka::default(),
            logs: Logs::default(),
            supervisor: Supervisor::default(),
            cgroup: cgroup::CgroupConf::default(),
            probes: Vec::new(),
            extend_probes: Vec::new(),
            locations: Locations::default(),
            meta_dir_origin: MetaDirOrigin::Searched {
                tried: meta_dir_candidates(None, std::env::current_exe().ok().as_deref()),
            },
            app_whitelist: None,
            warnings: Warnings::default(),
        }
    }
}

/// `[global]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Global {
    /// One of trace, debug, info, warn, error (legacy upper case is accepted
    /// and lowered at load).
    pub log_level: String,
    /// Log to this file instead of stderr (legacy; `""` means none).
    #[serde(deserialize_with = "legacy::opt_nonempty_string")]
    pub log_file_name: Option<String>,
    /// Where eBPF maps are pinned.
    pub pin_path: PathBuf,
    /// The `.meta` directory. Relative paths are resolved against the config
    /// file's directory; when absent, see [`meta_dir_candidates`].
    pub meta_dir: PathBuf,
    /// Serve the REST API (`[rest_api_server]`).
    #[serde(deserialize_with = "legacy::on_off")]
    pub rest_api_on: bool,
    /// Where state (the machine id) is persisted.
    pub state_dir: PathBuf,
    /// The legacy application whitelist file (`gala-gopher-app.conf`; a
    /// relative path is relative to the config file). When absent, the
    /// first `-w <path>` of a probe's `param`, else `gala-gopher-app.conf`
    /// beside the config file (see [`whitelist`]).
    #[serde(deserialize_with = "legacy::opt_nonempty_path")]
    pub app_whitelist: Option<PathBuf>,
    /// V0 `log_directory`: accepted and ignored, with a warning.
    pub log_directory: Ignored,
}

impl Default for Global {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_file_name: None,
            pin_path: "/sys/fs/bpf/gala-gopher".into(),
            meta_dir: search_meta_dir(None).0,
            rest_api_on: false,
            state_dir: "/var/lib/gala-gopher".into(),
            app_whitelist: None,
            log_directory: Ignored,
        }
    }
}

/// How `global.meta_dir` was chosen. All values compare equal: it explains a
/// config, it is not part of it.
#[derive(Debug, Clone)]
pub enum MetaDirOrigin {
    /// Written in the config file as `global.meta_dir`, at this line when known.
    Written {
        /// Line of the key.
        line: Option<usize>,
    },
    /// Not written: these directories were searched, in this order (see
    /// [`meta_dir_candidates`]).
    Searched {
        /// The directories, in search order.
        tried: Vec<PathBuf>,
    },
}

impl PartialEq for MetaDirOrigin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Where the legacy rpm installs the meta files.
pub const RPM_META_DIR: &str = "/opt/gala-gopher/meta";
/// The system-wide meta directory, used when no other holds `.meta` files.
pub const ETC_META_DIR: &str = "/etc/gala-gopher/meta";

/// The directories searched for `.meta` files when `global.meta_dir` is not
/// set, in order; the first that holds at least one `.meta` file is used,
/// and the last one when none does:
/// 1. `<config dir>/../meta`: the config file's directory has a `meta/`
///    sibling (the source tree: `config/gala-gopher.toml` -> `meta/`);
/// 2. `<prefix>/share/gala-gopher/meta` when the running binary is
///    `<prefix>/bin/gala-gopher`;
/// 3. `<repo>/meta` when the running binary is
///    `<repo>/target/[<triple>/]{debug,release}/gala-gopher` (a cargo build);
/// 4. `/opt/gala-gopher/meta` (the legacy rpm location);
/// 5. `/etc/gala-gopher/meta`.
///
/// `config_dir` is the config file's directory, `exe` the running binary
/// (`std::env::current_exe`). A directory is listed once.
pub fn meta_dir_candidates(config_dir: Option<&Path>, exe: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    if let Some(dir) = config_dir {
        out.push(match dir.components().next_back() {
            Some(std::path::Component::Normal(_)) => dir.parent().unwrap_or(dir).join("meta"),
            _ => dir.join("..").join("meta"),
        });
    }
    if let Some(bin_dir) = exe.and_then(Path::parent) {
        let name = bin_dir.file_name().and_then(|n| n.to_str());
        if name == Some("bin") {
            if let Some(prefix) = bin_dir.parent() {
                out.push(prefix.join("share").join("gala-gopher").join("meta"));
            }
        }
        if matches!(name, Some("debug" | "release")) {
            let target = bin_dir
                .ancestors()
                .skip(1)
                .take(2)
                .find(|a| a.file_name().is_some_and(|n| n == "target"));
            if let Some(repo) = target.and_then(Path::parent) {
                out.push(repo.join("meta"));
            }
        }
    }
    out.push(PathBuf::from(RPM_META_DIR));
    out.push(PathBuf::from(ETC_META_DIR));
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// The first of `candidates` for which `has_meta` holds, else the last one
/// (else [`ETC_META_DIR`]).
pub fn pick_meta_dir(candidates: &[PathBuf], has_meta: impl Fn(&Path) -> bool) -> PathBuf {
    candidates
        .iter()
        .find(|d| has_meta(d))
        .or(candidates.last())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(ETC_META_DIR))
}

/// The default `.meta` directory for a config file in `config_dir`, and the
/// directories searched (see [`meta_dir_candidates`]).
pub fn search_meta_dir(config_dir: Option<&Path>) -> (PathBuf, Vec<PathBuf>) {
    let exe = std::env::current_exe().ok();
    let tried = meta_dir_candidates(config_dir, exe.as_deref());
    (pick_meta_dir(&tried, has_meta_files), tried)
}

/// Whether a directory holds at least one `*.meta` file.
pub fn has_meta_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "meta"))
    })
}

/// Where a stream of records goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutChannel {
    /// `"web_server"`: the Prometheus endpoint (metrics only).
    WebServer,
    /// `"logs"`: the log files of `[logs]`.
    Logs,
    /// `"kafka"`: the topic of the section.
    Kafka,
    /// `""` (or `"off"`): nowhere.
    Off,
}

impl OutChannel {
    /// The name as written in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebServer => "web_server",
            Self::Logs => "logs",
            Self::Kafka => "kafka",
            Self::Off => "",
        }
    }
}

impl<'de> Deserialize<'de> for OutChannel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "web_server" => Ok(Self::WebServer),
            "logs" => Ok(Self::Logs),
            "kafka" => Ok(Self::Kafka),
            "" | "off" => Ok(Self::Off),
            _ => Err(serde::de::Error::custom(format!(
                "expected \"web_server\", \"logs\", \"kafka\" or \"\" (off), got \"{s}\""
            ))),
        }
    }
}

/// `[metric]` and `[meta]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Where the records go.
    pub out_channel: OutChannel,
    /// The Kafka topic when `out_channel` is kafka.
    pub kafka_topic: String,
}

/// What `[metric]` and `[meta]` may say; absent keys keep the section's default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelFile {
    #[serde(default)]
    out_channel: Option<OutChannel>,
    #[serde(default)]
    kafka_topic: Option<String>,
    /// V2 `metric.pod_info_switch`: accepted and ignored, with a warning.
    #[serde(default, rename = "pod_info_switch")]
    _pod_info_switch: Ignored,
}

impl ChannelFile {
    pub(crate) fn over(self, default: &Channel) -> Channel {
        Channel {
            out_channel: self.out_channel.unwrap_or(default.out_channel),
            kafka_topic: self
                .kafka_topic
                .unwrap_or_else(|| default.kafka_topic.clone()),
        }
    }
}

/// `[event]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventChannel {
    /// Where events go.
    pub out_channel: OutChannel,
    /// The Kafka topic when `out_channel` is kafka.
    pub kafka_topic: String,
    /// Seconds during which a repeated event is not reported again.
    pub timeout: u64,
    /// V1/V2 `desc_language`: accepted and ignored, with a warning.
    pub desc_language: Ignored,
}

impl Default for EventChannel {
    fn default() -> Self {
        Self {
            out_channel: OutChannel::Logs,
            kafka_topic: "gala_gopher_event".into(),
            timeout: 600,
            desc_language: Ignored,
        }
    }
}

/// `[ingress]` (accepted; informational).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ingress {
    /// Legacy polling interval, seconds.
    pub interval: u64,
}

impl Default for Ingress {
    fn default() -> Self {
        Self { interval: 5 }
    }
}

/// `[egress]` (accepted; informational).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Egress {
    /// Legacy flush interval, seconds.
    pub interval: u64,
    /// Legacy time range, seconds.
    pub time_range: u64,
}

impl Default for Egress {
    fn default() -> Self {
        Self {
            interval: 5,
            time_range: 5,
        }
    }
}

/// `[imdb]`: limits of the in-memory table store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Imdb {
    /// Most tables.
    pub max_tables_num: usize,
    /// Most live series (records) per table.
    pub max_records_num: usize,
    /// Most fields per table.
    pub max_metrics_num: usize,
    /// Seconds after its last update when a series expires.
    pub record_timeout: u64,
}

impl Default for Imdb {
    fn default() -> Self {
        Self {
            max_tables_num: 1024,
            max_records_num: 1024,
            max_metrics_num: 64,
            record_timeout: 60,
        }
    }
}

/// `[web_server]`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebServer {
    /// TCP port.
    pub port: u16,
    /// Address to bind.
    pub bind_addr: IpAddr,
    /// Serve TLS 1.3 (legacy `"on"`/`"off"` accepted); mutual TLS with `ca_file`.
    #[serde(deserialize_with = "legacy::on_off")]
    pub ssl_auth: bool,
    /// TLS private key (`""` means none).
    #[serde(deserialize_with = "legacy::opt_nonempty_path")]
    pub private_key: Option<PathBuf>,
    /// TLS certificate.
    #[serde(deserialize_with = "legacy::opt_nonempty_path")]
    pub cert_file: Option<PathBuf>,
    /// CA for client certificates.
    #[serde(deserialize_with = "legacy::opt_nonempty_path")]
    pub ca_file: Option<PathBuf>,
    /// V0 `switch`: `"on"` is what this agent does anyway; `"off"` is
    /// ignored with a warning (the endpoint always runs).
    pub switch: Ignored,
}

impl Default for WebServer {
    fn default() -> Self {
        Self {
            port: 8888,
            bind_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ssl_auth: false,
            private_key: None,
            cert_file: None,
            ca_file: None,
            switch: Ignored,
        }
    }
}

/// `[rest_api_server]`: dynamic probe control (served when `global.rest_api_on`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestApiServer {
    /// TCP port.
    pub port: u16,
    /// Address to bind.
    pub bind_addr: IpAddr,
    /// Serve TLS 1.3 (legacy `"on"`/`"off"` accepted); mutual TLS with `ca_file`.
    #[serde(deserialize_with = "legacy::on_off")]
    pub ssl_auth: bool,
    /// TLS private key.
    #[serde(deserialize_with = "legacy::opt_nonempty_path")]
    pub private_key: Option<PathBuf>,
    /// TLS certificate.
    #[serde(deserialize_with = "legacy::opt_nonempty_path")]
    pub cert_file: Option<PathBuf>,
    /// CA for client certificates.
    #[serde(deserialize_with = "legacy::opt_nonempty_path")]
    pub ca_file: Option<PathBuf>,
}

impl Default for RestApiServer {
    fn default() -> Self {
        Self {
            port: 9999,
            bind_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ssl_auth: false,
            private_key: None,
            cert_file: None,
            ca_file: None,
        }
    }
}

/// `[kafka]`: the producer shared by the kafka channels. Its `Debug` output
/// hides the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kafka {
    /// Bootstrap brokers, `host:port[,host:port]`.
    pub kafka_broker: String,
    /// librdkafka `batch.num.messages`.
    pub batch_num_messages: u32,
    /// librdkafka `compression.codec`: none, gzip, snappy, lz4 or zstd.
    pub compression_codec: String,
    /// librdkafka `queue.buffering.max.messages`.
    pub queue_buffering_max_messages: u32,
    /// librdkafka `queue.buffering.max.kbytes`.
    pub queue_buffering_max_kbytes: u32,
    /// librdkafka `queue.buffering.max.ms`.
    pub queue_buffering_max_ms: u32,
    /// SASL user name (`""` means none).
    #[serde(deserialize_with = "legacy::opt_nonempty_string")]
    pub username: Option<String>,
    /// SASL password (`""` means none).
    #[serde(deserialize_with = "legacy::opt_nonempty_string")]
    pub password: Option<String>,
    /// Extra librdkafka properties passed through as they are (TOML only).
    pub options: BTreeMap<String, String>,
    /// V0 `kafka_topic` (now per channel): accepted and ignored.
    pub kafka_topic: Ignored,
    /// V0 `switch` (now the channels' `out_channel`): accepted and ignored.
    pub switch: Ignored,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka")
            .field("kafka_broker", &self.kafka_broker)
            .field("batch_num_messages", &self.batch_num_messages)
            .field("compression_codec", &self.compression_codec)
            .field(
                "queue_buffering_max_messages",
                &self.queue_buffering_max_messages,
            )
            .field(
                "queue_buffering_max_kbytes",
                &self.queue_buffering_max_kbytes,
            )
            .field("queue_buffering_max_ms", &self.queue_buffering_max_ms)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Default for Kafka {
    fn default() -> Self {
        Self {
            kafka_broker: "localhost:9092".into(),
            batch_num_messages: 10_000,
            compression_codec: "none".into(),
            queue_buffering_max_messages: 100_000,
            queue_buffering_max_kbytes: 1_048_576,
            queue_buffering_max_ms: 5,
            username: None,
            password: None,
            options: BTreeMap::new(),
            kafka_topic: Ignored,
            switch: Ignored,
        }
    }
}

/// `[logs]`: the log-file exporter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logs {
    /// Metric records.
    pub metric_dir: PathBuf,
    /// Events.
    pub event_dir: PathBuf,
    /// Table metadata.
    pub meta_dir: PathBuf,
    /// Debug output of probes.
    pub debug_dir: PathBuf,
    /// Rotate a file when it reaches this size, MiB.
    pub max_file_size_mb: u64,
    /// Rotated files kept per directory.
    pub max_files: u32,
    /// V2 `metric_total_size`, MB: mapped onto `max_file_size_mb`
    /// (`metric_total_size / max_files`) unless that is set too.
    pub metric_total_size: Option<u64>,
}

impl Default for Logs {
    fn default() -> Self {
        Self {
            metric_dir: "/var/log/gala-gopher/metrics".into(),
            event_dir: "/var/log/gala-gopher/event".into(),
            meta_dir: "/var/log/gala-gopher/meta".into(),
            debug_dir: "/var/log/gala-gopher/debug".into(),
            max_file_size_mb: 16,
            max_files: 5,
            metric_total_size: None,
        }
    }
}

/// `[supervisor]`: what happens when a probe stops.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Supervisor {
    /// Restarts before the probe is marked failed.
    pub restart_max: u32,
    /// Wait before the first restart, doubled after each one, milliseconds.
    pub restart_backoff_ms: u64,
    /// Time a probe gets to stop before it is killed, milliseconds.
    pub stop_grace_ms: u64,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self {
            restart_max: 3,
            restart_backoff_ms: 1000,
            stop_grace_ms: 5000,
        }
    }
}

/// Whether a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// Run it.
    #[default]
    On,
    /// Do not run it.
    Off,
    /// Run it when `start_check` prints a number > 0 (an entry without
    /// one runs as `on`).
    Auto,
}

/// How `start_check` output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    /// The first line is a number; > 0 means start.
    #[default]
    Count,
}

/// One `[[probes]]` entry: a native probe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConf {
    /// The probe's registered name (required: an absent name is reported by
    /// validation, with the line of the entry).
    #[serde(default)]
    pub name: String,
    /// Legacy getopt parameters, e.g. `-t 5`.
    #[serde(default)]
    pub param: String,
    /// Whether it runs.
    #[serde(default)]
    pub switch: Switch,
    /// A C probe in a shared library (new-ABI descriptor, or a legacy
    /// source built with `-Dmain=probe_main_<name>`).
    #[serde(default, deserialize_with = "legacy::opt_nonempty_path")]
    pub library: Option<PathBuf>,
    /// C probes: kill and restart the probe host after this many seconds
    /// without a record or a finished collection (default 3 × period + 10).
    #[serde(default)]
    pub hang_timeout_secs: Option<u64>,
    /// V0 per-probe `interval`, seconds: mapped onto `-t` in `param` (when
    /// `param` has no `-t`).
    #[serde(default)]
    pub interval: Option<u64>,
    /// The processes the probe watches (none: every process).
    #[serde(default)]
    pub snoopers: Option<ipc::Snoopers>,
    /// With `switch = "auto"`: a shell command whose first output line must
    /// be a number > 0 before the probe starts (e.g. one that counts the
    /// server processes an LB probe attaches to). Without one, `auto` means
    /// `on`, as in the legacy configs.
    #[serde(default, deserialize_with = "legacy::opt_nonempty_string")]
    pub start_check: Option<String>,
    /// How `start_check` output is read.
    #[serde(default)]
    pub check_type: CheckType,
}

/// One `[[extend_probes]]` entry: a probe run as a child process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendProbeConf {
    /// The probe's name (required, like `command`; reported by validation).
    #[serde(default)]
    pub name: String,
    /// Command line that starts the probe; `param` is appended to it.
    #[serde(default)]
    pub command: String,
    /// Extra arguments appended to the command.
    #[serde(default)]
    pub param: String,
    /// Whether it runs.
    #[serde(default)]
    pub switch: Switch,
    /// With `switch = "auto"`: a shell command whose first output line must be a number > 0.
    #[serde(default, deserialize_with = "legacy::opt_nonempty_string")]
    pub start_check: Option<String>,
    /// How `start_check` output is read.
    #[serde(default)]
    pub check_type: CheckType,
    /// A legacy 2.x probe binary: its params and snoopers go over the SysV
    /// message queue (docs/compat.md).
    #[serde(default)]
    pub ipc: Option<ipc::LegacyIpcConf>,
    /// The processes the probe watches, given to it at each start in its
    /// environment (docs/snoopers.md). With an `ipc` block its
    /// `ipc.snoopers` are the ones: both at once are refused
    /// ([`ExtendProbeConf::snoopers_conflict`]).
    #[serde(default)]
    pub snoopers: Option<ipc::Snoopers>,
}

impl ExtendProbeConf {
    /// Why `snoopers` cannot be used with this entry: a 2.x probe binary
    /// (`ipc`) takes its snoopers in `ipc.snoopers`, over the message queue.
    pub fn snoopers_conflict(&self) -> Option<String> {
        (self.snoopers.is_some() && self.ipc.is_some()).then(|| {
            "`snoopers` and `ipc` are both set: a 2.x probe binary takes its snoopers from \
             `ipc.snoopers` (sent over its message queue); move them there"
                .to_owned()
        })
    }
}

impl Config {
    /// Reads and validates a config file: TOML, or legacy libconfig when the
    /// extension is `.conf` or when the content is libconfig and not TOML.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match Self::load_partial(path) {
            (Some(cfg), problems) if problems.is_empty() => Ok(cfg),
            (_, problems) => Err(ConfigError::sorted(problems)),
        }
    }

    /// Reads a config file as far as it can be read, for `check-config`: the
    /// config (`None` when the file cannot be read; otherwise bad keys keep
    /// their defaults) and every problem found, in line order.
    pub fn load_partial(path: &Path) -> (Option<Config>, Vec<ConfigProblem>) {
        let src = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) => {
                let p = ConfigProblem::new(path, None, format!("cannot read the config file: {e}"));
                return (None, vec![p]);
            }
        };
        let (cfg, problems) = match path.extension().and_then(|e| e.to_str()) {
            Some("conf" | "cfg") => Self::libconfig_partial(&src, path),
            Some("toml") => Self::toml_partial(&src, path),
            _ if source::is_toml(&src) => Self::toml_partial(&src, path),
            _ if crate::libconfig::parse(&src).is_ok() => Self::libconfig_partial(&src, path),
            _ => Self::toml_partial(&src, path),
        };
        (Some(cfg), problems)
    }

    /// Reads a TOML config (`source` names the file in messages and anchors
    /// relative paths), then validates it.
    pub fn from_toml_str(src: &str, source: &Path) -> Result<Config, ConfigError> {
        Self::finish(Self::toml_partial(src, source))
    }

    /// Reads a legacy libconfig config, then validates it.
    pub fn from_libconfig_str(src: &str, source: &Path) -> Result<Config, ConfigError> {
        Self::finish(Self::libconfig_partial(src, source))
    }

    fn toml_partial(src: &str, source: &Path) -> (Config, Vec<ConfigProblem>) {
        let (settings, problems, guessed) = source::toml_settings(src, source);
        source::build(&settings, source, problems, &guessed)
    }

    fn libconfig_partial(src: &str, source: &Path) -> (Config, Vec<ConfigProblem>) {
        // The libconfig reader leaves broken settings out: it guesses nothing.
        let (settings, problems) = legacy::parse(src, source);
        source::build(&settings, source, problems, &Default::default())
    }

    fn finish((cfg, problems): (Config, Vec<ConfigProblem>)) -> Result<Config, ConfigError> {
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::sorted(problems))
        }
    }

    /// Checks the values (pure); reports every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = validate::problems(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::sorted(problems))
        }
    }

    /// Where the `.meta` directory came from and how to choose another, to
    /// follow an error about the directory itself (it cannot be read, or
    /// holds no `.meta` file).
    pub fn meta_dir_note(&self) -> String {
        let file = self.source.display();
        match &self.meta_dir_origin {
            MetaDirOrigin::Written { line } => {
                let at = line.map_or_else(|| file.to_string(), |l| format!("{file}:{l}"));
                format!(
                    "the meta directory is set by `global.meta_dir` ({at}); a relative path is relative to \
                     the config file's directory"
                )
            }
            MetaDirOrigin::Searched { tried } => {
                let list: Vec<String> = tried.iter().map(|d| d.display().to_string()).collect();
                format!(
                    "`global.meta_dir` is not set in {file}, so the first of these directories holding .meta \
                     files is used (searched in this order): {}; set `global.meta_dir` to the directory of \
                     the .meta files",
                    list.join(", ")
                )
            }
        }
    }
}

// Written for the default build: every built-in probe and Kafka (a build
// without some of them refuses configs these tests load; tests/integration/
// tail.rs checks such a build).
#[cfg(all(
    test,
    feature = "kafka",
    feature = "probe-system_meminfo",
    feature = "probe-system_vmstat",
    feature = "probe-system_inode",
    feature = "probe-system_tcp",
    feature = "probe-tcp_link",
    feature = "probe-system_cpu",
    feature = "probe-system_net"
))]
mod tests;
