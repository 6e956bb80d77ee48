//! TCP sockets from the kernel's `sock_diag` netlink interface
//! (`NETLINK_SOCK_DIAG`, `inet_diag_req_v2`), the way `ss` lists them.
//!
//! Reading `/proc/net/tcp` formats every socket as text and walks the whole
//! established hash table once per `read(2)`; one netlink dump asks the
//! kernel to leave TIME_WAIT sockets out and returns fixed-size binary
//! records. On an idle machine a period costs a tenth of the /proc read.
//!
//! The answers are mapped onto the same [`TcpSocket`] as a `/proc/net/tcp`
//! line, so the records and series do not depend on the source. Where the
//! two interfaces differ, the /proc meaning is kept: the retransmission
//! count is the kernel's `idiag_retrans` only while the retransmission timer
//! runs (with a keep-alive or zero-window probe timer the kernel puts the
//! probe count there, which /proc shows in another column).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::tcp::{TcpSocket, TIME_WAIT};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR`, `NLMSG_DONE` (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST | NLM_F_DUMP`.
const DUMP_FLAGS: u16 = 0x1 | 0x300;
/// `struct nlmsghdr`.
const NLMSG_HDR: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, sockid.
const REQ_LEN: usize = 8 + SOCKID_LEN;
/// `struct inet_diag_sockid`: ports, two 16-byte addresses, ifindex, cookie.
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_msg`: family, state, timer, retrans, sockid, then
/// expires, rqueue, wqueue, uid and inode (u32 each).
pub const MSG_LEN: usize = 4 + SOCKID_LEN + 20;
/// Kernel state numbers.
const LISTEN: u8 = 10;
/// `idiag_timer` of a running retransmission timer.
const TIMER_RETRANSMIT: u8 = 1;
/// Every state but TIME_WAIT (bit n asks for state n; 12 is
/// `TCP_NEW_SYN_RECV`, the half-open connections /proc shows as SYN_RECV).
const STATES: u32 = !(1 << TIME_WAIT);
/// Receive buffer: the kernel fills up to this much per `recv(2)`.
const RECV_BUF: usize = 64 * 1024;

/// One netlink socket, kept open across periods.
#[derive(Debug)]
pub struct SockDiag {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

/// The request for one address family (`AF_INET` or `AF_INET6`).
fn request(family: u8, seq: u32) -> [u8; NLMSG_HDR + REQ_LEN] {
    let mut m = [0u8; NLMSG_HDR + REQ_LEN];
    let len = u32::try_from(m.len()).unwrap_or(u32::MAX);
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m[6..8].copy_from_slice(&DUMP_FLAGS.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel.
    m[16] = family;
    m[17] = libc::IPPROTO_TCP as u8;
    // idiag_ext 0: no extensions, only the fixed message.
    m[20..24].copy_from_slice(&STATES.to_ne_bytes());
    m
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_be_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn addr_at(b: &[u8], at: usize, family: u8) -> Option<IpAddr> {
    let a = b.get(at..at + 16)?;
    if i32::from(family) == libc::AF_INET {
        let v4: [u8; 4] = a.get(..4)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else {
        let v6: [u8; 16] = a.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(v6)))
    }
}

/// Decodes one `inet_diag_msg` as the `/proc/net/tcp` line of the same
/// socket would read. `None` when it is too short or of another family.
pub fn parse_msg(b: &[u8]) -> Option<TcpSocket> {
    if b.len() < MSG_LEN {
        return None;
    }
    let family = b[0];
    if i32::from(family) != libc::AF_INET && i32::from(family) != libc::AF_INET6 {
        return None;
    }
    let (state, timer, retrans) = (b[1], b[2], b[3]);
    let id = 4;
    let rqueue = u32_at(b, id + SOCKID_LEN + 4)?;
    let wqueue = u32_at(b, id + SOCKID_LEN + 8)?;
    Some(TcpSocket {
        local_port: u16_be_at(b, id)?,
        remote_port: u16_be_at(b, id + 2)?,
        local: addr_at(b, id + 4, family)?,
        remote: addr_at(b, id + 20, family)?,
        state,
        // A listener's wqueue is its backlog limit; /proc shows 0.
        tx_queue: if state == LISTEN { 0 } else { wqueue },
        rx_queue: rqueue,
        retransmits: if timer == TIMER_RETRANSMIT {
            u32::from(retrans)
        } else {
            0
        },
        uid: u32_at(b, id + SOCKID_LEN + 12)?,
        inode: u64::from(u32_at(b, id + SOCKID_LEN + 16)?),
    })
}

/// What one buffer of a dump held.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// More messages follow.
    More,
    /// `NLMSG_DONE`: the dump is complete.
    Done,
}

/// Walks the netlink messages of one `recv(2)` buffer, passing each socket
/// to `each`. An `NLMSG_ERROR` becomes the error it carries.
pub fn parse_chunk(mut b: &[u8], seq: u32, each: &mut dyn FnMut(TcpSocket)) -> io::Result<Chunk> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"));
    while b.len() >= NLMSG_HDR {
        let len = u32_at(b, 0).ok_or_else(|| bad("short header"))? as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        let mseq = u32_at(b, 8).ok_or_else(|| bad("short header"))?;
        if len < NLMSG_HDR || len > b.len() {
            return Err(bad("message length out of the buffer"));
        }
        let body = &b[NLMSG_HDR..len];
        if mseq == seq {
            match ty {
                NLMSG_DONE => {
                    // A dump that failed midway says why here.
                    let code = body
                        .get(..4)
                        .map_or(0, |c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
                    if code < 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    return Ok(Chunk::Done);
                }
                NLMSG_ERROR => {
                    let code = body
                        .get(..4)
                        .map_or(0, |c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
                    return Err(if code < 0 {
                        io::Error::from_raw_os_error(-code)
                    } else {
                        bad("error message without an error")
                    });
                }
                SOCK_DIAG_BY_FAMILY => {
                    if let Some(s) = parse_msg(body) {
                        each(s);
                    }
                }
                _ => {}
            }
        }
        // Messages are aligned to 4 bytes.
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
    }
    Ok(Chunk::More)
}

impl SockDiag {
    /// Opens the netlink socket. Fails when the kernel has no sock_diag.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            fd,
            seq: 0,
            buf: Vec::new(),
        })
    }

    /// A "sock_diag" over any descriptor (tests: one the kernel refuses).
    #[cfg(test)]
    pub(crate) fn from_fd(fd: OwnedFd) -> Self {
        Self {
            fd,
            seq: 0,
            buf: Vec::new(),
        }
    }

    /// Dumps the TCP sockets of `family` (`AF_INET` or `AF_INET6`) but
    /// TIME_WAIT, passing each to `each` in the kernel's order (listeners
    /// first). An error of the kernel (no `inet_diag` module: ENOENT, a
    /// refused dump: EPERM) comes back as such.
    pub fn dump(&mut self, family: i32, each: &mut dyn FnMut(TcpSocket)) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let req = request(u8::try_from(family).unwrap_or(0), self.seq);
        let fd = self.fd.as_raw_fd();
        // SAFETY: a zeroed sockaddr_nl is valid; family set below.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `req` and `kernel` outlive the call; lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                fd,
                req.as_ptr().cast(),
                req.len(),
                0,
                std::ptr::from_ref(&kernel).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        self.buf.resize(RECV_BUF, 0);
        loop {
            // SAFETY: `buf` is RECV_BUF bytes long and outlives the call.
            let n = unsafe { libc::recv(fd, self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "sock_diag: the kernel closed the dump",
                ));
            }
            let n = usize::try_from(n).unwrap_or(0);
            if parse_chunk(&self.buf[..n], self.seq, each)? == Chunk::Done {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `inet_diag_msg` as the kernel writes it.
    #[allow(clippy::too_many_arguments)]
    fn msg(
        family: i32,
        state: u8,
        timer: u8,
        retrans: u8,
        local: (IpAddr, u16),
        remote: (IpAddr, u16),
        rq: u32,
        wq: u32,
        uid: u32,
        inode: u32,
    ) -> Vec<u8> {
        let mut m = vec![family as u8, state, timer, retrans];
        m.extend_from_slice(&local.1.to_be_bytes());
        m.extend_from_slice(&remote.1.to_be_bytes());
        for a in [local.0, remote.0] {
            let mut b = [0u8; 16];
            match a {
                IpAddr::V4(v) => b[..4].copy_from_slice(&v.octets()),
                IpAddr::V6(v) => b.copy_from_slice(&v.octets()),
            }
            m.extend_from_slice(&b);
        }
        m.extend_from_slice(&[0u8; 12]); // ifindex, cookie
        for v in [7u32, rq, wq, uid, inode] {
            m.extend_from_slice(&v.to_ne_bytes());
        }
        m
    }

    fn nl(ty: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDR + body.len()) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&0x2u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn request_is_a_tcp_dump_without_time_wait() {
        let r = request(libc::AF_INET6 as u8, 9);
        assert_eq!(r.len(), 72);
        assert_eq!(u32_at(&r, 0), Some(72));
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u32_at(&r, 8), Some(9));
        assert_eq!((r[16], r[17]), (libc::AF_INET6 as u8, 6));
        let states = u32_at(&r, 20).expect("states");
        assert_eq!(states & (1 << 6), 0, "no TIME_WAIT");
        assert_ne!(states & (1 << 10), 0, "listeners");
        assert_ne!(states & (1 << 12), 0, "half-open");
    }

    #[test]
    fn messages_read_as_proc_lines() {
        let lo: IpAddr = "127.0.0.1".parse().expect("v4");
        let any: IpAddr = "0.0.0.0".parse().expect("v4");
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().expect("v6");
        let v6: IpAddr = "2001:db8::1".parse().expect("v6");
        let listener = msg(
            libc::AF_INET,
            10,
            0,
            0,
            (lo, 8080),
            (any, 0),
            3,
            128,
            0,
            8439,
        );
        let est = msg(
            libc::AF_INET6,
            1,
            1,
            2,
            (v6, 443),
            (mapped, 50000),
            100,
            16,
            1000,
            4242,
        );
        let keepalive = msg(libc::AF_INET, 1, 2, 5, (lo, 1), (lo, 2), 0, 0, 0, 1);
        let mut buf = nl(SOCK_DIAG_BY_FAMILY, 4, &listener);
        buf.extend(nl(SOCK_DIAG_BY_FAMILY, 4, &est));
        buf.extend(nl(SOCK_DIAG_BY_FAMILY, 3, &est)); // another dump's: ignored
        buf.extend(nl(SOCK_DIAG_BY_FAMILY, 4, &keepalive));
        let mut got = Vec::new();
        assert_eq!(
            parse_chunk(&buf, 4, &mut |s| got
                .push(super::super::tcp::record_values(&s)))
            .expect("parse"),
            Chunk::More
        );
        let want: Vec<Vec<String>> = [
            [
                "127.0.0.1",
                "8080",
                "0.0.0.0",
                "0",
                "10",
                "0",
                "0",
                "3",
                "0",
                "8439",
            ],
            [
                "2001:db8::1",
                "443",
                "::ffff:10.0.0.2",
                "50000",
                "1",
                "2",
                "16",
                "100",
                "1000",
                "4242",
            ],
            [
                "127.0.0.1",
                "1",
                "127.0.0.1",
                "2",
                "1",
                "0",
                "0",
                "0",
                "0",
                "1",
            ],
        ]
        .iter()
        .map(|r| r.iter().map(|s| (*s).to_owned()).collect())
        .collect();
        assert_eq!(got, want);
        let done = nl(NLMSG_DONE, 4, &[0; 4]);
        assert_eq!(
            parse_chunk(&done, 4, &mut |_| {}).expect("done"),
            Chunk::Done
        );
        assert!(parse_msg(&listener[..MSG_LEN - 1]).is_none());
    }

    #[test]
    fn errors_and_broken_buffers_are_errors() {
        let err = nl(NLMSG_ERROR, 1, &(-libc::ENOENT).to_ne_bytes());
        let e = parse_chunk(&err, 1, &mut |_| {}).expect_err("ENOENT");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let mut short = nl(SOCK_DIAG_BY_FAMILY, 1, &[0; 8]);
        short[0] = 200; // longer than the buffer
        assert!(parse_chunk(&short, 1, &mut |_| {}).is_err());
    }
}
