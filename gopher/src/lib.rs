//! gala-gopher: the node agent's core library.
//!
//! Data path (one way): probe -> [`probe_api::Emitter`] (bounded) -> ingress
//! (decode + validate against meta) -> [`store`] -> exporters.

pub mod meta;

pub use gopher_probes as probe_api;
