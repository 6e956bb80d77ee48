//! libgopher: the stable C ABI of gala-gopher.
//!
//! C probes are compiled against `include/gopher.h`, which cbindgen generates
//! from this crate (see `ffi/cbindgen.toml`; the test `header_is_current`
//! fails when the checked-in header drifts). The crate builds as a staticlib
//! and a cdylib (`libgopher.a`, `libgopher.so`) for C users and as an rlib
//! for the daemon and `gopher-probes-c`.
//!
//! # Model
//! A C probe never runs inside the daemon. The daemon's probe host runs it in
//! a child process whose stdout is a pipe to the daemon, so:
//! - a record is one protocol line `|table|v1|...|vn|` written to fd 1
//!   ([`record`]);
//! - a log message is one line `[level] message` written to fd 2 ([`log`]);
//! - the probe's `param` string arrives in the environment variable
//!   [`GOPHER_PARAM_ENV`] ([`params`]).
//!
//! Nothing else is shared: the library has no global mutable state apart
//! from two locks that keep the lines of concurrent threads whole, and the
//! per-process state of the legacy 1.x helpers ([`legacy`]: event
//! de-duplication, the object registry), which only legacy probes use. A second
//! copy of the library (say, `libgopher.so` loaded by an out-of-tree probe
//! next to the copy linked into the host) therefore behaves identically.
//!
//! # Conventions (rustls-ffi style)
//! - Functions are named `gopher_<noun>_<verb>` and return a
//!   [`gopher_status`].
//! - Every export catches panics (`GOPHER_ERR_PANIC`); nothing unwinds into C.
//! - A NULL pointer where one is not allowed gives `GOPHER_ERR_NULL`.
//! - Ownership is stated in each function's documentation: no function keeps
//!   a pointer it was given after it returns, and no function returns memory
//!   the caller must free.
//!
//! The legacy 1.x functions of `include/legacy/` ([`legacy`],
//! [`legacy_whitelist`], `csrc/legacy.c`) keep their 1.x names, signatures
//! and return values instead (`0`/`-1`, and `parse_whitelist_config`
//! allocates what `whitelist_config_destroy` frees); they are not part of
//! `gopher.h` or its ABI version.
//!
//! The ABI is versioned: [`GOPHER_ABI_VERSION_MAJOR`] changes on any
//! incompatible change, [`GOPHER_ABI_VERSION_MINOR`] when something is added.

#![deny(unsafe_op_in_unsafe_fn)]

mod boundary;
pub mod desc;
/// cbindgen:ignore
pub mod legacy;
/// cbindgen:ignore
pub mod legacy_whitelist;
pub mod log;
mod nprobe;
pub mod params;
pub mod record;
pub mod status;

pub use desc::{gopher_probe_desc, gopher_probe_entry, DescError, ProbeEntryFn, ProbeInfo};
pub use log::gopher_log_level;
pub use params::probe_params;
pub use status::gopher_status;

/// Major version of the C ABI: a probe built for another major version is
/// refused.
pub const GOPHER_ABI_VERSION_MAJOR: u32 = 1;

/// Minor version of the C ABI: a probe built for a newer minor version than
/// the library is refused; an older one is accepted.
pub const GOPHER_ABI_VERSION_MINOR: u32 = 0;

/// The ABI version a probe puts in `gopher_probe_desc.abi_version`:
/// `(major << 16) | minor`.
pub const GOPHER_ABI_VERSION: u32 = (GOPHER_ABI_VERSION_MAJOR << 16) | GOPHER_ABI_VERSION_MINOR;

/// Name of the descriptor an out-of-tree probe library exports
/// (`const struct gopher_probe_desc gopher_probe_descriptor = {...};`).
pub const GOPHER_PROBE_DESCRIPTOR_SYMBOL: &str = "gopher_probe_descriptor";

/// Environment variable that carries the probe's legacy `param` string
/// (e.g. `-t 5 -d eth0`) into the probe host; read by `gopher_params_get`.
pub const GOPHER_PARAM_ENV: &str = "GOPHER_PROBE_PARAM";

/// Longest record line in bytes, the newline excluded (docs/compat.md §1).
pub const GOPHER_MAX_LINE_LEN: usize = 8192;

/// The ABI version of this library, `GOPHER_ABI_VERSION` at its build time.
///
/// Compare it with the `GOPHER_ABI_VERSION` a probe was compiled with to
/// detect a header/library mismatch.
#[no_mangle]
pub extern "C" fn gopher_abi_version() -> u32 {
    GOPHER_ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_version_packs_major_and_minor() {
        assert_eq!(GOPHER_ABI_VERSION, 0x0001_0000);
        assert_eq!(gopher_abi_version(), GOPHER_ABI_VERSION);
        assert_eq!(GOPHER_ABI_VERSION >> 16, GOPHER_ABI_VERSION_MAJOR);
        assert_eq!(GOPHER_ABI_VERSION & 0xFFFF, GOPHER_ABI_VERSION_MINOR);
    }
}
