//! `struct gopher_probe_desc`: how a C probe registers itself.
//!
//! A new-ABI probe exports one constant descriptor: an in-tree probe under
//! the name `gopher_probe_<name>`, an out-of-tree probe library under
//! `gopher_probe_descriptor` (`GOPHER_PROBE_DESCRIPTOR_SYMBOL`). The host
//! checks it with [`gopher_probe_desc::validate`] before calling anything.

use std::ffi::{c_char, c_int, CStr};

use crate::boundary::guard;
use crate::params::probe_params;
use crate::status::gopher_status;
use crate::{GOPHER_ABI_VERSION_MAJOR, GOPHER_ABI_VERSION_MINOR};

/// A probe's entry point: collects once, emits its records with
/// `gopher_record_emit`, and returns 0 (non-zero reports a failed
/// collection). `params` is owned by the host and valid during the call.
#[expect(non_camel_case_types, reason = "C name, emitted as-is into gopher.h")]
pub type gopher_probe_entry = Option<unsafe extern "C" fn(params: *const probe_params) -> c_int>;

/// A non-NULL [`gopher_probe_entry`].
pub type ProbeEntryFn = unsafe extern "C" fn(params: *const probe_params) -> c_int;

/// The descriptor a C probe exports, e.g.
/// `const struct gopher_probe_desc gopher_probe_descriptor =
/// { GOPHER_ABI_VERSION, "my_probe", my_entry, 5 };`
///
/// The host calls `entry` once per period; an entry that never returns (a
/// probe that loops on its own) is allowed too, since each C probe runs in
/// its own process. The descriptor and the name it points to must be static
/// and never change.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gopher_probe_desc {
    /// `GOPHER_ABI_VERSION` of the header the probe was compiled with.
    pub abi_version: u32,
    /// The probe's name (NUL-terminated, static), as in the config.
    pub name: *const c_char,
    /// The entry point, called once per period.
    pub entry: gopher_probe_entry,
    /// The default period in seconds; 0 means "use the param `-t`".
    pub period_secs: u32,
}

// SAFETY: a descriptor is immutable and its pointers refer to static data
// (the name string and a function), by the contract documented above, so
// sharing references across threads is sound.
unsafe impl Sync for gopher_probe_desc {}

// SAFETY: as for Sync: immutable data with static lifetime.
unsafe impl Send for gopher_probe_desc {}

/// Why a descriptor is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescError {
    /// Built against another ABI major version, or a newer minor one.
    #[error(
        "probe built for gopher ABI {found_major}.{found_minor}, this gala-gopher provides \
         {ours_major}.{ours_minor}: rebuild the probe against this version's gopher.h"
    )]
    AbiMismatch {
        /// Major version in the descriptor.
        found_major: u32,
        /// Minor version in the descriptor.
        found_minor: u32,
        /// Our major version.
        ours_major: u32,
        /// Our minor version.
        ours_minor: u32,
    },
    /// `name` is NULL.
    #[error("probe descriptor has a NULL name")]
    NullName,
    /// `name` is empty or not UTF-8.
    #[error("probe descriptor name is empty or not UTF-8")]
    BadName,
    /// `entry` is NULL.
    #[error("probe descriptor `{name}` has a NULL entry")]
    NullEntry {
        /// The probe's name.
        name: String,
    },
}

impl DescError {
    /// The status a C caller gets for this error.
    pub fn status(&self) -> gopher_status {
        match self {
            Self::AbiMismatch { .. } => gopher_status::GOPHER_ERR_ABI_MISMATCH,
            Self::NullName | Self::NullEntry { .. } => gopher_status::GOPHER_ERR_NULL,
            Self::BadName => gopher_status::GOPHER_ERR_INVALID_VALUE,
        }
    }
}

/// A checked descriptor.
#[derive(Debug, Clone, Copy)]
pub struct ProbeInfo<'a> {
    /// The probe's name.
    pub name: &'a str,
    /// Its entry point.
    pub entry: ProbeEntryFn,
    /// Its default period in seconds (0: use the param `-t`).
    pub period_secs: u32,
}

/// Whether a probe built for ABI `version` can run on this library: the same
/// major version and a minor version no newer than ours.
pub fn abi_compatible(version: u32) -> bool {
    let (major, minor) = (version >> 16, version & 0xFFFF);
    // `cmp` rather than `<=`: with minor version 0 the comparison is
    // constant, which clippy refuses.
    major == GOPHER_ABI_VERSION_MAJOR && minor.cmp(&GOPHER_ABI_VERSION_MINOR).is_le()
}

