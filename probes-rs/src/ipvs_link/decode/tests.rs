//! Decoding of the kernel side's entries, against byte layouts built from a
//! `#[repr(C)]` mirror of `ipvs_link.h`.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails on the first unexpected value"
)]

use std::collections::HashMap;
use std::mem::{offset_of, size_of};

use super::*;

/// Mirror of `struct ipvs_key`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct IpvsKey {
    caddr: [u8; 16],
    vaddr: [u8; 16],
    daddr: [u8; 16],
    laddr: [u8; 16],
    vport: u16, // network order
    dport: u16, // network order
    af: u16,
    daf: u16,
    protocol: u16,
    pad: u16,
}

/// Mirror of `struct ipvs_val`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct IpvsVal {
    opened: u64,
    closed: u64,
}

fn bytes<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: T is a plain #[repr(C)] struct of integers, without padding
    // (checked by the size asserts below).
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

#[test]
fn the_mirror_matches_the_c_layout() {
    assert_eq!(size_of::<IpvsKey>(), KEY_SIZE);
    assert_eq!(size_of::<IpvsVal>(), VAL_SIZE);
    assert_eq!(offset_of!(IpvsKey, caddr), off::CADDR);
    assert_eq!(offset_of!(IpvsKey, vaddr), off::VADDR);
    assert_eq!(offset_of!(IpvsKey, daddr), off::DADDR);
    assert_eq!(offset_of!(IpvsKey, laddr), off::LADDR);
    assert_eq!(offset_of!(IpvsKey, vport), off::VPORT);
    assert_eq!(offset_of!(IpvsKey, dport), off::DPORT);
    assert_eq!(offset_of!(IpvsKey, af), off::AF);
    assert_eq!(offset_of!(IpvsKey, daf), off::DAF);
    assert_eq!(offset_of!(IpvsKey, protocol), off::PROTOCOL);
    assert_eq!(offset_of!(IpvsVal, closed), 8);
    // The C header says the same.
    let h = include_str!("../ipvs_link.h");
    for f in [
        "__u8 caddr[16]",
        "__u8 laddr[16]",
        "__be16 vport",
        "__be16 dport",
        "__u16 af",
        "__u16 daf",
        "__u16 protocol",
        "__u64 opened",
        "__u64 closed",
    ] {
        assert!(h.contains(f), "ipvs_link.h lacks {f}");
    }
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..4].copy_from_slice(&a);
    x
}

fn key_v4() -> IpvsKey {
    IpvsKey {
        caddr: v4([192, 168, 1, 10]),
        vaddr: v4([10, 0, 0, 100]),
        daddr: v4([10, 0, 1, 2]),
        laddr: [0; 16],
        vport: 80u16.to_be(),
        dport: 8080u16.to_be(),
        af: AF_INET,
        daf: AF_INET,
        protocol: 6,
        pad: 0,
    }
}

#[test]
fn ipv4_flow_with_ports_in_network_order() {
    let k = FlowKey::decode(&bytes(&key_v4())).expect("decode");
    assert_eq!(k.client.to_string(), "192.168.1.10");
    assert_eq!(k.virtual_ip.to_string(), "10.0.0.100");
    assert_eq!(k.server.to_string(), "10.0.1.2");
    assert_eq!((k.virtual_port, k.server_port), (80, 8080));
    assert_eq!(k.protocol, 6);
    assert_eq!(k.local, None);
    assert_eq!(
        k.record(3),
        [
            "ipvs",
            "192.168.1.10",
            "10.0.0.100",
            "192.168.1.10",
            "10.0.1.2",
            "8080",
            "80",
            "6",
            "2",
            "3"
        ]
    );
    // A port whose two bytes differ proves the byte order: 0x1f90 = 8080
    // read big-endian, 0x901f = 36895 if read in host order.
    assert_ne!(8080u16.to_be_bytes(), 8080u16.to_ne_bytes());
}

#[test]
fn ipv6_flow_and_udp_and_sctp() {
    let a = |s: &str| s.parse::<Ipv6Addr>().unwrap().octets();
    let k = IpvsKey {
        caddr: a("2001:db8::10"),
        vaddr: a("2001:db8::100"),
        daddr: a("2001:db8:1::2"),
        laddr: a("2001:db8:2::1"),
        vport: 53u16.to_be(),
        dport: 5353u16.to_be(),
        af: AF_INET6,
        daf: AF_INET6,
        protocol: 17,
        pad: 0,
    };
    let d = FlowKey::decode(&bytes(&k)).expect("decode");
    let r = d.record(1);
    assert_eq!(
        r,
        [
            "ipvs",
            "2001:db8::10",
            "2001:db8::100",
            "2001:db8:2::1",
            "2001:db8:1::2",
            "5353",
            "53",
            "17",
            "10",
            "1"
        ]
    );
    let sctp = IpvsKey {
        protocol: 132,
        ..key_v4()
    };
    assert_eq!(FlowKey::decode(&bytes(&sctp)).unwrap().protocol, 132);
}

