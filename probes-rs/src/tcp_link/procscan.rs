//! What /proc tells about sockets: their owning processes (from
//! `/proc/<pid>/fd`), the network namespace of each process, and the TCP
//! sockets that were already open when the probe started.
//!
//! A scan walks every process's fd table, so it is done at start and then
//! only when a long-lived accepted connection still has a provisional owner;
//! never per packet or per connection.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::decode::{addr_bytes, comm_bytes, pid_src, ConnKey, ConnVal, Role, AF_INET, AF_INET6};
use crate::procfs::tcp::{parse_tcp, ByteOrder};

/// `socket:[12345]` -> 12345.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `net:[4026531840]` -> 4026531840.
pub fn netns_inode(link: &str) -> Option<u32> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn pids(proc_root: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Socket inode -> owning process, over every process that can be read.
/// When several processes share a socket (fork), the lowest pid wins.
pub fn socket_owners(proc_root: &Path) -> HashMap<u64, u32> {
    let mut out = HashMap::new();
    let mut ps = pids(proc_root);
    ps.sort_unstable();
    for pid in ps {
        let Ok(fds) = std::fs::read_dir(proc_root.join(format!("{pid}/fd"))) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Some(ino) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| socket_inode(l.to_str()?))
            {
                out.entry(ino).or_insert(pid);
            }
        }
    }
    out
}

/// The command name of a process (empty when it is gone).
pub fn comm(proc_root: &Path, pid: u32) -> String {
    std::fs::read_to_string(proc_root.join(format!("{pid}/comm")))
        .map(|s| s.trim_end_matches('\n').to_owned())
        .unwrap_or_default()
}

/// The network namespace inode of a process.
pub fn netns(proc_root: &Path, pid: u32) -> Option<u32> {
    let l = std::fs::read_link(proc_root.join(format!("{pid}/ns/net"))).ok()?;
    netns_inode(l.to_str()?)
}

/// Whether a process exists.
pub fn alive(proc_root: &Path, pid: u32) -> bool {
    proc_root.join(pid.to_string()).exists()
}

/// What was open before the probe started.
#[derive(Debug, Default)]
pub struct Seed {
    /// (netns, port, pid, comm) of listening sockets.
    pub listeners: Vec<(u32, u16, u32, String)>,
    /// Established (or closing) connections with their owner and role.
    pub conns: Vec<(ConnKey, ConnVal)>,
}

/// TCP states of a connection worth tracking (not LISTEN, TIME_WAIT, CLOSE,
/// SYN_SENT or SYN_RECV): ESTABLISHED, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK,
/// CLOSING.
fn tracked_state(st: u8) -> bool {
    matches!(st, 1 | 4 | 5 | 8 | 9 | 11)
}

/// Sockets of one namespace, from the text of its `net/tcp` and `net/tcp6`:
/// a connection whose local port is listened on is the server side.
pub fn seed_namespace(
    netns: u32,
    files: &[(&str, u16)],
    owners: &HashMap<u64, u32>,
    comm_of: &mut dyn FnMut(u32) -> String,
    seed: &mut Seed,
) {
    let mut listening: HashSet<u16> = HashSet::new();
    let sockets: Vec<_> = files
        .iter()
        .flat_map(|(text, family)| parse_tcp(text, ByteOrder::NATIVE).map(move |s| (s, *family)))
        .collect();
    for (s, _) in sockets.iter().filter(|(s, _)| s.state == 10) {
        if listening.insert(s.local_port) {
            if let Some(&pid) = owners.get(&s.inode) {
                seed.listeners
                    .push((netns, s.local_port, pid, comm_of(pid)));
            }
        }
    }
    for (s, family) in sockets.iter().filter(|(s, _)| tracked_state(s.state)) {
        let Some(&pid) = owners.get(&s.inode) else {
            continue;
        };
        let role = if listening.contains(&s.local_port) {
            Role::Server
        } else {
            Role::Client
        };
        let key = ConnKey {
            netns,
            family: *family,
            lport: s.local_port,
            rport: s.remote_port,
            laddr: addr_bytes(s.local),
            raddr: addr_bytes(s.remote),
        };
        let val = ConnVal {
            pid,
            role: role as u8,
            pid_src: pid_src::USER,
            comm: comm_bytes(&comm_of(pid)),
            ino: s.inode,
            ..ConnVal::default()
        };
        seed.conns.push((key, val));
    }
}

/// Scans every network namespace that has a process: its listeners and its
/// open connections, each with its owning process.
pub fn seed(proc_root: &Path) -> Seed {
    let owners = socket_owners(proc_root);
    let mut by_ns: HashMap<u32, u32> = HashMap::new();
    let mut ps: Vec<u32> = owners.values().copied().collect();
    ps.sort_unstable();
    ps.dedup();
    for pid in ps {
        if let Some(ns) = netns(proc_root, pid) {
            by_ns.entry(ns).or_insert(pid);
        }
    }
    let mut seed = Seed::default();
    let mut comms: HashMap<u32, String> = HashMap::new();
    let mut comm_of = |pid: u32| {
        comms
            .entry(pid)
            .or_insert_with(|| comm(proc_root, pid))
            .clone()
    };
    for (ns, pid) in by_ns {
        let read = |f: &str| {
            std::fs::read_to_string(proc_root.join(format!("{pid}/net/{f}"))).unwrap_or_default()
        };
        let (t4, t6) = (read("tcp"), read("tcp6"));
        seed_namespace(
            ns,
            &[(&t4, AF_INET), (&t6, AF_INET6)],
            &owners,
            &mut comm_of,
            &mut seed,
        );
    }
    seed
}
