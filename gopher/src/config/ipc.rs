//! `[extend_probes.ipc]`: a legacy 2.x probe binary that takes its params and
//! snoopers from the agent over the SysV message queue (docs/compat.md).

use serde::Deserialize;

/// How the agent talks to a legacy 2.x probe binary over the message queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyIpcConf {}
