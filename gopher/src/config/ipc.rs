//! `[extend_probes.ipc]`: a legacy 2.x probe binary that takes its params and
//! snoopers from the agent over the SysV message queue (docs/compat.md).
//!
//! ```toml
//! [[extend_probes]]
//! name = "proc"
//! command = "/opt/gala-gopher/extend_probes/taskprobe"
//! [extend_probes.ipc]
//! probe_type = "proc"                  # a 2.x name, or its number (100 + i: custom)
//! probe = ["proc_syscall", "proc_fs"]  # sub-probes, or `range_flags = 3`
//! [extend_probes.ipc.params]
//! report_period = 10                   # the 2.x REST names, with their 2.x ranges
//! [extend_probes.ipc.snoopers]
//! proc_id = [1234]
//! proc_name = [{ comm = "^nginx$", cmdline = "master" }]
//! container_id = ["3f2a..."]
//! ```
//!
//! Every value is checked as it is read: a bad one is an error naming its
//! key and what the 2.x agent accepted.

use serde::{Deserialize, Deserializer};

/// The 2.x probe types (`msg_type` of the queue), by their REST names.
pub const PROBE_TYPES: &[(&str, u32)] = &[
    ("baseinfo", 1),
    ("virt", 2),
    ("flamegraph", 3),
    ("l7", 4),
    ("tcp", 5),
    ("socket", 6),
    ("io", 7),
    ("proc", 8),
    ("jvm", 9),
    ("postgre_sli", 10),
    ("opengauss_sli", 11),
    ("nginx", 12),
    ("lvs", 13),
    ("kafka", 14),
    ("tprofiling", 15),
    ("hw", 16),
    ("ksli", 17),
    ("container", 18),
    ("sermant", 19),
    ("sli", 20),
    ("flowtracer", 21),
];

/// Custom probes are 100 + i (i from 0).
pub const CUSTOM_TYPE_BASE: u32 = 100;

/// The sub-probe names of the 2.x REST `cmd.probe` list whose bits are known,
/// per probe type: (type, name, bit of `probe_range_flags`).
pub const SUB_PROBES: &[(u32, &str, u32)] = &[
    (8, "proc_syscall", 0x1),
    (8, "proc_fs", 0x2),
    (8, "proc_dns", 0x4),
    (8, "proc_io", 0x8),
    (8, "proc_pagecache", 0x10),
    (8, "proc_net", 0x20),
    (8, "proc_offcpu", 0x40),
    (8, "proc_ioctl", 0x80),
    (8, "proc_pygc", 0x100),
    (5, "tcp_abnormal", 0x1),
    (5, "tcp_windows", 0x2),
    (5, "tcp_rtt", 0x4),
    (5, "tcp_stats", 0x8),
    (5, "tcp_sockbuf", 0x10),
    (5, "tcp_rate", 0x20),
    (5, "tcp_srtt", 0x40),
    (6, "tcp_socket", 0x1),
    (6, "udp_socket", 0x2),
    (7, "io_trace", 0x1),
    (7, "io_err", 0x2),
    (7, "io_count", 0x4),
    (7, "page_cache", 0x8),
];

/// How the agent talks to a legacy 2.x probe binary over the message queue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyIpcConf {
    /// The probe type: the message type its binary reads.
    pub probe_type: ProbeType,
    /// Sub-probes by their 2.x names (their bits are ORed into the range
    /// flags); only the names of [`SUB_PROBES`] are known.
    #[serde(default)]
    pub probe: Vec<String>,
    /// Raw `probe_range_flags`, ORed with the bits of `probe`.
    #[serde(default)]
    pub range_flags: Option<u32>,
    /// The 2.x `params`.
    #[serde(default)]
    pub params: LegacyParams,
    /// The processes and containers the probe watches.
    #[serde(default)]
    pub snoopers: Snoopers,
}

