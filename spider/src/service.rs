//! The shared state of a running spider: the builder behind a mutex, the
//! last snapshot, the counters; and the ingest path every source uses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gala_common::topology_records::MetricRecord;

use crate::config::{Config, UiSource};
use crate::neo4j::Sink;
use crate::stats::Stats;
use crate::topology::{Builder, Topology};

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the source, the period loop and the HTTP server share.
#[derive(Debug)]
pub struct Shared {
    builder: Mutex<Builder>,
    last: RwLock<Arc<Topology>>,
    /// Counters.
    pub stats: Arc<Stats>,
    expire_ms: u64,
    /// Set to stop every loop.
    pub shutdown: AtomicBool,
}

impl Shared {
    /// The state for `cfg`.
    pub fn new(cfg: &Config) -> Self {
        let expire_ms = cfg.option.expire_secs.saturating_mul(1000);
        Self {
            builder: Mutex::new(Builder::new(
                expire_ms,
                cfg.exclusions(),
                &cfg.table_info.other_table_name,
            )),
            last: RwLock::new(Arc::new(Topology::default())),
            stats: Arc::new(Stats::default()),
            expire_ms,
            shutdown: AtomicBool::new(false),
        }
    }

    /// Whether the service is stopping.
    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Folds a batch of payloads (one metric record each) in, as seen at
    /// `now_ms`. Bad JSON and records older than the expiry window are
    /// counted and skipped; nothing is logged per record.
    pub fn ingest<'p>(&self, payloads: impl IntoIterator<Item = &'p [u8]>, now_ms: u64) {
        let mut b = self.builder.lock().unwrap_or_else(PoisonError::into_inner);
        for p in payloads {
            self.ingest_one(&mut b, p, now_ms);
        }
    }

    fn ingest_one(&self, b: &mut Builder, payload: &[u8], now_ms: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.received.fetch_add(1, Relaxed);
        let Ok(text) = std::str::from_utf8(payload) else {
            self.stats.bad_json.fetch_add(1, Relaxed);
            return;
        };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let Ok(rec) = MetricRecord::parse(text) else {
            self.stats.bad_json.fetch_add(1, Relaxed);
            return;
        };
        if rec.timestamp_ms != 0 && rec.timestamp_ms.saturating_add(self.expire_ms) < now_ms {
            self.stats.stale.fetch_add(1, Relaxed);
            return;
        }
        self.stats.applied(b.apply(&rec, now_ms));
    }

    /// Snapshots the builder at `now_ms` and publishes the result.
    pub fn tick(&self, now_ms: u64) -> Arc<Topology> {
        let t = Arc::new(
            self.builder
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .snapshot(now_ms),
        );
        self.stats.snapshot(&t);
        *self.last.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&t);
        t
    }

    /// The last published snapshot.
    pub fn last(&self) -> Arc<Topology> {
        Arc::clone(&self.last.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The period loop: every `period`, snapshot and apply the change to the
/// sink, until shutdown.
pub fn period_loop(shared: &Shared, cfg: &Config) {
    let period = Duration::from_secs(cfg.option.period_secs);
    let mut sink = (cfg.global.ui_source == UiSource::Neo4j)
        .then(|| Sink::new(&cfg.neo4j, Arc::clone(&shared.stats)));
    let mut next = Instant::now();
    while !shared.stopping() {
        let t = shared.tick(now_ms());
        if let Some(s) = sink.as_mut() {
            s.apply(&t);
        }
        next += period;
        while !shared.stopping() {
            let now = Instant::now();
            if now >= next {
                break;
            }
            std::thread::sleep((next - now).min(Duration::from_millis(100)));
        }
        if Instant::now() > next + period {
            next = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn ingest_counts_bad_json_stale_and_unused_records() {
        let s = Shared::new(&Config::default());
        let now = 1_000_000;
        let fresh = format!(
            r#"{{"timestamp":{now},"hostname":"h","table_name":"tcp_link","pid":"1","process_name":"p","role":"1","client_ip":"1.1.1.1","server_ip":"2.2.2.2","server_port":"80"}}"#
        );
        let stale = fresh.replace(&now.to_string(), "1000");
        let lines: [&[u8]; 6] = [
            fresh.as_bytes(),
            stale.as_bytes(),
            b"{oops",
            b"\xff\xfe",
            br#"{"hostname":"h","table_name":"system_meminfo"}"#,
            b"   ",
        ];
        s.ingest(lines, now);
        let st = &s.stats;
        assert_eq!(st.received.load(Relaxed), 6);
        assert_eq!(st.tcp_link.load(Relaxed), 1);
        assert_eq!(st.stale.load(Relaxed), 1);
        assert_eq!(st.bad_json.load(Relaxed), 2);
        assert_eq!(st.unused_table.load(Relaxed), 1);
        let t = s.tick(now);
        assert_eq!(t.processes.len(), 1);
        assert_eq!(s.last().processes[0].id, "h.p");
        assert!(s
            .stats
            .render()
            .contains("gala_spider_records_total{outcome=\"stale\"} 1\n"));
    }
}
