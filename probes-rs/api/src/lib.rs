//! The probe API of gala-gopher: the [`Probe`] trait, its [`ProbeContext`],
//! the bounded [`Emitter`] and the legacy [`Params`].
//!
//! It is a leaf crate of its own so that libgopher (the C ABI library, which
//! needs `Params`) does not carry the eBPF probes and libbpf with it.

pub mod api;
pub mod params;

pub use api::{
    Emitted, Emitter, Payload, Probe, ProbeContext, ProbeDef, ProbeError, Shutdown, TablesSeen,
};
pub use params::{Params, ParamsError};
