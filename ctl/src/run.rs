//! Running a parsed command against the agent.

use std::io::{Read, Write};
use std::path::Path;

use clap::CommandFactory;
use serde_json::Value;

use crate::cli::{Cli, Command, ProbeCmd};
use crate::error::CtlError;
use crate::http::{encode_segment, Response};
use crate::render;
use crate::transport::{Client, Target, TlsFiles};

/// The most a `-f` file may hold (the agent refuses bodies over 1 MB).
const MAX_INPUT: u64 = 1024 * 1024;

/// Runs `cli`, writing the result to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), CtlError> {
    if let Command::Completions { shell } = &cli.command {
        out.write_all(&completions(*shell))
            .map_err(CtlError::Output)?;
        return out.flush().map_err(CtlError::Output);
    }
    let target =
        Target::choose(cli.url.as_deref(), cli.socket.as_deref()).map_err(CtlError::Usage)?;
    let client = Client::new(
        target,
        cli.timeout,
        TlsFiles {
            cacert: cli.cacert.clone(),
            cert: cli.cert.clone(),
            key: cli.key.clone(),
        },
    )?;
    let text = match &cli.command {
        // Done above, without a client.
        Command::Completions { .. } => return Ok(()),
        Command::Metrics => ok(client.request("GET", "/metrics", None)?)?.text(),
        Command::Status => {
            let r = ok(client.request("GET", "/status", None)?)?;
            show(cli.json, &r, "/status", render::status)?
        }
        Command::Probe(ProbeCmd::List) => {
            let r = ok(client.request("GET", "/", None)?)?;
            show(cli.json, &r, "/", render::probe_list)?
        }
        Command::Probe(ProbeCmd::Get { name }) => {
            let path = format!("/{}", encode_segment(name));
            let r = ok(client.request("GET", &path, None)?)?;
            show(cli.json, &r, &path, |v| render::probe_view(name, v))?
        }
        Command::Probe(ProbeCmd::Set { name, change, file }) => {
            let body = match (change, file) {
                (Some(j), _) => change_body(j, "the JSON argument")?,
                (None, Some(f)) => change_body(&read_input(f)?, &format!("-f {}", f.display()))?,
                (None, None) => {
                    return Err(CtlError::Usage("probe set needs JSON or -f FILE".into()))
                }
            };
            put(&client, name, &body, cli.json)?
        }
        Command::Probe(ProbeCmd::Start { name }) => {
            put(&client, name, br#"{"state":"running"}"#, cli.json)?
        }
        Command::Probe(ProbeCmd::Stop { name }) => {
            put(&client, name, br#"{"state":"stopped"}"#, cli.json)?
        }
    };
    out.write_all(text.as_bytes()).map_err(CtlError::Output)?;
    if !text.is_empty() && !text.ends_with('\n') {
        out.write_all(b"\n").map_err(CtlError::Output)?;
    }
    out.flush().map_err(CtlError::Output)
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "gopher-ctl", &mut buf);
    if shell != clap_complete::Shell::Bash {
        return buf;
    }
    // clap_complete's bash script spells the states of a hyphenated binary
    // two ways (its loop sets `gopher__ctl__subcmd__probe`, its case arms
    // read `gopher__subcmd__ctl__subcmd__probe`), so nothing completes past
    // the first word (clap-rs/clap issue 6421). Spell the arms as the loop
    // does; a no-op once clap_complete is fixed.
    String::from_utf8_lossy(&buf)
        .replace("gopher__subcmd__ctl", "gopher__ctl")
        .into_bytes()
}

/// The `message` of the agent's `{"result": ..., "message": ...}` replies,
/// or the body's text when it is not such JSON.
pub fn message(r: &Response) -> String {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| r.text())
}

/// A 2xx reply, or the agent's refusal.
fn ok(r: Response) -> Result<Response, CtlError> {
    if r.is_success() {
        Ok(r)
    } else {
        Err(CtlError::Refused {
            status: r.status,
            reason: r.reason.clone(),
            message: message(&r),
        })
    }
}

/// The body as is (`--json`), or rendered for people.
fn show(
    json: bool,
    r: &Response,
    path: &str,
    f: impl Fn(&Value) -> Result<String, String>,
) -> Result<String, CtlError> {
    if json {
        return Ok(r.text());
    }
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| {
        CtlError::Unreachable(format!("the agent's reply to GET {path} is not JSON: {e}"))
    })?;
    f(&v).map_err(|e| CtlError::Unreachable(format!("the agent's reply to GET {path}: {e}")))
}

fn put(client: &Client, name: &str, body: &[u8], json: bool) -> Result<String, CtlError> {
    let path = format!("/{}", encode_segment(name));
    let r = ok(client.request("PUT", &path, Some(body))?)?;
    if json {
        return Ok(r.text());
    }
    let text = message(&r);
    if text.trim().is_empty() {
        Ok(format!("{name}: done"))
    } else {
        Ok(text)
    }
}

