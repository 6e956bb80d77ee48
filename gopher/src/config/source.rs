//! From a parsed document (TOML or libconfig, both as a [`Setting`] tree with
//! lines) to a [`Config`], reporting every problem in one pass:
//! - each section is read on its own, so a broken section does not hide the
//!   others;
//! - within a section (or a `[[probes]]` entry), a key that does not
//!   deserialize is reported, left at its default, and the rest is read again
//!   without it, so a bad key does not hide the next one;
//! - the value rules of [`Config::validate`] then run on what was read,
//!   except on keys already reported (they hold defaults) and, in TOML, on
//!   lines with a syntax error (the parser guessed their values; the
//!   libconfig reader leaves broken settings out instead).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{search_meta_dir, ChannelFile, Config, ConfigProblem, MetaDirOrigin};
use crate::libconfig::{self, DeError, Setting, Value, ValueKind};

/// The sections a config may have.
const SECTIONS: &str =
    "global, metric, event, meta, ingress, egress, imdb, web_server, rest_api_server, \
                        kafka, logs, supervisor, cgroup, probes, extend_probes";

/// Where each key of a config file was written: `web_server.port` -> line.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    lines: BTreeMap<String, usize>,
}

/// Locations are not part of a config's value: all compare equal.
impl PartialEq for Locations {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Locations {
    /// The line of a key path (`probes[2].param`); for a key that was not
    /// written, the line of its nearest written ancestor (`probes[2]`).
    pub fn line(&self, key: &str) -> Option<usize> {
        let mut k = key;
        loop {
            if let Some(&l) = self.lines.get(k) {
                return Some(l);
            }
            let cut = k.rfind(['.', '['])?;
            k = &k[..cut];
        }
    }

    /// Whether the key was written in the file.
    pub fn contains(&self, key: &str) -> bool {
        self.lines.contains_key(key)
    }

    /// Records the lines of every setting and element of a document.
    pub fn from_settings(settings: &[Setting]) -> Self {
        let mut lines = BTreeMap::new();
        fn group(prefix: &str, settings: &[Setting], lines: &mut BTreeMap<String, usize>) {
            for s in settings {
                let path = if prefix.is_empty() {
                    s.name.clone()
                } else {
                    format!("{prefix}.{}", s.name)
                };
                lines.insert(path.clone(), s.line);
                value(&path, &s.value, lines);
            }
        }
        fn value(path: &str, v: &Value, lines: &mut BTreeMap<String, usize>) {
            match &v.kind {
                ValueKind::Group(g) => group(path, g, lines),
                ValueKind::Array(items) | ValueKind::List(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        lines.insert(p.clone(), item.line);
                        value(&p, item, lines);
                    }
                }
                _ => {}
            }
        }
        group("", settings, &mut lines);
        Self { lines }
    }
}

/// Whether the text is a TOML document.
pub(crate) fn is_toml(src: &str) -> bool {
    DeTable::parse(src).is_ok()
}

/// Line starts of a text, to turn byte offsets into lines.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(src: &str) -> Self {
        Self(
            std::iter::once(0)
                .chain(src.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        )
    }

    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&s| s <= offset).max(1)
    }
}

/// Parses TOML into the same tree as libconfig, with lines, and every
/// problem: the syntax errors (the first of each line; the parser resumes
/// after each, guessing the values it could not read) and the values that do
/// not fit (left out of the tree). Also returns the lines of the syntax
/// errors, whose values may be guesses.
pub(crate) fn toml_settings(
    src: &str,
    source: &Path,
) -> (Vec<Setting>, Vec<ConfigProblem>, HashSet<usize>) {
    let li = LineIndex::new(src);
    let (doc, errors) = DeTable::parse_recoverable(src);
    let mut problems: Vec<ConfigProblem> = Vec::new();
    let mut lines = HashSet::new();
    for e in errors {
        let line = e.span().map(|s| li.line(s.start));
        if line.is_some_and(|l| !lines.insert(l)) {
            continue;
        }
        problems.push(ConfigProblem::new(
            source,
            line,
            e.message().trim_end().to_string(),
        ));
    }
    let mut bad = Vec::new();
    let settings = toml_table("", doc.get_ref(), &li, &mut bad);
    problems.extend(
        bad.into_iter()
            .map(|(line, key, message)| ConfigProblem::at_key(source, Some(line), key, message)),
    );
    (settings, problems, lines)
}

/// A value that does not fit: (line, key path, message).
type TomlErr = (usize, String, String);

