//! Compiles the C part of libgopher (`csrc/nprobe_fprintf.c`, the variadic
//! legacy printf, and `csrc/legacy.c`, the C half of the legacy 1.x headers
//! in `include/legacy/`) against the checked-in `include/gopher.h`, and gives the
//! shared library its soname. The header itself is checked by the `header`
//! test.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let include = manifest.join("../include");
    let src = manifest.join("csrc/nprobe_fprintf.c");
    let legacy = manifest.join("csrc/legacy.c");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();

    let mut build = cc::Build::new();
    build
        .file(&src)
        .file(&legacy)
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

    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        soname(&include.join("gopher.h"));
    }

    for f in [&src, &legacy, &manifest.join("csrc/legacy_internal.h")] {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    for h in [
        "gopher.h",
        "nprobe_fprintf.h",
        "legacy/common.h",
        "legacy/event.h",
        "legacy/whitelist_config.h",
        "legacy/object.h",
    ] {
        println!("cargo:rerun-if-changed={}", include.join(h).display());
    }
}

/// `libgopher.so` gets the soname `libgopher.so.<major>`, the major ABI
/// version of the header (the one place it is written), so that a probe
/// linked with `-lgopher` records `NEEDED libgopher.so.<major>` and is
/// refused by the loader, not misread, by a library of another major
/// version. Packages install the library under that name
/// (rpm/gala-gopher.spec).
///
/// A build tree has only `libgopher.so`, so a probe linked against it with
/// `-L <dir> -Wl,-rpath,<dir>` would not find `libgopher.so.<major>` there:
/// the link that `ldconfig` makes for an installed library is made here too,
/// `libgopher.so.<major> -> libgopher.so`, beside each copy cargo writes
/// (`<target>/<profile>` and its `deps/`). The link is relative and may
/// dangle until the library is linked.
fn soname(header: &Path) {
    let text = std::fs::read_to_string(header)
        .unwrap_or_else(|e| panic!("read {}: {e}", header.display()));
    let major: u32 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("#define GOPHER_ABI_VERSION_MAJOR ")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| {
            panic!(
                "{}: no `#define GOPHER_ABI_VERSION_MAJOR <n>`",
                header.display()
            )
        });
    let name = format!("libgopher.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{name}");

    // OUT_DIR is <target>/[<triple>/]<profile>/build/gopher-ffi-<hash>/out.
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let Some(profile) = out.ancestors().nth(3) else {
        return;
    };
    if out.ancestors().nth(2).and_then(Path::file_name) != Some("build".as_ref()) {
        println!(
            "cargo:warning=unexpected OUT_DIR layout {}: no {name} link made",
            out.display()
        );
        return;
    }
    for dir in [profile.to_path_buf(), profile.join("deps")] {
        let link = dir.join(&name);
        if std::fs::read_link(&link).is_ok_and(|t| t == Path::new("libgopher.so")) {
            continue;
        }
        let _ = std::fs::remove_file(&link);
        if let Err(e) = std::fs::create_dir_all(&dir)
            .and_then(|()| std::os::unix::fs::symlink("libgopher.so", &link))
        {
            println!(
                "cargo:warning=cannot link {} -> libgopher.so: {e}",
                link.display()
            );
        }
    }
}
