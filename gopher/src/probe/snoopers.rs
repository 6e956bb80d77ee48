//! Snoopers given to C probes and to extend probes (docs/snoopers.md,
//! "Extend and C probes").
//!
//! These probes cannot be told about a change while they run, so they get
//! the watched set at each start: [`Feed::prepare`] resolves the snoopers to
//! the live pids now (the resolution of [`super::legacy_ipc::resolve`], plus
//! the processes of the selected containers) and writes the `proc_name`
//! selectors to `<global.state_dir>/snoopers/<probe>.conf` in the format of
//! the 1.x application whitelist, which legacy code reads with
//! `parse_whitelist_config`. Then:
//! - a C probe gets them in its V1 params: its `param` string is edited
//!   ([`c_param`]) so that `-w` names that file (`task_whitelist`) and, when
//!   the selection is exactly one process, `-F <pid>` sets `filter_pid`
//!   (otherwise `-F 0`, every process, replaces a `-F` of the user's);
//! - an extend probe gets them in its environment ([`env`]):
//!   [`ENV_FILE`] and [`ENV_PIDS`]; its `param` is never touched.
//!
//! A change of snoopers at run time restarts the probe (the manager does).

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::config::ipc::Snoopers;
use crate::probe_api::params::set_option;
use crate::probe_api::ParamsError;

use super::extend::Launch;
use super::legacy_ipc::{self, Snooper};

/// Extend probes: the path of the whitelist file written for them.
pub const ENV_FILE: &str = "GALA_GOPHER_SNOOPERS_FILE";
/// Extend probes: the pids selected at start, comma-separated (empty when
/// none is alive).
pub const ENV_PIDS: &str = "GALA_GOPHER_SNOOPER_PIDS";
/// The directory of the files, under `global.state_dir`.
pub const DIR: &str = "snoopers";
/// Most entries the legacy whitelist parser takes (`PROC_MAX_RANGE`).
pub const MAX_ENTRIES: usize = gopher::legacy_whitelist::PROC_MAX_RANGE;

/// How the probe receives the selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A C probe in a probe host: its V1 params, edited from `param` (the
    /// entry's own string).
    CParams {
        /// The `param` of the entry.
        param: String,
    },
    /// An extend probe: environment variables.
    Env,
}

/// The snoopers of one probe and where their file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// What the probe watches.
    pub snoopers: Snoopers,
    /// `<global.state_dir>/snoopers`.
    pub dir: PathBuf,
    /// How the probe gets it.
    pub delivery: Delivery,
}

/// The selection of one start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The live processes selected, sorted.
    pub pids: Vec<u32>,
    /// The whitelist file written.
    pub file: PathBuf,
}

/// Whether `s` selects anything (empty snoopers: every process, as
/// without snoopers).
pub fn selects(s: &Snoopers) -> bool {
    !(s.proc_id.is_empty() && s.proc_name.is_empty() && s.container_id.is_empty())
}

/// The file of probe `name` in `dir`.
pub fn file_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.conf"))
}

