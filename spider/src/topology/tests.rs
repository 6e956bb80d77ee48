use super::*;

const WINDOW: u64 = 60_000;

fn builder(exclude: &[&str]) -> Builder {
    let ex: Vec<String> = exclude.iter().map(|s| (*s).to_owned()).collect();
    Builder::new(
        WINDOW,
        AddrFilter::new(&ex),
        &[
            "nginx_link".into(),
            "ipvs_link".into(),
            "haproxy_link".into(),
            "dnsmasq_link".into(),
        ],
    )
}

fn json(host: &str, table: &str, fields: &[(&str, &str)]) -> String {
    let mut v = serde_json::json!({"timestamp": 1, "hostname": host, "table_name": table});
    for (k, val) in fields {
        v[*k] = serde_json::Value::String((*val).to_owned());
    }
    v.to_string()
}

#[expect(clippy::too_many_arguments, reason = "one record")]
fn link(
    host: &str,
    pid: u32,
    comm: &str,
    role: u8,
    cip: &str,
    sip: &str,
    port: u16,
    m: [u64; 5],
) -> String {
    let (pid, role, port) = (pid.to_string(), role.to_string(), port.to_string());
    let m: Vec<String> = m.iter().map(u64::to_string).collect();
    json(
        host,
        "tcp_link",
        &[
            ("pid", &pid),
            ("process_name", comm),
            ("role", &role),
            ("client_ip", cip),
            ("server_ip", sip),
            ("server_port", &port),
            ("protocol", "2"),
            ("link_count", &m[0]),
            ("rx_bytes", &m[1]),
            ("tx_bytes", &m[2]),
            ("retran_packets", &m[3]),
            ("lost_packets", "0"),
            ("rtt", &m[4]),
        ],
    )
}

fn nginx(host: &str, cip: &str, vip: &str, vport: u16, sip: &str, sport: u16) -> String {
    let (vport, sport) = (vport.to_string(), sport.to_string());
    json(
        host,
        "nginx_link",
        &[
            ("client_ip", cip),
            ("virtual_ip", vip),
            ("server_ip", sip),
            ("virtual_port", &vport),
            ("server_port", &sport),
            ("is_l7", "1"),
            ("link_count", "2"),
        ],
    )
}

fn apply_all(b: &mut Builder, lines: &[String], now: u64) -> Vec<Applied> {
    lines
        .iter()
        .map(|l| b.apply(&MetricRecord::parse(l).expect("valid JSON"), now))
        .collect()
}

/// web.curl (10.0.0.1) -> lb.nginx (10.0.0.2:80) -> app.java (10.0.0.3:8080),
/// with the nginx_link record that stitches the two edges.
fn two_hosts_and_an_lb() -> Vec<String> {
    vec![
        link(
            "web",
            100,
            "curl",
            1,
            "10.0.0.1",
            "10.0.0.2",
            80,
            [2, 5000, 300, 1, 120],
        ),
        link(
            "lb",
            200,
            "nginx",
            0,
            "10.0.0.1",
            "10.0.0.2",
            80,
            [2, 300, 5000, 4, 110],
        ),
        link(
            "lb",
            201,
            "nginx",
            1,
            "10.0.0.2",
            "10.0.0.3",
            8080,
            [3, 4000, 200, 0, 80],
        ),
        link(
            "app",
            300,
            "java",
            0,
            "10.0.0.2",
            "10.0.0.3",
            8080,
            [3, 200, 4000, 2, 90],
        ),
        nginx("lb", "10.0.0.1", "10.0.0.2", 80, "10.0.0.3", 8080),
    ]
}

fn ids(t: &Topology) -> Vec<&str> {
    t.processes.iter().map(|p| p.id.as_str()).collect()
}

fn pairs(t: &Topology) -> Vec<(&str, &str)> {
    t.edges
        .iter()
        .map(|e| (e.source.as_str(), e.target.as_str()))
        .collect()
}

