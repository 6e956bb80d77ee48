//! Built-in rules: abnormal conditions in the accepted records become
//! events of the reserved `event` table (docs/compat.md §1), in the shape
//! the legacy probes reported them.
//!
//! [`Rules`] is pure: [`Rules::observe`] looks at one accepted record and
//! gives the events it raises; it keeps the previous counters of each series
//! so that a rule can look at what happened during the last period. Every
//! event goes through the ingress afterwards, which passes an event of the
//! same entity and metric at most once per `event.timeout`.
//!
//! The rules, each off while its threshold is 0 (the default):
//!
//! | table | metric | raises when | threshold |
//! |---|---|---|---|
//! | `tcp_link` | `retran_packets` | segments retransmitted in one period > threshold | `-D` (`drops_thr`) of the probe `tcp_link` |
//! | `tcp_link` | `lost_packets` | packets dropped on receive in one period > threshold | `-D` (`drops_thr`) |
//! | `tcp_link` | `rtt` | the period's round-trip time > threshold ms | `-T` (`latency_thr`, ms) |
//! | `system_net` | `rx_drop`, `tx_drop` | packets dropped in one period > threshold | `-D` (`drops_thr`) of the probe `system_net` |
//!
//! A probe that gives up (after its restarts, or because it cannot run
//! here) raises one ERROR event, [`probe_failed`].

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::export::sink::{Flow, FlowKind, Sink, Takes};
use crate::ingress::{Accepted, Event, IngressHandle};
use crate::manager::{Planner, ProbeEntry};
use crate::meta::Table;
use crate::probe_api::{Emitted, Params};
use crate::stats::{ProbeState, Stats};

/// `SeverityText` and `SeverityNumber` of a warning (the legacy WARN).
const WARN: (&str, &str) = ("WARN", "13");
/// `SeverityText` and `SeverityNumber` of an error (the legacy ERROR).
const ERROR: (&str, &str) = ("ERROR", "17");

/// Most series whose counters are remembered; past it, new series are not
/// followed until old ones expire.
pub const SERIES_MAX: usize = 64 * 1024;

/// The thresholds of one probe; 0 turns a rule off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// `-T` / `latency_thr`, in ms.
    pub latency_ms: u64,
    /// `-D` / `drops_thr`, in packets per period.
    pub drops: u64,
}

impl Thresholds {
    /// The thresholds a probe's parsed `param` sets.
    pub fn of_params(p: &Params) -> Self {
        Self {
            latency_ms: u64::from(p.latency_thr),
            drops: u64::from(p.drops_count_thr),
        }
    }

    /// The thresholds of a `param` string; one that does not parse (the
    /// config check refuses it before) turns every rule off.
    pub fn of_param(param: &str) -> Self {
        Params::parse(param)
            .map(|p| Self::of_params(&p))
            .unwrap_or_default()
    }

    fn is_off(&self) -> bool {
        self.latency_ms == 0 && self.drops == 0
    }
}

/// The thresholds of every probe by its name, shared between the rules and
/// whoever changes a probe's params at run time.
#[derive(Debug, Clone, Default)]
pub struct ThresholdSet(Arc<RwLock<HashMap<String, Thresholds>>>);

impl ThresholdSet {
    /// The thresholds of the `[[probes]]` of `cfg`.
    pub fn from_config(cfg: &Config) -> Self {
        let set = Self::default();
        for p in &cfg.probes {
            set.set_param(&p.name, &p.param);
        }
        set
    }

