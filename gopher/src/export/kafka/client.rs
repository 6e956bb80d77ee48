//! From `[kafka]` to librdkafka properties and the exporter's queue bounds
//! (pure, so it is tested without a broker).

use crate::config::Kafka;

/// Most messages handed to librdkafka at once, whatever the bound.
const WINDOW_MESSAGES_MAX: u64 = 50_000;
/// Most bytes handed to librdkafka at once, whatever the bound.
const WINDOW_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Least bytes handed to librdkafka at once (when the bound allows).
const WINDOW_BYTES_MIN: u64 = 64 * 1024;
/// librdkafka's own limits are set a little above the window, so that a
/// delivery report served late never makes it refuse a message.
const LIBRDKAFKA_SLACK_MESSAGES: u64 = 1024;
const LIBRDKAFKA_SLACK_KBYTES: u64 = 1024;
/// The largest value librdkafka takes for its integer properties.
const INT_MAX: u64 = i32::MAX as u64;

/// How much the exporter holds, and how much of it librdkafka holds.
///
/// Every message waiting for the broker counts against the bound
/// (`queue_buffering_max_messages`, `queue_buffering_max_kbytes`): those in
/// the exporter's backlog and those handed to librdkafka. librdkafka gets at
/// most a window of them (half the bound, capped), so that most of what waits
/// during an outage sits in the backlog, where the oldest can be dropped and
/// counted when the bound is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most messages waiting in all.
    pub max_messages: u64,
    /// Most bytes (payload and key) waiting in all.
    pub max_bytes: u64,
    /// Most messages handed to librdkafka and not yet acknowledged.
    pub window_messages: u64,
    /// Most bytes handed to librdkafka and not yet acknowledged.
    pub window_bytes: u64,
}

impl Bounds {
    /// The bounds `[kafka]` asks for.
    pub fn from_config(k: &Kafka) -> Self {
        Self::new(
            u64::from(k.queue_buffering_max_messages),
            u64::from(k.queue_buffering_max_kbytes).saturating_mul(1024),
        )
    }

    /// Bounds of `max_messages` and `max_bytes` (each at least 1).
    pub fn new(max_messages: u64, max_bytes: u64) -> Self {
        let max_messages = max_messages.max(1);
        let max_bytes = max_bytes.max(1);
        Self {
            max_messages,
            max_bytes,
            window_messages: (max_messages / 2).clamp(1, WINDOW_MESSAGES_MAX),
            window_bytes: (max_bytes / 2)
                .clamp(WINDOW_BYTES_MIN, WINDOW_BYTES_MAX)
                .min(max_bytes),
        }
    }
}

/// The librdkafka properties of a producer for `[kafka]`, in the order they
/// are set: the legacy keys first, then `[kafka.options]`, which win.
///
/// - `message.timeout.ms = 0`: librdkafka never expires a message on its
///   own; during an outage records wait in the bounded queue, and what is
///   lost is dropped by the exporter and counted.
/// - A `username` turns on SASL: `sasl.mechanism = PLAIN` and
///   `security.protocol = sasl_plaintext` unless the options say otherwise
///   (e.g. `SCRAM-SHA-256` and `sasl_ssl`).
pub fn properties(k: &Kafka, b: &Bounds) -> Vec<(String, String)> {
    let lib_messages = (b.window_messages + LIBRDKAFKA_SLACK_MESSAGES).min(INT_MAX);
    let lib_kbytes = (b.window_bytes.div_ceil(1024) + LIBRDKAFKA_SLACK_KBYTES).min(INT_MAX);
    let batch = u64::from(k.batch_num_messages).clamp(1, lib_messages);
    let mut p: Vec<(String, String)> = vec![
        ("bootstrap.servers".into(), k.kafka_broker.trim().to_owned()),
        ("client.id".into(), "gala-gopher".into()),
        ("batch.num.messages".into(), batch.to_string()),
        ("compression.codec".into(), k.compression_codec.clone()),
        (
            "queue.buffering.max.messages".into(),
            lib_messages.to_string(),
        ),
        ("queue.buffering.max.kbytes".into(), lib_kbytes.to_string()),
        (
            "queue.buffering.max.ms".into(),
            k.queue_buffering_max_ms.to_string(),
        ),
        ("message.timeout.ms".into(), "0".into()),
        ("reconnect.backoff.max.ms".into(), "1000".into()),
        ("log.connection.close".into(), "false".into()),
    ];
    if let Some(user) = &k.username {
        p.push(("sasl.username".into(), user.clone()));
        for (key, default) in [
            ("sasl.mechanism", "PLAIN"),
            ("security.protocol", "sasl_plaintext"),
        ] {
            if !k.options.contains_key(key) {
                p.push((key.into(), default.into()));
            }
        }
    }
    if let Some(pass) = &k.password {
        p.push(("sasl.password".into(), pass.clone()));
    }
    for (key, v) in &k.options {
        p.push((key.clone(), v.clone()));
    }
    p
}

