//! Probe runners and their supervisor.

pub mod cabi;
pub mod cgroup;
pub mod extend;
pub mod legacy_ipc;
pub mod snoopers;
pub mod supervisor;
