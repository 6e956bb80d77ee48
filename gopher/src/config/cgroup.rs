//! `[cgroup]`: CPU and memory limits of the probe processes (seed §3.5.1).

use serde::Deserialize;

/// `[cgroup]`: limits of the probe processes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CgroupConf {}
