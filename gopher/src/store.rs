//! The in-memory table store: the live series of every table.
//!
//! Each table maps the values of its key fields to the last record seen for
//! them. A series expires `ttl` after its last update and a table holds at
//! most `max_series` series: a new series beyond that is dropped and counted
//! (stage `store_full` of the table, in [`Stats`]), never grown. Updating an
//! existing series reuses its buffers, so the steady state allocates nothing.
//!
//! A series keeps its values in one string (one copy per update) with their
//! end offsets. A table keeps its series in key order once asked for it
//! ([`TableSeries::sort`], by the exposition), and stays so while no series
//! comes or goes, so a steady scrape sorts nothing. An exporter may keep a
//! rendering of a series' keys and labels in it ([`Series::labels_cache`]):
//! the store empties it whenever one of those values changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::meta::{FieldType, MetaRegistry, Table};
use crate::stats::{DropCounter, DropStage, Stats};

/// The hasher of the series index: fast on short keys, seeded per process.
type Hasher = foldhash::fast::RandomState;

/// One live series: the last values of a key.
#[derive(Debug, Clone)]
pub struct Series {
    /// The key values, each followed by `|` (the index's key).
    key: Box<str>,
    /// The values one after the other.
    text: String,
    /// Where each value ends in `text`; value `i` starts where `i - 1`
    /// ends, plus `gap`.
    ends: Vec<u32>,
    /// Bytes between two values in `text`: 1 when it is the record's
    /// `v1|v2|..` text, copied as is, 0 when the values were appended.
    gap: u32,
    /// An exporter's rendering of the key and label values, `None` once
    /// one of them changed.
    labels: Option<String>,
    /// When it was last updated.
    pub updated: Instant,
    /// Wall-clock time of the last update, ms since the epoch.
    pub timestamp_ms: u64,
}

impl Series {
    fn new(key: &str, now: Instant, timestamp_ms: u64) -> Self {
        Self {
            key: key.into(),
            text: String::new(),
            ends: Vec::new(),
            gap: 0,
            labels: None,
            updated: now,
            timestamp_ms,
        }
    }

    /// Number of values (the table's field count).
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it has no value.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Value of field `i`, `""` for null or past the end.
    pub fn value(&self, i: usize) -> &str {
        let Some(&end) = self.ends.get(i) else {
            return "";
        };
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] + self.gap,
        };
        self.text.get(start as usize..end as usize).unwrap_or("")
    }

    /// Values in meta field order, `""` for null.
    pub fn values(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.ends.len()).map(|i| self.value(i))
    }

    /// The key values, each followed by `|`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The cached rendering of the key and label values, if still valid,
    /// or a new one made by `render` (into an empty string).
    pub fn labels_cache(&mut self, render: impl FnOnce(&Self, &mut String)) -> &str {
        if self.labels.is_none() {
            let mut s = String::new();
            render(self, &mut s);
            self.labels = Some(s);
        }
        self.labels.as_deref().unwrap_or("")
    }

    /// The rendering kept by [`Series::labels_cache`], if still valid.
    pub fn labels_cached(&self) -> Option<&str> {
        self.labels.as_deref()
    }

    /// Whether a value of `fields` differs between the series and `values`.
    fn differs_in<S: AsRef<str>>(&self, fields: &[usize], values: &[S]) -> bool {
        fields
            .iter()
            .any(|&i| self.value(i) != values.get(i).map_or("", AsRef::as_ref))
    }

    /// Takes `values`; `joined`, when given, is the same values separated
    /// by `|` (the record's own text), copied at once.
    fn set<S: AsRef<str>>(&mut self, values: &[S], joined: Option<&str>) {
        self.text.clear();
        self.ends.clear();
        if let Some(j) = joined.filter(|j| fits_joined(j, values)) {
            self.text.push_str(j);
            let mut end = 0;
            for v in values {
                end += v.as_ref().len();
                self.ends.push(offset(end));
                end += 1;
            }
            self.gap = 1;
        } else {
            for v in values {
                self.text.push_str(v.as_ref());
                self.ends.push(offset(self.text.len()));
            }
            self.gap = 0;
        }
    }
}

