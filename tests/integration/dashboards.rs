//! The Grafana dashboard (deploy/grafana/gala-gopher.json) and the alert
//! rules (deploy/prometheus/rules.yml) against the real tools and the real
//! agent:
//!
//! - `promtool check rules` accepts the rules, and `promtool test rules`
//!   runs deploy/prometheus/rules_test.yml, where every alert fires once and
//!   stays quiet on a healthy agent; a rule made to never fire, or to fire
//!   always, fails those tests.
//! - Every metric name in the dashboard's queries and the rules' expressions
//!   is in a real scrape of the agent (`up`, Prometheus's own, aside).
//! - A real Prometheus scraping the real agent answers every query of the
//!   dashboard without an error and with data, and evaluates every rule
//!   without an error.
//!
//! The agent runs the default probes (the four /proc tables and the eBPF
//! `tcp_link`), the C probes `system_cpu` and `system_net`, an extend probe
//! that writes a `tcp_link` and a `tcp_link_probe_stats` record and one line
//! that is not a record (so tcp_link's series exist where the eBPF probe
//! cannot attach, and a rejection is counted), and its event and meta
//! channels go to Kafka at an address where nothing listens (so the
//! `gala_gopher_self_kafka_*` series exist).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{free_port, http_get, repo, wait_for, Agent, Setup};

const DASHBOARD: &str = "deploy/grafana/gala-gopher.json";
const RULES: &str = "deploy/prometheus/rules.yml";
const RULES_TEST: &str = "deploy/prometheus/rules_test.yml";

/// Names Prometheus makes itself; no agent exports them.
const PROMETHEUS_OWN: &[&str] = &["up"];

/// The job name the rules expect (GalaGopherDown selects it).
const JOB: &str = "gala-gopher";

/// Targets that may return nothing from a healthy agent on any machine,
/// as (panel title, refIds): they draw only non-zero error rates, or TCP
/// states a machine may have no socket in at the moment.
const MAY_BE_EMPTY: &[(&str, &str)] = &[
    ("Records dropped /s by stage and component", "A"),
    ("Errors and drops by interface /s", "ABCDEFGHI"),
    ("TCP sockets by state", "ABCD"),
    ("Nodes", "G"),
];

// ---------------------------------------------------------------------------
// Tools

/// Fails clearly, before anything starts, when `tool` is missing.
fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{tool} is required by this test and was not found on PATH: install the Debian \
         package `prometheus` (scripts/deps.sh does)"
    );
}

