//! Builds the benchmarks' own eBPF object (the empty program the tcp_link
//! benchmark runs beside the probe) into a skeleton in OUT_DIR.

use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let src = manifest.join("src/bpf/floor.bpf.c");
    let vmlinux = manifest.join("../probes-rs/src/bpf");
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH")?.as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        "riscv64" => "riscv",
        "loongarch64" => "loongarch",
        other => anyhow::bail!("no eBPF target arch for {other}"),
    };
    println!("cargo:rerun-if-changed={}", src.display());
    SkeletonBuilder::new()
        .source(&src)
        .obj(out.join("floor.bpf.o"))
        .clang_args([
            "-I".into(),
            vmlinux.into_os_string(),
            format!("-D__TARGET_ARCH_{arch}").into(),
            "-Wall".into(),
            "-Werror".into(),
        ])
        .build_and_generate(out.join("floor.skel.rs"))?;
    Ok(())
}