#[test]
fn two_hosts_and_an_lb_exact_nodes_and_edges() {
    let mut b = builder(&[]);
    let applied = apply_all(&mut b, &two_hosts_and_an_lb(), 1000);
    assert_eq!(
        applied,
        [
            Applied::TcpLink,
            Applied::TcpLink,
            Applied::TcpLink,
            Applied::TcpLink,
            Applied::Lb
        ]
    );
    let t = b.snapshot(2000);
    assert_eq!(t.hosts, ["app", "lb", "web"]);
    assert_eq!(ids(&t), ["app.java", "lb.nginx", "web.curl"]);
    assert_eq!(t.processes[1].pids, [200, 201]);
    let flow = "nginx_link:lb:10.0.0.1>10.0.0.2:80>10.0.0.3:8080".to_owned();
    assert_eq!(
        t.edges,
        [
            Edge {
                source: "lb.nginx".into(),
                target: "app.java".into(),
                link_count: 3,
                tx_bytes: 200,
                rx_bytes: 4000,
                rtt: 80,
                retran_packets: 2,
                lost_packets: 0,
                server_ports: vec![8080],
                flows: vec![flow.clone()],
                kind: "tcp",
                domains: vec![],
            },
            Edge {
                source: "web.curl".into(),
                target: "lb.nginx".into(),
                link_count: 2,
                tx_bytes: 300,
                rx_bytes: 5000,
                rtt: 120,
                retran_packets: 5,
                lost_packets: 0,
                server_ports: vec![80],
                flows: vec![flow.clone()],
                kind: "tcp",
                domains: vec![],
            },
        ]
    );
    assert_eq!(
        t.lb_flows,
        [
            LbHalf {
                kind: "nginx_link",
                flow_id: flow.clone(),
                half: "back",
                source: "lb.nginx".into(),
                target: "app.java".into(),
                link_count: 2,
            },
            LbHalf {
                kind: "nginx_link",
                flow_id: flow,
                half: "front",
                source: "web.curl".into(),
                target: "lb.nginx".into(),
                link_count: 2,
            },
        ]
    );
    assert_eq!(
        t.stats,
        SnapshotStats {
            links: 4,
            lb_records: 1,
            ..SnapshotStats::default()
        }
    );
}

#[test]
fn falls_back_to_the_process_serving_the_port() {
    // The server saw another client address (NAT): no exact match.
    let mut b = builder(&[]);
    apply_all(
        &mut b,
        &[
            link(
                "a",
                1,
                "cli",
                1,
                "192.168.1.5",
                "10.0.0.3",
                6379,
                [1, 1, 1, 0, 10],
            ),
            link(
                "b",
                2,
                "redis",
                0,
                "10.9.9.9",
                "10.0.0.3",
                6379,
                [1, 1, 1, 0, 10],
            ),
        ],
        0,
    );
    let t = b.snapshot(0);
    assert_eq!(pairs(&t), [("a.cli", "b.redis")]);
}

#[test]
fn unmatched_clients_draw_no_edge_but_are_counted() {
    let mut b = builder(&[]);
    apply_all(
        &mut b,
        &[link(
            "a",
            1,
            "cli",
            1,
            "10.0.0.1",
            "10.0.0.3",
            443,
            [1, 1, 1, 0, 10],
        )],
        0,
    );
    let t = b.snapshot(0);
    assert!(t.edges.is_empty());
    assert_eq!(ids(&t), ["a.cli"]);
    assert_eq!(t.stats.unmatched_links, 1);
}

#[test]
fn loopback_matches_only_on_the_same_host() {
    let mut b = builder(&[]);
    apply_all(
        &mut b,
        &[
            link(
                "a",
                1,
                "cli",
                1,
                "127.0.0.1",
                "127.0.0.1",
                5432,
                [1, 1, 1, 0, 10],
            ),
            link(
                "b",
                2,
                "pg",
                0,
                "127.0.0.1",
                "127.0.0.1",
                5432,
                [1, 1, 1, 0, 10],
            ),
            link(
                "a",
                3,
                "pg",
                0,
                "127.0.0.1",
                "127.0.0.1",
                5432,
                [1, 1, 1, 0, 10],
            ),
        ],
        0,
    );
    assert_eq!(pairs(&b.snapshot(0)), [("a.cli", "a.pg")]);
}

#[test]
fn nodes_and_edges_expire_unless_refreshed() {
    let mut b = builder(&[]);
    let recs = two_hosts_and_an_lb();
    apply_all(&mut b, &recs, 0);
    // Only the web -> lb half is refreshed.
    apply_all(&mut b, &recs[..2], 50_000);
    let t = b.snapshot(WINDOW);
    assert_eq!(t.edges.len(), 2, "nothing expired yet");
    let t = b.snapshot(WINDOW + 1);
    assert_eq!(ids(&t), ["lb.nginx", "web.curl"]);
    assert_eq!(pairs(&t), [("web.curl", "lb.nginx")]);
    assert!(t.lb_flows.is_empty(), "the flow lost its LB record");
    assert_eq!(t.stats.expired, 3);
    assert!(t.edges[0].flows.is_empty());
    let t = b.snapshot(50_000 + WINDOW + 1);
    assert!(t.processes.is_empty() && t.edges.is_empty() && t.hosts.is_empty());
    assert!(b.is_empty());
}

