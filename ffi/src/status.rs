//! `gopher_status`: the result of every fallible export.

use std::ffi::{c_char, CStr};
use std::fmt;

use crate::boundary::guard_or;

/// Result of a libgopher call. `GOPHER_OK` is 0; every other value is an
/// error. Values are stable: new ones are only ever appended.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[expect(non_camel_case_types, reason = "C name, emitted as-is into gopher.h")]
pub enum gopher_status {
    /// Success.
    GOPHER_OK = 0,
    /// A required pointer argument was NULL.
    GOPHER_ERR_NULL = 1,
    /// A string argument is not valid UTF-8.
    GOPHER_ERR_INVALID_UTF8 = 2,
    /// An argument is not acceptable: a record value containing `|` or a
    /// control character (newline, carriage return, ...), a line that is not
    /// a record, an unknown enum value, or a param string that does not parse.
    GOPHER_ERR_INVALID_VALUE = 3,
    /// The record line would be longer than `GOPHER_MAX_LINE_LEN` bytes.
    GOPHER_ERR_TOO_LONG = 4,
    /// Writing to stdout or stderr failed (e.g. the daemon closed the pipe).
    GOPHER_ERR_IO = 5,
    /// A probe descriptor was built for an incompatible ABI version.
    GOPHER_ERR_ABI_MISMATCH = 6,
    /// The library panicked; the call did nothing (a bug: please report it).
    GOPHER_ERR_PANIC = 7,
}

/// Every status, in numeric order.
///
/// cbindgen:ignore
pub const ALL: [gopher_status; 8] = [
    gopher_status::GOPHER_OK,
    gopher_status::GOPHER_ERR_NULL,
    gopher_status::GOPHER_ERR_INVALID_UTF8,
    gopher_status::GOPHER_ERR_INVALID_VALUE,
    gopher_status::GOPHER_ERR_TOO_LONG,
    gopher_status::GOPHER_ERR_IO,
    gopher_status::GOPHER_ERR_ABI_MISMATCH,
    gopher_status::GOPHER_ERR_PANIC,
];

impl gopher_status {
    /// The status with numeric value `v`, if there is one.
    pub fn from_u32(v: u32) -> Option<Self> {
        ALL.into_iter().find(|s| *s as u32 == v)
    }

    /// Whether this is `GOPHER_OK`.
    pub fn is_ok(self) -> bool {
        self == Self::GOPHER_OK
    }

    /// A short description, the same text `gopher_status_str` returns.
    pub fn as_str(self) -> &'static str {
        let c = self.as_cstr().to_bytes();
        // Every description below is ASCII.
        std::str::from_utf8(c).unwrap_or("?")
    }

    fn as_cstr(self) -> &'static CStr {
        match self {
            Self::GOPHER_OK => c"ok",
            Self::GOPHER_ERR_NULL => c"a required pointer argument was NULL",
            Self::GOPHER_ERR_INVALID_UTF8 => c"a string is not valid UTF-8",
            Self::GOPHER_ERR_INVALID_VALUE => {
                c"invalid value (a '|' or control character in a record value, a line that is not a record, or an unknown option)"
            }
            Self::GOPHER_ERR_TOO_LONG => c"record line longer than 8192 bytes",
            Self::GOPHER_ERR_IO => c"write to stdout or stderr failed",
            Self::GOPHER_ERR_ABI_MISMATCH => c"probe built for an incompatible gopher ABI version",
            Self::GOPHER_ERR_PANIC => c"internal error in libgopher (panic caught)",
        }
    }
}

impl fmt::Display for gopher_status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for gopher_status {}

/// A static, NUL-terminated English description of `status` (a
/// `gopher_status` value; an unknown value gives "unknown gopher_status").
///
/// The returned string is owned by the library and valid for the life of the
/// process: do not free or modify it. Never returns NULL.
#[no_mangle]
pub extern "C" fn gopher_status_str(status: u32) -> *const c_char {
    const UNKNOWN: &CStr = c"unknown gopher_status";
    guard_or(UNKNOWN.as_ptr(), || {
        gopher_status::from_u32(status)
            .map_or(UNKNOWN, gopher_status::as_cstr)
            .as_ptr()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_stable_and_contiguous() {
        for (i, s) in ALL.iter().enumerate() {
            assert_eq!(*s as u32 as usize, i, "{s:?}");
            assert_eq!(gopher_status::from_u32(i as u32), Some(*s));
        }
        assert_eq!(gopher_status::from_u32(ALL.len() as u32), None);
    }

    #[test]
    fn every_status_has_a_distinct_description() {
        let mut seen = std::collections::HashSet::new();
        for s in ALL {
            // SAFETY: gopher_status_str returns a pointer to a static C string.
            let c = unsafe { CStr::from_ptr(gopher_status_str(s as u32)) };
            assert_eq!(c.to_str().ok(), Some(s.as_str()));
            assert!(seen.insert(s.as_str()), "{s:?}");
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(gopher_status_str(999)) };
        assert_eq!(unknown, c"unknown gopher_status");
    }
}
