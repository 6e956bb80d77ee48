//! Native probes that read /proc for the seed's OS tables (docs/compat.md §8).
//!
//! Each probe is a [`Collect`] implementation driven by [`Periodic`]: collect
//! once, then sleep for the report period or until shutdown. The parsing of
//! each /proc file is a pure function over its text, tested on copies of real
//! files in `tests/data/proc/`. Every collector takes the proc root as a
//! parameter so tests can point it at those copies.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::api::{Emitter, Probe, ProbeContext, ProbeDef, ProbeError};

// One module per probe, compiled when its cargo feature is on; the
// /proc/net/tcp parser of `tcp` also serves the tcp_link probe.
#[cfg(feature = "system_inode")]
pub mod inode;
#[cfg(feature = "system_meminfo")]
pub mod meminfo;
#[cfg(any(feature = "system_tcp", feature = "tcp_link"))]
pub mod sock_diag;
#[cfg(any(feature = "system_tcp", feature = "tcp_link"))]
pub mod tcp;
#[cfg(feature = "system_vmstat")]
pub mod vmstat;

/// Native /proc probes of this build.
pub static PROBES: &[ProbeDef] = &[
    #[cfg(feature = "system_meminfo")]
    MEMINFO,
    #[cfg(feature = "system_vmstat")]
    VMSTAT,
    #[cfg(feature = "system_inode")]
    INODE,
    #[cfg(feature = "system_tcp")]
    TCP,
];

/// `system_meminfo` (cargo feature `system_meminfo`).
#[cfg(feature = "system_meminfo")]
pub const MEMINFO: ProbeDef = ProbeDef {
    name: meminfo::PROBE,
    tables: &[meminfo::TABLE],
    build: meminfo::build,
};

/// `system_vmstat` (cargo feature `system_vmstat`).
#[cfg(feature = "system_vmstat")]
pub const VMSTAT: ProbeDef = ProbeDef {
    name: vmstat::PROBE,
    tables: &[vmstat::TABLE],
    build: vmstat::build,
};

/// `system_inode` (cargo feature `system_inode`).
#[cfg(feature = "system_inode")]
pub const INODE: ProbeDef = ProbeDef {
    name: inode::PROBE,
    tables: &[inode::TABLE],
    build: inode::build,
};

/// `system_tcp` (cargo feature `system_tcp`).
#[cfg(feature = "system_tcp")]
pub const TCP: ProbeDef = ProbeDef {
    name: tcp::PROBE,
    tables: &[tcp::TABLE],
    build: tcp::build,
};

/// The default proc root.
pub const PROC_ROOT: &str = "/proc";

/// One collection of a periodic probe: read its files and emit its records.
pub trait Collect: Send {
    /// Collects once and emits the records through `emitter`.
    fn collect(&mut self, emitter: &Emitter) -> Result<(), ProbeError>;
}

/// The loop shared by the /proc probes: collect, then wait one period or
/// until shutdown. A failed collection ends the run with its error, so the
/// supervisor restarts the probe.
pub struct Periodic<C> {
    name: &'static str,
    tables: &'static [&'static str],
    collector: C,
}

impl<C> fmt::Debug for Periodic<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Periodic")
            .field("name", &self.name)
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl<C: Collect + 'static> Periodic<C> {
    /// Wraps `collector` as a probe named `name` that emits `tables`.
    pub fn new(name: &'static str, tables: &'static [&'static str], collector: C) -> Self {
        Self {
            name,
            tables,
            collector,
        }
    }

    /// The same, boxed for [`ProbeDef::build`].
    pub fn boxed(
        name: &'static str,
        tables: &'static [&'static str],
        collector: C,
    ) -> Box<dyn Probe> {
        Box::new(Self::new(name, tables, collector))
    }
}

impl<C: Collect + 'static> Probe for Periodic<C> {
    fn name(&self) -> &str {
        self.name
    }

    fn tables(&self) -> &[&str] {
        self.tables
    }

    fn run(mut self: Box<Self>, cx: ProbeContext) -> Result<(), ProbeError> {
        let period = cx.params.period();
        while !cx.shutdown.is_triggered() {
            self.collector.collect(&cx.emitter)?;
            if cx.shutdown.wait(period) {
                break;
            }
        }
        Ok(())
    }
}

