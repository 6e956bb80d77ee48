//! `system_vmstat`: virtual memory statistics from `/proc/vmstat`, one record
//! per period.

use std::path::Path;

use super::{KeyedCollector, KeyedFile, ParseError, Periodic, PROC_ROOT};
use crate::api::Probe;

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
    // The seed's fields (docs/compat.md §8), gauges in pages.
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

/// How `/proc/vmstat` becomes one record.
pub const SPEC: KeyedFile = KeyedFile {
    file: "vmstat",
    table: TABLE,
    key: KEY,
    fields: FIELDS,
    missing: "no `nr_free_pages` line with a number",
};

/// Parses `/proc/vmstat` text into the values of [`FIELDS`] after the key.
/// A field this kernel does not have (the `nr_zone_*` names came with 4.8,
/// `oom_kill` with 4.13) is `None`; malformed lines are skipped. Text without
/// `nr_free_pages` is not vmstat and is an error.
pub fn parse_vmstat(text: &str) -> Result<Vec<Option<u64>>, ParseError> {
    SPEC.parse(text)
}

/// The record for parsed values: the key, then each value (`None` is null).
pub fn record_values(values: &[Option<u64>]) -> Vec<String> {
    SPEC.record(values)
}

/// Reads `<root>/vmstat` each period.
pub fn collector(root: &Path) -> KeyedCollector {
    KeyedCollector::new(SPEC, root)
}

/// Builds the probe over the real `/proc`.
pub fn build() -> Box<dyn Probe> {
    Periodic::boxed(PROBE, &[TABLE], collector(Path::new(PROC_ROOT)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::test_support::{check_meta, drain, emitter, fixture_root};
    use crate::procfs::Collect as _;

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
        let mut c = collector(&fixture_root());
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
