//! The JSON shapes legacy consumers read (docs/compat.md §6), shared by the log-file
//! and Kafka exporters. Written by hand into a reused buffer: this is on the
//! per-record path of every push exporter.

use std::fmt::Write as _;

use crate::identity::Identity;
use crate::ingress::{Accepted, Event};
use crate::meta::{FieldType, Table};

/// Whether `s` holds a byte that JSON escapes (`"`, `\\`, or below 0x20).
/// Looks at 8 bytes at a time; a false positive would only take the slow
/// path of [`push_str`], which escapes exactly.
#[inline]
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Bytes of `x` below `n` (n <= 0x80) set their high bit here.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_ne_bytes(w);
        let hit = below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1);
        if hit & HIGH != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Appends `s` as a JSON string literal. A string that needs no escaping
/// (nearly all of them) is copied in one go; otherwise runs of characters
/// between escapes are.
pub fn push_str(out: &mut String, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn push_kv(out: &mut String, k: &str, v: &str) {
    out.push(',');
    push_str(out, k);
    out.push(':');
    push_str(out, v);
}

/// Appends `n` in decimal (without the formatting machinery of `write!`).
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Digits are ASCII.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// One metric record: `{"timestamp":ms,"machine_id":..,"hostname":..,
/// "entity_name":..,"table_name":..,"<field>":"<value>",...}`; null values
/// are left out, every value is a string.
pub fn metric(out: &mut String, id: &Identity, rec: &Accepted) {
    let t = &rec.table;
    out.push_str("{\"timestamp\":");
    push_u64(out, rec.timestamp_ms);
    out.push_str(",\"machine_id\":");
    push_str(out, &id.machine_id);
    out.push_str(",\"hostname\":");
    push_str(out, &id.hostname);
    out.push_str(",\"entity_name\":");
    push_str(out, &t.entity);
    out.push_str(",\"table_name\":");
    push_str(out, &t.name);
    for (f, v) in t.fields.iter().zip(&rec.values) {
        if !v.is_empty() {
            push_kv(out, &f.name, v);
        }
    }
    out.push('}');
}

/// The metadata of one table: `{"timestamp","meta_name","entity_name",
/// "version","keys":[..],"labels":[..],"metrics":[..]}`.
pub fn metadata(out: &mut String, t: &Table, timestamp_ms: u64) {
    let _ = write!(out, "{{\"timestamp\":{timestamp_ms}");
    push_kv(out, "meta_name", &t.name);
    push_kv(out, "entity_name", &t.entity);
    push_kv(out, "version", &t.version);
    let list = |out: &mut String, name: &str, pick: &dyn Fn(FieldType) -> bool| {
        out.push(',');
        push_str(out, name);
        out.push_str(":[");
        let mut first = true;
        for f in t.fields.iter().filter(|f| pick(f.ty)) {
            if !first {
                out.push(',');
            }
            first = false;
            push_str(out, &f.name);
        }
        out.push(']');
    };
    list(out, "keys", &|ty| ty == FieldType::Key);
    list(out, "labels", &|ty| ty == FieldType::Label);
    list(out, "metrics", &|ty| ty.is_metric());
    out.push('}');
}

/// Names of the event values after entity_name, entity_id, metric.
const EVENT_LABELS: [&str; 6] = ["pid", "comm", "ip", "container_id", "pod_id", "dev"];

/// One event (docs/compat.md §6).
pub fn event(out: &mut String, id: &Identity, ev: &Event) {
    let v = |i: usize| ev.values.get(i).map_or("", String::as_str);
    let (entity, entity_id, metric) = (v(0), v(1), v(2));
    let event_id = format!("{}_{}", ev.timestamp_ms, entity_id);
    let _ = write!(out, "{{\"Timestamp\":{}", ev.timestamp_ms);
    push_kv(out, "event_id", &event_id);
    out.push_str(",\"Attributes\":{\"entity_id\":");
    push_str(out, &format!("{}_{}_{}", id.machine_id, entity, entity_id));
    push_kv(out, "event_id", &event_id);
    push_kv(out, "event_type", "sys");
    out.push_str("},\"Resource\":{\"metric\":");
    push_str(out, &format!("gala_gopher_{entity}_{metric}"));
    out.push_str(",\"labels\":{\"machine_id\":");
    push_str(out, &id.machine_id);
    push_kv(out, "hostname", &id.hostname);
    for (i, name) in EVENT_LABELS.iter().enumerate() {
        let val = v(3 + i);
        if !val.is_empty() {
            push_kv(out, name, val);
        }
    }
    out.push_str("}}");
    push_kv(out, "SeverityText", v(9));
    let sev: u32 = v(10).trim().parse().unwrap_or(0);
    let _ = write!(out, ",\"SeverityNumber\":{sev}");
    push_kv(out, "Body", v(11));
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Field;
    use std::sync::Arc;

    fn id() -> Identity {
        Identity {
            machine_id: "m1-10.0.0.1".into(),
            hostname: "node\"1".into(),
        }
    }

    fn table() -> Arc<Table> {
        let f = |name: &str, ty| Field {
            name: name.into(),
            description: String::new(),
            ty,
        };
        Arc::new(Table::new(
            "tcp_link",
            "tcp_link",
            vec![
                f("pid", FieldType::Key),
                f("comm", FieldType::Label),
                f("rx", FieldType::Counter),
            ],
        ))
    }

    #[test]
    fn metric_shape() {
        let mut s = String::new();
        metric(
            &mut s,
            &id(),
            &Accepted {
                table: table(),
                values: vec!["7".into(), "".into(), "99".into()],
                timestamp_ms: 1700,
            },
        );
        assert_eq!(
            s,
            r#"{"timestamp":1700,"machine_id":"m1-10.0.0.1","hostname":"node\"1","entity_name":"tcp_link","table_name":"tcp_link","pid":"7","rx":"99"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&s).expect("valid JSON");
        assert_eq!(v["rx"], "99");
    }

    #[test]
    fn strings_are_escaped_exactly() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd\re\tf\u{1}g é");
        assert_eq!(s, r#""a\"b\\c\nd\re\tf\u0001g é""#);
        let back: String = serde_json::from_str(&s).expect("valid JSON");
        assert_eq!(back, "a\"b\\c\nd\re\tf\u{1}g é");
    }

    #[test]
    fn the_fast_path_agrees_with_the_escaping_path() {
        // Every byte that JSON escapes, at every position of strings long
        // enough for the 8-byte scan, and bytes next to them that do not.
        let specials = [
            '"', '\\', '\n', '\u{0}', '\u{1f}', '\u{7f}', ' ', '!', '#', '[', ']', 'é',
        ];
        for len in 0..20 {
            for pos in 0..len.max(1) {
                for &c in &specials {
                    let text: String = (0..len).map(|i| if i == pos { c } else { 'a' }).collect();
                    let mut s = String::new();
                    push_str(&mut s, &text);
                    let back: String = serde_json::from_str(&s).expect("valid JSON");
                    assert_eq!(back, text, "{s}");
                    let plain = !text.contains(['"', '\\']) && !text.chars().any(|c| c < ' ');
                    assert_eq!(s == format!("\"{text}\""), plain, "{s}");
                }
            }
        }
    }

    #[test]
    fn numbers_are_decimal() {
        for n in [0, 7, 10, 1_700_000_000_123, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn metadata_shape() {
        let mut s = String::new();
        metadata(&mut s, &table(), 5);
        assert_eq!(
            s,
            r#"{"timestamp":5,"meta_name":"tcp_link","entity_name":"tcp_link","version":"1.0.0","keys":["pid"],"labels":["comm"],"metrics":["rx"]}"#
        );
    }

    #[test]
    fn event_shape() {
        let mut s = String::new();
        let vals = [
            "proc",
            "42",
            "cpu_util",
            "42",
            "bash",
            "",
            "",
            "",
            "",
            "WARN",
            "13",
            "cpu \"high\"\n",
        ];
        event(
            &mut s,
            &id(),
            &Event {
                values: vals.iter().map(|v| (*v).to_owned()).collect(),
                timestamp_ms: 9,
            },
        );
        let v: serde_json::Value = serde_json::from_str(&s).expect("valid JSON");
        assert_eq!(v["Timestamp"], 9);
        assert_eq!(v["event_id"], "9_42");
        assert_eq!(v["Attributes"]["entity_id"], "m1-10.0.0.1_proc_42");
        assert_eq!(v["Attributes"]["event_type"], "sys");
        assert_eq!(v["Resource"]["metric"], "gala_gopher_proc_cpu_util");
        assert_eq!(v["Resource"]["labels"]["comm"], "bash");
        assert!(v["Resource"]["labels"].get("ip").is_none());
        assert_eq!(v["SeverityText"], "WARN");
        assert_eq!(v["SeverityNumber"], 13);
        assert_eq!(v["Body"], "cpu \"high\"\n");
    }
}
