//! Probe API and native Rust probes of gala-gopher.
//!
//! The probe API (the [`Probe`] trait, its [`ProbeContext`], the bounded
//! [`Emitter`] and the legacy [`Params`]) lives in the leaf crate
//! `gopher-probe-api`, re-exported here, rather than in the daemon crate so
//! that the daemon can depend on the probes without a cycle, and libgopher
//! can use `Params` without linking the probes: every probe kind (native,
//! C ABI, eBPF, extend) implements the same trait.

pub use gopher_probe_api::{api, params};
pub mod privilege;
pub mod procfs;
pub mod tcp_link;
pub mod tracefs;

pub use api::{Emitted, Emitter, Payload, Probe, ProbeContext, ProbeDef, ProbeError, Shutdown};
pub use params::{Params, ParamsError};

/// Every native probe compiled into this build: the /proc probes and the
/// eBPF probes. The daemon looks probes up by name here; each entry has a
/// test in its module.
pub static NATIVE_PROBES: &[ProbeDef] = &{
    let [a, b, c, d] = procfs::PROBE_DEFS;
    [a, b, c, d, tcp_link::DEF]
};

/// Names of the native probes that load eBPF programs (the daemon keeps
/// the capabilities to load them only when one is configured).
pub static EBPF_PROBES: &[&str] = &[tcp_link::PROBE];

/// Finds a native probe by its configured name.
pub fn native_probe(name: &str) -> Option<&'static ProbeDef> {
    NATIVE_PROBES.iter().find(|d| d.name == name)
}
