//! Decoding of the kernel side's records against byte layouts built from
//! `#[repr(C)]` mirrors of `dnsmasq_link.h`, and DNS parsing of good,
//! truncated and garbage messages.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails on the first unexpected value"
)]

use std::mem::{offset_of, size_of};

use super::*;

/// Mirror of `struct dl_query`.
#[repr(C)]
#[derive(Clone, Copy)]
struct DlQuery {
    tgid: u32,
    payload_len: u32,
    ret: u32,
    name_len: u16,
    ctl_len: u16,
    sock_family: u16,
    sock_port: u16,
    sock_addr: [u8; 16],
    name: [u8; NAME_MAX],
    comm: [u8; COMM_LEN],
    ctl: [u8; CTL_MAX],
    payload: [u8; PAYLOAD_MAX],
}

/// Mirror of `struct dl_client_key`.
#[repr(C)]
struct DlClientKey {
    family: u16,
    port: u16,
    addr: [u8; 16],
}

/// Mirror of `struct dl_client_val`.
#[repr(C)]
struct DlClientVal {
    pid: u32,
    tid: u32,
    ts: u64,
    comm: [u8; COMM_LEN],
}

fn bytes<T>(v: &T) -> Vec<u8> {
    // SAFETY: a #[repr(C)] struct of integers and byte arrays, no padding
    // (sizes asserted below).
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

#[test]
fn the_mirrors_match_the_c_layout() {
    assert_eq!(size_of::<DlQuery>(), QUERY_SIZE);
    assert_eq!(size_of::<DlClientKey>(), CLIENT_KEY_SIZE);
    assert_eq!(size_of::<DlClientVal>(), CLIENT_VAL_SIZE);
    assert_eq!(offset_of!(DlQuery, tgid), off::TGID);
    assert_eq!(offset_of!(DlQuery, payload_len), off::PAYLOAD_LEN);
    assert_eq!(offset_of!(DlQuery, ret), off::RET);
    assert_eq!(offset_of!(DlQuery, name_len), off::NAME_LEN);
    assert_eq!(offset_of!(DlQuery, ctl_len), off::CTL_LEN);
    assert_eq!(offset_of!(DlQuery, sock_family), off::SOCK_FAMILY);
    assert_eq!(offset_of!(DlQuery, sock_port), off::SOCK_PORT);
    assert_eq!(offset_of!(DlQuery, sock_addr), off::SOCK_ADDR);
    assert_eq!(offset_of!(DlQuery, name), off::NAME);
    assert_eq!(offset_of!(DlQuery, comm), off::COMM);
    assert_eq!(offset_of!(DlQuery, ctl), off::CTL);
    assert_eq!(offset_of!(DlQuery, payload), off::PAYLOAD);
    assert_eq!(offset_of!(DlClientVal, comm), 16);
    let h = include_str!("../dnsmasq_link.h");
    for (def, v) in [
        ("DL_PAYLOAD_MAX ", PAYLOAD_MAX),
        ("DL_CTL_MAX ", CTL_MAX),
        ("DL_NAME_MAX ", NAME_MAX),
        ("DL_COMM_LEN ", COMM_LEN),
    ] {
        assert!(h.contains(&format!("#define {def}{v}")), "{def} is not {v}");
    }
}

/// A DNS query for `name`, type `qtype`, as a resolver sends it.
pub(crate) fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&[0; 6]);
    for l in name.split('.').filter(|l| !l.is_empty()) {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

fn sockaddr_in(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut s = vec![0u8; 16];
    s[..2].copy_from_slice(&AF_INET.to_ne_bytes());
    s[2..4].copy_from_slice(&port.to_be_bytes());
    s[4..8].copy_from_slice(&ip);
    s
}

fn sockaddr_in6(ip: Ipv6Addr, port: u16) -> Vec<u8> {
    let mut s = vec![0u8; 28];
    s[..2].copy_from_slice(&AF_INET6.to_ne_bytes());
    s[2..4].copy_from_slice(&port.to_be_bytes());
    s[8..24].copy_from_slice(&ip.octets());
    s
}

fn pktinfo4(dst: [u8; 4]) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend_from_slice(&28u64.to_ne_bytes()); // 16 + sizeof(in_pktinfo)
    c.extend_from_slice(&0i32.to_ne_bytes());
    c.extend_from_slice(&8i32.to_ne_bytes());
    c.extend_from_slice(&3i32.to_ne_bytes()); // ifindex
    c.extend_from_slice(&[0; 4]); // spec_dst
    c.extend_from_slice(&dst);
    c.extend_from_slice(&[0; 4]); // alignment to 32
    c
}

