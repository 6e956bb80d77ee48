//! gala-gopher: the node agent's core library.
//!
//! Data path (one way): probe -> [`probe_api::Emitter`] (bounded) -> ingress
//! (decode + validate against meta) -> [`store`] -> exporters.

pub mod config;
pub mod libconfig;
pub mod meta;

pub use gopher_probes as probe_api;
pub mod control;
pub mod daemon;
pub mod export;
pub mod identity;
pub mod ingress;
pub mod manager;
pub mod probe;
pub mod record;
pub mod rest;
pub mod rules;
pub mod stats;
pub mod store;
pub use gala_common::systemd;
pub mod tls;
pub use gala_common::topology_records;
#[cfg(test)]
mod topology_shape_tests;
