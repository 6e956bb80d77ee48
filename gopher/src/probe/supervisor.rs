//! The supervisor: runs each probe on its own thread, restarts it with
//! backoff when it exits, and gives up after `restart_max` restarts.
//!
//! Every probe kind sits behind the same [`Probe`] trait, so one supervisor
//! serves native, C, eBPF and extend probes alike. State and restarts are
//! visible in the self-metrics (`gala_gopher_self_probe_*`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::probe_api::{Emitter, Params, Probe, ProbeContext, ProbeError, Shutdown};
use crate::record::EVENT_TABLE;
use crate::stats::{ProbeState, ProbeStats};

/// Builds a fresh probe instance (called again on every restart).
pub type Factory = Box<dyn Fn() -> Result<Box<dyn Probe>, ProbeError> + Send>;

/// How a probe decides to start.
#[derive(Debug, Clone)]
pub enum StartPolicy {
    /// Start now.
    Always,
    /// `switch = "auto"`: run this shell check first, and again every
    /// `recheck` while it says no.
    Check {
        /// The `start_check` command.
        command: String,
        /// How often to re-run it while it says no.
        recheck: Duration,
    },
}

/// Restart policy.
#[derive(Debug, Clone, Copy)]
pub struct Restart {
    /// Restarts before the probe is marked failed.
    pub max: u32,
    /// First backoff; doubled at each restart.
    pub backoff: Duration,
    /// A run longer than this resets the restart count.
    pub stable_after: Duration,
}

/// Everything needed to supervise one probe.
pub struct Supervised {
    /// Probe name.
    pub name: String,
    /// Builds instances.
    pub factory: Factory,
    /// Its parameters.
    pub params: Params,
    /// Its emitter.
    pub emitter: Emitter,
    /// Its counters.
    pub stats: Arc<ProbeStats>,
    /// When to start.
    pub start: StartPolicy,
    /// Restart policy.
    pub restart: Restart,
}

impl std::fmt::Debug for Supervised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised")
            .field("name", &self.name)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

/// Starts supervising `s` on a new thread; it returns after `shutdown`.
pub fn spawn(s: Supervised, shutdown: Shutdown) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("probe-{}", s.name))
        .spawn(move || supervise(s, &shutdown))
}

