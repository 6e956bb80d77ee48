//! `system_inode`: inode usage of each mounted real filesystem, one record
//! per mount point per period (like `df -i`).
//!
//! The mounts come from `<root>/self/mounts`: the daemon's own mount
//! namespace, so every listed path resolves for `statvfs(3)`. Which mounts
//! are reported is decided by [`select_mounts`]:
//!
//! - Pseudo filesystems (proc, sysfs, cgroup*, devpts, ...) have no inodes
//!   to run out of and are skipped ([`is_skipped_fs`]).
//! - `tmpfs`, `ramfs` and `devtmpfs` are skipped too: memory-backed, and on
//!   a Kubernetes node every pod adds several of them (secrets, tokens), which
//!   would make the table's cardinality follow the pod count.
//! - Container layers and read-only images (`overlay`, `squashfs`, `erofs`,
//!   ...) are per container or always full, so they are skipped.
//! - Network and FUSE filesystems are skipped because `statvfs` on a dead
//!   server or a stuck FUSE daemon can block the probe for minutes; `autofs`
//!   because `statvfs` would trigger the automount.
//! - A mount point mounted over keeps only its last (visible) mount, and a
//!   block device mounted at several places (bind mounts) is reported once,
//!   at its first mount point.
//! - At most [`MAX_MOUNTS`] mounts per period; beyond it a warning is logged
//!   once and the rest are skipped.

use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::{io_error, opt_value, Collect, Periodic, PROC_ROOT};
use crate::api::{Emitter, Probe, ProbeError};

/// Probe name.
pub const PROBE: &str = "system_inode";
/// Table name (`meta/system_inode.meta`).
pub const TABLE: &str = "system_inode";
/// Most mounts reported per period.
pub const MAX_MOUNTS: usize = 256;

/// Fields in meta order: key, labels, then the seed's four gauges.
pub const FIELDS: &[&str] = &[
    "mount_point",
    "fs_type",
    "device",
    "Inodes",
    "IUsed",
    "IFree",
    "IUse",
];

/// Filesystem types that are never reported (see the module docs).
const SKIPPED_FS: &[&str] = &[
    // Kernel pseudo filesystems.
    "proc",
    "sysfs",
    "devpts",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "bpf",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "rpc_pipefs",
    "nfsd",
    "nsfs",
    "efivarfs",
    "selinuxfs",
    "cpuset",
    "sockfs",
    "pipefs",
    "autofs",
    "rootfs",
    // Memory-backed.
    "tmpfs",
    "ramfs",
    "devtmpfs",
    // Container layers and read-only images.
    "overlay",
    "aufs",
    "squashfs",
    "erofs",
    "iso9660",
    // Network and FUSE: statvfs may block.
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "lustre",
    "9p",
    "afs",
    "fuse",
    "fuseblk",
];

/// Prefixes of filesystem types that are never reported.
const SKIPPED_FS_PREFIXES: &[&str] = &["cgroup", "fuse."];

/// One line of a mounts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mounted device or source (`/dev/vda`, `server:/export`, `none`).
    pub device: String,
    /// Where it is mounted, with the kernel's octal escapes decoded; kept as
    /// raw bytes since a path need not be UTF-8.
    pub mount_point: PathBuf,
    /// Filesystem type (`ext4`, `xfs`, ...).
    pub fs_type: String,
}

/// Parses a mounts file (`/proc/self/mounts` format: `device mount_point
/// fs_type options dump pass`). Lines with fewer than three fields are
/// skipped. The kernel writes space, tab, newline and backslash in names as
/// `\ooo` octal escapes; they are decoded.
pub fn parse_mounts(text: &[u8]) -> Vec<Mount> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut words = line
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|w| !w.is_empty());
            let (device, mount_point, fs_type) = (words.next()?, words.next()?, words.next()?);
            Some(Mount {
                device: String::from_utf8_lossy(&unescape(device)).into_owned(),
                mount_point: PathBuf::from(OsString::from_vec(unescape(mount_point))),
                fs_type: String::from_utf8_lossy(&unescape(fs_type)).into_owned(),
            })
        })
        .collect()
}

