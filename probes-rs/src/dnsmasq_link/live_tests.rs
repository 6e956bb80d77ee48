//! The kernel side on this kernel (root): loading, attaching, and the
//! asker's side recording a real UDP socket that sends to port 53.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails on the first unexpected value"
)]

use std::net::UdpSocket;

use super::*;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF and needs root: run `make test` as root"
    );
}

fn lookup(skel: &DnsmasqLinkSkel<'_>, port: u16) -> Option<ClientVal> {
    let ip = "127.0.0.1".parse().ok()?;
    decode::client_keys(ip, port).iter().find_map(|k| {
        skel.maps
            .clients
            .lookup(k, MapFlags::ANY)
            .ok()
            .flatten()
            .and_then(|v| ClientVal::decode(&v).ok())
    })
}

/// The plan `start` picks on this kernel (fexit, or the raw tracepoints
/// where the kernel refuses fexit, as this test machine does: it has no
/// BPF trampolines) records the senders.
#[test]
fn the_plan_started_here_records_senders_to_port_53() {
    require_root();
    let mut storage = MaybeUninit::<OpenObject>::uninit();
    let mut fallback = MaybeUninit::<OpenObject>::uninit();
    let (skel, _links, plan) = start(&mut storage, &mut fallback, SERVER_COMM).expect("start");
    if plan == Plan::RawTp {
        // Only because fexit was refused.
        let mut again = MaybeUninit::<OpenObject>::uninit();
        assert!(
            load(&mut again, SERVER_COMM, Plan::Fexit)
                .and_then(|s| attach(&s, Plan::Fexit).map(|_| ()))
                .is_err(),
            "start() fell back although fexit works here"
        );
    }
    eprintln!("dnsmasq_link plan on this kernel: {}", plan.name());
    senders_recorded(&skel);
}

#[test]
fn the_raw_tracepoint_plan_records_senders_to_port_53() {
    require_root();
    let mut storage = MaybeUninit::<OpenObject>::uninit();
    let skel = load(&mut storage, SERVER_COMM, Plan::RawTp).expect("load");
    let _links = attach(&skel, Plan::RawTp).expect("attach");
    senders_recorded(&skel);
}

fn senders_recorded(skel: &DnsmasqLinkSkel<'_>) {
    let me = std::process::id();
    // Unconnected: recorded at the exit of sendto (the kernel binds it then).
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pa = a.local_addr().unwrap().port();
    let _ = a.send_to(&tests_query(), "127.0.0.1:53");
    // Connected: connect() records it; send() on it again.
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pb = b.local_addr().unwrap().port();
    b.connect("127.0.0.1:53").unwrap();
    let _ = b.send(&tests_query());
    // Another port: not recorded.
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pc = c.local_addr().unwrap().port();
    let _ = c.send_to(b"x", "127.0.0.1:9");

    for port in [pa, pb] {
        let v = lookup(skel, port).unwrap_or_else(|| panic!("port {port} not recorded"));
        assert_eq!(v.pid, me);
        assert!(
            v.fresh(monotonic_ns()),
            "stamped with bpf_ktime_get_ns: {}",
            v.ts
        );
        assert!(!v.comm.is_empty());
    }
    assert_eq!(lookup(skel, pc), None);
    assert!(read_stats(skel)[1] >= 2);
}

fn tests_query() -> Vec<u8> {
    let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(b"\x01a\x04test\x00\x00\x01\x00\x01");
    m
}