fn query(name: &[u8], ctl: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut q = DlQuery {
        tgid: 4242,
        payload_len: payload.len().min(PAYLOAD_MAX) as u32,
        ret: payload.len() as u32,
        name_len: name.len() as u16,
        ctl_len: ctl.len() as u16,
        sock_family: AF_INET,
        sock_port: 53,
        sock_addr: [0; 16],
        name: [0; NAME_MAX],
        comm: [0; COMM_LEN],
        ctl: [0; CTL_MAX],
        payload: [0; PAYLOAD_MAX],
    };
    q.name[..name.len()].copy_from_slice(name);
    q.ctl[..ctl.len()].copy_from_slice(ctl);
    let n = payload.len().min(PAYLOAD_MAX);
    q.payload[..n].copy_from_slice(&payload[..n]);
    q.comm[..7].copy_from_slice(b"dnsmasq");
    bytes(&q)
}

#[test]
fn an_ipv4_query_gives_the_sender_the_name_and_the_address_asked() {
    let s = query(
        &sockaddr_in([10, 1, 2, 3], 40001),
        &pktinfo4([10, 1, 2, 1]),
        &dns_query(7, "WWW.Example.Test", 1),
    );
    let Outcome::Query(q) = classify(&s) else {
        panic!("{:?}", classify(&s));
    };
    assert_eq!(q.client.to_string(), "10.1.2.3");
    assert_eq!(q.client_port, 40001);
    assert_eq!(q.server.to_string(), "10.1.2.1");
    assert_eq!(q.domain, "www.example.test");
    assert_eq!(q.server_comm, "dnsmasq");
    let raw = RawQuery::decode(&s).unwrap();
    assert_eq!((raw.tgid, raw.sock_port), (4242, 53));
}

#[test]
fn ipv6_sender_pktinfo6_and_v4_mapped_addresses() {
    let mut ctl = Vec::new();
    ctl.extend_from_slice(&36u64.to_ne_bytes());
    ctl.extend_from_slice(&41i32.to_ne_bytes());
    ctl.extend_from_slice(&50i32.to_ne_bytes());
    ctl.extend_from_slice(&"fd00::53".parse::<Ipv6Addr>().unwrap().octets());
    ctl.extend_from_slice(&2i32.to_ne_bytes());
    let s = query(
        &sockaddr_in6("fd00::7".parse().unwrap(), 5353),
        &ctl,
        &dns_query(1, "a.b", 28),
    );
    let Outcome::Query(q) = classify(&s) else {
        panic!()
    };
    assert_eq!(
        (q.client.to_string(), q.server.to_string()),
        ("fd00::7".into(), "fd00::53".into())
    );
    // A v4-mapped sender (a dual-stack socket) is shown as IPv4.
    let s = query(
        &sockaddr_in6("::ffff:10.0.0.9".parse().unwrap(), 1000),
        &[],
        &dns_query(1, "a.b", 1),
    );
    let Outcome::Query(q) = classify(&s) else {
        panic!()
    };
    assert_eq!(q.client.to_string(), "10.0.0.9");
    // No pktinfo and a wildcard-bound socket: the address asked is unknown.
    assert_eq!(q.server.to_string(), "0.0.0.0");
}

#[test]
fn pktinfo_is_found_after_other_messages_and_bad_headers_stop_the_walk() {
    let mut ctl = Vec::new();
    // An IP_TTL message first (16 + 4, padded to 24).
    ctl.extend_from_slice(&20u64.to_ne_bytes());
    ctl.extend_from_slice(&0i32.to_ne_bytes());
    ctl.extend_from_slice(&2i32.to_ne_bytes());
    ctl.extend_from_slice(&[64, 0, 0, 0, 0, 0, 0, 0]);
    ctl.extend_from_slice(&pktinfo4([192, 0, 2, 1]));
    assert_eq!(pktinfo_dst(&ctl), Some("192.0.2.1".parse().unwrap()));
    // A header claiming more than there is, or less than a header.
    let mut bad = pktinfo4([1, 2, 3, 4]);
    bad[..8].copy_from_slice(&1000u64.to_ne_bytes());
    assert_eq!(pktinfo_dst(&bad), None);
    bad[..8].copy_from_slice(&3u64.to_ne_bytes());
    assert_eq!(pktinfo_dst(&bad), None);
    bad[..8].copy_from_slice(&u64::MAX.to_ne_bytes());
    assert_eq!(pktinfo_dst(&bad), None);
    assert_eq!(pktinfo_dst(&[]), None);
}