/// Whether `values` were cut from `joined` one after the other, one byte
/// apart: then `joined` holds each of them where [`Series::value`] finds it.
fn fits_joined<S: AsRef<str>>(joined: &str, values: &[S]) -> bool {
    let base = joined.as_ptr() as usize;
    let mut at = 0;
    for v in values {
        let v = v.as_ref();
        if v.as_ptr() as usize != base + at {
            return false;
        }
        at += v.len() + 1;
    }
    !values.is_empty() && at == joined.len() + 1
}

fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The series of one table.
#[derive(Debug)]
pub struct TableSeries {
    table: Arc<Table>,
    /// Fields that may change within a series: labels.
    changing_labels: Vec<usize>,
    /// Position in `series` by key.
    index: HashMap<Box<str>, usize, Hasher>,
    series: Vec<Series>,
    /// Whether `series` is in key order.
    sorted: bool,
}

impl TableSeries {
    fn new(table: &Arc<Table>) -> Self {
        Self {
            table: Arc::clone(table),
            changing_labels: table
                .fields
                .iter()
                .enumerate()
                .filter(|(_, f)| f.ty == FieldType::Label)
                .map(|(i, _)| i)
                .collect(),
            index: HashMap::default(),
            series: Vec::new(),
            sorted: true,
        }
    }

    /// The table's meta.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// Live series (not yet expired at `now` given `ttl`), in no order.
    pub fn live(&self, now: Instant, ttl: Duration) -> impl Iterator<Item = &Series> {
        self.series
            .iter()
            .filter(move |s| now.saturating_duration_since(s.updated) < ttl)
    }

    /// Puts the series in key order, so expositions are stable between
    /// scrapes. Sorts only when series came or went since the last time.
    pub fn sort(&mut self) {
        if self.sorted {
            return;
        }
        self.series.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        self.reindex();
        self.sorted = true;
    }

    /// Live series, in key order once [`TableSeries::sort`] was called and
    /// no series was added since; the mutable access is for the labels
    /// cache.
    pub fn live_mut(&mut self, now: Instant, ttl: Duration) -> impl Iterator<Item = &mut Series> {
        self.series
            .iter_mut()
            .filter(move |s| now.saturating_duration_since(s.updated) < ttl)
    }

    /// Live series sorted by key, so expositions are stable between scrapes.
    pub fn live_sorted(&mut self, now: Instant, ttl: Duration) -> Vec<&Series> {
        self.sort();
        self.live(now, ttl).collect()
    }

