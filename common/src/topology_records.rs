//! The records the topology service (gala-spider) reads, shared with it so
//! that the producer side (gala-gopher's `export::json::metric`) and the consumer
//! side agree on one shape (docs/compat.md §6, §8).
//!
//! [`MetricRecord`] is the metric JSON object of the Kafka topic and the
//! metric log files, parsed without copying the strings that need no
//! unescaping. [`TcpLink`] and [`LbLink`] are typed views of the tables the
//! topology is built from.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The tcp_link table.
pub const TCP_LINK: &str = "tcp_link";
/// The load-balancer tables, in docs/compat.md §8 order.
pub const LB_TABLES: [&str; 3] = ["nginx_link", "ipvs_link", "haproxy_link"];
/// The DNS table of the dnsmasq probe.
pub const DNSMASQ_LINK: &str = "dnsmasq_link";

/// One metric record: `{"timestamp":ms,"machine_id":..,"hostname":..,
/// "entity_name":..,"table_name":..,"<field>":"<value>",...}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricRecord<'a> {
    /// `timestamp`, ms since the epoch (0 when absent).
    pub timestamp_ms: u64,
    /// `machine_id` (empty when absent: V0 records have none).
    pub machine_id: Cow<'a, str>,
    /// `hostname`.
    pub hostname: Cow<'a, str>,
    /// `table_name`.
    pub table_name: Cow<'a, str>,
    /// Every other member whose value is a string or a number, in order
    /// (`entity_name` included).
    pub fields: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

/// Why a line is not a metric record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not JSON, or not an object.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// A member every metric record has is missing.
    #[error("member \"{0}\" is missing")]
    Missing(&'static str),
    /// A field of a typed view is missing or malformed.
    #[error("table {table}: field \"{field}\": expected {expected}, got {got:?}")]
    Field {
        /// The table.
        table: String,
        /// The field.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
        /// What was found (`None`: absent).
        got: Option<String>,
    },
}

impl<'a> MetricRecord<'a> {
    /// Parses one JSON object. `hostname` and `table_name` are required.
    pub fn parse(line: &'a str) -> Result<Self, RecordError> {
        let r: Self = serde_json::from_str(line).map_err(|e| RecordError::Json(e.to_string()))?;
        if r.table_name.is_empty() {
            return Err(RecordError::Missing("table_name"));
        }
        if r.hostname.is_empty() {
            return Err(RecordError::Missing("hostname"));
        }
        Ok(r)
    }

    /// The value of `field`, if present.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.as_ref())
    }

    fn field_err(&self, field: &'static str, expected: &'static str) -> RecordError {
        RecordError::Field {
            table: self.table_name.to_string(),
            field,
            expected,
            got: self.get(field).map(str::to_owned),
        }
    }

    fn str_of(&self, field: &'static str) -> Result<&str, RecordError> {
        self.get(field)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.field_err(field, "a non-empty string"))
    }

    fn num<T: std::str::FromStr>(&self, field: &'static str) -> Result<T, RecordError> {
        self.get(field)
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| self.field_err(field, "a number"))
    }

    /// A counter or gauge: absent (a null value is left out) reads as 0;
    /// present but not a number is an error. Fractions are truncated.
    fn metric(&self, field: &'static str) -> Result<u64, RecordError> {
        match self.get(field) {
            None | Some("") => Ok(0),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .or_else(|| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite() && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| self.field_err(field, "a non-negative number")),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for MetricRecord<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RecordVisitor(std::marker::PhantomData))
    }
}

struct RecordVisitor<'a>(std::marker::PhantomData<&'a ()>);

