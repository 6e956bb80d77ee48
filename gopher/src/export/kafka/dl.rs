//! libgopher_kafka.so (the `kafka/` crate): found, loaded with dlopen() the
//! first time a Kafka producer is made, and wrapped as [`Producer`]. An
//! agent without a Kafka channel never loads it, and so maps neither
//! librdkafka nor OpenSSL (the agent binary does not link them).
//!
//! Where it is looked for, first found wins: `GALA_GOPHER_KAFKA_LIB` (a
//! file); beside the executable (`target/debug`, `target/release`; one
//! directory up for a test binary in `deps/`); `<exe>/../lib64/gala-gopher`,
//! `<exe>/../lib/gala-gopher`; the directory `GALA_GOPHER_KAFKA_LIBDIR`
//! named at build time (the rpm sets `%{_libdir}/gala-gopher`, where it
//! installs the library); `/usr/lib64/gala-gopher`, `/usr/lib/gala-gopher`.

use std::ffi::{c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[path = "../../../../kafka/src/abi.rs"]
#[allow(
    dead_code,
    reason = "the .so's side of the ABI is used by the kafka crate"
)]
pub(crate) mod abi;

use abi::{Api, Bytes, Callbacks, ErrBuf};

/// The file name of the library.
pub const FILE: &str = "libgopher_kafka.so";
/// The environment variable naming the library's path.
pub const ENV: &str = "GALA_GOPHER_KAFKA_LIB";

/// The paths tried, in order, for `exe` (the agent's executable) and the
/// value of [`ENV`].
pub fn candidates(exe: Option<&Path>, env: Option<PathBuf>) -> Vec<PathBuf> {
    if let Some(p) = env.filter(|p| !p.as_os_str().is_empty()) {
        // Named explicitly: that file and no other.
        return vec![p];
    }
    let mut out = Vec::new();
    if let Some(dir) = exe.and_then(Path::parent) {
        out.push(dir.join(FILE));
        if dir.file_name().is_some_and(|n| n == "deps") {
            if let Some(up) = dir.parent() {
                out.push(up.join(FILE));
            }
        }
        if let Some(prefix) = dir.parent() {
            out.push(prefix.join("lib64/gala-gopher").join(FILE));
            out.push(prefix.join("lib/gala-gopher").join(FILE));
        }
    }
    let built = option_env!("GALA_GOPHER_KAFKA_LIBDIR").filter(|d| !d.is_empty());
    for d in built
        .into_iter()
        .chain(["/usr/lib64/gala-gopher", "/usr/lib/gala-gopher"])
    {
        let p = Path::new(d).join(FILE);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The loaded library: its function table (it stays loaded for the life
/// of the process).
#[derive(Debug)]
pub struct Lib {
    api: &'static Api,
    /// Where it was loaded from.
    pub path: PathBuf,
}

/// Why the library could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// No candidate path holds the file.
    #[error(
        "the Kafka library {FILE} is not installed: tried {} (set {ENV} to its path, or build it: \
         cargo build -p gopher-kafka)",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Missing {
        /// The paths tried.
        tried: Vec<PathBuf>,
    },
    /// dlopen() or dlsym() failed.
    #[error("cannot load the Kafka library {}: {msg}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        msg: String,
    },
    /// The library is of another ABI version.
    #[error(
        "the Kafka library {} has ABI version {found}, this gala-gopher needs {}: install the \
         libgopher_kafka.so of the same build",
        path.display(),
        abi::ABI_VERSION
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
}

/// The library, loaded once (the first call decides, for the process).
pub fn lib() -> Result<&'static Lib, LoadError> {
    static LIB: OnceLock<Result<Lib, LoadError>> = OnceLock::new();
    LIB.get_or_init(|| {
        let tried = candidates(
            std::env::current_exe().ok().as_deref(),
            std::env::var_os(ENV).map(PathBuf::from),
        );
        let path = tried
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or(LoadError::Missing { tried })?;
        load(&path)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The last dl* error's text.
fn dl_error(path: &Path, what: &str) -> LoadError {
    // SAFETY: dlerror returns NULL or a NUL-terminated text owned by libc.
    let e = unsafe { libc::dlerror() };
    let msg = if e.is_null() {
        what.to_owned()
    } else {
        // SAFETY: non-NULL and NUL-terminated.
        format!("{what}: {}", unsafe { CStr::from_ptr(e) }.to_string_lossy())
    };
    LoadError::Load {
        path: path.to_owned(),
        msg,
    }
}

fn load(path: &Path) -> Result<Lib, LoadError> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        LoadError::Load {
            path: path.to_owned(),
            msg: "the path holds a NUL byte".into(),
        }
    })?;
    // SAFETY: a valid C string. The handle is never closed: librdkafka's
    // threads and the function table must stay mapped.
    let h = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if h.is_null() {
        return Err(dl_error(path, "dlopen failed"));
    }
    let sym = |name: &[u8]| {
        // SAFETY: a valid handle; `name` is NUL-terminated (abi::SYM_*).
        let s = unsafe { libc::dlsym(h, name.as_ptr().cast()) };
        if s.is_null() {
            let shown = String::from_utf8_lossy(&name[..name.len().saturating_sub(1)]).into_owned();
            Err(dl_error(path, &format!("no symbol {shown}")))
        } else {
            Ok(s)
        }
    };
    let version = sym(abi::SYM_ABI_VERSION)?;
    // SAFETY: by the ABI, that symbol is `extern "C" fn() -> u32`.
    let version: extern "C" fn() -> u32 = unsafe { std::mem::transmute(version) };
    let found = version();
    if found != abi::ABI_VERSION {
        return Err(LoadError::Version {
            path: path.to_owned(),
            found,
        });
    }
    let api = sym(abi::SYM_API)?;
    // SAFETY: by the ABI (version checked), `extern "C" fn() -> *const Api`.
    let api: extern "C" fn() -> *const Api = unsafe { std::mem::transmute(api) };
    // SAFETY: a pointer to a static of the library, which stays loaded.
    let api = unsafe { api().as_ref() }.ok_or_else(|| LoadError::Load {
        path: path.to_owned(),
        msg: "gopher_kafka_api returned NULL".into(),
    })?;
    Ok(Lib {
        api,
        path: path.to_owned(),
    })
}