impl LegacyIpcConf {
    /// The `probe_range_flags` to send: the bits of `probe` ORed with
    /// `range_flags`. An unknown sub-probe name is an error naming it.
    pub fn range_flags(&self) -> Result<u32, String> {
        let ty = self.probe_type.number();
        let mut flags = self.range_flags.unwrap_or(0);
        for name in &self.probe {
            let bit = SUB_PROBES
                .iter()
                .find(|(t, n, _)| *t == ty && n == name)
                .map(|(_, _, b)| *b);
            match bit {
                Some(b) => flags |= b,
                None => {
                    let known: Vec<&str> = SUB_PROBES
                        .iter()
                        .filter(|(t, ..)| *t == ty)
                        .map(|(_, n, _)| *n)
                        .collect();
                    return Err(if known.is_empty() {
                        format!(
                            "sub-probe `{name}`: the bits of probe type {} are not known to this agent; \
                             give them as `range_flags` instead",
                            self.probe_type
                        )
                    } else {
                        format!(
                            "unknown sub-probe `{name}` of probe type {} (known: {}; or give raw bits \
                             as `range_flags`)",
                            self.probe_type,
                            known.join(", ")
                        )
                    });
                }
            }
        }
        Ok(flags)
    }

    /// This conf with only what needs the probe restarted when it changes
    /// (its type); params, sub-probes and snoopers are sent to the running
    /// probe instead.
    pub fn restart_part(&self) -> Self {
        Self {
            probe_type: self.probe_type,
            probe: Vec::new(),
            range_flags: None,
            params: LegacyParams::default(),
            snoopers: Snoopers::default(),
        }
    }
}

impl<'de> Deserialize<'de> for ProbeType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i64),
            Name(String),
        }
        let bad = || {
            let names: Vec<&str> = PROBE_TYPES.iter().map(|(n, _)| *n).collect();
            format!(
                "expected a 2.x probe type: one of {}, or its number (1..=21, or 100 + i for a custom probe)",
                names.join(", ")
            )
        };
        match Raw::deserialize(d)? {
            Raw::Num(n) => u32::try_from(n)
                .ok()
                .filter(|n| {
                    PROBE_TYPES.iter().any(|(_, t)| t == n)
                        || (CUSTOM_TYPE_BASE..=10_000).contains(n)
                })
                .map(ProbeType)
                .ok_or_else(|| serde::de::Error::custom(format!("{}, got {n}", bad()))),
            Raw::Name(s) => PROBE_TYPES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&s))
                .map(|(_, t)| ProbeType(*t))
                .ok_or_else(|| serde::de::Error::custom(format!("{}, got \"{s}\"", bad()))),
        }
    }
}

/// A 2.x probe type, by its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeType(pub u32);

impl ProbeType {
    /// The `msg_type` number.
    pub fn number(&self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for ProbeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match PROBE_TYPES.iter().find(|(_, t)| *t == self.0) {
            Some((n, t)) => write!(f, "`{n}` ({t})"),
            None => write!(f, "{} (custom)", self.0),
        }
    }
}

/// `snoopers`: what the probe watches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Snoopers {
    /// Processes by pid (sent while they live).
    pub proc_id: Vec<u32>,
    /// Processes by name: every live process that matches is sent.
    pub proc_name: Vec<ProcName>,
    /// Containers by id (a prefix of the 64 hex digits is enough).
    pub container_id: Vec<String>,
}

/// One `proc_name` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcName {
    /// A regular expression that the process's comm must match.
    #[serde(deserialize_with = "regex_string")]
    pub comm: String,
    /// A substring its command line must hold (`""`: any).
    #[serde(default)]
    pub cmdline: String,
    /// 2.x `debugging_dir`: accepted and ignored.
    #[serde(default)]
    pub debugging_dir: crate::config::Ignored,
}

fn regex_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Err(serde::de::Error::custom(
            "expected a regular expression for the comm, got \"\"",
        ));
    }
    Ere::new(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

/// A POSIX extended regular expression, as the 2.x agent matched `comm`
/// with (glibc `regcomp`/`regexec`).
pub struct Ere {
    re: Box<libc::regex_t>,
}

impl std::fmt::Debug for Ere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ere")
    }
}

