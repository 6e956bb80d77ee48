//! `system_tcp`: one record per TCP socket, at most [`MAX_SOCKETS`] per
//! period, from the kernel's sock_diag netlink dump (see [`super::sock_diag`])
//! or, on a kernel without it, from `/proc/net/tcp` and `/proc/net/tcp6`.
//!
//! The kernel lists listening sockets first, so under the cap the listeners
//! are always reported. TIME_WAIT sockets are left out: they belong to no
//! process and hold no data, and a busy server has tens of thousands of them,
//! which would dominate both the cost of the probe and the series count. Records are keyed by the address and port pair; two
//! sockets sharing it (e.g. `SO_REUSEPORT` listeners) share one series.

use std::fs::File;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::sock_diag::SockDiag;
use super::{io_error, Collect, Periodic, PROC_ROOT};
use crate::api::{Emitter, Probe, ProbeError};

/// Probe name.
pub const PROBE: &str = "system_tcp";
/// Table name (`meta/system_tcp.meta`).
pub const TABLE: &str = "system_tcp";
/// Kernel state number of TIME_WAIT (not reported).
pub const TIME_WAIT: u8 = 6;
/// Most sockets reported per period, IPv4 and IPv6 together.
pub const MAX_SOCKETS: usize = 4096;

/// Fields in meta order: four keys, the seed's `st` and `retrnsmt` gauges,
/// then extras.
pub const FIELDS: &[&str] = &[
    "local_address",
    "local_port",
    "rem_address",
    "rem_port",
    "st",
    "retrnsmt",
    "tx_queue",
    "rx_queue",
    "uid",
    "inode",
];

/// Byte order of the kernel that wrote the file: it prints each 32-bit word
/// of an address as a host-order integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// x86, arm64, riscv, ...
    Little,
    /// s390x, ...
    Big,
}

impl ByteOrder {
    /// The byte order of this machine, and so of its kernel.
    pub const NATIVE: Self = if cfg!(target_endian = "big") {
        Self::Big
    } else {
        Self::Little
    };
}

/// One line of `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    /// Local address.
    pub local: IpAddr,
    /// Local port.
    pub local_port: u16,
    /// Remote address (unspecified for a listener).
    pub remote: IpAddr,
    /// Remote port (0 for a listener).
    pub remote_port: u16,
    /// Kernel TCP state number (1 ESTABLISHED .. 10 LISTEN, 11 CLOSING).
    pub state: u8,
    /// Send queue bytes (for a listener: 0).
    pub tx_queue: u32,
    /// Receive queue bytes (for a listener: the accept backlog).
    pub rx_queue: u32,
    /// Unrecovered retransmission timeouts.
    pub retransmits: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Socket inode (0 for TIME_WAIT).
    pub inode: u64,
}

/// A whole hexadecimal number of at most 8 digits (no sign, no prefix).
fn hex_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Decodes an address: 8 hex digits for IPv4 or 32 for IPv6, each group of
/// 8 being a 32-bit word printed in the kernel's byte order.
pub fn decode_addr(hex: &str, order: ByteOrder) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let v = hex_u32(hex.get(i * 8..i * 8 + 8)?)?;
        Some(match order {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        })
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Decodes `ADDR:PORT` (port in hex).
fn decode_endpoint(s: &str, order: ByteOrder) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    Some((
        decode_addr(addr, order)?,
        u16::try_from(hex_u32(port)?).ok()?,
    ))
}

/// Parses one socket line. `None` for the header line and for anything
/// malformed.
pub fn parse_tcp_line(line: &str, order: ByteOrder) -> Option<TcpSocket> {
    let mut w = line.split_whitespace();
    let slot = w.next()?;
    if !slot
        .strip_suffix(':')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let (local, local_port) = decode_endpoint(w.next()?, order)?;
    let (remote, remote_port) = decode_endpoint(w.next()?, order)?;
    let state = u8::try_from(hex_u32(w.next()?)?).ok()?;
    let (tx, rx) = w.next()?.split_once(':')?;
    let (tx_queue, rx_queue) = (hex_u32(tx)?, hex_u32(rx)?);
    let _timer = w.next()?;
    let retransmits = hex_u32(w.next()?)?;
    let uid = w.next()?.parse().ok()?;
    let _timeout = w.next()?;
    let inode = w.next()?.parse().ok()?;
    Some(TcpSocket {
        local,
        local_port,
        remote,
        remote_port,
        state,
        tx_queue,
        rx_queue,
        retransmits,
        uid,
        inode,
    })
}

