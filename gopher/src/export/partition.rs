//! Kafka message keys for the topology tables (tcp_link, the LB tables and
//! dnsmasq_link): chosen so that the records gala-spider joins land on one
//! partition, and several gala-spiders in one consumer group each see whole
//! connections (docs/spider.md, "Several spiders in one consumer group").
//!
//! Kafka's default partitioner hashes the key, so equal keys share a
//! partition. The keys are IP addresses as the records write them:
//!
//! - `tcp_link`: `<server_ip>`. Both sides of a connection carry the
//!   server's address (role 1 and role 0 alike), and so do the other
//!   connections to that server: every edge into a server process is built
//!   whole on one partition, whatever its ports.
//! - `nginx_link`, `haproxy_link`, `ipvs_link`: sent twice, keyed
//!   `<virtual_ip>` (where the clients' records to the LB are: the front
//!   half) and `<server_ip>` (where the backend's records are: the back
//!   half); once when the two are equal.
//! - `dnsmasq_link`: `<virtual_ip>` (the dnsmasq address), so that the
//!   queries to one dnsmasq are counted on one partition.
//!
//! A record whose address is empty keeps the legacy per-series key, as
//! every other table does.

use crate::ingress::Accepted;
use gala_common::topology_records::{DNSMASQ_LINK, LB_TABLES, TCP_LINK};

/// The record's value of `field`, when the table has it and it is not empty.
fn value<'a>(rec: &'a Accepted, field: &str) -> Option<&'a str> {
    let v = rec.values.get(rec.table.field_index(field)?)?;
    (!v.is_empty()).then_some(v.as_str())
}

/// Writes the `nth` partition key of `rec` into `out` and returns true, or
/// returns false when `rec` has no `nth` key. A record of a topology table
/// is sent once per key (`nth` = 0, 1, ... until false); a record with no
/// key at all (`nth` = 0 gives false) is sent once with its per-series key.
pub fn topology_key(out: &mut String, rec: &Accepted, nth: usize) -> bool {
    let name = rec.table.name.as_str();
    let key = if name == TCP_LINK {
        (nth == 0).then(|| value(rec, "server_ip")).flatten()
    } else if LB_TABLES.contains(&name) {
        match nth {
            0 => value(rec, "virtual_ip"),
            1 => value(rec, "server_ip").filter(|s| value(rec, "virtual_ip") != Some(*s)),
            _ => None,
        }
    } else if name == DNSMASQ_LINK {
        (nth == 0).then(|| value(rec, "virtual_ip")).flatten()
    } else {
        None
    };
    match key {
        Some(k) => {
            out.push_str(k);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::MetaRegistry;
    use std::path::Path;
    use std::sync::Arc;

    fn registry() -> MetaRegistry {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../meta");
        MetaRegistry::load_dir(&dir).expect("meta/ loads")
    }

    fn rec(reg: &MetaRegistry, table: &str, kv: &[(&str, &str)]) -> Accepted {
        let t = reg.get(table).expect("table in meta/");
        let values = t
            .fields
            .iter()
            .map(|f| {
                kv.iter()
                    .find(|(k, _)| *k == f.name)
                    .map_or("0", |(_, v)| *v)
                    .to_owned()
            })
            .collect();
        Accepted {
            table: Arc::clone(t),
            values,
            timestamp_ms: 0,
        }
    }

    fn keys(rec: &Accepted) -> Vec<String> {
        let mut out = Vec::new();
        let mut k = String::new();
        for nth in 0.. {
            k.clear();
            if !topology_key(&mut k, rec, nth) {
                break;
            }
            out.push(k.clone());
        }
        out
    }

    #[test]
    fn both_sides_of_a_connection_share_the_key_of_the_server() {
        let reg = registry();
        let client = rec(
            &reg,
            "tcp_link",
            &[
                ("role", "1"),
                ("pid", "10"),
                ("client_ip", "10.0.0.1"),
                ("server_ip", "10.0.0.2"),
                ("server_port", "80"),
            ],
        );
        let server = rec(
            &reg,
            "tcp_link",
            &[
                ("role", "0"),
                ("pid", "20"),
                ("client_ip", "10.0.0.1"),
                ("server_ip", "10.0.0.2"),
                ("server_port", "8080"),
            ],
        );
        assert_eq!(keys(&client), ["10.0.0.2"]);
        assert_eq!(keys(&server), keys(&client));
    }

    #[test]
    fn lb_records_go_to_the_front_and_the_back_partition() {
        let reg = registry();
        for table in LB_TABLES {
            let r = rec(
                &reg,
                table,
                &[
                    ("client_ip", "10.0.0.1"),
                    ("virtual_ip", "10.0.0.5"),
                    ("virtual_port", "80"),
                    ("server_ip", "10.0.0.9"),
                    ("server_port", "8080"),
                ],
            );
            assert_eq!(keys(&r), ["10.0.0.5", "10.0.0.9"], "{table}");
            let same = rec(
                &reg,
                table,
                &[("virtual_ip", "10.0.0.5"), ("server_ip", "10.0.0.5")],
            );
            assert_eq!(keys(&same), ["10.0.0.5"], "{table}: sent once");
        }
        let dns = rec(
            &reg,
            "dnsmasq_link",
            &[("client_ip", "10.0.0.1"), ("virtual_ip", "10.0.0.53")],
        );
        assert_eq!(keys(&dns), ["10.0.0.53"]);
    }

    #[test]
    fn other_tables_and_empty_addresses_keep_the_legacy_key() {
        let reg = registry();
        let stats = rec(&reg, "tcp_link_probe_stats", &[("probe", "tcp_link")]);
        assert!(keys(&stats).is_empty());
        let empty = rec(&reg, "tcp_link", &[("server_ip", "")]);
        assert!(keys(&empty).is_empty());
    }
}