#[test]
fn dns_names_are_lowercased_escaped_and_bounded() {
    assert_eq!(
        parse_dns(&dns_query(1, "Example.TEST", 1)),
        Ok(Dns::Query {
            name: "example.test".into(),
            qtype: 1
        })
    );
    assert_eq!(
        parse_dns(&dns_query(1, "", 2)),
        Ok(Dns::Query {
            name: ".".into(),
            qtype: 2
        })
    );
    // A label holding a dot, a space and a byte above 0x7e.
    let mut m = dns_query(1, "", 1);
    m.splice(12..12, [4u8, b'a', b'.', b' ', 0xff]);
    assert_eq!(
        parse_dns(&m),
        Ok(Dns::Query {
            name: "a\\.\\032\\255".into(),
            qtype: 1
        })
    );
    // 5 labels of 63 bytes: 320 bytes of name, over the 255 limit.
    let long = vec!["a".repeat(63); 5].join(".");
    assert_eq!(
        parse_dns(&dns_query(1, &long, 1)),
        Err(DecodeError::Dns("question name longer than 255 bytes"))
    );
}

#[test]
fn responses_and_other_opcodes_are_ignored_not_counted() {
    let mut m = dns_query(1, "a.test", 1);
    m[2] |= 0x80; // QR
    assert_eq!(parse_dns(&m), Ok(Dns::Other));
    let mut m = dns_query(1, "a.test", 6);
    m[2] = 5 << 3; // UPDATE
    assert_eq!(parse_dns(&m), Ok(Dns::Other));
    let s = query(&sockaddr_in([1, 1, 1, 1], 53), &[], &m);
    assert_eq!(classify(&s), Outcome::Ignored);
}

#[test]
fn garbage_and_truncation_are_errors_never_panics() {
    let good = dns_query(9, "www.example.test", 1);
    // Every truncation of a good query.
    for n in 0..good.len() {
        assert!(parse_dns(&good[..n]).is_err(), "cut at {n}");
    }
    assert_eq!(
        parse_dns(b"garbage!"),
        Err(DecodeError::Dns("shorter than the 12-byte header"))
    );
    let mut no_q = good.clone();
    no_q[5] = 0;
    assert_eq!(
        parse_dns(&no_q),
        Err(DecodeError::Dns("a query without a question"))
    );
    let mut ptr = good.clone();
    ptr[12] = 0xc0;
    assert!(parse_dns(&ptr).is_err());
    // A deterministic sweep of random bytes through the whole decoder.
    let mut x: u32 = 0x1234_5678;
    for len in 0..600 {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let _ = parse_dns(&data);
        let _ = pktinfo_dst(&data);
        let _ = sockaddr(&data);
        let _ = classify(&data);
        let _ = ClientVal::decode(&data);
        let _ = RawQuery::decode(&data);
    }
}

#[test]
fn bad_records_from_the_kernel_are_errors() {
    assert_eq!(
        RawQuery::decode(&[0; 100]),
        Err(DecodeError::Short {
            what: "struct dl_query",
            got: 100,
            expected: QUERY_SIZE
        })
    );
    let mut s = query(&sockaddr_in([1, 2, 3, 4], 1), &[], &dns_query(1, "a", 1));
    s[off::PAYLOAD_LEN..off::PAYLOAD_LEN + 4].copy_from_slice(&9999u32.to_ne_bytes());
    assert_eq!(
        RawQuery::decode(&s).unwrap_err().to_string(),
        "payload_len: length 9999 exceeds its buffer of 512"
    );
    let s = query(&[1, 0, 0, 0], &[], &dns_query(1, "a", 1));
    assert!(matches!(
        classify(&s),
        Outcome::Malformed(DecodeError::Family(1))
    ));
    let s = query(
        &sockaddr_in([1, 2, 3, 4], 1)[..6],
        &[],
        &dns_query(1, "a", 1),
    );
    assert!(matches!(
        classify(&s),
        Outcome::Malformed(DecodeError::Short { .. })
    ));
    let s = query(
        &sockaddr_in([1, 2, 3, 4], 1),
        &[],
        b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00garbage-not-dns",
    );
    assert!(matches!(
        classify(&s),
        Outcome::Malformed(DecodeError::Dns(_))
    ));
}