/// What the producer reports back: log lines, client errors and
/// delivery reports (`code` is 0 for a delivery).
pub trait Events: Sync {
    /// A librdkafka log line (from any thread).
    fn log(&self, level: i32, facility: &str, message: &str);
    /// A client error.
    fn error(&self, code: i32, error: &str, reason: &str);
    /// The delivery report of the message sent with `opaque`.
    fn delivery(&self, opaque: usize, code: i32, error: &str);
}

/// A producer of the library, with its events' receiver `E` (boxed, so that
/// its address, given to the library, stays put).
pub struct Producer<E: Events> {
    lib: &'static Lib,
    p: *mut c_void,
    events: Box<E>,
}

// SAFETY: the handle is used from one thread at a time (`&mut` is not
// needed: librdkafka's producer calls are thread-safe); `E` is Sync.
unsafe impl<E: Events + Send> Send for Producer<E> {}

impl<E: Events> std::fmt::Debug for Producer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("lib", &self.lib.path)
            .finish_non_exhaustive()
    }
}

fn str_of<'a>(b: Bytes) -> std::borrow::Cow<'a, str> {
    // SAFETY: the library passes texts valid for the callback.
    String::from_utf8_lossy(unsafe { b.get() })
}

unsafe extern "C" fn on_log<E: Events>(ctx: *const c_void, level: c_int, fac: Bytes, msg: Bytes) {
    // SAFETY: `ctx` is the `Box<E>` of a live producer.
    let e = unsafe { &*ctx.cast::<E>() };
    e.log(level, &str_of(fac), &str_of(msg));
}

unsafe extern "C" fn on_error<E: Events>(ctx: *const c_void, code: c_int, err: Bytes, why: Bytes) {
    // SAFETY: as in `on_log`.
    let e = unsafe { &*ctx.cast::<E>() };
    e.error(code, &str_of(err), &str_of(why));
}

unsafe extern "C" fn on_delivery<E: Events>(
    ctx: *const c_void,
    opaque: usize,
    code: c_int,
    err: Bytes,
) {
    // SAFETY: as in `on_log`.
    let e = unsafe { &*ctx.cast::<E>() };
    if code == abi::OK {
        e.delivery(opaque, code, "");
    } else {
        e.delivery(opaque, code, &str_of(err));
    }
}

/// Room for an error text from the library.
struct ErrText {
    buf: [u8; 512],
    len: usize,
}

impl ErrText {
    fn new() -> Self {
        Self {
            buf: [0; 512],
            len: 0,
        }
    }

    fn buf(&mut self) -> ErrBuf {
        ErrBuf {
            ptr: self.buf.as_mut_ptr(),
            cap: self.buf.len(),
            len: &raw mut self.len,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf[..self.len.min(self.buf.len())]).into_owned()
    }
}

impl<E: Events> Producer<E> {
    /// A producer with `props`, sending to `topics` (by index; empty: none),
    /// reporting to `events`. Err: the library's reason.
    pub fn new(
        lib: &'static Lib,
        props: &[(String, String)],
        topics: &[&str],
        events: E,
    ) -> Result<Self, String> {
        let events = Box::new(events);
        let keys: Vec<Bytes> = props.iter().map(|(k, _)| Bytes::of(k.as_bytes())).collect();
        let values: Vec<Bytes> = props.iter().map(|(_, v)| Bytes::of(v.as_bytes())).collect();
        let topics: Vec<Bytes> = topics.iter().map(|t| Bytes::of(t.as_bytes())).collect();
        let cb = Callbacks {
            ctx: std::ptr::from_ref::<E>(&events).cast(),
            log: on_log::<E>,
            error: on_error::<E>,
            delivery: on_delivery::<E>,
        };
        let mut err = ErrText::new();
        // SAFETY: arrays of the lengths given, valid for the call; the
        // callbacks' context (the box) outlives the producer (see Drop).
        let p = unsafe {
            (lib.api.create)(
                keys.as_ptr(),
                values.as_ptr(),
                keys.len(),
                topics.as_ptr(),
                topics.len(),
                &cb,
                err.buf(),
            )
        };
        if p.is_null() {
            return Err(err.text());
        }
        Ok(Self { lib, p, events })
    }

