//! Native probes that read /proc for the seed's OS tables.

use crate::api::ProbeDef;

/// Native /proc probes (filled in by the procfs work).
pub static PROBES: &[ProbeDef] = &[];
