//! The agent's JSON writer and the shared reader of gala-spider
//! ([`gala_common::topology_records`]) agree on one record shape.

use gala_common::topology_records::{MetricRecord, Role, TcpLink};

use crate::export::json;

#[test]
fn reads_what_the_exporter_writes() {
    let mut s = String::from("{\"timestamp\":17");
    for (k, v) in [
        ("machine_id", "m-1"),
        ("hostname", "h\"1"),
        ("entity_name", "tcp_link"),
        ("table_name", "tcp_link"),
        ("pid", "9"),
        ("process_name", "cli"),
        ("role", "1"),
        ("client_ip", "10.0.0.2"),
        ("server_ip", "10.0.0.1"),
        ("server_port", "80"),
        ("protocol", "2"),
        ("rtt", "12.7"),
    ] {
        s.push(',');
        json::push_str(&mut s, k);
        s.push(':');
        json::push_str(&mut s, v);
    }
    s.push('}');
    let r = MetricRecord::parse(&s).expect("parse");
    assert_eq!(r.timestamp_ms, 17);
    assert_eq!(r.hostname, "h\"1");
    assert_eq!(r.machine_id, "m-1");
    let t = TcpLink::from_record(&r).expect("view");
    assert_eq!((t.role, t.rtt, t.rx_bytes), (Role::Client, 12, 0));
    assert_eq!(t.service, None, "an older agent's record has no service");
    let with = s.replace('}', r#","service":"ports:8080,8081"}"#);
    let r = MetricRecord::parse(&with).expect("parse");
    let t = TcpLink::from_record(&r).expect("view");
    assert_eq!(t.service, Some("ports:8080,8081"));
}
