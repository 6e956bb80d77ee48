//! The daemon's configuration.
//!
//! The native format is TOML with the legacy section and key names
//! (docs/compat.md §4); a legacy libconfig `gala-gopher.conf` is read into the same
//! structs ([`legacy`]). Loading is `parse -> serde structs -> resolve paths ->
//! validate()`; [`Config::validate`] is pure and reports every problem at once.
//!
//! Defaults live in one place per struct (its `Default` impl; the per-section
//! channel defaults in [`Config::default`]). Every struct denies unknown keys.
//! Keys the legacy agent knew but this agent does not use are accepted and
//! ignored; they are the fields of type [`Ignored`].

mod error;
pub mod legacy;
mod source;
mod validate;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use error::{ConfigError, ConfigProblem};
pub use legacy::Ignored;
pub use source::Locations;

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
    /// `[[probes]]`: native probes.
    pub probes: Vec<ProbeConf>,
    /// `[[extend_probes]]`: probes run as child processes.
    pub extend_probes: Vec<ExtendProbeConf>,
    /// Where each key was written, for error messages. Not part of equality:
    /// two configs with the same values compare equal wherever they came from.
    pub locations: Locations,
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
            probes: Vec::new(),
            extend_probes: Vec::new(),
            locations: Locations::default(),
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
    /// file's directory; when absent, see [`default_meta_dir`].
    pub meta_dir: PathBuf,
    /// Serve the REST API (`[rest_api_server]`).
    #[serde(deserialize_with = "legacy::on_off")]
    pub rest_api_on: bool,
    /// Where state (the machine id) is persisted.
    pub state_dir: PathBuf,
    /// V0 `log_directory`: accepted and ignored (see `[logs]`).
    pub log_directory: Ignored,
}

impl Default for Global {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_file_name: None,
            pin_path: "/sys/fs/bpf/gala-gopher".into(),
            meta_dir: default_meta_dir(None),
            rest_api_on: false,
            state_dir: "/var/lib/gala-gopher".into(),
            log_directory: Ignored,
        }
    }
}

/// The default `.meta` directory: the `meta/` sibling of the config file's
/// directory when it holds `.meta` files (running from the source tree, as in
/// `config/gala-gopher.toml` -> `meta/`), else `/opt/gala-gopher/meta` when it
/// exists, else `/etc/gala-gopher/meta`.
pub fn default_meta_dir(config_dir: Option<&Path>) -> PathBuf {
    if let Some(dir) = config_dir {
        let sibling = match dir.components().next_back() {
            Some(std::path::Component::Normal(_)) => dir.parent().unwrap_or(dir).join("meta"),
            _ => dir.join("..").join("meta"),
        };
        if has_meta_files(&sibling) {
            return sibling;
        }
    }
    let opt = Path::new("/opt/gala-gopher/meta");
    if opt.is_dir() {
        opt.to_path_buf()
    } else {
        PathBuf::from("/etc/gala-gopher/meta")
    }
}

fn has_meta_files(dir: &Path) -> bool {
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
    /// V2 `desc_language`: accepted and ignored.
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
    /// Serve TLS (legacy `"on"`/`"off"` accepted). Not supported yet.
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
    /// Serve TLS (legacy `"on"`/`"off"` accepted). Not supported yet.
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
    /// Run it when `start_check` prints a number > 0 (extend probes).
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
    /// The probe's registered name.
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
    /// V0 per-probe `interval`: accepted and ignored (use `-t` in `param`).
    #[serde(default)]
    pub interval: Ignored,
}

/// One `[[extend_probes]]` entry: a probe run as a child process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendProbeConf {
    /// The probe's name.
    pub name: String,
    /// Command line that starts the probe; `param` is appended to it.
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
}

impl Config {
    /// Reads and validates a config file: TOML, or legacy libconfig when the
    /// extension is `.conf` or when the content is libconfig and not TOML.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single(ConfigProblem::new(
                path,
                None,
                format!("cannot read the config file: {e}"),
            ))
        })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("conf" | "cfg") => Self::from_libconfig_str(&src, path),
            Some("toml") => Self::from_toml_str(&src, path),
            _ if source::is_toml(&src) => Self::from_toml_str(&src, path),
            _ if crate::libconfig::parse(&src).is_ok() => Self::from_libconfig_str(&src, path),
            _ => Self::from_toml_str(&src, path),
        }
    }

    /// Reads a TOML config (`source` names the file in messages and anchors
    /// relative paths), then validates it.
    pub fn from_toml_str(src: &str, source: &Path) -> Result<Config, ConfigError> {
        let settings = source::toml_settings(src, source)?;
        source::build(&settings, source)
    }

    /// Reads a legacy libconfig config, then validates it.
    pub fn from_libconfig_str(src: &str, source: &Path) -> Result<Config, ConfigError> {
        let settings = legacy::parse(src, source)?;
        source::build(&settings, source)
    }

    /// Checks the values (pure); reports every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }
}

#[cfg(test)]
mod tests;
