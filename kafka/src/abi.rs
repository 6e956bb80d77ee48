//! The C ABI between gala-gopher and libgopher_kafka.so. Both sides compile
//! this one file (the agent through `#[path]`), so they cannot disagree on a
//! layout; [`ABI_VERSION`] guards against a .so of another build.
//!
//! The .so exports two symbols: `gopher_kafka_abi_version` (a function
//! returning its [`ABI_VERSION`]) and `gopher_kafka_api` (a function
//! returning a pointer to its static [`Api`]). Every byte string crosses
//! as a borrowed [`Bytes`]: the payloads are not copied at the boundary
//! (librdkafka copies them once, as a bare producer does).

use std::ffi::{c_int, c_void};

/// Bumped whenever [`Api`] or [`Callbacks`] change.
pub const ABI_VERSION: u32 = 1;
/// The symbol of `extern "C" fn() -> u32`, returning the .so's version.
pub const SYM_ABI_VERSION: &[u8] = b"gopher_kafka_abi_version\0";
/// The symbol of `extern "C" fn() -> *const Api`.
pub const SYM_API: &[u8] = b"gopher_kafka_api\0";

/// No error (librdkafka's `RD_KAFKA_RESP_ERR_NO_ERROR`).
pub const OK: c_int = 0;
/// An error without a librdkafka code (e.g. a topic that is not UTF-8).
pub const ERR_OTHER: c_int = c_int::MIN;

/// A borrowed byte string (not NUL-terminated).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Bytes {
    /// First byte (may dangle when `len` is 0).
    pub ptr: *const u8,
    /// Length.
    pub len: usize,
}

impl Bytes {
    /// Borrows `s`.
    pub fn of(s: &[u8]) -> Self {
        Self {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The bytes.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that live for `'a`.
    pub unsafe fn get<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            &[]
        } else {
            // SAFETY: the caller's contract.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// A caller's buffer for an error text: at most `cap` bytes are written at
/// `ptr`, and their number at `*len`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ErrBuf {
    /// Where the text goes.
    pub ptr: *mut u8,
    /// Room at `ptr`.
    pub cap: usize,
    /// Receives the length written.
    pub len: *mut usize,
}

/// The agent's callbacks. `log` may be called from any librdkafka thread;
/// `error` and `delivery` only inside `poll`, `flush` and `free`. The text
/// arguments are only valid during the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Callbacks {
    /// Passed back as the first argument of each callback.
    pub ctx: *const c_void,
    /// A librdkafka log line: syslog level (0 emergency .. 7 debug),
    /// facility, message.
    pub log:
        unsafe extern "C" fn(ctx: *const c_void, level: c_int, facility: Bytes, message: Bytes),
    /// A client error: librdkafka's code (or [`ERR_OTHER`]), the error's
    /// text, and librdkafka's reason.
    pub error: unsafe extern "C" fn(ctx: *const c_void, code: c_int, error: Bytes, reason: Bytes),
    /// A delivery report for the message sent with `opaque`: [`OK`], or
    /// the error's code and text.
    pub delivery:
        unsafe extern "C" fn(ctx: *const c_void, opaque: usize, code: c_int, error: Bytes),
}

/// The producer's functions. A producer is an opaque pointer made by
/// `create` and released by `free`; it is used from one thread at a time.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Api {
    /// [`ABI_VERSION`] of the .so.
    pub abi_version: u32,
    /// A producer with the `n` properties `keys[i] = values[i]`, sending to
    /// the `n_topics` topics (named by index in `send`). Null on error,
    /// with the reason (naming the property) in `err`.
    pub create: unsafe extern "C" fn(
        keys: *const Bytes,
        values: *const Bytes,
        n: usize,
        topics: *const Bytes,
        n_topics: usize,
        callbacks: *const Callbacks,
        err: ErrBuf,
    ) -> *mut c_void,
    /// Hands a message to librdkafka (which copies key and payload).
    /// Returns [`OK`], or the error's code with its text in `err`.
    pub send: unsafe extern "C" fn(
        p: *mut c_void,
        topic: usize,
        key: Bytes,
        payload: Bytes,
        opaque: usize,
        err: ErrBuf,
    ) -> c_int,
    /// Serves the callbacks, waiting up to `timeout_ms` for the first.
    pub poll: unsafe extern "C" fn(p: *mut c_void, timeout_ms: c_int),
    /// Waits up to `timeout_ms` until nothing is in flight; [`OK`] or the
    /// error code (a timeout).
    pub flush: unsafe extern "C" fn(p: *mut c_void, timeout_ms: c_int) -> c_int,
    /// Messages librdkafka holds (queued or in flight).
    pub in_flight: unsafe extern "C" fn(p: *mut c_void) -> c_int,
    /// Purges the queued and in-flight messages (their delivery reports
    /// come with the purge codes at the next `poll`).
    pub purge: unsafe extern "C" fn(p: *mut c_void),
    /// Destroys the producer.
    pub free: unsafe extern "C" fn(p: *mut c_void),
}

/// Writes `text` (cut to fit) into `err`.
///
/// # Safety
/// `err.ptr` must have room for `err.cap` bytes and `err.len` be writable
/// (or either be null: nothing is written).
pub unsafe fn write_err(err: ErrBuf, text: &str) {
    if err.ptr.is_null() || err.len.is_null() {
        return;
    }
    let n = text.len().min(err.cap);
    // SAFETY: the caller's contract: `ptr` has room for `cap` bytes and
    // `len` is writable.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), err.ptr, n);
        *err.len = n;
    }
}
