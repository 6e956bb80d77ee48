//! Probe runners and their supervisor.

pub mod cabi;
pub mod extend;
pub mod supervisor;
