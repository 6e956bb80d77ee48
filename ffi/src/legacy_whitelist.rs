//! `whitelist_config.h` of the legacy 1.x headers: reads the application
//! whitelist `gala-gopher-app.conf`, written in libconfig syntax:
//!
//! ```text
//! application =
//! (
//!     { comm = "^java$"; cmdline = "kafka"; },
//!     { comm = "nginx";  cmdline = ""; }
//! );
//! ```
//!
//! The parser reads the whole libconfig grammar (settings with `=` or `:`,
//! groups, lists, arrays, strings with escapes and adjacent concatenation,
//! numbers, booleans, the three comment styles) so that other settings in
//! the file are skipped, then takes the `application` list. Any problem is
//! logged as `<file>:<line>: <what was expected>` and the call fails.

use std::ffi::{c_char, c_int, CStr};
use std::path::Path;

use crate::boundary::guard_or;
use crate::legacy::log;
use crate::log::gopher_log_level;

/// `PROC_NAME_MAX`: bytes of `comm`, its NUL included.
pub const PROC_NAME_MAX: usize = 64;
/// `PROC_CMD_LINE_MAX`: bytes of `cmd_line`, its NUL included.
pub const PROC_CMD_LINE_MAX: usize = 128;
/// `PROC_MAX_RANGE`: most entries.
pub const PROC_MAX_RANGE: usize = 64;

/// `ApplicationConfig`.
#[repr(C)]
#[derive(Debug)]
pub struct ApplicationConfig {
    /// Regex of the process name, NUL-terminated.
    pub comm: [c_char; PROC_NAME_MAX],
    /// Substring of the command line, NUL-terminated.
    pub cmd_line: [c_char; PROC_CMD_LINE_MAX],
}

/// `ApplicationsConfig`.
#[repr(C)]
#[derive(Debug)]
pub struct ApplicationsConfig {
    /// Entries used in `apps`.
    pub apps_num: c_int,
    /// The entries, each allocated with `malloc`.
    pub apps: [*mut ApplicationConfig; PROC_MAX_RANGE],
}

/// One whitelist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// `comm`.
    pub comm: String,
    /// `cmdline`.
    pub cmdline: String,
}

/// A parsed libconfig value, with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Other,
    Group(Vec<(String, usize, Value)>),
    List(Vec<(usize, Value)>),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

type PResult<T> = Result<T, (usize, String)>;

