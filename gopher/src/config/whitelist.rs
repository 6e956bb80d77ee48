//! The legacy 1.x application whitelist, `gala-gopher-app.conf`:
//!
//! ```text
//! application = (
//!     { comm = "<regex>"; cmdline = "<substring>"; },
//!     ...
//! );
//! ```
//!
//! The 1.x agent did not read it itself: its probes did, from the path given
//! with `-w <path>` in their `param` (`/opt/gala-gopher/gala-gopher-app.conf`
//! in the shipped configs, for the native `system_infos` and the extend probe
//! `task`). This agent reads and checks it when it loads its config, so that
//! a bad file is an error at start, naming the file and line; the result is
//! [`super::Config::app_whitelist`], with its path, for probes that take it.
//!
//! Where the file is found, first match wins:
//! 1. `global.app_whitelist` (a key of this agent; relative to the config
//!    file's directory); the file must exist;
//! 2. the first `-w <path>` in the `param` of a probe or extend probe that is
//!    not switched off; a missing file there is a warning (nothing is loaded);
//! 3. `gala-gopher-app.conf` beside the config file, when it exists.
//!
//! `comm` is a POSIX extended regular expression (what the legacy C code
//! compiled with `regcomp`), searched in the process name: write `^redis$`
//! for that name only. `cmdline` is a substring of the command line; empty
//! or absent means any command line. `comm` must not be empty.

use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};

use super::ConfigProblem;
use crate::libconfig::{self, ValueKind};

/// The file name the legacy packages installed beside `gala-gopher.conf`.
pub const FILE_NAME: &str = "gala-gopher-app.conf";

/// A loaded, checked whitelist.
#[derive(Debug, Clone, PartialEq)]
pub struct AppWhitelist {
    /// The file read (probes of the legacy style take it as `-w <path>`).
    pub path: PathBuf,
    /// Its entries, in file order.
    pub apps: Vec<AppRule>,
}

impl AppWhitelist {
    /// Whether a process (its `comm` and command line) is on the list.
    pub fn matches(&self, comm: &str, cmdline: &str) -> bool {
        self.apps.iter().any(|a| a.matches(comm, cmdline))
    }
}

/// One `{ comm; cmdline; }` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRule {
    /// The process-name pattern.
    pub comm: PosixRegex,
    /// A substring the command line must hold (`""`: any).
    pub cmdline: String,
    /// Line of the entry in the file.
    pub line: usize,
}

impl AppRule {
    /// Whether a process matches this entry.
    pub fn matches(&self, comm: &str, cmdline: &str) -> bool {
        self.comm.is_match(comm) && cmdline.contains(self.cmdline.as_str())
    }
}

/// A compiled POSIX extended regular expression (libc `regcomp` with
/// `REG_EXTENDED | REG_NOSUB`), as the legacy C probes used.
pub struct PosixRegex {
    pattern: String,
    /// `None` only for a copy whose pattern the C library refused to compile
    /// again (it matches nothing).
    compiled: Option<Box<libc::regex_t>>,
}

// SAFETY: a compiled regex_t is only read by regexec, which POSIX requires to
// be safe to call from several threads at once; regfree runs in Drop, with
// exclusive access.
unsafe impl Send for PosixRegex {}
// SAFETY: as above: shared use is regexec only.
unsafe impl Sync for PosixRegex {}

