//! Compiles the C part of libgopher (`csrc/nprobe_fprintf.c`, the variadic
//! legacy printf) against the checked-in `include/gopher.h`. Writes only to
//! OUT_DIR; the header itself is checked by the `header` test.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let include = manifest.join("../include");
    let src = manifest.join("csrc/nprobe_fprintf.c");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();

    let mut build = cc::Build::new();
    build
        .file(&src)
        .include(&include)
        .std("c11")
        .flag("-Wall")
        .flag("-Wextra")
        .flag("-Werror");
    // See src/nprobe.rs: where there is no Rust trampoline, C defines the
    // exported name itself.
    if arch != "x86_64" && arch != "aarch64" {
        build.define("GOPHER_NPROBE_FPRINTF_IN_C", None);
    }
    build.compile("gopher_csrc");

    println!("cargo:rerun-if-changed={}", src.display());
    for h in ["gopher.h", "nprobe_fprintf.h"] {
        println!("cargo:rerun-if-changed={}", include.join(h).display());
    }
}
