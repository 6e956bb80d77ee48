//! `dnsmasq_link`: placeholder registered by the scaffolding commit; the probe's
//! own work replaces this module.

use crate::api::{Probe, ProbeContext, ProbeDef, ProbeError};

/// The probe's name.
pub const PROBE: &str = "dnsmasq_link";
/// Its table (`meta/dnsmasq_link.meta`).
pub const TABLE: &str = "dnsmasq_link";

/// The registration.
pub const DEF: ProbeDef = ProbeDef {
    name: PROBE,
    tables: &[TABLE],
    build: || Box::new(Stub),
};

struct Stub;

impl Probe for Stub {
    fn name(&self) -> &str {
        PROBE
    }
    fn tables(&self) -> &[&str] {
        &[TABLE]
    }
    fn run(self: Box<Self>, _cx: ProbeContext) -> Result<(), ProbeError> {
        Err(ProbeError::Unsupported(
            "dnsmasq_link is not built yet".into(),
        ))
    }
}