#[test]
fn excluded_addresses_are_dropped_and_counted() {
    let mut b = builder(&["10.0.0.3", "192.168.0.0/16"]);
    let mut recs = two_hosts_and_an_lb();
    recs.push(link(
        "x",
        9,
        "scan",
        1,
        "192.168.7.7",
        "10.0.0.2",
        80,
        [1, 1, 1, 0, 1],
    ));
    let applied = apply_all(&mut b, &recs, 0);
    assert_eq!(
        applied,
        [
            Applied::TcpLink,
            Applied::TcpLink,
            Applied::Excluded,
            Applied::Excluded,
            Applied::Excluded,
            Applied::Excluded
        ]
    );
    let t = b.snapshot(0);
    assert_eq!(ids(&t), ["lb.nginx", "web.curl"]);
    assert_eq!(pairs(&t), [("web.curl", "lb.nginx")]);
    assert!(t.lb_flows.is_empty());
}

#[test]
fn self_links_are_dropped() {
    let mut b = builder(&[]);
    apply_all(
        &mut b,
        &[
            link(
                "a",
                1,
                "app",
                1,
                "10.0.0.1",
                "10.0.0.1",
                7000,
                [1, 1, 1, 0, 1],
            ),
            link(
                "a",
                1,
                "app",
                0,
                "10.0.0.1",
                "10.0.0.1",
                7000,
                [1, 1, 1, 0, 1],
            ),
        ],
        0,
    );
    let t = b.snapshot(0);
    assert!(t.edges.is_empty());
    assert_eq!(ids(&t), ["a.app"]);
    assert_eq!(t.stats.self_links, 1);
}

#[test]
fn unused_tables_and_bad_records_are_reported() {
    let mut b = Builder::new(WINDOW, AddrFilter::default(), &["ipvs_link".into()]);
    let recs = [
        json("h", "system_meminfo", &[("MemTotal", "1")]),
        json("h", "tcp_link", &[("pid", "1"), ("role", "7")]),
        json("h", "nginx_link", &[("client_ip", "1.1.1.1")]),
        json("h", "ipvs_link", &[("client_ip", "1.1.1.1")]),
    ];
    assert_eq!(
        apply_all(&mut b, &recs, 0),
        [
            Applied::UnusedTable,
            Applied::BadRecord,
            Applied::UnusedTable,
            Applied::BadRecord
        ]
    );
    assert!(b.is_empty());
}

#[test]
fn a_record_replaces_the_last_of_its_series() {
    let mut b = builder(&[]);
    let mut recs = two_hosts_and_an_lb();
    apply_all(&mut b, &recs, 0);
    recs[0] = link(
        "web",
        100,
        "curl",
        1,
        "10.0.0.1",
        "10.0.0.2",
        80,
        [7, 9000, 600, 1, 100],
    );
    apply_all(&mut b, &recs[..1], 1);
    let t = b.snapshot(1);
    let e = &t.edges[1];
    assert_eq!(
        (e.link_count, e.rx_bytes, e.tx_bytes, e.rtt),
        (7, 9000, 600, 100)
    );
}

#[test]
fn addr_filter_parses_addresses_and_networks() {
    assert!(AddrFilter::parse_one("10.0.0.0/8").is_some());
    assert!(AddrFilter::parse_one("::1").is_some());
    assert!(AddrFilter::parse_one("10.0.0.0/33").is_none());
    assert!(AddrFilter::parse_one("nope").is_none());
    let f = AddrFilter::new(&["10.0.0.0/8".into(), "fe80::/10".into(), "0.0.0.0/0".into()]);
    assert!(f.contains("10.1.2.3") && f.contains("fe80::1") && f.contains("8.8.8.8"));
    assert!(!f.contains("2001:db8::1"));
}

// ---------------------------------------------------------------------------
// Service identity (one node per service) and DNS edges.