fn toml_table(
    prefix: &str,
    t: &DeTable<'_>,
    li: &LineIndex,
    bad: &mut Vec<TomlErr>,
) -> Vec<Setting> {
    t.iter()
        .filter_map(|(k, v)| {
            let name = k.get_ref().to_string();
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            let value = toml_value(&path, v, li, bad)?;
            Some(Setting {
                name,
                line: li.line(k.span().start),
                value,
            })
        })
        .collect()
}

/// A TOML value as a libconfig value; `None` (and a problem) when it does not fit.
fn toml_value(
    path: &str,
    v: &Spanned<DeValue<'_>>,
    li: &LineIndex,
    bad: &mut Vec<TomlErr>,
) -> Option<Value> {
    let line = li.line(v.span().start);
    let kind = match v.get_ref() {
        DeValue::String(s) => ValueKind::Str(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => ValueKind::Int(n),
            Err(_) => {
                bad.push((
                    line,
                    path.to_string(),
                    format!("integer `{i}` does not fit in 64 bits"),
                ));
                return None;
            }
        },
        DeValue::Float(f) => match f.as_str().parse() {
            Ok(x) => ValueKind::Float(x),
            Err(_) => {
                bad.push((line, path.to_string(), format!("invalid float `{f}`")));
                return None;
            }
        },
        DeValue::Boolean(b) => ValueKind::Bool(*b),
        DeValue::Datetime(d) => ValueKind::Str(d.to_string()),
        DeValue::Array(a) => {
            let before = bad.len();
            let items: Vec<Value> = a
                .iter()
                .enumerate()
                .filter_map(|(i, x)| toml_value(&format!("{path}[{i}]"), x, li, bad))
                .collect();
            if bad.len() != before {
                // An element left out would shift the others: leave the whole array out.
                return None;
            }
            ValueKind::List(items)
        }
        DeValue::Table(t) => ValueKind::Group(toml_table(path, t, li, bad)),
    };
    Some(Value { kind, line })
}

/// The first key of a relative error path: `port` of `port`, `options` of
/// `options.x`, `` of `[2].name`.
fn first_key(path: &str) -> &str {
    let end = path.find(['.', '[']).unwrap_or(path.len());
    &path[..end]
}

/// Deserializes a value; when a key of it (a group) does not fit, reports
/// it and tries again without that key, so that every bad key is reported
/// and the others are still read. `None` when the value cannot be read at
/// all (not a group, or a required key is missing). Errors are relative to
/// the value.
fn tolerant<T: DeserializeOwned>(value: &Value, errors: &mut Vec<DeError>) -> Option<T> {
    let mut v = Cow::Borrowed(value);
    loop {
        let e = match libconfig::from_value::<T>(&v) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let culprit = match &v.kind {
            ValueKind::Group(g) => {
                let key = first_key(&e.path);
                g.iter().position(|s| !key.is_empty() && s.name == key)
            }
            _ => None,
        };
        errors.push(e);
        let (Some(i), ValueKind::Group(g)) = (culprit, &mut v.to_mut().kind) else {
            return None;
        };
        // Each round removes a key, so this ends.
        g.remove(i);
    }
}

/// Reads the sections of a document, collecting every error.
struct Reader {
    errors: Vec<DeError>,
}

impl Reader {
    fn section<T: DeserializeOwned>(&mut self, s: &Setting) -> Option<T> {
        let mut errors = Vec::new();
        let v = tolerant(&s.value, &mut errors);
        self.errors.extend(
            errors
                .into_iter()
                .map(|e| e.at_line(s.line).in_key(&s.name)),
        );
        v
    }

    /// A list of groups. An entry that cannot be read at all is reported and
    /// kept as an empty entry, so that later entries keep their index.
    fn list<T: DeserializeOwned>(&mut self, s: &Setting) -> Vec<T> {
        let Some(items) = s.value.as_seq() else {
            self.errors.push(DeError {
                message: format!(
                    "expected a list of groups, found {}",
                    s.value.kind.describe()
                ),
                line: Some(s.value.line),
                path: s.name.clone(),
            });
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let mut errors = Vec::new();
            let v = tolerant(item, &mut errors).or_else(|| {
                let empty = Value {
                    kind: ValueKind::Group(Vec::new()),
                    line: item.line,
                };
                libconfig::from_value(&empty).ok()
            });
            self.errors.extend(
                errors
                    .into_iter()
                    .map(|e| e.at_line(item.line).in_index(i).in_key(&s.name)),
            );
            out.extend(v);
        }
        out
    }
}

