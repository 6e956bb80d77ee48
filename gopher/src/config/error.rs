//! Config errors: every problem names the file, the line (when known) and the key.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::libconfig::DeError;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The config file.
    pub file: PathBuf,
    /// Line (1-based), when known.
    pub line: Option<usize>,
    /// Key path, e.g. `web_server.port` or `probes[2].param`, when the problem is about one key.
    pub key: Option<String>,
    /// What was expected, and what was found.
    pub message: String,
}

impl ConfigProblem {
    /// A problem with no key (a syntax error, an unreadable file).
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
            key: None,
            message: message.into(),
        }
    }

    /// A problem about one key.
    pub fn at_key(
        file: &Path,
        line: Option<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
            key: Some(key.into()),
            message: message.into(),
        }
    }

    pub(crate) fn from_de(file: &Path, e: DeError) -> Self {
        let key = (!e.path.is_empty()).then_some(e.path);
        Self {
            file: file.to_path_buf(),
            line: e.line,
            key,
            message: e.message,
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file.as_os_str().is_empty(), self.line) {
            (false, Some(line)) => write!(f, "{}:{line}: ", self.file.display())?,
            (false, None) => write!(f, "{}: ", self.file.display())?,
            (true, Some(line)) => write!(f, "line {line}: ")?,
            (true, None) => {}
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with a config file, one problem per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in file order where lines are known.
    pub errors: Vec<ConfigProblem>,
}

impl ConfigError {
    /// An error of one problem.
    pub fn single(problem: ConfigProblem) -> Self {
        Self {
            errors: vec![problem],
        }
    }

    /// Sorts the problems by line (those without a line last), keeping the
    /// order of problems on the same line.
    pub(crate) fn sorted(mut errors: Vec<ConfigProblem>) -> Self {
        errors.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Self { errors }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}