/// A member's value: a string (borrowed when it needs no unescaping) or a
/// number, kept as its text; anything else is ignored.
struct Scalar<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Borrowed(if v { "1" } else { "0" }))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Visitor<'de> for RecordVisitor<'a> {
    type Value = MetricRecord<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metric record (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = MetricRecord::default();
        while let Some(Scalar(key)) = map.next_key::<Scalar<'de>>()? {
            let Scalar(v) = map.next_value::<Scalar<'de>>()?;
            let (Some(key), Some(v)) = (key, v) else {
                continue;
            };
            match key.as_ref() {
                "timestamp" => {
                    // V0 examples carry odd (negative) timestamps: read as 0.
                    r.timestamp_ms = v
                        .parse::<u64>()
                        .ok()
                        .or_else(|| {
                            v.parse::<f64>()
                                .ok()
                                .filter(|f| *f >= 0.0)
                                .map(|f| f as u64)
                        })
                        .unwrap_or(0);
                }
                "machine_id" => r.machine_id = v,
                "hostname" => r.hostname = v,
                "table_name" => r.table_name = v,
                _ => r.fields.push((key, v)),
            }
        }
        Ok(r)
    }
}

/// The role of the process in a tcp_link record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// `0`: the process accepted the connections.
    Server,
    /// `1`: the process connected.
    Client,
}

/// One tcp_link record (docs/compat.md §8), typed.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpLink<'a> {
    /// `hostname` of the reporting node.
    pub hostname: &'a str,
    /// `pid`.
    pub pid: u32,
    /// `process_name`.
    pub process_name: &'a str,
    /// `role`.
    pub role: Role,
    /// `client_ip`.
    pub client_ip: &'a str,
    /// `server_ip`.
    pub server_ip: &'a str,
    /// `server_port`.
    pub server_port: u16,
    /// `protocol` (the address family as the legacy agent wrote it: 2 or 10).
    pub protocol: u16,
    /// `link_count`.
    pub link_count: u64,
    /// `rx_bytes`.
    pub rx_bytes: u64,
    /// `tx_bytes`.
    pub tx_bytes: u64,
    /// `packets_in`.
    pub packets_in: u64,
    /// `packets_out`.
    pub packets_out: u64,
    /// `retran_packets`.
    pub retran_packets: u64,
    /// `lost_packets`.
    pub lost_packets: u64,
    /// `rtt`, us.
    pub rtt: u64,
    /// `service`: what service the process is (`unit:<name>`,
    /// `container:<id>`, `ports:<p>,<p>` or `cmd:<command line>`); `None`
    /// from agents that predate the field, or when the agent could not tell.
    pub service: Option<&'a str>,
}

impl<'a> TcpLink<'a> {
    /// The typed view of a `tcp_link` record. The key fields, pid, role and
    /// process_name are required; absent metrics read as 0.
    pub fn from_record(r: &'a MetricRecord<'_>) -> Result<Self, RecordError> {
        let role = match r.get("role").map(str::trim) {
            Some("1") => Role::Client,
            Some("0") => Role::Server,
            _ => return Err(r.field_err("role", "0 (server) or 1 (client)")),
        };
        Ok(Self {
            hostname: &r.hostname,
            pid: r.num("pid")?,
            process_name: r.str_of("process_name")?,
            role,
            client_ip: r.str_of("client_ip")?,
            server_ip: r.str_of("server_ip")?,
            server_port: r.num("server_port")?,
            protocol: r
                .get("protocol")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            link_count: r.metric("link_count")?,
            rx_bytes: r.metric("rx_bytes")?,
            tx_bytes: r.metric("tx_bytes")?,
            packets_in: r.metric("packets_in")?,
            packets_out: r.metric("packets_out")?,
            retran_packets: r.metric("retran_packets")?,
            lost_packets: r.metric("lost_packets")?,
            rtt: r.metric("rtt")?,
            service: r.get("service").map(str::trim).filter(|v| !v.is_empty()),
        })
    }
}

/// One dnsmasq_link record (docs/compat.md §8): a process asked the local
/// dnsmasq for names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsLink<'a> {
    /// `hostname` of the dnsmasq's node.
    pub hostname: &'a str,
    /// `client_ip`: the asker's address.
    pub client_ip: &'a str,
    /// `virtual_ip`: the address dnsmasq answered on.
    pub virtual_ip: &'a str,
    /// `domain`: the name(s) asked (empty when the record has none).
    pub domain: &'a str,
    /// `pid`: the asking process on this host (0: remote or unknown).
    pub pid: u32,
    /// `process_comm`: its command name (empty when unknown).
    pub process_comm: &'a str,
    /// `server_comm`: dnsmasq's command name (`dnsmasq` when absent).
    pub server_comm: &'a str,
    /// `link_count`: queries in the period (0 when absent).
    pub link_count: u64,
}