    /// The events' receiver.
    pub fn events(&self) -> &E {
        &self.events
    }

    /// Hands a message to librdkafka. Err: its code and text.
    pub fn send(
        &self,
        topic: usize,
        key: &[u8],
        payload: &[u8],
        opaque: usize,
    ) -> Result<(), (i32, String)> {
        // SAFETY: a live handle; the slices are valid for the call (the
        // library copies them). The error buffer is only written on error.
        let mut len = 0usize;
        let mut buf = std::mem::MaybeUninit::<[u8; 512]>::uninit();
        let err = ErrBuf {
            ptr: buf.as_mut_ptr().cast(),
            cap: 512,
            len: &raw mut len,
        };
        // SAFETY: as above.
        let code = unsafe {
            (self.lib.api.send)(
                self.p,
                topic,
                Bytes::of(key),
                Bytes::of(payload),
                opaque,
                err,
            )
        };
        if code == abi::OK {
            return Ok(());
        }
        // SAFETY: the library wrote `len` bytes at `buf`.
        let text = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len.min(512)) };
        Err((code, String::from_utf8_lossy(text).into_owned()))
    }

    /// Serves the callbacks, waiting up to `timeout` for the first.
    pub fn poll(&self, timeout: std::time::Duration) {
        let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: a live handle.
        unsafe { (self.lib.api.poll)(self.p, ms) }
    }

    /// Waits up to `timeout` until nothing is in flight; whether it got there.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: a live handle.
        unsafe { (self.lib.api.flush)(self.p, ms) == abi::OK }
    }

    /// Messages librdkafka holds.
    pub fn in_flight(&self) -> i32 {
        // SAFETY: a live handle.
        unsafe { (self.lib.api.in_flight)(self.p) }
    }

    /// Purges what librdkafka holds (reported at the next poll).
    pub fn purge(&self) {
        // SAFETY: a live handle.
        unsafe { (self.lib.api.purge)(self.p) }
    }
}

impl<E: Events> Drop for Producer<E> {
    fn drop(&mut self) {
        // SAFETY: a live handle, freed once; `events` is dropped after.
        unsafe { (self.lib.api.free)(self.p) }
    }
}

/// librdkafka's error codes the exporter tells apart.
pub mod code {
    /// `RD_KAFKA_RESP_ERR__QUEUE_FULL`.
    pub const QUEUE_FULL: i32 = -184;
    /// `RD_KAFKA_RESP_ERR__TRANSPORT`.
    pub const TRANSPORT: i32 = -195;
    /// `RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN`.
    pub const ALL_BROKERS_DOWN: i32 = -187;
    /// `RD_KAFKA_RESP_ERR__PURGE_QUEUE`.
    pub const PURGE_QUEUE: i32 = -152;
    /// `RD_KAFKA_RESP_ERR__PURGE_INFLIGHT`.
    pub const PURGE_INFLIGHT: i32 = -151;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_names_the_only_candidate() {
        let c = candidates(
            Some(Path::new("/x/bin/gala-gopher")),
            Some("/y/l.so".into()),
        );
        assert_eq!(c, [PathBuf::from("/y/l.so")]);
    }

    #[test]
    fn candidates_beside_the_executable_then_the_libdirs() {
        let c = candidates(Some(Path::new("/usr/bin/gala-gopher")), None);
        let shown: Vec<String> = c.iter().map(|p| p.display().to_string()).collect();
        if option_env!("GALA_GOPHER_KAFKA_LIBDIR").is_some() {
            return; // an rpm build: one more directory in the list
        }
        assert_eq!(
            shown,
            [
                "/usr/bin/libgopher_kafka.so",
                "/usr/lib64/gala-gopher/libgopher_kafka.so",
                "/usr/lib/gala-gopher/libgopher_kafka.so",
            ]
        );
        let c = candidates(Some(Path::new("/r/target/debug/deps/t-123")), None);
        assert_eq!(c[0], Path::new("/r/target/debug/deps/libgopher_kafka.so"));
        assert_eq!(c[1], Path::new("/r/target/debug/libgopher_kafka.so"));
    }

    #[test]
    fn a_missing_library_names_the_paths_tried() {
        let e = LoadError::Missing {
            tried: vec![
                "/a/libgopher_kafka.so".into(),
                "/b/libgopher_kafka.so".into(),
            ],
        };
        let m = e.to_string();
        assert!(
            m.contains("/a/libgopher_kafka.so, /b/libgopher_kafka.so"),
            "{m}"
        );
        assert!(m.contains(ENV), "{m}");
    }

    #[test]
    fn a_file_that_is_not_the_library_is_a_load_error_naming_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join(FILE);
        std::fs::write(&p, "not an ELF").expect("write");
        let e = load(&p).expect_err("not a library");
        let m = e.to_string();
        assert!(m.contains(&p.display().to_string()), "{m}");
    }
}
