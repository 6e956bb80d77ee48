//! Compiles gala-gopher's own C probes (`src/*.c`) against the checked-in
//! `include/gopher.h`, warnings as errors. Writes only to OUT_DIR.

use std::path::PathBuf;

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
    for s in sources
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
    {
        build.file(s);
    }
    build.compile("gopher_probes_c_src");

    println!("cargo:rerun-if-changed={}", src.display());
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        include.join("gopher.h").display()
    );
}
