//! Builds the eBPF programs of the probes into skeletons in OUT_DIR (never
//! into src/). vmlinux.h is pinned in src/bpf/, not generated here.

use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

include!("bpf_build.rs");

const PROGRAMS: &[&str] = &["tcp_link"];

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let bpf_include = manifest.join("src/bpf");
    println!("cargo:rerun-if-changed={}", bpf_include.display());
    println!("cargo:rerun-if-changed=bpf_build.rs");
    for name in PROGRAMS {
        let dir = manifest.join("src").join(name);
        let src = dir.join(format!("{name}.bpf.c"));
        println!("cargo:rerun-if-changed={}", src.display());
        println!(
            "cargo:rerun-if-changed={}",
            dir.join(format!("{name}.h")).display()
        );
        SkeletonBuilder::new()
            .source(&src)
            .obj(out.join(format!("{name}.bpf.o")))
            .clang_args(bpf_clang_args(&[&bpf_include, &dir])?)
            .build_and_generate(out.join(format!("{name}.skel.rs")))?;
    }
    Ok(())
}
