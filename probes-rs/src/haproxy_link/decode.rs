//! Decoding of the kernel map (`struct hap_key` → count) and the per-period
//! records: the map holds running totals per haproxy process and path; each
//! period reports what was added since the last one, summed over the
//! processes of one command name (haproxy's workers).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Size of `struct hap_key`.
pub const KEY_SIZE: usize = 76;
/// `protocol`: IPPROTO_TCP (haproxy proxies TCP in both modes).
pub const IPPROTO_TCP: u8 = 6;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// A map entry is deleted after this many periods without change (its
/// process may be gone; a new stream makes it again).
pub const IDLE_PERIODS: u32 = 6;

/// One decoded key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkKey {
    /// haproxy's process.
    pub tgid: u32,
    /// Family of the client connection.
    pub client_family: u8,
    /// Family of the server connection.
    pub server_family: u8,
    /// Port the client reached.
    pub virtual_port: u16,
    /// Server port.
    pub server_port: u16,
    /// Client address.
    pub client: [u8; 16],
    /// Address the client reached.
    pub virt: [u8; 16],
    /// haproxy's source address towards the server.
    pub local: [u8; 16],
    /// Server address.
    pub server: [u8; 16],
}

fn arr16(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    a
}

impl LinkKey {
    /// From the map's key bytes; `None` when the size is wrong.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != KEY_SIZE {
            return None;
        }
        let u16_at = |o: usize| u16::from_ne_bytes([b[o], b[o + 1]]);
        Some(Self {
            tgid: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            client_family: b[4],
            server_family: b[5],
            virtual_port: u16_at(6),
            server_port: u16_at(8),
            client: arr16(&b[12..28]),
            virt: arr16(&b[28..44]),
            local: arr16(&b[44..60]),
            server: arr16(&b[60..76]),
        })
    }

    /// The map's key bytes.
    pub fn encode(&self) -> [u8; KEY_SIZE] {
        let mut b = [0u8; KEY_SIZE];
        b[0..4].copy_from_slice(&self.tgid.to_ne_bytes());
        b[4] = self.client_family;
        b[5] = self.server_family;
        b[6..8].copy_from_slice(&self.virtual_port.to_ne_bytes());
        b[8..10].copy_from_slice(&self.server_port.to_ne_bytes());
        b[12..28].copy_from_slice(&self.client);
        b[28..44].copy_from_slice(&self.virt);
        b[44..60].copy_from_slice(&self.local);
        b[60..76].copy_from_slice(&self.server);
        b
    }
}

/// An address as text: IPv4, or IPv6 with v4-mapped ones shown as IPv4
/// (as tcp_link shows them, so that the spider's joins match).
pub fn addr(family: u8, a: &[u8; 16]) -> String {
    match family {
        AF_INET => Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(*a);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4).to_string(),
                None => v6.to_string(),
            }
        }
        _ => String::new(),
    }
}

/// The values of one record, in `meta/haproxy_link.meta` order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    /// process_name, client_ip, virtual_ip, local_ip, server_ip (text).
    pub ids: [String; 5],
    /// server_port.
    pub server_port: u16,
    /// virtual_port.
    pub virtual_port: u16,
    /// family (of the client connection).
    pub family: u8,
}

impl Row {
    /// The record's values with `link_count`.
    pub fn values(&self, link_count: u64) -> Vec<String> {
        let mut v: Vec<String> = self.ids.to_vec();
        v.extend([
            self.server_port.to_string(),
            self.virtual_port.to_string(),
            IPPROTO_TCP.to_string(),
            self.family.to_string(),
            link_count.to_string(),
        ]);
        v
    }
}

/// Running totals seen last period, per key.
#[derive(Debug, Default)]
pub struct Aggregator {
    last: HashMap<LinkKey, (u64, u32)>,
}

/// One period's outcome.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Period {
    /// The records: row and the streams added in the period.
    pub rows: Vec<(Row, u64)>,
    /// Keys to delete from the map (idle for [`IDLE_PERIODS`]).
    pub stale: Vec<LinkKey>,
}

