//! Changes made through the REST API (or the control socket) survive a
//! restart: each accepted request is merged into `<state_dir>/probes.json`
//! (written atomically: a temp file in the same directory, fsync, rename),
//! and at the next start [`restore`] applies them over the config's
//! defaults.
//!
//! The legacy 2.x agent kept its start-up requests in
//! `/etc/gala-gopher/probes.init` (one resource and its JSON per line,
//! replayed by a script after start). This agent keeps them under
//! `global.state_dir` in one JSON document instead:
//!
//! ```json
//! {"version": 1, "probes": {"tcp": {"state": "stopped", "params": {"report_period": 30}}}}
//! ```
//!
//! Per resource, the latest `state`, `cmd` and `snoopers` replace the kept
//! ones and `params` are merged key by key. A file that cannot be read or
//! parsed is logged (naming it) and ignored: the agent starts on its config,
//! and the next change moves the bad file aside (`probes.json.corrupt`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value};

use super::request;
use crate::control::{ControlError, ProbeControl};

/// The state file's name in `global.state_dir`.
pub const STATE_FILE: &str = "probes.json";

/// The format version written.
const VERSION: u64 = 1;

/// Kept changes, by resource.
pub type Kept = BTreeMap<String, Map<String, Value>>;

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// It could not be read.
    #[error("cannot read the REST state file `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Its content is not what this agent writes.
    #[error("the REST state file `{path}` is corrupt ({why}); it is ignored and the agent runs on its config")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
    /// It could not be written.
    #[error("cannot write the REST state file `{path}`: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads the kept changes (`Ok(empty)` when there is no file).
pub fn load(state_dir: &Path) -> Result<Kept, PersistError> {
    let path = state_dir.join(STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Kept::new()),
        Err(source) => return Err(PersistError::Read { path, source }),
    };
    parse(&text).map_err(|why| PersistError::Corrupt { path, why })
}

fn parse(text: &str) -> Result<Kept, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let top = v.as_object().ok_or("expected a JSON object")?;
    match top.get("version").and_then(Value::as_u64) {
        Some(VERSION) => {}
        other => return Err(format!("expected \"version\": {VERSION}, got {other:?}")),
    }
    let probes = top
        .get("probes")
        .and_then(Value::as_object)
        .ok_or("expected \"probes\": an object")?;
    let mut kept = Kept::new();
    for (name, entry) in probes {
        let entry = entry
            .as_object()
            .ok_or_else(|| format!("probes.{name}: expected an object"))?;
        kept.insert(name.clone(), entry.clone());
    }
    Ok(kept)
}

fn render(kept: &Kept) -> String {
    let mut probes = Map::new();
    for (k, v) in kept {
        probes.insert(k.clone(), Value::Object(v.clone()));
    }
    let mut top = Map::new();
    top.insert("version".into(), Value::from(VERSION));
    top.insert("probes".into(), Value::Object(probes));
    let mut s = serde_json::to_string_pretty(&Value::Object(top)).unwrap_or_default();
    s.push('\n');
    s
}

