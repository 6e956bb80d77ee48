//! What the legacy `gala-gopher.conf` of every generation (V0 = 21.09, V1 =
//! 1.x, V2 = 2.x) says that this agent maps or ignores, decided key by key
//! (docs/compat.md §4):
//! - **mapped:** `kafka.switch`/`kafka.kafka_topic` (V0: metrics to Kafka,
//!   when the file has no `metric` section), `probes[].interval` (V0: the
//!   period, as `-t` in `param`), `logs.metric_total_size` (V2: the size
//!   budget of the log files), and the legacy native probe names of
//!   [`LEGACY_NATIVE_PROBES`];
//! - **ignored, with a warning naming the key and why:** `global.log_directory`
//!   (V0), `web_server.switch = "off"` (V0), `event.desc_language` (V1, V2),
//!   `metric.pod_info_switch` (V2), and the V0 Kafka keys in a file that has
//!   a `metric` section.
//!
//! The warnings go to [`super::Config::warnings`]; the daemon logs them once
//! when it loads the file, and `check-config` prints them. A key that no
//! generation had is still an error (every struct denies unknown keys).

use super::{CheckType, Config, ConfigProblem, OutChannel, ProbeConf, Switch};
use crate::libconfig::{lookup, Setting, Value, ValueKind};

/// A native probe of a legacy generation that this agent does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyProbe {
    /// The name in the legacy `probes = ( {name = ...} )` list.
    pub name: &'static str,
    /// The generations whose shipped config lists it.
    pub generations: &'static str,
    /// What it collected.
    pub what: &'static str,
    /// The probes of this agent that collect the same kind of data; switched
    /// on in its place (each one compiled into this build and not already
    /// listed).
    pub equivalents: &'static [&'static str],
}

/// The legacy native probes that this agent does not have, and what replaces
/// them. The V0 native probes `system_meminfo`, `system_vmstat`,
/// `system_inode` and `system_tcp` are probes of this agent under the same
/// names, so they are not listed. docs/compat.md §4 has the same table.
pub const LEGACY_NATIVE_PROBES: &[LegacyProbe] = &[
    LegacyProbe {
        name: "system_infos",
        generations: "1.x",
        what: "CPU, memory, network interface and disk/file-system statistics",
        equivalents: &["system_cpu", "system_meminfo", "system_net", "system_inode"],
    },
    LegacyProbe {
        name: "virtualized_infos",
        generations: "1.x",
        what: "statistics of virtual-machine processes",
        equivalents: &[],
    },
    LegacyProbe {
        name: "event",
        generations: "1.x",
        what: "events read from the system log",
        equivalents: &[],
    },
    LegacyProbe {
        name: "example",
        generations: "21.09, 1.x",
        what: "the sample probe of the legacy source tree",
        equivalents: &[],
    },
];

/// The entry of [`LEGACY_NATIVE_PROBES`] for `name`.
pub fn legacy_probe(name: &str) -> Option<&'static LegacyProbe> {
    LEGACY_NATIVE_PROBES.iter().find(|p| p.name == name)
}

/// Whether a native or built-in C probe of this name is compiled in.
pub(crate) fn known_probe(name: &str) -> bool {
    gopher_probes::native_probe(name).is_some() || gopher_probes_c::builtin(name).is_some()
}

/// The period `-t` of V0's `probes[].interval` may take, as in `param`.
const INTERVAL_RANGE: std::ops::RangeInclusive<u64> = 1..=3600;

struct Pass<'a> {
    cfg: &'a mut Config,
    settings: &'a [Setting],
    problems: &'a mut Vec<ConfigProblem>,
    /// Keys already reported as problems: left alone.
    reported: &'a [String],
}

impl Pass<'_> {
    fn warn(&mut self, key: &str, message: String) {
        let line = self.cfg.locations.line(key);
        let w = ConfigProblem::at_key(&self.cfg.source, line, key, message);
        self.cfg.warnings.0.push(w);
    }

    fn problem(&mut self, key: &str, message: String) {
        let line = self.cfg.locations.line(key);
        let p = ConfigProblem::at_key(&self.cfg.source, line, key, message);
        self.problems.push(p);
    }

    fn is_reported(&self, key: &str) -> bool {
        self.reported.iter().any(|r| super::source::within(key, r))
    }

    /// The raw value of `section.key`, as written.
    fn raw(&self, section: &str, key: &str) -> Option<&Value> {
        let group = lookup(self.settings, section)?.value.as_group()?;
        Some(&lookup(group, key)?.value)
    }

    fn written(&self, key: &str) -> bool {
        self.cfg.locations.contains(key)
    }
}

