//! Mounting a kernel pseudo-filesystem (tracefs, bpffs) at its standard
//! place, for the probes that need one and find it missing.

use std::sync::Mutex;

use caps::{CapSet, Capability};

/// Serialises the mounts of this process, so that two probes needing the
/// same filesystem do not both mount it.
static MOUNTING: Mutex<()> = Mutex::new(());

/// Mounts a `fstype` filesystem at `target` (`nosuid,nodev,noexec`) unless
/// `mounted()` says one is there. CAP_SYS_ADMIN is raised into the effective
/// set for the call only, and put back as it was. Returns whether this call
/// mounted it; the error is the reason, for the caller's message.
pub(crate) fn ensure(
    fstype: &str,
    target: &str,
    mounted: impl Fn() -> bool,
) -> Result<bool, String> {
    let _guard = MOUNTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if mounted() {
        return Ok(false);
    }
    let was_effective =
        caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap_or(false);
    if !was_effective && caps::raise(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).is_err() {
        return Err("this process lacks CAP_SYS_ADMIN".to_owned());
    }
    let r = mount(fstype, target);
    if !was_effective {
        let _ = caps::drop(None, CapSet::Effective, Capability::CAP_SYS_ADMIN);
    }
    r.map_err(|e| e.to_string())?;
    Ok(true)
}

fn mount(fstype: &str, target: &str) -> std::io::Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).map_err(std::io::Error::other);
    let (src, target) = (c(fstype)?, c(target)?);
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call and
    // no filesystem data.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