/// Whether `key` is `at` or a key inside it (`probes[1].name` is inside `probes[1]`).
pub(crate) fn within(key: &str, at: &str) -> bool {
    key.strip_prefix(at)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Builds a config from a document's settings and validates it. `problems`
/// are those already found in the document (syntax errors, values that do
/// not fit); `guessed` are lines whose values the parser may have guessed
/// while recovering from a syntax error (the value rules skip them). Every
/// problem is returned, in line order, with the config read as far as it
/// could be (bad keys keep their defaults).
pub(crate) fn build(
    settings: &[Setting],
    source: &Path,
    mut problems: Vec<ConfigProblem>,
    guessed: &HashSet<usize>,
) -> (Config, Vec<ConfigProblem>) {
    let mut cfg = Config {
        source: source.to_path_buf(),
        ..Config::default()
    };
    let mut r = Reader { errors: Vec::new() };
    // A section that cannot be read at all keeps its defaults.
    for s in settings {
        match s.name.as_str() {
            "global" => r.section(s).into_iter().for_each(|v| cfg.global = v),
            "metric" => r
                .section::<ChannelFile>(s)
                .into_iter()
                .for_each(|v| cfg.metric = v.over(&cfg.metric)),
            "event" => r.section(s).into_iter().for_each(|v| cfg.event = v),
            "meta" => r
                .section::<ChannelFile>(s)
                .into_iter()
                .for_each(|v| cfg.meta = v.over(&cfg.meta)),
            "ingress" => r.section(s).into_iter().for_each(|v| cfg.ingress = v),
            "egress" => r.section(s).into_iter().for_each(|v| cfg.egress = v),
            "imdb" => r.section(s).into_iter().for_each(|v| cfg.imdb = v),
            "web_server" => r.section(s).into_iter().for_each(|v| cfg.web_server = v),
            "rest_api_server" => r
                .section(s)
                .into_iter()
                .for_each(|v| cfg.rest_api_server = v),
            "kafka" => r.section(s).into_iter().for_each(|v| cfg.kafka = v),
            "logs" => r.section(s).into_iter().for_each(|v| cfg.logs = v),
            "supervisor" => r.section(s).into_iter().for_each(|v| cfg.supervisor = v),
            "cgroup" => r.section(s).into_iter().for_each(|v| cfg.cgroup = v),
            "probes" => cfg.probes = r.list(s),
            "extend_probes" => cfg.extend_probes = r.list(s),
            other => r.errors.push(DeError {
                message: format!("unknown section `{other}`, expected one of {SECTIONS}"),
                line: Some(s.line),
                path: other.to_string(),
            }),
        }
    }
    problems.extend(
        r.errors
            .into_iter()
            .map(|e| ConfigProblem::from_de(source, e)),
    );

    // Keys already reported keep their defaults: the value rules skip them.
    let reported: Vec<String> = problems.iter().filter_map(|p| p.key.clone()).collect();

    cfg.global.log_level = cfg.global.log_level.to_ascii_lowercase();
    cfg.locations = super::Locations::from_settings(settings);
    let config_dir = source.parent().unwrap_or(Path::new(""));
    let meta_dir_written = cfg.locations.contains("global.meta_dir")
        && !reported.iter().any(|k| within("global.meta_dir", k));
    if meta_dir_written {
        cfg.global.meta_dir = config_dir.join(&cfg.global.meta_dir);
        cfg.meta_dir_origin = MetaDirOrigin::Written {
            line: cfg.locations.line("global.meta_dir"),
        };
    } else {
        let (dir, tried) = search_meta_dir(Some(config_dir));
        cfg.global.meta_dir = dir;
        cfg.meta_dir_origin = MetaDirOrigin::Searched { tried };
    }

    // The application whitelist first, while legacy probes still name it
    // with `-w` in their own entries; then the legacy keys and probe names
    // of every generation: mapped, or ignored with a warning.
    super::whitelist::resolve(&mut cfg, &mut problems);
    super::compat::apply(&mut cfg, settings, &mut problems, &reported);
    cfg.warnings.0.sort_by_key(|w| w.line.unwrap_or(usize::MAX));

    problems.extend(super::validate::problems(&cfg).into_iter().filter(|p| {
        let key = p.key.as_deref().unwrap_or_default();
        !reported.iter().any(|r| within(key, r)) && !p.line.is_some_and(|l| guessed.contains(&l))
    }));
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    (cfg, problems)
}
