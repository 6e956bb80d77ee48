//! Which service a process is: the `service` field of `tcp_link` records,
//! so that the topology service (gala-spider) tells apart two services with
//! one command name on a host (two `python3` or `java` services).
//!
//! In order of preference:
//! - `container:<12 hex>`: the process is in a container (a run of 64 hex
//!   digits in its cgroup path: `/docker/<id>`, `docker-<id>.scope`,
//!   `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`);
//! - `unit:<name>.service`: the systemd service unit of its cgroup (the
//!   innermost `*.service` component; a user manager `user@N.service` is
//!   not a service of its own);
//! - `ports:<p>,<p>`: the TCP ports it listens on (sockets it holds),
//!   ascending, at most [`MAX_PORTS`];
//! - `cmd:<command line>`: its command line, arguments joined by spaces,
//!   cut to [`MAX_CMD`] bytes;
//! - empty when none of these can be read (the process is gone).
//!
//! A container or unit the agent itself runs in identifies nothing (every
//! process the agent started, or that shares its container, would be one
//! service): those fall through to ports and command line.
//!
//! Cost: computed once per process and kept; computed again after
//! [`REFRESH`] (ports come and go) or when the pid shows another command
//! name (reused). A computation reads the process's cgroup and command
//! line and, for ports, its fd table and its namespace's `net/tcp{,6}`
//! (once per namespace per period).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::decode::{AF_INET, AF_INET6};
use super::procscan::{netns, socket_inode};
use crate::procfs::tcp::{parse_tcp, ByteOrder};

/// Ports listed at most.
pub const MAX_PORTS: usize = 8;
/// Bytes of the command line kept.
pub const MAX_CMD: usize = 96;
/// How long an identity is kept before it is computed again.
pub const REFRESH: Duration = Duration::from_secs(60);
/// Entries not asked for during this long are forgotten.
const FORGET: Duration = Duration::from_secs(300);
/// TCP_LISTEN in `/proc/net/tcp`.
const LISTEN: u8 = 10;

/// The container and unit the agent runs in (they identify nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Own {
    /// Its container id (64 hex digits), if any.
    pub container: Option<String>,
    /// Its systemd service unit, if any.
    pub unit: Option<String>,
}

impl Own {
    /// From the agent's own `/proc/self/cgroup`.
    pub fn of(cgroup: &str) -> Self {
        Self {
            container: container_of(cgroup),
            unit: unit_of(cgroup),
        }
    }
}

/// The container id (64 hex digits, lower case) a `/proc/<pid>/cgroup`
/// text names, if any.
pub fn container_of(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .flat_map(|l| l.split(|c: char| !c.is_ascii_hexdigit()))
        .find(|run| run.len() == 64)
        .map(str::to_ascii_lowercase)
}

/// The systemd service unit of a `/proc/<pid>/cgroup` text: the innermost
/// `*.service` component of the unified (`0::`) path, else of the
/// `name=systemd` one.
pub fn unit_of(cgroup: &str) -> Option<String> {
    let unit_in = |path: &str| {
        path.split('/')
            .rev()
            .find(|c| c.len() > ".service".len() && c.ends_with(".service"))
            .filter(|c| !c.starts_with("user@"))
            .map(str::to_owned)
    };
    let unified = cgroup.lines().find_map(|l| l.strip_prefix("0::"));
    let v1 = cgroup.lines().find_map(|l| {
        let (_, rest) = l.split_once(':')?;
        rest.strip_prefix("name=systemd:")
    });
    unified.and_then(unit_in).or_else(|| v1.and_then(unit_in))
}