impl Aggregator {
    /// Folds the map's current totals; `comm` names a process.
    pub fn period(
        &mut self,
        now: &[(LinkKey, u64)],
        mut comm: impl FnMut(u32) -> String,
    ) -> Period {
        let mut rows: BTreeMap<Row, u64> = BTreeMap::new();
        let mut stale = Vec::new();
        let mut next = HashMap::with_capacity(now.len());
        let mut names: HashMap<u32, String> = HashMap::new();
        for (k, total) in now {
            let (before, idle) = self.last.get(k).copied().unwrap_or((0, 0));
            // A total below the last one: the entry was deleted and made
            // again; all of it is new.
            let delta = if *total >= before {
                total - before
            } else {
                *total
            };
            let idle = if delta == 0 { idle + 1 } else { 0 };
            if idle >= IDLE_PERIODS {
                stale.push(*k);
                continue;
            }
            next.insert(*k, (*total, idle));
            if delta == 0 {
                continue;
            }
            let name = names.entry(k.tgid).or_insert_with(|| comm(k.tgid)).clone();
            let row = Row {
                ids: [
                    name,
                    addr(k.client_family, &k.client),
                    addr(k.client_family, &k.virt),
                    addr(k.server_family, &k.local),
                    addr(k.server_family, &k.server),
                ],
                server_port: k.server_port,
                virtual_port: k.virtual_port,
                family: k.client_family,
            };
            *rows.entry(row).or_default() += delta;
        }
        self.last = next;
        Period {
            rows: rows.into_iter().collect(),
            stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&a);
        b
    }

    fn key(tgid: u32, client: [u8; 4], server: [u8; 4], sport: u16) -> LinkKey {
        LinkKey {
            tgid,
            client_family: AF_INET,
            server_family: AF_INET,
            virtual_port: 8080,
            server_port: sport,
            client: v4(client),
            virt: v4([10, 0, 0, 1]),
            local: v4([10, 1, 0, 1]),
            server: v4(server),
        }
    }

    #[test]
    fn keys_round_trip_and_bad_sizes_are_refused() {
        let k = key(7, [1, 2, 3, 4], [5, 6, 7, 8], 80);
        assert_eq!(LinkKey::decode(&k.encode()), Some(k));
        assert_eq!(LinkKey::decode(&[0u8; 75]), None);
    }

    #[test]
    fn addresses_print_as_tcp_link_prints_them() {
        assert_eq!(addr(AF_INET, &v4([10, 0, 0, 2])), "10.0.0.2");
        let mut m = [0u8; 16];
        m[10] = 0xff;
        m[11] = 0xff;
        m[12..].copy_from_slice(&[192, 168, 1, 9]);
        assert_eq!(addr(AF_INET6, &m), "192.168.1.9");
        let mut l = [0u8; 16];
        l[15] = 1;
        assert_eq!(addr(AF_INET6, &l), "::1");
    }

    #[test]
    fn periods_report_increments_summed_over_workers_and_drop_idle_keys() {
        let mut agg = Aggregator::default();
        let a = key(10, [1, 1, 1, 1], [9, 9, 9, 1], 80);
        let b = key(11, [1, 1, 1, 1], [9, 9, 9, 1], 80); // another worker
        let c = key(10, [1, 1, 1, 1], [9, 9, 9, 2], 81);
        let name = |_| "haproxy".to_string();
        let p = agg.period(&[(a, 5), (b, 2), (c, 4)], name);
        assert_eq!(p.rows.len(), 2, "{:?}", p.rows);
        let get = |p: &Period, srv: &str| {
            p.rows
                .iter()
                .find(|(r, _)| r.ids[4] == srv)
                .map(|(r, n)| (r.values(*n), *n))
        };
        let (vals, n) = get(&p, "9.9.9.1").expect("row");
        assert_eq!(n, 7);
        assert_eq!(
            vals,
            [
                "haproxy", "1.1.1.1", "10.0.0.1", "10.1.0.1", "9.9.9.1", "80", "8080", "6", "2",
                "7"
            ]
        );
        // Next period: only what was added; an unchanged key is no record.
        let p = agg.period(&[(a, 8), (b, 2), (c, 4)], name);
        assert_eq!(p.rows.len(), 1);
        assert_eq!(get(&p, "9.9.9.1").map(|x| x.1), Some(3));
        // A total below the last one was deleted and made again.
        let p = agg.period(&[(a, 2), (b, 2), (c, 4)], name);
        assert_eq!(get(&p, "9.9.9.1").map(|x| x.1), Some(2));
        let mut stale = Vec::new();
        for _ in 0..IDLE_PERIODS {
            stale.extend(agg.period(&[(a, 2), (b, 2), (c, 4)], name).stale);
        }
        assert_eq!(stale.len(), 3, "{stale:?}");
    }
}
