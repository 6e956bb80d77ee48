//! Decoding for `dnsmasq_link`: the ring buffer's `struct dl_query`
//! (`dnsmasq_link.h`), the sender's `sockaddr`, the `IP_PKTINFO` ancillary
//! data and the DNS question; and the per-period aggregation into records.
//!
//! All of it reads untrusted bytes (anyone can send a datagram to dnsmasq):
//! every function returns an error for what it cannot read, never panics,
//! and reads only inside the slice it is given.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// `DL_PAYLOAD_MAX`.
pub const PAYLOAD_MAX: usize = 512;
/// `DL_CTL_MAX`.
pub const CTL_MAX: usize = 128;
/// `DL_NAME_MAX`.
pub const NAME_MAX: usize = 28;
/// `DL_COMM_LEN`.
pub const COMM_LEN: usize = 16;
/// Size of `struct dl_query`.
pub const QUERY_SIZE: usize = 720;
/// Size of `struct dl_client_key`.
pub const CLIENT_KEY_SIZE: usize = 20;
/// Size of `struct dl_client_val`.
pub const CLIENT_VAL_SIZE: usize = 32;

/// Offsets in `struct dl_query`.
pub(crate) mod off {
    pub const TGID: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const RET: usize = 8;
    pub const NAME_LEN: usize = 12;
    pub const CTL_LEN: usize = 14;
    pub const SOCK_FAMILY: usize = 16;
    pub const SOCK_PORT: usize = 18;
    pub const SOCK_ADDR: usize = 20;
    pub const NAME: usize = 36;
    pub const COMM: usize = 64;
    pub const CTL: usize = 80;
    pub const PAYLOAD: usize = 208;
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the struct or the field needs.
    #[error("{what}: {got} bytes, expected at least {expected}")]
    Short {
        /// What was being read.
        what: &'static str,
        /// Bytes there.
        got: usize,
        /// Bytes needed.
        expected: usize,
    },
    /// A length field larger than its buffer.
    #[error("{what}: length {len} exceeds its buffer of {max}")]
    Length {
        /// Which length.
        what: &'static str,
        /// Its value.
        len: usize,
        /// The buffer's size.
        max: usize,
    },
    /// A sockaddr of another family.
    #[error("sender address: family {0}, expected 2 (AF_INET) or 10 (AF_INET6)")]
    Family(u16),
    /// A DNS message that is not a well-formed query.
    #[error("DNS message: {0}")]
    Dns(&'static str),
}

fn short(what: &'static str, got: usize, expected: usize) -> DecodeError {
    DecodeError::Short {
        what,
        got,
        expected,
    }
}

fn u16_ne(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_ne(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn comm(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A v4-mapped IPv6 address as IPv4, any other as it is.
pub fn unmap(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

fn ip_of(family: u16, b: &[u8]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        let mut x = [0u8; 16];
        x.copy_from_slice(&b[..16]);
        IpAddr::V6(Ipv6Addr::from(x))
    }
}

/// One datagram a server process received, as the kernel side sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawQuery<'a> {
    /// The server process.
    pub tgid: u32,
    /// Its comm.
    pub comm: String,
    /// Bytes the receive call returned.
    pub ret: u32,
    /// The sender's sockaddr.
    pub name: &'a [u8],
    /// Ancillary data.
    pub ctl: &'a [u8],
    /// The start of the datagram.
    pub payload: &'a [u8],
    /// The receiving socket's bound address (`None`: unknown).
    pub sock_addr: Option<IpAddr>,
    /// Its port.
    pub sock_port: u16,
}

impl<'a> RawQuery<'a> {
    /// Decodes a `struct dl_query` from the ring buffer.
    pub fn decode(b: &'a [u8]) -> Result<Self, DecodeError> {
        if b.len() < QUERY_SIZE {
            return Err(short("struct dl_query", b.len(), QUERY_SIZE));
        }
        let len = |at: usize, what: &'static str, max: usize, wide: bool| {
            let n = if wide {
                u32_ne(b, at) as usize
            } else {
                usize::from(u16_ne(b, at))
            };
            if n > max {
                Err(DecodeError::Length { what, len: n, max })
            } else {
                Ok(n)
            }
        };
        let payload_len = len(off::PAYLOAD_LEN, "payload_len", PAYLOAD_MAX, true)?;
        let name_len = len(off::NAME_LEN, "name_len", NAME_MAX, false)?;
        let ctl_len = len(off::CTL_LEN, "ctl_len", CTL_MAX, false)?;
        let family = u16_ne(b, off::SOCK_FAMILY);
        let sock_addr = match family {
            AF_INET | AF_INET6 => Some(unmap(ip_of(family, &b[off::SOCK_ADDR..off::NAME]))),
            _ => None,
        };
        Ok(Self {
            tgid: u32_ne(b, off::TGID),
            comm: comm(&b[off::COMM..off::COMM + COMM_LEN]),
            ret: u32_ne(b, off::RET),
            name: &b[off::NAME..off::NAME + name_len],
            ctl: &b[off::CTL..off::CTL + ctl_len],
            payload: &b[off::PAYLOAD..off::PAYLOAD + payload_len],
            sock_addr,
            sock_port: u16_ne(b, off::SOCK_PORT),
        })
    }
}

/// A `struct sockaddr_in` or `sockaddr_in6`: the address (v4-mapped shown
/// as IPv4) and the port.
pub fn sockaddr(b: &[u8]) -> Result<(IpAddr, u16), DecodeError> {
    if b.len() < 2 {
        return Err(short("sender address", b.len(), 16));
    }
    let family = u16_ne(b, 0);
    let need = match family {
        AF_INET => 8,
        AF_INET6 => 24,
        f => return Err(DecodeError::Family(f)),
    };
    if b.len() < need {
        return Err(short("sender address", b.len(), need));
    }
    let port = u16::from_be_bytes([b[2], b[3]]);
    let ip = if family == AF_INET {
        ip_of(AF_INET, &b[4..8])
    } else {
        unmap(ip_of(AF_INET6, &b[8..24]))
    };
    Ok((ip, port))
}

/// `SOL_IP`/`IPPROTO_IP`.
const SOL_IP: i32 = 0;
/// `IP_PKTINFO`.
const IP_PKTINFO: i32 = 8;
/// `SOL_IPV6`/`IPPROTO_IPV6`.
const SOL_IPV6: i32 = 41;
/// `IPV6_PKTINFO`.
const IPV6_PKTINFO: i32 = 50;
/// `sizeof(struct cmsghdr)` and the alignment of its data (64-bit Linux:
/// `size_t cmsg_len; int cmsg_level; int cmsg_type;`).
const CMSG_HDR: usize = 16;
const CMSG_ALIGN: usize = 8;

/// The destination address of the datagram from the ancillary data
/// (`IP_PKTINFO`'s `ipi_addr`, `IPV6_PKTINFO`'s `ipi6_addr`), if there.
/// Stops at the first malformed header.
pub fn pktinfo_dst(ctl: &[u8]) -> Option<IpAddr> {
    let mut at = 0usize;
    while ctl.len().saturating_sub(at) >= CMSG_HDR {
        let h = &ctl[at..];
        let len = usize::try_from(u64::from_ne_bytes(h[..8].try_into().ok()?)).ok()?;
        let level = i32::from_ne_bytes(h[8..12].try_into().ok()?);
        let kind = i32::from_ne_bytes(h[12..16].try_into().ok()?);
        if len < CMSG_HDR || len > h.len() {
            return None;
        }
        let data = &h[CMSG_HDR..len];
        match (level, kind) {
            // struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
            (SOL_IP, IP_PKTINFO) if data.len() >= 12 => {
                return Some(ip_of(AF_INET, &data[8..12]));
            }
            // struct in6_pktinfo { in6_addr addr; int ifindex; }
            (SOL_IPV6, IPV6_PKTINFO) if data.len() >= 16 => {
                return Some(unmap(ip_of(AF_INET6, &data[..16])));
            }
            _ => {}
        }
        at = at.checked_add(len.checked_add(CMSG_ALIGN - 1)? & !(CMSG_ALIGN - 1))?;
    }
    None
}

/// What a datagram sent to the DNS server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dns {
    /// A standard query: the name asked (lower case, no trailing dot; "."
    /// for the root) and its type.
    Query {
        /// The name.
        name: String,
        /// QTYPE (1 A, 28 AAAA, ...).
        qtype: u16,
    },
    /// A well-formed message that is not a standard query (a response, a
    /// NOTIFY, an UPDATE): not counted.
    Other,
}

/// Longest name in wire form (RFC 1035 3.1).
const NAME_WIRE_MAX: usize = 255;

/// Parses the header and first question of a DNS message. `payload` may be
/// the first bytes only of a longer datagram.
pub fn parse_dns(payload: &[u8]) -> Result<Dns, DecodeError> {
    if payload.len() < 12 {
        return Err(DecodeError::Dns("shorter than the 12-byte header"));
    }
    let flags = u16::from_be_bytes([payload[2], payload[3]]);
    let qdcount = u16::from_be_bytes([payload[4], payload[5]]);
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if is_response || opcode != 0 {
        return Ok(Dns::Other);
    }
    if qdcount == 0 {
        return Err(DecodeError::Dns("a query without a question"));
    }
    let mut at = 12usize;
    let mut name = String::new();
    let mut wire = 0usize;
    loop {
        let Some(&len) = payload.get(at) else {
            return Err(DecodeError::Dns("question name runs past the data"));
        };
        at += 1;
        wire += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return Err(DecodeError::Dns(
                "compressed or extended label in the question",
            ));
        }
        let len = usize::from(len);
        wire += len;
        if wire > NAME_WIRE_MAX {
            return Err(DecodeError::Dns("question name longer than 255 bytes"));
        }
        let Some(label) = payload.get(at..at + len) else {
            return Err(DecodeError::Dns("question name runs past the data"));
        };
        at += len;
        if !name.is_empty() {
            name.push('.');
        }
        for &c in label {
            match c {
                b'.' | b'\\' => {
                    name.push('\\');
                    name.push(char::from(c));
                }
                0x21..=0x7e => name.push(char::from(c.to_ascii_lowercase())),
                _ => {
                    let _ = write!(name, "\\{c:03}");
                }
            }
        }
    }
    let Some(qt) = payload.get(at..at + 4) else {
        return Err(DecodeError::Dns(
            "question type and class run past the data",
        ));
    };
    if name.is_empty() {
        name.push('.');
    }
    Ok(Dns::Query {
        name,
        qtype: u16::from_be_bytes([qt[0], qt[1]]),
    })
}

