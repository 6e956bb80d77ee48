use std::path::Path;

use super::offsets::{self, OffsetsFile, KNOWN};
use super::*;

/// The stock nginx of the machine (scripts/deps.sh installs it).
const NGINX: &str = "/usr/sbin/nginx";

fn nginx_bytes() -> Vec<u8> {
    std::fs::read(NGINX).unwrap_or_else(|e| {
        panic!("{NGINX}: {e}: these tests need the Debian nginx package (scripts/deps.sh)")
    })
}

#[test]
fn keys_decode_to_records_in_meta_order() {
    let mut k = [0u8; KEY_SIZE];
    k[..4].copy_from_slice(&[10, 0, 0, 1]);
    k[16..20].copy_from_slice(&[10, 0, 0, 2]);
    // An IPv4-mapped IPv6 upstream.
    k[32 + 10] = 0xff;
    k[32 + 11] = 0xff;
    k[44..48].copy_from_slice(&[10, 0, 1, 3]);
    k[48..50].copy_from_slice(&2u16.to_ne_bytes());
    k[50..52].copy_from_slice(&10u16.to_ne_bytes());
    k[52..54].copy_from_slice(&8080u16.to_ne_bytes());
    k[54..56].copy_from_slice(&9001u16.to_ne_bytes());
    k[56] = 1;
    let key = LinkKey::decode(&k).expect("decodes");
    assert_eq!(
        key.record(7),
        ["10.0.0.1", "10.0.0.2", "10.0.1.3", "8080", "9001", "1", "7"]
    );
    // An unknown family, or a short key, is not a record.
    k[48] = 99;
    assert_eq!(LinkKey::decode(&k), None);
    assert_eq!(LinkKey::decode(&k[..10]), None);
}

#[test]
fn the_meta_file_has_the_record_fields() {
    let meta = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../meta/nginx_link.meta"
    ))
    .expect("meta/nginx_link.meta");
    let names: Vec<&str> = meta
        .split(" name: \"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(
        names,
        [
            "client_ip",
            "virtual_ip",
            "server_ip",
            "virtual_port",
            "server_port",
            "is_l7",
            "link_count"
        ]
    );
}

#[test]
fn the_stock_nginx_is_accepted_with_the_table() {
    let data = nginx_bytes();
    let c = offsets::check(&data, Path::new(NGINX), None).expect("the stock nginx is accepted");
    assert!(c.version.starts_with("1.22."), "{}", c.version);
    assert_eq!(c.hook.table, crate::lb_common::elf::SymTable::Dynsym);
    assert!(c.hook.file_offset > 0 && c.hook.size > 0);
    // Debian builds with ssl and --with-compat.
    assert_eq!(c.offsets.pc_log, 112);
    assert!(c.source.contains("ssl/compat"), "{}", c.source);
}

/// The 1.22 row of the table is what scripts/nginx-offsets.sh measures
/// against the installed nginx-dev headers and build flags.
#[test]
fn the_table_row_matches_the_offsets_script() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/nginx-offsets.sh");
    let out = std::process::Command::new("sh")
        .arg(script)
        .output()
        .expect("run scripts/nginx-offsets.sh");
    assert!(
        out.status.success(),
        "scripts/nginx-offsets.sh failed (needs nginx-dev, a C compiler and the openssl, pcre2, zlib headers): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let f = OffsetsFile::parse(&text).expect("the script's output parses");
    let v = f.version.clone().expect("the script prints the version");
    let row = KNOWN
        .iter()
        .find(|k| v.starts_with(&format!("{}.{}.", k.series.0, k.series.1)))
        .unwrap_or_else(|| panic!("installed nginx {v} has no row"));
    assert_eq!(f.offsets.pc_log, row.pc_log_ssl, "{text}");
    assert_eq!(f.offsets.log_data, row.log_data);
    assert_eq!(f.offsets.conn_fd, row.conn_fd);
    assert_eq!(f.offsets.http_conn, row.http_conn);
    assert_eq!(f.offsets.strm_conn, row.strm_conn);
    // And the same file given with -p gives the same offsets.
    let c = offsets::check(&nginx_bytes(), Path::new(NGINX), Some(&f)).expect("accepted");
    assert_eq!(c.offsets, f.offsets);
    assert!(c.source.contains("file"));
}

fn patched(from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut data = nginx_bytes();
    let mut n = 0;
    while let Some(p) = crate::lb_common::elf::find(&data, from) {
        data[p..p + to.len()].copy_from_slice(to);
        n += 1;
    }
    assert!(n > 0, "no {:?} in {NGINX}", String::from_utf8_lossy(from));
    data
}

#[test]
fn an_unknown_version_is_refused_naming_it() {
    let v = elf::version_after(&nginx_bytes(), b"nginx/").expect("version");
    let data = patched(format!("nginx/{v}").as_bytes(), b"nginx/9.99.9");
    let e = offsets::check(&data, Path::new("/tmp/x/nginx"), None).expect_err("refused");
    assert!(e.contains("/tmp/x/nginx"), "{e}");
    assert!(e.contains("nginx/9.99.9"), "{e}");
    assert!(e.contains("scripts/nginx-offsets.sh"), "{e}");
    assert!(e.contains("docs/nginx_link.md"), "{e}");
    // A file for another version does not apply either; one for any
    // version does.
    let other = OffsetsFile::parse(
        "version = 1.22.1\npeer_connection.log = 112\nlog.data = 40\nconnection.fd = 24\n",
    )
    .expect("file");
    let e = offsets::check(&data, Path::new("/tmp/x/nginx"), Some(&other)).expect_err("refused");
    assert!(e.contains("file given is for nginx/1.22.1"), "{e}");
    let any = OffsetsFile {
        version: None,
        ..other
    };
    assert!(offsets::check(&data, Path::new("/tmp/x/nginx"), Some(&any)).is_ok());
}

#[test]
fn a_binary_without_the_hook_symbol_is_refused() {
    // Same length: the dynamic symbol's name no longer matches.
    let data = patched(b"ngx_event_connect_peer\0", b"ngx_event_connect_pee_\0");
    let e = offsets::check(&data, Path::new("/tmp/y/nginx"), None).expect_err("refused");
    assert!(e.contains("ngx_event_connect_peer"), "{e}");
    assert!(e.contains("/tmp/y/nginx (nginx/1.22"), "{e}");
    let e = offsets::check(b"#!/bin/sh\n", Path::new("/tmp/z"), None).expect_err("not ELF");
    assert!(e.contains("/tmp/z") && e.contains("ELF"), "{e}");
}

use crate::lb_common::elf;

/// Loads the program and attaches it to the stock nginx binary (needs
/// root): the uprobes are accepted by this kernel at the offset found.
#[test]
fn the_programs_attach_to_the_stock_nginx() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF programs: run it as root"
    );
    let data = nginx_bytes();
    let c = offsets::check(&data, Path::new(NGINX), None).expect("accepted");
    let mut storage = MaybeUninit::<OpenObject>::uninit();
    let open = NginxLinkSkelBuilder::default()
        .open(&mut storage)
        .expect("open");
    let skel = open.load().expect("load");
    for (prog, ret) in [
        (&skel.progs.nginx_connect_peer_enter_multi, false),
        (&skel.progs.nginx_connect_peer_exit_multi, true),
    ] {
        let link =
            lb_common::attach_uprobe_multi(prog, ret, Path::new(NGINX), c.hook.file_offset, 3)
                .expect("attach");
        drop(link);
    }
}