/// The sockets of a whole file's text (the first line is the header).
pub fn parse_tcp(text: &str, order: ByteOrder) -> impl Iterator<Item = TcpSocket> + '_ {
    text.lines()
        .skip(1)
        .filter_map(move |l| parse_tcp_line(l, order))
}

/// The record for one socket. Addresses are dotted IPv4 or RFC 5952 IPv6
/// text (`::1`, `::ffff:127.0.0.1`), numbers in decimal.
pub fn record_values(s: &TcpSocket) -> Vec<String> {
    vec![
        s.local.to_string(),
        s.local_port.to_string(),
        s.remote.to_string(),
        s.remote_port.to_string(),
        s.state.to_string(),
        s.retransmits.to_string(),
        s.tx_queue.to_string(),
        s.rx_queue.to_string(),
        s.uid.to_string(),
        s.inode.to_string(),
    ]
}

/// Where the sockets are read from.
#[derive(Debug)]
enum Source {
    /// `<root>/net/tcp{,6}`.
    Proc,
    /// sock_diag, opened at the first collection.
    Netlink(Option<SockDiag>),
}

/// Reads the sockets each period: from sock_diag (the live collector), or
/// by streaming `<root>/net/tcp` and `<root>/net/tcp6`.
#[derive(Debug)]
pub struct TcpCollector {
    tcp: PathBuf,
    tcp6: PathBuf,
    order: ByteOrder,
    buf: Vec<u8>,
    warned: bool,
    source: Source,
}

impl TcpCollector {
    /// A collector for the proc filesystem at `root`, on this machine's byte
    /// order.
    pub fn new(root: &Path) -> Self {
        Self {
            tcp: root.join("net/tcp"),
            tcp6: root.join("net/tcp6"),
            order: ByteOrder::NATIVE,
            buf: Vec::new(),
            warned: false,
            source: Source::Proc,
        }
    }

    /// The collector of this machine: sock_diag, falling back to `root`'s
    /// files (with one log line) when the kernel refuses it.
    pub fn live(root: &Path) -> Self {
        Self {
            source: Source::Netlink(None),
            ..Self::new(root)
        }
    }

    /// One period over sock_diag: (emitted, capped).
    fn collect_netlink(&mut self, emitter: &Emitter) -> std::io::Result<(usize, bool)> {
        let tcp6 = self.tcp6_in_use();
        let Source::Netlink(diag) = &mut self.source else {
            return Ok((0, false));
        };
        let diag = match diag {
            Some(d) => d,
            None => diag.insert(SockDiag::open()?),
        };
        let (mut emitted, mut capped) = (0usize, false);
        let families: &[i32] = if tcp6 {
            &[libc::AF_INET, libc::AF_INET6]
        } else {
            &[libc::AF_INET]
        };
        for &family in families {
            // The dump is read to its end even past the cap, so the next
            // period's answer starts clean.
            diag.dump(family, &mut |sock| {
                if emitted == MAX_SOCKETS {
                    capped = true;
                } else {
                    emitter.record(TABLE, record_values(&sock));
                    emitted += 1;
                }
            })?;
        }
        Ok((emitted, capped))
    }

    /// One period over `/proc/net/tcp{,6}`: whether the cap was reached.
    fn collect_proc(&mut self, emitter: &Emitter) -> Result<bool, ProbeError> {
        let (n4, mut capped) = emit_file(
            &self.tcp,
            false,
            MAX_SOCKETS,
            self.order,
            &mut self.buf,
            emitter,
        )?;
        // Every read of /proc/net/tcp6 walks the kernel's whole TCP hash
        // table, even with no IPv6 socket: skip it when sockstat6 says so.
        if !capped && self.tcp6_in_use() {
            let room = MAX_SOCKETS.saturating_sub(n4);
            capped = emit_file(&self.tcp6, true, room, self.order, &mut self.buf, emitter)?.1;
        }
        Ok(capped)
    }
}

