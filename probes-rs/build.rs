//! Builds the eBPF programs of the probes into skeletons in OUT_DIR (never
//! into src/). vmlinux.h is pinned in src/bpf/, not generated here.
//!
//! Only the programs of the probes whose cargo feature is on are built: with
//! every eBPF probe off there is nothing to build, so neither clang nor libbpf is
//! needed and no BPF object is embedded in the crate.

#[cfg(any(
    feature = "tcp_link",
    feature = "nginx_link",
    feature = "haproxy_link",
    feature = "ipvs_link",
    feature = "dnsmasq_link"
))]
include!("bpf_build.rs");

/// The eBPF programs of the probes this build holds (each named as its probe
/// and its cargo feature).
const PROGRAMS: &[&str] = &[
    #[cfg(feature = "tcp_link")]
    "tcp_link",
    #[cfg(feature = "nginx_link")]
    "nginx_link",
    #[cfg(feature = "haproxy_link")]
    "haproxy_link",
    #[cfg(feature = "ipvs_link")]
    "ipvs_link",
    #[cfg(feature = "dnsmasq_link")]
    "dnsmasq_link",
];

#[cfg(any(
    feature = "tcp_link",
    feature = "nginx_link",
    feature = "haproxy_link",
    feature = "ipvs_link",
    feature = "dnsmasq_link"
))]
fn main() -> anyhow::Result<()> {
    use std::path::PathBuf;

    use libbpf_cargo::SkeletonBuilder;

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

#[cfg(not(any(
    feature = "tcp_link",
    feature = "nginx_link",
    feature = "haproxy_link",
    feature = "ipvs_link",
    feature = "dnsmasq_link"
)))]
fn main() {
    // No eBPF probe in this build: nothing to compile (and no reason to run
    // again unless this script changes).
    assert!(PROGRAMS.is_empty());
    println!("cargo:rerun-if-changed=build.rs");
}
