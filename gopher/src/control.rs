//! The run-time control contract: what the REST API (:9999), the local
//! control socket and `gopher-ctl` can ask of the running probes, and what
//! the probe manager answers (docs/rest-api.yaml describes it on the wire).
//!
//! The REST layer parses and checks requests into [`ProbeChange`]s; the
//! probe manager implements [`ProbeControl`] and applies a change to one
//! resource without touching the others.

use std::collections::BTreeMap;

use serde::Serialize;

pub use crate::config::ipc::Snoopers;

/// Legacy 2.x feature names that name a group of this agent's probes, and
/// the probes behind each (a REST resource is one of these, or one probe of
/// ours by its own name).
pub const LEGACY_FEATURES: &[(&str, &[&str])] = &[
    (
        "baseinfo",
        &[
            "system_meminfo",
            "system_vmstat",
            "system_inode",
            "system_tcp",
            "system_cpu",
            "system_net",
        ],
    ),
    ("tcp", &["tcp_link"]),
    // The 2.x load-balancer and DNS probes, one probe of ours each.
    ("nginx", &["nginx_link"]),
    ("haproxy", &["haproxy_link"]),
    ("lvs", &["ipvs_link"]),
    ("dnsmasq", &["dnsmasq_link"]),
];

/// The 2.x sub-probe names (`cmd.probe`) of a legacy feature, and the
/// probes of ours that collect what each one did: (feature, sub-probe,
/// probes). A 2.x name listed with no probe is accepted and runs nothing
/// here (its data has no equivalent in this agent).
pub const LEGACY_SUB_PROBES: &[(&str, &str, &[&str])] = &[
    ("tcp", "tcp_abnormal", &["tcp_link"]),
    ("tcp", "tcp_windows", &["tcp_link"]),
    ("tcp", "tcp_rtt", &["tcp_link"]),
    ("tcp", "tcp_stats", &["tcp_link"]),
    ("tcp", "tcp_sockbuf", &["tcp_link"]),
    ("tcp", "tcp_rate", &["tcp_link"]),
    ("tcp", "tcp_srtt", &["tcp_link"]),
    ("baseinfo", "cpu", &["system_cpu"]),
    ("baseinfo", "mem", &["system_meminfo", "system_vmstat"]),
    ("baseinfo", "nic", &["system_net"]),
    ("baseinfo", "net", &["system_tcp"]),
    ("baseinfo", "fs", &["system_inode"]),
    ("baseinfo", "disk", &[]),
    ("baseinfo", "proc", &[]),
    ("baseinfo", "host", &[]),
];

/// Names that are not probe resources (`GET /status`, `GET /metrics`).
pub const RESERVED_NAMES: &[&str] = &["status", "metrics"];

/// The state of a resource as `GET /<name>` shows it (`state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    /// Running (for a group: at least one of its probes runs).
    Running,
    /// Stopped by the config or by a request.
    Stopped,
    /// Waiting for its `start_check` to find what it watches.
    Waiting,
    /// Gave up after its restarts, or refused to start.
    Failed,
}

/// The state a request asks for (`"state": "running" | "stopped"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesiredState {
    /// Start it (a running one is left as it is).
    Running,
    /// Stop it (the other probes keep running).
    Stopped,
}

/// `cmd` of a resource: its sub-probes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cmd {
    /// Sub-probe names (legacy `cmd.probe`): for a group, the probes of ours
    /// that run; for a 2.x probe binary, its range names.
    pub probe: Vec<String>,
}

/// One resource as `GET /<name>` returns it, plus what `gopher-ctl status`
/// shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeView {
    /// The resource name (a legacy feature name, or our probe name).
    pub name: String,
    /// `native`, `c`, `ebpf`, `extend`, or `group`.
    pub kind: &'static str,
    /// Current state.
    pub state: ProbeState,
    /// Sub-probes.
    pub cmd: Cmd,
    /// Effective params by their 2.x REST names (`report_period`, ...).
    pub params: BTreeMap<String, serde_json::Value>,
    /// Watched processes (empty: all).
    pub snoopers: SnoopersView,
    /// Restarts since the agent started.
    pub restarts: u64,
}

/// [`Snoopers`] as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SnoopersView {
    /// Pids.
    pub proc_id: Vec<u32>,
    /// `{comm, cmdline}` selectors.
    pub proc_name: Vec<ProcNameView>,
    /// Container ids.
    pub container_id: Vec<String>,
}

/// One `proc_name` selector as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcNameView {
    /// Regex on the comm.
    pub comm: String,
    /// Substring of the command line.
    pub cmdline: String,
}

impl From<&Snoopers> for SnoopersView {
    fn from(s: &Snoopers) -> Self {
        Self {
            proc_id: s.proc_id.clone(),
            proc_name: s
                .proc_name
                .iter()
                .map(|p| ProcNameView {
                    comm: p.comm.clone(),
                    cmdline: p.cmdline.clone(),
                })
                .collect(),
            container_id: s.container_id.clone(),
        }
    }
}

/// A checked request: only the keys the body held are `Some`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeChange {
    /// `state`.
    pub state: Option<DesiredState>,
    /// `cmd.probe`.
    pub probe: Option<Vec<String>>,
    /// `params`, each key a known 2.x name whose value is in its range.
    pub params: Option<BTreeMap<String, serde_json::Value>>,
    /// `snoopers`.
    pub snoopers: Option<Snoopers>,
}

/// Why a change was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No resource of that name (404).
    #[error("no probe named `{0}`")]
    UnknownProbe(String),
    /// The request is wrong (400): `key` names what, `message` says what was
    /// expected.
    #[error("`{key}`: {message}")]
    Invalid {
        /// The key of the body, e.g. `params.report_period`.
        key: String,
        /// What was expected.
        message: String,
    },
    /// The change was valid but could not be applied (500 is never used:
    /// reported as 400 with the reason, as the legacy agent did).
    #[error("{0}")]
    Failed(String),
}

/// Agent-wide figures for `GET /status` and `gopher-ctl status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AgentStatus {
    /// Agent version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Live series in the store.
    pub series: usize,
    /// Records dropped, by reason.
    pub drops: BTreeMap<String, u64>,
    /// Every resource.
    pub probes: Vec<ProbeView>,
}

/// What the probe manager offers to the control surfaces.
pub trait ProbeControl: Send + Sync {
    /// Every resource, in a stable order.
    fn list(&self) -> Vec<ProbeView>;
    /// One resource.
    fn get(&self, name: &str) -> Option<ProbeView>;
    /// Applies a checked change to one resource; the other probes are not
    /// touched.
    fn apply(&self, name: &str, change: &ProbeChange) -> Result<(), ControlError>;
    /// Agent-wide status.
    fn status(&self) -> AgentStatus;
    /// The Prometheus exposition, as :8888 serves it.
    fn metrics(&self) -> String;
}
