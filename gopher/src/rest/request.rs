//! The body of `PUT /<name>`: extracting the JSON (legacy `json=` form
//! field, url-encoded or not, or plain JSON) and checking it into a
//! [`ProbeChange`].
//!
//! What `curl -X PUT localhost:9999/tcp -d json='{"state":"running"}'` sends
//! is the bytes `json={"state":"running"}` with
//! `Content-Type: application/x-www-form-urlencoded` and nothing encoded;
//! `--data-urlencode json='...'` sends the same field percent-encoded. Both
//! are accepted, as is a body that is JSON alone. The legacy documentation's
//! examples leave a comma before `}` or `]`; such trailing commas are
//! accepted too (nothing else beyond JSON is).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::ipc::{self, ProcName};
use crate::control::{DesiredState, ProbeChange, Snoopers};

/// Bodies larger than this are refused (1 MiB).
pub const MAX_BODY: usize = 1 << 20;

/// Why a request is refused (400): `key` names the part of the body
/// (`params.report_period`, `body`, ...), `message` says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// The key.
    pub key: String,
    /// What was expected, and what came.
    pub message: String,
}

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> BadRequest {
    BadRequest {
        key: key.into(),
        message: message.into(),
    }
}

/// The top-level keys of a request.
pub const KEYS: &[&str] = &["state", "cmd", "params", "snoopers"];

/// `cmd` keys of the legacy API that name the legacy probe's binary and its
/// start check: this agent runs its own probes, so they are accepted and
/// ignored.
pub const IGNORED_CMD_KEYS: &[&str] = &["bin", "check_cmd"];

/// Legacy `snoopers` keys this agent does not support (a request with one
/// is refused, naming it).
pub const UNSUPPORTED_SNOOPERS: &[&str] =
    &["pod_id", "container_name", "custom_labels", "pod_labels"];

/// Extracts the JSON object of a request body.
pub fn extract_json(body: &[u8]) -> Result<Value, BadRequest> {
    if body.len() > MAX_BODY {
        return Err(too_large(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        bad(
            "body",
            format!("expected UTF-8 text, got invalid bytes ({e})"),
        )
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(bad(
            "body",
            "expected `json=<JSON object>` or a JSON object, got an empty body",
        ));
    }
    let json = if let Some(rest) = text.strip_prefix("json=") {
        if rest.trim().is_empty() {
            return Err(bad(
                "json",
                "expected a JSON object after `json=`, got an empty value",
            ));
        }
        // `-d json='...'` sends it as is; `--data-urlencode` encodes it.
        match parse_lenient(rest) {
            Ok(v) => v,
            Err(first) => match form_decode(rest) {
                Some(decoded) if decoded != rest => parse_lenient(&decoded).map_err(|_| first)?,
                _ => return Err(first),
            },
        }
    } else if text.starts_with('{') || text.starts_with('[') {
        parse_lenient(text)?
    } else {
        // A form with several fields: the one named `json`.
        let field = text
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| form_decode(k).as_deref() == Some("json"))
            .map(|(_, v)| v);
        match field {
            Some(v) => {
                let decoded = form_decode(v).ok_or_else(|| {
                    bad(
                        "json",
                        "expected url-encoded UTF-8 text, got an invalid %-escape",
                    )
                })?;
                parse_lenient(&decoded)?
            }
            None => {
                return Err(bad(
                    "body",
                    "expected `json=<JSON object>` (curl -d json='{...}') or a JSON object",
                ))
            }
        }
    };
    if !json.is_object() {
        return Err(bad(
            "body",
            format!("expected a JSON object, got {}", kind(&json)),
        ));
    }
    Ok(json)
}

/// The refusal of a body over [`MAX_BODY`].
pub fn too_large(len: usize) -> BadRequest {
    bad(
        "body",
        format!("expected at most {MAX_BODY} bytes (1 MiB), got {len}"),
    )
}

/// `serde_json`, and on failure the same text without trailing commas.
fn parse_lenient(text: &str) -> Result<Value, BadRequest> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Ok(v),
        Err(first) => {
            let stripped = strip_trailing_commas(text);
            if stripped != text {
                if let Ok(v) = serde_json::from_str::<Value>(&stripped) {
                    return Ok(v);
                }
            }
            Err(bad("body", format!("invalid JSON: {first}")))
        }
    }
}

/// `text` without the commas that directly precede (whitespace aside) a
/// `}` or `]`, outside strings.
pub fn strip_trailing_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut pending: Option<usize> = None;
    for c in text.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            ',' => {
                pending = Some(out.len());
                out.push(c);
            }
            '}' | ']' => {
                if let Some(at) = pending.take() {
                    out.remove(at);
                }
                out.push(c);
            }
            c if c.is_whitespace() => out.push(c),
            '"' => {
                pending = None;
                in_str = true;
                out.push(c);
            }
            _ => {
                pending = None;
                out.push(c);
            }
        }
    }
    out
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a
/// byte. `None` for a bad escape or bytes that are not UTF-8.
pub fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let mut end = 77;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

