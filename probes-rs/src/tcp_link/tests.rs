//! Pure tests: map decoding on byte fixtures (`tests/data/ebpf/maps.hex`,
//! written with Python's struct module), the per-period aggregation, the
//! options, and the /proc seeding on the fixtures of `tests/data/proc`.

use std::collections::HashMap;
use std::net::IpAddr;

use super::decode::*;
use super::procscan;
use super::*;

const MAPS: &str = include_str!("../../../tests/data/ebpf/maps.hex");

fn fixture(name: &str) -> Vec<u8> {
    let line = MAPS
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("fixture {name}"));
    (0..line.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex"))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
#[cfg(target_endian = "little")]
fn decodes_map_fixtures() {
    let k = ConnKey::decode(&fixture("conn_key_v4")).expect("conn key");
    assert_eq!(
        (k.netns, k.family, k.lport, k.rport),
        (4026531840, AF_INET, 40000, 8080)
    );
    assert_eq!(addr(k.family, &k.laddr), ip("10.200.1.1"));
    assert_eq!(addr(k.family, &k.raddr), ip("10.200.1.2"));
    let v = ConnVal::decode(&fixture("conn_val_v4")).expect("conn val");
    assert_eq!(
        v,
        ConnVal {
            sk: 0xffff_8880_1234_5678,
            pid: 4242,
            role: 1,
            pid_src: pid_src::CONNECT,
            comm: comm_bytes("curl"),
            rx_bytes: 2000,
            tx_bytes: 100,
            segs_in: 7,
            segs_out: 6,
            retrans: 1,
            drops: 0,
            srtt_us: 55,
            samples: 3,
            ino: 98765,
            key: k,
        }
    );
    // Encoding gives the same bytes back (user space writes entries too).
    assert_eq!(k.encode().to_vec(), fixture("conn_key_v4"));
    assert_eq!(v.encode().to_vec(), fixture("conn_val_v4"));

    let k6 = ConnKey::decode(&fixture("conn_key_v6")).expect("v6 key");
    let v6 = ConnVal::decode(&fixture("conn_val_v6")).expect("v6 val");
    assert_eq!(v6.key, k6);
    assert_eq!(
        (v6.pid, v6.role, v6.pid_src, v6.samples),
        (77, 0, pid_src::LISTEN, 0)
    );
    assert_eq!(comm_text(&v6.comm), "nginx");
    assert_eq!(k6.family, AF_INET6);
    assert_eq!(
        addr(k6.family, &k6.laddr),
        ip("127.0.0.1"),
        "v4-mapped shown as IPv4"
    );

    let lk = LinkKey::decode(&fixture("link_key")).expect("link key");
    assert_eq!(
        (lk.pid, lk.role, lk.family, lk.server_port),
        (4242, 1, 10, 443)
    );
    assert_eq!(lk.encode().to_vec(), fixture("link_key"));
    let lv = LinkVal::decode(&fixture("link_val")).expect("link val");
    assert_eq!(
        (
            lv.closed,
            lv.rx_bytes,
            lv.tx_bytes,
            lv.segs_in,
            lv.segs_out,
            lv.retrans,
            lv.drops,
            lv.srtt_sum_us
        ),
        (3, 3000, 300, 21, 18, 4, 1, 150)
    );
    assert_eq!(comm_text(&lv.comm), "curl");
}

#[test]
fn wrong_sizes_are_rejected() {
    assert!(ConnKey::decode(&[0; CONN_KEY_SIZE - 1]).is_none());
    assert!(ConnVal::decode(&[0; CONN_VAL_SIZE + 1]).is_none());
    assert!(LinkKey::decode(&[]).is_none());
    assert!(LinkVal::decode(&[0; 8]).is_none());
}

#[test]
#[cfg(target_endian = "little")]
fn buckets_and_per_cpu_links_decode() {
    let lv = LinkVal::decode(&fixture("link_val")).expect("link val");

    // A bucket of the live-connection index: occupied slots only.
    let mut bucket = vec![0u8; 64];
    bucket[8..16].copy_from_slice(&0xffff_8880_0000_1000u64.to_ne_bytes());
    bucket[56..64].copy_from_slice(&0xffff_8880_0000_2000u64.to_ne_bytes());
    assert_eq!(
        bucket_slots(&bucket).collect::<Vec<_>>(),
        vec![(1, 0xffff_8880_0000_1000), (7, 0xffff_8880_0000_2000)]
    );
    assert_eq!(bucket_slots(&bucket[..60]).count(), 0, "wrong size");

    // `links` is per CPU: copies are summed, the comm is the first set,
    // and a copy of the wrong size is left out.
    let mut other = fixture("link_val");
    other[..8].copy_from_slice(&5u64.to_ne_bytes());
    let empty = vec![0u8; other.len()];
    let cpus = [
        &empty[..],
        &fixture("link_val")[..],
        &other[..],
        &[1u8; 3][..],
    ];
    let sum = LinkVal::sum(cpus);
    assert_eq!(sum.closed, lv.closed + 5);
    assert_eq!(sum.rx_bytes, 2 * lv.rx_bytes);
    assert_eq!(sum.srtt_sum_us, 2 * lv.srtt_sum_us);
    assert_eq!(sum.comm, lv.comm);
}

#[test]
fn layouts_match_the_generated_skeleton() {
    use skel::types;
    use std::mem::size_of;
    assert_eq!(size_of::<types::tl_conn_key>(), CONN_KEY_SIZE);
    assert_eq!(size_of::<types::tl_conn_val>(), CONN_VAL_SIZE);
    assert_eq!(size_of::<types::tl_link_key>(), LINK_KEY_SIZE);
    assert_eq!(size_of::<types::tl_link_val>(), LINK_VAL_SIZE);
    assert_eq!(size_of::<types::tl_listen_key>(), LISTEN_KEY_SIZE);
    assert_eq!(size_of::<types::tl_task>(), TASK_SIZE);
}

#[test]
fn comm_is_nul_padded_and_truncated() {
    assert_eq!(comm_text(&comm_bytes("nginx")), "nginx");
    assert_eq!(
        comm_text(&comm_bytes("a-very-long-command-name")),
        "a-very-long-com"
    );
    let t = task(7, "redis-server");
    assert_eq!(&t[0..4], &7u32.to_ne_bytes());
    assert_eq!(&t[8..20], b"redis-server");
}

fn conn(
    lport: u16,
    rport: u16,
    pid: u32,
    role: Role,
    rx: u64,
    srtt: u32,
    samples: u32,
) -> (ConnKey, ConnVal) {
    (
        ConnKey {
            netns: 1,
            family: AF_INET,
            lport,
            rport,
            laddr: addr_bytes(ip("10.0.0.1")),
            raddr: addr_bytes(ip("10.0.0.2")),
        },
        ConnVal {
            pid,
            role: role as u8,
            pid_src: pid_src::CONNECT,
            comm: comm_bytes("cli"),
            rx_bytes: rx,
            tx_bytes: rx / 2,
            segs_in: 3,
            segs_out: 2,
            srtt_us: srtt,
            samples,
            ..ConnVal::default()
        },
    )
}

fn closed(pid: u32, n: u64, rx: u64, srtt_sum: u64) -> (LinkKey, LinkVal) {
    let (k, v) = conn(40000, 80, pid, Role::Client, 0, 0, 0);
    (
        LinkKey::of(&k, &v),
        LinkVal {
            closed: n,
            rx_bytes: rx,
            tx_bytes: rx / 2,
            srtt_sum_us: srtt_sum,
            comm: comm_bytes("cli"),
            ..LinkVal::default()
        },
    )
}

#[test]
fn aggregates_open_and_closed_connections_per_period() {
    let mut agg = Aggregator::default();
    // Period 1: two open connections of one client to 10.0.0.2:80, one
    // already closed; one open server-side connection.
    let conns = vec![
        conn(40001, 80, 10, Role::Client, 1000, 100, 1),
        conn(40002, 80, 10, Role::Client, 500, 300, 1),
        conn(80, 50000, 20, Role::Server, 10, 0, 0),
    ];
    let links = vec![closed(10, 1, 4000, 200)];
    let recs = agg.period(&conns, &links, 0);
    assert_eq!(recs.len(), 2);
    assert_eq!(
        recs[0],
        [
            "10", "cli", "1", "10.0.0.1", "10.0.0.2", "80", "2", "3", "5500", "2750", "6", "4",
            "0", "0", "200"
        ]
    );
    // The server side: client_ip is the remote end; never sampled so no rtt.
    assert_eq!(
        recs[1],
        [
            "20", "cli", "0", "10.0.0.2", "10.0.0.1", "80", "2", "1", "10", "5", "3", "2", "0",
            "0", ""
        ]
    );
    // Period 2: both open client connections closed (now in the aggregate);
    // counters only grow, link_count counts the two that closed.
    let links = vec![closed(10, 3, 4000 + 1100 + 600, 200 + 150 + 350)];
    let recs = agg.period(&[], &links, 0);
    assert_eq!(recs.len(), 1);
    assert_eq!(&recs[0][7..9], ["2", "5700"]);
    assert_eq!(recs[0][14], "250", "mean rtt of the two that closed");
    // Period 3: nothing happened: no record (the store keeps the last one).
    assert!(agg.period(&[], &links, 0).is_empty());
}

#[test]
fn unknown_pids_are_left_out_and_the_pid_filter_applies() {
    let mut agg = Aggregator::default();
    let conns = vec![
        conn(40001, 80, 0, Role::Client, 1, 1, 1),
        conn(40002, 80, 10, Role::Client, 1, 1, 1),
        conn(40003, 80, 11, Role::Client, 1, 1, 1),
    ];
    let recs = agg.period(&conns, &[], 11);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0][0], "11");
}