/// Runs promtool in `dir`; returns (exit code, stdout and stderr).
fn promtool_in(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------
// rules.yml, read line by line (the file is ours and keeps this shape;
// promtool validates the YAML, and the rule count is checked against its)

/// One alerting rule: its name, its expression and the lines the expression
/// spans (0-based, end exclusive).
#[derive(Debug)]
struct Rule {
    alert: String,
    expr: String,
    lines: std::ops::Range<usize>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The rules of a rules file: `- alert: NAME` then `expr: ...` on one line,
/// or as a block scalar (`>-`, `|`, ...) on the more indented lines below.
fn rules(yaml: &str) -> Vec<Rule> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut alert: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        if let Some(name) = t.strip_prefix("- alert:") {
            alert = Some(name.trim().to_owned());
        } else if let Some(rest) = t.strip_prefix("expr:") {
            let name = alert
                .take()
                .unwrap_or_else(|| panic!("{RULES}:{}: an expr before its `- alert:`", i + 1));
            let rest = rest.trim();
            let start = i;
            let expr = if rest.starts_with('>') || rest.starts_with('|') {
                let mut body = Vec::new();
                while i + 1 < lines.len()
                    && (lines[i + 1].trim().is_empty()
                        || indent(lines[i + 1]) > indent(lines[start]))
                {
                    i += 1;
                    body.push(lines[i].trim());
                }
                body.join(" ")
            } else {
                rest.trim_matches(|c| c == '"' || c == '\'').to_owned()
            };
            assert!(!expr.trim().is_empty(), "{RULES}: {name} has an empty expr");
            out.push(Rule {
                alert: name,
                expr,
                lines: start..i + 1,
            });
        }
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// PromQL: the metric names an expression selects

/// Aggregation operators: followed by `by (...)`, `without (...)` or `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Other words that are not metric names.
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

/// Index just past the quoted string that starts at `i`.
fn skip_string(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() && b[j] != q {
        if b[j] == b'\\' && q != b'`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// Index just past the `close` matching the `open` at `i`, strings skipped.
fn skip_group(b: &[u8], i: usize, open: u8, close: u8) -> usize {
    let mut depth = 0;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'"' | b'\'' | b'`' => {
                j = skip_string(b, j);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    b.len()
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// The metric names `expr` selects. Skipped: strings, label matchers
/// `{...}`, ranges and subqueries `[...]`, numbers and durations, Grafana
/// variables (`$x`, `${x}`), functions and aggregations (a word before `(`),
/// keywords, and the label lists of `by`, `without`, `on`, `ignoring`,
/// `group_left` and `group_right`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            i = skip_string(b, i);
        } else if c == b'{' {
            i = skip_group(b, i, b'{', b'}');
        } else if c == b'[' {
            i = skip_group(b, i, b'[', b']');
        } else if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'$' {
            i += 1;
            if b.get(i) == Some(&b'{') {
                i = skip_group(b, i, b'{', b'}');
            } else {
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            // 1, 0.5, 1e9, 0x1f, 5m, 1h30m
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let mut next = i;
            while next < b.len() && b[next].is_ascii_whitespace() {
                next += 1;
            }
            let lower = word.to_ascii_lowercase();
            if LABEL_LISTS.contains(&lower.as_str()) {
                if b.get(next) == Some(&b'(') {
                    i = skip_group(b, next, b'(', b')');
                }
            } else if AGGREGATIONS.contains(&lower.as_str())
                || KEYWORDS.contains(&lower.as_str())
                || b.get(next) == Some(&b'(')
            {
                // not a metric
            } else {
                names.insert(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    names
}

// ---------------------------------------------------------------------------
// The dashboard

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Every panel, those inside collapsed rows included.
fn panels(d: &Value) -> Vec<&Value> {
    fn walk<'a>(ps: &'a Value, out: &mut Vec<&'a Value>) {
        for p in ps.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

/// A query of the dashboard: where it is, and its PromQL.
#[derive(Debug)]
struct Query {
    panel: String,
    ref_id: String,
    expr: String,
}

fn queries(d: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                panel: p["title"].as_str().unwrap_or("?").to_owned(),
                ref_id: t["refId"].as_str().unwrap_or("?").to_owned(),
                expr: t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a target of {} has no expr", p["title"]))
                    .to_owned(),
            });
        }
    }
    out
}

/// The query of a template variable: a string, or `{"query": ...}`.
fn variable_query(v: &Value) -> Option<&str> {
    v["query"].as_str().or_else(|| v["query"]["query"].as_str())
}

/// `label_values(selector, label)` split into its selector and label.
fn label_values(q: &str) -> (&str, &str) {
    let inner = q
        .trim()
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("a query variable that is not label_values(...): {q}"));
    let (sel, label) = inner
        .rsplit_once(',')
        .unwrap_or_else(|| panic!("label_values without a label: {q}"));
    (sel.trim(), label.trim())
}

/// The query variables of the dashboard: (name, selector, label).
fn query_variables(d: &Value) -> Vec<(String, String, String)> {
    d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = variable_query(v).expect("a query variable has a query");
            let (sel, label) = label_values(q);
            (
                v["name"].as_str().expect("name").to_owned(),
                sel.to_owned(),
                label.to_owned(),
            )
        })
        .collect()
}

/// Every PromQL expression the dashboard and the rules evaluate, with where
/// it comes from.
fn all_expressions() -> Vec<(String, String)> {
    let d = dashboard();
    let mut out: Vec<(String, String)> = queries(&d)
        .into_iter()
        .map(|q| {
            (
                format!("{DASHBOARD}: panel \"{}\" {}", q.panel, q.ref_id),
                q.expr,
            )
        })
        .collect();
    for (name, sel, _) in query_variables(&d) {
        out.push((format!("{DASHBOARD}: variable ${name}"), sel));
    }
    for r in rules(&read(RULES)) {
        out.push((format!("{RULES}: {}", r.alert), r.expr));
    }
    out
}

/// Grafana's variables replaced as Grafana would with "All" selected.
fn substitute(expr: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').expect("closing } of a ${variable}");
            (&braced[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let value = vars
            .get(name)
            .unwrap_or_else(|| panic!("${name} in `{expr}` is not a variable of the dashboard"));
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// The agent

/// The agent as described at the top of this file.
fn start_agent() -> (Setup, Agent) {
    let s = Setup::new(&[]);
    let meta = std::fs::read_to_string(s.path("meta/tcp_link.meta")).unwrap();
    let stats_fields = crate::harness::field_count(&meta, "tcp_link_probe_stats");
    assert_eq!(
        crate::harness::field_count(&meta, "tcp_link"),
        16,
        "tcp_link's fields changed"
    );
    // tcp_link: pid, process_name, role, client_ip, server_ip, server_port,
    // protocol, link_count, rx_bytes, tx_bytes, packets_in, packets_out,
    // retran_packets, lost_packets, rtt, service; a pid no real process has.
    let script = s.script(
        "dashboards.sh",
        &format!(
            "n=0\nwhile true; do\n  n=$((n + 1000))\n  \
             echo \"|tcp_link|4000000|dashboards|1|192.0.2.1|192.0.2.2|443|2|1|$n|$n|$n|$n|0|0|250|cmd:dashboards|\"\n  \
             echo '|tcp_link_probe_stats|dashboards{}|'\n  \
             echo 'not a record'\n  sleep 1\ndone",
            "|1".repeat(stats_fields - 1)
        ),
    );
    let cfg = crate::harness::every_series_config(&s, "dashboards", &script);
    let agent = s.start(&cfg);
    (s, agent)
}

/// The sample names of an exposition (histogram and summary samples with
/// their `_bucket`, `_sum` and `_count`, as PromQL selects them).
fn sample_names(expo: &str) -> BTreeSet<String> {
    expo.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Histogram and summary families of an exposition (`# TYPE x histogram`).
fn suffixed_families(expo: &str) -> BTreeSet<String> {
    expo.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, ty) = l.split_once(' ')?;
            matches!(ty.trim(), "histogram" | "summary").then(|| name.to_owned())
        })
        .collect()
}

/// Whether `name` is in the scrape: a sample name, or the `_bucket`,
/// `_sum` or `_count` of a histogram or summary the scrape declares.
fn scraped(name: &str, samples: &BTreeSet<String>, families: &BTreeSet<String>) -> bool {
    samples.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|family| families.contains(family))
        })
}

