//! `[cgroup]`: CPU and memory limits of the probe processes (seed §3.5.1).
//!
//! ```toml
//! [cgroup]
//! enabled = true            # default
//! cpu_percent_total = 10    # all probes together: 10 % of ONE cpu (default)
//! memory_mb_total = 512     # all probes together (default: no limit)
//!
//! [cgroup.probes.my_probe]  # one probe (an extend probe or a C probe)
//! cpu_percent = 5
//! memory_mb = 64
//! ```
//!
//! The values are checked as they are read: a value out of range is an
//! error naming the key and the range. See docs/cgroups.md and
//! [`crate::probe::cgroup`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Smallest CPU share, percent of one CPU.
pub const CPU_PERCENT_MIN: u32 = 1;
/// Largest CPU share, percent of one CPU (100 CPUs).
pub const CPU_PERCENT_MAX: u32 = 10_000;
/// Smallest memory limit, MiB (a limit below it leaves no room to start a
/// process at all).
pub const MEMORY_MB_MIN: u64 = 4;
/// Largest memory limit, MiB (1 TiB).
pub const MEMORY_MB_MAX: u64 = 1 << 20;

/// `[cgroup]`: limits of the probe processes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CgroupConf {
    /// Put extend probes and C probe hosts into cgroups at all.
    pub enabled: bool,
    /// CPU of all probes together, percent of one CPU.
    #[serde(deserialize_with = "cpu_percent")]
    pub cpu_percent_total: u32,
    /// Memory of all probes together, MiB; `None`: no limit.
    #[serde(deserialize_with = "opt_memory_mb")]
    pub memory_mb_total: Option<u64>,
    /// Limits of single probes, by probe name, within the totals.
    pub probes: BTreeMap<String, ProbeLimits>,
}

impl Default for CgroupConf {
    fn default() -> Self {
        Self {
            enabled: true,
            cpu_percent_total: 10,
            memory_mb_total: None,
            probes: BTreeMap::new(),
        }
    }
}

/// `[cgroup.probes.<name>]`: the limits of one probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeLimits {
    /// CPU of this probe, percent of one CPU; `None`: only the total applies.
    #[serde(deserialize_with = "opt_cpu_percent")]
    pub cpu_percent: Option<u32>,
    /// Memory of this probe, MiB; `None`: only the total applies.
    #[serde(deserialize_with = "opt_memory_mb")]
    pub memory_mb: Option<u64>,
}

impl CgroupConf {
    /// The limits of probe `name` (none set: both `None`).
    pub fn limits_of(&self, name: &str) -> ProbeLimits {
        self.probes.get(name).cloned().unwrap_or_default()
    }
}

fn in_range<'de, D: Deserializer<'de>>(
    d: D,
    min: u64,
    max: u64,
    what: &str,
) -> Result<u64, D::Error> {
    // Read as a signed number so that a negative value gets the range
    // message, not a type error.
    let v = i64::deserialize(d)?;
    match u64::try_from(v) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(serde::de::Error::custom(format!(
            "expected {what} {min}..={max}, got {v}"
        ))),
    }
}

fn cpu_percent<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = in_range(
        d,
        CPU_PERCENT_MIN.into(),
        CPU_PERCENT_MAX.into(),
        "a percent of one CPU",
    )?;
    // In range, so it fits.
    Ok(u32::try_from(v).unwrap_or(CPU_PERCENT_MAX))
}

fn opt_cpu_percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    cpu_percent(d).map(Some)
}

fn opt_memory_mb<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    in_range(d, MEMORY_MB_MIN, MEMORY_MB_MAX, "a size in MiB").map(Some)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn load(src: &str) -> Result<Config, Vec<String>> {
        Config::from_toml_str(src, Path::new("/cfg/gala-gopher.toml"))
            .map_err(|e| e.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn defaults_keep_all_probes_under_ten_percent_of_one_cpu() {
        let c = load("").expect("empty config");
        assert!(c.cgroup.enabled);
        assert_eq!(c.cgroup.cpu_percent_total, 10);
        assert_eq!(c.cgroup.memory_mb_total, None);
        assert!(c.cgroup.probes.is_empty());
        assert_eq!(c.cgroup.limits_of("x"), super::ProbeLimits::default());
    }

    #[test]
    fn reads_totals_and_per_probe_limits() {
        let c = load(
            "[cgroup]\nenabled = false\ncpu_percent_total = 150\nmemory_mb_total = 512\n\
             [cgroup.probes.burn]\ncpu_percent = 20\n\
             [cgroup.probes.hog]\nmemory_mb = 32\n",
        )
        .expect("valid");
        assert!(!c.cgroup.enabled);
        assert_eq!(c.cgroup.cpu_percent_total, 150);
        assert_eq!(c.cgroup.memory_mb_total, Some(512));
        let burn = c.cgroup.limits_of("burn");
        assert_eq!((burn.cpu_percent, burn.memory_mb), (Some(20), None));
        let hog = c.cgroup.limits_of("hog");
        assert_eq!((hog.cpu_percent, hog.memory_mb), (None, Some(32)));
    }

    #[test]
    fn out_of_range_values_name_the_key_and_the_range() {
        let errs = load(
            "[cgroup]\ncpu_percent_total = 0\nmemory_mb_total = -5\n\
             [cgroup.probes.burn]\ncpu_percent = 10001\n",
        )
        .expect_err("invalid");
        let all = errs.join("\n");
        for (key, range) in [
            ("cgroup.cpu_percent_total", "1..=10000, got 0"),
            ("cgroup.memory_mb_total", "4..=1048576, got -5"),
            ("cgroup.probes.burn.cpu_percent", "1..=10000, got 10001"),
        ] {
            assert!(
                errs.iter().any(|e| e.contains(key) && e.contains(range)),
                "no error for {key} with `{range}` in:\n{all}"
            );
        }
    }

    #[test]
    fn a_tiny_probe_memory_limit_is_refused() {
        let errs = load("[cgroup.probes.hog]\nmemory_mb = 2\n").expect_err("invalid");
        assert!(
            errs.iter()
                .any(|e| e.contains("cgroup.probes.hog.memory_mb")
                    && e.contains("4..=1048576, got 2")),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused() {
        let errs = load("[cgroup]\ncpu_limit = 5\n").expect_err("unknown key");
        assert!(errs.iter().any(|e| e.contains("cpu_limit")), "{errs:?}");
        let errs = load("[cgroup.probes.x]\ncpu = 5\n").expect_err("unknown key");
        assert!(errs.iter().any(|e| e.contains("cpu")), "{errs:?}");
        let errs = load("[cgroup]\ncpu_percent_total = \"ten\"\n").expect_err("type");
        assert!(
            errs.iter().any(|e| e.contains("cgroup.cpu_percent_total")),
            "{errs:?}"
        );
    }
}
