//! Shared user-space support of the load-balancer uprobe probes
//! (`nginx_link`, `haproxy_link`). The BPF side is `src/bpf/lb_sock.h`: the
//! addresses of a socket from a file descriptor of the current task.
//!
//! The API, in the order a probe uses it each period:
//!
//! - [`find_binaries`]`(proc_root, comm)`: the running processes whose
//!   `comm` is `comm`, grouped by the binary they run ([`Binary`]: device
//!   and inode of `/proc/<pid>/exe`, a path that opens it, even inside a
//!   container, the path to attach by, and the pids). One [`Binary`] per inode: uprobes are set on
//!   an inode, so workers forked later or after a reload (same binary) are
//!   covered without doing anything.
//! - [`Binary::read`] then [`elf::Elf::parse`]: the file's bytes and
//!   headers; [`elf::version_after`] finds a version string such as
//!   `nginx/1.22.1`; [`elf::Elf::function`] a function in `.dynsym` or
//!   `.symtab` with the file offset a uprobe takes; [`elf::Elf::defines`]
//!   whether a build flag's symbol is there.
//! - [`attach_uprobe`]: a uprobe or uretprobe on a binary at an offset,
//!   for every process (pid -1); [`attach_uprobe_cookie`] with a BPF
//!   cookie (e.g. which offsets table entry the binary takes).
//! - [`Attachments`]: the links per binary; [`Attachments::sync`] attaches
//!   the binaries seen for the first time (a closure does the probe's own
//!   checks and attaches), remembers refusals so each is reported once, and
//!   detaches binaries no process runs any more (a new binary, or a server
//!   started later, is found by the rescan of the next period).
//! - [`Deltas`]: a kernel map of cumulative counts per key, turned into the
//!   count of each period, with the keys quiet for long to delete.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub mod elf;

/// A binary run by one or more of the processes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    /// Device and inode of the file.
    pub id: (u64, u64),
    /// A path that opens the file (`<proc_root>/<pid>/exe`, valid while
    /// that process lives; the uprobe itself stays on the inode).
    pub open_path: PathBuf,
    /// The path the process sees (the exe link's target, inside its mount
    /// namespace), for messages.
    pub shown_path: PathBuf,
    /// The path to attach uprobes by: the first of `shown_path` (in our
    /// mount namespace) and `<proc_root>/<pid>/root/<shown_path>` (inside a
    /// container) that is this very file, else `open_path`.
    pub attach_path: PathBuf,
    /// The processes running it, ascending.
    pub pids: Vec<u32>,
}

impl Binary {
    /// The file's bytes.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.open_path).map_err(|e| {
            format!(
                "cannot read {} ({}): {e}",
                self.shown_path.display(),
                self.open_path.display()
            )
        })
    }
}

/// The pids in `proc_root` whose `comm` is `comm`.
pub fn pids_named(proc_root: &Path, comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
                .is_ok_and(|c| c.trim_end_matches('\n') == comm)
        })
        .collect();
    out.sort_unstable();
    out
}

/// The binaries that the processes named `comm` run, one per inode, by
/// ascending first pid. Processes whose exe cannot be read (gone, or no
/// permission) are left out.
pub fn find_binaries(proc_root: &Path, comm: &str) -> Vec<Binary> {
    let mut by_id: HashMap<(u64, u64), Binary> = HashMap::new();
    for pid in pids_named(proc_root, comm) {
        let exe = proc_root.join(pid.to_string()).join("exe");
        let Ok(meta) = std::fs::metadata(&exe) else {
            continue;
        };
        let id = (meta.dev(), meta.ino());
        let shown = std::fs::read_link(&exe).unwrap_or_else(|_| exe.clone());
        by_id
            .entry(id)
            .or_insert_with(|| {
                let in_root = proc_root
                    .join(pid.to_string())
                    .join("root")
                    .join(shown.strip_prefix("/").unwrap_or(&shown));
                let same = |p: &Path| std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == id);
                let attach_path = [shown.clone(), in_root]
                    .into_iter()
                    .find(|p| same(p))
                    .unwrap_or_else(|| exe.clone());
                Binary {
                    id,
                    open_path: exe,
                    shown_path: shown,
                    attach_path,
                    pids: Vec::new(),
                }
            })
            .pids
            .push(pid);
    }
    let mut out: Vec<Binary> = by_id.into_values().collect();
    out.sort_by_key(|b| b.pids.first().copied());
    out
}

