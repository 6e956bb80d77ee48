//! Capabilities of the agent and of its eBPF probes.
//!
//! Linux capabilities belong to threads, not processes: `capset(2)` changes
//! the calling thread only, and a new thread starts with its creator's sets.
//! So the agent works in two steps:
//!
//! 1. [`restrict_process`], called by the daemon on its main thread before
//!    it spawns any thread, reduces the permitted and effective sets to what
//!    some thread may still need ([`keep_set`]); every thread spawned later
//!    inherits that. The bounding set is left alone: extend and C probes are
//!    separate programs that the legacy agent ran as root, and a root
//!    `execve` gets the bounding set back, as they expect.
//! 2. An eBPF probe raises what loading needs ([`raise_for_load`]), loads and
//!    attaches, then lowers its thread's effective set to [`RUNTIME`]
//!    ([`lower_after_attach`]): attached programs and open map fds need no
//!    capability. The capabilities stay permitted so that a restart of the
//!    probe can load again.

use caps::{CapSet, Capability, CapsHashSet};

/// Loading and attaching eBPF programs (5.8+; CAP_SYS_ADMIN before).
pub const LOAD: &[Capability] = &[Capability::CAP_BPF, Capability::CAP_PERFMON];

/// What a running eBPF probe keeps effective: reading `/proc/<pid>/fd` and
/// `/proc/<pid>/ns/net` of processes of other users, to find the owner of a
/// socket.
pub const RUNTIME: &[Capability] = &[Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH];

/// Whether this kernel knows CAP_BPF (5.8+); without it loading needs
/// CAP_SYS_ADMIN.
pub fn kernel_has_cap_bpf() -> bool {
    caps::runtime::thread_all_supported().contains(&Capability::CAP_BPF)
}

/// The capabilities the agent keeps permitted: with eBPF probes, those to
/// load them (and CAP_SYS_RESOURCE for the locked-memory limit of kernels
/// before 5.11, CAP_SYS_ADMIN to mount tracefs where it may be needed and is
/// missing); always [`RUNTIME`].
pub fn keep_set(ebpf: bool) -> CapsHashSet {
    let mut keep: CapsHashSet = RUNTIME.iter().copied().collect();
    if ebpf {
        if kernel_has_cap_bpf() {
            keep.extend(LOAD.iter().copied());
        } else {
            keep.insert(Capability::CAP_SYS_ADMIN);
        }
        keep.insert(Capability::CAP_SYS_RESOURCE);
        // To mount tracefs, where a plan with classic tracepoints may run
        // and nobody mounted it (crate::tracefs).
        #[cfg(feature = "tcp_link")]
        if crate::tcp_link::may_need_tracefs() && !crate::tracefs::mounted() {
            keep.insert(Capability::CAP_SYS_ADMIN);
        }
    }
    keep
}

/// Capabilities that [`restrict_process`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Names of the capabilities no longer permitted, sorted.
    pub dropped: Vec<String>,
    /// Names of those still permitted, sorted.
    pub kept: Vec<String>,
}

fn names(set: &CapsHashSet) -> Vec<String> {
    let mut v: Vec<String> = set.iter().map(ToString::to_string).collect();
    v.sort();
    v
}

/// Reduces the calling thread's permitted and effective sets to `keep` and
/// clears its inheritable and ambient sets. Call it before spawning threads.
pub fn restrict_process(keep: &CapsHashSet) -> Result<Dropped, caps::errors::CapsError> {
    let permitted = caps::read(None, CapSet::Permitted)?;
    let new: CapsHashSet = permitted.intersection(keep).copied().collect();
    let dropped: CapsHashSet = permitted.difference(&new).copied().collect();
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    caps::set(None, CapSet::Effective, &new)?;
    caps::set(None, CapSet::Permitted, &new)?;
    Ok(Dropped {
        dropped: names(&dropped),
        kept: names(&new),
    })
}

/// Makes the capabilities to load eBPF effective on this thread, from the
/// permitted set. Returns the names of those missing.
pub fn raise_for_load() -> Vec<String> {
    let needed: Vec<Capability> = if kernel_has_cap_bpf() {
        LOAD.to_vec()
    } else {
        vec![Capability::CAP_SYS_ADMIN]
    };
    let mut missing = Vec::new();
    for cap in needed {
        let ok = caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false)
            || caps::raise(None, CapSet::Effective, cap).is_ok()
            || caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap_or(false);
        if !ok {
            missing.push(cap.to_string());
        }
    }
    // Best effort: tracefs reads and the memlock limit on old kernels.
    for cap in [
        Capability::CAP_DAC_READ_SEARCH,
        Capability::CAP_SYS_RESOURCE,
    ] {
        let _ = caps::raise(None, CapSet::Effective, cap);
    }
    missing
}

/// After attach: only [`RUNTIME`] stays effective on this thread (and the
/// threads it spawns).
pub fn lower_after_attach() -> Result<(), caps::errors::CapsError> {
    let permitted = caps::read(None, CapSet::Permitted)?;
    let keep: CapsHashSet = RUNTIME
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    caps::set(None, CapSet::Effective, &keep)
}

/// The calling thread's effective set, by name (for logs and tests).
pub fn effective() -> Vec<String> {
    caps::read(None, CapSet::Effective)
        .map(|s| names(&s))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_set_has_runtime_and_only_adds_load_caps_for_ebpf() {
        let plain = keep_set(false);
        for c in RUNTIME {
            assert!(plain.contains(c));
        }
        assert!(!plain.contains(&Capability::CAP_BPF));
        assert!(!plain.contains(&Capability::CAP_SYS_ADMIN));
        let ebpf = keep_set(true);
        assert!(ebpf.contains(&Capability::CAP_SYS_RESOURCE));
        assert!(ebpf.contains(&Capability::CAP_BPF) || ebpf.contains(&Capability::CAP_SYS_ADMIN));
        assert!(!ebpf.contains(&Capability::CAP_NET_ADMIN));
    }

    #[test]
    fn restrict_on_a_thread_leaves_other_threads_alone() {
        // Runs on a thread of its own: capabilities are per thread.
        let before = effective();
        let t = std::thread::spawn(|| {
            let keep: CapsHashSet = [Capability::CAP_SYS_PTRACE].into_iter().collect();
            let d = restrict_process(&keep).expect("capset");
            (d, effective(), raise_for_load())
        });
        let (d, eff, missing) = t.join().expect("thread");
        assert!(eff.len() <= 1, "{eff:?}");
        if before.iter().any(|c| c == "CAP_BPF") {
            assert!(d.dropped.contains(&"CAP_BPF".to_owned()));
            assert!(!missing.is_empty(), "CAP_BPF cannot come back once dropped");
        }
        assert_eq!(effective(), before, "the test thread keeps its set");
    }
}