impl Ere {
    /// Compiles `pattern`; the error says why it is not valid.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let c = std::ffi::CString::new(pattern)
            .map_err(|_| "invalid regular expression: it holds a NUL byte".to_owned())?;
        // SAFETY: regex_t is plain data that regcomp fills in.
        let mut re: Box<libc::regex_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `re` is a valid regex_t to fill and `c` is NUL-terminated.
        let rc =
            unsafe { libc::regcomp(&mut *re, c.as_ptr(), libc::REG_EXTENDED | libc::REG_NOSUB) };
        if rc != 0 {
            let mut buf = [0 as libc::c_char; 256];
            // SAFETY: regerror writes at most buf.len() bytes, NUL-terminated.
            unsafe { libc::regerror(rc, &*re, buf.as_mut_ptr(), buf.len()) };
            // SAFETY: buf is NUL-terminated by regerror (or still all zero).
            let why = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            return Err(format!("invalid regular expression `{pattern}`: {why}"));
        }
        Ok(Self { re })
    }

    /// Whether `text` holds a match (text with a NUL never matches).
    pub fn is_match(&self, text: &str) -> bool {
        let Ok(c) = std::ffi::CString::new(text) else {
            return false;
        };
        // SAFETY: `re` was compiled by regcomp; REG_NOSUB needs no match array.
        unsafe { libc::regexec(&*self.re, c.as_ptr(), 0, std::ptr::null_mut(), 0) == 0 }
    }
}

impl Drop for Ere {
    fn drop(&mut self) {
        // SAFETY: compiled by regcomp and freed once.
        unsafe { libc::regfree(&mut *self.re) };
    }
}

macro_rules! ranged {
    ($name:ident, $ty:ty, $lo:expr, $hi:expr) => {
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
            let v = i64::deserialize(d)?;
            if !($lo..=$hi).contains(&v) {
                return Err(serde::de::Error::custom(format!(
                    "expected an integer in {}..={} (the 2.x range), got {v}",
                    $lo, $hi
                )));
            }
            <$ty>::try_from(v)
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("{v} does not fit")))
        }
    };
}

ranged!(sample_period, u32, 100, 10_000);
ranged!(report_period, u32, 5, 600);
ranged!(threshold, u32, 10, 100_000);
ranged!(percent, u8, 0, 100);
ranged!(flag, u8, 0, 1);
ranged!(svg_period, u32, 30, 600);
ranged!(perf_sample_period, u32, 10, 1000);
ranged!(port, u32, 1, 65_535);
ranged!(any_u32, u32, 0, i64::from(u32::MAX));

macro_rules! bounded_str {
    ($name:ident, $max:expr) => {
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
            let s = String::deserialize(d)?;
            if s.len() >= $max {
                return Err(serde::de::Error::custom(format!(
                    "expected at most {} bytes (the 2.x field holds {} with its NUL), got {}",
                    $max - 1,
                    $max,
                    s.len()
                )));
            }
            if s.contains('\0') {
                return Err(serde::de::Error::custom("a NUL byte is not allowed"));
            }
            Ok(Some(s))
        }
    };
}

bounded_str!(str32, 32);
bounded_str!(str64, 64);
bounded_str!(str256, 256);
bounded_str!(str512, 512);

fn flag_names<'de, D: Deserializer<'de>>(
    d: D,
    known: &[(&str, u32)],
) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let names = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    let mut flags = 0;
    for n in names {
        match known.iter().find(|(k, _)| k.eq_ignore_ascii_case(&n)) {
            Some((_, b)) => flags |= b,
            None => {
                let list: Vec<&str> = known.iter().map(|(k, _)| *k).collect();
                return Err(serde::de::Error::custom(format!(
                    "expected names among {}, got \"{n}\"",
                    list.join(", ")
                )));
            }
        }
    }
    Ok(Some(flags))
}

/// `metrics_type` names and bits.
pub const METRICS_TYPES: &[(&str, u32)] = &[("raw", 0x1), ("telemetry", 0x2)];
/// `env` names and bits.
pub const ENVS: &[(&str, u32)] = &[("node", 0x1), ("container", 0x2), ("kubenet", 0x4)];
/// `l7_protocol` names and bits.
pub const L7_PROTOCOLS: &[(&str, u32)] = &[
    ("http", 0x1),
    ("dns", 0x2),
    ("redis", 0x4),
    ("mysql", 0x8),
    ("pgsql", 0x10),
    ("kafka", 0x20),
    ("mongo", 0x40),
    ("cql", 0x80),
    ("nats", 0x100),
    ("crpc", 0x200),
];
/// `profiling_chan` names and values.
pub const PROFILING_CHANS: &[(&str, u32)] = &[("local", 0), ("kafka", 1)];