fn object<'a>(key: &str, v: &'a Value) -> Result<&'a Map<String, Value>, BadRequest> {
    v.as_object().ok_or_else(|| {
        bad(
            key,
            format!("expected an object, got {} {}", kind(v), short(v)),
        )
    })
}

fn array<'a>(key: &str, v: &'a Value) -> Result<&'a Vec<Value>, BadRequest> {
    v.as_array().ok_or_else(|| {
        bad(
            key,
            format!("expected an array, got {} {}", kind(v), short(v)),
        )
    })
}

/// A checked request: the change for the probe manager, and the request as
/// it is kept in the state file (the ignored keys left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// What to apply.
    pub change: ProbeChange,
    /// The keys to persist.
    pub persist: Map<String, Value>,
}

/// Checks a request object: known keys, types, 2.x param names and ranges,
/// snooper regexes.
pub fn check(json: &Value) -> Result<Checked, BadRequest> {
    let top = object("body", json)?;
    let mut change = ProbeChange::default();
    let mut persist = Map::new();
    for (key, v) in top {
        match key.as_str() {
            "state" => {
                change.state = Some(match v.as_str() {
                    Some("running") => DesiredState::Running,
                    Some("stopped") => DesiredState::Stopped,
                    _ => {
                        return Err(bad(
                            "state",
                            format!("expected \"running\" or \"stopped\", got {}", short(v)),
                        ))
                    }
                });
                persist.insert(key.clone(), v.clone());
            }
            "cmd" => {
                let cmd = object("cmd", v)?;
                let mut kept = Map::new();
                for (k, cv) in cmd {
                    let at = format!("cmd.{k}");
                    match k.as_str() {
                        "probe" => {
                            let mut names = Vec::new();
                            for (i, n) in array(&at, cv)?.iter().enumerate() {
                                match n.as_str() {
                                    Some(s) if !s.trim().is_empty() && s.len() < 256 => {
                                        names.push(s.to_owned())
                                    }
                                    _ => {
                                        return Err(bad(
                                            format!("{at}[{i}]"),
                                            format!(
                                                "expected a sub-probe name (a non-empty string), got {}",
                                                short(n)
                                            ),
                                        ))
                                    }
                                }
                            }
                            change.probe = Some(names);
                            kept.insert(k.clone(), cv.clone());
                        }
                        k if IGNORED_CMD_KEYS.contains(&k) => {
                            if !cv.is_string() {
                                return Err(bad(
                                    at,
                                    format!("expected a string, got {} {}", kind(cv), short(cv)),
                                ));
                            }
                        }
                        _ => {
                            return Err(bad(
                                at,
                                "unknown key of `cmd`; expected `probe` (a list of sub-probe names; `bin` and \
                                 `check_cmd` are accepted and ignored)",
                            ))
                        }
                    }
                }
                if !kept.is_empty() {
                    persist.insert(key.clone(), Value::Object(kept));
                }
            }
            "params" => {
                let params = object("params", v)?;
                let mut out = BTreeMap::new();
                for (k, pv) in params {
                    ipc::check_param(k, pv).map_err(|m| bad(format!("params.{k}"), m))?;
                    out.insert(k.clone(), pv.clone());
                }
                change.params = Some(out);
                persist.insert(key.clone(), v.clone());
            }
            "snoopers" => {
                change.snoopers = Some(snoopers(object("snoopers", v)?)?);
                persist.insert(key.clone(), v.clone());
            }
            _ => {
                return Err(bad(
                    key.clone(),
                    format!("unknown key; expected {}", KEYS.join(", ")),
                ))
            }
        }
    }
    Ok(Checked { change, persist })
}

