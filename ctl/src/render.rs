//! Human output: aligned tables and key/value blocks from the agent's JSON.
//! Fields the agent leaves out show as `-`, so an older or newer agent's
//! replies still print.

use serde_json::Value;

/// How a column is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table with a header row; columns padded to their widest cell and
/// separated by two spaces; no trailing spaces.
#[derive(Debug, Clone, Default)]
pub struct Table {
    head: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns.
    pub fn new(cols: &[(&str, Align)]) -> Self {
        Self {
            head: cols.iter().map(|(n, a)| ((*n).to_owned(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty, extra cells are dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.head.len(), String::new());
        self.rows.push(cells);
    }

    /// The text, one line per row, each ending in `\n`.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.head.iter().map(|(h, _)| width(h)).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(width(c));
            }
        }
        let mut out = String::new();
        let heads: Vec<String> = self.head.iter().map(|(h, _)| h.clone()).collect();
        for r in std::iter::once(&heads).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(width(c));
                match self.head[i].1 {
                    Align::Left => {
                        line.push_str(c);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(c);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key  value` lines, keys padded to the widest.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let w = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let line = format!("{k:<w$}  {v}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A scalar or list as one cell: strings bare, lists comma-joined, missing
/// or null `-`.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) if s.is_empty() => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => "-".into(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// The sub-probes of a view (`cmd.probe`).
fn sub_probes(v: &Value) -> String {
    cell(v.get("cmd").and_then(|c| c.get("probe")))
}

/// `params` as `k=v k=v`.
pub fn params(v: Option<&Value>) -> String {
    match v {
        Some(Value::Object(m)) if !m.is_empty() => {
            let mut kv: Vec<String> = m
                .iter()
                .map(|(k, x)| format!("{k}={}", cell(Some(x))))
                .collect();
            kv.sort();
            kv.join(" ")
        }
        _ => "-".into(),
    }
}

/// `snoopers` in one line; all empty: every process.
pub fn snoopers(v: Option<&Value>) -> String {
    let Some(Value::Object(m)) = v else {
        return "-".into();
    };
    let mut parts = Vec::new();
    if let Some(Value::Array(ids)) = m.get("proc_id") {
        if !ids.is_empty() {
            parts.push(format!("proc_id={}", cell(m.get("proc_id"))));
        }
    }
    if let Some(Value::Array(names)) = m.get("proc_name") {
        for n in names {
            let comm = n.get("comm").and_then(Value::as_str).unwrap_or("");
            let cmdline = n.get("cmdline").and_then(Value::as_str).unwrap_or("");
            let mut s = format!("proc_name(comm={comm:?}");
            if !cmdline.is_empty() {
                s.push_str(&format!(", cmdline={cmdline:?}"));
            }
            s.push(')');
            parts.push(s);
        }
    }
    if let Some(Value::Array(ids)) = m.get("container_id") {
        if !ids.is_empty() {
            parts.push(format!("container_id={}", cell(m.get("container_id"))));
        }
    }
    if parts.is_empty() {
        "all processes".into()
    } else {
        parts.join(" ")
    }
}

/// The probes of `GET /` (a list of views, of names, an object of views by
/// name, or `{"probes": [...]}`), as (name, view) pairs.
fn probe_entries(v: &Value) -> Result<Vec<(String, Value)>, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|it| match it {
                Value::String(s) => Ok((s.clone(), Value::Null)),
                Value::Object(m) => Ok((cell(m.get("name")), it.clone())),
                other => Err(format!(
                    "a probe entry is neither a name nor an object: {other}"
                )),
            })
            .collect(),
        Value::Object(m) => match m.get("probes") {
            Some(inner @ Value::Array(_)) => probe_entries(inner),
            _ => Ok(m.iter().map(|(k, x)| (k.clone(), x.clone())).collect()),
        },
        other => Err(format!("expected a list of probes, got {other}")),
    }
}

/// `probe list`: NAME KIND STATE RESTARTS PROBES.
pub fn probe_list(v: &Value) -> Result<String, String> {
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("KIND", Align::Left),
        ("STATE", Align::Left),
        ("RESTARTS", Align::Right),
        ("PROBES", Align::Left),
    ]);
    for (name, view) in probe_entries(v)? {
        t.row(vec![
            name,
            cell(view.get("kind")),
            cell(view.get("state")),
            cell(view.get("restarts")),
            sub_probes(&view),
        ]);
    }
    Ok(t.render())
}

/// `probe get`: one view as key/value lines.
pub fn probe_view(name: &str, v: &Value) -> Result<String, String> {
    if !v.is_object() {
        return Err(format!("expected a probe object, got {v}"));
    }
    let shown_name = match v.get("name") {
        Some(n) => cell(Some(n)),
        None => name.to_owned(),
    };
    Ok(pairs(&[
        ("name", shown_name),
        ("kind", cell(v.get("kind"))),
        ("state", cell(v.get("state"))),
        ("restarts", cell(v.get("restarts"))),
        ("probes", sub_probes(v)),
        ("params", params(v.get("params"))),
        ("snoopers", snoopers(v.get("snoopers"))),
    ]))
}

/// Seconds as `1d 2h 3m 4s` (leading zero units left out).
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = Vec::new();
    for (n, u) in [(d, "d"), (h, "h"), (m, "m")] {
        if n > 0 || !out.is_empty() {
            out.push(format!("{n}{u}"));
        }
    }
    out.push(format!("{s}s"));
    out.join(" ")
}

/// `status`: the agent's figures, its drops by reason, and a table of the
/// probes.
pub fn status(v: &Value) -> Result<String, String> {
    if !v.is_object() {
        return Err(format!("expected a status object, got {v}"));
    }
    let uptime = match v.get("uptime_secs").and_then(Value::as_u64) {
        Some(s) => duration(s),
        None => cell(v.get("uptime_secs")),
    };
    let drops = match v.get("drops") {
        Some(Value::Object(m)) => {
            let total: u64 = m.values().filter_map(Value::as_u64).sum();
            let mut by: Vec<String> = m
                .iter()
                .filter(|(_, n)| n.as_u64() != Some(0))
                .map(|(k, n)| format!("{k}={}", cell(Some(n))))
                .collect();
            by.sort();
            if by.is_empty() {
                total.to_string()
            } else {
                format!("{total} ({})", by.join(", "))
            }
        }
        other => cell(other),
    };
    let mut out = pairs(&[
        ("version", cell(v.get("version"))),
        ("uptime", uptime),
        ("series", cell(v.get("series"))),
        ("drops", drops),
    ]);
    out.push('\n');
    let mut t = Table::new(&[
        ("PROBE", Align::Left),
        ("KIND", Align::Left),
        ("STATE", Align::Left),
        ("RESTARTS", Align::Right),
    ]);
    let probes = match v.get("probes") {
        Some(p) => probe_entries(p)?,
        None => Vec::new(),
    };
    for (name, view) in probes {
        t.row(vec![
            name,
            cell(view.get("kind")),
            cell(view.get("state")),
            cell(view.get("restarts")),
        ]);
    }
    out.push_str(&t.render());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("N", Align::Right),
            ("NOTE", Align::Left),
        ]);
        t.row(vec!["a".into(), "1".into(), String::new()]);
        t.row(vec!["longer_name".into(), "12345".into(), "x".into()]);
        t.row(vec!["é".into()]);
        assert_eq!(
            t.render(),
            "NAME             N  NOTE\n\
             a                1\n\
             longer_name  12345  x\n\
             é\n"
        );
        assert_eq!(Table::new(&[("A", Align::Left)]).render(), "A\n");
    }

    #[test]
    fn cells_of_every_json_kind() {
        assert_eq!(cell(None), "-");
        assert_eq!(cell(Some(&json!(null))), "-");
        assert_eq!(cell(Some(&json!(""))), "-");
        assert_eq!(cell(Some(&json!([]))), "-");
        assert_eq!(cell(Some(&json!("x"))), "x");
        assert_eq!(cell(Some(&json!(3))), "3");
        assert_eq!(cell(Some(&json!(["a", 1]))), "a,1");
        assert_eq!(cell(Some(&json!(true))), "true");
    }

    fn tcp_view() -> Value {
        json!({
            "name": "tcp", "kind": "group", "state": "running",
            "cmd": {"probe": ["tcp_link"]},
            "params": {"report_period": 5, "latency_thr": 0},
            "snoopers": {"proc_id": [1, 22], "proc_name": [{"comm": "^nginx$", "cmdline": ""}], "container_id": []},
            "restarts": 2
        })
    }

    #[test]
    fn probe_list_from_views_names_and_maps() {
        let list = json!([
            tcp_view(),
            {"name": "system_meminfo", "kind": "native", "state": "stopped", "cmd": {"probe": []}, "restarts": 0}
        ]);
        assert_eq!(
            probe_list(&list).unwrap(),
            "NAME            KIND    STATE    RESTARTS  PROBES\n\
             tcp             group   running         2  tcp_link\n\
             system_meminfo  native  stopped         0  -\n"
        );
        assert_eq!(
            probe_list(&json!(["tcp", "baseinfo"])).unwrap(),
            "NAME      KIND  STATE  RESTARTS  PROBES\n\
             tcp       -     -             -  -\n\
             baseinfo  -     -             -  -\n"
        );
        let by_name = json!({"tcp": {"state": "stopped"}});
        assert!(probe_list(&by_name)
            .unwrap()
            .contains("tcp   -     stopped"));
        let wrapped = json!({"probes": [{"name": "x", "state": "failed"}]});
        assert!(probe_list(&wrapped).unwrap().contains("x     -     failed"));
        assert!(probe_list(&json!(3))
            .unwrap_err()
            .contains("expected a list"));
        assert!(probe_list(&json!([3]))
            .unwrap_err()
            .contains("neither a name"));
    }

    #[test]
    fn probe_view_lines() {
        assert_eq!(
            probe_view("tcp", &tcp_view()).unwrap(),
            "name      tcp\n\
             kind      group\n\
             state     running\n\
             restarts  2\n\
             probes    tcp_link\n\
             params    latency_thr=0 report_period=5\n\
             snoopers  proc_id=1,22 proc_name(comm=\"^nginx$\")\n"
        );
        // The legacy shape: {cmd, snoopers, params, state} without a name.
        let legacy = json!({"cmd": {"probe": []}, "snoopers": {"proc_id": [], "proc_name": [], "container_id": []}, "params": {}, "state": "stopped"});
        let text = probe_view("baseinfo", &legacy).unwrap();
        assert!(text.starts_with("name      baseinfo\n"), "{text}");
        assert!(text.contains("\nparams    -\n"), "{text}");
        assert!(text.ends_with("snoopers  all processes\n"), "{text}");
        assert!(probe_view("x", &json!([])).is_err());
        let s = snoopers(Some(
            &json!({"proc_name": [{"comm": "a", "cmdline": "b c"}], "container_id": ["abc"]}),
        ));
        assert_eq!(s, "proc_name(comm=\"a\", cmdline=\"b c\") container_id=abc");
    }

    #[test]
    fn status_block() {
        let st = json!({
            "version": "0.1.0", "uptime_secs": 93784, "series": 420,
            "drops": {"queue_full": 3, "bad_record": 0, "kafka": 4},
            "probes": [tcp_view(), {"name": "system_cpu", "kind": "c", "state": "failed", "restarts": 3}]
        });
        assert_eq!(
            status(&st).unwrap(),
            "version  0.1.0\n\
             uptime   1d 2h 3m 4s\n\
             series   420\n\
             drops    7 (kafka=4, queue_full=3)\n\
             \n\
             PROBE       KIND   STATE    RESTARTS\n\
             tcp         group  running         2\n\
             system_cpu  c      failed          3\n"
        );
        let quiet =
            json!({"version": "0.1.0", "uptime_secs": 5, "series": 0, "drops": {}, "probes": []});
        assert!(status(&quiet)
            .unwrap()
            .contains("uptime   5s\nseries   0\ndrops    0\n"));
        assert!(status(&json!("x")).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(61), "1m 1s");
        assert_eq!(duration(3600), "1h 0m 0s");
        assert_eq!(duration(86400 * 3 + 5), "3d 0h 0m 5s");
    }
}