/// A tcp_link record with a `service` field.
#[expect(clippy::too_many_arguments, reason = "one record")]
fn svc_link(
    host: &str,
    pid: u32,
    comm: &str,
    service: &str,
    role: u8,
    cip: &str,
    sip: &str,
    port: u16,
) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&link(
        host,
        pid,
        comm,
        role,
        cip,
        sip,
        port,
        [1, 10, 20, 0, 5],
    ))
    .expect("json");
    v["service"] = serde_json::Value::String(service.to_owned());
    v.to_string()
}

/// Host `h` (10.0.0.1) runs two python3 services (ports 8080 and 8081);
/// host `c` (10.0.0.2) runs two python3 clients, one of each.
fn two_python_services() -> Vec<String> {
    vec![
        svc_link(
            "h",
            10,
            "python3",
            "ports:8080",
            0,
            "10.0.0.2",
            "10.0.0.1",
            8080,
        ),
        svc_link(
            "h",
            20,
            "python3",
            "ports:8081",
            0,
            "10.0.0.2",
            "10.0.0.1",
            8081,
        ),
        svc_link(
            "c",
            30,
            "python3",
            "cmd:python3 a.py",
            1,
            "10.0.0.2",
            "10.0.0.1",
            8080,
        ),
        svc_link(
            "c",
            40,
            "python3",
            "cmd:python3 b.py",
            1,
            "10.0.0.2",
            "10.0.0.1",
            8081,
        ),
    ]
}