/// Merges one accepted request into the kept changes of `name`.
pub fn merge(kept: &mut Kept, name: &str, req: &Map<String, Value>) {
    let entry = kept.entry(name.to_owned()).or_default();
    for (k, v) in req {
        match (k.as_str(), entry.get_mut(k), v) {
            ("params", Some(Value::Object(old)), Value::Object(new)) => {
                for (pk, pv) in new {
                    old.insert(pk.clone(), pv.clone());
                }
            }
            _ => {
                entry.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Writes `content` to `path` atomically (temp file beside it, fsync,
/// rename, fsync of the directory), mode 0600.
fn write_atomic(path: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{STATE_FILE}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The REST layer's handle on the state file.
#[derive(Debug)]
pub struct Persist {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    kept: Kept,
    /// The file on disk could not be used: move it aside before the first
    /// write.
    bad_on_disk: bool,
}

impl Persist {
    /// Opens the state of `state_dir` (logs and starts empty when the file
    /// is bad).
    pub fn open(state_dir: &Path) -> Self {
        let (kept, bad_on_disk) = match load(state_dir) {
            Ok(k) => (k, false),
            Err(e) => {
                tracing::error!("{e}");
                (Kept::new(), true)
            }
        };
        Self {
            path: state_dir.join(STATE_FILE),
            inner: Mutex::new(Inner { kept, bad_on_disk }),
        }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records an applied request and writes the file.
    pub fn record(&self, name: &str, req: &Map<String, Value>) -> Result<(), PersistError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.bad_on_disk {
            let aside = self.path.with_extension("json.corrupt");
            match std::fs::rename(&self.path, &aside) {
                Ok(()) => tracing::warn!(
                    file = %self.path.display(),
                    moved_to = %aside.display(),
                    "the unusable REST state file was moved aside"
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %self.path.display(), error = %e, "cannot move the unusable REST state file aside")
                }
            }
            inner.bad_on_disk = false;
        }
        merge(&mut inner.kept, name, req);
        let text = render(&inner.kept);
        write_atomic(&self.path, &text).map_err(|source| PersistError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// The kept changes.
    pub fn kept(&self) -> Kept {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .kept
            .clone()
    }
}

/// What [`restore`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Resources whose kept change was applied.
    pub applied: Vec<String>,
    /// Resources skipped, and why (unknown now, or refused).
    pub skipped: Vec<(String, String)>,
    /// The file could not be used (logged; nothing applied).
    pub file_error: Option<String>,
}

/// Applies the changes kept in `<state_dir>/probes.json` over the running
/// config (call it once the probes of the config are planned or started).
/// Every problem is logged naming the file; none stops the agent.
pub fn restore(control: &dyn ProbeControl, state_dir: &Path) -> Restored {
    let mut out = Restored::default();
    let kept = match load(state_dir) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("{e}");
            out.file_error = Some(e.to_string());
            return out;
        }
    };
    let file = state_dir.join(STATE_FILE);
    for (name, entry) in kept {
        let why = match request::check(&Value::Object(entry)) {
            Err(e) => format!("kept request is no longer valid: {e}"),
            Ok(checked) => match control.apply(&name, &checked.change) {
                Ok(()) => {
                    tracing::info!(probe = %name, file = %file.display(), "REST change restored");
                    out.applied.push(name);
                    continue;
                }
                Err(ControlError::UnknownProbe(_)) => {
                    "no such probe in this configuration".to_owned()
                }
                Err(e) => e.to_string(),
            },
        };
        tracing::warn!(probe = %name, file = %file.display(), "REST change not restored: {why}");
        out.skipped.push((name, why));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn merge_replaces_keys_and_merges_params() {
        let mut k = Kept::new();
        merge(
            &mut k,
            "tcp",
            &obj(json!({"state": "stopped", "params": {"report_period": 30}})),
        );
        merge(
            &mut k,
            "tcp",
            &obj(json!({"state": "running", "params": {"latency_thr": 50}})),
        );
        merge(
            &mut k,
            "baseinfo",
            &obj(json!({"cmd": {"probe": ["system_cpu"]}})),
        );
        assert_eq!(
            Value::Object(k["tcp"].clone()),
            json!({"state": "running", "params": {"report_period": 30, "latency_thr": 50}})
        );
        assert_eq!(
            Value::Object(k["baseinfo"].clone()),
            json!({"cmd": {"probe": ["system_cpu"]}})
        );
    }

    #[test]
    fn record_writes_atomically_and_load_reads_it_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = Persist::open(dir.path());
        p.record("tcp", &obj(json!({"state": "stopped"})))
            .expect("write");
        p.record("tcp", &obj(json!({"params": {"report_period": 10}})))
            .expect("write");
        let back = load(dir.path()).expect("load");
        assert_eq!(
            Value::Object(back["tcp"].clone()),
            json!({"state": "stopped", "params": {"report_period": 10}})
        );
        // No temp file is left, and the file is private.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [STATE_FILE]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(STATE_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second handle sees the kept state and merges onto it.
        let p2 = Persist::open(dir.path());
        p2.record("baseinfo", &obj(json!({"state": "running"})))
            .expect("write");
        let back = load(dir.path()).expect("load");
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn a_missing_file_is_empty_and_a_corrupt_one_names_the_file_and_is_moved_aside() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(load(dir.path()).expect("none").is_empty());
        let f = dir.path().join(STATE_FILE);
        for bad in [
            "{not json",
            "[]",
            "{\"version\": 2, \"probes\": {}}",
            "{\"version\":1,\"probes\":{\"a\":1}}",
        ] {
            std::fs::write(&f, bad).expect("write");
            let e = load(dir.path()).expect_err(bad).to_string();
            assert!(e.contains(&f.display().to_string()), "{e}");
            assert!(e.contains("corrupt"), "{e}");
        }
        let p = Persist::open(dir.path());
        assert!(p.kept().is_empty());
        p.record("tcp", &obj(json!({"state": "stopped"})))
            .expect("write");
        assert!(dir.path().join("probes.json.corrupt").exists());
        assert_eq!(load(dir.path()).expect("good now").len(), 1);
    }
}
