//! `system_meminfo`: memory usage from `/proc/meminfo`, one record per period.

use std::path::Path;

use super::{KeyedCollector, KeyedFile, ParseError, Periodic, PROC_ROOT};
use crate::api::Probe;

/// Probe name.
pub const PROBE: &str = "system_meminfo";
/// Table name (`meta/system_meminfo.meta`).
pub const TABLE: &str = "system_meminfo";
/// Value of the key field `mem`.
pub const KEY: &str = "mem";

/// Fields in meta order: the key, the seed's eight gauges, then extras. All
/// but the key are `/proc/meminfo` names, so they are also what is parsed.
pub const FIELDS: &[&str] = &[
    "mem",
    // The seed's fields (docs/compat.md §8).
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "Active",
    "Inactive",
    // Extras.
    "SwapTotal",
    "SwapFree",
    "Dirty",
    "Writeback",
    "AnonPages",
    "Mapped",
    "Shmem",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "CommitLimit",
    "Committed_AS",
    "HugePages_Total",
    "HugePages_Free",
    "Hugepagesize",
];

/// How `/proc/meminfo` becomes one record.
pub const SPEC: KeyedFile = KeyedFile {
    file: "meminfo",
    table: TABLE,
    key: KEY,
    fields: FIELDS,
    missing: "no `MemTotal:` line with a number",
};

/// Parses `/proc/meminfo` text into the values of [`FIELDS`] after the key
/// (kB as printed, or page counts for `HugePages_*`). A field missing on this
/// kernel (e.g. `MemAvailable` before Linux 3.14) is `None`; malformed lines
/// are skipped. Text without `MemTotal` is not meminfo and is an error.
pub fn parse_meminfo(text: &str) -> Result<Vec<Option<u64>>, ParseError> {
    SPEC.parse(text)
}

/// The record for parsed values: the key, then each value (`None` is null).
pub fn record_values(values: &[Option<u64>]) -> Vec<String> {
    SPEC.record(values)
}

/// Reads `<root>/meminfo` each period.
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

    const FIXTURE: &str = include_str!("../../../tests/data/proc/meminfo");

    #[test]
    fn meta_matches_fields() {
        check_meta(
            include_str!("../../../meta/system_meminfo.meta"),
            TABLE,
            FIELDS,
        );
    }

    #[test]
    fn parses_fixture() {
        let v = parse_meminfo(FIXTURE).expect("fixture parses");
        let got = record_values(&v);
        let want = [
            "mem", "24684096", "23902264", "24358912", "3044", "652732", "0", "74736",
            "577580", // seed
            "0", "0", "30924", "0", "8880", "11032", "8788", "56448", "34632", "21816", "1332",
            "1232", "12342048", "52624", "0", "0", "2048",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn old_kernel_without_mem_available_gives_null() {
        let text = "MemTotal:  1000 kB\nMemFree: 10 kB\nBuffers: 1 kB\nCached: 2 kB\n";
        let got = record_values(&parse_meminfo(text).expect("parses"));
        assert_eq!(got.len(), FIELDS.len());
        assert_eq!(
            got.get(..5),
            Some(&["mem", "1000", "10", "", "1"].map(String::from)[..])
        );
        assert!(got
            .get(6..)
            .is_some_and(|rest| rest.iter().all(String::is_empty)));
    }

    #[test]
    fn odd_input_never_panics() {
        for text in [
            "",
            "\n\n",
            "MemTotal:",
            "MemTotal: kB",
            ":::: 1",
            "MemTotal: 99999999999999999999999 kB",
        ] {
            assert!(parse_meminfo(text).is_err(), "{text:?}");
        }
        let v = parse_meminfo("garbage\nMemTotal: 5 kB\nMemFree: -1 kB\n").expect("parses");
        assert_eq!(v.get(..2), Some(&[Some(5), None][..]));
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
