//! The legacy libconfig `gala-gopher.conf` (docs/compat.md §4).
//!
//! Its sections (`global`, `metric`, `event`, `meta`, `ingress`, `egress`,
//! `imdb`, `web_server`, `rest_api_server`, `kafka`, `logs`, and the lists
//! `probes` and `extend_probes`) map one to one onto the TOML sections, so a
//! legacy file is read with [`crate::libconfig`] and deserialized into the
//! same structs. The legacy spellings are accepted everywhere:
//! - `ssl_auth = "on"`/`"off"` as well as booleans;
//! - `""` for an unset path, user name, password or `start_check`;
//! - upper-case log levels (`"DEBUG"`).
//!
//! Keys of a legacy generation that this agent does not use are accepted
//! ([`Ignored`] fields, or typed fields that [`super::compat`] maps onto this
//! agent's settings) and either mapped or warned about once, naming the key
//! and why: see [`super::compat`] for the list, decided key by key for 21.09,
//! 1.x and 2.x. The legacy native probe names are mapped there too.
//! Any other unknown key is an error with its line. Every problem of a file
//! is reported at once: the reader resumes after a syntax error, and a bad
//! key does not hide the next one (see `source`).

use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny};

use super::ConfigProblem;
use crate::libconfig::{self, Setting};

/// A legacy key that is accepted and ignored. All values compare equal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ignored;

impl PartialEq for Ignored {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Ignored {}

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d)?;
        Ok(Ignored)
    }
}

/// Parses a libconfig document: the settings read, and every syntax error
/// as a problem (the reader resumes after each; a broken setting is left out).
pub(crate) fn parse(src: &str, source: &Path) -> (Vec<Setting>, Vec<ConfigProblem>) {
    let (settings, errors) = libconfig::parse_recovering(src);
    let problems = errors
        .into_iter()
        .map(|e| {
            ConfigProblem::new(
                source,
                Some(e.line),
                format!("column {}: {}", e.column, e.message),
            )
        })
        .collect();
    (settings, problems)
}

/// A boolean written `true`/`false` or, as the legacy agent did, `"on"`/`"off"`.
pub(crate) fn on_off<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("true, false, \"on\" or \"off\"")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v.to_ascii_lowercase().as_str() {
                "on" | "true" => Ok(true),
                "off" | "false" => Ok(false),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
    }
    d.deserialize_any(V)
}

/// An optional string where `""` means unset.
pub(crate) fn opt_nonempty_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// An optional path where `""` means unset.
pub(crate) fn opt_nonempty_path<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<PathBuf>, D::Error> {
    Ok(opt_nonempty_string(d)?.map(PathBuf::from))
}