    /// The thresholds of `cfg`'s `[[probes]]`, replacing every other.
    pub fn load(&self, cfg: &Config) {
        let fresh = Self::from_config(cfg);
        let fresh = std::mem::take(&mut *fresh.0.write().unwrap_or_else(PoisonError::into_inner));
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    /// Probe `probe` now runs with `param`.
    pub fn set_param(&self, probe: &str, param: &str) {
        self.set(probe, Thresholds::of_param(param));
    }

    /// Probe `probe` now has `t`.
    pub fn set(&self, probe: &str, t: Thresholds) {
        let mut m = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if t.is_off() {
            m.remove(probe);
        } else {
            m.insert(probe.to_owned(), t);
        }
    }

    /// The thresholds of `probe` (all off when it has none).
    pub fn get(&self, probe: &str) -> Thresholds {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(probe)
            .copied()
            .unwrap_or_default()
    }
}

/// `inner`, also giving `set` the param of every `[[probes]]` entry it
/// plans, so that a probe re-parameterised at run time (REST, reload) keeps
/// its rules in step.
pub fn following_params(set: Option<&ThresholdSet>, inner: Planner) -> Planner {
    let Some(set) = set.cloned() else {
        return inner;
    };
    Arc::new(move |entry: &ProbeEntry| {
        if let ProbeEntry::Native(p) = entry {
            set.set_param(&p.name, &p.param);
        }
        inner(entry)
    })
}

/// The tables the rules look at, each with the probe whose params hold its
/// thresholds.
const RULE_TABLES: [(&str, &str); 2] = [("tcp_link", "tcp_link"), ("system_net", "system_net")];

/// The field positions a table's rules read, found once per table.
#[derive(Debug, Clone)]
enum Layout {
    TcpLink {
        keys: Vec<usize>,
        pid: Option<usize>,
        comm: Option<usize>,
        role: Option<usize>,
        client_ip: Option<usize>,
        server_ip: Option<usize>,
        server_port: Option<usize>,
        retran: Option<usize>,
        lost: Option<usize>,
        rtt: Option<usize>,
    },
    SystemNet {
        dev: Option<usize>,
        rx_drop: Option<usize>,
        tx_drop: Option<usize>,
    },
}

impl Layout {
    fn of(t: &Table) -> Option<Self> {
        let f = |n: &str| t.field_index(n);
        match t.name.as_str() {
            "tcp_link" => Some(Layout::TcpLink {
                keys: t
                    .fields
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.ty == crate::meta::FieldType::Key)
                    .map(|(i, _)| i)
                    .collect(),
                pid: f("pid"),
                comm: f("process_name"),
                role: f("role"),
                client_ip: f("client_ip"),
                server_ip: f("server_ip"),
                server_port: f("server_port"),
                retran: f("retran_packets"),
                lost: f("lost_packets"),
                rtt: f("rtt"),
            }),
            "system_net" => Some(Layout::SystemNet {
                dev: f("dev"),
                rx_drop: f("rx_drop"),
                tx_drop: f("tx_drop"),
            }),
            _ => None,
        }
    }
}

/// The previous counters of one series.
#[derive(Debug, Clone, Copy)]
struct Seen {
    counters: [Option<u64>; 2],
    at: Instant,
}

/// The rule engine (see the module docs).
#[derive(Debug)]
pub struct Rules {
    thresholds: ThresholdSet,
    layouts: HashMap<String, Option<Layout>>,
    /// Previous counters by table and series key.
    series: HashMap<String, Seen>,
    /// A series not seen for this long is forgotten (`imdb.record_timeout`).
    series_timeout: Duration,
    last_sweep: Option<Instant>,
    max_series: usize,
}

/// The value at `i`, `""` when absent.
fn at(values: &[String], i: Option<usize>) -> &str {
    i.and_then(|i| values.get(i)).map_or("", String::as_str)
}

/// The counter at `i`, when it is a whole number.
fn counter(values: &[String], i: Option<usize>) -> Option<u64> {
    let v = at(values, i).trim();
    v.parse::<u64>().ok().or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|f| *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// The growth of a counter since `prev`; `None` for the first value and when
/// it went backwards (the series restarted: it is a new baseline).
fn delta(prev: Option<u64>, now: Option<u64>) -> Option<u64> {
    match (prev, now) {
        (Some(p), Some(n)) if n >= p => Some(n - p),
        _ => None,
    }
}

/// One event's 12 values, in the order of the `event` table.
#[allow(clippy::too_many_arguments)]
fn event_values(
    entity: &str,
    entity_id: &str,
    metric: &str,
    pid: &str,
    comm: &str,
    ip: &str,
    dev: &str,
    level: (&str, &str),
    body: String,
) -> Vec<String> {
    [
        entity, entity_id, metric, pid, comm, ip, "", "", dev, level.0, level.1,
    ]
    .iter()
    .map(|s| clean(s))
    .chain(std::iter::once(clean(&body)))
    .collect()
}

/// `s` without `|` and control characters, which a record cannot carry.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c == '|' || c.is_control() { ' ' } else { c })
        .collect()
}