/// A property value fit for a log line (secrets hidden).
pub fn shown(key: &str, value: &str) -> String {
    if key.contains("password") || key.contains("secret") || key.ends_with(".key.pem") {
        "<hidden>".into()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
        p.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn legacy_keys_map_onto_librdkafka() {
        let k = Kafka {
            kafka_broker: " a:9092,b:9092 ".into(),
            compression_codec: "lz4".into(),
            queue_buffering_max_ms: 7,
            ..Kafka::default()
        };
        let b = Bounds::from_config(&k);
        assert_eq!(b.max_messages, 100_000);
        assert_eq!(b.max_bytes, 1_048_576 * 1024);
        assert_eq!(b.window_messages, 50_000);
        assert_eq!(b.window_bytes, 256 * 1024 * 1024);
        let p = properties(&k, &b);
        assert_eq!(get(&p, "bootstrap.servers"), Some("a:9092,b:9092"));
        assert_eq!(get(&p, "compression.codec"), Some("lz4"));
        assert_eq!(get(&p, "batch.num.messages"), Some("10000"));
        assert_eq!(get(&p, "queue.buffering.max.ms"), Some("7"));
        assert_eq!(get(&p, "queue.buffering.max.messages"), Some("51024"));
        assert_eq!(get(&p, "queue.buffering.max.kbytes"), Some("263168"));
        assert_eq!(get(&p, "message.timeout.ms"), Some("0"));
        assert_eq!(get(&p, "sasl.mechanism"), None);
    }

    #[test]
    fn sasl_defaults_and_options_win() {
        let mut k = Kafka {
            username: Some("u".into()),
            password: Some("p".into()),
            ..Kafka::default()
        };
        let b = Bounds::from_config(&k);
        let p = properties(&k, &b);
        assert_eq!(get(&p, "sasl.username"), Some("u"));
        assert_eq!(get(&p, "sasl.password"), Some("p"));
        assert_eq!(get(&p, "sasl.mechanism"), Some("PLAIN"));
        assert_eq!(get(&p, "security.protocol"), Some("sasl_plaintext"));
        k.options
            .insert("sasl.mechanism".into(), "SCRAM-SHA-512".into());
        k.options
            .insert("security.protocol".into(), "sasl_ssl".into());
        k.options
            .insert("message.timeout.ms".into(), "60000".into());
        let p = properties(&k, &b);
        assert_eq!(get(&p, "sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(get(&p, "security.protocol"), Some("sasl_ssl"));
        assert_eq!(get(&p, "message.timeout.ms"), Some("60000"));
        assert_eq!(p.iter().filter(|(k, _)| k == "sasl.mechanism").count(), 1);
        assert_eq!(shown("sasl.password", "p"), "<hidden>");
        assert_eq!(shown("sasl.username", "u"), "u");
    }

    #[test]
    fn tiny_bounds_keep_a_window_of_one() {
        let b = Bounds::new(1, 1);
        assert_eq!((b.window_messages, b.window_bytes), (1, 1));
        let b = Bounds::new(100, 10 * 1024 * 1024);
        assert_eq!(b.window_messages, 50);
        assert_eq!(b.window_bytes, 5 * 1024 * 1024);
        let k = Kafka {
            batch_num_messages: 1_000_000,
            ..Kafka::default()
        };
        let p = properties(&k, &Bounds::new(10, 1 << 20));
        assert_eq!(get(&p, "batch.num.messages"), Some("1029"));
    }
}