/// The identity of a process from what /proc tells: its cgroup text, the
/// ports it listens on and its command line (see the module docs).
pub fn identity(own: &Own, cgroup: &str, ports: &BTreeSet<u16>, cmdline: &str) -> String {
    if let Some(c) = container_of(cgroup).filter(|c| own.container.as_ref() != Some(c)) {
        return format!("container:{}", &c[..12]);
    }
    if let Some(u) = unit_of(cgroup).filter(|u| own.unit.as_ref() != Some(u)) {
        return format!("unit:{u}");
    }
    if !ports.is_empty() {
        let p: Vec<String> = ports.iter().take(MAX_PORTS).map(u16::to_string).collect();
        return format!("ports:{}", p.join(","));
    }
    let cmd = cmdline.trim();
    if cmd.is_empty() {
        return String::new();
    }
    let mut end = cmd.len().min(MAX_CMD);
    while !cmd.is_char_boundary(end) {
        end -= 1;
    }
    format!("cmd:{}", &cmd[..end])
}

#[derive(Debug, Clone)]
struct Entry {
    comm: String,
    service: String,
    made: Instant,
    asked: Instant,
}

/// The identities of processes, cached.
#[derive(Debug)]
pub struct Services {
    proc_root: PathBuf,
    own: Own,
    cache: HashMap<u32, Entry>,
    /// This period's listening sockets per namespace: inode -> port.
    listeners: HashMap<u32, HashMap<u64, u16>>,
    /// Computations done (for tests and the curious).
    pub computed: u64,
}

impl Services {
    /// Identities of the processes under `proc_root`; the agent's own
    /// container and unit are read from `/proc/self/cgroup`.
    pub fn new(proc_root: &Path) -> Self {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Self::with_own(proc_root, Own::of(&own))
    }

    /// Identities with the agent's container and unit given.
    pub fn with_own(proc_root: &Path, own: Own) -> Self {
        Self {
            proc_root: proc_root.to_owned(),
            own,
            cache: HashMap::new(),
            listeners: HashMap::new(),
            computed: 0,
        }
    }

    /// The identity of `pid`, whose command name is `comm`, at `now`.
    pub fn of(&mut self, pid: u32, comm: &str, now: Instant) -> &str {
        let fresh = self
            .cache
            .get(&pid)
            .is_some_and(|e| e.comm == comm && now.saturating_duration_since(e.made) < REFRESH);
        if !fresh {
            let service = self.compute(pid);
            self.cache.insert(
                pid,
                Entry {
                    comm: comm.to_owned(),
                    service,
                    made: now,
                    asked: now,
                },
            );
        }
        match self.cache.get_mut(&pid) {
            Some(e) => {
                e.asked = now;
                &e.service
            }
            None => "",
        }
    }

    /// Ends a period: forgets the namespaces' listeners and the processes
    /// not asked for in a while.
    pub fn end_period(&mut self, now: Instant) {
        self.listeners.clear();
        self.cache
            .retain(|_, e| now.saturating_duration_since(e.asked) < FORGET);
    }

    fn compute(&mut self, pid: u32) -> String {
        self.computed += 1;
        let dir = self.proc_root.join(pid.to_string());
        let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
        let ports = self.ports(pid);
        let cmdline = super::watch::cmdline(&self.proc_root, pid);
        identity(&self.own, &cgroup, &ports, &cmdline)
    }