/// Reads the whole of `path` into `buf` (cleared first), so one buffer
/// serves every period.
pub(crate) fn read_into(path: &Path, buf: &mut String) -> Result<(), ProbeError> {
    buf.clear();
    File::open(path)
        .and_then(|mut f| f.read_to_string(buf))
        .map(drop)
        .map_err(|source| io_error(path, source))
}

/// A [`ProbeError::Io`] naming `path`.
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> ProbeError {
    ProbeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Content of a /proc file that a parser could not use; the collector adds
/// the path to make it a [`ProbeError::Parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was expected.
    pub msg: String,
}

impl ParseError {
    /// The probe error for this parse error in `path`.
    pub fn at(self, path: &Path) -> ProbeError {
        ProbeError::Parse {
            path: path.display().to_string(),
            line: self.line,
            msg: self.msg,
        }
    }
}

/// Picks the values of `fields` from `name value` lines (`/proc/vmstat`)
/// or `name: value unit` lines (`/proc/meminfo`). A field that is missing
/// or whose value is not a whole number is `None`; lines that do not look
/// like `name value` are skipped. When a name repeats, the first wins.
pub(crate) fn pick_values(text: &str, fields: &[&str]) -> Vec<Option<u64>> {
    let mut out = vec![None; fields.len()];
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let name = name.strip_suffix(':').unwrap_or(name);
        if let Some(slot) = fields
            .iter()
            .position(|f| *f == name)
            .and_then(|i| out.get_mut(i))
        {
            if slot.is_none() {
                *slot = value.parse().ok();
            }
        }
    }
    out
}

/// A /proc file of `name value` lines that gives one record per period: a
/// constant key, then the values of the table's other fields, which are the
/// file's own names (`/proc/meminfo`, `/proc/vmstat`).
#[derive(Debug, Clone, Copy)]
pub struct KeyedFile {
    /// File name under the proc root.
    pub file: &'static str,
    /// Table name.
    pub table: &'static str,
    /// Value of the key field.
    pub key: &'static str,
    /// Fields in meta order, the key first.
    pub fields: &'static [&'static str],
    /// Error when the first metric is missing (the text is not this file).
    pub missing: &'static str,
}

impl KeyedFile {
    /// The values of the fields after the key; `None` for a field this kernel
    /// does not have. Text without the first metric is an error.
    pub fn parse(&self, text: &str) -> Result<Vec<Option<u64>>, ParseError> {
        let values = pick_values(text, self.fields.get(1..).unwrap_or_default());
        if values.first().copied().flatten().is_none() {
            return Err(ParseError {
                line: 1,
                msg: self.missing.into(),
            });
        }
        Ok(values)
    }

    /// The record for parsed values: the key, then each value (`None` is null).
    pub fn record(&self, values: &[Option<u64>]) -> Vec<String> {
        let mut out = Vec::with_capacity(self.fields.len());
        out.push(self.key.to_string());
        out.extend(values.iter().map(|v| opt_value(*v)));
        out
    }
}

/// Reads a [`KeyedFile`] each period.
#[derive(Debug)]
pub struct KeyedCollector {
    spec: KeyedFile,
    path: PathBuf,
    buf: String,
}

impl KeyedCollector {
    /// A collector of `spec` for the proc filesystem at `root`.
    pub fn new(spec: KeyedFile, root: &Path) -> Self {
        Self {
            spec,
            path: root.join(spec.file),
            buf: String::with_capacity(8192),
        }
    }
}

impl Collect for KeyedCollector {
    fn collect(&mut self, emitter: &Emitter) -> Result<(), ProbeError> {
        read_into(&self.path, &mut self.buf)?;
        let values = self.spec.parse(&self.buf).map_err(|e| e.at(&self.path))?;
        emitter.record(self.spec.table, self.spec.record(&values));
        Ok(())
    }
}