impl PosixRegex {
    /// Compiles a pattern; the error is the C library's message.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let c = CString::new(pattern).map_err(|_| "the pattern holds a NUL byte".to_string())?;
        // SAFETY: regex_t is a plain C struct; all zeroes is a valid value to
        // hand to regcomp, which initializes it.
        let mut compiled: Box<libc::regex_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `compiled` is a valid, exclusively owned regex_t and `c` a
        // NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::regcomp(
                &mut *compiled,
                c.as_ptr(),
                libc::REG_EXTENDED | libc::REG_NOSUB,
            )
        };
        if rc != 0 {
            let mut buf = [0u8; 256];
            // SAFETY: regerror writes at most buf.len() bytes, NUL-terminated,
            // about the regex_t that regcomp just filled in.
            unsafe {
                libc::regerror(rc, &*compiled, buf.as_mut_ptr().cast(), buf.len());
            }
            // A failed regcomp frees what it allocated: no regfree here.
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return Err(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
        Ok(Self {
            pattern: pattern.to_string(),
            compiled: Some(compiled),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern matches somewhere in `text` (a text with a NUL
    /// byte is matched up to it, as C would see it).
    pub fn is_match(&self, text: &str) -> bool {
        let text = text.split('\0').next().unwrap_or_default();
        let (Ok(c), Some(compiled)) = (CString::new(text), &self.compiled) else {
            return false;
        };
        // SAFETY: `compiled` was filled in by a successful regcomp and is
        // only read; `c` is NUL-terminated; with REG_NOSUB no match array is
        // written (nmatch 0, null pmatch).
        let rc = unsafe { libc::regexec(&**compiled, c.as_ptr(), 0, std::ptr::null_mut(), 0) };
        rc == 0
    }
}

impl Clone for PosixRegex {
    fn clone(&self) -> Self {
        // The pattern compiled once, so it compiles again; if the C library
        // refused it anyway, the copy matches nothing rather than panicking.
        Self::new(&self.pattern).unwrap_or_else(|_| Self {
            pattern: self.pattern.clone(),
            compiled: None,
        })
    }
}

impl Drop for PosixRegex {
    fn drop(&mut self) {
        if let Some(compiled) = &mut self.compiled {
            // SAFETY: filled in by a successful regcomp, freed once.
            unsafe { libc::regfree(&mut **compiled) };
        }
    }
}

impl PartialEq for PosixRegex {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl fmt::Debug for PosixRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PosixRegex({:?})", self.pattern)
    }
}

/// Parses a whitelist text; `path` names the file in problems. Every
/// problem is returned (syntax errors, unknown keys, empty or bad `comm`),
/// each with the file and line.
pub fn parse(src: &str, path: &Path) -> Result<AppWhitelist, Vec<ConfigProblem>> {
    let (settings, errors) = libconfig::parse_recovering(src);
    let mut problems: Vec<ConfigProblem> = errors
        .into_iter()
        .map(|e| {
            ConfigProblem::new(
                path,
                Some(e.line),
                format!("column {}: {}", e.column, e.message),
            )
        })
        .collect();
    let mut apps = Vec::new();
    for s in &settings {
        if s.name != "application" {
            problems.push(ConfigProblem::at_key(
                path,
                Some(s.line),
                s.name.clone(),
                format!("unknown setting `{}`, expected `application`", s.name),
            ));
            continue;
        }
        let Some(items) = s.value.as_seq() else {
            problems.push(ConfigProblem::at_key(
                path,
                Some(s.value.line),
                "application",
                format!(
                    "expected a list of groups `( {{ comm = \"...\"; cmdline = \"...\"; }}, ... )`, found {}",
                    s.value.kind.describe()
                ),
            ));
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let at = format!("application[{i}]");
            let Some(group) = item.as_group() else {
                problems.push(ConfigProblem::at_key(
                    path,
                    Some(item.line),
                    at,
                    format!(
                        "expected a group `{{ comm = \"...\"; cmdline = \"...\"; }}`, found {}",
                        item.kind.describe()
                    ),
                ));
                continue;
            };
            let mut comm: Option<(String, usize)> = None;
            let mut cmdline = String::new();
            let mut ok = true;
            for kv in group {
                let key = format!("{at}.{}", kv.name);
                match (kv.name.as_str(), &kv.value.kind) {
                    ("comm", ValueKind::Str(v)) => comm = Some((v.clone(), kv.line)),
                    ("cmdline", ValueKind::Str(v)) => cmdline = v.clone(),
                    ("comm" | "cmdline", other) => {
                        ok = false;
                        problems.push(ConfigProblem::at_key(
                            path,
                            Some(kv.line),
                            key,
                            format!("expected a string, found {}", other.describe()),
                        ));
                    }
                    (name, _) => {
                        ok = false;
                        problems.push(ConfigProblem::at_key(
                            path,
                            Some(kv.line),
                            key,
                            format!("unknown key `{name}`, expected `comm` or `cmdline`"),
                        ));
                    }
                }
            }
            let Some((pattern, line)) = comm.filter(|(c, _)| !c.is_empty()) else {
                if ok {
                    problems.push(ConfigProblem::at_key(
                        path,
                        Some(item.line),
                        format!("{at}.comm"),
                        "expected a process-name pattern: every entry needs a non-empty `comm`",
                    ));
                }
                continue;
            };
            match PosixRegex::new(&pattern) {
                Ok(comm) if ok => apps.push(AppRule {
                    comm,
                    cmdline,
                    line: item.line,
                }),
                Ok(_) => {}
                Err(e) => problems.push(ConfigProblem::at_key(
                    path,
                    Some(line),
                    format!("{at}.comm"),
                    format!("`{pattern}` is not a valid POSIX extended regular expression: {e}"),
                )),
            }
        }
    }
    if problems.is_empty() {
        Ok(AppWhitelist {
            path: path.to_path_buf(),
            apps,
        })
    } else {
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(problems)
    }
}

/// Reads and parses a whitelist file.
pub fn load(path: &Path) -> Result<AppWhitelist, Vec<ConfigProblem>> {
    match std::fs::read_to_string(path) {
        Ok(src) => parse(&src, path),
        Err(e) => Err(vec![ConfigProblem::new(
            path,
            None,
            format!("cannot read the application whitelist: {e}"),
        )]),
    }
}

/// Finds the whitelist as the module doc says, loads it into
/// `cfg.app_whitelist`, and resolves `global.app_whitelist` against the
/// config file's directory. Problems of the file go to `problems`; a missing
/// file named by `-w` is a warning.
pub(crate) fn resolve(cfg: &mut super::Config, problems: &mut Vec<ConfigProblem>) {
    let config_dir = cfg.source.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut load_into = |cfg: &mut super::Config, path: &Path| match load(path) {
        Ok(w) => cfg.app_whitelist = Some(w),
        Err(e) => problems.extend(e),
    };
    if let Some(written) = cfg.global.app_whitelist.clone() {
        let path = config_dir.join(written);
        cfg.global.app_whitelist = Some(path.clone());
        load_into(cfg, &path);
        return;
    }
    let named: Vec<(String, String)> = cfg
        .probes
        .iter()
        .enumerate()
        .filter(|(_, p)| p.switch != super::Switch::Off)
        .filter_map(|(i, p)| {
            super::compat::whitelist_flag(&p.param)
                .map(|w| (format!("probes[{i}].param"), w.to_string()))
        })
        .chain(
            cfg.extend_probes
                .iter()
                .enumerate()
                .filter(|(_, p)| p.switch != super::Switch::Off)
                .filter_map(|(i, p)| {
                    super::compat::whitelist_flag(&p.param)
                        .map(|w| (format!("extend_probes[{i}].param"), w.to_string()))
                }),
        )
        .collect();
    if let Some((key, first)) = named.first() {
        for (other_key, other) in &named[1..] {
            if other != first {
                let line = cfg.locations.line(other_key);
                let w = ConfigProblem::at_key(
                    &cfg.source,
                    line,
                    other_key.clone(),
                    format!(
                        "names the application whitelist `{other}`, but `{key}` names `{first}` first: this agent \
                         loads `{first}` (the probe itself still gets its own `-w`)"
                    ),
                );
                cfg.warnings.0.push(w);
            }
        }
        let path = config_dir.join(first);
        if path.exists() {
            load_into(cfg, &path);
        } else {
            let line = cfg.locations.line(key);
            let w = ConfigProblem::at_key(
                &cfg.source,
                line,
                key.clone(),
                format!(
                    "`-w {first}` names the application whitelist, which does not exist: no whitelist is loaded \
                     (the probes still get their `-w` as written)"
                ),
            );
            cfg.warnings.0.push(w);
        }
        return;
    }
    let beside = config_dir.join(FILE_NAME);
    if beside.is_file() {
        load_into(cfg, &beside);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/cfg/gala-gopher-app.conf";

    fn errs(src: &str) -> Vec<String> {
        match parse(src, Path::new(FILE)) {
            Ok(w) => panic!("unexpectedly valid: {w:?}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_good_file_loads_into_typed_entries() {
        let src = "# processes to watch\napplication =\n(\n    {\n        comm = \"^redis(-server)?$\",\n        \
                   cmdline = \"\";\n    },\n    { comm = \"java\"; cmdline = \"kafka.Kafka\"; },\n    \
                   { comm = \"nginx\"; }\n);\n";
        let w = match parse(src, Path::new(FILE)) {
            Ok(w) => w,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(w.path, Path::new(FILE));
        let summary: Vec<(&str, &str, usize)> = w
            .apps
            .iter()
            .map(|a| (a.comm.as_str(), a.cmdline.as_str(), a.line))
            .collect();
        assert_eq!(
            summary,
            [
                ("^redis(-server)?$", "", 4),
                ("java", "kafka.Kafka", 8),
                ("nginx", "", 9)
            ]
        );
        assert!(w.matches("redis-server", "/usr/bin/redis-server *:6379"));
        assert!(w.matches("redis", ""));
        assert!(!w.matches("redis-cli", "redis-cli ping"));
        assert!(w.matches("java", "java -cp x kafka.Kafka server.properties"));
        assert!(!w.matches("java", "java -jar app.jar"));
        // Searched, not anchored: a plain name matches inside a longer one.
        assert!(w.matches("nginx-worker", ""));
        assert!(!w.matches("bash", "bash"));
        // A copy matches the same way.
        let copy = w.clone();
        assert_eq!(copy, w);
        assert!(copy.matches("redis", ""));
    }

    #[test]
    fn an_empty_list_is_valid() {
        let w = parse("application = ();", Path::new(FILE));
        assert_eq!(w.map(|w| w.apps.len()), Ok(0));
    }

    #[test]
    fn a_bad_regex_names_the_file_and_line() {
        let e = errs("application = (\n  { comm = \"ok\"; },\n  { comm = \"redis(\";\n    cmdline = \"\"; }\n);");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "/cfg/gala-gopher-app.conf:3: key `application[1].comm`: `redis(` is not a valid POSIX extended \
                 regular expression: "
            ),
            "{e:?}"
        );
    }

    #[test]
    fn bad_syntax_and_bad_entries_are_all_reported() {
        assert_eq!(
            errs("application = (\n  { comm = \"a\" cmdline = \"b\"; },\n  { comm = \"c\"; }\n"),
            [
                "/cfg/gala-gopher-app.conf:4: column 1: expected `,` or `)` in the list opened at line 1, found end \
                 of file"
            ]
        );
        assert_eq!(
            errs(
                "application = (\n  { comm = \"\"; },\n  { cmdline = \"x\"; },\n  { comm = 5; },\n  \
                 { comm = \"a\"; pid = 1; },\n  \"b\"\n);\nprocesses = ();"
            ),
            [
                "/cfg/gala-gopher-app.conf:2: key `application[0].comm`: expected a process-name pattern: every entry \
                 needs a non-empty `comm`",
                "/cfg/gala-gopher-app.conf:3: key `application[1].comm`: expected a process-name pattern: every entry \
                 needs a non-empty `comm`",
                "/cfg/gala-gopher-app.conf:4: key `application[2].comm`: expected a string, found an integer",
                "/cfg/gala-gopher-app.conf:5: key `application[3].pid`: unknown key `pid`, expected `comm` or \
                 `cmdline`",
                "/cfg/gala-gopher-app.conf:6: key `application[4]`: expected a group `{ comm = \"...\"; cmdline = \
                 \"...\"; }`, found a string",
                "/cfg/gala-gopher-app.conf:8: key `processes`: unknown setting `processes`, expected `application`",
            ]
        );
        assert_eq!(
            errs("application = { comm = \"a\"; };"),
            [
                "/cfg/gala-gopher-app.conf:1: key `application`: expected a list of groups `( { comm = \"...\"; \
                 cmdline = \"...\"; }, ... )`, found a group"
            ]
        );
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let e = load(Path::new("/nonexistent/gala-gopher-app.conf")).map(|w| w.apps.len());
        let e = e.map_err(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert_eq!(
            e,
            Err(vec![
                "/nonexistent/gala-gopher-app.conf: cannot read the application whitelist: No such file or \
                 directory (os error 2)"
                    .to_string()
            ])
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC*") {
            let _ = parse(&s, Path::new(FILE));
        }

        #[test]
        fn any_pattern_compiles_or_is_refused_without_panicking(p in "\\PC{0,40}", t in "\\PC{0,40}") {
            if let Ok(r) = PosixRegex::new(&p) {
                let _ = r.is_match(&t);
            }
        }
    }
}