fn supervise(s: Supervised, shutdown: &Shutdown) {
    s.stats.set_state(ProbeState::Starting);
    if let StartPolicy::Check { command, recheck } = &s.start {
        loop {
            match super::extend::start_check(command, Duration::from_secs(10)) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(probe = %s.name, "{e}"),
            }
            s.stats.set_state(ProbeState::Waiting);
            if shutdown.wait(*recheck) {
                s.stats.set_state(ProbeState::Stopped);
                return;
            }
        }
    }
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        s.stats.set_state(ProbeState::Running);
        let outcome = match (s.factory)() {
            Ok(probe) => {
                let cx = ProbeContext {
                    emitter: s.emitter.clone(),
                    params: s.params.clone(),
                    shutdown: shutdown.clone(),
                };
                match catch_unwind(AssertUnwindSafe(move || probe.run(cx))) {
                    Ok(r) => r,
                    Err(p) => Err(ProbeError::Panicked {
                        probe: s.name.clone(),
                        message: panic_text(&*p),
                    }),
                }
            }
            Err(e) => Err(e),
        };
        if shutdown.is_triggered() {
            s.stats.set_state(ProbeState::Stopped);
            return;
        }
        if started.elapsed() >= s.restart.stable_after {
            failures = 0;
        }
        let why = match outcome {
            Ok(()) => "returned".to_owned(),
            Err(ProbeError::Unsupported(why)) => {
                // Restarting cannot fix a missing kernel feature, a refused
                // library or an ABI mismatch.
                s.stats.set_state(ProbeState::Failed);
                tracing::error!(probe = %s.name, "probe cannot run here and will not be restarted: {why}");
                s.emitter
                    .record(EVENT_TABLE, crate::rules::probe_failed(&s.name, &why));
                return;
            }
            Err(e) => e.to_string(),
        };
        if failures >= s.restart.max {
            s.stats.set_state(ProbeState::Failed);
            tracing::error!(probe = %s.name, restarts = failures, "probe failed and will not be restarted: {why}");
            s.emitter
                .record(EVENT_TABLE, crate::rules::probe_failed(&s.name, &why));
            return;
        }
        let backoff = s.restart.backoff.saturating_mul(1 << failures.min(16));
        failures += 1;
        s.stats
            .restarts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s.stats.set_state(ProbeState::Restarting);
        tracing::warn!(probe = %s.name, attempt = failures, max = s.restart.max, backoff_ms = backoff.as_millis() as u64, "probe stopped, restarting: {why}");
        if shutdown.wait(backoff) {
            s.stats.set_state(ProbeState::Stopped);
            return;
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::sync::mpsc::sync_channel;

    struct Flaky(Arc<AtomicU32>, bool);
    impl Probe for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn tables(&self) -> &[&str] {
            &[]
        }
        fn run(self: Box<Self>, cx: ProbeContext) -> Result<(), ProbeError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            assert!(!self.1, "boom");
            cx.emitter.line(b"|t|1|".to_vec());
            Err(ProbeError::Setup {
                probe: "flaky".into(),
                source: "gone".into(),
            })
        }
    }

    fn supervised(panics: bool, runs: Arc<AtomicU32>, stats: Arc<ProbeStats>) -> Supervised {
        let (tx, rx) = sync_channel(100);
        std::mem::forget(rx);
        Supervised {
            name: "flaky".into(),
            factory: Box::new(move || {
                Ok(Box::new(Flaky(Arc::clone(&runs), panics)) as Box<dyn Probe>)
            }),
            params: Params::default(),
            emitter: Emitter::new("flaky".into(), tx, Arc::new(AtomicU64::new(0))),
            stats,
            start: StartPolicy::Always,
            restart: Restart {
                max: 3,
                backoff: Duration::from_millis(5),
                stable_after: Duration::from_secs(60),
            },
        }
    }

    #[test]
    fn restarts_three_times_then_fails() {
        for panics in [false, true] {
            let runs = Arc::new(AtomicU32::new(0));
            let stats = Stats::new().probe("flaky");
            let h = spawn(
                supervised(panics, Arc::clone(&runs), Arc::clone(&stats)),
                Shutdown::new(),
            )
            .expect("spawn");
            h.join().expect("supervisor ends by itself after failing");
            assert_eq!(runs.load(Ordering::SeqCst), 4, "1 run + 3 restarts");
            assert_eq!(stats.restarts.load(Ordering::Relaxed), 3);
            assert_eq!(stats.state(), ProbeState::Failed);
        }
    }

    struct Unsupported(Arc<AtomicU32>);
    impl Probe for Unsupported {
        fn name(&self) -> &str {
            "nobtf"
        }
        fn tables(&self) -> &[&str] {
            &[]
        }
        fn run(self: Box<Self>, _cx: ProbeContext) -> Result<(), ProbeError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(ProbeError::Unsupported(
                "no BTF at /sys/kernel/btf/vmlinux".into(),
            ))
        }
    }

    #[test]
    fn unsupported_is_failed_at_once() {
        let runs = Arc::new(AtomicU32::new(0));
        let stats = Stats::new().probe("nobtf");
        let mut s = supervised(false, Arc::new(AtomicU32::new(0)), Arc::clone(&stats));
        let r = Arc::clone(&runs);
        s.factory = Box::new(move || Ok(Box::new(Unsupported(Arc::clone(&r))) as Box<dyn Probe>));
        spawn(s, Shutdown::new())
            .expect("spawn")
            .join()
            .expect("join");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(stats.restarts.load(Ordering::Relaxed), 0);
        assert_eq!(stats.state(), ProbeState::Failed);
    }

    #[test]
    fn auto_waits_for_its_check_and_stops_on_shutdown() {
        let runs = Arc::new(AtomicU32::new(0));
        let stats = Stats::new().probe("flaky");
        let mut s = supervised(false, Arc::clone(&runs), Arc::clone(&stats));
        s.start = StartPolicy::Check {
            command: "echo 0".into(),
            recheck: Duration::from_secs(60),
        };
        let sd = Shutdown::new();
        let h = spawn(s, sd.clone()).expect("spawn");
        let t0 = Instant::now();
        while stats.state() != ProbeState::Waiting {
            assert!(t0.elapsed() < Duration::from_secs(10), "never waited");
            std::thread::sleep(Duration::from_millis(10));
        }
        sd.trigger();
        h.join().expect("join");
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        assert_eq!(stats.state(), ProbeState::Stopped);
    }
}
