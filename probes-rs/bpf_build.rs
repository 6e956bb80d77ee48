// The clang arguments of every eBPF object in the workspace, shared by the
// build scripts of gopher-probes and gopher-bench (each `include!`s this).

/// `-I` for each directory of `include`, the target-arch define that
/// bpf_tracing.h needs, warnings as errors, and the BPF ISA v3 (5.1+; it
/// has the atomic compare-and-exchange tcp_link uses on 5.12+).
fn bpf_clang_args(include: &[&std::path::Path]) -> anyhow::Result<Vec<std::ffi::OsString>> {
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH")?.as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        "riscv64" => "riscv",
        "loongarch64" => "loongarch",
        other => anyhow::bail!("no eBPF target arch for {other}"),
    };
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    for dir in include {
        args.push("-I".into());
        args.push(dir.as_os_str().to_owned());
    }
    args.push(format!("-D__TARGET_ARCH_{arch}").into());
    args.extend(["-Wall", "-Werror", "-mcpu=v3"].map(Into::into));
    Ok(args)
}
