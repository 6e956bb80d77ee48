//! From a parsed document (TOML or libconfig, both as a [`Setting`] tree with
//! lines) to a [`Config`]: one section at a time, so that every broken
//! section is reported, not only the first.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{default_meta_dir, ChannelFile, Config, ConfigError, ConfigProblem};
use crate::libconfig::{self, DeError, Setting, Value, ValueKind};

/// The sections a config may have.
const SECTIONS: &str =
    "global, metric, event, meta, ingress, egress, imdb, web_server, rest_api_server, \
                        kafka, logs, supervisor, probes, extend_probes";

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

/// Parses TOML into the same tree as libconfig, with lines.
pub(crate) fn toml_settings(src: &str, source: &Path) -> Result<Vec<Setting>, ConfigError> {
    let li = LineIndex::new(src);
    let doc = DeTable::parse(src).map_err(|e| {
        let line = e.span().map(|s| li.line(s.start));
        ConfigError::single(ConfigProblem::new(
            source,
            line,
            e.message().trim_end().to_string(),
        ))
    })?;
    toml_table(doc.get_ref(), &li).map_err(|(line, key, message)| {
        ConfigError::single(ConfigProblem::at_key(source, Some(line), key, message))
    })
}

type TomlErr = (usize, String, String);

fn toml_table(t: &DeTable<'_>, li: &LineIndex) -> Result<Vec<Setting>, TomlErr> {
    t.iter()
        .map(|(k, v)| {
            let value = toml_value(v, li).map_err(|(l, p, m)| {
                let p = if p.is_empty() {
                    k.get_ref().to_string()
                } else if p.starts_with('[') {
                    format!("{}{p}", k.get_ref())
                } else {
                    format!("{}.{p}", k.get_ref())
                };
                (l, p, m)
            })?;
            Ok(Setting {
                name: k.get_ref().to_string(),
                line: li.line(k.span().start),
                value,
            })
        })
        .collect()
}

fn toml_value(v: &Spanned<DeValue<'_>>, li: &LineIndex) -> Result<Value, TomlErr> {
    let line = li.line(v.span().start);
    let kind = match v.get_ref() {
        DeValue::String(s) => ValueKind::Str(s.to_string()),
        DeValue::Integer(i) => {
            ValueKind::Int(i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| {
                (
                    line,
                    String::new(),
                    format!("integer `{i}` does not fit in 64 bits"),
                )
            })?)
        }
        DeValue::Float(f) => ValueKind::Float(
            f.as_str()
                .parse()
                .map_err(|_| (line, String::new(), format!("invalid float `{f}`")))?,
        ),
        DeValue::Boolean(b) => ValueKind::Bool(*b),
        DeValue::Datetime(d) => ValueKind::Str(d.to_string()),
        DeValue::Array(a) => ValueKind::List(
            a.iter()
                .enumerate()
                .map(|(i, x)| {
                    toml_value(x, li).map_err(|(l, p, m)| {
                        let p = if p.is_empty() || p.starts_with('[') {
                            format!("[{i}]{p}")
                        } else {
                            format!("[{i}].{p}")
                        };
                        (l, p, m)
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => ValueKind::Group(toml_table(t, li)?),
    };
    Ok(Value { kind, line })
}

fn section<T: DeserializeOwned>(s: &Setting) -> Result<T, Vec<DeError>> {
    libconfig::from_value(&s.value).map_err(|e| vec![e.at_line(s.line).in_key(&s.name)])
}

fn list<T: DeserializeOwned>(s: &Setting) -> Result<Vec<T>, Vec<DeError>> {
    let Some(items) = s.value.as_seq() else {
        let e = DeError {
            message: format!(
                "expected a list of groups, found {}",
                s.value.kind.describe()
            ),
            line: Some(s.value.line),
            path: s.name.clone(),
        };
        return Err(vec![e]);
    };
    let mut out = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match libconfig::from_value(item) {
            Ok(v) => out.push(v),
            Err(e) => errors.push(e.at_line(item.line).in_index(i).in_key(&s.name)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Builds and validates a config from a document's settings.
pub(crate) fn build(settings: &[Setting], source: &Path) -> Result<Config, ConfigError> {
    let mut cfg = Config {
        source: source.to_path_buf(),
        ..Config::default()
    };
    let mut errors: Vec<DeError> = Vec::new();
    for s in settings {
        let r = match s.name.as_str() {
            "global" => section(s).map(|v| cfg.global = v),
            "metric" => section::<ChannelFile>(s).map(|v| cfg.metric = v.over(&cfg.metric)),
            "event" => section(s).map(|v| cfg.event = v),
            "meta" => section::<ChannelFile>(s).map(|v| cfg.meta = v.over(&cfg.meta)),
            "ingress" => section(s).map(|v| cfg.ingress = v),
            "egress" => section(s).map(|v| cfg.egress = v),
            "imdb" => section(s).map(|v| cfg.imdb = v),
            "web_server" => section(s).map(|v| cfg.web_server = v),
            "rest_api_server" => section(s).map(|v| cfg.rest_api_server = v),
            "kafka" => section(s).map(|v| cfg.kafka = v),
            "logs" => section(s).map(|v| cfg.logs = v),
            "supervisor" => section(s).map(|v| cfg.supervisor = v),
            "probes" => list(s).map(|v| cfg.probes = v),
            "extend_probes" => list(s).map(|v| cfg.extend_probes = v),
            other => Err(vec![DeError {
                message: format!("unknown section `{other}`, expected one of {SECTIONS}"),
                line: Some(s.line),
                path: other.to_string(),
            }]),
        };
        if let Err(e) = r {
            errors.extend(e);
        }
    }
    if !errors.is_empty() {
        let problems = errors
            .into_iter()
            .map(|e| ConfigProblem::from_de(source, e))
            .collect();
        return Err(ConfigError::sorted(problems));
    }

    cfg.global.log_level = cfg.global.log_level.to_ascii_lowercase();
    let config_dir = source.parent().unwrap_or(Path::new(""));
    let meta_dir_written = libconfig::lookup(settings, "global")
        .and_then(|g| g.value.as_group())
        .is_some_and(|g| libconfig::lookup(g, "meta_dir").is_some());
    cfg.global.meta_dir = if meta_dir_written {
        config_dir.join(&cfg.global.meta_dir)
    } else {
        default_meta_dir(Some(config_dir))
    };
    cfg.locations = super::Locations::from_settings(settings);
    cfg.validate()?;
    Ok(cfg)
}
