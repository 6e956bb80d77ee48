//! Prometheus exposition of the store (docs/compat.md §5), with normal semantics:
//! every scrape shows the current value of every live series, and scraping
//! changes nothing, so any number of scrapers see the same series.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::identity::Identity;
use crate::meta::{FieldType, MetaRegistry, Table};
use crate::record::{parse_number, Histogram, Reject};
use crate::stats::{ProbeState, Stats};
use crate::store::{Series, TableSeries, TableStore};

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Tables this project made, which the legacy agent never had (or had under
/// other names, so no legacy name exists to keep). Their Prometheus names must
/// pass `promtool check metrics`, so each of their counters gets the `_total`
/// suffix, appended to the field name unless it already ends in `_total`. It
/// is a Prometheus suffix only: the logs and Kafka keep the meta field name,
/// as Prometheus client libraries do. Every other table, legacy or a user's
/// own, is exported exactly as `gala_gopher_<entity>_<field>` (docs/compat.md
/// §5), so legacy names never change. A new table of this repository goes in
/// this list (docs/how_to_add_probe.md).
pub const OWN_TABLES: &[&str] = &[
    // tcp_link's own counters (meta/tcp_link.meta).
    "tcp_link_probe_stats",
    // The legacy system_cpu and system_net had entities `cpu` and `nic` and
    // other fields: none of our names is a legacy one.
    "system_cpu",
    "system_net",
];

/// Fields this project added to legacy tables, by table. A counter among
/// them gets `_total` like the counters of [`OWN_TABLES`]; every other field
/// of those tables, the legacy ones (the seed's, docs/compat.md §8) and any a
/// user's own meta file of the same name holds, keeps its name. The added
/// fields keep the table's naming (the `/proc` key). Only counters need a
/// place here: system_meminfo's additions are all gauges.
pub const ADDED_TO_LEGACY_TABLES: &[(&str, &[&str])] = &[(
    "system_vmstat",
    &[
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
    ],
)];

/// Whether field `field` of table `table` is a name this project made (and
/// so gets a clean Prometheus name) rather than a legacy one.
fn own_field(table: &str, field: &str) -> bool {
    if OWN_TABLES.contains(&table) {
        return true;
    }
    ADDED_TO_LEGACY_TABLES
        .iter()
        .find(|(t, _)| *t == table)
        .is_some_and(|(_, added)| added.contains(&field))
}

/// Names computed once per table: metric names, label names, HELP text.
#[derive(Debug)]
struct TablePlan {
    /// (field index, sanitized label name) of every key and label field.
    labels: Vec<(usize, String)>,
    /// (field index, metric name, TYPE, HELP) of every metric field.
    metrics: Vec<(usize, String, &'static str, String)>,
}

/// Renders the exposition text; build once, call per scrape.
#[derive(Debug)]
pub struct Exposition {
    registry: Arc<MetaRegistry>,
    store: Arc<TableStore>,
    stats: Arc<Stats>,
    plans: Vec<TablePlan>,
    /// `machine_id="..",hostname=".."`, escaped once.
    identity_labels: String,
}

impl Exposition {
    /// Prepares the per-table plans.
    pub fn new(
        registry: Arc<MetaRegistry>,
        store: Arc<TableStore>,
        stats: Arc<Stats>,
        id: &Identity,
    ) -> Self {
        let plans = registry.tables().iter().map(|t| plan(t)).collect();
        let mut identity_labels = String::new();
        push_label(&mut identity_labels, "machine_id", &id.machine_id);
        identity_labels.push(',');
        push_label(&mut identity_labels, "hostname", &id.hostname);
        Self {
            registry,
            store,
            stats,
            plans,
            identity_labels,
        }
    }

    /// Renders every live series and the self-metrics into `out`.
    ///
    /// Per series, the keys and labels are rendered once and kept in the
    /// store (until one of them changes); the values are copied as the
    /// probe printed them. The store keeps each table in key order, so a
    /// scrape sorts only after series came or went.
    pub fn render(&self, now: Instant, out: &mut String) {
        let ttl = self.store.ttl();
        for (idx, plan) in self.plans.iter().enumerate() {
            let Some(mut guard) = self.store.lock(idx) else {
                continue;
            };
            if guard.is_empty() {
                continue;
            }
            guard.sort();
            for s in guard.live_mut(now, ttl) {
                s.labels_cache(|s, buf| render_labels(buf, plan, s));
            }
            let table: &TableSeries = &guard;
            for (fi, name, ty, help) in &plan.metrics {
                let mut header = false;
                for s in table.live(now, ttl) {
                    let v = s.value(*fi);
                    if v.is_empty() {
                        continue;
                    }
                    if !header {
                        push_header(out, name, help, ty);
                        header = true;
                    }
                    let labels = s.labels_cached().unwrap_or("");
                    if *ty == "histogram" {
                        self.histogram_lines(out, name, labels, v);
                    } else {
                        out.push_str(name);
                        self.label_block(out, labels, None);
                        out.push(' ');
                        push_number(out, v);
                        out.push('\n');
                    }
                }
            }
        }
        self.self_metrics(out);
    }

    /// `{<labels><identity>[,le="<le>"]}`; `labels` is a series' rendered
    /// keys and labels, each followed by a comma.
    fn label_block(&self, out: &mut String, labels: &str, le: Option<&str>) {
        out.push('{');
        out.push_str(labels);
        out.push_str(&self.identity_labels);
        if let Some(le) = le {
            out.push_str(",le=\"");
            out.push_str(le);
            out.push('"');
        }
        out.push('}');
    }

    fn histogram_lines(&self, out: &mut String, name: &str, labels: &str, v: &str) {
        let Some(h) = Histogram::parse(v) else { return };
        let mut cumulative = 0u64;
        let mut le = String::new();
        for &(bound, count) in &h.buckets {
            cumulative = cumulative.saturating_add(count);
            le.clear();
            push_float(&mut le, bound);
            let _ = write!(out, "{name}_bucket");
            self.label_block(out, labels, Some(&le));
            let _ = writeln!(out, " {cumulative}");
        }
        let _ = write!(out, "{name}_bucket");
        self.label_block(out, labels, Some("+Inf"));
        let _ = writeln!(out, " {cumulative}");
        let _ = write!(out, "{name}_sum");
        self.label_block(out, labels, None);
        out.push(' ');
        push_float(out, h.sum);
        out.push('\n');
        let _ = write!(out, "{name}_count");
        self.label_block(out, labels, None);
        let _ = writeln!(out, " {cumulative}");
    }

    fn self_metrics(&self, out: &mut String) {
        let probes = self.stats.probes();
        let id = &self.identity_labels;
        let family = |out: &mut String, name: &str, ty: &str, help: &str| {
            let _ = writeln!(out, "# HELP gala_gopher_self_{name} {help}");
            let _ = writeln!(out, "# TYPE gala_gopher_self_{name} {ty}");
        };
        family(
            out,
            "records_accepted_total",
            "counter",
            "Records accepted from each probe.",
        );
        for (p, s) in &probes {
            let _ = writeln!(
                out,
                "gala_gopher_self_records_accepted_total{{probe=\"{}\",{id}}} {}",
                esc(p),
                s.accepted.load(Ordering::Relaxed)
            );
        }
        family(
            out,
            "records_rejected_total",
            "counter",
            "Records rejected from each probe, by reason.",
        );
        for (p, s) in &probes {
            for r in Reject::ALL {
                let _ = writeln!(
                    out,
                    "gala_gopher_self_records_rejected_total{{probe=\"{}\",reason=\"{}\",{id}}} {}",
                    esc(p),
                    r.as_str(),
                    s.rejected(r)
                );
            }
        }
        family(
            out,
            "records_dropped_total",
            "counter",
            "Records lost after a probe emitted them, by stage and component.",
        );
        // Every loss is a counter of `Stats` (probes' emitters, the store,
        // the outputs): this only reads them.
        for (stage, comp, n) in self.stats.drops() {
            let _ = writeln!(out, "gala_gopher_self_records_dropped_total{{stage=\"{stage}\",component=\"{}\",{id}}} {n}", esc(&comp));
        }
        family(
            out,
            "probe_restarts_total",
            "counter",
            "Times the supervisor restarted each probe.",
        );
        for (p, s) in &probes {
            let _ = writeln!(
                out,
                "gala_gopher_self_probe_restarts_total{{probe=\"{}\",{id}}} {}",
                esc(p),
                s.restarts.load(Ordering::Relaxed)
            );
        }
        family(
            out,
            "probe_state",
            "gauge",
            "1 for the current state of each probe, 0 for the others.",
        );
        for (p, s) in &probes {
            let cur = s.state();
            for st in ProbeState::ALL {
                let _ = writeln!(
                    out,
                    "gala_gopher_self_probe_state{{probe=\"{}\",state=\"{}\",{id}}} {}",
                    esc(p),
                    st.as_str(),
                    u8::from(st == cur)
                );
            }
        }
        family(
            out,
            "series",
            "gauge",
            "Live series held in the store, by table.",
        );
        for (idx, t) in self.registry.tables().iter().enumerate() {
            if let Some(g) = self.store.lock(idx) {
                if !g.is_empty() {
                    let _ = writeln!(
                        out,
                        "gala_gopher_self_series{{table=\"{}\",{id}}} {}",
                        esc(&t.name),
                        g.len()
                    );
                }
            }
        }
        family(out, "events_suppressed_total", "counter", "Events not passed on because the same entity and metric was reported within event.timeout.");
        let _ = writeln!(
            out,
            "gala_gopher_self_events_suppressed_total{{{id}}} {}",
            self.stats.events_suppressed.load(Ordering::Relaxed)
        );
        family(
            out,
            "series_expired_total",
            "counter",
            "Series removed from the store after record_timeout without an update.",
        );
        let _ = writeln!(
            out,
            "gala_gopher_self_series_expired_total{{{id}}} {}",
            self.stats.expired.load(Ordering::Relaxed)
        );
        self.kafka_metrics(out, &family);
        let scrapes = self.stats.scrapes.load(Ordering::Relaxed);
        let nanos = self.stats.scrape_nanos.load(Ordering::Relaxed);
        family(
            out,
            "scrape_duration_seconds",
            "summary",
            "Time spent rendering scrapes of this endpoint.",
        );
        let _ = writeln!(
            out,
            "gala_gopher_self_scrape_duration_seconds_sum{{{id}}} {}",
            nanos as f64 / 1e9
        );
        let _ = writeln!(
            out,
            "gala_gopher_self_scrape_duration_seconds_count{{{id}}} {scrapes}"
        );
        // The probes' cgroups (docs/cgroups.md).
        crate::probe::cgroup::render_self_metrics(out, id);
    }
}

impl Exposition {
    /// The Kafka exporter's counters, when a channel goes to Kafka.
    fn kafka_metrics(&self, out: &mut String, family: &dyn Fn(&mut String, &str, &str, &str)) {
        let channels = self.stats.kafka_channels();
        if channels.is_empty() {
            return;
        }
        let id = &self.identity_labels;
        type Pick = fn(&crate::stats::KafkaChannelStats) -> &std::sync::atomic::AtomicU64;
        let per_channel: [(&str, &str, &str, Pick); 4] = [
            (
                "kafka_messages_delivered_total",
                "counter",
                "Messages the Kafka broker acknowledged, by channel.",
                |k| &k.delivered,
            ),
            (
                "kafka_delivery_errors_total",
                "counter",
                "Messages whose Kafka delivery failed for good, by channel (also counted as dropped).",
                |k| &k.delivery_errors,
            ),
            (
                "kafka_queue_messages",
                "gauge",
                "Messages waiting for the Kafka broker (backlog and in flight), by channel.",
                |k| &k.queued,
            ),
            (
                "kafka_queue_bytes",
                "gauge",
                "Bytes of the messages waiting for the Kafka broker, by channel.",
                |k| &k.queued_bytes,
            ),
        ];
        for (name, ty, help, pick) in per_channel {
            family(out, name, ty, help);
            for (ch, k) in &channels {
                let _ = writeln!(
                    out,
                    "gala_gopher_self_{name}{{channel=\"{}\",{id}}} {}",
                    esc(ch),
                    pick(k).load(Ordering::Relaxed)
                );
            }
        }
        family(
            out,
            "kafka_client_errors_total",
            "counter",
            "Errors the Kafka client reported about the brokers (unreachable, authentication, TLS).",
        );
        let _ = writeln!(
            out,
            "gala_gopher_self_kafka_client_errors_total{{{id}}} {}",
            self.stats.kafka_client_errors.load(Ordering::Relaxed)
        );
    }
}

/// A series' non-empty keys and labels as `name="value",` each.
fn render_labels(out: &mut String, plan: &TablePlan, s: &Series) {
    for (fi, lname) in &plan.labels {
        let v = s.value(*fi);
        if !v.is_empty() {
            push_label(out, lname, v);
            out.push(',');
        }
    }
}

fn push_header(out: &mut String, name: &str, help: &str, ty: &str) {
    for part in ["# HELP ", name, " ", help, "\n# TYPE ", name, " ", ty, "\n"] {
        out.push_str(part);
    }
}

fn plan(t: &Table) -> TablePlan {
    let entity = sanitize(&t.entity);
    let mut labels = Vec::new();
    let mut metrics = Vec::new();
    for (i, f) in t.fields.iter().enumerate() {
        let ty = match f.ty {
            FieldType::Key | FieldType::Label => {
                let l = sanitize(&f.name);
                if l != "machine_id" && l != "hostname" && l != "le" {
                    labels.push((i, l));
                }
                continue;
            }
            FieldType::Gauge => "gauge",
            FieldType::Counter => "counter",
            FieldType::Histogram => "histogram",
            FieldType::Untyped => "untyped",
        };
        let help = if f.description.trim().is_empty() {
            format!("{} of table {}.", f.name, t.name)
        } else {
            f.description.replace('\\', "\\\\").replace('\n', "\\n")
        };
        let mut name = format!("gala_gopher_{entity}_{}", sanitize(&f.name));
        if f.ty == FieldType::Counter && !name.ends_with("_total") && own_field(&t.name, &f.name) {
            name.push_str("_total");
        }
        metrics.push((i, name, ty, help));
    }
    TablePlan { labels, metrics }
}

/// Makes a valid metric/label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    push_escaped(&mut s, v);
    s
}

fn push_escaped(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn push_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    push_escaped(out, value);
    out.push('"');
}

/// Writes a validated metric value in exposition syntax.
fn push_number(out: &mut String, v: &str) {
    if v.bytes().all(|b| {
        b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'e' || b == b'E' || b == b'+'
    }) {
        out.push_str(v);
    } else {
        push_float(out, parse_number(v).unwrap_or(f64::NAN));
    }
}

fn push_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f == f64::INFINITY {
        out.push_str("+Inf");
    } else if f == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{f}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Field;
    use std::time::Duration;

    fn fixture() -> (Exposition, Arc<TableStore>) {
        let f = |name: &str, ty, d: &str| Field {
            name: name.into(),
            description: d.into(),
            ty,
        };
        let t = Table::new(
            "tcp_tx",
            "tcp",
            vec![
                f("tgid", FieldType::Key, "process id"),
                f("comm", FieldType::Label, "command"),
                f("tx_bytes", FieldType::Counter, "bytes sent"),
                f("rtt", FieldType::Gauge, ""),
                f("lat", FieldType::Histogram, "latency, us"),
            ],
        );
        let reg = Arc::new(MetaRegistry::from_checked(vec![t]));
        let store = Arc::new(TableStore::new(&reg, Duration::from_secs(60), 10));
        let id = Identity {
            machine_id: "m-1".into(),
            hostname: "h\"x".into(),
        };
        (
            Exposition::new(reg, Arc::clone(&store), Stats::new(), &id),
            store,
        )
    }

    #[test]
    fn exact_exposition_with_labels_nulls_and_histogram() {
        let (exp, store) = fixture();
        let now = Instant::now();
        let mut k = String::new();
        store.upsert(
            0,
            &["12", "", "100", "1.5", "2 10 1 100 3 250 90"],
            now,
            0,
            &mut k,
        );
        let mut out = String::new();
        exp.render(now, &mut out);
        let table_part: String = out
            .lines()
            .take_while(|l| !l.contains("gala_gopher_self_"))
            .map(|l| format!("{l}\n"))
            .collect();
        let id = r#"machine_id="m-1",hostname="h\"x""#;
        assert_eq!(
            table_part,
            format!(
                "# HELP gala_gopher_tcp_tx_bytes bytes sent\n# TYPE gala_gopher_tcp_tx_bytes counter\n\
                 gala_gopher_tcp_tx_bytes{{tgid=\"12\",{id}}} 100\n\
                 # HELP gala_gopher_tcp_rtt rtt of table tcp_tx.\n# TYPE gala_gopher_tcp_rtt gauge\n\
                 gala_gopher_tcp_rtt{{tgid=\"12\",{id}}} 1.5\n\
                 # HELP gala_gopher_tcp_lat latency, us\n# TYPE gala_gopher_tcp_lat histogram\n\
                 gala_gopher_tcp_lat_bucket{{tgid=\"12\",{id},le=\"10\"}} 1\n\
                 gala_gopher_tcp_lat_bucket{{tgid=\"12\",{id},le=\"100\"}} 4\n\
                 gala_gopher_tcp_lat_bucket{{tgid=\"12\",{id},le=\"+Inf\"}} 4\n\
                 gala_gopher_tcp_lat_sum{{tgid=\"12\",{id}}} 250\n\
                 gala_gopher_tcp_lat_count{{tgid=\"12\",{id}}} 4\n"
            )
        );
    }

    #[test]
    fn scraping_is_idempotent_and_expired_series_vanish() {
        let (exp, store) = fixture();
        let now = Instant::now();
        let mut k = String::new();
        store.upsert(0, &["1", "a", "5", "", ""], now, 0, &mut k);
        let (mut a, mut b) = (String::new(), String::new());
        exp.render(now, &mut a);
        exp.render(now, &mut b);
        assert_eq!(a, b);
        assert!(a.contains("gala_gopher_tcp_tx_bytes{tgid=\"1\",comm=\"a\""));
        assert!(
            !a.contains("gala_gopher_tcp_rtt"),
            "null metric has no series"
        );
        let mut c = String::new();
        exp.render(now + Duration::from_secs(61), &mut c);
        assert!(!c.contains("gala_gopher_tcp_tx_bytes{"));
    }

    #[test]
    fn own_tables_get_total_on_counters_and_legacy_names_stay() {
        let f = |name: &str, ty| Field {
            name: name.into(),
            description: format!("{name} help"),
            ty,
        };
        let fields = || {
            vec![
                f("probe", FieldType::Key),
                f("close_untracked", FieldType::Counter),
                f("opened_total", FieldType::Counter),
                f("conns_tracked", FieldType::Gauge),
            ]
        };
        let own = Table::new("tcp_link_probe_stats", "tcp_link_probe_stats", fields());
        let legacy = Table::new("tcp_link", "tcp_link", fields());
        let reg = Arc::new(MetaRegistry::from_checked(vec![own, legacy]));
        let store = Arc::new(TableStore::new(&reg, Duration::from_secs(60), 10));
        let id = Identity {
            machine_id: "m".into(),
            hostname: "h".into(),
        };
        let exp = Exposition::new(reg, Arc::clone(&store), Stats::new(), &id);
        let now = Instant::now();
        let mut k = String::new();
        store.upsert(0, &["tcp_link", "3", "5", "7"], now, 0, &mut k);
        store.upsert(1, &["tcp_link", "3", "5", "7"], now, 0, &mut k);
        let mut out = String::new();
        exp.render(now, &mut out);
        let types: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("# TYPE gala_gopher_tcp_link"))
            .collect();
        assert_eq!(
            types,
            [
                // Ours: counters end in _total (once), gauges unchanged.
                "# TYPE gala_gopher_tcp_link_probe_stats_close_untracked_total counter",
                "# TYPE gala_gopher_tcp_link_probe_stats_opened_total counter",
                "# TYPE gala_gopher_tcp_link_probe_stats_conns_tracked gauge",
                // Legacy: exactly the meta field names.
                "# TYPE gala_gopher_tcp_link_close_untracked counter",
                "# TYPE gala_gopher_tcp_link_opened_total counter",
                "# TYPE gala_gopher_tcp_link_conns_tracked gauge",
            ]
        );
        let id = r#"machine_id="m",hostname="h""#;
        assert!(out.contains(&format!(
            "# HELP gala_gopher_tcp_link_probe_stats_close_untracked_total close_untracked help\n\
             # TYPE gala_gopher_tcp_link_probe_stats_close_untracked_total counter\n\
             gala_gopher_tcp_link_probe_stats_close_untracked_total{{probe=\"tcp_link\",{id}}} 3\n"
        )));
        assert!(out.contains(&format!(
            "gala_gopher_tcp_link_close_untracked{{probe=\"tcp_link\",{id}}} 3\n"
        )));
    }

    #[test]
    fn own_tables_are_declared_in_the_shipped_meta_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../meta");
        let reg = MetaRegistry::load_dir(&dir).expect("meta/ loads");
        for t in OWN_TABLES {
            assert!(reg.get(t).is_some(), "OWN_TABLES names {t}, not in meta/");
        }
        for (t, added) in ADDED_TO_LEGACY_TABLES {
            let table = reg.get(t).unwrap_or_else(|| panic!("{t} not in meta/"));
            // The seed's fields of these tables are gauges: every counter of
            // the shipped file is one we added, so the list may not miss one.
            let counters: Vec<&str> = table
                .fields
                .iter()
                .filter(|x| x.ty == FieldType::Counter)
                .map(|x| x.name.as_str())
                .collect();
            assert_eq!(counters, *added, "{t}: counters of meta/ against the list");
            for f in *added {
                assert!(
                    table
                        .fields
                        .iter()
                        .any(|x| x.name == *f && x.ty == FieldType::Counter),
                    "{t}: added counter {f} not in its meta file"
                );
            }
        }
        // A counter added to a legacy table gets `_total`; the legacy
        // fields keep their names.
        let vmstat = reg.get("system_vmstat").expect("system_vmstat");
        let p = plan(vmstat);
        let names: Vec<&str> = p.metrics.iter().map(|m| m.1.as_str()).collect();
        assert!(
            names.contains(&"gala_gopher_system_vmstat_pgfault_total"),
            "{names:?}"
        );
        assert!(
            names.contains(&"gala_gopher_system_vmstat_nr_free_pages"),
            "{names:?}"
        );
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize("a-b.c"), "a_b_c");
        assert_eq!(sanitize("9x"), "_9x");
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