#[test]
fn client_keys_and_values_match_the_kernel_layout() {
    let k = client_key(AF_INET, 40001, Some("10.1.2.3".parse().unwrap()));
    let m = DlClientKey {
        family: AF_INET,
        port: 40001,
        addr: [10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    };
    assert_eq!(k.to_vec(), bytes(&m));
    let keys = client_keys("10.1.2.3".parse().unwrap(), 40001);
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[1], client_key(AF_INET, 40001, None));
    assert_eq!(keys[2][..2], AF_INET6.to_ne_bytes());
    let mut comm = [0u8; COMM_LEN];
    comm[..7].copy_from_slice(b"python3");
    let v = DlClientVal {
        pid: 77,
        tid: 78,
        ts: 1,
        comm,
    };
    assert_eq!(
        ClientVal::decode(&bytes(&v)),
        Ok(ClientVal {
            pid: 77,
            comm: "python3".into(),
            ts: 1
        })
    );
    // Freshness: a minute at most since the socket's last send.
    let v = ClientVal::decode(&bytes(&v)).unwrap();
    assert!(v.fresh(1 + CLIENT_FRESH_NS));
    assert!(!v.fresh(2 + CLIENT_FRESH_NS));
    assert!(v.fresh(0), "a send stamped just after the query arrived");
    assert!(ClientVal::decode(&[0; 31]).is_err());
}

#[test]
fn a_period_counts_per_asker_and_name() {
    let q = |client: &str, domain: &str| Query {
        client: client.parse().unwrap(),
        client_port: 1,
        server: "10.0.0.53".parse().unwrap(),
        domain: domain.into(),
        server_comm: "dnsmasq".into(),
    };
    let py = ClientVal {
        pid: 10,
        comm: "python3".into(),
        ts: 0,
    };
    let mut p = Period::default();
    for _ in 0..3 {
        p.add(&q("10.0.0.2", "a.test"), Some(&py));
    }
    p.add(&q("10.0.0.2", "b.test"), Some(&py));
    p.add(&q("fd00::2", "a.test"), None);
    let r = p.take();
    assert_eq!(
        r,
        vec![
            vec![
                "10.0.0.2",
                "10.0.0.53",
                "a.test",
                "10",
                "python3",
                "dnsmasq",
                "4",
                "3"
            ],
            vec![
                "10.0.0.2",
                "10.0.0.53",
                "b.test",
                "10",
                "python3",
                "dnsmasq",
                "4",
                "1"
            ],
            vec![
                "fd00::2",
                "10.0.0.53",
                "a.test",
                "0",
                "",
                "dnsmasq",
                "6",
                "1"
            ],
        ]
    );
    assert!(p.take().is_empty(), "a period starts empty");
    // A flood of distinct names stops at MAX_RECORDS; known ones still count.
    for i in 0..MAX_RECORDS {
        assert!(p.add(&q("10.0.0.3", &format!("n{i}.test")), None));
    }
    assert!(!p.add(&q("10.0.0.3", "one-more.test"), None));
    assert!(p.add(&q("10.0.0.3", "n0.test"), None));
    let r = p.take();
    assert_eq!(r.len(), MAX_RECORDS);
    assert!(r.iter().any(|r| r[2] == "n0.test" && r[7] == "2"));
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

/// The records follow meta/dnsmasq_link.meta (the contract with gala-spider:
/// client_ip, virtual_ip, domain, pid, process_comm, server_comm, family,
/// link_count), and the probe's stats record its second table.
#[test]
fn the_records_follow_the_meta_file() {
    let meta = include_str!("../../../../meta/dnsmasq_link.meta");
    assert_eq!(
        meta_fields(meta, "dnsmasq_link"),
        [
            "client_ip",
            "virtual_ip",
            "domain",
            "pid",
            "process_comm",
            "server_comm",
            "family",
            "link_count"
        ]
    );
    let mut p = Period::default();
    p.add(
        &Query {
            client: "10.0.0.2".parse().unwrap(),
            client_port: 1,
            server: "10.0.0.1".parse().unwrap(),
            domain: "a.test".into(),
            server_comm: "dnsmasq".into(),
        },
        None,
    );
    assert_eq!(p.take()[0].len(), 8);
    assert_eq!(
        meta_fields(meta, "dnsmasq_link_probe_stats"),
        [
            "probe",
            "queries",
            "local_queries",
            "ignored",
            "malformed",
            "lost"
        ]
    );
}
