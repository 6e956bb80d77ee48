use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

use super::*;
use crate::ingress::IngressHandle;
use crate::meta::{Field, FieldType};
use crate::probe_api::{Emitted, Emitter};
use crate::store::TableStore;

fn registry() -> Arc<MetaRegistry> {
    let f = |name: &str, ty| Field {
        name: name.into(),
        description: String::new(),
        ty,
    };
    let t = |name: &str| {
        Table::new(
            name,
            name,
            vec![f("k", FieldType::Key), f("v", FieldType::Gauge)],
        )
    };
    Arc::new(MetaRegistry::from_checked(vec![t("t"), t("u")]))
}

fn identity() -> Identity {
    Identity {
        machine_id: "m1".into(),
        hostname: "h1".into(),
    }
}

fn logs_config(dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.logs.metric_dir = dir.join("metrics");
    cfg.logs.event_dir = dir.join("event");
    cfg.logs.meta_dir = dir.join("meta");
    cfg
}

fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn the_plan_follows_the_channels() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = logs_config(dir.path());
    // The defaults: metrics on the web server, events and metadata in logs.
    let plan = SinkPlan::validate(&cfg).expect("valid");
    assert_eq!(
        plan.log_files(),
        [
            dir.path().join("event/events.log"),
            dir.path().join("meta/metadata.log")
        ]
    );
    cfg.metric.out_channel = OutChannel::Logs;
    cfg.event.out_channel = OutChannel::Off;
    cfg.meta.out_channel = if crate::config::trim::KAFKA {
        OutChannel::Kafka
    } else {
        OutChannel::Off
    };
    let plan = SinkPlan::validate(&cfg).expect("valid");
    assert_eq!(plan.log_files(), [dir.path().join("metrics/metrics.log")]);
    #[cfg(feature = "kafka")]
    assert!(matches!(plan.sinks[1], SinkSpec::Kafka { .. }), "{plan:?}");
}

#[test]
fn validation_names_the_key_of_every_problem() {
    let mut cfg = Config::default();
    cfg.event.out_channel = OutChannel::WebServer;
    cfg.meta.out_channel = OutChannel::Kafka;
    cfg.meta.kafka_topic = " ".into();
    let err = SinkPlan::validate(&cfg).expect_err("two problems");
    let keys: Vec<Option<&str>> = err.errors.iter().map(|p| p.key.as_deref()).collect();
    if crate::config::trim::KAFKA {
        assert_eq!(keys, [Some("event.out_channel"), Some("meta.kafka_topic")]);
    } else {
        assert_eq!(keys, [Some("event.out_channel"), Some("meta.out_channel")]);
    }
    assert!(err.to_string().contains("got \"web_server\""), "{err}");
}

#[test]
fn a_log_directory_that_cannot_be_made_is_a_build_error_naming_its_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").expect("write");
    let mut cfg = logs_config(dir.path());
    cfg.meta.out_channel = OutChannel::Off;
    cfg.event.out_channel = OutChannel::Off;
    cfg.metric.out_channel = OutChannel::Logs;
    cfg.logs.metric_dir = blocker.join("metrics");
    let plan = SinkPlan::validate(&cfg).expect("valid");
    let (meta, stats) = (registry(), Stats::new());
    let err = match plan.build(&BuildContext {
        meta: &meta,
        identity: &identity(),
        stats: &stats,
        reopen: &ReopenSignal::new(),
    }) {
        Ok(_) => panic!("a directory under a file cannot be made"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            BuildError::LogFile {
                key: "logs.metric_dir",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("logs.metric_dir "), "{err}");
}

#[test]
fn the_ticker_offers_metadata_to_the_sinks_that_take_it() {
    let stats = Stats::new();
    let mut ticker = MetadataTicker::new(registry(), METADATA_PERIOD);
    let takes_meta = Takes::nothing().and(FlowKind::Metadata, "m");
    let (a, a_rx) = SinkInput::new("a", takes_meta, 1, &stats);
    let (b, b_rx) = SinkInput::new("b", Takes::nothing().and(FlowKind::Metric, "b"), 1, &stats);
    ticker.subscribe(a);
    ticker.subscribe(b);
    assert!(!ticker.is_idle());
    ticker.tick(42);
    match a_rx.try_recv() {
        Ok(Flow::Metadata(m)) => {
            assert_eq!(m.timestamp_ms, 42);
            let names: Vec<&str> = m.tables.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names, ["t", "u"]);
        }
        other => panic!("expected metadata, got {other:?}"),
    }
    assert!(b_rx.try_recv().is_err(), "b does not take metadata");
    // A full queue loses the tick: one record per table.
    ticker.tick(43);
    ticker.tick(44);
    assert_eq!(
        stats.drops(),
        [
            ("export_queue_full", "b".to_string(), 0),
            ("export_queue_full", "m".to_string(), 2)
        ]
    );
}