/// Formats an optional number as a record value (`None` is null, i.e. empty).
pub(crate) fn opt_value(v: Option<u64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

#[cfg(test)]
// A build with some probes left out uses some of these helpers only.
#[cfg_attr(
    not(all(
        feature = "system_meminfo",
        feature = "system_vmstat",
        feature = "system_inode",
        feature = "system_tcp",
        feature = "tcp_link"
    )),
    allow(dead_code)
)]
pub(crate) mod test_support {
    //! Helpers shared by the probe tests.

    use std::path::PathBuf;
    use std::sync::atomic::AtomicU64;
    use std::sync::mpsc::{sync_channel, Receiver};
    use std::sync::Arc;

    use crate::api::{Emitted, Emitter, Payload};

    /// `tests/data/proc` of the workspace.
    pub fn fixture_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/proc")
    }

    /// An emitter with room for `cap` records, and its receiving end.
    pub fn emitter(cap: usize) -> (Emitter, Receiver<Emitted>) {
        let (tx, rx) = sync_channel(cap);
        (
            Emitter::new("test".into(), tx, Arc::new(AtomicU64::new(0))),
            rx,
        )
    }

    /// Every structured record queued so far, as (table, values).
    pub fn drain(rx: &Receiver<Emitted>) -> Vec<(&'static str, Vec<String>)> {
        rx.try_iter()
            .map(|e| match e.payload {
                Payload::Record { table, values } => (table, values),
                Payload::Line(l) => panic!("unexpected line {l:?}"),
            })
            .collect()
    }

    /// The `(name, type)` of each field of a `.meta` file, in order, found by
    /// a small scan for `name: "..."` and `type: "..."` (not a full libconfig
    /// parser; `table_name:` and `entity_name:` are not field names).
    pub fn meta_fields(meta: &str) -> Vec<(String, String)> {
        let names = quoted_after(meta, "name");
        let types = quoted_after(meta, "type");
        assert_eq!(
            names.len(),
            types.len(),
            "every field needs a name and a type"
        );
        names.into_iter().zip(types).collect()
    }

    /// The quoted values of `key:` where `key` is a whole word.
    pub fn quoted_after(text: &str, key: &str) -> Vec<String> {
        let pat = format!("{key}:");
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(off) = text.get(from..).and_then(|t| t.find(&pat)) {
            let at = from + off;
            from = at + pat.len();
            let prev = text.get(..at).and_then(|t| t.chars().next_back());
            if prev.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = text.get(from..).unwrap_or_default().trim_start();
            let Some(rest) = rest.strip_prefix('"') else {
                continue;
            };
            let end = rest.find('"').expect("closing quote");
            out.push(rest.get(..end).unwrap_or_default().to_string());
        }
        out
    }

    /// Checks a probe's meta file against the field list its code emits.
    pub fn check_meta(meta: &str, table: &str, fields: &[&str]) {
        assert_eq!(quoted_after(meta, "table_name"), [table], "table_name");
        assert_eq!(quoted_after(meta, "entity_name"), [table], "entity_name");
        let got = meta_fields(meta);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names, fields,
            "meta fields of {table} drifted from the code"
        );
        assert_eq!(
            got.first().map(|(_, t)| t.as_str()),
            Some("key"),
            "first field must be a key"
        );
        for (name, ty) in &got {
            assert!(
                ["key", "label", "gauge", "counter"].contains(&ty.as_str()),
                "{name}: type {ty}"
            );
        }
        let descriptions = quoted_after(meta, "description");
        assert_eq!(
            descriptions.len(),
            fields.len(),
            "one description per field"
        );
        assert!(
            descriptions.iter().all(|d| !d.trim().is_empty()),
            "empty description"
        );
    }
}

// The registry tests cover the four /proc probes together (the default
// build); each probe's own tests live in its module.
#[cfg(all(
    test,
    feature = "system_meminfo",
    feature = "system_vmstat",
    feature = "system_inode",
    feature = "system_tcp"
))]
mod tests {
    use super::test_support::{emitter, meta_fields};
    use super::*;
    use crate::api::{Payload, Shutdown};
    use crate::params::Params;
    use std::collections::HashSet;
    use std::time::Duration;