/// The live pids `s` selects under `proc_root`: its processes, and the
/// processes of its containers. Sorted, without duplicates.
pub fn resolve_pids(s: &Snoopers, proc_root: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = Vec::new();
    for sn in legacy_ipc::resolve(s, proc_root, true) {
        match sn {
            Snooper::Proc(pid) => pids.push(pid),
            Snooper::Container { id, .. } => {
                pids.extend(legacy_ipc::container_pids(proc_root, &id));
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// A libconfig string literal of `s`.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The whitelist text of `s`: one entry per `proc_name` selector. Entries
/// the legacy parser would refuse (a comm of 64 bytes or more, a cmdline of
/// 128 or more, past the 64th) are left out; the second value lists them.
pub fn whitelist_text(s: &Snoopers) -> (String, Vec<String>) {
    use gopher::legacy_whitelist::{PROC_CMD_LINE_MAX, PROC_NAME_MAX};
    let mut text = String::from(
        "# Written by gala-gopher at the probe's start: its proc_name snoopers.\napplication =\n(\n",
    );
    let mut left_out = Vec::new();
    let mut n = 0;
    for (i, p) in s.proc_name.iter().enumerate() {
        if p.comm.len() >= PROC_NAME_MAX || p.cmdline.len() >= PROC_CMD_LINE_MAX {
            left_out.push(format!(
                "proc_name[{i}]: comm of at most {} bytes and cmdline of at most {} expected",
                PROC_NAME_MAX - 1,
                PROC_CMD_LINE_MAX - 1
            ));
            continue;
        }
        if n == MAX_ENTRIES {
            left_out.push(format!("proc_name[{i}]: at most {MAX_ENTRIES} entries fit"));
            continue;
        }
        if n > 0 {
            text.push_str(",\n");
        }
        text.push_str(&format!(
            "    {{ comm = {}; cmdline = {}; }}",
            quoted(&p.comm),
            quoted(&p.cmdline)
        ));
        n += 1;
    }
    if n > 0 {
        text.push('\n');
    }
    text.push_str(");\n");
    (text, left_out)
}

/// Writes `text` to `path` atomically (a temp file in the same directory,
/// renamed over it), mode 0600.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    let r = write();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Creates `dir` (and its parents) with mode 0700 for the last one.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        }
        Err(e) => Err(e),
    }
}

/// Why the selection could not be given to the probe.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The file could not be written.
    #[error("snoopers: cannot write {}: {source}", .path.display())]
    Write {
        /// The file (or its directory).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The C probe's `param` cannot take the selection.
    #[error("snoopers: the probe's param cannot take them: {0}")]
    Param(#[from] ParamsError),
}

impl Feed {
    /// At a start of probe `name`: resolves the snoopers under `proc_root`
    /// and writes the whitelist file.
    pub fn prepare(&self, name: &str, proc_root: &Path) -> Result<Selection, FeedError> {
        let file = file_of(&self.dir, name);
        make_dir(&self.dir).map_err(|source| FeedError::Write {
            path: self.dir.clone(),
            source,
        })?;
        let (text, left_out) = whitelist_text(&self.snoopers);
        for why in left_out {
            tracing::warn!(probe = %name, file = %file.display(), "snoopers: {why}; left out of the whitelist file (its processes are still in the pids)");
        }
        write_atomic(&file, &text).map_err(|source| FeedError::Write {
            path: file.clone(),
            source,
        })?;
        let pids = resolve_pids(&self.snoopers, proc_root);
        tracing::info!(probe = %name, pids = ?pids, file = %file.display(), "snoopers: given to the probe at its start");
        Ok(Selection { pids, file })
    }

    /// The launch of this start: for a C probe, `launch` with its param
    /// (the host's `--param` argument and its environment) edited by
    /// [`c_param`]; for an extend probe, `launch` as it is.
    pub fn launch(&self, launch: &Launch, sel: &Selection) -> Result<Launch, FeedError> {
        let Delivery::CParams { param } = &self.delivery else {
            return Ok(launch.clone());
        };
        let edited = c_param(param, &sel.file, &sel.pids)?;
        Ok(match launch {
            Launch::Shell(line) => Launch::Shell(line.clone()),
            Launch::Exec { program, args, env } => {
                let mut args = args.clone();
                if let Some(i) = args.iter().position(|a| a == "--param") {
                    if let Some(v) = args.get_mut(i + 1) {
                        *v = edited.clone().into();
                    }
                }
                let env = env
                    .iter()
                    .map(|(k, v)| {
                        if k == gopher::GOPHER_PARAM_ENV {
                            (k.clone(), OsString::from(&edited))
                        } else {
                            (k.clone(), v.clone())
                        }
                    })
                    .collect();
                Launch::Exec {
                    program: program.clone(),
                    args,
                    env,
                }
            }
        })
    }

    /// The environment of this start: for an extend probe [`env`], for a
    /// C probe nothing.
    pub fn env(&self, sel: &Selection) -> Vec<(OsString, OsString)> {
        match self.delivery {
            Delivery::Env => env(sel),
            Delivery::CParams { .. } => Vec::new(),
        }
    }
}

/// A C probe's `param` with the selection: `-w <file>` (its
/// `task_whitelist`), and `-F <pid>` when exactly one process is selected,
/// else `-F 0` (every process) in place of a `-F` the param had. The
/// selection wins over the user's `-w` and `-F`.
pub fn c_param(param: &str, file: &Path, pids: &[u32]) -> Result<String, ParamsError> {
    let mut out = set_option(param, 'w', &file.to_string_lossy())?;
    match pids {
        [one] => out = set_option(&out, 'F', &one.to_string())?,
        _ if out.split_whitespace().any(|w| w.starts_with("-F")) => {
            out = set_option(&out, 'F', "0")?;
        }
        _ => {}
    }
    Ok(out)
}

/// An extend probe's environment for the selection: [`ENV_FILE`] and
/// [`ENV_PIDS`].
pub fn env(sel: &Selection) -> Vec<(OsString, OsString)> {
    let pids: Vec<String> = sel.pids.iter().map(u32::to_string).collect();
    vec![
        (ENV_FILE.into(), sel.file.clone().into_os_string()),
        (ENV_PIDS.into(), pids.join(",").into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ipc::ProcName;
    use crate::probe_api::Params;

    fn name(comm: &str, cmdline: &str) -> ProcName {
        ProcName {
            comm: comm.into(),
            cmdline: cmdline.into(),
            debugging_dir: crate::config::Ignored,
        }
    }

    #[test]
    fn the_file_parses_with_the_legacy_parser_and_the_config_reader() {
        let s = Snoopers {
            proc_id: vec![1],
            proc_name: vec![
                name("^java$", "kafka"),
                name(r#"a\.b"c"#, ""),
                name("tab\there", "x"),
                name(&"c".repeat(64), ""),
            ],
            container_id: vec![],
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let feed = Feed {
            snoopers: s,
            dir: dir.path().join("state/snoopers"),
            delivery: Delivery::Env,
        };
        let sel = feed.prepare("p1", Path::new("/proc")).expect("prepare");
        assert_eq!(sel.file, dir.path().join("state/snoopers/p1.conf"));
        assert_eq!(sel.pids, [1]);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("state/snoopers"))
                .expect("dir")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        // ffi's legacy whitelist parser, through its C entry point.
        let path = std::ffi::CString::new(sel.file.to_str().expect("utf-8")).expect("path");
        let mut conf: *mut gopher::legacy_whitelist::ApplicationsConfig = std::ptr::null_mut();
        // SAFETY: a writable out pointer and a NUL-terminated path.
        let rc =
            unsafe { gopher::legacy_whitelist::parse_whitelist_config(&mut conf, path.as_ptr()) };
        assert_eq!(rc, 0);
        assert!(!conf.is_null());
        // SAFETY: filled by parse_whitelist_config, freed below.
        let got: Vec<(String, String)> = unsafe {
            let c = &*conf;
            (0..c.apps_num as usize)
                .map(|i| {
                    let a = &*c.apps[i];
                    let s = |f: &[std::ffi::c_char]| {
                        String::from_utf8(gopher::params::field_bytes(f)).expect("utf-8")
                    };
                    (s(&a.comm), s(&a.cmd_line))
                })
                .collect()
        };
        // SAFETY: from parse_whitelist_config, not used afterwards.
        unsafe { gopher::legacy_whitelist::whitelist_config_destroy(conf) };
        let want = vec![
            ("^java$".to_owned(), "kafka".to_owned()),
            (r#"a\.b"c"#.to_owned(), String::new()),
            ("tab\there".to_owned(), "x".to_owned()),
        ];
        assert_eq!(got, want, "the 64-byte comm is left out");
        // The agent's own reader of gala-gopher-app.conf agrees.
        let wl = crate::config::whitelist::load(&sel.file).expect("config reader");
        let ours: Vec<(String, String)> = wl
            .apps
            .iter()
            .map(|a| (a.comm.as_str().to_owned(), a.cmdline.clone()))
            .collect();
        assert_eq!(ours, want);
        // No temp file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state/snoopers"))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("p1.conf")]);
    }

    #[test]
    fn no_proc_name_is_an_empty_list_and_too_many_are_cut() {
        let (text, left) = whitelist_text(&Snoopers::default());
        assert!(left.is_empty());
        assert_eq!(
            gopher::legacy_whitelist::parse_apps(text.as_bytes()),
            Ok(vec![])
        );
        let many = Snoopers {
            proc_name: (0..70).map(|i| name(&format!("p{i}"), "")).collect(),
            ..Snoopers::default()
        };
        let (text, left) = whitelist_text(&many);
        assert_eq!(left.len(), 6, "{left:?}");
        let apps = gopher::legacy_whitelist::parse_apps(text.as_bytes()).expect("parses");
        assert_eq!(apps.len(), MAX_ENTRIES);
        assert_eq!(apps[63].comm, "p63");
    }

    #[test]
    fn a_c_param_gets_the_file_and_one_pid_and_wins_over_the_users() {
        let file = Path::new("/var/lib/gala-gopher/snoopers/x.conf");
        let one = c_param("-t 5 -w /etc/app.conf -F task", file, &[42]).expect("edit");
        let p = Params::parse(&one).expect("parses");
        assert_eq!(p.task_whitelist, file.to_str().expect("utf-8"));
        assert_eq!(
            (p.filter_pid, p.filter_task_probe, p.period),
            (42, false, 5)
        );
        // Several pids, or none: the user's -F is replaced by -F 0 (all).
        let many = c_param("-F 7 -t 5", file, &[1, 2]).expect("edit");
        let p = Params::parse(&many).expect("parses");
        assert_eq!((p.filter_pid, p.filter_task_probe), (0, false));
        assert_eq!(p.task_whitelist, file.to_str().expect("utf-8"));
        // Without a -F of the user's, none is added.
        assert_eq!(
            c_param("-t 5", file, &[]).expect("edit"),
            format!("-t 5 -w {}", file.display())
        );
        // A path too long for the legacy field is an error naming -w.
        let long = PathBuf::from(format!("/{}", "d".repeat(600)));
        let e = c_param("", &long, &[]).expect_err("too long");
        assert!(e.to_string().contains("-w"), "{e}");
    }

    #[test]
    fn a_c_launch_has_its_param_edited_in_its_arguments_and_environment() {
        let c = super::super::cabi::child_probe(
            "cp",
            &super::super::cabi::CSource::Builtin("system_cpu".into()),
            "-t 3",
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(10),
        )
        .expect("child probe");
        let feed = Feed {
            snoopers: Snoopers::default(),
            dir: PathBuf::from("/s"),
            delivery: Delivery::CParams {
                param: "-t 3".into(),
            },
        };
        let sel = Selection {
            pids: vec![99],
            file: PathBuf::from("/s/cp.conf"),
        };
        let Launch::Exec { args, env, .. } = feed.launch(c.launch(), &sel).expect("launch") else {
            panic!("a probe host is an exec launch");
        };
        let want = "-t 3 -w /s/cp.conf -F 99";
        let i = args.iter().position(|a| a == "--param").expect("--param");
        assert_eq!(args[i + 1], want);
        let (_, v) = env
            .iter()
            .find(|(k, _)| k == gopher::GOPHER_PARAM_ENV)
            .expect("param env");
        assert_eq!(v, want);
        assert!(feed.env(&sel).is_empty(), "a C probe gets no extra env");
    }

    #[test]
    fn an_extend_probe_gets_two_variables() {
        let sel = Selection {
            pids: vec![3, 10, 200],
            file: PathBuf::from("/s/e.conf"),
        };
        let feed = Feed {
            snoopers: Snoopers::default(),
            dir: PathBuf::from("/s"),
            delivery: Delivery::Env,
        };
        assert_eq!(
            feed.env(&sel),
            vec![
                (OsString::from(ENV_FILE), OsString::from("/s/e.conf")),
                (OsString::from(ENV_PIDS), OsString::from("3,10,200")),
            ]
        );
        let none = Selection {
            pids: vec![],
            file: PathBuf::from("/s/e.conf"),
        };
        assert_eq!(env(&none)[1].1, OsString::from(""));
    }

    #[test]
    fn pids_are_the_live_ones_by_id_and_by_name() {
        let me = std::process::id();
        let s = Snoopers {
            proc_id: vec![me, u32::MAX - 3],
            ..Snoopers::default()
        };
        assert_eq!(resolve_pids(&s, Path::new("/proc")), [me]);
        assert!(selects(&s));
        assert!(!selects(&Snoopers::default()));
    }
}
