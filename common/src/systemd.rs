//! Running as a systemd service: `sd_notify(3)` messages to the service
//! manager (`READY=1`, `STATUS=`, `WATCHDOG=1`, `RELOADING=1`,
//! `STOPPING=1`) and logging natively to the journal, with priorities and
//! the `tracing` fields as journal fields. Used by `gala-gopher` and
//! `gala-spider`; everything here is a no-op outside systemd.
//!
//! Crates, measured on this project's build machine (Debian 12, systemd
//! 252, x86-64, release build, the agent on the default config with its
//! five probes, `NOTIFY_SOCKET` set; VmRSS 12 s after the start, 3 runs
//! each, in KiB):
//! - `sd-notify` 0.5 (pure Rust, MIT/Apache-2.0, depends on `libc` only):
//!   10 852, 10 876, 10 860 (the tree before this module: 10 500 to
//!   10 772). Builds anywhere, nothing to install.
//! - `systemd` 0.11 (libsystemd through `libsystemd-sys`): 11 832, 12 060,
//!   12 060, i.e. 980 to 1 200 KiB more: libsystemd.so.0 and what it loads
//!   (libcap, libgcrypt, libgpg-error, liblzma, libzstd, liblz4) are mapped
//!   and relocated in every process. The build needs pkg-config and
//!   libsystemd-dev (systemd-devel as a BuildRequires of the rpm's offline
//!   build), and the crate is LGPL-2.1-or-later, compiled into our binary.
//!
//! Notification is a datagram of `KEY=VALUE` lines to `$NOTIFY_SOCKET`, so
//! `sd-notify` is used (it takes a path: an abstract `@` socket, which
//! systemd does not give services, would fail and be logged once). For the journal, `tracing-journald` (the tokio-rs
//! tracing project, pure Rust) writes native journal entries with a
//! priority and every event field; `systemd`'s journal API would need a
//! hand-written `tracing` layer over `sd_journal_send`.

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::Level;

/// How often `STATUS=` is refreshed.
pub const STATUS_PERIOD: Duration = Duration::from_secs(5);

/// Talks to the service manager that started this process, if any: every
/// method does nothing when `NOTIFY_SOCKET` was not set.
#[derive(Debug)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
    /// Set once a send failed and it was logged.
    failed: AtomicBool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` and removes
    /// the watchdog variables from the environment, so that no probe
    /// started later believes it is watched.
    ///
    /// Call it on the main thread before any other thread exists: the
    /// environment must not change while another thread reads it.
    /// `NOTIFY_SOCKET` stays set (the notify crate reads it at each send);
    /// `gala-gopher exec-child` removes it from the probes' environment.
    pub fn from_env() -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        let watchdog = watchdog_timeout(usec.as_deref(), pid.as_deref(), std::process::id());
        std::env::remove_var("WATCHDOG_USEC");
        std::env::remove_var("WATCHDOG_PID");
        Self {
            enabled,
            watchdog: watchdog.filter(|_| enabled),
            failed: AtomicBool::new(false),
        }
    }

    /// A notifier that never sends anything.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            watchdog: None,
            failed: AtomicBool::new(false),
        }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// How often to send `WATCHDOG=1`: half the manager's `WatchdogSec`,
    /// or `None` when the manager set no watchdog for this process.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog.map(|t| (t / 2).max(Duration::from_millis(1)))
    }

    /// `READY=1` with a status line: startup (or a reload) is done.
    pub fn ready(&self, status: &str) {
        let status = one_line(status);
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }

    /// `STATUS=`: a one-line summary shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        let status = one_line(status);
        self.send(&[NotifyState::Status(&status)]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (what `Type=notify-reload` asks
    /// for; plain `Type=notify` ignores the timestamp). [`Notifier::ready`]
    /// ends the reload.
    pub fn reloading(&self) {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        states.push(NotifyState::Status("reloading the configuration"));
        self.send(&states);
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// `WATCHDOG=1`, when the manager asked for it.
    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        match sd_notify::notify(states) {
            Ok(()) => {
                if self.failed.swap(false, Ordering::Relaxed) {
                    tracing::info!("the service manager's notify socket works again");
                }
            }
            Err(e) => {
                if !self.failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET); its view of this service may be stale");
                }
            }
        }
    }
}

/// The watchdog timeout the service manager set for the process `me`:
/// `WATCHDOG_USEC` microseconds, unless `WATCHDOG_PID` names another
/// process (then a child inherited the variables and must not ping).
pub fn watchdog_timeout(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    match pid {
        None => {}
        Some(p) if p.trim().parse::<u32>().ok() == Some(me) => {}
        Some(_) => return None,
    }
    Some(Duration::from_micros(usec))
}

/// A status line stays one line: a newline would end the `STATUS=` field.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The agent's `STATUS=` text, e.g. `5 probes running, 0 failed; 1234
/// series`; probes still starting are named when there are any.
pub fn agent_status(running: usize, starting: usize, failed: usize, series: usize) -> String {
    let probes = if running == 1 { "probe" } else { "probes" };
    let starting = if starting > 0 {
        format!(" ({starting} starting)")
    } else {
        String::new()
    };
    format!("{running} {probes} running{starting}, {failed} failed; {series} series")
}