fn metrics_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    flag_names(d, METRICS_TYPES)
}
fn env<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    flag_names(d, ENVS)
}
fn l7_protocol<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    flag_names(d, L7_PROTOCOLS)
}
fn profiling_chan<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let s = String::deserialize(d)?;
    PROFILING_CHANS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&s))
        .map(|(_, v)| Some(*v))
        .ok_or_else(|| {
            serde::de::Error::custom(format!("expected \"local\" or \"kafka\", got \"{s}\""))
        })
}

/// `params`: the 2.x REST parameter names. A key left out keeps the 2.x
/// default (see `legacy_ipc::ProbeParams::defaults`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LegacyParams {
    /// ms, 100..=10000 (default 5000).
    #[serde(deserialize_with = "sample_period")]
    pub sample_period: Option<u32>,
    /// s, 5..=600 (default 60).
    #[serde(deserialize_with = "report_period")]
    pub report_period: Option<u32>,
    /// ms, 10..=100000.
    #[serde(deserialize_with = "threshold")]
    pub latency_thr: Option<u32>,
    /// ms, 10..=100000.
    #[serde(deserialize_with = "threshold")]
    pub offline_thr: Option<u32>,
    /// packets, 10..=100000.
    #[serde(deserialize_with = "threshold")]
    pub drops_thr: Option<u32>,
    /// percent, 0..=100.
    #[serde(deserialize_with = "percent")]
    pub res_lower_thr: Option<u8>,
    /// percent, 0..=100.
    #[serde(deserialize_with = "percent")]
    pub res_upper_thr: Option<u8>,
    /// 0 or 1.
    #[serde(deserialize_with = "flag")]
    pub report_event: Option<u8>,
    /// `["raw", "telemetry"]`.
    #[serde(deserialize_with = "metrics_type")]
    pub metrics_type: Option<u32>,
    /// `"node"`, `"container"`, `"kubenet"` (one or a list).
    #[serde(deserialize_with = "env")]
    pub env: Option<u32>,
    /// `["http", "dns", ...]`.
    #[serde(deserialize_with = "l7_protocol")]
    pub l7_protocol: Option<u32>,
    /// 0 or 1.
    #[serde(deserialize_with = "flag")]
    pub support_ssl: Option<u8>,
    /// 0 or 1.
    #[serde(deserialize_with = "flag")]
    pub multi_instance: Option<u8>,
    /// 0 or 1.
    #[serde(deserialize_with = "flag")]
    pub native_stack: Option<u8>,
    /// 0 or 1.
    #[serde(deserialize_with = "flag")]
    pub cluster_ip_backend: Option<u8>,
    /// At most 63 bytes.
    #[serde(deserialize_with = "str64")]
    pub pyroscope_server: Option<String>,
    /// s, 30..=600.
    #[serde(deserialize_with = "svg_period")]
    pub svg_period: Option<u32>,
    /// ms, 10..=1000.
    #[serde(deserialize_with = "perf_sample_period")]
    pub perf_sample_period: Option<u32>,
    /// At most 255 bytes.
    #[serde(deserialize_with = "str256")]
    pub output_dir: Option<String>,
    /// At most 255 bytes.
    #[serde(deserialize_with = "str256")]
    pub flame_dir: Option<String>,
    /// At most 31 bytes.
    #[serde(deserialize_with = "str32")]
    pub dev_name: Option<String>,
    /// 0 or 1.
    #[serde(deserialize_with = "flag")]
    pub continuous_sampling: Option<u8>,
    /// At most 511 bytes.
    #[serde(deserialize_with = "str512")]
    pub elf_path: Option<String>,
    /// 1..=65535.
    #[serde(deserialize_with = "port")]
    pub kafka_port: Option<u32>,
    /// 1..=65535.
    #[serde(deserialize_with = "port")]
    pub cadvisor_port: Option<u32>,
    /// `"local"` or `"kafka"`.
    #[serde(deserialize_with = "profiling_chan")]
    pub profiling_chan: Option<u32>,
    /// us; passed as given.
    #[serde(deserialize_with = "any_u32")]
    pub min_exec_dur: Option<u32>,
    /// ms; passed as given.
    #[serde(deserialize_with = "any_u32")]
    pub min_aggr_dur: Option<u32>,
}

