//! C probes: run in a probe host process, never inside the daemon.
//!
//! A C probe that segfaults, aborts, leaks or hangs must not take the agent
//! down, so each one runs in a child: the same `gala-gopher` binary started
//! as `gala-gopher probe-host ...` (a hidden subcommand). The host calls the
//! probe's entry once per period, or once for a probe that loops forever;
//! whatever the probe writes to stdout (records through `nprobe_fprintf`,
//! `gopher_record_emit`, or a V0 probe's plain `fprintf(stdout, ...)`) goes
//! down a pipe to the daemon, which reads it like an extend probe's output.
//! After each collection the host writes an empty line, a heartbeat that
//! feeds the daemon's hang watchdog; a probe that loops on its own feeds it
//! with its records.
//!
//! Three kinds of entry:
//! - a built-in C probe of `probes-c/` (descriptor `gopher_probe_<name>`);
//! - a shared library exporting `gopher_probe_descriptor` (the new ABI);
//! - a shared library built from a legacy source, unchanged, with
//!   `-Dmain=probe_main_<name>`: its `int main(struct probe_params *)`
//!   (V1) or `int main()` (V0) is called with the parsed params.

use std::ffi::{c_int, CStr, CString, OsString};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use gopher::{gopher_probe_desc, probe_params, ProbeEntryFn};

use super::extend::{ChildProbe, Launch};
use crate::probe_api::Params;

/// Exit code of the host when the probe cannot be loaded or is refused.
pub const EXIT_REFUSED: u8 = 3;

/// Which C probe a host runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CSource {
    /// A probe compiled into this build (`probes-c/`).
    Builtin(String),
    /// A shared library: new-ABI descriptor or legacy `probe_main_<name>`.
    Library(PathBuf),
}

/// The daemon side: a child probe that runs `gala-gopher probe-host`.
pub fn child_probe(
    name: &str,
    source: &CSource,
    param: &str,
    grace: Duration,
    hang_timeout: Duration,
) -> std::io::Result<ChildProbe> {
    let exe = std::env::current_exe()?;
    let mut args: Vec<OsString> = vec![
        "probe-host".into(),
        "--name".into(),
        name.into(),
        "--param".into(),
        param.into(),
    ];
    match source {
        CSource::Builtin(b) => args.extend(["--builtin".into(), b.into()]),
        CSource::Library(p) => args.extend(["--library".into(), p.into()]),
    }
    let launch = Launch::Exec {
        program: exe.clone(),
        args,
        env: vec![(gopher::GOPHER_PARAM_ENV.into(), param.into())],
    };
    Ok(ChildProbe::with_launch(name, launch, grace)
        .death_guard(exe)
        .hang_timeout(hang_timeout)
        .refused_exit_code(i32::from(EXIT_REFUSED)))
}

/// The default hang timeout of a C probe with report period `period`.
pub fn default_hang_timeout(period: Duration) -> Duration {
    period.saturating_mul(3) + Duration::from_secs(10)
}

/// Why a C probe could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// No built-in C probe has that name.
    #[error("no built-in C probe is named `{0}`")]
    UnknownBuiltin(String),
    /// `dlopen` failed.
    #[error("cannot load {path}: {msg}")]
    Load {
        /// The library.
        path: PathBuf,
        /// dlerror's text.
        msg: String,
    },
    /// The library exports no entry we know.
    #[error("{path} exports neither `gopher_probe_descriptor` (new ABI) nor `{legacy}` (a legacy source built with -Dmain={legacy})")]
    NoEntry {
        /// The library.
        path: PathBuf,
        /// The legacy symbol looked for.
        legacy: String,
    },
    /// The descriptor was refused (ABI version, NULL name or entry).
    #[error("{path}: {source}")]
    Desc {
        /// Where the descriptor came from.
        path: String,
        /// Why it was refused.
        #[source]
        source: gopher::DescError,
    },
    /// The param string does not parse.
    #[error("param: {0}")]
    Param(#[from] gopher_probes::ParamsError),
}

/// A resolved entry: what to call and the default period.
#[derive(Debug, Clone, Copy)]
struct Entry {
    f: ProbeEntryFn,
    period_secs: u32,
}

fn check(desc: &gopher_probe_desc, origin: &str) -> Result<Entry, HostError> {
    // SAFETY: the descriptor is a static of a loaded object; its name, by
    // the ABI contract, is NULL or a static NUL-terminated string.
    let info = unsafe { desc.validate() }.map_err(|source| HostError::Desc {
        path: origin.to_owned(),
        source,
    })?;
    Ok(Entry {
        f: info.entry,
        period_secs: info.period_secs,
    })
}