/// A client socket of this host (`struct dl_client_key`).
pub fn client_key(family: u16, port: u16, addr: Option<IpAddr>) -> [u8; CLIENT_KEY_SIZE] {
    let mut k = [0u8; CLIENT_KEY_SIZE];
    k[..2].copy_from_slice(&family.to_ne_bytes());
    k[2..4].copy_from_slice(&port.to_ne_bytes());
    match addr {
        Some(IpAddr::V4(a)) => k[4..8].copy_from_slice(&a.octets()),
        Some(IpAddr::V6(a)) => k[4..20].copy_from_slice(&a.octets()),
        None => {}
    }
    k
}

/// The keys to try, best first, for a query sent from `ip:port`: the
/// socket bound to that address, then an unbound one of its family, then
/// (for IPv4) an unbound dual-stack IPv6 socket.
pub fn client_keys(ip: IpAddr, port: u16) -> Vec<[u8; CLIENT_KEY_SIZE]> {
    match ip {
        IpAddr::V4(_) => vec![
            client_key(AF_INET, port, Some(ip)),
            client_key(AF_INET, port, None),
            client_key(AF_INET6, port, None),
        ],
        IpAddr::V6(_) => vec![
            client_key(AF_INET6, port, Some(ip)),
            client_key(AF_INET6, port, None),
        ],
    }
}

