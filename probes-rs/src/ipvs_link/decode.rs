//! The kernel side's map entries (`ipvs_link.h`) decoded into `ipvs_link`
//! records (docs/compat.md §8).
//!
//! Everything here works on byte slices as read from the map, so it is unit
//! tested without a kernel that has IPVS: a short or inconsistent entry is
//! an error naming what is wrong, never a panic.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// Size of `struct ipvs_key`.
pub const KEY_SIZE: usize = 76;
/// Size of `struct ipvs_val`.
pub const VAL_SIZE: usize = 16;

/// Offsets in `struct ipvs_key`.
mod off {
    pub const CADDR: usize = 0;
    pub const VADDR: usize = 16;
    pub const DADDR: usize = 32;
    pub const LADDR: usize = 48;
    pub const VPORT: usize = 64;
    pub const DPORT: usize = 66;
    pub const AF: usize = 68;
    pub const DAF: usize = 70;
    pub const PROTOCOL: usize = 72;
}

/// Why a map entry cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the struct.
    #[error("{what}: {got} bytes, expected {expected}")]
    Short {
        /// Which struct.
        what: &'static str,
        /// Bytes given.
        got: usize,
        /// Its size.
        expected: usize,
    },
    /// A family that is neither AF_INET nor AF_INET6.
    #[error("{what}: address family {family}, expected 2 (AF_INET) or 10 (AF_INET6)")]
    Family {
        /// Which field.
        what: &'static str,
        /// The value found.
        family: u16,
    },
}

/// One flow: client -> virtual service -> real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The client.
    pub client: IpAddr,
    /// The virtual service's address.
    pub virtual_ip: IpAddr,
    /// The virtual service's port (host order).
    pub virtual_port: u16,
    /// The real server.
    pub server: IpAddr,
    /// The real server's port (host order).
    pub server_port: u16,
    /// The source-NAT address toward the server (full-NAT builds), if any.
    pub local: Option<IpAddr>,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub protocol: u16,
}

/// A flow's cumulative connection counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowVal {
    /// Connections IPVS created.
    pub opened: u64,
    /// Connections it freed.
    pub closed: u64,
}

fn u16_ne(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u16_be(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn addr(b: &[u8], at: usize, family: u16) -> IpAddr {
    let a = &b[at..at + 16];
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    } else {
        let mut x = [0u8; 16];
        x.copy_from_slice(a);
        let v6 = Ipv6Addr::from(x);
        // Mixed-family services: a v4-mapped address is shown as IPv4.
        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
    }
}

fn family(b: &[u8], at: usize, what: &'static str) -> Result<u16, DecodeError> {
    match u16_ne(b, at) {
        f @ (AF_INET | AF_INET6) => Ok(f),
        family => Err(DecodeError::Family { what, family }),
    }
}

impl FlowKey {
    /// Decodes a `struct ipvs_key`.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < KEY_SIZE {
            return Err(DecodeError::Short {
                what: "struct ipvs_key",
                got: b.len(),
                expected: KEY_SIZE,
            });
        }
        let af = family(b, off::AF, "struct ipvs_key af")?;
        let daf = family(b, off::DAF, "struct ipvs_key daf")?;
        let laddr = &b[off::LADDR..off::LADDR + 16];
        Ok(Self {
            client: addr(b, off::CADDR, af),
            virtual_ip: addr(b, off::VADDR, af),
            virtual_port: u16_be(b, off::VPORT),
            server: addr(b, off::DADDR, daf),
            server_port: u16_be(b, off::DPORT),
            local: laddr
                .iter()
                .any(|&x| x != 0)
                .then(|| addr(b, off::LADDR, daf)),
            protocol: u16_ne(b, off::PROTOCOL),
        })
    }

    /// `family` as the table reports it, as haproxy_link does: the client
    /// side's address family, 2 (AF_INET) or 10 (AF_INET6).
    pub fn family(&self) -> u16 {
        match self.client {
            IpAddr::V4(_) => AF_INET,
            IpAddr::V6(_) => AF_INET6,
        }
    }

    /// The address the real server sees as its peer: the full-NAT local
    /// address where there is one; else the client's own (mainline IPVS,
    /// NAT, direct routing and tunnelling, does not rewrite the source).
    pub fn local_ip(&self) -> IpAddr {
        self.local.unwrap_or(self.client)
    }

    /// The record in meta/ipvs_link.meta field order: process_name,
    /// client_ip, virtual_ip, local_ip, server_ip, server_port,
    /// virtual_port, protocol, family, link_count.
    pub fn record(&self, link_count: u64) -> Vec<String> {
        vec![
            PROCESS_NAME.to_owned(),
            self.client.to_string(),
            self.virtual_ip.to_string(),
            self.local_ip().to_string(),
            self.server.to_string(),
            self.server_port.to_string(),
            self.virtual_port.to_string(),
            self.protocol.to_string(),
            self.family().to_string(),
            link_count.to_string(),
        ]
    }
}

/// `process_name` of every record: IPVS runs in the kernel (the legacy
/// probe's name).
pub const PROCESS_NAME: &str = "ipvs";

impl FlowVal {
    /// Decodes a `struct ipvs_val`.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < VAL_SIZE {
            return Err(DecodeError::Short {
                what: "struct ipvs_val",
                got: b.len(),
                expected: VAL_SIZE,
            });
        }
        let u = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            u64::from_ne_bytes(x)
        };
        Ok(Self {
            opened: u(0),
            closed: u(8),
        })
    }
}

/// Per-period counting: a flow's `link_count` is the number of its
/// connections alive at some time in the period, those open now plus those
/// closed during it, which is `opened` now minus `closed` at the previous
/// report.
#[derive(Debug, Default)]
pub struct Periods {
    /// Per flow: `closed` at the previous report and periods without change.
    prev: HashMap<FlowKey, (u64, u64, u32)>,
}

impl Periods {
    /// The records of this period; also returns the flows that are idle
    /// (nothing open, nothing new) for `idle_after` periods, to delete.
    pub fn period(
        &mut self,
        flows: &[(FlowKey, FlowVal)],
        idle_after: u32,
    ) -> (Vec<Vec<String>>, Vec<FlowKey>) {
        let mut out = Vec::new();
        let mut idle = Vec::new();
        let mut seen = HashMap::new();
        for (k, v) in flows {
            let (prev_closed, prev_opened, quiet) = self.prev.get(k).copied().unwrap_or((0, 0, 0));
            let count = v.opened.saturating_sub(prev_closed);
            if count > 0 {
                out.push(k.record(count));
            }
            let quiet = if v.opened == prev_opened && v.opened == v.closed {
                quiet + 1
            } else {
                0
            };
            if quiet >= idle_after {
                idle.push(*k);
            } else {
                seen.insert(*k, (v.closed, v.opened, quiet));
            }
        }
        self.prev = seen;
        (out, idle)
    }
}

#[cfg(test)]
mod tests;