fn flows(dir: &Path, kind: FlowKind) -> (Box<dyn Sink>, Arc<Stats>) {
    let stats = Stats::new();
    let file = RotatingFile::open(dir, "out.log", 1 << 20, 2).expect("open");
    (
        Box::new(LogSink::new(kind, file, identity(), &stats)),
        stats,
    )
}

fn run_with(sink: Box<dyn Sink>, stats: &Stats, items: Vec<Flow>) {
    let (input, rx) = SinkInput::new("test", sink.takes(), items.len() + 1, stats);
    for f in items {
        input.offer(f);
    }
    drop(input);
    sink.run(rx);
}

#[test]
fn a_log_sink_writes_its_kind_as_json_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let meta = registry();
    let rec = Arc::new(Accepted {
        table: Arc::clone(&meta.tables()[0]),
        values: vec!["a".into(), "1".into()],
        timestamp_ms: 7,
    });
    let ev = Arc::new(Event {
        values: [
            "proc", "42", "cpu", "42", "bash", "", "", "", "", "WARN", "13", "hot",
        ]
        .map(String::from)
        .to_vec(),
        timestamp_ms: 8,
    });
    let md = Arc::new(Metadata {
        tables: meta.tables().to_vec(),
        timestamp_ms: 9,
    });
    let all = || {
        vec![
            Flow::Metric(Arc::clone(&rec)),
            Flow::Event(Arc::clone(&ev)),
            Flow::Metadata(Arc::clone(&md)),
        ]
    };
    for (kind, expect) in [
        (FlowKind::Metric, vec![("timestamp", 7)]),
        (FlowKind::Event, vec![("Timestamp", 8)]),
        (FlowKind::Metadata, vec![("timestamp", 9), ("timestamp", 9)]),
    ] {
        let sub = dir.path().join(kind.section());
        let (sink, stats) = flows(&sub, kind);
        assert_eq!(sink.takes().count(), 1);
        run_with(sink, &stats, all());
        let lines = read_lines(&sub.join("out.log"));
        let got: Vec<u64> = lines
            .iter()
            .zip(&expect)
            .map(|(l, (field, _))| l[*field].as_u64().expect("a timestamp"))
            .collect();
        let want: Vec<u64> = expect.iter().map(|(_, ts)| *ts).collect();
        assert_eq!((lines.len(), got), (expect.len(), want), "{kind:?}");
        assert_eq!(stats.total_dropped(), 0);
    }
}

#[test]
fn an_unwritable_log_file_counts_every_lost_record() {
    let dir = tempfile::tempdir().expect("tmp");
    // Every write to /dev/full fails with ENOSPC.
    std::os::unix::fs::symlink("/dev/full", dir.path().join("out.log")).expect("symlink");
    let (sink, stats) = flows(dir.path(), FlowKind::Metric);
    let meta = registry();
    let rec = Arc::new(Accepted {
        table: Arc::clone(&meta.tables()[0]),
        values: vec!["a".repeat(1000), "1".into()],
        timestamp_ms: 7,
    });
    // 200 lines of 1 kB: the 64 kB write buffer overflows more than once.
    run_with(
        sink,
        &stats,
        (0..200).map(|_| Flow::Metric(Arc::clone(&rec))).collect(),
    );
    let lost = stats
        .drops()
        .iter()
        .find(|(s, c, _)| *s == "export_error" && c == "metric_logs")
        .map_or(0, |d| d.2);
    assert!(lost > 0 && lost <= 200, "{lost} lost");
}

/// A sink taking metric records that turns a value over a threshold into
/// an event sent back through the ingress: the shape of a rule engine.
struct Threshold {
    over: f64,
    ingress: IngressHandle,
}

impl Sink for Threshold {
    fn name(&self) -> &str {
        "threshold"
    }

    fn takes(&self) -> Takes {
        Takes::nothing().and(FlowKind::Metric, "threshold")
    }