impl TcpCollector {
    /// Whether `net/sockstat6` reports IPv6 TCP sockets in use (true when
    /// it cannot be read, so nothing is missed).
    fn tcp6_in_use(&self) -> bool {
        let Some(dir) = self.tcp6.parent() else {
            return true;
        };
        match std::fs::read_to_string(dir.join("sockstat6")) {
            Ok(text) => tcp6_inuse(&text).is_none_or(|n| n > 0),
            Err(_) => true,
        }
    }
}

/// The `TCP6: inuse N` count of a `/proc/net/sockstat6` text.
fn tcp6_inuse(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("TCP6:"))?;
    let mut w = line.split_whitespace();
    while let Some(k) = w.next() {
        if k == "inuse" {
            return w.next()?.parse().ok();
        }
    }
    None
}

/// Emits the sockets of one file, at most `room`, reading it line by line
/// into `line`; returns how many were emitted and whether more were left. A
/// missing file counts as empty when `optional` (`tcp6` without IPv6).
fn emit_file(
    path: &Path,
    optional: bool,
    room: usize,
    order: ByteOrder,
    buf: &mut Vec<u8>,
    emitter: &Emitter,
) -> Result<(usize, bool), ProbeError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if optional && e.kind() == ErrorKind::NotFound => return Ok((0, false)),
        Err(e) => return Err(io_error(path, e)),
    };
    read_few_calls(&mut file, buf, READ_MAX).map_err(|e| io_error(path, e))?;
    let text = String::from_utf8_lossy(buf);
    let (mut emitted, mut skipped) = (0usize, 0usize);
    for line in text.lines().skip(1) {
        let Some(sock) = parse_tcp_line(line, order) else {
            skipped += 1;
            continue;
        };
        if sock.state == TIME_WAIT {
            continue;
        }
        if emitted == room {
            return Ok((emitted, true));
        }
        emitter.record(TABLE, record_values(&sock));
        emitted += 1;
    }
    if skipped > 0 {
        tracing::debug!(probe = PROBE, path = %path.display(), skipped, "malformed socket lines skipped");
    }
    Ok((emitted, false))
}

/// Most bytes read from one socket file per period: the cap of
/// [`MAX_SOCKETS`] lines of ~150 bytes fits with room to spare.
const READ_MAX: usize = 1 << 20;

/// Reads a /proc seq_file into `buf` in as few read(2) calls as it can:
/// every call on /proc/net/tcp walks the kernel's whole TCP hash table, so
/// one large read that comes back short (a seq_file fills the buffer unless
/// it reached the end) replaces the usual read-until-zero loop.
fn read_few_calls(file: &mut File, buf: &mut Vec<u8>, max: usize) -> std::io::Result<()> {
    use std::io::Read as _;
    buf.clear();
    let mut chunk = 256 * 1024;
    loop {
        let start = buf.len();
        buf.resize(start + chunk, 0);
        let n = loop {
            match file.read(&mut buf[start..]) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        };
        buf.truncate(start + n);
        if n < chunk || buf.len() >= max {
            return Ok(());
        }
        chunk = chunk.min(max - buf.len()).max(4096);
    }
}

impl Collect for TcpCollector {
    fn collect(&mut self, emitter: &Emitter) -> Result<(), ProbeError> {
        let capped = match &self.source {
            Source::Proc => self.collect_proc(emitter)?,
            Source::Netlink(_) => match self.collect_netlink(emitter) {
                Ok((_, capped)) => capped,
                Err(e) => {
                    // No inet_diag (module absent, a refused dump): /proc
                    // from now on. A dump cut midway may have emitted some
                    // sockets already; /proc re-emits them in the same series.
                    tracing::warn!(
                        probe = PROBE,
                        error = %e,
                        "sock_diag netlink dump of TCP sockets failed; reading {} instead",
                        self.tcp.display()
                    );
                    self.source = Source::Proc;
                    self.collect_proc(emitter)?
                }
            },
        };
        if capped && !self.warned {
            self.warned = true;
            tracing::warn!(
                probe = PROBE,
                cap = MAX_SOCKETS,
                "more TCP sockets than the per-period cap; the rest are not reported"
            );
        }
        Ok(())
    }
}