/// Every name of `used` the scrape lacks (Prometheus's own names aside).
fn missing_names(used: &BTreeSet<String>, expo: &str) -> Vec<String> {
    let samples = sample_names(expo);
    let families = suffixed_families(expo);
    used.iter()
        .filter(|n| !PROMETHEUS_OWN.contains(&n.as_str()))
        .filter(|n| !scraped(n, &samples, &families))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------
// A real Prometheus

/// A Prometheus server on 127.0.0.1 with its data in a temp dir, scraping
/// the agent every second under job "gala-gopher" and evaluating rules.yml
/// every second; killed by PID on drop.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prometheus(pid {}, :{})", self.child.id(), self.port)
    }
}

impl Prometheus {
    fn start(dir: &Path, agent_port: u16) -> Self {
        let cfg = dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{agent_port}']\n",
                repo().join(RULES).display()
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("prometheus log"))
            .spawn()
            .expect("start prometheus");
        let mut p = Self { child, port, log };
        wait_for(Duration::from_secs(30), "prometheus to be ready", || {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("prometheus exited ({st}):\n{}", p.log_text());
            }
            http_get(p.port, "/-/ready")
                .ok()
                .filter(|(s, _)| *s == 200)
                .map(|_| ())
        });
        p
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an API path; the `data` of a success, or the error's text.
    fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.port, path).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
        if v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!("{status} {}: {}", v["errorType"], v["error"]))
        }
    }

    /// An instant query: the result vector, or Prometheus's error.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn promql_metric_names_are_found() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"topk($top, sum by (hostname, pid) (rate(a_total{job=~"$job",x="}[5m] b"}[$__rate_interval])))"#
        ),
        ["a_total"]
    );
    assert_eq!(
        names("x * on (job, instance) group_left (state) (y == 1) or vector(0)"),
        ["x", "y"]
    );
    assert_eq!(
        names(
            "sum(rate(s_sum[5m])) without (le) / ignoring(a) sum (rate(s_count[1h30m] offset 5m))"
        ),
        ["s_count", "s_sum"]
    );
    assert_eq!(
        names(r#"count_values by (h) ("state", st) > bool 1e3 unless absent(up) and Inf"#),
        ["st", "up"]
    );
    assert_eq!(
        names("histogram_quantile(0.9, h_bucket) > ${x}"),
        ["h_bucket"]
    );
    assert_eq!(names("max(a[5m:1m]) and on() b"), ["a", "b"]);
}

