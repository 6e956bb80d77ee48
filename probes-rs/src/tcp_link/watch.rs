//! Snoopers: which processes tcp_link watches.
//!
//! A [`Selection`] names processes by pid, by name (a POSIX extended
//! regular expression on the comm, and a substring of the command line) and
//! by container id. It is resolved against `/proc` into a set of tgids that
//! the probe writes into the kernel map `watched`; the eBPF hooks then track
//! only connections of those processes (see `tcp_link.bpf.c`). A process is
//! watched when it matches, or when its parent was watched when it forked:
//! the fork hook adds children in the kernel at once, and a rescan (once per
//! report period and whenever the selection changes) computes the same rule
//! from `/proc`, so that new execs of a matching name are picked up and
//! processes that no longer match are dropped. An empty selection watches
//! every process.
//!
//! The daemon (or whoever plans the probe) holds a [`Watch`], a cloneable
//! handle on the selection of one running probe, and changes it with
//! [`Watch::set`] without restarting the probe.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// The processes a probe watches; all empty: every process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Processes by tgid (their children included).
    pub proc_id: Vec<u32>,
    /// Processes by name.
    pub proc_name: Vec<NameRule>,
    /// Processes of these containers: a prefix of the 64 hex digits.
    pub container_id: Vec<String>,
}

/// One `proc_name` selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameRule {
    /// POSIX extended regular expression searched in the comm (`^x$` for
    /// exactly `x`).
    pub comm: String,
    /// A substring the command line must hold (`""`: any).
    pub cmdline: String,
}

/// Why a selection cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// A comm pattern that does not compile.
    #[error("proc_name[{index}].comm: {msg}")]
    Comm {
        /// Position in `proc_name`.
        index: usize,
        /// Why.
        msg: String,
    },
    /// A container id that is not hex digits.
    #[error("container_id[{index}]: expected 1 to 64 hex digits of a container id, got {got:?}")]
    Container {
        /// Position in `container_id`.
        index: usize,
        /// The value.
        got: String,
    },
}

impl Selection {
    /// Whether it selects every process.
    pub fn is_empty(&self) -> bool {
        self.proc_id.is_empty() && self.proc_name.is_empty() && self.container_id.is_empty()
    }

    /// Adds the selectors of `other` (a process matching either is watched).
    pub fn extend(&mut self, other: Selection) {
        self.proc_id.extend(other.proc_id);
        self.proc_name.extend(other.proc_name);
        self.container_id.extend(other.container_id);
    }

    /// Checks every pattern and id.
    pub fn check(&self) -> Result<(), SelectionError> {
        Matcher::compile(self).map(|_| ())
    }
}

#[derive(Debug, Default)]
struct Shared {
    sel: Selection,
    generation: u64,
}

/// A handle on the selection of one tcp_link probe; clones share it. The
/// running probe applies a change within one report period.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    inner: Arc<Mutex<Shared>>,
}

impl Watch {
    /// A handle with a checked selection.
    pub fn new(sel: Selection) -> Result<Self, SelectionError> {
        let w = Self::default();
        w.set(sel)?;
        Ok(w)
    }

    /// Replaces the selection (an empty one watches every process). A
    /// selection that does not check is refused and the old one stays.
    pub fn set(&self, sel: Selection) -> Result<(), SelectionError> {
        sel.check()?;
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.sel = sel;
        g.generation += 1;
        Ok(())
    }

    /// The current selection.
    pub fn selection(&self) -> Selection {
        self.snapshot().1
    }

    pub(crate) fn snapshot(&self) -> (u64, Selection) {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (g.generation, g.sel.clone())
    }
}

static REGISTRY: Mutex<Vec<(String, Watch)>> = Mutex::new(Vec::new());

/// Makes `w` the handle of the tcp_link probe named `name` (the probe's
/// configured name), replacing any earlier one. The daemon calls it when it
/// starts the probe.
pub fn register(name: &str, w: &Watch) {
    let mut r = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    r.retain(|(n, _)| n != name);
    r.push((name.to_owned(), w.clone()));
}

/// The handle of the tcp_link probe named `name`, once it was started.
pub fn registered(name: &str) -> Option<Watch> {
    let r = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    r.iter().find(|(n, _)| n == name).map(|(_, w)| w.clone())
}

/// A POSIX extended regular expression (libc `regcomp`), as the legacy
/// agent matched comms.
struct Ere {
    re: Box<libc::regex_t>,
}