/// A uprobe (or, with `retprobe`, a uretprobe) of `prog` on the
/// instruction at `file_offset` of `path`, in every process running it.
pub fn attach_uprobe(
    prog: &libbpf_rs::ProgramMut<'_>,
    retprobe: bool,
    path: &Path,
    file_offset: u64,
) -> Result<libbpf_rs::Link, String> {
    attach_uprobe_cookie(prog, retprobe, path, file_offset, 0)
}

/// [`attach_uprobe`] with a BPF cookie the program reads with
/// `bpf_get_attach_cookie()` (5.15+), e.g. the index of the binary's
/// struct offsets in a map, so one loaded program serves binaries of
/// several versions.
pub fn attach_uprobe_cookie(
    prog: &libbpf_rs::ProgramMut<'_>,
    retprobe: bool,
    path: &Path,
    file_offset: u64,
    cookie: u64,
) -> Result<libbpf_rs::Link, String> {
    let off = usize::try_from(file_offset).map_err(|e| e.to_string())?;
    let opts = libbpf_rs::UprobeOpts {
        cookie,
        retprobe,
        ..Default::default()
    };
    prog.attach_uprobe_with_opts(-1, path, off, opts)
        .map_err(|e| {
            format!(
                "cannot attach the {} at offset {file_offset:#x} of {}: {e}",
                if retprobe { "uretprobe" } else { "uprobe" },
                path.display()
            )
        })
}

/// Like [`attach_uprobe_cookie`], as a uprobe_multi link (6.6+;
/// `SEC("uprobe.multi")` programs): a BPF link rather than a perf event,
/// so it needs only CAP_BPF and CAP_PERFMON where classic uprobes may ask
/// for CAP_SYS_ADMIN.
pub fn attach_uprobe_multi(
    prog: &libbpf_rs::ProgramMut<'_>,
    retprobe: bool,
    path: &Path,
    file_offset: u64,
    cookie: u64,
) -> Result<libbpf_rs::Link, String> {
    let off = usize::try_from(file_offset).map_err(|e| e.to_string())?;
    let opts = libbpf_rs::UprobeMultiOpts {
        offsets: vec![off],
        cookies: vec![cookie],
        retprobe,
        ..Default::default()
    };
    prog.attach_uprobe_multi_with_opts(-1, path, "", opts)
        .map_err(|e| {
            format!(
                "cannot attach the {} (uprobe_multi) at offset {file_offset:#x} of {}: {e}",
                if retprobe { "uretprobe" } else { "uprobe" },
                path.display()
            )
        })
}

/// What became of one binary.
#[derive(Debug)]
pub enum Outcome<L> {
    /// Attached: the links (dropping them detaches) and a description for
    /// the log (e.g. the version and offsets used).
    Attached(Vec<L>, String),
    /// Refused, with the reason naming the binary.
    Refused(String),
}

/// What changed in one [`Attachments::sync`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Binaries attached now: (shown path, description).
    pub attached: Vec<(PathBuf, String)>,
    /// Binaries refused now (each reported once): their reasons.
    pub refused: Vec<String>,
    /// Binaries detached because no process runs them any more.
    pub detached: Vec<PathBuf>,
}

/// The uprobe links of each binary, by inode.
#[derive(Debug)]
pub struct Attachments<L> {
    links: HashMap<(u64, u64), (PathBuf, Vec<L>)>,
    refused: HashSet<(u64, u64)>,
}

impl<L> Default for Attachments<L> {
    fn default() -> Self {
        Self {
            links: HashMap::new(),
            refused: HashSet::new(),
        }
    }
}

impl<L> Attachments<L> {
    /// Attaches the binaries of `found` not seen before with `attach`,
    /// and detaches those no longer found.
    pub fn sync(
        &mut self,
        found: &[Binary],
        mut attach: impl FnMut(&Binary) -> Outcome<L>,
    ) -> SyncReport {
        let mut rep = SyncReport::default();
        let live: HashSet<(u64, u64)> = found.iter().map(|b| b.id).collect();
        self.links.retain(|id, (path, _)| {
            let keep = live.contains(id);
            if !keep {
                rep.detached.push(path.clone());
            }
            keep
        });
        self.refused.retain(|id| live.contains(id));
        for b in found {
            if self.links.contains_key(&b.id) || self.refused.contains(&b.id) {
                continue;
            }
            match attach(b) {
                Outcome::Attached(links, what) => {
                    rep.attached.push((b.shown_path.clone(), what));
                    self.links.insert(b.id, (b.shown_path.clone(), links));
                }
                Outcome::Refused(why) => {
                    self.refused.insert(b.id);
                    rep.refused.push(why);
                }
            }
        }
        rep
    }