#[test]
fn options_from_params() {
    let o = Options::from_params(&Params::default());
    assert_eq!(o.plan, PlanChoice::Auto);
    assert!(!o.per_packet && !o.skip_loopback);
    assert_eq!(o.period, Duration::from_secs(5));
    let p = |s: &str| Options::from_params(&Params::parse(s).expect("param"));
    assert_eq!(p("-P 1").plan, PlanChoice::Tracepoint);
    assert_eq!(p("-P 2").plan, PlanChoice::Kprobe);
    assert_eq!(p("-P 3").plan, PlanChoice::Auto);
    let o = p("-P 12 -F 42 -t 2");
    assert_eq!(o.plan, PlanChoice::Auto);
    assert!(o.per_packet && o.skip_loopback);
    assert_eq!(o.filter_pid, 42);
    assert_eq!(o.period, Duration::from_secs(2));
}

#[test]
fn kernel_versions() {
    assert_eq!(kernel_version("6.18.44-fc-v595"), Some((6, 18)));
    assert_eq!(
        kernel_version("4.19.90-2112.8.0.0131.oe1.x86_64"),
        Some((4, 19))
    );
    assert_eq!(kernel_version("5.10.0"), Some((5, 10)));
    assert_eq!(kernel_version("garbage"), None);
}