impl Rules {
    /// Rules with the thresholds of `thresholds`, forgetting a series after
    /// `series_timeout` without a record.
    pub fn new(thresholds: ThresholdSet, series_timeout: Duration) -> Self {
        Self {
            thresholds,
            layouts: HashMap::new(),
            series: HashMap::new(),
            series_timeout: series_timeout.max(Duration::from_secs(1)),
            last_sweep: None,
            max_series: SERIES_MAX,
        }
    }

    /// Rules for `cfg`: the thresholds of its probes, series kept as long
    /// as the store keeps them.
    pub fn from_config(cfg: &Config) -> Self {
        Self::new(
            ThresholdSet::from_config(cfg),
            Duration::from_secs(cfg.imdb.record_timeout),
        )
    }

    /// The shared thresholds (change a probe's at run time through it).
    pub fn thresholds(&self) -> &ThresholdSet {
        &self.thresholds
    }

    /// Series whose counters are remembered now.
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// The events `rec`, accepted at `now`, raises.
    pub fn observe(&mut self, rec: &Accepted, now: Instant) -> impl Iterator<Item = Event> {
        let mut out = Vec::new();
        self.sweep(now);
        let table = &rec.table;
        let Some(probe) = RULE_TABLES
            .iter()
            .find(|(t, _)| *t == table.name)
            .map(|(_, p)| *p)
        else {
            return out.into_iter();
        };
        let thr = self.thresholds.get(probe);
        if thr.is_off() {
            return out.into_iter();
        }
        let layout = self
            .layouts
            .entry(table.name.clone())
            .or_insert_with(|| Layout::of(table))
            .clone();
        let v = &rec.values;
        let mk = |values: Vec<String>| Event {
            values,
            timestamp_ms: rec.timestamp_ms,
        };
        match layout {
            Some(Layout::TcpLink {
                keys,
                pid,
                comm,
                role,
                client_ip,
                server_ip,
                server_port,
                retran,
                lost,
                rtt,
            }) => {
                let mut key = String::from("tcp_link");
                for k in &keys {
                    key.push('|');
                    key.push_str(at(v, Some(*k)));
                }
                let now_c = [counter(v, retran), counter(v, lost)];
                let prev = self.remember(key, now_c, now);
                // The entity id of a link as the legacy tcp probe built it,
                // without the client port (not a key of this table).
                let family = at(v, keys.last().copied());
                let entity_id = format!(
                    "{}_{}_{}_{}_{}_{}",
                    at(v, pid),
                    at(v, role),
                    at(v, client_ip),
                    at(v, server_ip),
                    at(v, server_port),
                    family
                );
                let ip = format!(
                    "CIP({}), SIP({}:{})",
                    at(v, client_ip),
                    at(v, server_ip),
                    at(v, server_port)
                );
                let ev = |metric: &str, body: String| {
                    mk(event_values(
                        "tcp_link",
                        &entity_id,
                        metric,
                        at(v, pid),
                        at(v, comm),
                        &ip,
                        "",
                        WARN,
                        body,
                    ))
                };
                if thr.drops > 0 {
                    if let Some(d) = delta(prev[0], now_c[0]).filter(|d| *d > thr.drops) {
                        out.push(ev(
                            "retran_packets",
                            format!(
                                "TCP retransmitted {d} segments in one period (threshold {}).",
                                thr.drops
                            ),
                        ));
                    }
                    if let Some(d) = delta(prev[1], now_c[1]).filter(|d| *d > thr.drops) {
                        out.push(ev(
                            "lost_packets",
                            format!(
                                "TCP sockets dropped {d} received packets in one period (threshold {}).",
                                thr.drops
                            ),
                        ));
                    }
                }
                if thr.latency_ms > 0 {
                    let limit_us = thr.latency_ms.saturating_mul(1000);
                    if let Some(us) = counter(v, rtt).filter(|us| *us > limit_us) {
                        out.push(ev(
                            "rtt",
                            format!(
                                "TCP round-trip time {us} us over the threshold of {} ms.",
                                thr.latency_ms
                            ),
                        ));
                    }
                }
            }
            Some(Layout::SystemNet {
                dev,
                rx_drop,
                tx_drop,
            }) => {
                let name = at(v, dev).to_owned();
                let now_c = [counter(v, rx_drop), counter(v, tx_drop)];
                let prev = self.remember(format!("system_net|{name}"), now_c, now);
                if thr.drops > 0 {
                    for (i, (metric, what)) in [("rx_drop", "received"), ("tx_drop", "transmitted")]
                        .iter()
                        .enumerate()
                    {
                        if let Some(d) = delta(prev[i], now_c[i]).filter(|d| *d > thr.drops) {
                            out.push(mk(event_values(
                                "system_net",
                                &name,
                                metric,
                                "",
                                "",
                                "",
                                &name,
                                WARN,
                                format!(
                                    "Interface {name} dropped {d} {what} packets in one period \
                                     (threshold {}).",
                                    thr.drops
                                ),
                            )));
                        }
                    }
                }
            }
            None => {}
        }
        out.into_iter()
    }

