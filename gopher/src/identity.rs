//! Who this node is: `machine_id` and `hostname` labels (docs/compat.md §5).
//!
//! `machine_id` is `<system uuid or /etc/machine-id>-<host ip>`. It is
//! computed once and written to `<state_dir>/machine_id`, so it stays the
//! same when the address changes later; delete the file to recompute.

use std::net::{IpAddr, UdpSocket};
use std::path::Path;

/// The node's identity labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Stable machine id.
    pub machine_id: String,
    /// Host name.
    pub hostname: String,
}

impl Identity {
    /// Loads the persisted machine id from `state_dir`, or computes and
    /// persists it. Failing to persist is logged, not fatal.
    pub fn load(state_dir: &Path) -> Self {
        let file = state_dir.join("machine_id");
        let machine_id = match std::fs::read_to_string(&file) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => {
                let id = compute_machine_id();
                let written = std::fs::create_dir_all(state_dir)
                    .and_then(|()| std::fs::write(&file, format!("{id}\n")));
                if let Err(e) = written {
                    tracing::warn!(path = %file.display(), error = %e, "cannot persist machine_id; it is recomputed at each start");
                }
                id
            }
        };
        Self {
            machine_id,
            hostname: hostname(),
        }
    }
}

/// `<uuid>-<ip>` from the DMI product uuid or /etc/machine-id.
pub fn compute_machine_id() -> String {
    let base = [
        "/sys/class/dmi/id/product_uuid",
        "/etc/machine-id",
        "/var/lib/dbus/machine-id",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_lowercase())
    .find(|s| !s.is_empty())
    .unwrap_or_else(|| "unknown".to_owned());
    match host_ip() {
        Some(ip) => format!("{base}-{ip}"),
        None => base,
    }
}

/// The address the node would use for outbound traffic, found without
/// sending anything: a connected UDP socket picks the source address.
/// Falls back to the first non-loopback address in /proc/net/fib_trie.
pub fn host_ip() -> Option<IpAddr> {
    let via_route = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback());
    via_route.or_else(|| {
        let trie = std::fs::read_to_string("/proc/net/fib_trie").ok()?;
        first_local_ip(&trie)
    })
}

/// First `/32 host LOCAL` address that is not loopback in a fib_trie dump.
fn first_local_ip(trie: &str) -> Option<IpAddr> {
    let mut last_ip: Option<IpAddr> = None;
    for line in trie.lines() {
        let l = line.trim_start_matches([' ', '|', '-', '+']);
        if let Ok(ip) = l.trim().parse::<IpAddr>() {
            last_ip = Some(ip);
        } else if l.contains("/32 host LOCAL") {
            if let Some(ip) = last_ip.filter(|ip| !ip.is_loopback()) {
                return Some(ip);
            }
        }
    }
    None
}

/// The kernel's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_reuses_machine_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Identity::load(dir.path());
        assert!(!a.machine_id.is_empty());
        std::fs::write(dir.path().join("machine_id"), "fixed-1.2.3.4\n").expect("write");
        assert_eq!(Identity::load(dir.path()).machine_id, "fixed-1.2.3.4");
        assert!(!a.hostname.is_empty());
    }

    #[test]
    fn finds_local_address_in_fib_trie() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 10.1.2.3\n        /32 host LOCAL\n";
        assert_eq!(first_local_ip(trie), Some("10.1.2.3".parse().expect("ip")));
        assert_eq!(first_local_ip("nothing"), None);
    }
}
