//! The panic boundary every export goes through: a panic becomes an error
//! value and never unwinds into C.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::status::gopher_status;

/// Runs `f`, turning a panic into `GOPHER_ERR_PANIC`.
pub(crate) fn guard(f: impl FnOnce() -> gopher_status) -> gopher_status {
    guard_or(gopher_status::GOPHER_ERR_PANIC, f)
}

/// Runs `f`, turning a panic into `on_panic`.
pub(crate) fn guard_or<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    // AssertUnwindSafe: after a panic the closure's state is dropped and
    // only `on_panic` is used; the library has no shared state a half-done
    // call could leave inconsistent (the write locks recover from poison).
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// The `Ok` or the `Err` of a result as a status.
pub(crate) fn status_of(r: Result<(), gopher_status>) -> gopher_status {
    match r {
        Ok(()) => gopher_status::GOPHER_OK,
        Err(s) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status() {
        let got = guard(|| panic!("boom"));
        assert_eq!(got, gopher_status::GOPHER_ERR_PANIC);
        assert_eq!(guard(|| gopher_status::GOPHER_OK), gopher_status::GOPHER_OK);
        assert_eq!(guard_or(7u32, || panic!("boom")), 7);
    }
}
