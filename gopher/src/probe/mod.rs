//! Probe runners and their supervisor.

pub mod extend;
pub mod supervisor;
pub mod cabi;