/// The 2.x REST `params` names, in the order of [`LegacyParams`].
pub const PARAM_NAMES: &[&str] = &[
    "sample_period",
    "report_period",
    "latency_thr",
    "offline_thr",
    "drops_thr",
    "res_lower_thr",
    "res_upper_thr",
    "report_event",
    "metrics_type",
    "env",
    "l7_protocol",
    "support_ssl",
    "multi_instance",
    "native_stack",
    "cluster_ip_backend",
    "pyroscope_server",
    "svg_period",
    "perf_sample_period",
    "output_dir",
    "flame_dir",
    "dev_name",
    "continuous_sampling",
    "elf_path",
    "kafka_port",
    "cadvisor_port",
    "profiling_chan",
    "min_exec_dur",
    "min_aggr_dur",
];

/// Checks one REST `params` entry by its 2.x name and range (the same
/// checks as `[extend_probes.ipc.params]`); the error says what was
/// expected (the range for a number).
pub fn check_param(name: &str, value: &serde_json::Value) -> Result<LegacyParams, String> {
    if !PARAM_NAMES.contains(&name) {
        return Err(format!(
            "unknown parameter; the 2.x names are {}",
            PARAM_NAMES.join(", ")
        ));
    }
    let mut one = serde_json::Map::new();
    one.insert(name.to_owned(), value.clone());
    serde_json::from_value::<LegacyParams>(serde_json::Value::Object(one)).map_err(|e| {
        let e = e.to_string();
        // serde_json's "invalid type" messages name the Rust type.
        if e.starts_with("invalid type") {
            format!("expected an integer or the 2.x value of `{name}`; {e}")
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn a_full_ipc_block_reads_from_toml() {
        let src = r#"
[[extend_probes]]
name = "proc"
command = "/opt/gala-gopher/extend_probes/taskprobe"
[extend_probes.ipc]
probe_type = "proc"
probe = ["proc_syscall", "proc_fs"]
range_flags = 256
[extend_probes.ipc.params]
report_period = 10
sample_period = 200
latency_thr = 30
res_upper_thr = 80
report_event = 1
metrics_type = ["raw"]
env = "container"
l7_protocol = ["http", "crpc"]
dev_name = "eth0"
profiling_chan = "kafka"
[extend_probes.ipc.snoopers]
proc_id = [1, 2]
proc_name = [{ comm = "^nginx$", cmdline = "master", debugging_dir = "" }]
container_id = ["3f2a9c"]
"#;
        let cfg = Config::from_toml_str(src, Path::new("t.toml")).expect("valid");
        let ipc = cfg.extend_probes[0].ipc.as_ref().expect("ipc");
        assert_eq!(ipc.probe_type, ProbeType(8));
        assert_eq!(ipc.range_flags(), Ok(0x1 | 0x2 | 0x100));
        let p = &ipc.params;
        assert_eq!((p.report_period, p.sample_period), (Some(10), Some(200)));
        assert_eq!((p.latency_thr, p.res_upper_thr), (Some(30), Some(80)));
        assert_eq!(p.report_event, Some(1));
        assert_eq!((p.metrics_type, p.env), (Some(0x1), Some(0x2)));
        assert_eq!(p.l7_protocol, Some(0x201));
        assert_eq!(p.dev_name.as_deref(), Some("eth0"));
        assert_eq!(p.profiling_chan, Some(1));
        assert_eq!(p.kafka_port, None);
        assert_eq!(ipc.snoopers.proc_id, [1, 2]);
        assert_eq!(ipc.snoopers.proc_name[0].comm, "^nginx$");
        assert_eq!(ipc.snoopers.proc_name[0].cmdline, "master");
        assert_eq!(ipc.snoopers.container_id, ["3f2a9c"]);
    }

    #[test]
    fn the_legacy_libconfig_spelling_reads_the_same() {
        let src = r#"
extend_probes = (
    {
        name = "tcp";
        command = "/opt/gala-gopher/extend_probes/tcpprobe";
        param = "";
        switch = "on";
        ipc = {
            probe_type = 5;
            probe = ["tcp_rtt", "tcp_abnormal"];
            params = { report_period = 30; drops_thr = 10; };
            snoopers = { proc_name = ( { comm = "java"; cmdline = ""; } ); };
        };
    }
);
"#;
        let cfg = Config::from_libconfig_str(src, Path::new("t.conf")).expect("valid");
        let ipc = cfg.extend_probes[0].ipc.as_ref().expect("ipc");
        assert_eq!(ipc.probe_type, ProbeType(5));
        assert_eq!(ipc.range_flags(), Ok(0x4 | 0x1));
        assert_eq!(ipc.params.report_period, Some(30));
        assert_eq!(ipc.params.drops_thr, Some(10));
        assert_eq!(ipc.snoopers.proc_name[0].comm, "java");
    }

    #[test]
    fn bad_values_name_their_key_and_the_2x_range() {
        let cases = [
            ("probe_type = \"nope\"", "ipc.probe_type"),
            ("probe_type = 0", "ipc.probe_type"),
            ("probe_type = 99", "ipc.probe_type"),
            (
                "probe_type = 8\nparams = { report_period = 601 }",
                "5..=600",
            ),
            (
                "probe_type = 8\nparams = { latency_thr = 9 }",
                "10..=100000",
            ),
            (
                "probe_type = 8\nparams = { res_lower_thr = 101 }",
                "0..=100",
            ),
            ("probe_type = 8\nparams = { kafka_port = 0 }", "1..=65535"),
            ("probe_type = 8\nparams = { support_ssl = 2 }", "0..=1"),
            (
                "probe_type = 8\nparams = { profiling_chan = \"disk\" }",
                "\"local\" or \"kafka\"",
            ),
            ("probe_type = 8\nparams = { pyroscope_server = \"x\" }", ""),
            ("probe_type = 8\nparams = { nope = 1 }", "nope"),
            (
                "probe_type = 8\nsnoopers = { proc_name = [{ comm = \"\" }] }",
                "comm",
            ),
            (
                "probe_type = 8\nsnoopers = { proc_name = [{ comm = \"a\", x = 1 }] }",
                "x",
            ),
        ];
        for (body, want) in cases {
            let src = format!(
                "[[extend_probes]]\nname = \"p\"\ncommand = \"/bin/true\"\n[extend_probes.ipc]\n{body}\n"
            );
            let r = Config::from_toml_str(&src, Path::new("t.toml"));
            if body.contains("pyroscope_server") {
                assert!(r.is_ok(), "{body}: {r:?}");
                continue;
            }
            let e = r.expect_err(body).to_string();
            assert!(e.contains("extend_probes[0].ipc"), "{body}: {e}");
            assert!(e.contains(want), "{body}: `{want}` not in {e}");
        }
    }

    #[test]
    fn the_comm_regex_is_posix_extended() {
        let re = Ere::new("^(nginx|java)$").expect("valid");
        assert!(re.is_match("nginx") && re.is_match("java"));
        assert!(!re.is_match("nginx2") && !re.is_match("a\0b"));
        assert!(Ere::new("([").is_err());
        assert!(Ere::new("a\0").is_err());
    }

    #[test]
    fn param_names_are_the_fields_of_legacy_params() {
        for name in PARAM_NAMES {
            let v = match *name {
                "metrics_type" => serde_json::json!(["raw"]),
                "env" => serde_json::json!("node"),
                "l7_protocol" => serde_json::json!(["http"]),
                "profiling_chan" => serde_json::json!("local"),
                n if n.ends_with("_dir")
                    || n.ends_with("_path")
                    || n == "dev_name"
                    || n == "pyroscope_server" =>
                {
                    serde_json::json!("x")
                }
                "report_event"
                | "support_ssl"
                | "multi_instance"
                | "native_stack"
                | "cluster_ip_backend"
                | "continuous_sampling" => serde_json::json!(1),
                _ => serde_json::json!(100),
            };
            let p = check_param(name, &v).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_ne!(p, LegacyParams::default(), "{name}");
        }
        assert!(check_param("nope", &serde_json::json!(1)).is_err());
        let e = check_param("report_period", &serde_json::json!(700)).expect_err("range");
        assert!(e.contains("5..=600"), "{e}");
    }
}
