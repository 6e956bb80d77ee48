//! [`Config::validate`]: pure checks of the values, every problem reported.

use std::collections::HashMap;

use gopher_probes::Params;

use super::{trim, Config, ConfigProblem, OutChannel, Switch};

const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

struct Checker<'a> {
    cfg: &'a Config,
    out: Vec<ConfigProblem>,
}

impl Checker<'_> {
    fn problem(&mut self, key: String, message: String) {
        let line = self.cfg.locations.line(&key);
        self.out
            .push(ConfigProblem::at_key(&self.cfg.source, line, key, message));
    }

    fn positive(&mut self, key: &str, zero: bool) {
        if zero {
            self.problem(
                key.to_string(),
                "expected a number greater than 0, got 0".into(),
            );
        }
    }

    fn port(&mut self, key: &str, v: u16) {
        if v == 0 {
            self.problem(key.to_string(), "expected a port 1..65535, got 0".into());
        }
    }

    /// With `ssl_auth` on, the TLS files must exist, be readable and parse
    /// (PEM key, certificate, CA) and go together; the problem is reported
    /// on the key of the bad file, or on `ssl_auth` when a file is not set.
    fn tls(&mut self, section: &str, on: bool, files: crate::tls::TlsFiles<'_>) {
        if !on {
            return;
        }
        if let Err(e) = crate::tls::load(files) {
            let key = format!("{section}.{}", e.key);
            if self.cfg.locations.contains(&key) {
                self.problem(key, e.message);
            } else {
                self.problem(
                    format!("{section}.ssl_auth"),
                    format!("`{}`: {}", e.key, e.message),
                );
            }
        }
    }

    fn not_web(&mut self, section: &str, ch: OutChannel) {
        if ch == OutChannel::WebServer {
            self.problem(
                format!("{section}.out_channel"),
                "expected \"logs\", \"kafka\" or \"\" (off), got \"web_server\" (only metrics are served on the web server)"
                    .into(),
            );
        }
    }

    /// `out_channel = "kafka"` in a build without Kafka (tail.conf).
    fn kafka_built(&mut self, section: &str, ch: OutChannel) {
        if ch == OutChannel::Kafka && !trim::KAFKA {
            self.problem(format!("{section}.out_channel"), trim::kafka_left_out());
        }
    }

    fn topic(&mut self, section: &str, ch: OutChannel, topic: &str) {
        if ch == OutChannel::Kafka && topic.trim().is_empty() {
            self.problem(
                format!("{section}.kafka_topic"),
                "expected a topic name (out_channel is kafka), got an empty string".into(),
            );
        }
    }
}

/// Every problem of the values, in no particular order.
pub(super) fn problems(cfg: &Config) -> Vec<ConfigProblem> {
    let mut c = Checker {
        cfg,
        out: Vec::new(),
    };

    let level = &cfg.global.log_level;
    if !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
        c.problem(
            "global.log_level".into(),
            format!("expected one of trace, debug, info, warn, error, got `{level}`"),
        );
    }

    c.not_web("event", cfg.event.out_channel);
    c.not_web("meta", cfg.meta.out_channel);
    c.kafka_built("metric", cfg.metric.out_channel);
    c.kafka_built("event", cfg.event.out_channel);
    c.kafka_built("meta", cfg.meta.out_channel);
    c.topic("metric", cfg.metric.out_channel, &cfg.metric.kafka_topic);
    c.topic("event", cfg.event.out_channel, &cfg.event.kafka_topic);
    c.topic("meta", cfg.meta.out_channel, &cfg.meta.kafka_topic);

    c.positive("imdb.max_tables_num", cfg.imdb.max_tables_num == 0);
    c.positive("imdb.max_records_num", cfg.imdb.max_records_num == 0);
    c.positive("imdb.max_metrics_num", cfg.imdb.max_metrics_num == 0);
    c.positive("imdb.record_timeout", cfg.imdb.record_timeout == 0);

    c.port("web_server.port", cfg.web_server.port);
    let w = &cfg.web_server;
    c.tls(
        "web_server",
        w.ssl_auth,
        crate::tls::TlsFiles {
            private_key: w.private_key.as_deref(),
            cert_file: w.cert_file.as_deref(),
            ca_file: w.ca_file.as_deref(),
        },
    );
    c.port("rest_api_server.port", cfg.rest_api_server.port);
    let r = &cfg.rest_api_server;
    c.tls(
        "rest_api_server",
        r.ssl_auth,
        crate::tls::TlsFiles {
            private_key: r.private_key.as_deref(),
            cert_file: r.cert_file.as_deref(),
            ca_file: r.ca_file.as_deref(),
        },
    );

    let codec = &cfg.kafka.compression_codec;
    if !CODECS.contains(&codec.as_str()) {
        c.problem(
            "kafka.compression_codec".into(),
            format!("expected one of none, gzip, snappy, lz4, zstd, got `{codec}`"),
        );
    }
    let uses_kafka = [
        cfg.metric.out_channel,
        cfg.event.out_channel,
        cfg.meta.out_channel,
    ]
    .contains(&OutChannel::Kafka);
    if uses_kafka && cfg.kafka.kafka_broker.trim().is_empty() {
        c.problem(
            "kafka.kafka_broker".into(),
            "expected a broker address host:port (a channel uses kafka), got an empty string"
                .into(),
        );
    } else if let Some(bad) = bad_broker(&cfg.kafka.kafka_broker) {
        c.problem(
            "kafka.kafka_broker".into(),
            format!(
                "expected host:port[,host:port...] with ports 1..65535, got `{bad}` in `{}`",
                cfg.kafka.kafka_broker
            ),
        );
    }

    c.positive("logs.max_file_size_mb", cfg.logs.max_file_size_mb == 0);
    c.positive("logs.max_files", cfg.logs.max_files == 0);

    // Probe names are unique across both lists: name -> key of the first use.
    let mut names: HashMap<&str, String> = HashMap::new();
    for (i, p) in cfg.probes.iter().enumerate() {
        check_name(&mut c, &mut names, format!("probes[{i}]"), &p.name);
        if let Err(e) = Params::parse(&p.param) {
            c.problem(format!("probes[{i}].param"), e.to_string());
        }
        // A probe switched off is not looked up (legacy configs list probes
        // this build does not have); one with `library` is the user's own.
        // A built-in probe this build left out (tail.conf) is told apart
        // from an unknown name.
        if p.switch != Switch::Off
            && p.library.is_none()
            && !p.name.trim().is_empty()
            && !known_probe(&p.name)
        {
            let message = trim::probe_left_out_message(&p.name)
                .unwrap_or_else(|| unknown_probe_message(&p.name));
            c.problem(format!("probes[{i}].name"), message);
        }
    }
    for (i, p) in cfg.extend_probes.iter().enumerate() {
        check_name(&mut c, &mut names, format!("extend_probes[{i}]"), &p.name);
        if p.command.trim().is_empty() {
            let key = format!("extend_probes[{i}].command");
            let message = if cfg.locations.contains(&key) {
                "expected a command to run, got an empty string"
            } else {
                "expected a command to run, but the entry has no `command`"
            };
            c.problem(key, message.into());
        }
        if p.switch == Switch::Auto && p.start_check.is_none() {
            c.problem(
                format!("extend_probes[{i}].start_check"),
                "expected a shell command printing a count: switch = \"auto\" starts the probe only when it prints a \
                 number > 0"
                    .into(),
            );
        }
    }

    c.out
}