/// Decodes `\ooo` octal escapes; a backslash not followed by three octal
/// digits (of value at most 255) is kept as is.
fn unescape(word: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(word.len());
    let mut i = 0;
    while let Some(&b) = word.get(i) {
        if b == b'\\' {
            if let Some(&[d0, d1, d2]) = word.get(i + 1..i + 4) {
                let octal = |d: u8| (b'0'..=b'7').contains(&d).then(|| u32::from(d - b'0'));
                if let (Some(a), Some(m), Some(c)) = (octal(d0), octal(d1), octal(d2)) {
                    if let Ok(byte) = u8::try_from(a * 64 + m * 8 + c) {
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// Whether mounts of `fs_type` are left out (see the module docs).
pub fn is_skipped_fs(fs_type: &str) -> bool {
    SKIPPED_FS.contains(&fs_type) || SKIPPED_FS_PREFIXES.iter().any(|p| fs_type.starts_with(p))
}

/// The mounts to report, in mount order: real filesystems only, the visible
/// mount of each mount point, each block device once, at most `cap`. The
/// flag is `true` when mounts beyond `cap` were dropped.
pub fn select_mounts(mounts: Vec<Mount>, cap: usize) -> (Vec<Mount>, bool) {
    let mut real: Vec<Mount> = mounts
        .into_iter()
        .filter(|m| !is_skipped_fs(&m.fs_type))
        .collect();
    // The last mount on a mount point hides the earlier ones.
    let mut seen_points = HashSet::new();
    let mut visible = vec![false; real.len()];
    for (i, m) in real.iter().enumerate().rev() {
        if let Some(v) = visible.get_mut(i) {
            *v = seen_points.insert(m.mount_point.clone());
        }
    }
    let mut keep = visible.into_iter();
    real.retain(|_| keep.next().unwrap_or(false));
    // A block device mounted at several places (bind mounts) counts once.
    let mut seen_devices = HashSet::new();
    real.retain(|m| !m.device.starts_with('/') || seen_devices.insert(m.device.clone()));
    let capped = real.len() > cap;
    real.truncate(cap);
    (real, capped)
}

/// Inode counts of one filesystem, as `df -i` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InodeUsage {
    /// Total inodes (`f_files`).
    pub inodes: u64,
    /// Inodes in use (`f_files - f_ffree`).
    pub used: u64,
    /// Free inodes (`f_ffree`).
    pub free: u64,
    /// Percent used, rounded up as `df` does; `None` when the filesystem
    /// has no fixed inode count (btrfs, vfat report 0).
    pub use_percent: Option<u64>,
}

/// Computes the usage from `statvfs`'s `f_files` and `f_ffree`.
pub fn inode_usage(files: u64, ffree: u64) -> InodeUsage {
    let used = files.saturating_sub(ffree);
    let use_percent = (files > 0).then(|| {
        let pct = (u128::from(used) * 100).div_ceil(u128::from(files));
        u64::try_from(pct).unwrap_or(100)
    });
    InodeUsage {
        inodes: files,
        used,
        free: ffree,
        use_percent,
    }
}

/// The record for one mount.
pub fn record_values(m: &Mount, u: &InodeUsage) -> Vec<String> {
    vec![
        m.mount_point.to_string_lossy().into_owned(),
        m.fs_type.clone(),
        m.device.clone(),
        u.inodes.to_string(),
        u.used.to_string(),
        u.free.to_string(),
        opt_value(u.use_percent),
    ]
}

/// `(f_files, f_ffree)` of the filesystem mounted at `path`.
#[allow(
    clippy::useless_conversion,
    reason = "fsfilcnt_t is not u64 on every target"
)]
fn statvfs_inodes(path: &Path) -> std::io::Result<(u64, u64)> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string that lives across the call,
    // and `st` is writable memory of the size and alignment of `statvfs`,
    // which the call only writes to.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled in the whole struct.
    let st = unsafe { st.assume_init() };
    Ok((u64::from(st.f_files), u64::from(st.f_ffree)))
}

/// Reads `<root>/self/mounts` and stats each selected mount every period.
#[derive(Debug)]
pub struct InodeCollector {
    path: PathBuf,
    buf: Vec<u8>,
    warned: bool,
}

impl InodeCollector {
    /// A collector for the proc filesystem at `root`. Mount points are
    /// stat'ed as listed, i.e. in the caller's mount namespace.
    pub fn new(root: &Path) -> Self {
        Self {
            path: root.join("self/mounts"),
            buf: Vec::with_capacity(4096),
            warned: false,
        }
    }
}

impl Collect for InodeCollector {
    fn collect(&mut self, emitter: &Emitter) -> Result<(), ProbeError> {
        self.buf.clear();
        File::open(&self.path)
            .and_then(|mut f| f.read_to_end(&mut self.buf))
            .map_err(|e| io_error(&self.path, e))?;
        let (mounts, capped) = select_mounts(parse_mounts(&self.buf), MAX_MOUNTS);
        if capped && !self.warned {
            self.warned = true;
            tracing::warn!(
                probe = PROBE,
                cap = MAX_MOUNTS,
                "more real filesystems than the cap; the rest are not reported"
            );
        }
        for m in &mounts {
            match statvfs_inodes(&m.mount_point) {
                Ok((files, ffree)) => {
                    emitter.record(TABLE, record_values(m, &inode_usage(files, ffree)));
                }
                Err(error) => {
                    tracing::debug!(probe = PROBE, mount_point = %m.mount_point.display(), %error, "statvfs failed; mount skipped");
                }
            }
        }
        Ok(())
    }
}

/// Builds the probe over the real `/proc`.
pub fn build() -> Box<dyn Probe> {
    Periodic::boxed(PROBE, &[TABLE], InodeCollector::new(Path::new(PROC_ROOT)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::test_support::{check_meta, drain, emitter, fixture_root};

    const FIXTURE: &[u8] = include_bytes!("../../../tests/data/proc/self/mounts");

    fn mount(device: &str, mount_point: &str, fs_type: &str) -> Mount {
        Mount {
            device: device.into(),
            mount_point: mount_point.into(),
            fs_type: fs_type.into(),
        }
    }

    #[test]
    fn meta_matches_fields() {
        check_meta(
            include_str!("../../../meta/system_inode.meta"),
            TABLE,
            FIELDS,
        );
    }

    #[test]
    fn parses_fixture() {
        let all = parse_mounts(FIXTURE);
        assert_eq!(all.len(), 20);
        assert_eq!(all.first(), Some(&mount("proc", "/proc", "proc")));
        assert_eq!(all.get(5), Some(&mount("/dev/vda", "/", "ext4")));
        assert_eq!(
            all.last(),
            Some(&mount("cgroup2", "/sys/fs/cgroup/unified", "cgroup2"))
        );
        let (selected, capped) = select_mounts(all, MAX_MOUNTS);
        assert_eq!(selected, [mount("/dev/vda", "/", "ext4")]);
        assert!(!capped);
    }

    #[test]
    fn decodes_octal_escapes_and_skips_short_lines() {
        let text = b"/dev/sdb1 /mnt/my\\040disk\\011x ext4 rw 0 0\nshort line\n\n/dev/sdc /a\\134b\\9z\\ xfs rw 0 0\n";
        let got = parse_mounts(text);
        assert_eq!(
            got,
            [
                mount("/dev/sdb1", "/mnt/my disk\tx", "ext4"),
                mount("/dev/sdc", "/a\\b\\9z\\", "xfs")
            ]
        );
        // \777 is over 255: kept literally.
        assert_eq!(unescape(b"\\777\\04"), b"\\777\\04");
        // Non-UTF-8 bytes in a mount point survive for statvfs.
        let raw = parse_mounts(b"/dev/sdd /mnt/\xff ext4 rw 0 0\n");
        assert_eq!(
            raw.first().map(|m| m.mount_point.as_os_str().as_bytes()),
            Some(&b"/mnt/\xff"[..])
        );
    }

    #[test]
    fn selects_visible_real_mounts_once_and_caps() {
        let mounts = vec![
            mount("/dev/sda1", "/", "ext4"),
            mount("tmpfs", "/run", "tmpfs"),
            mount("cgroup2", "/sys/fs/cgroup", "cgroup2"),
            mount("/dev/sdb", "/data", "xfs"),
            mount("/dev/sdc", "/data", "xfs"), // hides /dev/sdb
            mount("/dev/sda1", "/var/lib/kubelet/x", "ext4"), // bind mount of /
            mount("srv:/e", "/nfs", "nfs4"),
            mount("sshfs#h", "/s", "fuse.sshfs"),
            mount("tank/home", "/home", "zfs"),
            mount("overlay", "/var/lib/docker/o/merged", "overlay"),
        ];
        let (got, capped) = select_mounts(mounts.clone(), MAX_MOUNTS);
        assert_eq!(
            got,
            [
                mount("/dev/sda1", "/", "ext4"),
                mount("/dev/sdc", "/data", "xfs"),
                mount("tank/home", "/home", "zfs")
            ]
        );
        assert!(!capped);
        let (got, capped) = select_mounts(mounts, 2);
        assert_eq!(got.len(), 2);
        assert!(capped);
    }

    #[test]
    fn usage_matches_df() {
        assert_eq!(
            inode_usage(1000, 900),
            InodeUsage {
                inodes: 1000,
                used: 100,
                free: 900,
                use_percent: Some(10)
            }
        );
        // df rounds the percentage up.
        assert_eq!(inode_usage(1000, 998).use_percent, Some(1));
        assert_eq!(inode_usage(3, 0).use_percent, Some(100));
        // btrfs / vfat: no inode table.
        assert_eq!(
            inode_usage(0, 0),
            InodeUsage {
                inodes: 0,
                used: 0,
                free: 0,
                use_percent: None
            }
        );
        // Nonsense from a broken driver does not panic or overflow.
        assert_eq!(inode_usage(5, 9).used, 0);
        assert_eq!(inode_usage(u64::MAX, 0).use_percent, Some(100));
        let m = mount("/dev/vda", "/", "ext4");
        assert_eq!(
            record_values(&m, &inode_usage(0, 0)),
            ["/", "ext4", "/dev/vda", "0", "0", "0", ""]
        );
        assert_eq!(
            record_values(&m, &inode_usage(200, 150)),
            ["/", "ext4", "/dev/vda", "200", "50", "150", "25"]
        );
    }

    #[test]
    fn statvfs_errors_instead_of_panicking() {
        assert!(statvfs_inodes(Path::new("/no/such/dir/for/gopher")).is_err());
        assert!(statvfs_inodes(Path::new("/a\0b")).is_err());
        assert!(statvfs_inodes(Path::new("/")).is_ok());
    }

    #[test]
    fn collects_from_a_proc_root() {
        // The fixture lists `/dev/vda` on `/`; `/` exists everywhere.
        let mut c = InodeCollector::new(&fixture_root());
        let (em, rx) = emitter(16);
        c.collect(&em).expect("collect");
        let recs = drain(&rx);
        assert_eq!(recs.len(), 1);
        let (table, values) = recs.first().expect("one record");
        assert_eq!(*table, TABLE);
        assert_eq!(values.len(), FIELDS.len());
        assert_eq!(
            values.get(..3),
            Some(&["/", "ext4", "/dev/vda"].map(String::from)[..])
        );
    }
}
