//! `include/gopher.h` must be what cbindgen generates from ffi/src now.
//!
//! Regenerate it with `UPDATE_HEADER=1 cargo test -p gopher-ffi --test header`.

use std::path::{Path, PathBuf};

const REGENERATE: &str = "UPDATE_HEADER=1 cargo test -p gopher-ffi --test header";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The header as cbindgen generates it from the sources (parsed as files,
/// without running `cargo metadata`).
fn generate(manifest: &Path) -> String {
    let config = cbindgen::Config::from_file(manifest.join("cbindgen.toml"))
        .expect("ffi/cbindgen.toml is readable and valid");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(manifest.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("cbindgen writes UTF-8")
}

/// The first differing line, for the failure message.
fn first_difference(want: &str, got: &str) -> String {
    let (mut w, mut g) = (want.lines(), got.lines());
    for n in 1.. {
        match (w.next(), g.next()) {
            (None, None) => break,
            (a, b) if a == b => continue,
            (a, b) => {
                return format!(
                    "line {n}:\n  checked in: {}\n  generated:  {}",
                    b.unwrap_or("<end of file>"),
                    a.unwrap_or("<end of file>")
                )
            }
        }
    }
    "only line endings differ".into()
}

#[test]
fn header_is_current() {
    let manifest = manifest_dir();
    let path = manifest.join("../include/gopher.h");
    let fresh = generate(&manifest);
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write include/gopher.h");
        eprintln!("wrote {}", path.display());
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/gopher.h is out of date with ffi/src ({}).\nRegenerate it with:\n    {REGENERATE}",
        first_difference(&fresh, &checked_in)
    );
}

#[test]
fn header_has_the_abi_macros_and_legacy_struct() {
    let fresh = generate(&manifest_dir());
    for want in [
        "#define GOPHER_ABI_VERSION_MAJOR 1",
        "#define GOPHER_ABI_VERSION_MINOR 0",
        "#define GOPHER_ABI_VERSION ",
        "struct probe_params {",
        "struct gopher_probe_desc {",
        "#ifndef GOPHER_H",
        "#include <stdint.h>",
        "#include <stddef.h>",
        "UPDATE_HEADER=1 cargo test -p gopher-ffi --test header",
    ] {
        assert!(fresh.contains(want), "generated header lacks `{want}`");
    }
    assert!(
        !fresh.contains("nprobe_fprintf("),
        "nprobe_fprintf is declared by nprobe_fprintf.h (variadic), not by gopher.h"
    );
}
