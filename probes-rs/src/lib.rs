//! Probe API and native Rust probes of gala-gopher.
//!
//! The probe API (the [`Probe`] trait, its [`ProbeContext`], the bounded
//! [`Emitter`] and the legacy [`Params`]) lives in the leaf crate
//! `gopher-probe-api`, re-exported here, rather than in the daemon crate so
//! that the daemon can depend on the probes without a cycle, and libgopher
//! can use `Params` without linking the probes: every probe kind (native,
//! C ABI, eBPF, extend) implements the same trait.

pub use gopher_probe_api::{api, params};
pub mod bpffs;
#[cfg(feature = "dnsmasq_link")]
pub mod dnsmasq_link;
#[cfg(feature = "haproxy_link")]
pub mod haproxy_link;
#[cfg(feature = "ipvs_link")]
pub mod ipvs_link;
#[cfg(any(feature = "nginx_link", feature = "haproxy_link"))]
pub mod lb_common;
#[cfg(feature = "nginx_link")]
pub mod nginx_link;
pub mod privilege;
pub mod procfs;
mod pseudofs;
#[cfg(feature = "tcp_link")]
pub mod tcp_link;
pub mod tracefs;

pub use api::{Emitted, Emitter, Payload, Probe, ProbeContext, ProbeDef, ProbeError, Shutdown};
pub use params::{Params, ParamsError};

/// Every native probe compiled into this build: the /proc probes and the
/// eBPF probes, each behind the cargo feature of its name (all on by
/// default). The daemon looks probes up by name here; each entry has a test
/// in its module.
pub static NATIVE_PROBES: &[ProbeDef] = &[
    #[cfg(feature = "system_meminfo")]
    procfs::MEMINFO,
    #[cfg(feature = "system_vmstat")]
    procfs::VMSTAT,
    #[cfg(feature = "system_inode")]
    procfs::INODE,
    #[cfg(feature = "system_tcp")]
    procfs::TCP,
    #[cfg(feature = "tcp_link")]
    tcp_link::DEF,
    #[cfg(feature = "nginx_link")]
    nginx_link::DEF,
    #[cfg(feature = "haproxy_link")]
    haproxy_link::DEF,
    #[cfg(feature = "ipvs_link")]
    ipvs_link::DEF,
    #[cfg(feature = "dnsmasq_link")]
    dnsmasq_link::DEF,
];

/// The name of every native probe of this crate, compiled into this build
/// or not: each is also the name of its cargo feature. A configured name
/// found here but not in [`NATIVE_PROBES`] was trimmed out of the build.
pub static ALL_NATIVE_PROBES: &[&str] = &[
    "system_meminfo",
    "system_vmstat",
    "system_inode",
    "system_tcp",
    "tcp_link",
    "nginx_link",
    "haproxy_link",
    "ipvs_link",
    "dnsmasq_link",
];

/// Names of the native probes that load eBPF programs (the daemon keeps
/// the capabilities to load them only when one is configured).
pub static EBPF_PROBES: &[&str] = &[
    #[cfg(feature = "tcp_link")]
    tcp_link::PROBE,
    #[cfg(feature = "nginx_link")]
    nginx_link::PROBE,
    #[cfg(feature = "haproxy_link")]
    haproxy_link::PROBE,
    #[cfg(feature = "ipvs_link")]
    ipvs_link::PROBE,
    #[cfg(feature = "dnsmasq_link")]
    dnsmasq_link::PROBE,
];

/// Finds a native probe by its configured name.
pub fn native_probe(name: &str) -> Option<&'static ProbeDef> {
    NATIVE_PROBES.iter().find(|d| d.name == name)
}

/// Whether `name` is a native probe of this crate that this build left out
/// (its cargo feature is off).
pub fn native_probe_trimmed(name: &str) -> bool {
    ALL_NATIVE_PROBES.contains(&name) && native_probe(name).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compiled_probe_is_listed_and_the_rest_are_trimmed() {
        for def in NATIVE_PROBES {
            assert!(
                ALL_NATIVE_PROBES.contains(&def.name),
                "{} is not in ALL_NATIVE_PROBES",
                def.name
            );
            assert!(!native_probe_trimmed(def.name));
        }
        for name in EBPF_PROBES {
            assert!(
                native_probe(name).is_some(),
                "eBPF probe {name} is not registered"
            );
        }
        let compiled = ALL_NATIVE_PROBES
            .iter()
            .filter(|n| native_probe(n).is_some())
            .count();
        assert_eq!(compiled, NATIVE_PROBES.len());
        assert!(!native_probe_trimmed("no_such_probe"));
    }

    /// The default build holds every probe.
    #[cfg(all(
        feature = "system_meminfo",
        feature = "system_vmstat",
        feature = "system_inode",
        feature = "system_tcp",
        feature = "tcp_link",
        feature = "nginx_link",
        feature = "haproxy_link",
        feature = "ipvs_link",
        feature = "dnsmasq_link",
    ))]
    #[test]
    fn the_default_build_holds_every_probe() {
        let names: Vec<&str> = NATIVE_PROBES.iter().map(|d| d.name).collect();
        assert_eq!(names, ALL_NATIVE_PROBES);
    }
}
