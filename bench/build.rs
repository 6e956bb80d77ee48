//! Builds the benchmarks' own eBPF object (the empty program the tcp_link
//! benchmark runs beside the probe) into a skeleton in OUT_DIR.

use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

include!("../probes-rs/bpf_build.rs");

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let src = manifest.join("src/bpf/floor.bpf.c");
    let vmlinux = manifest.join("../probes-rs/src/bpf");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed=../probes-rs/bpf_build.rs");
    SkeletonBuilder::new()
        .source(&src)
        .obj(out.join("floor.bpf.o"))
        .clang_args(bpf_clang_args(&[&vmlinux])?)
        .build_and_generate(out.join("floor.skel.rs"))?;
    Ok(())
}