/// The owner of a client socket (`struct dl_client_val`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientVal {
    /// Its process.
    pub pid: u32,
    /// Its comm.
    pub comm: String,
    /// When it last sent to the DNS port (CLOCK_MONOTONIC, ns).
    pub ts: u64,
}

/// A socket that has not sent to the DNS port for this long is not taken
/// as a query's sender: its entry may be from an earlier process, and an
/// unbound socket's entry (address 0) would otherwise claim a remote
/// client that happens to use the same port.
pub const CLIENT_FRESH_NS: u64 = 60_000_000_000;

impl ClientVal {
    /// Whether it sent to the DNS port within [`CLIENT_FRESH_NS`] of
    /// `now_ns` (CLOCK_MONOTONIC).
    pub fn fresh(&self, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.ts) <= CLIENT_FRESH_NS
    }
}

impl ClientVal {
    /// Decodes a `struct dl_client_val`.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < CLIENT_VAL_SIZE {
            return Err(short("struct dl_client_val", b.len(), CLIENT_VAL_SIZE));
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[8..16]);
        Ok(Self {
            pid: u32_ne(b, 0),
            comm: comm(&b[16..16 + COMM_LEN]),
            ts: u64::from_ne_bytes(ts),
        })
    }
}

/// A decoded query, ready to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The sender.
    pub client: IpAddr,
    /// Its port.
    pub client_port: u16,
    /// The address it asked (the datagram's destination).
    pub server: IpAddr,
    /// The name.
    pub domain: String,
    /// The server process's comm.
    pub server_comm: String,
}

