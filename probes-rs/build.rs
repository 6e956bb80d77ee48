//! Builds the eBPF programs of the probes into skeletons in OUT_DIR (never
//! into src/). vmlinux.h is pinned in src/bpf/, not generated here.

use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const PROGRAMS: &[&str] = &["tcp_link"];

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let bpf_include = manifest.join("src/bpf");
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH")?.as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        "riscv64" => "riscv",
        "loongarch64" => "loongarch",
        other => anyhow::bail!("no eBPF target arch for {other}"),
    };
    println!("cargo:rerun-if-changed={}", bpf_include.display());
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
            .clang_args([
                "-I".into(),
                bpf_include.clone().into_os_string(),
                "-I".into(),
                dir.clone().into_os_string(),
                format!("-D__TARGET_ARCH_{arch}").into(),
                "-Wall".into(),
                "-Werror".into(),
                // BPF ISA v3 (5.1+): atomic compare-and-exchange (used on 5.12+).
                "-mcpu=v3".into(),
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")))?;
    }
    Ok(())
}