/// Builds the probe over sock_diag, or the real `/proc` without it.
pub fn build() -> Box<dyn Probe> {
    Periodic::boxed(PROBE, &[TABLE], TcpCollector::live(Path::new(PROC_ROOT)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::test_support::{check_meta, drain, emitter, fixture_root};

    const TCP: &str = include_str!("../../../tests/data/proc/net/tcp");
    const TCP6: &str = include_str!("../../../tests/data/proc/net/tcp6");

    fn rows(text: &str) -> Vec<Vec<String>> {
        parse_tcp(text, ByteOrder::Little)
            .map(|s| record_values(&s))
            .collect()
    }

    #[test]
    fn meta_matches_fields() {
        check_meta(include_str!("../../../meta/system_tcp.meta"), TABLE, FIELDS);
    }

    #[test]
    fn parses_ipv4_fixture() {
        // Fixture from an x86_64 kernel: listeners first, an established pair
        // with 100 unread bytes, a v4 client of a dual-stack listener, a TIME_WAIT.
        let want: [[&str; 10]; 6] = [
            [
                "127.0.0.1",
                "8080",
                "0.0.0.0",
                "0",
                "10",
                "0",
                "0",
                "0",
                "0",
                "8439",
            ],
            [
                "0.0.0.0", "2024", "0.0.0.0", "0", "10", "0", "0", "0", "0", "548",
            ],
            [
                "127.0.0.1",
                "60152",
                "127.0.0.1",
                "6443",
                "1",
                "0",
                "0",
                "0",
                "0",
                "8446",
            ],
            [
                "127.0.0.1",
                "8080",
                "127.0.0.1",
                "55762",
                "1",
                "0",
                "0",
                "100",
                "0",
                "8441",
            ],
            [
                "127.0.0.1",
                "55762",
                "127.0.0.1",
                "8080",
                "1",
                "0",
                "0",
                "0",
                "0",
                "8440",
            ],
            [
                "127.0.0.1",
                "55776",
                "127.0.0.1",
                "8080",
                "6",
                "0",
                "0",
                "0",
                "0",
                "0",
            ],
        ];
        assert_eq!(rows(TCP), want);
    }

    #[test]
    fn parses_ipv6_fixture_with_loopback_and_v4_mapped() {
        let want: [[&str; 10]; 5] = [
            ["::1", "9090", "::", "0", "10", "0", "0", "0", "0", "8442"],
            ["::", "6443", "::", "0", "10", "0", "0", "0", "0", "8445"],
            [
                "::1", "53664", "::1", "9090", "1", "0", "0", "0", "0", "8443",
            ],
            [
                "::ffff:127.0.0.1",
                "6443",
                "::ffff:127.0.0.1",
                "60152",
                "1",
                "0",
                "0",
                "0",
                "0",
                "8447",
            ],
            [
                "::1", "9090", "::1", "53664", "1", "0", "0", "0", "0", "8444",
            ],
        ];
        assert_eq!(rows(TCP6), want);
    }

    #[test]
    fn decodes_both_byte_orders() {
        use ByteOrder::{Big, Little};
        let v4 = |s: &str| Some(IpAddr::V4(s.parse().expect("v4")));
        let v6 = |s: &str| Some(IpAddr::V6(s.parse().expect("v6")));
        assert_eq!(decode_addr("0100007F", Little), v4("127.0.0.1"));
        assert_eq!(decode_addr("7F000001", Big), v4("127.0.0.1"));
        assert_eq!(decode_addr("0202A8C0", Little), v4("192.168.2.2"));
        assert_eq!(
            decode_addr("B80D0120000000000000000001000000", Little),
            v6("2001:db8::1")
        );
        assert_eq!(
            decode_addr("20010DB8000000000000000000000001", Big),
            v6("2001:db8::1")
        );
        assert_eq!(
            decode_addr("0000000000000000FFFF00000100007F", Little),
            v6("::ffff:127.0.0.1")
        );
        assert_eq!(
            decode_addr("00000000000000000000FFFF7F000001", Big),
            v6("::ffff:127.0.0.1")
        );
        assert_eq!(
            decode_addr("00000000000000000000000001000000", Little),
            v6("::1")
        );
        let line = "   7: 7F000001:0016 0A000002:C350 01 00000010:00000002 01:00000014 00000003  1000        0 4242 1 0 20 4 30 10 -1";
        let s = parse_tcp_line(line, Big).expect("big-endian line");
        assert_eq!(
            record_values(&s),
            [
                "127.0.0.1",
                "22",
                "10.0.0.2",
                "50000",
                "1",
                "3",
                "16",
                "2",
                "1000",
                "4242"
            ]
            .map(String::from)
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let bad = [
            "",
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
            "0: 0100007F:1F90",
            "0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0",
            "0: 0100007:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
            "0: 0100007F:1F9 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
            "0: +100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
            "0: 0100007F:1F90 00000000:0000 1FF 00000000:00000000 00:00000000 00000000 0 0 1",
            "0: 0100007F:1F90 00000000:0000 0A 0000000000:00000000 00:00000000 00000000 0 0 1",
            "0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 -1 0 1",
            "x: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
            "0: 0100007F\u{e9}:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
            "0: 0000000000000000FFFF00000100007:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        ];
        for line in bad {
            assert_eq!(parse_tcp_line(line, ByteOrder::Little), None, "{line:?}");
        }
        let ok = "0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1";
        assert!(parse_tcp_line(ok, ByteOrder::Little).is_some());
    }

    #[test]
    fn collects_both_files_from_a_proc_root() {
        let mut c = TcpCollector::new(&fixture_root());
        c.order = ByteOrder::Little;
        let (em, rx) = emitter(64);
        c.collect(&em).expect("collect");
        let recs = drain(&rx);
        // 11 sockets in the fixtures, one of them in TIME_WAIT (st 6).
        assert_eq!(recs.len(), 10);
        assert!(recs
            .iter()
            .all(|(t, v)| *t == TABLE && v.len() == FIELDS.len() && v[4] != "6"));
        assert!(!c.warned);
    }

    #[test]
    fn sockstat6_says_when_tcp6_can_be_skipped() {
        let idle = "TCP6: inuse 0\nUDP6: inuse 1\nRAW6: inuse 0\n";
        assert_eq!(tcp6_inuse(idle), Some(0));
        assert_eq!(tcp6_inuse("TCP6: inuse 12\n"), Some(12));
        assert_eq!(tcp6_inuse("garbage"), None);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("net")).expect("mkdir");
        std::fs::write(dir.path().join("net/tcp"), TCP).expect("write");
        std::fs::write(dir.path().join("net/tcp6"), TCP6).expect("write tcp6");
        let mut c = TcpCollector::new(dir.path());
        c.order = ByteOrder::Little;
        assert!(c.tcp6_in_use(), "no sockstat6: read tcp6");
        std::fs::write(dir.path().join("net/sockstat6"), idle).expect("write");
        let (em, rx) = emitter(64);
        c.collect(&em).expect("collect");
        assert_eq!(drain(&rx).len(), 5, "tcp6 skipped");
    }

    #[test]
    fn missing_tcp6_is_empty_but_missing_tcp_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("net")).expect("mkdir");
        let mut c = TcpCollector::new(dir.path());
        let (em, _rx) = emitter(4);
        match c.collect(&em) {
            Err(ProbeError::Io { path, .. }) => assert!(path.ends_with("net/tcp"), "{path}"),
            other => panic!("expected Io, got {other:?}"),
        }
        std::fs::write(dir.path().join("net/tcp"), TCP).expect("write");
        c.order = ByteOrder::Little;
        let (em, rx) = emitter(16);
        c.collect(&em).expect("no tcp6 is fine");
        assert_eq!(drain(&rx).len(), 5, "6 IPv4 sockets less the TIME_WAIT one");
    }

    #[test]
    fn caps_sockets_per_period() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("net")).expect("mkdir");
        let mut text = String::from("  sl  local_address rem_address   st\n");
        for i in 0..MAX_SOCKETS + 10 {
            text.push_str(&format!(
                "{i}: 0100007F:{:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 {i} 1 0 100 0 0 10 0\n",
                i % 65536
            ));
        }
        std::fs::write(dir.path().join("net/tcp"), &text).expect("write tcp");
        std::fs::write(dir.path().join("net/tcp6"), TCP6).expect("write tcp6");
        let mut c = TcpCollector::new(dir.path());
        c.order = ByteOrder::Little;
        let (em, rx) = emitter(MAX_SOCKETS + 100);
        c.collect(&em).expect("collect");
        assert_eq!(drain(&rx).len(), MAX_SOCKETS);
        assert!(c.warned);
        // The cap also spans both files.
        std::fs::write(
            dir.path().join("net/tcp"),
            text.lines()
                .take(MAX_SOCKETS - 1)
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .expect("write tcp");
        c.warned = false;
        c.collect(&em).expect("collect");
        assert_eq!(drain(&rx).len(), MAX_SOCKETS);
        assert!(c.warned);
    }

    /// Our own records (a local or remote port among `ports`), sorted.
    fn ours(recs: Vec<(&'static str, Vec<String>)>, ports: &[String]) -> Vec<Vec<String>> {
        let mut v: Vec<Vec<String>> = recs
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| ports.contains(&v[1]) || ports.contains(&v[3]))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn sock_diag_reads_the_same_records_as_proc() {
        use std::io::Write as _;
        use std::net::{TcpListener, TcpStream};
        // Listeners and established pairs of both families, one side with
        // unread bytes, opened by this test on loopback.
        let mut keep = Vec::new();
        let mut ports = Vec::new();
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let l = TcpListener::bind(addr).unwrap_or_else(|e| {
                panic!("bind {addr} (this test needs IPv4 and IPv6 loopback): {e}")
            });
            let at = l.local_addr().expect("addr");
            let mut c = TcpStream::connect(at).expect("connect");
            let (s, _) = l.accept().expect("accept");
            c.write_all(b"unread").expect("write");
            ports.push(at.port().to_string());
            ports.push(c.local_addr().expect("client addr").port().to_string());
            keep.push((l, c, s));
        }
        // The bytes are in the server's receive queue once both agree. The
        // reference is the whole of /proc/net/tcp{,6} (the /proc collector
        // reads at most READ_MAX bytes, which thousands of TIME_WAIT lines
        // of a busy machine exceed).
        let whole_proc = || -> Vec<(&'static str, Vec<String>)> {
            ["/proc/net/tcp", "/proc/net/tcp6"]
                .iter()
                .flat_map(|p| {
                    let text = std::fs::read_to_string(p).unwrap_or_default();
                    parse_tcp(&text, ByteOrder::NATIVE)
                        .filter(|s| s.state != TIME_WAIT)
                        .map(|s| (TABLE, record_values(&s)))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let mut live = TcpCollector::live(Path::new(PROC_ROOT));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..50 {
            let (em, rx) = emitter(MAX_SOCKETS * 2 + 16);
            live.collect(&em).expect("sock_diag collect");
            a = ours(drain(&rx), &ports);
            b = ours(whole_proc(), &ports);
            if a == b && a.iter().any(|r| r[7] == "6") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            matches!(live.source, Source::Netlink(Some(_))),
            "the live collector fell back to /proc: {:?}",
            live.source
        );
        assert_eq!(a.len(), 6, "2 listeners + 2 pairs: {a:?}");
        assert_eq!(a, b, "sock_diag and /proc disagree");
        assert!(a.iter().any(|r| r[0] == "::1" && r[4] == "10"), "{a:?}");
        assert_eq!(a.iter().filter(|r| r[7] == "6").count(), 2, "{a:?}");
        drop(keep);
    }

    #[test]
    fn a_refused_sock_diag_falls_back_to_proc_for_good() {
        // A UDP socket stands for a kernel that refuses the dump.
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let mut c = TcpCollector::live(&fixture_root());
        c.order = ByteOrder::Little;
        c.source = Source::Netlink(Some(SockDiag::from_fd(udp.into())));
        let (em, rx) = emitter(64);
        c.collect(&em).expect("falls back");
        assert_eq!(drain(&rx).len(), 10, "the fixture's sockets");
        assert!(matches!(c.source, Source::Proc));
    }
}