#[test]
fn proc_links_parse() {
    assert_eq!(procscan::socket_inode("socket:[8441]"), Some(8441));
    assert_eq!(procscan::socket_inode("pipe:[8441]"), None);
    assert_eq!(procscan::socket_inode("socket:[x]"), None);
    assert_eq!(procscan::netns_inode("net:[4026531840]"), Some(4026531840));
    assert_eq!(procscan::netns_inode("mnt:[4026531840]"), None);
}

#[test]
#[cfg(target_endian = "little")]
fn seeds_roles_and_owners_from_proc_fixtures() {
    let tcp = include_str!("../../../tests/data/proc/net/tcp");
    let tcp6 = include_str!("../../../tests/data/proc/net/tcp6");
    // 8439 listens on 127.0.0.1:8080; 8441 is its accepted socket, 8440 the
    // client; 8446 is a v4 client of the dual-stack listener 8445 (:::6443)
    // whose accepted socket is 8447.
    let owners: HashMap<u64, u32> = [
        (8439, 100),
        (8441, 100),
        (8440, 200),
        (8445, 300),
        (8446, 400),
        (8447, 300),
    ]
    .into_iter()
    .collect();
    let mut seed = procscan::Seed::default();
    let mut comm_of = |pid: u32| format!("p{pid}");
    procscan::seed_namespace(
        9,
        &[(tcp, AF_INET), (tcp6, AF_INET6)],
        &owners,
        &mut comm_of,
        &mut seed,
    );
    let mut ls: Vec<(u32, u16, u32)> = seed
        .listeners
        .iter()
        .map(|(ns, port, pid, _)| (*ns, *port, *pid))
        .collect();
    ls.sort_unstable();
    assert_eq!(ls, [(9, 6443, 300), (9, 8080, 100)]);
    let mut got: Vec<(u64, u32, u8, u16, u16)> = seed
        .conns
        .iter()
        .map(|(k, v)| (v.ino, v.pid, v.role, k.lport, k.rport))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            (8440, 200, 1, 55762, 8080),
            (8441, 100, 0, 8080, 55762),
            (8446, 400, 1, 60152, 6443),
            (8447, 300, 0, 6443, 60152),
        ]
    );
    assert!(seed
        .conns
        .iter()
        .all(|(k, v)| k.netns == 9 && v.pid_src == pid_src::USER));
}

