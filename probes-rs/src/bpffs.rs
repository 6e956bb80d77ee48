//! bpffs, for the eBPF maps that probes pin by path.
//!
//! Legacy 1.x and 2.x eBPF probe binaries pin their maps under
//! `/sys/fs/bpf/probe/` (and the agent's own `global.pin_path` defaults to
//! `/sys/fs/bpf/gala-gopher`), so a BPF filesystem must be mounted at
//! `/sys/fs/bpf`. systemd mounts it at boot; a container, a minimal init or
//! a fresh VM often does not. [`ensure`] mounts it when it is missing and
//! this thread may (CAP_SYS_ADMIN), else the error names the command to run.
//! The daemon calls it before it drops its capabilities, when the config
//! runs a probe binary that may pin maps (an extend probe switched on or
//! `auto`).

use std::path::Path;

/// Where bpffs is mounted.
pub const MOUNT_POINT: &str = "/sys/fs/bpf";

/// `BPF_FS_MAGIC` of `<linux/magic.h>`: `statfs(2)` reports it for a bpffs.
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The filesystem magic of `path` (`statfs(2)`), if it can be read.
fn fs_magic(path: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs is plain data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs(2) writes only into `st`; `c` is NUL-terminated and
    // outlives the call.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc == 0 {
        // f_type is a signed word whose width depends on the target.
        #[allow(clippy::unnecessary_cast)]
        Some(st.f_type as i64)
    } else {
        None
    }
}

/// Whether a bpffs is mounted at `path` (its filesystem magic says so).
pub fn mounted_at(path: &Path) -> bool {
    fs_magic(path) == Some(BPF_FS_MAGIC)
}

/// Whether a bpffs is mounted at [`MOUNT_POINT`].
pub fn mounted() -> bool {
    mounted_at(Path::new(MOUNT_POINT))
}

/// Why bpffs could not be had.
#[derive(Debug, thiserror::Error)]
#[error(
    "probes that pin eBPF maps need a BPF filesystem at {MOUNT_POINT} and none is mounted; \
     mounting it failed: {reason}; mount it (`mount -t bpf bpf {MOUNT_POINT}`, or \
     `bpf {MOUNT_POINT} bpf defaults 0 0` in /etc/fstab) and restart gala-gopher"
)]
pub struct BpffsError {
    reason: String,
}

/// Makes sure a bpffs is mounted at [`MOUNT_POINT`]; mounts one when none
/// is. Returns whether this call mounted it. Like the one systemd makes at
/// boot, the mount belongs to the agent's mount namespace and stays after
/// the agent exits (pinned maps outlive their loader by design).
pub fn ensure() -> Result<bool, BpffsError> {
    let err = |reason: String| BpffsError { reason };
    if !mounted() && !Path::new(MOUNT_POINT).is_dir() {
        return Err(err(format!(
            "{MOUNT_POINT} does not exist (is sysfs mounted at /sys?)"
        )));
    }
    if !crate::pseudofs::ensure("bpf", MOUNT_POINT, mounted).map_err(err)? {
        return Ok(false);
    }
    if !mounted() {
        return Err(err(format!(
            "{MOUNT_POINT} is still not a bpffs after the mount"
        )));
    }
    tracing::info!(
        mount_point = MOUNT_POINT,
        "mounted bpffs (probe binaries pin their eBPF maps there)"
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_mount_command_and_the_reason() {
        let e = BpffsError {
            reason: "this process lacks CAP_SYS_ADMIN".to_owned(),
        }
        .to_string();
        assert!(e.contains("mount -t bpf bpf /sys/fs/bpf"), "{e}");
        assert!(e.contains("lacks CAP_SYS_ADMIN"), "{e}");
    }

    #[test]
    fn a_plain_directory_is_not_a_bpffs() {
        let d = tempfile::tempdir().expect("tmp");
        assert!(fs_magic(d.path()).is_some());
        assert!(!mounted_at(d.path()));
        assert!(!mounted_at(Path::new("/no/such/dir")));
    }
}