    /// Number of binaries attached.
    pub fn attached(&self) -> usize {
        self.links.len()
    }

    /// Number of binaries refused (and still running).
    pub fn refused(&self) -> usize {
        self.refused.len()
    }
}

/// Period counts from cumulative ones: the kernel only ever adds to a
/// key's count, user space keeps the last value seen.
#[derive(Debug)]
pub struct Deltas<K> {
    last: HashMap<K, (u64, u32)>,
    idle_periods: u32,
}

impl<K: Hash + Eq + Clone> Deltas<K> {
    /// Keys unchanged for `idle_periods` periods are handed back for
    /// deletion from the kernel map.
    pub fn new(idle_periods: u32) -> Self {
        Self {
            last: HashMap::new(),
            idle_periods,
        }
    }

    /// The keys whose count grew since the last period, with the growth,
    /// and the keys quiet for long enough to delete. A count lower than
    /// before (the key was deleted and made again) counts from zero.
    pub fn period(&mut self, current: &[(K, u64)]) -> (Vec<(K, u64)>, Vec<K>) {
        let mut grown = Vec::new();
        let mut idle = Vec::new();
        let seen: HashSet<&K> = current.iter().map(|(k, _)| k).collect();
        self.last.retain(|k, _| seen.contains(k));
        for (k, now) in current {
            let e = self.last.entry(k.clone()).or_insert((0, 0));
            let d = if *now >= e.0 { now - e.0 } else { *now };
            if d > 0 {
                grown.push((k.clone(), d));
                *e = (*now, 0);
            } else {
                e.1 += 1;
                if e.1 >= self.idle_periods {
                    idle.push(k.clone());
                }
            }
        }
        for k in &idle {
            self.last.remove(k);
        }
        (grown, idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_count_each_period_and_hand_back_quiet_keys() {
        let mut d = Deltas::new(2);
        assert_eq!(d.period(&[("a", 3)]).0, vec![("a", 3)]);
        assert_eq!(d.period(&[("a", 5), ("b", 1)]).0, vec![("a", 2), ("b", 1)]);
        let (g, idle) = d.period(&[("a", 5), ("b", 1)]);
        assert!(g.is_empty() && idle.is_empty());
        let (g, idle) = d.period(&[("a", 5), ("b", 2)]);
        assert_eq!(g, vec![("b", 1)]);
        assert_eq!(idle, vec!["a"]);
        // Deleted and made again: counts from zero.
        assert_eq!(d.period(&[("a", 1), ("b", 2)]).0, vec![("a", 1)]);
    }

    #[test]
    fn binaries_are_grouped_by_inode_and_attached_once() {
        let me = std::process::id();
        let comm = std::fs::read_to_string(format!("/proc/{me}/comm")).expect("comm");
        let found = find_binaries(Path::new("/proc"), comm.trim_end());
        let mine = found
            .iter()
            .find(|b| b.pids.contains(&me))
            .expect("this test process is found by its comm");
        assert!(mine.read().expect("readable").starts_with(b"\x7fELF"));
        let mut att: Attachments<u32> = Attachments::default();
        let mut calls = 0;
        let rep = att.sync(&found, |_| {
            calls += 1;
            Outcome::Attached(vec![1], "ok".into())
        });
        assert_eq!(rep.attached.len(), found.len());
        assert_eq!(calls, found.len());
        // Nothing new: no call.
        let rep = att.sync(&found, |_| unreachable!("attached already"));
        assert_eq!(rep, SyncReport::default());
        // Gone: detached; refused ones are remembered, reported once.
        let rep = att.sync(&[], |_| unreachable!("nothing found"));
        assert_eq!(rep.detached.len(), found.len());
        let rep = att.sync(&found, |_| Outcome::Refused("no".into()));
        assert_eq!(rep.refused.len(), found.len());
        let rep = att.sync(&found, |_| unreachable!("refused already"));
        assert!(rep.refused.is_empty());
        assert_eq!((att.attached(), att.refused()), (0, found.len()));
    }
}
