//! gala-spider's configuration: TOML with the seed's sections and keys
//! (docs/compat.md §9: `[global] data_source, ui_source`, `[kafka] topic, broker`,
//! `[table_info] base_table_name, other_table_name`, `[option] exclude_addr`,
//! `[neo4j] address, username, password`) plus this service's own keys.
//!
//! Loading is `parse -> serde structs -> validate()`. Every struct denies
//! unknown keys; [`Config::validate`] is pure and reports every problem at
//! once, each naming the file, the line and the key.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::topology::AddrFilter;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[global]`.
    pub global: Global,
    /// `[kafka]`: the `kafka` source.
    pub kafka: Kafka,
    /// `[logfile]`: the `logfile` source.
    pub logfile: Logfile,
    /// `[table_info]`.
    pub table_info: TableInfo,
    /// `[option]`.
    pub option: Options,
    /// `[neo4j]`: the `neo4j` sink.
    pub neo4j: Neo4j,
    /// `[server]`: REST API, web page and self-metrics.
    pub server: Server,
}

/// Where records come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataSource {
    /// A consumer group on the metric topic.
    #[default]
    Kafka,
    /// The metric log files of a local gala-gopher (`[logfile]`).
    Logfile,
}

/// Where the graph goes, besides the REST API and the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UiSource {
    /// Neo4j through its HTTP Query API v2.
    #[default]
    Neo4j,
    /// Only the REST API and the page.
    None,
}

/// `[global]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Global {
    /// `kafka` or `logfile`.
    pub data_source: DataSource,
    /// `neo4j` or `none`.
    pub ui_source: UiSource,
    /// trace, debug, info, warn or error.
    pub log_level: String,
}

impl Default for Global {
    fn default() -> Self {
        Self {
            data_source: DataSource::Kafka,
            ui_source: UiSource::Neo4j,
            log_level: "info".into(),
        }
    }
}

/// `[kafka]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kafka {
    /// The metric topic.
    pub topic: String,
    /// Bootstrap brokers, `host:port[,host:port]`.
    pub broker: String,
    /// The consumer group: spiders of one group share the partitions.
    pub group_id: String,
    /// Where a new group starts: `latest` or `earliest`.
    pub auto_offset_reset: String,
}

impl Default for Kafka {
    fn default() -> Self {
        Self {
            topic: "gala_gopher".into(),
            broker: "localhost:9092".into(),
            group_id: "gala-spider".into(),
            auto_offset_reset: "latest".into(),
        }
    }
}

/// `[logfile]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logfile {
    /// gala-gopher's `[logs] metric_dir`: `metrics.log` is followed there,
    /// across rotations.
    pub metric_dir: PathBuf,
    /// How often the file is looked at when nothing new came, ms.
    pub poll_ms: u64,
}

impl Default for Logfile {
    fn default() -> Self {
        Self {
            metric_dir: "/var/log/gala-gopher/metrics".into(),
            poll_ms: 200,
        }
    }
}

/// `[table_info]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableInfo {
    /// The connection table (tcp_link).
    pub base_table_name: String,
    /// The load-balancer tables used to stitch flows, and `dnsmasq_link`
    /// for DNS edges (a string or a list).
    #[serde(deserialize_with = "one_or_many")]
    pub other_table_name: Vec<String>,
}

impl Default for TableInfo {
    fn default() -> Self {
        Self {
            base_table_name: "tcp_link".into(),
            other_table_name: vec![
                "nginx_link".into(),
                "ipvs_link".into(),
                "haproxy_link".into(),
                "dnsmasq_link".into(),
            ],
        }
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        One(String),
        Many(Vec<String>),
    }
    Ok(match V::deserialize(d)? {
        V::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        V::Many(v) => v,
    })
}

/// `[option]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Addresses (`10.0.0.1`) or networks (`10.0.0.0/8`) whose links are
    /// dropped (a string, comma separated, or a list).
    #[serde(deserialize_with = "one_or_many")]
    pub exclude_addr: Vec<String>,
    /// Nodes and edges not refreshed for this long expire, s.
    pub expire_secs: u64,
    /// The topology is snapshotted and written to the sink this often, s.
    pub period_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            exclude_addr: Vec::new(),
            expire_secs: 60,
            period_secs: 5,
        }
    }
}

/// `[neo4j]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Neo4j {
    /// The HTTP endpoint, `http://host:port` (the Query API v2).
    pub address: String,
    /// The database.
    pub database: String,
    /// Basic auth user (empty: no auth).
    pub username: String,
    /// Basic auth password.
    pub password: String,
    /// Connect and request timeout, ms.
    pub timeout_ms: u64,
    /// This spider's name on the relationships it writes (`writer`), so
    /// that several spiders (one consumer group) share one database: each
    /// reconciles and deletes only its own. Empty in the file: `<host
    /// name>:<server port>`, filled in by [`Config::parse`] (stable across
    /// restarts, unique per spider of a host).
    pub writer: String,
}