#[test]
fn rules_pass_promtool_check() {
    require("promtool");
    let (code, out) = promtool_in(&repo(), &["check", "rules", RULES]);
    assert_eq!(code, 0, "promtool check rules {RULES}:\n{out}");
    let found: usize = out
        .split("SUCCESS: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rule count in promtool's output:\n{out}"));
    let ours = rules(&read(RULES));
    assert_eq!(
        ours.len(),
        found,
        "promtool found {found} rules; this test reads {} expressions: {ours:#?}",
        ours.len()
    );
    let names: BTreeSet<&str> = ours.iter().map(|r| r.alert.as_str()).collect();
    assert_eq!(names.len(), ours.len(), "two alerts of one name");
    for r in ours {
        assert!(
            r.alert.starts_with("GalaGopher"),
            "{}: alert names start with GalaGopher",
            r.alert
        );
    }
    let yaml = read(RULES);
    for key in ["summary:", "description:", "severity:"] {
        assert_eq!(
            yaml.matches(key).count(),
            found,
            "every alert has a {key} ({RULES})"
        );
    }
}

#[test]
fn rules_unit_tests_fire_every_alert() {
    require("promtool");
    let dir = repo().join("deploy/prometheus");
    let (code, out) = promtool_in(&dir, &["test", "rules", "rules_test.yml"]);
    assert_eq!(code, 0, "promtool test rules {RULES_TEST}:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    // Each alert fires in a test and is expected quiet in another: a copy
    // of the rules where it never fires, or always fires, fails the tests.
    let yaml = read(RULES);
    let lines: Vec<&str> = yaml.lines().collect();
    let tests = read(RULES_TEST);
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("rules_test.yml"), &tests).expect("copy the tests");
    for r in rules(&yaml) {
        for (what, expr) in [
            ("never fires", "vector(1) < 0"),
            ("always fires", "vector(1)"),
        ] {
            let pad = " ".repeat(indent(lines[r.lines.start]));
            let mut sabotaged: Vec<String> = lines[..r.lines.start]
                .iter()
                .map(|l| (*l).to_owned())
                .collect();
            sabotaged.push(format!("{pad}expr: {expr}"));
            sabotaged.extend(lines[r.lines.end..].iter().map(|l| (*l).to_owned()));
            std::fs::write(tmp.path().join("rules.yml"), sabotaged.join("\n"))
                .expect("write the sabotaged rules");
            let (code, out) = promtool_in(tmp.path(), &["test", "rules", "rules_test.yml"]);
            assert_ne!(
                code, 0,
                "{RULES_TEST} passes although {} {what} (`expr: {expr}`):\n{out}",
                r.alert
            );
            assert!(
                out.contains(&format!("alertname: {},", r.alert)),
                "{} {what}: promtool should name it among the failures:\n{out}",
                r.alert
            );
        }
    }
}