    /// Stores `counters` as the latest of `key`; gives the previous ones.
    fn remember(
        &mut self,
        key: String,
        counters: [Option<u64>; 2],
        now: Instant,
    ) -> [Option<u64>; 2] {
        if let Some(s) = self.series.get_mut(&key) {
            let prev = s.counters;
            s.counters = counters;
            s.at = now;
            return prev;
        }
        if self.series.len() >= self.max_series {
            self.expire(now);
            if self.series.len() >= self.max_series {
                return [None, None];
            }
        }
        self.series.insert(key, Seen { counters, at: now });
        [None, None]
    }

    /// Forgets series not seen for the series timeout, at most once per half
    /// of it.
    fn sweep(&mut self, now: Instant) {
        let due = self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= self.series_timeout / 2);
        if due {
            self.expire(now);
        }
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.series_timeout;
        self.series
            .retain(|_, s| now.saturating_duration_since(s.at) < timeout);
        self.last_sweep = Some(now);
    }
}

/// The rules as a sink: it takes the accepted metric records and sends the
/// events they raise back into the ingress, which de-duplicates them by
/// `event.timeout` and passes them to the event channel.
#[derive(Debug)]
pub struct RulesSink {
    rules: Rules,
    out: IngressHandle,
}

/// Closes the rules' way into the ingress when dropped or told to, so that
/// the ingress can end once the probes are gone (see [`IngressHandle`]).
#[derive(Debug)]
pub struct RulesCloser(IngressHandle);

impl RulesCloser {
    /// No more events from the rules.
    pub fn close(&self) {
        self.0.close();
    }
}

impl Drop for RulesCloser {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl RulesSink {
    /// The rules sink of `cfg`, sending on the ingress queue `tx`, when a
    /// probe that the rules look at is configured (else nothing flows to
    /// it); with the closer the daemon calls at stop.
    pub fn plan(
        cfg: &Config,
        tx: &SyncSender<Emitted>,
        stats: &Stats,
    ) -> Option<(Box<dyn Sink>, RulesCloser, ThresholdSet)> {
        let watched = cfg
            .probes
            .iter()
            .any(|p| RULE_TABLES.iter().any(|(_, probe)| *probe == p.name));
        if !watched {
            return None;
        }
        let rules = Rules::from_config(cfg);
        let set = rules.thresholds().clone();
        let out = IngressHandle::new(RULES, tx.clone(), stats);
        // Its events are counted like a probe's, under its name; it runs
        // from now on (not "starting" for ever in the status).
        stats.probe(RULES).set_state(ProbeState::Running);
        let closer = RulesCloser(out.clone());
        Some((Box::new(Self { rules, out }), closer, set))
    }
}

/// The name the rules' events are counted under.
pub const RULES: &str = "rules";

impl Sink for RulesSink {
    fn name(&self) -> &str {
        RULES
    }

