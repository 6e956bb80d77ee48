//! tracefs, for the eBPF plans that attach classic tracepoints.
//!
//! A classic tracepoint is attached by its numeric id, which only tracefs
//! tells (`events/<group>/<name>/id`); BTF tracepoints, raw tracepoints,
//! uprobes and the perf-event kprobes are found without it. A fresh machine
//! often has no tracefs mounted (systemd mounts it on boot, a container or a
//! minimal init does not), so a plan that needs it calls [`ensure`]: tracefs
//! is mounted at its standard place when it is missing and this thread may
//! (CAP_SYS_ADMIN), else the error says what to mount.

use std::path::{Path, PathBuf};

/// Where tracefs is mounted when the agent mounts it.
pub const MOUNT_POINT: &str = "/sys/kernel/tracing";

/// The places libbpf and the kernel documentation know, in the order libbpf
/// looks: tracefs inside a mounted debugfs, then tracefs itself.
const ROOTS: [&str; 2] = ["/sys/kernel/debug/tracing", MOUNT_POINT];

/// The `events` directory of a mounted tracefs, if any.
pub fn events_dir() -> Option<PathBuf> {
    ROOTS
        .iter()
        .rev()
        .map(|root| Path::new(root).join("events"))
        .find(|events| events.is_dir())
}

/// Whether a tracefs is mounted at one of its standard places.
pub fn mounted() -> bool {
    events_dir().is_some()
}

/// Why tracefs could not be had.
#[derive(Debug, thiserror::Error)]
#[error(
    "the classic tracepoints need tracefs (for their ids) and it is not mounted; mounting it at \
     {MOUNT_POINT} failed: {reason}; mount it (`mount -t tracefs tracefs {MOUNT_POINT}`, or \
     `tracefs {MOUNT_POINT} tracefs defaults 0 0` in /etc/fstab) and restart the probe"
)]
pub struct TracefsError {
    reason: String,
}

/// Makes sure a tracefs is mounted; mounts one at [`MOUNT_POINT`] when none
/// is. Returns whether this call mounted it. The mount belongs to the
/// agent's mount namespace and stays after the agent exits, as the one
/// systemd makes at boot would.
pub fn ensure() -> Result<bool, TracefsError> {
    let err = |reason: String| TracefsError { reason };
    if !crate::pseudofs::ensure("tracefs", MOUNT_POINT, mounted).map_err(err)? {
        return Ok(false);
    }
    if !mounted() {
        return Err(err(format!(
            "{MOUNT_POINT}/events is still missing after the mount"
        )));
    }
    tracing::info!(
        mount_point = MOUNT_POINT,
        "mounted tracefs (a classic tracepoint needs it)"
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_mount_command_and_the_reason() {
        let e = TracefsError {
            reason: "this process lacks CAP_SYS_ADMIN".to_owned(),
        }
        .to_string();
        assert!(
            e.contains("mount -t tracefs tracefs /sys/kernel/tracing"),
            "{e}"
        );
        assert!(e.contains("lacks CAP_SYS_ADMIN"), "{e}");
    }

    #[test]
    fn mounted_agrees_with_the_events_dir() {
        assert_eq!(mounted(), events_dir().is_some());
        if let Some(d) = events_dir() {
            assert!(d.join("sock").is_dir() || d.join("sched").is_dir(), "{d:?}");
        }
    }
}