#[test]
fn dashboard_is_grafana_json_with_host_variables() {
    let d = dashboard();
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert_eq!(d["uid"], "gala-gopher");
    assert!(d["id"].is_null(), "an exported dashboard has no id");
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(var("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(var("DS_PROMETHEUS")["query"], "prometheus");
    for (name, label) in [
        ("hostname", "hostname"),
        ("machine_id", "machine_id"),
        ("job", "job"),
    ] {
        let v = var(name);
        assert_eq!(v["type"], "query", "${name}");
        let (_, l) = label_values(variable_query(v).expect("query"));
        assert_eq!(l, label, "${name} lists the {label} label");
        assert_eq!(v["datasource"]["uid"], "${DS_PROMETHEUS}", "${name}");
    }

    let all = panels(&d);
    let mut ids = BTreeSet::new();
    for p in &all {
        let title = p["title"].as_str().expect("every panel has a title");
        let id = p["id"].as_u64().unwrap_or_else(|| panic!("{title}: no id"));
        assert!(ids.insert(id), "panel id {id} twice ({title})");
        for k in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][k].is_u64(), "{title}: gridPos.{k}");
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{title}: datasource"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(
                t["datasource"]["uid"], "${DS_PROMETHEUS}",
                "{title}: target datasource"
            );
            assert!(
                refs.insert(t["refId"].as_str().expect("refId")),
                "{title}: refId twice"
            );
        }
    }

    // The panels shown at load (collapsed rows' panels aside) do not overlap
    // and fit in Grafana's 24 columns.
    let boxes: Vec<(&str, [u64; 4])> = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .map(|p| {
            let g = &p["gridPos"];
            let n = |k: &str| g[k].as_u64().unwrap_or(0);
            (
                p["title"].as_str().unwrap_or("?"),
                [n("x"), n("y"), n("w"), n("h")],
            )
        })
        .collect();
    for (i, (a, [ax, ay, aw, ah])) in boxes.iter().enumerate() {
        assert!(ax + aw <= 24, "{a} is wider than the dashboard");
        for (b, [bx, by, bw, bh]) in &boxes[i + 1..] {
            let apart = ax + aw <= *bx || bx + bw <= *ax || ay + ah <= *by || by + bh <= *ay;
            assert!(apart, "panels \"{a}\" and \"{b}\" overlap");
        }
    }

    // Every $variable a query uses is defined (or one of Grafana's own).
    let mut known: BTreeMap<&str, &str> = vars
        .iter()
        .filter_map(|v| v["name"].as_str())
        .map(|n| (n, ".*"))
        .collect();
    for builtin in ["__rate_interval", "__interval", "__range"] {
        known.insert(builtin, "1m");
    }
    for q in queries(&d) {
        substitute(&q.expr, &known);
    }
    for (_, sel, _) in query_variables(&d) {
        substitute(&sel, &known);
    }

    // What the issue asks to see.
    let titles: Vec<&str> = all.iter().filter_map(|p| p["title"].as_str()).collect();
    let exprs: String = queries(&d)
        .iter()
        .map(|q| q.expr.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for table in [
        "system_meminfo",
        "system_vmstat",
        "system_tcp",
        "system_inode",
        "system_cpu",
        "system_net",
        "tcp_link",
    ] {
        assert!(
            exprs.contains(&format!("gala_gopher_{table}_")),
            "no panel shows {table}"
        );
    }
    for wanted in [
        "Top talkers: bytes sent /s",
        "Top talkers: bytes received /s",
    ] {
        assert!(titles.contains(&wanted), "no panel \"{wanted}\"");
    }
    let used: BTreeSet<String> = queries(&d)
        .iter()
        .flat_map(|q| metric_names(&q.expr))
        .collect();
    let scrape_self = [
        "gala_gopher_self_records_accepted_total",
        "gala_gopher_self_records_rejected_total",
        "gala_gopher_self_records_dropped_total",
        "gala_gopher_self_probe_state",
        "gala_gopher_self_probe_restarts_total",
        "gala_gopher_self_series",
        "gala_gopher_self_scrape_duration_seconds_sum",
        "gala_gopher_self_kafka_queue_messages",
        "gala_gopher_self_kafka_delivery_errors_total",
    ];
    for n in scrape_self {
        assert!(used.contains(n), "the dashboard does not show {n}");
    }
}

#[test]
fn dashboard_and_rules_use_only_scraped_metric_names() {
    let exprs = all_expressions();
    let used: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    assert!(used.len() > 50, "too few names found: {used:?}");
    let (_s, agent) = start_agent();
    let t0 = Instant::now();
    let mut expo = agent.scrape();
    while !missing_names(&used, &expo).is_empty() && t0.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(500));
        expo = agent.scrape();
    }
    let missing = missing_names(&used, &expo);
    if !missing.is_empty() {
        let users: Vec<String> = exprs
            .iter()
            .filter(|(_, e)| metric_names(e).iter().any(|n| missing.contains(n)))
            .map(|(at, _)| format!("  {at}"))
            .collect();
        panic!(
            "names used but not in a scrape of the agent: {missing:?}\nused by:\n{}\n\nscrape:\n{expo}\n\nagent log:\n{}",
            users.join("\n"),
            agent.log_text()
        );
    }
    eprintln!(
        "{} metric names of the dashboard and the rules, all scraped ({} Prometheus's own)",
        used.len(),
        PROMETHEUS_OWN.join(", ")
    );
}