impl<'a> Parser<'a> {
    fn err<T>(&self, what: impl Into<String>) -> PResult<T> {
        Err((self.line, what.into()))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_ws(&mut self) -> PResult<()> {
        loop {
            match (self.peek(), self.s.get(self.pos + 1).copied()) {
                (Some(c), _) if c.is_ascii_whitespace() => {
                    self.bump();
                }
                (Some(b'#'), _) | (Some(b'/'), Some(b'/')) => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.bump();
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    let start = self.line;
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                return Err((
                                    start,
                                    "a comment `/*` that is never closed by `*/`".into(),
                                ))
                            }
                            Some(b'*') if self.peek() == Some(b'/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn name(&mut self) -> PResult<String> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => {}
            Some(b'@') => {
                return self.err("`@include` or another directive (not supported in a whitelist)")
            }
            Some(c) => return self.err(format!("a setting name, found `{}`", char::from(c))),
            None => return self.err("a setting name, found the end of the file"),
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'*')
        {
            self.bump();
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    /// `name (=|:) value [;|,]`
    fn setting(&mut self) -> PResult<(String, usize, Value)> {
        let name = self.name()?;
        let line = self.line;
        self.skip_ws()?;
        match self.bump() {
            Some(b'=' | b':') => {}
            _ => return Err((line, format!("`=` or `:` after `{name}`"))),
        }
        self.skip_ws()?;
        let value = self.value()?;
        self.skip_ws()?;
        if matches!(self.peek(), Some(b';' | b',')) {
            self.bump();
        }
        Ok((name, line, value))
    }

    fn value(&mut self) -> PResult<Value> {
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'{') => {
                self.bump();
                let mut members = Vec::new();
                loop {
                    self.skip_ws()?;
                    match self.peek() {
                        Some(b'}') => {
                            self.bump();
                            return Ok(Value::Group(members));
                        }
                        None => return self.err("`}` closing a group, found the end of the file"),
                        _ => members.push(self.setting()?),
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.bump();
                let mut items = Vec::new();
                loop {
                    self.skip_ws()?;
                    if self.peek() == Some(close) {
                        self.bump();
                        return Ok(Value::List(items));
                    }
                    let line = self.line;
                    items.push((line, self.value()?));
                    self.skip_ws()?;
                    match self.peek() {
                        Some(b',') => {
                            self.bump();
                        }
                        Some(c) if c == close => {}
                        Some(c) => {
                            return self.err(format!(
                                "`,` or `{}` after a list element, found `{}`",
                                char::from(close),
                                char::from(c)
                            ))
                        }
                        None => {
                            return self.err(format!(
                                "`{}` closing a list, found the end of the file",
                                char::from(close)
                            ))
                        }
                    }
                }
            }
            Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') => {
                let start = self.pos;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.'))
                {
                    self.bump();
                }
                let word = String::from_utf8_lossy(&self.s[start..self.pos]).to_ascii_lowercase();
                let number = word.trim_end_matches('l').replace("0x", "");
                let is_number = !number.is_empty()
                    && (word.starts_with("0x") && u64::from_str_radix(&number, 16).is_ok()
                        || number.parse::<f64>().is_ok());
                if word == "true" || word == "false" || is_number {
                    Ok(Value::Other)
                } else {
                    self.err(format!(
                        "a value (string, number, true/false, group, list), found `{word}`"
                    ))
                }
            }
            Some(c) => self.err(format!("a value, found `{}`", char::from(c))),
            None => self.err("a value, found the end of the file"),
        }
    }

    /// One or more adjacent `"..."` literals.
    fn string(&mut self) -> PResult<String> {
        let mut out = Vec::new();
        while self.peek() == Some(b'"') {
            let start = self.line;
            self.bump();
            loop {
                match self.bump() {
                    None => return Err((start, "a closing `\"` of this string".into())),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        match self.bump() {
                            Some(b'n') => out.push(b'\n'),
                            Some(b't') => out.push(b'\t'),
                            Some(b'r') => out.push(b'\r'),
                            Some(b'f') => out.push(0x0c),
                            Some(b'\\') => out.push(b'\\'),
                            Some(b'"') => out.push(b'"'),
                            Some(b'x') => {
                                let hex = self.s.get(self.pos..self.pos + 2).unwrap_or_default();
                                let byte = std::str::from_utf8(hex)
                                    .ok()
                                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                                match byte {
                                    Some(b) => {
                                        self.bump();
                                        self.bump();
                                        out.push(b);
                                    }
                                    None => return self.err("two hex digits after `\\x`"),
                                }
                            }
                            _ => return self.err(
                                "an escape `\\n`, `\\t`, `\\r`, `\\f`, `\\\\`, `\\\"` or `\\xNN`",
                            ),
                        }
                    }
                    Some(c) => out.push(c),
                }
            }
            // Adjacent literals join ("a" "b" is "ab").
            let save = (self.pos, self.line);
            self.skip_ws()?;
            if self.peek() != Some(b'"') {
                (self.pos, self.line) = save;
            }
        }
        String::from_utf8(out).or_else(|_| self.err("a string of valid UTF-8"))
    }

    fn file(&mut self) -> PResult<Vec<(String, usize, Value)>> {
        let mut settings = Vec::new();
        loop {
            self.skip_ws()?;
            if self.peek().is_none() {
                return Ok(settings);
            }
            settings.push(self.setting()?);
        }
    }
}

fn string_member(
    members: &[(String, usize, Value)],
    key: &str,
    max: usize,
    line: usize,
) -> PResult<String> {
    match members.iter().find(|(n, _, _)| n == key) {
        None => Err((line, format!("a string `{key}` in this application entry"))),
        Some((_, l, Value::Str(s))) => {
            if s.len() >= max {
                Err((
                    *l,
                    format!("`{key}` of at most {} bytes, found {}", max - 1, s.len()),
                ))
            } else if s.contains('\0') {
                Err((*l, format!("`{key}` without a NUL byte")))
            } else {
                Ok(s.clone())
            }
        }
        Some((_, l, _)) => Err((*l, format!("`{key}` to be a string"))),
    }
}

/// Parses the text of a whitelist file. The error is `(line, expected)`.
pub fn parse_apps(text: &[u8]) -> Result<Vec<App>, (usize, String)> {
    let mut p = Parser {
        s: text,
        pos: 0,
        line: 1,
    };
    let settings = p.file()?;
    let Some((_, line, value)) = settings.iter().find(|(n, _, _)| n == "application") else {
        return Err((
            1,
            "a setting `application = ( { comm = \"..\"; cmdline = \"..\"; }, ... )`".into(),
        ));
    };
    let Value::List(items) = value else {
        return Err((
            *line,
            "`application` to be a list `( ... )` of groups".into(),
        ));
    };
    if items.len() > PROC_MAX_RANGE {
        return Err((
            *line,
            format!(
                "at most {PROC_MAX_RANGE} applications, found {}",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .map(|(l, item)| match item {
            Value::Group(members) => Ok(App {
                comm: string_member(members, "comm", PROC_NAME_MAX, *l)?,
                cmdline: string_member(members, "cmdline", PROC_CMD_LINE_MAX, *l)?,
            }),
            _ => Err((
                *l,
                "an application entry `{ comm = \"..\"; cmdline = \"..\"; }`".into(),
            )),
        })
        .collect()
}

/// Reads and parses the whitelist file at `path`; the error is the message
/// to log, naming the file and line.
pub fn read_apps(path: &Path) -> Result<Vec<App>, String> {
    let text = std::fs::read(path)
        .map_err(|e| format!("whitelist {}: cannot read: {e}", path.display()))?;
    parse_apps(&text)
        .map_err(|(line, what)| format!("whitelist {}:{line}: expected {what}", path.display()))
}

fn copy_c(dst: &mut [c_char], s: &str) {
    for (d, b) in dst.iter_mut().zip(s.bytes()) {
        *d = b as c_char;
    }
}

/// Allocates the C structures for `apps` with `calloc`, or NULL.
fn to_c(apps: &[App]) -> *mut ApplicationsConfig {
    // SAFETY: plain allocation; all-zero bytes are a valid value of both
    // structs (NULL pointers, zero counts, empty strings).
    let conf =
        unsafe { libc::calloc(1, size_of::<ApplicationsConfig>()) }.cast::<ApplicationsConfig>();
    if conf.is_null() {
        return conf;
    }
    for app in apps.iter().take(PROC_MAX_RANGE) {
        // SAFETY: as above.
        let one =
            unsafe { libc::calloc(1, size_of::<ApplicationConfig>()) }.cast::<ApplicationConfig>();
        if one.is_null() {
            // SAFETY: `conf` came from calloc and holds only what we added.
            unsafe { whitelist_config_destroy(conf) };
            return std::ptr::null_mut();
        }
        // SAFETY: `one` and `conf` are valid, exclusively ours; apps_num <
        // PROC_MAX_RANGE by take().
        unsafe {
            copy_c(&mut (*one).comm, &app.comm);
            copy_c(&mut (*one).cmd_line, &app.cmdline);
            let n = (*conf).apps_num as usize;
            (*conf).apps[n] = one;
            (*conf).apps_num += 1;
        }
    }
    conf
}

/// `parse_whitelist_config(conf, path)`: see include/legacy/whitelist_config.h.
///
/// # Safety
/// `conf` is NULL or writable; `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn parse_whitelist_config(
    conf: *mut *mut ApplicationsConfig,
    path: *const c_char,
) -> c_int {
    guard_or(-1, || {
        if conf.is_null() {
            log(
                gopher_log_level::GOPHER_LOG_ERROR,
                "parse_whitelist_config: conf is NULL",
            );
            return -1;
        }
        // SAFETY: checked non-NULL; the caller gives a writable pointer.
        unsafe { *conf = std::ptr::null_mut() };
        if path.is_null() {
            log(
                gopher_log_level::GOPHER_LOG_ERROR,
                "parse_whitelist_config: path is NULL",
            );
            return -1;
        }
        // SAFETY: non-NULL C string, promised by the caller.
        let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
        let path = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes));
        match read_apps(path) {
            Ok(apps) => {
                let c = to_c(&apps);
                if c.is_null() {
                    log(
                        gopher_log_level::GOPHER_LOG_ERROR,
                        "parse_whitelist_config: out of memory",
                    );
                    return -1;
                }
                // SAFETY: as above.
                unsafe { *conf = c };
                0
            }
            Err(msg) => {
                log(gopher_log_level::GOPHER_LOG_ERROR, &msg);
                -1
            }
        }
    })
}

/// `whitelist_config_destroy(conf)`: frees what `parse_whitelist_config`
/// allocated; NULL is ignored.
///
/// # Safety
/// `conf` is NULL or came from `parse_whitelist_config` and is not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn whitelist_config_destroy(conf: *mut ApplicationsConfig) {
    if conf.is_null() {
        return;
    }
    // SAFETY: allocated by to_c; the caller hands it over.
    unsafe {
        let n = usize::try_from((*conf).apps_num)
            .unwrap_or(0)
            .min(PROC_MAX_RANGE);
        let apps: &[*mut ApplicationConfig; PROC_MAX_RANGE] = &(*conf).apps;
        for app in &apps[..n] {
            libc::free(app.cast());
        }
        libc::free(conf.cast());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(comm: &str, cmdline: &str) -> App {
        App {
            comm: comm.into(),
            cmdline: cmdline.into(),
        }
    }

    #[test]
    fn reads_the_legacy_file() {
        let text = br#"
# gala-gopher-app.conf
version = "1.0.0";  // other settings are skipped
limits: { max = 10; ratio = 0.5; on = true; list = [1, 2, 0x10]; };
application =
(
    { comm = "^java$"; cmdline = "kafka" "Server"; },   /* joined */
    {
        comm: "nginx"
        cmdline: ""
    },
);
"#;
        assert_eq!(
            parse_apps(text),
            Ok(vec![app("^java$", "kafkaServer"), app("nginx", "")])
        );
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        let cases: [(&[u8], usize, &str); 8] = [
            (b"application = (\n { comm = \"a\"; }\n);", 2, "`cmdline`"),
            (
                b"application = (\n { comm = 1; cmdline = \"\"; }\n);",
                2,
                "`comm` to be a string",
            ),
            (b"x = 1;\n", 1, "a setting `application"),
            (b"application = \"a\";", 1, "to be a list"),
            (
                b"application = (\n { comm = \"a\" cmdline = \"\"; \n",
                3,
                "closing a group",
            ),
            (
                b"\n\napplication = ( { comm = \"a ; } );",
                3,
                "closing `\"`",
            ),
            (b"application = ( 1 2 );", 1, "`,` or `)`"),
            (b"/* open\napplication = ();", 1, "never closed"),
        ];
        for (text, line, want) in cases {
            let (l, what) = parse_apps(text).expect_err("must fail");
            assert_eq!(l, line, "{what}");
            assert!(what.contains(want), "{what:?} lacks {want:?}");
        }
        let long = format!(
            "application = ( {{ comm = \"{}\"; cmdline = \"\"; }} );",
            "x".repeat(64)
        );
        assert!(parse_apps(long.as_bytes())
            .expect_err("too long")
            .1
            .contains("at most 63 bytes"));
        let many = format!(
            "application = ( {} );",
            vec!["{comm=\"a\";cmdline=\"\";}"; 65].join(",")
        );
        assert!(parse_apps(many.as_bytes())
            .expect_err("too many")
            .1
            .contains("at most 64"));
    }
}
