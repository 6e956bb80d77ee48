//! The start checks over fake host trees, and (as root) the object loading
//! on this kernel, which has no IPVS.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails on the first unexpected value"
)]

use super::*;

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    for (p, body) in files {
        let p = d.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    d
}

#[test]
fn a_host_without_kprobes_or_ipvs_is_refused_naming_both() {
    let d = tree(&[(
        "proc/kallsyms",
        "ffffffff81000000 T _stext\nffffffff81001000 t ip_vs_conn_new_x\n",
    )]);
    let e = check_host(d.path()).unwrap_err();
    assert!(
        e.starts_with("ipvs_link cannot run on this kernel: it needs kprobes"),
        "{e}"
    );
    assert!(e.contains("CONFIG_KPROBE_EVENTS"), "{e}");
    assert!(e.contains(" and IPVS (no "), "{e}");
    assert!(e.contains("modprobe ip_vs"), "{e}");
}

#[test]
fn kprobes_alone_or_ipvs_alone_is_not_enough() {
    let d = tree(&[("sys/bus/event_source/devices/kprobe/type", "6\n")]);
    let e = check_host(d.path()).unwrap_err();
    assert!(!e.contains("kprobes ("), "{e}");
    assert!(e.contains("IPVS"), "{e}");
    let d = tree(&[("proc/net/ip_vs", "IP Virtual Server version 1.2.1\n")]);
    let e = check_host(d.path()).unwrap_err();
    assert!(e.contains("kprobes"), "{e}");
    assert!(!e.contains("IPVS ("), "{e}");
}

#[test]
fn a_host_with_both_passes_by_either_source() {
    let d = tree(&[
        ("sys/kernel/tracing/kprobe_events", ""),
        (
            "proc/kallsyms",
            "ffffffffc0a01000 t ip_vs_conn_new\t[ip_vs]\nffffffffc0a02000 t ip_vs_conn_expire\t[ip_vs]\n",
        ),
    ]);
    assert_eq!(check_host(d.path()), Ok(()));
    let d = tree(&[
        ("sys/bus/event_source/devices/kprobe/type", "6\n"),
        ("proc/net/ip_vs", ""),
    ]);
    assert_eq!(check_host(d.path()), Ok(()));
}

/// This machine: its verdict matches what it has (the live kernel here has
/// neither, INFRA; the test states what it found either way).
#[test]
fn the_real_host_verdict_matches_its_files() {
    let root = Path::new("/");
    let kp = kprobe_sources(root).iter().any(|p| p.exists());
    let ipvs = root.join("proc/net/ip_vs").exists() || kallsyms_has(root, CONN_NEW);
    assert_eq!(check_host(root).is_ok(), kp && ipvs);
}

/// The object loads on a kernel without `struct ip_vs_conn` (the CO-RE
/// guards), so a build for IPVS hosts is also checked here. Needs root.
#[test]
fn the_object_loads_without_ipvs_in_the_kernel() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test loads eBPF and needs root: run `make test` as root");
    }
    let mut storage = MaybeUninit::<OpenObject>::uninit();
    let skel = load(&mut storage).expect("the ipvs_link object loads here");
    assert_eq!(read_flows(&skel, &mut false).len(), 0);
    assert_eq!(overflow(&skel), 0);
}
