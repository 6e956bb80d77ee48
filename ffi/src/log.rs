//! Logging from a probe into the daemon's log.
//!
//! A message is one line `[<level>] <message>\n` on stderr, which the probe
//! host forwards into the daemon's log; [`parse_log_line`] is the daemon's
//! side of that format. Newlines and other control characters in a message
//! become spaces, so one call is always one line, and a message is cut at
//! [`GOPHER_MAX_LOG_MSG_LEN`] bytes so that the line goes out in one `write(2)`
//! that a pipe keeps whole (`PIPE_BUF`).

use std::ffi::{c_char, CStr};
use std::sync::Mutex;

use crate::boundary::{guard, status_of};
use crate::record::write_all_fd;
use crate::status::gopher_status;

/// Longest log message kept, in bytes; a longer one is cut and ends in
/// `...`.
pub const GOPHER_MAX_LOG_MSG_LEN: usize = 4000;

/// Serialises log lines of concurrent threads.
static STDERR_LOCK: Mutex<()> = Mutex::new(());

/// Severity of a log message.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[expect(non_camel_case_types, reason = "C name, emitted as-is into gopher.h")]
pub enum gopher_log_level {
    /// Details for debugging a probe.
    GOPHER_LOG_DEBUG = 0,
    /// Normal but noteworthy events.
    GOPHER_LOG_INFO = 1,
    /// Something unexpected that the probe worked around.
    GOPHER_LOG_WARN = 2,
    /// Data was lost or an operator must act.
    GOPHER_LOG_ERROR = 3,
}

impl gopher_log_level {
    /// Every level, lowest first.
    ///
    /// cbindgen:ignore
    pub const ALL: [Self; 4] = [
        Self::GOPHER_LOG_DEBUG,
        Self::GOPHER_LOG_INFO,
        Self::GOPHER_LOG_WARN,
        Self::GOPHER_LOG_ERROR,
    ];

    /// The level with numeric value `v`, if there is one.
    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|l| *l as u32 == v)
    }

    /// The name written between the brackets: `debug`, `info`, `warn` or
    /// `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GOPHER_LOG_DEBUG => "debug",
            Self::GOPHER_LOG_INFO => "info",
            Self::GOPHER_LOG_WARN => "warn",
            Self::GOPHER_LOG_ERROR => "error",
        }
    }
}

/// The stderr line for a message: `[level] message\n`, control characters
/// replaced by spaces, invalid UTF-8 replaced by U+FFFD, cut at
/// [`GOPHER_MAX_LOG_MSG_LEN`] bytes.
pub fn log_line(level: gopher_log_level, msg: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(msg);
    let mut out =
        Vec::with_capacity(level.as_str().len() + 4 + text.len().min(GOPHER_MAX_LOG_MSG_LEN));
    out.push(b'[');
    out.extend_from_slice(level.as_str().as_bytes());
    out.extend_from_slice(b"] ");
    let start = out.len();
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() - start + c.len_utf8() > GOPHER_MAX_LOG_MSG_LEN {
            out.extend_from_slice(b"...");
            break;
        }
        let mut buf = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    out.push(b'\n');
    out
}

/// Splits a line written by `gopher_log` (its trailing newline removed) into
/// its level and message. Returns `None` for any other line, which the
/// daemon may log as it is.
pub fn parse_log_line(line: &str) -> Option<(gopher_log_level, &str)> {
    let rest = line.strip_prefix('[')?;
    let (name, msg) = rest.split_once("] ")?;
    let level = gopher_log_level::ALL
        .into_iter()
        .find(|l| l.as_str() == name)?;
    Some((level, msg))
}

/// Writes one log line to fd 2 (Rust callers: the daemon's probe host).
pub fn write_log(level: gopher_log_level, msg: &[u8]) -> Result<(), gopher_status> {
    let line = log_line(level, msg);
    let _held = STDERR_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    write_all_fd(libc::STDERR_FILENO, &line)
}

/// Logs `msg` at `level` (a `gopher_log_level`) into the daemon's log.
///
/// `msg` is a NUL-terminated string, borrowed for the duration of the call.
/// Newlines and other control characters in it become spaces; invalid UTF-8
/// is replaced; a message over 4000 bytes is cut. The line goes to stderr
/// in one write, so messages of concurrent threads never interleave.
///
/// Returns `GOPHER_ERR_NULL` if `msg` is NULL, `GOPHER_ERR_INVALID_VALUE`
/// for an unknown level, `GOPHER_ERR_IO` if stderr cannot be written.
///
/// # Safety
/// `msg` must be NULL or point to a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn gopher_log(level: u32, msg: *const c_char) -> gopher_status {
    guard(|| {
        if msg.is_null() {
            return gopher_status::GOPHER_ERR_NULL;
        }
        let Some(level) = gopher_log_level::from_u32(level) else {
            return gopher_status::GOPHER_ERR_INVALID_VALUE;
        };
        // SAFETY: non-NULL, and the caller promises a NUL-terminated string
        // that outlives this call.
        let msg = unsafe { CStr::from_ptr(msg) };
        status_of(write_log(level, msg.to_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_one_line_per_message() {
        let got = log_line(gopher_log_level::GOPHER_LOG_WARN, b"disk\nfull\r!");
        assert_eq!(got, b"[warn] disk full !\n");
        let got = log_line(gopher_log_level::GOPHER_LOG_ERROR, b"bad \xff byte");
        assert_eq!(
            String::from_utf8(got).ok().as_deref(),
            Some("[error] bad \u{fffd} byte\n")
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let got = log_line(gopher_log_level::GOPHER_LOG_INFO, &[b'x'; 10_000]);
        assert_eq!(
            got.len(),
            "[info] ".len() + GOPHER_MAX_LOG_MSG_LEN + "...\n".len()
        );
        assert!(got.ends_with(b"x...\n"));
        // A multi-byte character is never split.
        let text = "é".repeat(3000);
        let got = log_line(gopher_log_level::GOPHER_LOG_INFO, text.as_bytes());
        assert!(std::str::from_utf8(&got).is_ok());
    }

    #[test]
    fn parse_is_the_inverse() {
        for level in gopher_log_level::ALL {
            let line = log_line(level, b"hello [x] world");
            let text = std::str::from_utf8(&line).expect("utf8");
            let text = text.trim_end_matches('\n');
            assert_eq!(parse_log_line(text), Some((level, "hello [x] world")));
            assert_eq!(gopher_log_level::from_u32(level as u32), Some(level));
        }
        assert_eq!(parse_log_line("plain text"), None);
        assert_eq!(parse_log_line("[fatal] x"), None);
        assert_eq!(gopher_log_level::from_u32(4), None);
    }

    #[test]
    fn refuses_null_and_unknown_levels() {
        // SAFETY: NULL is allowed and checked.
        let got = unsafe { gopher_log(gopher_log_level::GOPHER_LOG_INFO as u32, std::ptr::null()) };
        assert_eq!(got, gopher_status::GOPHER_ERR_NULL);
        // SAFETY: a valid C string.
        let got = unsafe { gopher_log(42, c"x".as_ptr()) };
        assert_eq!(got, gopher_status::GOPHER_ERR_INVALID_VALUE);
    }
}