/// Whether a raw value says "on" (`true`, `"on"`, `"true"`, any case).
fn raw_on(v: &Value) -> Option<bool> {
    match &v.kind {
        ValueKind::Bool(b) => Some(*b),
        ValueKind::Str(s) => match s.to_ascii_lowercase().as_str() {
            "on" | "true" => Some(true),
            "off" | "false" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Applies the mappings and collects the warnings of the module doc. Runs
/// after the sections are read and before the value rules; `reported` are
/// the keys already reported as problems.
pub(crate) fn apply(
    cfg: &mut Config,
    settings: &[Setting],
    problems: &mut Vec<ConfigProblem>,
    reported: &[String],
) {
    let mut p = Pass {
        cfg,
        settings,
        problems,
        reported,
    };
    v0_kafka(&mut p);
    if p.written("global.log_directory") {
        p.warn(
            "global.log_directory",
            "ignored (a 21.09 key): this agent logs to stderr or the journal, or to `global.log_file_name` \
             under `logs.debug_dir`"
                .into(),
        );
    }
    if let Some(v) = p.raw("web_server", "switch") {
        match raw_on(v) {
            Some(true) => {}
            Some(false) => p.warn(
                "web_server.switch",
                "ignored (a 21.09 key): the Prometheus endpoint always runs here; bind it to 127.0.0.1 with \
                 `web_server.bind_addr` to keep it local"
                    .into(),
            ),
            None => p.problem(
                "web_server.switch",
                "expected \"on\" or \"off\" (a 21.09 key)".into(),
            ),
        }
    }
    if p.written("event.desc_language") {
        p.warn(
            "event.desc_language",
            "ignored (a 1.x/2.x key): event bodies are written in English only".into(),
        );
    }
    for section in ["metric", "meta"] {
        let key = format!("{section}.pod_info_switch");
        if p.written(&key) {
            p.warn(
                &key,
                "ignored (a 2.x key): records get no pod labels from this agent".into(),
            );
        }
    }
    metric_total_size(&mut p);
    probe_intervals(&mut p);
    legacy_probes(&mut p);
}

/// V0 had no `metric` section: `kafka.switch = "on"` sent the metrics to
/// Kafka, on the topic `kafka.kafka_topic`.
fn v0_kafka(p: &mut Pass<'_>) {
    let switch = p.raw("kafka", "switch").cloned();
    let topic = p.raw("kafka", "kafka_topic").cloned();
    if switch.is_none() && topic.is_none() {
        return;
    }
    if lookup(p.settings, "metric").is_some() {
        for key in ["kafka.switch", "kafka.kafka_topic"] {
            if p.written(key) {
                p.warn(
                    key,
                    "ignored (a 21.09 key): the `metric` section of this file chooses the channel and topic".into(),
                );
            }
        }
        return;
    }
    if let Some(v) = &switch {
        match raw_on(v) {
            Some(true) => p.cfg.metric.out_channel = OutChannel::Kafka,
            Some(false) => {}
            None => p.problem(
                "kafka.switch",
                "expected \"on\" or \"off\" (a 21.09 key)".into(),
            ),
        }
    }
    if let Some(v) = &topic {
        match v.as_str() {
            Some(t) if !t.trim().is_empty() => p.cfg.metric.kafka_topic = t.to_string(),
            Some(_) => {}
            None => p.problem(
                "kafka.kafka_topic",
                format!(
                    "expected a topic name (a 21.09 key), found {}",
                    v.kind.describe()
                ),
            ),
        }
    }
}

/// V2's `logs.metric_total_size` (MB): the whole size the metric log files
/// may take. Mapped onto the rotation of every log directory:
/// `max_file_size_mb = metric_total_size / max_files` (at least 1), unless
/// `logs.max_file_size_mb` is written too.
fn metric_total_size(p: &mut Pass<'_>) {
    let Some(total) = p.cfg.logs.metric_total_size else {
        return;
    };
    if p.is_reported("logs.metric_total_size") {
        return;
    }
    if total == 0 {
        p.problem(
            "logs.metric_total_size",
            "expected a number of MB greater than 0, got 0".into(),
        );
        return;
    }
    if p.written("logs.max_file_size_mb") {
        p.warn(
            "logs.metric_total_size",
            "ignored: `logs.max_file_size_mb` is also set, and wins".into(),
        );
        return;
    }
    let files = u64::from(p.cfg.logs.max_files.max(1));
    p.cfg.logs.max_file_size_mb = (total / files).max(1);
}

/// Whether a `param` string sets the period (`-t 5` or `-t5`).
fn sets_period(param: &str) -> bool {
    param.split_whitespace().any(|w| w.starts_with("-t"))
}

/// V0's `probes[].interval` (seconds) is the period: `-t <interval>` is added
/// to `param` when `param` has no `-t`.
fn probe_intervals(p: &mut Pass<'_>) {
    for i in 0..p.cfg.probes.len() {
        let key = format!("probes[{i}].interval");
        let Some(n) = p.cfg.probes[i].interval else {
            continue;
        };
        if p.is_reported(&key) {
            continue;
        }
        if !INTERVAL_RANGE.contains(&n) {
            p.problem(
                &key,
                format!("expected a period in seconds from 1 to 3600 (a 21.09 key), got {n}"),
            );
            continue;
        }
        let probe = &mut p.cfg.probes[i];
        if sets_period(&probe.param) {
            p.warn(
                &key,
                "ignored: `-t` in `param` sets the period of this probe".into(),
            );
            continue;
        }
        probe.param = if probe.param.trim().is_empty() {
            format!("-t {n}")
        } else {
            format!("{} -t {n}", probe.param.trim_end())
        };
    }
}

/// A legacy native probe switched on: warned about, switched off, and its
/// equivalents (compiled in, not listed yet) appended with its `param`.
fn legacy_probes(p: &mut Pass<'_>) {
    let listed: Vec<String> = p
        .cfg
        .probes
        .iter()
        .map(|x| x.name.clone())
        .chain(p.cfg.extend_probes.iter().map(|x| x.name.clone()))
        .collect();
    let mut added: Vec<ProbeConf> = Vec::new();
    for i in 0..p.cfg.probes.len() {
        let probe = &p.cfg.probes[i];
        if probe.switch == Switch::Off || probe.library.is_some() || known_probe(&probe.name) {
            continue;
        }
        let Some(legacy) = legacy_probe(&probe.name) else {
            continue;
        };
        let param = probe.param.clone();
        let key = format!("probes[{i}].name");
        p.cfg.probes[i].switch = Switch::Off;
        let mut on = Vec::new();
        let mut already = Vec::new();
        let mut left_out = Vec::new();
        for eq in legacy.equivalents {
            if listed.iter().any(|n| n == eq) || added.iter().any(|a| a.name == *eq) {
                already.push(*eq);
            } else if known_probe(eq) {
                on.push(*eq);
                added.push(ProbeConf {
                    name: (*eq).to_string(),
                    param: param.clone(),
                    switch: Switch::On,
                    library: None,
                    hang_timeout_secs: None,
                    interval: None,
                    snoopers: None,
                    start_check: None,
                    check_type: CheckType::Count,
                });
            } else {
                left_out.push(*eq);
            }
        }
        let mut msg = format!(
            "`{}` is a native probe of the legacy {} agent ({}) that this agent does not have",
            legacy.name, legacy.generations, legacy.what
        );
        if legacy.equivalents.is_empty() {
            msg.push_str("; nothing replaces it, so it is not run");
        } else {
            msg.push_str(&format!(
                "; the probes of this agent that collect the same data are {}",
                legacy.equivalents.join(", ")
            ));
            if !on.is_empty() {
                msg.push_str(&format!(
                    "; switched on in its place, with its param: {}",
                    on.join(", ")
                ));
            }
            if !already.is_empty() {
                msg.push_str(&format!(
                    "; already listed in this file (left as written): {}",
                    already.join(", ")
                ));
            }
            if !left_out.is_empty() {
                msg.push_str(&format!(
                    "; left out of this build: {}",
                    left_out.join(", ")
                ));
            }
            msg.push_str(&format!(
                ". To silence this, replace `{}` with those probes",
                legacy.name
            ));
        }
        p.warn(&key, msg);
    }
    p.cfg.probes.extend(added);
}

/// The `-w <path>` of a `param` string (legacy probes took the application
/// whitelist this way), if any.
pub(crate) fn whitelist_flag(param: &str) -> Option<&str> {
    let mut words = param.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-w" {
            return words.next();
        }
        if let Some(glued) = w.strip_prefix("-w") {
            return Some(glued);
        }
    }
    None
}