/// Whether this process runs as a systemd service: its stderr is the
/// journal stream systemd connected (`JOURNAL_STREAM` names stderr's device
/// and inode; a stderr redirected elsewhere no longer matches), or the
/// service manager gave it a notify socket.
pub fn under_systemd(
    journal_stream: Option<&str>,
    stderr_id: Option<(u64, u64)>,
    notify_socket: Option<&OsString>,
) -> bool {
    let stream = match (journal_stream, stderr_id) {
        (Some(v), Some((dev, ino))) => journal_stream_is(v, dev, ino),
        _ => false,
    };
    stream || notify_socket.is_some_and(|s| !s.is_empty())
}

/// Whether a `JOURNAL_STREAM` value (`<device>:<inode>`, decimal) names
/// the file `dev`/`ino`.
pub fn journal_stream_is(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>().ok() == Some(dev) && i.parse::<u64>().ok() == Some(ino)
}

/// Device and inode of this process's stderr.
fn stderr_id() -> Option<(u64, u64)> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let md = std::fs::File::from(fd).metadata().ok()?;
    Some((md.dev(), md.ino()))
}

/// [`under_systemd`] for this process, from its environment and stderr.
pub fn running_under_systemd() -> bool {
    let stream = std::env::var("JOURNAL_STREAM").ok();
    let notify = std::env::var_os("NOTIFY_SOCKET");
    under_systemd(stream.as_deref(), stderr_id(), notify.as_ref())
}

/// The journal priority (syslog numbering) of a `tracing` level: ERROR 3,
/// WARN 4, INFO 6 (informational: the agent's INFO lines are routine, not
/// "notice"), DEBUG and TRACE 7.
pub fn journal_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

fn priority(level: Level) -> tracing_journald::Priority {
    use tracing_journald::Priority as P;
    match journal_priority(level) {
        0 => P::Emergency,
        1 => P::Alert,
        2 => P::Critical,
        3 => P::Error,
        4 => P::Warning,
        5 => P::Notice,
        6 => P::Informational,
        _ => P::Debug,
    }
}

/// The level-to-priority table handed to the journal layer.
pub fn priority_mappings() -> tracing_journald::PriorityMappings {
    tracing_journald::PriorityMappings {
        error: priority(Level::ERROR),
        warn: priority(Level::WARN),
        info: priority(Level::INFO),
        debug: priority(Level::DEBUG),
        trace: priority(Level::TRACE),
    }
}

/// A layer writing native journal entries: `PRIORITY` from
/// [`journal_priority`], `MESSAGE`, each event field upper-cased without a
/// prefix (`probe = "tcp_link"` is `PROBE=tcp_link`), `SYSLOG_IDENTIFIER`
/// = `identifier`, plus `TARGET`, `CODE_FILE` and `CODE_LINE`. Fails when
/// the journal's socket is not there.
pub fn journal_layer(identifier: &str) -> std::io::Result<tracing_journald::Layer> {
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_priority_mappings(priority_mappings())
        .with_syslog_identifier(identifier.to_owned()))
}

/// Where a binary's own log lines go when no log file is configured.
pub enum LogTarget {
    /// Native journal entries (under systemd, with journald listening).
    Journal(Box<tracing_journald::Layer>),
    /// Text on stderr; the reason is set when systemd was detected but the
    /// journal could not be reached.
    Stderr(Option<String>),
}

impl std::fmt::Debug for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTarget::Journal(l) => f
                .debug_tuple("Journal")
                .field(&l.syslog_identifier())
                .finish(),
            LogTarget::Stderr(why) => f.debug_tuple("Stderr").field(why).finish(),
        }
    }
}