impl gopher_probe_desc {
    /// Checks the ABI version first (so that nothing else of a descriptor
    /// of another ABI is read), then the name and the entry.
    ///
    /// # Safety
    /// `self.name` must be NULL or point to a NUL-terminated string that
    /// lives as long as `self` is borrowed.
    pub unsafe fn validate(&self) -> Result<ProbeInfo<'_>, DescError> {
        if !abi_compatible(self.abi_version) {
            return Err(DescError::AbiMismatch {
                found_major: self.abi_version >> 16,
                found_minor: self.abi_version & 0xFFFF,
                ours_major: GOPHER_ABI_VERSION_MAJOR,
                ours_minor: GOPHER_ABI_VERSION_MINOR,
            });
        }
        if self.name.is_null() {
            return Err(DescError::NullName);
        }
        // SAFETY: non-NULL, and the caller promises a NUL-terminated string
        // that outlives the borrow of `self`.
        let name = unsafe { CStr::from_ptr(self.name) };
        let name = name
            .to_str()
            .ok()
            .filter(|n| !n.is_empty())
            .ok_or(DescError::BadName)?;
        let entry = self.entry.ok_or_else(|| DescError::NullEntry {
            name: name.to_string(),
        })?;
        Ok(ProbeInfo {
            name,
            entry,
            period_secs: self.period_secs,
        })
    }
}

/// Checks a probe descriptor as the host will: `GOPHER_ERR_ABI_MISMATCH`
/// if `abi_version` is of another major version or a newer minor version
/// than this library's, `GOPHER_ERR_NULL` for a NULL descriptor, name or
/// entry, `GOPHER_ERR_INVALID_VALUE` for an empty or non-UTF-8 name.
///
/// `desc` is borrowed for the duration of the call.
///
/// # Safety
/// `desc` must be NULL or point to a descriptor whose `name` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn gopher_probe_desc_check(desc: *const gopher_probe_desc) -> gopher_status {
    guard(|| {
        // SAFETY: the caller promises NULL or a valid descriptor.
        let Some(desc) = (unsafe { desc.as_ref() }) else {
            return gopher_status::GOPHER_ERR_NULL;
        };
        // SAFETY: the caller promises a valid name pointer.
        match unsafe { desc.validate() } {
            Ok(_) => gopher_status::GOPHER_OK,
            Err(e) => e.status(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GOPHER_ABI_VERSION;

    unsafe extern "C" fn entry(_: *const probe_params) -> c_int {
        0
    }

    fn desc(abi_version: u32, name: &'static CStr) -> gopher_probe_desc {
        gopher_probe_desc {
            abi_version,
            name: name.as_ptr(),
            entry: Some(entry),
            period_secs: 5,
        }
    }

    #[test]
    fn accepts_same_major_and_older_minor() {
        let d = desc(GOPHER_ABI_VERSION, c"demo");
        // SAFETY: the name is a static C string.
        let info = unsafe { d.validate() }.expect("valid");
        assert_eq!((info.name, info.period_secs), ("demo", 5));
        assert!(abi_compatible(GOPHER_ABI_VERSION_MAJOR << 16));
        // SAFETY: a valid descriptor.
        let status = unsafe { gopher_probe_desc_check(&d) };
        assert_eq!(status, gopher_status::GOPHER_OK);
    }

    #[test]
    fn refuses_other_abi_versions_clearly() {
        for v in [
            0,
            2 << 16,
            (1 << 16) | (GOPHER_ABI_VERSION_MINOR + 1),
            u32::MAX,
        ] {
            let d = desc(v, c"demo");
            // SAFETY: the name is a static C string.
            let e = unsafe { d.validate() }.expect_err("mismatch");
            assert_eq!(e.status(), gopher_status::GOPHER_ERR_ABI_MISMATCH);
            assert!(e.to_string().contains("rebuild the probe"), "{e}");
            // SAFETY: a valid descriptor.
            let status = unsafe { gopher_probe_desc_check(&d) };
            assert_eq!(status, gopher_status::GOPHER_ERR_ABI_MISMATCH);
        }
        let e = DescError::AbiMismatch {
            found_major: 2,
            found_minor: 0,
            ours_major: 1,
            ours_minor: 0,
        };
        assert_eq!(
            e.to_string(),
            "probe built for gopher ABI 2.0, this gala-gopher provides 1.0: rebuild the probe \
             against this version's gopher.h"
        );
    }

    #[test]
    fn refuses_missing_parts() {
        let mut d = desc(GOPHER_ABI_VERSION, c"");
        // SAFETY: the name is a static C string.
        assert_eq!(unsafe { d.validate() }.err(), Some(DescError::BadName));
        d.name = std::ptr::null();
        // SAFETY: NULL name is allowed and checked.
        assert_eq!(unsafe { d.validate() }.err(), Some(DescError::NullName));
        let mut d = desc(GOPHER_ABI_VERSION, c"x");
        d.entry = None;
        // SAFETY: the name is a static C string.
        let e = unsafe { d.validate() }.expect_err("no entry");
        assert_eq!(e.to_string(), "probe descriptor `x` has a NULL entry");
        // SAFETY: NULL is allowed and checked.
        let status = unsafe { gopher_probe_desc_check(std::ptr::null()) };
        assert_eq!(status, gopher_status::GOPHER_ERR_NULL);
    }
}