fn dlerror_text() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message owned by libc.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".to_owned()
    } else {
        // SAFETY: non-NULL, NUL-terminated, valid until the next dl* call.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

fn resolve(name: &str, source: &CSource) -> Result<Entry, HostError> {
    match source {
        CSource::Builtin(b) => {
            let p =
                gopher_probes_c::builtin(b).ok_or_else(|| HostError::UnknownBuiltin(b.clone()))?;
            check((p.desc)(), &format!("built-in C probe {b}"))
        }
        CSource::Library(path) => {
            let c_path =
                CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| HostError::Load {
                    path: path.clone(),
                    msg: "path contains a NUL byte".into(),
                })?;
            // SAFETY: a valid C string; the handle is kept for the life of
            // the process (the probe's code must stay mapped).
            let handle =
                unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if handle.is_null() {
                return Err(HostError::Load {
                    path: path.clone(),
                    msg: dlerror_text(),
                });
            }
            let sym = |s: &str| -> *mut libc::c_void {
                let Ok(c) = CString::new(s) else {
                    return std::ptr::null_mut();
                };
                // SAFETY: valid handle and C string.
                unsafe { libc::dlsym(handle, c.as_ptr()) }
            };
            let desc = sym(gopher::GOPHER_PROBE_DESCRIPTOR_SYMBOL);
            if !desc.is_null() {
                // SAFETY: the symbol of that name is, by the ABI, a
                // `const struct gopher_probe_desc` in the loaded library.
                let desc: &gopher_probe_desc = unsafe { &*(desc as *const gopher_probe_desc) };
                return check(desc, &path.display().to_string());
            }
            let legacy = format!("probe_main_{name}");
            let main = sym(&legacy);
            if main.is_null() {
                return Err(HostError::NoEntry {
                    path: path.clone(),
                    legacy,
                });
            }
            // SAFETY: a legacy entry is `int main(struct probe_params *)`
            // (V1) or `int main()` (V0); calling either with one pointer
            // argument is sound on the C ABIs we build for.
            let f: ProbeEntryFn =
                unsafe { std::mem::transmute::<*mut libc::c_void, ProbeEntryFn>(main) };
            Ok(Entry { f, period_secs: 0 })
        }
    }
}

extern "C" {
    // glibc's stdout stream.
    static mut stdout: *mut libc::FILE;
}

fn c_stdout() -> *mut libc::FILE {
    // SAFETY: reading the address stored in glibc's `stdout` global.
    unsafe { stdout }
}

/// Writes one empty line to fd 1: the heartbeat after each collection.
fn heartbeat() {
    // SAFETY: write(2) of one byte from a static buffer.
    unsafe {
        libc::write(1, b"\n".as_ptr().cast(), 1);
    }
}

/// The probe host's main: loads the probe and calls it until killed.
/// Returns only on a start-up error, with the message for stderr.
pub fn host_main(name: &str, source: &CSource, param: &str) -> Result<(), HostError> {
    let params = Params::parse(param)?;
    let entry = resolve(name, source)?;
    // Records must not sit in stdio's buffer: line-buffer stdout for probes
    // that print with fprintf and loop on their own.
    // SAFETY: setvbuf on glibc's stdout before this process printed to it.
    unsafe {
        libc::setvbuf(c_stdout(), std::ptr::null_mut(), libc::_IOLBF, 0);
    }
    let period_secs =
        if param.split_whitespace().any(|w| w.starts_with("-t")) || entry.period_secs == 0 {
            params.period
        } else {
            entry.period_secs
        };
    let period = Duration::from_secs(u64::from(period_secs.max(1)));
    let mut c_params = probe_params::from_params(&params);
    loop {
        // SAFETY: the entry comes from a checked descriptor or a legacy
        // `main`; `c_params` lives across the call and the probe may write
        // into it (legacy probes take a non-const pointer).
        let rc: c_int = unsafe { (entry.f)(std::ptr::addr_of_mut!(c_params)) };
        // SAFETY: flushing glibc's stdout.
        unsafe {
            libc::fflush(c_stdout());
        }
        heartbeat();
        if rc != 0 {
            // Not eprintln!: it panics when the daemon's end of the pipe is gone.
            let _ = writeln!(
                std::io::stderr(),
                "[warn] probe {name}: collection returned {rc}"
            );
        }
        std::thread::sleep(period);
    }
}