/// What one datagram turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A query.
    Query(Query),
    /// Not a query (a response from an upstream server...).
    Ignored,
    /// Unreadable; the error says why.
    Malformed(DecodeError),
}

/// Decodes one ring buffer sample entirely.
pub fn classify(sample: &[u8]) -> Outcome {
    let raw = match RawQuery::decode(sample) {
        Ok(r) => r,
        Err(e) => return Outcome::Malformed(e),
    };
    let (client, client_port) = match sockaddr(raw.name) {
        Ok(a) => a,
        Err(e) => return Outcome::Malformed(e),
    };
    let domain = match parse_dns(raw.payload) {
        Ok(Dns::Query { name, .. }) => name,
        Ok(Dns::Other) => return Outcome::Ignored,
        Err(e) => return Outcome::Malformed(e),
    };
    let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let server = pktinfo_dst(raw.ctl)
        .or(raw.sock_addr.filter(|a| !a.is_unspecified()))
        .unwrap_or(unspecified);
    Outcome::Query(Query {
        client,
        client_port,
        server,
        domain,
        server_comm: raw.comm,
    })
}

/// The key fields of a record: client_ip, virtual_ip, domain, pid.
type RecKey = (IpAddr, IpAddr, String, u32);
/// The labels: process_comm, server_comm.
type RecLabels = (String, String);

/// Distinct records kept per period at most: a flood of random names does
/// not grow the agent without bound.
pub const MAX_RECORDS: usize = 16384;

/// Queries counted over one period.
#[derive(Debug, Default)]
pub struct Period {
    counts: HashMap<RecKey, (RecLabels, u64)>,
}

impl Period {
    /// Counts one query, asked by `asker` (`None`: remote or unknown).
    /// Returns false when it would be a new record beyond [`MAX_RECORDS`]
    /// (not counted).
    pub fn add(&mut self, q: &Query, asker: Option<&ClientVal>) -> bool {
        let (pid, comm) = asker.map_or((0, String::new()), |a| (a.pid, a.comm.clone()));
        let key = (q.client, q.server, q.domain.clone(), pid);
        if self.counts.len() >= MAX_RECORDS && !self.counts.contains_key(&key) {
            return false;
        }
        let e = self
            .counts
            .entry(key)
            .or_insert(((comm, q.server_comm.clone()), 0));
        e.1 += 1;
        true
    }

    /// The records of the period, in meta/dnsmasq_link.meta order
    /// (client_ip, virtual_ip, domain, pid, process_comm, server_comm,
    /// family, link_count), sorted; the period starts over.
    pub fn take(&mut self) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = self
            .counts
            .drain()
            .map(|((client, server, domain, pid), ((comm, scomm), n))| {
                let family = if client.is_ipv4() { "4" } else { "6" };
                vec![
                    client.to_string(),
                    server.to_string(),
                    domain,
                    pid.to_string(),
                    comm,
                    scomm,
                    family.to_owned(),
                    n.to_string(),
                ]
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests;
