//! Compiles gala-gopher's own C probes (`src/<probe>.c`) against the
//! checked-in `include/gopher.h`, warnings as errors. Writes only to OUT_DIR.
//!
//! Each probe's C file is compiled only when the cargo feature of its name
//! is on (all are by default); a `.c` file in src/ that is no probe of
//! [`PROBES`] fails the build, so that a new probe gets its feature.

use std::path::PathBuf;

/// The C probes: each is `src/<name>.c` and the cargo feature `<name>`.
const PROBES: &[&str] = &["system_cpu", "system_net"];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let include = manifest.join("../include");
    let src = manifest.join("src");

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&src)
        .expect("read probes-c/src")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c" || x == "h"))
        .collect();
    sources.sort();

    let mut build = cc::Build::new();
    build
        .include(&include)
        .include(&src)
        .std("c11")
        .flag("-Wall")
        .flag("-Wextra")
        .flag("-Werror")
        .flag("-Wshadow")
        .flag("-Wformat=2")
        .flag("-Wstrict-prototypes")
        .flag("-Wmissing-prototypes");
    let mut compiled = 0;
    for s in sources
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
    {
        let stem = s.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            PROBES.contains(&stem),
            "{} is no C probe of build.rs's PROBES: add it there and as a cargo feature",
            s.display()
        );
        let feature = format!("CARGO_FEATURE_{}", stem.to_ascii_uppercase());
        if std::env::var_os(feature).is_some() {
            build.file(s);
            compiled += 1;
        }
    }
    // With every C probe trimmed out there is no library to link.
    if compiled > 0 {
        build.compile("gopher_probes_c_src");
    }

    println!("cargo:rerun-if-changed={}", src.display());
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        include.join("gopher.h").display()
    );
}