#[test]
fn mixed_family_service_shows_the_v4_server() {
    // An IPv6 virtual service in front of an IPv4 real server (daf).
    let a6 = "2001:db8::100".parse::<Ipv6Addr>().unwrap().octets();
    let k = IpvsKey {
        caddr: a6,
        vaddr: a6,
        daddr: v4([10, 0, 1, 2]),
        af: AF_INET6,
        daf: AF_INET,
        ..key_v4()
    };
    let d = FlowKey::decode(&bytes(&k)).unwrap();
    assert_eq!(d.server.to_string(), "10.0.1.2");
    assert_eq!(d.family(), AF_INET6);
}

#[test]
fn short_or_bad_input_is_an_error_not_a_panic() {
    let b = bytes(&key_v4());
    for n in [0, 1, 16, 63, KEY_SIZE - 1] {
        assert_eq!(
            FlowKey::decode(&b[..n]),
            Err(DecodeError::Short {
                what: "struct ipvs_key",
                got: n,
                expected: KEY_SIZE
            })
        );
    }
    let bad = IpvsKey { af: 1, ..key_v4() };
    let e = FlowKey::decode(&bytes(&bad)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "struct ipvs_key af: address family 1, expected 2 (AF_INET) or 10 (AF_INET6)"
    );
    let bad = IpvsKey { daf: 0, ..key_v4() };
    assert!(FlowKey::decode(&bytes(&bad)).is_err());
    assert!(FlowVal::decode(&[0; 15]).is_err());
    // Every truncation and a sweep of garbage: errors or values, no panic.
    for n in 0..=KEY_SIZE + 4 {
        let g: Vec<u8> = (0..n).map(|i| (i * 37 % 251) as u8).collect();
        let _ = FlowKey::decode(&g);
        let _ = FlowVal::decode(&g);
    }
}

#[test]
fn values_decode_and_periods_count_live_and_closed_connections() {
    let v = FlowVal::decode(&bytes(&IpvsVal {
        opened: 7,
        closed: 2,
    }))
    .unwrap();
    assert_eq!(
        v,
        FlowVal {
            opened: 7,
            closed: 2
        }
    );
    let k = FlowKey::decode(&bytes(&key_v4())).unwrap();
    let mut p = Periods::default();
    // 7 opened, 2 closed already: 7 connections were alive in the period.
    let (r, idle) = p.period(&[(k, v)], 3);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].last().unwrap(), "7");
    assert!(idle.is_empty());
    // Next period: 1 new, 4 more closed: alive were the 5 open at the
    // previous report plus the new one.
    let v2 = FlowVal {
        opened: 8,
        closed: 6,
    };
    let (r, _) = p.period(&[(k, v2)], 3);
    assert_eq!(r[0].last().unwrap(), "6");
    // All closed, nothing new: 2 closed during this period.
    let v3 = FlowVal {
        opened: 8,
        closed: 8,
    };
    let (r, _) = p.period(&[(k, v3)], 3);
    assert_eq!(r[0].last().unwrap(), "2");
    // Quiet from now on: no record, and after 3 quiet periods (this one
    // counted) the flow is to be deleted from the kernel map.
    let (r, idle) = p.period(&[(k, v3)], 3);
    assert!(r.is_empty() && idle.is_empty());
    let (r, idle) = p.period(&[(k, v3)], 3);
    assert!(r.is_empty());
    assert_eq!(idle, vec![k]);
}

/// The field names of `table` in a meta file, in order.
fn meta_fields(meta: &str, table: &str) -> Vec<String> {
    let start = meta
        .find(&format!("table_name: \"{table}\""))
        .expect("table in meta");
    let body = &meta[start..];
    let end = body[1..].find("table_name:").map_or(body.len(), |e| e + 1);
    body[..end]
        .split("name: \"")
        .skip(3) // the text before table_name, table_name, entity_name
        .filter_map(|s| s.split('"').next().map(str::to_owned))
        .collect()
}

/// The record matches meta/ipvs_link.meta field for field, and carries
/// what gala-spider's LbLink::from_record reads (gopher/src/topology_records.rs):
/// client_ip, virtual_ip, server_ip (non-empty), virtual_port, server_port
/// (numbers), local_ip and process_name (optional), link_count (a number).
#[test]
fn the_record_follows_the_meta_file_and_what_the_spider_reads() {
    let names = meta_fields(include_str!("../../../../meta/ipvs_link.meta"), "ipvs_link");
    assert_eq!(
        names,
        [
            "process_name",
            "client_ip",
            "virtual_ip",
            "local_ip",
            "server_ip",
            "server_port",
            "virtual_port",
            "protocol",
            "family",
            "link_count"
        ]
    );
    let k = FlowKey::decode(&bytes(&key_v4())).unwrap();
    let rec = k.record(5);
    assert_eq!(rec.len(), names.len());
    let f: HashMap<&str, &str> = names
        .iter()
        .map(String::as_str)
        .zip(rec.iter().map(String::as_str))
        .collect();
    for ip in ["client_ip", "virtual_ip", "local_ip", "server_ip"] {
        assert!(f[ip].parse::<IpAddr>().is_ok(), "{ip}: {}", f[ip]);
    }
    for port in ["virtual_port", "server_port"] {
        assert!(f[port].parse::<u16>().is_ok(), "{port}: {}", f[port]);
    }
    assert_eq!(f["link_count"].parse::<u64>(), Ok(5));
    assert_eq!(f["process_name"], "ipvs");
}