#[test]
fn service_suffixes_are_stable_and_readable() {
    assert_eq!(service_suffix(""), "");
    assert_eq!(service_suffix("ports:8080,8081"), ":8080,8081");
    assert_eq!(service_suffix("unit:nginx.service"), "@nginx.service");
    assert_eq!(
        service_suffix(
            "container:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        ),
        "@0123456789ab"
    );
    let a = service_suffix("cmd:python3 a.py");
    assert_eq!(a, service_suffix("cmd:python3 a.py"), "stable");
    assert_ne!(a, service_suffix("cmd:python3 b.py"));
    assert!(a.starts_with('#') && a.len() == 7, "{a}");
    assert_eq!(fnv1a("a"), 0xe40c_292c, "FNV-1a 32 reference value");
    assert!(service_suffix("odd").starts_with('#'));
    assert!(service_suffix("ports:").starts_with('#'));
}

#[test]
fn two_services_with_one_comm_are_two_nodes_with_their_own_edges() {
    let mut b = builder(&[]);
    apply_all(&mut b, &two_python_services(), 1000);
    let t = b.snapshot(2000);
    let a = format!("c.python3{}", service_suffix("cmd:python3 a.py"));
    let bb = format!("c.python3{}", service_suffix("cmd:python3 b.py"));
    let mut want_ids = vec![a.as_str(), bb.as_str(), "h.python3:8080", "h.python3:8081"];
    want_ids.sort_unstable();
    assert_eq!(ids(&t), want_ids);
    let mut want = vec![
        (a.as_str(), "h.python3:8080"),
        (bb.as_str(), "h.python3:8081"),
    ];
    want.sort_unstable();
    assert_eq!(pairs(&t), want);
    let p = t
        .processes
        .iter()
        .find(|p| p.id == "h.python3:8081")
        .expect("node");
    assert_eq!(
        (p.name.as_str(), p.host.as_str(), p.display.as_str()),
        ("python3", "h", "h.python3:8081")
    );
    assert_eq!(
        (p.service.as_str(), p.pids.as_slice()),
        ("ports:8081", &[20][..])
    );
    // The ids do not depend on the order the records came in, and stay
    // across periods.
    let mut b2 = builder(&[]);
    let mut rev = two_python_services();
    rev.reverse();
    apply_all(&mut b2, &rev, 1000);
    assert_eq!(ids(&b2.snapshot(2000)), want_ids);
    apply_all(&mut b, &two_python_services(), 3000);
    assert_eq!(ids(&b.snapshot(4000)), want_ids);
}

#[test]
fn a_unique_comm_keeps_the_bare_name_whatever_its_service() {
    let mut b = builder(&[]);
    apply_all(
        &mut b,
        &[
            svc_link(
                "h",
                10,
                "nginx",
                "unit:nginx.service",
                0,
                "10.0.0.2",
                "10.0.0.1",
                80,
            ),
            svc_link(
                "h",
                11,
                "nginx",
                "unit:nginx.service",
                0,
                "10.0.0.3",
                "10.0.0.1",
                80,
            ),
            svc_link("c", 30, "curl", "cmd:curl x", 1, "10.0.0.2", "10.0.0.1", 80),
        ],
        1000,
    );
    let t = b.snapshot(2000);
    assert_eq!(
        ids(&t),
        ["c.curl", "h.nginx"],
        "workers of one unit: one node"
    );
    assert_eq!(t.processes[1].pids, [10, 11]);
    assert_eq!(t.processes[1].service, "unit:nginx.service");
    assert_eq!(pairs(&t), [("c.curl", "h.nginx")]);
}

#[test]
fn records_without_a_service_fall_back_to_host_and_comm() {
    // An older agent: no service field. Two python3 processes are one node,
    // as before.
    let mut b = builder(&[]);
    apply_all(
        &mut b,
        &[
            link(
                "h",
                10,
                "python3",
                0,
                "10.0.0.2",
                "10.0.0.1",
                8080,
                [1, 1, 1, 0, 1],
            ),
            link(
                "h",
                20,
                "python3",
                0,
                "10.0.0.2",
                "10.0.0.1",
                8081,
                [1, 1, 1, 0, 1],
            ),
            link(
                "c",
                30,
                "curl",
                1,
                "10.0.0.2",
                "10.0.0.1",
                8080,
                [1, 1, 1, 0, 1],
            ),
        ],
        1000,
    );
    let t = b.snapshot(2000);
    assert_eq!(ids(&t), ["c.curl", "h.python3"]);
    assert_eq!(t.processes[1].pids, [10, 20]);
    assert_eq!(t.processes[1].service, "");
    // Beside a newer agent's service of the same comm, the one without a
    // service keeps the bare name, the other is suffixed.
    apply_all(
        &mut b,
        &[svc_link(
            "h",
            50,
            "python3",
            "ports:9000",
            0,
            "10.0.0.2",
            "10.0.0.1",
            9000,
        )],
        2500,
    );
    assert_eq!(
        ids(&b.snapshot(3000)),
        ["c.curl", "h.python3", "h.python3:9000"]
    );
}

#[test]
fn colliding_suffixes_get_a_counter_by_service_order() {
    // Two services whose suffixes are equal (a container id prefix shared
    // by two ids) still get distinct, stable ids.
    let c1 = format!("container:abcdefabcdef{}", "1".repeat(52));
    let c2 = format!("container:abcdefabcdef{}", "2".repeat(52));
    let mut b = builder(&[]);
    apply_all(
        &mut b,
        &[
            svc_link("h", 20, "java", &c2, 0, "10.0.0.2", "10.0.0.1", 8081),
            svc_link("h", 10, "java", &c1, 0, "10.0.0.2", "10.0.0.1", 8080),
        ],
        1000,
    );
    let t = b.snapshot(2000);
    assert_eq!(ids(&t), ["h.java@abcdefabcdef", "h.java@abcdefabcdef#2"]);
    assert_eq!(t.processes[0].service, c1);
    assert_eq!(t.processes[1].service, c2);
}

#[test]
fn lb_node_is_the_service_serving_the_virtual_address() {
    // Two nginx services on the lb host (ports 80 and 81); the nginx_link
    // record of port 81 attaches to the second.
    let mut lines = vec![
        svc_link(
            "lb", 200, "nginx", "ports:80", 0, "10.0.0.1", "10.0.0.2", 80,
        ),
        svc_link(
            "lb", 210, "nginx", "ports:81", 0, "10.0.0.1", "10.0.0.2", 81,
        ),
        svc_link(
            "lb", 211, "nginx", "ports:81", 1, "10.0.0.2", "10.0.0.3", 8080,
        ),
        svc_link(
            "web", 100, "curl", "cmd:curl", 1, "10.0.0.1", "10.0.0.2", 81,
        ),
        svc_link(
            "app",
            300,
            "java",
            "ports:8080",
            0,
            "10.0.0.2",
            "10.0.0.3",
            8080,
        ),
    ];
    lines.push(nginx("lb", "10.0.0.1", "10.0.0.2", 81, "10.0.0.3", 8080));
    let mut b = builder(&[]);
    apply_all(&mut b, &lines, 1000);
    let t = b.snapshot(2000);
    let halves: Vec<(&str, &str, &str)> = t
        .lb_flows
        .iter()
        .map(|h| (h.half, h.source.as_str(), h.target.as_str()))
        .collect();
    assert_eq!(
        halves,
        [
            ("back", "lb.nginx:81", "app.java"),
            ("front", "web.curl", "lb.nginx:81")
        ]
    );
}

fn dns(host: &str, cip: &str, pid: u32, comm: &str, domain: &str, n: u64) -> String {
    let (pid, n) = (pid.to_string(), n.to_string());
    json(
        host,
        "dnsmasq_link",
        &[
            ("client_ip", cip),
            ("virtual_ip", "10.0.0.1"),
            ("domain", domain),
            ("pid", &pid),
            ("process_comm", comm),
            ("server_comm", "dnsmasq"),
            ("family", "2"),
            ("link_count", &n),
        ],
    )
}

#[test]
fn dns_edges_from_local_and_remote_askers() {
    let mut b = builder(&[]);
    let mut lines = two_python_services();
    // On h itself: pid 10 (the python3 on 8080) asks twice, a dig (no
    // tcp_link records) once.
    lines.push(dns("h", "127.0.0.1", 10, "python3", "db.example", 2));
    lines.push(dns("h", "127.0.0.1", 10, "python3", "api.example", 1));
    lines.push(dns("h", "127.0.0.1", 77, "dig", "x.example", 1));
    // From c (10.0.0.2): two processes there have that address: ambiguous.
    lines.push(dns("h", "10.0.0.2", 0, "", "y.example", 4));
    // From 10.0.0.9: unknown.
    lines.push(dns("h", "10.0.0.9", 0, "", "z.example", 1));
    let applied = apply_all(&mut b, &lines, 1000);
    assert_eq!(applied[4..], [Applied::Dns; 5]);
    let t = b.snapshot(2000);
    let d: Vec<(&str, &str, u64, Vec<&str>)> = t
        .edges
        .iter()
        .filter(|e| e.kind == "dns")
        .map(|e| {
            (
                e.source.as_str(),
                e.target.as_str(),
                e.link_count,
                e.domains.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        d,
        [
            ("h.dig", "h.dnsmasq", 1, vec!["x.example"]),
            (
                "h.python3:8080",
                "h.dnsmasq",
                3,
                vec!["api.example", "db.example"]
            ),
        ]
    );
    assert_eq!(t.stats.unresolved_dns, 2);
    assert_eq!(t.stats.dns_records, 5);
    let dig = t.processes.iter().find(|p| p.id == "h.dig").expect("dig");
    assert_eq!((dig.pids.as_slice(), dig.service.as_str()), (&[77][..], ""));
    assert!(t.processes.iter().any(|p| p.id == "h.dnsmasq"));

    // A remote asker with one process on its address is found.
    let mut b = builder(&[]);
    apply_all(
        &mut b,
        &[
            svc_link("c", 30, "curl", "cmd:curl", 1, "10.0.0.2", "10.0.0.1", 8080),
            svc_link(
                "h",
                10,
                "python3",
                "ports:8080",
                0,
                "10.0.0.2",
                "10.0.0.1",
                8080,
            ),
            dns("h", "10.0.0.2", 0, "", "h.example", 2),
        ],
        1000,
    );
    let t = b.snapshot(2000);
    let e: Vec<(&str, &str, &str)> = t
        .edges
        .iter()
        .map(|e| (e.source.as_str(), e.target.as_str(), e.kind))
        .collect();
    assert_eq!(
        e,
        [
            ("c.curl", "h.dnsmasq", "dns"),
            ("c.curl", "h.python3", "tcp")
        ]
    );
    // JSON: kind is always there, domains only on DNS edges.
    let v = serde_json::to_value(&t).expect("json");
    assert_eq!(v["edges"][0]["kind"], "dns");
    assert_eq!(v["edges"][0]["domains"], serde_json::json!(["h.example"]));
    assert_eq!(v["edges"][1]["kind"], "tcp");
    assert!(v["edges"][1].get("domains").is_none());
}

#[test]
fn dns_records_are_unused_unless_the_table_is_configured() {
    let mut b = Builder::new(WINDOW, AddrFilter::default(), &["nginx_link".into()]);
    let r = dns("h", "127.0.0.1", 1, "a", "x", 1);
    assert_eq!(
        b.apply(&MetricRecord::parse(&r).expect("json"), 1000),
        Applied::UnusedTable
    );
    let mut b = builder(&[]);
    let bad = json("h", "dnsmasq_link", &[("client_ip", "1.1.1.1")]);
    assert_eq!(
        b.apply(&MetricRecord::parse(&bad).expect("json"), 1000),
        Applied::BadRecord
    );
}

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
}

const HOSTS: [&str; 3] = ["h0", "h1", "h2"];
const IPS: [&str; 4] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "127.0.0.1"];

/// A random record over a small universe, so that series are replaced,
/// servers come and go under their clients, comms are shared by several
/// services, and LB and DNS records find (or miss) their processes.
fn random_record(r: &mut Rng) -> String {
    let h = r.below(HOSTS.len());
    let host = HOSTS[h];
    let own = IPS[if r.below(6) == 0 { 3 } else { h }];
    let other = IPS[r.below(IPS.len())];
    match r.below(10) {
        0 => {
            let (vport, sport) = (80 + r.below(2) as u16, 8080 + r.below(2) as u16);
            let mut v: serde_json::Value =
                serde_json::from_str(&nginx(host, other, own, vport, r.pick(&IPS), sport))
                    .expect("json");
            if r.below(2) == 0 {
                v["table_name"] = "haproxy_link".into();
                v["process_name"] = r.pick(&["haproxy", "py", "a"]).into();
            }
            v.to_string()
        }
        1 => {
            let pid = [0, 1, 2, 3, 9][r.below(5)];
            let comm = r.pick(&["", "a", "py", "dig"]);
            let domain = r.pick(&["", "x.org", "y.org"]);
            dns(host, other, pid, comm, domain, 1 + r.below(3) as u64)
        }
        _ => {
            let role = r.below(2) as u8;
            let (cip, sip) = if role == 1 {
                (own, other)
            } else {
                (other, own)
            };
            let port = [80, 81, 8080, 8081][r.below(4)];
            let mut v: serde_json::Value = serde_json::from_str(&link(
                host,
                1 + r.below(4) as u32,
                r.pick(&["a", "py", "py", "nginx", "dnsmasq"]),
                role,
                cip,
                sip,
                port,
                [
                    r.below(4) as u64,
                    r.below(1000) as u64,
                    r.below(1000) as u64,
                    r.below(3) as u64,
                    r.below(500) as u64,
                ],
            ))
            .expect("json");
            let service = r.pick(&["", "", "ports:8080", "unit:w.service", "cmd:py w.py"]);
            if !service.is_empty() {
                v["service"] = service.into();
            }
            v.to_string()
        }
    }
}

/// The incremental builder, taken through random applies, expiries and
/// snapshots, gives at every snapshot the very graph a fresh builder
/// derives from the records still live.
#[test]
fn incremental_snapshots_equal_a_fresh_build_of_the_live_records() {
    let mut snapshots = 0;
    let mut nonempty = 0;
    for seed in 1..=30u64 {
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut b = builder(if seed % 4 == 0 { &["10.0.0.3"] } else { &[] });
        let mut log: Vec<(String, u64)> = Vec::new();
        let mut now = 1_000_000u64;
        for step in 0..80 {
            now += [0, 1_000, 5_000, 20_000, 45_000][r.below(5)];
            for _ in 0..r.below(12) {
                let line = random_record(&mut r);
                b.apply(&MetricRecord::parse(&line).expect("json"), now);
                log.push((line, now));
            }
            match r.below(4) {
                0 => {
                    b.expire(now);
                }
                1 => continue,
                _ => {}
            }
            let mut got = b.snapshot(now);
            let mut fresh = builder(if seed % 4 == 0 { &["10.0.0.3"] } else { &[] });
            let cutoff = now.saturating_sub(WINDOW);
            for (line, t) in log.iter().filter(|(_, t)| *t >= cutoff) {
                fresh.apply(&MetricRecord::parse(line).expect("json"), *t);
            }
            let mut want = fresh.snapshot(now);
            got.stats.expired = 0;
            want.stats.expired = 0;
            assert_eq!(got, want, "seed {seed}, step {step}");
            assert_eq!(b.len(), fresh.len(), "seed {seed}, step {step}");
            snapshots += 1;
            let dns = got.edges.iter().any(|e| e.kind == "dns");
            let suffixed = got.processes.iter().any(|p| p.id.contains([':', '@', '#']));
            if !got.lb_flows.is_empty() && dns && suffixed {
                nonempty += 1;
            }
        }
    }
    // The universe is small enough that LB flows, DNS edges and shared
    // comms are common.
    assert!(
        snapshots > 1500 && nonempty > snapshots / 10,
        "{snapshots} {nonempty}"
    );
}