    fn field_count(table: &str) -> usize {
        match table {
            meminfo::TABLE => meminfo::FIELDS.len(),
            vmstat::TABLE => vmstat::FIELDS.len(),
            inode::TABLE => inode::FIELDS.len(),
            tcp::TABLE => tcp::FIELDS.len(),
            other => panic!("no field list for {other}"),
        }
    }

    #[test]
    fn pick_values_handles_both_layouts_and_junk() {
        let text = "A: 1 kB\nB 2\n\nC: x kB\nlonely\nA: 9 kB\nD:\t18446744073709551615\n";
        let got = pick_values(text, &["A", "B", "C", "D", "E"]);
        assert_eq!(got, [Some(1), Some(2), None, Some(u64::MAX), None]);
    }

    #[test]
    fn meta_scan_skips_table_and_entity_names() {
        let meta = r#"table_name: "t", entity_name: "t", fields: ( { description: "a name: x", type: "key", name: "k" } )"#;
        assert_eq!(meta_fields(meta), [("k".to_string(), "key".to_string())]);
    }

    #[test]
    fn registry_entries_are_distinct_and_build_what_they_say() {
        let mut names = HashSet::new();
        for def in PROBES {
            assert!(names.insert(def.name), "duplicate probe {}", def.name);
            assert!(!def.tables.is_empty(), "{} has no tables", def.name);
            let probe = (def.build)();
            assert_eq!(probe.name(), def.name);
            assert_eq!(probe.tables(), def.tables);
            for t in def.tables {
                assert!(field_count(t) > 0);
            }
        }
        assert_eq!(PROBES.len(), 4);
    }

    /// Runs every registered probe against the real /proc until its first
    /// record, then shuts it down and checks it stopped cleanly.
    #[cfg(target_os = "linux")]
    #[test]
    fn every_probe_emits_from_real_proc() {
        // Make sure there is at least one TCP socket to report.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a listener");
        for def in PROBES {
            let (em, rx) = emitter(8192);
            let shutdown = Shutdown::new();
            let cx = ProbeContext {
                emitter: em,
                params: Params::default(),
                shutdown: shutdown.clone(),
            };
            let probe = (def.build)();
            let handle = std::thread::spawn(move || probe.run(cx));
            let first = rx.recv_timeout(Duration::from_secs(20));
            // Trigger from this thread while the probe thread waits its period.
            shutdown.trigger();
            let result = handle.join().expect("probe thread panicked");
            assert!(result.is_ok(), "{}: {result:?}", def.name);
            let first = first.unwrap_or_else(|e| panic!("{}: no record: {e}", def.name));
            let Payload::Record { table, values } = first.payload else {
                panic!("{}: expected a record", def.name);
            };
            assert!(def.tables.contains(&table), "{}: table {table}", def.name);
            assert_eq!(
                values.len(),
                field_count(table),
                "{}: value count",
                def.name
            );
            assert!(
                values.first().is_some_and(|v| !v.is_empty()),
                "{}: empty first key",
                def.name
            );
        }
        drop(listener);
    }

    #[test]
    fn failing_read_ends_the_run_with_the_path() {
        let root = std::env::temp_dir().join("gopher-no-such-proc-root");
        let probe = Periodic::boxed(meminfo::PROBE, &[meminfo::TABLE], meminfo::collector(&root));
        let (em, rx) = emitter(4);
        let cx = ProbeContext {
            emitter: em,
            params: Params::default(),
            shutdown: Shutdown::new(),
        };
        match probe.run(cx) {
            Err(ProbeError::Io { path, .. }) => {
                assert!(path.ends_with("gopher-no-such-proc-root/meminfo"), "{path}")
            }
            other => panic!("expected an Io error, got {other:?}"),
        }
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn run_returns_at_once_when_already_shut_down() {
        let probe = (PROBES[0].build)();
        let (em, rx) = emitter(4);
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let cx = ProbeContext {
            emitter: em,
            params: Params::default(),
            shutdown,
        };
        assert!(probe.run(cx).is_ok());
        assert!(rx.try_recv().is_err());
    }
}