    /// Number of series held, expired or not.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether it holds no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn reindex(&mut self) {
        for (i, s) in self.series.iter().enumerate() {
            if let Some(pos) = self.index.get_mut(&s.key) {
                *pos = i;
            }
        }
    }

    /// Removes the series `keep` refuses; the order stays. Returns how many
    /// went.
    fn retain(&mut self, keep: impl Fn(&Series) -> bool) -> usize {
        if self.series.iter().all(&keep) {
            return 0;
        }
        let before = self.series.len();
        let series = &self.series;
        self.index
            .retain(|_, pos| series.get(*pos).is_some_and(&keep));
        self.series.retain(&keep);
        self.reindex();
        before - self.series.len()
    }

    fn expire(&mut self, now: Instant, ttl: Duration) -> usize {
        self.retain(|s| now.saturating_duration_since(s.updated) < ttl)
    }

    fn clear(&mut self) {
        self.series.clear();
        self.index.clear();
        self.sorted = true;
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
            .map(|t| Mutex::new(TableSeries::new(t)))
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
        self.upsert_joined(idx, values, None, now, timestamp_ms, key_buf)
    }

    /// [`TableStore::upsert`] of a record whose values were cut from
    /// `joined`, their text separated by `|` (a decoded line after its table
    /// name): the series takes the text in one copy.
    pub fn upsert_joined<S: AsRef<str>>(
        &self,
        idx: usize,
        values: &[S],
        joined: Option<&str>,
        now: Instant,
        timestamp_ms: u64,
        key_buf: &mut String,
    ) -> Upsert {
        let Some(slot) = self.tables.get(idx) else {
            return Upsert::DroppedFull;
        };
        let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let t = &mut *guard;
        key_buf.clear();
        for &k in &t.table.keys {
            // `|` cannot occur in a value, so it separates keys unambiguously.
            key_buf.push_str(values.get(k).map_or("", AsRef::as_ref));
            key_buf.push('|');
        }
        if let Some(&pos) = t.index.get(key_buf.as_str()) {
            if let Some(s) = t.series.get_mut(pos) {
                if s.labels.is_some() && s.differs_in(&t.changing_labels, values) {
                    s.labels = None;
                }
                s.set(values, joined);
                s.updated = now;
                s.timestamp_ms = timestamp_ms;
                return Upsert::Updated;
            }
        }
        if t.series.len() >= self.max_series {
            t.expire(now, self.ttl);
            if t.series.len() >= self.max_series {
                self.count_drop(idx, &t.table.name);
                return Upsert::DroppedFull;
            }
        }
        let mut series = Series::new(key_buf, now, timestamp_ms);
        series.set(values, joined);
        if t.sorted {
            t.sorted = t.series.last().is_none_or(|l| l.key < series.key);
        }
        t.index.insert(key_buf.as_str().into(), t.series.len());
        t.series.push(series);
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
                t.clear();
            }
        }
        removed
    }

    /// Removes expired series from every table; returns how many went.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut removed = 0;
        for slot in &self.tables {
            let mut t = slot.lock().unwrap_or_else(PoisonError::into_inner);
            removed += t.expire(now, self.ttl);
            if t.series.capacity() > 64 && t.series.len() < t.series.capacity() / 4 {
                t.series.shrink_to_fit();
                t.index.shrink_to_fit();
            }
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
        store_of(["k1", "k2", "v"], [FieldType::Key, FieldType::Key], cap)
    }

    /// A table `t` of three fields, the last a gauge.
    fn store_of(names: [&str; 3], first: [FieldType; 2], cap: usize) -> TableStore {
        let types = [first[0], first[1], FieldType::Gauge];
        let fields = names
            .iter()
            .zip(types)
            .map(|(name, ty)| Field {
                name: (*name).into(),
                description: String::new(),
                ty,
            })
            .collect();
        TableStore::new(
            &MetaRegistry::from_checked(vec![Table::new("t", "t", fields)]),
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
        let mut vals: Vec<Vec<&str>> = t.live(now, s.ttl()).map(|x| x.values().collect()).collect();
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

    fn keys(t: &TableSeries) -> Vec<&str> {
        t.live(Instant::now(), Duration::from_secs(60))
            .map(Series::key)
            .collect()
    }

    #[test]
    fn a_sorted_table_stays_sorted_until_a_series_comes() {
        let s = store(10);
        let now = Instant::now();
        let mut buf = String::new();
        for k in ["c", "a", "b"] {
            s.upsert(0, &[k, "x", "1"], now, 0, &mut buf);
        }
        let mut t = s.lock(0).expect("t");
        t.sort();
        assert_eq!(keys(&t), ["a|x|", "b|x|", "c|x|"]);
        drop(t);
        // Updates and a new last key keep the order; a new key before the
        // last does not, until the next sort.
        s.upsert(0, &["b", "x", "2"], now, 0, &mut buf);
        s.upsert(0, &["d", "x", "1"], now, 0, &mut buf);
        assert!(s.lock(0).expect("t").sorted);
        s.upsert(0, &["a0", "x", "1"], now, 0, &mut buf);
        let mut t = s.lock(0).expect("t");
        assert!(!t.sorted);
        t.sort();
        assert_eq!(keys(&t), ["a0|x|", "a|x|", "b|x|", "c|x|", "d|x|"]);
        assert_eq!(t.series[2].value(2), "2");
    }

    #[test]
    fn the_index_follows_removals() {
        let s = store(10);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(30);
        let mut buf = String::new();
        s.upsert(0, &["a", "1", "1"], t0, 0, &mut buf);
        s.upsert(0, &["b", "1", "1"], later, 0, &mut buf);
        s.upsert(0, &["c", "1", "1"], t0, 0, &mut buf);
        assert_eq!(s.sweep(t0 + Duration::from_secs(61)), 2);
        assert_eq!(
            s.upsert(0, &["b", "1", "7"], later, 0, &mut buf),
            Upsert::Updated
        );
        assert_eq!(
            s.upsert(0, &["a", "1", "1"], later, 0, &mut buf),
            Upsert::Inserted
        );
        let t = s.lock(0).expect("t");
        assert_eq!(t.len(), 2);
        for (k, &pos) in &t.index {
            assert_eq!(&*t.series[pos].key, &**k);
        }
        drop(t);
        assert_eq!(s.clear_tables(&["t".to_string()]), 2, "by table name");
        assert!(s.lock(0).expect("t").index.is_empty());
    }

    fn labelled() -> TableStore {
        store_of(["k", "l", "v"], [FieldType::Key, FieldType::Label], 10)
    }

    #[test]
    fn the_labels_cache_lives_until_a_label_changes() {
        let s = labelled();
        let now = Instant::now();
        let mut buf = String::new();
        let cache = |s: &TableStore| {
            let mut t = s.lock(0).expect("t");
            let series = &mut t.series[0];
            series
                .labels_cache(|x, out| {
                    out.push_str(x.value(0));
                    out.push_str(x.value(1));
                })
                .to_owned()
        };
        s.upsert(0, &["k", "l1", "1"], now, 0, &mut buf);
        assert_eq!(cache(&s), "kl1");
        s.upsert(0, &["k", "l1", "2"], now, 0, &mut buf);
        assert_eq!(
            s.lock(0).expect("t").series[0].labels_cached(),
            Some("kl1"),
            "a new value keeps it"
        );
        s.upsert(0, &["k", "l2", "3"], now, 0, &mut buf);
        assert_eq!(s.lock(0).expect("t").series[0].labels_cached(), None);
        assert_eq!(cache(&s), "kl2");
        s.upsert(0, &["k", "", "3"], now, 0, &mut buf);
        assert_eq!(cache(&s), "k", "a label gone is a change");
    }

    #[test]
    fn joined_text_is_taken_only_when_the_values_were_cut_from_it() {
        let s = labelled();
        let now = Instant::now();
        let mut buf = String::new();
        let line = "k|lab||42";
        let cut: Vec<&str> = line.split('|').collect();
        let vals = |s: &TableStore| -> Vec<String> {
            let t = s.lock(0).expect("t");
            t.series[0].values().map(str::to_owned).collect()
        };
        s.upsert_joined(0, &cut[..3], Some(&line[..6]), now, 0, &mut buf);
        assert_eq!(vals(&s), ["k", "lab", ""]);
        assert_eq!(s.lock(0).expect("t").series[0].gap, 1);
        // Not cut from the text given (other values, or not all of them):
        // the values are copied one by one.
        s.upsert_joined(0, &["k", "x", "1"], Some("k|lab|"), now, 0, &mut buf);
        assert_eq!(vals(&s), ["k", "x", "1"]);
        s.upsert_joined(0, &cut[..3], Some(line), now, 0, &mut buf);
        assert_eq!(vals(&s), ["k", "lab", ""]);
        assert_eq!(s.lock(0).expect("t").series[0].gap, 0);
        let t = s.lock(0).expect("t");
        assert_eq!(t.series[0].value(3), "", "past the end");
        assert_eq!(t.series[0].len(), 3);
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