/// Whether a native or built-in C probe of this name is compiled in.
fn known_probe(name: &str) -> bool {
    gopher_probes::native_probe(name).is_some() || gopher_probes_c::builtin(name).is_some()
}

/// The message for a probe name that is neither a probe of this build nor
/// one it left out.
fn unknown_probe_message(name: &str) -> String {
    let left_out = trim::probes_left_out();
    let left_out = if left_out.is_empty() {
        String::new()
    } else {
        format!("; left out of this build: {}", left_out.join(", "))
    };
    format!(
        "expected the name of a probe of this build ({}{left_out}), got unknown probe `{name}` (a C probe of \
         your own needs `library`; a probe switched off is not checked)",
        known_probes().join(", ")
    )
}

/// The names of the native and built-in C probes of this build.
fn known_probes() -> Vec<&'static str> {
    gopher_probes::NATIVE_PROBES
        .iter()
        .map(|d| d.name)
        .chain(gopher_probes_c::BUILTIN.iter().map(|c| c.name))
        .collect()
}

fn check_name<'a>(
    c: &mut Checker<'_>,
    names: &mut HashMap<&'a str, String>,
    at: String,
    name: &'a str,
) {
    if name.trim().is_empty() {
        let key = format!("{at}.name");
        let message = if c.cfg.locations.contains(&key) {
            "expected a probe name, got an empty string"
        } else {
            "expected a probe name, but the entry has no `name`"
        };
        c.problem(key, message.into());
        return;
    }
    if let Some(first) = names.get(name) {
        let place = match c.cfg.locations.line(first) {
            Some(line) => format!("{first} (line {line})"),
            None => first.clone(),
        };
        c.problem(
            format!("{at}.name"),
            format!("probe `{name}` is already declared at {place}"),
        );
    } else {
        names.insert(name, at);
    }
}

/// The first entry of a broker list that librdkafka could not use: an empty
/// entry, or a port that is not 1..65535. An entry is `host`, `host:port`,
/// `[v6 address]:port`, or either behind a `scheme://` (as librdkafka takes
/// them); a bare IPv6 address has several colons and no port to check.
fn bad_broker(list: &str) -> Option<&str> {
    if list.trim().is_empty() {
        return None;
    }
    list.split(',').map(str::trim).find(|entry| {
        let hostport = entry.split_once("://").map_or(*entry, |(_, rest)| rest);
        let port = if let Some(rest) = hostport.strip_prefix('[') {
            match rest.split_once(']') {
                Some((_, "")) => None,
                Some((_, p)) => Some(p.strip_prefix(':').unwrap_or("x")),
                None => return true,
            }
        } else if hostport.matches(':').count() == 1 {
            hostport.split_once(':').map(|(_, p)| p)
        } else {
            None
        };
        hostport.is_empty() || port.is_some_and(|p| !matches!(p.parse::<u16>(), Ok(1..)))
    })
}
