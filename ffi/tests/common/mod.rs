//! What the C tests of libgopher share: where the headers and the built
//! library are, and gcc run with its errors shown.

#![allow(dead_code, reason = "each test binary uses its own part")]

use std::path::PathBuf;
use std::process::Command;

/// The ffi crate's directory.
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's `include/`.
pub fn include_dir() -> PathBuf {
    manifest_dir().join("../include")
}

/// `name` as cargo built it for this test run. The test binary is
/// `<target>/<profile>/deps/<test>-<hash>`; `cargo test` leaves the library
/// beside it in `deps/` (`cargo build` also copies it up one level).
pub fn built_lib(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe
        .parent()
        .expect("test binary lives in <target>/<profile>/deps");
    let candidates = [deps.join(name), deps.parent().unwrap_or(deps).join(name)];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{name} not found at {}: run `cargo build -p gopher-ffi` first",
                candidates[1].display()
            )
        })
}

/// Runs gcc; a failure shows its errors.
pub fn gcc(args: &[&std::ffi::OsStr]) {
    let out = Command::new("gcc")
        .args(args)
        .output()
        .expect("gcc runs (install gcc)");
    assert!(
        out.status.success(),
        "gcc {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