    fn takes(&self) -> Takes {
        Takes::nothing().and(FlowKind::Metric, RULES)
    }

    fn run(self: Box<Self>, input: Receiver<Flow>) {
        let Self { mut rules, out } = *self;
        while let Ok(flow) = input.recv() {
            if let Flow::Metric(rec) = flow {
                for ev in rules.observe(&rec, Instant::now()) {
                    out.event(ev.values);
                }
            }
        }
    }
}

/// The event of a probe that failed (gave up after its restarts, or cannot
/// run here): entity `probe`, its name as the entity id, metric `state`,
/// ERROR, and the reason as the body.
pub fn probe_failed(name: &str, reason: &str) -> Vec<String> {
    event_values(
        "probe",
        name,
        "state",
        "",
        "",
        "",
        "",
        ERROR,
        format!("Probe {name} failed and is not restarted: {reason}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{Field, FieldType};
    use crate::record::EVENT_FIELDS;

    fn table(name: &str, fields: &[(&str, FieldType)]) -> Arc<Table> {
        Arc::new(Table::new(
            name,
            name,
            fields
                .iter()
                .map(|(n, ty)| Field {
                    name: (*n).into(),
                    description: String::new(),
                    ty: *ty,
                })
                .collect(),
        ))
    }

    fn tcp_link() -> Arc<Table> {
        use FieldType::*;
        table(
            "tcp_link",
            &[
                ("pid", Key),
                ("process_name", Label),
                ("role", Key),
                ("client_ip", Key),
                ("server_ip", Key),
                ("server_port", Key),
                ("protocol", Key),
                ("retran_packets", Counter),
                ("lost_packets", Counter),
                ("rtt", Gauge),
            ],
        )
    }

    fn link(t: &Arc<Table>, port: &str, retran: u64, lost: u64, rtt: u64) -> Accepted {
        let values = [
            "42",
            "curl",
            "1",
            "10.0.0.1",
            "10.0.0.2",
            port,
            "2",
            &retran.to_string(),
            &lost.to_string(),
            &rtt.to_string(),
        ];
        Accepted {
            table: Arc::clone(t),
            values: values.iter().map(|s| (*s).to_owned()).collect(),
            timestamp_ms: 1000,
        }
    }

    fn rules(tcp: &str) -> Rules {
        let set = ThresholdSet::default();
        set.set_param("tcp_link", tcp);
        Rules::new(set, Duration::from_secs(60))
    }

    fn metrics(evs: impl Iterator<Item = Event>) -> Vec<String> {
        evs.map(|e| {
            assert_eq!(e.values.len(), EVENT_FIELDS);
            e.values[2].clone()
        })
        .collect()
    }

    #[test]
    fn retransmits_over_the_threshold_in_one_period_raise_an_event() {
        let t = tcp_link();
        let mut r = rules("-t 1 -D 10");
        let t0 = Instant::now();
        // The first record is the baseline, whatever its counters.
        assert!(metrics(r.observe(&link(&t, "80", 500, 0, 100), t0)).is_empty());
        // +10 is not over 10.
        assert!(metrics(r.observe(&link(&t, "80", 510, 0, 100), t0)).is_empty());
        let evs: Vec<Event> = r.observe(&link(&t, "80", 521, 0, 100), t0).collect();
        assert_eq!(evs.len(), 1);
        let v = &evs[0].values;
        assert_eq!(
            v[..11],
            [
                "tcp_link",
                "42_1_10.0.0.1_10.0.0.2_80_2",
                "retran_packets",
                "42",
                "curl",
                "CIP(10.0.0.1), SIP(10.0.0.2:80)",
                "",
                "",
                "",
                "WARN",
                "13"
            ]
        );
        assert!(v[11].contains("11 segments"), "{}", v[11]);
        assert_eq!(evs[0].timestamp_ms, 1000);
        // Another series has its own baseline.
        assert!(metrics(r.observe(&link(&t, "81", 900, 0, 100), t0)).is_empty());
        assert_eq!(r.series(), 2);
    }

    #[test]
    fn a_counter_that_goes_backwards_is_a_new_baseline() {
        let t = tcp_link();
        let mut r = rules("-D 5");
        let t0 = Instant::now();
        let _ = r.observe(&link(&t, "80", 100, 100, 0), t0).count();
        assert!(metrics(r.observe(&link(&t, "80", 3, 3, 0), t0)).is_empty());
        assert_eq!(
            metrics(r.observe(&link(&t, "80", 20, 20, 0), t0)),
            ["retran_packets", "lost_packets"]
        );
    }

    #[test]
    fn latency_over_the_threshold_in_ms() {
        let t = tcp_link();
        let mut r = rules("-T 2");
        let t0 = Instant::now();
        // rtt is in us: 2000 us is not over 2 ms, and drops are off.
        assert!(metrics(r.observe(&link(&t, "80", 0, 0, 2000), t0)).is_empty());
        assert!(metrics(r.observe(&link(&t, "80", 900, 900, 2000), t0)).is_empty());
        let evs: Vec<Event> = r.observe(&link(&t, "80", 900, 900, 2001), t0).collect();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].values[2], "rtt");
        assert!(evs[0].values[11].contains("2001 us"));
    }

    #[test]
    fn thresholds_of_zero_or_absent_turn_the_rules_off() {
        let t = tcp_link();
        let t0 = Instant::now();
        for param in ["", "-t 1", "-D 0 -T 0", "-D nonsense"] {
            let mut r = rules(param);
            let _ = r.observe(&link(&t, "80", 0, 0, 0), t0).count();
            assert!(
                metrics(r.observe(&link(&t, "80", 1000, 1000, 10_000_000), t0)).is_empty(),
                "{param}"
            );
            assert_eq!(r.series(), 0, "no state kept while off: {param}");
        }
    }

    #[test]
    fn thresholds_change_at_run_time() {
        let t = tcp_link();
        let mut r = rules("");
        let t0 = Instant::now();
        r.thresholds().set_param("tcp_link", "-D 1");
        let _ = r.observe(&link(&t, "80", 0, 0, 0), t0).count();
        assert_eq!(
            metrics(r.observe(&link(&t, "80", 2, 0, 0), t0)),
            ["retran_packets"]
        );
        r.thresholds().set_param("tcp_link", "-D 0");
        assert!(metrics(r.observe(&link(&t, "80", 100, 0, 0), t0)).is_empty());
    }

    #[test]
    fn series_expire_and_memory_is_bounded() {
        let t = tcp_link();
        let mut r = rules("-D 1");
        r.max_series = 3;
        let t0 = Instant::now();
        for port in 0..5 {
            let _ = r.observe(&link(&t, &port.to_string(), 0, 0, 0), t0).count();
        }
        assert_eq!(r.series(), 3, "capped");
        // Port 4 was not followed: its first counters after the cap are
        // still no delta.
        assert!(metrics(r.observe(&link(&t, "4", 50, 0, 0), t0)).is_empty());
        // After the timeout the old series are gone and new ones fit.
        let later = t0 + Duration::from_secs(61);
        let _ = r.observe(&link(&t, "9", 0, 0, 0), later).count();
        assert_eq!(r.series(), 1);
        assert_eq!(
            metrics(r.observe(&link(&t, "9", 5, 0, 0), later)),
            ["retran_packets"]
        );
    }

    #[test]
    fn system_net_drops() {
        use FieldType::*;
        let t = table(
            "system_net",
            &[("dev", Key), ("rx_drop", Counter), ("tx_drop", Counter)],
        );
        let set = ThresholdSet::default();
        set.set_param("system_net", "-D 10");
        // tcp_link's thresholds do not apply to system_net.
        set.set_param("tcp_link", "-D 1");
        let mut r = Rules::new(set, Duration::from_secs(60));
        let rec = |rx: &str, tx: &str| Accepted {
            table: Arc::clone(&t),
            values: vec!["eth0".into(), rx.into(), tx.into()],
            timestamp_ms: 5,
        };
        let t0 = Instant::now();
        assert!(metrics(r.observe(&rec("100", "0"), t0)).is_empty());
        let evs: Vec<Event> = r.observe(&rec("111", "5"), t0).collect();
        assert_eq!(evs.len(), 1);
        let v = &evs[0].values;
        assert_eq!(
            [&v[0], &v[1], &v[2], &v[8], &v[9]],
            ["system_net", "eth0", "rx_drop", "eth0", "WARN"]
        );
        // Unparsable counters are no delta, never a panic.
        assert!(metrics(r.observe(&rec("x", ""), t0)).is_empty());
    }

    #[test]
    fn other_tables_raise_nothing() {
        let t = table("tcp_other", &[("k", FieldType::Key)]);
        let mut r = rules("-D 1 -T 1");
        let rec = Accepted {
            table: t,
            values: vec!["a".into()],
            timestamp_ms: 1,
        };
        assert_eq!(r.observe(&rec, Instant::now()).count(), 0);
    }

    fn config(probes: &str) -> Config {
        Config::from_toml_str(probes, std::path::Path::new("test.toml")).expect("config")
    }

    #[test]
    fn thresholds_come_from_the_config_and_follow_reloads_and_replans() {
        let cfg = config(
            "[[probes]]\nname = \"tcp_link\"\nparam = \"-t 1 -D 7 -T 30\"\n\
             [[probes]]\nname = \"system_net\"\nparam = \"-t 1\"\n",
        );
        let set = ThresholdSet::from_config(&cfg);
        let on = Thresholds {
            latency_ms: 30,
            drops: 7,
        };
        assert_eq!(set.get("tcp_link"), on);
        assert_eq!(set.get("system_net"), Thresholds::default());
        // A reload replaces every probe's thresholds.
        set.load(&config(
            "[[probes]]\nname = \"system_net\"\nparam = \"-D 4\"\n",
        ));
        assert_eq!(set.get("tcp_link"), Thresholds::default());
        assert_eq!(set.get("system_net").drops, 4);
        // A probe planned again with new params (REST) updates them, even
        // when planning then fails.
        let inner: Planner = Arc::new(|_: &ProbeEntry| {
            Err(crate::daemon::StartError::Io {
                what: "test".into(),
                source: std::io::Error::other("no"),
            })
        });
        let planner = following_params(Some(&set), inner);
        let mut entry = cfg.probes[0].clone();
        entry.param = "-D 9".into();
        assert!(planner(&ProbeEntry::Native(entry)).is_err());
        assert_eq!(set.get("tcp_link").drops, 9);
    }

    #[test]
    fn the_sink_is_planned_only_for_the_probes_the_rules_look_at() {
        let stats = Stats::new();
        let (tx, _rx) = std::sync::mpsc::sync_channel(4);
        let other = config("[[probes]]\nname = \"system_meminfo\"\nparam = \"-D 5\"\n");
        assert!(RulesSink::plan(&other, &tx, &stats).is_none());
        assert!(stats.probes().is_empty());
        let cfg = config("[[probes]]\nname = \"system_net\"\nparam = \"-D 5\"\n");
        let (sink, closer, set) = RulesSink::plan(&cfg, &tx, &stats).expect("planned");
        assert_eq!(sink.name(), RULES);
        assert!(sink.takes().takes(FlowKind::Metric) && !sink.takes().takes(FlowKind::Event));
        assert_eq!(set.get("system_net").drops, 5);
        assert_eq!(stats.probe(RULES).state(), ProbeState::Running);
        drop(closer);
    }

    #[test]
    fn probe_failed_is_one_error_event() {
        let v = probe_failed("my|probe", "exited with status 1\nagain");
        assert_eq!(v.len(), EVENT_FIELDS);
        assert_eq!(
            [&v[0], &v[2], &v[9], &v[10]],
            ["probe", "state", "ERROR", "17"]
        );
        assert_eq!(v[1], "my probe");
        assert!(!v[11].contains('\n') && v[11].contains("exited with status 1"));
    }
}
