//! Kafka export against a real Kafka-protocol broker: tansu, in memory, on
//! 127.0.0.1 and a free port, started by each test and stopped by its PID.
//!
//! tansu in memory does not show a partition's last batch to consumers until
//! the next produce, so the readers here "nudge" each topic with a message
//! of their own (skipped when reading) and check records by their content.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::harness::{free_port, series_value, wait_for, Setup};

const METRIC: &str = "gala_gopher";
const EVENT: &str = "gala_gopher_event";
const META: &str = "gala_gopher_metadata";
const NUDGE: &str = "{\"nudge\":true}";

const DEMO_META: &str = include_str!("../data/demo_app.meta");
/// One series whose gauge carries a sequence number.
const SEQ_META: &str = r#"version = "1.0.0"
measurements:
(
    {
        table_name: "kseq",
        entity_name: "kseq",
        fields:
        (
            { description: "producer", type: "key", name: "p" },
            { description: "sequence number", type: "gauge", name: "seq" },
        )
    }
)
"#;

/// The tansu binary: on PATH or in ~/.cargo/bin.
fn tansu() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("tansu"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/tansu"));
    on_path
        .into_iter()
        .chain(home)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "tansu (a Kafka-protocol broker) is required for the Kafka tests and is not on PATH \
                 or in ~/.cargo/bin: run scripts/kafka.sh (`make test` does), which installs it with \
                 `cargo install tansu --locked --features dynostore`"
            )
        })
}

/// A tansu broker in memory on 127.0.0.1:port, killed by PID on drop.
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    log: PathBuf,
}