impl Ere {
    fn new(pattern: &str) -> Result<Self, String> {
        let c = CString::new(pattern).map_err(|_| "the pattern holds a NUL byte".to_owned())?;
        // SAFETY: regex_t is plain data for regcomp to fill.
        let mut re: Box<libc::regex_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `re` points to a regex_t and `c` is NUL-terminated.
        let rc =
            unsafe { libc::regcomp(&mut *re, c.as_ptr(), libc::REG_EXTENDED | libc::REG_NOSUB) };
        if rc == 0 {
            return Ok(Self { re });
        }
        let mut buf = [0 as libc::c_char; 200];
        // SAFETY: regerror writes at most buf.len() bytes, NUL included.
        unsafe { libc::regerror(rc, &*re, buf.as_mut_ptr(), buf.len()) };
        // SAFETY: NUL-terminated by regerror (or all zero).
        let why = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
        Err(format!(
            "expected a POSIX extended regular expression, got `{pattern}` ({why})"
        ))
    }

    fn is_match(&self, text: &str) -> bool {
        let Ok(c) = CString::new(text) else {
            return false;
        };
        // SAFETY: compiled by regcomp; REG_NOSUB needs no match array.
        unsafe { libc::regexec(&*self.re, c.as_ptr(), 0, std::ptr::null_mut(), 0) == 0 }
    }
}

impl Drop for Ere {
    fn drop(&mut self) {
        // SAFETY: compiled by regcomp, freed once.
        unsafe { libc::regfree(&mut *self.re) };
    }
}

impl std::fmt::Debug for Ere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ere")
    }
}

/// A compiled selection.
#[derive(Debug)]
pub struct Matcher {
    pids: HashSet<u32>,
    names: Vec<(Ere, String)>,
    containers: Vec<String>,
}