impl Default for Neo4j {
    fn default() -> Self {
        Self {
            address: "http://127.0.0.1:7474".into(),
            database: "neo4j".into(),
            username: "neo4j".into(),
            password: String::new(),
            timeout_ms: 3000,
            writer: String::new(),
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// Bind address.
    pub bind_addr: String,
    /// Port of the REST API, the page and `/metrics` (0: off).
    pub port: u16,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            bind_addr: "127.0.0.1".into(),
            port: 11115,
        }
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// Line, 1-based, when known.
    pub line: Option<usize>,
    /// `section.key`, when the problem is about one key.
    pub key: Option<String>,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: ", self.file.display())?,
            None => write!(f, "{}: ", self.file.display())?,
        }
        if let Some(k) = &self.key {
            write!(f, "key `{k}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with a config file, one problem per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The line (1-based) where `section.key` is written in `text`, found by a
/// scan of the TOML's section headers and `key =` lines.
fn line_of(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('[') {
            current = h.trim_end_matches(']').trim().to_owned();
            continue;
        }
        if current == section {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim().trim_matches('"') == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// `<host name>:<port>`: the default `[neo4j] writer`.
pub fn default_writer(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!(
        "{}:{port}",
        if host.is_empty() { "localhost" } else { host }
    )
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: path.to_path_buf(),
                line: None,
                key: None,
                message: format!("cannot read the config: {e}"),
            }],
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text`, read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut cfg: Self = toml::from_str(text).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: path.to_path_buf(),
                line: e.span().map(|s| line_of_offset(text, s.start)),
                key: None,
                message: e.message().trim().to_owned(),
            }],
        })?;
        let problems: Vec<Problem> = cfg
            .validate()
            .into_iter()
            .map(|(section, key, message)| Problem {
                file: path.to_path_buf(),
                line: line_of(text, section, key),
                key: Some(format!("{section}.{key}")),
                message,
            })
            .collect();
        if problems.is_empty() {
            if cfg.neo4j.writer.is_empty() {
                cfg.neo4j.writer = default_writer(cfg.server.port);
            }
            Ok(cfg)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every problem, as (section, key, message). Pure.
    pub fn validate(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut p = Vec::new();
        if !matches!(
            self.global.log_level.as_str(),
            "trace" | "debug" | "info" | "warn" | "error"
        ) {
            p.push((
                "global",
                "log_level",
                format!(
                    "expected one of trace, debug, info, warn, error, got \"{}\"",
                    self.global.log_level
                ),
            ));
        }
        if self.global.data_source == DataSource::Kafka {
            if self.kafka.topic.trim().is_empty() {
                p.push(("kafka", "topic", "expected a topic name, got \"\"".into()));
            }
            if self.kafka.broker.trim().is_empty()
                || self.kafka.broker.split(',').any(|b| {
                    b.trim()
                        .rsplit_once(':')
                        .is_none_or(|(_, port)| port.parse::<u16>().is_err())
                })
            {
                p.push((
                    "kafka",
                    "broker",
                    format!(
                        "expected host:port[,host:port...], got \"{}\"",
                        self.kafka.broker
                    ),
                ));
            }
            if self.kafka.group_id.trim().is_empty() {
                p.push((
                    "kafka",
                    "group_id",
                    "expected a consumer group name, got \"\"".into(),
                ));
            }
            if !matches!(self.kafka.auto_offset_reset.as_str(), "latest" | "earliest") {
                p.push((
                    "kafka",
                    "auto_offset_reset",
                    format!(
                        "expected \"latest\" or \"earliest\", got \"{}\"",
                        self.kafka.auto_offset_reset
                    ),
                ));
            }
        }
        if self.global.data_source == DataSource::Logfile {
            if self.logfile.metric_dir.as_os_str().is_empty() {
                p.push((
                    "logfile",
                    "metric_dir",
                    "expected a directory, got \"\"".into(),
                ));
            }
            if self.logfile.poll_ms == 0 || self.logfile.poll_ms > 60_000 {
                p.push((
                    "logfile",
                    "poll_ms",
                    format!("expected 1..=60000, got {}", self.logfile.poll_ms),
                ));
            }
        }
        if self.table_info.base_table_name != gala_common::topology_records::TCP_LINK {
            p.push((
                "table_info",
                "base_table_name",
                format!(
                    "expected \"tcp_link\" (the only connection table this service reads), got \"{}\"",
                    self.table_info.base_table_name
                ),
            ));
        }
        for t in &self.table_info.other_table_name {
            if !gala_common::topology_records::LB_TABLES.contains(&t.as_str())
                && t != gala_common::topology_records::DNSMASQ_LINK
            {
                p.push((
                    "table_info",
                    "other_table_name",
                    format!(
                        "expected nginx_link, ipvs_link, haproxy_link or dnsmasq_link, got \"{t}\""
                    ),
                ));
            }
        }
        for a in &self.option.exclude_addr {
            if AddrFilter::parse_one(a).is_none() {
                p.push((
                    "option",
                    "exclude_addr",
                    format!("expected an IP address or a network such as 10.0.0.0/8, got \"{a}\""),
                ));
            }
        }
        if self.option.expire_secs == 0 || self.option.expire_secs > 86_400 {
            p.push((
                "option",
                "expire_secs",
                format!("expected 1..=86400, got {}", self.option.expire_secs),
            ));
        }
        if self.option.period_secs == 0 || self.option.period_secs > 3600 {
            p.push((
                "option",
                "period_secs",
                format!("expected 1..=3600, got {}", self.option.period_secs),
            ));
        }
        if self.global.ui_source == UiSource::Neo4j {
            let a = &self.neo4j.address;
            let ok = a
                .strip_prefix("http://")
                .map(|rest| rest.trim_end_matches('/'))
                .is_some_and(|hp| {
                    hp.rsplit_once(':')
                        .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok())
                });
            if !ok {
                p.push((
                    "neo4j",
                    "address",
                    format!(
                        "expected http://host:port (the HTTP Query API; bolt:// is not spoken here), got \"{a}\""
                    ),
                ));
            }
            if self.neo4j.database.is_empty()
                || !self
                    .neo4j
                    .database
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                p.push((
                    "neo4j",
                    "database",
                    format!("expected a database name, got \"{}\"", self.neo4j.database),
                ));
            }
            if self.neo4j.timeout_ms == 0 || self.neo4j.timeout_ms > 600_000 {
                p.push((
                    "neo4j",
                    "timeout_ms",
                    format!("expected 1..=600000, got {}", self.neo4j.timeout_ms),
                ));
            }
            let w = &self.neo4j.writer;
            if w.len() > 128 || w.chars().any(char::is_control) {
                p.push((
                    "neo4j",
                    "writer",
                    format!("expected at most 128 printable characters, got {w:?}"),
                ));
            }
        }
        if self.server.bind_addr.parse::<IpAddr>().is_err() {
            p.push((
                "server",
                "bind_addr",
                format!("expected an IP address, got \"{}\"", self.server.bind_addr),
            ));
        }
        p
    }

    /// The exclusion filter of `[option] exclude_addr` (validated).
    pub fn exclusions(&self) -> AddrFilter {
        AddrFilter::new(&self.option.exclude_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("spider.toml"), text)
    }

    #[test]
    fn defaults_are_valid_and_the_shipped_file_loads() {
        assert!(Config::default().validate().is_empty());
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gala-spider.toml");
        let c = Config::load(&shipped).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.table_info.base_table_name, "tcp_link");
    }

    #[test]
    fn seed_keys_are_read() {
        let c = parse(
            r#"
[global]
data_source = "kafka"
ui_source = "neo4j"
[kafka]
topic = "gala_gopher"
broker = "10.0.0.1:9092"
[table_info]
base_table_name = "tcp_link"
other_table_name = "nginx_link, ipvs_link"
[option]
exclude_addr = "1.2.3.4, 10.0.0.0/8"
[neo4j]
address = "http://10.0.0.2:7474"
username = "neo4j"
password = "pw"
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.table_info.other_table_name, ["nginx_link", "ipvs_link"]);
        assert_eq!(c.option.exclude_addr, ["1.2.3.4", "10.0.0.0/8"]);
        assert_eq!(c.neo4j.password, "pw");
    }

    #[test]
    fn every_problem_is_reported_with_file_line_and_key() {
        let e = parse(
            "[kafka]\nbroker = \"nohost\"\n\n[option]\nexclude_addr = [\"1.2.3.999\"]\nexpire_secs = 0\n[neo4j]\naddress = \"bolt://x:7687\"\n",
        )
        .expect_err("invalid");
        let text = e.to_string();
        assert_eq!(
            text,
            "spider.toml:2: key `kafka.broker`: expected host:port[,host:port...], got \"nohost\"\n\
             spider.toml:5: key `option.exclude_addr`: expected an IP address or a network such as 10.0.0.0/8, got \"1.2.3.999\"\n\
             spider.toml:6: key `option.expire_secs`: expected 1..=86400, got 0\n\
             spider.toml:8: key `neo4j.address`: expected http://host:port (the HTTP Query API; bolt:// is not spoken here), got \"bolt://x:7687\""
        );
    }

    #[test]
    fn the_neo4j_writer_defaults_to_host_and_port() {
        let c = parse("[server]\nport = 12345\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.neo4j.writer.ends_with(":12345"), "{}", c.neo4j.writer);
        assert!(c.neo4j.writer.len() > ":12345".len());
        let c = parse("[neo4j]\nwriter = \"spider-a\"\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.neo4j.writer, "spider-a");
        let e = parse("[neo4j]\nwriter = \"a\\nb\"\n").expect_err("control character");
        assert!(e.to_string().contains("neo4j.writer"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_enums_are_errors_with_a_line() {
        let e = parse("[global]\n\nsource = \"kafka\"\n").expect_err("unknown key");
        assert_eq!(e.problems[0].line, Some(3), "{e}");
        assert!(e.to_string().contains("unknown field `source`"), "{e}");
        let e = parse("[global]\ndata_source = \"redis\"\n").expect_err("bad enum");
        assert_eq!(e.problems[0].line, Some(2), "{e}");
        assert!(e.to_string().contains("kafka"), "{e}");
    }
}