/// Chooses the journal under systemd, stderr otherwise or when the
/// journal's socket is not there.
pub fn log_target(identifier: &str) -> LogTarget {
    if !running_under_systemd() {
        return LogTarget::Stderr(None);
    }
    match journal_layer(identifier) {
        Ok(l) => LogTarget::Journal(Box::new(l)),
        Err(e) => LogTarget::Stderr(Some(format!(
            "running under systemd but the journal socket cannot be reached ({e}): logging to stderr"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_syslog_numbering() {
        assert_eq!(journal_priority(Level::ERROR), 3);
        assert_eq!(journal_priority(Level::WARN), 4);
        assert_eq!(journal_priority(Level::INFO), 6);
        assert_eq!(journal_priority(Level::DEBUG), 7);
        assert_eq!(journal_priority(Level::TRACE), 7);
        let m = priority_mappings();
        // The layer writes the priority as one ASCII digit.
        assert_eq!(m.error as u8, b'3');
        assert_eq!(m.warn as u8, b'4');
        assert_eq!(m.info as u8, b'6');
        assert_eq!(m.debug as u8, b'7');
        assert_eq!(m.trace as u8, b'7');
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(journal_stream_is("8:12345", 8, 12345));
        assert!(journal_stream_is(" 8:12345\n", 8, 12345));
        assert!(!journal_stream_is("8:12346", 8, 12345));
        assert!(!journal_stream_is("9:12345", 8, 12345));
        for bad in ["", ":", "8", "8:", ":12345", "x:y", "8:12345:1", "-8:12345"] {
            assert!(!journal_stream_is(bad, 8, 12345), "{bad:?}");
        }
    }

    #[test]
    fn under_systemd_by_journal_stream_or_notify_socket() {
        let sock = OsString::from("/run/systemd/notify");
        let empty = OsString::new();
        let stderr = Some((8, 12345));
        assert!(under_systemd(Some("8:12345"), stderr, None));
        // stderr redirected away from the journal stream it inherited.
        assert!(!under_systemd(Some("8:99"), stderr, None));
        assert!(!under_systemd(Some("8:12345"), None, None));
        assert!(under_systemd(None, stderr, Some(&sock)));
        assert!(under_systemd(Some("8:99"), stderr, Some(&sock)));
        assert!(!under_systemd(None, stderr, Some(&empty)));
        assert!(!under_systemd(None, None, None));
    }

    #[test]
    fn this_test_process_stderr_has_an_identity() {
        let (dev, ino) = stderr_id().expect("fstat of stderr");
        assert!(journal_stream_is(&format!("{dev}:{ino}"), dev, ino));
    }

    #[test]
    fn watchdog_only_for_this_pid_and_a_positive_timeout() {
        let me = 4242;
        let t = |u, p| watchdog_timeout(u, p, me);
        assert_eq!(t(Some("3000000"), None), Some(Duration::from_secs(3)));
        assert_eq!(
            t(Some("3000000"), Some("4242")),
            Some(Duration::from_secs(3))
        );
        assert_eq!(t(Some("3000000"), Some("4243")), None);
        assert_eq!(t(Some("3000000"), Some("nope")), None);
        assert_eq!(t(Some("0"), None), None);
        assert_eq!(t(Some("-5"), None), None);
        assert_eq!(t(Some("soon"), None), None);
        assert_eq!(t(None, Some("4242")), None);
        let n = Notifier {
            enabled: true,
            watchdog: t(Some("3000000"), None),
            failed: AtomicBool::new(false),
        };
        assert_eq!(n.watchdog_period(), Some(Duration::from_millis(1500)));
        assert_eq!(Notifier::disabled().watchdog_period(), None);
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(
            agent_status(5, 0, 0, 1234),
            "5 probes running, 0 failed; 1234 series"
        );
        assert_eq!(
            agent_status(1, 0, 2, 0),
            "1 probe running, 2 failed; 0 series"
        );
        assert_eq!(
            agent_status(0, 3, 0, 0),
            "0 probes running (3 starting), 0 failed; 0 series"
        );
        assert_eq!(one_line("a\nb\r\nc"), "a b  c");
    }

    #[test]
    fn a_disabled_notifier_sends_nothing_and_does_not_fail() {
        let n = Notifier::disabled();
        n.ready("x");
        n.status("x");
        n.reloading();
        n.watchdog();
        n.stopping();
        assert!(!n.failed.load(Ordering::Relaxed));
    }
}