impl Matcher {
    /// Compiles a selection.
    pub fn compile(sel: &Selection) -> Result<Self, SelectionError> {
        let names = sel
            .proc_name
            .iter()
            .enumerate()
            .map(|(index, r)| {
                Ere::new(&r.comm)
                    .map(|re| (re, r.cmdline.clone()))
                    .map_err(|msg| SelectionError::Comm { index, msg })
            })
            .collect::<Result<_, _>>()?;
        let containers = sel
            .container_id
            .iter()
            .enumerate()
            .map(|(index, id)| {
                let ok =
                    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
                if ok {
                    Ok(id.to_ascii_lowercase())
                } else {
                    Err(SelectionError::Container {
                        index,
                        got: id.clone(),
                    })
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            pids: sel.proc_id.iter().copied().collect(),
            names,
            containers,
        })
    }

    /// Whether one process matches a selector; its command line and cgroup
    /// file are read only when a selector needs them.
    pub fn matches(
        &self,
        pid: u32,
        comm: &str,
        cmdline: impl FnOnce() -> String,
        cgroup: impl FnOnce() -> String,
    ) -> bool {
        if self.pids.contains(&pid) {
            return true;
        }
        let mut cmdline = Some(cmdline);
        let mut line: Option<String> = None;
        for (re, sub) in &self.names {
            if !re.is_match(comm) {
                continue;
            }
            if sub.is_empty() {
                return true;
            }
            let l = line.get_or_insert_with(|| cmdline.take().map(|f| f()).unwrap_or_default());
            if l.contains(sub.as_str()) {
                return true;
            }
        }
        !self.containers.is_empty() && in_containers(&cgroup(), &self.containers)
    }
}

/// Whether a `/proc/<pid>/cgroup` text names one of the containers: a run
/// of 64 hex digits in a cgroup path (`/docker/<id>`,
/// `cri-containerd-<id>.scope`, `libpod-<id>.scope`) that starts with one
/// of the given prefixes.
pub fn in_containers(cgroup: &str, prefixes: &[String]) -> bool {
    cgroup
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|run| run.len() == 64)
        .any(|run| {
            let run = run.to_ascii_lowercase();
            prefixes.iter().any(|p| run.starts_with(p.as_str()))
        })
}

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    /// Its tgid.
    pub pid: u32,
    /// Its parent's tgid.
    pub ppid: u32,
    /// Its command name.
    pub comm: String,
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid ...` (the comm may
/// hold spaces and parentheses: it ends at the last `)`).
pub fn parse_stat(stat: &str) -> Option<ProcEntry> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let pid = stat.get(..open)?.trim().parse().ok()?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(ProcEntry { pid, ppid, comm })
}

/// Every process that can be read.
pub fn list_procs(proc_root: &Path) -> Vec<ProcEntry> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name();
        let pid: u32 = name.to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(proc_root.join(format!("{pid}/stat"))).ok()?;
        parse_stat(&stat)
    })
    .collect()
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(proc_root: &Path, pid: u32) -> String {
    std::fs::read(proc_root.join(format!("{pid}/cmdline")))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .replace('\0', " ")
        })
        .unwrap_or_default()
}

/// The cgroup file of a process.
pub fn cgroup(proc_root: &Path, pid: u32) -> String {
    std::fs::read_to_string(proc_root.join(format!("{pid}/cgroup"))).unwrap_or_default()
}

/// The tgids to watch: the processes that match, and their descendants
/// (what the fork hook adds in the kernel).
pub fn resolve(
    m: &Matcher,
    procs: &[ProcEntry],
    cmdline: impl Fn(u32) -> String,
    cgroup: impl Fn(u32) -> String,
) -> HashSet<u32> {
    let mut out: HashSet<u32> = procs
        .iter()
        .filter(|p| m.matches(p.pid, &p.comm, || cmdline(p.pid), || cgroup(p.pid)))
        .map(|p| p.pid)
        .collect();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in procs {
        if p.ppid != p.pid {
            children.entry(p.ppid).or_default().push(p.pid);
        }
    }
    let mut todo: Vec<u32> = out.iter().copied().collect();
    while let Some(pid) = todo.pop() {
        for &c in children.get(&pid).map_or(&[][..], Vec::as_slice) {
            if out.insert(c) {
                todo.push(c);
            }
        }
    }
    out
}

/// What a rescan changes in the kernel map: given what the map holds and
/// what the scan found, the tgids to add and those to remove. A tgid the
/// map holds but the scan did not see is kept while it lives (`alive`): the
/// fork hook may have added it after the scan.
pub fn plan_update(
    current: &HashSet<u32>,
    desired: &HashSet<u32>,
    scanned: &HashSet<u32>,
    alive: impl Fn(u32) -> bool,
) -> (Vec<u32>, Vec<u32>) {
    let mut add: Vec<u32> = desired.difference(current).copied().collect();
    let mut remove: Vec<u32> = current
        .iter()
        .filter(|p| !desired.contains(p) && (scanned.contains(p) || !alive(**p)))
        .copied()
        .collect();
    add.sort_unstable();
    remove.sort_unstable();
    (add, remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(pids: &[u32], names: &[(&str, &str)], containers: &[&str]) -> Selection {
        Selection {
            proc_id: pids.to_vec(),
            proc_name: names
                .iter()
                .map(|(c, l)| NameRule {
                    comm: (*c).to_owned(),
                    cmdline: (*l).to_owned(),
                })
                .collect(),
            container_id: containers.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn p(pid: u32, ppid: u32, comm: &str) -> ProcEntry {
        ProcEntry {
            pid,
            ppid,
            comm: comm.to_owned(),
        }
    }

    const CID: &str = "3f2b9c0d1e4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e";

    fn table() -> Vec<ProcEntry> {
        vec![
            p(1, 0, "systemd"),
            p(100, 1, "nginx"),
            p(101, 100, "nginx"),
            p(102, 101, "sh"),
            p(200, 1, "redis-server"),
            p(300, 1, "python3"),
            p(301, 1, "python3"),
            p(400, 1, "java"),
        ]
    }

    fn cmd(pid: u32) -> String {
        match pid {
            300 => "python3 /srv/app.py --port 80".to_owned(),
            301 => "python3 /srv/batch.py".to_owned(),
            _ => String::new(),
        }
    }

    fn cg(pid: u32) -> String {
        match pid {
            400 => format!("12:pids:/kubepods/burstable/pod1/cri-containerd-{CID}.scope\n"),
            _ => "0::/system.slice/foo.service\n".to_owned(),
        }
    }

    fn resolved(s: Selection) -> Vec<u32> {
        let m = Matcher::compile(&s).expect("valid");
        let mut v: Vec<u32> = resolve(&m, &table(), cmd, cg).into_iter().collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn names_match_by_ere_and_cmdline_substring() {
        assert_eq!(resolved(sel(&[], &[("^redis", "")], &[])), [200]);
        // A search, not a full match: `sh` is in no other comm here.
        assert_eq!(
            resolved(sel(&[], &[("^(redis-server|java)$", "")], &[])),
            [200, 400]
        );
        assert_eq!(resolved(sel(&[], &[("python", "app.py")], &[])), [300]);
        assert_eq!(
            resolved(sel(&[], &[("python", "nothing")], &[])),
            Vec::<u32>::new()
        );
        // An exact comm does not match a longer one.
        assert_eq!(
            resolved(sel(&[], &[("^python$", "")], &[])),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn children_of_watched_processes_are_watched() {
        // nginx master 100, its worker 101 and the worker's shell 102.
        assert_eq!(resolved(sel(&[100], &[], &[])), [100, 101, 102]);
        assert_eq!(resolved(sel(&[101], &[], &[])), [101, 102]);
        assert_eq!(resolved(sel(&[], &[("^nginx$", "")], &[])), [100, 101, 102]);
    }

    #[test]
    fn containers_match_by_id_prefix_in_the_cgroup_path() {
        assert_eq!(resolved(sel(&[], &[], &["3f2b9c0d1e4a"])), [400]);
        assert_eq!(resolved(sel(&[], &[], &[&CID.to_uppercase()])), [400]);
        assert_eq!(resolved(sel(&[], &[], &["ffff"])), Vec::<u32>::new());
        assert!(in_containers(
            &format!("1:name=systemd:/docker/{CID}\n"),
            &["3f2b".to_owned()]
        ));
        // A run that is not a whole id does not count.
        assert!(!in_containers(
            "0::/user.slice/3f2b9c0d",
            &["3f2b".to_owned()]
        ));
    }

    #[test]
    fn selectors_add_up() {
        assert_eq!(
            resolved(sel(&[200], &[("python", "batch")], &["3f2b"])),
            [200, 301, 400]
        );
        let mut a = sel(&[200], &[], &[]);
        a.extend(sel(&[], &[("^java$", "")], &[]));
        assert_eq!(resolved(a), [200, 400]);
    }

    #[test]
    fn bad_selectors_are_refused_by_position() {
        let e = sel(&[], &[("ok", ""), ("([", "")], &[])
            .check()
            .expect_err("bad ERE");
        assert!(
            matches!(&e, SelectionError::Comm { index: 1, msg } if msg.contains("`([`")),
            "{e}"
        );
        assert!(e.to_string().starts_with("proc_name[1].comm: "), "{e}");
        let e = sel(&[], &[], &["abc", "not-hex"])
            .check()
            .expect_err("bad id");
        assert_eq!(
            e.to_string(),
            "container_id[1]: expected 1 to 64 hex digits of a container id, got \"not-hex\""
        );
        assert!(sel(&[], &[], &[""]).check().is_err());
        assert!(sel(&[], &[("a\0", "")], &[]).check().is_err());
    }

    #[test]
    fn a_watch_keeps_its_old_selection_when_a_new_one_is_bad() {
        let w = Watch::new(sel(&[1], &[], &[])).expect("valid");
        let other = w.clone();
        let (g0, _) = w.snapshot();
        assert!(other.set(sel(&[], &[("(", "")], &[])).is_err());
        assert_eq!(w.snapshot(), (g0, sel(&[1], &[], &[])));
        other.set(Selection::default()).expect("empty is valid");
        let (g1, s) = w.snapshot();
        assert!(g1 > g0 && s.is_empty());
    }

    #[test]
    fn the_registry_gives_the_handle_of_a_started_probe() {
        let w = Watch::default();
        register("tcp_link_registry_test", &w);
        let got = registered("tcp_link_registry_test").expect("registered");
        got.set(sel(&[7], &[], &[])).expect("valid");
        assert_eq!(w.selection().proc_id, [7]);
        assert!(registered("no_such_probe").is_none());
    }

    #[test]
    fn stat_lines_with_odd_comms_parse() {
        assert_eq!(
            parse_stat("42 (a) b (c)) S 7 42 42 0 -1"),
            Some(p(42, 7, "a) b (c)"))
        );
        assert_eq!(parse_stat("1 (systemd) S 0 1"), Some(p(1, 0, "systemd")));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_rescan_keeps_what_the_fork_hook_added_after_it() {
        let set = |v: &[u32]| v.iter().copied().collect::<HashSet<u32>>();
        let current = set(&[10, 11, 12, 13]);
        let desired = set(&[10, 20]);
        // 11 was scanned and no longer matches; 12 is new since the scan
        // and lives; 13 is gone.
        let scanned = set(&[10, 11, 20]);
        let (add, remove) = plan_update(&current, &desired, &scanned, |p| p == 12);
        assert_eq!(add, [20]);
        assert_eq!(remove, [11, 13]);
    }
}
