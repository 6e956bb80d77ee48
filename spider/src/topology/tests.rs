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
