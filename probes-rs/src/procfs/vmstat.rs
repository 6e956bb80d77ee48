//! `system_vmstat`: virtual memory statistics from `/proc/vmstat`, one record
//! per period.

use std::path::{Path, PathBuf};

use super::{opt_value, pick_values, read_into, Collect, ParseError, Periodic, PROC_ROOT};
use crate::api::{Emitter, Probe, ProbeError};

/// Probe name.
pub const PROBE: &str = "system_vmstat";
/// Table name (`meta/system_vmstat.meta`).
pub const TABLE: &str = "system_vmstat";
/// Value of the key field `vmstat`.
pub const KEY: &str = "vmstat";

/// Fields in meta order: the key, the seed's eight gauges, extra gauges, then
/// counters. All but the key are `/proc/vmstat` names.
pub const FIELDS: &[&str] = &[
    "vmstat",
    // The seed's fields (COMPAT §8), gauges in pages.
    "nr_free_pages",
    "nr_zone_inactive_anon",
    "nr_zone_active_anon",
    "nr_zone_active_file",
    "nr_zone_unevictable",
    "nr_zone_write_pending",
    "nr_mlock",
    "nr_page_table_pages",
    // Extra gauges, in pages.
    "nr_zone_inactive_file",
    "nr_file_pages",
    "nr_anon_pages",
    "nr_dirty",
    "nr_writeback",
    "nr_shmem",
    "nr_slab_reclaimable",
    "nr_slab_unreclaimable",
    // Extra counters, since boot.
    "pgpgin",
    "pgpgout",
    "pswpin",
    "pswpout",
    "pgfault",
    "pgmajfault",
    "pgsteal_kswapd",
    "pgsteal_direct",
    "pgscan_kswapd",
    "pgscan_direct",
    "oom_kill",
];

/// The vmstat names parsed, i.e. [`FIELDS`] without the key.
fn metrics() -> &'static [&'static str] {
    FIELDS.get(1..).unwrap_or_default()
}

/// Parses `/proc/vmstat` text into the values of [`FIELDS`] after the key.
/// A field this kernel does not have (the `nr_zone_*` names came with 4.8,
/// `oom_kill` with 4.13) is `None`; malformed lines are skipped. Text without
/// `nr_free_pages` is not vmstat and is an error.
pub fn parse_vmstat(text: &str) -> Result<Vec<Option<u64>>, ParseError> {
    let values = pick_values(text, metrics());
    if values.first().copied().flatten().is_none() {
        return Err(ParseError {
            line: 1,
            msg: "no `nr_free_pages` line with a number".into(),
        });
    }
    Ok(values)
}

/// The record for parsed values: the key, then each value (`None` is null).
pub fn record_values(values: &[Option<u64>]) -> Vec<String> {
    let mut out = Vec::with_capacity(FIELDS.len());
    out.push(KEY.to_string());
    out.extend(values.iter().map(|v| opt_value(*v)));
    out
}

/// Reads `<root>/vmstat` each period.
#[derive(Debug)]
pub struct VmstatCollector {
    path: PathBuf,
    buf: String,
}

impl VmstatCollector {
    /// A collector for the proc filesystem at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            path: root.join("vmstat"),
            buf: String::with_capacity(8192),
        }
    }
}

impl Collect for VmstatCollector {
    fn collect(&mut self, emitter: &Emitter) -> Result<(), ProbeError> {
        read_into(&self.path, &mut self.buf)?;
        let values = parse_vmstat(&self.buf).map_err(|e| e.at(&self.path))?;
        emitter.record(TABLE, record_values(&values));
        Ok(())
    }
}

/// Builds the probe over the real `/proc`.
pub fn build() -> Box<dyn Probe> {
    Periodic::boxed(PROBE, &[TABLE], VmstatCollector::new(Path::new(PROC_ROOT)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::test_support::{check_meta, drain, emitter, fixture_root};

    const FIXTURE: &str = include_str!("../../../tests/data/proc/vmstat");

    #[test]
    fn meta_matches_fields() {
        check_meta(
            include_str!("../../../meta/system_vmstat.meta"),
            TABLE,
            FIELDS,
        );
    }

    #[test]
    fn parses_fixture() {
        let got = record_values(&parse_vmstat(FIXTURE).expect("fixture parses"));
        let want = [
            "vmstat", "1007297", "978", "380", "18304", "3059", "7731", "2836", "333", // seed
            "143439", "163944", "2220", "7731", "0", "2197", "8658", "5454", // gauges
            "1413101", "771156", "0", "0", "3563406", "786", "0", "0", "0", "0",
            "0", // counters
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn old_kernel_fields_are_null() {
        // A 3.10-era vmstat: no nr_zone_* names, no oom_kill.
        let text = "nr_free_pages 123\nnr_inactive_anon 5\nnr_mlock 7\nnr_page_table_pages 9\npgfault 100\n";
        let got = record_values(&parse_vmstat(text).expect("parses"));
        assert_eq!(got.len(), FIELDS.len());
        let at = |name: &str| {
            let i = FIELDS.iter().position(|f| *f == name).expect("known field");
            got.get(i).cloned().unwrap_or_default()
        };
        assert_eq!(at("nr_free_pages"), "123");
        assert_eq!(at("nr_zone_active_anon"), "");
        assert_eq!(at("nr_mlock"), "7");
        assert_eq!(at("nr_page_table_pages"), "9");
        assert_eq!(at("pgfault"), "100");
        assert_eq!(at("oom_kill"), "");
    }

    #[test]
    fn odd_input_never_panics() {
        for text in [
            "",
            "nr_free_pages",
            "nr_free_pages x",
            "nr_free_pages -3",
            "\u{0}\u{ffff} 1",
        ] {
            assert!(parse_vmstat(text).is_err(), "{text:?}");
        }
        let v = parse_vmstat("nr_free_pages 1 extra words\npgfault\n").expect("parses");
        assert_eq!(v.first(), Some(&Some(1)));
    }

    #[test]
    fn collects_from_a_proc_root() {
        let mut c = VmstatCollector::new(&fixture_root());
        let (em, rx) = emitter(4);
        c.collect(&em).expect("collect");
        let recs = drain(&rx);
        assert_eq!(recs.len(), 1);
        assert_eq!(
            recs.first().map(|(t, v)| (*t, v.len())),
            Some((TABLE, FIELDS.len()))
        );
    }
}