impl<'a> DnsLink<'a> {
    /// The typed view of a `dnsmasq_link` record: `client_ip` and
    /// `virtual_ip` are required, the rest optional.
    pub fn from_record(r: &'a MetricRecord<'_>) -> Result<Self, RecordError> {
        let opt = |f: &str| r.get(f).map(str::trim).unwrap_or("");
        let pid = match r.get("pid").map(str::trim) {
            None | Some("") => 0,
            Some(v) => v.parse().map_err(|_| r.field_err("pid", "a number"))?,
        };
        Ok(Self {
            hostname: &r.hostname,
            client_ip: r.str_of("client_ip")?,
            virtual_ip: r.str_of("virtual_ip")?,
            domain: opt("domain"),
            pid,
            process_comm: opt("process_comm"),
            server_comm: Some(opt("server_comm"))
                .filter(|s| !s.is_empty())
                .unwrap_or("dnsmasq"),
            link_count: r.metric("link_count")?,
        })
    }
}

/// Which load balancer reported an [`LbLink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LbKind {
    /// `nginx_link`.
    Nginx,
    /// `ipvs_link`.
    Ipvs,
    /// `haproxy_link`.
    Haproxy,
}

impl LbKind {
    /// From a table name.
    pub fn from_table(t: &str) -> Option<Self> {
        match t {
            "nginx_link" => Some(Self::Nginx),
            "ipvs_link" => Some(Self::Ipvs),
            "haproxy_link" => Some(Self::Haproxy),
            _ => None,
        }
    }

    /// The table name.
    pub fn table(self) -> &'static str {
        match self {
            Self::Nginx => "nginx_link",
            Self::Ipvs => "ipvs_link",
            Self::Haproxy => "haproxy_link",
        }
    }

    /// The process name the balancer runs as when the record names none.
    pub fn default_process(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Ipvs => "ipvs",
            Self::Haproxy => "haproxy",
        }
    }
}

/// One load-balancer record (nginx_link, ipvs_link, haproxy_link;
/// docs/compat.md §8): the client reached `virtual_ip:virtual_port` and was sent on
/// to `server_ip:server_port` (from `local_ip`, when the table says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbLink<'a> {
    /// Which table.
    pub kind: LbKind,
    /// `hostname` of the balancer's node.
    pub hostname: &'a str,
    /// `process_name` (ipvs, haproxy), when given.
    pub process_name: Option<&'a str>,
    /// `client_ip`.
    pub client_ip: &'a str,
    /// `virtual_ip`.
    pub virtual_ip: &'a str,
    /// `virtual_port`.
    pub virtual_port: u16,
    /// `local_ip` (ipvs, haproxy), when given.
    pub local_ip: Option<&'a str>,
    /// `server_ip`.
    pub server_ip: &'a str,
    /// `server_port`.
    pub server_port: u16,
    /// `link_count` (0 when absent).
    pub link_count: u64,
}