    /// The ports of the listening sockets `pid` holds.
    fn ports(&mut self, pid: u32) -> BTreeSet<u16> {
        let mut out = BTreeSet::new();
        let Some(ns) = netns(&self.proc_root, pid) else {
            return out;
        };
        let root = &self.proc_root;
        let listening = self.listeners.entry(ns).or_insert_with(|| {
            let mut m = HashMap::new();
            for (file, _family) in [("tcp", AF_INET), ("tcp6", AF_INET6)] {
                let text = std::fs::read_to_string(root.join(format!("{pid}/net/{file}")))
                    .unwrap_or_default();
                for s in parse_tcp(&text, ByteOrder::NATIVE).filter(|s| s.state == LISTEN) {
                    m.insert(s.inode, s.local_port);
                }
            }
            m
        });
        if listening.is_empty() {
            return out;
        }
        let Ok(fds) = std::fs::read_dir(root.join(format!("{pid}/fd"))) else {
            return out;
        };
        for fd in fds.flatten() {
            if let Some(port) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| socket_inode(l.to_str()?))
                .and_then(|ino| listening.get(&ino))
            {
                out.insert(*port);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "3f2b9c0d1e4a5b6c7d8e9f00112233445566778899aabbccddeeff0011223344";

    fn ports(p: &[u16]) -> BTreeSet<u16> {
        p.iter().copied().collect()
    }

    #[test]
    fn containers_and_units_from_cgroup_paths() {
        for cg in [
            format!("0::/system.slice/docker-{CID}.scope\n"),
            format!("12:pids:/docker/{CID}\n0::/\n"),
            format!("0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-{CID}.scope\n"),
            format!("0::/machine.slice/libpod-{}.scope\n", CID.to_uppercase()),
        ] {
            assert_eq!(container_of(&cg).as_deref(), Some(CID), "{cg}");
        }
        // A 32-digit hex path component is no container id.
        assert_eq!(
            container_of("4:memory:/process_api/da028b46e56fc294c4e6f5735120526e\n0::/\n"),
            None
        );
        assert_eq!(
            unit_of("0::/system.slice/nginx.service\n").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            unit_of("0::/system.slice/foo.service/payload\n").as_deref(),
            Some("foo.service"),
            "a delegated sub-group still belongs to its unit"
        );
        assert_eq!(
            unit_of("0::/user.slice/user-1000.slice/user@1000.service/app.slice/web.service\n")
                .as_deref(),
            Some("web.service")
        );
        assert_eq!(
            unit_of("0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope\n"),
            None,
            "the user manager is no service of its own"
        );
        assert_eq!(
            unit_of("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(
            unit_of("1:name=systemd:/system.slice/redis-server.service\n0::/\n").as_deref(),
            Some("redis-server.service"),
            "cgroup v1: the name=systemd hierarchy"
        );
        assert_eq!(unit_of("0::/\n"), None);
        assert_eq!(unit_of(""), None);
    }

    #[test]
    fn identity_prefers_container_then_unit_then_ports_then_cmdline() {
        let own = Own::default();
        let c = format!("0::/system.slice/docker-{CID}.scope\n");
        assert_eq!(
            identity(&own, &c, &ports(&[80]), "nginx"),
            "container:3f2b9c0d1e4a"
        );
        let u = "0::/system.slice/web.service\n";
        assert_eq!(identity(&own, u, &ports(&[80]), "x"), "unit:web.service");
        assert_eq!(
            identity(
                &own,
                "0::/\n",
                &ports(&[8081, 8080]),
                "python3 -m http.server"
            ),
            "ports:8080,8081"
        );
        let many: Vec<u16> = (1..=20).collect();
        assert_eq!(
            identity(&own, "", &ports(&many), ""),
            "ports:1,2,3,4,5,6,7,8"
        );
        assert_eq!(
            identity(&own, "", &ports(&[]), " python3 client.py 10.0.0.1 "),
            "cmd:python3 client.py 10.0.0.1"
        );
        assert_eq!(identity(&own, "", &ports(&[]), ""), "");
        // Cut at MAX_CMD bytes, on a character boundary.
        let long = "é".repeat(100);
        let id = identity(&own, "", &ports(&[]), &long);
        assert_eq!(id.len(), "cmd:".len() + MAX_CMD);
        assert!(id.starts_with("cmd:é"));
        let odd = format!("a{long}");
        let id = identity(&own, "", &ports(&[]), &odd);
        assert_eq!(id.len(), "cmd:".len() + MAX_CMD - 1);
    }

    #[test]
    fn the_agents_own_container_and_unit_identify_nothing() {
        let c = format!("0::/system.slice/docker-{CID}.scope\n");
        let own = Own::of(&c);
        assert_eq!(own.container.as_deref(), Some(CID));
        assert_eq!(identity(&own, &c, &ports(&[8080]), "a"), "ports:8080");
        let u = "0::/system.slice/ci-runner.service\n";
        let own = Own::of(u);
        assert_eq!(own.unit.as_deref(), Some("ci-runner.service"));
        assert_eq!(
            identity(&own, u, &ports(&[]), "python3 a.py"),
            "cmd:python3 a.py"
        );
        assert_eq!(
            identity(&own, "0::/system.slice/other.service\n", &ports(&[]), "b"),
            "unit:other.service"
        );
    }

    /// A fake /proc: `pid` in namespace `ns`, holding sockets `fds`, with
    /// these listening (inode, port) in its namespace.
    fn fake_proc(
        root: &Path,
        pid: u32,
        ns: u32,
        cgroup: &str,
        cmdline: &str,
        fds: &[u64],
        listen: &[(u64, u16)],
    ) {
        let d = root.join(pid.to_string());
        std::fs::create_dir_all(d.join("fd")).expect("fake /proc");
        std::fs::create_dir_all(d.join("ns")).expect("fake /proc");
        std::fs::create_dir_all(d.join("net")).expect("fake /proc");
        std::fs::write(d.join("cgroup"), cgroup).expect("fake /proc");
        std::fs::write(d.join("cmdline"), cmdline.replace(' ', "\0") + "\0").expect("fake /proc");
        std::os::unix::fs::symlink(format!("net:[{ns}]"), d.join("ns/net")).expect("fake /proc");
        for (i, ino) in fds.iter().enumerate() {
            std::os::unix::fs::symlink(format!("socket:[{ino}]"), d.join(format!("fd/{}", i + 3)))
                .expect("fake /proc");
        }
        std::os::unix::fs::symlink("/dev/null", d.join("fd/0")).expect("fake /proc");
        let mut tcp = String::from(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
        );
        for (i, (ino, port)) in listen.iter().enumerate() {
            tcp.push_str(&format!(
                "{i}: 00000000:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 {ino}\n"
            ));
        }
        std::fs::write(d.join("net/tcp"), tcp).expect("fake /proc");
        std::fs::write(d.join("net/tcp6"), "").expect("fake /proc");
    }

    #[test]
    fn services_from_proc_cached_and_recomputed_on_reuse_or_age() {
        let dir = tempfile::tempdir().expect("fake /proc");
        let root = dir.path();
        let listen = [(1001, 8080), (1002, 8081), (1003, 9000)];
        // Two python3 servers (8080, and 8081 + 9000), a client.
        fake_proc(
            root,
            10,
            7,
            "0::/\n",
            "python3 -m http.server 8080",
            &[1001, 55],
            &listen,
        );
        fake_proc(
            root,
            20,
            7,
            "0::/\n",
            "python3 srv.py",
            &[1003, 1002],
            &listen,
        );
        fake_proc(root, 30, 7, "0::/\n", "python3 client.py", &[56], &listen);
        let mut s = Services::with_own(root, Own::default());
        let t0 = Instant::now();
        assert_eq!(s.of(10, "python3", t0), "ports:8080");
        assert_eq!(s.of(20, "python3", t0), "ports:8081,9000");
        assert_eq!(s.of(30, "python3", t0), "cmd:python3 client.py");
        assert_eq!(s.of(99, "gone", t0), "", "a process that is gone");
        assert_eq!(s.computed, 4);
        s.end_period(t0);
        // Cached: no new computation within REFRESH for the same comm.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(s.of(10, "python3", t1), "ports:8080");
        assert_eq!(s.computed, 4);
        // The pid was reused by another program: computed again.
        std::fs::write(root.join("10/cmdline"), "redis-server\0").expect("fake /proc");
        std::fs::remove_file(root.join("10/fd/3")).expect("fake /proc");
        assert_eq!(s.of(10, "redis-server", t1), "cmd:redis-server");
        assert_eq!(s.computed, 5);
        // After REFRESH the client, now listening, is computed again.
        std::os::unix::fs::symlink("socket:[1003]", root.join("30/fd/9")).expect("fake /proc");
        s.end_period(t1);
        let t2 = t0 + REFRESH + Duration::from_secs(1);
        assert_eq!(s.of(30, "python3", t2), "ports:9000");
        // Entries not asked for in a while are forgotten.
        s.end_period(t0 + FORGET + Duration::from_secs(10));
        assert_eq!(s.cache.len(), 1, "only pid 30 was asked for lately");
    }
}