impl Broker {
    /// Starts a broker on `port` and creates `topics` (one partition each).
    pub fn start(port: u16, log: &Path, topics: &[&str]) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("broker log");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start tansu");
        let mut b = Self {
            child: Some(child),
            port,
            log: log.to_path_buf(),
        };
        wait_for(Duration::from_secs(10), "tansu to listen", || {
            if let Some(Ok(Some(st))) = b.child.as_mut().map(Child::try_wait) {
                panic!("tansu exited ({st}):\n{}", b.log_text());
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        for t in topics {
            let out = Command::new(tansu())
                .args(["topic", "create", "--broker", &url, "--partitions", "1", t])
                .output()
                .expect("tansu topic create");
            assert!(
                out.status.success(),
                "tansu topic create {t}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        b
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the broker (SIGKILL by PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads topics from the beginning with `assign()` (no group join), and
/// nudges them so tansu shows their last batch.
struct Reader {
    consumer: BaseConsumer,
    nudger: BaseProducer,
    topics: Vec<String>,
    /// Every message read: topic -> (key, JSON payload).
    got: BTreeMap<String, Vec<(String, Value)>>,
    last_nudge: Option<Instant>,
}

impl Reader {
    fn new(broker: &str, topics: &[&str]) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set("group.id", "gopher-tests")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for t in topics {
            tpl.add_partition_offset(t, 0, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let nudger: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set("queue.buffering.max.ms", "0")
            .create()
            .expect("producer");
        Self {
            consumer,
            nudger,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            got: BTreeMap::new(),
            last_nudge: None,
        }
    }

    /// Reads for about `d`, nudging every topic once a second.
    fn read_for(&mut self, d: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < d {
            if self
                .last_nudge
                .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
            {
                for t in &self.topics {
                    let _ = self
                        .nudger
                        .send(BaseRecord::<(), str>::to(t).payload(NUDGE));
                }
                self.last_nudge = Some(Instant::now());
            }
            self.nudger.poll(Duration::ZERO);
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(100)) {
                let payload = m.payload_view::<str>().and_then(Result::ok).unwrap_or("");
                if payload == NUDGE {
                    continue;
                }
                let v: Value = serde_json::from_str(payload)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {payload}"));
                let key = m
                    .key_view::<str>()
                    .and_then(Result::ok)
                    .unwrap_or("")
                    .to_owned();
                self.got
                    .entry(m.topic().to_owned())
                    .or_default()
                    .push((key, v));
            }
        }
    }

    /// Reads until `done` holds, or panics after `timeout` with `what`.
    fn read_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&BTreeMap<String, Vec<(String, Value)>>) -> bool,
    ) {
        let t0 = Instant::now();
        while !done(&self.got) {
            assert!(
                t0.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; read so far: {:?}",
                self.got
                    .iter()
                    .map(|(t, v)| (t, v.len()))
                    .collect::<Vec<_>>()
            );
            self.read_for(Duration::from_millis(300));
        }
    }

    fn topic(&self, t: &str) -> &[(String, Value)] {
        self.got.get(t).map_or(&[], Vec::as_slice)
    }

    /// The `seq` values read on the metric topic.
    fn seqs(&self) -> BTreeSet<u64> {
        self.topic(METRIC)
            .iter()
            .filter_map(|(_, v)| v["seq"].as_str()?.parse().ok())
            .collect()
    }
}

fn machine_id(s: &Setup) -> String {
    std::fs::read_to_string(s.path("state/machine_id"))
        .expect("agent persisted machine_id")
        .trim()
        .to_owned()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned()
}

/// The base config with the given channels on Kafka at `broker`.
fn kafka_config(s: &Setup, broker: &str, channels: &[&str], kafka_extra: &str) -> String {
    let mut cfg = s.base_config();
    for (section, old) in [
        ("metric", "web_server"),
        ("event", "logs"),
        ("meta", "logs"),
    ] {
        if channels.contains(&section) {
            cfg = cfg.replace(
                &format!("[{section}]\nout_channel = \"{old}\""),
                &format!("[{section}]\nout_channel = \"kafka\""),
            );
        }
    }
    format!(
        "{cfg}\n[kafka]\nkafka_broker = \"{broker}\"\nqueue_buffering_max_ms = 5\n{kafka_extra}\n"
    )
}

fn ms_now() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The value of `v[field]`, checked to be a timestamp within the test.
fn timestamp(v: &Value, field: &str, from: u64) -> u64 {
    let ts = v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}"));
    assert!(
        ts >= from && ts <= ms_now(),
        "{field} {ts} not within the test ({from}..)"
    );
    ts
}

#[test]
fn kafka_topics_carry_the_probe_records_exactly() {
    let s = Setup::new(&[("demo_app.meta", DEMO_META)]);
    let broker = Broker::start(free_port(), &s.path("tansu.log"), &[METRIC, EVENT, META]);
    let from = ms_now();
    let script = s.script(
        "demo.sh",
        "echo '|demo_app|100|nginx|42|3|'\necho '|demo_app|200|redis|7||'\n\
         echo '|event|proc|1234|cpu_util|1234|java||||eth0|WARN|13|cpu too high|'\nexec sleep 600",
    );
    let cfg = kafka_config(&s, &broker.addr(), &["metric", "event", "meta"], "");
    let agent = s.start(&format!(
        "{cfg}\n[[extend_probes]]\nname = \"demo\"\ncommand = \"{}\"\n",
        script.display()
    ));
    let tables = std::fs::read_dir(s.path("meta")).unwrap().count();
    let mut r = Reader::new(&broker.addr(), &[METRIC, EVENT, META]);
    r.read_until(Duration::from_secs(20), "every record", |g| {
        g.get(METRIC).is_some_and(|v| v.len() >= 2)
            && g.get(EVENT).is_some_and(|v| !v.is_empty())
            && g.get(META)
                .is_some_and(|v| v.iter().any(|(_, m)| m["meta_name"] == "demo_app"))
    });
    // Nothing more arrives than the probe printed.
    r.read_for(Duration::from_millis(1500));
    let (mid, host) = (machine_id(&s), hostname());

    let metrics = r.topic(METRIC);
    assert_eq!(metrics.len(), 2, "{metrics:?}");
    let by_pid = |pid: &str| {
        metrics
            .iter()
            .find(|(_, v)| v["pid"] == pid)
            .unwrap_or_else(|| panic!("pid {pid} in {metrics:?}"))
    };
    let (key, v) = by_pid("100");
    assert_eq!(key, &format!("{mid}|demo_app|100"));
    let ts = timestamp(v, "timestamp", from);
    assert_eq!(
        v,
        &json!({"timestamp": ts, "machine_id": mid, "hostname": host, "entity_name": "demo",
                "table_name": "demo_app", "pid": "100", "comm": "nginx", "requests": "42",
                "inflight": "3"})
    );
    let (key, v) = by_pid("200");
    assert_eq!(key, &format!("{mid}|demo_app|200"));
    let ts = timestamp(v, "timestamp", from);
    assert_eq!(
        v,
        &json!({"timestamp": ts, "machine_id": mid, "hostname": host, "entity_name": "demo",
                "table_name": "demo_app", "pid": "200", "comm": "redis", "requests": "7"}),
        "a null value is left out"
    );

    let events = r.topic(EVENT);
    assert_eq!(events.len(), 1, "{events:?}");
    let (key, v) = &events[0];
    assert_eq!(key, &format!("{mid}|event|proc|1234"));
    let ts = timestamp(v, "Timestamp", from);
    let event_id = format!("{ts}_1234");
    assert_eq!(
        v,
        &json!({"Timestamp": ts, "event_id": event_id,
                "Attributes": {"entity_id": format!("{mid}_proc_1234"), "event_id": event_id,
                               "event_type": "sys"},
                "Resource": {"metric": "gala_gopher_proc_cpu_util",
                             "labels": {"machine_id": mid, "hostname": host, "pid": "1234",
                                        "comm": "java", "dev": "eth0"}},
                "SeverityText": "WARN", "SeverityNumber": 13, "Body": "cpu too high"})
    );

    let metas = r.topic(META);
    let names: BTreeSet<&str> = metas
        .iter()
        .filter_map(|(_, m)| m["meta_name"].as_str())
        .collect();
    assert!(
        names.len() >= tables,
        "metadata for every table of the {tables} meta files: {names:?}"
    );
    let (key, m) = metas
        .iter()
        .find(|(_, m)| m["meta_name"] == "demo_app")
        .unwrap();
    assert_eq!(key, &format!("{mid}|demo_app"));
    let ts = timestamp(m, "timestamp", from);
    assert_eq!(
        m,
        &json!({"timestamp": ts, "meta_name": "demo_app", "entity_name": "demo",
                "version": "1.0.0", "keys": ["pid"], "labels": ["comm"],
                "metrics": ["requests", "inflight"]})
    );

    let expo = agent.scrape();
    let id = format!("machine_id=\"{mid}\",hostname=\"{host}\"");
    let delivered = |ch: &str| {
        series_value(
            &expo,
            &format!("gala_gopher_self_kafka_messages_delivered_total{{channel=\"{ch}\",{id}}}"),
        )
        .unwrap_or_else(|| panic!("delivered {ch} in:\n{expo}"))
    };
    assert_eq!(delivered("metric"), 2.0);
    assert_eq!(delivered("event"), 1.0);
    assert!(delivered("meta") >= tables as f64);
    assert!(!agent.log_text().contains("ERROR"), "{}", agent.log_text());
}

/// Sum of every drop counter of `component` in a scrape.
fn dropped(expo: &str, component: &str) -> u64 {
    let needle = format!("component=\"{component}\"");
    expo.lines()
        .filter(|l| l.starts_with("gala_gopher_self_records_dropped_total{") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

fn read_seq(s: &Setup) -> u64 {
    std::fs::read_to_string(s.path("seq"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// The broker is killed for 20 s while a probe emits sequence-numbered
/// records, then started again on the same port (empty: tansu keeps topics
/// in memory). Returns (records emitted during and after the outage up to
/// a mark, those of them that arrived, the kafka_metric drop count).
fn outage(kafka_extra: &str) -> (BTreeSet<u64>, BTreeSet<u64>, u64) {
    let s = Setup::new(&[("kseq.meta", SEQ_META)]);
    let port = free_port();
    let log = s.path("tansu.log");
    let mut broker = Broker::start(port, &log, &[METRIC]);
    let (pause, seq) = (s.path("pause"), s.path("seq"));
    let script = s.script(
        "seq.sh",
        &format!(
            "i=0\nwhile :; do\n  if [ ! -e {p} ]; then i=$((i+1)); echo \"|kseq|p|$i|\"; \
             echo $i > {q}.tmp; mv {q}.tmp {q}; fi\n  sleep 0.02\ndone",
            p = pause.display(),
            q = seq.display()
        ),
    );
    let cfg = kafka_config(&s, &broker.addr(), &["metric"], kafka_extra);
    let agent = s.start(&format!(
        "{cfg}\n[[extend_probes]]\nname = \"seq\"\ncommand = \"{}\"\n",
        script.display()
    ));

    // Before the outage: everything arrives.
    let mut r = Reader::new(&broker.addr(), &[METRIC]);
    wait_for(Duration::from_secs(20), "20 records", || {
        (read_seq(&s) >= 20).then_some(())
    });
    std::fs::write(&pause, "").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let before = read_seq(&s);
    let t0 = Instant::now();
    loop {
        let got = r.seqs();
        if (1..=before).all(|i| got.contains(&i)) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "records before the outage missing: {:?}",
            (1..=before)
                .filter(|i| !got.contains(i))
                .collect::<Vec<_>>()
        );
        r.read_for(Duration::from_millis(300));
    }
    drop(r);
    assert_eq!(dropped(&agent.scrape(), "kafka_metric"), 0);

    // The outage: the probe, the store and :port carry on.
    broker.kill();
    std::fs::remove_file(&pause).unwrap();
    let accepted = |expo: &str| -> f64 {
        expo.lines()
            .find(|l| l.starts_with("gala_gopher_self_records_accepted_total{probe=\"seq\""))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let a0 = accepted(&agent.scrape());
    std::thread::sleep(Duration::from_secs(20));
    let expo = agent.scrape();
    assert!(
        accepted(&expo) >= a0 + 200.0,
        "records kept flowing into the store during the outage:\n{expo}"
    );
    assert!(
        expo.lines().any(|l| l
            .starts_with("gala_gopher_self_kafka_queue_messages{channel=\"metric\"")
            && !l.ends_with(" 0")),
        "records wait in the queue:\n{expo}"
    );

    // The broker comes back, empty, on the same port.
    let mut broker = Broker::start(port, &log, &[METRIC]);
    std::thread::sleep(Duration::from_secs(2));
    let mark = read_seq(&s);
    let mut r = Reader::new(&broker.addr(), &[METRIC]);
    let emitted: BTreeSet<u64> = (before + 1..=mark).collect();
    // Everything up to the mark that will arrive has arrived once the
    // queue is empty and later records come in.
    let t0 = Instant::now();
    loop {
        r.read_for(Duration::from_millis(300));
        let expo = agent.scrape();
        let queued = series_value(
            &expo,
            "gala_gopher_self_kafka_queue_messages{channel=\"metric\"",
        )
        .unwrap_or(-1.0);
        let got = r.seqs();
        if queued < 20.0 && got.range(mark + 1..).count() >= 10 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "delivery did not resume: queued {queued}, read {} after the mark {mark}; agent log:\n{}",
            got.range(mark + 1..).count(),
            agent.log_text()
        );
    }
    r.read_for(Duration::from_secs(1));
    let arrived: BTreeSet<u64> = r.seqs().intersection(&emitted).copied().collect();
    let lost = dropped(&agent.scrape(), "kafka_metric");
    let log_text = agent.log_text();
    let errors: Vec<&str> = log_text.lines().filter(|l| l.contains("ERROR")).collect();
    // One error for the outage itself. A restarted tansu may refuse its
    // first produce requests ("Unknown broker error") before it serves
    // again: those records are dropped and counted like the rest (the
    // callers check the counter against the loss), and each refusal is one
    // line after the recovery, never a flood.
    let recovered_at = log_text
        .lines()
        .position(|l| l.contains("the broker acknowledges records again"))
        .unwrap_or(usize::MAX);
    let late_refusals = log_text
        .lines()
        .enumerate()
        .filter(|(i, l)| l.contains("ERROR") && *i > recovered_at && l.contains("delivery failed"))
        .count();
    assert!(
        !errors.is_empty()
            && errors[0].contains("cannot reach any broker")
            && errors.len() == 1 + late_refusals
            && late_refusals <= 3,
        "one error for the outage burst (and at most 3 refused deliveries while the broker restarts):\n{log_text}"
    );
    assert!(
        log_text.contains("the broker acknowledges records again"),
        "{log_text}"
    );
    eprintln!(
        "outage ({kafka_extra:?}): records {}..={mark} emitted in and after it, {} arrived, {lost} counted as dropped; agent log:\n{}",
        before + 1,
        arrived.len(),
        log_text.lines().filter(|l| l.contains("kafka")).collect::<Vec<_>>().join("\n")
    );
    broker.kill();
    (emitted, arrived, lost)
}

#[test]
fn broker_outage_within_the_bound_loses_nothing() {
    let (emitted, arrived, lost) = outage("");
    assert!(
        emitted.len() > 300,
        "{} records in the outage",
        emitted.len()
    );
    let missing: Vec<u64> = emitted.difference(&arrived).copied().collect();
    assert!(missing.is_empty(), "missing after the outage: {missing:?}");
    assert_eq!(lost, 0);
}

#[test]
fn broker_outage_past_the_bound_counts_every_loss() {
    let (emitted, arrived, lost) = outage("queue_buffering_max_messages = 100");
    let missing = emitted.len() - arrived.len();
    assert!(
        missing > 100,
        "the bound of 100 was passed: {missing} missing"
    );
    assert_eq!(
        lost,
        missing as u64,
        "the drop counter equals the loss ({} emitted, {} arrived)",
        emitted.len(),
        arrived.len()
    );
}

#[test]
fn unreachable_broker_at_start_logs_one_clear_error() {
    let s = Setup::new(&[("demo_app.meta", DEMO_META)]);
    // Nothing listens there.
    let broker = format!("127.0.0.1:{}", free_port());
    let script = s.script(
        "demo.sh",
        "while :; do echo '|demo_app|100|nginx|42|3|'; sleep 0.2; done",
    );
    let cfg = kafka_config(&s, &broker, &["metric", "meta"], "");
    let agent = s.start(&format!(
        "{cfg}\n[[extend_probes]]\nname = \"demo\"\ncommand = \"{}\"\n",
        script.display()
    ));
    // The endpoint serves the store as usual.
    wait_for(Duration::from_secs(10), "demo series", || {
        agent
            .scrape()
            .contains("gala_gopher_demo_requests{pid=\"100\"")
            .then_some(())
    });
    wait_for(Duration::from_secs(10), "the broker error", || {
        agent.log_text().contains("ERROR").then_some(())
    });
    // Reconnects go on in the background: still one line after a while.
    std::thread::sleep(Duration::from_secs(4));
    let log = agent.log_text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line:\n{log}");
    assert!(
        errors[0].contains("cannot reach any broker") && errors[0].contains(&broker),
        "the error names the broker: {}",
        errors[0]
    );
    let expo = agent.scrape();
    assert!(
        series_value(
            &expo,
            "gala_gopher_self_kafka_queue_messages{channel=\"metric\""
        )
        .is_some_and(|v| v > 0.0),
        "records wait:\n{expo}"
    );
}
