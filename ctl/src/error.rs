//! What can go wrong, and the exit code of each.

use std::fmt;

/// Exit code: done.
pub const EXIT_OK: i32 = 0;
/// Exit code: the agent answered with an error (its message is printed).
pub const EXIT_REFUSED: i32 = 1;
/// Exit code: the command line or its input (JSON, file) is wrong.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the agent could not be reached (connect, TLS, timeout, a
/// reply that is not HTTP).
pub const EXIT_UNREACHABLE: i32 = 3;

/// An error of a `gopher-ctl` run.
#[derive(Debug)]
pub enum CtlError {
    /// Bad command line or input: says what and what was expected.
    Usage(String),
    /// The agent could not be reached or did not speak HTTP.
    Unreachable(String),
    /// The agent said no.
    Refused {
        /// HTTP status.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// The agent's message (its reply body).
        message: String,
    },
    /// Writing the output failed (other than a closed pipe).
    Output(std::io::Error),
}

impl CtlError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::Usage(_) => EXIT_USAGE,
            CtlError::Unreachable(_) => EXIT_UNREACHABLE,
            CtlError::Refused { .. } | CtlError::Output(_) => EXIT_REFUSED,
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Usage(m) | CtlError::Unreachable(m) => f.write_str(m),
            CtlError::Refused {
                status,
                reason,
                message,
            } => {
                let head = format!("the agent answered {status} {reason}");
                let message = message.trim();
                if message.is_empty() {
                    f.write_str(head.trim_end())
                } else {
                    write!(f, "{}: {message}", head.trim_end())
                }
            }
            CtlError::Output(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

impl std::error::Error for CtlError {}

/// A short lower-case text for an I/O error (`connection refused`, not
/// `Connection refused (os error 111)`).
pub fn io_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::NotFound => "no such file or directory".into(),
        K::PermissionDenied => "permission denied".into(),
        K::TimedOut | K::WouldBlock => "timed out".into(),
        K::ConnectionReset => "connection reset by the agent".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::BrokenPipe => "the agent closed the connection".into(),
        K::AddrNotAvailable => "address not available".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}
