//! The in-memory table store: the live series of every table.
//!
//! Each table maps the values of its key fields to the last record seen for
//! them. A series expires `ttl` after its last update and a table holds at
//! most `max_series` series: a new series beyond that is dropped and counted
//! (stage `store_full` of the table, in [`Stats`]), never grown. Updating an existing series reuses its buffers, so the steady
//! state allocates nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::meta::{MetaRegistry, Table};
use crate::stats::{DropCounter, DropStage, Stats};

/// One live series: the last values of a key.
#[derive(Debug, Clone)]
pub struct Series {
    /// Values in meta field order; `""` is null.
    pub values: Vec<String>,
    /// When it was last updated.
    pub updated: Instant,
    /// Wall-clock time of the last update, ms since the epoch.
    pub timestamp_ms: u64,
}

/// The series of one table.
#[derive(Debug)]
pub struct TableSeries {
    table: Arc<Table>,
    series: HashMap<Box<str>, Series>,
}

impl TableSeries {
    /// The table's meta.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// Live series (not yet expired at `now` given `ttl`), in no order.
    pub fn live(&self, now: Instant, ttl: Duration) -> impl Iterator<Item = &Series> {
        self.series
            .values()
            .filter(move |s| now.saturating_duration_since(s.updated) < ttl)
    }

    /// Live series sorted by key, so expositions are stable between scrapes.
    pub fn live_sorted(&self, now: Instant, ttl: Duration) -> Vec<&Series> {
        let mut v: Vec<(&str, &Series)> = self
            .series
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.updated) < ttl)
            .map(|(k, s)| (&**k, s))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// Number of series held, expired or not.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether it holds no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// Outcome of [`TableStore::upsert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// An existing series was updated.
    Updated,
    /// A new series was created.
    Inserted,
    /// The table is at its cap: the record was dropped and counted.
    DroppedFull,
}

/// All tables' live series.
#[derive(Debug)]
pub struct TableStore {
    tables: Vec<Mutex<TableSeries>>,
    /// Where drops are counted.
    stats: Arc<Stats>,
    /// Each table's drop counter, registered in `stats` at its first drop
    /// (a table that never dropped shows no `store_full` series).
    dropped: Vec<OnceLock<DropCounter>>,
    ttl: Duration,
    max_series: usize,
}

impl TableStore {
    /// A store for every table of `registry`, counting its drops in a
    /// [`Stats`] of its own (see [`TableStore::counting_in`]).
    pub fn new(registry: &MetaRegistry, ttl: Duration, max_series: usize) -> Self {
        let tables = registry
            .tables()
            .iter()
            .map(|t| {
                Mutex::new(TableSeries {
                    table: Arc::clone(t),
                    series: HashMap::new(),
                })
            })
            .collect::<Vec<_>>();
        let dropped = tables.iter().map(|_| OnceLock::new()).collect();
        Self {
            tables,
            stats: Stats::new(),
            dropped,
            ttl,
            max_series: max_series.max(1),
        }
    }

    /// Counts its drops in `stats` (the agent's self-metrics) from now on.
    #[must_use]
    pub fn counting_in(mut self, stats: &Arc<Stats>) -> Self {
        self.stats = Arc::clone(stats);
        self.dropped = self.tables.iter().map(|_| OnceLock::new()).collect();
        self
    }

    /// Series time-to-live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Locks the table at registry index `idx` (for reading snapshots).
    pub fn lock(&self, idx: usize) -> Option<MutexGuard<'_, TableSeries>> {
        self.tables
            .get(idx)
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Number of tables.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether there are no tables.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Records dropped because the table at `idx` was full.
    pub fn dropped(&self, idx: usize) -> u64 {
        self.dropped
            .get(idx)
            .and_then(OnceLock::get)
            .map_or(0, DropCounter::get)
    }

    fn count_drop(&self, idx: usize, table: &str) {
        if let Some(slot) = self.dropped.get(idx) {
            slot.get_or_init(|| self.stats.drop_counter(DropStage::StoreFull, table))
                .add(1);
        }
    }

    /// Inserts or updates the series of a validated record of the table at
    /// registry index `idx`. `key_buf` is scratch space reused across calls.
    pub fn upsert<S: AsRef<str>>(
        &self,
        idx: usize,
        values: &[S],
        now: Instant,
        timestamp_ms: u64,
        key_buf: &mut String,
    ) -> Upsert {
        let Some(slot) = self.tables.get(idx) else {
            return Upsert::DroppedFull;
        };
        let mut t = slot.lock().unwrap_or_else(PoisonError::into_inner);
        key_buf.clear();
        for &k in &t.table.keys {
            // `|` cannot occur in a value, so it separates keys unambiguously.
            key_buf.push_str(values.get(k).map_or("", AsRef::as_ref));
            key_buf.push('|');
        }
        if let Some(s) = t.series.get_mut(key_buf.as_str()) {
            for (dst, src) in s.values.iter_mut().zip(values) {
                dst.clear();
                dst.push_str(src.as_ref());
            }
            s.updated = now;
            s.timestamp_ms = timestamp_ms;
            return Upsert::Updated;
        }
        if t.series.len() >= self.max_series {
            let ttl = self.ttl;
            t.series
                .retain(|_, s| now.saturating_duration_since(s.updated) < ttl);
            if t.series.len() >= self.max_series {
                self.count_drop(idx, &t.table.name);
                return Upsert::DroppedFull;
            }
        }
        let series = Series {
            values: values.iter().map(|v| v.as_ref().to_owned()).collect(),
            updated: now,
            timestamp_ms,
        };
        t.series.insert(key_buf.as_str().into(), series);
        Upsert::Inserted
    }