    fn run(self: Box<Self>, input: Receiver<Flow>) {
        for flow in input {
            let Flow::Metric(r) = flow else { continue };
            let v: f64 = r.values[1].parse().unwrap_or(0.0);
            if v > self.over {
                let body = format!("{} is {v}", r.values[0]);
                let ev = [
                    &r.table.name,
                    &r.values[0],
                    "v",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "WARN",
                    "13",
                ]
                .iter()
                .map(|s| s.to_string())
                .chain([body])
                .collect();
                self.ingress.event(ev);
            }
        }
    }
}

#[test]
fn sinks_are_wired_to_the_ingress_and_the_ticker_and_end_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = logs_config(dir.path());
    cfg.metric.out_channel = OutChannel::Logs;
    let meta = registry();
    let stats = Stats::new();
    let store = Arc::new(TableStore::new(&meta, Duration::from_secs(60), 10).counting_in(&stats));
    let mut ingress = Ingress::new(Arc::clone(&meta), store, Arc::clone(&stats));
    let (tx, rx) = sync_channel::<Emitted>(64);
    let rules = IngressHandle::new("rules", tx.clone(), &stats);
    let plan = SinkPlan::validate(&cfg).expect("valid");
    let mut sinks = plan
        .build(&BuildContext {
            meta: &meta,
            identity: &identity(),
            stats: &stats,
            reopen: &ReopenSignal::new(),
        })
        .expect("built");
    sinks.push(Box::new(Threshold {
        over: 10.0,
        ingress: rules.clone(),
    }));
    let shutdown = Shutdown::new();
    let mut threads = Vec::new();
    start(sinks, &mut ingress, &meta, &stats, &shutdown, &mut threads).expect("started");
    assert_eq!(threads.len(), 5, "3 log sinks, the threshold, the ticker");
    threads.push(std::thread::spawn(move || ingress.run(rx)));
    let probe = Emitter::new(Arc::from("p"), tx, Arc::default());
    for (k, v) in [("a", "1"), ("b", "20"), ("c", "3")] {
        assert!(probe.line(format!("|t|{k}|{v}|").into_bytes()));
    }
    // The event comes back through the ingress to the event log.
    let events = dir.path().join("event/events.log");
    let t0 = std::time::Instant::now();
    while read_lines(&events).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no event");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Stop as the daemon does: the probes, then the handles, then join.
    shutdown.trigger();
    drop(probe);
    rules.close();
    for t in threads {
        t.join().expect("a thread ended");
    }
    let metrics = read_lines(&dir.path().join("metrics/metrics.log"));
    let keys: Vec<&str> = metrics.iter().filter_map(|l| l["k"].as_str()).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    let ev = read_lines(&events);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["Body"], "b is 20");
    let tables: Vec<String> = read_lines(&dir.path().join("meta/metadata.log"))
        .iter()
        .filter_map(|l| l["meta_name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(tables, ["t", "u"], "metadata once, at start");
    assert_eq!(stats.total_dropped(), 0, "{:?}", stats.drops());
    assert_eq!(stats.probe("rules").accepted.load(Ordering::Relaxed), 1);
}

#[test]
fn a_full_queue_is_one_outage_until_nothing_was_lost_for_a_while() {
    let stats = Stats::new();
    let takes = Takes::nothing().and(FlowKind::Event, "q");
    let (mut input, rx) = SinkInput::new("q", takes, 1, &stats);
    let ev = Arc::new(Event {
        values: Vec::new(),
        timestamp_ms: 1,
    });
    let offer = |i: &SinkInput| i.offer(Flow::Event(Arc::clone(&ev)));
    offer(&input);
    offer(&input);
    assert!(input.full.outage.is_failing());
    // The sink drains a batch: room again, but losses are recent.
    assert_eq!(rx.try_iter().count(), 1);
    offer(&input);
    offer(&input);
    assert!(input.full.outage.is_failing(), "still one overflow");
    assert_eq!(rx.try_iter().count(), 1);
    Arc::get_mut(&mut input.full).expect("not shared yet").quiet = Duration::ZERO;
    offer(&input);
    assert!(!input.full.outage.is_failing(), "over once quiet");
    // Flows it does not take are neither queued nor counted.
    input.offer(Flow::Metric(Arc::new(Accepted {
        table: Arc::clone(&registry().tables()[0]),
        values: Vec::new(),
        timestamp_ms: 1,
    })));
    assert_eq!(rx.try_iter().count(), 1);
    assert_eq!(stats.drops(), [("export_queue_full", "q".to_string(), 2)]);
}