/// Reads `-f FILE` (`-`: stdin), at most 1 MB.
fn read_input(f: &Path) -> Result<String, CtlError> {
    let shown = f.display();
    let mut buf = Vec::new();
    let res = if f == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut buf)
    } else {
        std::fs::File::open(f).and_then(|h| h.take(MAX_INPUT + 1).read_to_end(&mut buf))
    };
    res.map_err(|e| CtlError::Usage(format!("-f {shown}: {}", crate::error::io_text(&e))))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(CtlError::Usage(format!(
            "-f {shown}: over 1 MB, the most the agent takes"
        )));
    }
    String::from_utf8(buf).map_err(|_| CtlError::Usage(format!("-f {shown}: not UTF-8 text")))
}

/// The body of `probe set`: the JSON object given (a leading `json=`, as
/// in the legacy curl examples, is taken off), checked locally so that a
/// typo is a usage error naming its line and column.
pub fn change_body(input: &str, origin: &str) -> Result<Vec<u8>, CtlError> {
    let t = input.trim();
    let t = t.strip_prefix("json=").unwrap_or(t).trim();
    if t.is_empty() {
        return Err(CtlError::Usage(format!(
            "{origin}: empty; expected a JSON object such as {{\"state\":\"running\"}}"
        )));
    }
    let v: Value =
        serde_json::from_str(t).map_err(|e| CtlError::Usage(format!("{origin}: not JSON: {e}")))?;
    if !v.is_object() {
        let kind = match v {
            Value::Array(_) => "an array",
            Value::String(_) => "a string",
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::Null => "null",
            Value::Object(_) => "an object",
        };
        return Err(CtlError::Usage(format!(
            "{origin}: expected a JSON object with keys state, cmd, params or snoopers, got {kind}"
        )));
    }
    Ok(t.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EXIT_USAGE;

    #[test]
    fn change_bodies() {
        assert_eq!(
            change_body(r#"{"state":"running"}"#, "x").unwrap(),
            br#"{"state":"running"}"#
        );
        assert_eq!(
            change_body("  json={\"params\":{\"report_period\":5}}\n", "x").unwrap(),
            br#"{"params":{"report_period":5}}"#
        );
        for (input, want) in [
            ("", "x: empty"),
            ("json=", "x: empty"),
            (
                "{\"state\":",
                "x: not JSON: EOF while parsing a value at line 1 column 9",
            ),
            (
                "{\n\"a\" 1}",
                "x: not JSON: expected `:` at line 2 column 5",
            ),
            ("[1]", "got an array"),
            ("\"running\"", "got a string"),
        ] {
            let e = change_body(input, "x").unwrap_err();
            assert_eq!(e.exit_code(), EXIT_USAGE);
            assert!(e.to_string().contains(want), "{input:?}: {e}");
        }
    }

    #[test]
    fn bash_completion_states_are_spelled_one_way() {
        let bash = String::from_utf8(completions(clap_complete::Shell::Bash)).unwrap();
        assert!(!bash.contains("gopher__subcmd__ctl"));
        assert!(bash.contains("cmd=\"gopher__ctl__subcmd__probe\""));
        assert!(bash.contains("\n        gopher__ctl__subcmd__probe)\n"));
        assert!(bash.contains("\n        gopher__ctl__subcmd__probe__subcmd__set)\n"));
    }

    #[test]
    fn refusals_carry_the_agents_message() {
        let r = Response {
            status: 404,
            reason: "Not Found".into(),
            headers: vec![],
            body: b"no probe named `x`\n".to_vec(),
        };
        let e = ok(r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the agent answered 404 Not Found: no probe named `x`"
        );
        assert_eq!(e.exit_code(), crate::error::EXIT_REFUSED);
        // The agent's JSON replies: their message.
        let r = Response {
            status: 400,
            reason: "Bad Request".into(),
            headers: vec![],
            body: br#"{"result":"failed","message":"`state`: expected running or stopped"}"#
                .to_vec(),
        };
        assert_eq!(
            ok(r).unwrap_err().to_string(),
            "the agent answered 400 Bad Request: `state`: expected running or stopped"
        );
        let r = Response {
            status: 405,
            reason: String::new(),
            headers: vec![],
            body: vec![],
        };
        assert_eq!(ok(r).unwrap_err().to_string(), "the agent answered 405");
    }

    #[test]
    fn files_too_big_or_missing_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; 1024 * 1024 + 1]).unwrap();
        let e = read_input(&big).unwrap_err();
        assert!(e.to_string().contains("over 1 MB"), "{e}");
        let e = read_input(&dir.path().join("none.json")).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("none.json: no such file or directory"),
            "{e}"
        );
        assert_eq!(e.exit_code(), EXIT_USAGE);
    }
}