impl<'a> LbLink<'a> {
    /// The typed view of an LB record; `None` for other tables.
    pub fn from_record(r: &'a MetricRecord<'_>) -> Option<Result<Self, RecordError>> {
        let kind = LbKind::from_table(&r.table_name)?;
        let opt = |f: &str| r.get(f).filter(|v| !v.is_empty());
        Some((|| {
            Ok(Self {
                kind,
                hostname: &r.hostname,
                process_name: opt("process_name"),
                client_ip: r.str_of("client_ip")?,
                virtual_ip: r.str_of("virtual_ip")?,
                virtual_port: r.num("virtual_port")?,
                local_ip: opt("local_ip"),
                server_ip: r.str_of("server_ip")?,
                server_port: r.num("server_port")?,
                link_count: r.metric("link_count")?,
            })
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_v0_example() {
        let line = r#"{"timestamp": -143226184, "hostname": "cmt2vm7", "table_name": "tcp_link", "pid": "107977", "process_name": "udsvr", "role": "0", "client_ip": "192.168.122.43", "server_ip": "192.168.122.27", "server_port": "6121", "protocol": "2", "link_count": "5", "rx_bytes": "0", "tx_bytes": "11", "packets_in": "160", "packets_out": "548443902", "retran_packets": "0", "lost_packets": "326400", "rtt": "0"}"#;
        let r = MetricRecord::parse(line).expect("parse");
        assert_eq!(r.timestamp_ms, 0);
        assert_eq!(r.hostname, "cmt2vm7");
        let t = TcpLink::from_record(&r).expect("tcp_link");
        assert_eq!(t.role, Role::Server);
        assert_eq!(t.pid, 107_977);
        assert_eq!(t.server_port, 6121);
        assert_eq!(t.lost_packets, 326_400);
        assert_eq!(t.process_name, "udsvr");
    }

    #[test]
    fn bad_input_is_an_error_that_names_the_field() {
        assert!(matches!(
            MetricRecord::parse("{not json"),
            Err(RecordError::Json(_))
        ));
        assert!(matches!(
            MetricRecord::parse("[1,2]"),
            Err(RecordError::Json(_))
        ));
        assert_eq!(
            MetricRecord::parse(r#"{"hostname":"h"}"#),
            Err(RecordError::Missing("table_name"))
        );
        let r =
            MetricRecord::parse(r#"{"hostname":"h","table_name":"tcp_link","pid":"x","role":"1"}"#)
                .expect("parse");
        let e = TcpLink::from_record(&r).expect_err("bad pid");
        assert_eq!(
            e.to_string(),
            "table tcp_link: field \"pid\": expected a number, got Some(\"x\")"
        );
    }

    #[test]
    fn dns_view() {
        let r = MetricRecord::parse(
            r#"{"hostname":"dns","table_name":"dnsmasq_link","client_ip":"10.0.0.2","virtual_ip":"10.0.0.1","domain":"a.example","pid":"42","process_comm":"curl","server_comm":"dnsmasq","family":"2","link_count":"3"}"#,
        )
        .expect("parse");
        let d = DnsLink::from_record(&r).expect("valid");
        assert_eq!(
            (d.pid, d.process_comm, d.domain, d.link_count),
            (42, "curl", "a.example", 3)
        );
        let r = MetricRecord::parse(
            r#"{"hostname":"dns","table_name":"dnsmasq_link","client_ip":"10.0.0.2","virtual_ip":"10.0.0.1"}"#,
        )
        .expect("parse");
        let d = DnsLink::from_record(&r).expect("valid");
        assert_eq!((d.pid, d.server_comm, d.link_count), (0, "dnsmasq", 0));
        let r = MetricRecord::parse(
            r#"{"hostname":"dns","table_name":"dnsmasq_link","client_ip":"10.0.0.2","virtual_ip":"10.0.0.1","pid":"x"}"#,
        )
        .expect("parse");
        assert_eq!(
            DnsLink::from_record(&r).expect_err("bad pid").to_string(),
            "table dnsmasq_link: field \"pid\": expected a number, got Some(\"x\")"
        );
    }

    #[test]
    fn lb_views() {
        let r = MetricRecord::parse(
            r#"{"hostname":"lb","table_name":"ipvs_link","process_name":"ipvs","client_ip":"1.1.1.1","virtual_ip":"2.2.2.2","local_ip":"3.3.3.3","server_ip":"4.4.4.4","server_port":"80","virtual_port":"8080","protocol":"6","family":"2","link_count":"3"}"#,
        )
        .expect("parse");
        let l = LbLink::from_record(&r).expect("lb table").expect("valid");
        assert_eq!(l.kind, LbKind::Ipvs);
        assert_eq!(l.local_ip, Some("3.3.3.3"));
        assert_eq!((l.virtual_port, l.server_port, l.link_count), (8080, 80, 3));
        let n = MetricRecord::parse(r#"{"hostname":"lb","table_name":"system_meminfo"}"#)
            .expect("parse");
        assert!(LbLink::from_record(&n).is_none());
    }
}