#[test]
fn meta_matches_fields() {
    let meta = include_str!("../../../meta/tcp_link.meta");
    let at = meta
        .match_indices("table_name:")
        .nth(1)
        .map(|(i, _)| i)
        .expect("two tables");
    let back = meta[..at].rfind('{').expect("open brace");
    let (first, second) = meta.split_at(back);
    let first = format!("{first}}})");
    crate::procfs::test_support::check_meta(&first, TABLE, FIELDS);
    crate::procfs::test_support::check_meta(second, STATS_TABLE, STATS_FIELDS);
    // Keys of the record identity, counters cumulative, gauges where the
    // value is not.
    let types: HashMap<String, String> = crate::procfs::test_support::meta_fields(&first)
        .into_iter()
        .collect();
    for k in [
        "pid",
        "role",
        "client_ip",
        "server_ip",
        "server_port",
        "protocol",
    ] {
        assert_eq!(types[k], "key", "{k}");
    }
    assert_eq!(types["process_name"], "label");
    for c in [
        "rx_bytes",
        "tx_bytes",
        "packets_in",
        "packets_out",
        "retran_packets",
        "lost_packets",
    ] {
        assert_eq!(types[c], "counter", "{c}");
    }
    assert_eq!(types["link_count"], "gauge");
    assert_eq!(types["rtt"], "gauge");
    // The kernel's stats array sits in the table between the 4 leading
    // fields and sample_seconds, in the same order; the snoopers' fields
    // were appended after it.
    let at = STATS_FIELDS
        .iter()
        .position(|f| *f == "sample_seconds")
        .expect("sample_seconds");
    assert_eq!(STATS_FIELDS[4..at], decode::STAT_NAMES);
    assert_eq!(
        STATS_FIELDS[at + 1..],
        ["watched_tgids", "conn_entries", "unwatched_skipped"]
    );
}

#[test]
fn registered_in_the_native_registry() {
    let def = crate::native_probe(PROBE).expect("tcp_link registered");
    assert_eq!(def.tables, TABLES);
    let p = (def.build)();
    assert_eq!(p.name(), PROBE);
    assert_eq!(p.tables(), TABLES);
}

#[test]
fn tracepoint_detection_answers_for_a_missing_one() {
    assert_ne!(tracepoint_exists("sock", "no_such_tracepoint"), Some(true));
}

/// Kernels before 5.12 refuse a cmpxchg anywhere in a program, even in code
/// the verifier would never reach. The `_h` programs (the hash-map set those
/// kernels load) must hold none; the index set must (or this check finds
/// nothing and proves nothing). Opening the object needs no privilege.
#[test]
fn the_hash_map_programs_hold_no_cmpxchg() {
    use libbpf_rs::skel::{OpenSkel as _, SkelBuilder as _};

    // BPF_STX | BPF_ATOMIC | BPF_DW, and BPF_CMPXCHG as the operation.
    const ATOMIC_DW: u8 = 0x03 | 0xc0 | 0x18;
    const CMPXCHG: i32 = 0xf0 | 0x01;
    let mut storage = std::mem::MaybeUninit::uninit();
    let open = skel::TcpLinkSkelBuilder::default()
        .open(&mut storage)
        .expect("open the eBPF object");
    let mut checked = (0, 0);
    for prog in open.open_object().progs() {
        let name = prog.name().to_string_lossy().into_owned();
        let cmpxchg = prog
            .insns()
            .iter()
            .filter(|i| i.code == ATOMIC_DW && i.imm == CMPXCHG)
            .count();
        if name.ends_with("_h") {
            assert_eq!(cmpxchg, 0, "{name} holds {cmpxchg} cmpxchg");
            checked.0 += 1;
        } else if name == "tcp_link_state_btf" {
            assert!(cmpxchg > 0, "{name} should claim index slots with cmpxchg");
            checked.1 += 1;
        }
    }
    assert_eq!(
        checked,
        (9, 1),
        "programs checked (hash set, index state handler)"
    );
}