fn snoopers(obj: &Map<String, Value>) -> Result<Snoopers, BadRequest> {
    let mut s = Snoopers::default();
    for (k, v) in obj {
        let at = format!("snoopers.{k}");
        match k.as_str() {
            "proc_id" => {
                for (i, p) in array(&at, v)?.iter().enumerate() {
                    let pid = p
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            bad(
                                format!("{at}[{i}]"),
                                format!("expected a pid (an integer 1..=4294967295), got {}", short(p)),
                            )
                        })?;
                    s.proc_id.push(pid);
                }
            }
            "proc_name" => {
                for (i, p) in array(&at, v)?.iter().enumerate() {
                    if let Some(d) = p.get("debugging_dir").filter(|d| !d.is_string()) {
                        return Err(bad(
                            format!("{at}[{i}].debugging_dir"),
                            format!("expected a string (accepted and ignored), got {}", short(d)),
                        ));
                    }
                    let one: ProcName = serde_json::from_value(p.clone()).map_err(|e| {
                        bad(
                            format!("{at}[{i}]"),
                            format!(
                                "expected {{\"comm\": \"<regex>\", \"cmdline\": \"<substring>\"}}: {e}"
                            ),
                        )
                    })?;
                    s.proc_name.push(one);
                }
            }
            "container_id" => {
                for (i, c) in array(&at, v)?.iter().enumerate() {
                    match c.as_str() {
                        Some(id) if !id.is_empty() && id.len() <= 256 && !id.contains('\0') => {
                            s.container_id.push(id.to_owned())
                        }
                        _ => {
                            return Err(bad(
                                format!("{at}[{i}]"),
                                format!("expected a container id (a non-empty string), got {}", short(c)),
                            ))
                        }
                    }
                }
            }
            k if UNSUPPORTED_SNOOPERS.contains(&k) => {
                return Err(bad(
                    at,
                    "not supported by this agent: it selects processes by proc_id, proc_name and container_id",
                ))
            }
            _ => {
                return Err(bad(
                    at,
                    "unknown key of `snoopers`; expected proc_id, proc_name or container_id",
                ))
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(b: &str) -> Result<Checked, BadRequest> {
        check(&extract_json(b.as_bytes())?)
    }

    #[test]
    fn curl_d_json_is_taken_as_it_is_sent() {
        // What `curl -X PUT localhost:9999/tcp -d json='...'` sends.
        let c =
            body(r#"json={"cmd":{"probe":["tcp_abnormal"]},"state":"running"}"#).expect("valid");
        assert_eq!(c.change.state, Some(DesiredState::Running));
        assert_eq!(c.change.probe, Some(vec!["tcp_abnormal".to_owned()]));
        assert_eq!(c.change.params, None);
        assert_eq!(c.change.snoopers, None);
    }

    #[test]
    fn data_urlencode_and_plain_json_and_form_fields_are_accepted() {
        let enc = "json=%7B%22state%22%3A%22stopped%22%2C%22snoopers%22%3A%7B%22proc_name%22%3A%5B%7B%22comm%22%3A%22a+b%22%7D%5D%7D%7D";
        let c = body(enc).expect("url-encoded");
        assert_eq!(c.change.state, Some(DesiredState::Stopped));
        assert_eq!(
            c.change.snoopers.expect("snoopers").proc_name[0].comm,
            "a b"
        );
        let c = body(r#"{"state":"stopped"}"#).expect("plain");
        assert_eq!(c.change.state, Some(DesiredState::Stopped));
        let c = body("x=1&json=%7B%22state%22%3A%22running%22%7D").expect("form");
        assert_eq!(c.change.state, Some(DesiredState::Running));
        // A '+' in a raw (not encoded) body stays a '+'.
        let c = body(r#"json={"snoopers":{"proc_name":[{"comm":"a+","cmdline":"x+y"}]}}"#)
            .expect("raw");
        assert_eq!(c.change.snoopers.expect("s").proc_name[0].cmdline, "x+y");
    }

    #[test]
    fn the_legacy_docs_trailing_commas_are_accepted() {
        let c = body(
            "json='\n{\n    \"params\": {\n        \"report_period\": 60,\n        \"sample_period\": 200,\n    }\n}'"
                .trim_start_matches("json='")
                .trim_end_matches('\'')
                .to_owned()
                .as_str(),
        )
        .expect("trailing comma");
        let p = c.change.params.expect("params");
        assert_eq!(p["report_period"], json!(60));
        assert_eq!(p["sample_period"], json!(200));
        assert_eq!(
            strip_trailing_commas(r#"{"a":",}", "b":[1,2,],}"#),
            r#"{"a":",}", "b":[1,2]}"#
        );
        assert_eq!(strip_trailing_commas(r#"{"a":"\",}"}"#), r#"{"a":"\",}"}"#);
    }

    #[test]
    fn cmd_bin_and_check_cmd_are_ignored_and_not_persisted() {
        let c =
            body(r#"{"cmd":{"bin":"/opt/x","check_cmd":"","probe":["tcp_rtt"]}}"#).expect("valid");
        assert_eq!(c.change.probe, Some(vec!["tcp_rtt".to_owned()]));
        assert_eq!(
            Value::Object(c.persist),
            json!({"cmd": {"probe": ["tcp_rtt"]}})
        );
    }

    #[test]
    fn errors_name_the_key_and_what_was_expected() {
        let cases: &[(&str, &str, &str)] = &[
            ("", "body", "empty body"),
            ("json=", "json", "empty"),
            ("json={", "body", "invalid JSON"),
            ("hello", "body", "json=<JSON object>"),
            ("[1]", "body", "expected a JSON object, got an array"),
            (r#"{"nope":1}"#, "nope", "unknown key"),
            (
                r#"{"state":"paused"}"#,
                "state",
                "\"running\" or \"stopped\"",
            ),
            (r#"{"state":1}"#, "state", "\"running\" or \"stopped\""),
            (r#"{"cmd":[]}"#, "cmd", "expected an object"),
            (r#"{"cmd":{"probe":"x"}}"#, "cmd.probe", "expected an array"),
            (r#"{"cmd":{"probe":[1]}}"#, "cmd.probe[0]", "sub-probe name"),
            (r#"{"cmd":{"x":1}}"#, "cmd.x", "unknown key of `cmd`"),
            (
                r#"{"params":{"report_period":601}}"#,
                "params.report_period",
                "5..=600",
            ),
            (
                r#"{"params":{"report_period":4}}"#,
                "params.report_period",
                "5..=600",
            ),
            (
                r#"{"params":{"sample_period":99}}"#,
                "params.sample_period",
                "100..=10000",
            ),
            (
                r#"{"params":{"latency_thr":"x"}}"#,
                "params.latency_thr",
                "integer",
            ),
            (
                r#"{"params":{"res_upper_thr":101}}"#,
                "params.res_upper_thr",
                "0..=100",
            ),
            (
                r#"{"params":{"report_period":5.5}}"#,
                "params.report_period",
                "integer",
            ),
            (r#"{"params":{"nope":1}}"#, "params.nope", "unknown"),
            (r#"{"params":{"env":"moon"}}"#, "params.env", "node"),
            (r#"{"params":[]}"#, "params", "expected an object"),
            (
                r#"{"snoopers":{"proc_id":[-1]}}"#,
                "snoopers.proc_id[0]",
                "pid",
            ),
            (
                r#"{"snoopers":{"proc_id":[0]}}"#,
                "snoopers.proc_id[0]",
                "pid",
            ),
            (
                r#"{"snoopers":{"proc_name":[{"comm":"(["}]}}"#,
                "snoopers.proc_name[0]",
                "regular expression",
            ),
            (
                r#"{"snoopers":{"proc_name":[{"cmdline":"x"}]}}"#,
                "snoopers.proc_name[0]",
                "comm",
            ),
            (
                r#"{"snoopers":{"container_id":[""]}}"#,
                "snoopers.container_id[0]",
                "container id",
            ),
            (
                r#"{"snoopers":{"pod_id":["p"]}}"#,
                "snoopers.pod_id",
                "not supported",
            ),
            (r#"{"snoopers":{"x":1}}"#, "snoopers.x", "unknown key"),
            (
                r#"{"snoopers":{"proc_name":[{"comm":"a","debugging_dir":{}}]}}"#,
                "snoopers.proc_name[0].debugging_dir",
                "expected a string",
            ),
        ];
        for (input, key, want) in cases {
            let e = body(input).expect_err(input);
            assert_eq!(&e.key, key, "{input}: {e}");
            assert!(e.message.contains(want), "{input}: `{want}` not in {e}");
        }
    }

    #[test]
    fn every_2x_param_at_its_bounds() {
        for (name, lo, hi) in [
            ("sample_period", 100, 10_000),
            ("report_period", 5, 600),
            ("latency_thr", 10, 100_000),
            ("offline_thr", 10, 100_000),
            ("drops_thr", 10, 100_000),
            ("res_lower_thr", 0, 100),
            ("res_upper_thr", 0, 100),
            ("report_event", 0, 1),
            ("svg_period", 30, 600),
            ("perf_sample_period", 10, 1000),
            ("kafka_port", 1, 65_535),
            ("cadvisor_port", 1, 65_535),
        ] {
            for ok in [lo, hi] {
                let b = format!(r#"{{"params":{{"{name}":{ok}}}}}"#);
                body(&b).unwrap_or_else(|e| panic!("{b}: {e}"));
            }
            for no in [lo - 1, hi + 1] {
                let b = format!(r#"{{"params":{{"{name}":{no}}}}}"#);
                let e = body(&b).expect_err(&b);
                assert_eq!(e.key, format!("params.{name}"));
                assert!(e.message.contains(&format!("{lo}..={hi}")), "{e}");
            }
        }
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let big = vec![b' '; MAX_BODY + 1];
        let e = extract_json(&big).expect_err("too big");
        assert!(e.message.contains("1 MiB"), "{e}");
    }

    #[test]
    fn no_input_panics() {
        for s in [
            "json=%",
            "json=%zz",
            "%",
            "json=%7",
            "{\"a\":\u{0}}",
            "json=\u{7f}",
            "&&&=",
            "json",
        ] {
            let _ = body(s);
        }
        let _ = extract_json(&[0xff, 0xfe]);
    }
}