    /// Removes every series of the tables named (a probe that emitted them
    /// was stopped); returns how many went. Unknown names are skipped.
    pub fn clear_tables(&self, names: &[String]) -> usize {
        let mut removed = 0;
        for slot in &self.tables {
            let mut t = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if names.iter().any(|n| *n == t.table.name) {
                removed += t.series.len();
                t.series.clear();
            }
        }
        removed
    }

    /// Removes expired series from every table; returns how many went.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut removed = 0;
        for slot in &self.tables {
            let mut t = slot.lock().unwrap_or_else(PoisonError::into_inner);
            let before = t.series.len();
            let ttl = self.ttl;
            t.series
                .retain(|_, s| now.saturating_duration_since(s.updated) < ttl);
            if t.series.capacity() > 64 && t.series.len() < t.series.capacity() / 4 {
                t.series.shrink_to_fit();
            }
            removed += before - t.series.len();
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{Field, FieldType};

    #[test]
    fn drops_are_counted_in_the_agent_s_stats() {
        let stats = Stats::new();
        let s = store(1).counting_in(&stats);
        let now = Instant::now();
        let mut buf = String::new();
        s.upsert(0, &["a", "1", "1"], now, 0, &mut buf);
        assert!(stats.drops().is_empty(), "no series before the first drop");
        s.upsert(0, &["b", "1", "1"], now, 0, &mut buf);
        s.upsert(0, &["c", "1", "1"], now, 0, &mut buf);
        assert_eq!(stats.drops(), [("store_full", "t".to_string(), 2)]);
        assert_eq!(s.dropped(0), 2);
    }

    fn store(cap: usize) -> TableStore {
        let f = |name: &str, ty| Field {
            name: name.into(),
            description: String::new(),
            ty,
        };
        let t = Table::new(
            "t",
            "t",
            vec![
                f("k1", FieldType::Key),
                f("k2", FieldType::Key),
                f("v", FieldType::Gauge),
            ],
        );
        TableStore::new(
            &MetaRegistry::from_checked(vec![t]),
            Duration::from_secs(60),
            cap,
        )
    }

    #[test]
    fn keys_identify_series_and_updates_replace_values() {
        let s = store(10);
        let now = Instant::now();
        let mut buf = String::new();
        assert_eq!(
            s.upsert(0, &["a", "b", "1"], now, 1, &mut buf),
            Upsert::Inserted
        );
        assert_eq!(
            s.upsert(0, &["a", "b", "2"], now, 2, &mut buf),
            Upsert::Updated
        );
        // "ab"+"" and "a"+"b" must not collide.
        assert_eq!(
            s.upsert(0, &["ab", "", "3"], now, 3, &mut buf),
            Upsert::Inserted
        );
        let t = s.lock(0).expect("table 0");
        let mut vals: Vec<_> = t.live(now, s.ttl()).map(|x| x.values.clone()).collect();
        vals.sort();
        assert_eq!(vals, vec![vec!["a", "b", "2"], vec!["ab", "", "3"]]);
    }

    #[test]
    fn cap_drops_and_counts_but_expired_series_make_room() {
        let s = store(2);
        let t0 = Instant::now();
        let mut buf = String::new();
        s.upsert(0, &["a", "1", "1"], t0, 0, &mut buf);
        s.upsert(0, &["b", "1", "1"], t0, 0, &mut buf);
        assert_eq!(
            s.upsert(0, &["c", "1", "1"], t0, 0, &mut buf),
            Upsert::DroppedFull
        );
        assert_eq!(
            s.upsert(0, &["a", "1", "5"], t0, 0, &mut buf),
            Upsert::Updated,
            "updates still pass"
        );
        assert_eq!(s.dropped(0), 1);
        assert_eq!(s.stats.drops(), [("store_full", "t".to_string(), 1)]);
        assert_eq!(s.lock(0).expect("t").len(), 2);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            s.upsert(0, &["c", "1", "1"], later, 0, &mut buf),
            Upsert::Inserted
        );
        assert_eq!(s.lock(0).expect("t").len(), 1);
    }

    #[test]
    fn ttl_hides_then_sweep_removes() {
        let s = store(10);
        let t0 = Instant::now();
        let mut buf = String::new();
        s.upsert(0, &["a", "1", "1"], t0, 0, &mut buf);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(s.lock(0).expect("t").live(later, s.ttl()).count(), 0);
        assert_eq!(s.sweep(later), 1);
        assert!(s.lock(0).expect("t").is_empty());
        assert!(s.lock(1).is_none());
    }
}