#[test]
fn dashboard_queries_and_rules_work_in_a_real_prometheus() {
    require("prometheus");
    let d = dashboard();
    let (s, agent) = start_agent();
    let prom = Prometheus::start(s.dir.path(), agent.port);

    // Grafana's values with "All" selected, and a rate window of a few
    // scrapes (Grafana's $__rate_interval is 4 scrape intervals at least).
    let mut vars: BTreeMap<&str, &str> = BTreeMap::new();
    for v in d["templating"]["list"].as_array().expect("templating.list") {
        let name = v["name"].as_str().expect("name");
        let value = match v["type"].as_str() {
            Some("custom") => v["current"]["value"].as_str().expect("custom default"),
            _ => ".*",
        };
        vars.insert(name, value);
    }
    vars.insert("__rate_interval", "10s");
    vars.insert("__interval", "2s");
    vars.insert("__range", "1h");

    let mut checks: Vec<(String, String, bool)> = Vec::new();
    for q in queries(&d) {
        let may_be_empty = MAY_BE_EMPTY
            .iter()
            .any(|(title, refs)| *title == q.panel && refs.contains(q.ref_id.as_str()));
        checks.push((
            format!("panel \"{}\" {}", q.panel, q.ref_id),
            substitute(&q.expr, &vars),
            may_be_empty,
        ));
    }
    for (name, sel, _) in query_variables(&d) {
        checks.push((format!("variable ${name}"), substitute(&sel, &vars), false));
    }

    // Counters need two scrapes in the window; the probes need a moment.
    // The queries that may be empty are asked once, at the end.
    let (optional, required): (Vec<_>, Vec<_>) = checks.iter().partition(|c| c.2);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending = required;
    loop {
        let mut still = Vec::new();
        for c in pending {
            let (at, expr, _) = c;
            match prom.query(expr) {
                Err(e) => panic!("{at}: Prometheus refused `{expr}`: {e}"),
                Ok(r) if r.is_empty() => still.push(c),
                Ok(_) => {}
            }
        }
        if still.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let list: Vec<String> = still
                .iter()
                .map(|(at, e, _)| format!("  {at}: {e}"))
                .collect();
            panic!(
                "queries without data from a Prometheus scraping the agent:\n{}\n\nscrape:\n{}\n\nprometheus log:\n{}",
                list.join("\n"),
                agent.scrape(),
                prom.log_text()
            );
        }
        pending = still;
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut empty = Vec::new();
    for (at, expr, _) in &optional {
        match prom.query(expr) {
            Err(e) => panic!("{at}: Prometheus refused `{expr}`: {e}"),
            Ok(r) if r.is_empty() => empty.push(at.as_str()),
            Ok(_) => {}
        }
    }
    eprintln!(
        "{} dashboard queries answered with data; empty here, as allowed: {empty:?}",
        checks.len() - empty.len()
    );

    // Every rule evaluated on the real series without an error.
    let ours = rules(&read(RULES));
    let groups = wait_for(Duration::from_secs(30), "every rule evaluated", || {
        let data = prom.api("/api/v1/rules").ok()?;
        let rs: Vec<Value> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (rs.len() == ours.len() && rs.iter().all(|r| r["health"] != "unknown")).then_some(rs)
    });
    for r in &groups {
        assert_eq!(
            r["health"], "ok",
            "rule {} failed on the real series: {}",
            r["name"], r["lastError"]
        );
    }
    let firing: Vec<String> = groups
        .iter()
        .flat_map(|r| r["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            let l = &a["labels"];
            let what = ["probe", "channel", "stage", "reason"]
                .iter()
                .filter_map(|k| l[*k].as_str().map(|v| format!(" {k}={v}")))
                .collect::<String>();
            format!(
                "{}{what} ({})",
                l["alertname"].as_str().unwrap_or("?"),
                a["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    eprintln!(
        "{} rules evaluate cleanly; active here: {firing:?}",
        groups.len()
    );
}
